/*
 * Tests for mua/pop3: the line parsers and the dot-unstuffing decoder on
 * their own, then whole sessions against scripted servers.  A script is
 * written into one end of a socketpair before the client runs on the other
 * end (the socket buffer holds it), and what the client sent is read back
 * from the script's end afterwards: hostile greetings, missing STLS, long
 * lines, NUL bytes, bad and duplicate UIDLs, multi-line replies cut before
 * their dot, and messages longer than LIST said.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "err.h"
#include "pop3.h"
#include "testutil.h"
#include "tls.h"
#include "tls_stream.h"
#include "xalloc.h"

/* ---- parsers ------------------------------------------------------------- */

static void test_list_lines(void **state)
{
    static const struct {
        const char *line;
        int ok;
        unsigned num;
        uint64_t size;
    } cases[] = {
        {"1 120", 1, 1, 120},
        {"42 0", 1, 42, 0},
        {"7 1024 extra words", 1, 7, 1024},
        {"3  99", 1, 3, 99},
        {"0 10", 0, 0, 0},
        {"-1 10", 0, 0, 0},
        {"1", 0, 0, 0},
        {"1 ", 0, 0, 0},
        {"1 x", 0, 0, 0},
        {"x 1", 0, 0, 0},
        {"1 12x", 0, 0, 0},
        {"99999999999999999999 1", 0, 0, 0},
        {"1 99999999999999999999999", 0, 0, 0},
        {"", 0, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct err e;
        unsigned num = 0;
        uint64_t size = 0;
        int rc = pop3_parse_list_line(cases[i].line, strlen(cases[i].line), &num, &size, &e);

        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_int_equal(num, cases[i].num);
            assert_int_equal(size, cases[i].size);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(e.code, ERR_PROTO);
        }
    }
}

static void test_uidl_lines(void **state)
{
    char seventy[80], seventy_one[80];
    struct {
        const char *line;
        int ok;
        unsigned num;
        const char *uidl;
    } cases[] = {
        {"1 abc", 1, 1, "abc"},
        {"12 00000001000000aa", 1, 12, "00000001000000aa"},
        {"2 !~", 1, 2, "!~"},
        {"3 trailing ", 1, 3, "trailing"},
        {NULL, 1, 4, NULL},     /* 70 characters */
        {NULL, 0, 0, NULL},     /* 71 characters */
        {"1 has space", 0, 0, NULL},
        {"1 tab\there", 0, 0, NULL},
        {"1 del\x7f", 0, 0, NULL},
        {"1 \xc3\xa9", 0, 0, NULL},
        {"1 ", 0, 0, NULL},
        {"0 abc", 0, 0, NULL},
        {"abc", 0, 0, NULL},
    };
    (void)state;
    memset(seventy, 'u', 70);
    seventy[70] = '\0';
    memset(seventy_one, 'v', 71);
    seventy_one[71] = '\0';
    char *l70 = xasprintf("4 %s", seventy), *l71 = xasprintf("5 %s", seventy_one);
    cases[4].line = l70;
    cases[4].uidl = seventy;
    cases[5].line = l71;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct err e;
        char uidl[POP3_UIDL_MAX + 1];
        unsigned num = 0;
        int rc = pop3_parse_uidl_line(cases[i].line, strlen(cases[i].line), &num, uidl, &e);

        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_int_equal(num, cases[i].num);
            assert_string_equal(uidl, cases[i].uidl);
        } else {
            assert_int_equal(rc, -1);
        }
    }
    /* a NUL inside the line */
    {
        struct err e;
        char uidl[POP3_UIDL_MAX + 1];
        unsigned num;

        assert_int_equal(pop3_parse_uidl_line("1 a\0b", 5, &num, uidl, &e), -1);
    }
    free(l70);
    free(l71);
}

/* Decode in pieces of every size: the result must not depend on where the
 * input is cut. */
