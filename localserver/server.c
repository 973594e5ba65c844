/*
 * server: `correod run`, the supervisor process.
 *
 * Owns the process model: loading the config, opening the log, binding the
 * listening sockets, the pid file, dropping privileges, daemonizing, and
 * then the supervisor loop that forks the worker processes (worker.h) and
 * the queue runner (relay.h), restarts them when they die or hang, reloads
 * on SIGHUP, forwards SIGUSR1 to the runner and stops everything gracefully
 * on SIGTERM/SIGINT.  The supervisor itself never touches a client
 * connection, so nothing a client does can take it down.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "conf.h"
#include "log.h"
#include "tls.h"
#include "users.h"
#include "worker.h"
#include "xalloc.h"

#ifdef HAVE_QUEUE
#include "queue.h"
#endif
#ifdef HAVE_RELAY
#include "relay.h"
#endif

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESET_MS 60000      /* up this long: the next failure starts over */
#define HEARTBEAT_LIMIT_MS 10000    /* a worker silent this long is hung */
#define STOP_LIMIT_MS 30000         /* graceful stop bound, then SIGKILL */

enum child_kind { CHILD_WORKER, CHILD_RUNNER };

struct child {
    pid_t pid;
    enum child_kind kind;
    unsigned slot;              /* worker index in its generation */
    unsigned gen;
    int row;                    /* shm row, -1 for the runner */
    int hb_fd;                  /* heartbeat pipe, read end, or -1 */
    int64_t started_ms;
    int64_t last_beat_ms;
    bool retiring;              /* an older generation told to stop */
    bool hang_killed;
};

struct slot {
    int64_t restart_at_ms;
    int64_t backoff_ms;
};

/* What a generation of children is started with. */
struct generation {
    struct conf *conf;
    struct tls_server *tls;
    struct user_db *users;
};

struct supervisor {
    struct generation cur;
    int64_t extra_at_ms;        /* no on-demand worker before this (crash loop) */
    unsigned gen;
    bool foreground;
    struct srv_listener *listeners;
    size_t n_listeners;
    struct srv_shm *shm;
    bool row_used[SHM_ROWS];
    struct child *children;
    size_t n_children;
    struct slot *slots;         /* cur.conf->workers of them */
    size_t n_slots;
    struct slot runner;
    bool stopping;
    int64_t stop_deadline_ms;
    bool stop_killed;
    char *pid_file;
};

static int self_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_hup, got_term, got_chld, got_usr1;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig)
{
    int saved = errno;

    switch (sig) {
    case SIGHUP: got_hup = 1; break;
    case SIGTERM: case SIGINT: got_term = 1; break;
    case SIGCHLD: got_chld = 1; break;
    case SIGUSR1: got_usr1 = 1; break;
    default: break;
    }
    if (self_pipe[1] >= 0) {
        ssize_t r = write(self_pipe[1], "s", 1);
        (void)r;
    }
    errno = saved;
}

