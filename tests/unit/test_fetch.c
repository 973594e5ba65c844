/*
 * Tests for mua/fetch without a server: account parsing (URLs and keys),
 * the state file (round trip, lock, torn and malformed lines, deletion,
 * compaction), recovery of pending entries against a Maildir folder, and
 * the notmuch steps after a run: `notmuch new` through a stand-in command
 * (arguments, exit status, stderr, signal, timeout, not found) and, when
 * built with notmuch, indexing files into a private database (new.tags,
 * files already indexed, missing files, files outside the mail root, a
 * missing database).  The download itself runs against Dovecot in
 * tests/integration/fetch.py.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#ifdef HAVE_NOTMUCH
#include <notmuch.h>
#endif

#include "buf.h"
#include "config.h"
#include "err.h"
#include "fetch.h"
#include "maildir.h"
#include "testutil.h"
#include "xalloc.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path)
{
    struct buf b = BUF_INIT;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(buf_read_all(&b, fd), 0);
    close(fd);
    char *s = xstrdup(buf_cstr(&b));
    buf_free(&b);
    return s;
}

/* ---- accounts ------------------------------------------------------------ */

static int parse(const char *url, const char *const *kv, struct fetch_account *a,
                 struct err *e)
{
    struct config_account ca = {0};
    size_t n = 0;
    int rc;

    while (kv && kv[2 * n])
        n++;
    ca.name = (char *)(uintptr_t)"acct";
    ca.url = (char *)(uintptr_t)url;
    ca.kv = xcalloc(n + 1, sizeof(*ca.kv));
    for (size_t i = 0; i < n; i++) {
        ca.kv[i].key = (char *)(uintptr_t)kv[2 * i];
        ca.kv[i].value = (char *)(uintptr_t)kv[2 * i + 1];
    }
    ca.n_kv = n;
    rc = fetch_account_parse(&ca, a, e);
    free(ca.kv);
    return rc;
}

