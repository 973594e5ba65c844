/*
 * mbox_notmuch: a notmuch query as a mailbox (struct mailbox_ops over
 * libnotmuch).
 *
 * Path: notmuch://[DBPATH]?query=QUERY[&limit=N][&type=messages].  DBPATH
 * and the values are percent-decoded; an empty DBPATH means the database of
 * the notmuch configuration ($NOTMUCH_CONFIG, else notmuch's default
 * places).  The query uses notmuch's syntax and the configuration's
 * search.exclude_tags, like `notmuch search`.
 *
 * The database is opened for each operation and closed right after it
 * (read-only to search, read-write only to change tags), so `notmuch new`
 * from cron is never locked out by an open folder.
 *
 * Load: notmuch_query_search_messages, oldest first; one store record per
 * message, named by its first file name (an absolute path, which is also
 * the record's key).  The record's header fields come from that file's
 * header block; its labels (store_msg.tags) are the message's tags joined by
 * blanks.  Flags come from the tags (unread, flagged, replied, draft,
 * passed), plus T from the file's Maildir info and MSG_NEW when the file is
 * in a new/ directory.  A file renamed by another program is looked for
 * again under its base name (lib/maildir), then through the database's
 * current file names for the message.
 *
 * Flag changes and "+tag -tag" label changes are tag changes, written at
 * once; when the database's maildir.synchronize_flags is true the file is
 * then renamed to match (notmuch_message_tags_to_maildir_flags), and the
 * record follows the rename.  The T flag has no tag and cannot be changed
 * here.  Deletion (sync) removes the file and its name from the database.
 * New messages cannot be appended to a query.
 */
#include "mailbox.h"

#include <errno.h>
#include <fcntl.h>
#include <notmuch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"
#include "message.h"
#include "msg.h"
#include "xalloc.h"

#define NM_HEADER_MAX ((size_t)1 << 20)
#define NM_MESSAGE_MAX ((size_t)1 << 30)
#define NM_QUERY_MAX 4096
#define NM_TAGS_MAX 64        /* tags in one modify-labels change */

/* Message-ID of a record, by the arena offset of its name (offsets are
 * never reused, and stay through store_compact). */
struct idmap {
    uint32_t *key;            /* name offset; 0: empty slot */
    uint32_t *val;            /* offset into ids */
    uint32_t cap, n;
};

struct nm_priv {
    char *db_path;            /* NULL: from the configuration */
    char *query;
    unsigned long limit;      /* 0: none */
    bool sync_flags;          /* maildir.synchronize_flags */
    char **excludes;          /* search.exclude_tags */
    size_t n_excludes;
    struct buf ids;           /* NUL-terminated Message-IDs */
    struct idmap map;
    struct buf rd;            /* header block being read */
    struct buf tags;          /* joined tags */
    struct msg_limits lim;
};

static struct nm_priv *priv(struct mailbox *mb)
{
    return mb->priv;
}

/* ---- flags and tags ---------------------------------------------------------- */

struct tag_flag {
    unsigned flag;
    const char *tag;
};

/* Flags that are tags; MSG_SEEN is the absence of "unread". */
static const struct tag_flag tag_flags[] = {
    {MSG_FLAGGED, "flagged"}, {MSG_REPLIED, "replied"},
    {MSG_DRAFT, "draft"},     {MSG_PASSED, "passed"},
};

#define NM_TAG_FLAGS (MSG_SEEN | MSG_FLAGGED | MSG_REPLIED | MSG_DRAFT | MSG_PASSED)

/* The file part of a record's flags: T from the Maildir info, MSG_NEW when
 * the file is in a new/ directory. */
static unsigned file_flags(const char *path)
{
    const char *base = strrchr(path, '/');
    unsigned md = 0, f = 0;

    base = base != NULL ? base + 1 : path;
    if (maildir_info_parse(base, &md, NULL, NULL) == MAILDIR_INFO_V2 &&
        (md & MAILDIR_F_TRASHED))
        f |= MSG_TRASHED;
    if (base - path >= 5 && memcmp(base - 5, "/new/", 5) == 0)
        f |= MSG_NEW;
    return f;
}

/* Join the tags of nm into p->tags and return the flags they stand for. */
static unsigned read_tags(struct nm_priv *p, notmuch_message_t *nm)
{
    notmuch_tags_t *t;
    unsigned f = MSG_SEEN;

    buf_reset(&p->tags);
    for (t = notmuch_message_get_tags(nm); t != NULL && notmuch_tags_valid(t);
         notmuch_tags_move_to_next(t)) {
        const char *tag = notmuch_tags_get(t);

        if ((p->tags.len > 0 && buf_putc(&p->tags, ' ') != 0) || buf_puts(&p->tags, tag) != 0)
            die("mbox_notmuch: unbounded buffer refused an append");
        if (strcmp(tag, "unread") == 0)
            f &= ~MSG_SEEN;
        for (size_t i = 0; i < ARRAY_LEN(tag_flags); i++)
            if (strcmp(tag, tag_flags[i].tag) == 0)
                f |= tag_flags[i].flag;
    }
    if (t != NULL)
        notmuch_tags_destroy(t);
    return f;
}

/* ---- the Message-ID map ------------------------------------------------------- */

static uint32_t slot_of(uint32_t key, uint32_t cap)
{
    return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 40) & (cap - 1);
}

static void idmap_put(struct idmap *m, uint32_t key, uint32_t val);

static void idmap_grow(struct idmap *m)
{
    struct idmap old = *m;

    m->cap = old.cap ? old.cap * 2 : 256;
    m->key = xcalloc(m->cap, sizeof *m->key);
    m->val = xcalloc(m->cap, sizeof *m->val);
    m->n = 0;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.key[i] != 0)
            idmap_put(m, old.key[i], old.val[i]);
    free(old.key);
    free(old.val);
}

