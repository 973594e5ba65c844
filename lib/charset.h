/*
 * charset: conversion of text in a named charset to UTF-8 (via iconv), with
 * alias normalisation and visible fallbacks.
 *
 * Nothing here fails on bad input: invalid byte sequences become U+FFFD and
 * an unknown charset is decoded as Windows-1252; both are reported through
 * the flags.  The only failure is the output buffer's ceiling (-1; the
 * buffer keeps what fit).  Output is appended to a caller-owned struct buf.
 */
#ifndef CORREO_CHARSET_H
#define CORREO_CHARSET_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum {
    CHARSET_REPLACED = 1u << 0,   /* invalid bytes were replaced by U+FFFD */
    CHARSET_FALLBACK = 1u << 1,   /* unknown charset, decoded as Windows-1252 */
};

/* Write the iconv name for a MIME charset label into dst (size dstsz):
 * lower-cased aliases such as "latin1", "utf8", "x-sjis", "gb2312" are mapped,
 * surrounding quotes/blanks and an RFC 2231 "*lang" suffix are dropped.
 * Returns false (dst = "") for an empty or syntactically unsafe name. */
bool charset_normalize(const char *name, char *dst, size_t dstsz);

/* True when name (after normalisation) means UTF-8 or US-ASCII. */
bool charset_is_utf8_name(const char *name);

/* True if s[0..len) is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool charset_valid_utf8(const char *s, size_t len);

/* Convert in[0..len) from charset (NULL or "" means US-ASCII) to UTF-8,
 * appending to out.  *flags (may be NULL) gets CHARSET_* bits or'ed in.
 * US-ASCII and UTF-8 input is validated: bad sequences become U+FFFD. */
int charset_to_utf8(const char *charset, const char *in, size_t len,
                    struct buf *out, unsigned *flags);

/* Header text with no declared charset: kept if valid UTF-8, otherwise
 * decoded as Windows-1252.  NUL bytes become U+FFFD in both cases. */
int charset_fix_utf8(const char *in, size_t len, struct buf *out, unsigned *flags);

/* Convenience: charset_fix_utf8 into a new NUL-terminated string (free()). */
char *charset_fix_utf8_str(const char *in, size_t len);

#endif