static void test_account_urls(void **state)
{
    static const struct {
        const char *url;
        int ok;
        const char *user, *host;
        unsigned port;
        enum pop3_security sec;
    } cases[] = {
        {"pop://alice@pop.example/", 1, "alice", "pop.example", 110, POP3_STARTTLS},
        {"pop://alice@pop.example", 1, "alice", "pop.example", 110, POP3_STARTTLS},
        {"pops://bob@pop.example:1995/", 1, "bob", "pop.example", 1995, POP3_TLS},
        {"POPS://me%40example.org@[::1]/", 1, "me@example.org", "::1", 995, POP3_TLS},
        {"pop://pop.example/", 0, NULL, NULL, 0, 0},
        {"pop://@pop.example/", 0, NULL, NULL, 0, 0},
        {"pop://a@/", 0, NULL, NULL, 0, 0},
        {"pop://a@h:0/", 0, NULL, NULL, 0, 0},
        {"pop://a@h:65536/", 0, NULL, NULL, 0, 0},
        {"pop://a@h:x/", 0, NULL, NULL, 0, 0},
        {"pop://a@h/INBOX", 0, NULL, NULL, 0, 0},
        {"pop://a%4@h/", 0, NULL, NULL, 0, 0},
        {"pop://a%00b@h/", 0, NULL, NULL, 0, 0},
        {"imap://a@h/", 0, NULL, NULL, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fetch_account a;
        struct err e;
        int rc = parse(cases[i].url, NULL, &a, &e);

        if (!cases[i].ok) {
            if (rc != -1)
                fail_msg("%s accepted", cases[i].url);
            assert_int_equal(e.code, ERR_PARSE);
            continue;
        }
        if (rc != 0)
            fail_msg("%s: %s", cases[i].url, e.text);
        assert_string_equal(a.user, cases[i].user);
        assert_string_equal(a.host, cases[i].host);
        assert_int_equal(a.port, cases[i].port);
        assert_int_equal(a.security, cases[i].sec);
        fetch_account_free(&a);
    }
}

static void test_account_keys(void **state)
{
    static const struct {
        const char *kv[6];
        int ok;
    } cases[] = {
        {{"keep", "yes", NULL}, 1},
        {{"keep", "no", NULL}, 1},
        {{"keep", "30d", NULL}, 1},
        {{"keep", "12h", NULL}, 1},
        {{"keep", "sometimes", NULL}, 0},
        {{"keep", "30x", NULL}, 0},
        {{"tls", "none", NULL}, 1},
        {{"tls", "tls", NULL}, 1},
        {{"tls", "maybe", NULL}, 0},
        {{"max_size", "20M", NULL}, 1},
        {{"max_size", "big", NULL}, 0},
        {{"timeout", "30", NULL}, 1},
        {{"timeout", "0", NULL}, 0},
        {{"tls_fingerprint", "AB:CD", NULL}, 0},
        {{"folder", "", NULL}, 0},
        {{"filter", "procmail", "folder", "+Inbox", NULL}, 1},
        {{"colour", "blue", NULL}, 0},
        {{"notmuch", "no", NULL}, 1},
        {{"notmuch", "new", NULL}, 1},
        {{"notmuch", "new", "filter", "procmail", NULL}, 1},
        {{"notmuch", "yes", NULL}, 0},
        {{"notmuch", "", NULL}, 0},
#ifdef HAVE_NOTMUCH
        {{"notmuch", "index", NULL}, 1},
        {{"notmuch", "index", "filter", "procmail", NULL}, 0},
#else
        {{"notmuch", "index", NULL}, 0},
#endif
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fetch_account a;
        struct err e;
        int rc = parse("pop://u@h/", cases[i].kv, &a, &e);

        if (cases[i].ok) {
            if (rc != 0)
                fail_msg("case %zu: %s", i, e.text);
            fetch_account_free(&a);
        } else {
            if (rc != -1)
                fail_msg("case %zu accepted", i);
            assert_non_null(strstr(e.text, cases[i].kv[0]));   /* names the key */
        }
    }
    {
        struct fetch_account a;
        struct err e;
        const char *kv[] = {"keep", "30d", "tls", "none", "max_size", "1k", "timeout", "5",
                            NULL};

        assert_int_equal(parse("pops://u@h/", kv, &a, &e), 0);
        assert_int_equal(a.keep, FETCH_KEEP_DAYS);
        assert_int_equal(a.keep_seconds, 30 * 86400);
        assert_int_equal(a.security, POP3_PLAIN);
        assert_int_equal(a.max_size, 1024);
        assert_int_equal(a.timeout_ms, 5000);
        assert_int_equal(a.notmuch, FETCH_NOTMUCH_NO);   /* the default */
        fetch_account_free(&a);
    }
    {
        static const struct {
            const char *value;
            enum fetch_notmuch want;
        } modes[] = {
            {"no", FETCH_NOTMUCH_NO},
            {"new", FETCH_NOTMUCH_NEW},
#ifdef HAVE_NOTMUCH
            {"index", FETCH_NOTMUCH_INDEX},
#endif
        };

        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
            struct fetch_account a;
            struct err e;
            const char *kv[] = {"notmuch", modes[i].value, NULL};

            assert_int_equal(parse("pop://u@h/", kv, &a, &e), 0);
            assert_int_equal(a.notmuch, modes[i].want);
            fetch_account_free(&a);
        }
    }
}

/* The account command: stored generically, checked for pop, replaced by
 * name, problems reported with file:line. */
