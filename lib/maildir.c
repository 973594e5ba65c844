/* maildir: Maildir/Maildir++ folders, scan, ":2," info, flag renames,
 * durable delivery, copy/move, folder create/rename/delete. */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"

/* How often an operation follows a file that keeps being renamed under it,
 * and how often delivery picks a new name after a collision. */
#define MAILDIR_RETRIES 8
/* Longest encoded host name put into a unique name. */
#define MAILDIR_HOST_MAX 128
/* Longest directory entry name. */
#define MAILDIR_DIRENT_MAX 255
/* Depth limit when removing a folder's directory tree. */
#define MAILDIR_RM_DEPTH 16
#define MAILDIR_COPY_CHUNK 65536

int (*maildir_step_hook)(enum maildir_step step) = NULL;

static const char *const step_names[MAILDIR_STEP_COUNT] = {
    "TMP_CREATED", "WRITTEN", "FSYNCED", "LINKED", "DIR_FSYNCED",
    "TMP_REMOVED", "SOURCE_REMOVED", "SOURCE_DIR_FSYNCED",
};

const char *maildir_step_name(enum maildir_step step)
{
    if ((unsigned)step < MAILDIR_STEP_COUNT)
        return step_names[step];
    return "?";
}

/* 0 to go on with step s; -1 with errno EIO when the hook makes it fail. */
static int step(enum maildir_step s)
{
    if (maildir_step_hook != NULL && maildir_step_hook(s) != 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

static void set_box_scope(struct err *e)
{
    if (e != NULL)
        e->scope = ERR_SCOPE_BOX;
}

static const char *sub_name(enum maildir_sub sub)
{
    return sub == MAILDIR_SUB_CUR ? "cur" : "new";
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) != 0)
        die("maildir: an unbounded buffer refused to grow");
}

/* ---- ":2," info ----------------------------------------------------------- */

static const char flag_letters[] = "DFPRST";

struct info {
    size_t base_len;
    enum maildir_info_kind kind;
    uint32_t upper;      /* letters A-Z present after ":2," */
    uint32_t lower;      /* letters a-z present after ":2," */
    const char *tail;    /* V2: first byte after the flag letters */
};

static void info_split(const char *name, struct info *in)
{
    const char *colon = strchr(name, ':');
    const char *p;

    in->upper = 0;
    in->lower = 0;
    if (colon == NULL) {
        in->base_len = strlen(name);
        in->kind = MAILDIR_INFO_NONE;
        in->tail = name + in->base_len;
        return;
    }
    in->base_len = (size_t)(colon - name);
    if (colon[1] != '2' || colon[2] != ',') {
        in->kind = MAILDIR_INFO_OTHER;
        in->tail = colon + strlen(colon);
        return;
    }
    in->kind = MAILDIR_INFO_V2;
    for (p = colon + 3; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z')
            in->upper |= 1u << (*p - 'A');
        else if (*p >= 'a' && *p <= 'z')
            in->lower |= 1u << (*p - 'a');
        else
            break;
    }
    in->tail = p;
}

static uint32_t flags_to_upper(unsigned flags)
{
    uint32_t m = 0;

    for (unsigned i = 0; i < sizeof(flag_letters) - 1; i++)
        if (flags & (1u << i))
            m |= 1u << (flag_letters[i] - 'A');
    return m;
}

static unsigned upper_to_flags(uint32_t upper)
{
    unsigned f = 0;

    for (unsigned i = 0; i < sizeof(flag_letters) - 1; i++)
        if (upper & (1u << (flag_letters[i] - 'A')))
            f |= 1u << i;
    return f;
}

static const uint32_t known_upper = (1u << ('D' - 'A')) | (1u << ('F' - 'A')) |
                                    (1u << ('P' - 'A')) | (1u << ('R' - 'A')) |
                                    (1u << ('S' - 'A')) | (1u << ('T' - 'A'));

/* Bits of the letters a-z in s; *bad (may be NULL) set if s has others. */
static uint32_t keyword_mask(const char *s, bool *bad)
{
    uint32_t m = 0;

    if (bad != NULL)
        *bad = false;
    if (s == NULL)
        return 0;
    for (; *s != '\0'; s++) {
        if (*s >= 'a' && *s <= 'z')
            m |= 1u << (*s - 'a');
        else if (bad != NULL)
            *bad = true;
    }
    return m;
}

/* Write the letters of mask (bit i = first + i) in order; returns the end. */
static char *put_letters(char *out, uint32_t mask, char first)
{
    for (int i = 0; i < 26; i++)
        if (mask & (1u << i))
            *out++ = (char)(first + i);
    return out;
}

/* base[0..base_len) ":2," upper lower tail */
static char *compose_name(const char *base, size_t base_len, uint32_t upper, uint32_t lower,
                          const char *tail)
{
    size_t tail_len = strlen(tail);
    char *s = xmalloc(base_len + 3 + 52 + tail_len + 1);
    char *p = s;

    memcpy(p, base, base_len);
    p += base_len;
    memcpy(p, ":2,", 3);
    p += 3;
    p = put_letters(p, upper, 'A');
    p = put_letters(p, lower, 'a');
    memcpy(p, tail, tail_len + 1);
    return s;
}

enum maildir_info_kind maildir_info_parse(const char *filename, unsigned *flags,
                                          char keywords_out[MAILDIR_KEYWORDS_SIZE],
                                          size_t *base_len)
{
    struct info in;

    info_split(filename, &in);
    if (flags != NULL)
        *flags = upper_to_flags(in.upper);
    if (keywords_out != NULL)
        *put_letters(keywords_out, in.lower, 'a') = '\0';
    if (base_len != NULL)
        *base_len = in.base_len;
    return in.kind;
}

char *maildir_filename_with_flags(const char *base, unsigned flags, const char *keywords)
{
    const char *colon = strchr(base, ':');
    size_t len = colon != NULL ? (size_t)(colon - base) : strlen(base);

    return compose_name(base, len, flags_to_upper(flags & MAILDIR_F_ALL),
                        keyword_mask(keywords, NULL), "");
}

char *maildir_filename_set_flags(const char *filename, unsigned flags, const char *keywords)
{
    struct info in;

    info_split(filename, &in);
    if (in.kind == MAILDIR_INFO_OTHER)
        return NULL;
    return compose_name(filename, in.base_len,
                        (in.upper & ~known_upper) | flags_to_upper(flags & MAILDIR_F_ALL),
                        keywords != NULL ? keyword_mask(keywords, NULL) : in.lower, in.tail);
}