static int install_signals(struct err *e)
{
    static const int sigs[] = {SIGHUP, SIGTERM, SIGINT, SIGCHLD, SIGUSR1};
    struct sigaction sa;

    if (pipe2(self_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return err_sys(e, "pipe");
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < ARRAY_LEN(sigs); i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            return err_sys(e, "sigaction");
    sa.sa_handler = SIG_IGN;
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
    return 0;
}

/* ---- listeners ---------------------------------------------------------- */

static void strip_brackets(const char *in, char *out, size_t size)
{
    size_t n = strlen(in);

    if (n >= 2 && in[0] == '[' && in[n - 1] == ']')
        snprintf(out, size, "%.*s", (int)(n - 2), in + 1);
    else
        snprintf(out, size, "%s", in);
}

static int bind_one(const char *addr, unsigned port, struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], serv[16];
    int fd, one = 1, r;

    strip_brackets(addr, host, sizeof host);
    snprintf(serv, sizeof serv, "%u", port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    r = getaddrinfo(host, serv, &hints, &res);
    if (r != 0)
        return err_set(e, ERR_INVAL, "listen address %s: %s", addr, gai_strerror(r));
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_sys(e, "cannot listen on %s port %u: socket", addr, port);
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        err_sys(e, "cannot listen on %s port %u: bind", addr, port);
        goto fail;
    }
    if (listen(fd, 511) < 0) {
        err_sys(e, "cannot listen on %s port %u: listen", addr, port);
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    close(fd);
    freeaddrinfo(res);
    return -1;
}

struct port_spec {
    enum srv_service service;
    enum smtp_listener kind;
    unsigned port;
};

#define MAX_PORT_SPECS 5

static size_t wanted_ports(const struct conf *c, struct port_spec out[MAX_PORT_SPECS])
{
    size_t n = 0;

    if (c->smtp_port)
        out[n++] = (struct port_spec){SRV_SERVICE_SMTP, SMTP_LISTENER_MX, c->smtp_port};
    if (c->submission_port)
        out[n++] = (struct port_spec){SRV_SERVICE_SMTP, SMTP_LISTENER_SUBMISSION,
                                      c->submission_port};
    if (c->submissions_port && c->tls_cert)
        out[n++] = (struct port_spec){SRV_SERVICE_SMTP, SMTP_LISTENER_SUBMISSIONS,
                                      c->submissions_port};
    if (c->pop3_port)
        out[n++] = (struct port_spec){SRV_SERVICE_POP3, SMTP_LISTENER_MX, c->pop3_port};
    if (c->pop3s_port && c->tls_cert)
        out[n++] = (struct port_spec){SRV_SERVICE_POP3S, SMTP_LISTENER_MX, c->pop3s_port};
    return n;
}

static int bind_all(struct supervisor *sp, struct err *e)
{
    const struct conf *c = sp->cur.conf;
    struct port_spec ports[MAX_PORT_SPECS];
    size_t np = wanted_ports(c, ports);

    if (c->submissions_port && !c->tls_cert)
        log_warn("no tls_cert: port %u (implicit TLS) is not served", c->submissions_port);
    if (c->pop3s_port && !c->tls_cert)
        log_warn("no tls_cert: port %u (implicit TLS) is not served", c->pop3s_port);
    sp->listeners = xcalloc(c->n_listen * np + 1, sizeof *sp->listeners);
    for (size_t i = 0; i < c->n_listen; i++) {
        for (size_t k = 0; k < np; k++) {
            int fd = bind_one(c->listen[i], ports[k].port, e);
            if (fd < 0)
                return -1;
            struct srv_listener *l = &sp->listeners[sp->n_listeners++];
            l->fd = fd;
            l->service = ports[k].service;
            l->kind = ports[k].kind;
            l->addr = xstrdup(c->listen[i]);
            l->port = ports[k].port;
            log_info("listening on %s port %u", l->addr, l->port);
        }
    }
    if (sp->n_listeners == 0)
        return err_set(e, ERR_INVAL, "nothing to listen on (no address or every port off)");
    return 0;
}

/* Would c need listeners other than those bound? */
static bool listeners_differ(const struct supervisor *sp, const struct conf *c)
{
    struct port_spec ports[MAX_PORT_SPECS];
    size_t np = wanted_ports(c, ports);

    if (c->n_listen * np != sp->n_listeners)
        return true;
    for (size_t i = 0; i < c->n_listen; i++) {
        for (size_t k = 0; k < np; k++) {
            bool found = false;
            for (size_t j = 0; j < sp->n_listeners && !found; j++)
                found = strcmp(sp->listeners[j].addr, c->listen[i]) == 0 &&
                        sp->listeners[j].port == ports[k].port &&
                        sp->listeners[j].service == ports[k].service &&
                        sp->listeners[j].kind == ports[k].kind;
            if (!found)
                return true;
        }
    }
    return false;
}

/* ---- generations -------------------------------------------------------- */

static int load_generation(const char *path, struct generation *g, struct err *e)
{
    struct rc_diag diag;
    struct conf *c = NULL;

    memset(g, 0, sizeof *g);
    rc_diag_init(&diag);
    if (conf_load(path, &c, &diag, e) < 0) {
        for (size_t i = 0; i < diag.n; i++)
            log_error("%s", diag.msgs[i]);
        if (diag.dropped)
            log_error("(%zu more problems)", diag.dropped);
        if (diag.n)
            err_set(e, ERR_PARSE, "%s: %zu problem%s, not started", path,
                    diag.n + diag.dropped, diag.n + diag.dropped == 1 ? "" : "s");
        rc_diag_free(&diag);
        return -1;
    }
    rc_diag_free(&diag);
    g->conf = c;
    if (c->tls_cert && tls_server_new(&g->tls, c->tls_cert, c->tls_key, e) < 0)
        goto fail;
    struct user_db_opts o = {
        .users_file = c->users_file,
        .aliases_file = c->aliases_file,
        .domains = (const char *const *)c->domains,
        .n_domains = c->n_domains,
        .maildir_template = c->maildir_template,
    };
    if (users_load(&o, &g->users, e) < 0)
        goto fail;
    return 0;
fail:
    tls_server_free(g->tls);
    conf_free(c);
    memset(g, 0, sizeof *g);
    return -1;
}

static void free_generation(struct generation *g)
{
    if (g->users)
        users_free(g->users);
    tls_server_free(g->tls);
    if (g->conf)
        conf_free(g->conf);
    memset(g, 0, sizeof *g);
}

static void reset_slots(struct supervisor *sp)
{
    free(sp->slots);
    sp->n_slots = sp->cur.conf->workers ? sp->cur.conf->workers : 1;
    sp->slots = xcalloc(sp->n_slots, sizeof *sp->slots);
    for (size_t i = 0; i < sp->n_slots; i++)
        sp->slots[i].backoff_ms = BACKOFF_FIRST_MS;
    sp->runner.restart_at_ms = 0;
    sp->runner.backoff_ms = BACKOFF_FIRST_MS;
}

/* ---- children ----------------------------------------------------------- */

static const char *kind_name(enum child_kind k)
{
    return k == CHILD_WORKER ? "worker" : "queue runner";
}

/* In a new child: close what belongs to the supervisor alone. */
static void child_close_inherited(struct supervisor *sp)
{
    for (size_t i = 0; i < sp->n_children; i++)
        if (sp->children[i].hb_fd >= 0)
            close(sp->children[i].hb_fd);
    close(self_pipe[0]);
    close(self_pipe[1]);
    self_pipe[0] = self_pipe[1] = -1;
}

#ifdef HAVE_RELAY
static volatile sig_atomic_t runner_stop, runner_kick;

static void on_runner_signal(int sig)
{
    if (sig == SIGUSR1)
        runner_kick = 1;
    else
        runner_stop = 1;
}

static int runner_main(struct supervisor *sp)
{
    struct sigaction sa;
    sigset_t none;
    struct err e;

    for (size_t i = 0; i < sp->n_listeners; i++)
        close(sp->listeners[i].fd);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_runner_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (relay_run(sp->cur.conf, &runner_stop, &runner_kick, &e) < 0) {
        log_error("queue runner: %s", e.text);
        return 1;
    }
    return 0;
}
#endif

static int alloc_row(struct supervisor *sp)
{
    for (int r = 0; r < SHM_ROWS; r++) {
        if (!sp->row_used[r]) {
            sp->row_used[r] = true;
            atomic_store(&sp->shm->sessions[r], 0);
            atomic_store(&sp->shm->full[r], 0);
            if ((uint32_t)r >= atomic_load(&sp->shm->rows_used))
                atomic_store(&sp->shm->rows_used, (uint32_t)r + 1);
            return r;
        }
    }
    return -1;
}

static void free_row(struct supervisor *sp, int row)
{
    if (row < 0)
        return;
    /* A dead worker's connections are gone: forget them. */
    for (size_t b = 0; b < SHM_BUCKETS; b++)
        atomic_store(&sp->shm->conn[row][b], 0);
    atomic_store(&sp->shm->sessions[row], 0);
    atomic_store(&sp->shm->full[row], 0);
    sp->row_used[row] = false;
}

static void spawn(struct supervisor *sp, enum child_kind kind, unsigned slot)
{
    int hb[2] = {-1, -1};
    int row = -1;
    pid_t pid;

    if (kind == CHILD_WORKER) {
        row = alloc_row(sp);
        if (row < 0) {
            log_error("no free connection-table row for a new worker");
            return;
        }
        if (pipe2(hb, O_CLOEXEC | O_NONBLOCK) < 0) {
            log_error("heartbeat pipe: %s", strerror(errno));
            free_row(sp, row);
            return;
        }
    }
    /* No signal may run the supervisor's handlers in the child. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid = fork();
    if (pid != 0)
        sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        if (hb[0] >= 0) {
            close(hb[0]);
            close(hb[1]);
        }
        free_row(sp, row);
        return;
    }
    if (pid == 0) {
        int rc = 1;
        child_close_inherited(sp);
        if (kind == CHILD_WORKER) {
            close(hb[0]);
            struct worker_args a = {
                .conf = sp->cur.conf,
                .tls = sp->cur.tls,
                .users = sp->cur.users,
                .listeners = sp->listeners,
                .n_listeners = sp->n_listeners,
                .shm = sp->shm,
                .row = (unsigned)row,
                .heartbeat_fd = hb[1],
                .index = slot,
                .on_demand = slot >= sp->n_slots,
            };
            rc = worker_main(&a);
        }
#ifdef HAVE_RELAY
        else {
            rc = runner_main(sp);
        }
#endif
        exit(rc);
    }
    if (hb[1] >= 0)
        close(hb[1]);
    sp->children = xreallocarray(sp->children, sp->n_children + 1, sizeof *sp->children);
    struct child *ch = &sp->children[sp->n_children++];
    memset(ch, 0, sizeof *ch);
    ch->pid = pid;
    ch->kind = kind;
    ch->slot = slot;
    ch->gen = sp->gen;
    ch->row = row;
    ch->hb_fd = hb[0];
    ch->started_ms = ch->last_beat_ms = now_ms();
    log_info("started %s %u (pid %d)", kind_name(kind), slot, (int)pid);
}

static bool runner_wanted(void)
{
#ifdef HAVE_RELAY
    return true;
#else
    return false;
#endif
}

static unsigned max_workers(const struct supervisor *sp)
{
    unsigned m = sp->cur.conf->max_workers;

    return m < sp->n_slots ? (unsigned)sp->n_slots : m;
}

/* Every current worker full (worker_sessions reached): start one more, up
 * to max_workers, in the lowest free slot above the configured ones. */
static void spawn_on_demand(struct supervisor *sp, int64_t now)
{
    unsigned live = 0, room = 0;
    unsigned top = max_workers(sp);

    if (sp->cur.conf->worker_sessions == 0 || now < sp->extra_at_ms)
        return;
    for (size_t i = 0; i < sp->n_children; i++) {
        const struct child *ch = &sp->children[i];
        if (ch->kind != CHILD_WORKER || ch->retiring)
            continue;
        live++;
        if (!ch->hang_killed && ch->row >= 0 && !atomic_load(&sp->shm->full[ch->row]))
            room++;
    }
    if (room > 0 || live >= top)
        return;
    for (unsigned slot = (unsigned)sp->n_slots; slot < top; slot++) {
        bool used = false;
        for (size_t i = 0; i < sp->n_children && !used; i++) {
            const struct child *ch = &sp->children[i];
            used = ch->kind == CHILD_WORKER && !ch->retiring && ch->slot == slot;
        }
        if (!used) {
            spawn(sp, CHILD_WORKER, slot);
            return;
        }
    }
}

static void spawn_missing(struct supervisor *sp)
{
    int64_t now = now_ms();
    bool have_runner = false;

    for (size_t s = 0; s < sp->n_slots; s++) {
        bool alive = false;
        for (size_t i = 0; i < sp->n_children && !alive; i++) {
            const struct child *ch = &sp->children[i];
            alive = ch->kind == CHILD_WORKER && !ch->retiring && ch->slot == s;
        }
        if (!alive && now >= sp->slots[s].restart_at_ms)
            spawn(sp, CHILD_WORKER, (unsigned)s);
    }
    spawn_on_demand(sp, now);
    /* One runner at a time, old or new: it holds the queue lock. */
    for (size_t i = 0; i < sp->n_children; i++)
        have_runner |= sp->children[i].kind == CHILD_RUNNER;
    if (runner_wanted() && !have_runner && now >= sp->runner.restart_at_ms)
        spawn(sp, CHILD_RUNNER, 0);
}

static void describe_status(int status, char *out, size_t size)
{
    if (WIFEXITED(status))
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, size, "ended (status %d)", status);
}

static void child_gone(struct supervisor *sp, size_t idx, int status)
{
    struct child ch = sp->children[idx];
    int64_t now = now_ms();
    char what[128];
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;

    sp->children[idx] = sp->children[--sp->n_children];
    if (ch.hb_fd >= 0)
        close(ch.hb_fd);
    free_row(sp, ch.row);
    describe_status(status, what, sizeof what);
    if (sp->stopping || ch.retiring) {
        if (clean)
            log_info("%s %u (pid %d) %s", kind_name(ch.kind), ch.slot, (int)ch.pid, what);
        else
            log_warn("%s %u (pid %d) %s", kind_name(ch.kind), ch.slot, (int)ch.pid, what);
        if (ch.kind == CHILD_RUNNER)
            sp->runner.restart_at_ms = 0;   /* the new generation's starts now */
        return;
    }
    struct slot *sl = ch.kind == CHILD_RUNNER ? &sp->runner
                      : ch.slot < sp->n_slots ? &sp->slots[ch.slot] : NULL;
    if (!sl) {
        /* An on-demand worker: started again only when needed. */
        if (clean) {
            log_debug("%s %u (pid %d) %s", kind_name(ch.kind), ch.slot, (int)ch.pid, what);
        } else {
            log_error("%s %u (pid %d) %s%s", kind_name(ch.kind), ch.slot, (int)ch.pid, what,
                      ch.hang_killed ? " after a hang" : "");
            if (now - ch.started_ms < BACKOFF_FIRST_MS)
                sp->extra_at_ms = now + BACKOFF_FIRST_MS;   /* failing at start */
        }
        return;
    }
    if (now - ch.started_ms >= BACKOFF_RESET_MS)
        sl->backoff_ms = BACKOFF_FIRST_MS;
    sl->restart_at_ms = now + sl->backoff_ms;
    log_error("%s %u (pid %d) %s%s; restarting in %lld ms", kind_name(ch.kind), ch.slot,
              (int)ch.pid, what, ch.hang_killed ? " after a hang" : "",
              (long long)sl->backoff_ms);
    sl->backoff_ms *= 2;
    if (sl->backoff_ms > BACKOFF_MAX_MS)
        sl->backoff_ms = BACKOFF_MAX_MS;
}

static void reap(struct supervisor *sp)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        for (size_t i = 0; i < sp->n_children; i++) {
            if (sp->children[i].pid == pid) {
                child_gone(sp, i, status);
                break;
            }
        }
    }
}

