/* fetch: POP3 accounts downloaded into a Maildir folder (see fetch.h). */
#include "fetch.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#ifdef HAVE_NOTMUCH
#include <notmuch.h>
#if !LIBNOTMUCH_CHECK_VERSION(5, 4, 0)
#error "notmuch=index needs libnotmuch 5.4 (notmuch 0.32) or later"
#endif
#endif

#include "buf.h"
#include "child.h"
#include "sanitize.h"
#include "xalloc.h"
#include "fsutil.h"

#define STATE_MAGIC "correo-pop-state 1"
#define STATE_FILE_MAX ((size_t)512 * 1024 * 1024)
#define BATCH_MSGS 1024                 /* messages per durable batch (syncfs) */
#define BATCH_MSGS_FSYNC 128            /* ... when each file is fsync'ed (open fds) */
#define BATCH_BYTES ((uint64_t)64 * 1024 * 1024) /* announced bytes per batch */
#define WBUF_SIZE 65536
#define HEADER_MAX (256 * 1024)                 /* TOP n 0 */
#define FILTER_ERR_MAX 2048
#define PROGRESS_BYTES (1024 * 1024)
#define PROGRESS_MS 200

/* ---- accounts ------------------------------------------------------------- */

bool fetch_is_pop_url(const char *url)
{
    return strncasecmp(url, "pop://", 6) == 0 || strncasecmp(url, "pops://", 7) == 0;
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

static char *pct_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1);
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;

            if (i + 2 >= n)
                goto bad;
            h = hexval((unsigned char)s[i + 1]);
            l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0 || (h == 0 && l == 0))
                goto bad;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int parse_url(const char *url, struct fetch_account *a, struct err *e)
{
    const char *p, *at, *hs, *he, *end;
    bool tls = false;

    if (strncasecmp(url, "pop://", 6) == 0) {
        p = url + 6;
    } else if (strncasecmp(url, "pops://", 7) == 0) {
        p = url + 7;
        tls = true;
    } else {
        return err_set(e, ERR_PARSE, "not a pop:// or pops:// URL");
    }
    a->security = tls ? POP3_TLS : POP3_STARTTLS;
    a->port = tls ? 995 : 110;
    end = p + strcspn(p, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0)
        return err_set(e, ERR_PARSE, "URL: nothing may follow the host but \"/\"");
    at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at == NULL)
        return err_set(e, ERR_PARSE, "URL: a user is required (pop://user@host/)");
    {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);

        a->user = pct_decode(p, ulen);
        if (a->user == NULL || a->user[0] == '\0')
            return err_set(e, ERR_PARSE, "URL: bad or empty user");
        if (colon != NULL) {
            a->url_pass = pct_decode(colon + 1, (size_t)(at - colon - 1));
            if (a->url_pass == NULL)
                return err_set(e, ERR_PARSE, "URL: bad percent escape in the password");
        }
    }
    hs = at + 1;
    if (*hs == '[') {
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return err_set(e, ERR_PARSE, "URL: unterminated [IPv6] host");
        a->host = xstrndup(hs + 1, (size_t)(he - hs - 1));
        he++;
    } else {
        he = hs;
        while (he < end && *he != ':')
            he++;
        a->host = xstrndup(hs, (size_t)(he - hs));
    }
    if (a->host[0] == '\0')
        return err_set(e, ERR_PARSE, "URL: no host");
    for (const char *q = a->host; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == '/' || *q == '@')
            return err_set(e, ERR_PARSE, "URL: bad host");
    if (he < end) {
        unsigned long port = 0;

        if (*he != ':' || he + 1 == end)
            return err_set(e, ERR_PARSE, "URL: bad port");
        for (const char *q = he + 1; q < end; q++) {
            if (!isdigit((unsigned char)*q) || port > 65535)
                return err_set(e, ERR_PARSE, "URL: bad port");
            port = port * 10 + (unsigned long)(*q - '0');
        }
        if (port == 0 || port > 65535)
            return err_set(e, ERR_PARSE, "URL: bad port");
        a->port = (unsigned)port;
    }
    return 0;
}