/* ---- small file system helpers -------------------------------------------- */

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

static bool is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Does path hold cur/ new/ tmp/ directories? */
static bool is_maildir(const char *path)
{
    static const char *const subs[] = {"cur", "new", "tmp"};

    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s/%s", path, subs[i]);
        bool ok = is_dir(p);

        free(p);
        if (!ok)
            return false;
    }
    return true;
}

/* Like is_maildir, with a clear error: ERR_NOTFOUND if path is missing,
 * ERR_INVAL if it is no Maildir. */
static int check_maildir(const char *path, struct err *e)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    struct stat st;

    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_NOTFOUND, "no such Maildir: %s", path);
        if (errno == ENOTDIR)
            return err_set(e, ERR_INVAL, "not a Maildir (not a directory): %s", path);
        return err_sys(e, "cannot open Maildir %s", path);
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_INVAL, "not a Maildir (not a directory): %s", path);
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = xasprintf("%s/%s", path, subs[i]);
        int rc = stat(p, &st);

        if (rc != 0 && errno != ENOENT && errno != ENOTDIR) {
            err_sys(e, "cannot open %s", p);
            free(p);
            return -1;
        }
        free(p);
        if (rc != 0 || !S_ISDIR(st.st_mode))
            return err_set(e, ERR_INVAL, "not a Maildir (no %s/): %s", subs[i], path);
    }
    return 0;
}

/*
 * Rename that never replaces an existing target (EEXIST instead).  Where the
 * file system lacks RENAME_NOREPLACE, a file is linked then unlinked (a crash
 * in between leaves two names for one message, never none); without hard
 * links (and for directories) the target is checked, then renamed.
 */
static int rename_noreplace(const char *from, const char *to)
{
    struct stat st;

#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -1;
#endif
    if (link(from, to) == 0) {
        if (unlink(from) != 0) {
            int saved = errno;

            unlink(to);
            errno = saved;
            return -1;
        }
        return 0;
    }
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS && errno != EMLINK)
        return -1;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    if (errno != ENOENT)
        return -1;
    return rename(from, to);
}

/* Remove name (under the directory open as parent_fd) and, if it is a
 * directory, everything below it.  Symbolic links are removed, not
 * followed. */
static int rm_tree_at(int parent_fd, const char *name, int depth)
{
    struct dirent *de;
    DIR *d;
    int fd;

    if (depth > MAILDIR_RM_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOTDIR || errno == ELOOP)
            return unlinkat(parent_fd, name, 0);
        return -1;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    for (;;) {
        bool dir;

        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st;

            if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT)
                    continue;
                goto fail;
            }
            dir = S_ISDIR(st.st_mode);
        }
        if (dir) {
            if (rm_tree_at(fd, de->d_name, depth + 1) != 0)
                goto fail;
        } else if (unlinkat(fd, de->d_name, 0) != 0 && errno != ENOENT) {
            goto fail;
        }
    }
    if (errno != 0)
        goto fail;
    closedir(d);
    return unlinkat(parent_fd, name, AT_REMOVEDIR);

fail:;
    int saved = errno;

    closedir(d);
    errno = saved;
    return -1;
}

static int rm_tree(const char *path)
{
    return rm_tree_at(AT_FDCWD, path, 0);
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

/* ---- unique names ---------------------------------------------------------- */

static atomic_ulong deliver_counter;

/* The host name with '/' ':' ',' written as \057 \072 \054, at most
 * MAILDIR_HOST_MAX bytes (a longer one is cut: it only helps uniqueness). */
static void host_part(char out[MAILDIR_HOST_MAX + 1])
{
    char host[256];
    size_t o = 0;

    if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    for (const char *p = host; *p != '\0'; p++) {
        const char *enc = NULL;

        if (*p == '/')
            enc = "\\057";
        else if (*p == ':')
            enc = "\\072";
        else if (*p == ',')
            enc = "\\054";
        if (enc != NULL) {
            if (o + 4 > MAILDIR_HOST_MAX)
                break;
            memcpy(out + o, enc, 4);
            o += 4;
        } else {
            if (o + 1 > MAILDIR_HOST_MAX)
                break;
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* "<sec>.M<usec>P<pid>Q<n>.<host>" */
static char *make_uniq(void)
{
    char host[MAILDIR_HOST_MAX + 1];
    struct timeval tv;
    unsigned long q = atomic_fetch_add(&deliver_counter, 1) + 1;

    gettimeofday(&tv, NULL);
    host_part(host);
    return xasprintf("%lld.M%ldP%ldQ%lu.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
                     (long)getpid(), q, host);
}

char *maildir_unique_name(void)
{
    return make_uniq();
}

/* ---- tree and folders ----------------------------------------------------- */

static char *strip_slashes(const char *path)
{
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/')
        n--;
    return xstrndup(path, n);
}

int maildir_open(const char *path, struct maildir **out, struct err *e)
{
    struct maildir *md;
    char *p;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return err_set(e, ERR_INVAL, "empty Maildir path");
    p = strip_slashes(path);
    if (check_maildir(p, e) != 0) {
        free(p);
        set_box_scope(e);
        return -1;
    }
    md = XNEW(struct maildir);
    md->path = p;
    *out = md;
    return 0;
}

void maildir_close(struct maildir *md)
{
    if (md == NULL)
        return;
    free(md->path);
    free(md);
}

/* Byte order with '.' before any other byte: a folder sorts right before
 * its subfolders. */
static int folder_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned ca = (unsigned char)*a, cb = (unsigned char)*b;

        if (ca == cb) {
            if (ca == 0)
                return 0;
            continue;
        }
        ca = ca == '.' ? 1 : ca == 0 ? 0 : ca + 1;
        cb = cb == '.' ? 1 : cb == 0 ? 0 : cb + 1;
        return ca < cb ? -1 : 1;
    }
}

static int folder_qsort_cmp(const void *a, const void *b)
{
    return folder_cmp(*(const char *const *)a, *(const char *const *)b);
}

struct name_vec {
    char **v;
    size_t n, cap;
};

static void name_vec_push(struct name_vec *nv, char *s)
{
    if (nv->n == nv->cap) {
        nv->cap = nv->cap ? nv->cap * 2 : 16;
        nv->v = xreallocarray(nv->v, nv->cap, sizeof(*nv->v));
    }
    nv->v[nv->n++] = s;
}

static void name_vec_free(struct name_vec *nv)
{
    for (size_t i = 0; i < nv->n; i++)
        free(nv->v[i]);
    free(nv->v);
    nv->v = NULL;
    nv->n = nv->cap = 0;
}

/*
 * Names (without the leading '.') of the Maildir++ folders under root whose
 * name starts with prefix (NULL: all), sorted.  Only directories with
 * cur/ new/ tmp/ count.
 */
static int collect_folders(const char *root, const char *prefix, struct name_vec *out,
                           struct err *e)
{
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    struct dirent *de;
    DIR *d = opendir(root);

    if (d == NULL) {
        err_sys(e, "cannot read %s", root);
        set_box_scope(e);
        return -1;
    }
    for (;;) {
        char *p;

        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (de->d_name[0] != '.' || de->d_name[1] == '\0' || de->d_name[1] == '.')
            continue;
        if (prefix != NULL && strncmp(de->d_name + 1, prefix, plen) != 0)
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN && de->d_type != DT_LNK)
            continue;
        p = xasprintf("%s/%s", root, de->d_name);
        if (is_maildir(p))
            name_vec_push(out, xstrdup(de->d_name + 1));
        free(p);
    }
    if (errno != 0) {
        err_sys(e, "cannot read %s", root);
        set_box_scope(e);
        closedir(d);
        name_vec_free(out);
        return -1;
    }
    closedir(d);
    if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), folder_qsort_cmp);
    return 0;
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

