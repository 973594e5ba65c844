/*
 * admin: the commands that set an instance up and check it --
 * `correod init`, `correod check-config` and `correod gencert`.
 *
 * init writes a complete instance (config, users and aliases files, a
 * self-signed certificate, the Maildir root and the queue) and proves the
 * config by loading it back; check-config loads everything the server would
 * load and lists every problem; gencert makes the certificate a config
 * names.
 */
#include "commands.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "tls.h"
#include "users.h"

#define DEFAULT_DAYS 365
#define USER_PORT_OFFSET 10000u   /* init as an ordinary user: unprivileged ports */
#define SYSTEM_USER "correod"     /* run_user that init picks when it exists */

/* ---- shared helpers ---------------------------------------------------- */

static int usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    CORREO_PRINTF(3, 4);

static int usage_error(const char *cmd, const char *usage, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "correod %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: correod %s\n", usage);
    return 2;
}

/* The argument getopt_long refused, for the message. */
static const char *bad_option(char **argv, int c)
{
    static char shortopt[3];

    if (optopt && c == '?') {
        shortopt[0] = '-';
        shortopt[1] = (char)optopt;
        shortopt[2] = '\0';
        return shortopt;
    }
    return argv[optind - 1];
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

static void print_diag(const struct rc_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "%s\n", d->msgs[i]);
    if (d->dropped)
        fprintf(stderr, "(%zu more problems not shown)\n", d->dropped);
}

/* Load a config, printing every problem.  Returns 0 or 1 (exit status). */
static int load_conf(const char *path, unsigned flags, struct conf **c)
{
    struct rc_diag d;
    struct err e;

    rc_diag_init(&d);
    err_clear(&e);
    if (conf_load_flags(path, flags, c, &d, &e) < 0) {
        if (d.n > 0)
            print_diag(&d);
        else
            fprintf(stderr, "correod: %s\n", e.text);
        rc_diag_free(&d);
        return 1;
    }
    rc_diag_free(&d);
    return 0;
}

static bool is_unspecified(const char *addr)
{
    return strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
}

/* A NULL-terminated list of copies of names, without duplicates. */
struct names {
    const char **v;
    size_t n;
};

static void names_free(struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        free((void *)(uintptr_t)ns->v[i]);
    free(ns->v);
    ns->v = NULL;
    ns->n = 0;
}

static void names_add(struct names *ns, const char *name)
{
    for (size_t i = 0; i < ns->n; i++) {
        if (strcasecmp(ns->v[i], name) == 0)
            return;
    }
    ns->v = xreallocarray(ns->v, ns->n + 2, sizeof *ns->v);
    ns->v[ns->n++] = xstrdup(name);
    ns->v[ns->n] = NULL;
}

/* The names a server certificate for c should carry by default. */
static void default_cert_names(struct names *ns, const struct conf *c, const char *first)
{
    if (first)
        names_add(ns, first);
    for (size_t i = 0; i < c->n_domains; i++)
        names_add(ns, c->domains[i]);
    names_add(ns, c->hostname);
    names_add(ns, "localhost");
    names_add(ns, "127.0.0.1");
    for (size_t i = 0; i < c->n_listen; i++) {
        if (!is_unspecified(c->listen[i]))
            names_add(ns, c->listen[i]);
    }
}

static void print_names(FILE *out, const struct names *ns)
{
    for (size_t i = 0; i < ns->n; i++)
        fprintf(out, "%s%s", i ? ", " : "", ns->v[i]);
}

