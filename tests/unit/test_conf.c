/* Unit tests for localserver/conf: options, defaults, units, paths, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "testutil.h"

/* Every case starts from this valid config (4 lines), so a case's first
 * line is line 5 of the file. */
static const char base_conf[] =
    "hostname mx.example.test\n"
    "domains example.test\n"
    "users_file users\n"
    "maildir_template mail/%d/%n\n";
#define FIRST_LINE 5

struct fx {
    char *dir;
    char *path;
};

static int setup(void **state)
{
    struct fx *f = XNEW(struct fx);

    f->dir = tu_tmpdir("conf");
    f->path = xasprintf("%s/correod.conf", f->dir);
    setenv("HOME", "/home/tester", 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void write_conf(const struct fx *f, const char *extra, bool with_base)
{
    char *text = xasprintf("%s%s\n", with_base ? base_conf : "", extra);
    write_file(f->path, text);
    free(text);
}

/* Replace @D@ with the directory and @F@ with the config's path. */
static char *expand(const struct fx *f, const char *s)
{
    struct buf b = BUF_INIT;

    while (*s) {
        if (strncmp(s, "@D@", 3) == 0) {
            assert_int_equal(buf_puts(&b, f->dir), 0);
            s += 3;
        } else if (strncmp(s, "@F@", 3) == 0) {
            assert_int_equal(buf_puts(&b, f->path), 0);
            s += 3;
        } else {
            assert_int_equal(buf_putc(&b, *s++), 0);
        }
    }
    return buf_steal(&b, NULL);
}

static char *join(char **list, size_t n)
{
    struct buf b = BUF_INIT;

    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_printf(&b, "%s%s", i ? "," : "", list[i]), 0);
    return buf_steal(&b, NULL);
}

/* One field of struct conf as text, by option name. */
static char *field(const struct conf *c, const char *name)
{
#define S(f) if (strcmp(name, #f) == 0) return xstrdup(c->f ? c->f : "(null)")
#define U(f) if (strcmp(name, #f) == 0) return xasprintf("%u", (unsigned)c->f)
#define Z(f) if (strcmp(name, #f) == 0) return xasprintf("%zu", c->f)
#define B(f) if (strcmp(name, #f) == 0) return xstrdup(c->f ? "yes" : "no")
    S(path); S(dir); S(hostname);
    if (strcmp(name, "domains") == 0)
        return join(c->domains, c->n_domains);
    if (strcmp(name, "listen") == 0)
        return join(c->listen, c->n_listen);
    U(port_offset); U(smtp_port); U(submission_port); U(submissions_port);
    U(pop3_port); U(pop3s_port);
    S(run_user); S(pid_file); U(workers); U(delivery_threads);
    U(worker_sessions); U(max_workers);
    S(users_file); S(aliases_file); S(maildir_template); S(queue_dir);
    S(tls_cert); S(tls_key);
    B(auth_allow_plaintext_loopback); B(vrfy);
    Z(max_message_size); U(max_recipients); U(max_errors); Z(max_line_length);
    U(timeout_command); U(timeout_data); U(max_connections); U(max_connections_per_ip);
    U(auth_fail_delay);
    U(log_target); B(log_target_set); S(log_file); U(log_level);
    S(smarthost); U(smarthost_port); U(smarthost_tls); S(smarthost_user);
    S(smarthost_pass); S(smarthost_pass_cmd); S(smarthost_ca_file);
    S(smarthost_fingerprint);
    if (strcmp(name, "route") == 0) {
        struct buf b = BUF_INIT;
        for (size_t i = 0; i < c->n_routes; i++)
            assert_int_equal(buf_printf(&b, "%s%s %s %u %d", i ? ";" : "",
                                        c->routes[i].domain, c->routes[i].host,
                                        c->routes[i].port, (int)c->routes[i].tls), 0);
        return buf_steal(&b, NULL);
    }
    U(queue_lifetime); U(retry_min); U(retry_max);
    S(dkim_domain); S(dkim_selector); S(dkim_key);
#undef S
#undef U
#undef Z
#undef B
    fail_msg("no field %s", name);
    return NULL;
}

static void print_diag(const struct rc_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  diag: %s\n", d->msgs[i]);
}

static struct conf *load_ok(const struct fx *f, const char *extra)
{
    struct rc_diag d;
    struct conf *c = NULL;
    struct err e;

    write_conf(f, extra, true);
    rc_diag_init(&d);
    err_clear(&e);
    if (conf_load(f->path, &c, &d, &e) != 0) {
        print_diag(&d);
        fail_msg("'%s': %s", extra, e.text);
    }
    assert_int_equal(d.n, 0);
    rc_diag_free(&d);
    assert_non_null(c);
    return c;
}

/* ---- defaults ------------------------------------------------------------ */

struct field_case {
    const char *name;
    const char *want;       /* @D@: the config's directory */
};

static const struct field_case defaults[] = {
    {"path", "@F@"},
    {"dir", "@D@"},
    {"hostname", "mx.example.test"},
    {"domains", "example.test"},
    {"listen", "127.0.0.1"},
    {"port_offset", "0"},
    {"smtp_port", "25"},
    {"submission_port", "587"},
    {"submissions_port", "465"},
    {"run_user", "(null)"},
    {"pid_file", "@D@/correod.pid"},
    {"workers", "2"},
    {"delivery_threads", "4"},
    {"worker_sessions", "1"},
    {"max_workers", "128"},
    {"users_file", "@D@/users"},
    {"aliases_file", "(null)"},
    {"maildir_template", "@D@/mail/%d/%n"},
    {"queue_dir", "@D@/queue"},
    {"tls_cert", "(null)"},
    {"tls_key", "(null)"},
    {"auth_allow_plaintext_loopback", "no"},
    {"vrfy", "no"},
    {"max_message_size", "26214400"},
    {"max_recipients", "100"},
    {"max_errors", "10"},
    {"max_line_length", "4096"},
    {"timeout_command", "300"},
    {"timeout_data", "600"},
    {"max_connections", "1000"},
    {"max_connections_per_ip", "20"},
    {"auth_fail_delay", "2"},
    {"log_target", "0"},
    {"log_target_set", "no"},
    {"log_file", "(null)"},
    {"log_level", "2"},
    {"smarthost", "(null)"},
    {"smarthost_tls", "1"},
    {"smarthost_user", "(null)"},
    {"smarthost_pass", "(null)"},
    {"smarthost_pass_cmd", "(null)"},
    {"smarthost_ca_file", "(null)"},
    {"smarthost_fingerprint", "(null)"},
    {"route", ""},
    {"queue_lifetime", "432000"},
    {"retry_min", "300"},
    {"retry_max", "3600"},
    {"dkim_domain", "(null)"},
    {"dkim_selector", "(null)"},
    {"dkim_key", "(null)"},
};

static void defaults_apply(void **state)
{
    struct fx *f = *state;
    struct conf *c = load_ok(f, "");

    for (size_t i = 0; i < ARRAY_LEN(defaults); i++) {
        char *got = field(c, defaults[i].name);
        char *want = expand(f, defaults[i].want);
        if (strcmp(got, want) != 0)
            fail_msg("default of %s: got '%s', want '%s'", defaults[i].name, got, want);
        free(got);
        free(want);
    }
    conf_free(c);
}

/* ---- each option set ------------------------------------------------------ */

struct set_case {
    const char *text;       /* added after the base config */
    const char *name;       /* field to check */
    const char *want;
};

#define FP64 "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:" \
             "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"

static const struct set_case sets[] = {
    {"hostname Mail.Example.ORG", "hostname", "mail.example.org"},
    {"domains Example.NET b.test", "domains", "example.test,example.net,b.test"},
    {"domains a.test\ndomains c.test", "domains", "example.test,a.test,c.test"},
    {"listen 127.0.0.1 ::1", "listen", "127.0.0.1,::1"},
    {"listen 0.0.0.0\nlisten ::", "listen", "0.0.0.0,::"},
    {"port_offset 10000", "smtp_port", "10025"},
    {"port_offset 10000", "submission_port", "10587"},
    {"port_offset 10000", "submissions_port", "10465"},
    {"port_offset 10000\nsmtp_port 2525", "smtp_port", "2525"},
    {"port_offset 10000\nsmtp_port 2525", "submission_port", "10587"},
    {"port_offset 10000", "pop3_port", "10110"},
    {"port_offset 10000", "pop3s_port", "10995"},
    {"pop3_port 0", "pop3_port", "0"},
    {"port_offset 64540", "pop3s_port", "65535"},
    {"port_offset 64948\npop3s_port 2995", "submission_port", "65535"},
    {"smtp_port 0", "smtp_port", "0"},
    {"submission_port 0\nsubmissions_port 0", "submissions_port", "0"},
    {"run_user root", "run_user", "root"},
    {"pid_file /run/correod.pid", "pid_file", "/run/correod.pid"},
    {"pid_file ./run/x.pid", "pid_file", "@D@/run/x.pid"},
    {"pid_file ~/x.pid", "pid_file", "/home/tester/x.pid"},
    {"workers 8", "workers", "8"},
    {"delivery_threads 16", "delivery_threads", "16"},
    {"worker_sessions 0", "worker_sessions", "0"},
    {"worker_sessions 50", "worker_sessions", "50"},
    {"max_workers 1", "max_workers", "1"},
    {"max_workers 256", "max_workers", "256"},
    {"users_file /etc/correod/users", "users_file", "/etc/correod/users"},
    {"aliases_file aliases", "aliases_file", "@D@/aliases"},
    {"maildir_template /var/mail/%d/%n", "maildir_template", "/var/mail/%d/%n"},
    {"maildir_template %h/Maildir", "maildir_template", "%h/Maildir"},
    {"maildir_template 'mail/%u/%%'", "maildir_template", "@D@/mail/%u/%%"},
    {"queue_dir /var/spool/correod", "queue_dir", "/var/spool/correod"},
    {"auth_allow_plaintext_loopback yes", "auth_allow_plaintext_loopback", "yes"},
    {"vrfy yes", "vrfy", "yes"},
    {"vrfy On", "vrfy", "yes"},
    {"vrfy TRUE", "vrfy", "yes"},
    {"vrfy yes\nvrfy off", "vrfy", "no"},
    {"vrfy false", "vrfy", "no"},
    {"max_message_size 10M", "max_message_size", "10485760"},
    {"max_message_size 2048k", "max_message_size", "2097152"},
    {"max_message_size 1G", "max_message_size", "1073741824"},
    {"max_message_size 5000", "max_message_size", "5000"},
    {"max_recipients 5", "max_recipients", "5"},
    {"max_errors 3", "max_errors", "3"},
    {"max_line_length 1000", "max_line_length", "1000"},
    {"max_line_length 8k", "max_line_length", "8192"},
    {"timeout_command 5m", "timeout_command", "300"},
    {"timeout_command 45s", "timeout_command", "45"},
    {"timeout_data 1h", "timeout_data", "3600"},
    {"max_connections 50", "max_connections", "50"},
    {"max_connections_per_ip 3", "max_connections_per_ip", "3"},
    {"auth_fail_delay 0", "auth_fail_delay", "0"},
    {"auth_fail_delay 30s", "auth_fail_delay", "30"},
    {"log_target syslog", "log_target", "1"},
    {"log_target syslog", "log_target_set", "yes"},
    {"log_target stderr", "log_target_set", "yes"},
    {"log_file correod.log", "log_file", "@D@/correod.log"},
    {"log_file correod.log", "log_target", "2"},
    {"log_target file\nlog_file /var/log/correod.log", "log_target", "2"},
    {"log_level debug", "log_level", "3"},
    {"log_level warning", "log_level", "1"},
    {"smarthost Relay.Example.ORG", "smarthost", "relay.example.org"},
    {"smarthost relay.example.org", "smarthost_port", "587"},
    {"smarthost relay.example.org\nsmarthost_tls tls", "smarthost_port", "465"},
    {"smarthost relay.example.org:2525", "smarthost_port", "2525"},
    {"smarthost [::1]:2526", "smarthost", "::1"},
    {"smarthost [::1]:2526", "smarthost_port", "2526"},
    {"smarthost 127.0.0.1\nsmarthost_port 10025", "smarthost_port", "10025"},
    {"smarthost h.test\nsmarthost_tls none", "smarthost_tls", "3"},
    {"smarthost h.test\nsmarthost_tls opportunistic", "smarthost_tls", "0"},
    {"smarthost h.test\nsmarthost_user bob\nsmarthost_pass 's3cr3t pass'",
     "smarthost_pass", "s3cr3t pass"},
    {"smarthost h.test\nsmarthost_user bob@h.test\nsmarthost_pass x",
     "smarthost_user", "bob@h.test"},
    {"smarthost h.test\nsmarthost_user bob\nsmarthost_pass_cmd pass show 'mail/h test'",
     "smarthost_pass_cmd", "pass show 'mail/h test'"},
    {"smarthost h.test\nsmarthost_ca_file ca.pem", "smarthost_ca_file", "@D@/ca.pem"},
    {"smarthost h.test\nsmarthost_fingerprint SHA256:" FP64, "smarthost_fingerprint",
     "SHA256:" FP64},
    {"route example.net 127.0.0.1:2525 none\nroute * MX.Example.org",
     "route", "example.net 127.0.0.1 2525 3;* mx.example.org 25 0"},
    {"route Other.Test [::1]:26 tls", "route", "other.test ::1 26 2"},
    {"route a.test h.test starttls", "route", "a.test h.test 25 1"},
    {"queue_lifetime 2d", "queue_lifetime", "172800"},
    {"retry_min 1m", "retry_min", "60"},
    {"retry_max 2h", "retry_max", "7200"},
    {"dkim_domain Example.TEST\ndkim_selector s2026\ndkim_key dkim.pem", "dkim_domain",
     "example.test"},
    {"dkim_domain example.test\ndkim_selector s2026\ndkim_key dkim.pem", "dkim_key",
     "@D@/dkim.pem"},
    {"# a comment\nvrfy yes  # trailing", "vrfy", "yes"},
};

static void options_set(void **state)
{
    struct fx *f = *state;

    for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
        struct conf *c = load_ok(f, sets[i].text);
        char *got = field(c, sets[i].name);
        char *want = expand(f, sets[i].want);
        if (strcmp(got, want) != 0)
            fail_msg("'%s': %s is '%s', want '%s'", sets[i].text, sets[i].name, got, want);
        free(got);
        free(want);
        conf_free(c);
    }
}

