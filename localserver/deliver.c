/*
 * deliver: accepted messages to durable Maildir copies and spool files,
 * committed in groups on a few threads.
 *
 * A batch (one job for deliver_run_sync(), up to DELIVER_BATCH_MAX on a
 * deliverer thread) goes through the steps of deliver.h in order for all
 * its files at once: write each local copy to tmp/ (trace headers + data
 * with LF ends; a missing Maildir is created), fsync each, link each into
 * new/ as "<unique>,S=<size>", fsync each distinct new/ once.  A copy whose
 * step fails is taken back (unlinked from new/ when the directory sync
 * failed) and its recipient is spooled with the remote ones: one
 * queue_spool() per job, the Received header in front of the CRLF data.
 * Recipients sharing a Maildir get one copy.  The result is 250 only when
 * every recipient is durable; when some are and some are not it is 451 too
 * (a client retry may duplicate, a 250 would lose).  Failure texts name the
 * recipient, not the server's paths: they go back to the client.
 *
 * Success reports (RFC 3461 NOTIFY=SUCCESS): once a recipient's local copy
 * is durable, a "delivered" DSN (dsn.h) for the envelope sender -- local or
 * remote, never the null sender -- is spooled from MAILER-DAEMON with the
 * null sender, one report per job naming each such envelope recipient
 * once, before the job completes.  The report is a courtesy: when it
 * cannot be spooled the delivery still stands (logged, not a 451 that
 * would make the client send the message again).  Recipients spooled for a
 * retry are reported by the queue runner when it delivers them.
 *
 * deliver_run_sync() leaves the job with its caller (done is not called).
 * deliver_job_free() frees env (smtp_envelope_free), msg (a struct buf from
 * xmalloc, and its data), each recipient's strings, rcpts and the job.
 * deliver_received_header() with rcpt NULL leaves out the FOR clause.
 *
 * Locking.  A deliverer has one mutex that guards exactly three things: the
 * list of submitted jobs (pending), the list of finished jobs (done) and
 * the stopping flag.  A worker thread takes up to DELIVER_BATCH_MAX jobs
 * from pending under the mutex and from then on is their only user: the
 * jobs and every file and buffer of the batch are touched by that thread
 * alone, without locks.  When the batch is complete the thread appends the
 * jobs to done under the mutex and writes the eventfd; it never looks at
 * them again.  The owner takes them from done under the same mutex in
 * deliverer_reap(), so everything the thread wrote into a job happens
 * before the owner reads it.  Unique file names come from lib/maildir's
 * atomic counter; the job id counter here is atomic too.  deliver_step_hook
 * is read, never written, by the threads.
 */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "dsn.h"
#include "log.h"
#include "maildir.h"
#include "queue.h"
#include "sanitize.h"

/* Jobs one thread commits together. */
#define DELIVER_BATCH_MAX 64
/* Files of a batch open at the same time. */
#define DELIVER_OPEN_MAX 128
/* Attempts at a fresh unique name after EEXIST. */
#define DELIVER_NAME_RETRIES 8
/* Longest line RFC 5322 recommends. */
#define DELIVER_LINE_MAX 78
/* Parts of the Received header are shortened to this so it folds within
 * DELIVER_LINE_MAX; Return-Path and Delivered-To keep up to
 * DELIVER_ADDR_MAX bytes (RFC 5322's hard limit is 998). */
#define DELIVER_TOKEN_MAX 60
#define DELIVER_ADDR_MAX 900
/* Depth of directories created for a missing Maildir. */
#define DELIVER_MKDIR_DEPTH 32

int (*deliver_step_hook)(const char *step) = NULL;

