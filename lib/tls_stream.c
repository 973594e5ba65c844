/* tls_stream: TCP connect with timeouts, plain/TLS/STARTTLS connections and
 * a libetpan mailstream_low driver over them. */
#include "tls_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define HOST_MAX 253
#define READ_CHUNK 4096
/* Plaintext a peer may have queued before our ClientHello; more than this
 * is not a mail server, and stops the discarding loop. */
#define DRAIN_MAX (1024 * 1024)

/* libetpan exports these (the cancel object its IDLE support polls) but
 * does not install their header. */
struct mailstream_cancel *mailstream_cancel_new(void);
void mailstream_cancel_free(struct mailstream_cancel *cancel);
int mailstream_cancel_cancelled(struct mailstream_cancel *cancel);
void mailstream_cancel_notify(struct mailstream_cancel *cancel);
void mailstream_cancel_ack(struct mailstream_cancel *cancel);
int mailstream_cancel_get_fd(struct mailstream_cancel *cancel);

struct tls_conn {
    int fd;
    bool owns_fd;      /* false while borrowing a libetpan socket's fd */
    SSL *ssl;
    bool broken;       /* failed handshake or fatal TLS error */
    int timeout_ms;
    int cancel_fd;     /* -1, or an fd that becomes readable to stop a wait */
    bool cancelled;    /* the last wait ended because of cancel_fd */
    struct buf rbuf;   /* plaintext read ahead by tls_conn_read_line */
    struct err last;
};

/* ---- time and waiting --------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int net_err(struct err *e, const char *fmt, const char *what, int ms)
{
    err_set(e, ERR_NET, fmt, what, ms);
    err_scope(e, ERR_SCOPE_ACCOUNT, true);
    return -1;
}

static int sys_net_err(struct err *e, const char *what)
{
    err_sys(e, "%s", what);
    if (e != NULL) {
        e->code = ERR_NET;
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
    }
    return -1;
}

/* Wait until c->fd reports `events` (or an error condition, which the next
 * I/O call will report) before `deadline`. */
static int wait_fd(struct tls_conn *c, short events, long long deadline, int timeout_ms,
                   const char *what, struct err *e)
{
    for (;;) {
        struct pollfd p[2];
        long long left = deadline - now_ms();
        int n;

        if (left <= 0)
            return net_err(e, "%s: timed out after %d ms", what, timeout_ms);
        p[0].fd = c->fd;
        p[0].events = events;
        p[0].revents = 0;
        p[1].fd = c->cancel_fd;
        p[1].events = POLLIN;
        p[1].revents = 0;
        n = poll(p, c->cancel_fd >= 0 ? 2 : 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return sys_net_err(e, what);
        }
        if (n == 0)
            continue;
        if (c->cancel_fd >= 0 && (p[1].revents & POLLIN)) {
            c->cancelled = true;
            err_set(e, ERR_NET, "%s: cancelled", what);
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            return -1;
        }
        if (p[0].revents & POLLNVAL) {
            err_set(e, ERR_NET, "%s: connection is closed", what);
            return -1;
        }
        if (p[0].revents & (events | POLLERR | POLLHUP))
            return 0;
    }
}

/* ---- a socket BIO that never raises SIGPIPE ----------------------------- */

static BIO_METHOD *sock_method;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

static int sock_bio_write(BIO *b, const char *data, int len)
{
    struct tls_conn *c = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    n = send(c->fd, data, (size_t)len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_write(b);
        return -1;
    }
    return (int)n;
}

static int sock_bio_read(BIO *b, char *out, int len)
{
    struct tls_conn *c = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    n = recv(c->fd, out, (size_t)len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        return -1;
    }
    if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF);
    return (int)n;
}

static long sock_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    default:
        return 0;
    }
}

