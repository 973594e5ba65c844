/* uidlist: a folder's IMAP UIDs in Dovecot's dovecot-uidlist format (version
 * 3), its lock protocol and rename-only updates. */
#include "uidlist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

/* How often a read is tried again when the file changes under it. */
#define UIDLIST_READ_RETRIES 8
/* How often a scan is repeated when new/ or cur/ change while it runs. */
#define UIDLIST_SCAN_RETRIES 4
/* Lock polling: first and longest pause. */
#define UIDLIST_WAIT_MIN_NS 1000000L
#define UIDLIST_WAIT_MAX_NS 100000000L
/* How long a scan waits for the directories' mtimes to be trustworthy. */
#define UIDLIST_SETTLE_MAX_S 0.02
/* Longest file name (one directory entry). */
#define UIDLIST_NAME_MAX 255

int (*uidlist_step_hook)(enum uidlist_step step) = NULL;

static const char *const step_names[UIDLIST_STEP_COUNT] = {
    "LOCK_WAIT", "LOCKED", "WRITTEN", "FSYNCED", "RENAMED", "DIR_FSYNCED",
};

const char *uidlist_step_name(enum uidlist_step step)
{
    if ((unsigned)step < UIDLIST_STEP_COUNT)
        return step_names[step];
    return "?";
}

static int step(enum uidlist_step s)
{
    if (uidlist_step_hook != NULL && uidlist_step_hook(s) != 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static void box_scope(struct err *e, bool temporary)
{
    err_scope(e, ERR_SCOPE_BOX, temporary);
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) != 0)
        die("uidlist: an unbounded buffer refused to grow");
}

static void buf_addf(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void buf_addf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    if (rc != 0)
        die("uidlist: an unbounded buffer refused to grow");
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc, saved;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static double mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ns(long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static size_t base_len_of(const char *name)
{
    const char *c = strchr(name, ':');

    return c != NULL ? (size_t)(c - name) : strlen(name);
}

/* ---- records -------------------------------------------------------------- */

/* The list proper, shared by struct uidlist and the lists read and built
 * during a sync. */
struct list {
    uint32_t uidvalidity;
    uint32_t next_uid;
    char *hdr_fields;
    size_t n, cap;
    struct uidlist_rec *v;
    unsigned version;
};

static void rec_free(struct uidlist_rec *r)
{
    free(r->mem_);
    free(r->file_mem_);
    memset(r, 0, sizeof(*r));
}

static void rec_init(struct uidlist_rec *r, uint32_t uid, const char *listed, size_t listed_len,
                     const char *fields, size_t fields_len)
{
    char *m = xmalloc(listed_len + fields_len + 2);

    memcpy(m, listed, listed_len);
    m[listed_len] = '\0';
    memcpy(m + listed_len + 1, fields, fields_len);
    m[listed_len + 1 + fields_len] = '\0';
    memset(r, 0, sizeof(*r));
    r->uid = uid;
    r->mem_ = m;
    r->listed = m;
    r->fields = m + listed_len + 1;
    r->file = m;
    r->base_len = base_len_of(m);
    r->sub = MAILDIR_SUB_CUR;
    r->found = false;
}

/* Record r's file as (sub, name); name has r's base name. */
static void rec_set_file(struct uidlist_rec *r, enum maildir_sub sub, const char *name)
{
    if (r->file != NULL && strcmp(r->file, name) == 0) {
        r->sub = sub;
        r->found = true;
        return;
    }
    free(r->file_mem_);
    r->file_mem_ = NULL;
    if (strcmp(r->listed, name) == 0) {
        r->file = r->listed;
    } else {
        r->file_mem_ = xstrdup(name);
        r->file = r->file_mem_;
    }
    r->sub = sub;
    r->found = true;
}

static void rec_copy_file(struct uidlist_rec *dst, const struct uidlist_rec *src)
{
    if (src->found)
        rec_set_file(dst, src->sub, src->file);
}

static struct uidlist_rec *list_push(struct list *l)
{
    if (l->n == l->cap) {
        l->cap = l->cap != 0 ? l->cap * 2 : 64;
        l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
    }
    return &l->v[l->n++];
}

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->n; i++)
        rec_free(&l->v[i]);
    free(l->v);
    free(l->hdr_fields);
    memset(l, 0, sizeof(*l));
}

/* ---- parsing -------------------------------------------------------------- */

/* A decimal number of at most max; *end after its digits.  -1 when there are
 * no digits or it is too large. */
static int parse_u32(const char *s, const char *lim, uint32_t max, uint32_t *out,
                     const char **end)
{
    uint64_t v = 0;
    const char *p = s;

    while (p < lim && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return -1;
        p++;
    }
    if (p == s)
        return -1;
    *out = (uint32_t)v;
    *end = p;
    return 0;
}

static int perr(struct err *e, size_t line, const char *fmt, ...) CORREO_PRINTF(3, 4);
static int perr(struct err *e, size_t line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err_set(e, ERR_PARSE, UIDLIST_FILE " line %zu: %s", line, msg);
    box_scope(e, false);
    return -1;
}

static int check_name(const char *name, size_t len, size_t line, struct err *e)
{
    size_t base = 0;

    if (len == 0)
        return perr(e, line, "no file name");
    if (len > UIDLIST_NAME_MAX)
        return perr(e, line, "file name longer than %d bytes", UIDLIST_NAME_MAX);
    if (memchr(name, '/', len) != NULL)
        return perr(e, line, "file name with '/'");
    while (base < len && name[base] != ':')
        base++;
    if (base == 0)
        return perr(e, line, "file name with an empty base name");
    if ((base == 1 && name[0] == '.') || (base == 2 && name[0] == '.' && name[1] == '.'))
        return perr(e, line, "file name \".\" or \"..\"");
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return perr(e, line, "control character in the file name");
    }
    return 0;
}

