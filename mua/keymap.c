/* keymap: key syntax, menus, functions and the per-menu binding tries. */
#include "keymap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "sanitize.h"

/* ---- tables ---------------------------------------------------------- */

#define G   (1u << MENU_GENERIC)
#define I   (1u << MENU_INDEX)
#define P   (1u << MENU_PAGER)
#define B   (1u << MENU_BROWSER)
#define A   (1u << MENU_ATTACH)
#define C   (1u << MENU_COMPOSE)
#define E   (1u << MENU_EDITOR)
#define Q   (1u << MENU_QUERY)
#define ALL ((1u << MENU_COUNT) - 1)

struct op_info {
    const char *name;
    unsigned menus;
    const char *desc;
};

static const struct op_info op_table[OP_COUNT] = {
#define KM_OP_INFO(id, name, menus, desc) [OP_##id] = {name, menus, desc},
    KEYMAP_FUNCTIONS(KM_OP_INFO)
#undef KM_OP_INFO
};

#undef G
#undef I
#undef P
#undef B
#undef A
#undef C
#undef E
#undef Q
#undef ALL

/* mutt's other names for some functions */
static const struct {
    const char *name;
    enum km_op op;
} op_aliases[] = {
    {"tag-message", OP_TAG_ENTRY},
    {"mark-as-new", OP_TOGGLE_NEW},
    {"redraw-screen", OP_REFRESH},
    {"display-headers", OP_DISPLAY_TOGGLE_WEED},
    {"browse-folder", OP_BROWSE_MAILBOXES},
};

static const char *const menu_names[MENU_COUNT] = {
    [MENU_GENERIC] = "generic",
    [MENU_INDEX] = "index",
    [MENU_PAGER] = "pager",
    [MENU_BROWSER] = "browser",
    [MENU_ATTACH] = "attach",
    [MENU_COMPOSE] = "compose",
    [MENU_EDITOR] = "editor",
    [MENU_QUERY] = "query",
};

/* The first name of a value is the one key_name() shows. */
static const struct {
    const char *name;
    int key;
} key_names[] = {
    {"Enter", '\n'},
    {"Return", '\r'},
    {"KeypadEnter", KEYC_KP_ENTER},
    {"Esc", 033},
    {"Tab", '\t'},
    {"BackTab", KEYC_BACKTAB},
    {"Space", ' '},
    {"Backspace", KEYC_BACKSPACE},
    {"Delete", KEYC_DELETE},
    {"Insert", KEYC_INSERT},
    {"Home", KEYC_HOME},
    {"End", KEYC_END},
    {"PageUp", KEYC_PAGEUP},
    {"PageDown", KEYC_PAGEDOWN},
    {"Up", KEYC_UP},
    {"Down", KEYC_DOWN},
    {"Left", KEYC_LEFT},
    {"Right", KEYC_RIGHT},
};

int keymap_menu_parse(const char *name)
{
    for (int i = 0; i < MENU_COUNT; i++)
        if (strcmp(menu_names[i], name) == 0)
            return i;
    return -1;
}

const char *keymap_menu_name(enum km_menu menu)
{
    return (unsigned)menu < MENU_COUNT ? menu_names[menu] : "?";
}

int keymap_op_parse(const char *name)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op_table[i].name, name) == 0)
            return i;
    for (size_t i = 0; i < ARRAY_LEN(op_aliases); i++)
        if (strcmp(op_aliases[i].name, name) == 0)
            return (int)op_aliases[i].op;
    return -1;
}

const char *keymap_op_name(enum km_op op)
{
    return (unsigned)op < OP_COUNT ? op_table[op].name : "?";
}

const char *keymap_op_desc(enum km_op op)
{
    return (unsigned)op < OP_COUNT ? op_table[op].desc : "";
}

bool keymap_op_valid(enum km_menu menu, enum km_op op)
{
    unsigned m;

    if ((unsigned)op >= OP_COUNT || (unsigned)menu >= MENU_COUNT)
        return false;
    m = op_table[op].menus;
    if (m & (1u << menu))
        return true;
    return (m & (1u << MENU_GENERIC)) && menu != MENU_PAGER && menu != MENU_EDITOR;
}

