/* Tests for lib/message and its helpers: codec, charset, rfc2047, rfc2231. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "charset.h"
#include "codec.h"
#include "message.h"
#include "rfc2047.h"
#include "rfc2231.h"

/* ---- helpers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void assert_buf(const struct buf *b, const char *want, size_t wlen)
{
    assert_int_equal(b->len, wlen);
    assert_memory_equal(buf_cstr(b), want, wlen);
}

/* ---- codec -------------------------------------------------------------- */

struct codec_case {
    const char *in;
    const char *out;
    size_t out_len;
    bool bad;
};

static const struct codec_case b64_cases[] = {
    {"aGVsbG8=", "hello", 5, false},
    {"aGVs\r\nbG8=\r\n", "hello", 5, false},
    {"aGVsbG8", "hello", 5, false},            /* missing padding */
    {"aG!Vs*bG8=", "hello", 5, true},          /* garbage skipped */
    {"  aGVs bG8gd29y bGQ= ", "hello world", 11, false},
    {"AA==", "\0", 1, false},
    {"aGVsbG8=aGk=", "hellohi", 7, false},     /* concatenated */
    {"aGVsbG8gA", "hello ", 6, true},          /* dangling sextet */
    {"", "", 0, false},
};

static void test_b64_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(b64_cases); i++) {
        const struct codec_case *c = &b64_cases[i];
        struct buf out = BUF_INIT, out1 = BUF_INIT;
        struct codec_b64 st;
        bool bad;
        assert_int_equal(codec_b64_decode(c->in, strlen(c->in), &out, &bad), 0);
        assert_buf(&out, c->out, c->out_len);
        assert_int_equal(bad, c->bad);
        codec_b64_init(&st);   /* one byte at a time gives the same */
        for (size_t k = 0; c->in[k]; k++)
            assert_int_equal(codec_b64_feed(&st, c->in + k, 1, &out1), 0);
        assert_int_equal(codec_b64_finish(&st, &out1), 0);
        assert_buf(&out1, c->out, c->out_len);
        buf_free(&out);
        buf_free(&out1);
    }
}

static const struct codec_case qp_cases[] = {
    {"caf=E9", "caf\xe9", 4, false},
    {"caf=e9", "caf\xe9", 4, false},           /* lower-case hex */
    {"soft=\r\nbreak", "softbreak", 9, false},
    {"soft=\nbreak", "softbreak", 9, false},
    {"pad=  \r\nded", "padded", 6, false},     /* blanks after '=' */
    {"a=ZZb", "a=ZZb", 5, true},               /* broken escape literal */
    {"a=4", "a=4", 3, true},                   /* truncated at end */
    {"a=", "a=", 2, true},
    {"x=3Dy", "x=y", 3, false},
    {"line\r\nnext", "line\r\nnext", 10, false},
};

static void test_qp_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(qp_cases); i++) {
        const struct codec_case *c = &qp_cases[i];
        struct buf out = BUF_INIT, out1 = BUF_INIT;
        struct codec_qp st;
        bool bad;
        assert_int_equal(codec_qp_decode(c->in, strlen(c->in), false, &out, &bad), 0);
        assert_buf(&out, c->out, c->out_len);
        assert_int_equal(bad, c->bad);
        codec_qp_init(&st, false);
        for (size_t k = 0; c->in[k]; k++)
            assert_int_equal(codec_qp_feed(&st, c->in + k, 1, &out1), 0);
        assert_int_equal(codec_qp_finish(&st, &out1), 0);
        assert_buf(&out1, c->out, c->out_len);
        buf_free(&out);
        buf_free(&out1);
    }
}

static void test_codec_ceiling_and_encode(void **state)
{
    struct buf out;
    (void)state;
    buf_init(&out, 3);
    assert_int_equal(codec_b64_decode("aGVsbG8=", 8, &out, NULL), -1);
    assert_buf(&out, "hel", 3);
    buf_free(&out);
    buf_init(&out, 0);
    assert_int_equal(codec_b64_encode("hello", 5, &out), 0);
    assert_string_equal(buf_cstr(&out), "aGVsbG8=");
    buf_reset(&out);
    assert_int_equal(codec_b64_encode("hi", 2, &out), 0);
    assert_string_equal(buf_cstr(&out), "aGk=");
    buf_free(&out);
}

/* ---- charset ------------------------------------------------------------ */

struct cs_case {
    const char *charset;
    const char *in;
    const char *out;
    unsigned flags;
};

