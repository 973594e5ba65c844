/*
 * alias: the alias table, address lists, completion, $query_command and
 * appending to the aliases file.  See alias.h.
 */
#include "alias.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "mailcap.h"
#include "xalloc.h"

/* ---- small helpers ---------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_ctl(char c)
{
    unsigned char u = (unsigned char)c;
    return u < 0x20 || u == 0x7f;
}

static void put(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) < 0)
        die("alias: unbounded buffer refused data");
}

static void putch(struct buf *b, char c)
{
    put(b, &c, 1);
}

static void putstr(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Decode one UTF-8 sequence at *p (not at the terminating NUL) and advance.
 * Invalid bytes (stray continuation bytes, overlong forms, surrogates,
 * beyond U+10FFFF, cut sequences) come back one at a time as 0x110000 +
 * byte, so they compare only with themselves. */
static uint32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = s[0], min;
    size_t len;

    if (c < 0x80) {
        *p = s + 1;
        return c;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        *p = s + 1;
        return 0x110000u + s[0];
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *p = s + 1;
            return 0x110000u + s[0];
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        *p = s + 1;
        return 0x110000u + s[0];
    }
    *p = s + len;
    return c;
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p)
        if (utf8_next(&p) >= 0x110000u)
            return false;
    return true;
}

/* Simple case folding, one code point to one, for the scripts people's
 * names are most often written in. */
static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if (c >= 0x100 && c <= 0x17f) {
        if (c == 0x130 || c == 0x131 || c == 0x138 || c == 0x149)
            return c;
        if (c == 0x178)
            return 0xff;
        if (c == 0x17f)
            return 's';
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
            return (c & 1) ? c + 1 : c;
        return c | 1;
    }
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if (c == 0x3c2)
        return 0x3c3;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    return c;
}

static uint32_t next_folded(const unsigned char **p)
{
    return **p ? fold_cp(utf8_next(p)) : 0;
}

bool alias_prefix_match(const char *s, const char *prefix)
{
    const unsigned char *a = (const unsigned char *)s, *b = (const unsigned char *)prefix;

    for (;;) {
        uint32_t cb = next_folded(&b);
        if (cb == 0)
            return true;
        if (next_folded(&a) != cb)
            return false;
    }
}

int alias_fold_cmp(const char *x, const char *y)
{
    const unsigned char *a = (const unsigned char *)x, *b = (const unsigned char *)y;

    for (;;) {
        uint32_t ca = next_folded(&a), cb = next_folded(&b);
        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca == 0)
            return 0;
    }
}

/* ---- address lists ------------------------------------------------------------ */

static void addrlist_push(struct msg_addrlist *l, char *name, char *addr)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
    l->v[l->n].name = name;
    l->v[l->n].addr = addr;
    l->n++;
}

void alias_addrlist_free(struct msg_addrlist *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].addr);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Skip a quoted string starting at s[i] == '"'; returns the index after the
 * closing quote.  The list is known to be balanced. */
static size_t skip_quoted(const char *s, size_t n, size_t i)
{
    for (i++; i < n && s[i] != '"'; i++)
        if (s[i] == '\\' && i + 1 < n)
            i++;
    return i < n ? i + 1 : n;
}

/* Skip a comment starting at s[i] == '('; returns the index after it. */
static size_t skip_comment(const char *s, size_t n, size_t i)
{
    int depth = 0;

    for (; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        else if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && --depth == 0)
            return i + 1;
    }
    return n;
}

/* The display name in s[0..n): quoted strings unquoted, comments dropped,
 * blanks outside quotes collapsed and trimmed.  NULL when empty. */