/* "30d", "12h", "90m", "3600s", "2w", or a plain number of seconds. */
static int parse_duration(const char *s, long *out)
{
    char *end;
    long v, mul = 1;

    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    v = strtol(s, &end, 10);
    if (errno != 0 || v < 0)
        return -1;
    if (*end != '\0') {
        switch (*end) {
        case 's': mul = 1; break;
        case 'm': mul = 60; break;
        case 'h': mul = 3600; break;
        case 'd': mul = 86400; break;
        case 'w': mul = 7 * 86400; break;
        default: return -1;
        }
        if (end[1] != '\0')
            return -1;
    }
    if (v > LONG_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

/* "5000000", "500k", "20M", "1G". */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    uint64_t mul = 1;

    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -1;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    if (*end != '\0') {
        switch (*end) {
        case 'k': case 'K': mul = 1024; break;
        case 'm': case 'M': mul = 1024 * 1024; break;
        case 'g': case 'G': mul = 1024 * 1024 * 1024; break;
        default: return -1;
        }
        if (end[1] != '\0' && strcasecmp(end + 1, "b") != 0)
            return -1;
    }
    if (v > UINT64_MAX / mul / 4)
        return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

void fetch_account_free(struct fetch_account *a)
{
    free(a->name);
    free(a->host);
    free(a->user);
    if (a->url_pass)
        explicit_bzero(a->url_pass, strlen(a->url_pass));
    free(a->url_pass);
    free(a->folder);
    if (a->pass)
        explicit_bzero(a->pass, strlen(a->pass));
    free(a->pass);
    free(a->pass_cmd);
    free(a->tls_fingerprint);
    free(a->tls_ca_file);
    free(a->filter);
    memset(a, 0, sizeof(*a));
}

int fetch_account_parse(const struct config_account *ca, struct fetch_account *a,
                        struct err *e)
{
    bool tls_set = false;

    memset(a, 0, sizeof(*a));
    a->name = xstrdup(ca->name);
    if (parse_url(ca->url, a, e) < 0)
        goto bad;
    for (size_t i = 0; i < ca->n_kv; i++) {
        const char *k = ca->kv[i].key, *v = ca->kv[i].value;

        if (strcmp(k, "folder") == 0) {
            if (v[0] == '\0') {
                err_set(e, ERR_PARSE, "folder: empty");
                goto bad;
            }
            a->folder = xstrdup(v);
        } else if (strcmp(k, "keep") == 0) {
            if (strcmp(v, "yes") == 0) {
                a->keep = FETCH_KEEP_YES;
            } else if (strcmp(v, "no") == 0) {
                a->keep = FETCH_KEEP_NO;
            } else if (parse_duration(v, &a->keep_seconds) == 0) {
                a->keep = FETCH_KEEP_DAYS;
            } else {
                err_set(e, ERR_PARSE, "keep: expected yes, no or a duration like 30d, got \"%s\"",
                        v);
                goto bad;
            }
        } else if (strcmp(k, "pass") == 0) {
            free(a->pass);
            a->pass = xstrdup(v);
        } else if (strcmp(k, "pass_cmd") == 0) {
            a->pass_cmd = xstrdup(v);
        } else if (strcmp(k, "tls") == 0) {
            if (strcmp(v, "starttls") == 0)
                a->security = POP3_STARTTLS;
            else if (strcmp(v, "tls") == 0)
                a->security = POP3_TLS;
            else if (strcmp(v, "none") == 0)
                a->security = POP3_PLAIN;
            else {
                err_set(e, ERR_PARSE, "tls: expected starttls, tls or none, got \"%s\"", v);
                goto bad;
            }
            tls_set = true;
        } else if (strcmp(k, "tls_fingerprint") == 0) {
            unsigned char pin[TLS_SHA256_LEN];

            if (tls_parse_fingerprint(v, pin, e) < 0) {
                err_prefix(e, "tls_fingerprint");
                goto bad;
            }
            a->tls_fingerprint = xstrdup(v);
        } else if (strcmp(k, "tls_ca_file") == 0) {
            a->tls_ca_file = xstrdup(v);
        } else if (strcmp(k, "filter") == 0) {
            if (v[0] == '\0') {
                err_set(e, ERR_PARSE, "filter: empty");
                goto bad;
            }
            a->filter = xstrdup(v);
        } else if (strcmp(k, "max_size") == 0) {
            if (parse_size(v, &a->max_size) < 0) {
                err_set(e, ERR_PARSE, "max_size: expected a size like 20M, got \"%s\"", v);
                goto bad;
            }
        } else if (strcmp(k, "timeout") == 0) {
            long secs;

            if (parse_duration(v, &secs) < 0 || secs < 1 || secs > 86400) {
                err_set(e, ERR_PARSE, "timeout: expected seconds (1..86400), got \"%s\"", v);
                goto bad;
            }
            a->timeout_ms = (int)(secs * 1000);
        } else if (strcmp(k, "notmuch") == 0) {
            if (strcmp(v, "no") == 0) {
                a->notmuch = FETCH_NOTMUCH_NO;
            } else if (strcmp(v, "new") == 0) {
                a->notmuch = FETCH_NOTMUCH_NEW;
            } else if (strcmp(v, "index") == 0) {
#ifdef HAVE_NOTMUCH
                a->notmuch = FETCH_NOTMUCH_INDEX;
#else
                err_set(e, ERR_PARSE, "notmuch=index needs a correo built with notmuch "
                                      "(notmuch=new runs the notmuch command instead)");
                goto bad;
#endif
            } else {
                err_set(e, ERR_PARSE, "notmuch: expected no, new or index, got \"%s\"", v);
                goto bad;
            }
        } else {
            err_set(e, ERR_PARSE, "unknown key \"%s\" (pop accounts know folder, keep, pass, "
                                  "pass_cmd, tls, tls_fingerprint, tls_ca_file, filter, "
                                  "max_size, timeout, notmuch)", k);
            goto bad;
        }
    }
    if (a->notmuch == FETCH_NOTMUCH_INDEX && a->filter != NULL) {
        err_set(e, ERR_PARSE, "notmuch=index cannot index what a filter delivers "
                              "(notmuch=new runs the notmuch command instead)");
        goto bad;
    }
    (void)tls_set;
    return 0;
bad:
    err_prefix(e, "account %s", ca->name);
    fetch_account_free(a);
    return -1;
}

/* ---- the state file ------------------------------------------------------- */

struct fetch_state {
    char *path, *lock_path, *dir;
    int lock_fd, fd;
    struct fetch_entry *v;     /* open-addressing table, uidl NULL: free */
    size_t cap, n;
    struct buf out;            /* journal lines not written yet */
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static struct fetch_entry *slot(const struct fetch_state *s, const char *uidl)
{
    size_t mask = s->cap - 1, i = (size_t)hash_str(uidl) & mask;

    while (s->v[i].uidl != NULL && strcmp(s->v[i].uidl, uidl) != 0)
        i = (i + 1) & mask;
    return &s->v[i];
}

static void grow(struct fetch_state *s)
{
    struct fetch_entry *old = s->v;
    size_t oldcap = s->cap;

    s->cap = oldcap ? oldcap * 2 : 256;
    s->v = xcalloc(s->cap, sizeof(*s->v));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].uidl != NULL)
            *slot(s, old[i].uidl) = old[i];
    free(old);
}

static void entry_put(struct fetch_state *s, const char *uidl, enum fetch_entry_state st,
                      time_t first, const char *name)
{
    struct fetch_entry *en;

    if ((s->n + 1) * 4 > s->cap * 3)
        grow(s);
    en = slot(s, uidl);
    if (en->uidl == NULL) {
        en->uidl = xstrdup(uidl);
        s->n++;
    }
    en->state = st;
    en->first_seen = first;
    free(en->name);
    en->name = name ? xstrdup(name) : NULL;
}

/* Remove with backward-shift deletion so that probing stays correct. */
static void entry_del(struct fetch_state *s, const char *uidl)
{
    size_t mask = s->cap - 1, i, j;
    struct fetch_entry *en;

    if (s->cap == 0)
        return;
    en = slot(s, uidl);
    if (en->uidl == NULL)
        return;
    free(en->uidl);
    free(en->name);
    memset(en, 0, sizeof(*en));
    s->n--;
    i = (size_t)(en - s->v);
    j = i;
    for (;;) {
        size_t k;

        j = (j + 1) & mask;
        if (s->v[j].uidl == NULL)
            break;
        k = (size_t)hash_str(s->v[j].uidl) & mask;
        /* Move v[j] into the hole at i unless its home k lies cyclically in (i, j]. */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        s->v[i] = s->v[j];
        memset(&s->v[j], 0, sizeof(s->v[j]));
        i = j;
    }
}

static bool valid_token(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static int load_line(struct fetch_state *s, char *l, size_t len)
{
    char *f[5];
    size_t nf = 0;
    char *p = l, *end = l + len;
    long long t;
    char *te;

    while (p < end && nf < 5) {
        char *w = p;

        while (p < end && *p != ' ')
            p++;
        if (p == w)
            return -1;
        f[nf++] = w;
        if (p < end)
            *p++ = '\0';
    }
    *end = '\0';
    if (p < end || nf < 2 || strlen(f[0]) != 1)
        return -1;
    if (!valid_token(f[1], strlen(f[1]), POP3_UIDL_MAX))
        return -1;
    if (f[0][0] == 'X')
        return nf == 2 ? (entry_del(s, f[1]), 0) : -1;
    if (nf < 3)
        return -1;
    errno = 0;
    t = strtoll(f[2], &te, 10);
    if (errno != 0 || *te != '\0' || t < 0)
        return -1;
    switch (f[0][0]) {
    case 'S':
        if (nf != 3)
            return -1;
        entry_put(s, f[1], FETCH_SEEN, (time_t)t, NULL);
        return 0;
    case 'P':
    case 'D':
        if (nf != 4 || !valid_token(f[3], strlen(f[3]), 255) || strchr(f[3], '/') != NULL)
            return -1;
        entry_put(s, f[1], (enum fetch_entry_state)f[0][0], (time_t)t, f[3]);
        return 0;
    default:
        return -1;
    }
}

static int fsync_dir_of(const char *path, struct err *e)
{
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    int fd, rc = 0;

    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    else {
        free(dir);
        dir = xstrdup(".");
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = err_sys(e, "%s", dir);
    if (fd >= 0)
        close(fd);
    free(dir);
    return rc;
}

int fetch_state_open(const char *path, struct fetch_state **out, struct err *e)
{
    struct fetch_state *s = XNEW(struct fetch_state);
    struct buf data;
    unsigned lineno = 0;
    size_t pos = 0, good_end = 0;
    int r;

    *out = NULL;
    s->path = xstrdup(path);
    s->lock_path = xasprintf("%s.lock", path);
    s->fd = -1;
    buf_init(&s->out, 0);
    s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        err_sys(e, "%s", s->lock_path);
        goto fail;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK) {
            err_set(e, ERR_EXISTS, "another correo fetch is running for this account");
            e->temporary = true;
        } else {
            err_sys(e, "flock %s", s->lock_path);
        }
        goto fail;
    }
    s->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        err_sys(e, "%s", path);
        goto fail;
    }
    buf_init(&data, STATE_FILE_MAX);
    r = buf_read_all(&data, s->fd);
    if (r < 0) {
        if (r == -2)
            err_set(e, ERR_LIMIT, "%s: larger than %zu bytes", path, STATE_FILE_MAX);
        else
            err_sys(e, "read %s", path);
        buf_free(&data);
        goto fail;
    }
    while (pos < data.len) {
        char *nl = memchr(data.data + pos, '\n', data.len - pos);
        size_t len;

        if (nl == NULL)
            break;   /* torn last line: dropped */
        len = (size_t)(nl - (data.data + pos));
        lineno++;
        if (lineno == 1) {
            if (len != strlen(STATE_MAGIC) || memcmp(data.data + pos, STATE_MAGIC, len) != 0) {
                err_set(e, ERR_PARSE, "%s:1: not a correo POP3 state file", path);
                buf_free(&data);
                goto fail;
            }
        } else if (len > 0 && load_line(s, data.data + pos, len) < 0) {
            err_set(e, ERR_PARSE, "%s:%u: malformed line", path, lineno);
            buf_free(&data);
            goto fail;
        }
        pos += len + 1;
        good_end = pos;
    }
    if (good_end < data.len && ftruncate(s->fd, (off_t)good_end) < 0) {
        err_sys(e, "truncate %s", path);
        buf_free(&data);
        goto fail;
    }
    if (good_end == 0 && buf_printf(&s->out, "%s\n", STATE_MAGIC) < 0)
        die("fetch: state buffer");
    buf_free(&data);
    *out = s;
    return 0;
fail:
    fetch_state_close(s);
    return -1;
}

