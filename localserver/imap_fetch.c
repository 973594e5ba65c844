/*
 * imap_fetch: FETCH data from one message's bytes (see imap_fetch.h).
 */
#include "imap_fetch.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "message.h"
#include "xalloc.h"

struct imap_fetch_msg {
    const char *raw;
    size_t len;
    struct message *msg;
};

/* ---- CRLF form ---------------------------------------------------------- */

uint64_t imap_crlf_size(const char *raw, size_t start, size_t end)
{
    uint64_t n = end - start;

    for (size_t i = start; i < end; i++) {
        const char *nl = memchr(raw + i, '\n', end - i);
        if (!nl)
            break;
        i = (size_t)(nl - raw);
        if (i == 0 || raw[i - 1] != '\r')
            n++;
    }
    return n;
}

int imap_crlf_append(struct buf *out, const char *raw, size_t start, size_t end,
                     uint64_t origin, uint64_t count)
{
    uint64_t pos = 0;                 /* position in the CRLF form */
    uint64_t stop = count == UINT64_MAX || origin > UINT64_MAX - count
                        ? UINT64_MAX : origin + count;
    size_t i = start;

    while (i < end && pos < stop) {
        const char *nl = memchr(raw + i, '\n', end - i);
        size_t run_end = nl ? (size_t)(nl - raw) : end;   /* bytes before the LF */
        uint64_t run = run_end - i;

        /* the plain run raw[i..run_end) occupies [pos, pos + run) */
        if (pos + run > origin) {
            uint64_t from = origin > pos ? origin - pos : 0;
            uint64_t to = stop - pos < run ? stop - pos : run;
            if (to > from && buf_append(out, raw + i + from, (size_t)(to - from)) < 0)
                return -1;
        }
        pos += run;
        i = run_end;
        if (!nl || pos >= stop)
            break;
        /* the line end: "\n" as is after a CR, else "\r\n" */
        if (i > 0 && raw[i - 1] == '\r') {
            if (pos >= origin && buf_putc(out, '\n') < 0)
                return -1;
            pos++;
        } else {
            if (pos >= origin && pos < stop && buf_putc(out, '\r') < 0)
                return -1;
            pos++;
            if (pos >= origin && pos < stop && buf_putc(out, '\n') < 0)
                return -1;
            pos++;
        }
        i++;
    }
    return 0;
}

/* Lines of a body: its line ends.  The last line of a MIME part has none
 * (the line end before a boundary belongs to the boundary) and is not
 * counted, as Dovecot and Cyrus count. */
static uint64_t body_lines(const char *raw, size_t start, size_t end)
{
    uint64_t n = 0;

    for (size_t i = start; i < end; i++) {
        const char *nl = memchr(raw + i, '\n', end - i);
        if (!nl)
            break;
        i = (size_t)(nl - raw);
        n++;
    }
    return n;
}

/* ---- header fields ------------------------------------------------------ */

struct hfield {
    const char *name;
    size_t nlen;
    size_t vstart, vend;      /* value after the colon, up to the line end */
    size_t fstart, fend;      /* the whole field, line end(s) included */
};

static size_t line_end(const char *raw, size_t pos, size_t end)
{
    const char *nl = memchr(raw + pos, '\n', end - pos);
    return nl ? (size_t)(nl - raw) + 1 : end;
}

static bool blank_line(const char *raw, size_t pos, size_t le)
{
    return pos < le && (raw[pos] == '\n' || (raw[pos] == '\r' && (le - pos == 1 ||
                                                                  raw[pos + 1] == '\n')));
}

/* Next field of the header block raw[*pos..end); false at the blank line or
 * the end.  A line without a colon is a field with nlen 0. */
static bool hfield_next(const char *raw, size_t *pos, size_t end, struct hfield *f)
{
    size_t p = *pos, le, colon;

    if (p >= end)
        return false;
    le = line_end(raw, p, end);
    if (blank_line(raw, p, le))
        return false;
    f->fstart = p;
    f->name = raw + p;
    for (colon = p; colon < le && raw[colon] != ':'; colon++)
        ;
    if (colon < le) {
        size_t nl = colon - p;
        while (nl > 0 && (raw[p + nl - 1] == ' ' || raw[p + nl - 1] == '\t'))
            nl--;
        f->nlen = nl;
        f->vstart = colon + 1;
    } else {
        f->nlen = 0;
        f->vstart = p;
    }
    p = le;
    while (p < end && (raw[p] == ' ' || raw[p] == '\t'))
        p = line_end(raw, p, end);
    f->fend = p;
    f->vend = p;
    *pos = p;
    return true;
}

/* The value unfolded (CR and LF dropped), leading white space skipped. */
static char *hfield_value(const char *raw, const struct hfield *f, size_t *len)
{
    char *s = xmalloc(f->vend - f->vstart + 1);
    size_t n = 0, i = f->vstart;

    while (i < f->vend && (raw[i] == ' ' || raw[i] == '\t'))
        i++;
    for (; i < f->vend; i++)
        if (raw[i] != '\r' && raw[i] != '\n' && raw[i] != '\0')   /* no NUL in a string */
            s[n++] = raw[i];
    s[n] = '\0';
    *len = n;
    return s;
}

static bool hname_is(const struct hfield *f, const char *name)
{
    return f->nlen == strlen(name) && strncasecmp(f->name, name, f->nlen) == 0;
}

/* First field called name in raw[start..end), unfolded, or NULL. */
static char *header_get(const char *raw, size_t start, size_t end, const char *name,
                        size_t *len)
{
    struct hfield f;
    size_t pos = start;

    while (hfield_next(raw, &pos, end, &f))
        if (hname_is(&f, name))
            return hfield_value(raw, &f, len);
    return NULL;
}

/* ---- structured values (Content-Type, Content-Disposition) -------------- */

struct param {
    char *name, *value;
};

struct ctype {
    char *type, *subtype;     /* as written; NULL if unusable */
    struct param *p;
    size_t n;
};

static bool is_tspecial(char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static bool is_token_char(unsigned char c)
{
    return c > 32 && c < 127 && !is_tspecial((char)c);
}

/* Skip white space and (nested) comments. */
static size_t skip_cfws(const char *s, size_t i, size_t n)
{
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < n && s[i] == '(') {
            int depth = 0;
            for (; i < n; i++) {
                if (s[i] == '\\' && i + 1 < n) {
                    i++;
                } else if (s[i] == '(') {
                    depth++;
                } else if (s[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
            }
            continue;
        }
        return i;
    }
}

static char *read_token(const char *s, size_t *i, size_t n)
{
    size_t st = *i;

    while (*i < n && is_token_char((unsigned char)s[*i]))
        (*i)++;
    return *i > st ? xstrndup(s + st, *i - st) : NULL;
}

/* A quoted string at s[*i] == '"', unescaped. */
static char *read_quoted(const char *s, size_t *i, size_t n)
{
    char *v = xmalloc(n - *i + 1);
    size_t k = 0;

    for ((*i)++; *i < n && s[*i] != '"'; (*i)++) {
        if (s[*i] == '\\' && *i + 1 < n)
            (*i)++;
        v[k++] = s[*i];
    }
    if (*i < n)
        (*i)++;
    v[k] = '\0';
    return v;
}

static void params_free(struct param *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].name);
        free(p[i].value);
    }
    free(p);
}

