/* Tests for mua/hcache: the record format (round trip, unknown tags,
 * damaged records), the environment (meta checks, corrupt files, batches,
 * map growth, prune) and the record <-> store conversions. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hcache.h"
#include "message.h"
#include "store.h"
#include "thread.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static struct store_span sp(const char *s)
{
    struct store_span r = {s, s != NULL ? strlen(s) : 0};

    return r;
}

static void span_eq(struct store_span a, struct store_span b)
{
    if (a.p == NULL || b.p == NULL) {
        assert_true(a.p == NULL && b.p == NULL);
        return;
    }
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.p, b.p, a.n);
}

static void rec_eq(const struct hcache_rec *a, const struct hcache_rec *b)
{
    assert_int_equal(a->date, b->date);
    assert_int_equal(a->tz, b->tz);
    assert_int_equal(a->size, b->size);
    assert_int_equal(a->received, b->received);
    span_eq(a->from_name, b->from_name);
    span_eq(a->from_addr, b->from_addr);
    span_eq(a->to, b->to);
    span_eq(a->cc, b->cc);
    span_eq(a->subject, b->subject);
    span_eq(a->message_id, b->message_id);
    span_eq(a->in_reply_to, b->in_reply_to);
    span_eq(a->references, b->references);
    span_eq(a->list_id, b->list_id);
    span_eq(a->x_label, b->x_label);
}

/* A record with every field, built around one number. */
struct rec_store {
    struct buf to, cc, refs;
    char subject[64];
    char msgid[64];
    struct hcache_rec r;
};

static void rec_make(struct rec_store *s, unsigned i)
{
    buf_init(&s->to, 0);
    buf_init(&s->cc, 0);
    buf_init(&s->refs, 0);
    assert_int_equal(hcache_list_add_addr(&s->to, "Jörg Häußler", "joerg@example.org"), 0);
    assert_int_equal(hcache_list_add_addr(&s->to, NULL, "bare@example.org"), 0);
    assert_int_equal(hcache_list_add_addr(&s->cc, "佐藤 花子", "hanako@example.jp"), 0);
    assert_int_equal(hcache_list_add_id(&s->refs, "root@x", 6), 0);
    assert_int_equal(hcache_list_add_id(&s->refs, "mid@x", 5), 0);
    snprintf(s->subject, sizeof s->subject, "Встреча %u 🎉", i);
    snprintf(s->msgid, sizeof s->msgid, "msg%u@example.org", i);
    memset(&s->r, 0, sizeof s->r);
    s->r.date = 1767225600 + (int64_t)i;
    s->r.tz = -300;
    s->r.size = 5000000000ull + i;
    s->r.received = 1767225700 + (int64_t)i;
    s->r.from_name = sp("Ana 🌻 Ruiz");
    s->r.from_addr = sp("ana.ruiz@example.com");
    s->r.to.p = buf_cstr(&s->to);
    s->r.to.n = s->to.len;
    s->r.cc.p = buf_cstr(&s->cc);
    s->r.cc.n = s->cc.len;
    s->r.subject = sp(s->subject);
    s->r.message_id = sp(s->msgid);
    s->r.in_reply_to = sp("mid@x");
    s->r.references.p = buf_cstr(&s->refs);
    s->r.references.n = s->refs.len;
    s->r.list_id = sp("dev.lists.example");
    s->r.x_label = sp("wichtig");
}

static void rec_free(struct rec_store *s)
{
    buf_free(&s->to);
    buf_free(&s->cc);
    buf_free(&s->refs);
}

/* ---- record format ------------------------------------------------------- */

