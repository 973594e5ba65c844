/* Tests for lib/uidlist: dovecot-uidlist parsing and writing byte for byte,
 * Dovecot's order of new UIDs, sync (adds, drops, renames keep UIDs), bad
 * files and rebuilds, the lock (contention, waiting, stale locks, refresh,
 * takeover), failures and crashes at every write step, other writers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "testutil.h"
#include "uidlist.h"

/* ---- helpers ------------------------------------------------------------ */

struct fx {
    char *dir;                  /* the folder: cur/ new/ tmp/ */
    struct maildir_folder *f;
};

static void mkdir_ok(const char *path)
{
    assert_int_equal(mkdir(path, 0700), 0);
}

static void fx_init(struct fx *x)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    char *p;

    x->dir = tu_tmpdir("uidlist");
    for (int i = 0; i < 3; i++) {
        p = xasprintf("%s/%s", x->dir, subs[i]);
        mkdir_ok(p);
        free(p);
    }
    assert_int_equal(maildir_folder_open_path(x->dir, &x->f, NULL), 0);
}

static void fx_done(struct fx *x)
{
    maildir_folder_close(x->f);
    tu_rm_rf(x->dir);
    free(x->dir);
}

static char *pathf(const struct fx *x, const char *fmt, ...) CORREO_PRINTF(2, 3);
static char *pathf(const struct fx *x, const char *fmt, ...)
{
    va_list ap;
    char *rel, *p;

    va_start(ap, fmt);
    rel = xvasprintf(fmt, ap);
    va_end(ap);
    p = xasprintf("%s/%s", x->dir, rel);
    free(rel);
    return p;
}

static void write_path(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* A message file in new/ or cur/. */
static void put(const struct fx *x, const char *sub, const char *name)
{
    char *p = pathf(x, "%s/%s", sub, name);

    write_path(p, "Subject: x\n\nbody\n", 17);
    free(p);
}

static void del(const struct fx *x, const char *sub, const char *name)
{
    char *p = pathf(x, "%s/%s", sub, name);

    assert_int_equal(unlink(p), 0);
    free(p);
}

static void mv(const struct fx *x, const char *from, const char *to)
{
    char *a = pathf(x, "%s", from), *b = pathf(x, "%s", to);

    assert_int_equal(rename(a, b), 0);
    free(a);
    free(b);
}

static void write_list(const struct fx *x, const char *data, size_t len)
{
    char *p = pathf(x, UIDLIST_FILE);

    write_path(p, data, len);
    free(p);
}

/* The uidlist file, or NULL. */
static char *read_list(const struct fx *x)
{
    char *p = pathf(x, UIDLIST_FILE);
    struct stat st;
    char *data;
    int fd = open(p, O_RDONLY);

    free(p);
    if (fd < 0) {
        assert_int_equal(errno, ENOENT);
        return NULL;
    }
    assert_int_equal(fstat(fd, &st), 0);
    data = xmalloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, data, (size_t)st.st_size), st.st_size);
    data[st.st_size] = '\0';
    close(fd);
    return data;
}

static bool lock_exists(const struct fx *x)
{
    char *p = pathf(x, UIDLIST_LOCK_FILE);
    struct stat st;
    bool ok = lstat(p, &st) == 0;

    free(p);
    return ok;
}

/* Make the lock file (someone else's), its mtime age seconds ago. */
static void make_lock(const struct fx *x, int age)
{
    char *p = pathf(x, UIDLIST_LOCK_FILE);
    struct timespec ts[2];

    write_path(p, "3 V1 N1\n", 8);
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(p);
}

static time_t lock_mtime(const struct fx *x)
{
    char *p = pathf(x, UIDLIST_LOCK_FILE);
    struct stat st;

    assert_int_equal(stat(p, &st), 0);
    free(p);
    return st.st_mtime;
}

static const struct uidlist_opts fast_opts = {50, 120};

static struct uidlist *open_ok(const struct fx *x)
{
    struct uidlist *ul = NULL;
    struct err e;

    err_clear(&e);
    if (uidlist_open(x->dir, &fast_opts, &ul, &e) != 0)
        fail_msg("uidlist_open: %s", e.text);
    return ul;
}

static void sync_ok(struct uidlist *ul, const struct fx *x, unsigned flags,
                    struct uidlist_sync_result *res)
{
    struct err e;

    err_clear(&e);
    if (uidlist_sync(ul, x->f, flags, res, &e) != 0)
        fail_msg("uidlist_sync: %s", e.text);
}

static uint32_t uid_of(const struct uidlist *ul, const char *name)
{
    const struct uidlist_rec *r = uidlist_by_name(ul, name);

    return r != NULL ? r->uid : 0;
}

/* ---- Dovecot's order ----------------------------------------------------- */

/* The order Dovecot 2.3 gave these names (all new in one sync), from a run
 * of the real server; the test shuffles them first. */
static const char *const dovecot_order[] = {
    "abc", "abd",
    "1700000010.M5P1.h", "1700000010",
    "1700000020.M5P1.h", "1700000020.M10P1.h",
    "1700000030.M5P1.a", "1700000030.M5P1.b",
    "1700000040.M3P1.h", "1700000040.P5.h",
    "1700000050.M1P1", "1700000050_x",
    "1700000060.M1P1.h:2,S", "1700000060.M9P1.h",
    "1700000070.M1P1.y", "1700000070.M1P1.z:2,S",
    "1700000080.M4P1.h", "1700000080.M00005P1.h",
    "1700000090.M5P1.h", "1700000090.M5P1.hh",
};

