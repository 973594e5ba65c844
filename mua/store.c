/* store: the compact message table of one open mailbox (see store.h). */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "thread.h"
#include "xalloc.h"

#define STORE_MSGS_MAX ((uint32_t)UINT32_MAX - 1u)

void store_init(struct store *st)
{
    memset(st, 0, sizeof *st);
    st->arena_max = STORE_ARENA_MAX;
}

void store_free(struct store *st)
{
    uint32_t max = st->arena_max;

    free(st->msgs);
    free(st->arena);
    free(st->refs);
    free(st->intern);
    store_init(st);
    st->arena_max = max;
}

void store_reset(struct store *st)
{
    st->n = 0;
    st->arena_len = 0;
    st->n_refs = 0;
    if (st->intern != NULL)
        memset(st->intern, 0, (size_t)st->intern_cap * sizeof *st->intern);
    st->intern_n = 0;
}

uint64_t store_str_hash(const char *s, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;

    /* Eight bytes at a time, each step a multiply-xorshift mix. */
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
    }
    w = 0;
    if (n > 0)
        memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

/* ---- growth -------------------------------------------------------------- */

static void grow_msgs(struct store *st, size_t want)
{
    size_t cap = st->cap ? st->cap : 64;

    if (want <= st->cap)
        return;
    while (cap < want)
        cap = cap > STORE_MSGS_MAX / 2 ? STORE_MSGS_MAX : cap * 2;
    st->msgs = xreallocarray(st->msgs, cap, sizeof *st->msgs);
    st->cap = (uint32_t)cap;
}

/* want <= arena_max + 1 has been checked by the caller. */
static void grow_arena(struct store *st, size_t want)
{
    size_t cap = st->arena_cap ? st->arena_cap : 4096;

    if (want <= st->arena_cap)
        return;
    while (cap < want)
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    st->arena = xrealloc(st->arena, cap);
    st->arena_cap = (uint32_t)cap;
}

static void grow_refs(struct store *st, size_t want)
{
    size_t cap = st->refs_cap ? st->refs_cap : 256;

    if (want <= st->refs_cap)
        return;
    while (cap < want)
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    st->refs = xreallocarray(st->refs, cap, sizeof *st->refs);
    st->refs_cap = (uint32_t)cap;
}

void store_reserve(struct store *st, size_t n)
{
    size_t want = (size_t)st->n + n;

    if (want > STORE_MSGS_MAX)
        want = STORE_MSGS_MAX;
    grow_msgs(st, want);
    /* A guess: ~64 bytes of names and new strings, two references. */
    if (n < (SIZE_MAX - st->arena_len) / 64 &&
        (size_t)st->arena_len + n * 64 <= (size_t)st->arena_max + 1)
        grow_arena(st, (size_t)st->arena_len + n * 64);
    if (n < (UINT32_MAX - st->n_refs) / 2)
        grow_refs(st, (size_t)st->n_refs + n * 2);
}

/* ---- arena and interning ------------------------------------------------- */

/* The arena starts with the "" at offset 0. */
static void arena_start(struct store *st)
{
    if (st->arena_len == 0) {
        grow_arena(st, 1);
        st->arena[0] = '\0';
        st->arena_len = 1;
    }
}

/* A string ends at its first NUL, if any. */
static size_t span_len(struct store_span s)
{
    const char *z;

    if (s.p == NULL)
        return 0;
    z = memchr(s.p, '\0', s.n);
    return z != NULL ? (size_t)(z - s.p) : s.n;
}

static uint32_t arena_append(struct store *st, const char *p, size_t n)
{
    uint32_t off = st->arena_len;

    grow_arena(st, (size_t)st->arena_len + n + 1);
    if (n > 0)
        memcpy(st->arena + off, p, n);
    st->arena[off + n] = '\0';
    st->arena_len += (uint32_t)(n + 1);
    return off;
}

