/*
 * pop3_proto: one POP3 server session as a state machine without I/O (see
 * pop3_proto.h for the contract with the owner).
 *
 * The session owns its command line buffer (capped at POP3_LINE_MAX), the
 * maildrop listing the owner handed over at login with one mark byte per
 * message, and a read buffer of POP3_OUTPUT_CHUNK bytes while a message is
 * being sent.  The reply buffer grows by at most one chunk of a long reply
 * per feed() or more(); the owner empties it in between, and between
 * replies it shrinks back, so an idle session holds little more than its
 * listing.
 *
 * Choices the header leaves open:
 *  - Bad commands counted toward max_errors: unknown commands, syntax
 *    errors, commands in the wrong state, overlong lines, login refused for
 *    want of TLS, and failed logins.  "No such message", "already deleted"
 *    and our own temporary failures do not count.
 *  - USER is remembered until PASS (whatever its outcome), another USER or
 *    STLS.  PASS takes the rest of the line after "PASS " as it is, spaces
 *    included; other lines lose trailing spaces and tabs.
 *  - RSET unmarks deletions only; a message RETR sent stays retrieved.
 *  - "AUTH" without arguments lists the mechanisms login allows now (none
 *    before TLS when plain-text login is not allowed).
 *  - A listing with a UIDL that is not 1..70 octets of 0x21..0x7E is the
 *    owner's bug: the login answers -ERR [SYS/PERM] and the session closes
 *    (the owner, holding the lock, releases it when it frees the session).
 */
#include "pop3_proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "xalloc.h"

#define MAX_ARGS 2
#define IDLE_OUTPUT_CAP 4096         /* reply buffer kept between replies */

enum phase {
    PH_AUTHORIZATION = 1,
    PH_TRANSACTION = 2,
};

enum long_reply {
    LR_NONE = 0,
    LR_LIST,                         /* LIST without argument */
    LR_UIDL,                         /* UIDL without argument */
    LR_MSG,                          /* RETR or TOP */
};

struct pop3_session {
    struct pop3_session_cfg cfg;     /* hostname and peer_addr point to our copies */
    char *hostname;
    char *peer_addr;
    struct pop3_hooks hooks;
    void *ctx;

    struct buf out;
    struct buf line;                 /* current command line (without LF) */
    bool line_overlong;              /* skipping the rest of a long line */

    enum pop3_wait wait;
    enum phase phase;
    bool tls;
    bool in_sasl;                    /* waiting for the AUTH PLAIN response */
    char *user_arg;                  /* USER given, waiting for PASS */

    unsigned errors;
    unsigned auth_failures;
    bool shutdown;                   /* close once the current reply is out */
    bool eof;                        /* the client closed its side */
    bool close_after_pause;          /* max_errors reached by a failed login */

    /* TRANSACTION state */
    char *user;
    struct pop3_msg *msgs;
    size_t n_msgs;
    unsigned char *marks;            /* POP3_MARK_* per message */
    size_t n_live;                   /* messages not marked deleted */
    uint64_t live_octets;

    /* The long reply in progress. */
    enum long_reply lr;
    size_t lr_pos;                   /* LIST/UIDL: next message index */
    bool msg_open;                   /* hooks.msg_open succeeded, not closed yet */
    size_t msg_idx;
    bool top;                        /* TOP rather than RETR */
    bool in_body;                    /* TOP: the blank line after the header was sent */
    uint64_t top_left;               /* TOP: body lines still to send */
    bool bol;                        /* at the start of a line of the message */
    bool prev_cr;                    /* the last message byte was CR */
    uint64_t line_len;               /* octets of the current line so far */
    char *chunk;                     /* POP3_OUTPUT_CHUNK bytes, once needed */
};

/* ------------------------------------------------------------------ */
/* Replies */

static void out_append(struct pop3_session *s, const char *p, size_t n)
{
    /* The reply buffer has no ceiling: this cannot fail. */
    if (buf_append(&s->out, p, n) < 0)
        die("pop3 reply buffer");
}

static void out_str(struct pop3_session *s, const char *p)
{
    out_append(s, p, strlen(p));
}

