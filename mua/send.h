/*
 * send: handing a finished message to the mail system, by SMTP submission
 * or through a sendmail-compatible command.
 *
 * Owns the SMTP client session (libetpan's mailsmtp over a lib/tls_stream
 * connection, with EHLO, STARTTLS, AUTH and MAIL done here because
 * mailsmtp lacks what they need), the smtp_url syntax, the password and
 * token commands, and running the sendmail command.  The caller owns the
 * message: nothing here changes or frees it, so a failed send leaves the
 * caller with exactly what it had (rule 1: the composer keeps the draft
 * until send_message returned 0).
 *
 * URL (like mutt's smtp_url):
 *   smtp://[user[:pass]@]host[:port][/]        STARTTLS required (587)
 *   smtps://[user[:pass]@]host[:port][/]       implicit TLS (465)
 *   smtp+plain://[user[:pass]@]host[:port][/]  cleartext on purpose (25)
 * user and pass may be percent-encoded (me%40example.org); host may be an
 * IPv6 literal in brackets.  With smtp:// a server that does not offer
 * STARTTLS is refused before anything but EHLO and QUIT was sent, unless
 * allow_plaintext is set (then STARTTLS is still used when offered).
 * Credentials never go over cleartext except to a loopback peer (127.0.0.0/8
 * or ::1, checked on the connected socket).
 *
 * TLS is verified by lib/tls: the system CAs, plus tls_ca_file; with
 * tls_fingerprint (SHA-256 of the leaf, "SHA256:AB:CD:..." or hex) exactly
 * that certificate is accepted.  A refused certificate's fingerprint is in
 * the error text.
 *
 * AUTH happens when a user is configured (opts.user, else the URL's):
 * with oauth_cmd, OAUTHBEARER (preferred) or XOAUTH2 with the token it
 * prints; otherwise PLAIN (preferred) or LOGIN with the password from
 * opts.pass, the URL, or pass_cmd.  The mechanism is chosen from the
 * server's EHLO list.  Commands run through /bin/sh -c with stdin from
 * /dev/null; the first line of stdout (without the newline) is the secret;
 * a non-zero exit, no output or a timeout is an error carrying the
 * command's stderr.  Secrets are never logged (log_secret) and are wiped
 * from memory after use.
 *
 * Envelope and data: every recipient is sent in RCPT TO, and the data is
 * sent as given -- send_message adds no header, so Bcc recipients appear
 * only in the envelope.  The caller removes the Bcc field; data whose
 * header section still has a Bcc or Resent-Bcc field is refused
 * (ERR_INVAL), as are NUL bytes and lines longer than 998 bytes.  Data is
 * CRLF text; a bare LF or CR is sent as CRLF, and data that does not end
 * with a line break arrives with a CRLF added (SMTP data ends with a line).
 * Dot-stuffing is done on the wire and undone by the server, so lines
 * starting with '.' arrive intact.
 * Data with 8-bit bytes is sent with BODY=8BITMIME and refused (ERR_UNSUPPORTED,
 * before MAIL) if the server lacks 8BITMIME: the composer should then encode
 * (send_probe tells it in advance).  Non-ASCII envelope addresses need
 * SMTPUTF8 in the same way; SMTPUTF8 is also requested, when offered, for
 * data whose header section has 8-bit bytes.  A message larger than the
 * server's announced SIZE is refused before MAIL.
 *
 * Recipients are all-or-nothing, as in mutt: if the server refuses any RCPT,
 * the transaction is reset (RSET) and nothing is sent; the error names the
 * recipient and carries the server's reply.
 *
 * Errors: every reply the server refused with is in the error text, whole
 * (all lines, joined with " | "), sanitized for the terminal (lib/sanitize)
 * and cut only at ERR_TEXT_MAX.  Replies 4xx and network failures are
 * temporary; TLS, AUTH and connection problems have ERR_SCOPE_ACCOUNT,
 * refusals of this message ERR_SCOPE_MSG.  A connection lost after the data
 * was sent but before the server's reply is an error: the server may or may
 * not have taken the message, and the caller still has it.
 *
 * sendmail: opts.sendmail set means no SMTP at all.  The command is split
 * into words by the rcfile tokenizer (quotes and escapes; no shell, no
 * backticks, no ';'), then run as: words, "-oi" (unless "-oi" or "-i" is
 * already there, so a line "." does not end the input), "-f" envelope_from
 * (when not empty), "--", the recipients.  The message goes to its stdin
 * with CRLF turned into LF.  Exit status 0 is success; otherwise the error
 * has the status and the command's stderr (or stdout when stderr is empty);
 * EX_TEMPFAIL (75) is temporary.  The command is killed after timeout_ms
 * without any progress.
 */