static char *phrase_text(const char *s, size_t n)
{
    struct buf b = BUF_INIT;
    bool pending = false;

    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '"') {
            size_t end = skip_quoted(s, n, i);   /* just after the closing quote */
            if (pending && b.len)
                putch(&b, ' ');
            pending = false;
            for (size_t k = i + 1; k + 1 < end; k++) {
                if (s[k] == '\\' && k + 2 < end)
                    k++;
                putch(&b, s[k]);
            }
            i = end;
        } else if (c == '(') {
            i = skip_comment(s, n, i);
            pending = true;
        } else if (is_blank(c)) {
            pending = true;
            i++;
        } else {
            if (pending && b.len)
                putch(&b, ' ');
            pending = false;
            putch(&b, c);
            i++;
        }
    }
    if (b.len == 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

/* The text inside the comment s[i] == '(' ... ')' (escapes removed, inner
 * parentheses kept), blanks collapsed; NULL when empty. */
static char *comment_text(const char *s, size_t n, size_t i)
{
    size_t end = skip_comment(s, n, i);
    struct buf b = BUF_INIT;
    bool pending = false;

    for (size_t k = i + 1; k + 1 < end; k++) {
        char c = s[k];
        if (c == '\\' && k + 2 < end)
            c = s[++k];
        if (is_blank(c)) {
            pending = true;
            continue;
        }
        if (pending && b.len)
            putch(&b, ' ');
        pending = false;
        putch(&b, c);
    }
    if (b.len == 0) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

static void trim(const char *s, size_t *start, size_t *end)
{
    while (*start < *end && is_blank(s[*start]))
        (*start)++;
    while (*end > *start && is_blank(s[*end - 1]))
        (*end)--;
}

/* An addr-spec s[a..z) as it will be kept: not empty, no blanks outside
 * quotes. */
static int check_addr_spec(const char *s, size_t a, size_t z, struct err *e)
{
    if (a == z)
        return err_set(e, ERR_PARSE, "empty address");
    for (size_t i = a; i < z; i++) {
        if (s[i] == '"')
            i = skip_quoted(s, z, i) - 1;
        else if (is_blank(s[i]))
            return err_set(e, ERR_PARSE, "blank in address \"%.*s\"",
                           (int)(z - a > 80 ? 80 : z - a), s + a);
    }
    return 0;
}

/* One item (already known to be balanced) of an address list. */
static int parse_item(const char *s, size_t n, struct msg_addrlist *out, struct err *e)
{
    size_t a = 0, z = n, lt = SIZE_MAX, gt = SIZE_MAX, first_comment = SIZE_MAX;

    trim(s, &a, &z);
    if (a == z)
        return 0;
    for (size_t i = a; i < z;) {
        char c = s[i];
        if (lt != SIZE_MAX) {
            /* after "<...>" only blanks and comments */
            if (c == '(')
                i = skip_comment(s, z, i);
            else if (is_blank(c))
                i++;
            else
                return err_set(e, ERR_PARSE, "text after '>' in \"%.*s\"",
                               (int)(z - a > 80 ? 80 : z - a), s + a);
        } else if (c == '"') {
            i = skip_quoted(s, z, i);
        } else if (c == '(') {
            if (first_comment == SIZE_MAX)
                first_comment = i;
            i = skip_comment(s, z, i);
        } else if (c == '<') {
            lt = i;
            for (i++; i < z && s[i] != '>';)
                i = s[i] == '"' ? skip_quoted(s, z, i) : i + 1;
            gt = i;
            i++;
        } else {
            i++;
        }
    }
    if (lt != SIZE_MAX) {
        size_t aa = lt + 1, az = gt;
        trim(s, &aa, &az);
        if (check_addr_spec(s, aa, az, e) < 0)
            return -1;
        addrlist_push(out, phrase_text(s + a, lt - a), xstrndup(s + aa, az - aa));
        return 0;
    }
    /* addr-spec, perhaps with comments: the first comment is the name */
    struct buf spec = BUF_INIT;
    for (size_t i = a; i < z;) {
        if (s[i] == '(') {
            i = skip_comment(s, z, i);
            putch(&spec, ' ');
        } else if (s[i] == '"') {
            size_t end = skip_quoted(s, z, i);
            put(&spec, s + i, end - i);
            i = end;
        } else {
            putch(&spec, s[i++]);
        }
    }
    size_t sa = 0, sz = spec.len;
    const char *sp = buf_cstr(&spec);
    trim(sp, &sa, &sz);
    if (check_addr_spec(sp, sa, sz, e) < 0) {
        buf_free(&spec);
        return -1;
    }
    addrlist_push(out, first_comment == SIZE_MAX ? NULL : comment_text(s, z, first_comment),
                  xstrndup(sp + sa, sz - sa));
    buf_free(&spec);
    return 0;
}

int alias_parse_addresses(const char *text, struct msg_addrlist *out, struct err *e)
{
    size_t n = strlen(text), start = 0;
    bool in_q = false, in_angle = false;
    int depth = 0;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? text[i] : ',';
        if (i < n && is_ctl(c) && c != '\t') {
            alias_addrlist_free(out);
            return err_set(e, ERR_PARSE, "control character in an address");
        }
        if (i == n) {
            const char *what = in_q ? "unterminated quoted string"
                               : depth ? "unbalanced parenthesis"
                               : in_angle ? "missing '>'" : NULL;
            if (what) {
                alias_addrlist_free(out);
                return err_set(e, ERR_PARSE, "%s", what);
            }
        }
        if (in_q) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '"')
                in_q = false;
            continue;
        }
        if (depth) {
            if (c == '\\' && i + 1 < n)
                i++;
            else if (c == '(')
                depth++;
            else if (c == ')')
                depth--;
            continue;
        }
        switch (c) {
        case '"':
            in_q = true;
            break;
        case '(':
            depth = 1;
            break;
        case ')':
            alias_addrlist_free(out);
            return err_set(e, ERR_PARSE, "unbalanced parenthesis");
        case '<':
            if (in_angle) {
                alias_addrlist_free(out);
                return err_set(e, ERR_PARSE, "'<' inside '<...>'");
            }
            in_angle = true;
            break;
        case '>':
            if (!in_angle) {
                alias_addrlist_free(out);
                return err_set(e, ERR_PARSE, "'>' without '<'");
            }
            in_angle = false;
            break;
        case ',':
            if (in_angle)
                break;
            if (parse_item(text + start, i - start, out, e) < 0) {
                alias_addrlist_free(out);
                return -1;
            }
            if (out->n > ALIAS_EXPAND_MAX) {
                alias_addrlist_free(out);
                return err_set(e, ERR_LIMIT, "more than %d addresses", ALIAS_EXPAND_MAX);
            }
            start = i + 1;
            break;
        default:
            break;
        }
    }
    return 0;
}