/* ---- errors ---------------------------------------------------------------- */

struct error_case {
    const char *text;
    const char *diag;   /* '\n'-joined; @F@ the file; a final '*' matches any rest */
};

static const struct error_case errors[] = {
    {"workers 0", "@F@:5: workers: expects a number from 1 to 256, not '0'"},
    {"workers two", "@F@:5: workers: expects a number from 1 to 256, not 'two'"},
    {"workers", "@F@:5: workers: expects exactly one value"},
    {"worker_sessions -1", "@F@:5: worker_sessions: expects a number from 0 to 1000000, not '-1'"},
    {"max_workers 0", "@F@:5: max_workers: expects a number from 1 to 256, not '0'"},
    {"max_workers 257", "@F@:5: max_workers: expects a number from 1 to 256, not '257'"},
    {"vrfy yes no", "@F@:5: vrfy: expects exactly one value (quote it if it contains blanks)"},
    {"vrfy maybe", "@F@:5: vrfy: expects yes or no, not 'maybe'"},
    {"max_message_size 10X",
     "@F@:5: max_message_size: expects a size from 1024 to 4294967296 bytes "
     "(suffix k, M or G), not '10X'"},
    {"max_message_size 99999999999999999999999G", "@F@:5: max_message_size: expects a size*"},
    {"max_message_size -1", "@F@:5: max_message_size: expects a size*"},
    {"max_message_size 5G", "@F@:5: max_message_size: expects a size*"},
    {"max_message_size ''", "@F@:5: max_message_size: expects a size*"},
    {"max_line_length 512", "@F@:5: max_line_length: expects a size from 1000*"},
    {"timeout_command 1w",
     "@F@:5: timeout_command: expects a duration from 1s to 86400s (suffix s, m, h or d), "
     "not '1w'"},
    {"timeout_command 5ms", "@F@:5: timeout_command: expects a duration*"},
    {"timeout_command 4294967296", "@F@:5: timeout_command: expects a duration*"},
    {"timeout_command 2d", "@F@:5: timeout_command: expects a duration*"},
    {"auth_fail_delay 1m", "@F@:5: auth_fail_delay: expects a duration from 0s to 30s*"},
    {"smtp_port 70000", "@F@:5: smtp_port: expects a port number from 0 to 65535, not '70000'"},
    {"port_offset 65100",
     "@F@:5: port_offset: 587 + 65100 is beyond port 65535 (set submission_port or a "
     "smaller offset)\n"
     "@F@:5: port_offset: 465 + 65100 is beyond port 65535 (set submissions_port or a "
     "smaller offset)\n"
     "@F@:5: port_offset: 995 + 65100 is beyond port 65535 (set pop3s_port or a "
     "smaller offset)"},
    {"port_offset 65511\nsubmission_port 2587\nsubmissions_port 2465\npop3_port 2110\n"
     "pop3s_port 2995",
     "@F@:5: port_offset: 25 + 65511 is beyond port 65535 (set smtp_port or a smaller "
     "offset)"},
    {"port_offset 100\nsmtp_port 210", "@F@:6: smtp_port and pop3_port are both port 210"},
    {"port_offset 70000", "@F@:5: port_offset: expects a number from 0 to 65535, not '70000'"},
    {"smtp_port 2525\nsubmission_port 2525",
     "@F@:6: smtp_port and submission_port are both port 2525"},
    {"port_offset 100\nsmtp_port 687", "@F@:6: smtp_port and submission_port are both port 687"},
    {"hostname -bad-", "@F@:5: hostname: '-bad-' is not a valid host name"},
    {"hostname a_b.test", "@F@:5: hostname: 'a_b.test' is not a valid host name"},
    {"domains ok.test foo..bar", "@F@:5: domains: 'foo..bar' is not a valid domain"},
    {"domains Example.test", "@F@:5: domain 'example.test' is listed twice"},
    {"listen localhost", "@F@:5: listen: 'localhost' is not an IPv4 or IPv6 address"},
    {"listen 127.0.0.1 127.0.0.1", "@F@:5: address '127.0.0.1' is listed twice"},
    {"tls_cert cert.pem",
     "@F@:5: tls_cert is set but tls_key is not (a TLS certificate and its key: all or none)"},
    {"tls_cert missing.pem\ntls_key missing-key.pem",
     "@F@:5: tls_cert: cannot read '@D@/missing.pem': No such file or directory\n"
     "@F@:6: tls_key: cannot read '@D@/missing-key.pem': No such file or directory"},
    {"dkim_domain example.test\ndkim_key k.pem",
     "@F@:5: dkim_domain is set but dkim_selector is not (DKIM: all or none)"},
    {"dkim_selector 'a b'", "@F@:5: dkim_selector: 'a b' is not a valid selector"},
    {"smtp_prot 25", "@F@:5: unknown option 'smtp_prot' (did you mean 'smtp_port'?)"},
    {"domain example.org", "@F@:5: unknown option 'domain' (did you mean 'domains'?)"},
    {"max-message-size 1M",
     "@F@:5: unknown option 'max-message-size' (did you mean 'max_message_size'?)"},
    {"Workers 3", "@F@:5: unknown option 'Workers' (did you mean 'workers'?)"},
    {"frobnicate 1", "@F@:5: unknown option 'frobnicate'"},
    {"route example.net",
     "@F@:5: route: expects DOMAIN HOST[:PORT] [opportunistic|starttls|tls|none]"},
    {"route example.net h.test:0",
     "@F@:5: route: 'h.test:0': the port must be a number from 1 to 65535"},
    {"route example.net h.test tlsx",
     "@F@:5: route: 'tlsx' is not one of opportunistic, starttls, tls, none"},
    {"route a.test h.test\nroute A.test h2.test",
     "@F@:6: route: a route for 'a.test' is already given"},
    {"route a.test [::1", "@F@:5: route: '[::1': missing ']'"},
    {"route bad_domain h.test", "@F@:5: route: 'bad_domain' is not a domain (or '*')"},
    {"smarthost_user bob", "@F@:5: smarthost_user is set but smarthost is not"},
    {"smarthost h.test\nsmarthost_user bob",
     "@F@:6: smarthost_user needs smarthost_pass or smarthost_pass_cmd"},
    {"smarthost h.test\nsmarthost_pass x", "@F@:6: a smarthost password without smarthost_user"},
    {"smarthost h.test\nsmarthost_user u\nsmarthost_pass x\nsmarthost_pass_cmd pass x",
     "@F@:8: smarthost_pass and smarthost_pass_cmd are both set; use one"},
    {"smarthost h.test:25\nsmarthost_port 26",
     "@F@:6: smarthost_port: the port is already given in smarthost"},
    {"smarthost h.test\nsmarthost_fingerprint abc", "@F@:6: smarthost_fingerprint: *"},
    {"smarthost h.test\nsmarthost_tls maybe",
     "@F@:6: smarthost_tls: expects opportunistic, starttls, tls or none, not 'maybe'"},
    {"log_target file", "@F@:5: log_target file needs log_file"},
    {"log_target journal", "@F@:5: log_target: expects stderr, syslog or file, not 'journal'"},
    {"log_target syslog\nlog_file x.log", "@F@:6: log_file is set but log_target is not file"},
    {"log_level loud", "@F@:5: log_level: expects error, warn, info or debug, not 'loud'"},
    {"retry_min 2h\nretry_max 1h", "@F@:5: retry_min (7200s) is longer than retry_max (3600s)"},
    {"maildir_template mail/%x",
     "@F@:5: maildir_template: 'mail/%x': unknown escape '%x' (use %u %n %d %h %%)"},
    {"run_user no-such-user-correod", "@F@:5: run_user: no such user 'no-such-user-correod'"},
    {"pid_file ''", "@F@:5: pid_file: empty path"},
    {"h=`hostname`", "@F@:5: backticks (command substitution) are not supported"},
    /* several problems, each at its line; the good lines between still load */
    {"vrfy x\nworkers 3\nbogus 1\nworkers 0",
     "@F@:5: vrfy: expects yes or no, not 'x'\n"
     "@F@:7: unknown option 'bogus'\n"
     "@F@:8: workers: expects a number from 1 to 256, not '0'"},
};

