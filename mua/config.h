/*
 * config: the client's configuration (correorc) -- typed options, the
 * commands of the rc file, and where keymaps and themes are found.
 *
 * Options are declared once, in CONFIG_OPTIONS below, which gives:
 *   - struct config_opts: one typed field per option, for fast access from
 *     hot paths (cfg->opt.sort.key, cfg->opt.pager_index_lines): the
 *     compiler checks the types;
 *   - enum config_id: CFG_<name>, for code that goes by id;
 *   - the table config.c parses, prints and resets by name.
 * Defaults are written as the text a user would write after "set name=", and
 * go through the same parser.
 *
 * Types:
 *   BOOL    yes/no (also true/false, on/off, 1/0)
 *   QUAD    yes, no, ask-yes, ask-no
 *   NUMBER  decimal integer within a range
 *   STRING  any text; a few are regular expressions, checked when set
 *   PATH    a file name; "~" and "~user" are expanded when set
 *   MAILBOX like PATH, and "+name" / "=name" stay as written: they mean
 *           "name inside $folder" and are resolved when used
 *           (config_mailbox_path), so $folder may be set before or after
 *   SORT    a sort method with an optional "reverse-" (and for sort_aux
 *           "last-") prefix
 *   ENUM    one word of a fixed list
 *
 * The rc file.  Besides `source` (done by lib/rcfile), the commands are:
 *   set NAME=VALUE | NAME = VALUE | NAME | noNAME | invNAME | NAME& | &NAME |
 *       NAME? | ?NAME      (several per command: "set a b=c nod")
 *   unset NAME...  toggle NAME...  reset NAME...|all
 *   set my_NAME=VALUE      a user variable (unset/reset remove it)
 *   mailboxes [-label L] PATH...   named-mailboxes LABEL PATH...
 *   unmailboxes PATH...|*
 *   virtual-mailboxes LABEL notmuch://?query=Q ...   (as named-mailboxes;
 *           unvirtual-mailboxes as unmailboxes)
 *   bind, macro, unbind, unmacro          (see keymap.h)
 *   color, mono, uncolor, unmono          (see theme.h)
 *   keymap NAME    theme NAME             replace the bindings / colours
 *   alternates, unalternates, lists, unlists, subscribe, unsubscribe
 *   my_hdr, unmy_hdr, ignore, unignore, hdr_order, unhdr_order, auto_view,
 *   unauto_view, alternative_order, unalternative_order, mime_lookup,
 *   unmime_lookup, alias, unalias, push, exec: stored for the UI
 *   account-hook, folder-hook, send-hook, send2-hook, reply-hook,
 *   message-hook, save-hook, fcc-hook, fcc-save-hook, mbox-hook,
 *   charset-hook, iconv-hook, crypt-hook, open-hook, close-hook,
 *   append-hook, startup-hook, shutdown-hook, timeout-hook,
 *   index-format-hook: stored (kind, pattern, command), not run yet;
 *   unhook KIND|*
 *   account NAME URL [KEY=VALUE]...   a mail account (a later one with the
 *           same NAME replaces it); pop:// and pops:// URLs and their keys
 *           are checked at once by mua/fetch
 * Anything else is reported as "unknown command NAME" and skipped; an
 * unknown option as "unknown option NAME"; a bad value names the option and
 * the value.  Loading never stops at an error.
 *
 * Keymaps and themes are files NAME.keys and NAME.theme, looked up by
 * config_find_data_file() in the user's directory first
 * ($XDG_CONFIG_HOME/correo/keymaps/, default ~/.config/correo/keymaps/),
 * then in the installed data directory (CORREO_DATADIR/keymaps/, or
 * $CORREO_DATADIR_OVERRIDE/keymaps/ when that variable is set: the build
 * tree and the tests use it).
 */
#ifndef CORREO_CONFIG_H
#define CORREO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "keymap.h"
#include "rcfile.h"
#include "theme.h"

enum config_type {
    CONFIG_BOOL,
    CONFIG_QUAD,
    CONFIG_NUMBER,
    CONFIG_STRING,
    CONFIG_PATH,
    CONFIG_MAILBOX,
    CONFIG_SORT,
    CONFIG_ENUM,
};

enum config_quad { CFG_NO, CFG_YES, CFG_ASK_NO, CFG_ASK_YES };

