/* imap_folders: LIST/LSUB/STATUS read and parsed with limits, folder
 * operations, APPEND, and recalling a message by UID. */
#include "imap_folders.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libetpan/libetpan.h>

#include "mailbox.h"
#include "msg.h"
#include "mutf7.h"
#include "sanitize.h"
#include "xalloc.h"

#define RESP_MAX ((size_t)64 << 10)     /* bytes of one response we keep */
#define SERVER_TEXT_MAX 200

/* ---- names ---------------------------------------------------------------- */

/* Whether a wire name is acceptable: not empty, not too long, no control
 * character. */
static bool wire_ok(const char *s, size_t n)
{
    if (n == 0 || n > IMAP_FOLDER_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch < 0x20 || ch == 0x7f)
            return false;
    }
    return true;
}

static int check_wire(const char *wire, struct err *e)
{
    if (wire == NULL || !wire_ok(wire, strlen(wire)))
        return err_set(e, ERR_INVAL, "not a usable IMAP folder name (empty, longer than %d "
                                     "bytes, or with a control character)", IMAP_FOLDER_MAX);
    return 0;
}

char *imap_folder_display(const char *wire)
{
    struct buf b;
    struct err e;
    char *out;

    buf_init(&b, 4 * IMAP_FOLDER_MAX + 16);
    if (mutf7_to_utf8(wire, strlen(wire), &b, &e) != 0) {
        buf_free(&b);
        return sanitize_term_dup(wire, strlen(wire), 0);
    }
    out = sanitize_term_dup(b.data != NULL ? b.data : "", b.len, 0);
    buf_free(&b);
    return out;
}

char *imap_folder_wire(const char *utf8, struct err *e)
{
    struct buf b;
    char *out;

    if (utf8 == NULL || utf8[0] == '\0') {
        err_set(e, ERR_INVAL, "empty folder name");
        return NULL;
    }
    for (const char *q = utf8; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            err_set(e, ERR_INVAL, "control character in a folder name");
            return NULL;
        }
    buf_init(&b, 8 * IMAP_FOLDER_MAX);
    if (mutf7_from_utf8(utf8, strlen(utf8), &b, e) != 0) {
        buf_free(&b);
        if (e != NULL)
            err_prefix(e, "folder name");
        return NULL;
    }
    if (b.len > IMAP_FOLDER_MAX) {
        buf_free(&b);
        err_set(e, ERR_INVAL, "folder name longer than %d bytes", IMAP_FOLDER_MAX);
        return NULL;
    }
    out = buf_steal(&b, NULL);
    return out;
}

char *imap_folder_url(const struct imap_url *base, const char *wire)
{
    static const char keep[] = "-._~!$'()*+,;=:@&/";
    char *acct = imap_url_account(base, base->user);
    struct buf b = BUF_INIT;
    size_t n = strlen(wire);

    if (buf_puts(&b, acct) != 0)
        die("imap_folders: unbounded buffer refused an append");
    free(acct);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)wire[i];
        bool plain = ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || (ch != '\0' && strchr(keep, ch) != NULL)) &&
                     !(ch == '/' && (i + 1 == n || i == 0));
        int rc = plain ? buf_putc(&b, (char)ch) : buf_printf(&b, "%%%02X", ch);

        if (rc != 0)
            die("imap_folders: unbounded buffer refused an append");
    }
    return buf_steal(&b, NULL);
}

int imap_folders_connect(const char *url, struct imap_url *u, struct imap_conn **out,
                         struct err *e)
{
    *out = NULL;
    if (imap_url_parse(url, u, e) != 0)
        return -1;
    if (imap_connect(u, imap_settings_get(), out, e) != 0) {
        imap_url_free(u);
        return -1;
    }
    return 0;
}

/* ---- the folder list -------------------------------------------------------- */

void imap_folder_list_free(struct imap_folder_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].wire);
        free(l->v[i].display);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

const struct imap_folder *imap_folder_find(const struct imap_folder_list *l, const char *wire)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].wire, wire) == 0)
            return &l->v[i];
    return NULL;
}

const struct imap_folder *imap_folder_special(const struct imap_folder_list *l, unsigned su)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].special & su)
            return &l->v[i];
    return NULL;
}

static struct imap_folder *find_mut(struct imap_folder_list *l, const char *wire)
{
    return (struct imap_folder *)(uintptr_t)imap_folder_find(l, wire);
}

/* ---- reading responses ourselves ------------------------------------------- */

/* One response: its bytes as they came (line, literal bytes, the rest of
 * the line, ...), unless it was too large to keep (skip). */
struct resp {
    struct buf b;
    bool skip;
};

static int stream_fail(struct imap_conn *c, const char *what, struct err *e)
{
    imap_mark_broken(c);
    return imap_check(c, MAILIMAP_ERROR_STREAM, what, e);
}

/* The literal size announced at the end of line[0..n) ("{N}\r\n" or
 * "{N+}\r\n"), or -1. */