static bool diag_matches(const char *got, const char *want)
{
    size_t wl = strlen(want);

    if (wl > 0 && want[wl - 1] == '*')
        return strncmp(got, want, wl - 1) == 0;
    return strcmp(got, want) == 0;
}

static void errors_reported_at_their_line(void **state)
{
    struct fx *f = *state;

    for (size_t i = 0; i < ARRAY_LEN(errors); i++) {
        struct rc_diag d;
        struct conf *c = (struct conf *)1;
        struct err e;
        char *want = expand(f, errors[i].diag);
        size_t n_want = 1;

        for (const char *p = want; *p; p++)
            n_want += *p == '\n';
        write_conf(f, errors[i].text, true);
        rc_diag_init(&d);
        err_clear(&e);
        assert_int_equal(conf_load(f->path, &c, &d, &e), -1);
        assert_null(c);
        assert_int_equal(e.code, ERR_PARSE);
        if (d.n != n_want) {
            print_diag(&d);
            fail_msg("'%s': %zu problems, want %zu", errors[i].text, d.n, n_want);
        }
        char *line = want;
        for (size_t j = 0; j < d.n; j++) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            if (!diag_matches(d.msgs[j], line))
                fail_msg("'%s':\n got  %s\n want %s", errors[i].text, d.msgs[j], line);
            line = nl ? nl + 1 : line + strlen(line);
        }
        /* *e summarises: the first problem, and how many more */
        assert_int_equal(strncmp(e.text, d.msgs[0], strlen(d.msgs[0]) < 100
                                                      ? strlen(d.msgs[0]) : 100), 0);
        if (d.n > 1)
            assert_non_null(strstr(e.text, "more problems"));
        rc_diag_free(&d);
        free(want);
    }
}