enum config_sort_key {
    CFG_SORT_DATE,          /* date sent ("date", "date-sent") */
    CFG_SORT_DATE_RECEIVED,
    CFG_SORT_FROM,
    CFG_SORT_TO,
    CFG_SORT_SUBJECT,
    CFG_SORT_SIZE,
    CFG_SORT_THREADS,
    CFG_SORT_UNSORTED,      /* mailbox order ("unsorted", "mailbox-order") */
    CFG_SORT_ALPHA,         /* browser: by name */
    CFG_SORT_COUNT,         /* browser: by number of messages */
    CFG_SORT_NEW,           /* browser: by number of new messages */
    CFG_SORT_KEY_COUNT
};

struct config_sort {
    enum config_sort_key key;
    bool reverse;           /* "reverse-" */
    bool last;              /* "last-" (sort_aux only) */
};

/* Which sort methods an option accepts (the a column of a SORT option). */
enum config_sort_set { CFG_SORTSET_MAIL, CFG_SORTSET_AUX, CFG_SORTSET_BROWSER };
/* ENUM options' word lists (the a column of an ENUM option). */
enum config_enum_list { CFG_ENUM_MBOX_TYPE };
enum config_mbox_type { CFG_MBOX_MBOX, CFG_MBOX_MMDF, CFG_MBOX_MH, CFG_MBOX_MAILDIR };
/* Flags of STRING options (the a column). */
enum config_string_flags { CFG_SECRET = 1, CFG_REGEX = 2 };

/*
 * X(TYPE, name, "default", a, b)
 *   NUMBER: a..b is the range.  SORT: a is the config_sort_set.
 *   ENUM: a is the config_enum_list.  STRING: a is config_string_flags.
 */