static void name_cmp_cases(void **state)
{
    static const struct {
        const char *a, *b;
        int sign;
    } cases[] = {
        {"1700000001.M81821P102.host2", "1700000001", -1},
        {"1600000000.M5P1.x,S=30:2,S", "1700000000.M1P1.x", -1},
        {"zzz-weird", "1600000000.M5P1.x", -1},
        {"1700000020.M5P1.h", "1700000020.M10P1.h", -1},
        {"1700000080.M4P1.h", "1700000080.M00005P1.h", -1},
        {"1700000040.P5.h", "1700000040.M3P1.h", 1},
        {"1700000010:2,S", "1700000010", 0},
        {"99999999999999999999999.x", "1.x", 1},
        {"same", "same", 0},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int c = uidlist_name_cmp(cases[i].a, cases[i].b);
        int r = uidlist_name_cmp(cases[i].b, cases[i].a);
        int s = c < 0 ? -1 : c > 0;

        if (cases[i].sign == 0 && strcmp(cases[i].a, cases[i].b) != 0) {
            /* Same base: only the final tie-break tells them apart. */
            assert_true(c != 0 && r == -c);
            continue;
        }
        if (s != cases[i].sign)
            fail_msg("case %zu: cmp(%s, %s) = %d", i, cases[i].a, cases[i].b, c);
        assert_int_equal(r < 0 ? -1 : r > 0, -cases[i].sign);
    }
}

static void sync_assigns_in_dovecot_order(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    size_t n = ARRAY_LEN(dovecot_order);
    size_t perm[ARRAY_LEN(dovecot_order)];

    (void)state;
    fx_init(&x);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    srand(7);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), t = perm[i];

        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = dovecot_order[perm[i]];

        put(&x, strchr(name, ':') != NULL ? "cur" : "new", name);
    }
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_int_equal(res.added, n);
    assert_int_equal(uidlist_count(ul), n);
    for (size_t i = 0; i < n; i++) {
        const struct uidlist_rec *r = uidlist_by_uid(ul, (uint32_t)i + 1);

        assert_non_null(r);
        assert_string_equal(r->file, dovecot_order[i]);
        assert_true(r->found);
        /* Listed by base name, as Dovecot 2.3 writes new records. */
        assert_null(strchr(r->listed, ':'));
    }
    assert_int_equal(ul->next_uid, n + 1);
    uidlist_free(ul);
    fx_done(&x);
}

/* ---- reading and writing ------------------------------------------------- */

static void roundtrip_byte_for_byte(void **state)
{
    static const char text[] =
        "3 V1795457533 N27 G5bda3626fd81046beb2e000083ecc375 X9 Zsome-thing\n"
        "1 :zzz-weird\n"
        "2 W31 :1600000000.M5P1.x,S=30\n"
        "7 W2481 S2400 Pabc:def :1700000000.M336951P104.host4\n"
        "26 :1700000005.M980401P100.host0:2,S\n";
    struct fx x;
    struct uidlist *ul, *again;
    struct uidlist_sync_result res;
    const struct uidlist_rec *r;
    const char *v;
    size_t len;
    char *back;

    (void)state;
    fx_init(&x);
    put(&x, "new", "zzz-weird");
    put(&x, "cur", "1600000000.M5P1.x,S=30:2,S");
    put(&x, "new", "1700000000.M336951P104.host4");
    put(&x, "cur", "1700000005.M980401P100.host0:2,S");
    write_list(&x, text, strlen(text));
    ul = open_ok(&x);
    assert_int_equal(ul->uidvalidity, 1795457533u);
    assert_int_equal(ul->next_uid, 27);
    assert_string_equal(ul->hdr_fields, "G5bda3626fd81046beb2e000083ecc375 X9 Zsome-thing");
    assert_int_equal(uidlist_count(ul), 4);
    assert_int_equal(uidlist_highest_uid(ul), 26);
    r = uidlist_by_uid(ul, 7);
    assert_non_null(r);
    assert_string_equal(r->fields, "W2481 S2400 Pabc:def");
    v = uidlist_rec_field(r, 'S', &len);
    assert_non_null(v);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "2400", 4);
    v = uidlist_rec_field(r, 'P', &len);
    assert_non_null(v);
    assert_int_equal(len, 7);
    assert_memory_equal(v, "abc:def", 7);
    assert_null(uidlist_rec_field(r, 'G', NULL));
    assert_null(uidlist_by_uid(ul, 3));
    assert_null(uidlist_by_uid(ul, 0));
    assert_null(uidlist_by_uid(ul, 27));
    assert_int_equal(uid_of(ul, "1600000000.M5P1.x,S=30:2,S"), 2);
    assert_int_equal(uid_of(ul, "1600000000.M5P1.x,S=30"), 2);
    assert_int_equal(uid_of(ul, "1600000000.M5P1.x,S=3"), 0);
    assert_int_equal(uid_of(ul, "1700000005.M980401P100.host0"), 26);

    /* Nothing changed: no write. */
    sync_ok(ul, &x, 0, &res);
    assert_false(res.written);
    assert_int_equal(res.added + res.expunged, 0);
    assert_true(uidlist_by_uid(ul, 2)->found);
    assert_int_equal(uidlist_by_uid(ul, 2)->sub, MAILDIR_SUB_CUR);
    assert_string_equal(uidlist_by_uid(ul, 2)->file, "1600000000.M5P1.x,S=30:2,S");
    assert_int_equal(uidlist_by_uid(ul, 7)->sub, MAILDIR_SUB_NEW);

    /* Forced: the same bytes, by a rename (new inode). */
    sync_ok(ul, &x, UIDLIST_SYNC_WRITE, &res);
    assert_true(res.written);
    back = read_list(&x);
    assert_string_equal(back, text);
    free(back);
    assert_false(lock_exists(&x));

    again = open_ok(&x);
    assert_int_equal(again->n, ul->n);
    for (size_t i = 0; i < ul->n; i++) {
        assert_int_equal(again->v[i].uid, ul->v[i].uid);
        assert_string_equal(again->v[i].listed, ul->v[i].listed);
        assert_string_equal(again->v[i].fields, ul->v[i].fields);
    }
    uidlist_free(again);
    uidlist_free(ul);
    fx_done(&x);
}

