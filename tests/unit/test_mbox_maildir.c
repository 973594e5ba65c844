/* Tests for mua/mailbox and the Maildir backend (mua/mbox_maildir.c): cold
 * and warm loads through the header cache, check() against changes by other
 * programs, flag renames, sync, copy/move, append, read, and a bench-style
 * measurement over the generated corpus (printed, never failed on time). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hcache.h"
#include "mailbox.h"
#include "maildir.h"
#include "msg.h"
#include "store.h"
#include "thread.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static void mk_maildir(const char *path)
{
    static const char *const subs[] = {"", "/cur", "/new", "/tmp"};

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s%s", path, subs[i]);

        assert_int_equal(mkdir(p, 0700), 0);
        free(p);
    }
}

/* Files in a sub-directory. */
static size_t count_files(const char *folder, const char *sub)
{
    char *p = xasprintf("%s/%s", folder, sub);
    DIR *d = opendir(p);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    free(p);
    return n;
}

static bool file_exists(const char *folder, const char *sub, const char *name)
{
    char *p = xasprintf("%s/%s/%s", folder, sub, name);
    struct stat st;
    bool ok = stat(p, &st) == 0;

    free(p);
    return ok;
}

/* A message with a bit of everything, chosen by i. */
static char *make_msg(unsigned i)
{
    const char *from = i % 3 == 0 ? "=?UTF-8?Q?J=C3=B6rg_H=C3=A4u=C3=9Fler?=" : "Ana Ruiz";
    const char *subj = i % 4 == 0 ? "=?UTF-8?B?0JLRgdGC0YDQtdGH0LA=?=" : "Weekly report";
    char refs[128] = "", extra[128] = "";

    if (i % 4 == 1)
        snprintf(refs, sizeof refs, "References: <m%u@x> <m%u@x>\nIn-Reply-To: <m%u@x>\n",
                 i + 100, i + 101, i + 102);
    if (i % 5 == 0)
        snprintf(extra, sizeof extra, "X-Label: =?UTF-8?Q?wichtig_=E2=9C=93?=\n");
    if (i % 2 == 0)
        strcat(extra, "List-Id: Dev list <dev.example.org>\n");
    return xasprintf("From: %s <user%u@example.org>\nTo: a@x, \"B\" <b@y>\nCc: c@z\n"
                     "Subject: %s %u\nMessage-ID: <m%u@x>\n%s%s"
                     "Date: Mon, 05 Jan 2026 10:%02u:00 %s\n\nBody %u\n",
                     from, i, subj, i, i, refs, extra, i % 60,
                     i % 2 ? "+0130" : "-0500", i);
}

static void deliver(const struct maildir_folder *f, unsigned i, unsigned md_flags,
                    struct maildir_ref *out)
{
    char *m = make_msg(i);
    struct maildir_deliver_opts o = {md_flags != 0, md_flags, NULL};

    assert_int_equal(maildir_deliver(f, m, strlen(m), &o, out, NULL), 0);
    free(m);
}

/* Write a message file directly (no fsync): for many messages. */
static void put_file(const char *folder, const char *sub, const char *name, const char *data)
{
    char *p = xasprintf("%s/%s/%s", folder, sub, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
    close(fd);
    free(p);
}

struct fixture {
    char *tmp;
    char *box;       /* the Maildir */
    char *cache;     /* header cache directory */
    struct maildir_folder *f;
};

static struct fixture *fixture_new(unsigned n_new, unsigned n_cur)
{
    struct fixture *fx = XNEW(struct fixture);

    fx->tmp = tu_tmpdir("mbox");
    fx->box = xasprintf("%s/Mail", fx->tmp);
    fx->cache = xasprintf("%s/cache", fx->tmp);
    mk_maildir(fx->box);
    assert_int_equal(maildir_folder_open_path(fx->box, &fx->f, NULL), 0);
    for (unsigned i = 0; i < n_new; i++)
        deliver(fx->f, i, 0, NULL);
    for (unsigned i = 0; i < n_cur; i++)
        deliver(fx->f, n_new + i, i % 2 ? MAILDIR_F_SEEN : MAILDIR_F_SEEN | MAILDIR_F_FLAGGED,
                NULL);
    return fx;
}

static void fixture_free(struct fixture *fx)
{
    maildir_folder_close(fx->f);
    tu_rm_rf(fx->tmp);
    free(fx->tmp);
    free(fx->box);
    free(fx->cache);
    free(fx);
}

static struct mailbox *open_box(const struct fixture *fx, unsigned flags)
{
    struct mailbox_open_opts o = {flags, fx->cache};
    struct mailbox *mb = NULL;

    assert_int_equal(mailbox_open_opts(fx->box, &o, &mb, NULL), 0);
    assert_non_null(mb);
    return mb;
}

static struct mailbox *open_loaded(const struct fixture *fx, unsigned flags)
{
    struct mailbox *mb = open_box(fx, flags);

    assert_int_equal(mailbox_load(mb, NULL, NULL, NULL), 0);
    return mb;
}

/* Everything the store says about message i, as one line. */
static char *describe(const struct mailbox *mb, uint32_t i)
{
    const struct store *st = &mb->store;
    const struct store_msg *m = store_get(st, i);
    const uint64_t *r = store_refs(st, m);
    char refs[256] = "";

    for (uint32_t k = 0; k < m->n_refs; k++)
        snprintf(refs + strlen(refs), sizeof refs - strlen(refs), "%016llx,",
                 (unsigned long long)r[k]);
    return xasprintf("%s|%u|%s|%s|%s|%016llx|%s|%lld|%d|%lld|%llu|%x|%u|%x",
                     store_str(st, m->name), m->key_len, store_str(st, m->from),
                     store_str(st, m->from_addr), store_str(st, m->subject),
                     (unsigned long long)m->id_hash, refs, (long long)m->date, m->tz,
                     (long long)m->received, (unsigned long long)m->size, m->flags, m->sub,
                     m->bits);
}

/* The message whose key is base, or STORE_NONE. */
static uint32_t find_key(const struct mailbox *mb, const char *base)
{
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);

        if (m->key_len == strlen(base) &&
            strncmp(store_str(&mb->store, m->name), base, m->key_len) == 0)
            return i;
    }
    return STORE_NONE;
}

