/*
 * mbox_maildir: the Maildir backend (struct mailbox_ops over lib/maildir).
 *
 * Load, for a large folder in a fraction of a second and a few bytes per
 * message beyond the store:
 *
 *   1. Scan new/ then cur/ with readdir (no stat), with maildir_scan's
 *      rules, each name going straight into a store slot (the store's
 *      number order is this file order).  The scan is streamed rather than
 *      taken from maildir_scan, whose entry array costs ~180 bytes per
 *      message at the peak of a load.
 *   2. One sequential pass over the header cache (hcache_foreach) fills the
 *      slots whose base name it knows, through a hash table of the slots'
 *      keys; records of files that are gone are deleted afterwards.
 *   3. The other files are read in key (base name) order: the cache then
 *      only appends, and as Maildir names start with the delivery time this
 *      is about the order the files were written in.  Reading is openat
 *      relative to new/ or cur/ with O_NOATIME (without it after EPERM),
 *      fstat (size, and the mtime as the received time), read(2) into a
 *      reused buffer up to the empty line (at most MD_HEADER_MAX), no
 *      stdio, then message_parse_headers.  With 200 files or more and more
 *      than one CPU, worker threads (at most MD_WORKERS_MAX) read and parse
 *      while this thread fills the store and the cache in order.
 *   4. Slots of files that vanished meanwhile are dropped (store_compact).
 *
 * A file not where the scan saw it is looked for again under its base name
 * (renamed by another program); one that cannot be read keeps a record made
 * from its name, and mb->warning says so.
 *
 * Flags come from the file names, always (never from the cache); a message
 * in new/ has MSG_NEW.  The store's name is the file name as last seen, its
 * key the base name, which is also the cache key.
 *
 * Flag changes are written at once, as renames relative to what is on disk
 * (maildir_change_flags): a flag another program set meanwhile is kept.
 * Deletion is deferred to sync, which unlinks the marked messages.
 */
#include "mailbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hcache.h"
#include "maildir.h"
#include "message.h"
#include "msg.h"
#include "xalloc.h"

#define MD_HEADER_MAX ((size_t)1 << 20)
#define MD_FIRST_READ 8192
#define MD_MESSAGE_MAX ((size_t)1 << 30)
#define MD_NAME_MAX 255            /* NAME_MAX: what readdir gives */
#define MD_WORKERS_MAX 4
#define MD_PARALLEL_MIN 200        /* fewer files to read: no threads */
#define MD_RING 256                /* files in flight between threads */
#define MD_CHUNK 32                /* files a worker takes at once */

/* What reads header blocks: one per thread. */
struct reader {
    struct buf rd;              /* header block being read */
    struct buf xl;              /* X-Label */
    bool noatime_denied;
};

struct md_priv {
    struct maildir_folder *f;
    struct hcache *hc;          /* NULL: running without a cache */
    int dirfd[2];               /* new/ and cur/ during a load or check, else -1 */
    struct reader r;            /* the main thread's */
    struct hcache_recbuf rb;
    struct hcache_refs rf;
    struct msg_limits lim;
};

static struct md_priv *priv(struct mailbox *mb)
{
    return mb->priv;
}

/* ---- flags ---------------------------------------------------------------- */

struct flag_map {
    unsigned md, msg;
};

static const struct flag_map flag_map[] = {
    {MAILDIR_F_DRAFT, MSG_DRAFT},   {MAILDIR_F_FLAGGED, MSG_FLAGGED},
    {MAILDIR_F_PASSED, MSG_PASSED}, {MAILDIR_F_REPLIED, MSG_REPLIED},
    {MAILDIR_F_SEEN, MSG_SEEN},     {MAILDIR_F_TRASHED, MSG_TRASHED},
};

static unsigned md_to_msg(unsigned md)
{
    unsigned f = 0;

    for (size_t i = 0; i < ARRAY_LEN(flag_map); i++)
        if (md & flag_map[i].md)
            f |= flag_map[i].msg;
    return f;
}

static unsigned msg_to_md(unsigned msg)
{
    unsigned f = 0;

    for (size_t i = 0; i < ARRAY_LEN(flag_map); i++)
        if (msg & flag_map[i].msg)
            f |= flag_map[i].md;
    return f;
}

/* The store flags of a file name in sub. */
static unsigned name_flags(const char *name, enum maildir_sub sub, size_t *base_len)
{
    unsigned md = 0;

    maildir_info_parse(name, &md, NULL, base_len);
    return md_to_msg(md) | (sub == MAILDIR_SUB_NEW ? MSG_NEW : 0);
}

/* ---- cache warnings --------------------------------------------------------- */

static void warn(struct mailbox *mb, const struct err *w, const char *what)
{
    if (mb->has_warning)
        return;
    mb->warning = *w;
    err_prefix(&mb->warning, "%s", what);
    mb->has_warning = true;
}

/* A cache write failed for a reason other than the key: go on without it. */
static void drop_cache(struct mailbox *mb, const struct err *w)
{
    struct md_priv *p = priv(mb);

    warn(mb, w, "running without the header cache");
    hcache_close(p->hc);
    p->hc = NULL;
}

static void cache_put(struct mailbox *mb, const char *key, size_t key_len,
                      const struct hcache_rec *rec)
{
    struct md_priv *p = priv(mb);
    struct err w;

    if (p->hc == NULL || key_len == 0)
        return;
    if (hcache_put(p->hc, key, key_len, rec, &w) != 0 && w.code != ERR_INVAL)
        drop_cache(mb, &w);
}

static void cache_del(struct mailbox *mb, const char *key, size_t key_len)
{
    struct md_priv *p = priv(mb);
    struct err w;

    if (p->hc == NULL || key_len == 0)
        return;
    if (hcache_del(p->hc, key, key_len, &w) != 0 && w.code != ERR_INVAL)
        drop_cache(mb, &w);
}

static void cache_commit(struct mailbox *mb)
{
    struct md_priv *p = priv(mb);
    struct err w;

    if (p->hc != NULL && hcache_commit(p->hc, &w) != 0)
        drop_cache(mb, &w);
}