#define MAX_PARAMS 64

/* "; name=value" pairs from s[i..n). */
static void parse_params(const char *s, size_t i, size_t n, struct param **pv, size_t *pn)
{
    *pv = NULL;
    *pn = 0;
    while (i < n) {
        char *name, *value;

        i = skip_cfws(s, i, n);
        if (i < n && s[i] != ';') {     /* junk: skip to the next ';' */
            while (i < n && s[i] != ';')
                i++;
        }
        if (i >= n)
            break;
        i = skip_cfws(s, i + 1, n);
        name = read_token(s, &i, n);
        if (!name)
            continue;
        i = skip_cfws(s, i, n);
        if (i >= n || s[i] != '=') {
            free(name);
            continue;
        }
        i = skip_cfws(s, i + 1, n);
        if (i < n && s[i] == '"')
            value = read_quoted(s, &i, n);
        else
            value = read_token(s, &i, n);
        if (!value || *pn >= MAX_PARAMS) {
            free(name);
            free(value);
            continue;
        }
        *pv = xreallocarray(*pv, *pn + 1, sizeof **pv);
        (*pv)[*pn].name = name;
        (*pv)[(*pn)++].value = value;
    }
}

/* name*N or name*N* of RFC 2231: the length of "name", the index and
 * whether the section is extended; false for other names. */
static bool param_section(const char *name, size_t *base, unsigned long *idx, bool *ext)
{
    const char *star = strchr(name, '*');
    char *end;

    if (!star || star == name || star[1] < '0' || star[1] > '9')
        return false;
    *idx = strtoul(star + 1, &end, 10);
    *ext = *end == '*';
    if (*ext)
        end++;
    if (*end != '\0' || *idx > 1000)
        return false;
    *base = (size_t)(star - name);
    return true;
}

static char *buf_take(struct buf *b);

/* Join RFC 2231 continuations (name*0, name*1, ...) into one parameter
 * where section 0 stands: "name", or "name*" when section 0 is extended
 * (its value stays percent-encoded, charset'language' prefix included).
 * Sections that do not start at 0 or leave a gap stay as they are. */
static void join_continuations(struct param **pv, size_t *pn)
{
    struct param *in = *pv, *out = NULL;
    size_t n = *pn, k = 0;
    bool *used = xcalloc(n ? n : 1, sizeof *used);

    for (size_t i = 0; i < n; i++) {
        size_t base, b2, zero = n;
        unsigned long idx, i2;
        bool ext, e2;

        if (used[i])
            continue;
        out = xreallocarray(out, k + 1, sizeof *out);
        /* a section of a name that has a section 0 (maybe further on) */
        if (param_section(in[i].name, &base, &idx, &ext)) {
            for (size_t j = 0; j < n && zero == n; j++)
                if (!used[j] && param_section(in[j].name, &b2, &i2, &e2) && i2 == 0 &&
                    b2 == base && strncasecmp(in[j].name, in[i].name, base) == 0)
                    zero = j;
        }
        if (zero == n) {
            out[k].name = xstrdup(in[i].name);
            out[k++].value = xstrdup(in[i].value);
            used[i] = true;
            continue;
        }
        {
            struct buf v = BUF_INIT;
            unsigned long want = 0;
            bool found = true;

            (void)param_section(in[zero].name, &base, &idx, &ext);
            while (found) {
                found = false;
                for (size_t j = 0; j < n; j++) {
                    if (!used[j] && param_section(in[j].name, &b2, &i2, &e2) && b2 == base &&
                        strncasecmp(in[j].name, in[zero].name, base) == 0 && i2 == want) {
                        if (buf_puts(&v, in[j].value) < 0)
                            die("imap_fetch: unbounded buffer refused bytes");
                        used[j] = true;
                        want++;
                        found = true;
                        break;
                    }
                }
            }
            out[k].name = xasprintf("%.*s%s", (int)base, in[zero].name, ext ? "*" : "");
            out[k].value = buf_take(&v);
            if (!out[k].value)
                out[k].value = xstrdup("");
            k++;
        }
    }
    free(used);
    params_free(in, n);
    *pv = out;
    *pn = k;
}

/* "type/subtype; params" (subtype NULL for a disposition). */
static void parse_ctype(const char *s, size_t n, bool with_subtype, struct ctype *ct)
{
    size_t i = skip_cfws(s, 0, n);

    memset(ct, 0, sizeof *ct);
    ct->type = read_token(s, &i, n);
    if (ct->type && with_subtype) {
        i = skip_cfws(s, i, n);
        if (i < n && s[i] == '/') {
            i = skip_cfws(s, i + 1, n);
            ct->subtype = read_token(s, &i, n);
        }
        if (!ct->subtype) {
            free(ct->type);
            ct->type = NULL;
        }
    }
    parse_params(s, i, n, &ct->p, &ct->n);
    join_continuations(&ct->p, &ct->n);
}

static void ctype_free(struct ctype *ct)
{
    free(ct->type);
    free(ct->subtype);
    params_free(ct->p, ct->n);
    memset(ct, 0, sizeof *ct);
}

/* ---- output helpers ----------------------------------------------------- */

static int put_nstr(struct buf *out, const char *s)
{
    return imap_write_nstring(out, s, s ? strlen(s) : 0, false);
}

static int put_str(struct buf *out, const char *s)
{
    return imap_write_string(out, s, strlen(s), false);
}

/* ---- addresses ---------------------------------------------------------- */

enum tok_kind { TOK_END = 0, TOK_WORD, TOK_QUOTED, TOK_SPECIAL, TOK_COMMENT };

struct tok {
    enum tok_kind kind;
    const char *s;            /* for WORD: raw; for QUOTED/COMMENT: inside */
    size_t len;
    char c;                   /* SPECIAL */
};

struct lexer {
    const char *s;
    size_t n, i;
};

static bool is_addr_special(char c)
{
    return strchr("()<>[]:;@\\,\"", c) != NULL;
}

static struct tok lex_next(struct lexer *lx)
{
    struct tok t = {TOK_END, NULL, 0, 0};
    const char *s = lx->s;
    size_t n = lx->n;

