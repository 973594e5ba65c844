/*
 * deliver: turning an accepted message into durable copies.
 *
 * For each accepted message the SMTP session (or `correod sendmail`) makes
 * a deliver_job: the envelope, the data, and for each recipient where it
 * goes (a local Maildir or the outbound queue).  A deliverer runs jobs on a
 * few threads and commits them in groups: the files of every job waiting
 * are written, then all synced, then linked into new/, then each directory
 * touched is synced once, and only then are the jobs completed.  So the
 * 250 that follows completion always means "on disk" (design rule 1),
 * while twenty concurrent sessions share the cost of the fsyncs.
 *
 * Local copies get "Return-Path: <sender>", "Delivered-To: <rcpt>" and a
 * Received header (RFC 5321 4.4) in front of the data and are stored with
 * LF line ends, as Maildir readers expect.  Remote recipients go to the
 * queue in one spool file (queue.h) with the Received header added.  A
 * local recipient whose delivery fails is spooled too, for a retry by the
 * queue runner, so one full disk or broken Maildir does not fail the whole
 * message; only if nothing could be made durable is the job a temporary
 * failure (451 4.3.0).
 *
 * Completion is reported on the owner's thread: the deliverer's fd becomes
 * readable, and deliverer_reap() runs the callbacks of finished jobs.
 */
#ifndef CORREOD_DELIVER_H
#define CORREOD_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "smtp_proto.h"

struct deliver_rcpt {
    char *addr;            /* envelope recipient, as given */
    char *maildir;         /* local: the user's Maildir root (INBOX); NULL: queue */
    char *orig;            /* address the client gave when addr came from an alias, or NULL */
};

struct deliver_job {
    /* input, owned by the job */
    struct smtp_envelope *env;   /* mail_from, DSN parameters, helo, tls, auth */
    struct buf *msg;             /* data as received: CRLF line ends */
    struct deliver_rcpt *rcpts;
    size_t n_rcpts;
    const char *hostname;        /* ours, for Received (not owned) */
    const char *queue_dir;       /* not owned */
    time_t received_at;

    /* output */
    int code;                    /* 250, or 451/452/554 */
    char enhanced[16];           /* "2.0.0" */
    char text[256];              /* "OK id=..." or what failed */
    char queue_id[64];           /* spool id if anything was queued, else "" */

    /* completion, on the owner's thread */
    void (*done)(void *ctx, struct deliver_job *job);
    void *ctx;
};

/* Make the three trace headers for a local copy (LF line ends). */
int deliver_trace_headers(struct buf *out, const struct smtp_envelope *env,
                          const char *rcpt, const char *hostname, time_t when,
                          struct err *e);
/* Only the Received header (CRLF line ends), for spooled copies. */
int deliver_received_header(struct buf *out, const struct smtp_envelope *env,
                            const char *rcpt, const char *hostname, time_t when,
                            struct err *e);

struct deliverer;

int deliverer_new(unsigned threads, struct deliverer **out, struct err *e);
/* Stops accepting, finishes the jobs submitted, joins the threads; jobs
 * finished but not reaped are reaped (callbacks run) before it returns. */
void deliverer_free(struct deliverer *d);

/* Thread-safe; takes ownership of job until its done callback, which is
 * called from deliverer_reap() and must free the job (deliver_job_free). */
void deliverer_submit(struct deliverer *d, struct deliver_job *job);
/* Readable when finished jobs are waiting (eventfd or pipe). */
int deliverer_fd(const struct deliverer *d);
void deliverer_reap(struct deliverer *d);

/* Run one job to completion on the calling thread (sendmail, tests). */
void deliver_run_sync(struct deliver_job *job);

void deliver_job_free(struct deliver_job *job);

/* Test hook: called before every step of a delivery with the step's name
 * ("write", "fsync", "link", "dirsync", "spool"); returning -1 fails it. */
extern int (*deliver_step_hook)(const char *step);

#endif