static void idmap_put(struct idmap *m, uint32_t key, uint32_t val)
{
    uint32_t j;

    if (m->cap == 0 || ((uint64_t)m->n + 1) * 2 > m->cap)
        idmap_grow(m);
    for (j = slot_of(key, m->cap); m->key[j] != 0 && m->key[j] != key; j = (j + 1) & (m->cap - 1))
        ;
    if (m->key[j] == 0)
        m->n++;
    m->key[j] = key;
    m->val[j] = val;
}

static bool idmap_get(const struct idmap *m, uint32_t key, uint32_t *val)
{
    if (m->cap == 0)
        return false;
    for (uint32_t j = slot_of(key, m->cap); m->key[j] != 0; j = (j + 1) & (m->cap - 1)) {
        if (m->key[j] == key) {
            *val = m->val[j];
            return true;
        }
    }
    return false;
}

static void idmap_reset(struct idmap *m)
{
    if (m->cap > 0)
        memset(m->key, 0, (size_t)m->cap * sizeof *m->key);
    m->n = 0;
}

/* Remember that record idx is the message id. */
static void remember_id(struct mailbox *mb, uint32_t idx, const char *id)
{
    struct nm_priv *p = priv(mb);
    uint32_t off = (uint32_t)p->ids.len;

    if (p->ids.len >= UINT32_MAX - strlen(id) - 1)
        die("mbox_notmuch: too many message ids");
    if (buf_append(&p->ids, id, strlen(id) + 1) != 0)
        die("mbox_notmuch: unbounded buffer refused an append");
    idmap_put(&p->map, store_get(&mb->store, idx)->name, off);
}

/* The Message-ID of record idx, or NULL. */
static const char *msg_id(struct mailbox *mb, uint32_t idx)
{
    struct nm_priv *p = priv(mb);
    uint32_t off;

    if (!idmap_get(&p->map, store_get(&mb->store, idx)->name, &off))
        return NULL;
    return p->ids.data + off;
}

/* Record idx is now at path (keeps its Message-ID). */
static int rename_record(struct mailbox *mb, uint32_t idx, const char *path, struct err *e)
{
    struct store *st = &mb->store;
    uint32_t off, old = store_get(st, idx)->name;
    bool known = idmap_get(&priv(mb)->map, old, &off);

    if (strcmp(store_str(st, old), path) == 0)
        return 0;
    if (store_set_name(st, idx, path, strlen(path), 0, e) != 0)
        return -1;
    if (known)
        idmap_put(&priv(mb)->map, store_get(st, idx)->name, off);
    return 0;
}

/* ---- the URL ------------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into a new string; NULL on a bad escape or an
 * encoded NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;

            if (n - i < 3) {
                free(out);
                return NULL;
            }
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static int parse_url(struct nm_priv *p, const char *url, struct err *e)
{
    const char *s = url + strlen(MAILBOX_NOTMUCH_PREFIX);
    const char *q = strchr(s, '?');
    size_t db_len = q != NULL ? (size_t)(q - s) : strlen(s);

    if (db_len > 0) {
        p->db_path = pct_decode(s, db_len);
        if (p->db_path == NULL)
            return err_set(e, ERR_INVAL, "bad %%-escape in the database path of %s", url);
    }
    while (q != NULL && *q != '\0') {
        const char *k = q + 1, *amp = strchr(k, '&'), *eq;
        size_t len = amp != NULL ? (size_t)(amp - k) : strlen(k);
        char *val;

        q = amp;
        if (len == 0)
            continue;
        eq = memchr(k, '=', len);
        if (eq == NULL)
            return err_set(e, ERR_INVAL, "%s: a parameter without '='", url);
        val = pct_decode(eq + 1, len - (size_t)(eq + 1 - k));
        if (val == NULL)
            return err_set(e, ERR_INVAL, "bad %%-escape in %s", url);
        if ((size_t)(eq - k) == 5 && memcmp(k, "query", 5) == 0) {
            free(p->query);
            p->query = val;
            continue;
        }
        if ((size_t)(eq - k) == 5 && memcmp(k, "limit", 5) == 0) {
            char *end;

            errno = 0;
            p->limit = strtoul(val, &end, 10);
            if (errno != 0 || end == val || *end != '\0' || val[0] == '-') {
                free(val);
                return err_set(e, ERR_INVAL, "%s: limit is not a number", url);
            }
            free(val);
            continue;
        }
        if ((size_t)(eq - k) == 4 && memcmp(k, "type", 4) == 0) {
            bool ok = strcmp(val, "messages") == 0;

            free(val);
            if (ok)
                continue;
            return err_set(e, ERR_UNSUPPORTED, "%s: only type=messages is supported", url);
        }
        free(val);
        return err_set(e, ERR_INVAL, "%s: unknown parameter %.*s", url, (int)(eq - k), k);
    }
    if (p->query == NULL || p->query[0] == '\0')
        return err_set(e, ERR_INVAL, "%s: no query (notmuch://[DBPATH]?query=...)", url);
    if (strlen(p->query) > NM_QUERY_MAX)
        return err_set(e, ERR_LIMIT, "query longer than %d bytes", NM_QUERY_MAX);
    return 0;
}

/* ---- the database ---------------------------------------------------------------- */

static int nm_fail(struct err *e, notmuch_status_t st, const char *what)
{
    enum err_code code = ERR_IO;

    if (st == NOTMUCH_STATUS_OUT_OF_MEMORY)
        die("mbox_notmuch: out of memory in libnotmuch");
    if (st == NOTMUCH_STATUS_READ_ONLY_DATABASE || st == NOTMUCH_STATUS_UNSUPPORTED_OPERATION)
        code = ERR_UNSUPPORTED;
    else if (st == NOTMUCH_STATUS_TAG_TOO_LONG || st == NOTMUCH_STATUS_BAD_QUERY_SYNTAX)
        code = ERR_INVAL;
    return err_set(e, code, "%s: %s", what, notmuch_status_to_string(st));
}

