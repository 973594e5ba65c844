/* imap: URLs, settings, the connection and the guard in front of libetpan. */
#include "imap.h"

#include <libetpan/libetpan.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/mailstream_low.h>

#include "child.h"
#include "codec.h"
#include "config.h"
#include "sanitize.h"
#include "tls.h"
#include "tls_stream.h"
#include "xalloc.h"

#define LOGOUT_TIMEOUT_MS 2000
#define SERVER_TEXT_MAX 200

/* ---- URLs ------------------------------------------------------------------ */

bool imap_url_is(const char *path)
{
    return path != NULL &&
           (strncasecmp(path, "imap://", 7) == 0 || strncasecmp(path, "imaps://", 8) == 0);
}

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

/* Percent-decode s[0..n) into a new string; NULL (with *e) for a bad
 * escape, a NUL or another control character. */
static char *pct_decode(const char *s, size_t n, const char *what, struct err *e)
{
    char *out = xmalloc(n + 1);
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
                free(out);
                err_set(e, ERR_INVAL, "bad %%-escape in the %s of an IMAP URL", what);
                return NULL;
            }
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            free(out);
            err_set(e, ERR_INVAL, "control character in the %s of an IMAP URL", what);
            return NULL;
        }
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return out;
}

int imap_url_parse(const char *url, struct imap_url *out, struct err *e)
{
    const char *p, *auth_end, *at, *host, *host_end, *port_s = NULL;
    size_t n;

    memset(out, 0, sizeof *out);
    if (url == NULL)
        return err_set(e, ERR_INVAL, "no IMAP URL");
    if (strncasecmp(url, "imaps://", 8) == 0) {
        out->tls = true;
        p = url + 8;
    } else if (strncasecmp(url, "imap://", 7) == 0) {
        p = url + 7;
    } else {
        return err_set(e, ERR_INVAL, "not an imap:// or imaps:// URL");
    }
    auth_end = strchr(p, '/');
    if (auth_end == NULL)
        auth_end = p + strlen(p);
    at = NULL;
    for (const char *q = p; q < auth_end; q++)
        if (*q == '@')
            at = q;
    host = p;
    if (at != NULL) {
        if (memchr(p, ':', (size_t)(at - p)) != NULL)
            return err_set(e, ERR_INVAL, "a password in an IMAP URL is refused: "
                                         "use imap_pass or imap_pass_cmd");
        if (at == p)
            return err_set(e, ERR_INVAL, "empty user name in the IMAP URL");
        out->user = pct_decode(p, (size_t)(at - p), "user", e);
        if (out->user == NULL)
            return -1;
        host = at + 1;
    }
    if (*host == '[') {
        const char *rb = memchr(host, ']', (size_t)(auth_end - host));

        if (rb == NULL) {
            imap_url_free(out);
            return err_set(e, ERR_INVAL, "unclosed [ in the host of the IMAP URL");
        }
        out->host = xstrndup(host + 1, (size_t)(rb - host - 1));
        host_end = rb + 1;
        if (host_end < auth_end) {
            if (*host_end != ':') {
                imap_url_free(out);
                return err_set(e, ERR_INVAL, "junk after ] in the IMAP URL");
            }
            port_s = host_end + 1;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t)(auth_end - host));

        host_end = colon != NULL ? colon : auth_end;
        out->host = xstrndup(host, (size_t)(host_end - host));
        if (colon != NULL)
            port_s = colon + 1;
    }
    if (out->host[0] == '\0') {
        imap_url_free(out);
        return err_set(e, ERR_INVAL, "no host in the IMAP URL");
    }
    for (const char *q = out->host; *q != '\0'; q++) {
        unsigned char c = (unsigned char)*q;

        if (c <= 0x20 || c == 0x7f || c == '%' || c == '/' || c == '?' || c == '#') {
            imap_url_free(out);
            return err_set(e, ERR_INVAL, "bad character in the host of the IMAP URL");
        }
    }
    out->port = out->tls ? IMAPS_PORT : IMAP_PORT;
    if (port_s != NULL) {
        unsigned long v = 0;

        if (port_s == auth_end) {
            imap_url_free(out);
            return err_set(e, ERR_INVAL, "empty port in the IMAP URL");
        }
        for (const char *q = port_s; q < auth_end; q++) {
            if (*q < '0' || *q > '9' || v > 65535) {
                imap_url_free(out);
                return err_set(e, ERR_INVAL, "bad port in the IMAP URL");
            }
            v = v * 10 + (unsigned long)(*q - '0');
        }
        if (v == 0 || v > 65535) {
            imap_url_free(out);
            return err_set(e, ERR_INVAL, "port out of range in the IMAP URL");
        }
        out->port = (unsigned)v;
    }
    p = *auth_end == '/' ? auth_end + 1 : auth_end;
    n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    if (n > IMAP_FOLDER_MAX) {
        imap_url_free(out);
        return err_set(e, ERR_INVAL, "folder name longer than %d bytes", IMAP_FOLDER_MAX);
    }
    out->folder = n == 0 ? xstrdup("INBOX") : pct_decode(p, n, "folder", e);
    if (out->folder == NULL) {
        imap_url_free(out);
        return -1;
    }
    return 0;
}