static const struct cs_case cs_cases[] = {
    {"utf-8", "caf\xc3\xa9", "caf\xc3\xa9", 0},
    {"UTF8", "a\xff" "b", "a\xef\xbf\xbd" "b", CHARSET_REPLACED},
    {"iso-8859-1", "caf\xe9", "caf\xc3\xa9", 0},
    {"Latin1", "\xe9", "\xc3\xa9", 0},
    {"ISO-8859-15", "\xa4", "\xe2\x82\xac", 0},           /* euro */
    {"windows-1252", "\x80\x93", "\xe2\x82\xac\xe2\x80\x9c", 0},
    {"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 0},
    {"Shift_JIS", "\x93\xfa\x96\x7b", "\xe6\x97\xa5\xe6\x9c\xac", 0},   /* nihon */
    {"gb2312", "\xd6\xd0\xce\xc4", "\xe4\xb8\xad\xe6\x96\x87", 0},      /* zhongwen */
    {"x-no-such-charset", "caf\xe9", "caf\xc3\xa9", CHARSET_FALLBACK},
    {"../../etc/evil", "a", "a", CHARSET_FALLBACK},
    {"\"us-ascii\"", "plain", "plain", 0},
    {"shift_jis", "\x93", "\xef\xbf\xbd", CHARSET_REPLACED},            /* truncated */
};

static void test_charset_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cs_cases); i++) {
        const struct cs_case *c = &cs_cases[i];
        struct buf out = BUF_INIT;
        unsigned flags = 0;
        assert_int_equal(charset_to_utf8(c->charset, c->in, strlen(c->in), &out, &flags), 0);
        assert_string_equal(buf_cstr(&out), c->out);
        assert_int_equal(flags, c->flags);
        buf_free(&out);
    }
}

static void test_charset_fix_utf8(void **state)
{
    char *s;
    (void)state;
    s = charset_fix_utf8_str("caf\xc3\xa9", 5);
    assert_string_equal(s, "caf\xc3\xa9");
    free(s);
    s = charset_fix_utf8_str("caf\xe9", 4);      /* not UTF-8: Latin-1 */
    assert_string_equal(s, "caf\xc3\xa9");
    free(s);
    s = charset_fix_utf8_str("a\0b", 3);         /* NUL replaced */
    assert_string_equal(s, "a\xef\xbf\xbd" "b");
    free(s);
    assert_false(charset_valid_utf8("\xed\xa0\x80", 3));   /* surrogate */
    assert_false(charset_valid_utf8("\xc0\xaf", 2));       /* overlong */
}

/* ---- rfc2047 ------------------------------------------------------------ */

struct str_case {
    const char *in;
    const char *out;
};

static const struct str_case rfc2047_cases[] = {
    /* RFC 2047 section 8 */
    {"=?ISO-8859-1?Q?a?=", "a"},
    {"=?ISO-8859-1?Q?a?= b", "a b"},
    {"=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"},
    {"=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab"},
    {"=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=", "ab"},
    {"=?ISO-8859-1?Q?a_b?=", "a b"},
    {"=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"},
    {"=?US-ASCII?Q?Keith_Moore?=", "Keith Moore"},
    {"=?ISO-8859-1?Q?Keld_J=F8rn_Simonsen?=", "Keld J\xc3\xb8rn Simonsen"},
    {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard"},
    {"=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=", "If you can read this yo"},
    {"=?US-ASCII*EN?Q?Keith?=", "Keith"},                  /* RFC 2231 lang */
    /* a UTF-8 character split over two words */
    {"=?UTF-8?B?w6k=?= =?UTF-8?Q?=C3?= =?UTF-8?Q?=A9?=", "\xc3\xa9\xc3\xa9"},
    /* invalid words stay literal */
    {"=?UTF-8?X?abc?=", "=?UTF-8?X?abc?="},
    {"=?UTF-8?Q?no end", "=?UTF-8?Q?no end"},
    {"=?UTF-8?Q?has space?=", "=?UTF-8?Q?has space?="},
    {"a =?utf-8?q?x?= b", "a x b"},
    {"plain caf\xe9", "plain caf\xc3\xa9"},                /* raw 8-bit */
    {"=?bogus-cs?Q?caf=E9?=", "caf\xc3\xa9"},              /* unknown charset */
};

static void test_rfc2047_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rfc2047_cases); i++) {
        char *s = rfc2047_decode_str(rfc2047_cases[i].in, strlen(rfc2047_cases[i].in), NULL);
        assert_string_equal(s, rfc2047_cases[i].out);
        free(s);
    }
}