    while (lx->i < n && (s[lx->i] == ' ' || s[lx->i] == '\t'))
        lx->i++;
    if (lx->i >= n)
        return t;
    if (s[lx->i] == '"') {
        size_t st = ++lx->i;
        while (lx->i < n && s[lx->i] != '"') {
            if (s[lx->i] == '\\' && lx->i + 1 < n)
                lx->i++;
            lx->i++;
        }
        t.kind = TOK_QUOTED;
        t.s = s + st;
        t.len = lx->i - st;
        if (lx->i < n)
            lx->i++;
        return t;
    }
    if (s[lx->i] == '(') {
        int depth = 0;
        size_t st = lx->i + 1;
        for (; lx->i < n; lx->i++) {
            if (s[lx->i] == '\\' && lx->i + 1 < n) {
                lx->i++;
            } else if (s[lx->i] == '(') {
                depth++;
            } else if (s[lx->i] == ')' && --depth == 0) {
                break;
            }
        }
        t.kind = TOK_COMMENT;
        t.s = s + st;
        t.len = (lx->i < n ? lx->i : n) - st;
        if (lx->i < n)
            lx->i++;
        return t;
    }
    if (s[lx->i] == '[') {           /* domain literal: one word */
        size_t st = lx->i;
        while (lx->i < n && s[lx->i] != ']')
            lx->i++;
        if (lx->i < n)
            lx->i++;
        t.kind = TOK_WORD;
        t.s = s + st;
        t.len = lx->i - st;
        return t;
    }
    if (is_addr_special(s[lx->i])) {
        t.kind = TOK_SPECIAL;
        t.c = s[lx->i++];
        return t;
    }
    t.kind = TOK_WORD;
    t.s = s + lx->i;
    while (lx->i < n && s[lx->i] != ' ' && s[lx->i] != '\t' && !is_addr_special(s[lx->i]))
        lx->i++;
    t.len = (size_t)(s + lx->i - t.s);
    return t;
}

/* Append the unescaped content of a quoted string or comment. */
static void unescape_into(struct buf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len)
            i++;
        if (buf_putc(b, s[i]) < 0)
            die("imap_fetch: unbounded buffer refused a byte");
    }
}

struct addr {
    char *name, *adl, *mailbox, *host;   /* NULL: NIL */
};

struct addr_list {
    struct addr *v;
    size_t n;
};

static void addr_add(struct addr_list *l, char *name, char *adl, char *mailbox, char *host)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n].name = name;
    l->v[l->n].adl = adl;
    l->v[l->n].mailbox = mailbox;
    l->v[l->n].host = host;
    l->n++;
}

/* A mailbox (not a group marker): a missing local part or domain gets a
 * placeholder, because a NIL host would read as a group marker (RFC 3501
 * 7.4.2).  The placeholders are the ones Dovecot writes. */
static void mailbox_add(struct addr_list *l, char *name, char *adl, struct buf *mbox,
                        struct buf *host)
{
    char *m = mbox->len ? buf_steal(mbox, NULL) : xstrdup("MISSING_MAILBOX");
    char *h = host->len ? buf_steal(host, NULL) : xstrdup("MISSING_DOMAIN");

    buf_free(mbox);
    buf_free(host);
    addr_add(l, name, adl, m, h);
}

static void addr_list_free(struct addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].adl);
        free(l->v[i].mailbox);
        free(l->v[i].host);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *buf_take(struct buf *b)
{
    if (b->len == 0) {
        buf_free(b);
        return NULL;
    }
    return buf_steal(b, NULL);
}

/* Words (phrase): joined by one space, quoted strings unquoted. */
static void phrase_add(struct buf *b, const struct tok *t)
{
    if (b->len > 0 && buf_putc(b, ' ') < 0)
        die("imap_fetch: unbounded buffer refused a byte");
    if (t->kind == TOK_QUOTED)
        unescape_into(b, t->s, t->len);
    else if (buf_append(b, t->s, t->len) < 0)
        die("imap_fetch: unbounded buffer refused bytes");
}

/* addr-spec pieces: local part and domain are written without spaces. */
static void spec_add(struct buf *b, const struct tok *t)
{
    if (t->kind == TOK_QUOTED) {
        if (buf_putc(b, '"') < 0 || buf_append(b, t->s, t->len) < 0 || buf_putc(b, '"') < 0)
            die("imap_fetch: unbounded buffer refused bytes");
    } else if (t->kind == TOK_WORD) {
        if (buf_append(b, t->s, t->len) < 0)
            die("imap_fetch: unbounded buffer refused bytes");
    } else if (t->kind == TOK_SPECIAL) {
        if (buf_putc(b, t->c) < 0)
            die("imap_fetch: unbounded buffer refused a byte");
    }
}

#define MAX_ADDRS 10000

/* Parse an address list header value into l (RFC 5322 3.4, leniently). */
static void parse_addresses(const char *s, size_t n, struct addr_list *l)
{
    struct lexer lx = {s, n, 0};
    struct tok t = lex_next(&lx);
    bool in_group = false;

    while (t.kind != TOK_END && l->n < MAX_ADDRS) {
        struct buf phrase = BUF_INIT, local = BUF_INIT, comment = BUF_INIT;
        bool have_words = false;

        if (t.kind == TOK_SPECIAL && t.c == ',') {
            t = lex_next(&lx);
            continue;
        }
        if (t.kind == TOK_SPECIAL && t.c == ';') {
            if (in_group)
                addr_add(l, NULL, NULL, NULL, NULL);
            in_group = false;
            t = lex_next(&lx);
            continue;
        }
        /* phrase or local part up to a special that decides */
        while (t.kind == TOK_WORD || t.kind == TOK_QUOTED || t.kind == TOK_COMMENT ||
               (t.kind == TOK_SPECIAL && t.c == '.')) {
            if (t.kind == TOK_COMMENT) {
                buf_reset(&comment);
                unescape_into(&comment, t.s, t.len);
            } else {
                phrase_add(&phrase, &t);
                spec_add(&local, &t);
                have_words = true;
            }
            t = lex_next(&lx);
        }
        if (t.kind == TOK_SPECIAL && t.c == ':' && !in_group) {
            addr_add(l, NULL, NULL, buf_take(&phrase), NULL);
            buf_free(&local);
            buf_free(&comment);
            in_group = true;
            t = lex_next(&lx);
            continue;
        }
        if (t.kind == TOK_SPECIAL && t.c == '<') {
            struct buf adl = BUF_INIT, mbox = BUF_INIT, host = BUF_INIT;
            bool at = false;
            t = lex_next(&lx);
            /* obsolete route "@a,@b:" */
            if (t.kind == TOK_SPECIAL && t.c == '@') {
                while (t.kind != TOK_END && !(t.kind == TOK_SPECIAL && (t.c == ':' || t.c == '>'))) {
                    if (t.kind != TOK_COMMENT)
                        spec_add(&adl, &t);
                    t = lex_next(&lx);
                }
                if (t.kind == TOK_SPECIAL && t.c == ':')
                    t = lex_next(&lx);
            }
            while (t.kind != TOK_END && !(t.kind == TOK_SPECIAL && t.c == '>')) {
                if (t.kind == TOK_SPECIAL && t.c == '@' && !at)
                    at = true;
                else if (t.kind != TOK_COMMENT)
                    spec_add(at ? &host : &mbox, &t);
                t = lex_next(&lx);
            }
            if (t.kind != TOK_END)
                t = lex_next(&lx);
            mailbox_add(l, buf_take(&phrase), buf_take(&adl), &mbox, &host);
            buf_free(&local);
            buf_free(&comment);
        } else if (t.kind == TOK_SPECIAL && t.c == '@') {
            struct buf host = BUF_INIT;
            t = lex_next(&lx);
            while (t.kind != TOK_END && !(t.kind == TOK_SPECIAL && (t.c == ',' || t.c == ';'))) {
                if (t.kind == TOK_COMMENT) {
                    buf_reset(&comment);
                    unescape_into(&comment, t.s, t.len);
                } else {
                    spec_add(&host, &t);
                }
                t = lex_next(&lx);
            }
            mailbox_add(l, buf_take(&comment), NULL, &local, &host);
            buf_free(&phrase);
        } else {
            /* a bare word list: a mailbox without a domain */
            struct buf nohost = BUF_INIT;
            if (have_words)
                mailbox_add(l, NULL, NULL, &local, &nohost);
            else
                buf_free(&local);
            buf_free(&phrase);
            buf_free(&comment);
            if (t.kind == TOK_SPECIAL && t.c != ',' && t.c != ';')
                t = lex_next(&lx);       /* stray special */
        }
    }
    if (in_group)
        addr_add(l, NULL, NULL, NULL, NULL);
}

