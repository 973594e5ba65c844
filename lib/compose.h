/*
 * compose: building outgoing messages (RFC 5322 + MIME) in memory.
 *
 * Owns the model of a message being written (struct compose_msg), parsing of
 * the address lists a user types, and rendering to the bytes handed to SMTP,
 * a sendmail command or a Maildir (Sent, Drafts).  Rendering does no I/O;
 * compose_attach_file() and compose_mime_type() are the only functions that
 * touch the file system.
 *
 * What rendering guarantees:
 *  - header fields are folded at white space to at most fold_width columns
 *    where a break exists, and no line is ever longer than 998 octets;
 *  - non-ASCII text (Subject, display names, unstructured extra header
 *    values, Content-Description, file names) becomes RFC 2047 UTF-8
 *    encoded words of at most 75 characters that never split a character;
 *    text that would otherwise be misread (leading or trailing blanks, "=?",
 *    control characters, very long words) is encoded too, so that a parser
 *    gives back exactly the string that was given;
 *  - no value can inject a header: a CR or LF in any field, an invalid
 *    header name or invalid UTF-8 is an ERR_INVAL error naming the field;
 *  - addr-specs must be ASCII (SMTPUTF8 is not supported: a clear error);
 *  - the body is 7bit when it is ASCII with lines of at most 998 octets,
 *    8bit when the server takes 8BITMIME and the same holds for UTF-8, and
 *    quoted-printable otherwise ("From " at a line start as "=46rom", lines
 *    starting with "." are left to SMTP dot-stuffing); optional
 *    format=flowed (RFC 3676) with space-stuffing;
 *  - attachments make a multipart/mixed whose random boundary occurs in no
 *    part; binary data is base64 (76-column lines), text is 7bit, 8bit or
 *    quoted-printable, message/rfc822 is embedded unencoded; file names use
 *    RFC 2231 (filename*=utf-8''..., with continuations when long) plus a
 *    name= parameter for older readers;
 *  - Bcc is written only when asked for (copies kept locally), never in
 *    what is transmitted.
 */
#ifndef CORREO_COMPOSE_H
#define CORREO_COMPOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "message.h"

#define COMPOSE_FOLD_WIDTH 78       /* default header width */
#define COMPOSE_FLOWED_WIDTH 72     /* default format=flowed line width */

/* An extra header field: "name: value".  The value is unstructured text
 * (RFC 2047 encoded where needed).  Names are checked: printable ASCII
 * without ':' or blanks, at most 76 characters, and not a field this module
 * writes itself (Date, From, To, Cc, Bcc, Subject, Message-ID, In-Reply-To,
 * References, Reply-To, MIME-Version, Content-*). */
struct compose_header {
    char *name;
    char *value;
};

enum compose_disposition {
    COMPOSE_DISP_ATTACHMENT = 0,
    COMPOSE_DISP_INLINE,
};

/*
 * How an attachment is encoded:
 *  - message/rfc822 (is_message, or that mime_type): embedded as it is with
 *    CRLF line ends, labelled 7bit, 8bit, or binary when it has NUL bytes,
 *    bare CRs or lines over 998 octets;
 *  - text/...: valid UTF-8 without NUL is sent like the body (7bit, 8bit or
 *    quoted-printable, charset us-ascii or utf-8, line ends made CRLF);
 *    other text is base64 without a charset;
 *  - anything else: base64.
 */
struct compose_attachment {
    char *data;               /* content bytes (any bytes); NULL when len 0 */
    size_t len;
    char *filename;           /* UTF-8 name for the recipient; NULL or "": none */
    char *mime_type;          /* "type/subtype" (not multipart/...); NULL:
                                 application/octet-stream; ignored with
                                 is_message */
    char *description;        /* UTF-8 Content-Description, or NULL */
    enum compose_disposition disposition;
    bool is_message;          /* data is a whole message: message/rfc822
                                 (forward as attachment) */
};

/*
 * A message being written.  It owns every pointer in it (strings from
 * malloc, freed by compose_msg_free); fill it directly or through the
 * helpers below.  Addresses reuse lib/message's struct msg_addr: name is the
 * UTF-8 display name or NULL ("" counts as none), addr the ASCII addr-spec.
 */
struct compose_msg {
    struct msg_addr_list from, to, cc, bcc, reply_to;  /* bcc: envelope only */
    char *subject;            /* UTF-8; NULL: no Subject field */
    char *message_id;         /* without <>; NULL: generated at render time */
    char *in_reply_to;        /* without <>, or NULL */
    char **references;        /* ids without <>, oldest first */
    size_t n_references;
    time_t date;              /* 0: now */
    bool tz_fixed;            /* false: the local zone at that date */
    int tz_minutes;           /* with tz_fixed: offset east of UTC, |x| < 1440 */
    struct compose_header *headers;   /* extra fields (User-Agent, X-Label...) */
    size_t n_headers;
    char *body;               /* UTF-8 text, LF or CRLF line ends; NULL: empty.
                                 A final line break is added when missing. */
    bool flowed;              /* send the body as format=flowed */
    struct compose_attachment *attachments;
    size_t n_attachments;
};

