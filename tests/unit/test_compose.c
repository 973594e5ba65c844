/* Tests for lib/compose: rendering checked by parsing the output back with
 * lib/message, address parsing, folding, header injection, encodings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "charset.h"
#include "codec.h"
#include "compose.h"
#include "message.h"
#include "rfc2047.h"
#include "rfc2231.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    /* xorshift64* */
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

static size_t rng_below(struct rng *r, size_t n)
{
    return n ? (size_t)(rng_next(r) % n) : 0;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    r->s = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int i = 0; i < 4; i++)
        (void)rng_next(r);
}

static void rng_bytes(void *ctx, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(rng_next(ctx) >> 24);
}

static void put(struct buf *b, const void *p, size_t n)
{
    assert_int_equal(buf_append(b, p, n), 0);
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putc_(struct buf *b, char c)
{
    put(b, &c, 1);
}

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want || !got) {
        if (got != want)
            fail_msg("got \"%s\", want \"%s\"", got ? got : "(null)", want ? want : "(null)");
        return;
    }
    assert_string_equal(got, want);
}

/* A small valid message. */
static void base_msg(struct compose_msg *m)
{
    compose_msg_init(m);
    compose_addrs_add(&m->from, "Ann Sender", "ann@example.org");
    compose_addrs_add(&m->to, "Bob", "bob@example.net");
    compose_set_subject(m, "hello");
    compose_set_body(m, "Hi Bob.\n");
    m->date = 1700000000;
    m->tz_fixed = true;
    m->message_id = xstrdup("fixed.1@example.org");
}

static struct compose_opts base_opts(struct rng *r)
{
    struct compose_opts o;

    memset(&o, 0, sizeof o);
    o.hostname = "mail.example.org";
    o.random = rng_bytes;
    o.random_ctx = r;
    return o;
}

static char *render_ok(const struct compose_msg *m, const struct compose_opts *o, size_t *len)
{
    struct buf out = BUF_INIT;
    struct err e;

    err_clear(&e);
    if (compose_render(m, o, &out, &e) < 0)
        fail_msg("compose_render: %s", e.text);
    return buf_steal(&out, len);
}

static struct message *parse_ok(const char *raw, size_t len)
{
    struct message *msg = NULL;
    struct err e;

    assert_int_equal(message_parse(raw, len, NULL, &msg, &e), 0);
    for (size_t i = 0; i < msg->n_warnings; i++)
        print_message("parser warning: %s\n", msg->warnings[i]);
    if (msg->n_warnings)
        fail_msg("%zu parser warnings for:\n%.*s", msg->n_warnings, (int)(len < 4000 ? len : 4000),
                 raw);
    return msg;
}

/* Text of a part as UTF-8 with LF line ends. */
static char *part_text(const struct message *msg, const struct msg_part *p, size_t *len)
{
    struct buf b = BUF_INIT;
    bool broken = true;
    struct err e;

    assert_int_equal(message_part_text(msg, p, &b, NULL, &broken, &e), 0);
    assert_false(broken);
    return buf_steal(&b, len);
}

static char *part_bytes(const struct message *msg, const struct msg_part *p, size_t *len)
{
    struct buf b = BUF_INIT;
    bool broken = true;
    struct err e;

    assert_int_equal(message_part_decode(msg, p, &b, &broken, &e), 0);
    assert_false(broken);
    return buf_steal(&b, len);
}

/* CRLF to LF. */
static char *to_lf(const char *s, size_t n, size_t *outlen)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '\r' && i + 1 < n && s[i + 1] == '\n'))
            putc_(&b, s[i]);
    return buf_steal(&b, outlen);
}

static void assert_mem(const char *got, size_t glen, const char *want, size_t wlen)
{
    if (glen != wlen || memcmp(got, want, glen) != 0)
        fail_msg("content differs: got %zu bytes, want %zu", glen, wlen);
}

/* Pointer to the first line starting with name ":" in the header block
 * raw[0..end) (case-insensitive), or NULL. */
static const char *find_field(const char *raw, size_t end, const char *name)
{
    size_t nl = strlen(name), pos = 0;

    while (pos < end) {
        if (pos + nl < end && strncasecmp(raw + pos, name, nl) == 0 && raw[pos + nl] == ':')
            return raw + pos;
        const char *lf = memchr(raw + pos, '\n', end - pos);
        if (!lf)
            break;
        pos = (size_t)(lf - raw) + 1;
    }
    return NULL;
}

/* Unfolded, trimmed, RFC 2047 decoded value of a field, or NULL. */
static char *field_value(const char *raw, size_t end, const char *name)
{
    const char *f = find_field(raw, end, name), *p;
    struct buf b = BUF_INIT;
    char *r;

    if (!f)
        return NULL;
    p = f + strlen(name) + 1;
    for (;;) {
        const char *lf = memchr(p, '\n', (size_t)(raw + end - p));
        const char *stop = lf ? lf : raw + end;
        for (const char *q = p; q < stop; q++)
            if (*q != '\r')
                putc_(&b, *q);
        if (!lf || lf + 1 >= raw + end || (lf[1] != ' ' && lf[1] != '\t'))
            break;
        p = lf + 1;
    }
    {
        const char *s = buf_cstr(&b);
        size_t n = b.len;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        r = rfc2047_decode_str(s, n, NULL);
    }
    buf_free(&b);
    return r;
}

/* Header block lines: never over 998; over width only when the line holds
 * one token that cannot be broken (no blank outside quotes after the field
 * name or the folding blank). */
static void check_header_block(const char *raw, size_t start, size_t end, size_t width)
{
    size_t pos = start;

    while (pos < end) {
        const char *lf = memchr(raw + pos, '\n', end - pos);
        size_t le = lf ? (size_t)(lf - raw) : end;
        size_t len = le - pos;
        const char *s = raw + pos;

        if (len > 0 && s[len - 1] == '\r')
            len--;
        if (len > 998)
            fail_msg("header line of %zu octets", len);
        if (len > width) {
            size_t i = 0;
            bool inq = false;
            if (s[0] == ' ' || s[0] == '\t') {
                while (i < len && (s[i] == ' ' || s[i] == '\t'))
                    i++;
            } else {
                const char *colon = memchr(s, ':', len);
                assert_non_null(colon);
                i = (size_t)(colon - s) + 1;
                while (i < len && s[i] == ' ')
                    i++;
            }
            for (; i < len; i++) {
                if (s[i] == '\\' && inq)
                    i++;
                else if (s[i] == '"')
                    inq = !inq;
                else if ((s[i] == ' ' || s[i] == '\t') && !inq)
                    fail_msg("header line of %zu > %zu columns could have been folded: %.*s",
                             len, width, (int)len, s);
            }
        }
        pos = le + 1;
    }
}

/* Every encoded word in raw[start..end) is at most 75 characters and
 * decodes to valid UTF-8 on its own (no character split across words). */
static size_t check_encoded_words(const char *raw, size_t start, size_t end)
{
    size_t count = 0, pos = start;

    while (pos < end) {
        const char *w = memmem(raw + pos, end - pos, "=?UTF-8?", 8);
        const char *text, *stop;
        struct buf b = BUF_INIT;
        bool bad = false;
        char enc;

        if (!w)
            break;
        enc = w[8];
        assert_true(enc == 'B' || enc == 'Q');
        assert_int_equal(w[9], '?');
        text = w + 10;
        stop = memmem(text, (size_t)(raw + end - text), "?=", 2);
        assert_non_null(stop);
        assert_true(stop + 2 - w <= 75);
        if (enc == 'B')
            assert_int_equal(codec_b64_decode(text, (size_t)(stop - text), &b, &bad), 0);
        else
            assert_int_equal(codec_qp_decode(text, (size_t)(stop - text), true, &b, &bad), 0);
        assert_false(bad);
        assert_true(charset_valid_utf8(buf_cstr(&b), b.len));
        buf_free(&b);
        count++;
        pos = (size_t)(stop + 2 - raw);
    }
    return count;
}

static void check_all_lines(const char *raw, size_t len, size_t max)
{
    size_t pos = 0;

    while (pos < len) {
        const char *lf = memchr(raw + pos, '\n', len - pos);
        size_t le = lf ? (size_t)(lf - raw) : len, n = le - pos;
        if (n > 0 && raw[le - 1] == '\r')
            n--;
        if (n > max)
            fail_msg("line of %zu octets (max %zu)", n, max);
        pos = le + 1;
    }
}

/* True if p is inside a message/rfc822 part (headers not written by us). */
static bool in_forwarded(const struct msg_part *p)
{
    for (const struct msg_part *q = p->parent; q; q = q->parent)
        if (q->type && strcmp(q->type, "message") == 0)
            return true;
    return false;
}

static void check_structure(const struct message *msg, size_t width)
{
    check_all_lines(msg->raw, msg->raw_len, 998);
    for (size_t i = 0; i < msg->n_parts; i++) {
        const struct msg_part *p = msg->parts[i];
        if (in_forwarded(p))
            continue;
        check_header_block(msg->raw, p->header_offset, p->body_offset, width);
        check_encoded_words(msg->raw, p->header_offset, p->body_offset);
    }
}

static void assert_addrs(const struct msg_addr_list *got, const struct msg_addr_list *want)
{
    assert_int_equal(got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        const char *wn = want->v[i].name && want->v[i].name[0] ? want->v[i].name : NULL;
        assert_str_or_null(got->v[i].name, wn);
        assert_string_equal(got->v[i].addr, want->v[i].addr);
    }
}

/* ---- random content ----------------------------------------------------- */

enum {
    GEN_CONTROLS = 1u << 0,   /* C0 controls and DEL (never CR, LF, NUL) */
    GEN_EDGE_WS = 1u << 1,    /* leading / trailing blanks */
    GEN_LONG = 1u << 2,       /* words of over 900 characters */
    GEN_NO_EW = 1u << 3,      /* never "=?" (file names: see below) */
    GEN_NO_TAB = 1u << 4,
};