static void required_options(void **state)
{
    struct fx *f = *state;
    struct rc_diag d;
    struct conf *c;
    struct err e;
    char *want[3];

    write_conf(f, "hostname h.test", false);
    rc_diag_init(&d);
    assert_int_equal(conf_load(f->path, &c, &d, &e), -1);
    want[0] = expand(f, "@F@: no domains given (domains DOMAIN...)");
    want[1] = expand(f, "@F@: users_file is required");
    want[2] = expand(f, "@F@: maildir_template is required");
    assert_int_equal(d.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(d.msgs[i], want[i]);
        free(want[i]);
    }
    assert_non_null(strstr(e.text, "(and 2 more problems)"));
    rc_diag_free(&d);

    /* without a diag, *e still names the problem */
    assert_int_equal(conf_load(f->path, &c, NULL, &e), -1);
    assert_null(c);
    assert_non_null(strstr(e.text, "no domains given"));
}

static void missing_file(void **state)
{
    struct fx *f = *state;
    struct rc_diag d;
    struct conf *c;
    struct err e;
    char *p = xasprintf("%s/nope.conf", f->dir);

    rc_diag_init(&d);
    assert_int_equal(conf_load(p, &c, &d, &e), -1);
    assert_null(c);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.text, "nope.conf"));
    rc_diag_free(&d);
    free(p);
}

