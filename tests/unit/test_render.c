/* Unit tests for mua/html (built-in HTML-to-text) and mua/render (pager lines). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "html.h"
#include "message.h"
#include "render.h"
#include "sanitize.h"

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process: what a bound on work is about, whatever the
 * load of the machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct message *parse(const char *raw)
{
    struct message *m = NULL;
    assert_int_equal(message_parse(raw, strlen(raw), NULL, &m, NULL), 0);
    assert_non_null(m);
    return m;
}

/* Line i as a new string. */
static char *line_dup(const struct render_out *out, size_t i)
{
    assert_true(i < out->n_lines);
    return xmemdup0(render_line_text(out, i), out->lines[i].len);
}

static void assert_line(const struct render_out *out, size_t i, enum render_role role,
                        const char *want)
{
    char *got = line_dup(out, i);
    if (strcmp(got, want) != 0 || out->lines[i].role != role)
        fail_msg("line %zu: got role %d \"%s\", want role %d \"%s\"", i, out->lines[i].role,
                 got, (int)role, want);
    free(got);
}

/* Index of the first line equal to want, or -1. */
static long find_line(const struct render_out *out, const char *want)
{
    for (size_t i = 0; i < out->n_lines; i++) {
        if (out->lines[i].len == strlen(want) &&
            memcmp(render_line_text(out, i), want, out->lines[i].len) == 0)
            return (long)i;
    }
    return -1;
}

/* Index of the first line containing needle, or -1. */
static long find_containing(const struct render_out *out, const char *needle)
{
    for (size_t i = 0; i < out->n_lines; i++) {
        char *s = line_dup(out, i);
        bool hit = strstr(s, needle) != NULL;
        free(s);
        if (hit)
            return (long)i;
    }
    return -1;
}

/* Index of the first piece of the first logical line (wrapped pieces
 * joined, break spaces included) containing needle, or -1. */
static long find_logical(const struct render_out *out, const char *needle)
{
    for (size_t i = 0; i < out->n_lines;) {
        size_t j = i + 1, a = out->lines[i].off, b;
        while (j < out->n_lines && (out->lines[j].flags & RENDER_LINE_CONT))
            j++;
        b = out->lines[j - 1].off + out->lines[j - 1].len;
        if (memmem(buf_cstr(&out->text) + a, b - a, needle, strlen(needle)))
            return (long)i;
        i = j;
    }
    return -1;
}

/* No byte of the arena is a control other than TAB (there are no TABs
 * either: they are expanded) and no C1 control is encoded. */
static void assert_terminal_safe(const struct render_out *out)
{
    const unsigned char *t = (const unsigned char *)buf_cstr(&out->text);
    for (size_t i = 0; i < out->text.len; i++) {
        assert_false(t[i] < 0x20 || t[i] == 0x7f);
        if (t[i] == 0xc2 && i + 1 < out->text.len)
            assert_false(t[i + 1] >= 0x80 && t[i + 1] <= 0x9f);
    }
}

