/*
 * rfc2047: encoded words ("=?charset?B|Q?text?=") in header text.
 *
 * Decoding is lenient: a malformed encoded word is left as literal text,
 * whitespace between two adjacent encoded words is dropped (RFC 2047 6.2),
 * adjacent words in the same charset are joined before conversion so a
 * multi-byte character split across words survives, and text outside
 * encoded words is taken as UTF-8 when valid, else as Windows-1252.
 * Output is always valid UTF-8 without NUL bytes.
 */
#ifndef CORREO_RFC2047_H
#define CORREO_RFC2047_H

#include <stddef.h>

#include "buf.h"

/* Decode in[0..len) and append UTF-8 to out.  *flags (may be NULL) gets
 * CHARSET_* bits from charset.h.  Returns -1 only if out's ceiling is hit. */
int rfc2047_decode(const char *in, size_t len, struct buf *out, unsigned *flags);

/* Same into a new string the caller frees. */
char *rfc2047_decode_str(const char *in, size_t len, unsigned *flags);

/* Encode UTF-8 text for a header: returned unchanged if it is printable
 * ASCII without "=?"; otherwise as UTF-8 "B" encoded words of at most 75
 * characters, separated by CRLF SP (folded), never splitting a character.
 * Appends to out; -1 only on out's ceiling. */
int rfc2047_encode(const char *utf8, size_t len, struct buf *out);

#endif