/* ---- durations and sizes ------------------------------------------------- */

struct unit_case {
    const char *in;
    int rc;
    unsigned long long want;
};

static const struct unit_case durations[] = {
    {"0", 0, 0},
    {"30", 0, 30},
    {"30s", 0, 30},
    {"5m", 0, 300},
    {"2h", 0, 7200},
    {"5d", 0, 432000},
    {"4294967295", 0, 4294967295ull},
    {"4294967295s", 0, 4294967295ull},
    {"71582788m", 0, 4294967280ull},
    {"49710d", 0, 4294944000ull},
    {"007", 0, 7},
    {"4294967296", -1, 0},
    {"71582789m", -1, 0},
    {"49711d", -1, 0},
    {"1193047h", -1, 0},
    {"99999999999999999999999", -1, 0},
    {"", -1, 0},
    {"s", -1, 0},
    {"-1", -1, 0},
    {"+1", -1, 0},
    {" 5", -1, 0},
    {"5 ", -1, 0},
    {"5 m", -1, 0},
    {"5ms", -1, 0},
    {"5M", -1, 0},
    {"5w", -1, 0},
    {"1.5h", -1, 0},
    {"0x10", -1, 0},
};

static const struct unit_case sizes[] = {
    {"0", 0, 0},
    {"4096", 0, 4096},
    {"1k", 0, 1024},
    {"1024K", 0, 1048576},
    {"25M", 0, 26214400},
    {"25m", 0, 26214400},
    {"1G", 0, 1073741824},
    {"2g", 0, 2147483648ull},
#if SIZE_MAX == UINT64_MAX
    {"18446744073709551615", 0, 18446744073709551615ull},
    {"18446744073709551616", -1, 0},
    {"17179869183G", 0, 17179869183ull * 1073741824ull},
    {"17179869184G", -1, 0},
    {"18014398509481984k", -1, 0},
#endif
    {"", -1, 0},
    {"M", -1, 0},
    {"-1", -1, 0},
    {"1 M", -1, 0},
    {"1MB", -1, 0},
    {"1T", -1, 0},
    {"1.5M", -1, 0},
    {"1s", -1, 0},
};