static void absent_file_new_list(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    time_t t0 = time(NULL);
    char *text, hdr[96];

    (void)state;
    fx_init(&x);
    ul = open_ok(&x);
    assert_true(ul->uidvalidity >= (uint32_t)t0 && ul->uidvalidity <= (uint32_t)time(NULL));
    assert_int_equal(ul->next_uid, 1);
    assert_int_equal(uidlist_count(ul), 0);
    assert_int_equal(uidlist_highest_uid(ul), 0);
    assert_int_equal(strlen(ul->hdr_fields), 33);
    assert_int_equal(ul->hdr_fields[0], 'G');
    assert_int_equal(strspn(ul->hdr_fields + 1, "0123456789abcdef"), 32);
    assert_null(read_list(&x));

    /* An empty folder's list is written so the UIDVALIDITY is kept. */
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    text = read_list(&x);
    assert_non_null(text);
    snprintf(hdr, sizeof(hdr), "3 V%u N1 %s\n", ul->uidvalidity, ul->hdr_fields);
    assert_string_equal(text, hdr);
    free(text);
    sync_ok(ul, &x, 0, &res);
    assert_false(res.written);
    uidlist_free(ul);
    fx_done(&x);
}

static void next_uid_and_partial_lines(void **state)
{
    static const struct {
        const char *text;
        uint32_t next;
        size_t count;
    } cases[] = {
        /* Dovecot appends without touching N: the highest UID counts. */
        {"3 V5 N1 Gx\n1 :a\n2 :b\n3 :c\n", 4, 3},
        {"3 V5 N10\n1 :a\n2 :b\n", 10, 2},
        /* A line being appended is not there yet. */
        {"3 V5 N3\n1 :a\n2 :b\n3 :c", 3, 2},
        {"3 V5 N3\n1 :a\n2 :b\n3", 3, 2},
        /* Empty lines are tolerated. */
        {"3 V5 N3\n1 :a\n\n2 :b\n", 3, 2},
        /* Extra spaces between fields. */
        {"3 V5  N3\n1  W1   :a\n", 3, 1},
        /* Version 1 (Courier). */
        {"1 5 8\n1 a\n2 b:2,S\n", 8, 2},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct fx x;
        struct uidlist *ul;

        fx_init(&x);
        write_list(&x, cases[i].text, strlen(cases[i].text));
        ul = open_ok(&x);
        if (ul->next_uid != cases[i].next || ul->n != cases[i].count)
            fail_msg("case %zu: next %u count %zu", i, ul->next_uid, ul->n);
        assert_int_equal(ul->uidvalidity, 5);
        uidlist_free(ul);
        fx_done(&x);
    }
}

static void version1_is_rewritten_as_version3(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    char *text;

    (void)state;
    fx_init(&x);
    put(&x, "cur", "a:2,S");
    put(&x, "cur", "b:2,");
    put(&x, "new", "c");
    write_list(&x, "1 77 5\n1 a:2,S\n3 b\n", 19);
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_int_equal(res.added, 1);
    text = read_list(&x);
    assert_int_equal(strncmp(text, "3 V77 N6 G", 10), 0);
    assert_non_null(strstr(text, "\n1 :a:2,S\n3 :b\n5 :c\n"));
    free(text);
    assert_int_equal(uid_of(ul, "c"), 5);
    uidlist_free(ul);
    fx_done(&x);
}

/* ---- bad files ----------------------------------------------------------- */

static void corrupt_files_say_what(void **state)
{
    char longline[UIDLIST_LINE_MAX + 64];
    static const struct {
        const char *text;
        size_t len;         /* 0: strlen */
        enum err_code code;
        const char *what;
    } cases[] = {
        {"", 0, ERR_PARSE, "empty file"},
        {"3 V1 N1", 0, ERR_PARSE, "incomplete header"},
        {"2 V1 N1\n", 0, ERR_UNSUPPORTED, "version 2"},
        {"hello\n", 0, ERR_PARSE, "line 1: not a dovecot-uidlist header"},
        {"3 N5\n", 0, ERR_PARSE, "no UIDVALIDITY"},
        {"3 V5\n", 0, ERR_PARSE, "no next UID"},
        {"3 V0 N1\n", 0, ERR_PARSE, "bad UIDVALIDITY"},
        {"3 V4294967296 N1\n", 0, ERR_PARSE, "bad UIDVALIDITY"},
        {"3 V1 V2 N1\n", 0, ERR_PARSE, "V given twice"},
        {"3 V1 Nx\n", 0, ERR_PARSE, "bad next UID"},
        {"3 V1 N1\nx :a\n", 0, ERR_PARSE, "line 2: no UID"},
        {"3 V1 N1\n0 :a\n", 0, ERR_PARSE, "line 2: UID out of range"},
        {"3 V1 N1\n4294967295 :a\n", 0, ERR_PARSE, "UID out of range"},
        {"3 V1 N1\n99999999999 :a\n", 0, ERR_PARSE, "UID out of range"},
        {"3 V1 N1\n1:a\n", 0, ERR_PARSE, "no space after the UID"},
        {"3 V1 N1\n2 :a\n1 :b\n", 0, ERR_PARSE, "line 3: UID 1 after UID 2: not ascending"},
        {"3 V1 N1\n2 :a\n2 :b\n", 0, ERR_PARSE, "not ascending"},
        {"3 V1 N1\n1 :a\n2 :a:2,S\n", 0, ERR_PARSE, "\"a\" listed with UID 1 and UID 2"},
        {"3 V1 N1\n1 :../x\n", 0, ERR_PARSE, "file name with '/'"},
        {"3 V1 N1\n1 :..\n", 0, ERR_PARSE, "\".\" or \"..\""},
        {"3 V1 N1\n1 W5\n", 0, ERR_PARSE, "no ':' before the file name"},
        {"3 V1 N1\n1 :\n", 0, ERR_PARSE, "no file name"},
        {"3 V1 N1\n1 ::2,S\n", 0, ERR_PARSE, "empty base name"},
        {"3 V1 N1\n1 :a\x1b[2Jb\n", 0, ERR_PARSE, "control character"},
        {"3 V1 N1\n1 :a\0b\n", 14, ERR_PARSE, "line 2: NUL byte"},
        {"1 5\n", 0, ERR_PARSE, "version 1 header"},
        {NULL, 0, ERR_LIMIT, "longer than"},
    };

    (void)state;
    memcpy(longline, "3 V1 N1\n1 :", 11);
    memset(longline + 11, 'a', sizeof(longline) - 12);
    longline[sizeof(longline) - 1] = '\n';
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct fx x;
        struct uidlist *ul = NULL;
        struct err e;
        const char *t = cases[i].text != NULL ? cases[i].text : longline;
        size_t len = cases[i].text == NULL ? sizeof(longline)
                     : cases[i].len != 0 ? cases[i].len : strlen(t);

        fx_init(&x);
        write_list(&x, t, len);
        err_clear(&e);
        assert_int_equal(uidlist_open(x.dir, NULL, &ul, &e), -1);
        assert_null(ul);
        if (e.code != cases[i].code || strstr(e.text, cases[i].what) == NULL)
            fail_msg("case %zu: %s: %s", i, err_code_name(e.code), e.text);
        fx_done(&x);
    }
}

