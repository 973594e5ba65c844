/* Unit tests for mua/alias: address lists, the aliases file, expansion,
 * completion, $query_command and creating aliases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias.h"
#include "buf.h"
#include "config.h"
#include "testutil.h"

/* ---- fixture: a private temp dir ------------------------------------------------ */

static int setup(void **state)
{
    *state = tu_tmpdir("alias");
    return 0;
}

static int teardown(void **state)
{
    tu_rm_rf(*state);
    free(*state);
    return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    size_t n = strlen(text);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

static char *read_file(const char *path)
{
    struct buf b = BUF_INIT;
    char chunk[4096];
    ssize_t r;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    while ((r = read(fd, chunk, sizeof chunk)) > 0)
        assert_int_equal(buf_append(&b, chunk, (size_t)r), 0);
    assert_int_equal(r, 0);
    close(fd);
    return buf_steal(&b, NULL);
}

static void assert_name(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got, want);
}

/* Checks l against "name|addr" strings ("|addr" for no name). */
static void assert_list(const struct msg_addrlist *l, const char *const *want)
{
    size_t n = 0;

    while (want[n])
        n++;
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++) {
        const char *bar = strchr(want[i], '|');
        assert_non_null(bar);
        char *name = bar == want[i] ? NULL : xstrndup(want[i], (size_t)(bar - want[i]));
        assert_name(l->v[i].name, name);
        assert_string_equal(l->v[i].addr, bar + 1);
        free(name);
    }
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

/* ---- address lists ---------------------------------------------------------------- */

static void test_parse_addresses(void **state)
{
    const struct {
        const char *text;
        enum err_code code;           /* ERR_OK: parses to want */
        const char *const *want;
    } cases[] = {
        {"a@b", ERR_OK, L("|a@b")},
        {"John Doe <j@x>", ERR_OK, L("John Doe|j@x")},
        {"\"Doe, John\" <j@x>, b@y", ERR_OK, L("Doe, John|j@x", "|b@y")},
        {"j@x (John Doe)", ERR_OK, L("John Doe|j@x")},
        {"<j@x>", ERR_OK, L("|j@x")},
        {"  a@b ,, c@d , ", ERR_OK, L("|a@b", "|c@d")},
        {"\"a \\\"q\\\" b\" <x@y>", ERR_OK, L("a \"q\" b|x@y")},
        {"John (work) Doe <j@x>", ERR_OK, L("John Doe|j@x")},
        {"John   \"Q.\"  Doe <j@x> (comment)", ERR_OK, L("John Q. Doe|j@x")},
        {"\"john doe\"@x", ERR_OK, L("|\"john doe\"@x")},
        {"<\"a, b\"@x>, c", ERR_OK, L("|\"a, b\"@x", "|c")},
        {"jdoe, team", ERR_OK, L("|jdoe", "|team")},
        {"Ünï Cødé <u@x>", ERR_OK, L("Ünï Cødé|u@x")},
        {"", ERR_OK, NONE},
        {" , ", ERR_OK, NONE},
        {"\"unterminated <a@b>", ERR_PARSE, NULL},
        {"a@b)", ERR_PARSE, NULL},
        {"(x a@b", ERR_PARSE, NULL},
        {"<a@b", ERR_PARSE, NULL},
        {"a@b>", ERR_PARSE, NULL},
        {"<<a@b>>", ERR_PARSE, NULL},
        {"a b@c", ERR_PARSE, NULL},
        {"<a@b> junk", ERR_PARSE, NULL},
        {"<a@b> \"q\"", ERR_PARSE, NULL},
        {"<>", ERR_PARSE, NULL},
        {"Name <  >", ERR_PARSE, NULL},
        {"Evil\r\nBcc: x <a@b>", ERR_PARSE, NULL},
        {"\"Evil\nBcc: x\" <a@b>", ERR_PARSE, NULL},
        {"a@b\x7f", ERR_PARSE, NULL},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct msg_addrlist l;
        struct err e;
        err_clear(&e);
        int rc = alias_parse_addresses(cases[i].text, &l, &e);
        if (cases[i].code == ERR_OK) {
            if (rc != 0)
                fail_msg("case %zu \"%s\": %s", i, cases[i].text, e.text);
            assert_list(&l, cases[i].want);
        } else {
            if (rc != -1)
                fail_msg("case %zu \"%s\" parsed", i, cases[i].text);
            assert_int_equal(e.code, cases[i].code);
            assert_int_equal(l.n, 0);
        }
        alias_addrlist_free(&l);
    }
}