int maildir_list_folders(const struct maildir *md, struct maildir_folder_list **out,
                         struct err *e)
{
    struct name_vec names = {NULL, 0, 0};
    struct maildir_folder_list *list;
    size_t arr_off, str_off, total, root_len = strlen(md->path);
    char *s;

    *out = NULL;
    if (check_maildir(md->path, e) != 0) {
        set_box_scope(e);
        return -1;
    }
    if (collect_folders(md->path, NULL, &names, e) != 0)
        return -1;

    arr_off = align_up(sizeof(*list), alignof(struct maildir_folder_info));
    str_off = arr_off + (names.n + 1) * sizeof(struct maildir_folder_info);
    total = str_off + sizeof("INBOX") + root_len + 1;
    for (size_t i = 0; i < names.n; i++)
        total += 2 * strlen(names.v[i]) + root_len + 4;   /* name, "root/.name" */

    list = xmalloc(total);
    list->n = names.n + 1;
    list->v = (struct maildir_folder_info *)(void *)((char *)list + arr_off);
    s = (char *)list + str_off;

    memcpy(s, "INBOX", sizeof("INBOX"));
    list->v[0].name = s;
    s += sizeof("INBOX");
    memcpy(s, md->path, root_len + 1);
    list->v[0].path = s;
    s += root_len + 1;
    for (size_t i = 0; i < names.n; i++) {
        size_t nl = strlen(names.v[i]);

        memcpy(s, names.v[i], nl + 1);
        list->v[i + 1].name = s;
        s += nl + 1;
        memcpy(s, md->path, root_len);
        s[root_len] = '/';
        s[root_len + 1] = '.';
        memcpy(s + root_len + 2, names.v[i], nl + 1);
        list->v[i + 1].path = s;
        s += root_len + 2 + nl + 1;
    }
    name_vec_free(&names);
    *out = list;
    return 0;
}

static bool is_inbox(const char *name)
{
    return strcasecmp(name, "INBOX") == 0;
}

/* Enough to make ".name" one safe path component. */
static int name_check_path(const char *name, struct err *e)
{
    if (name == NULL || name[0] == '\0')
        return err_set(e, ERR_INVAL, "empty folder name");
    if (strlen(name) > MAILDIR_FOLDER_NAME_MAX)
        return err_set(e, ERR_INVAL, "folder name longer than %d bytes",
                       MAILDIR_FOLDER_NAME_MAX);
    if (strchr(name, '/') != NULL)
        return err_set(e, ERR_INVAL, "folder name contains '/': %s", name);
    if (name[0] == '.')
        return err_set(e, ERR_INVAL, "folder name starts with '.': %s", name);
    return 0;
}

int maildir_folder_name_check(const char *name, struct err *e)
{
    size_t n;

    if (name_check_path(name, e) != 0)
        return -1;
    n = strlen(name);
    if (name[n - 1] == '.')
        return err_set(e, ERR_INVAL, "folder name ends with '.': %s", name);
    if (strstr(name, "..") != NULL)
        return err_set(e, ERR_INVAL, "folder name contains \"..\": %s", name);
    for (const char *p = name; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return err_set(e, ERR_INVAL, "folder name contains a control character");
    if (is_inbox(name))
        return err_set(e, ERR_INVAL, "INBOX is the root folder");
    return 0;
}

static struct maildir_folder *folder_new(const char *name, char *path)
{
    struct maildir_folder *f = XNEW(struct maildir_folder);

    f->name = xstrdup(name);
    f->path = path;
    return f;
}

int maildir_folder_open(const struct maildir *md, const char *name,
                        struct maildir_folder **out, struct err *e)
{
    char *path;

    *out = NULL;
    if (name != NULL && is_inbox(name)) {
        path = xstrdup(md->path);
        name = "INBOX";
    } else {
        if (name_check_path(name, e) != 0)
            return -1;
        path = xasprintf("%s/.%s", md->path, name);
    }
    if (check_maildir(path, e) != 0) {
        if (e != NULL && e->code == ERR_NOTFOUND)
            err_set(e, ERR_NOTFOUND, "no such folder: %s", name);
        set_box_scope(e);
        free(path);
        return -1;
    }
    *out = folder_new(name, path);
    return 0;
}

int maildir_folder_open_path(const char *path, struct maildir_folder **out, struct err *e)
{
    const char *slash, *name;
    char *p;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return err_set(e, ERR_INVAL, "empty folder path");
    p = strip_slashes(path);
    if (check_maildir(p, e) != 0) {
        set_box_scope(e);
        free(p);
        return -1;
    }
    slash = strrchr(p, '/');
    name = slash != NULL && slash[1] != '\0' ? slash + 1 : p;
    if (name[0] == '.' && name[1] != '\0' && name[1] != '.')
        name++;
    *out = folder_new(name, p);
    return 0;
}

void maildir_folder_close(struct maildir_folder *f)
{
    if (f == NULL)
        return;
    free(f->name);
    free(f->path);
    free(f);
}

/* A fresh, empty directory name inside the root's tmp/. */
static char *stage_path(const struct maildir *md, const char *what)
{
    char *u = make_uniq();
    char *p = xasprintf("%s/tmp/%s.%s", md->path, u, what);

    free(u);
    return p;
}

int maildir_folder_create(const struct maildir *md, const char *name, struct err *e)
{
    static const char *const subs[] = {"cur", "new", "tmp"};
    struct stat st;
    char *target, *stage = NULL, *p;
    int fd;

    if (maildir_folder_name_check(name, e) != 0)
        return -1;
    target = xasprintf("%s/.%s", md->path, name);
    if (lstat(target, &st) == 0) {
        err_set(e, ERR_EXISTS, "folder exists: %s", name);
        goto fail;
    }
    if (errno != ENOENT) {
        err_sys(e, "cannot check %s", target);
        goto fail;
    }

    /* Build the folder in tmp/, then rename it into place: it appears
     * complete or not at all. */
    stage = stage_path(md, "mkfolder");
    if (mkdir(stage, 0700) != 0) {
        err_sys(e, "cannot create %s", stage);
        free(stage);
        stage = NULL;
        goto fail;
    }
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        p = xasprintf("%s/%s", stage, subs[i]);
        if (mkdir(p, 0700) != 0) {
            err_sys(e, "cannot create %s", p);
            free(p);
            goto fail;
        }
        free(p);
    }
    p = xasprintf("%s/maildirfolder", stage);
    fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || close(fd) != 0) {
        err_sys(e, "cannot create %s", p);
        free(p);
        goto fail;
    }
    free(p);
    if (fsync_dir(stage) != 0) {
        err_sys(e, "cannot sync %s", stage);
        goto fail;
    }
    if (rename_noreplace(stage, target) != 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            err_set(e, ERR_EXISTS, "folder exists: %s", name);
        else
            err_sys(e, "cannot create %s", target);
        goto fail;
    }
    free(stage);
    stage = NULL;
    if (fsync_dir(md->path) != 0) {
        err_sys(e, "cannot sync %s", md->path);
        goto fail;
    }
    free(target);
    return 0;

