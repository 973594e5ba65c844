/* Unit tests for mua/mailcap: parsing, lookup, quoting, running, saving, piping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailcap.h"

/* ---- fixture: a private temp dir, also used as $TMPDIR ------------------ */

struct fx {
    char dir[256];
    char *old_tmpdir;
};

static int setup(void **state)
{
    struct fx *f = XNEW(struct fx);
    const char *t = getenv("TMPDIR");

    snprintf(f->dir, sizeof f->dir, "%s/correo-test-mailcap-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    f->old_tmpdir = t ? xstrdup(t) : NULL;
    setenv("TMPDIR", f->dir, 1);
    *state = f;
    return 0;
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (!d) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *sub = xasprintf("%s/%s", path, de->d_name);
        rm_tree(sub);
        free(sub);
    }
    closedir(d);
    rmdir(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f->old_tmpdir)
        setenv("TMPDIR", f->old_tmpdir, 1);
    else
        unsetenv("TMPDIR");
    rm_tree(f->dir);
    free(f->old_tmpdir);
    free(f);
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    struct buf b = BUF_INIT;
    char chunk[4096];
    ssize_t r;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return NULL;
    while ((r = read(fd, chunk, sizeof chunk)) > 0)
        assert_int_equal(buf_append(&b, chunk, (size_t)r), 0);
    close(fd);
    return buf_steal(&b, len);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- parsing ------------------------------------------------------------ */

static const char mailcap_text[] =
    "# a comment\n"
    "\n"
    "text/html; w3m -dump -T text/html %s; copiousoutput; nametemplate=%s.html\n"
    "  image/png ; display %s ;needsterminal ; description=PNG \\; image\n"
    "image/*; echo one\\; echo two %s; test=test -n \"$DISPLAY\"\n"
    "application/pdf; pdftotext %s -; \\\n"
    "   copiousoutput; x-unknown=1; compose=foo\r\n"
    "text; cat; print=lpr %s\n"
    "bad type/x; cmd\n"
    "text/plain\n"
    "text/plain;   \n"
    "Text/X-Mixed; less\n";

struct entry_want {
    const char *type, *command, *test, *nametemplate, *description;
    bool needsterminal, copiousoutput;
    unsigned line;
};

static const struct entry_want entry_wants[] = {
    {"text/html", "w3m -dump -T text/html %s", NULL, "%s.html", NULL, false, true, 3},
    {"image/png", "display %s", NULL, NULL, "PNG ; image", true, false, 4},
    {"image/*", "echo one\\; echo two %s", "test -n \"$DISPLAY\"", NULL, NULL, false, false, 5},
    {"application/pdf", "pdftotext %s -", NULL, NULL, NULL, false, true, 6},
    {"text/*", "cat", NULL, NULL, NULL, false, false, 8},
    {"text/x-mixed", "less", NULL, NULL, NULL, false, false, 12},
};

static void test_parse_table(void **state)
{
    struct mailcap mc;
    struct rc_diag diag;

    (void)state;
    mailcap_init(&mc);
    rc_diag_init(&diag);
    mailcap_parse(&mc, "mc", mailcap_text, strlen(mailcap_text), &diag);
    assert_int_equal(mc.n, ARRAY_LEN(entry_wants));
    for (size_t i = 0; i < mc.n; i++) {
        const struct mailcap_entry *e = &mc.v[i];
        const struct entry_want *w = &entry_wants[i];
        assert_string_equal(e->type, w->type);
        assert_string_equal(e->command, w->command);
        if (w->test)
            assert_string_equal(e->test, w->test);
        else
            assert_null(e->test);
        if (w->nametemplate)
            assert_string_equal(e->nametemplate, w->nametemplate);
        else
            assert_null(e->nametemplate);
        if (w->description)
            assert_string_equal(e->description, w->description);
        else
            assert_null(e->description);
        assert_int_equal(e->needsterminal, w->needsterminal);
        assert_int_equal(e->copiousoutput, w->copiousoutput);
        assert_int_equal(e->line, w->line);
        assert_string_equal(e->file, "mc");
    }
    /* three bad lines, each reported with its line number */
    assert_int_equal(diag.n, 3);
    assert_string_equal(diag.msgs[0], "mc:9: bad content type in a mailcap entry");
    assert_string_equal(diag.msgs[1], "mc:10: mailcap entry without a view command");
    assert_string_equal(diag.msgs[2], "mc:11: mailcap entry without a view command");
    rc_diag_free(&diag);
    mailcap_free(&mc);
}

static void test_load_path(void **state)
{
    struct fx *f = *state;
    struct mailcap mc;
    struct rc_diag diag;
    struct err e;
    char *a = xasprintf("%s/mc-a", f->dir), *missing = xasprintf("%s/nope", f->dir);
    char *list = xasprintf("%s:%s:%s", missing, a, a);
    FILE *fp = fopen(a, "w");

    assert_non_null(fp);
    fputs("text/plain; cat\nimage/gif; view %s\n", fp);
    fclose(fp);
    mailcap_init(&mc);
    rc_diag_init(&diag);
    mailcap_load_path(&mc, list, &diag);
    assert_int_equal(mc.n, 4);            /* the file twice, the missing one skipped */
    assert_int_equal(diag.n, 0);
    assert_string_equal(mc.v[1].type, "image/gif");
    assert_string_equal(mc.v[1].file, a);
    assert_int_equal(mc.v[1].line, 2);
    err_clear(&e);
    assert_int_equal(mailcap_load(&mc, missing, &diag, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    rc_diag_free(&diag);
    mailcap_free(&mc);
    free(a);
    free(missing);
    free(list);
}

/* ---- lookup ------------------------------------------------------------- */

static void test_lookup(void **state)
{
    static const char text[] =
        "image/png; png-viewer %s\n"
        "image/*; any-image %s\n"
        "text/html; html-viewer %s\n"
        "text/html; html-dump %s; copiousoutput\n"
        "text/plain; t-false; test=false\n"
        "text/plain; t-file; test=test -r %s\n"
        "text/plain; t-param; test=test %{charset} = x\n"
        "text/plain; t-true; test=test %t = text/plain\n"
        "text/plain; t-plain\n";
    struct mailcap mc;
    const struct mailcap_entry *e;

    (void)state;
    mailcap_init(&mc);
    mailcap_parse(&mc, "t", text, strlen(text), NULL);
    assert_int_equal(mc.n, 9);
    assert_string_equal(mailcap_lookup(&mc, "image/png", 0)->command, "png-viewer %s");
    assert_string_equal(mailcap_lookup(&mc, "image/gif", 0)->command, "any-image %s");
    assert_string_equal(mailcap_lookup(&mc, "IMAGE/GIF", 0)->command, "any-image %s");
    assert_string_equal(mailcap_lookup(&mc, "text/html", 0)->command, "html-viewer %s");
    assert_string_equal(mailcap_lookup(&mc, "text/html", MAILCAP_COPIOUS)->command,
                        "html-dump %s");
    assert_null(mailcap_lookup(&mc, "application/pdf", 0));
    assert_null(mailcap_lookup(&mc, "image", 0));
    assert_null(mailcap_lookup(&mc, NULL, 0));
    /* tests: false fails, %s and %{} are never run with message data, %t is */
    e = mailcap_lookup(&mc, "text/plain", 0);
    assert_non_null(e);
    assert_string_equal(e->command, "t-true");
    assert_string_equal(mailcap_lookup(&mc, "text/plain", MAILCAP_SKIP_TESTS)->command,
                        "t-plain");
    assert_string_equal(mailcap_lookup(&mc, "text/plain", MAILCAP_ASSUME_TESTS)->command,
                        "t-false");
    mailcap_free(&mc);
}

/* ---- expansion and names ------------------------------------------------ */

struct name_case {
    const char *filename, *tmpl, *want;
};

static const struct name_case name_cases[] = {
    {"report.pdf", NULL, "report.pdf"},
    {NULL, NULL, "part"},
    {"", "%s.html", "part.html"},
    {"$(touch /tmp/pwned);.pdf", NULL, "pwned.pdf"},
    {"$(touch pwned);.pdf", NULL, "touchpwned.pdf"},
    {"../../etc/passwd", NULL, "passwd"},
    {"C:\\Users\\x\\evil name.doc", NULL, "evilname.doc"},
    {"...hidden", NULL, "hidden"},
    {"-rf", NULL, "rf"},
    {"`;|&<>'\"", NULL, "part"},
    {"caf\xc3\xa9.txt", NULL, "caf.txt"},
    {"page.html", "%s.html", "page.html"},
    {"page", "%s.html", "page.html"},
    {"page.HTML", "%s.html", "page.HTML"},
    {"doc", "x-%s", "x-doc"},
    {"doc", "%s;rm", "doc"},                   /* an unsafe template is ignored */
    {"doc", "no-placeholder", "doc"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.pdf", NULL,
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.pdf"},
};

static void test_safe_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(name_cases); i++) {
        char *got = mailcap_safe_name(name_cases[i].filename, name_cases[i].tmpl);
        if (strcmp(got, name_cases[i].want) != 0)
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, got, name_cases[i].want);
        free(got);
    }
}

struct quote_case {
    const char *in, *want;
};

static const struct quote_case quote_cases[] = {
    {"/tmp/correo-abc/file.pdf", "/tmp/correo-abc/file.pdf"},
    {"", "''"},
    {"a b", "'a b'"},
    {"it's", "'it'\\''s'"},
    {"$(x)", "'$(x)'"},
    {"a=b", "'a=b'"},
    {"~/x", "'~/x'"},
};

static void test_shell_quote(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(quote_cases); i++) {
        struct buf b = BUF_INIT;
        mailcap_shell_quote(quote_cases[i].in, &b);
        assert_string_equal(buf_cstr(&b), quote_cases[i].want);
        buf_free(&b);
    }
}

