/*
 * imap: an IMAP client connection (RFC 3501) over lib/tls_stream, with
 * libetpan's mailimap parsing the protocol.
 *
 * Owns the folder URLs (imap://[user@]host[:port]/Folder and imaps://...),
 * the settings a connection is made with (user, password or password
 * command, TLS pin or CA file, whether cleartext is acceptable, timeout),
 * the connection itself -- connect, greeting, CAPABILITY, STARTTLS, LOGIN
 * or AUTHENTICATE PLAIN (with SASL-IR when offered), or with a token command
 * AUTHENTICATE OAUTHBEARER or XOAUTH2 (RFC 7628; the token is never put in
 * an error), LOGOUT -- and the guard
 * between the socket and libetpan that bounds what a server may send.
 *
 * Security.  imap:// requires STARTTLS unless the settings allow cleartext
 * (allow_plain); imaps:// is TLS from the first byte.  On a connection that
 * must become TLS, a PREAUTH greeting, a BYE, or a greeting that does not
 * parse ends the connection before anything is sent; a server without
 * STARTTLS, or one that refuses it, is refused before any credential is
 * sent.  After STARTTLS's OK, every byte already received is discarded
 * (libetpan's buffer and lib/tls_stream's) and CAPABILITY is asked again.
 * Text from the server that ends up in an error is sanitized (log form).
 *
 * Limits.  Every byte from the server passes a guard before libetpan sees
 * it: a line (outside literals) longer than line_max, a literal announced
 * larger than literal_max, or parentheses nested deeper than depth_max end
 * the operation with ERR_LIMIT before libetpan reads (or allocates for) the
 * offending data; the connection is then unusable (it is out of step).
 * Every read and write has the timeout (lib/tls_stream).
 *
 * Settings for mailbox_open.  mailbox_open() has no configuration; the
 * client calls imap_settings_set() (or imap_settings_from_config()) once
 * after loading its configuration, and the IMAP backend (mbox_imap) uses
 * them for every imap:// and imaps:// folder it opens.
 */
#ifndef CORREO_IMAP_H
#define CORREO_IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#include "buf.h"
#include "err.h"

struct config;

#define IMAP_PORT 143
#define IMAPS_PORT 993
#define IMAP_LINE_MAX ((size_t)1 << 20)          /* bytes of one line outside literals */
#define IMAP_LITERAL_MAX ((size_t)256 << 20)     /* bytes of one literal */
#define IMAP_DEPTH_MAX 64u                        /* nested parentheses */
#define IMAP_DEFAULT_TIMEOUT_MS 60000
#define IMAP_FOLDER_MAX 1024                      /* bytes of a folder name */

/* ---- URLs ------------------------------------------------------------------ */

struct imap_url {
    bool tls;          /* imaps:// */
    char *user;        /* percent-decoded, or NULL */
    char *host;        /* without brackets for an IPv6 literal */
    unsigned port;     /* given, else 143 / 993 */
    char *folder;      /* percent-decoded; "INBOX" when the path is empty */
};

/* Whether path starts with imap:// or imaps:// (ASCII case ignored). */
bool imap_url_is(const char *path);

/* Parse imap://[user@]host[:port][/folder] (or imaps://).  A user part
 * with a password (user:pass@) is refused: passwords do not belong in
 * folder names.  Folder names with control characters are refused.
 * ERR_INVAL with a text naming the problem.  Free with imap_url_free. */
int imap_url_parse(const char *url, struct imap_url *out, struct err *e);
void imap_url_free(struct imap_url *u);

/* "imaps://user@host:port/" (no folder): what identifies an account, for
 * the header cache and messages.  xmalloc'd. */
char *imap_url_account(const struct imap_url *u, const char *user);

/* ---- settings ---------------------------------------------------------------- */

struct imap_limits {
    size_t line_max;
    size_t literal_max;
    unsigned depth_max;
};

/* IMAP_LINE_MAX, IMAP_LITERAL_MAX, IMAP_DEPTH_MAX. */
void imap_limits_default(struct imap_limits *l);

struct imap_settings {
    const char *user;             /* when the URL has none; NULL/"": none */
    const char *pass;             /* NULL/"": use pass_cmd */
    const char *pass_cmd;         /* run with /bin/sh -c; first line is the password */
    const char *oauth_cmd;        /* run with /bin/sh -c; first line is a bearer token:
                                     OAUTHBEARER (preferred) or XOAUTH2 instead of a password */
    const char *tls_fingerprint;  /* SHA-256 pin of the server's certificate */
    const char *tls_ca_file;      /* PEM file of CAs to trust as well */
    bool allow_plain;             /* imap:// may stay cleartext without STARTTLS */
    int timeout_ms;               /* per read/write; 0: IMAP_DEFAULT_TIMEOUT_MS */
    struct imap_limits limits;    /* zero fields: the defaults */
};