static int parse_header(struct list *l, const char *p, const char *lim, struct err *e)
{
    struct buf other = BUF_INIT;
    bool have_v = false, have_n = false;
    uint32_t v;
    const char *end;

    if (p == lim)
        return perr(e, 1, "empty header");
    if (lim - p >= 2 && p[0] == '1' && p[1] == ' ') {
        /* Courier style: "1 <uidvalidity> <next uid>" */
        l->version = 1;
        p += 2;
        if (parse_u32(p, lim, UINT32_MAX, &l->uidvalidity, &end) != 0 || *end != ' ')
            return perr(e, 1, "bad UIDVALIDITY in a version 1 header");
        p = end + 1;
        if (parse_u32(p, lim, UINT32_MAX, &l->next_uid, &end) != 0 || end != lim)
            return perr(e, 1, "bad next UID in a version 1 header");
        if (l->uidvalidity == 0 || l->next_uid == 0)
            return perr(e, 1, "zero UIDVALIDITY or next UID");
        l->hdr_fields = xstrdup("");
        return 0;
    }
    if (!(p[0] == '3' && (lim - p == 1 || p[1] == ' '))) {
        if (p[0] >= '0' && p[0] <= '9') {
            uint32_t ver = 0;

            if (parse_u32(p, lim, UINT32_MAX, &ver, &end) == 0 && (end == lim || *end == ' ')) {
                err_set(e, ERR_UNSUPPORTED, UIDLIST_FILE ": version %u is not supported", ver);
                box_scope(e, false);
                return -1;
            }
        }
        return perr(e, 1, "not a dovecot-uidlist header");
    }
    l->version = 3;
    p++;
    while (p < lim) {
        const char *tok;

        if (*p == ' ') {
            p++;
            continue;
        }
        tok = p;
        while (p < lim && *p != ' ')
            p++;
        if (*tok == 'V' || *tok == 'N') {
            bool is_v = *tok == 'V';

            if (is_v ? have_v : have_n) {
                buf_free(&other);
                return perr(e, 1, "%c given twice", *tok);
            }
            if (parse_u32(tok + 1, p, UINT32_MAX, &v, &end) != 0 || end != p || v == 0) {
                buf_free(&other);
                return perr(e, 1, "bad %s", is_v ? "UIDVALIDITY" : "next UID");
            }
            if (is_v) {
                l->uidvalidity = v;
                have_v = true;
            } else {
                l->next_uid = v;
                have_n = true;
            }
        } else {
            if (other.len > 0)
                buf_add(&other, " ", 1);
            buf_add(&other, tok, (size_t)(p - tok));
        }
    }
    if (!have_v || !have_n) {
        buf_free(&other);
        return perr(e, 1, "no %s", !have_v ? "UIDVALIDITY (V)" : "next UID (N)");
    }
    l->hdr_fields = xstrdup(buf_cstr(&other));
    buf_free(&other);
    return 0;
}

/* One record line (without its '\n'). */
static int parse_record(struct list *l, const char *p, const char *lim, size_t line,
                        struct err *e)
{
    uint32_t uid;
    const char *end, *fields, *fields_end, *name;

    if (parse_u32(p, lim, UINT32_MAX - 1, &uid, &end) != 0 || uid == 0) {
        if (p < lim && *p >= '0' && *p <= '9')
            return perr(e, line, "UID out of range");
        return perr(e, line, "no UID");
    }
    if (end == lim || *end != ' ')
        return perr(e, line, "no space after the UID");
    p = end + 1;
    if (l->version == 1) {
        fields = fields_end = p;
        name = p;
    } else {
        while (p < lim && *p == ' ')
            p++;
        fields = p;
        fields_end = p;
        while (p < lim && *p != ':') {
            while (p < lim && *p != ' ')
                p++;
            fields_end = p;
            while (p < lim && *p == ' ')
                p++;
        }
        if (p == lim)
            return perr(e, line, "no ':' before the file name");
        name = p + 1;
    }
    if (check_name(name, (size_t)(lim - name), line, e) != 0)
        return -1;
    if (l->n > 0 && uid <= l->v[l->n - 1].uid)
        return perr(e, line, "UID %u after UID %u: not ascending", uid, l->v[l->n - 1].uid);
    rec_init(list_push(l), uid, name, (size_t)(lim - name), fields,
             (size_t)(fields_end - fields));
    return 0;
}

