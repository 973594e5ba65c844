/*
 * relay: the queue runner -- passes over the queue, local retries, SMTP
 * delivery to routes, the smarthost or MX hosts, retry scheduling, DSNs.
 *
 * A pass takes the queue lock, lists the entries (oldest first) and works
 * on each one whose time has come:
 *
 *   - pending local recipients (a failed local copy) are delivered into
 *     their Maildir again;
 *   - pending remote recipients are grouped by destination: the `route` of
 *     their domain (exact, else "*"), else the smarthost, else the
 *     domain's MX hosts (res_query, by preference; no MX: the domain's own
 *     addresses; a null MX or a domain that does not exist: a permanent
 *     failure).  Recipients in one of our own domains without a route are
 *     resolved through the users file and delivered locally;
 *   - each group is sent in one SMTP transaction over lib/tls_stream:
 *     EHLO (HELO as a fallback), STARTTLS per the TLS mode, AUTH for the
 *     smarthost, MAIL with SIZE/BODY/SMTPUTF8/RET/ENVID, RCPT with
 *     NOTIFY/ORCPT when the server announces DSN, DATA (BDAT for
 *     BINARYMIME), every step under the command timeout;
 *   - outcomes: 2xx delivered, 4xx or a network failure is retried after
 *     min(retry_min * 2^attempts, retry_max), 5xx fails; past
 *     queue_lifetime everything still pending fails;
 *   - failed recipients get a DSN to the sender (not for the null sender,
 *     nor when NOTIFY excludes FAILURE), pending ones a DELAY DSN once
 *     after four hours (NOTIFY default or DELAY);
 *   - the entry is removed once no recipient is pending.
 *
 * Durability: the state is saved right after the server's reply to the
 * end of the data (and after each local copy), so a recipient recorded as
 * delivered is never sent again.  A DSN is queued before the recipients it
 * reports are recorded as failed: a crash in between can repeat a DSN but
 * never lose one.
 *
 * Opportunistic TLS (routes in that mode and MX hosts) uses STARTTLS when
 * the server offers it, encrypting without authenticating (lib/tls's
 * no_verify, as Postfix's "may" level): any certificate is taken.  Plain
 * text is used only when the server does not offer STARTTLS, or refuses
 * it, or the handshake itself fails (then on a new connection); the log
 * says which.  Credentials for a smarthost go only over verified TLS (or
 * loopback).
 *
 * Success reports (NOTIFY=SUCCESS, RFC 3461): a local delivery done here
 * (a local retry, or an address of ours that reached the queue) is
 * reported as "delivered"; a message handed to a server that does not
 * announce DSN as "relayed" (a server that does gets NOTIFY and reports
 * itself).  They are sent after the delivery is recorded: a crash in
 * between loses the report, never repeats the delivery.
 *
 * 8-bit data for a server without 8BITMIME is converted to 7-bit first
 * (relay_to_7bit, then DKIM-signed as converted); a message that cannot be
 * converted fails for that server's recipients with 5.6.3.
 *
 * Server replies are recorded as "[HOST] CODE TEXT" (what dsn.c reads back)
 * and logged through lib/log, which escapes them.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "codec.h"
#include "dkim.h"
#include "dsn.h"
#include "log.h"
#include "maildir.h"
#include "message.h"
#include "queue.h"
#include "rcfile.h"
#include "sanitize.h"
#include "tls.h"
#include "tls_stream.h"
#include "users.h"
#include "fsutil.h"

#define REPLY_LINE_MAX 4096         /* one reply line, CRLF included */
#define REPLY_LINES_MAX 200
#define DELAY_NOTICE_AFTER (4 * 3600)
#define POLL_SECONDS 60             /* full pass at least this often */
#define SLICE_MS 200                /* reaction time to signals and new mail */
#define MX_MAX 32
#define SEND_CHUNK 65536
#define SECRET_MAX 4096
#define CONNECT_TIMEOUT_MS 30000    /* a host that does not answer: the next one */

/* ---- a pass ------------------------------------------------------------- */

struct pass {
    const struct conf *c;
    volatile sig_atomic_t *stop;
    time_t now;
    time_t next_due;            /* earliest next attempt among entries left */
    int timeout_ms;
    struct user_db *users;
    bool users_tried;
    struct dkim_signer *dkim;
    bool dkim_tried;
    struct tls_client *tls_default;
    struct tls_client *tls_opportunistic;   /* no_verify */
    struct tls_client *tls_smarthost;
    char *smarthost_secret;
};

enum outcome { OUT_NONE = 0, OUT_OK, OUT_TEMP, OUT_PERM };

/* One entry being worked on. */
struct work {
    struct pass *p;
    struct queue_entry *q;
    char *data;                 /* the spooled message */
    size_t len;
    struct buf signed_hdr;      /* DKIM-Signature to put in front, or empty */
    bool signed_done;
    int has8;                   /* data has 8-bit bytes: -1 not known yet */
    struct buf conv;            /* the 7-bit version (relay_to_7bit) */
    struct buf conv_signed_hdr; /* its DKIM-Signature */
    int conv_rc;                /* 0 done, -1 impossible, 1 not tried yet */
    char *conv_why;
    enum outcome *out;          /* per recipient, this attempt */
    int *report;                /* per recipient: a success DSN kind to send, or -1 */
};

/* Does NOTIFY ask for a report of this kind?  (Not given: failure and
 * delay, RFC 3461 4.1.) */
static bool wants(unsigned notify, unsigned bit)
{
    if (notify & SMTP_NOTIFY_NEVER)
        return false;
    return notify == SMTP_NOTIFY_DEFAULT ? bit != SMTP_NOTIFY_SUCCESS : (notify & bit) != 0;
}

static void set_reply(struct queue_rcpt *r, const char *text)
{
    free(r->last_reply);
    r->last_reply = xstrdup(text);
}

static void outcome(struct work *w, size_t i, enum outcome o, const char *text)
{
    w->out[i] = o;
    set_reply(&w->q->rcpts[i], text);
    if (o == OUT_OK)
        w->q->rcpts[i].state = QRCPT_DELIVERED;
}

static void save_state(struct work *w)
{
    struct err e;

    if (queue_save_state(w->p->c->queue_dir, w->q, &e) < 0)
        log_error("queue %s: cannot record the delivery state: %s", w->q->id, e.text);
}

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');

    return at ? at + 1 : "";
}

static bool ascii_only(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s >= 0x80)
            return false;
    }
    return true;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* ---- local delivery ----------------------------------------------------- */

/* Deliver msg (CRLF) into the Maildir at root with Return-Path and
 * Delivered-To in front and LF line ends. */
static int maildir_put(const char *root, const char *return_path, const char *rcpt,
                       const char *msg, size_t len, struct err *e)
{
    static const char *const subs[] = { "tmp", "new", "cur" };
    struct maildir_folder *f = NULL;
    struct buf b = BUF_INIT;
    int rc;

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s/%s", root, subs[i]);
        struct stat st;

        rc = stat(p, &st) == 0 ? 0 : fs_mkdirs(p, 0700, e);
        free(p);
        if (rc < 0)
            return -1;
    }
    if (maildir_folder_open_path(root, &f, e) < 0)
        return -1;
    if (buf_printf(&b, "Return-Path: <%s>\nDelivered-To: %s\n", return_path, rcpt) < 0)
        die("relay: unbounded buffer refused an append");
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\r' && i + 1 < len && msg[i + 1] == '\n')
            continue;
        if (buf_putc(&b, msg[i]) < 0)
            die("relay: unbounded buffer refused an append");
    }
    rc = maildir_deliver(f, b.data, b.len, NULL, NULL, e);
    maildir_folder_close(f);
    buf_free(&b);
    return rc;
}

static int users_get(struct pass *p, struct err *e)
{
    struct user_db_opts o;

    if (p->users)
        return 0;
    memset(&o, 0, sizeof(o));
    o.users_file = p->c->users_file;
    o.aliases_file = p->c->aliases_file;
    o.domains = (const char *const *)p->c->domains;
    o.n_domains = p->c->n_domains;
    o.maildir_template = p->c->maildir_template;
    return users_load(&o, &p->users, e);
}

/* Where a local address goes: Maildirs of local users and external
 * addresses.  1: resolved; 0: no such user (perm); -1: error (temp). */
static int resolve_local(struct pass *p, const char *addr, char ***maildirs, char ***names,
                         size_t *n_local, char ***external, size_t *n_external,
                         struct err *e)
{
    struct users_target t;
    enum users_resolve_result r;