struct expand_case {
    const char *cmd;
    const char *type;
    const char *ctype;     /* Content-Type value for the parameters */
    const char *file;
    const char *want;      /* NULL: refused */
};

static const struct expand_case expand_cases[] = {
    {"view %s", "image/png", "image/png", "/tmp/d/f.png", "view /tmp/d/f.png"},
    {"view '%s' \"%s\"", "image/png", "image/png", "/tmp/d/f.png",
     "view '/tmp/d/f.png' \"/tmp/d/f.png\""},
    {"view %s", "image/png", "image/png", "/tmp/a dir/f", "view '/tmp/a dir/f'"},
    {"view %s", "image/png", "image/png", NULL, NULL},
    {"conv -t %t", "text/plain", "text/plain", NULL, "conv -t text/plain"},
    {"conv -t %t", "text/x$a&b", "text/plain", NULL, "conv -t 'text/x$a&b'"},
    {"conv -t %t", "text/x$(id)", "text/plain", NULL, NULL},
    {"conv -t %t", "text/pl ain", "text/plain", NULL, NULL},
    {"conv -t %t", "text", "text/plain", NULL, NULL},
    {"iconv -f %{charset}", "text/plain", "text/plain; charset=ISO-8859-1", NULL,
     "iconv -f ISO-8859-1"},
    {"iconv -f %{charset}", "text/plain", "text/plain", NULL, "iconv -f ''"},
    {"iconv -f %{charset}", "text/plain", "text/plain; charset=\"$(touch x)\"", NULL, NULL},
    {"iconv -f %{charset}", "text/plain", "text/plain; charset=\"a b\"", NULL, NULL},
    {"iconv -f %{charset}", "text/plain", "text/plain; charset=-oX", NULL, NULL},
    {"iconv -f %{charset}", "text/plain", "text/plain; charset=\"a'b\"", NULL, NULL},
    {"x %{bad name}", "text/plain", "text/plain", NULL, NULL},
    {"x %{unterminated", "text/plain", "text/plain", NULL, NULL},
    {"x %n %F", "text/plain", "text/plain", NULL, NULL},
    {"x \\%s \\; \\\\ %z 100%", "text/plain", "text/plain", NULL, "x %s ; \\ %z 100%"},
};

