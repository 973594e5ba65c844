/*
 * conf: loading and checking correod.conf.
 *
 * Every option is a row of one table (name, kind, where in struct conf, the
 * default); one handler per kind parses the value.  After the file is read,
 * defaults are filled in and the checks that involve several options run,
 * each reported at the line of the option it is about.
 */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "tls.h"

#define PORT_SMTP 25u
#define PORT_SUBMISSION 587u
#define PORT_SUBMISSIONS 465u
#define PORT_POP3 110u
#define PORT_POP3S 995u
#define PORT_MAX 65535u
#define HOSTNAME_MAX 253

enum kind {
    K_STR,          /* one word, kept as is */
    K_USER,         /* a user name (must exist) */
    K_PATH,         /* a file or directory; relative to the config's directory */
    K_TEMPLATE,     /* maildir template: a path with %u %n %d %h */
    K_HOST,         /* a host name */
    K_HOSTPORT,     /* HOST[:PORT] (smarthost) */
    K_UINT,         /* unsigned in [min, max] */
    K_PORT,         /* 0..65535, 0 = off */
    K_BOOL,
    K_DURATION,     /* seconds, in [min, max] */
    K_SIZE,         /* bytes, in [min, max] */
    K_DOMAINS,      /* several domains, accumulating */
    K_ADDRS,        /* several IP literals, accumulating */
    K_LOGLEVEL,
    K_LOGTARGET,
    K_TLSMODE,
    K_ROUTE,        /* repeatable route DOMAIN HOST[:PORT] [MODE] */
    K_CMD,          /* a command line, kept rc-quoted */
    K_FINGERPRINT,  /* a SHA-256 pin */
    K_SELECTOR,     /* a DKIM selector */
};

struct option {
    const char *name;
    enum kind kind;
    size_t off;
    const char *def;            /* applied when the option is not given */
    unsigned long long min, max;
};

#define OFF(f) offsetof(struct conf, f)
#define NO_DEF NULL

