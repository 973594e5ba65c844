/*
 * worker: a correod worker process -- an event loop of SMTP and POP3
 * sessions.
 *
 * Owns the glue between a connection (a libevent bufferevent, plain or
 * OpenSSL) and its smtp_proto or pop3_proto session: feeding input, writing
 * replies, acting on the session's waits (delivery, STARTTLS/STLS, AUTH
 * pause, long POP3 replies, the POP3 update, close), the timeouts, the
 * connection limits, the hooks into users, deliver and pop3_store, the
 * per-connection and per-transaction log lines, and the graceful stop.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/err.h>

#include "deliver.h"
#include "log.h"
#include "pop3_proto.h"
#include "pop3_store.h"
#include "xalloc.h"

#define INPUT_HIGH_WATER (256 * 1024)   /* read no further ahead than this */
#define OUTPUT_MAX (1024 * 1024)        /* stop reading while replies pile up */
#define LINGER_SECONDS 2                /* reading to EOF after our last reply */
#define HANDSHAKE_SECONDS 60            /* a TLS handshake may take this long */
#define STOP_SECONDS 25                 /* graceful stop bound (the supervisor waits 30) */
#define AUTH_FAIL_MEMORY 600            /* seconds a per-IP AUTH failure counts */
#define PAUSE_CAP_MS 30000u
#define POP3_OUT_FILL (256 * 1024)      /* long POP3 replies: buffer this much ahead */
#define POP3_IDLE_LOGGED_IN 600u        /* RFC 1939: an autologout timer of 10 minutes */

struct worker;

struct session {
    struct worker *w;
    struct session *prev, *next;
    struct bufferevent *bev;
    int fd;
    enum srv_service service;
    enum smtp_listener kind;
    struct smtp_session *smtp;      /* SMTP: the session; else NULL */
    struct pop3_session *pop3;      /* POP3: the session; else NULL */
    struct pop3_store *store;       /* POP3: the maildrop once logged in */
    bool update_ok;                 /* POP3: outcome of the UPDATE state */
    char peer[INET6_ADDRSTRLEN + 1];
    bool loopback;
    size_t bucket;
    struct event *pause_ev;
    struct deliver_job *ready_job;  /* finished inside the hook: complete it next */
    bool tls;                       /* bev is an OpenSSL bufferevent */
    bool handshaking;
    bool starttls;                  /* the handshake follows a STARTTLS */
    bool starttls_pending;          /* 220 being flushed before the handshake */
    bool paused;
    bool delivering;
    bool eof;                       /* the client closed its side */
    bool out_blocked;
    bool closing;                   /* flushing the last replies */
    bool lingering;                 /* reading to EOF before the close */
    bool dead;                      /* connection gone; waiting for the delivery
                                       or the file-system job */
    bool fs_busy;                   /* a file-system job runs for this session */
    char *auth_user;                /* for the log line */
    unsigned n_tx;
    struct timespec started;
    struct timespec linger_start;
};

/* File-system work that may wait on locks or touch many files (the POP3
 * UPDATE state) runs on one thread per worker, off the event loop; the
 * session reads no input until the job completes through the eventfd. */
struct fs_job {
    struct fs_job *next;
    struct session *s;
    struct pop3_store *store;
    unsigned char *marks;
    size_t n;
    int rc;
    size_t flag_failures;
    struct err e;
};

struct fs_thread {
    bool started;
    bool quit;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct fs_job *todo, **todo_tail;
    struct fs_job *done;
    int efd;
    struct event *ev;
};

struct wlistener {
    struct worker *w;
    const struct srv_listener *l;
    struct evconnlistener *lev;
};

struct worker {
    struct worker_args *a;
    const struct conf *c;
    struct event_base *base;
    struct deliverer *deliverer;
    struct event *deliver_ev;
    struct event *heartbeat_ev;
    struct event *term_ev;
    struct event *retire_ev;
    struct event *stop_timer;
    struct event *idle_timer;   /* on-demand workers: exit when idle */
    struct wlistener *wl;
    size_t n_wl;
    struct session *sessions;
    unsigned n_sessions;
    bool stopping;
    bool retiring;          /* replaced after a reload: no new connections */
    bool full;              /* worker_sessions reached: listeners disabled */
    struct fs_thread fs;

    /* the user database, reloaded when its files change */
    struct user_db *users;
    struct stat users_st, aliases_st;
    bool users_st_ok, aliases_st_ok;
    bool users_stale;       /* re-read at the next lookup whatever stat says */
};

static void session_pump(struct session *s);
static void session_free(struct session *s);
static void session_begin_close(struct session *s);
static void update_capacity(struct worker *w);

/* ---- shared per-IP table ------------------------------------------------ */

size_t shm_bucket(const unsigned char *addr, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= addr[i];
        h *= 16777619u;
    }
    return h & (SHM_BUCKETS - 1);
}

static uint32_t ip_connections(const struct srv_shm *shm, size_t bucket)
{
    uint32_t n = 0, rows = atomic_load(&shm->rows_used);

    for (size_t r = 0; r < rows && r < SHM_ROWS; r++)
        n += atomic_load_explicit(&shm->conn[r][bucket], memory_order_relaxed);
    return n;
}

static int64_t now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

static unsigned ip_auth_failures(struct srv_shm *shm, size_t bucket)
{
    int64_t at = atomic_load(&shm->auth_fail_at[bucket]);

    if (now_seconds() - at > AUTH_FAIL_MEMORY)
        return 0;
    return atomic_load(&shm->auth_fail[bucket]);
}

static void ip_auth_failed(struct srv_shm *shm, size_t bucket)
{
    int64_t now = now_seconds();

    if (now - atomic_load(&shm->auth_fail_at[bucket]) > AUTH_FAIL_MEMORY)
        atomic_store(&shm->auth_fail[bucket], 0);
    atomic_fetch_add(&shm->auth_fail[bucket], 1);
    atomic_store(&shm->auth_fail_at[bucket], now);
}

/* ---- the user database -------------------------------------------------- */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static void stat_file(const char *path, struct stat *st, bool *ok)
{
    *ok = path != NULL && stat(path, st) == 0;
    if (!*ok)
        memset(st, 0, sizeof *st);
}

/* The current database: reloaded when the users or aliases file changed
 * (an admin ran `correod user add`); a broken new file keeps the old one. */
static struct user_db *worker_users(struct worker *w)
{
    const struct conf *c = w->c;
    struct stat us, as;
    bool uok, aok;