static void round_trip(void **state)
{
    struct rec_store full;
    struct hcache_rec cases[4], got;
    struct buf b = BUF_INIT;

    (void)state;
    rec_make(&full, 7);
    cases[0] = full.r;
    /* all optional fields absent, integers at their extremes */
    memset(&cases[1], 0, sizeof cases[1]);
    cases[1].date = INT64_MIN;
    cases[1].tz = -1440;
    cases[1].size = UINT64_MAX;
    cases[1].received = INT64_MAX;
    /* present but empty */
    memset(&cases[2], 0, sizeof cases[2]);
    cases[2].from_name = sp("");
    cases[2].from_addr = sp("");
    cases[2].subject = sp("");
    cases[2].message_id = sp("");
    cases[2].in_reply_to = sp("");
    cases[2].references = sp("");
    cases[2].to = sp("");
    cases[2].list_id = sp("");
    cases[2].x_label = sp("");
    cases[2].tz = 1440;
    /* a long value (multi-byte varint length) with bytes of every kind */
    {
        static char big[70000];

        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)(i * 7 + 1);
        memset(&cases[3], 0, sizeof cases[3]);
        cases[3].subject.p = big;
        cases[3].subject.n = sizeof big;
        cases[3].tz = 330;
    }
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        buf_reset(&b);
        assert_int_equal(hcache_encode(&cases[c], &b), 0);
        assert_int_equal(hcache_decode(b.data, b.len, &got, NULL), 0);
        rec_eq(&cases[c], &got);
    }
    /* the lists walk back to what went in */
    buf_reset(&b);
    assert_int_equal(hcache_encode(&full.r, &b), 0);
    assert_int_equal(hcache_decode(b.data, b.len, &got, NULL), 0);
    {
        struct store_span name, addr, id;
        size_t pos = 0;

        assert_true(hcache_addr_next(got.to, &pos, &name, &addr));
        assert_int_equal(name.n, strlen("Jörg Häußler"));
        assert_memory_equal(name.p, "Jörg Häußler", name.n);
        assert_memory_equal(addr.p, "joerg@example.org", addr.n);
        assert_true(hcache_addr_next(got.to, &pos, &name, &addr));
        assert_int_equal(name.n, 0);
        assert_memory_equal(addr.p, "bare@example.org", addr.n);
        assert_false(hcache_addr_next(got.to, &pos, &name, &addr));
        pos = 0;
        assert_true(hcache_id_next(got.references, &pos, &id));
        assert_memory_equal(id.p, "root@x", 6);
        assert_true(hcache_id_next(got.references, &pos, &id));
        assert_memory_equal(id.p, "mid@x", 5);
        assert_false(hcache_id_next(got.references, &pos, &id));
    }
    buf_free(&b);
    rec_free(&full);
}

static void unknown_tags_skipped(void **state)
{
    struct rec_store full;
    struct hcache_rec got;
    struct buf b = BUF_INIT, mid = BUF_INIT;
    static const unsigned char extra[] = {200, 3, 'x', 'y', 'z'};
    static const unsigned char extra0[] = {0, 0};
    static const unsigned char extra_long[] = {99, 0x80, 0x01};   /* 128 bytes follow */

    (void)state;
    rec_make(&full, 1);
    assert_int_equal(hcache_encode(&full.r, &b), 0);
    /* at the end */
    assert_int_equal(buf_append(&b, extra, sizeof extra), 0);
    assert_int_equal(buf_append(&b, extra0, sizeof extra0), 0);
    assert_int_equal(hcache_decode(b.data, b.len, &got, NULL), 0);
    rec_eq(&full.r, &got);
    /* right after the header, with a two-byte length */
    assert_int_equal(buf_append(&mid, b.data, 4), 0);
    assert_int_equal(buf_append(&mid, extra_long, sizeof extra_long), 0);
    for (int i = 0; i < 128; i++)
        assert_int_equal(buf_putc(&mid, (char)i), 0);
    assert_int_equal(buf_append(&mid, b.data + 4, b.len - 4), 0);
    assert_int_equal(hcache_decode(mid.data, mid.len, &got, NULL), 0);
    rec_eq(&full.r, &got);
    buf_free(&b);
    buf_free(&mid);
    rec_free(&full);
}

/* Field boundaries of an encoded record (offsets where a field starts, and
 * the end). */