static void test_dot_decoder(void **state)
{
    static const struct {
        const char *in;
        const char *out;
        const char *rest;   /* what follows the terminator */
    } cases[] = {
        {"a\r\nb\r\n.\r\n", "a\nb\n", ""},
        {"..\r\n...x\r\n.y\r\n.\r\n+OK next", ".\n..x\ny\n", "+OK next"},
        {"bare\rcr\r\n.\r\n", "bare\rcr\n", ""},
        {"lf only\n.\n", "lf only\n", ""},
        {".\r\n", "", ""},
        {"\r\n\r\n.\r\n", "\n\n", ""},
        {"x\r\n.\rz\r\n.\r\n", "x\n\rz\n", ""},
        {"end\r\n.\r\n.\r\n", "end\n", ".\r\n"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].in);

        for (size_t chunk = 1; chunk <= len; chunk++) {
            struct pop3_dot d;
            struct buf out = BUF_INIT;
            char *ob = xmalloc(len + 2);
            size_t pos = 0;
            bool done = false;

            pop3_dot_init(&d);
            while (!done && pos < len) {
                size_t n = len - pos < chunk ? len - pos : chunk, olen;
                size_t used = pop3_dot_feed(&d, cases[i].in + pos, n, ob, &olen, &done);

                assert_true(used <= n);
                assert_int_equal(buf_append(&out, ob, olen), 0);
                pos += used;
            }
            assert_true(done);
            assert_string_equal(buf_cstr(&out), cases[i].out);
            assert_string_equal(cases[i].in + pos, cases[i].rest);
            buf_free(&out);
            free(ob);
        }
    }
}

/* ---- scripted sessions --------------------------------------------------- */

struct script {
    int peer;               /* the server's end */
    struct tls_conn *conn;  /* the client's end, until the session owns it */
};

static void script_start(struct script *s, const char *data, size_t len)
{
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    {
        int big = 1 << 20;

        (void)setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        (void)setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    }
    while (len > 0) {
        ssize_t w = write(sv[1], data, len);

        assert_true(w > 0);
        data += w;
        len -= (size_t)w;
    }
    s->peer = sv[1];
    s->conn = tls_conn_from_fd(sv[0], 2000);
}

/* End the script: the client sees end of stream after what was written. */
static void script_eof(struct script *s)
{
    assert_int_equal(shutdown(s->peer, SHUT_WR), 0);
}

/* Everything the client sent (call after the session was closed). */
static char *script_sent(struct script *s)
{
    struct buf b = BUF_INIT;

    assert_true(buf_read_all(&b, s->peer) == 0);
    close(s->peer);
    char *out = b.len ? xstrndup(b.data, b.len) : xstrdup("");
    buf_free(&b);
    return out;
}

static const struct pop3_opts plain_opts = {"localhost", 110, POP3_PLAIN, NULL, NULL, 2000};

static void test_bad_greeting(void **state)
{
    static const char *const greetings[] = {
        "-ERR go away\r\n",
        "* OK imap\r\n",
        "+OKAY\r\n",
        "",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(greetings) / sizeof(greetings[0]); i++) {
        struct script s;
        struct pop3 *p = NULL;
        struct err e;
        char *sent;

        script_start(&s, greetings[i], strlen(greetings[i]));
        script_eof(&s);
        assert_int_equal(pop3_start(&p, s.conn, NULL, &plain_opts, &e), -1);
        assert_null(p);
        assert_int_equal(e.scope, ERR_SCOPE_ACCOUNT);
        sent = script_sent(&s);
        if (sent[0] != '\0')
            fail_msg("greeting %zu: sent \"%s\"", i, sent);   /* nothing at all was sent */
        free(sent);
    }
}