    stat_file(c->users_file, &us, &uok);
    stat_file(c->aliases_file, &as, &aok);
    if (!w->users_stale && uok == w->users_st_ok && aok == w->aliases_st_ok &&
        (!uok || same_file(&us, &w->users_st)) && (!aok || same_file(&as, &w->aliases_st)))
        return w->users;

    struct user_db_opts o = {
        .users_file = c->users_file,
        .aliases_file = c->aliases_file,
        .domains = (const char *const *)c->domains,
        .n_domains = c->n_domains,
        .maildir_template = c->maildir_template,
    };
    struct user_db *db;
    struct err e;
    if (users_load(&o, &db, &e) < 0) {
        log_warn("users: reload failed, keeping the previous users: %s", e.text);
    } else {
        if (w->users != w->a->users)
            users_free(w->users);
        w->users = db;
        log_msg(w->users_stale ? LOGL_DEBUG : LOGL_INFO, "users: reloaded (%zu users)",
                users_count(db));
    }
    w->users_stale = false;
    w->users_st = us;
    w->users_st_ok = uok;
    w->aliases_st = as;
    w->aliases_st_ok = aok;
    return w->users;
}

/* ---- hooks -------------------------------------------------------------- */

static const char *addr_domain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : NULL;
}

static enum smtp_rcpt_verdict hook_rcpt(void *ctx, const char *auth_user, const char *addr)
{
    struct session *s = ctx;
    const char *dom = addr_domain(addr);
    struct users_target t;
    struct err e;

    (void)auth_user;
    if (dom && !conf_is_local_domain(s->w->c, dom))
        return SMTP_RCPT_REMOTE;
    memset(&t, 0, sizeof t);
    switch (users_resolve(worker_users(s->w), addr, &t, &e)) {
    case USERS_RESOLVE_OK:
        users_target_free(&t);
        return SMTP_RCPT_LOCAL;
    case USERS_RESOLVE_UNKNOWN:
        return SMTP_RCPT_UNKNOWN;
    case USERS_RESOLVE_NOT_LOCAL:
        return SMTP_RCPT_REMOTE;
    case USERS_RESOLVE_ERROR:
    default:
        log_warn("rcpt lookup failed for <%s> from %s: %s", addr, s->peer, e.text);
        return SMTP_RCPT_TEMPFAIL;
    }
}

static bool hook_may_send_as(void *ctx, const char *auth_user, const char *addr)
{
    struct session *s = ctx;
    return users_may_send_as(worker_users(s->w), auth_user, addr);
}

static int hook_auth(void *ctx, const char *authzid, const char *authcid, const char *password,
                     char **canonical)
{
    struct session *s = ctx;
    struct err e;
    char *user = NULL;
    int r = users_verify(worker_users(s->w), authcid, password, &user, &e);

    if (r < 0) {
        log_error("auth: error checking %s from %s: %s", authcid, s->peer, e.text);
        return -1;
    }
    if (r == 1 && authzid && *authzid && strcasecmp(authzid, authcid) != 0 &&
        strcasecmp(authzid, user) != 0) {
        log_warn("auth: %s from %s may not act as %s", user, s->peer, authzid);
        free(user);
        r = 0;
    } else if (r == 1) {
        log_info("auth: %s logged in from %s", user, s->peer);
        free(s->auth_user);
        s->auth_user = xstrdup(user);
        *canonical = user;
        return 1;
    } else {
        log_warn("auth: failed for %s from %s", authcid, s->peer);
    }
    ip_auth_failed(s->w->a->shm, s->bucket);
    return 0;
}

static void log_transaction(struct session *s, const struct deliver_job *job)
{
    const struct smtp_envelope *env = job->env;

    log_info("message from=<%s> rcpts=%zu size=%zu peer=%s auth=%s queue=%s result=%d %s %s",
             env ? env->mail_from : "", env ? env->n_rcpts : 0,
             job->msg ? job->msg->len : 0, s->peer,
             env && env->auth_user ? env->auth_user : "-",
             job->queue_id[0] ? job->queue_id : "-", job->code, job->enhanced, job->text);
}

static void on_delivered(void *ctx, struct deliver_job *job)
{
    struct session *s = ctx;

    log_transaction(s, job);
    s->delivering = false;
    s->n_tx++;
    if (!s->dead)
        smtp_session_delivered(s->smtp, job->code, job->enhanced, job->text);
    deliver_job_free(job);
    if (s->dead) {
        session_free(s);
        return;
    }
    session_pump(s);
}

static bool rcpt_seen(const struct deliver_job *job, const char *addr, const char *maildir)
{
    for (size_t i = 0; i < job->n_rcpts; i++) {
        const struct deliver_rcpt *r = &job->rcpts[i];
        if (maildir ? (r->maildir && strcmp(r->maildir, maildir) == 0)
                    : (!r->maildir && strcasecmp(r->addr, addr) == 0))
            return true;
    }
    return false;
}

static void job_add_rcpt(struct deliver_job *job, size_t *cap, const char *addr,
                         const char *maildir, const char *orig)
{
    if (rcpt_seen(job, addr, maildir))
        return;
    if (job->n_rcpts == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        job->rcpts = xreallocarray(job->rcpts, *cap, sizeof *job->rcpts);
    }
    struct deliver_rcpt *r = &job->rcpts[job->n_rcpts++];
    r->addr = xstrdup(addr);
    r->maildir = maildir ? xstrdup(maildir) : NULL;
    r->orig = orig && strcasecmp(orig, addr) != 0 ? xstrdup(orig) : NULL;
}

static void job_fail(struct deliver_job *job, const char *why)
{
    job->code = 451;
    snprintf(job->enhanced, sizeof job->enhanced, "4.3.0");
    snprintf(job->text, sizeof job->text, "%s", why);
}