void fetch_state_close(struct fetch_state *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->cap; i++) {
        free(s->v[i].uidl);
        free(s->v[i].name);
    }
    free(s->v);
    if (s->fd >= 0)
        close(s->fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd);   /* releases the flock */
    buf_free(&s->out);
    free(s->path);
    free(s->lock_path);
    free(s->dir);
    free(s);
}

const struct fetch_entry *fetch_state_get(const struct fetch_state *s, const char *uidl)
{
    const struct fetch_entry *en;

    if (s->cap == 0)
        return NULL;
    en = slot(s, uidl);
    return en->uidl ? en : NULL;
}

size_t fetch_state_count(const struct fetch_state *s)
{
    return s->n;
}

static void journal_entry(struct buf *b, const struct fetch_entry *en)
{
    int r;

    if (en->state == FETCH_SEEN)
        r = buf_printf(b, "S %s %lld\n", en->uidl, (long long)en->first_seen);
    else
        r = buf_printf(b, "%c %s %lld %s\n", (char)en->state, en->uidl,
                       (long long)en->first_seen, en->name ? en->name : "-");
    if (r < 0)
        die("fetch: state buffer");
}

void fetch_state_set(struct fetch_state *s, const char *uidl, enum fetch_entry_state st,
                     time_t first_seen, const char *name)
{
    entry_put(s, uidl, st, first_seen, st == FETCH_SEEN ? NULL : name);
    journal_entry(&s->out, fetch_state_get(s, uidl));
}

void fetch_state_drop(struct fetch_state *s, const char *uidl)
{
    if (fetch_state_get(s, uidl) == NULL)
        return;
    entry_del(s, uidl);
    if (buf_printf(&s->out, "X %s\n", uidl) < 0)
        die("fetch: state buffer");
}

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

int fetch_state_sync(struct fetch_state *s, struct err *e)
{
    if (s->out.len > 0) {
        if (write_all(s->fd, s->out.data, s->out.len) < 0)
            return err_sys(e, "write %s", s->path);
        buf_reset(&s->out);
    }
    if (fdatasync(s->fd) < 0)
        return err_sys(e, "fsync %s", s->path);
    return 0;
}

struct recover_ctx {
    char **names;       /* sorted */
    bool *found;
    size_t n;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int recover_name(void *ctx, int dirfd, const char *name, size_t len,
                        enum maildir_sub sub, struct err *e)
{
    struct recover_ctx *c = ctx;
    const char *colon = memchr(name, ':', len);
    size_t blen = colon ? (size_t)(colon - name) : len;
    size_t lo = 0, hi = c->n;

    (void)dirfd;
    (void)sub;
    (void)e;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strncmp(c->names[mid], name, blen);

        if (r == 0 && c->names[mid][blen] != '\0')
            r = 1;
        if (r == 0) {
            c->found[mid] = true;
            return 0;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int fetch_state_recover(struct fetch_state *s, const struct maildir_folder *f,
                        size_t *done_out, size_t *dropped_out, struct err *e)
{
    struct recover_ctx c = {0};
    size_t done = 0, dropped = 0;
    char **uidls;
    size_t nu = 0;

    if (done_out)
        *done_out = 0;
    if (dropped_out)
        *dropped_out = 0;
    for (size_t i = 0; i < s->cap; i++)
        if (s->v[i].uidl && s->v[i].state == FETCH_PENDING)
            nu++;
    if (nu == 0)
        return 0;
    uidls = XNEWARRAY(char *, nu);
    c.names = XNEWARRAY(char *, nu);
    c.found = xcalloc(nu, sizeof(bool));
    nu = 0;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->v[i].uidl && s->v[i].state == FETCH_PENDING) {
            uidls[nu++] = xstrdup(s->v[i].uidl);
            if (strcmp(s->v[i].name, "-") != 0)
                c.names[c.n++] = xstrdup(s->v[i].name);
        }
    }
    qsort(c.names, c.n, sizeof(*c.names), cmp_str);
    if (c.n > 0 && maildir_scan_names(f, recover_name, &c, e) < 0)
        goto fail;
    for (size_t i = 0; i < nu; i++) {
        const struct fetch_entry *en = fetch_state_get(s, uidls[i]);
        const char *const *hit = c.n ? bsearch(&en->name, c.names, c.n, sizeof(*c.names),
                                               cmp_str) : NULL;

        if (hit != NULL && c.found[hit - (const char *const *)c.names]) {
            char *name = xstrdup(en->name);
            char *tmp = xasprintf("%s/tmp/%s", f->path, name);

            (void)unlink(tmp);   /* the link in new/ or cur/ is the message */
            free(tmp);
            fetch_state_set(s, uidls[i], FETCH_DONE, en->first_seen, name);
            free(name);
            done++;
        } else {
            if (strcmp(en->name, "-") != 0) {
                char *tmp = xasprintf("%s/tmp/%s", f->path, en->name);

                (void)unlink(tmp);
                free(tmp);
            }
            fetch_state_set(s, uidls[i], FETCH_SEEN, en->first_seen, NULL);
            dropped++;
        }
    }
    for (size_t i = 0; i < nu; i++)
        free(uidls[i]);
    for (size_t i = 0; i < c.n; i++)
        free(c.names[i]);
    free(uidls);
    free(c.names);
    free(c.found);
    if (done_out)
        *done_out = done;
    if (dropped_out)
        *dropped_out = dropped;
    return 0;
fail:
    for (size_t i = 0; i < nu; i++)
        free(uidls[i]);
    for (size_t i = 0; i < c.n; i++)
        free(c.names[i]);
    free(uidls);
    free(c.names);
    free(c.found);
    return -1;
}

int fetch_state_compact(struct fetch_state *s, bool (*keep)(void *ctx, const char *uidl),
                        void *ctx, struct err *e)
{
    char *tmp = xasprintf("%s.new", s->path);
    struct buf b = BUF_INIT;
    int fd = -1, nfd;

    for (size_t i = 0; i < s->cap; i++) {
        const char *u = s->v[i].uidl;

        if (u != NULL && keep != NULL && !keep(ctx, u)) {
            entry_del(s, u);
            i--;   /* the shift may have moved another entry into slot i */
        }
    }
    if (buf_printf(&b, "%s\n", STATE_MAGIC) < 0)
        die("fetch: state buffer");
    for (size_t i = 0; i < s->cap; i++)
        if (s->v[i].uidl != NULL)
            journal_entry(&b, &s->v[i]);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, b.data, b.len) < 0 || fsync(fd) < 0) {
        err_sys(e, "%s", tmp);
        goto fail;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, s->path) < 0) {
        err_sys(e, "rename %s", tmp);
        goto fail;
    }
    if (fsync_dir_of(s->path, e) < 0)
        goto fail_kept;
    nfd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (nfd < 0) {
        err_sys(e, "%s", s->path);
        goto fail_kept;
    }
    close(s->fd);
    s->fd = nfd;
    buf_reset(&s->out);
    buf_free(&b);
    free(tmp);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
fail_kept:
    buf_free(&b);
    free(tmp);
    return -1;
}

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int outlen = 32;

    if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1)
        die("SHA-256 failed");
}

char *fetch_state_path(const char *dir, const struct fetch_account *a)
{
    struct buf b = BUF_INIT;
    unsigned char md[32];
    char h[65];
    char *path;

    if (buf_printf(&b, "pop%c%s%c%s%c%u%c%s", '\0', a->name, '\0', a->host, '\0', a->port,
                   '\0', a->user) < 0)
        die("fetch: buffer");
    sha256(b.data, b.len, md);
    hex(md, 16, h);
    path = xasprintf("%s/%s.state", dir, h);
    buf_free(&b);
    return path;
}

char *fetch_state_dir(void)
{
    const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

    if (x != NULL && x[0] == '/')
        return xasprintf("%s/correo/pop", x);
    if (home != NULL && home[0] != '\0')
        return xasprintf("%s/.local/state/correo/pop", home);
    return NULL;
}

/* A unique Maildir base name, "<sec>.M<usec>P<pid>F<n>.<host>": the "F"
 * (where lib/maildir's own names have "Q") keeps them apart from names that
 * module makes in the same process.  The host name and pid are looked up
 * once; bytes of the host outside 0x21-0x7e and '/', ':', ',' are written
 * as "\ooo" so that the name is one word of the state file. */