static const struct option options[] = {
    { "hostname", K_HOST, OFF(hostname), NO_DEF, 0, 0 },
    { "domains", K_DOMAINS, OFF(domains), NO_DEF, 0, 0 },
    { "listen", K_ADDRS, OFF(listen), "127.0.0.1", 0, 0 },
    { "port_offset", K_UINT, OFF(port_offset), "0", 0, PORT_MAX },
    { "smtp_port", K_PORT, OFF(smtp_port), NO_DEF, 0, PORT_MAX },
    { "submission_port", K_PORT, OFF(submission_port), NO_DEF, 0, PORT_MAX },
    { "submissions_port", K_PORT, OFF(submissions_port), NO_DEF, 0, PORT_MAX },
    { "pop3_port", K_PORT, OFF(pop3_port), NO_DEF, 0, PORT_MAX },
    { "pop3s_port", K_PORT, OFF(pop3s_port), NO_DEF, 0, PORT_MAX },
    { "run_user", K_USER, OFF(run_user), NO_DEF, 0, 0 },
    { "pid_file", K_PATH, OFF(pid_file), "correod.pid", 0, 0 },
    { "workers", K_UINT, OFF(workers), "2", 1, 256 },
    { "delivery_threads", K_UINT, OFF(delivery_threads), "4", 1, 256 },
    { "worker_sessions", K_UINT, OFF(worker_sessions), "1", 0, 1000000 },
    { "max_workers", K_UINT, OFF(max_workers), "128", 1, 256 },
    { "users_file", K_PATH, OFF(users_file), NO_DEF, 0, 0 },
    { "aliases_file", K_PATH, OFF(aliases_file), NO_DEF, 0, 0 },
    { "maildir_template", K_TEMPLATE, OFF(maildir_template), NO_DEF, 0, 0 },
    { "queue_dir", K_PATH, OFF(queue_dir), "queue", 0, 0 },
    { "tls_cert", K_PATH, OFF(tls_cert), NO_DEF, 0, 0 },
    { "tls_key", K_PATH, OFF(tls_key), NO_DEF, 0, 0 },
    { "auth_allow_plaintext_loopback", K_BOOL, OFF(auth_allow_plaintext_loopback), "no",
      0, 0 },
    { "vrfy", K_BOOL, OFF(vrfy), "no", 0, 0 },
    { "max_message_size", K_SIZE, OFF(max_message_size), "25M", 1024, (size_t)1 << 32 },
    { "max_recipients", K_UINT, OFF(max_recipients), "100", 1, 100000 },
    { "max_errors", K_UINT, OFF(max_errors), "10", 1, 1000 },
    { "max_line_length", K_SIZE, OFF(max_line_length), "4096", 1000, 1024 * 1024 },
    { "timeout_command", K_DURATION, OFF(timeout_command), "300", 1, 86400 },
    { "timeout_data", K_DURATION, OFF(timeout_data), "600", 1, 86400 },
    { "max_connections", K_UINT, OFF(max_connections), "1000", 1, 1000000 },
    { "max_connections_per_ip", K_UINT, OFF(max_connections_per_ip), "20", 1, 1000000 },
    { "auth_fail_delay", K_DURATION, OFF(auth_fail_delay), "2", 0, 30 },
    { "log_target", K_LOGTARGET, OFF(log_target), NO_DEF, 0, 0 },
    { "log_file", K_PATH, OFF(log_file), NO_DEF, 0, 0 },
    { "log_level", K_LOGLEVEL, OFF(log_level), "info", 0, 0 },
    { "smarthost", K_HOSTPORT, OFF(smarthost), NO_DEF, 0, 0 },
    { "smarthost_port", K_PORT, OFF(smarthost_port), NO_DEF, 1, PORT_MAX },
    { "smarthost_tls", K_TLSMODE, OFF(smarthost_tls), "starttls", 0, 0 },
    { "smarthost_user", K_STR, OFF(smarthost_user), NO_DEF, 0, 0 },
    { "smarthost_pass", K_STR, OFF(smarthost_pass), NO_DEF, 0, 0 },
    { "smarthost_pass_cmd", K_CMD, OFF(smarthost_pass_cmd), NO_DEF, 0, 0 },
    { "smarthost_ca_file", K_PATH, OFF(smarthost_ca_file), NO_DEF, 0, 0 },
    { "smarthost_fingerprint", K_FINGERPRINT, OFF(smarthost_fingerprint), NO_DEF, 0, 0 },
    { "route", K_ROUTE, OFF(routes), NO_DEF, 0, 0 },
    { "queue_lifetime", K_DURATION, OFF(queue_lifetime), "5d", 60, 365u * 86400 },
    { "retry_min", K_DURATION, OFF(retry_min), "5m", 1, 7u * 86400 },
    { "retry_max", K_DURATION, OFF(retry_max), "1h", 1, 7u * 86400 },
    { "dkim_domain", K_HOST, OFF(dkim_domain), NO_DEF, 0, 0 },
    { "dkim_selector", K_SELECTOR, OFF(dkim_selector), NO_DEF, 0, 0 },
    { "dkim_key", K_PATH, OFF(dkim_key), NO_DEF, 0, 0 },
};

#define N_OPTIONS ARRAY_LEN(options)

/* Where an option was last given (file NULL: never). */
struct where {
    char *file;
    unsigned line;
};

struct load {
    struct conf *c;
    struct rc_diag *diag;
    unsigned flags;
    struct where where[N_OPTIONS];
    unsigned smarthost_port_line;   /* a port given inside `smarthost` */
};

/* ---- small parsers ------------------------------------------------------ */

static int parse_ull(const char *s, unsigned long long *out)
{
    unsigned long long v = 0;

    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*s)
        return -1;
    *out = v;
    return 0;
}

/* digits followed by at most one suffix character from suffixes, whose
 * multipliers are in mult. */
static int parse_scaled(const char *s, const char *suffixes, const unsigned long long *mult,
                        unsigned long long limit, unsigned long long *out)
{
    unsigned long long v = 0, m = 1;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (*p) {
        const char *hit = strchr(suffixes, *p);
        if (!hit || p[1] != '\0')
            return -1;
        m = mult[hit - suffixes];
    }
    if (v > limit / m)
        return -1;
    *out = v * m;
    return 0;
}