/* "+OK" or "-ERR", an optional response code, an optional text, CRLF. */
static void status_line(struct pop3_session *s, bool ok, const char *code, const char *text)
{
    out_str(s, ok ? "+OK" : "-ERR");
    if (code) {
        out_str(s, " [");
        out_str(s, code);
        out_str(s, "]");
    }
    if (*text)
        out_str(s, " ");
    /* Never let a text break the reply framing. */
    while (*text) {
        size_t span = strcspn(text, "\r\n");
        out_append(s, text, span);
        text += span;
        if (*text) {
            out_str(s, " ");
            text++;
        }
    }
    out_str(s, "\r\n");
}

static void vstatus(struct pop3_session *s, bool ok, const char *code, const char *fmt,
                    va_list ap) CORREO_PRINTF(4, 0);

static void vstatus(struct pop3_session *s, bool ok, const char *code, const char *fmt,
                    va_list ap)
{
    char *text = xvasprintf(fmt, ap);

    status_line(s, ok, code, text);
    free(text);
}

static void reply_ok(struct pop3_session *s, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void reply_ok(struct pop3_session *s, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vstatus(s, true, NULL, fmt, ap);
    va_end(ap);
}

static void reply_err(struct pop3_session *s, const char *code, const char *fmt, ...)
    CORREO_PRINTF(3, 4);

static void reply_err(struct pop3_session *s, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vstatus(s, false, code, fmt, ap);
    va_end(ap);
}

static void close_with(struct pop3_session *s, const char *code, const char *text)
{
    status_line(s, false, code, text);
    s->wait = POP3_CLOSE;
}

/* Count one bad command; at max_errors the session ends. */
static void count_error(struct pop3_session *s)
{
    s->errors++;
    if (s->cfg.max_errors == 0 || s->errors < s->cfg.max_errors)
        return;
    if (s->wait == POP3_READY)
        close_with(s, NULL, "Too many bad commands, closing connection");
    else if (s->wait == POP3_WAIT_PAUSE)
        s->close_after_pause = true;
}

/* A reply to a bad command: it counts toward max_errors. */
static void bad(struct pop3_session *s, const char *text)
{
    status_line(s, false, NULL, text);
    count_error(s);
}

/* ------------------------------------------------------------------ */
/* Session bookkeeping */

void pop3_msgs_free(struct pop3_msg *msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++)
        free(msgs[i].uidl);
    free(msgs);
}

static bool login_allowed(const struct pop3_session *s)
{
    return s->tls || (s->cfg.peer_loopback && s->cfg.auth_plaintext_loopback);
}

static void forget_user_arg(struct pop3_session *s)
{
    if (s->user_arg) {
        explicit_bzero(s->user_arg, strlen(s->user_arg));
        free(s->user_arg);
        s->user_arg = NULL;
    }
}

static void close_msg(struct pop3_session *s)
{
    if (s->msg_open) {
        s->msg_open = false;
        if (s->hooks.msg_close)
            s->hooks.msg_close(s->ctx);
    }
}

/* An idle session keeps no read buffer. */
static void drop_chunk(struct pop3_session *s)
{
    free(s->chunk);
    s->chunk = NULL;
}

/* Stop a long reply without finishing it (the connection is closing). */
static void abandon_reply(struct pop3_session *s)
{
    close_msg(s);
    drop_chunk(s);
    s->lr = LR_NONE;
}

/* Once idle: a pending shutdown or end of input takes effect. */
static void check_shutdown(struct pop3_session *s)
{
    if (s->wait != POP3_READY || s->lr != LR_NONE)
        return;
    if (s->shutdown) {
        s->in_sasl = false;
        close_with(s, "SYS/TEMP", "Server shutting down");
    } else if (s->eof) {
        s->wait = POP3_CLOSE;
    }
}

static void signoff(struct pop3_session *s, const char *left)
{
    reply_ok(s, "%s POP3 server signing off%s", s->hostname, left);
    s->wait = POP3_CLOSE;
}

/* ------------------------------------------------------------------ */
/* Arguments */

static bool all_digits(const char *a)
{
    if (!*a)
        return false;
    for (; *a; a++)
        if (*a < '0' || *a > '9')
            return false;
    return true;
}

