/*
 * rcfile: the one tokenizer for the rc syntax that correorc, keymaps,
 * themes and correod.conf share.
 *
 * A file is a sequence of commands, one per logical line or separated by
 * ';'.  A command is words separated by blanks:
 *
 *   'single quoted'   literal, no escapes
 *   "double quoted"   and unquoted: mutt's escapes \n \t \r \f, \e (ESC),
 *                     \Cx or \cx (control-x), \NNN (octal byte); any other
 *                     escaped character is itself ("\"", "\\", "\;", "\#",
 *                     "\ ", "\$")
 *   # comment         from a '#' that starts a word to the end of the line
 *   trailing \        joins the next line (also inside double quotes)
 *   $NAME ${NAME}     environment variables, expanded unquoted and inside
 *                     double quotes ("\$" is a literal dollar; an unset
 *                     variable expands to nothing)
 *   `cmd`             refused: configuration never runs commands
 *
 * `source FILE` is handled here: FILE is relative to the including file's
 * directory, "~/" is $HOME; nesting is limited and cycles are refused.
 *
 * Errors never stop loading: each one is recorded as "file:line: message"
 * in a struct rc_diag and the next command is read.  Only a top-level file
 * that cannot be read at all makes rcfile_load() fail.
 */
#ifndef CORREO_RCFILE_H
#define CORREO_RCFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define RC_LINE_MAX   (64 * 1024)   /* bytes in one logical line */
#define RC_WORDS_MAX  4096          /* words in one command */
#define RC_DEPTH_MAX  16            /* nested source */
#define RC_DIAG_MAX   1000          /* diagnostics kept per load */

struct rc_cmd {
    const char *file;     /* as given to the loader (or the source argument) */
    unsigned line;        /* first physical line of the command */
    char **argv;          /* argv[0] is the command name; NUL-terminated words */
    size_t argc;          /* >= 1 */
};

struct rc_diag {
    char **msgs;          /* "file:line: message" */
    size_t n;
    size_t dropped;       /* diagnostics beyond RC_DIAG_MAX */
};

/* Called once per command.  Return 0, or -1 with *e set: the loader records
 * "file:line: <e->text>" and goes on with the next command. */
typedef int (*rc_handler)(void *ctx, const struct rc_cmd *cmd, struct err *e);

struct rc_loader {
    rc_handler handler;
    void *ctx;
    struct rc_diag *diag;
    bool no_source;       /* refuse `source` (e.g. for keymaps/themes) */
    bool no_env;          /* do not expand $VARS */
    /* private */
    unsigned depth;
    char **stack;         /* real paths being loaded, for cycle detection */
};

void rc_loader_init(struct rc_loader *l, rc_handler handler, void *ctx,
                    struct rc_diag *diag);

/* Load path.  Returns -1 with *e only if path itself cannot be opened or
 * read; every problem inside (including nested sources) goes to diag. */
int rcfile_load(struct rc_loader *l, const char *path, struct err *e);

/* Load commands from memory (a ':' prompt, a -e option, a test); name is
 * used in diagnostics, and relative sources are taken from the current
 * directory. */
void rcfile_load_string(struct rc_loader *l, const char *name, const char *text, size_t len);

void rc_diag_init(struct rc_diag *d);
void rc_diag_free(struct rc_diag *d);
void rc_diag_add(struct rc_diag *d, const char *file, unsigned line, const char *fmt, ...)
    CORREO_PRINTF(4, 5);

/* Quote a word so that the tokenizer reads it back unchanged (for writing
 * config).  Returns an xmalloc'd string. */
char *rc_quote(const char *word);

#endif
