/*
 * fetch: `correo fetch` -- downloading POP3 accounts into a Maildir folder,
 * never losing and never duplicating a message.
 *
 * Owns the pop:// and pops:// account settings (parsed from the generic
 * `account` command of the configuration), the per-account state file, the
 * download protocol and the report.
 *
 * State.  Per account, server, port and user, a file under
 * $XDG_STATE_HOME/correo/pop/ (default ~/.local/state/correo/pop/) named by
 * a SHA-256 of those four, never by anything the server sends.  It is a
 * journal of text lines, the last line for a UIDL winning:
 *     correo-pop-state 1                      first line
 *     S UIDL FIRST_SEEN                        seen, no local copy
 *     P UIDL FIRST_SEEN NAME                   being delivered as NAME
 *     D UIDL FIRST_SEEN NAME                   delivered (NAME "-": by the filter)
 *     X UIDL                                   deleted on the server
 * FIRST_SEEN is a time_t.  A run holds an exclusive flock on a ".lock" file
 * beside it for its whole length; a second run finds it locked.  At the
 * start of a run the journal is read, pending entries are resolved
 * (recovery, below) and it is rewritten compactly (new file, fsync, rename,
 * directory fsync).
 *
 * Exactly once (design rule 1).  For a batch of new messages: "P" lines are
 * made durable first; each message is written into tmp/NAME of the folder;
 * the files are made durable (one syncfs() for the batch, else an fsync of
 * each); each is linked into
 * new/NAME; new/ is fsync'ed once; "D" lines are made durable; only then may
 * a DELE be sent for any of them, and deletions happen at QUIT.  Recovery:
 * a "P" entry whose NAME is in new/ or cur/ (base name: flags may have
 * changed since) is done; otherwise it is dropped and the message is
 * downloaded again.  With a filter, the filter's exit status 0 is the
 * durable point ("P" entries of a filter are downloaded again: a crash
 * between the filter's success and the "D" line can deliver twice, never
 * zero times).
 *
 * Servers without UIDL: messages are identified by a SHA-256 of their TOP
 * n 0 header and their size ("hdr-" and 60 hex digits, "-N" for the Nth
 * message with the same header and size); the run says so
 * once.
 *
 * notmuch.  After the accounts of a run, the mail they delivered is made
 * known to notmuch as each account says (key notmuch): `new` runs the
 * command `notmuch new` once when such an account delivered something;
 * `index` (a correo built with libnotmuch) adds exactly the files delivered
 * into new/ to the database of the notmuch configuration, opened once for
 * the run.  Either happens after the messages are durable and recorded: a
 * failure is reported and makes the run fail, but never undoes, repeats or
 * holds back a delivery or a deletion on the server.
 */
#ifndef CORREO_FETCH_H
#define CORREO_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "err.h"
#include "maildir.h"
#include "pop3.h"

/* Exit statuses of `correo fetch`. */
#define FETCH_OK 0
#define FETCH_FAILED 1      /* some account failed */
#define FETCH_USAGE 2
#define FETCH_LOCKED 75     /* another run holds an account's lock */

enum fetch_notmuch {
    FETCH_NOTMUCH_NO = 0,   /* leave notmuch alone */
    FETCH_NOTMUCH_NEW,      /* run `notmuch new` after a run that delivered */
    FETCH_NOTMUCH_INDEX,    /* index the delivered files through libnotmuch */
};

enum fetch_keep {
    FETCH_KEEP_YES = 0,     /* leave on the server */
    FETCH_KEEP_NO,          /* delete once the local copy is durable */
    FETCH_KEEP_DAYS,        /* delete once first seen keep_seconds ago */
};

/* A pop:// or pops:// account, parsed and checked. */
struct fetch_account {
    char *name;
    enum pop3_security security;
    char *host;
    unsigned port;
    char *user;
    char *url_pass;           /* a password in the URL, or NULL */
    char *folder;             /* mutt path syntax; NULL: $spoolfile, else $folder */
    enum fetch_keep keep;
    long keep_seconds;
    char *pass, *pass_cmd;    /* NULL when not set */
    char *tls_fingerprint, *tls_ca_file, *filter;
    uint64_t max_size;        /* 0: no limit */
    int timeout_ms;           /* 0: default */
    enum fetch_notmuch notmuch;
};

/* Whether url is an account this module handles (pop:// or pops://). */
bool fetch_is_pop_url(const char *url);

/* Parse a configured account: URL pop://user@host[:port]/ or pops://...,
 * keys folder, keep, pass, pass_cmd, tls, tls_fingerprint, tls_ca_file,
 * filter, max_size, timeout, notmuch.  Unknown keys and bad values are
 * ERR_PARSE naming them; so are notmuch=index in a correo built without
 * notmuch and notmuch=index with a filter (whose deliveries are not known).
 * Free with fetch_account_free. */
