/*
 * store: the messages of one open mailbox, as one compact table.
 *
 * A mailbox of 100k messages must open in a fraction of a second and in a
 * few megabytes, so there is no per-message allocation and no per-message
 * pointer:
 *
 *   - one array of fixed-size records (struct store_msg, 72 bytes on LP64),
 *     indexed by message number;
 *   - one string arena: an append-only char buffer; every string of a
 *     record is a uint32 offset into it, each string NUL-terminated, offset
 *     0 is always "".  Strings other than the file name are interned: equal
 *     display names, addresses and subjects are stored once;
 *   - one uint64 array of reference hashes (thread_id_hash); a record
 *     names a run of it.
 *
 * Memory per message: 72 bytes of record, the file name plus its NUL,
 * the not-yet-seen from/address/subject strings plus NULs, 8 bytes per
 * reference, and 8 bytes of intern table per distinct string (the table is
 * kept at most half full).  Growth doubles, so up to twice that is
 * reserved; store_reserve() avoids it when the count is known.
 *
 * Strings are UTF-8, RFC 2047 decoded and NOT sanitized (lib/sanitize before
 * drawing).  Absent strings read as "".
 *
 * Slots and order: the message number is the position in the array and is
 * file order for the backends (what mutt calls "unsorted").  A backend that
 * learns messages out of order (a header cache read in key order) first
 * appends slots that only have a name (store_add_name, from the directory
 * scan) or nothing (store_add_empty) and fills them (store_fill*) as the
 * data arrives; slots never filled and messages marked gone are dropped by
 * store_compact(), which renumbers.
 *
 * Limits: the arena holds at most STORE_ARENA_MAX bytes (offsets are
 * uint32), a record at most 65535 reference hashes and a key of at most
 * 65535 bytes.  An add that would pass a limit fails with ERR_LIMIT and
 * changes nothing; nothing is truncated.
 */
#ifndef CORREO_STORE_H
#define CORREO_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "message.h"

#define STORE_NONE UINT32_MAX
#define STORE_ARENA_MAX ((uint32_t)UINT32_MAX - 1u)
#define STORE_REFS_MAX 65535u
#define STORE_KEY_MAX 65535u

/* store_msg.bits */
#define STORE_B_FILLED  0x01u   /* the slot holds a message */
#define STORE_B_LIST_ID 0x02u   /* the message has a List-Id header */
#define STORE_B_GONE    0x04u   /* vanished from the backend or expunged */

struct store_msg {
    uint64_t id_hash;     /* thread_id_hash of the Message-ID; 0: none */
    int64_t date;         /* Date: as UTC seconds; 0 if missing or unparsable */
    int64_t received;     /* delivery time (Maildir: file mtime); 0 unknown */
    uint64_t size;        /* octets of the whole message */
    uint32_t name;        /* arena: file name / backend key, with Maildir info */
    uint32_t from;        /* arena: display name of the first From, else its address */
    uint32_t from_addr;   /* arena: addr-spec of the first From */
    uint32_t subject;     /* arena: decoded subject */
    uint32_t refs;        /* first of n_refs hashes in the refs array */
    uint32_t file_index;  /* position when first added (file order) */
    uint32_t tags;        /* arena: labels (notmuch tags), blank-separated */
    uint16_t n_refs;      /* References in order, then In-Reply-To unless last */
    uint16_t key_len;     /* the key is name[0..key_len) (Maildir: base name) */
    int16_t tz;           /* the Date: header's zone, minutes east of UTC */
    uint16_t flags;       /* enum msg_flag bits (mua/msg.h) */
    uint8_t sub;          /* backend location (Maildir: enum maildir_sub) */
    uint8_t bits;         /* STORE_B_* */
};

struct store {
    struct store_msg *msgs;
    uint32_t n, cap;
    char *arena;
    uint32_t arena_len, arena_cap;
    uint32_t arena_max;      /* STORE_ARENA_MAX; lower it to test the limit */
    uint64_t *refs;
    uint32_t n_refs, refs_cap;
    uint32_t *intern;        /* open addressing: arena offsets, 0 = empty */
    uint32_t intern_cap, intern_n;
};

/* A string given to the store: p[0..n), not necessarily NUL-terminated.
 * p == NULL means absent and reads as "". */
struct store_span {
    const char *p;
    size_t n;
};

