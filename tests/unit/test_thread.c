/* Unit tests for mua/thread: JWZ threading, display order, prefixes,
 * collapse/expand. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sort.h"
#include "thread.h"

#define MAXM 12
#define MAXR 8

/* One message of a table case.  refs: space-separated ids, References then
 * In-Reply-To. */
struct tmsg {
    const char *name;       /* NULL ends the list */
    const char *id;
    const char *refs;
    const char *subject;
    int64_t date;
};

struct inputs {
    struct thread_input in[MAXM];
    uint64_t refs[MAXM][MAXR];
    size_t n;
};

static uint64_t idh(const char *id)
{
    return thread_id_hash(id, strlen(id));
}

static void make_inputs(const struct tmsg *m, struct inputs *f)
{
    memset(f, 0, sizeof *f);
    for (; m[f->n].name != NULL; f->n++) {
        const struct tmsg *x = &m[f->n];
        struct thread_input *in = &f->in[f->n];
        const char *p = x->refs;
        uint32_t k = 0;

        assert_true(f->n < MAXM);
        in->id = x->id ? idh(x->id) : 0;
        while (p && *p) {
            size_t len;
            while (*p == ' ')
                p++;
            len = strcspn(p, " ");
            if (len == 0)
                break;
            assert_true(k < MAXR);
            f->refs[f->n][k++] = thread_id_hash(p, len);
            p += len;
        }
        in->refs = k ? f->refs[f->n] : NULL;
        in->n_refs = k;
        in->subject = x->subject;
        in->date = x->date;
    }
}

/* The current display as text: one "prefix name(+hidden)" line per message. */
static const char *render_lines(const struct thread_tree *t,
                                const struct tmsg *m, unsigned pflags)
{
    static char text[2048];
    struct thread_line lines[MAXM];
    size_t nl, len = 0;

    assert_int_equal(thread_lines(t, lines, MAXM, &nl, NULL), 0);
    text[0] = '\0';
    for (size_t i = 0; i < nl; i++) {
        char pre[256];
        int w;

        assert_int_equal(thread_prefix(t, lines[i].msg, pflags, pre,
                                       sizeof pre, NULL), 0);
        w = snprintf(text + len, sizeof text - len, "%s%s", pre,
                     m[lines[i].msg].name);
        len += (size_t)w;
        if (lines[i].hidden_count)
            len += (size_t)snprintf(text + len, sizeof text - len, "(+%u)",
                                    lines[i].hidden_count);
        len += (size_t)snprintf(text + len, sizeof text - len, "\n");
        assert_true(len < sizeof text);
    }
    return text;
}

static const char *render(struct thread_tree *t, const struct tmsg *m,
                          const struct thread_view *v)
{
    thread_sort(t, v);
    return render_lines(t, m, THREAD_PREFIX_ASCII);
}

static struct thread_tree *build(const struct tmsg *m, struct inputs *f,
                                 bool subject_fallback, bool strict)
{
    struct thread_opts o = THREAD_OPTS_INIT;
    struct err e;
    struct thread_tree *t;

    o.subject_fallback = subject_fallback;
    o.strict_subject = strict;
    make_inputs(m, f);
    t = thread_build(f->in, f->n, &o, &e);
    if (t == NULL)
        fail_msg("thread_build: %s", e.text);
    assert_int_equal(thread_msg_count(t), f->n);
    return t;
}

/* ---- JWZ cases ----------------------------------------------------------- */

struct jwz_case {
    const char *title;
    struct tmsg m[MAXM];
    bool no_subject;        /* subject_fallback off */
    bool strict;
    const char *want;       /* ASCII rendering, default order (date) */
};

