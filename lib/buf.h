/*
 * buf: growable byte buffer with an optional ceiling.
 *
 * A struct buf owns its storage (free with buf_free).  The contents are always
 * NUL-terminated one byte past len, so buf.data can be used as a C string when
 * it holds no NUL bytes, but len is authoritative.
 *
 * max == 0 means "no ceiling" (allocation is still fatal on OOM).  With a
 * ceiling, an append that would make len exceed max appends nothing and
 * returns -1: nothing is ever silently truncated.
 */
#ifndef CORREO_BUF_H
#define CORREO_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "xalloc.h"

struct buf {
    char *data;   /* NULL until the first append; see buf_cstr() */
    size_t len;
    size_t cap;
    size_t max;   /* 0: unbounded */
};

#define BUF_INIT {NULL, 0, 0, 0}

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Forget the contents, keep the storage and the ceiling. */
void buf_reset(struct buf *b);

/* Each returns 0, or -1 if the ceiling would be exceeded (buffer unchanged). */
CORREO_WARN_UNUSED int buf_append(struct buf *b, const void *p, size_t n);
CORREO_WARN_UNUSED int buf_puts(struct buf *b, const char *s);
CORREO_WARN_UNUSED int buf_putc(struct buf *b, char c);
CORREO_WARN_UNUSED int buf_printf(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);
CORREO_WARN_UNUSED int buf_vprintf(struct buf *b, const char *fmt, va_list ap) CORREO_PRINTF(2, 0);

/* Make room for n more bytes; returns a pointer to write them at, or NULL if
 * the ceiling forbids.  Follow with buf_commit(b, written). */
char *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);

/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Shorten to n bytes (n <= len). */
void buf_truncate(struct buf *b, size_t n);

/* Append everything fd has until end of file.  Returns 0; -1 on a read
 * error (errno set); -2 when b's ceiling was reached.  EINTR is retried. */
int buf_read_all(struct buf *b, int fd);

/* Always a valid NUL-terminated string ("" when empty). */
const char *buf_cstr(const struct buf *b);

/* Hand the storage to the caller (free() it) and reset b to empty.  Never
 * NULL. */
char *buf_steal(struct buf *b, size_t *len);

#endif