static void signal_children(struct supervisor *sp, int sig, bool only_runner)
{
    for (size_t i = 0; i < sp->n_children; i++)
        if (!only_runner || sp->children[i].kind == CHILD_RUNNER)
            kill(sp->children[i].pid, sig);
}

static void check_heartbeats(struct supervisor *sp)
{
    int64_t now = now_ms();

    for (size_t i = 0; i < sp->n_children; i++) {
        struct child *ch = &sp->children[i];
        if (ch->kind != CHILD_WORKER || ch->hang_killed || ch->hb_fd < 0)
            continue;
        if (now - ch->last_beat_ms > HEARTBEAT_LIMIT_MS) {
            log_error("worker %u (pid %d) silent for %lld ms: killing it", ch->slot,
                      (int)ch->pid, (long long)(now - ch->last_beat_ms));
            kill(ch->pid, SIGKILL);
            ch->hang_killed = true;
        }
    }
}

static void read_heartbeats(struct supervisor *sp, const struct pollfd *pfd, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (!pfd[k].revents)
            continue;
        for (size_t i = 0; i < sp->n_children; i++) {
            struct child *ch = &sp->children[i];
            if (ch->hb_fd != pfd[k].fd)
                continue;
            char b[64];
            ssize_t r = read(ch->hb_fd, b, sizeof b);
            if (r > 0) {
                ch->last_beat_ms = now_ms();
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(ch->hb_fd);   /* it is going; SIGCHLD tells the rest */
                ch->hb_fd = -1;
            }
            break;
        }
    }
}