static long long literal_at_end(const char *line, size_t n)
{
    size_t i;
    long long v = 0;

    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (n < 3 || line[n - 1] != '}')
        return -1;
    i = n - 1;
    if (i > 0 && line[i - 1] == '+')
        i--;
    size_t end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || line[i - 1] != '{' || end - i > 12)
        return -1;
    for (size_t k = i; k < end; k++)
        v = v * 10 + (line[k] - '0');
    return v;
}

static int read_response(struct imap_conn *c, MMAPString *line, struct resp *r,
                         const char *what, struct err *e)
{
    mailstream *st = imap_session(c)->imap_stream;

    buf_reset(&r->b);
    r->skip = false;
    for (;;) {
        long long lit;

        if (mailstream_read_line(st, line) == NULL)
            return stream_fail(c, what, e);
        if (!r->skip && buf_append(&r->b, line->str, line->len) != 0)
            r->skip = true;
        lit = literal_at_end(line->str, line->len);
        if (lit < 0)
            return 0;
        if ((size_t)lit > IMAP_FOLDERS_LITERAL_MAX)
            r->skip = true;
        while (lit > 0) {
            char chunk[4096];
            size_t want = (size_t)lit < sizeof chunk ? (size_t)lit : sizeof chunk;
            ssize_t got = mailstream_read(st, chunk, want);

            if (got <= 0)
                return stream_fail(c, what, e);
            if (!r->skip && buf_append(&r->b, chunk, (size_t)got) != 0)
                r->skip = true;
            lit -= got;
        }
    }
}

static int send_command(struct imap_conn *c, const char *cmd, char *tag, size_t tagsize,
                        const char *what, struct err *e)
{
    mailimap *s = imap_session(c);
    size_t n = strlen(cmd);

    if (!imap_usable(c))
        return err_set(e, ERR_NET, "%s: not connected", what);
    if (mailimap_send_current_tag(s) != MAILIMAP_NO_ERROR ||
        mailstream_write(s->imap_stream, cmd, n) != (ssize_t)n ||
        mailstream_write(s->imap_stream, "\r\n", 2) != 2 || mailstream_flush(s->imap_stream) != 0)
        return stream_fail(c, what, e);
    snprintf(tag, tagsize, "%d", s->imap_tag);
    return 0;
}

typedef void (*untagged_fn)(void *ctx, const char *p, size_t n, bool skip);

/* Run cmd and hand every untagged response to fn until the tagged one. */
static int run_command(struct imap_conn *c, const char *cmd, const char *what, untagged_fn fn,
                       void *ctx, struct err *e)
{
    char tag[24];
    MMAPString *line;
    struct resp r;
    size_t tl;
    int rc = 0;

    if (send_command(c, cmd, tag, sizeof tag, what, e) != 0)
        return -1;
    tl = strlen(tag);
    line = mmap_string_new("");
    if (line == NULL)
        die("out of memory");
    buf_init(&r.b, RESP_MAX);
    for (;;) {
        const char *p;
        size_t n;

        if (read_response(c, line, &r, what, e) != 0) {
            rc = -1;
            break;
        }
        p = r.b.data != NULL ? r.b.data : "";
        n = r.b.len;
        if (n >= 2 && p[0] == '*' && p[1] == ' ') {
            if (n >= 5 && strncasecmp(p + 2, "BYE", 3) == 0)
                imap_mark_broken(c);   /* the server is going away */
            fn(ctx, p + 2, n - 2, r.skip);
            continue;
        }
        if (n >= tl + 1 && memcmp(p, tag, tl) == 0 && p[tl] == ' ') {
            const char *st = p + tl + 1;
            size_t sn = n - tl - 1;

            if (sn >= 2 && strncasecmp(st, "OK", 2) == 0)
                break;
            {
                struct buf t;

                while (sn > 0 && (st[sn - 1] == '\n' || st[sn - 1] == '\r'))
                    sn--;
                buf_init(&t, SERVER_TEXT_MAX);
                (void)sanitize_log(&t, st, sn);
                rc = err_set(e, ERR_PROTO, "%s failed (%s)", what, buf_cstr(&t));
                err_scope(e, ERR_SCOPE_BOX, false);
                buf_free(&t);
            }
            break;
        }
        /* A continuation request or another tag: out of step. */
        imap_mark_broken(c);
        rc = err_set(e, ERR_PROTO, "%s: unexpected reply from the server", what);
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
        break;
    }
    buf_free(&r.b);
    mmap_string_free(line);
    return rc;
}

/* ---- parsing LIST, LSUB and STATUS ------------------------------------------ */

struct cur {
    const char *p, *end;
};

static bool at_end(const struct cur *k)
{
    return k->p >= k->end || *k->p == '\r' || *k->p == '\n';
}

static bool eat(struct cur *k, char ch)
{
    if (k->p < k->end && *k->p == ch) {
        k->p++;
        return true;
    }
    return false;
}

static bool atom_char(unsigned char ch)
{
    return ch > 0x20 && ch != 0x7f && ch != '(' && ch != ')' && ch != '{' && ch != '"';
}

/* An astring or NIL (nil set) into out (NUL-terminated, may hold NULs:
 * *len says).  false when malformed. */
