/* Tests for the notmuch backend (mua/mbox_notmuch.c) on a generated corpus
 * indexed by `notmuch new` with a private configuration: URL parsing, query
 * folders against `notmuch search`, tags and flags in the records, tag and
 * flag changes seen by notmuch, Maildir renames seen by check and read,
 * deletion, copy, read-only folders. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "mailbox.h"
#include "maildir.h"
#include "msg.h"
#include "store.h"
#include "testutil.h"

struct fx {
    char *tmp, *mail, *cfg;
};

static bool have_tools(void)
{
    const char *py = getenv("PYTHON");

    return getenv("CORREO_SRCDIR") != NULL && py != NULL && access(py, X_OK) == 0 &&
           system("notmuch --version >/dev/null 2>&1") == 0;
}

static void write_cfg(struct fx *f, bool sync)
{
    FILE *fp = fopen(f->cfg, "w");

    assert_non_null(fp);
    fprintf(fp,
            "[database]\npath=%s\n[new]\ntags=inbox;unread;\nignore=maildirfolder\n"
            "[search]\nexclude_tags=deleted;\n[maildir]\nsynchronize_flags=%s\n",
            f->mail, sync ? "true" : "false");
    assert_int_equal(fclose(fp), 0);
}

/* Run a shell command; its standard output, or NULL when it failed. */
static char *run(const char *fmt, ...) CORREO_PRINTF(1, 2);
static char *run(const char *fmt, ...)
{
    struct buf out = BUF_INIT;
    va_list ap;
    char *cmd;
    FILE *p;
    char chunk[4096];
    size_t n;

    va_start(ap, fmt);
    cmd = xvasprintf(fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(buf_append(&out, chunk, n), 0);
    free(cmd);
    if (pclose(p) != 0) {
        buf_free(&out);
        return NULL;
    }
    return buf_steal(&out, NULL);
}

static void nm_new(void)
{
    char *o = run("notmuch new --quiet 2>&1");

    assert_non_null(o);
    free(o);
}

static int setup_sync(void **state, bool sync)
{
    struct fx *f = XNEW(struct fx);
    char *o;

    f->tmp = tu_tmpdir("nm");
    f->mail = xasprintf("%s/mail", f->tmp);
    f->cfg = xasprintf("%s/notmuch-config", f->tmp);
    o = run("'%s' '%s/tests/tools/gen-corpus.py' '%s' --count 60 --seed 11 --folders 2",
            getenv("PYTHON"), getenv("CORREO_SRCDIR"), f->mail);
    assert_non_null(o);
    free(o);
    write_cfg(f, sync);
    setenv("NOTMUCH_CONFIG", f->cfg, 1);
    nm_new();
    *state = f;
    return 0;
}

static int setup(void **state)
{
    if (!have_tools())
        return 0;
    return setup_sync(state, true);
}

static int setup_nosync(void **state)
{
    if (!have_tools())
        return 0;
    return setup_sync(state, false);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f == NULL)
        return 0;
    tu_rm_rf(f->tmp);
    unsetenv("NOTMUCH_CONFIG");
    free(f->tmp);
    free(f->mail);
    free(f->cfg);
    free(f);
    return 0;
}

#define NEED_FX(f)                  \
    do {                            \
        if ((f) == NULL)            \
            skip();                 \
    } while (0)

static struct mailbox *open_q(const char *query, unsigned flags)
{
    struct mailbox *mb = NULL;
    char *url = xasprintf("notmuch://?query=%s", query);
    struct err e;

