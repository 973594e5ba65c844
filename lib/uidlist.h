/*
 * uidlist: a Maildir folder's IMAP UIDs in Dovecot's "dovecot-uidlist"
 * version 3 format, with Dovecot's lock protocol, so that Dovecot and we can
 * serve the same folder (in turn or at the same time) with the same UIDs and
 * the same UIDVALIDITY.
 *
 * The file, in the folder's directory (next to cur/ new/ tmp/):
 *
 *     3 V<uidvalidity> N<next uid> G<mailbox guid> [other fields]
 *     <uid>[ <field>]... :<file name>
 *
 * Records are in ascending UID order.  The name is the base name of the file
 * (up to the first ':'), or a full name last seen; files are matched by base
 * name, so a flag change (a rename) keeps the UID.  Fields are a key letter and
 * a value (Dovecot writes W<vsize>, S<size>, G<guid>, P<pop3 uidl>,
 * O<pop3 order>); we keep header and record fields we do not interpret byte
 * for byte.  The N field may lag behind: a writer may append records to the
 * file under the lock without rewriting the header, so the next UID is the
 * larger of N and the highest UID plus one.  Version 1 files (Courier's
 * "1 <uidvalidity> <next uid>", records "<uid> <name>") are read too; we only
 * ever write version 3.
 *
 * Reading takes no lock and tolerates a writer that replaces the file
 * (rename) or appends to it at the same time: an incomplete last line is
 * ignored.  Writing takes "dovecot-uidlist.lock" (created O_EXCL; a lock whose
 * mtime is older than the stale timeout is taken over, a holder refreshes its
 * mtime), re-reads the file under the lock, writes the new list into the lock
 * file itself, fsyncs it, renames it over "dovecot-uidlist" and fsyncs the
 * directory.  The file is never modified in place, so a crash at any point
 * leaves the old or the new list whole (and at worst a lock file that goes
 * stale).
 *
 * UIDs are only ever assigned under the lock, in the order Dovecot assigns
 * them: by the delivery time at the start of the name (decimal seconds), then
 * the microseconds of a ".M<usec>" that follows, then the rest of the base
 * name byte by byte (where the end of the base sorts like ':').  New records
 * list the base name, as Dovecot 2.3 writes them.  A file name with control
 * characters (a newline would forge a record) gets no UID.  A record is
 * dropped only when a scan of new/ and cur/ that no one disturbed (the
 * directories' mtimes did not move while it ran, and were old enough to have
 * moved) did not find its file; a busy folder keeps its records until then.
 *
 * A process running as root gives the file it writes to the owner of the
 * file it replaces (else of the folder): Dovecot's mail processes, running as
 * the user, must be able to read and replace it.
 *
 * A uidlist that cannot be parsed is an ERR_PARSE error saying what is wrong
 * and where.  The caller may then start over with uidlist_rebuild(), which
 * gives every file a new UID under a NEW UIDVALIDITY; that is a visible event
 * for every client of the folder, so the caller must log it.
 *
 * A struct uidlist is not for concurrent use by several threads.
 */
#ifndef CORREO_UIDLIST_H
#define CORREO_UIDLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "err.h"
#include "maildir.h"

#define UIDLIST_FILE "dovecot-uidlist"
#define UIDLIST_LOCK_FILE "dovecot-uidlist.lock"

/* Dovecot's values: mailbox_lock_timeout and its uidlist stale timeout. */
#define UIDLIST_LOCK_TIMEOUT_MS_DEFAULT 300000
#define UIDLIST_STALE_TIMEOUT_S_DEFAULT 120

/* Limits on what is read: a bigger file or a longer line is ERR_LIMIT. */
#define UIDLIST_FILE_MAX (512u * 1024 * 1024)
#define UIDLIST_LINE_MAX 8192

struct uidlist_opts {
    int lock_timeout_ms;     /* how long to wait for the lock; 0: try once */
    int stale_timeout_s;     /* a lock not refreshed for this long is taken over
                              * (by its mtime, or as long as we watched it) */
};