static void reload(struct supervisor *sp)
{
    struct generation g;
    struct err e;

    log_info("reloading %s", sp->cur.conf->path);
    if (load_generation(sp->cur.conf->path, &g, &e) < 0) {
        log_error("reload failed, still running the previous configuration: %s", e.text);
        return;
    }
#ifdef HAVE_QUEUE
    if (queue_init(g.conf->queue_dir, &e) < 0) {
        log_error("reload failed, still running the previous configuration: %s", e.text);
        free_generation(&g);
        return;
    }
#endif
    if (listeners_differ(sp, g.conf))
        log_warn("reload: listen addresses or ports changed; that needs a restart, "
                 "keeping the current listeners");
    log_set_level(g.conf->log_level);
    free_generation(&sp->cur);
    sp->cur = g;
    sp->gen++;
    for (size_t i = 0; i < sp->n_children; i++) {
        struct child *ch = &sp->children[i];
        if (!ch->retiring) {
            /* Workers stop accepting but keep their sessions (SIGUSR2);
             * the runner stops and a new one starts after it. */
            ch->retiring = true;
            kill(ch->pid, ch->kind == CHILD_WORKER ? SIGUSR2 : SIGTERM);
        }
    }
    reset_slots(sp);
    log_info("reloaded: %u workers with the new configuration", (unsigned)sp->n_slots);
}