/* Resolve the accepted recipients to Maildirs (local) or the queue. */
static int job_resolve(struct session *s, struct deliver_job *job)
{
    struct user_db *db = worker_users(s->w);
    size_t cap = 0;
    struct err e;

    for (size_t i = 0; i < job->env->n_rcpts; i++) {
        const struct smtp_rcpt *rc = &job->env->rcpts[i];
        struct users_target t;

        if (rc->verdict == SMTP_RCPT_REMOTE) {
            job_add_rcpt(job, &cap, rc->addr, NULL, NULL);
            continue;
        }
        memset(&t, 0, sizeof t);
        enum users_resolve_result r = users_resolve(db, rc->addr, &t, &e);
        if (r == USERS_RESOLVE_NOT_LOCAL) {
            job_add_rcpt(job, &cap, rc->addr, NULL, NULL);
            continue;
        }
        if (r == USERS_RESOLVE_UNKNOWN) {
            /* Removed since RCPT: nobody to give it to any more. */
            log_warn("recipient <%s> vanished before delivery", rc->addr);
            continue;
        }
        if (r != USERS_RESOLVE_OK) {
            log_error("resolving <%s>: %s", rc->addr, e.text);
            job_fail(job, "recipient lookup failed, try again later");
            return -1;
        }
        for (size_t k = 0; k < t.n_local; k++) {
            char *md = NULL;
            if (users_maildir(db, t.local[k], &md, &e) < 0) {
                log_error("maildir of %s: %s", t.local[k], e.text);
                users_target_free(&t);
                job_fail(job, "local mailbox not available, try again later");
                return -1;
            }
            job_add_rcpt(job, &cap, t.local[k], md, rc->addr);
            free(md);
        }
        for (size_t k = 0; k < t.n_external; k++)
            job_add_rcpt(job, &cap, t.external[k], NULL, rc->addr);
        users_target_free(&t);
    }
    if (job->n_rcpts == 0) {
        job_fail(job, "no deliverable recipients left");
        return -1;
    }
    return 0;
}

static void hook_deliver(void *ctx, struct smtp_envelope *env, struct buf *msg)
{
    struct session *s = ctx;
    struct deliver_job *job = XNEW(struct deliver_job);

    job->env = env;
    job->msg = msg;
    job->hostname = s->w->c->hostname;
    job->queue_dir = s->w->c->queue_dir;
    job->received_at = time(NULL);
    job->done = on_delivered;
    job->ctx = s;
    s->delivering = true;
    if (job_resolve(s, job) < 0) {
        /* Completed by the pump, outside the session's feed. */
        s->ready_job = job;
        return;
    }
    deliverer_submit(s->w->deliverer, job);
}

static const struct smtp_hooks hooks = {
    .rcpt = hook_rcpt,
    .may_send_as = hook_may_send_as,
    .auth = hook_auth,
    .deliver = hook_deliver,
};

/* ---- POP3 hooks --------------------------------------------------------- */

static enum pop3_open hook_pop3_open(void *ctx, const char *user, struct pop3_msg **msgs,
                                     size_t *n)
{
    struct session *s = ctx;
    char *md = NULL;
    struct err e;
    enum pop3_open r;

    if (users_maildir(worker_users(s->w), user, &md, &e) < 0) {
        log_error("pop3: maildir of %s: %s", user, e.text);
        return POP3_OPEN_FAIL;
    }
    pop3_store_close(s->store);
    s->store = NULL;
    r = pop3_store_open(md, &s->store, msgs, n, &e);
    switch (r) {
    case POP3_OPEN_OK:
        log_info("pop3: %s from %s: %zu messages", user, s->peer, *n);
        break;
    case POP3_OPEN_LOCKED:
        log_info("pop3: %s from %s: maildrop in use by another session", user, s->peer);
        break;
    case POP3_OPEN_FAIL:
    default:
        log_error("pop3: %s from %s: cannot open the maildrop: %s", user, s->peer, e.text);
        break;
    }
    free(md);
    return r;
}

static int hook_pop3_msg_open(void *ctx, size_t idx)
{
    struct session *s = ctx;
    struct err e;

    if (!s->store)
        return -1;
    if (pop3_store_msg_open(s->store, idx, &e) < 0) {
        log_warn("pop3: %s message %zu: %s", s->auth_user ? s->auth_user : "-", idx + 1,
                 e.text);
        return -1;
    }
    return 0;
}

static ssize_t hook_pop3_msg_read(void *ctx, char *buf, size_t cap)
{
    struct session *s = ctx;
    ssize_t r = s->store ? pop3_store_msg_read(s->store, buf, cap) : -1;

    if (r < 0)
        log_error("pop3: %s: reading a message failed", s->auth_user ? s->auth_user : "-");
    return r;
}

static void hook_pop3_msg_close(void *ctx)
{
    struct session *s = ctx;

    if (s->store)
        pop3_store_msg_close(s->store);
}

static void fs_run(struct fs_job *job)
{
    job->flag_failures = 0;
    job->rc = pop3_store_update(job->store, job->marks, job->n, &job->flag_failures, &job->e);
}

/* On the loop: the outcome of the UPDATE state, then the session goes on
 * (or, when its connection went meanwhile, is freed). */
static void fs_finish(struct fs_job *job)
{
    struct session *s = job->s;
    const char *user = s->auth_user ? s->auth_user : "-";
    size_t deleted = 0;

    for (size_t i = 0; i < job->n; i++)
        deleted += (job->marks[i] & POP3_MARK_DELETED) != 0;
    if (job->rc < 0) {
        log_error("pop3: %s: %s", user, job->e.text);
        s->update_ok = false;
    } else if (deleted) {
        log_info("pop3: %s: %zu messages deleted", user, deleted);
    }
    if (job->flag_failures)
        log_warn("pop3: %s: could not mark %zu messages seen", user, job->flag_failures);
    free(job->marks);
    free(job);
    s->fs_busy = false;
}

static void fs_complete(struct fs_job *job)
{
    struct session *s = job->s;

    fs_finish(job);
    if (s->dead) {
        session_free(s);
        return;
    }
    session_pump(s);
}

static void *fs_main(void *arg)
{
    struct fs_thread *t = arg;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->todo && !t->quit)
            pthread_cond_wait(&t->cv, &t->mu);
        if (!t->todo)
            break;
        struct fs_job *job = t->todo;
        t->todo = job->next;
        if (!t->todo)
            t->todo_tail = &t->todo;
        pthread_mutex_unlock(&t->mu);
        fs_run(job);
        pthread_mutex_lock(&t->mu);
        job->next = t->done;
        t->done = job;
        uint64_t one = 1;
        ssize_t r = write(t->efd, &one, sizeof one);
        (void)r;   /* a full counter is still readable */
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Run the callbacks of finished jobs. */
static void fs_reap(struct worker *w)
{
    struct fs_thread *t = &w->fs;
    uint64_t v;
    ssize_t r = read(t->efd, &v, sizeof v);

    (void)r;
    pthread_mutex_lock(&t->mu);
    struct fs_job *done = t->done;
    t->done = NULL;
    pthread_mutex_unlock(&t->mu);
    while (done) {
        struct fs_job *next = done->next;
        fs_complete(done);
        done = next;
    }
}

