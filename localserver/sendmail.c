/*
 * sendmail: `correod sendmail` (also reached as a program named sendmail),
 * the way local programs hand over a message without a network
 * connection.
 *
 *   correod sendmail [-c CONFIG] [-t] [-i|-oi] [-f FROM] [-F NAME] [--] [RCPT...]
 *
 * The message is read from standard input (LF or CRLF line ends; without
 * -i a line holding a single "." ends it).  Date, From and Message-ID are
 * added when missing and Bcc is removed; -t takes the recipients from To,
 * Cc and Bcc as well.  Recipients are resolved like SMTP's (users.h): a
 * local user's copy goes to the Maildir, anything else to the queue; an
 * unknown local address is reported by name and the others are still
 * delivered.  Delivery is deliver_run_sync(): the exit status is 0 only
 * when every recipient's copy is durable.  Nothing from the envelope or the
 * message ever reaches a shell or a file name.
 *
 * Exit statuses follow sysexits.h: 64 usage, 65 bad message data, 67 an
 * unknown local user, 75 a temporary failure (try again), 78 config.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "commands.h"
#include "compose.h"
#include "conf.h"
#include "deliver.h"
#include "queue.h"
#include "sanitize.h"
#include "users.h"

#define SM_NAME "correod sendmail"
/* Cap on standard input when the config sets no message size. */
#define SM_DEFAULT_MAX (25u << 20)
/* Longest address taken from the command line, and longest -F name. */
#define SM_ARG_MAX 998
#define SM_NAME_MAX 256

struct sm_opts {
    const char *conf_path;
    bool from_headers;        /* -t */
    bool ignore_dots;         /* -i, -oi */
    const char *from;         /* -f / -r */
    const char *full_name;    /* -F */
    char **rcpts;             /* command line */
    size_t n_rcpts;
};

/* An untrusted string in an error line: log-safe ASCII. */
static char *safe(const char *s)
{
    struct buf b = BUF_INIT;

    if (sanitize_log(&b, s, strlen(s)) != 0)
        return xstrdup("?");
    return buf_steal(&b, NULL);
}

/* "correod sendmail: BEFORE<untrusted>AFTER" on stderr; untrusted may be
 * NULL. */
static void complain(const char *before, const char *untrusted, const char *after)
{
    char *s = untrusted != NULL ? safe(untrusted) : NULL;

    fprintf(stderr, "%s: %s%s%s\n", SM_NAME, before, s != NULL ? s : "", after);
    free(s);
}

static void usage(void)
{
    fputs("usage: correod sendmail [-c CONFIG] [-t] [-i|-oi] [-f FROM] [-F NAME] [--] "
          "[RCPT...]\n", stderr);
}

/* ---- options -------------------------------------------------------------- */

/* Parse argv in sendmail's style: flags may be grouped ("-ti"), an
 * argument may follow its letter or be the next word ("-fme", "-f me").
 * Returns 0, or an exit status. */
