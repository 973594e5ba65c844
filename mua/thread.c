/* thread: JWZ threading over compact inputs, display order, tree prefixes,
 * collapse/expand (see thread.h). */
#include "thread.h"

#include <stdlib.h>
#include <string.h>

#include "sort.h"
#include "xalloc.h"

#define NONE THREAD_NONE
#define MAX_NODES (UINT32_MAX - 1)
#define RENEW(p, n) xreallocarray((p), (n), sizeof *(p))

enum {
    F_COLLAPSED = 1u << 0,
    F_MISSING = 1u << 1,    /* the message it answers is not in the input */
    F_SUBJECT = 1u << 2,    /* attached by subject */
    F_DUP = 1u << 3,        /* duplicate Message-ID under its first copy */
    F_DEAD = 1u << 4,       /* a removed dummy (while building) */
};

struct thread_tree {
    uint32_t n;             /* messages: nodes 0 .. n-1 */
    uint32_t nodes;         /* messages and dummies */
    uint32_t first_root;    /* roots are chained through next_sibling */
    uint32_t *parent;
    uint32_t *first_child;
    uint32_t *next_sibling;
    uint32_t *count;        /* messages in the subtree */
    uint32_t *newest;       /* newest message in the subtree */
    int64_t *date;          /* per message */
    uint8_t *flags;
};

/* ---- hashing ------------------------------------------------------------- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    h ^= h >> 33;
    return h;
}

uint64_t thread_id_hash(const char *id, size_t len)
{
    const unsigned char *p = (const unsigned char *)id;
    uint64_t h = UINT64_C(0xcbf29ce484222325);   /* FNV-1a 64 */

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    h = mix64(h ^ (uint64_t)len);
    return h ? h : 1;
}

/* Table slot of a 64-bit key; callers' ids need not be well mixed. */
static size_t slot_of(uint64_t key, size_t mask)
{
    uint64_t h = key * UINT64_C(0x9e3779b97f4a7c15);

    return (size_t)(h ^ (h >> 29)) & mask;
}

/* ---- building ------------------------------------------------------------ */

struct builder {
    struct thread_tree *t;
    size_t cap;             /* capacity of the node arrays */
    uint64_t *id;           /* per node: the Message-ID it holds (0: none) */
    uint32_t *uf;           /* union-find: nodes in the same tree */
    uint32_t *slot;         /* id -> node, open addressing; NONE: empty */
    size_t mask;            /* slots - 1 */
    size_t used;
};

static void grow_nodes(struct builder *b, size_t cap)
{
    struct thread_tree *t = b->t;

    t->parent = RENEW(t->parent, cap);
    t->first_child = RENEW(t->first_child, cap);
    t->next_sibling = RENEW(t->next_sibling, cap);
    t->flags = xreallocarray(t->flags, cap, sizeof *t->flags);
    b->id = xreallocarray(b->id, cap, sizeof *b->id);
    b->uf = RENEW(b->uf, cap);
    b->cap = cap;
}

/* A new parentless node; NONE when the node numbers are exhausted. */
static uint32_t new_node(struct builder *b, uint64_t id)
{
    struct thread_tree *t = b->t;
    uint32_t x;

    if (t->nodes >= MAX_NODES)
        return NONE;
    if (t->nodes == b->cap)
        grow_nodes(b, b->cap < MAX_NODES / 2 ? b->cap * 2 : MAX_NODES);
    x = t->nodes++;
    t->parent[x] = NONE;
    t->first_child[x] = NONE;
    t->next_sibling[x] = NONE;
    t->flags[x] = 0;
    b->id[x] = id;
    b->uf[x] = x;
    return x;
}

static uint32_t table_find(const struct builder *b, uint64_t id)
{
    for (size_t i = slot_of(id, b->mask);; i = (i + 1) & b->mask) {
        uint32_t x = b->slot[i];
        if (x == NONE || b->id[x] == id)
            return x;
    }
}

