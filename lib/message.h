/*
 * message: parsed Internet messages (RFC 5322 + MIME).
 *
 * Owns the envelope model (addresses, subject, date, ids, list headers), the
 * MIME part tree with per-part metadata and body offsets, the "best text
 * part" choice and content decoding of parts (transfer encoding, charset).
 *
 * Parsing never fails because mail is malformed: it produces a best-effort
 * result plus human-readable warnings.  It fails (-1, struct err) only for
 * real errors: a NULL buffer, or limits leaving nothing usable.  All work is
 * bounded by struct msg_limits.
 *
 * Ownership: a struct message owns everything it points to except the raw
 * buffer, which it borrows: the caller keeps raw[0..len) alive and unchanged
 * until message_free().  Parts, envelopes and strings inside are borrowed by
 * callers and die with the message.
 */
#ifndef CORREO_MESSAGE_H
#define CORREO_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "rfc2231.h"

struct msg_limits {
    unsigned max_depth;        /* MIME nesting (root = 0); deeper is a leaf */
    size_t max_parts;          /* parts in the whole tree */
    size_t max_header_bytes;   /* per header block; the rest is ignored */
    size_t max_addresses;      /* per address list; the rest dropped */
    size_t max_references;     /* ids kept from References */
    size_t max_decoded;        /* bytes of decoded / converted part content */
};

/* depth 20, 1000 parts, 1 MiB headers, 10000 addresses, 1000 references,
 * 64 MiB decoded. */
void message_limits_default(struct msg_limits *l);

struct msg_addr {
    char *name;   /* display name decoded to UTF-8, or NULL */
    char *addr;   /* addr-spec without angle brackets ("" if missing) */
};

struct msg_addr_list {
    struct msg_addr *v;
    size_t n;
    bool truncated;   /* entries beyond max_addresses were dropped */
};

struct msg_envelope {
    struct msg_addr_list from, to, cc, bcc, reply_to, sender;
    char *subject;        /* UTF-8, RFC 2047 decoded; NULL if absent */
    time_t date;          /* UTC seconds; 0 unless date_valid */
    char *date_text;      /* the Date header as written (UTF-8), or NULL */
    bool date_valid;      /* false if absent or unparsable */
    char *message_id;     /* without <>, or NULL */
    char *in_reply_to;    /* first id, without <>, or NULL */
    char **references;    /* ids without <>, in order */
    size_t n_references;
    char *list_id;        /* List-Id id without <> (e.g. "dev.example.org") */
    char *list_post;      /* List-Post first <...> content, e.g. "mailto:..." */
};

enum msg_encoding {
    MSG_ENC_7BIT = 0,     /* also: absent */
    MSG_ENC_8BIT,
    MSG_ENC_BINARY,
    MSG_ENC_BASE64,
    MSG_ENC_QP,
    MSG_ENC_UNKNOWN,      /* decoded as identity */
};

enum msg_disposition {
    MSG_DISP_NONE = 0,    /* no Content-Disposition */
    MSG_DISP_INLINE,
    MSG_DISP_ATTACHMENT,
    MSG_DISP_OTHER,       /* unknown value: treated like attachment */
};

struct msg_part {
    char *type;               /* lower-case, e.g. "text" (default "text") */
    char *subtype;            /* lower-case, e.g. "plain" */
    struct rfc2231_params params;   /* Content-Type parameters */
    char *charset;            /* charset parameter as given, or NULL */
    enum msg_encoding encoding;
    char *encoding_text;      /* Content-Transfer-Encoding lower-cased, or NULL */
    enum msg_disposition disposition;
    char *disposition_text;   /* lower-cased, or NULL */
    char *filename;           /* UTF-8, or NULL (see message_parse) */
    char *description;        /* UTF-8, or NULL */
    char *content_id;         /* without <>, or NULL */
    size_t header_offset;     /* offset of the part's header in raw */
    size_t body_offset;       /* offset of the body in raw */
    size_t body_size;         /* bytes of body in raw */
    unsigned depth;           /* root = 0 */
    size_t index;             /* position in message.parts */
    struct msg_part *parent;  /* NULL for the root */
    struct msg_part **children;
    size_t n_children;
    /* message/rfc822: the nested message's envelope; its root part is
     * children[0].  NULL otherwise. */
    struct msg_envelope *envelope;
};

struct message {
    const char *raw;          /* borrowed */
    size_t raw_len;
    struct msg_limits limits;
    struct msg_envelope env;
    struct msg_part *root;    /* NULL after message_parse_headers() */
    struct msg_part **parts;  /* all parts, pre-order; parts[0] == root */
    size_t n_parts;
    size_t body_offset;       /* first byte after the header block */
    char **warnings;          /* UTF-8 lines */
    size_t n_warnings;
};

/* Header-only parse for indexing: reads the header block of raw[0..len)
 * (stopping at the first empty line) and fills *out with the envelope; no
 * MIME tree.  limits may be NULL (defaults).  Free with message_free(). */
int message_parse_headers(const char *raw, size_t len, const struct msg_limits *limits,
                          struct message **out, struct err *e);

/* Full parse: envelope plus MIME tree.  filename is Content-Disposition
 * filename (RFC 2231 aware), else Content-Type name, RFC 2047 decoded. */
int message_parse(const char *raw, size_t len, const struct msg_limits *limits,
                  struct message **out, struct err *e);

void message_free(struct message *m);

/*
 * Best text part.  Definition, applied recursively from the root:
 *  - a leaf is a candidate if its type is text/plain or text/html and its
 *    disposition is not attachment (nor an unknown value);
 *  - a part with no Content-Type counts as text/plain (RFC 2045 default);
 *  - for any multipart/... (alternative, mixed, related, signed, ...), the
 *    result is the first child, in order, whose own result is text/plain;
 *    if none is, the first child whose result is text/html;
 *  - message/rfc822 parts are not descended into (they are attachments)
 *    unless they are the root;
 *  - nothing is concatenated: the result is exactly one part or NULL.
 * *is_html (may be NULL) is set when the returned part is text/html.
 */
const struct msg_part *message_best_text(const struct message *m, bool *is_html);

/* Transfer-decoded bytes of part p appended to out (ceiling: max_decoded).
 * *broken (may be NULL) is set if the encoding was damaged.  Returns -1
 * with ERR_LIMIT when the cap is hit; out then holds the decoded prefix. */
int message_part_decode(const struct message *m, const struct msg_part *p,
                        struct buf *out, bool *broken, struct err *e);

/* Text of part p as UTF-8 with CRLF turned into LF, appended to out.
 * *flags (may be NULL) gets CHARSET_* bits (charset.h); *broken as above.
 * Returns -1 with ERR_LIMIT when the cap is hit (out holds a prefix). */
int message_part_text(const struct message *m, const struct msg_part *p,
                      struct buf *out, unsigned *flags, bool *broken, struct err *e);

/* "type/subtype" of p into a new string (free()). */
char *message_part_mime_type(const struct msg_part *p);

#endif
