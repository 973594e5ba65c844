/* err: error values with code, scope and user-safe text. */
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void err_vformat(struct err *e, const char *fmt, va_list ap)
{
    int n = vsnprintf(e->text, sizeof(e->text), fmt, ap);

    /* Harmless truncation of a human-readable line: mark it. */
    if (n >= (int)sizeof(e->text))
        memcpy(e->text + sizeof(e->text) - 4, "...", 4);
}

void err_clear(struct err *e)
{
    if (e == NULL)
        return;
    e->code = ERR_OK;
    e->scope = ERR_SCOPE_MSG;
    e->temporary = false;
    e->sys_errno = 0;
    e->text[0] = '\0';
}

int err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return -1;
    err_clear(e);
    e->code = code;
    va_start(ap, fmt);
    err_vformat(e, fmt, ap);
    va_end(ap);
    return -1;
}

int err_sys(struct err *e, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    size_t len;

    if (e == NULL)
        return -1;
    err_clear(e);
    e->code = ERR_IO;
    e->sys_errno = saved;
    e->temporary = saved == EAGAIN || saved == EINTR || saved == ENOSPC ||
                   saved == EDQUOT || saved == ENOMEM || saved == EMFILE ||
                   saved == ENFILE;
    va_start(ap, fmt);
    err_vformat(e, fmt, ap);
    va_end(ap);
    len = strlen(e->text);
    if (len < sizeof(e->text) - 1)
        snprintf(e->text + len, sizeof(e->text) - len, ": %s", strerror(saved));
    errno = saved;
    return -1;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
    char old[ERR_TEXT_MAX];
    char pre[ERR_TEXT_MAX];
    va_list ap;

    if (e == NULL)
        return;
    memcpy(old, e->text, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    if (snprintf(e->text, sizeof(e->text), "%s: %s", pre, old) >= (int)sizeof(e->text))
        memcpy(e->text + sizeof(e->text) - 4, "...", 4);
}

void err_scope(struct err *e, enum err_scope scope, bool temporary)
{
    if (e == NULL)
        return;
    e->scope = scope;
    e->temporary = temporary;
}

const char *err_code_name(enum err_code code)
{
    switch (code) {
    case ERR_OK: return "no error";
    case ERR_IO: return "I/O error";
    case ERR_NOTFOUND: return "not found";
    case ERR_EXISTS: return "already exists";
    case ERR_INVAL: return "invalid argument";
    case ERR_PARSE: return "parse error";
    case ERR_LIMIT: return "limit exceeded";
    case ERR_TLS: return "TLS error";
    case ERR_PROTO: return "protocol error";
    case ERR_NET: return "network error";
    case ERR_UNSUPPORTED: return "not supported";
    }
    return "unknown error";
}
