/* app: the interactive client: screens, key loops and their functions. */
#include "app.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compose.h"
#include "draft.h"
#include "editor.h"
#include "fetch.h"
#include "imap.h"
#include "imap_folders.h"
#include "format.h"
#include "mailbox.h"
#include "mailcap.h"
#include "maildir.h"
#include "message.h"
#include "msg.h"
#include "outbox.h"
#include "pattern.h"
#include "render.h"
#include "sanitize.h"
#include "sort.h"
#include "store.h"
#include "ui.h"
#include "view.h"
#include "xalloc.h"

struct app {
    struct config *cfg;
    struct mailbox *mb;
    struct view view;
    bool readonly;
    size_t top;                  /* first index line on screen */

    int *pending;                /* keys to replay (macros), oldest first */
    size_t n_pending, pending_pos, pending_cap;

    struct pattern *search;
    char *search_text;
    bool search_back;
    bool tag_prefix;
    bool done;
    int status;                  /* exit status */
    char last_error[ERR_TEXT_MAX];  /* why the last open failed */
    int last_key;                /* the key that completed the last function */
    time_t last_check;

    /* `mailboxes` on IMAP servers: STATUS on the new-mail timer */
    time_t last_poll;
    struct imap_poll *polls;
    size_t n_polls;
    struct imap_poll_conn *poll_conns;
    size_t n_poll_conns;
};

struct imap_poll {
    char *url;
    bool known;
    uint32_t messages, recent;
};

struct imap_poll_conn {
    char *account;
    struct imap_conn *c;
    time_t failed_at;            /* 0, or when connecting last failed */
};

/* ---- small helpers -------------------------------------------------------- */

static const struct store_msg *cur_smsg(struct app *a, uint32_t msg)
{
    return store_get(&a->mb->store, msg);
}

static const char *sstr(struct app *a, uint32_t off)
{
    return store_str(&a->mb->store, off);
}

static int index_rows(void)
{
    int rows = ui_rows() - 3;   /* help line, status, message line */
    return rows > 1 ? rows : 1;
}

static void push_keys(struct app *a, const int *keys, size_t n)
{
    /* Insert before what is still pending: a macro runs before the rest. */
    size_t rest = a->n_pending - a->pending_pos;
    size_t need = rest + n;

    if (need > KEYMAP_MACRO_MAX * 4) {
        ui_error("Macro loop detected.");
        a->n_pending = a->pending_pos = 0;
        return;
    }
    int *v = xmalloc((need ? need : 1) * sizeof *v);
    memcpy(v, keys, n * sizeof *v);
    if (rest)
        memcpy(v + n, a->pending + a->pending_pos, rest * sizeof *v);
    free(a->pending);
    a->pending = v;
    a->n_pending = need;
    a->pending_cap = need;
    a->pending_pos = 0;
}

/* A key from the macro queue, else from the terminal.  timeout_ms for the
 * terminal; returns UI_KEY_TIMEOUT on timeout. */
static int next_key(struct app *a, int timeout_ms)
{
    if (a->pending_pos < a->n_pending)
        return a->pending[a->pending_pos++];
    a->n_pending = a->pending_pos = 0;
    return ui_getkey(timeout_ms);
}

/* Read keys until they name a function of menu.  Returns the op, or -1 on
 * timeout (new-mail check), or -2 on resize. */
static int read_op(struct app *a, enum km_menu menu, int timeout_ms)
{
    int keys[KEYMAP_SEQ_MAX];
    size_t n = 0;

    for (;;) {
        int k = next_key(a, n ? -1 : timeout_ms);
        if (k == UI_KEY_TIMEOUT)
            return n ? (int)OP_NOOP : -1;
        if (k == UI_KEY_RESIZE)
            return -2;
        if (k >= KEYC_FUNC && k < KEYC_FUNC + OP_COUNT)
            return k - KEYC_FUNC;
        if (k == 0x1a && n == 0) {   /* ^Z: suspend */
            ui_suspend();
            kill(getpid(), SIGTSTP);
            ui_resume();
            return -2;
        }
        keys[n++] = k;
        a->last_key = k;
        const struct km_binding *b = NULL;
        enum km_result r = keymap_lookup(a->cfg->keymap, menu, keys, n, &b);
        if (r == KM_FOUND) {
            if (b->kind == KM_MACRO) {
                push_keys(a, b->macro, b->macro_len);
                n = 0;
                continue;
            }
            return (int)b->op;
        }
        if (r == KM_PREFIX && n < KEYMAP_SEQ_MAX)
            continue;
        char name[KEY_NAME_MAX];
        ui_error("Key is not bound.  Press '?' for help. (%s)", key_name(keys[0], name));
        return OP_NOOP;
    }
}

static void sort_from_config(struct app *a)
{
    struct config_sort s = a->cfg->opt.sort, aux = a->cfg->opt.sort_aux;
    static const enum sort_key map[CFG_SORT_KEY_COUNT] = {
        [CFG_SORT_DATE] = SORT_DATE, [CFG_SORT_DATE_RECEIVED] = SORT_RECEIVED,
        [CFG_SORT_FROM] = SORT_FROM, [CFG_SORT_TO] = SORT_FROM,
        [CFG_SORT_SUBJECT] = SORT_SUBJECT, [CFG_SORT_SIZE] = SORT_SIZE,
        [CFG_SORT_THREADS] = SORT_THREADS, [CFG_SORT_UNSORTED] = SORT_UNSORTED,
        [CFG_SORT_ALPHA] = SORT_SUBJECT, [CFG_SORT_COUNT] = SORT_SIZE, [CFG_SORT_NEW] = SORT_DATE,
    };
    a->view.sort.primary = (struct sort_order){map[s.key], s.reverse, s.last};
    a->view.sort.aux = (struct sort_order){map[aux.key], aux.reverse, aux.last};
    if (a->view.sort.aux.key == SORT_THREADS)
        a->view.sort.aux.key = SORT_DATE;
    a->view.thread_opts.strict_subject = a->cfg->opt.strict_threads;
    a->view.ascii_tree = a->cfg->opt.ascii_chars;
}

/* ---- opening mailboxes ------------------------------------------------------ */

struct progress {
    const char *name;
    time_t last;
};

static void on_progress(void *ctx, size_t done, size_t total)
{
    struct progress *p = ctx;
    char line[256];

    snprintf(line, sizeof line, "Reading %s... %zu/%zu", p->name, done, total);
    ui_draw(ui_rows() - 1, 0, line, strlen(line), THEME_MESSAGE, 0, true);
    ui_refresh();
}

static void close_mailbox(struct app *a)
{
    if (!a->mb)
        return;
    view_free(&a->view);
    mailbox_close(a->mb);
    a->mb = NULL;
}

static int open_mailbox(struct app *a, const char *path, bool readonly)
{
    struct mailbox_open_opts o = {readonly ? MAILBOX_READONLY : 0u, NULL};
    struct mailbox *mb;
    struct err e;
    char *hc = NULL;

    if (a->cfg->opt.header_cache && *a->cfg->opt.header_cache)
        o.hcache_dir = hc = xstrdup(a->cfg->opt.header_cache);
    if (imap_url_is(path))
        imap_settings_from_config(a->cfg);   /* as the configuration is now */
    if (mailbox_open_opts(path, &o, &mb, &e) < 0) {
        free(hc);
        ui_error("%s", e.text);
        snprintf(a->last_error, sizeof a->last_error, "%s", e.text);
        return -1;
    }
    free(hc);
    struct progress p = {mb->name, 0};
    if (mailbox_load(mb, on_progress, &p, &e) < 0) {
        ui_error("%s", e.text);
        snprintf(a->last_error, sizeof a->last_error, "%s", e.text);
        mailbox_close(mb);
        return -1;
    }
    close_mailbox(a);
    a->mb = mb;
    a->readonly = readonly || mb->readonly;
    view_init(&a->view, mb);
    sort_from_config(a);
    if (view_rebuild(&a->view, &e) < 0)
        ui_error("%s", e.text);
    a->view.cursor = a->view.n_lines ? a->view.n_lines - 1 : 0;
    /* Like mutt: start on the first unread message if there is one. */
    for (size_t i = 0; i < a->view.n_lines; i++) {
        if (!(cur_smsg(a, view_msg_at(&a->view, i))->flags & MSG_SEEN)) {
            a->view.cursor = i;
            break;
        }
    }
    a->top = 0;
    a->last_check = time(NULL);
    if (mb->has_warning)
        ui_error("%s", mb->warning.text);
    else
        ui_clear_message();
    return 0;
}

/* ---- the index ----------------------------------------------------------- */

struct line_ctx {
    struct app *a;
    size_t line;
    uint32_t msg;
    const char *tree;
};

static void human_size(uint64_t n, struct buf *out)
{
    int rc;
    if (n < 1024)
        rc = buf_printf(out, "%u", (unsigned)n);
    else if (n < 10 * 1024)
        rc = buf_printf(out, "%.1fK", (double)n / 1024);
    else if (n < 1024 * 1024)
        rc = buf_printf(out, "%uK", (unsigned)((n + 512) / 1024));
    else
        rc = buf_printf(out, "%.1fM", (double)n / (1024 * 1024));
    (void)rc;
}

static char status_char(unsigned f)
{
    if (f & MSG_DELETED)
        return 'D';
    if (f & MSG_TRASHED)
        return 'd';
    if (!(f & MSG_SEEN))
        return (f & MSG_NEW) ? 'N' : 'O';
    if (f & MSG_REPLIED)
        return 'r';
    return ' ';
}

static int put(struct buf *out, const char *s)
{
    return buf_puts(out, s) < 0 ? -1 : 0;
}

static int date_expand(struct app *a, time_t when, const char *fmt, size_t fmtlen, struct buf *out)
{
    char f[256], text[256];
    struct tm tm;

    (void)a;
    if (when == 0)
        return 0;
    if (fmtlen >= sizeof f)
        fmtlen = sizeof f - 1;
    memcpy(f, fmt, fmtlen);
    f[fmtlen] = '\0';
    const char *use = f[0] == '!' ? f + 1 : f;
    if (!localtime_r(&when, &tm))
        return 0;
    size_t n = strftime(text, sizeof text, use, &tm);
    return buf_append(out, text, n) < 0 ? -1 : 0;
}

static int index_cb(void *vctx, char op, const char *arg, size_t arglen, bool *truth,
                    struct buf *out)
{
    struct line_ctx *c = vctx;
    struct app *a = c->a;
    const struct store_msg *m = cur_smsg(a, c->msg);
    unsigned f = m->flags;

    if (truth) {
        switch (op) {
        case 'l': *truth = false; return 0;                /* line counts: not kept */
        case 'M': *truth = c->line < a->view.n_lines && a->view.lines[c->line].hidden_count > 0;
            return 0;
        case 'g': *truth = *sstr(a, m->tags) != '\0'; return 0;
        default: *truth = false; return 0;
        }
    }
    switch (op) {
    case 'C': return buf_printf(out, "%zu", c->line + 1) < 0 ? -1 : 0;
    case 'Z': {
        char z[4] = {status_char(f), ' ', ' ', 0};
        if (f & MSG_TAGGED)
            z[1] = '*';
        else if (f & MSG_FLAGGED)
            z[1] = '!';
        if (f & MSG_REPLIED && z[0] != 'r')
            z[2] = 'r';
        return put(out, z);
    }
    case 'S': {
        char z[2] = {status_char(f), 0};
        if (f & MSG_FLAGGED && z[0] == ' ')
            z[0] = '!';
        return put(out, z);
    }
    case '{': case '[': case '(': case '<':
        return date_expand(a, op == '(' ? (time_t)m->received : (time_t)m->date, arg, arglen, out);
    case 'd': case 'D':
        return date_expand(a, (time_t)m->date, a->cfg->opt.date_format,
                           strlen(a->cfg->opt.date_format), out);
    case 'L': case 'n': case 'F': return put(out, sstr(a, m->from));
    case 'a': return put(out, sstr(a, m->from_addr));
    case 'g': return put(out, sstr(a, m->tags));   /* notmuch labels */
    case 's': case 'S' + 1: {
        if (c->tree && *c->tree && put(out, c->tree) < 0)
            return -1;
        return put(out, sstr(a, m->subject));
    }
    case 'c': human_size(m->size, out); return 0;
    case 'M': {
        uint32_t h = c->line < a->view.n_lines ? a->view.lines[c->line].hidden_count : 0;
        return h ? (buf_printf(out, "%u", (unsigned)h + 1) < 0 ? -1 : 0) : 0;
    }
    case 'e': case 'E': case 'N': case 'l': return 0;
    default: return -1;
    }
}

static enum theme_role line_role(unsigned f)
{
    if (f & MSG_DELETED)
        return THEME_DELETED;
    if (f & MSG_TAGGED)
        return THEME_TAGGED;
    if (f & MSG_FLAGGED)
        return THEME_FLAGGED;
    if (!(f & MSG_SEEN))
        return (f & MSG_NEW) ? THEME_NEW : THEME_OLD;
    return THEME_INDEX;
}

static void adjust_top(struct app *a, int rows)
{
    size_t r = (size_t)rows;

    if (a->view.cursor < a->top)
        a->top = a->view.cursor;
    else if (a->view.cursor >= a->top + r)
        a->top = a->view.cursor - r + 1;
    if (a->top + r > a->view.n_lines)
        a->top = a->view.n_lines > r ? a->view.n_lines - r : 0;
}

struct status_ctx {
    struct app *a;
    size_t total, n_new, n_old, n_del, n_flag, n_tag;
};

/* Count once per status line, not once per % sequence. */
static void status_count(struct status_ctx *c)
{
    const struct store *st = &c->a->mb->store;

    for (uint32_t i = 0; i < store_count(st); i++) {
        const struct store_msg *m = store_get(st, i);
        if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
            continue;
        c->total++;
        if (!(m->flags & MSG_SEEN)) {
            if (m->flags & MSG_NEW)
                c->n_new++;
            else
                c->n_old++;
        }
        c->n_del += (m->flags & MSG_DELETED) != 0;
        c->n_flag += (m->flags & MSG_FLAGGED) != 0;
        c->n_tag += (m->flags & MSG_TAGGED) != 0;
    }
}

static int status_cb(void *vctx, char op, const char *arg, size_t arglen, bool *truth,
                     struct buf *out)
{
    struct status_ctx *c = vctx;
    struct app *a = c->a;
    size_t total = c->total, n_new = c->n_new, n_old = c->n_old, n_del = c->n_del,
           n_flag = c->n_flag, n_tag = c->n_tag;
    long val = -1;
    (void)arg;
    (void)arglen;

    switch (op) {
    case 'm': val = (long)total; break;
    case 'M': val = a->view.limit ? (long)a->view.n_lines : 0; break;
    case 'n': val = (long)n_new; break;
    case 'o': val = (long)n_old; break;
    case 'u': val = (long)(n_new + n_old); break;
    case 'd': val = (long)n_del; break;
    case 'F': val = (long)n_flag; break;
    case 't': val = (long)n_tag; break;
    case 'p': case 'b': val = 0; break;
    default: break;
    }
    if (truth) {
        if (op == 'l' || op == 'V')
            *truth = a->view.limit != NULL;
        else
            *truth = val > 0;
        return 0;
    }
    if (val >= 0)
        return buf_printf(out, "%ld", val) < 0 ? -1 : 0;
    switch (op) {
    case 'f': return put(out, a->mb->name);
    case 'r': return put(out, a->readonly ? "%" : n_del || n_flag ? "*" : "-");
    case 's': case 'S': {
        char name[SORT_NAME_MAX];
        struct err e;
        const struct sort_order *o = op == 's' ? &a->view.sort.primary : &a->view.sort.aux;
        if (sort_order_format(o, name, sizeof name, &e) < 0)
            return 0;
        return put(out, name);
    }
    case 'l': case 'V': return a->view.limit_text ? put(out, a->view.limit_text) : 0;
    case 'v': return put(out, "correo " CORREO_VERSION);
    case 'P': {
        size_t rows = (size_t)index_rows();
        if (a->view.n_lines <= rows)
            return put(out, "all");
        if (a->top == 0)
            return put(out, "top");
        if (a->top + rows >= a->view.n_lines)
            return put(out, "end");
        return buf_printf(out, "%zu%%", (a->top + rows) * 100 / a->view.n_lines) < 0 ? -1 : 0;
    }
    default: return -1;
    }
}

static void draw_help_line(enum km_menu menu, struct app *a)
{
    static const struct {
        enum km_op op;
        const char *label;
    } items[] = {
        {OP_QUIT, "Quit"}, {OP_DELETE_MESSAGE, "Del"}, {OP_UNDELETE_MESSAGE, "Undel"},
        {OP_SAVE_MESSAGE, "Save"}, {OP_MAIL, "Mail"}, {OP_REPLY, "Reply"},
        {OP_GROUP_REPLY, "Group"}, {OP_HELP, "Help"},
    };
    struct buf line = BUF_INIT;

    if (!a->cfg->opt.help)
        return;
    for (size_t i = 0; i < ARRAY_LEN(items); i++) {
        struct km_help *h;
        size_t n;
        keymap_describe(a->cfg->keymap, menu, &h, &n);
        for (size_t k = 0; k < n; k++) {
            if (h[k].keys && !h[k].is_macro && strcmp(h[k].function, keymap_op_name(items[i].op)) == 0) {
                char *safe = sanitize_term_dup(h[k].keys, strlen(h[k].keys), 0);
                if (buf_printf(&line, "%s:%s  ", safe, items[i].label) < 0)
                    die("help line: unbounded buffer refused data");
                free(safe);
                break;
            }
        }
        keymap_help_free(h, n);
    }
    ui_draw(0, 0, line.data ? line.data : "", line.len, THEME_STATUS, 0, true);
    buf_free(&line);
}

