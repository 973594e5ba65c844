/* Unit tests for mua/sort: keys, reverse, stability, aux key, names,
 * subject normalization. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sort.h"

#define N6 6

static const int64_t c_date[N6] = {30, 10, 20, 10, 50, 40};
static const int64_t c_recv[N6] = {5, 6, 1, 2, 3, 4};
static const uint64_t c_size[N6] = {100, 300, 200, 300, 50, 10};
static const char *const c_from[N6] = {"bob", "Alice", "carol", "alice", NULL,
                                       "Dave"};
static const char *const c_subj[N6] = {"Re: beta", "alpha", "[list] Gamma",
                                       "ALPHA", NULL, "Fwd: beta"};
static const struct sort_columns cols6 = {N6, c_date, c_recv, c_size, c_from,
                                          c_subj};

struct key_case {
    const char *primary;
    const char *aux;
    uint32_t want[N6];
};

static const struct key_case key_cases[] = {
    {"date", "unsorted", {1, 3, 2, 0, 5, 4}},
    {"date-sent", "unsorted", {1, 3, 2, 0, 5, 4}},
    {"reverse-date", "unsorted", {4, 5, 0, 2, 1, 3}},
    {"date", "received", {3, 1, 2, 0, 5, 4}},
    {"date", "reverse-unsorted", {3, 1, 2, 0, 5, 4}},
    {"date-received", "date", {2, 3, 4, 5, 0, 1}},
    {"received", "date", {2, 3, 4, 5, 0, 1}},
    {"reverse-received", "date", {1, 0, 5, 4, 3, 2}},
    {"size", "unsorted", {5, 4, 0, 2, 1, 3}},
    {"size", "received", {5, 4, 0, 2, 3, 1}},
    {"reverse-size", "unsorted", {1, 3, 2, 0, 4, 5}},
    {"from", "unsorted", {4, 1, 3, 0, 2, 5}},
    {"from", "received", {4, 3, 1, 0, 2, 5}},
    {"reverse-from", "unsorted", {5, 2, 0, 1, 3, 4}},
    {"subject", "unsorted", {4, 1, 3, 0, 5, 2}},
    {"subject", "reverse-date", {4, 1, 3, 5, 0, 2}},
    {"reverse-subject", "unsorted", {2, 0, 5, 1, 3, 4}},
    {"unsorted", "date", {0, 1, 2, 3, 4, 5}},
    {"mailbox-order", "date", {0, 1, 2, 3, 4, 5}},
    {"reverse-unsorted", "date", {5, 4, 3, 2, 1, 0}},
    {"threads", "date", {1, 3, 2, 0, 5, 4}},
    {"threads", "reverse-size", {1, 3, 2, 0, 4, 5}},
};

static void spec_of(const char *primary, const char *aux, struct sort_spec *s)
{
    struct err e;

    if (sort_order_parse(primary, &s->primary, &e) < 0 ||
        sort_order_parse(aux, &s->aux, &e) < 0)
        fail_msg("parse %s/%s: %s", primary, aux, e.text);
}

static void keys_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(key_cases); i++) {
        const struct key_case *c = &key_cases[i];
        struct sort_spec spec;
        uint32_t idx[N6] = {0, 1, 2, 3, 4, 5};
        uint32_t shuffled[N6] = {4, 2, 5, 0, 3, 1};
        struct sort_cmp *cmp;

        spec_of(c->primary, c->aux, &spec);
        sort_indexes(idx, N6, &spec, &cols6);
        for (size_t j = 0; j < N6; j++)
            if (idx[j] != c->want[j])
                fail_msg("%s/%s: position %zu is %u, want %u", c->primary,
                         c->aux, j, idx[j], c->want[j]);
        /* the starting order does not matter */
        sort_indexes(shuffled, N6, &spec, &cols6);
        assert_memory_equal(shuffled, c->want, sizeof shuffled);
        /* the prepared comparison agrees with the sort */
        cmp = sort_cmp_new(&spec, &cols6);
        for (size_t j = 0; j + 1 < N6; j++) {
            assert_true(sort_cmp_msgs(c->want[j], c->want[j + 1], cmp) < 0);
            assert_true(sort_cmp_msgs(c->want[j + 1], c->want[j], cmp) > 0);
            assert_int_equal(sort_cmp_msgs(c->want[j], c->want[j], cmp), 0);
        }
        sort_cmp_free(cmp);
    }
}