struct compose_opts {
    bool eightbit_ok;         /* the server announced 8BITMIME */
    const char *hostname;     /* for Message-ID; NULL: gethostname(); an
                                 invalid name falls back to
                                 "localhost.localdomain" */
    bool with_bcc;            /* write Bcc (Sent/Drafts copy); never for sending */
    bool lf;                  /* LF line ends (Maildir copy) instead of CRLF */
    size_t fold_width;        /* 0: COMPOSE_FOLD_WIDTH; else 40..998 */
    size_t flowed_width;      /* 0: COMPOSE_FLOWED_WIDTH; else 20..998 */
    /* Random bytes for Message-ID and boundaries; NULL: getrandom(2).
     * Tests pass a deterministic source. */
    void (*random)(void *ctx, unsigned char *out, size_t n);
    void *random_ctx;
};

/* ---- the model ---------------------------------------------------------- */

void compose_msg_init(struct compose_msg *m);
void compose_msg_free(struct compose_msg *m);

/* Append a copy of name (may be NULL) and addr to l.  No checks here:
 * compose_check() and compose_render() validate. */
void compose_addrs_add(struct msg_addr_list *l, const char *name, const char *addr);
void compose_addrs_free(struct msg_addr_list *l);

/* Setters that copy their argument (NULL clears). */
void compose_set_subject(struct compose_msg *m, const char *subject);
void compose_set_body(struct compose_msg *m, const char *body);
void compose_add_reference(struct compose_msg *m, const char *id);
void compose_add_header(struct compose_msg *m, const char *name, const char *value);

/* Append an attachment holding a copy of data[0..len); filename and
 * mime_type may be NULL.  Returns the new entry so that description,
 * disposition or is_message can be set; it stays valid until the next
 * attachment is added. */
struct compose_attachment *compose_add_attachment(struct compose_msg *m, const void *data,
                                                  size_t len, const char *filename,
                                                  const char *mime_type);

/* Read the regular file at path (at most max_size bytes; 0: no limit) into a
 * new attachment named after the file's last path component, typed by
 * compose_mime_type().  ERR_NOTFOUND, ERR_IO, ERR_INVAL (not a regular file)
 * or ERR_LIMIT (too large); nothing is added on failure. */
int compose_attach_file(struct compose_msg *m, const char *path, size_t max_size,
                        struct err *e);

/* MIME type for a file: by content with libmagic, the extension (a table
 * of common types, case insensitive) refining libmagic's generic answers
 * (text/plain, application/zip) and standing in when libmagic is absent or
 * has no answer; "application/octet-stream" otherwise.  Writes a
 * NUL-terminated string into out; -1 only if size is too small. */
int compose_mime_type(const char *path, char *out, size_t size);

/* ---- addresses ---------------------------------------------------------- */

/* Parse what a user typed in To/Cc/Bcc: addresses separated by ',' or ';'
 * in the forms "a@b", "Name <a@b>", "\"Doe, J\" <j@x>", "<a@b>",
 * "a@b (Name)".  Names may be UTF-8; runs of blanks outside quotes become
 * one space.  Each entry is appended to out.  On error (ERR_INVAL, text
 * saying which entry and why: unterminated quote, missing '>', no '@',
 * non-ASCII address...) out is left as it was. */
int compose_parse_addresses(const char *text, struct msg_addr_list *out, struct err *e);

/* True if addr is an ASCII addr-spec this module will write. */
bool compose_valid_addr(const char *addr);

/* True if id (without <>) can be written in Message-ID, In-Reply-To or
 * References: 1..900 printable ASCII characters other than '<' and '>'. */
bool compose_valid_msgid(const char *id);

/* ---- rendering ---------------------------------------------------------- */

/* Validate every field of m as compose_render() would (ERR_INVAL naming the
 * field); useful before a send is attempted. */
int compose_check(const struct compose_msg *m, struct err *e);

/* Fill in what rendering would otherwise invent: date (if 0) and
 * message_id (if NULL).  Call once before rendering the same message more
 * than once (the transmitted copy and the Sent copy must agree). */
int compose_prepare(struct compose_msg *m, const struct compose_opts *o, struct err *e);

/* Render m and append the message to out (CRLF line ends unless o->lf).
 * o may be NULL (defaults: 7bit/QP only, no Bcc, width 78).  Header order:
 * Date, From, To, Cc, Bcc (with_bcc only), Subject, Message-ID,
 * In-Reply-To, References, Reply-To, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, then the extra headers in order.
 * Errors: ERR_INVAL (a field, naming it), ERR_IO (no random bytes),
 * ERR_LIMIT (out's ceiling, or no usable boundary; out is then unchanged). */
int compose_render(const struct compose_msg *m, const struct compose_opts *o,
                   struct buf *out, struct err *e);

/* Envelope for sending: the first From address, and every To, Cc and Bcc
 * address once (compared case-insensitively), in that order.  *from and
 * each (*rcpts)[i] are new strings; free them with compose_free_strings()
 * and free(). */
int compose_envelope(const struct compose_msg *m, char **from, char ***rcpts,
                     size_t *n_rcpts, struct err *e);
void compose_free_strings(char **v, size_t n);

/* True if data contains a byte >= 0x80 (the transfer then needs
 * BODY=8BITMIME). */
bool compose_is_8bit(const char *data, size_t len);

#endif
