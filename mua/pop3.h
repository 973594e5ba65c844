/*
 * pop3: a POP3 client session (RFC 1939) over lib/tls_stream.
 *
 * Owns the conversation with one server: the greeting, CAPA (RFC 2449),
 * STLS (RFC 2595), AUTH PLAIN with an initial response (RFC 5034) when the
 * server offers it and USER/PASS otherwise, UIDL and LIST, RETR and TOP
 * streamed into a caller's sink, DELE, RSET and QUIT.
 *
 * Security.  A greeting that is not "+OK" ends the session before anything
 * is sent.  With POP3_STARTTLS a server that does not offer STLS (or refuses
 * it) is refused before any credential is sent; after STLS's "+OK" every
 * byte already received is discarded (ours here, and tls_conn_start_tls
 * drops its own), and CAPA is asked again over TLS.  Credentials are never
 * sent before TLS unless the security is POP3_PLAIN (the user asked for
 * it).  Text from the server that ends up in an error is sanitized for the
 * terminal (lib/sanitize) and cut at ERR_TEXT_MAX.
 *
 * Limits.  Status lines and UIDL/LIST lines are at most POP3_LINE_MAX
 * bytes; a UIDL is 1..70 characters 0x21-0x7E (RFC 1939 7); message
 * numbers must be 1..count and unique; at most POP3_MSGS_MAX messages.  A
 * message body has no line-length limit (it is streamed), but a message
 * longer than the limit the caller gives for it (its LIST size plus a
 * margin, or max_size) is an error for that message: the rest of it is read
 * and dropped so that the session stays in step, up to a hard ceiling
 * after which the session is given up.  Every read has the session's
 * timeout.
 *
 * Bodies.  Dot-unstuffing is done here and line ends are delivered as LF
 * (the wire's CRLF becomes LF; a CR not followed by LF stays), so the sink
 * sees the message as a Maildir file holds it.  The sink gets the message
 * in pieces of at most a few tens of kilobytes: nothing here holds a
 * whole message.
 *
 * Pipelining.  When CAPA says PIPELINING, pop3_retr and pop3_dele send a
 * window of commands before reading the replies (RFC 2449 6.6); otherwise
 * one command at a time.
 */
#ifndef CORREO_POP3_H
#define CORREO_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tls.h"
#include "tls_stream.h"

#define POP3_LINE_MAX 4096           /* status, CAPA, UIDL and LIST lines */
#define POP3_UIDL_MAX 70             /* RFC 1939: 1..70 characters */
#define POP3_MSGS_MAX 1000000        /* messages in one maildrop */
#define POP3_WINDOW 32               /* pipelined commands in flight */
#define POP3_DEFAULT_TIMEOUT_MS 60000

enum pop3_security {
    POP3_STARTTLS = 0,   /* pop:// : STLS required */
    POP3_TLS,            /* pops:// : implicit TLS */
    POP3_PLAIN,          /* tls=none: cleartext on purpose */
};

/* Capabilities from CAPA (all false when the server has no CAPA). */
struct pop3_caps {
    bool capa;           /* CAPA answered */
    bool stls, uidl, top, pipelining, user, sasl_plain;
};

struct pop3_opts {
    const char *host;             /* for connect and certificate checks */
    unsigned port;
    enum pop3_security security;
    const char *tls_ca_file;      /* NULL or "": none */
    const char *tls_fingerprint;  /* NULL or "": no pin */
    int timeout_ms;               /* per read/write; 0: POP3_DEFAULT_TIMEOUT_MS */
};

struct pop3;

/* One message of the maildrop. */
struct pop3_msg {
    unsigned num;                 /* message number, 1-based */
    uint64_t size;                /* from LIST (octets on the wire) */
    char uidl[POP3_UIDL_MAX + 1]; /* "" when the server has no UIDL */
};

/* Connect, read the greeting, CAPA, and STLS as opts->security says.  On
 * success the session is ready for pop3_auth. */