    *maildirs = *names = *external = NULL;
    *n_local = *n_external = 0;
    if (users_get(p, e) < 0)
        return -1;
    memset(&t, 0, sizeof(t));
    r = users_resolve(p->users, addr, &t, e);
    if (r == USERS_RESOLVE_ERROR)
        return -1;
    if (r != USERS_RESOLVE_OK)
        return 0;
    *maildirs = XNEWARRAY(char *, t.n_local + 1);
    *names = XNEWARRAY(char *, t.n_local + 1);
    for (size_t i = 0; i < t.n_local; i++) {
        if (users_maildir(p->users, t.local[i], &(*maildirs)[*n_local], e) < 0) {
            for (size_t k = 0; k < *n_local; k++) {
                free((*maildirs)[k]);
                free((*names)[k]);
            }
            free(*maildirs);
            free(*names);
            *maildirs = *names = NULL;
            *n_local = 0;
            users_target_free(&t);
            return -1;
        }
        (*names)[*n_local] = xstrdup(t.local[i]);
        (*n_local)++;
    }
    *external = XNEWARRAY(char *, t.n_external + 1);
    for (size_t i = 0; i < t.n_external; i++)
        (*external)[i] = xstrdup(t.external[i]);
    *n_external = t.n_external;
    users_target_free(&t);
    return 1;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Hand msg (CRLF) from mail_from to addr: locally when addr is in one of
 * our domains (Maildir; what cannot be written now, and external alias
 * targets, are queued), else queued for relaying.  notify is the NOTIFY
 * of the queued copies. */
static int hand_over(struct pass *p, const char *mail_from, const char *addr,
                     unsigned notify, const char *msg, size_t len, struct err *e)
{
    char **maildirs = NULL, **names = NULL, **external = NULL;
    size_t n_local = 0, n_external = 0, n_q = 0;
    struct queue_rcpt *qr;
    struct smtp_envelope env;
    char id[QUEUE_ID_MAX];
    int rc = 0;

    if (conf_is_local_domain(p->c, domain_of(addr))) {
        int r = resolve_local(p, addr, &maildirs, &names, &n_local, &external, &n_external, e);

        if (r < 0)
            return -1;
        if (r == 0) {
            log_warn("no local user for <%s>: message from <%s> dropped", addr, mail_from);
            return 0;
        }
    } else {
        external = XNEWARRAY(char *, 1);
        external[0] = xstrdup(addr);
        n_external = 1;
    }
    qr = xcalloc(n_local + n_external, sizeof(*qr));
    for (size_t i = 0; i < n_local; i++) {
        struct err le;

        if (maildir_put(maildirs[i], mail_from, names[i], msg, len, &le) == 0)
            continue;
        log_warn("delivery to %s failed, queued for a retry: %s", names[i], le.text);
        qr[n_q].addr = names[i];
        qr[n_q].local_maildir = maildirs[i];
        qr[n_q].notify = notify;
        qr[n_q].last_reply = xstrdup(le.text);
        n_q++;
    }
    for (size_t i = 0; i < n_external; i++) {
        qr[n_q].addr = external[i];
        qr[n_q].notify = notify;
        n_q++;
    }
    if (n_q > 0) {
        memset(&env, 0, sizeof(env));
        env.mail_from = (char *)(uintptr_t)mail_from;
        rc = queue_spool(p->c->queue_dir, &env, qr, n_q, msg, len, id, e);
        if (rc == 0)
            log_info("queue %s: queued from <%s> for %zu recipient(s)", id, mail_from, n_q);
    }
    for (size_t i = 0; i < n_q; i++)
        free(qr[i].last_reply);
    free(qr);
    strv_free(maildirs, n_local);
    strv_free(names, n_local);
    strv_free(external, n_external);
    return rc;
}

/* Local retries: the Maildir copy that failed when the message came in. */
static void deliver_local_retry(struct work *w, size_t i)
{
    struct queue_rcpt *r = &w->q->rcpts[i];
    struct err e;

    if (maildir_put(r->local_maildir, w->q->mail_from, r->addr, w->data, w->len, &e) == 0) {
        log_info("queue %s: <%s> delivered to its Maildir", w->q->id, r->addr);
        outcome(w, i, OUT_OK, "delivered to the mailbox");
        save_state(w);
        if (wants(r->notify, SMTP_NOTIFY_SUCCESS))
            w->report[i] = DSN_DELIVERED;
    } else {
        log_warn("queue %s: <%s>: %s", w->q->id, r->addr, e.text);
        outcome(w, i, OUT_TEMP, e.text);
    }
}

/* A recipient of one of our domains that reached the queue without a
 * Maildir (no route for its domain): resolve and deliver it here. */
static void deliver_local_addr(struct work *w, size_t i)
{
    struct queue_rcpt *r = &w->q->rcpts[i];
    char **maildirs, **names, **external;
    size_t n_local, n_external;
    struct err e;
    int res = resolve_local(w->p, r->addr, &maildirs, &names, &n_local, &external,
                            &n_external, &e);

    if (res < 0) {
        outcome(w, i, OUT_TEMP, e.text);
        return;
    }
    if (res == 0) {
        outcome(w, i, OUT_PERM, "550 5.1.1 no such user here");
        return;
    }
    res = 0;
    for (size_t k = 0; k < n_local && res == 0; k++)
        res = maildir_put(maildirs[k], w->q->mail_from, names[k], w->data, w->len, &e);
    for (size_t k = 0; k < n_external && res == 0; k++) {
        /* alias to the outside: a new queue entry with the same sender */
        res = hand_over(w->p, w->q->mail_from, external[k], r->notify, w->data, w->len, &e);
    }
    if (res == 0) {
        outcome(w, i, OUT_OK, n_external == 0 ? "delivered to the mailbox"
                                              : "delivered locally");
        save_state(w);
        /* Copies for outside addresses carry NOTIFY on and report
         * themselves. */
        if (n_external == 0 && wants(r->notify, SMTP_NOTIFY_SUCCESS))
            w->report[i] = DSN_DELIVERED;
    } else {
        outcome(w, i, OUT_TEMP, e.text);
    }
    strv_free(maildirs, n_local);
    strv_free(names, n_local);
    strv_free(external, n_external);
}

/* ---- destinations ------------------------------------------------------- */

struct host {
    char *name;
    unsigned port;
};

struct dest {
    enum { DEST_ROUTE, DEST_SMARTHOST, DEST_MX, DEST_LOCAL } kind;
    const struct conf_route *route;
    char *domain;               /* lower case (DEST_MX) */
};

static const struct conf_route *find_route(const struct conf *c, const char *domain)
{
    const struct conf_route *star = NULL;

    for (size_t i = 0; i < c->n_routes; i++) {
        if (strcasecmp(c->routes[i].domain, domain) == 0)
            return &c->routes[i];
        if (strcmp(c->routes[i].domain, "*") == 0)
            star = &c->routes[i];
    }
    return star;
}

static void dest_for(const struct conf *c, const char *addr, struct dest *d)
{
    const char *dom = domain_of(addr);

    memset(d, 0, sizeof(*d));
    d->domain = xstrdup(dom);
    lower(d->domain);
    d->route = find_route(c, d->domain);
    if (d->route && (strcmp(d->route->domain, "*") != 0 ||
                     !conf_is_local_domain(c, d->domain))) {
        d->kind = DEST_ROUTE;
    } else if (conf_is_local_domain(c, d->domain)) {
        d->kind = DEST_LOCAL;
        d->route = NULL;
    } else if (c->smarthost) {
        d->kind = DEST_SMARTHOST;
        d->route = NULL;
    } else {
        d->kind = DEST_MX;
        d->route = NULL;
    }
}

static bool dest_same(const struct dest *a, const struct dest *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case DEST_ROUTE: return a->route == b->route;
    case DEST_SMARTHOST: return true;
    default: return strcmp(a->domain, b->domain) == 0;
    }
}

static void hosts_free(struct host *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(h[i].name);
    free(h);
}

struct mx {
    unsigned pref;
    unsigned order;
    char name[NS_MAXDNAME];
};