static void read_config(struct nm_priv *p, notmuch_database_t *db)
{
    notmuch_bool_t b = FALSE;
    notmuch_config_values_t *v;

    p->sync_flags = notmuch_config_get_bool(db, NOTMUCH_CONFIG_SYNC_MAILDIR_FLAGS, &b) ==
                        NOTMUCH_STATUS_SUCCESS && b;
    for (size_t i = 0; i < p->n_excludes; i++)
        free(p->excludes[i]);
    free(p->excludes);
    p->excludes = NULL;
    p->n_excludes = 0;
    for (v = notmuch_config_get_values(db, NOTMUCH_CONFIG_EXCLUDE_TAGS);
         v != NULL && notmuch_config_values_valid(v); notmuch_config_values_move_to_next(v)) {
        const char *tag = notmuch_config_values_get(v);

        if (tag == NULL || tag[0] == '\0')
            continue;
        p->excludes = xreallocarray(p->excludes, p->n_excludes + 1, sizeof *p->excludes);
        p->excludes[p->n_excludes++] = xstrdup(tag);
    }
    if (v != NULL)
        notmuch_config_values_destroy(v);
}

static int db_open(struct mailbox *mb, bool rw, notmuch_database_t **db, struct err *e)
{
    struct nm_priv *p = priv(mb);
    char *msg = NULL;
    notmuch_status_t st;

    st = notmuch_database_open_with_config(
        p->db_path, rw ? NOTMUCH_DATABASE_MODE_READ_WRITE : NOTMUCH_DATABASE_MODE_READ_ONLY,
        NULL, NULL, db, &msg);
    if (st == NOTMUCH_STATUS_NO_CONFIG && p->db_path != NULL) {
        /* An explicit database needs no configuration file. */
        free(msg);
        msg = NULL;
        st = notmuch_database_open_with_config(
            p->db_path, rw ? NOTMUCH_DATABASE_MODE_READ_WRITE : NOTMUCH_DATABASE_MODE_READ_ONLY,
            "", NULL, db, &msg);
    }
    if (st != NOTMUCH_STATUS_SUCCESS) {
        size_t n = msg != NULL ? strcspn(msg, "\n") : 0;

        if (st == NOTMUCH_STATUS_OUT_OF_MEMORY)
            die("mbox_notmuch: out of memory in libnotmuch");
        err_set(e, st == NOTMUCH_STATUS_NO_CONFIG ? ERR_NOTFOUND : ERR_IO,
                "cannot open the notmuch database%s%s: %.*s",
                p->db_path != NULL ? " " : "", p->db_path != NULL ? p->db_path : "",
                (int)(n > 0 ? n : strlen(notmuch_status_to_string(st))),
                n > 0 ? msg : notmuch_status_to_string(st));
        /* Another writer holds the lock: retrying later may work. */
        err_scope(e, ERR_SCOPE_BOX, st == NOTMUCH_STATUS_XAPIAN_EXCEPTION);
        free(msg);
        *db = NULL;
        return -1;
    }
    free(msg);
    read_config(p, *db);
    return 0;
}

/* Close, committing what a read-write open changed. */
static int db_close(notmuch_database_t *db, struct err *e)
{
    notmuch_status_t st = notmuch_database_destroy(db);

    if (st != NOTMUCH_STATUS_SUCCESS && e != NULL)
        return nm_fail(e, st, "closing the notmuch database");
    return 0;
}

/* ---- records --------------------------------------------------------------------- */

/* Read the header block of fd (up to and including the empty line, at most
 * NM_HEADER_MAX bytes) into out. */
static int read_header_fd(int fd, struct buf *out, struct err *e)
{
    buf_reset(out);
    for (;;) {
        char *dst = buf_reserve(out, 8192);
        const char *end;
        ssize_t r;

        if (dst == NULL)
            return err_set(e, ERR_LIMIT, "message header larger than the buffer allows");
        r = read(fd, dst, 8192);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return err_sys(e, "read");
        if (r == 0)
            return 0;
        buf_commit(out, (size_t)r);
        if (out->len >= 1 && out->data[0] == '\n') {
            buf_truncate(out, 1);
            return 0;
        }
        end = memmem(out->data, out->len, "\n\n", 2);
        if (end != NULL) {
            buf_truncate(out, (size_t)(end - out->data) + 2);
            return 0;
        }
        end = memmem(out->data, out->len, "\n\r\n", 3);
        if (end != NULL) {
            buf_truncate(out, (size_t)(end - out->data) + 3);
            return 0;
        }
        if (out->len >= NM_HEADER_MAX)
            return 0;   /* the parser takes what there is */
    }
}

/* Open a message file; when it is gone, look for its base name again in
 * new/ and cur/ of its Maildir.  *found gets the path opened (to free). */
static int open_file(const char *path, int *fd, char **found, struct err *e)
{
    const char *slash = strrchr(path, '/');
    struct maildir_folder *f = NULL;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    enum maildir_sub sub;
    char *folder;
    int rc;

    *found = NULL;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0) {
        *found = xstrdup(path);
        return 0;
    }
    if (errno != ENOENT)
        return err_sys(e, "cannot open %s", path);
    if (slash == NULL || slash - path < 4 ||
        (memcmp(slash - 4, "/new", 4) != 0 && memcmp(slash - 4, "/cur", 4) != 0))
        return err_set(e, ERR_NOTFOUND, "%s: no such file", path);
    sub = slash[-3] == 'n' ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR;
    folder = xstrndup(path, (size_t)(slash - 4 - path));
    rc = maildir_folder_open_path(folder, &f, e);
    if (rc == 0) {
        maildir_ref_set(&ref, sub, slash + 1);
        rc = maildir_open_message(f, &ref, fd, e);
        if (rc == 0)
            *found = xasprintf("%s/%s/%s", folder, ref.sub == MAILDIR_SUB_NEW ? "new" : "cur",
                               ref.name);
        maildir_ref_free(&ref);
        maildir_folder_close(f);
    }
    free(folder);
    return rc;
}

