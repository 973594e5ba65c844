/*
 * fuzz_pop3d: localserver/pop3_proto on hostile client bytes.
 *
 * Byte 0 chooses the session: bit 0 already in TLS, bit 1 STLS available,
 * bit 2 a loopback peer allowed to log in in plain text, bit 3 feeding in
 * small pieces, bit 4 messages read in small chunks, bit 5 small limits
 * (and reading message 4 fails half-way), bit 6 a shutdown half-way, bit 7
 * a timeout at the end (else the end of input).  The rest is what the
 * client sends; it is also message 2 of the maildrop, so RETR and TOP
 * convert hostile bytes too.  The hooks: password "secret" is right for
 * every user but "locked" (maildrop locked) and "broken" (cannot be
 * opened), a user starting with "temp" fails temporarily; STLS "succeeds"
 * after dropping what was buffered; every other update fails.
 *
 * Checked: every LF of the output ends a CRLF, and the output is whole
 * lines whenever the session is not in the middle of a long reply; the
 * output outside RETR/TOP replies is bounded by the input, and each
 * pop3_session_more() appends at most 2 * POP3_OUTPUT_CHUNK + 8 bytes;
 * feed() consumes everything while the session is ready and nothing while
 * it waits; the hooks are called in order (open after a successful auth
 * for that user, one message open at a time, update only when logged in,
 * with marks from POP3_MARK_*); a RETR reply is exactly "+OK <size>
 * octets" and the message converted by an independent reference (CRLF,
 * dot-stuffing, final line end, "." CRLF), with <size> equal to
 * pop3_crlf_octets(); a TOP reply is a prefix of that conversion cut at a
 * line end; a reply cut short by a failure is a prefix too.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_check.h"
#include "pop3_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_MSGS 4

struct fz {
    struct pop3_session *s;
    uint8_t opt;
    const char *msg[N_MSGS];
    size_t msg_len[N_MSGS];
    uint32_t rng;

    char *authed;                    /* user the auth hook last accepted */
    bool logged_in;
    unsigned updates;

    long open_idx;                   /* -1: none */
    size_t offset;
    unsigned reads;
    bool abandoning;                 /* a reply may be cut short now */
    bool capturing;                  /* a RETR/TOP reply is being captured */
    size_t cap_skip;                 /* output bytes before the reply began */
    struct buf seg;                  /* the reply so far */
    size_t msg_bytes;                /* output that was message replies */
    size_t out_total;
    char last;                       /* last output byte drained */
};

static const char msg0[] = "Subject: a\n\nbody\n.\n..\nend";
static const char msg3[] = "\r\n.\r\n\r\r\n\n.x\r";

static uint32_t next_rng(struct fz *f)
{
    f->rng = f->rng * 1103515245u + 12345u;
    return f->rng >> 16;
}

static int fz_auth(void *ctx, const char *authzid, const char *authcid, const char *password,
                   char **canonical)
{
    struct fz *f = ctx;

    if (f->logged_in)
        fuzz_fail("auth hook after login", "", 0);
    if (authzid && strcmp(authzid, authcid) != 0)
        fuzz_fail("auth hook with a foreign authzid", authzid, strlen(authzid));
    if (!*authcid)
        fuzz_fail("auth hook with an empty user", "", 0);
    if (strncmp(authcid, "temp", 4) == 0)
        return -1;
    if (strcmp(password, "secret") != 0)
        return 0;
    *canonical = strdup(authcid);
    if (!*canonical)
        abort();
    free(f->authed);
    f->authed = strdup(authcid);
    if (!f->authed)
        abort();
    return 1;
}

static enum pop3_open fz_open(void *ctx, const char *user, struct pop3_msg **msgs, size_t *n)
{
    struct fz *f = ctx;

