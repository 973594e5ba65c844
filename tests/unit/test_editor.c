/* Unit tests for mua/editor: draft files and the editor that writes them. */
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

#include "config.h"
#include "editor.h"
#include "testutil.h"

static char *state;

static int setup(void **st)
{
    (void)st;
    state = tu_tmpdir("editor");
    setenv("XDG_STATE_HOME", state, 1);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    tu_rm_rf(state);
    free(state);
    return 0;
}

static void draft_files(void **st)
{
    char *path, **orphans;
    struct buf b = BUF_INIT;
    struct err e;
    struct stat sb;
    (void)st;

    assert_int_equal(editor_draft_create("To: a@b\n\nhello\n", 15, &path, &e), 0);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_non_null(strstr(path, "/correo/drafts/draft-"));
    assert_int_equal(editor_draft_read(path, &b, &e), 0);
    assert_string_equal(buf_cstr(&b), "To: a@b\n\nhello\n");

    /* a crash leaves the file: the next start finds it */
    assert_int_equal(editor_orphans(&orphans), 1);
    assert_string_equal(orphans[0], path);
    free(orphans[0]);
    free(orphans);

    assert_int_equal(editor_draft_write(path, "new text\n", 9, &e), 0);
    buf_reset(&b);
    assert_int_equal(editor_draft_read(path, &b, &e), 0);
    assert_string_equal(buf_cstr(&b), "new text\n");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(editor_orphans(&orphans), 0);
    assert_int_equal(editor_draft_read(path, &b, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    free(path);
    buf_free(&b);
}

/* The configured editor runs on our file; a path with shell characters in
 * it reaches the editor as one argument; a failing editor is an error. */
static void run_editor(void **st)
{
    struct config *cfg = config_new();
    struct rc_diag d;
    struct err e;
    char *script = xasprintf("%s/ed.sh", state);
    char *path;
    struct buf b = BUF_INIT;
    FILE *f;
    (void)st;

    f = fopen(script, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n[ $# -eq 1 ] || exit 3\nprintf 'edited body\\n' >> \"$1\"\n", f);
    fclose(f);
    assert_int_equal(chmod(script, 0700), 0);

    rc_diag_init(&d);
    char *cmd = xasprintf("set editor='%s'\n", script);
    config_exec(cfg, "t", cmd, &d);
    free(cmd);
    assert_int_equal(d.n, 0);

    assert_int_equal(editor_draft_create("Subject: x\n\n", 12, &path, &e), 0);
    assert_int_equal(editor_run(cfg, path, &e), 0);
    assert_int_equal(editor_draft_read(path, &b, &e), 0);
    assert_string_equal(buf_cstr(&b), "Subject: x\n\nedited body\n");
    unlink(path);
    free(path);

    /* a hostile-looking file name is still one argument */
    char *odd = xasprintf("%s/it's $(touch x) a `file`", state);
    f = fopen(odd, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(editor_run(cfg, odd, &e), 0);
    buf_reset(&b);
    assert_int_equal(editor_draft_read(odd, &b, &e), 0);
    assert_string_equal(buf_cstr(&b), "edited body\n");
    assert_int_equal(access("x", F_OK), -1);
    unlink(odd);
    free(odd);

    config_exec(cfg, "t", "set editor=false\n", &d);
    assert_int_equal(editor_draft_create("x", 1, &path, &e), 0);
    assert_int_equal(editor_run(cfg, path, &e), -1);
    assert_non_null(strstr(e.text, "exited with status"));
    unlink(path);
    free(path);

    rc_diag_free(&d);
    buf_free(&b);
    free(script);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(draft_files),
        cmocka_unit_test(run_editor),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