fail:
    if (stage != NULL) {
        rm_tree(stage);
        free(stage);
    }
    free(target);
    set_box_scope(e);
    return -1;
}

struct rename_pair {
    char *from, *to;
};

int maildir_folder_rename(const struct maildir *md, const char *old_name,
                          const char *new_name, struct err *e)
{
    struct name_vec subs = {NULL, 0, 0};
    struct rename_pair *pairs = NULL;
    size_t n_pairs = 0, done = 0, old_len;
    char *prefix = NULL;
    struct stat st;
    int rc = -1;

    if (old_name != NULL && is_inbox(old_name))
        return err_set(e, ERR_INVAL, "INBOX cannot be renamed");
    if (name_check_path(old_name, e) != 0 || maildir_folder_name_check(new_name, e) != 0)
        return -1;
    if (strcmp(old_name, new_name) == 0)
        return err_set(e, ERR_EXISTS, "folder exists: %s", new_name);
    old_len = strlen(old_name);

    pairs = XNEWARRAY(struct rename_pair, 1);
    pairs[0].from = xasprintf("%s/.%s", md->path, old_name);
    pairs[0].to = xasprintf("%s/.%s", md->path, new_name);
    n_pairs = 1;
    if (!is_maildir(pairs[0].from)) {
        err_set(e, ERR_NOTFOUND, "no such folder: %s", old_name);
        goto out;
    }
    prefix = xasprintf("%s.", old_name);
    if (collect_folders(md->path, prefix, &subs, e) != 0)
        goto out;
    pairs = xreallocarray(pairs, subs.n + 1, sizeof(*pairs));
    for (size_t i = 0; i < subs.n; i++) {
        pairs[n_pairs].from = xasprintf("%s/.%s", md->path, subs.v[i]);
        pairs[n_pairs].to = xasprintf("%s/.%s%s", md->path, new_name, subs.v[i] + old_len);
        n_pairs++;
        if (strlen(new_name) + strlen(subs.v[i] + old_len) + 1 > MAILDIR_DIRENT_MAX) {
            err_set(e, ERR_LIMIT, "subfolder name too long after rename: %s%s", new_name,
                    subs.v[i] + old_len);
            goto out;
        }
    }
    /* Check every target before touching anything. */
    for (size_t i = 0; i < n_pairs; i++) {
        if (lstat(pairs[i].to, &st) == 0) {
            err_set(e, ERR_EXISTS, "folder exists: %s", strrchr(pairs[i].to, '/') + 2);
            goto out;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot check %s", pairs[i].to);
            goto out;
        }
    }
    for (done = 0; done < n_pairs; done++) {
        if (rename_noreplace(pairs[done].from, pairs[done].to) != 0) {
            if (errno == EEXIST || errno == ENOTEMPTY)
                err_set(e, ERR_EXISTS, "folder exists: %s",
                        strrchr(pairs[done].to, '/') + 2);
            else
                err_sys(e, "cannot rename %s", pairs[done].from);
            /* Put back what was renamed, newest first. */
            while (done > 0) {
                done--;
                rename_noreplace(pairs[done].to, pairs[done].from);
            }
            fsync_dir(md->path);
            goto out;
        }
    }
    if (fsync_dir(md->path) != 0) {
        err_sys(e, "cannot sync %s", md->path);
        goto out;
    }
    rc = 0;

out:
    for (size_t i = 0; i < n_pairs; i++) {
        free(pairs[i].from);
        free(pairs[i].to);
    }
    free(pairs);
    free(prefix);
    name_vec_free(&subs);
    if (rc != 0)
        set_box_scope(e);
    return rc;
}

/* Take the folder directory ".name" out of the tree (into the root's tmp/),
 * then remove it with everything in it. */
static int remove_folder_dir(const struct maildir *md, const char *name, struct err *e)
{
    char *dir = xasprintf("%s/.%s", md->path, name);
    char *stage = stage_path(md, "rmfolder");
    int rc = -1;

    if (rename_noreplace(dir, stage) != 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "no such folder: %s", name);
        else
            err_sys(e, "cannot remove %s", dir);
        goto out;
    }
    if (fsync_dir(md->path) != 0) {
        err_sys(e, "cannot sync %s", md->path);
        rename_noreplace(stage, dir);
        goto out;
    }
    if (rm_tree(stage) != 0) {
        err_sys(e, "folder %s removed from the tree, but cannot delete %s", name, stage);
        goto out;
    }
    rc = 0;