static void test_expand(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(expand_cases); i++) {
        const struct expand_case *c = &expand_cases[i];
        struct rfc2231_params params;
        struct mailcap_part part = {"", 0, c->type, NULL, &params};
        struct buf b = BUF_INIT;
        struct err e;
        bool used = false;
        int rc;

        rfc2231_parse(c->ctype, strlen(c->ctype), &params);
        err_clear(&e);
        rc = mailcap_expand(c->cmd, &part, c->file, &b, &used, &e);
        if (c->want) {
            if (rc != 0)
                fail_msg("case %zu refused: %s", i, e.text);
            assert_string_equal(buf_cstr(&b), c->want);
            assert_int_equal(used, strstr(c->cmd, "%s") != NULL && !strstr(c->cmd, "\\%s"));
        } else {
            assert_int_equal(rc, -1);
            assert_true(e.code == ERR_INVAL || e.code == ERR_UNSUPPORTED);
        }
        rfc2231_free(&params);
        buf_free(&b);
    }
}

/* ---- running ------------------------------------------------------------ */

static struct mailcap_entry *one_entry(struct mailcap *mc, const char *line)
{
    mailcap_init(mc);
    mailcap_parse(mc, "t", line, strlen(line), NULL);
    assert_int_equal(mc->n, 1);
    return &mc->v[0];
}