static void test_rfc2047_encode(void **state)
{
    struct buf out = BUF_INIT;
    const char *text = "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen, eine sehr lange Betreffzeile mit \xc3\xa4\xc3\xb6\xc3\xbc";
    char *back;
    (void)state;
    assert_int_equal(rfc2047_encode("plain", 5, &out), 0);
    assert_string_equal(buf_cstr(&out), "plain");
    buf_reset(&out);
    assert_int_equal(rfc2047_encode(text, strlen(text), &out), 0);
    assert_non_null(strstr(buf_cstr(&out), "=?UTF-8?B?"));
    assert_non_null(strstr(buf_cstr(&out), "\r\n "));
    for (const char *w = buf_cstr(&out); w; ) {    /* each word <= 75 chars */
        const char *nl = strstr(w, "\r\n ");
        size_t n = nl ? (size_t)(nl - w) : strlen(w);
        assert_true(n <= 75);
        w = nl ? nl + 3 : NULL;
    }
    back = rfc2047_decode_str(out.data, out.len, NULL);
    assert_string_equal(back, text);
    free(back);
    buf_free(&out);
}

/* ---- rfc2231 ------------------------------------------------------------ */

struct p_case {
    const char *in;
    const char *value;
    const char *name;
    const char *want;
};

static const struct p_case rfc2231_cases[] = {
    {"text/plain; charset=us-ascii", "text/plain", "charset", "us-ascii"},
    {"Text/Plain ; Charset = \"utf-8\" ", "text/plain", "charset", "utf-8"},
    {"attachment; filename=\"a \\\"q\\\".txt\"", "attachment", "filename", "a \"q\".txt"},
    {"message/external-body; access-type=URL; URL*0=\"ftp://\"; URL*1=\"cs.utk.edu/pub\"",
     "message/external-body", "url", "ftp://cs.utk.edu/pub"},
    {"application/x-stuff; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A",
     "application/x-stuff", "title", "This is ***fun***"},
    {"application/x-stuff; title*0*=us-ascii'en'This%20is%20even%20more%20; "
     "title*1*=%2A%2A%2Afun%2A%2A%2A%20; title*2=\"isn't it!\"",
     "application/x-stuff", "title", "This is even more ***fun*** isn't it!"},
    {"attachment; filename*=UTF-8''caf%C3%A9.txt", "attachment", "filename", "caf\xc3\xa9.txt"},
    {"attachment; filename*=iso-8859-1'fr'caf%E9.txt", "attachment", "filename", "caf\xc3\xa9.txt"},
    {"attachment; filename*1=\"b\"; filename*0=\"a\"", "attachment", "filename", "ab"},
    {"attachment; filename*0=\"a\"; filename*2=\"c\"", "attachment", "filename", "a"},
    {"attachment; filename=plain; filename*=UTF-8''better", "attachment", "filename", "better"},
    {"attachment; junk; ;; filename=x%zz", "attachment", "filename", "x%zz"},
    {"inline; filename*=UTF-8''bad%zz%4", "inline", "filename", "bad%zz%4"},
};

static void test_rfc2231_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(rfc2231_cases); i++) {
        const struct p_case *c = &rfc2231_cases[i];
        struct rfc2231_params p;
        rfc2231_parse(c->in, strlen(c->in), &p);
        assert_string_equal(p.value, c->value);
        assert_non_null(rfc2231_get(&p, c->name));
        assert_string_equal(rfc2231_get(&p, c->name), c->want);
        rfc2231_free(&p);
    }
}

