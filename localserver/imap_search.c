/*
 * imap_search: SEARCH, SORT and THREAD evaluation over a mailbox seen
 * through callbacks (see imap_search.h).
 */
#include "imap_search.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "charset.h"
#include "message.h"
#include "rfc2047.h"

void imap_search_result_free(struct imap_search_result *r)
{
    free(r->seq);
    r->seq = NULL;
    r->n = 0;
}

/* ------------------------------------------------------------------ */
/* Case folding */

/* Canonical decompositions of precomposed Latin letters (U+00C0 to
 * U+017F) into an upper-case base letter and a combining mark, as the
 * i;unicode-casemap comparator (RFC 5051) sees them.  0 where a letter has
 * none. */
static const char latin1_base[64] =
    "AAAAAA\0CEEEEIIII\0NOOOOO\0\0UUUUY\0\0AAAAAA\0CEEEEIIII\0NOOOOO\0\0UUUUY\0Y";
static const uint16_t latin1_mark[64] = {
    0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0, 0x327, 0x300, 0x301, 0x302, 0x308,
    0x300, 0x301, 0x302, 0x308, 0, 0x303, 0x300, 0x301, 0x302, 0x303, 0x308, 0,
    0, 0x300, 0x301, 0x302, 0x308, 0x301, 0, 0,
    0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0, 0x327, 0x300, 0x301, 0x302, 0x308,
    0x300, 0x301, 0x302, 0x308, 0, 0x303, 0x300, 0x301, 0x302, 0x303, 0x308, 0,
    0, 0x300, 0x301, 0x302, 0x308, 0x301, 0, 0x308,
};
/* U+0100..U+017F in pairs: base letter and mark of each pair. */
struct ext_pair {
    char base;
    uint16_t mark;
};
static const struct ext_pair ext_a1[28] = {   /* U+0100..U+0137, even first */
    {'A', 0x304}, {'A', 0x306}, {'A', 0x328}, {'C', 0x301}, {'C', 0x302}, {'C', 0x307},
    {'C', 0x30C}, {'D', 0x30C}, {0, 0}, {'E', 0x304}, {'E', 0x306}, {'E', 0x307},
    {'E', 0x328}, {'E', 0x30C}, {'G', 0x302}, {'G', 0x306}, {'G', 0x307}, {'G', 0x327},
    {'H', 0x302}, {0, 0}, {'I', 0x303}, {'I', 0x304}, {'I', 0x306}, {'I', 0x328},
    {0, 0}, {0, 0}, {'J', 0x302}, {'K', 0x327},
};
static const struct ext_pair ext_a2[8] = {    /* U+0139..U+0148, odd first */
    {'L', 0x301}, {'L', 0x327}, {'L', 0x30C}, {0, 0}, {0, 0}, {'N', 0x301}, {'N', 0x327},
    {'N', 0x30C},
};
static const struct ext_pair ext_a3[23] = {   /* U+014A..U+0177, even first */
    {0, 0}, {'O', 0x304}, {'O', 0x306}, {'O', 0x30B}, {0, 0}, {'R', 0x301}, {'R', 0x327},
    {'R', 0x30C}, {'S', 0x301}, {'S', 0x302}, {'S', 0x327}, {'S', 0x30C}, {'T', 0x327},
    {'T', 0x30C}, {0, 0}, {'U', 0x303}, {'U', 0x304}, {'U', 0x306}, {'U', 0x30A},
    {'U', 0x30B}, {'U', 0x328}, {'W', 0x302}, {'Y', 0x302},
};
static const struct ext_pair ext_a4[3] = {    /* U+0179..U+017E, odd first */
    {'Z', 0x301}, {'Z', 0x307}, {'Z', 0x30C},
};

/* Simple upper-case mapping of c; *mark set to a combining mark when c
 * decomposes (the result is then the base letter). */
static uint32_t fold_cp(uint32_t c, uint32_t *mark)
{
    const struct ext_pair *ep = NULL;
    uint32_t first = 0;

    *mark = 0;
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') ? c - 32 : c;
    if (c >= 0xC0 && c <= 0xFF) {
        if (latin1_base[c - 0xC0]) {
            *mark = latin1_mark[c - 0xC0];
            return (uint32_t)(unsigned char)latin1_base[c - 0xC0];
        }
        if (c >= 0xE0 && c != 0xF7 && c != 0xDF)
            return c - 0x20;
        return c;
    }
    if (c == 0x131)
        return 'I';
    if (c >= 0x100 && c <= 0x137) {
        ep = &ext_a1[(c - 0x100) / 2];
        first = 0x100 + (c - 0x100) / 2 * 2;
    } else if (c >= 0x139 && c <= 0x148) {
        ep = &ext_a2[(c - 0x139) / 2];
        first = 0x139 + (c - 0x139) / 2 * 2;
    } else if (c >= 0x14A && c <= 0x177) {
        ep = &ext_a3[(c - 0x14A) / 2];
        first = 0x14A + (c - 0x14A) / 2 * 2;
    } else if (c >= 0x179 && c <= 0x17E) {
        ep = &ext_a4[(c - 0x179) / 2];
        first = 0x179 + (c - 0x179) / 2 * 2;
    } else if (c == 0x178) {
        *mark = 0x308;
        return 'Y';
    }
    if (ep) {
        if (c == 0x130) {
            *mark = 0x307;
            return 'I';
        }
        if (ep->base) {
            *mark = ep->mark;
            return (uint32_t)(unsigned char)ep->base;
        }
        return first;
    }
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2)
        return c - 0x20;
    if (c == 0x3C2)
        return 0x3A3;
    if (c >= 0x430 && c <= 0x44F)
        return c - 0x20;
    if (c >= 0x450 && c <= 0x45F)
        return c - 0x50;
    return c;
}