/* 0 to go on with the step; -1 with errno EIO when the hook fails it. */
static int step(const char *name)
{
    if (deliver_step_hook != NULL && deliver_step_hook(name) != 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* ---- trace headers -------------------------------------------------------- */

/* How put_clean() treats bytes. */
enum clean_mode {
    CLEAN_ATOM = 0,      /* printable ASCII without space */
    CLEAN_ADDR,          /* printable ASCII with space */
    CLEAN_ADDR_UTF8,     /* the same plus well-formed UTF-8 (RFC 6532) */
};

/* Characters that are valid UTF-8 but have no place in a trace header:
 * C1 controls, line and paragraph separators, bidi controls. */
static bool bad_code_point(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0xfeff;
}

/* Append s with everything else replaced by '?', at most max bytes; a
 * longer value is cut (never inside a UTF-8 sequence) and ends in "...".
 * Nothing a client sends can end the line or start another field. */
static void put_clean(struct buf *out, const char *s, size_t max, enum clean_mode mode)
{
    size_t n = strlen(s), o = 0, i = 0;
    char *p = buf_reserve(out, (n < max ? n : max) + 3);

    if (p == NULL)
        die("deliver: unbounded buffer refused an append");
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = 1;
        bool keep;

        if (c >= 0x80 && mode == CLEAN_ADDR_UTF8) {
            uint32_t cp;
            int r = sanitize_utf8_next(s + i, n - i, &cp);

            len = r > 0 ? (size_t)r : (size_t)-r;
            keep = r > 0 && !bad_code_point(cp);
        } else {
            keep = (c > 0x20 && c < 0x7f) || (c == 0x20 && mode != CLEAN_ATOM);
        }
        if (o + (keep ? len : 1) > max || (n > max && o + (keep ? len : 1) > max - 3)) {
            memcpy(p + o, "...", 3);
            o += 3;
            break;
        }
        if (keep) {
            memcpy(p + o, s + i, len);
            o += len;
        } else {
            p[o++] = '?';
        }
        i += len;
    }
    buf_commit(out, o);
}

static void put(struct buf *out, const char *s)
{
    if (buf_puts(out, s) != 0)
        die("deliver: unbounded buffer refused an append");
}

/* Addresses keep UTF-8 only in a message sent with SMTPUTF8. */
static enum clean_mode addr_mode(const struct smtp_envelope *env)
{
    return env->smtputf8 ? CLEAN_ADDR_UTF8 : CLEAN_ADDR;
}

/* "Mon, 23 Nov 2026 17:37:40 +0100" (RFC 5322 3.3), in local time, without
 * the locale. */
static void rfc5322_date(time_t when, char out[64])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    long off;
    char sign = '+';

    if (localtime_r(&when, &tm) == NULL) {
        when = 0;
        gmtime_r(&when, &tm);
        tm.tm_gmtoff = 0;
    }
    off = tm.tm_gmtoff / 60;
    if (off < 0) {
        sign = '-';
        off = -off;
    }
    snprintf(out, 64, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, sign, off / 60, off % 60);
}

/* The WITH value: "local" for a message that did not come over SMTP
 * (sendmail: no HELO, no peer), else RFC 3848/6531's name. */
static const char *with_protocol(const struct smtp_envelope *env)
{
    if (env->helo == NULL && env->peer_addr == NULL)
        return "local";
    return smtp_envelope_protocol(env);
}

/* Folds the tokens of a header field: a token that would pass
 * DELIVER_LINE_MAX starts a continuation line. */
struct folder {
    struct buf *out;
    const char *eol;
    size_t col;
    bool started;             /* a token is on the current line */
};

static void fold_token(struct folder *f, const struct buf *tok)
{
    if (f->started && f->col + 1 + tok->len > DELIVER_LINE_MAX) {
        put(f->out, f->eol);
        put(f->out, "\t");
        f->col = 1;
    } else {
        put(f->out, " ");
        f->col++;
    }
    if (buf_append(f->out, tok->data, tok->len) != 0)
        die("deliver: unbounded buffer refused an append");
    f->col += tok->len;
    f->started = true;
}

/*
 * Received: from HELO (PEER) by HOST with PROTO (correod) id ID
 *         for <RCPT>; DATE
 * rcpt NULL leaves out the FOR clause (a copy for several recipients),
 * id NULL the ID clause.
 */
static void received(struct buf *out, const struct smtp_envelope *env, const char *rcpt,
                     const char *hostname, const char *id, time_t when, const char *eol)
{
    struct folder f = {out, eol, 9, false};
    struct buf tok = BUF_INIT;
    char date[64];

    put(out, "Received:");
    if (env->helo != NULL || env->peer_addr != NULL) {
        put(&tok, "from ");
        put_clean(&tok, env->helo != NULL ? env->helo : "unknown", DELIVER_TOKEN_MAX,
                  CLEAN_ATOM);
        fold_token(&f, &tok);
        if (env->peer_addr != NULL) {
            buf_reset(&tok);
            put(&tok, "(");
            put_clean(&tok, env->peer_addr, DELIVER_TOKEN_MAX, CLEAN_ATOM);
            put(&tok, ")");
            fold_token(&f, &tok);
        }
    }
    buf_reset(&tok);
    put(&tok, "by ");
    put_clean(&tok, hostname != NULL && hostname[0] != '\0' ? hostname : "localhost",
              DELIVER_TOKEN_MAX, CLEAN_ATOM);
    fold_token(&f, &tok);
    buf_reset(&tok);
    put(&tok, "with ");
    put_clean(&tok, with_protocol(env), DELIVER_TOKEN_MAX, CLEAN_ATOM);
    fold_token(&f, &tok);
    buf_reset(&tok);
    put(&tok, "(correod)");
    if (id == NULL && rcpt == NULL)
        put(&tok, ";");
    fold_token(&f, &tok);
    if (id != NULL) {
        buf_reset(&tok);
        put(&tok, "id ");
        put_clean(&tok, id, DELIVER_TOKEN_MAX, CLEAN_ATOM);
        if (rcpt == NULL)
            put(&tok, ";");
        fold_token(&f, &tok);
    }
    if (rcpt != NULL) {
        buf_reset(&tok);
        put(&tok, "for <");
        put_clean(&tok, rcpt, DELIVER_TOKEN_MAX, addr_mode(env));
        put(&tok, ">;");
        fold_token(&f, &tok);
    }
    buf_reset(&tok);
    rfc5322_date(when, date);
    put(&tok, date);
    fold_token(&f, &tok);
    put(out, eol);
    buf_free(&tok);
}