static void test_format_address(void **state)
{
    static const struct {
        const char *name, *addr, *want;
    } cases[] = {
        {NULL, "a@b", "a@b"},
        {"", "a@b", "a@b"},
        {"John Doe", "j@x", "John Doe <j@x>"},
        {"Doe, John", "j@x", "\"Doe, John\" <j@x>"},
        {"a \"q\" b", "x@y", "\"a \\\"q\\\" b\" <x@y>"},
        {"J. Doe", "j@x", "\"J. Doe\" <j@x>"},
        {"back\\slash", "b@x", "\"back\\\\slash\" <b@x>"},
        {"(paren)", "p@x", "\"(paren)\" <p@x>"},
        {"Ünï", "u@x", "Ünï <u@x>"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = alias_format_address(cases[i].name, cases[i].addr);
        struct msg_addrlist l;
        assert_string_equal(got, cases[i].want);
        /* and it parses back to the same name and address */
        assert_int_equal(alias_parse_addresses(got, &l, NULL), 0);
        assert_int_equal(l.n, 1);
        assert_name(l.v[0].name, cases[i].name && *cases[i].name ? cases[i].name : NULL);
        assert_string_equal(l.v[0].addr, cases[i].addr);
        alias_addrlist_free(&l);
        free(got);
    }
}

/* ---- the aliases file --------------------------------------------------------------- */

static const char aliases_text[] =
    "# my aliases\n"
    "alias jd John Doe <jd@example.org>\n"
    "alias -group work -group all pat \"Doe, Pat\" <pat@example.org>   # trailing\n"
    "alias team jd, pat, carol@example.org\n"
    "alias quoted '\"Smith, Ann\" <ann@example.org>'\n"
    "alias Dup first@example.org\n"
    "alias dup second@example.org\n"
    "set foo=bar\n"                              /* line 8: ignored */
    "alias bad '<x@example.org'\n"               /* line 9: bad address */
    "alias lonely\n"                             /* line 10: no address */
    "alias gone g@example.org\n"
    "unalias gone\n"
    "alias semi a@example.org; alias semi2 b@example.org\n"
    "alias cont c1@example.org, \\\n"
    "    c2@example.org\n"
    "alias Dollar 'Cash $HOME' <cash@example.org>\n"
    "alias evil \"Evil\\nBcc: x\" <e@example.org>\n"   /* line 17: newline in name */
    "alias -group\n";                            /* line 18: -group without name */

static void test_load(void **state)
{
    const char *dir = *state;
    char *path = xasprintf("%s/aliases", dir);
    const struct {
        const char *key, *value;
        const char *const *addrs;
    } want[] = {
        {"jd", "John Doe <jd@example.org>", L("John Doe|jd@example.org")},
        {"pat", "\"Doe, Pat\" <pat@example.org>", L("Doe, Pat|pat@example.org")},
        {"team", "jd, pat, carol@example.org", L("|jd", "|pat", "|carol@example.org")},
        {"quoted", "\"Smith, Ann\" <ann@example.org>", L("Smith, Ann|ann@example.org")},
        {"Dup", "second@example.org", L("|second@example.org")},
        {"semi", "a@example.org", L("|a@example.org")},
        {"semi2", "b@example.org", L("|b@example.org")},
        {"cont", "c1@example.org, c2@example.org", L("|c1@example.org", "|c2@example.org")},
        {"Dollar", "\"Cash $HOME\" <cash@example.org>", L("Cash $HOME|cash@example.org")},
    };
    static const char *const diags[] = {":8: set: ignored", ":9: alias bad", ":10: alias:",
                                        ":17: alias evil", ":18: alias: -group"};
    struct alias_db db;
    struct rc_diag diag;
    struct err e;

    (void)state;
    write_file(path, aliases_text, 0600);
    alias_db_init(&db);
    rc_diag_init(&diag);
    assert_int_equal(alias_load(&db, path, &diag, &e), 0);
    assert_int_equal(db.n, ARRAY_LEN(want));
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        const struct alias *a = alias_lookup(&db, want[i].key);
        assert_non_null(a);
        assert_ptr_equal(a, &db.v[i]);            /* order of first definition */
        assert_string_equal(a->key, want[i].key);
        assert_string_equal(a->value, want[i].value);
        assert_list(&a->addrs, want[i].addrs);
    }
    assert_null(alias_lookup(&db, "gone"));
    assert_null(alias_lookup(&db, "bad"));
    assert_non_null(alias_lookup(&db, "DUP"));
    assert_ptr_equal(alias_reverse(&db, "JD@example.org"), alias_lookup(&db, "jd"));
    assert_null(alias_reverse(&db, "carol@example.org"));   /* only in a group */

    assert_int_equal(diag.n, ARRAY_LEN(diags));
    for (size_t i = 0; i < ARRAY_LEN(diags); i++) {
        if (!strstr(diag.msgs[i], diags[i]))
            fail_msg("diagnostic %zu: \"%s\" lacks \"%s\"", i, diag.msgs[i], diags[i]);
        assert_true(strncmp(diag.msgs[i], path, strlen(path)) == 0);
    }

    /* unalias * empties the table, and loading goes on after it */
    char *path2 = xasprintf("%s/more", dir);
    write_file(path2, "unalias *\nalias after a@example.org\n", 0600);
    assert_int_equal(alias_load(&db, path2, &diag, &e), 0);
    assert_int_equal(db.n, 1);
    assert_non_null(alias_lookup(&db, "after"));
    assert_null(alias_lookup(&db, "jd"));

    /* missing file: ERR_NOTFOUND, table unchanged */
    char *missing = xasprintf("%s/nope", dir);
    err_clear(&e);
    assert_int_equal(alias_load(&db, missing, &diag, &e), -1);
    assert_int_equal(e.code, ERR_NOTFOUND);
    assert_int_equal(db.n, 1);

    rc_diag_free(&diag);
    alias_db_free(&db);
    free(missing);
    free(path2);
    free(path);
}

