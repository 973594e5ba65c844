/* Tests for localserver/relay's 8-bit to 7-bit conversion (RFC 6152):
 * messages converted by relay_to_7bit() are parsed back with lib/message;
 * the result must be 7-bit, lines within the limits of their encoding,
 * every converted part must decode to exactly the bytes it had, parts that
 * needed nothing must be byte for byte what they were, and what cannot be
 * converted (8-bit headers, encoded parts holding 8-bit bytes) must fail
 * without leaving anything behind.  The queue runner's SMTP side is tested
 * against real servers in tests/integration/correod_queue.py. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"
#include "relay.h"
#include "testutil.h"

/* 7-bit only, CRLF line ends only, no line longer than max (without CRLF). */
static void check_7bit(const struct buf *b, size_t max)
{
    size_t col = 0;

    for (size_t i = 0; i < b->len; i++) {
        unsigned char c = (unsigned char)b->data[i];

        assert_true(c < 0x80);
        if (c == '\n') {
            assert_true(i > 0 && b->data[i - 1] == '\r');
            col = 0;
            continue;
        }
        if (c == '\r') {
            assert_true(i + 1 < b->len && b->data[i + 1] == '\n');
            continue;
        }
        col++;
        if (col > max)
            fail_msg("line longer than %zu at byte %zu", max, i);
    }
}

static struct message *parse(const struct buf *b)
{
    struct message *m;
    struct err e;

    assert_int_equal(message_parse(b->data, b->len, NULL, &m, &e), 0);
    return m;
}

/* The decoded body of part p must be want (len bytes). */
static void check_decodes(const struct message *m, const struct msg_part *p, const char *want,
                          size_t len)
{
    struct buf d = BUF_INIT;
    bool broken = false;
    struct err e;

    assert_int_equal(message_part_decode(m, p, &d, &broken, &e), 0);
    assert_false(broken);
    if (d.len != len || memcmp(d.data, want, len) != 0)
        fail_msg("decoded %zu bytes \"%.*s\", want %zu \"%s\"", d.len, (int)d.len,
                 d.data ? d.data : "", len, want);
    buf_free(&d);
}

/* The value of header field name (first occurrence) in the header block of
 * part p, trimmed; NULL when absent. */
static char *field(const struct message *m, const struct msg_part *p, const char *name)
{
    const char *h = m->raw + p->header_offset;
    size_t n = p->body_offset - p->header_offset, i = 0, nl = strlen(name);

    while (i < n) {
        const char *line = h + i;
        const char *eol = memchr(line, '\n', n - i);
        size_t ll = eol ? (size_t)(eol - line) + 1 : n - i;

        if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t vl = ll - nl - 1;

            while (vl > 0 && (*v == ' ' || *v == '\t'))
                v++, vl--;
            while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
                vl--;
            return xstrndup(v, vl);
        }
        i += ll;
    }
    return NULL;
}

static void assert_field(const struct message *m, const struct msg_part *p, const char *name,
                         const char *want)
{
    char *v = field(m, p, name);

    if (want == NULL) {
        if (v != NULL)
            fail_msg("%s: unexpected \"%s\"", name, v);
        return;
    }
    if (v == NULL)
        fail_msg("%s missing, want \"%s\"", name, want);
    assert_string_equal(v, want);
    free(v);
}

static int count_fields(const struct message *m, const struct msg_part *p, const char *name)
{
    const char *h = m->raw + p->header_offset;
    size_t n = p->body_offset - p->header_offset, nl = strlen(name);
    int count = 0;

    for (size_t i = 0; i < n;) {
        const char *eol = memchr(h + i, '\n', n - i);
        size_t ll = eol ? (size_t)(eol - (h + i)) + 1 : n - i;

        if (ll > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':')
            count++;
        i += ll;
    }
    return count;
}

/* Single text parts: quoted-printable, decoding back to the same bytes;
 * the header keeps everything but its old Content-Transfer-Encoding. */
