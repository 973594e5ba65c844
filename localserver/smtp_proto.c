/*
 * smtp_proto: one SMTP server session as a state machine without I/O (see
 * smtp_proto.h for the contract with the owner).
 *
 * The session owns its command line buffer (capped at SMTP_CMD_LINE_MAX),
 * the message being received (capped at max_message_size: past it nothing
 * more is stored) and the envelope of the transaction in progress (capped
 * by max_recipients).  Nothing else grows with the input except the reply
 * buffer, which the owner empties after every feed.
 *
 * Zero in a limit of the configuration means: max_message_size no limit
 * (SIZE is advertised without a number), max_line_length no limit,
 * max_errors never close, max_recipients the RFC 5321 minimum of 100.
 *
 * Choices the header leaves open:
 *  - max_line_length counts the octets of a DATA line as sent, a stuffed
 *    dot included and the CRLF not; max_message_size counts the message as
 *    stored (dot-unstuffed, CRLF included).
 *  - A recipient's orcpt is "addr-type;address" with the address decoded
 *    from xtext (e.g. "rfc822;bob@example.org"); ENVID and ORCPT must
 *    decode to printable text, so nothing from them can break a header.
 *  - Bad commands counted toward max_errors: syntax and sequence errors,
 *    unknown commands, refused recipients (relay, unknown user), AUTH
 *    failures.  Temporary failures of ours (451, 452, 454), SIZE refusals
 *    and the verdict on a message do not count.
 *  - A refused BDAT chunk (no transaction, too big) is still read, so its
 *    bytes are never taken as commands; 552 ends the transaction.
 *  - The same recipient given twice is accepted once.
 */
#include "smtp_proto.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sanitize.h"
#include "xalloc.h"

#define PATH_MAX_OCTETS 256          /* RFC 5321 4.5.3.1.3, "<" and ">" included */
#define ENVID_MAX 100                /* RFC 3461 4.4 */
#define ORCPT_MAX 500                /* RFC 3461 4.2 */
#define HELO_MAX 255
#define DEFAULT_RECIPIENTS 100
#define BDAT_SIZE_DIGITS 18          /* a chunk size fits in uint64_t */

enum mode {
    MODE_CMD = 0,                    /* reading command lines */
    MODE_AUTH,                       /* reading SASL responses */
    MODE_DATA,                       /* reading DATA text */
    MODE_BDAT,                       /* reading a BDAT chunk */
};

/* Where the DATA reader is within a line. */
enum data_pos {
    DATA_BOL = 0,                    /* after CRLF, or at the start of data */
    DATA_BOL_DOT,                    /* "." at the start of a line */
    DATA_BOL_DOT_CR,                 /* "." CR at the start of a line */
    DATA_MID,                        /* inside a line */
    DATA_CR,                         /* CR inside a line */
};

enum auth_step {
    AUTH_NONE = 0,
    AUTH_PLAIN_RESPONSE,             /* waiting for the PLAIN response */
    AUTH_LOGIN_USER,                 /* waiting for the LOGIN user name */
    AUTH_LOGIN_PASSWORD,             /* waiting for the LOGIN password */
};

struct smtp_session {
    struct smtp_session_cfg cfg;     /* hostname and peer_addr point to our copies */
    char *hostname;
    char *peer_addr;
    struct smtp_hooks hooks;
    void *ctx;

    struct buf out;
    struct buf line;                 /* current command line (without LF) */
    bool line_overlong;              /* skipping the rest of a long line */

    enum smtp_wait wait;
    enum mode mode;

    /* What the session knows; forgotten after STARTTLS. */
    bool tls;
    char *helo;
    bool esmtp;
    char *auth_user;

    unsigned errors;
    unsigned auth_failures;
    bool shutdown;                   /* close once the transaction is over */
    bool eof;                        /* the client closed its side */
    bool close_after_pause;          /* max_errors reached during a pause */

    enum auth_step auth_step;
    char *auth_login_user;

    /* The transaction: env is NULL until MAIL. */
    struct smtp_envelope *env;
    size_t rcpt_cap;
    unsigned rcpts_refused;
    bool bdat_used;                  /* at least one BDAT chunk taken */

    struct buf msg;                  /* data received, ceiling max_message_size */
    bool msg_too_big;
    bool msg_long_line;
    bool msg_bad_eol;

    enum data_pos data_pos;
    size_t data_line_len;

    uint64_t bdat_left;              /* bytes of the chunk still to read */
    uint64_t bdat_size;
    bool bdat_last;
    int bdat_err_code;               /* 0, or the reply after the chunk */
    const char *bdat_err_enh;
    const char *bdat_err_text;
    bool bdat_err_counts;            /* the error is a bad command */
    bool bdat_err_reset;             /* the error ends the transaction */
};

/* ------------------------------------------------------------------ */
/* Replies */

static void out_append(struct smtp_session *s, const char *p, size_t n)
{
    /* The reply buffer has no ceiling: this cannot fail. */
    if (buf_append(&s->out, p, n) < 0)
        die("smtp reply buffer");
}

/* Append one reply line: code, enhanced code (may be NULL), text. */
static void reply_line(struct smtp_session *s, int code, char sep, const char *enh,
                       const char *text)
{
    char head[32];
    int n = snprintf(head, sizeof(head), "%03d%c", code, sep);

    if (n < 0 || (size_t)n >= sizeof(head))
        die("smtp reply code");
    out_append(s, head, (size_t)n);
    if (enh && *enh) {
        out_append(s, enh, strlen(enh));
        out_append(s, " ", 1);
    }
    /* Never let a text break the reply framing. */
    while (*text) {
        size_t span = strcspn(text, "\r\n");
        out_append(s, text, span);
        text += span;
        if (*text) {
            out_append(s, " ", 1);
            text++;
        }
    }
    out_append(s, "\r\n", 2);
}

static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    CORREO_PRINTF(4, 5);

static void reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = xvasprintf(fmt, ap);
    va_end(ap);
    reply_line(s, code, ' ', enh, text);
    free(text);
}

static void close_with(struct smtp_session *s, const char *enh, const char *text)
{
    reply(s, 421, enh, "%s %s", s->hostname, text);
    s->wait = SMTP_CLOSE;
    s->mode = MODE_CMD;
}

/* Count one bad command; at max_errors the session ends. */
static void count_error(struct smtp_session *s)
{
    s->errors++;
    if (s->cfg.max_errors == 0 || s->errors < s->cfg.max_errors)
        return;
    if (s->wait == SMTP_READY)
        close_with(s, "4.7.0", "Too many errors, closing connection");
    else if (s->wait == SMTP_WAIT_PAUSE)
        s->close_after_pause = true;
}

/* A reply to a bad command: it counts toward max_errors. */
static void bad(struct smtp_session *s, int code, const char *enh, const char *text)
{
    reply_line(s, code, ' ', enh, text);
    count_error(s);
}

/* ------------------------------------------------------------------ */
/* Envelope and transaction */

void smtp_envelope_free(struct smtp_envelope *env)
{
    if (!env)
        return;
    free(env->helo);
    free(env->auth_user);
    free(env->mail_from);
    free(env->envid);
    for (size_t i = 0; i < env->n_rcpts; i++) {
        free(env->rcpts[i].addr);
        free(env->rcpts[i].orcpt);
    }
    free(env->rcpts);
    free(env);
}