static void subset_and_missing_columns(void **state)
{
    struct sort_spec spec;
    uint32_t idx[3] = {5, 0, 2};
    struct sort_columns none = {N6, NULL, NULL, NULL, NULL, NULL};

    (void)state;
    spec_of("subject", "unsorted", &spec);
    sort_indexes(idx, 3, &spec, &cols6);
    assert_int_equal(idx[0], 0);        /* beta (file order before 5) */
    assert_int_equal(idx[1], 5);
    assert_int_equal(idx[2], 2);
    /* a key without its column: all equal, file order */
    for (int k = 0; k < 3; k++) {
        static const char *const names[] = {"reverse-date", "from", "subject"};
        uint32_t v[4] = {3, 1, 2, 0};
        spec_of(names[k], "unsorted", &spec);
        sort_indexes(v, 4, &spec, &none);
        for (uint32_t j = 0; j < 4; j++)
            assert_int_equal(v[j], j);
    }
}

/* Equal keys keep file order, forward and reverse, on a large input. */
static void stability(void **state)
{
    enum { N = 5000 };
    static int64_t date[N];
    static const char *subj[N];
    static const char *const forms[] = {"x", "Re: x", "RE:   X ", "[l] x",
                                        "Fwd: Re: x"};
    static uint32_t idx[N];
    struct sort_columns cols = {N, date, NULL, NULL, NULL, subj};
    unsigned seed = 99;

    (void)state;
    for (uint32_t i = 0; i < N; i++) {
        date[i] = rand_r(&seed) % 7;
        subj[i] = forms[rand_r(&seed) % ARRAY_LEN(forms)];
    }
    for (int r = 0; r < 2; r++) {
        struct sort_spec spec;
        spec_of(r ? "reverse-date" : "date", "unsorted", &spec);
        for (uint32_t i = 0; i < N; i++)
            idx[i] = N - 1 - i;
        sort_indexes(idx, N, &spec, &cols);
        for (uint32_t i = 1; i < N; i++) {
            int64_t a = date[idx[i - 1]], b = date[idx[i]];
            assert_true(r ? a >= b : a <= b);
            if (a == b)
                assert_true(idx[i - 1] < idx[i]);
        }
    }
    {
        struct sort_spec spec;
        spec_of("subject", "unsorted", &spec);
        for (uint32_t i = 0; i < N; i++)
            idx[i] = (i * 7u) % N;
        sort_indexes(idx, N, &spec, &cols);
        for (uint32_t i = 0; i < N; i++)
            assert_int_equal(idx[i], i);
    }
}

static int by_value(uint32_t a, uint32_t b, void *arg)
{
    const int *v = arg;

    return (v[a] > v[b]) - (v[a] < v[b]);
}

static void generic_sort(void **state)
{
    enum { N = 1000 };
    static int val[N];
    static uint32_t v[N];
    unsigned seed = 3;

    (void)state;
    for (uint32_t i = 0; i < N; i++) {
        val[i] = rand_r(&seed) % 10;
        v[i] = i;
    }
    sort_u32(v, N, by_value, val, NULL);
    for (uint32_t i = 1; i < N; i++) {
        assert_true(val[v[i - 1]] <= val[v[i]]);
        if (val[v[i - 1]] == val[v[i]])
            assert_true(v[i - 1] < v[i]);   /* stable */
    }
}

/* The record/multikey fast path of sort_indexes agrees with the plain
 * comparison on random strings with long shared prefixes and whitespace
 * at chunk boundaries. */
static void matches_plain_comparison(void **state)
{
    enum { N = 300, LEN = 40 };
    static const char *const pieces[] = {
        "a", "A", "b", " ", "  ", "\t", "Re: ", "abcdefgh", "ABCDEFG", "[x] ",
        "\xc3\xa9", "z",
    };
    static char text[2][N][LEN + 16];
    static const char *strs[2][N];
    static int64_t date[N], recv[N];
    static uint64_t size[N];
    static uint32_t fast[N], plain[N];
    static const enum sort_key keys[] = {SORT_SUBJECT, SORT_FROM, SORT_DATE,
                                         SORT_SIZE, SORT_UNSORTED};
    unsigned seed = 5;

    (void)state;
    for (int round = 0; round < 40; round++) {
        struct sort_columns cols = {N, date, recv, size, NULL, NULL};
        size_t n = 1 + (size_t)rand_r(&seed) % N;

        for (size_t i = 0; i < n; i++) {
            for (int w = 0; w < 2; w++) {
                size_t len = 0;
                int parts = rand_r(&seed) % 8;
                text[w][i][0] = '\0';
                for (int k = 0; k < parts; k++) {
                    const char *piece = pieces[rand_r(&seed) % ARRAY_LEN(pieces)];
                    if (len + strlen(piece) > LEN)
                        break;
                    strcat(text[w][i], piece);
                    len += strlen(piece);
                }
                strs[w][i] = rand_r(&seed) % 20 ? text[w][i] : NULL;
            }
            date[i] = rand_r(&seed) % 5 - 2;
            recv[i] = rand_r(&seed) % 3;
            size[i] = (uint64_t)(rand_r(&seed) % 4) << 40;
        }
        cols.subject = strs[0];
        cols.from = strs[1];
        for (size_t k = 0; k < ARRAY_LEN(keys) * 4; k++) {
            struct sort_spec spec = {{keys[k / 4], (k & 1) != 0, false},
                                     {keys[(k / 4 + 1) % ARRAY_LEN(keys)],
                                      (k & 2) != 0, false}};
            struct sort_cmp *c = sort_cmp_new(&spec, &cols);

            for (uint32_t i = 0; i < n; i++)
                fast[i] = plain[i] = (uint32_t)(n - 1 - i);
            sort_indexes(fast, n, &spec, &cols);
            sort_u32(plain, n, sort_cmp_msgs, c, NULL);
            if (memcmp(fast, plain, n * sizeof *fast) != 0)
                fail_msg("round %d, key %d reverse %d aux %d", round,
                         (int)spec.primary.key, spec.primary.reverse,
                         (int)spec.aux.key);
            sort_cmp_free(c);
        }
    }
}

