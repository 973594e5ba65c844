/* view: display order, limit, threads and cursor over a mailbox's store. */
#include "view.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "message.h"
#include "msg.h"
#include "store.h"
#include "xalloc.h"

void view_init(struct view *v, struct mailbox *mb)
{
    memset(v, 0, sizeof *v);
    v->mb = mb;
    v->sort.primary.key = SORT_DATE;
    v->sort.aux.key = SORT_DATE;
    v->thread_opts = (struct thread_opts)THREAD_OPTS_INIT;
}

void view_free(struct view *v)
{
    pattern_free(v->limit);
    free(v->limit_text);
    thread_free(v->tree);
    free(v->lines);
    free(v->line_of);
    memset(v, 0, sizeof *v);
}

bool view_threaded(const struct view *v)
{
    return v->sort.primary.key == SORT_THREADS;
}

uint32_t view_msg_at(const struct view *v, size_t line)
{
    return line < v->n_lines ? v->lines[line].msg : VIEW_NONE;
}

uint32_t view_current(const struct view *v)
{
    return view_msg_at(v, v->cursor);
}

bool view_goto_msg(struct view *v, uint32_t msg)
{
    if (msg >= v->n_msgs || v->line_of[msg] == VIEW_NONE)
        return false;
    v->cursor = v->line_of[msg];
    return true;
}

/* ---- pattern accessors over the store -------------------------------- */

static const struct store_msg *smsg(void *ctx, uint32_t msg)
{
    struct view *v = ctx;
    return store_get(&v->mb->store, msg);
}

static const char *acc_subject(void *ctx, uint32_t msg)
{
    struct view *v = ctx;
    return store_str(&v->mb->store, smsg(ctx, msg)->subject);
}

static int64_t acc_date(void *ctx, uint32_t msg)
{
    return smsg(ctx, msg)->date;
}

static int64_t acc_received(void *ctx, uint32_t msg)
{
    return smsg(ctx, msg)->received;
}

static uint64_t acc_size(void *ctx, uint32_t msg)
{
    return smsg(ctx, msg)->size;
}

static unsigned acc_flags(void *ctx, uint32_t msg)
{
    unsigned f = smsg(ctx, msg)->flags, out = 0;

    if (!(f & MSG_SEEN)) {
        if (f & MSG_NEW)
            out |= PATTERN_F_NEW;
        else
            out |= PATTERN_F_OLD;
    } else {
        out |= PATTERN_F_READ;
    }
    if (f & MSG_REPLIED)
        out |= PATTERN_F_REPLIED;
    if (f & MSG_FLAGGED)
        out |= PATTERN_F_FLAGGED;
    if (f & MSG_DELETED)
        out |= PATTERN_F_DELETED;
    if (f & MSG_TAGGED)
        out |= PATTERN_F_TAGGED;
    if (f & MSG_TRASHED)
        out |= PATTERN_F_TRASHED;
    if (f & MSG_DRAFT)
        out |= PATTERN_F_DRAFT;
    return out;
}

static int acc_headers(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    struct view *v = ctx;
    return v->mb->ops->read_headers(v->mb, msg, out, e);
}

/* Parsed message of msg, for fields the store does not keep. */
static struct message *parse_headers_of(struct view *v, uint32_t msg, struct buf *raw)
{
    struct message *m = NULL;
    struct err e;

    if (v->mb->ops->read_headers(v->mb, msg, raw, &e) < 0)
        return NULL;
    if (message_parse_headers(raw->data ? raw->data : "", raw->len, NULL, &m, &e) < 0)
        return NULL;
    return m;
}

