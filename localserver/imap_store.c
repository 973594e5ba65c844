/*
 * imap_store: one user's IMAP mail store over Maildir++ (see imap_store.h).
 */
#include "imap_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mutf7.h"
#include "xalloc.h"

#define DOTLOCK_WAIT_MS 10000
#define DOTLOCK_STALE_S 120
#define RM_DEPTH_MAX 4
#define CACHE_MAGIC "CFC1\n"
#define CACHE_MAGIC_LEN 5
#define CACHE_FILE_MAX (256u * 1024 * 1024)
#define SMALL_FILE_MAX (1024u * 1024)

struct imap_store {
    char *root;
    int rootfd;
    struct maildir *md;
    struct imap_special_use *su;
    size_t n_su;
    struct uidlist_opts ulopts;
};

struct cache_ent {
    uint32_t uid;
    char *rec;
    size_t len;
};

struct imap_cache_tab {
    bool loaded;
    size_t n, cap;
    struct cache_ent *v;
};

static const struct imap_special_use default_su[] = {
    {"Sent", "\\Sent"}, {"Drafts", "\\Drafts"}, {"Trash", "\\Trash"},
    {"Junk", "\\Junk"}, {"Archive", "\\Archive"},
};

/* ---- small helpers ------------------------------------------------------- */

static bool is_inbox(const char *s)
{
    return strcasecmp(s, "INBOX") == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
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

/* Read a small regular file (no symlink) into b.  1 when it does not
 * exist, 0 read, -1 error. */
static int read_small(int dirfd, const char *name, struct buf *b, struct stat *st,
                      struct err *e)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    int rc;
    struct stat sb;

    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        return err_sys(e, "cannot open %s", name);
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(e, ERR_INVAL, "%s is not a regular file", name);
    }
    if (st != NULL)
        *st = sb;
    buf_init(b, SMALL_FILE_MAX);
    rc = buf_read_all(b, fd);
    close(fd);
    if (rc == -2)
        return err_set(e, ERR_LIMIT, "%s is too big", name);
    if (rc != 0)
        return err_sys(e, "cannot read %s", name);
    return 0;
}

/* Dovecot-style dot lock: "<name>.lock" created O_EXCL becomes the new file.
 * Returns the fd of the lock file. */
