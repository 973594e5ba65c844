/* Tests for localserver/dkim: relaxed header and body canonicalization
 * (checked through bh= and through signatures verified over canonical input
 * built here by hand), the signed header list with From oversigned, the
 * folded header field, errors, and key generation with its DNS record. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "dkim.h"
#include "testutil.h"

#define NOW ((time_t)1700000000)

static char *tmp;               /* private directory of this run */
static char *key_path;          /* 2048-bit RSA key made in group_setup */
static EVP_PKEY *pub;           /* the same key, for verifying */
static struct dkim_signer *signer;

/* ---- helpers ------------------------------------------------------------ */

static char *tmp_path(const char *name)
{
    return xasprintf("%s/%s", tmp, name);
}

static void write_pem(const char *path, EVP_PKEY *k, const EVP_CIPHER *enc)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, enc, NULL, 0, NULL,
                                          enc ? (void *)"secret" : NULL), 1);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static char *b64(const void *p, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);

    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* Decode base64 without whitespace; *n gets the real length. */
static unsigned char *unb64(const char *s, size_t *n)
{
    size_t len = strlen(s), pad = 0;
    unsigned char *out = xmalloc(len / 4 * 3 + 3);
    int r;

    assert_int_equal(len % 4, 0);
    r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    assert_true(r >= 0);
    if (len >= 1 && s[len - 1] == '=')
        pad++;
    if (len >= 2 && s[len - 2] == '=')
        pad++;
    *n = (size_t)r - pad;
    return out;
}

static char *sha256_b64(const char *p, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    assert_int_equal(EVP_Digest(p, n, md, &md_len, EVP_sha256(), NULL), 1);
    return b64(md, md_len);
}

/* The tags of one DKIM-Signature header field. */
struct sig {
    char *raw;          /* the header field without its final CRLF */
    char *tag[16][2];   /* name, value (FWS removed) */
    size_t n;
};

static void sig_free(struct sig *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->tag[i][0]);
        free(s->tag[i][1]);
    }
    free(s->raw);
    memset(s, 0, sizeof *s);
}

static const char *tag(const struct sig *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->tag[i][0], name) == 0)
            return s->tag[i][1];
    fail_msg("no %s= tag", name);
    return NULL;
}

/* Check the form of the header field (one field, CRLF line ends, folded
 * lines of at most 78 characters) and split its tags. */
static void parse_sig(const char *hdr, size_t len, struct sig *s)
{
    const char *p = hdr, *end = hdr + len;
    struct buf un = BUF_INIT;
    char *v, *save = NULL, *t;

    memset(s, 0, sizeof *s);
    assert_true(len > 17);
    assert_memory_equal(hdr, "DKIM-Signature: ", 16);
    assert_memory_equal(end - 2, "\r\n", 2);
    assert_null(memchr(hdr, '\0', len));
    s->raw = xstrndup(hdr, len - 2);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));

        assert_non_null(nl);
        assert_true(nl > p && nl[-1] == '\r');
        assert_true(nl - 1 - p <= 78);
        if (p != hdr)
            assert_true(*p == ' ');
        assert_int_equal(buf_append(&un, p, (size_t)(nl - 1 - p)), 0);
        p = nl + 1;
    }
    v = strchr(un.data, ':') + 1;
    for (t = strtok_r(v, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(t, '='), *name, *val, *w;

        assert_non_null(eq);
        *eq = '\0';
        name = t;
        while (*name == ' ' || *name == '\t')
            name++;
        val = xstrdup(eq + 1);
        w = val;
        for (char *r = val; *r; r++)
            if (*r != ' ' && *r != '\t')
                *w++ = *r;
        *w = '\0';
        assert_true(s->n < 16);
        s->tag[s->n][0] = xstrndup(name, strcspn(name, " \t"));
        s->tag[s->n][1] = val;
        s->n++;
    }
    buf_free(&un);
}

