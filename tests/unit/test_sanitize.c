/* Unit tests for lib/sanitize and lib/log. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sanitize.h"

static char *term(const char *s, size_t len, unsigned flags)
{
    return sanitize_term_dup(s, len, flags);
}

struct term_case {
    const char *in;
    size_t len;           /* 0: strlen(in) */
    unsigned flags;
    const char *out;
};

static const struct term_case term_cases[] = {
    {"plain ascii", 0, 0, "plain ascii"},
    {"\x1b[2J\x1b]0;owned\x07", 0, 0, "^[[2J^[]0;owned^G"},
    {"a\x7f" "b", 0, 0, "a^?b"},
    {"nul\0byte", 8, 0, "nul^@byte"},
    {"tab\there", 0, 0, "tab here"},
    {"tab\there", 0, SAN_KEEP_TAB, "tab\there"},
    {"two\nlines", 0, 0, "two lines"},
    {"two\r\nlines\n", 0, SAN_KEEP_NEWLINE, "two\nlines\n"},
    {"lone\rcr", 0, SAN_KEEP_NEWLINE, "lone^Mcr"},
    {"x\r\ny", 0, 0, "x^M y"},
    /* C1 control CSI (U+009B) encoded in UTF-8 */
    {"\xc2\x9b" "31m", 0, 0, "<U+009B>31m"},
    /* raw C1 byte: invalid UTF-8 */
    {"\x9b" "31m", 0, 0, "\xef\xbf\xbd" "31m"},
    /* valid multibyte text passes untouched */
    {"caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 0, 0,
     "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"},
    /* overlong slash, surrogate, past U+10FFFF, truncated sequence */
    {"\xc0\xaf", 0, 0, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80", 0, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf4\x90\x80\x80", 0, 0, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"ab\xe6\x97", 0, 0, "ab\xef\xbf\xbd"},
    /* bidi override (Trojan Source) and isolates become visible */
    {"x\xe2\x80\xae" "cba", 0, 0, "x\xef\xbf\xbd" "cba"},
    {"\xe2\x81\xa6" "y", 0, 0, "\xef\xbf\xbd" "y"},
    /* line separator */
    {"a\xe2\x80\xa8" "b", 0, 0, "a\xef\xbf\xbd" "b"},
};

static void term_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof term_cases / sizeof term_cases[0]; i++) {
        const struct term_case *c = &term_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);
        char *got = term(c->in, len, c->flags);
        if (strcmp(got, c->out) != 0)
            fail_msg("case %zu: got \"%s\"", i, got);
        free(got);
    }
}

/* Whatever bytes go in, nothing below 0x20 (except kept TAB/LF), no DEL and
 * only valid UTF-8 comes out. */
static void term_output_always_safe(void **state)
{
    unsigned seed = 12345;
    (void)state;

    for (int round = 0; round < 2000; round++) {
        char in[64];
        size_t len = (size_t)(rand_r(&seed) % 64);
        for (size_t i = 0; i < len; i++)
            in[i] = (char)(rand_r(&seed) & 0xff);
        char *out = term(in, len, SAN_KEEP_NEWLINE);
        size_t olen = strlen(out);
        for (size_t i = 0; i < olen;) {
            uint32_t cp;
            int n = sanitize_utf8_next(out + i, olen - i, &cp);
            assert_true(n > 0);
            assert_true(cp == '\n' || (cp >= 0x20 && cp != 0x7f));
            assert_false(cp >= 0x80 && cp < 0xa0);
            assert_false(cp >= 0x202a && cp <= 0x202e);
            i += (size_t)n;
        }
        free(out);
    }
}

static void term_respects_ceiling(void **state)
{
    struct buf b;
    (void)state;

    buf_init(&b, 5);
    /* "ab" + 3-byte char fits (5); the next char does not */
    assert_int_equal(sanitize_term(&b, "ab\xe6\x97\xa5\xe6\x9c\xac", 8, 0), -1);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "ab\xe6\x97\xa5", 5);
    buf_free(&b);
}