static void gen_cp(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    put(b, u, n);
}

static void gen_word(struct rng *r, struct buf *b, unsigned flags)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static const char punct[] = ",;:\"\\()<>@.[]!?#'=_%*+-/&|~{}`^$";
    static const uint32_t latin[] = {0xe9, 0xe8, 0xfc, 0xf6, 0xe4, 0xdf, 0xf1, 0xe7, 0xc5, 0x153};
    size_t n;

    switch (rng_below(r, 16)) {
    case 0: case 1: case 2: case 3: case 4:
        n = 1 + rng_below(r, 12);
        for (size_t i = 0; i < n; i++)
            putc_(b, alnum[rng_below(r, sizeof alnum - 1)]);
        break;
    case 5: case 6:
        n = 1 + rng_below(r, 6);
        for (size_t i = 0; i < n; i++)
            putc_(b, rng_below(r, 2) ? punct[rng_below(r, sizeof punct - 1)]
                                     : alnum[rng_below(r, sizeof alnum - 1)]);
        break;
    case 7: case 8:
        n = 1 + rng_below(r, 8);
        for (size_t i = 0; i < n; i++) {
            if (rng_below(r, 2))
                gen_cp(b, latin[rng_below(r, ARRAY_LEN(latin))]);
            else
                putc_(b, alnum[rng_below(r, 26)]);
        }
        break;
    case 9: case 10:
        n = 1 + rng_below(r, 12);
        for (size_t i = 0; i < n; i++)
            gen_cp(b, 0x4e00 + (uint32_t)rng_below(r, 0x5000));
        break;
    case 11:
        n = 1 + rng_below(r, 3);
        for (size_t i = 0; i < n; i++)
            gen_cp(b, 0x1f300 + (uint32_t)rng_below(r, 0x350));
        break;
    case 12:
        if (flags & GEN_NO_EW)
            puts_(b, "eq=sign?");
        else
            puts_(b, rng_below(r, 2) ? "=?UTF-8?B?Zm9v?=" : "x=?y");
        break;
    case 13:
        if (flags & GEN_CONTROLS) {
            static const char ctl[] = "\x01\x07\x1b\x7f\x08";
            putc_(b, ctl[rng_below(r, sizeof ctl - 1)]);
            putc_(b, 'c');
        } else {
            puts_(b, "ctl");
        }
        break;
    case 14:
        if (flags & GEN_LONG) {
            n = 901 + rng_below(r, 300);
            bool cjk = rng_below(r, 2);
            for (size_t i = 0; i < n; i++) {
                if (cjk)
                    gen_cp(b, 0x3041 + (uint32_t)rng_below(r, 80));
                else
                    putc_(b, alnum[rng_below(r, sizeof alnum - 1)]);
            }
        } else {
            puts_(b, "long");
        }
        break;
    default:
        gen_cp(b, 0x400 + (uint32_t)rng_below(r, 0x50));   /* Cyrillic */
        gen_cp(b, 0x430 + (uint32_t)rng_below(r, 0x20));
        break;
    }
}

static void gen_gap(struct rng *r, struct buf *b, unsigned flags)
{
    size_t k = rng_below(r, 20);

    if (k < 14)
        putc_(b, ' ');
    else if (k < 16)
        puts_(b, "  ");
    else if (k < 18)
        puts_(b, flags & GEN_NO_TAB ? "   " : "\t");
    else if (k < 19)
        puts_(b, flags & GEN_NO_TAB ? " " : " \t ");
    else
        for (size_t i = 0; i < 70; i++)
            putc_(b, ' ');
}

/* Random text of up to max_words words; never empty. */
static char *gen_text(struct rng *r, size_t max_words, unsigned flags)
{
    struct buf b = BUF_INIT;
    size_t n = 1 + rng_below(r, max_words);

    if ((flags & GEN_EDGE_WS) && rng_below(r, 8) == 0)
        gen_gap(r, &b, flags);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            gen_gap(r, &b, flags);
        gen_word(r, &b, flags);
    }
    if ((flags & GEN_EDGE_WS) && rng_below(r, 8) == 0)
        gen_gap(r, &b, flags);
    return buf_steal(&b, NULL);
}

static char *gen_addr(struct rng *r)
{
    static const char lc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static const char odd[] = "+-_'!#$%&*/=?^`{|}~";
    struct buf b = BUF_INIT;
    size_t atoms = 1 + rng_below(r, 2);

    for (size_t a = 0; a < atoms; a++) {
        size_t n = 1 + rng_below(r, 6);
        if (a)
            putc_(&b, '.');
        for (size_t i = 0; i < n; i++)
            putc_(&b, lc[rng_below(r, sizeof lc - 1)]);
        if (rng_below(r, 6) == 0)
            putc_(&b, odd[rng_below(r, sizeof odd - 1)]);
    }
    putc_(&b, '@');
    atoms = 1 + rng_below(r, 2);
    for (size_t a = 0; a < atoms; a++) {
        size_t n = 1 + rng_below(r, 7);
        for (size_t i = 0; i < n; i++)
            putc_(&b, lc[rng_below(r, 26)]);
        putc_(&b, '.');
    }
    puts_(&b, rng_below(r, 2) ? "example" : "org");
    return buf_steal(&b, NULL);
}

static void gen_addrs(struct rng *r, struct msg_addr_list *l, size_t max)
{
    size_t n = rng_below(r, max + 1);

    for (size_t i = 0; i < n; i++) {
        char *a = gen_addr(r), *name = NULL;
        size_t k = rng_below(r, 5);
        if (k >= 2)
            name = gen_text(r, 5, GEN_CONTROLS | GEN_EDGE_WS | (k == 4 ? GEN_LONG : 0));
        compose_addrs_add(l, k == 1 ? "" : name, a);
        free(a);
        free(name);
    }
}

/* Body lines that exercise every encoding rule. */
static char *gen_body(struct rng *r)
{
    struct buf b = BUF_INIT;
    size_t lines = rng_below(r, 14);

    for (size_t i = 0; i < lines; i++) {
        size_t k = rng_below(r, 20);
        char *t;
        if (k == 0) {
            puts_(&b, "From the start");
        } else if (k == 1) {
            puts_(&b, rng_below(r, 2) ? "." : ".leading dot");
        } else if (k == 2) {
            puts_(&b, "trailing blanks \t ");
        } else if (k == 3) {
            size_t n = 990 + rng_below(r, 30);
            for (size_t j = 0; j < n; j++)
                putc_(&b, (char)('a' + j % 26));
        } else if (k == 4) {
            puts_(&b, "bare\rcr");
        } else if (k == 5) {
            puts_(&b, "a=b =3D =\t=");
        } else if (k < 8) {
            /* ASCII only, to keep many bodies 7bit */
            for (size_t j = 0; j < 1 + rng_below(r, 12); j++)
                puts_(&b, j ? " word" : "Plain");
        } else if (k >= 8) {
            t = gen_text(r, 20, GEN_CONTROLS | (k == 19 ? GEN_LONG : 0));
            puts_(&b, t);
            free(t);
        }
        puts_(&b, rng_below(r, 5) == 0 ? "\r\n" : "\n");
    }
    if (rng_below(r, 4) == 0 && b.len > 0)
        buf_truncate(&b, b.len - 1 - (b.len >= 2 && b.data[b.len - 2] == '\r'));
    return buf_steal(&b, NULL);
}

/* What the parser must give back for a body: LF line ends, final LF. */
static char *expected_body(const char *body, size_t *len)
{
    struct buf b = BUF_INIT;
    size_t n = body ? strlen(body) : 0;
    char *r;

    put(&b, body ? body : "", n);
    if (n > 0 && body[n - 1] != '\n')
        putc_(&b, '\n');
    r = to_lf(buf_cstr(&b), b.len, len);
    buf_free(&b);
    return r;
}

/* A file name the parser can give back exactly: it trims blanks and decodes
 * RFC 2047 in file names, so neither edge blanks nor "=?" are generated. */
static char *gen_filename(struct rng *r)
{
    char *t = gen_text(r, 6, GEN_NO_EW | GEN_NO_TAB);
    char *dot = xasprintf("%s.%s", t, rng_below(r, 2) ? "pdf" : "bin");

    free(t);
    return dot;
}

enum att_kind { ATT_BINARY, ATT_TEXT, ATT_BAD_TEXT, ATT_MESSAGE, ATT_KINDS };

struct att_expect {
    enum att_kind kind;
    char *inner_subject;
};

static void gen_attachment(struct rng *r, struct compose_msg *m, struct att_expect *x)
{
    struct buf data = BUF_INIT;
    struct compose_attachment *a;
    const char *type = NULL;
    char *fname = NULL;

    x->kind = (enum att_kind)rng_below(r, ATT_KINDS);
    x->inner_subject = NULL;
    switch (x->kind) {
    case ATT_BINARY: {
        size_t n = rng_below(r, 2000);
        for (size_t i = 0; i < n; i++)
            putc_(&data, (char)rng_next(r));
        type = rng_below(r, 2) ? "application/octet-stream" : "image/PNG";
        break;
    }
    case ATT_TEXT:
    case ATT_BAD_TEXT: {
        char *t = gen_body(r);
        puts_(&data, t);
        free(t);
        if (x->kind == ATT_BAD_TEXT)
            puts_(&data, "latin1 \xe9t\xe9\n");
        type = "text/plain";
        break;
    }
    case ATT_MESSAGE:
    default: {
        char *t = gen_text(r, 6, GEN_NO_EW);
        x->inner_subject = t;
        puts_(&data, "From: inner@example.org\nSubject: ");
        puts_(&data, t);
        puts_(&data, "\nMessage-ID: <inner@example.org>\n\nInner body\n.\nFrom here\n");
        break;
    }
    }
    if (rng_below(r, 4))
        fname = rng_below(r, 3) ? gen_filename(r) : xstrdup("report.txt");
    a = compose_add_attachment(m, data.data, data.len, fname, type);
    a->is_message = x->kind == ATT_MESSAGE;
    a->disposition = rng_below(r, 3) ? COMPOSE_DISP_ATTACHMENT : COMPOSE_DISP_INLINE;
    if (rng_below(r, 3) == 0)
        a->description = gen_text(r, 6, GEN_CONTROLS | GEN_EDGE_WS);
    free(fname);
    buf_free(&data);
}