/* This field canonicalized (relaxed) with b= emptied, as a verifier builds
 * it: unfold, drop the b= value, lower-case the name, one SP per WSP run,
 * no WSP around the colon or at the end. */
static char *sig_canon(const struct sig *s)
{
    struct buf un = BUF_INIT, out = BUF_INIT;
    const char *c, *b = NULL;
    bool space = false;

    for (const char *p = s->raw; *p; p++)
        if (*p != '\r' && *p != '\n')
            assert_int_equal(buf_putc(&un, *p), 0);
    for (c = un.data; (c = strstr(c, "b=")) != NULL; c += 2)
        if (c[-1] == ' ' || c[-1] == ';')
            b = c;
    assert_non_null(b);
    assert_null(strchr(b, ';'));
    buf_truncate(&un, (size_t)(b - un.data) + 2);
    assert_int_equal(buf_puts(&out, "dkim-signature:"), 0);
    c = strchr(un.data, ':') + 1;
    while (*c == ' ' || *c == '\t')
        c++;
    for (; *c; c++) {
        if (*c == ' ' || *c == '\t') {
            space = true;
            continue;
        }
        if (space)
            assert_int_equal(buf_putc(&out, ' '), 0);
        space = false;
        assert_int_equal(buf_putc(&out, *c), 0);
    }
    buf_free(&un);
    return buf_steal(&out, NULL);
}

/* Does b= verify over headers (the canonical signed fields) followed by the
 * canonical signature field? */
