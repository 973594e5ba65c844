/* format: mutt-style format strings with column-aware padding. */
#include "format.h"

#include <string.h>

#include "sanitize.h"

#define FORMAT_DEPTH_MAX 8

struct fstate {
    format_cb cb;
    void *ctx;
    size_t cols;
};

static size_t width_of(const struct buf *b)
{
    return b->len ? sanitize_width(b->data, b->len) : 0;
}

static int fill(struct buf *out, const char *fill_char, size_t fill_len, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf_append(out, fill_char, fill_len) < 0)
            return -1;
    return 0;
}

/* Cut b to at most cols columns, never inside a character. */
static void cut(struct buf *b, size_t cols)
{
    if (b->len)
        buf_truncate(b, sanitize_fit(b->data, b->len, cols, NULL));
}

static char closing(char open)
{
    switch (open) {
    case '{': return '}';
    case '[': return ']';
    case '(': return ')';
    case '<': return '>';
    default: return 0;
    }
}

/* Length of the UTF-8 character at p (1 for anything odd). */
static size_t char_len(const char *p, size_t len)
{
    uint32_t cp;
    int n = sanitize_utf8_next(p, len, &cp);
    return n > 0 ? (size_t)n : 1;
}

/* From p (just after '%'), skip one whole directive; returns the length. */
static size_t skip_directive(const char *p, size_t len)
{
    size_t i = 0;
    char close;

    while (i < len && (p[i] == '-' || p[i] == '.' || (p[i] >= '0' && p[i] <= '9')))
        i++;
    if (i >= len)
        return i;
    if ((close = closing(p[i])) != 0) {
        const char *end = memchr(p + i + 1, close, len - i - 1);
        return end ? (size_t)(end - p) + 1 : len;
    }
    return i + 1;
}

static int expand(struct fstate *st, const char *p, size_t len, struct buf *out, int depth);

/* Pad or cut tmp to the [min, max] columns and append it. */
static int place(struct buf *out, struct buf *tmp, bool left, bool zero, long min, long max)
{
    size_t w;

    if (max >= 0)
        cut(tmp, (size_t)max);
    w = width_of(tmp);
    if (min >= 0 && (size_t)min > w) {
        size_t pad = (size_t)min - w;
        if (left) {
            if (buf_append(out, tmp->data, tmp->len) < 0 || fill(out, " ", 1, pad) < 0)
                return -1;
            return 0;
        }
        /* zero padding goes after a sign */
        size_t skip = 0;
        if (zero && tmp->len && tmp->data[0] == '-') {
            if (buf_putc(out, '-') < 0)
                return -1;
            skip = 1;
        }
        if (fill(out, zero ? "0" : " ", 1, pad) < 0 ||
            buf_append(out, tmp->data + skip, tmp->len - skip) < 0)
            return -1;
        return 0;
    }
    return tmp->len ? buf_append(out, tmp->data, tmp->len) : 0;
}

/* %?X?then&else? starting at p (just after "%?"); *used gets its length. */
static int conditional(struct fstate *st, const char *p, size_t len, size_t *used,
                       struct buf *out, int depth)
{
    size_t i = 0, then_start, then_end = 0, else_start = 0, else_end = 0;
    bool truth = false, has_else = false;
    char op;

    if (len < 2 || p[1] != '?') {
        *used = len < 1 ? 0 : 1;
        return 0;   /* malformed: drop the "%?X" */
    }
    op = p[0];
    i = 2;
    then_start = i;
    for (;;) {
        if (i >= len) {
            *used = len;
            return 0;   /* unterminated: the rest is dropped */
        }
        if (p[i] == '%') {
            i += 1 + skip_directive(p + i + 1, len - i - 1);
            continue;
        }
        if (p[i] == '&' && !has_else) {
            then_end = i;
            has_else = true;
            else_start = i + 1;
            i++;
            continue;
        }
        if (p[i] == '?') {
            if (has_else)
                else_end = i;
            else
                then_end = i;
            break;
        }
        i++;
    }
    *used = i + 1;
    if (st->cb(st->ctx, op, NULL, 0, &truth, NULL) < 0)
        truth = false;
    if (truth)
        return expand(st, p + then_start, then_end - then_start, out, depth + 1);
    if (has_else)
        return expand(st, p + else_start, else_end - else_start, out, depth + 1);
    return 0;
}