static void width_table(void **state)
{
    static const struct {
        uint32_t cp;
        int w;
    } cases[] = {
        {'a', 1}, {0xe9, 1}, {0x0301, 0}, {0x200b, 0}, {0x200d, 0},
        {0x65e5, 2}, {0xac00, 2}, {0xff21, 2}, {0x1f600, 2}, {0x3042, 2},
        {0x0e31, 0}, {0x1b, -1}, {0x85, -1}, {0x20ac, 1}, {0x20000, 2},
        {0xfe0f, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (sanitize_cp_width(cases[i].cp) != cases[i].w)
            fail_msg("U+%04X: width %d, want %d", (unsigned)cases[i].cp,
                     sanitize_cp_width(cases[i].cp), cases[i].w);
    }
    /* "日本語" 6 cols, "e" + combining acute 1 col */
    assert_int_equal(sanitize_width("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 9), 6);
    assert_int_equal(sanitize_width("e\xcc\x81", 3), 1);
}

static void fit_never_splits(void **state)
{
    const char *s = "a\xe6\x97\xa5" "e\xcc\x81" "b";   /* a 日 é b : 1+2+1+1 */
    size_t len = strlen(s), used;
    (void)state;

    assert_int_equal(sanitize_fit(s, len, 2, &used), 1);     /* 日 does not fit */
    assert_int_equal(used, 1);
    assert_int_equal(sanitize_fit(s, len, 3, &used), 4);
    assert_int_equal(used, 3);
    /* the combining mark stays with its e */
    assert_int_equal(sanitize_fit(s, len, 4, &used), 7);
    assert_int_equal(used, 4);
    assert_int_equal(sanitize_fit(s, len, 80, &used), len);
    assert_int_equal(used, 5);
}

static void log_escaping(void **state)
{
    struct buf b = BUF_INIT;
    (void)state;

    assert_int_equal(sanitize_log(&b, "ok \\ \x1b[1m\n\xc3\xa9", 12), 0);
    assert_string_equal(buf_cstr(&b), "ok \\\\ \\x1b[1m\\x0a\\xc3\\xa9");
    buf_free(&b);
}

static const struct {
    const char *in, *out;
} mask_cases[] = {
    {"PASS hunter2", "PASS *** "},
    {"pass  hunter2 more", "pass *** "},
    {"APOP alice 0123456789abcdef", "APOP alice *** "},
    {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN *** "},
    {"AUTH LOGIN", "AUTH LOGIN"},
    {"a1 LOGIN alice s3cret", "a1 LOGIN alice *** "},
    {"a2 login alice \"pass word\"", "a2 login alice *** "},
    {"a3 AUTHENTICATE PLAIN AGFsaWNl", "a3 AUTHENTICATE PLAIN *** "},
    {"a4 SELECT INBOX", "a4 SELECT INBOX"},
    {"USER alice", "USER alice"},
    {"PASS", "PASS"},
};

static void log_masks_credentials(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof mask_cases / sizeof mask_cases[0]; i++) {
        struct buf b = BUF_INIT;
        assert_int_equal(log_mask_credentials(&b, mask_cases[i].in, strlen(mask_cases[i].in)), 0);
        /* compare ignoring the exact spacing before *** */
        const char *got = buf_cstr(&b);
        const char *want = mask_cases[i].out;
        const char *star = strstr(want, "***");
        if (star) {
            assert_non_null(strstr(got, "***"));
            size_t prefix = (size_t)(star - want);
            while (prefix > 0 && want[prefix - 1] == ' ')
                prefix--;
            assert_memory_equal(got, want, prefix);
            const char *secret = strrchr(mask_cases[i].in, ' ');
            assert_null(strstr(got, secret + 1));
        } else {
            assert_string_equal(got, want);
        }
        buf_free(&b);
    }
}

static void log_to_file_is_one_safe_line(void **state)
{
    char path[] = "/tmp/correo-log-XXXXXX";
    int fd = mkstemp(path);
    struct err e;
    char text[4096];
    (void)state;

    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(log_open("t", LOG_TO_FILE, path, &e), 0);
    log_set_level(LOGL_INFO);
    log_info("subject %s", "evil\n2026 fake line\x1b[31m");
    log_debug("not shown at info level");
    log_proto(LOGL_INFO, "C:", "a1 LOGIN bob topsecret", 22);
    log_close();

    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    text[n] = '\0';

    /* exactly two lines */
    int lines = 0;
    for (ssize_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 2);
    assert_non_null(strstr(text, "t: info: subject evil\\x0a2026 fake line\\x1b[31m"));
    assert_null(strstr(text, "not shown"));
    assert_null(strstr(text, "topsecret"));
    assert_non_null(strstr(text, "C: a1 LOGIN bob ***"));
    assert_null(memchr(text, 0x1b, (size_t)n));
}

static void log_level_names(void **state)
{
    enum log_level l;
    (void)state;
    assert_int_equal(log_level_parse("DEBUG", &l), 0);
    assert_int_equal(l, LOGL_DEBUG);
    assert_int_equal(log_level_parse("warn", &l), 0);
    assert_int_equal(l, LOGL_WARN);
    assert_int_equal(log_level_parse("loud", &l), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(term_table),
        cmocka_unit_test(term_output_always_safe),
        cmocka_unit_test(term_respects_ceiling),
        cmocka_unit_test(width_table),
        cmocka_unit_test(fit_never_splits),
        cmocka_unit_test(log_escaping),
        cmocka_unit_test(log_masks_credentials),
        cmocka_unit_test(log_to_file_is_one_safe_line),
        cmocka_unit_test(log_level_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