/* A decimal number; saturates at UINT64_MAX.  False if not all digits. */
static bool parse_u64(const char *a, uint64_t *v)
{
    uint64_t x = 0;

    if (!all_digits(a))
        return false;
    for (; *a; a++) {
        unsigned d = (unsigned)(*a - '0');
        if (x > (UINT64_MAX - d) / 10)
            x = UINT64_MAX;
        else
            x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* A message number naming a message not marked deleted: its index, or
 * false after replying -ERR. */
static bool msg_arg(struct pop3_session *s, const char *a, size_t *idx)
{
    uint64_t v;

    if (!parse_u64(a, &v)) {
        bad(s, "Invalid message number");
        return false;
    }
    if (v == 0 || v > s->n_msgs) {
        reply_err(s, NULL, "no such message, only %zu messages in maildrop", s->n_msgs);
        return false;
    }
    if (s->marks[v - 1] & POP3_MARK_DELETED) {
        reply_err(s, NULL, "message %" PRIu64 " already deleted", v);
        return false;
    }
    *idx = (size_t)(v - 1);
    return true;
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* ------------------------------------------------------------------ */
/* Long replies: LIST, UIDL, RETR, TOP */

static void finish_reply(struct pop3_session *s)
{
    out_str(s, ".\r\n");
    s->lr = LR_NONE;
}

/* The end of the message, or of what TOP sends of it. */
static void finish_msg(struct pop3_session *s, bool whole)
{
    if (!s->bol)
        out_str(s, "\r\n");
    finish_reply(s);
    if (whole && !s->top)
        s->marks[s->msg_idx] |= POP3_MARK_RETRIEVED;
    close_msg(s);
}

/* A line of the message ended (its CRLF is out); empty: it had no octets
 * but an optional CR. */
static void end_line(struct pop3_session *s, bool empty)
{
    if (!s->top)
        return;
    if (!s->in_body) {
        if (!empty)
            return;
        s->in_body = true;
    } else {
        s->top_left--;
    }
    if (s->top_left == 0)
        finish_msg(s, false);
}

/* Send message bytes: bare LF to CRLF, dot-stuffing, TOP's line count. */
static void emit_msg(struct pop3_session *s, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && s->lr == LR_MSG) {
        const char *lf;
        size_t span;
        bool cr_before;
        uint64_t len;

        if (s->bol && p[i] == '.')
            out_str(s, ".");
        lf = memchr(p + i, '\n', n - i);
        span = lf ? (size_t)(lf - (p + i)) : n - i;
        out_append(s, p + i, span);
        if (!lf) {
            s->bol = false;
            s->prev_cr = p[n - 1] == '\r';
            s->line_len += span;
            return;
        }
        cr_before = span ? p[i + span - 1] == '\r' : s->prev_cr;
        if (cr_before)
            out_str(s, "\n");
        else
            out_str(s, "\r\n");
        len = s->line_len + span;
        s->bol = true;
        s->prev_cr = false;
        s->line_len = 0;
        i += span + 1;
        end_line(s, len == 0 || (len == 1 && cr_before));
    }
}

static void produce_listing(struct pop3_session *s)
{
    size_t start = s->out.len;

    while (s->lr_pos < s->n_msgs && s->out.len - start < POP3_OUTPUT_CHUNK) {
        size_t i = s->lr_pos++;
        char line[32 + POP3_UIDL_MAX];
        int k;

        if (s->marks[i] & POP3_MARK_DELETED)
            continue;
        if (s->lr == LR_LIST)
            k = snprintf(line, sizeof(line), "%zu %" PRIu64 "\r\n", i + 1, s->msgs[i].size);
        else
            k = snprintf(line, sizeof(line), "%zu %s\r\n", i + 1, s->msgs[i].uidl);
        if (k < 0 || (size_t)k >= sizeof(line))
            die("pop3 listing line");
        out_append(s, line, (size_t)k);
    }
    if (s->lr_pos >= s->n_msgs)
        finish_reply(s);
}

static void produce_msg(struct pop3_session *s)
{
    ssize_t r;

    if (!s->chunk)
        s->chunk = xmalloc(POP3_OUTPUT_CHUNK);
    r = s->hooks.msg_read ? s->hooks.msg_read(s->ctx, s->chunk, POP3_OUTPUT_CHUNK) : -1;
    if (r < 0 || r > POP3_OUTPUT_CHUNK) {
        /* Half a message is out: only closing tells the client. */
        abandon_reply(s);
        s->wait = POP3_CLOSE;
        return;
    }
    if (r == 0) {
        finish_msg(s, true);
        return;
    }
    emit_msg(s, s->chunk, (size_t)r);
}

/* Append the next piece of the long reply; set the state accordingly. */
static void produce(struct pop3_session *s)
{
    switch (s->lr) {
    case LR_LIST:
    case LR_UIDL:
        produce_listing(s);
        break;
    case LR_MSG:
        produce_msg(s);
        break;
    case LR_NONE:
    default:
        break;
    }
    if (s->lr != LR_MSG)
        drop_chunk(s);
    if (s->wait == POP3_CLOSE)
        return;
    s->wait = s->lr != LR_NONE ? POP3_WAIT_OUTPUT : POP3_READY;
    check_shutdown(s);
}

static void start_listing(struct pop3_session *s, enum long_reply kind)
{
    s->lr = kind;
    s->lr_pos = 0;
    produce(s);
}

static void start_msg(struct pop3_session *s, size_t idx, bool top, uint64_t lines)
{
    if (!s->hooks.msg_open || s->hooks.msg_open(s->ctx, idx) < 0) {
        reply_err(s, "SYS/TEMP", "Unable to read message %zu", idx + 1);
        return;
    }
    s->msg_open = true;
    if (top)
        reply_ok(s, "%s", "");
    else
        reply_ok(s, "%" PRIu64 " octets", s->msgs[idx].size);
    s->lr = LR_MSG;
    s->msg_idx = idx;
    s->top = top;
    s->in_body = false;
    s->top_left = lines;
    s->bol = true;
    s->prev_cr = false;
    s->line_len = 0;
    produce(s);
}

/* ------------------------------------------------------------------ */
/* Login */

static bool valid_uidl(const char *u)
{
    size_t n = 0;

    if (!u)
        return false;
    for (; u[n]; n++)
        if ((unsigned char)u[n] < 0x21 || (unsigned char)u[n] > 0x7e)
            return false;
    return n >= 1 && n <= POP3_UIDL_MAX;
}

static void auth_failed(struct pop3_session *s)
{
    s->auth_failures++;
    reply_err(s, "AUTH", "Authentication failed");
    s->wait = POP3_WAIT_PAUSE;
    count_error(s);
}

/* The credentials are right: lock and list the maildrop. */
static void open_maildrop(struct pop3_session *s, char *user)
{
    struct pop3_msg *msgs = NULL;
    size_t n = 0;
    enum pop3_open r = s->hooks.open ? s->hooks.open(s->ctx, user, &msgs, &n) : POP3_OPEN_FAIL;

    if (r == POP3_OPEN_LOCKED) {
        free(user);
        reply_err(s, "IN-USE", "Mailbox is locked by another POP3 session");
        return;
    }
    if (r != POP3_OPEN_OK) {
        free(user);
        reply_err(s, "SYS/TEMP", "Unable to open the maildrop");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!valid_uidl(msgs[i].uidl)) {
            pop3_msgs_free(msgs, n);
            free(user);
            close_with(s, "SYS/PERM", "Unable to list the maildrop");
            return;
        }
    }
    s->user = user;
    s->msgs = msgs;
    s->n_msgs = n;
    s->marks = xcalloc(n ? n : 1, 1);
    s->n_live = n;
    s->live_octets = 0;
    for (size_t i = 0; i < n; i++)
        s->live_octets += s->msgs[i].size;
    s->phase = PH_TRANSACTION;
    reply_ok(s, "maildrop has %zu message%s (%" PRIu64 " octets)", n, plural(n),
             s->live_octets);
}

static void login(struct pop3_session *s, const char *authzid, const char *authcid,
                  const char *password)
{
    char *canonical = NULL;
    int r;

    if (!*authcid) {
        auth_failed(s);
        return;
    }
    r = s->hooks.auth ? s->hooks.auth(s->ctx, authzid, authcid, password, &canonical) : -1;
    if (r == 1) {
        open_maildrop(s, canonical ? canonical : xstrdup(authcid));
        return;
    }
    free(canonical);
    if (r == 0)
        auth_failed(s);
    else
        reply_err(s, "SYS/TEMP", "Temporary authentication failure");
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64 (groups of four, padding only at the end, no stray bits)
 * into out (room for cap bytes).  Returns the length or -1. */
static ssize_t b64_strict(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in), o = 0;

    if (n % 4 != 0 || n / 4 * 3 > cap)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t w = 0;
        unsigned pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + k];
            int v;
            if (c == '=' && i + 4 == n && k >= 2) {
                pad++;
                w <<= 6;
                continue;
            }
            v = b64_value(c);
            if (v < 0 || pad)
                return -1;
            w = (w << 6) | (uint32_t)v;
        }
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            return -1;
        out[o++] = (char)(w >> 16);
        if (pad < 2)
            out[o++] = (char)(w >> 8);
        if (pad < 1)
            out[o++] = (char)w;
    }
    return (ssize_t)o;
}