static void table_put(uint32_t *slot, size_t mask, const uint64_t *id,
                      uint32_t x)
{
    size_t i = slot_of(id[x], mask);

    while (slot[i] != NONE)
        i = (i + 1) & mask;
    slot[i] = x;
}

static void table_alloc(struct builder *b, size_t slots)
{
    b->slot = XNEWARRAY(uint32_t, slots);
    memset(b->slot, 0xff, slots * sizeof *b->slot);
    b->mask = slots - 1;
}

/* Add node x (its id is not in the table yet), keeping the load <= 1/2. */
static void table_insert(struct builder *b, uint32_t x)
{
    if (2 * (b->used + 1) > b->mask + 1) {
        uint32_t *old = b->slot;
        size_t old_slots = b->mask + 1;

        table_alloc(b, 2 * old_slots);
        for (size_t i = 0; i < old_slots; i++)
            if (old[i] != NONE)
                table_put(b->slot, b->mask, b->id, old[i]);
        free(old);
    }
    table_put(b->slot, b->mask, b->id, x);
    b->used++;
}

/* The node of id, made (a dummy) when no message has it; NONE at the node
 * limit. */
static uint32_t resolve(struct builder *b, uint64_t id)
{
    uint32_t x = table_find(b, id);

    if (x != NONE)
        return x;
    x = new_node(b, id);
    if (x != NONE)
        table_insert(b, x);
    return x;
}

static uint32_t uf_find(uint32_t *uf, uint32_t x)
{
    while (uf[x] != x) {
        uf[x] = uf[uf[x]];
        x = uf[x];
    }
    return x;
}

/*
 * Make par the parent of child if child has none and the link closes no
 * loop.  Links are only ever added to parentless nodes, so child is the root
 * of its tree, and par is its descendant exactly when both are in the same
 * union-find set.
 */
static void link_child(struct builder *b, uint32_t child, uint32_t par)
{
    uint32_t rc, rp;

    if (child == par || b->t->parent[child] != NONE)
        return;
    rc = uf_find(b->uf, child);
    rp = uf_find(b->uf, par);
    if (rc == rp)
        return;
    b->t->parent[child] = par;
    b->uf[rc] = rp;
}

static bool is_dummy(const struct thread_tree *t, uint32_t x)
{
    return x >= t->n;
}

/* Child lists and the root chain from parent[], in node order, skipping
 * removed dummies. */
static void rebuild_links(struct thread_tree *t)
{
    t->first_root = NONE;
    for (uint32_t x = 0; x < t->nodes; x++)
        t->first_child[x] = NONE;
    for (uint32_t x = t->nodes; x-- > 0;) {
        uint32_t p = t->parent[x];
        if (t->flags[x] & F_DEAD)
            continue;
        if (p == NONE) {
            t->next_sibling[x] = t->first_root;
            t->first_root = x;
        } else {
            t->next_sibling[x] = t->first_child[p];
            t->first_child[p] = x;
        }
    }
}

/* Nodes in breadth-first order from the roots (parents before children);
 * returns how many. */
static size_t bfs_order(const struct thread_tree *t, uint32_t *order)
{
    size_t tail = 0;

    for (uint32_t r = t->first_root; r != NONE; r = t->next_sibling[r])
        order[tail++] = r;
    for (size_t head = 0; head < tail; head++)
        for (uint32_t c = t->first_child[order[head]]; c != NONE;
             c = t->next_sibling[c])
            order[tail++] = c;
    return tail;
}

/*
 * Remove the dummies inside threads (their message children move up to the
 * nearest message above, or to the dummy at the root) and the dummy roots
 * with fewer than two children.
 */