/* The process-wide settings mailbox_open's IMAP backend uses (copied;
 * NULL resets to "nothing configured"). */
void imap_settings_set(const struct imap_settings *s);
/* The current ones (never NULL; strings may be NULL). */
const struct imap_settings *imap_settings_get(void);
/* imap_settings_set from the configuration: imap_user, imap_pass,
 * imap_pass_cmd, imap_oauth_cmd, tls_fingerprint, tls_ca_file, ssl_force_tls (no: cleartext
 * is acceptable), timeout (connect_timeout when > 0, else the default). */
void imap_settings_from_config(const struct config *cfg);

/* ---- greeting --------------------------------------------------------------- */

enum imap_greeting {
    IMAP_GREETING_OK = 0,     /* "* OK": log in next */
    IMAP_GREETING_PREAUTH,    /* "* PREAUTH": already authenticated */
    IMAP_GREETING_BYE,        /* "* BYE": the server refuses */
    IMAP_GREETING_BAD,        /* anything else */
};

/* The greeting as libetpan's mailimap_connect() result r tells it. */
enum imap_greeting imap_greeting_from_result(int r);

/* Whether a connection may go on after the greeting: on a connection that
 * is not yet TLS but must become so (tls_pending), only OK is acceptable;
 * otherwise OK and PREAUTH.  Fills e (ERR_PROTO / ERR_TLS) when not. */
int imap_greeting_judge(enum imap_greeting g, bool tls_pending, struct err *e);

/* ---- the connection --------------------------------------------------------- */

struct imap_conn;

/* Connect to u's server and log in as u->user, else s->user (required).
 * The password is asked for (pass, else pass_cmd) only once TLS is up (or
 * cleartext is allowed).  Nothing is selected yet. */
int imap_connect(const struct imap_url *u, const struct imap_settings *s,
                 struct imap_conn **out, struct err *e);
/* LOGOUT (best effort, short timeout), close, free.  NULL is a no-op. */
void imap_close(struct imap_conn *c);

/* The libetpan session, for commands (after imap_connect). */
struct mailimap *imap_session(struct imap_conn *c);
/* Whether the last CAPABILITY lists cap (e.g. "UIDPLUS", "MOVE"). */
bool imap_has_cap(struct imap_conn *c, const char *cap);
/* Whether the connection is still usable (not broken by a stream error or
 * a limit). */
bool imap_usable(const struct imap_conn *c);
/* Declare the connection out of step (a pipelined exchange failed in the
 * middle): every later command fails at once. */
void imap_mark_broken(struct imap_conn *c);
/* Whether the connection ended under us (EOF, reset, timeout, a BYE),
 * as opposed to being given up after a limit or a reply that did not
 * parse: only a dropped connection is worth connecting again. */
bool imap_dropped(const struct imap_conn *c);
/* Whether the server has sent something not yet read: 1 yes (or the
 * connection ended), 0 nothing within timeout_ms, -1 not usable.  Bytes
 * already buffered (libetpan's, TLS's) count without waiting. */
int imap_poll(struct imap_conn *c, int timeout_ms);
/* The user name logged in with. */
const char *imap_user(const struct imap_conn *c);
/* Bytes received so far (after the guard), for tests and statistics. */
uint64_t imap_bytes_in(const struct imap_conn *c);

/* Turn a libetpan result r of the command "what" into 0 or -1 with *e:
 * a limit the guard hit (ERR_LIMIT), a stream failure (ERR_NET, the
 * connection is then unusable), a parse failure (ERR_PARSE), a NO or BAD
 * from the server (ERR_PROTO with its sanitized text). */
int imap_check(struct imap_conn *c, int r, const char *what, struct err *e);

/* Run "TAG <command>\r\n" (command without CRLF, no literals) and read the
 * responses up to the tagged one; untagged data updates the session like
 * libetpan's own commands do.  ERR_PROTO for NO/BAD. */
int imap_simple(struct imap_conn *c, const char *command, struct err *e);

/* ---- the backend ----------------------------------------------------------- */

/* mailbox_ops for imap:// and imaps:// (mua/mbox_imap.c). */
struct mailbox_ops;
extern const struct mailbox_ops mbox_imap_ops;

/* What the IMAP backend of an open mailbox did, for tests and the
 * benchmark (all zero for another backend). */
struct imap_stats {
    uint64_t bytes_in;          /* received on the current connection */
    uint64_t commands;          /* tagged commands on every connection since open */
    unsigned reconnects;        /* connections made again after a drop */
    unsigned reloads;           /* full reloads after a UIDVALIDITY change */
    bool qresync;               /* the last load came from QRESYNC (the cache + changes) */
    bool idling;                /* an IDLE is pending */
    size_t pending_flags;       /* flag changes not yet confirmed by the server */
};
struct mailbox;
void mbox_imap_stats(const struct mailbox *mb, struct imap_stats *out);

#endif
