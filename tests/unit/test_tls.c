/*
 * Tests for lib/tls and lib/tls_stream against real peers on 127.0.0.1:
 * `openssl s_server` (certificates made by tls_gencert), in-process servers
 * on threads for STARTTLS and server-context reloads, and socketpairs for
 * timeouts and cancellation.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "err.h"
#include "tls.h"
#include "tls_stream.h"
#include "xalloc.h"

#define IO_MS 10000
#define PEER_START_MS 15000

#define assert_contains(hay, needle)                                              \
    do {                                                                          \
        if (strstr((hay), (needle)) == NULL) {                                    \
            print_error("expected \"%s\" in \"%s\"\n", (needle), (hay));          \
            fail();                                                               \
        }                                                                         \
    } while (0)

#define assert_ok(call, e)                                                        \
    do {                                                                          \
        if ((call) != 0) {                                                        \
            print_error("%s failed: %s\n", #call, (e)->text);                     \
            fail();                                                               \
        }                                                                         \
    } while (0)

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- openssl s_server peers --------------------------------------------- */

struct peer {
    pid_t pid;      /* 0: not running */
    int out_fd;     /* its stdout */
    unsigned port;
};

/* Start `openssl s_server -rev` on 127.0.0.1 with a kernel-chosen port and
 * wait (with a deadline) for its "ACCEPT 127.0.0.1:PORT" line. */
