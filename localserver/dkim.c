/*
 * dkim: DKIM-Signature header fields (RFC 6376) for outbound mail --
 * rsa-sha256, relaxed/relaxed canonicalization, a fixed list of signed
 * headers with From oversigned -- and the RSA key generator behind
 * `correod dkim-keygen`, which also writes the DNS record to publish.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim.h"

#define DKIM_LINE_MAX 78            /* folded signature lines, without CRLF */
#define DKIM_MAX_HEADERS 1000       /* header fields in one message */
#define DKIM_KEY_FILE_MAX (64 * 1024)
#define DKIM_KEYGEN_BITS 2048
#define DKIM_MIN_BITS 1024          /* RFC 8301: shorter keys are not accepted */
#define DKIM_TXT_STRING_MAX 255     /* one character-string of a TXT record */

/* The signed headers, in the order h= lists them. */
static const char *const signed_names[] = {
    "from", "to", "cc", "subject", "date", "message-id", "in-reply-to",
    "references", "mime-version", "content-type", "content-transfer-encoding",
    "reply-to",
};
#define SIGNED_FROM 0

struct dkim_signer {
    char *domain;
    char *selector;
    EVP_PKEY *key;
};

/* One header field of the message whose name is in signed_names. */
struct field {
    size_t off;         /* start of the name in the message */
    size_t len;         /* through the last continuation line, no line end */
    size_t name;        /* index in signed_names */
};

/* ---- small helpers ---------------------------------------------------- */

/* Appends to buffers this module made without a ceiling. */
static void put(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) != 0)
        die("dkim: append to an unbounded buffer failed");
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Fill e from the first OpenSSL error on the queue and empty the queue, so
 * a stale entry cannot confuse a later TLS call in the same thread. */
static int ssl_err(struct err *e, enum err_code code, const char *what)
{
    unsigned long ec = ERR_get_error();
    char detail[256];

    if (ec != 0)
        ERR_error_string_n(ec, detail, sizeof detail);
    else
        snprintf(detail, sizeof detail, "unknown error");
    ERR_clear_error();
    return err_set(e, code, "%s: %s", what, detail);
}

/* A host name or selector: dot-separated labels of letters, digits, '-'
 * and '_' (1..63 each, 253 in all), so it can go into a tag value or a
 * DNS name unquoted. */
static bool valid_dns_name(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];

        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* Base64 of p (no line breaks), appended to out. */
static void put_base64(struct buf *out, const unsigned char *p, size_t n)
{
    size_t need = 4 * ((n + 2) / 3) + 1;
    char *w;

    if (n > INT32_MAX / 2)
        die("dkim: base64 input too large");
    w = buf_reserve(out, need);
    if (w == NULL)
        die("dkim: reserve in an unbounded buffer failed");
    buf_commit(out, (size_t)EVP_EncodeBlock((unsigned char *)w, p, (int)n));
}

/* ---- keys ------------------------------------------------------------- */

/* A key with a passphrase is refused instead of asking on a terminal. */
static int no_passphrase(char *pw, int size, int rwflag, void *u)
{
    (void)pw;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int load_key(const char *path, EVP_PKEY **out, struct err *e)
{
    struct buf pem = BUF_INIT;
    EVP_PKEY *key = NULL;
    BIO *bio;
    int fd, rc, bits;

    /* buf_read_all reserves 64 KiB per read: past DKIM_KEY_FILE_MAX read
     * bytes the next reservation fails. */
    buf_init(&pem, DKIM_KEY_FILE_MAX + 65536);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_sys(e, "DKIM key %s", path);
        if (errno == ENOENT && e)
            e->code = ERR_NOTFOUND;
        buf_free(&pem);
        return -1;
    }
    rc = buf_read_all(&pem, fd);
    if (rc == -1)
        err_sys(e, "DKIM key %s", path);
    close(fd);
    if (rc == -2)
        err_set(e, ERR_LIMIT, "DKIM key %s: larger than %d bytes", path, DKIM_KEY_FILE_MAX);
    if (rc != 0)
        goto out;

    bio = BIO_new_mem_buf(pem.data ? pem.data : "", (int)pem.len);
    if (bio == NULL) {
        rc = ssl_err(e, ERR_IO, "DKIM key");
        goto out;
    }
    key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (key == NULL) {
        rc = ssl_err(e, ERR_PARSE, "DKIM key: no unencrypted PEM private key");
        err_prefix(e, "%s", path);
        goto out;
    }
    if (!EVP_PKEY_is_a(key, "RSA")) {
        rc = err_set(e, ERR_UNSUPPORTED, "%s: DKIM key is not an RSA key", path);
        goto out;
    }
    bits = EVP_PKEY_get_bits(key);
    if (bits < DKIM_MIN_BITS) {
        rc = err_set(e, ERR_UNSUPPORTED, "%s: DKIM key has %d bits, at least %d needed",
                     path, bits, DKIM_MIN_BITS);
        goto out;
    }
    *out = key;
    key = NULL;
    rc = 0;
out:
    if (rc != 0)
        rc = -1;
    EVP_PKEY_free(key);
    if (pem.data)
        OPENSSL_cleanse(pem.data, pem.len);
    buf_free(&pem);
    return rc;
}