static char *gen_msgid(struct rng *r)
{
    char *a = gen_addr(r);
    char *id = xasprintf("%llu.%s", (unsigned long long)(rng_next(r) % 100000), a);

    free(a);
    return id;
}

static void check_attachment(const struct message *msg, const struct msg_part *p,
                             const struct compose_attachment *a, const struct att_expect *x)
{
    char *mt = message_part_mime_type(p);
    char *got, *want;
    size_t glen, wlen;
    const char *name;
    char *dname;

    if (x->kind == ATT_MESSAGE) {
        assert_string_equal(mt, "message/rfc822");
    } else {
        char *lower = xstrdup(a->mime_type);
        for (char *c = lower; *c; c++)
            *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        assert_string_equal(mt, lower);
        free(lower);
    }
    free(mt);
    assert_str_or_null(p->filename, a->filename);
    name = rfc2231_get(&p->params, "name");
    if (a->filename) {
        assert_non_null(name);
        dname = rfc2047_decode_str(name, strlen(name), NULL);
        assert_string_equal(dname, a->filename);
        free(dname);
    } else {
        assert_null(name);
    }
    assert_str_or_null(p->description, a->description);
    assert_int_equal(p->disposition, a->disposition == COMPOSE_DISP_INLINE ? MSG_DISP_INLINE
                                                                          : MSG_DISP_ATTACHMENT);
    switch (x->kind) {
    case ATT_BINARY:
    case ATT_BAD_TEXT:
        assert_int_equal(p->encoding, MSG_ENC_BASE64);
        got = part_bytes(msg, p, &glen);
        assert_mem(got, glen, a->data ? a->data : "", a->len);
        free(got);
        break;
    case ATT_TEXT:
        assert_int_not_equal(p->encoding, MSG_ENC_BASE64);
        got = part_text(msg, p, &glen);
        want = to_lf(a->data ? a->data : "", a->len, &wlen);
        assert_mem(got, glen, want, wlen);
        free(got);
        free(want);
        break;
    case ATT_MESSAGE:
    default: {
        char *g;
        assert_true(p->encoding == MSG_ENC_7BIT || p->encoding == MSG_ENC_8BIT);
        g = part_bytes(msg, p, &glen);
        got = to_lf(g, glen, &glen);
        want = to_lf(a->data, a->len, &wlen);
        assert_mem(got, glen, want, wlen);
        free(g);
        free(got);
        free(want);
        assert_non_null(p->envelope);
        assert_string_equal(p->envelope->subject, x->inner_subject);
        break;
    }
    }
}

/* ---- the round-trip property -------------------------------------------- */

static void roundtrip_case(uint64_t seed)
{
    struct rng r, idr;
    struct compose_msg m;
    struct compose_opts o;
    struct att_expect x[4];
    struct message *msg;
    size_t len, width, n_att;
    char *raw, *got, *want;
    size_t glen, wlen;

    rng_seed(&r, seed);
    rng_seed(&idr, seed ^ 0xabcdef);
    compose_msg_init(&m);
    o = base_opts(&idr);
    gen_addrs(&r, &m.from, 2);
    if (m.from.n == 0)
        compose_addrs_add(&m.from, NULL, "me@example.org");
    gen_addrs(&r, &m.to, 5);
    gen_addrs(&r, &m.cc, 3);
    gen_addrs(&r, &m.bcc, 2);
    gen_addrs(&r, &m.reply_to, 1);
    switch (rng_below(&r, 8)) {
    case 0:
        break;
    case 1:
        m.subject = xstrdup("");
        break;
    default:
        m.subject = gen_text(&r, rng_below(&r, 4) ? 12 : 60,
                             GEN_CONTROLS | GEN_EDGE_WS | GEN_LONG);
        break;
    }
    if (rng_below(&r, 2))
        m.message_id = gen_msgid(&r);
    if (rng_below(&r, 2)) {
        m.in_reply_to = gen_msgid(&r);
        for (size_t i = 0, n = rng_below(&r, 12); i < n; i++)
            m.references = xreallocarray(m.references, ++m.n_references, sizeof(char *)),
            m.references[m.n_references - 1] = gen_msgid(&r);
    }
    m.date = (time_t)(1000000000 + rng_below(&r, 1000000000));
    m.tz_fixed = rng_below(&r, 4) != 0;
    m.tz_minutes = (int)rng_below(&r, 2879) - 1439;
    for (size_t i = 0, n = rng_below(&r, 3); i < n; i++) {
        char name[32], *v = gen_text(&r, 10, GEN_CONTROLS | GEN_EDGE_WS | GEN_LONG);
        snprintf(name, sizeof name, "X-Test-%zu", i);
        compose_add_header(&m, name, v);
        free(v);
    }
    if (rng_below(&r, 6))
        m.body = gen_body(&r);
    n_att = rng_below(&r, 3) == 0 ? 1 + rng_below(&r, 3) : 0;
    for (size_t i = 0; i < n_att; i++)
        gen_attachment(&r, &m, &x[i]);
    o.eightbit_ok = rng_below(&r, 2);
    o.with_bcc = rng_below(&r, 2);
    o.lf = rng_below(&r, 4) == 0;
    o.fold_width = rng_below(&r, 2) ? 0 : 40 + rng_below(&r, 160);
    width = o.fold_width ? o.fold_width : 78;

    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    check_structure(msg, width);
    if (o.lf)
        assert_null(memchr(raw, '\r', len));
    if (!o.eightbit_ok)
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)raw[i] >= 0x80) {
                /* only a forwarded message may carry 8-bit data */
                bool fwd = false;
                for (size_t k = 0; k < n_att; k++)
                    fwd |= x[k].kind == ATT_MESSAGE;
                assert_true(fwd);
                break;
            }

    assert_addrs(&msg->env.from, &m.from);
    assert_addrs(&msg->env.to, &m.to);
    assert_addrs(&msg->env.cc, &m.cc);
    assert_addrs(&msg->env.reply_to, &m.reply_to);
    if (o.with_bcc) {
        assert_addrs(&msg->env.bcc, &m.bcc);
    } else {
        assert_int_equal(msg->env.bcc.n, 0);
        assert_null(find_field(raw, msg->body_offset, "bcc"));
    }
    assert_str_or_null(msg->env.subject, m.subject);
    assert_true(msg->env.date_valid);
    assert_int_equal(msg->env.date, m.date);
    if (m.message_id) {
        assert_str_or_null(msg->env.message_id, m.message_id);
    } else {
        const char *id = msg->env.message_id;
        assert_non_null(id);
        assert_non_null(strstr(id, "@mail.example.org"));
    }
    assert_str_or_null(msg->env.in_reply_to, m.in_reply_to);
    assert_int_equal(msg->env.n_references, m.n_references);
    for (size_t i = 0; i < m.n_references; i++)
        assert_string_equal(msg->env.references[i], m.references[i]);
    for (size_t i = 0; i < m.n_headers; i++) {
        char *v = field_value(raw, msg->body_offset, m.headers[i].name);
        assert_non_null(v);
        assert_string_equal(v, m.headers[i].value);
        free(v);
    }

    if (n_att == 0) {
        assert_int_equal(msg->n_parts, 1);
        got = part_text(msg, msg->root, &glen);
        want = expected_body(m.body, &wlen);
        assert_mem(got, glen, want, wlen);
        free(got);
        free(want);
    } else {
        bool has_text = m.body && m.body[0];
        size_t off = has_text ? 1 : 0;
        assert_string_equal(msg->root->type, "multipart");
        assert_int_equal(msg->root->n_children, n_att + off);
        if (has_text) {
            got = part_text(msg, msg->root->children[0], &glen);
            want = expected_body(m.body, &wlen);
            assert_mem(got, glen, want, wlen);
            free(got);
            free(want);
        }
        for (size_t i = 0; i < n_att; i++) {
            check_attachment(msg, msg->root->children[off + i], &m.attachments[i], &x[i]);
            free(x[i].inner_subject);
        }
    }
    message_free(msg);
    free(raw);
    compose_msg_free(&m);
}

static void test_roundtrip_random(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 1000; seed++)
        roundtrip_case(seed);
}