/* A path in a Maildir's new/ or cur/: the length of the Maildir's own path
 * and the base name (up to the info).  false for any other path. */
static bool maildir_parts(const char *path, size_t *folder_len, const char **base,
                          size_t *base_len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL || slash - path < 4 ||
        (memcmp(slash - 4, "/new", 4) != 0 && memcmp(slash - 4, "/cur", 4) != 0))
        return false;
    *folder_len = (size_t)(slash - 4 - path);
    *base = slash + 1;
    *base_len = strcspn(slash + 1, ":");
    return true;
}

/* The file name of nm to show: the one equal to want, else one in the same
 * Maildir with the same base name (renamed for its flags), else the first.
 * NULL when it has none.  The string lives as long as nm. */
static const char *pick_filename(notmuch_message_t *nm, const char *want)
{
    notmuch_filenames_t *fn = notmuch_message_get_filenames(nm);
    const char *best = NULL, *first = NULL, *wbase = NULL;
    size_t wfolder = 0, wblen = 0;
    bool in_md = want != NULL && maildir_parts(want, &wfolder, &wbase, &wblen);

    for (; fn != NULL && notmuch_filenames_valid(fn); notmuch_filenames_move_to_next(fn)) {
        const char *name = notmuch_filenames_get(fn), *nbase;
        size_t nfolder, nblen;

        if (first == NULL)
            first = name;
        if (want == NULL)
            break;
        if (strcmp(name, want) == 0) {
            best = name;
            break;
        }
        if (best == NULL && in_md && maildir_parts(name, &nfolder, &nbase, &nblen) &&
            nfolder == wfolder && memcmp(name, want, wfolder) == 0 && nblen == wblen &&
            memcmp(nbase, wbase, wblen) == 0)
            best = name;
    }
    if (fn != NULL)
        notmuch_filenames_destroy(fn);
    return best != NULL ? best : first;
}

/* Append a record for nm to the store. */
static int add_record(struct mailbox *mb, notmuch_message_t *nm, struct err *e)
{
    struct nm_priv *p = priv(mb);
    const char *path = pick_filename(nm, NULL);
    const char *id = notmuch_message_get_message_id(nm);
    struct message *m = NULL;
    struct store_new file;
    struct stat st;
    char *found = NULL;
    struct err fe;
    unsigned tf;
    uint32_t idx;
    int fd = -1, rc;

    if (path == NULL || id == NULL)
        return 0;   /* nothing to show: the database lost the file names */
    tf = read_tags(p, nm);
    memset(&file, 0, sizeof file);
    file.tags.p = p->tags.data;
    file.tags.n = p->tags.len;
    if (open_file(path, &fd, &found, &fe) == 0) {
        if (fstat(fd, &st) == 0) {
            file.size = (uint64_t)st.st_size;
            file.received = (int64_t)st.st_mtime;
        }
        rc = read_header_fd(fd, &p->rd, &fe);
        close(fd);
        if (rc == 0)
            rc = message_parse_headers(buf_cstr(&p->rd), p->rd.len, &p->lim, &m, &fe);
        if (rc == 0) {
            file.name.p = found;
            file.name.n = strlen(found);
            file.flags = tf | file_flags(found);
            file.sub = file.flags & MSG_NEW ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR;
            if (m->env.date_valid)
                (void)mailbox_date_tz(m->env.date_text, &file.tz);
            rc = store_add_envelope(&mb->store, &file, &m->env, &idx, e);
            message_free(m);
            free(found);
            if (rc == 0)
                remember_id(mb, idx, id);
            return rc;
        }
    }
    free(found);
    /* Unreadable: a record from what the database knows, and a warning. */
    if (!mb->has_warning) {
        mb->warning = fe;
        err_prefix(&mb->warning, "some messages could not be read");
        mb->has_warning = true;
    }
    {
        const char *from = notmuch_message_get_header(nm, "from");
        const char *subject = notmuch_message_get_header(nm, "subject");

        file.name.p = path;
        file.name.n = strlen(path);
        file.flags = tf | file_flags(path);
        file.sub = file.flags & MSG_NEW ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR;
        file.from.p = file.from_addr.p = from;
        file.from.n = file.from_addr.n = from != NULL ? strlen(from) : 0;
        file.subject.p = subject;
        file.subject.n = subject != NULL ? strlen(subject) : 0;
        file.date = (int64_t)notmuch_message_get_date(nm);
        rc = store_add(&mb->store, &file, &idx, e);
    }
    if (rc == 0)
        remember_id(mb, idx, id);
    return rc;
}

/* Bring record idx up to date with nm: file name, tags, flags (session
 * bits kept).  *changed is set when anything differed. */
static int refresh_record(struct mailbox *mb, uint32_t idx, notmuch_message_t *nm,
                          bool *changed, struct err *e)
{
    struct nm_priv *p = priv(mb);
    struct store *st = &mb->store;
    struct store_msg *m = store_get_mut(st, idx);
    const char *path = pick_filename(nm, store_str(st, m->name));
    unsigned tf = read_tags(p, nm), fl;

    if (path != NULL && strcmp(path, store_str(st, m->name)) != 0) {
        if (rename_record(mb, idx, path, e) != 0)
            return -1;
        *changed = true;
    }
    m = store_get_mut(st, idx);
    if (strcmp(buf_cstr(&p->tags), store_str(st, m->tags)) != 0) {
        if (store_set_tags(st, idx, p->tags.data, p->tags.len, e) != 0)
            return -1;
        *changed = true;
    }
    m = store_get_mut(st, idx);
    fl = tf | file_flags(store_str(st, m->name)) | (m->flags & MAILBOX_SESSION_FLAGS);
    if (fl != m->flags) {
        m->flags = (uint16_t)fl;
        *changed = true;
    }
    m->sub = (uint8_t)(fl & MSG_NEW ? MAILDIR_SUB_NEW : MAILDIR_SUB_CUR);
    return 0;
}