/* Everything a message record is made from. */
struct store_new {
    struct store_span name;    /* file name or backend key; required */
    size_t key_len;            /* <= name.n; 0 means name.n */
    struct store_span from;    /* display string */
    struct store_span from_addr;
    struct store_span subject;
    struct store_span tags;    /* labels, blank-separated; absent: none */
    uint64_t id_hash;
    const uint64_t *refs;      /* final list: References, then In-Reply-To */
    size_t n_refs;
    int64_t date;
    int tz;
    int64_t received;
    uint64_t size;
    unsigned flags;            /* enum msg_flag bits */
    unsigned sub;
    bool list_id;
};

void store_init(struct store *st);
void store_free(struct store *st);
/* Forget every message and string; keep the memory and the limit. */
void store_reset(struct store *st);
/* Make room for n more messages (and a guess of their strings). */
void store_reserve(struct store *st, size_t n);

/* A fast 64-bit hash of s[0..n) (eight bytes per step) for hash tables over
 * strings: interning, message keys.  Message-IDs and references are hashed
 * with thread_id_hash (mua/thread.h), the hash threading works with. */
uint64_t store_str_hash(const char *s, size_t n);

/* Append a message; *idx (may be NULL) gets its number.  ERR_LIMIT when a
 * limit would be passed (nothing is added), ERR_INVAL for an empty name. */
int store_add(struct store *st, const struct store_new *in, uint32_t *idx, struct err *e);

/* Append from a parsed envelope.  The file facts (name, key_len, flags,
 * sub, received, size) and tz come from file; its header fields (from,
 * from_addr, subject, id_hash, refs, date, list_id) are ignored and taken
 * from env: the first From address, the subject, the Message-ID hash, the
 * hashes of References in order then In-Reply-To unless it equals the last
 * one, the date when valid, List-Id presence. */
int store_add_envelope(struct store *st, const struct store_new *file,
                       const struct msg_envelope *env, uint32_t *idx, struct err *e);

/* Append count empty slots (not STORE_B_FILLED); returns the first one's
 * number.  ERR_LIMIT when the table would pass UINT32_MAX - 1 entries. */
int store_add_empty(struct store *st, size_t count, uint32_t *first, struct err *e);
/* Append a slot that only knows its name, flags and sub (not yet
 * STORE_B_FILLED): what a directory scan tells.  key_len 0 means name_len. */
int store_add_name(struct store *st, const char *name, size_t name_len, size_t key_len,
                   unsigned flags, unsigned sub, uint32_t *idx, struct err *e);
/* Fill slot idx (replacing what it held) like store_add/store_add_envelope.
 * With in->name.p == NULL the slot keeps the name it has (store_add_name),
 * so the name is not stored twice.  file_index stays the slot's position
 * when it was added. */
int store_fill(struct store *st, uint32_t idx, const struct store_new *in, struct err *e);
int store_fill_envelope(struct store *st, uint32_t idx, const struct store_new *file,
                        const struct msg_envelope *env, struct err *e);

/* Drop empty slots and STORE_B_GONE messages, keeping the order.  map (may
 * be NULL) must have room for the old count: map[old] = new number or
 * STORE_NONE.  Arena strings of dropped messages stay until store_reset. */
void store_compact(struct store *st, uint32_t *map);

/* A new file name after a rename (appended to the arena; the old name's
 * bytes stay until store_reset).  key_len 0 means name_len. */
int store_set_name(struct store *st, uint32_t idx, const char *name, size_t name_len,
                   size_t key_len, struct err *e);

/* Replace the labels of message idx (interned like the other strings; the
 * old bytes stay until store_reset).  n 0 or tags NULL: no labels. */
int store_set_tags(struct store *st, uint32_t idx, const char *tags, size_t n,
                   struct err *e);

/* ---- reading ------------------------------------------------------------- */

static inline uint32_t store_count(const struct store *st)
{
    return st->n;
}

/* Message idx (< store_count; anything else is a bug and aborts). */
const struct store_msg *store_get(const struct store *st, uint32_t idx);
struct store_msg *store_get_mut(struct store *st, uint32_t idx);

/* The string at an arena offset (aborts on an offset outside the arena). */
const char *store_str(const struct store *st, uint32_t off);
/* The n_refs hashes of m. */
const uint64_t *store_refs(const struct store *st, const struct store_msg *m);

/* Bytes allocated for the table, arena, refs and intern table. */
size_t store_mem(const struct store *st);

#endif