static void symlink_and_fifo_refused(void **state)
{
    struct fx x;
    struct uidlist *ul = NULL;
    struct err e;
    char *p, *q;

    (void)state;
    fx_init(&x);
    p = pathf(&x, "elsewhere");
    write_path(p, "3 V1 N2\n1 :a\n", 13);
    q = pathf(&x, UIDLIST_FILE);
    assert_int_equal(symlink(p, q), 0);
    err_clear(&e);
    assert_int_equal(uidlist_open(x.dir, NULL, &ul, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_non_null(strstr(e.text, "symbolic link"));
    /* A FIFO (or anything but a file) is refused without blocking. */
    assert_int_equal(unlink(q), 0);
    assert_int_equal(mkfifo(q, 0600), 0);
    err_clear(&e);
    assert_int_equal(uidlist_open(x.dir, NULL, &ul, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_non_null(strstr(e.text, "not a regular file"));
    free(p);
    free(q);
    fx_done(&x);
}

static void rebuild_gets_new_uidvalidity(void **state)
{
    static const struct {
        const char *text;
        bool future;        /* V far ahead of the clock: old + 1 */
        bool readable_v;
    } cases[] = {
        {"3 V100 N5\n2 :a\n1 :b\n", false, true},
        {"3 V%u N5\nbad\n", true, true},
        {"garbage\n", false, false},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct fx x;
        struct uidlist *ul = NULL;
        struct uidlist_sync_result res;
        struct err e;
        uint32_t old = 99, future = (uint32_t)time(NULL) + 100000;
        char *text = xasprintf(cases[i].text, future), *back;

        fx_init(&x);
        put(&x, "new", "1700000002.M1P1.b");
        put(&x, "cur", "1700000001.M1P1.a:2,S");
        write_list(&x, text, strlen(text));
        err_clear(&e);
        assert_int_equal(uidlist_open(x.dir, &fast_opts, &ul, &e), -1);
        assert_int_equal(e.code, ERR_PARSE);
        assert_int_equal(uidlist_rebuild(x.dir, &fast_opts, &ul, &old, &e), 0);
        if (!cases[i].readable_v)
            assert_int_equal(old, 0);
        else if (cases[i].future)
            assert_int_equal(old, future);
        else
            assert_int_equal(old, 100);
        if (cases[i].future)
            assert_int_equal(ul->uidvalidity, future + 1);
        else
            assert_true(ul->uidvalidity > old && ul->uidvalidity >= (uint32_t)time(NULL) - 5);
        sync_ok(ul, &x, 0, &res);
        assert_true(res.written);
        assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
        assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 2);
        uidlist_free(ul);
        /* The new file reads back. */
        ul = open_ok(&x);
        assert_int_equal(uidlist_count(ul), 2);
        back = read_list(&x);
        assert_null(strstr(back, "bad"));
        free(back);
        uidlist_free(ul);
        free(text);
        fx_done(&x);
    }
}

/* ---- sync ---------------------------------------------------------------- */

/* A file name that cannot be a line of the list gets no UID (a newline in it
 * would forge a record) and does not make every sync write. */
static void unlistable_names_skipped(void **state)
{
    static const char *const bad[] = {
        "1700000002.M1P1.x\n3 :forged", "1700000003\x1b[2J", ":2,S",
    };
    struct fx x;
    struct uidlist *ul, *again;
    struct uidlist_sync_result res;
    char *text;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        put(&x, "new", bad[i]);
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_int_equal(res.added, 1);
    assert_int_equal(uidlist_count(ul), 1);
    text = read_list(&x);
    assert_null(strstr(text, "forged"));
    free(text);
    again = open_ok(&x);
    assert_int_equal(uidlist_count(again), 1);
    uidlist_free(again);
    sync_ok(ul, &x, 0, &res);
    assert_false(res.written);
    uidlist_free(ul);
    fx_done(&x);
}

static void sync_adds_drops_keeps(void **state)
{
    struct fx x;
    struct uidlist *ul, *other;
    struct uidlist_sync_result res;
    char *text;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    put(&x, "new", "1700000002.M1P1.b");
    put(&x, "new", "1700000003.M1P1.c");
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_int_equal(res.added, 3);
    assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 3);

    /* Drop b, add d: b's UID is never given again. */
    del(&x, "new", "1700000002.M1P1.b");
    put(&x, "new", "1700000000.M1P1.d");
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_int_equal(res.added, 1);
    assert_int_equal(res.expunged, 1);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
    assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 0);
    assert_null(uidlist_by_uid(ul, 2));
    assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 3);
    assert_int_equal(uid_of(ul, "1700000000.M1P1.d"), 4);
    assert_int_equal(ul->next_uid, 5);
    text = read_list(&x);
    assert_non_null(strstr(text, " N5 "));
    assert_non_null(strstr(text, "\n1 :1700000001.M1P1.a\n3 :1700000003.M1P1.c\n"
                                 "4 :1700000000.M1P1.d\n"));
    free(text);

    /* Everything gone, then one new file: UIDs go on from 5. */
    del(&x, "new", "1700000001.M1P1.a");
    del(&x, "new", "1700000003.M1P1.c");
    del(&x, "new", "1700000000.M1P1.d");
    sync_ok(ul, &x, 0, &res);
    assert_int_equal(res.expunged, 3);
    assert_int_equal(uidlist_count(ul), 0);
    put(&x, "new", "1700000009.M1P1.e");
    sync_ok(ul, &x, 0, &res);
    assert_int_equal(uid_of(ul, "1700000009.M1P1.e"), 5);

    /* A second reader sees the same. */
    other = open_ok(&x);
    assert_int_equal(uid_of(other, "1700000009.M1P1.e"), 5);
    assert_int_equal(other->next_uid, 6);
    assert_int_equal(other->uidvalidity, ul->uidvalidity);
    uidlist_free(other);
    uidlist_free(ul);
    fx_done(&x);
}