static void begin_stop(struct supervisor *sp)
{
    if (sp->stopping)
        return;
    sp->stopping = true;
    sp->stop_deadline_ms = now_ms() + STOP_LIMIT_MS;
    log_info("stopping: %zu children to finish", sp->n_children);
    signal_children(sp, SIGTERM, false);
}

static void supervise(struct supervisor *sp)
{
    struct pollfd *pfd = NULL;

    for (;;) {
        if (got_chld) {
            got_chld = 0;
            reap(sp);
        }
        if (got_term) {
            got_term = 0;
            begin_stop(sp);
        }
        if (got_hup) {
            got_hup = 0;
            if (!sp->stopping)
                reload(sp);
        }
        if (got_usr1) {
            got_usr1 = 0;
            signal_children(sp, SIGUSR1, true);
        }
        reap(sp);
        if (sp->stopping) {
            if (sp->n_children == 0)
                break;
            if (!sp->stop_killed && now_ms() >= sp->stop_deadline_ms) {
                log_warn("%zu children did not stop in time: killing them", sp->n_children);
                signal_children(sp, SIGKILL, false);
                sp->stop_killed = true;
            }
        } else {
            spawn_missing(sp);
            check_heartbeats(sp);
        }

        /* Sleep until a signal, a heartbeat, or at most a second. */
        pfd = xreallocarray(pfd, sp->n_children + 1, sizeof *pfd);
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = self_pipe[0], .events = POLLIN};
        for (size_t i = 0; i < sp->n_children; i++)
            if (sp->children[i].hb_fd >= 0)
                pfd[n++] = (struct pollfd){.fd = sp->children[i].hb_fd, .events = POLLIN};
        int64_t timeout = 1000, now = now_ms();
        for (size_t s = 0; s < sp->n_slots && !sp->stopping; s++)
            if (sp->slots[s].restart_at_ms > now && sp->slots[s].restart_at_ms - now < timeout)
                timeout = sp->slots[s].restart_at_ms - now;
        if (poll(pfd, n, (int)timeout) > 0) {
            if (pfd[0].revents) {
                char b[64];
                while (read(self_pipe[0], b, sizeof b) > 0)
                    ;
            }
            read_heartbeats(sp, pfd + 1, n - 1);
        }
    }
    free(pfd);
}