#define CONFIG_OPTIONS(X) \
    X(QUAD, abort_nosubject, "ask-yes", 0, 0) \
    X(QUAD, abort_unmodified, "yes", 0, 0) \
    X(STRING, alias_file, "~/.config/correo/aliases", 0, 0) \
    X(STRING, alias_format, "%4n %2f %t %-10a   %r", 0, 0) \
    X(BOOL, allow_8bit, "yes", 0, 0) \
    X(BOOL, allow_ansi, "no", 0, 0) \
    X(BOOL, arrow_cursor, "no", 0, 0) \
    X(BOOL, ascii_chars, "no", 0, 0) \
    X(BOOL, askbcc, "no", 0, 0) \
    X(BOOL, askcc, "no", 0, 0) \
    X(STRING, attach_format, "%u%D%I %t%4n %T%.40d%> [%.7m/%.10M, %.6e%?C?, %C?, %s] ", 0, 0) \
    X(STRING, attribution, "On %d, %n wrote:", 0, 0) \
    X(BOOL, auto_tag, "no", 0, 0) \
    X(BOOL, autoedit, "no", 0, 0) \
    X(BOOL, beep, "yes", 0, 0) \
    X(BOOL, beep_new, "no", 0, 0) \
    X(QUAD, bounce, "ask-yes", 0, 0) \
    X(BOOL, braille_friendly, "no", 0, 0) \
    X(PATH, certificate_file, "~/.config/correo/certificates", 0, 0) \
    X(STRING, charset, "", 0, 0) \
    X(BOOL, check_new, "yes", 0, 0) \
    X(BOOL, collapse_unread, "yes", 0, 0) \
    X(BOOL, confirmappend, "yes", 0, 0) \
    X(BOOL, confirmcreate, "yes", 0, 0) \
    X(NUMBER, connect_timeout, "30", -1, 3600) \
    X(QUAD, copy, "yes", 0, 0) \
    X(STRING, date_format, "!%a, %b %d, %Y at %I:%M:%S%p %Z", 0, 0) \
    X(QUAD, delete, "ask-yes", 0, 0) \
    X(BOOL, delete_untag, "yes", 0, 0) \
    X(BOOL, digest_collapse, "yes", 0, 0) \
    X(STRING, display_filter, "", 0, 0) \
    X(BOOL, duplicate_threads, "yes", 0, 0) \
    X(BOOL, edit_headers, "no", 0, 0) \
    X(STRING, editor, "", 0, 0) \
    X(BOOL, fast_reply, "no", 0, 0) \
    X(QUAD, fcc_attach, "yes", 0, 0) \
    X(BOOL, flag_safe, "no", 0, 0) \
    X(PATH, folder, "~/Maildir", 0, 0) \
    X(STRING, folder_format, "%2C %t %N %F %2l %-8.8u %-8.8g %8s %d %f", 0, 0) \
    X(BOOL, followup_to, "yes", 0, 0) \
    X(BOOL, forward_decode, "yes", 0, 0) \
    X(QUAD, forward_edit, "yes", 0, 0) \
    X(STRING, forward_format, "[%a: %s]", 0, 0) \
    X(BOOL, forward_quote, "no", 0, 0) \
    X(STRING, from, "", 0, 0) \
    X(BOOL, header, "no", 0, 0) \
    X(PATH, header_cache, "", 0, 0) \
    X(BOOL, help, "yes", 0, 0) \
    X(BOOL, hide_limited, "no", 0, 0) \
    X(BOOL, hide_missing, "yes", 0, 0) \
    X(BOOL, hide_thread_subject, "yes", 0, 0) \
    X(BOOL, hide_top_limited, "no", 0, 0) \
    X(BOOL, hide_top_missing, "yes", 0, 0) \
    X(NUMBER, history, "10", 0, 10000) \
    X(PATH, history_file, "~/.config/correo/history", 0, 0) \
    X(QUAD, honor_followup_to, "yes", 0, 0) \
    X(STRING, hostname, "", 0, 0) \
    X(STRING, html_filter, "", 0, 0) \
    X(BOOL, ignore_list_reply_to, "no", 0, 0) \
    X(NUMBER, imap_keepalive, "300", 0, 86400) \
    X(STRING, imap_oauth_cmd, "", 0, 0) \
    X(STRING, imap_pass, "", CFG_SECRET, 0) \
    X(STRING, imap_user, "", 0, 0) \
    X(BOOL, implicit_autoview, "no", 0, 0) \
    X(QUAD, include, "ask-yes", 0, 0) \
    X(BOOL, include_onlyfirst, "no", 0, 0) \
    X(STRING, indent_string, "> ", 0, 0) \
    X(STRING, index_format, "%4C %Z %{%b %d} %-15.15L (%?l?%4l&%4c?) %s", 0, 0) \
    X(STRING, keymap, "mutt", 0, 0) \
    X(NUMBER, mail_check, "5", 0, 86400) \
    X(BOOL, mail_check_stats, "no", 0, 0) \
    X(NUMBER, mail_check_stats_interval, "60", 0, 86400) \
    X(STRING, mailcap_path, "~/.mailcap:/etc/mailcap", 0, 0) \
    X(BOOL, maildir_trash, "no", 0, 0) \
    X(BOOL, mark_old, "yes", 0, 0) \
    X(BOOL, markers, "yes", 0, 0) \
    X(STRING, mask, "!^\\.[^.]", CFG_REGEX, 0) \
    X(MAILBOX, mbox, "+Archive", 0, 0) \
    X(ENUM, mbox_type, "Maildir", CFG_ENUM_MBOX_TYPE, 0) \
    X(NUMBER, menu_context, "0", 0, 1000) \
    X(BOOL, menu_move_off, "yes", 0, 0) \
    X(BOOL, menu_scroll, "no", 0, 0) \
    X(PATH, message_cachedir, "", 0, 0) \
    X(STRING, message_format, "%s", 0, 0) \
    X(BOOL, metoo, "no", 0, 0) \
    X(QUAD, mime_forward, "no", 0, 0) \
    X(BOOL, mime_forward_decode, "no", 0, 0) \
    X(QUAD, mime_forward_rest, "yes", 0, 0) \
    X(QUAD, move, "no", 0, 0) \
    X(BOOL, narrow_tree, "no", 0, 0) \
    X(NUMBER, net_inc, "10", 0, 100000) \
    X(STRING, pager, "builtin", 0, 0) \
    X(NUMBER, pager_context, "0", 0, 1000) \
    X(STRING, pager_format, "-%Z- %C/%m: %-20.20n   %s%*  -- (%P)", 0, 0) \
    X(NUMBER, pager_index_lines, "0", 0, 1000) \
    X(BOOL, pager_stop, "no", 0, 0) \
    X(BOOL, pipe_decode, "no", 0, 0) \
    X(BOOL, pipe_split, "no", 0, 0) \
    X(STRING, post_indent_string, "", 0, 0) \
    X(QUAD, postpone, "ask-yes", 0, 0) \
    X(MAILBOX, postponed, "+Drafts", 0, 0) \
    X(QUAD, print, "ask-no", 0, 0) \
    X(STRING, print_command, "lpr", 0, 0) \
    X(BOOL, prompt_after, "yes", 0, 0) \
    X(STRING, query_command, "", 0, 0) \
    X(QUAD, quit, "yes", 0, 0) \
    X(STRING, quote_regex, "^([ \t]*[|>:}#])+", CFG_REGEX, 0) \
    X(NUMBER, read_inc, "10", 0, 100000) \
    X(BOOL, read_only, "no", 0, 0) \
    X(STRING, realname, "", 0, 0) \
    X(QUAD, recall, "ask-yes", 0, 0) \
    X(MAILBOX, record, "+Sent", 0, 0) \
    X(STRING, reply_regexp, "^(re|aw|sv)(\\[[0-9]+\\])*:[ \t]*", CFG_REGEX, 0) \
    X(BOOL, reply_self, "no", 0, 0) \
    X(QUAD, reply_to, "ask-yes", 0, 0) \
    X(BOOL, resolve, "yes", 0, 0) \
    X(BOOL, reverse_alias, "no", 0, 0) \
    X(BOOL, reverse_name, "no", 0, 0) \
    X(BOOL, save_empty, "yes", 0, 0) \
    X(NUMBER, save_history, "0", 0, 100000) \
    X(BOOL, save_name, "no", 0, 0) \
    X(NUMBER, search_context, "0", 0, 1000) \
    X(STRING, send_charset, "us-ascii:iso-8859-1:utf-8", 0, 0) \
    X(STRING, sendmail, "/usr/sbin/sendmail -oem -oi", 0, 0) \
    X(BOOL, sig_dashes, "yes", 0, 0) \
    X(BOOL, sig_on_top, "no", 0, 0) \
    X(PATH, signature, "~/.signature", 0, 0) \
    X(STRING, simple_search, "~f %s | ~s %s", 0, 0) \
    X(NUMBER, skip_quoted_offset, "0", 0, 1000) \
    X(NUMBER, sleep_time, "1", 0, 60) \
    X(BOOL, smart_wrap, "yes", 0, 0) \
    X(STRING, smileys, "(>From )|(:[-^]?[][)(><}{|/DP])", CFG_REGEX, 0) \
    X(STRING, smtp_oauth_refresh_command, "", 0, 0) \
    X(STRING, smtp_pass, "", CFG_SECRET, 0) \
    X(STRING, smtp_pass_cmd, "", 0, 0) \
    X(STRING, smtp_url, "", 0, 0) \
    X(SORT, sort, "date", CFG_SORTSET_MAIL, 0) \
    X(SORT, sort_aux, "date", CFG_SORTSET_AUX, 0) \
    X(SORT, sort_browser, "alpha", CFG_SORTSET_BROWSER, 0) \
    X(BOOL, sort_re, "yes", 0, 0) \
    X(MAILBOX, spoolfile, "", 0, 0) \
    X(BOOL, ssl_force_tls, "yes", 0, 0) \
    X(QUAD, ssl_starttls, "yes", 0, 0) \
    X(STRING, status_chars, "-*%A", 0, 0) \
    X(STRING, status_format, "-%r-correo: %f [Msgs:%?M?%M/?%m%?n? New:%n?%?o? Old:%o?%?d? Del:%d?%?F? Flag:%F?%?t? Tag:%t?%?p? Post:%p?%?b? Inc:%b?%?l? %l?]---(%s/%S)-%>-(%P)---", 0, 0) \
    X(BOOL, status_on_top, "no", 0, 0) \
    X(BOOL, strict_threads, "no", 0, 0) \
    X(BOOL, suspend, "yes", 0, 0) \
    X(BOOL, text_flowed, "no", 0, 0) \
    X(STRING, theme, "default", 0, 0) \
    X(BOOL, thorough_search, "yes", 0, 0) \
    X(BOOL, tilde, "no", 0, 0) \
    X(NUMBER, time_inc, "0", 0, 100000) \
    X(NUMBER, timeout, "600", 0, 86400) \
    X(STRING, tls_fingerprint, "", 0, 0) \
    X(PATH, tmpdir, "", 0, 0) \
    X(STRING, to_chars, " +TCFL", 0, 0) \
    X(MAILBOX, trash, "", 0, 0) \
    X(BOOL, uncollapse_jump, "no", 0, 0) \
    X(BOOL, uncollapse_new, "yes", 0, 0) \
    X(BOOL, use_domain, "yes", 0, 0) \
    X(BOOL, use_envelope_from, "no", 0, 0) \
    X(BOOL, use_from, "yes", 0, 0) \
    X(BOOL, user_agent, "no", 0, 0) \
    X(STRING, visual, "", 0, 0) \
    X(BOOL, wait_key, "yes", 0, 0) \
    X(BOOL, weed, "yes", 0, 0) \
    X(NUMBER, wrap, "0", -1000, 1000) \
    X(BOOL, wrap_search, "yes", 0, 0) \
    X(BOOL, write_bcc, "no", 0, 0) \
    X(NUMBER, write_inc, "10", 0, 100000) \
    X(STRING, imap_pass_cmd, "", 0, 0) \
    X(PATH, tls_ca_file, "", 0, 0)