static bool valid_html_output(const struct buf *b)
{
    const char *s = buf_cstr(b);
    for (size_t i = 0; i < b->len;) {
        uint32_t cp;
        int n = sanitize_utf8_next(s + i, b->len - i, &cp);
        if (n < 0 || (cp < 0x20 && cp != '\n' && cp != '\t') || cp == 0x7f ||
            (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += (size_t)n;
    }
    return true;
}

/* ---- html --------------------------------------------------------------- */

struct html_case {
    const char *in;
    const char *out;
};

static const struct html_case html_cases[] = {
    {"plain text", "plain text\n"},
    {"", ""},
    {"  lots   of\n\n  space\t here  ", "lots of space here\n"},
    {"<p>one</p><p>two</p>", "one\n\ntwo\n"},
    {"a<br>b<br><br>c", "a\nb\n\nc\n"},
    {"a<br><br><br><br><br>b", "a\n\n\nb\n"},                   /* at most two blank lines */
    {"<div>a</div><div>b</div>c", "a\nb\nc\n"},
    {"<h1>Title</h1>text", "Title\n\ntext\n"},
    {"x<hr>y", "x\n--------------------\ny\n"},
    /* entities */
    {"&amp; &lt;b&gt; &quot;q&quot; &apos;", "& <b> \"q\" '\n"},
    {"&copy;&reg;&trade;&euro;&hellip;", "\xc2\xa9\xc2\xae\xe2\x84\xa2\xe2\x82\xac\xe2\x80\xa6\n"},
    {"&ldquo;x&rdquo; &lsquo;y&rsquo; a&mdash;b&ndash;c",
     "\xe2\x80\x9cx\xe2\x80\x9d \xe2\x80\x98y\xe2\x80\x99 a\xe2\x80\x94" "b\xe2\x80\x93" "c\n"},
    {"&eacute;&Eacute;&szlig;&ntilde;&uuml;&yuml;&iexcl;", "\xc3\xa9\xc3\x89\xc3\x9f\xc3\xb1\xc3\xbc\xc3\xbf\xc2\xa1\n"},
    {"a&nbsp;&nbsp;b", "a  b\n"},                                 /* nbsp does not collapse */
    {"so&shy;ft", "soft\n"},
    {"&#65;&#x42;&#X43;&#100", "ABCd\n"},
    {"&#0;|&#x1b;|&#xD800;|&#x110000;|&#99999999999;", "\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd|\xef\xbf\xbd\n"},
    {"&#150;&#128;&#129;", "\xe2\x80\x93\xe2\x82\xac\xef\xbf\xbd\n"}, /* Windows-1252 reading */
    {"&unknown; & &amp &#; &#x;", "&unknown; & & &#; &#x;\n"},
    {"raw\x1b[31m", "raw\xef\xbf\xbd[31m\n"},
    {"bad \xff utf8", "bad \xef\xbf\xbd utf8\n"},
    /* skipped content */
    {"<head><title>T</title><style>p{color:red}</style></head><body>B</body>", "B\n"},
    {"a<script>if (a < b) document.write('</p>')</script>b", "ab\n"},
    {"a<SCRIPT type=x>x</ScRiPt >b", "ab\n"},
    {"a<!-- comment <p>x</p> -->b", "ab\n"},
    {"a<!---->b<!-->c", "abc\n"},
    {"a<![CDATA[ hidden ]]>b", "ab\n"},
    {"<!DOCTYPE html><?xml version=1?>x", "x\n"},
    {"<head>never closed", "never closed\n"},
    {"<head><meta charset=utf-8><p>body without a body tag", "body without a body tag\n"},
    /* nesting */
    {"<ul><li>one<li>two<ul><li>inner</ul></ul>after", "* one\n* two\n  * inner\nafter\n"},
    {"<blockquote>q1<blockquote>q2</blockquote>q1b</blockquote>out",
     "> q1\n> > q2\n> q1b\nout\n"},
    {"<blockquote><p>a</p><p>b</p></blockquote>", "> a\n>\n> b\n"},
    {"<p>x</p><blockquote><p>q</p></blockquote><p>y</p>", "x\n\n> q\n\ny\n"},
    {"<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>", "a b\nc d\n"},
    /* pre */
    {"<pre>\n  x  y\n\tz\n</pre>after   it", "  x  y\n\tz\nafter it\n"},
    {"<blockquote><pre>a\n b</pre></blockquote>", "> a\n>  b\n"},
    /* links and images */
    {"<a href=\"http://x.org/\">site</a>", "site <http://x.org/>\n"},
    {"<a href='http://x.org/'>http://x.org/</a>", "http://x.org/\n"},
    {"<a href=\"mailto:a@b.org\">a@b.org</a>", "a@b.org\n"},
    {"<a href=\"#top\">up</a>", "up\n"},
    {"<a href=\"http://x/?a=1&amp;b=2\">q</a>", "q <http://x/?a=1&b=2>\n"},
    {"<a href=\"http://x/\"><img src=p alt=\"Logo\"></a>", "[image: Logo] <http://x/>\n"},
    {"<a href=\"http://x/\"></a>", "<http://x/>\n"},
    {"<img src=x.png alt=\"a &amp; b\"> <img src=y.png>", "[image: a & b]\n"},
    {"<a href=x>one<a href=y>two</a>", "one <x>two <y>\n"},
    /* malformed */
    {"a < b and c>d", "a < b and c>d\n"},
    {"x<b", "x\n"},
    {"x<img alt=\"never closed", "x\n"},
    {"</>x</ junk>y", "xy\n"},
    {"</p></blockquote></pre></ul>x", "x\n"},
};

static void test_html_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(html_cases); i++) {
        struct buf b = BUF_INIT;
        assert_int_equal(html_to_text(html_cases[i].in, strlen(html_cases[i].in), &b), 0);
        if (strcmp(buf_cstr(&b), html_cases[i].out) != 0)
            fail_msg("html case %zu: \"%s\"\n got  \"%s\"\n want \"%s\"", i, html_cases[i].in,
                     buf_cstr(&b), html_cases[i].out);
        assert_true(valid_html_output(&b));
        buf_free(&b);
    }
}

static void test_html_entity_count(void **state)
{
    /* at least 60 named entities, each decoding to something other than
     * itself */
    static const char *const names[] = {
        "amp", "lt", "gt", "quot", "apos", "nbsp", "copy", "reg", "hellip", "mdash",
        "ndash", "lsquo", "rsquo", "ldquo", "rdquo", "euro", "trade", "iexcl", "cent",
        "pound", "curren", "yen", "brvbar", "sect", "uml", "ordf", "laquo", "not", "macr",
        "deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot", "cedil",
        "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute",
        "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute", "times",
        "divide", "oslash", "thorn", "yuml", "bull", "larr", "rarr",
    };
    (void)state;
    assert_true(ARRAY_LEN(names) >= 60);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char in[64];
        struct buf b = BUF_INIT;
        snprintf(in, sizeof in, "&%s;", names[i]);
        assert_int_equal(html_to_text(in, strlen(in), &b), 0);
        if (strstr(buf_cstr(&b), names[i]) != NULL || b.len == 0)
            fail_msg("&%s; not decoded: \"%s\"", names[i], buf_cstr(&b));
        buf_free(&b);
    }
}