out:
    free(dir);
    free(stage);
    return rc;
}

int maildir_folder_delete(const struct maildir *md, const char *name, unsigned flags,
                          struct err *e)
{
    struct name_vec subs = {NULL, 0, 0};
    char *path, *prefix;
    struct stat st;
    int rc = -1;

    if (name != NULL && is_inbox(name))
        return err_set(e, ERR_INVAL, "INBOX cannot be deleted");
    if (name_check_path(name, e) != 0)
        return -1;
    path = xasprintf("%s/.%s", md->path, name);
    prefix = xasprintf("%s.", name);
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "no such folder: %s", name);
        else
            err_sys(e, "cannot check %s", path);
        goto out;
    }
    if (S_ISLNK(st.st_mode)) {
        err_set(e, ERR_UNSUPPORTED, "folder is a symbolic link: %s", name);
        goto out;
    }
    if (!is_maildir(path)) {
        err_set(e, ERR_NOTFOUND, "no such folder: %s", name);
        goto out;
    }
    if (collect_folders(md->path, prefix, &subs, e) != 0)
        goto out;
    if (subs.n > 0 && !(flags & MAILDIR_DELETE_RECURSIVE)) {
        err_set(e, ERR_EXISTS, "folder %s has %zu subfolder%s", name, subs.n,
                subs.n == 1 ? "" : "s");
        goto out;
    }
    /* Deepest first: sorted order puts children after their parent. */
    for (size_t i = subs.n; i > 0; i--)
        if (remove_folder_dir(md, subs.v[i - 1], e) != 0)
            goto out;
    if (remove_folder_dir(md, name, e) != 0)
        goto out;
    rc = 0;
out:
    free(path);
    free(prefix);
    name_vec_free(&subs);
    if (rc != 0)
        set_box_scope(e);
    return rc;
}

/* ---- references ----------------------------------------------------------- */

void maildir_ref_set(struct maildir_ref *ref, enum maildir_sub sub, const char *name)
{
    char *copy = name != NULL ? xstrdup(name) : NULL;

    free(ref->name);
    ref->sub = sub;
    ref->name = copy;
}

void maildir_ref_free(struct maildir_ref *ref)
{
    if (ref == NULL)
        return;
    free(ref->name);
    ref->name = NULL;
    ref->sub = MAILDIR_SUB_NEW;
}

static int check_ref(const struct maildir_ref *ref, struct err *e)
{
    if (ref == NULL || ref->name == NULL || ref->name[0] == '\0')
        return err_set(e, ERR_INVAL, "no message file name");
    if (ref->name[0] == '.' || strchr(ref->name, '/') != NULL)
        return err_set(e, ERR_INVAL, "bad message file name");
    if (ref->sub != MAILDIR_SUB_NEW && ref->sub != MAILDIR_SUB_CUR)
        return err_set(e, ERR_INVAL, "bad message sub-directory");
    return 0;
}

static char *ref_path(const struct maildir_folder *f, const struct maildir_ref *ref)
{
    return xasprintf("%s/%s/%s", f->path, sub_name(ref->sub), ref->name);
}

/*
 * The file named by ref is gone: look in cur/ then new/ for a file with the
 * same base name and point ref at it.  0 when found; -1 with ERR_NOTFOUND
 * when the base name is truly gone, or another error.
 */
static int chase(const struct maildir_folder *f, struct maildir_ref *ref, struct err *e)
{
    static const enum maildir_sub order[] = {MAILDIR_SUB_CUR, MAILDIR_SUB_NEW};
    size_t blen;
    char *base;

    maildir_info_parse(ref->name, NULL, NULL, &blen);
    base = xstrndup(ref->name, blen);
    for (size_t i = 0; i < ARRAY_LEN(order); i++) {
        char *dir = xasprintf("%s/%s", f->path, sub_name(order[i]));
        DIR *d = opendir(dir);
        struct dirent *de;

        if (d == NULL) {
            err_sys(e, "cannot read %s", dir);
            set_box_scope(e);
            free(dir);
            free(base);
            return -1;
        }
        for (;;) {
            errno = 0;
            de = readdir(d);
            if (de == NULL)
                break;
            if (strncmp(de->d_name, base, blen) == 0 &&
                (de->d_name[blen] == ':' || de->d_name[blen] == '\0')) {
                maildir_ref_set(ref, order[i], de->d_name);
                closedir(d);
                free(dir);
                free(base);
                return 0;
            }
        }
        if (errno != 0) {
            err_sys(e, "cannot read %s", dir);
            closedir(d);
            free(dir);
            free(base);
            return -1;
        }
        closedir(d);
        free(dir);
    }
    err_set(e, ERR_NOTFOUND, "message is gone: %s", base);
    free(base);
    return -1;
}

static int moving_target(struct err *e, const struct maildir_ref *ref)
{
    err_set(e, ERR_NOTFOUND, "message keeps being renamed: %s", ref->name);
    err_scope(e, ERR_SCOPE_MSG, true);
    return -1;
}

int maildir_open_message(const struct maildir_folder *f, struct maildir_ref *ref, int *fd,
                         struct err *e)
{
    *fd = -1;
    if (check_ref(ref, e) != 0)
        return -1;
    for (int attempt = 0;; attempt++) {
        char *path = ref_path(f, ref);
        int d = open(path, O_RDONLY | O_CLOEXEC);

        if (d >= 0) {
            free(path);
            *fd = d;
            return 0;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot open %s", path);
            free(path);
            return -1;
        }
        free(path);
        if (attempt == MAILDIR_RETRIES)
            return moving_target(e, ref);
        if (chase(f, ref, e) != 0)
            return -1;
    }
}

int maildir_message_path(const struct maildir_folder *f, struct maildir_ref *ref,
                         char **path, struct err *e)
{
    *path = NULL;
    if (check_ref(ref, e) != 0)
        return -1;
    for (int attempt = 0;; attempt++) {
        char *p = ref_path(f, ref);
        struct stat st;

        if (stat(p, &st) == 0) {
            *path = p;
            return 0;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot open %s", p);
            free(p);
            return -1;
        }
        free(p);
        if (attempt == MAILDIR_RETRIES)
            return moving_target(e, ref);
        if (chase(f, ref, e) != 0)
            return -1;
    }
}

/* ---- flag changes --------------------------------------------------------- */