static void on_fs_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fs_reap(arg);
}

static int fs_start(struct worker *w)
{
    struct fs_thread *t = &w->fs;

    if (t->started)
        return 0;
    t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (t->efd < 0) {
        log_error("worker %u: eventfd: %s", w->a->index, strerror(errno));
        return -1;
    }
    t->todo = NULL;
    t->todo_tail = &t->todo;
    t->done = NULL;
    t->quit = false;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    t->ev = event_new(w->base, t->efd, EV_READ | EV_PERSIST, on_fs_done, w);
    int rc = t->ev ? pthread_create(&t->tid, NULL, fs_main, t) : ENOMEM;
    if (rc != 0) {
        log_error("worker %u: file-system thread: %s", w->a->index, strerror(rc));
        if (t->ev)
            event_free(t->ev);
        t->ev = NULL;
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        close(t->efd);
        t->efd = -1;
        return -1;
    }
    event_add(t->ev, NULL);
    t->started = true;
    return 0;
}

/* At exit: let the thread finish what it has, then complete it here. */
static void fs_stop(struct worker *w)
{
    struct fs_thread *t = &w->fs;

    if (!t->started)
        return;
    pthread_mutex_lock(&t->mu);
    t->quit = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->tid, NULL);
    fs_reap(w);
    event_free(t->ev);
    close(t->efd);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    t->started = false;
}

static void hook_pop3_update(void *ctx, const unsigned char *marks, size_t n)
{
    struct session *s = ctx;
    struct worker *w = s->w;

    s->update_ok = true;
    if (!s->store)
        return;
    struct fs_job *job = XNEW(struct fs_job);
    job->s = s;
    job->store = s->store;
    job->n = n;
    job->marks = xmalloc(n ? n : 1);
    if (n)
        memcpy(job->marks, marks, n);
    if (fs_start(w) < 0) {
        /* No thread: do it here rather than not at all. */
        fs_run(job);
        fs_finish(job);
        return;
    }
    s->fs_busy = true;
    job->next = NULL;
    pthread_mutex_lock(&w->fs.mu);
    *w->fs.todo_tail = job;
    w->fs.todo_tail = &job->next;
    pthread_cond_signal(&w->fs.cv);
    pthread_mutex_unlock(&w->fs.mu);
}

static const struct pop3_hooks pop3_hooks = {
    .auth = hook_auth,
    .open = hook_pop3_open,
    .msg_open = hook_pop3_msg_open,
    .msg_read = hook_pop3_msg_read,
    .msg_close = hook_pop3_msg_close,
    .update = hook_pop3_update,
};

/* ---- the session glue --------------------------------------------------- */

static const char *listener_name(const struct session *s)
{
    if (s->service == SRV_SERVICE_POP3)
        return "pop3";
    if (s->service == SRV_SERVICE_POP3S)
        return "pop3s";
    switch (s->kind) {
    case SMTP_LISTENER_MX: return "smtp";
    case SMTP_LISTENER_SUBMISSION: return "submission";
    case SMTP_LISTENER_SUBMISSIONS: return "submissions";
    }
    return "?";
}

static void set_read_timeout(struct session *s, unsigned seconds)
{
    struct timeval rt = {(time_t)seconds, 0};
    struct timeval wt = {(time_t)s->w->c->timeout_command, 0};

    if (wt.tv_sec == 0)
        wt.tv_sec = 300;
    bufferevent_set_timeouts(s->bev, seconds ? &rt : NULL, &wt);
}

static void flush_output(struct session *s)
{
    size_t len;
    const char *out = s->pop3 ? pop3_session_output(s->pop3, &len)
                              : smtp_session_output(s->smtp, &len);

    if (len == 0)
        return;
    if (log_get_level() >= LOGL_DEBUG) {
        const char *p = out, *end = out + len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            /* POP3 replies carry mail: only their status lines are logged. */
            if (!s->pop3 || (n >= 3 && memcmp(p, "+OK", 3) == 0) ||
                (n >= 4 && memcmp(p, "-ERR", 4) == 0))
                log_proto(LOGL_DEBUG, "S:", p, n && p[n - 1] == '\r' ? n - 1 : n);
            p += n + (nl ? 1 : 0);
        }
    }
    if (bufferevent_write(s->bev, out, len) < 0) {
        log_warn("%s: cannot queue output", s->peer);
        s->dead = true;
    }
    if (s->pop3)
        pop3_session_output_clear(s->pop3);
    else
        smtp_session_output_clear(s->smtp);
}

static void on_pause_done(evutil_socket_t fd, short what, void *arg)
{
    struct session *s = arg;

    (void)fd;
    (void)what;
    s->paused = false;
    flush_output(s);
    if (s->pop3)
        pop3_session_resume(s->pop3);
    else
        smtp_session_resume(s->smtp);
    session_pump(s);
}