static void prune(struct thread_tree *t)
{
    uint32_t *order = XNEWARRAY(uint32_t, t->nodes);
    uint32_t *att = XNEWARRAY(uint32_t, t->nodes);   /* where children go */
    size_t n_order;

    rebuild_links(t);
    n_order = bfs_order(t, order);
    for (size_t i = 0; i < n_order; i++) {
        uint32_t x = order[i], p = t->parent[x];
        if (!is_dummy(t, x)) {
            if (p != NONE)
                t->parent[x] = att[p];
            att[x] = x;
        } else if (p == NONE) {
            att[x] = x;
        } else {
            att[x] = att[p];
            t->parent[x] = NONE;
            t->flags[x] |= F_DEAD;
        }
    }
    /* att becomes the children count of the dummy roots */
    for (uint32_t d = t->n; d < t->nodes; d++)
        att[d] = 0;
    for (uint32_t x = 0; x < t->n; x++)
        if (t->parent[x] != NONE && is_dummy(t, t->parent[x]))
            att[t->parent[x]]++;
    for (uint32_t x = 0; x < t->n; x++)
        if (t->parent[x] != NONE && is_dummy(t, t->parent[x]) &&
            att[t->parent[x]] < 2)
            t->parent[x] = NONE;
    for (uint32_t d = t->n; d < t->nodes; d++)
        if (att[d] < 2)
            t->flags[d] |= F_DEAD;
    free(order);
    free(att);
}

struct root_info {
    uint64_t hash;
    const char *base;
    uint32_t node;
    uint32_t group;         /* index of the first root with this subject */
    bool reply;
};

/*
 * Group roots by normalized subject.  For each subject the first root seen
 * is the group's slot; the group's target is the best root to join: a dummy
 * over a message, a non-reply over a reply.  Returns -1 at the node limit.
 */
static int group_by_subject(struct builder *b, const struct thread_input *in,
                            const struct thread_opts *opts)
{
    struct thread_tree *t = b->t;
    struct root_info *ri;
    uint32_t *target, *slot;
    bool *target_reply;
    size_t nr = 0, mask, slots = 16;
    int rc = 0;

    rebuild_links(t);
    for (uint32_t r = t->first_root; r != NONE; r = t->next_sibling[r])
        nr++;
    if (nr < 2)
        return 0;
    while (slots < 2 * nr)
        slots *= 2;
    mask = slots - 1;
    ri = XNEWARRAY(struct root_info, nr);
    target = XNEWARRAY(uint32_t, nr);
    target_reply = XNEWARRAY(bool, nr);
    slot = XNEWARRAY(uint32_t, slots);
    memset(slot, 0xff, slots * sizeof *slot);

    nr = 0;
    for (uint32_t r = t->first_root; r != NONE; r = t->next_sibling[r]) {
        /* a dummy root's subject is its first child's */
        uint32_t m = is_dummy(t, r) ? t->first_child[r] : r;
        struct root_info *k = &ri[nr];
        size_t i;

        k->node = r;
        k->base = sort_subject_base(in[m].subject, &k->reply);
        k->group = NONE;
        if (k->base[0] == '\0') {
            nr++;
            continue;
        }
        k->hash = sort_subject_hash(k->base);
        for (i = slot_of(k->hash, mask); slot[i] != NONE; i = (i + 1) & mask) {
            const struct root_info *g = &ri[slot[i]];
            if (g->hash == k->hash && sort_subject_cmp(g->base, k->base) == 0)
                break;
        }
        if (slot[i] == NONE) {
            slot[i] = (uint32_t)nr;
            k->group = (uint32_t)nr;
            target[nr] = r;
            target_reply[nr] = k->reply;
        } else {
            uint32_t g = slot[i], cur = target[g];
            k->group = g;
            if (!is_dummy(t, cur) &&
                (is_dummy(t, r) || (target_reply[g] && !k->reply))) {
                target[g] = r;
                target_reply[g] = k->reply;
            }
        }
        nr++;
    }

    for (size_t i = 0; i < nr; i++) {
        uint32_t g = ri[i].group, r = ri[i].node, c;
        bool r_reply = ri[i].reply, c_reply;

        if (g == NONE || (c = target[g]) == r)
            continue;
        if (opts->strict_subject && !r_reply)
            continue;
        c_reply = target_reply[g];
        if (is_dummy(t, c) && is_dummy(t, r)) {
            for (uint32_t ch = t->first_child[r]; ch != NONE;
                 ch = t->next_sibling[ch]) {
                t->parent[ch] = c;
                t->flags[ch] |= F_SUBJECT;
            }
            t->flags[r] |= F_DEAD;
        } else if (is_dummy(t, c) || (!c_reply && r_reply)) {
            t->parent[r] = c;
            t->flags[r] |= F_SUBJECT;
        } else if (is_dummy(t, r) || (c_reply && !r_reply)) {
            /* not reached with the choice of targets above; kept symmetric */
            t->parent[c] = r;
            t->flags[c] |= F_SUBJECT;
            target[g] = r;
            target_reply[g] = r_reply;
        } else {
            uint32_t d = new_node(b, 0);
            if (d == NONE) {
                rc = -1;
                break;
            }
            t->parent[c] = d;
            t->parent[r] = d;
            t->flags[c] |= F_SUBJECT;
            t->flags[r] |= F_SUBJECT;
            target[g] = d;
        }
    }
    free(ri);
    free(target);
    free(target_reply);
    free(slot);
    return rc;
}

