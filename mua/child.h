/*
 * child: running the commands the configuration names (a password or token
 * command, the sendmail command, a delivery filter, a query command):
 * without a shell unless the command is given to /bin/sh explicitly, with
 * the input fed and the output collected up to a ceiling, killed after a
 * time without progress, and described for the user when it fails.
 */
#ifndef CORREO_CHILD_H
#define CORREO_CHILD_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

#define CHILD_SECRET_MAX 16384        /* bytes of a password or token */
#define CHILD_OUTPUT_MAX 4096         /* bytes of a command's stderr kept for errors */

struct child {
    const char *const *argv;  /* argv[0]: run as is when it has a '/', else from PATH */
    const char *input;        /* fed on stdin; NULL: stdin is /dev/null */
    size_t input_len;
    struct buf *out;          /* stdout up to its ceiling (the rest is read and dropped) */
    struct buf *errout;       /* stderr, likewise */
    int timeout_ms;           /* the command is killed after this long without progress */
    /* results */
    bool timed_out;
    int status;               /* exit status, or -1 when killed by a signal */
    int signal;               /* that signal, else 0 */
};

/* Run c->argv, feed the input, collect output until the command exits (or
 * has been silent for the timeout: then it is killed).  -1 only when it
 * could not be started; otherwise the outcome is in c. */
int child_run(struct child *c, struct err *e);

/* Describe a command that did not succeed: "<what> <how>: <output>" into
 * *e (ERR_IO, account scope; temporary for a timeout or EX_TEMPFAIL).
 * Always -1. */
int child_err(struct err *e, const char *what, const struct child *c, unsigned timeout_ms);

/* The first line `/bin/sh -c cmd` prints: a password or a token.  Its
 * output is never shown in an error. */
int child_secret(const char *what, const char *cmd, int timeout_ms, char **secret,
                 struct err *e);

/* Append text[0..len) for display: each line sanitized for the terminal,
 * lines joined with " | ", empty lines and trailing blanks dropped. */
void display_lines(struct buf *out, const char *text, size_t len);

#endif
