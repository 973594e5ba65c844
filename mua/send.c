/* send: SMTP submission (libetpan's mailsmtp over lib/tls_stream) and the
 * sendmail command. */
#include "send.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libetpan/mailsmtp.h>

#include "buf.h"
#include "child.h"
#include "codec.h"
#include "log.h"
#include "rcfile.h"
#include "sanitize.h"
#include "tls.h"
#include "tls_stream.h"
#include "xalloc.h"

/* libetpan exports its raw command functions (used by its own AUTH code)
 * but does not install the header that declares them.  They write one
 * command and flush, or read one (multi-line) reply into session->response
 * and session->response_code (0: the connection failed). */
int mailsmtp_send_command(mailsmtp *session, char *command);
int mailsmtp_send_command_private(mailsmtp *session, char *command);
int mailsmtp_read_response(mailsmtp *session);

#define CMD_LINE_MAX 512        /* RFC 5321 command line, CRLF included */
#define HELO_NAME_MAX 253
#define HOST_NAME_MAX_LEN 253
#define AUTH_LINE_KEEP 200      /* bytes of the EHLO AUTH line kept for errors */
#define QUIT_WAIT_MS 3000       /* for the reply to QUIT */

/* ---- small helpers -------------------------------------------------------- */

static void buf_wipe_free(struct buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

/* Appends to a display text: at the buffer's ceiling the text is simply
 * cut short, which is fine for a message meant for people. */
static void text_puts(struct buf *b, const char *s)
{
    if (buf_puts(b, s) < 0)
        return;
}

static void text_printf(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void text_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    (void)r;
}

static void str_wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* A buffer for secrets: one allocation of n bytes up front, so that no
 * copy is left behind by a realloc; the ceiling is n. */
static void secret_buf_init(struct buf *b, size_t n)
{
    buf_init(b, n);
    if (buf_reserve(b, n) == NULL)
        die("secret_buf_init: cannot reserve %zu bytes", n);
}

static int op_timeout(const struct send_opts *o)
{
    unsigned ms = o->timeout_ms ? o->timeout_ms : SEND_DEFAULT_TIMEOUT_MS;

    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* A short user-safe form of an address for error texts. */
static char *addr_display(const char *addr)
{
    return sanitize_term_dup(addr, strlen(addr), 0);
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return true;
    return false;
}

/* ---- arguments ------------------------------------------------------------ */

static int check_address(const char *what, const char *addr, bool allow_empty, struct err *e)
{
    size_t n;

    if (addr == NULL)
        return err_set(e, ERR_INVAL, "%s: no address", what);
    n = strlen(addr);
    if (n == 0 && !allow_empty)
        return err_set(e, ERR_INVAL, "%s: empty address", what);
    if (n > SEND_ADDR_MAX)
        return err_set(e, ERR_INVAL, "%s: address longer than %d bytes", what, SEND_ADDR_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];

        if (c < 0x20 || c == 0x7f || c == '<' || c == '>') {
            char *d = addr_display(addr);

            err_set(e, ERR_INVAL, "%s: \"%s\" contains a control character or an angle bracket",
                    what, d);
            free(d);
            return -1;
        }
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int r = sanitize_utf8_next(addr + i, n - i, &cp);

        if (r < 0) {
            char *d = addr_display(addr);

            err_set(e, ERR_INVAL, "%s: \"%s\" is not valid UTF-8", what, d);
            free(d);
            return -1;
        }
        i += (size_t)r;
    }
    return 0;
}

struct data_info {
    bool eight_bit;      /* any byte >= 0x80 */
    bool header_8bit;    /* ... in the header section */
};

/* Does a header field named name start at p[0..n)? */
static bool field_is(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name);

    if (n <= k || strncasecmp(p, name, k) != 0)
        return false;
    while (k < n && (p[k] == ' ' || p[k] == '\t'))
        k++;
    return k < n && p[k] == ':';
}

/* NUL bytes and over-long lines cannot be sent faithfully, and a Bcc field
 * would show the blind copies to everyone: refuse them. */
static int check_data(const char *data, size_t len, struct data_info *di, struct err *e)
{
    size_t line = 1, col = 0;
    bool in_header = true;

    memset(di, 0, sizeof(*di));
    if (data == NULL || len == 0)
        return err_set(e, ERR_INVAL, "the message is empty");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];

        if (col == 0 && in_header &&
            (field_is(data + i, len - i, "Bcc") || field_is(data + i, len - i, "Resent-Bcc")))
            return err_set(e, ERR_INVAL, "line %zu of the message is a Bcc header field; it "
                                         "must be removed before sending", line);
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < len && data[i + 1] == '\n')
                i++;
            if (col == 0)
                in_header = false;
            line++;
            col = 0;
            continue;
        }
        if (c == '\0')
            return err_set(e, ERR_INVAL, "line %zu of the message contains a NUL byte", line);
        if (++col > SEND_LINE_MAX)
            return err_set(e, ERR_INVAL, "line %zu of the message is longer than %d bytes",
                           line, SEND_LINE_MAX);
        if (c >= 0x80) {
            di->eight_bit = true;
            if (in_header)
                di->header_8bit = true;
        }
    }
    return 0;
}