int conf_parse_duration(const char *s, unsigned *out)
{
    static const unsigned long long mult[] = { 1, 60, 3600, 86400 };
    unsigned long long v;

    if (!s || parse_scaled(s, "smhd", mult, UINT_MAX, &v) < 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int conf_parse_size(const char *s, size_t *out)
{
    static const unsigned long long mult[] = {
        1024ull, 1024ull, 1024ull * 1024, 1024ull * 1024,
        1024ull * 1024 * 1024, 1024ull * 1024 * 1024,
    };
    unsigned long long v;

    if (!s || parse_scaled(s, "kKmMgG", mult, SIZE_MAX, &v) < 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* A DNS host name: dot-separated labels of letters, digits and '-' (not at
 * either end of a label), 1..63 bytes each, 253 in all. */
static bool valid_hostname(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > HOSTNAME_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = s[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-') {
            if (label == 0 && ch == '-')
                return false;
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

static bool is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

static char *lower_dup(const char *s)
{
    char *d = xstrdup(s);
    for (char *p = d; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

/* Split "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 literal.
 * *port stays as it was when none is given. */
static int parse_hostport(const char *s, char **host, unsigned *port, bool *port_given,
                          struct err *e)
{
    const char *colon = NULL;
    char *h;

    *port_given = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close)
            return err_set(e, ERR_PARSE, "'%s': missing ']'", s);
        h = xstrndup(s + 1, (size_t)(close - s - 1));
        if (!is_ipv6(h)) {
            free(h);
            return err_set(e, ERR_PARSE, "'%s': not an IPv6 address in brackets", s);
        }
        if (close[1] == ':')
            colon = close + 1;
        else if (close[1] != '\0') {
            free(h);
            return err_set(e, ERR_PARSE, "'%s': junk after ']'", s);
        }
    } else if (is_ipv6(s)) {
        h = xstrdup(s);
    } else {
        colon = strchr(s, ':');
        h = colon ? xstrndup(s, (size_t)(colon - s)) : xstrdup(s);
        if (!is_ipv4(h) && !valid_hostname(h)) {
            err_set(e, ERR_PARSE, "'%s': not a host name or address", h);
            free(h);
            return -1;
        }
        char *low = lower_dup(h);
        free(h);
        h = low;
    }
    if (colon) {
        unsigned long long v;
        if (parse_ull(colon + 1, &v) < 0 || v < 1 || v > PORT_MAX) {
            free(h);
            return err_set(e, ERR_PARSE, "'%s': the port must be a number from 1 to %u",
                           s, PORT_MAX);
        }
        *port = (unsigned)v;
        *port_given = true;
    }
    *host = h;
    return 0;
}

static int parse_tls_mode(const char *s, enum conf_tls_mode *out)
{
    static const struct { const char *name; enum conf_tls_mode mode; } modes[] = {
        { "opportunistic", CONF_TLS_OPPORTUNISTIC },
        { "starttls", CONF_TLS_STARTTLS },
        { "tls", CONF_TLS_IMPLICIT },
        { "none", CONF_TLS_NONE },
    };
    for (size_t i = 0; i < ARRAY_LEN(modes); i++) {
        if (strcmp(s, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return -1;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on" };
    static const char *const no[] = { "no", "false", "off" };
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* "%u %n %d %h %%" only. */
static int check_template(const char *s, struct err *e)
{
    for (const char *p = s; *p; p++) {
        if (*p != '%')
            continue;
        p++;
        if (!*p || !strchr("undh%", *p))
            return err_set(e, ERR_PARSE, "'%s': unknown escape '%%%c' (use %%u %%n %%d %%h %%%%)",
                           s, *p ? *p : ' ');
    }
    return 0;
}

/* Relative to the config's directory; "~/" is $HOME. */
static char *resolve_path(const struct conf *c, const char *s)
{
    if (s[0] == '/')
        return xstrdup(s);
    if (s[0] == '~' && (s[1] == '/' || s[1] == '\0')) {
        const char *home = getenv("HOME");
        return xasprintf("%s%s", home ? home : "", s + 1);
    }
    if (strncmp(s, "./", 2) == 0)
        s += 2;
    return xasprintf("%s/%s", strcmp(c->dir, "/") == 0 ? "" : c->dir, s);
}

/* ---- the handler --------------------------------------------------------- */

static char **str_at(struct conf *c, const struct option *o)
{
    return (char **)(void *)((char *)c + o->off);
}

static unsigned *uint_at(struct conf *c, const struct option *o)
{
    return (unsigned *)(void *)((char *)c + o->off);
}

static void set_str(struct conf *c, const struct option *o, char *value)
{
    char **slot = str_at(c, o);
    free(*slot);
    *slot = value;
}

static int add_list_word(char ***list, size_t *n, const char *word, const char *what,
                         struct err *e)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*list)[i], word) == 0)
            return err_set(e, ERR_PARSE, "%s '%s' is listed twice", what, word);
    }
    *list = xreallocarray(*list, *n + 1, sizeof **list);
    (*list)[(*n)++] = xstrdup(word);
    return 0;
}

static int set_route(struct conf *c, char *const *args, size_t n, struct err *e)
{
    struct conf_route r;
    bool port_given;
    char *dom;

    memset(&r, 0, sizeof r);
    if (n < 2 || n > 3)
        return err_set(e, ERR_PARSE,
                       "route: expects DOMAIN HOST[:PORT] [opportunistic|starttls|tls|none]");
    dom = lower_dup(args[0]);
    if (strcmp(dom, "*") != 0 && !valid_hostname(dom)) {
        err_set(e, ERR_PARSE, "route: '%s' is not a domain (or '*')", args[0]);
        free(dom);
        return -1;
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        if (strcmp(c->routes[i].domain, dom) == 0) {
            err_set(e, ERR_PARSE, "route: a route for '%s' is already given", dom);
            free(dom);
            return -1;
        }
    }
    r.port = PORT_SMTP;
    r.tls = CONF_TLS_OPPORTUNISTIC;
    if (n == 3 && parse_tls_mode(args[2], &r.tls) < 0) {
        err_set(e, ERR_PARSE, "route: '%s' is not one of opportunistic, starttls, tls, none",
                args[2]);
        free(dom);
        return -1;
    }
    if (parse_hostport(args[1], &r.host, &r.port, &port_given, e) < 0) {
        err_prefix(e, "route");
        free(dom);
        return -1;
    }
    r.domain = dom;
    c->routes = xreallocarray(c->routes, c->n_routes + 1, sizeof *c->routes);
    c->routes[c->n_routes++] = r;
    return 0;
}

static char *join_quoted(char *const *args, size_t n)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; i < n; i++) {
        char *q = rc_quote(args[i]);
        if ((i > 0 && buf_putc(&b, ' ') < 0) || buf_puts(&b, q) < 0)
            die("conf: unbounded buffer refused data");
        free(q);
    }
    return buf_steal(&b, NULL);
}

static int num_error(const struct option *o, const char *what, const char *v, struct err *e)
{
    return err_set(e, ERR_PARSE, "%s: expects %s from %llu to %llu, not '%s'", o->name, what,
                   o->min, o->max, v);
}

/* Parse args (the words after the name) into option o. */
static int set_option(struct load *ld, const struct option *o, char *const *args, size_t n,
                      struct err *e)
{
    struct conf *c = ld->c;
    const char *v = n > 0 ? args[0] : "";
    unsigned long long num;

    switch (o->kind) {
    case K_DOMAINS:
    case K_ADDRS:
    case K_ROUTE:
    case K_CMD:
        if (n == 0)
            return err_set(e, ERR_PARSE, "%s: expects a value", o->name);
        break;
    default:
        if (n != 1)
            return err_set(e, ERR_PARSE, "%s: expects exactly one value%s", o->name,
                           n == 0 ? "" : " (quote it if it contains blanks)");
        break;
    }

    switch (o->kind) {
    case K_STR:
        if (!*v)
            return err_set(e, ERR_PARSE, "%s: empty value", o->name);
        set_str(c, o, xstrdup(v));
        return 0;
    case K_USER:
        if (!*v)
            return err_set(e, ERR_PARSE, "%s: empty value", o->name);
        if (!getpwnam(v))
            return err_set(e, ERR_NOTFOUND, "%s: no such user '%s'", o->name, v);
        set_str(c, o, xstrdup(v));
        return 0;
    case K_PATH:
        if (!*v)
            return err_set(e, ERR_PARSE, "%s: empty path", o->name);
        set_str(c, o, resolve_path(c, v));
        return 0;
    case K_TEMPLATE:
        if (!*v)
            return err_set(e, ERR_PARSE, "%s: empty template", o->name);
        if (check_template(v, e) < 0) {
            err_prefix(e, "%s", o->name);
            return -1;
        }
        /* "%h/..." is absolute once expanded */
        set_str(c, o, strncmp(v, "%h", 2) == 0 ? xstrdup(v) : resolve_path(c, v));
        return 0;
    case K_HOST:
        if (!valid_hostname(v))
            return err_set(e, ERR_PARSE, "%s: '%s' is not a valid host name", o->name, v);
        set_str(c, o, lower_dup(v));
        return 0;
    case K_SELECTOR:
        if (!valid_hostname(v))
            return err_set(e, ERR_PARSE, "%s: '%s' is not a valid selector", o->name, v);
        set_str(c, o, xstrdup(v));
        return 0;
    case K_HOSTPORT: {
        char *host;
        bool given;
        unsigned port = 0;
        if (parse_hostport(v, &host, &port, &given, e) < 0) {
            err_prefix(e, "%s", o->name);
            return -1;
        }
        set_str(c, o, host);
        if (given) {
            c->smarthost_port = port;
            ld->smarthost_port_line = 1;
        } else {
            ld->smarthost_port_line = 0;
        }
        return 0;
    }
    case K_UINT:
        if (parse_ull(v, &num) < 0 || num < o->min || num > o->max)
            return num_error(o, "a number", v, e);
        *uint_at(c, o) = (unsigned)num;
        return 0;
    case K_PORT:
        if (parse_ull(v, &num) < 0 || num < o->min || num > o->max)
            return num_error(o, "a port number", v, e);
        *uint_at(c, o) = (unsigned)num;
        return 0;
    case K_BOOL: {
        bool b;
        if (parse_bool(v, &b) < 0)
            return err_set(e, ERR_PARSE, "%s: expects yes or no, not '%s'", o->name, v);
        *(bool *)(void *)((char *)c + o->off) = b;
        return 0;
    }
    case K_DURATION: {
        unsigned d;
        if (conf_parse_duration(v, &d) < 0 || d < o->min || d > o->max)
            return err_set(e, ERR_PARSE,
                           "%s: expects a duration from %llus to %llus (suffix s, m, h or d), "
                           "not '%s'", o->name, o->min, o->max, v);
        *uint_at(c, o) = d;
        return 0;
    }
    case K_SIZE: {
        size_t s;
        if (conf_parse_size(v, &s) < 0 || s < o->min || s > o->max)
            return err_set(e, ERR_PARSE,
                           "%s: expects a size from %llu to %llu bytes (suffix k, M or G), "
                           "not '%s'", o->name, o->min, o->max, v);
        *(size_t *)(void *)((char *)c + o->off) = s;
        return 0;
    }
    case K_DOMAINS:
        for (size_t i = 0; i < n; i++) {
            if (!valid_hostname(args[i]))
                return err_set(e, ERR_PARSE, "%s: '%s' is not a valid domain", o->name,
                               args[i]);
        }
        for (size_t i = 0; i < n; i++) {
            char *low = lower_dup(args[i]);
            int rc = add_list_word(&c->domains, &c->n_domains, low, "domain", e);
            free(low);
            if (rc < 0)
                return -1;
        }
        return 0;
    case K_ADDRS:
        for (size_t i = 0; i < n; i++) {
            const char *a = args[i];
            if (!is_ipv4(a) && !is_ipv6(a))
                return err_set(e, ERR_PARSE, "%s: '%s' is not an IPv4 or IPv6 address",
                               o->name, a);
        }
        for (size_t i = 0; i < n; i++) {
            if (add_list_word(&c->listen, &c->n_listen, args[i], "address", e) < 0)
                return -1;
        }
        return 0;
    case K_LOGLEVEL:
        if (log_level_parse(v, &c->log_level) < 0)
            return err_set(e, ERR_PARSE, "%s: expects error, warn, info or debug, not '%s'",
                           o->name, v);
        return 0;
    case K_LOGTARGET:
        if (strcmp(v, "stderr") == 0)
            c->log_target = LOG_TO_STDERR;
        else if (strcmp(v, "syslog") == 0)
            c->log_target = LOG_TO_SYSLOG;
        else if (strcmp(v, "file") == 0)
            c->log_target = LOG_TO_FILE;
        else
            return err_set(e, ERR_PARSE, "%s: expects stderr, syslog or file, not '%s'",
                           o->name, v);
        c->log_target_set = true;
        return 0;
    case K_TLSMODE:
        if (parse_tls_mode(v, (enum conf_tls_mode *)(void *)((char *)c + o->off)) < 0)
            return err_set(e, ERR_PARSE,
                           "%s: expects opportunistic, starttls, tls or none, not '%s'",
                           o->name, v);
        return 0;
    case K_ROUTE:
        return set_route(c, args, n, e);
    case K_CMD:
        set_str(c, o, join_quoted(args, n));
        return 0;
    case K_FINGERPRINT: {
        unsigned char fp[TLS_SHA256_LEN];
        if (tls_parse_fingerprint(v, fp, e) < 0) {
            err_prefix(e, "%s", o->name);
            return -1;
        }
        set_str(c, o, xstrdup(v));
        return 0;
    }
    }
    return err_set(e, ERR_INVAL, "%s: unhandled option kind", o->name);
}

/* Levenshtein distance, for "did you mean". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *row;
    size_t result;

    if (la > 64 || lb > 64)
        return SIZE_MAX;
    row = XNEWARRAY(size_t, lb + 1);
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1])
                              ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    result = row[lb];
    free(row);
    return result;
}

static const char *suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t len = strlen(name);
    size_t limit = len < 4 ? 1 : len < 10 ? 2 : 3;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        size_t d = edit_distance(name, options[i].name);
        if (d < best_d) {
            best_d = d;
            best = options[i].name;
        }
    }
    /* a known option's name as a prefix or suffix of what was written */
    if (best_d > limit) {
        for (size_t i = 0; i < N_OPTIONS; i++) {
            size_t ol = strlen(options[i].name);
            if (len >= 4 && ol > len && (strncmp(options[i].name, name, len) == 0 ||
                                         strcmp(options[i].name + ol - len, name) == 0))
                return options[i].name;
        }
        return NULL;
    }
    return best;
}

static int handle(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct load *ld = ctx;
    const char *name = cmd->argv[0];

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if (strcmp(name, o->name) != 0)
            continue;
        if (set_option(ld, o, cmd->argv + 1, cmd->argc - 1, e) < 0)
            return -1;
        free(ld->where[i].file);
        ld->where[i].file = xstrdup(cmd->file);
        ld->where[i].line = cmd->line;
        if (o->kind == K_HOSTPORT && ld->smarthost_port_line)
            ld->smarthost_port_line = cmd->line;
        return 0;
    }
    const char *guess = suggest(name);
    if (guess)
        return err_set(e, ERR_PARSE, "unknown option '%s' (did you mean '%s'?)", name, guess);
    return err_set(e, ERR_PARSE, "unknown option '%s'", name);
}

/* ---- checks after loading ------------------------------------------------ */

static size_t opt_index(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strcmp(options[i].name, name) == 0)
            return i;
    }
    die("conf: no option '%s'", name);
}