static char *unique_name(void)
{
    static char host[4 * 64 + 1];
    static long pid;
    static unsigned long n;
    struct timespec ts;

    if (pid == 0) {
        char raw[256];
        size_t o = 0;

        if (gethostname(raw, sizeof(raw)) != 0 || raw[0] == '\0')
            strcpy(raw, "localhost");
        raw[sizeof(raw) - 1] = '\0';
        for (const unsigned char *p = (const unsigned char *)raw; *p && o + 4 < sizeof(host);
             p++) {
            if (*p < 0x21 || *p > 0x7e || *p == '/' || *p == ':' || *p == ',' || *p == '\\') {
                snprintf(host + o, sizeof(host) - o, "\\%03o", *p);
                o += 4;
            } else {
                host[o++] = (char)*p;
            }
        }
        host[o] = '\0';
        pid = (long)getpid();
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return xasprintf("%lld.M%ldP%ldF%lu.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000, pid,
                     n++, host);
}

/* ---- failure injection ------------------------------------------------------
 * Testing aid: CORREO_FETCH_KILL_AT=STEP:N raises SIGKILL when STEP is reached
 * for the Nth time in this process (steps: after-retr, after-write,
 * after-fsync, after-link, after-record, after-dele, before-quit).  The
 * integration tests use it to check that a kill at any point neither loses
 * nor duplicates mail. */

static void step(const char *name)
{
    static bool parsed;
    static char want[32];
    static long want_n, count;
    const char *env;

    if (!parsed) {
        parsed = true;
        env = getenv("CORREO_FETCH_KILL_AT");
        if (env != NULL) {
            const char *colon = strchr(env, ':');
            size_t len = colon ? (size_t)(colon - env) : strlen(env);

            if (len < sizeof(want)) {
                memcpy(want, env, len);
                want[len] = '\0';
                want_n = colon ? strtol(colon + 1, NULL, 10) : 1;
            }
        }
    }
    if (want[0] == '\0' || strcmp(want, name) != 0)
        return;
    if (++count == want_n)
        raise(SIGKILL);
}

/* ---- one account --------------------------------------------------------- */

/* What the accounts of a run leave for notmuch. */
struct fetch_nm {
    char **paths;                  /* files delivered by notmuch=index accounts */
    size_t n, cap;
    bool run_new;                  /* a notmuch=new account delivered something */
};

static void nm_add(struct fetch_nm *nm, char *path)
{
    if (nm->n == nm->cap) {
        nm->cap = nm->cap ? nm->cap * 2 : 64;
        nm->paths = xreallocarray(nm->paths, nm->cap, sizeof(*nm->paths));
    }
    nm->paths[nm->n++] = path;
}

struct run {
    const struct config *cfg;
    const struct fetch_account *a;
    const struct fetch_ui *ui;
    char *label;                   /* "user@host", sanitized */
    struct fetch_state *st;
    struct maildir_folder *folder;
    char *folder_abs;              /* the folder's path, absolute */
    struct fetch_nm *nm;
    int tmp_fd, new_fd;
    struct pop3 *pop;
    struct pop3_msg *msgs;
    size_t n_msgs;
    bool *on_server_mark;          /* unused slot for compaction */
    time_t now;
    bool use_syncfs;
    size_t n_new, n_failed;
    /* the batch being received */
    size_t bn;
    char **names;
    int *fds;
    bool *ok;
    struct buf wbuf;
    size_t cur;                    /* message being written */
    /* progress */
    uint64_t bytes_total, bytes_done;
    size_t count_total, count_done;
    long long last_progress;
    bool progress_shown;
};

static void say(struct run *r, bool error, const char *fmt, ...) CORREO_PRINTF(3, 4);
static void say(struct run *r, bool error, const char *fmt, ...)
{
    char *text;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vasprintf");
    if (r->ui && r->ui->say) {
        char *line = xasprintf("%s: %s", r->label, text);

        r->ui->say(r->ui->ctx, error, line);
        free(line);
    }
    free(text);
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void progress(struct run *r, bool final)
{
    long long now;
    char *t;

    if (r->ui == NULL || r->ui->progress == NULL || r->bytes_total < PROGRESS_BYTES)
        return;
    if (final) {
        if (r->progress_shown)
            r->ui->progress(r->ui->ctx, "");
        return;
    }
    now = mono_ms();
    if (now - r->last_progress < PROGRESS_MS)
        return;
    r->last_progress = now;
    r->progress_shown = true;
    t = xasprintf("%s: %zu/%zu messages, %.1f/%.1f MB", r->label, r->count_done, r->count_total,
                  (double)r->bytes_done / 1e6, (double)r->bytes_total / 1e6);
    r->ui->progress(r->ui->ctx, t);
    free(t);
}

static int wflush(struct run *r, struct err *e)
{
    if (r->wbuf.len > 0) {
        if (write_all(r->fds[r->cur], r->wbuf.data, r->wbuf.len) < 0)
            return err_sys(e, "write tmp/%s", r->names[r->cur]);
        buf_reset(&r->wbuf);
    }
    return 0;
}

static int sink_begin(void *ctx, size_t i, struct err *e)
{
    struct run *r = ctx;

    r->cur = i;
    buf_reset(&r->wbuf);
    r->fds[i] = openat(r->tmp_fd, r->names[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (r->fds[i] < 0)
        return err_sys(e, "%s/tmp/%s", r->folder->path, r->names[i]);
    return 0;
}

static int sink_data(void *ctx, size_t i, const char *p, size_t n, struct err *e)
{
    struct run *r = ctx;

    (void)i;
    r->bytes_done += n;
    if (r->wbuf.len + n > WBUF_SIZE && wflush(r, e) < 0)
        return -1;
    if (n >= WBUF_SIZE)
        return write_all(r->fds[r->cur], p, n) < 0
                   ? err_sys(e, "write tmp/%s", r->names[r->cur]) : 0;
    if (buf_append(&r->wbuf, p, n) < 0)
        die("fetch: write buffer");
    return 0;
}

static int sink_end(void *ctx, size_t i, const struct err *msg_err, struct err *e)
{
    struct run *r = ctx;

    r->count_done++;
    if (msg_err != NULL) {
        if (r->fds[i] >= 0) {
            close(r->fds[i]);
            r->fds[i] = -1;
            (void)unlinkat(r->tmp_fd, r->names[i], 0);
        }
        buf_reset(&r->wbuf);
        say(r, true, "%s", msg_err->text);
        r->ok[i] = false;
        return 0;
    }
    step("after-retr");
    if (wflush(r, e) < 0)
        return -1;
    if (r->use_syncfs) {
        /* syncfs() makes it durable later: no need to keep it open */
        if (close(r->fds[i]) < 0) {
            r->fds[i] = -1;
            return err_sys(e, "close %s/tmp/%s", r->folder->path, r->names[i]);
        }
        r->fds[i] = -1;
    }
    step("after-write");
    r->ok[i] = true;
    progress(r, false);
    return 0;
}

static uint64_t limit_for(const struct run *r, uint64_t size)
{
    uint64_t lim = size + size / 16 + 4096;

    if (r->a->max_size > 0 && lim > r->a->max_size)
        lim = r->a->max_size;
    return lim;
}

/* Make a batch durable: fsync the files, link them into new/, fsync new/,
 * record D, remove the tmp/ names. */
static int batch_commit(struct run *r, const size_t *idx, struct err *e)
{
    size_t n = r->bn;

    /* One syncfs() for the batch: measured (tests/bench/bench-pop3.py) much
     * faster than an fsync of each file in a row, which costs a journal
     * commit per file on ext4.  It also reports write-back errors of the
     * file system (Linux 5.8 and later).  Where it is not available, each
     * file is fsync'ed. */
    if (r->use_syncfs && syncfs(r->tmp_fd) < 0) {
        if (errno != ENOSYS && errno != EINVAL)
            return err_sys(e, "syncfs %s", r->folder->path);
        r->use_syncfs = false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!r->ok[i])
            continue;
        if (!r->use_syncfs) {
            if (r->fds[i] < 0)
                r->fds[i] = openat(r->tmp_fd, r->names[i], O_RDONLY | O_CLOEXEC);
            if (r->fds[i] < 0 || fsync(r->fds[i]) < 0)
                return err_sys(e, "fsync %s/tmp/%s", r->folder->path, r->names[i]);
        }
        step("after-fsync");
        if (r->fds[i] >= 0)
            close(r->fds[i]);
        r->fds[i] = -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!r->ok[i])
            continue;
        if (linkat(r->tmp_fd, r->names[i], r->new_fd, r->names[i], 0) < 0)
            return err_sys(e, "link %s/new/%s", r->folder->path, r->names[i]);
        step("after-link");
    }
    if (fsync(r->new_fd) < 0)
        return err_sys(e, "fsync %s/new", r->folder->path);
    /* The links in new/ are durable: the tmp/ names can go. */
    for (size_t i = 0; i < n; i++)
        if (r->ok[i])
            (void)unlinkat(r->tmp_fd, r->names[i], 0);
    for (size_t i = 0; i < n; i++) {
        const struct pop3_msg *m = &r->msgs[idx[i]];
        const struct fetch_entry *en = fetch_state_get(r->st, m->uidl);
        time_t first = en ? en->first_seen : r->now;

        if (r->ok[i]) {
            fetch_state_set(r->st, m->uidl, FETCH_DONE, first, r->names[i]);
            r->n_new++;
            /* durable in new/ since the fsync above: notmuch may have it */
            if (r->a->notmuch == FETCH_NOTMUCH_INDEX)
                nm_add(r->nm, xasprintf("%s/new/%s", r->folder_abs, r->names[i]));
        } else {
            fetch_state_set(r->st, m->uidl, FETCH_SEEN, first, NULL);
            r->n_failed++;
        }
    }
    if (fetch_state_sync(r->st, e) < 0)
        return -1;
    step("after-record");
    return 0;
}

static void batch_abandon(struct run *r)
{
    for (size_t i = 0; i < r->bn; i++) {
        if (r->fds[i] >= 0) {
            close(r->fds[i]);
            r->fds[i] = -1;
        }
        if (r->names[i] != NULL)
            (void)unlinkat(r->tmp_fd, r->names[i], 0);
    }
}

static void batch_free_names(struct run *r)
{
    for (size_t i = 0; i < r->bn; i++) {
        free(r->names[i]);
        r->names[i] = NULL;
        r->fds[i] = -1;
        r->ok[i] = false;
    }
    r->bn = 0;
}

static int download_batch(struct run *r, const size_t *idx, size_t n, struct err *e)
{
    unsigned *nums = XNEWARRAY(unsigned, n);
    uint64_t *limits = XNEWARRAY(uint64_t, n);
    struct pop3_sink sink = {sink_begin, sink_data, sink_end, r};
    int rc;

    r->bn = n;
    for (size_t i = 0; i < n; i++) {
        const struct pop3_msg *m = &r->msgs[idx[i]];
        const struct fetch_entry *en = fetch_state_get(r->st, m->uidl);

        r->names[i] = unique_name();
        r->fds[i] = -1;
        r->ok[i] = false;
        nums[i] = m->num;
        limits[i] = limit_for(r, m->size);
        fetch_state_set(r->st, m->uidl, FETCH_PENDING, en ? en->first_seen : r->now,
                        r->names[i]);
    }
    rc = fetch_state_sync(r->st, e);
    if (rc == 0)
        rc = pop3_retr(r->pop, nums, limits, n, &sink, e);
    if (rc == 0)
        rc = batch_commit(r, idx, e);
    if (rc < 0)
        batch_abandon(r);
    batch_free_names(r);
    free(nums);
    free(limits);
    return rc;
}

/* ---- filter delivery ------------------------------------------------------ */

struct filter_sink {
    int fd;
    bool ok;
    struct run *r;
};

static int fsink_begin(void *ctx, size_t i, struct err *e)
{
    (void)ctx;
    (void)i;
    (void)e;
    return 0;
}

static int fsink_data(void *ctx, size_t i, const char *p, size_t n, struct err *e)
{
    struct filter_sink *f = ctx;

    (void)i;
    f->r->bytes_done += n;
    return write_all(f->fd, p, n) < 0 ? err_sys(e, "write") : 0;
}

static int fsink_end(void *ctx, size_t i, const struct err *msg_err, struct err *e)
{
    struct filter_sink *f = ctx;

    (void)i;
    (void)e;
    f->r->count_done++;
    if (msg_err != NULL) {
        say(f->r, true, "%s", msg_err->text);
        return 0;
    }
    step("after-retr");
    step("after-write");
    f->ok = true;
    return 0;
}

/* Run the filter with the file on stdin; 0 when it exited 0. */
static int run_filter(struct run *r, int fd, struct err *e)
{
    int errp[2], devnull;
    pid_t pid;
    struct buf errout;
    int status, timeout = r->a->timeout_ms > 0 ? r->a->timeout_ms : 600000;
    bool timed_out = false;

    if (lseek(fd, 0, SEEK_SET) < 0)
        return err_sys(e, "lseek");
    if (pipe2(errp, O_CLOEXEC) < 0)
        return err_sys(e, "pipe");
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid = fork();
    if (pid < 0) {
        close(errp[0]);
        close(errp[1]);
        if (devnull >= 0)
            close(devnull);
        return err_sys(e, "fork");
    }
    if (pid == 0) {
        if (dup2(fd, 0) < 0 || (devnull >= 0 && dup2(devnull, 1) < 0) || dup2(errp[1], 2) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", r->a->filter, (char *)NULL);
        _exit(127);
    }
    close(errp[1]);
    if (devnull >= 0)
        close(devnull);
    buf_init(&errout, FILTER_ERR_MAX);
    for (;;) {
        struct pollfd pfd = {errp[0], POLLIN, 0};
        char tmp[512];
        int pr = poll(&pfd, 1, timeout);
        ssize_t got;

        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0) {
            timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        got = read(errp[0], tmp, sizeof(tmp));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (buf_append(&errout, tmp, (size_t)got) < 0) {
            /* beyond the ceiling: the start is enough for the report */
        }
    }
    close(errp[0]);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            buf_free(&errout);
            return err_sys(e, "waitpid");
        }
    }
    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        buf_free(&errout);
        return 0;
    }
    {
        struct buf shown = BUF_INIT;

        display_lines(&shown, errout.data ? errout.data : "", errout.len);
        if (timed_out)
            err_set(e, ERR_IO, "the filter timed out%s%s", shown.len ? ": " : "",
                    buf_cstr(&shown));
        else if (WIFEXITED(status))
            err_set(e, ERR_IO, "the filter exited with status %d%s%s", WEXITSTATUS(status),
                    shown.len ? ": " : "", buf_cstr(&shown));
        else
            err_set(e, ERR_IO, "the filter was killed by signal %d", WTERMSIG(status));
        buf_free(&shown);
    }
    buf_free(&errout);
    return -1;
}

