/*
 * Unit tests for localserver/pop3_store: a real Maildir in a private
 * temporary directory, listed, read, locked and updated through the store,
 * with the UIDs checked against what lib/uidlist reads back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"
#include "pop3_store.h"
#include "testutil.h"
#include "uidlist.h"
#include "xalloc.h"

struct fx {
    char *dir;      /* the temporary directory */
    char *md;       /* the Maildir root inside it */
};

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Put a message into new/ or cur/ under the given name. */
static void put(const struct fx *f, const char *sub, const char *name, const char *data)
{
    char *p = xasprintf("%s/%s/%s", f->md, sub, name);
    write_file(p, data, strlen(data));
    free(p);
}

static bool exists(const struct fx *f, const char *sub, const char *name)
{
    char *p = xasprintf("%s/%s/%s", f->md, sub, name);
    bool r = access(p, F_OK) == 0;
    free(p);
    return r;
}

static int setup(void **state)
{
    struct fx *f = XNEW(struct fx);

    f->dir = tu_tmpdir("pop3store");
    f->md = xasprintf("%s/Maildir", f->dir);
    assert_int_equal(mkdir(f->md, 0700), 0);
    for (int i = 0; i < 3; i++) {
        static const char *subs[] = {"cur", "new", "tmp"};
        char *p = xasprintf("%s/%s", f->md, subs[i]);
        assert_int_equal(mkdir(p, 0700), 0);
        free(p);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->md);
    free(f);
    return 0;
}

static uint64_t crlf_size(const char *s)
{
    bool after_cr = false;
    return pop3_crlf_octets(s, strlen(s), &after_cr);
}

static uint32_t uid_of(const struct fx *f, const char *base, uint32_t *uidvalidity)
{
    struct uidlist *ul;
    struct err e;

    assert_int_equal(uidlist_open(f->md, NULL, &ul, &e), 0);
    const struct uidlist_rec *r = uidlist_by_name(ul, base);
    assert_non_null(r);
    uint32_t uid = r->uid;
    *uidvalidity = ul->uidvalidity;
    uidlist_free(ul);
    return uid;
}

#define MA "Subject: a\n\nbody a\n.dot\n"
#define MB "Subject: b\r\n\r\nbody b\r\n"
#define MC "Subject: c\n\nno final newline"

static void test_missing_maildir(void **state)
{
    struct fx *f = *state;
    char *nowhere = xasprintf("%s/none", f->dir);
    struct pop3_store *st;
    struct pop3_msg *msgs;
    size_t n = 99;
    struct err e;

    assert_int_equal(pop3_store_open(nowhere, &st, &msgs, &n, &e), POP3_OPEN_OK);
    assert_int_equal(n, 0);
    assert_null(msgs);
    assert_int_equal(pop3_store_count(st), 0);
    assert_int_equal(pop3_store_msg_open(st, 0, &e), -1);
    assert_int_equal(pop3_store_update(st, NULL, 0, NULL, &e), 0);
    pop3_store_close(st);
    /* nothing was created */
    assert_int_equal(access(nowhere, F_OK), -1);
    free(nowhere);
}