/* Everything at once, written out so a failure is easy to read. */
static void test_roundtrip_full(void **state)
{
    struct rng r;
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    char *raw, *text;
    size_t len, tlen;
    struct compose_attachment *a;
    static const char body[] = "Hola,\n\nthe café is at 5.\n-- \nAnn\n";

    (void)state;
    rng_seed(&r, 7);
    o = base_opts(&r);
    compose_msg_init(&m);
    compose_addrs_add(&m.from, "José Müller", "jose@example.com");
    assert_int_equal(compose_parse_addresses("Name <a@b.example>, c@d.example, \"Doe, J\" "
                                             "<j@x.example>, 山田 太郎 <yamada@example.jp>",
                                             &m.to, NULL), 0);
    compose_addrs_add(&m.cc, "O'Neil, \"Shaq\" (C)", "shaq@example.net");
    compose_addrs_add(&m.reply_to, "=?UTF-8?B?Zm9v?=", "list@example.org");
    compose_set_subject(&m, "Re: Café meeting — 会議のメモ 🎉");
    m.in_reply_to = xstrdup("parent@example.com");
    compose_add_reference(&m, "root@example.com");
    compose_add_reference(&m, "parent@example.com");
    compose_add_header(&m, "User-Agent", "correo/0.1");
    compose_add_header(&m, "X-Label", "wichtig – ü");
    compose_set_body(&m, body);
    m.date = 1700000000;
    a = compose_add_attachment(&m, "%PDF-1.4\n\xff\x00", 11, "Bericht März.pdf", "application/pdf");
    a->description = xstrdup("Der Bericht");
    o.eightbit_ok = true;

    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    check_structure(msg, 78);
    assert_string_equal(msg->env.from.v[0].name, "José Müller");
    assert_int_equal(msg->env.to.n, 4);
    assert_string_equal(msg->env.to.v[2].name, "Doe, J");
    assert_string_equal(msg->env.to.v[3].name, "山田 太郎");
    assert_null(msg->env.to.v[1].name);
    assert_string_equal(msg->env.cc.v[0].name, "O'Neil, \"Shaq\" (C)");
    assert_string_equal(msg->env.reply_to.v[0].name, "=?UTF-8?B?Zm9v?=");
    assert_string_equal(msg->env.subject, "Re: Café meeting — 会議のメモ 🎉");
    assert_string_equal(msg->env.references[0], "root@example.com");
    text = field_value(raw, msg->body_offset, "X-Label");
    assert_string_equal(text, "wichtig – ü");
    free(text);
    text = field_value(raw, msg->body_offset, "User-Agent");
    assert_string_equal(text, "correo/0.1");
    free(text);
    /* order of the fields */
    {
        static const char *const order[] = {"Date", "From", "To", "Cc", "Subject",
                                            "Message-ID", "In-Reply-To", "References",
                                            "Reply-To", "MIME-Version", "Content-Type",
                                            "Content-Transfer-Encoding", "User-Agent", "X-Label"};
        const char *prev = raw;
        for (size_t i = 0; i < ARRAY_LEN(order); i++) {
            const char *f = find_field(raw, msg->body_offset, order[i]);
            assert_non_null(f);
            assert_true(f >= prev);
            prev = f;
        }
    }
    assert_int_equal(msg->root->n_children, 2);
    text = part_text(msg, msg->root->children[0], &tlen);
    assert_mem(text, tlen, body, strlen(body));
    free(text);
    assert_int_equal(msg->root->children[0]->encoding, MSG_ENC_8BIT);
    assert_string_equal(msg->root->children[1]->filename, "Bericht März.pdf");
    assert_string_equal(msg->root->children[1]->description, "Der Bericht");
    text = part_bytes(msg, msg->root->children[1], &tlen);
    assert_mem(text, tlen, "%PDF-1.4\n\xff\x00", 11);
    free(text);
    message_free(msg);
    free(raw);
    compose_msg_free(&m);
}

/* ---- address parsing ---------------------------------------------------- */

struct addr_case {
    const char *in;
    size_t n;
    const char *names[4];
    const char *addrs[4];
};

static const struct addr_case addr_ok[] = {
    {"a@b.example", 1, {NULL}, {"a@b.example"}},
    {"Name <a@b.example>", 1, {"Name"}, {"a@b.example"}},
    {"\"Doe, J\" <j@x.example>", 1, {"Doe, J"}, {"j@x.example"}},
    {"Name <a@b.example>, c@d.example, \"Doe, J\" <j@x.example>", 3,
     {"Name", NULL, "Doe, J"}, {"a@b.example", "c@d.example", "j@x.example"}},
    {"  José   Müller   <jm@example.com> ;  x@y.example  ", 2, {"José Müller", NULL},
     {"jm@example.com", "x@y.example"}},
    {"x@y.example (Comment  Name)", 1, {"Comment Name"}, {"x@y.example"}},
    {"<a@b.example>", 1, {NULL}, {"a@b.example"}},
    {",, a@b.example ,,", 1, {NULL}, {"a@b.example"}},
    {"\"quoted \\\"inner\\\" name\" <q@x.example>", 1, {"quoted \"inner\" name"},
     {"q@x.example"}},
    {"山田 太郎 <yamada@example.jp>", 1, {"山田 太郎"}, {"yamada@example.jp"}},
    {"Dr. J. Smith <js@x.example>", 1, {"Dr. J. Smith"}, {"js@x.example"}},
    {"\"a b\"@example.com", 1, {NULL}, {"\"a b\"@example.com"}},
    {"o'neil+tag@ex-ample.org", 1, {NULL}, {"o'neil+tag@ex-ample.org"}},
    {"root@[192.0.2.1]", 1, {NULL}, {"root@[192.0.2.1]"}},
    {"Ann <ann@x.example> (work)", 1, {"Ann"}, {"ann@x.example"}},
    {"", 0, {NULL}, {NULL}},
    {" , ; ", 0, {NULL}, {NULL}},
};

static void test_parse_addresses_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(addr_ok); i++) {
        const struct addr_case *c = &addr_ok[i];
        struct msg_addr_list l = {NULL, 0, false};
        struct err e;
        err_clear(&e);
        if (compose_parse_addresses(c->in, &l, &e) < 0)
            fail_msg("case %zu \"%s\": %s", i, c->in, e.text);
        assert_int_equal(l.n, c->n);
        for (size_t k = 0; k < c->n; k++) {
            assert_str_or_null(l.v[k].name, c->names[k]);
            assert_string_equal(l.v[k].addr, c->addrs[k]);
        }
        compose_addrs_free(&l);
    }
}

struct addr_bad {
    const char *in;
    const char *why;   /* substring of the error text */
};

static const struct addr_bad addr_bad[] = {
    {"Name <a@b.example", "missing '>'"},
    {"\"unterminated <a@b.example>", "unterminated quoted string"},
    {"John Smith john@x.example", "several words"},
    {"no-at-sign", "no '@'"},
    {"jösé@example.com", "SMTPUTF8"},
    {"<a@b.example> trailing", "text after"},
    {"a <b@c.example> <d@e.example>", "more than one"},
    {"x@y.example (unterminated", "unterminated comment"},
    {"a@@b.example", "address 1"},
    {"a@b..example", "domain"},
    {"Name <>", "empty address"},
    {"ok@x.example, line\nbreak@x.example", "line break"},
    {"a>b@x.example", "'>' without '<'"},
    {") x@y.example", "')' without '('"},
    {"good@x.example, .dot@x.example", "address 2"},
    {"Name <a@b.example>, Bad <x y@z.example>", "address 2"},
};