static void test_account_command(void **state)
{
    struct config *cfg = config_new();
    struct rc_diag diag;
    const struct config_account *a;

    (void)state;
    rc_diag_init(&diag);
    config_exec(cfg, "rc",
                "account one pop://u@h/ keep=no\n"
                "account two pop://u@h/ colour=red\n"
                "account three imap://u@h/ whatever=1\n"
                "account one pops://v@h/ folder=+X\n",
                &diag);
    assert_int_equal(cfg->n_accounts, 2);
    a = config_account_find(cfg, "one");
    assert_non_null(a);
    assert_string_equal(a->url, "pops://v@h/");
    assert_string_equal(config_account_get(a, "folder"), "+X");
    assert_null(config_account_get(a, "keep"));
    assert_non_null(config_account_find(cfg, "three"));
    assert_null(config_account_find(cfg, "two"));
    assert_int_equal(diag.n, 1);
    assert_non_null(strstr(diag.msgs[0], "rc:2:"));
    assert_non_null(strstr(diag.msgs[0], "colour"));
    rc_diag_free(&diag);
    config_free(cfg);

    /* notmuch: a bad value, and index with a filter, are errors at their
     * line; index without notmuch support too */
    cfg = config_new();
    rc_diag_init(&diag);
    config_exec(cfg, "rc",
                "account a pop://u@h/ notmuch=new\n"
                "account b pop://u@h/ notmuch=sometimes\n"
                "account c pop://u@h/ notmuch=index\n"
                "account d pop://u@h/ notmuch=index filter=procmail\n",
                &diag);
    assert_non_null(config_account_find(cfg, "a"));
    assert_null(config_account_find(cfg, "b"));
    assert_null(config_account_find(cfg, "d"));
#ifdef HAVE_NOTMUCH
    assert_non_null(config_account_find(cfg, "c"));
    assert_int_equal(diag.n, 2);
    assert_non_null(strstr(diag.msgs[1], "rc:4:"));
    assert_non_null(strstr(diag.msgs[1], "filter"));
#else
    assert_null(config_account_find(cfg, "c"));
    assert_int_equal(diag.n, 3);
    assert_non_null(strstr(diag.msgs[1], "rc:3:"));
    assert_non_null(strstr(diag.msgs[1], "built with notmuch"));
#endif
    assert_non_null(strstr(diag.msgs[0], "rc:2:"));
    assert_non_null(strstr(diag.msgs[0], "sometimes"));
    rc_diag_free(&diag);
    config_free(cfg);
}

/* ---- the state file ------------------------------------------------------- */

