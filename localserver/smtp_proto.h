/*
 * smtp_proto: one SMTP server session as a state machine, without I/O.
 *
 * The owner (server.c, or a test, or a fuzzer) feeds the bytes a client
 * sent and writes out what the session appended to its output buffer.  The
 * session never blocks and never touches a socket, a file or the clock:
 * everything it must ask (is this recipient ours, is this password right,
 * deliver this message) goes through struct smtp_hooks.
 *
 *   s = smtp_session_new(&cfg, &hooks, ctx);   greeting is now in out
 *   loop:
 *     n = smtp_session_feed(s, data, len);      consumes n <= len bytes
 *     write smtp_session_output(s), then smtp_session_output_clear(s)
 *     switch (smtp_session_state(s)) ...        see enum smtp_wait
 *
 * feed() stops early (n < len) only when the session waits for its owner:
 * a delivery in progress, a STARTTLS handshake, a pause after a failed
 * AUTH, or the end of the session.  The owner keeps the rest of the input
 * and feeds it again when the wait is over -- except after STARTTLS, where
 * the rest MUST be discarded (it arrived in plain text before the
 * handshake: CVE-2011-0411).
 *
 * Protocol (RFC 5321 and extensions):
 *  - EHLO/HELO, MAIL, RCPT, DATA, BDAT (RFC 3030), RSET, NOOP, QUIT, HELP,
 *    VRFY (502 unless enabled), EXPN (502), STARTTLS (RFC 3207), AUTH PLAIN
 *    and LOGIN (RFC 4954) with initial responses and "*" cancel.
 *  - EHLO advertises SIZE n, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
 *    SMTPUTF8, CHUNKING, DSN, STARTTLS (when available and not yet in TLS),
 *    AUTH PLAIN LOGIN (only when AUTH is allowed right now).
 *  - Command lines end with CRLF; a bare LF ends a command line too (many
 *    clients), but in DATA only CRLF "." CRLF ends the message and any bare
 *    LF or bare CR inside the data makes the message refused (550 5.6.11
 *    after the end), never split (SMTP smuggling, CVE-2023-51764).
 *  - Dot-unstuffing in DATA; BDAT chunks are taken byte-exact.
 *  - Replies carry enhanced status codes (RFC 3463).
 *  - Limits: command line length (500 5.5.2, line discarded), text line
 *    length and message size (552 after the end of data, having read and
 *    dropped the rest), recipients (452 4.5.3), errors (421 4.7.0 and
 *    close after max_errors bad commands).
 *
 * Policy:
 *  - MX listener: unauthenticated clients may send only to local
 *    recipients (hooks.rcpt says which); others get 554 5.7.1 relay denied.
 *  - Submission listeners: MAIL needs AUTH first (530 5.7.0).
 *  - AUTH only over TLS, or on loopback when cfg.auth_plaintext_loopback
 *    (else 538 5.7.11 / 523 when asked).  Authenticated users may send to
 *    anyone, as an address hooks.may_send_as accepts (553 5.7.1 otherwise).
 *  - Non-ASCII in an address needs SMTPUTF8 on MAIL (553 5.6.7).
 */
#ifndef CORREOD_SMTP_PROTO_H
#define CORREOD_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define SMTP_CMD_LINE_MAX 2048     /* RFC 5321 says 512; margin for extensions */

enum smtp_listener {
    SMTP_LISTENER_MX = 0,          /* port 25: receive for local domains */
    SMTP_LISTENER_SUBMISSION,      /* 587: STARTTLS, AUTH required */
    SMTP_LISTENER_SUBMISSIONS,     /* 465: implicit TLS, AUTH required */
};

struct smtp_session_cfg {
    enum smtp_listener listener;
    const char *hostname;          /* greeting and EHLO reply */
    const char *peer_addr;         /* printable address of the client */
    bool peer_loopback;
    bool tls_active;               /* already in TLS (465) */
    bool tls_available;            /* STARTTLS may be offered */
    bool auth_plaintext_loopback;
    bool vrfy;
    size_t max_message_size;
    size_t max_line_length;        /* text lines in DATA */
    unsigned max_recipients;
    unsigned max_errors;
};

enum smtp_rcpt_verdict {
    SMTP_RCPT_LOCAL = 0,           /* one of ours: accept */
    SMTP_RCPT_REMOTE,              /* not ours: relay if authenticated */
    SMTP_RCPT_UNKNOWN,             /* our domain, no such user: 550 5.1.1 */
    SMTP_RCPT_TEMPFAIL,            /* lookup failed: 451 4.3.0 */
};

/* DSN parameters (RFC 3461). */
enum smtp_dsn_notify {
    SMTP_NOTIFY_DEFAULT = 0,       /* not given: failure and delay */
    SMTP_NOTIFY_NEVER = 1,
    SMTP_NOTIFY_SUCCESS = 2,
    SMTP_NOTIFY_FAILURE = 4,
    SMTP_NOTIFY_DELAY = 8,
};

struct smtp_rcpt {
    char *addr;                    /* without <>, as given (UTF-8 only with SMTPUTF8) */
    enum smtp_rcpt_verdict verdict;/* LOCAL or REMOTE once accepted */
    unsigned notify;               /* SMTP_NOTIFY_* bits */
    char *orcpt;                   /* ORCPT value decoded from xtext, or NULL */
};

