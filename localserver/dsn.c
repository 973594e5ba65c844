/*
 * dsn: delivery status notifications (RFC 3464, RFC 3462 multipart/report).
 *
 * A report has three parts: a text/plain explanation naming each recipient
 * and what its server said, the message/delivery-status fields (per
 * message: Reporting-MTA, Original-Envelope-Id, Arrival-Date; per
 * recipient: Original-Recipient, Final-Recipient, Action, Status,
 * Remote-MTA, Diagnostic-Code, Last-Attempt-Date), and the original
 * message (message/rfc822) or only its header (text/rfc822-headers) for
 * RET=HDRS and always for success reports (delivered, relayed).
 *
 * A recipient's last_reply, as the queue runner records it, is either
 * "[HOST] CODE TEXT" (the reply of the SMTP server HOST) or free text (a
 * local or network error); the first gives Remote-MTA and an
 * "smtp; CODE TEXT" Diagnostic-Code, the status comes from the reply's
 * enhanced code when it has one.  Free text that starts with an enhanced
 * code ("5.6.3 conversion ...") gives its status too.
 *
 * Every value that came from outside (addresses, replies, ids) is made
 * printable ASCII before it goes into a header or the report, so a report
 * is 7bit except for an 8-bit original message it carries.
 */
#include "dsn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sanitize.h"

#define DIAG_MAX 900                /* characters of a reply in a field */
#define FULL_DEFAULT_MAX (1u << 20) /* RET not given: whole message up to this */

static void put(struct buf *b, const char *s)
{
    if (buf_puts(b, s) < 0)
        die("dsn: unbounded buffer refused an append");
}

static void putf(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void putf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (r < 0)
        die("dsn: unbounded buffer refused an append");
}

static void put_n(struct buf *b, const char *s, size_t n)
{
    if (buf_append(b, s, n) < 0)
        die("dsn: unbounded buffer refused an append");
}

/* Printable ASCII on one line: runs of CR/LF/TAB become one space, other
 * bytes "\xHH"; cut at max characters with "...". */
static void put_oneline(struct buf *b, const char *s, size_t max)
{
    struct buf tmp = BUF_INIT;
    bool space = false;

    for (const char *p = s; *p; p++) {
        if (*p == '\r' || *p == '\n' || *p == '\t') {
            space = true;
            continue;
        }
        if (space && tmp.len > 0 && buf_putc(&tmp, ' ') < 0)
            die("dsn: buffer");
        space = false;
        if (sanitize_log(&tmp, p, 1) < 0)
            die("dsn: buffer");
    }
    if (tmp.len > max) {
        put_n(b, tmp.data, max);
        put(b, "...");
    } else if (tmp.len > 0) {
        put_n(b, tmp.data, tmp.len);
    }
    buf_free(&tmp);
}

/* RFC 6533 utf-8-addr-xtext style: printable ASCII but '\', '+', '=' and
 * everything else as \x{HH}. */
static bool is_ascii_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x21 || *p > 0x7e)
            return false;
    }
    return true;
}

static void put_addr_field(struct buf *b, const char *addr)
{
    if (is_ascii_printable(addr)) {
        putf(b, "rfc822; %s", addr);
        return;
    }
    put(b, "utf-8; ");
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++) {
        if (*p >= 0x21 && *p <= 0x7e && *p != '\\' && *p != '+' && *p != '=')
            put_n(b, (const char *)p, 1);
        else
            putf(b, "\\x{%02X}", *p);
    }
}

