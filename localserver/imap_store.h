/*
 * imap_store: one logged-in user's IMAP mail store over their Maildir++
 * tree, without sockets or session state.
 *
 * Owns:
 *  - mailbox names: IMAP names (UTF-8, as imap_mailbox_decode gives them)
 *    to Maildir++ folders and back.  The hierarchy delimiter is "."; INBOX
 *    (any case) is the root; "Lists.dev" is the directory ".Lists.dev";
 *    bytes outside ASCII are stored in modified UTF-7 (".Caf&AOk-"), as
 *    Dovecot stores them.  Refused: empty names and components, "/", "~",
 *    "\", "*", "%", a leading or doubled ".", control characters, invalid
 *    UTF-8, names too long for a directory.  A folder directory (or its
 *    cur/ new/ tmp/) that is a symbolic link or not a directory is never
 *    opened (fstatat with AT_SYMLINK_NOFOLLOW, openat with O_NOFOLLOW), so
 *    no name reaches outside the Maildir.
 *  - LIST with "*" and "%" patterns, \HasChildren/\HasNoChildren, \Noselect
 *    for parents that exist only through their children, SPECIAL-USE flags
 *    from a configurable map (default: Sent Drafts Trash Junk Archive),
 *    \Subscribed; subscriptions in Dovecot's "subscriptions" file (version 2:
 *    "V\t2\n\n" then one name per line, hierarchy as TAB, names in modified
 *    UTF-7; the older one-name-per-line form is read too), replaced
 *    atomically.
 *  - CREATE (superiors too), DELETE (INBOX refused; a folder with children
 *    loses its messages and becomes \Noselect), RENAME (of INBOX: its
 *    messages move into the new folder), STATUS.
 *  - an open folder (struct imap_view): UIDs from the folder's
 *    dovecot-uidlist (lib/uidlist), messages in UID order with flags from
 *    the ":2," info (\Seen S, \Answered R, \Flagged F, \Deleted T, \Draft
 *    D) and keywords through Dovecot's "dovecot-keywords" file (line
 *    "<n> <name>", n 0..25 for the letters a..z); \Recent for the messages
 *    this view moved from new/ to cur/ (read-write views do that, as
 *    Dovecot does on SELECT); refresh() reports what other programs did
 *    (new files, expunges, renames that changed flags); STORE, EXPUNGE,
 *    COPY, MOVE (COPYUID data from the destination's uidlist), APPEND
 *    (APPENDUID), opening a message by UID (following renames) and a
 *    per-folder FETCH cache file.
 *
 * The FETCH cache ("correod-fetch-cache" in the folder's directory) holds
 * imap_fetch cache records keyed by UID; a record is used only when its
 * raw size equals the file's size now.  It is written whole into a new file
 * and renamed over the old one; deleting it loses nothing.
 *
 * Errors: ERR_INVAL for a refused name or flag, ERR_NOTFOUND for a folder
 * or UID that does not exist, ERR_EXISTS for CREATE/RENAME onto an
 * existing folder, ERR_LIMIT when a folder already uses all 26 keyword
 * letters, ERR_IO for the disk.
 */
#ifndef CORREOD_IMAP_STORE_H
#define CORREOD_IMAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "imap_fetch.h"
#include "imap_parse.h"
#include "maildir.h"
#include "uidlist.h"

#define IMAP_STORE_SUBSCRIPTIONS_FILE "subscriptions"
#define IMAP_STORE_KEYWORDS_FILE "dovecot-keywords"
#define IMAP_STORE_KEYWORDS_LOCK "dovecot-keywords.lock"
#define IMAP_STORE_CACHE_FILE "correod-fetch-cache"
#define IMAP_STORE_KEYWORD_MAX 26
#define IMAP_STORE_KEYWORD_LEN_MAX 200

/* Folder name -> SPECIAL-USE flag. */
struct imap_special_use {
    const char *name;          /* IMAP name, e.g. "Sent" */
    const char *flag;          /* e.g. "\\Sent" */
};

struct imap_store_opts {
    const struct imap_special_use *special_use;   /* NULL: the default map */
    size_t n_special_use;
    struct uidlist_opts uidlist;                   /* lock timeouts */
};

struct imap_store;

/* Open the Maildir rooted at maildir (it must exist with cur/ new/ tmp/).
 * opts NULL: defaults. */
int imap_store_open(const char *maildir, const struct imap_store_opts *opts,
                    struct imap_store **out, struct err *e);
void imap_store_close(struct imap_store *st);

/* ---- names ------------------------------------------------------------ */