static size_t boundaries(const unsigned char *p, size_t len, size_t *out, size_t max)
{
    size_t pos = 4, n = 0;

    while (pos < len && n < max) {
        size_t v = 0, shift = 0;

        out[n++] = pos;
        pos++;
        while (p[pos] & 0x80) {
            v |= (size_t)(p[pos++] & 0x7f) << shift;
            shift += 7;
        }
        v |= (size_t)p[pos++] << shift;
        pos += v;
    }
    out[n++] = len;
    return n;
}

static void damaged_records_rejected(void **state)
{
    struct rec_store full;
    struct hcache_rec got;
    struct buf b = BUF_INIT, d = BUF_INIT;
    size_t bounds[32], nb;
    struct err e;

    (void)state;
    rec_make(&full, 3);
    assert_int_equal(hcache_encode(&full.r, &b), 0);
    nb = boundaries((const unsigned char *)b.data, b.len, bounds, ARRAY_LEN(bounds));
    assert_int_equal(nb, 15);   /* 14 fields and the end */
    /* Truncated: every cut inside a field, and every cut that loses a
     * required field (the first four), is rejected. */
    for (size_t cut = 0; cut < b.len; cut++) {
        bool on_boundary = false;

        for (size_t k = 4; k < nb; k++)
            if (bounds[k] == cut)
                on_boundary = true;
        if (on_boundary)
            assert_int_equal(hcache_decode(b.data, cut, &got, NULL), 0);
        else
            assert_int_equal(hcache_decode(b.data, cut, &got, &e), -1);
    }
    assert_int_equal(hcache_decode(b.data, b.len - 1, &got, &e), -1);
    assert_int_equal(e.code, ERR_PARSE);

    /* other damage, one byte at a time */
    struct {
        const char *what;
        size_t at;
        unsigned char byte;
    } flips[] = {
        {"magic", 0, 'X'},
        {"schema", 2, 2},
        {"date size", 5, 7},          /* tag at 4, length at 5 */
        {"tz size", 4 + 10 + 1, 3},   /* tz field follows date (1+1+8) */
        {"duplicate tag", 4 + 10, 1}, /* tz tag becomes a second date tag */
    };
    for (size_t k = 0; k < ARRAY_LEN(flips); k++) {
        buf_reset(&d);
        assert_int_equal(buf_append(&d, b.data, b.len), 0);
        d.data[flips[k].at] = (char)flips[k].byte;
        if (hcache_decode(d.data, d.len, &got, &e) != -1)
            fail_msg("%s: accepted", flips[k].what);
        assert_int_equal(e.code, ERR_PARSE);
    }
    /* a required field missing: drop the tz field (bounds[1]..bounds[2]) */
    buf_reset(&d);
    assert_int_equal(buf_append(&d, b.data, bounds[1]), 0);
    assert_int_equal(buf_append(&d, b.data + bounds[2], b.len - bounds[2]), 0);
    assert_int_equal(hcache_decode(d.data, d.len, &got, &e), -1);
    /* a list whose inner length runs past its end */
    {
        unsigned char bad[] = {'C', 'H', HCACHE_SCHEMA, 0,
                               1, 8, 0, 0, 0, 0, 0, 0, 0, 0,
                               2, 2, 0, 0,
                               3, 8, 0, 0, 0, 0, 0, 0, 0, 0,
                               4, 8, 0, 0, 0, 0, 0, 0, 0, 0,
                               HCACHE_TAG_TO, 3, 1, 'a', 5};
        unsigned char longvar[] = {'C', 'H', HCACHE_SCHEMA, 0, 9, 0xff, 0xff, 0xff, 0xff, 0x7f};

        assert_int_equal(hcache_decode(bad, sizeof bad, &got, &e), -1);
        bad[sizeof bad - 1] = 0;   /* now the pair is complete */
        assert_int_equal(hcache_decode(bad, sizeof bad, &got, NULL), 0);
        assert_int_equal(hcache_decode(longvar, sizeof longvar, &got, &e), -1);
    }
    buf_free(&b);
    buf_free(&d);
    rec_free(&full);
}