static void test_state_round_trip(void **state)
{
    char *dir = tu_tmpdir("fetch-state");
    char *path = xasprintf("%s/x.state", dir);
    struct fetch_state *s, *s2;
    const struct fetch_entry *en;
    struct err e;

    (void)state;
    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    assert_int_equal(fetch_state_count(s), 0);
    /* a second run is refused while the first holds the lock */
    assert_int_equal(fetch_state_open(path, &s2, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_true(e.temporary);
    for (int i = 0; i < 1000; i++) {
        char uidl[32], name[32];

        snprintf(uidl, sizeof(uidl), "u%04d", i);
        snprintf(name, sizeof(name), "n%04d", i);
        fetch_state_set(s, uidl, i % 3 == 0 ? FETCH_SEEN : FETCH_PENDING, 1000 + i, name);
        if (i % 3 == 2)
            fetch_state_set(s, uidl, FETCH_DONE, 1000 + i, name);
    }
    for (int i = 0; i < 1000; i += 2) {
        char uidl[32];

        snprintf(uidl, sizeof(uidl), "u%04d", i);
        fetch_state_drop(s, uidl);
    }
    assert_int_equal(fetch_state_count(s), 500);
    assert_int_equal(fetch_state_sync(s, &e), 0);
    fetch_state_close(s);

    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    assert_int_equal(fetch_state_count(s), 500);
    for (int i = 0; i < 1000; i++) {
        char uidl[32], name[32];

        snprintf(uidl, sizeof(uidl), "u%04d", i);
        snprintf(name, sizeof(name), "n%04d", i);
        en = fetch_state_get(s, uidl);
        if (i % 2 == 0) {
            assert_null(en);
            continue;
        }
        assert_non_null(en);
        assert_int_equal(en->first_seen, 1000 + i);
        if (i % 3 == 0) {
            assert_int_equal(en->state, FETCH_SEEN);
            assert_null(en->name);
        } else {
            assert_int_equal(en->state, i % 3 == 2 ? FETCH_DONE : FETCH_PENDING);
            assert_string_equal(en->name, name);
        }
    }
    fetch_state_close(s);

    /* a torn last line is dropped (and cut off the file) */
    {
        int fd = open(path, O_WRONLY | O_APPEND);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, "D u0001 5 tor", 13), 13);
        close(fd);
    }
    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    en = fetch_state_get(s, "u0001");
    assert_non_null(en);
    assert_int_equal(en->state, FETCH_PENDING);
    fetch_state_set(s, "u0001", FETCH_DONE, 7, "whole");
    assert_int_equal(fetch_state_sync(s, &e), 0);
    fetch_state_close(s);
    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    en = fetch_state_get(s, "u0001");
    assert_int_equal(en->state, FETCH_DONE);
    assert_string_equal(en->name, "whole");
    fetch_state_close(s);

    /* malformed lines are refused with file:line */
    static const char *const bad[] = {
        "correo-pop-state 1\nS u1 5\nQ u2 5\n",
        "correo-pop-state 1\nS u1\n",
        "correo-pop-state 1\nD u1 5\n",
        "correo-pop-state 1\nD u1 5 a/b\n",
        "correo-pop-state 1\nS u1 -5\n",
        "correo-pop-state 1\nS u1 5 extra\n",
        "something else\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(path, bad[i]);
        assert_int_equal(fetch_state_open(path, &s, &e), -1);
        assert_int_equal(e.code, ERR_PARSE);
        assert_non_null(strstr(e.text, i == 6 ? ":1:" : ":"));
    }
    write_file(path, bad[0]);
    assert_int_equal(fetch_state_open(path, &s, &e), -1);
    assert_non_null(strstr(e.text, "x.state:3:"));

    free(path);
    tu_rm_rf(dir);
    free(dir);
}

static bool keep_odd(void *ctx, const char *uidl)
{
    (void)ctx;
    return (uidl[strlen(uidl) - 1] - '0') % 2 == 1;
}