/* IMAP name (UTF-8) -> Maildir++ folder name ("INBOX" or the directory name
 * without its leading "."), to free().  -1 with ERR_INVAL for a refused
 * name. */
int imap_store_name_to_folder(const char *name, char **folder, struct err *e);
/* Folder name as on disk -> IMAP name (UTF-8), to free().  -1 with
 * ERR_INVAL for a folder name that is not canonical modified UTF-7 or that
 * name_to_folder would refuse. */
int imap_store_folder_to_name(const char *folder, char **name, struct err *e);

/* ---- LIST, subscriptions ---------------------------------------------- */

#define IMAP_LIST_NOSELECT      0x01u
#define IMAP_LIST_HASCHILDREN   0x02u
#define IMAP_LIST_HASNOCHILDREN 0x04u
#define IMAP_LIST_SUBSCRIBED    0x08u
#define IMAP_LIST_NONEXISTENT   0x10u

struct imap_list_entry {
    char *name;                /* UTF-8 */
    unsigned flags;            /* IMAP_LIST_* */
    const char *special_use;   /* "\\Sent" etc., or NULL */
};

struct imap_list {
    size_t n;
    struct imap_list_entry *v; /* INBOX first, then by name */
};

#define IMAP_LIST_SEL_SUBSCRIBED 0x1u   /* only subscribed names, missing
                                         * ones as \NonExistent */

/* Match "*" (anything) and "%" (anything but ".") against name; INBOX's
 * first component matches case-insensitively. */
bool imap_store_list_match(const char *pattern, const char *name);

/* LIST reference pattern (both UTF-8; the reference is prefixed to the
 * pattern).  sel: IMAP_LIST_SEL_*.  Free with imap_list_free. */
int imap_store_list(struct imap_store *st, const char *reference, const char *pattern,
                    unsigned sel, struct imap_list *out, struct err *e);
void imap_list_free(struct imap_list *l);

/* Write the flags of an entry as "(\HasNoChildren \Sent)". -1 at the
 * ceiling. */
int imap_list_flags_write(const struct imap_list_entry *le, struct buf *out);

int imap_store_subscribe(struct imap_store *st, const char *name, struct err *e);
int imap_store_unsubscribe(struct imap_store *st, const char *name, struct err *e);
/* The subscribed names (UTF-8) in file order; free each and the array. */
int imap_store_subscriptions(struct imap_store *st, char ***names, size_t *n,
                             struct err *e);

/* ---- folders ---------------------------------------------------------- */

/* Create name and any missing superior; a trailing "." is dropped.
 * ERR_EXISTS when name exists (INBOX always does). */
int imap_store_create(struct imap_store *st, const char *name, struct err *e);
/* Delete name: refused for INBOX; with children the folder's directory
 * goes (its messages with it) and the name stays as \Noselect. */
int imap_store_delete(struct imap_store *st, const char *name, struct err *e);
/* Rename old to new with its children.  INBOX: its messages move into new
 * (created), INBOX stays, its children stay. */
int imap_store_rename(struct imap_store *st, const char *old_name, const char *new_name,
                      struct err *e);

struct imap_status {
    uint32_t messages, recent, uidnext, uidvalidity, unseen, deleted;
    uint64_t size;             /* RFC822.SIZE sum (CRLF form) */
};

/* STATUS: assigns UIDs to new files (uidlist sync).  recent counts files in
 * new/. */
int imap_store_status(struct imap_store *st, const char *name, struct imap_status *out,
                      struct err *e);

/* ---- an open folder --------------------------------------------------- */

#define IMAP_FL_RECENT 0x100u  /* with MAILDIR_F_* */

struct imap_msg {
    uint32_t uid;
    unsigned flags;            /* MAILDIR_F_* | IMAP_FL_RECENT */
    char keywords[MAILDIR_KEYWORDS_SIZE];   /* letters of this folder */
    uint64_t raw_size;         /* file size, as stat saw it */
    time_t internal_date;      /* file mtime */
    struct maildir_ref ref;    /* private: where the file was seen */
};

struct imap_view {
    struct imap_msg *msgs;     /* ascending UID; sequence number = index + 1 */
    size_t n;
    uint32_t uidvalidity;
    uint32_t uidnext;
    bool read_only;
    char *name;                /* IMAP name */
    /* private */
    struct imap_store *st_;
    struct maildir_folder *f_;
    struct uidlist *ul_;
    char *kw_[IMAP_STORE_KEYWORD_MAX];      /* letter index -> name */
    struct timespec kw_mtime_;
    ino_t kw_ino_;
    size_t cap_;
    struct imap_cache_tab *cache_;
    bool cache_dirty_;
};

