/*
 * Tests for mua/imap: URL parsing and the greeting rule on their own, then
 * whole connections against scripted servers on loopback.  A server thread
 * accepts one connection, writes its whole script at once (the client reads
 * it in order; libetpan's tags are 1, 2, ... so the script knows them),
 * then records everything the client sent until the client closes.  The
 * tests check both what the client concluded and what it sent: nothing
 * after a PREAUTH or bad greeting on an account that needs STARTTLS, no
 * credential when STARTTLS is missing, the exact AUTHENTICATE lines, and
 * OAUTHBEARER/XOAUTH2 with their payloads and refusals, and
 * an error (never a crash or a huge allocation) for an oversized literal,
 * an endless line or deep nesting.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "codec.h"
#include "config.h"
#include "err.h"
#include "imap.h"

#include <libetpan/libetpan.h>
#include "mailbox.h"
#include "msg.h"
#include "testutil.h"
#include "tls.h"
#include "tls_stream.h"
#include "xalloc.h"

/* ---- URLs ------------------------------------------------------------------ */

static void test_url_parse(void **state)
{
    static const struct {
        const char *url;
        int ok;
        bool tls;
        const char *user, *host;
        unsigned port;
        const char *folder;
    } cases[] = {
        {"imap://alice@mail.example.org/INBOX", 1, false, "alice", "mail.example.org", 143, "INBOX"},
        {"imaps://alice@127.0.0.1:10993/INBOX", 1, true, "alice", "127.0.0.1", 10993, "INBOX"},
        {"IMAPS://host", 1, true, NULL, "host", 993, "INBOX"},
        {"imap://host/", 1, false, NULL, "host", 143, "INBOX"},
        {"imap://a%40b@host/Lists/dev", 1, false, "a@b", "host", 143, "Lists/dev"},
        {"imap://u@[::1]:1143/Sent%20Items/", 1, false, "u", "::1", 1143, "Sent Items"},
        {"imap://me@x@host/F", 1, false, "me@x", "host", 143, "F"},
        {"imap://alice:secret@host/INBOX", 0, false, NULL, NULL, 0, NULL},
        {"imap://host:0/", 0, false, NULL, NULL, 0, NULL},
        {"imap://host:65536/", 0, false, NULL, NULL, 0, NULL},
        {"imap://host:12a/", 0, false, NULL, NULL, 0, NULL},
        {"imap://host:/", 0, false, NULL, NULL, 0, NULL},
        {"imap:///INBOX", 0, false, NULL, NULL, 0, NULL},
        {"imap://@host/INBOX", 0, false, NULL, NULL, 0, NULL},
        {"imap://host/a%0Db", 0, false, NULL, NULL, 0, NULL},
        {"imap://host/a%zz", 0, false, NULL, NULL, 0, NULL},
        {"imap://host/a%4", 0, false, NULL, NULL, 0, NULL},
        {"imap://[::1/INBOX", 0, false, NULL, NULL, 0, NULL},
        {"pop://host/", 0, false, NULL, NULL, 0, NULL},
        {"/home/alice/Maildir", 0, false, NULL, NULL, 0, NULL},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct imap_url u;
        struct err e;
        int rc = imap_url_parse(cases[i].url, &u, &e);

        if (!cases[i].ok) {
            if (rc == 0)
                fail_msg("%s: accepted", cases[i].url);
            assert_int_equal(e.code, ERR_INVAL);
            continue;
        }
        if (rc != 0)
            fail_msg("%s: %s", cases[i].url, e.text);
        assert_int_equal(u.tls, cases[i].tls);
        if (cases[i].user == NULL)
            assert_null(u.user);
        else
            assert_string_equal(u.user, cases[i].user);
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        assert_string_equal(u.folder, cases[i].folder);
        imap_url_free(&u);
    }
    assert_true(imap_url_is("imap://h/"));
    assert_true(imap_url_is("ImapS://h/"));
    assert_false(imap_url_is("imapx://h/"));
    assert_false(imap_url_is("/tmp/imap://"));
}

static void test_url_account(void **state)
{
    struct imap_url u;
    char *a;
    (void)state;

    assert_int_equal(imap_url_parse("imaps://bob@[::1]/X", &u, NULL), 0);
    a = imap_url_account(&u, "bob");
    assert_string_equal(a, "imaps://bob@[::1]:993/");
    free(a);
    imap_url_free(&u);
}

/* ---- greeting -------------------------------------------------------------- */

static void test_greeting_rule(void **state)
{
    static const struct {
        int result;
        bool tls_pending;
        int ok;
        enum err_code code;
    } cases[] = {
        {MAILIMAP_NO_ERROR_NON_AUTHENTICATED, true, 1, ERR_OK},
        {MAILIMAP_NO_ERROR_NON_AUTHENTICATED, false, 1, ERR_OK},
        {MAILIMAP_NO_ERROR_AUTHENTICATED, false, 1, ERR_OK},
        {MAILIMAP_NO_ERROR_AUTHENTICATED, true, 0, ERR_TLS},
        {MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION, false, 0, ERR_PROTO},
        {MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION, true, 0, ERR_PROTO},
        {MAILIMAP_ERROR_PARSE, false, 0, ERR_PROTO},
        {MAILIMAP_ERROR_PARSE, true, 0, ERR_PROTO},
        {MAILIMAP_ERROR_STREAM, true, 0, ERR_PROTO},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct err e;
        enum imap_greeting g = imap_greeting_from_result(cases[i].result);
        int rc = imap_greeting_judge(g, cases[i].tls_pending, &e);

        assert_int_equal(rc == 0, cases[i].ok);
        if (!cases[i].ok) {
            assert_int_equal(e.code, cases[i].code);
            assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
        }
    }
}

/* ---- scripted servers -------------------------------------------------------- */

struct server {
    int lfd;
    unsigned port;
    const char *script;
    size_t script_len;
    bool silent;            /* send nothing at all (timeouts) */
    struct buf got;         /* what the client sent */
    pthread_t tid;
};

/* When the last line the client sent is "TAG LOGOUT", answer it, so the
 * client need not wait for its logout timeout. */
