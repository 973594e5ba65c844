/*
 * mailbox: one open mailbox and the operations every backend implements.
 *
 * A backend (Maildir now; IMAP, POP3 and notmuch later) is a table of
 * operations, struct mailbox_ops.  mailbox_open() picks the backend for a
 * path, and the rest of the client only calls through mb->ops (or the
 * mailbox_* wrappers below), so the index, pager and patterns never see a
 * backend's own structures.
 *
 * The messages live in mb->store (mua/store.h): message numbers are store
 * indexes, file order after a load.  The contract of each operation:
 *
 *   open          attach to the mailbox at path; no messages yet.
 *   load          (re)fill mb->store with every message, calling progress
 *                 (may be NULL) every MAILBOX_PROGRESS_STEP messages that
 *                 must be read from the mailbox (not from a cache), and once
 *                 at the end, always from the calling thread (a backend may
 *                 read with worker threads; they are gone when load
 *                 returns).  mb->stats says how many came from where.
 *   check         look for changes by others: new messages are appended to
 *                 the store, flag changes update their records, vanished
 *                 messages get STORE_B_GONE (numbers do not change; the
 *                 caller compacts with store_compact when it wants to).
 *                 *changed tells whether anything changed.
 *   read_message  append the whole message (raw bytes) to out; read_headers
 *                 only its header block (up to and including the empty
 *                 line).  Either follows a rename by another program.
 *   set_flags     make the message's flags (enum msg_flag bits) what is
 *                 given.  Flags the backend stores are written now;
 *                 session-only bits (MSG_DELETED, MSG_TAGGED) only change
 *                 the record.
 *   sync          apply pending changes: every message with MSG_DELETED is
 *                 removed (and gets STORE_B_GONE).  A message that could not
 *                 be removed is listed in *errs with its error and stays;
 *                 a message that is not marked is never touched.
 *   copy          copy (move: move) the message into the folder at
 *                 dest_folder; a moved message gets STORE_B_GONE.
 *   append        add a new message with the given flags; it is appended to
 *                 the store as well.
 *   modify_tags   (optional; NULL when the backend has no labels) apply
 *                 "+tag -tag ..." to the message's labels and update its
 *                 record (store_msg.tags, and flags the labels map to).
 *   close         release everything the backend holds (not mb itself).
 *
 * Errors are values (struct err); an error with ERR_SCOPE_MSG concerns one
 * message and the mailbox stays usable.  A read-only mailbox refuses
 * operations that write (ERR_UNSUPPORTED) except session-only flag bits.
 */
#ifndef CORREO_MAILBOX_H
#define CORREO_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "msg.h"
#include "store.h"

#define MAILBOX_PROGRESS_STEP 1000

/* mailbox_open flags */
#define MAILBOX_READONLY  0x1u   /* never write to the mailbox */
#define MAILBOX_NO_HCACHE 0x2u   /* do not use a header cache */

/* Session-only flag bits: never written to the mailbox. */
#define MAILBOX_SESSION_FLAGS (MSG_DELETED | MSG_TAGGED)

struct mailbox;

typedef void (*mailbox_progress_fn)(void *ctx, size_t done, size_t total);

/* One message that sync could not handle. */
struct mailbox_msg_err {
    uint32_t msg;
    struct err err;
};

/* Free with mailbox_sync_errs_free. */
struct mailbox_sync_errs {
    size_t n;
    struct mailbox_msg_err *v;
};

struct mailbox_ops {
    const char *name;
    int (*open)(struct mailbox *mb, const char *path, unsigned flags, struct err *e);
    int (*load)(struct mailbox *mb, mailbox_progress_fn progress, void *ctx, struct err *e);
    int (*check)(struct mailbox *mb, bool *changed, struct err *e);
    int (*read_message)(struct mailbox *mb, uint32_t msg, struct buf *out, struct err *e);
    int (*read_headers)(struct mailbox *mb, uint32_t msg, struct buf *out, struct err *e);
    int (*set_flags)(struct mailbox *mb, uint32_t msg, unsigned flags, struct err *e);
    /* errs may be NULL; returns -1 when any message failed (e tells how
     * many, errs which). */
    int (*sync)(struct mailbox *mb, struct mailbox_sync_errs *errs, struct err *e);
    int (*copy)(struct mailbox *mb, uint32_t msg, const char *dest_folder, bool move,
                struct err *e);
    int (*append)(struct mailbox *mb, const void *data, size_t len, unsigned flags,
                  struct err *e);
    int (*modify_tags)(struct mailbox *mb, uint32_t msg, const char *changes, struct err *e);
    void (*close)(struct mailbox *mb);
};