#define CONFIG_CTYPE_BOOL    bool
#define CONFIG_CTYPE_QUAD    enum config_quad
#define CONFIG_CTYPE_NUMBER  long
#define CONFIG_CTYPE_STRING  char *
#define CONFIG_CTYPE_PATH    char *
#define CONFIG_CTYPE_MAILBOX char *
#define CONFIG_CTYPE_SORT    struct config_sort
#define CONFIG_CTYPE_ENUM    int

/* Every option's current value.  Strings are never NULL ("" when empty). */
struct config_opts {
#define CONFIG_FIELD(type, name, def, a, b) CONFIG_CTYPE_##type name;
    CONFIG_OPTIONS(CONFIG_FIELD)
#undef CONFIG_FIELD
};

enum config_id {
#define CONFIG_ID(type, name, def, a, b) CFG_##name,
    CONFIG_OPTIONS(CONFIG_ID)
#undef CONFIG_ID
    CFG_OPTION_COUNT
};

struct config_mailbox {
    char *path;             /* "~" expanded; "+x"/"=x" kept */
    char *label;            /* NULL if none */
};

struct config_list {
    char **v;
    size_t n;
};

struct config_hook {
    char *kind;             /* "folder-hook" */
    char *name;             /* index-format-hook's name, else NULL */
    char *pattern;          /* NULL for startup/shutdown/timeout-hook */
    char *command;
};