/* ---- conversions --------------------------------------------------------- */

/* A record made from an envelope, encoded, decoded and turned into a store
 * record equals the store record made from the envelope directly. */
static void envelope_store_agree(void **state)
{
    static const char *const msgs[] = {
        "From: =?UTF-8?Q?J=C3=B6rg?= <j@example.org>\nTo: a@x, \"B\" <b@x>\nCc: c@x\n"
        "Subject: Re: =?ISO-8859-1?Q?M=FCnchen?=\nMessage-ID: <m1@x>\nIn-Reply-To: <p@x>\n"
        "References: <r@x> <p@x>\nDate: Mon, 5 Jan 2026 08:00:00 -0500\nList-Id: <l.x>\n\n",
        "From: plain@example.org\nIn-Reply-To: <q@x>\nDate: bogus\n\n",
        "Subject: only\n\n",
    };
    struct store st;
    struct hcache_recbuf rb;
    struct hcache_refs rf = {NULL, 0, 0};
    struct buf b = BUF_INIT;

    (void)state;
    store_init(&st);
    hcache_recbuf_init(&rb);
    for (size_t c = 0; c < ARRAY_LEN(msgs); c++) {
        struct message *m = NULL;
        struct hcache_rec rec, got;
        struct store_new file, in;
        const struct store_msg *a, *z;
        uint32_t ia, iz;

        assert_int_equal(message_parse_headers(msgs[c], strlen(msgs[c]), NULL, &m, NULL), 0);
        memset(&file, 0, sizeof file);
        file.name = sp("k:2,S");
        file.key_len = 1;
        file.size = 321;
        file.received = 77;
        file.tz = -300;
        assert_int_equal(store_add_envelope(&st, &file, &m->env, &ia, NULL), 0);
        hcache_rec_from_envelope(&rec, &m->env, -300, 321, 77, "lbl", &rb);
        buf_reset(&b);
        assert_int_equal(hcache_encode(&rec, &b), 0);
        assert_int_equal(hcache_decode(b.data, b.len, &got, NULL), 0);
        rec_eq(&rec, &got);
        in = file;
        hcache_rec_to_store(&got, &in, &rf);
        assert_int_equal(store_add(&st, &in, &iz, NULL), 0);
        a = store_get(&st, ia);
        z = store_get(&st, iz);
        assert_string_equal(store_str(&st, a->from), store_str(&st, z->from));
        assert_string_equal(store_str(&st, a->from_addr), store_str(&st, z->from_addr));
        assert_string_equal(store_str(&st, a->subject), store_str(&st, z->subject));
        assert_int_equal(a->id_hash, z->id_hash);
        assert_int_equal(a->n_refs, z->n_refs);
        if (a->n_refs > 0)
            assert_memory_equal(store_refs(&st, a), store_refs(&st, z), a->n_refs * 8);
        assert_int_equal(a->date, z->date);
        assert_int_equal(a->tz, z->tz);
        assert_int_equal(a->size, z->size);
        assert_int_equal(a->received, z->received);
        assert_int_equal(a->bits, z->bits);
        if (c == 0) {
            assert_int_equal(a->n_refs, 2);   /* r, p: In-Reply-To was the last */
            assert_string_equal(store_str(&st, a->subject), "Re: München");
            assert_string_equal(store_str(&st, a->from), "Jörg");
            assert_memory_equal(got.x_label.p, "lbl", 3);
        }
        message_free(m);
    }
    hcache_recbuf_free(&rb);
    hcache_refs_free(&rf);
    buf_free(&b);
    store_free(&st);
}

/* ---- the environment ------------------------------------------------------ */

struct seen {
    size_t n;
    char last[64];
    bool ordered;
    unsigned mask;          /* keys "k<i>" seen, i < 32 */
    size_t ends;            /* calls with key NULL */
};