static void trace_headers(struct buf *out, const struct smtp_envelope *env, const char *rcpt,
                          const char *hostname, const char *id, time_t when)
{
    put(out, "Return-Path: <");
    put_clean(out, env->mail_from != NULL ? env->mail_from : "", DELIVER_ADDR_MAX,
              addr_mode(env));
    put(out, ">\nDelivered-To: ");
    put_clean(out, rcpt, DELIVER_ADDR_MAX, addr_mode(env));
    put(out, "\n");
    received(out, env, rcpt, hostname, id, when, "\n");
}

static int append_out(struct buf *out, const struct buf *tmp, struct err *e)
{
    if (buf_append(out, tmp->data, tmp->len) != 0)
        return err_set(e, ERR_LIMIT, "trace headers do not fit the buffer");
    return 0;
}

int deliver_trace_headers(struct buf *out, const struct smtp_envelope *env,
                          const char *rcpt, const char *hostname, time_t when,
                          struct err *e)
{
    struct buf tmp = BUF_INIT;
    int rc;

    if (env == NULL || rcpt == NULL)
        return err_set(e, ERR_INVAL, "no envelope or recipient for the trace headers");
    trace_headers(&tmp, env, rcpt, hostname, NULL, when);
    rc = append_out(out, &tmp, e);
    buf_free(&tmp);
    return rc;
}

int deliver_received_header(struct buf *out, const struct smtp_envelope *env,
                            const char *rcpt, const char *hostname, time_t when,
                            struct err *e)
{
    struct buf tmp = BUF_INIT;
    int rc;

    if (env == NULL)
        return err_set(e, ERR_INVAL, "no envelope for the Received header");
    received(&tmp, env, rcpt, hostname, NULL, when, "\r\n");
    rc = append_out(out, &tmp, e);
    buf_free(&tmp);
    return rc;
}

/* ---- one batch of jobs ---------------------------------------------------- */

static atomic_ulong job_counter;

/* [0-9A-F] only: seconds, microseconds, pid, a counter. */
static void make_id(char out[40])
{
    struct timeval tv;
    unsigned long n = atomic_fetch_add(&job_counter, 1) + 1;

    gettimeofday(&tv, NULL);
    snprintf(out, 40, "%llX%05lX%lX%04lX", (long long)tv.tv_sec, (long)tv.tv_usec,
             (unsigned long)getpid(), n & 0xffffUL);
}

enum copy_state {
    COPY_NEW = 0,     /* nothing on disk yet */
    COPY_WRITTEN,     /* tmp/ file written, fd open */
    COPY_SYNCED,      /* tmp/ file fsynced and closed */
    COPY_LINKED,      /* in new/, directory not yet synced */
    COPY_DURABLE,     /* in new/, directory synced */
    COPY_FAILED,
};

/* One file: a local recipient's copy of a job. */
struct copy {
    struct job_run *run;
    size_t rcpt;              /* index in run->job->rcpts */
    char *root;               /* the Maildir */
    char *new_dir;            /* root/new */
    char *tmp_path;           /* NULL until created */
    char *final_path;         /* NULL until linked */
    int fd;
    bool tmp_exists;
    enum copy_state state;
};

/* What a batch knows about one of its jobs. */
struct job_run {
    struct deliver_job *job;
    char id[40];
    struct buf lf;            /* the data with LF line ends (local copies) */
    bool *durable;            /* per recipient */
    char **why;               /* per recipient: why it failed, or NULL */
    size_t *same_as;          /* per local recipient: the first one with the same
                                 Maildir (SIZE_MAX: itself) */
};

struct batch {
    struct job_run *runs;
    size_t n_runs;
    struct copy *copies;
    size_t n_copies;
};

static void set_why(struct job_run *r, size_t i, const char *text)
{
    if (r->why[i] == NULL)
        r->why[i] = xstrdup(text);
}

/* The reason names the recipient, not the file: it may reach the client. */
static void copy_fail(struct copy *c, const struct err *e)
{
    struct buf b = BUF_INIT;

    c->state = COPY_FAILED;
    put(&b, "<");
    put_clean(&b, c->run->job->rcpts[c->rcpt].addr, DELIVER_TOKEN_MAX, CLEAN_ATOM);
    put(&b, ">: ");
    put(&b, e->text);
    set_why(c->run, c->rcpt, buf_cstr(&b));
    buf_free(&b);
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc, saved;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* mkdir -p: each directory created gets its parent fsynced, so a Maildir
 * made for a first delivery is as durable as the message put in it. */
static int mkdir_p(const char *path, struct err *e)
{
    char *p = xstrdup(path);
    size_t len = strlen(p);
    int depth = 0;

    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        if (++depth > DELIVER_MKDIR_DEPTH) {
            free(p);
            return err_set(e, ERR_LIMIT, "cannot create the Maildir: too deep");
        }
        p[i] = '\0';
        if (mkdir(p, 0700) == 0) {
            char *slash = strrchr(p, '/');

            if (slash != NULL) {
                *slash = '\0';
                if (fsync_path(slash == p ? "/" : p) != 0) {
                    err_sys(e, "cannot create the Maildir");
                    free(p);
                    return -1;
                }
                *slash = '/';
            }
        } else if (errno != EEXIST) {
            err_sys(e, "cannot create the Maildir");
            free(p);
            return -1;
        }
        if (i < len)
            p[i] = '/';
    }
    free(p);
    return 0;
}

