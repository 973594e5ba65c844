/*
 * outbox: the last steps of every message written, whether from the
 * compose screen or from `correo -s`.
 *
 * Turns a draft into a lib/compose message (aliases expanded), sends it
 * with mua/send per the configuration, and files copies ($record after
 * sending, $postponed when postponing or when sending failed): in Maildir
 * folders, creating Maildir++ folders under $folder as needed, or, when the
 * option names an imap:// or imaps:// folder (directly or as "=Sent" with
 * an IMAP $folder), by APPEND with \Seen or \Draft (mua/imap_folders),
 * creating the folder on the server when it is missing.
 */
#ifndef CORREO_OUTBOX_H
#define CORREO_OUTBOX_H

#include <stdbool.h>

#include "alias.h"
#include "compose.h"
#include "config.h"
#include "draft.h"
#include "err.h"

/* Aliases from the configuration and $alias_file; problems to diag. */
void outbox_aliases(const struct config *cfg, struct alias_db *db, struct rc_diag *diag);

/* From ($from with $realname) into m->from.  ERR_INVAL when $from is unset. */
int outbox_from(const struct config *cfg, struct compose_msg *m, struct err *e);

/* The draft's headers and body into m (cleared first): From (or $from),
 * To, Cc, Bcc, Reply-To with aliases expanded, Subject, other headers as
 * extra headers, In-Reply-To and References. */
int outbox_from_draft(const struct config *cfg, const struct alias_db *db,
                      const struct draft *d, struct compose_msg *m, struct err *e);

/* Prepare (date, Message-ID), render without Bcc and send.  m is prepared
 * in place so that a later outbox_file() copy is the same message. */
int outbox_send(const struct config *cfg, struct compose_msg *m, struct err *e);

/* The Maildir folder a mailbox option value names ("+Sent" in a
 * Maildir++ tree is ".Sent", created when missing). */
struct maildir_folder;
int outbox_open_folder(const struct config *cfg, const char *mailbox,
                       struct maildir_folder **out, struct err *e);

/* Send data (a whole message with CRLF line ends) as it is, e.g. a bounce. */
int outbox_send_raw(const struct config *cfg, const char *env_from, const char *const *rcpts,
                    size_t n, const char *data, size_t len, struct err *e);

/* Store m (Bcc kept) in the folder named by a mailbox option value
 * ("+Sent", "=.Drafts", a path, an imap:// URL) with Maildir flags
 * (MAILDIR_F_SEEN, MAILDIR_F_DRAFT, ...); *where (may be NULL) gets the
 * file's path, or for IMAP the folder's URL with ";UID=n" when the server
 * told the UID (UIDPLUS). */
int outbox_file(const struct config *cfg, const char *mailbox, const struct compose_msg *m,
                unsigned maildir_flags, char **where, struct err *e);

/* Whether a mailbox option value names an IMAP folder. */
bool outbox_is_imap(const struct config *cfg, const char *mailbox);

/* APPEND data[0..len) (CRLF line ends) to the folder at url, with the
 * connection settings of cfg; *where as for outbox_file. */
int outbox_file_imap(const struct config *cfg, const char *url, const void *data, size_t len,
                     unsigned maildir_flags, char **where, struct err *e);

#endif