/* The message whose subject ends in " <n>". */
static uint32_t find_num(const struct mailbox *mb, unsigned n)
{
    char tail[16];

    snprintf(tail, sizeof tail, " %u", n);
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const char *s = store_str(&mb->store, store_get(&mb->store, i)->subject);
        size_t l = strlen(s);

        if (l >= strlen(tail) && strcmp(s + l - strlen(tail), tail) == 0)
            return i;
    }
    return STORE_NONE;
}

/* ---- loads -------------------------------------------------------------- */

static void load_cold_then_warm(void **state)
{
    struct fixture *fx = fixture_new(4, 8);
    struct mailbox *mb = open_loaded(fx, 0);
    char *cold[12];
    uint32_t i;

    (void)state;
    assert_false(mb->has_warning);
    assert_int_equal(store_count(&mb->store), 12);
    assert_int_equal(mb->stats.cache_hits, 0);
    assert_int_equal(mb->stats.cache_misses, 12);
    for (i = 0; i < 12; i++)
        cold[i] = describe(mb, i);

    /* What the parse gave, spot-checked. */
    i = find_num(mb, 0);
    assert_int_not_equal(i, STORE_NONE);
    {
        const struct store_msg *m = store_get(&mb->store, i);
        char *path = NULL;
        struct maildir_ref ref = {m->sub, xstrdup(store_str(&mb->store, m->name))};
        struct stat st;

        assert_string_equal(store_str(&mb->store, m->subject), "Встреча 0");
        assert_string_equal(store_str(&mb->store, m->from), "Jörg Häußler");
        assert_string_equal(store_str(&mb->store, m->from_addr), "user0@example.org");
        assert_int_equal(m->id_hash, thread_id_hash("m0@x", 4));
        assert_int_equal(m->tz, -300);
        assert_int_equal(m->date, 1767625200);
        assert_int_equal(m->flags, MSG_NEW);
        assert_int_equal(m->sub, MAILDIR_SUB_NEW);
        assert_true(m->bits & STORE_B_LIST_ID);
        assert_int_equal(maildir_message_path(fx->f, &ref, &path, NULL), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(m->size, (uint64_t)st.st_size);
        assert_int_equal(m->received, (int64_t)st.st_mtime);
        free(path);
        maildir_ref_free(&ref);
    }
    i = find_num(mb, 5);   /* in cur/ with S; References + In-Reply-To */
    {
        const struct store_msg *m = store_get(&mb->store, i);
        const uint64_t *r = store_refs(&mb->store, m);

        assert_int_equal(m->flags, MSG_SEEN);
        assert_int_equal(m->sub, MAILDIR_SUB_CUR);
        assert_int_equal(m->tz, 90);
        assert_int_equal(m->n_refs, 3);
        assert_int_equal(r[0], thread_id_hash("m105@x", 6));
        assert_int_equal(r[2], thread_id_hash("m107@x", 6));
        assert_false(m->bits & STORE_B_LIST_ID);
    }
    assert_int_equal(store_get(&mb->store, find_num(mb, 4))->flags, MSG_SEEN | MSG_FLAGGED);
    mailbox_close(mb);

    /* Warm: every record from the cache, the same store. */
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 12);
    assert_int_equal(mb->stats.cache_misses, 0);
    assert_int_equal(store_count(&mb->store), 12);
    for (i = 0; i < 12; i++) {
        char *w = describe(mb, i);

        assert_string_equal(w, cold[i]);
        free(w);
        free(cold[i]);
    }
    /* and a second load of the same open mailbox too */
    assert_int_equal(mailbox_load(mb, NULL, NULL, NULL), 0);
    assert_int_equal(mb->stats.cache_hits, 12);
    assert_int_equal(store_count(&mb->store), 12);
    mailbox_close(mb);
    fixture_free(fx);
}

/* The cache records hold what patterns need beyond the store. */
static void cache_holds_pattern_fields(void **state)
{
    struct fixture *fx = fixture_new(0, 6);
    struct mailbox *mb = open_loaded(fx, 0);
    struct hcache *hc;
    struct hcache_rec rec;
    struct store_span name, addr;
    const struct store_msg *m = store_get(&mb->store, find_num(mb, 5));
    char *key = xstrndup(store_str(&mb->store, m->name), m->key_len);
    size_t pos = 0;

    (void)state;
    mailbox_close(mb);
    assert_int_equal(hcache_open(fx->cache, fx->box, &hc, NULL), 0);
    assert_int_equal(hcache_open_state(hc), HCACHE_REUSED);
    assert_int_equal(hcache_get(hc, key, strlen(key), &rec, NULL), 0);
    assert_true(hcache_addr_next(rec.to, &pos, &name, &addr));
    assert_int_equal(name.n, 0);
    assert_memory_equal(addr.p, "a@x", 3);
    assert_true(hcache_addr_next(rec.to, &pos, &name, &addr));
    assert_memory_equal(name.p, "B", 1);
    assert_memory_equal(rec.x_label.p, "wichtig ✓", rec.x_label.n);
    assert_int_equal(rec.x_label.n, strlen("wichtig ✓"));
    assert_memory_equal(rec.message_id.p, "m5@x", 4);
    assert_null(rec.list_id.p);
    hcache_close(hc);
    free(key);
    fixture_free(fx);
}

