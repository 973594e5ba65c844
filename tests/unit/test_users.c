/* Tests for localserver/users: the users file (parsing, hostile lines,
 * every crypt scheme, verification), aliases (nesting, catch-all, loops,
 * depth, duplicates), resolution, may_send_as, Maildir template expansion,
 * and the locked atomic rewrites (bytes kept, injected failures, crashes,
 * waiting for the lock). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "testutil.h"
#include "users.h"

/* The rewrite's failure injection (users.c; not in users.h). */
extern int (*users_step_hook)(int step);

static const char *const domains[] = { "example.test", "other.test" };

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void write_str(const char *path, const char *s)
{
    write_file(path, s, strlen(s));
}

/* Whole file (NUL-terminated), or NULL if it does not exist. */
static char *read_file(const char *path, size_t *len)
{
    struct stat st;
    char *data;
    int fd = open(path, O_RDONLY);

    if (fd < 0) {
        assert_int_equal(errno, ENOENT);
        return NULL;
    }
    assert_int_equal(fstat(fd, &st), 0);
    data = xmalloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, data, (size_t)st.st_size), st.st_size);
    data[st.st_size] = '\0';
    close(fd);
    if (len != NULL)
        *len = (size_t)st.st_size;
    return data;
}

static bool exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* A crypt(3) hash of pw with a fresh salt of the given method. */
static char *make_hash(const char *prefix, const char *pw)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    char *r;

    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, setting, (int)sizeof setting));
    assert_non_null(crypt_rn(pw, setting, cd, (int)sizeof *cd));
    r = xstrdup(cd->output);
    free(cd);
    assert_int_equal(strncmp(r, prefix, strlen(prefix)), 0);
    return r;
}

/* ---- fixture ------------------------------------------------------------ */

struct fx {
    char *dir;
    char *users;
    char *aliases;
    char *template;
    /* hashes of "pw-<scheme>" */
    char *h6, *hy, *h5, *h2b;
};

static int setup(void **state)
{
    struct fx *fx = XNEW(struct fx);

    fx->dir = tu_tmpdir("users");
    fx->users = xasprintf("%s/users", fx->dir);
    fx->aliases = xasprintf("%s/aliases", fx->dir);
    fx->template = xasprintf("%s/mail/%%d/%%n", fx->dir);
    fx->h6 = make_hash("$6$", "pw-six");
    fx->hy = make_hash("$y$", "pw-yes");
    fx->h5 = make_hash("$5$", "pw-five");
    fx->h2b = make_hash("$2b$", "pw-blf");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    users_step_hook = NULL;
    tu_rm_rf(fx->dir);
    free(fx->dir);
    free(fx->users);
    free(fx->aliases);
    free(fx->template);
    free(fx->h6);
    free(fx->hy);
    free(fx->h5);
    free(fx->h2b);
    free(fx);
    return 0;
}

static int load_tpl(struct fx *fx, const char *users, const char *aliases, const char *tpl,
                    struct user_db **db, struct err *e)
{
    struct user_db_opts o = {
        .users_file = fx->users,
        .aliases_file = aliases != NULL ? fx->aliases : NULL,
        .domains = domains,
        .n_domains = ARRAY_LEN(domains),
        .maildir_template = tpl != NULL ? tpl : fx->template,
    };

    write_str(fx->users, users);
    if (aliases != NULL)
        write_str(fx->aliases, aliases);
    err_clear(e);
    return users_load(&o, db, e);
}

static struct user_db *load_ok(struct fx *fx, const char *users, const char *aliases)
{
    struct user_db *db = NULL;
    struct err e;

    if (load_tpl(fx, users, aliases, NULL, &db, &e) != 0)
        fail_msg("load failed: %s", e.text);
    assert_non_null(db);
    return db;
}

/* A users file with one user of each scheme, plus lines that are kept. */
static char *scheme_file(struct fx *fx)
{
    return xasprintf("# users\n"
                     "\n"
                     "six@example.test:{SHA512-CRYPT}%s:1000:1000::/home/six::\n"
                     "Yes@Example.TEST:{CRYPT}%s:::::\n"
                     "five:{SHA256-CRYPT}%s\r\n"
                     "bare@other.test:%s::::::userdb_quota=1G\n"
                     "blf@example.test:{BLF-CRYPT}%s:::::\n"
                     "   # indented comment\n"
                     "locked@example.test:!%s:::::\n"
                     "nopw@example.test::::::\n"
                     "lower@example.test:{crypt}%s",
                     fx->h6, fx->hy, fx->h5, fx->h6, fx->h2b, fx->h6, fx->h5);
}

/* ---- parsing and verification ------------------------------------------- */