static void intern_grow(struct store *st)
{
    uint32_t ncap = st->intern_cap ? st->intern_cap * 2 : 1024;
    uint32_t *t = xcalloc(ncap, sizeof *t);

    for (uint32_t i = 0; i < st->intern_cap; i++) {
        uint32_t off = st->intern[i];
        const char *s;
        uint64_t h;

        if (off == 0)
            continue;
        s = st->arena + off;
        h = store_str_hash(s, strlen(s));
        for (uint32_t j = (uint32_t)h & (ncap - 1);; j = (j + 1) & (ncap - 1)) {
            if (t[j] == 0) {
                t[j] = off;
                break;
            }
        }
    }
    free(st->intern);
    st->intern = t;
    st->intern_cap = ncap;
}

/* The offset of an equal string already in the arena, else a new copy. */
static uint32_t arena_intern(struct store *st, const char *p, size_t n)
{
    uint64_t h;
    uint32_t mask, j, off;

    if (n == 0)
        return 0;
    if (st->intern_cap == 0 || ((size_t)st->intern_n + 1) * 2 > st->intern_cap)
        intern_grow(st);
    mask = st->intern_cap - 1;
    h = store_str_hash(p, n);
    for (j = (uint32_t)h & mask; (off = st->intern[j]) != 0; j = (j + 1) & mask) {
        if ((size_t)off + n < st->arena_len && st->arena[off + n] == '\0' &&
            memcmp(st->arena + off, p, n) == 0)
            return off;
    }
    off = arena_append(st, p, n);
    st->intern[j] = off;
    st->intern_n++;
    return off;
}

/* ---- adding -------------------------------------------------------------- */

/* Header fields of a record, from a store_new or an envelope. */
struct hdr_fields {
    struct store_span from, from_addr, subject;
    uint64_t id_hash;
    int64_t date;
    bool list_id;
    size_t n_refs;
    const uint64_t *refs;                 /* store_new: copy these */
    const struct msg_envelope *env;       /* envelope: hash these */
};

static bool irt_adds(const struct msg_envelope *env)
{
    uint64_t h;

    if (env->in_reply_to == NULL)
        return false;
    if (env->n_references == 0)
        return true;
    h = thread_id_hash(env->in_reply_to, strlen(env->in_reply_to));
    return h != thread_id_hash(env->references[env->n_references - 1],
                              strlen(env->references[env->n_references - 1]));
}

static void hdr_from_envelope(struct hdr_fields *h, const struct msg_envelope *env)
{
    memset(h, 0, sizeof *h);
    if (env->from.n > 0) {
        const struct msg_addr *a = &env->from.v[0];
        const char *addr = a->addr != NULL ? a->addr : "";

        h->from_addr.p = addr;
        h->from_addr.n = strlen(addr);
        if (a->name != NULL && a->name[0] != '\0') {
            h->from.p = a->name;
            h->from.n = strlen(a->name);
        } else {
            h->from = h->from_addr;
        }
    }
    if (env->subject != NULL) {
        h->subject.p = env->subject;
        h->subject.n = strlen(env->subject);
    }
    if (env->message_id != NULL)
        h->id_hash = thread_id_hash(env->message_id, strlen(env->message_id));
    h->date = env->date_valid ? (int64_t)env->date : 0;
    h->list_id = env->list_id != NULL;
    h->n_refs = env->n_references + (irt_adds(env) ? 1 : 0);
    h->env = env;
}

static void hdr_from_new(struct hdr_fields *h, const struct store_new *in)
{
    memset(h, 0, sizeof *h);
    h->from = in->from;
    h->from_addr = in->from_addr;
    h->subject = in->subject;
    h->id_hash = in->id_hash;
    h->date = in->date;
    h->list_id = in->list_id;
    h->n_refs = in->refs != NULL ? in->n_refs : 0;
    h->refs = in->refs;
}