static void print_listeners(FILE *out, const struct conf *c, const char *indent)
{
    const struct { const char *name; unsigned port; const char *what; bool tls; } ls[] = {
        { "smtp", c->smtp_port, "plain, STARTTLS when configured", false },
        { "submission", c->submission_port, "STARTTLS, AUTH", false },
        { "submissions", c->submissions_port, "implicit TLS, AUTH", true },
        { "pop3", c->pop3_port, "POP3, STLS", false },
        { "pop3s", c->pop3s_port, "POP3 over implicit TLS", true },
    };

    for (size_t i = 0; i < ARRAY_LEN(ls); i++) {
        fprintf(out, "%s%-12s ", indent, ls[i].name);
        if (ls[i].port == 0) {
            fputs("off\n", out);
            continue;
        }
        if (ls[i].tls && !c->tls_cert) {
            fprintf(out, "port %u: off (no tls_cert)\n", ls[i].port);
            continue;
        }
        fprintf(out, "port %u on", ls[i].port);
        for (size_t j = 0; j < c->n_listen; j++)
            fprintf(out, " %s", c->listen[j]);
        fprintf(out, " (%s)\n", ls[i].what);
    }
}

/* ---- init ---------------------------------------------------------------- */

#define INIT_USAGE "init DIR [--domain D] [--listen ADDR]... [--port-offset N] [--hostname H]"

/* What init created, removed again if a later step fails. */
struct created {
    char **paths;
    bool *is_dir;
    size_t n;
};

static void created_add(struct created *cr, const char *path, bool is_dir)
{
    cr->paths = xreallocarray(cr->paths, cr->n + 1, sizeof *cr->paths);
    cr->is_dir = xreallocarray(cr->is_dir, cr->n + 1, sizeof *cr->is_dir);
    cr->paths[cr->n] = xstrdup(path);
    cr->is_dir[cr->n++] = is_dir;
}

static void created_free(struct created *cr, bool undo)
{
    for (size_t i = cr->n; i-- > 0;) {
        if (undo) {
            if (cr->is_dir[i])
                rmdir(cr->paths[i]);
            else
                unlink(cr->paths[i]);
        }
        free(cr->paths[i]);
    }
    free(cr->paths);
    free(cr->is_dir);
}

/* mkdir -p: parents 0755, the last component `mode`. */
static int make_dirs(const char *path, mode_t mode, struct created *cr, struct err *e)
{
    char *p = xstrdup(path);
    int rc = 0;

    for (char *s = p + 1; ; s++) {
        bool last = *s == '\0';
        if (*s != '/' && !last)
            continue;
        *s = '\0';
        if (mkdir(p, last ? mode : 0755) == 0) {
            created_add(cr, p, true);
        } else if (errno != EEXIST) {
            rc = err_sys(e, "mkdir %s", p);
            break;
        } else {
            struct stat st;
            if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
                rc = err_set(e, ERR_EXISTS, "%s exists and is not a directory", p);
                break;
            }
        }
        if (last)
            break;
        *s = '/';
        while (s[1] == '/')
            s++;
    }
    free(p);
    return rc;
}

