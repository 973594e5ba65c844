/*
 * users: who receives mail here and who may log in.
 *
 * The users file is in the passwd-file format Dovecot reads:
 *
 *   user@domain:{CRYPT}$y$...:::::
 *
 * (name:password:uid:gid:gecos:home:shell:extra; only name, password and
 * home are used, the rest is kept as it was).  Hashes are crypt(3):
 * yescrypt for new passwords, SHA-512-crypt and any other scheme libcrypt
 * verifies are accepted; the scheme prefix is {CRYPT}, {SHA512-CRYPT} or
 * none.  A name without "@" belongs to the default (first) local domain.
 *
 * The aliases file has one alias per line, `address: target, target...`,
 * where a target is a local user, another alias, or an external address,
 * and `@domain: target` is that domain's catch-all.  '#' starts a comment.
 *
 * Admin edits (add, delete, change password) take an exclusive lock on
 * "<file>.lock", write a temporary file, fsync it and rename it over the
 * old one, so a reader never sees half a file and a crash leaves the old or
 * the new file whole.
 */
#ifndef CORREOD_USERS_H
#define CORREOD_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

struct user_db;

struct user_db_opts {
    const char *users_file;
    const char *aliases_file;          /* NULL: none */
    const char *const *domains;        /* local domains, lower case; [0] default */
    size_t n_domains;
    const char *maildir_template;      /* %u %n %d %h, see conf.h */
};

/* Load both files.  A broken line is an error naming file:line. */
int users_load(const struct user_db_opts *opts, struct user_db **out, struct err *e);
void users_free(struct user_db *db);

/* Check a login and password.  login is "name@domain" or a bare name of
 * the default domain.  Returns 1 when they match, 0 when they do not or the
 * user is unknown (after the same hashing work, so the two cannot be told
 * apart by time), -1 on an internal error.  On 1, *canonical (if non-NULL)
 * gets the user's full name (xmalloc'd). */
int users_verify(const struct user_db *db, const char *login, const char *password,
                 char **canonical, struct err *e);

/* Where a recipient address goes. */
struct users_target {
    char **local;           /* canonical local user names (user@domain) */
    size_t n_local;
    char **external;        /* addresses outside the local domains */
    size_t n_external;
};

enum users_resolve_result {
    USERS_RESOLVE_ERROR = -1,
    USERS_RESOLVE_OK = 0,        /* *out filled (at least one target) */
    USERS_RESOLVE_UNKNOWN,       /* a local domain, but no such user or alias */
    USERS_RESOLVE_NOT_LOCAL,     /* not one of our domains */
};

/* Resolve addr ("local@domain", any case in the domain; the local part is
 * matched case-insensitively as well) through the aliases (nested, with
 * loops and depth > 10 an error) to users and external addresses. */
enum users_resolve_result users_resolve(const struct user_db *db, const char *addr,
                                        struct users_target *out, struct err *e);
void users_target_free(struct users_target *t);

/* The Maildir of a canonical user, from the template.  Fails (ERR_INVAL)
 * if an expansion would contain "/" from the name, a ".." component, or
 * is not absolute. */
int users_maildir(const struct user_db *db, const char *user, char **path, struct err *e);

/* May the logged-in user use addr as envelope or header sender: their own
 * address, or an alias that resolves to them. */
bool users_may_send_as(const struct user_db *db, const char *user, const char *addr);

/* Number of users (for check-config and list). */
size_t users_count(const struct user_db *db);

/* ---- admin edits of the users file ---- */

/* Hash a password with yescrypt (or SHA-512-crypt when yescrypt is
 * unavailable); returns "{CRYPT}$y$..." xmalloc'd. */
int users_hash_password(const char *password, char **out, struct err *e);

int users_file_add(const char *path, const char *name, const char *password, struct err *e);
int users_file_del(const char *path, const char *name, struct err *e);
int users_file_passwd(const char *path, const char *name, const char *password,
                      struct err *e);
/* Calls fn for each user name in file order. */
int users_file_list(const char *path, int (*fn)(void *ctx, const char *name), void *ctx,
                    struct err *e);

#endif
