/* pop3: a POP3 client session over lib/tls_stream (see pop3.h). */
#include "pop3.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "codec.h"
#include "sanitize.h"
#include "xalloc.h"

#define RBUF_SIZE 65536
/* What may be read and dropped of one message past its limit before the
 * session is given up. */
#define DISCARD_MAX ((uint64_t)64 * 1024 * 1024)

struct pop3 {
    struct tls_conn *c;
    struct tls_client *tls;       /* owned when made by pop3_open */
    bool own_tls;
    struct pop3_caps caps;
    bool broken;                  /* a failure left the session out of step */
    char *rbuf;
    size_t rpos, rlen;
    struct buf line;
    char *obuf;                   /* decoded body bytes */
};

/* ---- errors --------------------------------------------------------------- */

/* "what: <server text>" with the text sanitized; ERR_PROTO, account scope. */
static int server_err(struct err *e, enum err_code code, const char *what, const char *text,
                      size_t len)
{
    char *s;

    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    s = sanitize_term_dup(text, len, 0);
    err_set(e, code, "%s: %s", what, s);
    free(s);
    err_scope(e, ERR_SCOPE_ACCOUNT, false);
    return -1;
}

static int broken(struct pop3 *p, struct err *e)
{
    p->broken = true;
    if (e != NULL && e->scope < ERR_SCOPE_ACCOUNT)
        e->scope = ERR_SCOPE_ACCOUNT;
    return -1;
}

/* ---- reading -------------------------------------------------------------- */

static int fill(struct pop3 *p, struct err *e)
{
    size_t got;

    if (p->rpos > 0) {
        memmove(p->rbuf, p->rbuf + p->rpos, p->rlen - p->rpos);
        p->rlen -= p->rpos;
        p->rpos = 0;
    }
    if (p->rlen == RBUF_SIZE)
        die("pop3: read buffer full");   /* callers consume before they fill */
    if (tls_conn_read(p->c, p->rbuf + p->rlen, RBUF_SIZE - p->rlen, &got, e) < 0)
        return broken(p, e);
    if (got == 0) {
        err_set(e, ERR_NET, "the server closed the connection");
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        return broken(p, e);
    }
    p->rlen += got;
    return 0;
}

/* One line (CRLF or LF) into p->line without its line end; NUL bytes and
 * lines over POP3_LINE_MAX are errors. */
static int read_line(struct pop3 *p, struct err *e)
{
    buf_reset(&p->line);
    for (;;) {
        const char *start = p->rbuf + p->rpos;
        size_t avail = p->rlen - p->rpos;
        const char *nl = memchr(start, '\n', avail);
        size_t take = nl ? (size_t)(nl - start) + 1 : avail;

        if (p->line.len + take > POP3_LINE_MAX + 2) {
            err_set(e, ERR_LIMIT, "the server sent a line longer than %d bytes", POP3_LINE_MAX);
            return broken(p, e);
        }
        if (buf_append(&p->line, start, take) < 0)
            die("pop3: line buffer");
        p->rpos += take;
        if (nl)
            break;
        if (fill(p, e) < 0)
            return -1;
    }
    buf_truncate(&p->line, p->line.len - 1);
    if (p->line.len > 0 && p->line.data[p->line.len - 1] == '\r')
        buf_truncate(&p->line, p->line.len - 1);
    if (p->line.len > POP3_LINE_MAX) {
        err_set(e, ERR_LIMIT, "the server sent a line longer than %d bytes", POP3_LINE_MAX);
        return broken(p, e);
    }
    if (memchr(buf_cstr(&p->line), '\0', p->line.len) != NULL) {
        err_set(e, ERR_PROTO, "the server sent a NUL byte");
        return broken(p, e);
    }
    return 0;
}