static void test_rfc2231_lang_and_cap(void **state)
{
    struct rfc2231_params p;
    struct buf in = BUF_INIT;
    const char *s = "a; t*=us-ascii'en-us'x";
    (void)state;
    rfc2231_parse(s, strlen(s), &p);
    assert_string_equal(p.v[0].lang, "en-us");
    assert_true(p.v[0].extended);
    rfc2231_free(&p);
    assert_int_equal(buf_puts(&in, "x/y"), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(buf_printf(&in, "; p%d=v", i), 0);
    rfc2231_parse(in.data, in.len, &p);
    assert_int_equal(p.n, RFC2231_MAX_PARAMS);
    assert_true(p.dropped);
    rfc2231_free(&p);
    buf_free(&in);
}

/* ---- envelope ----------------------------------------------------------- */

static struct message *parse(const char *raw, size_t len)
{
    struct message *m = NULL;
    struct err e;
    assert_int_equal(message_parse(raw, len, NULL, &m, &e), 0);
    assert_non_null(m);
    return m;
}

static char *best_text(struct message *m, bool *html)
{
    const struct msg_part *p = message_best_text(m, html);
    struct buf out = BUF_INIT;
    struct err e;
    if (!p)
        return NULL;
    assert_int_equal(message_part_text(m, p, &out, NULL, NULL, &e), 0);
    return buf_steal(&out, NULL);
}

static const char env_msg[] =
    "Return-Path: <bounce@x>\r\n"
    "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.com>\r\n"
    "To: \"Doe, Jane\" <jane@example.com>, bob@example.com (Bob Smith),\r\n"
    "  Team: ann@x.org, <ben@x.org>;, \"=?iso-8859-1?q?J=F6rg?=\" <j@x.de>\r\n"
    "Cc: <@route.a,@route.b:carol@example.com>\r\n"
    "Reply-To: list@example.com\r\n"
    "Subject: =?UTF-8?B?SGVsbG8g?=\r\n =?UTF-8?B?d29ybGQ=?=\r\n"
    "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n"
    "Message-ID: < abc@host >\r\n"
    "In-Reply-To: <parent@host> (comment)\r\n"
    "References: <r1@h>\r\n <r2@h>\r\n\t<parent@host>\r\n"
    "List-Id: Dev list <dev.example.org>\r\n"
    "List-Post: <mailto:dev@example.org>\r\n"
    "\r\n"
    "body\r\n";

static void test_envelope(void **state)
{
    struct message *m = NULL;
    struct err e;
    const struct msg_envelope *env;
    (void)state;
    assert_int_equal(message_parse_headers(env_msg, sizeof env_msg - 1, NULL, &m, &e), 0);
    env = &m->env;
    assert_null(m->root);
    assert_int_equal(env->from.n, 1);
    assert_string_equal(env->from.v[0].name, "Jos\xc3\xa9");
    assert_string_equal(env->from.v[0].addr, "jose@example.com");
    assert_int_equal(env->to.n, 5);
    assert_string_equal(env->to.v[0].name, "Doe, Jane");
    assert_string_equal(env->to.v[1].addr, "bob@example.com");
    assert_string_equal(env->to.v[1].name, "Bob Smith");
    assert_string_equal(env->to.v[2].addr, "ann@x.org");
    assert_null(env->to.v[3].name);
    assert_string_equal(env->to.v[3].addr, "ben@x.org");
    assert_string_equal(env->to.v[4].name, "J\xc3\xb6rg");
    assert_false(env->to.truncated);
    assert_string_equal(env->cc.v[0].addr, "carol@example.com");
    assert_string_equal(env->reply_to.v[0].addr, "list@example.com");
    assert_string_equal(env->subject, "Hello world");
    assert_true(env->date_valid);
    assert_int_equal(env->date, 1057049557);
    assert_string_equal(env->date_text, "Tue, 1 Jul 2003 10:52:37 +0200");
    assert_string_equal(env->message_id, "abc@host");
    assert_string_equal(env->in_reply_to, "parent@host");
    assert_int_equal(env->n_references, 3);
    assert_string_equal(env->references[2], "parent@host");
    assert_string_equal(env->list_id, "dev.example.org");
    assert_string_equal(env->list_post, "mailto:dev@example.org");
    assert_int_equal(m->body_offset, sizeof env_msg - 1 - 6);
    message_free(m);
}

struct addr_case {
    const char *hdr;
    size_t n;
    const char *last_name;   /* NULL: no name */
    const char *last_addr;
};

/* Inputs on which a strict RFC 5322 parser stops early. */
static const struct addr_case addr_cases[] = {
    {"To: a@b,, c@d\n\n", 2, NULL, "c@d"},
    {"To: John Q. Public <a@b>, x@y\n\n", 2, NULL, "x@y"},
    {"To: x@y (Comment\n\n", 1, "Comment", "x@y"},
    {"To: \"unterminated <a@b>, c@d\n\n", 2, NULL, "c@d"},
    {"To: undisclosed-recipients:;\n\n", 0, NULL, NULL},
    {"To: =?utf-8?q?Ren=C3=A9e?= Smith <r@s>\n\n", 1, "Ren\xc3\xa9" "e Smith", "r@s"},
    {"To: \"a\\\"b\" <q@r>\n\n", 1, "a\"b", "q@r"},
    {"To: <a@b\n\n", 1, NULL, "a@b"},
};

static void test_address_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(addr_cases); i++) {
        const struct addr_case *c = &addr_cases[i];
        struct message *m = NULL;
        struct err e;
        assert_int_equal(message_parse_headers(c->hdr, strlen(c->hdr), NULL, &m, &e), 0);
        assert_int_equal(m->env.to.n, c->n);
        if (c->n > 0) {
            const struct msg_addr *a = &m->env.to.v[c->n - 1];
            if (c->last_name)
                assert_string_equal(a->name, c->last_name);
            else
                assert_null(a->name);
            assert_string_equal(a->addr, c->last_addr);
        }
        message_free(m);
    }
}