static int put_addr_list(struct buf *out, const struct addr_list *l)
{
    if (l->n == 0)
        return buf_puts(out, "NIL");
    if (buf_putc(out, '(') < 0)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        const struct addr *a = &l->v[i];
        if (buf_putc(out, '(') < 0 || put_nstr(out, a->name) < 0 || buf_putc(out, ' ') < 0 ||
            put_nstr(out, a->adl) < 0 || buf_putc(out, ' ') < 0 ||
            put_nstr(out, a->mailbox) < 0 || buf_putc(out, ' ') < 0 ||
            put_nstr(out, a->host) < 0 || buf_putc(out, ')') < 0)
            return -1;
    }
    return buf_putc(out, ')');
}

/* ---- ENVELOPE ----------------------------------------------------------- */

enum { EF_DATE, EF_SUBJECT, EF_FROM, EF_SENDER, EF_REPLY_TO, EF_TO, EF_CC, EF_BCC,
       EF_IN_REPLY_TO, EF_MESSAGE_ID, EF_N };

static const char *const env_fields[EF_N] = {
    "Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
    "In-Reply-To", "Message-ID",
};

/* The envelope of the message whose header is raw[start..end). */
static int write_envelope(const char *raw, size_t start, size_t end, struct buf *out)
{
    char *v[EF_N] = {NULL};
    size_t vl[EF_N] = {0};
    struct addr_list al[EF_N];
    struct hfield f;
    size_t pos = start;
    int rc = 0;

    memset(al, 0, sizeof al);
    while (hfield_next(raw, &pos, end, &f)) {
        for (int k = 0; k < EF_N; k++) {
            if (hname_is(&f, env_fields[k])) {
                /* a repeated field: the last one, as Dovecot takes it */
                free(v[k]);
                v[k] = hfield_value(raw, &f, &vl[k]);
                break;
            }
        }
    }
    for (int k = EF_FROM; k <= EF_BCC; k++)
        if (v[k])
            parse_addresses(v[k], vl[k], &al[k]);
    if (buf_putc(out, '(') < 0 || imap_write_nstring(out, v[EF_DATE], vl[EF_DATE], false) < 0 ||
        buf_putc(out, ' ') < 0 ||
        imap_write_nstring(out, v[EF_SUBJECT], vl[EF_SUBJECT], false) < 0)
        rc = -1;
    for (int k = EF_FROM; rc == 0 && k <= EF_BCC; k++) {
        const struct addr_list *l = &al[k];
        /* Sender and Reply-To default to From (RFC 3501 7.4.2) */
        if ((k == EF_SENDER || k == EF_REPLY_TO) && l->n == 0)
            l = &al[EF_FROM];
        if (buf_putc(out, ' ') < 0 || put_addr_list(out, l) < 0)
            rc = -1;
    }
    if (rc == 0 &&
        (buf_putc(out, ' ') < 0 ||
         imap_write_nstring(out, v[EF_IN_REPLY_TO], vl[EF_IN_REPLY_TO], false) < 0 ||
         buf_putc(out, ' ') < 0 ||
         imap_write_nstring(out, v[EF_MESSAGE_ID], vl[EF_MESSAGE_ID], false) < 0 ||
         buf_putc(out, ')') < 0))
        rc = -1;
    for (int k = 0; k < EF_N; k++) {
        free(v[k]);
        addr_list_free(&al[k]);
    }
    return rc;
}

/* ---- BODYSTRUCTURE ------------------------------------------------------ */

static bool part_is(const struct msg_part *p, const char *type, const char *subtype)
{
    return p->type && strcasecmp(p->type, type) == 0 &&
           (!subtype || (p->subtype && strcasecmp(p->subtype, subtype) == 0));
}

static int put_params(struct buf *out, const struct param *p, size_t n, bool text)
{
    bool charset = false;

    if (n == 0 && !text)
        return buf_puts(out, "NIL");
    if (buf_putc(out, '(') < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(p[i].name, "charset") == 0)
            charset = true;
        /* charset values are case-insensitive; the default one is written
         * the way it is when absent */
        if ((i > 0 && buf_putc(out, ' ') < 0) || put_str(out, p[i].name) < 0 ||
            buf_putc(out, ' ') < 0 ||
            put_str(out, strcasecmp(p[i].name, "charset") == 0 &&
                             strcasecmp(p[i].value, "us-ascii") == 0 ? "us-ascii"
                                                                     : p[i].value) < 0)
            return -1;
    }
    if (text && !charset &&
        buf_puts(out, n > 0 ? " \"charset\" \"us-ascii\"" : "\"charset\" \"us-ascii\"") < 0)
        return -1;
    return buf_putc(out, ')');
}