static void test_hostile_filename(void **state)
{
    struct fx *f = *state;
    char marker[128], *line, *seen, *name_file, *got, *tmp_path;
    struct mailcap mc;
    struct err e;
    size_t len;
    static const char data[] = "%PDF-1.4 fake\n";

    /* a unique marker path: if any shell ran the file name, it would exist */
    snprintf(marker, sizeof marker, "/tmp/pwned-correo-%ld-%ld", (long)getpid(),
             (long)time(NULL));
    unlink(marker);
    char *filename = xasprintf("$(touch %s);`touch %s`.pdf", marker, marker);
    seen = xasprintf("%s/seen", f->dir);
    name_file = xasprintf("%s/name", f->dir);
    line = xasprintf("application/pdf; cp %%s %s && printf '\\%%s' %%s > %s", seen, name_file);
    struct mailcap_entry *ent = one_entry(&mc, line);
    struct mailcap_part part = {data, sizeof data - 1, "application/pdf", filename, NULL};

    err_clear(&e);
    assert_int_equal(mailcap_run(ent, &part, 0, NULL, &e), 0);
    assert_false(exists(marker));
    /* the command saw our temp file, with the data in it */
    got = read_file(seen, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof data - 1);
    assert_memory_equal(got, data, len);
    free(got);
    tmp_path = read_file(name_file, &len);
    assert_non_null(tmp_path);
    /* <TMPDIR>/correo-XXXXXX/<safe name> */
    assert_true(strncmp(tmp_path, f->dir, strlen(f->dir)) == 0);
    assert_true(strncmp(tmp_path + strlen(f->dir), "/correo-", 8) == 0);
    const char *base = strrchr(tmp_path, '/') + 1;
    assert_true(strncmp(base, "pwned-correo-", 13) == 0);
    assert_true(strcmp(base + strlen(base) - 4, ".pdf") == 0);
    for (const char *p = base; *p; p++)
        assert_true(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p));
    /* file and private directory are gone afterwards */
    assert_false(exists(tmp_path));
    *strrchr(tmp_path, '/') = '\0';
    assert_false(exists(tmp_path));
    free(tmp_path);

    /* a hostile parameter never reaches the shell either */
    mailcap_free(&mc);
    free(line);
    line = xasprintf("text/plain; echo %%{charset} > %s", seen);
    ent = one_entry(&mc, line);
    struct rfc2231_params params;
    char *ctype = xasprintf("text/plain; charset=\"$(touch %s)\"", marker);
    rfc2231_parse(ctype, strlen(ctype), &params);
    struct mailcap_part p2 = {"x", 1, "text/plain", NULL, &params};
    err_clear(&e);
    assert_int_equal(mailcap_run(ent, &p2, 0, NULL, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_false(exists(marker));
    rfc2231_free(&params);
    free(ctype);

    mailcap_free(&mc);
    free(line);
    free(seen);
    free(name_file);
    free(filename);
    /* nothing left in $TMPDIR but the files the commands wrote */
    assert_int_equal(count_entries(f->dir), 2);
}

/* Temp directories whose names need quoting: quote, space, $(...) and
 * backquotes.  Were the path not quoted right, the shell would fail or
 * create "pwned" in the current directory, which is our own empty one. */
static void test_quoted_tmpdir(void **state)
{
    static const char *const names[] = {
        "a $(touch pwned) `touch pwned` dir",
        "it's a $(touch pwned) dir",
    };
    struct fx *f = *state;
    char *cwd = xasprintf("%s/cwd", f->dir), *seen = xasprintf("%s/seen", f->dir);
    char *line = xasprintf("text/plain; cat %%s > %s; nametemplate=%%s.txt", seen);
    char old_cwd[4096], *pwned = xasprintf("%s/pwned", cwd);
    struct mailcap mc;
    struct mailcap_part part = {"quoted\n", 7, "text/plain", "note", NULL};

    assert_int_equal(mkdir(cwd, 0700), 0);
    assert_non_null(getcwd(old_cwd, sizeof old_cwd));
    one_entry(&mc, line);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *odd = xasprintf("%s/%s", f->dir, names[i]), *got;
        struct err e;
        size_t len;
        int rc;

        unlink(seen);
        assert_int_equal(mkdir(odd, 0700), 0);
        assert_int_equal(chdir(cwd), 0);
        setenv("TMPDIR", odd, 1);
        err_clear(&e);
        rc = mailcap_run(&mc.v[0], &part, 0, NULL, &e);
        setenv("TMPDIR", f->dir, 1);
        assert_int_equal(chdir(old_cwd), 0);
        if (rc != 0)
            fail_msg("%s: mailcap_run: %s", names[i], e.text);
        got = read_file(seen, &len);
        assert_non_null(got);
        assert_int_equal(len, 7);
        assert_memory_equal(got, "quoted\n", 7);
        free(got);
        assert_false(exists(pwned));
        assert_int_equal(count_entries(cwd), 0);
        assert_int_equal(count_entries(odd), 0);     /* private dir removed */
        free(odd);
    }
    mailcap_free(&mc);
    free(cwd);
    free(seen);
    free(line);
    free(pwned);
}