/* The Maildir's cur/ new/ tmp/ exist (created when missing). */
static int ensure_maildir(const char *root, struct err *e)
{
    static const char *const subs[] = {"tmp", "new", "cur"};
    struct stat st;

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s/%s", root, subs[i]);
        int rc = 0;

        if (stat(p, &st) != 0) {
            if (errno == ENOENT)
                rc = mkdir_p(p, e);
            else
                rc = err_sys(e, "cannot use the Maildir");
        } else if (!S_ISDIR(st.st_mode)) {
            rc = err_set(e, ERR_INVAL, "the Maildir is broken (%s is not a directory)", subs[i]);
        }
        free(p);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Create tmp/<unique> and write the trace headers and the LF data. */
static void copy_write(struct copy *c, const char *hostname)
{
    struct deliver_job *job = c->run->job;
    struct buf head = BUF_INIT;
    struct err e;

    err_clear(&e);
    if (step("write") != 0) {
        err_sys(&e, "cannot write the message");
        copy_fail(c, &e);
        return;
    }
    if (ensure_maildir(c->root, &e) != 0) {
        copy_fail(c, &e);
        return;
    }
    for (int attempt = 0;; attempt++) {
        char *uniq = maildir_unique_name();

        c->tmp_path = xasprintf("%s/tmp/%s", c->root, uniq);
        free(uniq);
        c->fd = open(c->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (c->fd >= 0)
            break;
        if (errno != EEXIST || attempt == DELIVER_NAME_RETRIES) {
            err_sys(&e, "cannot create a file in tmp/");
            copy_fail(c, &e);
            return;
        }
        free(c->tmp_path);
        c->tmp_path = NULL;
    }
    c->tmp_exists = true;
    trace_headers(&head, job->env, job->rcpts[c->rcpt].addr, hostname, c->run->id,
                  job->received_at);
    if (write_all(c->fd, head.data, head.len) != 0 ||
        write_all(c->fd, c->run->lf.data != NULL ? c->run->lf.data : "", c->run->lf.len) != 0) {
        err_sys(&e, "cannot write the message");
        buf_free(&head);
        copy_fail(c, &e);
        return;
    }
    buf_free(&head);
    c->state = COPY_WRITTEN;
}

static void copy_sync(struct copy *c)
{
    struct err e;

    err_clear(&e);
    if (step("fsync") != 0 || fsync(c->fd) != 0) {
        err_sys(&e, "cannot sync the message");
        copy_fail(c, &e);
        return;
    }
    if (close(c->fd) != 0) {
        c->fd = -1;
        err_sys(&e, "cannot write the message");
        copy_fail(c, &e);
        return;
    }
    c->fd = -1;
    c->state = COPY_SYNCED;
}

/* Link tmp/<name> to new/<name>,S=<size>; where hard links are not
 * possible, rename without replacing. */
static void copy_link(struct copy *c)
{
    struct stat st;
    struct err e;

    err_clear(&e);
    if (stat(c->tmp_path, &st) != 0) {
        err_sys(&e, "cannot stat the message");
        copy_fail(c, &e);
        return;
    }
    for (int attempt = 0;; attempt++) {
        const char *base = strrchr(c->tmp_path, '/') + 1;
        char *uniq = attempt == 0 ? xstrdup(base) : maildir_unique_name();
        int rc;

        c->final_path = xasprintf("%s/%s,S=%lld", c->new_dir, uniq, (long long)st.st_size);
        free(uniq);
        rc = step("link");
        if (rc == 0) {
            rc = link(c->tmp_path, c->final_path);
            if (rc != 0 && (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS ||
                            errno == EMLINK)) {
                rc = renameat2(AT_FDCWD, c->tmp_path, AT_FDCWD, c->final_path,
                               RENAME_NOREPLACE);
                if (rc == 0)
                    c->tmp_exists = false;
            }
        }
        if (rc == 0)
            break;
        if (errno != EEXIST || attempt == DELIVER_NAME_RETRIES) {
            err_sys(&e, "cannot link into new/");
            free(c->final_path);
            c->final_path = NULL;
            copy_fail(c, &e);
            return;
        }
        free(c->final_path);
        c->final_path = NULL;
    }
    c->state = COPY_LINKED;
}

static int cmp_copy_dir(const void *a, const void *b)
{
    const struct copy *ca = *(const struct copy *const *)a;
    const struct copy *cb = *(const struct copy *const *)b;

    return strcmp(ca->new_dir, cb->new_dir);
}

/* fsync each new/ directory holding linked copies once.  A directory whose
 * sync fails takes its copies back: the recipients are retried by spooling
 * (at worst a duplicate after a crash, never a loss). */
static void sync_dirs(struct batch *b)
{
    struct copy **linked = XNEWARRAY(struct copy *, b->n_copies + 1);
    size_t n = 0;

    for (size_t i = 0; i < b->n_copies; i++)
        if (b->copies[i].state == COPY_LINKED)
            linked[n++] = &b->copies[i];
    qsort(linked, n, sizeof(*linked), cmp_copy_dir);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        struct err e;
        bool ok;

        while (j < n && strcmp(linked[j]->new_dir, linked[i]->new_dir) == 0)
            j++;
        err_clear(&e);
        ok = step("dirsync") == 0 && fsync_path(linked[i]->new_dir) == 0;
        if (!ok)
            err_sys(&e, "cannot sync new/");
        for (size_t k = i; k < j; k++) {
            if (ok) {
                linked[k]->state = COPY_DURABLE;
            } else {
                unlink(linked[k]->final_path);
                copy_fail(linked[k], &e);
            }
        }
        if (!ok)
            fsync_path(linked[i]->new_dir);
        i = j;
    }
    free(linked);
}

static void copy_cleanup(struct copy *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    /* After the link, or after a failure: a tmp/ file left now is litter,
     * never mail. */
    if (c->tmp_exists)
        unlink(c->tmp_path);
    c->tmp_exists = false;
    free(c->root);
    free(c->new_dir);
    free(c->tmp_path);
    free(c->final_path);
}

/* The envelope recipient a job recipient came from (for DSN data). */
static const struct smtp_rcpt *env_rcpt(const struct smtp_envelope *env,
                                        const struct deliver_rcpt *r)
{
    const char *given = r->orig != NULL ? r->orig : r->addr;

    for (size_t i = 0; i < env->n_rcpts; i++)
        if (env->rcpts[i].addr != NULL && strcasecmp(env->rcpts[i].addr, given) == 0)
            return &env->rcpts[i];
    return NULL;
}

/* One spool file for the remote recipients and the local ones whose copy
 * failed (a local retry by the queue runner). */
static void spool(struct job_run *r)
{
    struct deliver_job *job = r->job;
    struct queue_rcpt *q = XNEWARRAY(struct queue_rcpt, job->n_rcpts);
    size_t *which = XNEWARRAY(size_t, job->n_rcpts);
    struct buf data = BUF_INIT;
    char id[QUEUE_ID_MAX] = "";
    size_t n = 0;
    struct err e;
    int rc;

    for (size_t i = 0; i < job->n_rcpts; i++) {
        const struct deliver_rcpt *dr = &job->rcpts[i];
        const struct smtp_rcpt *sr;

        /* A recipient sharing another's Maildir follows that one. */
        if (r->durable[i] || r->same_as[i] != SIZE_MAX)
            continue;
        sr = env_rcpt(job->env, dr);
        memset(&q[n], 0, sizeof(q[n]));
        q[n].addr = dr->addr;
        q[n].local_maildir = dr->maildir;
        q[n].notify = sr != NULL ? sr->notify : SMTP_NOTIFY_DEFAULT;
        q[n].orcpt = sr != NULL ? sr->orcpt : NULL;
        q[n].state = QRCPT_PENDING;
        q[n].last_reply = r->why[i];
        which[n++] = i;
    }
    if (n == 0)
        goto out;
    err_clear(&e);
    if (job->queue_dir == NULL) {
        err_set(&e, ERR_INVAL, "no queue to spool to");
        rc = -1;
    } else {
        received(&data, job->env, n == 1 ? q[0].addr : NULL, job->hostname, r->id,
                 job->received_at, "\r\n");
        if (job->msg != NULL && buf_append(&data, job->msg->data, job->msg->len) != 0)
            die("deliver: unbounded buffer refused an append");
        rc = step("spool");
        if (rc != 0)
            err_sys(&e, "cannot spool");
        else
            rc = queue_spool(job->queue_dir, job->env, q, n, data.data, data.len, id, &e);
    }
    for (size_t k = 0; k < n; k++) {
        char **why = &r->why[which[k]];

        if (rc == 0) {
            r->durable[which[k]] = true;
        } else if (*why == NULL) {
            *why = xstrdup(e.text);
        } else {
            /* Both reasons: the local one first. */
            char *both = xasprintf("%s; %s", *why, e.text);

            free(*why);
            *why = both;
        }
    }
    if (rc == 0)
        snprintf(job->queue_id, sizeof(job->queue_id), "%s", id);
out:
    buf_free(&data);
    free(q);
    free(which);
}

static bool wants_success(const struct smtp_rcpt *sr)
{
    return sr != NULL && !(sr->notify & SMTP_NOTIFY_NEVER) &&
           (sr->notify & SMTP_NOTIFY_SUCCESS) != 0;
}

static bool any_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return true;
    }
    return false;
}

