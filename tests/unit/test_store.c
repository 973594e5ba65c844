/* Tests for mua/store: records, the interned string arena, reference runs,
 * limits, slots and compaction, records from parsed envelopes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "msg.h"
#include "store.h"
#include "thread.h"

static struct store_span sp(const char *s)
{
    struct store_span r = {s, s != NULL ? strlen(s) : 0};

    return r;
}

static struct store_new simple(const char *name)
{
    struct store_new in;

    memset(&in, 0, sizeof in);
    in.name = sp(name);
    return in;
}

/* ---- many messages ---------------------------------------------------------- */

#define MANY 20000

static void fmt_from(char *b, size_t n, uint32_t i)
{
    snprintf(b, n, "Sender %u Ünïcödé", i % 97);
}

static void fmt_subject(char *b, size_t n, uint32_t i)
{
    snprintf(b, n, "Subject of thread %u — Ζ", i / 3);
}

static void many_messages(void **state)
{
    struct store st;
    uint64_t refs[8];
    size_t raw_bytes = 0;
    char name[64], from[64], addr[64], subj[96];

    (void)state;
    store_init(&st);
    store_reserve(&st, MANY / 2);   /* and let it grow past that */
    for (uint32_t i = 0; i < MANY; i++) {
        struct store_new in;
        uint32_t idx;

        snprintf(name, sizeof name, "%u.M%uP1.host,S=%u:2,S", 1700000000 + i, i, i * 7);
        fmt_from(from, sizeof from, i);
        snprintf(addr, sizeof addr, "user%u@example.org", i % 97);
        fmt_subject(subj, sizeof subj, i);
        for (size_t k = 0; k < i % 5; k++)
            refs[k] = (uint64_t)i * 100 + k + 1;
        memset(&in, 0, sizeof in);
        in.name = sp(name);
        in.key_len = strchr(name, ':') - name;
        in.from = sp(from);
        in.from_addr = sp(addr);
        in.subject = sp(subj);
        in.id_hash = (uint64_t)i + 1;
        in.refs = refs;
        in.n_refs = i % 5;
        in.date = 1700000000 + (int64_t)i * 60;
        in.tz = (int)(i % 121) - 60;
        in.received = 1700000100 + (int64_t)i;
        in.size = 1000 + (uint64_t)i;
        in.flags = i % 512;
        in.sub = i % 2;
        in.list_id = i % 3 == 0;
        assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
        assert_int_equal(idx, i);
        raw_bytes += strlen(name) + strlen(from) + strlen(addr) + strlen(subj) + 4;
    }
    assert_int_equal(store_count(&st), MANY);
    for (uint32_t i = 0; i < MANY; i++) {
        const struct store_msg *m = store_get(&st, i);
        const uint64_t *r = store_refs(&st, m);

        snprintf(name, sizeof name, "%u.M%uP1.host,S=%u:2,S", 1700000000 + i, i, i * 7);
        fmt_from(from, sizeof from, i);
        snprintf(addr, sizeof addr, "user%u@example.org", i % 97);
        fmt_subject(subj, sizeof subj, i);
        assert_string_equal(store_str(&st, m->name), name);
        assert_int_equal(m->key_len, strchr(name, ':') - name);
        assert_string_equal(store_str(&st, m->from), from);
        assert_string_equal(store_str(&st, m->from_addr), addr);
        assert_string_equal(store_str(&st, m->subject), subj);
        assert_int_equal(m->id_hash, (uint64_t)i + 1);
        assert_int_equal(m->n_refs, i % 5);
        for (size_t k = 0; k < i % 5; k++)
            assert_int_equal(r[k], (uint64_t)i * 100 + k + 1);
        assert_int_equal(m->date, 1700000000 + (int64_t)i * 60);
        assert_int_equal(m->tz, (int)(i % 121) - 60);
        assert_int_equal(m->received, 1700000100 + (int64_t)i);
        assert_int_equal(m->size, 1000 + (uint64_t)i);
        assert_int_equal(m->flags, i % 512);
        assert_int_equal(m->sub, i % 2);
        assert_int_equal(!!(m->bits & STORE_B_LIST_ID), i % 3 == 0);
        assert_true(m->bits & STORE_B_FILLED);
        assert_int_equal(m->file_index, i);
    }
    /* Interning: 97 senders and MANY/3 subjects are stored once each. */
    assert_true(st.arena_len < raw_bytes * 2 / 3);
    {
        const struct store_msg *a = store_get(&st, 5), *b = store_get(&st, 5 + 97);

        assert_int_equal(a->from, b->from);
        assert_int_equal(store_get(&st, 3)->subject, store_get(&st, 5)->subject);
    }
    print_message("store: %d messages, %zu bytes allocated, %.1f bytes/message, "
                  "arena %u bytes (%zu before interning)\n",
                  MANY, store_mem(&st), (double)store_mem(&st) / MANY, st.arena_len, raw_bytes);
    store_free(&st);
}