static uint32_t hash_base(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    /* Names differ in a few digits in the middle: spread those into the
     * low bits the table uses. */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* Open-addressing table base name -> index + 1 over l's records.  When dup
 * is not NULL, a base name listed twice stops the build: *dup gets the
 * indexes (first, second) and -1 is returned. */
static int hash_build(const struct list *l, uint32_t **tab, size_t *cap, size_t dup[2])
{
    size_t c = 16;

    while (c < l->n * 2 + 1)
        c *= 2;
    free(*tab);
    *tab = xcalloc(c, sizeof(**tab));
    *cap = c;
    for (size_t i = 0; i < l->n; i++) {
        const struct uidlist_rec *r = &l->v[i];
        size_t h = hash_base(r->listed, r->base_len) & (c - 1);

        while ((*tab)[h] != 0) {
            const struct uidlist_rec *o = &l->v[(*tab)[h] - 1];

            if (o->base_len == r->base_len && memcmp(o->listed, r->listed, r->base_len) == 0) {
                if (dup != NULL) {
                    dup[0] = (*tab)[h] - 1;
                    dup[1] = i;
                }
                return -1;
            }
            h = (h + 1) & (c - 1);
        }
        (*tab)[h] = (uint32_t)(i + 1);
    }
    return 0;
}

static long hash_find(const struct uidlist_rec *v, const uint32_t *tab, size_t cap,
                      const char *name, size_t blen)
{
    size_t h;

    if (cap == 0)
        return -1;
    h = hash_base(name, blen) & (cap - 1);
    while (tab[h] != 0) {
        const struct uidlist_rec *r = &v[tab[h] - 1];

        if (r->base_len == blen && memcmp(r->listed, name, blen) == 0)
            return (long)(tab[h] - 1);
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

/* Parse a whole file.  Only complete lines count: a last line without its
 * '\n' is being appended by someone and is left out. */
static int parse_list(const char *data, size_t len, struct list *l, struct err *e)
{
    const char *p = data, *lim = data + len, *nl;
    size_t line = 1;
    uint32_t *tab = NULL;
    size_t cap = 0, dup[2];

    memset(l, 0, sizeof(*l));
    if (len > 0 && memchr(data, '\0', len) != NULL) {
        const char *z = memchr(data, '\0', len);
        size_t ln = 1;

        for (const char *q = data; q < z; q++)
            ln += *q == '\n';
        return perr(e, ln, "NUL byte");
    }
    nl = memchr(p, '\n', (size_t)(lim - p));
    if (nl == NULL)
        return perr(e, 1, len == 0 ? "empty file" : "incomplete header");
    if (nl - p > UIDLIST_LINE_MAX) {
        err_set(e, ERR_LIMIT, UIDLIST_FILE " line 1: longer than %d bytes", UIDLIST_LINE_MAX);
        box_scope(e, false);
        return -1;
    }
    if (parse_header(l, p, nl, e) != 0)
        goto fail;
    p = nl + 1;
    while (p < lim) {
        line++;
        nl = memchr(p, '\n', (size_t)(lim - p));
        if (nl == NULL)
            break;
        if (nl - p > UIDLIST_LINE_MAX) {
            err_set(e, ERR_LIMIT, UIDLIST_FILE " line %zu: longer than %d bytes", line,
                    UIDLIST_LINE_MAX);
            box_scope(e, false);
            goto fail;
        }
        if (nl > p && parse_record(l, p, nl, line, e) != 0)
            goto fail;
        p = nl + 1;
    }
    if (hash_build(l, &tab, &cap, dup) != 0) {
        free(tab);
        err_set(e, ERR_PARSE, UIDLIST_FILE ": file \"%.*s\" listed with UID %u and UID %u",
                (int)l->v[dup[0]].base_len, l->v[dup[0]].listed, l->v[dup[0]].uid,
                l->v[dup[1]].uid);
        box_scope(e, false);
        goto fail;
    }
    free(tab);
    if (l->n > 0 && l->v[l->n - 1].uid >= l->next_uid)
        l->next_uid = l->v[l->n - 1].uid + 1;
    return 0;
fail:
    list_free(l);
    return -1;
}

/* ---- reading the file ----------------------------------------------------- */

struct ident {
    bool exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    mode_t mode;
    uid_t uid;
    gid_t gid;
};

static void ident_of(const struct stat *st, struct ident *id)
{
    id->exists = true;
    id->dev = st->st_dev;
    id->ino = st->st_ino;
    id->size = st->st_size;
    id->mtime = st->st_mtim;
    id->mode = st->st_mode;
    id->uid = st->st_uid;
    id->gid = st->st_gid;
}

static bool same_ident(const struct ident *a, const struct ident *b)
{
    return a->exists == b->exists &&
           (!a->exists || (a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
                           a->mtime.tv_sec == b->mtime.tv_sec &&
                           a->mtime.tv_nsec == b->mtime.tv_nsec));
}

/* Read and parse dir/dovecot-uidlist.  0 and *found false when it does not
 * exist.  A file replaced while we read it is read again. */
static int read_list(const char *dir, struct list *l, struct ident *id, bool *found,
                     struct err *e)
{
    char *path = xasprintf("%s/" UIDLIST_FILE, dir);
    struct buf b = BUF_INIT;
    int rc = -1;

    *found = false;
    memset(id, 0, sizeof(*id));
    for (int attempt = 0;; attempt++) {
        struct stat st, st2;
        int fd, r;
        struct err pe;

        /* O_NONBLOCK: a FIFO in its place must not hang us. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            if (errno == ENOENT) {
                /* A writer renames its new list over the old one, which
                 * never leaves a gap; look once more to be sure. */
                if (attempt < 1)
                    continue;
                rc = 0;
                break;
            }
            if (errno == ELOOP) {
                err_set(e, ERR_INVAL, "%s: a symbolic link", path);
                box_scope(e, false);
                break;
            }
            err_sys(e, "open %s", path);
            box_scope(e, true);
            break;
        }
        if (fstat(fd, &st) != 0) {
            err_sys(e, "fstat %s", path);
            close(fd);
            break;
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            err_set(e, ERR_INVAL, "%s: not a regular file", path);
            box_scope(e, false);
            break;
        }
        if ((uint64_t)st.st_size > UIDLIST_FILE_MAX) {
            close(fd);
            err_set(e, ERR_LIMIT, "%s: larger than %u bytes", path, UIDLIST_FILE_MAX);
            box_scope(e, false);
            break;
        }
        buf_free(&b);
        buf_init(&b, UIDLIST_FILE_MAX);
        r = buf_read_all(&b, fd);
        if (r == -1) {
            err_sys(e, "read %s", path);
            close(fd);
            break;
        }
        close(fd);
        if (r == -2) {
            err_set(e, ERR_LIMIT, "%s: larger than %u bytes", path, UIDLIST_FILE_MAX);
            box_scope(e, false);
            break;
        }
        /* Shorter than it was when opened: truncated under us by someone
         * who does not follow the protocol.  Read it again. */
        if ((off_t)b.len < st.st_size && attempt + 1 < UIDLIST_READ_RETRIES)
            continue;
        err_clear(&pe);
        if (parse_list(b.data != NULL ? b.data : "", b.len, l, &pe) != 0) {
            /* Replaced while we read it?  Then read the new one. */
            if (stat(path, &st2) == 0 && (st2.st_ino != st.st_ino || st2.st_dev != st.st_dev) &&
                attempt + 1 < UIDLIST_READ_RETRIES)
                continue;
            if (e != NULL)
                *e = pe;
            err_prefix(e, "%s", dir);
            break;
        }
        st.st_size = (off_t)b.len;
        ident_of(&st, id);
        /* Appended to since our fstat: keep what was complete; the file's
         * identity stays that of what we parsed so the rest is read later. */
        *found = true;
        rc = 0;
        break;
    }
    buf_free(&b);
    free(path);
    return rc;
}

/* The file's identity now (exists false when absent). */
static int stat_list(const char *dir, struct ident *id, struct err *e)
{
    char *path = xasprintf("%s/" UIDLIST_FILE, dir);
    struct stat st;
    int rc = 0;

    memset(id, 0, sizeof(*id));
    if (lstat(path, &st) == 0) {
        ident_of(&st, id);
    } else if (errno != ENOENT) {
        rc = err_sys(e, "stat %s", path);
        box_scope(e, true);
    }
    free(path);
    return rc;
}

/* ---- the struct ----------------------------------------------------------- */

static void new_guid(char out[33])
{
    unsigned char g[16];
    static const char hex[] = "0123456789abcdef";
    size_t got = 0;

    while (got < sizeof(g)) {
        ssize_t r = getrandom(g + got, sizeof(g) - got, 0);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof(g)) {
        struct timespec ts;
        uint64_t x;

        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 32);
        for (size_t i = 0; i < sizeof(g); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g[i] = (unsigned char)x;
        }
    }
    for (size_t i = 0; i < sizeof(g); i++) {
        out[2 * i] = hex[g[i] >> 4];
        out[2 * i + 1] = hex[g[i] & 15];
    }
    out[32] = '\0';
}

static uint32_t now_uidvalidity(void)
{
    time_t t = time(NULL);

    if (t <= 0)
        return 1;
    if ((uint64_t)t > UINT32_MAX)
        return UINT32_MAX;
    return (uint32_t)t;
}