    if (!f->authed || strcmp(user, f->authed) != 0)
        fuzz_fail("open hook without a successful auth", user, strlen(user));
    free(f->authed);
    f->authed = NULL;
    if (strcmp(user, "locked") == 0)
        return POP3_OPEN_LOCKED;
    if (strcmp(user, "broken") == 0)
        return POP3_OPEN_FAIL;
    *n = N_MSGS;
    *msgs = calloc(N_MSGS, sizeof(**msgs));
    if (!*msgs)
        abort();
    for (size_t i = 0; i < N_MSGS; i++) {
        bool cr = false;
        char u[16];
        (*msgs)[i].size = pop3_crlf_octets(f->msg[i], f->msg_len[i], &cr);
        snprintf(u, sizeof(u), "uid-%zu", i);
        (*msgs)[i].uidl = strdup(u);
        if (!(*msgs)[i].uidl)
            abort();
    }
    f->logged_in = true;
    return POP3_OPEN_OK;
}

/* The reply RETR must give for message idx, by a plain byte loop. */
static void reference(const struct fz *f, size_t idx, struct buf *b)
{
    const char *m = f->msg[idx];
    size_t n = f->msg_len[idx];
    bool bol = true;
    bool cr_before;
    uint64_t size = 0;

    for (size_t i = 0; i < n; i++) {
        char c = m[i];
        if (bol && c == '.' && buf_putc(b, '.') < 0)
            abort();
        if (c == '\n') {
            cr_before = i > 0 && m[i - 1] == '\r';
            if (!cr_before) {
                if (buf_putc(b, '\r') < 0)
                    abort();
                size++;
            }
            bol = true;
        } else {
            bol = false;
        }
        if (buf_putc(b, c) < 0)
            abort();
        size++;
    }
    if (!bol && buf_puts(b, "\r\n") < 0)
        abort();
    {
        bool c2 = false;
        if (pop3_crlf_octets(m, n, &c2) != size)
            fuzz_fail("pop3_crlf_octets disagrees with the reference", m, n);
    }
}

/* Check a captured RETR/TOP reply; complete: it ended normally. */
static void check_reply(struct fz *f, size_t idx, bool complete)
{
    struct buf want = BUF_INIT;
    const char *got = buf_cstr(&f->seg);
    size_t got_len = f->seg.len;
    const char *nl = memchr(got, '\n', got_len);
    size_t head_len, body_len;
    char head[64];
    bool cr = false;
    bool top;

    if (!nl) {
        if (complete)
            fuzz_fail("message reply without a status line", got, got_len);
        return;
    }
    head_len = (size_t)(nl - got) + 1;
    top = head_len == 5 && memcmp(got, "+OK\r\n", 5) == 0;
    snprintf(head, sizeof(head), "+OK %llu octets\r\n",
             (unsigned long long)pop3_crlf_octets(f->msg[idx], f->msg_len[idx], &cr));
    if (!top && (head_len != strlen(head) || memcmp(got, head, head_len) != 0))
        fuzz_fail("RETR status line", got, head_len);
    reference(f, idx, &want);
    body_len = got_len - head_len;
    if (top && complete) {
        /* a prefix of the conversion cut at a line end, then "." CRLF */
        if (body_len < 3 || memcmp(got + got_len - 3, ".\r\n", 3) != 0)
            fuzz_fail("TOP reply without its end", got, got_len);
        if (body_len > 3 && got[got_len - 4] != '\n')
            fuzz_fail("TOP reply cut inside a line", got, got_len);
        if (body_len - 3 > want.len ||
            memcmp(got + head_len, buf_cstr(&want), body_len - 3) != 0)
            fuzz_fail("TOP reply is not a prefix of the conversion", got, got_len);
    }
    if (buf_puts(&want, ".\r\n") < 0)
        abort();
    if (!complete &&
        (body_len > want.len || memcmp(got + head_len, buf_cstr(&want), body_len) != 0))
        fuzz_fail("message reply cut short is not a prefix of the conversion", got, got_len);
    if (!top && complete &&
        (body_len != want.len || memcmp(got + head_len, buf_cstr(&want), want.len) != 0))
        fuzz_fail("RETR reply differs from the reference", got, got_len);
    buf_free(&want);
}

static void capture(struct fz *f)
{
    size_t n;
    const char *out = pop3_session_output(f->s, &n);

    if (!f->capturing)
        return;
    if (n > f->cap_skip) {
        if (buf_append(&f->seg, out + f->cap_skip, n - f->cap_skip) < 0)
            abort();
        f->msg_bytes += n - f->cap_skip;
    }
    f->cap_skip = n;
}