const char *smtp_envelope_protocol(const struct smtp_envelope *env)
{
    static const char *const esmtp[4] = {"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA"};
    static const char *const utf8[4] = {"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA"};
    unsigned i;

    if (!env->esmtp)
        return "SMTP";
    i = (env->tls ? 2u : 0u) + (env->auth_user ? 1u : 0u);
    return env->smtputf8 ? utf8[i] : esmtp[i];
}

static size_t max_recipients(const struct smtp_session *s)
{
    return s->cfg.max_recipients ? s->cfg.max_recipients : DEFAULT_RECIPIENTS;
}

static void reset_message(struct smtp_session *s)
{
    buf_free(&s->msg);
    buf_init(&s->msg, s->cfg.max_message_size);
    s->msg_too_big = false;
    s->msg_long_line = false;
    s->msg_bad_eol = false;
    s->data_pos = DATA_BOL;
    s->data_line_len = 0;
}

static void reset_tx(struct smtp_session *s)
{
    smtp_envelope_free(s->env);
    s->env = NULL;
    s->rcpt_cap = 0;
    s->rcpts_refused = 0;
    s->bdat_used = false;
    reset_message(s);
    if (s->mode == MODE_DATA || s->mode == MODE_BDAT)
        s->mode = MODE_CMD;
}

static void end_auth_exchange(struct smtp_session *s)
{
    if (s->auth_login_user) {
        explicit_bzero(s->auth_login_user, strlen(s->auth_login_user));
        free(s->auth_login_user);
        s->auth_login_user = NULL;
    }
    s->auth_step = AUTH_NONE;
    if (s->mode == MODE_AUTH)
        s->mode = MODE_CMD;
}

bool smtp_session_in_transaction(const struct smtp_session *s)
{
    return s->env != NULL || s->mode == MODE_DATA || s->mode == MODE_BDAT ||
           s->wait == SMTP_WAIT_DELIVERY;
}

/* After a command: a pending shutdown takes effect once idle. */
static void check_shutdown(struct smtp_session *s)
{
    if (s->shutdown && s->wait == SMTP_READY && !smtp_session_in_transaction(s))
        close_with(s, "4.3.2", "Service shutting down, closing connection");
}

/* ------------------------------------------------------------------ */
/* Lexical helpers */

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c)) ||
           c >= 0x80;
}

static bool valid_utf8(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        int k = sanitize_utf8_next(p + i, n - i, &cp);
        if (k < 0)
            return false;
        i += (size_t)k;
    }
    return true;
}

static bool has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

/* Does p start with the keyword kw (case-insensitive)? */
static bool prefix_ci(const char *p, const char *kw)
{
    return strncasecmp(p, kw, strlen(kw)) == 0;
}

/* ------------------------------------------------------------------ */
/* Paths (RFC 5321 4.1.2, RFC 6531 3.3) */

/* sub-domain *("." sub-domain); a sub-domain is Let-dig [Ldh-str] or, for
 * SMTPUTF8, a U-label (bytes >= 0x80 are taken as letters here; the whole
 * path is checked as UTF-8 later).  Returns the end or NULL. */
static const char *parse_domain(const char *p)
{
    for (;;) {
        const unsigned char *q = (const unsigned char *)p;
        size_t n = 0;
        if (!(is_alpha(q[0]) || is_digit(q[0]) || q[0] >= 0x80))
            return NULL;
        while (is_alpha(q[n]) || is_digit(q[n]) || q[n] >= 0x80 || q[n] == '-')
            n++;
        if (q[n - 1] == '-')
            return NULL;
        p += n;
        if (*p != '.')
            return p;
        p++;
    }
}

/* "[" ... "]": IPv4, "IPv6:" or a General-address-literal.  Returns the
 * end (after "]") or NULL. */
static const char *parse_address_literal(const char *p)
{
    const char *close = strchr(p, ']');
    char tmp[64];
    size_t n;
    unsigned char addr[16];

    if (*p != '[' || !close)
        return NULL;
    n = (size_t)(close - p - 1);
    if (n == 0 || n >= sizeof(tmp))
        return NULL;
    memcpy(tmp, p + 1, n);
    tmp[n] = '\0';
    if (strncasecmp(tmp, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, tmp + 5, addr) == 1 ? close + 1 : NULL;
    if (is_digit((unsigned char)tmp[0]))
        return inet_pton(AF_INET, tmp, addr) == 1 ? close + 1 : NULL;
    /* General-address-literal: Standardized-tag ":" 1*dcontent */
    {
        size_t i = 0;
        while (is_alpha((unsigned char)tmp[i]) || is_digit((unsigned char)tmp[i]) ||
               tmp[i] == '-')
            i++;
        if (i == 0 || tmp[i - 1] == '-' || tmp[i] != ':' || tmp[i + 1] == '\0')
            return NULL;
        for (i++; tmp[i]; i++) {
            unsigned char c = (unsigned char)tmp[i];
            if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126)))
                return NULL;
        }
    }
    return close + 1;
}

/* Local-part "@" (Domain / address-literal).  Returns the end or NULL. */
static const char *parse_mailbox(const char *p)
{
    if (*p == '"') {
        p++;
        for (;;) {
            unsigned char c = (unsigned char)*p;
            if (c == '"')
                break;
            if (c == '\\') {
                unsigned char d = (unsigned char)p[1];
                if (d < 32 || d > 126)
                    return NULL;
                p += 2;
                continue;
            }
            if (!((c >= 32 && c <= 126) || c >= 0x80))
                return NULL;
            p++;
        }
        p++;
    } else {
        for (;;) {
            if (!is_atext((unsigned char)*p))
                return NULL;
            while (is_atext((unsigned char)*p))
                p++;
            if (*p != '.')
                break;
            p++;
        }
    }
    if (*p != '@')
        return NULL;
    p++;
    if (*p == '[')
        return parse_address_literal(p);
    return parse_domain(p);
}

enum path_result { PATH_OK = 0, PATH_SYNTAX, PATH_TOO_LONG, PATH_UTF8 };

/* Parse "<...>" at p.  *addr gets the mailbox ("" for "<>" when allowed),
 * *end the first byte after ">".  *eight_bit says whether the address has
 * bytes >= 0x80 (then it is valid UTF-8). */
static enum path_result parse_path(const char *p, bool allow_null, bool allow_postmaster,
                                   char **addr, const char **end, bool *eight_bit)
{
    const char *start = p, *mb, *q;

    *addr = NULL;
    *eight_bit = false;
    if (*p != '<')
        return PATH_SYNTAX;
    p++;
    if (*p == '>') {
        if (!allow_null)
            return PATH_SYNTAX;
        *addr = xstrdup("");
        *end = p + 1;
        return PATH_OK;
    }
    if (allow_postmaster && strncasecmp(p, "postmaster>", 11) == 0) {
        *addr = xstrndup(p, 10);
        *end = p + 11;
        return PATH_OK;
    }
    if (*p == '@') {
        /* A-d-l ":" -- a source route, ignored (RFC 5321 4.1.1.3) */
        for (;;) {
            if (*p != '@')
                return PATH_SYNTAX;
            p++;
            if (*p == '[')
                p = parse_address_literal(p);
            else
                p = parse_domain(p);
            if (!p)
                return PATH_SYNTAX;
            if (*p == ':')
                break;
            if (*p != ',')
                return PATH_SYNTAX;
            p++;
        }
        p++;
    }
    mb = p;
    q = parse_mailbox(p);
    if (!q || *q != '>')
        return PATH_SYNTAX;
    if ((size_t)(q + 1 - start) > PATH_MAX_OCTETS)
        return PATH_TOO_LONG;
    if (has_8bit(mb, (size_t)(q - mb))) {
        if (!valid_utf8(mb, (size_t)(q - mb)))
            return PATH_UTF8;
        *eight_bit = true;
    }
    *addr = xstrndup(mb, (size_t)(q - mb));
    *end = q + 1;
    return PATH_OK;
}