static void test_parse_addresses_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(addr_bad); i++) {
        struct msg_addr_list l = {NULL, 0, false};
        struct err e;
        compose_addrs_add(&l, "Kept", "kept@example.org");
        err_clear(&e);
        if (compose_parse_addresses(addr_bad[i].in, &l, &e) == 0)
            fail_msg("case %zu \"%s\" accepted", i, addr_bad[i].in);
        assert_int_equal(e.code, ERR_INVAL);
        if (!strstr(e.text, addr_bad[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.text, addr_bad[i].why);
        assert_int_equal(l.n, 1);    /* nothing half-added */
        assert_string_equal(l.v[0].addr, "kept@example.org");
        compose_addrs_free(&l);
    }
    assert_true(compose_valid_addr("a.b@c.example"));
    assert_false(compose_valid_addr("a.@c.example"));
    assert_false(compose_valid_addr("a@"));
    assert_false(compose_valid_addr(NULL));
}

/* Typed lists made of random pieces: either a clear error that leaves the
 * list alone, or addresses that survive rendering and parsing. */
static void test_parse_addresses_random(void **state)
{
    static const char *const junk[] = {
        "<", ">", "\"", "(", ")", ",", ";", " ", "@", "\\", ":", "\t", "é", "\"a\\\"b\"",
        "(nested (comment))", "<x@y.example>", "Name", "J. R.", "山田",
    };
    size_t ok = 0;

    (void)state;
    for (uint64_t seed = 1; seed <= 1000; seed++) {
        struct rng r;
        struct buf t = BUF_INIT;
        struct msg_addr_list l = {NULL, 0, false};
        struct err e;

        rng_seed(&r, seed);
        for (size_t i = 0, n = 1 + rng_below(&r, 4); i < n; i++) {
            char *a = gen_addr(&r), *name;
            if (i)
                puts_(&t, rng_below(&r, 2) ? ", " : ";");
            switch (rng_below(&r, 6)) {
            case 0:
                puts_(&t, a);
                break;
            case 1:
                name = gen_text(&r, 3, GEN_NO_TAB);
                puts_(&t, "\"");
                for (const char *c = name; *c; c++) {
                    if (*c == '"' || *c == '\\')
                        putc_(&t, '\\');
                    putc_(&t, *c);
                }
                puts_(&t, "\" <");
                puts_(&t, a);
                putc_(&t, '>');
                free(name);
                break;
            case 2:
                puts_(&t, "Some Body <");
                puts_(&t, a);
                putc_(&t, '>');
                break;
            case 3:
                puts_(&t, a);
                puts_(&t, " (Comment)");
                break;
            default:
                for (size_t k = 0, m = 1 + rng_below(&r, 4); k < m; k++)
                    puts_(&t, junk[rng_below(&r, ARRAY_LEN(junk))]);
                if (rng_below(&r, 2))
                    puts_(&t, a);
                break;
            }
            free(a);
        }
        compose_addrs_add(&l, NULL, "first@example.org");
        err_clear(&e);
        if (compose_parse_addresses(buf_cstr(&t), &l, &e) == 0) {
            struct compose_msg m;
            struct compose_opts o;
            struct message *msg;
            char *raw;
            size_t len;

            ok++;
            for (size_t i = 0; i < l.n; i++)
                assert_true(compose_valid_addr(l.v[i].addr));
            base_msg(&m);
            compose_addrs_free(&m.to);
            m.to = l;
            o = base_opts(&r);
            raw = render_ok(&m, &o, &len);
            msg = parse_ok(raw, len);
            assert_addrs(&msg->env.to, &m.to);
            message_free(msg);
            free(raw);
            compose_msg_free(&m);
        } else {
            assert_int_equal(e.code, ERR_INVAL);
            assert_non_null(strstr(e.text, "address"));
            assert_int_equal(l.n, 1);
            compose_addrs_free(&l);
        }
        buf_free(&t);
    }
    /* both outcomes were exercised */
    assert_true(ok > 100);
    assert_true(ok < 900);
}

/* ---- folding ------------------------------------------------------------ */

static void test_folding(void **state)
{
    static const size_t widths[] = {0, 40, 60, 100, 200};
    struct rng r;
    struct buf s = BUF_INIT, huge = BUF_INIT, mid = BUF_INIT;

    (void)state;
    for (int i = 0; i < 60; i++)
        puts_(&s, i % 3 ? "word " : "wörd ");
    puts_(&s, "end");
    for (int i = 0; i < 2000; i++)
        putc_(&huge, (char)('a' + i % 26));
    for (int i = 0; i < 500; i++)
        putc_(&mid, (char)('a' + i % 26));

    for (size_t wi = 0; wi < ARRAY_LEN(widths); wi++) {
        size_t width = widths[wi] ? widths[wi] : 78;
        const char *subjects[4];
        subjects[0] = buf_cstr(&s);
        subjects[1] = buf_cstr(&huge);
        subjects[2] = "日本語の件名がとても長い場合にはエンコードされた語に分けて折り返す必要があります"
                      "日本語の件名がとても長い場合にはエンコードされた語に分けて折り返す必要があります";
        subjects[3] = buf_cstr(&mid);
        for (size_t k = 0; k < ARRAY_LEN(subjects); k++) {
            struct compose_msg m;
            struct compose_opts o;
            struct message *msg;
            char *raw;
            size_t len;

            rng_seed(&r, k);
            o = base_opts(&r);
            o.fold_width = widths[wi];
            base_msg(&m);
            compose_set_subject(&m, subjects[k]);
            for (int i = 0; i < 40; i++) {
                char a[64], n[64];
                snprintf(a, sizeof a, "person%d@example.org", i);
                snprintf(n, sizeof n, i % 2 ? "Person Number %d" : "Persön, Nümmer %d", i);
                compose_addrs_add(&m.cc, n, a);
                snprintf(a, sizeof a, "id%d.%d@example.org", i, i * 7919);
                compose_add_reference(&m, a);
            }
            compose_add_header(&m, "X-Long", buf_cstr(&s));
            raw = render_ok(&m, &o, &len);
            msg = parse_ok(raw, len);
            check_structure(msg, width);
            assert_string_equal(msg->env.subject, subjects[k]);
            assert_int_equal(msg->env.cc.n, 40);
            assert_string_equal(msg->env.cc.v[39].name, "Person Number 39");
            assert_int_equal(msg->env.n_references, 40);
            if (k == 2)
                assert_true(check_encoded_words(raw, 0, msg->body_offset) > 3);
            if (k == 3) {
                /* a 500-character word fits in 998 and stays readable */
                assert_non_null(memmem(raw, len, buf_cstr(&mid), mid.len));
            } else {
                /* everything else was foldable */
                check_header_block(raw, 0, msg->body_offset, width);
                const char *p = raw;
                while (p < raw + msg->body_offset) {
                    const char *lf = memchr(p, '\n', (size_t)(raw + msg->body_offset - p));
                    size_t l = (size_t)(lf - p) - (lf > p && lf[-1] == '\r');
                    if (strncmp(p, "Message-ID:", 11) != 0 && strncmp(p, "Content-Type:", 13) != 0)
                        assert_true(l <= width);
                    p = lf + 1;
                }
            }
            message_free(msg);
            free(raw);
            compose_msg_free(&m);
        }
    }
    buf_free(&s);
    buf_free(&huge);
    buf_free(&mid);
}

/* ---- header injection --------------------------------------------------- */

typedef void (*mutate_fn)(struct compose_msg *m, const char *evil);

static void mut_subject(struct compose_msg *m, const char *v) { compose_set_subject(m, v); }
static void mut_from_name(struct compose_msg *m, const char *v)
{
    free(m->from.v[0].name);
    m->from.v[0].name = xstrdup(v);
}
static void mut_from_addr(struct compose_msg *m, const char *v)
{
    free(m->from.v[0].addr);
    m->from.v[0].addr = xstrdup(v);
}
static void mut_to_name(struct compose_msg *m, const char *v) { compose_addrs_add(&m->to, v, "x@example.org"); }
static void mut_to_addr(struct compose_msg *m, const char *v) { compose_addrs_add(&m->to, NULL, v); }
static void mut_cc(struct compose_msg *m, const char *v) { compose_addrs_add(&m->cc, v, "x@example.org"); }
static void mut_bcc(struct compose_msg *m, const char *v) { compose_addrs_add(&m->bcc, NULL, v); }
static void mut_reply_to(struct compose_msg *m, const char *v) { compose_addrs_add(&m->reply_to, v, "x@example.org"); }
static void mut_msgid(struct compose_msg *m, const char *v)
{
    free(m->message_id);
    m->message_id = xstrdup(v);
}
static void mut_irt(struct compose_msg *m, const char *v) { m->in_reply_to = xstrdup(v); }
static void mut_refs(struct compose_msg *m, const char *v)
{
    compose_add_reference(m, "ok@example.org");
    compose_add_reference(m, v);
}
static void mut_hdr_name(struct compose_msg *m, const char *v) { compose_add_header(m, v, "x"); }
static void mut_hdr_value(struct compose_msg *m, const char *v) { compose_add_header(m, "X-Evil", v); }
static void mut_filename(struct compose_msg *m, const char *v)
{
    compose_add_attachment(m, "data", 4, v, "text/plain");
}
static void mut_description(struct compose_msg *m, const char *v)
{
    compose_add_attachment(m, "data", 4, "f.txt", NULL)->description = xstrdup(v);
}
static void mut_mime(struct compose_msg *m, const char *v)
{
    compose_add_attachment(m, "data", 4, "f.txt", v);
}

struct inject_case {
    const char *label;
    mutate_fn fn;
    const char *field;     /* substring of the error */
};

static const struct inject_case inject_cases[] = {
    {"subject", mut_subject, "Subject"},
    {"from name", mut_from_name, "From: address 1 display name"},
    {"from addr", mut_from_addr, "From: address 1"},
    {"to name", mut_to_name, "To: address 2 display name"},
    {"to addr", mut_to_addr, "To: address 2"},
    {"cc name", mut_cc, "Cc: address 1"},
    {"bcc addr", mut_bcc, "Bcc: address 1"},
    {"reply-to name", mut_reply_to, "Reply-To: address 1"},
    {"message-id", mut_msgid, "Message-ID"},
    {"in-reply-to", mut_irt, "In-Reply-To"},
    {"references", mut_refs, "References: id 2"},
    {"header name", mut_hdr_name, "field name"},
    {"header value", mut_hdr_value, "header \"X-Evil\" value"},
    {"filename", mut_filename, "attachment 1 file name"},
    {"description", mut_description, "attachment 1 description"},
    {"mime type", mut_mime, "attachment 1 MIME type"},
};

static void expect_inval(const struct compose_msg *m, const char *field, const char *label)
{
    struct buf out = BUF_INIT;
    struct compose_opts o;
    struct rng r;
    struct err e;

    rng_seed(&r, 1);
    o = base_opts(&r);
    err_clear(&e);
    if (compose_render(m, &o, &out, &e) == 0)
        fail_msg("%s: rendered:\n%s", label, buf_cstr(&out));
    assert_int_equal(e.code, ERR_INVAL);
    if (!strstr(e.text, field))
        fail_msg("%s: error \"%s\" does not name \"%s\"", label, e.text, field);
    assert_int_equal(out.len, 0);
    err_clear(&e);
    assert_int_equal(compose_check(m, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    buf_free(&out);
}

static void test_header_injection(void **state)
{
    static const char *const evil[] = {
        "a\r\nBcc: victim@example.com", "a\nX-Injected: 1", "a\rb", "\r\n", "a\n\nbody",
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(inject_cases); i++) {
        for (size_t k = 0; k < ARRAY_LEN(evil); k++) {
            struct compose_msg m;
            char label[128];
            base_msg(&m);
            inject_cases[i].fn(&m, evil[k]);
            snprintf(label, sizeof label, "%s #%zu", inject_cases[i].label, k);
            expect_inval(&m, inject_cases[i].field, label);
            compose_msg_free(&m);
        }
    }
}

struct bad_value {
    const char *label;
    mutate_fn fn;
    const char *value;
    const char *why;
};

static const struct bad_value bad_values[] = {
    {"header name with space", mut_hdr_name, "X Bad", "invalid character"},
    {"header name with colon", mut_hdr_name, "X:Bad", "invalid character"},
    {"empty header name", mut_hdr_name, "", "empty field name"},
    {"non-ASCII header name", mut_hdr_name, "X-Ünï", "invalid character"},
    {"long header name", mut_hdr_name,
     "X-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
     "longer than"},
    {"reserved Subject", mut_hdr_name, "Subject", "own field"},
    {"reserved bcc", mut_hdr_name, "BCC", "own field"},
    {"reserved content-type", mut_hdr_name, "content-type", "MIME fields"},
    {"non-ASCII address", mut_to_addr, "jösé@example.com", "SMTPUTF8"},
    {"address without @", mut_to_addr, "nobody", "no '@'"},
    {"invalid UTF-8 subject", mut_subject, "caf\xe9", "not valid UTF-8"},
    {"invalid UTF-8 name", mut_to_name, "\xff\xfe", "not valid UTF-8"},
    {"bad message id", mut_msgid, "a b@c", "not a valid message id"},
    {"message id with <", mut_msgid, "<a@b>", "not a valid message id"},
    {"bad mime type", mut_mime, "text", "type/subtype"},
    {"multipart attachment", mut_mime, "multipart/mixed", "multipart"},
};

static void test_bad_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_values); i++) {
        struct compose_msg m;
        base_msg(&m);
        bad_values[i].fn(&m, bad_values[i].value);
        expect_inval(&m, bad_values[i].why, bad_values[i].label);
        compose_msg_free(&m);
    }
    {
        struct compose_msg m;
        base_msg(&m);
        compose_addrs_free(&m.from);
        expect_inval(&m, "From: no address", "no from");
        compose_msg_free(&m);
        base_msg(&m);
        compose_set_body(&m, "caf\xe9\n");
        expect_inval(&m, "body: not valid UTF-8", "latin-1 body");
        compose_msg_free(&m);
    }
}