static void acc_addresses(void *ctx, uint32_t msg, enum pattern_addr which, pattern_addr_cb cb,
                          void *cbctx)
{
    struct view *v = ctx;
    const struct store_msg *sm = smsg(ctx, msg);
    struct buf raw = BUF_INIT;
    struct message *m;
    const struct msg_addr_list *l = NULL;

    if (which == PATTERN_ADDR_FROM) {
        const char *addr = store_str(&v->mb->store, sm->from_addr);
        const char *name = store_str(&v->mb->store, sm->from);
        if (*addr || *name)
            cb(cbctx, strcmp(name, addr) == 0 ? NULL : name, addr);
        return;
    }
    m = parse_headers_of(v, msg, &raw);
    if (m) {
        switch (which) {
        case PATTERN_ADDR_TO: l = &m->env.to; break;
        case PATTERN_ADDR_CC: l = &m->env.cc; break;
        case PATTERN_ADDR_SENDER: l = &m->env.sender; break;
        default: break;
        }
        for (size_t i = 0; l && i < l->n; i++)
            if (cb(cbctx, l->v[i].name, l->v[i].addr))
                break;
        message_free(m);
    }
    buf_free(&raw);
}

/* The remaining string fields come from the header block. */
static const char *header_string(struct view *v, uint32_t msg, int which)
{
    static char *last_of[2];   /* valid until the next call for the same field */
    char **lastp = &last_of[which ? 1 : 0];
    struct buf raw = BUF_INIT;
    struct message *m = parse_headers_of(v, msg, &raw);
    const char *s = NULL;

    free(*lastp);
    *lastp = NULL;
    if (m) {
        switch (which) {
        case 0: s = m->env.message_id; break;
        case 1: s = m->env.list_id; break;
        default: break;
        }
        if (s)
            *lastp = xstrdup(s);
        message_free(m);
    }
    buf_free(&raw);
    return *lastp;
}

static const char *acc_message_id(void *ctx, uint32_t msg)
{
    return header_string(ctx, msg, 0);
}

static const char *acc_list_id(void *ctx, uint32_t msg)
{
    if (!(smsg(ctx, msg)->bits & STORE_B_LIST_ID))
        return NULL;
    return header_string(ctx, msg, 1);
}

static void acc_references(void *ctx, uint32_t msg, pattern_str_cb cb, void *cbctx)
{
    struct view *v = ctx;
    struct buf raw = BUF_INIT;
    struct message *m = parse_headers_of(v, msg, &raw);

    if (m) {
        bool stop = m->env.in_reply_to && cb(cbctx, m->env.in_reply_to);
        for (size_t i = 0; !stop && i < m->env.n_references; i++)
            stop = cb(cbctx, m->env.references[i]);
        message_free(m);
    }
    buf_free(&raw);
}

static int acc_body(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    struct view *v = ctx;
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    int rc = -1;

    if (v->mb->ops->read_message(v->mb, msg, &raw, e) < 0)
        goto out;
    if (message_parse(raw.data ? raw.data : "", raw.len, NULL, &m, e) < 0)
        goto out;
    const struct msg_part *p = message_best_text(m, NULL);
    rc = 0;
    if (p)
        rc = message_part_text(m, p, out, NULL, NULL, e);
out:
    message_free(m);
    buf_free(&raw);
    return rc;
}

static bool acc_collapsed(void *ctx, uint32_t msg)
{
    struct view *v = ctx;
    if (!v->tree)
        return false;
    return thread_is_collapsed(v->tree, thread_root_of(v->tree, msg));
}

const struct pattern_msg_ops view_pattern_ops = {
    .subject = acc_subject,
    .addresses = acc_addresses,
    .date = acc_date,
    .received = acc_received,
    .size = acc_size,
    .flags = acc_flags,
    .message_id = acc_message_id,
    .references = acc_references,
    .list_id = acc_list_id,
    .x_label = NULL,
    .headers = acc_headers,
    .body = acc_body,
    .is_me = NULL,
    .collapsed = acc_collapsed,
};

bool view_match(struct view *v, const struct pattern *p, uint32_t msg)
{
    struct pattern_msg pm = {&view_pattern_ops, msg};
    return pattern_match(p, &pm, v);
}

/* ---- rebuilding --------------------------------------------------------- */

struct columns {
    int64_t *date, *received;
    uint64_t *size;
    const char **from, **subject;
    struct sort_columns cols;
};

static bool uses_key(const struct sort_spec *spec, enum sort_key k)
{
    return spec->primary.key == k || spec->aux.key == k;
}