static void test_html_ceiling(void **state)
{
    struct buf b;
    const char *in = "<p>hello world, this is longer than the ceiling</p>";

    (void)state;
    buf_init(&b, 10);
    assert_int_equal(html_to_text(in, strlen(in), &b), -1);
    assert_true(b.len <= 10);
    assert_memory_equal(b.data, "hello world", b.len);
    buf_free(&b);
}

/* Hostile input: each case must finish quickly and produce sane output. */
static void test_html_hostile(void **state)
{
    enum { N = 100000 };
    const size_t big = 10u << 20;
    struct buf in = BUF_INIT;
    static const char *const unit[] = {
        "<div>", "<blockquote>", "<ul><li>", "<a href=x>", "<pre>", "<table><tr><td>",
        "<b><i><u>", "</blockquote>", "<br>",
    };

    (void)state;
    for (size_t u = 0; u < ARRAY_LEN(unit) + 4; u++) {
        struct buf out = BUF_INIT;
        double t0;

        buf_reset(&in);
        if (u < ARRAY_LEN(unit)) {
            for (size_t i = 0; i < N; i++)
                assert_int_equal(buf_puts(&in, unit[u]), 0);
            assert_int_equal(buf_puts(&in, "deep text"), 0);
        } else if (u == ARRAY_LEN(unit)) {          /* unterminated comment */
            assert_int_equal(buf_puts(&in, "shown<!--"), 0);
            for (size_t i = 0; i < big / 16; i++)
                assert_int_equal(buf_puts(&in, "<p>hidden -- - "), 0);
        } else if (u == ARRAY_LEN(unit) + 1) {      /* a 10 MB attribute */
            assert_int_equal(buf_puts(&in, "shown<a href=\""), 0);
            char *blob = xmalloc(big);
            memset(blob, 'h', big);
            assert_int_equal(buf_append(&in, blob, big), 0);
            free(blob);
            assert_int_equal(buf_puts(&in, "\">link</a>"), 0);
        } else if (u == ARRAY_LEN(unit) + 2) {      /* unterminated script of '<' */
            assert_int_equal(buf_puts(&in, "shown<script>"), 0);
            char *blob = xmalloc(big);
            memset(blob, '<', big);
            assert_int_equal(buf_append(&in, blob, big), 0);
            free(blob);
        } else {                                    /* entity soup */
            for (size_t i = 0; i < N; i++)
                assert_int_equal(buf_puts(&in, "&#xfffffffffff;&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;&"), 0);
        }
        t0 = cpu_s();
        assert_int_equal(html_to_text(in.data, in.len, &out), 0);
        if (cpu_s() - t0 > 5.0)
            fail_msg("hostile case %zu took %.1f s of CPU", u, cpu_s() - t0);
        assert_true(valid_html_output(&out));
        if (u < ARRAY_LEN(unit))
            assert_non_null(strstr(buf_cstr(&out), "deep text"));
        if (u >= ARRAY_LEN(unit) && u < ARRAY_LEN(unit) + 3)
            assert_memory_equal(out.data, "shown", 5);
        /* the output stays proportional to the input */
        assert_true(out.len <= 4 * in.len + 64);
        buf_free(&out);
    }
    buf_free(&in);
}

/* ---- headers ------------------------------------------------------------ */

static const char hdr_msg[] =
    "Received: from mx.example.org by host\r\n"
    "\tfor <bob@example.org>; Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: Bob <bob@example.org>\r\n"
    "X-Spam-Score: 1.0\r\n"
    "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    " =?UTF-8?B?IGF1cyBLw7Zsbg==?=\r\n"
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    "X-Label: work\r\n"
    "Fromage: cheese\r\n"
    "\r\n"
    "Body.\r\n";

static void test_headers_default_weeding(void **state)
{
    struct message *m = parse(hdr_msg);
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_line(&out, 0, RENDER_HEADER, "From: Alice <alice@example.org>");
    assert_int_equal(out.lines[0].name_len, 5);
    assert_line(&out, 1, RENDER_HEADER, "To: Bob <bob@example.org>");
    assert_line(&out, 2, RENDER_HEADER, "Subject: Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln");
    assert_int_equal(out.lines[2].name_len, 8);
    assert_line(&out, 3, RENDER_HEADER, "Date: Mon, 1 Jan 2024 10:00:00 +0000");
    assert_line(&out, 4, RENDER_HEADER, "X-Label: work");
    assert_line(&out, 5, RENDER_BODY, "");
    assert_line(&out, 6, RENDER_BODY, "Body.");
    assert_int_equal(out.n_lines, 7);
    /* "from:" does not match Fromage, Received and X-Spam-Score are weeded */
    assert_int_equal(find_containing(&out, "cheese"), -1);
    assert_int_equal(find_containing(&out, "Received"), -1);
    assert_int_equal(find_containing(&out, "Spam"), -1);
    render_out_free(&out);
    message_free(m);
}

