/* tls: OpenSSL client/server contexts, verification, pinning, self-signed
 * certificates. */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define HOST_MAX 253
#define NAMES_TEXT_MAX 200
#define GENCERT_DAYS_MAX 36500

/* ---- helpers ------------------------------------------------------------ */

void tls_error_reason(char *out, size_t size)
{
    unsigned long code = ERR_get_error();
    const char *reason;

    if (code == 0) {
        snprintf(out, size, "unknown error");
    } else if ((reason = ERR_reason_error_string(code)) != NULL) {
        snprintf(out, size, "%s", reason);
    } else {
        ERR_error_string_n(code, out, size);
    }
    ERR_clear_error();
}

static int set_openssl_err(struct err *e, enum err_code code, const char *what)
{
    char reason[200];

    tls_error_reason(reason, sizeof(reason));
    return err_set(e, code, "%s: %s", what, reason);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void format_fingerprint(const unsigned char md[TLS_SHA256_LEN],
                               char out[TLS_FINGERPRINT_SIZE])
{
    static const char digits[] = "0123456789ABCDEF";
    size_t i;
    char *p = out;

    for (i = 0; i < TLS_SHA256_LEN; i++) {
        if (i > 0)
            *p++ = ':';
        *p++ = digits[md[i] >> 4];
        *p++ = digits[md[i] & 0x0f];
    }
    *p = '\0';
}

static bool is_ip_literal(const char *s)
{
    unsigned char addr[16];

    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* Append s to out (of size `size`, currently NUL-terminated) with every byte
 * outside printable ASCII, and the backslash, written as \xNN.  Returns
 * false when something did not fit (out then ends in "..."). */
static bool append_escaped(char *out, size_t size, const unsigned char *s, size_t n)
{
    size_t len = strlen(out);
    size_t i;

    for (i = 0; i < n; i++) {
        char piece[5];
        size_t plen;

        if (s[i] > 0x20 && s[i] < 0x7f && s[i] != '\\') {
            piece[0] = (char)s[i];
            piece[1] = '\0';
        } else {
            snprintf(piece, sizeof(piece), "\\x%02x", s[i]);
        }
        plen = strlen(piece);
        if (len + plen + 4 > size) {
            if (len + 4 <= size)
                memcpy(out + len, "...", 4);
            return false;
        }
        memcpy(out + len, piece, plen + 1);
        len += plen;
    }
    return true;
}

/* Append our own text, which needs no escaping. */
static bool append_plain(char *out, size_t size, const char *s)
{
    size_t len = strlen(out), n = strlen(s);

    if (len + n + 4 > size) {
        if (len + 4 <= size)
            memcpy(out + len, "...", 4);
        return false;
    }
    memcpy(out + len, s, n + 1);
    return true;
}

/* ---- fingerprints ------------------------------------------------------- */

int tls_parse_fingerprint(const char *text, unsigned char out[TLS_SHA256_LEN],
                          struct err *e)
{
    const char *p = text;
    size_t len, i, n = 0;
    bool colons;

    if (p == NULL)
        return err_set(e, ERR_INVAL, "fingerprint missing");
    if (strncasecmp(p, "SHA256:", 7) == 0)
        p += 7;
    len = strlen(p);
    if (len == TLS_SHA256_LEN * 2)
        colons = false;
    else if (len == TLS_SHA256_LEN * 3 - 1)
        colons = true;
    else
        return err_set(e, ERR_INVAL,
                       "fingerprint must be 64 hex digits, plain or as AB:CD:... pairs");
    for (i = 0; i < len; n++) {
        int hi = hexval((unsigned char)p[i]);
        int lo = hexval((unsigned char)p[i + 1]);

        if (hi < 0 || lo < 0)
            return err_set(e, ERR_INVAL, "fingerprint: not a hex digit at position %zu",
                           (size_t)(p - text) + i + (hi < 0 ? 1 : 2));
        out[n] = (unsigned char)(hi << 4 | lo);
        i += 2;
        if (colons && i < len) {
            if (p[i] != ':')
                return err_set(e, ERR_INVAL, "fingerprint: expected ':' at position %zu",
                               (size_t)(p - text) + i + 1);
            i++;
        }
    }
    return 0;
}

int tls_cert_fingerprint(const X509 *cert, char out[TLS_FINGERPRINT_SIZE], struct err *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (cert == NULL)
        return err_set(e, ERR_INVAL, "no certificate");
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != TLS_SHA256_LEN)
        return set_openssl_err(e, ERR_TLS, "certificate digest");
    format_fingerprint(md, out);
    return 0;
}

int tls_cert_file_fingerprint(const char *path, char out[TLS_FINGERPRINT_SIZE],
                              struct err *e)
{
    BIO *bio;
    X509 *cert;
    int r;

    out[0] = '\0';
    ERR_clear_error();
    bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        char what[300];

        snprintf(what, sizeof(what), "certificate file %s", path);
        return set_openssl_err(e, ERR_IO, what);
    }
    cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (cert == NULL) {
        char what[300];

        snprintf(what, sizeof(what), "certificate file %s", path);
        return set_openssl_err(e, ERR_PARSE, what);
    }
    r = tls_cert_fingerprint(cert, out, e);
    X509_free(cert);
    return r;
}

