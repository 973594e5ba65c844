/*
 * Unit tests for localserver/pop3_proto: transcripts of client bytes in and
 * exact reply lines out, with fake hooks (a table of users, a maildrop of
 * four messages read through the streaming hook, an update hook that
 * writes down the marks it is given).
 *
 * Every transcript is run four times: fed in one piece and byte by byte,
 * with the messages read in one chunk and one byte at a time.  All four
 * runs must give the same replies, hook calls and final state.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "pop3_proto.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* The maildrop */

#define M1 "Subject: one\n\nbody line 1\n.dot line\nlast\n"
#define M2 "Subject: two\r\nX: y\r\n\r\nb1\r\nb2\r\n.\r\nb4"
#define M3 "X-Only: header\n.\n"
#define M4 "H: 1\r\n\r\nx\ry\r\r\n.\r.\n"

/* What the client gets for each (RETR, after the +OK line). */
#define M1_OUT "Subject: one\r\n\r\nbody line 1\r\n..dot line\r\nlast\r\n.\r\n"
#define M2_OUT "Subject: two\r\nX: y\r\n\r\nb1\r\nb2\r\n..\r\nb4\r\n.\r\n"
#define M3_OUT "X-Only: header\r\n..\r\n.\r\n"
#define M4_OUT "H: 1\r\n\r\nx\ry\r\r\n..\r.\r\n.\r\n"

static const char *drop[] = {M1, M2, M3, M4};
static const char *const drop_uidl[] = {"u1", "u2-abc", "u3", "0000000f4d2a91b3"};

struct fake {
    struct buf *log;                 /* hook calls written down */
    size_t read_chunk;               /* bytes per msg_read (at most) */
    bool update_fail;
    bool read_fail;                  /* msg_read fails after the first chunk */
    bool open_fail;                  /* msg_open fails */
    long open_idx;                   /* -1: no message open */
    size_t offset;
    unsigned reads, closes;
    bool update_pending;
};

