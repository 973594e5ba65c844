/* Unit tests for mua/view: order, threads, limit, search, cursor; no terminal. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailbox.h"
#include "maildir.h"
#include "msg.h"
#include "testutil.h"
#include "view.h"

static char *dir;

/* Five messages: a thread A <- B <- C, a lone D, and E replying to a
 * missing message.  Dates make the flat order D A B E C. */
static const struct {
    const char *id, *refs, *from, *subject, *date;
    bool seen;
} fixture[] = {
    {"a@x", NULL, "Alice <alice@example.org>", "Plans", "Mon, 02 Nov 2026 10:00:00 +0000", true},
    {"b@x", "<a@x>", "Bob <bob@example.org>", "Re: Plans", "Mon, 02 Nov 2026 11:00:00 +0000", true},
    {"c@x", "<a@x> <b@x>", "Alice <alice@example.org>", "Re: Plans", "Wed, 04 Nov 2026 09:00:00 +0000", false},
    {"d@x", NULL, "Dora <dora@example.org>", "Lunch", "Sun, 01 Nov 2026 12:00:00 +0000", true},
    {"e@x", "<gone@x>", "Eve <eve@example.org>", "Re: Old news", "Tue, 03 Nov 2026 08:00:00 +0000", false},
};

static struct mailbox *open_fixture(void)
{
    struct maildir_folder *f;
    struct mailbox *mb;
    struct err e;
    char sub[128];

    dir = tu_tmpdir("view");
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, (const char *[]){"cur", "new", "tmp"}[i]);
        assert_int_equal(mkdir(sub, 0700), 0);
    }
    assert_int_equal(maildir_folder_open_path(dir, &f, &e), 0);
    for (size_t i = 0; i < sizeof fixture / sizeof fixture[0]; i++) {
        char *text;
        if (fixture[i].refs)
            text = xasprintf("From: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s>\n"
                             "References: %s\n\nbody of %s\n", fixture[i].from,
                             fixture[i].subject, fixture[i].date, fixture[i].id,
                             fixture[i].refs, fixture[i].id);
        else
            text = xasprintf("From: %s\nSubject: %s\nDate: %s\nMessage-ID: <%s>\n\nbody of %s\n",
                             fixture[i].from, fixture[i].subject, fixture[i].date,
                             fixture[i].id, fixture[i].id);
        struct maildir_deliver_opts o = {true, fixture[i].seen ? MAILDIR_F_SEEN : 0u, NULL};
        assert_int_equal(maildir_deliver(f, text, strlen(text), &o, NULL, &e), 0);
        free(text);
    }
    maildir_folder_close(f);
    assert_int_equal(mailbox_open(dir, MAILBOX_NO_HCACHE, &mb, &e), 0);
    assert_int_equal(mailbox_load(mb, NULL, NULL, &e), 0);
    assert_int_equal(store_count(&mb->store), 5);
    return mb;
}

static void close_fixture(struct mailbox *mb)
{
    mailbox_close(mb);
    tu_rm_rf(dir);
    free(dir);
    dir = NULL;
}

/* The subjects of the view's lines, joined by '|'. */
static char *subjects(struct view *v)
{
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < v->n_lines; i++) {
        const struct store_msg *m = store_get(&v->mb->store, view_msg_at(v, i));
        const char *from = store_str(&v->mb->store, m->from);
        assert_int_equal(buf_printf(&b, "%s%c%u", i ? "|" : "", from[0],
                                    (unsigned)v->lines[i].depth), 0);
    }
    return buf_steal(&b, NULL);
}

static void flat_and_threaded_order(void **state)
{
    struct mailbox *mb = open_fixture();
    struct view v;
    struct err e;
    char *s;
    (void)state;

    view_init(&v, mb);
    assert_int_equal(view_rebuild(&v, &e), 0);
    s = subjects(&v);
    assert_string_equal(s, "D0|A0|B0|E0|A0");        /* by date */
    free(s);

    struct sort_spec spec = {{SORT_THREADS, false, false}, {SORT_DATE, false, false}};
    assert_int_equal(view_set_sort(&v, &spec, &e), 0);
    s = subjects(&v);
    assert_string_equal(s, "D0|A0|B1|A2|E0");        /* A's thread nests B then C */
    free(s);

    char prefix[256];
    assert_int_equal(view_tree_prefix(&v, 2, prefix, sizeof prefix), 0);
    assert_true(strlen(prefix) > 0);

    /* collapse A's thread: B and C disappear, A counts them */
    v.cursor = 1;
    assert_int_equal(view_toggle_collapse(&v, &e), 0);
    s = subjects(&v);
    assert_string_equal(s, "D0|A0|E0");
    free(s);
    assert_int_equal(v.lines[1].hidden_count, 2);
    assert_int_equal(view_toggle_collapse(&v, &e), 0);
    assert_int_equal(v.n_lines, 5);

    uint32_t *members;
    v.cursor = 3;
    size_t n = view_thread_members(&v, view_current(&v), false, &members);
    assert_int_equal(n, 3);
    free(members);
    view_free(&v);
    close_fixture(mb);
}

static void limit_search_and_flags(void **state)
{
    struct mailbox *mb = open_fixture();
    struct view v;
    struct err e;
    char *s;
    (void)state;

    view_init(&v, mb);
    assert_int_equal(view_rebuild(&v, &e), 0);
    v.cursor = 2;   /* B */
    uint32_t b = view_current(&v);

    assert_int_equal(view_set_limit(&v, "~f alice", &e), 0);
    s = subjects(&v);
    assert_string_equal(s, "A0|A0");
    free(s);
    /* a bad pattern changes nothing and says where */
    assert_int_equal(view_set_limit(&v, "~d <1x", &e), -1);
    assert_int_equal(v.n_lines, 2);
    /* a simple search term is ~f or ~s */
    assert_int_equal(view_set_limit(&v, "lunch", &e), 0);
    assert_int_equal(v.n_lines, 1);
    assert_int_equal(view_set_limit(&v, "", &e), 0);
    assert_int_equal(v.n_lines, 5);
    assert_true(view_goto_msg(&v, b));

    /* ~b reads bodies through the mailbox */
    struct pattern *p;
    assert_int_equal(pattern_compile("~b \"body of e@x\"", 0, &p, &e), 0);
    bool wrapped;
    size_t line = view_search(&v, p, false, &wrapped);
    assert_int_equal(line, 3);
    assert_false(wrapped);
    v.cursor = 4;
    line = view_search(&v, p, false, &wrapped);
    assert_int_equal(line, 3);
    assert_true(wrapped);
    pattern_free(p);

    /* unread ones: E (line 3) and C (line 4) */
    v.cursor = 0;
    assert_int_equal(view_find_flags(&v, false, 0, MSG_SEEN), 3);
    v.cursor = 4;
    assert_int_equal(view_find_flags(&v, true, 0, MSG_SEEN), 3);
    assert_int_equal(view_find_flags(&v, false, 0, MSG_SEEN), VIEW_NONE);

    /* the cursor stays on its message across a re-sort */
    assert_true(view_goto_msg(&v, b));
    struct sort_spec spec = {{SORT_FROM, true, false}, {SORT_DATE, false, false}};
    assert_int_equal(view_set_sort(&v, &spec, &e), 0);
    assert_int_equal(view_current(&v), b);
    view_free(&v);
    close_fixture(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flat_and_threaded_order),
        cmocka_unit_test(limit_search_and_flags),
    };
    setenv("TZ", "UTC", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