static void test_single_text(void **state)
{
    static const struct {
        const char *name;
        const char *header;     /* without the empty line */
        const char *body;
        const char *ctype;      /* Content-Type afterwards (NULL: none) */
    } cases[] = {
        {"utf-8 declared",
         "From: a@example.test\r\nSubject: caf\\xc3\\xa9\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
         "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9""e\r\nline two\r\n",
         "text/plain; charset=utf-8"},
        {"folded CTE field",
         "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding:\r\n\t8bit\r\n"
         "Content-Type: text/plain;\r\n charset=iso-8859-1\r\nX-After: kept\r\n",
         "na\xefve \xe9t\xe9\r\n", "text/plain;"},
        {"no MIME at all, UTF-8",
         "From: a@example.test\r\nSubject: plain\r\n",
         "gr\xc3\xbc\xc3\x9f""e\r\n", "text/plain; charset=utf-8"},
        {"no MIME at all, not UTF-8",
         "From: a@example.test\r\nSubject: plain\r\n",
         "gr\xfc\xdf""e\r\n", "text/plain; charset=unknown-8bit"},
        {"qp edge cases",
         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
         /* '=' signs, white space at line ends, a line far longer than 76
          * with 8-bit bytes where a soft break falls, a NUL-free bare CR
          * and LF inside a line, a dot line, no final line end */
         "a=b \r\ntab\t\r\n\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "\xc3\xa9=\xc3\xa9 \r\nbare\rcr and\nlf\r\n.\r\nend \xc3\xa9 ",
         "text/plain; charset=utf-8"},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct buf in = BUF_INIT, out = BUF_INIT;
        struct message *m;
        struct err e;
        char *body;

        assert_int_equal(buf_printf(&in, "%s\r\n%s", cases[i].header, cases[i].body), 0);
        assert_int_equal(buf_puts(&out, "KEEP"), 0);   /* appended to, not replaced */
        if (relay_to_7bit(in.data, in.len, &out, &e) != 0)
            fail_msg("case %s: %s", cases[i].name, e.text);
        assert_memory_equal(out.data, "KEEP", 4);
        buf_consume(&out, 4);
        check_7bit(&out, 76);
        m = parse(&out);
        assert_non_null(m->root);
        assert_int_equal(m->root->encoding, MSG_ENC_QP);
        assert_int_equal(count_fields(m, m->root, "Content-Transfer-Encoding"), 1);
        assert_int_equal(count_fields(m, m->root, "MIME-Version"), 1);
        assert_field(m, m->root, "Content-Transfer-Encoding", "quoted-printable");
        if (strstr(cases[i].header, "X-After") != NULL)
            assert_field(m, m->root, "X-After", "kept");
        {
            char *ct = field(m, m->root, "Content-Type");

            assert_non_null(ct);
            assert_true(strncmp(ct, cases[i].ctype, strlen(cases[i].ctype)) == 0);
            free(ct);
        }
        assert_field(m, m->root, "From", strstr(cases[i].header, "From:") ? "a@example.test"
                                                                          : NULL);
        check_decodes(m, m->root, cases[i].body, strlen(cases[i].body));
        /* the body holds no '=' that is not an escape or a soft break, and
         * no line ends in white space (transports may strip it) */
        body = xstrndup(out.data + m->root->body_offset, m->root->body_size);
        for (char *p = body; *p; p++) {
            if (p[0] == ' ' || p[0] == '\t')
                assert_true(p[1] != '\r' && p[1] != '\0');
        }
        for (char *p = strchr(body, '='); p != NULL; p = strchr(p + 1, '=')) {
            assert_true((p[1] == '\r' && p[2] == '\n') ||
                        (strchr("0123456789ABCDEF", p[1]) && p[1] &&
                         strchr("0123456789ABCDEF", p[2]) && p[2]));
        }
        free(body);
        message_free(m);
        buf_free(&in);
        buf_free(&out);
    }
}