static int fill_slot(struct store *st, uint32_t idx, const struct store_new *file,
                     const struct hdr_fields *h, struct err *e)
{
    struct store_msg *m = &st->msgs[idx];
    bool keep_name = file->name.p == NULL && m->name != 0;
    size_t name_n = keep_name ? 0 : span_len(file->name);
    size_t key_len = file->key_len != 0 ? file->key_len : name_n;
    size_t need;

    if (name_n == 0 && !keep_name)
        return err_set(e, ERR_INVAL, "message without a name");
    if (key_len > name_n)
        key_len = name_n;
    if (key_len > STORE_KEY_MAX)
        return err_set(e, ERR_LIMIT, "message key longer than %u bytes", STORE_KEY_MAX);
    if (h->n_refs > STORE_REFS_MAX)
        return err_set(e, ERR_LIMIT, "more than %u references", STORE_REFS_MAX);
    if (h->n_refs > UINT32_MAX - st->n_refs)
        return err_set(e, ERR_LIMIT, "too many references in the mailbox");
    /* Worst case, nothing interned: every string plus its NUL. */
    need = name_n + span_len(h->from) + span_len(h->from_addr) + span_len(h->subject) +
           span_len(file->tags) + 5;
    if (need > (size_t)st->arena_max - st->arena_len)
        return err_set(e, ERR_LIMIT, "string arena full (%u bytes)", st->arena_max);

    arena_start(st);
    if (!keep_name) {
        m->name = arena_append(st, file->name.p, name_n);
        m->key_len = (uint16_t)key_len;
    }
    m->from = arena_intern(st, h->from.p, span_len(h->from));
    m->from_addr = arena_intern(st, h->from_addr.p, span_len(h->from_addr));
    m->subject = arena_intern(st, h->subject.p, span_len(h->subject));
    m->tags = arena_intern(st, file->tags.p, span_len(file->tags));
    m->id_hash = h->id_hash;
    m->date = h->date;
    m->tz = (file->tz >= -1440 && file->tz <= 1440) ? (int16_t)file->tz : 0;
    m->received = file->received;
    m->size = file->size;
    m->flags = (uint16_t)file->flags;
    m->sub = (uint8_t)file->sub;
    m->bits = (uint8_t)(STORE_B_FILLED | (h->list_id ? STORE_B_LIST_ID : 0));

    grow_refs(st, (size_t)st->n_refs + h->n_refs);
    m->refs = st->n_refs;
    m->n_refs = (uint16_t)h->n_refs;
    if (h->env != NULL) {
        const struct msg_envelope *env = h->env;
        uint64_t *r = st->refs + st->n_refs;
        size_t k = 0;

        for (; k < env->n_references; k++)
            r[k] = thread_id_hash(env->references[k], strlen(env->references[k]));
        if (k < h->n_refs)
            r[k] = thread_id_hash(env->in_reply_to, strlen(env->in_reply_to));
    } else if (h->n_refs > 0) {
        memcpy(st->refs + st->n_refs, h->refs, h->n_refs * sizeof *h->refs);
    }
    st->n_refs += (uint32_t)h->n_refs;
    return 0;
}

int store_add_name(struct store *st, const char *name, size_t name_len, size_t key_len,
                   unsigned flags, unsigned sub, uint32_t *idx, struct err *e)
{
    uint32_t i;

    if (store_add_empty(st, 1, &i, e) != 0)
        return -1;
    if (store_set_name(st, i, name, name_len, key_len, e) != 0) {
        st->n--;
        return -1;
    }
    st->msgs[i].flags = (uint16_t)flags;
    st->msgs[i].sub = (uint8_t)sub;
    if (idx != NULL)
        *idx = i;
    return 0;
}

int store_add_empty(struct store *st, size_t count, uint32_t *first, struct err *e)
{
    if (count > STORE_MSGS_MAX - st->n)
        return err_set(e, ERR_LIMIT, "more than %u messages", STORE_MSGS_MAX);
    grow_msgs(st, (size_t)st->n + count);
    if (count > 0)
        memset(st->msgs + st->n, 0, count * sizeof *st->msgs);
    for (size_t i = 0; i < count; i++)
        st->msgs[st->n + i].file_index = st->n + (uint32_t)i;
    if (first != NULL)
        *first = st->n;
    st->n += (uint32_t)count;
    return 0;
}

static int add_with(struct store *st, const struct store_new *file,
                    const struct hdr_fields *h, uint32_t *idx, struct err *e)
{
    uint32_t i;

    if (store_add_empty(st, 1, &i, e) != 0)
        return -1;
    if (fill_slot(st, i, file, h, e) != 0) {
        st->n--;
        return -1;
    }
    if (idx != NULL)
        *idx = i;
    return 0;
}