/* Extension data shared by both kinds: disposition, language, location. */
static int put_ext_common(const char *raw, size_t hs, size_t he, struct buf *out)
{
    size_t len;
    char *disp = header_get(raw, hs, he, "Content-Disposition", &len);
    char *lang, *loc;
    int rc = 0;

    if (buf_putc(out, ' ') < 0)
        return -1;
    if (disp) {
        struct ctype ct;
        parse_ctype(disp, len, false, &ct);
        if (ct.type) {
            if (buf_putc(out, '(') < 0 || put_str(out, ct.type) < 0 || buf_putc(out, ' ') < 0 ||
                put_params(out, ct.p, ct.n, false) < 0 || buf_putc(out, ')') < 0)
                rc = -1;
        } else if (buf_puts(out, "NIL") < 0) {
            rc = -1;
        }
        ctype_free(&ct);
        free(disp);
    } else if (buf_puts(out, "NIL") < 0) {
        rc = -1;
    }
    if (rc < 0 || buf_putc(out, ' ') < 0)
        return -1;
    lang = header_get(raw, hs, he, "Content-Language", &len);
    if (lang) {
        /* a list of language tags separated by commas */
        char *tags[32];
        size_t nt = 0, i = 0;
        while (i < len && nt < ARRAY_LEN(tags)) {
            size_t st;
            i = skip_cfws(lang, i, len);
            st = i;
            while (i < len && lang[i] != ',' && lang[i] != ' ' && lang[i] != '\t' &&
                   lang[i] != '(')
                i++;
            if (i > st)
                tags[nt++] = xstrndup(lang + st, i - st);
            i = skip_cfws(lang, i, len);
            if (i < len && lang[i] == ',')
                i++;
            else if (i < len && i == st)
                i++;
        }
        if (nt == 0) {
            rc = buf_puts(out, "NIL");
        } else {        /* a list even for one tag, as Dovecot writes it */
            rc = buf_putc(out, '(');
            for (size_t k = 0; rc == 0 && k < nt; k++)
                if ((k > 0 && buf_putc(out, ' ') < 0) || put_str(out, tags[k]) < 0)
                    rc = -1;
            if (rc == 0)
                rc = buf_putc(out, ')');
        }
        for (size_t k = 0; k < nt; k++)
            free(tags[k]);
        free(lang);
    } else {
        rc = buf_puts(out, "NIL");
    }
    if (rc < 0 || buf_putc(out, ' ') < 0)
        return -1;
    loc = header_get(raw, hs, he, "Content-Location", &len);
    rc = imap_write_nstring(out, loc, len, false);
    free(loc);
    return rc;
}

static int write_body(const struct imap_fetch_msg *fm, const struct msg_part *p, bool ext,
                      struct buf *out);

/* type, subtype and params of p from its own header (lib/message's
 * lower-cased values when the header does not say). */
static void part_ctype(const struct imap_fetch_msg *fm, const struct msg_part *p,
                       struct ctype *ct)
{
    size_t len;
    char *v = header_get(fm->raw, p->header_offset, p->body_offset, "Content-Type", &len);

    memset(ct, 0, sizeof *ct);
    if (v) {
        parse_ctype(v, len, true, ct);
        free(v);
    }
    if (!ct->type || strcasecmp(ct->type, p->type) != 0 ||
        strcasecmp(ct->subtype, p->subtype) != 0) {
        /* no or unusable Content-Type: the default, without parameters */
        ctype_free(ct);
        ct->type = xstrdup(p->type);
        ct->subtype = xstrdup(p->subtype);
    }
}

static int write_multipart(const struct imap_fetch_msg *fm, const struct msg_part *p,
                           bool ext, struct buf *out)
{
    struct ctype ct;
    int rc = 0;

    part_ctype(fm, p, &ct);
    if (buf_putc(out, '(') < 0)
        rc = -1;
    if (rc == 0 && p->n_children == 0) {
        /* no part found: an empty text/plain stands for it */
        rc = buf_puts(out, ext ? "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                 "\"7bit\" 0 0 NIL NIL NIL NIL)"
                               : "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
                                 "\"7bit\" 0 0)");
    }
    for (size_t i = 0; rc == 0 && i < p->n_children; i++)
        rc = write_body(fm, p->children[i], ext, out);
    if (rc == 0 && (buf_putc(out, ' ') < 0 || put_str(out, ct.subtype) < 0))
        rc = -1;
    if (rc == 0 && ext) {
        if (buf_putc(out, ' ') < 0 || put_params(out, ct.p, ct.n, false) < 0 ||
            put_ext_common(fm->raw, p->header_offset, p->body_offset, out) < 0)
            rc = -1;
    }
    if (rc == 0)
        rc = buf_putc(out, ')');
    ctype_free(&ct);
    return rc;
}

static int write_single(const struct imap_fetch_msg *fm, const struct msg_part *p,
                        bool ext, struct buf *out)
{
    const char *raw = fm->raw;
    size_t hs = p->header_offset, he = p->body_offset, len;
    size_t bs = p->body_offset, be = p->body_offset + p->body_size;
    bool text = part_is(p, "text", NULL);
    struct ctype ct;
    char *v;
    int rc = 0;

    part_ctype(fm, p, &ct);
    if (buf_putc(out, '(') < 0 || put_str(out, ct.type) < 0 || buf_putc(out, ' ') < 0 ||
        put_str(out, ct.subtype) < 0 || buf_putc(out, ' ') < 0 ||
        put_params(out, ct.p, ct.n, text) < 0 || buf_putc(out, ' ') < 0)
        rc = -1;
    ctype_free(&ct);
    if (rc < 0)
        return -1;
    v = header_get(raw, hs, he, "Content-ID", &len);
    rc = imap_write_nstring(out, v, len, false);
    free(v);
    if (rc < 0 || buf_putc(out, ' ') < 0)
        return -1;
    v = header_get(raw, hs, he, "Content-Description", &len);
    rc = imap_write_nstring(out, v, len, false);
    free(v);
    if (rc < 0 || buf_putc(out, ' ') < 0)
        return -1;
    v = header_get(raw, hs, he, "Content-Transfer-Encoding", &len);
    if (v) {
        size_t i = skip_cfws(v, 0, len);
        char *tok = read_token(v, &i, len);
        rc = put_str(out, tok ? tok : "7bit");
        free(tok);
        free(v);
    } else {
        rc = put_str(out, "7bit");
    }
    if (rc < 0 || buf_printf(out, " %llu", (unsigned long long)imap_crlf_size(raw, bs, be)) < 0)
        return -1;
    if (part_is(p, "message", "rfc822") && p->n_children == 1) {
        const struct msg_part *c = p->children[0];
        if (buf_putc(out, ' ') < 0 ||
            write_envelope(raw, c->header_offset, c->body_offset, out) < 0 ||
            buf_putc(out, ' ') < 0 || write_body(fm, c, ext, out) < 0 ||
            buf_printf(out, " %llu", (unsigned long long)body_lines(raw, bs, be)) < 0)
            return -1;
    } else if (part_is(p, "message", "rfc822")) {
        /* not parsed (nested too deep, or encoded): the grammar still wants
         * an envelope, a body and lines; the body stands as plain text */
        if (buf_putc(out, ' ') < 0 || write_envelope(raw, bs, be, out) < 0 ||
            buf_printf(out, " (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" "
                            "%llu %llu%s) %llu",
                       (unsigned long long)imap_crlf_size(raw, bs, be),
                       (unsigned long long)body_lines(raw, bs, be),
                       ext ? " NIL NIL NIL NIL" : "",
                       (unsigned long long)body_lines(raw, bs, be)) < 0)
            return -1;
    } else if (text) {
        if (buf_printf(out, " %llu", (unsigned long long)body_lines(raw, bs, be)) < 0)
            return -1;
    }
    if (ext) {
        v = header_get(raw, hs, he, "Content-MD5", &len);
        rc = buf_putc(out, ' ') < 0 || imap_write_nstring(out, v, len, false) < 0 ? -1 : 0;
        free(v);
        if (rc < 0 || put_ext_common(raw, hs, he, out) < 0)
            return -1;
    }
    return buf_putc(out, ')');
}

