/* Unit tests for the base modules: buf and err. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "regex_guard.h"

static void buf_grows_and_stays_terminated(void **state)
{
    struct buf b = BUF_INIT;
    (void)state;

    assert_string_equal(buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_printf(&b, "%03d,", i), 0);
    assert_int_equal(b.len, 4000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 3996, "999,", 4);
    buf_consume(&b, 3996);
    assert_string_equal(buf_cstr(&b), "999,");
    buf_truncate(&b, 3);
    assert_string_equal(buf_cstr(&b), "999");
    buf_free(&b);
}

static void buf_ceiling_appends_nothing(void **state)
{
    struct buf b;
    (void)state;

    buf_init(&b, 8);
    assert_int_equal(buf_puts(&b, "12345"), 0);
    assert_int_equal(buf_puts(&b, "6789"), -1);      /* would be 9 > 8 */
    assert_string_equal(buf_cstr(&b), "12345");      /* unchanged */
    assert_int_equal(buf_printf(&b, "%s", "abcd"), -1);
    assert_int_equal(buf_puts(&b, "678"), 0);        /* exactly 8 */
    assert_int_equal(buf_putc(&b, 'x'), -1);
    assert_int_equal(b.len, 8);
    buf_free(&b);
}

static void buf_holds_nul_bytes(void **state)
{
    struct buf b = BUF_INIT;
    size_t len;
    char *p;
    (void)state;

    assert_int_equal(buf_append(&b, "a\0b", 3), 0);
    p = buf_steal(&b, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(p, "a\0b", 4);
    assert_null(b.data);
    free(p);
    p = buf_steal(&b, &len);         /* empty buffer still yields a string */
    assert_int_equal(len, 0);
    assert_string_equal(p, "");
    free(p);
}

static void err_sets_text_and_errno(void **state)
{
    struct err e;
    (void)state;

    err_clear(&e);
    assert_int_equal(e.code, ERR_OK);
    errno = ENOENT;
    assert_int_equal(err_sys(&e, "open %s", "x"), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(e.sys_errno, ENOENT);
    assert_int_equal(errno, ENOENT);
    assert_non_null(strstr(e.text, "open x: "));
    err_prefix(&e, "folder %s", "INBOX");
    assert_true(strncmp(e.text, "folder INBOX: open x", 20) == 0);
    assert_int_equal(err_set(NULL, ERR_PARSE, "ignored"), -1);
}

static void err_long_text_is_marked(void **state)
{
    struct err e;
    char big[2000];
    (void)state;

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    err_set(&e, ERR_PARSE, "%s", big);
    assert_int_equal(strlen(e.text), ERR_TEXT_MAX - 1);
    assert_string_equal(e.text + ERR_TEXT_MAX - 4, "...");
}

/* Every regcomp in the programs goes through regex_compile: expressions
 * whose repetitions expand past the limit are refused with a message
 * (without the check, each of these takes gigabytes inside regcomp). */
static void regex_compile_refuses_blowups(void **state)
{
    static const struct {
        const char *re;
        bool ok;
    } cases[] = {
        {"a{1,32767}", false},
        {"^a1++++++++++++++++++++++++++++++@", false},
        {"((a{1,1000}){1,1000}){1,1000}", false},
        {"a{0,40}{0,40}{0,40}", false},
        {"x[]{]{1000}{1000}", false},
        {"^(Re|Fwd?): ", true},
        {"a{1,10}b+c*", true},
        {"[[:alpha:]]+@example\\.org", true},
        {"(", false},               /* refused by regcomp itself */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        regex_t re;
        struct err e;
        int rc = regex_compile(&re, cases[i].re, REG_EXTENDED | REG_NOSUB, &e);

        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            regfree(&re);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(e.code, ERR_PARSE);
            if (strchr(cases[i].re, '{') || strchr(cases[i].re, '+'))
                assert_non_null(strstr(e.text, "too complex"));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_grows_and_stays_terminated),
        cmocka_unit_test(buf_ceiling_appends_nothing),
        cmocka_unit_test(buf_holds_nul_bytes),
        cmocka_unit_test(err_sets_text_and_errno),
        cmocka_unit_test(err_long_text_is_marked),
        cmocka_unit_test(regex_compile_refuses_blowups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