static bool rfc_special(char c)
{
    return strchr("()<>[]:;@\\,.\"", c) != NULL;
}

/* name as a display name: an RFC 5322 quoted string when it holds specials
 * or control characters or starts or ends with a blank. */
static void put_name(struct buf *b, const char *name)
{
    bool quote = is_blank(name[0]) || is_blank(name[strlen(name) - 1]);

    for (const char *p = name; *p && !quote; p++)
        quote = rfc_special(*p) || is_ctl(*p);
    if (!quote) {
        putstr(b, name);
        return;
    }
    putch(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"' || *p == '\\')
            putch(b, '\\');
        putch(b, *p);
    }
    putch(b, '"');
}

char *alias_format_address(const char *name, const char *addr)
{
    struct buf b = BUF_INIT;

    if (!name || !*name)
        return xstrdup(addr);
    put_name(&b, name);
    putstr(&b, " <");
    putstr(&b, addr);
    putch(&b, '>');
    return buf_steal(&b, NULL);
}

/* ---- the table ------------------------------------------------------------------ */

void alias_db_init(struct alias_db *db)
{
    memset(db, 0, sizeof *db);
}

static void alias_entry_free(struct alias *a)
{
    free(a->key);
    free(a->value);
    alias_addrlist_free(&a->addrs);
}

void alias_db_free(struct alias_db *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < db->n; i++)
        alias_entry_free(&db->v[i]);
    free(db->v);
    free(db->slots);
    alias_db_init(db);
}

static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull;

    for (const unsigned char *p = (const unsigned char *)k; *p; p++) {
        unsigned char c = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + 32) : *p;
        h = (h ^ c) * 1099511628211ull;
    }
    return h;
}

/* The slot holding key, or the empty slot where it would go.  n_slots > 0. */
static size_t *find_slot(const struct alias_db *db, const char *key)
{
    size_t mask = db->n_slots - 1, i = (size_t)key_hash(key) & mask;

    while (db->slots[i] && strcasecmp(db->v[db->slots[i] - 1].key, key) != 0)
        i = (i + 1) & mask;
    return &db->slots[i];
}

static void rehash(struct alias_db *db, size_t n_slots)
{
    free(db->slots);
    db->slots = xcalloc(n_slots, sizeof *db->slots);
    db->n_slots = n_slots;
    for (size_t i = 0; i < db->n; i++)
        *find_slot(db, db->v[i].key) = i + 1;
}

const struct alias *alias_lookup(const struct alias_db *db, const char *key)
{
    size_t *slot;

    if (db->n_slots == 0)
        return NULL;
    slot = find_slot(db, key);
    return *slot ? &db->v[*slot - 1] : NULL;
}

const struct alias *alias_reverse(const struct alias_db *db, const char *addr)
{
    for (size_t i = 0; i < db->n; i++)
        if (db->v[i].addrs.n == 1 && strcasecmp(db->v[i].addrs.v[0].addr, addr) == 0)
            return &db->v[i];
    return NULL;
}