/* ---- names ----------------------------------------------------------------- */

struct name_case {
    const char *in;
    enum sort_key key;
    bool reverse, last;
    const char *canonical;
};

static const struct name_case name_cases[] = {
    {"date", SORT_DATE, false, false, "date"},
    {"date-sent", SORT_DATE, false, false, "date"},
    {"received", SORT_RECEIVED, false, false, "date-received"},
    {"date-received", SORT_RECEIVED, false, false, "date-received"},
    {"from", SORT_FROM, false, false, "from"},
    {"subject", SORT_SUBJECT, false, false, "subject"},
    {"size", SORT_SIZE, false, false, "size"},
    {"threads", SORT_THREADS, false, false, "threads"},
    {"unsorted", SORT_UNSORTED, false, false, "unsorted"},
    {"mailbox-order", SORT_UNSORTED, false, false, "unsorted"},
    {"reverse-date", SORT_DATE, true, false, "reverse-date"},
    {"last-date-received", SORT_RECEIVED, false, true, "last-date-received"},
    {"reverse-last-date-received", SORT_RECEIVED, true, true,
     "reverse-last-date-received"},
    {"Reverse-Subject", SORT_SUBJECT, true, false, "reverse-subject"},
};

static void names(void **state)
{
    static const char *const bad[] = {
        "", "dates", "reverse-", "last-", "last-reverse-date",
        "reverse-reverse-date", "date ", "date-", "\x1b[2Jdate",
    };
    char buf[SORT_NAME_MAX];
    struct sort_order o;
    struct err e;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(name_cases); i++) {
        const struct name_case *c = &name_cases[i];
        if (sort_order_parse(c->in, &o, &e) < 0)
            fail_msg("\"%s\": %s", c->in, e.text);
        assert_int_equal(o.key, c->key);
        assert_int_equal(o.reverse, c->reverse);
        assert_int_equal(o.last, c->last);
        assert_int_equal(sort_order_format(&o, buf, sizeof buf, NULL), 0);
        assert_string_equal(buf, c->canonical);
    }
    /* every order survives format then parse */
    for (int k = SORT_UNSORTED; k <= SORT_THREADS; k++)
        for (int f = 0; f < 4; f++) {
            struct sort_order a = {(enum sort_key)k, f & 1, (f & 2) != 0}, b;
            assert_int_equal(sort_order_format(&a, buf, sizeof buf, NULL), 0);
            assert_int_equal(sort_order_parse(buf, &b, NULL), 0);
            assert_int_equal(a.key, b.key);
            assert_int_equal(a.reverse, b.reverse);
            assert_int_equal(a.last, b.last);
            assert_string_equal(sort_key_name(b.key), buf + (a.reverse ? 8 : 0) +
                                (a.last ? 5 : 0));
        }
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        assert_int_equal(sort_order_parse(bad[i], &o, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_null(strchr(e.text, '\x1b'));
    }
    o = (struct sort_order){SORT_RECEIVED, true, true};
    assert_int_equal(sort_order_format(&o, buf, 10, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(buf, "");
    o.key = (enum sort_key)42;
    assert_int_equal(sort_order_format(&o, buf, sizeof buf, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_null(sort_key_name((enum sort_key)42));
}

/* ---- subjects ----------------------------------------------------------- */

struct subj_case {
    const char *in;
    const char *base;
    bool reply;
};

static const struct subj_case subj_cases[] = {
    {"foo", "foo", false},
    {"Re: foo", "foo", true},
    {"RE: foo", "foo", true},
    {"re:foo", "foo", true},
    {"Re[2]: foo", "foo", true},
    {"AW: foo", "foo", true},
    {"SV: foo", "foo", true},
    {"Antw: foo", "foo", true},
    {"Fwd: foo", "foo", false},
    {"Fw: foo", "foo", false},
    {"Fwd: Re: foo", "foo", true},
    {"[list] Re: foo", "foo", true},
    {"Re: [list] Re: foo", "foo", true},
    {"  re: RE:  foo bar", "foo bar", true},
    {"[a][b] foo", "foo", false},
    {"[list]", "[list]", false},
    {"[list]  ", "[list]  ", false},
    {"[unclosed foo", "[unclosed foo", false},
    {"Reply: foo", "Reply: foo", false},
    {"Re foo", "Re foo", false},
    {"Re[x]: foo", "Re[x]: foo", false},
    {"Re[]: foo", "Re[]: foo", false},
    {"Re:", "", true},
    {"", "", false},
    {NULL, "", false},
};

static void subjects(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(subj_cases); i++) {
        const struct subj_case *c = &subj_cases[i];
        bool reply = !c->reply;
        const char *b = sort_subject_base(c->in, &reply);
        if (strcmp(b, c->base) != 0 || reply != c->reply)
            fail_msg("\"%s\": base \"%s\" reply %d", c->in ? c->in : "(null)",
                     b, reply);
    }
    assert_int_equal(sort_subject_cmp("foo  bar", " FOO\tbar \r\n"), 0);
    assert_int_equal(sort_subject_hash("foo  bar"),
                     sort_subject_hash(" FOO\tbar \r\n"));
    assert_int_not_equal(sort_subject_hash("foo bar"), sort_subject_hash("foobar"));
    assert_true(sort_subject_cmp("alpha", "Beta") < 0);
    assert_true(sort_subject_cmp("beta", "ALPHA") > 0);
    assert_true(sort_subject_cmp("a b", "ab") < 0);
    assert_true(sort_subject_cmp(NULL, "a") < 0);
    assert_int_equal(sort_subject_cmp(NULL, "  "), 0);
    /* bytes above ASCII compare as bytes, unfolded */
    assert_true(sort_subject_cmp("\xc3\xa9", "\xc3\x89") != 0);
    assert_true(sort_subject_cmp("z", "\xc3\xa9") < 0);
}

/* ---- speed ----------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void big_sort(void **state)
{
    enum { N = 100000 };
    int64_t *date = calloc(N, sizeof *date);
    char *pool = calloc(N, 32);
    const char **subj = calloc(N, sizeof *subj);
    uint32_t *idx = calloc(N, sizeof *idx);
    struct sort_columns cols = {N, date, NULL, NULL, NULL, NULL};
    struct sort_spec spec;
    unsigned seed = 11;
    double t0, t_date, t_subj;

    (void)state;
    assert_true(date && pool && subj && idx);
    for (uint32_t i = 0; i < N; i++) {
        date[i] = 1700000000 + rand_r(&seed) % 10000000;
        snprintf(pool + (size_t)i * 32, 32, "%sTopic %u",
                 rand_r(&seed) % 2 ? "Re: " : "", (unsigned)rand_r(&seed) % 20000);
        subj[i] = pool + (size_t)i * 32;
        idx[i] = i;
    }
    cols.subject = subj;
    spec_of("date", "unsorted", &spec);
    t0 = now_ms();
    sort_indexes(idx, N, &spec, &cols);
    t_date = now_ms() - t0;
    for (uint32_t i = 1; i < N; i++)
        assert_true(date[idx[i - 1]] <= date[idx[i]]);

    for (uint32_t i = 0; i < N; i++)
        idx[i] = i;
    spec_of("subject", "date", &spec);
    t0 = now_ms();
    sort_indexes(idx, N, &spec, &cols);
    t_subj = now_ms() - t0;
    for (uint32_t i = 1; i < N; i++)
        assert_true(sort_subject_cmp(sort_subject_base(subj[idx[i - 1]], NULL),
                                     sort_subject_base(subj[idx[i]], NULL)) <= 0);
    printf("# 100k messages: sort by date %.1f ms, by subject %.1f ms\n",
           t_date, t_subj);
    free(date);
    free(pool);
    free(subj);
    free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_table),
        cmocka_unit_test(subset_and_missing_columns),
        cmocka_unit_test(stability),
        cmocka_unit_test(generic_sort),
        cmocka_unit_test(matches_plain_comparison),
        cmocka_unit_test(names),
        cmocka_unit_test(subjects),
        cmocka_unit_test(big_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