static void start_pause(struct session *s)
{
    struct worker *w = s->w;
    unsigned mine = s->pop3 ? pop3_session_auth_failures(s->pop3)
                            : smtp_session_auth_failures(s->smtp);
    unsigned all = ip_auth_failures(w->a->shm, s->bucket);
    unsigned others = all > mine ? all - mine : 0;
    /* The session doubles from 500 ms per failure; auth_fail_delay sets
     * the first step, failures of the same address elsewhere double it. */
    unsigned base = s->pop3 ? pop3_session_pause_ms(s->pop3) : smtp_session_pause_ms(s->smtp);
    uint64_t ms = (uint64_t)base * 2 * w->c->auth_fail_delay;

    if (others > 5)
        others = 5;
    ms <<= others;
    if (ms > PAUSE_CAP_MS)
        ms = PAUSE_CAP_MS;
    if (!s->pause_ev)
        s->pause_ev = evtimer_new(w->base, on_pause_done, s);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    s->paused = true;
    evtimer_add(s->pause_ev, &tv);
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void start_tls(struct session *s)
{
    struct worker *w = s->w;
    struct err e;
    SSL *ssl;

    s->starttls_pending = false;
    ssl = tls_server_ssl_new(w->a->tls, &e);
    if (!ssl) {
        log_error("%s: STARTTLS: %s", s->peer, e.text);
        session_free(s);
        return;
    }
    /* Whatever arrived in plain text after STARTTLS is dropped unread
     * (CVE-2011-0411): it must never count as said inside TLS. */
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t junk = evbuffer_get_length(in);
    if (junk) {
        log_warn("%s: %zu bytes sent after STARTTLS before the handshake, discarded",
                 s->peer, junk);
        evbuffer_drain(in, junk);
    }
    bufferevent_free(s->bev);   /* the plain one does not own the socket */
    s->bev = bufferevent_openssl_socket_new(w->base, s->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!s->bev) {
        log_error("%s: STARTTLS: cannot make a TLS connection", s->peer);
        SSL_free(ssl);
        close(s->fd);
        s->fd = -1;
        s->dead = true;
        session_free(s);
        return;
    }
    s->tls = true;
    s->handshaking = true;
    s->starttls = true;
    bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
    set_read_timeout(s, HANDSHAKE_SECONDS);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void stop_reading(struct session *s)
{
    bufferevent_disable(s->bev, EV_READ);
}

static unsigned pop3_idle_timeout(const struct session *s)
{
    unsigned t = s->w->c->timeout_command;

    if (pop3_session_user(s->pop3) && t < POP3_IDLE_LOGGED_IN)
        t = POP3_IDLE_LOGGED_IN;
    return t;
}

/* session_pump for POP3. */
static void pop3_pump(struct session *s)
{
    for (;;) {
        if (s->dead || s->closing || s->handshaking || s->paused || s->starttls_pending)
            return;
        enum pop3_wait st = pop3_session_state(s->pop3);
        if (st != POP3_WAIT_PAUSE)
            flush_output(s);
        if (s->dead) {
            session_free(s);
            return;
        }
        struct evbuffer *out = bufferevent_get_output(s->bev);
        switch (st) {
        case POP3_READY: {
            struct evbuffer *in = bufferevent_get_input(s->bev);
            size_t avail = evbuffer_get_length(in);
            if (evbuffer_get_length(out) > OUTPUT_MAX) {
                s->out_blocked = true;
                stop_reading(s);
                return;
            }
            if (avail == 0) {
                if (s->eof) {
                    pop3_session_eof(s->pop3);
                    flush_output(s);
                    session_begin_close(s);
                    return;
                }
                set_read_timeout(s, pop3_idle_timeout(s));
                bufferevent_enable(s->bev, EV_READ);
                return;
            }
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
                return;
            size_t n = pop3_session_feed(s->pop3, v.iov_base, v.iov_len);
            evbuffer_drain(in, n);
            if (n == 0 && pop3_session_state(s->pop3) == POP3_READY) {
                log_error("%s: session took no input; closing", s->peer);
                session_begin_close(s);
                return;
            }
            continue;
        }
        case POP3_WAIT_OUTPUT:
            stop_reading(s);
            if (evbuffer_get_length(out) > POP3_OUT_FILL) {
                /* on_write pumps again once the client has read it */
                s->out_blocked = true;
                return;
            }
            pop3_session_more(s->pop3);
            continue;
        case POP3_WAIT_STLS:
            stop_reading(s);
            if (!s->w->a->tls) {
                session_begin_close(s);
                return;
            }
            s->starttls_pending = true;
            if (evbuffer_get_length(out) == 0)
                start_tls(s);
            return;
        case POP3_WAIT_PAUSE:
            stop_reading(s);
            start_pause(s);
            return;
        case POP3_WAIT_UPDATE:
            if (s->fs_busy) {
                stop_reading(s);   /* fs_complete pumps again */
                return;
            }
            pop3_session_updated(s->pop3, s->update_ok);
            continue;
        case POP3_CLOSE:
            stop_reading(s);
            session_begin_close(s);
            return;
        }
        return;
    }
}

/* Feed what is buffered and act on the session's state until it waits for
 * more input or for something else. */
static void session_pump(struct session *s)
{
    if (s->pop3) {
        pop3_pump(s);
        return;
    }
    for (;;) {
        if (s->dead || s->closing || s->handshaking || s->paused || s->starttls_pending)
            return;
        if (s->ready_job) {
            struct deliver_job *job = s->ready_job;
            s->ready_job = NULL;
            on_delivered(s, job);   /* pumps again itself */
            return;
        }
        enum smtp_wait st = smtp_session_state(s->smtp);
        if (st != SMTP_WAIT_PAUSE)
            flush_output(s);
        if (s->dead) {
            session_free(s);
            return;
        }
        switch (st) {
        case SMTP_READY: {
            struct evbuffer *in = bufferevent_get_input(s->bev);
            size_t avail = evbuffer_get_length(in);
            if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_MAX) {
                /* The client does not read its replies: wait for it. */
                s->out_blocked = true;
                stop_reading(s);
                return;
            }
            if (avail == 0) {
                if (s->eof) {
                    smtp_session_eof(s->smtp);
                    flush_output(s);
                    session_begin_close(s);
                    return;
                }
                unsigned t = smtp_session_in_transaction(s->smtp) ? s->w->c->timeout_data
                                                                  : s->w->c->timeout_command;
                set_read_timeout(s, t);
                bufferevent_enable(s->bev, EV_READ);
                return;
            }
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
                return;
            size_t n = smtp_session_feed(s->smtp, v.iov_base, v.iov_len);
            evbuffer_drain(in, n);
            if (n == 0 && smtp_session_state(s->smtp) == SMTP_READY) {
                log_error("%s: session took no input; closing", s->peer);
                session_begin_close(s);
                return;
            }
            continue;
        }
        case SMTP_WAIT_DELIVERY:
            stop_reading(s);
            if (s->ready_job)
                continue;
            return;
        case SMTP_WAIT_STARTTLS:
            stop_reading(s);
            if (!s->w->a->tls) {
                session_begin_close(s);
                return;
            }
            s->starttls_pending = true;
            if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
                start_tls(s);
            return;
        case SMTP_WAIT_PAUSE:
            stop_reading(s);
            start_pause(s);
            return;
        case SMTP_CLOSE:
            stop_reading(s);
            session_begin_close(s);
            return;
        }
        return;
    }
}

static void session_linger(struct session *s)
{
    struct timeval tv = {LINGER_SECONDS, 0};

    struct evbuffer *in = bufferevent_get_input(s->bev);

    s->lingering = true;
    clock_gettime(CLOCK_MONOTONIC, &s->linger_start);
    if (!s->tls)
        shutdown(s->fd, SHUT_WR);
    /* Reading what the client still sends avoids a reset that could
     * destroy our last reply before the client has read it. */
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_set_timeouts(s->bev, &tv, &tv);
    if (s->eof) {
        session_free(s);
        return;
    }
    bufferevent_enable(s->bev, EV_READ);
}

static void session_begin_close(struct session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    stop_reading(s);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        session_linger(s);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    if (s->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        struct timespec now;
        evbuffer_drain(in, evbuffer_get_length(in));
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - s->linger_start.tv_sec > LINGER_SECONDS)
            session_free(s);   /* a client that never stops talking */
        return;
    }
    session_pump(s);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;

    (void)bev;
    if (s->lingering || s->dead)
        return;
    if (s->closing) {
        session_linger(s);
        return;
    }
    if (s->starttls_pending) {
        start_tls(s);
        return;
    }
    if (s->out_blocked) {
        s->out_blocked = false;
        session_pump(s);
    }
}