static int parse_args(int argc, char **argv, struct sm_opts *o)
{
    int i;

    memset(o, 0, sizeof(*o));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        for (size_t k = 1; a[k] != '\0'; k++) {
            char c = a[k];
            const char *val = NULL;

            /* c, f, r, F are ours; B N R V h L O X A take an argument in
             * other implementations and are ignored with it. */
            if (strchr("cfrFBNRVhLOXA", c) != NULL) {
                val = a[k + 1] != '\0' ? a + k + 1 : (i + 1 < argc ? argv[++i] : NULL);
                if (val == NULL) {
                    complain("", a, ": the option needs an argument");
                    usage();
                    return EX_USAGE;
                }
            }
            switch (c) {
            case 'c':
                o->conf_path = val;
                break;
            case 'f':
            case 'r':
                o->from = val;
                break;
            case 'F':
                o->full_name = val;
                break;
            case 't':
                o->from_headers = true;
                continue;
            case 'i':
                o->ignore_dots = true;
                continue;
            case 'o':
                /* -oi is -i; every other -oX (-oem, -odb, -oQ...) is ignored. */
                if (a[k + 1] == 'i' && a[k + 2] == '\0')
                    o->ignore_dots = true;
                break;
            case 'b':
                if (a[k + 1] == 'm' || a[k + 1] == '\0')
                    break;
                if (strcmp(a + k, "bs") == 0)
                    fprintf(stderr, "%s: -bs (SMTP on standard input) is not supported: "
                            "connect to correod's SMTP port instead\n", SM_NAME);
                else if (strcmp(a + k, "bd") == 0)
                    fprintf(stderr, "%s: -bd (daemon mode) is not supported: the daemon is "
                            "correod run\n", SM_NAME);
                else
                    complain("unsupported mode ", a, "");
                return EX_USAGE;
            case 'q':
                complain("", a, ": queue runs are done by correod run (see correod queue)");
                return EX_USAGE;
            case 'B': case 'N': case 'R': case 'V': case 'h': case 'L': case 'O': case 'X':
            case 'A':
                break;
            case 'v':
            case 'm':
            case 'n':
            case 'U':
            case 'G':
                /* Verbose, "me too" and the like: nothing to do here. */
                continue;
            default:
                complain("unknown option in ", a, "");
                usage();
                return EX_USAGE;
            }
            break;   /* the rest of this word was the option's argument */
        }
    }
    o->rcpts = argv + i;
    o->n_rcpts = (size_t)(argc - i);
    return 0;
}

/* ---- addresses ------------------------------------------------------------ */

struct strv {
    char **v;
    size_t n, cap;
};

static void strv_push(struct strv *s, char *str)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
    }
    s->v[s->n++] = str;
}

static void strv_free(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static bool bad_addr_bytes(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x21 || *p == 0x7f)
            return true;
    return false;
}

static char *trim_dup(const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    return xstrndup(s, n);
}

/* A command line recipient: "a@b", "bob", "Name <a@b>", or several of
 * those separated by commas. */
static int arg_addresses(const char *arg, struct strv *out)
{
    const char *p = arg;

    if (strlen(arg) > SM_ARG_MAX) {
        complain("recipient too long: ", arg, "");
        return -1;
    }
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char *one = trim_dup(p, n), *lt = strchr(one, '<'), *addr;

        if (lt != NULL) {
            char *gt = strchr(lt, '>');

            if (gt == NULL) {
                complain("missing '>' in recipient ", one, "");
                free(one);
                return -1;
            }
            addr = trim_dup(lt + 1, (size_t)(gt - lt - 1));
            free(one);
        } else {
            addr = one;
        }
        if (addr[0] != '\0') {
            if (bad_addr_bytes(addr)) {
                complain("bad recipient address ", addr, "");
                free(addr);
                return -1;
            }
            strv_push(out, addr);
        } else {
            free(addr);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

/* An address list from a header (unfolded): groups ("name: a, b;") become
 * their members, then lib/compose parses the rest. */
static int header_addresses(const char *field, const char *value, struct strv *out)
{
    struct buf b = BUF_INIT;
    struct msg_addr_list l = {0};
    int quote = 0, angle = 0, paren = 0;
    size_t entry_start = 0;
    struct err e;

    for (const char *p = value; *p != '\0'; p++) {
        char c = *p;

        if (quote) {
            if (c == '\\' && p[1] != '\0') {
                if (buf_putc(&b, c) != 0 || buf_putc(&b, *++p) != 0)
                    die("sendmail: unbounded buffer refused an append");
                continue;
            }
            if (c == '"')
                quote = 0;
        } else if (c == '"') {
            quote = 1;
        } else if (c == '(') {
            paren++;
        } else if (c == ')' && paren > 0) {
            paren--;
        } else if (paren == 0 && c == '<') {
            angle = 1;
        } else if (paren == 0 && c == '>') {
            angle = 0;
        } else if (paren == 0 && !angle && c == ':') {
            /* A group's display name: drop it. */
            buf_truncate(&b, entry_start);
            continue;
        } else if (paren == 0 && !angle && (c == ';' || c == ',')) {
            if (buf_putc(&b, ',') != 0)
                die("sendmail: unbounded buffer refused an append");
            entry_start = b.len;
            continue;
        }
        if (buf_putc(&b, c) != 0)
            die("sendmail: unbounded buffer refused an append");
    }
    if (compose_parse_addresses(buf_cstr(&b), &l, &e) != 0) {
        fprintf(stderr, "%s: %s: %s\n", SM_NAME, field, e.text);
        buf_free(&b);
        return -1;
    }
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].addr != NULL && l.v[i].addr[0] != '\0')
            strv_push(out, xstrdup(l.v[i].addr));
    compose_addrs_free(&l);
    buf_free(&b);
    return 0;
}