static int mx_cmp(const void *a, const void *b)
{
    const struct mx *x = a, *y = b;

    if (x->pref != y->pref)
        return x->pref < y->pref ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The hosts to try for domain.  Permanent failures (no such domain, null
 * MX) come back with e->temporary false. */
static int mx_hosts(const char *domain, struct host **out, size_t *n, struct err *e)
{
    unsigned char ans[4096];
    struct mx *mx = NULL;
    size_t n_mx = 0;
    ns_msg msg;
    int len;

    *out = NULL;
    *n = 0;
    if (domain[0] == '\0') {
        err_set(e, ERR_INVAL, "no domain in the address");
        return -1;
    }
    if (domain[0] == '[') {
        /* an address literal: [192.0.2.1] or [IPv6:...] */
        size_t l = strlen(domain);
        const char *s = domain + 1;

        if (l < 3 || domain[l - 1] != ']')
            return err_set(e, ERR_INVAL, "bad address literal");
        if (strncasecmp(s, "IPv6:", 5) == 0)
            s += 5;
        *out = XNEW(struct host);
        (*out)->name = xstrndup(s, (size_t)(domain + l - 1 - s));
        (*out)->port = 25;
        *n = 1;
        return 0;
    }
    len = res_query(domain, ns_c_in, ns_t_mx, ans, sizeof(ans));
    if (len < 0) {
        if (h_errno == HOST_NOT_FOUND) {
            err_set(e, ERR_NOTFOUND, "domain %s does not exist", domain);
            return -1;
        }
        if (h_errno != NO_DATA) {
            err_set(e, ERR_NET, "MX lookup for %s failed (temporary DNS error)", domain);
            e->temporary = true;
            return -1;
        }
        len = 0;
    }
    if (len > (int)sizeof(ans))
        len = (int)sizeof(ans);
    if (len > 0 && ns_initparse(ans, len, &msg) == 0) {
        int count = ns_msg_count(msg, ns_s_an);

        mx = xcalloc(count > 0 ? (size_t)count : 1, sizeof(*mx));
        for (int i = 0; i < count && n_mx < MX_MAX; i++) {
            ns_rr rr;

            if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_mx ||
                ns_rr_rdlen(rr) < 3)
                continue;
            mx[n_mx].pref = ns_get16(ns_rr_rdata(rr));
            mx[n_mx].order = (unsigned)n_mx;
            if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2,
                                   mx[n_mx].name, sizeof(mx[n_mx].name)) < 0)
                continue;
            n_mx++;
        }
    }
    if (n_mx == 1 && (mx[0].name[0] == '\0' || strcmp(mx[0].name, ".") == 0)) {
        free(mx);
        err_set(e, ERR_NOTFOUND, "domain %s accepts no mail (null MX)", domain);
        return -1;
    }
    if (n_mx == 0) {
        /* no MX: the domain's own A/AAAA (RFC 5321 5.1) */
        free(mx);
        *out = XNEW(struct host);
        (*out)->name = xstrdup(domain);
        (*out)->port = 25;
        *n = 1;
        return 0;
    }
    qsort(mx, n_mx, sizeof(*mx), mx_cmp);
    *out = xcalloc(n_mx, sizeof(**out));
    for (size_t i = 0; i < n_mx; i++) {
        if (mx[i].name[0] == '\0' || strcmp(mx[i].name, ".") == 0)
            continue;
        (*out)[*n].name = xstrdup(mx[i].name);
        (*out)[*n].port = 25;
        (*n)++;
    }
    free(mx);
    return 0;
}

/* ---- 8-bit to 7-bit (RFC 6152) ------------------------------------------ */

#define B64_LINE 76                 /* encoded characters per line */
#define QP_LINE 76                  /* RFC 2045 6.7 (5): at most 76 with the '=' */

static bool has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80)
            return true;
    }
    return false;
}

static void out_put(struct buf *b, const char *s, size_t n)
{
    if (buf_append(b, s, n) < 0)
        die("relay: buffer");
}

static void out_puts(struct buf *b, const char *s)
{
    out_put(b, s, strlen(s));
}

/* Quoted-printable for a text body: CRLF stays a (hard) line break,
 * everything else outside printable ASCII -- bare CR or LF included -- is
 * "=XX", as are '=' and white space at the end of a line; soft breaks keep
 * lines within QP_LINE characters. */
static void qp_encode(const char *s, size_t n, struct buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tok[3];
        size_t tl;
        bool eol_next;

        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            out_puts(out, "\r\n");
            col = 0;
            i++;
            continue;
        }
        eol_next = i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !eol_next)) {
            tok[0] = (char)c;
            tl = 1;
        } else {
            tok[0] = '=';
            tok[1] = hex[c >> 4];
            tok[2] = hex[c & 0x0f];
            tl = 3;
        }
        /* room for the token and, unless the line ends after it, a '=' */
        if (col + tl > QP_LINE - 1 && !(eol_next && col + tl <= QP_LINE)) {
            out_puts(out, "=\r\n");
            col = 0;
        }
        out_put(out, tok, tl);
        col += tl;
    }
}

static void b64_lines(const char *s, size_t n, struct buf *out)
{
    struct buf enc = BUF_INIT;

    if (codec_b64_encode(s, n, &enc) < 0)
        die("relay: buffer");
    for (size_t i = 0; i < enc.len; i += B64_LINE) {
        out_put(out, enc.data + i, enc.len - i < B64_LINE ? enc.len - i : B64_LINE);
        out_puts(out, "\r\n");
    }
    buf_free(&enc);
}

static bool field_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);

    return n > k && strncasecmp(line, name, k) == 0 && line[k] == ':';
}

static bool valid_utf8(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        int r = sanitize_utf8_next(s + i, n - i, &cp);

        if (r <= 0)
            return false;
        i += (size_t)r;
    }
    return true;
}

/* Copy the header block hdr[0..n) to out without its
 * Content-Transfer-Encoding field(s), adding the fields in add (each ending
 * in CRLF) before the empty line, which is written even when hdr had none
 * (a part whose body is added). */
static void rewrite_header(const char *hdr, size_t n, const char *add, struct buf *out)
{
    size_t i = 0;
    bool skipping = false;

    while (i < n) {
        const char *line = hdr + i;
        const char *nl = memchr(line, '\n', n - i);
        size_t ll = nl ? (size_t)(nl - line) + 1 : n - i;

        if (ll == 1 || (ll == 2 && line[0] == '\r'))
            break;      /* the empty line */
        if (line[0] == ' ' || line[0] == '\t') {
            if (!skipping)
                out_put(out, line, ll);
        } else {
            skipping = field_is(line, ll, "Content-Transfer-Encoding");
            if (!skipping)
                out_put(out, line, ll);
        }
        if (!nl && !skipping)
            out_puts(out, "\r\n");    /* a last field without its line end */
        i += ll;
    }
    out_puts(out, add);
    out_puts(out, "\r\n");
}

static bool header_has(const char *hdr, size_t n, const char *name)
{
    size_t i = 0;

    while (i < n) {
        const char *line = hdr + i;
        const char *nl = memchr(line, '\n', n - i);
        size_t ll = nl ? (size_t)(nl - line) + 1 : n - i;

        if (field_is(line, ll, name))
            return true;
        i += ll;
    }
    return false;
}

static bool part_is(const struct msg_part *p, const char *type)
{
    return p->type != NULL && strcmp(p->type, type) == 0;
}

int relay_to_7bit(const char *msg, size_t len, struct buf *out, struct err *e)
{
    struct message *m = NULL;
    size_t pos = 0, start = out->len;
    bool root_mime;
    int rc = -1;

    if (message_parse(msg, len, NULL, &m, e) < 0)
        return -1;
    root_mime = header_has(msg, m->root->body_offset, "MIME-Version");
    for (size_t i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = m->parts[i];
        const char *body = msg + p->body_offset;
        bool composite = part_is(p, "multipart") || part_is(p, "message");
        struct buf add = BUF_INIT;

        if (p->header_offset < pos)
            continue;   /* inside a part already rewritten (cannot happen) */
        if (composite && p->n_children > 0) {
            /* Its children are converted; its label must say 7bit. */
            bool relabel = p->encoding == MSG_ENC_8BIT || p->encoding == MSG_ENC_BINARY;
            bool add_mv = p->parent == NULL && !root_mime;

            if (!relabel && !add_mv)
                continue;
            if (add_mv)
                out_puts(&add, "MIME-Version: 1.0\r\n");
            if (relabel)
                out_puts(&add, "Content-Transfer-Encoding: 7bit\r\n");
            out_put(out, msg + pos, p->header_offset - pos);
            rewrite_header(msg + p->header_offset, p->body_offset - p->header_offset,
                           buf_cstr(&add), out);
            buf_free(&add);
            pos = p->body_offset;
            continue;
        }
        if (!has_8bit(body, p->body_size))
            continue;
        if (composite) {
            err_set(e, ERR_UNSUPPORTED, "a %s/%s part with 8-bit content could not be "
                    "parsed for conversion", p->type, p->subtype ? p->subtype : "");
            goto out;
        }
        if (p->encoding == MSG_ENC_BASE64 || p->encoding == MSG_ENC_QP ||
            p->encoding == MSG_ENC_UNKNOWN) {
            err_set(e, ERR_UNSUPPORTED, "a part encoded as %s holds 8-bit bytes",
                    p->encoding_text ? p->encoding_text : "?");
            goto out;
        }
        if (p->parent == NULL && !root_mime) {
            out_puts(&add, "MIME-Version: 1.0\r\n");
            if (!header_has(msg, p->body_offset, "Content-Type"))
                out_puts(&add, valid_utf8(body, p->body_size)
                                   ? "Content-Type: text/plain; charset=utf-8\r\n"
                                   : "Content-Type: text/plain; charset=unknown-8bit\r\n");
        }
        out_puts(&add, part_is(p, "text") ? "Content-Transfer-Encoding: quoted-printable\r\n"
                                          : "Content-Transfer-Encoding: base64\r\n");
        out_put(out, msg + pos, p->header_offset - pos);
        rewrite_header(msg + p->header_offset, p->body_offset - p->header_offset,
                       buf_cstr(&add), out);
        buf_free(&add);
        if (part_is(p, "text"))
            qp_encode(body, p->body_size, out);
        else
            b64_lines(body, p->body_size, out);
        pos = p->body_offset + p->body_size;
    }
    out_put(out, msg + pos, len - pos);
    if (has_8bit(out->data + start, out->len - start)) {
        err_set(e, ERR_UNSUPPORTED, "8-bit bytes in a header or outside the MIME parts");
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        buf_truncate(out, start);   /* nothing half-converted is left */
    message_free(m);
    return rc;
}

/* ---- SMTP client -------------------------------------------------------- */

struct client {
    struct tls_conn *conn;
    const char *host;           /* the name connected to */
    struct buf reply;           /* last reply, lines joined by "\n" */
    int code;
    bool tls;
    bool tls_verified;          /* the peer's certificate was checked */
    const char *tls_note;       /* how TLS went, for the log */
    bool esmtp;
    bool starttls, eightbit, smtputf8, dsn, chunking, binarymime, size_ext;
    bool auth_plain, auth_login;
    size_t size_max;
};

/* "[HOST] CODE TEXT" for the last reply. */
static char *reply_text(const struct client *cl)
{
    return xasprintf("[%s] %s", cl->host, buf_cstr(&cl->reply));
}

static int read_reply(struct client *cl, struct err *e)
{
    struct buf line = BUF_INIT;
    int code = -1;

    buf_reset(&cl->reply);
    for (int n = 0;; n++) {
        const char *s;
        size_t l;
        int c;

        if (n >= REPLY_LINES_MAX) {
            err_set(e, ERR_PROTO, "%s: reply longer than %d lines", cl->host, REPLY_LINES_MAX);
            goto fail;
        }
        if (tls_conn_read_line(cl->conn, &line, REPLY_LINE_MAX, e) < 0) {
            err_prefix(e, "%s", cl->host);
            goto fail;
        }
        s = line.data;
        l = line.len;
        while (l > 0 && (s[l - 1] == '\n' || s[l - 1] == '\r'))
            l--;
        log_proto(LOGL_DEBUG, "S:", s, l);
        if (l < 3 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) ||
            !isdigit((unsigned char)s[2]) || (l > 3 && s[3] != ' ' && s[3] != '-') ||
            s[0] < '2' || s[0] > '5') {
            err_set(e, ERR_PROTO, "%s: malformed reply", cl->host);
            goto fail;
        }
        c = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        if (code >= 0 && c != code) {
            err_set(e, ERR_PROTO, "%s: reply codes differ between lines", cl->host);
            goto fail;
        }
        code = c;
        if (cl->reply.len > 0 && buf_putc(&cl->reply, '\n') < 0)
            die("relay: buffer");
        if (buf_append(&cl->reply, s, l) < 0)
            die("relay: buffer");
        if (l == 3 || s[3] == ' ')
            break;
    }
    buf_free(&line);
    cl->code = code;
    return code;
fail:
    buf_free(&line);
    cl->code = 0;
    if (e)
        e->temporary = true;
    return -1;
}