static void renamed_files_keep_uids(void **state)
{
    static const char list[] =
        "3 V9 N3\n1 :1700000001.M1P1.a\n2 :1700000002.M1P1.b,S=17:2,\n";
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    const struct uidlist_rec *r;
    char *text;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    put(&x, "new", "1700000002.M1P1.b,S=17");
    write_list(&x, list, strlen(list));
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_false(res.written);
    assert_true(res.scanned);
    /* Nothing moved since: not even a scan. */
    sync_ok(ul, &x, 0, &res);
    assert_false(res.scanned);
    assert_int_equal(res.added + res.expunged + res.renamed, 0);

    /* new/ -> cur/ with flags, as a client does. */
    mv(&x, "new/1700000001.M1P1.a", "cur/1700000001.M1P1.a:2,S");
    mv(&x, "new/1700000002.M1P1.b,S=17", "cur/1700000002.M1P1.b,S=17:2,RS");
    sync_ok(ul, &x, 0, &res);
    assert_true(res.scanned);
    assert_false(res.written);          /* a rename is not worth a write */
    assert_int_equal(res.renamed, 2);
    assert_int_equal(res.added + res.expunged, 0);
    r = uidlist_by_uid(ul, 1);
    assert_string_equal(r->file, "1700000001.M1P1.a:2,S");
    assert_string_equal(r->listed, "1700000001.M1P1.a");
    assert_int_equal(r->sub, MAILDIR_SUB_CUR);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a:2,S"), 1);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a:2,FS"), 1);
    assert_int_equal(uid_of(ul, "1700000002.M1P1.b,S=17"), 2);

    /* Another rename, and a new file: a write keeps base names as they are
     * and brings a listed full name up to date. */
    mv(&x, "cur/1700000001.M1P1.a:2,S", "cur/1700000001.M1P1.a:2,FS");
    put(&x, "new", "1700000003.M1P1.c");
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_int_equal(res.renamed, 1);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
    assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 3);
    text = read_list(&x);
    assert_non_null(strstr(text, "\n1 :1700000001.M1P1.a\n2 :1700000002.M1P1.b,S=17:2,RS\n"
                                 "3 :1700000003.M1P1.c\n"));
    free(text);
    uidlist_free(ul);
    fx_done(&x);
}

static void appended_records_and_other_writers(void **state)
{
    struct fx x;
    struct uidlist *a, *b;
    struct uidlist_sync_result res;
    bool changed;
    char *p;
    int fd;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    a = open_ok(&x);
    sync_ok(a, &x, 0, NULL);
    sync_ok(a, &x, 0, &res);
    assert_false(res.scanned);
    /* The list changed, the folder did not: that is looked at too. */
    {
        static const char other[] = "3 V1 N9 G00\n8 :1700000001.M1P1.a\n";
        char *tmp = pathf(&x, "t"), *dst = pathf(&x, UIDLIST_FILE);

        write_path(tmp, other, strlen(other));
        assert_int_equal(rename(tmp, dst), 0);
        free(tmp);
        free(dst);
    }
    sync_ok(a, &x, 0, &res);
    assert_true(res.scanned);
    assert_true(res.uidvalidity_changed);
    assert_int_equal(uid_of(a, "1700000001.M1P1.a"), 8);
    assert_true(uidlist_by_uid(a, 8)->found);

    /* Another writer appends a record in place (Dovecot does, under the
     * lock) for a file it delivered. */
    put(&x, "cur", "1700000005.M1P1.z:2,S");
    p = pathf(&x, UIDLIST_FILE);
    fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "9 W20 :1700000005.M1P1.z\n", 25), 25);
    close(fd);
    free(p);
    assert_int_equal(uidlist_refresh(a, &changed, NULL), 0);
    assert_true(changed);
    assert_int_equal(uid_of(a, "1700000005.M1P1.z"), 9);
    assert_int_equal(a->next_uid, 10);
    /* What a scan found is kept across the re-read. */
    assert_true(uidlist_by_uid(a, 8)->found);

    /* A second list object writes; the first picks that up instead of
     * giving the file a UID of its own. */
    b = open_ok(&x);
    put(&x, "new", "1700000006.M1P1.y");
    sync_ok(b, &x, 0, &res);
    assert_int_equal(uid_of(b, "1700000006.M1P1.y"), 10);
    sync_ok(a, &x, 0, &res);
    assert_false(res.written);
    assert_int_equal(res.added, 1);
    assert_int_equal(uid_of(a, "1700000006.M1P1.y"), 10);
    assert_int_equal(uid_of(a, "1700000005.M1P1.z"), 9);
    uidlist_free(b);
    uidlist_free(a);
    fx_done(&x);
}

/* Between our unlocked look and the lock, another writer assigns a UID to
 * the file we are about to add: we must use its UID. */
static struct fx *race_fx;

static int race_hook(enum uidlist_step s)
{
    if (s == UIDLIST_STEP_LOCKED) {
        char *tmp = pathf(race_fx, "other.tmp"), *dst = pathf(race_fx, UIDLIST_FILE);
        static const char text[] =
            "3 V4242 N78 G00\n1 :1700000001.M1P1.a\n77 :1700000002.M1P1.b\n";

        write_path(tmp, text, strlen(text));
        assert_int_equal(rename(tmp, dst), 0);
        free(tmp);
        free(dst);
    }
    return 0;
}