static void logf_(struct fake *f, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void logf_(struct fake *f, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    assert_int_equal(buf_vprintf(f->log, fmt, ap), 0);
    va_end(ap);
}

static const struct {
    const char *user, *password, *canonical;
} users[] = {
    {"alice", "secret", "alice"},
    {"bob@example.test", "pw with spaces ", "bob"},
    {"locked", "x", "locked"},
    {"broken", "x", "broken"},
    {"baduidl", "x", "baduidl"},
};

static int fake_auth(void *ctx, const char *authzid, const char *authcid, const char *password,
                     char **canonical)
{
    (void)ctx;
    if (authzid)
        assert_string_equal(authzid, authcid);
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

static enum pop3_open fake_open(void *ctx, const char *user, struct pop3_msg **msgs, size_t *n)
{
    struct fake *f = ctx;

    logf_(f, "OPEN %s\n", user);
    if (strcmp(user, "locked") == 0)
        return POP3_OPEN_LOCKED;
    if (strcmp(user, "broken") == 0)
        return POP3_OPEN_FAIL;
    if (strcmp(user, "bob") == 0) {
        *msgs = NULL;
        *n = 0;
        return POP3_OPEN_OK;
    }
    *n = ARRAY_LEN(drop);
    *msgs = XNEWARRAY(struct pop3_msg, *n);
    for (size_t i = 0; i < *n; i++) {
        bool cr = false;
        (*msgs)[i].size = pop3_crlf_octets(drop[i], strlen(drop[i]), &cr);
        (*msgs)[i].uidl = xstrdup(drop_uidl[i]);
    }
    if (strcmp(user, "baduidl") == 0) {
        free((*msgs)[2].uidl);
        (*msgs)[2].uidl = xstrdup("has space");
    }
    return POP3_OPEN_OK;
}

static int fake_msg_open(void *ctx, size_t idx)
{
    struct fake *f = ctx;

    assert_int_equal(f->open_idx, -1);
    assert_true(idx < ARRAY_LEN(drop));
    if (f->open_fail)
        return -1;
    f->open_idx = (long)idx;
    f->offset = 0;
    return 0;
}

static ssize_t fake_msg_read(void *ctx, char *buf, size_t cap)
{
    struct fake *f = ctx;
    const char *m;
    size_t n;

    assert_true(f->open_idx >= 0);
    assert_int_equal(cap, POP3_OUTPUT_CHUNK);
    if (f->read_fail && f->reads > 0)
        return -1;
    f->reads++;
    m = drop[f->open_idx];
    n = strlen(m) - f->offset;
    if (n > f->read_chunk)
        n = f->read_chunk;
    if (n > cap)
        n = cap;
    memcpy(buf, m + f->offset, n);
    f->offset += n;
    return (ssize_t)n;
}

static void fake_msg_close(void *ctx)
{
    struct fake *f = ctx;

    assert_true(f->open_idx >= 0);
    f->open_idx = -1;
    f->closes++;
}

static void fake_update(void *ctx, const unsigned char *marks, size_t n)
{
    struct fake *f = ctx;

    assert_false(f->update_pending);
    f->update_pending = true;
    logf_(f, "UPDATE");
    for (size_t i = 0; i < n; i++) {
        if (marks[i])
            logf_(f, " %zu=%s%s", i + 1, (marks[i] & POP3_MARK_DELETED) ? "D" : "",
                  (marks[i] & POP3_MARK_RETRIEVED) ? "R" : "");
    }
    logf_(f, "\n");
}

static const struct pop3_hooks hooks = {fake_auth, fake_open, fake_msg_open, fake_msg_read,
                                        fake_msg_close, fake_update};

static void fake_init(struct fake *f, struct buf *log, size_t read_chunk)
{
    memset(f, 0, sizeof(*f));
    f->log = log;
    f->read_chunk = read_chunk;
    f->open_idx = -1;
}

/* ------------------------------------------------------------------ */
/* Transcript runner */

enum {
    F_TLS = 1 << 0,                  /* in TLS from the start (995) */
    F_LOOPBACK = 1 << 1,             /* loopback peer, login allowed in plain text */
    F_NO_STLS = 1 << 2,              /* STLS not available */
    F_EOF = 1 << 3,                  /* pop3_session_eof() at the end */
    F_UPDATE_FAIL = 1 << 4,          /* the update answers false */
    F_MANY_ERRORS = 1 << 5,          /* max_errors 50 (else 5) */
    F_LOOPBACK_NO_PLAIN = 1 << 6,    /* loopback peer, no login in plain text */
};

static void cfg_for(unsigned flags, struct pop3_session_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hostname = "pop.example.test";
    cfg->peer_addr = (flags & F_LOOPBACK) ? "127.0.0.1" : "192.0.2.7";
    cfg->peer_loopback = (flags & (F_LOOPBACK | F_LOOPBACK_NO_PLAIN)) != 0;
    cfg->auth_plaintext_loopback = !(flags & F_LOOPBACK_NO_PLAIN);
    cfg->tls_active = (flags & F_TLS) != 0;
    cfg->tls_available = !(flags & F_NO_STLS) && !(flags & F_TLS);
    cfg->max_errors = (flags & F_MANY_ERRORS) ? 50 : 5;
}

struct result {
    struct buf out;                  /* every reply byte */
    struct buf log;                  /* hook calls, pauses, STLS */
    enum pop3_wait state;
};

static void take_output(struct pop3_session *s, struct buf *out)
{
    size_t n;
    const char *p = pop3_session_output(s, &n);

    assert_int_equal(buf_append(out, p, n), 0);
    pop3_session_output_clear(s);
}

/* Act on what the session waits for (but STLS); false once it is closed. */
static bool serve_wait(struct pop3_session *s, struct fake *f, unsigned flags, struct result *r)
{
    for (;;) {
        switch (pop3_session_state(s)) {
        case POP3_WAIT_OUTPUT: {
            size_t n;
            assert_int_equal(pop3_session_feed(s, "NOOP\r\n", 6), 0);
            pop3_session_more(s);
            pop3_session_output(s, &n);
            assert_true(n <= 2 * POP3_OUTPUT_CHUNK + 8);
            take_output(s, &r->out);
            break;
        }
        case POP3_WAIT_PAUSE:
            assert_int_equal(buf_printf(&r->log, "PAUSE %u\n", pop3_session_pause_ms(s)), 0);
            pop3_session_resume(s);
            take_output(s, &r->out);
            break;
        case POP3_WAIT_UPDATE:
            assert_true(f->update_pending);
            f->update_pending = false;
            pop3_session_updated(s, !(flags & F_UPDATE_FAIL));
            take_output(s, &r->out);
            break;
        case POP3_CLOSE:
            return false;
        case POP3_WAIT_STLS:
        case POP3_READY:
        default:
            return true;
        }
    }
}

/* Feed in (then, after a STLS, after_tls) in chunks of `chunk` bytes (0:
 * in one piece).  Bytes after STLS in the same segment are discarded, as
 * the owner must. */
static void run(unsigned flags, const char *in, size_t in_len, const char *after_tls,
                size_t chunk, size_t read_chunk, struct result *r)
{
    struct pop3_session_cfg cfg;
    struct fake f;
    struct pop3_session *s;
    const char *seg[2] = {in, after_tls};
    size_t seg_len[2] = {in_len, after_tls ? strlen(after_tls) : 0};
    bool open = true;

    buf_init(&r->out, 0);
    buf_init(&r->log, 0);
    fake_init(&f, &r->log, read_chunk);
    cfg_for(flags, &cfg);
    s = pop3_session_new(&cfg, &hooks, &f);
    take_output(s, &r->out);
    for (int k = 0; k < 2 && open && seg[k]; k++) {
        size_t pos = 0;
        while (pos < seg_len[k] && open) {
            size_t n = chunk ? chunk : seg_len[k] - pos;
            size_t used;
            if (n > seg_len[k] - pos)
                n = seg_len[k] - pos;
            used = pop3_session_feed(s, seg[k] + pos, n);
            take_output(s, &r->out);
            assert_true(used <= n);
            if (pop3_session_state(s) == POP3_READY)
                assert_int_equal(used, n);
            else if (pop3_session_state(s) != POP3_CLOSE)
                assert_int_equal(pop3_session_feed(s, "x", 1), 0);
            pos += used;
            if (pop3_session_state(s) == POP3_WAIT_STLS) {
                assert_int_equal(buf_printf(&r->log, "TLS (%zu dropped)\n",
                                            seg_len[k] - pos), 0);
                pop3_session_tls_started(s);
                take_output(s, &r->out);
                break;
            }
            open = serve_wait(s, &f, flags, r);
        }
    }
    if (open && (flags & F_EOF)) {
        pop3_session_eof(s);
        take_output(s, &r->out);
    }
    r->state = pop3_session_state(s);
    pop3_session_free(s);
    /* every message opened was closed, the update was answered */
    assert_int_equal(f.open_idx, -1);
    assert_false(f.update_pending);
}

static void result_free(struct result *r)
{
    buf_free(&r->out);
    buf_free(&r->log);
}

static bool same(const struct result *a, const struct result *b)
{
    return a->out.len == b->out.len &&
           memcmp(buf_cstr(&a->out), buf_cstr(&b->out), a->out.len) == 0 &&
           strcmp(buf_cstr(&a->log), buf_cstr(&b->log)) == 0 && a->state == b->state;
}

/* Run four ways, compare with each other and with the expectation.
 * Returns false (after printing the difference) on a mismatch. */
static bool check_transcript(const char *name, unsigned flags, const char *in, size_t in_len,
                             const char *after_tls, const char *out, const char *log,
                             enum pop3_wait state)
{
    static const size_t feed_chunk[4] = {0, 1, 0, 1};
    static const size_t read_chunk[4] = {POP3_OUTPUT_CHUNK, POP3_OUTPUT_CHUNK, 1, 1};
    struct result r[4];
    bool ok = true;

    for (int i = 0; i < 4; i++)
        run(flags, in, in_len, after_tls, feed_chunk[i], read_chunk[i], &r[i]);
    if (r[0].out.len != strlen(out) || memcmp(buf_cstr(&r[0].out), out, r[0].out.len) != 0) {
        print_error("%s: replies\n--- got:\n%s--- want:\n%s", name, buf_cstr(&r[0].out), out);
        ok = false;
    }
    if (strcmp(buf_cstr(&r[0].log), log ? log : "") != 0) {
        print_error("%s: hooks\n--- got:\n%s--- want:\n%s", name, buf_cstr(&r[0].log),
                    log ? log : "");
        ok = false;
    }
    if (r[0].state != state) {
        print_error("%s: state %d, want %d\n", name, r[0].state, state);
        ok = false;
    }
    for (int i = 1; i < 4; i++) {
        if (!same(&r[0], &r[i])) {
            print_error("%s: run %d (feed %zu, read %zu) differs\n--- got:\n%s%s", name, i,
                        feed_chunk[i], read_chunk[i], buf_cstr(&r[i].out),
                        buf_cstr(&r[i].log));
            ok = false;
        }
    }
    for (int i = 0; i < 4; i++)
        result_free(&r[i]);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Transcripts */

#define G "+OK pop.example.test POP3 server ready\r\n"
#define CAPA_HEAD "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n" \
                  "AUTH-RESP-CODE\r\nPIPELINING\r\n"
#define CAPA_END "IMPLEMENTATION correod\r\n.\r\n"
#define LOGIN "USER alice\r\nPASS secret\r\n"
#define LOGGED "+OK\r\n+OK maildrop has 4 messages (119 octets)\r\n"
#define OPEN_ALICE "OPEN alice\n"
#define BYE "+OK pop.example.test POP3 server signing off\r\n"
#define BYE_LEFT(n) "+OK pop.example.test POP3 server signing off (" n " left)\r\n"
#define PLAIN "-ERR [AUTH] Plaintext authentication disallowed without TLS\r\n"
#define AUTH_BAD "-ERR [AUTH] Authentication failed\r\n"
#define NOT_IN "-ERR Not logged in\r\n"
#define ALREADY "-ERR Already logged in\r\n"
#define UNKNOWN "-ERR Unknown command\r\n"
#define NO_SUCH "-ERR no such message, only 4 messages in maildrop\r\n"
#define TOO_MANY "-ERR Too many bad commands, closing connection\r\n"
#define Q "QUIT\r\n"
#define PLAIN_ALICE "AGFsaWNlAHNlY3JldA=="   /* "\0alice\0secret" */

struct tcase {
    const char *name;
    unsigned flags;
    const char *in;
    size_t in_len;                   /* 0: strlen(in) */
    const char *after_tls;
    const char *out;
    const char *log;                 /* hook calls, pauses, STLS */
    enum pop3_wait state;
};

static const struct tcase cases[] = {
    /* CAPA */
    {"CAPA before TLS", 0, "CAPA\r\n", 0, NULL,
     G CAPA_HEAD "STLS\r\n" CAPA_END, NULL, POP3_READY},
    {"CAPA before TLS, no STLS", F_NO_STLS, "CAPA\r\n", 0, NULL,
     G CAPA_HEAD CAPA_END, NULL, POP3_READY},
    {"CAPA on loopback", F_LOOPBACK, "CAPA\r\n", 0, NULL,
     G CAPA_HEAD "USER\r\nSASL PLAIN\r\nSTLS\r\n" CAPA_END, NULL, POP3_READY},
    {"CAPA on loopback without plain text login", F_LOOPBACK_NO_PLAIN, "CAPA\r\n", 0, NULL,
     G CAPA_HEAD "STLS\r\n" CAPA_END, NULL, POP3_READY},
    {"CAPA in TLS, then after login", F_TLS, "CAPA\r\n" LOGIN "capa\r\nCAPA x\r\n", 0, NULL,
     G CAPA_HEAD "USER\r\nSASL PLAIN\r\n" CAPA_END LOGGED CAPA_HEAD CAPA_END
     "-ERR Syntax: CAPA\r\n",
     OPEN_ALICE, POP3_READY},

    /* the RFC 1939 session */
    {"login, STAT, LIST, UIDL, QUIT", F_TLS,
     LOGIN "STAT\r\nLIST\r\nUIDL\r\nLIST 2\r\nUIDL 4\r\nNOOP\r\n" Q, 0, NULL,
     G LOGGED "+OK 4 119\r\n"
     "+OK 4 messages (119 octets)\r\n1 46\r\n2 35\r\n3 19\r\n4 19\r\n.\r\n"
     "+OK\r\n1 u1\r\n2 u2-abc\r\n3 u3\r\n4 0000000f4d2a91b3\r\n.\r\n"
     "+OK 2 35\r\n+OK 4 0000000f4d2a91b3\r\n+OK\r\n" BYE_LEFT("4 messages"),
     OPEN_ALICE "UPDATE\n", POP3_CLOSE},
    {"RETR: CRLF, dot-stuffing, final line end", F_TLS,
     LOGIN "RETR 1\r\nRETR 2\r\nRETR 3\r\nRETR 4\r\n", 0, NULL,
     G LOGGED "+OK 46 octets\r\n" M1_OUT "+OK 35 octets\r\n" M2_OUT "+OK 19 octets\r\n" M3_OUT
     "+OK 19 octets\r\n" M4_OUT,
     OPEN_ALICE, POP3_READY},
    {"TOP", F_TLS,
     LOGIN "TOP 1 0\r\nTOP 1 1\r\nTOP 1 2\r\nTOP 1 99\r\nTOP 2 2\r\nTOP 2 4\r\nTOP 3 0\r\n"
     "TOP 4 1\r\nTOP 4 18446744073709551616\r\n",
     0, NULL,
     G LOGGED "+OK\r\nSubject: one\r\n\r\n.\r\n"
     "+OK\r\nSubject: one\r\n\r\nbody line 1\r\n.\r\n"
     "+OK\r\nSubject: one\r\n\r\nbody line 1\r\n..dot line\r\n.\r\n"
     "+OK\r\n" M1_OUT
     "+OK\r\nSubject: two\r\nX: y\r\n\r\nb1\r\nb2\r\n.\r\n"
     "+OK\r\n" M2_OUT
     "+OK\r\n" M3_OUT
     "+OK\r\nH: 1\r\n\r\nx\ry\r\r\n.\r\n"
     "+OK\r\n" M4_OUT,
     OPEN_ALICE, POP3_READY},
    {"TOP arguments", F_TLS | F_MANY_ERRORS,
     LOGIN "TOP\r\nTOP 1\r\nTOP 1 x\r\nTOP 1 -1\r\nTOP 5 1\r\nTOP 1 1 1\r\nTOP x 1\r\n", 0,
     NULL,
     G LOGGED "-ERR Syntax: TOP msg n\r\n-ERR Syntax: TOP msg n\r\n"
     "-ERR Invalid number of lines\r\n-ERR Invalid number of lines\r\n" NO_SUCH
     "-ERR Syntax: TOP msg n\r\n-ERR Invalid message number\r\n",
     OPEN_ALICE, POP3_READY},
    {"message numbers", F_TLS | F_MANY_ERRORS,
     LOGIN "LIST 0\r\nLIST 5\r\nLIST 99999999999999999999999\r\nLIST +1\r\nLIST -1\r\n"
     "LIST 1x\r\nLIST 01\r\nLIST 1 2\r\nUIDL 0\r\nUIDL a\r\nRETR\r\nRETR 5\r\nDELE\r\n"
     "DELE 7\r\n",
     0, NULL,
     G LOGGED NO_SUCH NO_SUCH NO_SUCH "-ERR Invalid message number\r\n"
     "-ERR Invalid message number\r\n-ERR Invalid message number\r\n+OK 1 46\r\n"
     "-ERR Syntax: LIST [msg]\r\n" NO_SUCH "-ERR Invalid message number\r\n"
     "-ERR Syntax: RETR msg\r\n" NO_SUCH "-ERR Syntax: DELE msg\r\n" NO_SUCH,
     OPEN_ALICE, POP3_READY},
    {"DELE, RSET, deletion only at QUIT", F_TLS,
     LOGIN "RETR 3\r\nDELE 1\r\nDELE 1\r\nSTAT\r\nLIST\r\nLIST 1\r\nUIDL 1\r\nRETR 1\r\n"
     "TOP 1 1\r\nUIDL\r\nRSET\r\nSTAT\r\nDELE 2\r\nDELE 4\r\n" Q,
     0, NULL,
     G LOGGED "+OK 19 octets\r\n" M3_OUT "+OK message 1 deleted\r\n"
     "-ERR message 1 already deleted\r\n+OK 3 73\r\n"
     "+OK 3 messages (73 octets)\r\n2 35\r\n3 19\r\n4 19\r\n.\r\n"
     "-ERR message 1 already deleted\r\n-ERR message 1 already deleted\r\n"
     "-ERR message 1 already deleted\r\n-ERR message 1 already deleted\r\n"
     "+OK\r\n2 u2-abc\r\n3 u3\r\n4 0000000f4d2a91b3\r\n.\r\n"
     "+OK maildrop has 4 messages (119 octets)\r\n+OK 4 119\r\n+OK message 2 deleted\r\n"
     "+OK message 4 deleted\r\n" BYE_LEFT("2 messages"),
     OPEN_ALICE "UPDATE 2=D 3=R 4=D\n", POP3_CLOSE},
    {"everything deleted", F_TLS,
     LOGIN "DELE 1\r\nDELE 2\r\nDELE 3\r\nRETR 4\r\nDELE 4\r\nLIST\r\nSTAT\r\n" Q, 0, NULL,
     G LOGGED "+OK message 1 deleted\r\n+OK message 2 deleted\r\n+OK message 3 deleted\r\n"
     "+OK 19 octets\r\n" M4_OUT "+OK message 4 deleted\r\n"
     "+OK 0 messages (0 octets)\r\n.\r\n+OK 0 0\r\n"
     "+OK pop.example.test POP3 server signing off (maildrop empty)\r\n",
     OPEN_ALICE "UPDATE 1=D 2=D 3=D 4=DR\n", POP3_CLOSE},
    {"the update fails", F_TLS | F_UPDATE_FAIL, LOGIN "DELE 2\r\n" Q "NOOP\r\n", 0, NULL,
     G LOGGED "+OK message 2 deleted\r\n-ERR [SYS/TEMP] some deleted messages not removed\r\n",
     OPEN_ALICE "UPDATE 2=D\n", POP3_CLOSE},
    {"end of input: nothing deleted", F_TLS | F_EOF, LOGIN "DELE 1\r\nDELE 2\r\n", 0, NULL,
     G LOGGED "+OK message 1 deleted\r\n+OK message 2 deleted\r\n", OPEN_ALICE, POP3_CLOSE},
    {"QUIT before login", 0, "QUIT\r\nNOOP\r\n", 0, NULL, G BYE, NULL, POP3_CLOSE},
    {"QUIT with an argument", F_TLS, "QUIT now\r\n" Q, 0, NULL,
     G "-ERR Syntax: QUIT\r\n" BYE, NULL, POP3_CLOSE},
    {"empty maildrop", F_TLS,
     "USER bob@example.test\r\nPASS pw with spaces \r\nSTAT\r\nLIST\r\nUIDL\r\nLIST 1\r\n"
     "RSET\r\n" Q,
     0, NULL,
     G "+OK\r\n+OK maildrop has 0 messages (0 octets)\r\n+OK 0 0\r\n"
     "+OK 0 messages (0 octets)\r\n.\r\n+OK\r\n.\r\n"
     "-ERR no such message, only 0 messages in maildrop\r\n"
     "+OK maildrop has 0 messages (0 octets)\r\n"
     "+OK pop.example.test POP3 server signing off (maildrop empty)\r\n",
     "OPEN bob\nUPDATE\n", POP3_CLOSE},
    {"one message", F_TLS, LOGIN "DELE 1\r\nDELE 2\r\nDELE 3\r\nSTAT\r\nLIST\r\n" Q, 0, NULL,
     G LOGGED "+OK message 1 deleted\r\n+OK message 2 deleted\r\n+OK message 3 deleted\r\n"
     "+OK 1 19\r\n+OK 1 message (19 octets)\r\n4 19\r\n.\r\n" BYE_LEFT("1 message"),
     OPEN_ALICE "UPDATE 1=D 2=D 3=D\n", POP3_CLOSE},

    /* USER / PASS */
    {"wrong password, growing pauses", F_TLS | F_MANY_ERRORS,
     "USER alice\r\nPASS wrong\r\nPASS secret\r\nUSER alice\r\nPASS Secret\r\n"
     "USER nobody\r\nPASS secret\r\n" LOGIN "STAT\r\n",
     0, NULL,
     G "+OK\r\n" AUTH_BAD "-ERR USER first\r\n+OK\r\n" AUTH_BAD "+OK\r\n" AUTH_BAD LOGGED
     "+OK 4 119\r\n",
     "PAUSE 500\nPAUSE 1000\nPAUSE 2000\n" OPEN_ALICE, POP3_READY},
    {"password with spaces, as it is", F_TLS,
     "USER bob@example.test\r\nPASS pw with spaces\r\nUSER bob@example.test\r\n"
     "PASS pw with spaces \r\n",
     0, NULL, G "+OK\r\n" AUTH_BAD "+OK\r\n+OK maildrop has 0 messages (0 octets)\r\n",
     "PAUSE 500\nOPEN bob\n", POP3_READY},
    {"USER and PASS syntax", F_TLS | F_MANY_ERRORS,
     "USER\r\nUSER a b\r\nPASS\r\nPASS x\r\nUSER alice\r\nUSER alice2\r\nPASS secret\r\n"
     "USER alice\r\nPASS \r\n",
     0, NULL,
     G "-ERR Syntax: USER name\r\n-ERR Syntax: USER name\r\n-ERR Syntax: PASS password\r\n"
     "-ERR USER first\r\n+OK\r\n+OK\r\n" AUTH_BAD "+OK\r\n" AUTH_BAD,
     "PAUSE 500\nPAUSE 1000\n", POP3_READY},
    {"maildrop locked", F_TLS, "USER locked\r\nPASS x\r\nSTAT\r\n" LOGIN "STAT\r\n", 0, NULL,
     G "+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n" NOT_IN LOGGED
     "+OK 4 119\r\n",
     "OPEN locked\n" OPEN_ALICE, POP3_READY},
    {"maildrop cannot be opened", F_TLS, "USER broken\r\nPASS x\r\nSTAT\r\n", 0, NULL,
     G "+OK\r\n-ERR [SYS/TEMP] Unable to open the maildrop\r\n" NOT_IN, "OPEN broken\n",
     POP3_READY},
    {"the owner lists a bad UIDL", F_TLS, "USER baduidl\r\nPASS x\r\nSTAT\r\n", 0, NULL,
     G "+OK\r\n-ERR [SYS/PERM] Unable to list the maildrop\r\n", "OPEN baduidl\n",
     POP3_CLOSE},
    {"temporary authentication failure", F_TLS, "USER temp\r\nPASS x\r\n", 0, NULL,
     G "+OK\r\n-ERR [SYS/TEMP] Temporary authentication failure\r\n", NULL, POP3_READY},
    {"no plain text login without TLS", F_MANY_ERRORS,
     LOGIN "AUTH PLAIN " PLAIN_ALICE "\r\nAUTH PLAIN\r\nAUTH\r\nSTAT\r\n", 0, NULL,
     G PLAIN PLAIN PLAIN PLAIN "+OK\r\n.\r\n" NOT_IN, NULL, POP3_READY},
    {"loopback may log in in plain text", F_LOOPBACK, LOGIN "STAT\r\n", 0, NULL,
     G LOGGED "+OK 4 119\r\n", OPEN_ALICE, POP3_READY},
    {"loopback without plain text login", F_LOOPBACK_NO_PLAIN, LOGIN, 0, NULL,
     G PLAIN PLAIN, NULL, POP3_READY},

    /* AUTH PLAIN (RFC 5034) */
    {"AUTH PLAIN with an initial response", F_TLS,
     "AUTH PLAIN " PLAIN_ALICE "\r\nSTAT\r\n", 0, NULL,
     G "+OK maildrop has 4 messages (119 octets)\r\n+OK 4 119\r\n", OPEN_ALICE, POP3_READY},
    {"AUTH PLAIN with a continuation", F_TLS,
     "auth plain\r\n" PLAIN_ALICE "\r\nSTAT\r\n", 0, NULL,
     G "+ \r\n+OK maildrop has 4 messages (119 octets)\r\n+OK 4 119\r\n", OPEN_ALICE,
     POP3_READY},
    {"AUTH PLAIN with an authzid", F_TLS,
     "AUTH PLAIN YWxpY2UAYWxpY2UAc2VjcmV0\r\n", 0, NULL,
     G "+OK maildrop has 4 messages (119 octets)\r\n", OPEN_ALICE, POP3_READY},
    {"AUTH PLAIN for somebody else", F_TLS, "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n", 0,
     NULL, G AUTH_BAD, "PAUSE 500\n", POP3_READY},
    {"AUTH cancelled", F_TLS, "AUTH PLAIN\r\n*\r\nSTAT\r\n", 0, NULL,
     G "+ \r\n-ERR Authentication cancelled\r\n" NOT_IN, NULL, POP3_READY},
    {"AUTH bad responses", F_TLS | F_MANY_ERRORS,
     "AUTH PLAIN\r\nnot base64!\r\nAUTH PLAIN =\r\nAUTH PLAIN AGFsaWNl\r\n"
     "AUTH PLAIN AGFsaWNlAHNlY3JldAA=\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n"
     "AUTH PLAIN AGFsaWNlAHNlY3JldB==\r\nAUTH PLAIN\r\n=\r\n",
     0, NULL,
     G "+ \r\n-ERR Invalid base64 data\r\n" AUTH_BAD AUTH_BAD AUTH_BAD
     "-ERR Invalid base64 data\r\n-ERR Invalid base64 data\r\n+ \r\n" AUTH_BAD,
     "PAUSE 500\nPAUSE 1000\nPAUSE 2000\nPAUSE 4000\n", POP3_READY},
    {"AUTH mechanisms", F_TLS | F_MANY_ERRORS,
     "AUTH\r\nAUTH LOGIN\r\nAUTH CRAM-MD5 x\r\nAUTH PLAIN a b\r\nAPOP alice abc\r\n", 0, NULL,
     G "+OK\r\nPLAIN\r\n.\r\n-ERR Unsupported authentication mechanism\r\n"
     "-ERR Unsupported authentication mechanism\r\n"
     "-ERR Syntax: AUTH mechanism [initial-response]\r\n" UNKNOWN,
     NULL, POP3_READY},
    {"AUTH after login", F_TLS, LOGIN "AUTH PLAIN " PLAIN_ALICE "\r\nUSER bob\r\nPASS x\r\n",
     0, NULL, G LOGGED ALREADY ALREADY ALREADY, OPEN_ALICE, POP3_READY},

    /* STLS (RFC 2595) */
    {"STLS drops what was pipelined", 0, "CAPA\r\nSTLS\r\nUSER alice\r\nPASS secret\r\n",
     0, "CAPA\r\n" LOGIN "STLS\r\n",
     G CAPA_HEAD "STLS\r\n" CAPA_END "+OK Begin TLS negotiation\r\n" CAPA_HEAD
     "USER\r\nSASL PLAIN\r\n" CAPA_END LOGGED ALREADY,
     "TLS (25 dropped)\n" OPEN_ALICE, POP3_READY},
    {"STLS forgets USER", F_LOOPBACK, "USER alice\r\nSTLS\r\n", 0, "PASS secret\r\n",
     G "+OK\r\n+OK Begin TLS negotiation\r\n-ERR USER first\r\n", "TLS (0 dropped)\n",
     POP3_READY},
    {"STLS refused", F_TLS | F_MANY_ERRORS, "STLS\r\nSTLS x\r\n" LOGIN "STLS\r\n", 0, NULL,
     G "-ERR TLS already active\r\n-ERR Syntax: STLS\r\n" LOGGED ALREADY, OPEN_ALICE,
     POP3_READY},
    {"STLS not available", F_NO_STLS, "STLS\r\n", 0, NULL, G "-ERR STLS not available\r\n",
     NULL, POP3_READY},

    /* commands and lines */
    {"commands need login", F_MANY_ERRORS,
     "STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 1 1\r\nDELE 1\r\nRSET\r\nNOOP\r\n", 0, NULL,
     G NOT_IN NOT_IN NOT_IN NOT_IN NOT_IN NOT_IN NOT_IN NOT_IN, NULL, POP3_READY},
    {"unknown and empty commands", F_MANY_ERRORS,
     "FOO\r\n\r\nSTATX\r\n LIST\r\nXTND XMIT\r\nQUIT\r\n", 0, NULL,
     G UNKNOWN "-ERR Empty command\r\n" UNKNOWN "-ERR Empty command\r\n" UNKNOWN BYE, NULL,
     POP3_CLOSE},
    {"NUL and CR in a command", F_TLS, "NO\0OP\r\nCA\rPA\r\n" LOGIN "NOOP\r\n", 45, NULL,
     G "-ERR Syntax error: NUL or CR in command\r\n"
     "-ERR Syntax error: NUL or CR in command\r\n" LOGGED "+OK\r\n",
     OPEN_ALICE, POP3_READY},
    {"too many bad commands", 0, "A\r\nB\r\nC\r\nD\r\nE\r\nCAPA\r\n", 0, NULL,
     G UNKNOWN UNKNOWN UNKNOWN UNKNOWN UNKNOWN TOO_MANY, NULL, POP3_CLOSE},
    {"too many failed logins", F_TLS,
     "USER a\r\nPASS b\r\nUSER a\r\nPASS b\r\nUSER a\r\nPASS b\r\nUSER a\r\nPASS b\r\n"
     "USER a\r\nPASS b\r\nUSER a\r\n",
     0, NULL, G "+OK\r\n" AUTH_BAD "+OK\r\n" AUTH_BAD "+OK\r\n" AUTH_BAD "+OK\r\n" AUTH_BAD
     "+OK\r\n" AUTH_BAD TOO_MANY,
     "PAUSE 500\nPAUSE 1000\nPAUSE 2000\nPAUSE 4000\nPAUSE 8000\n", POP3_CLOSE},
    {"case, bare LF, spaces", F_TLS,
     "user alice  \nPass secret\r\nstat\nlist   2  \r\nrEtR 3\nnoop x\r\ntop  1  0\n", 0, NULL,
     G LOGGED "+OK 4 119\r\n+OK 2 35\r\n+OK 19 octets\r\n" M3_OUT "-ERR Syntax: NOOP\r\n"
     "+OK\r\nSubject: one\r\n\r\n.\r\n",
     OPEN_ALICE, POP3_READY},
    {"pipelined", F_TLS,
     "CAPA\r\n" LOGIN "LIST\r\nRETR 1\r\nUIDL 2\r\nRETR 2\r\nDELE 2\r\nTOP 4 0\r\n" Q, 0,
     NULL,
     G CAPA_HEAD "USER\r\nSASL PLAIN\r\n" CAPA_END LOGGED
     "+OK 4 messages (119 octets)\r\n1 46\r\n2 35\r\n3 19\r\n4 19\r\n.\r\n"
     "+OK 46 octets\r\n" M1_OUT "+OK 2 u2-abc\r\n+OK 35 octets\r\n" M2_OUT
     "+OK message 2 deleted\r\n+OK\r\nH: 1\r\n\r\n.\r\n" BYE_LEFT("3 messages"),
     OPEN_ALICE "UPDATE 1=R 2=DR\n", POP3_CLOSE},
};

static void table_cases(void **state)
{
    int failed = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct tcase *c = &cases[i];
        if (!check_transcript(c->name, c->flags, c->in, c->in_len ? c->in_len : strlen(c->in),
                              c->after_tls, c->out, c->log, c->state))
            failed++;
    }
    assert_int_equal(failed, 0);
}

/* ------------------------------------------------------------------ */
/* Single behaviours */

static struct pop3_session *start(unsigned flags, struct fake *f, struct buf *log,
                                  size_t read_chunk)
{
    struct pop3_session_cfg cfg;
    struct pop3_session *s;

    buf_init(log, 0);
    fake_init(f, log, read_chunk);
    cfg_for(flags, &cfg);
    s = pop3_session_new(&cfg, &hooks, f);
    pop3_session_output_clear(s);
    return s;
}

static void feed_all(struct pop3_session *s, const char *in)
{
    assert_int_equal(pop3_session_feed(s, in, strlen(in)), strlen(in));
}

static void expect_output(struct pop3_session *s, const char *want)
{
    size_t n;
    const char *got = pop3_session_output(s, &n);

    assert_int_equal(n, strlen(want));
    assert_memory_equal(got, want, n);
    pop3_session_output_clear(s);
}

static void command_line_limit(void **state)
{
    struct fake f;
    struct buf log;
    struct pop3_session *s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    char line[POP3_LINE_MAX + 8];

    (void)state;
    /* POP3_LINE_MAX with CRLF: fine; one more: refused, session goes on */
    memset(line, 'a', sizeof(line));
    memcpy(line, "USER ", 5);
    memcpy(line + POP3_LINE_MAX - 2, "\r\n", 2);
    assert_int_equal(pop3_session_feed(s, line, POP3_LINE_MAX), POP3_LINE_MAX);
    expect_output(s, "+OK\r\n");
    memset(line, 'a', sizeof(line));
    memcpy(line, "USER ", 5);
    memcpy(line + POP3_LINE_MAX - 1, "\r\n", 2);
    assert_int_equal(pop3_session_feed(s, line, POP3_LINE_MAX + 1), POP3_LINE_MAX + 1);
    expect_output(s, "-ERR Line too long\r\n");
    /* a long SASL response ends the exchange */
    feed_all(s, "AUTH PLAIN\r\n");
    expect_output(s, "+ \r\n");
    assert_true(pop3_session_expects_secret(s));
    memset(line, 'A', sizeof(line));
    memcpy(line + POP3_LINE_MAX + 4, "\r\n", 2);
    assert_int_equal(pop3_session_feed(s, line, POP3_LINE_MAX + 6), POP3_LINE_MAX + 6);
    expect_output(s, "-ERR Line too long\r\n");
    assert_false(pop3_session_expects_secret(s));
    feed_all(s, LOGIN);
    expect_output(s, LOGGED);
    assert_string_equal(pop3_session_user(s), "alice");
    pop3_session_free(s);
    buf_free(&log);
}

/* A message far larger than a chunk streams through bounded output. */
static void large_message(void **state)
{
    static const char *const big_drop_line = "line .of the big message\n";
    struct fake f;
    struct buf log, msg = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
    struct pop3_session *s;
    size_t lines = 100000, n, calls = 0, max_piece = 0;
    const char *saved;
    bool cr = false;
    char head[64];

    (void)state;
    for (size_t i = 0; i < lines; i++)
        assert_int_equal(buf_printf(&msg, "%s%s", i % 7 == 0 ? "." : "", big_drop_line), 0);
    saved = drop[3];
    /* the fake reads drop[]: point message 4 at the big one */
    drop[3] = buf_cstr(&msg);
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    feed_all(s, LOGIN);
    pop3_session_output_clear(s);
    assert_int_equal(pop3_session_feed(s, "RETR 4\r\nNOOP\r\n", 14), 8);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_OUTPUT);
    assert_int_equal(pop3_session_feed(s, "NOOP\r\n", 6), 0);
    for (;;) {
        pop3_session_output(s, &n);
        if (n > max_piece)
            max_piece = n;
        take_output(s, &got);
        if (pop3_session_state(s) != POP3_WAIT_OUTPUT)
            break;
        pop3_session_more(s);
        calls++;
    }
    assert_int_equal(pop3_session_state(s), POP3_READY);
    assert_true(max_piece <= 2 * POP3_OUTPUT_CHUNK + 8);
    assert_true(calls >= msg.len / POP3_OUTPUT_CHUNK);
    assert_int_equal(f.closes, 1);
    snprintf(head, sizeof(head), "+OK %" PRIu64 " octets\r\n",
             pop3_crlf_octets(msg.data, msg.len, &cr));
    assert_int_equal(buf_puts(&want, head), 0);
    for (size_t i = 0; i < lines; i++)
        assert_int_equal(buf_printf(&want, "%sline .of the big message\r\n",
                                    i % 7 == 0 ? ".." : ""), 0);
    assert_int_equal(buf_puts(&want, ".\r\n"), 0);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    /* the octet count announced is the message without stuffing */
    assert_int_equal(pop3_crlf_octets(msg.data, msg.len, &cr), msg.len + lines);
    /* the pipelined NOOP runs once the reply is done */
    feed_all(s, "NOOP\r\n");
    expect_output(s, "+OK\r\n");
    pop3_session_free(s);
    drop[3] = saved;
    buf_free(&msg);
    buf_free(&want);
    buf_free(&got);
    buf_free(&log);
}

/* ------------------------------------------------------------------ */
/* 100 MB through a session: generated by the read hook, never stored. */

#define BIG_BLOCK "a line of text\n.dotted\r\n..\n\nlast\n"
#define BIG_BLOCK_OUT "a line of text\r\n..dotted\r\n...\r\n\r\nlast\r\n"
#define BIG_BLOCKS ((size_t)100 * 1024 * 1024 / (sizeof(BIG_BLOCK) - 1))

struct big {
    size_t sent;                     /* message bytes handed out */
    bool open;
    unsigned reads;
};

static enum pop3_open big_open(void *ctx, const char *user, struct pop3_msg **msgs, size_t *n)
{
    bool cr = false;

    (void)ctx;
    (void)user;
    *n = 1;
    *msgs = XNEW(struct pop3_msg);
    (*msgs)[0].size = BIG_BLOCKS * pop3_crlf_octets(BIG_BLOCK, sizeof(BIG_BLOCK) - 1, &cr);
    (*msgs)[0].uidl = xstrdup("big");
    return POP3_OPEN_OK;
}

static int big_msg_open(void *ctx, size_t idx)
{
    struct big *b = ctx;

    assert_int_equal(idx, 0);
    b->open = true;
    b->sent = 0;
    return 0;
}

static ssize_t big_msg_read(void *ctx, char *buf, size_t cap)
{
    static const char block[] = BIG_BLOCK;
    struct big *b = ctx;
    size_t total = BIG_BLOCKS * (sizeof(block) - 1), n = 0;

    assert_true(b->open);
    b->reads++;
    while (n < cap && b->sent < total) {
        buf[n++] = block[b->sent % (sizeof(block) - 1)];
        b->sent++;
    }
    return (ssize_t)n;
}

static void big_msg_close(void *ctx)
{
    struct big *b = ctx;

    assert_true(b->open);
    b->open = false;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

static void hundred_megabytes(void **state)
{
    static const char want_block[] = BIG_BLOCK_OUT;
    const size_t wlen = sizeof(want_block) - 1;
    struct pop3_hooks h = {fake_auth, big_open, big_msg_open, big_msg_read, big_msg_close,
                           NULL};
    struct pop3_session_cfg cfg;
    struct big b;
    struct pop3_session *s;
    char head[64];
    size_t n, before, peak = 0, pos = 0, max_piece = 0;
    uint64_t total = 0;
    const char *out;
    bool cr = false;

    (void)state;
    memset(&b, 0, sizeof(b));
    cfg_for(F_TLS, &cfg);
    s = pop3_session_new(&cfg, &h, &b);
    feed_all(s, LOGIN);
    pop3_session_output_clear(s);
    before = heap_in_use();
    assert_int_equal(pop3_session_feed(s, "RETR 1\r\nQUIT\r\n", 14), 8);
    snprintf(head, sizeof(head), "+OK %zu octets\r\n",
             BIG_BLOCKS * (size_t)pop3_crlf_octets(BIG_BLOCK, sizeof(BIG_BLOCK) - 1, &cr));
    out = pop3_session_output(s, &n);
    assert_true(n >= strlen(head));
    assert_memory_equal(out, head, strlen(head));
    /* the status line is not compared with the blocks */
    out += strlen(head);
    n -= strlen(head);
    for (;;) {
        /* the output so far is the converted blocks, in order */
        size_t i = 0;
        size_t now = heap_in_use();
        if (now > before && now - before > peak)
            peak = now - before;
        if (n > max_piece)
            max_piece = n;
        if (pop3_session_state(s) != POP3_WAIT_OUTPUT) {
            assert_true(n >= 3);
            assert_memory_equal(out + n - 3, ".\r\n", 3);
            n -= 3;
        }
        while (i < n) {
            size_t k = wlen - pos % wlen;
            if (k > n - i)
                k = n - i;
            if (memcmp(out + i, want_block + pos % wlen, k) != 0)
                fail_msg("output differs at %" PRIu64, total + i);
            i += k;
            pos += k;
        }
        total += n;
        pop3_session_output_clear(s);
        if (pop3_session_state(s) != POP3_WAIT_OUTPUT)
            break;
        pop3_session_more(s);
        out = pop3_session_output(s, &n);
    }
    assert_int_equal(total, (uint64_t)BIG_BLOCKS * wlen);
    assert_int_equal(pop3_session_state(s), POP3_READY);
    assert_false(b.open);
    assert_true(b.reads >= BIG_BLOCKS * (sizeof(BIG_BLOCK) - 1) / POP3_OUTPUT_CHUNK);
    assert_true(max_piece <= 2 * POP3_OUTPUT_CHUNK + 8);
    /* a chunk to read, a reply piece and the line buffer: nowhere near 100 MB */
    assert_true(peak < 256 * 1024);
    /* once the reply is over, the read buffer and the big reply buffer
     * are given back */
    assert_true(heap_in_use() <= before + 8192);
    feed_all(s, "NOOP\r\n");
    expect_output(s, "+OK\r\n");
    pop3_session_free(s);
}

static void read_errors(void **state)
{
    struct fake f;
    struct buf log;
    struct pop3_session *s;

    (void)state;
    /* the message cannot be opened: -ERR, the session goes on */
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    f.open_fail = true;
    feed_all(s, LOGIN "RETR 2\r\nTOP 2 1\r\nSTAT\r\n");
    expect_output(s, LOGGED "-ERR [SYS/TEMP] Unable to read message 2\r\n"
                            "-ERR [SYS/TEMP] Unable to read message 2\r\n+OK 4 119\r\n");
    pop3_session_free(s);
    buf_free(&log);

    /* a read fails half-way: the reply stays unterminated, the session closes */
    s = start(F_TLS, &f, &log, 5);
    f.read_fail = true;
    feed_all(s, LOGIN);
    pop3_session_output_clear(s);
    assert_int_equal(pop3_session_feed(s, "RETR 1\r\n", 8), 8);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_OUTPUT);
    expect_output(s, "+OK 46 octets\r\nSubje");
    pop3_session_more(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "");
    assert_int_equal(f.closes, 1);
    assert_int_equal(f.open_idx, -1);
    pop3_session_free(s);
    buf_free(&log);

    /* freed in the middle of a message: it is closed */
    s = start(F_TLS, &f, &log, 5);
    feed_all(s, LOGIN);
    assert_int_equal(pop3_session_feed(s, "RETR 1\r\n", 8), 8);
    assert_int_equal(f.open_idx, 0);
    pop3_session_free(s);
    assert_int_equal(f.open_idx, -1);
    assert_int_equal(f.closes, 1);
    buf_free(&log);
}

static void timeout_and_shutdown(void **state)
{
    struct fake f;
    struct buf log;
    struct pop3_session *s;

    (void)state;
    /* timeout while idle */
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    feed_all(s, LOGIN "DELE 1\r\n");
    pop3_session_output_clear(s);
    pop3_session_timeout(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "-ERR Disconnected for inactivity\r\n");
    pop3_session_free(s);
    assert_string_equal(buf_cstr(&log), OPEN_ALICE); /* no UPDATE */
    buf_free(&log);

    /* timeout in the middle of a message: closed without a word more */
    s = start(F_TLS, &f, &log, 3);
    feed_all(s, LOGIN);
    assert_int_equal(pop3_session_feed(s, "RETR 1\r\n", 8), 8);
    pop3_session_output_clear(s);
    pop3_session_timeout(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "");
    assert_int_equal(f.open_idx, -1);
    pop3_session_free(s);
    buf_free(&log);

    /* shutdown while idle, before login */
    s = start(0, &f, &log, POP3_OUTPUT_CHUNK);
    pop3_session_shutdown(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "-ERR [SYS/TEMP] Server shutting down\r\n");
    pop3_session_free(s);
    buf_free(&log);

    /* shutdown in the middle of a message: the message ends first, and
     * nothing is deleted */
    s = start(F_TLS, &f, &log, 20);
    feed_all(s, LOGIN "DELE 2\r\n");
    pop3_session_output_clear(s);
    assert_int_equal(pop3_session_feed(s, "RETR 1\r\nNOOP\r\n", 14), 8);
    pop3_session_shutdown(s);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_OUTPUT);
    while (pop3_session_state(s) == POP3_WAIT_OUTPUT)
        pop3_session_more(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "+OK 46 octets\r\n" M1_OUT "-ERR [SYS/TEMP] Server shutting down\r\n");
    pop3_session_free(s);
    assert_string_equal(buf_cstr(&log), OPEN_ALICE);
    buf_free(&log);

    /* shutdown during a pause: after it */
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    feed_all(s, "USER a\r\nPASS b\r\n");
    assert_int_equal(pop3_session_state(s), POP3_WAIT_PAUSE);
    pop3_session_shutdown(s);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_PAUSE);
    pop3_session_resume(s);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, "+OK\r\n" AUTH_BAD "-ERR [SYS/TEMP] Server shutting down\r\n");
    pop3_session_free(s);
    buf_free(&log);

    /* shutdown during a SASL exchange */
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    feed_all(s, "AUTH PLAIN\r\n");
    assert_true(pop3_session_expects_secret(s));
    pop3_session_shutdown(s);
    assert_false(pop3_session_expects_secret(s));
    expect_output(s, "+ \r\n-ERR [SYS/TEMP] Server shutting down\r\n");
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    pop3_session_free(s);
    buf_free(&log);

    /* the client leaves after QUIT while the update runs: it completes */
    s = start(F_TLS, &f, &log, POP3_OUTPUT_CHUNK);
    feed_all(s, LOGIN "DELE 3\r\n");
    pop3_session_output_clear(s);
    assert_int_equal(pop3_session_feed(s, "QUIT\r\n", 6), 6);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_UPDATE);
    pop3_session_eof(s);
    pop3_session_timeout(s);
    assert_int_equal(pop3_session_state(s), POP3_WAIT_UPDATE);
    f.update_pending = false;
    pop3_session_updated(s, true);
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    expect_output(s, BYE_LEFT("3 messages"));
    /* updated() again is ignored */
    pop3_session_updated(s, false);
    expect_output(s, "");
    pop3_session_free(s);
    assert_string_equal(buf_cstr(&log), OPEN_ALICE "UPDATE 3=D\n");
    buf_free(&log);
}