void imap_url_free(struct imap_url *u)
{
    if (u == NULL)
        return;
    free(u->user);
    free(u->host);
    free(u->folder);
    memset(u, 0, sizeof *u);
}

char *imap_url_account(const struct imap_url *u, const char *user)
{
    bool v6 = strchr(u->host, ':') != NULL;

    return xasprintf("%s://%s%s%s%s%s:%u/", u->tls ? "imaps" : "imap", user ? user : "",
                     user ? "@" : "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
}

/* ---- settings ---------------------------------------------------------------- */

void imap_limits_default(struct imap_limits *l)
{
    l->line_max = IMAP_LINE_MAX;
    l->literal_max = IMAP_LITERAL_MAX;
    l->depth_max = IMAP_DEPTH_MAX;
}

static struct imap_settings g_settings;
static char *g_strings[6];

static const char *keep(int i, const char *s)
{
    free(g_strings[i]);
    g_strings[i] = s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
    return g_strings[i];
}

void imap_settings_set(const struct imap_settings *s)
{
    static const struct imap_settings none;

    if (s == NULL)
        s = &none;
    g_settings = *s;
    g_settings.user = keep(0, s->user);
    g_settings.pass = keep(1, s->pass);
    g_settings.pass_cmd = keep(2, s->pass_cmd);
    g_settings.tls_fingerprint = keep(3, s->tls_fingerprint);
    g_settings.tls_ca_file = keep(4, s->tls_ca_file);
    g_settings.oauth_cmd = keep(5, s->oauth_cmd);
}

const struct imap_settings *imap_settings_get(void)
{
    return &g_settings;
}

void imap_settings_from_config(const struct config *cfg)
{
    struct imap_settings s;

    memset(&s, 0, sizeof s);
    s.user = cfg->opt.imap_user;
    s.pass = cfg->opt.imap_pass;
    s.pass_cmd = cfg->opt.imap_pass_cmd;
    s.oauth_cmd = cfg->opt.imap_oauth_cmd;
    s.tls_fingerprint = cfg->opt.tls_fingerprint;
    s.tls_ca_file = cfg->opt.tls_ca_file;
    s.allow_plain = !cfg->opt.ssl_force_tls;
    if (cfg->opt.connect_timeout > 0)
        s.timeout_ms = (int)(cfg->opt.connect_timeout * 1000);
    imap_settings_set(&s);
}

/* ---- greeting --------------------------------------------------------------- */

enum imap_greeting imap_greeting_from_result(int r)
{
    switch (r) {
    case MAILIMAP_NO_ERROR_NON_AUTHENTICATED:
        return IMAP_GREETING_OK;
    case MAILIMAP_NO_ERROR_AUTHENTICATED:
        return IMAP_GREETING_PREAUTH;
    case MAILIMAP_ERROR_DONT_ACCEPT_CONNECTION:
        return IMAP_GREETING_BYE;
    default:
        return IMAP_GREETING_BAD;
    }
}

int imap_greeting_judge(enum imap_greeting g, bool tls_pending, struct err *e)
{
    switch (g) {
    case IMAP_GREETING_OK:
        return 0;
    case IMAP_GREETING_PREAUTH:
        if (!tls_pending)
            return 0;
        err_set(e, ERR_TLS, "the server greeted with PREAUTH before STARTTLS: refused "
                            "(the connection could not be secured)");
        break;
    case IMAP_GREETING_BYE:
        err_set(e, ERR_PROTO, "the server refused the connection (BYE greeting)");
        break;
    case IMAP_GREETING_BAD:
        err_set(e, ERR_PROTO, "the server's greeting is not IMAP");
        break;
    }
    err_scope(e, ERR_SCOPE_ACCOUNT, g == IMAP_GREETING_BYE);
    return -1;
}

/* ---- the connection and its guard ------------------------------------------ */

enum brace_state { BR_NONE = 0, BR_DIGITS, BR_PLUS, BR_CLOSED, BR_CR };

struct imap_conn {
    mailimap *s;
    struct tls_conn *tc;          /* owned by the stream under s */
    struct tls_client *tls;
    char *host;
    char *user;
    struct imap_limits lim;
    bool broken;
    bool dropped;                 /* the connection ended: EOF, reset, timeout, BYE */
    bool guard_failed;
    struct err guard_err;
    uint64_t bytes_in;
    /* the guard's view of the byte stream */
    size_t line;                  /* bytes of the current line so far */
    uint64_t lit_left;            /* literal bytes still to come */
    unsigned depth;
    bool quoted, escaped;
    enum brace_state brace;
    uint64_t brace_num;
    /* the greeting: its first bytes, and whether it was a BYE (which the
     * guard keeps from libetpan, whose parser leaks a BYE greeting) */
    bool in_greeting, greeting_bye;
    char greet_head[6];
    size_t greet_len;
};

struct guard {
    mailstream_low *inner;
    struct imap_conn *c;
};

static void guard_reset(struct imap_conn *c)
{
    c->line = 0;
    c->lit_left = 0;
    c->depth = 0;
    c->quoted = c->escaped = false;
    c->brace = BR_NONE;
    c->brace_num = 0;
}

static int guard_fail(struct imap_conn *c, const char *fmt, size_t v)
{
    err_set(&c->guard_err, ERR_LIMIT, fmt, v);
    err_scope(&c->guard_err, ERR_SCOPE_BOX, false);
    c->guard_failed = true;
    c->broken = true;
    return -1;
}

/* Follow the bytes the server sent: lines, literals, quoted strings and
 * parentheses, failing as soon as a limit is passed. */
static int guard_scan(struct imap_conn *c, const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char ch;

        if (c->lit_left > 0) {
            size_t take = (uint64_t)(n - i) < c->lit_left ? n - i : (size_t)c->lit_left;

            c->lit_left -= take;
            i += take;
            continue;
        }
        ch = p[i++];
        if (c->in_greeting) {
            if (c->greet_len < sizeof c->greet_head && ch != '\n')
                c->greet_head[c->greet_len++] = (char)ch;
            if (c->greet_len == sizeof c->greet_head || ch == '\n') {
                c->in_greeting = false;
                if (c->greet_len == sizeof c->greet_head &&
                    strncasecmp(c->greet_head, "* BYE ", sizeof c->greet_head) == 0) {
                    c->greeting_bye = true;
                    c->broken = true;
                    return -1;
                }
            }
        }
        if (++c->line > c->lim.line_max)
            return guard_fail(c, "a line from the server is longer than %zu bytes",
                              c->lim.line_max);
        if (ch == '\n') {
            if (c->brace == BR_CLOSED || c->brace == BR_CR) {
                c->lit_left = c->brace_num;   /* the response goes on after it */
            } else {
                c->depth = 0;
                c->quoted = c->escaped = false;
            }
            c->line = 0;
            c->brace = BR_NONE;
            continue;
        }
        if (c->quoted) {
            if (c->escaped)
                c->escaped = false;
            else if (ch == '\\')
                c->escaped = true;
            else if (ch == '"')
                c->quoted = false;
            continue;
        }
        switch (ch) {
        case '"':
            c->quoted = true;
            c->brace = BR_NONE;
            break;
        case '(':
            if (++c->depth > c->lim.depth_max)
                return guard_fail(c, "a reply from the server nests deeper than %zu levels",
                                  c->lim.depth_max);
            c->brace = BR_NONE;
            break;
        case ')':
            if (c->depth > 0)
                c->depth--;
            c->brace = BR_NONE;
            break;
        case '{':
            c->brace = BR_DIGITS;
            c->brace_num = 0;
            break;
        case '+':
            c->brace = c->brace == BR_DIGITS ? BR_PLUS : BR_NONE;
            break;
        case '}':
            c->brace = c->brace == BR_DIGITS || c->brace == BR_PLUS ? BR_CLOSED : BR_NONE;
            break;
        case '\r':
            c->brace = c->brace == BR_CLOSED ? BR_CR : BR_NONE;
            break;
        default:
            if (ch >= '0' && ch <= '9' && c->brace == BR_DIGITS) {
                c->brace_num = c->brace_num * 10 + (uint64_t)(ch - '0');
                if (c->brace_num > c->lim.literal_max)
                    return guard_fail(c, "the server announced a literal larger than %zu bytes",
                                      c->lim.literal_max);
            } else {
                c->brace = BR_NONE;
            }
            break;
        }
    }
    return 0;
}