/* The defaults above. */
#define UIDLIST_OPTS_INIT {UIDLIST_LOCK_TIMEOUT_MS_DEFAULT, UIDLIST_STALE_TIMEOUT_S_DEFAULT}

struct uidlist_rec {
    uint32_t uid;
    const char *listed;      /* the name as in the file (base or full name) */
    const char *fields;      /* the record's fields between UID and ":", verbatim
                              * ("W2481 S2400"), "" when none */
    const char *file;        /* the current file name, when found (see found) */
    size_t base_len;         /* length of the base name (listed and file agree) */
    enum maildir_sub sub;    /* where file is */
    bool found;              /* a scan found the file: file and sub are current;
                              * else file is the listed name and sub is CUR */
    /* private */
    char *mem_;              /* listed and fields */
    char *file_mem_;         /* file when it differs from listed */
};

struct uidlist {
    char *dir;               /* the folder's directory */
    uint32_t uidvalidity;
    uint32_t next_uid;       /* > every UID listed */
    char *hdr_fields;        /* header fields other than V and N, verbatim and in
                              * order ("Gbc2a...f375"), "" when none */
    size_t n;                /* records, ascending UID */
    struct uidlist_rec *v;
    /* private */
    struct uidlist_opts opts_;
    bool exists_;            /* read from a file (else: not written yet) */
    bool rebuild_;           /* replaces a file that could not be parsed */
    dev_t dev_;              /* identity of the file read last */
    ino_t ino_;
    off_t size_;
    struct timespec mtime_;
    bool have_mark_;         /* new/ and cur/ as the last trusted scan saw them */
    struct timespec mark_mtime_[2];
    ino_t mark_ino_[2];
    off_t mark_size_[2];
    uint32_t *hash_;         /* base name -> index + 1; 0 empty */
    size_t hash_cap_;
    unsigned version_;       /* 1 or 3 */
};

/*
 * Read "<dir>/dovecot-uidlist" (no lock taken).  When it does not exist, the
 * list is empty with UIDVALIDITY = now, next UID 1 and a new mailbox GUID;
 * nothing is written until uidlist_sync().  opts NULL: the defaults.
 * ERR_PARSE for a file that is not a uidlist (the text names the line and the
 * problem), ERR_UNSUPPORTED for a version other than 1 and 3, ERR_LIMIT for a
 * file or line over the limits, ERR_INVAL for a symbolic link or anything
 * but a regular file, ERR_IO when it cannot be read.
 */
int uidlist_open(const char *dir, const struct uidlist_opts *opts, struct uidlist **out,
                 struct err *e);

/*
 * Start over after uidlist_open() failed on a bad file: an empty list whose
 * UIDVALIDITY is now, or one more than the old one when that is not smaller
 * (*old_uidvalidity gets the old value if the header could be read, else 0;
 * may be NULL).  The next uidlist_sync() replaces the bad file, unless
 * another writer has put a readable one there meanwhile, which it then uses.
 * The caller must log the new UIDVALIDITY: every client's UIDs are void.
 */
int uidlist_rebuild(const char *dir, const struct uidlist_opts *opts, struct uidlist **out,
                    uint32_t *old_uidvalidity, struct err *e);

void uidlist_free(struct uidlist *ul);

/* What a sync changed, compared with the list before it. */
struct uidlist_sync_result {
    size_t added;            /* UIDs new to us (given by us or by another writer) */
    size_t expunged;         /* UIDs gone (files gone; dropped by us or another) */
    size_t renamed;          /* files found under another name than an earlier
                              * sync of this struct found them under */
    bool written;            /* we replaced dovecot-uidlist */
    bool uidvalidity_changed;/* someone else rebuilt the list: all UIDs void */
    bool scan_unstable;      /* new/ or cur/ kept changing: nothing dropped */
    bool scanned;            /* false: neither the list nor new/ and cur/ had
                              * changed since the last sync, nothing was read */
};