/* Read a status line: 1 for +OK, 0 for -ERR (text in p->line), -1 else. */
static int read_status(struct pop3 *p, struct err *e)
{
    if (read_line(p, e) < 0)
        return -1;
    if (p->line.len >= 3 && memcmp(p->line.data, "+OK", 3) == 0 &&
        (p->line.len == 3 || p->line.data[3] == ' '))
        return 1;
    if (p->line.len >= 4 && memcmp(p->line.data, "-ERR", 4) == 0 &&
        (p->line.len == 4 || p->line.data[4] == ' '))
        return 0;
    server_err(e, ERR_PROTO, "unexpected reply from the server", p->line.data, p->line.len);
    return broken(p, e);
}

/* The rest of p->line after "+OK " / "-ERR ". */
static const char *status_text(const struct pop3 *p, size_t *len)
{
    size_t skip = p->line.data[0] == '+' ? 3 : 4;

    if (p->line.len > skip)
        skip++;
    *len = p->line.len - skip;
    return p->line.data + skip;
}

static int refused(struct pop3 *p, struct err *e, const char *what)
{
    size_t len;
    const char *t = status_text(p, &len);

    if (len == 0) {
        err_set(e, ERR_PROTO, "%s", what);
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    return server_err(e, ERR_PROTO, what, t, len);
}

/* ---- writing -------------------------------------------------------------- */

static int send_buf(struct pop3 *p, const struct buf *b, struct err *e)
{
    if (tls_conn_write(p->c, b->data, b->len, e) < 0)
        return broken(p, e);
    return 0;
}

static int send_cmd(struct pop3 *p, struct err *e, const char *fmt, ...) CORREO_PRINTF(3, 4);
static int send_cmd(struct pop3 *p, struct err *e, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(&b, fmt, ap);
    va_end(ap);
    if (rc < 0 || buf_append(&b, "\r\n", 2) < 0)
        die("pop3: command buffer");
    rc = send_buf(p, &b, e);
    explicit_bzero(b.data, b.len);
    buf_free(&b);
    return rc;
}

/* ---- multi-line replies --------------------------------------------------- */

/* Read the lines of a multi-line reply up to ".", calling fn on each
 * (unstuffed, without its line end). */
static int read_multiline(struct pop3 *p, int (*fn)(void *ctx, const char *l, size_t n,
                                                    struct err *e),
                          void *ctx, struct err *e)
{
    for (;;) {
        const char *l;
        size_t n;

        if (read_line(p, e) < 0)
            return -1;
        l = p->line.data ? p->line.data : "";
        n = p->line.len;
        if (n == 1 && l[0] == '.')
            return 0;
        if (n > 0 && l[0] == '.') {
            l++;
            n--;
        }
        if (fn != NULL && fn(ctx, l, n, e) < 0)
            return -1;
    }
}

static int capa_line(void *ctx, const char *l, size_t n, struct err *e)
{
    struct pop3_caps *c = ctx;
    char word[32];
    size_t w = 0;

    (void)e;
    while (w < n && l[w] != ' ' && w < sizeof(word) - 1) {
        word[w] = l[w];
        w++;
    }
    word[w] = '\0';
    if (strcasecmp(word, "STLS") == 0)
        c->stls = true;
    else if (strcasecmp(word, "UIDL") == 0)
        c->uidl = true;
    else if (strcasecmp(word, "TOP") == 0)
        c->top = true;
    else if (strcasecmp(word, "PIPELINING") == 0)
        c->pipelining = true;
    else if (strcasecmp(word, "USER") == 0)
        c->user = true;
    else if (strcasecmp(word, "SASL") == 0) {
        const char *s = l + w;
        size_t left = n - w;

        while (left > 0) {
            size_t k;

            while (left > 0 && *s == ' ') {
                s++;
                left--;
            }
            for (k = 0; k < left && s[k] != ' '; k++)
                ;
            if (k == 5 && strncasecmp(s, "PLAIN", 5) == 0)
                c->sasl_plain = true;
            s += k;
            left -= k;
        }
    }
    return 0;
}

static int do_capa(struct pop3 *p, struct err *e)
{
    int st;

    memset(&p->caps, 0, sizeof(p->caps));
    if (send_cmd(p, e, "CAPA") < 0 || (st = read_status(p, e)) < 0)
        return -1;
    if (st == 0)
        return 0;
    p->caps.capa = true;
    return read_multiline(p, capa_line, &p->caps, e);
}

/* ---- session -------------------------------------------------------------- */

static struct pop3 *session_new(struct tls_conn *c, struct tls_client *tls)
{
    struct pop3 *p = XNEW(struct pop3);

    p->c = c;
    p->tls = tls;
    p->rbuf = xmalloc(RBUF_SIZE);
    p->obuf = xmalloc(RBUF_SIZE + 2);
    buf_init(&p->line, 0);
    return p;
}

void pop3_close(struct pop3 *p)
{
    if (p == NULL)
        return;
    tls_conn_close(p->c);
    if (p->own_tls)
        tls_client_free(p->tls);
    free(p->rbuf);
    free(p->obuf);
    buf_free(&p->line);
    free(p);
}

int pop3_start(struct pop3 **out, struct tls_conn *c, struct tls_client *tls,
               const struct pop3_opts *o, struct err *e)
{
    struct pop3 *p = session_new(c, tls);
    int st;

    *out = NULL;
    st = read_status(p, e);
    if (st < 0) {
        err_prefix(e, "greeting");
        goto fail;
    }
    if (st == 0) {
        refused(p, e, "the server refused the connection");
        goto fail;
    }
    if (do_capa(p, e) < 0)
        goto fail;
    if (o->security == POP3_STARTTLS && !tls_conn_is_tls(c)) {
        if (p->caps.capa && !p->caps.stls) {
            err_set(e, ERR_TLS, "the server does not offer STLS; refusing to log in without "
                                "TLS (use pops:// for implicit TLS, or tls=none for a trusted "
                                "cleartext server)");
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            goto fail;
        }
        if (send_cmd(p, e, "STLS") < 0 || (st = read_status(p, e)) < 0)
            goto fail;
        if (st == 0) {
            refused(p, e, "the server refused STLS; refusing to log in without TLS");
            err_set(e, ERR_TLS, "%s", e->text);
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            goto fail;
        }
        /* Anything that came after "+OK" was sent before the handshake. */
        p->rpos = p->rlen = 0;
        if (tls == NULL) {
            err_set(e, ERR_INVAL, "STLS without a TLS context");
            goto fail;
        }
        if (tls_conn_start_tls(c, tls, o->host, e) < 0) {
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            goto fail;
        }
        if (do_capa(p, e) < 0)
            goto fail;
    }
    *out = p;
    return 0;
fail:
    if (e != NULL && e->scope < ERR_SCOPE_ACCOUNT)
        e->scope = ERR_SCOPE_ACCOUNT;
    pop3_close(p);
    return -1;
}

int pop3_open(struct pop3 **out, const struct pop3_opts *o, struct err *e)
{
    struct tls_client_opts topts;
    struct tls_client *tls = NULL;
    struct tls_conn *c = NULL;
    int timeout = o->timeout_ms > 0 ? o->timeout_ms : POP3_DEFAULT_TIMEOUT_MS;

    *out = NULL;
    memset(&topts, 0, sizeof(topts));
    topts.ca_file = o->tls_ca_file && o->tls_ca_file[0] ? o->tls_ca_file : NULL;
    topts.pin = o->tls_fingerprint && o->tls_fingerprint[0] ? o->tls_fingerprint : NULL;
    if (o->security != POP3_PLAIN && tls_client_new(&tls, &topts, e) < 0) {
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    if (tls_conn_connect(&c, o->host, o->port, timeout, e) < 0) {
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        tls_client_free(tls);
        return -1;
    }
    if (o->security == POP3_TLS && tls_conn_start_tls(c, tls, o->host, e) < 0) {
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        tls_conn_close(c);
        tls_client_free(tls);
        return -1;
    }
    if (pop3_start(out, c, tls, o, e) < 0) {
        tls_client_free(tls);
        return -1;
    }
    (*out)->own_tls = true;
    return 0;
}

const struct pop3_caps *pop3_caps(const struct pop3 *p)
{
    return &p->caps;
}

bool pop3_is_tls(const struct pop3 *p)
{
    return tls_conn_is_tls(p->c);
}

int pop3_auth(struct pop3 *p, const char *user, const char *pass, struct err *e)
{
    int st;

    if (strpbrk(user, "\r\n") != NULL || strpbrk(pass, "\r\n") != NULL)
        return err_set(e, ERR_INVAL, "user name or password contains a line break");
    if (p->caps.sasl_plain) {
        struct buf raw = BUF_INIT, b64 = BUF_INIT;
        int rc = 0;

        if (buf_putc(&raw, '\0') < 0 || buf_puts(&raw, user) < 0 || buf_putc(&raw, '\0') < 0 ||
            buf_puts(&raw, pass) < 0 || codec_b64_encode(raw.data, raw.len, &b64) < 0)
            die("pop3: auth buffer");
        rc = send_cmd(p, e, "AUTH PLAIN %s", buf_cstr(&b64));
        explicit_bzero(raw.data, raw.len);
        explicit_bzero(b64.data, b64.len);
        buf_free(&raw);
        buf_free(&b64);
        if (rc < 0 || (st = read_status(p, e)) < 0)
            return -1;
        if (st == 0)
            return refused(p, e, "login refused");
        return 0;
    }
    if (send_cmd(p, e, "USER %s", user) < 0 || (st = read_status(p, e)) < 0)
        return -1;
    if (st == 0)
        return refused(p, e, "login refused");
    if (send_cmd(p, e, "PASS %s", pass) < 0 || (st = read_status(p, e)) < 0)
        return -1;
    if (st == 0)
        return refused(p, e, "login refused");
    return 0;
}

/* ---- LIST and UIDL -------------------------------------------------------- */

static int parse_number(const char **s, const char *end, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = *s;

    if (p == end || *p < '0' || *p > '9')
        return -1;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');

        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
        p++;
    }
    *s = p;
    *out = v;
    return 0;
}

int pop3_parse_list_line(const char *line, size_t len, unsigned *num, uint64_t *size,
                         struct err *e)
{
    const char *s = line, *end = line + len;
    uint64_t n, sz;

    if (parse_number(&s, end, POP3_MSGS_MAX, &n) < 0 || n == 0 || s == end || *s != ' ')
        goto bad;
    while (s < end && *s == ' ')
        s++;
    if (parse_number(&s, end, UINT64_MAX / 4, &sz) < 0)
        goto bad;
    /* RFC 1939 allows more after the size: it is ignored. */
    if (s != end && *s != ' ')
        goto bad;
    *num = (unsigned)n;
    *size = sz;
    return 0;
bad:
    return server_err(e, ERR_PROTO, "bad LIST line", line, len);
}

int pop3_parse_uidl_line(const char *line, size_t len, unsigned *num,
                         char uidl[POP3_UIDL_MAX + 1], struct err *e)
{
    const char *s = line, *end = line + len;
    uint64_t n;
    size_t k;

    if (parse_number(&s, end, POP3_MSGS_MAX, &n) < 0 || n == 0 || s == end || *s != ' ')
        goto bad;
    while (s < end && *s == ' ')
        s++;
    k = (size_t)(end - s);
    while (k > 0 && s[k - 1] == ' ')
        k--;
    if (k == 0 || k > POP3_UIDL_MAX)
        goto bad;
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            goto bad;
    memcpy(uidl, s, k);
    uidl[k] = '\0';
    *num = (unsigned)n;
    return 0;
bad:
    return server_err(e, ERR_PROTO, "bad UIDL line", line, len);
}

struct list_ctx {
    struct pop3_msg *v;
    size_t n, cap;
    size_t uidl_seen;
};

static int list_line(void *ctx, const char *l, size_t n, struct err *e)
{
    struct list_ctx *c = ctx;
    unsigned num;
    uint64_t size;

    if (pop3_parse_list_line(l, n, &num, &size, e) < 0)
        return -1;
    if ((c->n > 0 && num <= c->v[c->n - 1].num) || c->n >= POP3_MSGS_MAX)
        return server_err(e, ERR_PROTO, "LIST out of order or too long", l, n);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
    }
    c->v[c->n].num = num;
    c->v[c->n].size = size;
    c->v[c->n].uidl[0] = '\0';
    c->n++;
    return 0;
}

