/*
 * maildir: Maildir and Maildir++ folders on local disk.
 *
 * Owns the folder tree (INBOX is the root with cur/ new/ tmp/, subfolders
 * are ".Name" and ".Name.Sub" directories), scanning a folder, the ":2,"
 * info of file names (flags and keyword letters), flag changes by rename,
 * durable delivery (tmp/, fsync, link, fsync of the directory), copy and move
 * between folders, and folder create / rename / delete.
 *
 * Other programs (mutt, Dovecot, mbsync) share the same files.  Whenever a
 * message is not where we last saw it, the module rescans new/ and cur/ for
 * the same base name and carries on with what it finds; only a base name that
 * is truly gone is ERR_NOTFOUND.  A message is identified by a struct
 * maildir_ref (sub-directory + file name) that the operations keep current.
 *
 * Durability: an operation reports failure only when it did not happen.  A
 * delivery happens once the new/ (or cur/) directory is fsync'ed; a move
 * happens once the source is unlinked.  Failures before that point are
 * rolled back; a failure of the clean-up after it (removing the tmp/ file,
 * fsync of the source directory) cannot lose mail (at worst a stale tmp/
 * file, or a duplicate after a crash) and does not fail the operation.
 *
 * Folder names are as on disk, with '.' as the hierarchy separator; "INBOX"
 * is the root.  Bytes outside ASCII are kept as they are.
 */
#ifndef CORREO_MAILDIR_H
#define CORREO_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "err.h"

/* ---- ":2," info ----------------------------------------------------------- */

/* Flag bits, in the ASCII order of their letters (D F P R S T). */
#define MAILDIR_F_DRAFT    (1u << 0)   /* D */
#define MAILDIR_F_FLAGGED  (1u << 1)   /* F */
#define MAILDIR_F_PASSED   (1u << 2)   /* P */
#define MAILDIR_F_REPLIED  (1u << 3)   /* R */
#define MAILDIR_F_SEEN     (1u << 4)   /* S */
#define MAILDIR_F_TRASHED  (1u << 5)   /* T */
#define MAILDIR_F_ALL      0x3fu

/* Keyword letters a-z, sorted, plus the NUL. */
#define MAILDIR_KEYWORDS_SIZE 27

/* Longest folder name accepted by create/rename (the directory is ".Name"). */
#define MAILDIR_FOLDER_NAME_MAX 254

enum maildir_info_kind {
    MAILDIR_INFO_NONE = 0,   /* no ':' in the name */
    MAILDIR_INFO_V2,         /* ":2,<flags>": parsed */
    MAILDIR_INFO_OTHER,      /* ":1,...", or anything else: kept untouched */
};

/*
 * Parse the info of a file name (a name, not a path).  Any of the outputs may
 * be NULL.  *flags gets the MAILDIR_F_* bits, keywords_out the lower-case
 * letters after ":2," (sorted, each once), *base_len the length of the base
 * name (everything before the first ':'; ",S=" and ",W=" are part of it).
 * Flag letters may come in any order.  For MAILDIR_INFO_NONE and _OTHER,
 * flags are 0 and keywords "".
 */
enum maildir_info_kind maildir_info_parse(const char *filename, unsigned *flags,
                                          char keywords_out[MAILDIR_KEYWORDS_SIZE],
                                          size_t *base_len);

/*
 * "base:2,<flags><keywords>": flags in ASCII order, then the keyword letters
 * sorted, each once.  base is used up to its first ':' (so a whole file name
 * may be passed; its old info is dropped).  keywords may be NULL; characters
 * in it other than a-z are ignored.  Returns a string to free().
 */
char *maildir_filename_with_flags(const char *base, unsigned flags, const char *keywords);

/*
 * Like maildir_filename_with_flags, but for an existing file name whose other
 * info is kept: unknown upper-case flag letters stay (sorted in with the
 * known ones) and anything after the flag letters stays byte for byte.
 * keywords NULL keeps the current keywords.  Returns NULL when the name
 * carries info that is not ":2," style: that info cannot be rewritten.
 */
char *maildir_filename_set_flags(const char *filename, unsigned flags, const char *keywords);

/* ---- tree and folders ----------------------------------------------------- */

struct maildir {
    char *path;          /* the root (INBOX), without trailing '/' */
};

struct maildir_folder {
    char *name;          /* "INBOX", "Folder", "Folder.Sub" */
    char *path;          /* directory holding cur/ new/ tmp/ */
};

struct maildir_folder_info {
    const char *name;
    const char *path;
};

/* One allocation: free() it. */
struct maildir_folder_list {
    size_t n;
    struct maildir_folder_info *v;   /* INBOX first, then sorted by name */
};

/* Open a Maildir or Maildir++ tree.  ERR_NOTFOUND when path does not exist,
 * ERR_INVAL when it is not a directory with cur/ new/ tmp/. */
