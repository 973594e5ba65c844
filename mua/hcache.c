/* hcache: the LMDB header cache of one folder (see hcache.h). */
#include "hcache.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thread.h"
#include "xalloc.h"

#define HCACHE_MAP_MAX ((size_t)16 << 30)
#define REC_MAGIC0 'C'
#define REC_MAGIC1 'H'
#define META_MAGIC1 'M'
#define META_TAG_FOLDER 1

static const char meta_key[5] = {'\0', 'm', 'e', 't', 'a'};

enum { OP_PUT = 1, OP_DEL = 2 };

struct hcache {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *wtxn;          /* the open write batch, or NULL */
    size_t batch_n;
    bool unsynced;          /* committed since the last sync */
    struct buf log;         /* the open batch's operations, for a replay */
    struct buf enc;         /* hcache_put's encoding */
    struct buf got;         /* hcache_get's copy */
    struct buf keys;        /* keys collected by foreach / prune */
    struct buf prev;        /* the previous key of a walk */
    char *file;
    char *lockfile;
    char *folder;
    size_t mapsize;
    enum hcache_state state;
    struct hcache_stats stats;
};

/* ---- little-endian and varints ------------------------------------------- */

static void le_put(unsigned char *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t le_get(const unsigned char *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int put_varint(struct buf *b, size_t v)
{
    unsigned char tmp[5];
    size_t n = 0;

    if (v > UINT32_MAX)
        die("hcache: field of %zu bytes", v);
    do {
        tmp[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            tmp[n] |= 0x80;
        n++;
    } while (v != 0);
    return buf_append(b, tmp, n);
}

/* A varint at p[*pos..len); false when cut short or longer than 32 bits. */
static bool get_varint(const unsigned char *p, size_t len, size_t *pos, size_t *out)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < 5; i++) {
        unsigned char c;

        if (*pos >= len)
            return false;
        c = p[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            if (v > UINT32_MAX)
                return false;
            *out = (size_t)v;
            return true;
        }
    }
    return false;
}

static int put_field(struct buf *b, unsigned tag, const void *p, size_t n)
{
    unsigned char t = (unsigned char)tag;

    if (buf_append(b, &t, 1) != 0 || put_varint(b, n) != 0)
        return -1;
    return n > 0 ? buf_append(b, p, n) : 0;
}

static int put_int(struct buf *b, unsigned tag, uint64_t v, size_t n)
{
    unsigned char tmp[8];

    le_put(tmp, v, n);
    return put_field(b, tag, tmp, n);
}

static int put_span(struct buf *b, unsigned tag, struct store_span s)
{
    if (s.p == NULL)
        return 0;
    return put_field(b, tag, s.p, s.n);
}

/* ---- records ------------------------------------------------------------- */

int hcache_encode(const struct hcache_rec *r, struct buf *out)
{
    unsigned char head[4] = {REC_MAGIC0, REC_MAGIC1, 0, 0};

    le_put(head + 2, HCACHE_SCHEMA, 2);
    if (buf_append(out, head, sizeof head) != 0 ||
        put_int(out, HCACHE_TAG_DATE, (uint64_t)r->date, 8) != 0 ||
        put_int(out, HCACHE_TAG_TZ, (uint64_t)(int64_t)r->tz, 2) != 0 ||
        put_int(out, HCACHE_TAG_SIZE, r->size, 8) != 0 ||
        put_int(out, HCACHE_TAG_RECEIVED, (uint64_t)r->received, 8) != 0 ||
        put_span(out, HCACHE_TAG_FROM_NAME, r->from_name) != 0 ||
        put_span(out, HCACHE_TAG_FROM_ADDR, r->from_addr) != 0 ||
        put_span(out, HCACHE_TAG_TO, r->to) != 0 ||
        put_span(out, HCACHE_TAG_CC, r->cc) != 0 ||
        put_span(out, HCACHE_TAG_SUBJECT, r->subject) != 0 ||
        put_span(out, HCACHE_TAG_MESSAGE_ID, r->message_id) != 0 ||
        put_span(out, HCACHE_TAG_IN_REPLY_TO, r->in_reply_to) != 0 ||
        put_span(out, HCACHE_TAG_REFERENCES, r->references) != 0 ||
        put_span(out, HCACHE_TAG_LIST_ID, r->list_id) != 0 ||
        put_span(out, HCACHE_TAG_X_LABEL, r->x_label) != 0)
        return -1;
    return 0;
}

/* A list value is a sequence of items, each `per_item` length-prefixed
 * strings; true when it parses exactly. */
static bool list_valid(const unsigned char *p, size_t len, unsigned per_item)
{
    size_t pos = 0, n;

    while (pos < len) {
        for (unsigned i = 0; i < per_item; i++) {
            if (!get_varint(p, len, &pos, &n) || n > len - pos)
                return false;
            pos += n;
        }
    }
    return true;
}

int hcache_decode(const void *data, size_t len, struct hcache_rec *r, struct err *e)
{
    const unsigned char *p = data;
    uint32_t seen = 0;
    size_t pos = 4;
    unsigned schema;

    memset(r, 0, sizeof *r);
    if (len < 4 || p[0] != REC_MAGIC0 || p[1] != REC_MAGIC1)
        return err_set(e, ERR_PARSE, "header cache record: bad magic");
    schema = (unsigned)le_get(p + 2, 2);
    if (schema != HCACHE_SCHEMA)
        return err_set(e, ERR_PARSE, "header cache record: schema %u, expected %u", schema,
                       HCACHE_SCHEMA);
    while (pos < len) {
        unsigned tag = p[pos++];
        const unsigned char *v;
        struct store_span s;
        size_t n;

        if (!get_varint(p, len, &pos, &n) || n > len - pos)
            return err_set(e, ERR_PARSE, "header cache record: cut short");
        v = p + pos;
        pos += n;
        s.p = (const char *)v;
        s.n = n;
        if (tag >= HCACHE_TAG_DATE && tag <= HCACHE_TAG_X_LABEL) {
            if (seen & (1u << tag))
                return err_set(e, ERR_PARSE, "header cache record: tag %u twice", tag);
            seen |= 1u << tag;
        }
        switch (tag) {
        case HCACHE_TAG_DATE:
        case HCACHE_TAG_SIZE:
        case HCACHE_TAG_RECEIVED:
            if (n != 8)
                return err_set(e, ERR_PARSE, "header cache record: tag %u of %zu bytes",
                               tag, n);
            if (tag == HCACHE_TAG_DATE)
                r->date = (int64_t)le_get(v, 8);
            else if (tag == HCACHE_TAG_SIZE)
                r->size = le_get(v, 8);
            else
                r->received = (int64_t)le_get(v, 8);
            break;
        case HCACHE_TAG_TZ:
            if (n != 2)
                return err_set(e, ERR_PARSE, "header cache record: tag %u of %zu bytes",
                               tag, n);
            r->tz = (int16_t)(uint16_t)le_get(v, 2);
            break;
        case HCACHE_TAG_FROM_NAME: r->from_name = s; break;
        case HCACHE_TAG_FROM_ADDR: r->from_addr = s; break;
        case HCACHE_TAG_SUBJECT: r->subject = s; break;
        case HCACHE_TAG_MESSAGE_ID: r->message_id = s; break;
        case HCACHE_TAG_IN_REPLY_TO: r->in_reply_to = s; break;
        case HCACHE_TAG_LIST_ID: r->list_id = s; break;
        case HCACHE_TAG_X_LABEL: r->x_label = s; break;
        case HCACHE_TAG_TO:
        case HCACHE_TAG_CC:
            if (!list_valid(v, n, 2))
                return err_set(e, ERR_PARSE, "header cache record: bad address list");
            if (tag == HCACHE_TAG_TO)
                r->to = s;
            else
                r->cc = s;
            break;
        case HCACHE_TAG_REFERENCES:
            if (!list_valid(v, n, 1))
                return err_set(e, ERR_PARSE, "header cache record: bad id list");
            r->references = s;
            break;
        default:   /* a newer writer's field */
            break;
        }
    }
    {
        uint32_t req = (1u << HCACHE_TAG_DATE) | (1u << HCACHE_TAG_TZ) |
                       (1u << HCACHE_TAG_SIZE) | (1u << HCACHE_TAG_RECEIVED);

        if ((seen & req) != req)
            return err_set(e, ERR_PARSE, "header cache record: required field missing");
    }
    return 0;
}

int hcache_list_add_addr(struct buf *out, const char *name, const char *addr)
{
    size_t nn = name != NULL ? strlen(name) : 0;
    size_t an = addr != NULL ? strlen(addr) : 0;

    if (put_varint(out, nn) != 0 || (nn > 0 && buf_append(out, name, nn) != 0) ||
        put_varint(out, an) != 0 || (an > 0 && buf_append(out, addr, an) != 0))
        return -1;
    return 0;
}

int hcache_list_add_id(struct buf *out, const char *id, size_t n)
{
    if (put_varint(out, n) != 0 || (n > 0 && buf_append(out, id, n) != 0))
        return -1;
    return 0;
}

static bool list_item(struct store_span list, size_t *pos, struct store_span *out)
{
    const unsigned char *p = (const unsigned char *)list.p;
    size_t n;

    if (!get_varint(p, list.n, pos, &n) || n > list.n - *pos)
        return false;
    out->p = list.p + *pos;
    out->n = n;
    *pos += n;
    return true;
}

bool hcache_addr_next(struct store_span list, size_t *pos, struct store_span *name,
                      struct store_span *addr)
{
    if (list.p == NULL || *pos >= list.n)
        return false;
    return list_item(list, pos, name) && list_item(list, pos, addr);
}

bool hcache_id_next(struct store_span list, size_t *pos, struct store_span *id)
{
    if (list.p == NULL || *pos >= list.n)
        return false;
    return list_item(list, pos, id);
}

void hcache_recbuf_init(struct hcache_recbuf *rb)
{
    buf_init(&rb->to, 0);
    buf_init(&rb->cc, 0);
    buf_init(&rb->refs, 0);
}

void hcache_recbuf_free(struct hcache_recbuf *rb)
{
    buf_free(&rb->to);
    buf_free(&rb->cc);
    buf_free(&rb->refs);
}

static struct store_span cspan(const char *s)
{
    struct store_span sp = {s, s != NULL ? strlen(s) : 0};

    return sp;
}

static struct store_span addr_list(const struct msg_addr_list *l, struct buf *b)
{
    struct store_span sp = {NULL, 0};

    buf_reset(b);
    if (l->n == 0)
        return sp;
    for (size_t i = 0; i < l->n; i++)
        if (hcache_list_add_addr(b, l->v[i].name, l->v[i].addr) != 0)
            die("hcache: unbounded buffer refused an append");
    sp.p = buf_cstr(b);
    sp.n = b->len;
    return sp;
}

void hcache_rec_from_envelope(struct hcache_rec *r, const struct msg_envelope *env, int tz,
                              uint64_t size, int64_t received, const char *x_label,
                              struct hcache_recbuf *rb)
{
    memset(r, 0, sizeof *r);
    r->date = env->date_valid ? (int64_t)env->date : 0;
    r->tz = tz;
    r->size = size;
    r->received = received;
    if (env->from.n > 0) {
        r->from_name = cspan(env->from.v[0].name);
        r->from_addr = cspan(env->from.v[0].addr != NULL ? env->from.v[0].addr : "");
    }
    r->to = addr_list(&env->to, &rb->to);
    r->cc = addr_list(&env->cc, &rb->cc);
    r->subject = cspan(env->subject);
    r->message_id = cspan(env->message_id);
    r->in_reply_to = cspan(env->in_reply_to);
    buf_reset(&rb->refs);
    if (env->n_references > 0) {
        for (size_t i = 0; i < env->n_references; i++)
            if (hcache_list_add_id(&rb->refs, env->references[i],
                                   strlen(env->references[i])) != 0)
                die("hcache: unbounded buffer refused an append");
        r->references.p = buf_cstr(&rb->refs);
        r->references.n = rb->refs.len;
    }
    r->list_id = cspan(env->list_id);
    r->x_label = cspan(x_label);
}

void hcache_refs_free(struct hcache_refs *rf)
{
    free(rf->v);
    rf->v = NULL;
    rf->n = rf->cap = 0;
}

static void refs_push(struct hcache_refs *rf, uint64_t h)
{
    if (rf->n == rf->cap) {
        rf->cap = rf->cap ? rf->cap * 2 : 16;
        rf->v = xreallocarray(rf->v, rf->cap, sizeof *rf->v);
    }
    rf->v[rf->n++] = h;
}

void hcache_rec_to_store(const struct hcache_rec *r, struct store_new *out,
                         struct hcache_refs *rf)
{
    struct store_span id;
    size_t pos = 0;

    out->from = (r->from_name.p != NULL && r->from_name.n > 0) ? r->from_name : r->from_addr;
    out->from_addr = r->from_addr;
    out->subject = r->subject;
    out->id_hash = r->message_id.p != NULL ? thread_id_hash(r->message_id.p, r->message_id.n) : 0;
    rf->n = 0;
    while (hcache_id_next(r->references, &pos, &id))
        refs_push(rf, thread_id_hash(id.p, id.n));
    if (r->in_reply_to.p != NULL) {
        uint64_t h = thread_id_hash(r->in_reply_to.p, r->in_reply_to.n);

        if (rf->n == 0 || rf->v[rf->n - 1] != h)
            refs_push(rf, h);
    }
    out->refs = rf->v;
    out->n_refs = rf->n;
    out->date = r->date;
    out->tz = r->tz;
    out->received = r->received;
    out->size = r->size;
    out->list_id = r->list_id.p != NULL;
}

/* ---- errors ---------------------------------------------------------------- */

static bool rc_corrupt(int rc)
{
    return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED ||
           rc == MDB_PAGE_NOTFOUND || rc == MDB_PANIC || rc == MDB_INCOMPATIBLE ||
           rc == MDB_BAD_TXN;
}

static int mdb_err(struct err *e, int rc, const char *what, const struct hcache *hc)
{
    enum err_code code = rc_corrupt(rc) ? ERR_PARSE : rc == MDB_MAP_FULL ? ERR_LIMIT : ERR_IO;

    err_set(e, code, "header cache %s: %s: %s", hc->file, what, mdb_strerror(rc));
    if (e != NULL && rc > 0)
        e->sys_errno = rc;
    return -1;
}

/* ---- the environment ------------------------------------------------------- */

/* The file name's hash: FNV-1a 64, fixed so that names stay put. */
static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static int mkdir_p(const char *dir, struct err *e)
{
    char *p = xstrdup(dir);
    struct stat st;

    for (char *s = p + 1;; s++) {
        char c = *s;

        if (c != '/' && c != '\0')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            err_sys(e, "header cache directory %s", p);
            free(p);
            return -1;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (stat(dir, &st) != 0)
        return err_sys(e, "header cache directory %s", dir);
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_INVAL, "header cache directory %s: not a directory", dir);
    return 0;
}

static char *default_dir(struct err *e)
{
    const char *x = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");

    if (x != NULL && x[0] == '/')
        return xasprintf("%s/correo/hcache", x);
    if (home != NULL && home[0] == '/')
        return xasprintf("%s/.cache/correo/hcache", home);
    err_set(e, ERR_NOTFOUND, "no header cache directory: neither XDG_CACHE_HOME nor HOME is set");
    return NULL;
}

static void env_close(struct hcache *hc)
{
    if (hc->wtxn != NULL) {
        mdb_txn_abort(hc->wtxn);
        hc->wtxn = NULL;
    }
    if (hc->env != NULL)
        mdb_env_close(hc->env);
    hc->env = NULL;
    buf_reset(&hc->log);
    hc->batch_n = 0;
}

static int txn_begin(struct hcache *hc, unsigned flags, MDB_txn **t)
{
    int rc = mdb_txn_begin(hc->env, NULL, flags, t);

    if (rc == MDB_MAP_RESIZED) {   /* another process grew the map */
        rc = mdb_env_set_mapsize(hc->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(hc->env, NULL, flags, t);
    }
    return rc;
}

/* Open hc->file; an LMDB error code, or 0. */
static int env_open(struct hcache *hc)
{
    MDB_envinfo info;
    MDB_stat mst;
    MDB_txn *t;
    struct stat st;
    int rc, fd;

    rc = mdb_env_create(&hc->env);
    if (rc != 0) {
        hc->env = NULL;
        return rc;
    }
    rc = mdb_env_set_mapsize(hc->env, hc->mapsize);
    if (rc == 0)
        rc = mdb_env_open(hc->env, hc->file, MDB_NOSUBDIR | MDB_NOSYNC, 0600);
    if (rc == 0)
        rc = txn_begin(hc, MDB_RDONLY, &t);
    if (rc == 0) {
        rc = mdb_dbi_open(t, NULL, 0, &hc->dbi);
        if (rc == 0)
            rc = mdb_txn_commit(t);
        else
            mdb_txn_abort(t);
    }
    /* A file cut short would make the map fault past its end. */
    if (rc == 0 && mdb_env_info(hc->env, &info) == 0 && mdb_env_stat(hc->env, &mst) == 0 &&
        mdb_env_get_fd(hc->env, &fd) == 0 && fstat(fd, &st) == 0 &&
        (uint64_t)st.st_size < ((uint64_t)info.me_last_pgno + 1) * mst.ms_psize)
        rc = MDB_CORRUPTED;
    if (rc == 0 && mdb_env_info(hc->env, &info) == 0)
        hc->mapsize = info.me_mapsize;
    if (rc != 0)
        env_close(hc);
    return rc;
}

static void wipe_files(struct hcache *hc)
{
    env_close(hc);
    unlink(hc->file);
    unlink(hc->lockfile);
}

/* Write the meta record (dropping every record first when drop); an LMDB
 * error code, or 0. */
static int put_meta(struct hcache *hc, bool drop)
{
    struct buf b = BUF_INIT;
    unsigned char head[4] = {REC_MAGIC0, META_MAGIC1, 0, 0};
    MDB_val k = {sizeof meta_key, (void *)(uintptr_t)meta_key}, v;
    MDB_txn *t;
    int rc;

    le_put(head + 2, HCACHE_SCHEMA, 2);
    if (buf_append(&b, head, sizeof head) != 0 ||
        put_field(&b, META_TAG_FOLDER, hc->folder, strlen(hc->folder)) != 0)
        die("hcache: unbounded buffer refused an append");
    rc = txn_begin(hc, 0, &t);
    if (rc == 0) {
        if (drop)
            rc = mdb_drop(t, hc->dbi, 0);
        v.mv_size = b.len;
        v.mv_data = b.data;
        if (rc == 0)
            rc = mdb_put(t, hc->dbi, &k, &v, 0);
        if (rc == 0)
            rc = mdb_txn_commit(t);
        else
            mdb_txn_abort(t);
    }
    if (rc == 0)
        rc = mdb_env_sync(hc->env, 1);
    buf_free(&b);
    return rc;
}

static bool meta_matches(const struct hcache *hc, const MDB_val *v)
{
    const unsigned char *p = v->mv_data;
    size_t pos = 4, n;
    bool folder_ok = false;

    if (v->mv_size < 4 || p[0] != REC_MAGIC0 || p[1] != META_MAGIC1 ||
        le_get(p + 2, 2) != HCACHE_SCHEMA)
        return false;
    while (pos < v->mv_size) {
        unsigned tag = p[pos++];

        if (!get_varint(p, v->mv_size, &pos, &n) || n > v->mv_size - pos)
            return false;
        if (tag == META_TAG_FOLDER)
            folder_ok = n == strlen(hc->folder) && memcmp(p + pos, hc->folder, n) == 0;
        pos += n;
    }
    return folder_ok;
}

/* Check the meta record; an LMDB error code, or 0 with hc->state set and a
 * matching meta record in place. */
static int check_meta(struct hcache *hc, bool existed)
{
    MDB_val k = {sizeof meta_key, (void *)(uintptr_t)meta_key}, v;
    MDB_stat ms;
    MDB_txn *t;
    int rc = txn_begin(hc, MDB_RDONLY, &t);
    bool match = false, empty = false;

    if (rc != 0)
        return rc;
    rc = mdb_get(t, hc->dbi, &k, &v);
    if (rc == 0) {
        match = meta_matches(hc, &v);
    } else if (rc == MDB_NOTFOUND) {
        rc = mdb_stat(t, hc->dbi, &ms);
        empty = rc == 0 && ms.ms_entries == 0;
    }
    mdb_txn_abort(t);
    if (rc != 0)
        return rc;
    if (match) {
        hc->state = HCACHE_REUSED;
        return 0;
    }
    hc->state = (empty && !existed) ? HCACHE_NEW : HCACHE_REBUILT_META;
    return put_meta(hc, !empty);
}

int hcache_open(const char *dir, const char *folder_abs, struct hcache **out,
                struct err *e)
{
    struct hcache *hc;
    char *d;
    struct stat st;
    bool existed;
    int rc;

    *out = NULL;
    if (folder_abs == NULL || folder_abs[0] != '/')
        return err_set(e, ERR_INVAL, "header cache: folder path is not absolute");
    d = dir != NULL ? xstrdup(dir) : default_dir(e);
    if (d == NULL)
        return -1;
    if (mkdir_p(d, e) != 0) {
        free(d);
        return -1;
    }
    hc = XNEW(struct hcache);
    buf_init(&hc->log, 0);
    buf_init(&hc->enc, 0);
    buf_init(&hc->got, 0);
    buf_init(&hc->keys, 0);
    buf_init(&hc->prev, 0);
    hc->folder = xstrdup(folder_abs);
    hc->file = xasprintf("%s/%016llx.lmdb", d,
                         (unsigned long long)fnv1a64(folder_abs));
    hc->lockfile = xasprintf("%s-lock", hc->file);
    hc->mapsize = HCACHE_MAP_START;
    free(d);

    existed = stat(hc->file, &st) == 0;
    rc = env_open(hc);
    if (rc == 0)
        rc = check_meta(hc, existed);
    else if (!rc_corrupt(rc) && rc != EINVAL)
        goto fail;   /* permissions, disk: not the file's fault */
    if (rc != 0) {
        /* LMDB cannot use the file, or the meta record cannot be read or
         * written: start from an empty file. */
        wipe_files(hc);
        hc->stats.rebuilds++;
        rc = env_open(hc);
        if (rc == 0)
            rc = put_meta(hc, false);
        hc->state = HCACHE_REBUILT_CORRUPT;
    }
    if (rc != 0)
        goto fail;
    *out = hc;
    return 0;
fail:
    mdb_err(e, rc, "open", hc);
    hcache_close(hc);
    return -1;
}

const char *hcache_file(const struct hcache *hc)
{
    return hc->file;
}

enum hcache_state hcache_open_state(const struct hcache *hc)
{
    return hc->state;
}

const struct hcache_stats *hcache_stats(const struct hcache *hc)
{
    return &hc->stats;
}

/* After an error: drop the batch; rebuild the file if LMDB says it is
 * corrupt.  Returns -1 with e filled. */
static int fail(struct hcache *hc, int rc, const char *what, struct err *e)
{
    mdb_err(e, rc, what, hc);
    if (hc->wtxn != NULL) {
        mdb_txn_abort(hc->wtxn);
        hc->wtxn = NULL;
    }
    buf_reset(&hc->log);
    hc->batch_n = 0;
    if (hc->env != NULL && rc_corrupt(rc)) {
        wipe_files(hc);
        hc->stats.rebuilds++;
        if (env_open(hc) == 0 && put_meta(hc, false) == 0)
            err_prefix(e, "rebuilt");
    }
    return -1;
}

/* ---- write batches --------------------------------------------------------- */

static int apply_op(struct hcache *hc, int op, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    MDB_val k = {klen, (void *)(uintptr_t)key};
    MDB_val v = {vlen, (void *)(uintptr_t)val};
    int rc;

    if (op == OP_PUT) {
        /* Keys mostly come in increasing order (see hcache.h): appending
         * fills pages instead of splitting them in half. */
        rc = mdb_put(hc->wtxn, hc->dbi, &k, &v, MDB_APPEND);
        if (rc == MDB_KEYEXIST)
            rc = mdb_put(hc->wtxn, hc->dbi, &k, &v, 0);
        return rc;
    }
    rc = mdb_del(hc->wtxn, hc->dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int grow_map(struct hcache *hc)
{
    size_t want = hc->mapsize * 2;
    int rc;

    if (want > HCACHE_MAP_MAX || want < hc->mapsize)
        return MDB_MAP_FULL;
    rc = mdb_env_set_mapsize(hc->env, want);
    if (rc == 0) {
        hc->mapsize = want;
        hc->stats.grows++;
    }
    return rc;
}

/* The write transaction hit MDB_MAP_FULL: abort it, grow the map and
 * replay the batch's operations. */
static int grow_and_replay(struct hcache *hc)
{
    for (;;) {
        size_t pos = 0;
        int rc;

        mdb_txn_abort(hc->wtxn);
        hc->wtxn = NULL;
        rc = grow_map(hc);
        if (rc == 0)
            rc = txn_begin(hc, 0, &hc->wtxn);
        if (rc != 0) {
            hc->wtxn = NULL;
            return rc;
        }
        while (rc == 0 && pos < hc->log.len) {
            const unsigned char *p = (const unsigned char *)hc->log.data + pos;
            uint32_t kl = (uint32_t)le_get(p + 1, 4), vl = (uint32_t)le_get(p + 5, 4);

            rc = apply_op(hc, p[0], p + 9, kl, p + 9 + kl, vl);
            pos += 9 + (size_t)kl + vl;
        }
        if (rc != MDB_MAP_FULL)
            return rc;
    }
}

static int batch_commit(struct hcache *hc, struct err *e)
{
    int rc;

    if (hc->wtxn == NULL)
        return 0;
    rc = mdb_txn_commit(hc->wtxn);
    hc->wtxn = NULL;
    while (rc == MDB_MAP_FULL) {
        /* The commit freed the transaction: start over with the log in a
         * larger map.  grow_and_replay fails with MDB_MAP_FULL when the map
         * cannot grow any more, which ends this. */
        rc = txn_begin(hc, 0, &hc->wtxn);
        if (rc != 0) {
            hc->wtxn = NULL;
            break;
        }
        rc = grow_and_replay(hc);
        if (rc != 0)
            break;
        rc = mdb_txn_commit(hc->wtxn);
        hc->wtxn = NULL;
    }
    if (rc != 0)
        return fail(hc, rc, "commit", e);
    buf_reset(&hc->log);
    hc->batch_n = 0;
    hc->unsynced = true;
    hc->stats.commits++;
    return 0;
}

static int batch_op(struct hcache *hc, int op, const void *key, size_t klen, const void *val,
                    size_t vlen, struct err *e)
{
    unsigned char head[9];
    int rc;

    if (hc->env == NULL)
        return err_set(e, ERR_IO, "header cache %s is not open", hc->file);
    if (klen == 0 || klen > (size_t)mdb_env_get_maxkeysize(hc->env))
        return err_set(e, ERR_INVAL, "header cache: key of %zu bytes", klen);
    if (vlen > UINT32_MAX)
        return err_set(e, ERR_LIMIT, "header cache: record of %zu bytes", vlen);
    if (hc->wtxn == NULL) {
        rc = txn_begin(hc, 0, &hc->wtxn);
        if (rc != 0) {
            hc->wtxn = NULL;
            return fail(hc, rc, "begin", e);
        }
    }
    head[0] = (unsigned char)op;
    le_put(head + 1, klen, 4);
    le_put(head + 5, vlen, 4);
    if (buf_append(&hc->log, head, sizeof head) != 0 || buf_append(&hc->log, key, klen) != 0 ||
        (vlen > 0 && buf_append(&hc->log, val, vlen) != 0))
        die("hcache: unbounded buffer refused an append");
    rc = apply_op(hc, op, key, klen, val, vlen);
    if (rc == MDB_MAP_FULL)
        rc = grow_and_replay(hc);
    if (rc != 0)
        return fail(hc, rc, op == OP_PUT ? "put" : "delete", e);
    if (op == OP_PUT)
        hc->stats.puts++;
    else
        hc->stats.dels++;
    if (++hc->batch_n >= HCACHE_BATCH)
        return batch_commit(hc, e);
    return 0;
}

int hcache_put(struct hcache *hc, const char *key, size_t key_len, const struct hcache_rec *rec,
               struct err *e)
{
    buf_reset(&hc->enc);
    if (hcache_encode(rec, &hc->enc) != 0)
        die("hcache: unbounded buffer refused an append");
    return batch_op(hc, OP_PUT, key, key_len, hc->enc.data, hc->enc.len, e);
}

int hcache_del(struct hcache *hc, const char *key, size_t key_len, struct err *e)
{
    return batch_op(hc, OP_DEL, key, key_len, NULL, 0, e);
}

int hcache_commit(struct hcache *hc, struct err *e)
{
    int rc;

    if (hc->env == NULL)
        return err_set(e, ERR_IO, "header cache %s is not open", hc->file);
    if (batch_commit(hc, e) != 0)
        return -1;
    if (hc->unsynced) {
        rc = mdb_env_sync(hc->env, 1);
        if (rc != 0)
            return mdb_err(e, rc, "sync", hc);
        hc->unsynced = false;
    }
    return 0;
}

void hcache_close(struct hcache *hc)
{
    if (hc == NULL)
        return;
    if (hc->env != NULL)
        (void)hcache_commit(hc, NULL);
    env_close(hc);
    buf_free(&hc->log);
    buf_free(&hc->enc);
    buf_free(&hc->got);
    buf_free(&hc->keys);
    buf_free(&hc->prev);
    free(hc->file);
    free(hc->lockfile);
    free(hc->folder);
    free(hc);
}

/* ---- reading --------------------------------------------------------------- */

static bool is_meta(const MDB_val *k)
{
    return k->mv_size > 0 && ((const char *)k->mv_data)[0] == '\0';
}

static void keys_add(struct buf *b, const void *key, size_t n)
{
    if (put_varint(b, n) != 0 || buf_append(b, key, n) != 0)
        die("hcache: unbounded buffer refused an append");
}

/* Delete the keys collected in hc->keys and commit. */
static int delete_keys(struct hcache *hc, size_t *count, struct err *e)
{
    const unsigned char *p = (const unsigned char *)hc->keys.data;
    size_t pos = 0, n, done = 0;

    while (pos < hc->keys.len) {
        if (!get_varint(p, hc->keys.len, &pos, &n))
            die("hcache: key list damaged");
        if (hcache_del(hc, (const char *)p + pos, n, e) != 0) {
            buf_reset(&hc->keys);
            return -1;
        }
        pos += n;
        done++;
    }
    buf_reset(&hc->keys);
    if (count != NULL)
        *count = done;
    return done > 0 ? hcache_commit(hc, e) : 0;
}

/* The part of the read-only map that a walk has read from, page aligned. */
struct span_seen {
    uintptr_t lo, hi;
};

static void seen_add(struct span_seen *s, const MDB_val *v)
{
    uintptr_t a = (uintptr_t)v->mv_data, b = a + v->mv_size;

    if (s->lo == 0 || a < s->lo)
        s->lo = a;
    if (b > s->hi)
        s->hi = b;
}

/* Drop those pages from the process (they stay in the page cache and fault
 * back in if touched again): a warm read of a large cache would otherwise
 * keep the whole file in its RSS.  Both ends lie in LMDB's one mapping, so
 * the range does too. */
static void drop_pages(struct span_seen *s)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = s->lo & ~(pg - 1), hi = (s->hi + pg - 1) & ~(pg - 1);

    if (s->lo != 0 && hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    s->lo = s->hi = 0;
}

/* Per-entry step of walk(): 0 to go on, anything else to stop.  After the
 * last entry it is called once more with k and v NULL. */
typedef int (*walk_fn)(struct hcache *hc, void *ctx, const MDB_val *k, const MDB_val *v);

/*
 * One sequential cursor pass over the records (not the meta record).  LMDB
 * trusts its pages; a damaged page can make a cursor visit records twice or
 * go round in circles, so keys must come strictly increasing, else the file
 * is corrupt.  Consumed pages are dropped from the process as we go.
 */
static int walk(struct hcache *hc, walk_fn fn, void *ctx, const char *what, struct err *e)
{
    MDB_txn *t;
    MDB_cursor *c;
    MDB_val k, v;
    struct span_seen seen = {0, 0}, all = {0, 0};
    size_t since_drop = 0;
    bool stopped = false;
    int rc;

    if (hc->env == NULL)
        return err_set(e, ERR_IO, "header cache %s is not open", hc->file);
    if (batch_commit(hc, e) != 0)
        return -1;
    buf_reset(&hc->keys);
    buf_reset(&hc->prev);
    rc = txn_begin(hc, MDB_RDONLY, &t);
    if (rc != 0)
        return fail(hc, rc, what, e);
    rc = mdb_cursor_open(t, hc->dbi, &c);
    if (rc != 0) {
        mdb_txn_abort(t);
        return fail(hc, rc, what, e);
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        size_t common = k.mv_size < hc->prev.len ? k.mv_size : hc->prev.len;
        int cmp = common > 0 ? memcmp(k.mv_data, hc->prev.data, common) : 0;

        if (hc->prev.len > 0 && (cmp < 0 || (cmp == 0 && k.mv_size <= hc->prev.len))) {
            rc = MDB_CORRUPTED;
            break;
        }
        buf_reset(&hc->prev);
        if (buf_append(&hc->prev, k.mv_data, k.mv_size) != 0)
            die("hcache: unbounded buffer refused an append");
        if (is_meta(&k))
            continue;
        seen_add(&seen, &k);
        seen_add(&seen, &v);
        seen_add(&all, &k);
        if (fn(hc, ctx, &k, &v) != 0) {
            rc = MDB_NOTFOUND;
            stopped = true;
            break;
        }
        if (++since_drop == HCACHE_DROP_EVERY) {
            drop_pages(&seen);
            since_drop = 0;
        }
    }
    if (rc == MDB_NOTFOUND && !stopped)
        (void)fn(hc, ctx, NULL, NULL);   /* the end, still inside the txn */
    drop_pages(&seen);
    drop_pages(&all);   /* and the branch pages met on the way */
    mdb_cursor_close(c);
    mdb_txn_abort(t);
    if (rc != MDB_NOTFOUND) {
        buf_reset(&hc->keys);
        return fail(hc, rc, what, e);
    }
    return 0;
}

struct each_ctx {
    hcache_each_fn fn;
    void *ctx;
};

static int each_step(struct hcache *hc, void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct each_ctx *ec = ctx;
    struct hcache_rec rec;

    if (k == NULL)
        return ec->fn(ec->ctx, NULL, 0, NULL);
    if (hcache_decode(v->mv_data, v->mv_size, &rec, NULL) != 0) {
        hc->stats.bad++;
        keys_add(&hc->keys, k->mv_data, k->mv_size);
        return 0;
    }
    hc->stats.read++;
    return ec->fn(ec->ctx, k->mv_data, k->mv_size, &rec);
}

int hcache_foreach(struct hcache *hc, hcache_each_fn fn, void *ctx, struct err *e)
{
    struct each_ctx ec = {fn, ctx};

    if (walk(hc, each_step, &ec, "read", e) != 0)
        return -1;
    return delete_keys(hc, NULL, e);
}

int hcache_get(struct hcache *hc, const char *key, size_t key_len, struct hcache_rec *rec,
               struct err *e)
{
    MDB_val k = {key_len, (void *)(uintptr_t)key}, v;
    MDB_txn *t = hc->wtxn;
    int rc;

    memset(rec, 0, sizeof *rec);
    if (hc->env == NULL)
        return err_set(e, ERR_IO, "header cache %s is not open", hc->file);
    if (key_len == 0 || key_len > (size_t)mdb_env_get_maxkeysize(hc->env))
        return err_set(e, ERR_NOTFOUND, "header cache: no record");
    if (t == NULL) {
        rc = txn_begin(hc, MDB_RDONLY, &t);
        if (rc != 0)
            return fail(hc, rc, "read", e);
    }
    rc = mdb_get(t, hc->dbi, &k, &v);
    buf_reset(&hc->got);
    if (rc == 0 && buf_append(&hc->got, v.mv_data, v.mv_size) != 0)
        die("hcache: unbounded buffer refused an append");
    if (t != hc->wtxn)
        mdb_txn_abort(t);
    if (rc == MDB_NOTFOUND)
        return err_set(e, ERR_NOTFOUND, "header cache: no record");
    if (rc != 0)
        return fail(hc, rc, "read", e);
    if (hcache_decode(hc->got.data, hc->got.len, rec, e) != 0) {
        hc->stats.bad++;
        (void)hcache_del(hc, key, key_len, NULL);
        return -1;
    }
    hc->stats.read++;
    return 0;
}

struct prune_ctx {
    hcache_keep_fn keep;
    void *ctx;
};

static int prune_step(struct hcache *hc, void *ctx, const MDB_val *k, const MDB_val *v)
{
    struct prune_ctx *pc = ctx;

    (void)v;
    if (k != NULL && !pc->keep(pc->ctx, k->mv_data, k->mv_size))
        keys_add(&hc->keys, k->mv_data, k->mv_size);
    return 0;
}

int hcache_prune(struct hcache *hc, hcache_keep_fn keep, void *ctx, size_t *removed,
                 struct err *e)
{
    struct prune_ctx pc = {keep, ctx};

    if (removed != NULL)
        *removed = 0;
    if (walk(hc, prune_step, &pc, "prune", e) != 0)
        return -1;
    return delete_keys(hc, removed, e);
}