struct flag_change {
    bool absolute;
    unsigned flags;          /* absolute */
    const char *keywords;    /* absolute; NULL keeps them */
    unsigned add, remove;    /* relative */
};

/* The name the file should have in cur/, or NULL (ERR_UNSUPPORTED) when its
 * info cannot be rewritten to what is asked. */
static char *target_name(const char *name, const struct flag_change *c, struct err *e)
{
    struct info in;
    unsigned flags;
    uint32_t lower;

    info_split(name, &in);
    if (in.kind == MAILDIR_INFO_OTHER) {
        bool change = c->absolute ? c->flags != 0 || keyword_mask(c->keywords, NULL) != 0
                                  : c->add != 0;

        if (change) {
            err_set(e, ERR_UNSUPPORTED, "message info is not \":2,\" style: %s", name);
            return NULL;
        }
        return xstrdup(name);
    }
    flags = upper_to_flags(in.upper);
    flags = c->absolute ? c->flags : (flags | c->add) & ~c->remove;
    lower = c->absolute && c->keywords != NULL ? keyword_mask(c->keywords, NULL) : in.lower;
    return compose_name(name, in.base_len, (in.upper & ~known_upper) | flags_to_upper(flags),
                        lower, in.tail);
}

static int rename_flags(const struct maildir_folder *f, struct maildir_ref *ref,
                        const struct flag_change *c, struct err *e)
{
    if (check_ref(ref, e) != 0)
        return -1;
    for (int attempt = 0;; attempt++) {
        char *target = target_name(ref->name, c, e);
        char *from, *to;
        int rc, saved;

        if (target == NULL)
            return -1;
        from = ref_path(f, ref);
        if (ref->sub == MAILDIR_SUB_CUR && strcmp(target, ref->name) == 0) {
            struct stat st;

            /* Nothing to rename; the file must still be there. */
            rc = stat(from, &st);
        } else {
            to = xasprintf("%s/cur/%s", f->path, target);
            rc = rename_noreplace(from, to);
            free(to);
        }
        saved = errno;
        if (rc == 0) {
            maildir_ref_set(ref, MAILDIR_SUB_CUR, target);
            free(target);
            free(from);
            return 0;
        }
        errno = saved;
        if (saved == EEXIST)
            err_set(e, ERR_EXISTS, "cannot rename %s: cur/%s exists", from, target);
        else if (saved != ENOENT)
            err_sys(e, "cannot rename %s", from);
        free(target);
        free(from);
        if (saved != ENOENT)
            return -1;
        if (attempt == MAILDIR_RETRIES)
            return moving_target(e, ref);
        if (chase(f, ref, e) != 0)
            return -1;
    }
}

int maildir_set_flags(const struct maildir_folder *f, struct maildir_ref *ref,
                      unsigned flags, const char *keywords, struct err *e)
{
    struct flag_change c = {true, flags, keywords, 0, 0};
    bool bad;

    if (flags & ~MAILDIR_F_ALL)
        return err_set(e, ERR_INVAL, "unknown flag bits 0x%x", flags & ~MAILDIR_F_ALL);
    keyword_mask(keywords, &bad);
    if (bad)
        return err_set(e, ERR_INVAL, "keywords must be letters a-z");
    return rename_flags(f, ref, &c, e);
}

int maildir_change_flags(const struct maildir_folder *f, struct maildir_ref *ref,
                         unsigned add, unsigned remove, struct err *e)
{
    struct flag_change c = {false, 0, NULL, add, remove};

    if ((add | remove) & ~MAILDIR_F_ALL)
        return err_set(e, ERR_INVAL, "unknown flag bits 0x%x", (add | remove) & ~MAILDIR_F_ALL);
    return rename_flags(f, ref, &c, e);
}

int maildir_move_to_cur(const struct maildir_folder *f, struct maildir_ref *ref,
                        struct err *e)
{
    return maildir_change_flags(f, ref, 0, 0, e);
}

/* ---- scanning ------------------------------------------------------------- */

struct raw_entry {
    size_t off;            /* of the name in the names buffer */
    size_t len;
    enum maildir_sub sub;
    off_t size;
    time_t mtime;
};

struct raw_vec {
    struct raw_entry *v;
    size_t n, cap;
};

int maildir_scan_names(const struct maildir_folder *f, maildir_name_fn fn, void *ctx,
                       struct err *e)
{
    static const enum maildir_sub order[2] = {MAILDIR_SUB_NEW, MAILDIR_SUB_CUR};

    for (int i = 0; i < 2; i++) {
        char *dir = xasprintf("%s/%s", f->path, sub_name(order[i]));
        DIR *d = opendir(dir);
        struct dirent *de;
        int rc = 0;

        if (d == NULL) {
            err_sys(e, "cannot read %s", dir);
            set_box_scope(e);
            free(dir);
            return -1;
        }
        for (;;) {
            errno = 0;
            de = readdir(d);
            if (de == NULL)
                break;
            if (de->d_name[0] == '.' || de->d_type == DT_DIR)
                continue;
            if (de->d_type == DT_UNKNOWN) {
                /* file systems without d_type: one stat to skip directories */
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISDIR(st.st_mode))
                    continue;
            }
            rc = fn(ctx, dirfd(d), de->d_name, strlen(de->d_name), order[i], e);
            if (rc != 0)
                break;
        }
        if (rc == 0 && errno != 0) {
            err_sys(e, "cannot read %s", dir);
            set_box_scope(e);
            rc = -1;
        }
        closedir(d);
        free(dir);
        if (rc != 0)
            return rc;
    }
    return 0;
}

struct scan_collect {
    unsigned scan_flags;
    struct buf *names;
    struct raw_vec *rv;
};

static int collect_name(void *ctx, int dirfd, const char *name, size_t len,
                        enum maildir_sub sub, struct err *e)
{
    struct scan_collect *c = ctx;
    struct raw_vec *rv = c->rv;
    struct raw_entry *r;
    off_t size = -1;
    time_t mtime = 0;