static void test_headers_order_and_lists(void **state)
{
    static const char *const order[] = {"date:", "subject:", "from", NULL};
    static const char *const ignore[] = {"x-", "received:", NULL};
    static const char *const none[] = {NULL};
    struct message *m = parse(hdr_msg);
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    /* hdr_order: Date, Subject, then From and Fromage (prefix "from"), then
     * the rest in message order */
    o.header_order = order;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_line(&out, 0, RENDER_HEADER, "Date: Mon, 1 Jan 2024 10:00:00 +0000");
    assert_line(&out, 1, RENDER_HEADER, "Subject: Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln");
    assert_line(&out, 2, RENDER_HEADER, "From: Alice <alice@example.org>");
    assert_line(&out, 3, RENDER_HEADER, "To: Bob <bob@example.org>");
    assert_line(&out, 4, RENDER_HEADER, "X-Label: work");

    /* ignore x- and received:, unignore nothing: everything else shows */
    o.header_order = NULL;
    o.ignore = ignore;
    o.unignore = none;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_line(&out, 0, RENDER_HEADER, "From: Alice <alice@example.org>");
    assert_line(&out, 1, RENDER_HEADER, "To: Bob <bob@example.org>");
    assert_true(find_line(&out, "Fromage: cheese") == 4);
    assert_int_equal(find_containing(&out, "X-Label"), -1);
    assert_int_equal(find_containing(&out, "Received"), -1);

    /* all headers: the raw block, folded line included */
    o.all_headers = true;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_line(&out, 0, RENDER_HEADER, "Received: from mx.example.org by host");
    assert_int_equal(out.lines[0].name_len, 9);
    assert_line(&out, 1, RENDER_HEADER, "        for <bob@example.org>; Mon, 1 Jan 2024 10:00:00 +0000");
    assert_int_equal(out.lines[1].name_len, 0);
    assert_true(find_line(&out, " =?UTF-8?B?IGF1cyBLw7Zsbg==?=") > 0);
    assert_true(find_line(&out, "X-Spam-Score: 1.0") > 0);
    render_out_free(&out);
    message_free(m);
}

static void test_header_escapes(void **state)
{
    static const char raw[] =
        "From: \x1b]0;owned\x07 Eve <eve@example.org>\r\n"
        "Subject: \x1b[31mred\x1b[0m \xc2\x9b" "2J =?UTF-8?Q?=1B=5B2J_x?=\r\n"
        "To: a\x7f\x01@example.org\r\n"
        "X-Evil\x1b[1m: value\r\n"
        "\r\n"
        "body \x1b[5m blink \x9b\r\n";
    static const char *const all[] = {"*", NULL};
    struct message *m = parse(raw);
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    o.unignore = all;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_terminal_safe(&out);
    assert_true(find_containing(&out, "^[]0;owned^G") >= 0);
    assert_true(find_containing(&out, "^[[31mred") >= 0);
    assert_true(find_containing(&out, "<U+009B>2J") >= 0);
    assert_true(find_containing(&out, "^[[2J x") >= 0);   /* from the encoded word */
    long evil = find_containing(&out, "X-Evil");
    assert_true(evil >= 0);
    assert_int_equal(out.lines[evil].name_len, strlen("X-Evil^[[1m:"));
    o.all_headers = true;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_terminal_safe(&out);
    render_out_free(&out);
    message_free(m);
}

/* ---- body --------------------------------------------------------------- */

static void render_body(const char *body, const struct render_opts *o, struct render_out *out)
{
    render_out_reset(out);
    assert_int_equal(render_text(body, strlen(body), o, out, NULL), 0);
}

struct quote_case {
    const char *line;
    enum render_role role;
    unsigned level;
};

static const struct quote_case quote_cases[] = {
    {"plain", RENDER_BODY, 0},
    {"> one", RENDER_QUOTED, 1},
    {">one", RENDER_QUOTED, 1},
    {">> two", RENDER_QUOTED, 2},
    {"> > two", RENDER_QUOTED, 2},
    {"  >  > >three", RENDER_QUOTED, 3},
    {">>>>>>>>>>>> many", RENDER_QUOTED, 9},
    {"a > b", RENDER_BODY, 0},
    {"| pipe", RENDER_BODY, 0},
    {"", RENDER_BODY, 0},
};

static void test_quote_levels(void **state)
{
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    for (size_t i = 0; i < ARRAY_LEN(quote_cases); i++) {
        render_body(quote_cases[i].line, &o, &out);
        if (quote_cases[i].line[0] == '\0') {
            assert_int_equal(out.n_lines, 0);
            continue;
        }
        assert_int_equal(out.n_lines, 1);
        assert_int_equal(out.lines[0].role, quote_cases[i].role);
        assert_int_equal(out.lines[0].quote, quote_cases[i].level);
    }
    /* other quote characters on request */
    o.quote_chars = ">|";
    render_body("| > pipe", &o, &out);
    assert_int_equal(out.lines[0].role, RENDER_QUOTED);
    assert_int_equal(out.lines[0].quote, 2);
    render_out_free(&out);
}