static struct pop3_msg *find_num(struct list_ctx *c, unsigned num)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (c->v[mid].num == num)
            return &c->v[mid];
        if (c->v[mid].num < num)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int uidl_line(void *ctx, const char *l, size_t n, struct err *e)
{
    struct list_ctx *c = ctx;
    char uidl[POP3_UIDL_MAX + 1];
    struct pop3_msg *m;
    unsigned num;

    if (pop3_parse_uidl_line(l, n, &num, uidl, e) < 0)
        return -1;
    m = find_num(c, num);
    if (m == NULL)
        return server_err(e, ERR_PROTO, "UIDL names a message LIST did not", l, n);
    if (m->uidl[0] != '\0')
        return server_err(e, ERR_PROTO, "UIDL names a message twice", l, n);
    memcpy(m->uidl, uidl, sizeof(uidl));
    c->uidl_seen++;
    return 0;
}

static int uidl_cmp(const void *a, const void *b)
{
    const struct pop3_msg *const *x = a, *const *y = b;

    return strcmp((*x)->uidl, (*y)->uidl);
}

int pop3_list(struct pop3 *p, bool uidl, struct pop3_msg **out, size_t *n, bool *uidl_ok,
              struct err *e)
{
    struct list_ctx c = {0};
    int st;

    *out = NULL;
    *n = 0;
    *uidl_ok = false;
    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    if (send_cmd(p, e, "LIST") < 0 || (st = read_status(p, e)) < 0)
        return -1;
    if (st == 0)
        return refused(p, e, "LIST refused");
    if (read_multiline(p, list_line, &c, e) < 0)
        goto fail;
    if (uidl && c.n > 0) {
        if (send_cmd(p, e, "UIDL") < 0 || (st = read_status(p, e)) < 0)
            goto fail;
        if (st == 1) {
            if (read_multiline(p, uidl_line, &c, e) < 0)
                goto fail;
            if (c.uidl_seen != c.n) {
                err_set(e, ERR_PROTO, "UIDL listed %zu of %zu messages", c.uidl_seen, c.n);
                err_scope(e, ERR_SCOPE_ACCOUNT, false);
                goto fail;
            }
            /* A UIDL must name one message only. */
            struct pop3_msg **sorted = xreallocarray(NULL, c.n, sizeof(*sorted));
            bool dup = false;

            for (size_t i = 0; i < c.n; i++)
                sorted[i] = &c.v[i];
            qsort(sorted, c.n, sizeof(*sorted), uidl_cmp);
            for (size_t i = 1; i < c.n && !dup; i++)
                dup = strcmp(sorted[i - 1]->uidl, sorted[i]->uidl) == 0;
            free(sorted);
            if (dup) {
                err_set(e, ERR_PROTO, "the server gave two messages the same UIDL");
                err_scope(e, ERR_SCOPE_ACCOUNT, false);
                goto fail;
            }
            *uidl_ok = true;
        }
    } else if (uidl) {
        *uidl_ok = true;   /* nothing to identify */
    }
    *out = c.v;
    *n = c.n;
    return 0;
fail:
    free(c.v);
    return broken(p, e);
}