static int check_args(const char *from, const char *const *rcpts, size_t n_rcpts,
                      const char *data, size_t len, struct data_info *di, struct err *e)
{
    if (check_address("sender", from ? from : "", true, e) < 0)
        return -1;
    if (rcpts == NULL || n_rcpts == 0)
        return err_set(e, ERR_INVAL, "no recipients");
    for (size_t i = 0; i < n_rcpts; i++) {
        char what[40];

        snprintf(what, sizeof(what), "recipient %zu", i + 1);
        if (check_address(what, rcpts[i], false, e) < 0)
            return -1;
    }
    return check_data(data, len, di, e);
}

/* ---- smtp_url ------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char *pct_decode(const char *s, size_t n, const char *what, struct err *e)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;

            if (hi < 0 || hexval(s[i + 2]) < 0) {
                explicit_bzero(out, n + 1);
                free(out);
                err_set(e, ERR_INVAL, "smtp_url: bad %% escape in the %s", what);
                return NULL;
            }
            out[o] = (char)(hi * 16 + hexval(s[i + 2]));
            if (out[o] == '\0') {
                explicit_bzero(out, n + 1);
                free(out);
                err_set(e, ERR_INVAL, "smtp_url: %%00 in the %s", what);
                return NULL;
            }
            o++;
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

void send_url_free(struct send_url *u)
{
    free(u->host);
    free(u->user);
    str_wipe_free(u->pass);
    memset(u, 0, sizeof(*u));
}

int send_url_parse(const char *url, struct send_url *out, struct err *e)
{
    static const struct {
        const char *prefix;
        enum send_security security;
        unsigned port;
    } schemes[] = {
        {"smtp://", SEND_STARTTLS, 587},
        {"smtps://", SEND_TLS, 465},
        {"smtp+plain://", SEND_PLAIN, 25},
    };
    const char *rest = NULL, *auth, *hp, *at, *port_s = NULL;
    size_t alen, hplen, plen = 0;

    memset(out, 0, sizeof(*out));
    if (url == NULL || url[0] == '\0')
        return err_set(e, ERR_INVAL, "no smtp_url configured");
    for (size_t i = 0; i < ARRAY_LEN(schemes); i++) {
        size_t n = strlen(schemes[i].prefix);

        if (strncasecmp(url, schemes[i].prefix, n) == 0) {
            rest = url + n;
            out->security = schemes[i].security;
            out->port = schemes[i].port;
            break;
        }
    }
    if (rest == NULL)
        return err_set(e, ERR_INVAL,
                       "smtp_url must start with smtp://, smtps:// or smtp+plain://");
    auth = rest;
    alen = strcspn(auth, "/?#");
    if (auth[alen] != '\0' && !(auth[alen] == '/' && auth[alen + 1] == '\0'))
        return err_set(e, ERR_INVAL, "smtp_url: nothing may follow the host but \"/\"");

    at = memrchr(auth, '@', alen);
    if (at != NULL) {
        size_t ulen = (size_t)(at - auth);
        const char *colon = memchr(auth, ':', ulen);
        size_t nlen = colon ? (size_t)(colon - auth) : ulen;

        if (nlen == 0)
            return err_set(e, ERR_INVAL, "smtp_url: empty user name");
        out->user = pct_decode(auth, nlen, "user name", e);
        if (out->user == NULL)
            goto fail;
        if (colon != NULL) {
            out->pass = pct_decode(colon + 1, ulen - nlen - 1, "password", e);
            if (out->pass == NULL)
                goto fail;
        }
        hp = at + 1;
    } else {
        hp = auth;
    }
    hplen = alen - (size_t)(hp - auth);

    if (hplen > 0 && hp[0] == '[') {
        const char *close = memchr(hp, ']', hplen);
        struct in6_addr a6;
        char tmp[INET6_ADDRSTRLEN + 1];
        size_t hl;

        if (close == NULL) {
            err_set(e, ERR_INVAL, "smtp_url: missing \"]\" after an IPv6 address");
            goto fail;
        }
        hl = (size_t)(close - hp - 1);
        if (hl == 0 || hl >= sizeof(tmp)) {
            err_set(e, ERR_INVAL, "smtp_url: bad IPv6 address");
            goto fail;
        }
        memcpy(tmp, hp + 1, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            err_set(e, ERR_INVAL, "smtp_url: bad IPv6 address");
            goto fail;
        }
        out->host = xstrdup(tmp);
        if (close + 1 < hp + hplen) {
            if (close[1] != ':') {
                err_set(e, ERR_INVAL, "smtp_url: unexpected text after the IPv6 address");
                goto fail;
            }
            port_s = close + 2;
            plen = (size_t)(hp + hplen - port_s);
        }
    } else {
        const char *colon = memchr(hp, ':', hplen);
        size_t hl = colon ? (size_t)(colon - hp) : hplen;

        if (hl == 0) {
            err_set(e, ERR_INVAL, "smtp_url: no host");
            goto fail;
        }
        if (hl > HOST_NAME_MAX_LEN) {
            err_set(e, ERR_INVAL, "smtp_url: host name too long");
            goto fail;
        }
        for (size_t i = 0; i < hl; i++) {
            if (!host_char_ok(hp[i])) {
                err_set(e, ERR_INVAL, "smtp_url: bad character in the host name");
                goto fail;
            }
        }
        out->host = xstrndup(hp, hl);
        if (colon != NULL) {
            port_s = colon + 1;
            plen = (size_t)(hp + hplen - port_s);
        }
    }
    if (port_s != NULL) {
        unsigned long port = 0;

        if (plen == 0 || plen > 5) {
            err_set(e, ERR_INVAL, "smtp_url: bad port");
            goto fail;
        }
        for (size_t i = 0; i < plen; i++) {
            if (port_s[i] < '0' || port_s[i] > '9') {
                err_set(e, ERR_INVAL, "smtp_url: bad port");
                goto fail;
            }
            port = port * 10 + (unsigned long)(port_s[i] - '0');
        }
        if (port == 0 || port > 65535) {
            err_set(e, ERR_INVAL, "smtp_url: port must be 1..65535");
            goto fail;
        }
        out->port = (unsigned)port;
    }
    return 0;

fail:
    send_url_free(out);
    return -1;
}

/* ---- SMTP ------------------------------------------------------------------ */