static int sock_bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int sock_bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static void sock_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "correo socket");

    if (m == NULL ||
        BIO_meth_set_write(m, sock_bio_write) != 1 ||
        BIO_meth_set_read(m, sock_bio_read) != 1 ||
        BIO_meth_set_ctrl(m, sock_bio_ctrl) != 1 ||
        BIO_meth_set_create(m, sock_bio_create) != 1 ||
        BIO_meth_set_destroy(m, sock_bio_destroy) != 1) {
        BIO_meth_free(m);
        return;
    }
    sock_method = m;
}

/* Give ssl a BIO over c's socket. */
static int attach_bio(struct tls_conn *c, SSL *ssl, struct err *e)
{
    BIO *bio;

    pthread_once(&sock_once, sock_method_init);
    if (sock_method == NULL)
        return err_set(e, ERR_TLS, "TLS: cannot set up the socket layer");
    bio = BIO_new(sock_method);
    if (bio == NULL)
        return err_set(e, ERR_TLS, "TLS: cannot set up the socket layer");
    BIO_set_data(bio, c);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return 0;
}

/* ---- connections -------------------------------------------------------- */

static struct tls_conn *conn_new(int fd, int timeout_ms)
{
    struct tls_conn *c = XNEW(struct tls_conn);
    int flags = fcntl(fd, F_GETFL);

    if (flags >= 0 && !(flags & O_NONBLOCK))
        (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    c->fd = fd;
    c->owns_fd = true;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : TLS_CONN_DEFAULT_TIMEOUT_MS;
    c->cancel_fd = -1;
    buf_init(&c->rbuf, 0);
    err_clear(&c->last);
    return c;
}

struct tls_conn *tls_conn_from_fd(int fd, int timeout_ms)
{
    return conn_new(fd, timeout_ms);
}

static int connect_one(const struct addrinfo *ai, int budget_ms, int *out_fd)
{
    long long deadline = now_ms() + budget_ms;
    int fd, soerr = 0;
    socklen_t len = sizeof(soerr);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        *out_fd = fd;
        return 0;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        soerr = errno;
        close(fd);
        return soerr;
    }
    for (;;) {
        struct pollfd p = {fd, POLLOUT, 0};
        long long left = deadline - now_ms();
        int n;

        if (left <= 0) {
            close(fd);
            return ETIMEDOUT;
        }
        n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            soerr = errno;
            close(fd);
            return soerr;
        }
        if (n > 0)
            break;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        close(fd);
        return soerr;
    }
    *out_fd = fd;
    return 0;
}

int tls_conn_connect(struct tls_conn **out, const char *host, unsigned port, int timeout_ms,
                     struct err *e)
{
    struct addrinfo hints, *res = NULL, *ai;
    char portstr[8];
    long long deadline;
    size_t count = 0, i = 0;
    int rc, fd = -1, last = ECONNREFUSED;

    *out = NULL;
    if (host == NULL || host[0] == '\0' || strlen(host) > HOST_MAX)
        return err_set(e, ERR_INVAL, "connect: bad host name");
    if (port == 0 || port > 65535)
        return err_set(e, ERR_INVAL, "connect: port must be 1..65535");
    if (timeout_ms <= 0)
        return err_set(e, ERR_INVAL, "connect: timeout must be positive");
    snprintf(portstr, sizeof(portstr), "%u", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    deadline = now_ms() + timeout_ms;
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_SYSTEM)
            return sys_net_err(e, "cannot resolve host");
        err_set(e, ERR_NET, "cannot resolve %s: %s", host, gai_strerror(rc));
        err_scope(e, ERR_SCOPE_ACCOUNT, rc == EAI_AGAIN);
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next)
        count++;
    for (ai = res; ai != NULL; ai = ai->ai_next, i++) {
        long long left = deadline - now_ms();

        if (left <= 0) {
            last = ETIMEDOUT;
            break;
        }
        /* Later addresses get a fair share of what is left. */
        last = connect_one(ai, (int)(left / (long long)(count - i)), &fd);
        if (last == 0)
            break;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        char what[HOST_MAX + 40];

        errno = last;
        snprintf(what, sizeof(what), "connect to %s port %u", host, port);
        return sys_net_err(e, what);
    }
    *out = conn_new(fd, timeout_ms);
    return 0;
}