/* The AUTH PLAIN response (RFC 4616): [authzid] NUL authcid NUL passwd. */
static void sasl_plain(struct pop3_session *s, const char *resp)
{
    char d[POP3_LINE_MAX];
    ssize_t len = 0;
    const char *zid, *cid, *pw, *end;

    if (strcmp(resp, "=") != 0) {
        len = b64_strict(resp, d, sizeof(d) - 1);
        if (len < 0) {
            explicit_bzero(d, sizeof(d));
            bad(s, "Invalid base64 data");
            return;
        }
    }
    d[len] = '\0';
    zid = d;
    end = d + len;
    cid = memchr(zid, '\0', (size_t)len) ? zid + strlen(zid) + 1 : NULL;
    pw = cid && cid < end && memchr(cid, '\0', (size_t)(end - cid)) ? cid + strlen(cid) + 1
                                                                   : NULL;
    if (!pw || pw > end || memchr(pw, '\0', (size_t)(end - pw)) ||
        (*zid && strcmp(zid, cid) != 0)) {
        /* malformed, or acting for somebody else (not offered) */
        explicit_bzero(d, sizeof(d));
        auth_failed(s);
        return;
    }
    login(s, *zid ? zid : NULL, cid, pw);
    explicit_bzero(d, sizeof(d));
}

