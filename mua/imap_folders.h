/*
 * imap_folders: the folders of an IMAP account, over an imap_conn
 * (mua/imap.h) that is logged in and has nothing selected that matters.
 *
 * Owns listing (LIST "" "*", with RETURN (SPECIAL-USE SUBSCRIBED STATUS
 * (MESSAGES UNSEEN RECENT)) when LIST-EXTENDED / LIST-STATUS are offered,
 * else LIST, LSUB and one STATUS per selectable folder), STATUS of one
 * folder, CREATE, RENAME, DELETE, SUBSCRIBE and UNSUBSCRIBE, APPEND of a
 * whole message with flags (for $record and $postponed), and the three
 * steps of recalling a postponed message from a folder by UID (summaries,
 * fetch, remove), each checked against the folder's UIDVALIDITY.
 *
 * Names.  A folder has two names: `wire`, the name exactly as the server
 * spells it (modified UTF-7), which every command and every imap:// URL
 * uses, and `display`, its UTF-8 decoding (RFC 3501 5.1.3) made safe for
 * the terminal with lib/sanitize; a name that is not canonical modified
 * UTF-7 is displayed as its sanitized raw bytes.  A name the user types is
 * turned into a wire name with imap_folder_wire().
 *
 * Untrusted replies.  The LIST, LSUB and STATUS responses are read and
 * parsed here, not by libetpan, with hard limits: a name longer than
 * IMAP_FOLDER_MAX or holding a control character, a response that does
 * not parse, or a literal larger than IMAP_FOLDERS_LITERAL_MAX is skipped
 * (counted in n_skipped) and the exchange goes on to the tagged reply; more
 * than IMAP_FOLDERS_MAX folders is ERR_LIMIT.  Nothing a server sends ever
 * reaches a shell or the configuration parser.
 */
#ifndef CORREO_IMAP_FOLDERS_H
#define CORREO_IMAP_FOLDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "imap.h"

#define IMAP_FOLDERS_MAX 20000u                  /* folders in one listing */
#define IMAP_FOLDERS_LITERAL_MAX ((size_t)8192)  /* a literal in a LIST/STATUS reply */

/* Attributes (LIST). */
#define IMAP_FA_NOSELECT     0x01u   /* \Noselect (or \NonExistent) */
#define IMAP_FA_HASCHILDREN  0x02u
#define IMAP_FA_NOCHILDREN   0x04u   /* \HasNoChildren */
#define IMAP_FA_NOINFERIORS  0x08u
#define IMAP_FA_SUBSCRIBED   0x10u
#define IMAP_FA_MARKED       0x20u

/* Special use (RFC 6154). */
#define IMAP_SU_SENT     0x01u
#define IMAP_SU_DRAFTS   0x02u
#define IMAP_SU_TRASH    0x04u
#define IMAP_SU_JUNK     0x08u
#define IMAP_SU_ARCHIVE  0x10u
#define IMAP_SU_ALL      0x20u
#define IMAP_SU_FLAGGED  0x40u

struct imap_folder {
    char *wire;          /* as the server spells it: for commands and URLs */
    char *display;       /* decoded and sanitized: for the screen */
    char delim;          /* hierarchy delimiter; '\0' when the server has none */
    unsigned attrs;      /* IMAP_FA_* */
    unsigned special;    /* IMAP_SU_* */
    bool has_status;     /* the three counts are known */
    uint32_t messages, unseen, recent;
};

struct imap_folder_list {
    struct imap_folder *v;
    size_t n;
    size_t n_skipped;    /* replies refused as malformed or hostile */
};

/* imap_folders_list flags */
#define IMAP_LIST_STATUS     0x1u   /* counts for every selectable folder */
#define IMAP_LIST_SUBSCRIBED 0x2u   /* only subscribed folders */

/* The account's folders in the server's order (INBOX wherever the server
 * puts it), with their attributes, special uses, subscription (when known)
 * and, with IMAP_LIST_STATUS, counts.  Free with imap_folder_list_free. */