static int send_line(struct client *cl, bool secret, const char *line, struct err *e)
{
    struct buf b = BUF_INIT;
    int rc;

    if (secret)
        log_secret(LOGL_DEBUG, "C:");
    else
        log_proto(LOGL_DEBUG, "C:", line, strlen(line));
    if (buf_printf(&b, "%s\r\n", line) < 0)
        die("relay: buffer");
    rc = tls_conn_write(cl->conn, b.data, b.len, e);
    if (secret)
        memset(b.data, 0, b.len);
    buf_free(&b);
    if (rc < 0) {
        err_prefix(e, "%s", cl->host);
        if (e)
            e->temporary = true;
    }
    return rc;
}

/* Send a command, read the reply: its code, or -1 (connection failed). */
static int command(struct client *cl, bool secret, struct err *e, const char *fmt, ...)
    CORREO_PRINTF(4, 5);
static int command(struct client *cl, bool secret, struct err *e, const char *fmt, ...)
{
    va_list ap;
    char *line;
    int rc;

    va_start(ap, fmt);
    line = xvasprintf(fmt, ap);
    va_end(ap);
    rc = send_line(cl, secret, line, e);
    if (secret)
        memset(line, 0, strlen(line));
    free(line);
    if (rc < 0)
        return -1;
    return read_reply(cl, e);
}

static void parse_ehlo(struct client *cl)
{
    const char *p = buf_cstr(&cl->reply);
    const char *nl = strchr(p, '\n');

    cl->starttls = cl->eightbit = cl->smtputf8 = cl->dsn = false;
    cl->chunking = cl->binarymime = cl->size_ext = cl->auth_plain = cl->auth_login = false;
    cl->size_max = 0;
    while (nl) {
        const char *s = nl + 1 + 4;     /* after "250-" / "250 " */
        char kw[32];
        size_t k = 0;

        nl = strchr(nl + 1, '\n');
        if (s > (nl ? nl : p + strlen(p)))
            continue;
        while (s[k] && s[k] != '\n' && s[k] != ' ' && s[k] != '=' && k < sizeof(kw) - 1) {
            kw[k] = s[k];
            k++;
        }
        kw[k] = '\0';
        if (strcasecmp(kw, "STARTTLS") == 0) {
            cl->starttls = true;
        } else if (strcasecmp(kw, "8BITMIME") == 0) {
            cl->eightbit = true;
        } else if (strcasecmp(kw, "SMTPUTF8") == 0) {
            cl->smtputf8 = true;
        } else if (strcasecmp(kw, "DSN") == 0) {
            cl->dsn = true;
        } else if (strcasecmp(kw, "CHUNKING") == 0) {
            cl->chunking = true;
        } else if (strcasecmp(kw, "BINARYMIME") == 0) {
            cl->binarymime = true;
        } else if (strcasecmp(kw, "SIZE") == 0) {
            unsigned long long v = 0;

            cl->size_ext = true;
            for (const char *d = s + k + (s[k] == ' ' || s[k] == '=' ? 1 : 0);
                 isdigit((unsigned char)*d); d++) {
                if (v < (unsigned long long)SIZE_MAX / 10)
                    v = v * 10 + (unsigned long long)(*d - '0');
            }
            cl->size_max = (size_t)v;
        } else if (strcasecmp(kw, "AUTH") == 0) {
            const char *end = nl ? nl : s + strlen(s);

            for (const char *m = s + k; m < end;) {
                size_t ml;

                while (m < end && (*m == ' ' || *m == '='))
                    m++;
                ml = 0;
                while (m + ml < end && m[ml] != ' ')
                    ml++;
                if (ml == 5 && strncasecmp(m, "PLAIN", 5) == 0)
                    cl->auth_plain = true;
                else if (ml == 5 && strncasecmp(m, "LOGIN", 5) == 0)
                    cl->auth_login = true;
                m += ml;
            }
        }
    }
}

static int ehlo(struct client *cl, const char *name, struct err *e)
{
    int code = command(cl, false, e, "EHLO %s", name);

    if (code < 0)
        return -1;
    if (code == 250) {
        cl->esmtp = true;
        parse_ehlo(cl);
        return 0;
    }
    code = command(cl, false, e, "HELO %s", name);
    if (code < 0)
        return -1;
    if (code != 250) {
        char *r = reply_text(cl);

        err_set(e, ERR_PROTO, "%s", r);
        e->temporary = code / 100 == 4;
        free(r);
        return -1;
    }
    cl->esmtp = false;
    parse_ehlo(cl);     /* clears everything */
    return 0;
}

static void client_close(struct client *cl, bool quit)
{
    if (cl->conn) {
        if (quit) {
            tls_conn_set_timeout(cl->conn, 5000);
            (void)command(cl, false, NULL, "QUIT");
        }
        tls_conn_close(cl->conn);
        cl->conn = NULL;
    }
    buf_free(&cl->reply);
}