static void draw_index(struct app *a)
{
    int rows = index_rows();
    int first_row = a->cfg->opt.help ? 1 : 0;
    struct buf line = BUF_INIT;
    char tree[1024];

    ui_erase();
    draw_help_line(MENU_INDEX, a);
    adjust_top(a, rows);
    for (int r = 0; r < rows; r++) {
        size_t li = a->top + (size_t)r;
        if (li >= a->view.n_lines) {
            ui_clear_row(first_row + r, THEME_NORMAL);
            continue;
        }
        uint32_t msg = view_msg_at(&a->view, li);
        view_tree_prefix(&a->view, li, tree, sizeof tree);
        struct line_ctx c = {a, li, msg, tree};
        buf_reset(&line);
        (void)format_expand(a->cfg->opt.index_format, index_cb, &c, (size_t)ui_cols(), &line);
        bool cursor = li == a->view.cursor;
        ui_draw(first_row + r, 0, line.data ? line.data : "", line.len,
                cursor ? THEME_INDICATOR : line_role(cur_smsg(a, msg)->flags), 0, true);
    }
    if (a->view.n_lines == 0)
        ui_draw(first_row, 0, "No visible messages.", 20, THEME_NORMAL, 0, true);

    struct status_ctx sc = {a, 0, 0, 0, 0, 0, 0};
    status_count(&sc);
    buf_reset(&line);
    (void)format_expand(a->cfg->opt.status_format, status_cb, &sc, (size_t)ui_cols(), &line);
    ui_draw(first_row + rows, 0, line.data ? line.data : "", line.len, THEME_STATUS, 0, true);
    ui_draw_message();
    ui_move(first_row + (int)(a->view.cursor - a->top), 0);
    ui_refresh();
    buf_free(&line);
}

/* ---- actions on messages ------------------------------------------------- */

/* The messages an action applies to: the tagged ones after tag-prefix, else
 * the current one.  *out is malloc'd. */
static size_t targets(struct app *a, uint32_t **out)
{
    size_t n = 0;

    *out = NULL;
    if (a->tag_prefix) {
        a->tag_prefix = false;
        *out = xcalloc(a->view.n_lines ? a->view.n_lines : 1, sizeof **out);
        for (size_t i = 0; i < a->view.n_lines; i++) {
            uint32_t m = view_msg_at(&a->view, i);
            if (cur_smsg(a, m)->flags & MSG_TAGGED)
                (*out)[n++] = m;
        }
        if (n == 0)
            ui_error("No tagged messages.");
        return n;
    }
    uint32_t m = view_current(&a->view);
    if (m == VIEW_NONE) {
        ui_error("No visible messages.");
        return 0;
    }
    *out = xmalloc(sizeof **out);
    (*out)[0] = m;
    return 1;
}

