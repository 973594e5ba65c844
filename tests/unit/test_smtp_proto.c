/*
 * Unit tests for localserver/smtp_proto: transcripts of client bytes in and
 * exact reply lines out, with fake hooks (a table of users and recipient
 * verdicts, a deliver hook that records the envelope and the message).
 *
 * Every transcript is run twice, fed in one piece and byte by byte; both
 * runs must give the same replies, deliveries and final state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "smtp_proto.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Fake hooks */

struct fake {
    struct buf *log;                 /* where deliveries are written down */
    struct smtp_envelope *env;       /* the delivery waiting for an answer */
    struct buf *msg;
    unsigned deliveries;
    unsigned auth_calls;
    char last_authzid[32];           /* "-" for NULL */
};

static enum smtp_rcpt_verdict fake_rcpt(void *ctx, const char *auth_user, const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t lp;

    (void)ctx;
    (void)auth_user;
    if (!at)
        return strcasecmp(addr, "postmaster") == 0 ? SMTP_RCPT_LOCAL : SMTP_RCPT_UNKNOWN;
    if (strcasecmp(at + 1, "example.test") != 0)
        return SMTP_RCPT_REMOTE;
    lp = (size_t)(at - addr);
    if (lp == 6 && strncmp(addr, "nobody", 6) == 0)
        return SMTP_RCPT_UNKNOWN;
    if (lp == 8 && strncmp(addr, "tempfail", 8) == 0)
        return SMTP_RCPT_TEMPFAIL;
    return SMTP_RCPT_LOCAL;
}

static bool fake_may_send_as(void *ctx, const char *auth_user, const char *addr)
{
    char *mine = NULL;
    bool ok;

    (void)ctx;
    if (asprintf(&mine, "%s@example.test", auth_user) < 0)
        abort();
    ok = strcmp(addr, mine) == 0 || *addr == '\0';
    free(mine);
    return ok;
}

static const struct {
    const char *user, *password, *canonical;
} users[] = {
    {"alice", "secret", "alice"},
    {"bob@example.test", "pw", "bob"},
};

static int fake_auth(void *ctx, const char *authzid, const char *authcid, const char *password,
                     char **canonical)
{
    struct fake *f = ctx;

    /* the session, not the hook, refuses a foreign authzid */
    f->auth_calls++;
    snprintf(f->last_authzid, sizeof(f->last_authzid), "%s", authzid ? authzid : "-");
    if (strcmp(authcid, "temp") == 0)
        return -1;
    for (size_t i = 0; i < ARRAY_LEN(users); i++) {
        if (strcmp(authcid, users[i].user) == 0 && strcmp(password, users[i].password) == 0) {
            *canonical = strdup(users[i].canonical);
            return 1;
        }
    }
    return 0;
}

static void fake_deliver(void *ctx, struct smtp_envelope *env, struct buf *msg)
{
    struct fake *f = ctx;

    assert_null(f->env);
    f->env = env;
    f->msg = msg;
    f->deliveries++;
}

static const struct smtp_hooks hooks = {fake_rcpt, fake_may_send_as, fake_auth, fake_deliver};

