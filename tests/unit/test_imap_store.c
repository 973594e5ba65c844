/*
 * Unit tests for localserver/imap_store: a real Maildir++ tree in a private
 * temporary directory; names, LIST, subscriptions, folder operations, and
 * an open folder changed both through the store and behind its back.
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

#include "imap_store.h"
#include "maildir.h"
#include "testutil.h"
#include "uidlist.h"
#include "xalloc.h"

struct fx {
    char *dir;
    char *md;
    struct imap_store *st;
};

static void write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(data);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static char *read_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *s;
    long n;
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    s = xmalloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    s[n] = 0;
    fclose(fp);
    return s;
}

/* Put a message into folder dir ("" for INBOX, ".Sent") sub/name. */
static void put(const struct fx *f, const char *folder, const char *sub, const char *name,
                const char *data)
{
    char *p = xasprintf("%s/%s%s%s/%s", f->md, folder, *folder ? "/" : "", sub, name);
    write_file(p, data);
    free(p);
}

static bool exists(const struct fx *f, const char *rel)
{
    char *p = xasprintf("%s/%s", f->md, rel);
    struct stat sb;
    bool r = lstat(p, &sb) == 0;
    free(p);
    return r;
}

/* Number of files in folder/sub. */
static size_t count_files(const struct fx *f, const char *folder, const char *sub)
{
    char *p = xasprintf("%s/%s%s%s", f->md, folder, *folder ? "/" : "", sub);
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

/* The only file in folder/sub whose name starts with prefix, or NULL. */
static char *find_file(const struct fx *f, const char *folder, const char *sub,
                       const char *prefix)
{
    char *p = xasprintf("%s/%s%s%s", f->md, folder, *folder ? "/" : "", sub);
    DIR *d = opendir(p);
    struct dirent *de;
    char *r = NULL;
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            r = xstrdup(de->d_name);
    closedir(d);
    free(p);
    return r;
}

static int setup(void **state)
{
    struct fx *f = XNEW(struct fx);
    struct err e;
    char *p;

    f->dir = tu_tmpdir("imapstore");
    f->md = xasprintf("%s/Maildir", f->dir);
    assert_int_equal(mkdir(f->md, 0700), 0);
    p = xasprintf("%s/cur", f->md);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/new", f->md);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/tmp", f->md);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    assert_int_equal(imap_store_open(f->md, NULL, &f->st, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    imap_store_close(f->st);
    tu_rm_rf(f->dir);
    free(f->dir);
    free(f->md);
    free(f);
    return 0;
}

/* ---- names ------------------------------------------------------------ */

static void test_names_good(void **state)
{
    static const struct { const char *name, *folder; } t[] = {
        {"INBOX", "INBOX"}, {"inbox", "INBOX"}, {"Sent", "Sent"},
        {"Lists.dev", "Lists.dev"}, {"Caf\xc3\xa9", "Caf&AOk-"},
        {"Caf\xc3\xa9.sub", "Caf&AOk-.sub"}, {"inbox.x", "INBOX.x"},
        {"a&b", "a&-b"}, {"\xe6\x97\xa5\xe6\x9c\xac", "&ZeVnLA-"}, {"with space", "with space"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < ARRAY_LEN(t); i++) {
        char *folder = NULL, *back = NULL;
        struct err e;
        assert_int_equal(imap_store_name_to_folder(t[i].name, &folder, &e), 0);
        assert_string_equal(folder, t[i].folder);
        assert_int_equal(imap_store_folder_to_name(folder, &back, &e), 0);
        if (strcmp(t[i].folder, "INBOX") == 0 || strncmp(t[i].folder, "INBOX.", 6) == 0)
            assert_int_equal(strncasecmp(back, t[i].name, strlen(back)), 0);
        else
            assert_string_equal(back, t[i].name);
        free(folder);
        free(back);
    }
}

static void test_names_refused(void **state)
{
    char long_name[400];
    const char *t[] = {
        "", "a/b", "/etc", "..", "../x", "a..b", ".a", "a.", ".", "~", "~root", "a~b",
        "a\x01" "b", "a\tb", "a\nb", "a\x7f", "a\xc2\x85", "x*", "x%", "a\\b", "\xff",
        "\xc3", "\xed\xa0\x80", "a.\xc3\xa9\xff", long_name, "INBOX.",
    };
    size_t i;
    (void)state;
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = 0;
    for (i = 0; i < ARRAY_LEN(t); i++) {
        char *folder = (char *)1;
        struct err e;
        if (imap_store_name_to_folder(t[i], &folder, &e) != -1)
            fail_msg("name %zu accepted: %s", i, folder);
        assert_int_equal(e.code, ERR_INVAL);
        assert_null(folder);
    }
    /* folder names on disk that are not canonical modified UTF-7 */
    {
        const char *bad[] = {"Caf&AOk", "a..b", "&AGE-", "x&Jjo!-", "a/b", "~x"};
        for (i = 0; i < ARRAY_LEN(bad); i++) {
            char *name = NULL;
            struct err e;
            assert_int_equal(imap_store_folder_to_name(bad[i], &name, &e), -1);
            assert_null(name);
        }
    }
}

static void test_symlinks_refused(void **state)
{
    struct fx *f = *state;
    char *outside = xasprintf("%s/outside", f->dir), *p, *link;
    struct imap_view *v = NULL;
    struct imap_status stt;
    struct imap_list l;
    struct err e;
    size_t i;

    /* a complete Maildir outside the user's, reachable by a symlink */
    assert_int_equal(mkdir(outside, 0700), 0);
    p = xasprintf("%s/cur", outside);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/new", outside);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/tmp", outside);
    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
    p = xasprintf("%s/new/1.secret", outside);
    write_file(p, "Subject: secret\n\nother user's mail\n");
    free(p);
    link = xasprintf("%s/.Evil", f->md);
    assert_int_equal(symlink(outside, link), 0);
    /* and a plain file posing as a folder */
    p = xasprintf("%s/.File", f->md);
    write_file(p, "x");
    free(p);

    assert_int_equal(imap_view_open(f->st, "Evil", false, &v, &e), -1);
    assert_null(v);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(imap_store_status(f->st, "Evil", &stt, &e), -1);
    assert_int_equal(imap_store_status(f->st, "File", &stt, &e), -1);
    assert_int_equal(imap_store_create(f->st, "Evil.sub", &e), -1);
    assert_false(exists(f, ".Evil.sub"));
    assert_int_equal(imap_store_delete(f->st, "Evil", &e), -1);
    assert_int_equal(imap_store_append(f->st, "Evil", "x\n", 2, NULL, 0, 0, &stt.uidvalidity,
                                       &stt.uidnext, &e), -1);
    assert_int_equal(imap_store_list(f->st, "", "*", 0, &l, &e), 0);
    for (i = 0; i < l.n; i++) {
        assert_string_not_equal(l.v[i].name, "Evil");
        assert_string_not_equal(l.v[i].name, "File");
    }
    imap_list_free(&l);
    /* nothing was written into the outside directory */
    p = xasprintf("%s/new/1.secret", outside);
    assert_int_equal(access(p, F_OK), 0);
    free(p);
    p = xasprintf("%s/dovecot-uidlist", outside);
    assert_int_equal(access(p, F_OK), -1);
    free(p);

    /* a message file that is a symlink is not read */
    {
        char *target = xasprintf("%s/new/1.secret", outside);
        char *ml = xasprintf("%s/cur/2.link:2,", f->md);
        int fd = -1;
        assert_int_equal(symlink(target, ml), 0);
        assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
        if (v->n > 0)
            assert_int_equal(imap_view_open_msg(v, 0, &fd, &e), -1);
        imap_view_close(v);
        free(target);
        free(ml);
    }
    free(link);
    free(outside);
}

/* ---- LIST ------------------------------------------------------------- */

static void make_tree(struct fx *f)
{
    struct err e;
    struct maildir *md;
    assert_int_equal(imap_store_create(f->st, "Sent", &e), 0);
    assert_int_equal(imap_store_create(f->st, "Lists.dev", &e), 0);
    assert_int_equal(imap_store_create(f->st, "Lists.ops", &e), 0);
    assert_int_equal(imap_store_create(f->st, "a.b.c", &e), 0);
    assert_int_equal(imap_store_create(f->st, "Caf\xc3\xa9", &e), 0);
    /* a parent that exists only through its child (as Dovecot makes them) */
    assert_int_equal(maildir_open(f->md, &md, &e), 0);
    assert_int_equal(maildir_folder_create(md, "x.y", &e), 0);
    maildir_close(md);
}

static char *list_str(struct fx *f, const char *ref, const char *pat, unsigned sel)
{
    struct imap_list l;
    struct buf b = BUF_INIT;
    struct err e;
    size_t i;
    assert_int_equal(imap_store_list(f->st, ref, pat, sel, &l, &e), 0);
    for (i = 0; i < l.n; i++) {
        assert_int_equal(buf_printf(&b, "%s%s", i ? " " : "", l.v[i].name), 0);
        assert_int_equal(imap_list_flags_write(&l.v[i], &b), 0);
    }
    imap_list_free(&l);
    return buf_steal(&b, NULL);
}

static void test_list_patterns(void **state)
{
    struct fx *f = *state;
    static const struct { const char *ref, *pat, *want; } t[] = {
        {"", "*", "INBOX(\\HasNoChildren) Caf\xc3\xa9(\\HasNoChildren) Lists(\\HasChildren) "
                  "Lists.dev(\\HasNoChildren) Lists.ops(\\HasNoChildren) "
                  "Sent(\\HasNoChildren \\Sent) a(\\HasChildren) a.b(\\HasChildren) "
                  "a.b.c(\\HasNoChildren) x(\\Noselect \\HasChildren) x.y(\\HasNoChildren)"},
        {"", "%", "INBOX(\\HasNoChildren) Caf\xc3\xa9(\\HasNoChildren) Lists(\\HasChildren) "
                  "Sent(\\HasNoChildren \\Sent) a(\\HasChildren) x(\\Noselect \\HasChildren)"},
        {"", "Lists.%", "Lists.dev(\\HasNoChildren) Lists.ops(\\HasNoChildren)"},
        {"Lists.", "%", "Lists.dev(\\HasNoChildren) Lists.ops(\\HasNoChildren)"},
        {"", "a.*", "a.b(\\HasChildren) a.b.c(\\HasNoChildren)"},
        {"", "a.%", "a.b(\\HasChildren)"},
        {"", "%.%", "Lists.dev(\\HasNoChildren) Lists.ops(\\HasNoChildren) a.b(\\HasChildren) "
                    "x.y(\\HasNoChildren)"},
        {"", "inbox", "INBOX(\\HasNoChildren)"},
        {"", "InBoX*", "INBOX(\\HasNoChildren)"},
        {"", "*.ops", "Lists.ops(\\HasNoChildren)"},
        {"", "*s", "Lists(\\HasChildren) Lists.ops(\\HasNoChildren)"},
        {"", "nothing*", ""},
        {"", "lists", ""},
    };
    size_t i;
    make_tree(f);
    for (i = 0; i < ARRAY_LEN(t); i++) {
        char *s = list_str(f, t[i].ref, t[i].pat, 0);
        if (strcmp(s, t[i].want) != 0)
            fail_msg("LIST \"%s\" \"%s\":\n got  %s\n want %s", t[i].ref, t[i].pat, s,
                     t[i].want);
        free(s);
    }
    assert_true(imap_store_list_match("%", "INBOX"));
    assert_false(imap_store_list_match("%", "a.b"));
    assert_true(imap_store_list_match("*", "a.b"));
    assert_true(imap_store_list_match("a%c", "abbc"));
    assert_false(imap_store_list_match("a%c", "ab.c"));
    assert_true(imap_store_list_match("a*c", "ab.c"));
    assert_true(imap_store_list_match("inbox.%", "INBOX.x"));
}

static void test_special_use_map(void **state)
{
    struct fx *f = *state;
    static const struct imap_special_use map[] = {{"Gesendet", "\\Sent"}};
    struct imap_store_opts o = {map, 1, UIDLIST_OPTS_INIT};
    struct imap_store *st;
    struct imap_list l;
    struct err e;

    assert_int_equal(imap_store_create(f->st, "Gesendet", &e), 0);
    assert_int_equal(imap_store_create(f->st, "Sent", &e), 0);
    assert_int_equal(imap_store_open(f->md, &o, &st, &e), 0);
    assert_int_equal(imap_store_list(st, "", "*", 0, &l, &e), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[1].name, "Gesendet");
    assert_string_equal(l.v[1].special_use, "\\Sent");
    assert_string_equal(l.v[2].name, "Sent");
    assert_null(l.v[2].special_use);
    imap_list_free(&l);
    imap_store_close(st);
}

/* ---- subscriptions ---------------------------------------------------- */

static void test_subscriptions(void **state)
{
    struct fx *f = *state;
    struct err e;
    char *p = xasprintf("%s/subscriptions", f->md), *s;
    char **names;
    size_t n, i;

    make_tree(f);
    assert_int_equal(imap_store_subscribe(f->st, "INBOX", &e), 0);
    assert_int_equal(imap_store_subscribe(f->st, "Caf\xc3\xa9", &e), 0);
    assert_int_equal(imap_store_subscribe(f->st, "Lists.dev", &e), 0);
    assert_int_equal(imap_store_subscribe(f->st, "Lists.dev", &e), 0);   /* once */
    assert_int_equal(imap_store_subscribe(f->st, "Gone.away", &e), 0);
    assert_int_equal(imap_store_subscribe(f->st, "../x", &e), -1);
    s = read_file(p);
    assert_string_equal(s, "V\t2\n\nINBOX\nCaf&AOk-\nLists\tdev\nGone\taway\n");
    free(s);
    assert_false(exists(f, "subscriptions.lock"));

    s = list_str(f, "", "*", IMAP_LIST_SEL_SUBSCRIBED);
    assert_string_equal(s, "INBOX(\\Subscribed \\HasNoChildren) "
                           "Caf\xc3\xa9(\\Subscribed \\HasNoChildren) "
                           "Gone.away(\\NonExistent \\Subscribed \\HasNoChildren) "
                           "Lists.dev(\\Subscribed \\HasNoChildren)");
    free(s);
    s = list_str(f, "", "Lists*", 0);
    assert_string_equal(s, "Lists(\\HasChildren) Lists.dev(\\Subscribed \\HasNoChildren) "
                           "Lists.ops(\\HasNoChildren)");
    free(s);

    assert_int_equal(imap_store_unsubscribe(f->st, "Lists.dev", &e), 0);
    assert_int_equal(imap_store_unsubscribe(f->st, "Not.there", &e), 0);
    assert_int_equal(imap_store_subscriptions(f->st, &names, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "INBOX");
    assert_string_equal(names[1], "Caf\xc3\xa9");
    assert_string_equal(names[2], "Gone.away");
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);

    /* the older form, one name per line with "." */
    write_file(p, "INBOX\nLists.ops\nCaf&AOk-\n");
    assert_int_equal(imap_store_subscriptions(f->st, &names, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_string_equal(names[1], "Lists.ops");
    assert_string_equal(names[2], "Caf\xc3\xa9");
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    assert_int_equal(imap_store_subscribe(f->st, "Sent", &e), 0);
    s = read_file(p);
    assert_string_equal(s, "V\t2\n\nINBOX\nLists\tops\nCaf&AOk-\nSent\n");
    free(s);
    free(p);
}

/* ---- create, delete, rename -------------------------------------------- */

static void test_create_delete_rename(void **state)
{
    struct fx *f = *state;
    struct err e;
    char *s;

    make_tree(f);
    assert_true(exists(f, ".a/cur"));
    assert_true(exists(f, ".a.b/cur"));
    assert_true(exists(f, ".a.b.c/cur"));
    assert_true(exists(f, ".Caf&AOk-/maildirfolder"));
    assert_int_equal(imap_store_create(f->st, "Sent", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(imap_store_create(f->st, "inbox", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(imap_store_create(f->st, "New.", &e), 0);   /* trailing delimiter */
    assert_true(exists(f, ".New/cur"));
    assert_int_equal(imap_store_create(f->st, "..", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);

    assert_int_equal(imap_store_delete(f->st, "INBOX", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(imap_store_delete(f->st, "Nothing", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(imap_store_delete(f->st, "New", &e), 0);
    assert_false(exists(f, ".New"));
    /* with children: messages go, the name stays as \Noselect */
    put(f, ".a", "cur", "1.x:2,S", "Subject: a\n\nx\n");
    assert_int_equal(imap_store_delete(f->st, "a", &e), 0);
    assert_false(exists(f, ".a"));
    assert_true(exists(f, ".a.b.c/cur"));
    s = list_str(f, "", "a*", 0);
    assert_string_equal(s, "a(\\Noselect \\HasChildren) a.b(\\HasChildren) "
                           "a.b.c(\\HasNoChildren)");
    free(s);
    assert_int_equal(count_files(f, "", "tmp"), 0);

    /* rename with children */
    assert_int_equal(imap_store_rename(f->st, "Lists", "Groups", &e), 0);
    assert_false(exists(f, ".Lists"));
    assert_true(exists(f, ".Groups.dev/cur"));
    assert_true(exists(f, ".Groups.ops/cur"));
    assert_int_equal(imap_store_rename(f->st, "Groups", "Sent", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(imap_store_rename(f->st, "Nothing", "Other", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(imap_store_rename(f->st, "Groups", "Groups.sub", &e), -1);
    assert_int_equal(imap_store_rename(f->st, "Groups", "../x", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);

    /* INBOX: its messages move, INBOX stays */
    put(f, "", "new", "100.A.host", "Subject: 1\n\none\n");
    put(f, "", "cur", "101.B.host:2,S", "Subject: 2\n\ntwo\n");
    assert_int_equal(imap_store_create(f->st, "INBOX.kept", &e), 0);
    assert_int_equal(imap_store_rename(f->st, "INBOX", "Old", &e), 0);
    assert_int_equal(count_files(f, "", "new") + count_files(f, "", "cur"), 0);
    assert_true(exists(f, ".Old/new/100.A.host"));
    assert_true(exists(f, ".Old/cur/101.B.host:2,S"));
    assert_true(exists(f, ".INBOX.kept/cur"));
    {
        struct imap_status stt;
        assert_int_equal(imap_store_status(f->st, "Old", &stt, &e), 0);
        assert_int_equal(stt.messages, 2);
        assert_int_equal(imap_store_status(f->st, "INBOX", &stt, &e), 0);
        assert_int_equal(stt.messages, 0);
    }
}

/* ---- the open folder ------------------------------------------------------ */

static void test_view_flags_keywords(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct imap_changes ch;
    struct err e;
    struct buf b = BUF_INIT;
    char *p = xasprintf("%s/dovecot-keywords", f->md), *s;
    struct imap_str fl[3] = {{(char *)"\\Flagged", 8, false}, {(char *)"work", 4, false},
                             {(char *)"$Label1", 7, false}};
    size_t idx[2] = {0, 1};

    write_file(p, "0 $Forwarded\n1 work\n");
    put(f, "", "cur", "1000.M1P1.h,S=10:2,Sa", "Subject: 1\n\none\n");
    put(f, "", "cur", "1001.M1P1.h:2,RTFD", "Subject: 2\n\ntwo\n");
    put(f, "", "new", "1002.M1P1.h", "Subject: 3\n\nthree\n");

    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    assert_int_equal(v->n, 3);
    assert_int_equal(v->msgs[0].uid, 1);
    assert_int_equal(v->msgs[1].uid, 2);
    assert_int_equal(v->msgs[2].uid, 3);
    assert_int_equal(v->uidnext, 4);
    assert_int_equal(imap_view_flags_write(v, 0, &b), 0);
    assert_string_equal(buf_cstr(&b), "(\\Seen $Forwarded)");
    buf_reset(&b);
    assert_int_equal(imap_view_flags_write(v, 1, &b), 0);
    assert_string_equal(buf_cstr(&b), "(\\Answered \\Flagged \\Deleted \\Draft)");
    buf_reset(&b);
    assert_int_equal(imap_view_flags_write(v, 2, &b), 0);
    assert_string_equal(buf_cstr(&b), "(\\Recent)");
    buf_reset(&b);
    /* SELECT moved new/ to cur/ */
    assert_int_equal(count_files(f, "", "new"), 0);
    assert_true(exists(f, "cur/1002.M1P1.h:2,"));
    assert_int_equal(v->msgs[2].raw_size, strlen("Subject: 3\n\nthree\n"));
    assert_int_equal(imap_view_flag_list_write(v, true, &b), 0);
    assert_string_equal(buf_cstr(&b),
                        "(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded work \\*)");
    buf_reset(&b);

    /* +FLAGS (\Flagged work $Label1): a new keyword gets the next letter */
    assert_int_equal(imap_view_store(v, idx, 2, IMAP_STORE_ADD, fl, 3, &ch, &e), 0);
    assert_int_equal(ch.n_flags, 2);
    imap_changes_free(&ch);
    s = read_file(p);
    assert_string_equal(s, "0 $Forwarded\n1 work\n2 $Label1\n");
    free(s);
    assert_true(exists(f, "cur/1000.M1P1.h,S=10:2,FSabc"));
    assert_true(exists(f, "cur/1001.M1P1.h:2,DFRTbc"));
    assert_int_equal(imap_view_flags_write(v, 0, &b), 0);
    assert_string_equal(buf_cstr(&b), "(\\Seen \\Flagged $Forwarded work $Label1)");
    buf_reset(&b);
    /* -FLAGS (work) */
    assert_int_equal(imap_view_store(v, idx, 1, IMAP_STORE_REMOVE, fl + 1, 1, &ch, &e), 0);
    assert_int_equal(ch.n_flags, 1);
    assert_int_equal(ch.flag_uids[0], 1);
    imap_changes_free(&ch);
    assert_true(exists(f, "cur/1000.M1P1.h,S=10:2,FSac"));
    /* FLAGS (\Seen): replaces; no change is no report */
    {
        struct imap_str seen = {(char *)"\\Seen", 5, false};
        size_t third = 2;
        assert_int_equal(imap_view_store(v, &third, 1, IMAP_STORE_SET, &seen, 1, &ch, &e), 0);
        assert_int_equal(ch.n_flags, 1);
        imap_changes_free(&ch);
        assert_true(exists(f, "cur/1002.M1P1.h:2,S"));
        assert_int_equal(imap_view_store(v, &third, 1, IMAP_STORE_ADD, &seen, 1, &ch, &e), 0);
        assert_int_equal(ch.n_flags, 0);
        imap_changes_free(&ch);
        assert_int_equal(imap_view_flags_write(v, 2, &b), 0);
        assert_string_equal(buf_cstr(&b), "(\\Seen \\Recent)");
        buf_reset(&b);
    }
    /* refused flags */
    {
        static const char *const bad[] = {"\\Recent", "\\Foo", "a b", "x(", ""};
        size_t i;
        for (i = 0; i < ARRAY_LEN(bad); i++) {
            struct imap_str one = {(char *)(uintptr_t)bad[i], strlen(bad[i]), false};
            assert_int_equal(imap_view_store(v, idx, 1, IMAP_STORE_ADD, &one, 1, &ch, &e), -1);
            assert_int_equal(e.code, ERR_INVAL);
            imap_changes_free(&ch);
        }
    }
    imap_view_close(v);

    /* a second session sees no \Recent; keywords read back from the file */
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_flags_write(v, 0, &b), 0);
    assert_string_equal(buf_cstr(&b), "(\\Seen \\Flagged $Forwarded $Label1)");
    buf_reset(&b);
    assert_int_equal(imap_view_store(v, idx, 1, IMAP_STORE_ADD, fl, 1, &ch, &e), -1);
    imap_changes_free(&ch);
    imap_view_close(v);

    /* all 26 letters used: a 27th keyword is ERR_LIMIT */
    {
        struct buf kb = BUF_INIT;
        int i;
        struct imap_str k27 = {(char *)"k27", 3, false};
        for (i = 0; i < 26; i++)
            assert_int_equal(buf_printf(&kb, "%d kw%d\n", i, i), 0);
        write_file(p, buf_cstr(&kb));
        buf_free(&kb);
        assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
        assert_int_equal(imap_view_store(v, idx, 1, IMAP_STORE_ADD, &k27, 1, &ch, &e), -1);
        assert_int_equal(e.code, ERR_LIMIT);
        imap_changes_free(&ch);
        imap_view_close(v);
    }
    buf_free(&b);
    free(p);
}

static void test_view_refresh(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct imap_changes ch;
    struct err e;
    char *from, *to;

    put(f, "", "cur", "2000.M1P1.h:2,", "Subject: 1\n\none\n");
    put(f, "", "cur", "2001.M1P1.h:2,", "Subject: 2\n\ntwo\n");
    put(f, "", "cur", "2002.M1P1.h:2,S", "Subject: 3\n\nthree\n");
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    assert_int_equal(v->n, 3);

    /* nothing happened */
    assert_int_equal(imap_view_refresh(v, &ch, &e), 0);
    assert_int_equal(ch.n_added + ch.n_expunged + ch.n_flags, 0);
    imap_changes_free(&ch);

    /* another program: a flag rename, a delivery, an expunge */
    from = xasprintf("%s/cur/2001.M1P1.h:2,", f->md);
    to = xasprintf("%s/cur/2001.M1P1.h:2,FS", f->md);
    assert_int_equal(rename(from, to), 0);
    free(from);
    free(to);
    put(f, "", "new", "2003.M1P1.h", "Subject: 4\n\nfour\n");
    from = xasprintf("%s/cur/2000.M1P1.h:2,", f->md);
    assert_int_equal(unlink(from), 0);
    free(from);

    assert_int_equal(imap_view_refresh(v, &ch, &e), 0);
    assert_int_equal(ch.n_expunged, 1);
    assert_int_equal(ch.expunged_uids[0], 1);
    assert_int_equal(ch.expunged_seqs[0], 1);
    assert_int_equal(ch.n_flags, 1);
    assert_int_equal(ch.flag_uids[0], 2);
    assert_int_equal(ch.n_added, 1);
    assert_false(ch.uidvalidity_changed);
    imap_changes_free(&ch);
    assert_int_equal(v->n, 3);
    assert_int_equal(v->msgs[0].uid, 2);
    assert_int_equal(v->msgs[0].flags, MAILDIR_F_FLAGGED | MAILDIR_F_SEEN);
    assert_int_equal(v->msgs[2].uid, 4);
    assert_true(v->msgs[2].flags & IMAP_FL_RECENT);
    assert_true(exists(f, "cur/2003.M1P1.h:2,"));

    /* a message renamed after the refresh is still found by UID */
    from = xasprintf("%s/cur/2002.M1P1.h:2,S", f->md);
    to = xasprintf("%s/cur/2002.M1P1.h:2,RS", f->md);
    assert_int_equal(rename(from, to), 0);
    free(from);
    free(to);
    {
        int fd = -1;
        char buf[64];
        ssize_t r;
        assert_int_equal(imap_view_open_msg(v, 1, &fd, &e), 0);
        r = read(fd, buf, sizeof(buf) - 1);
        assert_true(r > 0);
        buf[r] = 0;
        assert_non_null(strstr(buf, "three"));
        close(fd);
    }
    assert_int_equal(imap_view_refresh(v, &ch, &e), 0);
    assert_int_equal(ch.n_flags, 1);
    assert_int_equal(ch.flag_uids[0], 3);
    imap_changes_free(&ch);
    imap_view_close(v);
}

static void test_expunge(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct imap_changes ch;
    struct err e;
    struct imap_range r = {4, 4};
    struct imap_seqset only = {&r, 1};

    put(f, "", "cur", "3000.M1P1.h:2,T", "Subject: 1\n\none\n");
    put(f, "", "cur", "3001.M1P1.h:2,", "Subject: 2\n\ntwo\n");
    put(f, "", "cur", "3002.M1P1.h:2,ST", "Subject: 3\n\nthree\n");
    put(f, "", "cur", "3003.M1P1.h:2,T", "Subject: 4\n\nfour\n");
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    /* UID EXPUNGE 4: only that one */
    assert_int_equal(imap_view_expunge(v, &only, &ch, &e), 0);
    assert_int_equal(ch.n_expunged, 1);
    assert_int_equal(ch.expunged_uids[0], 4);
    assert_int_equal(ch.expunged_seqs[0], 4);
    imap_changes_free(&ch);
    assert_false(exists(f, "cur/3003.M1P1.h:2,T"));
    assert_true(exists(f, "cur/3000.M1P1.h:2,T"));
    /* EXPUNGE: the \Deleted ones */
    assert_int_equal(imap_view_expunge(v, NULL, &ch, &e), 0);
    assert_int_equal(ch.n_expunged, 2);
    assert_int_equal(ch.expunged_uids[0], 1);
    assert_int_equal(ch.expunged_seqs[0], 1);
    assert_int_equal(ch.expunged_uids[1], 3);
    assert_int_equal(ch.expunged_seqs[1], 3);
    imap_changes_free(&ch);
    assert_int_equal(v->n, 1);
    assert_int_equal(v->msgs[0].uid, 2);
    assert_int_equal(count_files(f, "", "cur"), 1);
    /* the next refresh reports nothing more */
    assert_int_equal(imap_view_refresh(v, &ch, &e), 0);
    assert_int_equal(ch.n_expunged + ch.n_added, 0);
    imap_changes_free(&ch);
    imap_view_close(v);
    /* read-only: refused */
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_expunge(v, NULL, &ch, &e), -1);
    imap_changes_free(&ch);
    imap_view_close(v);
}

static void test_copy_move(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct imap_changes ch;
    struct err e;
    uint32_t uv, *su, *du;
    size_t idx[2] = {0, 2};
    char *p, *name;
    struct uidlist *ul;
    struct stat sb;
    struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};

    p = xasprintf("%s/dovecot-keywords", f->md);
    write_file(p, "0 one\n1 two\n");
    free(p);
    put(f, "", "cur", "4000.M1P1.h:2,Sb", "Subject: 1\n\none\n");
    put(f, "", "cur", "4001.M1P1.h:2,", "Subject: 2\n\ntwo\n");
    put(f, "", "cur", "4002.M1P1.h:2,F", "Subject: 3\n\nthree\n");
    p = xasprintf("%s/cur/4000.M1P1.h:2,Sb", f->md);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    free(p);
    assert_int_equal(imap_store_create(f->st, "Sent", &e), 0);
    /* the destination already knows other keywords */
    p = xasprintf("%s/.Sent/dovecot-keywords", f->md);
    write_file(p, "0 other\n");
    free(p);
    put(f, ".Sent", "cur", "3999.M1P1.h:2,", "Subject: 0\n\nzero\n");

    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    assert_int_equal(imap_view_copy(v, idx, 2, "Sent", false, &uv, &su, &du, &ch, &e), 0);
    assert_int_equal(ch.n_expunged, 0);
    assert_int_equal(su[0], 1);
    assert_int_equal(su[1], 3);
    assert_int_equal(du[0], 2);
    assert_int_equal(du[1], 3);
    p = xasprintf("%s/.Sent", f->md);
    assert_int_equal(uidlist_open(p, NULL, &ul, &e), 0);
    assert_int_equal(uv, ul->uidvalidity);
    assert_int_equal(uidlist_count(ul), 3);
    free(p);
    /* the copy of message 1 has keyword "two" under the destination's letter */
    {
        const struct uidlist_rec *r = uidlist_by_uid(ul, 2);
        assert_non_null(r);
        name = find_file(f, ".Sent", "cur", r->listed);
        assert_non_null(name);
        assert_non_null(strstr(name, ":2,Sb"));
        p = xasprintf("%s/.Sent/cur/%s", f->md, name);
        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mtime, 1000000000);   /* internal date kept */
        free(p);
        free(name);
        {
            char *kp = xasprintf("%s/.Sent/dovecot-keywords", f->md);
            p = read_file(kp);
            free(kp);
        }
        assert_string_equal(p, "0 other\n1 two\n");
        free(p);
    }
    uidlist_free(ul);
    free(su);
    free(du);
    imap_changes_free(&ch);
    assert_int_equal(count_files(f, "", "cur"), 3);

    /* MOVE: the sources go and are reported */
    assert_int_equal(imap_view_copy(v, idx, 2, "Sent", true, &uv, &su, &du, &ch, &e), 0);
    assert_int_equal(du[0], 4);
    assert_int_equal(du[1], 5);
    assert_int_equal(ch.n_expunged, 2);
    assert_int_equal(ch.expunged_uids[0], 1);
    assert_int_equal(ch.expunged_seqs[0], 1);
    assert_int_equal(ch.expunged_uids[1], 3);
    assert_int_equal(ch.expunged_seqs[1], 3);
    assert_int_equal(v->n, 1);
    assert_int_equal(count_files(f, "", "cur"), 1);
    assert_int_equal(count_files(f, ".Sent", "cur"), 5);
    free(su);
    free(du);
    imap_changes_free(&ch);

    /* to a folder that does not exist: nothing happens */
    {
        size_t one = 0;
        assert_int_equal(imap_view_copy(v, &one, 1, "Nope", false, &uv, &su, &du, &ch, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        assert_int_equal(imap_view_copy(v, &one, 1, "../..", false, &uv, &su, &du, &ch, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        imap_changes_free(&ch);
    }
    imap_view_close(v);
}

static void test_append_status(void **state)
{
    struct fx *f = *state;
    struct err e;
    uint32_t uv, uid, uv2, uid2;
    struct imap_str fl[2] = {{(char *)"\\Seen", 5, false}, {(char *)"$Important", 10, false}};
    const char *msg = "Subject: appended\n\nline\nline2\r\n";
    struct imap_status stt;
    struct uidlist *ul;
    char *name, *p;
    struct stat sb;

    put(f, "", "new", "5000.M1P1.h", "Subject: 0\n\nzero\n");
    assert_int_equal(imap_store_append(f->st, "INBOX", msg, strlen(msg), fl, 2, 1234567890,
                                       &uv, &uid, &e), 0);
    assert_int_equal(uid, 2);
    assert_int_equal(imap_store_append(f->st, "inbox", msg, strlen(msg), NULL, 0, 0, &uv2,
                                       &uid2, &e), 0);
    assert_int_equal(uv2, uv);
    assert_int_equal(uid2, 3);
    assert_int_equal(uidlist_open(f->md, NULL, &ul, &e), 0);
    assert_int_equal(ul->uidvalidity, uv);
    name = find_file(f, "", "cur", uidlist_by_uid(ul, 2)->listed);
    assert_non_null(name);
    assert_non_null(strstr(name, ":2,Sa"));
    p = xasprintf("%s/cur/%s", f->md, name);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mtime, 1234567890);
    assert_int_equal(sb.st_size, (off_t)strlen(msg));
    free(p);
    free(name);
    uidlist_free(ul);
    {
        char *kp = xasprintf("%s/dovecot-keywords", f->md);
        p = read_file(kp);
        free(kp);
    }
    assert_string_equal(p, "0 $Important\n");
    free(p);
    assert_int_equal(imap_store_append(f->st, "Nope", msg, strlen(msg), NULL, 0, 0, &uv2,
                                       &uid2, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);

    assert_int_equal(imap_store_status(f->st, "INBOX", &stt, &e), 0);
    assert_int_equal(stt.messages, 3);
    assert_int_equal(stt.recent, 2);     /* 5000 and the flagless append */
    assert_int_equal(stt.unseen, 2);
    assert_int_equal(stt.uidnext, 4);
    assert_int_equal(stt.uidvalidity, uv);
    assert_int_equal(stt.deleted, 0);
    /* CRLF sizes: 17+3 and two times 30+3 */
    assert_int_equal(stt.size, (strlen("Subject: 0\n\nzero\n") + 3) + 2 * (strlen(msg) + 3));
}

static void test_resolve(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct err e;
    struct imap_range r1[] = {{2, IMAP_SEQ_STAR}};
    struct imap_range r2[] = {{5, 7}, {IMAP_SEQ_STAR, IMAP_SEQ_STAR}};
    struct imap_range r3[] = {{4, 4}};
    struct imap_range r4[] = {{100, IMAP_SEQ_STAR}};
    struct imap_seqset s;
    size_t *idx, n;

    put(f, "", "cur", "6000.M1P1.h:2,", "a\n");
    put(f, "", "cur", "6001.M1P1.h:2,", "b\n");
    put(f, "", "cur", "6002.M1P1.h:2,", "c\n");
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    s.r = r1;
    s.n = 1;
    assert_int_equal(imap_view_resolve(v, &s, false, &idx, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 2);
    free(idx);
    s.r = r2;
    s.n = 2;
    assert_int_equal(imap_view_resolve(v, &s, true, &idx, &n, &e), 0);
    assert_int_equal(n, 1);             /* UIDs 5:7 match nothing, * is UID 3 */
    assert_int_equal(idx[0], 2);
    free(idx);
    s.r = r3;
    s.n = 1;
    assert_int_equal(imap_view_resolve(v, &s, false, &idx, &n, &e), -1);  /* seq 4 */
    assert_int_equal(imap_view_resolve(v, &s, true, &idx, &n, &e), 0);   /* UID 4 */
    assert_int_equal(n, 0);
    s.r = r4;
    assert_int_equal(imap_view_resolve(v, &s, true, &idx, &n, &e), 0);   /* 100:* */
    assert_int_equal(n, 1);
    assert_int_equal(idx[0], 2);
    free(idx);
    assert_int_equal(imap_view_find(v, 2), 1);
    assert_int_equal(imap_view_find(v, 9), -1);
    imap_view_close(v);
}

static void test_fetch_cache(void **state)
{
    struct fx *f = *state;
    struct imap_view *v;
    struct imap_fetch_cache c = {0}, got;
    struct err e;
    char *p;

    put(f, "", "cur", "7000.M1P1.h:2,", "Subject: x\n\nbody\n");
    put(f, "", "cur", "7001.M1P1.h:2,", "Subject: y\n\nbody\n");
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
    assert_int_equal(imap_view_cache_get(v, 0, &got), -1);
    c.raw_size = v->msgs[0].raw_size;
    c.rfc822_size = c.raw_size + 3;
    c.envelope = (char *)"(NIL \"x\")";
    c.envelope_len = strlen(c.envelope);
    c.bodystructure = (char *)"(\"text\" \"plain\")";
    c.bodystructure_len = strlen(c.bodystructure);
    c.body = c.bodystructure;
    c.body_len = c.bodystructure_len;
    imap_view_cache_put(v, 0, &c);
    assert_int_equal(imap_view_cache_get(v, 0, &got), 0);
    assert_string_equal(got.envelope, "(NIL \"x\")");
    imap_fetch_cache_free(&got);
    assert_int_equal(imap_view_cache_get(v, 1, &got), -1);
    /* the record of message 2 says the wrong size: never used */
    c.raw_size = 9999;
    imap_view_cache_put(v, 1, &c);
    assert_int_equal(imap_view_cache_get(v, 1, &got), -1);
    assert_int_equal(imap_view_cache_flush(v, &e), 0);
    imap_view_close(v);
    assert_true(exists(f, "correod-fetch-cache"));

    /* read back by a new view */
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_cache_get(v, 0, &got), 0);
    assert_int_equal(got.rfc822_size, v->msgs[0].raw_size + 3);
    imap_fetch_cache_free(&got);
    imap_view_close(v);

    /* the file grew (another program rewrote it): the record is ignored */
    p = xasprintf("%s/cur/7000.M1P1.h:2,", f->md);
    write_file(p, "Subject: x\n\nbody, longer\n");
    free(p);
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_cache_get(v, 0, &got), -1);
    imap_view_close(v);

    /* a damaged cache file loses nothing */
    p = xasprintf("%s/correod-fetch-cache", f->md);
    write_file(p, "CFC1\n\x01\x00\x00\x00\xff\xff\x00\x00garbage");
    free(p);
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_cache_get(v, 0, &got), -1);
    assert_int_equal(v->n, 2);
    imap_view_close(v);
    p = xasprintf("%s/correod-fetch-cache", f->md);
    unlink(p);
    free(p);
    assert_int_equal(imap_view_open(f->st, "INBOX", true, &v, &e), 0);
    assert_int_equal(imap_view_cache_get(v, 0, &got), -1);
    imap_view_close(v);
}

/* Two sessions on one folder: only the one that moved a new file from new/
 * to cur/ reports it \Recent; both see it. */
static void test_recent_two_sessions(void **state)
{
    struct fx *f = *state;
    struct imap_view *a, *b;
    struct imap_changes ch;
    struct err e;

    put(f, "", "cur", "8000.M1P1.h:2,S", "Subject: 1\n\none\n");
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &a, &e), 0);
    assert_int_equal(imap_view_open(f->st, "INBOX", false, &b, &e), 0);
    put(f, "", "new", "8001.M1P1.h", "Subject: 2\n\ntwo\n");
    assert_int_equal(imap_view_refresh(a, &ch, &e), 0);
    assert_int_equal(ch.n_added, 1);
    imap_changes_free(&ch);
    assert_int_equal(imap_view_refresh(b, &ch, &e), 0);
    assert_int_equal(ch.n_added, 1);
    imap_changes_free(&ch);
    assert_int_equal(a->n, 2);
    assert_int_equal(b->n, 2);
    assert_int_equal(a->msgs[1].uid, b->msgs[1].uid);
    assert_true(a->msgs[1].flags & IMAP_FL_RECENT);
    assert_false(b->msgs[1].flags & IMAP_FL_RECENT);
    assert_false(a->msgs[0].flags & IMAP_FL_RECENT);
    /* a flag change by one session is a FETCH FLAGS for the other */
    {
        struct imap_str fl = {(char *)"\\Flagged", 8, false};
        size_t one = 1;
        assert_int_equal(imap_view_store(a, &one, 1, IMAP_STORE_ADD, &fl, 1, &ch, &e), 0);
        imap_changes_free(&ch);
        assert_int_equal(imap_view_refresh(b, &ch, &e), 0);
        assert_int_equal(ch.n_flags, 1);
        assert_int_equal(ch.flag_uids[0], b->msgs[1].uid);
        assert_true(b->msgs[1].flags & MAILDIR_F_FLAGGED);
        imap_changes_free(&ch);
    }
    imap_view_close(a);
    imap_view_close(b);
}

static int fail_step = -1;

static int step_hook(enum maildir_step step)
{
    return (int)step == fail_step ? -1 : 0;
}

/* MOVE failing at every step of the delivery: the destination gets nothing,
 * the source keeps its message; a move that reports success has the
 * message in the destination only. */
static void test_move_failures(void **state)
{
    struct fx *f = *state;
    struct err e;
    int step, fails = 0;

    assert_int_equal(imap_store_create(f->st, "Dest", &e), 0);
    put(f, "", "cur", "9000.M1P1.h:2,S", "Subject: 1\n\none\n");
    for (step = 0; step < MAILDIR_STEP_COUNT; step++) {
        struct imap_view *v;
        struct imap_changes ch;
        uint32_t uv, *su = NULL, *du = NULL;
        size_t zero = 0, in_src, in_dst;
        int rc;

        assert_int_equal(imap_view_open(f->st, "INBOX", false, &v, &e), 0);
        assert_int_equal(v->n, 1);
        in_dst = count_files(f, ".Dest", "cur") + count_files(f, ".Dest", "new");
        fail_step = step;
        maildir_step_hook = step_hook;
        rc = imap_view_copy(v, &zero, 1, "Dest", true, &uv, &su, &du, &ch, &e);
        maildir_step_hook = NULL;
        in_src = count_files(f, "", "cur");
        if (rc == 0) {
            assert_int_equal(ch.n_expunged, 1);
            assert_int_equal(in_src, 0);
            assert_int_equal(count_files(f, ".Dest", "cur"), in_dst + 1);
            assert_true(du[0] > 0);
            /* put it back for the next step */
            {
                struct imap_view *dv;
                assert_int_equal(imap_view_open(f->st, "Dest", false, &dv, &e), 0);
                free(su);
                free(du);
                imap_changes_free(&ch);
                assert_int_equal(imap_view_copy(dv, &zero, 1, "INBOX", true, &uv, &su, &du,
                                                &ch, &e), 0);
                imap_view_close(dv);
            }
        } else {
            fails++;
            assert_int_equal(in_src, 1);
            assert_int_equal(count_files(f, ".Dest", "cur") + count_files(f, ".Dest", "new"),
                             in_dst);
            assert_int_equal(v->n, 1);
        }
        free(su);
        free(du);
        imap_changes_free(&ch);
        imap_view_close(v);
        assert_int_equal(count_files(f, "", "cur"), 1);
    }
    /* tmp created, written, fsynced, linked, directory fsynced */
    assert_int_equal(fails, 5);
}

/* APPEND failing at each step of the delivery leaves nothing visible. */
static void test_append_failures(void **state)
{
    struct fx *f = *state;
    struct err e;
    int step, fails = 0;
    struct imap_str fl = {(char *)"\\Seen", 5, false};

    for (step = 0; step < MAILDIR_STEP_COUNT; step++) {
        uint32_t uv, uid;
        size_t before = count_files(f, "", "cur");
        int rc;
        fail_step = step;
        maildir_step_hook = step_hook;
        rc = imap_store_append(f->st, "INBOX", "Subject: x\n\nx\n", 14, &fl, 1, 0, &uv, &uid,
                               &e);
        maildir_step_hook = NULL;
        if (rc == 0) {
            assert_int_equal(count_files(f, "", "cur"), before + 1);
            assert_true(uid > 0);
        } else {
            fails++;
            assert_int_equal(count_files(f, "", "cur"), before);
        }
        assert_int_equal(count_files(f, "", "new"), 0);
    }
    assert_int_equal(fails, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_good),
        cmocka_unit_test(test_names_refused),
        cmocka_unit_test_setup_teardown(test_symlinks_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_patterns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_use_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscriptions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_delete_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_flags_keywords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent_two_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
