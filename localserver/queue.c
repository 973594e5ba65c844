/*
 * queue: the durable outbound queue -- spool files, their state files, IDs,
 * the runner lock and quarantine of entries that cannot be read.
 *
 * msg/ID is an envelope block followed by the data:
 *
 *   correod-queue 1
 *   id ID
 *   from =VALUE            ("=" then the percent-encoded value; "-" = none)
 *   envid -|=VALUE
 *   ret N
 *   body N
 *   smtputf8 0|1
 *   auth -|=VALUE
 *   created SECONDS
 *   rcpts N
 *   rcpt =ADDR NOTIFY -|=ORCPT -|=MAILDIR      (N lines)
 *   data SIZE
 *   <SIZE bytes of data>
 *
 * state/ID holds what changes:
 *
 *   correod-queue-state 1
 *   id ID
 *   attempts N
 *   next SECONDS
 *   delay_notified 0|1
 *   rcpts N
 *   rcpt pending|delivered|failed -|=REPLY      (N lines)
 *   end
 *
 * Percent-encoding covers every byte outside 0x21-0x7e and '%' itself, so
 * an encoded value has no space, CR, LF or NUL and each line splits at
 * single spaces.  Decoded values may not contain NUL.
 *
 * Commit points: queue_spool() renames the state file into state/ first and
 * the message into msg/ last; a message in msg/ therefore always has its
 * state, except while queue_remove() (state first, then message) runs.  A
 * message without state is a removal that was interrupted: queue_list()
 * skips it and the lock holder finishes the removal.
 */
#include "queue.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#define QUEUE_MAGIC "correod-queue 1"
#define STATE_MAGIC "correod-queue-state 1"
#define HEADER_MAX (64u << 20)      /* envelope block of a spool file */
#define STATE_MAX (64u << 20)
#define RCPTS_MAX 1000000u
#define DEBRIS_AGE (24 * 3600)      /* tmp/ files older than this are debris */

int (*queue_step_hook)(const char *step);

static int step(const char *name)
{
    if (queue_step_hook && queue_step_hook(name) < 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static bool id_valid(const char *id)
{
    size_t n = 0;

    for (; id[n]; n++) {
        if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'A' && id[n] <= 'Z')))
            return false;
    }
    return n > 0 && n < QUEUE_ID_MAX;
}

static int check_id(const char *id, struct err *e)
{
    if (!id_valid(id))
        return err_set(e, ERR_INVAL, "not a queue id");
    return 0;
}

static char *path2(const char *qdir, const char *sub, const char *name)
{
    return name ? xasprintf("%s/%s/%s", qdir, sub, name) : xasprintf("%s/%s", qdir, sub);
}

static int fsync_dir(const char *qdir, const char *sub, struct err *e)
{
    char *p = path2(qdir, sub, NULL);
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0 || fsync(fd) < 0)
        rc = err_sys(e, "fsync %s", p);
    if (fd >= 0)
        close(fd);
    free(p);
    return rc;
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write the concatenation of two pieces to path, fsync, close.  excl:
 * O_EXCL (a fresh name), else truncate.  On failure the file is removed. */
static int write_file_synced(const char *path, bool excl, const char *a, size_t alen,
                             const char *b, size_t blen, struct err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), 0600);

    if (fd < 0)
        return err_sys(e, "create %s", path);
    if (step("write") < 0 || write_all(fd, a, alen) < 0 || write_all(fd, b, blen) < 0) {
        err_sys(e, "write %s", path);
        goto fail;
    }
    if (step("fsync") < 0 || fsync(fd) < 0) {
        err_sys(e, "fsync %s", path);
        goto fail;
    }
    if (close(fd) < 0) {
        fd = -1;
        err_sys(e, "close %s", path);
        goto fail;
    }
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(path);
    return -1;
}