/* ---- Bcc and the envelope ----------------------------------------------- */

static void test_bcc(void **state)
{
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct rng r;
    char *raw, *from, **rcpts;
    size_t len, n;

    (void)state;
    base_msg(&m);
    compose_addrs_add(&m.cc, NULL, "carol@example.net");
    compose_addrs_add(&m.bcc, "Secret Sam", "sam@hidden.example");
    compose_addrs_add(&m.bcc, NULL, "BOB@example.net");   /* also in To */
    rng_seed(&r, 3);
    o = base_opts(&r);

    raw = render_ok(&m, &o, &len);
    assert_null(memmem(raw, len, "hidden", 6));
    assert_null(memmem(raw, len, "Secret", 6));
    msg = parse_ok(raw, len);
    assert_int_equal(msg->env.bcc.n, 0);
    assert_null(find_field(raw, msg->body_offset, "Bcc"));
    message_free(msg);
    free(raw);

    o.with_bcc = true;
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    assert_addrs(&msg->env.bcc, &m.bcc);
    assert_true(find_field(raw, msg->body_offset, "Bcc") > find_field(raw, msg->body_offset, "Cc"));
    message_free(msg);
    free(raw);

    assert_int_equal(compose_envelope(&m, &from, &rcpts, &n, NULL), 0);
    assert_string_equal(from, "ann@example.org");
    assert_int_equal(n, 3);
    assert_string_equal(rcpts[0], "bob@example.net");
    assert_string_equal(rcpts[1], "carol@example.net");
    assert_string_equal(rcpts[2], "sam@hidden.example");
    free(from);
    compose_free_strings(rcpts, n);
    compose_msg_free(&m);
}

/* ---- body transfer encodings -------------------------------------------- */

struct body_case {
    const char *label;
    const char *body;     /* NULL: generated (see below) */
    int gen;              /* 1: 998 a's, 2: 999 a's, 3: 'é' + 999 a's */
    bool eightbit_ok;
    enum msg_encoding enc;
    const char *charset;
};

static const struct body_case body_cases[] = {
    {"ascii", "hello\n", 0, false, MSG_ENC_7BIT, "us-ascii"},
    {"ascii 8bit ok", "hello\n", 0, true, MSG_ENC_7BIT, "us-ascii"},
    {"utf-8 8bit ok", "café ☕\n", 0, true, MSG_ENC_8BIT, "utf-8"},
    {"utf-8 no 8bit", "café ☕\n", 0, false, MSG_ENC_QP, "utf-8"},
    {"998 columns", NULL, 1, false, MSG_ENC_7BIT, "us-ascii"},
    {"999 columns", NULL, 2, false, MSG_ENC_QP, "us-ascii"},
    {"long utf-8 line", NULL, 3, true, MSG_ENC_QP, "utf-8"},
    {"bare CR", "a\rb\n", 0, true, MSG_ENC_QP, "us-ascii"},
    {"escape sequence", "\x1b[31mred\n", 0, false, MSG_ENC_7BIT, "us-ascii"},
    {"CRLF input", "one\r\ntwo\r\n", 0, false, MSG_ENC_7BIT, "us-ascii"},
    {"no final newline", "one\ntwo", 0, false, MSG_ENC_7BIT, "us-ascii"},
    {"From and dot", "From me\n.\n..\n", 0, false, MSG_ENC_7BIT, "us-ascii"},
    {"empty", "", 0, false, MSG_ENC_7BIT, "us-ascii"},
};

static void test_body_encodings(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(body_cases); i++) {
        const struct body_case *c = &body_cases[i];
        struct compose_msg m;
        struct compose_opts o;
        struct message *msg;
        struct buf body = BUF_INIT;
        struct rng r;
        char *raw, *got, *want;
        size_t len, glen, wlen;

        if (c->body) {
            puts_(&body, c->body);
        } else {
            if (c->gen == 3)
                puts_(&body, "é");
            for (int k = 0; k < (c->gen == 1 ? 998 : 999); k++)
                putc_(&body, 'a');
            putc_(&body, '\n');
        }
        base_msg(&m);
        compose_set_body(&m, buf_cstr(&body));
        rng_seed(&r, i);
        o = base_opts(&r);
        o.eightbit_ok = c->eightbit_ok;
        raw = render_ok(&m, &o, &len);
        msg = parse_ok(raw, len);
        if (msg->root->encoding != c->enc)
            fail_msg("%s: encoding %d, want %d", c->label, msg->root->encoding, c->enc);
        assert_string_equal(msg->root->charset, c->charset);
        check_all_lines(raw, len, 998);
        got = part_text(msg, msg->root, &glen);
        want = expected_body(buf_cstr(&body), &wlen);
        assert_mem(got, glen, want, wlen);
        if (c->enc == MSG_ENC_QP)
            check_all_lines(raw + msg->body_offset, len - msg->body_offset, 76);
        free(got);
        free(want);
        message_free(msg);
        free(raw);
        buf_free(&body);
        compose_msg_free(&m);
    }
}

static void test_qp_details(void **state)
{
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct buf body = BUF_INIT;
    struct rng r;
    char *raw, *got, *want;
    const char *b;
    size_t len, glen, wlen;

    (void)state;
    puts_(&body, "é forces quoted-printable\nFrom me\n.\n.dot\ntrailing \t\nend space \na=b\n");
    for (int i = 0; i < 75; i++)
        putc_(&body, 'x');
    puts_(&body, "From here\n");
    for (int i = 0; i < 60; i++)
        puts_(&body, "éü😀");
    puts_(&body, "\nno final break");
    base_msg(&m);
    compose_set_body(&m, buf_cstr(&body));
    rng_seed(&r, 1);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    assert_int_equal(msg->root->encoding, MSG_ENC_QP);
    b = raw + msg->body_offset;
    assert_non_null(strstr(b, "\r\n=46rom me\r\n"));
    assert_non_null(strstr(b, "\r\n.\r\n.dot\r\n"));          /* left to dot-stuffing */
    assert_non_null(strstr(b, "\r\ntrailing =09\r\n"));
    assert_non_null(strstr(b, "\r\nend space=20\r\n"));
    assert_non_null(strstr(b, "\r\na=3Db\r\n"));
    assert_non_null(strstr(b, "=\r\n=46rom here\r\n"));        /* after a soft break too */
    check_all_lines(b, strlen(b), 76);
    /* no soft break inside an escape or a character: each line decodes
     * to valid UTF-8 by itself */
    for (const char *p = b; *p;) {
        const char *lf = strchr(p, '\n');
        size_t n = lf ? (size_t)(lf - p) : strlen(p);
        struct buf d = BUF_INIT;
        bool bad = false;
        assert_int_equal(codec_qp_decode(p, n, false, &d, &bad), 0);
        assert_false(bad);
        assert_true(charset_valid_utf8(buf_cstr(&d), d.len));
        buf_free(&d);
        p += n + (lf != NULL);
    }
    got = part_text(msg, msg->root, &glen);
    want = expected_body(buf_cstr(&body), &wlen);
    assert_mem(got, glen, want, wlen);
    free(got);
    free(want);
    message_free(msg);
    free(raw);
    buf_free(&body);
    compose_msg_free(&m);
}

/* ---- format=flowed ------------------------------------------------------ */

struct fl_line {
    size_t depth;
    char *text;
};

/* RFC 3676 decoding: quote depth, stuffing, soft breaks joined. */
static size_t flowed_decode(const char *s, size_t n, struct fl_line **out)
{
    size_t k = 0, pos = 0;
    struct buf cur = BUF_INIT;
    bool open = false;
    size_t depth = 0;

    *out = NULL;
    while (pos < n) {
        const char *lf = memchr(s + pos, '\n', n - pos);
        size_t end = lf ? (size_t)(lf - s) : n, d = 0, i = pos;
        bool soft;
        while (i < end && s[i] == '>') {
            d++;
            i++;
        }
        if (i < end && s[i] == ' ')
            i++;
        soft = end > i && s[end - 1] == ' ' && !(end - i == 3 && memcmp(s + i, "-- ", 3) == 0);
        if (open && d != depth)
            fail_msg("quote depth changed inside a flowed paragraph");
        depth = d;
        put(&cur, s + i, end - i);
        open = soft;
        if (!soft) {
            *out = xreallocarray(*out, k + 1, sizeof **out);
            (*out)[k].depth = d;
            (*out)[k].text = buf_steal(&cur, NULL);
            k++;
        }
        pos = end + 1;
    }
    assert_false(open);
    buf_free(&cur);
    return k;
}

