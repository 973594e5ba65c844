/* Unit tests for lib/rcfile: tokenizer, source, diagnostics. */
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

#include "buf.h"
#include "rcfile.h"

/* Records each command as "line:word|word|..." joined by newlines. */
struct rec {
    struct buf out;
};

static int record(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct rec *r = ctx;

    if (strcmp(cmd->argv[0], "fail") == 0)
        return err_set(e, ERR_INVAL, "fail: as asked");
    assert_int_equal(buf_printf(&r->out, "%u:", cmd->line), 0);
    for (size_t i = 0; i < cmd->argc; i++)
        assert_int_equal(buf_printf(&r->out, "%s%s", i ? "|" : "", cmd->argv[i]), 0);
    assert_null(cmd->argv[cmd->argc]);
    assert_int_equal(buf_putc(&r->out, '\n'), 0);
    return 0;
}

struct lex_case {
    const char *in;
    const char *cmds;      /* expected record() output */
    const char *diag;      /* expected diagnostics joined by '\n', or "" */
};

static const struct lex_case cases[] = {
    {"set editor=vim\n", "1:set|editor=vim\n", ""},
    {"  set   a  b\t c  \n\n", "1:set|a|b|c\n", ""},
    {"# a comment\nset x # trailing\n", "2:set|x\n", ""},
    {"set x=a#b\n", "1:set|x=a#b\n", ""},
    {"set q='single \"x\" $HOME \\n'\n", "1:set|q=single \"x\" $HOME \\n\n", ""},
    {"set q=\"a\\\"b\\\\c\\tT\\nN\\eE\"\n", "1:set|q=a\"b\\c\tT\nN\033E\n", ""},
    {"bind index \\; x\n", "1:bind|index|;|x\n", ""},
    {"a 1; b 2 ;c\n", "1:a|1\n1:b|2\n1:c\n", ""},
    {"macro index x \\\n  \"<y>\"\nnext\n", "1:macro|index|x|<y>\n3:next\n", ""},
    {"set s=\"one \\\ntwo\"\n", "1:set|s=one two\n", ""},
    {"set e=''\n", "1:set|e=\n", ""},
    {"set v=$RC_TEST_VAR x${RC_TEST_VAR}y \"$RC_TEST_VAR\" '$RC_TEST_VAR'\n",
     "1:set|v=val|xvaly|val|$RC_TEST_VAR\n", ""},
    {"set re=^foo$ \\$RC_TEST_VAR u=$RC_UNSET_VAR.\n", "1:set|re=^foo$|$RC_TEST_VAR|u=.\n", ""},
    {"set h=`hostname`\nset ok\n", "2:set|ok\n", "t:1: backticks (command substitution) are not supported"},
    {"set a='open\nset b\n", "2:set|b\n", "t:1: unterminated single quote"},
    {"set a=\"open\nset b\n", "2:set|b\n", "t:1: unterminated double quote"},
    {"fail now\nset z\n", "2:set|z\n", "t:1: fail: as asked"},
    {"set x=${bad\nok\n", "2:ok\n", "t:1: bad ${...} variable reference"},
    {"no newline at end", "1:no|newline|at|end\n", ""},
    {"set crlf\r\nnext\r\n", "1:set|crlf\n2:next\n", ""},
    /* mutt's escapes, unquoted and in double quotes; single quotes keep them */
    {"bind index \\Cf \\cb \\ev \\E \\101 \\C? x\n", "1:bind|index|\006|\002|\033v|\033|A|\177|x\n", ""},
    {"macro index \"\\Cx\\n\\f\" '\\Cx'\n", "1:macro|index|\030\n\f|\\Cx\n", ""},
    {"set a=\\C1 b=\\9 c=\\12x\n", "1:set|a=C1|b=9|c=12x\n", ""},
    {"set z=\\000\nnext\n", "2:next\n", "t:1: NUL byte in line"},
};

static void lexer_table(void **state)
{
    (void)state;
    setenv("RC_TEST_VAR", "val", 1);
    unsetenv("RC_UNSET_VAR");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rec r;
        struct rc_diag d;
        struct rc_loader l;
        struct buf diag = BUF_INIT;

        buf_init(&r.out, 0);
        rc_diag_init(&d);
        rc_loader_init(&l, record, &r, &d);
        rcfile_load_string(&l, "t", cases[i].in, strlen(cases[i].in));
        for (size_t k = 0; k < d.n; k++)
            assert_int_equal(buf_printf(&diag, "%s%s", k ? "\n" : "", d.msgs[k]), 0);
        if (strcmp(buf_cstr(&r.out), cases[i].cmds) != 0 ||
            strcmp(buf_cstr(&diag), cases[i].diag) != 0)
            fail_msg("case %zu: got cmds [%s] diag [%s]", i, buf_cstr(&r.out), buf_cstr(&diag));
        buf_free(&r.out);
        buf_free(&diag);
        rc_diag_free(&d);
    }
}