static bool given(const struct load *ld, const char *name)
{
    return ld->where[opt_index(name)].file != NULL;
}

/* Report at the option's line, or as "file: message" when it was never
 * given. */
static void problem(struct load *ld, const char *name, const char *fmt, ...)
    CORREO_PRINTF(3, 4);

static void problem(struct load *ld, const char *name, const char *fmt, ...)
{
    const struct where *w = name ? &ld->where[opt_index(name)] : NULL;
    struct rc_diag *d = ld->diag;
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = xvasprintf(fmt, ap);
    va_end(ap);
    if (w && w->file) {
        rc_diag_add(d, w->file, w->line, "%s", text);
    } else if (d->n >= RC_DIAG_MAX) {
        d->dropped++;
    } else {
        d->msgs = xreallocarray(d->msgs, d->n + 1, sizeof *d->msgs);
        d->msgs[d->n++] = xasprintf("%s: %s", ld->c->path, text);
    }
    free(text);
}

static void apply_defaults(struct load *ld)
{
    struct conf *c = ld->c;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        struct err e;
        char *arg;

        if (ld->where[i].file || !o->def)
            continue;
        if (o->kind == K_ADDRS && c->n_listen > 0)
            continue;
        arg = xstrdup(o->def);
        err_clear(&e);
        if (set_option(ld, o, &arg, 1, &e) < 0)
            die("conf: default of %s: %s", o->name, e.text);
        free(arg);
    }
}

