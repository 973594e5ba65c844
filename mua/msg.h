/*
 * msg: one message as the client's view model sees it.
 *
 * Every mailbox backend (Maildir, IMAP, POP3, notmuch) fills one struct msg
 * per message from its header cache or from parsing; sorting, threading,
 * patterns, the index and the header cache work on these and never on a
 * backend's own structures.  All strings are UTF-8 that has been decoded
 * (RFC 2047) but NOT sanitized: anything drawn goes through lib/sanitize.
 *
 * Ownership: a struct msg owns all of its strings and arrays; msg_free()
 * frees them and the struct itself.  NULL string fields mean "absent".
 */
#ifndef CORREO_MSG_H
#define CORREO_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "message.h"   /* struct msg_addr: display name + addr-spec */

enum msg_flag {
    MSG_SEEN     = 1u << 0,  /* Maildir S, IMAP \Seen */
    MSG_REPLIED  = 1u << 1,  /* Maildir R, IMAP \Answered */
    MSG_FLAGGED  = 1u << 2,  /* Maildir F, IMAP \Flagged */
    MSG_DRAFT    = 1u << 3,  /* Maildir D, IMAP \Draft */
    MSG_TRASHED  = 1u << 4,  /* Maildir T, IMAP \Deleted on the server */
    MSG_PASSED   = 1u << 5,  /* Maildir P (forwarded) */
    MSG_NEW      = 1u << 6,  /* not yet seen by any client: Maildir new/, IMAP \Recent */
    MSG_DELETED  = 1u << 7,  /* marked for deletion in this session (applied at sync) */
    MSG_TAGGED   = 1u << 8,  /* tagged in this session */
};

struct msg_addrlist {
    struct msg_addr *v;
    size_t n;
};

struct msg {
    char *key;               /* backend key: Maildir base name, IMAP UID, ... */
    unsigned flags;          /* enum msg_flag bits */
    time_t date;             /* Date: header as UTC seconds; 0 if missing or unparsable */
    int date_tz;             /* the Date: header's zone, minutes east of UTC */
    time_t received;         /* delivery time: file mtime, IMAP INTERNALDATE */
    uint64_t size;           /* octets of the whole message */
    struct msg_addrlist from, to, cc, reply_to, sender;
    char *subject;
    char *message_id;        /* without <> */
    char *in_reply_to;       /* first message id of In-Reply-To, without <> */
    char **references;       /* References in header order, without <> */
    size_t n_references;
    char *list_id;           /* List-Id value (the <...> part when present) */
    char *x_label;           /* X-Label, NULL if none */
};

/* Allocate an empty msg (all fields zero/NULL).  Never NULL. */
struct msg *msg_new(void);
/* Free m and everything it owns.  m may be NULL. */
void msg_free(struct msg *m);

#endif