enum smtp_body { SMTP_BODY_7BIT = 0, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_envelope {
    char *helo;                    /* EHLO/HELO argument */
    bool esmtp;                    /* EHLO rather than HELO */
    bool tls;                      /* the session was in TLS when DATA ended */
    char *auth_user;               /* canonical user if authenticated, else NULL */
    const char *peer_addr;         /* from cfg */
    char *mail_from;               /* "" for the null sender <> */
    enum smtp_body body;
    bool smtputf8;
    size_t size_hint;              /* SIZE=, 0 if absent */
    enum { SMTP_RET_DEFAULT = 0, SMTP_RET_FULL, SMTP_RET_HDRS } ret;
    char *envid;                   /* ENVID decoded from xtext, or NULL */
    struct smtp_rcpt *rcpts;
    size_t n_rcpts;
};

/* "ESMTPSA" etc. for the Received header's WITH clause (RFC 3848). */
const char *smtp_envelope_protocol(const struct smtp_envelope *env);

struct smtp_hooks {
    /* Classify an accepted-syntax recipient.  auth_user is NULL when the
     * client has not authenticated. */
    enum smtp_rcpt_verdict (*rcpt)(void *ctx, const char *auth_user, const char *addr);
    /* May auth_user send as addr (MAIL FROM)? */
    bool (*may_send_as)(void *ctx, const char *auth_user, const char *addr);
    /* Check credentials: 1 ok (with *canonical xmalloc'd, the user name to
     * record), 0 wrong, -1 temporary failure (454 4.7.0). */
    int (*auth)(void *ctx, const char *authzid, const char *authcid, const char *password,
                char **canonical);
    /* The message is complete: msg is the data as received (dot-unstuffed,
     * CRLF line ends as sent, no headers added).  The session now waits in
     * SMTP_WAIT_DELIVERY until the owner calls smtp_session_delivered().
     * Ownership of env and msg passes to the owner (free with
     * smtp_envelope_free, and buf_free then free() for msg, which is a
     * heap-allocated struct buf). */
    void (*deliver)(void *ctx, struct smtp_envelope *env, struct buf *msg);
};

struct smtp_session;

enum smtp_wait {
    SMTP_READY = 0,                /* feed more input */
    SMTP_WAIT_DELIVERY,            /* call smtp_session_delivered() */
    SMTP_WAIT_STARTTLS,            /* flush output, DISCARD buffered input,
                                      handshake, then smtp_session_tls_started() */
    SMTP_WAIT_PAUSE,               /* flush output after smtp_session_pause_ms() */
    SMTP_CLOSE,                    /* flush output and close the connection */
};

struct smtp_session *smtp_session_new(const struct smtp_session_cfg *cfg,
                                      const struct smtp_hooks *hooks, void *ctx);
void smtp_session_free(struct smtp_session *s);

size_t smtp_session_feed(struct smtp_session *s, const char *data, size_t len);
/* The client closed its side: nothing more will be fed. */
void smtp_session_eof(struct smtp_session *s);

enum smtp_wait smtp_session_state(const struct smtp_session *s);

/* Reply bytes to write (CRLF-terminated lines). */
const char *smtp_session_output(const struct smtp_session *s, size_t *len);
void smtp_session_output_clear(struct smtp_session *s);

/* Outcome of a delivery: code 250 (accepted), 4xx, 5xx, with enhanced code
 * and text, e.g. (250, "2.0.0", "OK queued as 1A2B").  For BDAT LAST the
 * same reply is used.  The transaction is reset and the session goes back
 * to SMTP_READY. */
void smtp_session_delivered(struct smtp_session *s, int code, const char *enhanced,
                            const char *text);

/* STARTTLS succeeded: the session forgets EHLO and everything before it
 * (RFC 3207) and is SMTP_READY for a new EHLO.  On a failed handshake the
 * owner just closes the connection. */
void smtp_session_tls_started(struct smtp_session *s);

/* In SMTP_WAIT_PAUSE: how long to wait before writing the output and
 * calling smtp_session_resume().  The session computes it from the number
 * of AUTH failures it has seen (the owner may add a per-client factor). */
unsigned smtp_session_pause_ms(const struct smtp_session *s);
void smtp_session_resume(struct smtp_session *s);

/* A timeout: 421 4.4.2 is appended and the state becomes SMTP_CLOSE. */
void smtp_session_timeout(struct smtp_session *s);
/* Shutting down: after the current transaction, answer 421 4.3.2 and close.
 * If idle now, this happens immediately. */
void smtp_session_shutdown(struct smtp_session *s);

/* Is a transaction (MAIL given, or data being read) in progress? */
bool smtp_session_in_transaction(const struct smtp_session *s);

/* Number of AUTH failures so far (for the owner's per-client delay). */
unsigned smtp_session_auth_failures(const struct smtp_session *s);

void smtp_envelope_free(struct smtp_envelope *env);

/* Decode RFC 3461 xtext; -1 on bad syntax. */
int smtp_xtext_decode(const char *in, struct buf *out);

#endif