static void test_signature(void **state)
{
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    render_body("text\n> quoted\n-- \nAlice\n> not quoted here\n", &o, &out);
    assert_int_equal(out.n_lines, 5);
    assert_int_equal(out.lines[0].role, RENDER_BODY);
    assert_int_equal(out.lines[1].role, RENDER_QUOTED);
    assert_line(&out, 2, RENDER_SIGNATURE, "-- ");
    assert_line(&out, 3, RENDER_SIGNATURE, "Alice");
    assert_line(&out, 4, RENDER_SIGNATURE, "> not quoted here");

    /* "--" and "-- x" are not separators; "--" is with lenient_sig */
    render_body("a\n--\nb\n-- x\nc\n", &o, &out);
    for (size_t i = 0; i < out.n_lines; i++)
        assert_int_equal(out.lines[i].role, RENDER_BODY);
    o.lenient_sig = true;
    render_body("a\n--\nb\n", &o, &out);
    assert_int_equal(out.lines[0].role, RENDER_BODY);
    assert_int_equal(out.lines[1].role, RENDER_SIGNATURE);
    assert_int_equal(out.lines[2].role, RENDER_SIGNATURE);
    /* CRLF text: "-- \r" is still the separator */
    o.lenient_sig = false;
    render_body("a\r\n-- \r\nsig\r\n", &o, &out);
    assert_line(&out, 1, RENDER_SIGNATURE, "-- ");
    assert_line(&out, 2, RENDER_SIGNATURE, "sig");
    render_out_free(&out);
}

/* Check a wrapped rendering of one logical line: every piece fits, pieces
 * after the first carry the flag, and the pieces plus the dropped break
 * spaces give back the original. */
static void check_wrap(const char *text, size_t cols, bool smart)
{
    struct render_opts o;
    struct render_out out;
    struct buf joined = BUF_INIT;

    render_opts_default(&o);
    o.cols = cols;
    o.smart_wrap = smart;
    render_out_init(&out);
    render_body(text, &o, &out);
    assert_true(out.n_lines >= 1);
    for (size_t i = 0; i < out.n_lines; i++) {
        const struct render_line *l = &out.lines[i];
        size_t w = sanitize_width(render_line_text(&out, i), l->len);
        if (w > cols)
            fail_msg("cols %zu: line %zu is %zu columns", cols, i, w);
        assert_int_equal(!!(l->flags & RENDER_LINE_CONT), i > 0);
        if (i > 0) {
            const struct render_line *p = &out.lines[i - 1];
            size_t gap = l->off - (p->off + p->len);
            assert_true(gap <= 1);
            if (!smart)
                assert_int_equal(gap, 0);
            if (gap == 1) {
                assert_int_equal(buf_cstr(&out.text)[l->off - 1], ' ');
                assert_int_equal(buf_putc(&joined, ' '), 0);
            }
        }
        assert_int_equal(buf_append(&joined, render_line_text(&out, i), l->len), 0);
    }
    if (strcmp(buf_cstr(&joined), text) != 0)
        fail_msg("cols %zu smart %d: rejoined \"%s\" != \"%s\"", cols, smart, buf_cstr(&joined),
                 text);
    buf_free(&joined);
    render_out_free(&out);
}

static void test_wrap_widths(void **state)
{
    static const char *const texts[] = {
        /* CJK (2 columns each) mixed with ASCII and spaces */
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
        "\xe3\x83\x88 and some English words \xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97 mixed in",
        /* combining marks: e + U+0301 repeated, with spaces */
        "e\xcc\x81" "e\xcc\x81" "e\xcc\x81" "e\xcc\x81 a\xcc\x88\xcc\x88" "bc e\xcc\x81" "e\xcc\x81"
        "e\xcc\x81" "e\xcc\x81" "e\xcc\x81" "e\xcc\x81" "e\xcc\x81" " x",
        /* Hangul and emoji (wide) without spaces */
        "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80" "abc",
        "The quick brown fox jumps over the lazy dog, again and again and again.",
        "averyveryverylongwordwithoutanyspaceatallthatmustbehardbroken ok",
    };
    static const size_t widths[] = {2, 3, 4, 5, 7, 10, 11, 13, 20, 80};

    (void)state;
    for (size_t t = 0; t < ARRAY_LEN(texts); t++)
        for (size_t w = 0; w < ARRAY_LEN(widths); w++) {
            check_wrap(texts[t], widths[w], true);
            check_wrap(texts[t], widths[w], false);
        }
}

