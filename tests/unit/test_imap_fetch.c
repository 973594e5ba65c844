/*
 * Unit tests for localserver/imap_fetch: FETCH data from a message's bytes.
 *
 * Table-driven: each case is a message (LF line ends unless it says
 * otherwise), a FETCH attribute list as a client sends it, and the exact
 * response text "(ITEM VALUE ...)" imap_fetch_write must produce, byte for
 * byte.  The shapes are the tricky ones: defaults, groups and odd
 * addresses, 8-bit header text, nested message/rfc822, sections of every
 * kind, partials across a CR LF, BINARY of base64 and quoted-printable,
 * missing parts.  Then: the CRLF slicer against a plain conversion for every
 * origin and count, BINARY of an unknown encoding, items that are not the
 * message's, and the cache record (round trip and every kind of damage).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "imap_fetch.h"
#include "imap_parse.h"
#include "testutil.h"

/* The response "(A B ...)" for items on message msg[0..len). */
static char *fetch(const char *msg, size_t len, const char *items, size_t *outlen)
{
    struct imap_command *cmd = NULL;
    struct imap_fetch_msg *fm = NULL;
    struct buf out = BUF_INIT;
    struct err e;
    char *text = xasprintf("t FETCH 1 (%s)", items);

    if (imap_parse(text, strlen(text), NULL, &cmd, &e) < 0)
        fail_msg("%s: %s", text, e.text);
    assert_int_equal(imap_fetch_open(msg, len, &fm, &e), 0);
    assert_int_equal(buf_putc(&out, '('), 0);
    for (size_t i = 0; i < cmd->fetch.n; i++) {
        if (i > 0)
            assert_int_equal(buf_putc(&out, ' '), 0);
        if (imap_fetch_write(fm, &cmd->fetch.atts[i], &out, &e) < 0)
            fail_msg("%s: %s", items, e.text);
    }
    assert_int_equal(buf_putc(&out, ')'), 0);
    imap_fetch_close(fm);
    imap_command_free(cmd);
    free(text);
    return buf_steal(&out, outlen);
}

struct fcase {
    const char *name;
    const char *msg;
    const char *items;
    const char *want;
};

#define SIMPLE \
    "From: Ann Example <ann@example.org>\n" \
    "To: bob@example.net\n" \
    "Subject: Hello\n" \
    "Date: Mon, 1 Jan 2024 10:00:00 +0000\n" \
    "Message-ID: <m1@example.org>\n" \
    "\n" \
    "line one\n" \
    "line two\n"

#define MIXED \
    "From: a@b.example\n" \
    "Subject: parts\n" \
    "MIME-Version: 1.0\n" \
    "Content-Type: Multipart/Mixed; boundary=\"XX\"; foo=bar\n" \
    "Content-Language: en, de\n" \
    "\n" \
    "preamble\n" \
    "--XX\n" \
    "Content-Type: text/plain; format=flowed\n" \
    "\n" \
    "hi\n" \
    "--XX\n" \
    "Content-Type: application/octet-stream; name=\"a b.bin\"\n" \
    "Content-Transfer-Encoding: base64\n" \
    "Content-Disposition: attachment; filename=\"a b.bin\"\n" \
    "Content-ID: <c1@x>\n" \
    "Content-Description: some bytes\n" \
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n" \
    "Content-Location: http://x.example/a\n" \
    "\n" \
    "AAFBQg==\n" \
    "--XX\n" \
    "Content-Type: text/plain; charset=ISO-8859-1\n" \
    "Content-Transfer-Encoding: quoted-printable\n" \
    "\n" \
    "caf=E9 soft=\n" \
    "break\n" \
    "--XX--\n" \
    "epilogue\n"

#define NESTED \
    "From: outer@example.org\n" \
    "Subject: fwd\n" \
    "Content-Type: multipart/mixed; boundary=b1\n" \
    "\n" \
    "--b1\n" \
    "\n" \
    "see below\n" \
    "--b1\n" \
    "Content-Type: message/rfc822\n" \
    "\n" \
    "From: inner@example.org\n" \
    "Subject: inner\n" \
    "X-Extra: 1\n" \
    "\n" \
    "inner body\n" \
    "--b1--\n"