static const struct jwz_case jwz_cases[] = {
    {"simple chain",
     {{"A", "a", NULL, NULL, 1}, {"B", "b", "a", NULL, 2},
      {"C", "c", "a b", NULL, 3}},
     false, false, "A\n`->B\n  `->C\n"},
    {"chain in reverse file order",
     {{"C", "c", "a b", NULL, 3}, {"B", "b", "a", NULL, 2},
      {"A", "a", NULL, NULL, 1}},
     false, false, "A\n`->B\n  `->C\n"},
    {"missing middle message",
     {{"A", "a", NULL, NULL, 1}, {"C", "c", "a b", NULL, 2},
      {"D", "d", "a b c", NULL, 3}, {"E", "e", "a b", NULL, 4}},
     false, false, "A\n|?>C\n| `->D\n`?>E\n"},
    {"In-Reply-To only",
     {{"A", "a", NULL, NULL, 1}, {"B", "b", "a", NULL, 2},
      {"C", "c", "b", NULL, 3}, {"D", "d", "a", NULL, 4}},
     false, false, "A\n|->B\n| `->C\n`->D\n"},
    {"missing root shared by two",
     {{"C", "c", "r", NULL, 1}, {"D", "d", "r", NULL, 2},
      {"E", "e", "r c", NULL, 3}},
     false, false, ",?>C\n| `->E\n`?>D\n"},
    {"missing root with one child",
     {{"C", "c", "q r", NULL, 1}},
     false, false, "C\n"},
    {"reference loop A->B->A",
     {{"A", "a", "b", NULL, 1}, {"B", "b", "a", NULL, 2}},
     false, false, "B\n`->A\n"},
    {"three-message loop",
     {{"A", "a", "c", NULL, 1}, {"B", "b", "a", NULL, 2},
      {"C", "c", "b", NULL, 3}},
     false, false, "C\n`->A\n  `->B\n"},
    {"loop inside a References chain",
     {{"A", "a", "x y x", NULL, 1}, {"B", "b", "y x y", NULL, 2}},
     false, false, ",?>A\n`?>B\n"},
    {"duplicate Message-ID",
     {{"A", "a", NULL, NULL, 1}, {"A2", "a", NULL, NULL, 2},
      {"B", "b", "a", NULL, 3}},
     false, false, "A\n`->B\nA2\n"},
    {"duplicate referencing its first copy",
     {{"A", "a", NULL, NULL, 1}, {"A2", "a", "a", NULL, 2}},
     false, false, "A\n`=>A2\n"},
    {"message referencing itself",
     {{"A", "a", "a", NULL, 1}, {"B", "b", "a b", NULL, 2},
      {"C", "c", "c c", NULL, 3}},
     false, false, "A\n`->B\nC\n"},
    {"own references beat another's chain",
     {{"X", "x", "a b", NULL, 1}, {"B", "b", "c", NULL, 2},
      {"A", "a", NULL, NULL, 3}, {"C", "c", NULL, NULL, 4}},
     false, false, "A\nC\n`->B\n  `->X\n"},
    {"no ids at all",
     {{"A", NULL, NULL, NULL, 2}, {"B", NULL, NULL, NULL, 1}},
     false, false, "B\nA\n"},
    {"siblings by date",
     {{"A", "a", NULL, NULL, 1}, {"B", "b", "a", NULL, 5},
      {"C", "c", "a", NULL, 3}, {"D", "d", "a", NULL, 4}},
     false, false, "A\n|->C\n|->D\n`->B\n"},
    {"subject: replies join the original",
     {{"X", "x", NULL, "foo", 1}, {"Y", "y", NULL, "Re: foo", 2},
      {"Z", "z", NULL, "[list] Re: foo", 3},
      {"W", "w", NULL, "RE[2]:  FOO ", 4}},
     false, false, "X\n|*>Y\n|*>Z\n`*>W\n"},
    {"subject: off",
     {{"X", "x", NULL, "foo", 1}, {"Y", "y", NULL, "Re: foo", 2},
      {"Z", "z", NULL, "[list] Re: foo", 3},
      {"W", "w", NULL, "RE[2]:  FOO ", 4}},
     true, false, "X\nY\nZ\nW\n"},
    {"subject: strict still lets replies join",
     {{"X", "x", NULL, "foo", 1}, {"Y", "y", NULL, "Re: foo", 2}},
     false, true, "X\n`*>Y\n"},
    {"subject: reply joins a thread with children",
     {{"X", "x", NULL, "foo", 1}, {"X1", "x1", "x", "Re: foo", 2},
      {"Y", "y", NULL, "Re: foo", 5}},
     false, false, "X\n|->X1\n`*>Y\n"},
    {"subject: non-replies grouped under a dummy",
     {{"P", "p", NULL, "bar", 1}, {"Q", "q", NULL, "[list] BAR", 2},
      {"R", "r", NULL, "Fwd: bar", 3}},
     false, false, ",*>P\n|*>Q\n`*>R\n"},
    {"subject: strict keeps non-replies apart",
     {{"P", "p", NULL, "bar", 1}, {"Q", "q", NULL, "[list] BAR", 2},
      {"R", "r", NULL, "Fwd: bar", 3}},
     false, true, "P\nQ\nR\n"},
    {"subject: replies without their original",
     {{"Y", "y", NULL, "Re: foo", 1}, {"Z", "z", NULL, "AW: foo", 2}},
     false, false, ",*>Y\n`*>Z\n"},
    {"subject: a root joins a missing-root group",
     {{"C", "c", "r", "Re: baz", 1}, {"D", "d", "r", "Re: baz", 2},
      {"B", "b", NULL, "baz", 0}},
     false, false, ",*>B\n|?>C\n`?>D\n"},
    {"subject: a root promoted from a missing parent joins too",
     {{"X", "x", NULL, "foo", 1}, {"C", "c", "q r", "Re: foo", 2}},
     false, false, "X\n`*>C\n"},
    {"subject: empty and absent subjects never group",
     {{"A", "a", NULL, "", 1}, {"B", "b", NULL, "Re:", 2},
      {"C", "c", NULL, NULL, 3}, {"D", "d", NULL, NULL, 4}},
     false, false, "A\nB\nC\nD\n"},
};