/* ---- open / close ----------------------------------------------------------- */

static void md_close(struct mailbox *mb)
{
    struct md_priv *p = priv(mb);

    if (p == NULL)
        return;
    hcache_close(p->hc);
    maildir_folder_close(p->f);
    buf_free(&p->r.rd);
    buf_free(&p->r.xl);
    hcache_recbuf_free(&p->rb);
    hcache_refs_free(&p->rf);
    free(p);
    mb->priv = NULL;
}

static int md_open(struct mailbox *mb, const char *path, unsigned flags, struct err *e)
{
    struct md_priv *p = XNEW(struct md_priv);
    struct err w;

    mb->priv = p;
    p->dirfd[0] = p->dirfd[1] = -1;
    buf_init(&p->r.rd, 0);
    buf_init(&p->r.xl, 0);
    hcache_recbuf_init(&p->rb);
    message_limits_default(&p->lim);
    p->lim.max_header_bytes = MD_HEADER_MAX;
    if (maildir_folder_open_path(path, &p->f, e) != 0) {
        md_close(mb);
        return -1;
    }
    if (!(flags & MAILBOX_NO_HCACHE) && hcache_open(mb->hcache_dir, path, &p->hc, &w) != 0) {
        warn(mb, &w, "running without the header cache");
        p->hc = NULL;
    }
    return 0;
}

/* ---- reading files ---------------------------------------------------------- */

/* Where the header block ends in b[0..len) (after its empty line), looking
 * from *from on; 0 when not yet seen.  *from is where to go on next time. */
static size_t header_end(const char *b, size_t len, size_t *from)
{
    size_t i = *from;

    if (i == 0 && len > 0 && b[0] == '\n')
        return 1;
    if (i == 0 && len > 1 && b[0] == '\r' && b[1] == '\n')
        return 2;
    while (i < len) {
        const char *nl = memchr(b + i, '\n', len - i);

        if (nl == NULL) {
            i = len;
            break;
        }
        i = (size_t)(nl - b);
        if (i + 1 >= len || (b[i + 1] == '\r' && i + 2 >= len))
            break;   /* need more bytes to decide */
        if (b[i + 1] == '\n')
            return i + 2;
        if (b[i + 1] == '\r' && b[i + 2] == '\n')
            return i + 3;
        i++;
    }
    *from = i;
    return 0;
}

/* Append the header block of fd (up to and including the empty line, at
 * most MD_HEADER_MAX bytes) to out.  size: the file's size, or 0 unknown. */
static int read_header_fd(int fd, uint64_t size, struct buf *out, struct err *e)
{
    size_t start = out->len, from = 0, end;

    for (;;) {
        size_t have = out->len - start;
        size_t want = have < MD_FIRST_READ ? MD_FIRST_READ - have : have;
        char *dst;
        ssize_t r;

        if (have >= MD_HEADER_MAX)
            break;
        if (want > MD_HEADER_MAX - have)
            want = MD_HEADER_MAX - have;
        dst = buf_reserve(out, want);
        if (dst == NULL)
            return err_set(e, ERR_LIMIT, "message header larger than the buffer allows");
        r = read(fd, dst, want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, "read");
        }
        if (r == 0)
            break;
        buf_commit(out, (size_t)r);
        end = header_end(out->data + start, out->len - start, &from);
        if (end != 0) {
            buf_truncate(out, start + end);
            break;
        }
        if (size != 0 && out->len - start >= size)
            break;
    }
    return 0;
}

/* Open a message file where the scan saw it, relative to new/ or cur/
 * (O_NOATIME unless refused).  -1 when it is not there (ENOENT), -2 (errno
 * set) for any other failure. */
static int open_fast(const int dirfd[2], struct reader *r, enum maildir_sub sub,
                     const char *name)
{
    int dfd = dirfd[sub == MAILDIR_SUB_CUR];
    int flags = O_RDONLY | O_CLOEXEC;
    int d = -1;

    if (dfd < 0)
        return -1;   /* the slow path will say what is wrong */
    if (!r->noatime_denied) {
        d = openat(dfd, name, flags | O_NOATIME);
        if (d < 0 && errno == EPERM)
            r->noatime_denied = true;
    }
    if (d < 0 && r->noatime_denied)
        d = openat(dfd, name, flags);
    if (d >= 0)
        return d;
    return errno == ENOENT ? -1 : -2;
}

/* The length of a file name's base name (its key). */
static size_t base_len_of(const char *name)
{
    size_t base_len;

    (void)name_flags(name, MAILDIR_SUB_CUR, &base_len);
    return base_len;
}

static void cache_put_slot(struct mailbox *mb, uint32_t idx, const struct hcache_rec *rec)
{
    const struct store_msg *m = store_get(&mb->store, idx);

    cache_put(mb, store_str(&mb->store, m->name), m->key_len, rec);
}

/* One file to read, and what reading it gave.  Filled by read_one (in any
 * thread), used by apply_one (in the thread that owns the store). */
enum parsed_result { PR_OK = 0, PR_GONE, PR_FAIL };

struct parsed {
    uint32_t idx;
    enum maildir_sub sub;
    char name[MD_NAME_MAX + 1];
    enum parsed_result result;
    struct err err;             /* PR_FAIL */
    struct message *m;          /* PR_OK */
    char *renamed;              /* the name it had when found, if not name */
    enum maildir_sub found_sub;
    int64_t mtime;
    uint64_t size;
    int tz;
    char *xl;                   /* X-Label, or NULL */
};

/* Set up ps to read slot idx. */
static void parsed_init(struct parsed *ps, const struct store *st, uint32_t idx)
{
    const struct store_msg *sm = store_get(st, idx);
    const char *name = store_str(st, sm->name);
    size_t n = strlen(name);

    memset(ps, 0, sizeof *ps);
    ps->idx = idx;
    ps->sub = sm->sub == MAILDIR_SUB_CUR ? MAILDIR_SUB_CUR : MAILDIR_SUB_NEW;
    if (n > MD_NAME_MAX)
        n = MD_NAME_MAX;   /* not a name readdir gives: the open will fail */
    memcpy(ps->name, name, n);
    ps->name[n] = '\0';
}