int dkim_signer_new(const char *domain, const char *selector, const char *key_file,
                    struct dkim_signer **out, struct err *e)
{
    EVP_PKEY *key = NULL;
    struct dkim_signer *s;

    if (domain == NULL || !valid_dns_name(domain))
        return err_set(e, ERR_INVAL, "DKIM domain '%s' is not a valid domain name",
                       domain ? domain : "");
    if (selector == NULL || !valid_dns_name(selector))
        return err_set(e, ERR_INVAL, "DKIM selector '%s' is not a valid selector",
                       selector ? selector : "");
    if (key_file == NULL || key_file[0] == '\0')
        return err_set(e, ERR_INVAL, "no DKIM key file");
    if (load_key(key_file, &key, e) != 0)
        return -1;
    s = XNEW(struct dkim_signer);
    s->domain = xstrdup(domain);
    s->selector = xstrdup(selector);
    s->key = key;
    *out = s;
    return 0;
}

void dkim_signer_free(struct dkim_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    free(s->domain);
    free(s->selector);
    free(s);
}

/* ---- canonicalization ------------------------------------------------- */

/* Relaxed header canonicalization (RFC 6376 3.4.2) of one raw field p[0..n)
 * (name, colon, value with its continuation lines, no final line end),
 * appended to out without a line end. */
static void canon_header(const char *p, size_t n, struct buf *out)
{
    const char *colon = memchr(p, ':', n);
    size_t name_len, i;
    bool space = false, any = false;

    if (colon == NULL)
        die("dkim: header field without a colon");
    name_len = (size_t)(colon - p);
    while (name_len > 0 && is_wsp(p[name_len - 1]))
        name_len--;
    for (i = 0; i < name_len; i++) {
        char c = ascii_lower(p[i]);
        put(out, &c, 1);
    }
    put(out, ":", 1);
    for (i = (size_t)(colon - p) + 1; i < n; i++) {
        char c = p[i];

        /* Unfold: line ends vanish, the WSP after them stays. */
        if (c == '\n' || (c == '\r' && i + 1 < n && p[i + 1] == '\n'))
            continue;
        if (is_wsp(c)) {
            space = true;
            continue;
        }
        if (space && any)
            put(out, " ", 1);
        space = false;
        any = true;
        put(out, &c, 1);
    }
}

/* The body hash: canonical bytes are staged here and fed to the digest. */
struct body_sink {
    EVP_MD_CTX *md;
    unsigned char stage[16384];
    size_t n;
    int failed;
};

static void sink_flush(struct body_sink *k)
{
    if (k->n > 0 && EVP_DigestUpdate(k->md, k->stage, k->n) != 1)
        k->failed = 1;
    k->n = 0;
}

static void sink_put(struct body_sink *k, const char *p, size_t n)
{
    while (n > 0) {
        size_t room = sizeof k->stage - k->n, take = n < room ? n : room;

        memcpy(k->stage + k->n, p, take);
        k->n += take;
        p += take;
        n -= take;
        if (k->n == sizeof k->stage)
            sink_flush(k);
    }
}

/* Relaxed body canonicalization (RFC 6376 3.4.4) of p[0..n) into k: WSP
 * runs become one SP, WSP at line ends goes, empty lines at the end go,
 * every line ends in CRLF (a bare LF counts as a line end).  An empty body
 * canonicalizes to nothing. */
