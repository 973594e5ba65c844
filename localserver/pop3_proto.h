/*
 * pop3_proto: one POP3 server session as a state machine, without I/O.
 *
 * The owner (the worker, a test, a fuzzer) feeds the bytes a client sent
 * and writes out what the session appended to its output buffer.  The
 * session never blocks and never touches a socket, a file or the clock:
 * what it must ask (is this password right, lock and list the maildrop,
 * the bytes of message i, delete these) goes through struct pop3_hooks.
 *
 *   s = pop3_session_new(&cfg, &hooks, ctx);    greeting is now in out
 *   loop:
 *     n = pop3_session_feed(s, data, len);      consumes n <= len bytes
 *     write pop3_session_output(s), then pop3_session_output_clear(s)
 *     switch (pop3_session_state(s)) ...        see enum pop3_wait
 *
 * feed() stops early (n < len) only when the session waits for its owner:
 * a long reply being produced (RETR, TOP, LIST, UIDL), a STLS handshake, a
 * pause after a failed login, the deletions of QUIT, or the end of the
 * session.  The owner keeps the rest of the input and feeds it again when
 * the wait is over -- except after STLS, where the rest MUST be discarded
 * (it arrived in plain text before the handshake).
 *
 * Long replies never sit in memory whole: in POP3_WAIT_OUTPUT the owner
 * writes what is there and calls pop3_session_more() each time its write
 * buffer can take more; every call appends about POP3_OUTPUT_CHUNK bytes
 * (at most 2 * POP3_OUTPUT_CHUNK + 8), reading the message through
 * hooks.msg_read.  A 100 MB message passes through in chunks.
 *
 * Protocol:
 *  - RFC 1939: USER, PASS, STAT, LIST [n], UIDL [n], RETR, TOP n k, DELE,
 *    RSET, NOOP, QUIT.  Deletions happen only at QUIT in the TRANSACTION
 *    state (the UPDATE state, through hooks.update); a session that ends
 *    any other way deletes nothing.  APOP is not offered.
 *  - RFC 2449 CAPA: TOP, UIDL, RESP-CODES, AUTH-RESP-CODE, PIPELINING,
 *    USER and SASL PLAIN (before login, and only when login is allowed
 *    now), STLS (before login, when available and not yet in TLS),
 *    IMPLEMENTATION.  Response codes [IN-USE], [AUTH], [SYS/TEMP],
 *    [SYS/PERM].
 *  - RFC 2595 STLS; RFC 5034 AUTH PLAIN with an initial response or a
 *    continuation, "=" for an empty one, "*" to cancel; "AUTH" alone lists
 *    the mechanisms.
 *  - Login (USER/PASS or AUTH) only over TLS, or from a loopback peer when
 *    cfg.auth_plaintext_loopback.  A wrong password answers "-ERR [AUTH]"
 *    and pauses (POP3_WAIT_PAUSE), longer after each failure.
 *  - Messages are sent as CRLF lines: a bare LF becomes CRLF, a line that
 *    starts with "." gets another one, a message whose last line has no
 *    line end gets CRLF, then "." CRLF ends the reply.  The octet counts
 *    (STAT, LIST, RETR) are the owner's: pop3_crlf_octets() computes them
 *    for the same conversion, without the stuffed dots, the CRLF added at
 *    the end and the final "." CRLF.
 *  - TOP n k: the header, the blank line after it, and k lines of body
 *    (a message without a blank line is all header).
 *  - Command lines end with CRLF or a bare LF; a line longer than
 *    POP3_LINE_MAX, a NUL or CR in it, an unknown command, bad arguments or
 *    a command in the wrong state get -ERR and the session goes on, until
 *    max_errors of them end it.
 */
#ifndef CORREOD_POP3_PROTO_H
#define CORREOD_POP3_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POP3_LINE_MAX 512          /* RFC 2449: 255 octets for arguments; margin */
#define POP3_UIDL_MAX 70           /* RFC 1939: 1 to 70 octets 0x21..0x7E */
#define POP3_OUTPUT_CHUNK 16384    /* message bytes read per pop3_session_more() */

struct pop3_session_cfg {
    const char *hostname;          /* greeting and sign-off */
    const char *peer_addr;         /* printable address of the client */
    bool peer_loopback;
    bool tls_active;               /* already in TLS (995) */
    bool tls_available;            /* STLS may be offered */
    bool auth_plaintext_loopback;  /* login without TLS from a loopback peer */
    unsigned max_errors;           /* bad commands before closing; 0: never */
};

/* One message of the maildrop, in the order the owner lists them: message
 * number i + 1 is msgs[i]. */
struct pop3_msg {
    uint64_t size;                 /* octets with CRLF line ends (pop3_crlf_octets) */
    char *uidl;                    /* 1..70 octets of 0x21..0x7E, xmalloc'd */
};

void pop3_msgs_free(struct pop3_msg *msgs, size_t n);

enum pop3_open {
    POP3_OPEN_OK = 0,              /* locked and listed */
    POP3_OPEN_LOCKED,              /* another session holds it: -ERR [IN-USE] */
    POP3_OPEN_FAIL,                /* could not open: -ERR [SYS/TEMP] */
};