static void parsed_clear(struct parsed *ps)
{
    message_free(ps->m);
    free(ps->renamed);
    free(ps->xl);
    ps->m = NULL;
    ps->renamed = NULL;
    ps->xl = NULL;
}

/*
 * Read and parse the header of ps->name: open it (following a rename by
 * another program), fstat for size and mtime, read up to the empty line,
 * message_parse_headers, the Date zone and X-Label.  Touches nothing shared
 * but read-only state, so worker threads may run it.
 */
static void read_one(const struct maildir_folder *f, const int dirfd[2],
                     const struct msg_limits *lim, struct reader *r, struct parsed *ps)
{
    struct stat st;
    int fd, rc;

    ps->found_sub = ps->sub;
    fd = open_fast(dirfd, r, ps->sub, ps->name);
    if (fd == -2) {
        err_sys(&ps->err, "cannot open %s", ps->name);
        ps->result = PR_FAIL;
        return;
    }
    if (fd < 0) {
        /* Not where the scan saw it: renamed (or removed) by someone else. */
        struct maildir_ref ref = {ps->sub, xstrdup(ps->name)};

        if (maildir_open_message(f, &ref, &fd, &ps->err) != 0) {
            ps->result = ps->err.code == ERR_NOTFOUND ? PR_GONE : PR_FAIL;
            maildir_ref_free(&ref);
            return;
        }
        ps->renamed = ref.name;
        ps->found_sub = ref.sub;
    }
    buf_reset(&r->rd);
    if (fstat(fd, &st) != 0) {
        err_sys(&ps->err, "cannot stat %s", ps->name);
        close(fd);
        ps->result = PR_FAIL;
        return;
    }
    rc = read_header_fd(fd, (uint64_t)st.st_size, &r->rd, &ps->err);
    close(fd);
    if (rc == 0)
        rc = message_parse_headers(buf_cstr(&r->rd), r->rd.len, lim, &ps->m, &ps->err);
    if (rc != 0) {
        ps->result = PR_FAIL;
        return;
    }
    if (ps->m->env.date_valid)
        (void)mailbox_date_tz(ps->m->env.date_text, &ps->tz);
    if (mailbox_header_field(buf_cstr(&r->rd), r->rd.len, "X-Label", &r->xl))
        ps->xl = xstrdup(buf_cstr(&r->xl));
    ps->mtime = (int64_t)st.st_mtime;
    ps->size = (uint64_t)st.st_size;
    ps->result = PR_OK;
}

/*
 * Put what read_one found into the store slot (and the cache).  A file that
 * is gone leaves the slot empty (*gone); one that could not be read gets a
 * bare record from its name and a warning, so it is not silently missing.
 * Fails only when the store does; ps is cleared in any case.
 */
static int apply_one(struct mailbox *mb, struct parsed *ps, bool *gone, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct store *st = &mb->store;
    struct store_new file;
    struct hcache_rec rec;
    size_t base_len;
    int rc;

    *gone = ps->result == PR_GONE;
    if (*gone) {
        mb->stats.vanished++;
        parsed_clear(ps);
        return 0;
    }
    memset(&file, 0, sizeof file);
    if (ps->renamed != NULL) {
        file.name.p = ps->renamed;
        file.name.n = strlen(ps->renamed);
        file.flags = name_flags(ps->renamed, ps->found_sub, &base_len);
        file.key_len = base_len;
    } else {
        file.flags = store_get(st, ps->idx)->flags;   /* from the scan */
    }
    file.sub = ps->found_sub;
    if (ps->result == PR_FAIL) {
        warn(mb, &ps->err, "some messages could not be read");
        rc = store_fill(st, ps->idx, &file, e);
        parsed_clear(ps);
        return rc;
    }
    file.received = ps->mtime;
    file.size = ps->size;
    file.tz = ps->tz;
    rc = store_fill_envelope(st, ps->idx, &file, &ps->m->env, e);
    if (rc == 0) {
        hcache_rec_from_envelope(&rec, &ps->m->env, ps->tz, ps->size, ps->mtime, ps->xl,
                                 &p->rb);
        cache_put_slot(mb, ps->idx, &rec);
        mb->stats.cache_misses++;
    }
    parsed_clear(ps);
    return rc;
}

/* Read slot idx's file and fill the slot, in this thread. */
static int parse_slot(struct mailbox *mb, uint32_t idx, bool *gone, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct parsed *ps = XNEW(struct parsed);
    int rc;

    parsed_init(ps, &mb->store, idx);
    read_one(p->f, p->dirfd, &p->lim, &p->r, ps);
    rc = apply_one(mb, ps, gone, e);
    free(ps);
    return rc;
}

/* Fill slot idx (named by the scan) from a cache record. */
static int fill_from_rec(struct mailbox *mb, uint32_t idx, const struct hcache_rec *rec,
                         struct err *e)
{
    struct md_priv *p = priv(mb);
    const struct store_msg *sm = store_get(&mb->store, idx);
    struct store_new in;

    memset(&in, 0, sizeof in);
    in.flags = sm->flags;
    in.sub = sm->sub;
    hcache_rec_to_store(rec, &in, &p->rf);
    if (store_fill(&mb->store, idx, &in, e) != 0)
        return -1;
    mb->stats.cache_hits++;
    return 0;
}

/* ---- scanning ------------------------------------------------------------------ */

/*
 * Read new/ then cur/ and call fn for every message file: names starting
 * with '.' and directories are skipped, as maildir_scan does.  The scan is
 * streamed (each name goes straight into the store) rather than taken from
 * maildir_scan, whose entry array would cost ~180 bytes per message at the
 * peak of a load.
 */
typedef int (*entry_fn)(struct mailbox *mb, void *ctx, const char *name, size_t len,
                        enum maildir_sub sub, struct err *e);

struct scan_adapter {
    struct mailbox *mb;
    entry_fn fn;
    void *ctx;
};