/* Drop removed dummies (renumbering the others), size the arrays and
 * compute the per-subtree counts. */
static void finish(struct builder *b, const struct thread_input *in)
{
    struct thread_tree *t = b->t;
    uint32_t *map = XNEWARRAY(uint32_t, t->nodes), *order;
    uint32_t k = t->n;
    size_t n_order;

    for (uint32_t x = 0; x < t->nodes; x++)
        map[x] = !is_dummy(t, x) ? x : (t->flags[x] & F_DEAD) ? NONE : k++;
    /* map[x] <= x: moving entries down in node order reads before writing */
    for (uint32_t x = 0; x < t->nodes; x++) {
        uint32_t p = t->parent[x];
        if (map[x] == NONE)
            continue;
        t->parent[map[x]] = p == NONE ? NONE : map[p];
        t->flags[map[x]] = t->flags[x];
    }
    free(map);
    t->nodes = k;
    t->parent = RENEW(t->parent, k);
    t->first_child = RENEW(t->first_child, k);
    t->next_sibling = RENEW(t->next_sibling, k);
    t->flags = xreallocarray(t->flags, k, sizeof *t->flags);
    t->count = XNEWARRAY(uint32_t, k);
    t->newest = XNEWARRAY(uint32_t, k);
    t->date = XNEWARRAY(int64_t, t->n);
    for (uint32_t x = 0; x < t->n; x++)
        t->date[x] = in[x].date;
    rebuild_links(t);

    order = XNEWARRAY(uint32_t, k);
    n_order = bfs_order(t, order);
    for (uint32_t x = 0; x < k; x++) {
        t->count[x] = is_dummy(t, x) ? 0 : 1;
        t->newest[x] = is_dummy(t, x) ? NONE : x;
    }
    for (size_t i = n_order; i-- > 0;) {
        uint32_t x = order[i], p = t->parent[x], a, c;
        if (p == NONE)
            continue;
        t->count[p] += t->count[x];
        a = t->newest[p];
        c = t->newest[x];
        if (a == NONE || t->date[c] > t->date[a] ||
            (t->date[c] == t->date[a] && c > a))
            t->newest[p] = c;
    }
    free(order);
}

static void builder_free(struct builder *b)
{
    free(b->id);
    free(b->uf);
    free(b->slot);
}

struct thread_tree *thread_build(const struct thread_input *in, size_t n,
                                 const struct thread_opts *opts,
                                 struct err *e)
{
    static const struct thread_opts defaults = THREAD_OPTS_INIT;
    struct builder b = {0};
    struct thread_tree *t;
    size_t slots = 16;

    if (opts == NULL)
        opts = &defaults;
    if (n > THREAD_MAX_MSGS) {
        err_set(e, ERR_LIMIT, "too many messages to thread (%zu)", n);
        return NULL;
    }
    t = XNEW(struct thread_tree);
    t->n = (uint32_t)n;
    b.t = t;
    grow_nodes(&b, n + n / 8 + 16);
    for (size_t i = 0; i < n; i++)
        new_node(&b, 0);
    while (slots < 2 * (n + 8))
        slots *= 2;
    table_alloc(&b, slots);