/* Only the columns the sort needs: at 100k messages each one is 800 KB. */
static void columns_fill(struct columns *c, const struct store *st, const struct sort_spec *spec)
{
    size_t n = store_count(st), alloc = n ? n : 1;
    bool threads = spec->primary.key == SORT_THREADS;

    memset(c, 0, sizeof *c);
    /* dates order threads and are the default tie-break */
    c->date = xcalloc(alloc, sizeof *c->date);
    if (uses_key(spec, SORT_RECEIVED))
        c->received = xcalloc(alloc, sizeof *c->received);
    if (uses_key(spec, SORT_SIZE))
        c->size = xcalloc(alloc, sizeof *c->size);
    if (uses_key(spec, SORT_FROM))
        c->from = xcalloc(alloc, sizeof *c->from);
    if (uses_key(spec, SORT_SUBJECT) || threads)
        c->subject = xcalloc(alloc, sizeof *c->subject);
    for (size_t i = 0; i < n; i++) {
        const struct store_msg *m = store_get(st, (uint32_t)i);
        c->date[i] = m->date;
        if (c->received)
            c->received[i] = m->received;
        if (c->size)
            c->size[i] = m->size;
        if (c->from)
            c->from[i] = store_str(st, m->from);
        if (c->subject)
            c->subject[i] = store_str(st, m->subject);
    }
    c->cols = (struct sort_columns){n, c->date, c->received, c->size, c->from, c->subject};
}

static void columns_free(struct columns *c)
{
    free(c->date);
    free(c->received);
    free(c->size);
    free(c->from);
    free(c->subject);
}

static bool shown(struct view *v, uint32_t msg)
{
    const struct store_msg *m = store_get(&v->mb->store, msg);

    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return false;
    return !v->limit || view_match(v, v->limit, msg);
}

static int rebuild_threaded(struct view *v, const struct columns *c, struct err *e)
{
    const struct store *st = &v->mb->store;
    size_t n = store_count(st);
    struct thread_input *in = xcalloc(n ? n : 1, sizeof *in);
    struct sort_spec sib = {v->sort.aux, {SORT_UNSORTED, false, false}};
    struct sort_spec roots = sib;
    struct sort_cmp *sib_cmp, *root_cmp;
    size_t n_lines = 0;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const struct store_msg *m = store_get(st, (uint32_t)i);
        in[i].id = m->id_hash;
        in[i].refs = m->n_refs ? store_refs(st, m) : NULL;
        in[i].n_refs = m->n_refs;
        in[i].subject = store_str(st, m->subject);
        in[i].date = m->date;
    }
    /* Keep the collapse state of the old tree, by message. */
    bool *was_collapsed = NULL;
    if (v->tree && thread_msg_count(v->tree) == n) {
        was_collapsed = xcalloc(n ? n : 1, sizeof *was_collapsed);
        for (size_t i = 0; i < n; i++)
            was_collapsed[i] = thread_is_collapsed(v->tree, (uint32_t)i);
    }
    thread_free(v->tree);
    v->tree = thread_build(in, n, &v->thread_opts, e);
    free(in);
    if (!v->tree) {
        free(was_collapsed);
        return -1;
    }
    if (was_collapsed) {
        for (size_t i = 0; i < n; i++)
            if (was_collapsed[i])
                thread_collapse(v->tree, (uint32_t)i, true);
        free(was_collapsed);
    }

    roots.primary.reverse = v->sort.primary.reverse != v->sort.aux.reverse;
    sib_cmp = sort_cmp_new(&sib, &c->cols);
    root_cmp = sort_cmp_new(&roots, &c->cols);
    struct thread_view tv = {sort_cmp_msgs, sib_cmp, sort_cmp_msgs, root_cmp,
                             v->sort.aux.last || v->sort.primary.last};
    v->lines = xreallocarray(v->lines, n ? n : 1, sizeof *v->lines);
    rc = thread_display(v->tree, &tv, v->lines, n ? n : 1, &n_lines, e);
    sort_cmp_free(sib_cmp);
    sort_cmp_free(root_cmp);
    if (rc < 0)
        return -1;

    /* Drop what the limit hides or what is gone; depths stay. */
    size_t k = 0;
    for (size_t i = 0; i < n_lines; i++)
        if (shown(v, v->lines[i].msg))
            v->lines[k++] = v->lines[i];
    v->n_lines = k;
    return 0;
}