static int scan_adapt(void *ctx, int dirfd, const char *name, size_t len, enum maildir_sub sub,
                      struct err *e)
{
    struct scan_adapter *ad = ctx;
    (void)dirfd;
    return ad->fn(ad->mb, ad->ctx, name, len, sub, e);
}

static int scan_each(struct mailbox *mb, entry_fn fn, void *ctx, struct err *e)
{
    struct scan_adapter ad = {mb, fn, ctx};
    return maildir_scan_names(priv(mb)->f, scan_adapt, &ad, e) != 0 ? -1 : 0;
}

/* ---- a hash table of keys ---------------------------------------------------- */

/*
 * Open addressing over message numbers, keyed by the store's keys.  A slot
 * holds the upper half of the key's hash and the number + 1 (0 is empty),
 * so a probe rarely has to look at the store; kept at most 4/5 full.
 */
struct keytab {
    uint64_t *slot;
    uint32_t mask;
    uint32_t n;
};

static void keytab_init(struct keytab *t, size_t n)
{
    size_t cap = 16;

    while (cap * 4 < n * 5 + 5)
        cap *= 2;
    t->slot = xcalloc(cap, sizeof *t->slot);
    t->mask = (uint32_t)(cap - 1);
    t->n = 0;
}

static void keytab_free(struct keytab *t)
{
    free(t->slot);
    t->slot = NULL;
}

static const char *key_of(const struct store *st, uint32_t i, size_t *len)
{
    const struct store_msg *m = store_get(st, i);

    *len = m->key_len;
    return store_str(st, m->name);
}

static uint32_t keytab_find_h(const struct keytab *t, const struct store *st, const char *k,
                              size_t n, uint64_t h)
{
    uint64_t fp = h >> 32;
    size_t m;

    for (uint32_t j = (uint32_t)h & t->mask; t->slot[j] != 0; j = (j + 1) & t->mask) {
        uint32_t i = (uint32_t)t->slot[j] - 1;
        const char *o;

        if (t->slot[j] >> 32 != fp)
            continue;
        o = key_of(st, i, &m);
        if (m == n && memcmp(o, k, n) == 0)
            return i;
    }
    return STORE_NONE;
}

static uint32_t keytab_find(const struct keytab *t, const struct store *st, const char *k,
                            size_t n)
{
    return keytab_find_h(t, st, k, n, store_str_hash(k, n));
}

static void keytab_put(struct keytab *t, uint64_t h, uint32_t i)
{
    uint32_t j = (uint32_t)h & t->mask;

    while (t->slot[j] != 0)
        j = (j + 1) & t->mask;
    t->slot[j] = (h >> 32 << 32) | ((uint64_t)i + 1);
    t->n++;
}

/* Insert message i unless its key is there already; returns the number
 * that holds the key. */
static uint32_t keytab_add(struct keytab *t, const struct store *st, uint32_t i)
{
    size_t n;
    const char *k = key_of(st, i, &n);
    uint32_t old = keytab_find(t, st, k, n);

    if (old != STORE_NONE)
        return old;
    if (((size_t)t->n + 1) * 5 > ((size_t)t->mask + 1) * 4) {
        struct keytab g;

        keytab_init(&g, ((size_t)t->mask + 1) * 2);
        for (uint32_t j = 0; j <= t->mask; j++) {
            if (t->slot[j] != 0) {
                uint32_t o = (uint32_t)t->slot[j] - 1;
                size_t on;
                const char *ok = key_of(st, o, &on);

                keytab_put(&g, store_str_hash(ok, on), o);
            }
        }
        keytab_free(t);
        *t = g;
    }
    keytab_put(t, store_str_hash(k, n), i);
    return i;
}

/* ---- load -------------------------------------------------------------------- */

static int add_name_cb(struct mailbox *mb, void *ctx, const char *name, size_t len,
                       enum maildir_sub sub, struct err *e)
{
    size_t base_len;
    unsigned fl = name_flags(name, sub, &base_len);

    (void)ctx;
    return store_add_name(&mb->store, name, len, base_len, fl, sub, NULL, e);
}

/* Cache records are matched to slots in batches: the hash table, the
 * records and the names are far apart in memory, so each step first asks
 * for the memory the next one needs for the whole batch. */
#define LOAD_BATCH 16

struct load_item {
    const char *key;
    size_t key_len;
    uint64_t hash;
    struct hcache_rec rec;
};

struct load_ctx {
    struct mailbox *mb;
    struct keytab tab;
    struct buf stale;           /* keys of records without a file */
    struct err err;
    bool failed;
    struct load_item batch[LOAD_BATCH];
    size_t n;
};

static int load_one(struct load_ctx *lc, const struct load_item *it)
{
    struct store *st = &lc->mb->store;
    const char *key = it->key;
    size_t key_len = it->key_len;
    uint32_t i = keytab_find_h(&lc->tab, st, key, key_len, it->hash);

    if (i == STORE_NONE) {
        uint32_t n32 = (uint32_t)key_len;

        if (buf_append(&lc->stale, &n32, sizeof n32) != 0 ||
            buf_append(&lc->stale, key, key_len) != 0)
            die("mbox_maildir: unbounded buffer refused an append");
        lc->mb->stats.cache_stale++;
        return 0;
    }
    if (store_get(st, i)->bits & STORE_B_FILLED)
        return 0;
    if (fill_from_rec(lc->mb, i, &it->rec, &lc->err) != 0) {
        lc->failed = true;
        return 1;
    }
    return 0;
}

static void prefetch_slot(const struct keytab *t, const struct store *st, uint64_t h, int step)
{
    uint32_t j = (uint32_t)h & t->mask;
    uint64_t fp = h >> 32;

    if (step == 0) {
        __builtin_prefetch(&t->slot[j]);
        return;
    }
    for (; t->slot[j] != 0; j = (j + 1) & t->mask) {
        if (t->slot[j] >> 32 == fp) {
            const struct store_msg *m = &st->msgs[(uint32_t)t->slot[j] - 1];

            if (step == 1)
                __builtin_prefetch(m);
            else
                __builtin_prefetch(st->arena + m->name);
            return;
        }
    }
}

