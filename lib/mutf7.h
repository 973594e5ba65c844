/*
 * mutf7: IMAP's modified UTF-7 for mailbox names (RFC 3501 5.1.3) to and
 * from UTF-8.
 *
 * Decoding is strict: only the canonical encoding of a name is accepted,
 * the one mutf7_from_utf8() produces, so a name has exactly one spelling on
 * the wire.  Refused: bytes outside printable US-ASCII, a "&" section that
 * is unterminated, empty ("&-" is the ampersand, not a section), holds a
 * character outside the base64 alphabet (modified: "," for "/", no "="
 * padding), has leftover bits that are not zero or a whole spare base64
 * character, encodes a printable US-ASCII character or U+0000, holds an
 * unpaired UTF-16 surrogate, or directly follows another section ("&AOk-&AOk-"
 * must be "&AOkA6Q-").
 *
 * Encoding refuses input that is not valid UTF-8 (overlongs, surrogates,
 * values past U+10FFFF) and U+0000.
 *
 * Both append to out (nothing is appended on failure) and return 0, or -1
 * with e filled: ERR_PARSE for bad input, ERR_LIMIT when out's ceiling is
 * reached.
 */
#ifndef CORREO_MUTF7_H
#define CORREO_MUTF7_H

#include <stddef.h>

#include "buf.h"
#include "err.h"

int mutf7_to_utf8(const char *in, size_t len, struct buf *out, struct err *e);
int mutf7_from_utf8(const char *in, size_t len, struct buf *out, struct err *e);

#endif