static void flags_come_from_names(void **state)
{
    struct fixture *fx = fixture_new(0, 3);
    struct mailbox *mb = open_loaded(fx, 0);
    const struct store_msg *m = store_get(&mb->store, 0);
    char *old = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, m->name));
    char *base = xstrndup(store_str(&mb->store, m->name), m->key_len);
    char *new_name = xasprintf("%s/cur/%s:2,RST", fx->box, base);
    uint32_t i;

    (void)state;
    mailbox_close(mb);
    assert_int_equal(rename(old, new_name), 0);   /* another program */
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 3);
    i = find_key(mb, base);
    assert_int_not_equal(i, STORE_NONE);
    assert_int_equal(store_get(&mb->store, i)->flags, MSG_REPLIED | MSG_SEEN | MSG_TRASHED);
    mailbox_close(mb);
    free(old);
    free(base);
    free(new_name);
    fixture_free(fx);
}

static void stale_records_deleted(void **state)
{
    struct fixture *fx = fixture_new(0, 4);
    struct mailbox *mb = open_loaded(fx, 0);
    char *gone = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, store_get(&mb->store, 1)->name));

    (void)state;
    mailbox_close(mb);
    assert_int_equal(unlink(gone), 0);
    mb = open_loaded(fx, 0);
    assert_int_equal(store_count(&mb->store), 3);
    assert_int_equal(mb->stats.cache_hits, 3);
    assert_int_equal(mb->stats.cache_stale, 1);
    mailbox_close(mb);
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_stale, 0);
    assert_int_equal(mb->stats.cache_hits, 3);
    mailbox_close(mb);
    free(gone);
    fixture_free(fx);
}

static void damaged_cache_falls_back(void **state)
{
    struct fixture *fx = fixture_new(2, 3);
    struct mailbox *mb = open_loaded(fx, 0);
    struct hcache *hc;
    char *file, *cold[5];
    int fd;

    (void)state;
    for (uint32_t i = 0; i < 5; i++)
        cold[i] = describe(mb, i);
    mailbox_close(mb);
    assert_int_equal(hcache_open(fx->cache, fx->box, &hc, NULL), 0);
    file = xstrdup(hcache_file(hc));
    hcache_close(hc);
    fd = open(file, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage garbage garbage garbage", 31), 31);
    close(fd);

    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 0);
    assert_int_equal(mb->stats.cache_misses, 5);
    for (uint32_t i = 0; i < 5; i++) {
        char *w = describe(mb, i);

        assert_string_equal(w, cold[i]);
        free(w);
        free(cold[i]);
    }
    mailbox_close(mb);
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 5);
    mailbox_close(mb);
    free(file);
    fixture_free(fx);
}

static void runs_without_cache(void **state)
{
    struct fixture *fx = fixture_new(1, 2);
    struct mailbox *mb;
    struct mailbox_open_opts o = {0, NULL};
    char *blocker = xasprintf("%s/blocker", fx->tmp);
    int fd = open(blocker, O_WRONLY | O_CREAT, 0600);

    (void)state;
    /* MAILBOX_NO_HCACHE: every load parses */
    mb = open_loaded(fx, MAILBOX_NO_HCACHE);
    assert_int_equal(mb->stats.cache_misses, 3);
    mailbox_close(mb);
    mb = open_loaded(fx, MAILBOX_NO_HCACHE);
    assert_int_equal(mb->stats.cache_misses, 3);
    assert_false(mb->has_warning);
    mailbox_close(mb);
    /* a cache directory that cannot be made: a warning, not a failure */
    assert_true(fd >= 0);
    close(fd);
    o.hcache_dir = blocker;
    assert_int_equal(mailbox_open_opts(fx->box, &o, &mb, NULL), 0);
    assert_true(mb->has_warning);
    assert_non_null(strstr(mb->warning.text, "header cache"));
    assert_int_equal(mailbox_load(mb, NULL, NULL, NULL), 0);
    assert_int_equal(store_count(&mb->store), 3);
    mailbox_close(mb);
    free(blocker);
    fixture_free(fx);
}

struct progress {
    size_t calls, last_done, last_total;
    bool monotonic;
};

static void on_progress(void *ctx, size_t done, size_t total)
{
    struct progress *p = ctx;

    if (done < p->last_done || done > total)
        p->monotonic = false;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
}