static int load_flush(struct load_ctx *lc)
{
    const struct store *st = &lc->mb->store;
    int rc = 0;

    for (int step = 0; step < 3; step++)
        for (size_t j = 0; j < lc->n; j++)
            prefetch_slot(&lc->tab, st, lc->batch[j].hash, step);
    for (size_t j = 0; j < lc->n && rc == 0; j++)
        rc = load_one(lc, &lc->batch[j]);
    lc->n = 0;
    return rc;
}

static int load_cb(void *ctx, const char *key, size_t key_len, const struct hcache_rec *rec)
{
    struct load_ctx *lc = ctx;
    struct load_item *it;

    if (key == NULL)
        return load_flush(lc);
    it = &lc->batch[lc->n++];
    it->key = key;
    it->key_len = key_len;
    it->hash = store_str_hash(key, key_len);
    it->rec = *rec;
    return lc->n == LOAD_BATCH ? load_flush(lc) : 0;
}

static void open_dirs(struct md_priv *p)
{
    static const char *const sub[2] = {"new", "cur"};

    for (int i = 0; i < 2; i++) {
        char *d = xasprintf("%s/%s", p->f->path, sub[i]);

        p->dirfd[i] = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        free(d);
    }
}

static void close_dirs(struct md_priv *p)
{
    for (int i = 0; i < 2; i++) {
        if (p->dirfd[i] >= 0)
            close(p->dirfd[i]);
        p->dirfd[i] = -1;
    }
}

static void delete_stale(struct mailbox *mb, struct buf *stale)
{
    size_t pos = 0;

    while (pos + sizeof(uint32_t) <= stale->len) {
        uint32_t n;

        memcpy(&n, stale->data + pos, sizeof n);
        pos += sizeof n;
        cache_del(mb, stale->data + pos, n);
        pos += n;
    }
}

static int key_cmp(const void *a, const void *b, void *ctx)
{
    const struct store *st = ctx;
    size_t na, nb;
    const char *ka = key_of(st, *(const uint32_t *)a, &na);
    const char *kb = key_of(st, *(const uint32_t *)b, &nb);
    int c = memcmp(ka, kb, na < nb ? na : nb);

    return c != 0 ? c : (na > nb) - (na < nb);
}

/* ---- reading many files in parallel -------------------------------------------- */

/*
 * Reading and parsing header blocks is most of a cold load and is
 * independent from file to file, so worker threads do it while this thread
 * fills the store and the cache in the original order.  The main thread
 * queues files into a ring (copying each name, so workers never look at the
 * store), workers take them in order and mark them done, and the main
 * thread applies them in queue order.
 */
enum slot_state { SLOT_FREE = 0, SLOT_QUEUED, SLOT_DONE };

struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work;        /* something queued, or stop */
    pthread_cond_t done;        /* a slot became SLOT_DONE */
    struct parsed ring[MD_RING];
    enum slot_state state[MD_RING];
    size_t queued, taken;       /* counters over the whole run */
    bool stop;
    const struct md_priv *p;
};

struct worker {
    pthread_t tid;
    struct pool *pl;
    struct reader r;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pool *pl = w->pl;

    pthread_mutex_lock(&pl->mu);
    for (;;) {
        size_t first, n;

        while (pl->taken == pl->queued && !pl->stop)
            pthread_cond_wait(&pl->work, &pl->mu);
        if (pl->taken == pl->queued)
            break;   /* stop, and nothing left */
        /* A run of files at once: fewer wake-ups. */
        first = pl->taken;
        n = pl->queued - first < MD_CHUNK ? pl->queued - first : MD_CHUNK;
        pl->taken += n;
        pthread_mutex_unlock(&pl->mu);
        for (size_t i = 0; i < n; i++)
            read_one(pl->p->f, pl->p->dirfd, &pl->p->lim, &w->r,
                     &pl->ring[(first + i) % MD_RING]);
        pthread_mutex_lock(&pl->mu);
        for (size_t i = 0; i < n; i++)
            pl->state[(first + i) % MD_RING] = SLOT_DONE;
        pthread_cond_signal(&pl->done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

static size_t worker_count(size_t total)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (total < MD_PARALLEL_MIN || cpus < 2)
        return 0;
    return cpus > MD_WORKERS_MAX ? MD_WORKERS_MAX : (size_t)cpus;
}

/* Read and apply todo[0..total) with workers; false when no worker could
 * be started (nothing was done then). */
static bool load_parallel(struct mailbox *mb, const uint32_t *todo, size_t total,
                          size_t nworkers, mailbox_progress_fn progress, void *ctx, int *rc,
                          struct err *e)
{
    struct pool *pl = XNEW(struct pool);
    struct worker *w = XNEWARRAY(struct worker, nworkers);
    size_t started = 0, k;

    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->work, NULL);
    pthread_cond_init(&pl->done, NULL);
    pl->p = priv(mb);
    for (size_t i = 0; i < nworkers; i++) {
        w[started].pl = pl;
        buf_init(&w[started].r.rd, 0);
        buf_init(&w[started].r.xl, 0);
        w[started].r.noatime_denied = false;
        if (pthread_create(&w[started].tid, NULL, worker_main, &w[started]) == 0)
            started++;
        else
            buf_free(&w[started].r.rd);
    }
    *rc = 0;
    for (k = 0; started > 0 && k < total && *rc == 0; k++) {
        struct parsed *ps;
        bool gone;

        pthread_mutex_lock(&pl->mu);
        /* Top the ring up a chunk at a time. */
        while (pl->queued < total && pl->queued - k + MD_CHUNK <= MD_RING) {
            size_t end = pl->queued + MD_CHUNK < total ? pl->queued + MD_CHUNK : total;

            for (; pl->queued < end; pl->queued++) {
                size_t q = pl->queued % MD_RING;

                parsed_init(&pl->ring[q], &mb->store, todo[pl->queued]);
                pl->state[q] = SLOT_QUEUED;
            }
            pthread_cond_signal(&pl->work);
        }
        while (pl->state[k % MD_RING] != SLOT_DONE)
            pthread_cond_wait(&pl->done, &pl->mu);
        pthread_mutex_unlock(&pl->mu);
        ps = &pl->ring[k % MD_RING];
        *rc = apply_one(mb, ps, &gone, e);
        pl->state[k % MD_RING] = SLOT_FREE;
        if ((k + 1) % MAILBOX_PROGRESS_STEP == 0 && progress != NULL)
            progress(ctx, k + 1, total);
    }
    /* Stop: whatever is queued but not taken is dropped, the rest finishes. */
    pthread_mutex_lock(&pl->mu);
    pl->queued = pl->taken;
    pl->stop = true;
    pthread_cond_broadcast(&pl->work);
    pthread_mutex_unlock(&pl->mu);
    for (size_t i = 0; i < started; i++) {
        pthread_join(w[i].tid, NULL);
        buf_free(&w[i].r.rd);
        buf_free(&w[i].r.xl);
    }
    for (; k < pl->taken; k++)   /* read after a failure: not applied */
        parsed_clear(&pl->ring[k % MD_RING]);
    pthread_cond_destroy(&pl->done);
    pthread_cond_destroy(&pl->work);
    pthread_mutex_destroy(&pl->mu);
    free(pl);
    free(w);
    return started > 0;
}

/* Parse every slot not yet filled, with progress.  In key order: the cache
 * then only appends (LMDB fills its pages and copies few of them), and
 * Maildir names start with the delivery time, so this is about the order
 * the files were written in. */
static int load_cold(struct mailbox *mb, mailbox_progress_fn progress, void *ctx,
                     struct err *e)
{
    struct store *st = &mb->store;
    uint32_t *todo = NULL;
    size_t total = 0, nworkers;
    int rc = 0;