int maildir_open(const char *path, struct maildir **out, struct err *e);
void maildir_close(struct maildir *md);

/* All folders of the tree: INBOX, then every ".Name" directory that holds
 * cur/ new/ tmp/, sorted by name with '.' before any other byte (so a folder
 * comes right before its subfolders).  Free *out with free(). */
int maildir_list_folders(const struct maildir *md, struct maildir_folder_list **out,
                         struct err *e);

/* Open a folder of the tree by name ("INBOX" or a Maildir++ name). */
int maildir_folder_open(const struct maildir *md, const char *name,
                        struct maildir_folder **out, struct err *e);
/* Open any directory with cur/ new/ tmp/ as a folder (its name is the last
 * path component). */
int maildir_folder_open_path(const char *path, struct maildir_folder **out, struct err *e);
void maildir_folder_close(struct maildir_folder *f);

/* Check a folder name for create/rename: not empty, at most
 * MAILDIR_FOLDER_NAME_MAX bytes, no '/', no control characters, no empty
 * component (no leading, trailing or doubled '.', which also rules out ".."),
 * not INBOX (any case).  0 or -1 with ERR_INVAL. */
int maildir_folder_name_check(const char *name, struct err *e);

/* Create ".Name" with cur/ new/ tmp/ and a maildirfolder file; parents are
 * not required.  The folder appears complete or not at all.  ERR_EXISTS when
 * ".Name" exists. */
int maildir_folder_create(const struct maildir *md, const char *name, struct err *e);

/* Rename a folder and its subfolders (".Old.Sub" -> ".New.Sub").  All targets
 * are checked first: ERR_EXISTS if one exists, ERR_LIMIT if one would be too
 * long. */
int maildir_folder_rename(const struct maildir *md, const char *old_name,
                          const char *new_name, struct err *e);

#define MAILDIR_DELETE_RECURSIVE 0x1u

/* Delete a folder and every file in it.  INBOX is refused (ERR_INVAL); a
 * folder with subfolders is refused (ERR_EXISTS) unless
 * MAILDIR_DELETE_RECURSIVE, which deletes them too.  The folder disappears
 * from the tree at once (it is renamed into the root's tmp/ first). */
int maildir_folder_delete(const struct maildir *md, const char *name, unsigned flags,
                          struct err *e);

/* ---- messages ------------------------------------------------------------- */

enum maildir_sub {
    MAILDIR_SUB_NEW = 0,
    MAILDIR_SUB_CUR = 1,
};

/* Where a message file was last seen.  Operations update it when they
 * rename the file or find it renamed by someone else.  name may also be
 * just a base name: operations then find the file by rescanning. */
struct maildir_ref {
    enum maildir_sub sub;
    char *name;          /* owned; NULL when empty */
};

#define MAILDIR_REF_INIT {MAILDIR_SUB_NEW, NULL}

/* Replace the contents of ref with a copy of (sub, name). */
void maildir_ref_set(struct maildir_ref *ref, enum maildir_sub sub, const char *name);
void maildir_ref_free(struct maildir_ref *ref);

struct maildir_entry {
    const char *name;      /* file name in new/ or cur/ */
    const char *base;      /* name up to the first ':' */
    const char *info;      /* text after the ':' as on disk, or NULL */
    enum maildir_sub sub;
    enum maildir_info_kind info_kind;
    unsigned flags;        /* MAILDIR_F_*; 0 unless MAILDIR_INFO_V2 */
    char keywords[MAILDIR_KEYWORDS_SIZE];
    off_t size;            /* MAILDIR_SCAN_STAT only; else -1 (also -1 if the
                            * file vanished between readdir and stat) */
    time_t mtime;          /* MAILDIR_SCAN_STAT only; else 0 */
};

/* One allocation: free() it.  Entries in directory order, new/ first. */
struct maildir_scan {
    size_t n;
    struct maildir_entry *v;
};

#define MAILDIR_SCAN_STAT 0x1u   /* fill size and mtime (one stat each) */

/* Read new/ and cur/ (one readdir each; names starting with '.' and
 * directories are skipped; tmp/ is never read). */
int maildir_scan(const struct maildir_folder *f, unsigned scan_flags,
                 struct maildir_scan **out, struct err *e);

/* The same names maildir_scan finds, streamed: fn is called for each file of
 * new/ then cur/ (dirfd is the directory's, for *at calls) and returns 0 to
 * go on; anything else stops the scan and is returned.  For callers that
 * keep the names in their own structures (no entry array is built). */
typedef int (*maildir_name_fn)(void *ctx, int dirfd, const char *name, size_t len,
                               enum maildir_sub sub, struct err *e);
int maildir_scan_names(const struct maildir_folder *f, maildir_name_fn fn, void *ctx,
                       struct err *e);

/* Open a message read-only (O_CLOEXEC), following a rename by another
 * program.  ref is updated to where the file was found. */