static bool parse_string(struct cur *k, struct buf *out, bool *nil)
{
    buf_reset(out);
    *nil = false;
    if (k->p >= k->end)
        return false;
    if (*k->p == '"') {
        k->p++;
        while (k->p < k->end && *k->p != '"') {
            char ch = *k->p++;

            if (ch == '\r' || ch == '\n')
                return false;
            if (ch == '\\') {
                if (k->p >= k->end)
                    return false;
                ch = *k->p++;
            }
            if (buf_putc(out, ch) != 0)
                return false;
        }
        return eat(k, '"');
    }
    if (*k->p == '{') {
        unsigned long long v = 0;

        k->p++;
        while (k->p < k->end && *k->p >= '0' && *k->p <= '9') {
            v = v * 10 + (unsigned long long)(*k->p++ - '0');
            if (v > IMAP_FOLDERS_LITERAL_MAX)
                return false;
        }
        (void)eat(k, '+');
        if (!eat(k, '}') || !eat(k, '\r') || !eat(k, '\n'))
            return false;
        if ((unsigned long long)(k->end - k->p) < v)
            return false;
        if (buf_append(out, k->p, (size_t)v) != 0)
            return false;
        k->p += v;
        return true;
    }
    {
        const char *s = k->p;

        while (k->p < k->end && atom_char((unsigned char)*k->p))
            k->p++;
        if (k->p == s)
            return false;
        if (k->p - s == 3 && strncasecmp(s, "NIL", 3) == 0) {
            *nil = true;
            return true;
        }
        return buf_append(out, s, (size_t)(k->p - s)) == 0;
    }
}

/* Skip one value: a parenthesized list (nested), a string, an atom. */
static bool skip_value(struct cur *k, unsigned depth)
{
    struct buf tmp = BUF_INIT;
    bool nil, ok;

    if (depth > IMAP_DEPTH_MAX)
        return false;
    if (eat(k, '(')) {
        for (;;) {
            while (eat(k, ' '))
                ;
            if (eat(k, ')'))
                return true;
            if (at_end(k) || !skip_value(k, depth + 1))
                return false;
        }
    }
    if (k->p < k->end && *k->p == '\\')
        k->p++;
    buf_init(&tmp, IMAP_FOLDERS_LITERAL_MAX + 1);
    ok = parse_string(k, &tmp, &nil);
    buf_free(&tmp);
    return ok;
}

static const struct {
    const char *name;
    unsigned attr, special;
} list_flags[] = {
    {"\\Noselect", IMAP_FA_NOSELECT, 0},
    {"\\NonExistent", IMAP_FA_NOSELECT, 0},
    {"\\HasChildren", IMAP_FA_HASCHILDREN, 0},
    {"\\HasNoChildren", IMAP_FA_NOCHILDREN, 0},
    {"\\Noinferiors", IMAP_FA_NOINFERIORS | IMAP_FA_NOCHILDREN, 0},
    {"\\Subscribed", IMAP_FA_SUBSCRIBED, 0},
    {"\\Marked", IMAP_FA_MARKED, 0},
    {"\\Sent", 0, IMAP_SU_SENT},
    {"\\Drafts", 0, IMAP_SU_DRAFTS},
    {"\\Trash", 0, IMAP_SU_TRASH},
    {"\\Junk", 0, IMAP_SU_JUNK},
    {"\\Archive", 0, IMAP_SU_ARCHIVE},
    {"\\All", 0, IMAP_SU_ALL},
    {"\\Flagged", 0, IMAP_SU_FLAGGED},
};

/* The folder a LIST or LSUB response (after "LIST ") names. */
struct parsed_list {
    struct buf name;
    char delim;
    unsigned attrs, special;
};

static bool parse_list_resp(struct cur *k, struct parsed_list *pl)
{
    struct buf d;
    bool nil;

    pl->attrs = pl->special = 0;
    pl->delim = '\0';
    if (!eat(k, '('))
        return false;
    for (;;) {
        const char *s;

        while (eat(k, ' '))
            ;
        if (eat(k, ')'))
            break;
        s = k->p;
        if (k->p < k->end && *k->p == '\\')
            k->p++;
        while (k->p < k->end && atom_char((unsigned char)*k->p) && *k->p != '\\')
            k->p++;
        if (k->p == s || (k->p == s + 1 && *s == '\\'))
            return false;
        for (size_t i = 0; i < ARRAY_LEN(list_flags); i++)
            if (strlen(list_flags[i].name) == (size_t)(k->p - s) &&
                strncasecmp(list_flags[i].name, s, (size_t)(k->p - s)) == 0) {
                pl->attrs |= list_flags[i].attr;
                pl->special |= list_flags[i].special;
            }
    }
    if (!eat(k, ' '))
        return false;
    buf_init(&d, 16);
    if (!parse_string(k, &d, &nil) || (!nil && d.len != 1)) {
        buf_free(&d);
        return false;
    }
    pl->delim = nil ? '\0' : d.data[0];
    buf_free(&d);
    if (!eat(k, ' '))
        return false;
    if (!parse_string(k, &pl->name, &nil) || nil)
        return false;
    /* LIST-EXTENDED items ("CHILDINFO" ("SUBSCRIBED")) carry nothing we
     * use, but must be well formed. */
    while (eat(k, ' '))
        if (!at_end(k) && !skip_value(k, 0))
            return false;
    return at_end(k);
}