static void nul_and_long_lines_are_errors(void **state)
{
    struct rec r;
    struct rc_diag d;
    struct rc_loader l;
    size_t big = RC_LINE_MAX + 100;
    char *text = malloc(big + 32);
    (void)state;

    buf_init(&r.out, 0);
    rc_diag_init(&d);
    rc_loader_init(&l, record, &r, &d);
    rcfile_load_string(&l, "t", "set a\0b\nset c\n", 14);
    assert_string_equal(buf_cstr(&r.out), "2:set|c\n");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "t:1: NUL byte in line");

    memcpy(text, "set x=", 6);
    memset(text + 6, 'a', big);
    memcpy(text + 6 + big, "\nset y\n", 8);
    buf_reset(&r.out);
    rcfile_load_string(&l, "t", text, strlen(text));
    assert_string_equal(buf_cstr(&r.out), "2:set|y\n");
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[1], "t:1: line too long");
    free(text);
    buf_free(&r.out);
    rc_diag_free(&d);
}

static char tmpdir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void source_relative_home_cycle_depth(void **state)
{
    struct rec r;
    struct rc_diag d;
    struct rc_loader l;
    struct err e;
    char path[256], sub[256];
    (void)state;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/correo-rc-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);

    write_file("main.rc", "set a\nsource sub/inc.rc\nsource ~/home.rc\nsource missing.rc\n"
                          "source self.rc\nset z\n");
    write_file("sub/inc.rc", "set in_sub\nsource sibling.rc\n");   /* relative to sub/ */
    write_file("sub/sibling.rc", "set sibling\n");
    write_file("home.rc", "set from_home\n");
    write_file("self.rc", "set self\nsource self.rc\n");
    setenv("HOME", tmpdir, 1);

    buf_init(&r.out, 0);
    rc_diag_init(&d);
    rc_loader_init(&l, record, &r, &d);
    snprintf(path, sizeof path, "%s/main.rc", tmpdir);
    assert_int_equal(rcfile_load(&l, path, &e), 0);
    assert_string_equal(buf_cstr(&r.out),
                        "1:set|a\n1:set|in_sub\n1:set|sibling\n1:set|from_home\n"
                        "1:set|self\n6:set|z\n");
    assert_int_equal(d.n, 2);
    assert_non_null(strstr(d.msgs[0], "main.rc:4: source: "));
    assert_non_null(strstr(d.msgs[0], "missing.rc"));
    assert_non_null(strstr(d.msgs[1], "self.rc:2: source: "));
    assert_non_null(strstr(d.msgs[1], "sourced recursively"));
    rc_diag_free(&d);

    /* a missing top-level file is the only hard failure */
    snprintf(path, sizeof path, "%s/nope.rc", tmpdir);
    assert_int_equal(rcfile_load(&l, path, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.text, "nope.rc"));

    /* source refused where the caller forbids it */
    l.no_source = true;
    rcfile_load_string(&l, "keymap", "source x\n", 9);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "keymap:1: source: not allowed here");
    rc_diag_free(&d);
    buf_free(&r.out);

    const char *names[] = {"main.rc", "sub/inc.rc", "sub/sibling.rc", "home.rc", "self.rc"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(sub);
    rmdir(tmpdir);
}

static void deep_nesting_is_stopped(void **state)
{
    struct rec r;
    struct rc_diag d;
    struct rc_loader l;
    struct err e;
    char path[256], text[64];
    (void)state;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/correo-rc-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.rc", i);
        snprintf(text, sizeof text, "set level%d\nsource f%d.rc\n", i, i + 1);
        write_file(name, text);
    }
    buf_init(&r.out, 0);
    rc_diag_init(&d);
    rc_loader_init(&l, record, &r, &d);
    snprintf(path, sizeof path, "%s/f0.rc", tmpdir);
    assert_int_equal(rcfile_load(&l, path, &e), 0);
    assert_non_null(strstr(buf_cstr(&r.out), "set|level15\n"));
    assert_null(strstr(buf_cstr(&r.out), "set|level16\n"));
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "nested more than"));
    rc_diag_free(&d);
    buf_free(&r.out);
    for (int i = 0; i < 40; i++) {
        snprintf(path, sizeof path, "%s/f%d.rc", tmpdir, i);
        unlink(path);
    }
    rmdir(tmpdir);
}

static void quote_round_trips(void **state)
{
    static const char *const words[] = {
        "plain", "", "two words", "it's", "say \"hi\"", "back\\slash", "$HOME",
        "`cmd`", "tab\there", "new\nline", "#hash", "semi;colon", "~tilde", "\033[1m",
    };
    (void)state;
    setenv("HOME", "/should/not/expand", 1);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        struct rec r;
        struct rc_diag d;
        struct rc_loader l;
        char *q = rc_quote(words[i]);
        char *line = xasprintf("w %s\n", q);
        char *want = xasprintf("1:w|%s\n", words[i]);

        buf_init(&r.out, 0);
        rc_diag_init(&d);
        rc_loader_init(&l, record, &r, &d);
        rcfile_load_string(&l, "q", line, strlen(line));
        if (d.n != 0 || strcmp(buf_cstr(&r.out), want) != 0)
            fail_msg("word %zu quoted as [%s] read back [%s]", i, q, buf_cstr(&r.out));
        free(q);
        free(line);
        free(want);
        buf_free(&r.out);
        rc_diag_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lexer_table),
        cmocka_unit_test(nul_and_long_lines_are_errors),
        cmocka_unit_test(source_relative_home_cycle_depth),
        cmocka_unit_test(deep_nesting_is_stopped),
        cmocka_unit_test(quote_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