static int fz_msg_open(void *ctx, size_t idx)
{
    struct fz *f = ctx;
    size_t n;

    if (!f->logged_in)
        fuzz_fail("msg_open before login", "", 0);
    if (f->open_idx >= 0)
        fuzz_fail("msg_open twice", "", 0);
    if (idx >= N_MSGS)
        fuzz_fail("msg_open of a message not listed", "", 0);
    f->open_idx = (long)idx;
    f->offset = 0;
    f->reads = 0;
    f->capturing = true;
    buf_reset(&f->seg);
    pop3_session_output(f->s, &n);
    f->cap_skip = n;
    return 0;
}

static ssize_t fz_msg_read(void *ctx, char *buf, size_t cap)
{
    struct fz *f = ctx;
    size_t idx, n;

    if (f->open_idx < 0)
        fuzz_fail("msg_read without msg_open", "", 0);
    idx = (size_t)f->open_idx;
    if ((f->opt & 32) && idx == 3 && f->reads > 0) {
        f->abandoning = true;
        return -1;
    }
    f->reads++;
    n = f->msg_len[idx] - f->offset;
    if (f->opt & 16) {
        size_t k = 1 + next_rng(f) % 7;
        if (n > k)
            n = k;
    }
    if (n > cap)
        n = cap;
    memcpy(buf, f->msg[idx] + f->offset, n);
    f->offset += n;
    return (ssize_t)n;
}

static void fz_msg_close(void *ctx)
{
    struct fz *f = ctx;
    size_t idx;
    bool complete;

    if (f->open_idx < 0)
        fuzz_fail("msg_close without msg_open", "", 0);
    idx = (size_t)f->open_idx;
    capture(f);
    complete = !f->abandoning;
    check_reply(f, idx, complete);
    f->abandoning = false;
    f->capturing = false;
    f->open_idx = -1;
}

static void fz_update(void *ctx, const unsigned char *marks, size_t n)
{
    struct fz *f = ctx;

    if (!f->logged_in)
        fuzz_fail("update before login", "", 0);
    if (n != N_MSGS)
        fuzz_fail("update with another number of messages", "", 0);
    for (size_t i = 0; i < n; i++)
        if (marks[i] & ~(POP3_MARK_DELETED | POP3_MARK_RETRIEVED))
            fuzz_fail("unknown mark", "", 0);
    f->updates++;
}

static const struct pop3_hooks fz_hooks = {fz_auth, fz_open, fz_msg_open, fz_msg_read,
                                           fz_msg_close, fz_update};

/* Check and drop what the session wrote since the last time. */
static void drain(struct fz *f, size_t in_lines)
{
    size_t n;
    const char *out;

    capture(f);
    out = pop3_session_output(f->s, &n);
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n' && (i == 0 ? f->last : out[i - 1]) != '\r')
            fuzz_fail("LF without CR in the output", out, n);
    if (n)
        f->last = out[n - 1];
    if (n && out[n - 1] != '\n' && pop3_session_state(f->s) != POP3_WAIT_OUTPUT &&
        pop3_session_state(f->s) != POP3_CLOSE)
        fuzz_fail("output ends inside a line", out, n);
    f->out_total += n;
    /* the largest other reply (CAPA) is under 200 bytes, plus a close */
    if (f->out_total - f->msg_bytes > 400 * (in_lines + 2))
        fuzz_fail("output out of proportion to the input", "", 0);
    pop3_session_output_clear(f->s);
    f->cap_skip = 0;
}