static void check_readable(struct load *ld, const char *name, const char *path)
{
    if (path && access(path, R_OK) < 0)
        problem(ld, name, "%s: cannot read '%s': %s", name, path, strerror(errno));
}

/* Default ports, the offset and clashes. */
static void check_ports(struct load *ld)
{
    struct conf *c = ld->c;
    static const struct { const char *name; unsigned base; size_t off; } ports[] = {
        { "smtp_port", PORT_SMTP, OFF(smtp_port) },
        { "submission_port", PORT_SUBMISSION, OFF(submission_port) },
        { "submissions_port", PORT_SUBMISSIONS, OFF(submissions_port) },
        { "pop3_port", PORT_POP3, OFF(pop3_port) },
        { "pop3s_port", PORT_POP3S, OFF(pop3s_port) },
    };

    for (size_t i = 0; i < ARRAY_LEN(ports); i++) {
        unsigned *slot = (unsigned *)(void *)((char *)c + ports[i].off);
        if (given(ld, ports[i].name))
            continue;
        if (ports[i].base + c->port_offset > PORT_MAX) {
            problem(ld, "port_offset",
                    "port_offset: %u + %u is beyond port %u (set %s or a smaller offset)",
                    ports[i].base, c->port_offset, PORT_MAX, ports[i].name);
            *slot = 0;
        } else {
            *slot = ports[i].base + c->port_offset;
        }
    }
    for (size_t i = 0; i < ARRAY_LEN(ports); i++) {
        unsigned a = *(unsigned *)(void *)((char *)c + ports[i].off);
        for (size_t j = i + 1; j < ARRAY_LEN(ports) && a != 0; j++) {
            unsigned b = *(unsigned *)(void *)((char *)c + ports[j].off);
            if (a == b)
                problem(ld, given(ld, ports[j].name) ? ports[j].name : ports[i].name,
                        "%s and %s are both port %u", ports[i].name, ports[j].name, a);
        }
    }
}

