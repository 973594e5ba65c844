/*
 * dsn: delivery status notifications (RFC 3464) for failed, delayed,
 * delivered and relayed recipients, as multipart/report messages from MAILER-DAEMON@hostname
 * with the null sender, including the original message or its headers
 * (RET=HDRS).
 */
#ifndef CORREOD_DSN_H
#define CORREOD_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "queue.h"

/* DSN_DELIVERED: delivered into a mailbox here; DSN_RELAYED: handed to a
 * server that does not announce DSN (RFC 3461 5.2.2.1).  These two carry
 * only the original's header (RFC 3461 4.3: RET=FULL is for failures). */
enum dsn_kind { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED };

/* Build the report for the recipients of q whose index is in which[] (n of
 * them), in kind.  orig/orig_len is the spooled data.  out gets a complete
 * message (CRLF line ends) to queue for q->mail_from. */
int dsn_build(struct buf *out, const char *hostname, const struct queue_entry *q,
              const size_t *which, size_t n, enum dsn_kind kind,
              const char *orig, size_t orig_len, time_t now, struct err *e);

#endif