/* The "delivered" report for the envelope recipients whose local copies
 * are durable now and who asked for it.  Called before spool(): durable[]
 * then means "a durable local copy". */
static void success_report(struct job_run *r)
{
    struct deliver_job *job = r->job;
    const struct smtp_envelope *env = job->env;
    const struct smtp_rcpt **done = XNEWARRAY(const struct smtp_rcpt *, job->n_rcpts + 1);
    struct queue_rcpt *qr = NULL;
    struct queue_entry q;
    struct smtp_envelope denv;
    struct queue_rcpt to;
    struct buf msg = BUF_INIT;
    char id[QUEUE_ID_MAX];
    size_t *which = NULL;
    size_t n = 0;
    struct err e;

    if (env->mail_from == NULL || env->mail_from[0] == '\0' || job->queue_dir == NULL)
        goto out;
    for (size_t i = 0; i < job->n_rcpts; i++) {
        const struct deliver_rcpt *dr = &job->rcpts[i];
        size_t k = r->same_as[i] != SIZE_MAX ? r->same_as[i] : i;
        const struct smtp_rcpt *sr;
        bool seen = false;

        if (dr->maildir == NULL || !r->durable[k])
            continue;
        sr = env_rcpt(env, dr);
        if (!wants_success(sr))
            continue;
        /* An alias with several local users: one line for what was given. */
        for (size_t j = 0; j < n && !seen; j++)
            seen = done[j] == sr;
        if (!seen)
            done[n++] = sr;
    }
    if (n == 0)
        goto out;

    qr = xcalloc(n, sizeof(*qr));
    which = XNEWARRAY(size_t, n);
    for (size_t j = 0; j < n; j++) {
        qr[j].addr = done[j]->addr;
        qr[j].orcpt = done[j]->orcpt;
        qr[j].notify = done[j]->notify;
        qr[j].state = QRCPT_DELIVERED;
        qr[j].last_reply = (char *)(uintptr_t)"delivered to the mailbox";
        which[j] = j;
    }
    memset(&q, 0, sizeof(q));
    snprintf(q.id, sizeof(q.id), "%s", r->id);
    q.mail_from = env->mail_from;
    q.envid = env->envid;
    q.ret = env->ret;
    q.smtputf8 = env->smtputf8;
    q.created = job->received_at;
    q.rcpts = qr;
    q.n_rcpts = n;
    err_clear(&e);
    if (dsn_build(&msg, job->hostname != NULL ? job->hostname : "localhost", &q, which, n,
                  DSN_DELIVERED, job->msg->data, job->msg->len, time(NULL), &e) < 0) {
        log_warn("id=%s: no delivery report for <%s>: %s", r->id, env->mail_from, e.text);
        goto out;
    }
    memset(&denv, 0, sizeof(denv));
    denv.mail_from = (char *)(uintptr_t)"";
    denv.smtputf8 = env->smtputf8;
    denv.body = any_8bit(msg.data, msg.len) ? SMTP_BODY_8BITMIME : SMTP_BODY_7BIT;
    memset(&to, 0, sizeof(to));
    to.addr = env->mail_from;
    to.notify = SMTP_NOTIFY_NEVER;
    to.state = QRCPT_PENDING;
    if (queue_spool(job->queue_dir, &denv, &to, 1, msg.data, msg.len, id, &e) < 0)
        log_warn("id=%s: the delivery report for <%s> could not be queued: %s", r->id,
                 env->mail_from, e.text);
    else
        log_info("id=%s: delivery report for %zu recipient(s) queued as %s for <%s>", r->id,
                 n, id, env->mail_from);
out:
    buf_free(&msg);
    free(qr);
    free(which);
    free(done);
}

