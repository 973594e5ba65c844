/*
 * tls_stream: network connections, plain or TLS, and libetpan streams on
 * top of them.
 *
 * Owns struct tls_conn (a connected socket and, after a handshake, its SSL),
 * TCP connect with a timeout, reads and writes that give up after a timeout
 * without progress, the client handshake for implicit TLS and for STARTTLS,
 * the server handshake, and a libetpan mailstream_low driver so that
 * libetpan's IMAP/POP3/SMTP code runs over connections verified by lib/tls
 * (libetpan's own TLS is never used).
 *
 * STARTTLS: whatever arrived before the handshake is discarded -- bytes that
 * libetpan buffered behind the server's "go ahead" reply, bytes buffered by
 * tls_conn_read_line, and on the client side bytes already waiting in the
 * socket -- so nothing a man in the middle injected in plaintext can be read
 * as if it came over TLS.
 *
 * All sockets are non-blocking internally and writes never raise SIGPIPE.
 * Not thread-safe: one connection is used by one thread at a time (except
 * mailstream_cancel, which libetpan makes safe to call from another thread).
 */
#ifndef CORREO_TLS_STREAM_H
#define CORREO_TLS_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include <libetpan/mailstream.h>

#include "buf.h"
#include "err.h"
#include "tls.h"

/* Per-operation timeout used until tls_conn_set_timeout says otherwise. */
#define TLS_CONN_DEFAULT_TIMEOUT_MS 60000

/* Buffer size of the mailstreams made here: one whole TLS record, so that
 * after a read nothing decrypted is left waiting inside OpenSSL (which keeps
 * polling the socket, as libetpan's IDLE does, meaningful). */
#define TLS_STREAM_BUFFER_SIZE 16384

struct tls_conn;

/* Resolve host, try each address with a non-blocking connect until one
 * answers; timeout_ms bounds the whole attempt (getaddrinfo itself cannot be
 * bounded) and becomes the connection's I/O timeout.  port: 1..65535. */
int tls_conn_connect(struct tls_conn **out, const char *host, unsigned port,
                     int timeout_ms, struct err *e);

/* Adopt a connected stream socket (e.g. from accept()); the conn owns it. */
struct tls_conn *tls_conn_from_fd(int fd, int timeout_ms);

/* Close (after a best-effort TLS close_notify) and free.  NULL is a no-op. */
void tls_conn_close(struct tls_conn *c);

/* Client handshake on c, plain until now: implicit TLS right after connect,
 * or STARTTLS after the server's go-ahead.  Discards all buffered plaintext
 * first.  Verification as in lib/tls against host (the name the user
 * configured, not necessarily what was connected to).  The whole handshake
 * must finish within the I/O timeout.  On failure the connection is
 * unusable; close it. */
int tls_conn_start_tls(struct tls_conn *c, struct tls_client *client, const char *host,
                       struct err *e);

/* Server handshake on c; discards what tls_conn_read_line buffered. */
int tls_conn_accept_tls(struct tls_conn *c, struct tls_server *server, struct err *e);

/* Read at most len bytes (len > 0); *got is 0 only at the end of the stream.
 * Fails after the I/O timeout without data.  A TLS peer that closes without
 * close_notify also ends the stream: mail protocols detect truncation
 * themselves, and many servers never send it. */
int tls_conn_read(struct tls_conn *c, void *dst, size_t len, size_t *got, struct err *e);

/* Write all len bytes; fails when the timeout passes without progress. */
int tls_conn_write(struct tls_conn *c, const void *src, size_t len, struct err *e);

/* Read one line, terminator included, into line (reset first).  A line
 * longer than max bytes is ERR_LIMIT; end of stream before the newline is
 * ERR_NET.  Bytes read past the line stay buffered for the next read. */
int tls_conn_read_line(struct tls_conn *c, struct buf *line, size_t max, struct err *e);

void tls_conn_set_timeout(struct tls_conn *c, int timeout_ms);
int tls_conn_fd(const struct tls_conn *c);
bool tls_conn_is_tls(const struct tls_conn *c);
/* True when a read could return data without waiting for the socket. */
bool tls_conn_has_buffered(const struct tls_conn *c);
/* Details of the last failure inside the libetpan driver, whose interface
 * only says -1. */
const struct err *tls_conn_last_error(const struct tls_conn *c);

/* ---- libetpan ----------------------------------------------------------- */

/* A mailstream_low over c.  Takes ownership of c in every case (on failure
 * it is closed).  mailstream_low_close closes the connection,
 * mailstream_low_free frees it (closing it first if need be). */
mailstream_low *tls_stream_low_new(struct tls_conn *c, struct err *e);

/* The same wrapped in a mailstream (TLS_STREAM_BUFFER_SIZE); end it with
 * mailstream_close. */
mailstream *tls_stream_mailstream(struct tls_conn *c, struct err *e);

/* The connection under s, or NULL if s does not run over this driver. */
struct tls_conn *tls_stream_conn(mailstream *s);

/* STARTTLS on a stream whose protocol code has sent STARTTLS and read the
 * go-ahead: drops everything libetpan and this layer buffered, does the
 * client handshake on the same socket and continues the stream over TLS.
 * s may run over this driver or over libetpan's plain socket driver (whose
 * low is then replaced).  Unsent output in s is an error. */
int tls_stream_starttls(mailstream *s, struct tls_client *client, const char *host,
                        struct err *e);

#endif
