/*
 * view: what the index shows of a mailbox, without a terminal.
 *
 * Owns the display order of the messages of a store: sorted, or threaded
 * (JWZ, with collapsed threads), restricted by a limit pattern, plus the
 * cursor.  The UI draws view lines and turns keys into calls here; the unit
 * tests drive the same calls with no terminal at all.
 *
 * A view borrows its mailbox (for the store, and for headers and bodies when
 * a pattern needs them).  After the store changes (new mail, a sync that
 * removed messages) call view_rebuild(); the cursor stays on the same
 * message when it is still visible.
 */
#ifndef CORREO_VIEW_H
#define CORREO_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mailbox.h"
#include "pattern.h"
#include "sort.h"
#include "thread.h"

#define VIEW_NONE UINT32_MAX

struct view {
    struct mailbox *mb;              /* borrowed */
    struct sort_spec sort;           /* primary SORT_THREADS: threaded */
    struct thread_opts thread_opts;
    struct pattern *limit;           /* NULL: every message */
    char *limit_text;                /* as typed, for the status line */
    bool ascii_tree;

    struct thread_tree *tree;        /* threaded only */
    struct thread_line *lines;       /* what is shown, in order */
    size_t n_lines;
    uint32_t *line_of;               /* message -> line, VIEW_NONE if hidden */
    size_t n_msgs;                   /* messages in line_of */
    size_t cursor;                   /* line index; 0 when empty */
    int64_t now;                     /* for patterns; 0: the clock */
};

void view_init(struct view *v, struct mailbox *mb);
void view_free(struct view *v);

/* Recompute the order after a change of store, sort, limit or collapse. */
int view_rebuild(struct view *v, struct err *e);

/* Set or clear ("" or "~A": clear) the limit pattern and rebuild.  On a bad
 * pattern nothing changes. */
int view_set_limit(struct view *v, const char *text, struct err *e);

/* Change the sort and rebuild. */
int view_set_sort(struct view *v, const struct sort_spec *spec, struct err *e);

bool view_threaded(const struct view *v);

/* The message on a line / under the cursor; VIEW_NONE if the view is empty. */
uint32_t view_msg_at(const struct view *v, size_t line);
uint32_t view_current(const struct view *v);

/* Put the cursor on msg's line if it is shown.  Returns false otherwise. */
bool view_goto_msg(struct view *v, uint32_t msg);

/* Evaluate a compiled pattern against one message (headers and bodies are
 * read through the mailbox when the pattern needs them). */
bool view_match(struct view *v, const struct pattern *p, uint32_t msg);

/* Search from the line after (or before) the cursor, wrapping around, for
 * a line whose message matches p.  Returns the line or VIEW_NONE; *wrapped
 * (may be NULL) tells whether the search passed the end. */
size_t view_search(struct view *v, const struct pattern *p, bool backward, bool *wrapped);

/* Next / previous line (from the cursor, not wrapping) whose message has
 * all flags in want and none in unwanted.  VIEW_NONE if there is none. */
size_t view_find_flags(const struct view *v, bool backward, unsigned want, unsigned unwanted);

/* Collapse or expand the thread the cursor is in / every thread. */
int view_toggle_collapse(struct view *v, struct err *e);
int view_collapse_all(struct view *v, bool collapse, struct err *e);

/* Thread tree prefix of a line's message (UTF-8, drawn before the subject);
 * "" when not threaded. */
int view_tree_prefix(const struct view *v, size_t line, char *out, size_t size);

/* Messages of the thread (threaded) containing msg, or just msg, in display
 * order.  *out is malloc'd. */
size_t view_thread_members(const struct view *v, uint32_t msg, bool subthread, uint32_t **out);

/* The accessor table patterns use over a mailbox; ctx is the struct view. */
extern const struct pattern_msg_ops view_pattern_ops;

#endif