static void test_list_order_sizes_uidls(void **state)
{
    struct fx *f = *state;
    struct pop3_store *st;
    struct pop3_msg *msgs;
    size_t n;
    struct err e;

    /* Dovecot's order: by the delivery time at the start of the name. */
    put(f, "new", "1000.M1P1Q1.host", MA);
    put(f, "cur", "1001.M1P1Q2.host,S=20,W=123:2,S", MB);   /* W trusted */
    put(f, "new", "1002.M1P1Q3.host", MC);

    assert_int_equal(pop3_store_open(f->md, &st, &msgs, &n, &e), POP3_OPEN_OK);
    assert_int_equal(n, 3);
    assert_int_equal(pop3_store_count(st), 3);
    assert_int_equal(msgs[0].size, crlf_size(MA));
    assert_int_equal(msgs[1].size, 123);
    assert_int_equal(msgs[2].size, crlf_size(MC));

    static const char *bases[] = {"1000.M1P1Q1.host", "1001.M1P1Q2.host,S=20,W=123",
                                  "1002.M1P1Q3.host"};
    uint32_t prev = 0;
    for (size_t i = 0; i < 3; i++) {
        uint32_t uv, uid = uid_of(f, bases[i], &uv);
        char want[32];
        snprintf(want, sizeof want, "%08X%08X", uid, uv);
        assert_string_equal(msgs[i].uidl, want);
        assert_true(uid > prev);
        prev = uid;
    }

    /* Reading gives the file's bytes unchanged (the session converts). */
    static const char *bodies[] = {MA, MB, MC};
    for (size_t i = 0; i < 3; i++) {
        char buf[256];
        size_t got = 0;
        ssize_t r;
        assert_int_equal(pop3_store_msg_open(st, i, &e), 0);
        while ((r = pop3_store_msg_read(st, buf + got, 3)) > 0)
            got += (size_t)r;
        assert_int_equal(r, 0);
        assert_int_equal(got, strlen(bodies[i]));
        assert_memory_equal(buf, bodies[i], got);
    }
    pop3_store_msg_close(st);
    assert_int_equal(pop3_store_msg_read(st, (char[4]){0}, 4), -1);
    assert_int_equal(pop3_store_msg_open(st, 3, &e), -1);
    pop3_msgs_free(msgs, n);

    /* A second listing: the same UIDLs (stable). */
    pop3_store_close(st);
    struct pop3_msg *again;
    size_t n2;
    assert_int_equal(pop3_store_open(f->md, &st, &again, &n2, &e), POP3_OPEN_OK);
    assert_int_equal(n2, 3);
    for (size_t i = 0; i < 3; i++) {
        uint32_t uv, uid = uid_of(f, bases[i], &uv);
        char want[32];
        snprintf(want, sizeof want, "%08X%08X", uid, uv);
        assert_string_equal(again[i].uidl, want);
    }
    pop3_msgs_free(again, n2);
    pop3_store_close(st);
}

static void test_uidlist_fields(void **state)
{
    struct fx *f = *state;
    struct pop3_store *st;
    struct pop3_msg *msgs;
    size_t n;
    struct err e;
    char *ul = xasprintf("%s/dovecot-uidlist", f->md);
    const char *text = "3 V1234 N10 G0123456789abcdef0123456789abcdef\n"
                       "7 W77 Pold-uidl-from-migration :1000.M1P1Q1.host\n"
                       "8 :1001.M1P1Q2.host\n";

    write_file(ul, text, strlen(text));
    put(f, "new", "1000.M1P1Q1.host", MA);
    put(f, "cur", "1001.M1P1Q2.host:2,", MB);
    assert_int_equal(pop3_store_open(f->md, &st, &msgs, &n, &e), POP3_OPEN_OK);
    assert_int_equal(n, 2);
    assert_string_equal(msgs[0].uidl, "old-uidl-from-migration");
    assert_int_equal(msgs[0].size, 77);
    assert_string_equal(msgs[1].uidl, "00000008000004D2");
    assert_int_equal(msgs[1].size, crlf_size(MB));
    pop3_msgs_free(msgs, n);
    pop3_store_close(st);
    free(ul);
}

static void test_lock(void **state)
{
    struct fx *f = *state;
    struct pop3_store *a, *b;
    struct pop3_msg *msgs;
    size_t n;
    struct err e;

    put(f, "new", "1000.M1P1Q1.host", MA);
    assert_int_equal(pop3_store_open(f->md, &a, &msgs, &n, &e), POP3_OPEN_OK);
    pop3_msgs_free(msgs, n);
    assert_int_equal(pop3_store_open(f->md, &b, &msgs, &n, &e), POP3_OPEN_LOCKED);
    assert_null(b);
    assert_true(strstr(e.text, "locked") != NULL);
    pop3_store_close(a);
    assert_int_equal(pop3_store_open(f->md, &b, &msgs, &n, &e), POP3_OPEN_OK);
    assert_int_equal(n, 1);
    pop3_msgs_free(msgs, n);
    pop3_store_close(b);
}