static void tls_failure_reason(struct session *s, char *out, size_t size)
{
    unsigned long code = bufferevent_get_openssl_error(s->bev);

    if (code && ERR_GET_LIB(code) != 0) {
        ERR_error_string_n(code, out, size);
        return;
    }
    /* No TLS-level reason: the transport ended (closed or reset). */
    snprintf(out, size, "connection closed by the client");
    ERR_clear_error();
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        s->handshaking = false;
        log_debug("%s: TLS established (%s)", s->peer,
                  SSL_get_version(bufferevent_openssl_get_ssl(s->bev)));
        if (s->starttls) {
            if (s->pop3)
                pop3_session_tls_started(s->pop3);
            else
                smtp_session_tls_started(s->smtp);
        }
        session_pump(s);
        return;
    }
    if (s->lingering) {
        session_free(s);
        return;
    }
    if (s->handshaking) {
        char why[256];
        if (what & BEV_EVENT_TIMEOUT)
            snprintf(why, sizeof why, "timeout");
        else
            tls_failure_reason(s, why, sizeof why);
        log_info("%s: TLS handshake failed: %s", s->peer, why);
        session_free(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (what & BEV_EVENT_WRITING) {
            log_info("%s: write timeout, client not reading", s->peer);
            session_free(s);
            return;
        }
        log_info("%s: timeout", s->peer);
        if (s->pop3)
            pop3_session_timeout(s->pop3);
        else
            smtp_session_timeout(s->smtp);
        session_pump(s);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        s->eof = true;
        if (s->delivering)
            return;   /* finish the delivery; the pump closes then */
        if (s->closing || s->paused) {
            session_free(s);   /* nobody left to answer */
            return;
        }
        session_pump(s);
        return;
    }
    /* BEV_EVENT_ERROR */
    if (s->tls) {
        char why[256];
        tls_failure_reason(s, why, sizeof why);
        log_info("%s: connection error: %s", s->peer, why);
    } else {
        log_info("%s: connection error: %s", s->peer,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    session_free(s);
}

static void release_connection(struct session *s)
{
    if (s->pause_ev) {
        event_free(s->pause_ev);
        s->pause_ev = NULL;
    }
    if (s->bev) {
        bufferevent_free(s->bev);
        s->bev = NULL;
        if (!s->tls && s->fd >= 0)
            close(s->fd);
    }
    s->fd = -1;
}

static void session_free(struct session *s)
{
    struct worker *w = s->w;

    if ((s->delivering && !s->ready_job) || s->fs_busy) {
        /* The job still points here: drop the connection, keep the rest
         * until the delivery or the file-system job completes (its
         * callback frees it). */
        if (!s->dead) {
            s->dead = true;
            release_connection(s);
        }
        return;
    }
    if (s->ready_job) {
        deliver_job_free(s->ready_job);
        s->ready_job = NULL;
    }
    release_connection(s);

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - s->started.tv_sec) +
                  (double)(now.tv_nsec - s->started.tv_nsec) / 1e9;
    log_info("session from %s on %s: tls=%s auth=%s messages=%u duration=%.1fs", s->peer,
             listener_name(s), s->tls ? "yes" : "no", s->auth_user ? s->auth_user : "-",
             s->n_tx, secs);

    atomic_fetch_sub(&w->a->shm->conn[w->a->row][s->bucket], 1);
    if (s->prev)
        s->prev->next = s->next;
    else
        w->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    w->n_sessions--;
    update_capacity(w);
    if (s->pop3)
        pop3_session_free(s->pop3);   /* closes an open message via the store */
    pop3_store_close(s->store);       /* releases the maildrop lock */
    if (s->smtp)
        smtp_session_free(s->smtp);
    free(s->auth_user);
    free(s);
    if ((w->stopping || w->retiring) && w->n_sessions == 0)
        event_base_loopexit(w->base, NULL);
}

/* ---- capacity ----------------------------------------------------------- */

static void publish_load(struct worker *w)
{
    atomic_store(&w->a->shm->sessions[w->a->row], w->n_sessions);
    atomic_store(&w->a->shm->full[w->a->row],
                 (uint32_t)(w->full || w->stopping || w->retiring));
}

static void set_listening(struct worker *w, bool on)
{
    for (size_t i = 0; i < w->n_wl; i++) {
        if (!w->wl[i].lev)
            continue;
        if (on)
            evconnlistener_enable(w->wl[i].lev);
        else
            evconnlistener_disable(w->wl[i].lev);
    }
}

/* After a session starts or ends: stop or resume accepting at the
 * worker_sessions limit, tell the supervisor, and start the idle clock of
 * an on-demand worker. */
static void update_capacity(struct worker *w)
{
    unsigned limit = w->c->worker_sessions;
    bool full = limit && w->n_sessions >= limit;

    if (full != w->full && !w->stopping && !w->retiring) {
        w->full = full;
        set_listening(w, !full);
        if (full) {
            /* Wake the supervisor now rather than at the next heartbeat. */
            ssize_t r = write(w->a->heartbeat_fd, "f", 1);
            (void)r;
        }
    }
    publish_load(w);
    if (w->idle_timer) {
        if (w->n_sessions == 0 && !w->stopping && !w->retiring) {
            struct timeval tv = {EXTRA_IDLE_SECONDS, 0};
            evtimer_add(w->idle_timer, &tv);
        } else {
            evtimer_del(w->idle_timer);
        }
    }
}

/* ---- accepting ---------------------------------------------------------- */

static void peer_info(const struct sockaddr *sa, char *out, size_t size, bool *loopback,
                      size_t *bucket)
{
    *loopback = false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        const unsigned char *b = (const unsigned char *)&in->sin_addr;
        inet_ntop(AF_INET, &in->sin_addr, out, (socklen_t)size);
        *loopback = b[0] == 127;
        *bucket = shm_bucket(b, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)size);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            *loopback = b[12] == 127;
            *bucket = shm_bucket(b + 12, 4);
        } else {
            *loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
            *bucket = shm_bucket(b, 16);
        }
    } else {
        snprintf(out, size, "unknown");
        *bucket = 0;
    }
}

