/* config: typed options, the correorc commands, keymap/theme lookup. */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <regex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "fetch.h"
#include "regex_guard.h"

#ifndef CORREO_DATADIR
#define CORREO_DATADIR "/usr/local/share/correo"
#endif

#define NAME_MAX_LEN 255    /* keymap and theme names */

/* ---- the option table ------------------------------------------------ */

struct opt_def {
    const char *name;
    enum config_type type;
    size_t off;
    const char *def;
    long a, b;
};

static const struct opt_def opt_table[CFG_OPTION_COUNT] = {
#define CONFIG_DEF(type, name, def, a, b) \
    [CFG_##name] = {#name, CONFIG_##type, offsetof(struct config_opts, name), def, a, b},
    CONFIG_OPTIONS(CONFIG_DEF)
#undef CONFIG_DEF
};

/* Other names mutt users may have in their files. */
static const struct {
    const char *alias;
    enum config_id id;
} opt_aliases[] = {
    {"edit_hdrs", CFG_edit_headers},
    {"envelope_from", CFG_use_envelope_from},
    {"hdr_format", CFG_index_format},
    {"indent_str", CFG_indent_string},
    {"mime_fwd", CFG_mime_forward},
    {"msg_format", CFG_message_format},
    {"post_indent_str", CFG_post_indent_string},
    {"print_cmd", CFG_print_command},
    {"quote_regexp", CFG_quote_regex},
    {"reply_regex", CFG_reply_regexp},
    {"spool_file", CFG_spoolfile},
};

static const char *const quad_names[] = {
    [CFG_NO] = "no", [CFG_YES] = "yes", [CFG_ASK_NO] = "ask-no", [CFG_ASK_YES] = "ask-yes",
};

static const char *const sort_names[CFG_SORT_KEY_COUNT] = {
    [CFG_SORT_DATE] = "date",
    [CFG_SORT_DATE_RECEIVED] = "date-received",
    [CFG_SORT_FROM] = "from",
    [CFG_SORT_TO] = "to",
    [CFG_SORT_SUBJECT] = "subject",
    [CFG_SORT_SIZE] = "size",
    [CFG_SORT_THREADS] = "threads",
    [CFG_SORT_UNSORTED] = "unsorted",
    [CFG_SORT_ALPHA] = "alpha",
    [CFG_SORT_COUNT] = "count",
    [CFG_SORT_NEW] = "new",
};

#define SB(k) (1u << (k))
static const unsigned sort_sets[] = {
    [CFG_SORTSET_MAIL] = SB(CFG_SORT_DATE) | SB(CFG_SORT_DATE_RECEIVED) | SB(CFG_SORT_FROM) |
                         SB(CFG_SORT_TO) | SB(CFG_SORT_SUBJECT) | SB(CFG_SORT_SIZE) |
                         SB(CFG_SORT_THREADS) | SB(CFG_SORT_UNSORTED),
    [CFG_SORTSET_AUX] = SB(CFG_SORT_DATE) | SB(CFG_SORT_DATE_RECEIVED) | SB(CFG_SORT_FROM) |
                        SB(CFG_SORT_TO) | SB(CFG_SORT_SUBJECT) | SB(CFG_SORT_SIZE) |
                        SB(CFG_SORT_UNSORTED),
    [CFG_SORTSET_BROWSER] = SB(CFG_SORT_ALPHA) | SB(CFG_SORT_COUNT) | SB(CFG_SORT_DATE) |
                            SB(CFG_SORT_NEW) | SB(CFG_SORT_SIZE) | SB(CFG_SORT_UNSORTED),
};
#undef SB

static const char *const mbox_type_names[] = {
    [CFG_MBOX_MBOX] = "mbox", [CFG_MBOX_MMDF] = "MMDF", [CFG_MBOX_MH] = "MH",
    [CFG_MBOX_MAILDIR] = "Maildir",
};

static const struct {
    const char *const *names;
    size_t n;
} enum_lists[] = {
    [CFG_ENUM_MBOX_TYPE] = {mbox_type_names, ARRAY_LEN(mbox_type_names)},
};

int config_option_find(const char *name)
{
    for (int i = 0; i < CFG_OPTION_COUNT; i++)
        if (strcmp(opt_table[i].name, name) == 0)
            return i;
    for (size_t i = 0; i < ARRAY_LEN(opt_aliases); i++)
        if (strcmp(opt_aliases[i].alias, name) == 0)
            return (int)opt_aliases[i].id;
    return -1;
}

const char *config_option_name(enum config_id id)
{
    return (unsigned)id < CFG_OPTION_COUNT ? opt_table[id].name : "?";
}

enum config_type config_option_type(enum config_id id)
{
    return opt_table[id].type;
}

const char *config_option_default(enum config_id id)
{
    return opt_table[id].def;
}

static void *field(struct config_opts *o, const struct opt_def *d)
{
    return (char *)o + d->off;
}

static const void *cfield(const struct config_opts *o, const struct opt_def *d)
{
    return (const char *)o + d->off;
}

static bool is_string_type(enum config_type t)
{
    return t == CONFIG_STRING || t == CONFIG_PATH || t == CONFIG_MAILBOX;
}

/* ---- small helpers --------------------------------------------------- */

/* "~", "~/x", "~user/x" -> home-based path (xmalloc'd); others copied. */
static int expand_home(const char *in, char **out, struct err *e)
{
    const char *rest, *home = NULL;
    char user[256];
    size_t ulen;

    *out = NULL;
    if (in[0] != '~') {
        *out = xstrdup(in);
        return 0;
    }
    rest = in + 1 + strcspn(in + 1, "/");
    ulen = (size_t)(rest - in - 1);
    if (ulen == 0) {
        home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return err_set(e, ERR_NOTFOUND, "%s: no home directory", in);
    } else {
        struct passwd *pw;
        if (ulen >= sizeof user)
            return err_set(e, ERR_INVAL, "%s: user name too long", in);
        memcpy(user, in + 1, ulen);
        user[ulen] = '\0';
        pw = getpwnam(user);
        if (!pw)
            return err_set(e, ERR_NOTFOUND, "%s: no such user %s", in, user);
        home = pw->pw_dir;
    }
    *out = xasprintf("%s%s", home, rest);
    return 0;
}

static int check_regex(const char *what, const char *re_text, int flags, struct err *e)
{
    regex_t re;
    struct err why;

    if (regex_compile(&re, re_text, REG_EXTENDED | REG_NOSUB | flags, &why) != 0)
        return err_set(e, ERR_PARSE, "%s: bad regular expression \"%s\": %s", what, re_text,
                       why.text);
    regfree(&re);
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_sort(const struct opt_def *d, const char *text, struct config_sort *out,
                      struct err *e)
{
    const char *p = text;
    struct config_sort s = {CFG_SORT_DATE, false, false};

    for (;;) {
        if (strncmp(p, "reverse-", 8) == 0 && !s.reverse) {
            s.reverse = true;
            p += 8;
        } else if (strncmp(p, "last-", 5) == 0 && !s.last) {
            if (d->a != CFG_SORTSET_AUX)
                return err_set(e, ERR_INVAL, "%s: \"last-\" is for sort_aux only", d->name);
            s.last = true;
            p += 5;
        } else {
            break;
        }
    }
    if (strcmp(p, "date-sent") == 0)
        p = "date";
    else if (strcmp(p, "mailbox-order") == 0)
        p = "unsorted";
    for (int k = 0; k < CFG_SORT_KEY_COUNT; k++) {
        if (strcmp(sort_names[k], p) == 0) {
            if (!(sort_sets[d->a] & (1u << k)))
                return err_set(e, ERR_INVAL, "%s: \"%s\" is not a sort method here", d->name,
                               p);
            s.key = (enum config_sort_key)k;
            *out = s;
            return 0;
        }
    }
    return err_set(e, ERR_INVAL, "%s: no such sort method \"%s\"", d->name, text);
}

char *config_sort_text(struct config_sort s)
{
    return xasprintf("%s%s%s", s.reverse ? "reverse-" : "", s.last ? "last-" : "",
                     (unsigned)s.key < CFG_SORT_KEY_COUNT ? sort_names[s.key] : "?");
}

/* Parse text for option d and store it in o (freeing the old string). */
static int opt_store(struct config_opts *o, const struct opt_def *d, const char *text,
                     struct err *e)
{
    void *f = field(o, d);
    char *end;

    switch (d->type) {
    case CONFIG_BOOL: {
        bool v;
        if (parse_bool(text, &v) < 0)
            return err_set(e, ERR_INVAL, "%s: \"%s\" is not yes or no", d->name, text);
        *(bool *)f = v;
        return 0;
    }
    case CONFIG_QUAD:
        for (int q = 0; q < (int)ARRAY_LEN(quad_names); q++) {
            if (strcasecmp(text, quad_names[q]) == 0) {
                *(enum config_quad *)f = (enum config_quad)q;
                return 0;
            }
        }
        {
            bool v;
            if (parse_bool(text, &v) == 0) {
                *(enum config_quad *)f = v ? CFG_YES : CFG_NO;
                return 0;
            }
        }
        return err_set(e, ERR_INVAL, "%s: \"%s\" is not yes, no, ask-yes or ask-no", d->name,
                       text);
    case CONFIG_NUMBER: {
        long v;
        errno = 0;
        v = strtol(text, &end, 10);
        if (!*text || *end || errno == ERANGE)
            return err_set(e, ERR_INVAL, "%s: \"%s\" is not a number", d->name, text);
        if (v < d->a || v > d->b)
            return err_set(e, ERR_INVAL, "%s: %ld is out of range (%ld..%ld)", d->name, v,
                           d->a, d->b);
        *(long *)f = v;
        return 0;
    }
    case CONFIG_STRING: {
        if (d->a & CFG_REGEX) {
            const char *re = text[0] == '!' ? text + 1 : text;
            if (*re && check_regex(d->name, re, 0, e) < 0)
                return -1;
        }
        char **sp = f;
        free(*sp);
        *sp = xstrdup(text);
        return 0;
    }
    case CONFIG_PATH:
    case CONFIG_MAILBOX: {
        char *v;
        if (expand_home(text, &v, e) < 0) {
            err_prefix(e, "%s", d->name);
            return -1;
        }
        char **sp = f;
        free(*sp);
        *sp = v;
        return 0;
    }
    case CONFIG_SORT:
        return parse_sort(d, text, f, e);
    case CONFIG_ENUM: {
        const char *const *names = enum_lists[d->a].names;
        size_t n = enum_lists[d->a].n;
        struct buf list = BUF_INIT;
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcasecmp(text, names[i]) == 0) {
                *(int *)f = (int)i;
                return 0;
            }
        }
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = buf_printf(&list, "%s%s", i ? ", " : "", names[i]);
        err_set(e, ERR_INVAL, "%s: \"%s\" is not one of %s", d->name, text, buf_cstr(&list));
        buf_free(&list);
        return -1;
    }
    }
    return err_set(e, ERR_INVAL, "%s: bad option type", d->name);
}

