/*
 * hcache: the header cache, one LMDB environment per folder.
 *
 * File: <dir>/<16 hex digits of FNV-1a 64 of the folder's absolute
 * path>.lmdb (MDB_NOSUBDIR, plus LMDB's "-lock" file next to it), mode 0600;
 * missing directories are created 0700.  <dir> is the caller's (the
 * header_cache option, tests) or $XDG_CACHE_HOME/correo/hcache, else
 * $HOME/.cache/correo/hcache.
 *
 * Keys are message keys: for Maildir the base name (the file name up to
 * ':'), so a flag change (a rename) keeps the record.  Flags are never
 * cached: they come from the file name.
 *
 * Values are self-describing and versioned by a schema number, never by a
 * struct layout:
 *
 *   "CH"  u16 schema (little-endian, HCACHE_SCHEMA)
 *   then fields: u8 tag, varint length (LEB128, at most 5 bytes), bytes
 *
 * Integers are little-endian (date i64, tz i16 minutes, size u64, received
 * i64).  Strings are raw UTF-8 bytes (may be empty; a missing tag means
 * absent).  Address lists (to, cc) are a sequence of (varint length, name,
 * varint length, addr-spec) pairs; id lists (references) a sequence of
 * (varint length, id).  Tags the decoder does not know are skipped, so a
 * newer writer's records still decode; a record whose required tags (date,
 * tz, size, received) are missing, whose known field has the wrong size,
 * or that is cut short is invalid.  Each tag may appear once.
 *
 * The key "\0meta" holds "CM", u16 schema, then fields: tag 1 = the
 * folder's absolute path.  When it is missing in a non-empty file, names
 * another folder or another schema, the records are dropped.  When LMDB
 * cannot open the file or reports it corrupt (MDB_INVALID,
 * MDB_VERSION_MISMATCH, MDB_CORRUPTED, MDB_PAGE_NOTFOUND, a file shorter
 * than its own meta page says), the file is deleted and created afresh.
 * A single record that does not decode is treated as a miss and deleted.
 * Nothing here is ever fatal: a caller that cannot open the cache runs
 * without one and shows the error as a warning.
 *
 * Writes are batched: hcache_put/hcache_del open a write transaction and
 * commit it every HCACHE_BATCH operations and at hcache_commit() (which
 * also syncs the file once; the environment itself runs with MDB_NOSYNC,
 * so a cold load pays for one fsync, not one per batch).  A put is first
 * tried as an append (MDB_APPEND): callers that put in increasing key
 * order get full pages and little copying, so the file stays about the
 * size of its records.  The map starts at 64 MiB and doubles on
 * MDB_MAP_FULL; the open batch is replayed.
 *
 * Warm reads go through hcache_foreach, a sequential cursor pass.  Keys
 * must come strictly increasing (a damaged page can make LMDB revisit
 * records or loop; that is treated as corruption).  The pages the pass has
 * read are dropped from the process (madvise MADV_DONTNEED on the range of
 * the read-only map it touched) every HCACHE_DROP_EVERY records and at the
 * end, so a warm open of a large folder does not keep the file in its RSS.
 *
 * Not for concurrent use by several threads; several processes may share a
 * file (LMDB's locking).
 */
#ifndef CORREO_HCACHE_H
#define CORREO_HCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "message.h"
#include "store.h"

#define HCACHE_SCHEMA 1
#define HCACHE_BATCH 5000
#define HCACHE_DROP_EVERY 2048
#define HCACHE_MAP_START ((size_t)64 << 20)

/* Record field tags. */
enum hcache_tag {
    HCACHE_TAG_DATE = 1,         /* i64, required */
    HCACHE_TAG_TZ = 2,           /* i16, required */
    HCACHE_TAG_SIZE = 3,         /* u64, required */
    HCACHE_TAG_RECEIVED = 4,     /* i64, required */
    HCACHE_TAG_FROM_NAME = 5,
    HCACHE_TAG_FROM_ADDR = 6,
    HCACHE_TAG_TO = 7,           /* address list */
    HCACHE_TAG_CC = 8,           /* address list */
    HCACHE_TAG_SUBJECT = 9,
    HCACHE_TAG_MESSAGE_ID = 10,
    HCACHE_TAG_IN_REPLY_TO = 11,
    HCACHE_TAG_REFERENCES = 12,  /* id list */
    HCACHE_TAG_LIST_ID = 13,
    HCACHE_TAG_X_LABEL = 14,
};

/*
 * One record.  Spans with p == NULL are absent; p != NULL with n == 0 is an
 * empty value.  From a decode, the spans point into the decoded bytes.
 */
struct hcache_rec {
    int64_t date;          /* Date: as UTC seconds, 0 if missing/unparsable */
    int tz;                /* minutes east of UTC */
    uint64_t size;
    int64_t received;      /* Maildir: file mtime */
    struct store_span from_name, from_addr;   /* first From address */
    struct store_span to, cc;                 /* address lists */
    struct store_span subject, message_id, in_reply_to;
    struct store_span references;             /* id list */
    struct store_span list_id, x_label;
};

/* ---- records --------------------------------------------------------------- */

/* Append the encoding of r to out.  -1 only when out's ceiling is hit. */
int hcache_encode(const struct hcache_rec *r, struct buf *out);
/* Decode data[0..len) into *r (spans into data).  -1 with ERR_PARSE when
 * the record is invalid (see the header comment). */