/* ---- process setup ------------------------------------------------------ */

static int write_pid_file(const char *path, struct err *e)
{
    char line[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int n = snprintf(line, sizeof line, "%d\n", (int)getpid());

    if (fd < 0)
        return err_sys(e, "pid file %s", path);
    if (write(fd, line, (size_t)n) != n) {
        err_sys(e, "pid file %s", path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return err_sys(e, "pid file %s", path);
    return 0;
}

static int drop_privileges(const char *user, struct err *e)
{
    struct passwd *pw = getpwnam(user);

    if (!pw)
        return err_set(e, ERR_NOTFOUND, "run_user %s: no such user", user);
    if (initgroups(pw->pw_name, pw->pw_gid) < 0)
        return err_sys(e, "initgroups(%s)", user);
    if (setgid(pw->pw_gid) < 0)
        return err_sys(e, "setgid(%u)", (unsigned)pw->pw_gid);
    if (setuid(pw->pw_uid) < 0)
        return err_sys(e, "setuid(%u)", (unsigned)pw->pw_uid);
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
        return err_set(e, ERR_INVAL, "dropping privileges to %s did not stick", user);
    log_info("running as %s (uid %u)", user, (unsigned)pw->pw_uid);
    return 0;
}

static int daemonize(struct err *e)
{
    pid_t pid = fork();
    int fd;

    if (pid < 0)
        return err_sys(e, "fork");
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return err_sys(e, "setsid");
    if (chdir("/") < 0)
        return err_sys(e, "chdir /");
    fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return err_sys(e, "/dev/null");
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
    return 0;
}

static void run_usage(void)
{
    fputs("usage: correod run [-c CONFIG] [-f]\n", stderr);
}

int cmd_run(int argc, char **argv)
{
    const char *path = conf_default_path();
    struct supervisor sp;
    struct err e;
    int opt, rc = 1;

    memset(&sp, 0, sizeof sp);
    optind = 1;
    while ((opt = getopt(argc, argv, "c:fh")) != -1) {
        switch (opt) {
        case 'c': path = optarg; break;
        case 'f': sp.foreground = true; break;
        case 'h': run_usage(); return 0;
        default: run_usage(); return 2;
        }
    }
    if (optind != argc) {
        run_usage();
        return 2;
    }

    (void)log_open("correod", LOG_TO_STDERR, NULL, NULL);
    log_set_level(LOGL_INFO);
    if (load_generation(path, &sp.cur, &e) < 0) {
        log_error("%s", e.text);
        return 1;
    }
    const struct conf *c = sp.cur.conf;
    enum log_target target = c->log_target_set ? c->log_target
                             : sp.foreground  ? LOG_TO_STDERR
                                              : LOG_TO_SYSLOG;
    if (log_open("correod", target, c->log_file, &e) < 0) {
        log_error("%s", e.text);
        goto out;
    }
    log_set_level(c->log_level);
    if (install_signals(&e) < 0 || bind_all(&sp, &e) < 0) {
        log_error("%s", e.text);
        goto out;
    }
    sp.shm = mmap(NULL, sizeof *sp.shm, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    if (sp.shm == MAP_FAILED) {
        sp.shm = NULL;
        log_error("shared memory: %s", strerror(errno));
        goto out;
    }
    if (!sp.foreground && daemonize(&e) < 0) {
        log_error("%s", e.text);
        goto out;
    }
    if (c->pid_file) {
        if (write_pid_file(c->pid_file, &e) < 0) {
            log_error("%s", e.text);
            goto out;
        }
        sp.pid_file = xstrdup(c->pid_file);
    }
    if (geteuid() == 0) {
        if (c->run_user) {
            if (drop_privileges(c->run_user, &e) < 0) {
                log_error("%s", e.text);
                goto out;
            }
        } else {
            log_warn("running as root: set run_user to drop privileges");
        }
    }
#ifdef HAVE_QUEUE
    /* As the user that will write it. */
    if (queue_init(c->queue_dir, &e) < 0) {
        log_error("%s", e.text);
        goto out;
    }
#endif
    reset_slots(&sp);
    log_info("correod %s started (pid %d): %u workers, up to %u, %u sessions each%s",
             CORREO_VERSION, (int)getpid(), (unsigned)sp.n_slots, max_workers(&sp),
             c->worker_sessions, c->worker_sessions ? "" : " (no limit)");
    supervise(&sp);
    log_info("stopped");
    rc = 0;
out:
    if (sp.pid_file) {
        /* After dropping privileges the directory may not let us. */
        if (unlink(sp.pid_file) < 0 && errno != ENOENT)
            log_info("pid file %s left in place: %s", sp.pid_file, strerror(errno));
        free(sp.pid_file);
    }
    for (size_t i = 0; i < sp.n_listeners; i++) {
        close(sp.listeners[i].fd);
        free(sp.listeners[i].addr);
    }
    free(sp.listeners);
    free(sp.children);
    free(sp.slots);
    if (sp.shm)
        munmap(sp.shm, sizeof *sp.shm);
    free_generation(&sp.cur);
    if (self_pipe[0] >= 0) {
        close(self_pipe[0]);
        close(self_pipe[1]);
        self_pipe[0] = self_pipe[1] = -1;
    }
    return rc;
}