static int write_body(const struct imap_fetch_msg *fm, const struct msg_part *p, bool ext,
                      struct buf *out)
{
    if (part_is(p, "multipart", NULL))
        return write_multipart(fm, p, ext, out);
    return write_single(fm, p, ext, out);
}

/* ---- open / close ------------------------------------------------------- */

int imap_fetch_open(const char *raw, size_t len, struct imap_fetch_msg **out,
                    struct err *e)
{
    struct imap_fetch_msg *fm = XNEW(struct imap_fetch_msg);

    *out = NULL;
    fm->raw = raw ? raw : "";
    fm->len = len;
    if (message_parse(fm->raw, len, NULL, &fm->msg, e) < 0) {
        free(fm);
        return -1;
    }
    *out = fm;
    return 0;
}

void imap_fetch_close(struct imap_fetch_msg *fm)
{
    if (!fm)
        return;
    message_free(fm->msg);
    free(fm);
}

uint64_t imap_fetch_size(const struct imap_fetch_msg *fm)
{
    return imap_crlf_size(fm->raw, 0, fm->len);
}

int imap_fetch_envelope(const struct imap_fetch_msg *fm, struct buf *out)
{
    return write_envelope(fm->raw, 0, fm->msg->root->body_offset, out);
}

int imap_fetch_bodystructure(const struct imap_fetch_msg *fm, bool extensible,
                             struct buf *out)
{
    return write_body(fm, fm->msg->root, extensible, out);
}

/* ---- sections ----------------------------------------------------------- */

/* The part a section path names; NULL if there is none.  *msg_level is set
 * when the part is the root of a message (the top one or one inside a
 * message/rfc822), where "1" names the part itself when it is not a
 * multipart. */
static const struct msg_part *resolve_path(const struct message *m, const uint32_t *parts,
                                           size_t n)
{
    const struct msg_part *p = m->root;
    bool msg_level = true;

    for (size_t i = 0; i < n; i++) {
        uint32_t k = parts[i];
        if (i > 0 && part_is(p, "message", "rfc822")) {
            if (p->n_children != 1)
                return NULL;
            p = p->children[0];
            msg_level = true;
        }
        if (k == 0)
            return NULL;
        if (part_is(p, "multipart", NULL)) {
            if (k > p->n_children)
                return NULL;
            p = p->children[k - 1];
            msg_level = false;
        } else if (k == 1 && msg_level) {
            msg_level = false;      /* the body of a one-part message */
        } else {
            return NULL;
        }
    }
    return p;
}

struct range {
    size_t start, end;
};

/* The header block of the message whose root part is p, split in fields:
 * write the selected ones and the blank line. */
static int header_fields(const char *raw, size_t hs, size_t he,
                         const struct imap_fetch_att *att, bool not, struct buf *tmp)
{
    struct hfield f;
    size_t pos = hs;

    while (hfield_next(raw, &pos, he, &f)) {
        bool listed = false;
        if (f.nlen == 0)
            continue;
        for (size_t i = 0; i < att->n_fields && !listed; i++)
            listed = att->fields[i].len == f.nlen &&
                     strncasecmp(att->fields[i].s, f.name, f.nlen) == 0;
        if (listed != not && buf_append(tmp, raw + f.fstart, f.fend - f.fstart) < 0)
            return -1;
    }
    return buf_putc(tmp, '\n');
}

static bool cte_known(const struct msg_part *p)
{
    return p->encoding != MSG_ENC_UNKNOWN;
}

/* Section data before <partial>, either as a range of raw (CRLF-converted
 * later) or, for HEADER.FIELDS and BINARY, built into tmp (already final
 * for BINARY, LF-form for HEADER.FIELDS). */
enum sec_kind { SEC_RANGE, SEC_TMP_LF, SEC_TMP_FINAL };

static int section_source(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                          struct range *r, struct buf *tmp, enum sec_kind *kind,
                          struct err *e)
{
    const struct message *m = fm->msg;
    const struct msg_part *p = m->root, *mp;
    enum imap_section_spec spec = att->spec;
    bool binary = att->item == IMAP_FETCH_BINARY || att->item == IMAP_FETCH_BINARY_SIZE;