int alias_add(struct alias_db *db, const char *key, const char *value, struct err *e)
{
    struct msg_addrlist addrs;
    size_t *slot;

    if (!*key)
        return err_set(e, ERR_INVAL, "alias: empty name");
    for (const char *p = key; *p; p++)
        if (is_blank(*p) || is_ctl(*p))
            return err_set(e, ERR_INVAL, "alias: blank or control character in a name");
    if (alias_parse_addresses(value, &addrs, e) < 0) {
        err_prefix(e, "alias %s", key);
        return -1;
    }
    if (addrs.n == 0) {
        alias_addrlist_free(&addrs);
        return err_set(e, ERR_PARSE, "alias %s: no address", key);
    }
    if ((db->n + 1) * 2 > db->n_slots)
        rehash(db, db->n_slots ? db->n_slots * 2 : 64);
    slot = find_slot(db, key);
    if (*slot) {
        struct alias *a = &db->v[*slot - 1];
        free(a->value);
        alias_addrlist_free(&a->addrs);
        a->value = xstrdup(value);
        a->addrs = addrs;
        return 0;
    }
    if (db->n >= ALIAS_DB_MAX) {
        alias_addrlist_free(&addrs);
        return err_set(e, ERR_LIMIT, "more than %d aliases", ALIAS_DB_MAX);
    }
    db->v = xreallocarray(db->v, db->n + 1, sizeof *db->v);
    db->v[db->n].key = xstrdup(key);
    db->v[db->n].value = xstrdup(value);
    db->v[db->n].addrs = addrs;
    db->n++;
    *slot = db->n;
    return 0;
}

bool alias_remove(struct alias_db *db, const char *key)
{
    size_t *slot, i;

    if (db->n_slots == 0)
        return false;
    slot = find_slot(db, key);
    if (!*slot)
        return false;
    i = *slot - 1;
    alias_entry_free(&db->v[i]);
    memmove(&db->v[i], &db->v[i + 1], (db->n - i - 1) * sizeof *db->v);
    db->n--;
    rehash(db, db->n_slots);
    return true;
}

void alias_add_config(struct alias_db *db, const struct config *cfg, struct rc_diag *diag)
{
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        struct err e;
        err_clear(&e);
        if (alias_add(db, cfg->aliases[i].name, cfg->aliases[i].address, &e) < 0)
            rc_diag_add(diag, "correorc", 0, "%s", e.text);
    }
}

/* ---- the aliases file ------------------------------------------------------------ */

static int skip_group_opts(const struct rc_cmd *cmd, size_t *i, struct err *e)
{
    while (*i < cmd->argc && strcmp(cmd->argv[*i], "-group") == 0) {
        if (*i + 1 >= cmd->argc)
            return err_set(e, ERR_PARSE, "%s: -group needs a name", cmd->argv[0]);
        *i += 2;
    }
    return 0;
}

/* Whether a word at argv[i] stands before a "<addr>" word within the same
 * list item. */
static bool before_angle(const struct rc_cmd *cmd, size_t i)
{
    for (size_t j = i + 1; j < cmd->argc; j++) {
        if (cmd->argv[j][0] == '<')
            return true;
        if (strpbrk(cmd->argv[j], ",@<>"))
            return false;
    }
    return false;
}

/* The address text of argv[from..], as described in alias.h. */
static char *join_value(const struct rc_cmd *cmd, size_t from)
{
    struct buf b = BUF_INIT;

    for (size_t i = from; i < cmd->argc; i++) {
        const char *w = cmd->argv[i];
        bool quote = !strpbrk(w, "<>@\"") && strpbrk(w, " \t,;:()\\") && before_angle(cmd, i);
        if (i > from)
            putch(&b, ' ');
        if (!quote) {
            putstr(&b, w);
            continue;
        }
        putch(&b, '"');
        for (const char *p = w; *p; p++) {
            if (*p == '"' || *p == '\\')
                putch(&b, '\\');
            putch(&b, *p);
        }
        putch(&b, '"');
    }
    return buf_steal(&b, NULL);
}

static int load_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct alias_db *db = ctx;
    size_t i = 1;

    if (strcmp(cmd->argv[0], "alias") == 0) {
        if (skip_group_opts(cmd, &i, e) < 0)
            return -1;
        if (i + 2 > cmd->argc)
            return err_set(e, ERR_PARSE, "alias: expects NAME ADDRESS...");
        char *value = join_value(cmd, i + 1);
        int rc = alias_add(db, cmd->argv[i], value, e);
        free(value);
        return rc;
    }
    if (strcmp(cmd->argv[0], "unalias") == 0) {
        if (skip_group_opts(cmd, &i, e) < 0)
            return -1;
        if (i >= cmd->argc)
            return err_set(e, ERR_PARSE, "unalias: expects NAME...|*");
        for (; i < cmd->argc; i++) {
            if (strcmp(cmd->argv[i], "*") == 0) {
                alias_db_free(db);
                continue;
            }
            (void)alias_remove(db, cmd->argv[i]);
        }
        return 0;
    }
    return err_set(e, ERR_UNSUPPORTED, "%s: ignored in an aliases file", cmd->argv[0]);
}

int alias_load(struct alias_db *db, const char *path, struct rc_diag *diag, struct err *e)
{
    struct rc_loader l;

    if (access(path, F_OK) < 0 && errno == ENOENT)
        return err_set(e, ERR_NOTFOUND, "%s: no such file", path);
    rc_loader_init(&l, load_handler, db, diag);
    return rcfile_load(&l, path, e);
}