static ssize_t g_read(mailstream_low *low, void *buf, size_t count)
{
    struct guard *g = low->data;
    struct imap_conn *c = g->c;
    ssize_t r;

    if (c == NULL)
        return -1;   /* the connection is being closed: no more I/O */
    if (c->broken)
        return -1;
    r = g->inner->driver->mailstream_read(g->inner, buf, count);
    if (r <= 0) {
        /* The end of the stream or an I/O error (reset, timeout): the
         * connection is gone, whatever libetpan makes of the short read. */
        c->broken = true;
        c->dropped = true;
        return r < 0 ? -1 : 0;
    }
    c->bytes_in += (uint64_t)r;
    if (r > 0 && guard_scan(c, buf, (size_t)r) != 0)
        return -1;
    return r;
}

static ssize_t g_write(mailstream_low *low, const void *buf, size_t count)
{
    struct guard *g = low->data;
    ssize_t r;

    if (g->c == NULL)
        return -1;
    if (g->c->broken)
        return -1;
    r = g->inner->driver->mailstream_write(g->inner, buf, count);
    if (r < 0) {
        g->c->broken = true;
        g->c->dropped = true;
    }
    return r;
}

static int g_close(mailstream_low *low)
{
    struct guard *g = low->data;

    return g->inner->driver->mailstream_close(g->inner);
}