    if (mailbox_open(url, flags, &mb, &e) != 0)
        fail_msg("open %s: %s", url, e.text);
    if (mailbox_load(mb, NULL, NULL, &e) != 0)
        fail_msg("load %s: %s", url, e.text);
    free(url);
    return mb;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lines of s, sorted (s is modified); *n gets the count. */
static char **lines_sorted(char *s, size_t *n)
{
    char **v = NULL;
    size_t k = 0;

    for (char *save = NULL, *l = strtok_r(s, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        v = xreallocarray(v, k + 1, sizeof *v);
        v[k++] = l;
    }
    if (k > 0)
        qsort(v, k, sizeof *v, cmp_str);
    *n = k;
    return v;
}

/* The records of mb whose tags contain tag (NULL: all), compared with
 * `notmuch search --output=files --duplicate=1 QUERY`. */
static void assert_same_files(struct mailbox *mb, const char *tag, const char *query)
{
    char *out = run("notmuch search --output=files --duplicate=1 '%s'", query);
    char **want, **have = NULL;
    size_t n_want, n_have = 0;

    assert_non_null(out);
    want = lines_sorted(out, &n_want);
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);
        char *t = xasprintf(" %s ", store_str(&mb->store, m->tags));
        char *needle = tag != NULL ? xasprintf(" %s ", tag) : NULL;

        if (m->bits & STORE_B_GONE) {
            free(t);
            free(needle);
            continue;
        }
        if (needle == NULL || strstr(t, needle) != NULL) {
            have = xreallocarray(have, n_have + 1, sizeof *have);
            have[n_have++] = (char *)(uintptr_t)store_str(&mb->store, m->name);
        }
        free(t);
        free(needle);
    }
    if (n_have > 0)
        qsort(have, n_have, sizeof *have, cmp_str);
    if (n_have != n_want)
        fail_msg("%s: %zu records, notmuch lists %zu files", query, n_have, n_want);
    for (size_t i = 0; i < n_want; i++)
        assert_string_equal(have[i], want[i]);
    free(want);
    free(have);
    free(out);
}

static uint32_t find_path(struct mailbox *mb, const char *needle)
{
    for (uint32_t i = 0; i < store_count(&mb->store); i++)
        if (strstr(store_str(&mb->store, store_get(&mb->store, i)->name), needle) != NULL)
            return i;
    return STORE_NONE;
}

static char *name_of(struct mailbox *mb, uint32_t i)
{
    return xstrdup(store_str(&mb->store, store_get(&mb->store, i)->name));
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* ---- URLs ------------------------------------------------------------------- */

static void test_urls(void **state)
{
    static const struct {
        const char *url;
        int rc;
        enum err_code code;
        long count;       /* -1: not checked */
    } cases[] = {
        {"notmuch://", -1, ERR_INVAL, -1},
        {"notmuch://?query=", -1, ERR_INVAL, -1},
        {"notmuch://?query=*&colour=red", -1, ERR_INVAL, -1},
        {"notmuch://?query=tag%3", -1, ERR_INVAL, -1},
        {"notmuch://?query=tag%00x", -1, ERR_INVAL, -1},
        {"notmuch://?query=*&type=threads", -1, ERR_UNSUPPORTED, -1},
        {"notmuch://?query=*&limit=x", -1, ERR_INVAL, -1},
        {"notmuch:///nonexistent/correo-db?query=*", -1, ERR_IO, -1},
        {"notmuch://?query=*", 0, ERR_OK, 60},
        {"notmuch://?query=*&limit=7", 0, ERR_OK, 7},
        {"notmuch://?type=messages&query=%2A", 0, ERR_OK, 60},
        {"notmuch://?query=tag:no-such-tag", 0, ERR_OK, 0},
    };
    struct fx *f = *state;

    NEED_FX(f);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct mailbox *mb = NULL;
        struct err e;
        int rc = mailbox_open(cases[i].url, 0, &mb, &e);

        if (rc == 0 && cases[i].count >= 0)
            rc = mailbox_load(mb, NULL, NULL, &e);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].url, rc, rc != 0 ? e.text : "");
        if (rc != 0)
            assert_int_equal(e.code, cases[i].code);
        else if (cases[i].count >= 0)
            assert_int_equal(store_count(&mb->store), cases[i].count);
        mailbox_close(mb);
    }
    /* An explicit database path needs no configuration file. */
    {
        char *url = xasprintf("notmuch://%s?query=*", f->mail);
        struct mailbox *mb = NULL;
        struct err e;

        setenv("NOTMUCH_CONFIG", "/nonexistent/notmuch-config", 1);
        assert_int_equal(mailbox_open(url, 0, &mb, &e), 0);
        assert_int_equal(mailbox_load(mb, NULL, NULL, &e), 0);
        assert_int_equal(store_count(&mb->store), 60);
        setenv("NOTMUCH_CONFIG", f->cfg, 1);
        mailbox_close(mb);
        free(url);
    }
}

/* ---- queries against notmuch search ------------------------------------------ */

static void test_queries_match_search(void **state)
{
    static const char *const queries[] = {
        "*", "tag:unread", "tag:flagged", "tag:replied", "folder:.Lists.dev",
        "tag:inbox and from:example.com", "not tag:unread", "subject:re",
    };
    struct fx *f = *state;

    NEED_FX(f);
    for (size_t i = 0; i < ARRAY_LEN(queries); i++) {
        struct mailbox *mb = open_q(queries[i], 0);

        assert_same_files(mb, NULL, queries[i]);
        mailbox_close(mb);
    }
}

