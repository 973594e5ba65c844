/*
 * mutf7: IMAP modified UTF-7 <-> UTF-8 (see mutf7.h).
 *
 * Both directions build their result in a private buffer first and append
 * it to the caller's only when the whole input was good, so a failure
 * leaves out as it was.
 */
#include "mutf7.h"

#include <stdbool.h>
#include <stdint.h>

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

static void put_utf8(struct buf *b, uint32_t cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (buf_append(b, u, n) < 0)
        die("mutf7: unbounded buffer refused an append");
}

static int hand_over(struct buf *tmp, struct buf *out, struct err *e)
{
    int rc = 0;

    if (tmp->len && buf_append(out, tmp->data, tmp->len) < 0)
        rc = err_set(e, ERR_LIMIT, "mailbox name too long");
    buf_free(tmp);
    return rc;
}

static int fail(struct buf *tmp, struct err *e, const char *what)
{
    buf_free(tmp);
    return err_set(e, ERR_PARSE, "bad modified UTF-7 mailbox name: %s", what);
}

int mutf7_to_utf8(const char *in, size_t len, struct buf *out, struct err *e)
{
    struct buf tmp = BUF_INIT;
    bool after_section = false;
    size_t i = 0;

    while (i < len) {
        unsigned char c = (unsigned char)in[i];
        uint32_t bits = 0, high = 0;
        unsigned nbits = 0;
        size_t j;

        if (c != '&') {
            if (c < 0x20 || c > 0x7E)
                return fail(&tmp, e, "byte outside printable US-ASCII");
            if (buf_putc(&tmp, (char)c) < 0)
                die("mutf7: unbounded buffer refused an append");
            after_section = false;
            i++;
            continue;
        }
        if (i + 1 < len && in[i + 1] == '-') {
            if (buf_putc(&tmp, '&') < 0)
                die("mutf7: unbounded buffer refused an append");
            after_section = false;
            i += 2;
            continue;
        }
        if (after_section)
            return fail(&tmp, e, "two encoded sections in a row");
        for (j = i + 1; j < len && in[j] != '-'; j++) {
            int v = b64_value((unsigned char)in[j]);
            if (v < 0)
                return fail(&tmp, e, "character outside the base64 alphabet");
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            if (nbits >= 16) {
                uint32_t u;
                nbits -= 16;
                u = (bits >> nbits) & 0xFFFF;
                bits &= (1u << nbits) - 1;
                if (high) {
                    if (u < 0xDC00 || u > 0xDFFF)
                        return fail(&tmp, e, "unpaired surrogate");
                    put_utf8(&tmp, 0x10000 + ((high - 0xD800) << 10) + (u - 0xDC00));
                    high = 0;
                } else if (u >= 0xD800 && u <= 0xDBFF) {
                    high = u;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return fail(&tmp, e, "unpaired surrogate");
                } else if (u >= 0x20 && u <= 0x7E) {
                    return fail(&tmp, e, "printable US-ASCII encoded");
                } else if (u == 0) {
                    return fail(&tmp, e, "U+0000");
                } else {
                    put_utf8(&tmp, u);
                }
            }
        }
        if (j >= len)
            return fail(&tmp, e, "unterminated encoded section");
        if (high)
            return fail(&tmp, e, "unpaired surrogate");
        if (nbits >= 6)
            return fail(&tmp, e, "incomplete UTF-16 character");
        if (bits != 0)
            return fail(&tmp, e, "nonzero padding bits");
        after_section = true;
        i = j + 1;
    }
    return hand_over(&tmp, out, e);
}

/* Strict UTF-8: the code point at s[0..len) and its length, or -1. */
static int utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
    uint32_t c = s[0], min;
    int n;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return -1;
    }
    if ((size_t)n > len)
        return -1;
    for (int k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return -1;
        c = (c << 6) | (s[k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return -1;
    *cp = c;
    return n;
}

static void put_b64(struct buf *b, uint32_t v)
{
    if (buf_putc(b, b64_chars[v & 0x3F]) < 0)
        die("mutf7: unbounded buffer refused an append");
}

int mutf7_from_utf8(const char *in, size_t len, struct buf *out, struct err *e)
{
    struct buf tmp = BUF_INIT;
    const unsigned char *s = (const unsigned char *)in;
    bool shifted = false;
    uint32_t bits = 0;
    unsigned nbits = 0;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        int n = utf8_next(s + i, len - i, &cp);

        if (n < 0) {
            buf_free(&tmp);
            return err_set(e, ERR_PARSE, "mailbox name is not valid UTF-8");
        }
        if (cp == 0) {
            buf_free(&tmp);
            return err_set(e, ERR_PARSE, "mailbox name holds U+0000");
        }
        i += (size_t)n;
        if (cp >= 0x20 && cp <= 0x7E) {
            if (shifted) {
                if (nbits)
                    put_b64(&tmp, bits << (6 - nbits));
                bits = 0;
                nbits = 0;
                if (buf_putc(&tmp, '-') < 0)
                    die("mutf7: unbounded buffer refused an append");
                shifted = false;
            }
            if (buf_puts(&tmp, cp == '&' ? "&-" : (const char[]){(char)cp, 0}) < 0)
                die("mutf7: unbounded buffer refused an append");
            continue;
        }
        if (!shifted) {
            if (buf_putc(&tmp, '&') < 0)
                die("mutf7: unbounded buffer refused an append");
            shifted = true;
        }
        uint32_t units[2];
        int nu = 1;
        if (cp >= 0x10000) {
            units[0] = 0xD800 + ((cp - 0x10000) >> 10);
            units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
            nu = 2;
        } else {
            units[0] = cp;
        }
        for (int k = 0; k < nu; k++) {
            bits = (bits << 16) | units[k];
            nbits += 16;
            while (nbits >= 6) {
                nbits -= 6;
                put_b64(&tmp, bits >> nbits);
            }
            bits &= (1u << nbits) - 1;
        }
    }
    if (shifted) {
        if (nbits)
            put_b64(&tmp, bits << (6 - nbits));
        if (buf_putc(&tmp, '-') < 0)
            die("mutf7: unbounded buffer refused an append");
    }
    return hand_over(&tmp, out, e);
}