/* Serve the session's wait; false once it is closed. */
static bool serve(struct fz *f, size_t in_lines, bool *drop_rest)
{
    for (;;) {
        enum pop3_wait w = pop3_session_state(f->s);
        size_t n, before;
        if (w != POP3_READY && w != POP3_CLOSE && pop3_session_feed(f->s, "x", 1) != 0)
            fuzz_fail("feed consumed input while waiting", "", 0);
        switch (w) {
        case POP3_READY:
            return true;
        case POP3_CLOSE:
            drain(f, in_lines);
            if (pop3_session_feed(f->s, "NOOP\r\n", 6) != 0)
                fuzz_fail("feed after close", "", 0);
            pop3_session_output(f->s, &n);
            if (n)
                fuzz_fail("output after close", "", 0);
            return false;
        case POP3_WAIT_OUTPUT:
            drain(f, in_lines);
            pop3_session_more(f->s);
            pop3_session_output(f->s, &before);
            if (before > 2 * POP3_OUTPUT_CHUNK + 8)
                fuzz_fail("more() appended too much", "", 0);
            drain(f, in_lines);
            break;
        case POP3_WAIT_STLS:
            drain(f, in_lines);
            *drop_rest = true;
            pop3_session_tls_started(f->s);
            if (pop3_session_user(f->s))
                fuzz_fail("STLS after login", "", 0);
            break;
        case POP3_WAIT_PAUSE:
            if (pop3_session_pause_ms(f->s) == 0 || pop3_session_auth_failures(f->s) == 0)
                fuzz_fail("pause without a login failure", "", 0);
            drain(f, in_lines);
            pop3_session_resume(f->s);
            break;
        case POP3_WAIT_UPDATE:
            if (!pop3_session_user(f->s))
                fuzz_fail("update without a user", "", 0);
            drain(f, in_lines);
            pop3_session_updated(f->s, f->updates % 2 == 1);
            if (pop3_session_state(f->s) != POP3_CLOSE)
                fuzz_fail("session open after the update", "", 0);
            break;
        default:
            fuzz_fail("unknown state", "", 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pop3_session_cfg cfg;
    struct fz f;
    const char *in;
    size_t len, pos = 0, lines = 0;
    bool open = true;

    if (size < 1)
        return 0;
    in = (const char *)data + 1;
    len = size - 1;
    for (size_t i = 0; i < len; i++)
        lines += in[i] == '\n';

    memset(&f, 0, sizeof(f));
    f.opt = data[0];
    f.open_idx = -1;
    f.msg[0] = msg0;
    f.msg_len[0] = sizeof(msg0) - 1;
    f.msg[1] = in;
    f.msg_len[1] = len;
    f.msg[2] = "";
    f.msg_len[2] = 0;
    f.msg[3] = msg3;
    f.msg_len[3] = sizeof(msg3) - 1;
    f.rng = (uint32_t)size * 2654435761u + 1;

    memset(&cfg, 0, sizeof(cfg));
    cfg.hostname = "pop.fuzz.test";
    cfg.peer_addr = "192.0.2.9";
    cfg.tls_active = (f.opt & 1) != 0;
    cfg.tls_available = (f.opt & 2) != 0;
    cfg.peer_loopback = (f.opt & 4) != 0;
    cfg.auth_plaintext_loopback = (f.opt & 4) != 0;
    cfg.max_errors = (f.opt & 32) ? 3 : 20;
    f.s = pop3_session_new(&cfg, &fz_hooks, &f);
    drain(&f, lines);

    while (open && pos < len) {
        size_t n = len - pos, used;
        bool drop = false;
        if (f.opt & 8) {
            n = 1 + next_rng(&f) % 23;
            if (n > len - pos)
                n = len - pos;
        }
        if ((f.opt & 64) && pos < len / 2 && pos + n >= len / 2)
            pop3_session_shutdown(f.s);
        used = pop3_session_feed(f.s, in + pos, n);
        if (used > n)
            fuzz_fail("feed used more than it was given", "", 0);
        if (pop3_session_state(f.s) == POP3_READY && used != n)
            fuzz_fail("feed stopped while ready", "", 0);
        pos += used;
        drain(&f, lines);
        open = serve(&f, lines, &drop);
        if (drop) {
            /* the rest of this read arrived before the handshake */
            pos += n - used;
        }
    }
    f.abandoning = true;
    if (open) {
        if (f.opt & 128)
            pop3_session_timeout(f.s);
        else
            pop3_session_eof(f.s);
        drain(&f, lines);
        if (pop3_session_state(f.s) != POP3_CLOSE)
            fuzz_fail("session not closed at the end", "", 0);
    }
    pop3_session_free(f.s);
    if (f.open_idx >= 0)
        fuzz_fail("message left open", "", 0);
    free(f.authed);
    buf_free(&f.seg);
    return 0;
}