#define UIDLIST_SYNC_WRITE 0x1u   /* rewrite the file even with no change
                                   * (refreshes the listed names) */

/*
 * Bring the list up to date with the folder f (f->path must be ul->dir):
 * re-read the file if another writer changed it, scan new/ and cur/ (unless
 * neither they nor the file changed since the last sync: a stat of each), and
 * when
 * a file has no UID, a record's file is gone, or the file does not exist
 * yet: take the lock, re-read and rescan under it, give new files UIDs from
 * next_uid on (in Dovecot's order), drop records of files gone, and replace
 * the file.  A renamed file keeps its UID (its new name is in file; the
 * listed name is refreshed on the next write).  res may be NULL.
 *
 * On failure the UIDs in memory and on disk are as before (ERR_IO with
 * temporary set when the lock could not be had in time), with one exception:
 * when only the final fsync of the directory failed, the new file is in place
 * and the next sync or refresh reads it.  What the scan found (file, sub,
 * found) is kept either way.
 */
int uidlist_sync(struct uidlist *ul, const struct maildir_folder *f, unsigned flags,
                 struct uidlist_sync_result *res, struct err *e);

/* Re-read the file (no lock) if it changed since it was read; *changed (may be
 * NULL) says whether it did.  Records keep what a scan found for them. */
int uidlist_refresh(struct uidlist *ul, bool *changed, struct err *e);

/* ---- lookups -------------------------------------------------------------- */

/* The record of a UID, or NULL.  Binary search. */
const struct uidlist_rec *uidlist_by_uid(const struct uidlist *ul, uint32_t uid);
/* The record of a file, by its full name or base name, or NULL.  Hashed. */
const struct uidlist_rec *uidlist_by_name(const struct uidlist *ul, const char *name);
/* Highest UID listed, 0 when empty. */
uint32_t uidlist_highest_uid(const struct uidlist *ul);
size_t uidlist_count(const struct uidlist *ul);
/* The value of field key of a record ('W' -> "2481"), with its length, or
 * NULL. */
const char *uidlist_rec_field(const struct uidlist_rec *r, char key, size_t *len);

/* Dovecot's order of new files (see the top); <0, 0, >0 like strcmp. */
int uidlist_name_cmp(const char *a, const char *b);

/* ---- the lock, for callers that need it around other work ---------------- */

struct uidlist_lock;

/* Create "<dir>/dovecot-uidlist.lock" with O_EXCL, waiting up to
 * opts->lock_timeout_ms and taking over a stale lock.  mode: of the file it
 * will become.  ERR_IO with temporary set (sys_errno EAGAIN) on timeout. */
int uidlist_lock_take(const char *dir, const struct uidlist_opts *opts, mode_t mode,
                      struct uidlist_lock **out, struct err *e);
/* Touch the lock so that no one takes it over; ERR_IO when it is not ours any
 * more (someone judged it stale and took it). */
int uidlist_lock_refresh(struct uidlist_lock *lk, struct err *e);
/* Remove the lock file if it is still ours, and free lk. */
void uidlist_lock_release(struct uidlist_lock *lk);

/* ---- failure injection for tests ----------------------------------------- */

enum uidlist_step {
    UIDLIST_STEP_LOCK_WAIT = 0,   /* the lock is held by someone: before each retry */
    UIDLIST_STEP_LOCKED,          /* lock created, before the re-read */
    UIDLIST_STEP_WRITTEN,         /* before writing the new list into the lock file */
    UIDLIST_STEP_FSYNCED,         /* before fsync of the lock file */
    UIDLIST_STEP_RENAMED,         /* before rename over dovecot-uidlist */
    UIDLIST_STEP_DIR_FSYNCED,     /* before fsync of the directory */
    UIDLIST_STEP_COUNT
};

/* When set, called before each step; returning -1 makes the step fail (errno
 * EIO), a test may also end the process inside it.  NULL by default. */
extern int (*uidlist_step_hook)(enum uidlist_step step);
const char *uidlist_step_name(enum uidlist_step step);

#endif