static void test_config_aliases(void **state)
{
    const char *dir = *state;
    struct config *cfg = config_new();
    struct alias_db db;
    struct rc_diag diag;
    char *path = xasprintf("%s/aliases", dir);

    config_exec(cfg, "test",
                "alias cfg1 One <one@example.org>\n"
                "alias cfgbad <oops\n"
                "alias shared cfg@example.org\n"
                "alias doe \"Doe, John\" <jd@example.org>\n"
                "alias pair a@example.org, b@example.org\n", NULL);
    alias_db_init(&db);
    rc_diag_init(&diag);
    alias_add_config(&db, cfg, &diag);
    assert_int_equal(db.n, 4);
    assert_int_equal(diag.n, 1);
    assert_non_null(strstr(diag.msgs[0], "cfgbad"));
    assert_string_equal(alias_lookup(&db, "cfg1")->addrs.v[0].name, "One");
    /* a quoted display name with a comma in correorc is one address */
    assert_int_equal(alias_lookup(&db, "doe")->addrs.n, 1);
    assert_string_equal(alias_lookup(&db, "doe")->addrs.v[0].name, "Doe, John");
    assert_string_equal(alias_lookup(&db, "doe")->addrs.v[0].addr, "jd@example.org");
    /* a trailing comma still separates addresses */
    assert_int_equal(alias_lookup(&db, "pair")->addrs.n, 2);
    /* a file loaded afterwards wins */
    write_file(path, "alias shared file@example.org\n", 0600);
    assert_int_equal(alias_load(&db, path, &diag, NULL), 0);
    assert_string_equal(alias_lookup(&db, "shared")->value, "file@example.org");
    assert_int_equal(db.n, 4);
    rc_diag_free(&diag);
    alias_db_free(&db);
    config_free(cfg);
    free(path);
}

