/*
 * fuzz_smtp: localserver/smtp_proto on hostile client bytes.
 *
 * Byte 0 chooses the session: bits 0-1 the listener (3: MX already in
 * TLS), bit 2 STARTTLS available, bit 3 a loopback peer allowed to AUTH in
 * plain text, bit 4 feeding in small pieces, bit 5 small limits, bit 6 a
 * shutdown half-way, bit 7 VRFY enabled and a timeout at the end.  The rest
 * is what the client sends.  The hooks decide from the bytes they are given
 * (a hash of the address, the password), deliveries complete at once and
 * STARTTLS "succeeds" after dropping what was buffered.
 *
 * Checked: every reply line is "ddd" then " " or "-" then text then CRLF,
 * with a code from 200 to 599 and multi-line replies of one code; the
 * output is bounded by the input; feed() consumes everything while the
 * session is ready and nothing while it waits; a delivered envelope is
 * within the limits with valid UTF-8 addresses (non-ASCII only with
 * SMTPUTF8); a message that came through DATA has only CRLF line ends and
 * never holds more than max_message_size or longer lines than allowed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "smtp_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    struct smtp_session_cfg cfg;
    struct smtp_session *s;
    char last_reply[4];              /* code of the last reply line seen */
    bool have_last;
    size_t out_total;
    size_t deliveries;
};

static unsigned hash(const char *s)
{
    unsigned h = 5381;

    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

static enum smtp_rcpt_verdict fz_rcpt(void *ctx, const char *auth_user, const char *addr)
{
    static const enum smtp_rcpt_verdict v[] = {SMTP_RCPT_LOCAL, SMTP_RCPT_LOCAL,
                                               SMTP_RCPT_REMOTE, SMTP_RCPT_UNKNOWN,
                                               SMTP_RCPT_TEMPFAIL};
    (void)ctx;
    (void)auth_user;
    fuzz_check_utf8_str("rcpt hook address", addr);
    return v[hash(addr) % 5];
}

static bool fz_may_send_as(void *ctx, const char *auth_user, const char *addr)
{
    (void)ctx;
    if (!auth_user)
        fuzz_fail("may_send_as without a user", "", 0);
    return addr[0] != 'x';
}

static int fz_auth(void *ctx, const char *authzid, const char *authcid, const char *password,
                   char **canonical)
{
    (void)ctx;
    if (authzid && strcmp(authzid, authcid) != 0)
        fuzz_fail("auth hook with a foreign authzid", authzid, strlen(authzid));
    if (!*authcid)
        fuzz_fail("auth hook with an empty user", "", 0);
    if (strcmp(password, "secret") == 0) {
        *canonical = strdup(authcid);
        if (!*canonical)
            abort();
        return 1;
    }
    return strncmp(password, "temp", 4) == 0 ? -1 : 0;
}

static void check_msg(const struct fz *f, const struct buf *msg, bool from_data)
{
    size_t line = 0;

    if (f->cfg.max_message_size && msg->len > f->cfg.max_message_size)
        fuzz_fail("message over max_message_size", msg->data, msg->len);
    if (!from_data)
        return;
    for (size_t i = 0; i < msg->len; i++) {
        char c = msg->data[i];
        if (c == '\r') {
            if (i + 1 >= msg->len || msg->data[i + 1] != '\n')
                fuzz_fail("bare CR in a DATA message", msg->data, msg->len);
            i++;
            line = 0;
        } else if (c == '\n') {
            fuzz_fail("bare LF in a DATA message", msg->data, msg->len);
        } else if (++line > f->cfg.max_line_length && f->cfg.max_line_length) {
            fuzz_fail("DATA line over max_line_length", msg->data, msg->len);
        }
    }
    if (line != 0)
        fuzz_fail("DATA message without a final CRLF", msg->data, msg->len);
}

static void check_addr(const char *what, const char *a, bool smtputf8)
{
    bool ascii = true;

    fuzz_check_utf8_str(what, a);
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p >= 0x80)
            ascii = false;
    if (!ascii && !smtputf8)
        fuzz_fail("non-ASCII address without SMTPUTF8", a, strlen(a));
    if (strlen(a) > 256)
        fuzz_fail("address over the path limit", a, strlen(a));
}