/* ---- bodies --------------------------------------------------------------- */

enum { D_BOL = 0, D_MID, D_CR, D_DOT, D_DOTCR, D_DONE };

void pop3_dot_init(struct pop3_dot *d)
{
    d->state = D_BOL;
}

size_t pop3_dot_feed(struct pop3_dot *d, const char *in, size_t len, char *out,
                     size_t *out_len, bool *done)
{
    size_t i = 0, o = 0;

    *done = false;
    while (i < len) {
        switch (d->state) {
        case D_BOL:
            if (in[i] == '.') {
                d->state = D_DOT;
                i++;
            } else {
                d->state = D_MID;
            }
            break;
        case D_DOT:
            if (in[i] == '\r') {
                d->state = D_DOTCR;
                i++;
            } else if (in[i] == '\n') {
                i++;
                d->state = D_DONE;
                *out_len = o;
                *done = true;
                return i;
            } else {
                d->state = D_MID;   /* the stuffed dot is dropped */
            }
            break;
        case D_DOTCR:
            if (in[i] == '\n') {
                i++;
                d->state = D_DONE;
                *out_len = o;
                *done = true;
                return i;
            }
            out[o++] = '\r';
            d->state = D_MID;
            break;
        case D_CR:
            if (in[i] == '\n') {
                out[o++] = '\n';
                i++;
                d->state = D_BOL;
            } else {
                out[o++] = '\r';
                d->state = D_MID;
            }
            break;
        case D_MID: {
            const char *nl = memchr(in + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - in) : len;
            size_t k = end - i;

            if (nl != NULL) {
                if (k > 0 && in[end - 1] == '\r') {
                    memcpy(out + o, in + i, k - 1);
                    o += k - 1;
                } else {
                    memcpy(out + o, in + i, k);
                    o += k;
                }
                out[o++] = '\n';
                i = end + 1;
                d->state = D_BOL;
            } else if (k > 0 && in[len - 1] == '\r') {
                memcpy(out + o, in + i, k - 1);
                o += k - 1;
                i = len;
                d->state = D_CR;
            } else {
                memcpy(out + o, in + i, k);
                o += k;
                i = len;
            }
            break;
        }
        default:
            *out_len = o;
            *done = true;
            return i;
        }
    }
    *out_len = o;
    return i;
}