static void sasl_response(struct pop3_session *s, const char *line)
{
    s->in_sasl = false;
    if (strcmp(line, "*") == 0) {
        reply_err(s, NULL, "Authentication cancelled");
        return;
    }
    sasl_plain(s, line);
}

/* ------------------------------------------------------------------ */
/* Commands */

typedef void command_fn(struct pop3_session *s, int argc, char **argv);

static bool no_args(struct pop3_session *s, int argc, const char *usage)
{
    if (argc == 0)
        return true;
    bad(s, usage);
    return false;
}

static void cmd_capa(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: CAPA"))
        return;
    out_str(s, "+OK Capability list follows\r\n"
               "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    if (s->phase == PH_AUTHORIZATION) {
        if (login_allowed(s))
            out_str(s, "USER\r\nSASL PLAIN\r\n");
        if (!s->tls && s->cfg.tls_available)
            out_str(s, "STLS\r\n");
    }
    out_str(s, "IMPLEMENTATION correod\r\n.\r\n");
}

static bool check_plaintext(struct pop3_session *s)
{
    if (login_allowed(s))
        return true;
    status_line(s, false, "AUTH", "Plaintext authentication disallowed without TLS");
    count_error(s);
    return false;
}

static void cmd_user(struct pop3_session *s, int argc, char **argv)
{
    if (argc != 1) {
        bad(s, "Syntax: USER name");
        return;
    }
    if (!check_plaintext(s))
        return;
    forget_user_arg(s);
    s->user_arg = xstrdup(argv[0]);
    reply_ok(s, "%s", "");
}

/* argv[0] is the rest of the line after "PASS ", or argc is 0. */
static void cmd_pass(struct pop3_session *s, int argc, char **argv)
{
    char *user;

    if (argc != 1) {
        bad(s, "Syntax: PASS password");
        return;
    }
    if (!check_plaintext(s))
        return;
    if (!s->user_arg) {
        bad(s, "USER first");
        return;
    }
    user = s->user_arg;
    s->user_arg = NULL;
    login(s, NULL, user, argv[0]);
    explicit_bzero(user, strlen(user));
    free(user);
}

static void cmd_auth(struct pop3_session *s, int argc, char **argv)
{
    if (argc == 0) {
        out_str(s, "+OK\r\n");
        if (login_allowed(s))
            out_str(s, "PLAIN\r\n");
        out_str(s, ".\r\n");
        return;
    }
    if (argc > 2) {
        bad(s, "Syntax: AUTH mechanism [initial-response]");
        return;
    }
    if (!check_plaintext(s))
        return;
    if (strcasecmp(argv[0], "PLAIN") != 0) {
        bad(s, "Unsupported authentication mechanism");
        return;
    }
    forget_user_arg(s);
    if (argc == 2) {
        sasl_plain(s, argv[1]);
        return;
    }
    s->in_sasl = true;
    out_str(s, "+ \r\n");
}