static void test_flowed(void **state)
{
    static const char *const lines[] = {
        "This is a long paragraph that goes on for quite a while, so that it has to be "
        "wrapped at the flowed width more than once; the words themselves are short and "
        "there are many of them, including some ünïcödé ones and 日本語.",
        "> A quoted line that is also long enough to need wrapping when it is sent out as "
        "format=flowed text by the composer.",
        ">> deeper quote",
        ">no space after the marks",
        " leading space line",
        "From the start of a line",
        "line with trailing spaces   ",
        "Averyveryverylongwordthatcannotbebrokenanywhereatallbecauseithasnospacesinsideitwhatsoever end",
        "short",
        "",
        "words then  two  spaces and a >greater and From inside the text that gets wrapped "
        "From here",
        "-- ",
        "Ann",
    };
    struct buf body = BUF_INIT;
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct fl_line *fl;
    struct rng r;
    char *raw, *text;
    size_t len, tlen, k;
    const char *ct;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(lines); i++) {
        puts_(&body, lines[i]);
        putc_(&body, '\n');
    }
    base_msg(&m);
    compose_set_body(&m, buf_cstr(&body));
    m.flowed = true;
    rng_seed(&r, 2);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    ct = find_field(raw, msg->body_offset, "Content-Type");
    assert_non_null(strstr(ct, "format=flowed"));
    assert_string_equal(rfc2231_get(&msg->root->params, "format"), "flowed");
    text = part_text(msg, msg->root, &tlen);
    /* physical lines: at most 72 characters unless one long word */
    for (const char *p = text; p < text + tlen;) {
        const char *lf = memchr(p, '\n', (size_t)(text + tlen - p));
        size_t n = (size_t)(lf - p), chars = 0;
        for (size_t i = 0; i < n; i++)
            chars += ((unsigned char)p[i] & 0xc0) != 0x80;
        if (chars > 72)
            assert_null(memchr(p, ' ', n - 1));
        p = lf + 1;
    }
    assert_non_null(strstr(text, "\n  leading space line\n"));     /* stuffed */
    assert_non_null(strstr(text, "\n From the start"));
    assert_non_null(strstr(text, "\n-- \nAnn\n"));
    k = flowed_decode(text, tlen, &fl);
    assert_int_equal(k, ARRAY_LEN(lines));
    for (size_t i = 0; i < k; i++) {
        const char *want = lines[i];
        size_t depth = 0, wn;
        while (want[depth] == '>')
            depth++;
        want += depth;
        if (depth && *want == ' ')
            want++;
        wn = strlen(want);
        if (strcmp(lines[i], "-- ") != 0)
            while (wn > 0 && want[wn - 1] == ' ')
                wn--;
        assert_int_equal(fl[i].depth, depth);
        if (strlen(fl[i].text) != wn || memcmp(fl[i].text, want, wn) != 0)
            fail_msg("line %zu: got \"%s\"", i, fl[i].text);
        free(fl[i].text);
    }
    free(fl);
    free(text);
    message_free(msg);
    free(raw);
    buf_free(&body);
    compose_msg_free(&m);
}

/* ---- attachments -------------------------------------------------------- */

static void test_binary_attachment(void **state)
{
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct rng r;
    unsigned char all[1024];
    char *raw, *got;
    size_t len, glen;
    const struct msg_part *p;

    (void)state;
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (unsigned char)i;
    base_msg(&m);
    compose_add_attachment(&m, all, sizeof all, "bytes.bin", NULL);
    compose_add_attachment(&m, all, 256, NULL, "text/plain");   /* not text: base64 */
    compose_add_attachment(&m, NULL, 0, "empty.dat", NULL);
    rng_seed(&r, 4);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    assert_int_equal(msg->root->n_children, 4);
    p = msg->root->children[1];
    assert_int_equal(p->encoding, MSG_ENC_BASE64);
    {
        char *mt = message_part_mime_type(p);
        assert_string_equal(mt, "application/octet-stream");
        free(mt);
    }
    /* 76-character lines, the last one possibly shorter */
    {
        const char *s = raw + p->body_offset, *end = s + p->body_size;
        size_t lines = 0;
        while (s < end) {
            const char *lf = memchr(s, '\n', (size_t)(end - s));
            size_t n = lf ? (size_t)(lf - s) - 1 : (size_t)(end - s);
            if (lf)
                assert_int_equal(n, 76);
            else
                assert_true(n > 0 && n <= 76);
            lines++;
            if (!lf)
                break;
            s = lf + 1;
        }
        assert_int_equal(lines, (sizeof all + 56) / 57);
    }
    got = part_bytes(msg, p, &glen);
    assert_mem(got, glen, (const char *)all, sizeof all);
    free(got);
    p = msg->root->children[2];
    assert_int_equal(p->encoding, MSG_ENC_BASE64);
    assert_null(p->charset);
    got = part_bytes(msg, p, &glen);
    assert_mem(got, glen, (const char *)all, 256);
    free(got);
    got = part_bytes(msg, msg->root->children[3], &glen);
    assert_int_equal(glen, 0);
    free(got);
    message_free(msg);
    free(raw);
    compose_msg_free(&m);
}

struct fname_case {
    const char *name;
    const char *raw;      /* must appear in the output */
};

static const struct fname_case fname_cases[] = {
    {"report.pdf", "filename=report.pdf"},
    {"my report (final).pdf", "filename=\"my report (final).pdf\""},
    {"quote\"back\\slash.txt", "filename=\"quote\\\"back\\\\slash.txt\""},
    {"naïve.txt", "filename*=utf-8''na%C3%AFve.txt"},
    {"長い日本語のファイル名長い日本語のファイル名長い日本語のファイル名長い日本語のファイル名"
     "長い日本語のファイル名.txt", "filename*0*=utf-8''%E9%95%B7"},
    {"a-very-long-ascii-file-name-that-does-not-fit-in-a-simple-parameter-value-at-all.tar.gz",
     "filename*1*="},
    {"emoji 😀 and spaces.png", "filename*=utf-8''emoji%20%F0%9F%98%80%20and%20spaces.png"},
};

static void test_rfc2231_filenames(void **state)
{
    (void)state;
    for (size_t w = 0; w < 2; w++) {
        for (size_t i = 0; i < ARRAY_LEN(fname_cases); i++) {
            struct compose_msg m;
            struct compose_opts o;
            struct message *msg;
            struct rng r;
            char *raw, *dn;
            size_t len;
            const struct msg_part *p;
            const char *name;

            base_msg(&m);
            compose_add_attachment(&m, "x", 1, fname_cases[i].name, NULL);
            rng_seed(&r, i);
            o = base_opts(&r);
            o.fold_width = w ? 40 : 0;
            raw = render_ok(&m, &o, &len);
            msg = parse_ok(raw, len);
            check_structure(msg, w ? 40 : 78);
            if (!w && !strstr(raw, fname_cases[i].raw))
                fail_msg("case %zu: \"%s\" not in\n%s", i, fname_cases[i].raw, raw);
            p = msg->root->children[1];
            assert_string_equal(p->filename, fname_cases[i].name);
            name = rfc2231_get(&p->params, "name");
            assert_non_null(name);
            dn = rfc2047_decode_str(name, strlen(name), NULL);
            assert_string_equal(dn, fname_cases[i].name);
            free(dn);
            message_free(msg);
            free(raw);
            compose_msg_free(&m);
        }
    }
}

static void test_boundary_collision(void **state)
{
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct rng r;
    char *raw, *b1, *content, *got;
    const char *bp;
    size_t len, glen;

    (void)state;
    base_msg(&m);
    compose_add_attachment(&m, "harmless\n", 9, "a.txt", "text/plain");
    rng_seed(&r, 99);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    bp = strstr(raw, "boundary=\"");
    assert_non_null(bp);
    bp += 10;
    b1 = xstrndup(bp, strcspn(bp, "\""));
    free(raw);
    compose_msg_free(&m);

    /* the same random sequence, with content holding the first candidate */
    content = xasprintf("before\n--%s\nContent-Type: text/html\n\n--%s--\nafter\n", b1, b1);
    base_msg(&m);
    compose_add_attachment(&m, content, strlen(content), "a.txt", "text/plain");
    rng_seed(&r, 99);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    bp = strstr(raw, "boundary=\"") + 10;
    assert_int_not_equal(strncmp(bp, b1, strlen(b1)), 0);
    msg = parse_ok(raw, len);
    assert_int_equal(msg->root->n_children, 2);
    got = part_text(msg, msg->root->children[1], &glen);
    assert_mem(got, glen, content, strlen(content));
    free(got);
    message_free(msg);
    free(raw);
    free(content);
    free(b1);
    compose_msg_free(&m);
}

static void test_forward_message(void **state)
{
    static const char inner7[] = "From: a@b.example\r\nSubject: inner\r\n\r\nbody\r\n";
    static const char inner8[] = "From: a@b.example\nSubject: inner \xc3\xbc\n\nbody \xc3\xa9\n";
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct rng r;
    char *raw;
    size_t len;
    struct compose_attachment *a;

    (void)state;
    base_msg(&m);
    a = compose_add_attachment(&m, inner7, strlen(inner7), NULL, NULL);
    a->is_message = true;
    a->description = xstrdup("Fwd: inner");
    rng_seed(&r, 5);
    o = base_opts(&r);
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    assert_string_equal(msg->root->children[1]->type, "message");
    assert_int_equal(msg->root->children[1]->encoding, MSG_ENC_7BIT);
    assert_string_equal(msg->root->children[1]->envelope->subject, "inner");
    assert_string_equal(find_field(raw, msg->body_offset, "Content-Transfer-Encoding") + 27,
                        strstr(raw, "7bit\r\n"));
    message_free(msg);
    free(raw);

    a = compose_add_attachment(&m, inner8, strlen(inner8), NULL, "message/rfc822");
    raw = render_ok(&m, &o, &len);
    msg = parse_ok(raw, len);
    assert_int_equal(msg->root->children[2]->encoding, MSG_ENC_8BIT);
    assert_string_equal(msg->root->children[2]->envelope->subject, "inner ü");
    assert_non_null(strstr(raw, "Content-Transfer-Encoding: 8bit\r\n\r\n--"));  /* top level */
    assert_null(strstr(raw, "base64"));
    message_free(msg);
    free(raw);
    compose_msg_free(&m);
}

/* ---- dates, ids, options ------------------------------------------------ */

struct date_case {
    bool fixed;
    int tz;
    const char *tzenv;
    const char *want;
};