static void set_result(struct deliver_job *job, int code, const char *enhanced,
                       const char *fmt, ...) CORREO_PRINTF(4, 5);

static void set_result(struct deliver_job *job, int code, const char *enhanced,
                       const char *fmt, ...)
{
    va_list ap;

    job->code = code;
    snprintf(job->enhanced, sizeof(job->enhanced), "%s", enhanced);
    va_start(ap, fmt);
    vsnprintf(job->text, sizeof(job->text), fmt, ap);
    va_end(ap);
}

static void finish(struct job_run *r)
{
    struct deliver_job *job = r->job;
    size_t n_ok = 0;
    const char *why = NULL;

    for (size_t i = 0; i < job->n_rcpts; i++) {
        if (r->durable[i])
            n_ok++;
        else if (why == NULL)
            why = r->why[i] != NULL ? r->why[i] : "not delivered";
    }
    if (n_ok == job->n_rcpts) {
        if (job->queue_id[0] != '\0')
            set_result(job, 250, "2.0.0", "OK id=%s queued as %s", r->id, job->queue_id);
        else
            set_result(job, 250, "2.0.0", "OK id=%s", r->id);
    } else if (n_ok == 0) {
        set_result(job, 451, "4.3.0", "delivery failed: %s", why);
    } else {
        /* Some copies are on disk and others are not: a retry by the
         * client may duplicate the first, a 250 would lose the others. */
        set_result(job, 451, "4.3.0", "delivery failed for %zu of %zu recipients: %s",
                   job->n_rcpts - n_ok, job->n_rcpts, why);
    }
}