static bool verifies(EVP_PKEY *k, const struct sig *s, const char *headers)
{
    char *own = sig_canon(s);
    char *in = xasprintf("%s%s", headers, own);
    size_t sig_len;
    unsigned char *sg = unb64(tag(s, "b"), &sig_len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int r;

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
    r = EVP_DigestVerify(ctx, sg, sig_len, (const unsigned char *)in, strlen(in));
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    free(sg);
    free(in);
    free(own);
    return r == 1;
}

/* Sign msg with the shared signer; the header field goes to s. */
static void sign_ok(const char *msg, struct sig *s)
{
    struct buf out = BUF_INIT;
    struct err e;

    err_clear(&e);
    if (dkim_sign(signer, msg, strlen(msg), NOW, &out, &e) != 0)
        fail_msg("dkim_sign: %s", e.text);
    parse_sig(out.data, out.len, s);
    buf_free(&out);
}

/* ---- setup -------------------------------------------------------------- */

static int group_setup(void **state)
{
    EVP_PKEY *k;
    struct err e;

    (void)state;
    tmp = tu_tmpdir("dkim");
    key_path = tmp_path("test.key");
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (k == NULL)
        return -1;
    write_pem(key_path, k, NULL);
    pub = k;
    if (dkim_signer_new("example.test", "sel1", key_path, &signer, &e) != 0) {
        fprintf(stderr, "dkim_signer_new: %s\n", e.text);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dkim_signer_free(signer);
    EVP_PKEY_free(pub);
    tu_rm_rf(tmp);
    free(tmp);
    free(key_path);
    return 0;
}

/* ---- body canonicalization ---------------------------------------------- */

struct body_case {
    const char *body;
    const char *canon;
};

static const struct body_case body_cases[] = {
    /* RFC 6376 3.4.4: an empty body is the null input. */
    {"", ""},
    {"\r\n", ""},
    {"\r\n\r\n\r\n", ""},
    {" \t \r\n\t\r\n", ""},
    {"abc", "abc\r\n"},
    {"abc\r\n", "abc\r\n"},
    {"abc\r\n\r\n\r\n", "abc\r\n"},
    {"abc\r\n \r\n\t \r\n", "abc\r\n"},
    {"a  b\t\tc \t\r\n", "a b c\r\n"},
    {" \tlead\r\n", " lead\r\n"},
    {"x\r\n\r\ny\r\n", "x\r\n\r\ny\r\n"},
    {"x\r\n   \r\ny\r\n\r\n", "x\r\n\r\ny\r\n"},
    /* RFC 6376 3.4.5's example body */
    {" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"},
    {"a\nb\n\n", "a\r\nb\r\n"},
    {"caf\xc3\xa9  \xff\r\n", "caf\xc3\xa9 \xff\r\n"},
    {"a\rb\r\n", "a\rb\r\n"},
    {"trailing ws no crlf  ", "trailing ws no crlf\r\n"},
    {".\r\n..dots\r\n", ".\r\n..dots\r\n"},
};

static void test_body_canon(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(body_cases); i++) {
        const struct body_case *c = &body_cases[i];
        char *msg = xasprintf("From: a@example.test\r\nSubject: s\r\n\r\n%s", c->body);
        char *want = sha256_b64(c->canon, strlen(c->canon));
        struct sig s;

        sign_ok(msg, &s);
        if (strcmp(tag(&s, "bh"), want) != 0)
            fail_msg("body case %zu: bh=%s, want %s", i, tag(&s, "bh"), want);
        assert_true(verifies(pub, &s, "from:a@example.test\r\nsubject:s\r\n"));
        sig_free(&s);
        free(want);
        free(msg);
    }
}

/* A long body with many lines and WSP runs: bh= matches a canonical form
 * built here line by line. */
static void test_body_large(void **state)
{
    struct buf body = BUF_INIT, canon = BUF_INIT;
    struct sig s;
    char *msg, *want;

    (void)state;
    for (int i = 0; i < 50000; i++) {
        assert_int_equal(buf_printf(&body, "line %d\t\t  x%s\r\n", i, i % 7 ? "" : "   "), 0);
        assert_int_equal(buf_printf(&canon, "line %d x\r\n", i), 0);
        if (i % 1000 == 0) {
            assert_int_equal(buf_puts(&body, "\r\n \r\n"), 0);
            assert_int_equal(buf_puts(&canon, "\r\n\r\n"), 0);
        }
    }
    assert_int_equal(buf_puts(&body, "\r\n\r\n  \r\n"), 0);
    msg = xasprintf("From: a@example.test\r\n\r\n%s", buf_cstr(&body));
    want = sha256_b64(canon.data, canon.len);
    sign_ok(msg, &s);
    assert_string_equal(tag(&s, "bh"), want);
    sig_free(&s);
    free(want);
    free(msg);
    buf_free(&body);
    buf_free(&canon);
}

/* ---- header canonicalization and selection ------------------------------ */

struct header_case {
    const char *headers;    /* the header section (and blank line) */
    const char *canon;      /* the signed fields, canonical, in h= order */
    const char *h;          /* the h= value */
};

static const struct header_case header_cases[] = {
    /* RFC 6376 3.4.5's example, with names that are signed */
    {"From: X\r\nSubject : Y\t\r\n\tZ  \r\n\r\n",
     "from:X\r\nsubject:Y Z\r\n", "from:from:subject"},
    {"FROM:a@example.test\r\nsUbJeCt:   hi \t  there  \r\n\r\n",
     "from:a@example.test\r\nsubject:hi there\r\n", "from:from:subject"},
    /* folded over several lines, continuation with tabs */
    {"To: one@example.test,\r\n  two@example.test,\r\n\tthree@example.test\r\n"
     "From: f@example.test\r\n\r\n",
     "from:f@example.test\r\nto:one@example.test, two@example.test, three@example.test\r\n",
     "from:from:to"},
    {"Subject:\r\n starts folded\r\nFrom: f\r\n\r\n",
     "from:f\r\nsubject:starts folded\r\n", "from:from:subject"},
    /* repeated names: chosen bottom-up */
    {"To: 1\r\nFrom: f\r\nTo: 2\r\nReceived: x\r\nTo: 3\r\n\r\n",
     "from:f\r\nto:3\r\nto:2\r\nto:1\r\n", "from:from:to:to:to"},
    {"From: first\r\nFrom: second\r\n\r\n",
     "from:second\r\nfrom:first\r\n", "from:from:from"},
    /* unlisted fields, a line without a colon, an empty value */
    {"Received: from x by y\r\nX-Mailer: m\r\nnot a header\r\nCc:\r\n"
     "From: f\r\nX-From: no\r\nFromage: no\r\n\r\n",
     "from:f\r\ncc:\r\n", "from:from:cc"},
    /* every listed name, out of order: h= keeps the list's order */
    {"Reply-To: r\r\nContent-Transfer-Encoding: 8bit\r\nContent-Type: text/plain;\r\n"
     " charset=utf-8\r\nMIME-Version: 1.0\r\nReferences: <a@b>\r\nIn-Reply-To: <a@b>\r\n"
     "Message-ID: <m@example.test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
     "Subject: all\r\nCc: c\r\nTo: t\r\nFrom: f\r\n\r\n",
     "from:f\r\nto:t\r\ncc:c\r\nsubject:all\r\ndate:Mon, 23 Nov 2026 12:00:00 +0000\r\n"
     "message-id:<m@example.test>\r\nin-reply-to:<a@b>\r\nreferences:<a@b>\r\n"
     "mime-version:1.0\r\ncontent-type:text/plain; charset=utf-8\r\n"
     "content-transfer-encoding:8bit\r\nreply-to:r\r\n",
     "from:from:to:cc:subject:date:message-id:in-reply-to:references:mime-version:"
     "content-type:content-transfer-encoding:reply-to"},
    /* LF-only line ends */
    {"From: f\nSubject: a\n  b\n\n", "from:f\r\nsubject:a b\r\n", "from:from:subject"},
    /* no blank line: all header, empty body */
    {"From: f\r\nTo: t\r\n", "from:f\r\nto:t\r\n", "from:from:to"},
    /* 8-bit in a value is kept as it is */
    {"From: Jos\xc3\xa9 <j@example.test>\r\n\r\n",
     "from:Jos\xc3\xa9 <j@example.test>\r\n", "from:from"},
    /* what follows the blank line is body, not header */
    {"From: f\r\n\r\nTo: not a header\r\n", "from:f\r\n", "from:from"},
};

static void test_header_canon(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(header_cases); i++) {
        const struct header_case *c = &header_cases[i];
        char *msg = xasprintf("%sbody\r\n", c->headers);
        struct sig s;

        sign_ok(msg, &s);
        if (strcmp(tag(&s, "h"), c->h) != 0)
            fail_msg("header case %zu: h=%s, want %s", i, tag(&s, "h"), c->h);
        if (!verifies(pub, &s, c->canon))
            fail_msg("header case %zu: signature does not verify", i);
        /* A changed byte in the signed input must break it. */
        char *bad = xstrdup(c->canon);
        bad[strlen(bad) - 3] ^= 1;
        assert_false(verifies(pub, &s, bad));
        free(bad);
        sig_free(&s);
        free(msg);
    }
}