/* The value of d in o as text (xmalloc'd), unquoted. */
static char *opt_text(const struct config_opts *o, const struct opt_def *d)
{
    const void *f = cfield(o, d);

    switch (d->type) {
    case CONFIG_BOOL:
        return xstrdup(*(const bool *)f ? "yes" : "no");
    case CONFIG_QUAD:
        return xstrdup(quad_names[*(const enum config_quad *)f]);
    case CONFIG_NUMBER:
        return xasprintf("%ld", *(const long *)f);
    case CONFIG_STRING:
    case CONFIG_PATH:
    case CONFIG_MAILBOX:
        return xstrdup(*(char *const *)f);
    case CONFIG_SORT:
        return config_sort_text(*(const struct config_sort *)f);
    case CONFIG_ENUM:
        return xstrdup(enum_lists[d->a].names[*(const int *)f]);
    }
    return xstrdup("");
}

static void opts_free(struct config_opts *o)
{
    for (int i = 0; i < CFG_OPTION_COUNT; i++) {
        if (is_string_type(opt_table[i].type)) {
            char **sp = field(o, &opt_table[i]);
            free(*sp);
            *sp = NULL;
        }
    }
}

static void opts_defaults(struct config_opts *o)
{
    struct err e;

    memset(o, 0, sizeof *o);
    for (int i = 0; i < CFG_OPTION_COUNT; i++)
        if (opt_store(o, &opt_table[i], opt_table[i].def, &e) < 0)
            die("config: bad default for %s: %s", opt_table[i].name, e.text);
}

/* ---- lists ----------------------------------------------------------- */

static bool same(const char *a, const char *b, bool icase)
{
    return icase ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

static void list_add(struct config_list *l, const char *s, bool icase)
{
    for (size_t i = 0; i < l->n; i++)
        if (same(l->v[i], s, icase))
            return;
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n++] = xstrdup(s);
}

/* Remove s ("*": everything). */
static void list_remove(struct config_list *l, const char *s, bool icase)
{
    size_t w = 0;
    bool all = strcmp(s, "*") == 0;

    for (size_t i = 0; i < l->n; i++) {
        if (all || same(l->v[i], s, icase))
            free(l->v[i]);
        else
            l->v[w++] = l->v[i];
    }
    l->n = w;
}