static size_t count_dir(const struct fx *f, const char *sub)
{
    char *p = xasprintf("%s/%s", f->md, sub);
    DIR *d = opendir(p);
    struct dirent *de;
    size_t k = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        k += de->d_name[0] != '.';
    closedir(d);
    free(p);
    return k;
}

static void test_update(void **state)
{
    struct fx *f = *state;
    struct pop3_store *st;
    struct pop3_msg *msgs;
    size_t n, flag_failures = 9;
    struct err e;

    put(f, "new", "1000.M1P1Q1.host", MA);          /* deleted */
    put(f, "cur", "1001.M1P1Q2.host:2,F", MB);      /* retrieved: gets S, keeps F */
    put(f, "new", "1002.M1P1Q3.host", MC);          /* retrieved: new -> cur with S */
    put(f, "new", "1003.M1P1Q4.host", MA);          /* untouched */
    put(f, "new", "1004.M1P1Q5.host", MB);          /* deleted, but gone first */
    put(f, "new", "1005.M1P1Q6.host", MC);          /* deleted, renamed by another program */
    assert_int_equal(pop3_store_open(f->md, &st, &msgs, &n, &e), POP3_OPEN_OK);
    assert_int_equal(n, 6);
    pop3_msgs_free(msgs, n);

    char *gone = xasprintf("%s/new/1004.M1P1Q5.host", f->md);
    assert_int_equal(unlink(gone), 0);
    free(gone);
    char *from = xasprintf("%s/new/1005.M1P1Q6.host", f->md);
    char *to = xasprintf("%s/cur/1005.M1P1Q6.host:2,S", f->md);
    assert_int_equal(rename(from, to), 0);
    free(from);
    free(to);

    const unsigned char marks[6] = {
        POP3_MARK_DELETED | POP3_MARK_RETRIEVED, POP3_MARK_RETRIEVED, POP3_MARK_RETRIEVED,
        0, POP3_MARK_DELETED, POP3_MARK_DELETED,
    };
    assert_int_equal(pop3_store_update(st, marks, 6, &flag_failures, &e), 0);
    assert_int_equal(flag_failures, 0);
    pop3_store_close(st);

    assert_false(exists(f, "new", "1000.M1P1Q1.host"));
    assert_true(exists(f, "cur", "1001.M1P1Q2.host:2,FS"));
    assert_false(exists(f, "new", "1002.M1P1Q3.host"));
    assert_true(exists(f, "cur", "1002.M1P1Q3.host:2,S"));
    assert_true(exists(f, "new", "1003.M1P1Q4.host"));
    assert_false(exists(f, "cur", "1005.M1P1Q6.host:2,S"));
    assert_int_equal(count_dir(f, "new"), 1);
    assert_int_equal(count_dir(f, "cur"), 2);
}

static void test_no_update_no_change(void **state)
{
    struct fx *f = *state;
    struct pop3_store *st;
    struct pop3_msg *msgs;
    size_t n;
    struct err e;

    put(f, "new", "1000.M1P1Q1.host", MA);
    put(f, "new", "1001.M1P1Q2.host", MB);
    assert_int_equal(pop3_store_open(f->md, &st, &msgs, &n, &e), POP3_OPEN_OK);
    pop3_msgs_free(msgs, n);
    assert_int_equal(pop3_store_msg_open(st, 0, &e), 0);
    /* A session that ends without QUIT: close only. */
    pop3_store_close(st);
    assert_true(exists(f, "new", "1000.M1P1Q1.host"));
    assert_true(exists(f, "new", "1001.M1P1Q2.host"));
    assert_int_equal(count_dir(f, "cur"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_maildir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_order_sizes_uidls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidlist_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_update_no_change, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