static void canon_body(const char *p, size_t n, struct body_sink *k)
{
    size_t empty = 0, i = 0;

    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - p) : n, start = i;
        bool space = false, any = false;

        if (nl && end > i && p[end - 1] == '\r')
            end--;
        for (size_t j = start; j < end; j++) {
            if (is_wsp(p[j])) {
                space = true;
                continue;
            }
            if (!any) {
                for (; empty > 0; empty--)
                    sink_put(k, "\r\n", 2);
                any = true;
            }
            /* Copy the run of plain bytes at once. */
            size_t r = j;
            while (r < end && !is_wsp(p[r]))
                r++;
            if (space)
                sink_put(k, " ", 1);
            space = false;
            sink_put(k, p + j, r - j);
            j = r - 1;
        }
        if (any)
            sink_put(k, "\r\n", 2);
        else
            empty++;
        i = nl ? (size_t)(nl - p) + 1 : n;
    }
}

static int body_hash(const char *p, size_t n, struct buf *b64, struct err *e)
{
    struct body_sink *k = XNEW(struct body_sink);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int rc = 0;

    k->md = EVP_MD_CTX_new();
    if (k->md == NULL || EVP_DigestInit_ex(k->md, EVP_sha256(), NULL) != 1) {
        rc = ssl_err(e, ERR_IO, "DKIM body hash");
        goto out;
    }
    canon_body(p, n, k);
    sink_flush(k);
    if (k->failed || EVP_DigestFinal_ex(k->md, md, &md_len) != 1) {
        rc = ssl_err(e, ERR_IO, "DKIM body hash");
        goto out;
    }
    put_base64(b64, md, md_len);
out:
    EVP_MD_CTX_free(k->md);
    free(k);
    return rc;
}

/* ---- the header section ---------------------------------------------- */

static int signed_index(const char *name, size_t n)
{
    for (size_t i = 0; i < ARRAY_LEN(signed_names); i++) {
        const char *s = signed_names[i];
        size_t j;

        for (j = 0; j < n && s[j] && ascii_lower(name[j]) == s[j]; j++)
            ;
        if (j == n && s[j] == '\0')
            return (int)i;
    }
    return -1;
}

/* Split msg into its header fields (keeping those to sign, in order) and
 * find where the body starts.  Linear in len; at most DKIM_MAX_HEADERS
 * fields. */
static int parse_headers(const char *msg, size_t len, struct field **out, size_t *n_out,
                         size_t *body, struct err *e)
{
    struct field *f = NULL;
    size_t n = 0, cap = 0, total = 0, pos = 0;
    bool cur = false;       /* the last field started is in f[n - 1] */

    *body = len;
    while (pos < len) {
        const char *nl = memchr(msg + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - msg) : len;
        size_t next = nl ? end + 1 : len;

        if (nl && end > pos && msg[end - 1] == '\r')
            end--;
        if (end == pos && nl) {         /* the empty line */
            *body = next;
            break;
        }
        if (is_wsp(msg[pos])) {         /* continuation line */
            if (cur)
                f[n - 1].len = end - f[n - 1].off;
            pos = next;
            continue;
        }
        if (++total > DKIM_MAX_HEADERS) {
            free(f);
            return err_set(e, ERR_LIMIT, "more than %d header fields to DKIM-sign",
                           DKIM_MAX_HEADERS);
        }
        cur = false;
        const char *colon = memchr(msg + pos, ':', end - pos);
        if (colon) {
            size_t name_len = (size_t)(colon - (msg + pos));
            int idx;

            while (name_len > 0 && is_wsp(msg[pos + name_len - 1]))
                name_len--;
            idx = signed_index(msg + pos, name_len);
            if (idx >= 0) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    f = xreallocarray(f, cap, sizeof *f);
                }
                f[n].off = pos;
                f[n].len = end - pos;
                f[n].name = (size_t)idx;
                n++;
                cur = true;
            }
        }
        pos = next;
    }
    *out = f;
    *n_out = n;
    return 0;
}

/* ---- folding ---------------------------------------------------------- */

struct fold {
    struct buf *b;
    size_t col;
};

/* Append word, after a space when space is set, starting a continuation
 * line first when the current one would grow past DKIM_LINE_MAX. */
static void fold_word(struct fold *f, const char *w, bool space)
{
    size_t n = strlen(w);

    if (f->col + n + (space ? 1 : 0) > DKIM_LINE_MAX && f->col > 1) {
        put(f->b, "\r\n ", 3);
        f->col = 1;
    } else if (space) {
        put(f->b, " ", 1);
        f->col++;
    }
    put(f->b, w, n);
    f->col += n;
}

/* Append p[0..n), breaking it wherever a line is full (for base64). */
static void fold_raw(struct fold *f, const char *p, size_t n)
{
    while (n > 0) {
        size_t room, take;

        if (f->col >= DKIM_LINE_MAX) {
            put(f->b, "\r\n ", 3);
            f->col = 1;
        }
        room = DKIM_LINE_MAX - f->col;
        take = n < room ? n : room;
        put(f->b, p, take);
        f->col += take;
        p += take;
        n -= take;
    }
}

