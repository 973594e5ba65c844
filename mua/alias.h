/*
 * alias: address aliases and address completion.
 *
 * Owns the alias table (the aliases file in mutt's syntax plus the `alias`
 * lines of correorc), expanding alias names in an address list, completion
 * of a partly typed address from the aliases, running $query_command for
 * completion from an external address book, and appending a new alias to
 * the aliases file.
 *
 * The aliases file is rc syntax (lib/rcfile):
 *
 *   alias [-group NAME]... KEY ADDRESS[, ADDRESS]...
 *   unalias [-group NAME]... KEY...|*
 *   # comments, `source FILE`
 *
 * Any other command is skipped with a diagnostic.  The tokenizer removes
 * rc quoting, so the address text is put back together from the words: a
 * word that was quoted because it holds blanks or , ; : ( ) \ and stands
 * before a "<addr>" word (e.g. `alias jd "Doe, John" <jd@example.org>`) is a
 * display name and becomes an RFC 5322 quoted string; every other word is
 * used as written.  A later definition of a key replaces an earlier one.
 * Keys are compared ignoring ASCII case, as in mutt.
 *
 * Address lists are RFC 5322 as people type them: items separated by commas
 * outside quotes, comments and angle brackets; an item is "addr-spec",
 * "Display Name <addr-spec>", "\"Quoted, Name\" <addr-spec>" or
 * "addr-spec (Name)".  A bare word without '@' is looked up as an alias when
 * expanding and otherwise kept as typed (it may be a local address).
 * Control characters (CR, LF, ...) are refused anywhere in an address.
 *
 * Strings here are the user's and the query program's: they are NOT
 * sanitized; whatever is drawn passes lib/sanitize first.
 */
#ifndef CORREO_ALIAS_H
#define CORREO_ALIAS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "err.h"
#include "msg.h"
#include "rcfile.h"

#define ALIAS_DB_MAX 100000            /* aliases in one table */
#define ALIAS_KEY_MAX 128              /* bytes of a key written by alias_create */
#define ALIAS_DEPTH_MAX 32             /* nested aliases while expanding */
#define ALIAS_EXPAND_STEPS_MAX 100000  /* alias look-ups in one expansion */
#define ALIAS_EXPAND_MAX 10000         /* addresses in one expansion */
#define ALIAS_QUERY_TIMEOUT_MS 10000   /* $query_command is killed after this */
#define ALIAS_QUERY_OUTPUT_MAX (4u << 20)  /* bytes read from $query_command */
#define ALIAS_QUERY_RESULTS_MAX 10000  /* result lines kept */

struct alias {
    char *key;                  /* as written */
    char *value;                /* the address list as RFC 5322 text */
    struct msg_addrlist addrs;  /* value parsed, not expanded: a member that
                                   is another alias is a bare word (name NULL) */
};

struct alias_db {
    struct alias *v;            /* in order of first definition */
    size_t n;
    /* private: key (ASCII-lowered) -> index + 1 */
    size_t *slots;
    size_t n_slots;
};

void alias_db_init(struct alias_db *db);
void alias_db_free(struct alias_db *db);

/* Add or replace (same key ignoring ASCII case) one alias.  value is an
 * address list (see above).  -1 with ERR_INVAL for an empty key or a key
 * with blanks or control characters, ERR_PARSE for a value that is not an
 * address list, ERR_LIMIT beyond ALIAS_DB_MAX. */
int alias_add(struct alias_db *db, const char *key, const char *value, struct err *e);

/* Remove an alias; returns false if there was none. */
bool alias_remove(struct alias_db *db, const char *key);

/* Add the `alias` lines of the configuration (cfg->aliases, in order);
 * one that does not parse is skipped with a diagnostic in diag (may be
 * NULL).  Call before or after alias_load: the later definition wins. */
void alias_add_config(struct alias_db *db, const struct config *cfg, struct rc_diag *diag);

