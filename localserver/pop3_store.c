/*
 * pop3_store: a user's POP3 maildrop (see pop3_store.h).
 */
#include "pop3_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"
#include "uidlist.h"
#include "xalloc.h"

struct store_msg {
    struct maildir_ref ref;
    uint32_t uid;
};

struct pop3_store {
    struct maildir_folder *f;      /* NULL: no Maildir yet, nothing listed */
    int lock_fd;
    struct store_msg *v;
    size_t n;
    int msg_fd;                    /* the open message, or -1 */
};

size_t pop3_store_count(const struct pop3_store *st)
{
    return st->n;
}

/* Digits of a decimal field value; false unless all digits and no overflow. */
static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* ",W=<n>" in the base name of a file (Dovecot's virtual size). */
static bool name_vsize(const char *name, uint64_t *out)
{
    size_t base = strcspn(name, ":");

    for (size_t i = 0; i + 3 <= base; i++) {
        if (name[i] == ',' && name[i + 1] == 'W' && name[i + 2] == '=') {
            size_t k = i + 3, start = k;
            while (k < base && name[k] >= '0' && name[k] <= '9')
                k++;
            if (k < base && name[k] != ',')
                continue;
            if (parse_u64(name + start, k - start, out))
                return true;
        }
    }
    return false;
}

static bool valid_uidl(const char *s, size_t len)
{
    if (len == 0 || len > POP3_UIDL_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* Read a message once to count its octets with CRLF line ends. */
static int count_octets(const struct maildir_folder *f, struct maildir_ref *ref,
                        uint64_t *out, struct err *e)
{
    char buf[65536];
    bool after_cr = false;
    uint64_t total = 0;
    int fd;

    if (maildir_open_message(f, ref, &fd, e) < 0)
        return -1;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_sys(e, "reading %s", ref->name);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        total += pop3_crlf_octets(buf, (size_t)r, &after_cr);
    }
    close(fd);
    *out = total;
    return 0;
}

static void store_free_msgs(struct pop3_store *st)
{
    for (size_t i = 0; i < st->n; i++)
        maildir_ref_free(&st->v[i].ref);
    free(st->v);
    st->v = NULL;
    st->n = 0;
}

void pop3_store_msg_close(struct pop3_store *st)
{
    if (st && st->msg_fd >= 0) {
        close(st->msg_fd);
        st->msg_fd = -1;
    }
}

void pop3_store_close(struct pop3_store *st)
{
    if (!st)
        return;
    pop3_store_msg_close(st);
    store_free_msgs(st);
    if (st->lock_fd >= 0)
        close(st->lock_fd);   /* releases the flock */
    maildir_folder_close(st->f);
    free(st);
}

static int take_lock(struct pop3_store *st, const char *maildir, bool *busy, struct err *e)
{
    char *path = xasprintf("%s/%s", maildir, POP3_STORE_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

    *busy = false;
    if (fd < 0) {
        err_sys(e, "cannot open the POP3 lock %s", path);
        free(path);
        return -1;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            *busy = true;
        else
            err_sys(e, "cannot lock %s", path);
        close(fd);
        free(path);
        return -1;
    }
    free(path);
    st->lock_fd = fd;
    return 0;
}

/* The UIDs of new/ and cur/, up to date (new files get theirs now). */
static int sync_uids(const struct maildir_folder *f, struct uidlist **out, struct err *e)
{
    struct uidlist_opts opts = UIDLIST_OPTS_INIT;
    struct uidlist *ul = NULL;

    opts.lock_timeout_ms = POP3_STORE_UIDLIST_WAIT_MS;
    if (uidlist_open(f->path, &opts, &ul, e) < 0) {
        if (e->code != ERR_PARSE)
            return -1;
        /* A broken list: start over under a new UIDVALIDITY, as IMAP would. */
        if (uidlist_rebuild(f->path, &opts, &ul, NULL, e) < 0)
            return -1;
    }
    if (uidlist_sync(ul, f, 0, NULL, e) < 0) {
        uidlist_free(ul);
        return -1;
    }
    *out = ul;
    return 0;
}

static int list_messages(struct pop3_store *st, struct pop3_msg **msgs, size_t *n,
                         struct err *e)
{
    struct uidlist *ul;
    struct pop3_msg *m = NULL;
    size_t k = 0;

    if (sync_uids(st->f, &ul, e) < 0)
        return -1;
    st->v = xcalloc(ul->n ? ul->n : 1, sizeof *st->v);
    if (ul->n)
        m = xcalloc(ul->n, sizeof *m);
    for (size_t i = 0; i < ul->n; i++) {
        const struct uidlist_rec *r = &ul->v[i];
        struct store_msg *sm = &st->v[k];
        uint64_t size;
        size_t len;
        const char *val;

        if (!r->found)
            continue;
        maildir_ref_set(&sm->ref, r->sub, r->file);
        sm->uid = r->uid;
        val = uidlist_rec_field(r, 'W', &len);
        if (!(val && parse_u64(val, len, &size)) && !name_vsize(r->file, &size)) {
            struct err e2;
            if (count_octets(st->f, &sm->ref, &size, &e2) < 0) {
                if (e2.code == ERR_NOTFOUND) {
                    /* Expunged by someone else since the scan. */
                    maildir_ref_free(&sm->ref);
                    continue;
                }
                *e = e2;
                maildir_ref_free(&sm->ref);
                pop3_msgs_free(m, k);
                uidlist_free(ul);
                st->n = k;
                return -1;
            }
        }
        val = uidlist_rec_field(r, 'P', &len);
        if (val && valid_uidl(val, len))
            m[k].uidl = xstrndup(val, len);
        else
            m[k].uidl = xasprintf("%08X%08X", (unsigned)r->uid, (unsigned)ul->uidvalidity);
        m[k].size = size;
        k++;
        st->n = k;
    }
    uidlist_free(ul);
    if (k == 0) {
        free(m);
        m = NULL;
    }
    *msgs = m;
    *n = k;
    return 0;
}

enum pop3_open pop3_store_open(const char *maildir, struct pop3_store **out,
                               struct pop3_msg **msgs, size_t *n, struct err *e)
{
    struct pop3_store *st = XNEW(struct pop3_store);
    bool busy;

    st->lock_fd = -1;
    st->msg_fd = -1;
    *out = NULL;
    *msgs = NULL;
    *n = 0;
    if (maildir_folder_open_path(maildir, &st->f, e) < 0) {
        if (e->code == ERR_NOTFOUND) {
            st->f = NULL;      /* nothing delivered yet: an empty maildrop */
            *out = st;
            return POP3_OPEN_OK;
        }
        free(st);
        return POP3_OPEN_FAIL;
    }
    if (take_lock(st, maildir, &busy, e) < 0) {
        pop3_store_close(st);
        if (busy) {
            err_set(e, ERR_EXISTS, "maildrop %s is locked by another POP3 session", maildir);
            return POP3_OPEN_LOCKED;
        }
        return POP3_OPEN_FAIL;
    }
    if (list_messages(st, msgs, n, e) < 0) {
        pop3_store_close(st);
        return POP3_OPEN_FAIL;
    }
    *out = st;
    return POP3_OPEN_OK;
}

int pop3_store_msg_open(struct pop3_store *st, size_t idx, struct err *e)
{
    int fd;

    pop3_store_msg_close(st);
    if (idx >= st->n || !st->f)
        return err_set(e, ERR_NOTFOUND, "no message %zu", idx + 1);
    if (maildir_open_message(st->f, &st->v[idx].ref, &fd, e) < 0)
        return -1;
    st->msg_fd = fd;
    return 0;
}

ssize_t pop3_store_msg_read(struct pop3_store *st, char *buf, size_t cap)
{
    if (st->msg_fd < 0)
        return -1;
    for (;;) {
        ssize_t r = read(st->msg_fd, buf, cap);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

/* Unlink a message, following a rename by another program; gone is fine. */
static int remove_msg(const struct maildir_folder *f, struct maildir_ref *ref, struct err *e)
{
    for (int tries = 0; tries < 5; tries++) {
        char *path;
        if (maildir_message_path(f, ref, &path, e) < 0)
            return e->code == ERR_NOTFOUND ? 0 : -1;
        if (unlink(path) == 0) {
            free(path);
            return 0;
        }
        if (errno != ENOENT) {
            err_sys(e, "cannot remove %s", path);
            free(path);
            return -1;
        }
        free(path);   /* renamed under us: look again */
    }
    return err_set(e, ERR_IO, "message %s keeps moving", ref->name ? ref->name : "?");
}

static void fsync_dir(const char *dir, const char *sub)
{
    char *path = xasprintf("%s/%s", dir, sub);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(path);
}

int pop3_store_update(struct pop3_store *st, const unsigned char *marks, size_t n,
                      size_t *flag_failures, struct err *e)
{
    size_t failed = 0, flag_failed = 0, removed = 0;
    struct err first;

    err_clear(&first);
    pop3_store_msg_close(st);
    if (n > st->n)
        n = st->n;
    for (size_t i = 0; i < n && st->f; i++) {
        struct err e2;
        if (marks[i] & POP3_MARK_DELETED) {
            if (remove_msg(st->f, &st->v[i].ref, &e2) < 0) {
                if (failed++ == 0)
                    first = e2;
            } else {
                removed++;
            }
        } else if (marks[i] & POP3_MARK_RETRIEVED) {
            if (maildir_change_flags(st->f, &st->v[i].ref, MAILDIR_F_SEEN, 0, &e2) < 0 &&
                e2.code != ERR_NOTFOUND)
                flag_failed++;
        }
    }
    if (removed) {
        fsync_dir(st->f->path, "new");
        fsync_dir(st->f->path, "cur");
    }
    if (flag_failures)
        *flag_failures = flag_failed;
    if (failed) {
        err_set(e, first.code, "%zu message%s not removed: %s", failed,
                failed == 1 ? "" : "s", first.text);
        return -1;
    }
    return 0;
}