/* Run the query; the caller destroys *q (which owns *msgs). */
static int run_query(struct mailbox *mb, notmuch_database_t *db, notmuch_query_t **q,
                     notmuch_messages_t **msgs, struct err *e)
{
    struct nm_priv *p = priv(mb);
    notmuch_status_t st;

    *msgs = NULL;
    *q = notmuch_query_create(db, p->query);
    if (*q == NULL)
        die("mbox_notmuch: out of memory in libnotmuch");
    for (size_t i = 0; i < p->n_excludes; i++)
        (void)notmuch_query_add_tag_exclude(*q, p->excludes[i]);
    notmuch_query_set_omit_excluded(*q, NOTMUCH_EXCLUDE_TRUE);
    notmuch_query_set_sort(*q, NOTMUCH_SORT_OLDEST_FIRST);
    st = notmuch_query_search_messages(*q, msgs);
    if (st != NOTMUCH_STATUS_SUCCESS) {
        const char *why = notmuch_database_status_string(db);

        if (why != NULL && why[0] != '\0')
            err_set(e, ERR_IO, "notmuch query: %.*s", (int)strcspn(why, "\n"), why);
        else
            nm_fail(e, st, "notmuch query");
        if (e != NULL && st == NOTMUCH_STATUS_XAPIAN_EXCEPTION)
            e->code = ERR_INVAL;   /* what a bad query gives */
        err_scope(e, ERR_SCOPE_BOX, false);
        return -1;
    }
    return 0;
}

/* ---- open / close / load / check ---------------------------------------------------- */

static void nm_close(struct mailbox *mb)
{
    struct nm_priv *p = priv(mb);

    if (p == NULL)
        return;
    free(p->db_path);
    free(p->query);
    for (size_t i = 0; i < p->n_excludes; i++)
        free(p->excludes[i]);
    free(p->excludes);
    buf_free(&p->ids);
    free(p->map.key);
    free(p->map.val);
    buf_free(&p->rd);
    buf_free(&p->tags);
    free(p);
    mb->priv = NULL;
}

static int nm_open(struct mailbox *mb, const char *path, unsigned flags, struct err *e)
{
    struct nm_priv *p = XNEW(struct nm_priv);
    notmuch_database_t *db;

    (void)flags;
    mb->priv = p;
    buf_init(&p->ids, 0);
    buf_init(&p->rd, NM_HEADER_MAX + 8192);
    buf_init(&p->tags, 0);
    message_limits_default(&p->lim);
    p->lim.max_header_bytes = NM_HEADER_MAX;
    if (parse_url(p, path, e) != 0) {
        err_scope(e, ERR_SCOPE_BOX, false);
        nm_close(mb);
        return -1;
    }
    /* Open once now so that a wrong path or configuration shows at once. */
    if (db_open(mb, false, &db, e) != 0) {
        nm_close(mb);
        return -1;
    }
    (void)db_close(db, NULL);
    free(mb->name);
    mb->name = xstrdup(p->query);
    return 0;
}

static int nm_load(struct mailbox *mb, mailbox_progress_fn progress, void *ctx, struct err *e)
{
    struct nm_priv *p = priv(mb);
    notmuch_database_t *db;
    notmuch_query_t *q = NULL;
    notmuch_messages_t *msgs;
    unsigned total = 0;
    size_t done = 0;
    int rc = 0;

    memset(&mb->stats, 0, sizeof mb->stats);
    store_reset(&mb->store);
    buf_reset(&p->ids);
    idmap_reset(&p->map);
    mb->has_warning = false;
    if (db_open(mb, false, &db, e) != 0)
        return -1;
    if (run_query(mb, db, &q, &msgs, e) != 0) {
        notmuch_query_destroy(q);
        (void)db_close(db, NULL);
        return -1;
    }
    if (notmuch_query_count_messages(q, &total) != NOTMUCH_STATUS_SUCCESS)
        total = 0;
    if (p->limit != 0 && total > p->limit)
        total = (unsigned)p->limit;
    store_reserve(&mb->store, total);
    for (; notmuch_messages_valid(msgs); notmuch_messages_move_to_next(msgs)) {
        notmuch_message_t *nm = notmuch_messages_get(msgs);

        if (p->limit != 0 && done >= p->limit) {
            notmuch_message_destroy(nm);
            break;
        }
        rc = add_record(mb, nm, e);
        notmuch_message_destroy(nm);
        if (rc != 0)
            break;
        done++;
        mb->stats.cache_misses++;
        if (progress != NULL && done % MAILBOX_PROGRESS_STEP == 0)
            progress(ctx, done, total > done ? total : done);
    }
    notmuch_query_destroy(q);
    (void)db_close(db, NULL);
    if (rc != 0) {
        err_scope(e, ERR_SCOPE_BOX, false);
        store_reset(&mb->store);
        return -1;
    }
    if (progress != NULL)
        progress(ctx, done, done);
    return 0;
}

/* Records by Message-ID, for check. */
struct id_index {
    uint32_t *slot;           /* record + 1; 0: empty */
    uint32_t cap;
};

static uint32_t id_slot(const char *id, uint32_t cap)
{
    return (uint32_t)store_str_hash(id, strlen(id)) & (cap - 1);
}