/* ---- client verification state ------------------------------------------ */

struct verify_state {
    bool pinned;
    bool no_verify;         /* accept whatever was seen (opportunistic) */
    bool seen;              /* the verification callback ran */
    unsigned char pin[TLS_SHA256_LEN];
    bool accepted;          /* our verification accepted the peer */
    bool pin_mismatch;
    bool host_mismatch;
    int chain_error;        /* first X509_V_ERR_* other than a name mismatch */
    char fp[TLS_FINGERPRINT_SIZE];   /* leaf fingerprint, "" until seen */
    char names[NAMES_TEXT_MAX];      /* what the leaf is for, escaped */
    char host[HOST_MAX + 1];
};

static int state_idx = -1;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;

static void state_free_cb(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                          long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void state_idx_init(void)
{
    state_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, state_free_cb);
}

static struct verify_state *state_of(const SSL *ssl)
{
    if (ssl == NULL || state_idx < 0)
        return NULL;
    return SSL_get_ex_data(ssl, state_idx);
}

/* Describe which names the leaf certificate is valid for. */
static void describe_names(X509 *leaf, char *out, size_t size)
{
    GENERAL_NAMES *gens;
    int i, count = 0;

    out[0] = '\0';
    gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char ip[INET6_ADDRSTRLEN];
        bool ok = true;

        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;

            if (count > 0)
                ok = append_plain(out, size, ", ");
            if (ok)
                ok = append_escaped(out, size, ASN1_STRING_get0_data(s),
                                    (size_t)ASN1_STRING_length(s));
            count++;
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *s = g->d.iPAddress;
            int len = ASN1_STRING_length(s);
            int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : -1;

            if (af < 0 || inet_ntop(af, ASN1_STRING_get0_data(s), ip, sizeof(ip)) == NULL)
                snprintf(ip, sizeof(ip), "(bad IP entry)");
            if (count > 0)
                ok = append_plain(out, size, ", ");
            if (ok)
                ok = append_plain(out, size, ip);   /* inet_ntop output */
            count++;
        }
        if (!ok)
            break;
    }
    GENERAL_NAMES_free(gens);
    if (count == 0) {
        X509_NAME *subj = X509_get_subject_name(leaf);
        int pos = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);

        append_plain(out, size, "no host (no subjectAltName");
        if (pos >= 0) {
            const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, pos));

            append_plain(out, size, "; the subject CN ");
            append_escaped(out, size, ASN1_STRING_get0_data(cn),
                           (size_t)ASN1_STRING_length(cn));
            append_plain(out, size, " is not used");
        }
        append_plain(out, size, ")");
    }
}

/* Called by X509_verify_cert for every problem: note it and carry on, so
 * that both a chain problem and a name mismatch can be reported. */
static int note_problem(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct verify_state *st = state_of(ssl);
    int code;

    if (ok)
        return 1;
    if (st == NULL)
        return 0;
    code = X509_STORE_CTX_get_error(xs);
    if (code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH)
        st->host_mismatch = true;
    else if (st->chain_error == 0)
        st->chain_error = code;
    return 1;
}