/* CRLF -> LF; a lone CR stays. */
static void to_lf(struct buf *out, const struct buf *in)
{
    const char *p = in != NULL ? in->data : NULL;
    size_t n = in != NULL ? in->len : 0;
    char *o;
    size_t k = 0;

    if (n == 0)
        return;
    o = buf_reserve(out, n);
    if (o == NULL)
        die("deliver: unbounded buffer refused an append");
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            continue;
        o[k++] = p[i];
    }
    buf_commit(out, k);
}

static void run_init(struct job_run *r, struct deliver_job *job)
{
    memset(r, 0, sizeof(*r));
    r->job = job;
    make_id(r->id);
    buf_init(&r->lf, 0);
    r->durable = xcalloc(job->n_rcpts + 1, sizeof(bool));
    r->why = xcalloc(job->n_rcpts + 1, sizeof(char *));
    r->same_as = xcalloc(job->n_rcpts + 1, sizeof(size_t));
    job->code = 0;
    job->enhanced[0] = job->text[0] = job->queue_id[0] = '\0';
}

static void run_free(struct job_run *r)
{
    buf_free(&r->lf);
    for (size_t i = 0; i < r->job->n_rcpts; i++)
        free(r->why[i]);
    free(r->why);
    free(r->durable);
    free(r->same_as);
}

/* Does the job make sense at all?  Fills a 554 when it does not. */
static bool job_valid(struct deliver_job *job)
{
    if (job->env == NULL || job->msg == NULL || job->rcpts == NULL || job->n_rcpts == 0) {
        set_result(job, 554, "5.5.1", "no message or no recipients");
        return false;
    }
    for (size_t i = 0; i < job->n_rcpts; i++) {
        if (job->rcpts[i].addr == NULL) {
            set_result(job, 554, "5.5.1", "a recipient has no address");
            return false;
        }
    }
    return true;
}

/*
 * The group commit: write every file, then fsync every file, then link
 * every file into new/, then fsync each new/ directory once; then spool
 * what could not be delivered locally (and the remote recipients), then
 * fill in the results.  Nothing is reported before its fsyncs are done.
 */
static void run_batch(struct deliver_job **jobs, size_t n_jobs)
{
    struct batch b = {0};
    size_t n_local = 0;

    b.runs = xcalloc(n_jobs + 1, sizeof(*b.runs));
    for (size_t j = 0; j < n_jobs; j++) {
        struct deliver_job *job = jobs[j];

        if (job->env == NULL || job->msg == NULL || job->rcpts == NULL)
            continue;
        for (size_t i = 0; i < job->n_rcpts; i++)
            if (job->rcpts[i].maildir != NULL)
                n_local++;
    }
    b.copies = xcalloc(n_local + 1, sizeof(*b.copies));

    for (size_t j = 0; j < n_jobs; j++) {
        struct deliver_job *job = jobs[j];
        struct job_run *r;
        bool any_local = false;

        if (!job_valid(job))
            continue;
        r = &b.runs[b.n_runs++];
        run_init(r, job);
        for (size_t i = 0; i < job->n_rcpts; i++) {
            const char *md = job->rcpts[i].maildir;
            struct copy *c;

            r->same_as[i] = SIZE_MAX;
            if (md == NULL)
                continue;
            /* Two recipients that resolve to one Maildir get one copy. */
            for (size_t k = 0; k < i; k++) {
                if (job->rcpts[k].maildir != NULL && r->same_as[k] == SIZE_MAX &&
                    strcmp(job->rcpts[k].maildir, md) == 0) {
                    r->same_as[i] = k;
                    break;
                }
            }
            if (r->same_as[i] != SIZE_MAX)
                continue;
            c = &b.copies[b.n_copies++];
            c->run = r;
            c->rcpt = i;
            c->fd = -1;
            c->root = xstrdup(md);
            c->new_dir = xasprintf("%s/new", md);
            any_local = true;
        }
        if (any_local)
            to_lf(&r->lf, job->msg);
    }

    /* Files are written and synced DELIVER_OPEN_MAX at a time (each is
     * open from its write to its fsync). */
    for (size_t lo = 0; lo < b.n_copies; lo += DELIVER_OPEN_MAX) {
        size_t hi = lo + DELIVER_OPEN_MAX < b.n_copies ? lo + DELIVER_OPEN_MAX : b.n_copies;

        for (size_t i = lo; i < hi; i++)
            copy_write(&b.copies[i], b.copies[i].run->job->hostname);
        /* Start the write-back of every file at once, so the fsyncs that
         * follow find most of the work done and share the file system's
         * commits. */
        for (size_t i = lo; i < hi; i++)
            if (b.copies[i].state == COPY_WRITTEN)
                sync_file_range(b.copies[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        for (size_t i = lo; i < hi; i++)
            if (b.copies[i].state == COPY_WRITTEN)
                copy_sync(&b.copies[i]);
    }
    for (size_t i = 0; i < b.n_copies; i++)
        if (b.copies[i].state == COPY_SYNCED)
            copy_link(&b.copies[i]);
    sync_dirs(&b);
    for (size_t i = 0; i < b.n_copies; i++) {
        struct copy *c = &b.copies[i];

        if (c->state == COPY_DURABLE)
            c->run->durable[c->rcpt] = true;
        copy_cleanup(c);
    }

    for (size_t j = 0; j < b.n_runs; j++) {
        struct job_run *r = &b.runs[j];

        success_report(r);
        spool(r);
        for (size_t i = 0; i < r->job->n_rcpts; i++) {
            if (r->same_as[i] != SIZE_MAX) {
                r->durable[i] = r->durable[r->same_as[i]];
                if (r->why[r->same_as[i]] != NULL)
                    set_why(r, i, r->why[r->same_as[i]]);
            }
        }
        finish(r);
        run_free(r);
    }
    free(b.copies);
    free(b.runs);
}

void deliver_run_sync(struct deliver_job *job)
{
    run_batch(&job, 1);
}

void deliver_job_free(struct deliver_job *job)
{
    if (job == NULL)
        return;
    if (job->env != NULL)
        smtp_envelope_free(job->env);
    if (job->msg != NULL) {
        buf_free(job->msg);
        free(job->msg);
    }
    for (size_t i = 0; i < job->n_rcpts; i++) {
        free(job->rcpts[i].addr);
        free(job->rcpts[i].maildir);
        free(job->rcpts[i].orig);
    }
    free(job->rcpts);
    free(job);
}

/* ---- the deliverer -------------------------------------------------------- */

struct job_list {
    struct deliver_job **v;
    size_t n, cap;
};

struct deliverer {
    pthread_mutex_t mu;
    pthread_cond_t cond;         /* pending has jobs, or stopping */
    struct job_list pending;     /* guarded by mu */
    struct job_list done;        /* guarded by mu */
    bool stopping;               /* guarded by mu */
    int efd;
    pthread_t *threads;
    unsigned n_threads;
};

static void list_push(struct job_list *l, struct deliver_job *job)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
    }
    l->v[l->n++] = job;
}