static int rebuild_flat(struct view *v, const struct columns *c)
{
    const struct store *st = &v->mb->store;
    size_t n = store_count(st), k = 0;
    uint32_t *idx = xcalloc(n ? n : 1, sizeof *idx);

    for (size_t i = 0; i < n; i++)
        if (shown(v, (uint32_t)i))
            idx[k++] = (uint32_t)i;
    sort_indexes(idx, k, &v->sort, &c->cols);
    v->lines = xreallocarray(v->lines, k ? k : 1, sizeof *v->lines);
    for (size_t i = 0; i < k; i++)
        v->lines[i] = (struct thread_line){idx[i], 0, 0};
    v->n_lines = k;
    free(idx);
    thread_free(v->tree);
    v->tree = NULL;
    return 0;
}

int view_rebuild(struct view *v, struct err *e)
{
    const struct store *st = &v->mb->store;
    size_t n = store_count(st);
    uint32_t keep = view_current(v);
    size_t old_cursor = v->cursor;
    struct columns c;
    int rc;

    if (keep != VIEW_NONE && keep >= n)
        keep = VIEW_NONE;
    columns_fill(&c, st, &v->sort);
    rc = view_threaded(v) ? rebuild_threaded(v, &c, e) : rebuild_flat(v, &c);
    columns_free(&c);
    if (rc < 0) {
        v->n_lines = 0;
        v->cursor = 0;
        return -1;
    }
    free(v->line_of);
    v->line_of = xmalloc((n ? n : 1) * sizeof *v->line_of);
    for (size_t i = 0; i < n; i++)
        v->line_of[i] = VIEW_NONE;
    for (size_t i = 0; i < v->n_lines; i++)
        v->line_of[v->lines[i].msg] = (uint32_t)i;
    v->n_msgs = n;

    if (keep != VIEW_NONE && v->line_of[keep] != VIEW_NONE)
        v->cursor = v->line_of[keep];
    else if (old_cursor < v->n_lines)
        v->cursor = old_cursor;
    else
        v->cursor = v->n_lines ? v->n_lines - 1 : 0;
    return 0;
}

int view_set_limit(struct view *v, const char *text, struct err *e)
{
    struct pattern *p = NULL;
    struct pattern *old = v->limit;
    char *old_text = v->limit_text;

    if (text && *text && strcmp(text, "~A") != 0) {
        struct pattern_opts o = {PATTERN_SIMPLE, v->now};
        if (pattern_compile_opts(text, &o, &p, e) < 0)
            return -1;
    }
    v->limit = p;
    v->limit_text = p ? xstrdup(text) : NULL;
    if (view_rebuild(v, e) < 0) {
        pattern_free(p);
        free(v->limit_text);
        v->limit = old;
        v->limit_text = old_text;
        struct err ignored;
        (void)view_rebuild(v, &ignored);
        return -1;
    }
    pattern_free(old);
    free(old_text);
    return 0;
}

int view_set_sort(struct view *v, const struct sort_spec *spec, struct err *e)
{
    v->sort = *spec;
    return view_rebuild(v, e);
}

size_t view_search(struct view *v, const struct pattern *p, bool backward, bool *wrapped)
{
    size_t n = v->n_lines;

    if (wrapped)
        *wrapped = false;
    for (size_t step = 1; step <= n; step++) {
        size_t line;
        if (backward)
            line = (v->cursor + n - step % n) % n;
        else
            line = (v->cursor + step) % n;
        if (wrapped && ((backward && line > v->cursor) || (!backward && line < v->cursor)))
            *wrapped = true;
        if (view_match(v, p, v->lines[line].msg))
            return line;
    }
    return VIEW_NONE;
}