/* ---- the message ---------------------------------------------------------- */

struct line {
    const char *p;
    size_t len;               /* without the line end */
};

/* A header field: lines [first, last). */
struct field {
    size_t first, last;
    size_t name_len;
};

static bool is_field_start(const struct line *l, size_t *name_len)
{
    size_t i = 0;

    while (i < l->len && l->p[i] != ':') {
        unsigned char c = (unsigned char)l->p[i];

        if (c <= 0x20 || c >= 0x7f)
            return false;
        i++;
    }
    if (i == 0 || i == l->len)
        return false;
    *name_len = i;
    return true;
}

static bool field_is(const struct line *lines, const struct field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(lines[f->first].p, name, f->name_len) == 0;
}

/* The unfolded value of a field (after the colon). */
static char *field_value(const struct line *lines, const struct field *f)
{
    struct buf b = BUF_INIT;

    for (size_t i = f->first; i < f->last; i++) {
        const char *p = lines[i].p;
        size_t n = lines[i].len;

        if (i == f->first) {
            p += f->name_len + 1;
            n -= f->name_len + 1;
        }
        if (buf_append(&b, p, n) != 0)
            die("sendmail: unbounded buffer refused an append");
    }
    return buf_steal(&b, NULL);
}

/* "Mon, 23 Nov 2026 17:37:40 +0100" without the locale. */
static void date_now(char out[64])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    long off;
    char sign = '+';

    localtime_r(&now, &tm);
    off = tm.tm_gmtoff / 60;
    if (off < 0) {
        sign = '-';
        off = -off;
    }
    snprintf(out, 64, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, sign, off / 60, off % 60);
}

static bool has_non_ascii(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

static int put_base64(struct buf *b, const unsigned char *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        char q[4];

        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        q[0] = tab[(v >> 18) & 63];
        q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? tab[v & 63] : '=';
        rc = buf_append(b, q, 4);
    }
    return rc;
}

/* A display name followed by a space: a quoted-string when it is ASCII,
 * else RFC 2047 encoded words (B, UTF-8) of at most 45 bytes of text each,
 * never splitting a UTF-8 sequence.  Controls become spaces either way, so
 * the name cannot end the field. */