/* ---- expansion ------------------------------------------------------------------ */

struct expand {
    const struct alias_db *db;
    const struct alias *stack[ALIAS_DEPTH_MAX];
    size_t depth;
    size_t steps;
    struct msg_addrlist *out;
};

static int loop_error(const struct expand *x, const struct alias *a, struct err *e)
{
    struct buf b = BUF_INIT;
    size_t from = 0;
    int rc;

    while (x->stack[from] != a)
        from++;
    putstr(&b, "alias loop: ");
    for (size_t i = from; i < x->depth; i++) {
        putstr(&b, x->stack[i]->key);
        putstr(&b, " -> ");
    }
    putstr(&b, a->key);
    rc = err_set(e, ERR_PARSE, "%s", buf_cstr(&b));
    buf_free(&b);
    return rc;
}

static int expand_list(struct expand *x, const struct msg_addrlist *l, struct err *e)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct msg_addr *m = &l->v[i];
        const struct alias *a = NULL;

        if (!m->name && !strchr(m->addr, '@'))
            a = alias_lookup(x->db, m->addr);
        if (a && x->depth > 0 && x->stack[x->depth - 1] == a)
            a = NULL;   /* "alias root root": the local address */
        if (a) {
            for (size_t k = 0; k < x->depth; k++)
                if (x->stack[k] == a)
                    return loop_error(x, a, e);
            if (x->depth >= ALIAS_DEPTH_MAX)
                return err_set(e, ERR_LIMIT, "aliases nested more than %d deep",
                               ALIAS_DEPTH_MAX);
            if (++x->steps > ALIAS_EXPAND_STEPS_MAX)
                return err_set(e, ERR_LIMIT, "more than %d alias look-ups",
                               ALIAS_EXPAND_STEPS_MAX);
            x->stack[x->depth++] = a;
            if (expand_list(x, &a->addrs, e) < 0)
                return -1;
            x->depth--;
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < x->out->n && !dup; k++)
            dup = strcasecmp(x->out->v[k].addr, m->addr) == 0;
        if (dup)
            continue;
        if (x->out->n >= ALIAS_EXPAND_MAX)
            return err_set(e, ERR_LIMIT, "more than %d addresses", ALIAS_EXPAND_MAX);
        addrlist_push(x->out, m->name ? xstrdup(m->name) : NULL, xstrdup(m->addr));
    }
    return 0;
}

int alias_expand(const struct alias_db *db, const char *text, struct msg_addrlist *out,
                 struct err *e)
{
    struct msg_addrlist typed;
    struct expand x;
    int rc;

    memset(out, 0, sizeof *out);
    if (alias_parse_addresses(text, &typed, e) < 0)
        return -1;
    memset(&x, 0, sizeof x);
    x.db = db;
    x.out = out;
    rc = expand_list(&x, &typed, e);
    alias_addrlist_free(&typed);
    if (rc < 0)
        alias_addrlist_free(out);
    return rc;
}

/* ---- completion ----------------------------------------------------------------- */

static bool name_match(const char *name, const char *prefix)
{
    if (alias_prefix_match(name, prefix))
        return true;
    for (const char *p = name; *p; p++)
        if (is_blank(*p) && !is_blank(p[1]) && p[1] && alias_prefix_match(p + 1, prefix))
            return true;
    return false;
}

static void cand_push(struct alias_candidates *c, size_t *cap, const char *key,
                      const char *name, const char *addr, char *insert, enum alias_match how)
{
    if (c->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        c->v = xreallocarray(c->v, *cap, sizeof *c->v);
    }
    c->v[c->n].key = xstrdup(key);
    c->v[c->n].name = name ? xstrdup(name) : NULL;
    c->v[c->n].addr = xstrdup(addr);
    c->v[c->n].insert = insert;
    c->v[c->n].how = how;
    c->n++;
}

static void cand_free(struct alias_candidate *c)
{
    free(c->key);
    free(c->name);
    free(c->addr);
    free(c->insert);
}

static int cmp_by_insert(const void *pa, const void *pb)
{
    const struct alias_candidate *a = pa, *b = pb;
    int r = strcmp(a->insert, b->insert);

    if (r)
        return r;
    if (a->how != b->how)
        return a->how < b->how ? -1 : 1;
    return strcmp(a->key, b->key);
}

static int cmp_display(const void *pa, const void *pb)
{
    const struct alias_candidate *a = pa, *b = pb;
    int r;

    if (a->how != b->how)
        return a->how < b->how ? -1 : 1;
    if ((r = alias_fold_cmp(a->insert, b->insert)) != 0)
        return r;
    if ((r = strcmp(a->insert, b->insert)) != 0)
        return r;
    return strcmp(a->key, b->key);
}