static void test_state_compact(void **state)
{
    char *dir = tu_tmpdir("fetch-compact");
    char *path = xasprintf("%s/c.state", dir);
    struct fetch_state *s;
    struct err e;
    char *text;

    (void)state;
    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    for (int i = 0; i < 10; i++) {
        char uidl[8];

        snprintf(uidl, sizeof(uidl), "m%d", i);
        fetch_state_set(s, uidl, FETCH_PENDING, 50, "n");
        fetch_state_set(s, uidl, FETCH_DONE, 50, "n");
    }
    assert_int_equal(fetch_state_sync(s, &e), 0);
    assert_int_equal(fetch_state_compact(s, keep_odd, NULL, &e), 0);
    assert_int_equal(fetch_state_count(s), 5);
    /* appends go to the new file */
    fetch_state_set(s, "m1", FETCH_DONE, 49, "z");
    assert_int_equal(fetch_state_sync(s, &e), 0);
    fetch_state_close(s);
    text = read_file(path);
    /* one line per entry, then the appended one */
    assert_int_equal(strncmp(text, "correo-pop-state 1\n", 19), 0);
    {
        int lines = 0;

        for (const char *p = text; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 1 + 5 + 1);
    }
    assert_null(strstr(text, "m0 "));
    assert_non_null(strstr(text, "D m9 50 n\n"));
    assert_non_null(strstr(text, "D m1 49 z\n"));
    free(text);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

static void test_state_recover(void **state)
{
    char *dir = tu_tmpdir("fetch-recover");
    char *box = xasprintf("%s/box", dir), *path = xasprintf("%s/r.state", dir), *p;
    struct maildir_folder *f;
    struct fetch_state *s;
    const struct fetch_entry *en;
    size_t done, dropped;
    struct err e;

    (void)state;
    assert_int_equal(mkdir(box, 0700), 0);
    for (const char *const *sub = (const char *const[]){"cur", "new", "tmp", NULL}; *sub; sub++) {
        p = xasprintf("%s/%s", box, *sub);
        assert_int_equal(mkdir(p, 0700), 0);
        free(p);
    }
    /* linked into new/; renamed into cur/ with flags by another program;
     * only in tmp/; nowhere; a name that is a prefix of another; a filter */
    p = xasprintf("%s/new/111.A.host", box);
    write_file(p, "a\n");
    free(p);
    p = xasprintf("%s/cur/222.B.host:2,S", box);
    write_file(p, "b\n");
    free(p);
    p = xasprintf("%s/tmp/333.C.host", box);
    write_file(p, "c\n");
    free(p);
    p = xasprintf("%s/new/555.E.hostX", box);
    write_file(p, "e\n");
    free(p);
    assert_int_equal(maildir_folder_open_path(box, &f, &e), 0);
    assert_int_equal(fetch_state_open(path, &s, &e), 0);
    fetch_state_set(s, "ua", FETCH_PENDING, 1, "111.A.host");
    fetch_state_set(s, "ub", FETCH_PENDING, 2, "222.B.host");
    fetch_state_set(s, "uc", FETCH_PENDING, 3, "333.C.host");
    fetch_state_set(s, "ud", FETCH_PENDING, 4, "444.D.host");
    fetch_state_set(s, "ue", FETCH_PENDING, 5, "555.E.host");
    fetch_state_set(s, "uf", FETCH_PENDING, 6, "-");
    fetch_state_set(s, "ug", FETCH_DONE, 7, "777.G.host");
    assert_int_equal(fetch_state_recover(s, f, &done, &dropped, &e), 0);
    assert_int_equal(done, 2);
    assert_int_equal(dropped, 4);
    en = fetch_state_get(s, "ua");
    assert_int_equal(en->state, FETCH_DONE);
    assert_string_equal(en->name, "111.A.host");
    assert_int_equal(fetch_state_get(s, "ub")->state, FETCH_DONE);
    assert_int_equal(fetch_state_get(s, "uc")->state, FETCH_SEEN);
    assert_int_equal(fetch_state_get(s, "uc")->first_seen, 3);
    assert_int_equal(fetch_state_get(s, "ud")->state, FETCH_SEEN);
    assert_int_equal(fetch_state_get(s, "ue")->state, FETCH_SEEN);
    assert_int_equal(fetch_state_get(s, "uf")->state, FETCH_SEEN);
    assert_int_equal(fetch_state_get(s, "ug")->state, FETCH_DONE);
    p = xasprintf("%s/tmp/333.C.host", box);
    assert_int_equal(access(p, F_OK), -1);   /* the partial file is gone */
    free(p);
    fetch_state_close(s);
    maildir_folder_close(f);
    free(box);
    free(path);
    tu_rm_rf(dir);
    free(dir);
}

static void test_state_path(void **state)
{
    struct fetch_account a = {0}, b;
    char *p1, *p2;

    (void)state;
    a.name = (char *)(uintptr_t)"acct";
    a.host = (char *)(uintptr_t)"h";
    a.user = (char *)(uintptr_t)"../../etc";
    a.port = 110;
    b = a;
    b.port = 995;
    p1 = fetch_state_path("/s", &a);
    p2 = fetch_state_path("/s", &b);
    assert_string_not_equal(p1, p2);
    assert_int_equal(strncmp(p1, "/s/", 3), 0);
    assert_null(strstr(p1, ".."));
    assert_int_equal(strlen(p1), 3 + 32 + 6);
    free(p1);
    free(p2);
}

/* ---- notmuch -------------------------------------------------------------- */

static void write_exec(const char *path, const char *text)
{
    write_file(path, text);
    assert_int_equal(chmod(path, 0700), 0);
}

/* `notmuch new` is the command from PATH (a stand-in here), run without a
 * shell with exactly "new --quiet"; what went wrong is reported. */
static void test_notmuch_new(void **state)
{
    static const struct {
        const char *script;        /* NULL: no notmuch in PATH */
        int timeout_ms;
        int rc;
        const char *want[3];       /* in the error text */
    } cases[] = {
        {"#!/bin/sh\nprintf '%s|' \"$@\" > \"$0.args\"\necho 'Added 3 new messages'\n", 10000,
         0, {NULL}},
        {"#!/bin/sh\necho 'Error: A Xapian exception occurred' >&2\nexit 1\n", 10000, -1,
         {"notmuch new", "exit status 1", "Xapian exception"}},
        {"#!/bin/sh\nprintf 'bad\\033[31m red\\n' >&2\nexit 4\n", 10000, -1,
         {"exit status 4", "bad", NULL}},
        {"#!/bin/sh\nkill -9 $$\n", 10000, -1, {"signal 9", NULL}},
        {"#!/bin/sh\nexec sleep 30\n", 300, -1, {"did not finish", NULL}},
        {NULL, 10000, -1, {"notmuch new", NULL}},
    };
    const char *old = getenv("PATH");
    char *saved = old ? xstrdup(old) : NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *dir = tu_tmpdir("fetch-nmnew");
        char *bin = xasprintf("%s/notmuch", dir);
        struct err e;
        int rc;
        char *path = cases[i].script != NULL && saved != NULL
                         ? xasprintf("%s:%s", dir, saved) : xstrdup(dir);

        if (cases[i].script != NULL)
            write_exec(bin, cases[i].script);
        assert_int_equal(setenv("PATH", path, 1), 0);
        free(path);
        err_clear(&e);
        rc = fetch_notmuch_new(cases[i].timeout_ms, &e);
        if (saved)
            assert_int_equal(setenv("PATH", saved, 1), 0);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d (%s)", i, rc, e.text);
        for (size_t k = 0; k < 3 && cases[i].want[k]; k++)
            if (strstr(e.text, cases[i].want[k]) == NULL)
                fail_msg("case %zu: \"%s\" not in \"%s\"", i, cases[i].want[k], e.text);
        assert_null(strchr(e.text, '\033'));   /* stderr is sanitized */
        if (i == 0) {
            char *args = xasprintf("%s.args", bin);
            char *got = read_file(args);

            assert_string_equal(got, "new|--quiet|");
            free(got);
            free(args);
        }
        tu_rm_rf(dir);
        free(bin);
        free(dir);
    }
    free(saved);
}

