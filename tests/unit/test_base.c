/* Unit tests for the base modules: buf and err. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A file read into a buffer with a ceiling: exactly the ceiling fits, one
 * byte more is -2, and a large file goes into an unbounded buffer whole. */
static void buf_read_all_respects_a_small_ceiling(void **state)
{
    static const size_t sizes[] = {0, 1, 10, 11, 200000};
    (void)state;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char path[] = "/tmp/correo-buf-XXXXXX";
        int fd = mkstemp(path);
        struct buf small, big;
        char *data = malloc(sizes[i] + 1);

        assert_true(fd >= 0);
        assert_non_null(data);
        for (size_t k = 0; k < sizes[i]; k++)
            data[k] = (char)('a' + k % 26);
        assert_int_equal(write(fd, data, sizes[i]), (ssize_t)sizes[i]);
        buf_init(&small, 10);
        buf_init(&big, 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        int rc = buf_read_all(&small, fd);
        assert_int_equal(rc, sizes[i] <= 10 ? 0 : -2);
        if (rc == 0) {
            assert_int_equal(small.len, sizes[i]);
            assert_memory_equal(buf_cstr(&small), data, sizes[i]);
        }
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(buf_read_all(&big, fd), 0);
        assert_int_equal(big.len, sizes[i]);
        assert_int_equal(strlen(buf_cstr(&big)), sizes[i]);   /* terminated */
        if (sizes[i])
            assert_memory_equal(big.data, data, sizes[i]);
        buf_free(&small);
        buf_free(&big);
        free(data);
        close(fd);
        unlink(path);
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
        cmocka_unit_test(buf_read_all_respects_a_small_ceiling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