static const struct fcase cases[] = {
    {"size counts CRLF", SIMPLE, "RFC822.SIZE", "(RFC822.SIZE 164)"},
    {"envelope defaults sender and reply-to", SIMPLE, "ENVELOPE",
     "(ENVELOPE (\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hello\" "
     "((\"Ann Example\" NIL \"ann\" \"example.org\")) "
     "((\"Ann Example\" NIL \"ann\" \"example.org\")) "
     "((\"Ann Example\" NIL \"ann\" \"example.org\")) "
     "((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \"<m1@example.org>\"))"},
    {"one-part defaults", SIMPLE, "BODYSTRUCTURE BODY",
     "(BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 20 2 "
     "NIL NIL NIL NIL) BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 20 2))"},
    {"sections of a one-part message", SIMPLE,
     "BODY[1] BODY.PEEK[TEXT] RFC822.TEXT BODY[HEADER.FIELDS (subject X-NONE)]",
     "(BODY[1] {20}\r\nline one\r\nline two\r\n BODY[TEXT] {20}\r\nline one\r\nline two\r\n "
     "RFC822.TEXT {20}\r\nline one\r\nline two\r\n "
     "BODY[HEADER.FIELDS (subject X-NONE)] {18}\r\nSubject: Hello\r\n\r\n)"},
    {"header and not-fields", SIMPLE, "BODY[HEADER.FIELDS.NOT (From To Date Message-ID)]",
     "(BODY[HEADER.FIELDS.NOT (From To Date Message-ID)] {18}\r\nSubject: Hello\r\n\r\n)"},
    {"partial inside and past the end", SIMPLE, "BODY[TEXT]<4.6> BODY[TEXT]<100.5> BODY[]<0.6>",
     "(BODY[TEXT]<4> {6}\r\n one\r\n BODY[TEXT]<100> \"\" BODY[]<0> {6}\r\nFrom: )"},
    {"partial starting between CR and LF", SIMPLE, "BODY[TEXT]<9.3>",
     "(BODY[TEXT]<9> {3}\r\n\nli)"},
    {"groups, routes, comments, quoted names",
     "From: \"Doe, \\\"J\\\"\" <@relay.example:j@d.example>\n"
     "To: undisclosed:;, team: a@b.example, C <c@d.example>;, x@y.example (Xavier Y)\n"
     "Cc: nodomain\n"
     "\n",
     "ENVELOPE",
     "(ENVELOPE (NIL NIL "
     "((\"Doe, \\\"J\\\"\" \"@relay.example\" \"j\" \"d.example\")) "
     "((\"Doe, \\\"J\\\"\" \"@relay.example\" \"j\" \"d.example\")) "
     "((\"Doe, \\\"J\\\"\" \"@relay.example\" \"j\" \"d.example\")) "
     "((NIL NIL \"undisclosed\" NIL)(NIL NIL NIL NIL)(NIL NIL \"team\" NIL)"
     "(NIL NIL \"a\" \"b.example\")(\"C\" NIL \"c\" \"d.example\")(NIL NIL NIL NIL)"
     "(\"Xavier Y\" NIL \"x\" \"y.example\")) "
     "((NIL NIL \"nodomain\" \"MISSING_DOMAIN\")) NIL NIL NIL))"},
    {"empty addresses, repeated fields",
     "To: <>, \"\" <a@b>\nSubject: one\nSubject: two\n\n",
     "ENVELOPE",
     "(ENVELOPE (NIL \"two\" NIL NIL NIL "
     "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(NIL NIL \"a\" \"b\")) NIL NIL NIL NIL))"},
    {"RFC 2231 continuations joined",
     "Content-Type: application/x-y; a*1=\"2\"; a*0=\"1\"; b*0*=utf-8''%41; b*1*=%42; c*1=z\n"
     "\nx\n",
     "BODY",
     "(BODY (\"application\" \"x-y\" (\"a\" \"12\" \"b*\" \"utf-8''%41%42\" \"c*1\" \"z\") NIL NIL "
     "\"7bit\" 3))"},
    {"8-bit and folded header text",
     "Subject: caf\xc3\xa9\n"
     "Date: Tue,\n 2 Jan 2024 00:00:00 +0000\n"
     "In-Reply-To: <a@b>\n"
     "\n",
     "ENVELOPE",
     "(ENVELOPE (\"Tue, 2 Jan 2024 00:00:00 +0000\" {5}\r\ncaf\xc3\xa9 NIL NIL NIL NIL NIL "
     "NIL \"<a@b>\" NIL))"},
    {"multipart with extension data", MIXED, "BODYSTRUCTURE",
     "(BODYSTRUCTURE ((\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"us-ascii\") NIL NIL "
     "\"7bit\" 2 0 NIL NIL NIL NIL)"
     "(\"application\" \"octet-stream\" (\"name\" \"a b.bin\") \"<c1@x>\" \"some bytes\" "
     "\"base64\" 8 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"attachment\" (\"filename\" \"a b.bin\")) NIL "
     "\"http://x.example/a\")"
     "(\"text\" \"plain\" (\"charset\" \"ISO-8859-1\") NIL NIL \"quoted-printable\" 19 1 NIL NIL "
     "NIL NIL) "
     "\"Mixed\" (\"boundary\" \"XX\" \"foo\" \"bar\") NIL (\"en\" \"de\") NIL))"},
    {"multipart BODY", MIXED, "BODY",
     "(BODY ((\"text\" \"plain\" (\"format\" \"flowed\" \"charset\" \"us-ascii\") NIL NIL \"7bit\" "
     "2 0)(\"application\" \"octet-stream\" (\"name\" \"a b.bin\") \"<c1@x>\" \"some bytes\" "
     "\"base64\" 8)(\"text\" \"plain\" (\"charset\" \"ISO-8859-1\") NIL NIL "
     "\"quoted-printable\" 19 1) \"Mixed\"))"},
    {"part sections", MIXED, "BODY[1] BODY[1.MIME] BODY[3]",
     "(BODY[1] {2}\r\nhi BODY[1.MIME] {43}\r\nContent-Type: text/plain; format=flowed\r\n\r\n "
     "BODY[3] {19}\r\ncaf=E9 soft=\r\nbreak)"},
    {"binary of base64 with a NUL", MIXED, "BINARY.PEEK[2] BINARY.SIZE[2] BINARY[2]<1.2>",
     "(BINARY[2] ~{4}\r\n\0\1AB BINARY.SIZE[2] 4 BINARY[2] {2}\r\n\1A)"},
    {"binary of quoted-printable", MIXED, "BINARY[3] BINARY.SIZE[3]",
     "(BINARY[3] {14}\r\ncaf\xe9 softbreak BINARY.SIZE[3] 14)"},
    {"binary of 7bit and of the whole message", SIMPLE, "BINARY[1] BINARY.SIZE[]",
     "(BINARY[1] {20}\r\nline one\r\nline two\r\n BINARY.SIZE[] 164)"},
    {"missing parts are empty", MIXED, "BODY[4] BODY[1.2] BINARY[9] BINARY.SIZE[9]",
     "(BODY[4] \"\" BODY[1.2] \"\" BINARY[9] \"\" BINARY.SIZE[9] 0)"},
    {"header of a part that is not a message", MIXED, "BODY[1.HEADER] BODY[1.TEXT]",
     "(BODY[1.HEADER] \"\" BODY[1.TEXT] \"\")"},
    {"one language tag is a list too", "Content-Language: fr\n\nx\n", "BODYSTRUCTURE",
     "(BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL "
     "NIL (\"fr\") NIL))"},
    {"nested message structure", NESTED, "BODYSTRUCTURE",
     "(BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 0 NIL "
     "NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 65 (NIL \"inner\" "
     "((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) "
     "((NIL NIL \"inner\" \"example.org\")) NIL NIL NIL NIL NIL) "
     "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 4 "
     "NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))"},
    {"sections inside a nested message", NESTED,
     "BODY[2.HEADER] BODY[2.TEXT] BODY[2.1] BODY[2.HEADER.FIELDS (SUBJECT)] BODY[2.MIME] "
     "BODY[2.1.MIME]",
     "(BODY[2.HEADER] {55}\r\nFrom: inner@example.org\r\nSubject: inner\r\nX-Extra: 1\r\n\r\n "
     "BODY[2.TEXT] {10}\r\ninner body BODY[2.1] {10}\r\ninner body "
     "BODY[2.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n "
     "BODY[2.MIME] {32}\r\nContent-Type: message/rfc822\r\n\r\n "
     "BODY[2.1.MIME] {55}\r\nFrom: inner@example.org\r\nSubject: inner\r\nX-Extra: 1\r\n\r\n)"},
    {"a part without a header", NESTED, "BODY[1] BODY[1.MIME]",
     "(BODY[1] {9}\r\nsee below BODY[1.MIME] {2}\r\n\r\n)"},
    {"CRLF file stays as it is",
     "Subject: x\r\n\r\nbody\r\n", "RFC822.SIZE BODY[TEXT] BODY[HEADER]",
     "(RFC822.SIZE 20 BODY[TEXT] {6}\r\nbody\r\n BODY[HEADER] {14}\r\nSubject: x\r\n\r\n)"},
    {"no header at all", "\nbody only\n", "ENVELOPE RFC822.SIZE BODY[HEADER]",
     "(ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) RFC822.SIZE 13 BODY[HEADER] {2}\r\n\r\n)"},
    {"multipart without its boundary",
     "Content-Type: multipart/alternative; boundary=zz\n\nno parts here\n", "BODY",
     "(BODY ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0) "
     "\"alternative\"))"},
    {"an encoded message/rfc822 still has envelope, body and lines",
     "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogeAoKeQo=\n",
     "BODY",
     "(BODY (\"message\" \"rfc822\" NIL NIL NIL \"base64\" 22 (NIL NIL NIL NIL NIL NIL NIL NIL "
     "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 22 1) 1))"},
    {"upper-case default charset written as the default",
     "Content-Type: TEXT/Plain; CHARSET=US-ASCII\n\nx\n", "BODY",
     "(BODY (\"TEXT\" \"Plain\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7bit\" 3 1))"},
    {"RFC822 and RFC822.HEADER", "A: 1\n\nb\n", "RFC822 RFC822.HEADER",
     "(RFC822 {11}\r\nA: 1\r\n\r\nb\r\n RFC822.HEADER {8}\r\nA: 1\r\n\r\n)"},
};