static void test_tags_and_flags(void **state)
{
    static const char *const tags[] = {"inbox", "unread", "flagged", "replied", "passed"};
    struct fx *f = *state;
    struct mailbox *mb;
    size_t n_subject = 0;

    NEED_FX(f);
    mb = open_q("*", 0);
    assert_int_equal(store_count(&mb->store), 60);
    for (size_t i = 0; i < ARRAY_LEN(tags); i++) {
        char *q = xasprintf("tag:%s", tags[i]);

        assert_same_files(mb, tags[i], q);
        free(q);
    }
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);
        char *t = xasprintf(" %s ", store_str(&mb->store, m->tags));
        const char *name = store_str(&mb->store, m->name);

        assert_int_equal(!(m->flags & MSG_SEEN), strstr(t, " unread ") != NULL);
        assert_int_equal(!!(m->flags & MSG_FLAGGED), strstr(t, " flagged ") != NULL);
        assert_int_equal(!!(m->flags & MSG_REPLIED), strstr(t, " replied ") != NULL);
        assert_int_equal(!!(m->flags & MSG_NEW), strstr(name, "/new/") != NULL);
        assert_true(m->size > 0);
        n_subject += store_str(&mb->store, m->subject)[0] != '\0';
        free(t);
    }
    /* Headers come from the files: (nearly) every message has a subject. */
    assert_true(n_subject >= 50);
    mailbox_close(mb);
}

/* ---- changes ------------------------------------------------------------------ */