    /* Message-IDs: the first message with an id owns it */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t id = in[i].id;
        if (id == 0 || table_find(&b, id) != NONE)
            continue;
        b.id[i] = id;
        table_insert(&b, i);
    }

    /* Each message's parent: its last reference that is not itself.  Done
     * for all messages before any reference chain so that a message's own
     * references decide its parent. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t last = NONE;
        for (uint32_t j = 0; j < in[i].n_refs; j++) {
            uint32_t c;
            if (in[i].refs[j] == 0)
                continue;
            c = resolve(&b, in[i].refs[j]);
            if (c == NONE)
                goto limit;
            if (c != i)
                last = c;
        }
        if (last != NONE)
            link_child(&b, i, last);
    }

    /* The reference chains, where they give a parent to a node without. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t prev = NONE;
        for (uint32_t j = 0; j < in[i].n_refs; j++) {
            uint32_t c;
            if (in[i].refs[j] == 0)
                continue;
            c = table_find(&b, in[i].refs[j]);
            if (c == i)
                continue;
            if (prev != NONE && prev != c)
                link_child(&b, c, prev);
            prev = c;
        }
    }

    for (uint32_t i = 0; i < n; i++) {
        uint32_t p = t->parent[i];
        if (p == NONE)
            continue;
        if (is_dummy(t, p))
            t->flags[i] |= F_MISSING;
        if (in[i].id != 0 && b.id[i] != in[i].id &&
            table_find(&b, in[i].id) == p)
            t->flags[i] |= F_DUP;
    }
    free(b.slot);
    b.slot = NULL;

    prune(t);
    if (opts->subject_fallback && group_by_subject(&b, in, opts) < 0)
        goto limit;
    finish(&b, in);
    builder_free(&b);
    return t;

limit:
    err_set(e, ERR_LIMIT, "too many threading nodes");
    builder_free(&b);
    thread_free(t);
    return NULL;
}

void thread_free(struct thread_tree *t)
{
    if (t == NULL)
        return;
    free(t->parent);
    free(t->first_child);
    free(t->next_sibling);
    free(t->count);
    free(t->newest);
    free(t->date);
    free(t->flags);
    free(t);
}

/* ---- navigation and collapse --------------------------------------------- */

static void check_node(const struct thread_tree *t, uint32_t node)
{
    if (node >= t->nodes)
        die("thread: node %u out of range (%u)", node, t->nodes);
}

size_t thread_msg_count(const struct thread_tree *t)
{
    return t->n;
}

size_t thread_node_count(const struct thread_tree *t)
{
    return t->nodes;
}

bool thread_is_dummy(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return is_dummy(t, node);
}

uint32_t thread_first_root(const struct thread_tree *t)
{
    return t->first_root;
}

uint32_t thread_parent(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return t->parent[node];
}

uint32_t thread_first_child(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return t->first_child[node];
}

uint32_t thread_next_sibling(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return t->next_sibling[node];
}

uint32_t thread_root_of(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    while (t->parent[node] != NONE)
        node = t->parent[node];
    return node;
}

uint32_t thread_count(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return t->count[node];
}

void thread_collapse(struct thread_tree *t, uint32_t node, bool collapsed)
{
    check_node(t, node);
    if (collapsed)
        t->flags[node] |= F_COLLAPSED;
    else
        t->flags[node] &= (uint8_t)~F_COLLAPSED;
}

bool thread_is_collapsed(const struct thread_tree *t, uint32_t node)
{
    check_node(t, node);
    return (t->flags[node] & F_COLLAPSED) != 0;
}

void thread_collapse_all(struct thread_tree *t, bool collapsed)
{
    if (collapsed) {
        for (uint32_t r = t->first_root; r != NONE; r = t->next_sibling[r])
            t->flags[r] |= F_COLLAPSED;
    } else {
        for (uint32_t x = 0; x < t->nodes; x++)
            t->flags[x] &= (uint8_t)~F_COLLAPSED;
    }
}