static void progress_on_cold_load(void **state)
{
    struct fixture *fx = fixture_new(0, 0);
    struct progress p = {0, 0, 0, true};
    struct mailbox *mb;

    (void)state;
    for (unsigned i = 0; i < 2500; i++) {
        char name[64];
        char *m = make_msg(i);

        snprintf(name, sizeof name, "%u.M1P1Q%u.test,S=%zu:2,S", 1767225600 + i, i, strlen(m));
        put_file(fx->box, "cur", name, m);
        free(m);
    }
    mb = open_box(fx, 0);
    assert_int_equal(mailbox_load(mb, on_progress, &p, NULL), 0);
    assert_int_equal(store_count(&mb->store), 2500);
    assert_int_equal(p.calls, 3);          /* 1000, 2000, and the end */
    assert_int_equal(p.last_done, 2500);
    assert_int_equal(p.last_total, 2500);
    assert_true(p.monotonic);
    /* warm: nothing to read, only the final call */
    memset(&p, 0, sizeof p);
    p.monotonic = true;
    assert_int_equal(mailbox_load(mb, on_progress, &p, NULL), 0);
    assert_int_equal(mb->stats.cache_hits, 2500);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.last_total, 0);
    mailbox_close(mb);
    fixture_free(fx);
}

/* Files that cannot be read, in the single-threaded and the parallel
 * paths: a name that is a directory (through a symlink) gets a bare record
 * and a warning, a dangling symlink counts as vanished; the rest loads. */
static void unreadable_files(void **state)
{
    static const unsigned counts[] = {3, 300};

    (void)state;
    for (size_t c = 0; c < ARRAY_LEN(counts); c++) {
        struct fixture *fx = fixture_new(0, 0);
        struct mailbox *mb;
        char *link1 = xasprintf("%s/cur/1700000000.dirlink.host,S=1:2,FS", fx->box);
        char *link2 = xasprintf("%s/cur/1700000001.dangling.host:2,S", fx->box);
        uint32_t i;

        for (unsigned k = 0; k < counts[c]; k++) {
            char name[64];
            char *m = make_msg(k);

            snprintf(name, sizeof name, "%u.M1P1Q%u.test:2,S", 1767225600 + k, k);
            put_file(fx->box, "cur", name, m);
            free(m);
        }
        assert_int_equal(symlink("/", link1), 0);
        assert_int_equal(symlink("/nonexistent/correo-test", link2), 0);
        mb = open_loaded(fx, 0);
        assert_int_equal(store_count(&mb->store), counts[c] + 1);
        assert_int_equal(mb->stats.vanished, 1);
        assert_int_equal(mb->stats.cache_misses, counts[c]);
        assert_true(mb->has_warning);
        assert_non_null(strstr(mb->warning.text, "could not be read"));
        i = find_key(mb, "1700000000.dirlink.host,S=1");
        assert_int_not_equal(i, STORE_NONE);
        assert_int_equal(store_get(&mb->store, i)->flags, MSG_FLAGGED | MSG_SEEN);
        assert_string_equal(store_str(&mb->store, store_get(&mb->store, i)->subject), "");
        assert_int_not_equal(find_num(mb, counts[c] - 1), STORE_NONE);
        for (uint32_t k = 0; k < store_count(&mb->store); k++)
            assert_true(store_get(&mb->store, k)->bits & STORE_B_FILLED);
        mailbox_close(mb);
        free(link1);
        free(link2);
        fixture_free(fx);
    }
}

/* ---- check --------------------------------------------------------------- */