static void fz_deliver(void *ctx, struct smtp_envelope *env, struct buf *msg)
{
    struct fz *f = ctx;
    size_t n;
    const char *out = smtp_session_output(f->s, &n);
    bool from_data;

    /* The last reply before the end of a DATA message is its 354. */
    if (n >= 2) {
        size_t i = n - 2;
        while (i > 0 && out[i - 1] != '\n')
            i--;
        from_data = n - i >= 3 && memcmp(out + i, "354", 3) == 0;
    } else {
        from_data = f->have_last && memcmp(f->last_reply, "354", 3) == 0;
    }
    f->deliveries++;
    if (env->n_rcpts == 0)
        fuzz_fail("delivery without recipients", "", 0);
    if (env->n_rcpts > (f->cfg.max_recipients ? f->cfg.max_recipients : 100))
        fuzz_fail("more recipients than allowed", "", 0);
    check_addr("mail from", env->mail_from, env->smtputf8);
    for (size_t i = 0; i < env->n_rcpts; i++) {
        const struct smtp_rcpt *r = &env->rcpts[i];
        check_addr("rcpt", r->addr, env->smtputf8);
        if (r->verdict != SMTP_RCPT_LOCAL && r->verdict != SMTP_RCPT_REMOTE)
            fuzz_fail("accepted recipient with a refusing verdict", r->addr, strlen(r->addr));
        if (r->verdict == SMTP_RCPT_REMOTE && !env->auth_user)
            fuzz_fail("relay without authentication", r->addr, strlen(r->addr));
        if ((r->notify & SMTP_NOTIFY_NEVER) && r->notify != SMTP_NOTIFY_NEVER)
            fuzz_fail("NOTIFY=NEVER with others", "", 0);
        fuzz_check_utf8_str("orcpt", r->orcpt);
        if (r->orcpt)
            for (const char *p = r->orcpt; *p; p++)
                if ((unsigned char)*p < 32 || *p == 127)
                    fuzz_fail("control character in ORCPT", r->orcpt, strlen(r->orcpt));
    }
    if (env->envid)
        for (const char *p = env->envid; *p; p++)
            if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                fuzz_fail("ENVID not printable ASCII", env->envid, strlen(env->envid));
    if (f->cfg.listener != SMTP_LISTENER_MX && !env->auth_user)
        fuzz_fail("submission without authentication", "", 0);
    if (!env->helo)
        fuzz_fail("delivery without EHLO/HELO", "", 0);
    (void)smtp_envelope_protocol(env);
    check_msg(f, msg, from_data);
    smtp_envelope_free(env);
    buf_free(msg);
    free(msg);
}

static const struct smtp_hooks fz_hooks = {fz_rcpt, fz_may_send_as, fz_auth, fz_deliver};

/* Check and drop what the session wrote since the last time. */
static void drain(struct fz *f, size_t in_lines)
{
    size_t n, i = 0;
    const char *out = smtp_session_output(f->s, &n);

    while (i < n) {
        const char *nl = memchr(out + i, '\n', n - i);
        size_t len;
        if (!nl)
            fuzz_fail("reply without CRLF", out + i, n - i);
        len = (size_t)(nl - (out + i)) + 1;
        if (len < 6 || out[i + len - 2] != '\r')
            fuzz_fail("reply line shape", out + i, len);
        if (out[i] < '2' || out[i] > '5' || out[i + 1] < '0' || out[i + 1] > '9' ||
            out[i + 2] < '0' || out[i + 2] > '9' || (out[i + 3] != ' ' && out[i + 3] != '-'))
            fuzz_fail("reply code", out + i, len);
        for (size_t k = 4; k + 2 < len; k++)
            if (out[i + k] == '\r' || out[i + k] == '\n' || out[i + k] == '\0')
                fuzz_fail("control in a reply", out + i, len);
        if (f->have_last && f->last_reply[3] == '-' && memcmp(f->last_reply, out + i, 3) != 0)
            fuzz_fail("multi-line reply changes its code", out + i, len);
        memcpy(f->last_reply, out + i, 4);
        f->have_last = true;
        i += len;
    }
    f->out_total += n;
    /* the largest reply (EHLO) is under 300 bytes, plus a 421 */
    if (f->out_total > 400 * (in_lines + 2))
        fuzz_fail("output out of proportion to the input", "", 0);
    smtp_session_output_clear(f->s);
}