static bool parse_u32(struct cur *k, uint32_t *out)
{
    uint64_t v = 0;
    const char *s = k->p;

    while (k->p < k->end && *k->p >= '0' && *k->p <= '9') {
        v = v * 10 + (uint64_t)(*k->p++ - '0');
        if (v > UINT32_MAX)
            return false;
    }
    *out = (uint32_t)v;
    return k->p > s;
}

/* A STATUS response (after "STATUS "): its name into name, counts into f. */
static bool parse_status_resp(struct cur *k, struct buf *name, struct imap_folder *f)
{
    bool nil;
    struct imap_folder got;

    memset(&got, 0, sizeof got);
    if (!parse_string(k, name, &nil) || nil || !eat(k, ' ') || !eat(k, '('))
        return false;
    for (;;) {
        const char *s;
        uint32_t v;

        while (eat(k, ' '))
            ;
        if (eat(k, ')'))
            break;
        size_t n;

        s = k->p;
        while (k->p < k->end && ((*k->p >= 'A' && *k->p <= 'Z') || (*k->p >= 'a' && *k->p <= 'z')))
            k->p++;
        n = (size_t)(k->p - s);
        if (n == 0 || !eat(k, ' ') || !parse_u32(k, &v))
            return false;
        if (n == 8 && strncasecmp(s, "MESSAGES", 8) == 0)
            got.messages = v;
        else if (n == 6 && strncasecmp(s, "UNSEEN", 6) == 0)
            got.unseen = v;
        else if (n == 6 && strncasecmp(s, "RECENT", 6) == 0)
            got.recent = v;
    }
    if (!at_end(k))
        return false;
    f->messages = got.messages;
    f->unseen = got.unseen;
    f->recent = got.recent;
    f->has_status = true;
    return true;
}

/* ---- listing ---------------------------------------------------------------- */

struct list_ctx {
    struct imap_folder_list *l;
    bool lsub;              /* the responses are LSUB: mark subscribed only */
    bool too_many;
    struct parsed_list pl;
    struct buf name;
};

static bool word_is(const char *p, size_t n, const char *w)
{
    size_t wl = strlen(w);

    return n > wl && strncasecmp(p, w, wl) == 0 && p[wl] == ' ';
}

static void normalize_inbox(struct buf *b)
{
    if (b->len == 5 && strncasecmp(b->data, "INBOX", 5) == 0)
        memcpy(b->data, "INBOX", 5);
}

static void on_list(void *vctx, const char *p, size_t n, bool skip)
{
    struct list_ctx *x = vctx;
    struct imap_folder_list *l = x->l;
    struct cur k;

    if (word_is(p, n, "LIST") || word_is(p, n, "LSUB")) {
        bool lsub = word_is(p, n, "LSUB");
        struct imap_folder *f;

        k.p = p + 5;
        k.end = p + n;
        if (skip || !parse_list_resp(&k, &x->pl) || !wire_ok(x->pl.name.data, x->pl.name.len) ||
            memchr(x->pl.name.data, '\0', x->pl.name.len) != NULL) {
            l->n_skipped++;
            return;
        }
        normalize_inbox(&x->pl.name);
        f = find_mut(l, buf_cstr(&x->pl.name));
        if (lsub || x->lsub) {
            if (f != NULL)
                f->attrs |= IMAP_FA_SUBSCRIBED;
            if (x->lsub)
                return;
        }
        if (f != NULL) {
            f->attrs |= x->pl.attrs;
            f->special |= x->pl.special;
            return;
        }
        if (l->n >= IMAP_FOLDERS_MAX) {
            x->too_many = true;
            return;
        }
        l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
        f = &l->v[l->n++];
        memset(f, 0, sizeof *f);
        f->wire = xstrdup(buf_cstr(&x->pl.name));
        f->display = imap_folder_display(f->wire);
        f->delim = x->pl.delim;
        f->attrs = x->pl.attrs | (lsub ? IMAP_FA_SUBSCRIBED : 0);
        f->special = x->pl.special;
        return;
    }
    if (word_is(p, n, "STATUS")) {
        struct imap_folder tmp, *f;

        k.p = p + 7;
        k.end = p + n;
        memset(&tmp, 0, sizeof tmp);
        if (skip || !parse_status_resp(&k, &x->name, &tmp)) {
            l->n_skipped++;
            return;
        }
        normalize_inbox(&x->name);
        f = find_mut(l, buf_cstr(&x->name));
        if (f != NULL) {
            f->messages = tmp.messages;
            f->unseen = tmp.unseen;
            f->recent = tmp.recent;
            f->has_status = true;
        }
    }
}

/* name as a quoted string for a command we write ourselves; ERR_UNSUPPORTED
 * for a name that would need a literal. */