static void check_sees_changes(void **state)
{
    struct fixture *fx = fixture_new(0, 4);
    struct mailbox *mb = open_loaded(fx, 0);
    struct maildir_ref ref = MAILDIR_REF_INIT;
    bool changed = true;
    const struct store_msg *m;
    char *old, *renamed, *base, *doomed;
    uint32_t i, j;

    (void)state;
    assert_int_equal(mb->ops->check(mb, &changed, NULL), 0);
    assert_false(changed);

    /* a new delivery */
    deliver(fx->f, 50, 0, &ref);
    assert_int_equal(mb->ops->check(mb, &changed, NULL), 0);
    assert_true(changed);
    assert_int_equal(store_count(&mb->store), 5);
    m = store_get(&mb->store, 4);
    assert_string_equal(store_str(&mb->store, m->name), ref.name);
    assert_string_equal(store_str(&mb->store, m->subject), "Weekly report 50");
    assert_int_equal(m->flags, MSG_NEW);
    maildir_ref_free(&ref);

    /* a rename by another program (flags changed), keeping session bits */
    i = find_num(mb, 1);
    m = store_get(&mb->store, i);
    assert_int_equal(mb->ops->set_flags(mb, i, m->flags | MSG_TAGGED, NULL), 0);
    m = store_get(&mb->store, i);
    base = xstrndup(store_str(&mb->store, m->name), m->key_len);
    old = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, m->name));
    renamed = xasprintf("%s/cur/%s:2,FP", fx->box, base);
    assert_int_equal(rename(old, renamed), 0);
    /* and a deletion */
    j = find_num(mb, 2);
    doomed = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, store_get(&mb->store, j)->name));
    assert_int_equal(unlink(doomed), 0);

    assert_int_equal(mb->ops->check(mb, &changed, NULL), 0);
    assert_true(changed);
    assert_int_equal(store_count(&mb->store), 5);   /* numbers do not change */
    m = store_get(&mb->store, i);
    assert_int_equal(m->flags, MSG_FLAGGED | MSG_PASSED | MSG_TAGGED);
    assert_int_equal(strncmp(store_str(&mb->store, m->name), base, strlen(base)), 0);
    assert_string_equal(store_str(&mb->store, m->name) + strlen(base), ":2,FP");
    assert_string_equal(store_str(&mb->store, m->subject), "Weekly report 1");
    assert_true(store_get(&mb->store, j)->bits & STORE_B_GONE);
    assert_false(store_get(&mb->store, i)->bits & STORE_B_GONE);
    assert_int_equal(mb->ops->check(mb, &changed, NULL), 0);
    assert_false(changed);
    /* a gone message cannot be read */
    {
        struct buf b = BUF_INIT;
        struct err e;

        assert_int_equal(mb->ops->read_message(mb, j, &b, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        buf_free(&b);
    }
    mailbox_close(mb);
    free(old);
    free(renamed);
    free(base);
    free(doomed);
    fixture_free(fx);
}

/* ---- flags, sync ---------------------------------------------------------- */

static void set_flags_renames(void **state)
{
    struct fixture *fx = fixture_new(2, 1);
    struct mailbox *mb = open_loaded(fx, 0);
    uint32_t i = find_num(mb, 0);   /* in new/ */
    const struct store_msg *m = store_get(&mb->store, i);
    char *base = xstrndup(store_str(&mb->store, m->name), m->key_len);
    char *want = xasprintf("%s:2,FS", base);
    char *other;

    (void)state;
    assert_true(file_exists(fx->box, "new", base));
    assert_int_equal(mb->ops->set_flags(mb, i, MSG_SEEN | MSG_FLAGGED, NULL), 0);
    m = store_get(&mb->store, i);
    assert_int_equal(m->flags, MSG_SEEN | MSG_FLAGGED);
    assert_int_equal(m->sub, MAILDIR_SUB_CUR);
    assert_string_equal(store_str(&mb->store, m->name), want);
    assert_true(file_exists(fx->box, "cur", want));
    assert_false(file_exists(fx->box, "new", base));

    /* session bits: no rename */
    assert_int_equal(mb->ops->set_flags(mb, i, MSG_SEEN | MSG_FLAGGED | MSG_TAGGED, NULL), 0);
    assert_true(file_exists(fx->box, "cur", want));
    assert_int_equal(store_get(&mb->store, i)->flags, MSG_SEEN | MSG_FLAGGED | MSG_TAGGED);

    /* renamed by another program meanwhile: followed, its flag kept */
    {
        char *a = xasprintf("%s/cur/%s", fx->box, want);
        char *b = xasprintf("%s/cur/%s:2,FRS", fx->box, base);

        assert_int_equal(rename(a, b), 0);
        free(a);
        free(b);
    }
    assert_int_equal(mb->ops->set_flags(mb, i, MSG_SEEN | MSG_TAGGED, NULL), 0);
    other = xasprintf("%s:2,RS", base);
    assert_true(file_exists(fx->box, "cur", other));
    assert_string_equal(store_str(&mb->store, store_get(&mb->store, i)->name), other);
    assert_int_equal(store_get(&mb->store, i)->flags, MSG_SEEN | MSG_REPLIED | MSG_TAGGED);

    /* clearing MSG_NEW alone moves new/ -> cur/ */
    i = find_num(mb, 1);
    assert_int_equal(mb->ops->set_flags(mb, i, 0, NULL), 0);
    assert_int_equal(store_get(&mb->store, i)->sub, MAILDIR_SUB_CUR);
    assert_int_equal(count_files(fx->box, "new"), 0);
    mailbox_close(mb);

    /* the flags stick across a warm load */
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 3);
    assert_int_equal(store_get(&mb->store, find_num(mb, 0))->flags, MSG_SEEN | MSG_REPLIED);
    mailbox_close(mb);
    free(base);
    free(want);
    free(other);
    fixture_free(fx);
}

