/*
 * editor: running the user's editor on a draft, and keeping what was
 * written safe until it is sent or postponed.
 *
 * Every message being written lives in a file of its own under
 * $XDG_STATE_HOME/correo/drafts (default ~/.local/state/correo/drafts,
 * mode 0700): the editor writes there, and the file is removed only after
 * the message was sent or stored in the postponed folder.  If correo dies
 * in between, the file survives and editor_orphans() finds it at the next
 * start.
 */
#ifndef CORREO_EDITOR_H
#define CORREO_EDITOR_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "err.h"

/* The drafts directory, created if needed (xmalloc'd path in *out). */
int editor_drafts_dir(char **out, struct err *e);

/* A new draft file holding text (0600, durable): *path is xmalloc'd. */
int editor_draft_create(const char *text, size_t len, char **path, struct err *e);

/* Replace the contents of a draft file durably (temp file + rename). */
int editor_draft_write(const char *path, const char *text, size_t len, struct err *e);

/* Read a draft file (at most 64 MiB). */
int editor_draft_read(const char *path, struct buf *out, struct err *e);

/* Run the editor ($editor, $VISUAL, $EDITOR, vi) on path, with the
 * terminal (the caller suspends its screen).  The path is ours and is
 * shell-quoted.  A non-zero exit status is an error. */
int editor_run(const struct config *cfg, const char *path, struct err *e);

/* Draft files left by an earlier run (xmalloc'd paths, oldest first). */
size_t editor_orphans(char ***paths);

#endif