static int download_filtered(struct run *r, size_t i, const char *dir, struct err *e)
{
    const struct pop3_msg *m = &r->msgs[i];
    const struct fetch_entry *en = fetch_state_get(r->st, m->uidl);
    time_t first = en ? en->first_seen : r->now;
    char *path = xasprintf("%s/msg.XXXXXX", dir);
    struct filter_sink fs = {-1, false, r};
    struct pop3_sink sink = {fsink_begin, fsink_data, fsink_end, &fs};
    uint64_t limit = limit_for(r, m->size);
    unsigned num = m->num;
    struct err fe;
    int rc = -1;

    fs.fd = mkostemp(path, O_CLOEXEC);
    if (fs.fd < 0) {
        err_sys(e, "%s", path);
        free(path);
        return -1;
    }
    (void)unlink(path);
    fetch_state_set(r->st, m->uidl, FETCH_PENDING, first, "-");
    if (fetch_state_sync(r->st, e) < 0)
        goto out;
    if (pop3_retr(r->pop, &num, &limit, 1, &sink, e) < 0)
        goto out;
    if (!fs.ok) {
        fetch_state_set(r->st, m->uidl, FETCH_SEEN, first, NULL);
        r->n_failed++;
        rc = fetch_state_sync(r->st, e);
        goto out;
    }
    step("after-fsync");
    if (run_filter(r, fs.fd, &fe) < 0) {
        say(r, true, "message %u not delivered, left on the server: %s", m->num, fe.text);
        fetch_state_set(r->st, m->uidl, FETCH_SEEN, first, NULL);
        r->n_failed++;
        rc = fetch_state_sync(r->st, e);
        goto out;
    }
    step("after-link");
    fetch_state_set(r->st, m->uidl, FETCH_DONE, first, "-");
    if (fetch_state_sync(r->st, e) < 0)
        goto out;
    step("after-record");
    r->n_new++;
    progress(r, false);
    rc = 0;
out:
    close(fs.fd);
    free(path);
    return rc;
}

/* ---- the run of one account ---------------------------------------------- */