static void jwz_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(jwz_cases); i++) {
        const struct jwz_case *c = &jwz_cases[i];
        struct inputs f;
        struct thread_tree *t = build(c->m, &f, !c->no_subject, c->strict);
        const char *got = render(t, c->m, NULL);

        if (strcmp(got, c->want) != 0)
            fail_msg("case \"%s\": got\n%swant\n%s", c->title, got, c->want);
        thread_free(t);
    }
}

static void id_hash(void **state)
{
    (void)state;
    assert_int_not_equal(thread_id_hash("", 0), 0);
    assert_int_equal(idh("a@b"), idh("a@b"));
    assert_int_not_equal(idh("a@b"), idh("A@b"));
    assert_int_not_equal(idh("a@b"), idh("b@a"));
    assert_int_not_equal(thread_id_hash("ab", 1), thread_id_hash("ab", 2));
}

/* ---- prefixes, order, collapse on a known tree ---------------------------- */

static const struct tmsg known[] = {
    {"R", "r", NULL, NULL, 1},
    {"A", "a", "r", NULL, 2},
    {"A1", "a1", "r a", NULL, 3},
    {"A2", "a2", "r a", NULL, 4},
    {"B", "b", "r", NULL, 5},
    {"B1", "b1", "r b", NULL, 6},
    {NULL, NULL, NULL, NULL, 0},
};

