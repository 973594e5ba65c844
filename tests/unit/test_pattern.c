/* Tests for mua/pattern: compile, evaluate, errors, lazy access. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pattern.h"

/* ------------------------------------------------------------------------ */
/* An in-memory message set seen through counting accessors                 */

struct taddr {
    const char *name;
    const char *addr;
};

#define MAXA 3

struct tmsg {
    const char *subject;
    struct taddr from[MAXA], to[MAXA], cc[MAXA], sender[MAXA];
    int64_t date, received;
    uint64_t size;
    unsigned flags;
    const char *msgid, *list_id, *x_label;
    const char *refs[MAXA];
    const char *headers, *body;
    bool collapsed;
};

enum acc {
    ACC_SUBJECT, ACC_ADDR, ACC_DATE, ACC_RECEIVED, ACC_SIZE, ACC_FLAGS,
    ACC_MSGID, ACC_REFS, ACC_LIST, ACC_LABEL, ACC_HEADERS, ACC_BODY,
    ACC_ME, ACC_COLLAPSED, ACC_N
};

struct tctx {
    const struct tmsg *msgs;
    size_t n;
    unsigned long calls[ACC_N];
    bool fail_body;
};

static const struct tmsg *msg_of(void *ctx, uint32_t msg)
{
    struct tctx *c = ctx;

    assert_true(msg < c->n);
    return &c->msgs[msg];
}

static const char *t_subject(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_SUBJECT]++;
    return msg_of(ctx, msg)->subject;
}

static void t_addresses(void *ctx, uint32_t msg, enum pattern_addr which,
                        pattern_addr_cb cb, void *cbctx)
{
    const struct tmsg *m = msg_of(ctx, msg);
    const struct taddr *list;
    size_t i;

    ((struct tctx *)ctx)->calls[ACC_ADDR]++;
    switch (which) {
    case PATTERN_ADDR_FROM: list = m->from; break;
    case PATTERN_ADDR_TO: list = m->to; break;
    case PATTERN_ADDR_CC: list = m->cc; break;
    case PATTERN_ADDR_SENDER: list = m->sender; break;
    default: fail(); return;
    }
    for (i = 0; i < MAXA && list[i].addr; i++)
        if (cb(cbctx, list[i].name, list[i].addr))
            return;
}

static int64_t t_date(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_DATE]++;
    return msg_of(ctx, msg)->date;
}

static int64_t t_received(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_RECEIVED]++;
    return msg_of(ctx, msg)->received;
}

static uint64_t t_size(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_SIZE]++;
    return msg_of(ctx, msg)->size;
}

static unsigned t_flags(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_FLAGS]++;
    return msg_of(ctx, msg)->flags;
}

static const char *t_msgid(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_MSGID]++;
    return msg_of(ctx, msg)->msgid;
}

static void t_refs(void *ctx, uint32_t msg, pattern_str_cb cb, void *cbctx)
{
    const struct tmsg *m = msg_of(ctx, msg);
    size_t i;

    ((struct tctx *)ctx)->calls[ACC_REFS]++;
    for (i = 0; i < MAXA && m->refs[i]; i++)
        if (cb(cbctx, m->refs[i]))
            return;
}

static const char *t_list(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_LIST]++;
    return msg_of(ctx, msg)->list_id;
}

static const char *t_label(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_LABEL]++;
    return msg_of(ctx, msg)->x_label;
}

static int t_headers(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    const struct tmsg *m = msg_of(ctx, msg);

    ((struct tctx *)ctx)->calls[ACC_HEADERS]++;
    assert_int_equal(out->len, 0);
    if (m->headers && buf_puts(out, m->headers) < 0)
        return err_set(e, ERR_LIMIT, "too large");
    return 0;
}

static int t_body(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    struct tctx *c = ctx;
    const struct tmsg *m = msg_of(ctx, msg);

    c->calls[ACC_BODY]++;
    assert_int_equal(out->len, 0);
    if (c->fail_body)
        return err_set(e, ERR_IO, "body unavailable");
    if (m->body && buf_puts(out, m->body) < 0)
        return err_set(e, ERR_LIMIT, "too large");
    return 0;
}

static bool t_is_me(void *ctx, const char *addr)
{
    ((struct tctx *)ctx)->calls[ACC_ME]++;
    return strcasecmp(addr, "me@example.com") == 0;
}

static bool t_collapsed(void *ctx, uint32_t msg)
{
    ((struct tctx *)ctx)->calls[ACC_COLLAPSED]++;
    return msg_of(ctx, msg)->collapsed;
}