/* Marks handed to hooks.update, one byte per message. */
enum {
    POP3_MARK_DELETED = 1,         /* DELE: remove it */
    POP3_MARK_RETRIEVED = 2,       /* RETR sent it whole (e.g. to set \Seen) */
};

struct pop3_hooks {
    /* Check credentials: 1 ok (with *canonical xmalloc'd, the user name to
     * use from now on), 0 wrong, -1 temporary failure.  authzid is NULL or
     * equal to authcid (acting for another user is not offered). */
    int (*auth)(void *ctx, const char *authzid, const char *authcid, const char *password,
                char **canonical);
    /* The user has logged in: lock the maildrop against other POP3
     * sessions and list it.  On POP3_OPEN_OK, *msgs (xmalloc'd array of *n
     * messages, or NULL when n is 0) passes to the session.  The lock is
     * the owner's to release when it frees the session. */
    enum pop3_open (*open)(void *ctx, const char *user, struct pop3_msg **msgs, size_t *n);
    /* Start reading message idx (0-based) from its first byte: 0 ok, -1
     * (the reply is -ERR and the session goes on). */
    int (*msg_open)(void *ctx, size_t idx);
    /* The next bytes of the open message, at most cap into buf: the number
     * of bytes, 0 at its end, -1 on a read error (the reply is already
     * half-sent: the session closes without the final "."). */
    ssize_t (*msg_read)(void *ctx, char *buf, size_t cap);
    /* The session is done with the open message (at its end, when TOP has
     * its lines, on an error, or when the session ends or is freed). */
    void (*msg_close)(void *ctx);
    /* QUIT in the TRANSACTION state: marks[i] holds POP3_MARK_* for
     * message i.  The session now waits in POP3_WAIT_UPDATE until the
     * owner calls pop3_session_updated(); marks stays valid until then
     * (or until the session is freed). */
    void (*update)(void *ctx, const unsigned char *marks, size_t n);
};

struct pop3_session;

enum pop3_wait {
    POP3_READY = 0,                /* feed more input */
    POP3_WAIT_OUTPUT,              /* write output; pop3_session_more() when there is room */
    POP3_WAIT_STLS,                /* flush output, DISCARD buffered input,
                                      handshake, then pop3_session_tls_started() */
    POP3_WAIT_PAUSE,               /* flush output after pop3_session_pause_ms() */
    POP3_WAIT_UPDATE,              /* call pop3_session_updated() */
    POP3_CLOSE,                    /* flush output and close the connection */
};

struct pop3_session *pop3_session_new(const struct pop3_session_cfg *cfg,
                                      const struct pop3_hooks *hooks, void *ctx);
/* Calls hooks.msg_close if a message is open.  Deletes nothing. */
void pop3_session_free(struct pop3_session *s);

size_t pop3_session_feed(struct pop3_session *s, const char *data, size_t len);
/* The client closed its side: nothing more will be fed.  Nothing is
 * deleted (unless QUIT already started the update). */
void pop3_session_eof(struct pop3_session *s);

enum pop3_wait pop3_session_state(const struct pop3_session *s);

/* Reply bytes to write (CRLF-terminated lines). */
const char *pop3_session_output(const struct pop3_session *s, size_t *len);
void pop3_session_output_clear(struct pop3_session *s);

/* In POP3_WAIT_OUTPUT: append the next piece of the reply.  When the reply
 * is complete the state goes back to POP3_READY (or POP3_CLOSE). */
void pop3_session_more(struct pop3_session *s);

/* STLS succeeded: the session forgets USER and is POP3_READY in the
 * AUTHORIZATION state, now in TLS.  On a failed handshake the owner just
 * closes the connection. */
void pop3_session_tls_started(struct pop3_session *s);

/* In POP3_WAIT_PAUSE: how long to wait before writing the output and
 * calling pop3_session_resume().  Grows with the number of login failures
 * (the owner may add a per-client factor). */
unsigned pop3_session_pause_ms(const struct pop3_session *s);
void pop3_session_resume(struct pop3_session *s);

/* The outcome of hooks.update: true if every marked message was removed.
 * The sign-off (or -ERR) is appended and the state becomes POP3_CLOSE. */
void pop3_session_updated(struct pop3_session *s, bool ok);

/* A timeout: the session closes without entering the UPDATE state
 * ("-ERR" appended unless in the middle of a long reply). */
void pop3_session_timeout(struct pop3_session *s);
/* Shutting down: once the current reply is complete, answer -ERR and
 * close (nothing is deleted).  If idle now, this happens immediately. */
void pop3_session_shutdown(struct pop3_session *s);

/* The canonical user once logged in (TRANSACTION state), else NULL. */
const char *pop3_session_user(const struct pop3_session *s);
/* Is the next line a SASL response (to be logged masked)? */
bool pop3_session_expects_secret(const struct pop3_session *s);
/* Number of login failures so far (for the owner's per-client delay). */
unsigned pop3_session_auth_failures(const struct pop3_session *s);

/* Octets of data once every bare LF becomes CRLF, as STAT, LIST and RETR
 * count them.  A message given in pieces is counted piece by piece with
 * the same *after_cr, false at the start. */
uint64_t pop3_crlf_octets(const char *data, size_t len, bool *after_cr);

#endif