int pop3_open(struct pop3 **out, const struct pop3_opts *o, struct err *e);

/* The same on a connection the caller made (tests: a socketpair).  c is
 * owned by the session in every case (closed on failure).  tls may be NULL
 * when no TLS will be done (POP3_PLAIN, or POP3_TLS with c already
 * encrypted). */
int pop3_start(struct pop3 **out, struct tls_conn *c, struct tls_client *tls,
               const struct pop3_opts *o, struct err *e);

const struct pop3_caps *pop3_caps(const struct pop3 *p);
bool pop3_is_tls(const struct pop3 *p);

/* Log in.  AUTH PLAIN when offered, else USER and PASS.  A refusal is
 * ERR_PROTO with the server's text. */
int pop3_auth(struct pop3 *p, const char *user, const char *pass, struct err *e);

/* LIST and UIDL (when uidl is true; a server that refuses UIDL leaves every
 * uidl ""): *out (free()) has one entry per message in number order.
 * *uidl_ok says whether UIDL worked. */
int pop3_list(struct pop3 *p, bool uidl, struct pop3_msg **out, size_t *n, bool *uidl_ok,
              struct err *e);

/* Where RETR and TOP bodies go.  begin and end bracket each message; data
 * gets its bytes (unstuffed, LF line ends).  i is the index in the caller's
 * array.  end's err is NULL when the message arrived whole and within its
 * limit, else what went wrong for that message.  Any callback returning -1
 * (with e set) stops the transfer: pop3_retr then returns -1 and the
 * session can only be closed. */
struct pop3_sink {
    int (*begin)(void *ctx, size_t i, struct err *e);
    int (*data)(void *ctx, size_t i, const char *p, size_t n, struct err *e);
    int (*end)(void *ctx, size_t i, const struct err *msg_err, struct err *e);
    void *ctx;
};

/* RETR nums[0..n), pipelined when the server allows, each into the sink.
 * limits[i] is the most bytes message i may have (after unstuffing).  -1
 * when the session failed (network, protocol, a sink callback): the session
 * can then only be closed; per-message problems go to sink->end. */
int pop3_retr(struct pop3 *p, const unsigned *nums, const uint64_t *limits, size_t n,
              const struct pop3_sink *sink, struct err *e);

/* TOP num lines: the header (and that many body lines) into out, which
 * must have a ceiling (beyond it: ERR_LIMIT for that message, the session
 * stays usable). */
int pop3_top(struct pop3 *p, unsigned num, unsigned lines, struct buf *out, struct err *e);

/* DELE nums[0..n), pipelined when allowed.  ok[i] tells which the server
 * accepted; -1 only when the session failed. */
int pop3_dele(struct pop3 *p, const unsigned *nums, size_t n, bool *ok, struct err *e);

int pop3_rset(struct pop3 *p, struct err *e);

/* QUIT: the server commits the deletions when it answers +OK. */
int pop3_quit(struct pop3 *p, struct err *e);

/* Close without QUIT (nothing is deleted) and free.  NULL is a no-op. */
void pop3_close(struct pop3 *p);

/* ---- parsing, exposed for tests ----------------------------------------- */

/* "N SIZE" (LIST) and "N UIDL" lines without their line end. */
int pop3_parse_list_line(const char *line, size_t len, unsigned *num, uint64_t *size,
                         struct err *e);
int pop3_parse_uidl_line(const char *line, size_t len, unsigned *num,
                         char uidl[POP3_UIDL_MAX + 1], struct err *e);

/* The dot-unstuffing decoder.  pop3_dot_feed consumes in[0..len) up to and
 * including the terminating ".CRLF", appends the decoded bytes to out and
 * returns how many input bytes it used; *done is set when the terminator
 * was consumed (bytes after it are not used). */
struct pop3_dot {
    int state;
};
void pop3_dot_init(struct pop3_dot *d);
size_t pop3_dot_feed(struct pop3_dot *d, const char *in, size_t len, char *out,
                     size_t *out_len, bool *done);

#endif