int maildir_open_message(const struct maildir_folder *f, struct maildir_ref *ref, int *fd,
                         struct err *e);
/* The current path of a message (to free()), found like maildir_open_message.
 * The path can go stale at once if another program renames the file. */
int maildir_message_path(const struct maildir_folder *f, struct maildir_ref *ref,
                         char **path, struct err *e);

/* Set flags and keywords (NULL: keep the keywords).  A message in new/ moves
 * to cur/.  Unknown flag letters and info after them are kept.  A message
 * whose info is not ":2," style keeps its name: it may move to cur/ only with
 * no flags and no keywords, else ERR_UNSUPPORTED. */
int maildir_set_flags(const struct maildir_folder *f, struct maildir_ref *ref,
                      unsigned flags, const char *keywords, struct err *e);
/* Add and remove flags relative to what is on disk now (so a flag another
 * program set meanwhile is kept); keywords are kept. */
int maildir_change_flags(const struct maildir_folder *f, struct maildir_ref *ref,
                         unsigned add, unsigned remove, struct err *e);
/* new/ -> cur/ with ":2," and no change of flags; a message already in cur/
 * is left as it is. */
int maildir_move_to_cur(const struct maildir_folder *f, struct maildir_ref *ref,
                        struct err *e);

/* ---- delivery, copy, move ------------------------------------------------- */

/* Where a delivered message lands.  NULL options mean new/. */
struct maildir_deliver_opts {
    bool to_cur;            /* false: new/; flags and keywords must be empty */
    unsigned flags;         /* MAILDIR_F_* */
    const char *keywords;   /* a-z only; NULL or "" for none */
};

/*
 * Deliver: "<time>.M<usec>P<pid>Q<n>.<host>" in tmp/ (created O_EXCL), write
 * everything, fsync, link to new/ (or cur/ with ":2,<flags>") under the same
 * name plus ",S=<size>", fsync that directory, remove the tmp/ file.  On
 * failure nothing is left in new/ or cur/.  out (may be NULL) gets the new
 * message.
 */
int maildir_deliver(const struct maildir_folder *f, const void *data, size_t len,
                    const struct maildir_deliver_opts *opts, struct maildir_ref *out,
                    struct err *e);
/* The same, reading fd (from its current offset) to end of file. */
int maildir_deliver_fd(const struct maildir_folder *f, int fd,
                       const struct maildir_deliver_opts *opts, struct maildir_ref *out,
                       struct err *e);

/* Copy a message into dst, keeping its info (flags, keywords, anything
 * else): into cur/ when the source has info, else into new/.  ref is updated
 * like maildir_open_message; out gets the copy. */
int maildir_copy(const struct maildir_folder *src, struct maildir_ref *ref,
                 const struct maildir_folder *dst, struct maildir_ref *out, struct err *e);
/* Copy durably, then unlink the source and fsync its directory.  On success
 * ref is emptied and out gets the moved message; on failure the source is
 * where it was and the copy is taken back (if even that fails, the message
 * exists twice, never zero times).  out and ref must be different. */
int maildir_move(const struct maildir_folder *src, struct maildir_ref *ref,
                 const struct maildir_folder *dst, struct maildir_ref *out, struct err *e);

/* ---- pieces for callers that batch deliveries ------------------------------ */

/* A new unique base name, "<sec>.M<usec>P<pid>Q<n>.<host>", from the same
 * counter maildir_deliver() uses, so names made here and there never clash
 * within a process.  Thread-safe.  Returns a string to free(). */
char *maildir_unique_name(void);

/* ---- failure injection for tests ----------------------------------------- */

enum maildir_step {
    MAILDIR_STEP_TMP_CREATED = 0,    /* open(O_EXCL) of the tmp/ file */
    MAILDIR_STEP_WRITTEN,            /* writing the bytes */
    MAILDIR_STEP_FSYNCED,            /* fsync and close of the file */
    MAILDIR_STEP_LINKED,             /* link into new/ or cur/ */
    MAILDIR_STEP_DIR_FSYNCED,        /* fsync of new/ or cur/ */
    MAILDIR_STEP_TMP_REMOVED,        /* unlink of the tmp/ file */
    MAILDIR_STEP_SOURCE_REMOVED,     /* move: unlink of the source */
    MAILDIR_STEP_SOURCE_DIR_FSYNCED, /* move: fsync of the source directory */
    MAILDIR_STEP_COUNT
};

/* When set, called before each step; returning -1 makes that step fail
 * (errno EIO) and the operation handles it like a real failure.  A test may
 * also end the process inside the hook to simulate a crash.  NULL by
 * default; not for concurrent use. */
extern int (*maildir_step_hook)(enum maildir_step step);

/* Name of a step, e.g. "TMP_CREATED". */
const char *maildir_step_name(enum maildir_step step);

#endif