static void test_stdin_and_copious(void **state)
{
    struct fx *f = *state;
    struct mailcap mc;
    struct buf out = BUF_INIT;
    struct err e;
    char *path = xasprintf("%s/stdin", f->dir), *line, *got;
    size_t len;
    double t0;
    static const char data[] = "hello from the part\n";
    struct mailcap_part part = {data, sizeof data - 1, "text/x-test", "x.txt", NULL};

    /* no %s: the part arrives on stdin */
    line = xasprintf("text/x-test; cat > %s", path);
    assert_int_equal(mailcap_run(one_entry(&mc, line), &part, 0, NULL, NULL), 0);
    got = read_file(path, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof data - 1);
    assert_memory_equal(got, data, len);
    free(got);
    mailcap_free(&mc);
    free(line);

    /* copiousoutput: stdout captured for the pager */
    assert_int_equal(mailcap_run(one_entry(&mc, "text/*; tr a-z A-Z; copiousoutput"), &part, 0,
                                 &out, NULL), 0);
    assert_string_equal(buf_cstr(&out), "HELLO FROM THE PART\n");
    mailcap_free(&mc);
    buf_reset(&out);
    assert_int_equal(mailcap_run(one_entry(&mc, "text/*; wc -c < %s; copiousoutput"), &part, 0,
                                 &out, NULL), 0);
    assert_int_equal(atoi(buf_cstr(&out)), (int)(sizeof data - 1));
    mailcap_free(&mc);

    /* a failing viewer: -1, output kept */
    buf_reset(&out);
    err_clear(&e);
    assert_int_equal(mailcap_run(one_entry(&mc, "text/*; echo partial\\; exit 3; copiousoutput"),
                                 &part, 0, &out, &e), -1);
    assert_string_equal(buf_cstr(&out), "partial\n");
    assert_non_null(strstr(e.text, "status 3"));
    mailcap_free(&mc);

    /* a viewer that hangs is stopped, its children too */
    buf_reset(&out);
    err_clear(&e);
    t0 = (double)time(NULL);
    assert_int_equal(mailcap_run(one_entry(&mc, "text/*; sleep 30 & sleep 30; copiousoutput"),
                                 &part, 300, &out, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_true((double)time(NULL) - t0 < 10);
    mailcap_free(&mc);

    /* the output ceiling applies */
    struct buf small;
    buf_init(&small, 100);
    err_clear(&e);
    assert_int_equal(mailcap_run(one_entry(&mc, "text/*; yes; copiousoutput"), &part, 5000,
                                 &small, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_true(small.len <= 100);
    buf_free(&small);
    mailcap_free(&mc);

    buf_free(&out);
    free(path);
}

static void test_exec(void **state)
{
    struct mailcap_exec x;
    struct buf out = BUF_INIT;
    struct err e;
    size_t big = 4u << 20;
    char *blob = xmalloc(big);

    (void)state;
    /* no shell: arguments are passed as they are */
    const char *echo[] = {"printf", "%s|", "$(id)", "a b", NULL};
    memset(&x, 0, sizeof x);
    x.output = &out;
    assert_int_equal(mailcap_exec(echo, &x, NULL), 0);
    assert_int_equal(x.status, 0);
    assert_string_equal(buf_cstr(&out), "$(id)|a b|");

    /* a program that reads nothing of a large input: no SIGPIPE, no error */
    memset(blob, 'x', big);
    const char *tru[] = {"true", NULL};
    memset(&x, 0, sizeof x);
    x.input = blob;
    x.input_len = big;
    assert_int_equal(mailcap_exec(tru, &x, NULL), 0);
    assert_int_equal(x.status, 0);

    /* a large input through a filter both ways (no deadlock) */
    const char *cat[] = {"cat", NULL};
    buf_reset(&out);
    memset(&x, 0, sizeof x);
    x.input = blob;
    x.input_len = big;
    x.output = &out;
    x.timeout_ms = 20000;
    assert_int_equal(mailcap_exec(cat, &x, NULL), 0);
    assert_int_equal(out.len, big);
    assert_memory_equal(out.data, blob, big);

    /* missing program, exit status, signal */
    const char *missing[] = {"correo-no-such-program-xyz", NULL};
    memset(&x, 0, sizeof x);
    err_clear(&e);
    assert_int_equal(mailcap_exec(missing, &x, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    const char *st[] = {"sh", "-c", "exit 7", NULL};
    memset(&x, 0, sizeof x);
    assert_int_equal(mailcap_exec(st, &x, NULL), 0);
    assert_int_equal(x.status, 7);
    const char *sig[] = {"sh", "-c", "kill -TERM $$", NULL};
    memset(&x, 0, sizeof x);
    assert_int_equal(mailcap_exec(sig, &x, NULL), 0);
    assert_int_equal(x.status, 128 + 15);
    const char *none[] = {NULL};
    assert_int_equal(mailcap_exec(none, &x, NULL), -1);
    free(blob);
    buf_free(&out);
}

/* ---- save and pipe ------------------------------------------------------ */

static void test_save(void **state)
{
    struct fx *f = *state;
    char *dir = xasprintf("%s/save", f->dir);
    char *path = xasprintf("%s/att.bin", dir), *got;
    struct err e;
    struct stat st;
    size_t len;
    static const char one[] = "first\0version", two[] = "second";

    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(mailcap_save_part(path, one, sizeof one - 1, false, NULL), 0);
    got = read_file(path, &len);
    assert_int_equal(len, sizeof one - 1);
    assert_memory_equal(got, one, len);
    free(got);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* refuses to overwrite without being asked; the file is unchanged */
    err_clear(&e);
    assert_int_equal(mailcap_save_part(path, two, sizeof two - 1, false, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    got = read_file(path, &len);
    assert_int_equal(len, sizeof one - 1);
    free(got);
    assert_int_equal(count_entries(dir), 1);   /* no temp file left behind */

    /* with overwrite it replaces */
    assert_int_equal(mailcap_save_part(path, two, sizeof two - 1, true, NULL), 0);
    got = read_file(path, &len);
    assert_int_equal(len, sizeof two - 1);
    assert_memory_equal(got, two, len);
    free(got);
    assert_int_equal(count_entries(dir), 1);

    /* a directory that does not exist */
    char *bad = xasprintf("%s/no/such/dir/x", f->dir);
    err_clear(&e);
    assert_int_equal(mailcap_save_part(bad, two, 3, false, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(e.sys_errno, ENOENT);
    assert_int_equal(mailcap_save_part("", two, 3, false, &e), -1);
    free(bad);
    free(path);
    free(dir);
}

static void test_pipe(void **state)
{
    struct fx *f = *state;
    struct buf out = BUF_INIT;
    struct err e;
    char *path = xasprintf("%s/piped", f->dir), *cmd, *got;
    size_t len;
    static const char data[] = "line one\nline two\n";

    (void)state;
    assert_int_equal(mailcap_pipe_to_command("wc -l", data, sizeof data - 1, &out, NULL), 0);
    assert_int_equal(atoi(buf_cstr(&out)), 2);
    cmd = xasprintf("grep two > %s", path);
    assert_int_equal(mailcap_pipe_to_command(cmd, data, sizeof data - 1, NULL, NULL), 0);
    got = read_file(path, &len);
    assert_string_equal(got, "line two\n");
    free(got);
    err_clear(&e);
    assert_int_equal(mailcap_pipe_to_command("grep absent", data, sizeof data - 1, NULL, &e), -1);
    assert_non_null(strstr(e.text, "status 1"));
    assert_int_equal(mailcap_pipe_to_command("", data, 1, NULL, &e), -1);
    free(cmd);
    free(path);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test_setup_teardown(test_load_path, setup, teardown),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_safe_name),
        cmocka_unit_test(test_shell_quote),
        cmocka_unit_test(test_expand),
        cmocka_unit_test_setup_teardown(test_hostile_filename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quoted_tmpdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_and_copious, setup, teardown),
        cmocka_unit_test(test_exec),
        cmocka_unit_test_setup_teardown(test_save, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipe, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