static int put_display_name(struct buf *b, const char *name)
{
    char *clean = xstrdup(name);
    int rc = 0;

    for (char *p = clean; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    if (!has_non_ascii(clean)) {
        rc = buf_putc(b, '"');
        for (const char *p = clean; *p != '\0' && rc == 0; p++) {
            if (*p == '"' || *p == '\\')
                rc = buf_putc(b, '\\');
            if (rc == 0)
                rc = buf_putc(b, *p);
        }
        if (rc == 0)
            rc = buf_puts(b, "\" ");
    } else {
        size_t len = strlen(clean), i = 0;

        while (i < len && rc == 0) {
            size_t n = len - i > 45 ? 45 : len - i;

            /* Back up to the start of a character. */
            while (n > 1 && i + n < len && ((unsigned char)clean[i + n] & 0xc0) == 0x80)
                n--;
            rc = buf_puts(b, "=?UTF-8?B?");
            if (rc == 0)
                rc = put_base64(b, (const unsigned char *)clean + i, n);
            if (rc == 0)
                rc = buf_puts(b, "?= ");
            i += n;
        }
    }
    free(clean);
    return rc;
}

struct built {
    struct buf msg;           /* CRLF */
    struct strv hdr_rcpts;    /* -t: To, Cc, Bcc */
};

/* Turn standard input into the message to deliver.  Returns 0 or an exit
 * status. */
static int build_message(const struct buf *in, const struct sm_opts *o, const char *sender,
                         const char *hostname, struct built *out)
{
    struct line *lines = NULL;
    struct field *fields = NULL;
    size_t n_lines = 0, cap_lines = 0, n_fields = 0, body = 0;
    bool have_date = false, have_from = false, have_msgid = false, blank = false;
    const char *p = in->data != NULL ? in->data : "", *end = p + in->len;
    struct buf *m = &out->msg;
    int rc = 0;

    /* Lines, without their LF or CRLF; a lone "." ends the input unless -i. */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        size_t full = nl != NULL ? len + 1 : len;

        if (len > 0 && p[len - 1] == '\r' && nl != NULL)
            len--;
        if (!o->ignore_dots && len == 1 && p[0] == '.')
            break;
        if (n_lines == cap_lines) {
            cap_lines = cap_lines ? cap_lines * 2 : 64;
            lines = xreallocarray(lines, cap_lines, sizeof(*lines));
        }
        lines[n_lines].p = p;
        lines[n_lines].len = len;
        n_lines++;
        p += full;
    }

    /* An mbox postmark on the first line is not part of the message. */
    if (n_lines > 0 && lines[0].len >= 5 && memcmp(lines[0].p, "From ", 5) == 0)
        body = 1;
    /* The header block: fields and their continuation lines, up to the first
     * empty line (or the first line that is neither). */
    fields = XNEWARRAY(struct field, n_lines + 1);
    for (; body < n_lines; body++) {
        const struct line *l = &lines[body];
        size_t name_len;

        if (l->len == 0) {
            blank = true;
            break;
        }
        if ((l->p[0] == ' ' || l->p[0] == '\t') && n_fields > 0) {
            fields[n_fields - 1].last = body + 1;
            continue;
        }
        if (!is_field_start(l, &name_len))
            break;
        fields[n_fields].first = body;
        fields[n_fields].last = body + 1;
        fields[n_fields].name_len = name_len;
        n_fields++;
    }

    buf_init(m, 0);
    for (size_t f = 0; f < n_fields; f++) {
        const struct field *fd = &fields[f];
        bool bcc = field_is(lines, fd, "Bcc");

        if (field_is(lines, fd, "Date"))
            have_date = true;
        else if (field_is(lines, fd, "From"))
            have_from = true;
        else if (field_is(lines, fd, "Message-ID"))
            have_msgid = true;
        if (o->from_headers &&
            (bcc || field_is(lines, fd, "To") || field_is(lines, fd, "Cc"))) {
            char *v = field_value(lines, fd), *name = xstrndup(lines[fd->first].p, fd->name_len);

            rc = header_addresses(name, v, &out->hdr_rcpts);
            free(v);
            free(name);
            if (rc != 0) {
                rc = EX_DATAERR;
                goto done;
            }
        }
        /* Bcc is never part of what recipients get. */
        if (bcc)
            continue;
        for (size_t i = fd->first; i < fd->last; i++) {
            if (buf_append(m, lines[i].p, lines[i].len) != 0 || buf_puts(m, "\r\n") != 0)
                die("sendmail: unbounded buffer refused an append");
        }
    }
    if (!have_date) {
        char date[64];

        date_now(date);
        if (buf_printf(m, "Date: %s\r\n", date) != 0)
            die("sendmail: unbounded buffer refused an append");
    }
    if (!have_from) {
        const char *addr = sender[0] != '\0' ? sender : "MAILER-DAEMON";
        int r = buf_puts(m, "From: ");

        if (r == 0 && o->full_name != NULL && o->full_name[0] != '\0') {
            r = put_display_name(m, o->full_name);
            if (r == 0)
                r = buf_printf(m, "<%s>\r\n", addr);
        } else if (r == 0) {
            r = buf_printf(m, "%s\r\n", addr);
        }
        if (r != 0)
            die("sendmail: unbounded buffer refused an append");
    }
    if (!have_msgid) {
        unsigned char rnd[8] = {0};
        struct timeval tv;
        unsigned long long r = 0;

        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            complain("cannot get random bytes for a Message-ID", NULL, "");
            rc = EX_OSERR;
            goto done;
        }
        for (size_t i = 0; i < sizeof(rnd); i++)
            r = r << 8 | rnd[i];
        gettimeofday(&tv, NULL);
        if (buf_printf(m, "Message-ID: <%lld.%06ld.%llx@%s>\r\n", (long long)tv.tv_sec,
                       (long)tv.tv_usec, r, hostname) != 0)
            die("sendmail: unbounded buffer refused an append");
    }
    if (buf_puts(m, "\r\n") != 0)
        die("sendmail: unbounded buffer refused an append");
    if (blank)
        body++;
    for (size_t i = body; i < n_lines; i++) {
        if (buf_append(m, lines[i].p, lines[i].len) != 0 || buf_puts(m, "\r\n") != 0)
            die("sendmail: unbounded buffer refused an append");
    }