static int dotlock_take(int dirfd, const char *lockname, struct err *e)
{
    long waited = 0;

    for (;;) {
        int fd = openat(dirfd, lockname,
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        struct stat sb;
        if (fd >= 0) {
            if (geteuid() == 0 && fstat(dirfd, &sb) == 0 && fchown(fd, sb.st_uid, sb.st_gid) != 0) {
                /* the file stays root's; readable still */
            }
            return fd;
        }
        if (errno != EEXIST)
            return err_sys(e, "cannot create %s", lockname);
        if (fstatat(dirfd, lockname, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            time(NULL) - sb.st_mtime > DOTLOCK_STALE_S) {
            unlinkat(dirfd, lockname, 0);
            continue;
        }
        if (waited >= DOTLOCK_WAIT_MS) {
            err_set(e, ERR_IO, "%s is held by another process", lockname);
            err_scope(e, ERR_SCOPE_BOX, true);
            return -1;
        }
        sleep_ms(10);
        waited += 10;
    }
}

/* Write content into the lock file, sync it and rename it over target. */
static int dotlock_commit(int dirfd, const char *dirpath, int fd, const char *lockname,
                          const char *target, const struct buf *content, struct err *e)
{
    if (write_all(fd, content->data != NULL ? content->data : "", content->len) != 0 ||
        fsync(fd) != 0) {
        err_sys(e, "cannot write %s", lockname);
        close(fd);
        unlinkat(dirfd, lockname, 0);
        return -1;
    }
    close(fd);
    if (renameat(dirfd, lockname, dirfd, target) != 0) {
        err_sys(e, "cannot rename %s", lockname);
        unlinkat(dirfd, lockname, 0);
        return -1;
    }
    if (fsync_dir(dirpath) != 0)
        return err_sys(e, "cannot sync %s", dirpath);
    return 0;
}

static void dotlock_abort(int dirfd, int fd, const char *lockname)
{
    close(fd);
    unlinkat(dirfd, lockname, 0);
}

/* ---- names --------------------------------------------------------------- */

static int utf8_name_check(const char *name, struct err *e)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t i, len = strlen(name);

    if (len == 0)
        return err_set(e, ERR_INVAL, "empty mailbox name");
    for (i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (c < 0x20 || c == 0x7f)
            return err_set(e, ERR_INVAL, "control character in mailbox name");
        if (c == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            return err_set(e, ERR_INVAL, "control character in mailbox name");
        if (c == '/' || c == '~' || c == '\\' || c == '*' || c == '%')
            return err_set(e, ERR_INVAL, "character '%c' not allowed in mailbox names", c);
        if (c == '.' && (i == 0 || i + 1 == len || p[i + 1] == '.'))
            return err_set(e, ERR_INVAL, "empty hierarchy level in mailbox name");
    }
    return 0;
}

int imap_store_name_to_folder(const char *name, char **folder, struct err *e)
{
    struct buf b = BUF_INIT;
    char *canon;

    *folder = NULL;
    if (name == NULL)
        return err_set(e, ERR_INVAL, "no mailbox name");
    if (is_inbox(name)) {
        *folder = xstrdup("INBOX");
        return 0;
    }
    if (strncasecmp(name, "INBOX.", 6) == 0)
        canon = xasprintf("INBOX.%s", name + 6);
    else
        canon = xstrdup(name);
    if (utf8_name_check(canon, e) != 0) {
        free(canon);
        return -1;
    }
    buf_init(&b, MAILDIR_FOLDER_NAME_MAX);
    if (mutf7_from_utf8(canon, strlen(canon), &b, e) != 0) {
        bool limit = e != NULL && e->code == ERR_LIMIT;
        free(canon);
        buf_free(&b);
        return err_set(e, ERR_INVAL, limit ? "mailbox name too long" : "mailbox name is not valid UTF-8");
    }
    free(canon);
    if (maildir_folder_name_check(buf_cstr(&b), e) != 0) {
        buf_free(&b);
        if (e != NULL)
            e->code = ERR_INVAL;
        return -1;
    }
    *folder = buf_steal(&b, NULL);
    return 0;
}

int imap_store_folder_to_name(const char *folder, char **name, struct err *e)
{
    struct buf b = BUF_INIT;
    char *back = NULL;

    *name = NULL;
    if (is_inbox(folder)) {
        *name = xstrdup("INBOX");
        return 0;
    }
    buf_init(&b, 4 * MAILDIR_FOLDER_NAME_MAX);
    if (mutf7_to_utf8(folder, strlen(folder), &b, e) != 0) {
        buf_free(&b);
        return err_set(e, ERR_INVAL, "folder name is not modified UTF-7");
    }
    if (imap_store_name_to_folder(buf_cstr(&b), &back, e) != 0 || strcmp(back, folder) != 0) {
        free(back);
        buf_free(&b);
        return err_set(e, ERR_INVAL, "folder name is not canonical");
    }
    free(back);
    *name = buf_steal(&b, NULL);
    return 0;
}

/* ---- store ---------------------------------------------------------------- */

int imap_store_open(const char *maildir, const struct imap_store_opts *opts,
                    struct imap_store **out, struct err *e)
{
    struct imap_store *st;
    struct uidlist_opts ulo = UIDLIST_OPTS_INIT;
    size_t i;

    *out = NULL;
    st = XNEW(struct imap_store);
    st->rootfd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (st->rootfd < 0) {
        err_sys(e, "cannot open %s", maildir);
        free(st);
        return -1;
    }
    if (maildir_open(maildir, &st->md, e) != 0) {
        close(st->rootfd);
        free(st);
        return -1;
    }
    st->root = xstrdup(st->md->path);
    if (opts != NULL && opts->special_use != NULL) {
        st->n_su = opts->n_special_use;
        st->su = XNEWARRAY(struct imap_special_use, st->n_su + 1);
        for (i = 0; i < st->n_su; i++) {
            st->su[i].name = xstrdup(opts->special_use[i].name);
            st->su[i].flag = xstrdup(opts->special_use[i].flag);
        }
    } else {
        st->n_su = ARRAY_LEN(default_su);
        st->su = XNEWARRAY(struct imap_special_use, st->n_su);
        for (i = 0; i < st->n_su; i++) {
            st->su[i].name = xstrdup(default_su[i].name);
            st->su[i].flag = xstrdup(default_su[i].flag);
        }
    }
    st->ulopts = opts != NULL ? opts->uidlist : ulo;
    *out = st;
    return 0;
}

void imap_store_close(struct imap_store *st)
{
    size_t i;

    if (st == NULL)
        return;
    for (i = 0; i < st->n_su; i++) {
        free((char *)(uintptr_t)st->su[i].name);
        free((char *)(uintptr_t)st->su[i].flag);
    }
    free(st->su);
    maildir_close(st->md);
    close(st->rootfd);
    free(st->root);
    free(st);
}

static bool subdirs_ok(int fd)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    size_t i;
    for (i = 0; i < ARRAY_LEN(subs); i++) {
        struct stat sb;
        if (fstatat(fd, subs[i], &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode))
            return false;
    }
    return true;
}

/* 1: ".folder" is a real folder; 0: nothing there; -1 (ERR_INVAL): something
 * that is not a folder (a symlink, a file, no cur/ new/ tmp/). */
static int folder_state(struct imap_store *st, const char *folder, struct err *e)
{
    char *dname;
    struct stat sb;
    int fd, ok;

    if (is_inbox(folder))
        return 1;
    dname = xasprintf(".%s", folder);
    if (fstatat(st->rootfd, dname, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
        free(dname);
        if (errno == ENOENT)
            return 0;
        return err_sys(e, "cannot stat folder");
    }
    if (!S_ISDIR(sb.st_mode)) {
        free(dname);
        return err_set(e, ERR_INVAL, "not a folder: %s", folder);
    }
    fd = openat(st->rootfd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    free(dname);
    if (fd < 0)
        return err_set(e, ERR_INVAL, "not a folder: %s", folder);
    ok = subdirs_ok(fd);
    close(fd);
    if (!ok)
        return err_set(e, ERR_INVAL, "not a folder: %s", folder);
    return 1;
}

/* Open the folder of an IMAP name after the checks. */
static int folder_open(struct imap_store *st, const char *name, char **folder_out,
                       struct maildir_folder **out, struct err *e)
{
    char *folder;
    int s;

    *out = NULL;
    if (imap_store_name_to_folder(name, &folder, e) != 0)
        return -1;
    s = folder_state(st, folder, e);
    if (s <= 0) {
        if (s == 0)
            err_set(e, ERR_NOTFOUND, "no such mailbox");
        free(folder);
        return -1;
    }
    if (maildir_folder_open(st->md, folder, out, e) != 0) {
        free(folder);
        return -1;
    }
    if (folder_out != NULL)
        *folder_out = folder;
    else
        free(folder);
    return 0;
}

/* ---- folder listing --------------------------------------------------------- */

/* '.' sorts before every other byte, so a folder precedes its children. */
static int name_cmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    while (*x != 0 && *x == *y) {
        x++;
        y++;
    }
    if (*x == *y)
        return 0;
    if (*x == 0)
        return -1;
    if (*y == 0)
        return 1;
    if (*x == '.')
        return -1;
    if (*y == '.')
        return 1;
    return *x < *y ? -1 : 1;
}

static int name_qcmp(const void *a, const void *b)
{
    return name_cmp(*(char *const *)a, *(char *const *)b);
}

struct names {
    char **v;
    size_t n, cap;
};

static void names_add(struct names *ns, char *s)
{
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 16;
        ns->v = xreallocarray(ns->v, ns->cap, sizeof(*ns->v));
    }
    ns->v[ns->n++] = s;
}

static void names_free(struct names *ns)
{
    size_t i;
    for (i = 0; i < ns->n; i++)
        free(ns->v[i]);
    free(ns->v);
    ns->v = NULL;
    ns->n = ns->cap = 0;
}

static bool names_has(const struct names *ns, const char *s)
{
    return ns->n > 0 && bsearch(&s, ns->v, ns->n, sizeof(char *), name_qcmp) != NULL;
}

/* Any name in sorted ns with prefix s + "." ? */
static bool names_has_children(const struct names *ns, const char *s)
{
    size_t lo = 0, hi = ns->n, l = strlen(s);
    char *key = xasprintf("%s.", s);
    bool r;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (name_cmp(ns->v[mid], key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    r = lo < ns->n && strncmp(ns->v[lo], key, l + 1) == 0;
    free(key);
    return r;
}

/* Every folder (IMAP names, sorted, INBOX included). */
static int list_folders(struct imap_store *st, struct names *ns, struct err *e)
{
    int fd = openat(st->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    memset(ns, 0, sizeof(*ns));
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return err_sys(e, "cannot read %s", st->root);
    }
    names_add(ns, xstrdup("INBOX"));
    while ((de = readdir(d)) != NULL) {
        char *name;
        struct err e2;
        if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 ||
            strcmp(de->d_name, "..") == 0)
            continue;
        if (imap_store_folder_to_name(de->d_name + 1, &name, &e2) != 0)
            continue;
        if (folder_state(st, de->d_name + 1, &e2) != 1 || is_inbox(de->d_name + 1)) {
            free(name);
            continue;
        }
        names_add(ns, name);
    }
    closedir(d);
    if (ns->n > 1)
        qsort(ns->v, ns->n, sizeof(char *), name_qcmp);
    return 0;
}

static bool match_rec(const char *p, const char *n)
{
    for (;;) {
        if (*p == '*') {
            const char *s;
            for (s = n;; s++) {
                if (match_rec(p + 1, s))
                    return true;
                if (*s == 0)
                    return false;
            }
        }
        if (*p == '%') {
            const char *s;
            for (s = n;; s++) {
                if (match_rec(p + 1, s))
                    return true;
                if (*s == 0 || *s == '.')
                    return false;
            }
        }
        if (*p == 0)
            return *n == 0;
        if (*p != *n)
            return false;
        p++;
        n++;
    }
}

bool imap_store_list_match(const char *pattern, const char *name)
{
    char *p = xstrdup(pattern), *n = xstrdup(name);
    bool r;
    if (strncasecmp(n, "INBOX", 5) == 0 && (n[5] == 0 || n[5] == '.')) {
        memcpy(n, "INBOX", 5);
        if (strncasecmp(p, "INBOX", 5) == 0)
            memcpy(p, "INBOX", 5);
    }
    r = match_rec(p, n);
    free(p);
    free(n);
    return r;
}

static const char *special_use_of(const struct imap_store *st, const char *name)
{
    size_t i;
    for (i = 0; i < st->n_su; i++)
        if (strcmp(st->su[i].name, name) == 0)
            return st->su[i].flag;
    return NULL;
}

/* subscriptions: storage form ("Caf&AOk-\tsub") */
static int subs_read(struct imap_store *st, struct names *raw, struct err *e)
{
    struct buf b = BUF_INIT;
    const char *p, *end;
    int rc;
    bool v2 = false;

    memset(raw, 0, sizeof(*raw));
    rc = read_small(st->rootfd, IMAP_STORE_SUBSCRIPTIONS_FILE, &b, NULL, e);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return 0;
    p = buf_cstr(&b);
    end = p + b.len;
    if (b.len >= 4 && memcmp(p, "V\t2\n", 4) == 0) {
        v2 = true;
        p += 4;
        if (p < end && *p == '\n')
            p++;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (l > 0) {
            char *s = xmemdup0(p, l), *q;
            if (!v2)
                for (q = s; *q; q++)
                    if (*q == '.')
                        *q = '\t';
            names_add(raw, s);
        }
        p += l + (nl != NULL ? 1 : 0);
    }
    buf_free(&b);
    return 0;
}

/* "Caf&AOk-\tsub" -> UTF-8 IMAP name, or NULL. */
static char *sub_to_name(const char *raw)
{
    char *f = xstrdup(raw), *q, *name = NULL;
    struct err e2;
    for (q = f; *q; q++)
        if (*q == '\t')
            *q = '.';
    if (imap_store_folder_to_name(f, &name, &e2) != 0)
        name = NULL;
    free(f);
    return name;
}

int imap_store_subscriptions(struct imap_store *st, char ***names, size_t *n, struct err *e)
{
    struct names raw, out = {NULL, 0, 0};
    size_t i;

    if (subs_read(st, &raw, e) != 0)
        return -1;
    for (i = 0; i < raw.n; i++) {
        char *name = sub_to_name(raw.v[i]);
        if (name != NULL)
            names_add(&out, name);
    }
    names_free(&raw);
    *names = out.v;
    *n = out.n;
    return 0;
}

static int subs_change(struct imap_store *st, const char *name, bool add, struct err *e)
{
    char *folder, *q;
    struct names raw;
    struct buf b = BUF_INIT;
    size_t i;
    bool found = false;
    int fd, rc;

    if (imap_store_name_to_folder(name, &folder, e) != 0)
        return -1;
    for (q = folder; *q; q++)
        if (*q == '.')
            *q = '\t';
    fd = dotlock_take(st->rootfd, IMAP_STORE_SUBSCRIPTIONS_FILE ".lock", e);
    if (fd < 0) {
        free(folder);
        return -1;
    }
    if (subs_read(st, &raw, e) != 0) {
        dotlock_abort(st->rootfd, fd, IMAP_STORE_SUBSCRIPTIONS_FILE ".lock");
        free(folder);
        return -1;
    }
    if (buf_puts(&b, "V\t2\n\n") != 0)
        die("buf");
    for (i = 0; i < raw.n; i++) {
        if (strcmp(raw.v[i], folder) == 0) {
            if (found || !add)
                continue;
            found = true;
        }
        if (buf_puts(&b, raw.v[i]) != 0 || buf_putc(&b, '\n') != 0)
            die("buf");
    }
    if (add && !found && (buf_puts(&b, folder) != 0 || buf_putc(&b, '\n') != 0))
        die("buf");
    rc = dotlock_commit(st->rootfd, st->root, fd, IMAP_STORE_SUBSCRIPTIONS_FILE ".lock",
                        IMAP_STORE_SUBSCRIPTIONS_FILE, &b, e);
    buf_free(&b);
    names_free(&raw);
    free(folder);
    return rc;
}

int imap_store_subscribe(struct imap_store *st, const char *name, struct err *e)
{
    return subs_change(st, name, true, e);
}

int imap_store_unsubscribe(struct imap_store *st, const char *name, struct err *e)
{
    return subs_change(st, name, false, e);
}

static void list_push(struct imap_list *l, size_t *cap, const char *name, unsigned flags,
                      const char *su)
{
    if (l->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        l->v = xreallocarray(l->v, *cap, sizeof(*l->v));
    }
    l->v[l->n].name = xstrdup(name);
    l->v[l->n].flags = flags;
    l->v[l->n].special_use = su;
    l->n++;
}

int imap_store_list(struct imap_store *st, const char *reference, const char *pattern,
                    unsigned sel, struct imap_list *out, struct err *e)
{
    struct names fs, all = {NULL, 0, 0}, subs = {NULL, 0, 0}, raw;
    char *pat;
    size_t i, cap = 0;

    memset(out, 0, sizeof(*out));
    pat = xasprintf("%s%s", reference != NULL ? reference : "", pattern);
    if (*pat == 0) {
        free(pat);
        return 0;
    }
    if (list_folders(st, &fs, e) != 0) {
        free(pat);
        return -1;
    }
    if (subs_read(st, &raw, e) != 0) {
        names_free(&fs);
        free(pat);
        return -1;
    }
    for (i = 0; i < raw.n; i++) {
        char *name = sub_to_name(raw.v[i]);
        if (name != NULL)
            names_add(&subs, name);
    }
    names_free(&raw);
    if (subs.n > 1)
        qsort(subs.v, subs.n, sizeof(char *), name_qcmp);
    /* all = the folders plus their missing parents */
    for (i = 0; i < fs.n; i++) {
        char *dot;
        names_add(&all, xstrdup(fs.v[i]));
        for (dot = strchr(fs.v[i], '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
            char *parent = xstrndup(fs.v[i], (size_t)(dot - fs.v[i]));
            if (!names_has(&fs, parent))
                names_add(&all, parent);
            else
                free(parent);
        }
    }
    if (all.n > 1)
        qsort(all.v, all.n, sizeof(char *), name_qcmp);
    if (sel & IMAP_LIST_SEL_SUBSCRIBED) {
        for (i = 0; i < subs.n; i++) {
            unsigned fl = IMAP_LIST_SUBSCRIBED;
            if (i > 0 && strcmp(subs.v[i], subs.v[i - 1]) == 0)
                continue;
            if (!imap_store_list_match(pat, subs.v[i]))
                continue;
            if (!names_has(&fs, subs.v[i]))
                fl |= names_has(&all, subs.v[i]) ? IMAP_LIST_NOSELECT : IMAP_LIST_NONEXISTENT;
            fl |= names_has_children(&all, subs.v[i]) ? IMAP_LIST_HASCHILDREN
                                                     : IMAP_LIST_HASNOCHILDREN;
            list_push(out, &cap, subs.v[i], fl, special_use_of(st, subs.v[i]));
        }
    } else {
        for (i = 0; i < all.n; i++) {
            unsigned fl = 0;
            if (i > 0 && strcmp(all.v[i], all.v[i - 1]) == 0)
                continue;
            if (!imap_store_list_match(pat, all.v[i]))
                continue;
            if (!names_has(&fs, all.v[i]))
                fl |= IMAP_LIST_NOSELECT;
            fl |= names_has_children(&all, all.v[i]) ? IMAP_LIST_HASCHILDREN
                                                    : IMAP_LIST_HASNOCHILDREN;
            if (names_has(&subs, all.v[i]))
                fl |= IMAP_LIST_SUBSCRIBED;
            list_push(out, &cap, all.v[i], fl,
                      (fl & IMAP_LIST_NOSELECT) ? NULL : special_use_of(st, all.v[i]));
        }
    }
    /* INBOX first */
    for (i = 0; i < out->n; i++) {
        if (strcmp(out->v[i].name, "INBOX") == 0 && i > 0) {
            struct imap_list_entry t = out->v[i];
            memmove(out->v + 1, out->v, i * sizeof(*out->v));
            out->v[0] = t;
            break;
        }
    }
    names_free(&fs);
    names_free(&all);
    names_free(&subs);
    free(pat);
    return 0;
}

void imap_list_free(struct imap_list *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int imap_list_flags_write(const struct imap_list_entry *le, struct buf *out)
{
    static const struct { unsigned bit; const char *s; } t[] = {
        {IMAP_LIST_NONEXISTENT, "\\NonExistent"}, {IMAP_LIST_NOSELECT, "\\Noselect"},
        {IMAP_LIST_SUBSCRIBED, "\\Subscribed"}, {IMAP_LIST_HASCHILDREN, "\\HasChildren"},
        {IMAP_LIST_HASNOCHILDREN, "\\HasNoChildren"},
    };
    size_t i;
    bool sp = false;

    if (buf_putc(out, '(') != 0)
        return -1;
    for (i = 0; i < ARRAY_LEN(t); i++) {
        if (!(le->flags & t[i].bit))
            continue;
        if ((sp && buf_putc(out, ' ') != 0) || buf_puts(out, t[i].s) != 0)
            return -1;
        sp = true;
    }
    if (le->special_use != NULL) {
        if ((sp && buf_putc(out, ' ') != 0) || buf_puts(out, le->special_use) != 0)
            return -1;
    }
    return buf_putc(out, ')');
}

/* ---- create, delete, rename --------------------------------------------- */

int imap_store_create(struct imap_store *st, const char *name, struct err *e)
{
    char *n = xstrdup(name), *folder, *dot;
    size_t l = strlen(n);
    int s;

    if (l > 1 && n[l - 1] == '.')
        n[l - 1] = 0;
    if (imap_store_name_to_folder(n, &folder, e) != 0) {
        free(n);
        return -1;
    }
    free(n);
    if (is_inbox(folder)) {
        free(folder);
        return err_set(e, ERR_EXISTS, "INBOX exists");
    }
    s = folder_state(st, folder, e);
    if (s != 0) {
        if (s > 0)
            err_set(e, ERR_EXISTS, "mailbox exists");
        free(folder);
        return -1;
    }
    for (dot = strchr(folder, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
        struct err e2;
        *dot = 0;
        if (!is_inbox(folder)) {
            s = folder_state(st, folder, e);
            if (s < 0) {
                free(folder);
                return -1;
            }
            if (s == 0 && maildir_folder_create(st->md, folder, &e2) != 0 &&
                e2.code != ERR_EXISTS) {
                if (e != NULL)
                    *e = e2;
                free(folder);
                return -1;
            }
        }
        *dot = '.';
    }
    s = maildir_folder_create(st->md, folder, e);
    free(folder);
    return s;
}

static int rm_rf_at(int pfd, const char *name, int depth)
{
    int fd;
    DIR *d;
    struct dirent *de;
    int rc = 0;

    if (unlinkat(pfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (depth > RM_DEPTH_MAX)
        return -1;
    fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (rm_rf_at(dirfd(d), de->d_name, depth + 1) != 0)
            rc = -1;
    }
    closedir(d);
    if (unlinkat(pfd, name, AT_REMOVEDIR) != 0)
        rc = -1;
    return rc;
}

int imap_store_delete(struct imap_store *st, const char *name, struct err *e)
{
    char *folder, *dname, *tmpname, *u;
    struct names fs;
    bool children;
    int s;

    if (imap_store_name_to_folder(name, &folder, e) != 0)
        return -1;
    if (is_inbox(folder)) {
        free(folder);
        return err_set(e, ERR_INVAL, "INBOX cannot be deleted");
    }
    s = folder_state(st, folder, e);
    if (s <= 0) {
        if (s == 0)
            err_set(e, ERR_NOTFOUND, "no such mailbox");
        free(folder);
        return -1;
    }
    if (list_folders(st, &fs, e) != 0) {
        free(folder);
        return -1;
    }
    {
        char *uname = NULL;
        struct err e2;
        children = imap_store_folder_to_name(folder, &uname, &e2) == 0 &&
                   names_has_children(&fs, uname);
        free(uname);
    }
    names_free(&fs);
    if (!children) {
        s = maildir_folder_delete(st->md, folder, 0, e);
        free(folder);
        return s;
    }
    /* with children: the directory goes, the name stays as \Noselect */
    dname = xasprintf(".%s", folder);
    u = maildir_unique_name();
    tmpname = xasprintf("tmp/.deleted.%s", u);
    free(u);
    if (renameat(st->rootfd, dname, st->rootfd, tmpname) != 0) {
        err_sys(e, "cannot delete %s", name);
        free(dname);
        free(tmpname);
        free(folder);
        return -1;
    }
    fsync_dir(st->root);
    if (rm_rf_at(st->rootfd, tmpname, 0) != 0)
        log_warn("imap_store: could not remove all of %s/%s", st->root, tmpname);
    free(dname);
    free(tmpname);
    free(folder);
    return 0;
}

/* Move every message of INBOX into folder dst (same file system). */
static int inbox_move_all(struct imap_store *st, const struct maildir_folder *dst,
                          struct err *e)
{
    static const char *const subs[] = {"new", "cur"};
    size_t k;

    for (k = 0; k < 2; k++) {
        char *sp = xasprintf("%s/%s", st->root, subs[k]);
        char *dp = xasprintf("%s/%s", dst->path, subs[k]);
        int sfd = open(sp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int dfd = open(dp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = NULL;
        struct dirent *de;
        int rc = 0;

        if (sfd < 0 || dfd < 0 || (d = fdopendir(sfd)) == NULL) {
            rc = err_sys(e, "cannot open %s", sp);
            if (sfd >= 0)
                close(sfd);
        } else {
            while ((de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.')
                    continue;
                if (renameat(dirfd(d), de->d_name, dfd, de->d_name) != 0 && errno != ENOENT) {
                    rc = err_sys(e, "cannot move a message of INBOX");
                    break;
                }
            }
            if (fsync(dfd) != 0 && rc == 0)
                rc = err_sys(e, "cannot sync %s", dp);
            if (fsync(dirfd(d)) != 0 && rc == 0)
                rc = err_sys(e, "cannot sync %s", sp);
            closedir(d);
        }
        if (dfd >= 0)
            close(dfd);
        free(sp);
        free(dp);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int imap_store_rename(struct imap_store *st, const char *old_name, const char *new_name,
                      struct err *e)
{
    char *of = NULL, *nf = NULL;
    int s, rc = -1;

    if (imap_store_name_to_folder(old_name, &of, e) != 0)
        return -1;
    if (imap_store_name_to_folder(new_name, &nf, e) != 0)
        goto out;
    if (is_inbox(nf)) {
        err_set(e, ERR_EXISTS, "INBOX exists");
        goto out;
    }
    s = folder_state(st, nf, e);
    if (s != 0) {
        if (s > 0)
            err_set(e, ERR_EXISTS, "mailbox exists");
        goto out;
    }
    if (is_inbox(of)) {
        struct maildir_folder *dst;
        if (imap_store_create(st, new_name, e) != 0)
            goto out;
        if (maildir_folder_open(st->md, nf, &dst, e) != 0)
            goto out;
        rc = inbox_move_all(st, dst, e);
        maildir_folder_close(dst);
        goto out;
    }
    {
        size_t ol = strlen(of);
        if (strncmp(nf, of, ol) == 0 && nf[ol] == '.') {
            err_set(e, ERR_INVAL, "cannot rename a mailbox into itself");
            goto out;
        }
    }
    s = folder_state(st, of, e);
    if (s <= 0) {
        if (s == 0)
            err_set(e, ERR_NOTFOUND, "no such mailbox");
        goto out;
    }
    rc = maildir_folder_rename(st->md, of, nf, e);
out:
    free(of);
    free(nf);
    return rc;
}

/* ---- keywords ---------------------------------------------------------------- */

static bool keyword_valid(const char *k)
{
    const unsigned char *p;
    size_t l = strlen(k);
    if (l == 0 || l > IMAP_STORE_KEYWORD_LEN_MAX || k[0] == '\\')
        return false;
    for (p = (const unsigned char *)k; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || strchr("(){%*\"\\]", *p) != NULL)
            return false;
    return true;
}

static void kw_clear(char **kw)
{
    size_t i;
    for (i = 0; i < IMAP_STORE_KEYWORD_MAX; i++) {
        free(kw[i]);
        kw[i] = NULL;
    }
}

static void kw_parse(char **kw, const struct buf *b)
{
    const char *p = buf_cstr(b), *end = p + b->len;
    kw_clear(kw);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = xmemdup0(p, l), *sp, *endp;
        long idx;
        p += l + (nl != NULL ? 1 : 0);
        errno = 0;
        idx = strtol(line, &endp, 10);
        sp = endp;
        if (endp != line && *sp == ' ' && idx >= 0 && idx < IMAP_STORE_KEYWORD_MAX &&
            keyword_valid(sp + 1) && kw[idx] == NULL)
            kw[idx] = xstrdup(sp + 1);
        free(line);
    }
}

/* Re-read the folder's keywords file when it changed. */
static int kw_load(const char *dir, char **kw, struct timespec *mt, ino_t *ino, bool force,
                   struct err *e)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct buf b = BUF_INIT;
    struct stat sb;
    int rc;

    if (dfd < 0)
        return err_sys(e, "cannot open %s", dir);
    if (!force && fstatat(dfd, IMAP_STORE_KEYWORDS_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
        sb.st_ino == *ino && sb.st_mtim.tv_sec == mt->tv_sec &&
        sb.st_mtim.tv_nsec == mt->tv_nsec) {
        close(dfd);
        return 0;
    }
    rc = read_small(dfd, IMAP_STORE_KEYWORDS_FILE, &b, &sb, e);
    close(dfd);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        kw_clear(kw);
        *ino = 0;
        mt->tv_sec = mt->tv_nsec = 0;
        return 0;
    }
    kw_parse(kw, &b);
    *ino = sb.st_ino;
    *mt = sb.st_mtim;
    buf_free(&b);
    return 0;
}

static int kw_find(char *const *kw, const char *name)
{
    int i;
    for (i = 0; i < IMAP_STORE_KEYWORD_MAX; i++)
        if (kw[i] != NULL && strcasecmp(kw[i], name) == 0)
            return i;
    return -1;
}

/* The letter index of name, adding it to the file (under its lock) when new. */
static int kw_alloc(const char *dir, char **kw, struct timespec *mt, ino_t *ino,
                    const char *name, struct err *e)
{
    int i = kw_find(kw, name), dfd, fd, rc;
    struct buf b = BUF_INIT;
    struct stat sb;

    if (i >= 0)
        return i;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return err_sys(e, "cannot open %s", dir);
    fd = dotlock_take(dfd, IMAP_STORE_KEYWORDS_LOCK, e);
    if (fd < 0) {
        close(dfd);
        return -1;
    }
    if (kw_load(dir, kw, mt, ino, true, e) != 0) {
        dotlock_abort(dfd, fd, IMAP_STORE_KEYWORDS_LOCK);
        close(dfd);
        return -1;
    }
    i = kw_find(kw, name);
    if (i >= 0) {
        dotlock_abort(dfd, fd, IMAP_STORE_KEYWORDS_LOCK);
        close(dfd);
        return i;
    }
    for (i = 0; i < IMAP_STORE_KEYWORD_MAX && kw[i] != NULL; i++)
        ;
    if (i == IMAP_STORE_KEYWORD_MAX) {
        dotlock_abort(dfd, fd, IMAP_STORE_KEYWORDS_LOCK);
        close(dfd);
        return err_set(e, ERR_LIMIT, "too many keywords in this mailbox");
    }
    kw[i] = xstrdup(name);
    {
        int j;
        for (j = 0; j < IMAP_STORE_KEYWORD_MAX; j++)
            if (kw[j] != NULL && buf_printf(&b, "%d %s\n", j, kw[j]) != 0)
                die("buf");
    }
    rc = dotlock_commit(dfd, dir, fd, IMAP_STORE_KEYWORDS_LOCK, IMAP_STORE_KEYWORDS_FILE, &b, e);
    buf_free(&b);
    if (rc == 0 && fstatat(dfd, IMAP_STORE_KEYWORDS_FILE, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
        *ino = sb.st_ino;
        *mt = sb.st_mtim;
    }
    close(dfd);
    if (rc != 0) {
        free(kw[i]);
        kw[i] = NULL;
        return -1;
    }
    return i;
}

/* IMAP flags -> MAILDIR_F_* bits and keyword names. */
struct flagset {
    unsigned flags;
    const char *kw[IMAP_STORE_KEYWORD_MAX + 1];
    size_t n_kw;
};

static int flags_parse(const struct imap_str *fl, size_t n, struct flagset *out, struct err *e)
{
    static const struct { const char *s; unsigned bit; } sys[] = {
        {"\\Seen", MAILDIR_F_SEEN}, {"\\Answered", MAILDIR_F_REPLIED},
        {"\\Flagged", MAILDIR_F_FLAGGED}, {"\\Deleted", MAILDIR_F_TRASHED},
        {"\\Draft", MAILDIR_F_DRAFT},
    };
    size_t i, j;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < n; i++) {
        const char *s = fl[i].s;
        if (s == NULL || strlen(s) != fl[i].len)
            return err_set(e, ERR_INVAL, "bad flag");
        if (s[0] == '\\') {
            for (j = 0; j < ARRAY_LEN(sys); j++)
                if (strcasecmp(s, sys[j].s) == 0)
                    break;
            if (j == ARRAY_LEN(sys))
                return err_set(e, ERR_INVAL, "cannot set flag %s", s);
            out->flags |= sys[j].bit;
            continue;
        }
        if (!keyword_valid(s))
            return err_set(e, ERR_INVAL, "bad keyword");
        for (j = 0; j < out->n_kw; j++)
            if (strcasecmp(out->kw[j], s) == 0)
                break;
        if (j < out->n_kw)
            continue;
        if (out->n_kw == IMAP_STORE_KEYWORD_MAX)
            return err_set(e, ERR_LIMIT, "too many keywords");
        out->kw[out->n_kw++] = s;
    }
    return 0;
}

/* Letters for the keyword names, allocating them (alloc) or only those
 * known. */
static int flagset_letters(const struct flagset *fs, const char *dir, char **kw,
                           struct timespec *mt, ino_t *ino, bool alloc,
                           char letters[MAILDIR_KEYWORDS_SIZE], struct err *e)
{
    bool have[IMAP_STORE_KEYWORD_MAX] = {false};
    size_t i, k = 0;
    for (i = 0; i < fs->n_kw; i++) {
        int idx = alloc ? kw_alloc(dir, kw, mt, ino, fs->kw[i], e) : kw_find(kw, fs->kw[i]);
        if (idx < 0) {
            if (alloc)
                return -1;
            continue;
        }
        have[idx] = true;
    }
    for (i = 0; i < IMAP_STORE_KEYWORD_MAX; i++)
        if (have[i])
            letters[k++] = (char)('a' + i);
    letters[k] = 0;
    return 0;
}

/* ---- the CRLF size of a file ------------------------------------------------- */

static int crlf_size_fd(int fd, uint64_t *out)
{
    char b[65536];
    uint64_t n = 0;
    char prev = 0;
    for (;;) {
        ssize_t r = read(fd, b, sizeof(b));
        ssize_t i;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        for (i = 0; i < r; i++) {
            if (b[i] == '\n' && prev != '\r')
                n++;
            prev = b[i];
        }
        n += (uint64_t)r;
    }
    *out = n;
    return 0;
}

/* Open a message read-only without following a symbolic link. */
static int msg_open(const struct maildir_folder *f, struct maildir_ref *ref, int *fdp,
                    struct err *e)
{
    int tries;
    for (tries = 0; tries < 3; tries++) {
        char *path;
        int fd;
        struct stat sb;
        if (maildir_message_path(f, ref, &path, e) != 0)
            return -1;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
            int en = errno;
            free(path);
            if (en == ENOENT)
                continue;
            errno = en;
            return err_sys(e, "cannot open message");
        }
        free(path);
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            close(fd);
            return err_set(e, ERR_INVAL, "message is not a regular file");
        }
        *fdp = fd;
        return 0;
    }
    return err_set(e, ERR_NOTFOUND, "message vanished");
}

/* ---- uidlist ------------------------------------------------------------------ */

static int ul_open_sync(struct imap_store *st, const struct maildir_folder *f,
                        struct uidlist **out, struct uidlist_sync_result *res, struct err *e)
{
    struct uidlist *ul;
    uint32_t old = 0;

    if (uidlist_open(f->path, &st->ulopts, &ul, e) != 0) {
        if (e == NULL || e->code != ERR_PARSE)
            return -1;
        log_warn("imap_store: %s: %s; rebuilding it with new UIDs", f->path, e->text);
        if (uidlist_rebuild(f->path, &st->ulopts, &ul, &old, e) != 0)
            return -1;
    }
    if (uidlist_sync(ul, f, 0, res, e) != 0) {
        uidlist_free(ul);
        return -1;
    }
    *out = ul;
    return 0;
}

/* ---- STATUS --------------------------------------------------------------------- */

static bool name_size_field(const char *name, char key, uint64_t *v)
{
    const char *p = name;
    size_t bl = strcspn(name, ":");
    char pat[4] = {',', key, '=', 0};
    while ((p = strstr(p, pat)) != NULL && (size_t)(p - name) < bl) {
        char *end;
        unsigned long long x;
        errno = 0;
        x = strtoull(p + 3, &end, 10);
        if (end != p + 3 && errno == 0) {
            *v = x;
            return true;
        }
        p += 3;
    }
    return false;
}

int imap_store_status(struct imap_store *st, const char *name, struct imap_status *out,
                      struct err *e)
{
    struct maildir_folder *f;
    struct uidlist *ul;
    size_t i;

    memset(out, 0, sizeof(*out));
    if (folder_open(st, name, NULL, &f, e) != 0)
        return -1;
    if (ul_open_sync(st, f, &ul, NULL, e) != 0) {
        maildir_folder_close(f);
        return -1;
    }
    out->uidvalidity = ul->uidvalidity;
    out->uidnext = ul->next_uid;
    for (i = 0; i < ul->n; i++) {
        const struct uidlist_rec *r = &ul->v[i];
        unsigned fl = 0;
        uint64_t sz = 0;
        size_t l;
        const char *w;
        if (!r->found)
            continue;
        out->messages++;
        if (r->sub == MAILDIR_SUB_NEW)
            out->recent++;
        maildir_info_parse(r->file, &fl, NULL, NULL);
        if (!(fl & MAILDIR_F_SEEN))
            out->unseen++;
        if (fl & MAILDIR_F_TRASHED)
            out->deleted++;
        if ((w = uidlist_rec_field(r, 'W', &l)) != NULL) {
            sz = strtoull(w, NULL, 10);
        } else if (!name_size_field(r->file, 'W', &sz)) {
            struct maildir_ref ref = MAILDIR_REF_INIT;
            int fd;
            maildir_ref_set(&ref, r->sub, r->file);
            if (msg_open(f, &ref, &fd, NULL) == 0) {
                if (crlf_size_fd(fd, &sz) != 0)
                    sz = 0;
                close(fd);
            }
            maildir_ref_free(&ref);
        }
        out->size += sz;
    }
    uidlist_free(ul);
    maildir_folder_close(f);
    return 0;
}

/* ---- views ------------------------------------------------------------------------ */

static void msg_fill(struct imap_msg *m, const struct maildir_folder *f)
{
    char *path = NULL;
    struct stat sb;

    if (maildir_message_path(f, &m->ref, &path, NULL) == 0 && lstat(path, &sb) == 0) {
        m->raw_size = (uint64_t)sb.st_size;
        m->internal_date = sb.st_mtime;
    }
    free(path);
    m->flags = (m->flags & IMAP_FL_RECENT);
    {
        unsigned fl = 0;
        maildir_info_parse(m->ref.name, &fl, m->keywords, NULL);
        m->flags |= fl;
    }
}

static void view_push(struct imap_view *v, uint32_t uid, enum maildir_sub sub,
                      const char *file)
{
    struct imap_msg *m;
    if (v->n == v->cap_) {
        v->cap_ = v->cap_ ? v->cap_ * 2 : 64;
        v->msgs = xreallocarray(v->msgs, v->cap_, sizeof(*v->msgs));
    }
    m = &v->msgs[v->n++];
    memset(m, 0, sizeof(*m));
    m->uid = uid;
    m->ref.name = NULL;
    maildir_ref_set(&m->ref, sub, file);
    msg_fill(m, v->f_);
    if (sub == MAILDIR_SUB_NEW) {
        m->flags |= IMAP_FL_RECENT;
        if (!v->read_only && maildir_move_to_cur(v->f_, &m->ref, NULL) == 0)
            msg_fill(m, v->f_);
    }
}

static void view_load(struct imap_view *v)
{
    size_t i;
    for (i = 0; i < v->ul_->n; i++) {
        const struct uidlist_rec *r = &v->ul_->v[i];
        if (r->found)
            view_push(v, r->uid, r->sub, r->file);
    }
    v->uidvalidity = v->ul_->uidvalidity;
    v->uidnext = v->ul_->next_uid;
}

int imap_view_open(struct imap_store *st, const char *name, bool read_only,
                   struct imap_view **out, struct err *e)
{
    struct imap_view *v;
    char *folder;

    *out = NULL;
    v = XNEW(struct imap_view);
    v->st_ = st;
    v->read_only = read_only;
    if (folder_open(st, name, &folder, &v->f_, e) != 0) {
        free(v);
        return -1;
    }
    if (imap_store_folder_to_name(folder, &v->name, e) != 0) {
        free(folder);
        maildir_folder_close(v->f_);
        free(v);
        return -1;
    }
    free(folder);
    if (ul_open_sync(st, v->f_, &v->ul_, NULL, e) != 0 ||
        kw_load(v->f_->path, v->kw_, &v->kw_mtime_, &v->kw_ino_, true, e) != 0) {
        imap_view_close(v);
        return -1;
    }
    v->cache_ = XNEW(struct imap_cache_tab);
    view_load(v);
    *out = v;
    return 0;
}

static void cache_tab_free(struct imap_cache_tab *t)
{
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->n; i++)
        free(t->v[i].rec);
    free(t->v);
    free(t);
}

static void msgs_free(struct imap_view *v)
{
    size_t i;
    for (i = 0; i < v->n; i++)
        maildir_ref_free(&v->msgs[i].ref);
    free(v->msgs);
    v->msgs = NULL;
    v->n = v->cap_ = 0;
}

void imap_view_close(struct imap_view *v)
{
    if (v == NULL)
        return;
    if (v->cache_dirty_)
        (void)imap_view_cache_flush(v, NULL);
    msgs_free(v);
    kw_clear(v->kw_);
    cache_tab_free(v->cache_);
    uidlist_free(v->ul_);
    maildir_folder_close(v->f_);
    free(v->name);
    free(v);
}

ssize_t imap_view_find(const struct imap_view *v, uint32_t uid)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->msgs[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < v->n && v->msgs[lo].uid == uid ? (ssize_t)lo : -1;
}

int imap_view_resolve(const struct imap_view *v, const struct imap_seqset *set, bool uid,
                      size_t **idx, size_t *n, struct err *e)
{
    unsigned char *mark;
    size_t i, k = 0;

    *idx = NULL;
    *n = 0;
    if (v->n == 0) {
        if (!uid && set->n > 0)
            return err_set(e, ERR_INVAL, "no messages");
        return 0;
    }
    mark = xcalloc(v->n, 1);
    for (i = 0; i < set->n; i++) {
        uint64_t lo = set->r[i].lo, hi = set->r[i].hi, t;
        if (lo == IMAP_SEQ_SAVED || hi == IMAP_SEQ_SAVED) {
            free(mark);
            return err_set(e, ERR_INVAL, "no saved search result here");
        }
        if (uid) {
            uint64_t top = v->msgs[v->n - 1].uid;
            size_t j;
            if (lo == IMAP_SEQ_STAR)
                lo = top;
            if (hi == IMAP_SEQ_STAR)
                hi = top;
            if (lo > hi) {
                t = lo;
                lo = hi;
                hi = t;
            }
            for (j = 0; j < v->n; j++)
                if (v->msgs[j].uid >= lo && v->msgs[j].uid <= hi)
                    mark[j] = 1;
        } else {
            uint64_t j;
            if (lo == IMAP_SEQ_STAR)
                lo = v->n;
            if (hi == IMAP_SEQ_STAR)
                hi = v->n;
            if (lo > hi) {
                t = lo;
                lo = hi;
                hi = t;
            }
            if (lo < 1 || hi > v->n) {
                free(mark);
                return err_set(e, ERR_INVAL, "invalid message sequence number");
            }
            for (j = lo; j <= hi; j++)
                mark[j - 1] = 1;
        }
    }
    for (i = 0; i < v->n; i++)
        if (mark[i])
            k++;
    if (k > 0) {
        *idx = XNEWARRAY(size_t, k);
        k = 0;
        for (i = 0; i < v->n; i++)
            if (mark[i])
                (*idx)[k++] = i;
    }
    *n = k;
    free(mark);
    return 0;
}

const char *imap_view_keyword(const struct imap_view *v, char c)
{
    if (c < 'a' || c > 'z')
        return NULL;
    return v->kw_[c - 'a'];
}

int imap_view_flags_write(const struct imap_view *v, size_t i, struct buf *out)
{
    static const struct { unsigned bit; const char *s; } t[] = {
        {MAILDIR_F_SEEN, "\\Seen"}, {MAILDIR_F_REPLIED, "\\Answered"},
        {MAILDIR_F_FLAGGED, "\\Flagged"}, {MAILDIR_F_TRASHED, "\\Deleted"},
        {MAILDIR_F_DRAFT, "\\Draft"}, {IMAP_FL_RECENT, "\\Recent"},
    };
    const struct imap_msg *m = &v->msgs[i];
    const char *k;
    size_t j;
    bool sp = false;

    if (buf_putc(out, '(') != 0)
        return -1;
    for (j = 0; j < ARRAY_LEN(t); j++) {
        if (!(m->flags & t[j].bit))
            continue;
        if ((sp && buf_putc(out, ' ') != 0) || buf_puts(out, t[j].s) != 0)
            return -1;
        sp = true;
    }
    for (k = m->keywords; *k; k++) {
        const char *name = imap_view_keyword(v, *k);
        if (name == NULL)
            continue;
        if ((sp && buf_putc(out, ' ') != 0) || buf_puts(out, name) != 0)
            return -1;
        sp = true;
    }
    return buf_putc(out, ')');
}

int imap_view_flag_list_write(const struct imap_view *v, bool permanent, struct buf *out)
{
    size_t i;
    bool free_letter = false;
    if (buf_puts(out, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft") != 0)
        return -1;
    for (i = 0; i < IMAP_STORE_KEYWORD_MAX; i++) {
        if (v->kw_[i] == NULL) {
            free_letter = true;
            continue;
        }
        if (buf_putc(out, ' ') != 0 || buf_puts(out, v->kw_[i]) != 0)
            return -1;
    }
    if (permanent && free_letter && buf_puts(out, " \\*") != 0)
        return -1;
    return buf_putc(out, ')');
}

void imap_changes_free(struct imap_changes *c)
{
    if (c == NULL)
        return;
    free(c->expunged_uids);
    free(c->expunged_seqs);
    free(c->flag_uids);
    memset(c, 0, sizeof(*c));
}

static void ch_flag(struct imap_changes *ch, uint32_t uid)
{
    if (ch == NULL)
        return;
    ch->flag_uids = xreallocarray(ch->flag_uids, ch->n_flags + 1, sizeof(uint32_t));
    ch->flag_uids[ch->n_flags++] = uid;
}

static void ch_expunge(struct imap_changes *ch, uint32_t uid, uint32_t seq)
{
    if (ch == NULL)
        return;
    ch->expunged_uids = xreallocarray(ch->expunged_uids, ch->n_expunged + 1, sizeof(uint32_t));
    ch->expunged_seqs = xreallocarray(ch->expunged_seqs, ch->n_expunged + 1, sizeof(uint32_t));
    ch->expunged_uids[ch->n_expunged] = uid;
    ch->expunged_seqs[ch->n_expunged++] = seq;
}

/* Remove the messages with gone[i] set, reporting them. */
static void view_remove(struct imap_view *v, const unsigned char *gone, struct imap_changes *ch)
{
    size_t i, k = 0;
    for (i = 0; i < v->n; i++) {
        if (gone[i]) {
            ch_expunge(ch, v->msgs[i].uid, (uint32_t)(i + 1));
            maildir_ref_free(&v->msgs[i].ref);
            continue;
        }
        v->msgs[k++] = v->msgs[i];
    }
    v->n = k;
}

int imap_view_refresh(struct imap_view *v, struct imap_changes *ch, struct err *e)
{
    struct uidlist_sync_result res;
    unsigned char *gone;
    size_t i, j;

    memset(ch, 0, sizeof(*ch));
    if (uidlist_sync(v->ul_, v->f_, 0, &res, e) != 0)
        return -1;
    (void)kw_load(v->f_->path, v->kw_, &v->kw_mtime_, &v->kw_ino_, false, NULL);
    if (res.uidvalidity_changed || v->ul_->uidvalidity != v->uidvalidity) {
        ch->uidvalidity_changed = true;
        msgs_free(v);
        view_load(v);
        return 0;
    }
    gone = xcalloc(v->n + 1, 1);
    j = 0;
    for (i = 0; i < v->n; i++) {
        struct imap_msg *m = &v->msgs[i];
        const struct uidlist_rec *r = uidlist_by_uid(v->ul_, m->uid);
        if (r == NULL || !r->found) {
            gone[i] = 1;
            continue;
        }
        {
            unsigned nf = 0;
            char nkw[MAILDIR_KEYWORDS_SIZE];
            maildir_info_parse(r->file, &nf, nkw, NULL);
            if (strcmp(r->file, m->ref.name) != 0 || r->sub != m->ref.sub)
                maildir_ref_set(&m->ref, r->sub, r->file);
            if (nf != (m->flags & MAILDIR_F_ALL) || strcmp(nkw, m->keywords) != 0) {
                msg_fill(m, v->f_);
                ch_flag(ch, m->uid);
            }
        }
    }
    view_remove(v, gone, ch);
    free(gone);
    {
        uint32_t top = v->n > 0 ? v->msgs[v->n - 1].uid : 0;
        size_t before = v->n;
        for (j = 0; j < v->ul_->n; j++) {
            const struct uidlist_rec *r = &v->ul_->v[j];
            if (r->found && r->uid > top && r->uid >= v->uidnext)
                view_push(v, r->uid, r->sub, r->file);
        }
        ch->n_added = v->n - before;
    }
    if (v->ul_->next_uid > v->uidnext)
        v->uidnext = v->ul_->next_uid;
    return 0;
}

int imap_view_store(struct imap_view *v, const size_t *idx, size_t n, enum imap_store_op op,
                    const struct imap_str *flags, size_t n_flags, struct imap_changes *ch,
                    struct err *e)
{
    struct flagset fs;
    char letters[MAILDIR_KEYWORDS_SIZE];
    size_t i;

    memset(ch, 0, sizeof(*ch));
    if (v->read_only)
        return err_set(e, ERR_INVAL, "mailbox is read-only");
    if (flags_parse(flags, n_flags, &fs, e) != 0)
        return -1;
    if (flagset_letters(&fs, v->f_->path, v->kw_, &v->kw_mtime_, &v->kw_ino_,
                        op != IMAP_STORE_REMOVE, letters, e) != 0)
        return -1;
    for (i = 0; i < n; i++) {
        struct imap_msg *m;
        unsigned cur = 0, nf, of;
        char ckw[MAILDIR_KEYWORDS_SIZE], nkw[MAILDIR_KEYWORDS_SIZE], okw[MAILDIR_KEYWORDS_SIZE];
        char *path = NULL;
        size_t k, l = 0;

        if (idx[i] >= v->n)
            return err_set(e, ERR_INVAL, "no such message");
        m = &v->msgs[idx[i]];
        of = m->flags;
        memcpy(okw, m->keywords, sizeof(okw));
        if (maildir_message_path(v->f_, &m->ref, &path, e) != 0) {
            if (e != NULL && e->code == ERR_NOTFOUND)
                continue;      /* expunged by someone: the next refresh says so */
            return -1;
        }
        free(path);
        maildir_info_parse(m->ref.name, &cur, ckw, NULL);
        switch (op) {
        case IMAP_STORE_SET:
            nf = fs.flags | (cur & MAILDIR_F_PASSED);
            memcpy(nkw, letters, sizeof(nkw));
            break;
        case IMAP_STORE_ADD:
            nf = cur | fs.flags;
            for (k = 0; ckw[k]; k++)
                nkw[l++] = ckw[k];
            for (k = 0; letters[k]; k++)
                if (strchr(ckw, letters[k]) == NULL)
                    nkw[l++] = letters[k];
            nkw[l] = 0;
            break;
        default:
            nf = cur & ~fs.flags;
            for (k = 0; ckw[k]; k++)
                if (strchr(letters, ckw[k]) == NULL)
                    nkw[l++] = ckw[k];
            nkw[l] = 0;
            break;
        }
        if (nf != cur || strcmp(nkw, ckw) != 0 || m->ref.sub == MAILDIR_SUB_NEW) {
            if (maildir_set_flags(v->f_, &m->ref, nf, nkw, e) != 0) {
                if (e != NULL && e->code == ERR_NOTFOUND)
                    continue;
                return -1;
            }
        }
        msg_fill(m, v->f_);
        if (m->flags != of || strcmp(m->keywords, okw) != 0)
            ch_flag(ch, m->uid);
    }
    return 0;
}

static bool in_uidset(const struct imap_seqset *s, uint32_t uid, uint32_t top)
{
    size_t i;
    for (i = 0; i < s->n; i++) {
        uint64_t lo = s->r[i].lo == IMAP_SEQ_STAR ? top : s->r[i].lo;
        uint64_t hi = s->r[i].hi == IMAP_SEQ_STAR ? top : s->r[i].hi;
        if (lo > hi) {
            uint64_t t = lo;
            lo = hi;
            hi = t;
        }
        if (uid >= lo && uid <= hi)
            return true;
    }
    return false;
}

static void sync_subdirs(const struct maildir_folder *f)
{
    char *p = xasprintf("%s/cur", f->path);
    (void)fsync_dir(p);
    free(p);
    p = xasprintf("%s/new", f->path);
    (void)fsync_dir(p);
    free(p);
}

/* unlink a message; 0 also when it is gone already */
static int msg_unlink(const struct maildir_folder *f, struct maildir_ref *ref, struct err *e)
{
    int tries;
    for (tries = 0; tries < 3; tries++) {
        char *path;
        struct err e2;
        if (maildir_message_path(f, ref, &path, &e2) != 0) {
            if (e2.code == ERR_NOTFOUND)
                return 0;
            if (e != NULL)
                *e = e2;
            return -1;
        }
        if (unlink(path) == 0) {
            free(path);
            return 0;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot remove message");
            free(path);
            return -1;
        }
        free(path);
    }
    return 0;
}

int imap_view_expunge(struct imap_view *v, const struct imap_seqset *only_uids,
                      struct imap_changes *ch, struct err *e)
{
    unsigned char *gone;
    size_t i;
    int rc = 0;
    uint32_t top = v->n > 0 ? v->msgs[v->n - 1].uid : 0;

    memset(ch, 0, sizeof(*ch));
    if (v->read_only)
        return err_set(e, ERR_INVAL, "mailbox is read-only");
    gone = xcalloc(v->n + 1, 1);
    for (i = 0; i < v->n; i++) {
        struct imap_msg *m = &v->msgs[i];
        char *path = NULL;
        unsigned fl = 0;
        if (only_uids != NULL && !in_uidset(only_uids, m->uid, top))
            continue;
        if (maildir_message_path(v->f_, &m->ref, &path, NULL) != 0) {
            gone[i] = 1;      /* gone already */
            continue;
        }
        free(path);
        maildir_info_parse(m->ref.name, &fl, NULL, NULL);
        if (!(fl & MAILDIR_F_TRASHED))
            continue;
        if (msg_unlink(v->f_, &m->ref, e) != 0) {
            rc = -1;
            break;
        }
        gone[i] = 1;
    }
    sync_subdirs(v->f_);
    view_remove(v, gone, ch);
    free(gone);
    return rc;
}

/* Set the mtime of a delivered message and sync it. */
static void set_mtime(const struct maildir_folder *f, struct maildir_ref *ref, time_t t)
{
    char *path;
    int fd;
    struct timespec ts[2];
    if (maildir_message_path(f, ref, &path, NULL) != 0)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return;
    ts[0].tv_sec = t;
    ts[0].tv_nsec = 0;
    ts[1] = ts[0];
    if (futimens(fd, ts) == 0)
        (void)fsync(fd);
    close(fd);
}

int imap_view_copy(struct imap_view *v, const size_t *idx, size_t n, const char *dest,
                   bool move, uint32_t *dst_uidvalidity, uint32_t **src_uids,
                   uint32_t **dst_uids, struct imap_changes *ch, struct err *e)
{
    struct maildir_folder *df;
    char *dkw[IMAP_STORE_KEYWORD_MAX] = {NULL};
    struct timespec dmt = {0, 0};
    ino_t dino = 0;
    struct maildir_ref *outs;
    struct uidlist *ul = NULL;
    size_t i, done = 0;
    int rc = -1;

    memset(ch, 0, sizeof(*ch));
    *src_uids = *dst_uids = NULL;
    *dst_uidvalidity = 0;
    if (move && v->read_only)
        return err_set(e, ERR_INVAL, "mailbox is read-only");
    if (folder_open(v->st_, dest, NULL, &df, e) != 0)
        return -1;
    if (kw_load(df->path, dkw, &dmt, &dino, true, e) != 0) {
        maildir_folder_close(df);
        return -1;
    }
    outs = xcalloc(n + 1, sizeof(*outs));
    for (i = 0; i < n; i++, done++) {
        struct imap_msg *m;
        struct maildir_deliver_opts o = {false, 0, NULL};
        char letters[MAILDIR_KEYWORDS_SIZE];
        const char *k;
        size_t l = 0;
        struct stat sb;
        int fd, r;

        if (idx[i] >= v->n) {
            err_set(e, ERR_INVAL, "no such message");
            goto fail;
        }
        m = &v->msgs[idx[i]];
        if (msg_open(v->f_, &m->ref, &fd, e) != 0)
            goto fail;
        msg_fill(m, v->f_);
        for (k = m->keywords; *k; k++) {
            const char *kname = imap_view_keyword(v, *k);
            int di;
            if (kname == NULL)
                continue;
            di = kw_alloc(df->path, dkw, &dmt, &dino, kname, e);
            if (di < 0) {
                close(fd);
                goto fail;
            }
            letters[l++] = (char)('a' + di);
        }
        letters[l] = 0;
        {
            /* sorted, each once */
            char sorted[MAILDIR_KEYWORDS_SIZE];
            size_t a, s = 0;
            for (a = 0; a < 26; a++)
                if (memchr(letters, (int)('a' + a), l) != NULL)
                    sorted[s++] = (char)('a' + a);
            sorted[s] = 0;
            memcpy(letters, sorted, s + 1);
        }
        o.flags = m->flags & MAILDIR_F_ALL;
        o.keywords = letters;
        o.to_cur = o.flags != 0 || letters[0] != 0 || m->ref.sub == MAILDIR_SUB_CUR;
        if (fstat(fd, &sb) != 0) {
            err_sys(e, "cannot stat message");
            close(fd);
            goto fail;
        }
        r = maildir_deliver_fd(df, fd, &o, &outs[i], e);
        close(fd);
        if (r != 0)
            goto fail;
        set_mtime(df, &outs[i], sb.st_mtime);
    }
    if (ul_open_sync(v->st_, df, &ul, NULL, e) != 0)
        goto fail;
    *dst_uidvalidity = ul->uidvalidity;
    *src_uids = XNEWARRAY(uint32_t, n + 1);
    *dst_uids = XNEWARRAY(uint32_t, n + 1);
    for (i = 0; i < n; i++) {
        const struct uidlist_rec *r = uidlist_by_name(ul, outs[i].name);
        (*src_uids)[i] = v->msgs[idx[i]].uid;
        (*dst_uids)[i] = r != NULL ? r->uid : 0;
    }
    if (move) {
        unsigned char *gone = xcalloc(v->n + 1, 1);
        for (i = 0; i < n; i++) {
            if (msg_unlink(v->f_, &v->msgs[idx[i]].ref, NULL) == 0)
                gone[idx[i]] = 1;
        }
        sync_subdirs(v->f_);
        view_remove(v, gone, ch);
        free(gone);
    }
    rc = 0;
    goto out;
fail:
    /* take back the copies made so far: COPY is all or nothing */
    for (i = 0; i < done; i++)
        (void)msg_unlink(df, &outs[i], NULL);
    sync_subdirs(df);
out:
    for (i = 0; i < n; i++)
        maildir_ref_free(&outs[i]);
    free(outs);
    uidlist_free(ul);
    kw_clear(dkw);
    maildir_folder_close(df);
    return rc;
}

int imap_store_append(struct imap_store *st, const char *name, const char *data,
                      size_t len, const struct imap_str *flags, size_t n_flags, time_t date,
                      uint32_t *uidvalidity, uint32_t *uid, struct err *e)
{
    struct maildir_folder *f;
    struct flagset fs;
    char *kw[IMAP_STORE_KEYWORD_MAX] = {NULL};
    struct timespec mt = {0, 0};
    ino_t ino = 0;
    char letters[MAILDIR_KEYWORDS_SIZE];
    struct maildir_deliver_opts o = {false, 0, NULL};
    struct maildir_ref out = MAILDIR_REF_INIT;
    struct uidlist *ul = NULL;
    const struct uidlist_rec *r;
    int rc = -1;

    *uidvalidity = *uid = 0;
    if (flags_parse(flags, n_flags, &fs, e) != 0)
        return -1;
    if (folder_open(st, name, NULL, &f, e) != 0)
        return -1;
    if (kw_load(f->path, kw, &mt, &ino, true, e) != 0 ||
        flagset_letters(&fs, f->path, kw, &mt, &ino, true, letters, e) != 0)
        goto out;
    o.flags = fs.flags;
    o.keywords = letters;
    o.to_cur = fs.flags != 0 || letters[0] != 0;
    if (maildir_deliver(f, data, len, &o, &out, e) != 0)
        goto out;
    if (date != 0)
        set_mtime(f, &out, date);
    if (ul_open_sync(st, f, &ul, NULL, e) != 0) {
        /* the message is delivered; only its UID is unknown */
        rc = 0;
        goto out;
    }
    *uidvalidity = ul->uidvalidity;
    r = uidlist_by_name(ul, out.name);
    *uid = r != NULL ? r->uid : 0;
    rc = 0;
out:
    uidlist_free(ul);
    maildir_ref_free(&out);
    kw_clear(kw);
    maildir_folder_close(f);
    return rc;
}

int imap_view_open_msg(struct imap_view *v, size_t i, int *fd, struct err *e)
{
    if (i >= v->n)
        return err_set(e, ERR_INVAL, "no such message");
    return msg_open(v->f_, &v->msgs[i].ref, fd, e);
}

/* ---- FETCH cache ------------------------------------------------------------------ */

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(struct buf *b, uint32_t x)
{
    char p[4] = {(char)(x & 0xff), (char)((x >> 8) & 0xff), (char)((x >> 16) & 0xff),
                 (char)((x >> 24) & 0xff)};
    if (buf_append(b, p, 4) != 0)
        die("buf");
}

static ssize_t cache_find(const struct imap_cache_tab *t, uint32_t uid)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->v[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n && t->v[lo].uid == uid ? (ssize_t)lo : -((ssize_t)lo) - 1;
}

static void cache_set(struct imap_cache_tab *t, uint32_t uid, const char *rec, size_t len)
{
    ssize_t at = cache_find(t, uid);
    size_t pos;
    if (at >= 0) {
        free(t->v[at].rec);
        t->v[at].rec = xmemdup0(rec, len);
        t->v[at].len = len;
        return;
    }
    pos = (size_t)(-(at + 1));
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = xreallocarray(t->v, t->cap, sizeof(*t->v));
    }
    if (pos < t->n)
        memmove(t->v + pos + 1, t->v + pos, (t->n - pos) * sizeof(*t->v));
    t->v[pos].uid = uid;
    t->v[pos].rec = xmemdup0(rec, len);
    t->v[pos].len = len;
    t->n++;
}

static void cache_load(struct imap_view *v)
{
    struct imap_cache_tab *t = v->cache_;
    int dfd, fd;
    struct buf b = BUF_INIT;
    const unsigned char *p, *end;

    if (t->loaded)
        return;
    t->loaded = true;
    dfd = open(v->f_->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    fd = openat(dfd, IMAP_STORE_CACHE_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    close(dfd);
    if (fd < 0)
        return;
    buf_init(&b, CACHE_FILE_MAX);
    if (buf_read_all(&b, fd) != 0 || b.len < CACHE_MAGIC_LEN ||
        memcmp(b.data, CACHE_MAGIC, CACHE_MAGIC_LEN) != 0) {
        close(fd);
        buf_free(&b);
        return;
    }
    close(fd);
    p = (const unsigned char *)b.data + CACHE_MAGIC_LEN;
    end = (const unsigned char *)b.data + b.len;
    while ((size_t)(end - p) >= 8) {
        uint32_t uid = get_u32(p), len = get_u32(p + 4);
        if ((size_t)(end - p - 8) < len)
            break;
        if (t->n == 0 || uid > t->v[t->n - 1].uid)
            cache_set(t, uid, (const char *)p + 8, len);
        p += 8 + len;
    }
    buf_free(&b);
}

int imap_view_cache_get(struct imap_view *v, size_t i, struct imap_fetch_cache *c)
{
    ssize_t at;
    size_t used;
    const struct imap_msg *m;
    struct err e2;

    if (i >= v->n)
        return -1;
    m = &v->msgs[i];
    cache_load(v);
    at = cache_find(v->cache_, m->uid);
    if (at < 0)
        return -1;
    if (imap_fetch_cache_decode(v->cache_->v[at].rec, v->cache_->v[at].len, m->raw_size, c,
                                &used, &e2) != 0)
        return -1;
    return 0;
}

void imap_view_cache_put(struct imap_view *v, size_t i, const struct imap_fetch_cache *c)
{
    struct buf b = BUF_INIT;
    if (i >= v->n)
        return;
    cache_load(v);
    if (imap_fetch_cache_encode(c, &b) != 0)
        die("buf");
    cache_set(v->cache_, v->msgs[i].uid, buf_cstr(&b), b.len);
    buf_free(&b);
    v->cache_dirty_ = true;
}

int imap_view_cache_flush(struct imap_view *v, struct err *e)
{
    struct imap_cache_tab *t = v->cache_;
    struct buf b = BUF_INIT;
    size_t i;
    int dfd, fd;
    char *tmp;

    if (!v->cache_dirty_)
        return 0;
    if (buf_append(&b, CACHE_MAGIC, CACHE_MAGIC_LEN) != 0)
        die("buf");
    for (i = 0; i < t->n; i++) {
        if (imap_view_find(v, t->v[i].uid) < 0)
            continue;      /* expunged */
        put_u32(&b, t->v[i].uid);
        put_u32(&b, (uint32_t)t->v[i].len);
        if (buf_append(&b, t->v[i].rec, t->v[i].len) != 0)
            die("buf");
    }
    dfd = open(v->f_->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        buf_free(&b);
        return err_sys(e, "cannot open %s", v->f_->path);
    }
    tmp = xasprintf("%s.tmp.%ld", IMAP_STORE_CACHE_FILE, (long)getpid());
    unlinkat(dfd, tmp, 0);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || write_all(fd, b.data, b.len) != 0 || fsync(fd) != 0) {
        err_sys(e, "cannot write the FETCH cache");
        if (fd >= 0)
            close(fd);
        unlinkat(dfd, tmp, 0);
        close(dfd);
        free(tmp);
        buf_free(&b);
        return -1;
    }
    close(fd);
    if (renameat(dfd, tmp, dfd, IMAP_STORE_CACHE_FILE) != 0) {
        err_sys(e, "cannot replace the FETCH cache");
        unlinkat(dfd, tmp, 0);
        close(dfd);
        free(tmp);
        buf_free(&b);
        return -1;
    }
    close(dfd);
    free(tmp);
    buf_free(&b);
    v->cache_dirty_ = false;
    return 0;
}
