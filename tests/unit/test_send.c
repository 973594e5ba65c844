/*
 * Tests for mua/send against a real SMTP server on 127.0.0.1:
 * tests/integration/smtp_server.py (Debian's python3-aiosmtpd) started
 * three times -- STARTTLS, implicit TLS, cleartext -- with a certificate
 * made by tls_gencert, and against a fake sendmail script that records its
 * argv and stdin.  The server writes every message it accepted (envelope
 * and exact data, base64) and every command it saw; the tests compare those
 * with what was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "codec.h"
#include "err.h"
#include "send.h"
#include "testutil.h"
#include "tls.h"
#include "xalloc.h"

extern char **environ;

#define IO_MS 10000
#define START_MS 30000
#define EVENT_WAIT_MS 10000

#define assert_contains(hay, needle)                                              \
    do {                                                                          \
        if (strstr((hay), (needle)) == NULL) {                                    \
            print_error("expected \"%s\" in \"%s\"\n", (needle), (hay));          \
            fail();                                                               \
        }                                                                         \
    } while (0)

#define assert_not_contains(hay, needle)                                          \
    do {                                                                          \
        if (strstr((hay), (needle)) != NULL) {                                    \
            print_error("did not expect \"%s\" in \"%s\"\n", (needle), (hay));    \
            fail();                                                               \
        }                                                                         \
    } while (0)

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- files ---------------------------------------------------------------- */

/* Whole file as a string ("" if it does not exist). */
static char *slurp(const char *path, size_t *len)
{
    struct buf b = BUF_INIT;
    char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd >= 0) {
        while ((r = read(fd, chunk, sizeof(chunk))) > 0)
            assert_int_equal(buf_append(&b, chunk, (size_t)r), 0);
        close(fd);
    }
    return buf_steal(&b, len);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

/* ---- the SMTP server ------------------------------------------------------- */

struct server {
    const char *name;
    pid_t pid;
    int out_fd;
    int life_fd;      /* the server exits when this pipe closes */
    unsigned port;
    char *dir;        /* messages and events.log */
    char *errlog;     /* the server's stderr */
};

static struct {
    char *tmp;
    char *cert, *key;
    char fp[TLS_FINGERPRINT_SIZE];
    struct server starttls, implicit, plain;
    char *fake_sendmail;
    char *record;     /* where the fake sendmail writes argv and stdin */
} fx;