static void reread_under_lock(void **state)
{
    static const char list[] = "3 V4242 N2 G00\n1 :1700000001.M1P1.a\n";
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    write_list(&x, list, strlen(list));
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, NULL);
    put(&x, "new", "1700000002.M1P1.b");
    put(&x, "new", "1700000003.M1P1.c");
    race_fx = &x;
    uidlist_step_hook = race_hook;
    sync_ok(ul, &x, 0, &res);
    uidlist_step_hook = NULL;
    assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 77);
    assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 78);
    assert_false(res.uidvalidity_changed);
    uidlist_free(ul);
    ul = open_ok(&x);
    assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 77);
    assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 78);
    uidlist_free(ul);
    fx_done(&x);
}

static void uidvalidity_change_reported(void **state)
{
    static const char list[] = "3 V10 N2 G00\n1 :1700000001.M1P1.a\n";
    struct fx x;
    struct uidlist *ul, *other = NULL;
    struct uidlist_sync_result res;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    write_list(&x, list, strlen(list));
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, &res);
    assert_false(res.uidvalidity_changed);
    /* Someone rebuilds the list. */
    write_list(&x, "garbage\n", 8);
    assert_int_equal(uidlist_rebuild(x.dir, &fast_opts, &other, NULL, NULL), 0);
    sync_ok(other, &x, 0, NULL);
    assert_int_not_equal(other->uidvalidity, 10);
    sync_ok(ul, &x, 0, &res);
    assert_true(res.uidvalidity_changed);
    assert_int_equal(ul->uidvalidity, other->uidvalidity);
    uidlist_free(other);
    uidlist_free(ul);
    fx_done(&x);
}

/* A file that another program keeps renaming (flag changes) while we sync
 * must keep its UID and never be dropped. */
struct renamer {
    const struct fx *x;
    atomic_bool stop;
    atomic_ulong renames;
};

static void *renamer_main(void *arg)
{
    struct renamer *rn = arg;
    static const char *const names[] = {
        "cur/1700000001.M1P1.a:2,", "cur/1700000001.M1P1.a:2,S", "cur/1700000001.M1P1.a:2,RS",
        "cur/1700000001.M1P1.a:2,FRS",
    };
    char *p[4];

    for (int i = 0; i < 4; i++)
        p[i] = pathf(rn->x, "%s", names[i]);
    for (unsigned long i = 0; !atomic_load(&rn->stop); i++) {
        if (rename(p[i % 4], p[(i + 1) % 4]) != 0)
            abort();
        atomic_fetch_add(&rn->renames, 1);
    }
    for (int i = 0; i < 4; i++)
        free(p[i]);
    return NULL;
}

static void concurrent_renames_keep_uid(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct renamer rn;
    pthread_t th;
    size_t unstable = 0;
    const int rounds = 100;

    (void)state;
    fx_init(&x);
    put(&x, "cur", "1700000001.M1P1.a:2,");
    for (int i = 0; i < 50; i++) {
        char name[64];

        snprintf(name, sizeof(name), "17000001%02d.M1P1.f:2,S", i);
        put(&x, "cur", name);
    }
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, NULL);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
    rn.x = &x;
    atomic_init(&rn.stop, false);
    atomic_init(&rn.renames, 0);
    assert_int_equal(pthread_create(&th, NULL, renamer_main, &rn), 0);
    for (int i = 0; i < rounds; i++) {
        struct uidlist_sync_result res;
        char name[64];

        /* Each round adds a file so that each round writes; every few
         * rounds one of the others goes, which needs a trusted scan. */
        snprintf(name, sizeof(name), "1800000%03d.M1P1.n", i);
        put(&x, "new", name);
        if (i % 10 == 0) {
            snprintf(name, sizeof(name), "17000001%02d.M1P1.f:2,S", i / 10);
            del(&x, "cur", name);
            snprintf(name, sizeof(name), "1800000%03d.M1P1.n", i);
        }
        sync_ok(ul, &x, 0, &res);
        unstable += res.scan_unstable;
        assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
        assert_int_equal(uid_of(ul, name), 52 + i);
    }
    atomic_store(&rn.stop, true);
    pthread_join(th, NULL);
    print_message("  %lu renames meanwhile, %zu of %d scans disturbed\n",
                  atomic_load(&rn.renames), unstable, rounds);
    /* Quiet now: the files deleted meanwhile go, the renamed one stays. */
    sync_ok(ul, &x, 0, NULL);
    assert_int_equal(uidlist_count(ul), 51 + (size_t)rounds - 10);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
    uidlist_free(ul);
    fx_done(&x);
}

/* ---- the lock ------------------------------------------------------------ */

static void lock_contention_times_out(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    struct err e;
    char *before, *after;
    double t0;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, NULL);
    before = read_list(&x);
    make_lock(&x, 0);
    put(&x, "new", "1700000002.M1P1.b");
    err_clear(&e);
    t0 = tu_now();
    assert_int_equal(uidlist_sync(ul, x.f, 0, &res, &e), -1);
    assert_true(tu_now() - t0 >= 0.045);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(e.sys_errno, EAGAIN);
    assert_true(e.temporary);
    assert_non_null(strstr(e.text, "locked by another process"));
    /* Nothing changed: the other's lock, the file, the list. */
    assert_true(lock_exists(&x));
    after = read_list(&x);
    assert_string_equal(before, after);
    assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 0);
    assert_int_equal(uidlist_count(ul), 1);
    free(before);
    free(after);
    /* A lock one minute old is not stale yet (120 s). */
    make_lock(&x, 60);
    assert_int_equal(uidlist_sync(ul, x.f, 0, &res, &e), -1);
    assert_int_equal(e.sys_errno, EAGAIN);
    uidlist_free(ul);
    fx_done(&x);
}

static struct fx *wait_fx;
static int wait_calls;

static int wait_hook(enum uidlist_step s)
{
    if (s == UIDLIST_STEP_LOCK_WAIT) {
        /* The holder finishes while we wait. */
        if (++wait_calls == 3) {
            char *p = pathf(wait_fx, UIDLIST_LOCK_FILE);

            assert_int_equal(unlink(p), 0);
            free(p);
        }
    }
    return 0;
}