static int put_value(struct buf *b, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";

    if (v == NULL)
        return buf_putc(b, '-');
    if (buf_putc(b, '=') < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '%') {
            char enc[3] = { '%', hex[*p >> 4], hex[*p & 15] };

            if (buf_append(b, enc, 3) < 0)
                return -1;
        } else if (buf_putc(b, (char)*p) < 0) {
            return -1;
        }
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode a "-" or "=..." token of n bytes: 0 with *out (NULL for "-"), -1
 * on bad syntax. */
static int get_value(const char *s, size_t n, char **out)
{
    struct buf b = BUF_INIT;

    *out = NULL;
    if (n == 1 && s[0] == '-')
        return 0;
    if (n == 0 || s[0] != '=')
        return -1;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            int hi, lo;

            if (i + 2 >= n)
                goto bad;
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                goto bad;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c <= 0x20 || c >= 0x7f) {
            goto bad;
        }
        if (buf_putc(&b, (char)c) < 0)
            goto bad;
    }
    *out = xstrdup(buf_cstr(&b));
    buf_free(&b);
    return 0;
bad:
    buf_free(&b);
    return -1;
}

static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* A cursor over lines of a block. */
struct lines {
    const char *p, *end;
    const char *tok[8];
    size_t tlen[8];
    size_t ntok;
};

/* Next line split at single spaces; -1 at the end or on a line with too
 * many fields or empty fields. */
static int next_line(struct lines *l)
{
    const char *nl, *s;

    if (l->p >= l->end)
        return -1;
    nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
    if (nl == NULL)
        return -1;
    l->ntok = 0;
    s = l->p;
    for (const char *q = l->p;; q++) {
        if (q == nl || *q == ' ') {
            if (q == s || l->ntok == ARRAY_LEN(l->tok))
                return -1;
            l->tok[l->ntok] = s;
            l->tlen[l->ntok] = (size_t)(q - s);
            l->ntok++;
            s = q + 1;
            if (q == nl)
                break;
        }
    }
    l->p = nl + 1;
    return 0;
}

static bool tok_is(const struct lines *l, size_t i, const char *word)
{
    return i < l->ntok && l->tlen[i] == strlen(word) && memcmp(l->tok[i], word, l->tlen[i]) == 0;
}

/* "KEY NUMBER" */
static int keyed_u64(struct lines *l, const char *key, uint64_t max, uint64_t *out)
{
    if (next_line(l) < 0 || l->ntok != 2 || !tok_is(l, 0, key))
        return -1;
    return parse_u64(l->tok[1], l->tlen[1], max, out);
}

/* "KEY VALUE" with VALUE "-" or "=..." */
static int keyed_value(struct lines *l, const char *key, char **out)
{
    *out = NULL;
    if (next_line(l) < 0 || l->ntok != 2 || !tok_is(l, 0, key))
        return -1;
    return get_value(l->tok[1], l->tlen[1], out);
}

/* ---- ids ---------------------------------------------------------------- */

static void base36(char *out, size_t width, uint64_t v)
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    for (size_t i = width; i-- > 0;) {
        out[i] = digits[v % 36];
        v /= 36;
    }
}

static uint64_t unbase36(const char *s, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v * 36 + (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
    return v;
}

/* Layout: seconds (7), microseconds (4), counter (4), pid (6): fixed width,
 * so ordering the names orders the entries by time of spooling. */
#define ID_LEN 21
#define ID_PID_OFF 15
#define ID_PID_LEN 6

static void make_id(char id[QUEUE_ID_MAX])
{
    static unsigned counter;
    struct timeval tv;

    gettimeofday(&tv, NULL);
    base36(id, 7, (uint64_t)tv.tv_sec);
    base36(id + 7, 4, (uint64_t)tv.tv_usec);
    base36(id + 11, 4, counter++ % (36u * 36 * 36 * 36));
    base36(id + ID_PID_OFF, ID_PID_LEN, (uint64_t)getpid());
    id[ID_LEN] = '\0';
}

/* Is the process that made id (and so the tmp/ files named after it) gone? */
static bool id_writer_gone(const char *name)
{
    uint64_t pid;

    if (strlen(name) < ID_LEN)
        return true;
    for (size_t i = 0; i < ID_LEN; i++) {
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'A' && name[i] <= 'Z')))
            return true;
    }
    pid = unbase36(name + ID_PID_OFF, ID_PID_LEN);
    if (pid == 0 || pid > INT_MAX)
        return true;
    if (pid == (uint64_t)getpid())
        return false;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* ---- init, lock, tidying ------------------------------------------------ */