static void conn_drop_tls(struct tls_conn *c)
{
    if (c->ssl == NULL)
        return;
    if (!c->broken && c->fd >= 0 && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);   /* best effort close_notify */
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}

/* Shut down TLS and close the socket, keep the struct. */
static void conn_close_fd(struct tls_conn *c)
{
    conn_drop_tls(c);
    if (c->fd >= 0 && c->owns_fd)
        close(c->fd);
    c->fd = -1;
}

void tls_conn_close(struct tls_conn *c)
{
    if (c == NULL)
        return;
    conn_close_fd(c);
    buf_free(&c->rbuf);
    free(c);
}

void tls_conn_set_timeout(struct tls_conn *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : TLS_CONN_DEFAULT_TIMEOUT_MS;
}

int tls_conn_fd(const struct tls_conn *c)
{
    return c->fd;
}

bool tls_conn_is_tls(const struct tls_conn *c)
{
    return c->ssl != NULL;
}

bool tls_conn_has_buffered(const struct tls_conn *c)
{
    return c->rbuf.len > 0 || (c->ssl != NULL && SSL_pending(c->ssl) > 0);
}

const struct err *tls_conn_last_error(const struct tls_conn *c)
{
    return &c->last;
}

static int check_usable(const struct tls_conn *c, const char *what, struct err *e)
{
    if (c == NULL || c->fd < 0)
        return err_set(e, ERR_NET, "%s: connection is closed", what);
    if (c->broken) {
        err_set(e, ERR_NET, "%s: connection is unusable after an earlier error", what);
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        return -1;
    }
    return 0;
}

/* A fatal error from SSL_read/SSL_write/handshake: describe it. */
static void ssl_failure(int sslerr, char *out, size_t size)
{
    if (sslerr == SSL_ERROR_SYSCALL) {
        int saved = errno;

        ERR_clear_error();
        if (saved != 0)
            snprintf(out, size, "%s", strerror(saved));
        else
            snprintf(out, size, "connection closed by peer");
    } else {
        tls_error_reason(out, size);
    }
}

/* Read from the socket or TLS, ignoring rbuf. */
static int raw_read(struct tls_conn *c, void *dst, size_t len, size_t *got, int timeout_ms,
                    struct err *e)
{
    long long deadline = now_ms() + timeout_ms;

    *got = 0;
    c->cancelled = false;
    for (;;) {
        if (c->ssl != NULL) {
            int n, se;

            ERR_clear_error();
            errno = 0;
            n = SSL_read(c->ssl, dst, len > INT_MAX ? INT_MAX : (int)len);
            if (n > 0) {
                *got = (size_t)n;
                return 0;
            }
            se = SSL_get_error(c->ssl, n);
            if (se == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
                if (wait_fd(c, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                            timeout_ms, "read", e) < 0)
                    return -1;
                continue;
            } else {
                char why[200];

                ssl_failure(se, why, sizeof(why));
                c->broken = true;
                err_set(e, ERR_NET, "TLS read: %s", why);
                err_scope(e, ERR_SCOPE_ACCOUNT, true);
                return -1;
            }
        } else {
            ssize_t n = recv(c->fd, dst, len, 0);

            if (n >= 0) {
                *got = (size_t)n;
                return 0;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return sys_net_err(e, "read");
            if (wait_fd(c, POLLIN, deadline, timeout_ms, "read", e) < 0)
                return -1;
        }
    }
}

static int conn_read(struct tls_conn *c, void *dst, size_t len, size_t *got, int timeout_ms,
                     struct err *e)
{
    *got = 0;
    if (check_usable(c, "read", e) < 0)
        return -1;
    if (len == 0)
        return err_set(e, ERR_INVAL, "read: zero-length buffer");
    if (c->rbuf.len > 0) {
        size_t n = len < c->rbuf.len ? len : c->rbuf.len;

        memcpy(dst, c->rbuf.data, n);
        buf_consume(&c->rbuf, n);
        *got = n;
        return 0;
    }
    return raw_read(c, dst, len, got, timeout_ms, e);
}

static int conn_write(struct tls_conn *c, const void *src, size_t len, int timeout_ms,
                      struct err *e)
{
    const char *p = src;
    long long deadline = now_ms() + timeout_ms;