static int nm_check(struct mailbox *mb, bool *changed, struct err *e)
{
    struct nm_priv *p = priv(mb);
    struct store *st = &mb->store;
    uint32_t n_before = store_count(st);
    struct id_index ix;
    notmuch_database_t *db;
    notmuch_query_t *q = NULL;
    notmuch_messages_t *msgs;
    uint8_t *seen;
    size_t done = 0;
    int rc = 0;

    *changed = false;
    ix.cap = 64;
    while (ix.cap < (uint64_t)n_before * 2 + 2)
        ix.cap *= 2;
    ix.slot = xcalloc(ix.cap, sizeof *ix.slot);
    seen = xcalloc(n_before > 0 ? n_before : 1, 1);
    for (uint32_t i = 0; i < n_before; i++) {
        const struct store_msg *m = store_get(st, i);
        const char *id;

        if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE) ||
            (id = msg_id(mb, i)) == NULL)
            continue;
        for (uint32_t j = id_slot(id, ix.cap);; j = (j + 1) & (ix.cap - 1)) {
            if (ix.slot[j] == 0) {
                ix.slot[j] = i + 1;
                break;
            }
        }
    }
    if (db_open(mb, false, &db, e) != 0) {
        free(ix.slot);
        free(seen);
        return -1;
    }
    if (run_query(mb, db, &q, &msgs, e) != 0)
        rc = -1;
    for (; rc == 0 && notmuch_messages_valid(msgs); notmuch_messages_move_to_next(msgs)) {
        notmuch_message_t *nm = notmuch_messages_get(msgs);
        const char *id = notmuch_message_get_message_id(nm);
        uint32_t found = STORE_NONE;

        if (p->limit != 0 && done >= p->limit) {
            notmuch_message_destroy(nm);
            break;
        }
        done++;
        for (uint32_t j = id != NULL ? id_slot(id, ix.cap) : 0; id != NULL && ix.slot[j] != 0;
             j = (j + 1) & (ix.cap - 1)) {
            const char *known = msg_id(mb, ix.slot[j] - 1);

            if (known != NULL && strcmp(known, id) == 0) {
                found = ix.slot[j] - 1;
                break;
            }
        }
        if (found != STORE_NONE) {
            seen[found] = 1;
            rc = refresh_record(mb, found, nm, changed, e);
        } else {
            uint32_t before = store_count(st);

            rc = add_record(mb, nm, e);
            if (store_count(st) != before)
                *changed = true;
        }
        notmuch_message_destroy(nm);
    }
    notmuch_query_destroy(q);
    (void)db_close(db, NULL);
    for (uint32_t i = 0; rc == 0 && i < n_before; i++) {
        struct store_msg *m = store_get_mut(st, i);

        if (!seen[i] && (m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE)) {
            m->bits |= STORE_B_GONE;
            *changed = true;
        }
    }
    free(ix.slot);
    free(seen);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------- */

static int check_msg(struct mailbox *mb, uint32_t idx, struct err *e)
{
    const struct store_msg *m;

    if (idx >= store_count(&mb->store))
        return err_set(e, ERR_NOTFOUND, "no message %u", idx);
    m = store_get(&mb->store, idx);
    if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE))
        return err_set(e, ERR_NOTFOUND, "message %u is gone", idx);
    return 0;
}

/* Open the file of record idx wherever it is now: where the record says,
 * renamed in its Maildir, or under a file name the database has for the
 * message.  The record follows. */
static int open_msg(struct mailbox *mb, uint32_t idx, int *fd, struct err *e)
{
    struct store *st = &mb->store;
    const char *id = msg_id(mb, idx);
    notmuch_database_t *db;
    notmuch_message_t *nm = NULL;
    notmuch_filenames_t *fn;
    char *found = NULL;
    int rc;

    rc = open_file(store_str(st, store_get(st, idx)->name), fd, &found, e);
    if (rc != 0 && (e == NULL || e->code == ERR_NOTFOUND) && id != NULL &&
        db_open(mb, false, &db, NULL) == 0) {
        if (notmuch_database_find_message(db, id, &nm) == NOTMUCH_STATUS_SUCCESS && nm != NULL) {
            for (fn = notmuch_message_get_filenames(nm);
                 rc != 0 && fn != NULL && notmuch_filenames_valid(fn);
                 notmuch_filenames_move_to_next(fn)) {
                free(found);
                rc = open_file(notmuch_filenames_get(fn), fd, &found, NULL);
            }
            notmuch_message_destroy(nm);
        }
        (void)db_close(db, NULL);
        if (rc != 0)
            err_set(e, ERR_NOTFOUND, "%s: the message's file is gone",
                    store_str(st, store_get(st, idx)->name));
    }
    if (rc == 0 && rename_record(mb, idx, found, e) != 0) {
        close(*fd);
        rc = -1;
    }
    free(found);
    if (rc != 0)
        err_scope(e, ERR_SCOPE_MSG, false);
    return rc;
}

static int nm_read(struct mailbox *mb, uint32_t idx, struct buf *out, bool headers_only,
                   struct err *e)
{
    struct buf hdr;
    int fd, rc = 0;

    if (check_msg(mb, idx, e) != 0 || open_msg(mb, idx, &fd, e) != 0)
        return -1;
    if (headers_only) {
        buf_init(&hdr, NM_HEADER_MAX + 8192);
        rc = read_header_fd(fd, &hdr, e);
        if (rc == 0 && hdr.len > 0 && buf_append(out, hdr.data, hdr.len) != 0)
            rc = err_set(e, ERR_LIMIT, "message header larger than the buffer allows");
        buf_free(&hdr);
    } else {
        size_t total = 0;

        for (;;) {
            char *dst = buf_reserve(out, 65536);
            ssize_t r;

            if (dst == NULL || total >= NM_MESSAGE_MAX) {
                rc = err_set(e, ERR_LIMIT, "message larger than the buffer allows");
                break;
            }
            r = read(fd, dst, 65536);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = err_sys(e, "read");
                break;
            }
            if (r == 0)
                break;
            buf_commit(out, (size_t)r);
            total += (size_t)r;
        }
    }
    close(fd);
    return rc;
}

static int nm_read_message(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return nm_read(mb, idx, out, false, e);
}

static int nm_read_headers(struct mailbox *mb, uint32_t idx, struct buf *out, struct err *e)
{
    return nm_read(mb, idx, out, true, e);
}

/* ---- writing -------------------------------------------------------------------------- */

static int refuse_readonly(struct mailbox *mb, struct err *e)
{
    err_set(e, ERR_UNSUPPORTED, "%s is read-only", mb->name);
    err_scope(e, ERR_SCOPE_BOX, false);
    return -1;
}