static int g_get_fd(mailstream_low *low)
{
    struct guard *g = low->data;

    return g->inner->driver->mailstream_get_fd(g->inner);
}

static void g_free(mailstream_low *low)
{
    struct guard *g = low->data;

    if (g->c != NULL)
        g->c->tc = NULL;
    mailstream_low_free(g->inner);
    free(g);
    free(low);
}

static void g_cancel(mailstream_low *low)
{
    struct guard *g = low->data;

    g->inner->driver->mailstream_cancel(g->inner);
}

static struct mailstream_cancel *g_get_cancel(mailstream_low *low)
{
    struct guard *g = low->data;

    return g->inner->driver->mailstream_get_cancel(g->inner);
}

static carray *g_get_certificate_chain(mailstream_low *low)
{
    struct guard *g = low->data;

    return g->inner->driver->mailstream_get_certificate_chain(g->inner);
}

static mailstream_low_driver guard_driver = {
    .mailstream_read = g_read,
    .mailstream_write = g_write,
    .mailstream_close = g_close,
    .mailstream_get_fd = g_get_fd,
    .mailstream_free = g_free,
    .mailstream_cancel = g_cancel,
    .mailstream_get_cancel = g_get_cancel,
    .mailstream_get_certificate_chain = g_get_certificate_chain,
    .mailstream_setup_idle = NULL,
    .mailstream_unsetup_idle = NULL,
    .mailstream_interrupt_idle = NULL,
};

mailimap *imap_session(struct imap_conn *c)
{
    return c->s;
}

bool imap_has_cap(struct imap_conn *c, const char *cap)
{
    /* A bare "* CAPABILITY" leaves the list NULL, which libetpan's
     * lookups do not expect. */
    if (c->s == NULL || c->s->imap_connection_info == NULL ||
        c->s->imap_connection_info->imap_capability == NULL ||
        c->s->imap_connection_info->imap_capability->cap_list == NULL)
        return false;
    if (strncasecmp(cap, "AUTH=", 5) == 0)
        return mailimap_has_authentication(c->s, cap + 5) != 0;
    return mailimap_has_extension(c->s, cap) != 0;
}

bool imap_usable(const struct imap_conn *c)
{
    return c != NULL && !c->broken && c->s != NULL && c->s->imap_stream != NULL;
}

void imap_mark_broken(struct imap_conn *c)
{
    c->broken = true;
}

bool imap_dropped(const struct imap_conn *c)
{
    return c != NULL && c->broken && c->dropped && !c->guard_failed;
}