static void list_fresh(struct list *l, uint32_t uidvalidity)
{
    char guid[33];

    memset(l, 0, sizeof(*l));
    new_guid(guid);
    l->uidvalidity = uidvalidity;
    l->next_uid = 1;
    l->hdr_fields = xasprintf("G%s", guid);
    l->version = 3;
}

static void ul_take(struct uidlist *ul, struct list *l)
{
    for (size_t i = 0; i < ul->n; i++)
        rec_free(&ul->v[i]);
    free(ul->v);
    free(ul->hdr_fields);
    ul->uidvalidity = l->uidvalidity;
    ul->next_uid = l->next_uid;
    ul->hdr_fields = l->hdr_fields;
    ul->n = l->n;
    ul->v = l->v;
    ul->version_ = l->version;
    memset(l, 0, sizeof(*l));
    if (hash_build(&(struct list){.n = ul->n, .v = ul->v}, &ul->hash_, &ul->hash_cap_, NULL) != 0)
        die("uidlist: a file listed twice after checking");
}

static void ul_set_ident(struct uidlist *ul, const struct ident *id)
{
    ul->exists_ = id->exists;
    ul->dev_ = id->dev;
    ul->ino_ = id->ino;
    ul->size_ = id->size;
    ul->mtime_ = id->mtime;
}

static void ul_ident(const struct uidlist *ul, struct ident *id)
{
    memset(id, 0, sizeof(*id));
    id->exists = ul->exists_;
    id->dev = ul->dev_;
    id->ino = ul->ino_;
    id->size = ul->size_;
    id->mtime = ul->mtime_;
}

static struct uidlist *ul_new(const char *dir, const struct uidlist_opts *opts)
{
    struct uidlist *ul = XNEW(struct uidlist);
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    ul->dir = xstrndup(dir, n);
    if (opts != NULL) {
        ul->opts_ = *opts;
    } else {
        ul->opts_.lock_timeout_ms = UIDLIST_LOCK_TIMEOUT_MS_DEFAULT;
        ul->opts_.stale_timeout_s = UIDLIST_STALE_TIMEOUT_S_DEFAULT;
    }
    return ul;
}

int uidlist_open(const char *dir, const struct uidlist_opts *opts, struct uidlist **out,
                 struct err *e)
{
    struct uidlist *ul = ul_new(dir, opts);
    struct list l;
    struct ident id;
    bool found;

    *out = NULL;
    if (read_list(ul->dir, &l, &id, &found, e) != 0) {
        uidlist_free(ul);
        return -1;
    }
    if (!found)
        list_fresh(&l, now_uidvalidity());
    ul_take(ul, &l);
    ul_set_ident(ul, &id);
    *out = ul;
    return 0;
}

int uidlist_rebuild(const char *dir, const struct uidlist_opts *opts, struct uidlist **out,
                    uint32_t *old_uidvalidity, struct err *e)
{
    struct uidlist *ul = ul_new(dir, opts);
    char *path = xasprintf("%s/" UIDLIST_FILE, ul->dir);
    uint32_t old = 0, v = now_uidvalidity();
    struct list l;
    FILE *fp = NULL;
    int fd;

    (void)e;
    /* The old UIDVALIDITY, if the header says it plainly. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd >= 0) {
        fp = fdopen(fd, "r");
        if (fp == NULL)
            close(fd);
    }
    if (fp != NULL) {
        char line[512];

        if (fgets(line, sizeof(line), fp) != NULL) {
            char *p = strstr(line, " V");
            const char *end;
            uint32_t x;

            if (line[0] == '3' && p != NULL &&
                parse_u32(p + 2, p + 2 + strlen(p + 2), UINT32_MAX, &x, &end) == 0)
                old = x;
        }
        fclose(fp);
    }
    free(path);
    if (old != 0 && v <= old && old < UINT32_MAX)
        v = old + 1;
    list_fresh(&l, v);
    ul_take(ul, &l);
    ul->rebuild_ = true;
    ul->exists_ = false;
    if (old_uidvalidity != NULL)
        *old_uidvalidity = old;
    *out = ul;
    return 0;
}

void uidlist_free(struct uidlist *ul)
{
    if (ul == NULL)
        return;
    for (size_t i = 0; i < ul->n; i++)
        rec_free(&ul->v[i]);
    free(ul->v);
    free(ul->hdr_fields);
    free(ul->hash_);
    free(ul->dir);
    free(ul);
}

/* Carry what scans found from src's records to dst's (same UID, same base
 * name); both ascending. */
static void carry_recs(const struct uidlist_rec *src, size_t ns, struct uidlist_rec *dst,
                       size_t nd)
{
    size_t i = 0, j = 0;

    while (i < ns && j < nd) {
        const struct uidlist_rec *a = &src[i];
        struct uidlist_rec *b = &dst[j];

        if (a->uid < b->uid) {
            i++;
        } else if (a->uid > b->uid) {
            j++;
        } else {
            if (a->base_len == b->base_len && memcmp(a->listed, b->listed, a->base_len) == 0)
                rec_copy_file(b, a);
            i++;
            j++;
        }
    }
}

static void carry_files(const struct uidlist *ul, struct list *l)
{
    carry_recs(ul->v, ul->n, l->v, l->n);
}

int uidlist_refresh(struct uidlist *ul, bool *changed, struct err *e)
{
    struct ident now, had;
    struct list l;
    bool found;

    if (changed != NULL)
        *changed = false;
    if (stat_list(ul->dir, &now, e) != 0)
        return -1;
    ul_ident(ul, &had);
    if (same_ident(&now, &had) || (!now.exists && !had.exists))
        return 0;
    if (!now.exists) {
        /* Gone: keep what we know; the next sync writes it back. */
        ul->exists_ = false;
        return 0;
    }
    if (read_list(ul->dir, &l, &now, &found, e) != 0)
        return -1;
    if (!found) {
        ul->exists_ = false;
        return 0;
    }
    carry_files(ul, &l);
    ul_take(ul, &l);
    ul_set_ident(ul, &now);
    ul->rebuild_ = false;
    if (changed != NULL)
        *changed = true;
    return 0;
}

/* ---- lookups -------------------------------------------------------------- */

const struct uidlist_rec *uidlist_by_uid(const struct uidlist *ul, uint32_t uid)
{
    size_t lo = 0, hi = ul->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ul->v[mid].uid < uid)
            lo = mid + 1;
        else if (ul->v[mid].uid > uid)
            hi = mid;
        else
            return &ul->v[mid];
    }
    return NULL;
}

const struct uidlist_rec *uidlist_by_name(const struct uidlist *ul, const char *name)
{
    long i = hash_find(ul->v, ul->hash_, ul->hash_cap_, name, base_len_of(name));

    return i < 0 ? NULL : &ul->v[i];
}