static void parse_every_scheme(void **state)
{
    struct fx *fx = *state;
    char *text = scheme_file(fx);
    struct user_db *db = load_ok(fx, text, NULL);
    static const struct {
        const char *login, *pw;
        int want;
        const char *canonical;
    } cases[] = {
        { "six@example.test", "pw-six", 1, "six@example.test" },
        { "six@example.test", "pw-Six", 0, NULL },
        { "SIX@EXAMPLE.TEST", "pw-six", 1, "six@example.test" },
        { "six", "pw-six", 1, "six@example.test" },           /* default domain */
        { "six@other.test", "pw-six", 0, NULL },              /* another user */
        { "yes@example.test", "pw-yes", 1, "yes@example.test" },
        { "yes@example.test", "pw-ye", 0, NULL },
        { "yes@example.test", "", 0, NULL },
        { "five@example.test", "pw-five", 1, "five@example.test" },
        { "five@example.test", "pw-fivE", 0, NULL },
        { "bare@other.test", "pw-six", 1, "bare@other.test" },
        { "blf@example.test", "pw-blf", 1, "blf@example.test" },
        { "blf@example.test", "pw-bl", 0, NULL },
        { "lower@example.test", "pw-five", 1, "lower@example.test" },
        { "locked@example.test", "pw-six", 0, NULL },          /* "!" hash: no login */
        { "nopw@example.test", "", 0, NULL },                  /* empty: no login */
        { "nobody@example.test", "pw-six", 0, NULL },
        { "six@elsewhere.test", "pw-six", 0, NULL },
        { "../six@example.test", "pw-six", 0, NULL },
        { "", "pw-six", 0, NULL },
    };

    assert_int_equal(users_count(db), 8);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *canon = NULL;
        struct err e;
        int r = users_verify(db, cases[i].login, cases[i].pw, &canon, &e);

        if (r != cases[i].want)
            fail_msg("case %zu (%s): got %d", i, cases[i].login, r);
        if (cases[i].canonical != NULL)
            assert_string_equal(canon, cases[i].canonical);
        else
            assert_null(canon);
        free(canon);
    }
    /* canonical may be NULL */
    assert_int_equal(users_verify(db, "six", "pw-six", NULL, NULL), 1);
    users_free(db);
    free(text);
}