int imap_poll(struct imap_conn *c, int timeout_ms)
{
    struct pollfd pfd;
    mailstream *st;
    int r;

    if (!imap_usable(c))
        return -1;
    st = c->s->imap_stream;
    if (st->read_buffer_len > 0 || (c->tc != NULL && tls_conn_has_buffered(c->tc)))
        return 1;
    pfd.fd = c->tc != NULL ? tls_conn_fd(c->tc) : -1;
    if (pfd.fd < 0)
        return -1;
    pfd.events = POLLIN;
    pfd.revents = 0;
    do
        r = poll(&pfd, 1, timeout_ms < 0 ? 0 : timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    return r > 0 ? 1 : 0;
}

const char *imap_user(const struct imap_conn *c)
{
    return c->user;
}

uint64_t imap_bytes_in(const struct imap_conn *c)
{
    return c->bytes_in;
}

/* The server's text of its last reply, log-safe and short, as " (text)",
 * or "". */
static void server_text(struct imap_conn *c, char *out, size_t size)
{
    const char *t = c->s != NULL ? c->s->imap_response : NULL;
    struct buf b;

    out[0] = '\0';
    if (t == NULL || t[0] == '\0')
        return;
    buf_init(&b, SERVER_TEXT_MAX);
    (void)sanitize_log(&b, t, strlen(t));
    snprintf(out, size, " (%s)", buf_cstr(&b));
    buf_free(&b);
}

int imap_check(struct imap_conn *c, int r, const char *what, struct err *e)
{
    char text[SERVER_TEXT_MAX + 8];

    if (r == MAILIMAP_NO_ERROR || r == MAILIMAP_NO_ERROR_AUTHENTICATED ||
        r == MAILIMAP_NO_ERROR_NON_AUTHENTICATED)
        return 0;
    if (c->guard_failed) {
        if (e != NULL)
            *e = c->guard_err;
        err_prefix(e, "%s", what);
        return -1;
    }
    switch (r) {
    case MAILIMAP_ERROR_STREAM: {
        const struct err *last = c->tc != NULL ? tls_conn_last_error(c->tc) : NULL;

        c->broken = true;
        c->dropped = true;
        if (last != NULL && last->code != ERR_OK)
            err_set(e, ERR_NET, "%s: %s", what, last->text);
        else
            err_set(e, ERR_NET, "%s: the connection to the server was lost", what);
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        return -1;
    }
    case MAILIMAP_ERROR_PARSE:
        if (c->dropped)
            return imap_check(c, MAILIMAP_ERROR_STREAM, what, e);
        c->broken = true;
        err_set(e, ERR_PARSE, "%s: the server's reply could not be parsed", what);
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    case MAILIMAP_ERROR_FATAL:
        c->broken = true;
        c->dropped = true;
        server_text(c, text, sizeof text);
        err_set(e, ERR_PROTO, "%s: the server ended the session%s", what, text);
        err_scope(e, ERR_SCOPE_ACCOUNT, true);
        return -1;
    case MAILIMAP_ERROR_MEMORY:
        err_set(e, ERR_LIMIT, "%s: out of memory", what);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    case MAILIMAP_ERROR_BAD_STATE:
        err_set(e, ERR_INVAL, "%s: not possible in this state", what);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    default:
        server_text(c, text, sizeof text);
        err_set(e, ERR_PROTO, "%s failed%s", what, text);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
}

int imap_simple(struct imap_conn *c, const char *command, struct err *e)
{
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "%s: not connected", command);
    return imap_check(c, mailimap_custom_command(c->s, command), command, e);
}

static int write_all(struct imap_conn *c, const char *s, size_t n);

/* CAPABILITY, the answer stored in the session by the response parser.
 * Not mailimap_capability(): it dereferences the session's capability
 * list, which is NULL when the server answered OK without a CAPABILITY
 * line (that server then has no capabilities). */
static int ask_caps(struct imap_conn *c, struct err *e)
{
    struct mailimap_response *resp = NULL;
    int r = mailimap_send_current_tag(c->s);

    if (r == MAILIMAP_NO_ERROR &&
        (write_all(c, "CAPABILITY\r\n", 12) != 0 || mailstream_flush(c->s->imap_stream) != 0))
        r = MAILIMAP_ERROR_STREAM;
    if (r == MAILIMAP_NO_ERROR && mailimap_read_line(c->s) == NULL)
        r = MAILIMAP_ERROR_STREAM;
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_parse_response(c->s, &resp);
    if (r == MAILIMAP_NO_ERROR) {
        bool ok = resp->rsp_resp_done->rsp_type == MAILIMAP_RESP_DONE_TYPE_TAGGED &&
                  resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type ==
                      MAILIMAP_RESP_COND_STATE_OK;

        mailimap_response_free(resp);
        if (!ok)
            r = MAILIMAP_ERROR_CAPABILITY;
    }
    return imap_check(c, r, "CAPABILITY", e);
}

static void b64_encode(const unsigned char *in, size_t n, struct buf *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        char q[4];

        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        q[0] = tab[(v >> 18) & 63];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? tab[v & 63] : '=';
        if (buf_append(out, q, 4) != 0)
            die("imap: unbounded buffer refused an append");
    }
}

static int write_all(struct imap_conn *c, const char *s, size_t n)
{
    return mailstream_write(c->s->imap_stream, s, n) == (ssize_t)n ? 0 : -1;
}

/* The server's SASL challenge in the line just read ("+ base64"), decoded
 * and log-safe, as " (text)" into out, or "" when there is none. */
static void challenge_text(struct imap_conn *c, char *out, size_t size)
{
    const char *l = c->s->imap_stream_buffer->str;
    size_t n = c->s->imap_stream_buffer->len, i = 1;
    struct buf dec, shown;

    out[0] = '\0';
    while (i < n && l[i] == ' ')
        i++;
    while (n > i && (l[n - 1] == '\n' || l[n - 1] == '\r'))
        n--;
    if (n <= i || n - i > 4 * SERVER_TEXT_MAX)
        return;
    buf_init(&dec, 3 * SERVER_TEXT_MAX + 4);
    buf_init(&shown, SERVER_TEXT_MAX);
    if (codec_b64_decode(l + i, n - i, &dec, NULL) == 0 && dec.len > 0) {
        (void)sanitize_log(&shown, dec.data, dec.len);
        snprintf(out, size, " (%s)", buf_cstr(&shown));
    }
    buf_free(&dec);
    buf_free(&shown);
}

#define SASL_ROUNDS_MAX 4   /* continuations answered before giving up */

/* AUTHENTICATE mech with the response raw[0..n), on the command line when
 * the server has SASL-IR, else after the first continuation.  A further
 * continuation is, for OAuth (oauth_reply non-NULL), the server's JSON
 * explanation of a refusal (RFC 7628 3.2.3): it is answered with
 * oauth_reply and kept for the error; otherwise it cancels ("*"). */
