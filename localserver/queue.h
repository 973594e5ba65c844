/*
 * queue: the durable outbound queue (and local retries).
 *
 * QUEUE_DIR/
 *   msg/ID      the spooled message: an envelope block, then the data
 *               (CRLF line ends, Received header already added).  Written
 *               to tmp/ID, fsynced, renamed into msg/, msg/ fsynced before
 *               queue_spool() returns: after that the message survives
 *               kill -9 and power loss.  Never rewritten.
 *   state/ID    per-recipient progress (pending, delivered, failed, the
 *               last reply), attempts and the next retry time; replaced
 *               atomically (tmp + fsync + rename) after every attempt, so a
 *               recipient recorded as delivered is never sent again.
 *   tmp/        scratch; stale files there are removed at start.
 *   corrupt/    entries that could not be parsed, kept for a human.
 *   lock        flock()ed by the one queue runner (and queue commands that
 *               change state).
 *
 * IDs are [0-9A-Z] only and never come from the envelope, which never
 * reaches a file name or a shell.
 */
#ifndef CORREOD_QUEUE_H
#define CORREOD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "smtp_proto.h"

#define QUEUE_ID_MAX 40

enum queue_rcpt_state { QRCPT_PENDING = 0, QRCPT_DELIVERED, QRCPT_FAILED };

struct queue_rcpt {
    char *addr;
    char *local_maildir;        /* non-NULL: a local retry into this Maildir */
    unsigned notify;            /* SMTP_NOTIFY_* */
    char *orcpt;
    enum queue_rcpt_state state;
    char *last_reply;           /* the last server reply or local error */
};

struct queue_entry {
    char id[QUEUE_ID_MAX];
    char *mail_from;            /* "" for <> */
    char *envid;
    int ret;                    /* SMTP_RET_* */
    bool smtputf8;
    int body;                   /* SMTP_BODY_* */
    char *auth_user;
    time_t created;
    time_t next_attempt;
    unsigned attempts;
    bool delay_notified;        /* a DELAY DSN was sent */
    struct queue_rcpt *rcpts;
    size_t n_rcpts;
    size_t data_size;
};

/* Create the directories if missing (mode 0700). */
int queue_init(const char *qdir, struct err *e);

/* Spool msg (CRLF data including our Received header) for rcpts.  Durable
 * when it returns 0; id gets the new ID. */
int queue_spool(const char *qdir, const struct smtp_envelope *env,
                const struct queue_rcpt *rcpts, size_t n_rcpts,
                const char *msg, size_t len, char id[QUEUE_ID_MAX], struct err *e);

/* Read an entry's envelope and state (not the data).  A malformed entry
 * is moved aside to QUEUE_DIR/corrupt/ (never deleted) and ERR_PARSE
 * returned; ERR_NOTFOUND when there is no such entry. */
int queue_load(const char *qdir, const char *id, struct queue_entry **out, struct err *e);
/* The data of an entry: fd positioned at the first byte of the message,
 * *len its size. */
int queue_open_data(const char *qdir, const char *id, int *fd, size_t *len, struct err *e);
/* Write the entry's state atomically. */
int queue_save_state(const char *qdir, const struct queue_entry *q, struct err *e);
/* Remove an entry whose recipients are all done (state first, then msg). */
int queue_remove(const char *qdir, const char *id, struct err *e);
void queue_entry_free(struct queue_entry *q);

/* IDs in the queue, oldest first. */
int queue_list(const char *qdir, char ***ids, size_t *n, struct err *e);

/* The exclusive runner lock (non-blocking: ERR_EXISTS when held).  The
 * holder then tidies up: tmp/ files of writers that are gone, state files
 * whose spool never completed, a message whose removal was interrupted.
 * Release by closing *fd. */
int queue_lock(const char *qdir, int *fd, struct err *e);

/* Test hook: called before each step of queue_spool and queue_save_state
 * with its name ("write", "fsync", "rename-state", "dirsync-state",
 * "rename-msg", "dirsync-msg"); returning -1 fails the step. */
extern int (*queue_step_hook)(const char *step);

#endif