/* ------------------------------------------------------------------ */
/* xtext (RFC 3461 4) */

static int hex_upper(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int smtp_xtext_decode(const char *in, struct buf *out)
{
    for (const char *p = in; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '+') {
            int hi, lo;
            if (!p[1] || !p[2])
                return -1;
            hi = hex_upper(p[1]);
            lo = hex_upper(p[2]);
            if (hi < 0 || lo < 0)
                return -1;
            if (buf_putc(out, (char)(hi * 16 + lo)) < 0)
                return -1;
            p += 2;
        } else if (c >= 33 && c <= 126 && c != '=') {
            if (buf_putc(out, (char)c) < 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Decode xtext into a new string of printable ASCII (no controls that
 * could end up in a header); NULL when bad. */
static char *xtext_printable(const char *in, size_t max)
{
    struct buf b;

    buf_init(&b, max);
    if (smtp_xtext_decode(in, &b) < 0) {
        buf_free(&b);
        return NULL;
    }
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c < 32 || c > 126) {
            buf_free(&b);
            return NULL;
        }
    }
    return buf_steal(&b, NULL);
}

/* ------------------------------------------------------------------ */
/* ESMTP parameters */

struct param {
    char *key;                       /* points into the line */
    char *value;                     /* NULL when absent */
};

#define MAX_PARAMS 16

/* Split "KEY[=VALUE] KEY[=VALUE] ..." in place.  Returns the number of
 * parameters, -1 on bad syntax. */
static int split_params(char *p, struct param *v, size_t max)
{
    int n = 0;

    for (;;) {
        char *k;
        while (*p == ' ')
            p++;
        if (!*p)
            return n;
        if ((size_t)n == max)
            return -1;
        k = p;
        if (!is_alpha((unsigned char)*p) && !is_digit((unsigned char)*p))
            return -1;
        while (is_alpha((unsigned char)*p) || is_digit((unsigned char)*p) || *p == '-')
            p++;
        v[n].key = k;
        v[n].value = NULL;
        if (*p == '=') {
            *p++ = '\0';
            v[n].value = p;
            while (*p && *p != ' ') {
                unsigned char c = (unsigned char)*p;
                if (c == '=' || (c < 33 && c != ' ') || c == 127)
                    return -1;
                p++;
            }
            if (p == v[n].value)
                return -1;
        }
        if (*p && *p != ' ')
            return -1;
        if (*p)
            *p++ = '\0';
        n++;
    }
}

/* Is the keyword of params[i] repeated before i? */
static bool param_dup(const struct param *v, int i)
{
    for (int j = 0; j < i; j++)
        if (strcasecmp(v[j].key, v[i].key) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* Commands */

/* AUTH over TLS, or on loopback when the configuration allows. */
static bool auth_allowed(const struct smtp_session *s)
{
    return s->tls || (s->cfg.peer_loopback && s->cfg.auth_plaintext_loopback);
}

static void ehlo_reply(struct smtp_session *s)
{
    const char *lines[12];
    char size_line[48];
    size_t n = 0;

    if (s->cfg.max_message_size)
        snprintf(size_line, sizeof(size_line), "SIZE %zu", s->cfg.max_message_size);
    else
        snprintf(size_line, sizeof(size_line), "SIZE");
    lines[n++] = s->hostname;
    lines[n++] = size_line;
    lines[n++] = "PIPELINING";
    lines[n++] = "8BITMIME";
    lines[n++] = "ENHANCEDSTATUSCODES";
    lines[n++] = "SMTPUTF8";
    lines[n++] = "CHUNKING";
    lines[n++] = "DSN";
    if (s->cfg.tls_available && !s->tls)
        lines[n++] = "STARTTLS";
    if (!s->auth_user && auth_allowed(s))
        lines[n++] = "AUTH PLAIN LOGIN";
    for (size_t i = 0; i < n; i++)
        reply_line(s, 250, i + 1 < n ? '-' : ' ', NULL, lines[i]);
}

static void cmd_helo(struct smtp_session *s, char *arg, bool esmtp)
{
    size_t n = strlen(arg);

    if (n == 0) {
        bad(s, 501, "5.5.4", esmtp ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c <= 32 || c == 127) {
            bad(s, 501, "5.5.4", "Invalid domain name");
            return;
        }
    }
    if (n > HELO_MAX || !valid_utf8(arg, n)) {
        bad(s, 501, "5.5.4", "Invalid domain name");
        return;
    }
    reset_tx(s);
    free(s->helo);
    s->helo = xstrdup(arg);
    s->esmtp = esmtp;
    if (esmtp)
        ehlo_reply(s);
    else
        reply(s, 250, NULL, "%s", s->hostname);
}

/* MAIL parameters into env; returns false after replying. */
static bool mail_params(struct smtp_session *s, struct smtp_envelope *env, char *rest)
{
    struct param v[MAX_PARAMS];
    int n = split_params(rest, v, MAX_PARAMS);

    if (n < 0) {
        bad(s, 501, "5.5.4", "Syntax error in parameters");
        return false;
    }
    if (n > 0 && !s->esmtp) {
        bad(s, 555, "5.5.4", "Parameters need EHLO");
        return false;
    }
    for (int i = 0; i < n; i++) {
        const char *k = v[i].key, *val = v[i].value;
        if (param_dup(v, i)) {
            bad(s, 501, "5.5.4", "Duplicate parameter");
            return false;
        }
        if (strcasecmp(k, "SIZE") == 0) {
            uint64_t size = 0;
            size_t len = val ? strlen(val) : 0;
            if (len == 0 || len > 20) {
                bad(s, 501, "5.5.4", "Bad SIZE parameter");
                return false;
            }
            for (size_t j = 0; j < len; j++) {
                if (!is_digit((unsigned char)val[j])) {
                    bad(s, 501, "5.5.4", "Bad SIZE parameter");
                    return false;
                }
                size = size > (UINT64_MAX - 9) / 10 ? UINT64_MAX
                                                     : size * 10 + (uint64_t)(val[j] - '0');
            }
            if (s->cfg.max_message_size && size > s->cfg.max_message_size) {
                reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
                return false;
            }
            env->size_hint = size > SIZE_MAX ? SIZE_MAX : (size_t)size;
        } else if (strcasecmp(k, "BODY") == 0) {
            if (val && strcasecmp(val, "7BIT") == 0)
                env->body = SMTP_BODY_7BIT;
            else if (val && strcasecmp(val, "8BITMIME") == 0)
                env->body = SMTP_BODY_8BITMIME;
            else if (val && strcasecmp(val, "BINARYMIME") == 0)
                env->body = SMTP_BODY_BINARYMIME;
            else {
                bad(s, 501, "5.5.4", "Bad BODY parameter");
                return false;
            }
        } else if (strcasecmp(k, "SMTPUTF8") == 0) {
            if (val) {
                bad(s, 501, "5.5.4", "SMTPUTF8 takes no value");
                return false;
            }
            env->smtputf8 = true;
        } else if (strcasecmp(k, "RET") == 0) {
            if (val && strcasecmp(val, "FULL") == 0)
                env->ret = SMTP_RET_FULL;
            else if (val && strcasecmp(val, "HDRS") == 0)
                env->ret = SMTP_RET_HDRS;
            else {
                bad(s, 501, "5.5.4", "Bad RET parameter");
                return false;
            }
        } else if (strcasecmp(k, "ENVID") == 0) {
            char *id = val ? xtext_printable(val, ENVID_MAX) : NULL;
            if (!id) {
                bad(s, 501, "5.5.4", "Bad ENVID parameter");
                return false;
            }
            env->envid = id;
        } else if (strcasecmp(k, "AUTH") == 0) {
            /* RFC 4954 5: accepted and not trusted; "<>" or xtext. */
            char *who = val ? xtext_printable(val, PATH_MAX_OCTETS) : NULL;
            if (!who) {
                bad(s, 501, "5.5.4", "Bad AUTH parameter");
                return false;
            }
            free(who);
        } else {
            bad(s, 555, "5.5.4", "Unsupported parameter");
            return false;
        }
    }
    return true;
}

static void path_error(struct smtp_session *s, enum path_result r, const char *enh)
{
    if (r == PATH_TOO_LONG)
        bad(s, 501, enh, "Path too long");
    else if (r == PATH_UTF8)
        bad(s, 501, enh, "Invalid UTF-8 in address");
    else
        bad(s, 501, enh, "Syntax error in address");
}

static void cmd_mail(struct smtp_session *s, char *arg)
{
    struct smtp_envelope *env;
    enum path_result r;
    const char *end;
    char *addr;
    bool eight;

    if (!s->helo) {
        bad(s, 503, "5.5.1", "Send EHLO or HELO first");
        return;
    }
    if (s->env) {
        bad(s, 503, "5.5.1", "Nested MAIL command");
        return;
    }
    if (!prefix_ci(arg, "FROM:")) {
        bad(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        return;
    }
    if (s->cfg.listener != SMTP_LISTENER_MX && !s->auth_user) {
        bad(s, 530, "5.7.0", "Authentication required");
        return;
    }
    arg += 5;
    while (*arg == ' ')
        arg++;
    r = parse_path(arg, true, false, &addr, &end, &eight);
    if (r != PATH_OK) {
        path_error(s, r, "5.1.7");
        return;
    }
    if (*end && *end != ' ') {
        free(addr);
        bad(s, 501, "5.1.7", "Syntax error in address");
        return;
    }
    env = XNEW(struct smtp_envelope);
    env->mail_from = addr;
    if (!mail_params(s, env, arg + (end - arg))) {
        smtp_envelope_free(env);
        return;
    }
    if (eight && !env->smtputf8) {
        smtp_envelope_free(env);
        bad(s, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
        return;
    }
    if (s->auth_user &&
        !(s->hooks.may_send_as && s->hooks.may_send_as(s->ctx, s->auth_user, env->mail_from))) {
        smtp_envelope_free(env);
        bad(s, 553, "5.7.1", "Sender address not owned by the authenticated user");
        return;
    }
    env->helo = xstrdup(s->helo);
    env->esmtp = s->esmtp;
    env->auth_user = s->auth_user ? xstrdup(s->auth_user) : NULL;
    env->peer_addr = s->cfg.peer_addr;
    env->tls = s->tls;
    s->env = env;
    s->rcpts_refused = 0;
    s->bdat_used = false;
    reset_message(s);
    reply(s, 250, "2.1.0", "OK");
}

/* NOTIFY=NEVER | SUCCESS,FAILURE,DELAY; 0 when bad. */
static unsigned parse_notify(const char *v)
{
    unsigned bits = 0;

    for (;;) {
        const char *comma = strchr(v, ',');
        size_t n = comma ? (size_t)(comma - v) : strlen(v);
        unsigned b;
        if (n == 5 && strncasecmp(v, "NEVER", 5) == 0)
            b = SMTP_NOTIFY_NEVER;
        else if (n == 7 && strncasecmp(v, "SUCCESS", 7) == 0)
            b = SMTP_NOTIFY_SUCCESS;
        else if (n == 7 && strncasecmp(v, "FAILURE", 7) == 0)
            b = SMTP_NOTIFY_FAILURE;
        else if (n == 5 && strncasecmp(v, "DELAY", 5) == 0)
            b = SMTP_NOTIFY_DELAY;
        else
            return 0;
        if (bits & b)
            return 0;
        bits |= b;
        if (!comma)
            break;
        v = comma + 1;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return 0;
    return bits;
}

/* ORCPT=addr-type ";" xtext: the type as given, ";", the decoded address. */
static char *parse_orcpt(const char *v, bool smtputf8)
{
    const char *semi = strchr(v, ';');
    struct buf b;
    size_t tlen;

    if (!semi || semi == v || !semi[1])
        return NULL;
    tlen = (size_t)(semi - v);
    for (size_t i = 0; i < tlen; i++)
        if (!is_alpha((unsigned char)v[i]) && !is_digit((unsigned char)v[i]) && v[i] != '-')
            return NULL;
    buf_init(&b, ORCPT_MAX);
    if (buf_append(&b, v, tlen + 1) < 0 || smtp_xtext_decode(semi + 1, &b) < 0) {
        buf_free(&b);
        return NULL;
    }
    for (size_t i = tlen + 1; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c < 32 || c == 127 || (c >= 0x80 && !smtputf8)) {
            buf_free(&b);
            return NULL;
        }
    }
    if (!valid_utf8(b.data, b.len)) {
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b, NULL);
}

static void cmd_rcpt(struct smtp_session *s, char *arg)
{
    struct param v[MAX_PARAMS];
    struct smtp_rcpt rc;
    enum path_result r;
    enum smtp_rcpt_verdict verdict;
    const char *end;
    char *addr;
    bool eight;
    int n;

    if (!s->env) {
        bad(s, 503, "5.5.1", "Need MAIL before RCPT");
        return;
    }
    if (!prefix_ci(arg, "TO:")) {
        bad(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        return;
    }
    arg += 3;
    while (*arg == ' ')
        arg++;
    r = parse_path(arg, false, true, &addr, &end, &eight);
    if (r != PATH_OK) {
        path_error(s, r, "5.1.3");
        return;
    }
    if (*end && *end != ' ') {
        free(addr);
        bad(s, 501, "5.1.3", "Syntax error in address");
        return;
    }
    memset(&rc, 0, sizeof(rc));
    rc.addr = addr;
    n = split_params(arg + (end - arg), v, MAX_PARAMS);
    if (n < 0) {
        bad(s, 501, "5.5.4", "Syntax error in parameters");
        goto fail;
    }
    if (n > 0 && !s->esmtp) {
        bad(s, 555, "5.5.4", "Parameters need EHLO");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        if (param_dup(v, i)) {
            bad(s, 501, "5.5.4", "Duplicate parameter");
            goto fail;
        }
        if (strcasecmp(v[i].key, "NOTIFY") == 0) {
            rc.notify = v[i].value ? parse_notify(v[i].value) : 0;
            if (!rc.notify) {
                bad(s, 501, "5.5.4", "Bad NOTIFY parameter");
                goto fail;
            }
        } else if (strcasecmp(v[i].key, "ORCPT") == 0) {
            rc.orcpt = v[i].value ? parse_orcpt(v[i].value, s->env->smtputf8) : NULL;
            if (!rc.orcpt) {
                bad(s, 501, "5.5.4", "Bad ORCPT parameter");
                goto fail;
            }
        } else {
            bad(s, 555, "5.5.4", "Unsupported parameter");
            goto fail;
        }
    }
    if (eight && !s->env->smtputf8) {
        bad(s, 553, "5.6.7", "Non-ASCII address needs SMTPUTF8");
        goto fail;
    }
    if (s->env->n_rcpts >= max_recipients(s)) {
        reply(s, 452, "4.5.3", "Too many recipients");
        goto fail;
    }
    verdict = s->hooks.rcpt ? s->hooks.rcpt(s->ctx, s->auth_user, addr) : SMTP_RCPT_TEMPFAIL;
    switch (verdict) {
    case SMTP_RCPT_LOCAL:
        break;
    case SMTP_RCPT_REMOTE:
        if (s->auth_user)
            break;
        s->rcpts_refused++;
        bad(s, 554, "5.7.1", "Relay access denied");
        goto fail;
    case SMTP_RCPT_UNKNOWN:
        s->rcpts_refused++;
        bad(s, 550, "5.1.1", "No such user here");
        goto fail;
    case SMTP_RCPT_TEMPFAIL:
    default:
        s->rcpts_refused++;
        reply(s, 451, "4.3.0", "Temporary failure looking up the recipient");
        goto fail;
    }
    rc.verdict = verdict;
    for (size_t i = 0; i < s->env->n_rcpts; i++) {
        if (strcmp(s->env->rcpts[i].addr, addr) == 0) {
            /* The same recipient twice: one delivery. */
            free(rc.orcpt);
            free(addr);
            reply(s, 250, "2.1.5", "OK");
            return;
        }
    }
    if (s->env->n_rcpts == s->rcpt_cap) {
        s->rcpt_cap = s->rcpt_cap ? s->rcpt_cap * 2 : 4;
        s->env->rcpts = xreallocarray(s->env->rcpts, s->rcpt_cap, sizeof(*s->env->rcpts));
    }
    s->env->rcpts[s->env->n_rcpts++] = rc;
    reply(s, 250, "2.1.5", "OK");
    return;
fail:
    free(rc.orcpt);
    free(addr);
}

struct refusal {
    int code;
    const char *enh;
    const char *text;
};

/* Can a message start now?  Fills *r and returns false when not. */
static bool data_allowed(const struct smtp_session *s, struct refusal *r)
{
    if (!s->env) {
        *r = (struct refusal){503, "5.5.1", "Need MAIL command"};
        return false;
    }
    if (s->env->n_rcpts == 0) {
        if (s->rcpts_refused)
            *r = (struct refusal){554, "5.5.1", "No valid recipients"};
        else
            *r = (struct refusal){503, "5.5.1", "Need RCPT command"};
        return false;
    }
    return true;
}

static void cmd_data(struct smtp_session *s, char *arg)
{
    struct refusal r;

    if (*arg) {
        bad(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (!data_allowed(s, &r)) {
        bad(s, r.code, r.enh, r.text);
        return;
    }
    if (s->bdat_used) {
        bad(s, 503, "5.5.1", "DATA not allowed after BDAT");
        return;
    }
    if (s->env->body == SMTP_BODY_BINARYMIME) {
        bad(s, 503, "5.5.1", "BINARYMIME needs BDAT");
        return;
    }
    reset_message(s);
    s->mode = MODE_DATA;
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* The message is complete: refuse it or hand it to the owner. */
static void finish_message(struct smtp_session *s)
{
    struct smtp_envelope *env;
    struct buf *msg;

    s->mode = MODE_CMD;
    if (s->msg_bad_eol) {
        reply(s, 550, "5.6.11", "Bare CR or LF in message data not allowed");
        reset_tx(s);
        return;
    }
    if (s->msg_too_big) {
        reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        reset_tx(s);
        return;
    }
    if (s->msg_long_line) {
        reply(s, 552, "5.3.4", "Line too long in message data");
        reset_tx(s);
        return;
    }
    if (!s->hooks.deliver) {
        reply(s, 451, "4.3.0", "Delivery not available");
        reset_tx(s);
        return;
    }
    env = s->env;
    env->tls = s->tls;
    s->env = NULL;
    msg = XNEW(struct buf);
    *msg = s->msg;
    buf_init(&s->msg, s->cfg.max_message_size);
    reset_tx(s);
    s->wait = SMTP_WAIT_DELIVERY;
    s->hooks.deliver(s->ctx, env, msg);
}

static void msg_store(struct smtp_session *s, const char *p, size_t n)
{
    if (s->msg_too_big)
        return;
    if (buf_append(&s->msg, p, n) < 0) {
        /* Over the limit: keep reading, store nothing more. */
        s->msg_too_big = true;
        buf_free(&s->msg);
    }
}

static void data_line_grew(struct smtp_session *s, size_t n)
{
    s->data_line_len += n;
    if (s->cfg.max_line_length && s->data_line_len > s->cfg.max_line_length)
        s->msg_long_line = true;
}

/* DATA text: only CRLF "." CRLF (or "." CRLF at the very start) ends it;
 * a bare CR or LF anywhere marks the message bad.  Returns bytes used. */
static size_t data_feed(struct smtp_session *s, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        char c = p[i];
        switch (s->data_pos) {
        case DATA_MID: {
            size_t j = i;
            while (j < n && p[j] != '\r' && p[j] != '\n')
                j++;
            if (j > i) {
                msg_store(s, p + i, j - i);
                data_line_grew(s, j - i);
                i = j;
            } else if (c == '\r') {
                s->data_pos = DATA_CR;
                i++;
            } else {
                /* bare LF: never a line end, the message is refused */
                s->msg_bad_eol = true;
                msg_store(s, "\n", 1);
                s->data_line_len = 0;
                i++;
            }
            break;
        }
        case DATA_BOL:
            if (c == '.') {
                s->data_pos = DATA_BOL_DOT;
                data_line_grew(s, 1);
                i++;
            } else {
                s->data_pos = DATA_MID;
            }
            break;
        case DATA_BOL_DOT:
            if (c == '\r') {
                s->data_pos = DATA_BOL_DOT_CR;
                i++;
            } else {
                /* the stuffed dot is dropped; c is taken as text */
                s->data_pos = DATA_MID;
            }
            break;
        case DATA_BOL_DOT_CR:
            if (c == '\n') {
                finish_message(s);
                return i + 1;
            }
            s->msg_bad_eol = true;
            msg_store(s, "\r", 1);
            s->data_pos = DATA_MID;
            break;
        case DATA_CR:
            if (c == '\n') {
                msg_store(s, "\r\n", 2);
                s->data_line_len = 0;
                s->data_pos = DATA_BOL;
                i++;
            } else {
                s->msg_bad_eol = true;
                msg_store(s, "\r", 1);
                data_line_grew(s, 1);
                s->data_pos = DATA_MID;
            }
            break;
        }
    }
    return n;
}

static void bdat_done(struct smtp_session *s)
{
    s->mode = MODE_CMD;
    if (s->bdat_err_code) {
        reply_line(s, s->bdat_err_code, ' ', s->bdat_err_enh, s->bdat_err_text);
        if (s->bdat_err_reset)
            reset_tx(s);
        if (s->bdat_err_counts)
            count_error(s);
        return;
    }
    if (!s->bdat_last) {
        reply(s, 250, "2.0.0", "%llu octets received", (unsigned long long)s->bdat_size);
        return;
    }
    finish_message(s);
}

static size_t bdat_feed(struct smtp_session *s, const char *p, size_t n)
{
    size_t take = n;

    if ((uint64_t)take > s->bdat_left)
        take = (size_t)s->bdat_left;
    if (!s->bdat_err_code)
        msg_store(s, p, take);
    s->bdat_left -= take;
    if (s->bdat_left == 0)
        bdat_done(s);
    return take;
}

static void bdat_error(struct smtp_session *s, int code, const char *enh, const char *text,
                       bool counts, bool resets)
{
    s->bdat_err_code = code;
    s->bdat_err_enh = enh;
    s->bdat_err_text = text;
    s->bdat_err_counts = counts;
    s->bdat_err_reset = resets;
}

static void cmd_bdat(struct smtp_session *s, char *arg)
{
    uint64_t size = 0;
    size_t nd = 0;
    bool last = false;
    struct refusal r;

    while (is_digit((unsigned char)arg[nd]))
        nd++;
    if (nd == 0 || nd > BDAT_SIZE_DIGITS) {
        bad(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        return;
    }
    for (size_t i = 0; i < nd; i++)
        size = size * 10 + (uint64_t)(arg[i] - '0');
    if (arg[nd] == ' ') {
        const char *m = arg + nd;
        while (*m == ' ')
            m++;
        if (strcasecmp(m, "LAST") != 0) {
            bad(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
            return;
        }
        last = true;
    } else if (arg[nd]) {
        bad(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        return;
    }
    /* From here on the chunk is read even when it is refused, so that its
     * bytes are never taken as commands. */
    s->mode = MODE_BDAT;
    s->bdat_left = size;
    s->bdat_size = size;
    s->bdat_last = last;
    bdat_error(s, 0, NULL, NULL, false, false);
    if (!s->helo || !s->esmtp) {
        bdat_error(s, 503, "5.5.1", "Send EHLO first", true, false);
    } else if (!data_allowed(s, &r)) {
        bdat_error(s, r.code, r.enh, r.text, true, false);
    } else if (s->cfg.max_message_size &&
               (s->msg_too_big || size > (uint64_t)(s->cfg.max_message_size - s->msg.len))) {
        bdat_error(s, 552, "5.3.4", "Message size exceeds fixed maximum message size", false,
                   true);
    } else {
        s->bdat_used = true;
    }
    if (size == 0)
        bdat_done(s);
}

static void cmd_rset(struct smtp_session *s, char *arg)
{
    if (*arg) {
        bad(s, 501, "5.5.4", "Syntax: RSET");
        return;
    }
    reset_tx(s);
    reply(s, 250, "2.0.0", "OK");
}

static void cmd_noop(struct smtp_session *s, char *arg)
{
    (void)arg;
    reply(s, 250, "2.0.0", "OK");
}

static void cmd_quit(struct smtp_session *s, char *arg)
{
    if (*arg) {
        bad(s, 501, "5.5.4", "Syntax: QUIT");
        return;
    }
    reset_tx(s);
    reply(s, 221, "2.0.0", "%s closing connection", s->hostname);
    s->wait = SMTP_CLOSE;
}

static void cmd_help(struct smtp_session *s, char *arg)
{
    (void)arg;
    reply_line(s, 214, '-', "2.0.0",
               "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH");
    reply_line(s, 214, ' ', "2.0.0", "See RFC 5321");
}

static void cmd_vrfy(struct smtp_session *s, char *arg)
{
    char *addr = NULL;
    const char *end;
    bool eight;
    enum smtp_rcpt_verdict v;

    if (!s->cfg.vrfy) {
        bad(s, 502, "5.5.1", "VRFY command is disabled");
        return;
    }
    if (!*arg) {
        bad(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    if (parse_path(arg, false, true, &addr, &end, &eight) != PATH_OK || *end || eight) {
        free(addr);
        reply(s, 252, "2.1.5", "Cannot VRFY user, but will accept message");
        return;
    }
    v = s->hooks.rcpt ? s->hooks.rcpt(s->ctx, s->auth_user, addr) : SMTP_RCPT_TEMPFAIL;
    free(addr);
    switch (v) {
    case SMTP_RCPT_LOCAL:
        reply(s, 250, "2.1.5", "User is local");
        break;
    case SMTP_RCPT_UNKNOWN:
        bad(s, 550, "5.1.1", "No such user here");
        break;
    case SMTP_RCPT_REMOTE:
        reply(s, 252, "2.1.5", "Cannot VRFY user, but will accept message");
        break;
    case SMTP_RCPT_TEMPFAIL:
    default:
        reply(s, 451, "4.3.0", "Temporary failure looking up the recipient");
        break;
    }
}

static void cmd_expn(struct smtp_session *s, char *arg)
{
    (void)arg;
    bad(s, 502, "5.5.1", "EXPN command is disabled");
}

static void cmd_starttls(struct smtp_session *s, char *arg)
{
    if (*arg) {
        bad(s, 501, "5.5.4", "Syntax: STARTTLS");
        return;
    }
    if (s->tls) {
        bad(s, 503, "5.5.1", "TLS already active");
        return;
    }
    if (!s->cfg.tls_available) {
        bad(s, 502, "5.5.1", "STARTTLS not available");
        return;
    }
    if (s->env) {
        bad(s, 503, "5.5.1", "STARTTLS not allowed during a mail transaction");
        return;
    }
    reply(s, 220, "2.0.0", "Ready to start TLS");
    s->wait = SMTP_WAIT_STARTTLS;
}

/* ------------------------------------------------------------------ */
/* AUTH (RFC 4954) */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64: groups of four, padding only at the end, no stray bits.
 * Returns a new buffer (out->len bytes, NUL-terminated) or -1. */
static int b64_strict(const char *in, struct buf *out)
{
    size_t n = strlen(in);

    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)in[i + (size_t)k];
            if (c == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad)
                return -1;
            v[k] = b64_value(c);
            if (v[k] < 0)
                return -1;
        }
        {
            uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
                         ((uint32_t)v[2] << 6) | (uint32_t)v[3];
            char b[3] = {(char)(w >> 16), (char)(w >> 8), (char)w};
            if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
                return -1;
            if (buf_append(out, b, 3 - (size_t)pad) < 0)
                return -1;
        }
    }
    return 0;
}

static void wipe_buf(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

/* Decode a client response; "=" is the empty response.  On bad base64
 * the exchange ends with 501. */
static bool auth_decode(struct smtp_session *s, const char *resp, struct buf *out)
{
    if (strcmp(resp, "=") == 0)
        return true;
    if (b64_strict(resp, out) < 0) {
        wipe_buf(out);
        end_auth_exchange(s);
        bad(s, 501, "5.5.2", "Invalid base64 data");
        return false;
    }
    return true;
}

static void auth_failed(struct smtp_session *s)
{
    end_auth_exchange(s);
    s->auth_failures++;
    reply(s, 535, "5.7.8", "Authentication credentials invalid");
    s->wait = SMTP_WAIT_PAUSE;
    count_error(s);
}

static void auth_check(struct smtp_session *s, const char *authzid, const char *authcid,
                       const char *password)
{
    char *canonical = NULL;
    int r;

    if (!*authcid) {
        auth_failed(s);
        return;
    }
    r = s->hooks.auth ? s->hooks.auth(s->ctx, authzid, authcid, password, &canonical) : -1;
    if (r == 1) {
        end_auth_exchange(s);
        free(s->auth_user);
        s->auth_user = canonical ? canonical : xstrdup(authcid);
        reply(s, 235, "2.7.0", "Authentication successful");
        return;
    }
    free(canonical);
    if (r == 0) {
        auth_failed(s);
        return;
    }
    end_auth_exchange(s);
    reply(s, 454, "4.7.0", "Temporary authentication failure");
}

static void auth_plain(struct smtp_session *s, const char *resp)
{
    struct buf d = BUF_INIT;
    const char *zid, *cid, *pw, *end;

    buf_init(&d, SMTP_CMD_LINE_MAX);
    if (!auth_decode(s, resp, &d))
        return;
    zid = buf_cstr(&d);
    end = zid + d.len;
    cid = memchr(zid, '\0', d.len) ? zid + strlen(zid) + 1 : NULL;
    pw = cid && cid < end && memchr(cid, '\0', (size_t)(end - cid)) ? cid + strlen(cid) + 1
                                                                   : NULL;
    if (!pw || pw > end || memchr(pw, '\0', (size_t)(end - pw))) {
        wipe_buf(&d);
        auth_failed(s);
        return;
    }
    if (*zid && strcmp(zid, cid) != 0) {
        /* acting for somebody else is not offered */
        wipe_buf(&d);
        auth_failed(s);
        return;
    }
    auth_check(s, *zid ? zid : NULL, cid, pw);
    wipe_buf(&d);
}

static void auth_login_user(struct smtp_session *s, const char *resp)
{
    struct buf d = BUF_INIT;

    buf_init(&d, SMTP_CMD_LINE_MAX);
    if (!auth_decode(s, resp, &d))
        return;
    if (memchr(buf_cstr(&d), '\0', d.len)) {
        wipe_buf(&d);
        auth_failed(s);
        return;
    }
    free(s->auth_login_user);
    s->auth_login_user = xstrdup(buf_cstr(&d));
    wipe_buf(&d);
    s->auth_step = AUTH_LOGIN_PASSWORD;
    s->mode = MODE_AUTH;
    reply(s, 334, NULL, "UGFzc3dvcmQ6");
}

static void auth_login_password(struct smtp_session *s, const char *resp)
{
    struct buf d = BUF_INIT;

    buf_init(&d, SMTP_CMD_LINE_MAX);
    if (!auth_decode(s, resp, &d))
        return;
    if (memchr(buf_cstr(&d), '\0', d.len)) {
        wipe_buf(&d);
        auth_failed(s);
        return;
    }
    {
        char *user = s->auth_login_user;
        s->auth_login_user = NULL;
        auth_check(s, NULL, user ? user : "", buf_cstr(&d));
        if (user) {
            explicit_bzero(user, strlen(user));
            free(user);
        }
    }
    wipe_buf(&d);
}

static void cmd_auth(struct smtp_session *s, char *arg)
{
    char *mech = arg, *ir;

    if (!s->helo || !s->esmtp) {
        bad(s, 503, "5.5.1", "Send EHLO first");
        return;
    }
    if (s->auth_user) {
        bad(s, 503, "5.5.1", "Already authenticated");
        return;
    }
    if (s->env) {
        bad(s, 503, "5.5.1", "AUTH not allowed during a mail transaction");
        return;
    }
    if (!auth_allowed(s)) {
        bad(s, 538, "5.7.11", "Encryption required for requested authentication mechanism");
        return;
    }
    ir = strchr(mech, ' ');
    if (ir) {
        *ir++ = '\0';
        while (*ir == ' ')
            ir++;
        if (!*ir || strchr(ir, ' ')) {
            bad(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
            return;
        }
    }
    if (strcasecmp(mech, "PLAIN") == 0) {
        if (ir) {
            auth_plain(s, ir);
            return;
        }
        s->auth_step = AUTH_PLAIN_RESPONSE;
        s->mode = MODE_AUTH;
        reply_line(s, 334, ' ', NULL, "");
    } else if (strcasecmp(mech, "LOGIN") == 0) {
        if (ir) {
            auth_login_user(s, ir);
            return;
        }
        s->auth_step = AUTH_LOGIN_USER;
        s->mode = MODE_AUTH;
        reply(s, 334, NULL, "VXNlcm5hbWU6");
    } else if (!*mech) {
        bad(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    } else {
        bad(s, 504, "5.5.4", "Unrecognized authentication type");
    }
}

/* A line in the middle of an AUTH exchange. */
static void auth_response(struct smtp_session *s, const char *line)
{
    if (strcmp(line, "*") == 0) {
        end_auth_exchange(s);
        reply(s, 501, "5.0.0", "Authentication cancelled");
        return;
    }
    switch (s->auth_step) {
    case AUTH_PLAIN_RESPONSE:
        s->auth_step = AUTH_NONE;
        s->mode = MODE_CMD;
        auth_plain(s, line);
        break;
    case AUTH_LOGIN_USER:
        s->auth_step = AUTH_NONE;
        s->mode = MODE_CMD;
        auth_login_user(s, line);
        break;
    case AUTH_LOGIN_PASSWORD:
        s->auth_step = AUTH_NONE;
        s->mode = MODE_CMD;
        auth_login_password(s, line);
        break;
    case AUTH_NONE:
    default:
        end_auth_exchange(s);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Command lines */

struct command {
    const char *verb;
    void (*fn)(struct smtp_session *s, char *arg);
};

static void cmd_ehlo(struct smtp_session *s, char *arg)
{
    cmd_helo(s, arg, true);
}

static void cmd_helo_plain(struct smtp_session *s, char *arg)
{
    cmd_helo(s, arg, false);
}

static const struct command commands[] = {
    {"EHLO", cmd_ehlo},         {"HELO", cmd_helo_plain}, {"MAIL", cmd_mail},
    {"RCPT", cmd_rcpt},         {"DATA", cmd_data},       {"BDAT", cmd_bdat},
    {"RSET", cmd_rset},         {"NOOP", cmd_noop},       {"QUIT", cmd_quit},
    {"HELP", cmd_help},         {"VRFY", cmd_vrfy},       {"EXPN", cmd_expn},
    {"STARTTLS", cmd_starttls}, {"AUTH", cmd_auth},
};

static void handle_line(struct smtp_session *s)
{
    bool overlong = s->line_overlong;
    char empty[1] = "";
    char *l, *arg;
    size_t n, vlen;

    s->line_overlong = false;
    if (overlong) {
        end_auth_exchange(s);
        bad(s, 500, "5.5.2", "Line too long");
        return;
    }
    n = s->line.len;
    if (n && s->line.data[n - 1] == '\r')
        n--;
    buf_truncate(&s->line, n);
    l = s->line.data ? s->line.data : empty;
    if (memchr(l, '\0', n) || memchr(l, '\r', n)) {
        end_auth_exchange(s);
        bad(s, 500, "5.5.2", "Syntax error: NUL or CR in command");
        return;
    }
    while (n && (l[n - 1] == ' ' || l[n - 1] == '\t'))
        l[--n] = '\0';
    if (s->mode == MODE_AUTH) {
        auth_response(s, l);
        return;
    }
    vlen = 0;
    while (l[vlen] && l[vlen] != ' ')
        vlen++;
    arg = l + vlen;
    while (*arg == ' ')
        arg++;
    for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
        if (strlen(commands[i].verb) == vlen && strncasecmp(l, commands[i].verb, vlen) == 0) {
            commands[i].fn(s, arg);
            return;
        }
    }
    if (vlen == 0)
        bad(s, 500, "5.5.2", "Syntax error: empty command");
    else
        bad(s, 500, "5.5.1", "Command unrecognized");
}

/* Collect a command line; process it when its LF arrives. */
static size_t line_feed(struct smtp_session *s, const char *p, size_t n)
{
    const char *lf = memchr(p, '\n', n);
    size_t content = lf ? (size_t)(lf - p) : n;

    if (!s->line_overlong && buf_append(&s->line, p, content) < 0) {
        s->line_overlong = true;
        if (s->mode == MODE_AUTH)
            wipe_buf(&s->line);
        buf_reset(&s->line);
    }
    if (!lf)
        return n;
    handle_line(s);
    if (s->line.data)
        explicit_bzero(s->line.data, s->line.len);
    buf_reset(&s->line);
    return content + 1;
}

/* ------------------------------------------------------------------ */
/* Public interface */

struct smtp_session *smtp_session_new(const struct smtp_session_cfg *cfg,
                                      const struct smtp_hooks *hooks, void *ctx)
{
    struct smtp_session *s = XNEW(struct smtp_session);

    s->cfg = *cfg;
    s->hostname = xstrdup(cfg->hostname ? cfg->hostname : "localhost");
    s->peer_addr = xstrdup(cfg->peer_addr ? cfg->peer_addr : "");
    s->cfg.hostname = s->hostname;
    s->cfg.peer_addr = s->peer_addr;
    s->hooks = *hooks;
    s->ctx = ctx;
    buf_init(&s->out, 0);
    /* the line without its LF: CR included, SMTP_CMD_LINE_MAX with the LF */
    buf_init(&s->line, SMTP_CMD_LINE_MAX - 1);
    buf_init(&s->msg, cfg->max_message_size);
    s->tls = cfg->tls_active;
    s->wait = SMTP_READY;
    s->mode = MODE_CMD;
    reply(s, 220, NULL, "%s ESMTP correod", s->hostname);
    return s;
}

void smtp_session_free(struct smtp_session *s)
{
    if (!s)
        return;
    end_auth_exchange(s);
    smtp_envelope_free(s->env);
    wipe_buf(&s->line);
    buf_free(&s->out);
    buf_free(&s->msg);
    free(s->helo);
    free(s->auth_user);
    free(s->hostname);
    free(s->peer_addr);
    free(s);
}

size_t smtp_session_feed(struct smtp_session *s, const char *data, size_t len)
{
    size_t i = 0;

    while (i < len && s->wait == SMTP_READY) {
        switch (s->mode) {
        case MODE_DATA:
            i += data_feed(s, data + i, len - i);
            break;
        case MODE_BDAT:
            i += bdat_feed(s, data + i, len - i);
            break;
        case MODE_CMD:
        case MODE_AUTH:
        default:
            i += line_feed(s, data + i, len - i);
            break;
        }
        check_shutdown(s);
    }
    return i;
}

void smtp_session_eof(struct smtp_session *s)
{
    s->eof = true;
    if (s->wait != SMTP_WAIT_DELIVERY)
        s->wait = SMTP_CLOSE;
}

enum smtp_wait smtp_session_state(const struct smtp_session *s)
{
    return s->wait;
}

const char *smtp_session_output(const struct smtp_session *s, size_t *len)
{
    *len = s->out.len;
    return buf_cstr(&s->out);
}

void smtp_session_output_clear(struct smtp_session *s)
{
    buf_reset(&s->out);
}

void smtp_session_delivered(struct smtp_session *s, int code, const char *enhanced,
                            const char *text)
{
    if (s->wait != SMTP_WAIT_DELIVERY)
        return;
    if (code < 200 || code > 599)
        code = 451;
    reply_line(s, code, ' ', enhanced, text ? text : "");
    s->wait = SMTP_READY;
    reset_tx(s);
    if (s->eof)
        s->wait = SMTP_CLOSE;
    else
        check_shutdown(s);
}

void smtp_session_tls_started(struct smtp_session *s)
{
    if (s->wait != SMTP_WAIT_STARTTLS)
        return;
    end_auth_exchange(s);
    reset_tx(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = false;
    free(s->auth_user);
    s->auth_user = NULL;
    s->line_overlong = false;
    buf_reset(&s->line);
    s->tls = true;
    s->wait = SMTP_READY;
    s->mode = MODE_CMD;
    check_shutdown(s);
}

unsigned smtp_session_pause_ms(const struct smtp_session *s)
{
    unsigned f = s->auth_failures;

    if (f == 0)
        return 0;
    if (f > 6)
        f = 6;
    return 500u << (f - 1);
}

void smtp_session_resume(struct smtp_session *s)
{
    if (s->wait != SMTP_WAIT_PAUSE)
        return;
    s->wait = SMTP_READY;
    if (s->close_after_pause) {
        s->close_after_pause = false;
        close_with(s, "4.7.0", "Too many errors, closing connection");
        return;
    }
    if (s->eof)
        s->wait = SMTP_CLOSE;
    else
        check_shutdown(s);
}

void smtp_session_timeout(struct smtp_session *s)
{
    if (s->wait == SMTP_CLOSE)
        return;
    end_auth_exchange(s);
    if (s->wait != SMTP_WAIT_DELIVERY)
        reset_tx(s);
    s->wait = SMTP_READY;
    close_with(s, "4.4.2", "Timeout, closing connection");
}

void smtp_session_shutdown(struct smtp_session *s)
{
    s->shutdown = true;
    if (s->mode == MODE_AUTH)
        end_auth_exchange(s);
    check_shutdown(s);
}

unsigned smtp_session_auth_failures(const struct smtp_session *s)
{
    return s->auth_failures;
}