static int quote_name(struct buf *cmd, const char *wire, struct err *e)
{
    if (check_wire(wire, e) != 0)
        return -1;
    for (const char *q = wire; *q != '\0'; q++)
        if ((unsigned char)*q >= 0x80)
            return err_set(e, ERR_UNSUPPORTED, "folder name with 8-bit bytes");
    if (buf_putc(cmd, '"') != 0)
        return err_set(e, ERR_LIMIT, "command too long");
    for (const char *q = wire; *q != '\0'; q++)
        if (((*q == '"' || *q == '\\') && buf_putc(cmd, '\\') != 0) || buf_putc(cmd, *q) != 0)
            return err_set(e, ERR_LIMIT, "command too long");
    if (buf_putc(cmd, '"') != 0)
        return err_set(e, ERR_LIMIT, "command too long");
    return 0;
}

static int status_one(struct imap_conn *c, struct list_ctx *x, const char *wire, struct err *e)
{
    struct buf cmd;
    int rc;

    buf_init(&cmd, 2 * IMAP_FOLDER_MAX + 64);
    if (buf_puts(&cmd, "STATUS ") != 0 || quote_name(&cmd, wire, e) != 0 ||
        buf_puts(&cmd, " (MESSAGES UNSEEN RECENT)") != 0) {
        buf_free(&cmd);
        if (e != NULL && e->code == ERR_OK)
            err_set(e, ERR_LIMIT, "STATUS: command too long");
        return -1;
    }
    rc = run_command(c, buf_cstr(&cmd), "STATUS", on_list, x, e);
    buf_free(&cmd);
    return rc;
}

int imap_folders_list(struct imap_conn *c, unsigned flags, struct imap_folder_list *out,
                      struct err *e)
{
    bool ext = imap_has_cap(c, "LIST-EXTENDED") || imap_has_cap(c, "LIST-STATUS");
    bool lstatus = imap_has_cap(c, "LIST-STATUS") && (flags & IMAP_LIST_STATUS);
    bool su = imap_has_cap(c, "SPECIAL-USE");
    struct list_ctx x;
    struct buf cmd = BUF_INIT;
    int rc;

    memset(out, 0, sizeof *out);
    memset(&x, 0, sizeof x);
    x.l = out;
    buf_init(&x.pl.name, IMAP_FOLDERS_LITERAL_MAX + 1);
    buf_init(&x.name, IMAP_FOLDERS_LITERAL_MAX + 1);
    if (ext) {
        const char *sep = "";

        rc = buf_printf(&cmd, "LIST %s\"\" \"*\" RETURN (",
                        (flags & IMAP_LIST_SUBSCRIBED) ? "(SUBSCRIBED) " : "");
        if (rc == 0 && su) {
            rc = buf_puts(&cmd, "SPECIAL-USE");
            sep = " ";
        }
        if (rc == 0 && !(flags & IMAP_LIST_SUBSCRIBED)) {
            rc = buf_printf(&cmd, "%sSUBSCRIBED", sep);
            sep = " ";
        }
        if (rc == 0 && lstatus)
            rc = buf_printf(&cmd, "%sSTATUS (MESSAGES UNSEEN RECENT)", sep);
        if (rc == 0)
            rc = buf_putc(&cmd, ')');
        if (rc != 0)
            die("imap_folders: unbounded buffer refused an append");
        rc = run_command(c, buf_cstr(&cmd), "LIST", on_list, &x, e);
    } else if (flags & IMAP_LIST_SUBSCRIBED) {
        rc = run_command(c, "LSUB \"\" \"*\"", "LSUB", on_list, &x, e);
    } else {
        rc = run_command(c, "LIST \"\" \"*\"", "LIST", on_list, &x, e);
        if (rc == 0) {
            struct err le;

            /* Subscriptions only mark the list: a refused LSUB is no
             * reason to show nothing. */
            x.lsub = true;
            if (run_command(c, "LSUB \"\" \"*\"", "LSUB", on_list, &x, &le) != 0 &&
                !imap_usable(c)) {
                if (e != NULL)
                    *e = le;
                rc = -1;
            }
            x.lsub = false;
        }
    }
    buf_free(&cmd);
    if (rc == 0 && x.too_many) {
        rc = err_set(e, ERR_LIMIT, "the server lists more than %u folders", IMAP_FOLDERS_MAX);
        err_scope(e, ERR_SCOPE_ACCOUNT, false);
    }
    if (rc == 0 && (flags & IMAP_LIST_STATUS) && !lstatus) {
        for (size_t i = 0; i < out->n && rc == 0; i++) {
            struct err se;

            if (out->v[i].attrs & IMAP_FA_NOSELECT)
                continue;
            if (status_one(c, &x, out->v[i].wire, &se) != 0 && !imap_usable(c)) {
                if (e != NULL)
                    *e = se;
                rc = -1;
            }
        }
    }
    buf_free(&x.pl.name);
    buf_free(&x.name);
    if (rc != 0)
        imap_folder_list_free(out);
    return rc;
}

struct status_ctx {
    const char *wire;
    struct imap_folder *f;
    struct buf name;
    size_t bad;
};