static void test_table_growth(void **state)
{
    struct alias_db db;
    char key[32], val[64];

    (void)state;
    alias_db_init(&db);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "Key%d", i);
        snprintf(val, sizeof val, "user%d@example.org", i);
        assert_int_equal(alias_add(&db, key, val, NULL), 0);
    }
    assert_int_equal(db.n, 2000);
    for (int i = 0; i < 2000; i += 2) {
        snprintf(key, sizeof key, "KEY%d", i);
        assert_true(alias_remove(&db, key));
    }
    assert_false(alias_remove(&db, "key0"));
    assert_int_equal(db.n, 1000);
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "key%d", i);
        const struct alias *a = alias_lookup(&db, key);
        if (i % 2 == 0) {
            assert_null(a);
        } else {
            assert_non_null(a);
            snprintf(val, sizeof val, "user%d@example.org", i);
            assert_string_equal(a->value, val);
        }
    }
    /* bad keys and values */
    struct err e;
    static const char *const bad_keys[] = {"", "a b", "a\tb", "a\nb"};
    for (size_t i = 0; i < ARRAY_LEN(bad_keys); i++) {
        err_clear(&e);
        assert_int_equal(alias_add(&db, bad_keys[i], "x@y", &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
    }
    err_clear(&e);
    assert_int_equal(alias_add(&db, "empty", " , ", &e), -1);
    assert_int_equal(e.code, ERR_PARSE);
    assert_int_equal(db.n, 1000);
    alias_db_free(&db);
}

/* ---- expansion ------------------------------------------------------------------------ */

static void test_expand(void **state)
{
    static const char *const defs[][2] = {
        {"jd", "John Doe <jd@example.org>"},
        {"pat", "pat@example.org"},
        {"team", "jd, pat, carol@example.org"},
        {"all", "team, ops"},
        {"ops", "ops@example.org, JD"},
        {"root", "root"},
        {"loopa", "x@example.org, loopb"},
        {"loopb", "loopa"},
        {"self2", "self3"},
        {"self3", "self2, y@example.org"},
    };
    const struct {
        const char *text;
        enum err_code code;
        const char *const *want;      /* or the error text part */
        const char *errpart;
    } cases[] = {
        {"jd", ERR_OK, L("John Doe|jd@example.org"), NULL},
        {"JD", ERR_OK, L("John Doe|jd@example.org"), NULL},
        {"jd, x@y, team", ERR_OK,
         L("John Doe|jd@example.org", "|x@y", "|pat@example.org", "|carol@example.org"), NULL},
        {"all", ERR_OK,
         L("John Doe|jd@example.org", "|pat@example.org", "|carol@example.org",
           "|ops@example.org"), NULL},
        {"root", ERR_OK, L("|root"), NULL},
        {"unknown, localuser", ERR_OK, L("|unknown", "|localuser"), NULL},
        {"jd@example.org", ERR_OK, L("|jd@example.org"), NULL},
        {"Named <jd>", ERR_OK, L("Named|jd"), NULL},
        {"PAT@EXAMPLE.ORG, pat", ERR_OK, L("|PAT@EXAMPLE.ORG"), NULL},
        {"", ERR_OK, NONE, NULL},
        {"loopa", ERR_PARSE, NULL, "alias loop: loopa -> loopb -> loopa"},
        {"ok@example.org, loopb", ERR_PARSE, NULL, "alias loop: loopb -> loopa -> loopb"},
        {"self2", ERR_PARSE, NULL, "alias loop: self2 -> self3 -> self2"},
        {"jd, <oops", ERR_PARSE, NULL, "missing '>'"},
        {"deep0", ERR_LIMIT, NULL, "nested"},
        {"wide0", ERR_LIMIT, NULL, "look-ups"},
    };
    struct alias_db db;
    char key[32], val[256];

    (void)state;
    alias_db_init(&db);
    for (size_t i = 0; i < ARRAY_LEN(defs); i++)
        assert_int_equal(alias_add(&db, defs[i][0], defs[i][1], NULL), 0);
    /* a chain deeper than the limit */
    for (int i = 0; i < ALIAS_DEPTH_MAX + 5; i++) {
        snprintf(key, sizeof key, "deep%d", i);
        snprintf(val, sizeof val, "deep%d", i + 1);
        assert_int_equal(alias_add(&db, key, val, NULL), 0);
    }
    /* 10 levels of 10 references each: 10^10 look-ups unless bounded */
    for (int i = 0; i < 10; i++) {
        struct buf b = BUF_INIT;
        snprintf(key, sizeof key, "wide%d", i);
        for (int k = 0; k < 10; k++)
            assert_int_equal(buf_printf(&b, "%swide%d", k ? ", " : "", i + 1), 0);
        assert_int_equal(alias_add(&db, key, buf_cstr(&b), NULL), 0);
        buf_free(&b);
    }
    assert_int_equal(alias_add(&db, "wide10", "w@example.org", NULL), 0);

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct msg_addrlist l;
        struct err e;
        err_clear(&e);
        double t0 = tu_now();
        int rc = alias_expand(&db, cases[i].text, &l, &e);
        assert_true(tu_now() - t0 < 5.0);
        if (cases[i].code == ERR_OK) {
            if (rc != 0)
                fail_msg("case %zu \"%s\": %s", i, cases[i].text, e.text);
            assert_list(&l, cases[i].want);
        } else {
            if (rc != -1)
                fail_msg("case %zu \"%s\" expanded", i, cases[i].text);
            assert_int_equal(e.code, cases[i].code);
            if (!strstr(e.text, cases[i].errpart))
                fail_msg("case %zu: \"%s\" lacks \"%s\"", i, e.text, cases[i].errpart);
            assert_int_equal(l.n, 0);
        }
        alias_addrlist_free(&l);
    }
    alias_db_free(&db);
}

/* ---- completion ------------------------------------------------------------------------ */