static const struct date_case date_cases[] = {
    {true, 60, NULL, "Date: Tue, 14 Nov 2023 23:13:20 +0100\r\n"},
    {true, -330, NULL, "Date: Tue, 14 Nov 2023 16:43:20 -0530\r\n"},
    {true, 0, NULL, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
    {true, 1439, NULL, "Date: Wed, 15 Nov 2023 22:12:20 +2359\r\n"},
    {false, 0, "ABC-3", "Date: Wed, 15 Nov 2023 01:13:20 +0300\r\n"},
    {false, 0, "UTC0", "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"},
};

static void test_date_and_ids(void **state)
{
    char *old_tz = getenv("TZ") ? xstrdup(getenv("TZ")) : NULL;
    struct compose_msg m;
    struct compose_opts o;
    struct message *msg;
    struct rng r;
    char *raw, *raw2;
    size_t len, len2;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(date_cases); i++) {
        const struct date_case *c = &date_cases[i];
        if (c->tzenv) {
            setenv("TZ", c->tzenv, 1);
            tzset();
        }
        base_msg(&m);
        m.tz_fixed = c->fixed;
        m.tz_minutes = c->tz;
        rng_seed(&r, 1);
        o = base_opts(&r);
        raw = render_ok(&m, &o, &len);
        if (strncmp(raw, c->want, strlen(c->want)) != 0)
            fail_msg("case %zu: got %.40s", i, raw);
        msg = parse_ok(raw, len);
        assert_int_equal(msg->env.date, 1700000000);
        message_free(msg);
        free(raw);
        compose_msg_free(&m);
    }
    if (old_tz)
        setenv("TZ", old_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    free(old_tz);

    /* generated ids: <random.timestamp@host>, invalid host falls back */
    {
        static const char *const hosts[] = {"mail.example.org", "bad host!", "-x.example",
                                            "a..b", ""};
        static const char *const want[] = {"mail.example.org", "localhost.localdomain",
                                           "localhost.localdomain", "localhost.localdomain",
                                           "localhost.localdomain"};
        for (size_t i = 0; i < ARRAY_LEN(hosts); i++) {
            const char *id, *at;
            base_msg(&m);
            free(m.message_id);
            m.message_id = NULL;
            rng_seed(&r, i);
            o = base_opts(&r);
            o.hostname = hosts[i];
            raw = render_ok(&m, &o, &len);
            msg = parse_ok(raw, len);
            id = msg->env.message_id;
            at = strchr(id, '@');
            assert_non_null(at);
            assert_string_equal(at + 1, want[i]);
            assert_int_equal(strcspn(id, "."), 16);
            assert_int_equal(strncmp(id + 17, "1700000000@", 11), 0);
            assert_true(compose_valid_msgid(id));
            message_free(msg);
            free(raw);
            compose_msg_free(&m);
        }
    }

    /* prepare: two renders (sending, Sent copy) agree on Date and id */
    base_msg(&m);
    free(m.message_id);
    m.message_id = NULL;
    m.date = 0;
    m.tz_fixed = false;
    rng_seed(&r, 11);
    o = base_opts(&r);
    assert_int_equal(compose_prepare(&m, &o, NULL), 0);
    assert_non_null(m.message_id);
    assert_true(m.date > 1700000000);
    raw = render_ok(&m, &o, &len);
    o.with_bcc = true;
    o.lf = true;
    raw2 = render_ok(&m, &o, &len2);
    {
        struct message *m2 = parse_ok(raw2, len2);
        msg = parse_ok(raw, len);
        assert_string_equal(msg->env.message_id, m.message_id);
        assert_string_equal(m2->env.message_id, m.message_id);
        assert_string_equal(msg->env.date_text, m2->env.date_text);
        assert_null(memchr(raw2, '\r', len2));
        message_free(m2);
        message_free(msg);
    }
    free(raw);
    free(raw2);
    compose_msg_free(&m);
}

static void test_options_and_limits(void **state)
{
    struct compose_msg m;
    struct compose_opts o;
    struct buf small;
    struct rng r;
    struct err e;
    char *raw;
    size_t len;

    (void)state;
    base_msg(&m);
    rng_seed(&r, 1);
    o = base_opts(&r);
    o.fold_width = 30;
    assert_int_equal(compose_render(&m, &o, &(struct buf)BUF_INIT, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    o.fold_width = 999;
    assert_int_equal(compose_render(&m, &o, &(struct buf)BUF_INIT, &e), -1);
    o.fold_width = 0;
    /* out's ceiling: ERR_LIMIT, out unchanged */
    buf_init(&small, 100);
    assert_int_equal(compose_render(&m, &o, &small, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(small.len, 0);
    buf_free(&small);
    /* NULL options: defaults */
    raw = render_ok(&m, NULL, &len);
    assert_non_null(strstr(raw, "Content-Transfer-Encoding: 7bit\r\n"));
    free(raw);
    /* system randomness and host name */
    free(m.message_id);
    m.message_id = NULL;
    raw = render_ok(&m, NULL, &len);
    {
        struct message *msg = parse_ok(raw, len);
        assert_true(compose_valid_msgid(msg->env.message_id));
        assert_non_null(strchr(msg->env.message_id, '@'));
        message_free(msg);
    }
    free(raw);
    /* the envelope needs recipients */
    {
        char *from, **rcpts;
        size_t n;
        struct compose_msg lone;
        compose_msg_init(&lone);
        compose_addrs_add(&lone.from, NULL, "me@example.org");
        assert_int_equal(compose_envelope(&lone, &from, &rcpts, &n, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_null(from);
        assert_null(rcpts);
        compose_addrs_add(&lone.to, NULL, "bad address@example.org");
        assert_int_equal(compose_envelope(&lone, &from, &rcpts, &n, &e), -1);
        assert_non_null(strstr(e.text, "To: address 1"));
        compose_msg_free(&lone);
    }
    assert_true(compose_is_8bit("a\x80", 2));
    assert_false(compose_is_8bit("abc", 3));
    compose_msg_free(&m);
}

/* ---- MIME types and files ----------------------------------------------- */

struct type_case {
    const char *path;
    const char *type;
};

static const struct type_case type_cases[] = {
    {"/nonexistent/a.PDF", "application/pdf"},
    {"x.tar.gz", "application/gzip"},
    {"dir.d/photo.JPG", "image/jpeg"},
    {"notes.txt", "text/plain"},
    {"sheet.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"page.html", "text/html"},
    {"mail.eml", "message/rfc822"},
    {"/nonexistent/noext", "application/octet-stream"},
    {"/nonexistent/.bashrc", "application/octet-stream"},
    {"/nonexistent/trailing.", "application/octet-stream"},
    {"/nonexistent/x.unknownext", "application/octet-stream"},
};

static void test_mime_type(void **state)
{
    char out[128], tiny[4];
    char *dir, *path;
    FILE *f;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(type_cases); i++) {
        assert_int_equal(compose_mime_type(type_cases[i].path, out, sizeof out), 0);
        assert_string_equal(out, type_cases[i].type);
    }
    assert_int_equal(compose_mime_type("a.pdf", tiny, sizeof tiny), -1);
    assert_string_equal(tiny, "");

    dir = tu_tmpdir("compose");
    path = xasprintf("%s/picture", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\x08\x06\0\0\0", 1, 29, f);
    fclose(f);
    assert_int_equal(compose_mime_type(path, out, sizeof out), 0);
#ifdef HAVE_LIBMAGIC
    assert_string_equal(out, "image/png");
#else
    assert_string_equal(out, "application/octet-stream");
#endif
    free(path);
    /* the content wins over a misleading name; the name refines a generic
     * text/plain answer */
    path = xasprintf("%s/photo.txt", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\x08\x06\0\0\0", 1, 29, f);
    fclose(f);
    assert_int_equal(compose_mime_type(path, out, sizeof out), 0);
#ifdef HAVE_LIBMAGIC
    assert_string_equal(out, "image/png");
#else
    assert_string_equal(out, "text/plain");
#endif
    free(path);
    path = xasprintf("%s/notes.md", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("Some notes\nwith two lines of plain words\n", f);
    fclose(f);
    assert_int_equal(compose_mime_type(path, out, sizeof out), 0);
    assert_string_equal(out, "text/markdown");
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

static void test_attach_file(void **state)
{
    struct compose_msg m;
    struct err e;
    char *dir, *path, *sub;
    FILE *f;

    (void)state;
    dir = tu_tmpdir("compose");
    path = xasprintf("%s/Grüße.txt", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    fputs("hello file\n", f);
    fclose(f);
    sub = xasprintf("%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    base_msg(&m);
    assert_int_equal(compose_attach_file(&m, path, 0, &e), 0);
    assert_int_equal(m.n_attachments, 1);
    assert_string_equal(m.attachments[0].filename, "Grüße.txt");
    assert_string_equal(m.attachments[0].mime_type, "text/plain");
    assert_int_equal(m.attachments[0].len, 11);
    assert_memory_equal(m.attachments[0].data, "hello file\n", 11);

    assert_int_equal(compose_attach_file(&m, path, 5, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(compose_attach_file(&m, sub, 0, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    free(sub);
    sub = xasprintf("%s/missing", dir);
    assert_int_equal(compose_attach_file(&m, sub, 0, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(m.n_attachments, 1);
    {
        struct compose_opts o;
        struct rng r;
        struct message *msg;
        char *raw, *got;
        size_t len, glen;
        rng_seed(&r, 1);
        o = base_opts(&r);
        raw = render_ok(&m, &o, &len);
        msg = parse_ok(raw, len);
        assert_string_equal(msg->root->children[1]->filename, "Grüße.txt");
        got = part_text(msg, msg->root->children[1], &glen);
        assert_mem(got, glen, "hello file\n", 11);
        free(got);
        message_free(msg);
        free(raw);
    }
    compose_msg_free(&m);
    free(sub);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addresses_ok),
        cmocka_unit_test(test_parse_addresses_bad),
        cmocka_unit_test(test_parse_addresses_random),
        cmocka_unit_test(test_roundtrip_full),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bcc),
        cmocka_unit_test(test_body_encodings),
        cmocka_unit_test(test_qp_details),
        cmocka_unit_test(test_flowed),
        cmocka_unit_test(test_binary_attachment),
        cmocka_unit_test(test_rfc2231_filenames),
        cmocka_unit_test(test_boundary_collision),
        cmocka_unit_test(test_forward_message),
        cmocka_unit_test(test_date_and_ids),
        cmocka_unit_test(test_options_and_limits),
        cmocka_unit_test(test_mime_type),
        cmocka_unit_test(test_attach_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
