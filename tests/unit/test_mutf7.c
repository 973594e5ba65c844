/*
 * Unit tests for lib/mutf7: IMAP modified UTF-7 mailbox names.
 *
 * A table of names in both spellings checked in both directions (which
 * also checks that encoding gives the canonical form), the inputs strict
 * decoding refuses, the UTF-8 encoding refuses, that a failure leaves the
 * output untouched, the output ceiling, and a round trip over code points
 * from every UTF-8 length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "buf.h"
#include "err.h"
#include "mutf7.h"
#include "testutil.h"

struct pair {
    const char *utf8;
    const char *mutf7;
};

static const struct pair pairs[] = {
    {"", ""},
    {"INBOX", "INBOX"},
    {"&", "&-"},
    {"a&b", "a&-b"},
    {"&&", "&-&-"},
    {"Entw\xc3\xbcrfe", "Entw&APw-rfe"},
    {"~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
     "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
    {"\xf0\x9f\x98\x80", "&2D3eAA-"},
    {"\xc3\xa9", "&AOk-"},
    {"\xc3\xa9\xc3\xa9", "&AOkA6Q-"},
    {"\xc3\x84" "a \xc3\x96&\xc3\xbc", "&AMQ-a &ANY-&-&APw-"},
    {"\x7f", "&AH8-"},
    {"\t", "&AAk-"},
    {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x98\x80x", "&ZeVnLIqe2D3eAA-x"},
    {"\xf4\x8f\xbf\xbf", "&2,,f,w-"},
    {"Sent Items", "Sent Items"},
    {"a-b", "a-b"},
    {"\xc3\xa9-", "&AOk--"},
    {"\xef\xaf\xa0\xcf\xa0", "&++AD4A-"},
};

static void test_pairs(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        struct buf b = BUF_INIT;
        struct err e;
        assert_int_equal(mutf7_to_utf8(pairs[i].mutf7, strlen(pairs[i].mutf7), &b, &e), 0);
        assert_string_equal(buf_cstr(&b), pairs[i].utf8);
        buf_reset(&b);
        assert_int_equal(mutf7_from_utf8(pairs[i].utf8, strlen(pairs[i].utf8), &b, &e), 0);
        assert_string_equal(buf_cstr(&b), pairs[i].mutf7);
        buf_free(&b);
    }
}

static const char *const bad_mutf7[] = {
    "&",            /* unterminated */
    "&AOk",         /* unterminated */
    "a&AOk",
    "&AGE-",        /* "a" encoded */
    "&ACY-",        /* "&" encoded */
    "&ACA-",        /* space encoded */
    "&2D0-",        /* high surrogate (partial) */
    "&2D3eAA",      /* unterminated after a pair */
    "&2D3YPQ-",     /* high surrogate followed by high surrogate */
    "&3gA-",        /* lone low surrogate */
    "&2D0AOQ-",     /* high surrogate then a BMP character */
    "&AOkA-",       /* a spare base64 character */
    "&AOl-",        /* nonzero padding bits */
    "&AAA-",        /* U+0000 */
    "&AO!-",        /* outside the alphabet */
    "&AOk=-",       /* padding is not used */
    "&AO/-",        /* "/" is "," here */
    "&AOk-&AOk-",   /* two sections in a row */
    "&A-",          /* too short for a character */
    "\x80",
    "\xc3\xa9",     /* raw UTF-8 */
    "tab\there",
    "\x7f",
    "&-&AOk-&AOk-",
};

static void test_bad_mutf7(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_mutf7); i++) {
        struct buf b = BUF_INIT;
        struct err e;
        err_clear(&e);
        assert_int_equal(buf_puts(&b, "keep"), 0);
        if (mutf7_to_utf8(bad_mutf7[i], strlen(bad_mutf7[i]), &b, &e) != -1)
            fail_msg("accepted bad input %zu: %s", i, bad_mutf7[i]);
        assert_int_equal(e.code, ERR_PARSE);
        assert_non_null(strstr(e.text, "modified UTF-7"));
        assert_string_equal(buf_cstr(&b), "keep");
        buf_free(&b);
    }
    /* "&-" after a section is fine: it is the ampersand, not a section */
    struct buf b = BUF_INIT;
    assert_int_equal(mutf7_to_utf8("&AOk-&-", 7, &b, NULL), 0);
    assert_string_equal(buf_cstr(&b), "\xc3\xa9&");
    buf_free(&b);
}

static const struct {
    const char *in;
    size_t len;
} bad_utf8[] = {
    {"\xc3", 1},
    {"\xc0\xaf", 2},                 /* overlong "/" */
    {"\xe0\x80\xaf", 3},             /* overlong */
    {"\xed\xa0\x80", 3},             /* UTF-8 encoded surrogate */
    {"\xf4\x90\x80\x80", 4},         /* past U+10FFFF */
    {"\xff", 1},
    {"a\0b", 3},                     /* U+0000 */
    {"\xe6\x97", 2},                 /* truncated */
    {"\xe6\x97" "a", 3},              /* not a continuation octet */
    {"\x80" "abc", 4},
};

static void test_bad_utf8(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_utf8); i++) {
        struct buf b = BUF_INIT;
        struct err e;
        assert_int_equal(buf_puts(&b, "keep"), 0);
        if (mutf7_from_utf8(bad_utf8[i].in, bad_utf8[i].len, &b, &e) != -1)
            fail_msg("accepted bad UTF-8 %zu", i);
        assert_int_equal(e.code, ERR_PARSE);
        assert_string_equal(buf_cstr(&b), "keep");
        buf_free(&b);
    }
}

static void test_ceiling(void **state)
{
    struct buf b;
    struct err e;

    (void)state;
    buf_init(&b, 8);
    assert_int_equal(mutf7_from_utf8("\xc3\xa9\xc3\xa9\xc3\xa9", 6, &b, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(b.len, 0);
    assert_int_equal(mutf7_to_utf8("abcdefghij", 10, &b, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(mutf7_to_utf8("abcd", 4, &b, &e), 0);
    assert_string_equal(buf_cstr(&b), "abcd");
    buf_free(&b);
}

static size_t put_cp(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Strings of 1 to 5 code points over a spread of values round-trip, and
 * the encoded form decodes strictly. */
static void test_round_trip(void **state)
{
    static const uint32_t cps[] = {0x01, 0x1F, 0x20, 0x26, 0x2D, 0x41, 0x7E, 0x7F, 0x80,
                                   0xE9, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF,
                                   0x10000, 0x1F600, 0x10FFFF};
    size_t n = ARRAY_LEN(cps);

    (void)state;
    for (size_t a = 0; a < n; a++) {
        for (size_t len = 1; len <= 5; len++) {
            char in[32];
            size_t il = 0;
            struct buf enc = BUF_INIT, dec = BUF_INIT;
            for (size_t k = 0; k < len; k++)
                il += put_cp(in + il, cps[(a + k * 7) % n]);
            assert_int_equal(mutf7_from_utf8(in, il, &enc, NULL), 0);
            for (size_t k = 0; k < enc.len; k++)
                assert_true(enc.data[k] >= 0x20 && enc.data[k] <= 0x7E);
            assert_int_equal(mutf7_to_utf8(enc.data, enc.len, &dec, NULL), 0);
            assert_int_equal(dec.len, il);
            assert_memory_equal(dec.data, in, il);
            buf_free(&enc);
            buf_free(&dec);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_bad_mutf7),
        cmocka_unit_test(test_bad_utf8),
        cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