struct config_alias {
    char *name;
    char *address;          /* the rest of the line, words joined by spaces */
};

struct config_var {
    char *name;             /* "my_..." */
    char *value;
};

/* `account NAME URL [KEY=VALUE]...`: kept as written; the module that
 * serves the URL's scheme gives the keys their meaning (pop:// and pops://:
 * mua/fetch, whose checks run when the command is read). */
struct config_account_kv {
    char *key;
    char *value;
};

struct config_account {
    char *name;
    char *url;
    struct config_account_kv *kv;
    size_t n_kv;
};

/* The whole configuration.  Read the fields; change them only through the
 * functions below. */
struct config {
    struct config_opts opt;
    struct keymap *keymap;
    struct theme theme;
    struct rc_diag diag;            /* every problem found while loading */

    struct config_mailbox *mailboxes;
    size_t n_mailboxes;
    struct config_hook *hooks;
    size_t n_hooks;
    struct config_alias *aliases;
    size_t n_aliases;
    struct config_var *vars;
    size_t n_vars;
    struct config_account *accounts;  /* in the order first defined */
    size_t n_accounts;
    struct config_list alternates, lists, subscribed, my_hdr, ignore, unignore,
        hdr_order, auto_view, alternative_order, mime_lookup, push, exec;

    char *last_query;               /* answers of the last "set NAME?" */

    /* private */
    struct rc_diag *cur_diag;       /* where a load in progress reports */
};

/* A configuration with every option at its default, no bindings and the
 * built-in theme.  config_load() adds the keymap and theme files. */