void alias_complete(const struct alias_db *db, const char *prefix,
                    struct alias_candidates *out)
{
    size_t cap = 0, w = 0;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < db->n; i++) {
        const struct alias *a = &db->v[i];
        if (alias_prefix_match(a->key, prefix)) {
            bool one = a->addrs.n == 1;
            cand_push(out, &cap, a->key, one ? a->addrs.v[0].name : NULL,
                      one ? a->addrs.v[0].addr : a->value, xstrdup(a->key), ALIAS_MATCH_KEY);
            continue;
        }
        for (size_t k = 0; k < a->addrs.n; k++) {
            const struct msg_addr *m = &a->addrs.v[k];
            enum alias_match how;
            if (m->name && name_match(m->name, prefix))
                how = ALIAS_MATCH_NAME;
            else if (alias_prefix_match(m->addr, prefix))
                how = ALIAS_MATCH_ADDR;
            else
                continue;
            cand_push(out, &cap, a->key, m->name, m->addr,
                      alias_format_address(m->name, m->addr), how);
        }
    }
    if (out->n == 0)
        return;
    /* equal insert texts once: the best match kind, then the first key */
    qsort(out->v, out->n, sizeof *out->v, cmp_by_insert);
    for (size_t i = 0; i < out->n; i++) {
        if (w > 0 && strcmp(out->v[w - 1].insert, out->v[i].insert) == 0)
            cand_free(&out->v[i]);
        else
            out->v[w++] = out->v[i];
    }
    out->n = w;
    qsort(out->v, out->n, sizeof *out->v, cmp_display);
}

void alias_candidates_free(struct alias_candidates *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        cand_free(&c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

char *alias_common_prefix(const struct alias_candidates *c)
{
    const unsigned char **pos;
    const unsigned char *first;
    size_t len = 0;

    if (!c || c->n == 0)
        return xstrdup("");
    pos = XNEWARRAY(const unsigned char *, c->n);
    for (size_t i = 0; i < c->n; i++)
        pos[i] = (const unsigned char *)c->v[i].insert;
    first = pos[0];
    for (;;) {
        uint32_t want = next_folded(&pos[0]);
        bool same = want != 0;
        for (size_t i = 1; i < c->n && same; i++)
            same = next_folded(&pos[i]) == want;
        if (!same)
            break;
        len = (size_t)(pos[0] - first);
    }
    free(pos);
    return xstrndup((const char *)first, len);
}

/* ---- $query_command ------------------------------------------------------------ */

char *alias_query_command(const char *cmd_template, const char *query)
{
    struct buf b = BUF_INIT;
    bool found = false;

    for (const char *p = cmd_template; *p; p++) {
        if (p[0] == '%' && p[1] == 's') {
            mailcap_shell_quote(query, &b);
            found = true;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            putch(&b, '%');
            p++;
        } else {
            putch(&b, *p);
        }
    }
    if (!found) {
        putch(&b, ' ');
        mailcap_shell_quote(query, &b);
    }
    return buf_steal(&b, NULL);
}

void alias_query_results_free(struct alias_query_results *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].addr);
        free(r->v[i].name);
        free(r->v[i].other);
    }
    free(r->v);
    free(r->header);
    memset(r, 0, sizeof *r);
}

static char *field_dup(const char *s, size_t n)
{
    return n ? xstrndup(s, n) : NULL;
}

static void parse_query_output(const char *s, size_t n, struct alias_query_results *r)
{
    size_t cap = 0;
    bool first = true;

    while (n > 0 || first) {
        const char *nl = memchr(s, '\n', n);
        size_t len = nl ? (size_t)(nl - s) : n, next = nl ? len + 1 : n;
        if (len > 0 && s[len - 1] == '\r')
            len--;
        if (first) {
            r->header = xstrndup(s, memchr(s, '\0', len) ? strlen(s) : len);
            first = false;
        } else if (len > 0 && !memchr(s, '\0', len) && r->n < ALIAS_QUERY_RESULTS_MAX) {
            const char *t1 = memchr(s, '\t', len);
            size_t alen = t1 ? (size_t)(t1 - s) : len;
            if (alen > 0) {
                struct alias_query_result q = {xstrndup(s, alen), NULL, NULL};
                if (t1) {
                    const char *rest = t1 + 1, *end = s + len;
                    const char *t2 = memchr(rest, '\t', (size_t)(end - rest));
                    q.name = field_dup(rest, (size_t)((t2 ? t2 : end) - rest));
                    if (t2)
                        q.other = field_dup(t2 + 1, (size_t)(end - t2 - 1));
                }
                if (r->n == cap) {
                    cap = cap ? cap * 2 : 16;
                    r->v = xreallocarray(r->v, cap, sizeof *r->v);
                }
                r->v[r->n++] = q;
            }
        }
        s += next;
        n -= next;
    }
}