static const struct pattern_msg_ops t_ops = {
    .subject = t_subject,
    .addresses = t_addresses,
    .date = t_date,
    .received = t_received,
    .size = t_size,
    .flags = t_flags,
    .message_id = t_msgid,
    .references = t_refs,
    .list_id = t_list,
    .x_label = t_label,
    .headers = t_headers,
    .body = t_body,
    .is_me = t_is_me,
    .collapsed = t_collapsed,
};

/* ------------------------------------------------------------------------ */
/* The fixture set: messages a..g; "now" is 2025-03-15 12:00:00 UTC         */

static int64_t ts(int y, int mo, int d, int h, int mi)
{
    struct tm t;

    memset(&t, 0, sizeof(t));
    t.tm_year = y - 1900;
    t.tm_mon = mo - 1;
    t.tm_mday = d;
    t.tm_hour = h;
    t.tm_min = mi;
    return (int64_t)timegm(&t);
}

static struct tmsg fixtures[7];
static int64_t now;

static void build_fixtures(void)
{
    struct tmsg *a = &fixtures[0], *b = &fixtures[1], *c = &fixtures[2];
    struct tmsg *d = &fixtures[3], *e = &fixtures[4], *f = &fixtures[5];
    struct tmsg *g = &fixtures[6];
    size_t i;

    memset(fixtures, 0, sizeof(fixtures));
    now = ts(2025, 3, 15, 12, 0);

    a->subject = "Foo bar";
    a->from[0] = (struct taddr){"Alice", "alice@example.org"};
    a->to[0] = (struct taddr){NULL, "bob@example.com"};
    a->date = ts(2025, 3, 15, 9, 0);
    a->size = 500;
    a->flags = PATTERN_F_NEW;
    a->msgid = "a1@example.org";
    a->headers = "From: Alice <alice@example.org>\nSubject: Foo bar\n"
                 "X-Mailer: mutt\n\nNot-A-Header: yes\n";
    a->body = "hello world\nsecond line\n";

    b->subject = "Re: foo";
    b->from[0] = (struct taddr){"Bob Builder", "bob@example.com"};
    b->to[0] = (struct taddr){NULL, "alice@example.org"};
    b->cc[0] = (struct taddr){NULL, "carol@example.net"};
    b->date = ts(2025, 3, 14, 12, 0);
    b->size = 2048;
    b->flags = PATTERN_F_READ | PATTERN_F_REPLIED;
    b->msgid = "b2@example.com";
    b->refs[0] = "a1@example.org";
    b->list_id = "dev.lists.example.org";
    b->headers = "From: Bob Builder <bob@example.com>\r\nSubject: Re:\r\n"
                 " foo\r\nX-Spam: no\r\n\r\n";
    b->body = "quoted text\r\n> hello\r\n";

    c->subject = "\xc3\x84rger im B\xc3\xbcro";             /* Ärger im Büro */
    c->from[0] = (struct taddr){NULL, "carol@example.net"};
    c->to[0] = (struct taddr){NULL, "team@lists.example.org"};
    c->cc[0] = (struct taddr){"Me", "me@example.com"};
    c->date = ts(2025, 3, 1, 10, 0);
    c->size = 1572864;
    c->flags = PATTERN_F_READ | PATTERN_F_FLAGGED;
    c->list_id = "team.lists.example.org";
    c->x_label = "work urgent";
    c->headers = "From: carol@example.net\nSubject: =?utf-8?q?=C3=84rger?=\n";
    c->body = "Gr\xc3\xbc\xc3\x9f" "e aus dem B\xc3\xbcro\n";    /* Grüße */

    d->subject = "Quarterly REPORT (draft)";
    d->from[0] = (struct taddr){"dave", "dave@example.com"};
    d->sender[0] = (struct taddr){NULL, "list-bounce@lists.example.org"};
    d->to[0] = (struct taddr){NULL, "me@example.com"};
    d->date = ts(2025, 1, 1, 10, 0);
    d->size = 10240;
    d->flags = PATTERN_F_OLD | PATTERN_F_TAGGED;
    d->collapsed = true;
    d->headers = "From: dave <dave@example.com>\n";
    d->body = "quarterly numbers\n";

    e->subject = "foo|bar literal";
    e->from[0] = (struct taddr){"Alice", "alice@work.example"};
    e->to[0] = (struct taddr){NULL, "bob@example.com"};
    e->date = ts(2024, 12, 31, 23, 0);
    e->size = 100;
    e->flags = PATTERN_F_READ | PATTERN_F_DELETED | PATTERN_F_TRASHED;
    e->list_id = "";

    f->from[0] = (struct taddr){"eve", "eve@evil.example"};
    f->date = 0;
    f->size = 1048576;
    f->flags = PATTERN_F_NEW | PATTERN_F_OLD;   /* OLD wins: ~O */

    g->subject = "foo bar baz";
    g->from[0] = (struct taddr){"Frank", "frank@example.org"};
    g->to[0] = (struct taddr){"Ann", "ann@example.org"};
    g->to[1] = (struct taddr){"Me Myself", "ME@Example.COM"};
    g->date = ts(2024, 3, 15, 12, 0);
    g->size = 1023;
    g->flags = PATTERN_F_READ | PATTERN_F_DRAFT;
    g->refs[0] = "other@example.org";
    g->body = "";

    for (i = 0; i < 7; i++)
        fixtures[i].received = fixtures[i].date + 3600;
    d->received = ts(2025, 3, 10, 8, 0);
    f->received = 1000;
}