    for (uint32_t i = 0; i < store_count(st); i++)
        if (!(store_get(st, i)->bits & STORE_B_FILLED))
            total++;
    if (total > 0) {
        size_t k = 0;

        todo = XNEWARRAY(uint32_t, total);
        for (uint32_t i = 0; i < store_count(st); i++)
            if (!(store_get(st, i)->bits & STORE_B_FILLED))
                todo[k++] = i;
        qsort_r(todo, total, sizeof *todo, key_cmp, st);
    }
    nworkers = worker_count(total);
    if (nworkers == 0 || !load_parallel(mb, todo, total, nworkers, progress, ctx, &rc, e)) {
        for (size_t k = 0; k < total && rc == 0; k++) {
            bool gone;

            rc = parse_slot(mb, todo[k], &gone, e);
            if ((k + 1) % MAILBOX_PROGRESS_STEP == 0 && progress != NULL)
                progress(ctx, k + 1, total);
        }
    }
    if (rc == 0 && progress != NULL)
        progress(ctx, total, total);
    free(todo);
    return rc;
}

static int md_load(struct mailbox *mb, mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct store *st = &mb->store;
    struct load_ctx lc;
    int rc = -1;

    memset(&mb->stats, 0, sizeof mb->stats);
    memset(&lc, 0, sizeof lc);
    lc.mb = mb;
    buf_init(&lc.stale, 0);
    store_reset(st);
    if (scan_each(mb, add_name_cb, NULL, e) != 0)
        goto out;
    keytab_init(&lc.tab, store_count(st));
    for (uint32_t i = 0; i < store_count(st); i++)
        (void)keytab_add(&lc.tab, st, i);

    if (p->hc != NULL && hcache_foreach(p->hc, load_cb, &lc, &lc.err) != 0) {
        /* Corrupt cache (now rebuilt empty): forget what it gave. */
        warn(mb, &lc.err, "header cache");
        for (uint32_t i = 0; i < store_count(st); i++)
            store_get_mut(st, i)->bits = 0;
        mb->stats.cache_hits = 0;
        mb->stats.cache_stale = 0;
        buf_reset(&lc.stale);
    } else if (lc.failed) {
        if (e != NULL)
            *e = lc.err;
        goto out;
    }
    keytab_free(&lc.tab);

    open_dirs(p);
    rc = load_cold(mb, progress, ctx, e);
    close_dirs(p);
    delete_stale(mb, &lc.stale);
    cache_commit(mb);
    store_compact(st, NULL);
out:
    if (rc != 0) {
        err_scope(e, ERR_SCOPE_BOX, e != NULL && e->temporary);
        store_reset(st);
    }
    keytab_free(&lc.tab);
    buf_free(&lc.stale);
    return rc;
}

/* ---- check ------------------------------------------------------------------- */

struct check_ctx {
    struct keytab tab;
    uint8_t *seen;           /* per message known before the check */
    uint32_t n_before;
    bool changed;
};

/* A file the store does not know: from the cache when it has the base name
 * (a message moved back, say), else parsed.  Appended to the store. */
static int add_new_file(struct mailbox *mb, struct check_ctx *cc, const char *name, size_t len,
                        enum maildir_sub sub, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct store *st = &mb->store;
    struct hcache_rec rec;
    size_t base_len;
    unsigned fl = name_flags(name, sub, &base_len);
    uint32_t idx;
    bool gone = false;
    int rc;

    if (store_add_name(st, name, len, base_len, fl, sub, &idx, e) != 0)
        return -1;
    if (p->hc != NULL && hcache_get(p->hc, name, base_len, &rec, NULL) == 0)
        rc = fill_from_rec(mb, idx, &rec, e);
    else
        rc = parse_slot(mb, idx, &gone, e);
    if (rc != 0 || gone) {
        st->n--;   /* the slot just added */
        return rc;
    }
    (void)keytab_add(&cc->tab, st, idx);
    cc->changed = true;
    return 0;
}

static int check_cb(struct mailbox *mb, void *ctx, const char *name, size_t len,
                    enum maildir_sub sub, struct err *e)
{
    struct check_ctx *cc = ctx;
    struct store *st = &mb->store;
    size_t base_len = base_len_of(name);
    uint32_t i = keytab_find(&cc->tab, st, name, base_len);
    struct store_msg *m;