static int expand(struct fstate *st, const char *p, size_t len, struct buf *out, int depth)
{
    size_t i = 0;

    if (depth > FORMAT_DEPTH_MAX)
        return 0;
    while (i < len) {
        if (p[i] != '%') {
            const char *pct = memchr(p + i, '%', len - i);
            size_t n = pct ? (size_t)(pct - (p + i)) : len - i;
            if (sanitize_term(out, p + i, n, 0) < 0)
                return -1;
            i += n;
            continue;
        }
        i++;
        if (i >= len)
            break;

        /* fills: %>C %|C %*C */
        if (p[i] == '>' || p[i] == '|' || p[i] == '*') {
            char kind = p[i];
            const char *fc = " ";
            size_t fl = 1;
            if (i + 1 < len) {
                fc = p + i + 1;
                fl = char_len(fc, len - i - 1);
                if ((unsigned char)fc[0] < 0x20) {
                    fc = " ";   /* a control character never fills a line */
                }
            }
            i += 1 + (i + 1 < len ? fl : 0);
            if (fc[0] == ' ')
                fl = 1;
            if (st->cols == 0 || depth > 0)
                continue;
            if (kind == '|') {
                size_t w = width_of(out);
                if (w < st->cols && fill(out, fc, fl, st->cols - w) < 0)
                    return -1;
                continue;
            }
            struct buf right = BUF_INIT;
            if (expand(st, p + i, len - i, &right, depth) < 0) {
                buf_free(&right);
                return -1;
            }
            size_t lw = width_of(out), rw = width_of(&right);
            int rc = 0;
            if (lw + rw < st->cols) {
                rc = fill(out, fc, fl, st->cols - lw - rw);
            } else if (kind == '*') {
                cut(out, rw < st->cols ? st->cols - rw : 0);
                if (rw > st->cols)
                    cut(&right, st->cols);
            }
            if (rc == 0 && right.len)
                rc = buf_append(out, right.data, right.len);
            buf_free(&right);
            return rc;
        }

        if (p[i] == '%') {
            if (buf_putc(out, '%') < 0)
                return -1;
            i++;
            continue;
        }
        if (p[i] == '?') {
            size_t used;
            if (conditional(st, p + i + 1, len - i - 1, &used, out, depth) < 0)
                return -1;
            i += 1 + used;
            continue;
        }

        bool left = false, zero = false;
        long min = -1, max = -1;
        if (i < len && p[i] == '-') {
            left = true;
            i++;
        }
        if (i < len && p[i] == '0') {
            zero = true;
            i++;
        }
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            min = (min < 0 ? 0 : min) * 10 + (p[i] - '0');
            if (min > 1000)
                min = 1000;
            i++;
        }
        if (i < len && p[i] == '.') {
            i++;
            max = 0;
            while (i < len && p[i] >= '0' && p[i] <= '9') {
                max = max * 10 + (p[i] - '0');
                if (max > 1000)
                    max = 1000;
                i++;
            }
        }
        if (i >= len)
            break;

        char op = p[i];
        const char *arg = NULL;
        size_t arglen = 0;
        char close = closing(op);
        if (close) {
            const char *end = memchr(p + i + 1, close, len - i - 1);
            if (!end)
                break;    /* unterminated: drop the rest */
            arg = p + i + 1;
            arglen = (size_t)(end - arg);
            i = (size_t)(end - p) + 1;
        } else {
            i++;
        }

        struct buf raw = BUF_INIT, safe = BUF_INIT;
        int rc = 0;
        if (st->cb(st->ctx, op, arg, arglen, NULL, &raw) == 0 &&
            sanitize_term(&safe, raw.data ? raw.data : "", raw.len, 0) == 0)
            rc = place(out, &safe, left, zero, min, max);
        buf_free(&raw);
        buf_free(&safe);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int format_expand(const char *fmt, format_cb cb, void *ctx, size_t cols, struct buf *out)
{
    struct fstate st = {cb, ctx, cols};
    struct buf line = BUF_INIT;
    int rc;

    rc = expand(&st, fmt, strlen(fmt), &line, 0);
    if (rc == 0 && cols)
        cut(&line, cols);
    if (rc == 0 && line.len)
        rc = buf_append(out, line.data, line.len);
    buf_free(&line);
    return rc;
}
