/*
 * conf: correod.conf, the server's one configuration file.
 *
 * The file uses lib/rcfile syntax; every command is an option name followed
 * by its value(s):
 *
 *   hostname     mail.example.org
 *   domains      example.org example.net
 *   listen       127.0.0.1 ::1
 *   port_offset  10000
 *   tls_cert     cert.pem
 *
 * Relative paths are taken from the directory of the config file, so an
 * instance made by `correod init DIR` can be moved as a whole.  Durations
 * accept s/m/h/d suffixes (plain numbers are seconds), sizes k/M/G (plain
 * numbers are bytes).  Every problem is reported as "file:line: message";
 * conf_load() fails if there is any, so a server never runs on a config it
 * half understood.
 */
#ifndef CORREOD_CONF_H
#define CORREOD_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "log.h"
#include "rcfile.h"

/* Where mail for a domain goes instead of its MX (tests, split setups). */
struct conf_route {
    char *domain;           /* lower case; "*" matches every domain */
    char *host;             /* name or address literal */
    unsigned port;
    enum conf_tls_mode {
        CONF_TLS_OPPORTUNISTIC = 0, /* STARTTLS when offered, unverified */
        CONF_TLS_STARTTLS,          /* STARTTLS required and verified */
        CONF_TLS_IMPLICIT,          /* TLS from the first byte, verified */
        CONF_TLS_NONE,              /* plain text only */
    } tls;
};

struct conf {
    char *path;                 /* the file loaded (absolute) */
    char *dir;                  /* its directory */

    /* identity */
    char *hostname;             /* EHLO/greeting/Received name; default gethostname() */
    char **domains;             /* local domains, lower case; [0] is the default */
    size_t n_domains;

    /* listening: each address gets each enabled port */
    char **listen;              /* default "127.0.0.1" */
    size_t n_listen;
    unsigned port_offset;       /* added to every default port */
    unsigned smtp_port;         /* 0 = off; default 25 + offset */
    unsigned submission_port;   /* default 587 + offset (STARTTLS) */
    unsigned submissions_port;  /* default 465 + offset (implicit TLS) */
    unsigned pop3_port;         /* default 110 + offset (STLS) */
    unsigned pop3s_port;        /* default 995 + offset (implicit TLS) */

    /* process */
    char *run_user;             /* drop to this user when started as root; NULL: stay */
    char *pid_file;             /* default DIR/correod.pid */
    unsigned workers;           /* event-loop worker processes, default 2 */
    unsigned delivery_threads;  /* per worker, default 4 */
    unsigned worker_sessions;   /* sessions one worker serves at once; 0 = no limit;
                                   default 1 (each session its own process) */
    unsigned max_workers;       /* workers started when all are full, default 128 */

    /* users and storage */
    char *users_file;           /* passwd-file format (Dovecot's) */
    char *aliases_file;         /* NULL: none */
    char *maildir_template;     /* %u user@domain, %n local part, %d domain, %h home */
    char *queue_dir;            /* outbound queue and local retries */

    /* TLS */
    char *tls_cert;             /* PEM; NULL: no STARTTLS, no 465 */
    char *tls_key;

    /* policy */
    bool auth_allow_plaintext_loopback; /* AUTH without TLS from 127/8, ::1 */
    bool vrfy;                  /* VRFY answers (default off: 502) */
    size_t max_message_size;    /* default 25 MiB; SIZE advertises it */
    unsigned max_recipients;    /* per message, default 100 */
    unsigned max_errors;        /* bad commands before 421 and close, default 10 */
    size_t max_line_length;     /* command and text lines, default 4096 */
    unsigned timeout_command;   /* seconds waiting for a command, default 300 */
    unsigned timeout_data;      /* seconds between DATA/BDAT reads, default 600 */
    unsigned max_connections;   /* per worker, default 1000 */
    unsigned max_connections_per_ip; /* across the server, default 20 */
    unsigned auth_fail_delay;   /* seconds after the first AUTH failure, doubling per
                                   failure of the same client, capped at 30; default 2 */

    /* logging */
    enum log_target log_target; /* default: stderr in the foreground, else syslog */
    bool log_target_set;
    char *log_file;
    enum log_level log_level;   /* default info */

    /* outbound */
    char *smarthost;            /* NULL: deliver to each domain's MX */
    unsigned smarthost_port;    /* default 587 */
    enum conf_tls_mode smarthost_tls; /* default CONF_TLS_STARTTLS */
    char *smarthost_user;
    char *smarthost_pass;
    char *smarthost_pass_cmd;   /* run without a shell: argv split by rcfile words */
    char *smarthost_ca_file;    /* extra trust anchor */
    char *smarthost_fingerprint;/* sha256 pin, "sha256:..." */
    struct conf_route *routes;  /* `route DOMAIN HOST[:PORT] [opportunistic|starttls|tls|none]` */
    size_t n_routes;
    unsigned queue_lifetime;    /* seconds, default 5 days */
    unsigned retry_min;         /* first retry delay, default 5 min; doubles */
    unsigned retry_max;         /* cap on the delay, default 1 h */

    /* DKIM (all three or none) */
    char *dkim_domain;
    char *dkim_selector;
    char *dkim_key;             /* PEM private key file */
};

/* $CORREOD_CONF if set, else /etc/correod/correod.conf. */
const char *conf_default_path(void);

/* Load and check path.  Problems go to diag (may be NULL) as
 * "file:line: message"; any problem makes this fail with *e summarising
 * them.  Defaults are applied and relative paths resolved. */
int conf_load(const char *path, struct conf **out, struct rc_diag *diag, struct err *e);

/* conf_load with flags: CONF_LOAD_NO_TLS_FILES does not require tls_cert
 * and tls_key to be readable yet (for `correod gencert`, which makes them). */
#define CONF_LOAD_NO_TLS_FILES 0x1u
int conf_load_flags(const char *path, unsigned flags, struct conf **out,
                    struct rc_diag *diag, struct err *e);
void conf_free(struct conf *c);

/* Is domain (any case) one of ours? */
bool conf_is_local_domain(const struct conf *c, const char *domain);

/* Parse "30", "30s", "5m", "2h", "5d" into seconds; "25M", "1024k", "1G"
 * into bytes.  -1 on bad syntax or overflow. */
int conf_parse_duration(const char *s, unsigned *out);
int conf_parse_size(const char *s, size_t *out);

#endif