/* ---- display ------------------------------------------------------------- */

static int by_date(uint32_t a, uint32_t b, void *arg)
{
    const struct thread_tree *t = arg;

    if (t->date[a] != t->date[b])
        return t->date[a] < t->date[b] ? -1 : 1;
    return (a > b) - (a < b);
}

/* Nodes compared through the message that represents them. */
struct rep_cmp {
    thread_cmp_fn fn;
    void *arg;
    const uint32_t *rep;
};

static int by_rep(uint32_t a, uint32_t b, void *arg)
{
    const struct rep_cmp *c = arg;
    int r;

    if (a == b)
        return 0;
    r = c->fn(c->rep[a], c->rep[b], c->arg);
    return r ? r : (a > b) - (a < b);
}

/* Sort the list starting at *head (linked by next) into order. */
static void sort_list(struct thread_tree *t, uint32_t *head, uint32_t *buf,
                      uint32_t *tmp, struct rep_cmp *c)
{
    size_t k = 0;

    if (*head == NONE || t->next_sibling[*head] == NONE)
        return;
    for (uint32_t x = *head; x != NONE; x = t->next_sibling[x])
        buf[k++] = x;
    sort_u32(buf, k, by_rep, c, tmp);
    *head = buf[0];
    for (size_t i = 0; i + 1 < k; i++)
        t->next_sibling[buf[i]] = buf[i + 1];
    t->next_sibling[buf[k - 1]] = NONE;
}

void thread_sort(struct thread_tree *t, const struct thread_view *view)
{
    static const struct thread_view defaults = {0};
    struct rep_cmp sib, root;
    uint32_t *rep, *buf, *tmp;

    if (view == NULL)
        view = &defaults;
    if (t->nodes == 0)
        return;
    rep = XNEWARRAY(uint32_t, t->nodes);
    buf = XNEWARRAY(uint32_t, t->nodes);
    tmp = XNEWARRAY(uint32_t, t->nodes);
    for (uint32_t x = 0; x < t->nodes; x++)
        rep[x] = view->by_newest ? t->newest[x] : x;

    sib.fn = view->cmp ? view->cmp : by_date;
    sib.arg = view->cmp ? view->cmp_arg : t;
    sib.rep = rep;
    root = sib;
    if (view->root_cmp) {
        root.fn = view->root_cmp;
        root.arg = view->root_arg;
    }
    for (uint32_t x = 0; x < t->nodes; x++)
        sort_list(t, &t->first_child[x], buf, tmp, &sib);
    /* a dummy (always a root) stands for its first child */
    if (!view->by_newest)
        for (uint32_t d = t->n; d < t->nodes; d++)
            rep[d] = t->first_child[d];
    sort_list(t, &t->first_root, buf, tmp, &root);
    free(rep);
    free(buf);
    free(tmp);
}

int thread_lines(const struct thread_tree *t, struct thread_line *out,
                 size_t cap, size_t *n_lines, struct err *e)
{
    size_t k = 0;

    *n_lines = 0;
    for (uint32_t r = t->first_root; r != NONE; r = t->next_sibling[r]) {
        uint32_t x = r;
        int depth = 0;

        if (is_dummy(t, r)) {
            x = t->first_child[r];
            if (t->flags[r] & F_COLLAPSED) {
                if (k == cap)
                    goto full;
                out[k].msg = x;
                out[k].depth = 0;
                out[k].hidden_count = t->count[r] - 1;
                k++;
                continue;
            }
        }
        for (;;) {
            bool open = !(t->flags[x] & F_COLLAPSED);

            if (k == cap)
                goto full;
            out[k].msg = x;
            out[k].depth = depth < UINT16_MAX ? (uint16_t)depth : UINT16_MAX;
            out[k].hidden_count = open ? 0 : t->count[x] - 1;
            k++;
            if (open && t->first_child[x] != NONE) {
                x = t->first_child[x];
                depth++;
                continue;
            }
            /* climb to the next sibling, stopping at the thread root */
            while (x != r && t->next_sibling[x] == NONE) {
                x = t->parent[x];
                depth--;
            }
            if (x == r)
                break;
            x = t->next_sibling[x];
        }
    }
    *n_lines = k;
    return 0;

full:
    *n_lines = k;
    return err_set(e, ERR_LIMIT, "thread display needs more than %zu lines",
                   cap);
}