int queue_init(const char *qdir, struct err *e)
{
    static const char *const subs[] = { "msg", "state", "tmp", "corrupt" };
    bool made = false;
    int fd;

    if (mkdir(qdir, 0700) < 0 && errno != EEXIST)
        return err_sys(e, "mkdir %s", qdir);
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *p = path2(qdir, subs[i], NULL);

        if (mkdir(p, 0700) == 0) {
            made = true;
        } else if (errno != EEXIST) {
            err_sys(e, "mkdir %s", p);
            free(p);
            return -1;
        }
        free(p);
    }
    /* new directories are durable before anything is spooled into them */
    if (made) {
        fd = open(qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0) {
            err_sys(e, "fsync %s", qdir);
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

static bool exists_in(const char *qdir, const char *sub, const char *name)
{
    char *p = path2(qdir, sub, name);
    struct stat st;
    bool r = lstat(p, &st) == 0;

    free(p);
    return r;
}

/* Under the lock: remove debris of writers that died. */
static void tidy(const char *qdir)
{
    char *p = path2(qdir, "tmp", NULL);
    DIR *d = opendir(p);
    struct dirent *de;
    time_t now = time(NULL);

    free(p);
    if (d) {
        while ((de = readdir(d)) != NULL) {
            const char *dot = strrchr(de->d_name, '.');
            struct stat st;
            bool remove = false;

            if (de->d_name[0] == '.')
                continue;
            if (dot && strcmp(dot, ".st") == 0) {
                remove = true;      /* written only by the lock holder */
            } else if (id_writer_gone(de->d_name)) {
                remove = true;
            } else if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                       now - st.st_mtime > DEBRIS_AGE) {
                remove = true;
            }
            if (remove)
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }

    /* state without message: a spool that never reached its commit point */
    p = path2(qdir, "state", NULL);
    d = opendir(p);
    free(p);
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (!id_valid(de->d_name) || exists_in(qdir, "msg", de->d_name))
                continue;
            if (id_writer_gone(de->d_name))
                unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }

    /* message without state: a removal that was interrupted */
    p = path2(qdir, "msg", NULL);
    d = opendir(p);
    free(p);
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (!id_valid(de->d_name) || exists_in(qdir, "state", de->d_name))
                continue;
            unlinkat(dirfd(d), de->d_name, 0);
        }
        closedir(d);
    }
}

int queue_lock(const char *qdir, int *fd, struct err *e)
{
    char *p = path2(qdir, "lock", NULL);
    int lfd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    *fd = -1;
    if (lfd < 0) {
        err_sys(e, "open %s", p);
        free(p);
        return -1;
    }
    while (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            err_set(e, ERR_EXISTS, "the queue is locked by another process");
        else
            err_sys(e, "lock %s", p);
        close(lfd);
        free(p);
        return -1;
    }
    free(p);
    tidy(qdir);
    *fd = lfd;
    return 0;
}

/* ---- spool -------------------------------------------------------------- */

static const char *const rcpt_state_names[] = { "pending", "delivered", "failed" };