static bool peer_loopback(const struct client *cl)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    if (getpeername(tls_conn_fd(cl->conn), (struct sockaddr *)&ss, &sl) < 0)
        return false;
    if (ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss.ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;

        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* ---- smarthost credentials ---------------------------------------------- */

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

/* Run smarthost_pass_cmd (no shell) and take the first line of its output. */
static int run_pass_cmd(const char *cmdline, int timeout_ms, char **out, struct err *e)
{
    struct words w;
    struct rc_loader l;
    struct rc_diag d;
    struct buf b = BUF_INIT;
    int fds[2], status, rc = -1;
    pid_t pid;
    long long waited = 0;

    memset(&w, 0, sizeof(w));
    rc_diag_init(&d);
    rc_loader_init(&l, collect_words, &w, &d);
    l.no_source = true;
    l.no_env = true;
    rcfile_load_string(&l, "smarthost_pass_cmd", cmdline, strlen(cmdline));
    if (d.n > 0 || w.n == 0 || w.commands != 1) {
        rc_diag_free(&d);
        strv_free(w.v, w.n);
        return err_set(e, ERR_INVAL, "smarthost_pass_cmd: not one command");
    }
    rc_diag_free(&d);
    if (pipe2(fds, O_CLOEXEC) < 0) {
        strv_free(w.v, w.n);
        return err_sys(e, "smarthost_pass_cmd: pipe");
    }
    pid = fork();
    if (pid < 0) {
        err_sys(e, "smarthost_pass_cmd: fork");
        close(fds[0]);
        close(fds[1]);
        strv_free(w.v, w.n);
        return -1;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);

        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(fds[1], 1);
        execvp(w.v[0], w.v);
        _exit(127);
    }
    close(fds[1]);
    b.max = SECRET_MAX;
    for (;;) {
        struct pollfd pfd = { fds[0], POLLIN, 0 };
        char chunk[512];
        ssize_t r;
        int pr = poll(&pfd, 1, 100);

        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0) {
            waited += 100;
            if (waited > timeout_ms) {
                kill(pid, SIGKILL);
                err_set(e, ERR_NET, "smarthost_pass_cmd: timed out");
                goto reap;
            }
            continue;
        }
        r = read(fds[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (buf_append(&b, chunk, (size_t)r) < 0) {
            kill(pid, SIGKILL);
            err_set(e, ERR_LIMIT, "smarthost_pass_cmd: output too long");
            goto reap;
        }
    }
    rc = 0;
reap:
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        rc = err_set(e, ERR_INVAL, "smarthost_pass_cmd failed");
    if (rc == 0) {
        size_t l2 = strcspn(buf_cstr(&b), "\r\n");

        *out = xstrndup(buf_cstr(&b), l2);
    }
    if (b.data)
        memset(b.data, 0, b.len);
    buf_free(&b);
    strv_free(w.v, w.n);
    return rc;
}

static int smarthost_secret(struct pass *p, const char **out, struct err *e)
{
    if (p->smarthost_secret == NULL) {
        if (p->c->smarthost_pass) {
            p->smarthost_secret = xstrdup(p->c->smarthost_pass);
        } else if (p->c->smarthost_pass_cmd) {
            if (run_pass_cmd(p->c->smarthost_pass_cmd, p->timeout_ms, &p->smarthost_secret,
                             e) < 0)
                return -1;
        } else {
            return err_set(e, ERR_INVAL, "smarthost_user without a password");
        }
    }
    *out = p->smarthost_secret;
    return 0;
}

static int auth(struct pass *p, struct client *cl, struct err *e)
{
    const char *user = p->c->smarthost_user, *secret = "";
    struct buf raw = BUF_INIT, enc = BUF_INIT;
    int code;

    if (!cl->tls_verified && !peer_loopback(cl))
        return err_set(e, ERR_TLS, "%s: not sending credentials without verified TLS",
                       cl->host);
    if (!cl->auth_plain && !cl->auth_login)
        return err_set(e, ERR_UNSUPPORTED, "%s: offers neither AUTH PLAIN nor LOGIN",
                       cl->host);
    if (smarthost_secret(p, &secret, e) < 0)
        return -1;
    if (cl->auth_plain) {
        if (buf_putc(&raw, '\0') < 0 || buf_puts(&raw, user) < 0 || buf_putc(&raw, '\0') < 0 ||
            buf_puts(&raw, secret) < 0 || codec_b64_encode(raw.data, raw.len, &enc) < 0)
            die("relay: buffer");
        code = command(cl, true, e, "AUTH PLAIN %s", buf_cstr(&enc));
    } else {
        code = command(cl, false, e, "AUTH LOGIN");
        if (code == 334) {
            if (codec_b64_encode(user, strlen(user), &enc) < 0)
                die("relay: buffer");
            code = command(cl, true, e, "%s", buf_cstr(&enc));
        }
        if (code == 334) {
            if (enc.data)
                memset(enc.data, 0, enc.len);
            buf_reset(&enc);
            if (codec_b64_encode(secret, strlen(secret), &enc) < 0)
                die("relay: buffer");
            code = command(cl, true, e, "%s", buf_cstr(&enc));
        }
    }
    if (raw.data)
        memset(raw.data, 0, raw.len);
    if (enc.data)
        memset(enc.data, 0, enc.len);
    buf_free(&raw);
    buf_free(&enc);
    if (code < 0)
        return -1;
    if (code != 235) {
        char *r = reply_text(cl);

        err_set(e, ERR_PROTO, "authentication failed: %s", r);
        free(r);
        e->temporary = true;
        return -1;
    }
    return 0;
}

/* ---- one connection ----------------------------------------------------- */

/* Open a session to h: connect, greeting, EHLO, TLS per mode, AUTH.
 * Returns 0, or -1 with *e (e->temporary false for a permanent refusal);
 * *tls_failed tells that STARTTLS was tried and failed.  In opportunistic
 * mode a route or MX host gets STARTTLS without verification; the
 * smarthost, which gets credentials, is always verified. */
static int session_open(struct pass *p, struct client *cl, const struct host *h,
                        enum conf_tls_mode mode, bool smarthost, bool *tls_failed,
                        struct err *e)
{
    struct tls_client *tc;
    bool verify = true;
    int code;

    memset(cl, 0, sizeof(*cl));
    cl->host = h->name;
    cl->tls_note = "plain text";
    *tls_failed = false;
    if (!smarthost && mode == CONF_TLS_OPPORTUNISTIC) {
        if (p->tls_opportunistic == NULL) {
            struct tls_client_opts o;

            memset(&o, 0, sizeof(o));
            o.no_verify = true;
            if (tls_client_new(&p->tls_opportunistic, &o, e) < 0)
                return -1;
        }
        tc = p->tls_opportunistic;
        verify = false;
    } else if (smarthost) {
        if (p->tls_smarthost == NULL) {
            struct tls_client_opts o;

            memset(&o, 0, sizeof(o));
            o.ca_file = p->c->smarthost_ca_file;
            o.pin = p->c->smarthost_fingerprint;
            if (tls_client_new(&p->tls_smarthost, &o, e) < 0)
                return -1;
        }
        tc = p->tls_smarthost;
    } else {
        if (p->tls_default == NULL && tls_client_new(&p->tls_default, NULL, e) < 0)
            return -1;
        tc = p->tls_default;
    }
    if (tls_conn_connect(&cl->conn, h->name, h->port,
                         p->timeout_ms < CONNECT_TIMEOUT_MS ? p->timeout_ms : CONNECT_TIMEOUT_MS,
                         e) < 0) {
        err_prefix(e, "%s port %u", h->name, h->port);
        e->temporary = true;
        return -1;
    }
    tls_conn_set_timeout(cl->conn, p->timeout_ms);
    if (mode == CONF_TLS_IMPLICIT) {
        if (tls_conn_start_tls(cl->conn, tc, h->name, e) < 0) {
            err_prefix(e, "%s", h->name);
            e->temporary = true;
            goto fail;
        }
        cl->tls = true;
        cl->tls_verified = true;
        cl->tls_note = "TLS, verified";
    }
    code = read_reply(cl, e);
    if (code < 0)
        goto fail;
    if (code != 220) {
        char *r = reply_text(cl);

        err_set(e, ERR_PROTO, "%s", r);
        free(r);
        e->temporary = true;    /* another host, or later, may take it */
        goto fail_quit;
    }
    if (ehlo(cl, p->c->hostname, e) < 0)
        goto fail_quit;
    if (mode == CONF_TLS_OPPORTUNISTIC && !cl->starttls)
        cl->tls_note = "plain text: STARTTLS not offered";
    if (mode == CONF_TLS_STARTTLS || (mode == CONF_TLS_OPPORTUNISTIC && cl->starttls)) {
        if (!cl->starttls) {
            err_set(e, ERR_TLS, "%s: STARTTLS is required but not offered", h->name);
            e->temporary = true;
            goto fail_quit;
        }
        code = command(cl, false, e, "STARTTLS");
        if (code < 0)
            goto fail;
        if (code != 220) {
            char *r = reply_text(cl);

            err_set(e, ERR_TLS, "STARTTLS refused: %s", r);
            free(r);
            e->temporary = true;
            *tls_failed = true;
            goto fail_quit;
        }
        if (tls_conn_start_tls(cl->conn, tc, h->name, e) < 0) {
            err_prefix(e, "%s", h->name);
            e->temporary = true;
            *tls_failed = true;
            goto fail;
        }
        cl->tls = true;
        cl->tls_verified = verify;
        cl->tls_note = verify ? "TLS, verified" : "TLS, certificate not verified";
        if (ehlo(cl, p->c->hostname, e) < 0)
            goto fail_quit;
    }
    if (smarthost && p->c->smarthost_user && auth(p, cl, e) < 0) {
        e->temporary = true;
        goto fail_quit;
    }
    return 0;
fail_quit:
    client_close(cl, true);
    return -1;
fail:
    client_close(cl, false);
    return -1;
}

static void xtext(struct buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int r = (*p >= 0x21 && *p <= 0x7e && *p != '+' && *p != '=')
                    ? buf_putc(b, (char)*p) : buf_printf(b, "+%02X", *p);

        if (r < 0)
            die("relay: buffer");
    }
}

static int send_all(struct client *cl, const char *p, size_t n, struct err *e)
{
    if (tls_conn_write(cl->conn, p, n, e) < 0) {
        err_prefix(e, "%s", cl->host);
        e->temporary = true;
        return -1;
    }
    return 0;
}