static unsigned peer_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return 0;
}

static bool implicit_tls(const struct srv_listener *l)
{
    return l->service == SRV_SERVICE_POP3S ||
           (l->service == SRV_SERVICE_SMTP && l->kind == SMTP_LISTENER_SUBMISSIONS);
}

static void refuse(int fd, const struct srv_listener *l, const char *line)
{
    /* Best effort, never blocking; on 465 and 995 a plain-text reply means
     * nothing.  POP3 clients get the reason as an -ERR line. */
    char buf[256];

    if (l->service != SRV_SERVICE_SMTP) {
        const char *text = strchr(line, ' ');
        text = text ? strchr(text + 1, ' ') : NULL;   /* past "421 4.x.y" */
        snprintf(buf, sizeof buf, "-ERR [SYS/TEMP] %s", text ? text + 1 : "unavailable\r\n");
        line = buf;
    }
    if (!implicit_tls(l)) {
        ssize_t r = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)r;
    }
    close(fd);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct wlistener *wl = arg;
    struct worker *w = wl->w;
    const struct conf *c = w->c;
    char peer[INET6_ADDRSTRLEN + 1];
    bool loopback;
    size_t bucket;

    (void)lev;
    (void)salen;
    peer_info(sa, peer, sizeof peer, &loopback, &bucket);
    if (w->stopping || w->retiring) {
        refuse(fd, wl->l, "421 4.3.2 shutting down\r\n");
        return;
    }
    if (c->max_connections && w->n_sessions >= c->max_connections) {
        log_warn("%s: refused, %u connections in this worker", peer, w->n_sessions);
        refuse(fd, wl->l, "421 4.7.0 too many connections, try again later\r\n");
        return;
    }
    atomic_fetch_add(&w->a->shm->conn[w->a->row][bucket], 1);
    if (c->max_connections_per_ip && ip_connections(w->a->shm, bucket) > c->max_connections_per_ip) {
        atomic_fetch_sub(&w->a->shm->conn[w->a->row][bucket], 1);
        log_warn("%s: refused, too many connections from this address", peer);
        refuse(fd, wl->l, "421 4.7.0 too many connections from your address\r\n");
        return;
    }

    struct session *s = XNEW(struct session);
    s->w = w;
    s->fd = fd;
    s->service = wl->l->service;
    s->kind = wl->l->kind;
    s->bucket = bucket;
    s->loopback = loopback;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    clock_gettime(CLOCK_MONOTONIC, &s->started);
    s->next = w->sessions;
    if (w->sessions)
        w->sessions->prev = s;
    w->sessions = s;
    w->n_sessions++;
    update_capacity(w);

    struct smtp_session_cfg cfg = {
        .listener = s->kind,
        .hostname = c->hostname,
        .peer_addr = s->peer,
        .peer_loopback = loopback,
        .tls_active = s->kind == SMTP_LISTENER_SUBMISSIONS,
        .tls_available = w->a->tls != NULL && s->kind != SMTP_LISTENER_SUBMISSIONS,
        .auth_plaintext_loopback = c->auth_allow_plaintext_loopback,
        .vrfy = c->vrfy,
        .max_message_size = c->max_message_size,
        .max_line_length = c->max_line_length,
        .max_recipients = c->max_recipients,
        .max_errors = c->max_errors,
    };
    if (s->service == SRV_SERVICE_SMTP) {
        s->smtp = smtp_session_new(&cfg, &hooks, s);
    } else {
        struct pop3_session_cfg pcfg = {
            .hostname = c->hostname,
            .peer_addr = s->peer,
            .peer_loopback = loopback,
            .tls_active = s->service == SRV_SERVICE_POP3S,
            .tls_available = w->a->tls != NULL && s->service == SRV_SERVICE_POP3,
            .auth_plaintext_loopback = c->auth_allow_plaintext_loopback,
            .max_errors = c->max_errors,
        };
        s->pop3 = pop3_session_new(&pcfg, &pop3_hooks, s);
    }
    log_debug("connection from %s port %u on %s port %u: worker %u (pid %d)", s->peer,
              peer_port(sa), listener_name(s), wl->l->port, w->a->index, (int)getpid());

    if (implicit_tls(wl->l)) {
        struct err e;
        SSL *ssl = w->a->tls ? tls_server_ssl_new(w->a->tls, &e) : NULL;
        if (!ssl) {
            log_error("%s: TLS: %s", s->peer, w->a->tls ? e.text : "no certificate");
            close(fd);
            s->fd = -1;
            session_free(s);
            return;
        }
        s->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
        if (!s->bev)
            SSL_free(ssl);
        s->tls = true;
        s->handshaking = true;
    } else {
        s->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_DEFER_CALLBACKS);
    }
    if (!s->bev) {
        log_error("%s: cannot set up the connection", s->peer);
        close(fd);
        s->fd = -1;
        session_free(s);
        return;
    }
    if (s->tls)
        bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH_WATER);
    if (s->handshaking) {
        set_read_timeout(s, HANDSHAKE_SECONDS);
        bufferevent_enable(s->bev, EV_READ | EV_WRITE);
        return;
    }
    bufferevent_enable(s->bev, EV_WRITE);
    session_pump(s);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();

    (void)lev;
    (void)arg;
    /* EMFILE and friends: keep listening, the next accept may work. */
    log_warn("accept: %s", evutil_socket_error_to_string(err));
}

/* ---- the loop ----------------------------------------------------------- */

static void on_deliverer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    deliverer_reap(w->deliverer);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    ssize_t r;

    (void)fd;
    (void)what;
    r = write(w->a->heartbeat_fd, "h", 1);
    (void)r;   /* a full pipe means the supervisor is behind: no harm */
}

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    log_warn("worker %u: %u sessions still open after %d s, closing them", w->a->index,
             w->n_sessions, STOP_SECONDS);
    event_base_loopexit(w->base, NULL);
}