static void list_free(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* argv[from..] joined by single spaces (xmalloc'd). */
static char *join_args(const struct rc_cmd *cmd, size_t from)
{
    struct buf b = BUF_INIT;
    int rc = 0;

    for (size_t i = from; i < cmd->argc && rc == 0; i++)
        rc = buf_printf(&b, "%s%s", i > from ? " " : "", cmd->argv[i]);
    if (rc < 0)
        die("config: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

/* ---- the config object ----------------------------------------------- */

struct config *config_new(void)
{
    struct config *cfg = XNEW(struct config);

    opts_defaults(&cfg->opt);
    cfg->keymap = keymap_new();
    theme_init(&cfg->theme);
    rc_diag_init(&cfg->diag);
    return cfg;
}

static void mailboxes_clear(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_mailboxes; i++) {
        free(cfg->mailboxes[i].path);
        free(cfg->mailboxes[i].label);
    }
    free(cfg->mailboxes);
    cfg->mailboxes = NULL;
    cfg->n_mailboxes = 0;
}

static void hook_free(struct config_hook *h)
{
    free(h->kind);
    free(h->name);
    free(h->pattern);
    free(h->command);
}

static void account_free(struct config_account *a)
{
    free(a->name);
    free(a->url);
    for (size_t i = 0; i < a->n_kv; i++) {
        free(a->kv[i].key);
        if (a->kv[i].value != NULL)
            explicit_bzero(a->kv[i].value, strlen(a->kv[i].value));
        free(a->kv[i].value);
    }
    free(a->kv);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    opts_free(&cfg->opt);
    keymap_free(cfg->keymap);
    theme_free(&cfg->theme);
    rc_diag_free(&cfg->diag);
    mailboxes_clear(cfg);
    for (size_t i = 0; i < cfg->n_hooks; i++)
        hook_free(&cfg->hooks[i]);
    free(cfg->hooks);
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        free(cfg->aliases[i].name);
        free(cfg->aliases[i].address);
    }
    free(cfg->aliases);
    for (size_t i = 0; i < cfg->n_vars; i++) {
        free(cfg->vars[i].name);
        free(cfg->vars[i].value);
    }
    free(cfg->vars);
    for (size_t i = 0; i < cfg->n_accounts; i++)
        account_free(&cfg->accounts[i]);
    free(cfg->accounts);
    struct config_list *lists[] = {
        &cfg->alternates, &cfg->lists, &cfg->subscribed, &cfg->my_hdr, &cfg->ignore,
        &cfg->unignore, &cfg->hdr_order, &cfg->auto_view, &cfg->alternative_order,
        &cfg->mime_lookup, &cfg->push, &cfg->exec,
    };
    for (size_t i = 0; i < ARRAY_LEN(lists); i++)
        list_free(lists[i]);
    free(cfg->last_query);
    free(cfg);
}

static struct rc_diag *cur_diag(struct config *cfg)
{
    return cfg->cur_diag ? cfg->cur_diag : &cfg->diag;
}

/* A diagnostic that belongs to no file line. */
static void diag_plain(struct rc_diag *d, const char *text)
{
    if (d->n >= RC_DIAG_MAX) {
        d->dropped++;
        return;
    }
    d->msgs = xreallocarray(d->msgs, d->n + 1, sizeof *d->msgs);
    d->msgs[d->n++] = xstrdup(text);
}

/* ---- data files ------------------------------------------------------ */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* $XDG_CONFIG_HOME/correo, or ~/.config/correo (xmalloc'd), or NULL. */
static char *user_config_dir(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");

    if (xdg && xdg[0] == '/')
        return xasprintf("%s/correo", xdg);
    if (home && *home)
        return xasprintf("%s/.config/correo", home);
    return NULL;
}

int config_find_data_file(const char *kind, const char *name, char **out, struct err *e)
{
    const char *ext, *what, *datadir = getenv("CORREO_DATADIR_OVERRIDE");
    char *user_dir = user_config_dir(), *cand[2] = {NULL, NULL};
    int rc = -1;

    *out = NULL;
    if (strcmp(kind, "keymaps") == 0) {
        ext = ".keys";
        what = "keymap";
    } else if (strcmp(kind, "themes") == 0) {
        ext = ".theme";
        what = "theme";
    } else {
        free(user_dir);
        return err_set(e, ERR_INVAL, "%s: no such kind of data file", kind);
    }
    if (!*name || strchr(name, '/') || name[0] == '.' || strlen(name) > NAME_MAX_LEN) {
        free(user_dir);
        return err_set(e, ERR_INVAL, "%s \"%s\": a name must be non-empty, without '/' and "
                       "not start with '.'", what, name);
    }
    if (!datadir || !*datadir)
        datadir = CORREO_DATADIR;
    if (user_dir)
        cand[0] = xasprintf("%s/%s/%s%s", user_dir, kind, name, ext);
    cand[1] = xasprintf("%s/%s/%s%s", datadir, kind, name, ext);
    for (int i = 0; i < 2; i++) {
        if (cand[i] && is_file(cand[i])) {
            *out = cand[i];
            cand[i] = NULL;
            rc = 0;
            break;
        }
    }
    if (rc < 0)
        err_set(e, ERR_NOTFOUND, "%s %s: not found in %s/%s or %s/%s", what, name,
                user_dir ? user_dir : "(no home)", kind, datadir, kind);
    free(cand[0]);
    free(cand[1]);
    free(user_dir);
    return rc;
}

static void set_string(char **slot, const char *value)
{
    char *v = xstrdup(value);
    free(*slot);
    *slot = v;
}

int config_use_keymap(struct config *cfg, const char *name, struct rc_diag *diag,
                      struct err *e)
{
    char *path;
    struct keymap *km;

    if (config_find_data_file("keymaps", name, &path, e) < 0)
        return -1;
    km = keymap_new();
    if (keymap_load(km, path, diag, e) < 0) {
        keymap_free(km);
        free(path);
        return -1;
    }
    free(path);
    keymap_free(cfg->keymap);
    cfg->keymap = km;
    set_string(&cfg->opt.keymap, name);
    return 0;
}

int config_use_theme(struct config *cfg, const char *name, struct rc_diag *diag,
                     struct err *e)
{
    char *path;
    struct theme t;

    if (config_find_data_file("themes", name, &path, e) < 0)
        return -1;
    theme_init(&t);
    if (theme_load(&t, path, diag, e) < 0) {
        theme_free(&t);
        free(path);
        return -1;
    }
    free(path);
    theme_free(&cfg->theme);
    cfg->theme = t;
    set_string(&cfg->opt.theme, name);
    return 0;
}

/* ---- user variables -------------------------------------------------- */

static bool is_user_var(const char *name)
{
    if (strncmp(name, "my_", 3) != 0 || !name[3])
        return false;
    for (const char *p = name + 3; *p; p++)
        if (!(*p == '_' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

static struct config_var *var_find(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_vars; i++)
        if (strcmp(cfg->vars[i].name, name) == 0)
            return &cfg->vars[i];
    return NULL;
}

const char *config_var(const struct config *cfg, const char *name)
{
    struct config_var *v = var_find(cfg, name);
    return v ? v->value : NULL;
}

static void var_set(struct config *cfg, const char *name, const char *value)
{
    struct config_var *v = var_find(cfg, name);

    if (v) {
        set_string(&v->value, value);
        return;
    }
    cfg->vars = xreallocarray(cfg->vars, cfg->n_vars + 1, sizeof *cfg->vars);
    cfg->vars[cfg->n_vars].name = xstrdup(name);
    cfg->vars[cfg->n_vars].value = xstrdup(value);
    cfg->n_vars++;
}

static void var_remove(struct config *cfg, const char *name)
{
    struct config_var *v = var_find(cfg, name);

    if (!v)
        return;
    free(v->name);
    free(v->value);
    *v = cfg->vars[--cfg->n_vars];
}

/* ---- setting options ------------------------------------------------- */

/* Set option d from text, with the special cases. */
static int assign(struct config *cfg, const struct opt_def *d, const char *text, struct err *e)
{
    enum config_id id = (enum config_id)(d - opt_table);

    if (id == CFG_allow_ansi) {
        bool v;
        if (parse_bool(text, &v) == 0 && v)
            return err_set(e, ERR_INVAL, "allow_ansi: refused: escape sequences from mail "
                           "never reach the terminal");
    }
    if (id == CFG_keymap) {
        if (strcmp(text, cfg->opt.keymap) == 0)
            return 0;
        return config_use_keymap(cfg, text, cur_diag(cfg), e);
    }
    if (id == CFG_theme) {
        if (strcmp(text, cfg->opt.theme) == 0)
            return 0;
        return config_use_theme(cfg, text, cur_diag(cfg), e);
    }
    return opt_store(&cfg->opt, d, text, e);
}

int config_set(struct config *cfg, const char *name, const char *value, struct err *e)
{
    int id;

    if (is_user_var(name)) {
        var_set(cfg, name, value);
        return 0;
    }
    id = config_option_find(name);
    if (id < 0)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    return assign(cfg, &opt_table[id], value, e);
}

static int reset_one(struct config *cfg, const struct opt_def *d, struct err *e)
{
    return assign(cfg, d, d->def, e);
}

static int toggle_one(struct config *cfg, const struct opt_def *d, struct err *e)
{
    if (d->type == CONFIG_BOOL)
        return assign(cfg, d, *(bool *)field(&cfg->opt, d) ? "no" : "yes", e);
    if (d->type == CONFIG_QUAD) {
        static const enum config_quad flip[] = {
            [CFG_NO] = CFG_YES, [CFG_YES] = CFG_NO,
            [CFG_ASK_NO] = CFG_ASK_YES, [CFG_ASK_YES] = CFG_ASK_NO,
        };
        return assign(cfg, d, quad_names[flip[*(enum config_quad *)field(&cfg->opt, d)]], e);
    }
    return err_set(e, ERR_INVAL, "%s: not a yes/no option", d->name);
}

int config_query(const struct config *cfg, const char *name, char **out, struct err *e)
{
    const struct opt_def *d;
    char *v, *q;
    int id;

    *out = NULL;
    if (is_user_var(name)) {
        const char *val = config_var(cfg, name);
        if (!val)
            return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
        q = rc_quote(val);
        *out = xasprintf("%s=%s", name, q);
        free(q);
        return 0;
    }
    id = config_option_find(name);
    if (id < 0)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    d = &opt_table[id];
    v = opt_text(&cfg->opt, d);
    if (d->type == CONFIG_STRING && (d->a & CFG_SECRET) && *v) {
        *out = xasprintf("%s=********", d->name);
    } else if (is_string_type(d->type)) {
        q = rc_quote(v);
        *out = xasprintf("%s=%s", d->name, q);
        free(q);
    } else {
        *out = xasprintf("%s=%s", d->name, v);
    }
    free(v);
    return 0;
}

static const struct opt_def *lookup_def(const char *name)
{
    int id = config_option_find(name);
    return id < 0 ? NULL : &opt_table[id];
}


int config_get_bool(const struct config *cfg, const char *name, bool *out, struct err *e)
{
    const struct opt_def *d = lookup_def(name);

    if (!d)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    if (d->type == CONFIG_BOOL) {
        *out = *(const bool *)cfield(&cfg->opt, d);
        return 0;
    }
    if (d->type == CONFIG_QUAD) {
        enum config_quad q = *(const enum config_quad *)cfield(&cfg->opt, d);
        *out = q == CFG_YES || q == CFG_ASK_YES;
        return 0;
    }
    return err_set(e, ERR_INVAL, "%s: not a yes/no option", name);
}

int config_get_number(const struct config *cfg, const char *name, long *out, struct err *e)
{
    const struct opt_def *d = lookup_def(name);

    if (!d)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    if (d->type != CONFIG_NUMBER)
        return err_set(e, ERR_INVAL, "%s: not a number option", name);
    *out = *(const long *)cfield(&cfg->opt, d);
    return 0;
}

int config_get_string(const struct config *cfg, const char *name, const char **out,
                      struct err *e)
{
    const struct opt_def *d = lookup_def(name);

    if (!d)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    if (is_string_type(d->type)) {
        *out = *(char *const *)cfield(&cfg->opt, d);
        return 0;
    }
    if (d->type == CONFIG_ENUM) {
        *out = enum_lists[d->a].names[*(const int *)cfield(&cfg->opt, d)];
        return 0;
    }
    return err_set(e, ERR_INVAL, "%s: not a text option", name);
}

int config_get_sort(const struct config *cfg, const char *name, struct config_sort *out,
                    struct err *e)
{
    const struct opt_def *d = lookup_def(name);

    if (!d)
        return err_set(e, ERR_NOTFOUND, "unknown option %s", name);
    if (d->type != CONFIG_SORT)
        return err_set(e, ERR_INVAL, "%s: not a sort option", name);
    *out = *(const struct config_sort *)cfield(&cfg->opt, d);
    return 0;
}

/* ---- the set family -------------------------------------------------- */

/* Errors of one command, joined: the loader gets one message per line. */
struct errs {
    struct buf text;
    int failed;
};

static void errs_add(struct errs *x, const struct err *e)
{
    int rc = buf_printf(&x->text, "%s%s", x->failed ? "; " : "", e->text);
    (void)rc;   /* the buffer is unbounded */
    x->failed++;
}

static int errs_finish(struct errs *x, struct err *e)
{
    int rc = 0;

    if (x->failed)
        rc = err_set(e, ERR_INVAL, "%s", buf_cstr(&x->text));
    buf_free(&x->text);
    return rc;
}

static void add_query(struct config *cfg, const char *name, struct errs *x)
{
    struct err e;
    char *q, *joined;

    if (config_query(cfg, name, &q, &e) < 0) {
        errs_add(x, &e);
        return;
    }
    if (cfg->last_query && *cfg->last_query) {
        joined = xasprintf("%s  %s", cfg->last_query, q);
        free(q);
        q = joined;
    }
    free(cfg->last_query);
    cfg->last_query = q;
}

static int reset_all(struct config *cfg, struct err *e)
{
    struct errs x = {BUF_INIT, 0};

    for (int i = 0; i < CFG_OPTION_COUNT; i++) {
        struct err one;
        if (reset_one(cfg, &opt_table[i], &one) < 0)
            errs_add(&x, &one);
    }
    return errs_finish(&x, e);
}

enum set_op { SET_VALUE, SET_ON, SET_OFF, SET_TOGGLE, SET_RESET, SET_QUERY, SET_UNSET };

/* One item of a set/unset/toggle/reset command. */
static int set_item(struct config *cfg, enum set_op op, const char *name, const char *value,
                    struct errs *x)
{
    const struct opt_def *d;
    struct err e;
    int rc = 0;

    if (op == SET_QUERY) {
        add_query(cfg, name, x);
        return 0;
    }
    if (op == SET_RESET && (strcmp(name, "all") == 0 || strcmp(name, "*") == 0)) {
        if (reset_all(cfg, &e) < 0)
            errs_add(x, &e);
        return 0;
    }
    if (is_user_var(name)) {
        if (op == SET_VALUE)
            var_set(cfg, name, value);
        else if (op == SET_RESET || op == SET_UNSET || op == SET_OFF)
            var_remove(cfg, name);
        else if (op == SET_ON)
            add_query(cfg, name, x);
        else
            rc = err_set(&e, ERR_INVAL, "%s: not a yes/no option", name);
        if (rc < 0)
            errs_add(x, &e);
        return 0;
    }
    d = lookup_def(name);
    if (!d) {
        err_set(&e, ERR_NOTFOUND, "unknown option %s", name);
        errs_add(x, &e);
        return 0;
    }
    switch (op) {
    case SET_VALUE:
        rc = assign(cfg, d, value, &e);
        break;
    case SET_ON:
        if (d->type == CONFIG_BOOL || d->type == CONFIG_QUAD)
            rc = assign(cfg, d, "yes", &e);
        else
            add_query(cfg, d->name, x);
        break;
    case SET_OFF:
    case SET_UNSET:
        if (d->type == CONFIG_BOOL || d->type == CONFIG_QUAD)
            rc = assign(cfg, d, "no", &e);
        else if (op == SET_UNSET && is_string_type(d->type))
            rc = assign(cfg, d, "", &e);
        else
            rc = err_set(&e, ERR_INVAL, op == SET_OFF ? "%s: not a yes/no option"
                                                      : "%s: cannot be unset (use reset)",
                         d->name);
        break;
    case SET_TOGGLE:
        rc = toggle_one(cfg, d, &e);
        break;
    case SET_RESET:
        rc = reset_one(cfg, d, &e);
        break;
    case SET_QUERY:
        break;
    }
    if (rc < 0)
        errs_add(x, &e);
    return 0;
}

/* Classify a bare word of a set command ("noname", "invname", "name&"...). */
static enum set_op classify(char *word, const char **name)
{
    size_t len = strlen(word);

    *name = word;
    if (len > 1 && word[len - 1] == '?') {
        word[len - 1] = '\0';
        return SET_QUERY;
    }
    if (len > 1 && word[0] == '?') {
        *name = word + 1;
        return SET_QUERY;
    }
    if (len > 1 && word[len - 1] == '&') {
        word[len - 1] = '\0';
        return SET_RESET;
    }
    if (len > 1 && word[0] == '&') {
        *name = word + 1;
        return SET_RESET;
    }
    if (lookup_def(word) || is_user_var(word))
        return SET_ON;
    if (strncmp(word, "no", 2) == 0 && lookup_def(word + 2)) {
        *name = word + 2;
        return SET_OFF;
    }
    if (strncmp(word, "inv", 3) == 0 && lookup_def(word + 3)) {
        *name = word + 3;
        return SET_TOGGLE;
    }
    return SET_ON;      /* unknown: reported by set_item */
}

static int cmd_set(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    struct errs x = {BUF_INIT, 0};
    const char *verb = cmd->argv[0];
    enum set_op fixed = SET_VALUE;

    if (strcmp(verb, "unset") == 0)
        fixed = SET_UNSET;
    else if (strcmp(verb, "toggle") == 0)
        fixed = SET_TOGGLE;
    else if (strcmp(verb, "reset") == 0)
        fixed = SET_RESET;
    if (cmd->argc < 2)
        return err_set(e, ERR_PARSE, "%s: expects an option name", verb);
    free(cfg->last_query);
    cfg->last_query = NULL;

    for (size_t i = 1; i < cmd->argc; i++) {
        char *word = xstrdup(cmd->argv[i]);
        char *eq = strchr(word, '=');
        const char *name = word;

        if (fixed != SET_VALUE) {
            if (eq) {
                struct err one;
                err_set(&one, ERR_PARSE, "%s: takes names, not %s", verb, cmd->argv[i]);
                errs_add(&x, &one);
            } else {
                set_item(cfg, fixed, word, NULL, &x);
            }
        } else if (eq && eq != word) {
            *eq = '\0';
            set_item(cfg, SET_VALUE, word, eq + 1, &x);
        } else if (!eq && i + 1 < cmd->argc && cmd->argv[i + 1][0] == '=') {
            /* "name = value" or "name =value" */
            const char *value = cmd->argv[i + 1] + 1;
            i++;
            if (!*value) {
                if (i + 1 < cmd->argc) {
                    value = cmd->argv[++i];
                } else {
                    struct err one;
                    err_set(&one, ERR_PARSE, "%s: missing value after =", word);
                    errs_add(&x, &one);
                    free(word);
                    continue;
                }
            }
            set_item(cfg, SET_VALUE, word, value, &x);
        } else if (eq) {
            struct err one;
            err_set(&one, ERR_PARSE, "set: %s: missing option name", cmd->argv[i]);
            errs_add(&x, &one);
        } else {
            enum set_op op = classify(word, &name);
            set_item(cfg, op, name, NULL, &x);
        }
        free(word);
    }
    return errs_finish(&x, e);
}

/* ---- other commands -------------------------------------------------- */

static int expect_args(const struct rc_cmd *cmd, size_t min, size_t max, const char *usage,
                       struct err *e)
{
    if (cmd->argc - 1 < min || cmd->argc - 1 > max)
        return err_set(e, ERR_PARSE, "%s: expects %s", cmd->argv[0], usage);
    return 0;
}

static void mailbox_add(struct config *cfg, const char *path, const char *label)
{
    for (size_t i = 0; i < cfg->n_mailboxes; i++) {
        if (strcmp(cfg->mailboxes[i].path, path) == 0) {
            if (label) {
                free(cfg->mailboxes[i].label);
                cfg->mailboxes[i].label = xstrdup(label);
            }
            return;
        }
    }
    cfg->mailboxes = xreallocarray(cfg->mailboxes, cfg->n_mailboxes + 1,
                                   sizeof *cfg->mailboxes);
    cfg->mailboxes[cfg->n_mailboxes].path = xstrdup(path);
    cfg->mailboxes[cfg->n_mailboxes].label = label ? xstrdup(label) : NULL;
    cfg->n_mailboxes++;
}

static int cmd_mailboxes(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    /* virtual-mailboxes LABEL notmuch://...: named mailboxes (neomutt's name). */
    bool named = strcmp(cmd->argv[0], "named-mailboxes") == 0 ||
                 strcmp(cmd->argv[0], "virtual-mailboxes") == 0;
    const char *label = NULL;
    size_t added = 0;

    for (size_t i = 1; i < cmd->argc; i++) {
        const char *a = cmd->argv[i];
        char *path;

        if (!named && strcmp(a, "-label") == 0) {
            if (i + 1 >= cmd->argc)
                return err_set(e, ERR_PARSE, "mailboxes: -label needs a value");
            label = cmd->argv[++i];
            continue;
        }
        if (!named && (strcmp(a, "-notify") == 0 || strcmp(a, "-nonotify") == 0 ||
                       strcmp(a, "-poll") == 0 || strcmp(a, "-nopoll") == 0))
            continue;
        if (named) {
            if (i + 1 >= cmd->argc)
                return err_set(e, ERR_PARSE, "%s: expects LABEL PATH pairs", cmd->argv[0]);
            label = a;
            a = cmd->argv[++i];
        }
        if (!*a)
            return err_set(e, ERR_PARSE, "%s: empty mailbox name", cmd->argv[0]);
        if (expand_home(a, &path, e) < 0)
            return -1;
        mailbox_add(cfg, path, label);
        free(path);
        label = NULL;
        added++;
    }
    if (added == 0)
        return err_set(e, ERR_PARSE, "%s: expects at least one mailbox", cmd->argv[0]);
    return 0;
}

static int cmd_unmailboxes(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    if (expect_args(cmd, 1, RC_WORDS_MAX, "PATH...|*", e) < 0)
        return -1;
    for (size_t i = 1; i < cmd->argc; i++) {
        char *path;
        size_t w = 0;

        if (strcmp(cmd->argv[i], "*") == 0) {
            mailboxes_clear(cfg);
            continue;
        }
        if (expand_home(cmd->argv[i], &path, e) < 0)
            return -1;
        for (size_t k = 0; k < cfg->n_mailboxes; k++) {
            if (strcmp(cfg->mailboxes[k].path, path) == 0) {
                free(cfg->mailboxes[k].path);
                free(cfg->mailboxes[k].label);
            } else {
                cfg->mailboxes[w++] = cfg->mailboxes[k];
            }
        }
        cfg->n_mailboxes = w;
        free(path);
    }
    return 0;
}

/* Skip mutt's "-group NAME" options at argv[*i]. */
static int skip_groups(const struct rc_cmd *cmd, size_t *i, struct err *e)
{
    while (*i < cmd->argc && (strcmp(cmd->argv[*i], "-group") == 0 ||
                              strcmp(cmd->argv[*i], "-rx") == 0 ||
                              strcmp(cmd->argv[*i], "-addr") == 0)) {
        if (strcmp(cmd->argv[*i], "-group") == 0) {
            if (*i + 1 >= cmd->argc)
                return err_set(e, ERR_PARSE, "%s: -group needs a name", cmd->argv[0]);
            (*i)++;
        }
        (*i)++;
    }
    return 0;
}

/* alternates, lists, subscribe and their un- forms: regular expressions. */
static int cmd_regex_list(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    const char *verb = cmd->argv[0];
    bool un = strncmp(verb, "un", 2) == 0;
    const char *base = un ? verb + 2 : verb;
    size_t i = 1;

    if (skip_groups(cmd, &i, e) < 0)
        return -1;
    if (i >= cmd->argc)
        return err_set(e, ERR_PARSE, "%s: expects regular expressions", verb);
    for (; i < cmd->argc; i++) {
        const char *re = cmd->argv[i];
        if (!un && check_regex(verb, re, REG_ICASE, e) < 0)
            return -1;
        if (strcmp(base, "alternates") == 0) {
            if (un)
                list_remove(&cfg->alternates, re, false);
            else
                list_add(&cfg->alternates, re, false);
        } else if (strcmp(base, "lists") == 0) {
            if (un) {
                list_remove(&cfg->lists, re, false);
                list_remove(&cfg->subscribed, re, false);
            } else {
                list_add(&cfg->lists, re, false);
            }
        } else {            /* subscribe */
            if (un) {
                list_remove(&cfg->subscribed, re, false);
            } else {
                list_add(&cfg->lists, re, false);
                list_add(&cfg->subscribed, re, false);
            }
        }
    }
    return 0;
}

static bool field_name_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f || s[i] == ':')
            return false;
    return true;
}

static int cmd_my_hdr(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    char *line;
    const char *colon;
    size_t nlen, w = 0;

    if (cmd->argc < 2)
        return err_set(e, ERR_PARSE, "my_hdr: expects \"Field: value\"");
    line = join_args(cmd, 1);
    colon = strchr(line, ':');
    nlen = colon ? (size_t)(colon - line) : 0;
    if (!colon || !field_name_ok(line, nlen)) {
        free(line);
        return err_set(e, ERR_PARSE, "my_hdr: expects \"Field: value\"");
    }
    for (size_t i = 0; i < cfg->my_hdr.n; i++) {
        const char *old = cfg->my_hdr.v[i];
        if (strncasecmp(old, line, nlen + 1) == 0)
            free(cfg->my_hdr.v[i]);
        else
            cfg->my_hdr.v[w++] = cfg->my_hdr.v[i];
    }
    cfg->my_hdr.n = w;
    cfg->my_hdr.v = xreallocarray(cfg->my_hdr.v, w + 1, sizeof *cfg->my_hdr.v);
    cfg->my_hdr.v[cfg->my_hdr.n++] = line;
    return 0;
}

static int cmd_unmy_hdr(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    if (expect_args(cmd, 1, RC_WORDS_MAX, "FIELD...|*", e) < 0)
        return -1;
    for (size_t i = 1; i < cmd->argc; i++) {
        const char *f = cmd->argv[i];
        size_t flen = strcspn(f, ":"), w = 0;

        if (strcmp(f, "*") == 0) {
            list_free(&cfg->my_hdr);
            continue;
        }
        for (size_t k = 0; k < cfg->my_hdr.n; k++) {
            const char *h = cfg->my_hdr.v[k];
            if (strncasecmp(h, f, flen) == 0 && h[flen] == ':')
                free(cfg->my_hdr.v[k]);
            else
                cfg->my_hdr.v[w++] = cfg->my_hdr.v[k];
        }
        cfg->my_hdr.n = w;
    }
    return 0;
}

/* Word lists: ignore, hdr_order, auto_view, alternative_order, mime_lookup
 * and their un- forms. */
static int cmd_word_list(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    const char *verb = cmd->argv[0];
    bool un = strncmp(verb, "un", 2) == 0;
    const char *base = un ? verb + 2 : verb;
    struct config_list *l;

    if (expect_args(cmd, 1, RC_WORDS_MAX, un ? "NAME...|*" : "NAME...", e) < 0)
        return -1;
    if (strcmp(base, "ignore") == 0)
        l = &cfg->ignore;
    else if (strcmp(base, "hdr_order") == 0)
        l = &cfg->hdr_order;
    else if (strcmp(base, "auto_view") == 0)
        l = &cfg->auto_view;
    else if (strcmp(base, "alternative_order") == 0)
        l = &cfg->alternative_order;
    else
        l = &cfg->mime_lookup;
    for (size_t i = 1; i < cmd->argc; i++) {
        const char *w = cmd->argv[i];
        if (l == &cfg->ignore) {
            /* mutt: ignore X drops X from the unignore list and the reverse */
            if (un) {
                if (strcmp(w, "*") != 0)
                    list_add(&cfg->unignore, w, true);
                list_remove(&cfg->ignore, w, true);
            } else {
                list_remove(&cfg->unignore, w, true);
                list_add(&cfg->ignore, w, true);
            }
        } else if (un) {
            list_remove(l, w, true);
        } else {
            list_add(l, w, true);
        }
    }
    return 0;
}

/* The address words of an alias joined back into one address list.  The
 * tokenizer took the quotes off, so a word that held blanks or a comma
 * inside it (a display name such as "Doe, John") is quoted again, RFC 5322
 * style; a comma at the end of a word still separates addresses. */
static char *join_alias_words(const struct rc_cmd *cmd, size_t from)
{
    struct buf b = BUF_INIT;
    int rc = 0;

    for (size_t i = from; i < cmd->argc; i++) {
        const char *w = cmd->argv[i];
        size_t n = strlen(w);
        size_t core = n && w[n - 1] == ',' ? n - 1 : n;
        bool quote = false;

        for (size_t k = 0; k < core; k++)
            if (w[k] == ' ' || w[k] == '\t' || w[k] == ',' || w[k] == ';')
                quote = true;
        if (w[0] == '<' || w[0] == '"')
            quote = false;
        if (i > from)
            rc |= buf_putc(&b, ' ');
        if (!quote) {
            rc |= buf_puts(&b, w);
            continue;
        }
        rc |= buf_putc(&b, '"');
        for (size_t k = 0; k < core; k++) {
            if (w[k] == '"' || w[k] == '\\')
                rc |= buf_putc(&b, '\\');
            rc |= buf_putc(&b, w[k]);
        }
        rc |= buf_putc(&b, '"');
        if (core < n)
            rc |= buf_putc(&b, ',');
    }
    if (rc < 0)
        die("config: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

static int cmd_alias(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    size_t i = 1;
    char *addr;

    if (skip_groups(cmd, &i, e) < 0)
        return -1;
    if (i + 2 > cmd->argc)
        return err_set(e, ERR_PARSE, "alias: expects NAME ADDRESS...");
    addr = join_alias_words(cmd, i + 1);
    for (size_t k = 0; k < cfg->n_aliases; k++) {
        if (strcasecmp(cfg->aliases[k].name, cmd->argv[i]) == 0) {
            free(cfg->aliases[k].address);
            cfg->aliases[k].address = addr;
            return 0;
        }
    }
    cfg->aliases = xreallocarray(cfg->aliases, cfg->n_aliases + 1, sizeof *cfg->aliases);
    cfg->aliases[cfg->n_aliases].name = xstrdup(cmd->argv[i]);
    cfg->aliases[cfg->n_aliases].address = addr;
    cfg->n_aliases++;
    return 0;
}

static int cmd_unalias(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    size_t i = 1;

    if (skip_groups(cmd, &i, e) < 0)
        return -1;
    if (i >= cmd->argc)
        return err_set(e, ERR_PARSE, "unalias: expects NAME...|*");
    for (; i < cmd->argc; i++) {
        bool all = strcmp(cmd->argv[i], "*") == 0;
        size_t w = 0;
        for (size_t k = 0; k < cfg->n_aliases; k++) {
            if (all || strcasecmp(cfg->aliases[k].name, cmd->argv[i]) == 0) {
                free(cfg->aliases[k].name);
                free(cfg->aliases[k].address);
            } else {
                cfg->aliases[w++] = cfg->aliases[k];
            }
        }
        cfg->n_aliases = w;
    }
    return 0;
}

static int cmd_push(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    int *keys;
    size_t n;

    if (expect_args(cmd, 1, 1, "KEYS", e) < 0)
        return -1;
    if (keymap_parse_keys(cmd->argv[1], true, KEYMAP_MACRO_MAX, &keys, &n, e) < 0) {
        err_prefix(e, "push");
        return -1;
    }
    free(keys);
    cfg->push.v = xreallocarray(cfg->push.v, cfg->push.n + 1, sizeof *cfg->push.v);
    cfg->push.v[cfg->push.n++] = xstrdup(cmd->argv[1]);
    return 0;
}

static int cmd_exec(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    if (expect_args(cmd, 1, RC_WORDS_MAX, "FUNCTION...", e) < 0)
        return -1;
    for (size_t i = 1; i < cmd->argc; i++)
        if (keymap_op_parse(cmd->argv[i]) < 0)
            return err_set(e, ERR_INVAL, "exec: %s: no such function", cmd->argv[i]);
    for (size_t i = 1; i < cmd->argc; i++) {
        cfg->exec.v = xreallocarray(cfg->exec.v, cfg->exec.n + 1, sizeof *cfg->exec.v);
        cfg->exec.v[cfg->exec.n++] = xstrdup(cmd->argv[i]);
    }
    return 0;
}

static const struct {
    const char *kind;
    int args;       /* 1: COMMAND, 2: PATTERN COMMAND, 3: NAME PATTERN FORMAT */
} hook_kinds[] = {
    {"account-hook", 2}, {"folder-hook", 2}, {"send-hook", 2}, {"send2-hook", 2},
    {"reply-hook", 2}, {"message-hook", 2}, {"save-hook", 2}, {"fcc-hook", 2},
    {"fcc-save-hook", 2}, {"mbox-hook", 2}, {"charset-hook", 2}, {"iconv-hook", 2},
    {"crypt-hook", 2}, {"pgp-hook", 2}, {"open-hook", 2}, {"close-hook", 2},
    {"append-hook", 2}, {"startup-hook", 1}, {"shutdown-hook", 1}, {"timeout-hook", 1},
    {"index-format-hook", 3},
};

static int hook_args(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(hook_kinds); i++)
        if (strcmp(hook_kinds[i].kind, name) == 0)
            return hook_kinds[i].args;
    return 0;
}

static int cmd_hook(struct config *cfg, const struct rc_cmd *cmd, int args, struct err *e)
{
    static const char *const usage[] = {"", "COMMAND", "PATTERN COMMAND",
                                        "NAME PATTERN FORMAT"};
    struct config_hook h = {NULL, NULL, NULL, NULL};

    if (cmd->argc != (size_t)args + 1)
        return err_set(e, ERR_PARSE, "%s: expects %s (quote the command)", cmd->argv[0],
                       usage[args]);
    if (!*cmd->argv[1] || (args > 1 && !*cmd->argv[2]))
        return err_set(e, ERR_PARSE, "%s: empty argument", cmd->argv[0]);
    h.kind = xstrdup(cmd->argv[0]);
    if (args == 1) {
        h.command = xstrdup(cmd->argv[1]);
    } else if (args == 2) {
        h.pattern = xstrdup(cmd->argv[1]);
        h.command = xstrdup(cmd->argv[2]);
    } else {
        h.name = xstrdup(cmd->argv[1]);
        h.pattern = xstrdup(cmd->argv[2]);
        h.command = xstrdup(cmd->argv[3]);
    }
    cfg->hooks = xreallocarray(cfg->hooks, cfg->n_hooks + 1, sizeof *cfg->hooks);
    cfg->hooks[cfg->n_hooks++] = h;
    return 0;
}

static int cmd_unhook(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    const char *kind;
    size_t w = 0;

    if (expect_args(cmd, 1, 1, "KIND|*", e) < 0)
        return -1;
    kind = cmd->argv[1];
    if (strcmp(kind, "*") != 0 && hook_args(kind) == 0)
        return err_set(e, ERR_INVAL, "unhook: %s: no such hook", kind);
    for (size_t i = 0; i < cfg->n_hooks; i++) {
        if (strcmp(kind, "*") == 0 || strcmp(cfg->hooks[i].kind, kind) == 0)
            hook_free(&cfg->hooks[i]);
        else
            cfg->hooks[w++] = cfg->hooks[i];
    }
    cfg->n_hooks = w;
    return 0;
}

static int cmd_keymap_theme(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    bool keymap = strcmp(cmd->argv[0], "keymap") == 0;

    if (expect_args(cmd, 1, 1, "NAME", e) < 0)
        return -1;
    return keymap ? config_use_keymap(cfg, cmd->argv[1], cur_diag(cfg), e)
                  : config_use_theme(cfg, cmd->argv[1], cur_diag(cfg), e);
}

/* account NAME URL [KEY=VALUE]... */
static int cmd_account(struct config *cfg, const struct rc_cmd *cmd, struct err *e)
{
    struct config_account a = {0};

    if (cmd->argc < 3)
        return err_set(e, ERR_PARSE, "account: expects NAME URL [KEY=VALUE]...");
    if (cmd->argv[1][0] == '\0' || strpbrk(cmd->argv[1], "/ \t") != NULL)
        return err_set(e, ERR_PARSE, "account: bad name \"%s\"", cmd->argv[1]);
    a.name = xstrdup(cmd->argv[1]);
    a.url = xstrdup(cmd->argv[2]);
    for (size_t i = 3; i < cmd->argc; i++) {
        const char *eq = strchr(cmd->argv[i], '=');

        if (eq == NULL || eq == cmd->argv[i]) {
            err_set(e, ERR_PARSE, "account %s: expected KEY=VALUE, got \"%s\"", a.name,
                    cmd->argv[i]);
            account_free(&a);
            return -1;
        }
        for (size_t k = 0; k < a.n_kv; k++) {
            if (strlen(a.kv[k].key) == (size_t)(eq - cmd->argv[i]) &&
                strncmp(a.kv[k].key, cmd->argv[i], (size_t)(eq - cmd->argv[i])) == 0) {
                err_set(e, ERR_PARSE, "account %s: %s given twice", a.name, a.kv[k].key);
                account_free(&a);
                return -1;
            }
        }
        a.kv = xreallocarray(a.kv, a.n_kv + 1, sizeof(*a.kv));
        a.kv[a.n_kv].key = xstrndup(cmd->argv[i], (size_t)(eq - cmd->argv[i]));
        a.kv[a.n_kv].value = xstrdup(eq + 1);
        a.n_kv++;
    }
    if (fetch_is_pop_url(a.url)) {
        struct fetch_account fa;

        if (fetch_account_parse(&a, &fa, e) < 0) {
            account_free(&a);
            return -1;
        }
        fetch_account_free(&fa);
    }
    for (size_t k = 0; k < cfg->n_accounts; k++) {
        if (strcmp(cfg->accounts[k].name, a.name) == 0) {
            account_free(&cfg->accounts[k]);
            cfg->accounts[k] = a;
            return 0;
        }
    }
    cfg->accounts = xreallocarray(cfg->accounts, cfg->n_accounts + 1, sizeof(*cfg->accounts));
    cfg->accounts[cfg->n_accounts++] = a;
    return 0;
}

const struct config_account *config_account_find(const struct config *cfg, const char *name)
{
    for (size_t k = 0; k < cfg->n_accounts; k++)
        if (strcmp(cfg->accounts[k].name, name) == 0)
            return &cfg->accounts[k];
    return NULL;
}

const char *config_account_get(const struct config_account *a, const char *key)
{
    for (size_t k = 0; k < a->n_kv; k++)
        if (strcmp(a->kv[k].key, key) == 0)
            return a->kv[k].value;
    return NULL;
}

typedef int (*cmd_fn)(struct config *cfg, const struct rc_cmd *cmd, struct err *e);

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"set", cmd_set}, {"unset", cmd_set}, {"toggle", cmd_set}, {"reset", cmd_set},
    {"mailboxes", cmd_mailboxes}, {"named-mailboxes", cmd_mailboxes},
    {"virtual-mailboxes", cmd_mailboxes}, {"unvirtual-mailboxes", cmd_unmailboxes},
    {"unmailboxes", cmd_unmailboxes},
    {"keymap", cmd_keymap_theme}, {"theme", cmd_keymap_theme},
    {"alternates", cmd_regex_list}, {"unalternates", cmd_regex_list},
    {"lists", cmd_regex_list}, {"unlists", cmd_regex_list},
    {"subscribe", cmd_regex_list}, {"unsubscribe", cmd_regex_list},
    {"my_hdr", cmd_my_hdr}, {"unmy_hdr", cmd_unmy_hdr},
    {"ignore", cmd_word_list}, {"unignore", cmd_word_list},
    {"hdr_order", cmd_word_list}, {"unhdr_order", cmd_word_list},
    {"auto_view", cmd_word_list}, {"unauto_view", cmd_word_list},
    {"alternative_order", cmd_word_list}, {"unalternative_order", cmd_word_list},
    {"mime_lookup", cmd_word_list}, {"unmime_lookup", cmd_word_list},
    {"alias", cmd_alias}, {"unalias", cmd_unalias},
    {"push", cmd_push}, {"exec", cmd_exec},
    {"unhook", cmd_unhook},
    {"account", cmd_account},
};

int config_rc_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct config *cfg = ctx;
    const char *name = cmd->argv[0];
    int args;

    if (keymap_is_command(name))
        return keymap_command(cfg->keymap, cmd, e);
    if (theme_is_command(name))
        return theme_command(&cfg->theme, cmd, e);
    for (size_t i = 0; i < ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].fn(cfg, cmd, e);
    if ((args = hook_args(name)) > 0)
        return cmd_hook(cfg, cmd, args, e);
    return err_set(e, ERR_PARSE, "unknown command %s", name);
}

/* ---- loading --------------------------------------------------------- */

char *config_default_path(void)
{
    char *dir = user_config_dir();
    char *path = dir ? xasprintf("%s/correorc", dir) : xstrdup("correorc");

    free(dir);
    return path;
}

static int load_rc(struct config *cfg, const char *path, struct err *e)
{
    struct rc_loader l;
    struct rc_diag *saved = cfg->cur_diag;
    int rc;

    rc_loader_init(&l, config_rc_handler, cfg, &cfg->diag);
    cfg->cur_diag = &cfg->diag;
    rc = rcfile_load(&l, path, e);
    cfg->cur_diag = saved;
    return rc;
}

int config_load(struct config *cfg, const char *path, unsigned flags, struct err *e)
{
    struct err e2;
    char *name;

    name = xstrdup(cfg->opt.keymap);
    if (config_use_keymap(cfg, name, &cfg->diag, &e2) < 0) {
        diag_plain(&cfg->diag, e2.text);
        keymap_clear(cfg->keymap);
        keymap_bind_fallback(cfg->keymap);
    }
    free(name);
    name = xstrdup(cfg->opt.theme);
    if (config_use_theme(cfg, name, &cfg->diag, &e2) < 0)
        diag_plain(&cfg->diag, e2.text);
    free(name);

    if (flags & CONFIG_NO_RC)
        return 0;
    if (path)
        return load_rc(cfg, path, e);

    char *cands[2];
    const char *home = getenv("HOME");
    cands[0] = config_default_path();
    cands[1] = home && *home ? xasprintf("%s/.correorc", home) : NULL;
    for (int i = 0; i < 2; i++) {
        if (cands[i] && access(cands[i], F_OK) == 0) {
            if (load_rc(cfg, cands[i], &e2) < 0)
                diag_plain(&cfg->diag, e2.text);
            break;
        }
    }
    free(cands[0]);
    free(cands[1]);
    return 0;
}

void config_exec(struct config *cfg, const char *name, const char *text, struct rc_diag *diag)
{
    struct rc_loader l;
    struct rc_diag *saved = cfg->cur_diag;

    rc_loader_init(&l, config_rc_handler, cfg, diag);
    cfg->cur_diag = diag;
    rcfile_load_string(&l, name, text, strlen(text));
    cfg->cur_diag = saved;
}

/* ---- dump and helpers for the UI ------------------------------------- */

char *config_dump(const struct config *cfg, bool all)
{
    struct buf b = BUF_INIT;
    struct config_opts defs;
    int rc = 0;

    opts_defaults(&defs);
    for (int i = 0; i < CFG_OPTION_COUNT && rc == 0; i++) {
        const struct opt_def *d = &opt_table[i];
        char *cur, *def, *q;

        if (d->type == CONFIG_STRING && (d->a & CFG_SECRET))
            continue;
        cur = opt_text(&cfg->opt, d);
        def = opt_text(&defs, d);
        if (all || strcmp(cur, def) != 0) {
            q = rc_quote(cur);
            rc = buf_printf(&b, "set %s=%s\n", d->name, q);
            free(q);
        }
        free(cur);
        free(def);
    }
    for (size_t i = 0; i < cfg->n_vars && rc == 0; i++) {
        char *q = rc_quote(cfg->vars[i].value);
        rc = buf_printf(&b, "set %s=%s\n", cfg->vars[i].name, q);
        free(q);
    }
    opts_free(&defs);
    if (rc < 0)
        die("config_dump: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

static char *mailbox_path_depth(const struct config *cfg, const char *name, int depth)
{
    const char *folder = cfg->opt.folder;
    const char *target = NULL;
    char *out;

    if ((name[0] == '+' || name[0] == '=')) {
        size_t fl = strlen(folder);
        bool slash = fl > 0 && folder[fl - 1] == '/';
        return xasprintf("%s%s%s", folder, slash ? "" : "/", name + 1);
    }
    if (strcmp(name, "!") == 0)
        target = *cfg->opt.spoolfile ? cfg->opt.spoolfile : folder;
    else if (strcmp(name, ">") == 0)
        target = cfg->opt.mbox;
    else if (strcmp(name, "<") == 0)
        target = cfg->opt.record;
    if (target) {
        if (depth > 2 || strcmp(target, name) == 0)
            return xstrdup(target);
        return mailbox_path_depth(cfg, target, depth + 1);
    }
    if (name[0] == '~' && expand_home(name, &out, NULL) == 0)
        return out;
    return xstrdup(name);
}

char *config_mailbox_path(const struct config *cfg, const char *name)
{
    return mailbox_path_depth(cfg, name, 0);
}

const char *config_editor(const struct config *cfg)
{
    const char *v;

    if (*cfg->opt.editor)
        return cfg->opt.editor;
    if ((v = getenv("VISUAL")) && *v)
        return v;
    if ((v = getenv("EDITOR")) && *v)
        return v;
    return "vi";
}

static bool header_matches(const struct config_list *l, const char *line)
{
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->v[i];
        if (strcmp(p, "*") == 0 || strncasecmp(line, p, strlen(p)) == 0)
            return true;
    }
    return false;
}

bool config_header_ignored(const struct config *cfg, const char *field)
{
    int n = (int)strcspn(field, ":");
    char *line = xasprintf("%.*s:", n, field);
    bool ignored = header_matches(&cfg->ignore, line) && !header_matches(&cfg->unignore, line);

    free(line);
    return ignored;
}