static int format_state(struct buf *b, const char *id, unsigned attempts, time_t next,
                         bool delay_notified, const struct queue_rcpt *rcpts, size_t n)
{
    if (buf_printf(b, STATE_MAGIC "\nid %s\nattempts %u\nnext %lld\ndelay_notified %d\n"
                   "rcpts %zu\n", id, attempts, (long long)(next < 0 ? 0 : next),
                   delay_notified ? 1 : 0, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned s = (unsigned)rcpts[i].state;

        if (s >= ARRAY_LEN(rcpt_state_names))
            s = QRCPT_PENDING;
        if (buf_printf(b, "rcpt %s ", rcpt_state_names[s]) < 0 ||
            put_value(b, rcpts[i].last_reply) < 0 || buf_putc(b, '\n') < 0)
            return -1;
    }
    return buf_puts(b, "end\n");
}

static int format_envelope(struct buf *b, const char *id, const struct smtp_envelope *env,
                           const struct queue_rcpt *rcpts, size_t n, time_t created,
                           size_t len)
{
    if (buf_printf(b, QUEUE_MAGIC "\nid %s\nfrom ", id) < 0 ||
        put_value(b, env->mail_from ? env->mail_from : "") < 0 ||
        buf_puts(b, "\nenvid ") < 0 || put_value(b, env->envid) < 0 ||
        buf_printf(b, "\nret %d\nbody %d\nsmtputf8 %d\nauth ", (int)env->ret,
                   (int)env->body, env->smtputf8 ? 1 : 0) < 0 ||
        put_value(b, env->auth_user) < 0 ||
        buf_printf(b, "\ncreated %lld\nrcpts %zu\n", (long long)created, n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (buf_puts(b, "rcpt ") < 0 || put_value(b, rcpts[i].addr) < 0 ||
            buf_printf(b, " %u ", rcpts[i].notify & 15u) < 0 ||
            put_value(b, rcpts[i].orcpt) < 0 || buf_putc(b, ' ') < 0 ||
            put_value(b, rcpts[i].local_maildir) < 0 || buf_putc(b, '\n') < 0)
            return -1;
    }
    return buf_printf(b, "data %zu\n", len);
}

int queue_spool(const char *qdir, const struct smtp_envelope *env,
                const struct queue_rcpt *rcpts, size_t n_rcpts,
                const char *msg, size_t len, char id[QUEUE_ID_MAX], struct err *e)
{
    struct buf hdr = BUF_INIT, st = BUF_INIT;
    char *tmp_msg = NULL, *tmp_st = NULL, *dst_msg = NULL, *dst_st = NULL;
    time_t now = time(NULL);
    bool state_linked = false;
    struct err we;
    int rc = -1;

    if (n_rcpts == 0 || n_rcpts > RCPTS_MAX)
        return err_set(e, ERR_INVAL, "queue: bad number of recipients (%zu)", n_rcpts);
    if (!exists_in(qdir, "tmp", NULL) || !exists_in(qdir, "msg", NULL) ||
        !exists_in(qdir, "state", NULL)) {
        if (queue_init(qdir, e) < 0)
            return -1;
    }
    for (size_t i = 0; i < n_rcpts; i++) {
        if (rcpts[i].addr == NULL)
            return err_set(e, ERR_INVAL, "queue: recipient without address");
    }

    for (int tries = 0;; tries++) {
        make_id(id);
        tmp_msg = xasprintf("%s/tmp/%s.msg", qdir, id);
        tmp_st = xasprintf("%s/tmp/%s.st0", qdir, id);
        dst_msg = path2(qdir, "msg", id);
        dst_st = path2(qdir, "state", id);
        buf_reset(&hdr);
        buf_reset(&st);
        if (format_envelope(&hdr, id, env, rcpts, n_rcpts, now, len) < 0 ||
            format_state(&st, id, 0, now, false, rcpts, n_rcpts) < 0)
            die("queue: unbounded buffer refused an append");
        if (write_file_synced(tmp_st, true, st.data, st.len, NULL, 0, &we) == 0)
            break;
        free(tmp_msg);
        free(tmp_st);
        free(dst_msg);
        free(dst_st);
        tmp_msg = tmp_st = dst_msg = dst_st = NULL;
        if (we.sys_errno != EEXIST || tries > 100) {
            if (e)
                *e = we;
            goto out;
        }
    }
    if (write_file_synced(tmp_msg, true, hdr.data, hdr.len, msg, len, e) < 0) {
        unlink(tmp_st);
        goto out;
    }
    /* link() does not replace: an ID in use (a clock step, a reused pid)
     * fails here instead of overwriting an entry. */
    if (step("rename-state") < 0 || link(tmp_st, dst_st) < 0) {
        err_sys(e, "queue: link %s", dst_st);
        goto fail_tmp;
    }
    state_linked = true;
    unlink(tmp_st);
    if (step("dirsync-state") < 0 || fsync_dir(qdir, "state", e) < 0) {
        err_sys(e, "queue: fsync state/");
        goto fail_tmp;
    }
    /* The commit point: the entry exists once msg/ID does. */
    if (step("rename-msg") < 0 || link(tmp_msg, dst_msg) < 0) {
        err_sys(e, "queue: link %s", dst_msg);
        goto fail_tmp;
    }
    unlink(tmp_msg);
    if (step("dirsync-msg") < 0 || fsync_dir(qdir, "msg", e) < 0) {
        /* Not known to be durable: take it back so the client retries. */
        err_sys(e, "queue: fsync msg/");
        unlink(dst_msg);
        goto fail_tmp;
    }
    rc = 0;
    goto out;

fail_tmp:
    unlink(tmp_msg);
    unlink(tmp_st);
    if (state_linked)
        unlink(dst_st);
    if (e)
        e->temporary = true;
out:
    if (rc < 0)
        id[0] = '\0';
    free(tmp_msg);
    free(tmp_st);
    free(dst_msg);
    free(dst_st);
    buf_free(&hdr);
    buf_free(&st);
    return rc;
}

/* ---- load --------------------------------------------------------------- */

void queue_entry_free(struct queue_entry *q)
{
    if (q == NULL)
        return;
    free(q->mail_from);
    free(q->envid);
    free(q->auth_user);
    for (size_t i = 0; i < q->n_rcpts; i++) {
        free(q->rcpts[i].addr);
        free(q->rcpts[i].local_maildir);
        free(q->rcpts[i].orcpt);
        free(q->rcpts[i].last_reply);
    }
    free(q->rcpts);
    free(q);
}

/* Read the envelope block of msg/ID into hdr (through the "data" line).
 * Returns 0, -1 with errno (I/O), -2 for a malformed file.  *file_size gets
 * the size of the file. */
static int read_header(int fd, struct buf *hdr, off_t *file_size)
{
    struct stat st;
    size_t scanned = 0;

    if (fstat(fd, &st) < 0)
        return -1;
    *file_size = st.st_size;
    for (;;) {
        char *w;
        ssize_t n;
        const char *nl;

        while (hdr->len > scanned &&
               (nl = memchr(hdr->data + scanned, '\n', hdr->len - scanned)) != NULL) {
            size_t start = scanned;

            scanned = (size_t)(nl - hdr->data) + 1;
            if (scanned - start >= 5 && memcmp(hdr->data + start, "data ", 5) == 0) {
                buf_truncate(hdr, scanned);
                return 0;
            }
        }
        if (hdr->len >= HEADER_MAX)
            return -2;
        w = buf_reserve(hdr, 65536);
        if (w == NULL)
            return -2;
        n = pread(fd, w, 65536, (off_t)hdr->len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            return -2;
        buf_commit(hdr, (size_t)n);
    }
}

static int parse_envelope(const char *id, const char *p, size_t len, off_t file_size,
                          struct queue_entry *q)
{
    struct lines l = { p, p + len, { 0 }, { 0 }, 0 };
    uint64_t v, n;

    if (next_line(&l) < 0 || l.ntok != 2 || !tok_is(&l, 0, "correod-queue") ||
        !tok_is(&l, 1, "1"))
        return -1;
    if (next_line(&l) < 0 || l.ntok != 2 || !tok_is(&l, 0, "id") || !tok_is(&l, 1, id))
        return -1;
    if (keyed_value(&l, "from", &q->mail_from) < 0 || q->mail_from == NULL)
        return -1;
    if (keyed_value(&l, "envid", &q->envid) < 0)
        return -1;
    if (keyed_u64(&l, "ret", SMTP_RET_HDRS, &v) < 0)
        return -1;
    q->ret = (int)v;
    if (keyed_u64(&l, "body", SMTP_BODY_BINARYMIME, &v) < 0)
        return -1;
    q->body = (int)v;
    if (keyed_u64(&l, "smtputf8", 1, &v) < 0)
        return -1;
    q->smtputf8 = v != 0;
    if (keyed_value(&l, "auth", &q->auth_user) < 0)
        return -1;
    if (keyed_u64(&l, "created", (uint64_t)INT64_MAX, &v) < 0)
        return -1;
    q->created = (time_t)v;
    if (keyed_u64(&l, "rcpts", RCPTS_MAX, &n) < 0 || n == 0)
        return -1;
    q->rcpts = xcalloc((size_t)n, sizeof(*q->rcpts));
    for (size_t i = 0; i < n; i++) {
        struct queue_rcpt *r = &q->rcpts[i];

        q->n_rcpts = i + 1;
        if (next_line(&l) < 0 || l.ntok != 5 || !tok_is(&l, 0, "rcpt"))
            return -1;
        if (get_value(l.tok[1], l.tlen[1], &r->addr) < 0 || r->addr == NULL)
            return -1;
        if (parse_u64(l.tok[2], l.tlen[2], 15, &v) < 0)
            return -1;
        r->notify = (unsigned)v;
        if (get_value(l.tok[3], l.tlen[3], &r->orcpt) < 0 ||
            get_value(l.tok[4], l.tlen[4], &r->local_maildir) < 0)
            return -1;
    }
    if (keyed_u64(&l, "data", (uint64_t)INT64_MAX, &v) < 0 || l.p != l.end)
        return -1;
    if ((uint64_t)file_size != (uint64_t)len + v)
        return -1;
    q->data_size = (size_t)v;
    return 0;
}

static int parse_state(const char *id, const char *p, size_t len, struct queue_entry *q)
{
    struct lines l = { p, p + len, { 0 }, { 0 }, 0 };
    uint64_t v;

    if (next_line(&l) < 0 || l.ntok != 2 || !tok_is(&l, 0, "correod-queue-state") ||
        !tok_is(&l, 1, "1"))
        return -1;
    if (next_line(&l) < 0 || l.ntok != 2 || !tok_is(&l, 0, "id") || !tok_is(&l, 1, id))
        return -1;
    if (keyed_u64(&l, "attempts", UINT_MAX, &v) < 0)
        return -1;
    q->attempts = (unsigned)v;
    if (keyed_u64(&l, "next", (uint64_t)INT64_MAX, &v) < 0)
        return -1;
    q->next_attempt = (time_t)v;
    if (keyed_u64(&l, "delay_notified", 1, &v) < 0)
        return -1;
    q->delay_notified = v != 0;
    if (keyed_u64(&l, "rcpts", RCPTS_MAX, &v) < 0 || v != q->n_rcpts)
        return -1;
    for (size_t i = 0; i < q->n_rcpts; i++) {
        struct queue_rcpt *r = &q->rcpts[i];
        size_t s;

        if (next_line(&l) < 0 || l.ntok != 3 || !tok_is(&l, 0, "rcpt"))
            return -1;
        for (s = 0; s < ARRAY_LEN(rcpt_state_names); s++) {
            if (tok_is(&l, 1, rcpt_state_names[s]))
                break;
        }
        if (s == ARRAY_LEN(rcpt_state_names))
            return -1;
        r->state = (enum queue_rcpt_state)s;
        if (get_value(l.tok[2], l.tlen[2], &r->last_reply) < 0)
            return -1;
    }
    if (next_line(&l) < 0 || l.ntok != 1 || !tok_is(&l, 0, "end") || l.p != l.end)
        return -1;
    return 0;
}

/* Move msg/ID and state/ID into corrupt/ (under a fresh name if taken). */
static void quarantine(const char *qdir, const char *id)
{
    static const char *const subs[] = { "msg", "state" };
    char *dir = path2(qdir, "corrupt", NULL);

    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        free(dir);
        return;
    }
    free(dir);
    for (size_t i = 0; i < ARRAY_LEN(subs); i++) {
        char *from = path2(qdir, subs[i], id);
        char *to = xasprintf("%s/corrupt/%s.%s", qdir, id, subs[i]);

        for (unsigned k = 1; link(from, to) < 0 && errno == EEXIST && k < 1000; k++) {
            free(to);
            to = xasprintf("%s/corrupt/%s.%s.%u", qdir, id, subs[i], k);
        }
        if (access(to, F_OK) == 0)
            unlink(from);
        free(from);
        free(to);
    }
    fsync_dir(qdir, "corrupt", NULL);
    fsync_dir(qdir, "state", NULL);
    fsync_dir(qdir, "msg", NULL);
}

int queue_load(const char *qdir, const char *id, struct queue_entry **out, struct err *e)
{
    struct queue_entry *q = NULL;
    struct buf hdr = BUF_INIT, st = BUF_INIT;
    char *mp = NULL, *sp = NULL;
    int mfd = -1, sfd = -1, r;
    off_t fsize = 0;
    int rc = -1;

    *out = NULL;
    if (check_id(id, e) < 0)
        return -1;
    mp = path2(qdir, "msg", id);
    sp = path2(qdir, "state", id);
    mfd = open(mp, O_RDONLY | O_CLOEXEC);
    if (mfd < 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "queue: no entry %s", id);
        else
            err_sys(e, "queue: open %s", mp);
        goto out;
    }
    sfd = open(sp, O_RDONLY | O_CLOEXEC);
    if (sfd < 0) {
        if (errno == ENOENT)   /* being removed */
            err_set(e, ERR_NOTFOUND, "queue: entry %s has no state (being removed)", id);
        else
            err_sys(e, "queue: open %s", sp);
        goto out;
    }
    r = read_header(mfd, &hdr, &fsize);
    if (r == -1) {
        err_sys(e, "queue: read %s", mp);
        goto out;
    }
    st.max = STATE_MAX;
    if (r == -2)
        goto corrupt;
    r = buf_read_all(&st, sfd);
    if (r == -1) {
        err_sys(e, "queue: read %s", sp);
        goto out;
    }
    if (r == -2)
        goto corrupt;
    q = XNEW(struct queue_entry);
    memcpy(q->id, id, strlen(id) + 1);
    if (parse_envelope(id, hdr.data, hdr.len, fsize, q) < 0 ||
        parse_state(id, st.data ? st.data : "", st.len, q) < 0)
        goto corrupt;
    *out = q;
    q = NULL;
    rc = 0;
    goto out;
corrupt:
    close(mfd);
    close(sfd);
    mfd = sfd = -1;
    quarantine(qdir, id);
    err_set(e, ERR_PARSE, "queue: entry %s is malformed; moved to %s/corrupt/", id, qdir);
out:
    if (mfd >= 0)
        close(mfd);
    if (sfd >= 0)
        close(sfd);
    queue_entry_free(q);
    buf_free(&hdr);
    buf_free(&st);
    free(mp);
    free(sp);
    return rc;
}

int queue_open_data(const char *qdir, const char *id, int *fd, size_t *len, struct err *e)
{
    struct buf hdr = BUF_INIT;
    struct lines l;
    uint64_t v;
    off_t fsize;
    char *mp;
    int mfd, r;

    *fd = -1;
    *len = 0;
    if (check_id(id, e) < 0)
        return -1;
    mp = path2(qdir, "msg", id);
    mfd = open(mp, O_RDONLY | O_CLOEXEC);
    if (mfd < 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "queue: no entry %s", id);
        else
            err_sys(e, "queue: open %s", mp);
        free(mp);
        return -1;
    }
    r = read_header(mfd, &hdr, &fsize);
    if (r == -1) {
        err_sys(e, "queue: read %s", mp);
        goto fail;
    }
    if (r == -2)
        goto bad;
    /* the last line of the block is "data SIZE" */
    l.p = hdr.data + hdr.len - 1;
    while (l.p > hdr.data && l.p[-1] != '\n')
        l.p--;
    l.end = hdr.data + hdr.len;
    if (keyed_u64(&l, "data", (uint64_t)INT64_MAX, &v) < 0 ||
        (uint64_t)fsize != (uint64_t)hdr.len + v)
        goto bad;
    if (lseek(mfd, (off_t)hdr.len, SEEK_SET) < 0) {
        err_sys(e, "queue: seek %s", mp);
        goto fail;
    }
    *fd = mfd;
    *len = (size_t)v;
    buf_free(&hdr);
    free(mp);
    return 0;
bad:
    err_set(e, ERR_PARSE, "queue: entry %s is malformed", id);
fail:
    close(mfd);
    buf_free(&hdr);
    free(mp);
    return -1;
}