static void on_status(void *vctx, const char *p, size_t n, bool skip)
{
    struct status_ctx *x = vctx;
    struct imap_folder tmp;
    struct cur k;

    if (!word_is(p, n, "STATUS"))
        return;
    k.p = p + 7;
    k.end = p + n;
    memset(&tmp, 0, sizeof tmp);
    if (skip || !parse_status_resp(&k, &x->name, &tmp)) {
        x->bad++;
        return;
    }
    normalize_inbox(&x->name);
    if (strcmp(buf_cstr(&x->name), x->wire) != 0 &&
        !(strcasecmp(x->wire, "INBOX") == 0 && strcmp(buf_cstr(&x->name), "INBOX") == 0))
        return;
    x->f->messages = tmp.messages;
    x->f->unseen = tmp.unseen;
    x->f->recent = tmp.recent;
    x->f->has_status = true;
}

int imap_folders_status(struct imap_conn *c, const char *wire, struct imap_folder *f,
                        struct err *e)
{
    struct status_ctx x;
    struct buf cmd;
    int rc;

    f->has_status = false;
    buf_init(&cmd, 2 * IMAP_FOLDER_MAX + 64);
    if (buf_puts(&cmd, "STATUS ") != 0 || quote_name(&cmd, wire, e) != 0 ||
        buf_puts(&cmd, " (MESSAGES UNSEEN RECENT)") != 0) {
        buf_free(&cmd);
        return -1;
    }
    memset(&x, 0, sizeof x);
    x.wire = wire;
    x.f = f;
    buf_init(&x.name, IMAP_FOLDERS_LITERAL_MAX + 1);
    rc = run_command(c, buf_cstr(&cmd), "STATUS", on_status, &x, e);
    buf_free(&cmd);
    buf_free(&x.name);
    if (rc == 0 && !f->has_status) {
        rc = err_set(e, ERR_PROTO, "STATUS: the server's reply %s",
                     x.bad ? "could not be parsed" : "did not name the folder");
        err_scope(e, ERR_SCOPE_BOX, false);
    }
    return rc;
}

/* ---- folder operations ---------------------------------------------------- */

int imap_folders_create(struct imap_conn *c, const char *wire, struct err *e)
{
    if (check_wire(wire, e) != 0)
        return -1;
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "CREATE: not connected");
    return imap_check(c, mailimap_create(imap_session(c), wire), "CREATE", e);
}

int imap_folders_rename(struct imap_conn *c, const char *wire, const char *new_wire,
                        struct err *e)
{
    if (check_wire(wire, e) != 0 || check_wire(new_wire, e) != 0)
        return -1;
    if (strcasecmp(wire, "INBOX") == 0)
        return err_set(e, ERR_INVAL, "INBOX cannot be renamed");
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "RENAME: not connected");
    return imap_check(c, mailimap_rename(imap_session(c), wire, new_wire), "RENAME", e);
}

int imap_folders_delete(struct imap_conn *c, const char *wire, struct err *e)
{
    if (check_wire(wire, e) != 0)
        return -1;
    if (strcasecmp(wire, "INBOX") == 0)
        return err_set(e, ERR_INVAL, "INBOX cannot be deleted");
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "DELETE: not connected");
    return imap_check(c, mailimap_delete(imap_session(c), wire), "DELETE", e);
}

int imap_folders_subscribe(struct imap_conn *c, const char *wire, bool subscribe,
                           struct err *e)
{
    if (check_wire(wire, e) != 0)
        return -1;
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "SUBSCRIBE: not connected");
    if (subscribe)
        return imap_check(c, mailimap_subscribe(imap_session(c), wire), "SUBSCRIBE", e);
    return imap_check(c, mailimap_unsubscribe(imap_session(c), wire), "UNSUBSCRIBE", e);
}

/* ---- APPEND ------------------------------------------------------------------ */

static struct mailimap_flag_list *flag_list_of(unsigned bits)
{
    struct mailimap_flag_list *fl = mailimap_flag_list_new_empty();

    if (fl == NULL)
        die("out of memory");
    if (bits & MSG_SEEN)
        mailimap_flag_list_add(fl, mailimap_flag_new_seen());
    if (bits & MSG_REPLIED)
        mailimap_flag_list_add(fl, mailimap_flag_new_answered());
    if (bits & MSG_FLAGGED)
        mailimap_flag_list_add(fl, mailimap_flag_new_flagged());
    if (bits & MSG_DRAFT)
        mailimap_flag_list_add(fl, mailimap_flag_new_draft());
    return fl;
}

static int append_once(struct imap_conn *c, const char *wire, const void *data, size_t len,
                       unsigned flags, uint32_t *uid, struct err *e)
{
    struct mailimap_flag_list *fl = flag_list_of(flags);
    uint32_t uv = 0, u = 0;
    int r;

    if (imap_has_cap(c, "UIDPLUS"))
        r = mailimap_uidplus_append(imap_session(c), wire, fl, NULL, data, len, &uv, &u);
    else
        r = mailimap_append(imap_session(c), wire, fl, NULL, data, len);
    mailimap_flag_list_free(fl);
    if (uid != NULL)
        *uid = u;
    return imap_check(c, r, "APPEND", e);
}

