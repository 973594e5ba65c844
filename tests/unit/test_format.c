/* Unit tests for mua/format: mutt-style format strings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "format.h"

/* Fixture: a message with a subject, a sender, a count and two flags. */
static int cb(void *ctx, char op, const char *arg, size_t arglen, bool *truth, struct buf *out)
{
    int *calls = ctx;
    const char *s = NULL;

    (*calls)++;
    if (truth) {
        switch (op) {
        case 'l': *truth = true; return 0;     /* "has lines" */
        case 'M': *truth = false; return 0;    /* "collapsed" */
        default: return -1;
        }
    }
    switch (op) {
    case 's': s = "Hello world"; break;
    case 'L': s = "Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"; break;   /* José 日本: 9 cols */
    case 'c': s = "42"; break;
    case 'n': s = "-7"; break;
    case 'e': s = "\x1b[31mred"; break;
    case 'C': s = "e\xcc\x81" "e\xcc\x81" "e\xcc\x81"; break;   /* 3 cols, combining */
    case '{':
        return buf_printf(out, "<date:%.*s>", (int)arglen, arg) < 0 ? -1 : 0;
    default:
        return -1;
    }
    return buf_puts(out, s) < 0 ? -1 : 0;
}

struct fcase {
    const char *fmt;
    size_t cols;
    const char *want;
};

static const struct fcase cases[] = {
    {"%s", 0, "Hello world"},
    {"[%15s]", 0, "[    Hello world]"},
    {"[%-15s]", 0, "[Hello world    ]"},
    {"[%.5s]", 0, "[Hello]"},
    {"[%-8.5s]", 0, "[Hello   ]"},
    {"[%04c]", 0, "[0042]"},
    {"[%04n]", 0, "[-007]"},
    {"[%-12L]", 0, "[Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac   ]"},
    {"[%.7L]", 0, "[Jos\xc3\xa9 \xe6\x97\xa5]"},          /* 日 fits at col 7 */
    {"[%.6L]", 0, "[Jos\xc3\xa9 ]"},                     /* it does not at 6 */
    {"[%5C]", 0, "[  e\xcc\x81" "e\xcc\x81" "e\xcc\x81]"},
    {"%{%b %d}", 0, "<date:%b %d>"},
    {"100%% %c", 0, "100% 42"},
    {"%?l?lines&none?", 0, "lines"},
    {"%?M?collapsed&open?", 0, "open"},
    {"%?M?collapsed?|", 0, "|"},
    {"%?l?(%4c)&x?", 0, "(  42)"},
    {"%e", 0, "^[[31mred"},
    {"%s%>-%c", 20, "Hello world-------42"},
    {"%s%|.", 15, "Hello world...."},
    {"%s %s %s%*.%c", 16, "Hello world He42"},
    {"%s%>.%c", 8, "Hello wo"},
    {"%Q%s", 0, "Hello world"},            /* unknown op expands to nothing */
    {"%?l?unterminated", 0, ""},
    {"%{no close", 0, ""},
    {"trailing %", 0, "trailing "},
    {"%s", 5, "Hello"},
};

static void format_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf out = BUF_INIT;
        int calls = 0;
        assert_int_equal(format_expand(cases[i].fmt, cb, &calls, cases[i].cols, &out), 0);
        if (strcmp(buf_cstr(&out), cases[i].want) != 0)
            fail_msg("case %zu \"%s\": got \"%s\" want \"%s\"", i, cases[i].fmt,
                     buf_cstr(&out), cases[i].want);
        buf_free(&out);
    }
}

static void mutt_default_index_format(void **state)
{
    struct buf out = BUF_INIT;
    int calls = 0;
    (void)state;
    /* mutt's shape: unknown %Z and %C here expand as the fixture says */
    assert_int_equal(format_expand("%4c %{%b %d} %-15.15L (%?l?%4c&%4n?) %s", cb, &calls, 60,
                                   &out), 0);
    assert_string_equal(buf_cstr(&out),
                        "  42 <date:%b %d> Jos\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac       (  42) Hello world");
    buf_free(&out);
}

static void ceiling_is_reported(void **state)
{
    struct buf out;
    int calls = 0;
    (void)state;
    buf_init(&out, 4);
    assert_int_equal(format_expand("%s", cb, &calls, 0, &out), -1);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_table),
        cmocka_unit_test(mutt_default_index_format),
        cmocka_unit_test(ceiling_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