int queue_save_state(const char *qdir, const struct queue_entry *q, struct err *e)
{
    struct buf b = BUF_INIT;
    char *tmp, *dst;
    int rc = -1;

    if (check_id(q->id, e) < 0)
        return -1;
    tmp = xasprintf("%s/tmp/%s.st", qdir, q->id);
    dst = path2(qdir, "state", q->id);
    if (!exists_in(qdir, "msg", q->id)) {
        err_set(e, ERR_NOTFOUND, "queue: no entry %s", q->id);
        goto out;
    }
    if (format_state(&b, q->id, q->attempts, q->next_attempt, q->delay_notified, q->rcpts,
                     q->n_rcpts) < 0)
        die("queue: unbounded buffer refused an append");
    if (write_file_synced(tmp, false, b.data, b.len, NULL, 0, e) < 0)
        goto out;
    if (step("rename-state") < 0 || rename(tmp, dst) < 0) {
        err_sys(e, "queue: rename %s", dst);
        unlink(tmp);
        goto out;
    }
    if (step("dirsync-state") < 0 || fsync_dir(qdir, "state", e) < 0) {
        err_sys(e, "queue: fsync state/");
        goto out;
    }
    rc = 0;
out:
    if (rc < 0 && e)
        e->temporary = true;
    buf_free(&b);
    free(tmp);
    free(dst);
    return rc;
}

