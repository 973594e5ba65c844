/*
 * err: error values.
 *
 * Functions that can fail return int (0 on success, -1 on failure) and, when
 * given a non-NULL struct err *, fill it with a code, a scope (how much the
 * failure affects: one message, one mailbox or folder, a whole account or
 * connection), whether retrying may help, and a one-line text that is safe to
 * show a user.  The text is bounded; a longer message is cut with "..." at
 * the end, which is harmless for a human-readable line.
 *
 * A caller that does not care about details may pass NULL.
 */
#ifndef CORREO_ERR_H
#define CORREO_ERR_H

#include <stdbool.h>

#include "xalloc.h"

enum err_code {
    ERR_OK = 0,
    ERR_IO,         /* an OS call failed; sys_errno says which */
    ERR_NOTFOUND,   /* no such file, folder, message, key */
    ERR_EXISTS,     /* target already exists */
    ERR_INVAL,      /* bad argument or name from the caller or user */
    ERR_PARSE,      /* malformed input (message, config, protocol) */
    ERR_LIMIT,      /* a configured or built-in limit was exceeded */
    ERR_TLS,        /* handshake or verification failure */
    ERR_PROTO,      /* the peer broke the protocol or said no */
    ERR_NET,        /* connect/read/write/timeout on a network stream */
    ERR_UNSUPPORTED,
};

enum err_scope {
    ERR_SCOPE_MSG = 0,   /* affects one message; go on with the others */
    ERR_SCOPE_BOX,       /* affects one mailbox/folder */
    ERR_SCOPE_ACCOUNT,   /* affects the whole account/connection */
};

#define ERR_TEXT_MAX 512

struct err {
    enum err_code code;
    enum err_scope scope;
    bool temporary;      /* true: retrying later may succeed */
    int sys_errno;       /* errno for ERR_IO/ERR_NET, else 0 */
    char text[ERR_TEXT_MAX];
};

/* Reset to "no error". e may be NULL. */
void err_clear(struct err *e);

/* Set code and formatted text; scope defaults to ERR_SCOPE_MSG, temporary to
 * false.  Always returns -1 so callers can write `return err_set(...)`. */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
    CORREO_PRINTF(3, 4);

/* Like err_set with ERR_IO, recording errno and appending ": strerror".
 * errno is preserved across the call. */
int err_sys(struct err *e, const char *fmt, ...) CORREO_PRINTF(2, 3);

/* Prefix existing text with "what: " (e.g. the file name). */
void err_prefix(struct err *e, const char *fmt, ...) CORREO_PRINTF(2, 3);

void err_scope(struct err *e, enum err_scope scope, bool temporary);

/* Short name of a code, e.g. "parse error". */
const char *err_code_name(enum err_code code);

#endif