/* Read one body up to its terminator into the sink (or nowhere when sink is
 * NULL), or into collect.  Over limit: *over is set and the rest is
 * dropped. */
static int read_body(struct pop3 *p, size_t idx, uint64_t limit, const struct pop3_sink *sink,
                     struct buf *collect, bool *over, struct err *e)
{
    struct pop3_dot d;
    uint64_t total = 0, dropped = 0;
    bool done = false;

    *over = false;
    pop3_dot_init(&d);
    while (!done) {
        size_t used, olen;

        if (p->rpos == p->rlen && fill(p, e) < 0) {
            if (e != NULL && e->code == ERR_NET)
                err_prefix(e, "in the middle of a message");
            return -1;
        }
        used = pop3_dot_feed(&d, p->rbuf + p->rpos, p->rlen - p->rpos, p->obuf, &olen, &done);
        p->rpos += used;
        if (olen == 0)
            continue;
        if (!*over && total + olen > limit) {
            *over = true;
        }
        total += olen;
        if (*over) {
            dropped += olen;
            if (dropped > DISCARD_MAX) {
                err_set(e, ERR_LIMIT, "the server sent far more than it announced");
                return broken(p, e);
            }
            continue;
        }
        if (collect != NULL) {
            if (buf_append(collect, p->obuf, olen) < 0)
                *over = true;
        } else if (sink != NULL && sink->data(sink->ctx, idx, p->obuf, olen, e) < 0) {
            return broken(p, e);
        }
    }
    return 0;
}

