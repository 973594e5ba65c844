#include "rfc2231.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "charset.h"

/* One raw "name[*N][*]=value" segment before continuations are joined. */
struct rfc2231_seg {
    char *base;      /* lower-case name without the star suffixes */
    long index;      /* -1: no "*N" */
    bool extended;
    char *raw;       /* unquoted value */
};

struct rfc2231_segs {
    struct rfc2231_seg *v;
    size_t n;
};

static bool rfc2231_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static char *rfc2231_lower(const char *s, size_t n)
{
    char *r = xmemdup0(s, n);
    for (size_t i = 0; i < n; i++)
        if (r[i] >= 'A' && r[i] <= 'Z')
            r[i] = (char)(r[i] - 'A' + 'a');
    return r;
}

static size_t rfc2231_skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && rfc2231_ws(s[i]))
        i++;
    return i;
}

/* Read a value (quoted-string or token up to ';'); returns the new index. */
static size_t rfc2231_read_value(const char *s, size_t len, size_t i, char **out)
{
    struct buf b = BUF_INIT;

    if (i < len && s[i] == '"') {
        for (i++; i < len && s[i] != '"'; i++) {
            if (s[i] == '\\' && i + 1 < len)
                i++;
            if (buf_putc(&b, s[i]) < 0)
                die("rfc2231: unbounded buffer refused an append");
        }
        if (i < len)
            i++;
    } else {
        size_t st = i;
        while (i < len && s[i] != ';')
            i++;
        size_t e = i;
        while (e > st && rfc2231_ws(s[e - 1]))
            e--;
        if (buf_append(&b, s + st, e - st) < 0)
            die("rfc2231: unbounded buffer refused an append");
    }
    *out = buf_steal(&b, NULL);
    return i;
}

/* Split "name*N*" into base/index/extended. */
static void rfc2231_split_name(char *name, struct rfc2231_seg *seg)
{
    char *star = strchr(name, '*');

    seg->index = -1;
    seg->extended = false;
    if (!star) {
        seg->base = name;
        return;
    }
    *star = '\0';
    seg->base = name;
    star++;
    if (*star >= '0' && *star <= '9') {
        char *end;
        seg->index = strtol(star, &end, 10);
        if (seg->index >= RFC2231_MAX_SECTIONS)
            seg->index = RFC2231_MAX_SECTIONS;
        star = end;
        if (*star == '*') {
            seg->extended = true;
            star++;
        }
    } else {
        seg->extended = true;
    }
}

static void rfc2231_add_seg(struct rfc2231_segs *segs, char *name, char *raw)
{
    struct rfc2231_seg *seg;

    segs->v = xreallocarray(segs->v, segs->n + 1, sizeof *segs->v);
    seg = &segs->v[segs->n++];
    rfc2231_split_name(name, seg);
    seg->raw = raw;
}

/* Parse one "name=value" at s[i]; returns index after it (at ';' or end). */
static size_t rfc2231_read_param(const char *s, size_t len, size_t i,
                                 struct rfc2231_segs *segs, size_t cap)
{
    size_t st = i;
    char *name, *raw;

    while (i < len && s[i] != '=' && s[i] != ';' && !rfc2231_ws(s[i]))
        i++;
    size_t nend = i;
    i = rfc2231_skip_ws(s, len, i);
    if (i >= len || s[i] != '=' || nend == st) {
        while (i < len && s[i] != ';')
            i++;
        return i;
    }
    i = rfc2231_skip_ws(s, len, i + 1);
    i = rfc2231_read_value(s, len, i, &raw);
    while (i < len && s[i] != ';')
        i++;
    if (segs->n >= cap) {
        free(raw);
        return i;
    }
    name = rfc2231_lower(s + st, nend - st);
    rfc2231_add_seg(segs, name, raw);
    return i;
}

static int rfc2231_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *rfc2231_percent_decode(const char *s, size_t len, size_t *outlen)
{
    char *r = xmalloc(len + 1);
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%' && i + 2 < len && rfc2231_hex(s[i + 1]) >= 0 && rfc2231_hex(s[i + 2]) >= 0) {
            r[n++] = (char)(rfc2231_hex(s[i + 1]) * 16 + rfc2231_hex(s[i + 2]));
            i += 2;
        } else {
            r[n++] = s[i];
        }
    }
    r[n] = '\0';
    if (outlen)
        *outlen = n;
    return r;
}

static int rfc2231_seg_cmp(const void *a, const void *b)
{
    const struct rfc2231_seg *x = a, *y = b;
    int c = strcmp(x->base, y->base);

    if (c != 0)
        return c;
    return (x->index > y->index) - (x->index < y->index);
}