static int server_spawn(struct server *sv, const char *const *extra)
{
    const char *py = getenv("PYTHON");
    const char *src = getenv("CORREO_SRCDIR");
    const char *argv[40];
    posix_spawn_file_actions_t fa;
    char *script;
    size_t n = 0;
    int fds[2], life[2], rc;

    if (py == NULL || py[0] == '\0')
        py = "/usr/bin/python3";
    if (src == NULL || src[0] == '\0') {
        print_error("CORREO_SRCDIR is not set\n");
        return -1;
    }
    script = xasprintf("%s/tests/integration/smtp_server.py", src);
    sv->dir = xasprintf("%s/%s", fx.tmp, sv->name);
    sv->errlog = xasprintf("%s/%s.stderr", fx.tmp, sv->name);
    assert_int_equal(mkdir(sv->dir, 0700), 0);
    argv[n++] = py;
    argv[n++] = script;
    argv[n++] = "--outdir";
    argv[n++] = sv->dir;
    argv[n++] = "--stdin-eof-exits";
    for (size_t i = 0; extra[i] != NULL && n < ARRAY_LEN(argv) - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    assert_int_equal(pipe2(life, O_CLOEXEC), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, life[0], 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, sv->errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    rc = posix_spawn(&sv->pid, py, &fa, NULL, (char *const *)(uintptr_t)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    close(life[0]);
    free(script);
    if (rc != 0) {
        close(fds[0]);
        close(life[1]);
        sv->pid = 0;
        return -1;
    }
    sv->out_fd = fds[0];
    sv->life_fd = life[1];
    return 0;
}

/* Wait (with a deadline) for the server's "PORT n" line. */
static int server_wait_port(struct server *sv)
{
    char out[256];
    size_t len = 0;
    long long deadline = now_ms() + START_MS;

    for (;;) {
        struct pollfd pf = {sv->out_fd, POLLIN, 0};
        long long left = deadline - now_ms();
        ssize_t r;

        out[len] = '\0';
        if (strchr(out, '\n') != NULL) {
            if (sscanf(out, "PORT %u", &sv->port) == 1 && sv->port > 0)
                break;
            goto fail;
        }
        if (left <= 0 || len + 1 >= sizeof(out))
            goto fail;
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        r = read(sv->out_fd, out + len, sizeof(out) - 1 - len);
        if (r <= 0)
            goto fail;
        len += (size_t)r;
    }
    close(sv->out_fd);
    sv->out_fd = -1;
    return 0;
fail: {
        char *err = slurp(sv->errlog, NULL);

        print_error("smtp_server.py (%s) did not start:\n%s\n", sv->name, err);
        free(err);
        return -1;
    }
}

static void server_stop(struct server *sv)
{
    if (sv->pid > 0) {
        kill(sv->pid, SIGTERM);
        while (waitpid(sv->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (sv->out_fd >= 0)
        close(sv->out_fd);
    if (sv->life_fd >= 0)
        close(sv->life_fd);
    sv->pid = 0;
    sv->out_fd = sv->life_fd = -1;
    free(sv->dir);
    free(sv->errlog);
    sv->dir = sv->errlog = NULL;
}

static int count_msgs(const struct server *sv)
{
    int n = 0;

    for (;;) {
        char *p = xasprintf("%s/msg-%d.json", sv->dir, n + 1);
        bool there = access(p, F_OK) == 0;

        free(p);
        if (!there)
            return n;
        n++;
    }
}

static char *read_msg(const struct server *sv, int n)
{
    char *p = xasprintf("%s/msg-%d.json", sv->dir, n);
    char *text = slurp(p, NULL);

    free(p);
    return text;
}

/* Bytes of events.log so far: what a test saw is what comes after. */
static size_t events_mark(const struct server *sv)
{
    char *p = xasprintf("%s/events.log", sv->dir);
    struct stat st;
    size_t n = stat(p, &st) == 0 ? (size_t)st.st_size : 0;

    free(p);
    return n;
}

/* Events after mark, one per line, without the "conn=N " prefix. */
static char *events_since(const struct server *sv, size_t mark)
{
    char *p = xasprintf("%s/events.log", sv->dir);
    size_t len;
    char *all = slurp(p, &len);
    const char *q = mark <= len ? all + mark : "";
    struct buf out = BUF_INIT;

    while (*q != '\0') {
        const char *nl = strchr(q, '\n');
        size_t n = nl ? (size_t)(nl - q) + 1 : strlen(q);

        if (strncmp(q, "conn=", 5) == 0) {
            const char *sp = memchr(q, ' ', n);

            if (sp != NULL) {
                n -= (size_t)(sp + 1 - q);
                q = sp + 1;
            }
        }
        assert_int_equal(buf_append(&out, q, n), 0);
        q += n;
    }
    free(p);
    free(all);
    return buf_steal(&out, NULL);
}

/* Events after mark, once they contain needle (the server logs a command
 * before it answers it; only QUIT is not waited for by the client). */
static char *events_wait(const struct server *sv, size_t mark, const char *needle)
{
    long long deadline = now_ms() + EVENT_WAIT_MS;

    for (;;) {
        char *ev = events_since(sv, mark);

        if (strstr(ev, needle) != NULL || now_ms() > deadline)
            return ev;
        free(ev);
        (void)poll(NULL, 0, 10);
    }
}

/* ---- the server's JSON records (values of interest are base64) ------------- */

static char *b64_at(const char *p, size_t *len)
{
    const char *end = strchr(p, '"');
    struct buf out = BUF_INIT;
    bool bad = true;

    assert_non_null(end);
    assert_int_equal(codec_b64_decode(p, (size_t)(end - p), &out, &bad), 0);
    assert_false(bad);
    return buf_steal(&out, len);
}

static char *json_b64(const char *json, const char *key, size_t *len)
{
    char *pat = xasprintf("\"%s\": \"", key);
    const char *p = strstr(json, pat);
    char *v;

    if (p == NULL)
        print_error("no %s in %s\n", key, json);
    assert_non_null(p);
    v = b64_at(p + strlen(pat), len);
    free(pat);
    return v;
}

/* The base64 strings of a list, decoded and joined with '\n'. */
static char *json_b64_list(const char *json, const char *key)
{
    char *pat = xasprintf("\"%s\": [", key);
    const char *p = strstr(json, pat);
    const char *end;
    struct buf all = BUF_INIT;

    assert_non_null(p);
    p += strlen(pat);
    end = strchr(p, ']');
    assert_non_null(end);
    for (;;) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        char *v;

        if (q == NULL)
            break;
        v = b64_at(q + 1, NULL);
        if (all.len > 0)
            assert_int_equal(buf_putc(&all, '\n'), 0);
        assert_int_equal(buf_puts(&all, v), 0);
        free(v);
        p = strchr(q + 1, '"') + 1;
    }
    free(pat);
    return buf_steal(&all, NULL);
}

/* ---- calls ------------------------------------------------------------------ */

struct call {
    char url[256];
    struct send_opts o;
    struct err e;
};

static void call_init(struct call *c, const char *scheme, const struct server *sv,
                      const char *user)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->url, sizeof(c->url), "%s://%s%s127.0.0.1:%u/", scheme, user ? user : "",
             user ? "@" : "", sv->port);
    c->o.url = c->url;
    c->o.timeout_ms = IO_MS;
    c->o.helo_name = "client.test";
}

static const char *const three_rcpts[] = {"to@example.com", "cc@example.com",
                                          "hidden@example.com"};

static const char msg_7bit[] =
    "From: Sender <sender@example.org>\r\n"
    "To: to@example.com\r\n"
    "Subject: plain\r\n"
    "\r\n"
    "Just ASCII.\r\n";

/* ---- fixture ---------------------------------------------------------------- */

static int group_teardown(void **state);

static int group_setup(void **state)
{
    static const char *const names[] = {"localhost", "127.0.0.1", NULL};
    struct err e;
    char *script;

    (void)state;
    memset(&fx, 0, sizeof(fx));
    fx.starttls.name = "starttls";
    fx.implicit.name = "implicit";
    fx.plain.name = "plain";
    fx.starttls.out_fd = fx.implicit.out_fd = fx.plain.out_fd = -1;
    fx.starttls.life_fd = fx.implicit.life_fd = fx.plain.life_fd = -1;
    fx.tmp = tu_tmpdir("send");
    fx.cert = xasprintf("%s/cert.pem", fx.tmp);
    fx.key = xasprintf("%s/key.pem", fx.tmp);
    if (tls_gencert(fx.cert, fx.key, names, 2, &e) < 0 ||
        tls_cert_file_fingerprint(fx.cert, fx.fp, &e) < 0) {
        print_error("certificate: %s\n", e.text);
        return -1;
    }

    {
        const char *const a[] = {"--mode", "starttls", "--cert", fx.cert, "--key", fx.key,
                                 "--mechs", "PLAIN LOGIN", "--smtputf8",
                                 "--reject-rcpt", "nobody@example.net",
                                 "--drop-data-from", "dropper@example.org", NULL};
        const char *const b[] = {"--mode", "implicit", "--cert", fx.cert, "--key", fx.key,
                                 "--mechs", "PLAIN OAUTHBEARER", "--token", "tok-123", NULL};
        const char *const c[] = {"--mode", "plain", "--mechs", "LOGIN XOAUTH2",
                                 "--token", "tok-456", "--no-8bitmime", NULL};

        if (server_spawn(&fx.starttls, a) < 0 || server_spawn(&fx.implicit, b) < 0 ||
            server_spawn(&fx.plain, c) < 0)
            goto fail;
    }
    if (server_wait_port(&fx.starttls) < 0 || server_wait_port(&fx.implicit) < 0 ||
        server_wait_port(&fx.plain) < 0)
        goto fail;

    /* The fake sendmail: records argv (one per line) and stdin; the first
     * argument chooses how it ends. */
    fx.record = xasprintf("%s/record", fx.tmp);
    assert_int_equal(mkdir(fx.record, 0700), 0);
    fx.fake_sendmail = xasprintf("%s/fake sendmail", fx.tmp);
    script = xasprintf("#!/bin/sh\n"
                       "dir='%s'\n"
                       ": > \"$dir/argv\"\n"
                       "for a in \"$@\"; do printf '%%s\\n' \"$a\" >> \"$dir/argv\"; done\n"
                       "cat > \"$dir/stdin\"\n"
                       "case \"$1\" in\n"
                       "--mode=tempfail)\n"
                       "    echo 'queue is full' >&2; echo 'try later' >&2; exit 75;;\n"
                       "--mode=crash) kill -9 $$;;\n"
                       "--mode=stdout) echo 'complaint on stdout'; exit 1;;\n"
                       "esac\n"
                       "exit 0\n",
                       fx.record);
    write_file(fx.fake_sendmail, script, 0700);
    free(script);
    return 0;

fail:
    group_teardown(state);
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    server_stop(&fx.starttls);
    server_stop(&fx.implicit);
    server_stop(&fx.plain);
    if (fx.tmp != NULL)
        tu_rm_rf(fx.tmp);
    free(fx.tmp);
    free(fx.cert);
    free(fx.key);
    free(fx.fake_sendmail);
    free(fx.record);
    memset(&fx, 0, sizeof(fx));
    return 0;
}

/* ---- smtp_url ----------------------------------------------------------------- */

static void test_url_parse(void **state)
{
    static const struct {
        const char *url;
        int rc;
        enum send_security sec;
        const char *host;
        unsigned port;
        const char *user, *pass;
    } cases[] = {
        {"smtp://mail.example.org", 0, SEND_STARTTLS, "mail.example.org", 587, NULL, NULL},
        {"smtp://me@mail.example.org:2525/", 0, SEND_STARTTLS, "mail.example.org", 2525, "me",
         NULL},
        {"SMTPS://mail.example.org", 0, SEND_TLS, "mail.example.org", 465, NULL, NULL},
        {"smtp+plain://127.0.0.1", 0, SEND_PLAIN, "127.0.0.1", 25, NULL, NULL},
        {"smtp://me%40example.org:p%3Ass@h:587", 0, SEND_STARTTLS, "h", 587, "me@example.org",
         "p:ss"},
        {"smtp://me@example.org@h", 0, SEND_STARTTLS, "h", 587, "me@example.org", NULL},
        {"smtps://[::1]:4650/", 0, SEND_TLS, "::1", 4650, NULL, NULL},
        {"smtps://[::1]", 0, SEND_TLS, "::1", 465, NULL, NULL},
        {"", -1, 0, NULL, 0, NULL, NULL},
        {"imap://h", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h:0", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h:65536", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h:", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h:25x", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h/path", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://h?x=1", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://@h", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://me%4@h", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://me%00x@h", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://ho st", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://[::1", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://[nonsense]:25", -1, 0, NULL, 0, NULL, NULL},
        {"smtp://[::1]x", -1, 0, NULL, 0, NULL, NULL},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct send_url u;
        struct err e;
        int rc = send_url_parse(cases[i].url, &u, &e);

        if (rc != cases[i].rc)
            print_error("case %zu (%s): rc %d (%s)\n", i, cases[i].url, rc, e.text);
        assert_int_equal(rc, cases[i].rc);
        if (rc < 0) {
            assert_int_equal(e.code, ERR_INVAL);
            continue;
        }
        assert_int_equal(u.security, cases[i].sec);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        if (cases[i].user)
            assert_string_equal(u.user, cases[i].user);
        else
            assert_null(u.user);
        if (cases[i].pass)
            assert_string_equal(u.pass, cases[i].pass);
        else
            assert_null(u.pass);
        send_url_free(&u);
    }
}

/* ---- delivery ------------------------------------------------------------------- */

/* Send through the STARTTLS server with the pin and PLAIN, and compare what
 * it received: data byte for byte (the dot-stuffing undone), the envelope
 * with the Bcc recipient, nothing added. */
static void test_starttls_delivery(void **state)
{
    static const struct {
        const char *name;
        const char *data;
        const char *expect;   /* NULL: the same as data */
        bool eight_bit;
    } cases[] = {
        {"dots and 8bit",
         "From: Sender <sender@example.org>\r\n"
         "To: to@example.com\r\n"
         "Cc: cc@example.com\r\n"
         "Subject: dots\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n"
         "Content-Transfer-Encoding: 8bit\r\n"
         "\r\n"
         "first\r\n"
         ".\r\n"
         ".leading dot\r\n"
         "..two dots\r\n"
         "caf\xc3\xa9 \xe2\x82\xac\r\n"
         "Bcc: in the body this is just text\r\n"
         "\r\n"
         ".",
         "From: Sender <sender@example.org>\r\n"
         "To: to@example.com\r\n"
         "Cc: cc@example.com\r\n"
         "Subject: dots\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n"
         "Content-Transfer-Encoding: 8bit\r\n"
         "\r\n"
         "first\r\n"
         ".\r\n"
         ".leading dot\r\n"
         "..two dots\r\n"
         "caf\xc3\xa9 \xe2\x82\xac\r\n"
         "Bcc: in the body this is just text\r\n"
         "\r\n"
         ".\r\n",
         true},
        {"final CRLF kept exactly",
         "Subject: crlf\r\n\r\nbody\r\n.\r\n", NULL, false},
        {"ends in an empty line", "Subject: empty\r\n\r\nbody\r\n\r\n", NULL, false},
        {"bare LF becomes CRLF", "Subject: lf\n\nline one\n.\n..x\n",
         "Subject: lf\r\n\r\nline one\r\n.\r\n..x\r\n", false},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct call c;
        int before = count_msgs(&fx.starttls);
        size_t mark = events_mark(&fx.starttls), got_len;
        const char *expect = cases[i].expect ? cases[i].expect : cases[i].data;
        char *json, *got, *rcpts, *from, *ev;
        int rc;

        call_init(&c, "smtp", &fx.starttls, "alice");
        c.o.pass = "secret";
        c.o.tls_fingerprint = fx.fp;
        rc = send_message(&c.o, "sender@example.org", three_rcpts, 3, cases[i].data,
                          strlen(cases[i].data), &c.e);
        if (rc != 0)
            print_error("%s: %s\n", cases[i].name, c.e.text);
        assert_int_equal(rc, 0);
        assert_int_equal(count_msgs(&fx.starttls), before + 1);

        json = read_msg(&fx.starttls, before + 1);
        got = json_b64(json, "data", &got_len);
        if (got_len != strlen(expect) || memcmp(got, expect, got_len) != 0)
            print_error("%s: received\n%s\nexpected\n%s\n", cases[i].name, got, expect);
        assert_int_equal(got_len, strlen(expect));
        assert_memory_equal(got, expect, got_len);
        assert_not_contains(got, "hidden@example.com");
        rcpts = json_b64_list(json, "rcpt_tos_b64");
        assert_string_equal(rcpts, "to@example.com\ncc@example.com\nhidden@example.com");
        from = json_b64(json, "mail_from_b64", NULL);
        assert_string_equal(from, "sender@example.org");
        assert_contains(json, "\"tls\": true");
        assert_contains(json, "\"auth_login\": \"alice\"");
        if (cases[i].eight_bit)
            assert_contains(json, "\"BODY=8BITMIME\"");
        else
            assert_not_contains(json, "BODY=8BITMIME");

        /* STARTTLS came before AUTH; nothing but EHLO and STARTTLS in clear. */
        ev = events_wait(&fx.starttls, mark, "QUIT");
        assert_contains(ev, "EHLO tls=0\n");
        assert_contains(ev, "STARTTLS tls=0\n");
        assert_contains(ev, "EHLO tls=1\n");
        assert_contains(ev, "AUTH tls=1 mech=PLAIN\n");
        assert_not_contains(ev, "AUTH tls=0");
        assert_not_contains(ev, "MAIL tls=0");
        free(ev);
        free(from);
        free(rcpts);
        free(got);
        free(json);
    }
}

static void test_implicit_tls(void **state)
{
    struct call c;
    int before = count_msgs(&fx.implicit);
    size_t mark = events_mark(&fx.implicit);
    char *json, *data, *ev;

    (void)state;
    call_init(&c, "smtps", &fx.implicit, "alice");
    c.o.pass = "secret";
    c.o.tls_fingerprint = fx.fp;
    if (send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit, strlen(msg_7bit),
                     &c.e) != 0)
        print_error("%s\n", c.e.text);
    assert_int_equal(count_msgs(&fx.implicit), before + 1);
    json = read_msg(&fx.implicit, before + 1);
    data = json_b64(json, "data", NULL);
    assert_string_equal(data, msg_7bit);
    assert_contains(json, "\"tls\": true");
    ev = events_wait(&fx.implicit, mark, "QUIT");
    assert_contains(ev, "EHLO tls=1\nAUTH tls=1 mech=PLAIN\n");
    assert_not_contains(ev, "STARTTLS");
    assert_not_contains(ev, "tls=0");
    free(ev);
    free(data);
    free(json);
}

/* AUTH mechanisms, chosen from what each server offers. */
static void test_auth_mechanisms(void **state)
{
    static const struct {
        const char *name;
        const char *scheme;
        int server;           /* 0 implicit, 1 plain */
        const char *pass;
        const char *oauth_cmd;
        int rc;
        const char *mech;     /* expected in the events */
        const char *text[3];  /* expected in the error */
    } cases[] = {
        {"OAUTHBEARER", "smtps", 0, NULL, "printf 'tok-123\\n'", 0, "mech=OAUTHBEARER", {NULL}},
        {"OAUTHBEARER refused", "smtps", 0, NULL, "printf 'expired\\n'", -1, "mech=OAUTHBEARER",
         {"AUTH OAUTHBEARER refused", "535", "invalid_token"}},
        {"XOAUTH2", "smtp+plain", 1, NULL, "printf 'tok-456'", 0, "mech=XOAUTH2", {NULL}},
        {"XOAUTH2 refused", "smtp+plain", 1, NULL, "echo wrong", -1, "mech=XOAUTH2",
         {"AUTH XOAUTH2 refused", "535 5.7.8 Username and Password not accepted", "401"}},
        {"LOGIN in cleartext to loopback", "smtp+plain", 1, "secret", NULL, 0, "mech=LOGIN",
         {NULL}},
        {"LOGIN refused", "smtp+plain", 1, "wrong", NULL, -1, "mech=LOGIN",
         {"AUTH LOGIN refused", "535 5.7.8 Authentication credentials invalid", NULL}},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct server *sv = cases[i].server == 0 ? &fx.implicit : &fx.plain;
        int before = count_msgs(sv);
        size_t mark = events_mark(sv);
        struct call c;
        char *ev;
        int rc;

        call_init(&c, cases[i].scheme, sv, "alice");
        c.o.pass = cases[i].pass;
        c.o.oauth_cmd = cases[i].oauth_cmd;
        c.o.tls_fingerprint = fx.fp;
        rc = send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                          strlen(msg_7bit), &c.e);
        if (rc != cases[i].rc)
            print_error("%s: %s\n", cases[i].name, c.e.text);
        assert_int_equal(rc, cases[i].rc);
        ev = events_wait(sv, mark, "QUIT");
        assert_contains(ev, cases[i].mech);
        if (rc == 0) {
            char *json = read_msg(sv, before + 1);

            assert_int_equal(count_msgs(sv), before + 1);
            assert_contains(json, "\"auth_login\": \"alice\"");
            assert_contains(json, cases[i].server == 0 ? "\"tls\": true" : "\"tls\": false");
            free(json);
        } else {
            assert_int_equal(c.e.code, ERR_PROTO);
            assert_int_equal(c.e.scope, ERR_SCOPE_ACCOUNT);
            for (size_t k = 0; k < 3 && cases[i].text[k]; k++)
                assert_contains(c.e.text, cases[i].text[k]);
            assert_not_contains(ev, "MAIL");
            assert_int_equal(count_msgs(sv), before);
        }
        free(ev);
    }
}

/* ---- failures --------------------------------------------------------------------- */

static void test_auth_refused(void **state)
{
    struct call c;
    int before = count_msgs(&fx.starttls);
    size_t mark = events_mark(&fx.starttls);
    char *ev;

    (void)state;
    call_init(&c, "smtp", &fx.starttls, "alice");
    c.o.pass = "not the password";
    c.o.tls_fingerprint = fx.fp;
    assert_int_equal(send_message(&c.o, "sender@example.org", three_rcpts, 3, msg_7bit,
                                  strlen(msg_7bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_PROTO);
    assert_int_equal(c.e.scope, ERR_SCOPE_ACCOUNT);
    assert_false(c.e.temporary);
    assert_contains(c.e.text, "AUTH PLAIN refused: 535 5.7.8 Authentication credentials invalid");
    assert_not_contains(c.e.text, "not the password");
    ev = events_wait(&fx.starttls, mark, "QUIT");
    assert_contains(ev, "AUTH tls=1 mech=PLAIN");
    assert_not_contains(ev, "MAIL");
    assert_int_equal(count_msgs(&fx.starttls), before);
    free(ev);
}

static void test_dropped_in_data(void **state)
{
    struct call c;
    int before = count_msgs(&fx.starttls);
    size_t mark = events_mark(&fx.starttls);
    char *ev;

    (void)state;
    call_init(&c, "smtp", &fx.starttls, "alice");
    c.o.pass = "secret";
    c.o.tls_fingerprint = fx.fp;
    assert_int_equal(send_message(&c.o, "dropper@example.org", three_rcpts, 2, msg_7bit,
                                  strlen(msg_7bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_NET);
    assert_true(c.e.temporary);
    assert_contains(c.e.text, "before the server confirmed the message");
    ev = events_wait(&fx.starttls, mark, "DROP");
    assert_contains(ev, "DATA tls=1");
    assert_contains(ev, "DROP");
    assert_int_equal(count_msgs(&fx.starttls), before);
    free(ev);
}

static void test_rcpt_refused(void **state)
{
    static const char *const rcpts[] = {"ok@example.com", "nobody@example.net",
                                        "ok2@example.com"};
    struct call c;
    int before = count_msgs(&fx.starttls);
    size_t mark = events_mark(&fx.starttls);
    char *ev;

    (void)state;
    call_init(&c, "smtp", &fx.starttls, "alice");
    c.o.pass = "secret";
    c.o.tls_fingerprint = fx.fp;
    assert_int_equal(send_message(&c.o, "sender@example.org", rcpts, 3, msg_7bit,
                                  strlen(msg_7bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_PROTO);
    assert_int_equal(c.e.scope, ERR_SCOPE_MSG);
    assert_false(c.e.temporary);
    assert_contains(c.e.text, "recipient <nobody@example.net>");
    /* The whole two-line reply. */
    assert_contains(c.e.text, "550 5.1.1 <nobody@example.net>: Recipient address rejected | "
                              "5.1.1 User unknown in virtual mailbox table");
    ev = events_wait(&fx.starttls, mark, "QUIT");
    assert_contains(ev, "RCPT tls=1\nRCPT tls=1\nRSET tls=1\n");
    assert_not_contains(ev, "DATA");
    assert_int_equal(count_msgs(&fx.starttls), before);
    free(ev);
}

/* Certificates: refused unless pinned or trusted, before any AUTH. */
static void test_tls_trust(void **state)
{
    static const struct {
        const char *name;
        int server;            /* 0 starttls, 1 implicit */
        int trust;             /* 0 nothing, 1 pin, 2 wrong pin, 3 CA file */
        int rc;
    } cases[] = {
        {"STARTTLS, untrusted", 0, 0, -1},
        {"STARTTLS, wrong pin", 0, 2, -1},
        {"STARTTLS, CA file", 0, 3, 0},
        {"implicit, untrusted", 1, 0, -1},
        {"implicit, pinned", 1, 1, 0},
    };
    static const char wrong_pin[] =
        "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
        "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct server *sv = cases[i].server == 0 ? &fx.starttls : &fx.implicit;
        int before = count_msgs(sv);
        size_t mark = events_mark(sv);
        struct call c;
        char *ev;
        int rc;

        call_init(&c, cases[i].server == 0 ? "smtp" : "smtps", sv, "alice");
        c.o.pass = "secret";
        if (cases[i].trust == 1)
            c.o.tls_fingerprint = fx.fp;
        else if (cases[i].trust == 2)
            c.o.tls_fingerprint = wrong_pin;
        else if (cases[i].trust == 3)
            c.o.tls_ca_file = fx.cert;
        rc = send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                          strlen(msg_7bit), &c.e);
        if (rc != cases[i].rc)
            print_error("%s: %s\n", cases[i].name, c.e.text);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(count_msgs(sv), before + 1);
            continue;
        }
        assert_int_equal(c.e.code, ERR_TLS);
        assert_int_equal(c.e.scope, ERR_SCOPE_ACCOUNT);
        /* The fingerprint, so that the user can pin the server. */
        assert_contains(c.e.text, fx.fp);
        ev = events_since(sv, mark);
        if (cases[i].server == 0)
            assert_contains(ev, "STARTTLS tls=0");
        assert_not_contains(ev, "AUTH");
        assert_not_contains(ev, "MAIL");
        assert_int_equal(count_msgs(sv), before);
        free(ev);
    }
}

static void test_no_starttls(void **state)
{
    struct call c;
    int before = count_msgs(&fx.plain);
    size_t mark = events_mark(&fx.plain);
    char *ev;

    (void)state;
    /* smtp:// requires STARTTLS: refused, no password, no message. */
    call_init(&c, "smtp", &fx.plain, "alice");
    c.o.pass = "secret";
    assert_int_equal(send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                                  strlen(msg_7bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_TLS);
    assert_contains(c.e.text, "does not offer STARTTLS");
    ev = events_wait(&fx.plain, mark, "QUIT");
    assert_contains(ev, "EHLO tls=0\n");
    assert_contains(ev, "QUIT tls=0\n");
    assert_not_contains(ev, "AUTH");
    assert_not_contains(ev, "MAIL");
    assert_int_equal(count_msgs(&fx.plain), before);
    free(ev);

    /* Explicitly allowed cleartext (no credentials) goes through. */
    call_init(&c, "smtp", &fx.plain, NULL);
    c.o.allow_plaintext = true;
    assert_int_equal(send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                                  strlen(msg_7bit), &c.e), 0);
    assert_int_equal(count_msgs(&fx.plain), before + 1);
}

static void test_pass_cmd(void **state)
{
    static const struct {
        const char *cmd;
        unsigned timeout_ms;
        int rc;
        enum err_code code;
        const char *text[2];
    } cases[] = {
        {"printf 'secret\\n'", IO_MS, 0, ERR_OK, {NULL}},
        {"printf secret", IO_MS, 0, ERR_OK, {NULL}},
        {"printf 'secret\\r\\nsecond line\\n'", IO_MS, 0, ERR_OK, {NULL}},
        {"echo 'vault is locked' >&2; exit 3", IO_MS, -1, ERR_IO,
         {"smtp_pass_cmd failed (exit status 3)", "vault is locked"}},
        {"true", IO_MS, -1, ERR_INVAL, {"smtp_pass_cmd printed nothing", NULL}},
        {"exec sleep 30", 300, -1, ERR_IO, {"smtp_pass_cmd did not finish within 300 ms", NULL}},
        {"kill -9 $$", IO_MS, -1, ERR_IO, {"smtp_pass_cmd was killed by signal 9", NULL}},
        {"echo wrong", IO_MS, -1, ERR_PROTO, {"AUTH PLAIN refused", "535"}},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int before = count_msgs(&fx.starttls);
        size_t mark = events_mark(&fx.starttls);
        long long t0 = now_ms();
        struct call c;
        int rc;

        call_init(&c, "smtp", &fx.starttls, "alice");
        c.o.pass_cmd = cases[i].cmd;
        c.o.tls_fingerprint = fx.fp;
        c.o.timeout_ms = cases[i].timeout_ms;
        rc = send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                          strlen(msg_7bit), &c.e);
        if (rc != cases[i].rc)
            print_error("%s: %s\n", cases[i].cmd, c.e.text);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(count_msgs(&fx.starttls), before + (rc == 0));
        if (rc == 0)
            continue;
        assert_int_equal(c.e.code, cases[i].code);
        for (size_t k = 0; k < 2 && cases[i].text[k]; k++)
            assert_contains(c.e.text, cases[i].text[k]);
        if (cases[i].code != ERR_PROTO) {
            /* A failing command costs no connection. */
            char *ev = events_since(&fx.starttls, mark);

            assert_string_equal(ev, "");
            free(ev);
        }
        if (cases[i].timeout_ms < IO_MS)
            assert_true(now_ms() - t0 < 10000);
    }
}

static void test_8bit_and_utf8(void **state)
{
    static const char msg_8bit[] = "Subject: x\r\n\r\ncaf\xc3\xa9\r\n";
    static const char *const utf8_rcpt[] = {"jos\xc3\xa9@example.com"};
    struct call c;
    int before = count_msgs(&fx.plain);
    size_t mark = events_mark(&fx.plain);
    char *ev, *json, *rcpts;

    (void)state;
    /* No 8BITMIME: 8-bit data is refused before MAIL, 7-bit goes as is. */
    call_init(&c, "smtp+plain", &fx.plain, NULL);
    assert_int_equal(send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_8bit,
                                  strlen(msg_8bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_UNSUPPORTED);
    assert_contains(c.e.text, "8BITMIME");
    ev = events_wait(&fx.plain, mark, "QUIT");
    assert_not_contains(ev, "MAIL");
    free(ev);
    assert_int_equal(send_message(&c.o, "sender@example.org", three_rcpts, 1, msg_7bit,
                                  strlen(msg_7bit), &c.e), 0);
    assert_int_equal(count_msgs(&fx.plain), before + 1);
    json = read_msg(&fx.plain, before + 1);
    assert_not_contains(json, "BODY=8BITMIME");
    assert_contains(json, "\"tls\": false");
    free(json);

    /* A UTF-8 address needs SMTPUTF8. */
    assert_int_equal(send_message(&c.o, "sender@example.org", utf8_rcpt, 1, msg_7bit,
                                  strlen(msg_7bit), &c.e), -1);
    assert_int_equal(c.e.code, ERR_UNSUPPORTED);
    assert_contains(c.e.text, "SMTPUTF8");

    before = count_msgs(&fx.starttls);
    call_init(&c, "smtp", &fx.starttls, "alice");
    c.o.pass = "secret";
    c.o.tls_fingerprint = fx.fp;
    if (send_message(&c.o, "sender@example.org", utf8_rcpt, 1, msg_8bit, strlen(msg_8bit),
                     &c.e) != 0)
        print_error("%s\n", c.e.text);
    assert_int_equal(count_msgs(&fx.starttls), before + 1);
    json = read_msg(&fx.starttls, before + 1);
    assert_contains(json, "\"SMTPUTF8\"");
    assert_contains(json, "\"BODY=8BITMIME\"");
    rcpts = json_b64_list(json, "rcpt_tos_b64");
    assert_string_equal(rcpts, utf8_rcpt[0]);
    free(rcpts);
    free(json);
}

static void test_probe(void **state)
{
    struct send_caps caps;
    struct call c;

    (void)state;
    call_init(&c, "smtp", &fx.starttls, NULL);
    c.o.tls_fingerprint = fx.fp;
    assert_int_equal(send_probe(&c.o, &caps, &c.e), 0);
    assert_false(caps.sendmail);
    assert_true(caps.tls);
    assert_true(caps.eightbitmime);
    assert_true(caps.smtputf8);
    assert_true(caps.size_known);
    assert_int_equal(caps.size_max, 33554432);
    assert_int_equal(caps.auth, SEND_AUTH_PLAIN | SEND_AUTH_LOGIN);

    call_init(&c, "smtp+plain", &fx.plain, NULL);
    assert_int_equal(send_probe(&c.o, &caps, &c.e), 0);
    assert_false(caps.tls);
    assert_false(caps.eightbitmime);
    assert_false(caps.smtputf8);
    assert_int_equal(caps.auth, SEND_AUTH_LOGIN | SEND_AUTH_XOAUTH2);

    /* Probing never sends credentials or mail, and keeps the TLS rules. */
    call_init(&c, "smtp", &fx.plain, NULL);
    assert_int_equal(send_probe(&c.o, &caps, &c.e), -1);
    assert_int_equal(c.e.code, ERR_TLS);

    call_init(&c, "smtp", &fx.starttls, NULL);
    c.o.sendmail = "/usr/sbin/sendmail -oi";
    assert_int_equal(send_probe(&c.o, &caps, &c.e), 0);
    assert_true(caps.sendmail);
    assert_true(caps.eightbitmime);
}

static void test_invalid_args(void **state)
{
    char long_line[1200], long_addr[300];
    static const char *const ok_rcpt[] = {"ok@example.com"};
    static const char *const crlf_rcpt[] = {"a@example.com>\r\nRCPT TO:<evil@example.com"};
    static const char *const angle_rcpt[] = {"<a@example.com>"};
    static const char *const bad_utf8[] = {"\xff@example.com"};
    static const char *const empty_rcpt[] = {""};
    const char *long_rcpt[1];
    static const char nul_data[] = "Subject: x\r\n\r\na\0b\r\n";
    static const char bcc_data[] = "Subject: x\r\nTo: a@example.com\r\n"
                                   "bcc : hidden@example.com\r\n\r\nbody\r\n";
    static const char resent_bcc[] = "Resent-BCC:hidden@example.com\r\n\r\nbody\r\n";
    size_t mark = events_mark(&fx.starttls);
    char *ev;
    struct {
        const char *from;
        const char *const *rcpts;
        size_t n;
        const char *data;
        size_t len;
        const char *text;
    } cases[] = {
        {"s@example.org", ok_rcpt, 0, msg_7bit, strlen(msg_7bit), "no recipients"},
        {"s@example.org", crlf_rcpt, 1, msg_7bit, strlen(msg_7bit), "control character"},
        {"s@example.org", angle_rcpt, 1, msg_7bit, strlen(msg_7bit), "angle bracket"},
        {"s@example.org", bad_utf8, 1, msg_7bit, strlen(msg_7bit), "not valid UTF-8"},
        {"s@example.org", empty_rcpt, 1, msg_7bit, strlen(msg_7bit), "empty address"},
        {"s@example.org\n", ok_rcpt, 1, msg_7bit, strlen(msg_7bit), "sender"},
        {"s@example.org", long_rcpt, 1, msg_7bit, strlen(msg_7bit), "longer than 254"},
        {"s@example.org", ok_rcpt, 1, "", 0, "empty"},
        {"s@example.org", ok_rcpt, 1, nul_data, sizeof(nul_data) - 1,
         "line 3 of the message contains a NUL"},
        {"s@example.org", ok_rcpt, 1, bcc_data, sizeof(bcc_data) - 1,
         "line 3 of the message is a Bcc header field"},
        {"s@example.org", ok_rcpt, 1, resent_bcc, sizeof(resent_bcc) - 1,
         "line 1 of the message is a Bcc header field"},
        {"s@example.org", ok_rcpt, 1, long_line, 0, "line 3 of the message is longer than 998"},
    };

    (void)state;
    memset(long_addr, 'a', sizeof(long_addr));
    memcpy(long_addr + sizeof(long_addr) - 13, "@example.com", 13);
    long_rcpt[0] = long_addr;
    snprintf(long_line, sizeof(long_line), "Subject: x\r\n\r\n%0999d\r\n", 7);
    cases[ARRAY_LEN(cases) - 1].len = strlen(long_line);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct call c;

        call_init(&c, "smtp", &fx.starttls, "alice");
        c.o.pass = "secret";
        c.o.tls_fingerprint = fx.fp;
        assert_int_equal(send_message(&c.o, cases[i].from, cases[i].rcpts, cases[i].n,
                                      cases[i].data, cases[i].len, &c.e), -1);
        assert_int_equal(c.e.code, ERR_INVAL);
        assert_contains(c.e.text, cases[i].text);
        /* The same through sendmail: nothing runs. */
        c.o.sendmail = fx.fake_sendmail;
        assert_int_equal(send_message(&c.o, cases[i].from, cases[i].rcpts, cases[i].n,
                                      cases[i].data, cases[i].len, &c.e), -1);
        assert_int_equal(c.e.code, ERR_INVAL);
    }
    ev = events_since(&fx.starttls, mark);
    assert_string_equal(ev, "");
    free(ev);

    /* A line of exactly 998 bytes is fine. */
    {
        int before = count_msgs(&fx.starttls);
        struct call c;
        char *json, *data;

        snprintf(long_line, sizeof(long_line), "Subject: x\r\n\r\n%0998d\r\n", 7);
        call_init(&c, "smtp", &fx.starttls, "alice");
        c.o.pass = "secret";
        c.o.tls_fingerprint = fx.fp;
        if (send_message(&c.o, "s@example.org", ok_rcpt, 1, long_line, strlen(long_line),
                         &c.e) != 0)
            print_error("%s\n", c.e.text);
        assert_int_equal(count_msgs(&fx.starttls), before + 1);
        json = read_msg(&fx.starttls, before + 1);
        data = json_b64(json, "data", NULL);
        assert_string_equal(data, long_line);
        free(data);
        free(json);
    }
}

/* ---- sendmail --------------------------------------------------------------------- */

static char *quoted_fake(void)
{
    /* The fake's path has a space: single quotes for the tokenizer. */
    return xasprintf("'%s'", fx.fake_sendmail);
}

static void test_sendmail(void **state)
{
    static const char data[] = "From: s@example.org\r\n"
                               "Subject: via sendmail\r\n"
                               "\r\n"
                               ".\r\n"
                               ".leading\r\n"
                               "caf\xc3\xa9\r\n";
    static const char data_lf[] = "From: s@example.org\n"
                                  "Subject: via sendmail\n"
                                  "\n"
                                  ".\n"
                                  ".leading\n"
                                  "caf\xc3\xa9\n";
    static const char *const rcpts[] = {"a@example.com", "-oQ/tmp/evil@example.com"};
    char *fake = quoted_fake();
    struct {
        const char *args;      /* after the fake's path */
        const char *from;
        int rc;
        enum err_code code;
        bool temporary;
        const char *expect;    /* argv after argv[0], or text in the error */
    } cases[] = {
        {" --mode=ok -oem -oi", "s@example.org", 0, ERR_OK, false,
         "--mode=ok\n-oem\n-oi\n-f\ns@example.org\n--\na@example.com\n"
         "-oQ/tmp/evil@example.com\n"},
        {" --mode=ok 'two words' \"x\\\"y\"", NULL, 0, ERR_OK, false,
         "--mode=ok\ntwo words\nx\"y\n-oi\n--\na@example.com\n-oQ/tmp/evil@example.com\n"},
        {" --mode=ok -i", "", 0, ERR_OK, false,
         "--mode=ok\n-i\n--\na@example.com\n-oQ/tmp/evil@example.com\n"},
        {" --mode=tempfail", "s@example.org", -1, ERR_IO, true,
         "the sendmail command failed (exit status 75): queue is full | try later"},
        {" --mode=stdout", "s@example.org", -1, ERR_IO, false,
         "failed (exit status 1): complaint on stdout"},
        {" --mode=crash", "s@example.org", -1, ERR_IO, false, "killed by signal 9"},
        {" --mode=ok; rm -rf /", "s@example.org", -1, ERR_INVAL, false, "one command"},
        {" `id`", "s@example.org", -1, ERR_INVAL, false, "sendmail:1:"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *cmd = xasprintf("%s%s", fake, cases[i].args);
        char *argv_path = xasprintf("%s/argv", fx.record);
        char *stdin_path = xasprintf("%s/stdin", fx.record);
        struct call c;
        int rc;

        unlink(argv_path);
        unlink(stdin_path);
        memset(&c, 0, sizeof(c));
        c.o.sendmail = cmd;
        c.o.timeout_ms = IO_MS;
        rc = send_message(&c.o, cases[i].from, rcpts, 2, data, strlen(data), &c.e);
        if (rc != cases[i].rc)
            print_error("%s: %s\n", cmd, c.e.text);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            size_t len;
            char *argv = slurp(argv_path, NULL);
            char *in = slurp(stdin_path, &len);

            assert_string_equal(argv, cases[i].expect);
            assert_int_equal(len, strlen(data_lf));
            assert_memory_equal(in, data_lf, len);
            free(argv);
            free(in);
        } else {
            assert_int_equal(c.e.code, cases[i].code);
            assert_int_equal(c.e.temporary, cases[i].temporary);
            assert_contains(c.e.text, cases[i].expect);
            if (cases[i].code == ERR_INVAL)
                assert_int_equal(access(argv_path, F_OK), -1);
        }
        free(cmd);
        free(argv_path);
        free(stdin_path);
    }

    {
        struct call c;

        memset(&c, 0, sizeof(c));
        c.o.sendmail = "/nonexistent/sendmail -oi";
        c.o.timeout_ms = IO_MS;
        assert_int_equal(send_message(&c.o, "s@example.org", rcpts, 1, data, strlen(data),
                                      &c.e), -1);
        assert_int_equal(c.e.code, ERR_NOTFOUND);
        assert_contains(c.e.text, "/nonexistent/sendmail");
    }
    free(fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_starttls_delivery),
        cmocka_unit_test(test_implicit_tls),
        cmocka_unit_test(test_auth_mechanisms),
        cmocka_unit_test(test_auth_refused),
        cmocka_unit_test(test_dropped_in_data),
        cmocka_unit_test(test_rcpt_refused),
        cmocka_unit_test(test_tls_trust),
        cmocka_unit_test(test_no_starttls),
        cmocka_unit_test(test_pass_cmd),
        cmocka_unit_test(test_8bit_and_utf8),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_sendmail),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
