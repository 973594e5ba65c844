/*
 * pop3_store: a user's POP3 maildrop -- the INBOX of their Maildir.
 *
 * Owns what a POP3 session needs from the disk: the lock against a second
 * POP3 session on the same Maildir, the list of messages with their exact
 * octet counts and UIDLs, reading one message, and the deletions and \Seen
 * flags of the UPDATE state.
 *
 *  - The lock is an flock(2) on "<maildir>/correod-pop3.lock", held until
 *    pop3_store_close() (or until the process dies: nothing to clean up).
 *    Delivery, IMAP and other programs are not locked out.
 *  - The messages are those of new/ and cur/ that have a UID in the
 *    folder's dovecot-uidlist (lib/uidlist; files new to it get their UIDs
 *    at open, under the uidlist lock), in UID order, so POP3 and IMAP see the
 *    same mail in the same order.
 *  - The UIDL of a message is Dovecot's default pop3_uidl_format
 *    "%08Xu%08Xv": the UID then the UIDVALIDITY, eight upper-case hex digits
 *    each.  A record with a "P<uidl>" field (a UIDL kept by Dovecot after a
 *    migration) keeps that UIDL.  So a Maildir moved between Dovecot and
 *    correod keeps its UIDLs.
 *  - The size of a message is its octet count with every bare LF as CRLF
 *    (pop3_crlf_octets): Dovecot's virtual size.  It is taken from the
 *    record's W field or a ",W=<n>" in the file name when there is one, else
 *    computed by reading the file once at open; it stays in memory for the
 *    session.
 *  - At QUIT: every message marked deleted is unlinked (one already gone
 *    counts as deleted); every message retrieved whole and not deleted gets
 *    the S flag (moving from new/ to cur/), as Dovecot does.
 *
 * A message renamed by another program meanwhile (a flag change) is found
 * again by its base name.
 */
#ifndef CORREOD_POP3_STORE_H
#define CORREOD_POP3_STORE_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"
#include "pop3_proto.h"

#define POP3_STORE_LOCK_FILE "correod-pop3.lock"
/* How long open waits for the dovecot-uidlist lock of another writer. */
#define POP3_STORE_UIDLIST_WAIT_MS 10000

struct pop3_store;

/*
 * Lock and list the maildrop of the Maildir root maildir.  POP3_OPEN_OK:
 * *out is the store, *msgs (xmalloc'd, NULL when *n is 0) its messages in
 * order, for the session to own.  A Maildir that does not exist yet is an
 * empty maildrop (nothing is created).  POP3_OPEN_LOCKED: another session
 * holds the lock.  POP3_OPEN_FAIL: *e says why.
 */
enum pop3_open pop3_store_open(const char *maildir, struct pop3_store **out,
                               struct pop3_msg **msgs, size_t *n, struct err *e);

/* Number of messages listed at open. */
size_t pop3_store_count(const struct pop3_store *st);

/* Open message idx (0-based) for reading from its first byte; a message
 * open before is closed.  ERR_NOTFOUND when its file is gone. */
int pop3_store_msg_open(struct pop3_store *st, size_t idx, struct err *e);
/* Up to cap bytes of the open message: the count, 0 at its end, -1 on a
 * read error or with no message open. */
ssize_t pop3_store_msg_read(struct pop3_store *st, char *buf, size_t cap);
void pop3_store_msg_close(struct pop3_store *st);

/*
 * The UPDATE state: marks[i] (POP3_MARK_* bits) for message i, n at most
 * the count.  0 when every marked message is gone; -1 when some could not
 * be removed (*e says how many and why; the others are removed).  A failed
 * \Seen flag change is not a failure (*flag_failures, may be NULL, counts
 * them).  The new/ and cur/ directories are fsync'ed after removals.
 */
int pop3_store_update(struct pop3_store *st, const unsigned char *marks, size_t n,
                      size_t *flag_failures, struct err *e);

/* Close the open message, release the lock, free.  NULL is fine. */
void pop3_store_close(struct pop3_store *st);

#endif