uint32_t uidlist_highest_uid(const struct uidlist *ul)
{
    return ul->n > 0 ? ul->v[ul->n - 1].uid : 0;
}

size_t uidlist_count(const struct uidlist *ul)
{
    return ul->n;
}

const char *uidlist_rec_field(const struct uidlist_rec *r, char key, size_t *len)
{
    const char *p = r->fields;

    while (*p != '\0') {
        const char *tok = p;

        while (*p != '\0' && *p != ' ')
            p++;
        if (*tok == key) {
            if (len != NULL)
                *len = (size_t)(p - tok - 1);
            return tok + 1;
        }
        while (*p == ' ')
            p++;
    }
    return NULL;
}

/* ---- Dovecot's order of new files ---------------------------------------- */

static uint64_t leading_number(const char **p)
{
    uint64_t v = 0;

    while (**p >= '0' && **p <= '9') {
        if (v < UINT64_MAX / 10)
            v = v * 10 + (uint64_t)(**p - '0');
        (*p)++;
    }
    return v;
}

int uidlist_name_cmp(const char *a, const char *b)
{
    const char *pa = a, *pb = b;
    uint64_t sa = leading_number(&pa), sb = leading_number(&pb);

    if (sa != sb)
        return sa < sb ? -1 : 1;
    if (pa[0] == '.' && pa[1] == 'M' && pb[0] == '.' && pb[1] == 'M') {
        const char *ua = pa + 2, *ub = pb + 2;
        uint64_t ma = leading_number(&ua), mb = leading_number(&ub);

        if (ma != mb)
            return ma < mb ? -1 : 1;
    }
    /* The rest of the base names, where the end of a base sorts as ':'. */
    for (;;) {
        unsigned char ca = (unsigned char)(*pa == '\0' ? ':' : *pa);
        unsigned char cb = (unsigned char)(*pb == '\0' ? ':' : *pb);

        if (ca != cb)
            return ca < cb ? -1 : 1;
        if (ca == ':')
            break;
        pa++;
        pb++;
    }
    return strcmp(a, b) < 0 ? -1 : strcmp(a, b) > 0;
}

/* ---- the lock ------------------------------------------------------------- */

struct uidlist_lock {
    char *path;
    int fd;
    dev_t dev;
    ino_t ino;
    bool gone;        /* renamed into place or released */
};

static bool lock_is_ours(const struct uidlist_lock *lk)
{
    struct stat st;

    return lstat(lk->path, &st) == 0 && st.st_dev == lk->dev && st.st_ino == lk->ino;
}

int uidlist_lock_take(const char *dir, const struct uidlist_opts *opts, mode_t mode,
                      struct uidlist_lock **out, struct err *e)
{
    struct uidlist_opts o = UIDLIST_OPTS_INIT;
    char *path = xasprintf("%s/" UIDLIST_LOCK_FILE, dir);
    double deadline, seen_since = 0;
    struct stat seen;
    bool have_seen = false;
    long wait = UIDLIST_WAIT_MIN_NS;

    *out = NULL;
    if (opts != NULL)
        o = *opts;
    deadline = mono_now() + (double)o.lock_timeout_ms / 1000.0;
    memset(&seen, 0, sizeof(seen));
    for (;;) {
        struct stat st;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                      mode & 0666);
        double now;

        if (fd >= 0) {
            struct uidlist_lock *lk;

            if (fstat(fd, &st) != 0) {
                err_sys(e, "fstat %s", path);
                unlink(path);
                close(fd);
                break;
            }
            /* The file it becomes is read by every process of the user:
             * the umask must not narrow it. */
            (void)fchmod(fd, mode & 0666);
            lk = XNEW(struct uidlist_lock);
            lk->path = path;
            lk->fd = fd;
            lk->dev = st.st_dev;
            lk->ino = st.st_ino;
            *out = lk;
            return 0;
        }
        if (errno != EEXIST) {
            err_sys(e, "create %s", path);
            box_scope(e, errno == ENOSPC || errno == EDQUOT);
            break;
        }
        if (lstat(path, &st) != 0) {
            if (errno == ENOENT)
                continue;   /* released meanwhile */
            err_sys(e, "stat %s", path);
            break;
        }
        now = mono_now();
        /* Stale: not refreshed for the stale timeout, by its mtime or by
         * what we have watched ourselves (in case of a clock step). */
        if (!have_seen || st.st_ino != seen.st_ino || st.st_dev != seen.st_dev ||
            st.st_size != seen.st_size || st.st_mtim.tv_sec != seen.st_mtim.tv_sec ||
            st.st_mtim.tv_nsec != seen.st_mtim.tv_nsec) {
            seen = st;
            seen_since = now;
            have_seen = true;
        }
        if (time(NULL) - st.st_mtim.tv_sec >= (time_t)o.stale_timeout_s ||
            now - seen_since >= (double)o.stale_timeout_s) {
            struct stat again;

            /* Remove it only if it is still the one we judged. */
            if (lstat(path, &again) == 0 && again.st_ino == st.st_ino &&
                again.st_dev == st.st_dev && again.st_mtim.tv_sec == st.st_mtim.tv_sec &&
                again.st_mtim.tv_nsec == st.st_mtim.tv_nsec) {
                if (unlink(path) != 0 && errno != ENOENT) {
                    err_sys(e, "remove stale %s", path);
                    break;
                }
            }
            have_seen = false;
            continue;
        }
        if (now >= deadline) {
            errno = EAGAIN;
            err_sys(e, "%s: locked by another process for %d ms", path, o.lock_timeout_ms);
            box_scope(e, true);
            break;
        }
        if (step(UIDLIST_STEP_LOCK_WAIT) != 0) {
            err_sys(e, "wait for %s", path);
            break;
        }
        if (now + (double)wait / 1e9 > deadline)
            wait = (long)((deadline - now) * 1e9) + 1;
        pause_ns(wait);
        if (wait < UIDLIST_WAIT_MAX_NS)
            wait = wait * 2 > UIDLIST_WAIT_MAX_NS ? UIDLIST_WAIT_MAX_NS : wait * 2;
    }
    free(path);
    return -1;
}

int uidlist_lock_refresh(struct uidlist_lock *lk, struct err *e)
{
    if (lk->gone || !lock_is_ours(lk)) {
        err_set(e, ERR_IO, "%s: our lock was taken over", lk->path);
        box_scope(e, true);
        return -1;
    }
    if (futimens(lk->fd, NULL) != 0) {
        err_sys(e, "touch %s", lk->path);
        box_scope(e, true);
        return -1;
    }
    return 0;
}