size_t view_find_flags(const struct view *v, bool backward, unsigned want, unsigned unwanted)
{
    const struct store *st = &v->mb->store;

    for (size_t k = 1; k <= v->n_lines; k++) {
        size_t line;
        if (backward) {
            if (k > v->cursor)
                break;
            line = v->cursor - k;
        } else {
            line = v->cursor + k;
            if (line >= v->n_lines)
                break;
        }
        unsigned f = store_get(st, v->lines[line].msg)->flags;
        if ((f & want) == want && !(f & unwanted))
            return line;
    }
    return VIEW_NONE;
}

int view_toggle_collapse(struct view *v, struct err *e)
{
    uint32_t msg = view_current(v), root;

    if (!v->tree || msg == VIEW_NONE)
        return 0;
    root = thread_root_of(v->tree, msg);
    thread_collapse(v->tree, root, !thread_is_collapsed(v->tree, root));
    /* The cursor goes to the thread's first visible message. */
    if (view_rebuild(v, e) < 0)
        return -1;
    if (!thread_is_dummy(v->tree, root))
        view_goto_msg(v, root);
    else if (thread_first_child(v->tree, root) != THREAD_NONE)
        view_goto_msg(v, thread_first_child(v->tree, root));
    return 0;
}

int view_collapse_all(struct view *v, bool collapse, struct err *e)
{
    uint32_t msg = view_current(v);

    if (!v->tree)
        return 0;
    thread_collapse_all(v->tree, collapse);
    if (view_rebuild(v, e) < 0)
        return -1;
    if (msg != VIEW_NONE && !view_goto_msg(v, msg)) {
        uint32_t root = thread_root_of(v->tree, msg);
        if (!view_goto_msg(v, root) && thread_first_child(v->tree, root) != THREAD_NONE)
            view_goto_msg(v, thread_first_child(v->tree, root));
    }
    return 0;
}

int view_tree_prefix(const struct view *v, size_t line, char *out, size_t size)
{
    struct err e;

    if (size)
        out[0] = '\0';
    if (!v->tree || line >= v->n_lines)
        return 0;
    return thread_prefix(v->tree, v->lines[line].msg, v->ascii_tree ? THREAD_PREFIX_ASCII : 0,
                         out, size, &e);
}

static void collect(const struct thread_tree *t, uint32_t node, uint32_t **out, size_t *n,
                    size_t *cap)
{
    /* Iterative pre-order walk: threads can be deep. */
    uint32_t stack_small[64];
    uint32_t *stack = stack_small;
    size_t sp = 0, scap = ARRAY_LEN(stack_small);

    stack[sp++] = node;
    while (sp > 0) {
        uint32_t cur = stack[--sp];
        if (!thread_is_dummy(t, cur)) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                *out = xreallocarray(*out, *cap, sizeof **out);
            }
            (*out)[(*n)++] = cur;
        }
        /* push children in reverse so the first child comes out first */
        size_t mark = sp;
        for (uint32_t c = thread_first_child(t, cur); c != THREAD_NONE;
             c = thread_next_sibling(t, c)) {
            if (sp == scap) {
                scap *= 2;
                if (stack == stack_small) {
                    stack = xmalloc(scap * sizeof *stack);
                    memcpy(stack, stack_small, sizeof stack_small);
                } else {
                    stack = xreallocarray(stack, scap, sizeof *stack);
                }
            }
            stack[sp++] = c;
        }
        for (size_t a = mark, b = sp; a + 1 < b; a++, b--) {
            uint32_t tmp = stack[a];
            stack[a] = stack[b - 1];
            stack[b - 1] = tmp;
        }
    }
    if (stack != stack_small)
        free(stack);
}

size_t view_thread_members(const struct view *v, uint32_t msg, bool subthread, uint32_t **out)
{
    size_t n = 0, cap = 0;

    *out = NULL;
    if (msg == VIEW_NONE)
        return 0;
    if (!v->tree) {
        *out = xmalloc(sizeof **out);
        (*out)[0] = msg;
        return 1;
    }
    collect(v->tree, subthread ? msg : thread_root_of(v->tree, msg), out, &n, &cap);
    return n;
}