/* ---- key syntax ------------------------------------------------------ */

static int ctrl_of(int c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 1;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 1;
    switch (c) {
    case '@': return 0;
    case '[': return 033;
    case '\\': return 034;
    case ']': return 035;
    case '^': return 036;
    case '_': return 037;
    case '?': return 0177;
    default: return -1;
    }
}

static bool is_name_char(char c)
{
    return c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z');
}

#define ANGLE_NAME_MAX 40

/* At '<': the key of a "<...>" form, 0 with *len = 0 if it is a plain '<',
 * or -1 with *e. */
static int parse_angle(const char *s, bool allow_functions, int *key, size_t *len,
                       struct err *e)
{
    size_t n = 0;
    char name[ANGLE_NAME_MAX + 1];

    *len = 0;
    while (n < ANGLE_NAME_MAX && is_name_char(s[1 + n]))
        n++;
    if (n == 0 || s[1 + n] != '>')
        return 0;
    memcpy(name, s + 1, n);
    name[n] = '\0';
    *len = n + 2;
    for (size_t i = 0; i < ARRAY_LEN(key_names); i++) {
        if (strcasecmp(key_names[i].name, name) == 0) {
            *key = key_names[i].key;
            return 0;
        }
    }
    if ((name[0] == 'F' || name[0] == 'f') && n >= 2 && n <= 3 &&
        strspn(name + 1, "0123456789") == n - 1) {
        int f = atoi(name + 1);
        if (f < 1 || f > KEYC_F_MAX)
            return err_set(e, ERR_PARSE, "<%s>: function keys go from F1 to F%d", name,
                           KEYC_F_MAX);
        *key = KEYC_F(f);
        return 0;
    }
    if (strspn(name, "01234567") == n) {
        long v = n <= 7 ? strtol(name, NULL, 8) : -1;
        if (v < 0 || v >= KEYC_BASE)
            return err_set(e, ERR_PARSE, "<%s>: key code out of range", name);
        *key = (int)v;
        return 0;
    }
    if (allow_functions) {
        int op = keymap_op_parse(name);
        if (op >= 0) {
            *key = KEYC_FUNC + op;
            return 0;
        }
        return err_set(e, ERR_PARSE, "<%s>: no such key or function", name);
    }
    return err_set(e, ERR_PARSE, "<%s>: no such key", name);
}

static int push_key(int **keys, size_t *n, size_t *cap, size_t max, int key, struct err *e)
{
    if (*n >= max)
        return err_set(e, ERR_LIMIT, "key sequence longer than %zu keys", max);
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *keys = xreallocarray(*keys, *cap, sizeof **keys);
    }
    (*keys)[(*n)++] = key;
    return 0;
}

/* One UTF-8 character at s: its length, or -1 with *e. */
static int utf8_key(const char *s, int *key, struct err *e)
{
    uint32_t cp;
    int len = sanitize_utf8_next(s, strlen(s), &cp);

    if (len <= 0)
        return err_set(e, ERR_PARSE, "invalid UTF-8 in key sequence");
    *key = (int)cp;
    return len;
}

/* At '\\': the key and the bytes used. */
static int parse_backslash(const char *s, int *key, size_t *len, struct err *e)
{
    char d = s[1];
    int c;

    *len = 2;
    switch (d) {
    case '\0': *key = '\\'; *len = 1; return 0;
    case 'e': case 'E': *key = 033; return 0;
    case 't': *key = '\t'; return 0;
    case 'n': *key = '\n'; return 0;
    case 'r': *key = '\r'; return 0;
    case 'f': *key = '\f'; return 0;
    case 'C': case 'c':
        if (s[2] == '\0')
            return err_set(e, ERR_PARSE, "\\%c at the end of a key sequence", d);
        c = ctrl_of((unsigned char)s[2]);
        if (c < 0)
            return err_set(e, ERR_PARSE, "\\%c%c: not a control key", d, s[2]);
        *key = c;
        *len = 3;
        return 0;
    default:
        break;
    }
    if (d >= '0' && d <= '7') {
        int v = 0;
        size_t i = 1;
        while (i <= 3 && s[i] >= '0' && s[i] <= '7')
            v = v * 8 + (s[i++] - '0');
        if (v > 0377)
            return err_set(e, ERR_PARSE, "\\%.3s: octal code above \\377", s + 1);
        *key = v;
        *len = i;
        return 0;
    }
    int n = utf8_key(s + 1, key, e);
    if (n < 0)
        return -1;
    *len = 1 + (size_t)n;
    return 0;
}