/* Append one extended raw value: the first may carry charset'lang'. */
static void rfc2231_ext_append(const char *raw, bool first, struct buf *bytes,
                               char **charset, char **lang)
{
    const char *p = raw;
    const char *q1, *q2;
    size_t n;
    char *dec;

    if (first && (q1 = strchr(raw, '\'')) && (q2 = strchr(q1 + 1, '\''))) {
        *charset = xstrndup(raw, (size_t)(q1 - raw));
        if (q2 > q1 + 1)
            *lang = xstrndup(q1 + 1, (size_t)(q2 - q1 - 1));
        p = q2 + 1;
    }
    dec = rfc2231_percent_decode(p, strlen(p), &n);
    if (buf_append(bytes, dec, n) < 0)
        die("rfc2231: unbounded buffer refused an append");
    free(dec);
}

/* Join segments v[0..n) (same base, sorted) into one parameter. */
static void rfc2231_join(struct rfc2231_seg *v, size_t n, struct rfc2231_params *out)
{
    struct rfc2231_param *prm;
    struct buf bytes = BUF_INIT, utf = BUF_INIT;
    char *charset = NULL, *lang = NULL;
    bool ext = false;
    long want = 0;
    size_t i;

    /* Prefer a whole "name*" or "name" over continuations. */
    for (i = 0; i < n && v[i].index < 0; i++)
        ;
    if (i > 0) {
        size_t pick = 0;
        for (size_t k = 0; k < i; k++)
            if (v[k].extended)
                pick = k;
        v = &v[pick];
        n = 1;
    } else {
        v = &v[i];
        n -= i;
    }
    for (i = 0; i < n; i++) {
        if (v[i].index >= 0 && v[i].index != want)
            break;
        want++;
        if (v[i].extended) {
            ext = true;
            rfc2231_ext_append(v[i].raw, i == 0, &bytes, &charset, &lang);
        } else if (buf_puts(&bytes, v[i].raw) < 0) {
            die("rfc2231: unbounded buffer refused an append");
        }
    }
    if (ext) {
        if (charset_to_utf8(charset, buf_cstr(&bytes), bytes.len, &utf, &out->charset_flags) < 0)
            die("rfc2231: unbounded buffer refused an append");
    } else if (charset_fix_utf8(buf_cstr(&bytes), bytes.len, &utf, &out->charset_flags) < 0) {
        die("rfc2231: unbounded buffer refused an append");
    }
    out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
    prm = &out->v[out->n++];
    prm->name = xstrdup(v[0].base);
    prm->value = buf_steal(&utf, NULL);
    prm->lang = lang;
    prm->extended = ext;
    free(charset);
    buf_free(&bytes);
}

static void rfc2231_assemble(struct rfc2231_segs *segs, struct rfc2231_params *out)
{
    size_t i = 0;

    if (segs->n > 0)
        qsort(segs->v, segs->n, sizeof *segs->v, rfc2231_seg_cmp);
    while (i < segs->n) {
        size_t j = i + 1;
        while (j < segs->n && strcmp(segs->v[j].base, segs->v[i].base) == 0)
            j++;
        rfc2231_join(&segs->v[i], j - i, out);
        i = j;
    }
}

void rfc2231_parse(const char *s, size_t len, struct rfc2231_params *out)
{
    struct rfc2231_segs segs = {NULL, 0};
    size_t i = rfc2231_skip_ws(s, len, 0), st = i, e;
    size_t cap = RFC2231_MAX_PARAMS * 4;

    memset(out, 0, sizeof *out);
    while (i < len && s[i] != ';')
        i++;
    for (e = i; e > st && rfc2231_ws(s[e - 1]); e--)
        ;
    out->value = rfc2231_lower(s + st, e - st);
    while (i < len) {
        i = rfc2231_skip_ws(s, len, i + 1);   /* past ';' */
        if (i < len && s[i] == ';')
            continue;
        if (segs.n >= cap)
            out->dropped = true;
        i = rfc2231_read_param(s, len, i, &segs, cap);
    }
    rfc2231_assemble(&segs, out);
    if (out->n > RFC2231_MAX_PARAMS) {
        for (size_t k = RFC2231_MAX_PARAMS; k < out->n; k++) {
            free(out->v[k].name);
            free(out->v[k].value);
            free(out->v[k].lang);
        }
        out->n = RFC2231_MAX_PARAMS;
        out->dropped = true;
    }
    for (size_t k = 0; k < segs.n; k++) {
        free(segs.v[k].base);
        free(segs.v[k].raw);
    }
    free(segs.v);
}

void rfc2231_free(struct rfc2231_params *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        free(p->v[i].value);
        free(p->v[i].lang);
    }
    free(p->v);
    free(p->value);
    memset(p, 0, sizeof *p);
}

const char *rfc2231_get(const struct rfc2231_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcasecmp(p->v[i].name, name) == 0)
            return p->v[i].value;
    return NULL;
}