static void test_fold(void **state)
{
    static const struct {
        const char *s, *prefix;
        bool match;
    } cases[] = {
        {"John", "jo", true},
        {"john", "JOHN", true},
        {"john", "johnny", false},
        {"anything", "", true},
        {"ÉCOLE", "éc", true},
        {"Ångström", "åNGS", true},
        {"ŁÓDŹ", "łódź", true},
        {"ΣΊΣΥΦΟΣ", "σίσυ", true},
        {"Ольга", "ОЛЬ", true},
        {"ЁЖ", "ёж", true},
        {"straße", "STRASSE", false},
        {"é", "e", false},
        {"\xff\xfe", "\xff", true},
        {"\xc3", "\xc3\xa9", false},
        {"\xc3\xa9", "\xc3", false},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (alias_prefix_match(cases[i].s, cases[i].prefix) != cases[i].match)
            fail_msg("case %zu: \"%s\" / \"%s\"", i, cases[i].s, cases[i].prefix);
    assert_int_equal(alias_fold_cmp("ÉCOLE", "école"), 0);
    assert_true(alias_fold_cmp("abc", "ABD") < 0);
    assert_true(alias_fold_cmp("abc", "AB") > 0);
    assert_true(alias_fold_cmp("Zeta", "ärger") < 0);
}

static void test_complete(void **state)
{
    static const char *const defs[][2] = {
        {"jdoe", "John Doe <john@example.org>"},
        {"jane", "Jane Roe <jane@example.org>"},
        {"Ángel", "Ángel Ruiz <angel@example.es>"},
        {"team", "jdoe, jane, extra@example.net"},
        {"olga", "Ольга Петрова <olga@example.ru>"},
        {"bob", "Robert Johnson <bob@example.com>"},
        {"bobby", "\"Bob, Jr.\" <bob@example.com>"},
    };
    const struct {
        const char *prefix;
        const char *const *inserts;   /* in order */
        const char *common;
    } cases[] = {
        {"j", L("jane", "jdoe", "\"Bob, Jr.\" <bob@example.com>",
                "Robert Johnson <bob@example.com>"), ""},
        {"ja", L("jane"), "jane"},
        {"á", L("Ángel"), "Ángel"},
        {"ОЛЬ", L("Ольга Петрова <olga@example.ru>"), "Ольга Петрова <olga@example.ru>"},
        {"петр", L("Ольга Петрова <olga@example.ru>"), "Ольга Петрова <olga@example.ru>"},
        {"bob", L("bob", "bobby"), "bob"},
        {"bob@", L("\"Bob, Jr.\" <bob@example.com>", "Robert Johnson <bob@example.com>"), ""},
        {"EXTRA", L("extra@example.net"), "extra@example.net"},
        {"jr", L("\"Bob, Jr.\" <bob@example.com>"), "\"Bob, Jr.\" <bob@example.com>"},
        {"zzz", NONE, ""},
        {"", L("bob", "bobby", "jane", "jdoe", "olga", "team", "Ángel"), ""},
    };
    struct alias_db db;

    (void)state;
    alias_db_init(&db);
    for (size_t i = 0; i < ARRAY_LEN(defs); i++)
        assert_int_equal(alias_add(&db, defs[i][0], defs[i][1], NULL), 0);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct alias_candidates c;
        size_t n = 0;
        alias_complete(&db, cases[i].prefix, &c);
        while (cases[i].inserts[n])
            n++;
        if (c.n != n)
            fail_msg("case %zu \"%s\": %zu candidates, want %zu", i, cases[i].prefix, c.n, n);
        for (size_t k = 0; k < n; k++)
            assert_string_equal(c.v[k].insert, cases[i].inserts[k]);
        char *common = alias_common_prefix(&c);
        assert_string_equal(common, cases[i].common);
        free(common);
        alias_candidates_free(&c);
    }

    /* what a candidate carries */
    struct alias_candidates c;
    alias_complete(&db, "TEA", &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.v[0].how, ALIAS_MATCH_KEY);
    assert_string_equal(c.v[0].key, "team");
    assert_null(c.v[0].name);
    assert_string_equal(c.v[0].addr, "jdoe, jane, extra@example.net");
    alias_candidates_free(&c);
    alias_complete(&db, "roe", &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.v[0].how, ALIAS_MATCH_NAME);
    assert_string_equal(c.v[0].key, "jane");
    assert_string_equal(c.v[0].name, "Jane Roe");
    assert_string_equal(c.v[0].addr, "jane@example.org");
    alias_candidates_free(&c);
    alias_complete(&db, "angel@", &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.v[0].how, ALIAS_MATCH_ADDR);
    alias_candidates_free(&c);
    alias_db_free(&db);
}

static void test_common_prefix(void **state)
{
    const struct {
        const char *const *inserts;
        const char *want;
    } cases[] = {
        {L("Johanna", "john", "JONES"), "Jo"},
        {L("Johanna", "john"), "Joh"},
        {L("same", "same"), "same"},
        {L("éa", "Éb"), "é"},
        {L("é", "è"), ""},                 /* share a first byte, not a character */
        {L("abc"), "abc"},
        {L("abc", ""), ""},
        {NONE, ""},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct alias_candidates c = {NULL, 0};
        size_t n = 0;
        while (cases[i].inserts[n])
            n++;
        c.v = n ? XNEWARRAY(struct alias_candidate, n) : NULL;
        for (size_t k = 0; k < n; k++) {
            memset(&c.v[k], 0, sizeof c.v[k]);
            c.v[k].key = xstrdup("k");
            c.v[k].addr = xstrdup("a");
            c.v[k].insert = xstrdup(cases[i].inserts[k]);
        }
        c.n = n;
        char *got = alias_common_prefix(&c);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: \"%s\", want \"%s\"", i, got, cases[i].want);
        free(got);
        alias_candidates_free(&c);
    }
}