/* Replaces OpenSSL's certificate verification for client connections. */
static int verify_peer(X509_STORE_CTX *xs, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct verify_state *st = state_of(ssl);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int r;

    (void)arg;
    if (st == NULL || leaf == NULL ||
        X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1 || mdlen != TLS_SHA256_LEN) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
        return 0;
    }
    st->accepted = false;
    st->seen = true;
    st->pin_mismatch = false;
    st->host_mismatch = false;
    st->chain_error = 0;
    format_fingerprint(md, st->fp);
    describe_names(leaf, st->names, sizeof(st->names));

    if (st->pinned) {
        if (CRYPTO_memcmp(md, st->pin, TLS_SHA256_LEN) == 0) {
            X509_STORE_CTX_set_error(xs, X509_V_OK);
            st->accepted = true;
            return 1;
        }
        st->pin_mismatch = true;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }

    X509_STORE_CTX_set_verify_cb(xs, note_problem);
    r = X509_verify_cert(xs);
    if (r == 1 && st->chain_error == 0 && !st->host_mismatch) {
        st->accepted = true;
        return 1;
    }
    if (st->chain_error == 0 && !st->host_mismatch) {
        /* Failed without calling back: take the context's own verdict. */
        st->chain_error = X509_STORE_CTX_get_error(xs);
        if (st->chain_error == X509_V_OK)
            st->chain_error = X509_V_ERR_UNSPECIFIED;
    }
    if (st->no_verify) {
        /* Noted for tls_client_peer; the handshake goes on. */
        X509_STORE_CTX_set_error(xs, X509_V_OK);
        return 1;
    }
    if (X509_STORE_CTX_get_error(xs) == X509_V_OK)
        X509_STORE_CTX_set_error(xs, st->chain_error != 0 ? st->chain_error
                                                          : X509_V_ERR_HOSTNAME_MISMATCH);
    return 0;
}

/* ---- client ------------------------------------------------------------- */

struct tls_client {
    SSL_CTX *ctx;
    bool no_verify;
    bool pinned;
    unsigned char pin[TLS_SHA256_LEN];
};

int tls_client_new(struct tls_client **out, const struct tls_client_opts *opts,
                   struct err *e)
{
    struct tls_client_opts none = {NULL, false, NULL, false};
    struct tls_client *c;

    *out = NULL;
    if (opts == NULL)
        opts = &none;
    if (opts->ca_file_only && opts->ca_file == NULL)
        return err_set(e, ERR_INVAL, "TLS: ca_file_only without a CA file");
    if (opts->no_verify && opts->pin != NULL)
        return err_set(e, ERR_INVAL, "TLS: a pin makes no sense without verification");
    pthread_once(&state_once, state_idx_init);
    if (state_idx < 0)
        return set_openssl_err(e, ERR_TLS, "TLS: cannot register connection data");

    c = XNEW(struct tls_client);
    c->no_verify = opts->no_verify;
    if (opts->pin != NULL) {
        if (tls_parse_fingerprint(opts->pin, c->pin, e) < 0) {
            free(c);
            return -1;
        }
        c->pinned = true;
    }

    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->ctx == NULL) {
        free(c);
        return set_openssl_err(e, ERR_TLS, "TLS: cannot create client context");
    }
    if (SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1) {
        set_openssl_err(e, ERR_TLS, "TLS: cannot require TLS 1.2");
        goto fail;
    }
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (!opts->ca_file_only && SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
        set_openssl_err(e, ERR_TLS, "TLS: cannot use the system CA store");
        goto fail;
    }
    if (opts->ca_file != NULL &&
        SSL_CTX_load_verify_locations(c->ctx, opts->ca_file, NULL) != 1) {
        char what[300];

        snprintf(what, sizeof(what), "CA file %s", opts->ca_file);
        set_openssl_err(e, ERR_TLS, what);
        goto fail;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(c->ctx, verify_peer, NULL);
    *out = c;
    return 0;

fail:
    SSL_CTX_free(c->ctx);
    free(c);
    return -1;
}

void tls_client_free(struct tls_client *c)
{
    if (c == NULL)
        return;
    SSL_CTX_free(c->ctx);
    OPENSSL_cleanse(c->pin, sizeof(c->pin));
    free(c);
}

