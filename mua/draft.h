/*
 * draft: the message a user is writing, before it is built for sending.
 *
 * Owns the editable headers (From, To, Cc, Bcc, Subject, Reply-To and any
 * custom header, in order), the threading headers of a reply (kept out of
 * the user's way), and the body text; how a reply, group reply, list reply
 * or inline forward is derived from the original as mutt does it; and the
 * template the editor sees ($edit_headers style: headers, blank line, body)
 * and reading it back.  No terminal and no sending here.
 */
#ifndef CORREO_DRAFT_H
#define CORREO_DRAFT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "message.h"

#define DRAFT_HEADERS_MAX 100
#define DRAFT_TEMPLATE_MAX (64u << 20)

struct draft_header {
    char *name;     /* as the user wrote it, e.g. "Subject" */
    char *value;    /* unfolded, UTF-8 */
};

struct draft {
    struct draft_header *h;
    size_t n_h;
    char *in_reply_to;        /* without <>, or NULL */
    char **references;        /* without <>, oldest first */
    size_t n_references;
    char *body;               /* UTF-8, LF line ends */
};

enum draft_reply {
    DRAFT_REPLY,              /* the sender (Reply-To when present) */
    DRAFT_GROUP_REPLY,        /* the sender, plus the other recipients in Cc */
    DRAFT_LIST_REPLY,         /* the list's List-Post address */
};

void draft_init(struct draft *d);
void draft_free(struct draft *d);

/* A new message: From (from $realname and $from), empty To, Cc, Bcc,
 * Subject, Reply-To, and the signature. */
void draft_new(const struct config *cfg, struct draft *d);

/* A reply to orig.  The body quotes orig's best text part under
 * $attribution with $indent_string.  ERR_NOTFOUND for a list reply to a
 * message without List-Post. */
int draft_reply(const struct config *cfg, const struct message *orig, enum draft_reply kind,
                struct draft *d, struct err *e);

/* Replace the body with an empty one plus the signature (a reply that
 * does not include the original, $include=no). */
void draft_drop_quote(const struct config *cfg, struct draft *d);

/* An inline forward: Subject from $forward_format, the original's headers
 * and text in the body. */
int draft_forward(const struct config *cfg, const struct message *orig, struct draft *d,
                  struct err *e);

/* Header access by name (case-insensitive).  draft_set adds the header at
 * the end when it is missing; value NULL removes it. */
const char *draft_get(const struct draft *d, const char *name);
void draft_set(struct draft *d, const char *name, const char *value);

/* The editor's text: "Name: value" lines, a blank line, the body. */
int draft_write_template(const struct draft *d, struct buf *out);

/* Read the editor's text back into d (headers and body replaced; the
 * threading headers kept).  Folded header lines are joined; a line that is
 * not a header before the blank line is ERR_PARSE with its line number, and
 * d is left unchanged. */
int draft_read_template(struct draft *d, const char *text, size_t len, struct err *e);

/* "Name <addr>" with the name quoted when it needs to be. */
char *draft_format_addr(const char *name, const char *addr);

#endif