static void parse_rejects_hostile_lines(void **state)
{
    struct fx *fx = *state;
    char *good = xasprintf("ok@example.test:{CRYPT}%s:::::\n", fx->h6);
    char *longline = xmalloc(70000);
    struct {
        const char *line;      /* the second line of the file */
        const char *why;       /* expected in the error */
    } cases[] = {
        { "../etc@example.test:x:::::", "bad user name" },
        { "a/b@example.test:x:::::", "bad user name" },
        { "a..b@example.test:x:::::", "bad user name" },
        { ".a@example.test:x:::::", "bad user name" },
        { "a.@example.test:x:::::", "bad user name" },
        { "a\x1b[2J@example.test:x:::::", "bad user name" },
        { "a b@example.test:x:::::", "bad user name" },
        { "caf\xc3\xa9@example.test:x:::::", "bad user name" },
        { ":x:::::", "bad user name" },
        { "a@b@example.test:x:::::", "bad user name" },
        { "a@exa_mple.test:x:::::", "bad user name" },
        { "a@-example.test:x:::::", "bad user name" },
        { "a@example.test.:x:::::", "bad user name" },
        { "alice@elsewhere.test:x:::::", "not in a local domain" },
        { "nopassword@example.test", "no password field" },
        { "p@example.test:{PLAIN}secret:::::", "unsupported password scheme" },
        { "p@example.test:{SSHA}abc:::::", "unsupported password scheme" },
        { "p@example.test:{SHA512-CRYPT}$5$abc$def:::::", "does not match its scheme" },
        { "p@example.test:{BLF-CRYPT}$6$abc$def:::::", "does not match its scheme" },
        { "p@example.test:plaintext secret:::::", "control character or space" },
        { "p@example.test:$6$\tx:::::", "control character or space" },
        { "p@example.test:$9$nonsense:::::", "not one crypt(3) can check" },
        { "p@example.test:!::::/home/p\x07::", "control character in the home" },
        { "p@example.test:!::::relative/home::", "not an absolute path" },
        { "ok@example.test:!:::::", "already on line 1" },
        { "OK@EXAMPLE.TEST:!:::::", "already on line 1" },
        { "ok:!:::::", "already on line 1" },
        { NULL, "line longer than" },
    };

    memset(longline, 'a', 69999);
    longline[69999] = '\0';
    memcpy(longline, "l@example.test:", 15);
    cases[ARRAY_LEN(cases) - 1].line = longline;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *text = xasprintf("%s%s\n", good, cases[i].line);
        static char sentinel;
        struct user_db *db = (struct user_db *)(void *)&sentinel;
        struct err e;
        char *where = xasprintf("%s:2: ", fx->users);

        if (load_tpl(fx, text, NULL, NULL, &db, &e) == 0)
            fail_msg("case %zu was accepted", i);
        assert_null(db);
        if (strstr(e.text, cases[i].why) == NULL || strncmp(e.text, where, strlen(where)) != 0)
            fail_msg("case %zu: unexpected error \"%s\"", i, e.text);
        /* Nothing from the line is echoed raw. */
        for (const char *p = e.text; *p != '\0'; p++)
            assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
        free(where);
        free(text);
    }
    /* A NUL byte in the line. */
    {
        static const char bin[] = "ok@example.test:!:::::\nz\0z@example.test:!:::::\n";
        struct user_db *db = NULL;
        struct err e;
        struct user_db_opts o = { fx->users, NULL, domains, 2, fx->template };

        write_file(fx->users, bin, sizeof bin - 1);
        assert_int_equal(users_load(&o, &db, &e), -1);
        assert_non_null(strstr(e.text, ":2: NUL byte"));
    }
    /* A missing file is an error, not an empty database. */
    {
        struct user_db *db = NULL;
        struct err e;
        char *missing = xasprintf("%s/nope", fx->dir);
        struct user_db_opts o = { missing, NULL, domains, 2, fx->template };

        assert_int_equal(users_load(&o, &db, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        free(missing);
    }
    free(longline);
    free(good);
}

/* Unknown and known users cost the same hashing work. */
static void verify_unknown_takes_as_long(void **state)
{
    struct fx *fx = *state;
    char *text = xasprintf("yes@example.test:{CRYPT}%s:::::\n", fx->hy);
    struct user_db *db = load_ok(fx, text, NULL);
    double known = 1e9, unknown = 1e9;

    for (int i = 0; i < 5; i++) {
        double t0 = tu_now(), t1, t2;

        assert_int_equal(users_verify(db, "yes@example.test", "wrong", NULL, NULL), 0);
        t1 = tu_now();
        assert_int_equal(users_verify(db, "nobody@example.test", "wrong", NULL, NULL), 0);
        t2 = tu_now();
        if (t1 - t0 < known)
            known = t1 - t0;
        if (t2 - t1 < unknown)
            unknown = t2 - t1;
    }
    /* Without the dummy hash an unknown user answers thousands of times
     * sooner; allow a wide margin for a busy machine. */
    if (unknown < known / 4)
        fail_msg("unknown user %.6f s, known %.6f s", unknown, known);
    users_free(db);
    free(text);

    /* Also with an empty users file (a dummy setting of its own). */
    db = load_ok(fx, "", NULL);
    assert_int_equal(users_count(db), 0);
    {
        double t0 = tu_now();

        assert_int_equal(users_verify(db, "nobody", "pw", NULL, NULL), 0);
        assert_true(tu_now() - t0 > known / 4);
    }
    users_free(db);
}

static void hash_password_makes_crypt_hashes(void **state)
{
    struct fx *fx = *state;
    char *h1 = NULL, *h2 = NULL, *text;
    struct user_db *db;
    struct err e;

    assert_int_equal(users_hash_password("correct horse", &h1, &e), 0);
    assert_int_equal(users_hash_password("correct horse", &h2, &e), 0);
    assert_true(strncmp(h1, "{CRYPT}$y$", 10) == 0 || strncmp(h1, "{CRYPT}$6$", 10) == 0);
    assert_string_not_equal(h1, h2);                 /* fresh salt each time */
    assert_null(strpbrk(h1, ":\n\r "));
    /* crypt(3) itself agrees */
    {
        struct crypt_data *cd = xcalloc(1, sizeof *cd);

        assert_non_null(crypt_rn("correct horse", h1 + 7, cd, (int)sizeof *cd));
        assert_string_equal(cd->output, h1 + 7);
        assert_non_null(crypt_rn("correct horsE", h1 + 7, cd, (int)sizeof *cd));
        assert_string_not_equal(cd->output, h1 + 7);
        free(cd);
    }
    text = xasprintf("u@example.test:%s:::::\n", h1);
    db = load_ok(fx, text, NULL);
    assert_int_equal(users_verify(db, "u", "correct horse", NULL, &e), 1);
    assert_int_equal(users_verify(db, "u", "correct horse ", NULL, &e), 0);
    users_free(db);
    free(text);
    free(h1);
    free(h2);

    h1 = NULL;
    assert_int_equal(users_hash_password("", &h1, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_null(h1);
}

/* ---- aliases and resolution --------------------------------------------- */

static const char alias_users[] =
    "alice@example.test:!:::::\n"
    "bob@example.test:!:::::\n"
    "carol@other.test:!:::::\n"
    "dave@example.test:!:::::\n";

static const char alias_text[] =
    "# aliases\n"
    "\n"
    "postmaster: alice\n"
    "Sales@Example.Test: alice, bob@example.test   # trailing comment\n"
    "team:sales carol@other.test,ext@Remote.ORG\n"
    "all: team, sales, alice, bob, ext@remote.org\n"
    "dave: dave, Dave.Copy@remote.org\n"
    "@other.test: bob\n"
    "diamond: left, right\n"
    "left: bottom\n"
    "right: bottom\n"
    "bottom: carol@other.test\n";

static void resolve_cases(void **state)
{
    struct fx *fx = *state;
    struct user_db *db = load_ok(fx, alias_users, alias_text);
    static const struct {
        const char *addr;
        enum users_resolve_result r;
        const char *local;      /* space separated, in order */
        const char *external;
    } cases[] = {
        { "alice@example.test", USERS_RESOLVE_OK, "alice@example.test", "" },
        { "ALICE@EXAMPLE.TEST", USERS_RESOLVE_OK, "alice@example.test", "" },
        { "alice", USERS_RESOLVE_OK, "alice@example.test", "" },
        { "postmaster", USERS_RESOLVE_OK, "alice@example.test", "" },
        { "PostMaster@example.test", USERS_RESOLVE_OK, "alice@example.test", "" },
        { "sales@example.test", USERS_RESOLVE_OK, "alice@example.test bob@example.test", "" },
        { "team@example.test", USERS_RESOLVE_OK,
          "alice@example.test bob@example.test carol@other.test", "ext@remote.org" },
        /* duplicates through several paths appear once */
        { "all@example.test", USERS_RESOLVE_OK,
          "alice@example.test bob@example.test carol@other.test", "ext@remote.org" },
        /* "dave: dave, ..." keeps a copy for the user */
        { "dave@example.test", USERS_RESOLVE_OK, "dave@example.test", "Dave.Copy@remote.org" },
        { "carol@other.test", USERS_RESOLVE_OK, "carol@other.test", "" },
        /* catch-all: only for names that are no user or alias */
        { "anyone@other.test", USERS_RESOLVE_OK, "bob@example.test", "" },
        { "ANYONE@OTHER.TEST", USERS_RESOLVE_OK, "bob@example.test", "" },
        { "diamond@example.test", USERS_RESOLVE_OK, "carol@other.test", "" },
        { "nobody@example.test", USERS_RESOLVE_UNKNOWN, "", "" },
        { "bob@remote.org", USERS_RESOLVE_NOT_LOCAL, "", "" },
        { "bob@example.test.evil", USERS_RESOLVE_NOT_LOCAL, "", "" },
        { "../alice@example.test", USERS_RESOLVE_UNKNOWN, "", "" },
        { "a/b@example.test", USERS_RESOLVE_UNKNOWN, "", "" },
        { "@example.test", USERS_RESOLVE_UNKNOWN, "", "" },
        { "", USERS_RESOLVE_UNKNOWN, "", "" },
        { "x@other.test\r\nrcpt", USERS_RESOLVE_NOT_LOCAL, "", "" },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct users_target t;
        struct err e;
        enum users_resolve_result r = users_resolve(db, cases[i].addr, &t, &e);
        char got_l[512] = "", got_x[512] = "";

        for (size_t j = 0; j < t.n_local; j++) {
            strcat(got_l, j ? " " : "");
            strcat(got_l, t.local[j]);
        }
        for (size_t j = 0; j < t.n_external; j++) {
            strcat(got_x, j ? " " : "");
            strcat(got_x, t.external[j]);
        }
        if (r != cases[i].r || strcmp(got_l, cases[i].local) != 0 ||
            strcmp(got_x, cases[i].external) != 0)
            fail_msg("case %zu (%s): got %d [%s] [%s]", i, cases[i].addr, (int)r, got_l, got_x);
        if (r != USERS_RESOLVE_OK) {
            assert_int_equal(t.n_local + t.n_external, 0);
        }
        users_target_free(&t);
        assert_null(t.local);
    }
    assert_int_equal(users_count(db), 4);
    users_free(db);
}

/* n aliases in a chain: p1 -> p2 -> ... -> pn -> last. */
static char *chain(const char *prefix, int n, const char *last)
{
    char *acc = xstrdup("");

    for (int i = 1; i <= n; i++) {
        char *next = i < n ? xasprintf("%s%d", prefix, i + 1) : xstrdup(last);
        char *s = xasprintf("%s%s%d: %s\n", acc, prefix, i, next);

        free(next);
        free(acc);
        acc = s;
    }
    return acc;
}

static void alias_errors_name_file_and_line(void **state)
{
    struct fx *fx = *state;
    char *ten = chain("c", 10, "alice"), *eleven = chain("c", 11, "alice");
    /* d1..d5 are fine on their own (height 5) and reached first at level 2;
     * through p1..p6 they are reached again 6 levels deeper. */
    char *d = chain("d", 5, "alice"), *pc = chain("p", 6, "d1");
    char *late = xasprintf("top: d1, p1\n%s%s", d, pc);
    struct {
        const char *text;
        const char *why;
        int line;           /* 0: do not check */
    } cases[] = {
        { "a: b\nb: a\n", "alias loop", 1 },
        { "x: alice\na: b\nb: c\nc: a\n", "alias loop", 2 },
        { "a: a\n", "names itself but is no user", 1 },
        { "@example.test: nobody\n", "alias loop", 1 },
        { "a: nobody\n", "no such local user or alias: nobody@example.test", 1 },
        { "a: alice\nA@EXAMPLE.TEST: bob\n", "already on line 1", 2 },
        { "a@remote.org: alice\n", "must be for a local domain", 1 },
        { "@remote.org: alice\n", "catch-all must be for a local domain", 1 },
        { "a: @example.test\n", "not @domain", 1 },
        { "a:\n", "no targets", 1 },
        { "a alice\n", "no ':'", 1 },
        { "../a: alice\n", "bad address", 1 },
        { "a: ../alice\n", "bad", 1 },
        { "a: x\x01y@remote.org\n", "control character", 1 },
        { eleven, "nested deeper than 10", 1 },
        { NULL, "nested deeper than 10", 1 },
    };

    cases[ARRAY_LEN(cases) - 1].text = late;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct user_db *db = NULL;
        struct err e;
        char *where = xasprintf("%s:%d: ", fx->aliases, cases[i].line);

        if (load_tpl(fx, alias_users, cases[i].text, NULL, &db, &e) == 0)
            fail_msg("case %zu was accepted", i);
        assert_null(db);
        if (strstr(e.text, cases[i].why) == NULL ||
            (cases[i].line && strncmp(e.text, where, strlen(where)) != 0))
            fail_msg("case %zu: unexpected error \"%s\"", i, e.text);
        free(where);
    }
    /* Ten levels are allowed. */
    {
        struct user_db *db = load_ok(fx, alias_users, ten);
        struct users_target t;

        assert_int_equal(users_resolve(db, "c1@example.test", &t, NULL), USERS_RESOLVE_OK);
        assert_int_equal(t.n_local, 1);
        assert_string_equal(t.local[0], "alice@example.test");
        users_target_free(&t);
        users_free(db);
    }
    free(ten);
    free(eleven);
    free(late);
    free(d);
    free(pc);
}

static void may_send_as_cases(void **state)
{
    struct fx *fx = *state;
    struct user_db *db = load_ok(fx, alias_users, alias_text);
    static const struct {
        const char *user, *addr;
        bool want;
    } cases[] = {
        { "alice@example.test", "alice@example.test", true },
        { "alice@example.test", "ALICE@Example.Test", true },
        { "alice@example.test", "postmaster@example.test", true },
        { "alice@example.test", "sales@example.test", true },
        { "bob@example.test", "sales@example.test", true },
        { "carol@other.test", "team@example.test", true },        /* nested */
        { "carol@other.test", "diamond@example.test", true },
        { "dave@example.test", "dave@example.test", true },
        { "bob@example.test", "alice@example.test", false },
        { "dave@example.test", "sales@example.test", false },
        { "alice@example.test", "ext@remote.org", false },
        /* a catch-all does not make every name of the domain yours */
        { "bob@example.test", "anyone@other.test", false },
        { "alice@example.test", "anyone@other.test", false },
        { "nobody@example.test", "nobody@example.test", false },
        { "alice@example.test", "", false },
        { "alice@example.test", "alice@remote.org", false },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        if (users_may_send_as(db, cases[i].user, cases[i].addr) != cases[i].want)
            fail_msg("case %zu: %s as %s", i, cases[i].user, cases[i].addr);
    }
    users_free(db);
}

/* Many users and aliases: every one is found (the table grows and
 * collides), and nothing else is. */
static void many_users_and_aliases(void **state)
{
    struct fx *fx = *state;
    struct buf u = BUF_INIT, a = BUF_INIT;
    struct user_db *db;
    struct err e;
    const int n = 20000;
    double t0;

    for (int i = 0; i < n; i++) {
        assert_int_equal(buf_printf(&u, "u%d@%s:!:::::\n", i, domains[i % 2]), 0);
        assert_int_equal(buf_printf(&a, "l%d: u%d@%s, x%d@remote.org\n", i, i, domains[i % 2],
                                    i), 0);
    }
    write_str(fx->aliases, buf_cstr(&a));
    {
        struct user_db_opts o = { fx->users, fx->aliases, domains, 2, fx->template };

        write_str(fx->users, buf_cstr(&u));
        t0 = tu_now();
        assert_int_equal(users_load(&o, &db, &e), 0);
    }
    assert_int_equal(users_count(db), (size_t)n);
    for (int i = 0; i < n; i++) {
        struct users_target t;
        char addr[64], want[64], ext[64];

        snprintf(addr, sizeof addr, "L%d@example.test", i);
        snprintf(want, sizeof want, "u%d@%s", i, domains[i % 2]);
        snprintf(ext, sizeof ext, "x%d@remote.org", i);
        assert_int_equal(users_resolve(db, addr, &t, &e), USERS_RESOLVE_OK);
        assert_int_equal(t.n_local, 1);
        assert_string_equal(t.local[0], want);
        assert_int_equal(t.n_external, 1);
        assert_string_equal(t.external[0], ext);
        users_target_free(&t);
        assert_int_equal(users_resolve(db, want, &t, &e), USERS_RESOLVE_OK);
        users_target_free(&t);
        snprintf(addr, sizeof addr, "u%d@example.test", i + n);
        assert_int_equal(users_resolve(db, addr, &t, &e), USERS_RESOLVE_UNKNOWN);
    }
    print_message("%d users and aliases loaded and resolved in %.3f s\n", n, tu_now() - t0);
    users_free(db);
    buf_free(&u);
    buf_free(&a);
}

/* ---- Maildir template --------------------------------------------------- */

static void maildir_template_expansion(void **state)
{
    struct fx *fx = *state;
    static const char users[] =
        "alice@example.test:!:::::\n"
        "b.o+b_-1@other.test:!::::/home/bob::\n"
        "dots@example.test:!::::/home/../etc::\n"
        "dot@example.test:!::::/home/./x::\n"
        "root@example.test:!::::/::\n";
    static const struct {
        const char *tpl, *user;
        const char *want;       /* NULL: ERR_INVAL */
    } cases[] = {
        { "/m/%d/%n", "alice@example.test", "/m/example.test/alice" },
        { "/m/%u", "alice@example.test", "/m/alice@example.test" },
        { "/m/%d/%n/", "b.o+b_-1@other.test", "/m/other.test/b.o+b_-1/" },
        { "/m/%%/%n%%", "alice@example.test", "/m/%/alice%" },
        { "%h/Maildir", "b.o+b_-1@other.test", "/home/bob/Maildir" },
        { "%h/Maildir", "alice@example.test", NULL },          /* no home */
        { "%h/Maildir", "dots@example.test", NULL },           /* ".." in home */
        { "%h/Maildir", "dot@example.test", NULL },            /* "." in home */
        { "%h", "root@example.test", "/" },
        { "m/%n", "alice@example.test", NULL },                /* relative */
        { "%n/m", "alice@example.test", NULL },
        { "/m/../%n", "alice@example.test", NULL },
        { "/m/./%n", "alice@example.test", NULL },
        { "/m/%n/..", "alice@example.test", NULL },
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct user_db *db = NULL;
        struct err e;
        char *path = NULL;
        int r;

        if (load_tpl(fx, users, NULL, cases[i].tpl, &db, &e) != 0)
            fail_msg("case %zu: load: %s", i, e.text);
        r = users_maildir(db, cases[i].user, &path, &e);
        if (cases[i].want != NULL) {
            if (r != 0)
                fail_msg("case %zu: %s", i, e.text);
            assert_string_equal(path, cases[i].want);
        } else {
            if (r == 0)
                fail_msg("case %zu: accepted %s", i, path);
            assert_int_equal(e.code, ERR_INVAL);
            assert_null(path);
        }
        free(path);
        users_free(db);
    }
    /* Unknown user; bad template syntax is a load error. */
    {
        struct user_db *db = NULL;
        struct err e;
        char *path = NULL;

        assert_int_equal(load_tpl(fx, users, NULL, "/m/%n", &db, &e), 0);
        assert_int_equal(users_maildir(db, "zed@example.test", &path, &e), -1);
        assert_int_equal(e.code, ERR_NOTFOUND);
        users_free(db);
        db = NULL;
        assert_int_equal(load_tpl(fx, users, NULL, "/m/%x", &db, &e), -1);
        assert_null(db);
        assert_int_equal(load_tpl(fx, users, NULL, "/m/%", &db, &e), -1);
        assert_int_equal(load_tpl(fx, users, NULL, "", &db, &e), -1);
    }
}

/* Names that would escape the Maildir root never get into the database,
 * and the admin edits refuse them too. */
static void names_with_path_parts_refused(void **state)
{
    struct fx *fx = *state;
    static const char *const bad[] = {
        "../x@example.test", "..@example.test", ".@example.test", "a/b@example.test",
        "a@../example.test", "a@exam/ple.test", "a:b@example.test", "a@b:c", "",
        "a\n@example.test", "a%2f@example.test", "x@", "@example.test",
        "a@example.test\n", "a b", "a@b@example.test",
    };

    write_str(fx->users, "keep@example.test:!:::::\n");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct err e;
        char *before = read_file(fx->users, NULL), *after;

        if (users_file_add(fx->users, bad[i], "pw", &e) == 0)
            fail_msg("add accepted bad name %zu", i);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(users_file_passwd(fx->users, bad[i], "pw", &e), -1);
        assert_int_equal(users_file_del(fx->users, bad[i], &e), -1);
        after = read_file(fx->users, NULL);
        assert_string_equal(before, after);
        free(before);
        free(after);
    }
}

/* ---- admin edits -------------------------------------------------------- */

static const char kept[] =
    "# correod users\n"
    "\n"
    "Carol@Example.test:{SHA512-CRYPT}$6$abc$def:1000:1000:Carol C:/home/carol:/bin/sh:"
    "userdb_quota_rule=*:storage=1G\n"
    "   # indented comment: with colons\n"
    "bob@example.test:{CRYPT}$y$j9T$x$y\r\n"
    "short@example.test\n"
    "dave@other.test:$6$q$w:::::nonsense:extra\n"
    "\n"
    "last@example.test:$6$a$b:::::";   /* no final newline */

static int collect(void *ctx, const char *name)
{
    char *acc = *(char **)ctx, *n = xasprintf("%s%s ", acc, name);

    free(acc);
    *(char **)ctx = n;
    return 0;
}

static void edits_keep_other_lines(void **state)
{
    struct fx *fx = *state;
    struct err e;
    char *data, *names = xstrdup("");
    size_t len;
    struct stat st;

    write_str(fx->users, kept);
    assert_int_equal(chmod(fx->users, 0640), 0);

    /* add: everything before stays byte for byte, a newline is supplied */
    assert_int_equal(users_file_add(fx->users, "New@Example.Test", "s3cret", &e), 0);
    data = read_file(fx->users, &len);
    assert_int_equal(strncmp(data, kept, strlen(kept)), 0);
    assert_int_equal(data[strlen(kept)], '\n');
    assert_int_equal(strncmp(data + strlen(kept) + 1, "new@example.test:{CRYPT}$", 25), 0);
    assert_int_equal(strcmp(data + len - 6, ":::::\n"), 0);
    assert_int_equal(stat(fx->users, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);          /* mode kept */
    free(data);

    /* a name that is there already, in any case */
    assert_int_equal(users_file_add(fx->users, "CAROL@example.test", "x", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);

    /* passwd: only the password field of that line changes */
    assert_int_equal(users_file_passwd(fx->users, "carol@example.test", "n3w", &e), 0);
    data = read_file(fx->users, NULL);
    {
        const char *c = strstr(data, "Carol@Example.test:{CRYPT}$");
        const char *rest = ":1000:1000:Carol C:/home/carol:/bin/sh:"
                           "userdb_quota_rule=*:storage=1G\n   # indented comment: with colons\n"
                           "bob@example.test:{CRYPT}$y$j9T$x$y\r\nshort@example.test\n";

        assert_non_null(c);
        assert_int_equal(strncmp(data, kept, (size_t)(c - data)), 0);
        assert_non_null(strstr(c, rest));
        assert_null(strstr(data, "$6$abc$def"));
    }
    free(data);
    /* passwd on lines with no fields after the password, or none at all */
    assert_int_equal(users_file_passwd(fx->users, "bob@example.test", "b", &e), 0);
    assert_int_equal(users_file_passwd(fx->users, "short@example.test", "s", &e), 0);
    data = read_file(fx->users, NULL);
    assert_non_null(strstr(data, "\r\nshort@example.test:{CRYPT}$"));
    assert_null(strstr(data, "$y$j9T$x$y"));
    {
        const char *b = strstr(data, "bob@example.test:{CRYPT}$");

        assert_non_null(b);
        b = strchr(b, '\n');
        assert_int_equal(b[-1], '\r');                      /* CRLF kept */
    }
    free(data);
    /* the new passwords work */
    {
        struct user_db_opts o = { fx->users, NULL, domains, 2, fx->template };
        struct user_db *db;

        assert_int_equal(users_load(&o, &db, &e), 0);
        assert_int_equal(users_verify(db, "carol", "n3w", NULL, &e), 1);
        assert_int_equal(users_verify(db, "new", "s3cret", NULL, &e), 1);
        assert_int_equal(users_verify(db, "carol", "x", NULL, &e), 0);
        assert_int_equal(users_verify(db, "short", "s", NULL, &e), 1);
        assert_int_equal(users_verify(db, "bob", "b", NULL, &e), 1);
        users_free(db);
    }

    /* del: exactly that line goes */
    write_str(fx->users, kept);
    assert_int_equal(users_file_del(fx->users, "DAVE@other.test", &e), 0);
    data = read_file(fx->users, NULL);
    {
        const char *d = strstr(kept, "dave@other.test");
        const char *dn = strchr(d, '\n') + 1;
        char *want = xasprintf("%.*s%s", (int)(d - kept), kept, dn);

        assert_string_equal(data, want);
        free(want);
    }
    free(data);
    assert_int_equal(users_file_del(fx->users, "dave@other.test", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(users_file_passwd(fx->users, "zed@example.test", "p", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(users_file_del(fx->users, "last@example.test", &e), 0);
    data = read_file(fx->users, NULL);
    assert_null(strstr(data, "last@"));
    free(data);

    /* list: file order, lower case, comments and blanks skipped */
    assert_int_equal(users_file_list(fx->users, collect, &names, &e), 0);
    assert_string_equal(names, "carol@example.test bob@example.test short@example.test ");
    free(names);

    /* no temporary file is left behind */
    {
        char *tmp = xasprintf("%s.tmp", fx->users);

        assert_false(exists(tmp));
        free(tmp);
    }
}

static void add_creates_missing_file(void **state)
{
    struct fx *fx = *state;
    char *path = xasprintf("%s/fresh-users", fx->dir);
    struct err e;
    struct stat st;
    char *data;

    assert_int_equal(users_file_del(path, "a@example.test", &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(users_file_add(path, "a@example.test", "pw", &e), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    data = read_file(path, NULL);
    assert_int_equal(strncmp(data, "a@example.test:{CRYPT}$", 23), 0);
    assert_int_equal(strchr(data, '\n')[1], '\0');
    free(data);
    assert_int_equal(users_file_add(path, "", "pw", &e), -1);
    assert_int_equal(users_file_add(path, "b@example.test", "", &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    free(path);
}

static int fail_at = -1;
static unsigned steps_seen;

static int hook_fail(int s)
{
    steps_seen |= 1u << s;
    return s == fail_at ? -1 : 0;
}

static int hook_crash(int s)
{
    if (s == fail_at)
        _exit(42);
    return 0;
}

/* The file is the old one, or the old one plus a complete, working line
 * for the added user. */
static int old_or_new(struct fx *fx, const char *old)
{
    size_t len;
    char *data = read_file(fx->users, &len);
    int r = -1;

    assert_non_null(data);
    if (strcmp(data, old) == 0) {
        r = 0;
    } else if (strncmp(data, old, strlen(old)) == 0) {
        struct user_db_opts o = { fx->users, NULL, domains, 2, fx->template };
        struct user_db *db;
        struct err e;

        assert_int_equal(strncmp(data + strlen(old), "crash@example.test:{CRYPT}$", 27), 0);
        assert_int_equal(data[len - 1], '\n');
        assert_int_equal(users_load(&o, &db, &e), 0);
        assert_int_equal(users_verify(db, "crash", "pw", NULL, &e), 1);
        users_free(db);
        r = 1;
    } else {
        fail_msg("the users file is neither old nor new:\n%s", data);
    }
    free(data);
    return r;
}

static void edit_fails_at_every_step(void **state)
{
    struct fx *fx = *state;
    char *old = xasprintf("a@example.test:{CRYPT}%s:::::\n# note\n", fx->h6);
    char *tmp = xasprintf("%s.tmp", fx->users);
    int s;

    for (s = 0; s < 16; s++) {
        struct err e;
        int rc;

        write_str(fx->users, old);
        fail_at = s;
        steps_seen = 0;
        users_step_hook = hook_fail;
        rc = users_file_add(fx->users, "crash@example.test", "pw", &e);
        users_step_hook = NULL;
        if (!(steps_seen & (1u << s)))
            break;                                  /* past the last step */
        assert_false(exists(tmp));
        if (rc == 0) {
            /* only the directory fsync comes after the rename */
            assert_int_equal(old_or_new(fx, old), 1);
            assert_true(steps_seen & (1u << (s - 1)));
        } else {
            assert_int_equal(e.code, ERR_IO);
            assert_non_null(strstr(e.text, strerror(EIO)));
            assert_int_equal(old_or_new(fx, old), 0);
        }
    }
    assert_int_equal(s, 6);
    fail_at = -1;
    free(tmp);
    free(old);
}

static void edit_crashes_at_every_step(void **state)
{
    struct fx *fx = *state;
    char *old = xasprintf("a@example.test:{CRYPT}%s:::::\n# note\n", fx->h6);
    int s, seen_new = 0, seen_old = 0;

    for (s = 0; s < 16; s++) {
        pid_t pid;
        int status, which;
        struct err e;

        write_str(fx->users, old);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            fail_at = s;
            users_step_hook = hook_crash;
            users_file_add(fx->users, "crash@example.test", "pw", &e);
            _exit(1);   /* the step was never reached */
        }
        status = tu_wait_child(pid, 30);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 1)
            break;
        assert_int_equal(WEXITSTATUS(status), 42);
        which = old_or_new(fx, old);
        /* once the new file is there it stays */
        if (which == 0)
            assert_int_equal(seen_new, 0);
        seen_old += which == 0;
        seen_new += which == 1;
        /* The dead process's lock is gone and its stale tmp file is no
         * obstacle: the next edit goes through. */
        assert_int_equal(users_file_add(fx->users, "after@example.test", "pw", &e), 0);
    }
    assert_int_equal(s, 6);
    assert_int_equal(seen_old, 5);       /* crashed before the rename */
    assert_int_equal(seen_new, 1);       /* crashed before the directory fsync */
    free(old);
}

/* Is pid waiting for a lock (a "->" line of /proc/locks)? */
static int waits_for_lock(pid_t pid)
{
    FILE *f = fopen("/proc/locks", "r");
    char line[512];
    int found = 0;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        char *arrow = strstr(line, "->");
        long p;

        if (arrow != NULL && sscanf(arrow, "-> %*s %*s %*s %ld", &p) == 1 && p == pid)
            found = 1;
    }
    fclose(f);
    return found;
}

static void edit_waits_for_the_lock(void **state)
{
    struct fx *fx = *state;
    char *lock = xasprintf("%s.lock", fx->users);
    int fd, status;
    pid_t pid;
    double end;
    char *data;

    write_str(fx->users, "a@example.test:!:::::\n");
    fd = open(lock, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct err e;

        close(fd);
        _exit(users_file_add(fx->users, "b@example.test", "pw", &e) == 0 ? 0 : 1);
    }
    end = tu_now() + 10;
    for (;;) {
        int w = waits_for_lock(pid);

        if (w < 0) {
            print_message("no /proc/locks: not checking that the child waits\n");
            break;
        }
        if (w == 1)
            break;
        assert_true(tu_now() < end);
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    /* blocked, so nothing written yet */
    data = read_file(fx->users, NULL);
    assert_string_equal(data, "a@example.test:!:::::\n");
    free(data);
    assert_int_equal(flock(fd, LOCK_UN), 0);
    close(fd);
    status = tu_wait_child(pid, 30);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    data = read_file(fx->users, NULL);
    assert_non_null(strstr(data, "\nb@example.test:{CRYPT}$"));
    free(data);
    free(lock);
}

static void edit_refuses_symlink(void **state)
{
    struct fx *fx = *state;
    char *target = xasprintf("%s/real-users", fx->dir);
    char *data;
    struct err e;

    write_str(target, "a@example.test:!:::::\n");
    unlink(fx->users);
    assert_int_equal(symlink(target, fx->users), 0);
    assert_int_equal(users_file_add(fx->users, "b@example.test", "pw", &e), -1);
    data = read_file(target, NULL);
    assert_string_equal(data, "a@example.test:!:::::\n");
    free(data);
    unlink(fx->users);
    free(target);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(parse_every_scheme, setup, teardown),
        cmocka_unit_test_setup_teardown(parse_rejects_hostile_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_unknown_takes_as_long, setup, teardown),
        cmocka_unit_test_setup_teardown(hash_password_makes_crypt_hashes, setup, teardown),
        cmocka_unit_test_setup_teardown(resolve_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(alias_errors_name_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(may_send_as_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(many_users_and_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(maildir_template_expansion, setup, teardown),
        cmocka_unit_test_setup_teardown(names_with_path_parts_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(edits_keep_other_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(add_creates_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(edit_fails_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(edit_crashes_at_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(edit_waits_for_the_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(edit_refuses_symlink, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