static int uidl_cmp_idx(const void *a, const void *b, void *ctx)
{
    const struct pop3_msg *v = ctx;

    return strcmp(v[*(const size_t *)a].uidl, v[*(const size_t *)b].uidl);
}

/* Messages on the server, by UIDL, for compaction. */
struct server_set {
    const struct pop3_msg *v;
    size_t *sorted;
    size_t n;
};

static bool on_server(void *ctx, const char *uidl)
{
    const struct server_set *s = ctx;
    size_t lo = 0, hi = s->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[s->sorted[mid]].uidl, uidl);

        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* No UIDL: identify each message by its header and size. */
static int header_ids(struct run *r, struct err *e)
{
    struct buf hdr;

    if (!pop3_caps(r->pop)->top && pop3_caps(r->pop)->capa) {
        return err_set(e, ERR_UNSUPPORTED, "the server has neither UIDL nor TOP: its messages "
                                           "cannot be told apart safely");
    }
    say(r, false, "the server has no UIDL: identifying messages by a hash of their header "
                  "and size");
    buf_init(&hdr, HEADER_MAX);
    for (size_t i = 0; i < r->n_msgs; i++) {
        unsigned char md[32];
        char h[65];
        unsigned dup = 1;

        buf_reset(&hdr);
        if (pop3_top(r->pop, r->msgs[i].num, 0, &hdr, e) < 0) {
            buf_free(&hdr);
            return -1;
        }
        if (buf_printf(&hdr, "\n%llu", (unsigned long long)r->msgs[i].size) < 0) {
            /* at the ceiling: the size goes in its own digest */
            buf_truncate(&hdr, hdr.len - (hdr.len > 32 ? 32 : hdr.len));
            if (buf_printf(&hdr, "\n%llu", (unsigned long long)r->msgs[i].size) < 0)
                die("fetch: header buffer");
        }
        sha256(hdr.data, hdr.len, md);
        hex(md, 30, h);
        snprintf(r->msgs[i].uidl, sizeof(r->msgs[i].uidl), "hdr-%s", h);
        for (size_t k = 0; k < i; k++) {
            if (strncmp(r->msgs[k].uidl, r->msgs[i].uidl, 64) == 0) {
                dup++;
            }
        }
        if (dup > 1)
            snprintf(r->msgs[i].uidl, sizeof(r->msgs[i].uidl), "hdr-%.60s-%u", h, dup % 100u);
    }
    buf_free(&hdr);
    return 0;
}

/* TOP n 0 of an oversized message, summarized for the report. */
static void report_oversized(struct run *r, const struct pop3_msg *m)
{
    struct buf hdr;
    struct err e;
    char *from = NULL, *subject = NULL;

    buf_init(&hdr, HEADER_MAX);
    if (pop3_caps(r->pop)->top && pop3_top(r->pop, m->num, 0, &hdr, &e) == 0 && hdr.len > 0) {
        const char *p = hdr.data, *end = hdr.data + hdr.len;

        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

            if (len == 0)
                break;
            if (from == NULL && len > 5 && strncasecmp(p, "From:", 5) == 0)
                from = sanitize_term_dup(p + 5, len - 5, 0);
            else if (subject == NULL && len > 8 && strncasecmp(p, "Subject:", 8) == 0)
                subject = sanitize_term_dup(p + 8, len - 8, 0);
            p += len + 1;
        }
    }
    say(r, true, "message %u (%llu bytes) is larger than max_size, left on the server%s%s%s%s",
        m->num, (unsigned long long)m->size, from ? "; From:" : "", from ? from : "",
        subject ? "; Subject:" : "", subject ? subject : "");
    free(from);
    free(subject);
    buf_free(&hdr);
}

static int get_password(struct run *r, char **out, struct err *e)
{
    const struct fetch_account *a = r->a;

    *out = NULL;
    if (a->pass != NULL) {
        *out = xstrdup(a->pass);
        return 0;
    }
    if (a->url_pass != NULL) {
        *out = xstrdup(a->url_pass);
        return 0;
    }
    if (a->pass_cmd != NULL)
        return child_secret("pass_cmd", a->pass_cmd,
                            a->timeout_ms > 0 ? a->timeout_ms : POP3_DEFAULT_TIMEOUT_MS, out, e);
    return err_set(e, ERR_INVAL, "no password (set pass or pass_cmd)");
}

static int open_folder(struct run *r, struct err *e)
{
    const struct config *cfg = r->cfg;
    const char *want = r->a->folder ? r->a->folder : "!";
    char *path;
    int rc;

    if (strcmp(want, "!") == 0 && !(cfg->opt.spoolfile && cfg->opt.spoolfile[0]))
        path = config_mailbox_path(cfg, cfg->opt.folder);
    else
        path = config_mailbox_path(cfg, want);
    rc = maildir_folder_open_path(path, &r->folder, e);
    if (rc < 0)
        err_prefix(e, "folder %s", path);
    free(path);
    if (rc < 0)
        return -1;
    if (r->folder->path[0] == '/') {
        r->folder_abs = xstrdup(r->folder->path);
    } else {
        char *cwd = getcwd(NULL, 0);

        if (cwd == NULL)
            return err_sys(e, "getcwd");
        r->folder_abs = xasprintf("%s/%s", cwd, r->folder->path);
        free(cwd);
    }
    path = xasprintf("%s/tmp", r->folder->path);
    r->tmp_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(path);
    path = xasprintf("%s/new", r->folder->path);
    r->new_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(path);
    if (r->tmp_fd < 0 || r->new_fd < 0)
        return err_sys(e, "%s", r->folder->path);
    return 0;
}

static bool due_for_delete(const struct run *r, const struct fetch_entry *en)
{
    if (en == NULL || en->state != FETCH_DONE)
        return false;
    if (r->a->keep == FETCH_KEEP_NO)
        return true;
    if (r->a->keep == FETCH_KEEP_DAYS)
        return r->now - en->first_seen >= r->a->keep_seconds;
    return false;
}

static int delete_done(struct run *r, size_t *n_deleted, struct err *e)
{
    unsigned *nums = XNEWARRAY(unsigned, r->n_msgs ? r->n_msgs : 1);
    size_t *which = XNEWARRAY(size_t, r->n_msgs ? r->n_msgs : 1);
    bool ok[POP3_WINDOW];
    size_t n = 0;
    int rc = 0;

    *n_deleted = 0;
    for (size_t i = 0; i < r->n_msgs; i++) {
        if (due_for_delete(r, fetch_state_get(r->st, r->msgs[i].uidl))) {
            nums[n] = r->msgs[i].num;
            which[n++] = i;
        }
    }
    for (size_t k = 0; k < n && rc == 0; k += POP3_WINDOW) {
        size_t c = n - k < POP3_WINDOW ? n - k : POP3_WINDOW;

        if (pop3_dele(r->pop, nums + k, c, ok, e) < 0) {
            rc = -1;
            break;
        }
        for (size_t j = 0; j < c; j++) {
            if (ok[j]) {
                step("after-dele");
                (*n_deleted)++;
            } else {
                which[k + j] = SIZE_MAX;
            }
        }
    }
    if (rc == 0) {
        step("before-quit");
        if (pop3_quit(r->pop, e) < 0) {
            rc = -1;
        } else {
            for (size_t k = 0; k < n; k++)
                if (which[k] != SIZE_MAX)
                    fetch_state_drop(r->st, r->msgs[which[k]].uidl);
            rc = fetch_state_sync(r->st, e);
        }
    }
    free(nums);
    free(which);
    return rc;
}