struct smtp {
    struct send_url url;
    int timeout_ms;
    struct tls_client *tls;
    mailsmtp *session;         /* owns the stream once connected */
    bool broken;               /* the stream must be closed without QUIT */
    bool tls_active;
    bool starttls_offered;
    bool size_ext;             /* SIZE announced (with or without a limit) */
    struct send_caps caps;
    char auth_line[AUTH_LINE_KEEP];
    bool in_body;              /* the logger leaves the message out */
};

static void log_chunk(const char *dir, const char *str, size_t size)
{
    while (size > 0) {
        const char *nl = memchr(str, '\n', size);
        size_t n = nl ? (size_t)(nl - str) + 1 : size;
        size_t l = n;

        while (l > 0 && (str[l - 1] == '\n' || str[l - 1] == '\r'))
            l--;
        log_proto(LOGL_DEBUG, dir, str, l);
        str += n;
        size -= n;
    }
}

static void stream_log(struct smtp *s, int type, const char *str, size_t size)
{
    if (log_get_level() < LOGL_DEBUG)
        return;
    switch (type) {
    case MAILSTREAM_LOG_TYPE_DATA_SENT_PRIVATE:
        log_secret(LOGL_DEBUG, "C:");
        break;
    case MAILSTREAM_LOG_TYPE_DATA_SENT:
        if (!s->in_body)
            log_chunk("C:", str, size);
        break;
    case MAILSTREAM_LOG_TYPE_DATA_RECEIVED:
        log_chunk("S:", str, size);
        break;
    default:
        break;
    }
}

static void smtp_logger(mailsmtp *session, int type, const char *str, size_t size, void *ctx)
{
    (void)session;
    stream_log(ctx, type, str, size);
}

static void greeting_logger(mailstream *st, int type, const char *str, size_t size, void *ctx)
{
    (void)st;
    stream_log(ctx, type, str, size);
}

/* The connection failed: ERR_NET with the driver's reason. */
static int conn_err(struct smtp *s, struct err *e, const char *what)
{
    const struct err *last = NULL;
    struct tls_conn *c = NULL;

    if (s->session != NULL && s->session->stream != NULL)
        c = tls_stream_conn(s->session->stream);
    if (c != NULL)
        last = tls_conn_last_error(c);
    if (last != NULL && last->code != ERR_OK && last->text[0] != '\0')
        err_set(e, ERR_NET, "%s: %s", what, last->text);
    else
        err_set(e, ERR_NET, "%s: the server closed the connection", what);
    err_scope(e, ERR_SCOPE_ACCOUNT, true);
    s->broken = true;
    return -1;
}

/* The server's last reply, whole, for display: "550 first | second". */
static char *reply_dup(const struct smtp *s)
{
    struct buf b;
    const char *r = s->session->response ? s->session->response : "";

    buf_init(&b, 4 * ERR_TEXT_MAX);
    text_printf(&b, "%d ", s->session->response_code);
    display_lines(&b, r, strlen(r));
    return buf_steal(&b, NULL);
}

/* The server said no (or the connection died): "<what>: <reply>". */
static int reply_err(struct smtp *s, struct err *e, enum err_scope scope, const char *fmt, ...)
    CORREO_PRINTF(4, 5);
static int reply_err(struct smtp *s, struct err *e, enum err_scope scope, const char *fmt, ...)
{
    char what[ERR_TEXT_MAX];
    int code = s->session->response_code;
    va_list ap;
    char *r;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (code == 0)
        return conn_err(s, e, what);
    r = reply_dup(s);
    err_set(e, ERR_PROTO, "%s: %s", what, r);
    err_scope(e, scope, code / 100 == 4);
    free(r);
    return -1;
}

/* Send one command line (CRLF added) and read the reply.  Returns the reply
 * code, or -1 with *e when the connection failed. */
static int smtp_cmd(struct smtp *s, bool secret, struct err *e, const char *fmt, ...)
    CORREO_PRINTF(4, 5);
