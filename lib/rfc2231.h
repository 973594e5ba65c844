/*
 * rfc2231: structured MIME header values such as Content-Type and
 * Content-Disposition: "value; name=token; name=\"quoted\"; name*=cs'lang'%xx;
 * name*0*=...; name*1=...".
 *
 * The parser is lenient: junk between parameters is skipped, continuations
 * are joined in index order up to the first gap, extended values are
 * percent-decoded and converted from their charset to UTF-8.  Plain values
 * are returned as written (unquoted), so callers decide about RFC 2047.
 * A struct rfc2231_params owns all its strings; free with rfc2231_free.
 */
#ifndef CORREO_RFC2231_H
#define CORREO_RFC2231_H

#include <stdbool.h>
#include <stddef.h>

#define RFC2231_MAX_PARAMS 64       /* more are dropped (flag set) */
#define RFC2231_MAX_SECTIONS 256    /* continuation indices >= this are dropped */

struct rfc2231_param {
    char *name;      /* lower-case */
    char *value;     /* decoded; UTF-8 for extended values */
    char *lang;      /* RFC 2231 language, or NULL */
    bool extended;   /* came from name* or name*N* */
};

struct rfc2231_params {
    char *value;     /* the leading value ("text/plain", "attachment"),
                        lower-cased, trimmed; "" if absent */
    struct rfc2231_param *v;
    size_t n;
    bool dropped;    /* parameters beyond the cap were ignored */
    unsigned charset_flags;  /* CHARSET_* bits from converting values */
};

/* Parse s[0..len).  Never fails; the result is freed with rfc2231_free. */
void rfc2231_parse(const char *s, size_t len, struct rfc2231_params *out);
void rfc2231_free(struct rfc2231_params *p);

/* Value of parameter name (case-insensitive), or NULL. Borrowed pointer. */
const char *rfc2231_get(const struct rfc2231_params *p, const char *name);

/* Percent-decode s[0..len) into a new string (free()); bad escapes kept. */
char *rfc2231_percent_decode(const char *s, size_t len, size_t *outlen);

#endif