static int fetch_one(struct run *r, const char *state_dir, struct err *e)
{
    const struct fetch_account *a = r->a;
    struct pop3_opts po;
    struct server_set ss = {0};
    size_t *todo = NULL, n_todo = 0, recovered = 0, redo = 0, n_deleted = 0;
    char *state_path = NULL, *pass = NULL;
    bool uidl_ok;
    int rc = -1;

    if (open_folder(r, e) < 0)
        goto out;
    if (fs_mkdirs(state_dir, 0700, e) < 0)
        goto out;
    state_path = fetch_state_path(state_dir, a);
    if (fetch_state_open(state_path, &r->st, e) < 0)
        goto out;
    if (fetch_state_recover(r->st, r->folder, &recovered, &redo, e) < 0)
        goto out;
    if (get_password(r, &pass, e) < 0)
        goto out;

    memset(&po, 0, sizeof(po));
    po.host = a->host;
    po.port = a->port;
    po.security = a->security;
    po.tls_ca_file = a->tls_ca_file;
    po.tls_fingerprint = a->tls_fingerprint;
    po.timeout_ms = a->timeout_ms;
    if (pop3_open(&r->pop, &po, e) < 0)
        goto out;
    if (pop3_auth(r->pop, a->user, pass, e) < 0)
        goto out;
    explicit_bzero(pass, strlen(pass));
    if (pop3_list(r->pop, true, &r->msgs, &r->n_msgs, &uidl_ok, e) < 0)
        goto out;
    if (!uidl_ok && header_ids(r, e) < 0)
        goto out;

    /* Forget what is no longer on the server; this also makes the
     * recovery above durable. */
    ss.v = r->msgs;
    ss.n = r->n_msgs;
    ss.sorted = XNEWARRAY(size_t, r->n_msgs ? r->n_msgs : 1);
    for (size_t i = 0; i < r->n_msgs; i++)
        ss.sorted[i] = i;
    qsort_r(ss.sorted, r->n_msgs, sizeof(size_t), uidl_cmp_idx, r->msgs);
    if (fetch_state_compact(r->st, on_server, &ss, e) < 0)
        goto out;

    todo = XNEWARRAY(size_t, r->n_msgs ? r->n_msgs : 1);
    for (size_t i = 0; i < r->n_msgs; i++) {
        const struct fetch_entry *en = fetch_state_get(r->st, r->msgs[i].uidl);

        if (en != NULL && en->state == FETCH_DONE)
            continue;
        if (en == NULL)
            fetch_state_set(r->st, r->msgs[i].uidl, FETCH_SEEN, r->now, NULL);
        if (a->max_size > 0 && r->msgs[i].size > a->max_size) {
            report_oversized(r, &r->msgs[i]);
            r->n_failed++;
            continue;
        }
        todo[n_todo++] = i;
        r->bytes_total += r->msgs[i].size;
    }
    r->count_total = n_todo;

    if (a->filter != NULL) {
        for (size_t k = 0; k < n_todo; k++)
            if (download_filtered(r, todo[k], state_dir, e) < 0)
                goto out;
    } else {
        size_t k = 0;

        while (k < n_todo) {
            size_t c = 0;
            uint64_t bytes = 0;

            size_t most = r->use_syncfs ? BATCH_MSGS : BATCH_MSGS_FSYNC;

            while (k + c < n_todo && c < most &&
                   (c == 0 || bytes + r->msgs[todo[k + c]].size <= BATCH_BYTES)) {
                bytes += r->msgs[todo[k + c]].size;
                c++;
            }
            if (download_batch(r, todo + k, c, e) < 0)
                goto out;
            k += c;
        }
    }
    progress(r, true);
    if (fetch_state_sync(r->st, e) < 0)
        goto out;
    if (delete_done(r, &n_deleted, e) < 0)
        goto out;
    rc = 0;
out:
    progress(r, true);
    if (r->n_new > 0)
        say(r, false, "%zu new message%s", r->n_new, r->n_new == 1 ? "" : "s");
    if (rc == 0 && n_deleted > 0 && a->keep == FETCH_KEEP_DAYS)
        say(r, false, "%zu message%s first seen %ld days ago or earlier deleted on the server",
            n_deleted, n_deleted == 1 ? "" : "s", a->keep_seconds / 86400);
    if (pass != NULL) {
        explicit_bzero(pass, strlen(pass));
        free(pass);
    }
    free(todo);
    free(ss.sorted);
    free(state_path);
    return rc;
}

static int account_run(const struct config *cfg, const struct config_account *ca,
                       const struct fetch_ui *ui, struct fetch_nm *nm, size_t *n_new)
{
    struct fetch_account a;
    struct run r;
    struct err e;
    char *state_dir = NULL, *label;
    int status = FETCH_OK;

    err_clear(&e);
    memset(&r, 0, sizeof(r));
    if (fetch_account_parse(ca, &a, &e) < 0) {
        if (ui && ui->say)
            ui->say(ui->ctx, true, e.text);
        return FETCH_FAILED;
    }
    label = xasprintf("%s@%s", a.user, a.host);
    r.label = sanitize_term_dup(label, strlen(label), 0);
    free(label);
    r.cfg = cfg;
    r.a = &a;
    r.ui = ui;
    r.nm = nm;
    r.tmp_fd = r.new_fd = -1;
    r.now = time(NULL);
    {
        /* Benchmarking aid: CORREO_FETCH_SYNC=fsync makes each batch fsync
         * its files one by one instead of one syncfs() (see batch_commit). */
        const char *sm = getenv("CORREO_FETCH_SYNC");

        r.use_syncfs = !(sm != NULL && strcmp(sm, "fsync") == 0);
    }
    r.names = XNEWARRAY(char *, BATCH_MSGS);
    r.fds = XNEWARRAY(int, BATCH_MSGS);
    r.ok = XNEWARRAY(bool, BATCH_MSGS);
    for (size_t i = 0; i < BATCH_MSGS; i++) {
        r.names[i] = NULL;
        r.fds[i] = -1;
    }
    buf_init(&r.wbuf, 0);
    state_dir = fetch_state_dir();
    if (state_dir == NULL) {
        err_set(&e, ERR_INVAL, "neither $XDG_STATE_HOME nor $HOME is set");
        status = FETCH_FAILED;
    } else if (fetch_one(&r, state_dir, &e) < 0) {
        status = (e.code == ERR_EXISTS && e.temporary) ? FETCH_LOCKED : FETCH_FAILED;
    } else if (r.n_failed > 0) {
        status = FETCH_FAILED;
    }
    if (status != FETCH_OK && e.code != ERR_OK)
        say(&r, true, "%s", e.text);
    if (n_new)
        *n_new += r.n_new;
    if (a.notmuch == FETCH_NOTMUCH_NEW && r.n_new > 0)
        nm->run_new = true;
    pop3_close(r.pop);
    free(r.msgs);
    fetch_state_close(r.st);
    if (r.tmp_fd >= 0)
        close(r.tmp_fd);
    if (r.new_fd >= 0)
        close(r.new_fd);
    maildir_folder_close(r.folder);
    free(r.folder_abs);
    buf_free(&r.wbuf);
    free(r.names);
    free(r.fds);
    free(r.ok);
    free(r.label);
    free(state_dir);
    fetch_account_free(&a);
    return status;
}

/* ---- notmuch ------------------------------------------------------------- */

int fetch_notmuch_new(int timeout_ms, struct err *e)
{
    const char *argv[] = {"notmuch", "new", "--quiet", NULL};
    struct buf out, errout;
    struct child c;
    int rc = 0;

    buf_init(&out, CHILD_OUTPUT_MAX);
    buf_init(&errout, CHILD_OUTPUT_MAX);
    memset(&c, 0, sizeof(c));
    c.argv = argv;
    c.out = &out;
    c.errout = &errout;
    c.timeout_ms = timeout_ms;
    if (child_run(&c, e) < 0) {
        err_prefix(e, "notmuch new");
        rc = -1;
    } else if (c.timed_out || c.signal != 0 || c.status != 0) {
        rc = child_err(e, "notmuch new", &c, (unsigned)timeout_ms);
    }
    buf_free(&out);
    buf_free(&errout);
    return rc;
}

#ifdef HAVE_NOTMUCH

/* The first line of a libnotmuch message (NULL or empty: the status),
 * sanitized for display. */
static void nm_message(struct buf *b, const char *msg, notmuch_status_t st)
{
    size_t n = msg != NULL ? strcspn(msg, "\n") : 0;

    if (n > 0)
        display_lines(b, msg, n);
    else
        display_lines(b, notmuch_status_to_string(st), strlen(notmuch_status_to_string(st)));
}

/* What `notmuch new` does to a message new to the database: with
 * synchronize_flags the tags of its Maildir flags, then new.tags ("unread"
 * only when no file of it is marked seen). */
static notmuch_status_t nm_tag_new(notmuch_message_t *m, char *const *tags, size_t n_tags,
                                   bool sync_flags)
{
    notmuch_status_t st = notmuch_message_freeze(m);

    if (st != NOTMUCH_STATUS_SUCCESS)
        return st;
    if (sync_flags)
        st = notmuch_message_maildir_flags_to_tags(m);
    for (size_t i = 0; i < n_tags && st == NOTMUCH_STATUS_SUCCESS; i++) {
        notmuch_bool_t seen = FALSE;

        if (strcmp(tags[i], "unread") == 0 &&
            notmuch_message_has_maildir_flag_st(m, 'S', &seen) == NOTMUCH_STATUS_SUCCESS &&
            seen)
            continue;
        st = notmuch_message_add_tag(m, tags[i]);
    }
    if (st == NOTMUCH_STATUS_SUCCESS)
        return notmuch_message_thaw(m);
    (void)notmuch_message_thaw(m);
    return st;
}