static int auth_sasl(struct imap_conn *c, const char *mech, const char *raw, size_t n,
                     const char *oauth_reply, struct err *e)
{
    struct buf b64 = BUF_INIT;
    struct mailimap_response *resp = NULL;
    bool ir = imap_has_cap(c, "SASL-IR"), sent = ir, answered = false;
    char what[64], detail[SERVER_TEXT_MAX + 8] = "";
    int r, ok = 0;

    snprintf(what, sizeof what, "AUTHENTICATE %s", mech);
    b64_encode((const unsigned char *)raw, n, &b64);
    r = mailimap_send_current_tag(c->s);
    if (r == MAILIMAP_NO_ERROR &&
        (write_all(c, what, strlen(what)) != 0 ||
         (ir && (write_all(c, " ", 1) != 0 || write_all(c, b64.data, b64.len) != 0)) ||
         write_all(c, "\r\n", 2) != 0 || mailstream_flush(c->s->imap_stream) != 0))
        r = MAILIMAP_ERROR_STREAM;
    for (int round = 0; r == MAILIMAP_NO_ERROR; round++) {
        int w;

        if (mailimap_read_line(c->s) == NULL) {
            r = MAILIMAP_ERROR_STREAM;
            break;
        }
        if (c->s->imap_stream_buffer->len == 0 || c->s->imap_stream_buffer->str[0] != '+')
            break;
        if (round >= SASL_ROUNDS_MAX) {
            r = MAILIMAP_ERROR_PARSE;   /* a server that never ends the exchange */
            break;
        }
        if (!sent) {
            w = write_all(c, b64.data, b64.len);
            sent = true;
        } else if (oauth_reply != NULL && !answered) {
            challenge_text(c, detail, sizeof detail);
            w = write_all(c, oauth_reply, strlen(oauth_reply));
            answered = true;
        } else {
            w = write_all(c, "*", 1);
        }
        if (w != 0 || write_all(c, "\r\n", 2) != 0 || mailstream_flush(c->s->imap_stream) != 0)
            r = MAILIMAP_ERROR_STREAM;
    }
    explicit_bzero(b64.data, b64.len);
    buf_free(&b64);
    if (r == MAILIMAP_NO_ERROR)
        r = mailimap_parse_response(c->s, &resp);
    if (r == MAILIMAP_NO_ERROR) {
        ok = resp->rsp_resp_done->rsp_type == MAILIMAP_RESP_DONE_TYPE_TAGGED &&
             resp->rsp_resp_done->rsp_data.rsp_tagged->rsp_cond_state->rsp_type ==
                 MAILIMAP_RESP_COND_STATE_OK;
        mailimap_response_free(resp);
        if (ok)
            c->s->imap_state = MAILIMAP_STATE_AUTHENTICATED;
        else
            r = MAILIMAP_ERROR_LOGIN;
    }
    if (imap_check(c, r, what, e) == 0)
        return 0;
    if (detail[0] != '\0' && e != NULL) {
        /* The server's explanation after its NO, cut to what fits. */
        size_t have = strnlen(e->text, sizeof e->text - 1), add = strlen(detail);

        if (add > sizeof e->text - 1 - have)
            add = sizeof e->text - 1 - have;
        memcpy(e->text + have, detail, add);
        e->text[have + add] = '\0';
    }
    return -1;
}

/* AUTHENTICATE PLAIN: authzid (empty) NUL authcid NUL password. */
static int auth_plain(struct imap_conn *c, const char *user, const char *pass, struct err *e)
{
    struct buf raw = BUF_INIT;
    int rc;

    if (buf_putc(&raw, '\0') != 0 || buf_puts(&raw, user) != 0 || buf_putc(&raw, '\0') != 0 ||
        buf_puts(&raw, pass) != 0)
        die("imap: unbounded buffer refused an append");
    rc = auth_sasl(c, "PLAIN", raw.data, raw.len, NULL, e);
    explicit_bzero(raw.data, raw.len);
    buf_free(&raw);
    return rc;
}

/* OAUTHBEARER (RFC 7628) when offered, else XOAUTH2, with a bearer token.
 * A refusal's JSON is answered with the dummy response: %x01 for
 * OAUTHBEARER (RFC 7628 3.2.3), an empty line for XOAUTH2. */
static int auth_oauth(struct imap_conn *c, const char *user, const char *token, unsigned port,
                      struct err *e)
{
    struct buf raw = BUF_INIT;
    bool bearer = imap_has_cap(c, "AUTH=OAUTHBEARER");
    int rc;