    *kind = SEC_RANGE;
    switch (att->item) {
    case IMAP_FETCH_RFC822:
        r->start = 0;
        r->end = fm->len;
        return 0;
    case IMAP_FETCH_RFC822_HEADER:
        spec = IMAP_SECTION_HEADER;
        break;
    case IMAP_FETCH_RFC822_TEXT:
        spec = IMAP_SECTION_TEXT;
        break;
    case IMAP_FETCH_BODY_SECTION:
    case IMAP_FETCH_BINARY:
    case IMAP_FETCH_BINARY_SIZE:
        break;
    default:
        return err_set(e, ERR_INVAL, "not a section");
    }
    if (att->item == IMAP_FETCH_BODY_SECTION && att->n_parts > 0) {
        p = resolve_path(m, att->parts, att->n_parts);
        if (!p)
            return err_set(e, ERR_NOTFOUND, "no such part");
    } else if (binary && att->n_parts > 0) {
        p = resolve_path(m, att->parts, att->n_parts);
        if (!p)
            return err_set(e, ERR_NOTFOUND, "no such part");
    }
    if (binary) {
        struct buf crlf = BUF_INIT;
        bool bad = false;
        int rc = 0;

        if (att->n_parts == 0) {      /* the whole message, as it is */
            r->start = 0;
            r->end = fm->len;
            return 0;
        }
        if (!cte_known(p))
            return err_set(e, ERR_UNSUPPORTED, "unknown Content-Transfer-Encoding");
        if (p->encoding != MSG_ENC_BASE64 && p->encoding != MSG_ENC_QP) {
            r->start = p->body_offset;
            r->end = p->body_offset + p->body_size;
            return 0;
        }
        if (imap_crlf_append(&crlf, fm->raw, p->body_offset, p->body_offset + p->body_size,
                             0, UINT64_MAX) < 0)
            rc = -1;
        else if (p->encoding == MSG_ENC_BASE64)
            rc = codec_b64_decode(crlf.data ? crlf.data : "", crlf.len, tmp, &bad);
        else
            rc = codec_qp_decode(crlf.data ? crlf.data : "", crlf.len, false, tmp, &bad);
        buf_free(&crlf);
        if (rc < 0)
            return err_set(e, ERR_LIMIT, "section too large");
        *kind = SEC_TMP_FINAL;
        return 0;
    }
    if (att->n_parts == 0) {
        mp = m->root;
    } else if (spec == IMAP_SECTION_NONE || spec == IMAP_SECTION_MIME) {
        mp = NULL;
    } else {
        /* HEADER, HEADER.FIELDS[.NOT], TEXT of a message/rfc822 part; of
         * "1" in a one-part message: its own header and text */
        if (part_is(p, "message", "rfc822") && p->n_children == 1)
            mp = p->children[0];
        else if (p == m->root)
            mp = m->root;
        else
            return err_set(e, ERR_NOTFOUND, "part is not a message");
    }
    switch (spec) {
    case IMAP_SECTION_NONE:
        if (att->n_parts == 0) {
            r->start = 0;
            r->end = fm->len;
        } else {
            r->start = p->body_offset;
            r->end = p->body_offset + p->body_size;
        }
        return 0;
    case IMAP_SECTION_MIME:
        if (att->n_parts == 0)
            return err_set(e, ERR_NOTFOUND, "MIME needs a part number");
        r->start = p->header_offset;
        r->end = p->body_offset;
        return 0;
    case IMAP_SECTION_HEADER:
        r->start = mp->header_offset;
        r->end = mp->body_offset;
        return 0;
    case IMAP_SECTION_TEXT:
        r->start = mp->body_offset;
        r->end = mp == m->root ? fm->len : mp->body_offset + mp->body_size;
        return 0;
    case IMAP_SECTION_HEADER_FIELDS:
    case IMAP_SECTION_HEADER_FIELDS_NOT:
        if (header_fields(fm->raw, mp->header_offset, mp->body_offset, att,
                          spec == IMAP_SECTION_HEADER_FIELDS_NOT, tmp) < 0)
            return err_set(e, ERR_LIMIT, "section too large");
        *kind = SEC_TMP_LF;
        return 0;
    }
    return err_set(e, ERR_INVAL, "bad section");
}

int imap_fetch_section(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                       struct buf *data, struct err *e)
{
    struct buf tmp = BUF_INIT;
    struct range r = {0, 0};
    enum sec_kind kind;
    uint64_t origin = att->partial ? att->offset : 0;
    uint64_t count = att->partial ? att->count : UINT64_MAX;
    int rc = 0;

    if (section_source(fm, att, &r, &tmp, &kind, e) < 0) {
        buf_free(&tmp);
        return -1;
    }
    if (kind == SEC_RANGE) {
        rc = imap_crlf_append(data, fm->raw, r.start, r.end, origin, count);
    } else if (kind == SEC_TMP_LF) {
        rc = imap_crlf_append(data, tmp.data ? tmp.data : "", 0, tmp.len, origin, count);
    } else if (origin < tmp.len) {
        size_t n = tmp.len - (size_t)origin;
        if (count < n)
            n = (size_t)count;
        rc = buf_append(data, tmp.data + origin, n);
    }
    buf_free(&tmp);
    if (rc < 0)
        return err_set(e, ERR_LIMIT, "section too large");
    return 0;
}

int imap_fetch_binary_size(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                           uint64_t *size, struct err *e)
{
    struct imap_fetch_att a = *att;
    struct buf tmp = BUF_INIT;
    struct range r = {0, 0};
    enum sec_kind kind;

    a.item = IMAP_FETCH_BINARY;
    a.partial = false;
    if (section_source(fm, &a, &r, &tmp, &kind, e) < 0) {
        buf_free(&tmp);
        return -1;
    }
    *size = kind == SEC_RANGE ? imap_crlf_size(fm->raw, r.start, r.end) : tmp.len;
    buf_free(&tmp);
    return 0;
}

/* ---- response items ----------------------------------------------------- */

static int put_section_name(struct buf *out, const struct imap_fetch_att *att)
{
    static const char *const spec_names[] = {
        "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME",
    };

    if (buf_putc(out, '[') < 0)
        return -1;
    for (size_t i = 0; i < att->n_parts; i++)
        if (buf_printf(out, i ? ".%u" : "%u", (unsigned)att->parts[i]) < 0)
            return -1;
    if (att->spec != IMAP_SECTION_NONE &&
        buf_printf(out, "%s%s", att->n_parts ? "." : "", spec_names[att->spec]) < 0)
        return -1;
    if (att->spec == IMAP_SECTION_HEADER_FIELDS || att->spec == IMAP_SECTION_HEADER_FIELDS_NOT) {
        if (buf_puts(out, " (") < 0)
            return -1;
        for (size_t i = 0; i < att->n_fields; i++)
            if ((i > 0 && buf_putc(out, ' ') < 0) ||
                imap_write_astring(out, att->fields[i].s, att->fields[i].len, false) < 0)
                return -1;
        if (buf_putc(out, ')') < 0)
            return -1;
    }
    return buf_putc(out, ']');
}

static int write_literal(struct buf *out, const struct buf *data, bool binary)
{
    bool nul = binary && data->len > 0 && memchr(data->data, '\0', data->len) != NULL;

    if (data->len == 0)
        return buf_puts(out, "\"\"");
    if (buf_printf(out, "%s{%zu}\r\n", nul ? "~" : "", data->len) < 0)
        return -1;
    return buf_append(out, data->data, data->len);
}

int imap_fetch_write(const struct imap_fetch_msg *fm, const struct imap_fetch_att *att,
                     struct buf *out, struct err *e)
{
    struct buf data = BUF_INIT;
    size_t mark = out->len;
    int rc = 0;