static void cmd_stls(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: STLS"))
        return;
    if (s->tls) {
        bad(s, "TLS already active");
        return;
    }
    if (!s->cfg.tls_available) {
        bad(s, "STLS not available");
        return;
    }
    reply_ok(s, "Begin TLS negotiation");
    s->wait = POP3_WAIT_STLS;
}

static void cmd_quit(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: QUIT"))
        return;
    if (s->phase == PH_AUTHORIZATION) {
        signoff(s, "");
        return;
    }
    /* the UPDATE state */
    if (s->hooks.update) {
        s->wait = POP3_WAIT_UPDATE;
        s->hooks.update(s->ctx, s->marks, s->n_msgs);
        return;
    }
    s->wait = POP3_WAIT_UPDATE;
    pop3_session_updated(s, true);
}

static void cmd_stat(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: STAT"))
        return;
    reply_ok(s, "%zu %" PRIu64, s->n_live, s->live_octets);
}

static void cmd_list(struct pop3_session *s, int argc, char **argv)
{
    size_t i;

    if (argc > 1) {
        bad(s, "Syntax: LIST [msg]");
        return;
    }
    if (argc == 1) {
        if (msg_arg(s, argv[0], &i))
            reply_ok(s, "%zu %" PRIu64, i + 1, s->msgs[i].size);
        return;
    }
    reply_ok(s, "%zu message%s (%" PRIu64 " octets)", s->n_live, plural(s->n_live),
             s->live_octets);
    start_listing(s, LR_LIST);
}

static void cmd_uidl(struct pop3_session *s, int argc, char **argv)
{
    size_t i;

    if (argc > 1) {
        bad(s, "Syntax: UIDL [msg]");
        return;
    }
    if (argc == 1) {
        if (msg_arg(s, argv[0], &i))
            reply_ok(s, "%zu %s", i + 1, s->msgs[i].uidl);
        return;
    }
    reply_ok(s, "%s", "");
    start_listing(s, LR_UIDL);
}

static void cmd_retr(struct pop3_session *s, int argc, char **argv)
{
    size_t i;

    if (argc != 1) {
        bad(s, "Syntax: RETR msg");
        return;
    }
    if (msg_arg(s, argv[0], &i))
        start_msg(s, i, false, 0);
}

static void cmd_top(struct pop3_session *s, int argc, char **argv)
{
    size_t i;
    uint64_t lines;

    if (argc != 2) {
        bad(s, "Syntax: TOP msg n");
        return;
    }
    if (!parse_u64(argv[1], &lines)) {
        bad(s, "Invalid number of lines");
        return;
    }
    if (msg_arg(s, argv[0], &i))
        start_msg(s, i, true, lines);
}

static void cmd_dele(struct pop3_session *s, int argc, char **argv)
{
    size_t i;

    if (argc != 1) {
        bad(s, "Syntax: DELE msg");
        return;
    }
    if (!msg_arg(s, argv[0], &i))
        return;
    s->marks[i] |= POP3_MARK_DELETED;
    s->n_live--;
    s->live_octets -= s->msgs[i].size;
    reply_ok(s, "message %zu deleted", i + 1);
}

static void cmd_rset(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: RSET"))
        return;
    s->n_live = s->n_msgs;
    s->live_octets = 0;
    for (size_t i = 0; i < s->n_msgs; i++) {
        s->marks[i] &= (unsigned char)~POP3_MARK_DELETED;
        s->live_octets += s->msgs[i].size;
    }
    reply_ok(s, "maildrop has %zu message%s (%" PRIu64 " octets)", s->n_live,
             plural(s->n_live), s->live_octets);
}

static void cmd_noop(struct pop3_session *s, int argc, char **argv)
{
    (void)argv;
    if (!no_args(s, argc, "Syntax: NOOP"))
        return;
    reply_ok(s, "%s", "");
}

struct command {
    const char *verb;
    unsigned phases;                 /* PH_* bits */
    command_fn *fn;
};

#define ANY (PH_AUTHORIZATION | PH_TRANSACTION)

static const struct command commands[] = {
    {"CAPA", ANY, cmd_capa},
    {"USER", PH_AUTHORIZATION, cmd_user},
    {"PASS", PH_AUTHORIZATION, cmd_pass},
    {"AUTH", PH_AUTHORIZATION, cmd_auth},
    {"STLS", PH_AUTHORIZATION, cmd_stls},
    {"QUIT", ANY, cmd_quit},
    {"STAT", PH_TRANSACTION, cmd_stat},
    {"LIST", PH_TRANSACTION, cmd_list},
    {"UIDL", PH_TRANSACTION, cmd_uidl},
    {"RETR", PH_TRANSACTION, cmd_retr},
    {"TOP", PH_TRANSACTION, cmd_top},
    {"DELE", PH_TRANSACTION, cmd_dele},
    {"RSET", PH_TRANSACTION, cmd_rset},
    {"NOOP", PH_TRANSACTION, cmd_noop},
};