static int smtp_cmd(struct smtp *s, bool secret, struct err *e, const char *fmt, ...)
{
    struct buf line;
    va_list ap;
    int r, code;

    if (secret)
        secret_buf_init(&line, 2 * SEND_SECRET_MAX + 64);
    else
        buf_init(&line, 0);
    va_start(ap, fmt);
    r = buf_vprintf(&line, fmt, ap);
    va_end(ap);
    if (r < 0 || buf_puts(&line, "\r\n") < 0) {
        buf_wipe_free(&line);
        return err_set(e, ERR_LIMIT, "SMTP command too long");
    }
    if (secret)
        r = mailsmtp_send_command_private(s->session, line.data);
    else
        r = mailsmtp_send_command(s->session, line.data);
    buf_wipe_free(&line);
    if (r < 0)
        return conn_err(s, e, "cannot send to the server");
    code = mailsmtp_read_response(s->session);
    if (code == 0)
        return conn_err(s, e, "no reply from the server");
    return code;
}

static bool word_is(const char *p, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(p, w, n) == 0;
}

/* EHLO reply lines (codes removed by libetpan): the domain, then keywords. */
static void parse_ehlo(struct smtp *s)
{
    const char *p = s->session->response ? s->session->response : "";
    const char *nl = strchr(p, '\n');
    bool tls = s->caps.tls;

    memset(&s->caps, 0, sizeof(s->caps));
    s->caps.tls = tls;
    s->starttls_offered = false;
    s->size_ext = false;
    s->auth_line[0] = '\0';
    p = nl ? nl + 1 : p + strlen(p);
    while (*p != '\0') {
        size_t len, kw;

        nl = strchr(p, '\n');
        len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        kw = 0;
        while (kw < len && p[kw] != ' ' && p[kw] != '=')
            kw++;
        if (word_is(p, kw, "STARTTLS")) {
            s->starttls_offered = true;
        } else if (word_is(p, kw, "8BITMIME")) {
            s->caps.eightbitmime = true;
        } else if (word_is(p, kw, "SMTPUTF8")) {
            s->caps.smtputf8 = true;
        } else if (word_is(p, kw, "SIZE")) {
            unsigned long long v = 0;
            bool digits = false;

            s->size_ext = true;
            for (size_t i = kw + 1; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
                digits = true;
                if (v < (unsigned long long)SIZE_MAX / 10)
                    v = v * 10 + (unsigned long long)(p[i] - '0');
            }
            if (digits && v > 0) {
                s->caps.size_known = true;
                s->caps.size_max = (size_t)v;
            }
        } else if (word_is(p, kw, "AUTH")) {
            size_t i = kw;

            snprintf(s->auth_line, sizeof(s->auth_line), "%.*s", (int)(len - kw), p + kw);
            while (i < len) {
                size_t st;

                while (i < len && (p[i] == ' ' || p[i] == '='))
                    i++;
                st = i;
                while (i < len && p[i] != ' ')
                    i++;
                if (i == st)
                    break;
                if (word_is(p + st, i - st, "PLAIN"))
                    s->caps.auth |= SEND_AUTH_PLAIN;
                else if (word_is(p + st, i - st, "LOGIN"))
                    s->caps.auth |= SEND_AUTH_LOGIN;
                else if (word_is(p + st, i - st, "XOAUTH2"))
                    s->caps.auth |= SEND_AUTH_XOAUTH2;
                else if (word_is(p + st, i - st, "OAUTHBEARER"))
                    s->caps.auth |= SEND_AUTH_OAUTHBEARER;
                else
                    s->caps.auth |= SEND_AUTH_OTHER;
            }
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
}

static int helo_name(const struct send_opts *o, char out[HELO_NAME_MAX + 1], struct err *e)
{
    const char *name = o->helo_name;
    char host[HELO_NAME_MAX + 2];
    size_t n;

    if (name == NULL || name[0] == '\0') {
        host[0] = '\0';
        if (gethostname(host, sizeof(host)) < 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        name = host;
        n = strlen(name);
        for (size_t i = 0; i < n; i++)
            if (!host_char_ok(name[i]) || name[i] == '_')
                n = 0;
        if (n == 0 || n > HELO_NAME_MAX) {
            name = "localhost";
            n = strlen(name);
        }
        memcpy(out, name, n + 1);
        return 0;
    }
    n = strlen(name);
    if (n > HELO_NAME_MAX)
        return err_set(e, ERR_INVAL, "helo name longer than %d bytes", HELO_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!host_char_ok(c) && c != '[' && c != ']' && c != ':')
            return err_set(e, ERR_INVAL, "helo name: only letters, digits, '.', '-', "
                                         "and address literals are allowed");
    }
    memcpy(out, name, n + 1);
    return 0;
}

static int smtp_ehlo(struct smtp *s, const char *name, struct err *e)
{
    int code = smtp_cmd(s, false, e, "EHLO %s", name);

    if (code < 0)
        return -1;
    if (code != 250)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "EHLO refused");
    parse_ehlo(s);
    return 0;
}

/* Close the session: QUIT and its reply (RFC 5321 4.1.1.10), waited for
 * only briefly, unless the stream is unusable. */
static void smtp_close(struct smtp *s)
{
    if (s->session != NULL) {
        if (s->session->stream != NULL) {
            struct tls_conn *c = tls_stream_conn(s->session->stream);

            if (!s->broken && c != NULL) {
                tls_conn_set_timeout(c, s->timeout_ms < QUIT_WAIT_MS ? s->timeout_ms
                                                                     : QUIT_WAIT_MS);
                (void)smtp_cmd(s, false, NULL, "QUIT");
            }
            mailstream_close(s->session->stream);
            s->session->stream = NULL;
        }
        mailsmtp_free(s->session);
        s->session = NULL;
    }
    tls_client_free(s->tls);
    s->tls = NULL;
    send_url_free(&s->url);
}

/* Connect, read the greeting, EHLO, STARTTLS and EHLO again as the URL says. */
static int smtp_open(struct smtp *s, const struct send_opts *o, struct err *e)
{
    struct tls_client_opts topts;
    char name[HELO_NAME_MAX + 1];
    struct tls_conn *conn;
    mailstream *st;
    ssize_t got;
    int r;

    memset(s, 0, sizeof(*s));
    s->timeout_ms = op_timeout(o);
    if (send_url_parse(o->url, &s->url, e) < 0 || helo_name(o, name, e) < 0)
        return -1;
    memset(&topts, 0, sizeof(topts));
    topts.ca_file = o->tls_ca_file && o->tls_ca_file[0] ? o->tls_ca_file : NULL;
    topts.pin = o->tls_fingerprint && o->tls_fingerprint[0] ? o->tls_fingerprint : NULL;
    if (tls_client_new(&s->tls, &topts, e) < 0)
        return -1;
    if (tls_conn_connect(&conn, s->url.host, s->url.port, s->timeout_ms, e) < 0)
        return -1;
    if (s->url.security == SEND_TLS) {
        if (tls_conn_start_tls(conn, s->tls, s->url.host, e) < 0) {
            tls_conn_close(conn);
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            return -1;
        }
        s->tls_active = true;
    }
    st = tls_stream_mailstream(conn, e);
    if (st == NULL)
        return -1;
    s->session = mailsmtp_new(0, NULL);
    if (s->session == NULL)
        die("mailsmtp_new: out of memory");
    mailsmtp_set_logger(s->session, smtp_logger, s);

    /* Wait for the first bytes here, where a failure still has its reason
     * (mailsmtp_connect closes the stream when it fails). */
    mailstream_set_logger(st, greeting_logger, s);
    got = mailstream_feed_read_buffer(st);
    if (got <= 0) {
        const struct err *last = tls_conn_last_error(tls_stream_conn(st));

        if (got < 0 && last->code != ERR_OK)
            err_set(e, ERR_NET, "no greeting from the server: %s", last->text);
        else
            err_set(e, ERR_NET, "the server closed the connection without a greeting");
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        mailstream_close(st);
        return -1;
    }
    r = mailsmtp_connect(s->session, st);
    if (r != MAILSMTP_NO_ERROR)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "the server refused the connection");
    s->caps.tls = s->tls_active;
    if (smtp_ehlo(s, name, e) < 0)
        return -1;

    if (s->url.security == SEND_STARTTLS) {
        if (!s->starttls_offered) {
            if (!o->allow_plaintext) {
                err_set(e, ERR_TLS,
                        "the server does not offer STARTTLS; refusing to continue without "
                        "TLS (use smtps:// for implicit TLS, or smtp+plain:// for a trusted "
                        "cleartext server)");
                err_scope(e, ERR_SCOPE_ACCOUNT, false);
                return -1;
            }
        } else {
            int code = smtp_cmd(s, false, e, "STARTTLS");

            if (code < 0)
                return -1;
            if (code != 220)
                return reply_err(s, e, ERR_SCOPE_ACCOUNT, "STARTTLS refused");
            if (tls_stream_starttls(s->session->stream, s->tls, s->url.host, e) < 0) {
                s->broken = true;
                err_scope(e, ERR_SCOPE_ACCOUNT, false);
                return -1;
            }
            s->tls_active = true;
            s->caps.tls = true;
            if (smtp_ehlo(s, name, e) < 0)
                return -1;
        }
    }
    return 0;
}