static void test_cases(void **state)
{
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct fcase *c = &cases[i];
        size_t msglen = strlen(c->msg), wantlen = strlen(c->want), len;
        char *got;

        /* the one case holding a NUL in its answer */
        if (strstr(c->name, "NUL"))
            wantlen = strlen(c->want) + 1 + strlen(c->want + strlen(c->want) + 1);
        got = fetch(c->msg, msglen, c->items, &len);
        if (len != wantlen || memcmp(got, c->want, len) != 0) {
            print_error("case \"%s\"\n got: %.*s\nwant: %.*s\n", c->name, (int)len, got,
                        (int)wantlen, c->want);
            bad++;
        }
        free(got);
    }
    assert_int_equal(bad, 0);
}

/* Naive CRLF conversion, for comparison. */
static char *to_crlf(const char *s, size_t n, size_t *outlen)
{
    char *o = xmalloc(2 * n + 1);
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
            o[k++] = '\r';
        o[k++] = s[i];
    }
    *outlen = k;
    return o;
}

static void test_crlf_slices(void **state)
{
    static const char *const inputs[] = {
        "", "\n", "\r\n", "a\nb\r\nc", "\n\n\r\n\r\r\n", "no line end", "x\r", "ab\n\ncd\r\n\n",
    };
    (void)state;
    for (size_t t = 0; t < ARRAY_LEN(inputs); t++) {
        const char *s = inputs[t];
        size_t n = strlen(s), full_len;
        char *full = to_crlf(s, n, &full_len);

        assert_int_equal(imap_crlf_size(s, 0, n), full_len);
        for (uint64_t o = 0; o <= full_len + 1; o++) {
            for (uint64_t c = 0; c <= full_len + 2; c++) {
                struct buf b = BUF_INIT;
                size_t want = o >= full_len ? 0 : (full_len - o < c ? full_len - o : c);
                assert_int_equal(imap_crlf_append(&b, s, 0, n, o, c), 0);
                assert_int_equal(b.len, want);
                if (want)
                    assert_memory_equal(b.data, full + o, want);
                buf_free(&b);
            }
            struct buf b = BUF_INIT;
            assert_int_equal(imap_crlf_append(&b, s, 0, n, o, UINT64_MAX), 0);
            assert_int_equal(b.len, o >= full_len ? 0 : full_len - o);
            buf_free(&b);
        }
        free(full);
    }
}