    if (i == STORE_NONE)
        return add_new_file(mb, cc, name, len, sub, e);
    if (i >= cc->n_before)
        return 0;   /* the same base name twice in this scan */
    cc->seen[i] = 1;
    m = store_get_mut(st, i);
    if (m->sub != sub || strcmp(store_str(st, m->name), name) != 0) {
        unsigned session = m->flags & MAILBOX_SESSION_FLAGS;
        unsigned fl = name_flags(name, sub, &base_len);

        if (store_set_name(st, i, name, len, base_len, e) != 0)
            return -1;
        m = store_get_mut(st, i);
        m->sub = (uint8_t)sub;
        m->flags = (uint16_t)(fl | session);
        cc->changed = true;
    }
    return 0;
}

static int md_check(struct mailbox *mb, bool *changed, struct err *e)
{
    struct store *st = &mb->store;
    struct check_ctx cc;
    int rc;

    *changed = false;
    memset(&cc, 0, sizeof cc);
    cc.n_before = store_count(st);
    keytab_init(&cc.tab, cc.n_before + 64);
    cc.seen = xcalloc(cc.n_before > 0 ? cc.n_before : 1, 1);
    for (uint32_t i = 0; i < cc.n_before; i++) {
        const struct store_msg *m = store_get(st, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE))
            (void)keytab_add(&cc.tab, st, i);
    }
    open_dirs(priv(mb));
    rc = scan_each(mb, check_cb, &cc, e);
    close_dirs(priv(mb));
    for (uint32_t i = 0; i < cc.n_before && rc == 0; i++) {
        struct store_msg *m = store_get_mut(st, i);

        if (!cc.seen[i] && (m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE)) {
            m->bits |= STORE_B_GONE;
            cc.changed = true;
        }
    }
    cache_commit(mb);
    keytab_free(&cc.tab);
    free(cc.seen);
    *changed = cc.changed;
    return rc;
}

/* ---- reading messages ----------------------------------------------------------- */

/* A ref for message idx (free with maildir_ref_free). */
static void msg_ref(struct mailbox *mb, uint32_t idx, struct maildir_ref *ref)
{
    const struct store_msg *m = store_get(&mb->store, idx);

    ref->sub = m->sub == MAILDIR_SUB_CUR ? MAILDIR_SUB_CUR : MAILDIR_SUB_NEW;
    ref->name = xstrdup(store_str(&mb->store, m->name));
}

/* After an operation that may have followed a rename: record where the
 * file is now (flags from its name, session bits kept). */
static int follow_ref(struct mailbox *mb, uint32_t idx, const struct maildir_ref *ref,
                      struct err *e)
{
    struct store *st = &mb->store;
    struct store_msg *m = store_get_mut(st, idx);
    unsigned session = m->flags & MAILBOX_SESSION_FLAGS;
    size_t base_len;
    unsigned fl;

    if (ref->name == NULL)
        return 0;
    if (m->sub == ref->sub && strcmp(store_str(st, m->name), ref->name) == 0)
        return 0;
    fl = name_flags(ref->name, ref->sub, &base_len);
    if (store_set_name(st, idx, ref->name, strlen(ref->name), base_len, e) != 0)
        return -1;
    m = store_get_mut(st, idx);
    m->sub = (uint8_t)ref->sub;
    m->flags = (uint16_t)(fl | session);
    return 0;
}

static int check_msg(struct mailbox *mb, uint32_t idx, struct err *e)
{
    const struct store_msg *m;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    return 0;
}

static int md_read(struct mailbox *mb, uint32_t idx, struct buf *out, bool headers_only,
                   struct err *e)
{
    struct md_priv *p = priv(mb);
    struct maildir_ref ref;
    int fd, rc = 0;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    msg_ref(mb, idx, &ref);
    if (maildir_open_message(p->f, &ref, &fd, e) != 0) {
        maildir_ref_free(&ref);
        return -1;
    }
    if (headers_only) {
        rc = read_header_fd(fd, 0, out, e);
    } else {
        size_t total = 0;

        for (;;) {
            char *dst = buf_reserve(out, 65536);
            ssize_t r;

            if (dst == NULL || total >= MD_MESSAGE_MAX) {
                rc = err_set(e, ERR_LIMIT, "message larger than the buffer allows");
                break;
            }
            r = read(fd, dst, 65536);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = err_sys(e, "read %s", ref.name);
                break;
            }
            if (r == 0)
                break;
            buf_commit(out, (size_t)r);
            total += (size_t)r;
        }
    }
    close(fd);
    if (follow_ref(mb, idx, &ref, rc == 0 ? e : NULL) != 0)
        rc = -1;
    maildir_ref_free(&ref);
    return rc;
}

static int md_read_message(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return md_read(mb, idx, out, false, e);
}

static int md_read_headers(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return md_read(mb, idx, out, true, e);
}

/* ---- writing ------------------------------------------------------------------ */

static int refuse_readonly(struct mailbox *mb, struct err *e)
{
    err_set(e, ERR_UNSUPPORTED, "%s is read-only", mb->name);
    err_scope(e, ERR_SCOPE_BOX, false);
    return -1;
}

static int md_set_flags(struct mailbox *mb, uint32_t idx, unsigned flags, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct store_msg *m;
    struct maildir_ref ref;
    unsigned old_md, new_md;
    bool to_cur;
    int rc;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    m = store_get_mut(&mb->store, idx);
    old_md = msg_to_md(m->flags);
    new_md = msg_to_md(flags);
    to_cur = (m->flags & MSG_NEW) && !(flags & MSG_NEW);
    if (old_md == new_md && !to_cur) {
        m->flags = (uint16_t)((m->flags & ~MAILBOX_SESSION_FLAGS) |
                              (flags & MAILBOX_SESSION_FLAGS));
        return 0;
    }
    if (mb->readonly)
        return refuse_readonly(mb, e);
    msg_ref(mb, idx, &ref);
    if (old_md != new_md)
        rc = maildir_change_flags(p->f, &ref, new_md & ~old_md, old_md & ~new_md, e);
    else
        rc = maildir_move_to_cur(p->f, &ref, e);
    if (follow_ref(mb, idx, &ref, rc == 0 ? e : NULL) != 0)
        rc = -1;
    maildir_ref_free(&ref);
    m = store_get_mut(&mb->store, idx);
    if (rc == 0)
        m->flags = (uint16_t)((m->flags & ~MAILBOX_SESSION_FLAGS) |
                              (flags & MAILBOX_SESSION_FLAGS));
    return rc;
}