static void test_stls_required(void **state)
{
    static const char script[] = "+OK hello\r\n+OK\r\nUSER\r\nUIDL\r\nSASL PLAIN\r\n.\r\n";
    struct pop3_opts o = plain_opts;
    struct script s;
    struct pop3 *p = NULL;
    struct err e;
    char *sent;

    (void)state;
    o.security = POP3_STARTTLS;
    script_start(&s, script, sizeof(script) - 1);
    assert_int_equal(pop3_start(&p, s.conn, NULL, &o, &e), -1);
    assert_int_equal(e.code, ERR_TLS);
    assert_non_null(strstr(e.text, "STLS"));
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\n");
    free(sent);

    /* CAPA refused, STLS refused: still no credentials */
    static const char script2[] = "+OK hello\r\n-ERR no capa\r\n-ERR no tls here\r\n";
    script_start(&s, script2, sizeof(script2) - 1);
    assert_int_equal(pop3_start(&p, s.conn, NULL, &o, &e), -1);
    assert_int_equal(e.code, ERR_TLS);
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\nSTLS\r\n");
    free(sent);
}

static void test_hostile_lines(void **state)
{
    struct {
        const char *name;
        char *script;
        size_t len;
        enum err_code code;
    } cases[4];
    struct buf b = BUF_INIT;
    (void)state;

    /* a status line longer than the limit */
    assert_int_equal(buf_puts(&b, "+OK "), 0);
    for (int i = 0; i < 5000; i++)
        assert_int_equal(buf_putc(&b, 'x'), 0);
    assert_int_equal(buf_puts(&b, "\r\n"), 0);
    cases[0].name = "long greeting";
    cases[0].script = xmalloc(b.len);
    memcpy(cases[0].script, b.data, b.len);
    cases[0].len = b.len;
    cases[0].code = ERR_LIMIT;
    buf_free(&b);
    /* a NUL in the greeting */
    cases[1].name = "nul";
    cases[1].script = xmalloc(16);
    memcpy(cases[1].script, "+OK a\0b\r\n", 9);
    cases[1].len = 9;
    cases[1].code = ERR_PROTO;
    /* a CAPA without its final dot, then the end */
    cases[2].name = "capa without dot";
    cases[2].script = xstrdup("+OK hi\r\n+OK\r\nUIDL\r\nTOP\r\n");
    cases[2].len = strlen(cases[2].script);
    cases[2].code = ERR_NET;
    /* no line end at all before the end */
    cases[3].name = "no newline";
    cases[3].script = xstrdup("+OK hi");
    cases[3].len = strlen(cases[3].script);
    cases[3].code = ERR_NET;
    for (size_t i = 0; i < 4; i++) {
        struct script s;
        struct pop3 *p = NULL;
        struct err e;

        script_start(&s, cases[i].script, cases[i].len);
        script_eof(&s);
        assert_int_equal(pop3_start(&p, s.conn, NULL, &plain_opts, &e), -1);
        if (e.code != cases[i].code)
            fail_msg("%s: code %d, want %d (%s)", cases[i].name, e.code, cases[i].code, e.text);
        free(script_sent(&s));
        free(cases[i].script);
    }
}

/* A ready session (greeting and CAPA) followed by more script. */
static struct pop3 *session(struct script *s, const char *capa, const char *more)
{
    char *script = xasprintf("+OK ready\r\n+OK\r\n%s.\r\n%s", capa, more);
    struct pop3 *p = NULL;
    struct err e;

    script_start(s, script, strlen(script));
    script_eof(s);
    free(script);
    if (pop3_start(&p, s->conn, NULL, &plain_opts, &e) < 0)
        fail_msg("start: %s", e.text);
    return p;
}