static int check_host(const char *host, struct err *e)
{
    size_t len, i;

    if (host == NULL || host[0] == '\0')
        return err_set(e, ERR_INVAL, "TLS: no host name to verify");
    len = strlen(host);
    if (len > HOST_MAX)
        return err_set(e, ERR_INVAL, "TLS: host name too long");
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)host[i];

        if (ch <= 0x20 || ch >= 0x7f)
            return err_set(e, ERR_INVAL, "TLS: host name contains a space or a byte outside ASCII");
    }
    return 0;
}

SSL *tls_client_ssl_new(struct tls_client *c, const char *host, struct err *e)
{
    struct verify_state *st;
    X509_VERIFY_PARAM *param;
    size_t len;
    SSL *ssl;

    if (c == NULL) {
        err_set(e, ERR_INVAL, "TLS: no client context");
        return NULL;
    }
    if (check_host(host, e) < 0)
        return NULL;
    st = XNEW(struct verify_state);
    st->pinned = c->pinned;
    st->no_verify = c->no_verify;
    memcpy(st->pin, c->pin, sizeof(st->pin));
    len = strlen(host);
    memcpy(st->host, host, len + 1);
    /* "example.org." is the same host as "example.org". */
    if (len > 1 && st->host[len - 1] == '.' && !is_ip_literal(st->host))
        st->host[len - 1] = '\0';

    ERR_clear_error();
    ssl = SSL_new(c->ctx);
    if (ssl == NULL) {
        free(st);
        set_openssl_err(e, ERR_TLS, "TLS: cannot create a connection");
        return NULL;
    }
    if (SSL_set_ex_data(ssl, state_idx, st) != 1) {
        free(st);
        SSL_free(ssl);
        set_openssl_err(e, ERR_TLS, "TLS: cannot attach verification state");
        return NULL;
    }
    param = SSL_get0_param(ssl);
    if (is_ip_literal(st->host)) {
        /* No SNI for address literals (RFC 6066, section 3). */
        if (X509_VERIFY_PARAM_set1_ip_asc(param, st->host) != 1)
            goto fail;
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                               X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
        if (X509_VERIFY_PARAM_set1_host(param, st->host, 0) != 1)
            goto fail;
        if (SSL_set_tlsext_host_name(ssl, st->host) != 1)
            goto fail;
    }
    return ssl;

fail:
    set_openssl_err(e, ERR_TLS, "TLS: cannot set the host to verify");
    SSL_free(ssl);
    return NULL;
}

static int handshake_failed(const struct verify_state *st, const char *detail,
                            struct err *e)
{
    if (st->fp[0] != '\0')
        return err_set(e, ERR_TLS, "TLS handshake with %s failed: %s (SHA256:%s)", st->host,
                       detail != NULL ? detail : "unknown error", st->fp);
    return err_set(e, ERR_TLS, "TLS handshake with %s failed: %s", st->host,
                   detail != NULL ? detail : "unknown error");
}

/* Why the peer was not verified, as tls_client_finish would say it
 * (without the fingerprint); "" when it was. */
static void describe_refusal(const struct verify_state *st, char *out, size_t size)
{
    size_t len;

    if (size == 0)
        return;
    out[0] = '\0';
    if (!st->seen) {
        snprintf(out, size, "no certificate seen");
        return;
    }
    if (st->accepted)
        return;
    if (st->pin_mismatch) {
        snprintf(out, size, "fingerprint mismatch");
        return;
    }
    if (st->chain_error != 0)
        snprintf(out, size, "certificate verify failed: %s",
                 X509_verify_cert_error_string(st->chain_error));
    len = strlen(out);
    if (st->host_mismatch && len < size)
        snprintf(out + len, size - len, "%shost name mismatch: certificate is for %s, not %s",
                 len > 0 ? "; " : "", st->names, st->host);
    if (out[0] == '\0')
        snprintf(out, size, "not verified");
}