static bool peer_is_loopback(struct smtp *s)
{
    struct tls_conn *c = tls_stream_conn(s->session->stream);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (c == NULL || getpeername(tls_conn_fd(c), (struct sockaddr *)&ss, &sl) < 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&ss;

        return (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

/* Base64 of p[0..n) into a wiped-on-free buffer. */
static void b64_secret(const void *p, size_t n, struct buf *out)
{
    secret_buf_init(out, (n + 2) / 3 * 4 + 4);
    if (codec_b64_encode(p, n, out) < 0)
        die("b64_secret: buffer too small");
}

static const char *mech_name(unsigned mech)
{
    switch (mech) {
    case SEND_AUTH_PLAIN: return "PLAIN";
    case SEND_AUTH_LOGIN: return "LOGIN";
    case SEND_AUTH_XOAUTH2: return "XOAUTH2";
    case SEND_AUTH_OAUTHBEARER: return "OAUTHBEARER";
    default: return "?";
    }
}

static int auth_login(struct smtp *s, const char *user, const char *pass, struct err *e)
{
    struct buf u, p;
    int code;

    code = smtp_cmd(s, false, e, "AUTH LOGIN");
    if (code < 0)
        return -1;
    if (code != 334)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "AUTH LOGIN refused");
    b64_secret(user, strlen(user), &u);
    code = smtp_cmd(s, true, e, "%s", buf_cstr(&u));
    buf_wipe_free(&u);
    if (code < 0)
        return -1;
    if (code != 334)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "AUTH LOGIN refused the user name");
    b64_secret(pass, strlen(pass), &p);
    code = smtp_cmd(s, true, e, "%s", buf_cstr(&p));
    buf_wipe_free(&p);
    if (code < 0)
        return -1;
    if (code != 235)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "AUTH LOGIN refused");
    return 0;
}

