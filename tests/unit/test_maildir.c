/* Tests for lib/maildir: ":2," info, scan, folders, flag renames that follow
 * other programs' renames, durable delivery, copy/move under injected
 * failures and crashes, folder create/rename/delete. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static void mkdir_ok(const char *path)
{
    assert_int_equal(mkdir(path, 0700), 0);
}

static void mk_maildir(const char *path)
{
    char *p;

    mkdir_ok(path);
    p = xasprintf("%s/cur", path);
    mkdir_ok(p);
    free(p);
    p = xasprintf("%s/new", path);
    mkdir_ok(p);
    free(p);
    p = xasprintf("%s/tmp", path);
    mkdir_ok(p);
    free(p);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void write_filef(const char *data, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void write_filef(const char *data, const char *fmt, ...)
{
    va_list ap;
    char *p;

    va_start(ap, fmt);
    p = xvasprintf(fmt, ap);
    va_end(ap);
    write_file(p, data, strlen(data));
    free(p);
}

/* Whole file, or NULL if it does not exist. */
static char *read_file(const char *path, size_t *len)
{
    struct stat st;
    char *data;
    int fd = open(path, O_RDONLY);

    if (fd < 0) {
        assert_int_equal(errno, ENOENT);
        return NULL;
    }
    assert_int_equal(fstat(fd, &st), 0);
    data = xmalloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, data, (size_t)st.st_size), st.st_size);
    data[st.st_size] = '\0';
    close(fd);
    *len = (size_t)st.st_size;
    return data;
}

static bool exists(const char *fmt, ...) CORREO_PRINTF(1, 2);

static bool exists(const char *fmt, ...)
{
    struct stat st;
    va_list ap;
    char *p;
    bool ok;

    va_start(ap, fmt);
    p = xvasprintf(fmt, ap);
    va_end(ap);
    ok = lstat(p, &st) == 0;
    free(p);
    return ok;
}

struct names {
    char *v[8];
    size_t n;       /* may exceed 8: only the first 8 are kept */
};

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Entries of a directory (all but "." and ".."), sorted. */
static void list_dir(struct names *nm, const char *fmt, ...) CORREO_PRINTF(2, 3);

static void list_dir(struct names *nm, const char *fmt, ...)
{
    struct dirent *de;
    va_list ap;
    char *p;
    DIR *d;

    va_start(ap, fmt);
    p = xvasprintf(fmt, ap);
    va_end(ap);
    d = opendir(p);
    assert_non_null(d);
    nm->n = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (nm->n < ARRAY_LEN(nm->v))
            nm->v[nm->n] = xstrdup(de->d_name);
        nm->n++;
    }
    closedir(d);
    free(p);
    if (nm->n > 1)
        qsort(nm->v, nm->n < ARRAY_LEN(nm->v) ? nm->n : ARRAY_LEN(nm->v), sizeof(char *),
              str_cmp);
}

static void names_free(struct names *nm)
{
    for (size_t i = 0; i < nm->n && i < ARRAY_LEN(nm->v); i++)
        free(nm->v[i]);
    nm->n = 0;
}

static size_t count_dir(const char *fmt, const char *a, const char *b)
{
    struct names nm;
    size_t n;

    list_dir(&nm, fmt, a, b);
    n = nm.n;
    names_free(&nm);
    return n;
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
    char *dir;      /* temp dir */
    char *root;     /* dir/Mail: the Maildir++ root */
    struct maildir *md;
    struct maildir_folder *inbox;
};