/* "Mon, 23 Nov 2026 17:40:00 +0000" without the locale. */
static void put_date(struct buf *b, time_t t)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    putf(b, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
         months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- the recipient's last reply ----------------------------------------- */

struct reply_info {
    char *mta;          /* "[HOST]" part, or NULL */
    const char *smtp;   /* "CODE TEXT" when an SMTP reply, else NULL */
    const char *text;   /* the whole reply without the host part */
    char status[16];    /* "5.1.1" */
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "d.ddd.ddd" at s: its length, or 0. */
static size_t enhanced_len(const char *s)
{
    size_t i = 0, n;

    if (!(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
        return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        n = 0;
        while (is_digit(s[i]) && n < 3) {
            i++;
            n++;
        }
        if (n == 0)
            return 0;
        if (part == 0) {
            if (s[i] != '.')
                return 0;
            i++;
        }
    }
    if (s[i] != '\0' && s[i] != ' ' && s[i] != '\r' && s[i] != '\n')
        return 0;
    return i;
}

static void reply_parse(const char *reply, enum dsn_kind kind, struct reply_info *ri)
{
    const char *p = reply ? reply : "";
    const char *fallback = kind == DSN_FAILED ? "5.0.0" : kind == DSN_DELAYED ? "4.0.0"
                                                                              : "2.0.0";
    size_t elen;

    memset(ri, 0, sizeof(*ri));
    if (p[0] == '[') {
        const char *end = strstr(p, "] ");

        if (end && end - p > 1 && end - p < 300) {
            ri->mta = xstrndup(p + 1, (size_t)(end - p - 1));
            p = end + 2;
        }
    }
    ri->text = p;
    snprintf(ri->status, sizeof(ri->status), "%s", fallback);
    if (is_digit(p[0]) && is_digit(p[1]) && is_digit(p[2]) &&
        (p[3] == ' ' || p[3] == '-' || p[3] == '\0') && (p[0] >= '2' && p[0] <= '5')) {
        size_t n;

        ri->smtp = p;
        if (p[3] != '\0' && (n = enhanced_len(p + 4)) > 0 && p[4] == p[0] && n < 16) {
            memcpy(ri->status, p + 4, n);
            ri->status[n] = '\0';
        } else if (p[0] == '4' || p[0] == '5' || p[0] == '2') {
            snprintf(ri->status, sizeof(ri->status), "%c.0.0", p[0]);
        }
    } else if ((elen = enhanced_len(p)) > 0 && elen < sizeof(ri->status)) {
        memcpy(ri->status, p, elen);
        ri->status[elen] = '\0';
    }
    /* A failed report never says 4.x.x only because the last try was
     * temporary (the entry expired): use the permanent class. */
    if (kind == DSN_FAILED && ri->status[0] != '5')
        ri->status[0] = '5';
    if (kind == DSN_DELAYED)
        ri->status[0] = '4';
    if (kind == DSN_DELIVERED || kind == DSN_RELAYED)
        ri->status[0] = '2';
}

/* ---- the original ------------------------------------------------------- */

/* Length of the header block of msg including its empty line (or all). */
static size_t header_len(const char *msg, size_t len)
{
    if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
        return 2;
    for (size_t i = 0; i + 3 < len; i++) {
        if (msg[i] == '\r' && msg[i + 1] == '\n' && msg[i + 2] == '\r' && msg[i + 3] == '\n')
            return i + 4;
    }
    return len;
}

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80 || s[i] == '\0')
            return true;
    }
    return false;
}

/* The original's Message-ID (with <>), when it is plain and short. */
static char *orig_message_id(const char *msg, size_t hlen)
{
    size_t i = 0;

    while (i < hlen) {
        const char *line = msg + i;
        const char *nl = memchr(line, '\n', hlen - i);
        size_t n = nl ? (size_t)(nl - line) : hlen - i;

        if (n > 11 && strncasecmp(line, "Message-ID:", 11) == 0) {
            const char *v = line + 11;
            const char *end = line + n;

            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            if (end - v > 2 && end - v < 250 && v[0] == '<' && end[-1] == '>') {
                for (const char *c = v; c < end; c++) {
                    if (*c < 0x21 || *c > 0x7e)
                        return NULL;
                }
                return xstrndup(v, (size_t)(end - v));
            }
            return NULL;
        }
        i += n + 1;
    }
    return NULL;
}

static void make_boundary(char *out, size_t size, const char *orig, size_t len,
                          time_t now)
{
    for (unsigned k = 0;; k++) {
        snprintf(out, size, "=_correod_report_%lld_%ld_%u", (long long)now, (long)getpid(),
                 k);
        if (memmem(orig, len, out, strlen(out)) == NULL)
            return;
    }
}