/* RFC 7628 saslname: ',' and '=' escaped. */
static void put_saslname(struct buf *b, const char *user)
{
    for (const char *p = user; *p; p++) {
        int r = *p == ',' ? buf_puts(b, "=2C") : *p == '=' ? buf_puts(b, "=3D") : buf_putc(b, *p);

        if (r < 0)
            die("put_saslname: buffer too small");
    }
}

static int smtp_auth(struct smtp *s, const char *user, const char *secret, bool oauth,
                     struct err *e)
{
    unsigned offered = s->caps.auth, mech = 0;
    struct buf ir, enc;
    char detail[ERR_TEXT_MAX / 2] = "";
    const char *name;
    int code;

    if (oauth)
        mech = (offered & SEND_AUTH_OAUTHBEARER) ? SEND_AUTH_OAUTHBEARER
             : (offered & SEND_AUTH_XOAUTH2) ? SEND_AUTH_XOAUTH2 : 0;
    else
        mech = (offered & SEND_AUTH_PLAIN) ? SEND_AUTH_PLAIN
             : (offered & SEND_AUTH_LOGIN) ? SEND_AUTH_LOGIN : 0;
    if (mech == 0) {
        struct buf b = BUF_INIT;

        if (s->auth_line[0] == '\0') {
            text_puts(&b, "none");
        } else {
            display_lines(&b, s->auth_line, strlen(s->auth_line));
        }
        err_set(e, ERR_UNSUPPORTED, "the server offers no authentication method usable here "
                "(offered: %s; usable: %s)", buf_cstr(&b),
                oauth ? "OAUTHBEARER, XOAUTH2" : "PLAIN, LOGIN");
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        buf_free(&b);
        return -1;
    }
    if (!s->tls_active && !peer_is_loopback(s)) {
        err_set(e, ERR_INVAL, "refusing to send credentials without TLS to a server that is "
                              "not on this host");
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    if (mech == SEND_AUTH_LOGIN)
        return auth_login(s, user, secret, e);

    name = mech_name(mech);
    secret_buf_init(&ir, strlen(user) * 3 + strlen(secret) + strlen(s->url.host) + 64);
    if (mech == SEND_AUTH_PLAIN) {
        /* authzid (empty) NUL authcid NUL passwd */
        if (buf_putc(&ir, '\0') < 0 || buf_puts(&ir, user) < 0 || buf_putc(&ir, '\0') < 0 ||
            buf_puts(&ir, secret) < 0)
            die("smtp_auth: buffer too small");
    } else if (mech == SEND_AUTH_XOAUTH2) {
        if (buf_printf(&ir, "user=%s\001auth=Bearer %s\001\001", user, secret) < 0)
            die("smtp_auth: buffer too small");
    } else {
        if (buf_puts(&ir, "n,a=") < 0)
            die("smtp_auth: buffer too small");
        put_saslname(&ir, user);
        if (buf_printf(&ir, ",\001host=%s\001port=%u\001auth=Bearer %s\001\001", s->url.host,
                       s->url.port, secret) < 0)
            die("smtp_auth: buffer too small");
    }
    b64_secret(ir.data, ir.len, &enc);
    buf_wipe_free(&ir);

    if (strlen("AUTH ") + strlen(name) + 1 + enc.len + 2 <= CMD_LINE_MAX) {
        code = smtp_cmd(s, true, e, "AUTH %s %s", name, buf_cstr(&enc));
    } else {
        /* Too long for one command line: empty challenge first (RFC 4954). */
        code = smtp_cmd(s, false, e, "AUTH %s", name);
        if (code == 334)
            code = smtp_cmd(s, true, e, "%s", buf_cstr(&enc));
    }
    buf_wipe_free(&enc);
    if (code < 0)
        return -1;
    if (code == 334) {
        /* A challenge after our response: OAuth servers explain a refusal
         * this way (RFC 7628) and expect a dummy reply; otherwise cancel. */
        const char *ch = s->session->response ? s->session->response : "";
        struct buf dec = BUF_INIT, shown = BUF_INIT;
        size_t chlen = strcspn(ch, "\r\n");

        buf_init(&dec, 2048);
        if (chlen > 0 && codec_b64_decode(ch, chlen, &dec, NULL) == 0 && dec.len > 0) {
            display_lines(&shown, dec.data, dec.len);
            snprintf(detail, sizeof(detail), " (%s)", buf_cstr(&shown));
        }
        buf_free(&dec);
        buf_free(&shown);
        code = smtp_cmd(s, false, e, "%s", mech == SEND_AUTH_OAUTHBEARER ? "AQ=="
                                           : mech == SEND_AUTH_XOAUTH2    ? ""
                                                                          : "*");
        if (code < 0)
            return -1;
    }
    if (code != 235)
        return reply_err(s, e, ERR_SCOPE_ACCOUNT, "AUTH %s refused%s", name, detail);
    return 0;
}

/* The secret for AUTH: token command, password, URL password or command. */
static int get_secret(const struct send_opts *o, const struct send_url *url, char **secret,
                      bool *oauth, struct err *e)
{
    int timeout = op_timeout(o);

    *secret = NULL;
    *oauth = o->oauth_cmd != NULL && o->oauth_cmd[0] != '\0';
    if (*oauth)
        return child_secret("oauth_cmd", o->oauth_cmd, timeout, secret, e);
    if (o->pass != NULL && o->pass[0] != '\0') {
        *secret = xstrdup(o->pass);
        return 0;
    }
    if (url->pass != NULL && url->pass[0] != '\0') {
        *secret = xstrdup(url->pass);
        return 0;
    }
    if (o->pass_cmd != NULL && o->pass_cmd[0] != '\0')
        return child_secret("smtp_pass_cmd", o->pass_cmd, timeout, secret, e);
    return err_set(e, ERR_INVAL, "a user is configured for SMTP but no password "
                                 "(smtp_pass or smtp_pass_cmd)");
}

/* Bytes of data given to libetpan: it ends the data with CRLF "." CRLF
 * itself, so a final line break of ours would become an extra empty line. */
static size_t body_len(const char *data, size_t len)
{
    if (len >= 2 && data[len - 2] == '\r' && data[len - 1] == '\n')
        return len - 2;
    if (len >= 1 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        return len - 1;
    return len;
}

static int smtp_transaction(struct smtp *s, const char *from, const char *const *rcpts,
                            size_t n_rcpts, const char *data, size_t len,
                            const struct data_info *di, bool utf8_addr, struct err *e)
{
    struct buf params = BUF_INIT;
    char *d;
    int code, r;

    if (di->eight_bit)
        text_puts(&params, " BODY=8BITMIME");
    if (s->caps.smtputf8 && (utf8_addr || di->header_8bit))
        text_puts(&params, " SMTPUTF8");
    if (s->size_ext)
        text_printf(&params, " SIZE=%zu", len);
    code = smtp_cmd(s, false, e, "MAIL FROM:<%s>%s", from, buf_cstr(&params));
    buf_free(&params);
    if (code < 0)
        return -1;
    if (code != 250) {
        d = addr_display(from);
        reply_err(s, e, ERR_SCOPE_MSG, "the server refused the sender <%s>", d);
        free(d);
        return -1;
    }

    for (size_t i = 0; i < n_rcpts; i++) {
        r = mailsmtp_rcpt(s->session, rcpts[i]);
        if (r != MAILSMTP_NO_ERROR) {
            d = addr_display(rcpts[i]);
            reply_err(s, e, ERR_SCOPE_MSG,
                      "the server refused the recipient <%s>; nothing was sent", d);
            free(d);
            if (!s->broken)
                (void)mailsmtp_reset(s->session);
            return -1;
        }
    }

    r = mailsmtp_data(s->session);
    if (r != MAILSMTP_NO_ERROR)
        return reply_err(s, e, ERR_SCOPE_MSG, "the server refused DATA");
    log_debug("C: <message, %zu bytes>", len);
    s->in_body = true;
    r = mailsmtp_data_message(s->session, data, body_len(data, len));
    s->in_body = false;
    if (r != MAILSMTP_NO_ERROR) {
        if (s->session->response_code == 0)
            return conn_err(s, e, "the connection failed before the server confirmed the "
                                  "message; it may not have been sent");
        return reply_err(s, e, ERR_SCOPE_MSG, "the server refused the message");
    }
    return 0;
}

/* ---- sendmail ---------------------------------------------------------------- */

struct words {
    char **v;
    size_t n;
    size_t commands;
};

static int collect_words(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct words *w = ctx;

    (void)e;
    if (w->commands++ > 0)
        return 0;
    w->v = XNEWARRAY(char *, cmd->argc + 1);
    for (size_t i = 0; i < cmd->argc; i++)
        w->v[i] = xstrdup(cmd->argv[i]);
    w->v[cmd->argc] = NULL;
    w->n = cmd->argc;
    return 0;
}

static void words_free(struct words *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i]);
    free(w->v);
    memset(w, 0, sizeof(*w));
}