    if (c->scan_flags & MAILDIR_SCAN_STAT) {
        struct stat st;

        if (fstatat(dirfd, name, &st, 0) == 0) {
            if (S_ISDIR(st.st_mode))
                return 0;
            size = st.st_size;
            mtime = st.st_mtime;
        } else if (errno != ENOENT) {
            return err_sys(e, "cannot stat %s/%s", sub_name(sub), name);
        }
    }
    if (rv->n == rv->cap) {
        rv->cap = rv->cap ? rv->cap * 2 : 256;
        rv->v = xreallocarray(rv->v, rv->cap, sizeof(*rv->v));
    }
    r = &rv->v[rv->n++];
    r->off = c->names->len;
    r->len = len;
    r->sub = sub;
    r->size = size;
    r->mtime = mtime;
    buf_add(c->names, name, len + 1);
    return 0;
}

int maildir_scan(const struct maildir_folder *f, unsigned scan_flags,
                 struct maildir_scan **out, struct err *e)
{
    struct buf names = BUF_INIT;
    struct raw_vec rv = {NULL, 0, 0};
    struct maildir_scan *scan;
    size_t arr_off, str_off, total;
    char *s;

    struct scan_collect c = {scan_flags, &names, &rv};

    *out = NULL;
    if (maildir_scan_names(f, collect_name, &c, e) != 0) {
        set_box_scope(e);
        buf_free(&names);
        free(rv.v);
        return -1;
    }

    /* One block: header, entries, names, then the base names of names that
     * carry info (a name without info is its own base). */
    arr_off = align_up(sizeof(*scan), alignof(struct maildir_entry));
    if (rv.n > (SIZE_MAX - arr_off) / sizeof(struct maildir_entry) / 3)
        die("maildir: scan too large");
    str_off = arr_off + rv.n * sizeof(struct maildir_entry);
    total = str_off + 2 * names.len + 1;
    scan = xmalloc(total);
    scan->n = rv.n;
    scan->v = (struct maildir_entry *)(void *)((char *)scan + arr_off);
    s = (char *)scan + str_off;
    if (names.len > 0)
        memcpy(s, names.data, names.len);
    {
        char *bases = s + names.len;

        for (size_t i = 0; i < rv.n; i++) {
            struct maildir_entry *en = &scan->v[i];
            const struct raw_entry *r = &rv.v[i];
            const char *colon;
            struct info in;

            en->name = s + r->off;
            en->sub = r->sub;
            en->size = r->size;
            en->mtime = r->mtime;
            info_split(en->name, &in);
            en->info_kind = in.kind;
            en->flags = upper_to_flags(in.upper);
            *put_letters(en->keywords, in.lower, 'a') = '\0';
            colon = in.kind == MAILDIR_INFO_NONE ? NULL : en->name + in.base_len;
            en->info = colon != NULL ? colon + 1 : NULL;
            if (colon == NULL) {
                en->base = en->name;
            } else {
                memcpy(bases, en->name, in.base_len);
                bases[in.base_len] = '\0';
                en->base = bases;
                bases += in.base_len + 1;
            }
        }
    }
    buf_free(&names);
    free(rv.v);
    *out = scan;
    return 0;
}

/* ---- delivery ------------------------------------------------------------- */

struct source {
    const char *data;     /* used when fd < 0 */
    size_t len;
    int fd;
};

/* Write the source into fd; *total gets the byte count. */
static int write_source(int fd, const struct source *src, unsigned long long *total,
                        struct err *e)
{
    char *chunk;

    if (src->fd < 0) {
        if (write_all(fd, src->data, src->len) != 0)
            return err_sys(e, "cannot write message");
        *total = src->len;
        return 0;
    }
    chunk = xmalloc(MAILDIR_COPY_CHUNK);
    *total = 0;
    for (;;) {
        ssize_t r = read(src->fd, chunk, MAILDIR_COPY_CHUNK);

        if (r < 0) {
            if (errno == EINTR)
                continue;
            err_sys(e, "cannot read message");
            free(chunk);
            return -1;
        }
        if (r == 0)
            break;
        if (write_all(fd, chunk, (size_t)r) != 0) {
            err_sys(e, "cannot write message");
            free(chunk);
            return -1;
        }
        *total += (unsigned long long)r;
    }
    free(chunk);
    return 0;
}

/*
 * tmp/<uniq> (O_EXCL), write, fsync, close, link to <sub>/<uniq>,S=<size>
 * [":" info], fsync <sub>/, unlink tmp/<uniq>.  info is the text after the
 * ':' or NULL.
 */
static int deliver(const struct maildir_folder *f, const struct source *src,
                   enum maildir_sub sub, const char *info, struct maildir_ref *out,
                   struct err *e)
{
    char *uniq = NULL, *tmp_path = NULL, *final_name = NULL, *final_path = NULL;
    char *dir = xasprintf("%s/%s", f->path, sub_name(sub));
    bool tmp_exists = false, linked = false;
    unsigned long long total = 0;
    int fd = -1;

    for (int attempt = 0;; attempt++) {
        uniq = make_uniq();
        tmp_path = xasprintf("%s/tmp/%s", f->path, uniq);
        if (step(MAILDIR_STEP_TMP_CREATED) == 0)
            fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0)
            break;
        if (errno != EEXIST || attempt == MAILDIR_RETRIES) {
            err_sys(e, "cannot create %s", tmp_path);
            goto fail;
        }
        free(uniq);
        free(tmp_path);
    }
    tmp_exists = true;

    if (step(MAILDIR_STEP_WRITTEN) != 0) {
        err_sys(e, "cannot write %s", tmp_path);
        goto fail;
    }
    if (write_source(fd, src, &total, e) != 0) {
        err_prefix(e, "%s", tmp_path);
        goto fail;
    }
    if (step(MAILDIR_STEP_FSYNCED) != 0 || fsync(fd) != 0) {
        err_sys(e, "cannot sync %s", tmp_path);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        err_sys(e, "cannot write %s", tmp_path);
        goto fail;
    }
    fd = -1;

    for (int attempt = 0;; attempt++) {
        int rc;

        if (info != NULL)
            final_name = xasprintf("%s,S=%llu:%s", uniq, total, info);
        else
            final_name = xasprintf("%s,S=%llu", uniq, total);
        final_path = xasprintf("%s/%s", dir, final_name);
        rc = step(MAILDIR_STEP_LINKED);
        if (rc == 0) {
            rc = link(tmp_path, final_path);
            if (rc != 0 && (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS ||
                            errno == EMLINK)) {
                /* No hard links here: move the tmp file instead. */
                rc = rename_noreplace(tmp_path, final_path);
                if (rc == 0)
                    tmp_exists = false;
            }
        }
        if (rc == 0)
            break;
        if (errno != EEXIST || attempt == MAILDIR_RETRIES) {
            err_sys(e, "cannot deliver to %s", final_path);
            goto fail;
        }
        /* Someone has that name: pick another one for the final name. */
        free(uniq);
        free(final_name);
        free(final_path);
        final_name = final_path = NULL;
        uniq = make_uniq();
    }
    linked = true;

    if (step(MAILDIR_STEP_DIR_FSYNCED) != 0 || fsync_dir(dir) != 0) {
        err_sys(e, "cannot sync %s", dir);
        goto fail;
    }

    /* Delivered.  A tmp/ file that cannot be removed is only litter. */
    if (tmp_exists && step(MAILDIR_STEP_TMP_REMOVED) == 0)
        unlink(tmp_path);

    if (out != NULL)
        maildir_ref_set(out, sub, final_name);
    free(uniq);
    free(tmp_path);
    free(final_name);
    free(final_path);
    free(dir);
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    if (linked) {
        unlink(final_path);
        fsync_dir(dir);
    }
    if (tmp_exists)
        unlink(tmp_path);
    free(uniq);
    free(tmp_path);
    free(final_name);
    free(final_path);
    free(dir);
    return -1;
}