int pop3_retr(struct pop3 *p, const unsigned *nums, const uint64_t *limits, size_t n,
              const struct pop3_sink *sink, struct err *e)
{
    size_t window = p->caps.pipelining ? POP3_WINDOW : 1;
    size_t sent = 0, done = 0;

    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    while (done < n) {
        struct err me;
        bool over;
        int st;

        if (sent == done || (sent < n && sent - done <= window / 2)) {
            struct buf b = BUF_INIT;

            while (sent < n && sent - done < window) {
                if (buf_printf(&b, "RETR %u\r\n", nums[sent]) < 0)
                    die("pop3: command buffer");
                sent++;
            }
            st = send_buf(p, &b, e);
            buf_free(&b);
            if (st < 0)
                return -1;
        }
        if ((st = read_status(p, e)) < 0)
            return -1;
        if (st == 0) {
            size_t len;
            const char *t = status_text(p, &len);
            char *s = sanitize_term_dup(t, len, 0);

            err_set(&me, ERR_PROTO, "RETR %u refused: %s", nums[done], s);
            me.temporary = true;
            free(s);
            if (sink->end(sink->ctx, done, &me, e) < 0)
                return broken(p, e);
            done++;
            continue;
        }
        if (sink->begin(sink->ctx, done, e) < 0)
            return broken(p, e);
        if (read_body(p, done, limits[done], sink, NULL, &over, e) < 0)
            return -1;
        if (over) {
            err_set(&me, ERR_LIMIT, "message %u is larger than announced or allowed (%llu bytes)",
                    nums[done], (unsigned long long)limits[done]);
            if (sink->end(sink->ctx, done, &me, e) < 0)
                return broken(p, e);
        } else if (sink->end(sink->ctx, done, NULL, e) < 0) {
            return broken(p, e);
        }
        done++;
    }
    return 0;
}