static void no_update_hook(void **state)
{
    struct pop3_hooks h = hooks;
    struct pop3_session_cfg cfg;
    struct fake f;
    struct buf log;
    struct pop3_session *s;

    (void)state;
    buf_init(&log, 0);
    fake_init(&f, &log, POP3_OUTPUT_CHUNK);
    h.update = NULL;
    cfg_for(F_TLS, &cfg);
    s = pop3_session_new(&cfg, &h, &f);
    pop3_session_output_clear(s);
    feed_all(s, LOGIN "DELE 1\r\n" Q);
    expect_output(s, LOGGED "+OK message 1 deleted\r\n" BYE_LEFT("3 messages"));
    assert_int_equal(pop3_session_state(s), POP3_CLOSE);
    pop3_session_free(s);
    buf_free(&log);
}

static void pauses_and_accessors(void **state)
{
    static const unsigned want[] = {500, 1000, 2000, 4000, 8000, 16000, 16000, 16000};
    struct fake f;
    struct buf log;
    struct pop3_session *s = start(F_TLS | F_MANY_ERRORS, &f, &log, POP3_OUTPUT_CHUNK);

    (void)state;
    assert_int_equal(pop3_session_pause_ms(s), 0);
    assert_null(pop3_session_user(s));
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        feed_all(s, "USER alice\r\nPASS x\r\n");
        assert_int_equal(pop3_session_state(s), POP3_WAIT_PAUSE);
        /* nothing is read during the pause */
        assert_int_equal(pop3_session_feed(s, "NOOP\r\n", 6), 0);
        assert_int_equal(pop3_session_auth_failures(s), i + 1);
        assert_int_equal(pop3_session_pause_ms(s), want[i]);
        pop3_session_resume(s);
        assert_int_equal(pop3_session_state(s), POP3_READY);
    }
    pop3_session_output_clear(s);
    /* resume() when not paused is ignored */
    pop3_session_resume(s);
    pop3_session_more(s);
    pop3_session_tls_started(s);
    expect_output(s, "");
    assert_int_equal(pop3_session_state(s), POP3_READY);
    feed_all(s, LOGIN);
    assert_string_equal(pop3_session_user(s), "alice");
    pop3_session_free(s);
    buf_free(&log);
}