/* The fixed tags, t=, and the form of the field. */
static void test_tags(void **state)
{
    struct sig s;

    (void)state;
    sign_ok("From: a@example.test\r\nTo: b@example.test\r\n\r\nhello\r\n", &s);
    assert_string_equal(tag(&s, "v"), "1");
    assert_string_equal(tag(&s, "a"), "rsa-sha256");
    assert_string_equal(tag(&s, "c"), "relaxed/relaxed");
    assert_string_equal(tag(&s, "d"), "example.test");
    assert_string_equal(tag(&s, "s"), "sel1");
    assert_string_equal(tag(&s, "t"), "1700000000");
    assert_string_equal(s.tag[0][0], "v");
    assert_string_equal(s.tag[s.n - 1][0], "b");
    assert_int_equal(strlen(tag(&s, "b")), 344);  /* 256 bytes of RSA-2048 */
    sig_free(&s);
}

/* Many To fields make a long h= that must fold and still verify. */
static void test_folding(void **state)
{
    struct buf msg = BUF_INIT, canon = BUF_INIT, h = BUF_INIT;
    struct sig s;

    (void)state;
    assert_int_equal(buf_puts(&msg, "From: f@example.test\r\n"), 0);
    assert_int_equal(buf_puts(&canon, "from:f@example.test\r\n"), 0);
    assert_int_equal(buf_puts(&h, "from:from"), 0);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(buf_printf(&msg, "To:   rcpt%d@example.test  \r\n", i), 0);
        assert_int_equal(buf_puts(&h, ":to"), 0);
    }
    for (int i = 39; i >= 0; i--)
        assert_int_equal(buf_printf(&canon, "to:rcpt%d@example.test\r\n", i), 0);
    assert_int_equal(buf_puts(&msg, "\r\nbody\r\n"), 0);
    sign_ok(msg.data, &s);      /* parse_sig checks the line lengths */
    assert_true(strchr(s.raw, '\n') != NULL);
    assert_string_equal(tag(&s, "h"), h.data);
    assert_true(verifies(pub, &s, canon.data));
    sig_free(&s);
    buf_free(&msg);
    buf_free(&canon);
    buf_free(&h);
}