int imap_folders_append(struct imap_conn *c, const char *wire, const void *data, size_t len,
                        unsigned flags, uint32_t *uid, struct err *e)
{
    struct err first;

    if (uid != NULL)
        *uid = 0;
    if (check_wire(wire, e) != 0)
        return -1;
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "APPEND: not connected");
    if (append_once(c, wire, data, len, flags, uid, &first) == 0)
        return 0;
    /* Perhaps the folder is missing ([TRYCREATE]): create it, once. */
    if (first.code == ERR_PROTO && imap_usable(c) &&
        imap_check(c, mailimap_create(imap_session(c), wire), "CREATE", NULL) == 0)
        return append_once(c, wire, data, len, flags, uid, e);
    if (e != NULL)
        *e = first;
    return -1;
}

/* ---- recalling by UID ------------------------------------------------------- */

void imap_summary_list_free(struct imap_summary_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].subject);
        free(l->v[i].from);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static unsigned flags_of(const struct mailimap_msg_att_dynamic *dyn)
{
    unsigned f = 0;

    if (dyn == NULL || dyn->att_list == NULL)
        return 0;
    for (clistiter *it = clist_begin(dyn->att_list); it != NULL; it = clist_next(it)) {
        const struct mailimap_flag_fetch *ff = clist_content(it);

        if (ff->fl_type == MAILIMAP_FLAG_FETCH_RECENT) {
            f |= MSG_NEW;
            continue;
        }
        if (ff->fl_flag == NULL)
            continue;
        switch (ff->fl_flag->fl_type) {
        case MAILIMAP_FLAG_SEEN: f |= MSG_SEEN; break;
        case MAILIMAP_FLAG_ANSWERED: f |= MSG_REPLIED; break;
        case MAILIMAP_FLAG_FLAGGED: f |= MSG_FLAGGED; break;
        case MAILIMAP_FLAG_DRAFT: f |= MSG_DRAFT; break;
        case MAILIMAP_FLAG_DELETED: f |= MSG_TRASHED; break;
        default: break;
        }
    }
    return f;
}

/* SELECT (or EXAMINE) wire; *uidvalidity gets its UIDVALIDITY, *exists its
 * message count. */
static int select_folder(struct imap_conn *c, const char *wire, bool readonly,
                         uint32_t *uidvalidity, uint32_t *exists, struct err *e)
{
    mailimap *s;
    int r;

    if (check_wire(wire, e) != 0)
        return -1;
    if (!imap_usable(c))
        return err_set(e, ERR_NET, "SELECT: not connected");
    s = imap_session(c);
    r = readonly ? mailimap_examine(s, wire) : mailimap_select(s, wire);
    if (imap_check(c, r, readonly ? "EXAMINE" : "SELECT", e) != 0)
        return -1;
    *uidvalidity = s->imap_selection_info != NULL ? s->imap_selection_info->sel_uidvalidity : 0;
    *exists = s->imap_selection_info != NULL && s->imap_selection_info->sel_has_exists
                  ? s->imap_selection_info->sel_exists : 1;
    return 0;
}

static int select_same(struct imap_conn *c, const char *wire, bool readonly,
                       uint32_t uidvalidity, struct err *e)
{
    uint32_t uv, exists;

    if (select_folder(c, wire, readonly, &uv, &exists, e) != 0)
        return -1;
    if (uv != uidvalidity) {
        err_set(e, ERR_NOTFOUND, "the folder changed on the server (UIDVALIDITY): "
                                 "the message is no longer known");
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    return 0;
}

static const struct mailimap_msg_att_body_section *att_body(const struct mailimap_msg_att *att,
                                                            uint32_t *uid, unsigned *flags)
{
    const struct mailimap_msg_att_body_section *sec = NULL;

    *uid = 0;
    *flags = 0;
    for (clistiter *j = clist_begin(att->att_list); j != NULL; j = clist_next(j)) {
        struct mailimap_msg_att_item *item = clist_content(j);

        if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
            *flags |= flags_of(item->att_data.att_dyn);
        } else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC) {
            struct mailimap_msg_att_static *sa = item->att_data.att_static;

            if (sa->att_type == MAILIMAP_MSG_ATT_UID)
                *uid = sa->att_data.att_uid;
            else if (sa->att_type == MAILIMAP_MSG_ATT_BODY_SECTION)
                sec = sa->att_data.att_body_section;
        }
    }
    return sec;
}

static int cmp_summary(const void *a, const void *b)
{
    uint32_t x = ((const struct imap_summary *)a)->uid, y = ((const struct imap_summary *)b)->uid;

    return (x > y) - (x < y);
}

int imap_folders_summaries(struct imap_conn *c, const char *wire,
                           struct imap_summary_list *out, struct err *e)
{
    struct mailimap_fetch_type *ft;
    struct mailimap_set *set;
    clist *hdrs, *res = NULL;
    struct buf v = BUF_INIT;
    uint32_t exists;
    int r;