/* First attribute of items, parsed. */
static struct imap_command *parse_items(const char *items)
{
    struct imap_command *cmd = NULL;
    struct err e;
    char *text = xasprintf("t FETCH 1 (%s)", items);

    assert_int_equal(imap_parse(text, strlen(text), NULL, &cmd, &e), 0);
    free(text);
    return cmd;
}

static void test_unknown_cte(void **state)
{
    static const char msg[] =
        "Content-Type: multipart/mixed; boundary=q\n\n--q\n"
        "Content-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n--q--\n";
    struct imap_fetch_msg *fm;
    struct imap_command *cmd = parse_items("BINARY[1] BINARY.SIZE[1] BODY[1]");
    struct buf out = BUF_INIT;
    uint64_t size = 0;
    struct err e;

    (void)state;
    assert_int_equal(imap_fetch_open(msg, sizeof msg - 1, &fm, &e), 0);
    assert_int_equal(imap_fetch_write(fm, &cmd->fetch.atts[0], &out, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    assert_int_equal(out.len, 0);
    assert_int_equal(imap_fetch_binary_size(fm, &cmd->fetch.atts[1], &size, &e), -1);
    assert_int_equal(e.code, ERR_UNSUPPORTED);
    /* BODY[] is not decoded, so it is fine */
    assert_int_equal(imap_fetch_write(fm, &cmd->fetch.atts[2], &out, &e), 0);
    assert_string_equal(buf_cstr(&out), "BODY[1] {11}\r\nbegin 644 f");
    buf_free(&out);
    imap_command_free(cmd);
    imap_fetch_close(fm);
}

static void test_session_items_refused(void **state)
{
    static const char *const items[] = {"FLAGS", "UID", "INTERNALDATE"};
    struct imap_fetch_msg *fm;
    struct err e;

    (void)state;
    assert_int_equal(imap_fetch_open("A: b\n\n", 6, &fm, &e), 0);
    for (size_t i = 0; i < ARRAY_LEN(items); i++) {
        struct imap_command *cmd = parse_items(items[i]);
        struct buf out = BUF_INIT;
        assert_int_equal(imap_fetch_write(fm, &cmd->fetch.atts[0], &out, &e), -1);
        assert_int_equal(e.code, ERR_INVAL);
        assert_int_equal(out.len, 0);
        buf_free(&out);
        imap_command_free(cmd);
    }
    imap_fetch_close(fm);
}

static void test_ceiling(void **state)
{
    struct imap_fetch_msg *fm;
    struct imap_command *cmd = parse_items("BODY[]");
    struct buf out;
    struct err e;

    (void)state;
    buf_init(&out, 16);
    assert_int_equal(buf_puts(&out, "x"), 0);
    assert_int_equal(imap_fetch_open(MIXED, strlen(MIXED), &fm, &e), 0);
    assert_int_equal(imap_fetch_write(fm, &cmd->fetch.atts[0], &out, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(buf_cstr(&out), "x");    /* nothing half-written */
    buf_free(&out);
    imap_command_free(cmd);
    imap_fetch_close(fm);
}

static void test_cache_roundtrip(void **state)
{
    struct imap_fetch_msg *fm;
    struct imap_fetch_cache c, d;
    struct buf rec = BUF_INIT, env = BUF_INIT, bs = BUF_INIT, body = BUF_INIT;
    size_t used = 0;
    struct err e;

    (void)state;
    assert_int_equal(imap_fetch_open(NESTED, strlen(NESTED), &fm, &e), 0);
    imap_fetch_cache_make(fm, &c);
    assert_int_equal(imap_fetch_envelope(fm, &env), 0);
    assert_int_equal(imap_fetch_bodystructure(fm, true, &bs), 0);
    assert_int_equal(imap_fetch_bodystructure(fm, false, &body), 0);
    assert_int_equal(c.raw_size, strlen(NESTED));
    assert_int_equal(c.rfc822_size, imap_fetch_size(fm));
    assert_int_equal(c.envelope_len, env.len);
    assert_memory_equal(c.envelope, env.data, env.len);
    assert_memory_equal(c.bodystructure, bs.data, bs.len);
    assert_memory_equal(c.body, body.data, body.len);

    assert_int_equal(buf_puts(&rec, "junk before"), 0);
    assert_int_equal(imap_fetch_cache_encode(&c, &rec), 0);
    assert_int_equal(buf_puts(&rec, "next"), 0);
    assert_int_equal(imap_fetch_cache_decode(rec.data + 11, rec.len - 11, strlen(NESTED), &d,
                                             &used, &e), 0);
    assert_int_equal(used, rec.len - 11 - 4);
    assert_int_equal(d.raw_size, c.raw_size);
    assert_int_equal(d.rfc822_size, c.rfc822_size);
    assert_int_equal(d.envelope_len, c.envelope_len);
    assert_memory_equal(d.envelope, c.envelope, c.envelope_len);
    assert_int_equal(d.bodystructure_len, c.bodystructure_len);
    assert_memory_equal(d.bodystructure, c.bodystructure, c.bodystructure_len);
    assert_int_equal(d.body_len, c.body_len);
    assert_memory_equal(d.body, c.body, c.body_len);
    imap_fetch_cache_free(&d);

    /* any doubt: every single flipped byte, every truncation, the version,
     * a file that changed size */
    {
        const char *r = rec.data + 11;
        size_t n = used;
        char *copy = xmemdup0(r, n);
        for (size_t i = 0; i < n; i++) {
            copy[i] ^= 0x20;
            assert_int_equal(imap_fetch_cache_decode(copy, n, UINT64_MAX, &d, &used, &e), -1);
            assert_int_equal(e.code, ERR_PARSE);
            assert_null(d.envelope);
            copy[i] ^= 0x20;
        }
        for (size_t k = 0; k < n; k++)
            assert_int_equal(imap_fetch_cache_decode(copy, k, UINT64_MAX, &d, &used, &e), -1);
        copy[3] = 2;
        assert_int_equal(imap_fetch_cache_decode(copy, n, UINT64_MAX, &d, &used, &e), -1);
        assert_non_null(strstr(e.text, "version"));
        copy[3] = (char)IMAP_FETCH_CACHE_VERSION;
        assert_int_equal(imap_fetch_cache_decode(copy, n, strlen(NESTED) + 1, &d, &used, &e), -1);
        assert_non_null(strstr(e.text, "changed"));
        assert_int_equal(imap_fetch_cache_decode(copy, n, UINT64_MAX, &d, &used, &e), 0);
        imap_fetch_cache_free(&d);
        free(copy);
    }
    buf_free(&rec);
    buf_free(&env);
    buf_free(&bs);
    buf_free(&body);
    imap_fetch_cache_free(&c);
    imap_fetch_close(fm);
}

static void test_cache_encode_ceiling(void **state)
{
    struct imap_fetch_msg *fm;
    struct imap_fetch_cache c;
    struct buf rec;
    struct err e;

    (void)state;
    buf_init(&rec, 30);
    assert_int_equal(imap_fetch_open(SIMPLE, strlen(SIMPLE), &fm, &e), 0);
    imap_fetch_cache_make(fm, &c);
    assert_int_equal(buf_puts(&rec, "keep"), 0);
    assert_int_equal(imap_fetch_cache_encode(&c, &rec), -1);
    assert_string_equal(buf_cstr(&rec), "keep");
    buf_free(&rec);
    imap_fetch_cache_free(&c);
    imap_fetch_close(fm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_crlf_slices),
        cmocka_unit_test(test_unknown_cte),
        cmocka_unit_test(test_session_items_refused),
        cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_cache_roundtrip),
        cmocka_unit_test(test_cache_encode_ceiling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