static void crlf_octets(void **state)
{
    static const struct {
        const char *in;
        uint64_t want;
    } t[] = {
        {"", 0},
        {"a", 1},
        {"\n", 2},
        {"\r\n", 2},
        {"\r", 1},
        {"a\nb\r\nc\n\n", 11},
        {"\r\r\n\n", 5},
        {M1, 46},
        {M2, 35},
        {M3, 19},
        {M4, 19},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        size_t len = strlen(t[i].in);
        bool cr = false;
        uint64_t whole = pop3_crlf_octets(t[i].in, len, &cr), pieces = 0;
        assert_int_equal(whole, t[i].want);
        /* piece by piece, a CR at the end of one piece and LF at the start
         * of the next make one line end */
        for (size_t split = 0; split <= len; split++) {
            cr = false;
            pieces = pop3_crlf_octets(t[i].in, split, &cr);
            pieces += pop3_crlf_octets(t[i].in + split, len - split, &cr);
            assert_int_equal(pieces, t[i].want);
        }
        cr = false;
        pieces = 0;
        for (size_t k = 0; k < len; k++)
            pieces += pop3_crlf_octets(t[i].in + k, 1, &cr);
        assert_int_equal(pieces, t[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_cases),
        cmocka_unit_test(command_line_limit),
        cmocka_unit_test(large_message),
        cmocka_unit_test(hundred_megabytes),
        cmocka_unit_test(read_errors),
        cmocka_unit_test(timeout_and_shutdown),
        cmocka_unit_test(no_update_hook),
        cmocka_unit_test(pauses_and_accessors),
        cmocka_unit_test(crlf_octets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