static void lock_waits_for_holder(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_opts o = {10000, 120};
    struct uidlist_sync_result res;
    struct err e;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    assert_int_equal(uidlist_open(x.dir, &o, &ul, NULL), 0);
    make_lock(&x, 0);
    wait_fx = &x;
    wait_calls = 0;
    uidlist_step_hook = wait_hook;
    err_clear(&e);
    assert_int_equal(uidlist_sync(ul, x.f, 0, &res, &e), 0);
    uidlist_step_hook = NULL;
    assert_int_equal(wait_calls, 3);
    assert_true(res.written);
    assert_int_equal(uid_of(ul, "1700000001.M1P1.a"), 1);
    assert_false(lock_exists(&x));
    uidlist_free(ul);
    fx_done(&x);
}

static void stale_lock_taken_over(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct uidlist_sync_result res;
    char *text;

    (void)state;
    fx_init(&x);
    put(&x, "new", "1700000001.M1P1.a");
    ul = open_ok(&x);
    /* Left by a process that died two and a half minutes ago. */
    make_lock(&x, 150);
    sync_ok(ul, &x, 0, &res);
    assert_true(res.written);
    assert_false(lock_exists(&x));
    text = read_list(&x);
    assert_non_null(strstr(text, "\n1 :1700000001.M1P1.a\n"));
    free(text);
    uidlist_free(ul);
    fx_done(&x);
}

static void lock_refresh_and_takeover(void **state)
{
    struct fx x;
    struct uidlist_lock *lk = NULL, *lk2 = NULL;
    struct uidlist_opts o = {0, 120};
    struct timespec ts[2];
    struct stat st;
    struct err e;
    char *p;

    (void)state;
    fx_init(&x);
    p = pathf(&x, UIDLIST_LOCK_FILE);
    assert_int_equal(uidlist_lock_take(x.dir, &o, 0640, &lk, NULL), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    /* A second taker fails at once (timeout 0). */
    err_clear(&e);
    assert_int_equal(uidlist_lock_take(x.dir, &o, 0600, &lk2, &e), -1);
    assert_int_equal(e.sys_errno, EAGAIN);
    /* Age it, refresh: not stale any more. */
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 100;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_true(lock_mtime(&x) <= time(NULL) - 99);
    assert_int_equal(uidlist_lock_refresh(lk, NULL), 0);
    assert_true(lock_mtime(&x) >= time(NULL) - 2);
    assert_int_equal(uidlist_lock_take(x.dir, &o, 0600, &lk2, &e), -1);
    /* Age it past stale: the next taker takes it over, our refresh and
     * release notice and leave the new owner's lock alone. */
    ts[0].tv_sec -= 100;
    ts[1] = ts[0];
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(uidlist_lock_take(x.dir, &o, 0600, &lk2, NULL), 0);
    err_clear(&e);
    assert_int_equal(uidlist_lock_refresh(lk, &e), -1);
    assert_non_null(strstr(e.text, "taken over"));
    uidlist_lock_release(lk);
    assert_true(lock_exists(&x));
    uidlist_lock_release(lk2);
    assert_false(lock_exists(&x));
    free(p);
    fx_done(&x);
}

/* ---- failures and crashes at each step ------------------------------------ */

static enum uidlist_step fail_at;
static int fail_mode;        /* 0: fail the step, 1: _exit, 2: steal the lock */
static struct fx *fail_fx;

static int fail_hook(enum uidlist_step s)
{
    if (s != fail_at)
        return 0;
    if (fail_mode == 1)
        _exit(42);
    if (fail_mode == 2) {
        char *p = pathf(fail_fx, UIDLIST_LOCK_FILE);

        assert_int_equal(unlink(p), 0);
        write_path(p, "someone else's\n", 15);
        free(p);
        return 0;
    }
    return -1;
}

static const char base_list[] = "3 V555 N3 G00\n1 :1700000001.M1P1.a\n2 :1700000002.M1P1.b\n";

static void setup_step_folder(struct fx *x)
{
    fx_init(x);
    put(x, "new", "1700000001.M1P1.a");
    put(x, "cur", "1700000003.M1P1.c:2,S");
    write_list(x, base_list, strlen(base_list));
}

/* The list after the sync: b dropped, c added as 3. */
static const char new_list[] = "3 V555 N4 G00\n1 :1700000001.M1P1.a\n3 :1700000003.M1P1.c\n";

static void failure_at_each_step(void **state)
{
    (void)state;
    for (int s = UIDLIST_STEP_LOCKED; s < UIDLIST_STEP_COUNT; s++) {
        struct fx x;
        struct uidlist *ul;
        struct err e;
        char *text;

        setup_step_folder(&x);
        ul = open_ok(&x);
        fail_at = (enum uidlist_step)s;
        fail_mode = 0;
        fail_fx = &x;
        uidlist_step_hook = fail_hook;
        err_clear(&e);
        assert_int_equal(uidlist_sync(ul, x.f, 0, NULL, &e), -1);
        uidlist_step_hook = NULL;
        assert_int_equal(e.code, ERR_IO);
        assert_int_equal(e.sys_errno, EIO);
        assert_false(lock_exists(&x));
        text = read_list(&x);
        if (s < UIDLIST_STEP_DIR_FSYNCED) {
            /* Not done: old file, old list. */
            assert_string_equal(text, base_list);
            assert_int_equal(uid_of(ul, "1700000002.M1P1.b"), 2);
            assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 0);
        } else {
            /* Renamed: the new file is in place and read next. */
            assert_string_equal(text, new_list);
        }
        free(text);
        /* Either way the next sync ends where it should. */
        sync_ok(ul, &x, 0, NULL);
        text = read_list(&x);
        assert_string_equal(text, new_list);
        free(text);
        assert_int_equal(uid_of(ul, "1700000003.M1P1.c"), 3);
        uidlist_free(ul);
        fx_done(&x);
    }
}