static void prefix_utf8(void **state)
{
    static const uint16_t depths[] = {0, 1, 2, 2, 1, 2};
    struct inputs f;
    struct thread_tree *t = build(known, &f, true, false);
    struct thread_line lines[MAXM];
    size_t nl;
    char small[4];
    struct err e;

    (void)state;
    assert_int_equal(thread_display(t, NULL, lines, MAXM, &nl, NULL), 0);
    assert_int_equal(nl, 6);
    for (size_t i = 0; i < nl; i++) {
        assert_int_equal(lines[i].msg, i);
        assert_int_equal(lines[i].depth, depths[i]);
        assert_int_equal(lines[i].hidden_count, 0);
    }
    assert_string_equal(render_lines(t, known, 0),
                        "R\n"
                        "\xe2\x94\x9c\xe2\x94\x80>A\n"
                        "\xe2\x94\x82 \xe2\x94\x9c\xe2\x94\x80>A1\n"
                        "\xe2\x94\x82 \xe2\x94\x94\xe2\x94\x80>A2\n"
                        "\xe2\x94\x94\xe2\x94\x80>B\n"
                        "  \xe2\x94\x94\xe2\x94\x80>B1\n");
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII),
                        "R\n|->A\n| |->A1\n| `->A2\n`->B\n  `->B1\n");

    /* "│ ├─>" is 4 + 7 bytes */
    assert_int_equal(thread_prefix_size(t, 2, 0), 12);
    assert_int_equal(thread_prefix_size(t, 2, THREAD_PREFIX_ASCII), 6);
    assert_int_equal(thread_prefix_size(t, 0, 0), 1);
    assert_int_equal(thread_prefix(t, 2, 0, small, sizeof small, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(small, "");

    /* the reverse order from the sort module mirrors every level */
    {
        static const int64_t dates[] = {1, 2, 3, 4, 5, 6};
        struct sort_spec spec = {{SORT_THREADS, false, false},
                                 {SORT_DATE, true, false}};
        struct sort_columns cols = {6, dates, NULL, NULL, NULL, NULL};
        struct sort_cmp *c = sort_cmp_new(&spec, &cols);
        struct thread_view v = {sort_cmp_msgs, c, NULL, NULL, false};

        assert_string_equal(render(t, known, &v),
                            "R\n|->B\n| `->B1\n`->A\n  |->A2\n  `->A1\n");
        sort_cmp_free(c);
    }
    thread_free(t);
}

static void collapse(void **state)
{
    struct inputs f;
    struct thread_tree *t = build(known, &f, true, false);

    (void)state;
    thread_sort(t, NULL);
    assert_int_equal(thread_root_of(t, 2), 0);
    assert_int_equal(thread_root_of(t, 0), 0);
    assert_int_equal(thread_count(t, 0), 6);
    assert_int_equal(thread_count(t, 1), 3);
    assert_int_equal(thread_count(t, 5), 1);

    thread_collapse(t, 1, true);
    assert_true(thread_is_collapsed(t, 1));
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII),
                        "R\n|->A(+2)\n`->B\n  `->B1\n");
    thread_collapse(t, 0, true);
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII), "R(+5)\n");
    thread_collapse(t, 0, false);
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII),
                        "R\n|->A(+2)\n`->B\n  `->B1\n");
    thread_collapse(t, 5, true);   /* a leaf: nothing to hide */
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII),
                        "R\n|->A(+2)\n`->B\n  `->B1\n");
    thread_collapse_all(t, false);
    assert_false(thread_is_collapsed(t, 1));
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII),
                        "R\n|->A\n| |->A1\n| `->A2\n`->B\n  `->B1\n");
    thread_collapse_all(t, true);
    assert_string_equal(render_lines(t, known, THREAD_PREFIX_ASCII), "R(+5)\n");
    thread_free(t);
}