#ifdef HAVE_NOTMUCH

static char *write_message(const char *dir, const char *name, const char *id)
{
    char *path = xasprintf("%s/%s", dir, name);
    char *text = xasprintf("From: A <a@example.org>\nTo: b@example.org\nSubject: m %s\n"
                           "Message-ID: <%s@test.example>\n"
                           "Date: Mon, 23 Nov 2026 10:00:00 +0000\n\nbody %s\n", id, id, id);

    write_file(path, text);
    free(text);
    return path;
}

/* The tags of the message in file path, joined by blanks (sorted by
 * notmuch), or NULL when the file is not in the database. */
static char *tags_of(const char *dbpath, const char *path)
{
    notmuch_database_t *db = NULL;
    notmuch_message_t *m = NULL;
    notmuch_tags_t *t;
    struct buf b = BUF_INIT;
    char *out = NULL;

    assert_int_equal(notmuch_database_open_with_config(dbpath, NOTMUCH_DATABASE_MODE_READ_ONLY,
                                                       NULL, NULL, &db, NULL),
                     NOTMUCH_STATUS_SUCCESS);
    assert_int_equal(notmuch_database_find_message_by_filename(db, path, &m),
                     NOTMUCH_STATUS_SUCCESS);
    if (m != NULL) {
        for (t = notmuch_message_get_tags(m); notmuch_tags_valid(t);
             notmuch_tags_move_to_next(t))
            assert_int_equal(buf_printf(&b, "%s%s", b.len ? " " : "", notmuch_tags_get(t)), 0);
        out = xstrdup(buf_cstr(&b));
        notmuch_message_destroy(m);
    }
    notmuch_database_destroy(db);
    buf_free(&b);
    return out;
}