static void test_wrap_exact(void **state)
{
    struct render_opts o;
    struct render_out out;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    /* 日本語 at 5 columns: 日本 (4) then 語 */
    o.cols = 5;
    render_body("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", &o, &out);
    assert_int_equal(out.n_lines, 2);
    assert_line(&out, 0, RENDER_BODY, "\xe6\x97\xa5\xe6\x9c\xac");
    assert_line(&out, 1, RENDER_BODY, "\xe8\xaa\x9e");
    /* combining marks stay with their base: "ééé" at 2 columns */
    o.cols = 2;
    render_body("e\xcc\x81" "e\xcc\x81" "e\xcc\x81", &o, &out);
    assert_int_equal(out.n_lines, 2);
    assert_line(&out, 0, RENDER_BODY, "e\xcc\x81" "e\xcc\x81");
    assert_line(&out, 1, RENDER_BODY, "e\xcc\x81");
    /* smart wrap breaks at the last space that fits and drops it */
    o.cols = 10;
    render_body("> hello wonderful world", &o, &out);
    assert_int_equal(out.n_lines, 3);
    assert_line(&out, 0, RENDER_QUOTED, "> hello");
    assert_line(&out, 1, RENDER_QUOTED, "wonderful");
    assert_line(&out, 2, RENDER_QUOTED, "world");
    assert_int_equal(out.lines[2].quote, 1);
    assert_int_equal(out.lines[2].flags & RENDER_LINE_CONT, RENDER_LINE_CONT);
    /* exactly cols columns: no wrap */
    render_body("0123456789", &o, &out);
    assert_int_equal(out.n_lines, 1);
    /* a wide character on a 1-column screen still gets its own line */
    o.cols = 1;
    render_body("\xe6\x97\xa5\xe6\x9c\xac", &o, &out);
    assert_int_equal(out.n_lines, 2);
    /* TABs expand to 8-column stops before wrapping */
    o.cols = 0;
    render_body("a\tb\n\xe6\x97\xa5\tc\n12345678\td", &o, &out);
    assert_line(&out, 0, RENDER_BODY, "a       b");
    assert_line(&out, 1, RENDER_BODY, "\xe6\x97\xa5      c");
    assert_line(&out, 2, RENDER_BODY, "12345678        d");
    render_out_free(&out);
}

/* ---- whole messages ----------------------------------------------------- */

static const char multipart_msg[] =
    "From: a@example.org\r\n"
    "Subject: report\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "See the report.\r\n"
    "> earlier\r\n"
    "--XX\r\n"
    "Content-Type: application/pdf; name=\"report.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K\r\n"
    "--XX\r\n"
    "Content-Type: image/png\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0KGgo=\r\n"
    "--XX\r\n"
    "Content-Type: message/rfc822\r\n"
    "\r\n"
    "Subject: inner \x1b[1m\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "inner body\r\n"
    "--XX--\r\n";

static void test_attachments(void **state)
{
    struct message *m = parse(multipart_msg);
    struct render_opts o;
    struct render_out out;
    long i;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_line(&out, 0, RENDER_HEADER, "From: a@example.org");
    assert_line(&out, 1, RENDER_HEADER, "Subject: report");
    assert_line(&out, 2, RENDER_BODY, "");
    assert_line(&out, 3, RENDER_BODY, "See the report.");
    assert_line(&out, 4, RENDER_QUOTED, "> earlier");
    assert_line(&out, 5, RENDER_ATTACHMENT,
                "[-- Attachment #2: report.pdf (application/pdf, 48B) --]");
    assert_string_equal(m->parts[out.lines[5].part]->filename, "report.pdf");
    assert_line(&out, 6, RENDER_ATTACHMENT, "[-- Attachment #3 (image/png, 9B) --]");
    assert_string_equal(m->parts[out.lines[6].part]->subtype, "png");
    assert_line(&out, 7, RENDER_ATTACHMENT, "[-- Attachment #4: inner ^[[1m (message/rfc822, 59B) --]");
    assert_int_equal(out.n_lines, 8);
    assert_int_equal(find_containing(&out, "inner body"), -1);
    i = find_containing(&out, "preamble");
    assert_int_equal(i, -1);
    assert_terminal_safe(&out);
    render_out_free(&out);
    message_free(m);
}

static void test_alternative(void **state)
{
    static const char raw[] =
        "Content-Type: multipart/alternative; boundary=b\r\n"
        "\r\n"
        "--b\r\n"
        "Content-Type: text/html\r\n"
        "\r\n"
        "<p>rich</p>\r\n"
        "--b\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Description: plain \x1b[7m version\r\n"
        "\r\n"
        "plain\r\n"
        "--b--\r\n";
    static const char *const none[] = {NULL};
    struct message *m = parse(raw);
    struct render_opts o;
    struct render_out out;
    char *label;

    (void)state;
    render_opts_default(&o);
    o.ignore = none;
    render_out_init(&out);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    /* the header, the blank line, then the parts in MIME order */
    assert_line(&out, 1, RENDER_BODY, "");
    assert_line(&out, 2, RENDER_ATTACHMENT, "[-- Alternative #1 (text/html, 11B) --]");
    assert_line(&out, 3, RENDER_BODY, "plain");
    assert_int_equal(out.n_lines, 4);
    label = render_part_label(m->parts[2]);
    assert_string_equal(label, "plain ^[[7m version (text/plain, 5B)");
    free(label);
    render_out_free(&out);
    message_free(m);
}

static const char html_msg[] =
    "From: a@example.org\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<html><body><p>a cat and a bat</p><p>two&amp;</p></body></html>\r\n";