/* ---- the report --------------------------------------------------------- */

int dsn_build(struct buf *out, const char *hostname, const struct queue_entry *q,
              const size_t *which, size_t n, enum dsn_kind kind,
              const char *orig, size_t orig_len, time_t now, struct err *e)
{
    static const char *const subjects[] = {
        [DSN_FAILED] = "Undelivered Mail Returned to Sender",
        [DSN_DELAYED] = "Delayed Mail (still being retried)",
        [DSN_DELIVERED] = "Successful Mail Delivery Report",
        [DSN_RELAYED] = "Successful Mail Delivery Report",
    };
    static const char *const actions[] = {
        [DSN_FAILED] = "failed", [DSN_DELAYED] = "delayed", [DSN_DELIVERED] = "delivered",
        [DSN_RELAYED] = "relayed",
    };
    static const char *const originals[] = {
        [DSN_FAILED] = "Undelivered message", [DSN_DELAYED] = "Delayed message",
        [DSN_DELIVERED] = "Delivered message", [DSN_RELAYED] = "Relayed message",
    };
    char boundary[96];
    struct reply_info *ri;
    size_t hlen = header_len(orig ? orig : "", orig ? orig_len : 0);
    bool headers_only;
    char *msgid;

    if (orig == NULL)
        orig_len = 0;
    if (kind != DSN_FAILED && kind != DSN_DELAYED && kind != DSN_DELIVERED &&
        kind != DSN_RELAYED)
        return err_set(e, ERR_INVAL, "dsn: unknown kind");
    if (n == 0)
        return err_set(e, ERR_INVAL, "dsn: no recipients to report");
    if (q->mail_from == NULL || q->mail_from[0] == '\0')
        return err_set(e, ERR_INVAL, "dsn: no report for the null sender");
    for (const char *p = q->mail_from; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>')
            return err_set(e, ERR_INVAL, "dsn: unusable sender address");
    }
    for (size_t i = 0; i < n; i++) {
        if (which[i] >= q->n_rcpts)
            return err_set(e, ERR_INVAL, "dsn: recipient index out of range");
    }
    headers_only = kind == DSN_DELIVERED || kind == DSN_RELAYED || q->ret == SMTP_RET_HDRS ||
                   (q->ret == SMTP_RET_DEFAULT && orig_len > FULL_DEFAULT_MAX);
    make_boundary(boundary, sizeof(boundary), orig ? orig : "", orig_len, now);
    ri = XNEWARRAY(struct reply_info, n);
    for (size_t i = 0; i < n; i++)
        reply_parse(q->rcpts[which[i]].last_reply, kind, &ri[i]);
    msgid = orig ? orig_message_id(orig, hlen) : NULL;

    /* header */
    put(out, "From: Mail Delivery System <MAILER-DAEMON@");
    put_oneline(out, hostname, 255);
    put(out, ">\r\nTo: <");
    put(out, q->mail_from);     /* checked above; UTF-8 only with SMTPUTF8 */
    putf(out, ">\r\nSubject: %s\r\nDate: ", subjects[kind]);
    put_date(out, now);
    putf(out, "\r\nMessage-ID: <%lld.%s.dsn@", (long long)now, q->id);
    put_oneline(out, hostname, 255);
    put(out, ">\r\n");
    if (msgid) {
        putf(out, "In-Reply-To: %s\r\nReferences: %s\r\n", msgid, msgid);
        free(msgid);
    }
    put(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    putf(out, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
              "\tboundary=\"%s\"\r\n\r\n", boundary);
    put(out, "This is a MIME-encapsulated message.\r\n\r\n");

    /* human part */
    putf(out, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n"
              "Content-Description: Notification\r\n\r\n", boundary);
    put(out, "This is the mail system at host ");
    put_oneline(out, hostname, 255);
    put(out, ".\r\n\r\n");
    switch (kind) {
    case DSN_FAILED:
        put(out, "I'm sorry to have to inform you that your message could not\r\n"
                 "be delivered to one or more recipients.  The problems are\r\n"
                 "listed below.\r\n");
        break;
    case DSN_DELAYED:
        put(out, "Your message could not be delivered yet to one or more\r\n"
                 "recipients.  Delivery will be retried; you do not need to\r\n"
                 "send it again.\r\n");
        break;
    case DSN_DELIVERED:
        put(out, "Your message was delivered to the recipients listed below.\r\n");
        break;
    case DSN_RELAYED:
        put(out, "Your message was handed on to the mail servers of the recipients\r\n"
                 "listed below.  Those servers do not send delivery reports, so\r\n"
                 "this is the last report you will get about these recipients.\r\n");
        break;
    }
    put(out, "\r\n");
    for (size_t i = 0; i < n; i++) {
        put(out, "<");
        put_oneline(out, q->rcpts[which[i]].addr, 500);
        put(out, ">: ");
        if (ri[i].mta) {
            put(out, "host ");
            put_oneline(out, ri[i].mta, 255);
            put(out, " said: ");
        }
        put_oneline(out, ri[i].text[0] ? ri[i].text : "(no details)", DIAG_MAX);
        put(out, "\r\n");
    }
    put(out, "\r\n");

    /* machine part */
    putf(out, "--%s\r\nContent-Type: message/delivery-status\r\n"
              "Content-Description: Delivery report\r\n\r\n", boundary);
    put(out, "Reporting-MTA: dns; ");
    put_oneline(out, hostname, 255);
    put(out, "\r\n");
    if (q->envid) {
        put(out, "Original-Envelope-Id: ");
        put_oneline(out, q->envid, 200);
        put(out, "\r\n");
    }
    put(out, "Arrival-Date: ");
    put_date(out, q->created);
    put(out, "\r\n");
    for (size_t i = 0; i < n; i++) {
        const struct queue_rcpt *r = &q->rcpts[which[i]];

        put(out, "\r\n");
        if (r->orcpt && strchr(r->orcpt, ';')) {
            put(out, "Original-Recipient: ");
            put_oneline(out, r->orcpt, 500);
            put(out, "\r\n");
        }
        put(out, "Final-Recipient: ");
        put_addr_field(out, r->addr);
        putf(out, "\r\nAction: %s\r\nStatus: %s\r\n", actions[kind], ri[i].status);
        if (ri[i].mta) {
            put(out, "Remote-MTA: dns; ");
            put_oneline(out, ri[i].mta, 255);
            put(out, "\r\n");
        }
        if (ri[i].smtp) {
            put(out, "Diagnostic-Code: smtp; ");
            put_oneline(out, ri[i].smtp, DIAG_MAX);
            put(out, "\r\n");
        } else if (ri[i].text[0]) {
            put(out, "Diagnostic-Code: x-local; ");
            put_oneline(out, ri[i].text, DIAG_MAX);
            put(out, "\r\n");
        }
        put(out, "Last-Attempt-Date: ");
        put_date(out, now);
        put(out, "\r\n");
    }
    put(out, "\r\n");

    /* the original */
    if (headers_only) {
        putf(out, "--%s\r\nContent-Type: text/rfc822-headers\r\n", boundary);
        if (has_8bit(orig, hlen))
            put(out, "Content-Transfer-Encoding: 8bit\r\n");
        putf(out, "Content-Description: %s headers\r\n\r\n", originals[kind]);
        put_n(out, orig ? orig : "", hlen);
    } else {
        putf(out, "--%s\r\nContent-Type: message/rfc822\r\n", boundary);
        if (has_8bit(orig, orig_len))
            put(out, "Content-Transfer-Encoding: 8bit\r\n");
        putf(out, "Content-Description: %s\r\n\r\n", originals[kind]);
        put_n(out, orig ? orig : "", orig_len);
    }
    if (out->len < 2 || out->data[out->len - 2] != '\r' || out->data[out->len - 1] != '\n')
        put(out, "\r\n");
    putf(out, "\r\n--%s--\r\n", boundary);

    for (size_t i = 0; i < n; i++)
        free(ri[i].mta);
    free(ri);
    return 0;
}