static void test_modify_tags(void **state)
{
    static const struct {
        const char *changes;
        enum err_code code;
    } bad[] = {
        {"", ERR_INVAL}, {"   ", ERR_INVAL}, {"+", ERR_INVAL}, {"-", ERR_INVAL},
        {"+ok +", ERR_INVAL},
    };
    struct fx *f = *state;
    struct mailbox *mb;
    char *name, *out, *longtag;
    struct err e;

    NEED_FX(f);
    mb = open_q("tag:inbox", 0);
    assert_true(store_count(&mb->store) > 0);
    name = name_of(mb, 0);
    assert_int_equal(mailbox_modify_tags(mb, 0, "+blue -inbox  green", &e), 0);
    out = run("notmuch search --output=files --duplicate=1 'tag:blue and tag:green'");
    assert_non_null(out);
    {
        char *want = xasprintf("%s\n", store_str(&mb->store, store_get(&mb->store, 0)->name));

        assert_string_equal(out, want);
        free(want);
    }
    free(out);
    out = run("notmuch count 'tag:inbox and tag:blue'");
    assert_string_equal(out, "0\n");
    free(out);
    {
        char *t = xasprintf(" %s ", store_str(&mb->store, store_get(&mb->store, 0)->tags));

        assert_non_null(strstr(t, " blue "));
        assert_non_null(strstr(t, " green "));
        assert_null(strstr(t, " inbox "));
        free(t);
    }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(mailbox_modify_tags(mb, 0, bad[i].changes, &e), -1);
        assert_int_equal(e.code, bad[i].code);
    }
    longtag = xmalloc(260);
    longtag[0] = '+';
    memset(longtag + 1, 'x', 258);
    longtag[259] = '\0';
    assert_int_equal(mailbox_modify_tags(mb, 0, longtag, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    out = run("notmuch count tag:ok");
    assert_string_equal(out, "0\n");   /* a bad change set changes nothing */
    free(out);
    free(longtag);
    free(name);
    mailbox_close(mb);

    /* A Maildir folder has no labels. */
    {
        char *inbox = xasprintf("%s", f->mail);

        assert_int_equal(mailbox_open(inbox, MAILBOX_NO_HCACHE, &mb, &e), 0);
        assert_false(mailbox_has_tags(mb));
        assert_int_equal(mailbox_load(mb, NULL, NULL, &e), 0);
        assert_int_equal(mailbox_modify_tags(mb, 0, "+x", &e), -1);
        assert_int_equal(e.code, ERR_UNSUPPORTED);
        mailbox_close(mb);
        free(inbox);
    }
}

/* Flag changes with maildir.synchronize_flags: tags and file names. */
static void test_set_flags_sync(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    uint32_t i;
    char *old, *now, *out;
    unsigned fl;
    struct err e;

    NEED_FX(f);
    mb = open_q("tag:unread", 0);
    i = find_path(mb, "/new/");
    assert_int_not_equal(i, STORE_NONE);
    old = name_of(mb, i);
    fl = store_get(&mb->store, i)->flags;
    assert_true(fl & MSG_NEW);
    assert_int_equal(mb->ops->set_flags(mb, i, (fl | MSG_SEEN | MSG_FLAGGED) & ~MSG_NEW, &e), 0);
    now = name_of(mb, i);
    assert_false(exists(old));
    assert_true(exists(now));
    assert_non_null(strstr(now, "/cur/"));
    assert_non_null(strstr(now, ":2,FS"));
    fl = store_get(&mb->store, i)->flags;
    assert_true((fl & MSG_SEEN) && (fl & MSG_FLAGGED) && !(fl & MSG_NEW));
    out = run("notmuch search --output=files 'tag:flagged and not tag:unread'");
    assert_non_null(out);
    assert_non_null(strstr(out, now));
    free(out);
    /* Session bits change only the record. */
    assert_int_equal(mb->ops->set_flags(mb, i, fl | MSG_TAGGED, &e), 0);
    assert_true(store_get(&mb->store, i)->flags & MSG_TAGGED);
    free(now);
    now = name_of(mb, i);
    assert_true(exists(now));
    /* And back: unread again, no longer flagged. */
    assert_int_equal(mb->ops->set_flags(mb, i, fl & ~(MSG_SEEN | MSG_FLAGGED), &e), 0);
    free(now);
    now = name_of(mb, i);
    assert_true(exists(now));
    assert_non_null(strstr(now, ":2,"));
    assert_null(strchr(strstr(now, ":2,"), 'S'));
    assert_null(strchr(strstr(now, ":2,"), 'F'));
    assert_false(store_get(&mb->store, i)->flags & MSG_FLAGGED);
    out = run("notmuch search --output=files 'tag:unread and not tag:flagged'");
    assert_non_null(out);
    assert_non_null(strstr(out, now));
    free(out);
    /* T has no tag. */
    assert_int_equal(mb->ops->set_flags(mb, i, store_get(&mb->store, i)->flags | MSG_TRASHED, &e),
                     -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    free(old);
    free(now);
    mailbox_close(mb);
}

/* Without synchronization only the tags change. */
static void test_set_flags_nosync(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    uint32_t i;
    char *old, *out, *q;
    struct err e;

    NEED_FX(f);
    mb = open_q("tag:unread", 0);
    i = find_path(mb, "/new/");
    assert_int_not_equal(i, STORE_NONE);
    old = name_of(mb, i);
    assert_int_equal(
        mb->ops->set_flags(mb, i, (store_get(&mb->store, i)->flags | MSG_SEEN) & ~MSG_NEW, &e), 0);
    assert_string_equal(store_str(&mb->store, store_get(&mb->store, i)->name), old);
    assert_true(exists(old));
    assert_true(store_get(&mb->store, i)->flags & MSG_SEEN);
    q = strrchr(old, '/') + 1;
    out = run("notmuch search --output=files 'not tag:unread' | grep -c -F '%s'", q);
    assert_non_null(out);
    assert_string_equal(out, "1\n");
    free(out);
    free(old);
    mailbox_close(mb);
}

/* Another program renames a file (S added): read follows it at once, and
 * after `notmuch new` check shows the tag change. */
static void test_rename_by_others(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    struct buf a = BUF_INIT, b = BUF_INIT;
    uint32_t i;
    char *old, *renamed, *slash;
    bool changed = false;
    struct err e;
    int fd;

    NEED_FX(f);
    mb = open_q("*", 0);
    i = STORE_NONE;
    for (uint32_t k = 0; k < store_count(&mb->store) && i == STORE_NONE; k++)
        if (strstr(store_str(&mb->store, store_get(&mb->store, k)->name), ":2,") != NULL &&
            !(store_get(&mb->store, k)->flags & MSG_SEEN))
            i = k;
    assert_int_not_equal(i, STORE_NONE);
    old = name_of(mb, i);
    assert_non_null(strstr(old, ":2,"));
    fd = open(old, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(buf_read_all(&a, fd), 0);
    close(fd);
    /* ":2,<flags>" plus S, flags kept in ASCII order. */
    {
        unsigned md = 0;

        slash = strrchr(old, '/');
        assert_int_equal(maildir_info_parse(slash + 1, &md, NULL, NULL), MAILDIR_INFO_V2);
        renamed = maildir_filename_with_flags(slash + 1, md | MAILDIR_F_SEEN, NULL);
        {
            char *full = xasprintf("%.*s/%s", (int)(slash - old), old, renamed);

            free(renamed);
            renamed = full;
        }
    }
    assert_int_equal(rename(old, renamed), 0);
    assert_int_equal(mb->ops->read_message(mb, i, &b, &e), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_string_equal(store_str(&mb->store, store_get(&mb->store, i)->name), renamed);
    nm_new();
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_true(changed);
    assert_true(store_get(&mb->store, i)->flags & MSG_SEEN);
    assert_null(strstr(store_str(&mb->store, store_get(&mb->store, i)->tags), "unread"));
    /* Nothing changed since: check says so. */
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_false(changed);
    buf_free(&a);
    buf_free(&b);
    free(old);
    free(renamed);
    mailbox_close(mb);
}

/* check: tags changed by `notmuch tag`, messages leaving and joining the
 * query. */
static void test_check_changes(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    bool changed = false;
    char *out;
    uint32_t n;
    struct err e;

    NEED_FX(f);
    mb = open_q("tag:inbox", 0);
    n = store_count(&mb->store);
    assert_true(n > 2);
    out = run("notmuch search --output=messages --duplicate=1 'tag:inbox' | head -n 1");
    assert_non_null(out);
    out[strcspn(out, "\n")] = '\0';
    free(run("notmuch tag +yellow -- '%s'", out));
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_true(changed);
    {
        bool any = false;

        for (uint32_t i = 0; i < store_count(&mb->store); i++)
            any |= strstr(store_str(&mb->store, store_get(&mb->store, i)->tags), "yellow") != NULL;
        assert_true(any);
    }
    /* Taking a message out of the query marks its record gone. */
    free(run("notmuch tag -inbox -- 'tag:yellow'"));
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_true(changed);
    {
        size_t gone = 0;

        for (uint32_t i = 0; i < store_count(&mb->store); i++)
            gone += (store_get(&mb->store, i)->bits & STORE_B_GONE) != 0;
        assert_int_equal(gone, 1);
    }
    store_compact(&mb->store, NULL);
    assert_int_equal(store_count(&mb->store), n - 1);
    /* Back in: appended. */
    free(run("notmuch tag +inbox -- 'tag:yellow'"));
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_true(changed);
    assert_int_equal(store_count(&mb->store), n);
    assert_non_null(strstr(store_str(&mb->store, store_get(&mb->store, n - 1)->tags), "yellow"));
    /* Excluded tags stay out, as in notmuch search. */
    free(run("notmuch tag +deleted -- 'tag:yellow'"));
    assert_int_equal(mb->ops->check(mb, &changed, &e), 0);
    assert_true(changed);
    assert_same_files(mb, NULL, "tag:inbox");
    free(out);
    mailbox_close(mb);
}

static void test_delete_and_copy(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    char *victim, *dest, *out;
    struct maildir_scan *scan;
    struct maildir_folder *df;
    struct err e;

    NEED_FX(f);
    dest = xasprintf("%s/dest", f->tmp);
    assert_int_equal(mkdir(dest, 0700), 0);
    free(run("mkdir -p '%s/cur' '%s/new' '%s/tmp'", dest, dest, dest));
    mb = open_q("*", 0);
    assert_int_equal(mb->ops->copy(mb, 0, dest, false, &e), 0);
    assert_int_equal(mb->ops->copy(mb, 1, dest, true, &e), 0);
    assert_true(store_get(&mb->store, 1)->bits & STORE_B_GONE);
    victim = name_of(mb, 2);
    store_get_mut(&mb->store, 2)->flags |= MSG_DELETED;
    assert_int_equal(mb->ops->sync(mb, NULL, &e), 0);
    assert_false(exists(victim));
    assert_true(store_get(&mb->store, 2)->bits & STORE_B_GONE);
    out = run("notmuch count '*'");
    assert_string_equal(out, "58\n");
    free(out);
    assert_int_equal(maildir_folder_open_path(dest, &df, &e), 0);
    assert_int_equal(maildir_scan(df, 0, &scan, &e), 0);
    assert_int_equal(scan->n, 2);
    free(scan);
    maildir_folder_close(df);
    /* Appending to a query is refused. */
    assert_int_equal(mb->ops->append(mb, "a: b\n\nc\n", 8, 0, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    free(victim);
    free(dest);
    mailbox_close(mb);
}

static void test_readonly(void **state)
{
    struct fx *f = *state;
    struct mailbox *mb;
    struct err e;
    char *out;

    NEED_FX(f);
    mb = open_q("tag:unread", MAILBOX_READONLY);
    assert_int_equal(mailbox_modify_tags(mb, 0, "+red", &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(mb->ops->set_flags(mb, 0, store_get(&mb->store, 0)->flags | MSG_SEEN, &e),
                     -1);
    assert_int_equal(mb->ops->set_flags(mb, 0, store_get(&mb->store, 0)->flags | MSG_TAGGED, &e),
                     0);
    out = run("notmuch count tag:red");
    assert_string_equal(out, "0\n");
    free(out);
    mailbox_close(mb);
}

/* The store side of labels. */
static void test_store_tags(void **state)
{
    struct store st;
    struct store_new in;
    uint32_t a, b;
    struct err e;

    (void)state;
    store_init(&st);
    memset(&in, 0, sizeof in);
    in.name.p = "one";
    in.name.n = 3;
    in.tags.p = "inbox unread";
    in.tags.n = 12;
    assert_int_equal(store_add(&st, &in, &a, &e), 0);
    in.name.p = "two";
    assert_int_equal(store_add(&st, &in, &b, &e), 0);
    assert_string_equal(store_str(&st, store_get(&st, a)->tags), "inbox unread");
    /* Interned: equal tag strings are stored once. */
    assert_int_equal(store_get(&st, a)->tags, store_get(&st, b)->tags);
    assert_int_equal(store_set_tags(&st, b, "x", 1, &e), 0);
    assert_string_equal(store_str(&st, store_get(&st, b)->tags), "x");
    assert_int_equal(store_set_tags(&st, b, NULL, 0, &e), 0);
    assert_string_equal(store_str(&st, store_get(&st, b)->tags), "");
    st.arena_max = st.arena_len + 2;
    assert_int_equal(store_set_tags(&st, a, "longer", 6, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(store_str(&st, store_get(&st, a)->tags), "inbox unread");
    assert_int_equal(sizeof(struct store_msg), 72);
    store_free(&st);
}

/* virtual-mailboxes LABEL URL...: named mailboxes that open as folders. */
static void test_virtual_mailboxes(void **state)
{
    struct fx *f = *state;
    char *rc;
    FILE *fp;
    struct config *cfg;
    struct err e;

    NEED_FX(f);
    rc = xasprintf("%s/correorc", f->tmp);
    fp = fopen(rc, "w");
    assert_non_null(fp);
    fputs("virtual-mailboxes \"Inbox\" \"notmuch://?query=tag:inbox\" "
          "\"Unread\" \"notmuch://?query=tag:unread and tag:inbox\"\n"
          "virtual-mailboxes \"odd\"\n"
          "virtual-mailboxes Gone notmuch://?query=tag:x\n"
          "unvirtual-mailboxes notmuch://?query=tag:x\n", fp);
    assert_int_equal(fclose(fp), 0);
    cfg = config_new();
    assert_int_equal(config_load(cfg, rc, 0, &e), 0);
    {
        size_t odd = 0;

        for (size_t i = 0; i < cfg->diag.n; i++)
            odd += strstr(cfg->diag.msgs[i], "virtual-mailboxes: expects LABEL PATH") != NULL;
        assert_int_equal(odd, 1);
    }
    assert_int_equal(cfg->n_mailboxes, 2);
    assert_string_equal(cfg->mailboxes[0].label, "Inbox");
    assert_string_equal(cfg->mailboxes[1].label, "Unread");
    for (size_t i = 0; i < cfg->n_mailboxes; i++) {
        struct mailbox *mb = NULL;

        assert_int_equal(mailbox_open(cfg->mailboxes[i].path, 0, &mb, &e), 0);
        assert_int_equal(mailbox_load(mb, NULL, NULL, &e), 0);
        assert_true(store_count(&mb->store) > 0);
        assert_true(mailbox_has_tags(mb));
        mailbox_close(mb);
    }
    config_free(cfg);
    free(rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_tags),
        cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queries_match_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modify_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_flags_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_flags_nosync, setup_nosync, teardown),
        cmocka_unit_test_setup_teardown(test_rename_by_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_virtual_mailboxes, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
