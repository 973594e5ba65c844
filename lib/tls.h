/*
 * tls: OpenSSL client and server contexts.
 *
 * Owns everything that decides whether a TLS peer is trusted: the client
 * context (TLS 1.2 or newer, the system CA store, an optional CA file, an
 * optional SHA-256 pin of the server's leaf certificate), the per-connection
 * verification (chain and host name per RFC 6125: DNS names only from the
 * subjectAltName, never the subject CN, no partial wildcards; IP literals
 * against IP subjectAltNames), the text a user sees when a peer is refused,
 * the reloadable server context, and self-signed certificate generation.
 *
 * With a pin, a server is accepted if and only if the SHA-256 of its leaf
 * certificate equals the pin; chain and name problems are ignored then.
 * With no_verify (opportunistic SMTP between MTAs only) any certificate is
 * accepted after a completed handshake, and what was seen is kept for the
 * log (tls_client_peer).
 * Every refusal after the server sent a certificate names its fingerprint as
 * "SHA256:AB:CD:..." so that the user can pin it.
 *
 * Moving bytes is lib/tls_stream's job; this module hands out configured
 * SSL objects and judges the outcome of their handshakes.
 */
#ifndef CORREO_TLS_H
#define CORREO_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "err.h"

#define TLS_SHA256_LEN 32
/* "AB:CD:...:EF": 32 hex pairs, 31 colons and the NUL. */
#define TLS_FINGERPRINT_SIZE (TLS_SHA256_LEN * 3)

/* ---- fingerprints ------------------------------------------------------- */

/* Parse a SHA-256 fingerprint: 64 hex digits, either plain or as 32
 * colon-separated pairs, any case, optionally prefixed "SHA256:". */
int tls_parse_fingerprint(const char *text, unsigned char out[TLS_SHA256_LEN],
                          struct err *e);

/* Format the SHA-256 of cert's DER encoding as "AB:CD:...". */
int tls_cert_fingerprint(const X509 *cert, char out[TLS_FINGERPRINT_SIZE],
                         struct err *e);

/* The same for the first certificate of a PEM file. */
int tls_cert_file_fingerprint(const char *path, char out[TLS_FINGERPRINT_SIZE],
                              struct err *e);

/* The earliest reason in the calling thread's OpenSSL error queue (e.g.
 * "unsupported protocol"), after which the queue is cleared; "unknown error"
 * when it is empty. */
void tls_error_reason(char *out, size_t size);

/* ---- client ------------------------------------------------------------- */

struct tls_client_opts {
    const char *ca_file;   /* PEM certificates to trust, or NULL */
    bool ca_file_only;     /* with ca_file: do not trust the system store too */
    const char *pin;       /* leaf SHA-256 (see tls_parse_fingerprint) or NULL */
    /* Encrypt, do not authenticate: ONLY for opportunistic SMTP between
     * MTAs (RFC 7435; Postfix's "may" level), where the alternative is
     * plain text.  tls_client_finish then accepts any certificate, still
     * requiring a completed handshake (TLS 1.2 or newer) and a server
     * certificate; chain and name are checked all the same so that
     * tls_client_peer() can tell what was seen.  Excludes pin. */
    bool no_verify;
};

struct tls_client;

/* opts may be NULL: system store only.  A bad CA file or pin is an error. */
int tls_client_new(struct tls_client **out, const struct tls_client_opts *opts,
                   struct err *e);
void tls_client_free(struct tls_client *c);

/* A client SSL for one connection to host (a DNS name, or an IPv4/IPv6
 * literal without brackets): SNI for names, the host check, and the
 * verification state that tls_client_finish reads.  Free with SSL_free. */
SSL *tls_client_ssl_new(struct tls_client *c, const char *host, struct err *e);

/* Judge a client handshake on ssl (from tls_client_ssl_new).  handshake_ok:
 * whether SSL_connect succeeded; detail: OpenSSL's reason when it did not
 * (may be NULL).  Returns 0 only if the handshake completed and the peer was
 * verified (or matched the pin); otherwise -1 with ERR_TLS and a text such as
 * "certificate verify failed: self-signed certificate (SHA256:...)". */
int tls_client_finish(SSL *ssl, bool handshake_ok, const char *detail,
                      struct err *e);

/* What the client saw of the server on ssl (from tls_client_ssl_new) once
 * its handshake ran, for logging: fp gets the SHA-256 of the leaf
 * certificate ("" when none was seen), *verified (may be NULL) whether the
 * chain and host name checked out or the pin matched -- with no_verify it
 * tells whether the peer WOULD have been verified -- and problem (may be
 * NULL, size bytes) why not ("" when verified).  -1 (ERR_INVAL) when ssl
 * was not made by tls_client_ssl_new. */
int tls_client_peer(const SSL *ssl, char fp[TLS_FINGERPRINT_SIZE], bool *verified,
                    char *problem, size_t size, struct err *e);

/* ---- server ------------------------------------------------------------- */

struct tls_server;

/* cert_file: PEM chain, leaf first; key_file: its PEM private key. */
int tls_server_new(struct tls_server **out, const char *cert_file,
                   const char *key_file, struct err *e);

/* Build a new context from the files (NULL: the ones last loaded) and swap
 * it in only on success.  On failure the current context stays in use.
 * Connections already set up keep the context they started with. */
int tls_server_reload(struct tls_server *s, const char *cert_file,
                      const char *key_file, struct err *e);

/* A server SSL from the current context.  Free with SSL_free. */
SSL *tls_server_ssl_new(struct tls_server *s, struct err *e);

void tls_server_free(struct tls_server *s);

/* ---- self-signed certificates ------------------------------------------- */

/* Write a self-signed certificate (EC P-256 key, SHA-256 signature) valid
 * for `days` days (1..36500) for the NULL-terminated list names: DNS names,
 * or IPv4/IPv6 literals which become IP subjectAltNames (so "127.0.0.1" in
 * the list asks for an IP entry).  The first DNS name is also the subject
 * CN.  The key file is created mode 0600, the certificate 0644; both are
 * written to a temporary name, synced and renamed into place. */
int tls_gencert(const char *cert_path, const char *key_path,
                const char *const *names, int days, struct err *e);

#endif