int imap_folders_list(struct imap_conn *c, unsigned flags, struct imap_folder_list *out,
                      struct err *e);
void imap_folder_list_free(struct imap_folder_list *l);

/* The folder of l with this special use, or NULL. */
const struct imap_folder *imap_folder_special(const struct imap_folder_list *l, unsigned su);
/* The folder of l with this wire name, or NULL. */
const struct imap_folder *imap_folder_find(const struct imap_folder_list *l, const char *wire);

/* STATUS wire (MESSAGES UNSEEN RECENT) into f's counts (f->has_status). */
int imap_folders_status(struct imap_conn *c, const char *wire, struct imap_folder *f,
                        struct err *e);

/* Folder operations by wire name.  ERR_INVAL for a name that is empty,
 * longer than IMAP_FOLDER_MAX or holds a control character; ERR_PROTO with
 * the server's (sanitized) text when it says no. */
int imap_folders_create(struct imap_conn *c, const char *wire, struct err *e);
int imap_folders_rename(struct imap_conn *c, const char *wire, const char *new_wire,
                        struct err *e);
int imap_folders_delete(struct imap_conn *c, const char *wire, struct err *e);
int imap_folders_subscribe(struct imap_conn *c, const char *wire, bool subscribe,
                           struct err *e);

/* A name typed by the user (UTF-8) as a wire name (modified UTF-7),
 * xmalloc'd; NULL with ERR_INVAL for an empty name, invalid UTF-8 or a
 * control character. */
char *imap_folder_wire(const char *utf8, struct err *e);
/* The display form of a wire name (decoded, sanitized), xmalloc'd. */
char *imap_folder_display(const char *wire);

/* The URL of folder wire on base's account: scheme, user (when base has
 * one), host and port of base; the name %-escaped where needed, so that
 * imap_url_parse() gives wire back.  xmalloc'd. */
char *imap_folder_url(const struct imap_url *base, const char *wire);

/* Parse url and connect with imap_settings_get(); *u (free with
 * imap_url_free) names the folder the URL points at. */
int imap_folders_connect(const char *url, struct imap_url *u, struct imap_conn **out,
                         struct err *e);

/* APPEND data[0..len) (CRLF line ends) to wire with flags (MSG_SEEN,
 * MSG_DRAFT, MSG_FLAGGED, MSG_REPLIED).  When the server refuses because
 * the folder is missing, it is created and the APPEND tried once more.
 * *uid (may be NULL) gets the new message's UID with UIDPLUS, else 0. */
int imap_folders_append(struct imap_conn *c, const char *wire, const void *data, size_t len,
                        unsigned flags, uint32_t *uid, struct err *e);

/* ---- recalling a message by UID -------------------------------------------- */

struct imap_summary {
    uint32_t uid;
    unsigned flags;      /* MSG_* */
    char *subject;       /* decoded (RFC 2047) but not sanitized; "" when none */
    char *from;          /* likewise */
};

struct imap_summary_list {
    uint32_t uidvalidity;
    struct imap_summary *v;   /* in UID order */
    size_t n;
};

/* EXAMINE wire and list its messages (UID, flags, Subject, From).  Free
 * with imap_summary_list_free. */
int imap_folders_summaries(struct imap_conn *c, const char *wire,
                           struct imap_summary_list *out, struct err *e);
void imap_summary_list_free(struct imap_summary_list *l);

/* The whole message uid of wire, appended to out.  ERR_NOTFOUND when the
 * folder's UIDVALIDITY is no longer uidvalidity or the message is gone. */
int imap_folders_fetch(struct imap_conn *c, const char *wire, uint32_t uidvalidity,
                       uint32_t uid, struct buf *out, struct err *e);

/* Remove message uid of wire: \Deleted, then UID EXPUNGE (UIDPLUS) or
 * EXPUNGE.  Nothing is touched when the UIDVALIDITY changed (ERR_NOTFOUND). */
int imap_folders_remove(struct imap_conn *c, const char *wire, uint32_t uidvalidity,
                        uint32_t uid, struct err *e);

#endif