int fetch_notmuch_index(const char *const *paths, size_t n, size_t *n_indexed, struct err *e)
{
    notmuch_database_t *db = NULL;
    notmuch_config_values_t *v;
    notmuch_bool_t sync_flags = FALSE;
    notmuch_status_t st;
    struct buf first = BUF_INIT;
    char **tags = NULL, *msg = NULL;
    size_t n_tags = 0, done = 0, failed = 0;
    int rc = 0;

    if (n_indexed)
        *n_indexed = 0;
    if (n == 0)
        return 0;
    st = notmuch_database_open_with_config(NULL, NOTMUCH_DATABASE_MODE_READ_WRITE, NULL, NULL,
                                           &db, &msg);
    if (st != NOTMUCH_STATUS_SUCCESS) {
        if (st == NOTMUCH_STATUS_OUT_OF_MEMORY)
            die("fetch: out of memory in libnotmuch");
        nm_message(&first, msg, st);
        err_set(e, st == NOTMUCH_STATUS_NO_CONFIG || st == NOTMUCH_STATUS_NO_DATABASE
                       ? ERR_NOTFOUND : ERR_IO,
                "cannot open the notmuch database: %s", buf_cstr(&first));
        /* Another writer holds the lock: a later run may do. */
        err_scope(e, ERR_SCOPE_ACCOUNT, st == NOTMUCH_STATUS_XAPIAN_EXCEPTION);
        free(msg);
        buf_free(&first);
        return -1;
    }
    free(msg);
    if (notmuch_config_get_bool(db, NOTMUCH_CONFIG_SYNC_MAILDIR_FLAGS, &sync_flags) !=
        NOTMUCH_STATUS_SUCCESS)
        sync_flags = FALSE;
    for (v = notmuch_config_get_values(db, NOTMUCH_CONFIG_NEW_TAGS);
         v != NULL && notmuch_config_values_valid(v); notmuch_config_values_move_to_next(v)) {
        const char *t = notmuch_config_values_get(v);

        if (t == NULL || t[0] == '\0')
            continue;
        tags = xreallocarray(tags, n_tags + 1, sizeof(*tags));
        tags[n_tags++] = xstrdup(t);
    }
    if (v != NULL)
        notmuch_config_values_destroy(v);

    for (size_t i = 0; i < n; i++) {
        notmuch_message_t *m = NULL;

        st = notmuch_database_index_file(db, paths[i], NULL, &m);
        if (st == NOTMUCH_STATUS_SUCCESS)
            st = nm_tag_new(m, tags, n_tags, sync_flags);
        else if (st == NOTMUCH_STATUS_DUPLICATE_MESSAGE_ID)
            st = NOTMUCH_STATUS_SUCCESS;   /* already there: left as it is */
        if (m != NULL)
            notmuch_message_destroy(m);
        if (st == NOTMUCH_STATUS_OUT_OF_MEMORY)
            die("fetch: out of memory in libnotmuch");
        if (st == NOTMUCH_STATUS_SUCCESS) {
            done++;
            continue;
        }
        if (failed++ == 0) {
            const char *why = notmuch_status_to_string(st);

            if (st == NOTMUCH_STATUS_FILE_ERROR) {
                const char *root = notmuch_config_get(db, NOTMUCH_CONFIG_MAIL_ROOT);
                size_t rl = root != NULL ? strlen(root) : 0;

                while (rl > 1 && root[rl - 1] == '/')
                    rl--;
                if (access(paths[i], R_OK) < 0)
                    why = strerror(errno);
                else if (rl > 0 && (strncmp(paths[i], root, rl) != 0 || paths[i][rl] != '/'))
                    why = "not under the mail root of the notmuch configuration";
            }
            display_lines(&first, paths[i], strlen(paths[i]));
            if (buf_puts(&first, ": ") == 0)
                display_lines(&first, why, strlen(why));
        }
    }
    st = notmuch_database_destroy(db);
    if (st != NOTMUCH_STATUS_SUCCESS) {
        /* The changes may not have been written: count none. */
        err_set(e, ERR_IO, "closing the notmuch database: %s", notmuch_status_to_string(st));
        done = 0;
        rc = -1;
    } else if (failed > 0) {
        err_set(e, ERR_IO, "%zu of %zu file%s not indexed, the first: %s", failed, n,
                n == 1 ? "" : "s", buf_cstr(&first));
        rc = -1;
    }
    if (n_indexed)
        *n_indexed = done;
    for (size_t i = 0; i < n_tags; i++)
        free(tags[i]);
    free(tags);
    buf_free(&first);
    return rc;
}

#else

int fetch_notmuch_index(const char *const *paths, size_t n, size_t *n_indexed, struct err *e)
{
    (void)paths;
    if (n_indexed)
        *n_indexed = 0;
    if (n == 0)
        return 0;
    return err_set(e, ERR_UNSUPPORTED, "this correo was built without notmuch");
}

#endif

static void report_error(const struct fetch_ui *ui, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void report_error(const struct fetch_ui *ui, const char *fmt, ...)
{
    char *text, *shown;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        die("vasprintf");
    shown = sanitize_term_dup(text, strlen(text), 0);
    if (ui && ui->say)
        ui->say(ui->ctx, true, shown);
    free(shown);
    free(text);
}

/* After the accounts: index what they delivered, run `notmuch new`.  The
 * mail is durable and recorded already; a failure here is only reported. */
static int notmuch_after(struct fetch_nm *nm, const struct fetch_ui *ui)
{
    struct err e;
    int rc = 0;

    err_clear(&e);
    if (nm->n > 0) {
        size_t done = 0;

        if (fetch_notmuch_index((const char *const *)nm->paths, nm->n, &done, &e) < 0) {
            report_error(ui, "notmuch: %s (%zu of %zu delivered message%s not indexed)",
                         e.text, nm->n - done, nm->n, nm->n == 1 ? "" : "s");
            rc = -1;
        }
    }
    if (nm->run_new && fetch_notmuch_new(FETCH_NOTMUCH_NEW_TIMEOUT_MS, &e) < 0) {
        report_error(ui, "%s", e.text);
        rc = -1;
    }
    for (size_t i = 0; i < nm->n; i++)
        free(nm->paths[i]);
    free(nm->paths);
    memset(nm, 0, sizeof(*nm));
    return rc;
}

int fetch_run(const struct config *cfg, const char *const *names, size_t n,
              const struct fetch_ui *ui, size_t *n_new)
{
    bool failed = false, locked = false;
    struct fetch_nm nm = {0};
    size_t ran = 0;

    if (n_new)
        *n_new = 0;
    for (size_t i = 0; i < n; i++) {
        const struct config_account *ca = config_account_find(cfg, names[i]);

        if (ca == NULL || !fetch_is_pop_url(ca->url)) {
            char *s = sanitize_term_dup(names[i], strlen(names[i]), 0);
            char *t = xasprintf("%s: no such pop account", s);

            if (ui && ui->say)
                ui->say(ui->ctx, true, t);
            free(s);
            free(t);
            return FETCH_USAGE;
        }
    }
    for (size_t i = 0; i < cfg->n_accounts; i++) {
        const struct config_account *ca = &cfg->accounts[i];
        bool wanted = n == 0;
        int st;

        if (!fetch_is_pop_url(ca->url))
            continue;
        for (size_t k = 0; k < n && !wanted; k++)
            wanted = strcmp(names[k], ca->name) == 0;
        if (!wanted)
            continue;
        ran++;
        st = account_run(cfg, ca, ui, &nm, n_new);
        if (st == FETCH_LOCKED)
            locked = true;
        else if (st != FETCH_OK)
            failed = true;
    }
    if (notmuch_after(&nm, ui) < 0)
        failed = true;
    if (ran == 0 && n == 0 && ui && ui->say)
        ui->say(ui->ctx, true, "no pop:// or pops:// account is configured");
    if (ran == 0 && n == 0)
        return FETCH_FAILED;
    return failed ? FETCH_FAILED : locked ? FETCH_LOCKED : FETCH_OK;
}