static int set_msg_flags(struct app *a, uint32_t msg, unsigned flags)
{
    struct err e;
    unsigned persistent = ~(unsigned)MAILBOX_SESSION_FLAGS;
    const struct store_msg *m = cur_smsg(a, msg);

    if (a->readonly && (flags & persistent) != (m->flags & persistent)) {
        ui_error("Mailbox is read-only.");
        return -1;
    }
    if (a->mb->ops->set_flags(a->mb, msg, flags, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    return 0;
}

static void change_flags(struct app *a, unsigned add, unsigned remove, bool toggle)
{
    uint32_t *t;
    size_t n = targets(a, &t);

    for (size_t i = 0; i < n; i++) {
        unsigned f = cur_smsg(a, t[i])->flags;
        if (toggle)
            f = (f & add) ? f & ~add : f | add;
        else
            f = (f | add) & ~remove;
        if (set_msg_flags(a, t[i], f) < 0)
            break;
    }
    free(t);
}

static void move_on_resolve(struct app *a)
{
    if (a->cfg->opt.resolve && a->view.cursor + 1 < a->view.n_lines)
        a->view.cursor++;
}

static void apply_to_pattern(struct app *a, const char *prompt, unsigned add, unsigned remove)
{
    char *text;
    struct pattern *p;
    struct err e;
    size_t count = 0;

    if (ui_prompt(prompt, NULL, NULL, NULL, &text) < 0)
        return;
    if (!*text) {
        free(text);
        return;
    }
    struct pattern_opts o = {PATTERN_SIMPLE, 0};
    if (pattern_compile_opts(text, &o, &p, &e) < 0) {
        ui_error("%s", e.text);
        free(text);
        return;
    }
    for (size_t i = 0; i < a->view.n_lines; i++) {
        uint32_t m = view_msg_at(&a->view, i);
        if (view_match(&a->view, p, m)) {
            if (set_msg_flags(a, m, (cur_smsg(a, m)->flags | add) & ~remove) < 0)
                break;
            count++;
        }
    }
    ui_message("%zu messages changed.", count);
    pattern_free(p);
    free(text);
}

/* ---- folders ----------------------------------------------------------------- */

/* The Maildir++ root the folder names are relative to. */
static char *folder_root(struct app *a)
{
    return config_mailbox_path(a->cfg, "=");
}

static bool is_maildir(const char *path)
{
    char sub[4096];
    struct stat st;

    snprintf(sub, sizeof sub, "%s/cur", path);
    return stat(sub, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A mailbox name as typed, made a path; "=Name" also finds the Maildir++
 * folder ".Name". */
static char *resolve_mailbox(struct app *a, const char *name)
{
    char *path = config_mailbox_path(a->cfg, name);

    if (!is_maildir(path) && (name[0] == '=' || name[0] == '+') && name[1] && name[1] != '.') {
        char *root = folder_root(a);
        char *alt = xasprintf("%s/.%s", root, name + 1);
        free(root);
        if (is_maildir(alt)) {
            free(path);
            return alt;
        }
        free(alt);
    }
    return path;
}

struct completion {
    struct app *a;
};

/* Complete "=prefix" against the Maildir++ folders of $folder. */
static int complete_folder(void *ctx, struct buf *text)
{
    struct app *a = ((struct completion *)ctx)->a;
    char *root = folder_root(a);
    struct maildir *md;
    struct maildir_folder_list *fl;
    struct err e;
    const char *typed = buf_cstr(text);
    int found = 0;
    char *first = NULL;
    size_t common = 0;

    if (typed[0] != '=' && typed[0] != '+' && typed[0] != '\0') {
        free(root);
        return 0;
    }
    const char *prefix = typed[0] ? typed + 1 : "";
    if (*prefix == '.')
        prefix++;
    if (maildir_open(root, &md, &e) < 0) {
        free(root);
        return 0;
    }
    if (maildir_list_folders(md, &fl, &e) == 0) {
        for (size_t i = 0; i < fl->n; i++) {
            const char *name = fl->v[i].name;
            if (strcmp(name, "INBOX") == 0 || strncmp(name, prefix, strlen(prefix)) != 0)
                continue;
            if (!first) {
                first = xstrdup(name);
                common = strlen(name);
            } else {
                size_t k = 0;
                while (k < common && first[k] == name[k])
                    k++;
                common = k;
            }
            found++;
        }
        free(fl);
    }
    maildir_close(md);
    free(root);
    if (found) {
        buf_reset(text);
        if (buf_puts(text, "=.") < 0 || buf_append(text, first, common) < 0)
            found = 0;
    }
    free(first);
    return found;
}

static int ask_mailbox(struct app *a, const char *prompt, char **path)
{
    struct completion c = {a};
    char *name;

    if (ui_prompt(prompt, "=", complete_folder, &c, &name) < 0)
        return -1;
    if (!*name || strcmp(name, "=") == 0) {
        free(name);
        return -1;
    }
    *path = resolve_mailbox(a, name);
    free(name);
    return 0;
}

static void save_or_copy(struct app *a, bool move)
{
    uint32_t *t;
    size_t n;
    char *dest;
    struct err e;
    size_t done = 0;

    if (move && a->readonly) {
        ui_error("Mailbox is read-only.");
        return;
    }
    bool was_tag = a->tag_prefix;
    if (ask_mailbox(a, move ? (was_tag ? "Save tagged to mailbox: " : "Save to mailbox: ")
                            : (was_tag ? "Copy tagged to mailbox: " : "Copy to mailbox: "),
                    &dest) < 0) {
        a->tag_prefix = false;
        return;
    }
    if (!is_maildir(dest)) {
        char *q = xasprintf("Create %s?", dest);
        char *safe = sanitize_term_dup(q, strlen(q), 0);
        int yes = a->cfg->opt.confirmcreate ? ui_yesno(safe, 1) : 1;
        free(q);
        free(safe);
        if (yes != 1) {
            free(dest);
            a->tag_prefix = false;
            return;
        }
        char *root = folder_root(a);
        size_t rl = strlen(root);
        struct maildir *md;
        int rc = -1;
        if (strncmp(dest, root, rl) == 0 && dest[rl] == '/' && dest[rl + 1] == '.' &&
            maildir_open(root, &md, &e) == 0) {
            rc = maildir_folder_create(md, dest + rl + 2, &e);
            maildir_close(md);
        } else {
            err_set(&e, ERR_INVAL, "%s is not a folder of %s", dest, root);
        }
        free(root);
        if (rc < 0) {
            ui_error("%s", e.text);
            free(dest);
            a->tag_prefix = false;
            return;
        }
    }
    n = targets(a, &t);
    for (size_t i = 0; i < n; i++) {
        if (a->mb->ops->copy(a->mb, t[i], dest, move, &e) < 0) {
            ui_error("%s", e.text);
            break;
        }
        done++;
    }
    if (done) {
        char *safe = sanitize_term_dup(dest, strlen(dest), 0);
        ui_message("%zu message%s %s to %s.", done, done == 1 ? "" : "s",
                   move ? "saved" : "copied", safe);
        free(safe);
        if (move && view_rebuild(&a->view, &e) < 0)
            ui_error("%s", e.text);
    }
    free(t);
    free(dest);
}

/* Write pending deletions.  Returns 0, or -1 when the user aborted. */
static int sync_mailbox(struct app *a, bool asking)
{
    struct mailbox_sync_errs errs = {0, NULL};
    struct err e;
    size_t n_del = 0;

    for (uint32_t i = 0; i < store_count(&a->mb->store); i++) {
        const struct store_msg *m = store_get(&a->mb->store, i);
        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) && (m->flags & MSG_DELETED))
            n_del++;
    }
    if (n_del && !a->readonly) {
        enum config_quad q = a->cfg->opt.delete;
        int yes = 1;
        if (asking && (q == CFG_ASK_YES || q == CFG_ASK_NO)) {
            char question[64];
            snprintf(question, sizeof question, "Purge %zu deleted message%s?", n_del,
                     n_del == 1 ? "" : "s");
            yes = ui_yesno(question, q == CFG_ASK_YES ? 1 : 0);
        } else if (q == CFG_NO) {
            yes = 0;
        }
        if (yes < 0)
            return -1;
        if (yes == 0)
            return 0;
    }
    if (a->readonly)
        return 0;
    if (a->mb->ops->sync(a->mb, &errs, &e) < 0) {
        if (errs.n) {
            char *what = xasprintf("%s", e.text);
            ui_error("%s (first: %s)", what, errs.v[0].err.text);
            free(what);
        } else {
            ui_error("%s", e.text);
        }
    } else if (n_del) {
        ui_message("%zu message%s deleted.", n_del, n_del == 1 ? "" : "s");
    }
    mailbox_sync_errs_free(&errs);
    /* Only a deletion changes what the view shows; quitting a large
     * threaded mailbox must not re-thread it for nothing. */
    if (n_del && view_rebuild(&a->view, &e) < 0)
        ui_error("%s", e.text);
    return 0;
}

static bool same_imap_folder(const char *x, const char *y);

/* The connection polls use for the account of u, connected when needed;
 * NULL (and nothing shown) when the account cannot be reached: it is
 * tried again after a minute. */
static struct imap_conn *poll_conn(struct app *a, const struct imap_url *u)
{
    char *account = imap_url_account(u, u->user);
    struct imap_poll_conn *pc = NULL;
    time_t now = time(NULL);
    time_t pause = a->cfg->opt.mail_check > 60 ? (time_t)a->cfg->opt.mail_check : 60;
    struct err e;

    for (size_t i = 0; i < a->n_poll_conns; i++)
        if (strcmp(a->poll_conns[i].account, account) == 0)
            pc = &a->poll_conns[i];
    if (!pc) {
        a->poll_conns = xreallocarray(a->poll_conns, a->n_poll_conns + 1, sizeof *a->poll_conns);
        pc = &a->poll_conns[a->n_poll_conns++];
        pc->account = account;
        pc->c = NULL;
        pc->failed_at = 0;
    } else {
        free(account);
    }
    if (pc->c && imap_usable(pc->c))
        return pc->c;
    imap_close(pc->c);
    pc->c = NULL;
    if (pc->failed_at && now - pc->failed_at < pause)
        return NULL;
    imap_settings_from_config(a->cfg);
    if (imap_connect(u, imap_settings_get(), &pc->c, &e) < 0) {
        pc->failed_at = now;
        pc->c = NULL;
        return NULL;
    }
    pc->failed_at = 0;
    return pc->c;
}

static void poll_free(struct app *a)
{
    for (size_t i = 0; i < a->n_polls; i++)
        free(a->polls[i].url);
    free(a->polls);
    for (size_t i = 0; i < a->n_poll_conns; i++) {
        imap_close(a->poll_conns[i].c);
        free(a->poll_conns[i].account);
    }
    free(a->poll_conns);
    a->polls = NULL;
    a->poll_conns = NULL;
    a->n_polls = a->n_poll_conns = 0;
}

/* STATUS of the `mailboxes` that are IMAP folders (not the open one), no
 * more often than $mail_check; says which got new mail. */
static void poll_mailboxes(struct app *a, bool forced)
{
    time_t now = time(NULL);
    struct buf names = BUF_INIT;
    size_t n_new = 0;

    if (!forced && (a->cfg->opt.mail_check <= 0 || now - a->last_poll < a->cfg->opt.mail_check))
        return;
    a->last_poll = now;
    for (size_t i = 0; i < a->cfg->n_mailboxes; i++) {
        const struct config_mailbox *cm = &a->cfg->mailboxes[i];
        char *url = config_mailbox_path(a->cfg, cm->path);
        struct imap_poll *p = NULL;
        struct imap_folder f;
        struct imap_url u;
        struct imap_conn *c;
        struct err e;

        if (!imap_url_is(url) || (a->mb && same_imap_folder(a->mb->path, url)) ||
            imap_url_parse(url, &u, NULL) < 0) {
            free(url);
            continue;
        }
        for (size_t k = 0; k < a->n_polls; k++)
            if (strcmp(a->polls[k].url, url) == 0)
                p = &a->polls[k];
        if (!p) {
            a->polls = xreallocarray(a->polls, a->n_polls + 1, sizeof *a->polls);
            p = &a->polls[a->n_polls++];
            memset(p, 0, sizeof *p);
            p->url = xstrdup(url);
        }
        memset(&f, 0, sizeof f);
        c = poll_conn(a, &u);
        if (c && imap_folders_status(c, u.folder, &f, &e) == 0) {
            bool fresh = p->known ? f.messages > p->messages : f.recent > 0;
            if (fresh) {
                const char *label = cm->label ? cm->label : url;
                if ((n_new && buf_puts(&names, ", ") < 0) || buf_puts(&names, label) < 0)
                    die("poll: unbounded buffer refused data");
                n_new++;
            }
            p->known = true;
            p->messages = f.messages;
            p->recent = f.recent;
        }
        imap_url_free(&u);
        free(url);
    }
    if (n_new) {
        char *safe = sanitize_term_dup(buf_cstr(&names), names.len, 0);
        ui_message("New mail in %s.", safe);
        free(safe);
    }
    buf_free(&names);
}

static void check_new_mail(struct app *a, bool forced)
{
    struct err e;
    bool changed = false;
    uint32_t before = store_count(&a->mb->store);

    a->last_check = time(NULL);
    if (a->mb->ops->check(a->mb, &changed, &e) < 0) {
        ui_error("%s", e.text);
        return;
    }
    if (changed) {
        if (view_rebuild(&a->view, &e) < 0)
            ui_error("%s", e.text);
        uint32_t after = store_count(&a->mb->store);
        if (after > before)
            ui_message("New mail in this mailbox.");
        else if (forced)
            ui_message("Mailbox was externally modified.");
    } else if (forced) {
        ui_message("No new mail.");
    }
    poll_mailboxes(a, forced);
}

/* ---- fetch-mail ------------------------------------------------------- */

struct fetch_report {
    char *first_error;      /* shown when something went wrong */
    char *last;             /* else the last report line */
};

static void fetch_report_say(void *ctx, bool error, const char *text)
{
    struct fetch_report *r = ctx;

    if (error && r->first_error == NULL)
        r->first_error = xstrdup(text);
    free(r->last);
    r->last = xstrdup(text);
}

/* Run `correo fetch` for every pop account; the report goes to the
 * message line and the open mailbox is checked for what arrived. */
static void fetch_mail(struct app *a)
{
    struct fetch_report r = {NULL, NULL};
    struct fetch_ui fui = {fetch_report_say, NULL, &r};
    size_t n_new = 0;
    int st;

    ui_message("Fetching mail...");
    ui_refresh();
    st = fetch_run(a->cfg, NULL, 0, &fui, &n_new);
    if (n_new > 0)
        check_new_mail(a, false);   /* the index first, then the report */
    if (st != FETCH_OK)
        ui_error("%s", r.first_error ? r.first_error
                       : st == FETCH_LOCKED ? "Another fetch is running." : "Fetching failed.");
    else if (n_new > 0)
        ui_message("%s", r.last ? r.last : "New mail fetched.");
    else
        ui_message("No new mail.");
    free(r.first_error);
    free(r.last);
}

/* ---- notmuch: query folders and labels ---------------------------------- */

/* vfolder-from-query: a notmuch query typed at the prompt, opened as a
 * notmuch:// folder (of the open folder's database when it is one). */
static void vfolder_from_query(struct app *a)
{
    const char *cur = a->mb ? a->mb->path : "";
    size_t plen = strlen(MAILBOX_NOTMUCH_PREFIX);
    struct buf url = BUF_INIT;
    char *q = NULL;
    int rc = 0;

    if (ui_prompt("Query: ", NULL, NULL, NULL, &q) < 0 || !*q) {
        free(q);
        return;
    }
    if (strncmp(cur, MAILBOX_NOTMUCH_PREFIX, plen) == 0)
        rc = buf_append(&url, cur, strcspn(cur, "?"));
    else
        rc = buf_puts(&url, MAILBOX_NOTMUCH_PREFIX);
    if (rc == 0)
        rc = buf_puts(&url, "?query=");
    /* '%' and '&' would end or escape the value: encode them. */
    for (const char *c = q; rc == 0 && *c; c++)
        rc = (*c == '%' || *c == '&') ? buf_printf(&url, "%%%02X", (unsigned char)*c)
                                      : buf_putc(&url, *c);
    if (rc != 0)
        die("vfolder-from-query: unbounded buffer refused data");
    free(q);
    if (!a->mb || sync_mailbox(a, true) == 0)
        (void)open_mailbox(a, buf_cstr(&url), false);
    buf_free(&url);
}

/* modify-labels: "+tag -tag ..." on the current or the tagged messages. */
static void modify_labels(struct app *a)
{
    bool was_tag = a->tag_prefix;
    char *changes = NULL;
    uint32_t *t;
    size_t n, done = 0;
    struct err e;

    if (!a->mb || !mailbox_has_tags(a->mb)) {
        a->tag_prefix = false;
        ui_error("Only notmuch folders have labels.");
        return;
    }
    if (a->readonly) {
        a->tag_prefix = false;
        ui_error("Mailbox is read-only.");
        return;
    }
    if (ui_prompt(was_tag ? "Labels of tagged (+add -remove): " : "Labels (+add -remove): ",
                  NULL, NULL, NULL, &changes) < 0 || !*changes) {
        a->tag_prefix = false;
        free(changes);
        return;
    }
    n = targets(a, &t);
    for (size_t i = 0; i < n; i++) {
        if (mailbox_modify_tags(a->mb, t[i], changes, &e) < 0) {
            ui_error("%s", e.text);
            break;
        }
        done++;
    }
    if (done == n && done > 0)
        ui_message("Labels changed on %zu message%s.", done, done == 1 ? "" : "s");
    free(t);
    free(changes);
}

/* ---- prompts for limit, search, sort, jump ---------------------------- */

static void do_limit(struct app *a)
{
    char *text;
    struct err e;

    if (ui_prompt("Limit to messages matching: ", a->view.limit_text ? a->view.limit_text : "",
                  NULL, NULL, &text) < 0)
        return;
    if (view_set_limit(&a->view, text, &e) < 0)
        ui_error("%s", e.text);
    else if (a->view.n_lines == 0)
        ui_message("No messages matched criteria.");
    else
        ui_clear_message();
    free(text);
}

static void do_search(struct app *a, bool backward, bool again, bool opposite)
{
    struct err e;

    if (!again) {
        char *text;
        if (ui_prompt(backward ? "Reverse search for: " : "Search for: ",
                      NULL, NULL, NULL, &text) < 0)
            return;
        if (*text) {
            struct pattern *p;
            struct pattern_opts o = {PATTERN_SIMPLE, 0};
            if (pattern_compile_opts(text, &o, &p, &e) < 0) {
                ui_error("%s", e.text);
                free(text);
                return;
            }
            pattern_free(a->search);
            free(a->search_text);
            a->search = p;
            a->search_text = text;
            a->search_back = backward;
        } else {
            free(text);
        }
    }
    if (!a->search) {
        ui_error("No search pattern.");
        return;
    }
    bool back = opposite ? !a->search_back : a->search_back;
    bool wrapped;
    size_t line = view_search(&a->view, a->search, back, &wrapped);
    if (line == VIEW_NONE) {
        ui_error("Not found.");
        return;
    }
    a->view.cursor = line;
    if (wrapped)
        ui_message(back ? "Search wrapped to bottom." : "Search wrapped to top.");
    else
        ui_clear_message();
}

static void do_sort(struct app *a, bool reverse)
{
    static const char *const q =
        "Sort (d)ate/(f)rm/(r)ecv/(s)ubj/(t)hread/(u)nsort/si(z)e?: ";
    struct sort_spec spec = a->view.sort;
    struct err e;

    ui_clear_row(ui_rows() - 1, THEME_NORMAL);
    ui_draw(ui_rows() - 1, 0, q, strlen(q), THEME_PROMPT, 0, false);
    ui_refresh();
    int k = ui_getkey(-1);
    enum sort_key key;
    switch (k) {
    case 'd': key = SORT_DATE; break;
    case 'f': key = SORT_FROM; break;
    case 'r': key = SORT_RECEIVED; break;
    case 's': key = SORT_SUBJECT; break;
    case 't': key = SORT_THREADS; break;
    case 'u': key = SORT_UNSORTED; break;
    case 'z': key = SORT_SIZE; break;
    default:
        ui_clear_message();
        return;
    }
    spec.primary.key = key;
    spec.primary.reverse = reverse;
    if (view_set_sort(&a->view, &spec, &e) < 0)
        ui_error("%s", e.text);
    else
        ui_clear_message();
}

static void do_jump(struct app *a, int first_key)
{
    char init[2] = {(char)first_key, 0};
    char *text;

    if (ui_prompt("Jump to message: ", first_key ? init : "", NULL, NULL, &text) < 0)
        return;
    char *end;
    long n = strtol(text, &end, 10);
    if (*text && *end == '\0' && n >= 1 && (size_t)n <= a->view.n_lines)
        a->view.cursor = (size_t)n - 1;
    else
        ui_error("Invalid message number.");
    free(text);
}

/* ---- running programs --------------------------------------------------- */

static int read_whole(struct app *a, uint32_t msg, struct buf *raw)
{
    struct err e;

    if (a->mb->ops->read_message(a->mb, msg, raw, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    return 0;
}

static void pipe_message(struct app *a)
{
    char *cmd;
    uint32_t *t;
    size_t n;

    if (ui_prompt("Pipe to command: ", NULL, NULL, NULL, &cmd) < 0)
        return;
    if (!*cmd) {
        free(cmd);
        return;
    }
    n = targets(a, &t);
    ui_suspend();
    for (size_t i = 0; i < n; i++) {
        struct buf raw = BUF_INIT;
        struct err e;
        if (read_whole(a, t[i], &raw) == 0 &&
            mailcap_pipe_to_command(cmd, raw.data ? raw.data : "", raw.len, NULL, &e) < 0) {
            fprintf(stderr, "correo: %s\n", e.text);
        }
        buf_free(&raw);
    }
    if (a->cfg->opt.wait_key)
        ui_wait_key();
    else
        ui_resume();
    free(t);
    free(cmd);
}

static void shell_escape(struct app *a)
{
    char *cmd;
    (void)a;

    if (ui_prompt("Shell command: ", NULL, NULL, NULL, &cmd) < 0)
        return;
    ui_suspend();
    const char *sh = getenv("SHELL");
    const char *argv_sh[] = {"/bin/sh", "-c", cmd, NULL};
    const char *argv_i[] = {sh && *sh ? sh : "/bin/sh", NULL};
    struct mailcap_exec x;
    struct err e;
    memset(&x, 0, sizeof x);
    if (mailcap_exec(*cmd ? argv_sh : argv_i, &x, &e) < 0)
        fprintf(stderr, "correo: %s\n", e.text);
    if (*cmd && a->cfg->opt.wait_key)
        ui_wait_key();
    else
        ui_resume();
    free(cmd);
}

static void enter_command(struct app *a)
{
    char *text;
    struct rc_diag diag;

    if (ui_prompt(":", NULL, NULL, NULL, &text) < 0)
        return;
    rc_diag_init(&diag);
    config_exec(a->cfg, "command", text, &diag);
    if (diag.n)
        ui_error("%s", diag.msgs[0]);
    else if (a->cfg->last_query)
        ui_message("%s", a->cfg->last_query);
    rc_diag_free(&diag);
    ui_set_theme(&a->cfg->theme);
    if (a->mb && (strstr(text, "sort") || strstr(text, "threads") || strstr(text, "ascii"))) {
        struct err e;
        sort_from_config(a);
        if (view_rebuild(&a->view, &e) < 0)
            ui_error("%s", e.text);
    }
    free(text);
}

/* ---- simple list screens: help, attachments, browser -------------------- */

struct list {
    char **items;            /* sanitized lines */
    size_t n, cursor, top;
    bool cursor_line;        /* draw a cursor bar */
};

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static void list_add(struct list *l, const char *raw)
{
    l->items = xreallocarray(l->items, l->n + 1, sizeof *l->items);
    l->items[l->n++] = sanitize_term_dup(raw, strlen(raw), 0);
}

static void list_draw(struct list *l, const char *title, const char *status)
{
    int rows = index_rows();
    size_t r = (size_t)rows;

    ui_erase();
    ui_draw(0, 0, title, strlen(title), THEME_STATUS, 0, true);
    if (l->cursor < l->top)
        l->top = l->cursor;
    else if (l->cursor >= l->top + r)
        l->top = l->cursor - r + 1;
    for (int i = 0; i < rows; i++) {
        size_t k = l->top + (size_t)i;
        if (k >= l->n) {
            ui_clear_row(1 + i, THEME_NORMAL);
            continue;
        }
        bool cur = l->cursor_line && k == l->cursor;
        ui_draw(1 + i, 0, l->items[k], strlen(l->items[k]), cur ? THEME_INDICATOR : THEME_NORMAL,
                0, true);
    }
    ui_draw(1 + rows, 0, status, strlen(status), THEME_STATUS, 0, true);
    ui_draw_message();
    ui_refresh();
}

/* Movement shared by the list screens; true if op was one. */
static bool list_move(struct list *l, int op)
{
    size_t page = (size_t)index_rows();

    switch (op) {
    case OP_NEXT_ENTRY: case OP_NEXT_LINE:
        if (l->cursor + 1 < l->n)
            l->cursor++;
        return true;
    case OP_PREVIOUS_ENTRY: case OP_PREVIOUS_LINE:
        if (l->cursor > 0)
            l->cursor--;
        return true;
    case OP_NEXT_PAGE: case OP_HALF_DOWN:
        l->cursor = l->cursor + page < l->n ? l->cursor + page : (l->n ? l->n - 1 : 0);
        if (!l->cursor_line)
            l->top = l->cursor;
        return true;
    case OP_PREVIOUS_PAGE: case OP_HALF_UP:
        l->cursor = l->cursor > page ? l->cursor - page : 0;
        if (!l->cursor_line)
            l->top = l->cursor;
        return true;
    case OP_FIRST_ENTRY: case OP_TOP:
        l->cursor = 0;
        return true;
    case OP_LAST_ENTRY: case OP_BOTTOM:
        l->cursor = l->n ? l->n - 1 : 0;
        return true;
    default:
        return false;
    }
}

static void show_help(struct app *a, enum km_menu menu)
{
    struct km_help *h;
    size_t n;
    struct list l;
    char title[128];

    memset(&l, 0, sizeof l);
    keymap_describe(a->cfg->keymap, menu, &h, &n);
    for (size_t i = 0; i < n; i++) {
        char *line;
        if (h[i].kind == KM_HELP_UNBOUND)
            line = xasprintf("%-12s %-24s %s", "", h[i].function, h[i].desc);
        else
            line = xasprintf("%-12s %-24s %s", h[i].keys, h[i].function, h[i].desc);
        if (i > 0 && h[i].kind != h[i - 1].kind)
            list_add(&l, h[i].kind == KM_HELP_GENERIC ? "" : "");
        if (i > 0 && h[i].kind != h[i - 1].kind)
            list_add(&l, h[i].kind == KM_HELP_GENERIC ? "Generic bindings:" : "Unbound functions:");
        list_add(&l, line);
        free(line);
    }
    keymap_help_free(h, n);
    snprintf(title, sizeof title, "Help for %s", keymap_menu_name(menu));
    for (;;) {
        list_draw(&l, title, "---Help---  (q to leave)");
        int op = read_op(a, MENU_GENERIC, -1);
        if (op == -2 || op == -1)
            continue;
        if (op == OP_EXIT || op == OP_QUIT || op == OP_HELP)
            break;
        if (!list_move(&l, op) && op == OP_SELECT_ENTRY)
            list_move(&l, OP_NEXT_PAGE);
    }
    list_free(&l);
    ui_clear_message();
}

/* ---- text screens: the pager and the attachment viewer -------------------- */

struct textview {
    struct render_out out;
    size_t top;
    struct render_hits hits;
    bool have_hits;
    char *search;
    bool search_back;
    size_t hit_line;         /* line of the hit shown last */
};

static enum theme_role role_of(const struct render_line *ln)
{
    switch (ln->role) {
    case RENDER_HEADER: return THEME_HDRDEFAULT;
    case RENDER_QUOTED: {
        int q = ln->quote ? ln->quote - 1 : 0;
        return (enum theme_role)(THEME_QUOTED0 + (q > 9 ? 9 : q));
    }
    case RENDER_SIGNATURE: return THEME_SIGNATURE;
    case RENDER_ATTACHMENT: return THEME_ATTACHMENT;
    case RENDER_INFO: return THEME_ATTACHMENT;
    default: return THEME_NORMAL;
    }
}

static void text_draw(struct app *a, struct textview *tv, const char *status)
{
    int rows = ui_rows() - 2;
    const struct render_out *o = &tv->out;

    ui_erase();
    if (rows < 1)
        rows = 1;
    for (int r = 0; r < rows; r++) {
        size_t i = tv->top + (size_t)r;
        if (i >= o->n_lines) {
            if (a->cfg->opt.tilde)
                ui_draw(r, 0, "~", 1, THEME_TILDE, 0, true);
            else
                ui_clear_row(r, THEME_NORMAL);
            continue;
        }
        const struct render_line *ln = &o->lines[i];
        const char *t = render_line_text(o, i);
        enum theme_role role = role_of(ln);
        int col = 0;
        ui_clear_row(r, THEME_NORMAL);
        if ((ln->flags & RENDER_LINE_CONT) && a->cfg->opt.markers) {
            ui_draw(r, 0, "+", 1, THEME_MARKERS, 0, false);
            col = 1;
        }
        if (ln->role == RENDER_HEADER && ln->name_len && !(ln->flags & RENDER_LINE_CONT)) {
            size_t nl = ln->name_len < ln->len ? ln->name_len : ln->len;
            ui_draw(r, col, t, nl, THEME_HEADER, 0, false);
            ui_draw(r, col + (int)sanitize_width(t, nl), t + nl, ln->len - nl, role, 0, false);
        } else {
            ui_draw(r, col, t, ln->len, role, 0, false);
        }
        /* search hits on this line */
        if (tv->have_hits) {
            for (size_t h = 0; h < tv->hits.n; h++) {
                const struct render_hit *hit = &tv->hits.v[h];
                if (hit->line != i)
                    continue;
                int hc = col + (int)sanitize_width(t, hit->off);
                ui_draw(r, hc, t + hit->off, hit->len, THEME_SEARCH, 0, false);
            }
        }
    }
    ui_draw(rows, 0, status, strlen(status), THEME_STATUS, 0, true);
    ui_draw_message();
    ui_refresh();
}

static size_t text_max_top(const struct textview *tv)
{
    size_t rows = (size_t)(ui_rows() > 3 ? ui_rows() - 2 : 1);
    return tv->out.n_lines > rows ? tv->out.n_lines - rows : 0;
}

/* Scrolling and searching shared by the pager and the viewer.  Returns
 * true if op was one of those. */
static bool text_op(struct app *a, struct textview *tv, int op)
{
    size_t rows = (size_t)(ui_rows() > 3 ? ui_rows() - 2 : 1);
    size_t max = text_max_top(tv);
    struct err e;

    switch (op) {
    case OP_NEXT_LINE:
        if (tv->top < max)
            tv->top++;
        return true;
    case OP_PREVIOUS_LINE:
        if (tv->top > 0)
            tv->top--;
        return true;
    case OP_HALF_DOWN:
        tv->top = tv->top + rows / 2 < max ? tv->top + rows / 2 : max;
        return true;
    case OP_HALF_UP:
        tv->top = tv->top > rows / 2 ? tv->top - rows / 2 : 0;
        return true;
    case OP_PREVIOUS_PAGE:
        tv->top = tv->top > rows - 1 ? tv->top - (rows - 1) : 0;
        return true;
    case OP_TOP:
        tv->top = 0;
        return true;
    case OP_BOTTOM:
        tv->top = max;
        return true;
    case OP_SKIP_QUOTED:
    case OP_SKIP_HEADERS: {
        size_t i = tv->top;
        int want = op == OP_SKIP_QUOTED ? RENDER_QUOTED : RENDER_HEADER;
        while (i < tv->out.n_lines && tv->out.lines[i].role != want)
            i++;
        while (i < tv->out.n_lines && tv->out.lines[i].role == want)
            i++;
        if (i >= tv->out.n_lines)
            ui_error("No more %s text.", op == OP_SKIP_QUOTED ? "quoted" : "header");
        else
            tv->top = i < max ? i : max;
        return true;
    }
    case OP_SEARCH:
    case OP_SEARCH_REVERSE: {
        char *text;
        if (ui_prompt(op == OP_SEARCH ? "Search for: " : "Reverse search for: ", NULL, NULL, NULL,
                      &text) < 0)
            return true;
        if (!*text) {
            free(text);
            return true;
        }
        render_hits_free(&tv->hits);
        memset(&tv->hits, 0, sizeof tv->hits);
        if (render_search(&tv->out, text, RENDER_SEARCH_REGEX | RENDER_SEARCH_SMART, &tv->hits,
                          &e) < 0) {
            ui_error("%s", e.text);
            free(text);
            tv->have_hits = false;
            return true;
        }
        free(tv->search);
        tv->search = text;
        tv->search_back = op == OP_SEARCH_REVERSE;
        tv->have_hits = true;
        tv->hit_line = tv->top;
    }
        __attribute__((fallthrough));
    case OP_SEARCH_NEXT:
    case OP_SEARCH_OPPOSITE: {
        if (!tv->have_hits) {
            ui_error("No search pattern.");
            return true;
        }
        bool back = tv->search_back != (op == OP_SEARCH_OPPOSITE);
        long k = render_hit_next(&tv->hits, tv->hit_line, !back);
        if (k < 0) {
            ui_error("Not found.");
            return true;
        }
        size_t line = tv->hits.v[k].line;
        tv->hit_line = line;
        tv->top = line > 1 ? line - 1 : 0;
        if (tv->top > max)
            tv->top = max;
        ui_clear_message();
        return true;
    }
    case OP_SEARCH_TOGGLE:
        tv->have_hits = !tv->have_hits && tv->hits.n > 0;
        return true;
    default:
        (void)a;
        return false;
    }
}

static void textview_free(struct textview *tv)
{
    render_out_free(&tv->out);
    render_hits_free(&tv->hits);
    free(tv->search);
}

static void render_opts_from_config(struct app *a, struct render_opts *o, const char ***lists)
{
    const struct config_list *src[3] = {&a->cfg->hdr_order, &a->cfg->ignore, &a->cfg->unignore};

    render_opts_default(o);
    o->cols = (size_t)ui_cols() > 1 ? (size_t)ui_cols() - (a->cfg->opt.markers ? 1 : 0) : 1;
    o->smart_wrap = a->cfg->opt.smart_wrap;
    o->html_filter = a->cfg->opt.html_filter;
    for (int i = 0; i < 3; i++) {
        lists[i] = NULL;
        if (src[i]->n == 0)
            continue;
        lists[i] = xcalloc(src[i]->n + 1, sizeof *lists[i]);
        for (size_t k = 0; k < src[i]->n; k++)
            lists[i][k] = src[i]->v[k];
    }
    o->header_order = lists[0];
    o->ignore = lists[1];
    o->unignore = lists[2];
}

/* Show text (a viewer's output or a text part) until the user leaves. */
static void view_text(struct app *a, const char *title, const char *text, size_t len)
{
    struct textview tv;
    struct render_opts o;
    const char **lists[3];
    struct err e;

    memset(&tv, 0, sizeof tv);
    render_out_init(&tv.out);
    render_opts_from_config(a, &o, lists);
    if (render_text(text, len, &o, &tv.out, &e) < 0)
        ui_error("%s", e.text);
    char *safe = sanitize_term_dup(title, strlen(title), 0);
    for (;;) {
        text_draw(a, &tv, safe);
        int op = read_op(a, MENU_PAGER, -1);
        if (op == -1 || op == -2)
            continue;
        if (op == OP_EXIT || op == OP_QUIT)
            break;
        if (op == OP_NEXT_PAGE) {
            size_t max = text_max_top(&tv);
            if (tv.top >= max)
                break;
            size_t rows = (size_t)(ui_rows() > 3 ? ui_rows() - 3 : 1);
            tv.top = tv.top + rows < max ? tv.top + rows : max;
            continue;
        }
        if (op == OP_HELP) {
            show_help(a, MENU_PAGER);
            continue;
        }
        if (!text_op(a, &tv, op))
            ui_error("Function not permitted here.");
    }
    free(safe);
    for (int i = 0; i < 3; i++)
        free(lists[i]);
    textview_free(&tv);
}

/* ---- attachments ------------------------------------------------------ */

static void attach_view(struct app *a, const struct message *m, const struct msg_part *p,
                        bool as_text)
{
    struct buf data = BUF_INIT;
    struct err e;
    char *type = message_part_mime_type(p);
    struct mailcap mc;
    struct rc_diag diag;

    if (as_text || strncmp(type, "text/", 5) == 0 || strcmp(type, "message/rfc822") == 0) {
        int rc = strncmp(type, "text/", 5) == 0 ? message_part_text(m, p, &data, NULL, NULL, &e)
                                                : message_part_decode(m, p, &data, NULL, &e);
        if (rc < 0)
            ui_error("%s", e.text);
        else
            view_text(a, type, data.data ? data.data : "", data.len);
        goto out;
    }
    if (message_part_decode(m, p, &data, NULL, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    mailcap_init(&mc);
    rc_diag_init(&diag);
    mailcap_load_path(&mc, a->cfg->opt.mailcap_path, &diag);
    const struct mailcap_entry *ent = mailcap_lookup(&mc, type, 0);
    if (!ent) {
        ui_error("No mailcap entry for %s; use 's' to save it.", type);
    } else {
        struct mailcap_part mp = {data.data ? data.data : "", data.len, type, p->filename,
                                  &p->params};
        if (ent->copiousoutput) {
            struct buf output;
            buf_init(&output, 64u << 20);
            if (mailcap_run(ent, &mp, MAILCAP_VIEW_TIMEOUT_MS, &output, &e) < 0)
                ui_error("%s", e.text);
            else
                view_text(a, type, output.data ? output.data : "", output.len);
            buf_free(&output);
        } else {
            ui_suspend();
            int rc = mailcap_run(ent, &mp, 0, NULL, &e);
            if (rc < 0)
                fprintf(stderr, "correo: %s\n", e.text);
            if (rc < 0 || (ent->needsterminal && a->cfg->opt.wait_key))
                ui_wait_key();
            else
                ui_resume();
        }
    }
    rc_diag_free(&diag);
    mailcap_free(&mc);
out:
    free(type);
    buf_free(&data);
}

static void attach_save(struct app *a, const struct message *m, const struct msg_part *p)
{
    struct buf data = BUF_INIT;
    struct err e;
    char *safe = mailcap_safe_name(p->filename, NULL);
    char *path;

    (void)a;
    if (ui_prompt("Save to file: ", safe, NULL, NULL, &path) < 0 || !*path) {
        free(safe);
        return;
    }
    free(safe);
    if (path[0] == '~' && path[1] == '/') {
        const char *home = getenv("HOME");
        char *full = xasprintf("%s%s", home ? home : "", path + 1);
        free(path);
        path = full;
    }
    if (message_part_decode(m, p, &data, NULL, &e) < 0) {
        ui_error("%s", e.text);
    } else if (mailcap_save_part(path, data.data ? data.data : "", data.len, false, &e) < 0) {
        if (e.code == ERR_EXISTS && ui_yesno("File exists, overwrite?", 0) == 1) {
            if (mailcap_save_part(path, data.data ? data.data : "", data.len, true, &e) < 0)
                ui_error("%s", e.text);
            else
                ui_message("Attachment saved.");
        } else if (e.code != ERR_EXISTS) {
            ui_error("%s", e.text);
        }
    } else {
        ui_message("Attachment saved.");
    }
    buf_free(&data);
    free(path);
}

static void attach_pipe(struct app *a, const struct message *m, const struct msg_part *p)
{
    struct buf data = BUF_INIT;
    struct err e;
    char *cmd;

    if (ui_prompt("Pipe to command: ", NULL, NULL, NULL, &cmd) < 0)
        return;
    if (*cmd && message_part_decode(m, p, &data, NULL, &e) == 0) {
        ui_suspend();
        if (mailcap_pipe_to_command(cmd, data.data ? data.data : "", data.len, NULL, &e) < 0)
            fprintf(stderr, "correo: %s\n", e.text);
        if (a->cfg->opt.wait_key)
            ui_wait_key();
        else
            ui_resume();
    }
    buf_free(&data);
    free(cmd);
}

static void attach_menu(struct app *a, const struct message *m)
{
    struct list l;
    size_t *part_of;

    memset(&l, 0, sizeof l);
    l.cursor_line = true;
    part_of = xcalloc(m->n_parts ? m->n_parts : 1, sizeof *part_of);
    for (size_t i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = m->parts[i];
        char *type = message_part_mime_type(p);
        char size[32];
        struct buf sz = BUF_INIT;
        human_size(p->body_size, &sz);
        snprintf(size, sizeof size, "%s", buf_cstr(&sz));
        buf_free(&sz);
        char *line = xasprintf("%3zu %*s%s [%s, %s] %s", i + 1, (int)(p->depth * 2), "",
                               p->filename ? p->filename : (p->description ? p->description : ""),
                               type, size, p->n_children ? "" : "");
        part_of[l.n] = i;
        list_add(&l, line);
        free(line);
        free(type);
    }
    for (;;) {
        list_draw(&l, "Attachments", "---Attachments---  (Enter view, s save, | pipe, q back)");
        int op = read_op(a, MENU_ATTACH, -1);
        if (op == -1 || op == -2)
            continue;
        if (op == OP_EXIT || op == OP_QUIT)
            break;
        if (list_move(&l, op))
            continue;
        if (l.n == 0)
            continue;
        const struct msg_part *p = m->parts[part_of[l.cursor]];
        switch (op) {
        case OP_VIEW_ATTACH: case OP_SELECT_ENTRY: case OP_VIEW_MAILCAP: case OP_DISPLAY_MESSAGE:
            attach_view(a, m, p, false);
            break;
        case OP_VIEW_TEXT: case OP_VIEW_PAGER:
            attach_view(a, m, p, true);
            break;
        case OP_SAVE_ENTRY: case OP_SAVE_MESSAGE:
            attach_save(a, m, p);
            break;
        case OP_PIPE_ENTRY: case OP_PIPE_MESSAGE:
            attach_pipe(a, m, p);
            break;
        case OP_HELP:
            show_help(a, MENU_ATTACH);
            break;
        default:
            ui_error("Function not permitted in attach-message mode.");
            break;
        }
    }
    free(part_of);
    list_free(&l);
}

/* ---- writing mail: the editor, then the compose screen ------------------ */

/* One attachment on the compose screen: a file read when the message is
 * built, or content held in memory (a forwarded message, the attachments
 * of a recalled or resent message). */
struct compose_file {
    char *path;                  /* file to read, or NULL when data is held */
    char *data;
    size_t len;
    char *name;                  /* file name the recipient sees; NULL: path's */
    char *description;           /* Content-Description, or NULL */
    char *type;                  /* MIME type; NULL: from the file */
    bool is_message;             /* message/rfc822 */
    bool inline_disp;            /* Content-Disposition: inline */
};

static void compose_file_free(struct compose_file *f)
{
    free(f->path);
    free(f->data);
    free(f->name);
    free(f->description);
    free(f->type);
}

struct compose_state {
    struct draft d;
    char *path;                  /* the draft file the editor writes */
    struct compose_file *files;  /* the attachments, in order */
    size_t n_files;
    size_t cursor;               /* among the attachments */
    bool postponed;              /* left the screen by postponing */
};

static struct compose_file *compose_file_add(struct compose_state *c)
{
    c->files = xreallocarray(c->files, c->n_files + 1, sizeof *c->files);
    memset(&c->files[c->n_files], 0, sizeof c->files[0]);
    c->cursor = c->n_files;
    return &c->files[c->n_files++];
}

static void compose_state_free(struct compose_state *c)
{
    draft_free(&c->d);
    free(c->path);
    for (size_t i = 0; i < c->n_files; i++)
        compose_file_free(&c->files[i]);
    free(c->files);
}

static char *expand_home(const char *p)
{
    if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
        const char *home = getenv("HOME");
        return xasprintf("%s%s", home ? home : "", p + 1);
    }
    return xstrdup(p);
}

static void run_send_hooks(struct app *a, struct compose_state *c);

/* Write the draft into its file, run the editor, read it back.  On a parse
 * error the draft keeps what it had and the file keeps what was written. */
static int compose_edit(struct app *a, struct compose_state *c)
{
    struct buf t = BUF_INIT;
    struct err e;
    int rc = -1;

    if (draft_write_template(&c->d, &t) < 0) {
        ui_error("The message is too large to edit.");
        goto out;
    }
    if (!c->path) {
        if (editor_draft_create(t.data ? t.data : "", t.len, &c->path, &e) < 0) {
            ui_error("%s", e.text);
            goto out;
        }
    } else if (editor_draft_write(c->path, t.data ? t.data : "", t.len, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    ui_suspend();
    rc = editor_run(a->cfg, c->path, &e);
    ui_resume();
    if (rc < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    buf_reset(&t);
    if (editor_draft_read(c->path, &t, &e) < 0 ||
        draft_read_template(&c->d, t.data ? t.data : "", t.len, &e) < 0) {
        ui_error("%s (the text is kept in %s)", e.text, c->path);
        rc = -1;
        goto out;
    }
    run_send_hooks(a, c);
    rc = 0;
out:
    buf_free(&t);
    return rc;
}

/* ---- send-hooks ----------------------------------------------------------- */

struct hook_ctx {
    const struct draft *d;
    struct msg_addr_list from, to, cc;
};

static const char *hook_subject(void *ctx, uint32_t msg)
{
    const struct hook_ctx *h = ctx;
    (void)msg;
    return draft_get(h->d, "Subject");
}

static void hook_addresses(void *ctx, uint32_t msg, enum pattern_addr which, pattern_addr_cb cb,
                           void *cbctx)
{
    const struct hook_ctx *h = ctx;
    const struct msg_addr_list *l = which == PATTERN_ADDR_TO ? &h->to
                                  : which == PATTERN_ADDR_CC ? &h->cc
                                  : which == PATTERN_ADDR_FROM ? &h->from : NULL;
    (void)msg;
    for (size_t i = 0; l && i < l->n; i++)
        if (cb(cbctx, l->v[i].name, l->v[i].addr))
            return;
}

static const struct pattern_msg_ops hook_ops = {
    .subject = hook_subject,
    .addresses = hook_addresses,
};

static char *default_from(const struct config *cfg)
{
    struct compose_msg m;
    struct err e;
    char *f = NULL;

    compose_msg_init(&m);
    if (outbox_from(cfg, &m, &e) == 0 && m.from.n)
        f = draft_format_addr(m.from.v[0].name, m.from.v[0].addr);
    compose_msg_free(&m);
    return f;
}

/* Run the send-hooks whose pattern matches the message being written (a
 * pattern without an operator matches recipients, as mutt's ~C).  A From
 * the user did not change follows what the hooks set. */
static void run_send_hooks(struct app *a, struct compose_state *c)
{
    struct hook_ctx h;
    struct err e;
    char *before = default_from(a->cfg);
    bool ran = false;

    memset(&h, 0, sizeof h);
    h.d = &c->d;
    (void)compose_parse_addresses(draft_get(&c->d, "From") ? draft_get(&c->d, "From") : "",
                                  &h.from, &e);
    (void)compose_parse_addresses(draft_get(&c->d, "To") ? draft_get(&c->d, "To") : "", &h.to, &e);
    (void)compose_parse_addresses(draft_get(&c->d, "Cc") ? draft_get(&c->d, "Cc") : "", &h.cc, &e);
    for (size_t i = 0; i < a->cfg->n_hooks; i++) {
        const struct config_hook *hk = &a->cfg->hooks[i];
        if (strcmp(hk->kind, "send-hook") != 0 || !hk->pattern)
            continue;
        char *text = strpbrk(hk->pattern, "~=!()|") ? xstrdup(hk->pattern)
                                                   : xasprintf("~C %s", hk->pattern);
        struct pattern *p;
        if (pattern_compile(text, 0, &p, &e) < 0) {
            ui_error("send-hook %s: %s", hk->pattern, e.text);
            free(text);
            continue;
        }
        struct pattern_msg pm = {&hook_ops, 0};
        if (pattern_match(p, &pm, &h)) {
            struct rc_diag diag;
            rc_diag_init(&diag);
            config_exec(a->cfg, "send-hook", hk->command, &diag);
            if (diag.n)
                ui_error("%s", diag.msgs[0]);
            rc_diag_free(&diag);
            ran = true;
        }
        pattern_free(p);
        free(text);
    }
    if (ran) {
        char *after = default_from(a->cfg);
        const char *cur = draft_get(&c->d, "From");
        if (after && (!cur || !*cur || (before && strcmp(cur, before) == 0)))
            draft_set(&c->d, "From", after);
        free(after);
    }
    free(before);
    compose_addrs_free(&h.from);
    compose_addrs_free(&h.to);
    compose_addrs_free(&h.cc);
}

/* The compose_msg to send or file: the draft plus the attachments. */
static int compose_build(struct app *a, struct compose_state *c, struct compose_msg *m,
                         struct err *e)
{
    struct alias_db db;
    struct rc_diag diag;
    int rc;

    alias_db_init(&db);
    rc_diag_init(&diag);
    outbox_aliases(a->cfg, &db, &diag);
    rc = outbox_from_draft(a->cfg, &db, &c->d, m, e);
    for (size_t i = 0; rc == 0 && i < c->n_files; i++) {
        const struct compose_file *f = &c->files[i];
        struct compose_attachment *at;

        if (f->path) {
            rc = compose_attach_file(m, f->path, 64u << 20, e);
            if (rc < 0)
                break;
            at = &m->attachments[m->n_attachments - 1];
            if (f->name) {
                free(at->filename);
                at->filename = xstrdup(f->name);
            }
            if (f->type) {
                free(at->mime_type);
                at->mime_type = xstrdup(f->type);
            }
        } else {
            at = compose_add_attachment(m, f->data, f->len, f->name,
                                        f->is_message ? "message/rfc822" : f->type);
            at->is_message = f->is_message;
        }
        if (f->description)
            at->description = xstrdup(f->description);
        if (f->inline_disp)
            at->disposition = COMPOSE_DISP_INLINE;
    }
    if (rc == 0)
        rc = compose_check(m, e);
    alias_db_free(&db);
    rc_diag_free(&diag);
    return rc;
}

/* "type/subtype" with RFC 2045 token characters, not multipart. */
static bool mime_type_ok(const char *t)
{
    static const char tspecials[] = "()<>@,;:\\\"/[]?=";
    const char *slash = strchr(t, '/');

    if (!slash || slash == t || !slash[1] || strchr(slash + 1, '/') ||
        strncasecmp(t, "multipart/", 10) == 0)
        return false;
    for (const char *p = t; *p; p++) {
        if (p == slash)
            continue;
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127 || strchr(tspecials, *p))
            return false;
    }
    return true;
}

/* What the compose screen shows for an attachment. */
static const char *compose_file_label(const struct compose_file *f)
{
    if (f->path)
        return f->path;
    if (f->name)
        return f->name;
    return f->is_message ? "the forwarded message" : "(attachment)";
}

static void compose_draw(struct app *a, struct compose_state *c)
{
    static const char *const fields[] = {"From", "To", "Cc", "Bcc", "Subject", "Reply-To"};
    int row = 0;
    struct buf line = BUF_INIT;

    ui_erase();
    if (a->cfg->opt.help) {
        static const char help[] = "y:Send  q:Abort  t:To  c:CC  s:Subj  a:Attach file  "
                                   "D:Detach  e:Edit  P:Postpone  ?:Help";
        ui_draw(row++, 0, help, strlen(help), THEME_STATUS, 0, true);
    }
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        const char *v = draft_get(&c->d, fields[i]);
        char *safe = sanitize_term_dup(v ? v : "", v ? strlen(v) : 0, 0);
        buf_reset(&line);
        if (buf_printf(&line, "%9s: ", fields[i]) < 0)
            die("compose: unbounded buffer refused data");
        ui_draw(row, 0, line.data, line.len, THEME_HEADER, 0, false);
        ui_draw(row++, (int)line.len, safe, strlen(safe), THEME_NORMAL, 0, true);
        free(safe);
    }
    for (size_t i = 0; i < c->d.n_h; i++) {
        bool std = false;
        for (size_t k = 0; k < ARRAY_LEN(fields); k++)
            std |= strcasecmp(c->d.h[i].name, fields[k]) == 0;
        if (std)
            continue;
        buf_reset(&line);
        if (buf_printf(&line, "%9s: %s", c->d.h[i].name, c->d.h[i].value) < 0)
            die("compose: unbounded buffer refused data");
        char *safe = sanitize_term_dup(line.data, line.len, 0);
        ui_draw(row++, 0, safe, strlen(safe), THEME_HDRDEFAULT, 0, true);
        free(safe);
    }
    row++;
    static const char att[] = "-- Attachments";
    ui_draw(row++, 0, att, strlen(att), THEME_ATTACHMENT, 0, true);
    size_t body_len = c->d.body ? strlen(c->d.body) : 0;
    buf_reset(&line);
    if (buf_printf(&line, "    [text/plain, %zu bytes] the message text", body_len) < 0)
        die("compose: unbounded buffer refused data");
    ui_draw(row++, 0, line.data, line.len, THEME_NORMAL, 0, true);
    for (size_t i = 0; i < c->n_files && row < ui_rows() - 2; i++) {
        const struct compose_file *f = &c->files[i];
        char type[128];

        buf_reset(&line);
        if (f->is_message)
            snprintf(type, sizeof type, "message/rfc822");
        else if (f->type)
            snprintf(type, sizeof type, "%s", f->type);
        else if (compose_mime_type(f->path ? f->path : "", type, sizeof type) < 0)
            snprintf(type, sizeof type, "application/octet-stream");
        if (buf_printf(&line, "  %zu [%s%s] %s", i + 1, type,
                       f->inline_disp ? ", inline" : "", compose_file_label(f)) < 0 ||
            (f->name && f->path && buf_printf(&line, " (sent as %s)", f->name) < 0) ||
            (f->description && buf_printf(&line, "  \"%s\"", f->description) < 0))
            die("compose: unbounded buffer refused data");
        char *safe = sanitize_term_dup(line.data, line.len, 0);
        ui_draw(row++, 0, safe, strlen(safe), i == c->cursor ? THEME_INDICATOR : THEME_NORMAL,
                0, true);
        free(safe);
    }
    static const char status[] = "---correo: Compose";
    ui_draw(ui_rows() - 2, 0, status, strlen(status), THEME_STATUS, 0, true);
    ui_draw_message();
    ui_refresh();
    buf_free(&line);
}

struct address_completion {
    struct app *a;
    const struct alias_db *db;
};

/* $query_command for the word being typed: one answer is taken as it is,
 * several are offered in a list.  Returns the number of answers used
 * (0: none, the prompt beeps). */
static int complete_by_query(struct app *a, struct buf *text, size_t keep, const char *word)
{
    struct alias_query_results r;
    struct err e;
    size_t pick = 0;

    ui_message("Looking up %s ...", word);
    ui_draw_message();
    ui_refresh();
    if (alias_query(a->cfg->opt.query_command, word, &r, &e) < 0) {
        ui_error("Query: %s", e.text);
        return 0;
    }
    ui_clear_message();
    if (r.n == 0) {
        alias_query_results_free(&r);
        ui_error("No matches for %s.", word);
        return 0;
    }
    if (r.n > 1) {
        struct list l;
        memset(&l, 0, sizeof l);
        l.cursor_line = true;
        for (size_t i = 0; i < r.n; i++) {
            char *line = xasprintf("%3zu  %-30s  %-24s  %s", i + 1, r.v[i].addr,
                                   r.v[i].name ? r.v[i].name : "",
                                   r.v[i].other ? r.v[i].other : "");
            list_add(&l, line);
            free(line);
        }
        char *title = xasprintf("Query '%s': %s", word, r.header ? r.header : "");
        for (;;) {
            list_draw(&l, title, "---Query---  (Enter select, q cancel)");
            int op = read_op(a, MENU_GENERIC, -1);
            if (op == -1 || op == -2)
                continue;
            if (op == OP_EXIT || op == OP_QUIT) {
                pick = r.n;
                break;
            }
            if (op == OP_SELECT_ENTRY) {
                pick = l.cursor;
                break;
            }
            list_move(&l, op);
        }
        free(title);
        list_free(&l);
        ui_erase();
        ui_refresh();
    }
    int n = 0;
    if (pick < r.n) {
        char *one = draft_format_addr(r.v[pick].name, r.v[pick].addr);
        buf_truncate(text, keep);
        n = buf_puts(text, one) < 0 ? 0 : 1;
        free(one);
    }
    alias_query_results_free(&r);
    return n;
}

/* Tab in an address prompt: complete the last address from the aliases,
 * and when none matches, from $query_command. */
static int complete_address(void *ctx, struct buf *text)
{
    struct address_completion *ac = ctx;
    const struct alias_db *db = ac->db;
    const char *all = buf_cstr(text);
    const char *word = strrchr(all, ',');
    struct alias_candidates cands;
    int n;

    word = word ? word + 1 : all;
    while (*word == ' ')
        word++;
    size_t keep = (size_t)(word - all);
    alias_complete(db, word, &cands);
    n = (int)cands.n;
    if (n == 0 && *word && ac->a->cfg->opt.query_command && *ac->a->cfg->opt.query_command) {
        char *w = xstrdup(word);
        alias_candidates_free(&cands);
        n = complete_by_query(ac->a, text, keep, w);
        free(w);
        return n;
    }
    if (n == 1) {
        buf_truncate(text, keep);
        if (buf_puts(text, cands.v[0].insert) < 0)
            n = 0;
    } else if (n > 1) {
        char *common = alias_common_prefix(&cands);
        if (strlen(common) > strlen(word) && alias_prefix_match(common, word)) {
            buf_truncate(text, keep);
            if (buf_puts(text, common) < 0)
                n = 0;
        } else {
            struct buf list = BUF_INIT;
            for (size_t i = 0; i < cands.n && i < 8; i++)
                if (buf_printf(&list, "%s%s", i ? ", " : "", cands.v[i].insert) < 0)
                    break;
            ui_message("%d matches: %s%s", n, buf_cstr(&list), n > 8 ? ", ..." : "");
            buf_free(&list);
        }
        free(common);
    }
    alias_candidates_free(&cands);
    return n;
}

static void compose_prompt_field(struct app *a, struct compose_state *c, const char *field)
{
    char *prompt = xasprintf("%s: ", field), *value;
    const char *cur = draft_get(&c->d, field);
    bool addresses = strcasecmp(field, "Subject") != 0;
    struct alias_db db;
    struct rc_diag diag;

    alias_db_init(&db);
    rc_diag_init(&diag);
    if (addresses)
        outbox_aliases(a->cfg, &db, &diag);
    struct address_completion ac = {a, &db};
    int rc = ui_prompt(prompt, cur ? cur : "", addresses ? complete_address : NULL, &ac, &value);
    alias_db_free(&db);
    rc_diag_free(&diag);
    if (rc == 0) {
        if (strpbrk(value, "\r\n"))
            ui_error("A header cannot contain a line break.");
        else
            draft_set(&c->d, field, value);
        free(value);
    }
    free(prompt);
}

/* Change the description, the file name sent, or the MIME type of the
 * attachment under the cursor. */
static void compose_edit_attachment(struct compose_state *c, int op)
{
    struct compose_file *f;
    const char *prompt, *cur;
    char **slot, *typed, *base = NULL, type[128];

    if (c->n_files == 0) {
        ui_error("There are no attachments.");
        return;
    }
    f = &c->files[c->cursor];
    if (op == OP_EDIT_DESCRIPTION) {
        prompt = "Description: ";
        slot = &f->description;
        cur = f->description;
    } else if (op == OP_RENAME_ATTACHMENT) {
        prompt = "Send attachment with name: ";
        slot = &f->name;
        if (!f->name && f->path) {
            const char *slash = strrchr(f->path, '/');
            base = xstrdup(slash ? slash + 1 : f->path);
        }
        cur = f->name ? f->name : base;
    } else {
        if (f->is_message) {
            ui_error("A forwarded message stays message/rfc822.");
            return;
        }
        prompt = "Content-Type: ";
        slot = &f->type;
        if (!f->type && compose_mime_type(f->path ? f->path : "", type, sizeof type) == 0)
            cur = type;
        else
            cur = f->type;
    }
    int rc = ui_prompt(prompt, cur ? cur : "", NULL, NULL, &typed);
    free(base);
    if (rc < 0)
        return;
    if (strpbrk(typed, "\r\n")) {
        ui_error("A header cannot contain a line break.");
    } else if (op == OP_EDIT_TYPE && *typed && !mime_type_ok(typed)) {
        ui_error("%s is not a type/subtype.", typed);
    } else if (op == OP_RENAME_ATTACHMENT && strchr(typed, '/')) {
        ui_error("A file name cannot contain '/'.");
    } else {
        free(*slot);                /* empty: back to the default */
        *slot = *typed ? xstrdup(typed) : NULL;
    }
    free(typed);
}

/* Postpone c: file it in $postponed.  Returns 0 when kept. */
static int compose_postpone(struct app *a, struct compose_state *c)
{
    struct compose_msg m;
    struct err e;
    char *where = NULL;
    int rc;

    compose_msg_init(&m);
    rc = compose_build(a, c, &m, &e);
    if (rc == 0)
        rc = outbox_file(a->cfg, a->cfg->opt.postponed && *a->cfg->opt.postponed
                                     ? a->cfg->opt.postponed : "+Drafts",
                         &m, MAILDIR_F_DRAFT, &where, &e);
    if (rc < 0)
        ui_error("Not postponed: %s", e.text);
    else
        ui_message("Message postponed.");
    free(where);
    compose_msg_free(&m);
    return rc;
}

/* The compose screen.  Returns 1 when the message was sent. */
static int compose_screen(struct app *a, struct compose_state *c)
{
    for (;;) {
        compose_draw(a, c);
        int op = read_op(a, MENU_COMPOSE, -1);
        if (op == -1 || op == -2)
            continue;
        ui_clear_message();
        switch (op) {
        case OP_SEND_MESSAGE: {
            struct compose_msg m;
            struct err e;
            compose_msg_init(&m);
            if (compose_build(a, c, &m, &e) < 0) {
                ui_error("%s", e.text);
                compose_msg_free(&m);
                break;
            }
            ui_message("Sending message...");
            ui_draw_message();
            ui_refresh();
            if (outbox_send(a->cfg, &m, &e) < 0) {
                ui_error("Not sent: %s", e.text);
                compose_msg_free(&m);
                break;
            }
            if (a->cfg->opt.record && *a->cfg->opt.record) {
                struct err re;
                if (outbox_file(a->cfg, a->cfg->opt.record, &m, MAILDIR_F_SEEN, NULL, &re) < 0) {
                    compose_msg_free(&m);
                    ui_error("Sent, but not copied to %s: %s", a->cfg->opt.record, re.text);
                    return 1;
                }
            }
            compose_msg_free(&m);
            ui_message("Mail sent.");
            return 1;
        }
        case OP_EDIT_MESSAGE: case OP_EDIT_HEADERS:
            (void)compose_edit(a, c);
            break;
        case OP_EDIT_TO: compose_prompt_field(a, c, "To"); break;
        case OP_EDIT_CC: compose_prompt_field(a, c, "Cc"); break;
        case OP_EDIT_BCC: compose_prompt_field(a, c, "Bcc"); break;
        case OP_EDIT_SUBJECT: compose_prompt_field(a, c, "Subject"); break;
        case OP_EDIT_REPLY_TO: compose_prompt_field(a, c, "Reply-To"); break;
        case OP_EDIT_FROM: compose_prompt_field(a, c, "From"); break;
        case OP_ATTACH_FILE: {
            char *typed;
            if (ui_prompt("Attach file: ", NULL, NULL, NULL, &typed) < 0)
                break;
            if (*typed) {
                char *path = expand_home(typed);
                if (access(path, R_OK) != 0) {
                    ui_error("%s: %s", typed, strerror(errno));
                    free(path);
                } else {
                    compose_file_add(c)->path = path;
                }
            }
            free(typed);
            break;
        }
        case OP_DETACH_FILE:
            if (c->n_files == 0) {
                ui_error("The message text cannot be deleted.");
                break;
            }
            compose_file_free(&c->files[c->cursor]);
            memmove(&c->files[c->cursor], &c->files[c->cursor + 1],
                    (c->n_files - c->cursor - 1) * sizeof *c->files);
            c->n_files--;
            if (c->cursor >= c->n_files && c->cursor > 0)
                c->cursor--;
            break;
        case OP_EDIT_DESCRIPTION: case OP_RENAME_ATTACHMENT: case OP_EDIT_TYPE:
            compose_edit_attachment(c, op);
            break;
        case OP_TOGGLE_DISPOSITION:
            if (c->n_files == 0)
                ui_error("There are no attachments.");
            else
                c->files[c->cursor].inline_disp = !c->files[c->cursor].inline_disp;
            break;
        case OP_NEXT_ENTRY:
            if (c->cursor + 1 < c->n_files)
                c->cursor++;
            break;
        case OP_PREVIOUS_ENTRY:
            if (c->cursor > 0)
                c->cursor--;
            break;
        case OP_POSTPONE_MESSAGE:
            if (compose_postpone(a, c) == 0) {
                c->postponed = true;
                return 0;
            }
            break;
        case OP_EXIT: case OP_QUIT: {
            int yes = ui_yesno("Abort this message (it is not kept)?", 0);
            if (yes == 1) {
                ui_message("Mail not sent.");
                return 0;
            }
            break;
        }
        case OP_HELP:
            show_help(a, MENU_COMPOSE);
            break;
        default:
            ui_error("Function not permitted in compose mode.");
            break;
        }
    }
}

/* Write, edit and send a message; orig (may be VIEW_NONE) gets the
 * replied / forwarded flag when it is sent. */
static void write_mail(struct app *a, int op)
{
    struct compose_state c;
    uint32_t msg = view_current(&a->view);
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    struct err e;
    int rc = 0;

    memset(&c, 0, sizeof c);
    draft_init(&c.d);
    if (op != OP_MAIL) {
        if (msg == VIEW_NONE) {
            ui_error("No message to reply to.");
            return;
        }
        if (read_whole(a, msg, &raw) < 0)
            return;
        if (message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, &e) < 0) {
            ui_error("%s", e.text);
            buf_free(&raw);
            return;
        }
    }
    switch (op) {
    case OP_MAIL: draft_new(a->cfg, &c.d); break;
    case OP_REPLY: rc = draft_reply(a->cfg, m, DRAFT_REPLY, &c.d, &e); break;
    case OP_GROUP_REPLY: rc = draft_reply(a->cfg, m, DRAFT_GROUP_REPLY, &c.d, &e); break;
    case OP_LIST_REPLY: rc = draft_reply(a->cfg, m, DRAFT_LIST_REPLY, &c.d, &e); break;
    default: {
        enum config_quad q = a->cfg->opt.mime_forward;
        int attach = q == CFG_YES ? 1 : q == CFG_NO ? 0
                   : ui_yesno("Forward as attachment?", q == CFG_ASK_YES ? 1 : 0);
        if (attach < 0) {
            rc = err_set(&e, ERR_INVAL, "Forward aborted.");
        } else if (attach == 1) {
            /* the original, unchanged, as message/rfc822 */
            draft_new(a->cfg, &c.d);
            struct buf subj = BUF_INIT;
            if (buf_printf(&subj, "Fwd: %s", m->env.subject ? m->env.subject : "") < 0)
                die("forward: unbounded buffer refused data");
            draft_set(&c.d, "Subject", buf_cstr(&subj));
            buf_free(&subj);
            struct compose_file *f = compose_file_add(&c);
            f->len = raw.len;
            f->data = xmemdup0(raw.data ? raw.data : "", raw.len);
            f->is_message = true;
            f->inline_disp = true;
        } else {
            rc = draft_forward(a->cfg, m, &c.d, &e);
        }
        break;
    }
    }
    message_free(m);
    buf_free(&raw);
    if (rc < 0) {
        ui_error("%s", e.text);
        compose_state_free(&c);
        return;
    }
    if (op == OP_REPLY || op == OP_GROUP_REPLY || op == OP_LIST_REPLY) {
        enum config_quad q = a->cfg->opt.include;
        int inc = q == CFG_YES ? 1 : q == CFG_NO ? 0
                : ui_yesno("Include message in reply?", q == CFG_ASK_YES ? 1 : 0);
        if (inc < 0) {
            compose_state_free(&c);
            return;
        }
        if (inc == 0)
            draft_drop_quote(a->cfg, &c.d);
    }
    if (compose_edit(a, &c) < 0 && !c.path) {
        compose_state_free(&c);
        return;
    }
    int sent = compose_screen(a, &c);
    /* sent, postponed or deliberately aborted: the draft file has served */
    if (c.path)
        unlink(c.path);
    if (sent == 1 && op != OP_MAIL && !a->readonly) {
        unsigned f = cur_smsg(a, msg)->flags | (op == OP_FORWARD_MESSAGE ? MSG_PASSED : MSG_REPLIED);
        (void)set_msg_flags(a, msg, f);
    }
    compose_state_free(&c);
}

/* The parts of a stored message other than its text, as attachments held
 * in memory: a recalled or resent message keeps them.  A message/rfc822
 * part travels whole; the other alternatives of the text are left out. */
static int stored_attachments(struct compose_state *c, const struct message *m,
                              const struct msg_part *text, struct err *e)
{
    for (size_t i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = m->parts[i];
        bool skip = p == text || (p->n_children > 0 && !p->envelope);

        for (const struct msg_part *q = p->parent; q && !skip; q = q->parent)
            skip = q->envelope != NULL;             /* inside a forwarded message */
        if (!skip && text && p->parent && p->parent == text->parent &&
            strcmp(p->parent->subtype ? p->parent->subtype : "", "alternative") == 0)
            skip = true;                            /* the HTML twin of the text */
        if (skip || p == m->root)
            continue;
        struct buf data = BUF_INIT;
        if (message_part_decode(m, p, &data, NULL, e) < 0) {
            buf_free(&data);
            return -1;
        }
        struct compose_file *f = compose_file_add(c);
        f->data = buf_steal(&data, &f->len);
        f->is_message = p->envelope != NULL;
        if (!f->is_message)
            f->type = message_part_mime_type(p);
        if (p->filename && *p->filename)
            f->name = xstrdup(p->filename);
        if (p->description && *p->description)
            f->description = xstrdup(p->description);
        f->inline_disp = p->disposition == MSG_DISP_INLINE;
    }
    return 0;
}

/* A stored message (postponed, or one to resend) as a draft: addresses,
 * subject, text, threading headers and attachments. */
static int draft_from_stored(struct compose_state *c, const struct message *m, struct err *e)
{
    static const char *const fields[] = {"From", "To", "Cc", "Bcc", "Subject", "Reply-To"};
    const struct msg_addr_list *lists[] = {&m->env.from, &m->env.to, &m->env.cc, &m->env.bcc,
                                           NULL, &m->env.reply_to};
    for (size_t i = 0; i < ARRAY_LEN(fields); i++) {
        if (!lists[i]) {
            draft_set(&c->d, fields[i], m->env.subject ? m->env.subject : "");
            continue;
        }
        struct buf v = BUF_INIT;
        for (size_t k = 0; k < lists[i]->n; k++) {
            char *one = draft_format_addr(lists[i]->v[k].name, lists[i]->v[k].addr);
            if ((v.len && buf_puts(&v, ", ") < 0) || buf_puts(&v, one) < 0)
                die("recall: unbounded buffer refused data");
            free(one);
        }
        draft_set(&c->d, fields[i], buf_cstr(&v));
        buf_free(&v);
    }
    struct buf body = BUF_INIT;
    const struct msg_part *bp = message_best_text(m, NULL);
    if (bp && message_part_text(m, bp, &body, NULL, NULL, e) < 0) {
        buf_free(&body);
        return -1;
    }
    free(c->d.body);
    c->d.body = buf_steal(&body, NULL);
    if (m->env.in_reply_to)
        c->d.in_reply_to = xstrdup(m->env.in_reply_to);
    for (size_t i = 0; i < m->env.n_references; i++) {
        c->d.references = xreallocarray(c->d.references, c->d.n_references + 1,
                                        sizeof *c->d.references);
        c->d.references[c->d.n_references++] = xstrdup(m->env.references[i]);
    }
    return stored_attachments(c, m, bp, e);
}

/* resend-message: a stored message as the template of a new one. */
static void resend_mail(struct app *a)
{
    struct compose_state c;
    uint32_t msg = view_current(&a->view);
    struct buf raw = BUF_INIT, t = BUF_INIT;
    struct message *m = NULL;
    struct err e;

    if (msg == VIEW_NONE) {
        ui_error("No visible messages.");
        return;
    }
    memset(&c, 0, sizeof c);
    draft_init(&c.d);
    if (read_whole(a, msg, &raw) < 0)
        goto out;
    if (message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    if (draft_from_stored(&c, m, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    /* a new message: no threading, From is the user's */
    free(c.d.in_reply_to);
    c.d.in_reply_to = NULL;
    for (size_t i = 0; i < c.d.n_references; i++)
        free(c.d.references[i]);
    c.d.n_references = 0;
    {
        char *from = default_from(a->cfg);
        if (from)
            draft_set(&c.d, "From", from);
        free(from);
    }
    if (compose_edit(a, &c) < 0 && !c.path)
        goto out;
    (void)compose_screen(a, &c);
    if (c.path)
        unlink(c.path);
out:
    message_free(m);
    buf_free(&raw);
    buf_free(&t);
    compose_state_free(&c);
}

/* Where a recalled message came from, so that it can be removed once the
 * message is sent or postponed again: a Maildir file, or a UID of an IMAP
 * folder (valid while the folder keeps its UIDVALIDITY). */
struct recall_src {
    char *path;
    char *url;
    uint32_t uidvalidity, uid;
};

/* The user's choice among n entries listed in l (no choosing when there
 * is one): its index, or -1. */
static long recall_choose(struct app *a, struct list *l, size_t n)
{
    if (n == 1)
        return 0;
    for (;;) {
        list_draw(l, "Postponed messages", "---Postponed---  (Enter recall, q back)");
        int op = read_op(a, MENU_GENERIC, -1);
        if (op == -1 || op == -2)
            continue;
        if (op == OP_EXIT || op == OP_QUIT)
            return -1;
        if (op == OP_SELECT_ENTRY)
            return (long)l->cursor;
        list_move(l, op);
    }
}

/* recall_pick from an IMAP folder. */
static int recall_pick_imap(struct app *a, struct compose_state *c, const char *url,
                            struct recall_src *src)
{
    struct imap_summary_list sl;
    struct imap_url u;
    struct imap_conn *conn;
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    struct list l;
    struct err e;
    size_t *idx, n = 0;
    long chosen;
    int rc = -1;

    imap_settings_from_config(a->cfg);
    if (imap_folders_connect(url, &u, &conn, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    if (imap_folders_summaries(conn, u.folder, &sl, &e) < 0) {
        if (e.code == ERR_PROTO)
            ui_error("No postponed messages.");
        else
            ui_error("%s", e.text);
        imap_close(conn);
        imap_url_free(&u);
        return -1;
    }
    idx = XNEWARRAY(size_t, sl.n ? sl.n : 1);
    memset(&l, 0, sizeof l);
    l.cursor_line = true;
    for (size_t i = 0; i < sl.n; i++) {
        if (sl.v[i].flags & MSG_TRASHED)
            continue;            /* marked for deletion */
        char *line = xasprintf("%3zu  %s", n + 1, *sl.v[i].subject ? sl.v[i].subject : "(no subject)");
        list_add(&l, line);
        free(line);
        idx[n++] = i;
    }
    if (n == 0) {
        ui_error("No postponed messages.");
        goto out;
    }
    chosen = recall_choose(a, &l, n);
    if (chosen < 0)
        goto out;
    const struct imap_summary *pick = &sl.v[idx[chosen]];
    if (imap_folders_fetch(conn, u.folder, sl.uidvalidity, pick->uid, &raw, &e) < 0 ||
        message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, &e) < 0 ||
        draft_from_stored(c, m, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    src->url = xstrdup(url);
    src->uidvalidity = sl.uidvalidity;
    src->uid = pick->uid;
    rc = 0;
out:
    message_free(m);
    buf_free(&raw);
    list_free(&l);
    free(idx);
    imap_summary_list_free(&sl);
    imap_close(conn);
    imap_url_free(&u);
    return rc;
}

/* The recalled message's old copy goes: the message was sent or postponed
 * anew. */
static void recall_remove(struct app *a, const struct recall_src *src)
{
    struct imap_url u;
    struct imap_conn *conn;
    struct err e;

    if (src->path) {
        unlink(src->path);
        return;
    }
    if (!src->url)
        return;
    imap_settings_from_config(a->cfg);
    if (imap_folders_connect(src->url, &u, &conn, &e) < 0) {
        ui_error("The recalled draft is still in the postponed folder: %s", e.text);
        return;
    }
    if (imap_folders_remove(conn, u.folder, src->uidvalidity, src->uid, &e) < 0)
        ui_error("The recalled draft is still in the postponed folder: %s", e.text);
    imap_close(conn);
    imap_url_free(&u);
}

/* The postponed message chosen by the user, as a draft; src tells where it
 * is kept, so that it can be removed once the message is sent or postponed
 * again. */
static int recall_pick(struct app *a, struct compose_state *c, struct recall_src *src)
{
    const char *box = a->cfg->opt.postponed && *a->cfg->opt.postponed ? a->cfg->opt.postponed
                                                                        : "+Drafts";
    char **path = &src->path;
    if (outbox_is_imap(a->cfg, box)) {
        char *url = config_mailbox_path(a->cfg, box);
        int rc = recall_pick_imap(a, c, url, src);
        free(url);
        return rc;
    }
    struct maildir_folder *f;
    struct maildir_scan *scan;
    struct err e;
    struct list l;
    size_t chosen = 0;
    int rc = -1;

    if (outbox_open_folder(a->cfg, box, &f, &e) < 0 || maildir_scan(f, 0, &scan, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    if (scan->n == 0) {
        ui_error("No postponed messages.");
        free(scan);
        maildir_folder_close(f);
        return -1;
    }
    memset(&l, 0, sizeof l);
    l.cursor_line = true;
    for (size_t i = 0; i < scan->n; i++) {
        char *p = xasprintf("%s/%s/%s", f->path, scan->v[i].sub == MAILDIR_SUB_NEW ? "new" : "cur",
                            scan->v[i].name);
        struct buf raw = BUF_INIT;
        struct message *m = NULL;
        char *line;
        if (editor_draft_read(p, &raw, &e) == 0 &&
            message_parse_headers(raw.data ? raw.data : "", raw.len, NULL, &m, &e) == 0)
            line = xasprintf("%3zu  %s", i + 1, m->env.subject ? m->env.subject : "(no subject)");
        else
            line = xasprintf("%3zu  (unreadable: %s)", i + 1, scan->v[i].name);
        list_add(&l, line);
        free(line);
        message_free(m);
        buf_free(&raw);
        free(p);
    }
    if (scan->n > 1) {
        for (;;) {
            list_draw(&l, "Postponed messages", "---Postponed---  (Enter recall, q back)");
            int op = read_op(a, MENU_GENERIC, -1);
            if (op == -1 || op == -2)
                continue;
            if (op == OP_EXIT || op == OP_QUIT) {
                list_free(&l);
                free(scan);
                maildir_folder_close(f);
                return -1;
            }
            if (op == OP_SELECT_ENTRY)
                break;
            list_move(&l, op);
        }
        chosen = l.cursor;
    }
    list_free(&l);

    *path = xasprintf("%s/%s/%s", f->path, scan->v[chosen].sub == MAILDIR_SUB_NEW ? "new" : "cur",
                      scan->v[chosen].name);
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    if (editor_draft_read(*path, &raw, &e) < 0 ||
        message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    if (draft_from_stored(c, m, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    rc = 0;
out:
    message_free(m);
    buf_free(&raw);
    free(scan);
    maildir_folder_close(f);
    if (rc < 0) {
        free(*path);
        *path = NULL;
    }
    return rc;
}

static void recall_mail(struct app *a)
{
    struct compose_state c;
    struct recall_src src = {NULL, NULL, 0, 0};

    memset(&c, 0, sizeof c);
    draft_init(&c.d);
    if (recall_pick(a, &c, &src) < 0) {
        compose_state_free(&c);
        return;
    }
    struct buf t = BUF_INIT;
    struct err e;
    if (draft_write_template(&c.d, &t) < 0 ||
        editor_draft_create(t.data ? t.data : "", t.len, &c.path, &e) < 0) {
        ui_error("Could not make a draft file.");
        buf_free(&t);
        free(src.path);
        free(src.url);
        compose_state_free(&c);
        return;
    }
    buf_free(&t);
    int sent = compose_screen(a, &c);
    /* the recalled copy goes once the message was sent or postponed anew */
    if (sent == 1 || c.postponed)
        recall_remove(a, &src);
    if (c.path)
        unlink(c.path);
    free(src.path);
    free(src.url);
    compose_state_free(&c);
}

/* Bounce: the original, unchanged but for Resent- headers, to new
 * recipients (mutt's bounce-message). */
static void bounce_message(struct app *a)
{
    uint32_t msg = view_current(&a->view);
    struct alias_db db;
    struct rc_diag diag;
    struct compose_msg me;
    struct msg_addrlist to = {NULL, 0};
    struct buf raw = BUF_INIT, data = BUF_INIT;
    struct err e;
    char *typed = NULL, **rcpts = NULL;
    int rc = -1;

    if (msg == VIEW_NONE) {
        ui_error("No visible messages.");
        return;
    }
    alias_db_init(&db);
    rc_diag_init(&diag);
    compose_msg_init(&me);
    outbox_aliases(a->cfg, &db, &diag);
    if (outbox_from(a->cfg, &me, &e) < 0) {
        ui_error("%s", e.text);
        goto out;
    }
    struct address_completion ac = {a, &db};
    if (ui_prompt("Bounce message to: ", NULL, complete_address, &ac, &typed) < 0 || !*typed)
        goto out;
    if (alias_expand(&db, typed, &to, &e) < 0 || to.n == 0) {
        ui_error("%s", to.n ? e.text : "No recipients.");
        goto out;
    }
    rcpts = xcalloc(to.n, sizeof *rcpts);
    struct buf list = BUF_INIT;
    for (size_t i = 0; i < to.n; i++) {
        rcpts[i] = to.v[i].addr;
        char *one = draft_format_addr(to.v[i].name, to.v[i].addr);
        if ((i && buf_puts(&list, ", ") < 0) || buf_puts(&list, one) < 0)
            die("bounce: unbounded buffer refused data");
        free(one);
    }
    char *q = xasprintf("Bounce message to %s?", buf_cstr(&list));
    char *sq = sanitize_term_dup(q, strlen(q), 0);
    int yes = ui_yesno(sq, 1);
    free(q);
    free(sq);
    if (yes != 1 || read_whole(a, msg, &raw) < 0) {
        buf_free(&list);
        goto out;
    }
    /* Resent- headers, then the original with CRLF line ends and without
     * any Bcc field (a copy from Sent may carry one). */
    char date[64], *from = draft_format_addr(me.from.v[0].name, me.from.v[0].addr);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S %z", &tm);
    if (buf_printf(&data, "Resent-From: %s\r\nResent-To: %s\r\nResent-Date: %s\r\n"
                          "Resent-Message-ID: <%lx.%ld.bounce@correo>\r\n",
                   from, buf_cstr(&list), date, (unsigned long)random(), (long)now) < 0)
        die("bounce: unbounded buffer refused data");
    free(from);
    buf_free(&list);
    bool in_header = true, skipping = false;
    const char *p = raw.data ? raw.data : "", *end = p + raw.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t body_n = n && p[n - 1] == '\r' ? n - 1 : n;
        if (in_header) {
            if (body_n == 0)
                in_header = false;
            else if (p[0] == ' ' || p[0] == '\t')
                ; /* continuation: keep or skip with its field */
            else
                skipping = body_n >= 4 && strncasecmp(p, "bcc:", 4) == 0;
        }
        if (!(in_header && skipping)) {
            if (buf_append(&data, p, body_n) < 0 || buf_puts(&data, "\r\n") < 0)
                die("bounce: unbounded buffer refused data");
        }
        p += n + (nl ? 1 : 0);
    }
    ui_message("Bouncing message...");
    ui_draw_message();
    ui_refresh();
    rc = outbox_send_raw(a->cfg, me.from.v[0].addr, (const char *const *)rcpts, to.n,
                         data.data ? data.data : "", data.len, &e);
    if (rc < 0)
        ui_error("Not bounced: %s", e.text);
    else
        ui_message("Message bounced.");
out:
    free(rcpts);
    free(typed);
    alias_addrlist_free(&to);
    buf_free(&raw);
    buf_free(&data);
    compose_msg_free(&me);
    alias_db_free(&db);
    rc_diag_free(&diag);
}

/* Drafts left by a crash of an earlier run go to $postponed at start. */
static void rescue_orphans(struct app *a)
{
    char **paths;
    size_t n = editor_orphans(&paths), kept = 0;

    for (size_t i = 0; i < n; i++) {
        struct compose_state c;
        struct buf t = BUF_INIT;
        struct err e;
        memset(&c, 0, sizeof c);
        draft_init(&c.d);
        if (editor_draft_read(paths[i], &t, &e) == 0 &&
            draft_read_template(&c.d, t.data ? t.data : "", t.len, &e) == 0 &&
            compose_postpone(a, &c) == 0) {
            unlink(paths[i]);
            kept++;
        }
        buf_free(&t);
        compose_state_free(&c);
        free(paths[i]);
    }
    free(paths);
    if (kept)
        ui_message("%zu unfinished message%s from an earlier run moved to the postponed folder.",
                   kept, kept == 1 ? " was" : "s were");
}

/* ---- index functions that work from the index and the pager ------------- */

static void go_line(struct app *a, size_t line, const char *none)
{
    if (line == VIEW_NONE)
        ui_error("%s", none);
    else
        a->view.cursor = line;
}

static size_t next_thread_line(struct app *a, bool backward)
{
    for (size_t k = 1; k <= a->view.n_lines; k++) {
        size_t line;
        if (backward) {
            if (k > a->view.cursor)
                break;
            line = a->view.cursor - k;
        } else {
            line = a->view.cursor + k;
            if (line >= a->view.n_lines)
                break;
        }
        if (a->view.lines[line].depth == 0)
            return line;
    }
    return VIEW_NONE;
}

static void thread_flags(struct app *a, bool subthread, unsigned add, unsigned remove)
{
    uint32_t *members;
    size_t n = view_thread_members(&a->view, view_current(&a->view), subthread, &members);

    for (size_t i = 0; i < n; i++)
        if (set_msg_flags(a, members[i], (cur_smsg(a, members[i])->flags | add) & ~remove) < 0)
            break;
    free(members);
}

/* Functions on messages; returns false if op is not one of them. */
static bool message_op(struct app *a, int op)
{
    struct err e;
    uint32_t cur = view_current(&a->view);

    switch (op) {
    case OP_DELETE_MESSAGE:
        change_flags(a, MSG_DELETED, 0, false);
        move_on_resolve(a);
        return true;
    case OP_UNDELETE_MESSAGE:
        change_flags(a, 0, MSG_DELETED, false);
        move_on_resolve(a);
        return true;
    case OP_DELETE_THREAD: case OP_DELETE_SUBTHREAD:
        thread_flags(a, op == OP_DELETE_SUBTHREAD, MSG_DELETED, 0);
        return true;
    case OP_UNDELETE_THREAD: case OP_UNDELETE_SUBTHREAD:
        thread_flags(a, op == OP_UNDELETE_SUBTHREAD, 0, MSG_DELETED);
        return true;
    case OP_DELETE_PATTERN:
        apply_to_pattern(a, "Delete messages matching: ", MSG_DELETED, 0);
        return true;
    case OP_UNDELETE_PATTERN:
        apply_to_pattern(a, "Undelete messages matching: ", 0, MSG_DELETED);
        return true;
    case OP_UNDO: {
        size_t n = 0;
        for (uint32_t i = 0; i < store_count(&a->mb->store); i++)
            if (store_get(&a->mb->store, i)->flags & MSG_DELETED) {
                if (set_msg_flags(a, i, store_get(&a->mb->store, i)->flags & ~MSG_DELETED) < 0)
                    break;
                n++;
            }
        ui_message("%zu pending deletion%s undone.", n, n == 1 ? "" : "s");
        return true;
    }
    case OP_FLAG_MESSAGE:
        change_flags(a, MSG_FLAGGED, 0, true);
        move_on_resolve(a);
        return true;
    case OP_TOGGLE_NEW:
        if (cur != VIEW_NONE) {
            bool unread = !(cur_smsg(a, cur)->flags & MSG_SEEN);
            if (unread)
                change_flags(a, MSG_SEEN, MSG_NEW, false);
            else
                change_flags(a, 0, MSG_SEEN, false);
        }
        move_on_resolve(a);
        return true;
    case OP_READ_THREAD: case OP_READ_SUBTHREAD:
        thread_flags(a, op == OP_READ_SUBTHREAD, MSG_SEEN, MSG_NEW);
        return true;
    case OP_TAG_ENTRY:
        if (cur != VIEW_NONE) {
            if (set_msg_flags(a, cur, cur_smsg(a, cur)->flags ^ MSG_TAGGED) == 0)
                move_on_resolve(a);
        }
        return true;
    case OP_TAG_THREAD: case OP_TAG_SUBTHREAD:
        thread_flags(a, op == OP_TAG_SUBTHREAD, MSG_TAGGED, 0);
        return true;
    case OP_TAG_PATTERN:
        apply_to_pattern(a, "Tag messages matching: ", MSG_TAGGED, 0);
        return true;
    case OP_UNTAG_PATTERN:
        apply_to_pattern(a, "Untag messages matching: ", 0, MSG_TAGGED);
        return true;
    case OP_TAG_PREFIX: case OP_TAG_PREFIX_COND:
        a->tag_prefix = true;
        ui_message("tag-");
        return true;
    case OP_SAVE_MESSAGE: case OP_DECODE_SAVE:
        save_or_copy(a, true);
        return true;
    case OP_COPY_MESSAGE: case OP_DECODE_COPY:
        save_or_copy(a, false);
        return true;
    case OP_PIPE_MESSAGE:
        pipe_message(a);
        return true;
    case OP_NEXT_UNDELETED:
        go_line(a, view_find_flags(&a->view, false, 0, MSG_DELETED), "You are on the last message.");
        return true;
    case OP_PREVIOUS_UNDELETED:
        go_line(a, view_find_flags(&a->view, true, 0, MSG_DELETED), "You are on the first message.");
        return true;
    case OP_NEXT_NEW: case OP_NEXT_NEW_THEN_UNREAD: case OP_NEXT_UNREAD:
        go_line(a, view_find_flags(&a->view, false, 0, MSG_SEEN), "No unread messages.");
        return true;
    case OP_PREVIOUS_NEW: case OP_PREVIOUS_NEW_THEN_UNREAD: case OP_PREVIOUS_UNREAD:
        go_line(a, view_find_flags(&a->view, true, 0, MSG_SEEN), "No unread messages.");
        return true;
    case OP_NEXT_THREAD:
        go_line(a, next_thread_line(a, false), "No more threads.");
        return true;
    case OP_PREVIOUS_THREAD:
        go_line(a, next_thread_line(a, true), "You are on the first thread.");
        return true;
    case OP_ROOT_MESSAGE: case OP_PARENT_MESSAGE:
        if (a->view.tree && cur != VIEW_NONE) {
            uint32_t target = op == OP_ROOT_MESSAGE ? thread_root_of(a->view.tree, cur)
                                                    : thread_parent(a->view.tree, cur);
            if (target == THREAD_NONE || !view_goto_msg(&a->view, target))
                ui_error(op == OP_ROOT_MESSAGE ? "Root message is not visible in this limited view."
                                               : "Parent message is not available.");
        } else {
            ui_error("Threading is not enabled.");
        }
        return true;
    case OP_SYNC_MAILBOX:
        (void)sync_mailbox(a, true);
        return true;
    case OP_CHECK_STATS:
        check_new_mail(a, true);
        return true;
    case OP_FETCH_MAIL:
        fetch_mail(a);
        return true;
    case OP_SHELL_ESCAPE:
        shell_escape(a);
        return true;
    case OP_ENTER_COMMAND:
        enter_command(a);
        return true;
    case OP_REFRESH:
        ui_redraw_all();
        return true;
    case OP_WHAT_KEY: {
        char name[KEY_NAME_MAX];
        ui_message("Enter a key (^G to abort): ");
        ui_draw_message();
        ui_refresh();
        int k;
        while ((k = ui_getkey(-1)) == UI_KEY_TIMEOUT || k == UI_KEY_RESIZE)
            ;
        ui_message("Char = %s, Octal = %o, Decimal = %d", key_name(k, name), (unsigned)k, k);
        return true;
    }
    case OP_SHOW_VERSION:
        ui_message("correo %s", CORREO_VERSION);
        return true;
    case OP_MAIL: case OP_REPLY: case OP_GROUP_REPLY: case OP_LIST_REPLY:
    case OP_FORWARD_MESSAGE:
        write_mail(a, op);
        return true;
    case OP_RECALL_MESSAGE:
        recall_mail(a);
        return true;
    case OP_CREATE_ALIAS: {
        if (cur == VIEW_NONE) {
            ui_error("No visible messages.");
            return true;
        }
        const struct store_msg *sm = cur_smsg(a, cur);
        const char *addr = sstr(a, sm->from_addr), *name = sstr(a, sm->from);
        char *key, *suggest = alias_suggest_key(addr);
        if (!*addr || ui_prompt("Alias as: ", suggest, NULL, NULL, &key) < 0) {
            free(suggest);
            return true;
        }
        free(suggest);
        char *path = config_mailbox_path(a->cfg, a->cfg->opt.alias_file && *a->cfg->opt.alias_file
                                                     ? a->cfg->opt.alias_file
                                                     : "~/.config/correo/aliases");
        /* the directory of a first aliases file may not exist yet */
        for (char *sl = strchr(path + 1, '/'); sl; sl = strchr(sl + 1, '/')) {
            *sl = '\0';
            (void)mkdir(path, 0700);
            *sl = '/';
        }
        if (*key && alias_create(path, key, strcmp(name, addr) == 0 ? NULL : name, addr, &e) < 0)
            ui_error("%s", e.text);
        else if (*key)
            ui_message("Alias added.");
        free(path);
        free(key);
        return true;
    }
    case OP_BOUNCE_MESSAGE:
        bounce_message(a);
        return true;
    case OP_RESEND_MESSAGE:
        resend_mail(a);
        return true;
    case OP_COMPOSE_TO_SENDER:
        ui_error("%s is not available in this version.", keymap_op_name((enum km_op)op));
        return true;
    case OP_NOOP:
        return true;
    default:
        (void)e;
        return false;
    }
}

/* ---- the pager ------------------------------------------------------------ */

struct pager_ctx {
    struct app *a;
    uint32_t msg;
    struct textview *tv;
};

static int pager_cb(void *vctx, char op, const char *arg, size_t arglen, bool *truth,
                    struct buf *out)
{
    struct pager_ctx *p = vctx;
    struct app *a = p->a;

    if (!truth && op == 'P') {
        size_t max = text_max_top(p->tv);
        if (max == 0)
            return put(out, "all");
        if (p->tv->top == 0)
            return put(out, "top");
        if (p->tv->top >= max)
            return put(out, "end");
        return buf_printf(out, "%zu%%", p->tv->top * 100 / max) < 0 ? -1 : 0;
    }
    if (!truth && op == 'm')
        return buf_printf(out, "%zu", a->view.n_lines) < 0 ? -1 : 0;
    struct line_ctx c = {a, a->view.cursor, p->msg, NULL};
    return index_cb(&c, op, arg, arglen, truth, out);
}

static void hide_quoted_lines(struct textview *tv);

static int pager_load(struct app *a, struct textview *tv, struct buf *raw, struct message **m,
                      bool all_headers, bool hide_quoted)
{
    uint32_t msg = view_current(&a->view);
    struct render_opts o;
    const char **lists[3];
    struct err e;

    message_free(*m);
    *m = NULL;
    buf_reset(raw);
    render_out_reset(&tv->out);
    render_hits_free(&tv->hits);
    memset(&tv->hits, 0, sizeof tv->hits);
    tv->have_hits = false;
    tv->top = 0;
    if (msg == VIEW_NONE || read_whole(a, msg, raw) < 0)
        return -1;
    if (message_parse(raw->data ? raw->data : "", raw->len, NULL, m, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    render_opts_from_config(a, &o, lists);
    o.all_headers = all_headers;
    if (render_message(*m, &o, &tv->out, &e) < 0)
        ui_error("%s", e.text);
    if (hide_quoted)
        hide_quoted_lines(tv);
    for (int i = 0; i < 3; i++)
        free(lists[i]);
    unsigned f = cur_smsg(a, msg)->flags;
    if (!(f & MSG_SEEN) && !a->readonly)
        (void)set_msg_flags(a, msg, (f | MSG_SEEN) & ~MSG_NEW);
    return 0;
}

/* Drop the quoted lines from what is shown (toggle-quoted). */
static void hide_quoted_lines(struct textview *tv)
{
    size_t k = 0;

    for (size_t i = 0; i < tv->out.n_lines; i++)
        if (tv->out.lines[i].role != RENDER_QUOTED)
            tv->out.lines[k++] = tv->out.lines[i];
    tv->out.n_lines = k;
    render_hits_free(&tv->hits);
    memset(&tv->hits, 0, sizeof tv->hits);
    tv->have_hits = false;
    if (tv->top > text_max_top(tv))
        tv->top = text_max_top(tv);
}

/* Returns when the user leaves the pager. */
static void pager(struct app *a)
{
    struct textview tv;
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    bool all_headers = false, hide_quoted = false;
    struct buf status = BUF_INIT;

    memset(&tv, 0, sizeof tv);
    render_out_init(&tv.out);
    if (pager_load(a, &tv, &raw, &m, all_headers, hide_quoted) < 0)
        goto out;
    for (;;) {
        uint32_t msg = view_current(&a->view);
        struct pager_ctx pc = {a, msg, &tv};
        buf_reset(&status);
        (void)format_expand(a->cfg->opt.pager_format, pager_cb, &pc, (size_t)ui_cols(), &status);
        text_draw(a, &tv, buf_cstr(&status));
        int op = read_op(a, MENU_PAGER, a->cfg->opt.mail_check > 0
                                             ? (int)a->cfg->opt.mail_check * 1000 : -1);
        if (op == -1) {
            check_new_mail(a, false);
            continue;
        }
        if (op == -2) {
            size_t top = tv.top;
            pager_load(a, &tv, &raw, &m, all_headers, hide_quoted);
            tv.top = top < text_max_top(&tv) ? top : text_max_top(&tv);
            continue;
        }
        ui_clear_message();
        if (op == OP_EXIT || op == OP_QUIT)
            break;
        if (op == OP_NEXT_PAGE) {
            size_t max = text_max_top(&tv);
            if (tv.top >= max) {
                if (a->cfg->opt.pager_stop) {
                    ui_error("Bottom of message is shown.");
                    continue;
                }
                if (a->view.cursor + 1 >= a->view.n_lines) {
                    ui_error("You are on the last message.");
                    continue;
                }
                a->view.cursor++;
                if (pager_load(a, &tv, &raw, &m, all_headers, hide_quoted) < 0)
                    break;
                continue;
            }
            size_t rows = (size_t)(ui_rows() > 3 ? ui_rows() - 3 : 1);
            tv.top = tv.top + rows < max ? tv.top + rows : max;
            continue;
        }
        if (text_op(a, &tv, op))
            continue;
        if (op == OP_DISPLAY_TOGGLE_WEED) {
            all_headers = !all_headers;
            pager_load(a, &tv, &raw, &m, all_headers, hide_quoted);
            continue;
        }
        if (op == OP_VIEW_ATTACHMENTS) {
            if (m)
                attach_menu(a, m);
            continue;
        }
        if (op == OP_HELP) {
            show_help(a, MENU_PAGER);
            continue;
        }
        if (op == OP_TOGGLE_QUOTED) {
            hide_quoted = !hide_quoted;
            size_t top = tv.top;
            pager_load(a, &tv, &raw, &m, all_headers, hide_quoted);
            tv.top = top < text_max_top(&tv) ? top : text_max_top(&tv);
            continue;
        }
        size_t before = a->view.cursor;
        if (op == OP_NEXT_ENTRY || op == OP_PREVIOUS_ENTRY) {
            if (op == OP_NEXT_ENTRY && a->view.cursor + 1 < a->view.n_lines)
                a->view.cursor++;
            else if (op == OP_PREVIOUS_ENTRY && a->view.cursor > 0)
                a->view.cursor--;
            else
                ui_error(op == OP_NEXT_ENTRY ? "You are on the last message."
                                             : "You are on the first message.");
        } else if (!message_op(a, op)) {
            ui_error("Function not permitted in pager mode.");
            continue;
        }
        if (view_current(&a->view) == VIEW_NONE)
            break;
        if (a->view.cursor != before || view_current(&a->view) != msg) {
            if (pager_load(a, &tv, &raw, &m, all_headers, hide_quoted) < 0)
                break;
        }
    }
out:
    buf_free(&status);
    message_free(m);
    buf_free(&raw);
    textview_free(&tv);
}

/* ---- the folder browser ----------------------------------------------------- */

struct folder_row {
    char *name;
    char *path;
};

/* virtual-mailboxes: notmuch queries, listed after the folders. */
static void browser_add_virtual(struct app *a, struct list *l, struct folder_row **rows,
                                size_t *n_rows)
{
    for (size_t i = 0; i < a->cfg->n_mailboxes; i++) {
        const struct config_mailbox *vm = &a->cfg->mailboxes[i];
        if (strncmp(vm->path, MAILBOX_NOTMUCH_PREFIX, strlen(MAILBOX_NOTMUCH_PREFIX)) != 0)
            continue;
        const char *label = vm->label ? vm->label : vm->path;
        bool here = a->mb && strcmp(a->mb->path, vm->path) == 0;
        char *line = xasprintf("%c %-40s (notmuch)", here ? '*' : ' ', label);
        list_add(l, line);
        free(line);
        *rows = xreallocarray(*rows, *n_rows + 1, sizeof **rows);
        (*rows)[*n_rows].name = xstrdup(label);
        (*rows)[(*n_rows)++].path = xstrdup(vm->path);
    }
}

static void browser_fill(struct app *a, const char *root, struct list *l, struct folder_row **rows,
                         size_t *n_rows)
{
    struct maildir *md;
    struct maildir_folder_list *fl;
    struct err e;

    list_free(l);
    l->cursor_line = true;
    for (size_t i = 0; i < *n_rows; i++) {
        free((*rows)[i].name);
        free((*rows)[i].path);
    }
    free(*rows);
    *rows = NULL;
    *n_rows = 0;
    if (maildir_open(root, &md, &e) < 0 || maildir_list_folders(md, &fl, &e) < 0) {
        ui_error("%s", e.text);
        browser_add_virtual(a, l, rows, n_rows);
        return;
    }
    *rows = xcalloc(fl->n ? fl->n : 1, sizeof **rows);
    for (size_t i = 0; i < fl->n; i++) {
        struct maildir_folder *f;
        struct maildir_scan *scan;
        size_t total = 0, unread = 0;
        if (maildir_folder_open_path(fl->v[i].path, &f, &e) == 0) {
            if (maildir_scan(f, 0, &scan, &e) == 0) {
                total = scan->n;
                for (size_t k = 0; k < scan->n; k++)
                    unread += scan->v[k].sub == MAILDIR_SUB_NEW ||
                              !(scan->v[k].flags & MAILDIR_F_SEEN);
                free(scan);
            }
            maildir_folder_close(f);
        }
        bool here = a->mb && strcmp(a->mb->path, fl->v[i].path) == 0;
        char *line = xasprintf("%c %-40s %6zu new %7zu total", here ? '*' : ' ',
                               fl->v[i].name, unread, total);
        list_add(l, line);
        free(line);
        (*rows)[*n_rows].name = xstrdup(fl->v[i].name);
        (*rows)[(*n_rows)++].path = xstrdup(fl->v[i].path);
    }
    browser_add_virtual(a, l, rows, n_rows);
    free(fl);
    maildir_close(md);
}

/* ---- the folder browser over IMAP ---------------------------------------------- */

/* The account the browser lists when $folder is an IMAP URL, else the one
 * of the open mailbox when that is IMAP; NULL for Maildir.  xmalloc'd. */
static char *browser_imap_root(struct app *a)
{
    char *root = folder_root(a);

    if (imap_url_is(root))
        return root;
    free(root);
    if (a->mb && imap_url_is(a->mb->path))
        return xstrdup(a->mb->path);
    return NULL;
}

/* Whether two IMAP URLs name the same folder of the same server. */
static bool same_imap_folder(const char *x, const char *y)
{
    struct imap_url u, v;
    bool same = false;

    if (!imap_url_is(x) || !imap_url_is(y) || imap_url_parse(x, &u, NULL) < 0)
        return false;
    if (imap_url_parse(y, &v, NULL) == 0) {
        same = u.tls == v.tls && u.port == v.port && strcasecmp(u.host, v.host) == 0 &&
               (strcmp(u.folder, v.folder) == 0 ||
                (strcasecmp(u.folder, "INBOX") == 0 && strcasecmp(v.folder, "INBOX") == 0));
        imap_url_free(&v);
    }
    imap_url_free(&u);
    return same;
}

static const char *special_name(unsigned su)
{
    return su & IMAP_SU_SENT ? " (sent)" : su & IMAP_SU_DRAFTS ? " (drafts)"
         : su & IMAP_SU_TRASH ? " (trash)" : su & IMAP_SU_JUNK ? " (junk)"
         : su & IMAP_SU_ARCHIVE ? " (archive)" : su & IMAP_SU_ALL ? " (all)"
         : su & IMAP_SU_FLAGGED ? " (flagged)" : "";
}

struct imap_browse {
    struct imap_url u;           /* the account (folder part unused) */
    char *account_url;
    struct imap_conn *c;
    struct imap_folder_list fl;
    bool subscribed_only;
};

/* (Re)connect when the connection is gone.  0 or -1 (shown). */
static int imap_browse_conn(struct app *a, struct imap_browse *b)
{
    struct err e;

    if (b->c && imap_usable(b->c))
        return 0;
    imap_close(b->c);
    b->c = NULL;
    imap_settings_from_config(a->cfg);
    if (imap_connect(&b->u, imap_settings_get(), &b->c, &e) < 0) {
        ui_error("%s", e.text);
        return -1;
    }
    return 0;
}

/* INBOX first, then by name: a hierarchy stays together. */
static int cmp_imap_folder(const void *x, const void *y)
{
    const struct imap_folder *f = x, *g = y;
    bool fi = strcmp(f->wire, "INBOX") == 0, gi = strcmp(g->wire, "INBOX") == 0;

    if (fi != gi)
        return fi ? -1 : 1;
    return strcmp(f->wire, g->wire);
}

static void imap_browse_fill(struct app *a, struct imap_browse *b, struct list *l)
{
    struct err e;

    list_free(l);
    l->cursor_line = true;
    imap_folder_list_free(&b->fl);
    if (imap_browse_conn(a, b) < 0)
        return;
    if (imap_folders_list(b->c, IMAP_LIST_STATUS | (b->subscribed_only ? IMAP_LIST_SUBSCRIBED : 0),
                          &b->fl, &e) < 0) {
        ui_error("%s", e.text);
        return;
    }
    qsort(b->fl.v, b->fl.n, sizeof *b->fl.v, cmp_imap_folder);
    for (size_t i = 0; i < b->fl.n; i++) {
        const struct imap_folder *f = &b->fl.v[i];
        char *url = imap_folder_url(&b->u, f->wire);
        bool here = a->mb && same_imap_folder(a->mb->path, url);
        char *name = xasprintf("%s%s", f->display, special_name(f->special));
        size_t w = sanitize_width(name, strlen(name));
        int pad = w < 40 ? (int)(40 - w) : 0;
        char *line;

        /* padded by display width, not bytes: names are UTF-8 */
        if (f->attrs & IMAP_FA_NOSELECT)
            line = xasprintf("%c %s%*s %s", here ? '*' : ' ', name, pad, "", "(holds no mail)");
        else if (f->has_status)
            line = xasprintf("%c %s%*s %6u new %7u total", here ? '*' : ' ', name, pad, "",
                             f->unseen, f->messages);
        else
            line = xasprintf("%c %s", here ? '*' : ' ', name);
        list_add(l, line);
        if (here)
            l->cursor = i;
        free(line);
        free(name);
        free(url);
    }
    if (b->fl.n_skipped)
        ui_error("%zu folder%s with unusable names not shown.", b->fl.n_skipped,
                 b->fl.n_skipped == 1 ? "" : "s");
}

/* The browser for an IMAP account: the server's folders with counts.
 * Returns the URL chosen (malloc'd) or NULL. */
static char *browser_imap(struct app *a, const char *root)
{
    struct imap_browse b;
    struct list l;
    struct err e;
    char *chosen = NULL, *title, *safe_title;

    memset(&b, 0, sizeof b);
    memset(&l, 0, sizeof l);
    if (imap_url_parse(root, &b.u, &e) < 0) {
        ui_error("%s", e.text);
        return NULL;
    }
    b.account_url = imap_url_account(&b.u, b.u.user);
    title = xasprintf("Mailboxes in %s", b.account_url);
    safe_title = sanitize_term_dup(title, strlen(title), 0);
    free(title);
    imap_browse_fill(a, &b, &l);
    for (;;) {
        list_draw(&l, safe_title, b.subscribed_only
                      ? "---Subscribed---  (Enter open, C create, d delete, r rename, s/u subscribe, T all, q back)"
                      : "---Mailboxes---  (Enter open, C create, d delete, r rename, s/u subscribe, T subscribed, q back)");
        int op = read_op(a, MENU_BROWSER, -1);
        if (op == -1 || op == -2)
            continue;
        if (op == OP_EXIT || op == OP_QUIT)
            break;
        if (list_move(&l, op))
            continue;
        const struct imap_folder *f = l.cursor < b.fl.n ? &b.fl.v[l.cursor] : NULL;
        int rc = -1;
        char *typed = NULL, *wire = NULL;
        switch (op) {
        case OP_SELECT_ENTRY: case OP_DESCEND_DIRECTORY: case OP_VIEW_FILE:
        case OP_DISPLAY_MESSAGE:
            if (!f)
                continue;
            if (f->attrs & IMAP_FA_NOSELECT) {
                ui_error("This folder holds no mail.");
                continue;
            }
            chosen = imap_folder_url(&b.u, f->wire);
            break;
        case OP_CHECK_NEW:
            imap_browse_fill(a, &b, &l);
            continue;
        case OP_TOGGLE_SUBSCRIBED:
            b.subscribed_only = !b.subscribed_only;
            imap_browse_fill(a, &b, &l);
            l.cursor = 0;
            continue;
        case OP_SUBSCRIBE: case OP_UNSUBSCRIBE:
            if (!f || imap_browse_conn(a, &b) < 0)
                continue;
            if (imap_folders_subscribe(b.c, f->wire, op == OP_SUBSCRIBE, &e) < 0)
                ui_error("%s", e.text);
            else
                ui_message(op == OP_SUBSCRIBE ? "Subscribed." : "Unsubscribed.");
            imap_browse_fill(a, &b, &l);
            continue;
        case OP_CREATE_MAILBOX: case OP_RENAME_MAILBOX: case OP_DELETE_MAILBOX:
            if (op != OP_CREATE_MAILBOX && (!f || strcmp(f->wire, "INBOX") == 0)) {
                ui_error("INBOX cannot be deleted or renamed.");
                continue;
            }
            if (op == OP_DELETE_MAILBOX) {
                char *q = xasprintf("Really delete mailbox \"%s\"?", f->display);
                int yes = ui_yesno(q, 0);
                free(q);
                if (yes != 1)
                    continue;
            } else if (ui_prompt(op == OP_CREATE_MAILBOX ? "Create mailbox: " : "Rename mailbox to: ",
                                 op == OP_RENAME_MAILBOX ? f->display : NULL, NULL, NULL,
                                 &typed) < 0) {
                continue;
            }
            if (op != OP_DELETE_MAILBOX && !(wire = imap_folder_wire(typed, &e))) {
                ui_error("%s", e.text);
            } else if (imap_browse_conn(a, &b) == 0) {
                if (op == OP_CREATE_MAILBOX)
                    rc = imap_folders_create(b.c, wire, &e);
                else if (op == OP_RENAME_MAILBOX)
                    rc = imap_folders_rename(b.c, f->wire, wire, &e);
                else
                    rc = imap_folders_delete(b.c, f->wire, &e);
                if (rc < 0)
                    ui_error("%s", e.text);
                else
                    ui_message("Done.");
            }
            free(typed);
            free(wire);
            imap_browse_fill(a, &b, &l);
            if (l.cursor >= l.n)
                l.cursor = l.n ? l.n - 1 : 0;
            continue;
        case OP_HELP:
            show_help(a, MENU_BROWSER);
            continue;
        default:
            ui_error("Function not permitted here.");
            continue;
        }
        if (chosen)
            break;
    }
    imap_folder_list_free(&b.fl);
    imap_close(b.c);
    imap_url_free(&b.u);
    free(b.account_url);
    free(safe_title);
    list_free(&l);
    return chosen;
}

/* Returns the path chosen (malloc'd) or NULL. */
static char *browser(struct app *a)
{
    char *imap_root = browser_imap_root(a);
    if (imap_root) {
        char *chosen = browser_imap(a, imap_root);
        free(imap_root);
        return chosen;
    }
    char *root = folder_root(a);
    struct list l;
    struct folder_row *rows = NULL;
    size_t n_rows = 0;
    char *chosen = NULL;
    char title[4200];
    struct err e;

    memset(&l, 0, sizeof l);
    browser_fill(a, root, &l, &rows, &n_rows);
    for (size_t i = 0; a->mb && i < n_rows; i++)
        if (strcmp(rows[i].path, a->mb->path) == 0)
            l.cursor = i;
    snprintf(title, sizeof title, "Mailboxes in %s", root);
    char *safe_title = sanitize_term_dup(title, strlen(title), 0);
    for (;;) {
        list_draw(&l, safe_title, "---Mailboxes---  (Enter open, C create, d delete, r rename, q back)");
        int op = read_op(a, MENU_BROWSER, -1);
        if (op == -1 || op == -2)
            continue;
        if (op == OP_EXIT || op == OP_QUIT)
            break;
        if (list_move(&l, op))
            continue;
        switch (op) {
        case OP_SELECT_ENTRY: case OP_DESCEND_DIRECTORY: case OP_VIEW_FILE:
        case OP_DISPLAY_MESSAGE:
            if (n_rows)
                chosen = xstrdup(rows[l.cursor].path);
            break;
        case OP_CHECK_NEW:
            browser_fill(a, root, &l, &rows, &n_rows);
            continue;
        case OP_CREATE_MAILBOX: case OP_DELETE_MAILBOX: case OP_RENAME_MAILBOX: {
            struct maildir *md;
            char *name = NULL;
            int rc = -1;
            if (op != OP_CREATE_MAILBOX && n_rows > 0 &&
                strncmp(rows[l.cursor].path, MAILBOX_NOTMUCH_PREFIX,
                        strlen(MAILBOX_NOTMUCH_PREFIX)) == 0) {
                ui_error("A notmuch query is not a folder: change virtual-mailboxes instead.");
                continue;
            }
            if (op != OP_CREATE_MAILBOX && (n_rows == 0 || strcmp(rows[l.cursor].name, "INBOX") == 0)) {
                ui_error("INBOX cannot be deleted or renamed.");
                continue;
            }
            if (op == OP_DELETE_MAILBOX) {
                char *q = xasprintf("Really delete mailbox \"%s\"?", rows[l.cursor].name);
                char *sq = sanitize_term_dup(q, strlen(q), 0);
                int yes = ui_yesno(sq, 0);
                free(q);
                free(sq);
                if (yes != 1)
                    continue;
            } else if (ui_prompt(op == OP_CREATE_MAILBOX ? "Create mailbox: " : "Rename mailbox to: ",
                                 op == OP_RENAME_MAILBOX ? rows[l.cursor].name : NULL, NULL, NULL,
                                 &name) < 0) {
                continue;
            }
            if (maildir_open(root, &md, &e) == 0) {
                if (op == OP_CREATE_MAILBOX)
                    rc = maildir_folder_create(md, name[0] == '.' ? name + 1 : name, &e);
                else if (op == OP_RENAME_MAILBOX)
                    rc = maildir_folder_rename(md, rows[l.cursor].name, name, &e);
                else
                    rc = maildir_folder_delete(md, rows[l.cursor].name, 0, &e);
                maildir_close(md);
            }
            if (rc < 0)
                ui_error("%s", e.text);
            else
                ui_message("Done.");
            free(name);
            browser_fill(a, root, &l, &rows, &n_rows);
            if (l.cursor >= l.n)
                l.cursor = l.n ? l.n - 1 : 0;
            continue;
        }
        case OP_HELP:
            show_help(a, MENU_BROWSER);
            continue;
        default:
            ui_error("Function not permitted here.");
            continue;
        }
        if (chosen)
            break;
    }
    for (size_t i = 0; i < n_rows; i++) {
        free(rows[i].name);
        free(rows[i].path);
    }
    free(rows);
    free(safe_title);
    list_free(&l);
    free(root);
    return chosen;
}

/* ---- the index loop --------------------------------------------------------- */

static void change_folder(struct app *a, bool readonly, bool browse)
{
    char *path = NULL;

    if (browse) {
        path = browser(a);
    } else if (ask_mailbox(a, readonly ? "Open mailbox in read-only mode: " : "Open mailbox: ",
                           &path) < 0) {
        return;
    }
    if (!path)
        return;
    if (a->mb && sync_mailbox(a, true) < 0) {
        free(path);
        return;
    }
    (void)open_mailbox(a, path, readonly);
    free(path);
}

static void index_loop(struct app *a)
{
    while (!a->done) {
        if (!a->mb) {
            a->done = true;
            break;
        }
        /* New mail also shows up while keys keep coming, not only when idle. */
        if (a->cfg->opt.mail_check > 0 && time(NULL) - a->last_check >= a->cfg->opt.mail_check)
            check_new_mail(a, false);
        draw_index(a);
        int op = read_op(a, MENU_INDEX, a->cfg->opt.mail_check > 0
                                            ? (int)a->cfg->opt.mail_check * 1000 : -1);
        if (op == -1) {
            check_new_mail(a, false);
            continue;
        }
        if (op == -2)
            continue;
        if (op != OP_TAG_PREFIX && op != OP_TAG_PREFIX_COND)
            ui_clear_message();
        size_t page = (size_t)index_rows();
        size_t n = a->view.n_lines;
        switch (op) {
        case OP_NEXT_ENTRY:
            if (a->view.cursor + 1 < n)
                a->view.cursor++;
            else
                ui_error("You are on the last message.");
            break;
        case OP_PREVIOUS_ENTRY:
            if (a->view.cursor > 0)
                a->view.cursor--;
            else
                ui_error("You are on the first message.");
            break;
        case OP_NEXT_PAGE:
            if (a->top + page < n) {
                a->top += page;
                a->view.cursor = a->top;
            } else {
                ui_error("You are on the last page.");
            }
            break;
        case OP_PREVIOUS_PAGE:
            if (a->top > 0) {
                a->top = a->top > page ? a->top - page : 0;
                a->view.cursor = a->top;
            } else {
                ui_error("You are on the first page.");
            }
            break;
        case OP_HALF_DOWN:
            a->view.cursor = a->view.cursor + page / 2 < n ? a->view.cursor + page / 2 : (n ? n - 1 : 0);
            break;
        case OP_HALF_UP:
            a->view.cursor = a->view.cursor > page / 2 ? a->view.cursor - page / 2 : 0;
            break;
        case OP_FIRST_ENTRY:
            a->view.cursor = 0;
            break;
        case OP_LAST_ENTRY:
            a->view.cursor = n ? n - 1 : 0;
            break;
        case OP_TOP_PAGE:
            a->view.cursor = a->top;
            break;
        case OP_MIDDLE_PAGE:
            a->view.cursor = a->top + page / 2 < n ? a->top + page / 2 : (n ? n - 1 : 0);
            break;
        case OP_BOTTOM_PAGE:
            a->view.cursor = a->top + page - 1 < n ? a->top + page - 1 : (n ? n - 1 : 0);
            break;
        case OP_CURRENT_TOP:
            a->top = a->view.cursor;
            break;
        case OP_CURRENT_MIDDLE:
            a->top = a->view.cursor > page / 2 ? a->view.cursor - page / 2 : 0;
            break;
        case OP_CURRENT_BOTTOM:
            a->top = a->view.cursor + 1 > page ? a->view.cursor + 1 - page : 0;
            break;
        case OP_JUMP:
            do_jump(a, a->last_key >= '1' && a->last_key <= '9' ? a->last_key : 0);
            break;
        case OP_DISPLAY_MESSAGE: case OP_SELECT_ENTRY:
            if (view_current(&a->view) == VIEW_NONE)
                ui_error("No visible messages.");
            else
                pager(a);
            break;
        case OP_VIEW_ATTACHMENTS: {
            struct buf raw = BUF_INIT;
            struct message *m = NULL;
            struct err e;
            uint32_t msg = view_current(&a->view);
            if (msg != VIEW_NONE && read_whole(a, msg, &raw) == 0) {
                if (message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, &e) == 0)
                    attach_menu(a, m);
                else
                    ui_error("%s", e.text);
            }
            message_free(m);
            buf_free(&raw);
            break;
        }
        case OP_LIMIT:
            do_limit(a);
            break;
        case OP_SHOW_LIMIT:
            if (a->view.limit_text)
                ui_message("Limit: %s", a->view.limit_text);
            else
                ui_message("No limit pattern is in effect.");
            break;
        case OP_SEARCH:
            do_search(a, false, false, false);
            break;
        case OP_SEARCH_REVERSE:
            do_search(a, true, false, false);
            break;
        case OP_SEARCH_NEXT:
            do_search(a, false, true, false);
            break;
        case OP_SEARCH_OPPOSITE:
            do_search(a, false, true, true);
            break;
        case OP_SORT_MAILBOX:
            do_sort(a, false);
            break;
        case OP_SORT_REVERSE:
            do_sort(a, true);
            break;
        case OP_COLLAPSE_THREAD: {
            struct err e;
            if (!view_threaded(&a->view))
                ui_error("Threading is not enabled.");
            else if (view_toggle_collapse(&a->view, &e) < 0)
                ui_error("%s", e.text);
            break;
        }
        case OP_COLLAPSE_ALL: {
            struct err e;
            static bool collapsed;
            if (!view_threaded(&a->view)) {
                ui_error("Threading is not enabled.");
            } else {
                collapsed = !collapsed;
                if (view_collapse_all(&a->view, collapsed, &e) < 0)
                    ui_error("%s", e.text);
            }
            break;
        }
        case OP_CHANGE_FOLDER:
            change_folder(a, false, false);
            break;
        case OP_VFOLDER_FROM_QUERY:
            vfolder_from_query(a);
            break;
        case OP_MODIFY_LABELS:
            modify_labels(a);
            break;
        case OP_CHANGE_FOLDER_READONLY:
            change_folder(a, true, false);
            break;
        case OP_BROWSE_MAILBOXES:
            change_folder(a, false, true);
            break;
        case OP_TOGGLE_WRITE:
            a->readonly = !a->readonly;
            ui_message(a->readonly ? "Changes to folder will not be written."
                                   : "Changes to folder will be written.");
            break;
        case OP_HELP:
            show_help(a, MENU_INDEX);
            break;
        case OP_QUIT:
            if (sync_mailbox(a, true) == 0)
                a->done = true;
            break;
        case OP_EXIT: {
            size_t pending = 0;
            for (uint32_t i = 0; i < store_count(&a->mb->store); i++)
                pending += (store_get(&a->mb->store, i)->flags & MSG_DELETED) != 0;
            if (!pending || a->readonly || ui_yesno("Exit correo without saving?", 1) == 1)
                a->done = true;
            break;
        }
        default:
            if (!message_op(a, op))
                ui_error("Function not permitted in this menu.");
            break;
        }
    }
}

int app_run(struct config *cfg, const struct app_opts *opts)
{
    struct app a;
    struct err e;
    char *path;

    memset(&a, 0, sizeof a);
    a.cfg = cfg;
    if (opts->folder)
        path = config_mailbox_path(cfg, opts->folder);
    else if (cfg->opt.spoolfile && *cfg->opt.spoolfile)
        path = config_mailbox_path(cfg, cfg->opt.spoolfile);
    else
        path = config_mailbox_path(cfg, "=");

    if (ui_init(&cfg->theme, &e) < 0) {
        fprintf(stderr, "correo: %s\n", e.text);
        free(path);
        return 1;
    }
    if (open_mailbox(&a, path, opts->readonly) < 0) {
        ui_end();
        fprintf(stderr, "correo: %s\n", a.last_error);
        free(path);
        return 1;
    }
    free(path);
    rescue_orphans(&a);
    if (cfg->diag.n)
        ui_error("%s%s", cfg->diag.msgs[0],
                 cfg->diag.n > 1 ? " (and more: correo -D lists them)" : "");
    index_loop(&a);
    ui_end();
    poll_free(&a);
    close_mailbox(&a);
    pattern_free(a.search);
    free(a.search_text);
    free(a.pending);
    return a.status;
}