/* ---- signing ---------------------------------------------------------- */

static int rsa_sign(EVP_PKEY *key, const struct buf *in, struct buf *b64, struct err *e)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    int rc = -1;

    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_PKEY_get_size(key) <= 0) {
        ssl_err(e, ERR_IO, "DKIM signature");
        goto out;
    }
    sig_len = (size_t)EVP_PKEY_get_size(key);
    sig = xmalloc(sig_len);
    if (EVP_DigestSign(ctx, sig, &sig_len, (const unsigned char *)buf_cstr(in),
                       in->len) != 1) {
        ssl_err(e, ERR_IO, "DKIM signature");
        goto out;
    }
    put_base64(b64, sig, sig_len);
    rc = 0;
out:
    free(sig);
    EVP_MD_CTX_free(ctx);
    return rc;
}

int dkim_sign(const struct dkim_signer *s, const char *msg, size_t len, time_t now,
              struct buf *out, struct err *e)
{
    struct buf hashed = BUF_INIT, hdr = BUF_INIT, bh = BUF_INIT, b = BUF_INIT;
    struct field *f = NULL;
    size_t nf = 0, body = 0, n_from = 0;
    struct fold fo;
    char word[128];
    bool first = true;
    int rc = -1;

    if (s == NULL || (msg == NULL && len > 0))
        return err_set(e, ERR_INVAL, "dkim_sign: no signer or message");
    if (now < 0)
        return err_set(e, ERR_INVAL, "dkim_sign: negative time");
    if (parse_headers(msg ? msg : "", len, &f, &nf, &body, e) != 0)
        return -1;
    for (size_t i = 0; i < nf; i++)
        n_from += f[i].name == SIGNED_FROM;
    if (n_from == 0) {
        free(f);
        return err_set(e, ERR_PARSE, "message has no From header field to DKIM-sign");
    }
    if (body_hash(msg + body, len - body, &bh, e) != 0)
        goto out;

    /* The header field, folded, up to an empty b=. */
    fo.b = &hdr;
    fo.col = 0;
    fold_word(&fo, "DKIM-Signature:", false);
    fold_word(&fo, "v=1;", true);
    fold_word(&fo, "a=rsa-sha256;", true);
    fold_word(&fo, "c=relaxed/relaxed;", true);
    {
        char *w = xasprintf("d=%s;", s->domain);
        fold_word(&fo, w, true);
        free(w);
        w = xasprintf("s=%s;", s->selector);
        fold_word(&fo, w, true);
        free(w);
    }
    snprintf(word, sizeof word, "t=%lld;", (long long)now);
    fold_word(&fo, word, true);

    /* h=: each present name once per instance, bottom-up (RFC 6376 5.4.2),
     * and From once more so a From added later breaks the signature. */
    for (size_t k = 0; k < ARRAY_LEN(signed_names); k++) {
        size_t count = 0;

        for (size_t i = nf; i-- > 0;) {
            if (f[i].name != k)
                continue;
            canon_header(msg + f[i].off, f[i].len, &hashed);
            put(&hashed, "\r\n", 2);
            count++;
        }
        if (k == SIGNED_FROM)
            count++;
        for (size_t c = 0; c < count; c++) {
            snprintf(word, sizeof word, "%s%s:", first ? "h=" : "", signed_names[k]);
            fold_word(&fo, word, first);
            first = false;
        }
    }
    /* The last ':' is the tag's ';'. */
    hdr.data[hdr.len - 1] = ';';
    buf_reset(&b);
    puts_(&b, "bh=");
    put(&b, bh.data, bh.len);
    puts_(&b, ";");
    fold_word(&fo, buf_cstr(&b), true);
    fold_word(&fo, "b=", true);

    /* Hash input: the signed fields, then this field with b= empty and no
     * line end (RFC 6376 3.7). */
    canon_header(hdr.data, hdr.len, &hashed);
    buf_reset(&b);
    if (rsa_sign(s->key, &hashed, &b, e) != 0)
        goto out;
    fold_raw(&fo, b.data, b.len);
    put(&hdr, "\r\n", 2);

    if (buf_append(out, hdr.data, hdr.len) != 0) {
        err_set(e, ERR_LIMIT, "no room for the DKIM-Signature header field");
        goto out;
    }
    rc = 0;
out:
    free(f);
    buf_free(&hashed);
    buf_free(&hdr);
    buf_free(&bh);
    buf_free(&b);
    return rc;
}