static void test_bad_date_and_8bit(void **state)
{
    const char raw[] = "From: J\xf6rg <j@x>\nSubject: caf\xc3\xa9 \xff\nDate: yesterday-ish\n\nb";
    struct message *m = parse(raw, sizeof raw - 1);
    (void)state;
    assert_false(m->env.date_valid);
    assert_int_equal(m->env.date, 0);
    assert_string_equal(m->env.date_text, "yesterday-ish");
    assert_string_equal(m->env.from.v[0].name, "J\xc3\xb6rg");       /* Latin-1 */
    assert_string_equal(m->env.subject, "caf\xc3\x83\xc2\xa9 \xc3\xbf");  /* invalid: cp1252 */
    assert_true(m->n_warnings >= 1);
    message_free(m);
}

/* ---- MIME trees --------------------------------------------------------- */

static const char tree_msg[] =
    "From: a@b\r\nSubject: tree\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "SGVsbG8sIHdvcmxkIQ0KU2Vjb25kIGxpbmUNCg==\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<b>Hello</b>\r\n"
    "--inner--\r\n"
    "--outer\r\n"
    "Content-Type: application/pdf; name=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\"\r\n"
    "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "Content-Description: =?UTF-8?Q?CV?=\r\n"
    "Content-ID: <cid1@x>\r\n\r\n"
    "JVBERi0=\r\n"
    "--outer\r\n"
    "Content-Type: message/rfc822\r\n\r\n"
    "From: Inner <inner@x>\r\nSubject: nested\r\n"
    "Content-Type: text/plain\r\n\r\n"
    "inner body\r\n"
    "--outer\r\n"
    "Content-Type: image/png; name=pic.png\r\n\r\n"
    "PNG\r\n"
    "--outer--\r\n"
    "epilogue\r\n";

static void test_mime_tree(void **state)
{
    struct message *m = parse(tree_msg, sizeof tree_msg - 1);
    const struct msg_part *r = m->root, *att, *rfc, *png;
    struct buf out = BUF_INIT;
    struct err e;
    bool html = true;
    char *text;
    (void)state;
    assert_int_equal(m->n_warnings, 0);
    assert_string_equal(r->type, "multipart");
    assert_int_equal(r->n_children, 4);
    assert_int_equal(m->n_parts, 8);
    assert_int_equal(r->children[0]->n_children, 2);
    assert_int_equal(r->children[0]->children[1]->depth, 2);
    att = r->children[1];
    assert_string_equal(att->subtype, "pdf");
    assert_int_equal(att->disposition, MSG_DISP_ATTACHMENT);
    assert_string_equal(att->filename, "r\xc3\xa9sum\xc3\xa9 v2.pdf");
    assert_string_equal(att->description, "CV");
    assert_string_equal(att->content_id, "cid1@x");
    assert_int_equal(att->encoding, MSG_ENC_BASE64);
    assert_memory_equal(tree_msg + att->body_offset, "JVBERi0=", 8);
    assert_int_equal(att->body_size, 8);
    assert_int_equal(message_part_decode(m, att, &out, NULL, &e), 0);
    assert_buf(&out, "%PDF-", 5);
    rfc = r->children[2];
    assert_non_null(rfc->envelope);
    assert_string_equal(rfc->envelope->subject, "nested");
    assert_string_equal(rfc->envelope->from.v[0].name, "Inner");
    assert_int_equal(rfc->n_children, 1);
    assert_string_equal(rfc->children[0]->type, "text");
    png = r->children[3];
    assert_string_equal(png->filename, "pic.png");
    assert_memory_equal(tree_msg + png->body_offset, "PNG", png->body_size);
    text = best_text(m, &html);
    assert_false(html);
    assert_string_equal(text, "Hello, world!\nSecond line\n");
    free(text);
    buf_free(&out);
    message_free(m);
}

struct best_case {
    const char *raw;
    const char *text;   /* NULL: no text part */
    bool html;
};