static int seen_cb(void *ctx, const char *key, size_t key_len, const struct hcache_rec *rec)
{
    struct seen *s = ctx;
    char k[64];

    if (key == NULL) {
        assert_null(rec);
        s->ends++;
        return 0;
    }
    assert_true(key_len < sizeof k);
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    if (s->n > 0 && strcmp(s->last, k) >= 0)
        s->ordered = false;
    strcpy(s->last, k);
    if (k[0] == 'k' && atoi(k + 1) < 32)
        s->mask |= 1u << atoi(k + 1);
    assert_int_equal(rec->tz, -300);
    s->n++;
    return 0;
}

static void put_keys(struct hcache *hc, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct rec_store rs;
        char key[32];

        rec_make(&rs, i);
        snprintf(key, sizeof key, "k%u", i);
        assert_int_equal(hcache_put(hc, key, strlen(key), &rs.r, NULL), 0);
        rec_free(&rs);
    }
}

static void open_put_reopen(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    char *dir = xasprintf("%s/a/b/hcache", tmp);
    struct hcache *hc;
    struct hcache_rec got;
    struct rec_store rs;
    struct seen s = {0, "", true, 0, 0};
    struct stat st;
    const char *slash;
    struct err e;

    (void)state;
    assert_int_equal(hcache_open(dir, "/home/u/Mail/INBOX", &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_NEW);
    /* <dir>/<16 hex>.lmdb, 0600 in a 0700 directory */
    slash = strrchr(hcache_file(hc), '/');
    assert_int_equal(strlen(slash + 1), 16 + 5);
    assert_int_equal(strspn(slash + 1, "0123456789abcdef"), 16);
    assert_string_equal(slash + 17, ".lmdb");
    assert_int_equal(stat(hcache_file(hc), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    put_keys(hc, 20);
    /* get sees the open batch */
    assert_int_equal(hcache_get(hc, "k3", 2, &got, NULL), 0);
    rec_make(&rs, 3);
    rec_eq(&rs.r, &got);
    rec_free(&rs);
    assert_int_equal(hcache_get(hc, "nope", 4, &got, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(hcache_commit(hc, NULL), 0);
    hcache_close(hc);

    assert_int_equal(hcache_open(dir, "/home/u/Mail/INBOX", &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
    assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
    assert_int_equal(s.n, 20);
    assert_int_equal(s.ends, 1);
    assert_true(s.ordered);
    assert_int_equal(s.mask, (1u << 20) - 1);
    assert_int_equal(hcache_get(hc, "k19", 3, &got, NULL), 0);
    rec_make(&rs, 19);
    rec_eq(&rs.r, &got);
    rec_free(&rs);
    /* delete */
    assert_int_equal(hcache_del(hc, "k19", 3, NULL), 0);
    assert_int_equal(hcache_del(hc, "never-there", 11, NULL), 0);
    assert_int_equal(hcache_commit(hc, NULL), 0);
    assert_int_equal(hcache_get(hc, "k19", 3, &got, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    /* keys LMDB cannot take */
    assert_int_equal(hcache_put(hc, "", 0, &got, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    hcache_close(hc);

    /* another folder gets another file */
    assert_int_equal(hcache_open(dir, "/home/u/Mail/.Work", &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_NEW);
    hcache_close(hc);
    assert_int_equal(hcache_open(dir, "relative/path", &hc, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    free(dir);
    tu_rm_rf(tmp);
    free(tmp);
}

static void default_directory(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    char *old = getenv("XDG_CACHE_HOME") ? xstrdup(getenv("XDG_CACHE_HOME")) : NULL;
    char *want = xasprintf("%s/correo/hcache/", tmp);
    struct hcache *hc;

    (void)state;
    setenv("XDG_CACHE_HOME", tmp, 1);
    assert_int_equal(hcache_open(NULL, "/x/Maildir", &hc, NULL), 0);
    assert_int_equal(strncmp(hcache_file(hc), want, strlen(want)), 0);
    hcache_close(hc);
    if (old != NULL)
        setenv("XDG_CACHE_HOME", old, 1);
    else
        unsetenv("XDG_CACHE_HOME");
    free(old);
    free(want);
    tu_rm_rf(tmp);
    free(tmp);
}

static void unusable_directory_fails(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    char *file = xasprintf("%s/plain", tmp);
    char *dir = xasprintf("%s/plain/sub", tmp);
    struct hcache *hc = NULL;
    struct err e;
    int fd;

    (void)state;
    fd = open(file, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(hcache_open(dir, "/x", &hc, &e), -1);
    assert_null(hc);
    assert_int_equal(e.code, ERR_IO);
    free(file);
    free(dir);
    tu_rm_rf(tmp);
    free(tmp);
}

/* Write raw bytes under a key with LMDB itself, behind the module's back. */
static void raw_put(const char *file, const void *key, size_t klen, const void *val,
                    size_t vlen, bool del)
{
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)(uintptr_t)key}, v = {vlen, (void *)(uintptr_t)val};

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)64 << 20), 0);
    assert_int_equal(mdb_env_open(env, file, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    assert_int_equal(mdb_dbi_open(t, NULL, 0, &dbi), 0);
    if (del)
        assert_int_equal(mdb_del(t, dbi, &k, NULL), 0);
    else
        assert_int_equal(mdb_put(t, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);
}

static const char meta_key[5] = {'\0', 'm', 'e', 't', 'a'};

struct meta_case {
    const char *what;
    const unsigned char *val;   /* NULL: delete the meta record */
    size_t len;
};

static const unsigned char meta_schema99[] = {'C', 'M', 99, 0, 1, 2, '/', 'f'};
static const unsigned char meta_other_folder[] = {'C', 'M', HCACHE_SCHEMA, 0, 1, 6,
                                                  '/', 'o', 't', 'h', 'e', 'r'};
static const unsigned char meta_garbage[] = {0xde, 0xad, 0xbe, 0xef};

static const struct meta_case meta_cases[] = {
    {"schema 99", meta_schema99, sizeof meta_schema99},
    {"another folder", meta_other_folder, sizeof meta_other_folder},
    {"garbage", meta_garbage, sizeof meta_garbage},
    {"no meta", NULL, 0},
};

static void meta_mismatch_rebuilds(void **state)
{
    (void)state;
    for (size_t c = 0; c < ARRAY_LEN(meta_cases); c++) {
        char *tmp = tu_tmpdir("hcache");
        struct hcache *hc;
        struct seen s = {0, "", true, 0, 0};
        char *file;

        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        put_keys(hc, 10);
        file = xstrdup(hcache_file(hc));
        hcache_close(hc);
        raw_put(file, meta_key, sizeof meta_key, meta_cases[c].val, meta_cases[c].len,
                meta_cases[c].val == NULL);

        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        if (hcache_open_state(hc) != HCACHE_REBUILT_META)
            fail_msg("%s: state %d", meta_cases[c].what, (int)hcache_open_state(hc));
        assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
        assert_int_equal(s.n, 0);
        put_keys(hc, 2);
        hcache_close(hc);
        /* and the rebuilt file is trusted next time */
        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
        assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
        assert_int_equal(s.n, 2);
        hcache_close(hc);
        free(file);
        tu_rm_rf(tmp);
        free(tmp);
    }
}

enum damage { GARBAGE_HEAD, GARBAGE_ALL, TRUNCATE_HALF, EMPTY_FILE, GARBAGE_TAIL, GARBAGE_PAGE };

static void write_damage(const char *file, enum damage how)
{
    struct stat st;
    unsigned char junk[4096];
    int fd;

    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 131 + 17);
    assert_int_equal(stat(file, &st), 0);
    fd = open(file, O_WRONLY);
    assert_true(fd >= 0);
    switch (how) {
    case GARBAGE_HEAD:   /* both meta pages */
        assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
        assert_int_equal(pwrite(fd, junk, sizeof junk, 4096), (ssize_t)sizeof junk);
        break;
    case GARBAGE_ALL:
        for (off_t o = 0; o < st.st_size; o += (off_t)sizeof junk)
            assert_int_equal(pwrite(fd, junk, sizeof junk, o), (ssize_t)sizeof junk);
        break;
    case TRUNCATE_HALF:
        assert_int_equal(ftruncate(fd, st.st_size / 2), 0);
        break;
    case EMPTY_FILE:
        assert_int_equal(ftruncate(fd, 0), 0);
        break;
    case GARBAGE_PAGE:   /* one page in the middle */
        assert_int_equal(pwrite(fd, junk, sizeof junk, st.st_size / 2 / 4096 * 4096),
                         (ssize_t)sizeof junk);
        break;
    case GARBAGE_TAIL:   /* the pages after the two meta pages */
        for (off_t o = 8192; o < st.st_size; o += (off_t)sizeof junk)
            assert_int_equal(pwrite(fd, junk, sizeof junk, o), (ssize_t)sizeof junk);
        break;
    }
    close(fd);
}

static void corrupt_file_rebuilds(void **state)
{
    static const struct {
        const char *what;
        enum damage how;
    } cases[] = {
        {"garbage over the meta pages", GARBAGE_HEAD},
        {"garbage everywhere", GARBAGE_ALL},
        {"cut in half", TRUNCATE_HALF},
        {"empty", EMPTY_FILE},
        {"garbage after the meta pages", GARBAGE_TAIL},
        {"one page of garbage", GARBAGE_PAGE},
    };

    (void)state;
    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        char *tmp = tu_tmpdir("hcache");
        struct hcache *hc;
        struct seen s = {0, "", true, 0, 0};
        struct hcache_rec got;
        char *file;
        int rc;

        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        put_keys(hc, 3000);
        file = xstrdup(hcache_file(hc));
        hcache_close(hc);
        write_damage(file, cases[c].how);

        /* Opening never fails and never crashes; what was not trusted is
         * gone, what is left decodes. */
        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        rc = hcache_foreach(hc, seen_cb, &s, NULL);
        /* Either open saw the damage, or the read pass did (and said so),
         * or the damage missed every record (a free page). */
        if (hcache_open_state(hc) == HCACHE_REUSED && rc == 0 && (s.n != 3000 || !s.ordered))
            fail_msg("%s: damaged file trusted (%zu records)", cases[c].what, s.n);
        if (cases[c].how != GARBAGE_PAGE)
            assert_int_not_equal(hcache_open_state(hc), HCACHE_REUSED);
        else
            assert_int_equal(rc, -1);
        if (rc != 0) {   /* found while reading: rebuilt, now empty */
            s.n = 0;
            assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
            assert_int_equal(s.n, 0);
        }
        /* usable afterwards */
        put_keys(hc, 5);
        assert_int_equal(hcache_commit(hc, NULL), 0);
        assert_int_equal(hcache_get(hc, "k4", 2, &got, NULL), 0);
        assert_int_equal(got.tz, -300);
        hcache_close(hc);
        assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
        assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
        hcache_close(hc);
        free(file);
        tu_rm_rf(tmp);
        free(tmp);
    }
}

static void bad_record_is_a_miss(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    struct hcache *hc;
    struct seen s = {0, "", true, 0, 0};
    struct hcache_rec got;
    struct err e;
    char *file;
    static const char junk[] = "CH\x01\x00\x01\x08short";

    (void)state;
    assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
    put_keys(hc, 4);
    file = xstrdup(hcache_file(hc));
    hcache_close(hc);
    raw_put(file, "k1", 2, junk, sizeof junk - 1, false);
    raw_put(file, "k2", 2, "x", 1, false);

    assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
    assert_int_equal(hcache_get(hc, "k1", 2, &got, &e), -1);
    assert_int_equal(e.code, ERR_PARSE);
    assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
    assert_int_equal(s.n, 2);            /* k0 and k3 */
    assert_int_equal(s.mask, 0x9u);
    assert_int_equal(hcache_stats(hc)->bad, 2);
    /* both were deleted */
    assert_int_equal(hcache_get(hc, "k2", 2, &got, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    hcache_close(hc);
    free(file);
    tu_rm_rf(tmp);
    free(tmp);
}

static bool keep_even(void *ctx, const char *key, size_t key_len)
{
    (void)ctx;
    (void)key_len;
    return atoi(key + 1) % 2 == 0;
}

static void prune(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    struct hcache *hc;
    struct seen s = {0, "", true, 0, 0};
    size_t removed = 0;

    (void)state;
    assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
    put_keys(hc, 30);
    assert_int_equal(hcache_prune(hc, keep_even, NULL, &removed, NULL), 0);
    assert_int_equal(removed, 15);
    assert_int_equal(hcache_foreach(hc, seen_cb, &s, NULL), 0);
    assert_int_equal(s.n, 15);
    assert_int_equal(s.mask, 0x15555555u & ((1u << 30) - 1));
    hcache_close(hc);
    tu_rm_rf(tmp);
    free(tmp);
}

static int count_cb(void *ctx, const char *key, size_t key_len, const struct hcache_rec *rec)
{
    size_t *n = ctx;

    (void)key_len;
    if (key == NULL)
        return 0;
    assert_int_equal(rec->subject.n, 1 << 20);
    assert_int_equal((unsigned char)rec->subject.p[12345], 12345 % 251);
    (*n)++;
    return 0;
}

/* More than the initial 64 MiB map: the map grows, nothing is lost, and
 * batches commit every HCACHE_BATCH puts. */
static void map_grows(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    struct hcache *hc;
    struct hcache_rec r;
    char *big = malloc((size_t)1 << 20);
    size_t n = 0;

    (void)state;
    assert_non_null(big);
    for (size_t i = 0; i < (size_t)1 << 20; i++)
        big[i] = (char)(i % 251);
    memset(&r, 0, sizeof r);
    r.subject.p = big;
    r.subject.n = (size_t)1 << 20;
    assert_int_equal(hcache_open(tmp, "/big", &hc, NULL), 0);
    for (unsigned i = 0; i < 80; i++) {
        char key[16];

        snprintf(key, sizeof key, "b%02u", i);
        assert_int_equal(hcache_put(hc, key, strlen(key), &r, NULL), 0);
    }
    assert_int_equal(hcache_commit(hc, NULL), 0);
    assert_true(hcache_stats(hc)->grows >= 1);
    assert_int_equal(hcache_stats(hc)->puts, 80);
    hcache_close(hc);
    assert_int_equal(hcache_open(tmp, "/big", &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
    assert_int_equal(hcache_foreach(hc, count_cb, &n, NULL), 0);
    assert_int_equal(n, 80);
    hcache_close(hc);
    free(big);
    tu_rm_rf(tmp);
    free(tmp);
}

static void batches_commit(void **state)
{
    char *tmp = tu_tmpdir("hcache");
    struct hcache *hc;

    (void)state;
    assert_int_equal(hcache_open(tmp, "/f", &hc, NULL), 0);
    put_keys(hc, HCACHE_BATCH * 2 + 10);
    assert_int_equal(hcache_stats(hc)->commits, 2);
    assert_int_equal(hcache_commit(hc, NULL), 0);
    assert_int_equal(hcache_stats(hc)->commits, 3);
    hcache_close(hc);
    tu_rm_rf(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(unknown_tags_skipped),
        cmocka_unit_test(damaged_records_rejected),
        cmocka_unit_test(envelope_store_agree),
        cmocka_unit_test(open_put_reopen),
        cmocka_unit_test(default_directory),
        cmocka_unit_test(unusable_directory_fails),
        cmocka_unit_test(meta_mismatch_rebuilds),
        cmocka_unit_test(corrupt_file_rebuilds),
        cmocka_unit_test(bad_record_is_a_miss),
        cmocka_unit_test(prune),
        cmocka_unit_test(map_grows),
        cmocka_unit_test(batches_commit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
