/*
 * ui: the only module that talks to curses.
 *
 * Screen setup and teardown, theme roles to curses attributes, keys from
 * curses to the keymap's codes, drawing of already sanitized UTF-8 cut to
 * the screen's width, the message line, and the line editor used by every
 * prompt.  Everything it draws has passed lib/sanitize (callers hand it
 * sanitized text; the prompt sanitizes what it echoes).
 */
#ifndef CORREO_UI_H
#define CORREO_UI_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "theme.h"

#define UI_KEY_TIMEOUT (-1)
#define UI_KEY_RESIZE  (-2)
#define UI_KEY_ERROR   (-3)

int ui_init(const struct theme *theme, struct err *e);
void ui_end(void);

/* Give the terminal to a child (editor, pager, shell) and take it back. */
void ui_suspend(void);
void ui_resume(void);

/* Apply a new theme (after :theme or :color). */
void ui_set_theme(const struct theme *theme);

int ui_rows(void);
int ui_cols(void);

/* Wait up to timeout_ms (-1: forever) for a key: a Unicode code point, a
 * KEYC_* code, UI_KEY_TIMEOUT or UI_KEY_RESIZE. */
int ui_getkey(int timeout_ms);

/* Draw sanitized UTF-8 text at (row, col) in role, cut at the right edge;
 * with fill the rest of the row gets the role's background.  extra adds
 * THEME_* attribute bits (e.g. reverse for the cursor). */
void ui_draw(int row, int col, const char *text, size_t len, enum theme_role role,
             unsigned extra, bool fill);
/* Clear a row to the role's colours. */
void ui_clear_row(int row, enum theme_role role);
void ui_erase(void);
void ui_refresh(void);
void ui_redraw_all(void);
/* Put the terminal cursor (e.g. on the current line for screen readers). */
void ui_move(int row, int col);

/* The bottom line: an informational or error message, shown until the
 * next key. */
void ui_message(const char *fmt, ...) CORREO_PRINTF(1, 2);
void ui_error(const char *fmt, ...) CORREO_PRINTF(1, 2);
void ui_clear_message(void);
/* Draw the pending message (called by the screens after drawing). */
void ui_draw_message(void);

/* Completion for prompts: replace buf's contents with a completion of it;
 * return the number of candidates (0: none). */
typedef int (*ui_complete_fn)(void *ctx, struct buf *text);

/* The line editor on the bottom line.  Returns 0 with *out (malloc'd),
 * or -1 when the user aborted (^G or Escape). */
int ui_prompt(const char *prompt, const char *initial, ui_complete_fn complete, void *ctx,
              char **out);

/* y/n question; returns 1, 0, or -1 when aborted.  def: the answer for
 * Enter (-1: none). */
int ui_yesno(const char *question, int def);

/* Show "Press any key to continue" after a child program, and wait. */
void ui_wait_key(void);

#endif