/* ---- key generation --------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path, struct err *e)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? xstrdup(".")
              : slash == path ? xstrdup("/")
              : xstrndup(path, (size_t)(slash - path));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0 || fsync(fd) != 0)
        rc = err_sys(e, "%s: cannot sync the directory", dir);
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

/* Put data at path (0600) durably; an existing path is left alone. */
static int write_new_file(const char *path, const char *data, size_t len, struct err *e)
{
    char *tmp = xasprintf("%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);

    if (fd < 0) {
        err_sys(e, "%s: cannot create a temporary file", path);
        free(tmp);
        return -1;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        err_sys(e, "%s: cannot write", tmp);
        close(fd);
        goto fail;
    }
    if (close(fd) != 0) {
        err_sys(e, "%s: cannot write", tmp);
        goto fail;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
        if (errno == EINVAL || errno == ENOSYS) {
            /* No RENAME_NOREPLACE on this file system: link() does not
             * replace either. */
            if (link(tmp, path) != 0)
                goto rename_failed;
            unlink(tmp);
        } else {
            goto rename_failed;
        }
    }
    free(tmp);
    return fsync_dir_of(path, e);

rename_failed:
    if (errno == EEXIST)
        err_set(e, ERR_EXISTS, "%s already exists", path);
    else
        err_sys(e, "%s: cannot create", path);
fail:
    unlink(tmp);
    free(tmp);
    return -1;
}

int dkim_keygen(const char *key_file, const char *domain, const char *selector,
                struct buf *record, struct err *e)
{
    EVP_PKEY *key = NULL;
    BIO *mem = NULL;
    unsigned char *der = NULL;
    struct buf p = BUF_INIT, rec = BUF_INIT;
    struct stat st;
    char *pem = NULL;
    long pem_len;
    int der_len, rc = -1;
    size_t orig_len;

    if (record == NULL)
        return err_set(e, ERR_INVAL, "dkim_keygen: no record buffer");
    orig_len = record->len;
    if (domain == NULL || !valid_dns_name(domain))
        return err_set(e, ERR_INVAL, "DKIM domain '%s' is not a valid domain name",
                       domain ? domain : "");
    if (selector == NULL || !valid_dns_name(selector))
        return err_set(e, ERR_INVAL, "DKIM selector '%s' is not a valid selector",
                       selector ? selector : "");
    if (key_file == NULL || key_file[0] == '\0')
        return err_set(e, ERR_INVAL, "no DKIM key file");
    if (lstat(key_file, &st) == 0)
        return err_set(e, ERR_EXISTS, "%s already exists", key_file);

    key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)DKIM_KEYGEN_BITS);
    if (key == NULL) {
        ssl_err(e, ERR_IO, "DKIM key generation");
        goto out;
    }
    mem = BIO_new(BIO_s_secmem());
    if (mem == NULL || PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL) != 1) {
        ssl_err(e, ERR_IO, "DKIM key encoding");
        goto out;
    }
    pem_len = BIO_get_mem_data(mem, &pem);
    der_len = i2d_PUBKEY(key, &der);
    if (pem_len <= 0 || pem == NULL || der_len <= 0) {
        ssl_err(e, ERR_IO, "DKIM key encoding");
        goto out;
    }

    /* The TXT record, its base64 cut into character-strings of at most
     * 255 bytes. */
    put_base64(&p, der, (size_t)der_len);
    if (buf_printf(&rec, "%s._domainkey.%s. IN TXT ( \"v=DKIM1; k=rsa; \" \"p=",
                   selector, domain) != 0)
        die("dkim: printf to an unbounded buffer failed");
    {
        size_t off = 0, room = DKIM_TXT_STRING_MAX - 2;

        while (off < p.len) {
            size_t take = p.len - off < room ? p.len - off : room;

            if (off > 0)
                puts_(&rec, " \"");
            put(&rec, p.data + off, take);
            puts_(&rec, "\"");
            off += take;
            room = DKIM_TXT_STRING_MAX;
        }
    }
    puts_(&rec, " )");
    if (buf_append(record, rec.data, rec.len) != 0) {
        err_set(e, ERR_LIMIT, "no room for the DKIM DNS record");
        goto out;
    }
    if (write_new_file(key_file, pem, (size_t)pem_len, e) != 0) {
        buf_truncate(record, orig_len);
        goto out;
    }
    rc = 0;
out:
    BIO_free(mem);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    buf_free(&p);
    buf_free(&rec);
    return rc;
}