struct config *config_new(void);
void config_free(struct config *cfg);

enum config_load_flags {
    CONFIG_NO_RC = 1u << 0,         /* -n: read no rc file */
};

/*
 * Load the default keymap and theme (the keymap and theme options), then the
 * rc file: path (-F), or with NULL the first that exists of
 * $XDG_CONFIG_HOME/correo/correorc (default ~/.config/correo/correorc) and
 * ~/.correorc -- never ~/.muttrc: a user sources it.  Returns -1 with *e only
 * if an explicit path cannot be read; every other problem goes to cfg->diag.
 * If no keymap file is found, keymap_bind_fallback() bindings are used.
 */
int config_load(struct config *cfg, const char *path, unsigned flags, struct err *e);

/* The default rc file path (xmalloc'd), whether or not it exists. */
char *config_default_path(void);

/* Run commands from text (a ':' prompt); problems go to diag. */
void config_exec(struct config *cfg, const char *name, const char *text, struct rc_diag *diag);

/* The rcfile handler itself, for callers that run their own loader. */
int config_rc_handler(void *cfg, const struct rc_cmd *cmd, struct err *e);

/* Options by name.  Each fails (-1, *e) for an unknown name or a type that
 * does not fit: get_bool takes BOOL (and QUAD: true for yes/ask-yes),
 * get_number NUMBER, get_string STRING/PATH/MAILBOX/ENUM (the value as
 * text), get_sort SORT. */
int config_get_bool(const struct config *cfg, const char *name, bool *out, struct err *e);
int config_get_number(const struct config *cfg, const char *name, long *out, struct err *e);
int config_get_string(const struct config *cfg, const char *name, const char **out,
                      struct err *e);
int config_get_sort(const struct config *cfg, const char *name, struct config_sort *out,
                    struct err *e);
/* "name=value" as `set name?` shows it (secrets as "********"); user
 * variables too.  xmalloc'd in *out. */
int config_query(const struct config *cfg, const char *name, char **out, struct err *e);
/* Set one option from text, as "set name=value" does. */
int config_set(struct config *cfg, const char *name, const char *value, struct err *e);
/* The option table. */
int config_option_find(const char *name);      /* -1 if unknown; aliases too */
const char *config_option_name(enum config_id id);
enum config_type config_option_type(enum config_id id);
const char *config_option_default(enum config_id id);
/* The account named name, or NULL. */
const struct config_account *config_account_find(const struct config *cfg, const char *name);
/* The value of key in account a, or NULL. */
const char *config_account_get(const struct config_account *a, const char *key);
/* The value of a user variable, or NULL. */
const char *config_var(const struct config *cfg, const char *name);

/* "set" lines for every option that differs from its default (all options
 * if all is true), secrets left out.  xmalloc'd; loading it back gives the
 * same values. */
char *config_dump(const struct config *cfg, bool all);

/* Text of a sort value: "reverse-date-received". xmalloc'd. */
char *config_sort_text(struct config_sort s);

/*
 * A mailbox name as the user wrote it, made a path (xmalloc'd): "+x" and
 * "=x" are x inside $folder, "!" is $spoolfile (or $folder when that is
 * empty), ">" is $mbox, "<" is $record, "~" is $HOME.
 */
char *config_mailbox_path(const struct config *cfg, const char *name);

/* The editor to run: $editor, else $VISUAL, else $EDITOR, else "vi". */
const char *config_editor(const struct config *cfg);

/* Whether a header field is hidden by ignore/unignore (case-insensitive
 * prefixes, "*" for all), as mutt's weeding. */
bool config_header_ignored(const struct config *cfg, const char *field);

/* Find NAME.keys (kind "keymaps") or NAME.theme (kind "themes"); see the
 * top of this file for the order.  NAME must be non-empty and contain no '/'
 * and not start with '.'.  *out is xmalloc'd. */
int config_find_data_file(const char *kind, const char *name, char **out, struct err *e);

/* Replace the bindings with keymap NAME, or the theme with theme NAME (the
 * `keymap` and `theme` commands); diagnostics of the file go to diag. */
int config_use_keymap(struct config *cfg, const char *name, struct rc_diag *diag,
                      struct err *e);
int config_use_theme(struct config *cfg, const char *name, struct rc_diag *diag,
                     struct err *e);

#endif