    memset(out, 0, sizeof *out);
    if (select_folder(c, wire, true, &out->uidvalidity, &exists, e) != 0)
        return -1;
    if (exists == 0)
        return 0;
    hdrs = clist_new();
    if (hdrs == NULL || clist_append(hdrs, xstrdup("SUBJECT")) != 0 ||
        clist_append(hdrs, xstrdup("FROM")) != 0)
        die("out of memory");
    ft = mailimap_fetch_type_new_fetch_att_list_empty();
    set = mailimap_set_new_interval(1, 0);
    if (ft == NULL || set == NULL)
        die("out of memory");
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid());
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_flags());
    mailimap_fetch_type_new_fetch_att_list_add(
        ft, mailimap_fetch_att_new_body_peek_section(
                mailimap_section_new_header_fields(mailimap_header_list_new(hdrs))));
    r = mailimap_uid_fetch(imap_session(c), set, ft, &res);
    mailimap_fetch_type_free(ft);
    mailimap_set_free(set);
    if (imap_check(c, r, "UID FETCH (summaries)", e) != 0)
        return -1;
    for (clistiter *it = clist_begin(res); it != NULL; it = clist_next(it)) {
        const struct mailimap_msg_att_body_section *sec;
        struct imap_summary *m;
        uint32_t uid;
        unsigned flags;
        const char *h;
        size_t hl;

        sec = att_body(clist_content(it), &uid, &flags);
        if (uid == 0)
            continue;
        h = sec != NULL && sec->sec_body_part != NULL ? sec->sec_body_part : "";
        hl = sec != NULL && sec->sec_body_part != NULL ? sec->sec_length : 0;
        out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
        m = &out->v[out->n++];
        m->uid = uid;
        m->flags = flags;
        m->subject = xstrdup(mailbox_header_field(h, hl, "Subject", &v) ? buf_cstr(&v) : "");
        m->from = xstrdup(mailbox_header_field(h, hl, "From", &v) ? buf_cstr(&v) : "");
    }
    buf_free(&v);
    mailimap_fetch_list_free(res);
    qsort(out->v, out->n, sizeof *out->v, cmp_summary);
    return 0;
}

int imap_folders_fetch(struct imap_conn *c, const char *wire, uint32_t uidvalidity,
                       uint32_t uid, struct buf *out, struct err *e)
{
    struct mailimap_fetch_type *ft;
    struct mailimap_set *set;
    clist *res = NULL;
    bool found = false;
    int r, rc = 0;

    if (select_same(c, wire, true, uidvalidity, e) != 0)
        return -1;
    ft = mailimap_fetch_type_new_fetch_att_list_empty();
    set = mailimap_set_new_single(uid);
    if (ft == NULL || set == NULL)
        die("out of memory");
    mailimap_fetch_type_new_fetch_att_list_add(ft, mailimap_fetch_att_new_uid());
    mailimap_fetch_type_new_fetch_att_list_add(
        ft, mailimap_fetch_att_new_body_peek_section(mailimap_section_new(NULL)));
    r = mailimap_uid_fetch(imap_session(c), set, ft, &res);
    mailimap_fetch_type_free(ft);
    mailimap_set_free(set);
    if (imap_check(c, r, "UID FETCH (message)", e) != 0)
        return -1;
    for (clistiter *it = clist_begin(res); it != NULL && !found; it = clist_next(it)) {
        uint32_t got;
        unsigned flags;
        const struct mailimap_msg_att_body_section *sec = att_body(clist_content(it), &got, &flags);

        if (got != uid || sec == NULL)
            continue;
        found = true;
        if (sec->sec_body_part != NULL && sec->sec_length > 0 &&
            buf_append(out, sec->sec_body_part, sec->sec_length) != 0)
            rc = err_set(e, ERR_LIMIT, "message larger than the buffer allows");
    }
    mailimap_fetch_list_free(res);
    if (rc == 0 && !found) {
        err_set(e, ERR_NOTFOUND, "message %u is no longer on the server", uid);
        err_scope(e, ERR_SCOPE_MSG, false);
        return -1;
    }
    return rc;
}

int imap_folders_remove(struct imap_conn *c, const char *wire, uint32_t uidvalidity,
                        uint32_t uid, struct err *e)
{
    struct mailimap_flag_list *fl;
    struct mailimap_store_att_flags *sa;
    struct mailimap_set *set;
    int r;

    if (select_same(c, wire, false, uidvalidity, e) != 0)
        return -1;
    fl = mailimap_flag_list_new_empty();
    if (fl == NULL)
        die("out of memory");
    mailimap_flag_list_add(fl, mailimap_flag_new_deleted());
    sa = mailimap_store_att_flags_new_add_flags_silent(fl);
    set = mailimap_set_new_single(uid);
    if (sa == NULL || set == NULL)
        die("out of memory");
    r = mailimap_uid_store(imap_session(c), set, sa);
    mailimap_store_att_flags_free(sa);
    if (imap_check(c, r, "UID STORE", e) != 0) {
        mailimap_set_free(set);
        return -1;
    }
    if (imap_has_cap(c, "UIDPLUS"))
        r = mailimap_uid_expunge(imap_session(c), set);
    else
        r = mailimap_expunge(imap_session(c));
    mailimap_set_free(set);
    return imap_check(c, r, imap_has_cap(c, "UIDPLUS") ? "UID EXPUNGE" : "EXPUNGE", e);
}