static int split_command(const char *cmd, struct words *w, struct err *e)
{
    struct rc_loader l;
    struct rc_diag d;
    int rc = 0;

    memset(w, 0, sizeof(*w));
    rc_diag_init(&d);
    rc_loader_init(&l, collect_words, w, &d);
    l.no_source = true;
    l.no_env = true;
    rcfile_load_string(&l, "sendmail", cmd, strlen(cmd));
    if (d.n > 0) {
        char *m = sanitize_term_dup(d.msgs[0], strlen(d.msgs[0]), 0);

        rc = err_set(e, ERR_INVAL, "%s", m);
        free(m);
    } else if (w->commands == 0 || w->n == 0) {
        rc = err_set(e, ERR_INVAL, "the sendmail command is empty");
    } else if (w->commands > 1) {
        rc = err_set(e, ERR_INVAL, "the sendmail command must be one command (no ';')");
    }
    rc_diag_free(&d);
    if (rc < 0)
        words_free(w);
    return rc;
}

static int send_sendmail(const struct send_opts *o, const char *from, const char *const *rcpts,
                         size_t n_rcpts, const char *data, size_t len, struct err *e)
{
    struct buf input = BUF_INIT, out, errout;
    const char **argv;
    struct words w;
    struct child c;
    bool has_oi = false;
    size_t n = 0;
    int rc = -1;

    if (split_command(o->sendmail, &w, e) < 0)
        return -1;
    for (size_t i = 1; i < w.n; i++)
        if (strcmp(w.v[i], "-oi") == 0 || strcmp(w.v[i], "-i") == 0)
            has_oi = true;
    argv = XNEWARRAY(const char *, w.n + n_rcpts + 5);
    for (size_t i = 0; i < w.n; i++)
        argv[n++] = w.v[i];
    if (!has_oi)
        argv[n++] = "-oi";
    if (from != NULL && from[0] != '\0') {
        argv[n++] = "-f";
        argv[n++] = from;
    }
    argv[n++] = "--";
    for (size_t i = 0; i < n_rcpts; i++)
        argv[n++] = rcpts[i];
    argv[n] = NULL;

    /* A local command takes mail with LF line ends. */
    if (buf_reserve(&input, len) == NULL)
        die("send_sendmail: cannot reserve %zu bytes", len);
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            continue;
        if (buf_putc(&input, data[i]) < 0)
            die("send_sendmail: buffer");
    }

    buf_init(&out, SEND_CMD_OUTPUT_MAX);
    buf_init(&errout, SEND_CMD_OUTPUT_MAX);
    memset(&c, 0, sizeof(c));
    c.argv = argv;
    c.input = buf_cstr(&input);
    c.input_len = input.len;
    c.out = &out;
    c.errout = &errout;
    c.timeout_ms = op_timeout(o);
    if (child_run(&c, e) < 0) {
        err_prefix(e, "sendmail");
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
    } else if (c.timed_out || c.signal != 0 || c.status != 0) {
        child_err(e, "the sendmail command", &c, (unsigned)c.timeout_ms);
    } else {
        rc = 0;
    }
    buf_free(&out);
    buf_free(&errout);
    buf_free(&input);
    free(argv);
    words_free(&w);
    return rc;
}