/* Read an aliases file into db.  -1 with *e only if path itself cannot be
 * read (ERR_IO; a missing file is ERR_NOTFOUND, which a caller loading
 * $alias_file ignores); every problem inside goes to diag (may be NULL) as
 * "file:line: message", and the rest of the file still loads. */
int alias_load(struct alias_db *db, const char *path, struct rc_diag *diag, struct err *e);

/* The alias with this key (ignoring ASCII case), or NULL. */
const struct alias *alias_lookup(const struct alias_db *db, const char *key);

/* The first alias whose only address is addr (ignoring ASCII case), or
 * NULL: for showing a name instead of an address, and for offering to
 * reuse an existing alias when one is created from a message. */
const struct alias *alias_reverse(const struct alias_db *db, const char *addr);

/* ---- address lists -------------------------------------------------------- */

/* Parse an address list without expanding aliases.  *out is filled (free
 * with alias_addrlist_free, also after a failure).  An empty list is not an
 * error.  -1 with ERR_PARSE (unbalanced quote, comment or angle bracket,
 * blanks in an address, control characters) or ERR_LIMIT (more than
 * ALIAS_EXPAND_MAX items). */
int alias_parse_addresses(const char *text, struct msg_addrlist *out, struct err *e);

/*
 * Expand the aliases in an address list, e.g. "jdoe, x@y, team": every
 * bare word without '@' that is an alias key is replaced by the alias's
 * addresses, recursively; other items are kept as typed.  The result holds
 * each address once (the first occurrence; addresses compared ignoring
 * ASCII case).  An alias naming its own key ("alias root root") means the
 * local address.  -1 with ERR_PARSE for a bad list (in text or in an alias,
 * which is named) or an alias loop ("alias loop: a -> b -> a"), ERR_LIMIT
 * beyond ALIAS_DEPTH_MAX nesting, ALIAS_EXPAND_STEPS_MAX look-ups or
 * ALIAS_EXPAND_MAX addresses.  *out is filled; free it with
 * alias_addrlist_free (after a failure it is empty).
 */
int alias_expand(const struct alias_db *db, const char *text, struct msg_addrlist *out,
                 struct err *e);

void alias_addrlist_free(struct msg_addrlist *l);

/* "Name <addr>" (the name as an RFC 5322 quoted string when it holds
 * specials such as , or ".") or just addr when name is NULL or empty.
 * xmalloc'd. */
char *alias_format_address(const char *name, const char *addr);

/* ---- completion ------------------------------------------------------------- */

/* Case-insensitive comparison: ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic letters are folded one code point to one code point; invalid
 * UTF-8 bytes compare as themselves. */
bool alias_prefix_match(const char *s, const char *prefix);
int alias_fold_cmp(const char *a, const char *b);

enum alias_match {
    ALIAS_MATCH_KEY,    /* the prefix starts the alias key */
    ALIAS_MATCH_NAME,   /* ... the display name or a word of it */
    ALIAS_MATCH_ADDR,   /* ... the address */
};

struct alias_candidate {
    char *key;              /* the alias */
    char *name;             /* display name of the address shown, or NULL */
    char *addr;             /* that address; for a key match of an alias with
                               several addresses, the whole value */
    char *insert;           /* what replaces the typed word: the key for a
                               key match, else the formatted address */
    enum alias_match how;
};

struct alias_candidates {
    struct alias_candidate *v;
    size_t n;
};

/*
 * Every alias whose key, or an address's display name (whole or from the
 * start of any word), or an address starts with prefix (folded as above).
 * An alias matched by its key is one candidate; otherwise each matching
 * address is one, and equal insert texts are listed once.  An empty prefix
 * lists every alias by key.  Sorted by how (key, name, address), then by
 * insert text folded, then bytewise.  *out is overwritten; free with
 * alias_candidates_free.
 */
void alias_complete(const struct alias_db *db, const char *prefix,
                    struct alias_candidates *out);
void alias_candidates_free(struct alias_candidates *c);