static const struct best_case best_cases[] = {
    {"Subject: x\n\nplain body\r\n", "plain body\n", false},
    {"Content-Type: text/html\n\n<p>x</p>", "<p>x</p>", true},
    {"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\nH\n"
     "--b\nContent-Type: text/plain\n\nP\n--b--\n", "P", false},
    {"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n"
     "Content-Disposition: attachment\n\nA\n--b\nContent-Type: text/plain\n\nB\n--b--\n", "B", false},
    {"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: image/gif\n\nG\n--b--\n", NULL, false},
    {"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
     "caf=E9=\r\n!\r\n", "caf\xc3\xa9!\n", false},
    {"Content-Type: text/plain; charset=koi8-r\n\n\xf0\xd2\xc9\xd7\xc5\xd4",
     "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", false},
    {"Content-Type: text/plain\n\nlone\rCR kept\r\n", "lone\rCR kept\n", false},
    {"Content-Type: message/rfc822\n\nSubject: in\n\ninner text", "inner text", false},
};

static void test_best_text_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(best_cases); i++) {
        const struct best_case *c = &best_cases[i];
        struct message *m = parse(c->raw, strlen(c->raw));
        bool html = !c->html;
        char *t = best_text(m, &html);
        if (!c->text) {
            assert_null(t);
        } else {
            assert_non_null(t);
            assert_string_equal(t, c->text);
            assert_int_equal(html, c->html);
        }
        free(t);
        message_free(m);
    }
}

/* ---- malformed input ---------------------------------------------------- */

static bool has_warning(const struct message *m, const char *needle)
{
    for (size_t i = 0; i < m->n_warnings; i++)
        if (strstr(m->warnings[i], needle))
            return true;
    return false;
}

static void test_truncated_mime(void **state)
{
    const char raw[] = "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                       "Content-Type: text/plain\n\nfirst part cut he";
    struct message *m = parse(raw, sizeof raw - 1);
    char *t = best_text(m, NULL);
    (void)state;
    assert_string_equal(t, "first part cut he");
    assert_true(has_warning(m, "missing closing"));
    free(t);
    message_free(m);
}

static void test_missing_boundary(void **state)
{
    const char raw[] = "Content-Type: multipart/mixed\n\n--b\n\nx\n";
    const char raw2[] = "Content-Type: multipart/mixed; boundary=zz\n\nno delimiters here\n";
    struct message *m = parse(raw, sizeof raw - 1);
    (void)state;
    assert_int_equal(m->root->n_children, 0);
    assert_true(has_warning(m, "boundary"));
    assert_null(message_best_text(m, NULL));
    message_free(m);
    m = parse(raw2, sizeof raw2 - 1);
    assert_int_equal(m->root->n_children, 0);
    assert_true(has_warning(m, "not found"));
    message_free(m);
}

static void test_identical_nested_boundaries(void **state)
{
    const char raw[] = "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                       "Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                       "Content-Type: text/plain\n\ninner\n--b--\n--b--\n";
    struct message *m = parse(raw, sizeof raw - 1);
    char *t = best_text(m, NULL);
    (void)state;
    /* the outer parser takes the inner delimiters: best effort is "inner" */
    assert_non_null(t);
    assert_string_equal(t, "inner");
    free(t);
    message_free(m);
}

static void test_broken_encodings(void **state)
{
    const char raw[] = "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
                       "SGVs!!bG8g\nd29y*bGQ\n";
    const char raw2[] = "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
                        "a=ZZb=4";
    struct message *m = parse(raw, sizeof raw - 1);
    struct buf out = BUF_INIT;
    bool broken = false;
    struct err e;
    (void)state;
    assert_int_equal(message_part_text(m, m->root, &out, NULL, &broken, &e), 0);
    assert_string_equal(buf_cstr(&out), "Hello world");
    assert_true(broken);
    message_free(m);
    buf_reset(&out);
    m = parse(raw2, sizeof raw2 - 1);
    assert_int_equal(message_part_text(m, m->root, &out, NULL, &broken, &e), 0);
    assert_string_equal(buf_cstr(&out), "a=ZZb=4");
    message_free(m);
    buf_free(&out);
}

static void test_nul_bytes(void **state)
{
    const char raw[] = "Subject: a\0b\nFrom: x\0y <q@r>\n\nbody\0more";
    struct message *m = parse(raw, sizeof raw - 1);
    struct buf out = BUF_INIT;
    struct err e;
    (void)state;
    assert_string_equal(m->env.subject, "a\xef\xbf\xbd" "b");
    assert_string_equal(m->env.from.v[0].addr, "q@r");
    assert_int_equal(message_part_text(m, m->root, &out, NULL, NULL, &e), 0);
    assert_buf(&out, "body\0more", 9);
    buf_free(&out);
    message_free(m);
}