/* Find record idx's message in an open database (NULL *nm: gone). */
static int find_msg(struct mailbox *mb, notmuch_database_t *db, uint32_t idx,
                    notmuch_message_t **nm, struct err *e)
{
    const char *id = msg_id(mb, idx);
    notmuch_status_t st;

    *nm = NULL;
    if (id == NULL)
        return err_set(e, ERR_NOTFOUND, "message %u has no Message-ID in the index", idx);
    st = notmuch_database_find_message(db, id, nm);
    if (st != NOTMUCH_STATUS_SUCCESS)
        return nm_fail(e, st, "notmuch_database_find_message");
    if (*nm == NULL)
        return err_set(e, ERR_NOTFOUND, "the message is no longer in the notmuch database");
    return 0;
}

/* Add the tags add[0..na) and remove rm[0..nr) from record idx's message
 * at once, then (maildir.synchronize_flags) rename its files to match; the
 * record follows. */
static int apply_tags(struct mailbox *mb, uint32_t idx, const char *const *add, size_t na,
                      const char *const *rm, size_t nr, struct err *e)
{
    struct nm_priv *p = priv(mb);
    notmuch_database_t *db;
    notmuch_message_t *nm = NULL;
    notmuch_status_t st = NOTMUCH_STATUS_SUCCESS;
    bool changed = false;
    int rc;

    if (mb->readonly)
        return refuse_readonly(mb, e);
    if (db_open(mb, true, &db, e) != 0)
        return -1;
    rc = find_msg(mb, db, idx, &nm, e);
    if (rc == 0)
        st = notmuch_message_freeze(nm);
    for (size_t i = 0; rc == 0 && st == NOTMUCH_STATUS_SUCCESS && i < na; i++)
        st = notmuch_message_add_tag(nm, add[i]);
    for (size_t i = 0; rc == 0 && st == NOTMUCH_STATUS_SUCCESS && i < nr; i++)
        st = notmuch_message_remove_tag(nm, rm[i]);
    if (rc == 0 && st == NOTMUCH_STATUS_SUCCESS)
        st = notmuch_message_thaw(nm);
    if (rc == 0 && st != NOTMUCH_STATUS_SUCCESS)
        rc = nm_fail(e, st, "changing tags");
    if (rc == 0 && p->sync_flags) {
        st = notmuch_message_tags_to_maildir_flags(nm);
        if (st != NOTMUCH_STATUS_SUCCESS)
            rc = nm_fail(e, st, "renaming for the tags");
    }
    if (rc == 0)
        rc = refresh_record(mb, idx, nm, &changed, e);
    if (nm != NULL)
        notmuch_message_destroy(nm);
    /* A failure before the thaw leaves nothing changed: the frozen changes
     * are dropped with the message. */
    if (db_close(db, rc == 0 ? e : NULL) != 0)
        rc = -1;
    if (rc != 0)
        err_scope(e, ERR_SCOPE_MSG, e != NULL && e->temporary);
    return rc;
}