int alias_query_timeout(const char *cmd_template, const char *query, unsigned timeout_ms,
                        struct alias_query_results *out, struct err *e)
{
    struct mailcap_exec x;
    struct buf output;
    char *cmd;
    int rc;

    memset(out, 0, sizeof *out);
    if (!cmd_template || !*cmd_template)
        return err_set(e, ERR_INVAL, "$query_command is not set");
    cmd = alias_query_command(cmd_template, query);
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    buf_init(&output, ALIAS_QUERY_OUTPUT_MAX);
    memset(&x, 0, sizeof x);
    x.output = &output;
    x.quiet = true;
    x.timeout_ms = timeout_ms;
    rc = mailcap_exec(argv, &x, e);
    free(cmd);
    if (rc < 0) {
        err_prefix(e, "query command");
        buf_free(&output);
        return -1;
    }
    parse_query_output(output.data ? output.data : "", output.len, out);
    buf_free(&output);
    out->status = x.status;
    if (x.status != 0 && out->n == 0) {
        alias_query_results_free(out);
        return err_set(e, ERR_PROTO, "query command exited with status %d", x.status);
    }
    return 0;
}

int alias_query(const char *cmd_template, const char *query, struct alias_query_results *out,
                struct err *e)
{
    return alias_query_timeout(cmd_template, query, ALIAS_QUERY_TIMEOUT_MS, out, e);
}

/* ---- creating an alias ---------------------------------------------------------- */

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '+' || c == '-';
}

bool alias_valid_key(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > ALIAS_KEY_MAX || key[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!key_char(key[i]))
            return false;
    return true;
}

char *alias_suggest_key(const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t n = at ? (size_t)(at - addr) : strlen(addr);
    char *local = xstrndup(addr, n);
    const unsigned char *p = (const unsigned char *)local;
    struct buf b = BUF_INIT;

    while (*p && b.len < ALIAS_KEY_MAX) {
        const unsigned char *start = p;
        uint32_t c = utf8_next(&p);
        char ch = (char)*start;
        putch(&b, c < 0x80 && key_char(ch) && !(b.len == 0 && ch == '-') ? ch : '_');
    }
    free(local);
    return buf_steal(&b, NULL);
}

static int check_text(const char *what, const char *s, struct err *e)
{
    for (const char *p = s; *p; p++)
        if (is_ctl(*p))
            return err_set(e, ERR_INVAL, "%s: control characters (CR, LF, ...) are not allowed",
                           what);
    if (!valid_utf8(s))
        return err_set(e, ERR_INVAL, "%s: not valid UTF-8", what);
    return 0;
}

/* How alias_line writes the name; alias_create uses the first form that
 * reads back unchanged.  The first two are also read the same way by mutt,
 * which keeps quotes in the address text. */
enum name_form {
    NAME_BARE,      /* John Doe: words that need no quoting of either kind */
    NAME_DQUOTE,    /* "Doe, John": an rc word and an RFC 5322 quoted string */
    NAME_RC_QUOTE,  /* the RFC 5322 form, rc-quoted */
    NAME_FORMS
};

/* Whether name can be written in form f. */
static bool name_form_fits(const char *name, enum name_form f)
{
    if (f == NAME_DQUOTE)
        return !strpbrk(name, "\"\\$`");
    if (f == NAME_RC_QUOTE)
        return true;
    for (const char *p = name; *p; p++)
        if (rfc_special(*p) || (*p == ' ' && (p[1] == ' ' || p[1] == '\0')))
            return false;
    bool ok = true;
    char *copy = xstrdup(name), *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w && ok; w = strtok_r(NULL, " ", &save)) {
        char *q = rc_quote(w);
        ok = strcmp(q, w) == 0;
        free(q);
    }
    free(copy);
    return ok;
}

/* The line alias_create appends (xmalloc'd).  The address goes in <...>
 * with rc's special characters backslash-escaped. */
static char *alias_line(const char *key, const char *name, const char *addr, enum name_form f)
{
    struct buf b = BUF_INIT;

    putstr(&b, "alias ");
    putstr(&b, key);
    putch(&b, ' ');
    if (name && *name) {
        if (f == NAME_BARE) {
            putstr(&b, name);
        } else if (f == NAME_DQUOTE) {
            putch(&b, '"');
            putstr(&b, name);
            putch(&b, '"');
        } else {
            struct buf nb = BUF_INIT;
            put_name(&nb, name);
            char *q = rc_quote(buf_cstr(&nb));
            putstr(&b, q);
            free(q);
            buf_free(&nb);
        }
        putch(&b, ' ');
    }
    putch(&b, '<');
    for (const char *p = addr; *p; p++) {
        if (strchr("\\\"'$`;#", *p))
            putch(&b, '\\');
        putch(&b, *p);
    }
    putstr(&b, ">\n");
    return buf_steal(&b, NULL);
}