static void check_all_or_none(struct load *ld, const char *const *names, size_t n,
                              const char *what)
{
    size_t set = 0;

    for (size_t i = 0; i < n; i++)
        set += given(ld, names[i]);
    if (set == 0 || set == n)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!given(ld, names[i])) {
            for (size_t j = 0; j < n; j++) {
                if (given(ld, names[j])) {
                    problem(ld, names[j], "%s is set but %s is not (%s: all or none)",
                            names[j], names[i], what);
                    break;
                }
            }
        }
    }
}

static void check(struct load *ld)
{
    static const char *const tls_names[] = { "tls_cert", "tls_key" };
    static const char *const dkim_names[] = { "dkim_domain", "dkim_selector", "dkim_key" };
    static const char *const smarthost_names[] = {
        "smarthost_port", "smarthost_tls", "smarthost_user", "smarthost_pass",
        "smarthost_pass_cmd", "smarthost_ca_file", "smarthost_fingerprint",
    };
    struct conf *c = ld->c;

    if (!c->hostname) {
        char name[HOSTNAME_MAX + 2];
        if (gethostname(name, sizeof name) < 0) {
            problem(ld, NULL, "hostname not set and gethostname() failed: %s", strerror(errno));
        } else {
            name[sizeof name - 1] = '\0';
            if (!valid_hostname(name))
                problem(ld, NULL, "hostname not set and the system's name is not a valid "
                        "host name; set hostname");
            else
                c->hostname = lower_dup(name);
        }
    }
    if (c->n_domains == 0)
        problem(ld, NULL, "no domains given (domains DOMAIN...)");
    if (!c->users_file)
        problem(ld, NULL, "users_file is required");
    if (!c->maildir_template)
        problem(ld, NULL, "maildir_template is required");

    check_ports(ld);

    check_all_or_none(ld, tls_names, ARRAY_LEN(tls_names), "a TLS certificate and its key");
    if (!(ld->flags & CONF_LOAD_NO_TLS_FILES) && c->tls_cert && c->tls_key) {
        check_readable(ld, "tls_cert", c->tls_cert);
        check_readable(ld, "tls_key", c->tls_key);
    }
    check_all_or_none(ld, dkim_names, ARRAY_LEN(dkim_names), "DKIM");

    if (c->log_target_set && c->log_target == LOG_TO_FILE && !c->log_file)
        problem(ld, "log_target", "log_target file needs log_file");
    if (c->log_file) {
        if (c->log_target_set && c->log_target != LOG_TO_FILE)
            problem(ld, "log_file", "log_file is set but log_target is not file");
        c->log_target = LOG_TO_FILE;
        c->log_target_set = true;
    }

    if (!c->smarthost) {
        for (size_t i = 0; i < ARRAY_LEN(smarthost_names); i++) {
            if (given(ld, smarthost_names[i]))
                problem(ld, smarthost_names[i], "%s is set but smarthost is not",
                        smarthost_names[i]);
        }
    } else {
        if (ld->smarthost_port_line && given(ld, "smarthost_port"))
            problem(ld, "smarthost_port", "smarthost_port: the port is already given in "
                    "smarthost");
        if (!ld->smarthost_port_line && !given(ld, "smarthost_port"))
            c->smarthost_port = c->smarthost_tls == CONF_TLS_IMPLICIT ? PORT_SUBMISSIONS
                                                                       : PORT_SUBMISSION;
        if (c->smarthost_pass && c->smarthost_pass_cmd)
            problem(ld, "smarthost_pass_cmd",
                    "smarthost_pass and smarthost_pass_cmd are both set; use one");
        if (c->smarthost_user && !c->smarthost_pass && !c->smarthost_pass_cmd)
            problem(ld, "smarthost_user",
                    "smarthost_user needs smarthost_pass or smarthost_pass_cmd");
        if (!c->smarthost_user && (c->smarthost_pass || c->smarthost_pass_cmd))
            problem(ld, c->smarthost_pass ? "smarthost_pass" : "smarthost_pass_cmd",
                    "a smarthost password without smarthost_user");
    }
    if (c->retry_min > c->retry_max)
        problem(ld, given(ld, "retry_min") ? "retry_min" : "retry_max",
                "retry_min (%us) is longer than retry_max (%us)", c->retry_min, c->retry_max);
    if (c->retry_min > c->queue_lifetime)
        problem(ld, given(ld, "retry_min") ? "retry_min" : "queue_lifetime",
                "retry_min (%us) is longer than queue_lifetime (%us)", c->retry_min,
                c->queue_lifetime);
}