void uidlist_lock_release(struct uidlist_lock *lk)
{
    if (lk == NULL)
        return;
    if (!lk->gone && lock_is_ours(lk))
        (void)unlink(lk->path);
    if (lk->fd >= 0)
        close(lk->fd);
    free(lk->path);
    free(lk);
}

/* ---- scanning ------------------------------------------------------------- */

struct dir_mark {
    struct timespec mtime[2];
    ino_t ino[2];
    off_t size[2];
};

static int mark_dirs(const char *dir, struct dir_mark *m, struct err *e)
{
    static const char *const subs[2] = {"new", "cur"};

    for (int i = 0; i < 2; i++) {
        char *p = xasprintf("%s/%s", dir, subs[i]);
        struct stat st;

        if (stat(p, &st) != 0) {
            err_sys(e, "stat %s", p);
            box_scope(e, true);
            free(p);
            return -1;
        }
        free(p);
        m->mtime[i] = st.st_mtim;
        m->ino[i] = st.st_ino;
        m->size[i] = st.st_size;
    }
    return 0;
}

static bool same_mark(const struct dir_mark *a, const struct dir_mark *b)
{
    for (int i = 0; i < 2; i++) {
        if (a->mtime[i].tv_sec != b->mtime[i].tv_sec ||
            a->mtime[i].tv_nsec != b->mtime[i].tv_nsec || a->ino[i] != b->ino[i] ||
            a->size[i] != b->size[i])
            return false;
    }
    return true;
}

static bool ts_after(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/* Whether a change made from now on is sure to give the directories another
 * mtime.  The kernel stamps a change with a clock that only ticks every few
 * milliseconds (or with whole seconds on some file systems): a directory
 * changed during the current tick can change again without its mtime
 * moving. */
static bool mark_settled(const struct dir_mark *m)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    for (int i = 0; i < 2; i++) {
        const struct timespec *t = &m->mtime[i];

        if (t->tv_nsec == 0 ? now.tv_sec <= t->tv_sec : !ts_after(&now, t))
            return false;
    }
    return true;
}

/* Scan until new/ and cur/ did not change while it ran (at most a few
 * times); *stable says whether the last scan was undisturbed. */
static int stable_scan(const struct maildir_folder *f, struct maildir_scan **out, bool *stable,
                       struct dir_mark *mark, struct err *e)
{
    *out = NULL;
    *stable = false;
    for (int i = 0; i < UIDLIST_SCAN_RETRIES; i++) {
        struct dir_mark before, after;
        double until = mono_now() + UIDLIST_SETTLE_MAX_S;

        free(*out);
        *out = NULL;
        for (;;) {
            if (mark_dirs(f->path, &before, e) != 0)
                return -1;
            if (mark_settled(&before) || mono_now() >= until)
                break;
            pause_ns(UIDLIST_WAIT_MIN_NS);
        }
        if (maildir_scan(f, 0, out, e) != 0)
            return -1;
        if (mark_dirs(f->path, &after, e) != 0) {
            free(*out);
            *out = NULL;
            return -1;
        }
        if (same_mark(&before, &after) && mark_settled(&before)) {
            *stable = true;
            *mark = before;
            return 0;
        }
    }
    return 0;
}

static void ul_set_mark(struct uidlist *ul, const struct dir_mark *m)
{
    for (int i = 0; i < 2; i++) {
        ul->mark_mtime_[i] = m->mtime[i];
        ul->mark_ino_[i] = m->ino[i];
        ul->mark_size_[i] = m->size[i];
    }
    ul->have_mark_ = true;
}

static bool ul_same_mark(const struct uidlist *ul, const struct dir_mark *m)
{
    struct dir_mark had;

    if (!ul->have_mark_)
        return false;
    for (int i = 0; i < 2; i++) {
        had.mtime[i] = ul->mark_mtime_[i];
        had.ino[i] = ul->mark_ino_[i];
        had.size[i] = ul->mark_size_[i];
    }
    return same_mark(&had, m);
}

/* ---- merging a scan into a list ------------------------------------------ */

/* Whether a file name can be a record: a line of the file holds it, so no
 * control characters (a newline would forge a record), and a base name. */
static bool listable(const char *name)
{
    if (name[0] == ':' || name[0] == '\0')
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    }
    return strlen(name) <= UIDLIST_NAME_MAX;
}

struct newfile {
    const char *name;
    enum maildir_sub sub;
};

static int newfile_cmp(const void *a, const void *b)
{
    const struct newfile *x = a, *y = b;

    return uidlist_name_cmp(x->name, y->name);
}

struct merge {
    size_t added, dropped, renamed;
    bool changed;      /* the file needs writing */
};

/* Mark l's records found in scan, give new files UIDs (appended to l), drop
 * records not found when drop is set.  ERR_LIMIT when UIDs run out (l is
 * then unchanged apart from what was found). */
static int merge_scan(struct list *l, const struct maildir_scan *scan, bool drop,
                      struct merge *m, struct err *e)
{
    uint32_t *tab = NULL;
    size_t cap = 0;
    bool *seen = xcalloc(l->n + 1, sizeof(bool));
    struct newfile *nf = XNEWARRAY(struct newfile, scan->n + 1);
    size_t nnew = 0;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    (void)hash_build(l, &tab, &cap, NULL);
    for (size_t i = 0; i < scan->n; i++) {
        const struct maildir_entry *en = &scan->v[i];
        size_t blen = strlen(en->base);
        long k;

        if (!listable(en->name))
            continue;
        k = hash_find(l->v, tab, cap, en->base, blen);
        if (k >= 0) {
            struct uidlist_rec *r = &l->v[k];

            if (seen[k])
                continue;   /* the same base name twice: the first one counts */
            seen[k] = true;
            if (r->found && strcmp(r->file, en->name) != 0)
                m->renamed++;
            rec_set_file(r, en->sub, en->name);
        } else {
            nf[nnew].name = en->name;
            nf[nnew].sub = en->sub;
            nnew++;
        }
    }
    /* The same base name among the new files: keep the first. */
    if (nnew > 0) {
        size_t w = 0;

        qsort(nf, nnew, sizeof(*nf), newfile_cmp);
        for (size_t i = 0; i < nnew; i++) {
            if (w > 0) {
                size_t a = base_len_of(nf[w - 1].name), b = base_len_of(nf[i].name);

                if (a == b && memcmp(nf[w - 1].name, nf[i].name, a) == 0)
                    continue;
            }
            nf[w++] = nf[i];
        }
        nnew = w;
    }
    if (nnew > 0 && (uint64_t)l->next_uid + nnew > UINT32_MAX) {
        rc = err_set(e, ERR_LIMIT, "%s: no UIDs left for %zu new files (next UID %u)",
                     UIDLIST_FILE, nnew, l->next_uid);
        box_scope(e, false);
        goto out;
    }
    if (drop) {
        size_t w = 0;

        for (size_t i = 0; i < l->n; i++) {
            if (!seen[i]) {
                rec_free(&l->v[i]);
                m->dropped++;
                continue;
            }
            if (w != i)
                l->v[w] = l->v[i];
            w++;
        }
        l->n = w;
    }
    for (size_t i = 0; i < nnew; i++) {
        struct uidlist_rec *r = list_push(l);
        size_t blen = base_len_of(nf[i].name);

        rec_init(r, l->next_uid++, nf[i].name, blen, "", 0);
        rec_set_file(r, nf[i].sub, nf[i].name);
    }
    m->added = nnew;
    m->changed = nnew > 0 || m->dropped > 0;
out:
    free(tab);
    free(seen);
    free(nf);
    return rc;
}