/* ------------------------------------------------------------------ */
/* Command lines */

static void strip_trailing_space(char *l, size_t *n)
{
    while (*n && (l[*n - 1] == ' ' || l[*n - 1] == '\t'))
        l[--*n] = '\0';
}

static void handle_line(struct pop3_session *s)
{
    bool overlong = s->line_overlong;
    char empty[1] = "";
    char *l, *argv[MAX_ARGS + 1];
    int argc = 0;
    size_t n, vlen;
    const struct command *cmd = NULL;

    s->line_overlong = false;
    if (overlong) {
        s->in_sasl = false;
        bad(s, "Line too long");
        return;
    }
    n = s->line.len;
    if (n && s->line.data[n - 1] == '\r')
        n--;
    buf_truncate(&s->line, n);
    l = s->line.data ? s->line.data : empty;
    if (memchr(l, '\0', n) || memchr(l, '\r', n)) {
        s->in_sasl = false;
        bad(s, "Syntax error: NUL or CR in command");
        return;
    }
    if (s->in_sasl) {
        strip_trailing_space(l, &n);
        sasl_response(s, l);
        return;
    }
    vlen = strcspn(l, " ");
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strlen(commands[i].verb) == vlen && strncasecmp(l, commands[i].verb, vlen) == 0) {
            cmd = &commands[i];
            break;
        }
    }
    if (cmd && cmd->fn == cmd_pass) {
        /* the password is the rest of the line, as it is */
        if (l[vlen] == ' ')
            argv[argc++] = l + vlen + 1;
    } else {
        char *p = l + vlen;
        strip_trailing_space(l, &n);
        while (*p) {
            *p++ = '\0';
            while (*p == ' ')
                *p++ = '\0';
            if (!*p)
                break;
            if (argc == MAX_ARGS + 1) {
                argc++;
                break;
            }
            argv[argc++] = p;
            p += strcspn(p, " ");
        }
    }
    if (!cmd) {
        bad(s, vlen ? "Unknown command" : "Empty command");
        return;
    }
    if (!(cmd->phases & s->phase)) {
        bad(s, s->phase == PH_AUTHORIZATION ? "Not logged in" : "Already logged in");
        return;
    }
    cmd->fn(s, argc, argv);
}

/* Collect a command line; process it when its LF arrives. */
static size_t line_feed(struct pop3_session *s, const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    size_t content = lf ? (size_t)(lf - p) : n;

    if (!s->line_overlong && buf_append(&s->line, p, content) < 0) {
        s->line_overlong = true;
        if (s->line.data)
            explicit_bzero(s->line.data, s->line.len);
        buf_reset(&s->line);
    }
    if (!lf)
        return n;
    handle_line(s);
    if (s->line.data)
        explicit_bzero(s->line.data, s->line.cap);
    buf_reset(&s->line);
    return content + 1;
}

/* ------------------------------------------------------------------ */
/* Public interface */

struct pop3_session *pop3_session_new(const struct pop3_session_cfg *cfg,
                                      const struct pop3_hooks *hooks, void *ctx)
{
    struct pop3_session *s = XNEW(struct pop3_session);

    s->cfg = *cfg;
    s->hostname = xstrdup(cfg->hostname ? cfg->hostname : "localhost");
    s->peer_addr = xstrdup(cfg->peer_addr ? cfg->peer_addr : "");
    s->cfg.hostname = s->hostname;
    s->cfg.peer_addr = s->peer_addr;
    s->hooks = *hooks;
    s->ctx = ctx;
    buf_init(&s->out, 0);
    /* the line without its LF: CR included, POP3_LINE_MAX with the LF */
    buf_init(&s->line, POP3_LINE_MAX - 1);
    s->tls = cfg->tls_active;
    s->wait = POP3_READY;
    s->phase = PH_AUTHORIZATION;
    reply_ok(s, "%s POP3 server ready", s->hostname);
    return s;
}