/* The message, dot-stuffed, then "." CRLF. */
static int send_data(struct client *cl, const char *hdr, size_t hlen, const char *data,
                     size_t len, struct err *e)
{
    struct buf out = BUF_INIT;
    bool bol = true;
    const char *parts[2] = { hdr, data };
    size_t lens[2] = { hlen, len };
    char last = '\n';

    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < lens[k]; i++) {
            char ch = parts[k][i];

            if (bol && ch == '.' && buf_putc(&out, '.') < 0)
                die("relay: buffer");
            if (buf_putc(&out, ch) < 0)
                die("relay: buffer");
            bol = ch == '\n';
            last = ch;
            if (out.len >= SEND_CHUNK) {
                if (send_all(cl, out.data, out.len, e) < 0)
                    goto fail;
                buf_reset(&out);
            }
        }
    }
    if (last != '\n' && buf_puts(&out, "\r\n") < 0)
        die("relay: buffer");
    if (buf_puts(&out, ".\r\n") < 0)
        die("relay: buffer");
    if (send_all(cl, out.data, out.len, e) < 0)
        goto fail;
    buf_free(&out);
    return 0;
fail:
    buf_free(&out);
    return -1;
}

/* The DKIM signer, made on first use; NULL when none is configured or it
 * cannot be made (then mail goes out unsigned). */
static struct dkim_signer *signer(struct pass *p)
{
    struct err e;

    if (!p->c->dkim_domain || !p->c->dkim_selector || !p->c->dkim_key)
        return NULL;
    if (!p->dkim_tried) {
        p->dkim_tried = true;
        if (dkim_signer_new(p->c->dkim_domain, p->c->dkim_selector, p->c->dkim_key, &p->dkim,
                            &e) < 0) {
            log_error("DKIM: %s; sending unsigned", e.text);
            p->dkim = NULL;
        }
    }
    return p->dkim;
}

/* Sign data into hdr (left empty when unsigned). */
static void sign_into(struct work *w, const char *data, size_t len, struct buf *hdr)
{
    struct dkim_signer *s = signer(w->p);
    struct err e;

    if (s && dkim_sign(s, data, len, w->p->now, hdr, &e) < 0) {
        log_error("queue %s: DKIM signing failed: %s; sending unsigned", w->q->id, e.text);
        buf_reset(hdr);
    }
}

static void sign_once(struct work *w)
{
    if (w->signed_done)
        return;
    w->signed_done = true;
    sign_into(w, w->data, w->len, &w->signed_hdr);
}

/* The 7-bit version of the message, made (and signed) once per entry. */
static int convert_once(struct work *w)
{
    struct err e;

    if (w->conv_rc <= 0)
        return w->conv_rc;
    if (relay_to_7bit(w->data, w->len, &w->conv, &e) < 0) {
        w->conv_rc = -1;
        w->conv_why = xstrdup(e.text);
        log_warn("queue %s: cannot convert to 7-bit: %s", w->q->id, e.text);
        return -1;
    }
    w->conv_rc = 0;
    log_info("queue %s: converted to 7-bit (%zu -> %zu bytes)", w->q->id, w->len, w->conv.len);
    /* the signature covers what is sent */
    sign_into(w, w->conv.data, w->conv.len, &w->conv_signed_hdr);
    return 0;
}

static void rcpt_params(struct buf *b, const struct queue_rcpt *r)
{
    unsigned nt = r->notify;

    if (nt != SMTP_NOTIFY_DEFAULT) {
        bool first = true;

        if (buf_puts(b, " NOTIFY=") < 0)
            die("relay: buffer");
        if (nt & SMTP_NOTIFY_NEVER) {
            if (buf_puts(b, "NEVER") < 0)
                die("relay: buffer");
        } else {
            static const struct { unsigned bit; const char *name; } names[] = {
                { SMTP_NOTIFY_SUCCESS, "SUCCESS" }, { SMTP_NOTIFY_FAILURE, "FAILURE" },
                { SMTP_NOTIFY_DELAY, "DELAY" },
            };

            for (size_t i = 0; i < ARRAY_LEN(names); i++) {
                if (!(nt & names[i].bit))
                    continue;
                if ((!first && buf_putc(b, ',') < 0) || buf_puts(b, names[i].name) < 0)
                    die("relay: buffer");
                first = false;
            }
        }
    }
    if (r->orcpt) {
        const char *semi = strchr(r->orcpt, ';');

        if (semi && semi > r->orcpt) {
            if (buf_puts(b, " ORCPT=") < 0 || buf_append(b, r->orcpt, (size_t)(semi - r->orcpt)) < 0 ||
                buf_putc(b, ';') < 0)
                die("relay: buffer");
            xtext(b, semi + 1);
        }
    }
}

/* Everything in idx[] gets o with text. */
static void outcome_all(struct work *w, const size_t *idx, size_t n, enum outcome o,
                        const char *text)
{
    for (size_t i = 0; i < n; i++)
        outcome(w, idx[i], o, text);
}

static enum outcome class_of(int code)
{
    return code / 100 == 2 ? OUT_OK : code / 100 == 4 ? OUT_TEMP : OUT_PERM;
}

/* One transaction for the recipients idx[] on an open session.  Every
 * recipient in idx[] gets an outcome. */
static void transaction(struct work *w, struct client *cl, const size_t *idx, size_t n)
{
    struct queue_entry *q = w->q;
    struct buf params = BUF_INIT, line = BUF_INIT;
    size_t *acc = XNEWARRAY(size_t, n);
    size_t n_acc = 0;
    bool need_utf8 = !ascii_only(q->mail_from);
    bool bdat = q->body == SMTP_BODY_BINARYMIME;
    const char *data = w->data;
    size_t len = w->len;
    const struct buf *hdr = &w->signed_hdr;
    bool body8;
    size_t total;
    struct err e;
    char *r;
    int code;

    if (w->has8 < 0)
        w->has8 = has_8bit(w->data, w->len);
    body8 = q->body == SMTP_BODY_8BITMIME || w->has8;
    if (w->has8 && !bdat && !cl->eightbit) {
        /* RFC 6152: no 8-bit data to a server without 8BITMIME */
        if (convert_once(w) < 0) {
            r = xasprintf("5.6.3 conversion to 7-bit required but not possible "
                          "(%s does not announce 8BITMIME): %s", cl->host, w->conv_why);
            outcome_all(w, idx, n, OUT_PERM, r);
            free(r);
            goto out;
        }
        data = w->conv.data;
        len = w->conv.len;
        hdr = &w->conv_signed_hdr;
        body8 = false;
    } else {
        sign_once(w);
    }
    total = hdr->len + len;
    for (size_t i = 0; i < n; i++)
        need_utf8 = need_utf8 || !ascii_only(q->rcpts[idx[i]].addr);
    if (need_utf8 && !cl->smtputf8) {
        r = xasprintf("[%s] does not support SMTPUTF8 (553 5.6.7 non-ASCII address)",
                      cl->host);
        outcome_all(w, idx, n, OUT_PERM, r);
        free(r);
        goto out;
    }
    if (bdat && !(cl->chunking && cl->binarymime)) {
        r = xasprintf("5.6.3 conversion required but not supported (%s does not announce "
                      "BINARYMIME)", cl->host);
        outcome_all(w, idx, n, OUT_PERM, r);
        free(r);
        goto out;
    }
    if (cl->size_ext && cl->size_max > 0 && total > cl->size_max) {
        r = xasprintf("[%s] accepts at most %zu bytes; the message has %zu "
                      "(552 5.3.4 message too big)", cl->host, cl->size_max, total);
        outcome_all(w, idx, n, OUT_PERM, r);
        free(r);
        goto out;
    }
    if (cl->size_ext && buf_printf(&params, " SIZE=%zu", total) < 0)
        die("relay: buffer");
    if (body8 && !bdat && cl->eightbit && buf_puts(&params, " BODY=8BITMIME") < 0)
        die("relay: buffer");
    if (bdat && buf_puts(&params, " BODY=BINARYMIME") < 0)
        die("relay: buffer");
    if (q->smtputf8 && cl->smtputf8 && buf_puts(&params, " SMTPUTF8") < 0)
        die("relay: buffer");
    if (cl->dsn) {
        if (q->ret == SMTP_RET_FULL && buf_puts(&params, " RET=FULL") < 0)
            die("relay: buffer");
        if (q->ret == SMTP_RET_HDRS && buf_puts(&params, " RET=HDRS") < 0)
            die("relay: buffer");
        if (q->envid) {
            if (buf_puts(&params, " ENVID=") < 0)
                die("relay: buffer");
            xtext(&params, q->envid);
        }
    }
    code = command(cl, false, &e, "MAIL FROM:<%s>%s", q->mail_from, buf_cstr(&params));
    if (code < 0)
        goto net_fail;
    r = reply_text(cl);
    log_info("queue %s: %s: MAIL FROM <%s>: %s", q->id, cl->host, q->mail_from,
             buf_cstr(&cl->reply));
    if (code / 100 != 2) {
        outcome_all(w, idx, n, class_of(code), r);
        free(r);
        goto rset;
    }
    free(r);
    for (size_t i = 0; i < n; i++) {
        const struct queue_rcpt *qr = &q->rcpts[idx[i]];

        buf_reset(&line);
        if (cl->dsn)
            rcpt_params(&line, qr);
        code = command(cl, false, &e, "RCPT TO:<%s>%s", qr->addr, buf_cstr(&line));
        if (code < 0)
            goto net_fail;
        log_info("queue %s: %s: RCPT TO <%s>: %s", q->id, cl->host, qr->addr,
                 buf_cstr(&cl->reply));
        if (code / 100 == 2) {
            acc[n_acc++] = idx[i];
        } else {
            r = reply_text(cl);
            outcome(w, idx[i], class_of(code), r);
            free(r);
        }
    }
    if (n_acc == 0)
        goto rset;

    if (bdat) {
        /* BDAT has no go-ahead: the data follows the command at once */
        char *cmd = xasprintf("BDAT %zu LAST", total);
        int rc = send_line(cl, false, cmd, &e);

        free(cmd);
        if (rc < 0 || send_all(cl, hdr->data ? hdr->data : "", hdr->len, &e) < 0 ||
            send_all(cl, data, len, &e) < 0)
            goto net_fail;
    } else {
        code = command(cl, false, &e, "DATA");
        if (code < 0)
            goto net_fail;
        if (code != 354) {
            r = reply_text(cl);
            outcome_all(w, acc, n_acc, code / 100 == 5 ? OUT_PERM : OUT_TEMP, r);
            free(r);
            goto rset;
        }
        log_debug("C: <message, %zu bytes>", total);
        if (send_data(cl, hdr->data, hdr->len, data, len, &e) < 0)
            goto net_fail;
    }
    tls_conn_set_timeout(cl->conn, w->p->timeout_ms < 600000 ? 600000 : w->p->timeout_ms);
    code = read_reply(cl, &e);
    tls_conn_set_timeout(cl->conn, w->p->timeout_ms);
    if (code < 0) {
        /* The server may or may not have taken the message: retried (at
         * worst a duplicate, RFC 5321 6.1). */
        char *t = xasprintf("%s (after the data was sent: the server may have the "
                            "message)", e.text);

        outcome_all(w, acc, n_acc, OUT_TEMP, t);
        free(t);
        save_state(w);
        client_close(cl, false);
        goto out;
    }
    r = reply_text(cl);
    log_info("queue %s: %s: end of data: %s", q->id, cl->host, buf_cstr(&cl->reply));
    outcome_all(w, acc, n_acc, class_of(code), r);
    free(r);
    if (code / 100 == 2 && !cl->dsn) {
        /* A server without DSN takes over: ours is the last report. */
        for (size_t i = 0; i < n_acc; i++) {
            if (wants(q->rcpts[acc[i]].notify, SMTP_NOTIFY_SUCCESS))
                w->report[acc[i]] = DSN_RELAYED;
        }
    }
    /* Record the outcome now.  The window between the server's reply and
     * this rename is SMTP's own: a crash inside it makes the next attempt
     * send again what the server already took, and no client can close it
     * (RFC 5321 6.1 accepts duplicates over losses). */
    save_state(w);
    goto out;

net_fail:
    {
        /* every recipient without an outcome yet is retried */
        for (size_t i = 0; i < n; i++) {
            if (w->out[idx[i]] == OUT_NONE)
                outcome(w, idx[i], OUT_TEMP, e.text);
        }
        log_warn("queue %s: %s", q->id, e.text);
        client_close(cl, false);
        goto out;
    }
rset:
    if (command(cl, false, &e, "RSET") < 0)
        client_close(cl, false);
out:
    buf_free(&params);
    buf_free(&line);
    free(acc);
}