/* Serve the session's wait; false once it is closed. */
static bool serve(struct fz *f, size_t in_lines, bool *drop_rest)
{
    for (;;) {
        enum smtp_wait w = smtp_session_state(f->s);
        size_t n;
        if (w != SMTP_READY && w != SMTP_CLOSE && smtp_session_feed(f->s, "x", 1) != 0)
            fuzz_fail("feed consumed input while waiting", "", 0);
        switch (w) {
        case SMTP_READY:
            return true;
        case SMTP_CLOSE:
            drain(f, in_lines);
            if (smtp_session_feed(f->s, "NOOP\r\n", 6) != 0)
                fuzz_fail("feed after close", "", 0);
            smtp_session_output(f->s, &n);
            if (n)
                fuzz_fail("output after close", "", 0);
            return false;
        case SMTP_WAIT_DELIVERY:
            if (!smtp_session_in_transaction(f->s))
                fuzz_fail("delivery outside a transaction", "", 0);
            drain(f, in_lines);
            smtp_session_delivered(f->s, f->deliveries % 3 == 0 ? 250 : 451, "2.0.0", "done");
            break;
        case SMTP_WAIT_STARTTLS:
            drain(f, in_lines);
            *drop_rest = true;
            smtp_session_tls_started(f->s);
            if (smtp_session_in_transaction(f->s))
                fuzz_fail("transaction survived STARTTLS", "", 0);
            break;
        case SMTP_WAIT_PAUSE:
            if (smtp_session_pause_ms(f->s) == 0 || smtp_session_auth_failures(f->s) == 0)
                fuzz_fail("pause without an AUTH failure", "", 0);
            drain(f, in_lines);
            smtp_session_resume(f->s);
            break;
        default:
            fuzz_fail("unknown state", "", 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f;
    uint8_t opt;
    const char *in;
    size_t len, pos = 0, lines = 0;
    uint32_t rng;
    bool open = true;

    if (size < 1)
        return 0;
    opt = data[0];
    in = (const char *)data + 1;
    len = size - 1;
    for (size_t i = 0; i < len; i++)
        lines += in[i] == '\n';

    memset(&f, 0, sizeof(f));
    f.cfg.listener = (enum smtp_listener)(opt & 3) == 3 ? SMTP_LISTENER_MX
                                                        : (enum smtp_listener)(opt & 3);
    f.cfg.tls_active = (opt & 3) == 3 || (opt & 3) == SMTP_LISTENER_SUBMISSIONS;
    f.cfg.tls_available = (opt & 4) != 0;
    f.cfg.peer_loopback = (opt & 8) != 0;
    f.cfg.auth_plaintext_loopback = (opt & 8) != 0;
    f.cfg.hostname = "mx.fuzz.test";
    f.cfg.peer_addr = "192.0.2.9";
    f.cfg.vrfy = (opt & 128) != 0;
    if (opt & 32) {
        f.cfg.max_message_size = 256;
        f.cfg.max_line_length = 40;
        f.cfg.max_recipients = 3;
        f.cfg.max_errors = 3;
    } else {
        f.cfg.max_message_size = 65536;
        f.cfg.max_line_length = 998;
        f.cfg.max_recipients = 50;
        f.cfg.max_errors = 20;
    }
    f.s = smtp_session_new(&f.cfg, &fz_hooks, &f);
    drain(&f, lines);
    rng = (uint32_t)size * 2654435761u + 1;

    while (open && pos < len) {
        size_t n = len - pos, used;
        bool drop = false;
        if (opt & 16) {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % 23;
            if (n > len - pos)
                n = len - pos;
        }
        if ((opt & 64) && pos < len / 2 && pos + n >= len / 2)
            smtp_session_shutdown(f.s);
        used = smtp_session_feed(f.s, in + pos, n);
        if (used > n)
            fuzz_fail("feed used more than it was given", "", 0);
        if (smtp_session_state(f.s) == SMTP_READY && used != n)
            fuzz_fail("feed stopped while ready", "", 0);
        pos += used;
        drain(&f, lines);
        open = serve(&f, lines, &drop);
        if (drop) {
            /* the rest of this read arrived before the handshake */
            pos += n - used;
        }
    }
    if (open) {
        if (opt & 128)
            smtp_session_timeout(f.s);
        else
            smtp_session_eof(f.s);
        drain(&f, lines);
        if (smtp_session_state(f.s) != SMTP_CLOSE && smtp_session_state(f.s) != SMTP_WAIT_DELIVERY)
            fuzz_fail("session not closed at the end", "", 0);
    }
    smtp_session_free(f.s);
    return 0;
}