static void close_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->n_wl; i++) {
        if (w->wl[i].lev) {
            evconnlistener_free(w->wl[i].lev);
            w->wl[i].lev = NULL;
        }
    }
}

/* After a reload: newer workers take the new connections; the sessions
 * here go on undisturbed until they end, then the worker exits. */
static void worker_retire(struct worker *w)
{
    if (w->retiring || w->stopping)
        return;
    w->retiring = true;
    log_info("worker %u: replaced, %u sessions to finish", w->a->index, w->n_sessions);
    close_listeners(w);
    update_capacity(w);
    if (w->n_sessions == 0)
        event_base_loopexit(w->base, NULL);
}

static void worker_stop(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    log_info("worker %u: stopping, %u sessions open", w->a->index, w->n_sessions);
    close_listeners(w);
    update_capacity(w);
    struct timeval tv = {STOP_SECONDS, 0};
    w->stop_timer = evtimer_new(w->base, on_stop_timer, w);
    evtimer_add(w->stop_timer, &tv);

    /* Sessions may free themselves while we walk: collect first. */
    size_t n = w->n_sessions, k = 0;
    struct session **all = xcalloc(n ? n : 1, sizeof *all);
    for (struct session *s = w->sessions; s && k < n; s = s->next)
        all[k++] = s;
    for (size_t i = 0; i < k; i++) {
        struct session *s = all[i];
        if (s->dead || s->closing)
            continue;
        if (s->handshaking) {
            session_free(s);
            continue;
        }
        if (s->pop3)
            pop3_session_shutdown(s->pop3);
        else
            smtp_session_shutdown(s->smtp);
        session_pump(s);
    }
    free(all);
    if (w->n_sessions == 0)
        event_base_loopexit(w->base, NULL);
}

static void on_idle_timer(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    if (w->n_sessions || w->stopping || w->retiring)
        return;
    log_debug("worker %u: idle for %d s, exiting", w->a->index, EXTRA_IDLE_SECONDS);
    w->retiring = true;
    close_listeners(w);
    publish_load(w);
    event_base_loopexit(w->base, NULL);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    if (sig == SIGUSR2)
        worker_retire(arg);
    else
        worker_stop(arg);
}

/* The supervisor forks with its signals blocked, so none can reach the
 * handlers inherited from it; they stay blocked until ours are in place. */
static void reset_signals(void)
{
    static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGCHLD, SIGALRM};
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);    /* the supervisor decides */
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int worker_main(struct worker_args *a)
{
    struct worker w;
    struct err e;
    int rc = 0;

    memset(&w, 0, sizeof w);
    w.a = a;
    w.c = a->conf;
    /* The supervisor's copy may be older than the files (this worker may
     * be a restart long after the load): the first lookup re-reads them. */
    w.users = a->users;
    w.users_stale = true;
    reset_signals();

    w.base = event_base_new();
    if (!w.base) {
        log_error("worker %u: cannot create an event loop", a->index);
        return 1;
    }
    /* A worker of a few sessions needs no more threads than it has sessions. */
    unsigned threads = w.c->delivery_threads ? w.c->delivery_threads : 4;
    if (w.c->worker_sessions && threads > w.c->worker_sessions)
        threads = w.c->worker_sessions;
    if (deliverer_new(threads, &w.deliverer, &e) < 0) {
        log_error("worker %u: %s", a->index, e.text);
        event_base_free(w.base);
        return 1;
    }
    w.deliver_ev = event_new(w.base, deliverer_fd(w.deliverer), EV_READ | EV_PERSIST,
                             on_deliverer, &w);
    event_add(w.deliver_ev, NULL);

    struct timeval second = {1, 0};
    w.heartbeat_ev = event_new(w.base, -1, EV_PERSIST, on_heartbeat, &w);
    event_add(w.heartbeat_ev, &second);
    on_heartbeat(-1, 0, &w);

    w.term_ev = evsignal_new(w.base, SIGTERM, on_term, &w);
    event_add(w.term_ev, NULL);
    w.retire_ev = evsignal_new(w.base, SIGUSR2, on_term, &w);
    event_add(w.retire_ev, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    w.wl = xcalloc(a->n_listeners ? a->n_listeners : 1, sizeof *w.wl);
    w.n_wl = a->n_listeners;
    for (size_t i = 0; i < a->n_listeners; i++) {
        w.wl[i].w = &w;
        w.wl[i].l = &a->listeners[i];
        if (implicit_tls(&a->listeners[i]) && !a->tls)
            continue;
        /* A copy of the supervisor's socket: closing it here closes only ours. */
        w.wl[i].lev = evconnlistener_new(w.base, on_accept, &w.wl[i],
                                         LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                                             LEV_OPT_CLOSE_ON_FREE,
                                         -1, a->listeners[i].fd);
        if (!w.wl[i].lev) {
            log_error("worker %u: cannot listen on %s port %u", a->index,
                      a->listeners[i].addr, a->listeners[i].port);
            rc = 1;
            break;
        }
        evconnlistener_set_error_cb(w.wl[i].lev, on_accept_error);
    }
    if (a->on_demand) {
        w.idle_timer = evtimer_new(w.base, on_idle_timer, &w);
        struct timeval tv = {EXTRA_IDLE_SECONDS, 0};
        evtimer_add(w.idle_timer, &tv);
    }
    publish_load(&w);
    if (rc == 0) {
        log_debug("worker %u: serving", a->index);
        event_base_dispatch(w.base);
    }

    /* Close every connection; deliveries in flight complete into sessions
     * marked dead, which their callbacks then free. */
    close_listeners(&w);
    while (w.sessions) {
        struct session *s = w.sessions;
        struct session *next;
        /* Walk past sessions kept only for their delivery. */
        while (s && s->dead && (s->delivering || s->fs_busy))
            s = s->next;
        if (!s)
            break;
        next = s->next;
        (void)next;
        session_free(s);
    }
    w.stopping = w.retiring = false;   /* no loopexit from the callbacks below */
    fs_stop(&w);
    deliverer_free(w.deliverer);
    event_free(w.deliver_ev);
    event_free(w.heartbeat_ev);
    event_free(w.term_ev);
    event_free(w.retire_ev);
    if (w.stop_timer)
        event_free(w.stop_timer);
    if (w.idle_timer)
        event_free(w.idle_timer);
    free(w.wl);
    if (w.users != a->users)
        users_free(w.users);
    event_base_free(w.base);
    log_debug("worker %u: exiting", a->index);
    return rc;
}
