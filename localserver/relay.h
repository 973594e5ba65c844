/*
 * relay: the queue runner, which delivers spooled mail.
 *
 * One runner process per server (forked by the supervisor) holds the queue
 * lock and loops: pick entries whose retry time has come, deliver each
 * pending recipient -- local retries into their Maildir, remote ones by
 * SMTP to the smarthost or the domain's MX (a `route` in the config
 * overrides the MX) -- record the outcome durably right after each
 * server's reply, and on a 4xx or network error schedule the next attempt
 * with exponential backoff between retry_min and retry_max.  5xx replies
 * and entries older than queue_lifetime fail, and a DSN (dsn.h) goes back
 * to the sender unless it was the null sender or NOTIFY says not to.
 * Outbound mail is DKIM-signed when the config has a key.
 */
#ifndef CORREOD_RELAY_H
#define CORREOD_RELAY_H

#include <signal.h>
#include <stdbool.h>

#include "buf.h"
#include "conf.h"
#include "err.h"

/* Run until *stop is set (SIGTERM), waking at least every `poll_seconds`
 * and at once when *kick is set (SIGUSR1 from `correod queue flush`).
 * Returns 0 on a clean stop. */
int relay_run(const struct conf *c, volatile sig_atomic_t *stop,
              volatile sig_atomic_t *kick, struct err *e);

/* One pass over the queue: try every entry whose time has come (or every
 * entry if force), then return.  For `queue flush` and tests. */
int relay_pass(const struct conf *c, bool force, struct err *e);

/* The message msg (CRLF line ends) made 7-bit for a server that does not
 * announce 8BITMIME (RFC 6152 forbids sending it 8-bit data): walking the
 * MIME structure (lib/message), every leaf part holding 8-bit bytes is
 * re-encoded -- quoted-printable for text/ parts, base64 for the others --
 * with its Content-Transfer-Encoding replaced, and multipart/ or message/
 * parts labelled 8bit or binary are relabelled 7bit.  A message without
 * MIME-Version gets one (and a Content-Type naming the charset of a bare
 * 8-bit body: utf-8 when the bytes are valid UTF-8, else unknown-8bit).
 * Appends the result to out.  -1 with ERR_UNSUPPORTED when it cannot be
 * done (8-bit bytes in a header, a preamble, a part with an unknown
 * encoding, a composite part too deep to parse): the caller bounces with
 * 5.6.3. */
int relay_to_7bit(const char *msg, size_t len, struct buf *out, struct err *e);

#endif