static void sync_deletes_only_marked(void **state)
{
    struct fixture *fx = fixture_new(1, 6);
    struct mailbox *mb = open_loaded(fx, 0);
    struct mailbox_sync_errs errs = {0, NULL};
    uint32_t a = find_num(mb, 0), b = find_num(mb, 2), c = find_num(mb, 3),
             d = find_num(mb, 4), bad = find_num(mb, 5);
    char *blocked;
    struct err e;

    (void)state;
    /* a: in new/; b: renamed behind our back; c: already removed by
     * someone else; d: plain; bad: replaced by a directory (cannot unlink) */
    for (uint32_t k = 0; k < 5; k++) {
        uint32_t i = (uint32_t[]){a, b, c, d, bad}[k];

        assert_int_equal(mb->ops->set_flags(mb, i, store_get(&mb->store, i)->flags | MSG_DELETED,
                                            NULL), 0);
    }
    assert_int_equal(count_files(fx->box, "new") + count_files(fx->box, "cur"), 7);
    {
        const struct store_msg *m = store_get(&mb->store, b);
        char *base = xstrndup(store_str(&mb->store, m->name), m->key_len);
        char *from = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, m->name));
        char *to = xasprintf("%s/cur/%s:2,T", fx->box, base);

        assert_int_equal(rename(from, to), 0);
        free(base);
        free(from);
        free(to);
        from = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, store_get(&mb->store, c)->name));
        assert_int_equal(unlink(from), 0);
        free(from);
        blocked = xasprintf("%s/cur/%s", fx->box,
                            store_str(&mb->store, store_get(&mb->store, bad)->name));
        assert_int_equal(unlink(blocked), 0);
        assert_int_equal(mkdir(blocked, 0700), 0);
    }
    assert_int_equal(mb->ops->sync(mb, &errs, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(errs.n, 1);
    assert_int_equal(errs.v[0].msg, bad);
    assert_int_not_equal(errs.v[0].err.text[0], '\0');
    for (uint32_t k = 0; k < 4; k++)
        assert_true(store_get(&mb->store, (uint32_t[]){a, b, c, d}[k])->bits & STORE_B_GONE);
    assert_false(store_get(&mb->store, bad)->bits & STORE_B_GONE);
    /* the two unmarked messages and the directory are all that is left */
    assert_int_equal(count_files(fx->box, "new"), 0);
    assert_int_equal(count_files(fx->box, "cur"), 3);
    assert_int_not_equal(find_num(mb, 1), STORE_NONE);
    assert_true(file_exists(fx->box, "cur",
                            store_str(&mb->store, store_get(&mb->store, find_num(mb, 1))->name)));
    assert_true(file_exists(fx->box, "cur",
                            store_str(&mb->store, store_get(&mb->store, find_num(mb, 6))->name)));
    mailbox_sync_errs_free(&errs);
    /* once the obstacle is gone (and with it the file), bad is done too */
    assert_int_equal(rmdir(blocked), 0);
    free(blocked);
    assert_int_equal(mb->ops->sync(mb, NULL, NULL), 0);
    assert_true(store_get(&mb->store, bad)->bits & STORE_B_GONE);
    assert_int_equal(count_files(fx->box, "cur"), 2);
    /* nothing marked: nothing happens */
    assert_int_equal(mb->ops->sync(mb, NULL, NULL), 0);
    assert_int_equal(count_files(fx->box, "cur"), 2);
    mailbox_close(mb);
    fixture_free(fx);
}

/* ---- copy, move, append, read ------------------------------------------- */

static void copy_and_move(void **state)
{
    struct fixture *fx = fixture_new(1, 3);
    struct mailbox *mb = open_loaded(fx, 0), *other;
    char *dest = xasprintf("%s/Other", fx->tmp);
    struct mailbox_open_opts o = {0, fx->cache};
    uint32_t c = find_num(mb, 1), m = find_num(mb, 2);
    struct err e;

    (void)state;
    mk_maildir(dest);
    assert_int_equal(mb->ops->copy(mb, c, dest, false, NULL), 0);
    assert_false(store_get(&mb->store, c)->bits & STORE_B_GONE);
    assert_int_equal(count_files(dest, "cur"), 1);
    assert_int_equal(count_files(fx->box, "cur") + count_files(fx->box, "new"), 4);
    assert_int_equal(mb->ops->copy(mb, m, dest, true, NULL), 0);
    assert_true(store_get(&mb->store, m)->bits & STORE_B_GONE);
    assert_int_equal(count_files(dest, "cur"), 2);
    assert_int_equal(count_files(fx->box, "cur") + count_files(fx->box, "new"), 3);
    /* a moved message is no longer there to copy */
    assert_int_equal(mb->ops->copy(mb, m, dest, false, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    /* into something that is not a folder */
    assert_int_equal(mb->ops->copy(mb, c, fx->cache, false, &e), -1);

    assert_int_equal(mailbox_open_opts(dest, &o, &other, NULL), 0);
    assert_int_equal(mailbox_load(other, NULL, NULL, NULL), 0);
    assert_int_equal(store_count(&other->store), 2);
    assert_int_not_equal(find_num(other, 1), STORE_NONE);
    assert_int_not_equal(find_num(other, 2), STORE_NONE);
    assert_int_equal(store_get(&other->store, find_num(other, 2))->flags, MSG_SEEN);
    mailbox_close(other);
    mailbox_close(mb);
    /* the source's cache no longer has the moved message */
    mb = open_loaded(fx, 0);
    assert_int_equal(store_count(&mb->store), 3);
    assert_int_equal(mb->stats.cache_hits, 3);
    assert_int_equal(mb->stats.cache_stale, 0);
    mailbox_close(mb);
    free(dest);
    fixture_free(fx);
}

static void append_and_read(void **state)
{
    struct fixture *fx = fixture_new(0, 1);
    struct mailbox *mb = open_loaded(fx, 0);
    char *msg = make_msg(77);
    struct buf b = BUF_INIT;
    const struct store_msg *m;
    size_t hlen;

    (void)state;
    assert_int_equal(mb->ops->append(mb, msg, strlen(msg), MSG_SEEN | MSG_REPLIED, NULL), 0);
    assert_int_equal(store_count(&mb->store), 2);
    m = store_get(&mb->store, 1);
    assert_string_equal(store_str(&mb->store, m->subject), "Weekly report 77");
    assert_int_equal(m->flags, MSG_SEEN | MSG_REPLIED);
    assert_int_equal(m->size, strlen(msg));
    assert_true(file_exists(fx->box, "cur", store_str(&mb->store, m->name)));
    assert_non_null(strstr(store_str(&mb->store, m->name), ":2,RS"));
    assert_int_equal(mb->ops->append(mb, msg, strlen(msg), MSG_NEW, NULL), 0);
    assert_int_equal(store_get(&mb->store, 2)->sub, MAILDIR_SUB_NEW);
    assert_int_equal(store_get(&mb->store, 2)->flags, MSG_NEW);

    assert_int_equal(mb->ops->read_message(mb, 1, &b, NULL), 0);
    assert_int_equal(b.len, strlen(msg));
    assert_memory_equal(b.data, msg, b.len);
    buf_reset(&b);
    assert_int_equal(mb->ops->read_headers(mb, 1, &b, NULL), 0);
    hlen = (size_t)(strstr(msg, "\n\n") - msg) + 2;
    assert_int_equal(b.len, hlen);
    assert_memory_equal(b.data, msg, hlen);
    /* read follows a rename by another program */
    m = store_get(&mb->store, 1);
    {
        char *base = xstrndup(store_str(&mb->store, m->name), m->key_len);
        char *from = xasprintf("%s/cur/%s", fx->box, store_str(&mb->store, m->name));
        char *to = xasprintf("%s/cur/%s:2,FRS", fx->box, base);

        assert_int_equal(rename(from, to), 0);
        buf_reset(&b);
        assert_int_equal(mb->ops->read_message(mb, 1, &b, NULL), 0);
        assert_int_equal(b.len, strlen(msg));
        assert_int_equal(store_get(&mb->store, 1)->flags, MSG_SEEN | MSG_REPLIED | MSG_FLAGGED);
        free(base);
        free(from);
        free(to);
    }
    /* a ceiling on the caller's buffer is an error, not a cut */
    {
        struct buf small;
        struct err e;

        buf_init(&small, 16);
        assert_int_equal(mb->ops->read_message(mb, 1, &small, &e), -1);
        assert_int_equal(e.code, ERR_LIMIT);
        buf_free(&small);
    }
    mailbox_close(mb);
    /* appended messages went into the cache */
    mb = open_loaded(fx, 0);
    assert_int_equal(mb->stats.cache_hits, 3);
    mailbox_close(mb);
    buf_free(&b);
    free(msg);
    fixture_free(fx);
}

static void readonly_refuses_writes(void **state)
{
    struct fixture *fx = fixture_new(1, 1);
    struct mailbox *mb = open_loaded(fx, MAILBOX_READONLY);
    uint32_t i = find_num(mb, 1);   /* cur/, S and F */
    struct err e;

    (void)state;
    assert_true(mb->readonly);
    assert_int_equal(store_get(&mb->store, i)->flags, MSG_SEEN | MSG_FLAGGED);
    assert_int_equal(mb->ops->set_flags(mb, i, MSG_SEEN, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(mb->ops->set_flags(mb, i, MSG_SEEN | MSG_FLAGGED | MSG_DELETED, NULL), 0);
    assert_int_equal(store_get(&mb->store, i)->flags, MSG_SEEN | MSG_FLAGGED | MSG_DELETED);
    assert_int_equal(mb->ops->sync(mb, NULL, &e), -1);
    assert_int_equal(mb->ops->append(mb, "x", 1, 0, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(count_files(fx->box, "cur") + count_files(fx->box, "new"), 2);
    mailbox_close(mb);
    fixture_free(fx);
}

static void open_errors(void **state)
{
    char *tmp = tu_tmpdir("mbox");
    char *missing = xasprintf("%s/missing", tmp);
    struct mailbox *mb = (struct mailbox *)1;
    struct err e;

    (void)state;
    assert_int_equal(mailbox_open(missing, 0, &mb, &e), -1);
    assert_null(mb);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(mailbox_open(tmp, 0, &mb, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(mailbox_open("", 0, &mb, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    free(missing);
    tu_rm_rf(tmp);
    free(tmp);
}

/* ---- helpers for backends ------------------------------------------------ */

static void date_tz(void **state)
{
    static const struct {
        const char *text;
        bool ok;
        int tz;
    } cases[] = {
        {"Mon, 05 Jan 2026 10:00:00 +0130", true, 90},
        {"5 Jan 2026 10:00 -0500", true, -300},
        {"Mon, 05 Jan 2026 10:00:00 +0000 (UTC)", true, 0},
        {"Mon, 05 Jan 2026 10:00:00 (comment: 1) -0800", true, -480},
        {"Tue, 6 Jan 2026 23:59:59 GMT", true, 0},
        {"Tue, 6 Jan 2026 23:59:59 pdt", true, -420},
        {"Tue, 6 Jan 2026 23:59:59 +0545", true, 345},
        {"Tue, 6 Jan 2026 23:59:59", false, 0},
        {"Tue, 6 Jan 2026 23:59:59 XYZ", false, 0},
        {"Tue, 6 Jan 2026 23:59:59 +99999", false, 0},
        {"no date at all", false, 0},
        {"", false, 0},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int tz = 12345;

        if (mailbox_date_tz(cases[i].text, &tz) != cases[i].ok || tz != cases[i].tz)
            fail_msg("\"%s\": got %d", cases[i].text, tz);
    }
    {
        int tz = 5;

        assert_false(mailbox_date_tz(NULL, &tz));
        assert_int_equal(tz, 0);
    }
}

static void header_field(void **state)
{
    static const struct {
        const char *hdr;
        const char *want;   /* NULL: absent */
    } cases[] = {
        {"Subject: a\nX-Label: work\n\n", "work"},
        {"x-label:   spaced out  \r\nTo: b\r\n\r\n", "spaced out"},
        {"X-Label: first\n line\n\tand more\nTo: b\n\n", "first line\tand more"},
        {"X-Label: =?UTF-8?Q?=C3=BCber?=\n\n", "über"},
        {"X-Label : odd but fine\n\n", "odd but fine"},
        {"X-Labels: no\n\n", NULL},
        {"Subject: x\n\nX-Label: in the body\n", NULL},
        {"Subject: x\n X-Label: a continuation\n\n", NULL},
        {"X-Label:\n\n", ""},
        {"X-Label: one\nX-Label: two\n\n", "one"},
    };
    struct buf out = BUF_INIT;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        bool found = mailbox_header_field(cases[i].hdr, strlen(cases[i].hdr), "X-Label", &out);

        if (found != (cases[i].want != NULL))
            fail_msg("case %zu: found=%d", i, found);
        if (found && strcmp(buf_cstr(&out), cases[i].want) != 0)
            fail_msg("case %zu: \"%s\"", i, buf_cstr(&out));
    }
    buf_free(&out);
}

/* ---- bench --------------------------------------------------------------- */

/* In a fresh process: load every folder of the tree at argv[2] with the
 * cache in argv[3]; print "messages seconds store_bytes hits". */
static int bench_child(char **argv)
{
    struct maildir *md;
    struct maildir_folder_list *fl;
    size_t n = 0, mem = 0, hits = 0;
    double t0 = tu_now();

    if (maildir_open(argv[2], &md, NULL) != 0 || maildir_list_folders(md, &fl, NULL) != 0)
        return 2;
    for (size_t i = 0; i < fl->n; i++) {
        struct mailbox_open_opts o = {0, argv[3]};
        struct mailbox *mb;

        if (mailbox_open_opts(fl->v[i].path, &o, &mb, NULL) != 0 ||
            mailbox_load(mb, NULL, NULL, NULL) != 0)
            return 3;
        n += store_count(&mb->store);
        mem += store_mem(&mb->store);
        hits += mb->stats.cache_hits;
        mailbox_close(mb);
    }
    printf("%zu %.6f %zu %zu\n", n, tu_now() - t0, mem, hits);
    free(fl);
    maildir_close(md);
    return 0;
}

struct bench_run {
    size_t n, mem, hits;
    double secs;
    long maxrss_kb;
};

static void run_child(const char *mode, const char *tree, const char *cache, struct bench_run *r)
{
    int pfd[2];
    pid_t pid;
    int status;
    struct rusage ru;
    char line[256];
    ssize_t got;

    memset(r, 0, sizeof *r);
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execl("/proc/self/exe", "test_mbox_maildir", mode, tree, cache, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    got = read(pfd[0], line, sizeof line - 1);
    close(pfd[0]);
    assert_int_equal(wait4(pid, &status, 0, &ru), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    r->maxrss_kb = ru.ru_maxrss;
    if (strcmp(mode, "--bench-load") == 0) {
        assert_true(got > 0);
        line[got] = '\0';
        assert_int_equal(sscanf(line, "%zu %lf %zu %zu", &r->n, &r->secs, &r->mem, &r->hits), 4);
    }
}

/* Bytes of the regular files in dir. */
static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        struct stat st;

        if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && S_ISREG(st.st_mode))
            n += (uint64_t)st.st_size;
    }
    closedir(d);
    return n;
}

static void bench_corpus(void **state)
{
    const char *src = getenv("CORREO_SRCDIR");
    const char *py = getenv("PYTHON");
    char *tmp, *tree, *cache, *cmd;
    struct bench_run idle, cold, warm;

    (void)state;
    if (src == NULL || py == NULL || access(py, X_OK) != 0)
        skip();
    tmp = tu_tmpdir("mbox");
    tree = xasprintf("%s/corpus", tmp);
    cache = xasprintf("%s/cache", tmp);
    cmd = xasprintf("'%s' '%s/tests/tools/gen-corpus.py' '%s' --count 10000 --seed 1", py, src,
                    tree);
    assert_int_equal(system(cmd), 0);
    run_child("--bench-idle", tree, cache, &idle);
    run_child("--bench-load", tree, cache, &cold);
    run_child("--bench-load", tree, cache, &warm);
    assert_int_equal(cold.n, 10000);
    assert_int_equal(warm.n, 10000);
    assert_int_equal(cold.hits, 0);
    assert_int_equal(warm.hits, 10000);
    print_message("bench: 10000 messages in 6 folders (page cache warm)\n");
    print_message("bench: cold load %.3f s (%.1f us/msg), warm load %.3f s (%.1f us/msg)\n",
                  cold.secs, cold.secs * 1e6 / 10000, warm.secs, warm.secs * 1e6 / 10000);
    print_message("bench: store %.1f bytes/msg allocated; peak RSS idle %ld KiB, "
                  "cold %ld KiB, warm %ld KiB\n",
                  (double)warm.mem / 10000, idle.maxrss_kb, cold.maxrss_kb, warm.maxrss_kb);
    print_message("bench: header cache %.1f bytes/msg on disk\n", (double)dir_bytes(cache) / 10000);
    free(cmd);
    free(tree);
    free(cache);
    tu_rm_rf(tmp);
    free(tmp);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(load_cold_then_warm),
        cmocka_unit_test(cache_holds_pattern_fields),
        cmocka_unit_test(flags_come_from_names),
        cmocka_unit_test(stale_records_deleted),
        cmocka_unit_test(damaged_cache_falls_back),
        cmocka_unit_test(runs_without_cache),
        cmocka_unit_test(progress_on_cold_load),
        cmocka_unit_test(unreadable_files),
        cmocka_unit_test(check_sees_changes),
        cmocka_unit_test(set_flags_renames),
        cmocka_unit_test(sync_deletes_only_marked),
        cmocka_unit_test(copy_and_move),
        cmocka_unit_test(append_and_read),
        cmocka_unit_test(readonly_refuses_writes),
        cmocka_unit_test(open_errors),
        cmocka_unit_test(date_tz),
        cmocka_unit_test(header_field),
        cmocka_unit_test(bench_corpus),
    };

    if (argc == 4 && strcmp(argv[1], "--bench-load") == 0)
        return bench_child(argv);
    if (argc == 4 && strcmp(argv[1], "--bench-idle") == 0)
        return 0;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
