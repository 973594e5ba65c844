/*
 * fuzz_check: the properties every fuzz target asserts about what the
 * parsers hand back, beyond "no crash": strings the API promises as UTF-8
 * are valid UTF-8, and text meant for the terminal carries nothing that
 * could move the cursor, change colours or reorder what the user reads.
 *
 * A violated property aborts, so libFuzzer records the input as a crash.
 */
#ifndef CORREO_FUZZ_CHECK_H
#define CORREO_FUZZ_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sanitize.h"

static inline void fuzz_fail(const char *what, const char *s, size_t len)
{
    struct buf b = BUF_INIT;

    if (sanitize_log(&b, s, len > 200 ? 200 : len) < 0)
        buf_reset(&b);
    fprintf(stderr, "fuzz property violated: %s: \"%s\"\n", what, buf_cstr(&b));
    buf_free(&b);
    abort();
}

/* s[0..len) is valid UTF-8 (no overlongs, surrogates or values past
 * U+10FFFF). */
static inline void fuzz_check_utf8(const char *what, const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        int n = sanitize_utf8_next(s + i, len - i, &cp);
        if (n < 0)
            fuzz_fail(what, s, len);
        i += (size_t)n;
    }
}

static inline void fuzz_check_utf8_str(const char *what, const char *s)
{
    size_t len = 0;

    if (!s)
        return;
    while (s[len])
        len++;
    fuzz_check_utf8(what, s, len);
}

static inline bool fuzz_reordering(uint32_t cp)
{
    return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x061C;
}

/* s[0..len) is safe for a terminal: valid UTF-8, no C0 or C1 controls, no
 * DEL, no bidi controls.  Returns the display width. */
static inline size_t fuzz_check_term(const char *what, const char *s, size_t len)
{
    size_t i = 0, width = 0;

    while (i < len) {
        uint32_t cp;
        int n = sanitize_utf8_next(s + i, len - i, &cp);
        if (n < 0 || sanitize_cp_width(cp) < 0 || fuzz_reordering(cp))
            fuzz_fail(what, s, len);
        width += (size_t)sanitize_cp_width(cp);
        i += (size_t)n;
    }
    return width;
}

/* Copy data into a fresh NUL-terminated heap string (free()). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (!s)
        abort();
    for (size_t i = 0; i < size; i++)
        s[i] = (char)data[i];
    s[size] = '\0';
    return s;
}

#endif