static void test_huge_line(void **state)
{
    size_t n = 50u << 20;
    char *raw = xmalloc(n + 64);
    struct message *m;
    struct buf out = BUF_INIT;
    struct err e;
    double t0 = now_s();
    int hdr = snprintf(raw, 64, "Subject: big\n\n");
    (void)state;
    memset(raw + hdr, 'x', n);
    m = parse(raw, (size_t)hdr + n);
    assert_int_equal(message_part_text(m, message_best_text(m, NULL), &out, NULL, NULL, &e), 0);
    assert_int_equal(out.len, n);
    message_free(m);
    /* a 50 MB header line: capped at max_header_bytes */
    memcpy(raw, "Subject: ", 9);
    memset(raw + 9, 'y', n);
    m = parse(raw, n + 9);
    assert_true(has_warning(m, "header block larger"));
    assert_non_null(m->env.subject);
    assert_true(strlen(m->env.subject) > 1000);
    assert_true(strlen(m->env.subject) <= (1u << 20));
    assert_int_equal(m->body_offset, n + 9);   /* no blank line: all header */
    message_free(m);
    assert_true(now_s() - t0 < 20.0);
    buf_free(&out);
    free(raw);
}

static void test_many_addresses(void **state)
{
    struct buf raw = BUF_INIT;
    struct message *m = NULL;
    struct msg_limits lim;
    struct err e;
    double t0 = now_s();
    (void)state;
    assert_int_equal(buf_puts(&raw, "To: "), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(buf_printf(&raw, "%s\"U %d\" <u%d@example.com>", i ? ", " : "", i, i), 0);
    assert_int_equal(buf_puts(&raw, "\n\nbody"), 0);
    message_limits_default(&lim);
    lim.max_header_bytes = 8u << 20;
    assert_int_equal(message_parse_headers(raw.data, raw.len, &lim, &m, &e), 0);
    assert_int_equal(m->env.to.n, 10000);
    assert_true(m->env.to.truncated);
    assert_string_equal(m->env.to.v[9999].addr, "u9999@example.com");
    assert_true(has_warning(m, "truncated"));
    message_free(m);
    assert_true(now_s() - t0 < 10.0);
    buf_free(&raw);
}

static void test_deep_nesting(void **state)
{
    struct buf raw = BUF_INIT;
    struct message *m;
    double t0 = now_s();
    char *t;
    (void)state;
    for (int i = 0; i < 5000; i++)
        assert_int_equal(buf_printf(&raw, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i), 0);
    assert_int_equal(buf_puts(&raw, "Content-Type: text/plain\n\ndeep\n"), 0);
    m = parse(raw.data, raw.len);
    assert_true(m->n_parts <= 22);
    assert_true(has_warning(m, "nesting deeper"));
    for (size_t i = 0; i < m->n_parts; i++)
        assert_true(m->parts[i]->depth <= 20);
    t = best_text(m, NULL);
    assert_null(t);
    message_free(m);
    assert_true(now_s() - t0 < 5.0);
    buf_free(&raw);
}

static void test_many_parts(void **state)
{
    struct buf raw = BUF_INIT;
    struct message *m;
    double t0 = now_s();
    (void)state;
    assert_int_equal(buf_puts(&raw, "Content-Type: multipart/mixed; boundary=b\n\n"), 0);
    for (int i = 0; i < 20000; i++)
        assert_int_equal(buf_printf(&raw, "--b\nContent-Type: text/plain\n\npart %d\n", i), 0);
    assert_int_equal(buf_puts(&raw, "--b--\n"), 0);
    m = parse(raw.data, raw.len);
    assert_int_equal(m->n_parts, 1000);
    assert_true(has_warning(m, "MIME parts"));
    message_free(m);
    assert_true(now_s() - t0 < 5.0);
    buf_free(&raw);
}

static void test_decoded_cap_and_errors(void **state)
{
    const char raw[] = "Content-Type: text/plain\n\n0123456789";
    struct message *m = NULL;
    struct msg_limits lim;
    struct buf out = BUF_INIT;
    struct err e;
    (void)state;
    message_limits_default(&lim);
    lim.max_decoded = 4;
    assert_int_equal(message_parse(raw, sizeof raw - 1, &lim, &m, &e), 0);
    assert_int_equal(message_part_decode(m, m->root, &out, NULL, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    message_free(m);
    lim.max_parts = 0;
    assert_int_equal(message_parse(raw, sizeof raw - 1, &lim, &m, &e), -1);
    assert_null(m);
    assert_int_equal(message_parse(NULL, 5, NULL, &m, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(message_parse("", 0, NULL, &m, &e), 0);
    assert_ptr_equal(message_best_text(m, NULL), m->root);   /* empty text/plain */
    message_free(m);
    buf_free(&out);
}

static void test_pathological_headers(void **state)
{
    struct buf raw = BUF_INIT;
    struct message *m;
    double t0 = now_s();
    (void)state;
    assert_int_equal(buf_puts(&raw, "Subject: "), 0);
    for (int i = 0; i < 120000; i++)           /* ~840 KB of near-words */
        assert_int_equal(buf_puts(&raw, "=?c?Q?x"), 0);
    assert_int_equal(buf_puts(&raw, "\nFrom: "), 0);
    for (int i = 0; i < 200000; i++)
        assert_int_equal(buf_puts(&raw, "(\"<"), 0);
    assert_int_equal(buf_puts(&raw, "\n\nbody"), 0);
    m = parse(raw.data, raw.len);
    assert_non_null(m->env.subject);
    assert_int_equal(strncmp(m->env.subject, "=?c?Q?x=?c?Q?x", 14), 0);
    assert_true(m->env.from.n <= 1);
    message_free(m);
    assert_true(now_s() - t0 < 5.0);
    buf_free(&raw);
}

/* Hundreds of thousands of empty ids: a stack-depth bug crashed on this. */
static void test_empty_message_ids(void **state)
{
    struct buf raw = BUF_INIT;
    struct message *m;
    (void)state;
    assert_int_equal(buf_puts(&raw, "From: a@example.org\nReferences: "), 0);
    for (int i = 0; i < 400000; i++)
        assert_int_equal(buf_puts(&raw, "<>"), 0);
    assert_int_equal(buf_puts(&raw, " <real@x>\nIn-Reply-To: <> < > <parent@x>\n"
                                    "Message-ID: <>\n\nbody"), 0);
    m = parse(raw.data, raw.len);
    assert_int_equal(m->env.n_references, 1);
    assert_string_equal(m->env.references[0], "real@x");
    assert_string_equal(m->env.in_reply_to, "parent@x");
    message_free(m);
    buf_free(&raw);
}

/* Warnings quote header values: they must still be UTF-8 (found by
 * fuzzing: raw 8-bit bytes, and "%.60s" cutting a character in two). */
static void test_warnings_utf8(void **state)
{
    static const char *const cases[] = {
        "Content-Transfer-Encoding: quoted-printable\xff\xfe\n\nbody",
        "Content-Type: \xe9t\xe9\n\nbody",
        /* 59 ASCII bytes, then a two-byte character across the cut */
        "Content-Type: 12345678901234567890123456789012345678901234567890123456789\xc3\xa9\n\nbody",
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct message *m = parse(cases[i], strlen(cases[i]));
        assert_true(m->n_warnings > 0);
        for (size_t k = 0; k < m->n_warnings; k++)
            if (!charset_valid_utf8(m->warnings[k], strlen(m->warnings[k])))
                fail_msg("case %zu: warning %zu is not UTF-8", i, k);
        message_free(m);
    }
}

static void test_header_only_speed(void **state)
{
    struct err e;
    double t0 = now_s();
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct message *m = NULL;
        assert_int_equal(message_parse_headers(env_msg, sizeof env_msg - 1, NULL, &m, &e), 0);
        assert_int_equal(m->env.to.n, 5);
        message_free(m);
    }
    assert_true(now_s() - t0 < 20.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_table),
        cmocka_unit_test(test_qp_table),
        cmocka_unit_test(test_codec_ceiling_and_encode),
        cmocka_unit_test(test_charset_table),
        cmocka_unit_test(test_charset_fix_utf8),
        cmocka_unit_test(test_rfc2047_table),
        cmocka_unit_test(test_rfc2047_encode),
        cmocka_unit_test(test_rfc2231_table),
        cmocka_unit_test(test_rfc2231_lang_and_cap),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_address_table),
        cmocka_unit_test(test_bad_date_and_8bit),
        cmocka_unit_test(test_mime_tree),
        cmocka_unit_test(test_best_text_table),
        cmocka_unit_test(test_truncated_mime),
        cmocka_unit_test(test_missing_boundary),
        cmocka_unit_test(test_identical_nested_boundaries),
        cmocka_unit_test(test_broken_encodings),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_huge_line),
        cmocka_unit_test(test_many_addresses),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_parts),
        cmocka_unit_test(test_empty_message_ids),
        cmocka_unit_test(test_decoded_cap_and_errors),
        cmocka_unit_test(test_header_only_speed),
        cmocka_unit_test(test_warnings_utf8),
        cmocka_unit_test(test_pathological_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