static void answer_logout(int fd, const struct buf *got)
{
    const char *end, *start, *sp;
    char reply[64];

    if (got->len < 9 || memcmp(got->data + got->len - 8, "LOGOUT\r\n", 8) != 0)
        return;
    end = got->data + got->len - 8;
    for (start = end; start > got->data && start[-1] != '\n'; start--)
        ;
    sp = memchr(start, ' ', (size_t)(end - start));
    if (sp == NULL || sp + 1 != end || sp - start > 20)
        return;
    snprintf(reply, sizeof reply, "* BYE bye\r\n%.*s OK done\r\n", (int)(sp - start), start);
    (void)send(fd, reply, strlen(reply), MSG_NOSIGNAL);
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    struct pollfd pfd = {s->lfd, POLLIN, 0};
    int fd;

    if (poll(&pfd, 1, 10000) != 1)
        return NULL;
    fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (!s->silent) {
        size_t off = 0;

        while (off < s->script_len) {
            ssize_t w = send(fd, s->script + off, s->script_len - off, MSG_NOSIGNAL);

            if (w <= 0)
                break;
            off += (size_t)w;
        }
        /* Nothing, or a BYE at the end: the server hangs up (its side). */
        if (s->script_len == 0 ||
            (s->script_len >= 2 && memmem(s->script, s->script_len, "* BYE", 5) != NULL &&
             memmem(s->script, s->script_len, "* BYE", 5) ==
                 memrchr(s->script, '*', s->script_len)))
            shutdown(fd, SHUT_WR);
    }
    for (;;) {
        char b[4096];
        struct pollfd q = {fd, POLLIN, 0};
        ssize_t r;

        if (poll(&q, 1, 10000) != 1)
            break;
        r = read(fd, b, sizeof b);
        if (r <= 0)
            break;
        if (buf_append(&s->got, b, (size_t)r) != 0)
            break;
        answer_logout(fd, &s->got);
    }
    close(fd);
    return NULL;
}

static void server_start(struct server *s, const char *script, size_t len)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    memset(s, 0, sizeof *s);
    buf_init(&s->got, 1 << 20);
    s->script = script;
    s->script_len = len;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->tid, NULL, server_main, s), 0);
}

static void server_join(struct server *s)
{
    pthread_join(s->tid, NULL);
    close(s->lfd);
}

/* Connect as alice with password "secret" to a server playing script;
 * returns imap_connect's result, *e its error, got what the client sent.
 * With run non-NULL, the command is run after a successful connect and
 * its result returned instead. */
static int play(const char *script, const struct imap_settings *extra, const char *scheme,
                const char *run, struct err *e, struct buf *got)
{
    struct imap_settings s;
    struct server srv;
    struct imap_conn *c = NULL;
    struct imap_url u;
    char *url;
    int rc;

    server_start(&srv, script, strlen(script));
    if (extra != NULL)
        s = *extra;
    else
        memset(&s, 0, sizeof s);
    if (s.pass == NULL)
        s.pass = "secret";
    if (s.timeout_ms == 0)
        s.timeout_ms = 5000;
    url = xasprintf("%s://alice@127.0.0.1:%u/INBOX", scheme, srv.port);
    assert_int_equal(imap_url_parse(url, &u, NULL), 0);
    rc = imap_connect(&u, &s, &c, e);
    if (rc == 0 && run != NULL)
        rc = imap_simple(c, run, e);
    imap_close(c);
    server_join(&srv);
    *got = srv.got;
    imap_url_free(&u);
    free(url);
    return rc;
}

