/*
 * xalloc: allocation that cannot fail, and die() for broken invariants.
 *
 * Running out of memory is treated as a bug-class event: every wrapper here
 * aborts with a message instead of returning NULL, so the rest of the code
 * only handles real failures.  Because of that, any size taken from input
 * must be capped by the caller *before* it reaches these functions.
 */
#ifndef CORREO_XALLOC_H
#define CORREO_XALLOC_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define CORREO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CORREO_NORETURN __attribute__((noreturn))
#define CORREO_MALLOC __attribute__((malloc))
#define CORREO_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define CORREO_PRINTF(a, b)
#define CORREO_NORETURN
#define CORREO_MALLOC
#define CORREO_WARN_UNUSED
#endif

/* Print "correo: <message>" to stderr and abort().  For bugs only. */
CORREO_NORETURN void die(const char *fmt, ...) CORREO_PRINTF(1, 2);

/* All of these return memory the caller frees with free(). */
CORREO_MALLOC void *xmalloc(size_t n);
CORREO_MALLOC void *xcalloc(size_t nmemb, size_t size);
/* Overflow-checked nmemb * size. */
CORREO_MALLOC void *xreallocarray(void *p, size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
CORREO_MALLOC char *xstrdup(const char *s);
/* Copies at most n bytes of s and NUL-terminates. */
CORREO_MALLOC char *xstrndup(const char *s, size_t n);
/* Copies exactly n bytes (which may contain NULs) and NUL-terminates. */
CORREO_MALLOC void *xmemdup0(const void *p, size_t n);
CORREO_MALLOC char *xasprintf(const char *fmt, ...) CORREO_PRINTF(1, 2);
CORREO_MALLOC char *xvasprintf(const char *fmt, va_list ap) CORREO_PRINTF(1, 0);

#define XNEW(type) ((type *)xcalloc(1, sizeof(type)))
#define XNEWARRAY(type, n) ((type *)xreallocarray(NULL, (n), sizeof(type)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
