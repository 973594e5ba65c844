/*
 * mailcap: the ways a MIME part leaves the client.
 *
 *  - viewing through the user's mailcap files (RFC 1524): parsing, lookup
 *    by MIME type, test= commands, building and running the view command;
 *  - saving to a file without clobbering (mailcap_save_part);
 *  - piping to a command the user typed (mailcap_pipe_to_command);
 *  - and the one runner for external programs that the pager uses
 *    (mailcap_exec: argv, no shell, bytes on stdin, stdout captured,
 *    timeout), also used for the HTML filter.
 *
 * Trust.  Mailcap commands and the commands a user types are the user's
 * own shell commands and run through /bin/sh -c.  Message data never
 * reaches a shell command line unquoted:
 *
 *   %s        the path of a file WE create: a private directory made by
 *             mkdtemp (0700) under $TMPDIR (or /tmp) holding one file
 *             (0600, O_EXCL, O_NOFOLLOW) named by mailcap_safe_name(): only
 *             [A-Za-z0-9._-] of the attachment's name, never the raw name;
 *             the path is shell-quoted (single quotes when it holds any
 *             character outside [A-Za-z0-9._/+,:@-]).  File and directory
 *             are removed when the command has exited.  Without %s the part
 *             is fed on the command's stdin.
 *   %t        the MIME type, refused unless it is token/token (RFC 2045),
 *             then shell-quoted.
 *   %{name}   a Content-Type parameter (e.g. charset), refused unless it is
 *             at most 256 bytes of letters, digits and . _ - + : = @ , /
 *             and does not start with '-' (no option injection); then
 *             shell-quoted.  A missing parameter expands to ''.
 *   %n %F     (multipart forms) refused.
 *   \X        X itself (so "\%s" is a literal "%s" and "\;" a ';').
 *   Any other %X is kept as written.
 *
 * test= commands run without any message data: only %t may appear in them;
 * an entry whose test uses %s or %{...} is treated as failing.
 */
#ifndef CORREO_MAILCAP_H
#define CORREO_MAILCAP_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "rcfile.h"
#include "rfc2231.h"

#define MAILCAP_FILE_MAX (4u << 20)       /* bytes read from one mailcap file */
#define MAILCAP_ENTRIES_MAX 10000         /* entries kept over all files */
#define MAILCAP_TEST_TIMEOUT_MS 10000     /* a test= command is killed after this */
#define MAILCAP_VIEW_TIMEOUT_MS 30000     /* copiousoutput commands, by default */

struct mailcap_entry {
    char *type;            /* lower-case "type/subtype", or "type/" + "*" */
    char *command;         /* view command as written (backslashes kept) */
    char *test;            /* test= command as written, or NULL */
    char *nametemplate;    /* nametemplate= (unescaped), or NULL */
    char *description;     /* description= (unescaped), or NULL */
    bool needsterminal;    /* the UI must give the command the terminal */
    bool copiousoutput;    /* output is text for the pager */
    char *file;            /* where the entry was read */
    unsigned line;
};

struct mailcap {
    struct mailcap_entry *v;
    size_t n;
};

void mailcap_init(struct mailcap *mc);
void mailcap_free(struct mailcap *mc);

/* Append the entries of text[0..len) (a mailcap file's content; name is used
 * in diagnostics).  Malformed lines are skipped with a "name:line: ..."
 * diagnostic in diag (may be NULL). */
void mailcap_parse(struct mailcap *mc, const char *name, const char *text, size_t len,
                   struct rc_diag *diag);

/* Read and parse one file.  -1 with ERR_NOTFOUND if it does not exist,
 * ERR_IO if it cannot be read, ERR_LIMIT if larger than MAILCAP_FILE_MAX. */
int mailcap_load(struct mailcap *mc, const char *path, struct rc_diag *diag, struct err *e);

/* Load every file of a ':'-separated list in order ("~/" is $HOME), e.g.
 * "~/.mailcap:/etc/mailcap"; missing files are skipped, other failures go
 * to diag. */
void mailcap_load_path(struct mailcap *mc, const char *pathlist, struct rc_diag *diag);

enum mailcap_lookup_flags {
    MAILCAP_COPIOUS     = 1u << 0,   /* only entries with copiousoutput */
    MAILCAP_SKIP_TESTS  = 1u << 1,   /* run no test=: entries with one do not match */
    MAILCAP_ASSUME_TESTS = 1u << 2,  /* run no test=: entries with one match */
};