/* A multipart message: 8-bit text part to quoted-printable, a binary
 * attachment to base64, a 7-bit part untouched, a nested message/rfc822
 * converted inside and relabelled, and the top level's "8bit" label
 * changed to 7bit. */
static void test_multipart(void **state)
{
    static const char bin[] = "\x89PNG\r\n\x1a\n\x00\x01\xff\xfe binary";
    static const size_t bin_len = sizeof(bin) - 1;
    static const char text[] = "Gr\xc3\xbc\xc3\x9f""e aus K\xc3\xb6ln\r\n";
    static const char inner_text[] = "inner \xe2\x82\xac 5\r\n";
    static const char seven[] = "plain ascii part\r\n";
    struct buf in = BUF_INIT, out = BUF_INIT;
    const struct msg_part *root, *p_text, *p_seven, *p_bin, *p_msg, *p_inner;
    struct message *m;
    struct err e;

    (void)state;
    assert_int_equal(buf_puts(&in,
        "From: a@example.test\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=\"XX\"\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "preamble\r\n--XX\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"), 0);
    assert_int_equal(buf_puts(&in, text), 0);
    assert_int_equal(buf_puts(&in, "\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"), 0);
    assert_int_equal(buf_puts(&in, seven), 0);
    assert_int_equal(buf_puts(&in, "\r\n--XX\r\nContent-Type: image/png\r\n"
                                   "Content-Transfer-Encoding: binary\r\n\r\n"), 0);
    assert_int_equal(buf_append(&in, bin, bin_len), 0);
    assert_int_equal(buf_puts(&in, "\r\n--XX\r\nContent-Type: message/rfc822\r\n"
                                   "Content-Transfer-Encoding: 8bit\r\n\r\n"
                                   "Subject: inner\r\nMIME-Version: 1.0\r\n"
                                   "Content-Type: text/plain; charset=utf-8\r\n\r\n"), 0);
    assert_int_equal(buf_puts(&in, inner_text), 0);
    assert_int_equal(buf_puts(&in, "\r\n--XX--\r\nepilogue\r\n"), 0);

    assert_int_equal(relay_to_7bit(in.data, in.len, &out, &e), 0);
    check_7bit(&out, 998);
    m = parse(&out);
    root = m->root;
    assert_string_equal(root->type, "multipart");
    assert_int_equal(root->encoding, MSG_ENC_7BIT);
    assert_field(m, root, "Content-Transfer-Encoding", "7bit");
    assert_int_equal(count_fields(m, root, "Content-Transfer-Encoding"), 1);
    assert_int_equal(root->n_children, 4);
    p_text = root->children[0];
    p_seven = root->children[1];
    p_bin = root->children[2];
    p_msg = root->children[3];

    assert_int_equal(p_text->encoding, MSG_ENC_QP);
    assert_field(m, p_text, "Content-Type", "text/plain; charset=utf-8");
    check_decodes(m, p_text, text, strlen(text));

    /* untouched: the same bytes, header and body */
    {
        static const char same[] = "--XX\r\nContent-Type: text/plain\r\n\r\n"
                                   "plain ascii part\r\n\r\n--XX";

        assert_non_null(memmem(out.data, out.len, same, sizeof(same) - 1));
    }
    check_decodes(m, p_seven, seven, strlen(seven));

    assert_int_equal(p_bin->encoding, MSG_ENC_BASE64);
    assert_field(m, p_bin, "Content-Type", "image/png");
    check_decodes(m, p_bin, bin, bin_len);

    assert_string_equal(p_msg->subtype, "rfc822");
    assert_field(m, p_msg, "Content-Transfer-Encoding", "7bit");
    assert_int_equal(p_msg->n_children, 1);
    p_inner = p_msg->children[0];
    assert_int_equal(p_inner->encoding, MSG_ENC_QP);
    assert_field(m, p_inner, "Subject", "inner");
    check_decodes(m, p_inner, inner_text, strlen(inner_text));

    assert_non_null(memmem(out.data, out.len, "\r\n\r\npreamble\r\n--XX\r\n", 20));
    assert_non_null(memmem(out.data, out.len, "--XX--\r\nepilogue\r\n", 18));
    message_free(m);
    buf_free(&in);
    buf_free(&out);
}

/* What cannot be converted fails with ERR_UNSUPPORTED and appends nothing;
 * a message already 7-bit comes out unchanged. */
static void test_refusals_and_noop(void **state)
{
    static const struct {
        const char *name;
        const char *msg;
        bool ok;
    } cases[] = {
        {"8-bit Subject", "Subject: caf\xc3\xa9\r\n\r\nbody \xc3\xa9\r\n", false},
        {"8-bit header in a part",
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/plain; name=\"\xc3\xa9.txt\"\r\n\r\nx\r\n--b--\r\n", false},
        {"8-bit preamble",
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\xc3\xa9\r\n"
         "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n", false},
        {"base64 part with 8-bit bytes",
         "MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64"
         "\r\n\r\naGVsbG8=\xff\r\n", false},
        {"unknown encoding",
         "MIME-Version: 1.0\r\nContent-Type: application/x-thing\r\n"
         "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin \xff\r\n", false},
        {"multipart without its boundary",
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
         "no delimiter \xc3\xa9\r\n", false},
        {"7-bit already", "Subject: x\r\nMIME-Version: 1.0\r\n"
                          "Content-Transfer-Encoding: 7bit\r\n\r\nascii\r\n", true},
        {"7-bit multipart",
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/plain\r\n\r\nx\r\n--b--\r\n", true},
    };

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct buf out = BUF_INIT;
        size_t len = strlen(cases[i].msg);
        struct err e;
        int rc;

        assert_int_equal(buf_puts(&out, "KEEP"), 0);
        rc = relay_to_7bit(cases[i].msg, len, &out, &e);
        if (rc != (cases[i].ok ? 0 : -1))
            fail_msg("case %s: %d %s", cases[i].name, rc, rc < 0 ? e.text : "");
        if (cases[i].ok) {
            assert_int_equal(out.len, 4 + len);
            assert_memory_equal(out.data + 4, cases[i].msg, len);
        } else {
            assert_int_equal(e.code, ERR_UNSUPPORTED);
            assert_int_equal(out.len, 4);
        }
        buf_free(&out);
    }
}

/* Longer bodies: every byte value, many lines; base64 lines of 76. */
static void test_all_bytes(void **state)
{
    struct buf body = BUF_INIT, in = BUF_INIT, out = BUF_INIT;
    const char *types[] = {"text/plain; charset=x-user-defined", "application/octet-stream"};

    (void)state;
    for (int round = 0; round < 40; round++) {
        for (int c = 0; c < 256; c++) {
            char ch = (char)c;

            assert_int_equal(buf_append(&body, &ch, 1), 0);
        }
        assert_int_equal(buf_puts(&body, "\r\n"), 0);
    }
    for (size_t t = 0; t < ARRAY_LEN(types); t++) {
        struct message *m;
        struct err e;

        buf_reset(&in);
        buf_reset(&out);
        assert_int_equal(buf_printf(&in, "MIME-Version: 1.0\r\nContent-Type: %s\r\n"
                                         "Content-Transfer-Encoding: binary\r\n\r\n",
                                    types[t]), 0);
        assert_int_equal(buf_append(&in, body.data, body.len), 0);
        assert_int_equal(relay_to_7bit(in.data, in.len, &out, &e), 0);
        check_7bit(&out, 76);
        m = parse(&out);
        assert_int_equal(m->root->encoding, t == 0 ? MSG_ENC_QP : MSG_ENC_BASE64);
        check_decodes(m, m->root, body.data, body.len);
        message_free(m);
    }
    buf_free(&body);
    buf_free(&in);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_text),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_refusals_and_noop),
        cmocka_unit_test(test_all_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