static void durations_and_sizes(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(durations); i++) {
        unsigned v = 12345;
        int rc = conf_parse_duration(durations[i].in, &v);
        if (rc != durations[i].rc)
            fail_msg("duration '%s': rc %d, want %d", durations[i].in, rc, durations[i].rc);
        if (rc == 0 && v != durations[i].want)
            fail_msg("duration '%s': %u, want %llu", durations[i].in, v, durations[i].want);
        if (rc < 0)
            assert_int_equal(v, 12345);
    }
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t v = 12345;
        int rc = conf_parse_size(sizes[i].in, &v);
        if (rc != sizes[i].rc)
            fail_msg("size '%s': rc %d, want %d", sizes[i].in, rc, sizes[i].rc);
        if (rc == 0 && v != sizes[i].want)
            fail_msg("size '%s': %zu, want %llu", sizes[i].in, v, sizes[i].want);
        if (rc < 0)
            assert_int_equal(v, 12345);
    }
    assert_int_equal(conf_parse_duration(NULL, &(unsigned){0}), -1);
    assert_int_equal(conf_parse_size(NULL, &(size_t){0}), -1);
}

/* ---- paths ---------------------------------------------------------------- */

/* A config loaded through a relative name still gets absolute paths from
 * its own directory, and a sourced file's relative values are taken from
 * the main config's directory too. */