/* Send the recipients idx[] (one destination) by SMTP. */
static void deliver_remote(struct work *w, const struct dest *d, size_t *idx, size_t n)
{
    struct pass *p = w->p;
    const struct conf *c = p->c;
    struct host *hosts = NULL;
    size_t n_hosts = 0;
    enum conf_tls_mode mode;
    bool smarthost = d->kind == DEST_SMARTHOST;
    struct err e;
    char *last = NULL;
    bool done = false;

    err_clear(&e);
    if (d->kind == DEST_ROUTE) {
        hosts = XNEW(struct host);
        hosts->name = xstrdup(d->route->host);
        hosts->port = d->route->port;
        n_hosts = 1;
        mode = d->route->tls;
    } else if (smarthost) {
        hosts = XNEW(struct host);
        hosts->name = xstrdup(c->smarthost);
        hosts->port = c->smarthost_port;
        n_hosts = 1;
        mode = c->smarthost_tls;
    } else {
        mode = CONF_TLS_OPPORTUNISTIC;
        if (mx_hosts(d->domain, &hosts, &n_hosts, &e) < 0) {
            log_warn("queue %s: %s", w->q->id, e.text);
            outcome_all(w, idx, n, e.temporary ? OUT_TEMP : OUT_PERM, e.text);
            return;
        }
    }
    for (size_t h = 0; h < n_hosts && !done; h++) {
        struct client cl;
        bool tls_failed;
        int r = session_open(p, &cl, &hosts[h], mode, smarthost, &tls_failed, &e);

        if (r < 0 && tls_failed && mode == CONF_TLS_OPPORTUNISTIC) {
            log_warn("queue %s: %s; trying again without TLS", w->q->id, e.text);
            r = session_open(p, &cl, &hosts[h], CONF_TLS_NONE, smarthost, &tls_failed, &e);
            if (r == 0)
                cl.tls_note = "plain text after a failed TLS handshake";
        }
        if (r < 0) {
            log_warn("queue %s: %s", w->q->id, e.text);
            free(last);
            last = xstrdup(e.text);
            continue;
        }
        log_info("queue %s: connected to %s port %u (%s)", w->q->id, hosts[h].name,
                 hosts[h].port, cl.tls_note);
        transaction(w, &cl, idx, n);
        if (cl.conn)
            client_close(&cl, true);
        done = true;
    }
    if (!done)
        outcome_all(w, idx, n, OUT_TEMP, last ? last : "no host to deliver to");
    free(last);
    hosts_free(hosts, n_hosts);
}

/* ---- an entry ----------------------------------------------------------- */

static int send_dsn(struct work *w, const size_t *which, size_t n, enum dsn_kind kind)
{
    struct buf msg = BUF_INIT;
    struct err e;
    int rc;

    if (n == 0 || w->q->mail_from[0] == '\0')
        return 0;
    if (dsn_build(&msg, w->p->c->hostname, w->q, which, n, kind, w->data, w->len, w->p->now,
                  &e) < 0) {
        log_error("queue %s: cannot build the report: %s", w->q->id, e.text);
        buf_free(&msg);
        return 0;   /* nothing to retry: the report would fail again */
    }
    rc = hand_over(w->p, "", w->q->mail_from, SMTP_NOTIFY_NEVER, msg.data, msg.len, &e);
    if (rc < 0)
        log_error("queue %s: cannot send the report to <%s>: %s", w->q->id, w->q->mail_from,
                  e.text);
    else
        log_info("queue %s: %s report for %zu recipient(s) sent to <%s>", w->q->id,
                 kind == DSN_FAILED ? "failure" : kind == DSN_DELAYED ? "delay"
                 : kind == DSN_RELAYED ? "relay" : "success", n,
                 w->q->mail_from);
    buf_free(&msg);
    return rc;
}

static unsigned backoff(const struct conf *c, unsigned attempts)
{
    unsigned long long d = c->retry_min ? c->retry_min : 1;

    for (unsigned i = 0; i < attempts && d < c->retry_max; i++)
        d *= 2;
    return d > c->retry_max ? c->retry_max : (unsigned)d;
}