/* What the last load/check did, for the status line and the tests. */
struct mailbox_stats {
    size_t cache_hits;     /* records taken from the header cache */
    size_t cache_misses;   /* messages whose header was read and parsed */
    size_t cache_stale;    /* cache records of messages no longer there */
    size_t vanished;       /* messages gone between the scan and the read */
};

struct mailbox {
    const struct mailbox_ops *ops;
    char *path;              /* absolute path or URL as opened */
    char *name;              /* short name for display (last component) */
    struct store store;
    bool readonly;
    char *hcache_dir;        /* NULL: the default header cache directory */
    bool has_warning;        /* e.g. running without a header cache */
    struct err warning;
    struct mailbox_stats stats;
    void *priv;              /* the backend's */
};

/* Extra choices for mailbox_open_opts; NULL means defaults. */
struct mailbox_open_opts {
    unsigned flags;          /* MAILBOX_* */
    const char *hcache_dir;  /* the header_cache option; NULL: default */
};

/* Pick the backend for path (a directory with cur/ new/ tmp/ is a Maildir)
 * and open it.  ERR_NOTFOUND when path does not exist, ERR_UNSUPPORTED when
 * no backend takes it.  Free with mailbox_close. */
int mailbox_open(const char *path, unsigned flags, struct mailbox **out, struct err *e);
int mailbox_open_opts(const char *path, const struct mailbox_open_opts *opts,
                      struct mailbox **out, struct err *e);
void mailbox_close(struct mailbox *mb);

static inline int mailbox_load(struct mailbox *mb, mailbox_progress_fn progress, void *ctx,
                               struct err *e)
{
    return mb->ops->load(mb, progress, ctx, e);
}

/* Labels: apply changes ("+tag -tag ...", blank-separated) to message msg.
 * ERR_UNSUPPORTED when the mailbox has no labels (mailbox_has_tags). */
int mailbox_modify_tags(struct mailbox *mb, uint32_t msg, const char *changes, struct err *e);

static inline bool mailbox_has_tags(const struct mailbox *mb)
{
    return mb->ops->modify_tags != NULL;
}

void mailbox_sync_errs_free(struct mailbox_sync_errs *errs);
/* Add an entry (for backends). */
void mailbox_sync_errs_add(struct mailbox_sync_errs *errs, uint32_t msg, const struct err *err);

/* ---- helpers for backends ------------------------------------------------- */

/* The zone of a Date: header text as minutes east of UTC ("+0130" -> 90,
 * "EST" -> -300, "GMT"/"UT"/"Z" -> 0).  false (and *tz = 0) when there is
 * none. */
bool mailbox_date_tz(const char *date_text, int *tz);

/* The first field called name (ASCII case ignored) in the header block
 * hdr[0..len), unfolded, blanks around it trimmed and RFC 2047 decoded,
 * replacing out's contents.  false when there is no such field. */
bool mailbox_header_field(const char *hdr, size_t len, const char *name, struct buf *out);

/* notmuch://[DBPATH]?query=QUERY[&limit=N]: a query of a notmuch database
 * as a mailbox (mua/mbox_notmuch.c).  DBPATH empty: the database of the
 * notmuch configuration ($NOTMUCH_CONFIG, else notmuch's default). */
#define MAILBOX_NOTMUCH_PREFIX "notmuch://"

/* The backends. */
extern const struct mailbox_ops mbox_maildir_ops;
#ifdef HAVE_NOTMUCH
extern const struct mailbox_ops mbox_notmuch_ops;
#endif

#endif
