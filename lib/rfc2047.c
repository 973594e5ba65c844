#include "rfc2047.h"

#include <string.h>
#include <strings.h>

#include "charset.h"
#include "codec.h"

#define RFC2047_CHARSET_MAX 64
#define RFC2047_WORD_MAX 4096     /* longer "words" are taken literally */
#define RFC2047_ENC_CHUNK 45      /* raw bytes per encoded word: 60 b64 chars */

struct rfc2047_word {
    size_t len;                   /* bytes of the whole =?...?= */
    char charset[RFC2047_CHARSET_MAX];
    char enc;                     /* 'B' or 'Q' */
    const char *text;
    size_t text_len;
};

struct rfc2047_state {
    struct buf *out;
    unsigned *flags;
    struct buf pending;           /* raw bytes of adjacent words */
    char charset[RFC2047_CHARSET_MAX];
};

static bool rfc2047_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parse an encoded word at p (which starts with "=?"); false if invalid,
 * with *skip set to where the next candidate may start: a word starting
 * before a failed text scan's end would fail the same way, which keeps
 * decoding linear. */
static bool rfc2047_parse_word(const char *p, size_t len, struct rfc2047_word *w,
                               size_t *skip)
{
    size_t i = 2, cs;

    *skip = 2;
    while (i < len && p[i] != '?' && !rfc2047_is_ws(p[i]))
        i++;
    cs = i - 2;
    if (i + 3 > len || p[i] != '?' || cs == 0 || cs >= RFC2047_CHARSET_MAX)
        return false;
    memcpy(w->charset, p + 2, cs);
    w->charset[cs] = '\0';
    w->enc = (char)(p[i + 1] & ~0x20);
    if ((w->enc != 'B' && w->enc != 'Q') || p[i + 2] != '?')
        return false;
    i += 3;
    w->text = p + i;
    for (; i + 1 < len && i < RFC2047_WORD_MAX; i++) {
        if (rfc2047_is_ws(p[i])) {
            *skip = i;
            return false;
        }
        if (p[i] == '?' && p[i + 1] == '=') {
            w->text_len = (size_t)(p + i - w->text);
            w->len = i + 2;
            return true;
        }
    }
    *skip = i > 2 ? i : 2;
    return false;
}

static int rfc2047_flush(struct rfc2047_state *st)
{
    int rc = 0;

    if (st->pending.len > 0)
        rc = charset_to_utf8(st->charset, buf_cstr(&st->pending), st->pending.len,
                             st->out, st->flags);
    buf_reset(&st->pending);
    st->charset[0] = '\0';
    return rc;
}

static int rfc2047_add_word(struct rfc2047_state *st, const struct rfc2047_word *w)
{
    bool bad = false;
    int rc;

    if (st->pending.len > 0 && strcasecmp(st->charset, w->charset) != 0)
        if (rfc2047_flush(st) < 0)
            return -1;
    memcpy(st->charset, w->charset, sizeof st->charset);
    if (w->enc == 'B')
        rc = codec_b64_decode(w->text, w->text_len, &st->pending, &bad);
    else
        rc = codec_qp_decode(w->text, w->text_len, true, &st->pending, &bad);
    if (bad)
        *st->flags |= CHARSET_REPLACED;
    return rc;
}

/* Literal text between words: dropped if only whitespace between words. */
static int rfc2047_literal(struct rfc2047_state *st, const char *p, size_t n, bool next_is_word)
{
    size_t i;

    if (n == 0)
        return 0;
    for (i = 0; i < n && rfc2047_is_ws(p[i]); i++)
        ;
    if (i == n && st->pending.len > 0 && next_is_word)
        return 0;
    if (rfc2047_flush(st) < 0)
        return -1;
    return charset_fix_utf8(p, n, st->out, st->flags);
}

int rfc2047_decode(const char *in, size_t len, struct buf *out, unsigned *flags)
{
    struct rfc2047_state st = {out, flags, BUF_INIT, ""};
    unsigned dummy = 0;
    size_t i = 0, lit = 0;
    int rc = 0;

    if (!flags)
        st.flags = &dummy;
    while (rc == 0 && i + 1 < len) {
        struct rfc2047_word w;
        size_t skip;
        const char *q = memmem(in + i, len - i, "=?", 2);
        if (!q)
            break;
        i = (size_t)(q - in);
        if (!rfc2047_parse_word(in + i, len - i, &w, &skip)) {
            i += skip;
            continue;
        }
        rc = rfc2047_literal(&st, in + lit, i - lit, true);
        if (rc == 0)
            rc = rfc2047_add_word(&st, &w);
        i += w.len;
        lit = i;
    }
    if (rc == 0)
        rc = rfc2047_literal(&st, in + lit, len - lit, false);
    if (rc == 0)
        rc = rfc2047_flush(&st);
    buf_free(&st.pending);
    return rc;
}

char *rfc2047_decode_str(const char *in, size_t len, unsigned *flags)
{
    struct buf b = BUF_INIT;

    if (rfc2047_decode(in, len, &b, flags) < 0)
        die("rfc2047: unbounded buffer refused an append");
    return buf_steal(&b, NULL);
}

static bool rfc2047_needs_encoding(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return true;
        if (c == '=' && i + 1 < len && s[i + 1] == '?')
            return true;
    }
    return false;
}

/* Largest n <= max such that s[0..n) ends on a UTF-8 character boundary. */
static size_t rfc2047_chunk(const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;

    while (n < len && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n > 0 ? n : (len < max ? len : max);
}

int rfc2047_encode(const char *utf8, size_t len, struct buf *out)
{
    size_t i = 0;

    if (!rfc2047_needs_encoding(utf8, len))
        return buf_append(out, utf8, len);
    while (i < len) {
        size_t n = rfc2047_chunk(utf8 + i, len - i, RFC2047_ENC_CHUNK);
        if ((i > 0 && buf_puts(out, "\r\n ") < 0) || buf_puts(out, "=?UTF-8?B?") < 0 ||
            codec_b64_encode(utf8 + i, n, out) < 0 || buf_puts(out, "?=") < 0)
            return -1;
        i += n;
    }
    return 0;
}