static unsigned count_messages(const char *dbpath)
{
    notmuch_database_t *db = NULL;
    notmuch_query_t *q;
    unsigned n = 0;

    assert_int_equal(notmuch_database_open_with_config(dbpath, NOTMUCH_DATABASE_MODE_READ_ONLY,
                                                       NULL, NULL, &db, NULL),
                     NOTMUCH_STATUS_SUCCESS);
    q = notmuch_query_create(db, "*");
    assert_non_null(q);
    assert_int_equal(notmuch_query_count_messages(q, &n), NOTMUCH_STATUS_SUCCESS);
    notmuch_query_destroy(q);
    notmuch_database_destroy(db);
    return n;
}

static void remove_tag(const char *dbpath, const char *path, const char *tag)
{
    notmuch_database_t *db = NULL;
    notmuch_message_t *m = NULL;

    assert_int_equal(notmuch_database_open_with_config(dbpath, NOTMUCH_DATABASE_MODE_READ_WRITE,
                                                       NULL, NULL, &db, NULL),
                     NOTMUCH_STATUS_SUCCESS);
    assert_int_equal(notmuch_database_find_message_by_filename(db, path, &m),
                     NOTMUCH_STATUS_SUCCESS);
    assert_non_null(m);
    assert_int_equal(notmuch_message_remove_tag(m, tag), NOTMUCH_STATUS_SUCCESS);
    notmuch_message_destroy(m);
    assert_int_equal(notmuch_database_destroy(db), NOTMUCH_STATUS_SUCCESS);
}

/* Exactly the given files are added, with new.tags (and "unread" from the
 * Maildir flags); indexing again changes nothing; failures are counted and
 * named while the other files are still indexed. */