/* SELECT (read_only false: new/ files go to cur/ and are \Recent here) or
 * EXAMINE. */
int imap_view_open(struct imap_store *st, const char *name, bool read_only,
                   struct imap_view **out, struct err *e);
/* Writes the FETCH cache when it changed (errors ignored: it is a cache). */
void imap_view_close(struct imap_view *v);

/* Message index by UID, or -1. */
ssize_t imap_view_find(const struct imap_view *v, uint32_t uid);

/* Sequence set (uid: UID set) -> ascending message indexes (xmalloc'd,
 * NULL when *n is 0).  Numbers outside the view are skipped (UIDs) or
 * ERR_INVAL (sequence numbers, RFC 3501 "invalid sequence"). "$" ->
 * ERR_INVAL (the session keeps saved results). */
int imap_view_resolve(const struct imap_view *v, const struct imap_seqset *set, bool uid,
                      size_t **idx, size_t *n, struct err *e);

/* The keyword name of letter c in this folder, or NULL. */
const char *imap_view_keyword(const struct imap_view *v, char c);
/* "(\Seen \Recent kw)" for message i. -1 at the ceiling. */
int imap_view_flags_write(const struct imap_view *v, size_t i, struct buf *out);
/* The PERMANENTFLAGS / FLAGS lists: system flags and the folder's
 * keywords ("\*" too in PERMANENTFLAGS when a letter is free). */
int imap_view_flag_list_write(const struct imap_view *v, bool permanent, struct buf *out);

/* What changed.  Expunged: UIDs ascending and the sequence numbers they had
 * before the change (send EXPUNGE in descending order of seq). */
struct imap_changes {
    uint32_t *expunged_uids;
    uint32_t *expunged_seqs;
    size_t n_expunged;
    size_t n_added;            /* new messages at the end of msgs */
    uint32_t *flag_uids;       /* messages whose flags or keywords changed */
    size_t n_flags;
    bool uidvalidity_changed;  /* everything is void: reselect */
};
void imap_changes_free(struct imap_changes *c);

/* Bring the view up to date: new files, files gone, renames by others. */
int imap_view_refresh(struct imap_view *v, struct imap_changes *ch, struct err *e);

/* STORE on indexes idx[0..n).  flags as the parser gives them ("\\Seen",
 * "kw").  Changed messages' UIDs go to ch->flag_uids.  ERR_INVAL for
 * \Recent or an unknown system flag; ERR_LIMIT for too many keywords. */
int imap_view_store(struct imap_view *v, const size_t *idx, size_t n, enum imap_store_op op,
                    const struct imap_str *flags, size_t n_flags, struct imap_changes *ch,
                    struct err *e);

/* EXPUNGE (only_uids NULL) or UID EXPUNGE set: remove \Deleted messages.
 * ch->expunged_* say which. */
int imap_view_expunge(struct imap_view *v, const struct imap_seqset *only_uids,
                      struct imap_changes *ch, struct err *e);

/* COPY/MOVE messages idx[0..n) to folder dest: durable, flags, keywords
 * and internal date kept.  *src_uids and *dst_uids (n each, xmalloc'd) and
 * *dst_uidvalidity give COPYUID.  move: the sources are removed and
 * reported in ch->expunged_*. */
int imap_view_copy(struct imap_view *v, const size_t *idx, size_t n, const char *dest,
                   bool move, uint32_t *dst_uidvalidity, uint32_t **src_uids,
                   uint32_t **dst_uids, struct imap_changes *ch, struct err *e);

/* APPEND: deliver data durably into name with flags and internal date
 * (date 0: now); *uidvalidity and *uid give APPENDUID. */
int imap_store_append(struct imap_store *st, const char *name, const char *data,
                      size_t len, const struct imap_str *flags, size_t n_flags, time_t date,
                      uint32_t *uidvalidity, uint32_t *uid, struct err *e);

/* Open message i read-only (following a rename). */
int imap_view_open_msg(struct imap_view *v, size_t i, int *fd, struct err *e);

/* FETCH cache: 0 with *c filled when a record for message i with the
 * file's current size is known, else -1. put stores a copy. */
int imap_view_cache_get(struct imap_view *v, size_t i, struct imap_fetch_cache *c);
void imap_view_cache_put(struct imap_view *v, size_t i, const struct imap_fetch_cache *c);
/* Write the cache file now if it changed. */
int imap_view_cache_flush(struct imap_view *v, struct err *e);

#endif