static int fx_setup(void **state)
{
    struct fx *fx = XNEW(struct fx);
    struct err e;

    fx->dir = tu_tmpdir("maildir");
    fx->root = xasprintf("%s/Mail", fx->dir);
    mk_maildir(fx->root);
    assert_int_equal(maildir_open(fx->root, &fx->md, &e), 0);
    assert_int_equal(maildir_folder_open(fx->md, "INBOX", &fx->inbox, &e), 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    maildir_step_hook = NULL;
    maildir_folder_close(fx->inbox);
    maildir_close(fx->md);
    tu_rm_rf(fx->dir);
    free(fx->root);
    free(fx->dir);
    free(fx);
    return 0;
}

#define FX_TEST(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

static const char msg_text[] =
    "From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n\0binary\xff";
#define MSG_LEN (sizeof(msg_text) - 1)

static void assert_file_is_msg(const char *path)
{
    size_t len;
    char *data = read_file(path, &len);

    assert_non_null(data);
    assert_int_equal(len, MSG_LEN);
    assert_memory_equal(data, msg_text, MSG_LEN);
    free(data);
}

static void deliver_msg(struct maildir_folder *f, const struct maildir_deliver_opts *o,
                        struct maildir_ref *ref)
{
    struct err e;

    assert_int_equal(maildir_deliver(f, msg_text, MSG_LEN, o, ref, &e), 0);
}

/* ---- ":2," info --------------------------------------------------------- */

/* The flag letters of a bitmask, in the given letter order. */
static void flag_string(unsigned flags, const char *order, char *out)
{
    static const struct {
        char c;
        unsigned bit;
    } map[] = {
        {'D', MAILDIR_F_DRAFT}, {'F', MAILDIR_F_FLAGGED}, {'P', MAILDIR_F_PASSED},
        {'R', MAILDIR_F_REPLIED}, {'S', MAILDIR_F_SEEN}, {'T', MAILDIR_F_TRASHED},
    };

    for (const char *o = order; *o != '\0'; o++)
        for (size_t i = 0; i < ARRAY_LEN(map); i++)
            if (map[i].c == *o && (flags & map[i].bit))
                *out++ = *o;
    *out = '\0';
}

static const struct {
    const char *in;       /* keywords given */
    const char *sorted;   /* keywords expected back */
} kw_cases[] = {
    {"", ""},
    {"a", "a"},
    {"zab", "abz"},
    {"bba", "ab"},
    {"zyxwvutsrqponmlkjihgfedcba", "abcdefghijklmnopqrstuvwxyz"},
};

static void info_roundtrip_every_flag_set(void **state)
{
    static const char base[] = "1700000000.M123P45Q6.host\\057x,S=1234,W=1260";
    (void)state;

    for (unsigned flags = 0; flags < 64; flags++) {
        for (size_t k = 0; k < ARRAY_LEN(kw_cases); k++) {
            char want_flags[8], kw[MAILDIR_KEYWORDS_SIZE], *want;
            unsigned got = 999;
            size_t blen = 0;
            char *name = maildir_filename_with_flags(base, flags, kw_cases[k].in);

            flag_string(flags, "DFPRST", want_flags);
            want = xasprintf("%s:2,%s%s", base, want_flags, kw_cases[k].sorted);
            assert_string_equal(name, want);
            /* The info is in strictly increasing ASCII order. */
            for (const char *p = strstr(name, ":2,") + 3; *p != '\0' && p[1] != '\0'; p++)
                assert_true(p[0] < p[1]);
            assert_int_equal(maildir_info_parse(name, &got, kw, &blen), MAILDIR_INFO_V2);
            assert_int_equal(got, flags);
            assert_string_equal(kw, kw_cases[k].sorted);
            assert_int_equal(blen, strlen(base));
            free(want);
            free(name);

            /* Unsorted, repeated letters parse to the same set. */
            flag_string(flags, "TSRPFD", want_flags);
            name = xasprintf("%s:2,%s%s%s", base, kw_cases[k].in, want_flags, want_flags);
            assert_int_equal(maildir_info_parse(name, &got, kw, NULL), MAILDIR_INFO_V2);
            assert_int_equal(got, flags);
            assert_string_equal(kw, kw_cases[k].sorted);
            free(name);
        }
    }
}

static void info_parse_cases(void **state)
{
    static const struct {
        const char *name;
        enum maildir_info_kind kind;
        unsigned flags;
        const char *kw;
        size_t base_len;
    } cases[] = {
        {"123.host", MAILDIR_INFO_NONE, 0, "", 8},
        {"123.host,S=99,W=101", MAILDIR_INFO_NONE, 0, "", 19},
        {"123.host:2,", MAILDIR_INFO_V2, 0, "", 8},
        {"123.host:2,S", MAILDIR_INFO_V2, MAILDIR_F_SEEN, "", 8},
        {"123.host:2,SRF", MAILDIR_INFO_V2,
         MAILDIR_F_SEEN | MAILDIR_F_REPLIED | MAILDIR_F_FLAGGED, "", 8},
        {"123.host:2,TPD", MAILDIR_INFO_V2,
         MAILDIR_F_TRASHED | MAILDIR_F_PASSED | MAILDIR_F_DRAFT, "", 8},
        {"123.host:2,SXZa", MAILDIR_INFO_V2, MAILDIR_F_SEEN, "a", 8},
        {"123.host:2,ba,S", MAILDIR_INFO_V2, 0, "ab", 8},
        {"1,S=5:2,S", MAILDIR_INFO_V2, MAILDIR_F_SEEN, "", 5},
        {"123.host:1,S", MAILDIR_INFO_OTHER, 0, "", 8},
        {"123.host:2", MAILDIR_INFO_OTHER, 0, "", 8},
        {"123.host:3,S", MAILDIR_INFO_OTHER, 0, "", 8},
        {"123.host:", MAILDIR_INFO_OTHER, 0, "", 8},
        {"123.host::2,S", MAILDIR_INFO_OTHER, 0, "", 8},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char kw[MAILDIR_KEYWORDS_SIZE] = "junk";
        unsigned flags = 999;
        size_t blen = 0;

        assert_int_equal(maildir_info_parse(cases[i].name, &flags, kw, &blen), cases[i].kind);
        assert_int_equal(flags, cases[i].flags);
        assert_string_equal(kw, cases[i].kw);
        assert_int_equal(blen, cases[i].base_len);
    }
    /* All outputs are optional. */
    assert_int_equal(maildir_info_parse("x:2,S", NULL, NULL, NULL), MAILDIR_INFO_V2);
}

static void info_rewrite_keeps_unknown(void **state)
{
    static const struct {
        const char *in;
        unsigned flags;
        const char *kw;     /* NULL: keep */
        const char *want;   /* NULL: cannot rewrite */
    } cases[] = {
        {"x", MAILDIR_F_SEEN, NULL, "x:2,S"},
        {"x,S=10", MAILDIR_F_SEEN | MAILDIR_F_DRAFT, "b", "x,S=10:2,DSb"},
        {"x:2,", 0, NULL, "x:2,"},
        {"x:2,SZ", MAILDIR_F_SEEN | MAILDIR_F_FLAGGED, NULL, "x:2,FSZ"},
        {"x:2,ZSA", 0, NULL, "x:2,AZ"},
        {"x:2,Sca", MAILDIR_F_REPLIED, NULL, "x:2,Rac"},
        {"x:2,Sca", MAILDIR_F_REPLIED, "", "x:2,R"},
        {"x:2,S,tail:x", MAILDIR_F_FLAGGED, "q", "x:2,Fq,tail:x"},
        {"x:2,S=", 0, NULL, "x:2,="},
        {"x:1,experimental", MAILDIR_F_SEEN, NULL, NULL},
        {"x:2", 0, NULL, NULL},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = maildir_filename_set_flags(cases[i].in, cases[i].flags, cases[i].kw);

        if (cases[i].want == NULL) {
            assert_null(got);
            continue;
        }
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    /* with_flags drops old info; invalid keyword characters are ignored. */
    {
        char *n = maildir_filename_with_flags("x:1,old", MAILDIR_F_SEEN, "b-A1a");

        assert_string_equal(n, "x:2,Sab");
        free(n);
    }
}

/* ---- scan --------------------------------------------------------------- */

static const struct maildir_entry *find_entry(const struct maildir_scan *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    fail_msg("no entry %s", name);
    abort();
}

static void scan_finds_messages_and_skips_dot_files(void **state)
{
    struct fx *fx = *state;
    static const struct {
        const char *sub, *name, *data;
    } files[] = {
        {"new", "1.a.host", "one"},
        {"new", "2.b.host,S=3", "two"},
        {"new", ".hidden", "x"},
        {"cur", "3.c.host:2,S", "three"},
        {"cur", "4.d.host:2,RFba", "four!"},
        {"cur", "5.e.host:1,weird:stuff", "fiver"},
        {"cur", ".dot:2,S", "x"},
        {"tmp", "6.f.host", "in tmp"},
    };
    static const struct {
        const char *name, *base, *info;
        enum maildir_sub sub;
        enum maildir_info_kind kind;
        unsigned flags;
        const char *kw;
        off_t size;
    } want[] = {
        {"1.a.host", "1.a.host", NULL, MAILDIR_SUB_NEW, MAILDIR_INFO_NONE, 0, "", 3},
        {"2.b.host,S=3", "2.b.host,S=3", NULL, MAILDIR_SUB_NEW, MAILDIR_INFO_NONE, 0, "", 3},
        {"3.c.host:2,S", "3.c.host", "2,S", MAILDIR_SUB_CUR, MAILDIR_INFO_V2,
         MAILDIR_F_SEEN, "", 5},
        {"4.d.host:2,RFba", "4.d.host", "2,RFba", MAILDIR_SUB_CUR, MAILDIR_INFO_V2,
         MAILDIR_F_REPLIED | MAILDIR_F_FLAGGED, "ab", 5},
        {"5.e.host:1,weird:stuff", "5.e.host", "1,weird:stuff", MAILDIR_SUB_CUR,
         MAILDIR_INFO_OTHER, 0, "", 5},
    };
    struct maildir_scan *s;
    struct err e;
    char *p;

    for (size_t i = 0; i < ARRAY_LEN(files); i++)
        write_filef(files[i].data, "%s/%s/%s", fx->root, files[i].sub, files[i].name);
    p = xasprintf("%s/new/subdir", fx->root);
    mkdir_ok(p);
    free(p);

    for (unsigned pass = 0; pass < 2; pass++) {
        unsigned flags = pass ? MAILDIR_SCAN_STAT : 0;

        assert_int_equal(maildir_scan(fx->inbox, flags, &s, &e), 0);
        assert_int_equal(s->n, ARRAY_LEN(want));
        for (size_t i = 0; i < ARRAY_LEN(want); i++) {
            const struct maildir_entry *en = find_entry(s, want[i].name);

            assert_string_equal(en->base, want[i].base);
            if (want[i].info == NULL)
                assert_null(en->info);
            else
                assert_string_equal(en->info, want[i].info);
            assert_int_equal(en->sub, want[i].sub);
            assert_int_equal(en->info_kind, want[i].kind);
            assert_int_equal(en->flags, want[i].flags);
            assert_string_equal(en->keywords, want[i].kw);
            if (pass) {
                assert_int_equal(en->size, want[i].size);
                assert_true(en->mtime > 0);
            } else {
                assert_int_equal(en->size, -1);
            }
        }
        free(s);
    }
}

static void scan_empty_folder(void **state)
{
    struct fx *fx = *state;
    struct maildir_scan *s;
    struct err e;

    assert_int_equal(maildir_scan(fx->inbox, MAILDIR_SCAN_STAT, &s, &e), 0);
    assert_int_equal(s->n, 0);
    free(s);
}

#define BIG_N 100000

static void scan_100k_messages(void **state)
{
    struct fx *fx = *state;
    unsigned char *seen = xcalloc(BIG_N, 1);
    struct maildir_scan *s;
    char *newdir = xasprintf("%s/new", fx->root);
    char *curdir = xasprintf("%s/cur", fx->root);
    int nfd = open(newdir, O_RDONLY | O_DIRECTORY);
    int cfd = open(curdir, O_RDONLY | O_DIRECTORY);
    double t0, t1;
    struct err e;

    assert_true(nfd >= 0 && cfd >= 0);
    /* Directory entries are what a scan reads: make them hard links to two
     * files (50k links each, under ext4's 65000), much faster to create than
     * 100k inodes. */
    write_filef("", "%s/new/.src", fx->root);
    write_filef("", "%s/cur/.src", fx->root);
    for (int i = 0; i < BIG_N; i++) {
        char name[64];
        int dfd = i % 2 == 0 ? nfd : cfd;

        /* Half in new/ without info, half in cur/ with flags. */
        if (i % 2 == 0)
            snprintf(name, sizeof(name), "%d.M%dP1Q1.host", i, i);
        else
            snprintf(name, sizeof(name), "%d.M%dP1Q1.host:2,%s", i, i, i % 4 == 1 ? "S" : "FS");
        assert_int_equal(linkat(dfd, ".src", dfd, name, 0), 0);
    }
    close(nfd);
    close(cfd);

    t0 = tu_now();
    assert_int_equal(maildir_scan(fx->inbox, 0, &s, &e), 0);
    t1 = tu_now();
    print_message("scan of %d messages: %.3f s\n", BIG_N, t1 - t0);
    assert_true(t1 - t0 < 10.0);
    assert_int_equal(s->n, BIG_N);
    for (size_t i = 0; i < s->n; i++) {
        const struct maildir_entry *en = &s->v[i];
        long idx = strtol(en->name, NULL, 10);

        assert_true(idx >= 0 && idx < BIG_N);
        assert_int_equal(seen[idx], 0);
        seen[idx] = 1;
        assert_int_equal(en->sub, idx % 2 == 0 ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR);
        assert_int_equal(en->flags, idx % 2 == 0   ? 0u
                                    : idx % 4 == 1 ? MAILDIR_F_SEEN
                                                   : MAILDIR_F_SEEN | MAILDIR_F_FLAGGED);
    }
    free(s);
    free(seen);
    free(newdir);
    free(curdir);
}

/* ---- folders and opening ------------------------------------------------ */

static void list_maildirpp_tree(void **state)
{
    struct fx *fx = *state;
    static const char *const dirs[] = {".B", ".A.B.C", ".A", ".A-x", ".A.B", ".Caf\xc3\xa9"};
    static const char *const want[] = {"INBOX", "A", "A.B", "A.B.C", "A-x", "B",
                                       "Caf\xc3\xa9"};
    struct maildir_folder_list *l;
    struct err e;
    char *p;

    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        p = xasprintf("%s/%s", fx->root, dirs[i]);
        mk_maildir(p);
        free(p);
    }
    /* Not folders: a dot dir without cur/new/tmp, a dot file, a plain dir. */
    p = xasprintf("%s/.notmuch", fx->root);
    mkdir_ok(p);
    free(p);
    write_filef("x", "%s/.qmail", fx->root);
    p = xasprintf("%s/plain", fx->root);
    mk_maildir(p);
    free(p);

    assert_int_equal(maildir_list_folders(fx->md, &l, &e), 0);
    assert_int_equal(l->n, ARRAY_LEN(want));
    for (size_t i = 0; i < l->n; i++) {
        assert_string_equal(l->v[i].name, want[i]);
        if (i == 0)
            p = xstrdup(fx->root);
        else
            p = xasprintf("%s/.%s", fx->root, want[i]);
        assert_string_equal(l->v[i].path, p);
        free(p);
    }
    free(l);

    /* Folders open by name; the name and path are what the list said. */
    {
        struct maildir_folder *f;

        assert_int_equal(maildir_folder_open(fx->md, "A.B.C", &f, &e), 0);
        assert_string_equal(f->name, "A.B.C");
        p = xasprintf("%s/.A.B.C", fx->root);
        assert_string_equal(f->path, p);
        maildir_folder_close(f);
        assert_int_equal(maildir_folder_open_path(p, &f, &e), 0);
        assert_string_equal(f->name, "A.B.C");
        maildir_folder_close(f);
        free(p);
        assert_int_equal(maildir_folder_open(fx->md, "inbox", &f, &e), 0);
        assert_string_equal(f->path, fx->root);
        maildir_folder_close(f);
        assert_int_equal(maildir_folder_open(fx->md, "nope", &f, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_null(f);
        assert_int_equal(maildir_folder_open(fx->md, "notmuch", &f, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(maildir_folder_open(fx->md, "../Mail", &f, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
    }
}

static void plain_maildir_is_just_inbox(void **state)
{
    struct fx *fx = *state;
    struct maildir_folder_list *l;
    struct maildir *md;
    struct err e;
    char *p = xasprintf("%s/Mail///", fx->dir);

    assert_int_equal(maildir_open(p, &md, &e), 0);
    assert_string_equal(md->path, fx->root);
    assert_int_equal(maildir_list_folders(md, &l, &e), 0);
    assert_int_equal(l->n, 1);
    assert_string_equal(l->v[0].name, "INBOX");
    assert_string_equal(l->v[0].path, fx->root);
    free(l);
    maildir_close(md);
    free(p);
}

static void non_maildir_paths_fail_clearly(void **state)
{
    struct fx *fx = *state;
    static const struct {
        const char *setup;    /* what to create under dir/x */
        enum err_code code;
        const char *text;     /* part of the message */
    } cases[] = {
        {"none", ERR_NOTFOUND, "no such Maildir"},
        {"file", ERR_INVAL, "not a directory"},
        {"empty", ERR_INVAL, "no cur/"},
        {"no-tmp", ERR_INVAL, "no tmp/"},
        {"tmp-file", ERR_INVAL, "no tmp/"},
    };
    (void)state;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *x = xasprintf("%s/x%zu", fx->dir, i);
        struct maildir_folder *f = NULL;
        struct maildir *md = NULL;
        struct err e;
        char *p;

        if (strcmp(cases[i].setup, "file") == 0) {
            write_file(x, "x", 1);
        } else if (strcmp(cases[i].setup, "none") != 0) {
            mkdir_ok(x);
            if (strcmp(cases[i].setup, "empty") != 0) {
                p = xasprintf("%s/cur", x);
                mkdir_ok(p);
                free(p);
                p = xasprintf("%s/new", x);
                mkdir_ok(p);
                free(p);
                if (strcmp(cases[i].setup, "tmp-file") == 0)
                    write_filef("x", "%s/tmp", x);
            }
        }
        assert_int_equal(maildir_open(x, &md, &e), -1);
        assert_null(md);
        assert_int_equal(e.code, cases[i].code);
        assert_non_null(strstr(e.text, cases[i].text));
        assert_int_equal(maildir_folder_open_path(x, &f, &e), -1);
        assert_null(f);
        assert_int_equal(e.code, cases[i].code);
        free(x);
    }
}

/* ---- new -> cur, flag renames, other programs --------------------------- */

static void new_to_cur_and_flag_renames(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    char base[256], *p;
    size_t blen;
    struct err e;

    deliver_msg(fx->inbox, NULL, &ref);
    assert_int_equal(ref.sub, MAILDIR_SUB_NEW);
    assert_null(strchr(ref.name, ':'));
    snprintf(base, sizeof(base), "%s", ref.name);

    assert_int_equal(maildir_move_to_cur(fx->inbox, &ref, &e), 0);
    assert_int_equal(ref.sub, MAILDIR_SUB_CUR);
    p = xasprintf("%s:2,", base);
    assert_string_equal(ref.name, p);
    free(p);
    assert_false(exists("%s/new/%s", fx->root, base));
    assert_true(exists("%s/cur/%s:2,", fx->root, base));

    /* Already in cur/: nothing changes. */
    assert_int_equal(maildir_move_to_cur(fx->inbox, &ref, &e), 0);
    assert_true(exists("%s/cur/%s:2,", fx->root, base));

    assert_int_equal(maildir_set_flags(fx->inbox, &ref, MAILDIR_F_SEEN, "c", &e), 0);
    assert_true(exists("%s/cur/%s:2,Sc", fx->root, base));
    assert_int_equal(maildir_change_flags(fx->inbox, &ref, MAILDIR_F_FLAGGED | MAILDIR_F_REPLIED,
                                          MAILDIR_F_SEEN, &e), 0);
    p = xasprintf("%s:2,FRc", base);
    assert_string_equal(ref.name, p);
    free(p);
    assert_int_equal(maildir_set_flags(fx->inbox, &ref, MAILDIR_F_TRASHED, NULL, &e), 0);
    p = xasprintf("%s:2,Tc", base);
    assert_string_equal(ref.name, p);
    free(p);
    assert_int_equal(maildir_info_parse(ref.name, NULL, NULL, &blen), MAILDIR_INFO_V2);
    assert_int_equal(blen, strlen(base));

    /* One file, same bytes. */
    assert_int_equal(count_dir("%s/%s", fx->root, "new"), 0);
    assert_int_equal(count_dir("%s/%s", fx->root, "cur"), 1);
    assert_int_equal(maildir_message_path(fx->inbox, &ref, &p, &e), 0);
    assert_file_is_msg(p);
    free(p);

    /* Bad arguments change nothing. */
    assert_int_equal(maildir_set_flags(fx->inbox, &ref, 0x40, NULL, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(maildir_set_flags(fx->inbox, &ref, 0, "A", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_true(exists("%s/cur/%s:2,Tc", fx->root, base));
    maildir_ref_free(&ref);

    {
        struct maildir_ref bad = MAILDIR_REF_INIT;

        maildir_ref_set(&bad, MAILDIR_SUB_CUR, "../new/x");
        assert_int_equal(maildir_set_flags(fx->inbox, &bad, 0, NULL, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        maildir_ref_free(&bad);
    }
}

/* Another program's rename of a message we know under an older name. */
struct behind_case {
    const char *what;
    enum maildir_sub start;        /* where we saw it */
    const char *start_info;        /* "" none */
    const char *other_sub;         /* where the other program put it */
    const char *other_info;
    int op;                        /* 0 set S, 1 add R, 2 to cur, 3 open, 4 path */
    const char *want_info;         /* resulting info in cur/ (ops 0-2) */
};

static const struct behind_case behind_cases[] = {
    {"set after flag change", MAILDIR_SUB_CUR, ":2,", "cur", ":2,FT", 0, ":2,S"},
    {"add keeps other's flag", MAILDIR_SUB_CUR, ":2,S", "cur", ":2,FS", 1, ":2,FRS"},
    {"new->cur after mutt read it", MAILDIR_SUB_NEW, "", "cur", ":2,S", 2, ":2,S"},
    {"set on new moved to cur", MAILDIR_SUB_NEW, "", "cur", ":2,a", 0, ":2,Sa"},
    {"open after rename", MAILDIR_SUB_CUR, ":2,S", "cur", ":2,RS", 3, ":2,RS"},
    {"path after rename", MAILDIR_SUB_NEW, "", "cur", ":2,", 4, ":2,"},
    {"moved back to new", MAILDIR_SUB_CUR, ":2,S", "new", "", 1, ":2,R"},
};

static void renamed_behind_our_back(void **state)
{
    struct fx *fx = *state;

    for (size_t i = 0; i < ARRAY_LEN(behind_cases); i++) {
        const struct behind_case *c = &behind_cases[i];
        struct maildir_ref ref = MAILDIR_REF_INIT;
        char *name, *from, *to, *p;
        struct err e;
        int fd;

        name = xasprintf("%zu.M1P1Q1.host,S=%zu", i, MSG_LEN);
        from = xasprintf("%s/%s/%s%s", fx->root, c->start == MAILDIR_SUB_NEW ? "new" : "cur",
                         name, c->start_info);
        write_file(from, msg_text, MSG_LEN);
        p = xasprintf("%s%s", name, c->start_info);
        maildir_ref_set(&ref, c->start, p);
        free(p);

        to = xasprintf("%s/%s/%s%s", fx->root, c->other_sub, name, c->other_info);
        assert_int_equal(rename(from, to), 0);

        switch (c->op) {
        case 0:
            assert_int_equal(maildir_set_flags(fx->inbox, &ref, MAILDIR_F_SEEN, NULL, &e), 0);
            break;
        case 1:
            assert_int_equal(maildir_change_flags(fx->inbox, &ref, MAILDIR_F_REPLIED, 0, &e), 0);
            break;
        case 2:
            assert_int_equal(maildir_move_to_cur(fx->inbox, &ref, &e), 0);
            break;
        case 3:
            assert_int_equal(maildir_open_message(fx->inbox, &ref, &fd, &e), 0);
            {
                char buf[sizeof(msg_text)];

                assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)MSG_LEN);
                assert_memory_equal(buf, msg_text, MSG_LEN);
            }
            close(fd);
            break;
        case 4:
            assert_int_equal(maildir_message_path(fx->inbox, &ref, &p, &e), 0);
            assert_string_equal(p, to);
            free(p);
            break;
        default:
            fail();
        }
        p = xasprintf("%s%s", name, c->want_info);
        assert_string_equal(ref.name, p);
        assert_int_equal(ref.sub, c->want_info[0] ? MAILDIR_SUB_CUR : MAILDIR_SUB_NEW);
        assert_true(exists("%s/%s/%s", fx->root, c->want_info[0] ? "cur" : "new", p));
        free(p);
        assert_int_equal(count_dir("%s/%s", fx->root, "new") + count_dir("%s/%s", fx->root, "cur"),
                         1);

        /* Truly gone: every operation says ERR_NOTFOUND. */
        assert_int_equal(maildir_message_path(fx->inbox, &ref, &p, &e), 0);
        assert_int_equal(unlink(p), 0);
        free(p);
        assert_int_equal(maildir_set_flags(fx->inbox, &ref, MAILDIR_F_SEEN, NULL, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(maildir_change_flags(fx->inbox, &ref, 0, MAILDIR_F_SEEN, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(maildir_move_to_cur(fx->inbox, &ref, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(maildir_open_message(fx->inbox, &ref, &fd, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(fd, -1);
        assert_int_equal(maildir_message_path(fx->inbox, &ref, &p, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_null(p);
        assert_int_equal(maildir_copy(fx->inbox, &ref, fx->inbox, NULL, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(maildir_move(fx->inbox, &ref, fx->inbox, NULL, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(count_dir("%s/%s", fx->root, "new") + count_dir("%s/%s", fx->root, "cur"),
                         0);

        maildir_ref_free(&ref);
        free(name);
        free(from);
        free(to);
    }
}

static void base_name_ref_finds_message(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct err e;
    int fd;

    write_filef(msg_text, "%s/cur/77.M1P1Q1.host:2,FS", fx->root);
    maildir_ref_set(&ref, MAILDIR_SUB_NEW, "77.M1P1Q1.host");
    assert_int_equal(maildir_open_message(fx->inbox, &ref, &fd, &e), 0);
    close(fd);
    assert_int_equal(ref.sub, MAILDIR_SUB_CUR);
    assert_string_equal(ref.name, "77.M1P1Q1.host:2,FS");
    /* A longer base name sharing the prefix is not the same message. */
    maildir_ref_set(&ref, MAILDIR_SUB_NEW, "77.M1P1Q1.hos");
    assert_int_equal(maildir_open_message(fx->inbox, &ref, &fd, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    maildir_ref_free(&ref);
}

static void experimental_info_is_never_rewritten(void **state)
{
    struct fx *fx = *state;
    static const char name[] = "88.M1P1Q1.host:1,some;thing:2,S";
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct err e;

    write_filef(msg_text, "%s/new/%s", fx->root, name);
    maildir_ref_set(&ref, MAILDIR_SUB_NEW, name);
    assert_int_equal(maildir_set_flags(fx->inbox, &ref, MAILDIR_F_SEEN, NULL, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_true(exists("%s/new/%s", fx->root, name));
    /* It can still move to cur/, byte for byte the same name. */
    assert_int_equal(maildir_move_to_cur(fx->inbox, &ref, &e), 0);
    assert_int_equal(ref.sub, MAILDIR_SUB_CUR);
    assert_string_equal(ref.name, name);
    assert_true(exists("%s/cur/%s", fx->root, name));
    assert_int_equal(maildir_change_flags(fx->inbox, &ref, 0, MAILDIR_F_SEEN, &e), 0);
    assert_int_equal(maildir_change_flags(fx->inbox, &ref, MAILDIR_F_SEEN, 0, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_true(exists("%s/cur/%s", fx->root, name));
    maildir_ref_free(&ref);
}

/* ---- delivery ----------------------------------------------------------- */

static int fail_at = -1;
static unsigned steps_seen;

static int hook_fail(enum maildir_step s)
{
    steps_seen |= 1u << s;
    return (int)s == fail_at ? -1 : 0;
}

static int crash_at = -1;

static int hook_crash(enum maildir_step s)
{
    if ((int)s == crash_at)
        _exit(42);
    return 0;
}

/* The only message file in root/new + root/cur; asserts there is exactly
 * one; returns its path. */
static char *only_message(const char *root)
{
    size_t nn = count_dir("%s/%s", root, "new"), nc = count_dir("%s/%s", root, "cur");
    struct names nm;
    char *p;

    assert_int_equal(nn + nc, 1);
    list_dir(&nm, "%s/%s", root, nn ? "new" : "cur");
    p = xasprintf("%s/%s/%s", root, nn ? "new" : "cur", nm.v[0]);
    names_free(&nm);
    return p;
}

static const struct maildir_deliver_opts to_cur_sent = {true, MAILDIR_F_SEEN, "k"};

static void deliver_success_exact_bytes(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    char *p, *want;
    struct err e;

    deliver_msg(fx->inbox, NULL, &ref);
    p = only_message(fx->root);
    want = xasprintf("%s/new/%s", fx->root, ref.name);
    assert_string_equal(p, want);
    assert_file_is_msg(p);
    free(want);
    free(p);
    want = xasprintf(",S=%zu", MSG_LEN);
    assert_non_null(strstr(ref.name, want));
    assert_string_equal(ref.name + strlen(ref.name) - strlen(want), want);
    free(want);
    /* "<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>", host with / : , encoded. */
    {
        char host[256], enc[1024], got_host[1024], *o = enc;
        long long sec;
        long usec, pid;
        unsigned long q;
        size_t size;

        assert_int_equal(gethostname(host, sizeof(host)), 0);
        host[sizeof(host) - 1] = '\0';
        for (const char *h = host; *h != '\0'; h++)
            o += *h == '/' ? sprintf(o, "\\057")
                 : *h == ':' ? sprintf(o, "\\072")
                 : *h == ',' ? sprintf(o, "\\054")
                             : sprintf(o, "%c", *h);
        assert_int_equal(sscanf(ref.name, "%lld.M%ldP%ldQ%lu.%1000[^,],S=%zu", &sec, &usec,
                                &pid, &q, got_host, &size), 6);
        assert_true(sec > 1000000000LL && sec <= (long long)time(NULL));
        assert_true(usec >= 0 && usec < 1000000);
        assert_int_equal(pid, (long)getpid());
        assert_true(q > 0);
        assert_string_equal(got_host, enc);
        assert_int_equal(size, MSG_LEN);
    }
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
    assert_int_equal(unlink(p = xasprintf("%s/new/%s", fx->root, ref.name)), 0);
    free(p);

    /* Into cur/ with flags, e.g. a Sent copy. */
    deliver_msg(fx->inbox, &to_cur_sent, &ref);
    assert_int_equal(ref.sub, MAILDIR_SUB_CUR);
    assert_string_equal(strchr(ref.name, ':'), ":2,Sk");
    p = only_message(fx->root);
    assert_file_is_msg(p);
    assert_int_equal(unlink(p), 0);
    free(p);

    /* Empty message. */
    assert_int_equal(maildir_deliver(fx->inbox, "", 0, NULL, &ref, &e), 0);
    assert_non_null(strstr(ref.name, ",S=0"));

    /* Invalid options deliver nothing. */
    {
        static const struct maildir_deliver_opts bad[] = {
            {false, MAILDIR_F_SEEN, NULL},
            {false, 0, "a"},
            {true, 0x80, NULL},
            {true, 0, "aB"},
        };

        for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
            assert_int_equal(maildir_deliver(fx->inbox, msg_text, MSG_LEN, &bad[i], NULL, &e), -1);
            assert_int_equal(e.code, ERR_INVAL);
        }
    }
    assert_int_equal(count_dir("%s/%s", fx->root, "new"), 1);
    assert_int_equal(count_dir("%s/%s", fx->root, "cur"), 0);
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
    maildir_ref_free(&ref);
}

static void deliver_from_fd(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    size_t big_len = 300000, got_len;
    char *big = xmalloc(big_len), *p, *data;
    int pfd[2];
    pid_t pid;
    struct err e;

    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)(i * 7 + i / 251);

    /* From a pipe: the size is only known at the end. */
    assert_int_equal(pipe(pfd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        for (size_t off = 0; off < big_len;) {
            ssize_t w = write(pfd[1], big + off, big_len - off > 4096 ? 4096 : big_len - off);

            if (w <= 0)
                _exit(1);
            off += (size_t)w;
        }
        _exit(0);
    }
    close(pfd[1]);
    assert_int_equal(maildir_deliver_fd(fx->inbox, pfd[0], NULL, &ref, &e), 0);
    close(pfd[0]);
    assert_int_equal(tu_wait_child(pid, 10), 0);
    p = only_message(fx->root);
    data = read_file(p, &got_len);
    assert_int_equal(got_len, big_len);
    assert_memory_equal(data, big, big_len);
    free(data);
    assert_int_equal(unlink(p), 0);
    free(p);
    p = xasprintf(",S=%zu", big_len);
    assert_non_null(strstr(ref.name, p));
    free(p);

    /* From a file, starting at its current offset, into cur/. */
    p = xasprintf("%s/source", fx->dir);
    write_file(p, big, big_len);
    {
        int fd = open(p, O_RDONLY);

        assert_true(fd >= 0);
        assert_int_equal(lseek(fd, 1000, SEEK_SET), 1000);
        assert_int_equal(maildir_deliver_fd(fx->inbox, fd, &to_cur_sent, &ref, &e), 0);
        close(fd);
    }
    free(p);
    p = only_message(fx->root);
    data = read_file(p, &got_len);
    assert_int_equal(got_len, big_len - 1000);
    assert_memory_equal(data, big + 1000, big_len - 1000);
    assert_int_equal(ref.sub, MAILDIR_SUB_CUR);
    free(data);
    free(p);
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
    maildir_ref_free(&ref);
    free(big);
}

/* After a failed or crashed delivery: nothing partial in new/ or cur/.
 * Returns the number of (complete) messages there. */
static size_t check_no_partial(const char *root)
{
    size_t n = count_dir("%s/%s", root, "new") + count_dir("%s/%s", root, "cur");

    assert_true(n <= 1);
    if (n == 1) {
        char *p = only_message(root);

        assert_file_is_msg(p);
        free(p);
    }
    assert_true(count_dir("%s/%s", root, "tmp") <= 1);
    return n;
}

static void clear_folder(const char *root)
{
    static const char *const subs[] = {"new", "cur", "tmp"};

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *d = xasprintf("%s/%s", root, subs[i]);

        tu_rm_rf(d);
        mkdir_ok(d);
        free(d);
    }
}

static void deliver_fails_at_every_step(void **state)
{
    struct fx *fx = *state;

    for (int pass = 0; pass < 3; pass++) {
        for (int s = MAILDIR_STEP_TMP_CREATED; s <= MAILDIR_STEP_TMP_REMOVED; s++) {
            struct maildir_ref ref = MAILDIR_REF_INIT;
            struct err e;
            int rc;

            fail_at = s;
            steps_seen = 0;
            maildir_step_hook = hook_fail;
            if (pass == 2) {
                char *src = xasprintf("%s/source", fx->dir);
                int fd;

                write_file(src, msg_text, MSG_LEN);
                fd = open(src, O_RDONLY);
                assert_true(fd >= 0);
                rc = maildir_deliver_fd(fx->inbox, fd, NULL, &ref, &e);
                close(fd);
                free(src);
            } else {
                rc = maildir_deliver(fx->inbox, msg_text, MSG_LEN, pass ? &to_cur_sent : NULL,
                                     &ref, &e);
            }
            maildir_step_hook = NULL;
            assert_true(steps_seen & (1u << s));   /* the step was reached */
            if (s < MAILDIR_STEP_TMP_REMOVED) {
                /* Failed: nothing anywhere, the caller still has the message. */
                assert_int_equal(rc, -1);
                assert_int_equal(e.code, ERR_IO);
                assert_non_null(strstr(e.text, strerror(EIO)));
                assert_null(ref.name);
                assert_int_equal(check_no_partial(fx->root), 0);
                assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
            } else {
                /* Delivered and durable; only a tmp/ file is left over. */
                assert_int_equal(rc, 0);
                assert_int_equal(check_no_partial(fx->root), 1);
                assert_true(exists("%s/%s/%s", fx->root, pass == 1 ? "cur" : "new", ref.name));
                assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 1);
            }
            maildir_ref_free(&ref);
            clear_folder(fx->root);
        }
    }
    fail_at = -1;
}

static void deliver_crashes_at_every_step(void **state)
{
    struct fx *fx = *state;

    for (int s = MAILDIR_STEP_TMP_CREATED; s <= MAILDIR_STEP_TMP_REMOVED; s++) {
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
            struct err e;

            crash_at = s;
            maildir_step_hook = hook_crash;
            maildir_deliver(fx->inbox, msg_text, MSG_LEN, NULL, NULL, &e);
            _exit(1);   /* the step was never reached */
        }
        status = tu_wait_child(pid, 10);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 42);
        /* Visible from the link on, and then always complete. */
        assert_int_equal(check_no_partial(fx->root), s > MAILDIR_STEP_LINKED ? 1 : 0);
        assert_int_equal(count_dir("%s/%s", fx->root, "tmp"),
                         s > MAILDIR_STEP_TMP_CREATED ? 1 : 0);
        clear_folder(fx->root);
    }
}

static void deliver_1000_unique_names(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct maildir_scan *s;
    char **names = XNEWARRAY(char *, 1000);
    struct err e;

    for (int i = 0; i < 1000; i++) {
        deliver_msg(fx->inbox, NULL, &ref);
        assert_null(strchr(ref.name, '/'));
        assert_null(strchr(ref.name, ':'));
        names[i] = ref.name;
        ref.name = NULL;
    }
    qsort(names, 1000, sizeof(char *), str_cmp);
    for (int i = 1; i < 1000; i++)
        assert_true(strcmp(names[i - 1], names[i]) != 0);
    assert_int_equal(maildir_scan(fx->inbox, MAILDIR_SCAN_STAT, &s, &e), 0);
    assert_int_equal(s->n, 1000);
    for (size_t i = 0; i < s->n; i++)
        assert_int_equal(s->v[i].size, (off_t)MSG_LEN);
    free(s);
    for (int i = 0; i < 1000; i++)
        free(names[i]);
    free(names);
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
}

/* ---- copy and move ------------------------------------------------------ */

struct two {
    struct maildir_folder *dst;
    char *dst_path;
};

static void make_target(struct fx *fx, struct two *t)
{
    struct err e;

    assert_int_equal(maildir_folder_create(fx->md, "Archive", &e), 0);
    assert_int_equal(maildir_folder_open(fx->md, "Archive", &t->dst, &e), 0);
    t->dst_path = xasprintf("%s/.Archive", fx->root);
}

static void drop_target(struct two *t)
{
    maildir_folder_close(t->dst);
    free(t->dst_path);
}

static void copy_keeps_info(void **state)
{
    struct fx *fx = *state;
    static const struct {
        const char *sub, *name;
        const char *want_sub, *want_info;
    } cases[] = {
        {"new", "1.M1P1Q1.host", "new", NULL},
        {"cur", "2.M1P1Q1.host:2,FSab", "cur", ":2,FSab"},
        {"cur", "3.M1P1Q1.host:2,SZ,x", "cur", ":2,SZ,x"},
        {"cur", "4.M1P1Q1.host:1,exp", "cur", ":1,exp"},
        {"cur", "5.M1P1Q1.host", "cur", ":2,"},
    };
    struct two t;

    make_target(fx, &t);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct maildir_ref ref = MAILDIR_REF_INIT, out = MAILDIR_REF_INIT;
        char *src, *p;
        struct err e;

        src = xasprintf("%s/%s/%s", fx->root, cases[i].sub, cases[i].name);
        write_file(src, msg_text, MSG_LEN);
        maildir_ref_set(&ref, strcmp(cases[i].sub, "cur") == 0 ? MAILDIR_SUB_CUR
                                                                : MAILDIR_SUB_NEW,
                        cases[i].name);
        assert_int_equal(maildir_copy(fx->inbox, &ref, t.dst, &out, &e), 0);
        assert_file_is_msg(src);      /* source untouched */
        assert_string_equal(ref.name, cases[i].name);
        p = only_message(t.dst_path);
        assert_file_is_msg(p);
        free(p);
        assert_true(exists("%s/%s/%s", t.dst_path, cases[i].want_sub, out.name));
        if (cases[i].want_info == NULL)
            assert_null(strchr(out.name, ':'));
        else
            assert_string_equal(strchr(out.name, ':'), cases[i].want_info);
        assert_int_equal(count_dir("%s/%s", t.dst_path, "tmp"), 0);
        assert_int_equal(unlink(src), 0);
        clear_folder(t.dst_path);
        maildir_ref_free(&ref);
        maildir_ref_free(&out);
        free(src);
    }
    drop_target(&t);
}

static void move_moves_and_follows_renames(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT, out = MAILDIR_REF_INIT;
    struct two t;
    struct err e;
    char *p, *q;

    make_target(fx, &t);
    deliver_msg(fx->inbox, &to_cur_sent, &ref);
    /* Another program adds a flag before we move it. */
    p = xasprintf("%s/cur/%s", fx->root, ref.name);
    q = xasprintf("%sF", p);
    assert_int_equal(rename(p, q), 0);
    free(p);
    free(q);
    assert_int_equal(maildir_move(fx->inbox, &ref, t.dst, &out, &e), 0);
    assert_null(ref.name);
    assert_int_equal(out.sub, MAILDIR_SUB_CUR);
    assert_string_equal(strchr(out.name, ':'), ":2,SkF");
    assert_int_equal(count_dir("%s/%s", fx->root, "new") + count_dir("%s/%s", fx->root, "cur"),
                     0);
    p = only_message(t.dst_path);
    assert_file_is_msg(p);
    free(p);
    maildir_ref_free(&out);
    drop_target(&t);
}

/* Source present and intact? */
static bool source_counts(const char *root)
{
    size_t n = count_dir("%s/%s", root, "new") + count_dir("%s/%s", root, "cur");

    assert_true(n <= 1);
    if (n == 1) {
        char *p = only_message(root);

        assert_file_is_msg(p);
        free(p);
    }
    return n == 1;
}

static void move_fails_at_every_step(void **state)
{
    struct fx *fx = *state;
    struct two t;

    make_target(fx, &t);
    for (int s = 0; s < MAILDIR_STEP_COUNT; s++) {
        struct maildir_ref ref = MAILDIR_REF_INIT, out = MAILDIR_REF_INIT;
        bool src_there, dst_there;
        struct err e;
        int rc;

        deliver_msg(fx->inbox, &to_cur_sent, &ref);
        fail_at = s;
        steps_seen = 0;
        maildir_step_hook = hook_fail;
        rc = maildir_move(fx->inbox, &ref, t.dst, &out, &e);
        maildir_step_hook = NULL;
        assert_true(steps_seen & (1u << s));
        src_there = source_counts(fx->root);
        dst_there = check_no_partial(t.dst_path) == 1;
        if (rc == 0) {
            /* Moved: only the copy counts. */
            assert_false(src_there);
            assert_true(dst_there);
            assert_null(ref.name);
            assert_true(exists("%s/cur/%s", t.dst_path, out.name));
            assert_true(s == MAILDIR_STEP_TMP_REMOVED || s == MAILDIR_STEP_SOURCE_DIR_FSYNCED);
        } else {
            /* Not moved: the source is where it was, nothing added. */
            assert_int_equal(rc, -1);
            assert_true(src_there);
            assert_false(dst_there);
            assert_true(exists("%s/cur/%s", fx->root, ref.name));
            assert_null(out.name);
            assert_int_equal(count_dir("%s/%s", t.dst_path, "tmp"), 0);
        }
        maildir_ref_free(&ref);
        maildir_ref_free(&out);
        clear_folder(fx->root);
        clear_folder(t.dst_path);
    }
    fail_at = -1;
    drop_target(&t);
}

static void move_crashes_at_every_step(void **state)
{
    struct fx *fx = *state;
    struct two t;

    make_target(fx, &t);
    for (int s = 0; s < MAILDIR_STEP_COUNT; s++) {
        struct maildir_ref ref = MAILDIR_REF_INIT;
        bool src_there, dst_there;
        int status;
        pid_t pid;

        deliver_msg(fx->inbox, &to_cur_sent, &ref);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            struct err e;

            crash_at = s;
            maildir_step_hook = hook_crash;
            maildir_move(fx->inbox, &ref, t.dst, NULL, &e);
            _exit(1);
        }
        status = tu_wait_child(pid, 10);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 42);
        src_there = source_counts(fx->root);
        dst_there = check_no_partial(t.dst_path) == 1;
        /* Never none; the source goes only after the copy is complete. */
        assert_true(src_there || dst_there);
        assert_int_equal(src_there, s < MAILDIR_STEP_SOURCE_DIR_FSYNCED);
        assert_int_equal(dst_there, s > MAILDIR_STEP_LINKED);
        maildir_ref_free(&ref);
        clear_folder(fx->root);
        clear_folder(t.dst_path);
    }
    drop_target(&t);
}

/* ---- folder create / rename / delete ------------------------------------ */

static void folder_names_validated(void **state)
{
    struct fx *fx = *state;
    char long_ok[MAILDIR_FOLDER_NAME_MAX + 1], too_long[MAILDIR_FOLDER_NAME_MAX + 2];
    static const char *const bad[] = {
        "", "a/b", "/abs", "..", ".", ".hidden", "a..b", "a.", "INBOX", "inbox", "x\ny",
        "tab\there", "del\x7f",
    };
    static const char *const good[] = {
        "Work", "Work.Sub", "a.b.c", "Caf\xc3\xa9", "with space", "-dash", "INBOX.child",
    };
    struct err e;
    char *p;

    memset(long_ok, 'x', sizeof(long_ok) - 1);
    long_ok[sizeof(long_ok) - 1] = '\0';
    memset(too_long, 'y', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(maildir_folder_name_check(bad[i], &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(maildir_folder_create(fx->md, bad[i], &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
    }
    assert_int_equal(maildir_folder_create(fx->md, too_long, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(maildir_folder_name_check(NULL, &e), -1);
    /* Nothing was created by the refusals. */
    {
        struct names nm;

        list_dir(&nm, "%s", fx->root);
        assert_int_equal(nm.n, 3);
        names_free(&nm);
    }
    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        assert_int_equal(maildir_folder_create(fx->md, good[i], &e), 0);
        p = xasprintf("%s/.%s", fx->root, good[i]);
        assert_true(exists("%s/cur", p));
        assert_true(exists("%s/new", p));
        assert_true(exists("%s/tmp", p));
        assert_true(exists("%s/maildirfolder", p));
        free(p);
    }
    assert_int_equal(maildir_folder_create(fx->md, long_ok, &e), 0);
    assert_true(exists("%s/.%s/cur", fx->root, long_ok));
    /* Staging leaves nothing in the root's tmp/. */
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
}

static void folder_create_rename_delete(void **state)
{
    struct fx *fx = *state;
    struct maildir_folder_list *l;
    struct maildir_folder *f;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct err e;

    /* Parents are not required. */
    assert_int_equal(maildir_folder_create(fx->md, "Work.Sub.Deep", &e), 0);
    assert_int_equal(maildir_folder_create(fx->md, "Work", &e), 0);
    assert_int_equal(maildir_folder_create(fx->md, "Work.Other", &e), 0);
    assert_int_equal(maildir_folder_create(fx->md, "Workshop", &e), 0);
    assert_int_equal(maildir_folder_create(fx->md, "Work", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(maildir_list_folders(fx->md, &l, &e), 0);
    assert_int_equal(l->n, 5);
    assert_string_equal(l->v[1].name, "Work");
    assert_string_equal(l->v[2].name, "Work.Other");
    assert_string_equal(l->v[3].name, "Work.Sub.Deep");
    assert_string_equal(l->v[4].name, "Workshop");
    free(l);

    /* Mail in a subfolder survives the rename. */
    assert_int_equal(maildir_folder_open(fx->md, "Work.Sub.Deep", &f, &e), 0);
    deliver_msg(f, NULL, &ref);
    maildir_folder_close(f);

    /* Refusals leave everything as it was. */
    assert_int_equal(maildir_folder_rename(fx->md, "Work", "Workshop", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(maildir_folder_rename(fx->md, "INBOX", "Old", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(maildir_folder_rename(fx->md, "Nope", "Job", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(maildir_folder_rename(fx->md, "Work", "Bad/Name", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(maildir_folder_rename(fx->md, "Work", "inbox", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    /* A subfolder's target exists (".Job.Other" without ".Job"). */
    assert_int_equal(maildir_folder_create(fx->md, "Job.Other", &e), 0);
    assert_int_equal(maildir_folder_rename(fx->md, "Work", "Job", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_true(exists("%s/.Work", fx->root));
    assert_true(exists("%s/.Work.Sub.Deep", fx->root));
    assert_false(exists("%s/.Job", fx->root));
    assert_int_equal(maildir_folder_delete(fx->md, "Job.Other", 0, &e), 0);

    assert_int_equal(maildir_folder_rename(fx->md, "Work", "Job", &e), 0);
    assert_false(exists("%s/.Work", fx->root));
    assert_false(exists("%s/.Work.Other", fx->root));
    assert_false(exists("%s/.Work.Sub.Deep", fx->root));
    assert_true(exists("%s/.Job/cur", fx->root));
    assert_true(exists("%s/.Job.Other/cur", fx->root));
    assert_true(exists("%s/.Job.Sub.Deep/new/%s", fx->root, ref.name));
    assert_true(exists("%s/.Workshop", fx->root));   /* not a subfolder */

    /* Renaming under its own name: "Job" -> "Job.Old". */
    assert_int_equal(maildir_folder_rename(fx->md, "Job", "Job.Old", &e), 0);
    assert_int_equal(maildir_list_folders(fx->md, &l, &e), 0);
    assert_int_equal(l->n, 5);
    assert_string_equal(l->v[1].name, "Job.Old");
    assert_string_equal(l->v[2].name, "Job.Old.Other");
    assert_string_equal(l->v[3].name, "Job.Old.Sub.Deep");
    assert_string_equal(l->v[4].name, "Workshop");
    free(l);

    /* A subfolder name that would get too long is refused up front. */
    {
        char sub[260];

        memset(sub, 'x', sizeof(sub));
        memcpy(sub, "S.", 2);
        sub[252] = '\0';
        assert_int_equal(maildir_folder_create(fx->md, "S", &e), 0);
        assert_int_equal(maildir_folder_create(fx->md, sub, &e), 0);
        assert_int_equal(maildir_folder_rename(fx->md, "S", "SSSSS", &e), -1);
        assert_int_equal(e.code, ERR_LIMIT);
        assert_true(exists("%s/.S", fx->root));
        assert_true(exists("%s/.%s", fx->root, sub));
        assert_false(exists("%s/.SSSSS", fx->root));
        assert_int_equal(maildir_folder_delete(fx->md, "S", MAILDIR_DELETE_RECURSIVE, &e), 0);
        assert_false(exists("%s/.%s", fx->root, sub));
    }

    /* Delete. */
    assert_int_equal(maildir_folder_delete(fx->md, "INBOX", MAILDIR_DELETE_RECURSIVE, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(maildir_folder_delete(fx->md, "Nope", 0, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(maildir_folder_delete(fx->md, "Job.Old", 0, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_true(exists("%s/.Job.Old.Sub.Deep/new/%s", fx->root, ref.name));
    /* A dot directory that is no folder is not ours to delete. */
    {
        char *p = xasprintf("%s/.notmuch", fx->root);

        mkdir_ok(p);
        write_filef("db", "%s/xapian", p);
        assert_int_equal(maildir_folder_delete(fx->md, "notmuch", MAILDIR_DELETE_RECURSIVE, &e),
                         -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_true(exists("%s/xapian", p));
        free(p);
    }
    /* Messages and other files in cur/ new/ tmp/ go with the folder. */
    write_filef("x", "%s/.Job.Old/tmp/leftover", fx->root);
    write_filef("x", "%s/.Job.Old/cur/1.a:2,S", fx->root);
    write_filef("x", "%s/.Job.Old/dovecot-uidlist", fx->root);
    assert_int_equal(maildir_folder_delete(fx->md, "Job.Old", MAILDIR_DELETE_RECURSIVE, &e), 0);
    assert_false(exists("%s/.Job.Old", fx->root));
    assert_false(exists("%s/.Job.Old.Other", fx->root));
    assert_false(exists("%s/.Job.Old.Sub.Deep", fx->root));
    assert_int_equal(maildir_folder_delete(fx->md, "Workshop", 0, &e), 0);
    assert_int_equal(maildir_list_folders(fx->md, &l, &e), 0);
    assert_int_equal(l->n, 1);
    assert_string_equal(l->v[0].name, "INBOX");
    free(l);
    /* Nothing left behind in the root's tmp/. */
    assert_int_equal(count_dir("%s/%s", fx->root, "tmp"), 0);
    maildir_ref_free(&ref);
}

/* ---- unique names for batched delivery ----------------------------------- */

#define UNIQ_THREADS 4
#define UNIQ_PER_THREAD 500

static void *uniq_thread(void *arg)
{
    char **names = arg;

    for (int i = 0; i < UNIQ_PER_THREAD; i++)
        names[i] = maildir_unique_name();
    return NULL;
}

static int str_qsort_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "<sec>.M<usec>P<pid>Q<n>.<host>", distinct across threads, never a '/'
 * or ':' (a name must be usable as a file name with info appended). */
static void unique_names_distinct_and_well_formed(void **state)
{
    char **names = xcalloc(UNIQ_THREADS * UNIQ_PER_THREAD, sizeof(char *));
    pthread_t th[UNIQ_THREADS];
    char pid_part[32];
    size_t n = UNIQ_THREADS * UNIQ_PER_THREAD;

    (void)state;
    for (int t = 0; t < UNIQ_THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, uniq_thread,
                                        names + (size_t)t * UNIQ_PER_THREAD), 0);
    for (int t = 0; t < UNIQ_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    snprintf(pid_part, sizeof(pid_part), "P%ldQ", (long)getpid());
    for (size_t i = 0; i < n; i++) {
        const char *p = names[i];
        char *end;

        assert_non_null(p);
        assert_null(strchr(p, '/'));
        assert_null(strchr(p, ':'));
        assert_true(strtoll(p, &end, 10) > 0);
        assert_true(strncmp(end, ".M", 2) == 0);
        assert_non_null(strstr(p, pid_part));
    }
    qsort(names, n, sizeof(char *), str_qsort_cmp);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(names[i - 1], names[i]) != 0);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* A name from maildir_unique_name() and one made by a delivery come from
 * the same counter: the delivered name's Q number is between two others. */
static void unique_names_share_delivery_counter(void **state)
{
    struct fx *fx = *state;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct err e;
    char *before = maildir_unique_name(), *after;
    unsigned long qb, qd, qa;

    assert_int_equal(maildir_deliver(fx->inbox, "x\n", 2, NULL, &ref, &e), 0);
    after = maildir_unique_name();
    qb = strtoul(strchr(before, 'Q') + 1, NULL, 10);
    qd = strtoul(strchr(ref.name, 'Q') + 1, NULL, 10);
    qa = strtoul(strchr(after, 'Q') + 1, NULL, 10);
    assert_true(qb < qd);
    assert_true(qd < qa);
    free(before);
    free(after);
    maildir_ref_free(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(info_roundtrip_every_flag_set),
        cmocka_unit_test(info_parse_cases),
        cmocka_unit_test(info_rewrite_keeps_unknown),
        FX_TEST(scan_finds_messages_and_skips_dot_files),
        FX_TEST(scan_empty_folder),
        FX_TEST(scan_100k_messages),
        FX_TEST(list_maildirpp_tree),
        FX_TEST(plain_maildir_is_just_inbox),
        FX_TEST(non_maildir_paths_fail_clearly),
        FX_TEST(new_to_cur_and_flag_renames),
        FX_TEST(renamed_behind_our_back),
        FX_TEST(base_name_ref_finds_message),
        FX_TEST(experimental_info_is_never_rewritten),
        FX_TEST(deliver_success_exact_bytes),
        FX_TEST(deliver_from_fd),
        FX_TEST(deliver_fails_at_every_step),
        FX_TEST(deliver_crashes_at_every_step),
        FX_TEST(deliver_1000_unique_names),
        FX_TEST(copy_keeps_info),
        FX_TEST(move_moves_and_follows_renames),
        FX_TEST(move_fails_at_every_step),
        FX_TEST(move_crashes_at_every_step),
        FX_TEST(folder_names_validated),
        FX_TEST(folder_create_rename_delete),
        cmocka_unit_test(unique_names_distinct_and_well_formed),
        FX_TEST(unique_names_share_delivery_counter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