/* The info ("2,<letters>") for delivery options, or NULL for new/. */
static int opts_info(const struct maildir_deliver_opts *opts, enum maildir_sub *sub,
                     char **info, struct err *e)
{
    uint32_t kw;
    bool bad;
    char *p;

    *sub = MAILDIR_SUB_NEW;
    *info = NULL;
    if (opts == NULL)
        return 0;
    if (opts->flags & ~MAILDIR_F_ALL)
        return err_set(e, ERR_INVAL, "unknown flag bits 0x%x", opts->flags & ~MAILDIR_F_ALL);
    kw = keyword_mask(opts->keywords, &bad);
    if (bad)
        return err_set(e, ERR_INVAL, "keywords must be letters a-z");
    if (!opts->to_cur) {
        if (opts->flags != 0 || kw != 0)
            return err_set(e, ERR_INVAL, "flags need delivery to cur/");
        return 0;
    }
    *sub = MAILDIR_SUB_CUR;
    *info = p = xmalloc(2 + 52 + 1);
    *p++ = '2';
    *p++ = ',';
    p = put_letters(p, flags_to_upper(opts->flags), 'A');
    p = put_letters(p, kw, 'a');
    *p = '\0';
    return 0;
}

int maildir_deliver(const struct maildir_folder *f, const void *data, size_t len,
                    const struct maildir_deliver_opts *opts, struct maildir_ref *out,
                    struct err *e)
{
    struct source src = {data, len, -1};
    enum maildir_sub sub;
    char *info;
    int rc;

    if (data == NULL && len > 0)
        return err_set(e, ERR_INVAL, "no message data");
    if (opts_info(opts, &sub, &info, e) != 0)
        return -1;
    rc = deliver(f, &src, sub, info, out, e);
    free(info);
    return rc;
}

int maildir_deliver_fd(const struct maildir_folder *f, int fd,
                       const struct maildir_deliver_opts *opts, struct maildir_ref *out,
                       struct err *e)
{
    struct source src = {NULL, 0, fd};
    enum maildir_sub sub;
    char *info;
    int rc;

    if (fd < 0)
        return err_set(e, ERR_INVAL, "no message file descriptor");
    if (opts_info(opts, &sub, &info, e) != 0)
        return -1;
    rc = deliver(f, &src, sub, info, out, e);
    free(info);
    return rc;
}

/* ---- copy and move -------------------------------------------------------- */

int maildir_copy(const struct maildir_folder *src, struct maildir_ref *ref,
                 const struct maildir_folder *dst, struct maildir_ref *out, struct err *e)
{
    struct source s = {NULL, 0, -1};
    enum maildir_sub sub;
    const char *colon;
    char *info;
    int rc;

    if (maildir_open_message(src, ref, &s.fd, e) != 0)
        return -1;
    colon = strchr(ref->name, ':');
    if (colon != NULL) {
        sub = MAILDIR_SUB_CUR;
        info = xstrdup(colon + 1);
    } else if (ref->sub == MAILDIR_SUB_CUR) {
        /* cur/ without info: give it an empty ":2," as cur/ names have. */
        sub = MAILDIR_SUB_CUR;
        info = xstrdup("2,");
    } else {
        sub = MAILDIR_SUB_NEW;
        info = NULL;
    }
    rc = deliver(dst, &s, sub, info, out, e);
    close(s.fd);
    free(info);
    return rc;
}

int maildir_move(const struct maildir_folder *src, struct maildir_ref *ref,
                 const struct maildir_folder *dst, struct maildir_ref *out, struct err *e)
{
    struct maildir_ref copy = MAILDIR_REF_INIT;
    char *dir;

    /* The copy is durable (file and directory fsync'ed) when this returns. */
    if (maildir_copy(src, ref, dst, &copy, e) != 0)
        return -1;

    for (int attempt = 0;; attempt++) {
        char *path = ref_path(src, ref);
        int rc = step(MAILDIR_STEP_SOURCE_REMOVED);

        if (rc == 0)
            rc = unlink(path);
        if (rc == 0) {
            free(path);
            break;
        }
        if (errno == ENOENT && attempt < MAILDIR_RETRIES) {
            struct err ce;

            free(path);
            if (chase(src, ref, &ce) == 0)
                continue;
            if (ce.code == ERR_NOTFOUND) {
                /* Someone else removed the source meanwhile: it is moved. */
                break;
            }
            if (e != NULL)
                *e = ce;
        } else {
            err_sys(e, "cannot remove %s", path);
            free(path);
        }
        /* The source stays: take the copy back so the message counts once. */
        path = ref_path(dst, &copy);
        unlink(path);
        free(path);
        path = xasprintf("%s/%s", dst->path, sub_name(copy.sub));
        fsync_dir(path);
        free(path);
        maildir_ref_free(&copy);
        return -1;
    }

    /* Moved.  If this fsync fails, a crash could bring the source back as a
     * duplicate, never lose the message. */
    dir = xasprintf("%s/%s", src->path, sub_name(ref->sub));
    if (step(MAILDIR_STEP_SOURCE_DIR_FSYNCED) == 0)
        fsync_dir(dir);
    free(dir);

    maildir_ref_free(ref);
    if (out != NULL) {
        maildir_ref_free(out);
        *out = copy;
    } else {
        maildir_ref_free(&copy);
    }
    return 0;
}