    if (!bearer && !imap_has_cap(c, "AUTH=XOAUTH2"))
        return err_set(e, ERR_UNSUPPORTED, "imap_oauth_cmd is set, but the server offers "
                                           "neither AUTH=OAUTHBEARER nor AUTH=XOAUTH2");
    if (bearer) {
        /* gs2-header "n,a=<saslname>," then host, port, auth; ',' and '='
         * in the name escaped as =2C and =3D. */
        if (buf_puts(&raw, "n,a=") != 0)
            die("imap: unbounded buffer refused an append");
        for (const char *p = user; *p != '\0'; p++)
            if ((*p == ',' ? buf_puts(&raw, "=2C")
                 : *p == '=' ? buf_puts(&raw, "=3D") : buf_putc(&raw, *p)) != 0)
                die("imap: unbounded buffer refused an append");
        if (buf_printf(&raw, ",\001host=%s\001port=%u\001auth=Bearer %s\001\001", c->host, port,
                       token) != 0)
            die("imap: unbounded buffer refused an append");
    } else if (buf_printf(&raw, "user=%s\001auth=Bearer %s\001\001", user, token) != 0) {
        die("imap: unbounded buffer refused an append");
    }
    rc = auth_sasl(c, bearer ? "OAUTHBEARER" : "XOAUTH2", raw.data, raw.len,
                   bearer ? "AQ==" : "", e);
    explicit_bzero(raw.data, raw.len);
    buf_free(&raw);
    return rc;
}

static int get_password(const struct imap_settings *s, int timeout_ms, char **pass,
                        struct err *e)
{
    *pass = NULL;
    if (s->pass != NULL && s->pass[0] != '\0') {
        *pass = xstrdup(s->pass);
        return 0;
    }
    if (s->pass_cmd != NULL && s->pass_cmd[0] != '\0')
        return child_secret("imap_pass_cmd", s->pass_cmd, timeout_ms, pass, e);
    err_set(e, ERR_INVAL, "no IMAP password: set imap_pass or imap_pass_cmd");
    err_scope(e, ERR_SCOPE_ACCOUNT, false);
    return -1;
}

static int login(struct imap_conn *c, const struct imap_settings *s, unsigned port,
                 int timeout_ms, struct err *e)
{
    char *pass = NULL;
    bool oauth = s->oauth_cmd != NULL && s->oauth_cmd[0] != '\0';
    int rc;

    if (oauth) {
        if (child_secret("imap_oauth_cmd", s->oauth_cmd, timeout_ms, &pass, e) != 0) {
            err_scope(e, ERR_SCOPE_ACCOUNT, e != NULL && e->temporary);
            return -1;
        }
        rc = auth_oauth(c, c->user, pass, port, e);
    } else {
        if (get_password(s, timeout_ms, &pass, e) != 0)
            return -1;
        if (imap_has_cap(c, "AUTH=PLAIN")) {
            rc = auth_plain(c, c->user, pass, e);
        } else if (imap_has_cap(c, "LOGINDISABLED")) {
            rc = err_set(e, ERR_UNSUPPORTED, "the server offers neither AUTH=PLAIN nor LOGIN");
        } else {
            rc = imap_check(c, mailimap_login(c->s, c->user, pass), "LOGIN", e);
        }
    }
    explicit_bzero(pass, strlen(pass));
    free(pass);
    if (rc != 0 && e != NULL && (e->code == ERR_PROTO || e->code == ERR_UNSUPPORTED)) {
        char text[ERR_TEXT_MAX];

        snprintf(text, sizeof text, "%s", e->text);
        err_set(e, ERR_PROTO, "login as %s refused: %s", c->user, text);
    }
    if (rc != 0)
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
    return rc;
}