static int peer_start(struct peer *p, const char *cert, const char *key,
                      const char *const *extra)
{
    const char *argv[24];
    size_t n = 0, i;
    char out[4096];
    size_t len = 0;
    long long deadline;
    int fds[2];

    memset(p, 0, sizeof(*p));
    p->out_fd = -1;
    argv[n++] = "openssl";
    argv[n++] = "s_server";
    argv[n++] = "-accept";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "-cert";
    argv[n++] = cert;
    argv[n++] = "-key";
    argv[n++] = key;
    argv[n++] = "-rev";
    for (i = 0; extra != NULL && extra[i] != NULL && n < ARRAY_LEN(argv) - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    p->pid = fork();
    if (p->pid < 0) {
        close(fds[0]);
        close(fds[1]);
        p->pid = 0;
        return -1;
    }
    if (p->pid == 0) {
        int null = open("/dev/null", O_RDWR);

        dup2(fds[1], 1);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 2);
        }
        execvp("openssl", (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    close(fds[1]);
    p->out_fd = fds[0];

    deadline = now_ms() + PEER_START_MS;
    for (;;) {
        struct pollfd pf = {p->out_fd, POLLIN, 0};
        long long left = deadline - now_ms();
        const char *acc;
        ssize_t r;

        out[len] = '\0';
        acc = strstr(out, "ACCEPT ");
        if (acc != NULL && strchr(acc, '\n') != NULL) {
            const char *colon = strrchr(acc, ':');

            p->port = colon != NULL ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
            break;
        }
        if (left <= 0 || len + 1 >= sizeof(out))
            goto fail;
        if (poll(&pf, 1, (int)left) <= 0)
            continue;
        r = read(p->out_fd, out + len, sizeof(out) - 1 - len);
        if (r <= 0)
            goto fail;   /* exited: e.g. an option this build lacks */
        len += (size_t)r;
    }
    if (p->port == 0)
        goto fail;
    /* From now on only drained, never waited on. */
    fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
    return 0;

fail:
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    close(p->out_fd);
    memset(p, 0, sizeof(*p));
    p->out_fd = -1;
    return -1;
}

/* Keep s_server's stdout pipe from filling up. */
static void peer_drain(const struct peer *p)
{
    char junk[4096];

    if (p->pid == 0)
        return;
    while (read(p->out_fd, junk, sizeof(junk)) > 0)
        ;
}

static void peer_stop(struct peer *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    memset(p, 0, sizeof(*p));
    p->out_fd = -1;
}

/* ---- fixture ------------------------------------------------------------ */

struct certfiles {
    char *cert;
    char *key;
    char fp[TLS_FINGERPRINT_SIZE];
};

static struct {
    char *dir;
    struct certfiles local;    /* localhost + 127.0.0.1 */
    struct certfiles other;    /* other.example */
    struct certfiles second;   /* localhost, a different key */
    char *garbage_key;
    struct peer local_peer;
    struct peer other_peer;
    struct peer old_peer;      /* TLS 1.1 only, while its test runs */
} fx;

static int make_certfiles(struct certfiles *cf, const char *stem, const char *const *names)
{
    struct err e;

    cf->cert = xasprintf("%s/%s.crt", fx.dir, stem);
    cf->key = xasprintf("%s/%s.key", fx.dir, stem);
    if (tls_gencert(cf->cert, cf->key, names, 2, &e) < 0 ||
        tls_cert_file_fingerprint(cf->cert, cf->fp, &e) < 0) {
        fprintf(stderr, "gencert %s: %s\n", stem, e.text);
        return -1;
    }
    return 0;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int group_teardown(void **state);

static int group_setup(void **state)
{
    static const char *const local_names[] = {"localhost", "127.0.0.1", NULL};
    static const char *const other_names[] = {"other.example", NULL};
    static const char *const second_names[] = {"localhost", NULL};
    const char *tmp = getenv("TMPDIR");
    char *templ;

    (void)state;
    fx.local_peer.out_fd = -1;
    fx.other_peer.out_fd = -1;
    fx.old_peer.out_fd = -1;
    signal(SIGPIPE, SIG_DFL);   /* the library must never raise it */
    templ = xasprintf("%s/correo-tls-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    fx.dir = mkdtemp(templ);
    if (fx.dir == NULL) {
        free(templ);
        return -1;
    }
    fx.garbage_key = xasprintf("%s/garbage.key", fx.dir);
    if (make_certfiles(&fx.local, "local", local_names) < 0 ||
        make_certfiles(&fx.other, "other", other_names) < 0 ||
        make_certfiles(&fx.second, "second", second_names) < 0 ||
        write_text(fx.garbage_key,
                   "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n") < 0) {
        group_teardown(state);
        return -1;
    }
    /* Without an openssl binary the s_server tests skip. */
    if (peer_start(&fx.local_peer, fx.local.cert, fx.local.key, NULL) == 0)
        peer_start(&fx.other_peer, fx.other.cert, fx.other.key, NULL);
    return 0;
}

static void free_certfiles(struct certfiles *cf)
{
    free(cf->cert);
    free(cf->key);
}

static int group_teardown(void **state)
{
    (void)state;
    peer_stop(&fx.local_peer);
    peer_stop(&fx.other_peer);
    peer_stop(&fx.old_peer);
    free_certfiles(&fx.local);
    free_certfiles(&fx.other);
    free_certfiles(&fx.second);
    free(fx.garbage_key);
    if (fx.dir != NULL) {
        /* Also whatever a failed test left behind. */
        DIR *d = opendir(fx.dir);
        struct dirent *de;

        while (d != NULL && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                unlinkat(dirfd(d), de->d_name, 0);
        }
        if (d != NULL)
            closedir(d);
        rmdir(fx.dir);
    }
    free(fx.dir);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* Connect to peer p and run the client handshake for host with opts.
 * Returns the handshake result; *out gets the connection on success. */
static int tls_to_peer(const struct peer *p, const struct tls_client_opts *opts,
                       const char *host, struct tls_conn **out, struct err *e)
{
    struct tls_client *client = NULL;
    struct tls_conn *c = NULL;
    int r;

    if (out != NULL)
        *out = NULL;
    peer_drain(p);
    assert_ok(tls_client_new(&client, opts, e), e);
    assert_ok(tls_conn_connect(&c, "127.0.0.1", p->port, IO_MS, e), e);
    assert_false(tls_conn_is_tls(c));
    r = tls_conn_start_tls(c, client, host, e);
    tls_client_free(client);
    if (r == 0)
        assert_true(tls_conn_is_tls(c));
    if (r == 0 && out != NULL)
        *out = c;
    else
        tls_conn_close(c);
    return r;
}

static void need_peers(void)
{
    if (fx.local_peer.pid == 0 || fx.other_peer.pid == 0)
        skip();
}

static int listen_loopback(unsigned *port, int backlog)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* ---- fingerprints and certificates -------------------------------------- */

static void test_parse_fingerprint(void **state)
{
    static const char hex[] =
        "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    static const char colons[] =
        "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
        "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
    static const struct {
        const char *text;
        bool ok;
    } cases[] = {
        {hex, true},
        {colons, true},
        {"SHA256:" "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", true},
        {"sha256:" "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
                   "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", true},
        {"", false},
        {"00112233", false},
        {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeef", false},
        {"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0", false},
        {"0g112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
        {"00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
         "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee-ff", false},
        {"0:011:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
         "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", false},
        {"MD5:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", false},
    };
    static const unsigned char want[TLS_SHA256_LEN] = {
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
        0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        unsigned char md[TLS_SHA256_LEN];
        struct err e;
        int r;

        memset(md, 0x5a, sizeof(md));
        r = tls_parse_fingerprint(cases[i].text, md, &e);
        if (cases[i].ok) {
            if (r != 0)
                print_error("case %zu: %s\n", i, e.text);
            assert_int_equal(r, 0);
            assert_memory_equal(md, want, sizeof(want));
        } else {
            if (r != -1)
                print_error("case %zu accepted\n", i);
            assert_int_equal(r, -1);
            assert_int_equal(e.code, ERR_INVAL);
        }
    }
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x;

    assert_non_null(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static void test_gencert(void **state)
{
    static const struct {
        const char *host;
        bool ip;
        int match;
    } checks[] = {
        {"localhost", false, 1},
        {"LOCALHOST", false, 1},
        {"127.0.0.1", true, 1},
        {"127.0.0.2", true, 0},
        {"other.example", false, 0},
    };
    struct stat st;
    X509 *x;
    size_t i;

    (void)state;
    assert_int_equal(stat(fx.local.key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(fx.local.cert, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);

    /* "AB:CD:..." with 32 upper-case pairs. */
    assert_int_equal(strlen(fx.local.fp), TLS_FINGERPRINT_SIZE - 1);
    for (i = 0; i < TLS_FINGERPRINT_SIZE - 1; i++) {
        char ch = fx.local.fp[i];

        if (i % 3 == 2)
            assert_int_equal(ch, ':');
        else
            assert_true((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F'));
    }
    assert_string_not_equal(fx.local.fp, fx.second.fp);

    x = read_cert(fx.local.cert);
    for (i = 0; i < ARRAY_LEN(checks); i++) {
        int r = checks[i].ip ? X509_check_ip_asc(x, checks[i].host, 0)
                             : X509_check_host(x, checks[i].host, 0, 0, NULL);

        assert_int_equal(r, checks[i].match);
    }
    assert_int_equal(X509_check_ca(x), 0);
    X509_free(x);
}

static void test_gencert_invalid(void **state)
{
    static const char *const none[] = {NULL};
    static const char *const spaced[] = {"bad name", NULL};
    static const char *const empty_label[] = {"a..b", NULL};
    static const char *const good[] = {"localhost", NULL};
    static const struct {
        const char *const *names;
        int days;
    } cases[] = {
        {none, 1}, {spaced, 1}, {empty_label, 1}, {good, 0}, {good, 36501}, {NULL, 1},
    };
    char *cert = xasprintf("%s/bad.crt", fx.dir);
    char *key = xasprintf("%s/bad.key", fx.dir);
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e;

        assert_int_equal(tls_gencert(cert, key, cases[i].names, cases[i].days, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(access(cert, F_OK), -1);
        assert_int_equal(access(key, F_OK), -1);
    }
    free(cert);
    free(key);
}

static void test_client_options(void **state)
{
    char *missing = xasprintf("%s/missing-ca.pem", fx.dir);
    struct tls_client_opts bad_pin = {NULL, false, "AB:CD", false};
    struct tls_client_opts no_file = {missing, false, NULL, false};
    struct tls_client_opts garbage = {fx.garbage_key, false, NULL, false};
    struct tls_client_opts only_without = {NULL, true, NULL, false};
    struct tls_client *c = NULL;
    struct err e;

    (void)state;
    assert_int_equal(tls_client_new(&c, &bad_pin, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_null(c);
    assert_int_equal(tls_client_new(&c, &no_file, &e), -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_contains(e.text, missing);
    assert_int_equal(tls_client_new(&c, &garbage, &e), -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_int_equal(tls_client_new(&c, &only_without, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_ok(tls_client_new(&c, NULL, &e), &e);
    tls_client_free(c);
    free(missing);
}

/* ---- verification against s_server -------------------------------------- */

static void test_default_context_refuses_self_signed(void **state)
{
    char want[TLS_FINGERPRINT_SIZE + 8];
    struct err e;

    (void)state;
    need_peers();
    assert_int_equal(tls_to_peer(&fx.local_peer, NULL, "localhost", NULL, &e), -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_contains(e.text, "certificate verify failed: self-signed certificate");
    snprintf(want, sizeof(want), "SHA256:%s", fx.local.fp);
    assert_contains(e.text, want);
}

static void test_pinning(void **state)
{
    char lower_plain[TLS_FINGERPRINT_SIZE];
    char want[TLS_FINGERPRINT_SIZE + 40];
    size_t i, n = 0;
    struct {
        const char *pin;
        const char *host;
        bool ok;
    } cases[] = {
        {fx.local.fp, "localhost", true},
        {lower_plain, "localhost", true},
        {fx.local.fp, "wronghost", true},   /* a pin overrides name checks */
        {fx.other.fp, "localhost", false},
        {fx.second.fp, "localhost", false},
    };

    (void)state;
    need_peers();
    for (i = 0; fx.local.fp[i] != '\0'; i++)
        if (fx.local.fp[i] != ':')
            lower_plain[n++] = (char)(fx.local.fp[i] | 0x20);
    lower_plain[n] = '\0';

    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct tls_client_opts opts = {NULL, false, cases[i].pin, false};
        struct tls_conn *c = NULL;
        struct err e;
        int r = tls_to_peer(&fx.local_peer, &opts, cases[i].host, &c, &e);

        if (cases[i].ok) {
            if (r != 0)
                print_error("case %zu: %s\n", i, e.text);
            assert_int_equal(r, 0);
            tls_conn_close(c);
        } else {
            assert_int_equal(r, -1);
            assert_int_equal(e.code, ERR_TLS);
            snprintf(want, sizeof(want), "fingerprint mismatch: got SHA256:%s", fx.local.fp);
            assert_contains(e.text, want);
        }
    }
}

static void test_ca_file(void **state)
{
    struct {
        const struct peer *peer;
        const char *ca;
        bool ca_only;
        const char *host;
        const char *expect;   /* NULL: accepted */
        const char *fp;       /* fingerprint the refusal names */
    } cases[] = {
        {&fx.local_peer, fx.local.cert, false, "localhost", NULL, NULL},
        {&fx.local_peer, fx.local.cert, true, "localhost", NULL, NULL},
        {&fx.local_peer, fx.local.cert, false, "localhost.", NULL, NULL},
        {&fx.local_peer, fx.local.cert, false, "127.0.0.1", NULL, NULL},
        {&fx.other_peer, fx.other.cert, false, "other.example", NULL, NULL},
        {&fx.local_peer, fx.local.cert, false, "wronghost",
         "host name mismatch: certificate is for localhost, 127.0.0.1, not wronghost",
         fx.local.fp},
        {&fx.other_peer, fx.other.cert, false, "localhost",
         "host name mismatch: certificate is for other.example, not localhost", fx.other.fp},
        {&fx.other_peer, fx.other.cert, false, "127.0.0.1",
         "host name mismatch: certificate is for other.example, not 127.0.0.1", fx.other.fp},
        {&fx.local_peer, fx.other.cert, true, "localhost",
         "certificate verify failed: self-signed certificate", fx.local.fp},
        {&fx.local_peer, fx.second.cert, true, "localhost",
         "certificate verify failed", fx.local.fp},
    };
    size_t i;

    (void)state;
    need_peers();
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct tls_client_opts opts = {cases[i].ca, cases[i].ca_only, NULL, false};
        struct err e;
        int r = tls_to_peer(cases[i].peer, &opts, cases[i].host, NULL, &e);

        if (cases[i].expect == NULL) {
            if (r != 0)
                print_error("case %zu: %s\n", i, e.text);
            assert_int_equal(r, 0);
        } else {
            char want[TLS_FINGERPRINT_SIZE + 8];

            if (r != -1)
                print_error("case %zu accepted\n", i);
            assert_int_equal(r, -1);
            assert_int_equal(e.code, ERR_TLS);
            assert_contains(e.text, cases[i].expect);
            snprintf(want, sizeof(want), "SHA256:%s", cases[i].fp);
            assert_contains(e.text, want);
        }
    }
}

static void test_mailstream_roundtrip(void **state)
{
    static const struct {
        const char *send;
        const char *const expect[3];
    } cases[] = {
        {"hello world\r\n", {"dlrow olleh", NULL}},
        {"one\r\ntwo\r\n", {"eno", "owt", NULL}},
        {"abc\r\n", {"cba", NULL}},
    };
    struct tls_client_opts opts = {fx.local.cert, true, NULL, false};
    unsigned char md[TLS_SHA256_LEN], want_md[TLS_SHA256_LEN];
    unsigned int mdlen = 0;
    struct tls_conn *c = NULL;
    MMAPString *line;
    carray *chain;
    mailstream *s;
    MMAPString *der;
    struct err e;
    size_t i, j;

    (void)state;
    need_peers();
    assert_ok(tls_to_peer(&fx.local_peer, &opts, "localhost", &c, &e), &e);
    s = tls_stream_mailstream(c, &e);
    assert_non_null(s);
    assert_ptr_equal(tls_stream_conn(s), c);
    assert_int_equal(mailstream_low_get_fd(mailstream_get_low(s)), tls_conn_fd(c));
    assert_true(tls_conn_fd(c) >= 0);

    /* The driver hands libetpan the peer's chain, leaf first. */
    chain = mailstream_get_certificate_chain(s);
    assert_non_null(chain);
    assert_true(carray_count(chain) >= 1);
    der = carray_get(chain, 0);
    assert_int_equal(EVP_Digest(der->str, der->len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(tls_parse_fingerprint(fx.local.fp, want_md, &e), 0);
    assert_memory_equal(md, want_md, TLS_SHA256_LEN);
    mailstream_certificate_chain_free(chain);

    line = mmap_string_new("");
    assert_non_null(line);
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        size_t len = strlen(cases[i].send);

        assert_int_equal(mailstream_write(s, cases[i].send, len), (ssize_t)len);
        assert_int_equal(mailstream_flush(s), 0);
        for (j = 0; cases[i].expect[j] != NULL; j++) {
            char *got = mailstream_read_line_remove_eol(s, line);

            assert_non_null(got);
            assert_string_equal(got, cases[i].expect[j]);
        }
    }
    mmap_string_free(line);
    mailstream_close(s);
}

static void test_tls11_refused(void **state)
{
    static const char *const extra[] = {"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", NULL};
    struct tls_client_opts opts = {fx.local.cert, true, NULL, false};
    struct peer *old = &fx.old_peer;
    struct timeval tv = {10, 0};
    struct sockaddr_in sa;
    SSL_CTX *ctx;
    SSL *ssl;
    struct err e;
    bool speaks_11;
    int fd;

    (void)state;
    need_peers();
    if (peer_start(old, fx.local.cert, fx.local.key, extra) < 0)
        skip();

    /* Make sure the peer really speaks TLS 1.1, with a client that allows it. */
    ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT@SECLEVEL=0");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)old->port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ssl = SSL_new(ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, fd);
    speaks_11 = SSL_connect(ssl) == 1 && SSL_version(ssl) == TLS1_1_VERSION;
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    ERR_clear_error();
    if (!speaks_11) {
        peer_stop(old);
        skip();
    }

    assert_int_equal(tls_to_peer(old, &opts, "localhost", NULL, &e), -1);
    peer_stop(old);
    assert_int_equal(e.code, ERR_TLS);
    assert_contains(e.text, "protocol");
    assert_contains(e.text, "TLS 1.2 or newer is required");
}

/* ---- no_verify: opportunistic encryption between MTAs ------------------- */

/* Handshake with a raw SSL from tls_client_ssl_new on a blocking socket to
 * 127.0.0.1:port, judged by tls_client_finish; then what tls_client_peer
 * reports. */
struct raw_result {
    int finish;
    struct err e;
    int peer_rc;
    char fp[TLS_FINGERPRINT_SIZE];
    bool verified;
    char problem[300];
};

static void raw_handshake(unsigned port, const struct tls_client_opts *opts, const char *host,
                          struct raw_result *res)
{
    struct timeval tv = {IO_MS / 1000, 0};
    struct tls_client *client = NULL;
    struct sockaddr_in sa;
    char detail[200];
    bool ok;
    SSL *ssl;
    int fd;

    memset(res, 0, sizeof(*res));
    assert_ok(tls_client_new(&client, opts, &res->e), &res->e);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ssl = tls_client_ssl_new(client, host, &res->e);
    assert_non_null(ssl);
    assert_int_equal(SSL_set_fd(ssl, fd), 1);
    ERR_clear_error();
    ok = SSL_connect(ssl) == 1;
    tls_error_reason(detail, sizeof(detail));
    res->finish = tls_client_finish(ssl, ok, ok ? NULL : detail, &res->e);
    res->peer_rc = tls_client_peer(ssl, res->fp, &res->verified, res->problem,
                                   sizeof(res->problem), NULL);
    SSL_free(ssl);
    close(fd);
    tls_client_free(client);
}

static void test_no_verify(void **state)
{
    struct {
        const struct peer *peer;
        const char *ca;       /* CA file (trusted besides the system store) */
        const char *host;
        bool verified;        /* what tls_client_peer says */
        const char *problem;  /* part of its reason, when not verified */
        const char *fp;
    } cases[] = {
        /* self-signed: refused when verifying, accepted without */
        {&fx.local_peer, NULL, "localhost", false, "self-signed certificate", fx.local.fp},
        /* a certificate for another name */
        {&fx.other_peer, fx.other.cert, "localhost", false,
         "host name mismatch: certificate is for other.example, not localhost", fx.other.fp},
        /* one that would have been verified says so */
        {&fx.local_peer, fx.local.cert, "localhost", true, NULL, fx.local.fp},
    };
    size_t i;

    (void)state;
    need_peers();
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct tls_client_opts verify = {cases[i].ca, false, NULL, false};
        struct tls_client_opts opp = {cases[i].ca, false, NULL, true};
        struct raw_result res;

        peer_drain(cases[i].peer);
        /* The same peer and name with verification: refused unless the
         * case says it verifies. */
        raw_handshake(cases[i].peer->port, &verify, cases[i].host, &res);
        assert_int_equal(res.finish, cases[i].verified ? 0 : -1);
        assert_int_equal(res.peer_rc, 0);
        assert_string_equal(res.fp, cases[i].fp);

        peer_drain(cases[i].peer);
        raw_handshake(cases[i].peer->port, &opp, cases[i].host, &res);
        if (res.finish != 0)
            print_error("case %zu: %s\n", i, res.e.text);
        assert_int_equal(res.finish, 0);
        assert_int_equal(res.peer_rc, 0);
        assert_string_equal(res.fp, cases[i].fp);
        assert_int_equal(res.verified, cases[i].verified);
        if (cases[i].problem != NULL)
            assert_contains(res.problem, cases[i].problem);
        else
            assert_string_equal(res.problem, "");
    }

    /* Through tls_stream: an encrypted connection to the self-signed peer,
     * which answers over it (s_server -rev reverses lines). */
    {
        struct tls_client_opts opp = {NULL, false, NULL, true};
        struct tls_conn *c = NULL;
        struct buf line = BUF_INIT;
        struct err e;

        assert_ok(tls_to_peer(&fx.local_peer, &opp, "localhost", &c, &e), &e);
        assert_ok(tls_conn_write(c, "abc\n", 4, &e), &e);
        assert_ok(tls_conn_read_line(c, &line, 100, &e), &e);
        assert_string_equal(buf_cstr(&line), "cba\n");
        buf_free(&line);
        tls_conn_close(c);
    }
}

/* A server that accepts and closes, or speaks something else than TLS: no
 * handshake, so no_verify refuses as well. */
static void *garbage_server(void *arg)
{
    int *lfd = arg;

    for (int k = 0; k < 2; k++) {
        int fd = accept(*lfd, NULL, NULL);

        if (fd < 0)
            return NULL;
        if (k == 1) {
            static const char junk[] = "220 not TLS at all\r\n";
            ssize_t w = write(fd, junk, sizeof(junk) - 1);

            (void)w;    /* the client may be gone already */
        }
        close(fd);
    }
    return NULL;
}

static void test_no_verify_needs_handshake(void **state)
{
    struct tls_client_opts opp = {NULL, false, NULL, true};
    struct tls_client_opts pinned = {NULL, false, fx.local.fp, true};
    struct tls_client *c = NULL;
    pthread_t th;
    unsigned port;
    int lfd;
    struct err e;

    (void)state;
    assert_int_equal(tls_client_new(&c, &pinned, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_null(c);

    lfd = listen_loopback(&port, 4);
    assert_int_equal(pthread_create(&th, NULL, garbage_server, &lfd), 0);
    for (int k = 0; k < 2; k++) {
        struct raw_result res;

        raw_handshake(port, &opp, "localhost", &res);
        assert_int_equal(res.finish, -1);
        assert_int_equal(res.e.code, ERR_TLS);
        assert_contains(res.e.text, "TLS handshake with localhost failed");
        assert_string_equal(res.fp, "");
        assert_false(res.verified);
    }
    pthread_join(th, NULL);
    close(lfd);
}

/* ---- STARTTLS with injected plaintext ----------------------------------- */

struct fake_server {
    int lfd;
    struct tls_server *srv;
    bool ok;
    char why[ERR_TEXT_MAX + 64];
};

static void *fake_starttls_server(void *arg)
{
    static const char reply[] = "A1 OK go ahead\r\nINJECTED\r\n";
    struct fake_server *f = arg;
    struct pollfd p = {f->lfd, POLLIN, 0};
    struct tls_conn *c;
    struct buf line = BUF_INIT;
    struct err e;
    int fd;

    err_clear(&e);
    if (poll(&p, 1, IO_MS) != 1 || (fd = accept(f->lfd, NULL, NULL)) < 0) {
        snprintf(f->why, sizeof(f->why), "no client");
        return NULL;
    }
    c = tls_conn_from_fd(fd, IO_MS);
    if (tls_conn_write(c, "* OK fake ready\r\n", 17, &e) < 0 ||
        tls_conn_read_line(c, &line, 100, &e) < 0)
        goto out;
    if (strcmp(buf_cstr(&line), "A1 STARTTLS\r\n") != 0) {
        snprintf(e.text, sizeof(e.text), "unexpected command");
        goto out;
    }
    /* The go-ahead and an injected line in one write, i.e. one segment. */
    if (tls_conn_write(c, reply, sizeof(reply) - 1, &e) < 0 ||
        tls_conn_accept_tls(c, f->srv, &e) < 0 ||
        tls_conn_write(c, "SECRET\r\n", 8, &e) < 0 ||
        tls_conn_read_line(c, &line, 100, &e) < 0)
        goto out;
    if (strcmp(buf_cstr(&line), "BYE\r\n") != 0) {
        snprintf(e.text, sizeof(e.text), "unexpected line after TLS");
        goto out;
    }
    f->ok = true;
out:
    if (!f->ok)
        snprintf(f->why, sizeof(f->why), "fake server: %s", e.text);
    buf_free(&line);
    tls_conn_close(c);
    return NULL;
}

enum client_kind { VIA_MAILSTREAM, VIA_CONN, VIA_ETPAN_SOCKET };

static void starttls_case(enum client_kind kind)
{
    struct tls_client_opts opts = {fx.local.cert, true, NULL, false};
    struct fake_server f;
    struct tls_client *client;
    struct tls_conn *c = NULL;
    mailstream *s = NULL;
    pthread_t th;
    unsigned port;
    struct err e;

    memset(&f, 0, sizeof(f));
    f.lfd = listen_loopback(&port, 4);
    assert_ok(tls_server_new(&f.srv, fx.local.cert, fx.local.key, &e), &e);
    assert_ok(tls_client_new(&client, &opts, &e), &e);
    assert_int_equal(pthread_create(&th, NULL, fake_starttls_server, &f), 0);

    if (kind == VIA_ETPAN_SOCKET) {
        struct sockaddr_in sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)port);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        s = mailstream_socket_open_timeout(fd, 10);
        assert_non_null(s);
    } else {
        assert_ok(tls_conn_connect(&c, "127.0.0.1", port, IO_MS, &e), &e);
        if (kind == VIA_MAILSTREAM) {
            s = tls_stream_mailstream(c, &e);
            assert_non_null(s);
        }
    }

    if (s != NULL) {
        MMAPString *line = mmap_string_new("");
        char *got;

        assert_non_null(line);
        got = mailstream_read_line_remove_eol(s, line);
        assert_non_null(got);
        assert_string_equal(got, "* OK fake ready");
        assert_int_equal(mailstream_write(s, "A1 STARTTLS\r\n", 13), 13);
        assert_int_equal(mailstream_flush(s), 0);
        got = mailstream_read_line_remove_eol(s, line);
        assert_non_null(got);
        assert_string_equal(got, "A1 OK go ahead");
        /* libetpan holds the injected line: the case this test is about. */
        assert_true(s->read_buffer_len > 0);
        assert_memory_equal(s->read_buffer, "INJECTED\r\n", 10);

        assert_ok(tls_stream_starttls(s, client, "localhost", &e), &e);
        c = tls_stream_conn(s);
        assert_non_null(c);
        assert_true(tls_conn_is_tls(c));
        assert_int_equal(mailstream_low_get_fd(mailstream_get_low(s)), tls_conn_fd(c));
        got = mailstream_read_line_remove_eol(s, line);
        assert_non_null(got);
        assert_string_equal(got, "SECRET");
        assert_int_equal(mailstream_write(s, "BYE\r\n", 5), 5);
        assert_int_equal(mailstream_flush(s), 0);
        mmap_string_free(line);
    } else {
        struct buf line = BUF_INIT;

        assert_ok(tls_conn_read_line(c, &line, 100, &e), &e);
        assert_string_equal(buf_cstr(&line), "* OK fake ready\r\n");
        assert_ok(tls_conn_write(c, "A1 STARTTLS\r\n", 13, &e), &e);
        assert_ok(tls_conn_read_line(c, &line, 100, &e), &e);
        assert_string_equal(buf_cstr(&line), "A1 OK go ahead\r\n");
        assert_true(tls_conn_has_buffered(c));

        assert_ok(tls_conn_start_tls(c, client, "localhost", &e), &e);
        assert_ok(tls_conn_read_line(c, &line, 100, &e), &e);
        assert_string_equal(buf_cstr(&line), "SECRET\r\n");
        assert_ok(tls_conn_write(c, "BYE\r\n", 5, &e), &e);
        buf_free(&line);
    }

    pthread_join(th, NULL);
    if (!f.ok)
        print_error("%s\n", f.why);
    assert_true(f.ok);
    if (s != NULL)
        mailstream_close(s);
    else
        tls_conn_close(c);
    tls_client_free(client);
    tls_server_free(f.srv);
    close(f.lfd);
}

static void test_starttls_discards_injection(void **state)
{
    static const enum client_kind kinds[] = {VIA_MAILSTREAM, VIA_CONN, VIA_ETPAN_SOCKET};
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(kinds); i++)
        starttls_case(kinds[i]);
}

/* ---- server context and reload ------------------------------------------ */

struct accept_job {
    struct tls_server *srv;
    int fd;
    int rc;
    struct err e;
};

static void *accept_thread(void *arg)
{
    struct accept_job *j = arg;
    struct tls_conn *c = tls_conn_from_fd(j->fd, IO_MS);

    j->rc = tls_conn_accept_tls(c, j->srv, &j->e);
    if (j->rc == 0)
        j->rc = tls_conn_write(c, "hello\r\n", 7, &j->e);
    tls_conn_close(c);
    return NULL;
}

/* Handshake over a socketpair between srv and a client with opts, verifying
 * host; on success the client must receive the server's greeting. */
static int handshake_opts(struct tls_server *srv, const struct tls_client_opts *opts,
                          const char *host, struct err *e)
{
    struct accept_job job;
    struct tls_client *client;
    struct tls_conn *c;
    pthread_t th;
    int sv[2], r;

    memset(&job, 0, sizeof(job));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    job.srv = srv;
    job.fd = sv[1];
    assert_ok(tls_client_new(&client, opts, e), e);
    assert_int_equal(pthread_create(&th, NULL, accept_thread, &job), 0);
    c = tls_conn_from_fd(sv[0], IO_MS);
    r = tls_conn_start_tls(c, client, host, e);
    if (r == 0) {
        struct buf line = BUF_INIT;

        assert_ok(tls_conn_read_line(c, &line, 100, e), e);
        assert_string_equal(buf_cstr(&line), "hello\r\n");
        buf_free(&line);
    }
    tls_conn_close(c);
    pthread_join(th, NULL);
    tls_client_free(client);
    if (r == 0 && job.rc != 0)
        print_error("server side: %s\n", job.e.text);
    if (r == 0)
        assert_int_equal(job.rc, 0);
    else
        assert_int_equal(job.rc, -1);
    return r;
}

/* The same with a client pinned to `pin`, for "localhost". */
static int handshake_with(struct tls_server *srv, const char *pin, struct err *e)
{
    struct tls_client_opts opts = {NULL, false, pin, false};

    return handshake_opts(srv, &opts, "localhost", e);
}

static void test_server_reload(void **state)
{
    char *missing = xasprintf("%s/missing.pem", fx.dir);
    struct {
        const char *cert;
        const char *key;
        const char *expect;
    } bad[] = {
        {fx.second.cert, fx.garbage_key, fx.garbage_key},
        {fx.second.cert, missing, missing},
        {missing, fx.second.key, missing},
        {fx.second.cert, fx.local.key, "does not match"},
        {fx.garbage_key, fx.second.key, fx.garbage_key},
    };
    struct tls_server *srv = NULL;
    struct err e;
    size_t i;

    (void)state;
    assert_int_equal(tls_server_new(&srv, fx.local.cert, fx.garbage_key, &e), -1);
    assert_null(srv);
    assert_contains(e.text, fx.garbage_key);

    assert_ok(tls_server_new(&srv, fx.local.cert, fx.local.key, &e), &e);
    assert_ok(handshake_with(srv, fx.local.fp, &e), &e);
    assert_int_equal(handshake_with(srv, fx.second.fp, &e), -1);
    assert_contains(e.text, "fingerprint mismatch");

    assert_ok(tls_server_reload(srv, fx.second.cert, fx.second.key, &e), &e);
    assert_ok(handshake_with(srv, fx.second.fp, &e), &e);
    assert_int_equal(handshake_with(srv, fx.local.fp, &e), -1);

    for (i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(tls_server_reload(srv, bad[i].cert, bad[i].key, &e), -1);
        assert_int_equal(e.code, ERR_TLS);
        assert_contains(e.text, bad[i].expect);
        /* The context loaded before is still the one in use. */
        assert_ok(handshake_with(srv, fx.second.fp, &e), &e);
    }
    /* NULL: the files last loaded successfully. */
    assert_ok(tls_server_reload(srv, NULL, NULL, &e), &e);
    assert_ok(handshake_with(srv, fx.second.fp, &e), &e);
    tls_server_free(srv);
    free(missing);
}

/* ---- host name rules (certificates made by the openssl tool) ------------ */

static int run_openssl(const char *const *args)
{
    const char *argv[32];
    size_t n = 0, i;
    pid_t pid;
    int status;

    argv[n++] = "openssl";
    for (i = 0; args[i] != NULL && n < ARRAY_LEN(argv) - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execvp("openssl", (char *const *)(uintptr_t)argv);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void test_host_name_rules(void **state)
{
    static const struct {
        const char *subj;
        const char *san;      /* NULL: no subjectAltName at all */
        const char *host;
        const char *expect;   /* NULL: accepted */
    } cases[] = {
        /* The subject CN is never a fallback. */
        {"/CN=localhost", NULL, "localhost",
         "certificate is for no host (no subjectAltName; the subject CN localhost is not used)"},
        /* A SAN is used even when the CN says otherwise. */
        {"/CN=elsewhere.example", "subjectAltName=DNS:localhost", "localhost", NULL},
        {"/CN=localhost", "subjectAltName=DNS:elsewhere.example", "localhost",
         "certificate is for elsewhere.example, not localhost"},
        /* Whole-label wildcards only, and for one label. */
        {"/CN=w", "subjectAltName=DNS:*.example.org", "mail.example.org", NULL},
        {"/CN=w", "subjectAltName=DNS:*.example.org", "a.mail.example.org",
         "host name mismatch"},
        {"/CN=w", "subjectAltName=DNS:*.example.org", "example.org", "host name mismatch"},
        {"/CN=w", "subjectAltName=DNS:ma*.example.org", "mail.example.org",
         "host name mismatch"},
        /* IP literals against IP entries, never DNS entries. */
        {"/CN=w", "subjectAltName=IP:127.0.0.1", "127.0.0.1", NULL},
        {"/CN=w", "subjectAltName=DNS:127.0.0.1", "127.0.0.1", "host name mismatch"},
        {"/CN=w", "subjectAltName=IP:::1", "::1", NULL},
    };
    char *cert = xasprintf("%s/rule.crt", fx.dir);
    char *key = xasprintf("%s/rule.key", fx.dir);
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        const char *args[] = {"req", "-x509", "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                              "-keyout", key, "-out", cert, "-subj", cases[i].subj,
                              cases[i].san != NULL ? "-addext" : NULL, cases[i].san, NULL};
        struct tls_client_opts opts = {cert, true, NULL, false};
        struct tls_server *srv;
        struct err e;
        int r;

        if (run_openssl(args) < 0) {
            if (i == 0)
                break;   /* no usable openssl tool */
            fail_msg("openssl req failed for case %zu", i);
        }
        assert_ok(tls_server_new(&srv, cert, key, &e), &e);
        r = handshake_opts(srv, &opts, cases[i].host, &e);
        tls_server_free(srv);
        if (cases[i].expect == NULL) {
            if (r != 0)
                print_error("case %zu: %s\n", i, e.text);
            assert_int_equal(r, 0);
        } else {
            if (r != -1)
                print_error("case %zu accepted\n", i);
            assert_int_equal(r, -1);
            assert_int_equal(e.code, ERR_TLS);
            assert_contains(e.text, cases[i].expect);
            assert_contains(e.text, "(SHA256:");
        }
    }
    unlink(cert);
    unlink(key);
    free(cert);
    free(key);
    if (i == 0)
        skip();
}

/* ---- plain connections: timeouts, cancel, lines, connect ---------------- */

static void test_read_timeout_and_lines(void **state)
{
    struct tls_conn *c;
    struct buf line = BUF_INIT;
    char data[8];
    size_t got;
    long long t0, dt;
    struct err e;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c = tls_conn_from_fd(sv[0], 300);

    t0 = now_ms();
    assert_int_equal(tls_conn_read(c, data, sizeof(data), &got, &e), -1);
    dt = now_ms() - t0;
    assert_int_equal(e.code, ERR_NET);
    assert_contains(e.text, "timed out");
    assert_true(dt >= 250);
    assert_true(dt < 5000);

    tls_conn_set_timeout(c, IO_MS);
    assert_int_equal(write(sv[1], "abc\r\nde", 7), 7);
    assert_ok(tls_conn_read_line(c, &line, 100, &e), &e);
    assert_string_equal(buf_cstr(&line), "abc\r\n");
    assert_true(tls_conn_has_buffered(c));
    assert_ok(tls_conn_read(c, data, sizeof(data), &got, &e), &e);
    assert_int_equal(got, 2);
    assert_memory_equal(data, "de", 2);
    assert_false(tls_conn_has_buffered(c));

    assert_int_equal(write(sv[1], "0123456789\n", 11), 11);
    assert_int_equal(tls_conn_read_line(c, &line, 5, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);

    tls_conn_close(c);
    close(sv[1]);

    /* End of stream in the middle of a line. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c = tls_conn_from_fd(sv[0], IO_MS);
    assert_int_equal(write(sv[1], "partial", 7), 7);
    close(sv[1]);
    assert_int_equal(tls_conn_read_line(c, &line, 100, &e), -1);
    assert_int_equal(e.code, ERR_NET);
    assert_ok(tls_conn_read(c, data, sizeof(data), &got, &e), &e);
    assert_int_equal(got, 0);
    /* Writing to a closed peer is an error, not SIGPIPE. */
    assert_int_equal(tls_conn_write(c, "x", 1, &e), -1);
    assert_int_equal(e.code, ERR_NET);
    tls_conn_close(c);
    buf_free(&line);
}

static void *cancel_thread(void *arg)
{
    mailstream_cancel(arg);
    return NULL;
}

static void test_mailstream_cancel_and_idle(void **state)
{
    struct tls_conn *c;
    mailstream *s;
    char data[16];
    long long t0;
    pthread_t th;
    struct err e;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    c = tls_conn_from_fd(sv[0], IO_MS);
    s = tls_stream_mailstream(c, &e);
    assert_non_null(s);
    assert_int_equal(mailstream_low_get_fd(mailstream_get_low(s)), sv[0]);
    assert_non_null(mailstream_low_get_cancel(mailstream_get_low(s)));

    /* Data flows in plaintext too. */
    assert_int_equal(write(sv[1], "ping", 4), 4);
    assert_int_equal(mailstream_read(s, data, 4), 4);
    assert_memory_equal(data, "ping", 4);
    assert_null(mailstream_get_certificate_chain(s));

    /* libetpan's IDLE waits on our descriptor and cancel object. */
    assert_int_equal(mailstream_setup_idle(s), 0);
    mailstream_interrupt_idle(s);
    assert_int_equal(mailstream_wait_idle(s, 10), MAILSTREAM_IDLE_INTERRUPTED);
    assert_int_equal(write(sv[1], "x", 1), 1);
    assert_int_equal(mailstream_wait_idle(s, 10), MAILSTREAM_IDLE_HASDATA);
    assert_int_equal(mailstream_read(s, data, 1), 1);
    assert_int_equal(data[0], 'x');
    mailstream_unsetup_idle(s);

    /* Cancel from another thread ends a read that would wait IO_MS. */
    t0 = now_ms();
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, s), 0);
    assert_int_equal(mailstream_read(s, data, sizeof(data)), -1);
    pthread_join(th, NULL);
    assert_true(now_ms() - t0 < IO_MS / 2);
    assert_contains(tls_conn_last_error(c)->text, "cancelled");
    /* and the stream stays cancelled. */
    assert_int_equal(write(sv[1], "y", 1), 1);
    assert_int_equal(mailstream_read(s, data, 1), -1);
    assert_int_equal(mailstream_write(s, "z", 1), 1);   /* buffered only */
    assert_int_equal(mailstream_flush(s), -1);
    mailstream_close(s);
    close(sv[1]);
}

static void test_connect(void **state)
{
    struct tls_conn *c = NULL, *filler = NULL;
    unsigned port;
    long long t0, dt;
    struct err e;
    int lfd;

    (void)state;
    /* Refused: a port that was just closed. */
    lfd = listen_loopback(&port, 1);
    close(lfd);
    assert_int_equal(tls_conn_connect(&c, "127.0.0.1", port, IO_MS, &e), -1);
    assert_null(c);
    assert_int_equal(e.code, ERR_NET);
    assert_contains(e.text, "Connection refused");

    assert_int_equal(tls_conn_connect(&c, "", 143, IO_MS, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(tls_conn_connect(&c, "127.0.0.1", 0, IO_MS, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(tls_conn_connect(&c, "127.0.0.1", 70000, IO_MS, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);

    /* Success, by name. */
    lfd = listen_loopback(&port, 4);
    assert_ok(tls_conn_connect(&c, "localhost", port, IO_MS, &e), &e);
    assert_true(tls_conn_fd(c) >= 0);
    tls_conn_close(c);
    c = NULL;
    close(lfd);

    /* Timeout: a listener whose queue is full drops further SYNs. */
    lfd = listen_loopback(&port, 0);
    assert_ok(tls_conn_connect(&filler, "127.0.0.1", port, IO_MS, &e), &e);
    t0 = now_ms();
    if (tls_conn_connect(&c, "127.0.0.1", port, 300, &e) == 0) {
        tls_conn_close(c);
        tls_conn_close(filler);
        close(lfd);
        skip();   /* this kernel queued it anyway */
    }
    dt = now_ms() - t0;
    assert_int_equal(e.code, ERR_NET);
    assert_contains(e.text, "timed out");
    assert_true(dt >= 250);
    assert_true(dt < 5000);
    tls_conn_close(filler);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fingerprint),
        cmocka_unit_test(test_gencert),
        cmocka_unit_test(test_gencert_invalid),
        cmocka_unit_test(test_client_options),
        cmocka_unit_test(test_default_context_refuses_self_signed),
        cmocka_unit_test(test_pinning),
        cmocka_unit_test(test_ca_file),
        cmocka_unit_test(test_mailstream_roundtrip),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_no_verify),
        cmocka_unit_test(test_no_verify_needs_handshake),
        cmocka_unit_test(test_starttls_discards_injection),
        cmocka_unit_test(test_server_reload),
        cmocka_unit_test(test_host_name_rules),
        cmocka_unit_test(test_read_timeout_and_lines),
        cmocka_unit_test(test_mailstream_cancel_and_idle),
        cmocka_unit_test(test_connect),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