static void *deliverer_main(void *arg)
{
    struct deliverer *d = arg;
    struct deliver_job *batch[DELIVER_BATCH_MAX];

    for (;;) {
        size_t n;

        pthread_mutex_lock(&d->mu);
        while (d->pending.n == 0 && !d->stopping)
            pthread_cond_wait(&d->cond, &d->mu);
        if (d->pending.n == 0) {
            pthread_mutex_unlock(&d->mu);
            return NULL;
        }
        n = d->pending.n < DELIVER_BATCH_MAX ? d->pending.n : DELIVER_BATCH_MAX;
        memcpy(batch, d->pending.v, n * sizeof(*batch));
        memmove(d->pending.v, d->pending.v + n, (d->pending.n - n) * sizeof(*batch));
        d->pending.n -= n;
        pthread_mutex_unlock(&d->mu);

        run_batch(batch, n);

        pthread_mutex_lock(&d->mu);
        for (size_t i = 0; i < n; i++)
            list_push(&d->done, batch[i]);
        pthread_mutex_unlock(&d->mu);
        for (;;) {
            uint64_t one = 1;

            /* EAGAIN only when the counter is near overflow: the owner has
             * plenty to reap already. */
            if (write(d->efd, &one, sizeof(one)) >= 0 || errno != EINTR)
                break;
        }
    }
}

int deliverer_new(unsigned threads, struct deliverer **out, struct err *e)
{
    struct deliverer *d = XNEW(struct deliverer);
    sigset_t all, old;
    int rc;

    *out = NULL;
    if (threads == 0)
        threads = 1;
    d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->efd < 0) {
        err_sys(e, "cannot create an eventfd");
        free(d);
        return -1;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cond, NULL);
    d->threads = XNEWARRAY(pthread_t, threads);
    /* The threads take no signals: those are for the owner's loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < threads; i++) {
        rc = pthread_create(&d->threads[i], NULL, deliverer_main, d);
        if (rc != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            errno = rc;
            err_sys(e, "cannot start a delivery thread");
            d->n_threads = i;
            deliverer_free(d);
            return -1;
        }
        d->n_threads = i + 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = d;
    return 0;
}

void deliverer_submit(struct deliverer *d, struct deliver_job *job)
{
    pthread_mutex_lock(&d->mu);
    list_push(&d->pending, job);
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->mu);
}

int deliverer_fd(const struct deliverer *d)
{
    return d->efd;
}

void deliverer_reap(struct deliverer *d)
{
    struct job_list done;
    uint64_t v;

    while (read(d->efd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&d->mu);
    done = d->done;
    memset(&d->done, 0, sizeof(d->done));
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; i < done.n; i++) {
        struct deliver_job *job = done.v[i];

        if (job->done != NULL)
            job->done(job->ctx, job);
        else
            deliver_job_free(job);
    }
    free(done.v);
}

void deliverer_free(struct deliverer *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    for (unsigned i = 0; i < d->n_threads; i++)
        pthread_join(d->threads[i], NULL);
    deliverer_reap(d);
    free(d->pending.v);
    free(d->threads);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->mu);
    close(d->efd);
    free(d);
}