/* At most 1000 header fields; beyond that the message is refused. */
static void test_header_limit(void **state)
{
    struct buf msg = BUF_INIT, out = BUF_INIT;
    struct err e;

    (void)state;
    assert_int_equal(buf_puts(&msg, "From: f\r\n"), 0);
    for (int i = 1; i < 1000; i++)
        assert_int_equal(buf_printf(&msg, "To: t%d\r\n", i), 0);
    assert_int_equal(buf_puts(&msg, "\r\nbody\r\n"), 0);
    assert_int_equal(dkim_sign(signer, msg.data, msg.len, NOW, &out, &e), 0);
    assert_true(out.len > 0);
    buf_reset(&out);
    buf_reset(&msg);
    assert_int_equal(buf_puts(&msg, "From: f\r\n"), 0);
    for (int i = 1; i <= 1000; i++)
        assert_int_equal(buf_printf(&msg, "X-H: %d\r\n", i), 0);
    assert_int_equal(buf_puts(&msg, "\r\nbody\r\n"), 0);
    assert_int_equal(dkim_sign(signer, msg.data, msg.len, NOW, &out, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_int_equal(out.len, 0);
    buf_free(&msg);
    buf_free(&out);
}

/* ---- errors ------------------------------------------------------------- */

static void test_sign_errors(void **state)
{
    static const char *const no_from[] = {
        "",
        "\r\nFrom: in the body\r\n",
        "To: t\r\nSubject: s\r\n\r\nbody\r\n",
        "Fromage: f\r\nX-From: f\r\n\r\n",
        "From f@example.test Mon Nov 23 2026\r\nTo: t\r\n\r\n",
        " From: a continuation without a field\r\n\r\n",
    };
    struct buf out = BUF_INIT;
    struct err e;

    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(no_from); i++) {
        err_clear(&e);
        assert_int_equal(dkim_sign(signer, no_from[i], strlen(no_from[i]), NOW, &out, &e), -1);
        assert_int_equal(e.code, ERR_PARSE);
        assert_non_null(strstr(e.text, "From"));
        assert_int_equal(out.len, 0);
    }
    /* A ceiling on out: nothing appended, an error. */
    buf_init(&out, 100);
    assert_int_equal(buf_puts(&out, "keep"), 0);
    assert_int_equal(dkim_sign(signer, "From: f\r\n\r\n", 11, NOW, &out, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    assert_string_equal(buf_cstr(&out), "keep");
    buf_free(&out);
    buf_init(&out, 0);
    /* The header goes after what out already holds. */
    assert_int_equal(buf_puts(&out, "X: y\r\n"), 0);
    assert_int_equal(dkim_sign(signer, "From: f\r\n\r\n", 11, NOW, &out, &e), 0);
    assert_memory_equal(out.data, "X: y\r\nDKIM-Signature: ", 22);
    buf_free(&out);
    assert_int_equal(dkim_sign(signer, "From: f\r\n\r\n", 11, (time_t)-1, &out, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    buf_free(&out);
}

struct key_case {
    const char *file;       /* in tmp */
    const char *domain;
    const char *selector;
    enum err_code code;
};

static void test_signer_errors(void **state)
{
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    char *p;

    (void)state;
    assert_non_null(ec);
    assert_non_null(small);
    p = tmp_path("ec.key");
    write_pem(p, ec, NULL);
    free(p);
    p = tmp_path("small.key");
    write_pem(p, small, NULL);
    free(p);
    p = tmp_path("enc.key");
    write_pem(p, pub, EVP_aes_256_cbc());
    free(p);
    p = tmp_path("garbage.key");
    write_text(p, "-----BEGIN PRIVATE KEY-----\nnot base64 !!\n-----END PRIVATE KEY-----\n");
    free(p);
    p = tmp_path("cert.pem");
    write_text(p, "just text\n");
    free(p);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(small);

    static const struct key_case cases[] = {
        {"missing.key", "example.test", "s", ERR_NOTFOUND},
        {"ec.key", "example.test", "s", ERR_UNSUPPORTED},
        {"small.key", "example.test", "s", ERR_UNSUPPORTED},
        {"enc.key", "example.test", "s", ERR_PARSE},
        {"garbage.key", "example.test", "s", ERR_PARSE},
        {"cert.pem", "example.test", "s", ERR_PARSE},
        {".", "example.test", "s", ERR_IO},
        {"test.key", "exa;mple.test", "s", ERR_INVAL},
        {"test.key", "example.test.", "s", ERR_INVAL},
        {"test.key", "", "s", ERR_INVAL},
        {"test.key", "-bad.example", "s", ERR_INVAL},
        {"test.key", "example.test", "s; x=y", ERR_INVAL},
        {"test.key", "example.test", "", ERR_INVAL},
        {"test.key", "example.test", "a..b", ERR_INVAL},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct dkim_signer *s = NULL;
        struct err e;

        p = tmp_path(cases[i].file);
        err_clear(&e);
        if (dkim_signer_new(cases[i].domain, cases[i].selector, p, &s, &e) != -1)
            fail_msg("key case %zu accepted", i);
        if (e.code != cases[i].code)
            fail_msg("key case %zu: %s (%s)", i, err_code_name(e.code), e.text);
        assert_null(s);
        assert_true(e.text[0] != '\0');
        assert_int_equal(ERR_peek_error(), 0);
        free(p);
    }
    /* Fine domain and selector forms. */
    struct dkim_signer *s = NULL;
    struct err e;
    assert_int_equal(dkim_signer_new("Mail-1.Example.TEST", "2026_11.sel", key_path, &s, &e), 0);
    dkim_signer_free(s);
    dkim_signer_free(NULL);
}

/* ---- keygen ------------------------------------------------------------- */

/* The character-strings of the record, joined (the TXT data). */
static char *txt_data(const char *rec)
{
    struct buf out = BUF_INIT;
    const char *p = strchr(rec, '(');

    assert_non_null(p);
    for (;;) {
        const char *q = strchr(p, '"'), *r;

        if (q == NULL)
            break;
        r = strchr(q + 1, '"');
        assert_non_null(r);
        assert_true(r - q - 1 <= 255);
        assert_int_equal(buf_append(&out, q + 1, (size_t)(r - q - 1)), 0);
        p = r + 1;
    }
    return buf_steal(&out, NULL);
}

static size_t dir_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_keygen(void **state)
{
    char *dir = tmp_path("kg"), *key = tmp_path("kg/dkim.key"), *data, *pem;
    struct buf rec = BUF_INIT, again = BUF_INIT;
    struct dkim_signer *s = NULL;
    EVP_PKEY *from_rec, *from_file;
    const unsigned char *dp;
    unsigned char *der;
    struct stat st;
    struct err e;
    struct sig sg;
    size_t der_len;
    FILE *f;

    (void)state;
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(buf_puts(&rec, "> "), 0);
    if (dkim_keygen(key, "example.test", "mysel", &rec, &e) != 0)
        fail_msg("dkim_keygen: %s", e.text);

    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(dir_entries(dir), 1);
    f = fopen(key, "r");
    assert_non_null(f);
    pem = xmalloc(64);
    assert_non_null(fgets(pem, 64, f));
    assert_string_equal(pem, "-----BEGIN PRIVATE KEY-----\n");   /* PKCS#8 */
    free(pem);
    rewind(f);
    from_file = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(from_file);
    assert_true(EVP_PKEY_is_a(from_file, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(from_file), 2048);

    const char *prefix = "> mysel._domainkey.example.test. IN TXT ( \"v=DKIM1; k=rsa; \" \"p=";
    assert_memory_equal(rec.data, prefix, strlen(prefix));
    assert_string_equal(rec.data + rec.len - 2, " )");
    assert_null(strchr(rec.data, '\n'));
    data = txt_data(rec.data);
    assert_memory_equal(data, "v=DKIM1; k=rsa; p=", 18);
    der = unb64(data + 18, &der_len);
    dp = der;
    from_rec = d2i_PUBKEY(NULL, &dp, (long)der_len);
    assert_non_null(from_rec);
    assert_int_equal(EVP_PKEY_eq(from_rec, from_file), 1);

    /* The key signs, and the record's key verifies. */
    assert_int_equal(dkim_signer_new("example.test", "mysel", key, &s, &e), 0);
    {
        struct buf out = BUF_INIT;
        const char *msg = "From: a@example.test\r\n\r\nhi\r\n";

        assert_int_equal(dkim_sign(s, msg, strlen(msg), NOW, &out, &e), 0);
        parse_sig(out.data, out.len, &sg);
        assert_string_equal(tag(&sg, "s"), "mysel");
        assert_true(verifies(from_rec, &sg, "from:a@example.test\r\n"));
        assert_false(verifies(pub, &sg, "from:a@example.test\r\n"));
        sig_free(&sg);
        buf_free(&out);
    }
    dkim_signer_free(s);

    /* An existing key is never replaced. */
    assert_int_equal(dkim_keygen(key, "example.test", "mysel", &again, &e), -1);
    assert_int_equal(e.code, ERR_EXISTS);
    assert_int_equal(again.len, 0);
    f = fopen(key, "r");
    assert_non_null(f);
    EVP_PKEY *still = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(still);
    assert_int_equal(EVP_PKEY_eq(still, from_file), 1);
    EVP_PKEY_free(still);
    assert_int_equal(dir_entries(dir), 1);

    /* Errors leave the record alone and no file behind. */
    char *nodir = tmp_path("no/such/dir.key");
    assert_int_equal(dkim_keygen(nodir, "example.test", "s", &again, &e), -1);
    assert_int_equal(e.code, ERR_IO);
    assert_int_equal(again.len, 0);
    free(nodir);
    char *k2 = tmp_path("kg/other.key");
    assert_int_equal(dkim_keygen(k2, "example.test", "bad selector", &again, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(dkim_keygen(k2, "bad_domain;", "s", &again, &e), -1);
    assert_int_equal(e.code, ERR_INVAL);
    assert_int_equal(again.len, 0);
    assert_int_equal(dir_entries(dir), 1);
    free(k2);

    EVP_PKEY_free(from_rec);
    EVP_PKEY_free(from_file);
    free(der);
    free(data);
    buf_free(&rec);
    buf_free(&again);
    free(key);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_canon),
        cmocka_unit_test(test_body_large),
        cmocka_unit_test(test_header_canon),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_sign_errors),
        cmocka_unit_test(test_signer_errors),
        cmocka_unit_test(test_keygen),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