/* Decode one UTF-8 sequence at s[0..len): length, or 0 when invalid. */
static size_t utf8_dec(const unsigned char *s, size_t len, uint32_t *cp)
{
    size_t n;
    uint32_t c = s[0];

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        c &= 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

static int utf8_enc(struct buf *out, uint32_t c)
{
    char t[4];
    size_t n;

    if (c < 0x80) {
        t[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        t[0] = (char)(0xC0 | (c >> 6));
        t[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        t[0] = (char)(0xE0 | (c >> 12));
        t[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        t[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        t[0] = (char)(0xF0 | (c >> 18));
        t[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        t[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return buf_append(out, t, n);
}

int imap_casefold(const char *s, size_t len, struct buf *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        size_t n;

        if (p[i] < 0x80) {
            char ch = (char)p[i];
            if (ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 32);
            if (buf_putc(out, ch) < 0)
                return -1;
            i++;
            continue;
        }
        n = utf8_dec(p + i, len - i, &cp);
        if (n == 0) {
            if (buf_putc(out, (char)p[i]) < 0)
                return -1;
            i++;
            continue;
        }
        {
            uint32_t mark;
            uint32_t f = fold_cp(cp, &mark);
            if (utf8_enc(out, f) < 0 || (mark && utf8_enc(out, mark) < 0))
                return -1;
        }
        i += n;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Header fields */

/* The next field of the header block h[0..len) from *pos: name and raw
 * value (folding included, final line end excluded).  False at the end of
 * the header (empty line or end of data). */
static bool next_field(const char *h, size_t len, size_t *pos, const char **name,
                       size_t *nlen, const char **val, size_t *vlen)
{
    size_t p = *pos;

    for (;;) {
        size_t start, colon, end;

        if (p >= len || h[p] == '\n' || (h[p] == '\r' && p + 1 < len && h[p + 1] == '\n'))
            return false;
        start = p;
        /* the line and its continuations */
        end = p;
        for (;;) {
            const char *nl = memchr(h + end, '\n', len - end);
            end = nl ? (size_t)(nl - h) + 1 : len;
            if (end >= len || (h[end] != ' ' && h[end] != '\t'))
                break;
        }
        p = end;
        colon = start;
        while (colon < end && h[colon] != ':' && h[colon] != '\n')
            colon++;
        if (colon >= end || h[colon] != ':')
            continue;          /* not a field: skip the line */
        *name = h + start;
        *nlen = colon - start;
        while (*nlen > 0 && ((*name)[*nlen - 1] == ' ' || (*name)[*nlen - 1] == '\t'))
            (*nlen)--;
        *val = h + colon + 1;
        *vlen = end - colon - 1;
        while (*vlen > 0 && ((*val)[*vlen - 1] == '\n' || (*val)[*vlen - 1] == '\r'))
            (*vlen)--;
        *pos = p;
        return true;
    }
}

/* Unfolded (CR and LF removed), leading white space dropped, RFC 2047
 * decoded, case-folded value appended to out. */
static void field_text(const char *val, size_t vlen, struct buf *out)
{
    struct buf raw = BUF_INIT, dec = BUF_INIT;

    while (vlen > 0 && (*val == ' ' || *val == '\t')) {
        val++;
        vlen--;
    }
    for (size_t i = 0; i < vlen; i++)
        if (val[i] != '\r' && val[i] != '\n' && buf_putc(&raw, val[i]) < 0)
            die("buf");
    if (rfc2047_decode(buf_cstr(&raw), raw.len, &dec, NULL) < 0 ||
        imap_casefold(buf_cstr(&dec), dec.len, out) < 0)
        die("buf");
    buf_free(&raw);
    buf_free(&dec);
}

/* Length of the header block of a message (empty line included). */
static size_t header_len(const char *m, size_t len)
{
    size_t p = 0;

    while (p < len) {
        const char *nl;

        if (m[p] == '\n')
            return p + 1;
        if (m[p] == '\r' && p + 1 < len && m[p + 1] == '\n')
            return p + 2;
        nl = memchr(m + p, '\n', len - p);
        if (!nl)
            return len;
        p = (size_t)(nl - m) + 1;
    }
    return len;
}

/* ------------------------------------------------------------------ */
/* Dates */

static int ymd_key(int y, int m, int d)
{
    return y * 512 + m * 32 + d;
}

static int day_of(int64_t t, int zone)
{
    time_t tt = (time_t)(t + (int64_t)zone * 60);
    struct tm tm;

    if (!gmtime_r(&tt, &tm))
        return 0;
    return ymd_key(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Zone of an RFC 5322 date text, minutes east (0 when not found). */
static int date_zone(const char *s)
{
    static const struct { const char *n; int z; } names[] = {
        {"UT", 0}, {"GMT", 0}, {"Z", 0}, {"EST", -300}, {"EDT", -240}, {"CST", -360},
        {"CDT", -300}, {"MST", -420}, {"MDT", -360}, {"PST", -480}, {"PDT", -420},
    };
    size_t len, i, j;

    if (!s)
        return 0;
    len = strlen(s);
    /* the last token after the time */
    for (i = len; i > 0; i--) {
        if (s[i - 1] == '+' || s[i - 1] == '-') {
            const char *p = s + i;
            if (len - i >= 4 && p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' &&
                p[2] >= '0' && p[2] <= '9' && p[3] >= '0' && p[3] <= '9' &&
                (i < 2 || s[i - 2] == ' ' || s[i - 2] == '\t')) {
                int z = ((p[0] - '0') * 10 + (p[1] - '0')) * 60 + (p[2] - '0') * 10 + (p[3] - '0');
                return s[i - 1] == '-' ? -z : z;
            }
        }
    }
    /* a named zone: the token after the last ':' of the time */
    i = len;
    while (i > 0 && s[i - 1] != ':')
        i--;
    if (i == 0)
        return 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    j = i;
    while (j < len && ((s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= 'a' && s[j] <= 'z')))
        j++;
    for (size_t k = 0; k < ARRAY_LEN(names); k++)
        if (strlen(names[k].n) == j - i && strncasecmp(s + i, names[k].n, j - i) == 0)
            return names[k].z;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Compiled search keys */

enum { COST_META = 0, COST_HEADER = 1, COST_BODY = 2 };

struct node {
    const struct imap_search_key *k;
    int cost;
    char *needle;              /* case-folded UTF-8 */
    size_t nlen;
    const char *hname;         /* header keys: field name */
    struct node *kids;
    size_t n_kids;
};

struct mstate {
    uint32_t seq;
    bool have_hdr, have_msg, have_body, have_hdrtext, have_env;
    struct buf hdr, msg, body, hdrtext;
    struct message *env;       /* header parse, for SENT* */
};

struct ctx {
    const struct imap_search_store *st;
    const struct imap_search_opts *o;
    uint32_t count;
    uint32_t max_uid;
    struct mstate ms;
    struct err *e;
};

static void node_free(struct node *n)
{
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    free(n->needle);
}

static int set_needle(struct node *n, const struct imap_str *s, const char *cs, struct err *e)
{
    struct buf u = BUF_INIT, f = BUF_INIT;
    const char *src = s->s ? s->s : "";
    size_t len = s->s ? s->len : 0;

    if (cs && !charset_is_utf8_name(cs)) {
        unsigned flags = 0;
        if (charset_to_utf8(cs, src, len, &u, &flags) < 0 || (flags & CHARSET_FALLBACK)) {
            buf_free(&u);
            return err_set(e, ERR_UNSUPPORTED, "[BADCHARSET (UTF-8 US-ASCII)] Unknown charset");
        }
        src = buf_cstr(&u);
        len = u.len;
    }
    if (imap_casefold(src, len, &f) < 0)
        die("buf");
    n->needle = buf_steal(&f, &n->nlen);
    buf_free(&u);
    return 0;
}

static int compile(const struct imap_search_key *k, const char *cs, struct node *n,
                   struct err *e)
{
    memset(n, 0, sizeof *n);
    n->k = k;
    switch (k->key) {
    case IMAP_SK_AND:
    case IMAP_SK_NOT:
    case IMAP_SK_OR: {
        size_t cnt = 0;
        for (const struct imap_search_key *c = k->child; c; c = c->next)
            cnt++;
        if (k->key == IMAP_SK_NOT)
            cnt = cnt > 1 ? 1 : cnt;
        if (k->key == IMAP_SK_OR)
            cnt = cnt > 2 ? 2 : cnt;
        n->kids = cnt ? XNEWARRAY(struct node, cnt) : NULL;
        {
            const struct imap_search_key *c = k->child;
            for (size_t i = 0; i < cnt; i++, c = c->next) {
                if (compile(c, cs, &n->kids[i], e) < 0) {
                    n->n_kids = i + 1;     /* kids[i] is initialised: free it too */
                    return -1;
                }
                n->n_kids = i + 1;
                if (n->kids[i].cost > n->cost)
                    n->cost = n->kids[i].cost;
            }
        }
        return 0;
    }
    case IMAP_SK_BCC: n->hname = "Bcc"; break;
    case IMAP_SK_CC: n->hname = "Cc"; break;
    case IMAP_SK_FROM: n->hname = "From"; break;
    case IMAP_SK_TO: n->hname = "To"; break;
    case IMAP_SK_SUBJECT: n->hname = "Subject"; break;
    case IMAP_SK_HEADER: n->hname = k->field.s ? k->field.s : ""; break;
    case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON:
    case IMAP_SK_SENTSINCE:
        n->cost = COST_HEADER;
        return 0;
    case IMAP_SK_BODY:
    case IMAP_SK_TEXT:
        n->cost = COST_BODY;
        return set_needle(n, &k->str, cs, e);
    default:
        return 0;
    }
    n->cost = COST_HEADER;
    return set_needle(n, &k->str, cs, e);
}

static void ms_reset(struct mstate *ms, uint32_t seq)
{
    ms->seq = seq;
    ms->have_hdr = ms->have_msg = ms->have_body = ms->have_hdrtext = ms->have_env = false;
    buf_reset(&ms->hdr);
    buf_reset(&ms->msg);
    buf_reset(&ms->body);
    buf_reset(&ms->hdrtext);
    if (ms->env)
        message_free(ms->env);
    ms->env = NULL;
}

static void ms_free(struct mstate *ms)
{
    ms_reset(ms, 0);
    buf_free(&ms->hdr);
    buf_free(&ms->msg);
    buf_free(&ms->body);
    buf_free(&ms->hdrtext);
}

static int need_msg(struct ctx *c)
{
    struct mstate *ms = &c->ms;

    if (ms->have_msg)
        return 0;
    if (c->st->message(c->st->ctx, ms->seq, &ms->msg, c->e) < 0)
        return -1;
    ms->have_msg = true;
    return 0;
}

static int need_hdr(struct ctx *c)
{
    struct mstate *ms = &c->ms;

    if (ms->have_hdr)
        return 0;
    if (c->st->header) {
        if (c->st->header(c->st->ctx, ms->seq, &ms->hdr, c->e) < 0)
            return -1;
    } else {
        if (need_msg(c) < 0)
            return -1;
        if (buf_append(&ms->hdr, buf_cstr(&ms->msg), header_len(buf_cstr(&ms->msg),
                                                                  ms->msg.len)) < 0)
            die("buf");
    }
    ms->have_hdr = true;
    return 0;
}

static bool contains(const struct buf *hay, const struct node *n)
{
    if (n->nlen == 0)
        return true;
    return memmem(buf_cstr(hay), hay->len, n->needle, n->nlen) != NULL;
}

static int match_header(struct ctx *c, const struct node *n)
{
    const char *h, *name, *val;
    size_t len, pos = 0, nlen, vlen, hl = strlen(n->hname);
    struct buf t = BUF_INIT;
    int r = 0;

    if (need_hdr(c) < 0)
        return -1;
    h = buf_cstr(&c->ms.hdr);
    len = c->ms.hdr.len;
    while (next_field(h, len, &pos, &name, &nlen, &val, &vlen)) {
        if (nlen != hl || strncasecmp(name, n->hname, hl) != 0)
            continue;
        if (n->nlen == 0) {
            r = 1;
            break;
        }
        buf_reset(&t);
        field_text(val, vlen, &t);
        if (contains(&t, n)) {
            r = 1;
            break;
        }
    }
    buf_free(&t);
    return r;
}

static int need_hdrtext(struct ctx *c)
{
    const char *h, *name, *val;
    size_t len, pos = 0, nlen, vlen;

    if (c->ms.have_hdrtext)
        return 0;
    if (need_hdr(c) < 0)
        return -1;
    h = buf_cstr(&c->ms.hdr);
    len = c->ms.hdr.len;
    while (next_field(h, len, &pos, &name, &nlen, &val, &vlen)) {
        if (imap_casefold(name, nlen, &c->ms.hdrtext) < 0 ||
            buf_puts(&c->ms.hdrtext, ": ") < 0)
            die("buf");
        field_text(val, vlen, &c->ms.hdrtext);
        if (buf_putc(&c->ms.hdrtext, '\n') < 0)
            die("buf");
    }
    c->ms.have_hdrtext = true;
    return 0;
}

static int need_body(struct ctx *c)
{
    struct message *m = NULL;
    struct err pe;
    struct buf t = BUF_INIT;

    if (c->ms.have_body)
        return 0;
    if (need_msg(c) < 0)
        return -1;
    if (message_parse(buf_cstr(&c->ms.msg), c->ms.msg.len, NULL, &m, &pe) == 0) {
        for (size_t i = 0; i < m->n_parts; i++) {
            const struct msg_part *p = m->parts[i];
            if (p->parent && p->parent->type && strcmp(p->parent->type, "message") == 0 &&
                p->body_offset > p->header_offset) {
                /* the header of an attached message */
                struct buf d = BUF_INIT;
                if (rfc2047_decode(buf_cstr(&c->ms.msg) + p->header_offset,
                                   p->body_offset - p->header_offset, &d, NULL) < 0 ||
                    imap_casefold(buf_cstr(&d), d.len, &c->ms.body) < 0 ||
                    buf_putc(&c->ms.body, '\0') < 0)
                    die("buf");
                buf_free(&d);
            }
            if (p->n_children > 0 || (p->type && strcmp(p->type, "text") != 0))
                continue;
            buf_reset(&t);
            /* a part over the decoding limit is searched in its prefix */
            (void)message_part_text(m, p, &t, NULL, NULL, &pe);
            if (imap_casefold(buf_cstr(&t), t.len, &c->ms.body) < 0 ||
                buf_putc(&c->ms.body, '\0') < 0)
                die("buf");
        }
        message_free(m);
    }
    buf_free(&t);
    c->ms.have_body = true;
    return 0;
}

/* Sent day: the Date header's day in its own zone; -1 with no usable date
 * (the caller then uses the internal date). */
static int need_env(struct ctx *c)
{
    struct err pe;

    if (c->ms.have_env)
        return 0;
    if (need_hdr(c) < 0)
        return -1;
    if (message_parse_headers(buf_cstr(&c->ms.hdr), c->ms.hdr.len, NULL, &c->ms.env, &pe) < 0)
        c->ms.env = NULL;
    c->ms.have_env = true;
    return 0;
}

static int sent_day(struct ctx *c, int *day)
{
    if (need_env(c) < 0)
        return -1;
    if (c->ms.env && c->ms.env->env.date_valid) {
        *day = day_of(c->ms.env->env.date, date_zone(c->ms.env->env.date_text));
    } else {
        int zone = 0;
        int64_t t = c->st->internal_date(c->st->ctx, c->ms.seq, &zone);
        *day = day_of(t, zone);
    }
    return 0;
}

static bool in_saved(const struct imap_search_opts *o, uint32_t uid)
{
    size_t lo = 0, hi;

    if (!o || !o->saved)
        return false;
    hi = o->n_saved;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->saved[mid] == uid)
            return true;
        if (o->saved[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool in_set(const struct ctx *c, const struct imap_seqset *s, uint64_t v, uint64_t star,
                   uint32_t uid)
{
    for (size_t i = 0; i < s->n; i++) {
        uint64_t lo = s->r[i].lo, hi = s->r[i].hi;
        if (lo == IMAP_SEQ_SAVED && hi == IMAP_SEQ_SAVED) {
            if (in_saved(c->o, uid))
                return true;
            continue;
        }
        if (lo == IMAP_SEQ_STAR)
            lo = star;
        if (hi == IMAP_SEQ_STAR)
            hi = star;
        if (lo > hi) {
            uint64_t t = lo;
            lo = hi;
            hi = t;
        }
        if (v >= lo && v <= hi)
            return true;
    }
    return false;
}

static int eval(struct ctx *c, const struct node *n);

static int eval_kids(struct ctx *c, const struct node *n, bool any)
{
    /* cheap children first */
    for (int cost = COST_META; cost <= COST_BODY; cost++) {
        for (size_t i = 0; i < n->n_kids; i++) {
            int r;
            if (n->kids[i].cost != cost)
                continue;
            r = eval(c, &n->kids[i]);
            if (r < 0)
                return -1;
            if (any && r)
                return 1;
            if (!any && !r)
                return 0;
        }
    }
    return any ? 0 : 1;
}

static int eval(struct ctx *c, const struct node *n)
{
    const struct imap_search_key *k = n->k;
    const struct imap_search_store *st = c->st;
    uint32_t seq = c->ms.seq;
    int zone = 0, day, r;
    int64_t t;

    switch (k->key) {
    case IMAP_SK_AND:
        return eval_kids(c, n, false);
    case IMAP_SK_OR:
        return eval_kids(c, n, true);
    case IMAP_SK_NOT:
        if (n->n_kids == 0)
            return 1;
        r = eval(c, &n->kids[0]);
        return r < 0 ? -1 : !r;
    case IMAP_SK_ALL:
        return 1;
    case IMAP_SK_ANSWERED: return (st->flags(st->ctx, seq) & IMAP_MSG_ANSWERED) != 0;
    case IMAP_SK_DELETED: return (st->flags(st->ctx, seq) & IMAP_MSG_DELETED) != 0;
    case IMAP_SK_DRAFT: return (st->flags(st->ctx, seq) & IMAP_MSG_DRAFT) != 0;
    case IMAP_SK_FLAGGED: return (st->flags(st->ctx, seq) & IMAP_MSG_FLAGGED) != 0;
    case IMAP_SK_SEEN: return (st->flags(st->ctx, seq) & IMAP_MSG_SEEN) != 0;
    case IMAP_SK_RECENT: return (st->flags(st->ctx, seq) & IMAP_MSG_RECENT) != 0;
    case IMAP_SK_UNANSWERED: return (st->flags(st->ctx, seq) & IMAP_MSG_ANSWERED) == 0;
    case IMAP_SK_UNDELETED: return (st->flags(st->ctx, seq) & IMAP_MSG_DELETED) == 0;
    case IMAP_SK_UNDRAFT: return (st->flags(st->ctx, seq) & IMAP_MSG_DRAFT) == 0;
    case IMAP_SK_UNFLAGGED: return (st->flags(st->ctx, seq) & IMAP_MSG_FLAGGED) == 0;
    case IMAP_SK_UNSEEN: return (st->flags(st->ctx, seq) & IMAP_MSG_SEEN) == 0;
    case IMAP_SK_OLD: return (st->flags(st->ctx, seq) & IMAP_MSG_RECENT) == 0;
    case IMAP_SK_NEW:
        return (st->flags(st->ctx, seq) & (IMAP_MSG_RECENT | IMAP_MSG_SEEN)) == IMAP_MSG_RECENT;
    case IMAP_SK_KEYWORD:
        return st->has_keyword && k->str.s && st->has_keyword(st->ctx, seq, k->str.s);
    case IMAP_SK_UNKEYWORD:
        return !(st->has_keyword && k->str.s && st->has_keyword(st->ctx, seq, k->str.s));
    case IMAP_SK_LARGER: return st->size(st->ctx, seq) > k->num;
    case IMAP_SK_SMALLER: return st->size(st->ctx, seq) < k->num;
    case IMAP_SK_MODSEQ: return (st->modseq ? st->modseq(st->ctx, seq) : 0) >= k->num;
    case IMAP_SK_UID:
        return in_set(c, &k->set, st->uid(st->ctx, seq), c->max_uid, st->uid(st->ctx, seq));
    case IMAP_SK_SEQSET:
        return in_set(c, &k->set, seq, c->count, st->uid(st->ctx, seq));
    case IMAP_SK_BEFORE:
    case IMAP_SK_ON:
    case IMAP_SK_SINCE:
        t = st->internal_date(st->ctx, seq, &zone);
        day = day_of(t, zone);
        goto cmp_day;
    case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON:
    case IMAP_SK_SENTSINCE:
        if (sent_day(c, &day) < 0)
            return -1;
    cmp_day: {
        int want = ymd_key(k->date.year, k->date.month, k->date.day);
        switch (k->key) {
        case IMAP_SK_BEFORE: case IMAP_SK_SENTBEFORE: return day < want;
        case IMAP_SK_ON: case IMAP_SK_SENTON: return day == want;
        default: return day >= want;
        }
    }
    case IMAP_SK_OLDER:
    case IMAP_SK_YOUNGER: {
        int64_t now = c->o ? c->o->now : 0, age;
        t = st->internal_date(st->ctx, seq, &zone);
        age = now - t;
        /* RFC 5032: OLDER is BEFORE and YOUNGER SINCE the instant now - n */
        return k->key == IMAP_SK_OLDER ? age > (int64_t)k->num : age <= (int64_t)k->num;
    }
    case IMAP_SK_BCC: case IMAP_SK_CC: case IMAP_SK_FROM: case IMAP_SK_TO:
    case IMAP_SK_SUBJECT: case IMAP_SK_HEADER:
        return match_header(c, n);
    case IMAP_SK_TEXT:
        if (need_hdrtext(c) < 0)
            return -1;
        if (contains(&c->ms.hdrtext, n))
            return 1;
        /* fall through */
    case IMAP_SK_BODY:
        if (need_body(c) < 0)
            return -1;
        return contains(&c->ms.body, n);
    }
    err_set(c->e, ERR_INVAL, "Unknown search key");
    return -1;
}

int imap_search(const struct imap_search_store *st, const struct imap_search_key *keys,
                const struct imap_search_opts *opts, struct imap_search_result *res,
                struct err *e)
{
    struct node root;
    struct ctx c;
    const char *cs = opts ? opts->charset : NULL;
    int rc = 0;

    res->seq = NULL;
    res->n = 0;
    if (cs && !charset_is_utf8_name(cs)) {
        char norm[64];
        if (!charset_normalize(cs, norm, sizeof norm))
            return err_set(e, ERR_UNSUPPORTED, "[BADCHARSET (UTF-8 US-ASCII)] Unknown charset");
    }
    if (compile(keys, cs, &root, e) < 0) {
        node_free(&root);
        return -1;
    }
    memset(&c, 0, sizeof c);
    c.st = st;
    c.o = opts;
    c.e = e;
    c.count = st->count(st->ctx);
    c.max_uid = c.count ? st->uid(st->ctx, c.count) : 0;
    buf_init(&c.ms.hdr, 0);
    buf_init(&c.ms.msg, 0);
    buf_init(&c.ms.body, 0);
    buf_init(&c.ms.hdrtext, 0);
    res->seq = c.count ? XNEWARRAY(uint32_t, c.count) : NULL;
    for (uint32_t seq = 1; seq <= c.count; seq++) {
        int r;
        ms_reset(&c.ms, seq);
        r = eval(&c, &root);
        if (r < 0) {
            rc = -1;
            break;
        }
        if (r)
            res->seq[res->n++] = seq;
    }
    ms_free(&c.ms);
    node_free(&root);
    if (rc < 0)
        imap_search_result_free(res);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Base subject (RFC 5256 2.1) */

static bool is_wsp(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* A subj-blob at s[p..n): its end (trailing WSP included), or 0. */
static size_t blob_at(const char *s, size_t p, size_t n)
{
    size_t i;

    if (p >= n || s[p] != '[')
        return 0;
    for (i = p + 1; i < n && s[i] != ']'; i++)
        if (s[i] == '[')
            return 0;
    if (i >= n)
        return 0;
    i++;
    while (i < n && is_wsp(s[i]))
        i++;
    return i;
}

/* A subj-refwd at s[p..n): its end, or 0. */
static size_t refwd_at(const char *s, size_t p, size_t n)
{
    size_t i = p, b;

    if (n - p >= 2 && strncasecmp(s + p, "re", 2) == 0) {
        i = p + 2;
    } else if (n - p >= 2 && strncasecmp(s + p, "fw", 2) == 0) {
        i = p + 2;
        if (i < n && (s[i] == 'd' || s[i] == 'D'))
            i++;
    } else {
        return 0;
    }
    while (i < n && is_wsp(s[i]))
        i++;
    b = blob_at(s, i, n);
    if (b)
        i = b;
    if (i < n && s[i] == ':')
        return i + 1;
    return 0;
}

char *imap_base_subject(const char *subject, size_t len, bool *is_reply)
{
    struct buf d = BUF_INIT, w = BUF_INIT;
    const char *s;
    size_t p, n;
    bool reply = false;

    if (rfc2047_decode(subject ? subject : "", subject ? len : 0, &d, NULL) < 0)
        die("buf");
    /* (1) white space runs to one space */
    for (size_t i = 0; i < d.len; i++) {
        char ch = d.data[i];
        if (ch == '\t' || ch == '\r' || ch == '\n')
            ch = ' ';
        if (ch == ' ' && w.len > 0 && w.data[w.len - 1] == ' ')
            continue;
        if (buf_putc(&w, ch) < 0)
            die("buf");
    }
    buf_free(&d);
    s = buf_cstr(&w);
    p = 0;
    n = w.len;
    for (;;) {
        bool changed;
        /* (2) trailers */
        for (;;) {
            if (n > p && is_wsp(s[n - 1])) {
                n--;
            } else if (n - p >= 5 && strncasecmp(s + n - 5, "(fwd)", 5) == 0) {
                n -= 5;
                reply = true;
            } else {
                break;
            }
        }
        /* (3)-(5) leaders and blobs */
        do {
            changed = false;
            for (;;) {
                size_t q = p, b, r;
                if (q < n && is_wsp(s[q])) {
                    p++;
                    changed = true;
                    continue;
                }
                while ((b = blob_at(s, q, n)) != 0)
                    q = b;
                r = refwd_at(s, q, n);
                if (!r)
                    break;
                p = r;
                reply = true;
                changed = true;
            }
            {
                size_t b = blob_at(s, p, n);
                if (b && b < n) {
                    p = b;
                    changed = true;
                }
            }
        } while (changed);
        /* (6) [fwd: ...] */
        if (n - p >= 6 && strncasecmp(s + p, "[fwd:", 5) == 0 && s[n - 1] == ']') {
            p += 5;
            n--;
            reply = true;
            continue;
        }
        break;
    }
    if (is_reply)
        *is_reply = reply;
    {
        char *r = xstrndup(s + p, n - p);
        buf_free(&w);
        return r;
    }
}

/* ------------------------------------------------------------------ */
/* Per-message data for SORT and THREAD */

struct minfo {
    uint32_t seq;
    int64_t arrival, sent;
    uint64_t size;
    char *subj;                /* base subject, case-folded */
    bool reply;
    char *from, *to, *cc;      /* addr-mailbox, case-folded */
    char *dfrom, *dto;         /* display name or address, case-folded */
    char *msgid, *inreply;
    char **refs;
    size_t n_refs;
};

static char *fold_dup(const char *s)
{
    struct buf b = BUF_INIT;

    if (imap_casefold(s ? s : "", s ? strlen(s) : 0, &b) < 0)
        die("buf");
    return buf_steal(&b, NULL);
}

static char *mailbox_of(const struct msg_addr_list *l)
{
    const char *a, *at;

    for (size_t i = 0; i < l->n; i++) {
        a = l->v[i].addr;
        if (!a || !*a)
            continue;
        at = strrchr(a, '@');
        {
            char *m = xstrndup(a, at ? (size_t)(at - a) : strlen(a));
            char *u = fold_dup(m);
            free(m);
            return u;
        }
    }
    return xstrdup("");
}

static char *display_of(const struct msg_addr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].name && *l->v[i].name)
            return fold_dup(l->v[i].name);
        if (l->v[i].addr && *l->v[i].addr)
            return fold_dup(l->v[i].addr);
    }
    return xstrdup("");
}

/* When the first field called name in header block h starts with a group
 * ("team: a@b, c@d;"), the group's name upper-cased (what the envelope's
 * group marker carries as its mailbox), case-folded, else NULL. */
static char *group_name(const char *h, size_t len, const char *name)
{
    const char *fn, *val;
    size_t pos = 0, nlen, vlen, nl = strlen(name);

    while (next_field(h, len, &pos, &fn, &nlen, &val, &vlen)) {
        size_t i = 0;
        int depth = 0;
        bool q = false;
        if (nlen != nl || strncasecmp(fn, name, nl) != 0)
            continue;
        for (i = 0; i < vlen; i++) {
            char ch = val[i];
            if (q) {
                if (ch == '\\')
                    i++;
                else if (ch == '"')
                    q = false;
            } else if (depth) {
                if (ch == '(')
                    depth++;
                else if (ch == ')')
                    depth--;
            } else if (ch == '"') {
                q = true;
            } else if (ch == '(') {
                depth = 1;
            } else if (ch == '<' || ch == '@' || ch == ',' || ch == ';') {
                return NULL;
            } else if (ch == ':') {
                struct buf b = BUF_INIT;
                size_t a = 0, e = i;
                while (a < e && (val[a] == ' ' || val[a] == '\t' || val[a] == '\r' ||
                                 val[a] == '\n'))
                    a++;
                while (e > a && (val[e - 1] == ' ' || val[e - 1] == '\t'))
                    e--;
                if (e == a)
                    return NULL;
                for (size_t k = a; k < e; k++)
                    if (val[k] != '\r' && val[k] != '\n' && buf_putc(&b, val[k]) < 0)
                        die("buf");
                {
                    char *r = fold_dup(buf_cstr(&b));
                    buf_free(&b);
                    return r;
                }
            }
        }
        return NULL;
    }
    return NULL;
}

static void minfo_free(struct minfo *m)
{
    free(m->subj);
    free(m->from);
    free(m->to);
    free(m->cc);
    free(m->dfrom);
    free(m->dto);
    free(m->msgid);
    free(m->inreply);
    for (size_t i = 0; i < m->n_refs; i++)
        free(m->refs[i]);
    free(m->refs);
}

/* Raw Subject field of a header block (first one), or NULL. */
static void raw_subject(const char *h, size_t len, struct buf *out, bool *found)
{
    const char *name, *val;
    size_t pos = 0, nlen, vlen;

    *found = false;
    while (next_field(h, len, &pos, &name, &nlen, &val, &vlen)) {
        if (nlen == 7 && strncasecmp(name, "Subject", 7) == 0) {
            while (vlen > 0 && is_wsp(*val)) {
                val++;
                vlen--;
            }
            for (size_t i = 0; i < vlen; i++)
                if (val[i] != '\r' && val[i] != '\n' && buf_putc(out, val[i]) < 0)
                    die("buf");
            *found = true;
            return;
        }
    }
}

static int load_info(const struct imap_search_store *st, uint32_t seq, struct minfo *mi,
                     struct buf *hb, struct err *e)
{
    struct message *m = NULL;
    struct err pe;
    struct buf sb = BUF_INIT;
    int zone = 0;
    bool found;

    memset(mi, 0, sizeof *mi);
    mi->seq = seq;
    mi->arrival = st->internal_date(st->ctx, seq, &zone);
    mi->size = st->size(st->ctx, seq);
    buf_reset(hb);
    if (st->header) {
        if (st->header(st->ctx, seq, hb, e) < 0)
            return -1;
    } else {
        if (st->message(st->ctx, seq, hb, e) < 0)
            return -1;
        buf_truncate(hb, header_len(buf_cstr(hb), hb->len));
    }
    raw_subject(buf_cstr(hb), hb->len, &sb, &found);
    {
        /* 8-bit text outside encoded words is taken as UTF-8; what is not
         * valid UTF-8 becomes U+FFFD (its charset is unknown) */
        struct buf u = BUF_INIT;
        char *base;
        if (charset_to_utf8("utf-8", buf_cstr(&sb), sb.len, &u, NULL) < 0)
            die("buf");
        base = imap_base_subject(buf_cstr(&u), u.len, &mi->reply);
        buf_free(&u);
        mi->subj = fold_dup(base);
        free(base);
    }
    buf_free(&sb);
    mi->sent = mi->arrival;
    if (message_parse_headers(buf_cstr(hb), hb->len, NULL, &m, &pe) == 0) {
        const struct msg_envelope *en = &m->env;
        if (en->date_valid)
            mi->sent = en->date;
        mi->from = group_name(buf_cstr(hb), hb->len, "From");
        if (!mi->from)
            mi->from = mailbox_of(&en->from);
        mi->to = group_name(buf_cstr(hb), hb->len, "To");
        if (!mi->to)
            mi->to = mailbox_of(&en->to);
        mi->cc = group_name(buf_cstr(hb), hb->len, "Cc");
        if (!mi->cc)
            mi->cc = mailbox_of(&en->cc);
        /* a group's name is its display name too */
        mi->dfrom = group_name(buf_cstr(hb), hb->len, "From");
        if (!mi->dfrom)
            mi->dfrom = display_of(&en->from);
        mi->dto = group_name(buf_cstr(hb), hb->len, "To");
        if (!mi->dto)
            mi->dto = display_of(&en->to);
        mi->msgid = en->message_id && *en->message_id ? xstrdup(en->message_id) : NULL;
        mi->inreply = en->in_reply_to && *en->in_reply_to ? xstrdup(en->in_reply_to) : NULL;
        if (en->n_references) {
            mi->refs = XNEWARRAY(char *, en->n_references);
            for (size_t i = 0; i < en->n_references; i++)
                if (en->references[i] && *en->references[i])
                    mi->refs[mi->n_refs++] = xstrdup(en->references[i]);
        }
        message_free(m);
    } else {
        mi->from = xstrdup("");
        mi->to = xstrdup("");
        mi->cc = xstrdup("");
        mi->dfrom = xstrdup("");
        mi->dto = xstrdup("");
    }
    return 0;
}

static int load_all(const struct imap_search_store *st, const struct imap_search_result *res,
                    struct minfo **out, struct err *e)
{
    struct minfo *mi = res->n ? XNEWARRAY(struct minfo, res->n) : NULL;
    struct buf hb = BUF_INIT;

    for (size_t i = 0; i < res->n; i++) {
        if (load_info(st, res->seq[i], &mi[i], &hb, e) < 0) {
            for (size_t j = 0; j <= i; j++)
                minfo_free(&mi[j]);
            free(mi);
            buf_free(&hb);
            return -1;
        }
    }
    buf_free(&hb);
    *out = mi;
    return 0;
}

/* ------------------------------------------------------------------ */
/* SORT */

struct sort_ctx {
    const struct imap_sort_crit *crit;
    size_t n;
};

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int sort_cmp(const void *pa, const void *pb, void *arg)
{
    const struct minfo *a = pa, *b = pb;
    const struct sort_ctx *sc = arg;

    for (size_t i = 0; i < sc->n; i++) {
        int r = 0;
        switch (sc->crit[i].key) {
        case IMAP_SORT_ARRIVAL: r = cmp_i64(a->arrival, b->arrival); break;
        case IMAP_SORT_DATE: r = cmp_i64(a->sent, b->sent); break;
        case IMAP_SORT_SIZE: r = a->size < b->size ? -1 : a->size > b->size; break;
        case IMAP_SORT_SUBJECT: r = strcmp(a->subj, b->subj); break;
        case IMAP_SORT_FROM: r = strcmp(a->from, b->from); break;
        case IMAP_SORT_TO: r = strcmp(a->to, b->to); break;
        case IMAP_SORT_CC: r = strcmp(a->cc, b->cc); break;
        case IMAP_SORT_DISPLAYFROM: r = strcmp(a->dfrom, b->dfrom); break;
        case IMAP_SORT_DISPLAYTO: r = strcmp(a->dto, b->dto); break;
        }
        if (r) {
            r = r < 0 ? -1 : 1;
            return sc->crit[i].reverse ? -r : r;
        }
    }
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

int imap_sort(const struct imap_search_store *st, const struct imap_sort_crit *crit,
              size_t n_crit, struct imap_search_result *res, struct err *e)
{
    struct minfo *mi = NULL;
    struct sort_ctx sc = {crit, n_crit};
    bool need_hdr = false;

    for (size_t i = 0; i < n_crit; i++)
        if (crit[i].key != IMAP_SORT_ARRIVAL && crit[i].key != IMAP_SORT_SIZE)
            need_hdr = true;
    if (!need_hdr) {
        mi = res->n ? XNEWARRAY(struct minfo, res->n) : NULL;
        for (size_t i = 0; i < res->n; i++) {
            int zone = 0;
            memset(&mi[i], 0, sizeof mi[i]);
            mi[i].seq = res->seq[i];
            mi[i].arrival = st->internal_date(st->ctx, res->seq[i], &zone);
            mi[i].size = st->size(st->ctx, res->seq[i]);
        }
    } else if (load_all(st, res, &mi, e) < 0) {
        return -1;
    }
    if (res->n)
        qsort_r(mi, res->n, sizeof *mi, sort_cmp, &sc);
    for (size_t i = 0; i < res->n; i++) {
        res->seq[i] = mi[i].seq;
        minfo_free(&mi[i]);
    }
    free(mi);
    return 0;
}

/* ------------------------------------------------------------------ */
/* THREAD */

int imap_thread_alg_parse(const char *name, enum imap_thread_alg *alg)
{
    if (name && strcasecmp(name, "REFERENCES") == 0) {
        *alg = IMAP_THREAD_REFERENCES;
        return 0;
    }
    if (name && strcasecmp(name, "ORDEREDSUBJECT") == 0) {
        *alg = IMAP_THREAD_ORDEREDSUBJECT;
        return 0;
    }
    return -1;
}

struct tnode {
    const char *id;
    struct minfo *msg;         /* NULL: dummy */
    struct tnode *parent, *child, *next;
    int64_t date;              /* for sorting: the message's, or first child's */
    uint32_t seq;
};

struct idtab {
    struct tnode **slot;
    size_t cap;
};

static size_t hash_str(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

struct tpool {
    struct tnode **v;
    size_t n, cap;
};

static struct tnode *tnode_new(struct tpool *pool)
{
    struct tnode *t = XNEW(struct tnode);

    if (pool->n == pool->cap) {
        pool->cap = pool->cap ? pool->cap * 2 : 64;
        pool->v = xreallocarray(pool->v, pool->cap, sizeof *pool->v);
    }
    pool->v[pool->n++] = t;
    return t;
}

static struct tnode *id_get(struct idtab *t, struct tpool *pool, const char *id)
{
    size_t h = hash_str(id) & (t->cap - 1);

    while (t->slot[h]) {
        if (strcmp(t->slot[h]->id, id) == 0)
            return t->slot[h];
        h = (h + 1) & (t->cap - 1);
    }
    t->slot[h] = tnode_new(pool);
    t->slot[h]->id = id;
    return t->slot[h];
}

/* True if a is b or below b. */
static bool is_under(const struct tnode *a, const struct tnode *b)
{
    for (; a; a = a->parent)
        if (a == b)
            return true;
    return false;
}

static void unlink_node(struct tnode *c)
{
    struct tnode **pp;

    if (!c->parent)
        return;
    for (pp = &c->parent->child; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    c->parent = NULL;
    c->next = NULL;
}

static void add_child(struct tnode *p, struct tnode *c)
{
    struct tnode **pp = &p->child;

    while (*pp)
        pp = &(*pp)->next;
    *pp = c;
    c->next = NULL;
    c->parent = p;
}

static struct tnode *prune(struct tnode *list, struct tnode *parent)
{
    struct tnode *out = NULL, **tail = &out, *next;

    for (struct tnode *c = list; c; c = next) {
        next = c->next;
        c->next = NULL;
        c->child = prune(c->child, c);
        if (!c->msg && !c->child)
            continue;
        if (!c->msg && (parent || !c->child->next)) {
            struct tnode *k, *kn;
            for (k = c->child; k; k = kn) {
                kn = k->next;
                k->parent = parent;
                k->next = NULL;
                *tail = k;
                tail = &k->next;
            }
            continue;
        }
        c->parent = parent;
        *tail = c;
        tail = &c->next;
    }
    return out;
}

static int tcmp(const void *pa, const void *pb)
{
    const struct tnode *a = *(struct tnode *const *)pa, *b = *(struct tnode *const *)pb;
    int r = cmp_i64(a->date, b->date);

    return r ? r : (a->seq < b->seq ? -1 : a->seq > b->seq);
}

/* Sort siblings by date at every level below p; set p's sort date. */
static void sort_kids(struct tnode *p)
{
    size_t n = 0, i;
    struct tnode **v, *c;

    for (c = p->child; c; c = c->next) {
        sort_kids(c);
        n++;
    }
    if (n > 1) {
        v = XNEWARRAY(struct tnode *, n);
        for (i = 0, c = p->child; c; c = c->next)
            v[i++] = c;
        qsort(v, n, sizeof *v, tcmp);
        for (i = 0; i + 1 < n; i++)
            v[i]->next = v[i + 1];
        v[n - 1]->next = NULL;
        p->child = v[0];
        free(v);
    }
    if (p->msg) {
        p->date = p->msg->sent;
        p->seq = p->msg->seq;
    } else if (p->child) {
        p->date = p->child->date;
        p->seq = p->child->seq;
    }
}

static int write_node(struct buf *out, const struct tnode *t, bool uid,
                      const struct imap_search_store *st)
{
    size_t nk = 0;

    for (const struct tnode *c = t->child; c; c = c->next)
        nk++;
    if (t->msg) {
        uint32_t v = uid ? st->uid(st->ctx, t->msg->seq) : t->msg->seq;
        if (buf_printf(out, "%u", v) < 0)
            return -1;
        if (nk == 0)
            return 0;
        if (buf_putc(out, ' ') < 0)
            return -1;
        if (nk == 1)
            return write_node(out, t->child, uid, st);
    } else if (nk == 1) {
        return write_node(out, t->child, uid, st);
    }
    for (const struct tnode *c = t->child; c; c = c->next) {
        if (buf_putc(out, '(') < 0 || write_node(out, c, uid, st) < 0 || buf_putc(out, ')') < 0)
            return -1;
    }
    return 0;
}

static int write_roots(struct buf *out, struct tnode **roots, size_t n, bool uid,
                       const struct imap_search_store *st, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (!roots[i])
            continue;
        if (buf_putc(out, '(') < 0 || write_node(out, roots[i], uid, st) < 0 ||
            buf_putc(out, ')') < 0)
            return err_set(e, ERR_LIMIT, "Response too long");
    }
    return 0;
}

struct subj_ix {
    const char *subj;
    size_t i;
};

static int subj_ix_cmp(const void *pa, const void *pb)
{
    const struct subj_ix *a = pa, *b = pb;
    int r = strcmp(a->subj, b->subj);

    return r ? r : (a->i < b->i ? -1 : a->i > b->i);
}

static const struct minfo *first_msg(const struct tnode *t)
{
    return t->msg ? t->msg : (t->child ? t->child->msg : NULL);
}

static int thread_references(const struct imap_search_store *st, struct minfo *mi, size_t n,
                             bool uid, struct buf *out, struct err *e)
{
    struct tpool pool = {NULL, 0, 0};
    struct idtab tab;
    struct tnode **roots, top;
    size_t n_roots = 0, cap = 16, i;
    int rc;

    {
        size_t total = n;
        for (i = 0; i < n; i++)
            total += mi[i].n_refs + 1;
        while (cap < total * 2)
            cap *= 2;
    }
    tab.cap = cap;
    tab.slot = xcalloc(cap, sizeof *tab.slot);

    /* (1) links */
    for (i = 0; i < n; i++) {
        struct minfo *m = &mi[i];
        struct tnode *c = NULL, *last = NULL;
        char **refs = m->refs;
        size_t nr = m->n_refs;

        if (m->msgid) {
            c = id_get(&tab, &pool, m->msgid);
            if (c->msg)
                c = NULL;      /* a duplicate Message-ID: a container of its own */
        }
        if (!c)
            c = tnode_new(&pool);
        c->msg = m;
        if (nr == 0 && m->inreply) {
            refs = &m->inreply;
            nr = 1;
        }
        for (size_t r = 0; r < nr; r++) {
            struct tnode *p = id_get(&tab, &pool, refs[r]);
            if (last && !p->parent && p != last && !is_under(last, p))
                add_child(last, p);
            last = p;
        }
        if (last && (last == c || is_under(last, c)))
            continue;          /* the link would make a loop */
        if (c->parent != last) {
            unlink_node(c);
            if (last)
                add_child(last, c);
        }
    }
    /* (2) root set, (4) prune */
    memset(&top, 0, sizeof top);
    {
        struct tnode **tail = &top.child;
        for (i = 0; i < pool.n; i++) {
            if (!pool.v[i]->parent) {
                *tail = pool.v[i];
                tail = &pool.v[i]->next;
                *tail = NULL;
            }
        }
    }
    top.child = prune(top.child, NULL);
    /* (5) sort the root set */
    sort_kids(&top);
    for (struct tnode *c = top.child; c; c = c->next)
        n_roots++;
    roots = n_roots ? XNEWARRAY(struct tnode *, n_roots) : NULL;
    i = 0;
    for (struct tnode *c = top.child; c; c = c->next)
        roots[i++] = c;
    for (i = 0; i < n_roots; i++) {
        roots[i]->next = NULL;
        roots[i]->parent = NULL;
    }

    /* (6) gather by subject: order[i] is the first root with root i's
     * base subject */
    {
        struct tnode **tabv = n_roots ? xcalloc(n_roots, sizeof *tabv) : NULL;
        size_t *order = n_roots ? XNEWARRAY(size_t, n_roots) : NULL;
        struct subj_ix *ix = n_roots ? XNEWARRAY(struct subj_ix, n_roots) : NULL;
        size_t n_ix = 0;

        for (i = 0; i < n_roots; i++) {
            const struct minfo *fm = first_msg(roots[i]);
            order[i] = i;
            if (fm && *fm->subj) {
                ix[n_ix].subj = fm->subj;
                ix[n_ix++].i = i;
            }
        }
        if (n_ix)
            qsort(ix, n_ix, sizeof *ix, subj_ix_cmp);
        for (size_t k = 1; k < n_ix; k++)
            if (strcmp(ix[k].subj, ix[k - 1].subj) == 0)
                order[ix[k].i] = order[ix[k - 1].i];
        free(ix);
        /* (A) choose the table container per group */
        for (i = 0; i < n_roots; i++) {
            const struct minfo *fm = first_msg(roots[i]);
            size_t g = order[i];
            struct tnode *t;
            if (!fm || !*fm->subj)
                continue;
            t = tabv[g];
            if (!t || (t->msg && !roots[i]->msg) ||
                (t->msg && first_msg(t)->reply && roots[i]->msg && !fm->reply))
                tabv[g] = roots[i];
        }
        /* (B) merge */
        for (i = 0; i < n_roots; i++) {
            struct tnode *r = roots[i], *t;
            const struct minfo *fm;
            size_t g = order[i];
            if (!r)
                continue;
            fm = first_msg(r);
            if (!fm || !*fm->subj)
                continue;
            t = tabv[g];
            if (!t || t == r)
                continue;
            if (!t->msg && !r->msg) {
                struct tnode *k, *kn;
                for (k = r->child; k; k = kn) {
                    kn = k->next;
                    add_child(t, k);
                }
                r->child = NULL;
                roots[i] = NULL;
            } else if (!t->msg) {
                add_child(t, r);
                roots[i] = NULL;
            } else if (!r->msg) {
                /* cannot happen: the table prefers dummies */
                add_child(r, t);
                for (size_t j = 0; j < n_roots; j++)
                    if (roots[j] == t)
                        roots[j] = NULL;
                tabv[g] = r;
            } else if (!t->msg->reply && r->msg->reply) {
                add_child(t, r);
                roots[i] = NULL;
            } else if (t->msg->reply && !r->msg->reply) {
                add_child(r, t);
                for (size_t j = 0; j < n_roots; j++)
                    if (roots[j] == t)
                        roots[j] = NULL;
                tabv[g] = r;
            } else {
                struct tnode *d = tnode_new(&pool);
                for (size_t j = 0; j < n_roots; j++)
                    if (roots[j] == t)
                        roots[j] = d;
                add_child(d, t);
                add_child(d, r);
                roots[i] = NULL;
                tabv[g] = d;
            }
        }
        free(tabv);
        free(order);
    }
    /* (7) sort children everywhere */
    for (i = 0; i < n_roots; i++)
        if (roots[i])
            sort_kids(roots[i]);
    rc = write_roots(out, roots, n_roots, uid, st, e);
    free(roots);
    for (i = 0; i < pool.n; i++)
        free(pool.v[i]);
    free(pool.v);
    free(tab.slot);
    return rc;
}

static int os_cmp(const void *pa, const void *pb)
{
    const struct minfo *a = *(struct minfo *const *)pa, *b = *(struct minfo *const *)pb;
    int r = strcmp(a->subj, b->subj);

    if (r)
        return r;
    r = cmp_i64(a->sent, b->sent);
    return r ? r : (a->seq < b->seq ? -1 : a->seq > b->seq);
}

static int thread_orderedsubject(const struct imap_search_store *st, struct minfo *mi,
                                 size_t n, bool uid, struct buf *out, struct err *e)
{
    struct minfo **v = n ? XNEWARRAY(struct minfo *, n) : NULL;
    struct tnode *nodes = n ? xcalloc(n, sizeof *nodes) : NULL;
    struct tnode **roots = n ? XNEWARRAY(struct tnode *, n) : NULL;
    size_t n_roots = 0;
    int rc;

    for (size_t i = 0; i < n; i++)
        v[i] = &mi[i];
    if (n)
        qsort(v, n, sizeof *v, os_cmp);
    for (size_t i = 0; i < n; i++) {
        nodes[i].msg = v[i];
        nodes[i].date = v[i]->sent;
        nodes[i].seq = v[i]->seq;
        if (i > 0 && strcmp(v[i]->subj, v[i - 1]->subj) == 0) {
            add_child(roots[n_roots - 1], &nodes[i]);
        } else {
            roots[n_roots++] = &nodes[i];
        }
    }
    if (n_roots)
        qsort(roots, n_roots, sizeof *roots, tcmp);
    rc = write_roots(out, roots, n_roots, uid, st, e);
    free(roots);
    free(nodes);
    free(v);
    return rc;
}

int imap_thread(const struct imap_search_store *st, enum imap_thread_alg alg,
                const struct imap_search_result *res, bool uid, struct buf *out,
                struct err *e)
{
    struct minfo *mi = NULL;
    int rc;

    if (load_all(st, res, &mi, e) < 0)
        return -1;
    if (alg == IMAP_THREAD_REFERENCES)
        rc = thread_references(st, mi, res->n, uid, out, e);
    else
        rc = thread_orderedsubject(st, mi, res->n, uid, out, e);
    for (size_t i = 0; i < res->n; i++)
        minfo_free(&mi[i]);
    free(mi);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Responses */

static int u32cmp(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

    return a < b ? -1 : a > b;
}

int imap_seqset_compress(uint32_t *v, size_t n, struct buf *out)
{
    size_t m = 0, i = 0;

    if (n)
        qsort(v, n, sizeof *v, u32cmp);
    for (size_t k = 0; k < n; k++)
        if (m == 0 || v[m - 1] != v[k])
            v[m++] = v[k];
    while (i < m) {
        size_t j = i;
        while (j + 1 < m && v[j + 1] == v[j] + 1)
            j++;
        if (i > 0 && buf_putc(out, ',') < 0)
            return -1;
        if (j == i) {
            if (buf_printf(out, "%u", v[i]) < 0)
                return -1;
        } else if (buf_printf(out, "%u:%u", v[i], v[j]) < 0) {
            return -1;
        }
        i = j + 1;
    }
    return 0;
}

int imap_search_write(struct buf *out, const char *name, const uint32_t *v, size_t n)
{
    if (buf_printf(out, "* %s", name) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (buf_printf(out, " %u", v[i]) < 0)
            return -1;
    return buf_puts(out, "\r\n");
}

int imap_esearch_write(struct buf *out, const char *tag, bool uid, unsigned ret,
                       const uint32_t *v, size_t n)
{
    if (ret == IMAP_RET_SAVE)
        return 0;
    if ((ret & ~(unsigned)IMAP_RET_SAVE) == 0)
        ret |= IMAP_RET_ALL;
    if (buf_puts(out, "* ESEARCH") < 0)
        return -1;
    if (tag) {
        if (buf_puts(out, " (TAG ") < 0 || imap_write_string(out, tag, strlen(tag), false) < 0 ||
            buf_putc(out, ')') < 0)
            return -1;
    }
    if (uid && buf_puts(out, " UID") < 0)
        return -1;
    if (n && (ret & IMAP_RET_MIN) && buf_printf(out, " MIN %u", v[0]) < 0)
        return -1;
    if (n && (ret & IMAP_RET_MAX) && buf_printf(out, " MAX %u", v[n - 1]) < 0)
        return -1;
    if ((ret & IMAP_RET_COUNT) && buf_printf(out, " COUNT %zu", n) < 0)
        return -1;
    if (n && (ret & IMAP_RET_ALL)) {
        uint32_t *copy = XNEWARRAY(uint32_t, n);
        int r;
        memcpy(copy, v, n * sizeof *v);
        r = buf_puts(out, " ALL ");
        if (r == 0)
            r = imap_seqset_compress(copy, n, out);
        free(copy);
        if (r < 0)
            return -1;
    }
    return buf_puts(out, "\r\n");
}

void imap_search_saved(unsigned ret, const uint32_t *v, size_t n, uint32_t **out,
                       size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return;
    if ((ret & (IMAP_RET_ALL | IMAP_RET_COUNT)) || !(ret & (IMAP_RET_MIN | IMAP_RET_MAX))) {
        *out = XNEWARRAY(uint32_t, n);
        memcpy(*out, v, n * sizeof *v);
        *n_out = n;
        return;
    }
    *out = XNEWARRAY(uint32_t, 2);
    if (ret & IMAP_RET_MIN)
        (*out)[(*n_out)++] = v[0];
    if ((ret & IMAP_RET_MAX) && !(*n_out == 1 && v[n - 1] == v[0]))
        (*out)[(*n_out)++] = v[n - 1];
}