static void logf_(struct fake *f, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void logf_(struct fake *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    assert_int_equal(buf_vprintf(f->log, fmt, ap), 0);
    va_end(ap);
}

/* One line per delivery: protocol, MAIL and its parameters, each RCPT and
 * its parameters; then the message bytes and "|". */
static void log_delivery(struct fake *f)
{
    static const char *const body[] = {"", " BODY=8BITMIME", " BODY=BINARYMIME"};
    const struct smtp_envelope *env = f->env;

    logf_(f, "%s FROM:<%s>%s", smtp_envelope_protocol(env), env->mail_from, body[env->body]);
    if (env->smtputf8)
        logf_(f, " SMTPUTF8");
    if (env->size_hint)
        logf_(f, " SIZE=%zu", env->size_hint);
    if (env->ret)
        logf_(f, " RET=%s", env->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
    if (env->envid)
        logf_(f, " ENVID=%s", env->envid);
    if (env->auth_user)
        logf_(f, " AUTH=%s", env->auth_user);
    for (size_t i = 0; i < env->n_rcpts; i++) {
        logf_(f, " TO:<%s>", env->rcpts[i].addr);
        if (env->rcpts[i].verdict == SMTP_RCPT_REMOTE)
            logf_(f, "(remote)");
        if (env->rcpts[i].notify)
            logf_(f, " NOTIFY=%u", env->rcpts[i].notify);
        if (env->rcpts[i].orcpt)
            logf_(f, " ORCPT=%s", env->rcpts[i].orcpt);
    }
    logf_(f, "\n");
    assert_int_equal(buf_append(f->log, buf_cstr(f->msg), f->msg->len), 0);
    logf_(f, "|\n");
}

static void fake_done(struct fake *f)
{
    smtp_envelope_free(f->env);
    if (f->msg) {
        buf_free(f->msg);
        free(f->msg);
    }
    f->env = NULL;
    f->msg = NULL;
}

/* ------------------------------------------------------------------ */
/* Transcript runner */

enum {
    F_SUBMISSION = 1 << 0,           /* listener 587 */
    F_SUBMISSIONS = 1 << 1,          /* listener 465, in TLS from the start */
    F_NO_TLS = 1 << 2,               /* STARTTLS not available */
    F_LOOPBACK_AUTH = 1 << 3,        /* loopback peer, AUTH allowed in plain text */
    F_VRFY = 1 << 4,
    F_DELIVER_FAIL = 1 << 5,         /* deliveries answered 451 */
    F_MANY_ERRORS = 1 << 6,          /* max_errors 50 */
    F_EOF = 1 << 7,                  /* smtp_session_eof() at the end */
    F_LOOPBACK_NO_AUTH = 1 << 8,     /* loopback peer, no AUTH in plain text */
};

static void cfg_for(unsigned flags, struct smtp_session_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listener = SMTP_LISTENER_MX;
    if (flags & F_SUBMISSION)
        cfg->listener = SMTP_LISTENER_SUBMISSION;
    if (flags & F_SUBMISSIONS) {
        cfg->listener = SMTP_LISTENER_SUBMISSIONS;
        cfg->tls_active = true;
    }
    cfg->hostname = "mx.example.test";
    cfg->peer_addr = (flags & F_LOOPBACK_AUTH) ? "127.0.0.1" : "192.0.2.7";
    cfg->peer_loopback = (flags & (F_LOOPBACK_AUTH | F_LOOPBACK_NO_AUTH)) != 0;
    cfg->auth_plaintext_loopback = !(flags & F_LOOPBACK_NO_AUTH);
    cfg->tls_available = !(flags & F_NO_TLS) && !(flags & F_SUBMISSIONS);
    cfg->vrfy = (flags & F_VRFY) != 0;
    cfg->max_message_size = 4096;
    cfg->max_line_length = 200;
    cfg->max_recipients = 5;
    cfg->max_errors = (flags & F_MANY_ERRORS) ? 50 : 5;
}

struct result {
    struct buf out;                  /* every reply byte */
    struct buf log;                  /* deliveries and pauses */
    enum smtp_wait state;
};

static void take_output(struct smtp_session *s, struct buf *out)
{
    size_t n;
    const char *p = smtp_session_output(s, &n);

    assert_int_equal(buf_append(out, p, n), 0);
    smtp_session_output_clear(s);
}

/* Act on what the session waits for; false once it is closed. */
static bool serve_wait(struct smtp_session *s, struct fake *f, unsigned flags, struct result *r)
{
    switch (smtp_session_state(s)) {
    case SMTP_WAIT_DELIVERY:
        assert_non_null(f->env);
        assert_true(smtp_session_in_transaction(s));
        log_delivery(f);
        fake_done(f);
        if (flags & F_DELIVER_FAIL)
            smtp_session_delivered(s, 451, "4.3.0", "try again later");
        else
            smtp_session_delivered(s, 250, "2.0.0", "OK queued");
        take_output(s, &r->out);
        return true;
    case SMTP_WAIT_PAUSE:
        assert_int_equal(buf_printf(&r->log, "PAUSE %u\n", smtp_session_pause_ms(s)), 0);
        smtp_session_resume(s);
        take_output(s, &r->out);
        return smtp_session_state(s) != SMTP_CLOSE;
    case SMTP_CLOSE:
        return false;
    case SMTP_WAIT_STARTTLS:
    case SMTP_READY:
    default:
        return true;
    }
}

/* Feed in (then, after a STARTTLS, after_tls) in chunks of `chunk` bytes
 * (0: in one piece).  Bytes after STARTTLS in the same segment are
 * discarded, as the owner must. */
static void run(unsigned flags, const char *in, size_t in_len, const char *after_tls,
                size_t chunk, struct result *r)
{
    struct smtp_session_cfg cfg;
    struct fake f;
    struct smtp_session *s;
    const char *seg[2] = {in, after_tls};
    size_t seg_len[2] = {in_len, after_tls ? strlen(after_tls) : 0};
    bool open = true;

    memset(&f, 0, sizeof(f));
    buf_init(&r->out, 0);
    buf_init(&r->log, 0);
    f.log = &r->log;
    cfg_for(flags, &cfg);
    s = smtp_session_new(&cfg, &hooks, &f);
    take_output(s, &r->out);
    for (int k = 0; k < 2 && open && seg[k]; k++) {
        size_t pos = 0;
        while (pos < seg_len[k] && open) {
            size_t n = chunk ? chunk : seg_len[k] - pos;
            size_t used;
            if (n > seg_len[k] - pos)
                n = seg_len[k] - pos;
            used = smtp_session_feed(s, seg[k] + pos, n);
            take_output(s, &r->out);
            assert_true(used <= n);
            if (smtp_session_state(s) == SMTP_READY)
                assert_int_equal(used, n);
            else if (smtp_session_state(s) != SMTP_CLOSE)
                assert_int_equal(smtp_session_feed(s, "x", 1), 0);
            pos += used;
            if (smtp_session_state(s) == SMTP_WAIT_STARTTLS) {
                assert_int_equal(buf_printf(&r->log, "TLS (%zu dropped)\n",
                                            seg_len[k] - pos), 0);
                smtp_session_tls_started(s);
                take_output(s, &r->out);
                break;
            }
            open = serve_wait(s, &f, flags, r);
        }
    }
    if (open && (flags & F_EOF)) {
        smtp_session_eof(s);
        take_output(s, &r->out);
    }
    r->state = smtp_session_state(s);
    /* a delivery nobody answered would show here */
    assert_int_equal(buf_printf(&r->log, "pending=%d\n", f.env != NULL), 0);
    fake_done(&f);
    smtp_session_free(s);
}

static void result_free(struct result *r)
{
    buf_free(&r->out);
    buf_free(&r->log);
}

/* Run both ways, compare with each other and with the expectation.
 * Returns false (after printing the difference) on a mismatch. */
static bool check_transcript(const char *name, unsigned flags, const char *in, size_t in_len,
                             const char *after_tls, const char *out, const char *log,
                             enum smtp_wait state)
{
    struct result whole, bytes;
    char *want_log;
    bool ok = true;

    if (asprintf(&want_log, "%spending=0\n", log ? log : "") < 0)
        abort();
    run(flags, in, in_len, after_tls, 0, &whole);
    run(flags, in, in_len, after_tls, 1, &bytes);
    if (whole.out.len != strlen(out) || memcmp(buf_cstr(&whole.out), out, whole.out.len) != 0) {
        print_error("%s: replies\n--- got:\n%s--- want:\n%s", name, buf_cstr(&whole.out), out);
        ok = false;
    }
    if (strcmp(buf_cstr(&whole.log), want_log) != 0) {
        print_error("%s: deliveries\n--- got:\n%s--- want:\n%s", name, buf_cstr(&whole.log),
                    want_log);
        ok = false;
    }
    if (whole.state != state) {
        print_error("%s: state %d, want %d\n", name, whole.state, state);
        ok = false;
    }
    /* byte by byte: identical */
    if (bytes.out.len != whole.out.len ||
        memcmp(buf_cstr(&bytes.out), buf_cstr(&whole.out), whole.out.len) != 0 ||
        strcmp(buf_cstr(&bytes.log), buf_cstr(&whole.log)) != 0 || bytes.state != whole.state) {
        print_error("%s: byte by byte differs\n--- got:\n%s%s", name, buf_cstr(&bytes.out),
                    buf_cstr(&bytes.log));
        ok = false;
    }
    result_free(&whole);
    result_free(&bytes);
    free(want_log);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Transcripts */

#define G "220 mx.example.test ESMTP correod\r\n"
#define EH_BASE                                                                             \
    "250-mx.example.test\r\n250-SIZE 4096\r\n250-PIPELINING\r\n250-8BITMIME\r\n"            \
    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n"
#define EHLO_PLAIN EH_BASE "250-DSN\r\n250 STARTTLS\r\n"
#define EHLO_TLS EH_BASE "250-DSN\r\n250 AUTH PLAIN LOGIN\r\n"
#define EHLO_AUTHED EH_BASE "250 DSN\r\n"
#define EHLO_NOTLS EH_BASE "250 DSN\r\n"
#define EHLO_LOOP EH_BASE "250-DSN\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n"
#define E "EHLO client.example\r\n"
#define MF(a) "MAIL FROM:<" a ">\r\n"
#define RT(a) "RCPT TO:<" a ">\r\n"
#define OK_MAIL "250 2.1.0 OK\r\n"
#define OK_RCPT "250 2.1.5 OK\r\n"
#define OK "250 2.0.0 OK\r\n"
#define GO "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 OK queued\r\n"
#define BYE "221 2.0.0 mx.example.test closing connection\r\n"
#define Q "QUIT\r\n"
#define TX(from, to, body) MF(from) RT(to) "DATA\r\n" body "\r\n.\r\n"
#define TX_OUT OK_MAIL OK_RCPT GO QUEUED
#define SMUGGLED "550 5.6.11 Bare CR or LF in message data not allowed\r\n"
#define TOO_BIG "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
#define NEED_MAIL "503 5.5.1 Need MAIL command\r\n"
#define NEED_RCPT "503 5.5.1 Need RCPT command\r\n"
#define BAD_FROM "501 5.1.7 Syntax error in address\r\n"
#define BAD_TO "501 5.1.3 Syntax error in address\r\n"
#define UNSUPPORTED "555 5.5.4 Unsupported parameter\r\n"
#define BAD_PARAMS "501 5.5.4 Syntax error in parameters\r\n"
#define DUP "501 5.5.4 Duplicate parameter\r\n"
#define RELAY "554 5.7.1 Relay access denied\r\n"
#define NOUSER "550 5.1.1 No such user here\r\n"
#define NOT8 "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n"
#define AUTH_OK "235 2.7.0 Authentication successful\r\n"
#define AUTH_BAD "535 5.7.8 Authentication credentials invalid\r\n"
#define NEED_TLS "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
#define TLS_GO "220 2.0.0 Ready to start TLS\r\n"
#define TOO_MANY "421 4.7.0 mx.example.test Too many errors, closing connection\r\n"
#define PLAIN_ALICE "AGFsaWNlAHNlY3JldA=="
#define A44 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A100 A44 A44 "aaaaaaaaaaaa"
#define D(from, tos) "ESMTP FROM:<" from ">" tos "\n"

struct tcase {
    const char *name;
    unsigned flags;
    const char *in;
    size_t in_len;                   /* 0: strlen(in) */
    const char *after_tls;
    const char *out;
    const char *log;                 /* deliveries (and pauses, STARTTLS) */
    enum smtp_wait state;
};

static const struct tcase cases[] = {
    /* basics */
    {"basic", 0, E TX("x@remote.example", "alice@example.test", "Subject: hi\r\n\r\nbody") Q,
     0, NULL, G EHLO_PLAIN TX_OUT BYE,
     D("x@remote.example", " TO:<alice@example.test>") "Subject: hi\r\n\r\nbody\r\n|\n",
     SMTP_CLOSE},
    {"helo", 0, "HELO client\r\n" TX("", "bob@example.test", "x"), 0, NULL,
     G "250 mx.example.test\r\n" TX_OUT, "SMTP FROM:<> TO:<bob@example.test>\nx\r\n|\n",
     SMTP_READY},
    {"case-insensitive verbs and parameters", 0,
     "ehlo x\r\nmail from:<a@b.example> size=10 body=8bitmime\r\n"
     "rcpt to:<alice@example.test> notify=success,Failure\r\ndata\r\nx\r\n.\r\nquit\r\n",
     0, NULL, G EHLO_PLAIN TX_OUT BYE,
     D("a@b.example", " BODY=8BITMIME SIZE=10 TO:<alice@example.test> NOTIFY=6") "x\r\n|\n",
     SMTP_CLOSE},
    {"bare LF ends a command line", 0,
     "EHLO x\nMAIL FROM:<>\nRCPT TO:<alice@example.test>\nDATA\nx\r\n.\r\nQUIT\n", 0, NULL,
     G EHLO_PLAIN TX_OUT BYE, D("", " TO:<alice@example.test>") "x\r\n|\n", SMTP_CLOSE},
    {"lenient space after the colon", 0,
     E "MAIL FROM: <a@b.example>\r\nRCPT TO:  <alice@example.test>\r\n", 0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT, NULL, SMTP_READY},
    {"postmaster without a domain", 0, E TX("", "Postmaster", "x"), 0, NULL,
     G EHLO_PLAIN TX_OUT, D("", " TO:<Postmaster>") "x\r\n|\n", SMTP_READY},
    {"source route ignored", 0,
     E TX("@a.example,@[192.0.2.1]:x@b.example", "@r.example:alice@example.test", "x"), 0,
     NULL, G EHLO_PLAIN TX_OUT, D("x@b.example", " TO:<alice@example.test>") "x\r\n|\n",
     SMTP_READY},
    {"quoted local parts and literals", 0,
     E MF("\"john q. doe\"@[IPv6:2001:db8::1]") RT("\"a\\\"b\\\\c\"@example.test")
     RT("u@[192.0.2.1]") RT("v@[x-tag:abc]") "DATA\r\n.\r\n",
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT RELAY RELAY GO QUEUED,
     D("\"john q. doe\"@[IPv6:2001:db8::1]", " TO:<\"a\\\"b\\\\c\"@example.test>")
     "|\n", SMTP_READY},
    {"bad paths", F_MANY_ERRORS,
     E "MAIL FROM:a@b.example\r\n" "MAIL FROM:<a@b.example\r\n" MF("a@") MF("@b.example")
     MF("a..b@c.example") MF("a@b..example") MF("a@-b.example") MF("a@b-.example")
     MF("a@[300.1.1.1]") MF("a@[IPv6:zz]") MF("a b@c.example") MF("\"a\x01\"@c.example")
     MF("a@b.example>") MF(".a@b.example") "MAIL FROM<a@b>\r\n"
     MF("a@b.example") RT("") RT("alice") "RCPT TO:alice@example.test\r\n" RT("@x.example:")
     "RCPT TO:<alice@example.test>x\r\n" "RCPT TO<alice@example.test>\r\n",
     0, NULL,
     G EHLO_PLAIN BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM
     BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM BAD_FROM
     "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" OK_MAIL BAD_TO BAD_TO BAD_TO BAD_TO BAD_TO
     "501 5.5.4 Syntax: RCPT TO:<address>\r\n",
     NULL, SMTP_READY},
    {"MAIL parameters", F_MANY_ERRORS,
     E "MAIL FROM:<a@b.example> FOO=1\r\n" "MAIL FROM:<a@b.example> SIZE=1 size=2\r\n"
     "MAIL FROM:<a@b.example> SIZE=abc\r\n" "MAIL FROM:<a@b.example> SIZE=5000\r\n"
     "MAIL FROM:<a@b.example> SIZE=99999999999999999999\r\n"
     "MAIL FROM:<a@b.example> BODY=9BIT\r\n" "MAIL FROM:<a@b.example> SMTPUTF8=yes\r\n"
     "MAIL FROM:<a@b.example> ENVID=a+0Ab\r\n" "MAIL FROM:<a@b.example> ENVID=a+2b\r\n"
     "MAIL FROM:<a@b.example> RET=ALL\r\n" "MAIL FROM:<a@b.example> =x\r\n"
     "MAIL FROM:<a@b.example> SIZE=\r\n" "MAIL FROM:<a@b.example>SIZE=1\r\n"
     "MAIL FROM:<a@b.example>  SIZE=4096 RET=hdrs ENVID=q+2Bq+3Dz AUTH=<> BODY=7BIT\r\n"
     RT("alice@example.test") "DATA\r\nx\r\n.\r\n",
     0, NULL,
     G EHLO_PLAIN UNSUPPORTED DUP "501 5.5.4 Bad SIZE parameter\r\n"
     "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
     "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
     "501 5.5.4 Bad BODY parameter\r\n" "501 5.5.4 SMTPUTF8 takes no value\r\n"
     "501 5.5.4 Bad ENVID parameter\r\n" "501 5.5.4 Bad ENVID parameter\r\n"
     "501 5.5.4 Bad RET parameter\r\n" BAD_PARAMS BAD_PARAMS BAD_FROM TX_OUT,
     D("a@b.example", " SIZE=4096 RET=HDRS ENVID=q+q=z TO:<alice@example.test>") "x\r\n|\n",
     SMTP_READY},
    {"BODY=8BITMIME, 8-bit data", 0,
     E "MAIL FROM:<a@b.example> BODY=8BITMIME\r\n" RT("alice@example.test")
     "DATA\r\ncaf\xc3\xa9 \xff\r\n.\r\n",
     0, NULL, G EHLO_PLAIN TX_OUT,
     D("a@b.example", " BODY=8BITMIME TO:<alice@example.test>") "caf\xc3\xa9 \xff\r\n|\n",
     SMTP_READY},
    {"parameters need EHLO", 0,
     "HELO x\r\nMAIL FROM:<a@b.example> SIZE=1\r\n" MF("a@b.example")
     "RCPT TO:<alice@example.test> NOTIFY=NEVER\r\n",
     0, NULL,
     G "250 mx.example.test\r\n555 5.5.4 Parameters need EHLO\r\n" OK_MAIL
     "555 5.5.4 Parameters need EHLO\r\n",
     NULL, SMTP_READY},
    {"RCPT parameters", F_MANY_ERRORS,
     E MF("a@b.example") "RCPT TO:<alice@example.test> NOTIFY=NEVER,SUCCESS\r\n"
     "RCPT TO:<alice@example.test> NOTIFY=\r\n" "RCPT TO:<alice@example.test> NOTIFY=DELAY,DELAY\r\n"
     "RCPT TO:<alice@example.test> NOTIFY=SOMETIMES\r\n" "RCPT TO:<alice@example.test> ORCPT=bogus\r\n"
     "RCPT TO:<alice@example.test> ORCPT=rfc822;a+0Db\r\n" "RCPT TO:<alice@example.test> XFOO\r\n"
     "RCPT TO:<alice@example.test> NOTIFY=NEVER notify=never\r\n"
     "RCPT TO:<alice@example.test> NOTIFY=never ORCPT=rfc822;Alice+40example.test\r\n"
     "RCPT TO:<bob@example.test> notify=delay,failure\r\n" "DATA\r\n.\r\n",
     0, NULL,
     G EHLO_PLAIN OK_MAIL "501 5.5.4 Bad NOTIFY parameter\r\n" BAD_PARAMS
     "501 5.5.4 Bad NOTIFY parameter\r\n" "501 5.5.4 Bad NOTIFY parameter\r\n"
     "501 5.5.4 Bad ORCPT parameter\r\n" "501 5.5.4 Bad ORCPT parameter\r\n" UNSUPPORTED DUP
     OK_RCPT OK_RCPT GO QUEUED,
     D("a@b.example", " TO:<alice@example.test> NOTIFY=1 ORCPT=rfc822;Alice@example.test"
                      " TO:<bob@example.test> NOTIFY=12") "|\n",
     SMTP_READY},
    {"path length limit", 0,
     E "MAIL FROM:<" A100 A100 A44 "@b.example>\r\n" /* 256 octets */
     "RSET\r\nMAIL FROM:<" A100 A100 A44 "a@b.example>\r\n", /* 257 */
     0, NULL, G EHLO_PLAIN OK_MAIL OK "501 5.1.7 Path too long\r\n", NULL, SMTP_READY},
    /* sequence */
    {"command order", F_MANY_ERRORS,
     MF("a@b.example") RT("alice@example.test") "DATA\r\n" E "DATA\r\n" MF("a@b.example")
     "DATA\r\n" MF("c@d.example") RT("alice@example.test") "DATA x\r\n" "RSET x\r\n" "RSET\r\n"
     "DATA\r\n",
     0, NULL,
     G "503 5.5.1 Send EHLO or HELO first\r\n" "503 5.5.1 Need MAIL before RCPT\r\n" NEED_MAIL
     EHLO_PLAIN NEED_MAIL OK_MAIL NEED_RCPT "503 5.5.1 Nested MAIL command\r\n" OK_RCPT
     "501 5.5.4 Syntax: DATA\r\n" "501 5.5.4 Syntax: RSET\r\n" OK NEED_MAIL,
     NULL, SMTP_READY},
    {"no valid recipients", 0,
     E MF("a@b.example") RT("nobody@example.test") RT("x@elsewhere.example") "DATA\r\n",
     0, NULL, G EHLO_PLAIN OK_MAIL NOUSER RELAY "554 5.5.1 No valid recipients\r\n", NULL,
     SMTP_READY},
    {"recipient lookup fails", 0,
     E MF("a@b.example") RT("tempfail@example.test") RT("alice@example.test") "DATA\r\n.\r\n",
     0, NULL,
     G EHLO_PLAIN OK_MAIL "451 4.3.0 Temporary failure looking up the recipient\r\n" OK_RCPT
     GO QUEUED,
     D("a@b.example", " TO:<alice@example.test>") "|\n", SMTP_READY},
    {"too many recipients", 0,
     E MF("a@b.example") RT("u1@example.test") RT("u2@example.test") RT("u3@example.test")
     RT("u4@example.test") RT("u5@example.test") RT("u6@example.test") RT("u1@example.test")
     "DATA\r\n.\r\n",
     0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT OK_RCPT OK_RCPT OK_RCPT OK_RCPT
     "452 4.5.3 Too many recipients\r\n" "452 4.5.3 Too many recipients\r\n" GO QUEUED,
     D("a@b.example", " TO:<u1@example.test> TO:<u2@example.test> TO:<u3@example.test>"
                      " TO:<u4@example.test> TO:<u5@example.test>") "|\n",
     SMTP_READY},
    {"duplicate recipient delivered once", 0,
     E MF("a@b.example") RT("u1@example.test") RT("u1@example.test") "DATA\r\n.\r\n", 0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT OK_RCPT GO QUEUED,
     D("a@b.example", " TO:<u1@example.test>") "|\n", SMTP_READY},
    {"EHLO resets the transaction", 0,
     E MF("a@b.example") RT("alice@example.test") E "DATA\r\n" TX("c@d.example", "bob@example.test", "y"),
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT EHLO_PLAIN NEED_MAIL TX_OUT,
     D("c@d.example", " TO:<bob@example.test>") "y\r\n|\n", SMTP_READY},
    {"RSET ends the transaction", 0,
     E MF("a@b.example") RT("alice@example.test") "RSET\r\nDATA\r\n", 0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT OK NEED_MAIL, NULL, SMTP_READY},
    {"NOOP HELP VRFY EXPN", 0, "NOOP\r\nnoop what\r\nHELP\r\nHELP MAIL\r\nVRFY alice\r\nEXPN list\r\n",
     0, NULL,
     G OK OK
     "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH\r\n"
     "214 2.0.0 See RFC 5321\r\n"
     "214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH\r\n"
     "214 2.0.0 See RFC 5321\r\n"
     "502 5.5.1 VRFY command is disabled\r\n" "502 5.5.1 EXPN command is disabled\r\n",
     NULL, SMTP_READY},
    {"VRFY enabled", F_VRFY,
     "VRFY <alice@example.test>\r\nVRFY <nobody@example.test>\r\nVRFY bob\r\n"
     "VRFY <x@remote.example>\r\nVRFY\r\n",
     0, NULL,
     G "250 2.1.5 User is local\r\n" NOUSER
     "252 2.1.5 Cannot VRFY user, but will accept message\r\n"
     "252 2.1.5 Cannot VRFY user, but will accept message\r\n" "501 5.5.4 Syntax: VRFY address\r\n",
     NULL, SMTP_READY},
    {"unknown and empty commands", 0, "FOO\r\n\r\nMAILX FROM:<a@b>\r\nNOOP\r\n", 0, NULL,
     G "500 5.5.1 Command unrecognized\r\n" "500 5.5.2 Syntax error: empty command\r\n"
     "500 5.5.1 Command unrecognized\r\n" OK,
     NULL, SMTP_READY},
    {"NUL and CR in a command", 0, "NO\0OP\r\nNO\rOP\r\nNOOP\r\n", 20, NULL,
     G "500 5.5.2 Syntax error: NUL or CR in command\r\n"
     "500 5.5.2 Syntax error: NUL or CR in command\r\n" OK,
     NULL, SMTP_READY},
    {"max_errors closes", 0, "A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n", 0, NULL,
     G "500 5.5.1 Command unrecognized\r\n500 5.5.1 Command unrecognized\r\n"
     "500 5.5.1 Command unrecognized\r\n500 5.5.1 Command unrecognized\r\n"
     "500 5.5.1 Command unrecognized\r\n" TOO_MANY,
     NULL, SMTP_CLOSE},
    {"refused recipients count as errors", 0,
     E MF("a@b.example") RT("n1@x.example") RT("nobody@example.test") RT("n2@x.example")
     RT("n3@x.example") RT("n4@x.example") RT("alice@example.test"),
     0, NULL, G EHLO_PLAIN OK_MAIL RELAY NOUSER RELAY RELAY RELAY TOO_MANY, NULL, SMTP_CLOSE},
    {"QUIT", 0, "QUIT now\r\nQUIT\r\nNOOP\r\n", 0, NULL,
     G "501 5.5.4 Syntax: QUIT\r\n" BYE, NULL, SMTP_CLOSE},
    {"EHLO argument", 0, "EHLO\r\nHELO\r\nEHLO a b\r\nEHLO [192.0.2.1]\r\n", 0, NULL,
     G "501 5.5.4 Syntax: EHLO hostname\r\n" "501 5.5.4 Syntax: HELO hostname\r\n"
     "501 5.5.4 Invalid domain name\r\n" EHLO_PLAIN,
     NULL, SMTP_READY},
    {"end of input", F_EOF, E MF("a@b.example"), 0, NULL, G EHLO_PLAIN OK_MAIL, NULL,
     SMTP_CLOSE},
    {"delivery refused by the owner", F_DELIVER_FAIL,
     E TX("a@b.example", "alice@example.test", "x") "DATA\r\n", 0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT GO "451 4.3.0 try again later\r\n" NEED_MAIL,
     D("a@b.example", " TO:<alice@example.test>") "x\r\n|\n", SMTP_READY},

    /* DATA */
    {"dot-unstuffing", 0,
     E TX("a@b.example", "alice@example.test", "..x\r\n...\r\n.y\r\n..\r\nz.\r\n. .") , 0, NULL,
     G EHLO_PLAIN TX_OUT,
     D("a@b.example", " TO:<alice@example.test>") ".x\r\n..\r\ny\r\n.\r\nz.\r\n .\r\n|\n",
     SMTP_READY},
    {"empty message: the end at the very start", 0,
     E MF("a@b.example") RT("alice@example.test") "DATA\r\n.\r\n" "NOOP\r\n", 0, NULL,
     G EHLO_PLAIN TX_OUT OK, D("a@b.example", " TO:<alice@example.test>") "|\n", SMTP_READY},
    {"a blank line, then the end", 0,
     E MF("a@b.example") RT("alice@example.test") "DATA\r\n\r\n.\r\n", 0, NULL,
     G EHLO_PLAIN TX_OUT, D("a@b.example", " TO:<alice@example.test>") "\r\n|\n", SMTP_READY},
    {"commands inside data are data", 0,
     E TX("a@b.example", "alice@example.test", "QUIT\r\nMAIL FROM:<x@y>\r\nRSET") Q, 0, NULL,
     G EHLO_PLAIN TX_OUT BYE,
     D("a@b.example", " TO:<alice@example.test>") "QUIT\r\nMAIL FROM:<x@y>\r\nRSET\r\n|\n",
     SMTP_CLOSE},
#define SMUGGLE(name, vec)                                                                  \
    {"smuggling " name, 0,                                                                  \
     E MF("a@b.example") RT("alice@example.test") "DATA\r\nhello" vec                        \
     "MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nevil\r\n.\r\n" Q,  \
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT GO SMUGGLED BYE, NULL, SMTP_CLOSE}
    SMUGGLE("LF.LF", "\n.\n"),
    SMUGGLE("CR.CR", "\r.\r"),
    SMUGGLE("LF.CRLF", "\n.\r\n"),
    SMUGGLE("CRLF.LF", "\r\n.\n"),
    SMUGGLE("CR.CRLF", "\r.\r\n"),
    SMUGGLE("CRLF.CR", "\r\n.\r"),
    SMUGGLE("CRLF.CRCRLF", "\r\n.\r\r\n"),
    SMUGGLE("CRLF.LFCRLF", "\r\n.\n\r\n"),
    SMUGGLE("bare LF", "\n"),
    SMUGGLE("bare CR", "\r"),
    SMUGGLE("CRCRLF", "\r\r\n"),
    {"smuggling with pipelined real commands after the end", 0,
     E MF("a@b.example") RT("alice@example.test") "DATA\r\nx\n.\nMAIL FROM:<e@x.example>\r\n"
     "RCPT TO:<bob@example.test>\r\nDATA\r\ne\r\n.\r\n" TX("a@b.example", "bob@example.test", "ok"),
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT GO SMUGGLED TX_OUT,
     D("a@b.example", " TO:<bob@example.test>") "ok\r\n|\n", SMTP_READY},
    {"a long text line", 0,
     E MF("a@b.example") RT("alice@example.test") "DATA\r\n"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "\r\n" /* 200: fine */
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "x\r\n.\r\n" /* 201 */
     MF("a@b.example") RT("alice@example.test") "DATA\r\n."
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "\r\n.\r\n" /* 201 as sent, with the stuffed dot */ TX("a@b.example", "alice@example.test",
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"),
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT GO "552 5.3.4 Line too long in message data\r\n"
     OK_MAIL OK_RCPT GO "552 5.3.4 Line too long in message data\r\n" TX_OUT,
     D("a@b.example", " TO:<alice@example.test>")
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
     "\r\n|\n",
     SMTP_READY},

    /* pipelining */
    {"pipelined transactions", 0,
     E TX("a@b.example", "alice@example.test", "one") "RSET\r\n"
     TX("c@d.example", "bob@example.test", "two") "NOOP\r\n" Q "NOOP\r\n",
     0, NULL, G EHLO_PLAIN TX_OUT OK TX_OUT OK BYE,
     D("a@b.example", " TO:<alice@example.test>") "one\r\n|\n"
     D("c@d.example", " TO:<bob@example.test>") "two\r\n|\n",
     SMTP_CLOSE},

    /* BDAT */
    {"BDAT chunks", 0,
     E MF("a@b.example") RT("alice@example.test") "BDAT 5\r\nhelloBDAT 9 LAST\r\n\r\n.\r\nw\nx\r" Q,
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT "250 2.0.0 5 octets received\r\n" QUEUED BYE,
     D("a@b.example", " TO:<alice@example.test>") "hello\r\n.\r\nw\nx\r|\n", SMTP_CLOSE},
    {"BDAT 0 LAST", 0,
     E MF("a@b.example") RT("alice@example.test") "bdat 3\r\nabcBDAT 0 LAST\r\n"
     MF("a@b.example") RT("alice@example.test") "BDAT 0 last\r\n",
     0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT "250 2.0.0 3 octets received\r\n" QUEUED OK_MAIL OK_RCPT QUEUED,
     D("a@b.example", " TO:<alice@example.test>") "abc|\n"
     D("a@b.example", " TO:<alice@example.test>") "|\n", SMTP_READY},
    {"BDAT and DATA do not mix", 0,
     E MF("a@b.example") RT("alice@example.test") "BDAT 3\r\nabcDATA\r\nBDAT 1 LAST\r\nd",
     0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT "250 2.0.0 3 octets received\r\n"
     "503 5.5.1 DATA not allowed after BDAT\r\n" QUEUED,
     D("a@b.example", " TO:<alice@example.test>") "abcd|\n", SMTP_READY},
    {"refused BDAT chunks are read, not run", 0,
     E "BDAT 6\r\nQUIT\r\n" MF("a@b.example") "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n", 0, NULL,
     G EHLO_PLAIN NEED_MAIL OK_MAIL NEED_RCPT OK, NULL, SMTP_READY},
    {"BDAT over the size limit", 0,
     E MF("a@b.example") RT("alice@example.test") "BDAT 4097 LAST\r\n" "\r\n" /* 2 of 4097 */,
     0, NULL, G EHLO_PLAIN OK_MAIL OK_RCPT, NULL, SMTP_READY},
    {"odds and ends", F_MANY_ERRORS,
     "EHLO \xff\r\nRSET \t \r\nBDAT 5x\r\n" E
     "MAIL FROM:<a@b.example> SIZE=123456789012345678901\r\n"
     "MAIL FROM:<a@b.example> AUTH=a+\r\n",
     0, NULL,
     G "501 5.5.4 Invalid domain name\r\n" OK "501 5.5.4 Syntax: BDAT size [LAST]\r\n"
     EHLO_PLAIN "501 5.5.4 Bad SIZE parameter\r\n" "501 5.5.4 Bad AUTH parameter\r\n",
     NULL, SMTP_READY},
    {"AUTH LOGIN with NUL bytes", F_SUBMISSIONS,
     E "AUTH LOGIN YQBi\r\nAUTH LOGIN\r\nYWxpY2U=\r\nYQBi\r\nAUTH PLAIN   Ky8rLw==\r\n", 0, NULL,
     G EHLO_TLS AUTH_BAD "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_BAD AUTH_BAD,
     "PAUSE 500\nPAUSE 1000\nPAUSE 2000\n", SMTP_READY},
    {"BDAT needs EHLO", 0, "HELO x\r\nBDAT 4 LAST\r\nQUITNOOP\r\n", 0, NULL,
     G "250 mx.example.test\r\n503 5.5.1 Send EHLO first\r\n" OK, NULL, SMTP_READY},
    {"BDAT syntax", F_MANY_ERRORS,
     E "BDAT\r\nBDAT x\r\nBDAT 1 FOO\r\nBDAT -1\r\nBDAT 1000000000000000000000\r\nNOOP\r\n",
     0, NULL,
     G EHLO_PLAIN "501 5.5.4 Syntax: BDAT size [LAST]\r\n" "501 5.5.4 Syntax: BDAT size [LAST]\r\n"
     "501 5.5.4 Syntax: BDAT size [LAST]\r\n" "501 5.5.4 Syntax: BDAT size [LAST]\r\n"
     "501 5.5.4 Syntax: BDAT size [LAST]\r\n" OK,
     NULL, SMTP_READY},
    {"BINARYMIME needs BDAT", 0,
     E "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n" RT("alice@example.test")
     "DATA\r\nBDAT 3 LAST\r\n\n\r.",
     0, NULL,
     G EHLO_PLAIN OK_MAIL OK_RCPT "503 5.5.1 BINARYMIME needs BDAT\r\n" QUEUED,
     D("a@b.example", " BODY=BINARYMIME TO:<alice@example.test>") "\n\r.|\n", SMTP_READY},

    /* STARTTLS (RFC 3207) */
    {"STARTTLS drops what was pipelined", 0,
     E "STARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.test>\r\n",
     0, "MAIL FROM:<a@b.example>\r\n" E TX("a@b.example", "bob@example.test", "x"),
     G EHLO_PLAIN TLS_GO "503 5.5.1 Send EHLO or HELO first\r\n" EHLO_TLS TX_OUT,
     "TLS (56 dropped)\n"
     "ESMTPS FROM:<a@b.example> TO:<bob@example.test>\nx\r\n|\n",
     SMTP_READY},
    {"STARTTLS refusals", F_MANY_ERRORS,
     "STARTTLS now\r\n" E MF("a@b.example") "STARTTLS\r\nRSET\r\nSTARTTLS\r\n", 0,
     "STARTTLS\r\n" E "STARTTLS\r\n",
     G "501 5.5.4 Syntax: STARTTLS\r\n" EHLO_PLAIN OK_MAIL
     "503 5.5.1 STARTTLS not allowed during a mail transaction\r\n" OK TLS_GO
     "503 5.5.1 TLS already active\r\n" EHLO_TLS "503 5.5.1 TLS already active\r\n",
     "TLS (0 dropped)\n", SMTP_READY},
    {"STARTTLS not available", F_NO_TLS, E "STARTTLS\r\n", 0, NULL,
     G EHLO_NOTLS "502 5.5.1 STARTTLS not available\r\n", NULL, SMTP_READY},

    /* AUTH and policy */
    {"relay refused without AUTH", 0,
     E MF("alice@example.test") RT("x@remote.example") "AUTH PLAIN " PLAIN_ALICE "\r\n", 0, NULL,
     G EHLO_PLAIN OK_MAIL RELAY "503 5.5.1 AUTH not allowed during a mail transaction\r\n",
     NULL, SMTP_READY},
    {"submission: AUTH after STARTTLS, then relay", F_SUBMISSION,
     E MF("alice@example.test") "AUTH PLAIN " PLAIN_ALICE "\r\nSTARTTLS\r\n", 0,
     E "AUTH PLAIN " PLAIN_ALICE "\r\n" E MF("bob@example.test")
     TX("alice@example.test", "x@remote.example", "x") "AUTH PLAIN " PLAIN_ALICE "\r\n",
     G EHLO_PLAIN "530 5.7.0 Authentication required\r\n" NEED_TLS TLS_GO EHLO_TLS AUTH_OK
     EHLO_AUTHED "553 5.7.1 Sender address not owned by the authenticated user\r\n" TX_OUT
     "503 5.5.1 Already authenticated\r\n",
     "TLS (0 dropped)\n"
     "ESMTPSA FROM:<alice@example.test> AUTH=alice TO:<x@remote.example>(remote)\nx\r\n|\n",
     SMTP_READY},
    {"submissions: implicit TLS", F_SUBMISSIONS,
     E "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n" TX("", "x@remote.example", "x"), 0, NULL,
     G EHLO_TLS "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_OK TX_OUT,
     "ESMTPSA FROM:<> AUTH=alice TO:<x@remote.example>(remote)\nx\r\n|\n", SMTP_READY},
    {"AUTH LOGIN with an initial response", F_SUBMISSIONS,
     E "AUTH login YWxpY2U=\r\nc2VjcmV0\r\n", 0, NULL,
     G EHLO_TLS "334 UGFzc3dvcmQ6\r\n" AUTH_OK, NULL, SMTP_READY},
    {"AUTH PLAIN without an initial response", F_SUBMISSIONS,
     E "AUTH PLAIN\r\n" PLAIN_ALICE "\r\n", 0, NULL, G EHLO_TLS "334 \r\n" AUTH_OK, NULL,
     SMTP_READY},
    {"AUTH failures pause", F_SUBMISSIONS | F_MANY_ERRORS,
     E "AUTH PLAIN AGFsaWNlAHdyb25n\r\nNOOP\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\n"
     "AUTH PLAIN " PLAIN_ALICE "\r\n",
     0, NULL, G EHLO_TLS AUTH_BAD OK "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n" AUTH_BAD AUTH_OK,
     "PAUSE 500\nPAUSE 1000\n", SMTP_READY},
    {"AUTH cancel and bad base64", F_SUBMISSIONS | F_MANY_ERRORS,
     E "AUTH PLAIN\r\n*\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\nAUTH PLAIN AGFsaWNl!!\r\n"
     "AUTH PLAIN QQ=\r\nAUTH PLAIN QR==\r\nAUTH PLAIN Q===\r\nAUTH PLAIN\r\nQQ==QQ==\r\n"
     "AUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN a b\r\nNOOP\r\n",
     0, NULL,
     G EHLO_TLS "334 \r\n501 5.0.0 Authentication cancelled\r\n"
     "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n501 5.0.0 Authentication cancelled\r\n"
     "501 5.5.2 Invalid base64 data\r\n" "501 5.5.2 Invalid base64 data\r\n"
     "501 5.5.2 Invalid base64 data\r\n" "501 5.5.2 Invalid base64 data\r\n"
     "334 \r\n501 5.5.2 Invalid base64 data\r\n" AUTH_BAD
     "504 5.5.4 Unrecognized authentication type\r\n"
     "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
     "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n" OK,
     "PAUSE 500\n", SMTP_READY},
    {"PLAIN authzid", F_SUBMISSIONS,
     E "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n", 0, NULL,
     G EHLO_TLS AUTH_BAD AUTH_OK, "PAUSE 500\n", SMTP_READY},
    {"AUTH temporary failure", F_SUBMISSIONS,
     E "AUTH PLAIN AHRlbXAAeA==\r\n", 0, NULL,
     G EHLO_TLS "454 4.7.0 Temporary authentication failure\r\n", NULL, SMTP_READY},
    {"AUTH needs EHLO", F_SUBMISSIONS,
     "AUTH PLAIN " PLAIN_ALICE "\r\nHELO x\r\nAUTH PLAIN " PLAIN_ALICE "\r\n", 0, NULL,
     G "503 5.5.1 Send EHLO first\r\n250 mx.example.test\r\n503 5.5.1 Send EHLO first\r\n",
     NULL, SMTP_READY},
    {"AUTH on loopback in plain text", F_LOOPBACK_AUTH,
     E "AUTH PLAIN " PLAIN_ALICE "\r\n" TX("alice@example.test", "x@remote.example", "x")
     "STARTTLS\r\n",
     0, E MF("bob@example.test"),
     G EHLO_LOOP AUTH_OK TX_OUT TLS_GO EHLO_TLS OK_MAIL,
     "ESMTPA FROM:<alice@example.test> AUTH=alice TO:<x@remote.example>(remote)\nx\r\n|\n"
     "TLS (0 dropped)\n",
     SMTP_READY},
    {"loopback without plain-text AUTH", F_LOOPBACK_NO_AUTH,
     E "AUTH PLAIN " PLAIN_ALICE "\r\n", 0, NULL, G EHLO_PLAIN NEED_TLS, NULL, SMTP_READY},
    {"too many AUTH failures", F_SUBMISSIONS,
     E "AUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\n"
     "AUTH PLAIN AGFsaWNlAHdyb25n\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nNOOP\r\n",
     0, NULL, G EHLO_TLS AUTH_BAD AUTH_BAD AUTH_BAD AUTH_BAD AUTH_BAD TOO_MANY,
     "PAUSE 500\nPAUSE 1000\nPAUSE 2000\nPAUSE 4000\nPAUSE 8000\n", SMTP_CLOSE},

    /* SMTPUTF8 */
    {"SMTPUTF8", 0,
     E "MAIL FROM:<j\xc3\xb6rg@b.example>\r\n" MF("a@b.example") RT("j\xc3\xb6rg@example.test")
     "RSET\r\n" "MAIL FROM:<j\xc3\xb6rg@b\xc3\xa4.example> SMTPUTF8\r\n" RT("j\xc3\xb6rg@example.test")
     "RCPT TO:<\"q\xc3\xa9\"@example.test>\r\nDATA\r\n.\r\n",
     0, NULL, G EHLO_PLAIN NOT8 OK_MAIL NOT8 OK OK_MAIL OK_RCPT OK_RCPT GO QUEUED,
     "UTF8SMTP FROM:<j\xc3\xb6rg@b\xc3\xa4.example> SMTPUTF8 TO:<j\xc3\xb6rg@example.test>"
     " TO:<\"q\xc3\xa9\"@example.test>\n|\n",
     SMTP_READY},
    {"invalid UTF-8 in a path", 0,
     E "MAIL FROM:<\xff@b.example> SMTPUTF8\r\nMAIL FROM:<a@b\xc3.example> SMTPUTF8\r\n"
     "MAIL FROM:<\xc0\xaf@b.example> SMTPUTF8\r\n",
     0, NULL,
     G EHLO_PLAIN "501 5.1.7 Invalid UTF-8 in address\r\n" "501 5.1.7 Invalid UTF-8 in address\r\n"
     "501 5.1.7 Invalid UTF-8 in address\r\n",
     NULL, SMTP_READY},
};

static void table_cases(void **state)
{
    unsigned failed = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct tcase *c = &cases[i];
        size_t len = c->in_len ? c->in_len : strlen(c->in);
        if (!check_transcript(c->name, c->flags, c->in, len, c->after_tls, c->out, c->log,
                              c->state))
            failed++;
    }
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------ */
/* Generated transcripts and direct use of the API */

static char *repeat(char c, size_t n)
{
    char *p = malloc(n + 1);

    assert_non_null(p);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

static void command_line_limit(void **state)
{
    /* "NOOP " + x + CRLF is SMTP_CMD_LINE_MAX octets: fine; one more: too long */
    char *x = repeat('x', SMTP_CMD_LINE_MAX - 7);
    char *in;

    (void)state;
    if (asprintf(&in, "NOOP %s\r\nNOOP %sy\r\nNOOP %sy%s\r\nNOOP\r\n", x, x, x,
                 x) < 0)
        abort();
    assert_true(check_transcript("command line limit", 0, in, strlen(in), NULL,
                                 G OK "500 5.5.2 Line too long\r\n"
                                      "500 5.5.2 Line too long\r\n" OK,
                                 NULL, SMTP_READY));
    free(in);
    /* a long line in an AUTH exchange ends the exchange */
    if (asprintf(&in, E "AUTH PLAIN\r\n%s%s\r\n" "AUTH PLAIN " PLAIN_ALICE "\r\n", x,
                 x) < 0)
        abort();
    assert_true(check_transcript("long AUTH response", F_SUBMISSIONS, in, strlen(in), NULL,
                                 G EHLO_TLS "334 \r\n500 5.5.2 Line too long\r\n" AUTH_OK, NULL,
                                 SMTP_READY));
    free(in);
    free(x);
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* Far more data than max_message_size: refused after the end, and the
 * session's memory does not grow with the input. */
static void message_size_limit(void **state)
{
    struct buf in = BUF_INIT;
    struct smtp_session_cfg cfg;
    struct fake f;
    struct buf log = BUF_INIT;
    struct smtp_session *s;
    size_t before, peak = 0, n;
    const char *out;

    (void)state;
    assert_int_equal(buf_puts(&in, E MF("a@b.example") RT("alice@example.test") "DATA\r\n"), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(buf_puts(&in, "0123456789012345678901234567890123456789\r\n"), 0);
    assert_int_equal(buf_puts(&in, ".\r\nNOOP\r\n"), 0);
    assert_true(check_transcript("message size limit", 0, in.data, in.len, NULL,
                                 G EHLO_PLAIN OK_MAIL OK_RCPT GO TOO_BIG OK, NULL, SMTP_READY));

    /* Memory: feed it in 4 KiB pieces and watch the heap. */
    memset(&f, 0, sizeof(f));
    f.log = &log;
    cfg_for(0, &cfg);
    s = smtp_session_new(&cfg, &hooks, &f);
    before = heap_in_use();
    for (size_t pos = 0; pos < in.len; pos += 4096) {
        size_t len = in.len - pos < 4096 ? in.len - pos : 4096;
        size_t used = smtp_session_feed(s, in.data + pos, len);
        size_t now;
        assert_int_equal(used, len);
        smtp_session_output_clear(s);
        now = heap_in_use();
        if (now > before && now - before > peak)
            peak = now - before;
    }
    /* limit 4096 for the message, 2048 for a line, replies cleared */
    assert_true(peak < 64 * 1024);
    assert_int_equal(f.deliveries, 0);
    assert_false(smtp_session_in_transaction(s));
    out = smtp_session_output(s, &n);
    assert_int_equal(n, 0);
    (void)out;
    smtp_session_free(s);
    buf_free(&log);
    buf_free(&in);
}

static void bdat_size_limit(void **state)
{
    char *big = repeat('b', 5000);
    char *in;

    (void)state;
    if (asprintf(&in, E MF("a@b.example") RT("alice@example.test") "BDAT 5000 LAST\r\n%s"
                 "NOOP\r\nDATA\r\n" MF("a@b.example") RT("alice@example.test")
                 "BDAT 3000\r\n%.3000sBDAT 1097\r\n%.1097sBDAT 0 LAST\r\n"
                 "BDAT 3 LAST\r\nabcRSET\r\n",
                 big, big, big) < 0)
        abort();
    assert_true(check_transcript("BDAT size limit", 0, in, strlen(in), NULL,
                                 G EHLO_PLAIN OK_MAIL OK_RCPT TOO_BIG OK NEED_MAIL OK_MAIL
                                 OK_RCPT "250 2.0.0 3000 octets received\r\n" TOO_BIG
                                 NEED_MAIL NEED_MAIL OK,
                                 NULL, SMTP_READY));
    free(in);
    /* exactly the limit is fine */
    if (asprintf(&in, E MF("a@b.example") RT("alice@example.test") "BDAT 4000\r\n%.4000s"
                 "BDAT 96 LAST\r\n%.96s", big, big) < 0)
        abort();
    {
        struct result r;
        run(0, in, strlen(in), NULL, 0, &r);
        assert_string_equal(buf_cstr(&r.out), G EHLO_PLAIN OK_MAIL OK_RCPT
                            "250 2.0.0 4000 octets received\r\n" QUEUED);
        assert_int_equal(r.log.len, strlen(D("a@b.example", " TO:<alice@example.test>")) + 4096 +
                                        2 + strlen("pending=0\n"));
        result_free(&r);
    }
    free(in);
    free(big);
}

static struct smtp_session *start(unsigned flags, struct fake *f, struct buf *log)
{
    struct smtp_session_cfg cfg;
    struct smtp_session *s;

    memset(f, 0, sizeof(*f));
    buf_init(log, 0);
    f->log = log;
    cfg_for(flags, &cfg);
    s = smtp_session_new(&cfg, &hooks, f);
    smtp_session_output_clear(s);
    return s;
}

static void feed_all(struct smtp_session *s, const char *in)
{
    assert_int_equal(smtp_session_feed(s, in, strlen(in)), strlen(in));
}

static void expect_output(struct smtp_session *s, const char *want)
{
    size_t n;
    const char *p = smtp_session_output(s, &n);

    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
    smtp_session_output_clear(s);
}

static void starttls_stops_feeding(void **state)
{
    static const char in[] = "EHLO x\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\n";
    struct fake f;
    struct buf log;
    struct smtp_session *s = start(0, &f, &log);
    size_t used;

    (void)state;
    used = smtp_session_feed(s, in, strlen(in));
    assert_int_equal(used, strlen("EHLO x\r\nSTARTTLS\r\n"));
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_STARTTLS);
    expect_output(s, EHLO_PLAIN TLS_GO);
    assert_int_equal(smtp_session_feed(s, in + used, strlen(in) - used), 0);
    smtp_session_tls_started(s);
    assert_int_equal(smtp_session_state(s), SMTP_READY);
    assert_false(smtp_session_in_transaction(s));
    expect_output(s, "");
    feed_all(s, "MAIL FROM:<a@b.example>\r\nEHLO x\r\nSTARTTLS\r\n");
    expect_output(s, "503 5.5.1 Send EHLO or HELO first\r\n" EHLO_TLS
                     "503 5.5.1 TLS already active\r\n");
    smtp_session_free(s);
    buf_free(&log);
}

static void timeout_and_shutdown(void **state)
{
    struct fake f;
    struct buf log;
    struct smtp_session *s;
    static const char tail[] = "NOOP\r\n";

    (void)state;
    /* timeout while idle, and in the middle of DATA */
    s = start(0, &f, &log);
    smtp_session_timeout(s);
    expect_output(s, "421 4.4.2 mx.example.test Timeout, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    assert_int_equal(smtp_session_feed(s, tail, 6), 0);
    smtp_session_free(s);
    s = start(0, &f, &log);
    feed_all(s, E MF("a@b.example") RT("alice@example.test") "DATA\r\nhalf a mess");
    assert_true(smtp_session_in_transaction(s));
    smtp_session_output_clear(s);
    smtp_session_timeout(s);
    expect_output(s, "421 4.4.2 mx.example.test Timeout, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    assert_int_equal(f.deliveries, 0);
    smtp_session_free(s);

    /* shutdown while idle: at once */
    s = start(0, &f, &log);
    feed_all(s, E);
    smtp_session_output_clear(s);
    smtp_session_shutdown(s);
    expect_output(s, "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    smtp_session_free(s);

    /* shutdown in a transaction: it finishes, then 421 */
    s = start(0, &f, &log);
    feed_all(s, E MF("a@b.example") RT("alice@example.test"));
    smtp_session_output_clear(s);
    smtp_session_shutdown(s);
    expect_output(s, "");
    assert_int_equal(smtp_session_state(s), SMTP_READY);
    {
        static const char in[] = "DATA\r\nhello\r\n.\r\nMAIL FROM:<c@d.example>\r\n";
        size_t used = smtp_session_feed(s, in, strlen(in));
        assert_int_equal(used, strlen(in) - strlen("MAIL FROM:<c@d.example>\r\n"));
    }
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_DELIVERY);
    assert_true(smtp_session_in_transaction(s));
    /* shutdown again while delivering changes nothing */
    smtp_session_shutdown(s);
    expect_output(s, GO);
    assert_int_equal(f.deliveries, 1);
    fake_done(&f);
    smtp_session_delivered(s, 250, "2.0.0", "OK id=1");
    expect_output(s, "250 2.0.0 OK id=1\r\n"
                     "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    smtp_session_free(s);

    /* shutdown while a message is read that ends up refused */
    s = start(0, &f, &log);
    feed_all(s, E MF("a@b.example") RT("alice@example.test") "DATA\r\nx\ny");
    smtp_session_output_clear(s);
    smtp_session_shutdown(s);
    expect_output(s, "");
    assert_int_equal(smtp_session_feed(s, "\r\n.\r\nNOOP\r\n", 11), 5);
    expect_output(s, SMUGGLED
                     "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    assert_int_equal(f.deliveries, 0);
    smtp_session_free(s);

    /* timeout in the middle of an AUTH exchange */
    s = start(F_SUBMISSIONS, &f, &log);
    feed_all(s, E "AUTH LOGIN\r\nYWxpY2U=\r\n");
    smtp_session_output_clear(s);
    smtp_session_timeout(s);
    expect_output(s, "421 4.4.2 mx.example.test Timeout, closing connection\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    assert_int_equal(f.auth_calls, 0);
    smtp_session_free(s);

    /* the client goes away while its message is being delivered */
    s = start(0, &f, &log);
    feed_all(s, E MF("a@b.example") RT("alice@example.test") "DATA\r\n.\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_DELIVERY);
    smtp_session_eof(s);
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_DELIVERY);
    fake_done(&f);
    smtp_session_delivered(s, 250, "2.0.0", "OK");
    assert_int_equal(smtp_session_state(s), SMTP_CLOSE);
    smtp_session_free(s);

    /* freed in the middle of a delivery: the owner keeps env and msg */
    s = start(0, &f, &log);
    feed_all(s, E MF("a@b.example") RT("alice@example.test") "DATA\r\nx\r\n.\r\n");
    smtp_session_free(s);
    assert_non_null(f.env);
    assert_string_equal(buf_cstr(f.msg), "x\r\n");
    fake_done(&f);
    buf_free(&log);
}

static void envelope_fields(void **state)
{
    struct fake f;
    struct buf log;
    struct smtp_session *s = start(F_LOOPBACK_AUTH, &f, &log);

    (void)state;
    feed_all(s, "EHLO [127.0.0.1]\r\nAUTH LOGIN\r\nYmxhaA==\r\nd3Jvbmc=\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_PAUSE);
    assert_int_equal(smtp_session_auth_failures(s), 1);
    assert_int_equal(smtp_session_pause_ms(s), 500);
    smtp_session_resume(s);
    feed_all(s, "AUTH PLAIN AGJvYgBwdw==\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_PAUSE);
    assert_int_equal(smtp_session_auth_failures(s), 2);
    assert_int_equal(smtp_session_pause_ms(s), 1000);
    smtp_session_resume(s);
    smtp_session_output_clear(s);
    feed_all(s, "AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAcHc=\r\n"
                "MAIL FROM:<bob@example.test> RET=FULL ENVID=x+2By\r\n"
                "RCPT TO:<a@remote.example> NOTIFY=FAILURE ORCPT=rfc822;A+40remote.example\r\n"
                "RCPT TO:<alice@example.test>\r\nDATA\r\nline\r\n.\r\n");
    expect_output(s, AUTH_OK OK_MAIL OK_RCPT OK_RCPT GO);
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_DELIVERY);
    assert_non_null(f.env);
    assert_string_equal(f.env->helo, "[127.0.0.1]");
    assert_true(f.env->esmtp);
    assert_false(f.env->tls);
    assert_string_equal(f.env->auth_user, "bob");
    assert_string_equal(f.env->peer_addr, "127.0.0.1");
    assert_string_equal(f.env->mail_from, "bob@example.test");
    assert_int_equal(f.env->ret, SMTP_RET_FULL);
    assert_string_equal(f.env->envid, "x+y");
    assert_int_equal(f.env->n_rcpts, 2);
    assert_string_equal(f.env->rcpts[0].addr, "a@remote.example");
    assert_int_equal(f.env->rcpts[0].verdict, SMTP_RCPT_REMOTE);
    assert_int_equal(f.env->rcpts[0].notify, SMTP_NOTIFY_FAILURE);
    assert_string_equal(f.env->rcpts[0].orcpt, "rfc822;A@remote.example");
    assert_int_equal(f.env->rcpts[1].verdict, SMTP_RCPT_LOCAL);
    assert_int_equal(f.env->rcpts[1].notify, SMTP_NOTIFY_DEFAULT);
    assert_null(f.env->rcpts[1].orcpt);
    assert_string_equal(smtp_envelope_protocol(f.env), "ESMTPA");
    assert_string_equal(buf_cstr(f.msg), "line\r\n");
    fake_done(&f);
    smtp_session_delivered(s, 554, "5.7.0", "no\r\nthanks");
    expect_output(s, "554 5.7.0 no  thanks\r\n");
    assert_false(smtp_session_in_transaction(s));
    /* delivered() when nothing is delivered is ignored */
    smtp_session_delivered(s, 250, "2.0.0", "again");
    expect_output(s, "");
    assert_int_equal(f.auth_calls, 3);
    assert_string_equal(f.last_authzid, "-");
    smtp_session_free(s);

    /* PLAIN: an authzid equal to the authcid is passed on, another one
     * never reaches the hook */
    s = start(F_SUBMISSIONS, &f, &log);
    feed_all(s, E "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n");
    assert_int_equal(smtp_session_state(s), SMTP_WAIT_PAUSE);
    assert_int_equal(f.auth_calls, 0);
    smtp_session_resume(s);
    feed_all(s, "AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n");
    assert_int_equal(f.auth_calls, 1);
    assert_string_equal(f.last_authzid, "alice");
    smtp_session_free(s);
    buf_free(&log);
}

static void protocol_names(void **state)
{
    static const struct {
        bool esmtp, tls, auth, utf8;
        const char *want;
    } t[] = {
        {false, false, false, false, "SMTP"},    {true, false, false, false, "ESMTP"},
        {true, true, false, false, "ESMTPS"},    {true, false, true, false, "ESMTPA"},
        {true, true, true, false, "ESMTPSA"},    {true, false, false, true, "UTF8SMTP"},
        {true, true, true, true, "UTF8SMTPSA"},  {true, true, false, true, "UTF8SMTPS"},
        {true, false, true, true, "UTF8SMTPA"},
    };
    char user[] = "u";

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        struct smtp_envelope env;
        memset(&env, 0, sizeof(env));
        env.esmtp = t[i].esmtp;
        env.tls = t[i].tls;
        env.auth_user = t[i].auth ? user : NULL;
        env.smtputf8 = t[i].utf8;
        assert_string_equal(smtp_envelope_protocol(&env), t[i].want);
    }
}

static void xtext(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *out;
        size_t out_len;
    } t[] = {
        {"", 0, "", 0},
        {"abc", 0, "abc", 3},
        {"a+2Bb", 0, "a+b", 3},
        {"+3D+20+7E", 0, "= ~", 3},
        {"+00x", 0, "\0x", 2},
        {"+FF", 0, "\xff", 1},
        {"+2b", -1, NULL, 0},
        {"+2", -1, NULL, 0},
        {"+", -1, NULL, 0},
        {"a=b", -1, NULL, 0},
        {"a b", -1, NULL, 0},
        {"a\x7f", -1, NULL, 0},
        {"\xc3\xa9", -1, NULL, 0},
        {"+G0", -1, NULL, 0},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        struct buf b = BUF_INIT;
        assert_int_equal(smtp_xtext_decode(t[i].in, &b), t[i].rc);
        if (t[i].rc == 0) {
            assert_int_equal(b.len, t[i].out_len);
            assert_memory_equal(buf_cstr(&b), t[i].out, t[i].out_len);
        }
        buf_free(&b);
    }
    {
        /* a ceiling is reported, never a silent cut */
        struct buf b;
        buf_init(&b, 2);
        assert_int_equal(smtp_xtext_decode("abc", &b), -1);
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_cases),
        cmocka_unit_test(command_line_limit),
        cmocka_unit_test(message_size_limit),
        cmocka_unit_test(bdat_size_limit),
        cmocka_unit_test(starttls_stops_feeding),
        cmocka_unit_test(timeout_and_shutdown),
        cmocka_unit_test(envelope_fields),
        cmocka_unit_test(protocol_names),
        cmocka_unit_test(xtext),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