int store_add(struct store *st, const struct store_new *in, uint32_t *idx, struct err *e)
{
    struct hdr_fields h;

    hdr_from_new(&h, in);
    return add_with(st, in, &h, idx, e);
}

int store_add_envelope(struct store *st, const struct store_new *file,
                       const struct msg_envelope *env, uint32_t *idx, struct err *e)
{
    struct hdr_fields h;

    hdr_from_envelope(&h, env);
    return add_with(st, file, &h, idx, e);
}

int store_fill(struct store *st, uint32_t idx, const struct store_new *in, struct err *e)
{
    struct hdr_fields h;

    if (idx >= st->n)
        die("store_fill: message %u of %u", idx, st->n);
    hdr_from_new(&h, in);
    return fill_slot(st, idx, in, &h, e);
}

int store_fill_envelope(struct store *st, uint32_t idx, const struct store_new *file,
                        const struct msg_envelope *env, struct err *e)
{
    struct hdr_fields h;

    if (idx >= st->n)
        die("store_fill_envelope: message %u of %u", idx, st->n);
    hdr_from_envelope(&h, env);
    return fill_slot(st, idx, file, &h, e);
}

void store_compact(struct store *st, uint32_t *map)
{
    uint32_t k = 0;

    for (uint32_t i = 0; i < st->n; i++) {
        const struct store_msg *m = &st->msgs[i];
        bool keep = (m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE);

        if (map != NULL)
            map[i] = keep ? k : STORE_NONE;
        if (keep) {
            if (k != i)
                st->msgs[k] = *m;
            k++;
        }
    }
    st->n = k;
}

int store_set_name(struct store *st, uint32_t idx, const char *name, size_t name_len,
                   size_t key_len, struct err *e)
{
    struct store_span s = {name, name_len};
    struct store_msg *m = store_get_mut(st, idx);
    size_t n = span_len(s);

    if (n == 0)
        return err_set(e, ERR_INVAL, "message without a name");
    if (key_len == 0 || key_len > n)
        key_len = n;
    if (key_len > STORE_KEY_MAX)
        return err_set(e, ERR_LIMIT, "message key longer than %u bytes", STORE_KEY_MAX);
    if (n + 1 > (size_t)st->arena_max - st->arena_len)
        return err_set(e, ERR_LIMIT, "string arena full (%u bytes)", st->arena_max);
    arena_start(st);
    m->name = arena_append(st, name, n);
    m->key_len = (uint16_t)key_len;
    return 0;
}

int store_set_tags(struct store *st, uint32_t idx, const char *tags, size_t n,
                   struct err *e)
{
    struct store_span s = {tags, n};
    struct store_msg *m = store_get_mut(st, idx);
    size_t len = span_len(s);

    if (len + 1 > (size_t)st->arena_max - st->arena_len)
        return err_set(e, ERR_LIMIT, "string arena full (%u bytes)", st->arena_max);
    arena_start(st);
    m->tags = arena_intern(st, tags, len);
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

const struct store_msg *store_get(const struct store *st, uint32_t idx)
{
    if (idx >= st->n)
        die("store_get: message %u of %u", idx, st->n);
    return &st->msgs[idx];
}

struct store_msg *store_get_mut(struct store *st, uint32_t idx)
{
    if (idx >= st->n)
        die("store_get_mut: message %u of %u", idx, st->n);
    return &st->msgs[idx];
}

const char *store_str(const struct store *st, uint32_t off)
{
    if (off == 0)
        return "";
    if (off >= st->arena_len)
        die("store_str: offset %u outside the arena (%u)", off, st->arena_len);
    return st->arena + off;
}

const uint64_t *store_refs(const struct store *st, const struct store_msg *m)
{
    static const uint64_t none[1] = {0};

    if (m->n_refs == 0)
        return none;
    if ((uint64_t)m->refs + m->n_refs > st->n_refs)
        die("store_refs: run outside the array");
    return st->refs + m->refs;
}

size_t store_mem(const struct store *st)
{
    return (size_t)st->cap * sizeof *st->msgs + st->arena_cap +
           (size_t)st->refs_cap * sizeof *st->refs +
           (size_t)st->intern_cap * sizeof *st->intern;
}