    if (check_usable(c, "write", e) < 0)
        return -1;
    c->cancelled = false;
    while (len > 0) {
        if (c->ssl != NULL) {
            int n, se;

            ERR_clear_error();
            errno = 0;
            n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
            if (n > 0) {
                p += n;
                len -= (size_t)n;
                deadline = now_ms() + timeout_ms;
                continue;
            }
            se = SSL_get_error(c->ssl, n);
            if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
                if (wait_fd(c, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                            timeout_ms, "write", e) < 0)
                    return -1;
            } else {
                char why[200];

                ssl_failure(se, why, sizeof(why));
                c->broken = true;
                err_set(e, ERR_NET, "TLS write: %s", why);
                err_scope(e, ERR_SCOPE_ACCOUNT, true);
                return -1;
            }
        } else {
            ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

            if (n >= 0) {
                p += n;
                len -= (size_t)n;
                deadline = now_ms() + timeout_ms;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return sys_net_err(e, "write");
            if (wait_fd(c, POLLOUT, deadline, timeout_ms, "write", e) < 0)
                return -1;
        }
    }
    return 0;
}

int tls_conn_read(struct tls_conn *c, void *dst, size_t len, size_t *got, struct err *e)
{
    return conn_read(c, dst, len, got, c != NULL ? c->timeout_ms : 0, e);
}

int tls_conn_write(struct tls_conn *c, const void *src, size_t len, struct err *e)
{
    return conn_write(c, src, len, c != NULL ? c->timeout_ms : 0, e);
}

int tls_conn_read_line(struct tls_conn *c, struct buf *line, size_t max, struct err *e)
{
    buf_reset(line);
    if (check_usable(c, "read", e) < 0)
        return -1;
    for (;;) {
        size_t got;
        char *dst;

        if (c->rbuf.len > 0) {
            const char *nl = memchr(c->rbuf.data, '\n', c->rbuf.len);
            size_t take = nl != NULL ? (size_t)(nl - c->rbuf.data) + 1 : c->rbuf.len;

            if (line->len + take > max || buf_append(line, c->rbuf.data, take) < 0)
                return err_set(e, ERR_LIMIT, "line longer than %zu bytes", max);
            buf_consume(&c->rbuf, take);
            if (nl != NULL)
                return 0;
        }
        dst = buf_reserve(&c->rbuf, READ_CHUNK);
        if (dst == NULL)
            die("read-ahead buffer refused to grow");
        if (raw_read(c, dst, READ_CHUNK, &got, c->timeout_ms, e) < 0)
            return -1;
        if (got == 0) {
            err_set(e, ERR_NET, "connection closed by peer in the middle of a line");
            err_scope(e, ERR_SCOPE_ACCOUNT, true);
            return -1;
        }
        buf_commit(&c->rbuf, got);
    }
}

/* Drop plaintext the peer sent before our ClientHello. */
static int drain_socket(struct tls_conn *c, struct err *e)
{
    char junk[READ_CHUNK];
    size_t total = 0;

    for (;;) {
        ssize_t n = recv(c->fd, junk, sizeof(junk), MSG_DONTWAIT);

        if (n > 0) {
            total += (size_t)n;
            if (total > DRAIN_MAX)
                return err_set(e, ERR_PROTO, "TLS: server keeps sending plaintext");
            continue;
        }
        if (n == 0)
            return err_set(e, ERR_NET, "TLS: connection closed by peer before the handshake");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return sys_net_err(e, "read");
    }
}

/* Describe why a handshake failed, pointing out version refusals. */
static void handshake_failure(int sslerr, char *detail, size_t size)
{
    int reason = ERR_GET_REASON(ERR_peek_error());
    bool version = sslerr == SSL_ERROR_SSL &&
                   (reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION ||
                    reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_VERSION_TOO_LOW);
    size_t len;

    ssl_failure(sslerr, detail, size);
    len = strlen(detail);
    if (version && len + 1 < size)
        snprintf(detail + len, size - len, " (TLS 1.2 or newer is required)");
}

/* Run SSL_connect/SSL_accept to the end.  Returns 0 on success; -1 with e
 * set when waiting failed (timeout, cancel); 1 when TLS said no, with its
 * reason in detail. */
static int handshake(struct tls_conn *c, bool client, char *detail, size_t size,
                     struct err *e)
{
    long long deadline = now_ms() + c->timeout_ms;