/* ---- public ------------------------------------------------------------------ */

int send_probe(const struct send_opts *o, struct send_caps *caps, struct err *e)
{
    struct smtp s;
    int rc;

    memset(caps, 0, sizeof(*caps));
    if (o->sendmail != NULL && o->sendmail[0] != '\0') {
        caps->sendmail = true;
        caps->eightbitmime = true;
        return 0;
    }
    rc = smtp_open(&s, o, e);
    if (rc == 0)
        *caps = s.caps;
    smtp_close(&s);
    return rc;
}

int send_message(const struct send_opts *o, const char *envelope_from,
                 const char *const *rcpts, size_t n_rcpts, const char *data, size_t len,
                 struct err *e)
{
    struct err local;
    struct data_info di;
    struct send_url url;
    struct smtp s;
    const char *uname;
    char *user = NULL, *secret = NULL;
    bool oauth = false, utf8_addr;
    int rc = -1;

    if (e == NULL)
        e = &local;
    err_clear(e);
    if (envelope_from == NULL)
        envelope_from = "";
    if (check_args(envelope_from, rcpts, n_rcpts, data, len, &di, e) < 0)
        return -1;
    if (o->sendmail != NULL && o->sendmail[0] != '\0')
        return send_sendmail(o, envelope_from, rcpts, n_rcpts, data, len, e);

    /* Credentials first: a failing password command costs no connection. */
    if (send_url_parse(o->url, &url, e) < 0)
        return -1;
    uname = o->user != NULL && o->user[0] != '\0' ? o->user : url.user;
    if (uname != NULL && get_secret(o, &url, &secret, &oauth, e) < 0) {
        send_url_free(&url);
        return -1;
    }
    user = uname != NULL ? xstrdup(uname) : NULL;
    send_url_free(&url);

    utf8_addr = has_8bit(envelope_from, strlen(envelope_from));
    for (size_t i = 0; i < n_rcpts; i++)
        utf8_addr = utf8_addr || has_8bit(rcpts[i], strlen(rcpts[i]));

    if (smtp_open(&s, o, e) < 0)
        goto done;
    if (di.eight_bit && !s.caps.eightbitmime) {
        err_set(e, ERR_UNSUPPORTED, "the message has 8-bit content but the server does not "
                                    "announce 8BITMIME; it must be encoded (quoted-printable "
                                    "or base64) to be sent there");
        goto done;
    }
    if (utf8_addr && !s.caps.smtputf8) {
        err_set(e, ERR_UNSUPPORTED, "an address is not ASCII but the server does not "
                                    "announce SMTPUTF8");
        goto done;
    }
    if (s.caps.size_known && len > s.caps.size_max) {
        err_set(e, ERR_LIMIT, "the message is %zu bytes; the server accepts at most %zu",
                len, s.caps.size_max);
        goto done;
    }
    if (user != NULL && smtp_auth(&s, user, secret, oauth, e) < 0)
        goto done;
    rc = smtp_transaction(&s, envelope_from, rcpts, n_rcpts, data, len, &di, utf8_addr, e);
done:
    smtp_close(&s);
    str_wipe_free(secret);
    free(user);
    return rc;
}