/* ---- loading ------------------------------------------------------------- */

static char *absolute(const char *path, struct err *e)
{
    char *cwd;
    char *r;

    if (path[0] == '/')
        return xstrdup(path);
    cwd = getcwd(NULL, 0);
    if (!cwd) {
        err_sys(e, "getcwd");
        return NULL;
    }
    while (strncmp(path, "./", 2) == 0)
        path += 2;
    r = xasprintf("%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, path);
    free(cwd);
    return r;
}

const char *conf_default_path(void)
{
    const char *p = getenv("CORREOD_CONF");
    return p && *p ? p : "/etc/correod/correod.conf";
}

int conf_load_flags(const char *path, unsigned flags, struct conf **out,
                    struct rc_diag *diag, struct err *e)
{
    struct rc_diag local;
    struct rc_loader l;
    struct load ld;
    struct conf *c;
    size_t before, dropped_before, problems;
    char *slash;
    int rc;

    *out = NULL;
    if (!path || !*path)
        return err_set(e, ERR_INVAL, "no configuration file given");
    if (!diag) {
        rc_diag_init(&local);
        diag = &local;
    }
    before = diag->n;
    dropped_before = diag->dropped;

    c = XNEW(struct conf);
    c->path = absolute(path, e);
    if (!c->path) {
        free(c);
        if (diag == &local)
            rc_diag_free(&local);
        return -1;
    }
    c->dir = xstrdup(c->path);
    slash = strrchr(c->dir, '/');
    slash[slash == c->dir ? 1 : 0] = '\0';

    memset(&ld, 0, sizeof ld);
    ld.c = c;
    ld.diag = diag;
    ld.flags = flags;
    rc_loader_init(&l, handle, &ld, diag);
    l.no_env = true;
    rc = rcfile_load(&l, c->path, e);
    if (rc == 0) {
        apply_defaults(&ld);
        check(&ld);
        problems = (diag->n - before) + (diag->dropped - dropped_before);
        if (problems > 0) {
            const char *first = diag->n > before ? diag->msgs[before] : c->path;
            if (problems == 1)
                err_set(e, ERR_PARSE, "%s", first);
            else
                err_set(e, ERR_PARSE, "%s (and %zu more problems)", first, problems - 1);
            rc = -1;
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++)
        free(ld.where[i].file);
    if (diag == &local)
        rc_diag_free(&local);
    if (rc < 0) {
        conf_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

int conf_load(const char *path, struct conf **out, struct rc_diag *diag, struct err *e)
{
    return conf_load_flags(path, 0, out, diag, e);
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void conf_free(struct conf *c)
{
    if (!c)
        return;
    if (c->smarthost_pass)
        explicit_bzero(c->smarthost_pass, strlen(c->smarthost_pass));
    for (size_t i = 0; i < N_OPTIONS; i++) {
        switch (options[i].kind) {
        case K_STR: case K_USER: case K_PATH: case K_TEMPLATE: case K_HOST:
        case K_HOSTPORT: case K_CMD: case K_FINGERPRINT: case K_SELECTOR:
            free(*str_at(c, &options[i]));
            break;
        default:
            break;
        }
    }
    free_list(c->domains, c->n_domains);
    free_list(c->listen, c->n_listen);
    for (size_t i = 0; i < c->n_routes; i++) {
        free(c->routes[i].domain);
        free(c->routes[i].host);
    }
    free(c->routes);
    free(c->path);
    free(c->dir);
    free(c);
}

bool conf_is_local_domain(const struct conf *c, const char *domain)
{
    if (!c || !domain)
        return false;
    for (size_t i = 0; i < c->n_domains; i++) {
        if (strcasecmp(c->domains[i], domain) == 0)
            return true;
    }
    return false;
}