static void test_html_filter(void **state)
{
    struct message *m = parse(html_msg);
    struct render_opts o;
    struct render_out out;
    long i;
    double t0;

    (void)state;
    render_opts_default(&o);
    render_out_init(&out);

    /* built-in converter */
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    i = find_line(&out, "[-- text/html converted to plain text --]");
    assert_true(i > 0);
    assert_int_equal(out.lines[i].role, RENDER_INFO);
    assert_line(&out, (size_t)i + 1, RENDER_BODY, "a cat and a bat");
    assert_line(&out, (size_t)i + 2, RENDER_BODY, "");
    assert_line(&out, (size_t)i + 3, RENDER_BODY, "two&");

    /* a real filter program, without a shell: sed replaces the first 'a' of
     * each line; the quoted word shows the rc quoting is honoured */
    o.html_filter = "sed 's/a/X/'";
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    i = find_line(&out, "[-- text/html filtered through sed --]");
    assert_true(i > 0);
    assert_int_equal(out.lines[i].role, RENDER_INFO);
    assert_true(find_logical(&out, "<html><body><p>X cat and a bat</p>") > i);

    /* a missing program: fallback with an info line */
    o.html_filter = "/nonexistent/correo-no-such-filter -dump";
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    i = find_logical(&out, "text/html shown by the built-in converter");
    assert_true(i > 0);
    assert_int_equal(out.lines[i].role, RENDER_INFO);
    assert_true(find_logical(&out, "not found") == i);
    assert_true(find_line(&out, "a cat and a bat") > i);

    /* a failing program and a malformed command line fall back too */
    o.html_filter = "false";
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_true(find_logical(&out, "exited with status 1") > 0);
    assert_true(find_line(&out, "a cat and a bat") > 0);
    o.html_filter = "sed 'unterminated";
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_true(find_logical(&out, "html_filter") > 0);
    assert_true(find_line(&out, "a cat and a bat") > 0);

    /* a filter that hangs is killed at the timeout */
    o.html_filter = "sleep 30";
    o.filter_timeout_ms = 300;
    t0 = now_s();
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_true(now_s() - t0 < 10.0);
    assert_true(find_logical(&out, "no answer after 300 ms") > 0);
    assert_true(find_line(&out, "a cat and a bat") > 0);
    render_out_free(&out);
    message_free(m);
}

static void test_charset_and_flowed(void **state)
{
    static const char unknown_cs[] =
        "Content-Type: text/plain; charset=x-no-such-charset\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "caf\xe9\r\n";
    static const char flowed[] =
        "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\r\n"
        "\r\n"
        "This is a long para \r\n"
        "graph that was flo \r\n"
        "wed.\r\n"
        ">> quoted soft  \r\n"
        ">> continued\r\n"
        "> other depth\r\n"
        " >stuffed\r\n"
        "-- \r\n"
        "sig\r\n";
    struct message *m = parse(unknown_cs);
    struct render_opts o;
    struct render_out out;
    long i;

    (void)state;
    render_opts_default(&o);
    o.ignore = (const char *const[]){NULL};
    render_out_init(&out);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    i = find_line(&out, "[-- unknown charset x-no-such-charset, shown as Windows-1252 --]");
    assert_true(i > 0);
    assert_line(&out, (size_t)i + 1, RENDER_BODY, "caf\xc3\xa9");
    message_free(m);

    m = parse(flowed);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    i = find_line(&out, "This is a long paragraph that was flowed.");
    assert_true(i > 0);
    assert_line(&out, (size_t)i + 1, RENDER_QUOTED, ">> quoted soft continued");
    assert_int_equal(out.lines[i + 1].quote, 2);
    assert_line(&out, (size_t)i + 2, RENDER_QUOTED, "> other depth");
    assert_line(&out, (size_t)i + 3, RENDER_BODY, ">stuffed");
    assert_line(&out, (size_t)i + 4, RENDER_SIGNATURE, "-- ");
    assert_line(&out, (size_t)i + 5, RENDER_SIGNATURE, "sig");
    /* without reflow the lines are shown as sent */
    o.reflow = false;
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_true(find_line(&out, "This is a long para ") > 0);
    assert_true(find_line(&out, " >stuffed") > 0);
    render_out_free(&out);
    message_free(m);
}