/* ---- strings ---------------------------------------------------------------- */

static void empty_absent_and_nul(void **state)
{
    struct store st;
    struct store_new in = simple("one");
    const char with_nul[] = {'a', 'b', '\0', 'c'};
    uint32_t idx;
    struct err e;

    (void)state;
    store_init(&st);
    assert_string_equal(store_str(&st, 0), "");
    /* absent and empty both read as "" (offset 0) */
    in.subject.p = "";
    in.subject.n = 0;
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_int_equal(store_get(&st, idx)->subject, 0);
    assert_int_equal(store_get(&st, idx)->from, 0);
    assert_int_equal(store_get(&st, idx)->n_refs, 0);
    assert_non_null(store_refs(&st, store_get(&st, idx)));
    assert_int_equal(store_get(&st, idx)->key_len, 3);
    /* a NUL ends a string */
    in = simple("two");
    in.subject.p = with_nul;
    in.subject.n = sizeof with_nul;
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_string_equal(store_str(&st, store_get(&st, idx)->subject), "ab");
    /* a name is required */
    in = simple(NULL);
    assert_int_equal(store_add(&st, &in, NULL, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    in = simple("");
    assert_int_equal(store_add(&st, &in, NULL, &e), -1);
    assert_int_equal(store_count(&st), 2);
    /* reset forgets everything */
    store_reset(&st);
    assert_int_equal(store_count(&st), 0);
    in = simple("three");
    in.subject = sp("again");
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_int_equal(idx, 0);
    assert_string_equal(store_str(&st, store_get(&st, 0)->subject), "again");
    store_free(&st);
}

/* ---- limits ----------------------------------------------------------------- */

static void arena_limit(void **state)
{
    struct store st;
    char name[32];
    uint32_t added = 0, len_before, n_refs_before;
    struct err e;

    (void)state;
    store_init(&st);
    st.arena_max = 300;
    for (;;) {
        struct store_new in;
        uint64_t r[2] = {7, 8};

        snprintf(name, sizeof name, "message-%u", added);
        in = simple(name);
        in.subject = sp("a subject that takes room");
        in.refs = r;
        in.n_refs = 2;
        len_before = st.arena_len;
        n_refs_before = st.n_refs;
        if (store_add(&st, &in, NULL, &e) != 0)
            break;
        added++;
        assert_true(added < 100);
    }
    assert_int_equal(e.code, ERR_LIMIT);
    assert_true(added > 3);
    /* the failed add changed nothing */
    assert_int_equal(store_count(&st), added);
    assert_int_equal(st.arena_len, len_before);
    assert_int_equal(st.n_refs, n_refs_before);
    assert_true(st.arena_len <= 300);
    for (uint32_t i = 0; i < added; i++) {
        snprintf(name, sizeof name, "message-%u", i);
        assert_string_equal(store_str(&st, store_get(&st, i)->name), name);
        assert_string_equal(store_str(&st, store_get(&st, i)->subject),
                            "a subject that takes room");
    }
    /* a rename needs room too */
    assert_int_equal(store_set_name(&st, 0, "a-new-name-that-is-far-too-long-to-fit-in-what-is-left",
                                    54, 0, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(store_str(&st, store_get(&st, 0)->name), "message-0");
    store_free(&st);
}

static void record_limits(void **state)
{
    struct store st;
    struct store_new in;
    uint64_t *refs = calloc(STORE_REFS_MAX + 1, sizeof *refs);
    char *key = malloc(STORE_KEY_MAX + 2);
    struct err e;
    uint32_t idx;

    (void)state;
    assert_non_null(refs);
    assert_non_null(key);
    store_init(&st);
    in = simple("refs");
    in.refs = refs;
    in.n_refs = STORE_REFS_MAX + 1;
    assert_int_equal(store_add(&st, &in, NULL, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(store_count(&st), 0);
    in.n_refs = STORE_REFS_MAX;
    refs[STORE_REFS_MAX - 1] = 42;
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_int_equal(store_get(&st, idx)->n_refs, STORE_REFS_MAX);
    assert_int_equal(store_refs(&st, store_get(&st, idx))[STORE_REFS_MAX - 1], 42);

    memset(key, 'k', STORE_KEY_MAX + 1);
    key[STORE_KEY_MAX + 1] = '\0';
    in = simple(key);
    assert_int_equal(store_add(&st, &in, NULL, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    key[STORE_KEY_MAX] = '\0';
    in = simple(key);
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_int_equal(store_get(&st, idx)->key_len, STORE_KEY_MAX);
    /* tz outside a day is not kept */
    in = simple("tz");
    in.tz = 5000;
    assert_int_equal(store_add(&st, &in, &idx, NULL), 0);
    assert_int_equal(store_get(&st, idx)->tz, 0);
    store_free(&st);
    free(refs);
    free(key);
}

/* ---- slots ------------------------------------------------------------------ */

static void slots_and_compact(void **state)
{
    struct store st;
    struct store_new in;
    uint32_t first, map[6];

    (void)state;
    store_init(&st);
    assert_int_equal(store_add_empty(&st, 5, &first, NULL), 0);
    assert_int_equal(first, 0);
    /* fill out of order: 3, 0, 4; 1 stays empty; 4 is then gone */
    in = simple("m3");
    in.subject = sp("three");
    assert_int_equal(store_fill(&st, 3, &in, NULL), 0);
    in = simple("m0");
    assert_int_equal(store_fill(&st, 0, &in, NULL), 0);
    in = simple("m4");
    assert_int_equal(store_fill(&st, 4, &in, NULL), 0);
    in = simple("m2");
    assert_int_equal(store_fill(&st, 2, &in, NULL), 0);
    store_get_mut(&st, 4)->bits |= STORE_B_GONE;
    assert_false(store_get(&st, 1)->bits & STORE_B_FILLED);
    in = simple("m5");
    assert_int_equal(store_add(&st, &in, NULL, NULL), 0);

    store_compact(&st, map);
    assert_int_equal(store_count(&st), 4);
    assert_int_equal(map[0], 0);
    assert_int_equal(map[1], STORE_NONE);
    assert_int_equal(map[2], 1);
    assert_int_equal(map[3], 2);
    assert_int_equal(map[4], STORE_NONE);
    assert_int_equal(map[5], 3);
    assert_string_equal(store_str(&st, store_get(&st, 0)->name), "m0");
    assert_string_equal(store_str(&st, store_get(&st, 1)->name), "m2");
    assert_string_equal(store_str(&st, store_get(&st, 2)->name), "m3");
    assert_string_equal(store_str(&st, store_get(&st, 2)->subject), "three");
    assert_string_equal(store_str(&st, store_get(&st, 3)->name), "m5");
    /* file order survives compaction */
    assert_int_equal(store_get(&st, 1)->file_index, 2);
    assert_int_equal(store_get(&st, 3)->file_index, 5);

    /* a rename keeps everything else */
    assert_int_equal(store_set_name(&st, 2, "m3:2,FS", 7, 2, NULL), 0);
    assert_string_equal(store_str(&st, store_get(&st, 2)->name), "m3:2,FS");
    assert_int_equal(store_get(&st, 2)->key_len, 2);
    assert_string_equal(store_str(&st, store_get(&st, 2)->subject), "three");
    store_free(&st);
}

/* ---- envelopes -------------------------------------------------------------- */

struct env_case {
    const char *headers;
    const char *from, *from_addr, *subject;
    const char *message_id;           /* NULL: none */
    const char *refs[4];              /* expected order, NULL-terminated */
    int64_t date;
    bool list_id;
};

static const struct env_case env_cases[] = {
    {"From: Ana Ruiz <ana@example.org>\nSubject: Hola\nMessage-ID: <a@x>\n"
     "Date: Thu, 01 Jan 2026 10:00:00 +0100\nReferences: <r1@x> <r2@x>\nIn-Reply-To: <r3@x>\n"
     "List-Id: dev <dev.example.org>\n\nbody\n",
     "Ana Ruiz", "ana@example.org", "Hola", "a@x", {"r1@x", "r2@x", "r3@x", NULL},
     1767258000, true},
    /* In-Reply-To equal to the last reference is not repeated */
    {"From: bob@example.org\nReferences: <r1@x> <r2@x>\nIn-Reply-To: <r2@x>\n\n",
     "bob@example.org", "bob@example.org", "", NULL, {"r1@x", "r2@x", NULL, NULL}, 0, false},
    /* In-Reply-To alone */
    {"From: \"\" <c@example.org>\nIn-Reply-To: <p@x>\nSubject: =?UTF-8?B?w5xiZXI=?=\n\n",
     "c@example.org", "c@example.org", "Über", NULL, {"p@x", NULL, NULL, NULL}, 0, false},
    /* no From, unparsable date */
    {"Subject: nobody\nDate: yesterday-ish\n\n", "", "", "nobody", NULL, {NULL, NULL, NULL, NULL},
     0, false},
};

static void from_envelope(void **state)
{
    struct store st;

    (void)state;
    store_init(&st);
    for (size_t c = 0; c < ARRAY_LEN(env_cases); c++) {
        const struct env_case *k = &env_cases[c];
        struct message *m = NULL;
        struct store_new file = simple("file:2,S");
        const struct store_msg *r;
        const uint64_t *refs;
        size_t n = 0;
        uint32_t idx;

        file.key_len = 4;
        file.flags = MSG_SEEN;
        file.size = 1234;
        file.received = 99;
        file.tz = 60;
        file.subject = sp("ignored");
        assert_int_equal(message_parse_headers(k->headers, strlen(k->headers), NULL, &m, NULL), 0);
        assert_int_equal(store_add_envelope(&st, &file, &m->env, &idx, NULL), 0);
        r = store_get(&st, idx);
        assert_string_equal(store_str(&st, r->from), k->from);
        assert_string_equal(store_str(&st, r->from_addr), k->from_addr);
        assert_string_equal(store_str(&st, r->subject), k->subject);
        if (k->message_id != NULL)
            assert_int_equal(r->id_hash, thread_id_hash(k->message_id, strlen(k->message_id)));
        else
            assert_int_equal(r->id_hash, 0);
        while (k->refs[n] != NULL)
            n++;
        assert_int_equal(r->n_refs, n);
        refs = store_refs(&st, r);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(refs[i], thread_id_hash(k->refs[i], strlen(k->refs[i])));
        assert_int_equal(r->date, k->date);
        assert_int_equal(!!(r->bits & STORE_B_LIST_ID), k->list_id);
        assert_int_equal(r->flags, MSG_SEEN);
        assert_int_equal(r->size, 1234);
        assert_int_equal(r->received, 99);
        assert_int_equal(r->tz, 60);
        assert_int_equal(r->key_len, 4);
        message_free(m);
    }
    store_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_messages),
        cmocka_unit_test(empty_absent_and_nul),
        cmocka_unit_test(arena_limit),
        cmocka_unit_test(record_limits),
        cmocka_unit_test(slots_and_compact),
        cmocka_unit_test(from_envelope),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