static void crash_at_each_step(void **state)
{
    (void)state;
    for (int s = UIDLIST_STEP_LOCKED; s < UIDLIST_STEP_COUNT; s++) {
        struct fx x;
        struct uidlist *ul;
        int status;
        pid_t pid;
        char *text;

        setup_step_folder(&x);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct uidlist *cu = NULL;

            fail_at = (enum uidlist_step)s;
            fail_mode = 1;
            uidlist_step_hook = fail_hook;
            if (uidlist_open(x.dir, &fast_opts, &cu, NULL) == 0)
                (void)uidlist_sync(cu, x.f, 0, NULL, NULL);
            _exit(1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 42);
        /* The old list or the new one, whole. */
        text = read_list(&x);
        if (s <= UIDLIST_STEP_RENAMED)
            assert_string_equal(text, base_list);
        else
            assert_string_equal(text, new_list);
        free(text);
        /* The dead writer's lock blocks until it is stale. */
        ul = open_ok(&x);
        if (s <= UIDLIST_STEP_RENAMED) {
            struct err e;

            assert_true(lock_exists(&x));
            err_clear(&e);
            assert_int_equal(uidlist_sync(ul, x.f, 0, NULL, &e), -1);
            assert_int_equal(e.sys_errno, EAGAIN);
            make_lock(&x, 3600);
        } else {
            assert_false(lock_exists(&x));
        }
        sync_ok(ul, &x, 0, NULL);
        text = read_list(&x);
        assert_string_equal(text, new_list);
        free(text);
        assert_false(lock_exists(&x));
        uidlist_free(ul);
        fx_done(&x);
    }
}

static void lock_stolen_before_rename(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct err e;
    char *text, *p;
    char buf[32] = {0};
    int fd;

    (void)state;
    setup_step_folder(&x);
    ul = open_ok(&x);
    fail_at = UIDLIST_STEP_RENAMED;
    fail_mode = 2;
    fail_fx = &x;
    uidlist_step_hook = fail_hook;
    err_clear(&e);
    assert_int_equal(uidlist_sync(ul, x.f, 0, NULL, &e), -1);
    uidlist_step_hook = NULL;
    assert_non_null(strstr(e.text, "taken over"));
    text = read_list(&x);
    assert_string_equal(text, base_list);
    free(text);
    /* The new owner's lock is untouched. */
    p = pathf(&x, UIDLIST_LOCK_FILE);
    fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf) - 1), 15);
    close(fd);
    assert_string_equal(buf, "someone else's\n");
    free(p);
    uidlist_free(ul);
    fx_done(&x);
}

/* As root, the file is given to the folder's owner (Dovecot's mail
 * processes run as that user). */
static void root_writes_owner_file(void **state)
{
    struct fx x;
    struct uidlist *ul;
    struct stat st;
    char *p;

    (void)state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    fx_init(&x);
    assert_int_equal(chown(x.dir, 4321, 4322), 0);
    assert_int_equal(chmod(x.dir, 0750), 0);
    put(&x, "new", "1700000001.M1P1.a");
    ul = open_ok(&x);
    sync_ok(ul, &x, 0, NULL);
    p = pathf(&x, UIDLIST_FILE);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_uid, 4321);
    assert_int_equal(st.st_gid, 4322);
    assert_int_equal(st.st_mode & 0777, 0640);
    /* A rewrite keeps owner and mode of the existing file. */
    assert_int_equal(chmod(p, 0604), 0);
    put(&x, "new", "1700000002.M1P1.b");
    sync_ok(ul, &x, 0, NULL);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_uid, 4321);
    assert_int_equal(st.st_mode & 0777, 0604);
    free(p);
    uidlist_free(ul);
    fx_done(&x);
}

static void many_files_lookup(void **state)
{
    struct fx x;
    struct uidlist *ul, *again;
    struct uidlist_sync_result res;
    const size_t n = 3000;
    double t0;

    (void)state;
    fx_init(&x);
    for (size_t i = 0; i < n; i++) {
        char name[64];

        snprintf(name, sizeof(name), "%zu.M%zuP9.host,S=17", 1700000000 + i / 7, i % 7);
        put(&x, i % 3 == 0 ? "new" : "cur", name);
    }
    ul = open_ok(&x);
    t0 = tu_now();
    sync_ok(ul, &x, 0, &res);
    print_message("  sync of %zu new files: %.3f s\n", n, tu_now() - t0);
    assert_int_equal(res.added, n);
    again = open_ok(&x);
    for (size_t i = 0; i < n; i++) {
        char name[64];
        const struct uidlist_rec *r;

        snprintf(name, sizeof(name), "%zu.M%zuP9.host,S=17", 1700000000 + i / 7, i % 7);
        r = uidlist_by_name(again, name);
        assert_non_null(r);
        /* Names were made in Dovecot's order: UIDs follow it. */
        assert_int_equal(r->uid, i + 1);
        assert_ptr_equal(uidlist_by_uid(again, r->uid), r);
    }
    assert_null(uidlist_by_name(again, "nope"));
    uidlist_free(again);
    uidlist_free(ul);
    fx_done(&x);
}

static int reset_hook(void **state)
{
    (void)state;
    uidlist_step_hook = NULL;
    return 0;
}

#define T(f) cmocka_unit_test_teardown(f, reset_hook)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(name_cmp_cases),
        T(sync_assigns_in_dovecot_order),
        T(roundtrip_byte_for_byte),
        T(absent_file_new_list),
        T(next_uid_and_partial_lines),
        T(version1_is_rewritten_as_version3),
        T(corrupt_files_say_what),
        T(symlink_and_fifo_refused),
        T(rebuild_gets_new_uidvalidity),
        T(unlistable_names_skipped),
        T(sync_adds_drops_keeps),
        T(renamed_files_keep_uids),
        T(appended_records_and_other_writers),
        T(reread_under_lock),
        T(uidvalidity_change_reported),
        T(concurrent_renames_keep_uid),
        T(lock_contention_times_out),
        T(lock_waits_for_holder),
        T(stale_lock_taken_over),
        T(lock_refresh_and_takeover),
        T(failure_at_each_step),
        T(crash_at_each_step),
        T(lock_stolen_before_rename),
        T(root_writes_owner_file),
        T(many_files_lookup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