int fetch_account_parse(const struct config_account *ca, struct fetch_account *out,
                        struct err *e);
void fetch_account_free(struct fetch_account *a);

/* ---- the state file ------------------------------------------------------- */

enum fetch_entry_state {
    FETCH_SEEN = 'S',
    FETCH_PENDING = 'P',
    FETCH_DONE = 'D',
};

struct fetch_entry {
    char *uidl;
    time_t first_seen;
    enum fetch_entry_state state;
    char *name;               /* P and D: the local name ("-": the filter) */
};

struct fetch_state;

/* "<dir>/<hex>.state" for the account (dir: $XDG_STATE_HOME/correo/pop). */
char *fetch_state_path(const char *dir, const struct fetch_account *a);
/* $XDG_STATE_HOME/correo/pop, or ~/.local/state/correo/pop.  NULL when
 * neither is set. */
char *fetch_state_dir(void);

/* Lock (PATH.lock, flock without waiting: ERR_EXISTS with temporary set
 * when another run holds it) and read the journal (missing: empty).  A
 * torn last line (a crash in the middle of a write) is dropped; any other
 * malformed line is ERR_PARSE naming file:line. */
int fetch_state_open(const char *path, struct fetch_state **out, struct err *e);
/* Unlock and free (without writing: call fetch_state_sync first). */
void fetch_state_close(struct fetch_state *s);

const struct fetch_entry *fetch_state_get(const struct fetch_state *s, const char *uidl);
size_t fetch_state_count(const struct fetch_state *s);
/* Change or add an entry (name NULL for S); appended to the journal by
 * the next fetch_state_sync. */
void fetch_state_set(struct fetch_state *s, const char *uidl, enum fetch_entry_state st,
                     time_t first_seen, const char *name);
/* Mark deleted: the entry goes. */
void fetch_state_drop(struct fetch_state *s, const char *uidl);
/* Append what changed and fdatasync. */
int fetch_state_sync(struct fetch_state *s, struct err *e);
/* Resolve pending entries against folder f (see the top); *done_out and
 * *dropped_out (may be NULL) count them.  Pending filter entries are
 * dropped. */
int fetch_state_recover(struct fetch_state *s, const struct maildir_folder *f,
                        size_t *done_out, size_t *dropped_out, struct err *e);
/* Rewrite the journal with one line per entry (atomically), dropping the
 * entries for which keep returns false (keep NULL: keep all). */
int fetch_state_compact(struct fetch_state *s, bool (*keep)(void *ctx, const char *uidl),
                        void *ctx, struct err *e);

/* ---- running ------------------------------------------------------------- */

/* How a run talks: say() gets the report lines (error: a problem), and
 * progress() (may be NULL) a status text for a long download, at most a few
 * times a second; "" when it is done. */
struct fetch_ui {
    void (*say)(void *ctx, bool error, const char *text);
    void (*progress)(void *ctx, const char *text);
    void *ctx;
};

/* Fetch the named accounts (names NULL / n 0: every pop account), then do
 * what their notmuch keys say for what they delivered.  Returns FETCH_OK,
 * FETCH_FAILED (some account failed, or notmuch did not take what was
 * delivered), FETCH_USAGE (an unknown name), FETCH_LOCKED (some account
 * was locked and nothing else failed).
 * *n_new (may be NULL) gets the number of messages delivered. */
int fetch_run(const struct config *cfg, const char *const *names, size_t n,
              const struct fetch_ui *ui, size_t *n_new);

/* ---- notmuch ------------------------------------------------------------- */

/* How long `notmuch new` may run without printing anything. */
#define FETCH_NOTMUCH_NEW_TIMEOUT_MS (60 * 60 * 1000)

/* Run `notmuch new --quiet` (notmuch from PATH, no shell, stdin
 * /dev/null, the environment as it is: $NOTMUCH_CONFIG applies).  0 when
 * it exited 0; else -1 with what happened (exit status, signal, timeout or
 * not found) and the start of its stderr in *e. */
int fetch_notmuch_new(int timeout_ms, struct err *e);

/* Add the message files paths[0..n) (absolute) to the database of the
 * notmuch configuration ($NOTMUCH_CONFIG, else notmuch's default), opened
 * read-write once and closed.  A message new to the database gets the
 * configuration's new.tags (with maildir.synchronize_flags, first the tags
 * of its Maildir flags, as `notmuch new` does); a file or message already
 * indexed is left as it is.  Every file is tried; *n_indexed (may be NULL)
 * counts those that are in the database now.  -1 when the database could
 * not be opened or closed, or some file could not be indexed (the first
 * problem and the count in *e).  Without notmuch: ERR_UNSUPPORTED. */
int fetch_notmuch_index(const char *const *paths, size_t n, size_t *n_indexed, struct err *e);

#endif