    detail[0] = '\0';
    c->cancelled = false;
    for (;;) {
        int r, se;

        ERR_clear_error();
        errno = 0;
        r = client ? SSL_connect(c->ssl) : SSL_accept(c->ssl);
        if (r == 1)
            return 0;
        se = SSL_get_error(c->ssl, r);
        if (se == SSL_ERROR_WANT_READ || se == SSL_ERROR_WANT_WRITE) {
            if (wait_fd(c, se == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
                        c->timeout_ms, "TLS handshake", e) < 0)
                return -1;
            continue;
        }
        handshake_failure(se, detail, size);
        return 1;
    }
}

int tls_conn_start_tls(struct tls_conn *c, struct tls_client *client, const char *host,
                       struct err *e)
{
    char detail[200];
    SSL *ssl;
    int r;

    if (check_usable(c, "TLS", e) < 0)
        return -1;
    if (c->ssl != NULL)
        return err_set(e, ERR_INVAL, "TLS: connection is already encrypted");
    /* Nothing read before the handshake may be taken as coming over TLS. */
    buf_reset(&c->rbuf);
    c->broken = true;   /* until the handshake is judged good */
    if (drain_socket(c, e) < 0)
        return -1;
    ssl = tls_client_ssl_new(client, host, e);
    if (ssl == NULL)
        return -1;
    if (attach_bio(c, ssl, e) < 0) {
        SSL_free(ssl);
        return -1;
    }
    c->ssl = ssl;
    r = handshake(c, true, detail, sizeof(detail), e);
    if (r < 0)
        return -1;
    if (tls_client_finish(ssl, r == 0, detail, e) < 0)
        return -1;
    c->broken = false;
    return 0;
}

int tls_conn_accept_tls(struct tls_conn *c, struct tls_server *server, struct err *e)
{
    char detail[200];
    SSL *ssl;
    int r;

    if (check_usable(c, "TLS", e) < 0)
        return -1;
    if (c->ssl != NULL)
        return err_set(e, ERR_INVAL, "TLS: connection is already encrypted");
    buf_reset(&c->rbuf);
    c->broken = true;
    ssl = tls_server_ssl_new(server, e);
    if (ssl == NULL)
        return -1;
    if (attach_bio(c, ssl, e) < 0) {
        SSL_free(ssl);
        return -1;
    }
    c->ssl = ssl;
    r = handshake(c, false, detail, sizeof(detail), e);
    if (r < 0)
        return -1;
    if (r > 0) {
        err_set(e, ERR_TLS, "TLS handshake failed: %s", detail);
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    c->broken = false;
    return 0;
}

/* ---- libetpan driver ---------------------------------------------------- */

struct drv {
    struct tls_conn *conn;
    struct mailstream_cancel *cancel;
};

static int drv_timeout(const mailstream_low *low, const struct tls_conn *c)
{
    if (low->timeout > 0)
        return low->timeout > (unsigned long)(INT_MAX / 1000) ? INT_MAX
                                                              : (int)low->timeout * 1000;
    return c->timeout_ms;
}

/* After a wait that a cancel ended, consume the notification as libetpan's
 * own drivers do. */
static void drv_after_failure(struct drv *d)
{
    if (d->conn->cancelled) {
        mailstream_cancel_ack(d->cancel);
        d->conn->cancelled = false;
    }
}

static ssize_t drv_read(mailstream_low *low, void *buf, size_t count)
{
    struct drv *d = low->data;
    size_t got;

    if (mailstream_cancel_cancelled(d->cancel)) {
        err_set(&d->conn->last, ERR_NET, "read: cancelled");
        return -1;
    }
    if (count == 0)
        return 0;
    if (count > SSIZE_MAX)
        count = SSIZE_MAX;
    if (conn_read(d->conn, buf, count, &got, drv_timeout(low, d->conn), &d->conn->last) < 0) {
        drv_after_failure(d);
        return -1;
    }
    return (ssize_t)got;
}

static ssize_t drv_write(mailstream_low *low, const void *buf, size_t count)
{
    struct drv *d = low->data;

    if (mailstream_cancel_cancelled(d->cancel)) {
        err_set(&d->conn->last, ERR_NET, "write: cancelled");
        return -1;
    }
    if (count > SSIZE_MAX)
        count = SSIZE_MAX;
    if (conn_write(d->conn, buf, count, drv_timeout(low, d->conn), &d->conn->last) < 0) {
        drv_after_failure(d);
        return -1;
    }
    return (ssize_t)count;
}

static int drv_close(mailstream_low *low)
{
    struct drv *d = low->data;

    conn_close_fd(d->conn);
    return 0;
}

static int drv_get_fd(mailstream_low *low)
{
    struct drv *d = low->data;

    return d->conn->fd;
}

static void drv_free(mailstream_low *low)
{
    struct drv *d = low->data;

    tls_conn_close(d->conn);
    mailstream_cancel_free(d->cancel);
    free(d);
    free(low);
}

static void drv_cancel(mailstream_low *low)
{
    struct drv *d = low->data;

    mailstream_cancel_notify(d->cancel);
}

static struct mailstream_cancel *drv_get_cancel(mailstream_low *low)
{
    struct drv *d = low->data;

    return d->cancel;
}

/* The peer's certificates as DER, leaf first. */
static carray *drv_get_certificate_chain(mailstream_low *low)
{
    struct drv *d = low->data;
    SSL *ssl = d->conn->ssl;
    STACK_OF(X509) *chain;
    X509 *leaf;
    carray *arr;
    int i, n;

    if (ssl == NULL || (leaf = SSL_get0_peer_certificate(ssl)) == NULL)
        return NULL;
    chain = SSL_get_peer_cert_chain(ssl);
    n = chain != NULL ? sk_X509_num(chain) : 0;
    arr = carray_new((unsigned int)n + 1);
    if (arr == NULL)
        die("out of memory");
    for (i = -1; i < n; i++) {
        X509 *x = i < 0 ? leaf : sk_X509_value(chain, i);
        unsigned char *der = NULL;
        MMAPString *str;
        int len;

        if (i >= 0 && X509_cmp(x, leaf) == 0)
            continue;
        len = i2d_X509(x, &der);
        if (len <= 0)
            continue;
        str = mmap_string_new_len((const char *)der, (size_t)len);
        OPENSSL_free(der);
        if (str == NULL || carray_add(arr, str, NULL) != 0)
            die("out of memory");
    }
    return arr;
}

static mailstream_low_driver tls_driver = {
    .mailstream_read = drv_read,
    .mailstream_write = drv_write,
    .mailstream_close = drv_close,
    .mailstream_get_fd = drv_get_fd,
    .mailstream_free = drv_free,
    .mailstream_cancel = drv_cancel,
    .mailstream_get_cancel = drv_get_cancel,
    .mailstream_get_certificate_chain = drv_get_certificate_chain,
    .mailstream_setup_idle = NULL,
    .mailstream_unsetup_idle = NULL,
    .mailstream_interrupt_idle = NULL,
};

mailstream_low *tls_stream_low_new(struct tls_conn *c, struct err *e)
{
    struct mailstream_cancel *cancel;
    mailstream_low *low;
    struct drv *d;

    if (c == NULL) {
        err_set(e, ERR_INVAL, "stream: no connection");
        return NULL;
    }
    errno = 0;
    cancel = mailstream_cancel_new();
    if (cancel == NULL) {
        if (errno != 0)
            err_sys(e, "stream: cannot create its cancel pipe");
        else
            err_set(e, ERR_IO, "stream: cannot create its cancel pipe");
        tls_conn_close(c);
        return NULL;
    }
    d = XNEW(struct drv);
    d->conn = c;
    d->cancel = cancel;
    c->cancel_fd = mailstream_cancel_get_fd(cancel);
    low = mailstream_low_new(d, &tls_driver);
    if (low == NULL)
        die("out of memory");
    return low;
}

mailstream *tls_stream_mailstream(struct tls_conn *c, struct err *e)
{
    mailstream_low *low = tls_stream_low_new(c, e);
    mailstream *s;

    if (low == NULL)
        return NULL;
    s = mailstream_new(low, TLS_STREAM_BUFFER_SIZE);
    if (s == NULL)
        die("out of memory");
    return s;
}

struct tls_conn *tls_stream_conn(mailstream *s)
{
    if (s == NULL || s->low == NULL || s->low->driver != &tls_driver)
        return NULL;
    return ((struct drv *)s->low->data)->conn;
}

/* STARTTLS over libetpan's plain socket driver: adopt its fd, and replace
 * its low only once the handshake succeeded. */
static int starttls_socket(mailstream *s, struct tls_client *client, const char *host,
                           struct err *e)
{
    mailstream_low *old = s->low;
    mailstream_low *low;
    int fd = mailstream_low_get_fd(old);
    int flags;
    struct tls_conn *c;

    if (fd < 0)
        return err_set(e, ERR_NET, "STARTTLS: connection is closed");
    flags = fcntl(fd, F_GETFL);
    c = conn_new(fd, TLS_CONN_DEFAULT_TIMEOUT_MS);
    c->timeout_ms = drv_timeout(old, c);
    c->owns_fd = false;
    if (tls_conn_start_tls(c, client, host, e) < 0) {
        tls_conn_close(c);
        if (flags >= 0)
            (void)fcntl(fd, F_SETFL, flags);
        return -1;
    }
    low = tls_stream_low_new(c, e);
    if (low == NULL) {
        if (flags >= 0)
            (void)fcntl(fd, F_SETFL, flags);
        return -1;
    }
    c->owns_fd = true;
    low->timeout = old->timeout;
    low->privacy = old->privacy;
    /* The socket driver's free leaves the descriptor open. */
    mailstream_low_free(old);
    mailstream_set_low(s, low);
    return 0;
}

int tls_stream_starttls(mailstream *s, struct tls_client *client, const char *host,
                        struct err *e)
{
    struct drv *d;

    if (s == NULL || s->low == NULL)
        return err_set(e, ERR_INVAL, "STARTTLS: no stream");
    if (s->write_buffer_len > 0)
        return err_set(e, ERR_INVAL, "STARTTLS: output not yet sent");
    /* Whatever libetpan read past the go-ahead reply came in plaintext. */
    s->read_buffer_len = 0;
    if (s->low->driver == mailstream_socket_driver)
        return starttls_socket(s, client, host, e);
    if (s->low->driver != &tls_driver)
        return err_set(e, ERR_UNSUPPORTED, "STARTTLS: unknown kind of stream");
    d = s->low->data;
    if (mailstream_cancel_cancelled(d->cancel))
        return err_set(e, ERR_NET, "STARTTLS: stream was cancelled");
    if (tls_conn_start_tls(d->conn, client, host, e) < 0) {
        if (e != NULL)
            d->conn->last = *e;
        return -1;
    }
    return 0;
}