    switch (att->item) {
    case IMAP_FETCH_ENVELOPE:
        rc = buf_puts(out, "ENVELOPE ") < 0 || imap_fetch_envelope(fm, out) < 0 ? -1 : 0;
        break;
    case IMAP_FETCH_BODY:
        rc = buf_puts(out, "BODY ") < 0 || imap_fetch_bodystructure(fm, false, out) < 0 ? -1 : 0;
        break;
    case IMAP_FETCH_BODYSTRUCTURE:
        rc = buf_puts(out, "BODYSTRUCTURE ") < 0 || imap_fetch_bodystructure(fm, true, out) < 0
                 ? -1 : 0;
        break;
    case IMAP_FETCH_RFC822_SIZE:
        rc = buf_printf(out, "RFC822.SIZE %llu", (unsigned long long)imap_fetch_size(fm));
        break;
    case IMAP_FETCH_BINARY_SIZE: {
        uint64_t size;
        struct err e2;
        if (imap_fetch_binary_size(fm, att, &size, &e2) < 0) {
            if (e2.code != ERR_NOTFOUND) {
                if (e)
                    *e = e2;
                return -1;
            }
            rc = buf_puts(out, "BINARY.SIZE") < 0 || put_section_name(out, att) < 0 ||
                 buf_puts(out, " 0") < 0 ? -1 : 0;
            break;
        }
        rc = buf_puts(out, "BINARY.SIZE") < 0 || put_section_name(out, att) < 0 ||
             buf_printf(out, " %llu", (unsigned long long)size) < 0 ? -1 : 0;
        break;
    }
    case IMAP_FETCH_RFC822:
    case IMAP_FETCH_RFC822_HEADER:
    case IMAP_FETCH_RFC822_TEXT:
    case IMAP_FETCH_BODY_SECTION:
    case IMAP_FETCH_BINARY: {
        struct err e2;
        bool missing = false;
        if (imap_fetch_section(fm, att, &data, &e2) < 0) {
            if (e2.code != ERR_NOTFOUND) {
                buf_free(&data);
                if (e)
                    *e = e2;
                return -1;
            }
            missing = true;
        }
        if (att->item == IMAP_FETCH_RFC822)
            rc = buf_puts(out, "RFC822 ");
        else if (att->item == IMAP_FETCH_RFC822_HEADER)
            rc = buf_puts(out, "RFC822.HEADER ");
        else if (att->item == IMAP_FETCH_RFC822_TEXT)
            rc = buf_puts(out, "RFC822.TEXT ");
        else
            rc = buf_puts(out, att->item == IMAP_FETCH_BINARY ? "BINARY" : "BODY") < 0 ||
                 put_section_name(out, att) < 0 ||
                 (att->partial && att->item != IMAP_FETCH_BINARY &&
                  buf_printf(out, "<%llu>", (unsigned long long)att->offset) < 0) ||
                 buf_putc(out, ' ') < 0 ? -1 : 0;
        if (rc == 0)
            rc = missing ? buf_puts(out, "\"\"")
                         : write_literal(out, &data, att->item == IMAP_FETCH_BINARY);
        break;
    }
    default:
        return err_set(e, ERR_INVAL, "%s is not message data",
                       att->item == IMAP_FETCH_FLAGS ? "FLAGS" : "the item");
    }
    buf_free(&data);
    if (rc < 0) {
        buf_truncate(out, mark);
        return err_set(e, ERR_LIMIT, "response too large");
    }
    return 0;
}

/* ---- cache record ------------------------------------------------------- */

void imap_fetch_cache_make(const struct imap_fetch_msg *fm, struct imap_fetch_cache *c)
{
    struct buf b = BUF_INIT;

    memset(c, 0, sizeof *c);
    c->raw_size = fm->len;
    c->rfc822_size = imap_fetch_size(fm);
    if (imap_fetch_envelope(fm, &b) < 0)
        die("imap_fetch: unbounded buffer refused bytes");
    c->envelope = buf_steal(&b, &c->envelope_len);
    if (imap_fetch_bodystructure(fm, true, &b) < 0)
        die("imap_fetch: unbounded buffer refused bytes");
    c->bodystructure = buf_steal(&b, &c->bodystructure_len);
    if (imap_fetch_bodystructure(fm, false, &b) < 0)
        die("imap_fetch: unbounded buffer refused bytes");
    c->body = buf_steal(&b, &c->body_len);
}

void imap_fetch_cache_free(struct imap_fetch_cache *c)
{
    free(c->envelope);
    free(c->bodystructure);
    free(c->body);
    memset(c, 0, sizeof *c);
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static int put_le(struct buf *out, uint64_t v, unsigned bytes)
{
    unsigned char b[8];

    for (unsigned i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return buf_append(out, b, bytes);
}

static uint64_t get_le(const unsigned char *p, unsigned bytes)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#define CACHE_STR_MAX (64u << 20)

int imap_fetch_cache_encode(const struct imap_fetch_cache *c, struct buf *out)
{
    size_t mark = out->len;
    const char *s[3] = {c->envelope, c->bodystructure, c->body};
    size_t l[3] = {c->envelope_len, c->bodystructure_len, c->body_len};

    if (buf_append(out, "IFC", 3) < 0 || buf_putc(out, (char)IMAP_FETCH_CACHE_VERSION) < 0 ||
        put_le(out, c->raw_size, 8) < 0 || put_le(out, c->rfc822_size, 8) < 0)
        goto fail;
    for (int i = 0; i < 3; i++) {
        if (l[i] > CACHE_STR_MAX || put_le(out, l[i], 4) < 0 ||
            (l[i] && buf_append(out, s[i], l[i]) < 0))
            goto fail;
    }
    if (put_le(out, fnv1a((const unsigned char *)out->data + mark, out->len - mark), 4) < 0)
        goto fail;
    return 0;
fail:
    buf_truncate(out, mark);
    return -1;
}

int imap_fetch_cache_decode(const char *p, size_t len, uint64_t expect_raw_size,
                            struct imap_fetch_cache *c, size_t *used, struct err *e)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t pos = 20;
    char **s[3] = {&c->envelope, &c->bodystructure, &c->body};
    size_t *l[3] = {&c->envelope_len, &c->bodystructure_len, &c->body_len};
    size_t off[3], n[3];

    memset(c, 0, sizeof *c);
    if (len < 20 || memcmp(p, "IFC", 3) != 0)
        return err_set(e, ERR_PARSE, "cache record: bad magic");
    if (u[3] != IMAP_FETCH_CACHE_VERSION)
        return err_set(e, ERR_PARSE, "cache record: version %u", (unsigned)u[3]);
    for (int i = 0; i < 3; i++) {
        if (len - pos < 4)
            return err_set(e, ERR_PARSE, "cache record: truncated");
        n[i] = (size_t)get_le(u + pos, 4);
        pos += 4;
        if (n[i] > CACHE_STR_MAX || n[i] > len - pos)
            return err_set(e, ERR_PARSE, "cache record: bad length");
        off[i] = pos;
        pos += n[i];
    }
    if (len - pos < 4)
        return err_set(e, ERR_PARSE, "cache record: truncated");
    if ((uint32_t)get_le(u + pos, 4) != fnv1a(u, pos))
        return err_set(e, ERR_PARSE, "cache record: checksum mismatch");
    c->raw_size = get_le(u + 4, 8);
    c->rfc822_size = get_le(u + 12, 8);
    if (expect_raw_size != UINT64_MAX && c->raw_size != expect_raw_size) {
        memset(c, 0, sizeof *c);
        return err_set(e, ERR_PARSE, "cache record: the file changed");
    }
    if (c->rfc822_size < c->raw_size) {
        memset(c, 0, sizeof *c);
        return err_set(e, ERR_PARSE, "cache record: inconsistent sizes");
    }
    for (int i = 0; i < 3; i++) {
        *s[i] = xmemdup0(p + off[i], n[i]);
        *l[i] = n[i];
    }
    *used = pos + 4;
    return 0;
}