/* ---- $query_command ------------------------------------------------------------------- */

static char *write_script(const char *dir, const char *name, const char *body)
{
    char *path = xasprintf("%s/%s", dir, name);
    char *text = xasprintf("#!/bin/sh\n%s", body);

    write_file(path, text, 0700);
    free(text);
    return path;
}

static void test_query_command_text(void **state)
{
    static const struct {
        const char *tmpl, *query, *want;
    } cases[] = {
        {"lookup %s", "jo", "lookup jo"},
        {"lookup '%s'", "jo", "lookup 'jo'"},
        {"lookup %s --x", "a b", "lookup 'a b' --x"},
        {"lookup", "a b", "lookup 'a b'"},
        {"echo %%s %s", "x", "echo %s x"},
        {"echo 100%", "x", "echo 100% x"},
        {"q %s", "it's", "q 'it'\\''s'"},
        {"q %s", "", "q ''"},
        {"q %s", "$(id)`id`;|&", "q '$(id)`id`;|&'"},
        {"q %s %s", "a", "q a a"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = alias_query_command(cases[i].tmpl, cases[i].query);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

static void test_query(void **state)
{
    const char *dir = *state;
    char *script = write_script(dir, "lookup",
        "printf 'Searching for %s ...\\n' \"$1\"\n"
        "printf 'john@example.org\\tJohn Doe\\tfriend\\tmore\\n'\n"
        "printf 'ann@example.org\\tAnn\\r\\n'\n"
        "printf 'bare@example.org\\n'\n"
        "printf '\\n'\n"
        "printf '\\tno address\\n'\n"
        "printf 'x@example.org\\t\\tother only\\n'\n"
        "printf 'nul\\000byte@example.org\\tNul\\n'\n"
        "printf 'last@example.org\\tLast'\n");
    char *tmpl = xasprintf("'%s' %%s", script);
    struct alias_query_results r;
    struct err e;

    err_clear(&e);
    if (alias_query(tmpl, "Jo", &r, &e) != 0)
        fail_msg("%s", e.text);
    assert_string_equal(r.header, "Searching for Jo ...");
    assert_int_equal(r.status, 0);
    static const struct {
        const char *addr, *name, *other;
    } want[] = {
        {"john@example.org", "John Doe", "friend\tmore"},
        {"ann@example.org", "Ann", NULL},
        {"bare@example.org", NULL, NULL},
        {"x@example.org", NULL, "other only"},
        {"last@example.org", "Last", NULL},
    };
    assert_int_equal(r.n, ARRAY_LEN(want));
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        assert_string_equal(r.v[i].addr, want[i].addr);
        assert_name(r.v[i].name, want[i].name);
        assert_name(r.v[i].other, want[i].other);
    }
    alias_query_results_free(&r);
    free(tmpl);

    /* without %s the query is appended */
    tmpl = xasprintf("'%s'", script);
    assert_int_equal(alias_query(tmpl, "Ann Smith", &r, NULL), 0);
    assert_string_equal(r.header, "Searching for Ann Smith ...");
    alias_query_results_free(&r);
    free(tmpl);
    free(script);

    /* the query never runs as shell code, and reaches the program unchanged */
    char *marker = xasprintf("%s/pwned", dir);
    char *hostile = xasprintf("$(touch %s)`touch %s`; touch %s; 'x' \"y\" \\ %%s\n2nd",
                              marker, marker, marker);
    script = write_script(dir, "echoq", "printf 'hdr\\n%s\\tq\\n' \"$1\"\n");
    tmpl = xasprintf("'%s' %%s", script);
    assert_int_equal(alias_query(tmpl, hostile, &r, NULL), 0);
    assert_int_equal(access(marker, F_OK), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(r.n, 2);       /* the newline in the query splits the line */
    char *first_line = xstrndup(hostile, (size_t)(strchr(hostile, '\n') - hostile));
    assert_string_equal(r.v[0].addr, first_line);
    assert_string_equal(r.v[1].addr, "2nd");
    alias_query_results_free(&r);
    free(first_line);
    free(tmpl);
    free(script);
    free(hostile);
    free(marker);

    /* exit status: an error only when nothing came back */
    script = write_script(dir, "nomatch", "printf 'No matches\\n'; exit 1\n");
    tmpl = xasprintf("'%s' %%s", script);
    err_clear(&e);
    assert_int_equal(alias_query(tmpl, "zz", &r, &e), -1);
    assert_int_equal(e.code, ERR_PROTO);
    assert_int_equal(r.n, 0);
    assert_null(r.header);
    alias_query_results_free(&r);
    free(tmpl);
    free(script);
    script = write_script(dir, "some", "printf 'h\\na@b\\tA\\n'; exit 1\n");
    tmpl = xasprintf("'%s' %%s", script);
    assert_int_equal(alias_query(tmpl, "a", &r, NULL), 0);
    assert_int_equal(r.status, 1);
    assert_int_equal(r.n, 1);
    alias_query_results_free(&r);
    free(tmpl);
    free(script);

    /* a hanging program is killed at the time limit */
    script = write_script(dir, "hang", "printf 'h\\n'; sleep 30\n");
    tmpl = xasprintf("'%s' %%s", script);
    err_clear(&e);
    double t0 = tu_now();
    assert_int_equal(alias_query_timeout(tmpl, "a", 300, &r, &e), -1);
    assert_true(tu_now() - t0 < 10.0);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(r.n, 0);
    free(tmpl);
    free(script);

    /* too much output */
    script = write_script(dir, "flood", "head -c 6000000 /dev/zero | tr '\\000' a\n");
    tmpl = xasprintf("'%s' %%s", script);
    err_clear(&e);
    assert_int_equal(alias_query(tmpl, "a", &r, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    free(tmpl);
    free(script);

    /* not configured */
    err_clear(&e);
    assert_int_equal(alias_query("", "a", &r, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    err_clear(&e);
    assert_int_equal(alias_query(NULL, "a", &r, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
}

/* ---- creating aliases ------------------------------------------------------------------ */

static void test_valid_key(void **state)
{
    static const struct {
        const char *key;
        bool ok;
    } cases[] = {
        {"jd", true}, {"john.doe", true}, {"a_b+c-d", true}, {"X9", true},
        {"", false}, {"-x", false}, {"a b", false}, {"a/b", false}, {"a,b", false},
        {"k\n", false}, {"a'b", false}, {"a\"b", false}, {"a$b", false}, {"a#b", false},
        {"a;b", false}, {"josé", false}, {"a@b", false},
    };
    static const struct {
        const char *addr, *key;
    } suggest[] = {
        {"john.doe@example.org", "john.doe"},
        {"-x@y", "_x"},
        {"josé@x", "jos_"},
        {"\"a b\"@x", "_a_b_"},
        {"noat", "noat"},
        {"@x", ""},
        {"", ""},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        if (alias_valid_key(cases[i].key) != cases[i].ok)
            fail_msg("case %zu \"%s\"", i, cases[i].key);
    char longkey[ALIAS_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[ALIAS_KEY_MAX + 1] = '\0';
    assert_false(alias_valid_key(longkey));
    longkey[ALIAS_KEY_MAX] = '\0';
    assert_true(alias_valid_key(longkey));
    for (size_t i = 0; i < ARRAY_LEN(suggest); i++) {
        char *got = alias_suggest_key(suggest[i].addr);
        assert_string_equal(got, suggest[i].key);
        assert_true(!*got || alias_valid_key(got));
        free(got);
    }
}

static void test_create(void **state)
{
    const char *dir = *state;
    char *path = xasprintf("%s/sub-aliases", dir);
    struct stat st;
    struct err e;
    char *text;

    /* created 0600, in the documented form */
    assert_int_equal(alias_create(path, "jd", "John Doe", "jd@example.org", NULL), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    text = read_file(path);
    assert_string_equal(text, "alias jd John Doe <jd@example.org>\n");
    free(text);

    /* existing keys, also in another case */
    err_clear(&e);
    assert_int_equal(alias_create(path, "jd", "Other", "o@example.org", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    err_clear(&e);
    assert_int_equal(alias_create(path, "JD", NULL, "o@example.org", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);

    /* hostile but acceptable names and addresses round-trip exactly */
    static const struct {
        const char *name, *addr, *read_name;
    } ok[] = {
        {"Doe, John", "doe@example.org", "Doe, John"},
        {"O'Brien \"Bob\"", "o'brien@example.org", "O'Brien \"Bob\""},
        {"Cash $HOME `id` $(id)", "we$ird#x@example.org", "Cash $HOME `id` $(id)"},
        {"#hash; semi", "semi;colon@example.org", "#hash; semi"},
        {"back\\slash", "back\\slash@example.org", "back\\slash"},
        {"  padded   name  ", "pad@example.org", "padded   name"},
        {"Ünïcødé Näme", "u@example.org", "Ünïcødé Näme"},
        {"(paren) <angle> [sq]", "p@example.org", "(paren) <angle> [sq]"},
        {"-group", "g@example.org", "-group"},
        {"alias x y@z", "a@example.org", "alias x y@z"},
        {NULL, "noname@example.org", NULL},
        {"", "empty@example.org", NULL},
        {"   ", "blank@example.org", NULL},
        {"Q", "\"q\"@example.org", "Q"},
        {"'single'", "'s'@example.org", "'single'"},
        {"~tilde", "~t@example.org", "~tilde"},
    };
    char key[16];
    size_t n_ok = 0;
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        snprintf(key, sizeof key, "k%zu", i);
        err_clear(&e);
        if (alias_create(path, key, ok[i].name, ok[i].addr, &e) != 0)
            fail_msg("case %zu: %s", i, e.text);
        n_ok++;
    }

    struct alias_db db;
    struct rc_diag diag;
    alias_db_init(&db);
    rc_diag_init(&diag);
    assert_int_equal(alias_load(&db, path, &diag, NULL), 0);
    if (diag.n)
        fail_msg("%s", diag.msgs[0]);
    assert_int_equal(db.n, n_ok + 1);
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        snprintf(key, sizeof key, "k%zu", i);
        const struct alias *a = alias_lookup(&db, key);
        assert_non_null(a);
        assert_int_equal(a->addrs.n, 1);
        assert_name(a->addrs.v[0].name, ok[i].read_name);
        assert_string_equal(a->addrs.v[0].addr, ok[i].addr);
        /* and expansion gives exactly that one address */
        struct msg_addrlist l;
        assert_int_equal(alias_expand(&db, key, &l, NULL), 0);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.v[0].addr, ok[i].addr);
        alias_addrlist_free(&l);
    }
    alias_db_free(&db);
    rc_diag_free(&diag);

    /* refused: the file is left as it was */
    char *before = read_file(path);
    static const struct {
        const char *key, *name, *addr;
    } bad[] = {
        {"has space", "N", "a@example.org"},
        {"", "N", "a@example.org"},
        {"-x", "N", "a@example.org"},
        {"a/b", "N", "a@example.org"},
        {"k\n", "N", "a@example.org"},
        {"nl1", "Evil\nalias pwn x@example.org", "a@example.org"},
        {"nl2", "Evil\r", "a@example.org"},
        {"nl3", "Tab\there", "a@example.org"},
        {"nl4", "N", "a@example.org\nalias pwn x@example.org"},
        {"nl5", "N", "a@example.org\r"},
        {"bad1", "N", ""},
        {"bad2", "N", "a b@example.org"},
        {"bad3", "N", "<a@example.org>"},
        {"bad4", "N", "a>b@example.org"},
        {"bad5", "\xff\xfe", "a@example.org"},
        {"bad6", "N", "a\"b@example.org"},
        {"bad8", "N", "\"quoted local\"@example.org"},
        {"bad7", "N", "a\x7f@example.org"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        err_clear(&e);
        if (alias_create(path, bad[i].key, bad[i].name, bad[i].addr, &e) != -1)
            fail_msg("bad case %zu accepted", i);
        assert_int_equal(e.code, ERR_INVAL);
    }
    char *after = read_file(path);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* a last line without newline gets one first */
    char *path2 = xasprintf("%s/nonl", dir);
    write_file(path2, "alias x x@example.org", 0644);
    assert_int_equal(alias_create(path2, "y", "Why", "y@example.org", NULL), 0);
    text = read_file(path2);
    assert_string_equal(text, "alias x x@example.org\nalias y Why <y@example.org>\n");
    free(text);
    assert_int_equal(stat(path2, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);   /* an existing file keeps its mode */

    /* a key defined in a sourced file counts as existing */
    char *path3 = xasprintf("%s/main", dir);
    write_file(path3, "source nonl\n", 0600);
    err_clear(&e);
    assert_int_equal(alias_create(path3, "y", NULL, "z@example.org", &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);

    /* a missing directory, a directory */
    char *path4 = xasprintf("%s/no/such/dir", dir);
    err_clear(&e);
    assert_int_equal(alias_create(path4, "k", NULL, "a@example.org", &e), -1);
    assert_int_equal(e.code, ERR_IO);
    err_clear(&e);
    assert_int_equal(alias_create(dir, "k", NULL, "a@example.org", &e), -1);
    assert_true(e.code == ERR_IO || e.code == ERR_INVAL);

    free(path4);
    free(path3);
    free(path2);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addresses),
        cmocka_unit_test(test_format_address),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_aliases, setup, teardown),
        cmocka_unit_test(test_table_growth),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_fold),
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_common_prefix),
        cmocka_unit_test(test_query_command_text),
        cmocka_unit_test_setup_teardown(test_query, setup, teardown),
        cmocka_unit_test(test_valid_key),
        cmocka_unit_test_setup_teardown(test_create, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