int keymap_parse_keys(const char *text, bool allow_functions, size_t max,
                      int **keys, size_t *n, struct err *e)
{
    int *out = NULL;
    size_t count = 0, cap = 0;
    const char *s = text;

    *keys = NULL;
    *n = 0;
    if (!text || !*text)
        return err_set(e, ERR_PARSE, "empty key sequence");
    while (*s) {
        int key = 0;
        size_t len = 0;

        if (*s == '<') {
            if (parse_angle(s, allow_functions, &key, &len, e) < 0)
                goto fail;
            if (len == 0) {
                key = '<';
                len = 1;
            }
        } else if (*s == '^' && s[1] == '^') {
            key = '^';
            len = 2;
        } else if (*s == '^' && s[1] && ctrl_of((unsigned char)s[1]) >= 0) {
            key = ctrl_of((unsigned char)s[1]);
            len = 2;
        } else if (*s == '\\') {
            if (parse_backslash(s, &key, &len, e) < 0)
                goto fail;
        } else {
            int l = utf8_key(s, &key, e);
            if (l < 0)
                goto fail;
            len = (size_t)l;
        }
        if (push_key(&out, &count, &cap, max, key, e) < 0)
            goto fail;
        s += len;
    }
    *keys = out;
    *n = count;
    return 0;
fail:
    free(out);
    return -1;
}