static int compile(const char *text, unsigned flags, struct pattern **p,
                   struct err *e)
{
    struct pattern_opts o;

    o.flags = flags;
    o.now = now;
    return pattern_compile_opts(text, &o, p, e);
}

/* Letters of the fixtures that match, e.g. "abeg". */
static void run_set(struct pattern *p, struct tctx *c, char *out)
{
    size_t i, k = 0;

    for (i = 0; i < c->n; i++) {
        struct pattern_msg m = {&t_ops, (uint32_t)i};

        if (pattern_match(p, &m, c))
            out[k++] = (char)('a' + i);
    }
    out[k] = '\0';
}

struct set_case {
    const char *pattern;
    const char *want;
};

static void check_sets(const struct set_case *cases, size_t n, unsigned flags)
{
    size_t i;
    int bad = 0;

    for (i = 0; i < n; i++) {
        struct tctx c = {fixtures, 7, {0}, false};
        struct pattern *p = NULL;
        struct err e;
        char got[16];

        if (compile(cases[i].pattern, flags, &p, &e) < 0) {
            print_error("[%s] does not compile: %s\n", cases[i].pattern,
                        e.text);
            bad++;
            continue;
        }
        run_set(p, &c, got);
        if (strcmp(got, cases[i].want) != 0) {
            print_error("[%s] matched \"%s\", want \"%s\"\n",
                        cases[i].pattern, got, cases[i].want);
            bad++;
        }
        pattern_free(p);
    }
    assert_int_equal(bad, 0);
}

#define CHECK_SETS(cases, flags) check_sets((cases), ARRAY_LEN(cases), (flags))

/* ------------------------------------------------------------------------ */
/* Operators                                                                */