/* The first entry, in file order, whose type is mime_type or its wildcard
 * ("type/" + "*"; case-insensitive) and whose test= (if any) exits with 0.
 * NULL if none. */
const struct mailcap_entry *mailcap_lookup(const struct mailcap *mc, const char *mime_type,
                                           unsigned flags);

/* A part as the commands see it. */
struct mailcap_part {
    const char *data;       /* decoded content */
    size_t len;
    const char *type;       /* "type/subtype" */
    const char *filename;   /* the name the message suggests (untrusted), or NULL */
    const struct rfc2231_params *params;   /* Content-Type parameters, or NULL */
};

/* A file name safe for any shell and file system, from an untrusted
 * filename (NULL allowed): the last path component, only [A-Za-z0-9._-],
 * no leading '.' or '-', at most 64 bytes (the extension kept), "part" if
 * nothing is left; then nametemplate (NULL allowed, e.g. "%s.html") is
 * applied unless the name already ends with its suffix.  Free with free(). */
char *mailcap_safe_name(const char *filename, const char *nametemplate);

/* Append the shell-quoted form of s to out (unchanged when it only holds
 * [A-Za-z0-9._/+,:@-] and is not empty, else in single quotes). */
void mailcap_shell_quote(const char *s, struct buf *out);

/* Expand the % sequences of a mailcap command (see above) into out.  file
 * is the path for %s; NULL refuses %s.  *uses_file (may be NULL) is set when
 * %s occurred.  -1 with ERR_INVAL (refused value) or ERR_UNSUPPORTED. */
int mailcap_expand(const char *cmd, const struct mailcap_part *part, const char *file,
                   struct buf *out, bool *uses_file, struct err *e);

/* Run ent's view command for part through /bin/sh -c: writes the temp file
 * when the command has %s (else feeds the data on stdin), waits for the
 * command and removes the file.  For a copiousoutput entry with output
 * non-NULL, stdout is captured into output (its ceiling applies), stderr
 * goes to /dev/null and the command is killed after timeout_ms (0:
 * MAILCAP_VIEW_TIMEOUT_MS); otherwise the command inherits the terminal and
 * is waited for without a limit.  Returns -1 if it could not be run, timed
 * out, or exited with a status other than 0 (output keeps what was read). */
int mailcap_run(const struct mailcap_entry *ent, const struct mailcap_part *part,
                unsigned timeout_ms, struct buf *output, struct err *e);

/* Write data to path through a temporary file in the same directory and a
 * rename, so the file appears complete or not at all (mode 0600).  Without
 * overwrite an existing path is left alone: -1 with ERR_EXISTS. */
int mailcap_save_part(const char *path, const char *data, size_t len, bool overwrite,
                      struct err *e);

/* Run the user's command through /bin/sh -c with data on its stdin.  With
 * output non-NULL stdout is captured there, else it is inherited.  -1 if it
 * could not be run or exited with a status other than 0. */
int mailcap_pipe_to_command(const char *cmd, const char *data, size_t len, struct buf *output,
                            struct err *e);

/* ---- running programs ---------------------------------------------------- */

struct mailcap_exec {
    const char *input;      /* fed on stdin, then closed; NULL: stdin inherited
                               (or /dev/null when quiet) */
    size_t input_len;
    struct buf *output;     /* stdout captured here (its ceiling applies: the
                               program is killed, ERR_LIMIT); NULL: inherited
                               (or /dev/null when quiet) */
    bool quiet;             /* stderr to /dev/null (and stdin/stdout as above) */
    unsigned timeout_ms;    /* 0: no limit; otherwise the program and its
                               children (own process group) are killed */
    int status;             /* out: exit status, or 128 + signal number */
};

/* Run argv[0] (looked up in PATH; no shell) with argv, as described by x.
 * Returns 0 when the program ran and exited, whatever its status (see
 * x->status); -1 with ERR_NOTFOUND when there is no such program, ERR_LIMIT
 * on timeout or output ceiling, ERR_IO otherwise.  A program that exits
 * without reading all its input is not an error. */
int mailcap_exec(const char *const argv[], struct mailcap_exec *x, struct err *e);

#endif