static void test_truncation(void **state)
{
    struct buf body = BUF_INIT;
    struct render_opts o;
    struct render_out out;
    struct err e;

    (void)state;
    for (int i = 0; i < 2000; i++)
        assert_int_equal(buf_printf(&body, "line %d of a long text\n", i), 0);
    render_opts_default(&o);
    o.max_bytes = 8192;
    render_out_init(&out);
    err_clear(&e);
    assert_int_equal(render_text(body.data, body.len, &o, &out, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_true(out.truncated);
    assert_true(out.n_lines > 10);
    assert_int_equal(out.lines[out.n_lines - 1].role, RENDER_INFO);
    assert_true(out.text.len + out.n_lines * sizeof(struct render_line) <= 8192);
    assert_line(&out, 0, RENDER_BODY, "line 0 of a long text");
    /* once truncated, nothing more is added */
    size_t n = out.n_lines;
    assert_int_equal(render_text("more", 4, &o, &out, NULL), -1);
    assert_int_equal(out.n_lines, n);

    /* one huge line of TABs and controls: cut before it is expanded */
    render_out_reset(&out);
    buf_reset(&body);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_puts(&body, "\t\x01"), 0);
    assert_int_equal(render_text(body.data, body.len, &o, &out, NULL), -1);
    assert_int_equal(out.n_lines, 1);
    assert_int_equal(out.lines[0].role, RENDER_INFO);
    assert_true(out.text.len <= 8192);

    /* a whole message: headers stay, the note ends the display */
    buf_reset(&body);
    assert_int_equal(buf_puts(&body, "Subject: big\r\n\r\n"), 0);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(buf_printf(&body, "line %d of a long text\r\n", i), 0);
    struct message *m = parse(body.data);
    assert_int_equal(render_message(m, &o, &out, NULL), 0);
    assert_true(out.truncated);
    assert_line(&out, 0, RENDER_HEADER, "Subject: big");
    assert_line(&out, out.n_lines - 1, RENDER_INFO,
                "[-- display truncated: the message is too large --]");
    assert_true(out.text.len + out.n_lines * sizeof(struct render_line) <= 8192);
    message_free(m);
    render_out_free(&out);
    buf_free(&body);
}

/* ---- search ------------------------------------------------------------- */

static void test_search(void **state)
{
    struct render_opts o;
    struct render_out out;
    struct render_hits h;
    struct err e;

    (void)state;
    render_opts_default(&o);
    o.cols = 12;
    render_out_init(&out);
    render_body("Hello hello HELLO\nnothing\nabc hello-world hello\n", &o, &out);
    /* lines: "Hello hello" "HELLO" "nothing" "abc" "hello-world" "hello" */
    assert_int_equal(out.n_lines, 6);

    /* smart case: lower-case pattern matches any case */
    assert_int_equal(render_search(&out, "hello", RENDER_SEARCH_SMART, &h, NULL), 0);
    assert_int_equal(h.n, 5);
    assert_int_equal(h.v[0].line, 0);
    assert_int_equal(h.v[0].off, 0);
    assert_int_equal(h.v[0].len, 5);
    assert_int_equal(h.v[1].line, 0);
    assert_int_equal(h.v[1].off, 6);
    assert_int_equal(h.v[2].line, 1);
    assert_int_equal(h.v[3].line, 4);
    assert_int_equal(h.v[4].line, 5);
    render_hits_free(&h);

    /* an upper-case letter makes it exact */
    assert_int_equal(render_search(&out, "HELLO", RENDER_SEARCH_SMART, &h, NULL), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].line, 1);
    render_hits_free(&h);

    /* a match across a wrap is reported on both pieces */
    assert_int_equal(render_search(&out, "hello HELLO", 0, &h, NULL), 0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.v[0].line, 0);
    assert_int_equal(h.v[0].off, 6);
    assert_int_equal(h.v[0].len, 5);
    assert_int_equal(h.v[1].line, 1);
    assert_int_equal(h.v[1].off, 0);
    assert_int_equal(h.v[1].len, 5);
    render_hits_free(&h);

    /* regex; \W after a backslash does not count as upper case */
    assert_int_equal(render_search(&out, "o\\W?w", RENDER_SEARCH_REGEX | RENDER_SEARCH_SMART,
                                   &h, NULL), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].line, 4);
    assert_int_equal(h.v[0].off, 4);
    assert_int_equal(h.v[0].len, 3);
    render_hits_free(&h);
    assert_int_equal(render_search(&out, "^h", RENDER_SEARCH_REGEX | RENDER_SEARCH_ICASE, &h,
                                   NULL), 0);
    assert_int_equal(h.n, 1);                       /* only the first logical line */
    assert_int_equal(h.v[0].line, 0);
    render_hits_free(&h);
    assert_int_equal(render_search(&out, "x*", RENDER_SEARCH_REGEX, &h, NULL), 0);
    assert_int_equal(h.n, 0);                       /* empty matches are not hits */
    render_hits_free(&h);

    /* n / N navigation wraps around */
    assert_int_equal(render_search(&out, "hello", RENDER_SEARCH_ICASE, &h, NULL), 0);
    assert_int_equal(render_hit_next(&h, 0, true), 2);
    assert_int_equal(render_hit_next(&h, 1, true), 3);
    assert_int_equal(render_hit_next(&h, 5, true), 0);
    assert_int_equal(render_hit_next(&h, 4, false), 2);
    assert_int_equal(render_hit_next(&h, 0, false), 4);
    render_hits_free(&h);

    err_clear(&e);
    assert_int_equal(render_search(&out, "(", RENDER_SEARCH_REGEX, &h, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(render_search(&out, "", 0, &h, &e), -1);
    assert_int_equal(render_search(&out, "zzz", 0, &h, NULL), 0);
    assert_int_equal(h.n, 0);
    assert_int_equal(render_hit_next(&h, 0, true), -1);
    render_hits_free(&h);
    render_out_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_html_table),
        cmocka_unit_test(test_html_entity_count),
        cmocka_unit_test(test_html_ceiling),
        cmocka_unit_test(test_html_hostile),
        cmocka_unit_test(test_headers_default_weeding),
        cmocka_unit_test(test_headers_order_and_lists),
        cmocka_unit_test(test_header_escapes),
        cmocka_unit_test(test_quote_levels),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_wrap_widths),
        cmocka_unit_test(test_wrap_exact),
        cmocka_unit_test(test_attachments),
        cmocka_unit_test(test_alternative),
        cmocka_unit_test(test_html_filter),
        cmocka_unit_test(test_charset_and_flowed),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
