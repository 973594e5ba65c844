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

#endif