#ifndef CORREO_SEND_H
#define CORREO_SEND_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define SEND_DEFAULT_TIMEOUT_MS 60000
#define SEND_ADDR_MAX 254            /* bytes in one envelope address */
#define SEND_LINE_MAX 998            /* bytes in one line of data (RFC 5322) */
#define SEND_SECRET_MAX 16384        /* bytes of a password or token */
#define SEND_CMD_OUTPUT_MAX 4096     /* bytes of a command's stderr kept for errors */

enum send_security {
    SEND_STARTTLS = 0,   /* smtp:// */
    SEND_TLS,            /* smtps:// */
    SEND_PLAIN,          /* smtp+plain:// */
};

struct send_opts {
    const char *url;             /* see above; required unless sendmail is set */
    const char *user;            /* overrides the URL's user; NULL: the URL's */
    const char *pass;            /* NULL: the URL's, else pass_cmd */
    const char *pass_cmd;        /* e.g. "pass show mail" */
    const char *oauth_cmd;       /* prints a bearer token: OAUTHBEARER/XOAUTH2 */
    const char *tls_ca_file;     /* PEM, trusted in addition to the system CAs */
    const char *tls_fingerprint; /* pin of the server's leaf certificate */
    const char *helo_name;       /* NULL: gethostname(), else "localhost" */
    unsigned timeout_ms;         /* per network step and command; 0: default */
    bool allow_plaintext;        /* smtp:// may go on in cleartext without STARTTLS */
    const char *sendmail;        /* set: run this command instead of SMTP */
};

/* A parsed smtp_url.  Strings are xmalloc'd; free with send_url_free. */
struct send_url {
    enum send_security security;
    char *host;                  /* without brackets */
    unsigned port;               /* the default for the scheme when absent */
    char *user;                  /* percent-decoded, or NULL */
    char *pass;                  /* percent-decoded, or NULL */
};

/* Parse url.  -1 with ERR_INVAL (and the reason) for an unknown scheme, a
 * missing host, a bad port, a bad percent escape or a path other than "/". */
int send_url_parse(const char *url, struct send_url *out, struct err *e);
void send_url_free(struct send_url *u);

enum send_auth_mech {
    SEND_AUTH_PLAIN       = 1u << 0,
    SEND_AUTH_LOGIN       = 1u << 1,
    SEND_AUTH_XOAUTH2     = 1u << 2,
    SEND_AUTH_OAUTHBEARER = 1u << 3,
    SEND_AUTH_OTHER       = 1u << 4,   /* anything else (CRAM-MD5, ...) */
};

/* What the server says it supports (EHLO after STARTTLS, before AUTH). */
struct send_caps {
    bool sendmail;       /* the sendmail command: 8bit assumed, nothing else known */
    bool tls;            /* the session ran over TLS */
    bool eightbitmime;   /* 8BITMIME: 8-bit bodies may be sent as they are */
    bool smtputf8;       /* SMTPUTF8: UTF-8 addresses and headers */
    bool size_known;     /* SIZE was announced with a limit */
    size_t size_max;     /* that limit in bytes */
    unsigned auth;       /* SEND_AUTH_* offered */
};

/* Connect as send_message would (TLS, STARTTLS, verification), read the
 * EHLO capabilities into *caps and QUIT, without authenticating.  For
 * sendmail, fills caps without running anything. */
int send_probe(const struct send_opts *o, struct send_caps *caps, struct err *e);

/* Send data[0..len) (the complete message, CRLF lines, no Bcc header) from
 * envelope_from (NULL or "" for the null sender "<>") to the n_rcpts
 * addresses (bare addr-specs, n_rcpts >= 1).  Returns 0 once the server
 * (or the sendmail command) accepted the message, else -1 with *e. */
int send_message(const struct send_opts *o, const char *envelope_from,
                 const char *const *rcpts, size_t n_rcpts, const char *data, size_t len,
                 struct err *e);

#endif