/* Create path (which must not exist) with data, mode, fsynced. */
static int write_new_file(const char *path, const char *data, size_t len, mode_t mode,
                          struct created *cr, struct err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    size_t off = 0;

    if (fd < 0)
        return err_sys(e, "create %s", path);
    created_add(cr, path, false);
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err_sys(e, "write %s", path);
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        err_sys(e, "%s", path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return err_sys(e, "close %s", path);
    return 0;
}

struct init_opts {
    const char *dir;
    char **domains;
    size_t n_domains;
    char **listen;
    size_t n_listen;
    unsigned long port_offset;
    bool offset_given;
    const char *hostname;
    const char *run_user;       /* NULL: none */
    bool root;
};

static void put(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void put(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (buf_vprintf(b, fmt, ap) < 0)
        die("init: unbounded buffer refused data");
    va_end(ap);
}

/* "name w1 w2..." with each word quoted for the rc syntax. */
static void put_option(struct buf *b, const char *name, char *const *words, size_t n)
{
    put(b, "%s", name);
    for (size_t i = 0; i < n; i++) {
        char *q = rc_quote(words[i]);
        put(b, " %s", q);
        free(q);
    }
    put(b, "\n");
}

static void put_option1(struct buf *b, const char *name, const char *value)
{
    char *v = xstrdup(value);
    put_option(b, name, &v, 1);
    free(v);
}

static char *init_config_text(const struct init_opts *o)
{
    struct buf b = BUF_INIT;
    char stamp[32] = "";
    time_t now = time(NULL);
    struct tm tm;
    unsigned off = (unsigned)o->port_offset;

    if (gmtime_r(&now, &tm))
        strftime(stamp, sizeof stamp, "%Y-%m-%d", &tm);
    put(&b,
        "# correod.conf, written by `correod init` on %s.\n"
        "#\n"
        "# Every option is described in correod.conf(5).  Relative paths are taken\n"
        "# from the directory of this file, so the instance can be moved as a whole.\n"
        "# Lines starting with '#' show other options at their defaults.\n"
        "# After a change: correod check-config -c THIS-FILE, then send SIGHUP.\n",
        stamp);

    put(&b, "\n# ---- identity\n"
        "# The name in the greeting, EHLO and Received headers.\n");
    put_option1(&b, "hostname", o->hostname);
    put(&b, "# Mail for these domains is delivered here; the first is the default\n"
        "# domain of user names written without one.\n");
    put_option(&b, "domains", o->domains, o->n_domains);

    put(&b, "\n# ---- listening\n"
        "# Each address gets every enabled port.\n");
    put_option(&b, "listen", o->listen, o->n_listen);
    put(&b, "# Added to the standard ports: smtp %u, submission %u, submissions %u,\n"
        "# pop3 %u, pop3s %u.\n",
        25 + off, 587 + off, 465 + off, 110 + off, 995 + off);
    put(&b, "port_offset %u\n", off);
    put(&b, "# A port given here is used as is (0 turns that listener off).\n"
        "# smtp_port %u\n# submission_port %u\n# submissions_port %u\n"
        "# pop3_port %u\n# pop3s_port %u\n",
        25 + off, 587 + off, 465 + off, 110 + off, 995 + off);

    put(&b, "\n# ---- process\n");
    if (o->run_user) {
        put(&b, "# Started as root, correod binds its ports and then runs as this user.\n");
        put_option1(&b, "run_user", o->run_user);
    } else if (o->root) {
        put(&b, "# Started as root, correod binds its ports and then runs as this user\n"
            "# (create it, give it this directory, and uncomment the line).\n"
            "# run_user " SYSTEM_USER "\n");
    } else {
        put(&b, "# A single-user instance: it runs as whoever starts it.\n"
            "# run_user " SYSTEM_USER "\n");
    }
    put(&b, "pid_file correod.pid\n"
        "# Event-loop processes kept ready, and delivery threads in each.\n"
        "# workers 2\n# delivery_threads 4\n"
        "# Sessions one worker serves at once (1: each session its own process,\n"
        "# so a crash or hang takes down only that session; 0: no limit), and\n"
        "# how many workers may run when every one is full.\n"
        "# worker_sessions 1\n# max_workers 128\n");

    put(&b, "\n# ---- users and storage\n"
        "# Users and password hashes (Dovecot passwd-file format); edit with\n"
        "# `correod user add|del|passwd|list`.\n"
        "users_file users\n"
        "# `address: target, target...`; `@domain: target` catches a whole domain.\n"
        "aliases_file aliases\n"
        "# Each user's Maildir: %%u user@domain, %%n local part, %%d domain, %%h home.\n"
        "maildir_template mail/%%d/%%n\n"
        "# The outbound queue.\n"
        "queue_dir queue\n");

    put(&b, "\n# ---- TLS (a self-signed pair; `correod gencert --force` renews it)\n"
        "tls_cert cert.pem\n"
        "tls_key key.pem\n");

    put(&b, "\n# ---- policy\n"
        "# AUTH without TLS from 127.0.0.0/8 and ::1.\n"
        "auth_allow_plaintext_loopback no\n"
        "# vrfy no\n"
        "# max_message_size 25M\n"
        "# max_recipients 100\n"
        "# max_errors 10\n"
        "# max_line_length 4096\n"
        "# timeout_command 5m\n"
        "# timeout_data 10m\n"
        "# max_connections 1000\n"
        "# max_connections_per_ip 20\n"
        "# auth_fail_delay 2s\n");

    put(&b, "\n# ---- logging (default: stderr with run -f, else syslog)\n"
        "# log_target syslog\n"
        "# log_file correod.log\n"
        "# log_level info\n");

    put(&b, "\n# ---- outbound (default: each domain's MX)\n"
        "# smarthost smtp.example.org\n"
        "# smarthost_port 587\n"
        "# smarthost_tls starttls\n"
        "# smarthost_user me@example.org\n"
        "# smarthost_pass secret\n"
        "# smarthost_pass_cmd pass show mail/smarthost\n"
        "# smarthost_ca_file ca.pem\n"
        "# smarthost_fingerprint SHA256:...\n"
        "# route example.net 127.0.0.1:2525 none\n"
        "# queue_lifetime 5d\n"
        "# retry_min 5m\n"
        "# retry_max 1h\n");

    put(&b, "\n# ---- DKIM signing (`correod dkim-keygen` makes the key)\n"
        "# dkim_domain %s\n"
        "# dkim_selector s1\n"
        "# dkim_key dkim.pem\n", o->domains[0]);
    return buf_steal(&b, NULL);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Give the instance to the run_user. */
static int chown_all(const char *const *paths, const char *user, struct err *e)
{
    struct passwd *pw = getpwnam(user);

    if (!pw)
        return err_set(e, ERR_NOTFOUND, "no such user '%s'", user);
    for (size_t i = 0; paths[i]; i++) {
        if (lchown(paths[i], pw->pw_uid, pw->pw_gid) < 0)
            return err_sys(e, "chown %s", paths[i]);
    }
    return 0;
}

static int do_init(struct init_opts *o)
{
    struct created cr = { NULL, NULL, 0 };
    struct conf *c = NULL;
    struct names ns = { NULL, 0 };
    struct err e;
    char *dir = NULL, *conf = NULL, *tmp = NULL, *users = NULL, *aliases = NULL;
    char *cert = NULL, *key = NULL, *mail = NULL, *queue = NULL, *text = NULL;
    int status = 1;

    err_clear(&e);
    dir = xstrdup(o->dir);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    conf = xasprintf("%s/correod.conf", dir);
    tmp = xasprintf("%s/.correod.conf.init", dir);
    users = xasprintf("%s/users", dir);
    aliases = xasprintf("%s/aliases", dir);
    cert = xasprintf("%s/cert.pem", dir);
    key = xasprintf("%s/key.pem", dir);
    mail = xasprintf("%s/mail", dir);
    queue = xasprintf("%s/queue", dir);

    if (exists(conf)) {
        fprintf(stderr, "correod init: %s already exists; not touching this instance\n", conf);
        goto out;
    }
    const char *const ours[] = { users, aliases, cert, key, tmp, NULL };
    for (size_t i = 0; ours[i]; i++) {
        if (exists(ours[i])) {
            fprintf(stderr, "correod init: %s already exists; not overwriting it\n", ours[i]);
            goto out;
        }
    }

    if (make_dirs(dir, 0700, &cr, &e) < 0 || chmod(dir, 0700) < 0) {
        if (!e.text[0])
            err_sys(&e, "chmod %s", dir);
        goto fail;
    }

    /* The config first, checked before anything else is made (its TLS
     * files do not exist yet). */
    text = init_config_text(o);
    if (write_new_file(tmp, text, strlen(text), 0600, &cr, &e) < 0)
        goto fail;
    if (load_conf(tmp, CONF_LOAD_NO_TLS_FILES, &c) != 0) {
        fprintf(stderr, "correod init: the options given do not make a valid config\n");
        goto undo;
    }

    if (write_new_file(users, "", 0, 0600, &cr, &e) < 0 ||
        write_new_file(aliases, "", 0, 0600, &cr, &e) < 0 ||
        make_dirs(mail, 0700, &cr, &e) < 0 ||
        make_dirs(queue, 0700, &cr, &e) < 0)
        goto fail;

    default_cert_names(&ns, c, o->domains[0]);
    created_add(&cr, cert, false);
    created_add(&cr, key, false);
    if (tls_gencert(cert, key, ns.v, DEFAULT_DAYS, &e) < 0)
        goto fail;
    conf_free(c);
    c = NULL;

    if (rename(tmp, conf) < 0) {
        err_sys(&e, "rename %s", conf);
        goto fail;
    }
    /* the temporary name is gone; an undo removes the config */
    for (size_t i = 0; i < cr.n; i++) {
        if (strcmp(cr.paths[i], tmp) == 0) {
            free(cr.paths[i]);
            cr.paths[i] = xstrdup(conf);
        }
    }
    {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }

    if (o->run_user) {
        const char *const all[] = { dir, conf, users, aliases, cert, key, mail, queue, NULL };
        if (chown_all(all, o->run_user, &e) < 0)
            goto fail;
    }

    /* The proof: the config as written loads, certificate and all. */
    if (load_conf(conf, 0, &c) != 0) {
        fprintf(stderr, "correod init: the written config does not load\n");
        goto undo;
    }

    printf("correod: a new instance in %s\n", c->dir);
    printf("  config       %s\n", c->path);
    printf("  domain%s      ", c->n_domains > 1 ? "s" : " ");
    for (size_t i = 0; i < c->n_domains; i++)
        printf("%s%s", i ? " " : "", c->domains[i]);
    printf("\n  hostname     %s\n", c->hostname);
    print_listeners(stdout, c, "  ");
    printf("  certificate  %s (self-signed for ", c->tls_cert);
    print_names(stdout, &ns);
    printf(")\n");
    if (c->run_user)
        printf("  runs as      %s\n", c->run_user);
    printf("\nnext steps:\n"
           "  correod user add -c %s NAME --password-stdin   (NAME@%s)\n"
           "  correod run -c %s -f\n",
           c->path, c->domains[0], c->path);
    if (o->root && !o->run_user)
        printf("  (as root: create a user '%s', chown -R it %s and set run_user)\n",
               SYSTEM_USER, c->dir);
    status = 0;
    created_free(&cr, false);
    goto out;

fail:
    fprintf(stderr, "correod init: %s\n", e.text);
undo:
    created_free(&cr, true);
out:
    conf_free(c);
    names_free(&ns);
    free(text);
    free(dir);
    free(conf);
    free(tmp);
    free(users);
    free(aliases);
    free(cert);
    free(key);
    free(mail);
    free(queue);
    return status;
}

/* Letters, digits and '-' in dot-separated labels of 1..63 bytes. */
static bool valid_name(const char *s)
{
    size_t label = 0, len = strlen(s);

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = s[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static bool valid_addr(const char *s)
{
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* Refuse what would not make a valid config, naming the argument. */
static int check_init_args(const struct init_opts *o)
{
    for (size_t i = 0; i < o->n_domains; i++) {
        if (!valid_name(o->domains[i]))
            return usage_error("init", INIT_USAGE, "--domain: '%s' is not a valid domain",
                               o->domains[i]);
    }
    if (o->hostname && !valid_name(o->hostname))
        return usage_error("init", INIT_USAGE, "--hostname: '%s' is not a valid host name",
                           o->hostname);
    for (size_t i = 0; i < o->n_listen; i++) {
        if (!valid_addr(o->listen[i]))
            return usage_error("init", INIT_USAGE,
                               "--listen: '%s' is not an IPv4 or IPv6 address", o->listen[i]);
    }
    if (o->port_offset > 65535 - 995)
        return usage_error("init", INIT_USAGE,
                           "--port-offset: %lu puts port 995 beyond 65535 (at most %u)",
                           o->port_offset, 65535u - 995);
    return 0;
}

static char *host_name(void)
{
    char name[256];

    if (gethostname(name, sizeof name) < 0)
        return NULL;
    name[sizeof name - 1] = '\0';
    for (char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return NULL;
    }
    return name[0] ? xstrdup(name) : NULL;
}

int cmd_init(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "domain", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "port-offset", required_argument, NULL, 'p' },
        { "hostname", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct init_opts o;
    char *default_domain = NULL, *default_listen = NULL, *host = NULL;
    int c, status;

    memset(&o, 0, sizeof o);
    o.root = geteuid() == 0;
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.domains = xreallocarray(o.domains, o.n_domains + 1, sizeof *o.domains);
            o.domains[o.n_domains++] = optarg;
            break;
        case 'l':
            o.listen = xreallocarray(o.listen, o.n_listen + 1, sizeof *o.listen);
            o.listen[o.n_listen++] = optarg;
            break;
        case 'p':
            if (parse_uint(optarg, 65535, &o.port_offset) < 0) {
                free(o.domains);
                free(o.listen);
                return usage_error("init", INIT_USAGE,
                                   "--port-offset: '%s' is not a number from 0 to 65535",
                                   optarg);
            }
            o.offset_given = true;
            break;
        case 'H':
            o.hostname = optarg;
            break;
        case 'h':
            printf("usage: correod %s\n"
                   "\n"
                   "Write a complete new instance into DIR: correod.conf, users, aliases,\n"
                   "a self-signed cert.pem/key.pem, mail/ and queue/.\n"
                   "\n"
                   "  --domain D        the mail domain (default: this host's name)\n"
                   "  --listen ADDR     an address to listen on (repeatable; default 127.0.0.1)\n"
                   "  --port-offset N   added to ports 25, 587, 465, 110, 995 (default 0 as\n"
                   "                    root, %u otherwise)\n"
                   "  --hostname H      the server's name (default: this host's name)\n",
                   INIT_USAGE, USER_PORT_OFFSET);
            free(o.domains);
            free(o.listen);
            return 0;
        case ':':
            free(o.domains);
            free(o.listen);
            return usage_error("init", INIT_USAGE, "%s needs a value", argv[optind - 1]);
        default:
            free(o.domains);
            free(o.listen);
            return usage_error("init", INIT_USAGE, "unknown option '%s'", bad_option(argv, c));
        }
    }
    if (argc - optind != 1) {
        free(o.domains);
        free(o.listen);
        return usage_error("init", INIT_USAGE, "%s", argc - optind < 1
                           ? "expects the instance directory" : "expects one directory");
    }
    o.dir = argv[optind];
    if (!o.root && o.n_domains > 1) {
        free(o.domains);
        free(o.listen);
        return usage_error("init", INIT_USAGE, "%s",
                           "a single-user instance (not run as root) has one --domain");
    }

    if (check_init_args(&o) != 0) {
        free(o.domains);
        free(o.listen);
        return 2;
    }
    host = host_name();
    if (host && !valid_name(host)) {
        free(host);
        host = NULL;
    }
    if (o.n_domains == 0) {
        default_domain = xstrdup(host ? host : "localhost");
        o.domains = xreallocarray(o.domains, 1, sizeof *o.domains);
        o.domains[o.n_domains++] = default_domain;
    }
    if (!o.hostname)
        o.hostname = host ? host : o.domains[0];
    if (o.n_listen == 0) {
        default_listen = xstrdup("127.0.0.1");
        o.listen = xreallocarray(o.listen, 1, sizeof *o.listen);
        o.listen[o.n_listen++] = default_listen;
    }
    if (!o.offset_given && !o.root)
        o.port_offset = USER_PORT_OFFSET;
    if (o.root && getpwnam(SYSTEM_USER))
        o.run_user = SYSTEM_USER;

    status = do_init(&o);
    free(o.domains);
    free(o.listen);
    free(default_domain);
    free(default_listen);
    free(host);
    return status;
}

/* ---- -c CONFIG for the other commands -------------------------------------- */

struct common_opts {
    const char *config;
    unsigned long days;
    bool force;
};

/* Parse -c/--config and, for gencert, --days/--force.  Returns -1 to go
 * on, else the exit status. */
static int parse_common(int argc, char **argv, const char *usage, bool gencert,
                        const char *help, struct common_opts *o)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "days", required_argument, NULL, 'D' },
        { "force", no_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    o->config = conf_default_path();
    o->days = DEFAULT_DAYS;
    o->force = false;
    opterr = 0;
    optind = 0;
    while ((c = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o->config = optarg;
            break;
        case 'D':
            if (!gencert)
                return usage_error(argv[0], usage, "unknown option '%s'", "--days");
            if (parse_uint(optarg, 36500, &o->days) < 0 || o->days < 1)
                return usage_error(argv[0], usage,
                                   "--days: '%s' is not a number from 1 to 36500", optarg);
            break;
        case 'F':
            if (!gencert)
                return usage_error(argv[0], usage, "unknown option '%s'", "--force");
            o->force = true;
            break;
        case 'h':
            printf("usage: correod %s\n\n%s", usage, help);
            return 0;
        case ':':
            return usage_error(argv[0], usage, "%s needs a value", argv[optind - 1]);
        default:
            return usage_error(argv[0], usage, "unknown option '%s'", bad_option(argv, c));
        }
    }
    return -1;
}

/* ---- check-config ------------------------------------------------------- */

#define CHECK_USAGE "check-config [-c CONFIG]"

int cmd_check_config(int argc, char **argv)
{
    struct common_opts o;
    struct conf *c = NULL;
    struct user_db *db = NULL;
    struct err e;
    int problems = 0, rc;

    rc = parse_common(argc, argv, CHECK_USAGE, false,
                      "Load CONFIG and everything it names (users, aliases, the TLS\n"
                      "pair) the way the server would; print every problem as\n"
                      "file:line and exit 1, else a summary and exit 0.\n", &o);
    if (rc >= 0)
        return rc;
    if (optind < argc)
        return usage_error("check-config", CHECK_USAGE, "unexpected argument '%s'",
                           argv[optind]);

    if (load_conf(o.config, 0, &c) != 0)
        return 1;

    struct user_db_opts uo = {
        .users_file = c->users_file,
        .aliases_file = c->aliases_file,
        .domains = (const char *const *)c->domains,
        .n_domains = c->n_domains,
        .maildir_template = c->maildir_template,
    };
    err_clear(&e);
    if (users_load(&uo, &db, &e) < 0) {
        fprintf(stderr, "%s\n", e.text);
        problems++;
        db = NULL;
    }

    char fp[TLS_FINGERPRINT_SIZE] = "";
    if (c->tls_cert) {
        struct tls_server *ts = NULL;
        err_clear(&e);
        if (tls_server_new(&ts, c->tls_cert, c->tls_key, &e) < 0) {
            fprintf(stderr, "%s: tls_cert/tls_key: %s\n", c->path, e.text);
            problems++;
        } else {
            tls_server_free(ts);
            err_clear(&e);
            if (tls_cert_file_fingerprint(c->tls_cert, fp, &e) < 0)
                fp[0] = '\0';
        }
    }
    if (c->dkim_key && access(c->dkim_key, R_OK) < 0) {
        fprintf(stderr, "%s: dkim_key: cannot read '%s': %s\n", c->path, c->dkim_key,
                strerror(errno));
        problems++;
    }

    if (problems) {
        users_free(db);
        conf_free(c);
        return 1;
    }

    printf("%s: ok\n", c->path);
    printf("  hostname     %s\n", c->hostname);
    printf("  domains     ");
    for (size_t i = 0; i < c->n_domains; i++)
        printf(" %s", c->domains[i]);
    printf("\n");
    print_listeners(stdout, c, "  ");
    printf("  users        %zu\n", users_count(db));
    if (c->tls_cert)
        printf("  tls          %s (SHA256:%s)\n", c->tls_cert, fp[0] ? fp : "?");
    else
        printf("  tls          none\n");
    if (c->smarthost)
        printf("  outbound     smarthost %s port %u\n", c->smarthost, c->smarthost_port);
    else
        printf("  outbound     each domain's MX%s\n", c->n_routes ? " (with routes)" : "");
    if (c->dkim_domain)
        printf("  dkim         %s._domainkey.%s\n", c->dkim_selector, c->dkim_domain);
    users_free(db);
    conf_free(c);
    return 0;
}

/* ---- gencert ------------------------------------------------------------- */

#define GENCERT_USAGE "gencert [-c CONFIG] [--days N] [--force] [NAME...]"

int cmd_gencert(int argc, char **argv)
{
    struct common_opts o;
    struct conf *c = NULL;
    struct names ns = { NULL, 0 };
    struct err e;
    char fp[TLS_FINGERPRINT_SIZE];
    int rc, status = 1;

    rc = parse_common(argc, argv, GENCERT_USAGE, true,
                      "Write a self-signed certificate and key to the config's tls_cert\n"
                      "and tls_key.  NAMEs (host names or IP addresses) default to the\n"
                      "hostname, the domains, localhost, 127.0.0.1 and the listen\n"
                      "addresses.\n"
                      "\n"
                      "  --days N   validity in days (default 365)\n"
                      "  --force    replace an existing certificate or key\n", &o);
    if (rc >= 0)
        return rc;

    if (load_conf(o.config, CONF_LOAD_NO_TLS_FILES, &c) != 0)
        return 1;
    if (!c->tls_cert || !c->tls_key) {
        fprintf(stderr, "correod gencert: %s sets no tls_cert and tls_key\n", c->path);
        goto out;
    }
    if (!o.force) {
        const char *const files[] = { c->tls_cert, c->tls_key };
        for (size_t i = 0; i < ARRAY_LEN(files); i++) {
            if (exists(files[i])) {
                fprintf(stderr, "correod gencert: %s exists (use --force to replace it)\n",
                        files[i]);
                goto out;
            }
        }
    }
    if (optind < argc) {
        for (int i = optind; i < argc; i++)
            names_add(&ns, argv[i]);
    } else {
        default_cert_names(&ns, c, c->hostname);
    }

    err_clear(&e);
    if (tls_gencert(c->tls_cert, c->tls_key, ns.v, (int)o.days, &e) < 0) {
        fprintf(stderr, "correod gencert: %s\n", e.text);
        goto out;
    }
    if (geteuid() == 0 && c->run_user) {
        struct passwd *pw = getpwnam(c->run_user);
        if (!pw || chown(c->tls_cert, pw->pw_uid, pw->pw_gid) < 0 ||
            chown(c->tls_key, pw->pw_uid, pw->pw_gid) < 0) {
            fprintf(stderr, "correod gencert: cannot give the pair to %s: %s\n", c->run_user,
                    pw ? strerror(errno) : "no such user");
            goto out;
        }
    }
    err_clear(&e);
    if (tls_cert_file_fingerprint(c->tls_cert, fp, &e) < 0) {
        fprintf(stderr, "correod gencert: %s\n", e.text);
        goto out;
    }
    printf("wrote %s and %s, valid %lu days for ", c->tls_cert, c->tls_key, o.days);
    print_names(stdout, &ns);
    printf("\nSHA256:%s\n", fp);
    printf("a running server picks it up on SIGHUP\n");
    status = 0;
out:
    names_free(&ns);
    conf_free(c);
    return status;
}