/* Without changing the list: note where its files are now, and say whether
 * the scan calls for a write (a file without a UID, or a record whose file
 * an undisturbed scan did not find). */
static bool scan_check(struct uidlist *ul, const struct maildir_scan *scan, bool stable,
                       size_t *renamed)
{
    bool *seen = xcalloc(ul->n + 1, sizeof(bool));
    size_t nseen = 0;
    bool need = false;

    *renamed = 0;
    for (size_t i = 0; i < scan->n; i++) {
        const struct maildir_entry *en = &scan->v[i];
        long k;
        struct uidlist_rec *r;

        if (!listable(en->name))
            continue;
        k = hash_find(ul->v, ul->hash_, ul->hash_cap_, en->base, strlen(en->base));
        if (k < 0) {
            need = true;
            continue;
        }
        if (seen[k])
            continue;
        seen[k] = true;
        nseen++;
        r = &ul->v[k];
        if (r->found && strcmp(r->file, en->name) != 0)
            (*renamed)++;
        rec_set_file(r, en->sub, en->name);
    }
    if (stable && nseen < ul->n)
        need = true;
    free(seen);
    return need;
}

/* ---- writing -------------------------------------------------------------- */

static void render(const struct list *l, struct buf *out)
{
    bool has_g = false;

    for (const char *p = l->hdr_fields; *p != '\0';) {
        if (*p == 'G')
            has_g = true;
        while (*p != '\0' && *p != ' ')
            p++;
        while (*p == ' ')
            p++;
    }
    buf_addf(out, "3 V%u N%u", l->uidvalidity, l->next_uid);
    if (l->hdr_fields[0] != '\0')
        buf_addf(out, " %s", l->hdr_fields);
    if (!has_g) {
        char guid[33];

        new_guid(guid);
        buf_addf(out, " G%s", guid);
    }
    buf_add(out, "\n", 1);
    for (size_t i = 0; i < l->n; i++) {
        const struct uidlist_rec *r = &l->v[i];
        /* The listed name stays as written unless it carries info that is
         * out of date: then the current name. */
        const char *name = r->listed;

        if (r->found && r->listed[r->base_len] == ':' && strcmp(r->listed, r->file) != 0)
            name = r->file;
        buf_addf(out, "%u", r->uid);
        if (r->fields[0] != '\0')
            buf_addf(out, " %s", r->fields);
        buf_addf(out, " :%s\n", name);
    }
}

/* Write l into the lock file and put it in place.  *id gets the new file's
 * identity.  *renamed says whether the rename happened (a later failure then
 * leaves the new file in place). */