static int starttls(struct imap_conn *c, struct err *e)
{
    mailstream *st = c->s->imap_stream;
    int r = mailimap_starttls(c->s);

    if (r != MAILIMAP_NO_ERROR) {
        char text[SERVER_TEXT_MAX + 8];

        /* libetpan also says no when bytes follow the go-ahead in the same
         * read: they did not come over TLS (CVE-2020-14954 class). */
        if (imap_check(c, r, "STARTTLS", e) == 0 || (e != NULL && e->code == ERR_PROTO)) {
            server_text(c, text, sizeof text);
            err_set(e, ERR_TLS, "STARTTLS failed: refused by the server, or followed by data "
                                "that did not come over TLS%s", text);
        }
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    if (st->write_buffer_len > 0)
        return err_set(e, ERR_TLS, "STARTTLS: output not yet sent");
    /* Whatever came after the OK arrived in cleartext: drop it. */
    st->read_buffer_len = 0;
    guard_reset(c);
    if (c->tc == NULL || tls_conn_start_tls(c->tc, c->tls, c->host, e) != 0) {
        c->broken = true;
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    /* What the server said before TLS is forgotten. */
    if (c->s->imap_connection_info != NULL &&
        c->s->imap_connection_info->imap_capability != NULL) {
        mailimap_capability_data_free(c->s->imap_connection_info->imap_capability);
        c->s->imap_connection_info->imap_capability = NULL;
    }
    return 0;
}

int imap_connect(const struct imap_url *u, const struct imap_settings *s,
                 struct imap_conn **out, struct err *e)
{
    struct tls_client_opts topts;
    struct imap_conn *c;
    struct tls_conn *tc = NULL;
    mailstream_low *inner, *glow;
    mailstream *st;
    struct guard *g;
    const char *user;
    int timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : IMAP_DEFAULT_TIMEOUT_MS;
    enum imap_greeting greet;
    bool tls_pending = !u->tls;

    *out = NULL;
    user = u->user != NULL && u->user[0] != '\0' ? u->user : s->user;
    if (user == NULL || user[0] == '\0') {
        err_set(e, ERR_INVAL, "no IMAP user: imap://USER@host/ or imap_user");
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        return -1;
    }
    c = XNEW(struct imap_conn);
    c->host = xstrdup(u->host);
    c->user = xstrdup(user);
    imap_limits_default(&c->lim);
    if (s->limits.line_max > 0)
        c->lim.line_max = s->limits.line_max;
    if (s->limits.literal_max > 0)
        c->lim.literal_max = s->limits.literal_max;
    if (s->limits.depth_max > 0)
        c->lim.depth_max = s->limits.depth_max;
    memset(&topts, 0, sizeof topts);
    topts.ca_file = s->tls_ca_file != NULL && s->tls_ca_file[0] != '\0' ? s->tls_ca_file : NULL;
    topts.pin = s->tls_fingerprint != NULL && s->tls_fingerprint[0] != '\0'
                    ? s->tls_fingerprint : NULL;
    if (tls_client_new(&c->tls, &topts, e) != 0)
        goto fail;
    if (tls_conn_connect(&tc, u->host, u->port, timeout_ms, e) != 0)
        goto fail;
    if (u->tls && tls_conn_start_tls(tc, c->tls, u->host, e) != 0) {
        tls_conn_close(tc);
        goto fail;
    }
    c->tc = tc;
    inner = tls_stream_low_new(tc, e);
    if (inner == NULL) {
        c->tc = NULL;
        goto fail;
    }
    g = XNEW(struct guard);
    g->inner = inner;
    g->c = c;
    glow = mailstream_low_new(g, &guard_driver);
    if (glow == NULL)
        die("out of memory");
    st = mailstream_new(glow, TLS_STREAM_BUFFER_SIZE);
    if (st == NULL)
        die("out of memory");
    c->s = mailimap_new(0, NULL);
    if (c->s == NULL)
        die("out of memory");
    c->in_greeting = true;
    {
        int r = mailimap_connect(c->s, st);

        greet = c->greeting_bye ? IMAP_GREETING_BYE : imap_greeting_from_result(r);
        if (greet == IMAP_GREETING_BAD && c->guard_failed) {
            imap_check(c, r, "greeting", e);
            goto fail;
        }
        if (greet == IMAP_GREETING_BAD && r == MAILIMAP_ERROR_STREAM) {
            imap_check(c, r, "greeting", e);
            goto fail;
        }
    }
    if (imap_greeting_judge(greet, tls_pending && !s->allow_plain, e) != 0)
        goto fail;
    if (ask_caps(c, e) != 0)
        goto fail;
    if (tls_pending) {
        if (imap_has_cap(c, "STARTTLS")) {
            if (greet == IMAP_GREETING_PREAUTH) {
                /* Cleartext was allowed, but a PREAUTH session cannot be
                 * upgraded: go on only because the settings say so. */
            } else {
                if (starttls(c, e) != 0)
                    goto fail;
                tls_pending = false;
                if (ask_caps(c, e) != 0)
                    goto fail;
            }
        } else if (!s->allow_plain) {
            err_set(e, ERR_TLS, "the server does not offer STARTTLS: refused before "
                                "sending credentials (allow cleartext with ssl_force_tls=no)");
            err_scope(e, ERR_SCOPE_ACCOUNT, false);
            goto fail;
        }
    }
    if (greet != IMAP_GREETING_PREAUTH) {
        if (login(c, s, u->port, timeout_ms, e) != 0)
            goto fail;
        if (ask_caps(c, e) != 0)
            goto fail;
    }
    *out = c;
    return 0;

fail:
    if (e != NULL)
        err_scope(e, ERR_SCOPE_ACCOUNT, e->temporary);
    c->broken = true;   /* nothing more goes to a server that was refused */
    imap_close(c);
    return -1;
}

void imap_close(struct imap_conn *c)
{
    if (c == NULL)
        return;
    if (c->s != NULL) {
        if (imap_usable(c) && c->s->imap_state != MAILIMAP_STATE_DISCONNECTED) {
            if (c->tc != NULL)
                tls_conn_set_timeout(c->tc, LOGOUT_TIMEOUT_MS);
            (void)mailimap_logout(c->s);
        }
        /* The guard must not reach into c once c is gone. */
        if (c->s->imap_stream != NULL && c->s->imap_stream->low != NULL &&
            c->s->imap_stream->low->driver == &guard_driver)
            ((struct guard *)c->s->imap_stream->low->data)->c = NULL;
        mailimap_free(c->s);
    }
    tls_client_free(c->tls);
    free(c->host);
    free(c->user);
    free(c);
}