static int nm_set_flags(struct mailbox *mb, uint32_t idx, unsigned flags, struct err *e)
{
    const char *add[ARRAY_LEN(tag_flags) + 1], *rm[ARRAY_LEN(tag_flags) + 1];
    size_t na = 0, nr = 0;
    struct store_msg *m;
    unsigned old, diff;
    int rc;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    m = store_get_mut(&mb->store, idx);
    old = m->flags;
    diff = (old ^ flags) & ~MAILBOX_SESSION_FLAGS;
    if (diff == 0) {
        m->flags = (uint16_t)((old & ~MAILBOX_SESSION_FLAGS) | (flags & MAILBOX_SESSION_FLAGS));
        return 0;
    }
    if (diff & MSG_TRASHED) {
        err_set(e, ERR_UNSUPPORTED, "the trashed flag has no notmuch tag");
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    if (diff & MSG_SEEN) {
        if (flags & MSG_SEEN)
            rm[nr++] = "unread";
        else
            add[na++] = "unread";
    }
    for (size_t i = 0; i < ARRAY_LEN(tag_flags); i++) {
        if (!(diff & tag_flags[i].flag))
            continue;
        if (flags & tag_flags[i].flag)
            add[na++] = tag_flags[i].tag;
        else
            rm[nr++] = tag_flags[i].tag;
    }
    if (na + nr > 0 || priv(mb)->sync_flags) {
        rc = apply_tags(mb, idx, add, na, rm, nr, e);
        if (rc != 0)
            return -1;
    } else if (mb->readonly) {
        return refuse_readonly(mb, e);
    }
    m = store_get_mut(&mb->store, idx);
    /* Without synchronization a file in new/ stays there: the record still
     * leaves the "new" state it was asked to leave. */
    if ((diff & MSG_NEW) && !(flags & MSG_NEW))
        m->flags = (uint16_t)(m->flags & ~MSG_NEW);
    m->flags = (uint16_t)((m->flags & ~MAILBOX_SESSION_FLAGS) | (flags & MAILBOX_SESSION_FLAGS));
    return 0;
}

static int nm_modify_tags(struct mailbox *mb, uint32_t idx, const char *changes, struct err *e)
{
    const char *add[NM_TAGS_MAX], *rm[NM_TAGS_MAX];
    size_t na = 0, nr = 0;
    char *copy, *save = NULL;
    int rc = 0;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    if (changes == NULL)
        changes = "";
    copy = xstrdup(changes);
    for (char *w = strtok_r(copy, " \t\r\n", &save); w != NULL;
         w = strtok_r(NULL, " \t\r\n", &save)) {
        bool remove = w[0] == '-';

        if (w[0] == '+' || w[0] == '-')
            w++;
        if (w[0] == '\0') {
            rc = err_set(e, ERR_INVAL, "an empty tag in \"%s\"", changes);
            break;
        }
        if (strlen(w) > NOTMUCH_TAG_MAX) {
            rc = err_set(e, ERR_INVAL, "a tag longer than %d bytes", NOTMUCH_TAG_MAX);
            break;
        }
        if (na + nr >= NM_TAGS_MAX) {
            rc = err_set(e, ERR_LIMIT, "more than %d tag changes at once", NM_TAGS_MAX);
            break;
        }
        if (remove)
            rm[nr++] = w;
        else
            add[na++] = w;
    }
    if (rc == 0 && na + nr == 0)
        rc = err_set(e, ERR_INVAL, "no tag changes (\"+tag -tag ...\")");
    if (rc == 0)
        rc = apply_tags(mb, idx, add, na, rm, nr, e);
    else
        err_scope(e, ERR_SCOPE_MSG, false);
    free(copy);
    return rc;
}

/* Remove record idx's file and its name from the database (db open
 * read-write).  An already missing file counts as removed. */
static int remove_msg(struct mailbox *mb, notmuch_database_t *db, uint32_t idx, struct err *e)
{
    struct store *st = &mb->store;
    struct store_msg *m;
    notmuch_status_t s;
    const char *path;
    int fd;

    if (open_msg(mb, idx, &fd, e) != 0) {
        if (e != NULL && e->code == ERR_NOTFOUND) {
            store_get_mut(st, idx)->bits |= STORE_B_GONE;
            return 0;
        }
        return -1;
    }
    close(fd);
    path = store_str(st, store_get(st, idx)->name);
    if (unlink(path) != 0 && errno != ENOENT)
        return err_sys(e, "cannot delete %s", path);
    m = store_get_mut(st, idx);
    m->bits |= STORE_B_GONE;
    s = notmuch_database_remove_message(db, path);
    if (s != NOTMUCH_STATUS_SUCCESS && s != NOTMUCH_STATUS_DUPLICATE_MESSAGE_ID &&
        s != NOTMUCH_STATUS_FILE_ERROR) {
        /* The file is gone; `notmuch new` will forget it. */
        (void)nm_fail(e, s, "notmuch_database_remove_message");
    }
    return 0;
}

static int nm_sync(struct mailbox *mb, struct mailbox_sync_errs *errs, struct err *e)
{
    struct store *st = &mb->store;
    notmuch_database_t *db = NULL;
    size_t failed = 0;

    for (uint32_t i = 0; i < store_count(st); i++) {
        const struct store_msg *m = store_get(st, i);
        struct err me;

        if (!(m->bits & STORE_B_FILLED) || (m->bits & STORE_B_GONE) ||
            !(m->flags & MSG_DELETED))
            continue;
        if (mb->readonly) {
            refuse_readonly(mb, &me);
        } else if (db == NULL && db_open(mb, true, &db, &me) != 0) {
            db = NULL;
        } else if (remove_msg(mb, db, i, &me) == 0) {
            continue;
        }
        err_scope(&me, ERR_SCOPE_MSG, me.temporary);
        mailbox_sync_errs_add(errs, i, &me);
        failed++;
    }
    if (db != NULL && db_close(db, failed == 0 ? e : NULL) != 0 && failed == 0)
        return -1;
    if (failed > 0) {
        err_set(e, ERR_IO, "%zu message%s could not be deleted", failed,
                failed == 1 ? "" : "s");
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    return 0;
}

static unsigned msg_to_md(unsigned f)
{
    return (f & MSG_DRAFT ? MAILDIR_F_DRAFT : 0u) | (f & MSG_FLAGGED ? MAILDIR_F_FLAGGED : 0u) |
           (f & MSG_PASSED ? MAILDIR_F_PASSED : 0u) | (f & MSG_REPLIED ? MAILDIR_F_REPLIED : 0u) |
           (f & MSG_SEEN ? MAILDIR_F_SEEN : 0u) | (f & MSG_TRASHED ? MAILDIR_F_TRASHED : 0u);
}

static int nm_copy(struct mailbox *mb, uint32_t idx, const char *dest_folder, bool move,
                   struct err *e)
{
    struct maildir_folder *df = NULL;
    struct maildir_deliver_opts opts;
    notmuch_database_t *db;
    struct buf data;
    unsigned fl;
    int rc;

    if (check_msg(mb, idx, e) != 0)
        return -1;
    if (move && mb->readonly)
        return refuse_readonly(mb, e);
    if (maildir_folder_open_path(dest_folder, &df, e) != 0)
        return -1;
    buf_init(&data, 0);
    rc = nm_read(mb, idx, &data, false, e);
    if (rc == 0) {
        fl = store_get(&mb->store, idx)->flags;
        memset(&opts, 0, sizeof opts);
        opts.flags = msg_to_md(fl);
        opts.to_cur = opts.flags != 0 || !(fl & MSG_NEW);
        rc = maildir_deliver(df, data.data != NULL ? data.data : "", data.len, &opts, NULL, e);
    }
    buf_free(&data);
    maildir_folder_close(df);
    /* The copy is durable: only now may the original go. */
    if (rc == 0 && move) {
        if (db_open(mb, true, &db, e) != 0)
            return -1;
        rc = remove_msg(mb, db, idx, e);
        if (db_close(db, rc == 0 ? e : NULL) != 0)
            rc = -1;
    }
    return rc;
}

static int nm_append(struct mailbox *mb, const void *data, size_t len, unsigned flags,
                     struct err *e)
{
    (void)data;
    (void)len;
    (void)flags;
    err_set(e, ERR_UNSUPPORTED, "%s: a notmuch query cannot take new messages", mb->name);
    err_scope(e, ERR_SCOPE_BOX, false);
    return -1;
}

const struct mailbox_ops mbox_notmuch_ops = {
    .name = "notmuch",
    .open = nm_open,
    .load = nm_load,
    .check = nm_check,
    .read_message = nm_read_message,
    .read_headers = nm_read_headers,
    .set_flags = nm_set_flags,
    .sync = nm_sync,
    .copy = nm_copy,
    .append = nm_append,
    .modify_tags = nm_modify_tags,
    .close = nm_close,
};