static int load_data(struct work *w, struct err *e)
{
    size_t len, got = 0;
    char *p;
    int fd;

    if (queue_open_data(w->p->c->queue_dir, w->q->id, &fd, &len, e) < 0)
        return -1;
    p = xmalloc(len + 2);
    /* one byte more than recorded: a longer file is noticed */
    while (got < len + 1) {
        ssize_t n = read(fd, p + got, len + 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (got != len) {
        free(p);
        return err_set(e, ERR_IO, "queue %s: cannot read the message", w->q->id);
    }
    p[len] = '\0';
    w->len = len;
    w->data = p;
    return 0;
}

static void process_entry(struct pass *p, struct queue_entry *q)
{
    const struct conf *c = p->c;
    struct work w;
    struct dest *dests;
    size_t n = q->n_rcpts, n_pending = 0, n_fail = 0, n_delay = 0;
    size_t *idx, *fail, *delay;
    bool *done_grp;
    struct err e;

    memset(&w, 0, sizeof(w));
    w.p = p;
    w.q = q;
    if (load_data(&w, &e) < 0) {
        log_error("%s", e.text);
        return;
    }
    w.out = xcalloc(n, sizeof(*w.out));
    w.report = XNEWARRAY(int, n + 1);
    for (size_t i = 0; i < n; i++)
        w.report[i] = -1;
    w.has8 = -1;
    w.conv_rc = 1;
    dests = xcalloc(n, sizeof(*dests));
    idx = XNEWARRAY(size_t, n);
    fail = XNEWARRAY(size_t, n);
    delay = XNEWARRAY(size_t, n);
    done_grp = xcalloc(n, sizeof(*done_grp));
    q->attempts++;      /* counted now; recorded with the state */

    /* local retries first, then local addresses, then remote groups */
    for (size_t i = 0; i < n; i++) {
        if (q->rcpts[i].state != QRCPT_PENDING)
            continue;
        if (q->rcpts[i].local_maildir) {
            deliver_local_retry(&w, i);
            done_grp[i] = true;
            continue;
        }
        dest_for(c, q->rcpts[i].addr, &dests[i]);
        if (dests[i].kind == DEST_LOCAL) {
            deliver_local_addr(&w, i);
            done_grp[i] = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;

        if (q->rcpts[i].state != QRCPT_PENDING || done_grp[i])
            continue;
        for (size_t j = i; j < n; j++) {
            if (q->rcpts[j].state == QRCPT_PENDING && !done_grp[j] &&
                dest_same(&dests[i], &dests[j])) {
                idx[k++] = j;
                done_grp[j] = true;
            }
        }
        deliver_remote(&w, &dests[i], idx, k);
    }

    /* failures: report first, record after (a crash repeats a report
     * rather than losing it) */
    for (size_t i = 0; i < n; i++) {
        struct queue_rcpt *r = &q->rcpts[i];
        bool expired = c->queue_lifetime > 0 && p->now - q->created > (time_t)c->queue_lifetime;

        if (r->state != QRCPT_PENDING)
            continue;
        if (w.out[i] == OUT_PERM || expired) {
            if (w.out[i] != OUT_PERM) {
                char *t = xasprintf("%s (gave up: in the queue longer than %u days)",
                                    r->last_reply ? r->last_reply : "not delivered",
                                    c->queue_lifetime / 86400);

                set_reply(r, t);
                free(t);
            }
            w.out[i] = OUT_PERM;
            if (wants(r->notify, SMTP_NOTIFY_FAILURE))
                fail[n_fail++] = i;
        } else if (wants(r->notify, SMTP_NOTIFY_DELAY)) {
            delay[n_delay++] = i;
        }
    }
    if (n_fail > 0 && send_dsn(&w, fail, n_fail, DSN_FAILED) < 0) {
        /* keep them pending: the report is tried again with them */
        for (size_t k = 0; k < n_fail; k++)
            w.out[fail[k]] = OUT_TEMP;
    }
    for (size_t i = 0; i < n; i++) {
        if (q->rcpts[i].state == QRCPT_PENDING && w.out[i] == OUT_PERM) {
            q->rcpts[i].state = QRCPT_FAILED;
            log_info("queue %s: <%s> failed: %s", q->id, q->rcpts[i].addr,
                     q->rcpts[i].last_reply ? q->rcpts[i].last_reply : "");
        }
    }
    if (!q->delay_notified && c->queue_lifetime > DELAY_NOTICE_AFTER &&
        p->now - q->created >= DELAY_NOTICE_AFTER) {
        size_t m = 0;

        for (size_t k = 0; k < n_delay; k++) {
            if (q->rcpts[delay[k]].state == QRCPT_PENDING)
                delay[m++] = delay[k];
        }
        if (send_dsn(&w, delay, m, DSN_DELAYED) == 0)
            q->delay_notified = true;
    }
    /* success reports: the deliveries are recorded already */
    {
        static const enum dsn_kind kinds[] = { DSN_DELIVERED, DSN_RELAYED };

        for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
            size_t m = 0;

            for (size_t i = 0; i < n; i++) {
                if (w.report[i] == (int)kinds[k] && q->rcpts[i].state == QRCPT_DELIVERED)
                    fail[m++] = i;
            }
            send_dsn(&w, fail, m, kinds[k]);
        }
    }
    for (size_t i = 0; i < n; i++)
        n_pending += q->rcpts[i].state == QRCPT_PENDING;
    if (n_pending == 0) {
        if (queue_remove(c->queue_dir, q->id, &e) < 0)
            log_error("queue %s: cannot remove: %s", q->id, e.text);
        else
            log_info("queue %s: done, removed", q->id);
    } else {
        q->next_attempt = p->now + (time_t)backoff(c, q->attempts - 1);
        save_state(&w);
        if (q->next_attempt < p->next_due)
            p->next_due = q->next_attempt;
        log_info("queue %s: %zu recipient(s) pending, next attempt in %lld s", q->id,
                 n_pending, (long long)(q->next_attempt - p->now));
    }

    for (size_t i = 0; i < n; i++)
        free(dests[i].domain);
    free(dests);
    free(idx);
    free(fail);
    free(delay);
    free(done_grp);
    free(w.out);
    free(w.report);
    free(w.data);
    free(w.conv_why);
    buf_free(&w.signed_hdr);
    buf_free(&w.conv);
    buf_free(&w.conv_signed_hdr);
}

/* ---- passes ------------------------------------------------------------- */

static void pass_free(struct pass *p)
{
    users_free(p->users);
    dkim_signer_free(p->dkim);
    tls_client_free(p->tls_default);
    tls_client_free(p->tls_opportunistic);
    tls_client_free(p->tls_smarthost);
    if (p->smarthost_secret) {
        memset(p->smarthost_secret, 0, strlen(p->smarthost_secret));
        free(p->smarthost_secret);
    }
}

/* One pass under the lock.  *next_due gets the earliest retry time. */
static int pass_run(const struct conf *c, bool force, volatile sig_atomic_t *stop,
                    time_t *next_due, struct err *e)
{
    struct pass p;
    char **ids = NULL;
    size_t n = 0;
    int lock_fd;

    memset(&p, 0, sizeof(p));
    p.c = c;
    p.stop = stop;
    p.now = time(NULL);
    p.next_due = p.now + POLL_SECONDS;
    p.timeout_ms = c->timeout_command > 0 && c->timeout_command < INT_MAX / 1000
                       ? (int)c->timeout_command * 1000 : 300000;
    if (queue_init(c->queue_dir, e) < 0)
        return -1;
    if (queue_lock(c->queue_dir, &lock_fd, e) < 0)
        return -1;
    if (queue_list(c->queue_dir, &ids, &n, e) < 0) {
        close(lock_fd);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct queue_entry *q;
        struct err le;

        if (stop && *stop)
            break;
        if (queue_load(c->queue_dir, ids[i], &q, &le) < 0) {
            if (le.code != ERR_NOTFOUND)
                log_error("%s", le.text);
            continue;
        }
        p.now = time(NULL);
        if (!force && q->next_attempt > p.now) {
            if (q->next_attempt < p.next_due)
                p.next_due = q->next_attempt;
        } else {
            process_entry(&p, q);
        }
        queue_entry_free(q);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    pass_free(&p);
    close(lock_fd);
    if (next_due)
        *next_due = p.next_due;
    return 0;
}

int relay_pass(const struct conf *c, bool force, struct err *e)
{
    return pass_run(c, force, NULL, NULL, e);
}

static bool msg_dir_changed(const struct conf *c, struct timespec *last)
{
    char *p = xasprintf("%s/msg", c->queue_dir);
    struct stat st;
    bool changed = false;

    if (stat(p, &st) == 0) {
        changed = st.st_mtim.tv_sec != last->tv_sec || st.st_mtim.tv_nsec != last->tv_nsec;
        *last = st.st_mtim;
    }
    free(p);
    return changed;
}

int relay_run(const struct conf *c, volatile sig_atomic_t *stop,
              volatile sig_atomic_t *kick, struct err *e)
{
    struct timespec seen = { 0, 0 };
    time_t next_due = 0;

    if (queue_init(c->queue_dir, e) < 0)
        return -1;
    log_info("queue runner started for %s", c->queue_dir);
    while (!*stop) {
        bool force = false, changed;
        time_t now = time(NULL);

        if (kick && *kick) {
            *kick = 0;
            force = true;
        }
        changed = msg_dir_changed(c, &seen);
        if (force || changed || now >= next_due) {
            struct err pe;

            if (pass_run(c, force, stop, &next_due, &pe) < 0) {
                if (pe.code == ERR_EXISTS) {
                    /* a queue command holds the lock: soon again */
                    next_due = now + 1;
                    if (force && kick)
                        *kick = 1;
                } else {
                    log_error("queue runner: %s", pe.text);
                    next_due = now + 10;
                }
            }
            if (next_due > time(NULL) + POLL_SECONDS)
                next_due = time(NULL) + POLL_SECONDS;
        }
        if (!*stop && !(kick && *kick && !force)) {
            struct timespec ts = { 0, SLICE_MS * 1000000L };

            nanosleep(&ts, NULL);
        }
    }
    log_info("queue runner stopped");
    return 0;
}
