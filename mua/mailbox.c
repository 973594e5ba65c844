/* mailbox: backend choice, the open mailbox, helpers shared by backends. */
#include "mailbox.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "imap.h"
#include "rfc2047.h"
#include "xalloc.h"

static bool is_dir(const char *base, const char *sub)
{
    char *p = xasprintf("%s/%s", base, sub);
    struct stat st;
    bool ok = stat(p, &st) == 0 && S_ISDIR(st.st_mode);

    free(p);
    return ok;
}

/* The backend for a local path, or NULL. */
static const struct mailbox_ops *pick_backend(const char *path)
{
    if (is_dir(path, "cur") && is_dir(path, "new") && is_dir(path, "tmp"))
        return &mbox_maildir_ops;
    return NULL;
}

static char *last_component(const char *path)
{
    size_t n = strlen(path);
    const char *s;

    while (n > 1 && path[n - 1] == '/')
        n--;
    for (s = path + n; s > path && s[-1] != '/'; s--)
        ;
    return xstrndup(s, (size_t)(path + n - s));
}

int mailbox_open(const char *path, unsigned flags, struct mailbox **out, struct err *e)
{
    struct mailbox_open_opts o = {flags, NULL};

    return mailbox_open_opts(path, &o, out, e);
}

int mailbox_open_opts(const char *path, const struct mailbox_open_opts *opts,
                      struct mailbox **out, struct err *e)
{
    static const struct mailbox_open_opts defaults = {0, NULL};
    const struct mailbox_ops *ops;
    struct mailbox *mb;
    struct stat st;
    char *abs;

    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (path == NULL || path[0] == '\0')
        return err_set(e, ERR_INVAL, "empty mailbox path");
    if (strncmp(path, MAILBOX_NOTMUCH_PREFIX, strlen(MAILBOX_NOTMUCH_PREFIX)) == 0) {
#ifdef HAVE_NOTMUCH
        ops = &mbox_notmuch_ops;
        abs = xstrdup(path);
        goto attach_url;
#else
        err_set(e, ERR_UNSUPPORTED, "this correo was built without notmuch support");
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
#endif
    }
    if (imap_url_is(path)) {
        /* imap:// and imaps:// folders: the IMAP backend judges the URL. */
        ops = &mbox_imap_ops;
        abs = xstrdup(path);
        goto attach_url;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "%s: no such mailbox", path);
        else
            err_sys(e, "%s", path);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
    abs = realpath(path, NULL);
    if (abs == NULL) {
        err_sys(e, "%s", path);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
    ops = S_ISDIR(st.st_mode) ? pick_backend(abs) : NULL;
    if (ops == NULL) {
        free(abs);
        err_set(e, ERR_UNSUPPORTED, "%s: not a mailbox this program can open", path);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
attach_url:
    mb = XNEW(struct mailbox);
    mb->ops = ops;
    mb->path = abs;
    mb->name = last_component(abs);
    store_init(&mb->store);
    mb->readonly = (opts->flags & MAILBOX_READONLY) != 0;
    mb->hcache_dir = opts->hcache_dir != NULL ? xstrdup(opts->hcache_dir) : NULL;
    err_clear(&mb->warning);
    if (ops->open(mb, abs, opts->flags, e) != 0) {
        mb->ops = NULL;
        mailbox_close(mb);
        return -1;
    }
    *out = mb;
    return 0;
}

void mailbox_close(struct mailbox *mb)
{
    if (mb == NULL)
        return;
    if (mb->ops != NULL)
        mb->ops->close(mb);
    store_free(&mb->store);
    free(mb->path);
    free(mb->name);
    free(mb->hcache_dir);
    free(mb);
}

int mailbox_modify_tags(struct mailbox *mb, uint32_t msg, const char *changes, struct err *e)
{
    if (mb->ops->modify_tags == NULL) {
        err_set(e, ERR_UNSUPPORTED, "%s has no labels (only notmuch folders do)", mb->name);
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
    return mb->ops->modify_tags(mb, msg, changes, e);
}

void mailbox_sync_errs_free(struct mailbox_sync_errs *errs)
{
    if (errs == NULL)
        return;
    free(errs->v);
    errs->v = NULL;
    errs->n = 0;
}

void mailbox_sync_errs_add(struct mailbox_sync_errs *errs, uint32_t msg, const struct err *err)
{
    if (errs == NULL)
        return;
    errs->v = xreallocarray(errs->v, errs->n + 1, sizeof *errs->v);
    errs->v[errs->n].msg = msg;
    errs->v[errs->n].err = *err;
    errs->n++;
}

/* ---- helpers for backends ------------------------------------------------- */

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct zone_name {
    const char *name;
    int minutes;
};

static const struct zone_name zone_names[] = {
    {"UT", 0}, {"UTC", 0}, {"GMT", 0}, {"Z", 0},
    {"EST", -300}, {"EDT", -240}, {"CST", -360}, {"CDT", -300},
    {"MST", -420}, {"MDT", -360}, {"PST", -480}, {"PDT", -420},
};

static bool zone_value(const char *s, size_t n, int *tz)
{
    if (n == 5 && (s[0] == '+' || s[0] == '-')) {
        int v = 0;

        for (size_t i = 1; i < 5; i++) {
            if (s[i] < '0' || s[i] > '9')
                return false;
            v = v * 10 + (s[i] - '0');
        }
        if (v > 2400)
            return false;
        /* The same reading as the date conversion: HH * 60 + MM. */
        *tz = (v / 100 * 60 + v % 100) * (s[0] == '-' ? -1 : 1);
        return true;
    }
    for (size_t i = 0; i < ARRAY_LEN(zone_names); i++) {
        if (strlen(zone_names[i].name) == n && strncasecmp(zone_names[i].name, s, n) == 0) {
            *tz = zone_names[i].minutes;
            return true;
        }
    }
    return false;
}

bool mailbox_date_tz(const char *date_text, int *tz)
{
    const char *s = date_text;
    bool after_time = false;
    int depth = 0;

    *tz = 0;
    if (s == NULL)
        return false;
    while (*s != '\0') {
        const char *t;
        bool has_colon = false;

        if (*s == '(') {
            depth++;
            s++;
            continue;
        }
        if (*s == ')') {
            if (depth > 0)
                depth--;
            s++;
            continue;
        }
        if (depth > 0 || blank(*s) || *s == ',') {
            s++;
            continue;
        }
        for (t = s; *t != '\0' && !blank(*t) && *t != ',' && *t != '(' && *t != ')'; t++)
            if (*t == ':')
                has_colon = true;
        if (after_time)
            return zone_value(s, (size_t)(t - s), tz);
        if (has_colon)
            after_time = true;
        s = t;
    }
    return false;
}

bool mailbox_header_field(const char *hdr, size_t len, const char *name, struct buf *out)
{
    size_t nlen = strlen(name), pos = 0;

    buf_reset(out);
    while (pos < len) {
        const char *nl = memchr(hdr + pos, '\n', len - pos);
        size_t le = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
        size_t i = pos + nlen;

        if (hdr[pos] == '\n' || (hdr[pos] == '\r' && pos + 1 < len && hdr[pos + 1] == '\n'))
            return false;   /* end of the header block */
        if (le - pos > nlen && strncasecmp(hdr + pos, name, nlen) == 0) {
            while (i < le && (hdr[i] == ' ' || hdr[i] == '\t'))
                i++;
            if (i < le && hdr[i] == ':') {
                struct buf raw = BUF_INIT;
                size_t end = le, a, b;
                int rc;

                /* Continuation lines start with a blank. */
                while (end < len && (hdr[end] == ' ' || hdr[end] == '\t')) {
                    nl = memchr(hdr + end, '\n', len - end);
                    end = nl != NULL ? (size_t)(nl - hdr) + 1 : len;
                }
                for (size_t k = i + 1; k < end; k++)
                    if (hdr[k] != '\r' && hdr[k] != '\n' && buf_putc(&raw, hdr[k]) != 0)
                        die("mailbox: unbounded buffer refused an append");
                for (a = 0; a < raw.len && blank(raw.data[a]); a++)
                    ;
                for (b = raw.len; b > a && blank(raw.data[b - 1]); b--)
                    ;
                rc = rfc2047_decode(raw.data != NULL ? raw.data + a : "", b - a, out, NULL);
                buf_free(&raw);
                return rc == 0;
            }
        }
        pos = le;
    }
    return false;
}