static void flag_operators(void **state)
{
    static const struct set_case cases[] = {
        {"~A", "abcdefg"},
        {"~N", "a"},
        {"~O", "df"},
        {"~U", "adf"},
        {"~R", "bceg"},
        {"~F", "c"},
        {"~D", "e"},
        {"~T", "d"},
        {"~v", "d"},
        {"~l", "bc"},
        {"~p", "cdg"},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void string_operators(void **state)
{
    static const struct set_case cases[] = {
        {"~s foo", "abeg"},
        {"~s report", "d"},
        {"!~s .", "f"},               /* no subject never matches */
        {"~i ^a1@", "a"},
        {"~i example", "ab"},
        {"~x a1@example", "b"},
        {"~x other", "g"},
        {"~y urgent", "c"},
        {"~y URGENT", ""},
        {"~f alice", "ae"},
        {"~f Alice", "ae"},           /* display name, case-sensitive */
        {"~f ALICE", ""},
        {"~f alice@example", "a"},
        {"~f Builder", "b"},
        {"~t alice", "b"},
        {"~c carol", "b"},
        {"~C me@example", "cdg"},
        {"~e bounce", "d"},
        {"~L carol", "bc"},
        {"~L team", "c"},
        {"~L bounce", "d"},
        {"~h x-mailer:", "a"},
        {"~h '^Subject: Re: foo$'", "b"},   /* unfolded */
        {"~h not-a-header", ""},            /* after the blank line */
        {"~b hello", "ab"},
        {"~b '^> hello$'", "b"},            /* CRLF line */
        {"~b '^second line$'", "a"},
        {"~B mutt", "a"},
        {"~B gr\xc3\xbc\xc3\x9f" "e", "c"},
        {"~B 'spam: no'", "b"},
        {"~B 'x-spam|numbers'", "bd"},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void regex_substring_and_case(void **state)
{
    static const struct set_case cases[] = {
        /* smart case */
        {"~s Foo", "a"},
        {"=s foo", "abeg"},
        {"=s Foo", "a"},
        {"~s \xc3\xa4rger", "c"},             /* ärger */
        {"~s \xc3\x84RGER", ""},              /* ÄRGER: case-sensitive */
        {"=s \xc3\xa4rger", "c"},
        {"=s b\xc3\xbcro", "c"},              /* büro */
        {"=s B\xc3\x9cRO", ""},               /* BÜRO */
        {"~s b\xc3\x9cro", ""},               /* bÜro */
        {"~s 'r\\Bep'", "d"},                 /* \B is an escape, not upper */
        /* regex vs substring */
        {"~s ^foo", "aeg"},
        {"=s ^foo", ""},
        {"~s 'report|\xc3\xa4rger'", "cd"},
        {"=s 'foo|bar'", "e"},
        {"=s foo\\|bar", "e"},
        {"~f 'e.e@'", "f"},
        {"=f 'e.e@'", ""},
        {"=f example.org", "ag"},
        {"~s \\(draft\\)", "d"},
        {"=s (draft)", "d"},
        {"~s re(ply|:)", "b"},               /* parentheses inside an arg */
        /* quotes and escapes */
        {"~s \"bar baz\"", "g"},
        {"~s 'bar baz'", "g"},
        {"~s bar\\ baz", "g"},
        {"~s \"Re: \"foo", "b"},
        {"=s 'bar\\ baz'", ""},              /* '...' keeps the backslash */
        {"~s \"a\\\"b\"", ""},
        {"~sfoo", "abeg"},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void precedence_and_grouping(void **state)
{
    static const struct set_case cases[] = {
        {"!~F ~N | ~s report", "ad"},
        {"!~F ~U | ~s \xc3\xa4rger", "acdf"},
        {"~U | ~F ~R", "acdf"},
        {"(~U | ~F) ~R", "c"},
        {"!(~U | ~F)", "beg"},
        {"!!~F", "c"},
        {"! ~F", "abdefg"},
        {"~s foo ~f alice | ~T", "ade"},
        {"~s foo (~f alice | ~T)", "ae"},
        {"((~F))", "c"},
        {"~F~R", "c"},
        {"(~s foo)", "abeg"},
        {"~N|~T|~D", "ade"},
        {"~s foo !(~R | ~N)", ""},
        {"~s foo !(~R ~N)", "abeg"},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void date_ranges(void **state)
{
    static const struct set_case cases[] = {
        /* absolute */
        {"~d 15/03/2025", "a"},
        {"~d 15", "a"},                  /* this month and year */
        {"~d 14/3", "b"},
        {"~d 14/3/2025-15/3/2025", "ab"},
        {"~d 1/3/2025-", "abc"},
        {"~d -31/12/2024", "efg"},
        {"~d 1/1/25-31/1/25", "d"},
        {"~d 01/01/2025*1d", "de"},
        {"~d 2/1/2025-1d", "d"},
        {"~d 31/12/2024+1d", "de"},
        {"~d 15/3/2024*1w", "g"},
        {"~d 1/1/1970", "f"},
        {"~d 31/12/2024+1d-14/3/2025", "bcde"},
        /* relative to now */
        {"~d <1d", "ab"},
        {"~d<1d", "ab"},
        {"~d >1d", "cdefg"},
        {"~d <2w", "ab"},
        {"~d <3w", "abc"},
        {"~d =1d", "b"},
        {"~d =2w", "c"},
        {"~d =1y", "g"},
        {"~d >1y", "f"},
        {"~d <1m", "abc"},
        {"~d <4H", "a"},
        {"~d =3H", "a"},
        {"~d =180M", "a"},
        {"~d =10800S", "a"},
        /* received */
        {"~r 10/3/2025", "d"},
        {"~r 15/3/2025", "a"},
        {"~r <1d", "ab"},
        {"~r 1/1/1970", "f"},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void size_ranges(void **state)
{
    static const struct set_case cases[] = {
        {"~z <1K", "aeg"},
        {"~z >1M", "c"},
        {"~z >1m", "c"},
        {"~z 1M", "f"},
        {"~z 1K-10K", "bd"},
        {"~z -500", "ae"},
        {"~z 2k-", "bcdf"},
        {"~z 1023", "g"},
        {"~z <0", ""},
        {"~z >0", "abcdefg"},
        {"~z 0-", "abcdefg"},
        {"~z 1G-", ""},
    };

    (void)state;
    CHECK_SETS(cases, 0);
}

static void simple_search(void **state)
{
    static const struct set_case cases[] = {
        {"alice", "ae"},
        {"  foo bar  ", "ag"},
        {"Bob", "b"},                 /* From's display name, smart case */
        {"REPORT", "d"},
        {"~s foo", "abeg"},           /* has an operator: not simple */
        {"!~F ~N", "a"},
    };
    struct pattern *p = NULL;
    struct err e;

    (void)state;
    CHECK_SETS(cases, PATTERN_SIMPLE);
    /* without the flag a bare word is an error */
    assert_int_equal(compile("alice", 0, &p, &e), -1);
    assert_null(p);
    assert_string_equal(e.text, "expected a pattern operator such as ~s at 1");
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

struct err_case {
    const char *pattern;
    const char *text;     /* exact, or a prefix when ending in '*' */
};

static void compile_errors(void **state)
{
    static const struct err_case cases[] = {
        {"", "empty pattern"},
        {"   ", "empty pattern"},
        {"(~F", "unbalanced '(' at 1"},
        {"~F (~N | ~U", "unbalanced '(' at 4"},
        {"((~F) ~N", "unbalanced '(' at 1"},
        {"~F)", "unbalanced ')' at 3"},
        {"(~F))", "unbalanced ')' at 5"},
        {")", "unbalanced ')' at 1"},
        {"  ) ~F", "unbalanced ')' at 3"},
        {"()", "empty parentheses at 1"},
        {"~Q", "~Q: unknown operator at 1"},
        {"~N ~Q", "~Q: unknown operator at 4"},
        {"~s \xc3\x84 ~Q", "~Q: unknown operator at 6"},   /* characters */
        {"~", "'~' without an operator letter at 1"},
        {"~F ~ ~N", "'~' without an operator letter at 4"},
        {"~s", "~s: missing argument at 3"},
        {"(~s)", "~s: missing argument at 4"},
        {"~f | ~F", "~f: missing argument at 4"},
        {"~s \"\"", "~s: empty argument at 4"},
        {"~s (", "~s: bad regex at 4: *"},
        {"~s 'a[b'", "~s: bad regex at 4: *"},
        {"~s ok ~f 'x{2,1}'", "~f: bad regex at 10: *"},
        {"~s 'abc", "unterminated quote at 4"},
        {"~s x\"abc", "unterminated quote at 5"},
        {"~s abc\\", "trailing backslash at 7"},
        {"| ~F", "'|' without a left operand at 1"},
        {"~F |", "missing operand after '|' at 4"},
        {"~F | | ~N", "missing operand after '|' at 4"},
        {"(~F |)", "missing operand after '|' at 5"},
        {"!", "missing operand after '!' at 1"},
        {"~F !", "missing operand after '!' at 4"},
        {"~F !)", "missing operand after '!' at 4"},
        {"=F", "=F: no substring form at 1"},
        {"=d 1/1", "=d: no substring form at 1"},
        {"%f x", "%f: address groups are not supported at 1"},
        {"~s foo|bar", "expected a pattern operator such as ~s at 8"},
        {"~F foo", "expected a pattern operator such as ~s at 4"},
        {"~d x", "~d: bad date range at 4"},
        {"~d -", "~d: bad date range at 4"},
        {"~d 32/1/2025", "~d: invalid day at 4"},
        {"~d 29/2/2025", "~d: invalid day at 4"},
        {"~d 1/13/2025", "~d: invalid month at 6"},
        {"~d 1/1/202", "~d: bad year at 8"},
        {"~d 1/1/1800", "~d: bad year at 8"},
        {"~d 123/1", "~d: bad day at 4"},
        {"~d 1/", "~d: expected a month at 6"},
        {"~d 1/1/2025-x", "~d: expected a day at 13"},
        {"~d 1/1/2025x", "~d: bad date range at 12"},
        {"~d 1/1/2025*2", "~d: expected a unit (y m w d H M S) at 14"},
        {"~d 1/1/2025+w", "~d: expected a number at 13"},
        {"~d <3x", "~d: expected a unit (y m w d H M S) at 6"},
        {"~d <", "~d: expected a number at 5"},
        {"~d <1d2", "~d: bad date range at 7"},
        {"~d <999999d", "~d: number too large at 5"},
        {"~d 2/1/2025-1/1/2025", "~d: range ends before it starts at 4"},
        {"~r \"1/1/2025 - 2/1/2025\"", "~r: bad date range at 13"},
        {"~z x", "~z: bad size range at 4"},
        {"~z 1K-x", "~z: expected a number at 7"},
        {"~z 5-1", "~z: range ends before it starts at 4"},
        {"~z 1T", "~z: bad size range at 5"},
        {"~z <", "~z: expected a number at 5"},
        {"~z 99999999999999999999", "~z: number too large at 4"},
        {"~z 99999999999G", "~z: number too large at 4"},
        {"~z -", "~z: bad size range at 4"},
    };
    static void *sentinel;
    size_t i;
    int bad = 0;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct pattern *p = (struct pattern *)&sentinel;   /* must be reset */
        struct err e;
        const char *want = cases[i].text;
        size_t wl = strlen(want);
        bool ok;

        if (compile(cases[i].pattern, 0, &p, &e) == 0) {
            print_error("[%s] compiled, want \"%s\"\n", cases[i].pattern,
                        want);
            pattern_free(p);
            bad++;
            continue;
        }
        if (wl > 0 && want[wl - 1] == '*')
            ok = strncmp(e.text, want, wl - 1) == 0 && strlen(e.text) > wl;
        else
            ok = strcmp(e.text, want) == 0;
        if (!ok || p != NULL || e.code != ERR_PARSE) {
            print_error("[%s] error \"%s\" (code %d), want \"%s\"\n",
                        cases[i].pattern, e.text, (int)e.code, want);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* Compile text in a child with CPU and (outside ASan, which reserves a huge
 * address space) memory limits: 0 if it failed with an error starting with
 * want (or compiled, for want == NULL), else 1; killed by a limit: the
 * signal's number + 100. */
static int compile_limited(const char *text, const char *want)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit cpu = {10, 10};
        struct pattern *p = NULL;
        struct err e;
        int rc;

        setrlimit(RLIMIT_CPU, &cpu);
#ifndef UNDER_ASAN
        {
            struct rlimit as = {1u << 30, 1u << 30};
            setrlimit(RLIMIT_AS, &as);
        }
#endif
        rc = compile(text, 0, &p, &e);
        pattern_free(p);
        if (want == NULL)
            _exit(rc == 0 ? 0 : 1);
        _exit(rc < 0 && e.code == ERR_PARSE && strncmp(e.text, want, strlen(want)) == 0
                  ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status))
        return 100 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* glibc's regcomp takes gigabytes for large or stacked repetitions (found
 * by fuzzing: "~i ^a1+++...+@" ran out of memory); such regexes are refused
 * before regcomp, ordinary repetitions still compile. */
static void regex_blowup(void **state)
{
    static const struct err_case cases[] = {
        {"~i ^a1++++++++++++++++++++++++++++++@", "~i: regex too complex at 4"},
        {"~s a{1,32767}", "~s: regex too complex at 4"},
        {"~s a*+*+*+*+*+*+*+*+*+*+*+*+*+*+*+*+", "~s: regex too complex at 4"},
        {"~b '((a{1,1000}){1,1000}){1,1000}'", "~b: regex too complex at 4"},
        {"~N ~s a{0,40}{0,40}{0,40}", "~s: regex too complex at 7"},
        {"~h 'x[]{]{1000}{1000}'", "~h: regex too complex at 4"},
        /* compile */
        {"~s a{1,100}", NULL},
        {"~s '(re|fwd):+ *x?'", NULL},
        {"~s [[:alpha:]]{2,5}x+", NULL},
        {"~s '^\\[[^]]*\\]{1,3}'", NULL},
        {"~s a{,3}b{2,}c{4}", NULL},
        {"~s '(a|b|c)*(d+|e?){1,9}'", NULL},
        {"=s a{1,32767}", NULL},         /* a substring, not a regex */
    };
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int r = compile_limited(cases[i].pattern, cases[i].text);
        if (r != 0) {
            print_error("[%s] result %d, want %s\n", cases[i].pattern, r,
                        cases[i].text ? cases[i].text : "success");
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void nesting_limit(void **state)
{
    char text[2 * (PATTERN_MAX_DEPTH + 10) + 8];
    struct pattern *p = NULL;
    struct err e;
    size_t i, k = 0;

    (void)state;
    /* at the limit: fine */
    for (i = 0; i < PATTERN_MAX_DEPTH; i++)
        text[k++] = '(';
    memcpy(text + k, "~F", 2);
    k += 2;
    for (i = 0; i < PATTERN_MAX_DEPTH; i++)
        text[k++] = ')';
    text[k] = '\0';
    assert_int_equal(compile(text, 0, &p, &e), 0);
    {
        struct tctx c = {fixtures, 7, {0}, false};
        char got[16];

        run_set(p, &c, got);
        assert_string_equal(got, "c");
    }
    pattern_free(p);

    /* one deeper: a limit error pointing at the innermost '(' */
    k = 0;
    for (i = 0; i <= PATTERN_MAX_DEPTH; i++)
        text[k++] = '(';
    text[k++] = '~';
    text[k++] = 'F';
    text[k] = '\0';
    assert_int_equal(compile(text, 0, &p, &e), -1);
    assert_null(p);
    assert_int_equal(e.code, ERR_LIMIT);
    {
        char want[64];

        snprintf(want, sizeof(want), "parentheses nested too deep at %d",
                 PATTERN_MAX_DEPTH + 1);
        assert_string_equal(e.text, want);
    }

    /* a long flat chain is no problem (no recursion per term) */
    {
        size_t n = 5000, len = n * 5 + 1;
        char *big = malloc(len);

        assert_non_null(big);
        for (i = 0; i < n; i++)
            memcpy(big + i * 5, i % 2 ? "!~F |" : "!!~R ", 5);
        memcpy(big + (n - 1) * 5, "~T   ", 5);
        big[len - 1] = '\0';
        assert_int_equal(compile(big, 0, &p, &e), 0);
        pattern_free(p);
        free(big);
    }
}

/* ------------------------------------------------------------------------ */
/* Lazy access and evaluation order                                         */

struct lazy_case {
    const char *pattern;
    const char *want;
    unsigned long headers, body;   /* expected calls over all 7 messages */
};

static void lazy_access(void **state)
{
    static const struct lazy_case cases[] = {
        /* cheap only: never headers or body */
        {"~s foo ~f alice ~N ~z <1K ~d <1d", "a", 0, 0},
        {"~A | ~b x", "abcdefg", 0, 0},
        {"~p ~C me | ~y urgent", "cdg", 0, 0},
        /* the cheap term decides first, wherever it is written */
        {"~F ~b hello", "", 0, 1},
        {"~b hello ~F", "", 0, 1},
        {"~b gr ~F", "c", 0, 1},
        {"~b hello | ~R", "abceg", 0, 3},       /* only the unread */
        {"!~b hello ~N", "", 0, 1},
        {"(~b a | ~h a) ~T", "d", 1, 0},     /* ~h before ~b */
        {"~h mutt ~b hello ~D", "", 1, 0},    /* e: headers before body */
        /* one fetch per message even for several terms */
        {"~b hello ~b world", "a", 0, 7},
        {"~b zzz | ~b hello | ~B quoted", "ab", 5, 7},
        /* ~B looks at the headers first and stops when they match */
        {"~B mutt", "a", 7, 6},
        {"~h x-spam ~B spam", "b", 7, 0},
        {"~h x-spam ~b spam", "", 7, 1},
    };
    size_t i;
    int bad = 0;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct tctx c = {fixtures, 7, {0}, false};
        struct pattern *p = NULL;
        struct err e;
        char got[16];

        assert_int_equal(compile(cases[i].pattern, 0, &p, &e), 0);
        run_set(p, &c, got);
        if (strcmp(got, cases[i].want) != 0 ||
            c.calls[ACC_HEADERS] != cases[i].headers ||
            c.calls[ACC_BODY] != cases[i].body) {
            print_error("[%s] matched \"%s\" with %lu header and %lu body "
                        "fetches, want \"%s\" %lu %lu\n",
                        cases[i].pattern, got, c.calls[ACC_HEADERS],
                        c.calls[ACC_BODY], cases[i].want, cases[i].headers,
                        cases[i].body);
            bad++;
        }
        pattern_free(p);
    }
    assert_int_equal(bad, 0);
}

static void needs_and_accessor_errors(void **state)
{
    static const struct { const char *pattern; unsigned needs; } needs[] = {
        {"~s x ~f y ~d <1d", 0},
        {"~h x", PATTERN_NEEDS_HEADERS},
        {"~F | ~b x", PATTERN_NEEDS_BODY},
        {"~B x", PATTERN_NEEDS_HEADERS | PATTERN_NEEDS_BODY},
        {"!(~N (~h a | ~b b))", PATTERN_NEEDS_HEADERS | PATTERN_NEEDS_BODY},
    };
    struct tctx c = {fixtures, 7, {0}, true};
    struct pattern *p = NULL;
    struct pattern_msg mc = {&t_ops, 2}, ma = {&t_ops, 0};
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(needs); i++) {
        assert_int_equal(compile(needs[i].pattern, 0, &p, &e), 0);
        assert_int_equal(pattern_needs(p), needs[i].needs);
        pattern_free(p);
    }

    /* a failing body accessor is an error value, and "no match" for
     * pattern_match, unless a cheaper term already decided */
    assert_int_equal(compile("~F | ~b x", 0, &p, &e), 0);
    assert_int_equal(pattern_eval(p, &mc, &c, &e), 1);         /* c: flagged */
    assert_int_equal(c.calls[ACC_BODY], 0);
    assert_int_equal(pattern_eval(p, &ma, &c, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_string_equal(e.text, "body unavailable");
    assert_false(pattern_match(p, &ma, &c));
    pattern_free(p);

    assert_int_equal(compile("!~b x", 0, &p, &e), 0);
    assert_int_equal(pattern_eval(p, &ma, &c, &e), -1);      /* not "true" */
    assert_false(pattern_match(p, &ma, &c));
    pattern_free(p);
}

/* Only flags are known: every other field is absent. */
static unsigned only_flags(void *ctx, uint32_t msg)
{
    (void)ctx;
    return msg == 0 ? PATTERN_F_FLAGGED : 0;
}

static void missing_accessors(void **state)
{
    static const struct pattern_msg_ops ops = {.flags = only_flags};
    static const struct set_case cases[] = {
        {"~F", "a"},
        {"~s .", ""},
        {"!~s .", "ab"},
        {"~f x | ~b x | ~h x | ~B x | ~x x | ~i x | ~y x", ""},
        {"~p | ~v | ~l", ""},
        {"~d 1/1/1970", "ab"},         /* date 0 */
        {"~z 0", "ab"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        struct pattern *p = NULL;
        struct err e;
        char got[4];
        size_t k = 0;
        uint32_t m;

        assert_int_equal(compile(cases[i].pattern, 0, &p, &e), 0);
        for (m = 0; m < 2; m++) {
            struct pattern_msg pm = {&ops, m};

            assert_int_not_equal(pattern_eval(p, &pm, NULL, &e), -1);
            if (pattern_match(p, &pm, NULL))
                got[k++] = (char)('a' + m);
        }
        got[k] = '\0';
        if (strcmp(got, cases[i].want) != 0)
            print_error("[%s] got \"%s\"\n", cases[i].pattern, got);
        assert_string_equal(got, cases[i].want);
        pattern_free(p);
    }
}

static void default_now(void **state)
{
    struct pattern *p = NULL;
    struct err e;
    struct tmsg m;
    struct tctx c = {&m, 1, {0}, false};
    struct pattern_msg pm = {&t_ops, 0};

    (void)state;
    memset(&m, 0, sizeof(m));
    m.date = (int64_t)time(NULL) - 3600;
    assert_int_equal(pattern_compile("~d <1d", 0, &p, &e), 0);
    assert_true(pattern_match(p, &pm, &c));
    pattern_free(p);
    assert_int_equal(pattern_compile("~d >1d", 0, &p, &e), 0);
    assert_false(pattern_match(p, &pm, &c));
    pattern_free(p);
    pattern_free(NULL);
}

/* ------------------------------------------------------------------------ */
/* 100k messages                                                            */

#define BIG_N 100000u

struct big {
    char subject[64];
    char from[64];
};

static const char *big_subject(void *ctx, uint32_t msg)
{
    struct big *b = ctx;

    snprintf(b->subject, sizeof(b->subject), "%s report %u",
             msg % 5 == 0 ? "foo" : "weekly", msg);
    return b->subject;
}

static void big_addresses(void *ctx, uint32_t msg, enum pattern_addr which,
                          pattern_addr_cb cb, void *cbctx)
{
    struct big *b = ctx;

    if (which != PATTERN_ADDR_FROM)
        return;
    snprintf(b->from, sizeof(b->from), "%s%u@example.org",
             msg % 7 == 0 ? "alice" : "user", msg);
    cb(cbctx, msg % 2 ? "Some Body" : NULL, b->from);
}

static void hundred_thousand(void **state)
{
    static const struct pattern_msg_ops ops = {
        .subject = big_subject,
        .addresses = big_addresses,
    };
    struct big b;
    struct pattern *p = NULL;
    struct err e;
    struct timespec t0, t1;
    unsigned matched = 0, want = 0;
    uint32_t i;

    (void)state;
    assert_int_equal(compile("~f alice ~s foo", 0, &p, &e), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < BIG_N; i++) {
        struct pattern_msg m = {&ops, i};

        if (pattern_match(p, &m, &b))
            matched++;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (i = 0; i < BIG_N; i++)
        if (i % 35 == 0)
            want++;
    assert_int_equal(matched, want);
    printf("# ~f alice ~s foo over %u messages: %u matches in %.1f ms\n",
           BIG_N, matched,
           (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    pattern_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flag_operators),
        cmocka_unit_test(string_operators),
        cmocka_unit_test(regex_substring_and_case),
        cmocka_unit_test(precedence_and_grouping),
        cmocka_unit_test(date_ranges),
        cmocka_unit_test(size_ranges),
        cmocka_unit_test(simple_search),
        cmocka_unit_test(compile_errors),
        cmocka_unit_test(nesting_limit),
        cmocka_unit_test(regex_blowup),
        cmocka_unit_test(lazy_access),
        cmocka_unit_test(needs_and_accessor_errors),
        cmocka_unit_test(missing_accessors),
        cmocka_unit_test(default_now),
        cmocka_unit_test(hundred_thousand),
    };

    /* Dates in the fixtures are UTC; patterns use local time. */
    if (setenv("TZ", "UTC", 1) != 0)
        return 1;
    tzset();
    if (setlocale(LC_ALL, "C.UTF-8") == NULL) {
        fprintf(stderr, "C.UTF-8 locale missing\n");
        return 1;
    }
    build_fixtures();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