static void relative_paths(void **state)
{
    struct fx *f = *state;
    struct conf *c;
    struct err e;
    char *cwd = getcwd(NULL, 0);
    char *sub = xasprintf("%s/sub", f->dir);
    char *inc = xasprintf("%s/sub/more.conf", f->dir);
    char *parent = xstrdup(f->dir);
    char *slash = strrchr(parent, '/');
    char *rel, *want;

    assert_non_null(cwd);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(inc, "aliases_file aliases\ntls_cert ./c.pem\n");
    write_conf(f, "source sub/more.conf\nqueue_dir q\n", true);
    *slash = '\0';
    rel = xasprintf("%s/correod.conf", slash + 1);
    assert_int_equal(chdir(parent), 0);
    int rc = conf_load(rel, &c, NULL, &e);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, -1);   /* tls_cert without tls_key */

    write_file(inc, "aliases_file aliases\n");
    assert_int_equal(chdir(parent), 0);
    rc = conf_load(rel, &c, NULL, &e);
    assert_int_equal(chdir(cwd), 0);
    if (rc != 0)
        fail_msg("%s", e.text);
    assert_string_equal(c->path, f->path);
    assert_string_equal(c->dir, f->dir);
    want = xasprintf("%s/aliases", f->dir);
    assert_string_equal(c->aliases_file, want);
    free(want);
    want = xasprintf("%s/q", f->dir);
    assert_string_equal(c->queue_dir, want);
    free(want);
    want = xasprintf("%s/users", f->dir);
    assert_string_equal(c->users_file, want);
    free(want);
    conf_free(c);

    free(rel);
    free(parent);
    free(inc);
    free(sub);
    free(cwd);
}