static int write_list(const char *dir, struct uidlist_lock *lk, const struct list *l,
                      const struct ident *old, struct ident *id, bool *renamed, struct err *e)
{
    struct buf b = BUF_INIT;
    char *path = xasprintf("%s/" UIDLIST_FILE, dir);
    struct stat st;
    int rc = -1;

    *renamed = false;
    render(l, &b);
    /* A process running as root writes a file the folder's owner can use. */
    if (geteuid() == 0) {
        uid_t u = old->exists ? old->uid : (uid_t)-1;
        gid_t g = old->exists ? old->gid : (gid_t)-1;

        if (!old->exists && stat(dir, &st) == 0) {
            u = st.st_uid;
            g = st.st_gid;
        }
        if (u != (uid_t)-1 && fchown(lk->fd, u, g) != 0) {
            err_sys(e, "chown %s", lk->path);
            goto out;
        }
    }
    if (step(UIDLIST_STEP_WRITTEN) != 0 || write_all(lk->fd, b.data, b.len) != 0) {
        err_sys(e, "write %s", lk->path);
        goto out;
    }
    if (step(UIDLIST_STEP_FSYNCED) != 0 || fsync(lk->fd) != 0) {
        err_sys(e, "fsync %s", lk->path);
        goto out;
    }
    if (fstat(lk->fd, &st) != 0) {
        err_sys(e, "fstat %s", lk->path);
        goto out;
    }
    if (step(UIDLIST_STEP_RENAMED) != 0) {
        err_sys(e, "rename %s to %s", lk->path, path);
        goto out;
    }
    if (!lock_is_ours(lk)) {
        err_set(e, ERR_IO, "%s: our lock was taken over; not replacing %s", lk->path, path);
        goto out;
    }
    if (rename(lk->path, path) != 0) {
        err_sys(e, "rename %s to %s", lk->path, path);
        goto out;
    }
    lk->gone = true;
    *renamed = true;
    ident_of(&st, id);
    if (step(UIDLIST_STEP_DIR_FSYNCED) != 0 || fsync_dir(dir) != 0) {
        err_sys(e, "fsync %s", dir);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        box_scope(e, true);
    buf_free(&b);
    free(path);
    return rc;
}

/* Copy ul's list (for merging without touching ul). */
static void list_copy(const struct uidlist *ul, struct list *l)
{
    memset(l, 0, sizeof(*l));
    l->uidvalidity = ul->uidvalidity;
    l->next_uid = ul->next_uid;
    l->hdr_fields = xstrdup(ul->hdr_fields);
    l->version = ul->version_;
    l->cap = ul->n + 1;
    l->v = XNEWARRAY(struct uidlist_rec, l->cap);
    for (size_t i = 0; i < ul->n; i++) {
        const struct uidlist_rec *r = &ul->v[i];

        rec_init(&l->v[i], r->uid, r->listed, strlen(r->listed), r->fields, strlen(r->fields));
        rec_copy_file(&l->v[i], r);
    }
    l->n = ul->n;
}

/* Compare the UIDs known before a sync with the list after it. */
static void count_changes(const uint32_t *old, size_t n_old, const struct uidlist_rec *v,
                          size_t n, struct uidlist_sync_result *res)
{
    size_t i = 0, j = 0;

    while (i < n_old || j < n) {
        if (j == n || (i < n_old && old[i] < v[j].uid)) {
            res->expunged++;
            i++;
        } else if (i == n_old || old[i] > v[j].uid) {
            res->added++;
            j++;
        } else {
            i++;
            j++;
        }
    }
}

static mode_t list_mode(const char *dir, const struct ident *old)
{
    struct stat st;

    if (old->exists)
        return old->mode & 0666;
    if (stat(dir, &st) == 0)
        return st.st_mode & 0666;
    return 0600;
}

static int sync_run(struct uidlist *ul, const struct maildir_folder *f, unsigned flags,
                    const uint32_t *old_uids, size_t n_old, struct uidlist_sync_result *res,
                    struct err *e);

int uidlist_sync(struct uidlist *ul, const struct maildir_folder *f, unsigned flags,
                 struct uidlist_sync_result *res, struct err *e)
{
    struct uidlist_sync_result dummy;
    uint32_t *old_uids;
    size_t n_old;
    int rc;

    if (res == NULL)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    n_old = ul->n;
    old_uids = XNEWARRAY(uint32_t, n_old + 1);
    for (size_t i = 0; i < n_old; i++)
        old_uids[i] = ul->v[i].uid;
    rc = sync_run(ul, f, flags, old_uids, n_old, res, e);
    free(old_uids);
    return rc;
}

static int sync_run(struct uidlist *ul, const struct maildir_folder *f, unsigned flags,
                    const uint32_t *old_uids, size_t n_old, struct uidlist_sync_result *res,
                    struct err *e)
{
    struct maildir_scan *scan = NULL;
    struct uidlist_lock *lk = NULL;
    struct list l;
    struct merge m;
    struct ident id, cur;
    bool stable, found, renamed, need, list_changed = false;
    struct dir_mark mark;
    bool uv_known = ul->exists_ && !ul->rebuild_;
    uint32_t uv_before = ul->uidvalidity;
    int rc = -1;

    memset(&l, 0, sizeof(l));

    /* Without the lock first: most syncs find nothing to write. */
    if (!ul->rebuild_ && uidlist_refresh(ul, &list_changed, e) != 0)
        return -1;
    if (list_changed)
        ul->have_mark_ = false;
    if (uv_known && ul->exists_ && ul->uidvalidity != uv_before)
        res->uidvalidity_changed = true;
    if (!(flags & UIDLIST_SYNC_WRITE) && ul->exists_ && !ul->rebuild_ && ul->have_mark_) {
        /* Neither the list nor new/ and cur/ changed since a scan we could
         * trust: nothing to look at. */
        if (mark_dirs(f->path, &mark, e) != 0)
            return -1;
        if (ul_same_mark(ul, &mark) && mark_settled(&mark))
            return 0;
    }
    ul->have_mark_ = false;
    res->scanned = true;
    if (stable_scan(f, &scan, &stable, &mark, e) != 0)
        return -1;
    need = scan_check(ul, scan, stable, &res->renamed);
    free(scan);
    scan = NULL;
    if (!need && ul->exists_ && !ul->rebuild_ && !(flags & UIDLIST_SYNC_WRITE)) {
        count_changes(old_uids, n_old, ul->v, ul->n, res);
        res->scan_unstable = !stable;
        if (stable)
            ul_set_mark(ul, &mark);
        return 0;
    }

    /* Under the lock: the file as it is now, the folder as it is now. */
    {
        struct ident mode_id;

        if (stat_list(ul->dir, &mode_id, e) != 0)
            return -1;
        if (uidlist_lock_take(ul->dir, &ul->opts_, list_mode(ul->dir, &mode_id), &lk, e) != 0)
            return -1;
    }
    if (step(UIDLIST_STEP_LOCKED) != 0) {
        err_sys(e, "%s: lock", ul->dir);
        goto out;
    }
    {
        struct err pe;

        err_clear(&pe);
        if (read_list(ul->dir, &l, &id, &found, &pe) != 0) {
            if (!ul->rebuild_ || pe.code != ERR_PARSE) {
                if (e != NULL)
                    *e = pe;
                goto out;
            }
            found = false;
        } else if (!found) {
            /* No file (yet, or removed): what we know is the list. */
        } else {
            carry_files(ul, &l);
            if ((uv_known || ul->rebuild_) && l.uidvalidity != ul->uidvalidity)
                res->uidvalidity_changed = true;
        }
        if (!found) {
            struct ident none;

            memset(&none, 0, sizeof(none));
            list_copy(ul, &l);
            id = none;
        }
    }
    if (stable_scan(f, &scan, &stable, &mark, e) != 0)
        goto out;
    if (uidlist_lock_refresh(lk, e) != 0)
        goto out;
    if (merge_scan(&l, scan, stable, &m, e) != 0)
        goto out;
    res->scan_unstable = !stable;
    if (!m.changed && id.exists && !(ul->rebuild_ && !found) && !(flags & UIDLIST_SYNC_WRITE)) {
        /* Someone else wrote what we would have. */
        count_changes(old_uids, n_old, l.v, l.n, res);
        res->renamed += m.renamed;
        ul_take(ul, &l);
        ul_set_ident(ul, &id);
        ul->rebuild_ = false;
        if (stable)
            ul_set_mark(ul, &mark);
        rc = 0;
        goto out;
    }
    if (write_list(ul->dir, lk, &l, &id, &cur, &renamed, e) != 0) {
        if (renamed) {
            /* The new list is in place; read it next time. */
            ul->exists_ = true;
            ul->ino_ = 0;
            ul->rebuild_ = false;
        }
        goto out;
    }
    count_changes(old_uids, n_old, l.v, l.n, res);
    res->renamed += m.renamed;
    ul_take(ul, &l);
    ul_set_ident(ul, &cur);
    ul->rebuild_ = false;
    if (stable)
        ul_set_mark(ul, &mark);
    res->written = true;
    rc = 0;
out:
    if (rc != 0)
        box_scope(e, e != NULL ? e->temporary : false);
    uidlist_lock_release(lk);
    list_free(&l);
    free(scan);
    return rc;
}
