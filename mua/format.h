/*
 * format: mutt-style format strings ($index_format, $status_format,
 * $pager_format, $date_format's neighbours).
 *
 * Syntax, as mutt users write it:
 *
 *   %X               expansion X, from the caller's callback
 *   %-10.20X         at least 10 columns, at most 20; '-' pads on the right
 *                    (left-justified), otherwise on the left; '0' pads
 *                    numbers with zeros ("%04c")
 *   %{strftime}      also %[...] %(...) %<...>: the callback gets the text
 *                    between the brackets (date formats)
 *   %?X?then&else?   conditional on the callback's truth value for X; both
 *                    branches are format strings themselves; "&else" is
 *                    optional
 *   %>C              right-justify what follows, filling with C
 *   %|C              fill the rest of the line with C
 *   %*C              like %>C, but the left part is cut first when the
 *                    line is too wide
 *   %%               a '%'
 *
 * Widths are display columns of UTF-8 (wide and combining characters
 * counted right).  Every expansion is passed through sanitize_term() before
 * it is measured, so the result is always safe to draw.
 */
#ifndef CORREO_FORMAT_H
#define CORREO_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Expand op into out (raw UTF-8; it will be sanitized).  arg/arglen is the
 * text between brackets for the bracketed forms ('{', '[', '(', '<' as op),
 * else NULL/0.  When truth is non-NULL the call is for a %?X? conditional:
 * set *truth and write nothing.  Return 0, or -1 for an unknown op (the
 * expansion is then empty and the rest goes on). */
typedef int (*format_cb)(void *ctx, char op, const char *arg, size_t arglen, bool *truth,
                         struct buf *out);

/* Expand fmt into out, for a line of cols columns (0: no limit; %> and %|
 * then fill nothing).  The result is at most cols columns wide.  Returns 0,
 * or -1 when out's ceiling was reached. */
int format_expand(const char *fmt, format_cb cb, void *ctx, size_t cols, struct buf *out);

#endif
