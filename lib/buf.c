/* buf: growable byte buffer with an optional ceiling. */
#include "buf.h"

#include <errno.h>
#include <unistd.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_reserve(struct buf *b, size_t n)
{
    size_t need, cap;

    if (n > SIZE_MAX - b->len - 1)
        return NULL;
    if (b->max && b->len + n > b->max)
        return NULL;
    need = b->len + n + 1;
    if (need > b->cap) {
        cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    /* Keep the contents terminated even if the caller commits nothing. */
    b->data[b->len] = '\0';
    return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
    if (b->data == NULL || b->len + n >= b->cap)
        die("buf_commit past the reserved space");
    b->len += n;
    b->data[b->len] = '\0';
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    char *dst = buf_reserve(b, n);

    if (dst == NULL)
        return -1;
    if (n)
        memcpy(dst, p, n);
    buf_commit(b, n);
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    char *dst;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -1;
    dst = buf_reserve(b, (size_t)n);
    if (dst == NULL)
        return -1;
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    buf_commit(b, (size_t)n);
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n > b->len)
        die("buf_consume past the end");
    if (n == 0)
        return;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void buf_truncate(struct buf *b, size_t n)
{
    if (n > b->len)
        die("buf_truncate past the end");
    b->len = n;
    if (b->data)
        b->data[n] = '\0';
}

const char *buf_cstr(const struct buf *b)
{
    return b->data ? b->data : "";
}

char *buf_steal(struct buf *b, size_t *len)
{
    char *p;

    p = b->data ? b->data : xcalloc(1, 1);
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

int buf_read_all(struct buf *b, int fd)
{
    for (;;) {
        /* Never ask for more room than the ceiling leaves: a small buffer
         * must be able to hold a small file exactly.  At the ceiling, one
         * more byte read tells a full buffer from a file that is too big. */
        size_t want = 65536;
        char extra;
        char *p;
        ssize_t n;

        if (b->max) {
            size_t room = b->max > b->len ? b->max - b->len : 0;
            if (room == 0) {
                n = read(fd, &extra, 1);
                if (n < 0 && errno == EINTR)
                    continue;
                return n < 0 ? -1 : n == 0 ? 0 : -2;
            }
            if (want > room)
                want = room;
        }
        p = buf_reserve(b, want);
        if (!p)
            return -2;
        n = read(fd, p, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        buf_commit(b, (size_t)n);
    }
}