void pop3_session_free(struct pop3_session *s)
{
    if (!s)
        return;
    close_msg(s);
    forget_user_arg(s);
    if (s->line.data)
        explicit_bzero(s->line.data, s->line.cap);
    buf_free(&s->line);
    buf_free(&s->out);
    pop3_msgs_free(s->msgs, s->n_msgs);
    free(s->marks);
    free(s->chunk);
    free(s->user);
    free(s->hostname);
    free(s->peer_addr);
    free(s);
}

size_t pop3_session_feed(struct pop3_session *s, const char *data, size_t len)
{
    size_t i = 0;

    while (i < len && s->wait == POP3_READY) {
        i += line_feed(s, data + i, len - i);
        check_shutdown(s);
    }
    return i;
}

void pop3_session_eof(struct pop3_session *s)
{
    s->eof = true;
    s->in_sasl = false;
    if (s->wait == POP3_WAIT_UPDATE)
        return;
    abandon_reply(s);
    s->wait = POP3_CLOSE;
}

enum pop3_wait pop3_session_state(const struct pop3_session *s)
{
    return s->wait;
}

const char *pop3_session_output(const struct pop3_session *s, size_t *len)
{
    *len = s->out.len;
    return buf_cstr(&s->out);
}

void pop3_session_output_clear(struct pop3_session *s)
{
    /* Between replies, give back what a long one made the buffer grow to. */
    if (s->lr == LR_NONE && s->out.cap > IDLE_OUTPUT_CAP) {
        buf_free(&s->out);
        buf_init(&s->out, 0);
        return;
    }
    buf_reset(&s->out);
}

void pop3_session_more(struct pop3_session *s)
{
    if (s->wait != POP3_WAIT_OUTPUT)
        return;
    produce(s);
}

void pop3_session_tls_started(struct pop3_session *s)
{
    if (s->wait != POP3_WAIT_STLS)
        return;
    forget_user_arg(s);
    s->in_sasl = false;
    s->line_overlong = false;
    buf_reset(&s->line);
    s->tls = true;
    s->wait = POP3_READY;
    check_shutdown(s);
}

unsigned pop3_session_pause_ms(const struct pop3_session *s)
{
    unsigned f = s->auth_failures;

    if (f == 0)
        return 0;
    if (f > 6)
        f = 6;
    return 500u << (f - 1);
}

void pop3_session_resume(struct pop3_session *s)
{
    if (s->wait != POP3_WAIT_PAUSE)
        return;
    s->wait = POP3_READY;
    if (s->close_after_pause) {
        s->close_after_pause = false;
        close_with(s, NULL, "Too many bad commands, closing connection");
        return;
    }
    check_shutdown(s);
}

void pop3_session_updated(struct pop3_session *s, bool ok)
{
    char left[64];

    if (s->wait != POP3_WAIT_UPDATE)
        return;
    if (!ok) {
        close_with(s, "SYS/TEMP", "some deleted messages not removed");
        return;
    }
    if (s->n_live == 0)
        snprintf(left, sizeof(left), " (maildrop empty)");
    else
        snprintf(left, sizeof(left), " (%zu message%s left)", s->n_live, plural(s->n_live));
    signoff(s, left);
}

void pop3_session_timeout(struct pop3_session *s)
{
    if (s->wait == POP3_CLOSE || s->wait == POP3_WAIT_UPDATE)
        return;
    s->in_sasl = false;
    if (s->lr != LR_NONE) {
        abandon_reply(s);
        s->wait = POP3_CLOSE;
        return;
    }
    close_with(s, NULL, "Disconnected for inactivity");
}

void pop3_session_shutdown(struct pop3_session *s)
{
    s->shutdown = true;
    check_shutdown(s);
}

const char *pop3_session_user(const struct pop3_session *s)
{
    return s->phase == PH_TRANSACTION ? s->user : NULL;
}

bool pop3_session_expects_secret(const struct pop3_session *s)
{
    return s->in_sasl;
}

unsigned pop3_session_auth_failures(const struct pop3_session *s)
{
    return s->auth_failures;
}

uint64_t pop3_crlf_octets(const char *data, size_t len, bool *after_cr)
{
    uint64_t n = len;
    bool cr = *after_cr;
    const char *p = data, *end = data + len;

    while (p < end) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        if (!lf)
            break;
        if (!(lf > p ? lf[-1] == '\r' : cr))
            n++;
        cr = false;
        p = lf + 1;
    }
    if (len)
        *after_cr = data[len - 1] == '\r';
    return n;
}