int hcache_decode(const void *data, size_t len, struct hcache_rec *r, struct err *e);

/* Append one entry to an address list / id list value.  name may be NULL
 * (stored as empty).  -1 only on out's ceiling. */
int hcache_list_add_addr(struct buf *out, const char *name, const char *addr);
int hcache_list_add_id(struct buf *out, const char *id, size_t n);
/* Walk a list value of a decoded (so validated) record: start with *pos =
 * 0; false at the end.  An empty name reads as n == 0. */
bool hcache_addr_next(struct store_span list, size_t *pos, struct store_span *name,
                      struct store_span *addr);
bool hcache_id_next(struct store_span list, size_t *pos, struct store_span *id);

/* Scratch space for hcache_rec_from_envelope, reused from one message to
 * the next. */
struct hcache_recbuf {
    struct buf to, cc, refs;
};
void hcache_recbuf_init(struct hcache_recbuf *rb);
void hcache_recbuf_free(struct hcache_recbuf *rb);

/* Fill r from a parsed envelope plus the facts that are not in it.  x_label
 * may be NULL.  r points into env, x_label and rb. */
void hcache_rec_from_envelope(struct hcache_rec *r, const struct msg_envelope *env, int tz,
                              uint64_t size, int64_t received, const char *x_label,
                              struct hcache_recbuf *rb);

/* Reference hashes for the store, reused from one record to the next. */
struct hcache_refs {
    uint64_t *v;
    size_t n, cap;
};
void hcache_refs_free(struct hcache_refs *rf);

/* The header fields of a store record from r: from (display name, else the
 * address), from_addr, subject, id_hash, refs (References in order, then
 * In-Reply-To unless it is the last one; in rf), date, tz, received, size,
 * list_id.  name, key_len, flags and sub of out are left alone. */
void hcache_rec_to_store(const struct hcache_rec *r, struct store_new *out,
                         struct hcache_refs *rf);

/* ---- the environment ------------------------------------------------------- */

struct hcache;

/* What hcache_open found. */
enum hcache_state {
    HCACHE_NEW = 0,           /* no usable file: created empty */
    HCACHE_REUSED,            /* meta matched: records trusted (each decoded) */
    HCACHE_REBUILT_META,      /* other schema or folder, or no meta: emptied */
    HCACHE_REBUILT_CORRUPT,   /* LMDB could not use the file: deleted, created */
};

struct hcache_stats {
    size_t read;          /* records handed to callbacks or returned by get */
    size_t bad;           /* records that did not decode (deleted) */
    size_t puts, dels;
    size_t commits;
    size_t grows;         /* map size doublings */
    size_t rebuilds;      /* files deleted and created after open */
};

/* Open (creating as needed) the cache of the folder at folder_abs (an
 * absolute path).  dir NULL: the default directory (see above).  Fails
 * (caller runs uncached) when no directory can be made or LMDB still cannot
 * open a fresh file. */
int hcache_open(const char *dir, const char *folder_abs, struct hcache **out, struct err *e);
/* Commits an open batch (errors ignored), then closes.  hc may be NULL. */
void hcache_close(struct hcache *hc);

const char *hcache_file(const struct hcache *hc);
enum hcache_state hcache_open_state(const struct hcache *hc);
const struct hcache_stats *hcache_stats(const struct hcache *hc);

/* Calls fn for every valid record in key order; fn returns 0 to go on,
 * anything else to stop early.  After the last record (unless stopped),
 * fn is called once more with key and rec NULL.  key and rec stay valid
 * until hcache_foreach returns (they point into the map, inside one read
 * transaction), so fn may keep a few and handle them in a batch by that
 * last call.  An open batch is committed first.  Records that do not decode are
 * skipped and deleted.  When LMDB reports corruption the file is rebuilt
 * (empty) and -1 is returned with ERR_PARSE: the caller must forget what
 * the callbacks gave it. */
typedef int (*hcache_each_fn)(void *ctx, const char *key, size_t key_len,
                              const struct hcache_rec *rec);
int hcache_foreach(struct hcache *hc, hcache_each_fn fn, void *ctx, struct err *e);

/* One record by key; *rec is valid until the next call on hc.  ERR_NOTFOUND
 * when absent, ERR_PARSE when it does not decode (it is then deleted). */
int hcache_get(struct hcache *hc, const char *key, size_t key_len, struct hcache_rec *rec,
               struct err *e);

/* Batched writes (see above).  ERR_INVAL for an empty key or one longer
 * than LMDB allows, ERR_LIMIT when the map cannot grow.  On failure the
 * batch is dropped (earlier batches stay). */
int hcache_put(struct hcache *hc, const char *key, size_t key_len, const struct hcache_rec *rec,
               struct err *e);
int hcache_del(struct hcache *hc, const char *key, size_t key_len, struct err *e);
/* Commit the open batch, if any, and sync the file. */
int hcache_commit(struct hcache *hc, struct err *e);

/* Delete every record whose key keep() rejects; *removed (may be NULL)
 * gets the count.  Commits. */
typedef bool (*hcache_keep_fn)(void *ctx, const char *key, size_t key_len);
int hcache_prune(struct hcache *hc, hcache_keep_fn keep, void *ctx, size_t *removed,
                 struct err *e);

#endif