static void collapse_dummy_root(void **state)
{
    static const struct tmsg m[] = {
        {"C", "c", "r", NULL, 1}, {"D", "d", "r", NULL, 2},
        {"E", "e", "r c", NULL, 3}, {"F", "f", NULL, NULL, 4},
        {NULL, NULL, NULL, NULL, 0},
    };
    struct inputs f;
    struct thread_tree *t = build(m, &f, true, false);
    struct thread_line lines[MAXM];
    size_t nl;
    uint32_t root;
    struct err e;

    (void)state;
    assert_string_equal(render(t, m, NULL), ",?>C\n| `->E\n`?>D\nF\n");
    assert_int_equal(thread_node_count(t), 5);
    root = thread_root_of(t, 2);
    assert_true(thread_is_dummy(t, root));
    assert_int_equal(thread_root_of(t, 1), root);
    assert_int_equal(thread_count(t, root), 3);
    assert_false(thread_is_dummy(t, 3));

    thread_collapse(t, root, true);
    assert_string_equal(render_lines(t, m, THREAD_PREFIX_ASCII), "C(+2)\nF\n");
    thread_collapse_all(t, false);
    thread_collapse(t, 0, true);
    assert_string_equal(render_lines(t, m, THREAD_PREFIX_ASCII),
                        ",?>C(+1)\n`?>D\nF\n");

    /* too small an output array is an error, not a silent cut */
    assert_int_equal(thread_lines(t, lines, 2, &nl, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(nl, 2);
    thread_free(t);
}

static void thread_order_by_newest(void **state)
{
    static const struct tmsg m[] = {
        {"T1", "t1", NULL, NULL, 1}, {"T1r", "t1r", "t1", NULL, 10},
        {"T2", "t2", NULL, NULL, 5}, {"T2a", "t2a", "t2", NULL, 6},
        {"T2b", "t2b", "t2", NULL, 7}, {"T2aa", "t2aa", "t2 t2a", NULL, 9},
        {NULL, NULL, NULL, NULL, 0},
    };
    static const int64_t dates[] = {1, 10, 5, 6, 7, 9};
    struct sort_spec spec;
    struct sort_columns cols = {6, dates, NULL, NULL, NULL, NULL};
    struct sort_cmp *c;
    struct inputs f;
    struct thread_tree *t = build(m, &f, true, false);
    struct thread_view v = {NULL, NULL, NULL, NULL, true};

    (void)state;
    assert_string_equal(render(t, m, NULL),
                        "T1\n`->T1r\nT2\n|->T2a\n| `->T2aa\n`->T2b\n");
    /* last-date: threads and subthreads by their newest message */
    assert_string_equal(render(t, m, &v),
                        "T2\n|->T2b\n`->T2a\n  `->T2aa\nT1\n`->T1r\n");

    /* mutt's sort=threads, sort_aux=reverse-last-date */
    assert_int_equal(sort_order_parse("threads", &spec.primary, NULL), 0);
    assert_int_equal(sort_order_parse("reverse-last-date", &spec.aux, NULL), 0);
    c = sort_cmp_new(&spec, &cols);
    v.cmp = sort_cmp_msgs;
    v.cmp_arg = c;
    v.by_newest = spec.aux.last;
    assert_string_equal(render(t, m, &v),
                        "T1\n`->T1r\nT2\n|->T2a\n| `->T2aa\n`->T2b\n");
    /* roots newest first, siblings oldest first */
    {
        struct sort_spec s2 = {{SORT_THREADS, false, false},
                               {SORT_DATE, false, false}};
        struct sort_cmp *c2 = sort_cmp_new(&s2, &cols);
        struct thread_view v2 = {sort_cmp_msgs, c2, sort_cmp_msgs, c, true};
        assert_string_equal(render(t, m, &v2),
                            "T1\n`->T1r\nT2\n|->T2b\n`->T2a\n  `->T2aa\n");
        sort_cmp_free(c2);
    }
    sort_cmp_free(c);
    thread_free(t);
}

/* Equal dates: the newest of a thread is its highest-numbered message. */
static void newest_ties(void **state)
{
    static const struct tmsg m[] = {
        {"T1", "t1", NULL, NULL, 5}, {"T2", "t2", NULL, NULL, 5},
        {"T2r", "t2r", "t2", NULL, 5}, {"T1r", "t1r", "t1", NULL, 5},
        {NULL, NULL, NULL, NULL, 0},
    };
    struct inputs f;
    struct thread_tree *t = build(m, &f, true, false);
    struct thread_view v = {NULL, NULL, NULL, NULL, true};

    (void)state;
    assert_string_equal(render(t, m, NULL), "T1\n`->T1r\nT2\n`->T2r\n");
    assert_string_equal(render(t, m, &v), "T2\n`->T2r\nT1\n`->T1r\n");
    thread_free(t);
}

static void empty_input(void **state)
{
    struct thread_tree *t = thread_build(NULL, 0, NULL, NULL);
    struct thread_line line;
    size_t nl = 7;

    (void)state;
    assert_non_null(t);
    assert_int_equal(thread_msg_count(t), 0);
    assert_int_equal(thread_first_root(t), THREAD_NONE);
    assert_int_equal(thread_display(t, NULL, &line, 0, &nl, NULL), 0);
    assert_int_equal(nl, 0);
    thread_free(t);
}

/* ---- property test over random forests ----------------------------------- */

#define PMAX 80

static unsigned rnd(unsigned *seed, unsigned n)
{
    return (unsigned)rand_r(seed) % n;
}

/* Tree invariants that hold after every build. */
static void check_structure(const struct thread_tree *t, size_t n)
{
    size_t nodes = thread_node_count(t), seen = 0, msgs = 0;

    for (uint32_t r = thread_first_root(t); r != THREAD_NONE;
         r = thread_next_sibling(t, r)) {
        assert_int_equal(thread_parent(t, r), THREAD_NONE);
        msgs += thread_count(t, r);
        seen++;
    }
    assert_int_equal(msgs, n);
    for (uint32_t x = 0; x < nodes; x++) {
        size_t kids = 0;
        uint32_t sum = thread_is_dummy(t, x) ? 0 : 1;

        for (uint32_t c = thread_first_child(t, x); c != THREAD_NONE;
             c = thread_next_sibling(t, c)) {
            assert_int_equal(thread_parent(t, c), x);
            sum += thread_count(t, c);
            kids++;
        }
        seen += kids;
        assert_int_equal(thread_count(t, x), sum);
        if (thread_is_dummy(t, x)) {
            assert_int_equal(thread_parent(t, x), THREAD_NONE);
            assert_true(kids >= 2);
            for (uint32_t c = thread_first_child(t, x); c != THREAD_NONE;
                 c = thread_next_sibling(t, c))
                assert_false(thread_is_dummy(t, c));
        }
    }
    assert_int_equal(seen, nodes);
}

static void check_lines(const struct thread_tree *t, const struct thread_line *l,
                        size_t nl, size_t n)
{
    unsigned char seen[PMAX] = {0};
    uint32_t at_depth[PMAX + 1];

    assert_int_equal(nl, n);
    for (size_t i = 0; i < nl; i++) {
        uint32_t m = l[i].msg, p = thread_parent(t, m);
        uint16_t d = l[i].depth;
        char pre[4 * PMAX + 8];
        size_t want;

        assert_true(m < n);
        assert_int_equal(seen[m], 0);
        seen[m] = 1;
        assert_int_equal(l[i].hidden_count, 0);
        if (i == 0)
            assert_int_equal(d, 0);
        else
            assert_true(d <= l[i - 1].depth + 1);
        if (d == 0)
            assert_true(p == THREAD_NONE || thread_is_dummy(t, p));
        else
            assert_int_equal(p, at_depth[d - 1]);
        at_depth[d] = m;

        assert_int_equal(thread_prefix(t, m, THREAD_PREFIX_ASCII, pre,
                                       sizeof pre, NULL), 0);
        if (thread_is_dummy(t, thread_root_of(t, m)))
            want = 3 + 2 * (size_t)d;
        else
            want = d == 0 ? 0 : 3 + 2 * ((size_t)d - 1);
        assert_int_equal(strlen(pre), want);
        assert_int_equal(thread_prefix_size(t, m, THREAD_PREFIX_ASCII), want + 1);
    }
}

static void random_forests(void **state)
{
    static const char *const subjects[] = {
        NULL, "a", "Re: a", "b", "[l] Re: b", "Fwd: a", "AW: c", "c",
    };
    unsigned seed = 20240607;

    (void)state;
    for (int round = 0; round < 1000; round++) {
        /* a universe of ids with a forest over it; some are absent */
        unsigned u = 1 + rnd(&seed, PMAX), upar[PMAX], perm[PMAX];
        struct thread_input in[PMAX];
        uint64_t refs[PMAX][PMAX + 4], uid[PMAX];
        struct thread_line lines[PMAX];
        struct thread_opts o;
        struct thread_view v = {NULL, NULL, NULL, NULL, false};
        struct thread_tree *t;
        size_t n = 0, nl, shown;

        for (unsigned i = 0; i < u; i++) {
            upar[i] = (i > 0 && rnd(&seed, 10) < 7) ? rnd(&seed, i) : PMAX;
            char name[16];

            snprintf(name, sizeof name, "u%u", i);
            /* one in 20 shares an earlier id */
            uid[i] = (i > 0 && rnd(&seed, 20) == 0) ? uid[rnd(&seed, i)]
                                                    : idh(name);
        }
        for (unsigned i = 0; i < u; i++)
            if (rnd(&seed, 10) < 8)
                perm[n++] = i;
        for (size_t i = n; i > 1; i--) {   /* random file order */
            size_t j = rnd(&seed, (unsigned)i);
            unsigned x = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = x;
        }
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            unsigned x = perm[i], chain[PMAX], k = 0, r = 0;

            for (unsigned a = upar[x]; a != PMAX; a = upar[a])
                chain[k++] = a;
            while (k > 0) {             /* root first, some dropped */
                k--;
                if (rnd(&seed, 10) != 0)
                    refs[i][r++] = uid[chain[k]];
            }
            switch (rnd(&seed, 8)) {    /* noise */
            case 0: refs[i][r++] = uid[rnd(&seed, u)]; break;
            case 1: refs[i][r++] = uid[x]; break;
            case 2: refs[i][r++] = 0; break;
            case 3: refs[i][r++] = idh("nowhere"); break;
            default: break;
            }
            in[i].id = rnd(&seed, 10) == 0 ? 0 : uid[x];
            in[i].refs = r ? refs[i] : NULL;
            in[i].n_refs = r;
            in[i].subject = subjects[rnd(&seed, ARRAY_LEN(subjects))];
            in[i].date = rnd(&seed, 50);
        }
        o.subject_fallback = rnd(&seed, 2);
        o.strict_subject = rnd(&seed, 2);
        v.by_newest = rnd(&seed, 2);
        t = thread_build(in, n, &o, NULL);
        assert_non_null(t);
        check_structure(t, n);
        assert_int_equal(thread_display(t, &v, lines, n, &nl, NULL), 0);
        check_lines(t, lines, nl, n);

        /* collapse some nodes: every message is shown or counted once */
        for (uint32_t x = 0; x < thread_node_count(t); x++)
            if (rnd(&seed, 8) == 0)
                thread_collapse(t, x, true);
        assert_int_equal(thread_lines(t, lines, n, &nl, NULL), 0);
        shown = 0;
        for (size_t i = 0; i < nl; i++)
            shown += 1 + lines[i].hidden_count;
        assert_int_equal(shown, n);
        thread_free(t);
    }
}

/* ---- 100k messages --------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long max_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void big_folder(void **state)
{
    enum { N = 100000, DEPTH = 10, SUBJ = 24 };
    struct thread_input *in = calloc(N, sizeof *in);
    uint64_t *ids = calloc(N, sizeof *ids);
    uint64_t *pool = calloc((size_t)N * DEPTH, sizeof *pool);
    uint32_t *par = calloc(N, sizeof *par), *top = calloc(N, sizeof *top);
    char *subj = calloc(N, SUBJ);
    struct thread_line *lines = calloc(N, sizeof *lines);
    int64_t *dates = calloc(N, sizeof *dates);
    const char **subjects = calloc(N, sizeof *subjects);
    unsigned seed = 7;
    size_t nl, threads = 0;
    double t0, t1, t2, t3;
    long rss0;
    struct thread_tree *t;

    (void)state;
    assert_true(in && ids && pool && par && top && subj && lines && dates &&
                subjects);
    /* 40% new threads, replies to one of the last 2000 messages, References
     * cut to the last DEPTH ids, 1% of the messages missing (their id is
     * replaced, so references to them make dummies) */
    for (uint32_t i = 0; i < N; i++) {
        char id[48];
        int len = snprintf(id, sizeof id, "%u.%u@example.org", i, i * 7919u);
        uint32_t k = 0, chain[DEPTH];
        bool root = i == 0 || rnd(&seed, 10) < 4;

        ids[i] = thread_id_hash(id, (size_t)len);
        par[i] = root ? UINT32_MAX : i - 1 - rnd(&seed, i < 2000 ? i : 2000);
        top[i] = root ? i : top[par[i]];
        for (uint32_t a = par[i]; a != UINT32_MAX && k < DEPTH; a = par[a])
            chain[k++] = a;
        for (uint32_t j = 0; j < k; j++)
            pool[(size_t)i * DEPTH + j] = ids[chain[k - 1 - j]];
        in[i].refs = k ? pool + (size_t)i * DEPTH : NULL;
        in[i].n_refs = k;
        in[i].date = dates[i] = 1700000000 + (int64_t)i * 60 + rnd(&seed, 600);
        snprintf(subj + (size_t)i * SUBJ, SUBJ, "%stopic %u", root ? "" : "Re: ",
                 top[i]);
        in[i].subject = subjects[i] = subj + (size_t)i * SUBJ;
        if (rnd(&seed, 100) == 0) {
            len = snprintf(id, sizeof id, "gone.%u@example.org", i);
            in[i].id = thread_id_hash(id, (size_t)len);
        } else {
            in[i].id = ids[i];
        }
    }

    rss0 = max_rss_kb();
    t0 = now_ms();
    t = thread_build(in, N, NULL, NULL);
    t1 = now_ms();
    assert_non_null(t);
    assert_int_equal(thread_display(t, NULL, lines, N, &nl, NULL), 0);
    t2 = now_ms();
    assert_int_equal(nl, N);
    for (uint32_t r = thread_first_root(t); r != THREAD_NONE;
         r = thread_next_sibling(t, r))
        threads++;
    {
        struct sort_spec spec = {{SORT_THREADS, false, false},
                                 {SORT_DATE, true, true}};
        struct sort_columns cols = {N, dates, NULL, NULL, NULL, subjects};
        struct sort_cmp *c = sort_cmp_new(&spec, &cols);
        struct thread_view v = {sort_cmp_msgs, c, NULL, NULL, true};
        double c0 = now_ms();

        assert_int_equal(thread_display(t, &v, lines, N, &nl, NULL), 0);
        t3 = now_ms() - c0;
        assert_int_equal(nl, N);
        sort_cmp_free(c);
    }
    printf("# 100k messages: build %.1f ms, display (date) %.1f ms, "
           "display (reverse-last-date via sort_cmp) %.1f ms; %zu threads, "
           "%zu dummies; max RSS grew %ld KiB\n",
           t1 - t0, t2 - t1, t3, threads, thread_node_count(t) - N,
           max_rss_kb() - rss0);
    thread_free(t);
    free(in);
    free(ids);
    free(pool);
    free(par);
    free(top);
    free(subj);
    free(lines);
    free(dates);
    free(subjects);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(id_hash),
        cmocka_unit_test(jwz_table),
        cmocka_unit_test(prefix_utf8),
        cmocka_unit_test(collapse),
        cmocka_unit_test(collapse_dummy_root),
        cmocka_unit_test(thread_order_by_newest),
        cmocka_unit_test(newest_ties),
        cmocka_unit_test(empty_input),
        cmocka_unit_test(random_forests),
        cmocka_unit_test(big_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