/*
 * For Tab: the longest prefix that every candidate's insert text shares
 * (compared folded, whole characters), spelt as in the first candidate;
 * "" when there are none.  xmalloc'd.  The caller replaces the typed word
 * with the single candidate's insert text, or with this prefix when it is
 * longer than the word and starts with it (alias_prefix_match), and
 * otherwise offers the list.
 */
char *alias_common_prefix(const struct alias_candidates *c);

/* ---- $query_command ------------------------------------------------------ */

struct alias_query_result {
    char *addr;         /* first field */
    char *name;         /* second field, NULL if absent or empty */
    char *other;        /* the rest of the line after the second tab, or NULL */
};

struct alias_query_results {
    struct alias_query_result *v;    /* in the program's order */
    size_t n;
    char *header;       /* the first line (a status line), "" if none */
    int status;         /* the program's exit status */
};

/*
 * Run cmd_template as mutt runs $query_command: through /bin/sh -c, every
 * "%s" replaced by the shell-quoted query (query text never reaches the
 * shell unquoted), "%%" a '%', and without any %s the quoted query appended
 * after a blank.  stdin and stderr are /dev/null; the program and its
 * children are killed after ALIAS_QUERY_TIMEOUT_MS.  The first output line
 * is a status line (kept in header); each other non-empty line is
 * "address<TAB>name<TAB>other" (CR before LF dropped, lines without an
 * address skipped, at most ALIAS_QUERY_RESULTS_MAX).
 *
 * A non-zero exit status is not an error when lines were returned (some
 * programs exit 1 with "no matches"), and is -1 with ERR_PROTO when none
 * were.  -1 with ERR_INVAL for an empty template, ERR_LIMIT on timeout or
 * more than ALIAS_QUERY_OUTPUT_MAX bytes, ERR_IO if it could not be run.
 * *out is overwritten; after a failure it is empty.  Free with
 * alias_query_results_free.
 */
int alias_query(const char *cmd_template, const char *query, struct alias_query_results *out,
                struct err *e);
/* The same with another time limit (0: none). */
int alias_query_timeout(const char *cmd_template, const char *query, unsigned timeout_ms,
                        struct alias_query_results *out, struct err *e);
void alias_query_results_free(struct alias_query_results *r);

/* The shell command alias_query runs (xmalloc'd). */
char *alias_query_command(const char *cmd_template, const char *query);

/* ---- creating an alias ------------------------------------------------------ */

/* A key alias_create accepts: 1..ALIAS_KEY_MAX bytes of [A-Za-z0-9._+-],
 * not starting with '-'. */
bool alias_valid_key(const char *key);

/* A key to offer for addr: its local part with every character outside the
 * key set replaced by '_' (cut to ALIAS_KEY_MAX, "" for an empty local
 * part).  xmalloc'd. */
char *alias_suggest_key(const char *addr);

/*
 * Append "alias KEY Name <addr>" to the aliases file at path (name may be
 * NULL or empty; its leading and trailing blanks are dropped), quoted so
 * that alias_load reads back exactly key, name and addr (checked before
 * writing).  The name is written as plain words when it needs no quoting,
 * else as "Name" when that is both an rc word and an RFC 5322 quoted string
 * (so mutt reads the line the same way), else as the rc_quote()d RFC 5322
 * form; the address's rc specials are backslash-escaped.  The file is
 * created 0600 if missing,
 * locked (flock) while it is checked and written, appended to with O_APPEND
 * (after a newline if its last line has none) and fsync'd; a failed write
 * is cut back off.  -1 with ERR_INVAL for a bad key (alias_valid_key), a
 * name or address with CR, LF or other control characters or invalid
 * UTF-8, an empty address or one with blanks, '<' or '>'; ERR_EXISTS when
 * the file (with what it sources) already defines key; ERR_IO otherwise.
 */
int alias_create(const char *path, const char *key, const char *name, const char *addr,
                 struct err *e);

#endif
