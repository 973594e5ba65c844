/*
 * html: the built-in HTML-to-text converter the pager uses when no external
 * HTML filter is configured (or when the configured one fails).
 *
 * It is a single pass state machine over the input, with counters instead of
 * an element stack and no recursion, so its time and memory are linear in
 * the input whatever the nesting, and it never fails on malformed markup:
 *
 *   tags              dropped; only the ones below have an effect
 *   skipped content   <head> (up to </head> or <body>), <script>, <style>,
 *                     <title>, <template>, <iframe>, <noframes>, <noembed>,
 *                     comments <!-- -->, <![CDATA[ ]]>, <!...> and <?...>;
 *                     an unterminated one runs to the end of the input
 *   line breaks       <br> (each one), <div> <tr> <table> <ul> <ol> <dl>
 *                     <dt> <dd> <li> and the other block elements;
 *                     <p> and <h1>..<h6> leave a blank line around them
 *   <li>              "* " (indented two columns per nested list)
 *   <blockquote>      "> " before each line, once per nesting level (the
 *                     prefix is capped at HTML_QUOTE_MAX levels)
 *   <pre>             whitespace kept as written
 *   <hr>              a line of dashes
 *   <td> <th>         separated by a space
 *   <a href=X>T</a>   "T <X>" unless T is X (or X is "mailto:T"); in-page
 *                     "#..." links are not shown
 *   <img alt=A>       "[image: A]"; nothing without an alt text
 *   whitespace        runs collapse to one space outside <pre>
 *   entities          the common named ones (all of Latin-1, typographic
 *                     quotes and dashes, arrows, ...), &#NNN; and &#xHH;;
 *                     numeric references to NUL, controls, surrogates or
 *                     values past U+10FFFF become U+FFFD (80-9F are read as
 *                     Windows-1252, as browsers do); an unknown name is kept
 *                     literally
 *
 * The output is UTF-8 with '\n' line ends and no control characters other
 * than '\n' and TAB (TAB only from <pre>); invalid UTF-8 in the input becomes
 * U+FFFD.  It is not sanitized for a terminal: callers still pass it through
 * lib/sanitize before drawing.  The converter does not know the width of the
 * screen: lines are wrapped by whoever draws them.
 */
#ifndef CORREO_HTML_H
#define CORREO_HTML_H

#include <stddef.h>

#include "buf.h"

#define HTML_QUOTE_MAX 16   /* "> " prefixes drawn for deeper <blockquote>s */

/* Convert html[0..len) and append the text to out.  Returns 0, or -1 when
 * out's ceiling was reached (out then holds a valid UTF-8 prefix of the
 * text). */
int html_to_text(const char *html, size_t len, struct buf *out);

#endif