done:
    free(lines);
    free(fields);
    return rc;
}

/* ---- recipients ----------------------------------------------------------- */

struct rcpt_list {
    struct deliver_rcpt *v;
    size_t n, cap;
};

static void rcpt_add(struct rcpt_list *l, const char *addr, const char *maildir,
                     const char *orig)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct deliver_rcpt *r = &l->v[i];

        if (maildir != NULL ? (r->maildir != NULL && strcmp(r->maildir, maildir) == 0)
                            : (r->maildir == NULL && strcasecmp(r->addr, addr) == 0))
            return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
    }
    l->v[l->n].addr = xstrdup(addr);
    l->v[l->n].maildir = maildir != NULL ? xstrdup(maildir) : NULL;
    l->v[l->n].orig = orig != NULL && strcasecmp(orig, addr) != 0 ? xstrdup(orig) : NULL;
    l->n++;
}

/* Resolve one address into rl.  Returns 0, EX_NOUSER or EX_TEMPFAIL. */
static int resolve(const struct user_db *db, const char *addr, struct rcpt_list *rl)
{
    struct users_target t;
    struct err e;
    int rc = 0;

    err_clear(&e);
    switch (users_resolve(db, addr, &t, &e)) {
    case USERS_RESOLVE_NOT_LOCAL:
        rcpt_add(rl, addr, NULL, NULL);
        return 0;
    case USERS_RESOLVE_UNKNOWN:
        complain("", addr, ": no such user here (not delivered to this address)");
        return EX_NOUSER;
    case USERS_RESOLVE_ERROR:
        complain("", addr, ": cannot resolve");
        fprintf(stderr, "%s: %s\n", SM_NAME, e.text);
        return EX_TEMPFAIL;
    case USERS_RESOLVE_OK:
        break;
    }
    for (size_t k = 0; k < t.n_local && rc == 0; k++) {
        char *md = NULL;

        if (users_maildir(db, t.local[k], &md, &e) != 0) {
            complain("", t.local[k], ": no usable Maildir");
            fprintf(stderr, "%s: %s\n", SM_NAME, e.text);
            rc = EX_TEMPFAIL;
            break;
        }
        rcpt_add(rl, t.local[k], md, addr);
        free(md);
    }
    for (size_t k = 0; k < t.n_external && rc == 0; k++)
        rcpt_add(rl, t.external[k], NULL, addr);
    users_target_free(&t);
    return rc;
}