static size_t utf8_put(char *p, uint32_t cp)
{
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char)(0xc0 | (cp >> 6));
        p[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (char)(0xe0 | (cp >> 12));
        p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        p[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    p[0] = (char)(0xf0 | (cp >> 18));
    p[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    p[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    p[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

const char *key_name(int key, char *buf)
{
    for (size_t i = 0; i < ARRAY_LEN(key_names); i++) {
        if (key_names[i].key == key) {
            snprintf(buf, KEY_NAME_MAX, "<%s>", key_names[i].name);
            return buf;
        }
    }
    if (key >= KEYC_F(1) && key <= KEYC_F(KEYC_F_MAX))
        snprintf(buf, KEY_NAME_MAX, "<F%d>", key - KEYC_F0);
    else if (key >= KEYC_FUNC && key < KEYC_FUNC + OP_COUNT)
        snprintf(buf, KEY_NAME_MAX, "<%s>", op_table[key - KEYC_FUNC].name);
    else if (key == 036 || (key >= 0x80 && key <= 0x9f))
        snprintf(buf, KEY_NAME_MAX, "\\%03o", (unsigned)key);
    else if (key >= 0 && key < 0x20)
        snprintf(buf, KEY_NAME_MAX, "^%c", key + '@');
    else if (key == 0x7f)
        snprintf(buf, KEY_NAME_MAX, "^?");
    else if (key < 0 || key >= KEYC_BASE || (key >= 0xd800 && key <= 0xdfff))
        snprintf(buf, KEY_NAME_MAX, "<?>");
    else
        buf[utf8_put(buf, (uint32_t)key)] = '\0';
    return buf;
}

char *keymap_keys_text(const int *keys, size_t n)
{
    struct buf b = BUF_INIT;
    char name[KEY_NAME_MAX];
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        bool last = i + 1 == n;
        if (!last && keys[i] == '<')
            rc = buf_puts(&b, "\\<");
        else if (!last && keys[i] == '\\')
            rc = buf_puts(&b, "\\\\");
        else if (!last && keys[i] == '^')
            rc = buf_puts(&b, "^^");
        else
            rc = buf_puts(&b, key_name(keys[i], name));
    }
    if (rc < 0)
        die("keymap_keys_text: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

/* ---- the tries ------------------------------------------------------- */

struct km_node {
    int key;
    struct km_binding *b;
    struct km_node *kids;     /* sorted by key */
    size_t n, cap;
};

struct keymap {
    struct km_node root[MENU_COUNT];
};

static void binding_free(struct km_binding *b)
{
    if (!b)
        return;
    free(b->macro);
    free(b->macro_text);
    free(b->desc);
    free(b);
}

static void node_clear(struct km_node *node)
{
    for (size_t i = 0; i < node->n; i++)
        node_clear(&node->kids[i]);
    free(node->kids);
    binding_free(node->b);
    node->kids = NULL;
    node->b = NULL;
    node->n = node->cap = 0;
}

static size_t child_pos(const struct km_node *node, int key, bool *found)
{
    size_t lo = 0, hi = node->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (node->kids[mid].key == key) {
            *found = true;
            return mid;
        }
        if (node->kids[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct km_node *child_find(const struct km_node *node, int key)
{
    bool found;
    size_t i = child_pos(node, key, &found);
    return found ? &node->kids[i] : NULL;
}

static struct km_node *child_get(struct km_node *node, int key)
{
    bool found;
    size_t i = child_pos(node, key, &found);

    if (found)
        return &node->kids[i];
    if (node->n == node->cap) {
        node->cap = node->cap ? node->cap * 2 : 4;
        node->kids = xreallocarray(node->kids, node->cap, sizeof *node->kids);
    }
    memmove(&node->kids[i + 1], &node->kids[i], (node->n - i) * sizeof *node->kids);
    memset(&node->kids[i], 0, sizeof node->kids[i]);
    node->kids[i].key = key;
    node->n++;
    return &node->kids[i];
}

struct keymap *keymap_new(void)
{
    return XNEW(struct keymap);
}

void keymap_clear(struct keymap *km)
{
    for (int m = 0; m < MENU_COUNT; m++)
        node_clear(&km->root[m]);
}

void keymap_free(struct keymap *km)
{
    if (!km)
        return;
    keymap_clear(km);
    free(km);
}

/* Install b at keys: shorter bindings on the path and longer ones below are
 * replaced. */
static void insert(struct km_node *root, const int *keys, size_t n, struct km_binding *b)
{
    struct km_node *node = root;

    for (size_t i = 0; i < n; i++) {
        if (node != root && node->b) {
            binding_free(node->b);
            node->b = NULL;
        }
        node = child_get(node, keys[i]);
    }
    for (size_t i = 0; i < node->n; i++)
        node_clear(&node->kids[i]);
    free(node->kids);
    node->kids = NULL;
    node->n = node->cap = 0;
    binding_free(node->b);
    node->b = b;
}

static int bind_keys(struct keymap *km, enum km_menu menu, const char *keys,
                     struct km_binding *b, struct err *e)
{
    int *seq;
    size_t n;

    if ((unsigned)menu >= MENU_COUNT) {
        binding_free(b);
        return err_set(e, ERR_INVAL, "no such menu");
    }
    if (keymap_parse_keys(keys, false, KEYMAP_SEQ_MAX, &seq, &n, e) < 0) {
        binding_free(b);
        return -1;
    }
    insert(&km->root[menu], seq, n, b);
    free(seq);
    return 0;
}

int keymap_bind(struct keymap *km, enum km_menu menu, const char *keys, enum km_op op,
                struct err *e)
{
    struct km_binding *b;

    if ((unsigned)op >= OP_COUNT)
        return err_set(e, ERR_INVAL, "no such function");
    if (!keymap_op_valid(menu, op))
        return err_set(e, ERR_INVAL, "%s: no such function in menu %s", op_table[op].name,
                       keymap_menu_name(menu));
    b = XNEW(struct km_binding);
    b->kind = KM_FUNCTION;
    b->op = op;
    return bind_keys(km, menu, keys, b, e);
}

int keymap_bind_macro(struct keymap *km, enum km_menu menu, const char *keys,
                      const char *sequence, const char *desc, struct err *e)
{
    struct km_binding *b;
    int *seq;
    size_t n;

    if (keymap_parse_keys(sequence, true, KEYMAP_MACRO_MAX, &seq, &n, e) < 0) {
        err_prefix(e, "macro");
        return -1;
    }
    b = XNEW(struct km_binding);
    b->kind = KM_MACRO;
    b->op = OP_NOOP;
    b->macro = seq;
    b->macro_len = n;
    b->macro_text = xstrdup(sequence);
    b->desc = desc && *desc ? xstrdup(desc) : NULL;
    return bind_keys(km, menu, keys, b, e);
}

/* Remove bindings at or under node (macros only if asked); true if the node
 * is left empty. */
static bool prune_all(struct km_node *node, bool macros_only)
{
    size_t w = 0;

    for (size_t i = 0; i < node->n; i++) {
        if (prune_all(&node->kids[i], macros_only))
            node_clear(&node->kids[i]);
        else
            node->kids[w++] = node->kids[i];
    }
    node->n = w;
    if (node->b && (!macros_only || node->b->kind == KM_MACRO)) {
        binding_free(node->b);
        node->b = NULL;
    }
    return node->n == 0 && !node->b;
}

/* Remove the binding at keys[depth..n) below node; true if node is left
 * empty. */
static bool prune_path(struct km_node *node, const int *keys, size_t n, size_t depth,
                       bool macros_only)
{
    if (depth == n) {
        if (node->b && (!macros_only || node->b->kind == KM_MACRO)) {
            binding_free(node->b);
            node->b = NULL;
        }
        return node->n == 0 && !node->b;
    }
    bool found;
    size_t i = child_pos(node, keys[depth], &found);
    if (!found)
        return false;
    if (prune_path(&node->kids[i], keys, n, depth + 1, macros_only)) {
        node_clear(&node->kids[i]);
        memmove(&node->kids[i], &node->kids[i + 1], (node->n - i - 1) * sizeof *node->kids);
        node->n--;
    }
    return node->n == 0 && !node->b;
}

int keymap_unbind(struct keymap *km, enum km_menu menu, const char *keys, bool macros_only,
                  struct err *e)
{
    int *seq;
    size_t n;

    if ((unsigned)menu >= MENU_COUNT)
        return err_set(e, ERR_INVAL, "no such menu");
    if (!keys) {
        prune_all(&km->root[menu], macros_only);
        return 0;
    }
    if (keymap_parse_keys(keys, false, KEYMAP_SEQ_MAX, &seq, &n, e) < 0)
        return -1;
    prune_path(&km->root[menu], seq, n, 0, macros_only);
    free(seq);
    return 0;
}

static enum km_result walk(const struct km_node *root, const int *keys, size_t n,
                           const struct km_binding **out)
{
    const struct km_node *node = root;

    for (size_t i = 0; i < n; i++) {
        node = child_find(node, keys[i]);
        if (!node)
            return KM_NONE;
        if (node->b) {
            if (i + 1 != n)
                return KM_NONE;
            if (out)
                *out = node->b;
            return KM_FOUND;
        }
    }
    return node->n > 0 ? KM_PREFIX : KM_NONE;
}

static bool falls_back(enum km_menu menu)
{
    return menu != MENU_GENERIC && menu != MENU_EDITOR;
}

/* Is there a binding usable in menu at or below node? */
static bool usable_below(const struct km_node *node, enum km_menu menu)
{
    if (node->b && (node->b->kind == KM_MACRO || keymap_op_valid(menu, node->b->op)))
        return true;
    for (size_t i = 0; i < node->n; i++)
        if (usable_below(&node->kids[i], menu))
            return true;
    return false;
}

/* The node at keys[0..n) under root, or NULL. */
static const struct km_node *node_at(const struct km_node *root, const int *keys, size_t n)
{
    const struct km_node *node = root;

    for (size_t i = 0; i < n && node; i++)
        node = child_find(node, keys[i]);
    return node;
}

enum km_result keymap_lookup(const struct keymap *km, enum km_menu menu,
                             const int *keys, size_t n, const struct km_binding **out)
{
    const struct km_binding *b = NULL;
    enum km_result r;

    if (out)
        *out = NULL;
    if ((unsigned)menu >= MENU_COUNT || n == 0)
        return KM_NONE;
    r = walk(&km->root[menu], keys, n, &b);
    if (r == KM_NONE && falls_back(menu)) {
        r = walk(&km->root[MENU_GENERIC], keys, n, &b);
        if (r == KM_FOUND && b->kind == KM_FUNCTION && !keymap_op_valid(menu, b->op))
            r = KM_NONE;
        /* a generic prefix counts only if it leads to something usable here */
        if (r == KM_PREFIX) {
            const struct km_node *g = node_at(&km->root[MENU_GENERIC], keys, n);
            if (!g || !usable_below(g, menu))
                r = KM_NONE;
        }
    }
    if (r == KM_FOUND && out)
        *out = b;
    return r;
}

/* ---- help ------------------------------------------------------------ */

struct help_list {
    struct km_help *v;
    size_t n, cap;
};

static void help_add(struct help_list *h, enum km_help_kind kind, char *keys,
                     const struct km_binding *b, enum km_op op)
{
    struct km_help *it;

    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 32;
        h->v = xreallocarray(h->v, h->cap, sizeof *h->v);
    }
    it = &h->v[h->n++];
    it->kind = kind;
    it->keys = keys;
    if (b && b->kind == KM_MACRO) {
        it->is_macro = true;
        it->function = xstrdup(b->macro_text);
        it->desc = xstrdup(b->desc ? b->desc : "");
    } else {
        it->is_macro = false;
        it->function = xstrdup(op_table[op].name);
        it->desc = xstrdup(op_table[op].desc);
    }
}

/* True if the generic binding at keys[0..n) is reached from menu. */
static bool generic_reaches(const struct keymap *km, enum km_menu menu, const int *keys,
                            size_t n)
{
    for (size_t i = 1; i <= n; i++) {
        enum km_result r = walk(&km->root[menu], keys, i, NULL);
        if (r == KM_FOUND || (i == n && r != KM_NONE))
            return false;
    }
    return true;
}

struct describe_ctx {
    const struct keymap *km;
    enum km_menu menu;        /* the menu being described */
    enum km_help_kind kind;   /* MENU or GENERIC pass */
    struct help_list *out;
    bool *bound;              /* [OP_COUNT] */
    int path[KEYMAP_SEQ_MAX];
};

static void describe_node(struct describe_ctx *c, const struct km_node *node, size_t depth)
{
    for (size_t i = 0; i < node->n; i++) {
        const struct km_node *kid = &node->kids[i];
        size_t len = depth + 1;

        if (depth >= KEYMAP_SEQ_MAX)
            return;
        c->path[depth] = kid->key;
        if (kid->b) {
            const struct km_binding *b = kid->b;
            bool show = !(b->kind == KM_FUNCTION && b->op == OP_NOOP);
            if (show && c->kind == KM_HELP_GENERIC)
                show = (b->kind == KM_MACRO || keymap_op_valid(c->menu, b->op)) &&
                       generic_reaches(c->km, c->menu, c->path, len);
            if (show) {
                if (b->kind == KM_FUNCTION)
                    c->bound[b->op] = true;
                help_add(c->out, c->kind, keymap_keys_text(c->path, len), b, b->op);
            }
        }
        describe_node(c, kid, len);
    }
}

void keymap_describe(const struct keymap *km, enum km_menu menu,
                     struct km_help **out, size_t *n)
{
    struct help_list h = {NULL, 0, 0};
    bool bound[OP_COUNT];
    struct describe_ctx c;

    *out = NULL;
    *n = 0;
    if ((unsigned)menu >= MENU_COUNT)
        return;
    memset(bound, 0, sizeof bound);
    memset(&c, 0, sizeof c);
    c.km = km;
    c.menu = menu;
    c.out = &h;
    c.bound = bound;
    c.kind = KM_HELP_MENU;
    describe_node(&c, &km->root[menu], 0);
    if (falls_back(menu)) {
        c.kind = KM_HELP_GENERIC;
        describe_node(&c, &km->root[MENU_GENERIC], 0);
    }
    for (int op = 0; op < OP_COUNT; op++)
        if (op != OP_NOOP && !bound[op] && keymap_op_valid(menu, (enum km_op)op))
            help_add(&h, KM_HELP_UNBOUND, NULL, NULL, (enum km_op)op);
    *out = h.v;
    *n = h.n;
}

void keymap_help_free(struct km_help *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].keys);
        free(h[i].function);
        free(h[i].desc);
    }
    free(h);
}

/* ---- commands -------------------------------------------------------- */

bool keymap_is_command(const char *name)
{
    return strcmp(name, "bind") == 0 || strcmp(name, "macro") == 0 ||
           strcmp(name, "unbind") == 0 || strcmp(name, "unmacro") == 0;
}

/* "index,pager" or "*" (if allowed) into a menu bit set. */
static int parse_menus(const char *list, bool allow_star, unsigned *menus, struct err *e)
{
    char *copy, *save = NULL, *tok;
    int rc = 0;

    *menus = 0;
    if (allow_star && strcmp(list, "*") == 0) {
        *menus = (1u << MENU_COUNT) - 1;
        return 0;
    }
    copy = xstrdup(list);
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int m = keymap_menu_parse(tok);
        if (m < 0) {
            rc = err_set(e, ERR_INVAL, "%s: no such menu", tok);
            break;
        }
        *menus |= 1u << m;
    }
    free(copy);
    if (rc == 0 && *menus == 0)
        rc = err_set(e, ERR_INVAL, "no menu given");
    return rc;
}

static int cmd_bind(struct keymap *km, const struct rc_cmd *cmd, struct err *e)
{
    unsigned menus;
    int op, rc = 0;
    struct err first;

    if (cmd->argc != 4)
        return err_set(e, ERR_PARSE, "bind: expects MENU KEY FUNCTION");
    if (parse_menus(cmd->argv[1], false, &menus, e) < 0)
        return -1;
    op = keymap_op_parse(cmd->argv[3]);
    if (op < 0)
        return err_set(e, ERR_INVAL, "%s: no such function", cmd->argv[3]);
    err_clear(&first);
    for (int m = 0; m < MENU_COUNT; m++) {
        struct err one;
        if (!(menus & (1u << m)))
            continue;
        if (keymap_bind(km, (enum km_menu)m, cmd->argv[2], (enum km_op)op, &one) < 0 &&
            rc == 0) {
            first = one;
            rc = -1;
        }
    }
    if (rc < 0 && e)
        *e = first;
    return rc;
}

static int cmd_macro(struct keymap *km, const struct rc_cmd *cmd, struct err *e)
{
    unsigned menus;
    int rc = 0;
    struct err first;

    if (cmd->argc != 4 && cmd->argc != 5)
        return err_set(e, ERR_PARSE, "macro: expects MENU KEY SEQUENCE [DESCRIPTION]");
    if (parse_menus(cmd->argv[1], false, &menus, e) < 0)
        return -1;
    err_clear(&first);
    for (int m = 0; m < MENU_COUNT; m++) {
        if (!(menus & (1u << m)))
            continue;
        struct err one;
        if (keymap_bind_macro(km, (enum km_menu)m, cmd->argv[2], cmd->argv[3],
                              cmd->argc == 5 ? cmd->argv[4] : NULL, &one) < 0 && rc == 0) {
            first = one;
            rc = -1;
        }
    }
    if (rc < 0 && e)
        *e = first;
    return rc;
}

static int cmd_unbind(struct keymap *km, const struct rc_cmd *cmd, bool macros_only,
                      struct err *e)
{
    unsigned menus;

    if (cmd->argc != 2 && cmd->argc != 3)
        return err_set(e, ERR_PARSE, "%s: expects MENU [KEY]", cmd->argv[0]);
    if (parse_menus(cmd->argv[1], true, &menus, e) < 0)
        return -1;
    for (int m = 0; m < MENU_COUNT; m++) {
        if ((menus & (1u << m)) &&
            keymap_unbind(km, (enum km_menu)m, cmd->argc == 3 ? cmd->argv[2] : NULL,
                          macros_only, e) < 0)
            return -1;
    }
    return 0;
}

int keymap_command(struct keymap *km, const struct rc_cmd *cmd, struct err *e)
{
    const char *name = cmd->argv[0];

    if (strcmp(name, "bind") == 0)
        return cmd_bind(km, cmd, e);
    if (strcmp(name, "macro") == 0)
        return cmd_macro(km, cmd, e);
    if (strcmp(name, "unbind") == 0)
        return cmd_unbind(km, cmd, false, e);
    if (strcmp(name, "unmacro") == 0)
        return cmd_unbind(km, cmd, true, e);
    return err_set(e, ERR_PARSE, "unknown command %s", name);
}

static int file_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    if (!keymap_is_command(cmd->argv[0]))
        return err_set(e, ERR_PARSE, "%s: not allowed in a keymap file", cmd->argv[0]);
    return keymap_command(ctx, cmd, e);
}

int keymap_load(struct keymap *km, const char *path, struct rc_diag *diag, struct err *e)
{
    struct rc_loader l;

    rc_loader_init(&l, file_handler, km, diag);
    l.no_source = true;
    return rcfile_load(&l, path, e);
}

void keymap_bind_fallback(struct keymap *km)
{
    static const struct {
        enum km_menu menu;
        const char *keys;
        enum km_op op;
    } fb[] = {
        {MENU_GENERIC, "j", OP_NEXT_ENTRY},
        {MENU_GENERIC, "<Down>", OP_NEXT_ENTRY},
        {MENU_GENERIC, "k", OP_PREVIOUS_ENTRY},
        {MENU_GENERIC, "<Up>", OP_PREVIOUS_ENTRY},
        {MENU_GENERIC, "<PageDown>", OP_NEXT_PAGE},
        {MENU_GENERIC, "<PageUp>", OP_PREVIOUS_PAGE},
        {MENU_GENERIC, "<Enter>", OP_SELECT_ENTRY},
        {MENU_GENERIC, "<Return>", OP_SELECT_ENTRY},
        {MENU_GENERIC, "q", OP_EXIT},
        {MENU_GENERIC, "?", OP_HELP},
        {MENU_GENERIC, ":", OP_ENTER_COMMAND},
        {MENU_GENERIC, "/", OP_SEARCH},
        {MENU_INDEX, "<Enter>", OP_DISPLAY_MESSAGE},
        {MENU_INDEX, "<Return>", OP_DISPLAY_MESSAGE},
        {MENU_INDEX, "q", OP_QUIT},
        {MENU_INDEX, "d", OP_DELETE_MESSAGE},
        {MENU_INDEX, "u", OP_UNDELETE_MESSAGE},
        {MENU_PAGER, "<Space>", OP_NEXT_PAGE},
        {MENU_PAGER, "-", OP_PREVIOUS_PAGE},
        {MENU_PAGER, "<Enter>", OP_NEXT_LINE},
        {MENU_PAGER, "<Return>", OP_NEXT_LINE},
        {MENU_PAGER, "q", OP_EXIT},
        {MENU_ATTACH, "<Enter>", OP_VIEW_ATTACH},
        {MENU_ATTACH, "<Return>", OP_VIEW_ATTACH},
        {MENU_EDITOR, "<Backspace>", OP_BACKSPACE},
        {MENU_EDITOR, "^H", OP_BACKSPACE},
        {MENU_EDITOR, "^?", OP_BACKSPACE},
        {MENU_EDITOR, "<Left>", OP_BACKWARD_CHAR},
        {MENU_EDITOR, "<Right>", OP_FORWARD_CHAR},
        {MENU_EDITOR, "<Tab>", OP_COMPLETE},
    };

    for (size_t i = 0; i < ARRAY_LEN(fb); i++)
        if (keymap_bind(km, fb[i].menu, fb[i].keys, fb[i].op, NULL) < 0)
            die("keymap: a built-in binding is invalid");
}