static void test_auth(void **state)
{
    struct script s;
    struct pop3 *p;
    struct err e;
    char *sent;

    (void)state;
    p = session(&s, "SASL PLAIN LOGIN\r\nUSER\r\n", "+OK welcome\r\n");
    assert_true(pop3_caps(p)->sasl_plain);
    assert_int_equal(pop3_auth(p, "alice", "secret", &e), 0);
    pop3_close(p);
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    free(sent);

    p = session(&s, "USER\r\n", "+OK\r\n-ERR [AUTH] bad \x1b[2Jpassword\r\n");
    assert_int_equal(pop3_auth(p, "alice", "wrong", &e), -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_non_null(strstr(e.text, "login refused"));
    assert_null(strchr(e.text, '\x1b'));   /* sanitized */
    pop3_close(p);
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\nUSER alice\r\nPASS wrong\r\n");
    free(sent);

    p = session(&s, "USER\r\n", "");
    assert_int_equal(pop3_auth(p, "alice", "a\r\nDELE 1", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    pop3_close(p);
    free(script_sent(&s));
}

static void test_list(void **state)
{
    static const struct {
        const char *more;
        int ok;
        bool uidl_ok;
    } cases[] = {
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n", 1, true},
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n-ERR no uidl\r\n", 1, false},
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a\r\n2 a\r\n.\r\n", 0, false},   /* duplicate */
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a\r\n3 b\r\n.\r\n", 0, false},   /* unknown */
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a b\r\n.\r\n", 0, false},       /* bad char */
        {"+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n1 a\r\n.\r\n", 0, false},         /* missing */
        {"+OK\r\n2 10\r\n1 20\r\n.\r\n", 0, false},                            /* order */
        {"+OK\r\n1 10\r\n2 20\r\n", 0, false},                                 /* no dot */
        {"+OK\r\n1 10\r\n1 20\r\n.\r\n", 0, false},                            /* twice */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct script s;
        struct pop3 *p = session(&s, "UIDL\r\n", cases[i].more);
        struct pop3_msg *v = NULL;
        size_t n = 0;
        bool uidl_ok = false;
        struct err e;
        int rc = pop3_list(p, true, &v, &n, &uidl_ok, &e);

        if (cases[i].ok) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, e.text);
            assert_int_equal(n, 2);
            assert_int_equal(v[1].num, 2);
            assert_int_equal(v[1].size, 20);
            assert_int_equal(uidl_ok, cases[i].uidl_ok);
            assert_string_equal(v[1].uidl, uidl_ok ? "b" : "");
        } else if (rc != -1) {
            fail_msg("case %zu accepted", i);
        }
        free(v);
        pop3_close(p);
        free(script_sent(&s));
    }
}

struct collect {
    struct buf got[4];
    struct err errs[4];
    bool ended[4], failed[4];
};

static int c_begin(void *ctx, size_t i, struct err *e)
{
    (void)ctx;
    (void)i;
    (void)e;
    return 0;
}

static int c_data(void *ctx, size_t i, const char *p, size_t n, struct err *e)
{
    struct collect *c = ctx;

    (void)e;
    assert_true(i < 4);
    assert_int_equal(buf_append(&c->got[i], p, n), 0);
    return 0;
}

static int c_end(void *ctx, size_t i, const struct err *me, struct err *e)
{
    struct collect *c = ctx;

    (void)e;
    c->ended[i] = true;
    if (me != NULL) {
        c->failed[i] = true;
        c->errs[i] = *me;
    }
    return 0;
}

static void test_retr(void **state)
{
    struct buf script = BUF_INIT;
    struct collect c;
    struct pop3_sink sink = {c_begin, c_data, c_end, &c};
    unsigned nums[3] = {1, 2, 3};
    uint64_t limits[3] = {100, 1000, 100};
    struct script s;
    struct pop3 *p;
    struct err e;
    char *sent;

    (void)state;
    memset(&c, 0, sizeof(c));
    assert_int_equal(buf_puts(&script, "+OK\r\nSubject: one\r\n\r\n..dot\r\n.\r\n"), 0);
    /* message 2 lies about its size: far longer than its limit */
    assert_int_equal(buf_puts(&script, "+OK\r\n"), 0);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(buf_puts(&script, "0123456789\r\n"), 0);
    assert_int_equal(buf_puts(&script, ".\r\n"), 0);
    assert_int_equal(buf_puts(&script, "+OK\r\nthree\r\n.\r\n"), 0);
    p = session(&s, "PIPELINING\r\n", buf_cstr(&script));
    assert_true(pop3_caps(p)->pipelining);
    assert_int_equal(pop3_retr(p, nums, limits, 3, &sink, &e), 0);
    assert_true(c.ended[0] && c.ended[1] && c.ended[2]);
    assert_false(c.failed[0]);
    assert_string_equal(buf_cstr(&c.got[0]), "Subject: one\n\n.dot\n");
    assert_true(c.failed[1]);
    assert_int_equal(c.errs[1].code, ERR_LIMIT);
    assert_true(c.got[1].len <= 1000);
    /* the session stayed in step: message 3 is whole */
    assert_false(c.failed[2]);
    assert_string_equal(buf_cstr(&c.got[2]), "three\n");
    pop3_close(p);
    sent = script_sent(&s);
    /* pipelined: all three RETR before any reply was read */
    assert_string_equal(sent, "CAPA\r\nRETR 1\r\nRETR 2\r\nRETR 3\r\n");
    free(sent);
    for (int i = 0; i < 4; i++)
        buf_free(&c.got[i]);
    buf_free(&script);

    /* a message cut before its dot: the session fails */
    memset(&c, 0, sizeof(c));
    p = session(&s, "", "+OK\r\nhalf a message\r\n");
    assert_int_equal(pop3_retr(p, nums, limits, 1, &sink, &e), -1);
    assert_int_equal(e.code, ERR_NET);
    assert_false(c.ended[0]);
    pop3_close(p);
    free(script_sent(&s));
    buf_free(&c.got[0]);

    /* -ERR for one message goes to its end(), the others go on */
    memset(&c, 0, sizeof(c));
    p = session(&s, "", "-ERR gone\r\n+OK\r\nok\r\n.\r\n");
    assert_int_equal(pop3_retr(p, nums, limits, 2, &sink, &e), 0);
    assert_true(c.failed[0]);
    assert_false(c.failed[1]);
    assert_string_equal(buf_cstr(&c.got[1]), "ok\n");
    pop3_close(p);
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\nRETR 1\r\nRETR 2\r\n");   /* one at a time */
    free(sent);
    for (int i = 0; i < 4; i++)
        buf_free(&c.got[i]);
}

static void test_top_dele_quit(void **state)
{
    struct script s;
    struct pop3 *p;
    struct buf hdr;
    struct err e;
    unsigned nums[2] = {1, 2};
    bool ok[2];
    char *sent;

    (void)state;
    p = session(&s, "TOP\r\nPIPELINING\r\n",
                "+OK\r\nFrom: a\r\n\r\n.\r\n"
                "+OK\r\n" "Subject: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n.\r\n"
                "+OK\r\n-ERR no\r\n+OK bye\r\n");
    buf_init(&hdr, 40);
    assert_int_equal(pop3_top(p, 1, 0, &hdr, &e), 0);
    assert_string_equal(buf_cstr(&hdr), "From: a\n\n");
    buf_reset(&hdr);
    assert_int_equal(pop3_top(p, 2, 0, &hdr, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(pop3_dele(p, nums, 2, ok, &e), 0);
    assert_true(ok[0]);
    assert_false(ok[1]);
    assert_int_equal(pop3_quit(p, &e), 0);
    pop3_close(p);
    buf_free(&hdr);
    sent = script_sent(&s);
    assert_string_equal(sent, "CAPA\r\nTOP 1 0\r\nTOP 2 0\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n");
    free(sent);
}

/* STLS: the server sends its go-ahead and, in the same segment, a forged
 * CAPA reply; the client must read the CAPA that comes over TLS. */
struct tls_fake {
    int fd;
    struct tls_server *srv;
    bool ok;
    char why[600];
};

static int expect_line(struct tls_conn *c, struct buf *line, const char *want, struct err *e)
{
    if (tls_conn_read_line(c, line, 200, e) < 0)
        return -1;
    if (strcmp(buf_cstr(line), want) != 0)
        return err_set(e, ERR_PROTO, "got %s", buf_cstr(line));
    return 0;
}

static void *tls_fake_main(void *arg)
{
    static const char go[] = "+OK go ahead\r\n+OK\r\nUIDL\r\nPIPELINING\r\n.\r\n";
    struct tls_fake *f = arg;
    struct tls_conn *c = tls_conn_from_fd(f->fd, 5000);
    struct buf line = BUF_INIT;
    struct err e;

    err_clear(&e);
    if (tls_conn_write(c, "+OK hi\r\n", 8, &e) < 0 ||
        expect_line(c, &line, "CAPA\r\n", &e) < 0 ||
        tls_conn_write(c, "+OK\r\nSTLS\r\n.\r\n", 14, &e) < 0 ||
        expect_line(c, &line, "STLS\r\n", &e) < 0 ||
        tls_conn_write(c, go, sizeof(go) - 1, &e) < 0 ||
        tls_conn_accept_tls(c, f->srv, &e) < 0 ||
        expect_line(c, &line, "CAPA\r\n", &e) < 0 ||
        tls_conn_write(c, "+OK\r\nTOP\r\n.\r\n", 13, &e) < 0 ||
        expect_line(c, &line, "QUIT\r\n", &e) < 0 ||
        tls_conn_write(c, "+OK bye\r\n", 9, &e) < 0)
        snprintf(f->why, sizeof(f->why), "fake server: %s", e.text);
    else
        f->ok = true;
    buf_free(&line);
    tls_conn_close(c);
    return NULL;
}

static void test_stls_discards_plaintext(void **state)
{
    char *dir = tu_tmpdir("pop3-tls");
    char *cert = xasprintf("%s/c.crt", dir), *key = xasprintf("%s/c.key", dir);
    const char *const names[] = {"localhost", NULL};
    char fp[TLS_FINGERPRINT_SIZE];
    struct tls_client_opts topts;
    struct pop3_opts o = {"localhost", 110, POP3_STARTTLS, NULL, NULL, 5000};
    struct tls_fake f;
    struct tls_client *cl;
    struct pop3 *p = NULL;
    pthread_t th;
    struct err e;
    int sv[2];

    (void)state;
    memset(&f, 0, sizeof(f));
    memset(&topts, 0, sizeof(topts));
    topts.pin = fp;
    assert_int_equal(tls_gencert(cert, key, names, 2, &e), 0);
    assert_int_equal(tls_cert_file_fingerprint(cert, fp, &e), 0);
    assert_int_equal(tls_server_new(&f.srv, cert, key, &e), 0);
    assert_int_equal(tls_client_new(&cl, &topts, &e), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f.fd = sv[1];
    assert_int_equal(pthread_create(&th, NULL, tls_fake_main, &f), 0);
    if (pop3_start(&p, tls_conn_from_fd(sv[0], 5000), cl, &o, &e) < 0)
        fail_msg("start: %s", e.text);
    assert_true(pop3_is_tls(p));
    /* the forged CAPA said UIDL and PIPELINING; the real one says TOP */
    assert_true(pop3_caps(p)->top);
    assert_false(pop3_caps(p)->uidl);
    assert_false(pop3_caps(p)->pipelining);
    assert_int_equal(pop3_quit(p, &e), 0);
    pop3_close(p);
    assert_int_equal(pthread_join(th, NULL), 0);
    if (!f.ok)
        fail_msg("%s", f.why);
    tls_client_free(cl);
    tls_server_free(f.srv);
    tu_rm_rf(dir);
    free(dir);
    free(cert);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_lines),
        cmocka_unit_test(test_uidl_lines),
        cmocka_unit_test(test_dot_decoder),
        cmocka_unit_test(test_bad_greeting),
        cmocka_unit_test(test_stls_required),
        cmocka_unit_test(test_stls_discards_plaintext),
        cmocka_unit_test(test_hostile_lines),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_retr),
        cmocka_unit_test(test_top_dele_quit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