int queue_remove(const char *qdir, const char *id, struct err *e)
{
    char *sp, *mp;
    int rc = -1;

    if (check_id(id, e) < 0)
        return -1;
    sp = path2(qdir, "state", id);
    mp = path2(qdir, "msg", id);
    if (unlink(sp) < 0 && errno != ENOENT) {
        err_sys(e, "queue: unlink %s", sp);
        goto out;
    }
    if (fsync_dir(qdir, "state", e) < 0)
        goto out;
    if (unlink(mp) < 0) {
        if (errno == ENOENT)
            err_set(e, ERR_NOTFOUND, "queue: no entry %s", id);
        else
            err_sys(e, "queue: unlink %s", mp);
        goto out;
    }
    if (fsync_dir(qdir, "msg", e) < 0)
        goto out;
    rc = 0;
out:
    free(sp);
    free(mp);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int queue_list(const char *qdir, char ***ids, size_t *n, struct err *e)
{
    char *p = path2(qdir, "msg", NULL);
    DIR *d = opendir(p);
    struct dirent *de;
    char **v = NULL;
    size_t count = 0, cap = 0;

    *ids = NULL;
    *n = 0;
    if (d == NULL) {
        if (errno == ENOENT) {      /* nothing was ever spooled */
            free(p);
            return 0;
        }
        err_sys(e, "queue: open %s", p);
        free(p);
        return -1;
    }
    free(p);
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (de == NULL)
            break;
        if (!id_valid(de->d_name) || !exists_in(qdir, "state", de->d_name))
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            v = xreallocarray(v, cap, sizeof(*v));
        }
        v[count++] = xstrdup(de->d_name);
    }
    if (errno != 0) {
        err_sys(e, "queue: read msg/");
        closedir(d);
        for (size_t i = 0; i < count; i++)
            free(v[i]);
        free(v);
        return -1;
    }
    closedir(d);
    if (count > 1)
        qsort(v, count, sizeof(*v), cmp_str);
    *ids = v;
    *n = count;
    return 0;
}