/* Whether line reads back as exactly key, name, addr. */
static bool reads_back(const char *line, const char *key, const char *name, const char *addr)
{
    struct alias_db db;
    struct rc_diag diag;
    struct rc_loader l;
    bool ok;

    alias_db_init(&db);
    rc_diag_init(&diag);
    rc_loader_init(&l, load_handler, &db, &diag);
    l.no_source = true;
    rcfile_load_string(&l, "alias", line, strlen(line));
    ok = diag.n == 0 && db.n == 1 && strcmp(db.v[0].key, key) == 0 && db.v[0].addrs.n == 1 &&
         strcmp(db.v[0].addrs.v[0].addr, addr) == 0 &&
         (name && *name ? db.v[0].addrs.v[0].name && strcmp(db.v[0].addrs.v[0].name, name) == 0
                        : db.v[0].addrs.v[0].name == NULL);
    rc_diag_free(&diag);
    alias_db_free(&db);
    return ok;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_parent(const char *path, struct err *e)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? (slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path)))
                      : xstrdup(".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0 || fsync(fd) < 0)
        rc = err_sys(e, "%s: fsync", dir);
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* With fd open and locked: refuse an existing key, then append line. */
static int append_locked(int fd, const char *path, const char *key, const char *line,
                         struct err *e)
{
    struct alias_db db;
    struct stat st;
    int rc;

    if (fstat(fd, &st) < 0)
        return err_sys(e, "%s", path);
    if (!S_ISREG(st.st_mode))
        return err_set(e, ERR_INVAL, "%s: not a regular file", path);
    alias_db_init(&db);
    rc = alias_load(&db, path, NULL, e);
    if (rc == 0 && alias_lookup(&db, key))
        rc = err_set(e, ERR_EXISTS, "alias %s already exists", key);
    alias_db_free(&db);
    if (rc < 0)
        return -1;

    struct buf b = BUF_INIT;
    if (st.st_size > 0) {
        char last;
        ssize_t r;
        do
            r = pread(fd, &last, 1, st.st_size - 1);
        while (r < 0 && errno == EINTR);
        if (r != 1)
            return err_sys(e, "%s: read", path);
        if (last != '\n')
            putch(&b, '\n');
    }
    putstr(&b, line);
    if (write_all(fd, b.data, b.len) < 0 || fsync(fd) < 0) {
        rc = err_sys(e, "%s: write", path);
        int saved = errno;
        if (ftruncate(fd, st.st_size) < 0) {
            /* the error already reported is the one that matters */
        }
        errno = saved;
    }
    buf_free(&b);
    return rc;
}

int alias_create(const char *path, const char *key, const char *name, const char *addr,
                 struct err *e)
{
    char *trimmed = NULL, *line;
    bool created = true;
    int fd, rc;

    if (!alias_valid_key(key))
        return err_set(e, ERR_INVAL, "alias names are letters, digits and . _ + - "
                       "(not first), at most %d", ALIAS_KEY_MAX);
    if (name) {
        size_t a = 0, z = strlen(name);
        if (check_text("name", name, e) < 0)
            return -1;
        trim(name, &a, &z);
        trimmed = xstrndup(name + a, z - a);
    }
    if (check_text("address", addr, e) < 0) {
        free(trimmed);
        return -1;
    }
    if (!*addr || strpbrk(addr, " \t<>")) {
        free(trimmed);
        return err_set(e, ERR_INVAL, "an address must not be empty nor hold blanks, '<' or '>'");
    }
    line = NULL;
    for (int f = 0; f < NAME_FORMS && !line; f++) {
        if (trimmed && *trimmed && !name_form_fits(trimmed, (enum name_form)f))
            continue;
        line = alias_line(key, trimmed, addr, (enum name_form)f);
        if (!reads_back(line, key, trimmed, addr)) {
            free(line);
            line = NULL;
        }
    }
    if (!line) {
        free(trimmed);
        return err_set(e, ERR_INVAL, "this name and address cannot be written as an alias");
    }
    free(trimmed);

    fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = false;
        fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    }
    if (fd < 0) {
        free(line);
        return err_sys(e, "%s", path);
    }
    do
        rc = flock(fd, LOCK_EX);
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        rc = err_sys(e, "%s: lock", path);
    else
        rc = append_locked(fd, path, key, line, e);
    free(line);
    if (rc < 0 && created)
        unlink(path);
    if (close(fd) < 0 && rc == 0)
        rc = err_sys(e, "%s: close", path);
    if (rc == 0 && created)
        rc = fsync_parent(path, e);
    return rc;
}
