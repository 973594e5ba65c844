/*
 * sanitize: the one choke point between untrusted bytes and a terminal or a
 * log.
 *
 * Headers, bodies, file names and server replies are attacker-controlled.
 * Before any of them is drawn, sanitize_term() turns them into UTF-8 that
 * cannot move the cursor, change colours, retitle the window, reorder text
 * or desynchronise the display width:
 *
 *   C0 controls and DEL    caret notation: ESC -> "^[", BEL -> "^G", DEL -> "^?"
 *   C1 controls U+0080-9F  "<U+009B>" style, visible and inert
 *   invalid UTF-8          U+FFFD per maximal invalid subsequence
 *   bidi embeddings, overrides and isolates, line/paragraph separators
 *                          U+FFFD (they would reorder what the user reads)
 *   TAB, LF                kept only when the caller asks (bodies), else a space
 *   CR                     CR LF -> LF when newlines are kept; else "^M"
 *
 * sanitize_log() makes printable ASCII out of anything: bytes outside
 * 0x20-0x7e and the backslash become "\xHH" / "\\", so a log line is one
 * line and can be read back unambiguously.
 *
 * Display width (sanitize_cp_width, sanitize_width) uses our own tables for
 * East Asian wide/fullwidth characters and zero-width combining marks, so
 * layout does not depend on the process locale.
 */
#ifndef CORREO_SANITIZE_H
#define CORREO_SANITIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum sanitize_flags {
    SAN_KEEP_NEWLINE = 1u << 0,   /* keep LF (and turn CR LF into LF) */
    SAN_KEEP_TAB     = 1u << 1,   /* keep TAB; otherwise it becomes a space */
};

/* Append the terminal-safe form of s[0..len) to out.  Returns 0, or -1 when
 * out's ceiling was reached (out then holds a valid prefix: never a cut
 * UTF-8 sequence). */
int sanitize_term(struct buf *out, const char *s, size_t len, unsigned flags);

/* sanitize_term() into a new NUL-terminated string (xmalloc'd). */
char *sanitize_term_dup(const char *s, size_t len, unsigned flags);

/* Append the log-safe ASCII form of s[0..len) to out; 0 or -1 as above. */
int sanitize_log(struct buf *out, const char *s, size_t len);

/* Decode one UTF-8 sequence at s[0..len) (len > 0).  Returns its length and
 * sets *cp, or returns -(length of the maximal invalid subsequence) and sets
 * *cp to U+FFFD.  Overlong forms, surrogates and values past U+10FFFF are
 * invalid. */
int sanitize_utf8_next(const char *s, size_t len, uint32_t *cp);

/* Columns a code point takes: 0 (combining, zero-width), 1 or 2 (wide);
 * -1 for controls that sanitize_term() would have replaced. */
int sanitize_cp_width(uint32_t cp);

/* Columns the already sanitized UTF-8 text s[0..len) takes (TAB and LF count
 * as one column each; the caller lays those out). */
size_t sanitize_width(const char *s, size_t len);

/* Length in bytes of the longest prefix of sanitized UTF-8 s[0..len) that
 * fits in cols columns, never splitting a character or separating a base
 * character from the combining marks that follow it.  *used (may be NULL)
 * receives the columns of that prefix. */
size_t sanitize_fit(const char *s, size_t len, size_t cols, size_t *used);

#endif