static void test_notmuch_index(void **state)
{
    char *dir = tu_tmpdir("fetch-nmindex");
    char *root = xasprintf("%s/mail", dir), *cfgpath = xasprintf("%s/notmuch-config", dir);
    char *newdir = xasprintf("%s/mail/new", dir), *outside = xasprintf("%s/elsewhere", dir);
    char *cfgtext, *p[6], *t, *missing, *gone;
    const char *old = getenv("NOTMUCH_CONFIG");
    char *saved = old ? xstrdup(old) : NULL;
    notmuch_database_t *db = NULL;
    size_t done = 99;
    struct err e;

    (void)state;
    assert_int_equal(mkdir(root, 0700), 0);
    for (const char *const *sub = (const char *const[]){"cur", "new", "tmp", NULL}; *sub; sub++) {
        char *d = xasprintf("%s/%s", root, *sub);

        assert_int_equal(mkdir(d, 0700), 0);
        free(d);
    }
    assert_int_equal(mkdir(outside, 0700), 0);
    cfgtext = xasprintf("[database]\npath=%s\n[new]\ntags=inbox;fetched;\n"
                        "[maildir]\nsynchronize_flags=true\n", root);
    write_file(cfgpath, cfgtext);
    free(cfgtext);
    assert_int_equal(setenv("NOTMUCH_CONFIG", cfgpath, 1), 0);

    /* no database yet: an error, nothing counted */
    p[0] = write_message(newdir, "1.A.host", "a");
    assert_int_equal(fetch_notmuch_index((const char *const *)p, 1, &done, &e), -1);
    assert_int_equal(done, 0);
    assert_non_null(strstr(e.text, "notmuch database"));

    assert_int_equal(notmuch_database_create_with_config(root, cfgpath, NULL, &db, NULL),
                     NOTMUCH_STATUS_SUCCESS);
    assert_int_equal(notmuch_database_destroy(db), NOTMUCH_STATUS_SUCCESS);
    p[1] = write_message(newdir, "2.B.host", "b");
    p[2] = write_message(newdir, "3.C.host", "c");
    p[3] = write_message(newdir, "not-indexed.D.host", "d");   /* never passed */
    assert_int_equal(fetch_notmuch_index((const char *const *)p, 3, &done, &e), 0);
    assert_int_equal(done, 3);
    assert_int_equal(count_messages(root), 3);
    for (int i = 0; i < 3; i++) {
        t = tags_of(root, p[i]);
        assert_non_null(t);
        assert_string_equal(t, "fetched inbox unread");
        free(t);
    }
    t = tags_of(root, p[3]);
    assert_null(t);

    /* again, after a tag was taken off: already indexed, left as it is */
    remove_tag(root, p[1], "inbox");
    assert_int_equal(fetch_notmuch_index((const char *const *)p, 3, &done, &e), 0);
    assert_int_equal(done, 3);
    assert_int_equal(count_messages(root), 3);
    t = tags_of(root, p[1]);
    assert_string_equal(t, "fetched unread");
    free(t);

    /* a missing file and one outside the mail root fail and are named; the
     * rest is indexed */
    missing = xasprintf("%s/new/missing.host", root);
    gone = write_message(outside, "5.E.host", "e");
    p[4] = write_message(newdir, "6.F.host", "f");
    {
        const char *batch[] = {missing, p[4], gone};

        assert_int_equal(fetch_notmuch_index(batch, 3, &done, &e), -1);
        assert_int_equal(done, 1);
        assert_non_null(strstr(e.text, "2 of 3 files not indexed"));
        assert_non_null(strstr(e.text, "missing.host"));
        assert_non_null(strstr(e.text, "No such file"));
        assert_int_equal(fetch_notmuch_index(batch + 2, 1, &done, &e), -1);
        assert_int_equal(done, 0);
        assert_non_null(strstr(e.text, "mail root"));
    }
    assert_int_equal(count_messages(root), 4);
    t = tags_of(root, p[4]);
    assert_string_equal(t, "fetched inbox unread");
    free(t);

    /* nothing to index: the database is not even opened */
    assert_int_equal(setenv("NOTMUCH_CONFIG", "/nonexistent/notmuch-config", 1), 0);
    assert_int_equal(fetch_notmuch_index(NULL, 0, &done, &e), 0);
    assert_int_equal(done, 0);
    assert_int_equal(fetch_notmuch_index((const char *const *)p, 1, &done, &e), -1);
    assert_non_null(strstr(e.text, "notmuch database"));

    if (saved)
        assert_int_equal(setenv("NOTMUCH_CONFIG", saved, 1), 0);
    else
        assert_int_equal(unsetenv("NOTMUCH_CONFIG"), 0);
    for (int i = 0; i < 5; i++)
        free(p[i]);
    free(missing);
    free(gone);
    free(saved);
    free(outside);
    free(newdir);
    free(cfgpath);
    free(root);
    tu_rm_rf(dir);
    free(dir);
}

#else

static void test_notmuch_index(void **state)
{
    const char *paths[] = {"/x/new/1"};
    size_t done = 9;
    struct err e;

    (void)state;
    assert_int_equal(fetch_notmuch_index(paths, 1, &done, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(done, 0);
}

#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_account_urls),
        cmocka_unit_test(test_account_keys),
        cmocka_unit_test(test_account_command),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_state_compact),
        cmocka_unit_test(test_state_recover),
        cmocka_unit_test(test_state_path),
        cmocka_unit_test(test_notmuch_new),
        cmocka_unit_test(test_notmuch_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