int tls_client_peer(const SSL *ssl, char fp[TLS_FINGERPRINT_SIZE], bool *verified,
                    char *problem, size_t size, struct err *e)
{
    const struct verify_state *st = state_of(ssl);

    fp[0] = '\0';
    if (verified != NULL)
        *verified = false;
    if (problem != NULL && size > 0)
        problem[0] = '\0';
    if (st == NULL)
        return err_set(e, ERR_INVAL, "TLS: connection was not set up for verification");
    memcpy(fp, st->fp, TLS_FINGERPRINT_SIZE);
    if (verified != NULL)
        *verified = st->seen && st->accepted;
    if (problem != NULL)
        describe_refusal(st, problem, size);
    return 0;
}

int tls_client_finish(SSL *ssl, bool handshake_ok, const char *detail, struct err *e)
{
    struct verify_state *st = state_of(ssl);
    char msg[ERR_TEXT_MAX];
    char pinfp[TLS_FINGERPRINT_SIZE];
    int r;

    msg[0] = '\0';
    if (st == NULL) {
        r = err_set(e, ERR_TLS, "TLS: connection was not set up for verification");
    } else if (st->no_verify) {
        /* Encryption without authentication: a completed handshake and a
         * certificate are all that is asked. */
        if (!handshake_ok)
            r = handshake_failed(st, detail, e);
        else if (!st->seen || SSL_get0_peer_certificate(ssl) == NULL)
            r = err_set(e, ERR_TLS, "TLS: %s sent no certificate", st->host);
        else
            return 0;
    } else if (st->pin_mismatch) {
        format_fingerprint(st->pin, pinfp);
        r = err_set(e, ERR_TLS, "fingerprint mismatch: got SHA256:%s, expected SHA256:%s",
                    st->fp, pinfp);
    } else if (st->chain_error != 0 || st->host_mismatch) {
        if (st->chain_error != 0)
            snprintf(msg, sizeof(msg), "certificate verify failed: %s",
                     X509_verify_cert_error_string(st->chain_error));
        if (st->host_mismatch) {
            size_t len = strlen(msg);

            snprintf(msg + len, sizeof(msg) - len,
                     "%shost name mismatch: certificate is for %s, not %s",
                     len > 0 ? "; " : "", st->names, st->host);
        }
        r = err_set(e, ERR_TLS, "%s (SHA256:%s)", msg, st->fp);
    } else if (!handshake_ok) {
        r = handshake_failed(st, detail, e);
    } else if (!st->accepted || SSL_get0_peer_certificate(ssl) == NULL ||
               (!st->pinned && SSL_get_verify_result(ssl) != X509_V_OK)) {
        r = err_set(e, ERR_TLS, "TLS: the certificate of %s was not verified", st->host);
    } else {
        return 0;
    }
    err_scope(e, ERR_SCOPE_ACCOUNT, false);
    return r;
}

/* ---- server ------------------------------------------------------------- */

struct tls_server {
    pthread_mutex_t lock;
    SSL_CTX *ctx;
    char *cert_file;
    char *key_file;
};

static SSL_CTX *server_ctx_build(const char *cert_file, const char *key_file, struct err *e)
{
    char what[600];
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        set_openssl_err(e, ERR_TLS, "TLS: cannot create server context");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        set_openssl_err(e, ERR_TLS, "TLS: cannot require TLS 1.2");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof(what), "certificate file %s", cert_file);
        set_openssl_err(e, ERR_TLS, what);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            err_set(e, ERR_TLS, "key file %s does not match certificate %s",
                    key_file, cert_file);
            goto fail;
        }
        snprintf(what, sizeof(what), "key file %s", key_file);
        set_openssl_err(e, ERR_TLS, what);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        err_set(e, ERR_TLS, "key file %s does not match certificate %s", key_file, cert_file);
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_server_new(struct tls_server **out, const char *cert_file, const char *key_file,
                   struct err *e)
{
    struct tls_server *s;
    SSL_CTX *ctx;

    *out = NULL;
    if (cert_file == NULL || key_file == NULL)
        return err_set(e, ERR_INVAL, "TLS: server needs a certificate and a key file");
    ctx = server_ctx_build(cert_file, key_file, e);
    if (ctx == NULL)
        return -1;
    s = XNEW(struct tls_server);
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        die("pthread_mutex_init failed");
    s->ctx = ctx;
    s->cert_file = xstrdup(cert_file);
    s->key_file = xstrdup(key_file);
    *out = s;
    return 0;
}