/* tls files must be readable, except for the loader gencert uses. */
static void tls_files_and_flags(void **state)
{
    struct fx *f = *state;
    struct conf *c;
    struct err e;
    char *cert = xasprintf("%s/cert.pem", f->dir);
    char *key = xasprintf("%s/key.pem", f->dir);

    write_conf(f, "tls_cert cert.pem\ntls_key key.pem", true);
    assert_int_equal(conf_load(f->path, &c, NULL, &e), -1);
    assert_int_equal(conf_load_flags(f->path, CONF_LOAD_NO_TLS_FILES, &c, NULL, &e), 0);
    assert_string_equal(c->tls_cert, cert);
    assert_string_equal(c->tls_key, key);
    conf_free(c);

    write_file(cert, "x");
    write_file(key, "y");
    assert_int_equal(conf_load(f->path, &c, NULL, &e), 0);
    conf_free(c);
    if (geteuid() != 0) {
        /* unreadable: root reads anything, so only checked as a user */
        assert_int_equal(chmod(key, 0), 0);
        assert_int_equal(conf_load(f->path, &c, NULL, &e), -1);
        assert_non_null(strstr(e.text, "tls_key: cannot read"));
    }
    free(cert);
    free(key);
}

static void local_domains_and_default_path(void **state)
{
    struct fx *f = *state;
    struct conf *c = load_ok(f, "domains Other.Test");

    assert_true(conf_is_local_domain(c, "example.test"));
    assert_true(conf_is_local_domain(c, "EXAMPLE.Test"));
    assert_true(conf_is_local_domain(c, "other.test"));
    assert_false(conf_is_local_domain(c, "example.tes"));
    assert_false(conf_is_local_domain(c, "sub.example.test"));
    assert_false(conf_is_local_domain(c, ""));
    assert_false(conf_is_local_domain(c, NULL));
    conf_free(c);

    setenv("CORREOD_CONF", "/tmp/x.conf", 1);
    assert_string_equal(conf_default_path(), "/tmp/x.conf");
    setenv("CORREOD_CONF", "", 1);
    assert_string_equal(conf_default_path(), "/etc/correod/correod.conf");
    unsetenv("CORREOD_CONF");
    assert_string_equal(conf_default_path(), "/etc/correod/correod.conf");
}

/* $VARS are not expanded in correod.conf: a value is what the file says. */
static void no_environment_expansion(void **state)
{
    struct fx *f = *state;
    struct conf *c;

    setenv("CORREOD_TEST_VAR", "expanded", 1);
    c = load_ok(f, "smarthost h.test\nsmarthost_user u\nsmarthost_pass p$CORREOD_TEST_VAR");
    assert_string_equal(c->smarthost_pass, "p$CORREOD_TEST_VAR");
    conf_free(c);
    unsetenv("CORREOD_TEST_VAR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(defaults_apply, setup, teardown),
        cmocka_unit_test_setup_teardown(options_set, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_reported_at_their_line, setup, teardown),
        cmocka_unit_test_setup_teardown(required_options, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_file, setup, teardown),
        cmocka_unit_test(durations_and_sizes),
        cmocka_unit_test_setup_teardown(relative_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_files_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(local_domains_and_default_path, setup, teardown),
        cmocka_unit_test_setup_teardown(no_environment_expansion, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