static bool contains(const struct buf *b, const char *s)
{
    return b->len > 0 && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

/* The account needs STARTTLS: a PREAUTH, BYE or garbage greeting ends it
 * before the client sends a single byte. */
static void test_refusals_before_anything_is_sent(void **state)
{
    static const struct {
        const char *script;
        enum err_code code;
    } cases[] = {
        {"* PREAUTH IMAP4rev1 logged in already\r\n", ERR_TLS},
        {"* BYE go away\r\n", ERR_PROTO},
        {"HELLO THERE\r\n", ERR_PROTO},
        {"+OK POP3 server ready\r\n", ERR_PROTO},
        {"* NO\r\n", ERR_PROTO},
        {"", ERR_PROTO},
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct buf got;
        struct err e;

        if (play(cases[i].script, NULL, "imap", NULL, &e, &got) == 0)
            fail_msg("case %zu: accepted", i);
        if (e.code != cases[i].code && !(cases[i].script[0] == '\0' && e.code == ERR_NET))
            fail_msg("case %zu: code %d (%s)", i, e.code, e.text);
        if (got.len != 0)
            fail_msg("case %zu: the client sent %zu bytes", i, got.len);
        buf_free(&got);
    }
}

/* No STARTTLS (or a refused one): no credential ever leaves. */
static void test_starttls_required(void **state)
{
    struct buf got;
    struct err e;
    (void)state;

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
                          "1 OK done\r\n",
                          NULL, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_true(contains(&got, "CAPABILITY"));
    assert_false(contains(&got, "LOGIN"));
    assert_false(contains(&got, "AUTHENTICATE"));
    assert_false(contains(&got, "secret"));
    buf_free(&got);

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1 STARTTLS\r\n"
                          "1 OK done\r\n"
                          "2 NO not today\r\n",
                          NULL, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_true(contains(&got, "2 STARTTLS"));
    assert_false(contains(&got, "LOGIN"));
    assert_false(contains(&got, "secret"));
    buf_free(&got);
}

/* Cleartext allowed: LOGIN, AUTHENTICATE PLAIN with and without SASL-IR,
 * a refused password, PREAUTH. */
static void test_login_methods(void **state)
{
    struct imap_settings plain;
    struct buf got;
    struct err e;
    (void)state;

    memset(&plain, 0, sizeof plain);
    plain.allow_plain = true;

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "1 OK done\r\n"
                          "2 OK logged in\r\n"
                          "* CAPABILITY IMAP4rev1 UIDPLUS\r\n"
                          "3 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "2 LOGIN alice secret\r\n"));
    buf_free(&got);

    /* "\0alice\0secret" in base64 */
    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n"
                          "1 OK done\r\n"
                          "2 OK authenticated\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "3 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "2 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"));
    assert_false(contains(&got, "LOGIN"));
    buf_free(&got);

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
                          "1 OK done\r\n"
                          "+ \r\n"
                          "2 OK authenticated\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "3 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "2 AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n"));
    buf_free(&got);

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "1 OK done\r\n"
                          "2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                          &plain, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
    assert_non_null(strstr(e.text, "login as alice refused"));
    assert_non_null(strstr(e.text, "Authentication failed"));
    buf_free(&got);

    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n"
                          "1 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     -1);
    assert_false(contains(&got, "secret"));
    buf_free(&got);

    /* CAPABILITY answered OK without a CAPABILITY line (no capabilities):
     * LOGIN, no crash. */
    assert_int_equal(play("* OK ready\r\n"
                          "1 OK done\r\n"
                          "2 OK logged in\r\n"
                          "3 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "1 CAPABILITY\r\n2 LOGIN alice secret\r\n3 CAPABILITY\r\n"));
    buf_free(&got);

    /* An empty CAPABILITY line: no capabilities, LOGIN, no crash. */
    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY\r\n"
                          "1 OK done\r\n"
                          "2 OK logged in\r\n"
                          "* CAPABILITY\r\n"
                          "3 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "2 LOGIN alice secret\r\n"));
    buf_free(&got);

    /* PREAUTH where cleartext is acceptable: no login at all. */
    assert_int_equal(play("* PREAUTH welcome\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "1 OK done\r\n",
                          &plain, "imap", NULL, &e, &got),
                     0);
    assert_false(contains(&got, "LOGIN"));
    buf_free(&got);
}

/* The password comes from a command when imap_pass is empty; a missing
 * password is an error before anything is sent. */
static void test_password_sources(void **state)
{
    struct imap_settings s;
    struct buf got;
    struct err e;
    (void)state;

    memset(&s, 0, sizeof s);
    s.allow_plain = true;
    s.pass = "";
    s.pass_cmd = "echo 'from cmd'";
    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "1 OK done\r\n"
                          "2 OK logged in\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "3 OK done\r\n",
                          &s, "imap", NULL, &e, &got),
                     0);
    assert_true(contains(&got, "2 LOGIN alice \"from cmd\"\r\n"));
    buf_free(&got);

    s.pass_cmd = NULL;
    assert_int_equal(play("* OK ready\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "1 OK done\r\n",
                          &s, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_non_null(strstr(e.text, "imap_pass"));
    assert_false(contains(&got, "LOGIN"));
    buf_free(&got);
}

/* The base64 after "prefix" up to CRLF in what the client sent, decoded
 * (NUL-terminated in out). */
static void sent_b64(const struct buf *got, const char *prefix, struct buf *out)
{
    const char *p, *end;

    assert_true(got->len > 0);
    p = memmem(got->data, got->len, prefix, strlen(prefix));
    assert_non_null(p);
    p += strlen(prefix);
    end = memmem(p, got->len - (size_t)(p - got->data), "\r\n", 2);
    assert_non_null(end);
    buf_init(out, 4096);
    assert_int_equal(codec_b64_decode(p, (size_t)(end - p), out, NULL), 0);
    assert_int_equal(buf_putc(out, '\0'), 0);
    out->len--;
}

#define OAUTH_CAPS(extra)                                       \
    "* OK ready\r\n"                                            \
    "* CAPABILITY IMAP4rev1 AUTH=PLAIN " extra "\r\n"           \
    "1 OK done\r\n"

/* OAuth with a token command: OAUTHBEARER preferred over XOAUTH2, the
 * initial response on the command line with SASL-IR and after the
 * continuation without it, the exact payloads, a refusal's JSON answered
 * with the dummy response and shown in the error, never the token. */
static void test_oauth(void **state)
{
    static const char prefix[] = "n,a=alice,\001host=127.0.0.1\001port=";
    static const char suffix[] = "\001auth=Bearer tok-123.xyz\001\001";
    static const char xo[] = "user=alice\001auth=Bearer tok-123.xyz\001\001";
    /* {"status":"invalid_token","scope":"mail"} */
    static const char json_b64[] =
        "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=";
    struct imap_settings s;
    struct buf got, dec, enc;
    struct err e;
    const char *digits;
    (void)state;

    memset(&s, 0, sizeof s);
    s.allow_plain = true;
    s.oauth_cmd = "printf 'tok-123.xyz\\nsecond line\\n'";

    /* Both offered, SASL-IR: OAUTHBEARER on the command line. */
    assert_int_equal(play(OAUTH_CAPS("AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR")
                          "2 OK authenticated\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "3 OK done\r\n",
                          &s, "imap", NULL, &e, &got),
                     0);
    assert_false(contains(&got, "LOGIN"));
    assert_false(contains(&got, "PLAIN"));
    assert_false(contains(&got, "XOAUTH2"));
    assert_false(contains(&got, "secret"));
    sent_b64(&got, "2 AUTHENTICATE OAUTHBEARER ", &dec);
    assert_true(dec.len > strlen(prefix) + strlen(suffix));
    assert_memory_equal(dec.data, prefix, strlen(prefix));
    assert_memory_equal(dec.data + dec.len - strlen(suffix), suffix, strlen(suffix));
    digits = dec.data + strlen(prefix);
    assert_true(digits[0] >= '1' && digits[0] <= '9');
    for (const char *q = digits; q < dec.data + dec.len - strlen(suffix); q++)
        assert_true(*q >= '0' && *q <= '9');
    assert_null(strstr(dec.data, "second line"));
    buf_free(&dec);
    /* Only the authentication and the capabilities after it: nothing else. */
    assert_non_null(memmem(got.data, got.len, "\r\n3 CAPABILITY\r\n", 16));
    buf_free(&got);

    /* XOAUTH2 only, no SASL-IR: the response after the continuation. */
    assert_int_equal(play(OAUTH_CAPS("AUTH=XOAUTH2")
                          "+ \r\n"
                          "2 OK authenticated\r\n"
                          "* CAPABILITY IMAP4rev1\r\n"
                          "3 OK done\r\n",
                          &s, "imap", NULL, &e, &got),
                     0);
    buf_init(&enc, 4096);
    assert_int_equal(codec_b64_encode(xo, strlen(xo), &enc), 0);
    assert_int_equal(buf_puts(&enc, "\r\n"), 0);
    assert_true(contains(&got, "2 AUTHENTICATE XOAUTH2\r\n"));
    sent_b64(&got, "2 AUTHENTICATE XOAUTH2\r\n", &dec);
    assert_string_equal(dec.data, xo);
    buf_free(&dec);
    assert_true(contains(&got, buf_cstr(&enc)));
    buf_free(&got);

    /* Refused OAUTHBEARER: the JSON challenge gets AQ== (%x01), the NO ends
     * it; the error names the account and the JSON, never the token. */
    assert_int_equal(play(OAUTH_CAPS("AUTH=OAUTHBEARER SASL-IR")
                          "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIn0=\r\n"
                          "2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                          &s, "imap", NULL, &e, &got),
                     -1);
    (void)json_b64;
    assert_int_equal(e.code, ERR_PROTO);
    assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
    assert_non_null(strstr(e.text, "login as alice refused"));
    assert_non_null(strstr(e.text, "Authentication failed"));
    assert_non_null(strstr(e.text, "invalid_token"));
    assert_null(strstr(e.text, "tok-123"));
    sent_b64(&got, "2 AUTHENTICATE OAUTHBEARER ", &dec);
    buf_free(&dec);
    {
        const char *line = memmem(got.data, got.len, "2 AUTHENTICATE OAUTHBEARER ", 27);
        const char *next = memmem(line, got.len - (size_t)(line - got.data), "\r\n", 2);

        assert_true(got.len - (size_t)(next + 2 - got.data) >= 6);
        assert_memory_equal(next + 2, "AQ==\r\n", 6);
    }
    assert_false(contains(&got, "\r\n*\r\n"));
    buf_free(&got);

    /* Refused XOAUTH2 with SASL-IR: the challenge gets an empty line. */
    assert_int_equal(play(OAUTH_CAPS("AUTH=XOAUTH2 SASL-IR")
                          "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"
                          "2 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
                          &s, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_non_null(strstr(e.text, "401"));
    assert_null(strstr(e.text, "tok-123"));
    enc.len = 0;
    assert_int_equal(buf_puts(&enc, "2 AUTHENTICATE XOAUTH2 "), 0);
    assert_int_equal(codec_b64_encode(xo, strlen(xo), &enc), 0);
    assert_int_equal(buf_puts(&enc, "\r\n\r\n"), 0);
    assert_true(contains(&got, buf_cstr(&enc)));
    buf_free(&got);
    buf_free(&enc);

    /* A server that never ends the exchange: answered once, then cancelled,
     * then given up on. */
    assert_int_equal(play(OAUTH_CAPS("AUTH=OAUTHBEARER SASL-IR")
                          "+ \r\n+ \r\n+ \r\n+ \r\n+ \r\n+ \r\n+ \r\n+ \r\n",
                          &s, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_PARSE);
    assert_true(contains(&got, "\r\nAQ==\r\n*\r\n"));
    buf_free(&got);

    /* No OAuth mechanism offered: nothing is sent, not even a password. */
    assert_int_equal(play(OAUTH_CAPS("SASL-IR"), &s, "imap", NULL, &e, &got), -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
    assert_non_null(strstr(e.text, "OAUTHBEARER"));
    assert_non_null(strstr(e.text, "XOAUTH2"));
    assert_false(contains(&got, "AUTHENTICATE"));
    assert_false(contains(&got, "LOGIN"));
    assert_false(contains(&got, "secret"));
    buf_free(&got);

    /* The token command fails: an error naming it, nothing sent. */
    s.oauth_cmd = "echo oops >&2; exit 3";
    assert_int_equal(play(OAUTH_CAPS("AUTH=OAUTHBEARER SASL-IR"), &s, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
    assert_non_null(strstr(e.text, "imap_oauth_cmd"));
    assert_false(contains(&got, "AUTHENTICATE"));
    assert_false(contains(&got, "LOGIN"));
    buf_free(&got);

    /* On an account that needs TLS the token is not even asked for when
     * STARTTLS is missing. */
    s.allow_plain = false;
    s.oauth_cmd = "echo tok-123.xyz";
    assert_int_equal(play(OAUTH_CAPS("AUTH=OAUTHBEARER SASL-IR"), &s, "imap", NULL, &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_false(contains(&got, "AUTHENTICATE"));
    assert_false(contains(&got, "tok-123"));
    buf_free(&got);
}

#define LOGGED_IN                    \
    "* OK ready\r\n"                 \
    "* CAPABILITY IMAP4rev1\r\n"     \
    "1 OK done\r\n"                  \
    "2 OK logged in\r\n"             \
    "* CAPABILITY IMAP4rev1\r\n"     \
    "3 OK done\r\n"

/* Hostile replies: each is an ERR_LIMIT for the operation. */
static void test_limits(void **state)
{
    struct imap_settings s;
    struct buf got;
    struct err e;
    char *script;
    size_t n;
    (void)state;

    memset(&s, 0, sizeof s);
    s.allow_plain = true;
    s.limits.line_max = 4096;
    s.limits.literal_max = 100000;
    s.limits.depth_max = 16;

    /* A literal far larger than the cap: refused at its announcement. */
    assert_int_equal(play(LOGGED_IN "* 1 FETCH (UID 1 BODY[] {99999999999999999999}\r\nabc",
                          &s, "imap", "NOOP", &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_non_null(strstr(e.text, "literal"));
    buf_free(&got);

    /* One just over the cap. */
    assert_int_equal(play(LOGGED_IN "* 1 FETCH (UID 1 BODY[] {100001}\r\nabc", &s, "imap",
                          "NOOP", &e, &got),
                     -1);
    assert_int_equal(e.code, ERR_LIMIT);
    buf_free(&got);

    /* A literal within the cap is fine (its bytes are not a line). */
    n = 50000;
    script = xmalloc(strlen(LOGGED_IN) + n + 200);
    strcpy(script, LOGGED_IN "* 1 FETCH (UID 1 BODY[] {50000}\r\n");
    memset(script + strlen(script), 'x', n);
    strcpy(script + strlen(LOGGED_IN "* 1 FETCH (UID 1 BODY[] {50000}\r\n") + n,
           ")\r\n4 OK noop\r\n");
    assert_int_equal(play(script, &s, "imap", "NOOP", &e, &got), 0);
    free(script);
    buf_free(&got);

    /* An endless line. */
    n = 10000;
    script = xmalloc(strlen(LOGGED_IN) + n + 20);
    strcpy(script, LOGGED_IN "* OK ");
    memset(script + strlen(script), 'y', n);
    script[strlen(LOGGED_IN "* OK ") + n] = '\0';
    assert_int_equal(play(script, &s, "imap", "NOOP", &e, &got), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_non_null(strstr(e.text, "line"));
    free(script);
    buf_free(&got);

    /* Deep nesting. */
    n = 40;
    script = xmalloc(strlen(LOGGED_IN) + n + 40);
    strcpy(script, LOGGED_IN "* 1 FETCH ");
    memset(script + strlen(script), '(', n);
    strcpy(script + strlen(LOGGED_IN "* 1 FETCH ") + n, "\r\n4 OK\r\n");
    assert_int_equal(play(script, &s, "imap", "NOOP", &e, &got), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_non_null(strstr(e.text, "nest"));
    free(script);
    buf_free(&got);

    /* Parentheses inside a quoted string do not count. */
    assert_int_equal(play(LOGGED_IN "* OK \"((((((((((((((((((((((((\"\r\n4 OK noop\r\n", &s,
                          "imap", "NOOP", &e, &got),
                     0);
    buf_free(&got);

    /* A hostile greeting line is bounded too. */
    n = 10000;
    script = xmalloc(n + 10);
    strcpy(script, "* OK ");
    memset(script + 5, 'z', n);
    script[5 + n] = '\0';
    assert_int_equal(play(script, &s, "imap", NULL, &e, &got), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(got.len, 0);
    free(script);
    buf_free(&got);
}

/* A server that never answers: the read gives up after the timeout. */
static void test_timeout(void **state)
{
    struct imap_settings s;
    struct server srv;
    struct imap_conn *c = NULL;
    struct imap_url u;
    struct err e;
    char *url;
    double t0;
    (void)state;

    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.timeout_ms = 300;
    server_start(&srv, "", 0);
    srv.silent = true;
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", srv.port);
    assert_int_equal(imap_url_parse(url, &u, NULL), 0);
    t0 = tu_now();
    assert_int_equal(imap_connect(&u, &s, &c, &e), -1);
    assert_true(tu_now() - t0 < 5.0);
    assert_null(c);
    server_join(&srv);
    buf_free(&srv.got);
    imap_url_free(&u);
    free(url);
}

/* A NO to a command is an error for that command; the connection goes on. */
static void test_command_refused(void **state)
{
    struct imap_settings s;
    struct buf got;
    struct err e;
    (void)state;

    memset(&s, 0, sizeof s);
    s.allow_plain = true;
    assert_int_equal(play(LOGGED_IN "4 NO [CANNOT] \x1b[31mred\r\n", &s, "imap", "NOOP", &e,
                          &got),
                     -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_null(strchr(e.text, '\x1b'));
    buf_free(&got);
}

/* ---- STARTTLS against a TLS-capable fake server --------------------------- */

struct tls_fake {
    int lfd;
    unsigned port;
    struct tls_server *srv;
    const char *plain;      /* sent at once in cleartext */
    const char *secure;     /* sent at once after the handshake */
    struct buf got_plain, got_tls;
    bool handshake_ok;
    pthread_t tid;
};

static void *tls_fake_main(void *arg)
{
    struct tls_fake *f = arg;
    struct pollfd pfd = {f->lfd, POLLIN, 0};
    struct tls_conn *c;
    int fd;

    if (poll(&pfd, 1, 10000) != 1)
        return NULL;
    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    if (send(fd, f->plain, strlen(f->plain), MSG_NOSIGNAL) < 0) {
        close(fd);
        return NULL;
    }
    /* Cleartext until the client's STARTTLS line, byte by byte so that
     * nothing of the handshake is consumed here. */
    for (;;) {
        struct pollfd q = {fd, POLLIN, 0};
        char ch;

        if (poll(&q, 1, 10000) != 1 || read(fd, &ch, 1) != 1) {
            close(fd);
            return NULL;
        }
        if (buf_putc(&f->got_plain, ch) != 0)
            break;
        if (ch == '\n' && f->got_plain.len >= 10 &&
            memcmp(f->got_plain.data + f->got_plain.len - 10, "STARTTLS\r\n", 10) == 0)
            break;
    }
    c = tls_conn_from_fd(fd, 5000);
    if (tls_conn_accept_tls(c, f->srv, NULL) != 0) {
        tls_conn_close(c);
        return NULL;
    }
    f->handshake_ok = true;
    if (tls_conn_write(c, f->secure, strlen(f->secure), NULL) == 0) {
        for (;;) {
            char b[4096];
            size_t got = 0;

            if (tls_conn_read(c, b, sizeof b, &got, NULL) != 0 || got == 0)
                break;
            if (buf_append(&f->got_tls, b, got) != 0)
                break;
        }
    }
    tls_conn_close(c);
    return NULL;
}

/* What a man in the middle sends after STARTTLS's OK, in cleartext, is
 * never read as if it came over TLS: with such bytes the connection is
 * refused; without, the capabilities are the ones asked for again over TLS
 * and the login uses them. */
static void starttls_case(bool injected)
{
    static const char *const names[] = {"127.0.0.1", NULL};
    char fp[TLS_FINGERPRINT_SIZE];
    char *dir = tu_tmpdir("imap");
    char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
    struct imap_settings s;
    struct tls_fake f;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    struct imap_conn *c = NULL;
    struct imap_url u;
    struct err e;
    char *url;

    assert_int_equal(tls_gencert(cert, key, names, 2, &e), 0);
    assert_int_equal(tls_cert_file_fingerprint(cert, fp, &e), 0);
    memset(&f, 0, sizeof f);
    assert_int_equal(tls_server_new(&f.srv, cert, key, &e), 0);
    buf_init(&f.got_plain, 1 << 16);
    buf_init(&f.got_tls, 1 << 16);
    f.plain = injected ? "* OK ready\r\n"
                         "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
                         "1 OK done\r\n"
                         "2 OK begin TLS now\r\n"
                         "* CAPABILITY IMAP4rev1 INJECTED\r\n"
                         "3 OK injected\r\n"
                       : "* OK ready\r\n"
                         "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
                         "1 OK done\r\n"
                         "2 OK begin TLS now\r\n";
    f.secure = "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n"
               "3 OK done\r\n"
               "4 OK authenticated\r\n"
               "* CAPABILITY IMAP4rev1 UIDPLUS\r\n"
               "5 OK done\r\n"
               "* BYE logging out\r\n"
               "6 OK logout\r\n";
    f.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f.lfd, 1), 0);
    assert_int_equal(getsockname(f.lfd, (struct sockaddr *)&a, &alen), 0);
    f.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f.tid, NULL, tls_fake_main, &f), 0);

    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.tls_fingerprint = fp;
    s.timeout_ms = 5000;
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", f.port);
    assert_int_equal(imap_url_parse(url, &u, NULL), 0);
    if (injected) {
        /* Refused before the handshake: nothing secret ever leaves. */
        assert_int_equal(imap_connect(&u, &s, &c, &e), -1);
        assert_int_equal(e.code, ERR_TLS);
        assert_null(c);
    } else {
        /* Capabilities from before TLS (LOGINDISABLED) are forgotten; the
         * ones asked for over TLS decide the login. */
        if (imap_connect(&u, &s, &c, &e) != 0)
            fail_msg("connect: %s", e.text);
        assert_true(imap_has_cap(c, "UIDPLUS"));
        assert_false(imap_has_cap(c, "INJECTED"));
        imap_close(c);
    }
    pthread_join(f.tid, NULL);
    close(f.lfd);
    assert_false(contains(&f.got_plain, "secret"));
    assert_false(contains(&f.got_plain, "AUTHENTICATE"));
    assert_false(contains(&f.got_plain, "LOGIN "));
    if (!injected) {
        assert_true(f.handshake_ok);
        assert_true(contains(&f.got_tls, "3 CAPABILITY\r\n"));
        assert_true(contains(&f.got_tls, "4 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"));
    } else {
        assert_false(contains(&f.got_tls, "AUTHENTICATE"));
    }
    buf_free(&f.got_plain);
    buf_free(&f.got_tls);
    tls_server_free(f.srv);
    imap_url_free(&u);
    free(url);
    free(cert);
    free(key);
    tu_rm_rf(dir);
    free(dir);
}

static void test_starttls_injection_refused(void **state)
{
    (void)state;
    starttls_case(true);
}

static void test_starttls_caps_after_tls(void **state)
{
    (void)state;
    starttls_case(false);
}

/* A server that says BYE and hangs up in the middle of a command. */
static void test_bye_mid_session(void **state)
{
    struct imap_settings s;
    struct buf got;
    struct err e;
    (void)state;

    memset(&s, 0, sizeof s);
    s.allow_plain = true;
    assert_int_equal(play(LOGGED_IN "* BYE shutting down\r\n", &s, "imap", "NOOP", &e, &got),
                     -1);
    assert_true(e.code == ERR_NET || e.code == ERR_PROTO);
    buf_free(&got);
    /* A BYE where the tagged reply should be, with data after it: an
     * error or not, but never a crash. */
    if (play(LOGGED_IN "* BYE x\r\n4 OK\r\n", &s, "imap", "NOOP", &e, &got) != 0)
        assert_true(e.code == ERR_NET || e.code == ERR_PROTO || e.code == ERR_PARSE);
    buf_free(&got);
    /* A tagged reply with another tag. */
    assert_int_equal(play(LOGGED_IN "99 OK noop\r\n", &s, "imap", "NOOP", &e, &got), -1);
    buf_free(&got);
}

/* ---- the backend against a scripted server -------------------------------- */

#define SELECTED                                                      \
    "* OK ready\r\n"                                                  \
    "* CAPABILITY IMAP4rev1\r\n"                                      \
    "1 OK done\r\n"                                                   \
    "2 OK logged in\r\n"                                              \
    "* CAPABILITY IMAP4rev1 UIDPLUS\r\n"                              \
    "3 OK done\r\n"                                                   \
    "* 3 EXISTS\r\n"                                                  \
    "* OK [UIDVALIDITY 7] ok\r\n"                                     \
    "4 OK [READ-WRITE] selected\r\n"                                  \
    "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n"                           \
    "* 2 FETCH (UID 11 FLAGS (\\Flagged $Forwarded \\Recent))\r\n"    \
    "* 3 FETCH (UID 12 FLAGS ())\r\n"                                 \
    "5 OK fetched\r\n"

#define HDR10 "Subject: first\r\nFrom: A <a@example.org>\r\n\r\n"
#define HDR11 "Subject: =?UTF-8?Q?s=C3=A9cond?=\r\nFrom: b@example.org\r\n\r\n"

/* Open and load through mailbox_open, then close; returns the load's
 * result.  timeout_ms bounds each read. */
static int load_script(const char *script, int timeout_ms, struct err *e, struct buf *got)
{
    struct mailbox_open_opts o = {MAILBOX_NO_HCACHE, NULL};
    struct imap_settings s;
    struct server srv;
    struct mailbox *mb = NULL;
    char *url;
    int rc;

    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.allow_plain = true;
    s.timeout_ms = timeout_ms;
    imap_settings_set(&s);
    server_start(&srv, script, strlen(script));
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", srv.port);
    rc = mailbox_open_opts(url, &o, &mb, e);
    if (rc == 0)
        rc = mailbox_load(mb, NULL, NULL, e);
    mailbox_close(mb);
    server_join(&srv);
    *got = srv.got;
    imap_settings_set(NULL);
    free(url);
    return rc;
}

static void test_backend_load(void **state)
{
    struct imap_settings s;
    struct server srv;
    struct mailbox_open_opts o = {MAILBOX_NO_HCACHE, NULL};
    struct mailbox *mb = NULL;
    struct err e;
    char *url, *script;
    (void)state;

    script = xasprintf(SELECTED
                       "* 1 FETCH (UID 10 RFC822.SIZE 120 INTERNALDATE "
                       "\"02-Nov-2026 10:00:00 +0100\" "
                       "BODY[HEADER.FIELDS (SUBJECT FROM)] {%zu}\r\n%s)\r\n"
                       "* 2 FETCH (UID 11 RFC822.SIZE 2000 BODY[HEADER.FIELDS (SUBJECT FROM)] "
                       "{%zu}\r\n%s)\r\n"
                       "* 9 FETCH (UID 99 RFC822.SIZE 1 BODY[HEADER.FIELDS (SUBJECT)] {5}\r\n"
                       "x\r\n\r\n)\r\n"
                       "6 OK fetched\r\n",
                       strlen(HDR10), HDR10, strlen(HDR11), HDR11);
    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.allow_plain = true;
    s.timeout_ms = 5000;
    imap_settings_set(&s);
    server_start(&srv, script, strlen(script));
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", srv.port);
    if (mailbox_open_opts(url, &o, &mb, &e) != 0 || mailbox_load(mb, NULL, NULL, &e) != 0)
        fail_msg("open/load: %s", e.text);
    assert_string_equal(mb->name, "INBOX");
    /* UID 12 got no header: dropped; UID 99 was not asked for: ignored. */
    assert_int_equal(store_count(&mb->store), 2);
    {
        const struct store_msg *m0 = store_get(&mb->store, 0), *m1 = store_get(&mb->store, 1);

        assert_string_equal(store_str(&mb->store, m0->name), "10");
        assert_string_equal(store_str(&mb->store, m0->subject), "first");
        assert_string_equal(store_str(&mb->store, m0->from_addr), "a@example.org");
        assert_int_equal(m0->size, 120);
        assert_int_equal(m0->received, 1793610000);   /* 09:00 UTC */
        assert_int_equal(m0->flags, MSG_SEEN);
        assert_string_equal(store_str(&mb->store, m1->subject), "s\xc3\xa9" "cond");
        assert_int_equal(m1->flags, MSG_FLAGGED | MSG_PASSED | MSG_NEW);
        assert_int_equal(m1->size, 2000);
    }
    assert_int_equal(mb->stats.cache_misses, 2);
    mailbox_close(mb);
    server_join(&srv);
    assert_true(contains(&srv.got, "4 SELECT INBOX\r\n"));
    assert_true(contains(&srv.got, "5 UID FETCH 1:* (UID FLAGS)\r\n"));
    assert_true(contains(&srv.got, "6 UID FETCH 10:12 (UID RFC822.SIZE INTERNALDATE "
                                   "BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT"));
    buf_free(&srv.got);
    imap_settings_set(NULL);
    free(url);
    free(script);
}

/* Hostile or broken replies during a load: an error for the load, never
 * a crash, and the mailbox can still be closed. */
static void test_backend_hostile(void **state)
{
    static const char *const tails[] = {
        /* a header literal far over the cap */
        "* 1 FETCH (UID 10 BODY[HEADER.FIELDS (SUBJECT)] {99999999999999}\r\n",
        /* a FETCH that does not parse */
        "* 1 FETCH (UID abc FLAGS (\\Seen)\r\n6 OK\r\n",
        /* the connection ends in the middle of a literal */
        "* 1 FETCH (UID 10 BODY[HEADER.FIELDS (SUBJECT)] {400}\r\nSubject: cut",
        /* NO to the header fetch */
        "6 NO [SERVERBUG] internal error\r\n",
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(tails); i++) {
        char *script = xasprintf(SELECTED "%s", tails[i]);
        struct buf got;
        struct err e;

        if (load_script(script, 500, &e, &got) == 0)
            fail_msg("case %zu: loaded", i);
        assert_true(e.code == ERR_LIMIT || e.code == ERR_PARSE || e.code == ERR_NET ||
                    e.code == ERR_PROTO);
        buf_free(&got);
        free(script);
    }
}

/* ---- dropped connections, polling, reconnecting ------------------------------ */

/* Connect as alice to a server playing script (which it sends at once;
 * it hangs up after a final BYE, else stays silent); the
 * connection is handed back. */
static struct imap_conn *connect_to(struct server *srv, const char *script)
{
    struct imap_settings s;
    struct imap_conn *c = NULL;
    struct imap_url u;
    struct err e;
    char *url;

    server_start(srv, script, strlen(script));
    memset(&s, 0, sizeof s);
    s.pass = "secret";
    s.allow_plain = true;
    s.timeout_ms = 2000;
    url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", srv->port);
    assert_int_equal(imap_url_parse(url, &u, NULL), 0);
    if (imap_connect(&u, &s, &c, &e) != 0)
        fail_msg("connect: %s", e.text);
    imap_url_free(&u);
    free(url);
    return c;
}

/* Which failures count as a dropped connection (worth connecting again)
 * and which do not (a reply that does not parse; limits: test_limits). */
static void test_dropped_or_broken(void **state)
{
    static const struct {
        const char *tail;     /* after the login */
        bool dropped;
        enum err_code code;
    } cases[] = {
        {"", true, ERR_NET},                                   /* no answer: the read times out */
        {"* BYE shutting down\r\n", true, ERR_NET},            /* BYE, then the server hangs up */
        {"4 GARBAGE (((\r\n", false, ERR_PARSE},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *script = xasprintf(LOGGED_IN "%s", cases[i].tail);
        struct server srv;
        struct imap_conn *c;
        struct err e;
        int rc;

        c = connect_to(&srv, script);
        rc = imap_simple(c, "NOOP", &e);
        assert_int_equal(rc, -1);
        if (cases[i].code == ERR_NET)
            assert_true(e.code == ERR_NET || e.code == ERR_PROTO);
        else
            assert_true(e.code == ERR_PARSE || e.code == ERR_PROTO);
        if (imap_dropped(c) != cases[i].dropped)
            fail_msg("case %zu: dropped %d", i, imap_dropped(c));
        assert_false(imap_usable(c));
        assert_int_equal(imap_poll(c, 0), -1);
        imap_close(c);
        server_join(&srv);
        buf_free(&srv.got);
        free(script);
    }
}

/* imap_poll: 0 while the server is quiet, 1 as soon as it has sent
 * something (an IDLE notification), without reading it. */
static void test_poll(void **state)
{
    struct server srv;
    struct imap_conn *c;
    struct err e;
    struct timespec t0, t1;
    (void)state;

    c = connect_to(&srv, LOGGED_IN "4 OK noop\r\n* 5 EXISTS\r\n");
    assert_int_equal(imap_simple(c, "NOOP", &e), 0);
    /* "* 5 EXISTS" arrived with the NOOP's reply: already buffered. */
    assert_int_equal(imap_poll(c, 0), 1);
    imap_close(c);
    server_join(&srv);
    buf_free(&srv.got);

    c = connect_to(&srv, LOGGED_IN);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(imap_poll(c, 100), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 90);
    assert_true(imap_usable(c));
    imap_close(c);
    server_join(&srv);
    buf_free(&srv.got);
}

/* A server of two connections: the first plays script1 and hangs up when
 * the client has sent hangup_on; the second plays script2. */
struct server2 {
    int lfd;
    unsigned port;
    const char *script[2];
    const char *hangup_on;
    struct buf got[2];
    pthread_t tid;
};

static void *server2_main(void *arg)
{
    struct server2 *s = arg;

    for (int k = 0; k < 2; k++) {
        struct pollfd pfd = {s->lfd, POLLIN, 0};
        size_t len = strlen(s->script[k]);
        int fd;

        if (poll(&pfd, 1, 10000) != 1)
            return NULL;
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        if (send(fd, s->script[k], len, MSG_NOSIGNAL) != (ssize_t)len) {
            close(fd);
            return NULL;
        }
        for (;;) {
            char b[4096];
            struct pollfd q = {fd, POLLIN, 0};
            ssize_t r;

            if (poll(&q, 1, 10000) != 1)
                break;
            r = read(fd, b, sizeof b);
            if (r <= 0 || buf_append(&s->got[k], b, (size_t)r) != 0)
                break;
            if (k == 0 && contains(&s->got[0], s->hangup_on))
                break;   /* the connection dies: the command is never answered */
            if (k == 1)
                answer_logout(fd, &s->got[1]);
        }
        close(fd);
    }
    return NULL;
}

#define SELECTED_AGAIN                                                \
    "* OK ready\r\n"                                                  \
    "* CAPABILITY IMAP4rev1\r\n"                                      \
    "1 OK done\r\n"                                                   \
    "2 OK logged in\r\n"                                              \
    "* CAPABILITY IMAP4rev1 UIDPLUS\r\n"                              \
    "3 OK done\r\n"

/* The connection dies while a flag change is on its way: the backend
 * connects again, SELECTs, resynchronises by UID (the store keeps its
 * records; a message another client added appears, one it expunged goes)
 * and sends the pending change again; a new UIDVALIDITY reloads. */
static void test_backend_reconnect(void **state)
{
    static const struct {
        const char *uidvalidity;   /* on the second connection */
        const char *refresh;       /* its reply to UID FETCH 1:* (UID FLAGS) */
        int rc;                    /* of set_flags */
        unsigned reloads;
    } cases[] = {
        {"7",
         "* 1 FETCH (UID 10 FLAGS (\\Seen))\r\n"
         "* 2 FETCH (UID 12 FLAGS (\\Answered))\r\n"
         "* 3 FETCH (UID 13 FLAGS ())\r\n"
         "5 OK fetched\r\n"
         "* 3 FETCH (UID 13 RFC822.SIZE 50 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
         "Subject: third\r\n\r\n)\r\n"
         "6 OK fetched\r\n"
         "7 OK stored\r\n",
         0, 0},
        {"8",
         "* 1 FETCH (UID 1 FLAGS ())\r\n"
         "5 OK fetched\r\n"
         "* 1 FETCH (UID 1 RFC822.SIZE 50 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
         "Subject: again\r\n\r\n)\r\n"
         "6 OK fetched\r\n",
         -1, 1},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct mailbox_open_opts o = {MAILBOX_NO_HCACHE, NULL};
        struct imap_settings s;
        struct server2 srv;
        struct sockaddr_in a;
        socklen_t alen = sizeof a;
        struct mailbox *mb = NULL;
        struct imap_stats st;
        struct err e;
        char *url, *script1, *script2;
        uint32_t idx = STORE_NONE;
        int rc;

        script1 = xasprintf(SELECTED
                            "* 1 FETCH (UID 10 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
                            "Subject: first\r\n\r\n)\r\n"
                            "* 2 FETCH (UID 11 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
                            "Subject: secnd\r\n\r\n)\r\n"
                            "* 3 FETCH (UID 12 BODY[HEADER.FIELDS (SUBJECT)] {18}\r\n"
                            "Subject: third\r\n\r\n)\r\n"
                            "6 OK fetched\r\n");
        script2 = xasprintf(SELECTED_AGAIN "* 3 EXISTS\r\n* OK [UIDVALIDITY %s] ok\r\n"
                            "4 OK [READ-WRITE] selected\r\n%s",
                            cases[i].uidvalidity, cases[i].refresh);
        memset(&srv, 0, sizeof srv);
        buf_init(&srv.got[0], 1 << 20);
        buf_init(&srv.got[1], 1 << 20);
        srv.script[0] = script1;
        srv.script[1] = script2;
        srv.hangup_on = "UID STORE";
        srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(srv.lfd, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(srv.lfd, 2), 0);
        assert_int_equal(getsockname(srv.lfd, (struct sockaddr *)&a, &alen), 0);
        srv.port = ntohs(a.sin_port);
        assert_int_equal(pthread_create(&srv.tid, NULL, server2_main, &srv), 0);

        memset(&s, 0, sizeof s);
        s.pass = "secret";
        s.allow_plain = true;
        s.timeout_ms = 3000;
        imap_settings_set(&s);
        url = xasprintf("imap://alice@127.0.0.1:%u/INBOX", srv.port);
        if (mailbox_open_opts(url, &o, &mb, &e) != 0 || mailbox_load(mb, NULL, NULL, &e) != 0)
            fail_msg("open/load: %s", e.text);
        assert_int_equal(store_count(&mb->store), 3);
        for (uint32_t k = 0; k < store_count(&mb->store); k++)
            if (strcmp(store_str(&mb->store, store_get(&mb->store, k)->name), "10") == 0)
                idx = k;
        assert_true(idx != STORE_NONE);
        rc = mb->ops->set_flags(mb, idx, MSG_SEEN | MSG_FLAGGED, &e);
        if (rc != cases[i].rc)
            fail_msg("case %zu: set_flags %d: %s", i, rc, rc != 0 ? e.text : "");
        mbox_imap_stats(mb, &st);
        assert_int_equal(st.reconnects, 1);
        assert_int_equal(st.reloads, cases[i].reloads);
        if (cases[i].reloads == 0) {
            /* Same UIDVALIDITY: 10 kept (with the change), 11 gone, 12
             * kept, 13 new; the change confirmed and nothing pending. */
            unsigned live = 0;

            for (uint32_t k = 0; k < store_count(&mb->store); k++) {
                const struct store_msg *m = store_get(&mb->store, k);
                const char *name = store_str(&mb->store, m->name);

                if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE)) {
                    assert_string_equal(name, "11");
                    continue;
                }
                live++;
                if (strcmp(name, "10") == 0)
                    assert_int_equal(m->flags & (MSG_SEEN | MSG_FLAGGED),
                                     MSG_SEEN | MSG_FLAGGED);
                if (strcmp(name, "12") == 0)
                    assert_int_equal(m->flags, MSG_REPLIED);
            }
            assert_int_equal(live, 3);
            assert_int_equal(st.pending_flags, 0);
        } else {
            assert_int_equal(e.code, ERR_NOTFOUND);
            assert_int_equal(store_count(&mb->store), 1);
            assert_string_equal(store_str(&mb->store, store_get(&mb->store, 0)->subject),
                                "again");
            assert_true(mb->has_warning);
        }
        mailbox_close(mb);
        pthread_join(srv.tid, NULL);
        close(srv.lfd);
        assert_true(contains(&srv.got[0], "UID STORE 10 +FLAGS.SILENT (\\Flagged)"));
        if (cases[i].reloads == 0) {
            assert_true(contains(&srv.got[1], "4 SELECT INBOX\r\n"));
            assert_true(contains(&srv.got[1], "UID STORE 10 +FLAGS.SILENT (\\Flagged)"));
            assert_true(contains(&srv.got[1], "6 UID FETCH 13 "));
        } else {
            assert_false(contains(&srv.got[1], "UID STORE"));
        }
        buf_free(&srv.got[0]);
        buf_free(&srv.got[1]);
        imap_settings_set(NULL);
        free(url);
        free(script1);
        free(script2);
    }
}

static void test_settings(void **state)
{
    struct imap_settings s;
    char user[] = "carol";
    (void)state;

    memset(&s, 0, sizeof s);
    s.user = user;
    s.pass = "pw";
    s.allow_plain = true;
    imap_settings_set(&s);
    user[0] = 'X';   /* copied, not borrowed */
    assert_string_equal(imap_settings_get()->user, "carol");
    assert_string_equal(imap_settings_get()->pass, "pw");
    assert_true(imap_settings_get()->allow_plain);
    assert_null(imap_settings_get()->pass_cmd);
    assert_null(imap_settings_get()->oauth_cmd);
    imap_settings_set(NULL);
    assert_null(imap_settings_get()->user);
    assert_false(imap_settings_get()->allow_plain);
}

/* The configuration's options become the settings mailbox_open uses. */
static void test_settings_from_config(void **state)
{
    struct config *cfg = config_new();
    const struct imap_settings *s;
    (void)state;

    s = imap_settings_get();
    assert_int_equal(config_set(cfg, "imap_user", "dave", NULL), 0);
    assert_int_equal(config_set(cfg, "imap_pass_cmd", "pass show mail", NULL), 0);
    assert_int_equal(config_set(cfg, "imap_oauth_cmd", "oauth2 token", NULL), 0);
    assert_int_equal(config_set(cfg, "tls_fingerprint", "AB:CD", NULL), 0);
    assert_int_equal(config_set(cfg, "tls_ca_file", "/etc/ca.pem", NULL), 0);
    assert_int_equal(config_set(cfg, "connect_timeout", "7", NULL), 0);
    imap_settings_from_config(cfg);
    assert_string_equal(s->user, "dave");
    assert_null(s->pass);
    assert_string_equal(s->pass_cmd, "pass show mail");
    assert_string_equal(s->oauth_cmd, "oauth2 token");
    assert_string_equal(s->tls_fingerprint, "AB:CD");
    assert_string_equal(s->tls_ca_file, "/etc/ca.pem");
    assert_false(s->allow_plain);   /* ssl_force_tls defaults to yes */
    assert_int_equal(s->timeout_ms, 7000);
    assert_int_equal(config_set(cfg, "ssl_force_tls", "no", NULL), 0);
    imap_settings_from_config(cfg);
    assert_true(s->allow_plain);
    config_free(cfg);
    imap_settings_set(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_url_account),
        cmocka_unit_test(test_greeting_rule),
        cmocka_unit_test(test_refusals_before_anything_is_sent),
        cmocka_unit_test(test_starttls_required),
        cmocka_unit_test(test_login_methods),
        cmocka_unit_test(test_password_sources),
        cmocka_unit_test(test_oauth),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_command_refused),
        cmocka_unit_test(test_starttls_injection_refused),
        cmocka_unit_test(test_starttls_caps_after_tls),
        cmocka_unit_test(test_bye_mid_session),
        cmocka_unit_test(test_backend_load),
        cmocka_unit_test(test_backend_hostile),
        cmocka_unit_test(test_dropped_or_broken),
        cmocka_unit_test(test_poll),
        cmocka_unit_test(test_backend_reconnect),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_settings_from_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