int tls_server_reload(struct tls_server *s, const char *cert_file, const char *key_file,
                      struct err *e)
{
    char *cert = xstrdup(cert_file != NULL ? cert_file : s->cert_file);
    char *key = xstrdup(key_file != NULL ? key_file : s->key_file);
    SSL_CTX *ctx = server_ctx_build(cert, key, e);
    SSL_CTX *old;

    if (ctx == NULL) {
        free(cert);
        free(key);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    old = s->ctx;
    s->ctx = ctx;
    free(s->cert_file);
    free(s->key_file);
    s->cert_file = cert;
    s->key_file = key;
    pthread_mutex_unlock(&s->lock);
    /* SSL objects hold their own reference to the context they use. */
    SSL_CTX_free(old);
    return 0;
}

SSL *tls_server_ssl_new(struct tls_server *s, struct err *e)
{
    SSL *ssl;

    ERR_clear_error();
    pthread_mutex_lock(&s->lock);
    ssl = SSL_new(s->ctx);
    pthread_mutex_unlock(&s->lock);
    if (ssl == NULL)
        set_openssl_err(e, ERR_TLS, "TLS: cannot create a server connection");
    return ssl;
}

void tls_server_free(struct tls_server *s)
{
    if (s == NULL)
        return;
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->lock);
    free(s->cert_file);
    free(s->key_file);
    free(s);
}

/* ---- self-signed certificates ------------------------------------------- */

static bool valid_dns_name(const char *s)
{
    size_t len = strlen(s), label = 0, i;

    if (len == 0 || len > HOST_MAX)
        return false;
    if (strncmp(s, "*.", 2) == 0)
        s += 2, len -= 2;
    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        char ch = s[i];

        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value, struct err *e)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    int ok;

    if (ext == NULL)
        return set_openssl_err(e, ERR_TLS, "certificate extension");
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1)
        return set_openssl_err(e, ERR_TLS, "certificate extension");
    return 0;
}

static int add_san(X509 *x, const char *const *names, struct err *e)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    size_t i;
    int r = -1;

    if (gens == NULL)
        die("out of memory");
    for (i = 0; names[i] != NULL; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        unsigned char addr[16];
        int alen = 0;

        if (g == NULL)
            die("out of memory");
        if (inet_pton(AF_INET, names[i], addr) == 1)
            alen = 4;
        else if (inet_pton(AF_INET6, names[i], addr) == 1)
            alen = 16;
        if (alen > 0) {
            ASN1_OCTET_STRING *ip = ASN1_OCTET_STRING_new();

            if (ip == NULL || ASN1_OCTET_STRING_set(ip, addr, alen) != 1)
                die("out of memory");
            GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
        } else {
            ASN1_IA5STRING *dns = ASN1_IA5STRING_new();

            if (dns == NULL || ASN1_STRING_set(dns, names[i], -1) != 1)
                die("out of memory");
            GENERAL_NAME_set0_value(g, GEN_DNS, dns);
        }
        if (sk_GENERAL_NAME_push(gens, g) <= 0)
            die("out of memory");
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        r = 0;
    else
        set_openssl_err(e, ERR_TLS, "certificate subjectAltName");
    GENERAL_NAMES_free(gens);
    return r;
}

static X509 *make_cert(EVP_PKEY *pkey, const char *const *names, int days, struct err *e)
{
    X509 *x = X509_new();
    X509_NAME *subj;
    X509V3_CTX v3;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    const char *cn = NULL;
    size_t i;

    if (x == NULL)
        die("out of memory");
    for (i = 0; names[i] != NULL && cn == NULL; i++)
        if (!is_ip_literal(names[i]))
            cn = names[i];
    if (cn == NULL)
        cn = names[0];

    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        set_openssl_err(e, ERR_TLS, "certificate serial number");
        goto fail;
    }
    serial[0] &= 0x7f;   /* positive */
    serial[0] |= 0x01;   /* and never zero */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    subj = X509_get_subject_name(x);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
        X509_set_version(x, X509_VERSION_3) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400L) == NULL ||
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, subj) != 1 ||
        X509_set_pubkey(x, pkey) != 1) {
        set_openssl_err(e, ERR_TLS, "certificate fields");
        goto fail;
    }
    BN_free(bn);
    bn = NULL;

    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE", e) < 0 ||
        add_ext(x, &v3, NID_key_usage, "critical,digitalSignature", e) < 0 ||
        add_ext(x, &v3, NID_ext_key_usage, "serverAuth", e) < 0 ||
        add_ext(x, &v3, NID_subject_key_identifier, "hash", e) < 0 ||
        add_san(x, names, e) < 0)
        goto fail;
    if (X509_sign(x, pkey, EVP_sha256()) <= 0) {
        set_openssl_err(e, ERR_TLS, "certificate signature");
        goto fail;
    }
    return x;

fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

static int write_fully(int fd, const char *p, size_t n)
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

/* Write the contents of a memory BIO to path through a synced temporary
 * file, with the given mode. */
static int write_bio_file(BIO *bio, const char *path, mode_t mode, struct err *e)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *tmp;
    int fd, r = -1;

    if (len <= 0 || data == NULL)
        return err_set(e, ERR_TLS, "%s: nothing to write", path);
    tmp = xasprintf("%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);   /* created 0600 */
    if (fd < 0) {
        err_sys(e, "%s", tmp);
        free(tmp);
        return -1;
    }
    if (fchmod(fd, mode) < 0 || write_fully(fd, data, (size_t)len) < 0 || fsync(fd) < 0) {
        err_sys(e, "%s", tmp);
        close(fd);
        goto out;
    }
    if (close(fd) < 0) {
        err_sys(e, "%s", tmp);
        goto out;
    }
    if (rename(tmp, path) < 0) {
        err_sys(e, "rename %s", path);
        goto out;
    }
    r = 0;
out:
    if (r < 0)
        unlink(tmp);
    free(tmp);
    return r;
}

static EVP_PKEY *make_key(struct err *e)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;

    if (pc == NULL || EVP_PKEY_keygen_init(pc) != 1 ||
        EVP_PKEY_CTX_set_group_name(pc, "P-256") != 1 ||
        EVP_PKEY_generate(pc, &pkey) != 1) {
        set_openssl_err(e, ERR_TLS, "key generation");
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(pc);
    return pkey;
}

int tls_gencert(const char *cert_path, const char *key_path, const char *const *names,
                int days, struct err *e)
{
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIO *kbio = NULL, *cbio = NULL;
    size_t i;
    int r = -1;

    if (cert_path == NULL || key_path == NULL)
        return err_set(e, ERR_INVAL, "gencert: certificate and key paths are required");
    if (names == NULL || names[0] == NULL)
        return err_set(e, ERR_INVAL, "gencert: at least one host name is required");
    if (days < 1 || days > GENCERT_DAYS_MAX)
        return err_set(e, ERR_INVAL, "gencert: days must be 1..%d", GENCERT_DAYS_MAX);
    for (i = 0; names[i] != NULL; i++) {
        if (!is_ip_literal(names[i]) && !valid_dns_name(names[i])) {
            char shown[80] = "";

            append_escaped(shown, sizeof(shown), (const unsigned char *)names[i],
                           strlen(names[i]));
            return err_set(e, ERR_INVAL, "gencert: not a host name or IP address: %s", shown);
        }
    }

    ERR_clear_error();
    pkey = make_key(e);
    if (pkey == NULL)
        goto out;
    x = make_cert(pkey, names, days, e);
    if (x == NULL)
        goto out;
    kbio = BIO_new(BIO_s_mem());
    cbio = BIO_new(BIO_s_mem());
    if (kbio == NULL || cbio == NULL)
        die("out of memory");
    if (PEM_write_bio_PrivateKey(kbio, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cbio, x) != 1) {
        set_openssl_err(e, ERR_TLS, "gencert: PEM encoding");
        goto out;
    }
    if (write_bio_file(kbio, key_path, 0600, e) < 0 ||
        write_bio_file(cbio, cert_path, 0644, e) < 0)
        goto out;
    r = 0;

out:
    if (kbio != NULL) {
        char *data = NULL;
        long len = BIO_get_mem_data(kbio, &data);

        if (len > 0 && data != NULL)
            OPENSSL_cleanse(data, (size_t)len);
        BIO_free(kbio);
    }
    BIO_free(cbio);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return r;
}