/* Unlink the file of message idx, following a rename; true when it is gone
 * (already gone counts). */
static int unlink_msg(struct mailbox *mb, uint32_t idx, struct err *e)
{
    struct md_priv *p = priv(mb);
    struct maildir_ref ref;
    int rc = -1;

    msg_ref(mb, idx, &ref);
    for (int attempt = 0; attempt < 3; attempt++) {
        char *path = NULL;

        if (maildir_message_path(p->f, &ref, &path, e) != 0) {
            if (e != NULL && e->code == ERR_NOTFOUND)
                rc = 0;   /* someone else removed it */
            break;
        }
        if (unlink(path) == 0) {
            free(path);
            rc = 0;
            break;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot delete %s", path);
            free(path);
            break;
        }
        free(path);   /* renamed under us: look again */
    }
    maildir_ref_free(&ref);
    return rc;
}

static int md_sync(struct mailbox *mb, struct mailbox_sync_errs *errs, struct err *e)
{
    struct store *st = &mb->store;
    size_t failed = 0;

    for (uint32_t i = 0; i < store_count(st); i++) {
        struct store_msg *m = store_get_mut(st, i);
        struct err me;

        if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE) ||
            !(m->flags & MSG_DELETED))
            continue;
        if (mb->readonly) {
            refuse_readonly(mb, &me);
        } else if (unlink_msg(mb, i, &me) == 0) {
            m = store_get_mut(st, i);
            m->bits |= STORE_B_GONE;
            cache_del(mb, store_str(st, m->name), m->key_len);
            continue;
        }
        err_scope(&me, ERR_SCOPE_MSG, me.temporary);
        mailbox_sync_errs_add(errs, i, &me);
        failed++;
    }
    cache_commit(mb);
    if (failed > 0) {
        err_set(e, ERR_IO, "%zu message%s could not be deleted", failed,
                failed == 1 ? "" : "s");
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    return 0;
}

static int md_copy(struct mailbox *mb, uint32_t idx, const char *dest_folder, bool move,
                   struct err *e)
{
    struct md_priv *p = priv(mb);
    struct maildir_folder *df = NULL;
    struct maildir_ref ref, out = MAILDIR_REF_INIT;
    struct store_msg *m;
    int rc;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    if (move && mb->readonly)
        return refuse_readonly(mb, e);
    if (maildir_folder_open_path(dest_folder, &df, e) != 0)
        return -1;
    msg_ref(mb, idx, &ref);
    if (move) {
        rc = maildir_move(p->f, &ref, df, &out, e);
        if (rc == 0) {
            m = store_get_mut(&mb->store, idx);
            m->bits |= STORE_B_GONE;
            cache_del(mb, store_str(&mb->store, m->name), m->key_len);
            cache_commit(mb);
        }
    } else {
        rc = maildir_copy(p->f, &ref, df, &out, e);
        if (follow_ref(mb, idx, &ref, rc == 0 ? e : NULL) != 0)
            rc = -1;
    }
    maildir_ref_free(&ref);
    maildir_ref_free(&out);
    maildir_folder_close(df);
    return rc;
}

static int md_append(struct mailbox *mb, const void *data, size_t len, unsigned flags,
                     struct err *e)
{
    struct md_priv *p = priv(mb);
    struct maildir_deliver_opts opts;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct message *m = NULL;
    struct store_new file;
    struct hcache_rec rec;
    struct stat st;
    char *path = NULL;
    const char *xl = NULL;
    size_t base_len;
    uint32_t idx;
    int tz = 0, rc;

    if (mb->readonly)
        return refuse_readonly(mb, e);
    memset(&opts, 0, sizeof opts);
    opts.flags = msg_to_md(flags);
    opts.to_cur = opts.flags != 0 || !(flags & MSG_NEW);
    if (maildir_deliver(p->f, data, len, &opts, &ref, e) != 0)
        return -1;
    /* Delivered: from here on a failure only means the store does not show
     * it until the next check or load. */
    memset(&file, 0, sizeof file);
    file.received = (int64_t)time(NULL);
    if (maildir_message_path(p->f, &ref, &path, NULL) == 0 && stat(path, &st) == 0)
        file.received = (int64_t)st.st_mtime;
    free(path);
    rc = message_parse_headers(data, len, &p->lim, &m, e);
    if (rc == 0) {
        if (m->env.date_valid)
            (void)mailbox_date_tz(m->env.date_text, &tz);
        if (mailbox_header_field(data, m->body_offset > 0 ? m->body_offset : len, "X-Label",
                                 &p->r.xl))
            xl = buf_cstr(&p->r.xl);
        file.name.p = ref.name;
        file.name.n = strlen(ref.name);
        file.flags = name_flags(ref.name, ref.sub, &base_len) |
                     (flags & MAILBOX_SESSION_FLAGS);
        file.key_len = base_len;
        file.sub = ref.sub;
        file.size = len;
        file.tz = tz;
        rc = store_add_envelope(&mb->store, &file, &m->env, &idx, e);
        if (rc == 0) {
            hcache_rec_from_envelope(&rec, &m->env, tz, file.size, file.received, xl, &p->rb);
            cache_put(mb, ref.name, base_len, &rec);
            cache_commit(mb);
        }
        message_free(m);
    }
    maildir_ref_free(&ref);
    return rc;
}

const struct mailbox_ops mbox_maildir_ops = {
    .name = "maildir",
    .open = md_open,
    .load = md_load,
    .check = md_check,
    .read_message = md_read_message,
    .read_headers = md_read_headers,
    .set_flags = md_set_flags,
    .sync = md_sync,
    .copy = md_copy,
    .append = md_append,
    .close = md_close,
};