int pop3_top(struct pop3 *p, unsigned num, unsigned lines, struct buf *out, struct err *e)
{
    bool over;
    int st;

    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    if (send_cmd(p, e, "TOP %u %u", num, lines) < 0 || (st = read_status(p, e)) < 0)
        return -1;
    if (st == 0) {
        refused(p, e, "TOP refused");
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    if (read_body(p, 0, UINT64_MAX, NULL, out, &over, e) < 0)
        return -1;
    if (over) {
        err_set(e, ERR_LIMIT, "the header of message %u is too long", num);
        return -1;
    }
    return 0;
}

int pop3_dele(struct pop3 *p, const unsigned *nums, size_t n, bool *ok, struct err *e)
{
    size_t window = p->caps.pipelining ? POP3_WINDOW : 1;
    size_t sent = 0, done = 0;

    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    while (done < n) {
        int st;

        if (sent == done) {
            struct buf b = BUF_INIT;

            while (sent < n && sent - done < window) {
                if (buf_printf(&b, "DELE %u\r\n", nums[sent]) < 0)
                    die("pop3: command buffer");
                sent++;
            }
            st = send_buf(p, &b, e);
            buf_free(&b);
            if (st < 0)
                return -1;
        }
        if ((st = read_status(p, e)) < 0)
            return -1;
        ok[done++] = st == 1;
    }
    return 0;
}

int pop3_rset(struct pop3 *p, struct err *e)
{
    int st;

    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    if (send_cmd(p, e, "RSET") < 0 || (st = read_status(p, e)) < 0)
        return -1;
    return st == 1 ? 0 : refused(p, e, "RSET refused");
}

int pop3_quit(struct pop3 *p, struct err *e)
{
    int st;

    if (p->broken)
        return err_set(e, ERR_PROTO, "the session is out of step");
    if (send_cmd(p, e, "QUIT") < 0 || (st = read_status(p, e)) < 0)
        return -1;
    return st == 1 ? 0 : refused(p, e, "QUIT refused (deletions may not have happened)");
}