int thread_display(struct thread_tree *t, const struct thread_view *view,
                   struct thread_line *out, size_t cap, size_t *n_lines,
                   struct err *e)
{
    thread_sort(t, view);
    return thread_lines(t, out, cap, n_lines, e);
}

/* ---- prefixes ------------------------------------------------------------ */

#define U_VLINE "\xe2\x94\x82"      /* │ */
#define U_LTEE "\xe2\x94\x9c"       /* ├ */
#define U_LLCORNER "\xe2\x94\x94"   /* └ */
#define U_ULCORNER "\xe2\x94\x8c"   /* ┌ */
#define U_HLINE "\xe2\x94\x80"      /* ─ */

/* Bytes of msg's prefix without the NUL; when out is not NULL, write them
 * (out has room for that many). */
static size_t prefix_build(const struct thread_tree *t, uint32_t msg,
                           unsigned flags, char *out)
{
    bool ascii = (flags & THREAD_PREFIX_ASCII) != 0;
    uint32_t top = msg, p = t->parent[msg];
    const char *corner, *stroke;
    size_t len, pos;
    uint8_t f = t->flags[msg];

    if (p == NONE)
        return 0;
    while (t->parent[top] != NONE)
        top = t->parent[top];
    if (is_dummy(t, top) && (t->flags[top] & F_COLLAPSED) &&
        t->first_child[top] == msg)
        return 0;

    if (t->next_sibling[msg] == NONE)
        corner = ascii ? "`" : U_LLCORNER;
    else if (p == top && is_dummy(t, top) && t->first_child[top] == msg)
        corner = ascii ? "," : U_ULCORNER;
    else
        corner = ascii ? "|" : U_LTEE;
    if (f & F_SUBJECT)
        stroke = "*";
    else if (f & F_DUP)
        stroke = "=";
    else if (f & F_MISSING)
        stroke = "?";
    else
        stroke = ascii ? "-" : U_HLINE;

    len = strlen(corner) + strlen(stroke) + 1;
    for (uint32_t a = p; t->parent[a] != NONE; a = t->parent[a])
        len += (t->next_sibling[a] != NONE && !ascii) ? strlen(U_VLINE) + 1 : 2;
    if (out == NULL)
        return len;

    pos = len;
    pos -= 1;
    out[pos] = '>';
    pos -= strlen(stroke);
    memcpy(out + pos, stroke, strlen(stroke));
    pos -= strlen(corner);
    memcpy(out + pos, corner, strlen(corner));
    for (uint32_t a = p; t->parent[a] != NONE; a = t->parent[a]) {
        const char *col = t->next_sibling[a] == NONE ? "  "
                          : ascii ? "| " : U_VLINE " ";
        pos -= strlen(col);
        memcpy(out + pos, col, strlen(col));
    }
    return len;
}

size_t thread_prefix_size(const struct thread_tree *t, uint32_t msg,
                          unsigned flags)
{
    check_node(t, msg);
    return prefix_build(t, msg, flags, NULL) + 1;
}

int thread_prefix(const struct thread_tree *t, uint32_t msg, unsigned flags,
                  char *out, size_t size, struct err *e)
{
    size_t len;

    check_node(t, msg);
    len = prefix_build(t, msg, flags, NULL);
    if (len + 1 > size) {
        if (size > 0)
            out[0] = '\0';
        return err_set(e, ERR_LIMIT, "thread prefix needs %zu bytes", len + 1);
    }
    prefix_build(t, msg, flags, out);
    out[len] = '\0';
    return 0;
}
