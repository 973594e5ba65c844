/*
 * worker: one correod worker process (internal to server.c).
 *
 * A worker is an event loop serving the listening sockets its supervisor
 * bound: each connection is an SMTP session (smtp_proto) or a POP3 session
 * (pop3_proto over pop3_store) glued to a libevent bufferevent, plain or
 * TLS, with SMTP deliveries running on the worker's deliverer threads.  The supervisor forks it after building
 * everything it needs (config, TLS context, user database) so that a
 * broken reload never reaches a running worker.
 *
 * Workers share one small anonymous shared-memory table made by the
 * supervisor before the first fork: per-IP connection counts (one row per
 * worker, written only by that worker, summed by readers; a row is zeroed
 * by the supervisor when its worker dies, so a crash never leaks counts)
 * and per-IP AUTH failure counts for the growing delay, and each worker's
 * session count and "full" flag.
 *
 * A worker serves at most conf->worker_sessions sessions at once (0: no
 * limit); when it has that many it stops accepting (its listeners are
 * disabled, and a byte on the heartbeat pipe wakes the supervisor, which
 * starts another worker if none has room) until one ends.  With the
 * default of 1 every session is its own process: a crash or a hang in one
 * session (the heartbeat watchdog kills a hung worker) ends that session
 * alone.  Workers started on demand exit after EXTRA_IDLE_SECONDS idle.
 */
#ifndef CORREOD_WORKER_H
#define CORREOD_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "smtp_proto.h"
#include "tls.h"
#include "users.h"

/* What a listening socket serves. */
enum srv_service {
    SRV_SERVICE_SMTP = 0,       /* kind says which SMTP listener */
    SRV_SERVICE_POP3,           /* 110: STLS */
    SRV_SERVICE_POP3S,          /* 995: implicit TLS */
};

/* One bound listening socket. */
struct srv_listener {
    int fd;
    enum srv_service service;
    enum smtp_listener kind;    /* SMTP only */
    char *addr;                 /* address literal as configured */
    unsigned port;
};

#define SHM_BUCKETS 4096        /* per-IP hash buckets (power of two) */
#define SHM_ROWS 520            /* worker rows: up to 256 workers, old and new */
#define EXTRA_IDLE_SECONDS 30   /* an on-demand worker idle this long exits */

struct srv_shm {
    _Atomic uint32_t rows_used;  /* rows below this may be non-zero */
    /* conn[row][bucket]: connections of that worker from IPs hashing there */
    _Atomic uint32_t conn[SHM_ROWS][SHM_BUCKETS];
    /* AUTH failures per IP bucket, and when the last one happened */
    _Atomic uint32_t auth_fail[SHM_BUCKETS];
    _Atomic int64_t auth_fail_at[SHM_BUCKETS];
    /* Per worker row, written by that worker: its open sessions, and 1
     * while it takes no new connection (full, retiring or stopping), so
     * the supervisor knows when to start another worker. */
    _Atomic uint32_t sessions[SHM_ROWS];
    _Atomic uint32_t full[SHM_ROWS];
};

struct worker_args {
    const struct conf *conf;
    struct tls_server *tls;             /* NULL: no STARTTLS, no 465 */
    struct user_db *users;              /* loaded by the supervisor */
    const struct srv_listener *listeners;
    size_t n_listeners;
    struct srv_shm *shm;
    unsigned row;                       /* this worker's row in shm->conn */
    int heartbeat_fd;                   /* write end: one byte a second */
    unsigned index;                     /* for log lines */
    bool on_demand;                     /* started because every worker was
                                           full: exits after a while idle */
};

/* Run the worker until it is told to stop (SIGTERM) and its sessions are
 * gone; returns the process exit status. */
int worker_main(struct worker_args *a);

/* Hash an address (4 or 16 bytes) into a shm bucket. */
size_t shm_bucket(const unsigned char *addr, size_t len);

#endif