/* ---- the command ---------------------------------------------------------- */

/* All of fd into b: 0, -1 on a read error (errno set), -2 when there is
 * more than max bytes. */
static int read_input(struct buf *b, int fd, size_t max)
{
    for (;;) {
        size_t room = max - b->len + 1 < 65536 ? max - b->len + 1 : 65536;
        char *p = buf_reserve(b, room);
        ssize_t n;

        if (p == NULL)
            die("sendmail: unbounded buffer refused an append");
        n = read(fd, p, room);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return 0;
        buf_commit(b, (size_t)n);
        if (b->len > max)
            return -2;
    }
}

/* "login@default-domain" of the calling user. */
static char *default_sender(const struct conf *c)
{
    struct passwd *pw = getpwuid(getuid());
    const char *login = pw != NULL ? pw->pw_name : NULL;

    if (login == NULL || login[0] == '\0' || bad_addr_bytes(login))
        return xasprintf("uid%lu@%s", (unsigned long)getuid(), c->domains[0]);
    return xasprintf("%s@%s", login, c->domains[0]);
}

static char *envelope_sender(const char *from, const struct conf *c)
{
    char *s;

    if (from == NULL)
        return default_sender(c);
    s = trim_dup(from, strlen(from));
    if (s[0] == '<') {
        size_t n = strlen(s);
        char *inner = trim_dup(s + 1, n > 1 && s[n - 1] == '>' ? n - 2 : n - 1);

        free(s);
        s = inner;
    }
    /* A bare name is a user of the default domain. */
    if (s[0] != '\0' && strchr(s, '@') == NULL) {
        char *full = xasprintf("%s@%s", s, c->domains[0]);

        free(s);
        s = full;
    }
    return s;
}

int cmd_sendmail(int argc, char **argv)
{
    struct sm_opts o;
    struct conf *c = NULL;
    struct user_db *db = NULL;
    struct buf in = BUF_INIT;
    struct built b = {BUF_INIT, {0}};
    struct strv want = {0};
    struct rcpt_list rl = {0};
    struct deliver_job *job = NULL;
    char *sender = NULL;
    struct err e;
    int status = 0, rc;
    size_t max;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.from != NULL && (strlen(o.from) > SM_ARG_MAX || bad_addr_bytes(o.from))) {
        complain("bad sender address ", o.from, "");
        return EX_USAGE;
    }
    if (o.full_name != NULL && strlen(o.full_name) > SM_NAME_MAX) {
        complain("full name too long", NULL, "");
        return EX_USAGE;
    }
    for (size_t i = 0; i < o.n_rcpts; i++) {
        if (arg_addresses(o.rcpts[i], &want) != 0) {
            strv_free(&want);
            return EX_USAGE;
        }
    }
    if (want.n == 0 && !o.from_headers) {
        complain("no recipients given (name them, or use -t)", NULL, "");
        usage();
        return EX_USAGE;
    }

    err_clear(&e);
    if (conf_load_flags(o.conf_path != NULL ? o.conf_path : conf_default_path(),
                        CONF_LOAD_NO_TLS_FILES, &c, NULL, &e) != 0) {
        fprintf(stderr, "%s: %s\n", SM_NAME, e.text);
        status = EX_CONFIG;
        goto out;
    }
    {
        struct user_db_opts uo = {
            .users_file = c->users_file,
            .aliases_file = c->aliases_file,
            .domains = (const char *const *)c->domains,
            .n_domains = c->n_domains,
            .maildir_template = c->maildir_template,
        };

        if (users_load(&uo, &db, &e) != 0) {
            fprintf(stderr, "%s: %s\n", SM_NAME, e.text);
            status = EX_TEMPFAIL;
            goto out;
        }
    }
    sender = envelope_sender(o.from, c);

    max = c->max_message_size != 0 ? c->max_message_size : SM_DEFAULT_MAX;
    rc = read_input(&in, STDIN_FILENO, max);
    if (rc == -2) {
        fprintf(stderr, "%s: message larger than the limit of %zu bytes\n", SM_NAME, max);
        status = EX_DATAERR;
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "%s: cannot read the message: %s\n", SM_NAME, strerror(errno));
        status = EX_IOERR;
        goto out;
    }
    status = build_message(&in, &o, sender, c->hostname, &b);
    if (status != 0)
        goto out;
    for (size_t i = 0; i < b.hdr_rcpts.n; i++) {
        strv_push(&want, b.hdr_rcpts.v[i]);
        b.hdr_rcpts.v[i] = NULL;
    }
    if (want.n == 0) {
        complain("no recipients in To, Cc or Bcc", NULL, "");
        status = EX_USAGE;
        goto out;
    }

    /* Resolve all; unknown users are reported and left out, the rest go. */
    for (size_t i = 0; i < want.n; i++) {
        rc = resolve(db, want.v[i], &rl);
        if (rc == EX_TEMPFAIL)
            status = EX_TEMPFAIL;
        else if (rc != 0 && status == 0)
            status = rc;
    }
    if (status == EX_TEMPFAIL) {
        complain("nothing delivered: try again later", NULL, "");
        goto out;
    }
    if (rl.n == 0) {
        complain("nothing delivered: no valid recipient", NULL, "");
        goto out;
    }

    job = XNEW(struct deliver_job);
    job->env = XNEW(struct smtp_envelope);
    job->env->mail_from = xstrdup(sender);
    job->env->auth_user = NULL;
    job->env->body = compose_is_8bit(b.msg.data, b.msg.len) ? SMTP_BODY_8BITMIME
                                                             : SMTP_BODY_7BIT;
    job->env->smtputf8 = has_non_ascii(sender);
    job->env->rcpts = xcalloc(want.n, sizeof(*job->env->rcpts));
    for (size_t i = 0; i < want.n; i++) {
        job->env->rcpts[i].addr = xstrdup(want.v[i]);
        job->env->rcpts[i].verdict = SMTP_RCPT_LOCAL;
        if (has_non_ascii(want.v[i]))
            job->env->smtputf8 = true;
    }
    job->env->n_rcpts = want.n;
    job->msg = XNEW(struct buf);
    *job->msg = b.msg;
    memset(&b.msg, 0, sizeof(b.msg));
    job->rcpts = rl.v;
    job->n_rcpts = rl.n;
    memset(&rl, 0, sizeof(rl));
    job->hostname = c->hostname;
    job->queue_dir = c->queue_dir;
    job->received_at = time(NULL);

    /* The queue's directories, in case this runs before the server ever did;
     * a failure shows in the result if anything has to be spooled. */
    if (c->queue_dir != NULL)
        queue_init(c->queue_dir, &e);
    deliver_run_sync(job);
    if (job->code != 250) {
        char *why = safe(job->text);

        fprintf(stderr, "%s: not delivered: %d %s %s\n", SM_NAME, job->code, job->enhanced,
                why);
        free(why);
        status = EX_TEMPFAIL;
    } else if (status != 0) {
        fprintf(stderr, "%s: delivered to the other recipients (%s)\n", SM_NAME, job->text);
    }

out:
    deliver_job_free(job);
    for (size_t i = 0; i < rl.n; i++) {
        free(rl.v[i].addr);
        free(rl.v[i].maildir);
        free(rl.v[i].orig);
    }
    free(rl.v);
    strv_free(&want);
    strv_free(&b.hdr_rcpts);
    buf_free(&b.msg);
    buf_free(&in);
    free(sender);
    users_free(db);
    conf_free(c);
    return status;
}
