/* users: the users file (Dovecot passwd-file format, crypt(3) hashes),
 * the aliases file, recipient resolution, Maildir paths from the template,
 * and locked atomic rewrites of the users file for the admin commands. */
#include "users.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

/* Largest users or aliases file read, and longest line in it. */
#define USERS_FILE_MAX ((size_t)256 * 1024 * 1024)
#define USERS_LINE_MAX 65536
/* RFC 5321 sizes. */
#define USERS_LOCAL_MAX 64
#define USERS_DOMAIN_MAX 253
/* Aliases nested deeper than this are an error. */
#define USERS_ALIAS_DEPTH_MAX 10
/* Longest password hashed or checked. */
#define USERS_PASSWORD_MAX 1024

/* Failure injection for the tests, like maildir_step_hook; declared here
 * and not in users.h because nothing but a test may use it.  When set, it
 * is called before each step of a rewrite of the users file (opening the
 * temporary file, writing its first half, the rest, fsync, rename, fsync of
 * the directory); returning non-zero makes that step fail with EIO.  A test
 * may also end the process inside it to simulate a crash. */
extern int (*users_step_hook)(int step);
int (*users_step_hook)(int step) = NULL;

enum users_step {
    STEP_TMP_OPEN = 0,
    STEP_WRITE_HALF,
    STEP_WRITE_REST,
    STEP_FSYNC,
    STEP_RENAME,
    STEP_DIR_FSYNC,
};

static int step(enum users_step s)
{
    if (users_step_hook != NULL && users_step_hook((int)s) != 0) {
        errno = EIO;
        return -1;
    }
    return 0;
}

/* ---- small helpers --------------------------------------------------------- */

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) != 0)
        die("users: an unbounded buffer refused to grow");
}

static void buf_adds(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char *lower_dup(const char *s, size_t n)
{
    char *r = xmemdup0(s, n);

    for (size_t i = 0; i < n; i++)
        r[i] = ascii_lower(r[i]);
    return r;
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

/* A domain name, already lower case: labels of [a-z0-9-], not starting or
 * ending with '-', separated by single dots. */
static bool valid_domain(const char *d, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > USERS_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];

        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if (c == '-' && label == 0)
                return false;
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && d[n - 1] != '-';
}

/* Dot rules shared by both kinds of local part: no leading, trailing or
 * doubled dot. */
static bool dots_ok(const char *l, size_t n)
{
    if (n == 0 || l[0] == '.' || l[n - 1] == '.')
        return false;
    for (size_t i = 1; i < n; i++) {
        if (l[i] == '.' && l[i - 1] == '.')
            return false;
    }
    return true;
}

/* The local part of one of our users or aliases (lower case). */
static bool valid_local(const char *l, size_t n)
{
    if (n > USERS_LOCAL_MAX || !dots_ok(l, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = l[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '+' || c == '-'))
            return false;
    }
    return true;
}

/* The local part of an external address: RFC 5322 atext and dots, minus
 * '#' (which starts a comment in the aliases file). */
static bool valid_external_local(const char *l, size_t n)
{
    static const char special[] = "!$%&'*+-/=?^_`{|}~.";

    if (n > USERS_LOCAL_MAX || !dots_ok(l, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = l[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(special, c) != NULL) || c == '\0')
            return false;
    }
    return true;
}

/* Lower-case and check a user name.  A bare name gets default_domain when
 * given, else stays bare.  0, or -1 with ERR_INVAL. */
static int normalize_name(const char *name, size_t n, const char *default_domain, char **out,
                          struct err *e)
{
    char *low = lower_dup(name, n);
    const char *at = memchr(low, '@', n);
    size_t local_len = at != NULL ? (size_t)(at - low) : n;

    if (!valid_local(low, local_len) ||
        (at != NULL && !valid_domain(at + 1, n - local_len - 1))) {
        free(low);
        return err_set(e, ERR_INVAL,
                       "bad user name (want local@domain, local part of a-z 0-9 . _ + -)");
    }
    if (at == NULL && default_domain != NULL) {
        char *full = xasprintf("%s@%s", low, default_domain);

        free(low);
        low = full;
    }
    *out = low;
    return 0;
}

/* 0, 1 when path does not exist, -1 on other errors; *e set unless 0. */
static int read_whole(const char *path, struct buf *b, bool nofollow, struct stat *st,
                      struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    int r;

    if (fd < 0) {
        if (errno == ENOENT) {
            err_set(e, ERR_NOTFOUND, "%s: no such file", path);
            return 1;
        }
        return err_sys(e, "%s", path);
    }
    if (st != NULL && fstat(fd, st) != 0) {
        err_sys(e, "%s", path);
        close(fd);
        return -1;
    }
    buf_init(b, USERS_FILE_MAX);
    r = buf_read_all(b, fd);
    close(fd);
    if (r == -1) {
        buf_free(b);
        return err_sys(e, "%s", path);
    }
    if (r == -2) {
        buf_free(b);
        return err_set(e, ERR_LIMIT, "%s: larger than %zu bytes", path, USERS_FILE_MAX);
    }
    return 0;
}

/* Walks the lines of a buffer: [*line, *line + *len) without the '\n';
 * *next is where the following line starts. */
struct lines {
    const char *p;
    const char *end;
    unsigned no;
};

static bool next_line(struct lines *it, const char **line, size_t *len, size_t *full)
{
    const char *nl;

    if (it->p >= it->end)
        return false;
    nl = memchr(it->p, '\n', (size_t)(it->end - it->p));
    *line = it->p;
    *len = nl != NULL ? (size_t)(nl - it->p) : (size_t)(it->end - it->p);
    if (full != NULL)
        *full = nl != NULL ? *len + 1 : *len;
    it->p = nl != NULL ? nl + 1 : it->end;
    it->no++;
    return true;
}

/* A line the users file does not treat as an entry: blank or '#'. */
static bool skip_line(const char *line, size_t len)
{
    size_t i = 0;

    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    return i == len || line[i] == '#';
}

/* ---- hash table ------------------------------------------------------------ */

struct slot {
    const char *key;     /* NULL: empty */
    size_t idx;
};

struct map {
    struct slot *v;
    size_t mask;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325u;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3u;
    }
    return h ^ (h >> 29);
}

static void map_init(struct map *m, size_t n)
{
    size_t cap = 16;

    while (cap < n * 2)
        cap *= 2;
    m->v = xcalloc(cap, sizeof *m->v);
    m->mask = cap - 1;
}

/* Insert key -> idx; if key is there already, *old gets its index and
 * nothing changes (returns false). */
static bool map_put(struct map *m, const char *key, size_t idx, size_t *old)
{
    size_t i = (size_t)hash_str(key) & m->mask;

    while (m->v[i].key != NULL) {
        if (strcmp(m->v[i].key, key) == 0) {
            *old = m->v[i].idx;
            return false;
        }
        i = (i + 1) & m->mask;
    }
    m->v[i].key = key;
    m->v[i].idx = idx;
    return true;
}

static bool map_get(const struct map *m, const char *key, size_t *idx)
{
    size_t i;

    if (m->v == NULL)
        return false;
    i = (size_t)hash_str(key) & m->mask;
    while (m->v[i].key != NULL) {
        if (strcmp(m->v[i].key, key) == 0) {
            *idx = m->v[i].idx;
            return true;
        }
        i = (i + 1) & m->mask;
    }
    return false;
}

/* ---- the database ---------------------------------------------------------- */

struct user {
    char *name;          /* local@domain, lower case */
    char *hash;          /* crypt(3) string; NULL: may not log in */
    char *home;          /* NULL: none */
    unsigned line;
};

struct alias_target {
    char *addr;          /* local@domain (lower case) or an external address */
    bool local;
};

struct alias {
    char *key;           /* local@domain or @domain (catch-all) */
    struct alias_target *t;
    size_t n;
    unsigned line;
};

struct user_db {
    char **domains;
    size_t n_domains;
    char *template;
    char *users_file;
    char *aliases_file;
    struct user *users;
    size_t n_users;
    struct alias *aliases;
    size_t n_aliases;
    struct map umap;
    struct map amap;
    char *dummy;         /* hashed against for unknown users */
};

static bool is_local_domain(const struct user_db *db, const char *d)
{
    for (size_t i = 0; i < db->n_domains; i++) {
        if (strcmp(db->domains[i], d) == 0)
            return true;
    }
    return false;
}

static const struct user *find_user(const struct user_db *db, const char *name)
{
    size_t i;

    return map_get(&db->umap, name, &i) ? &db->users[i] : NULL;
}

static bool find_alias(const struct user_db *db, const char *key, size_t *idx)
{
    return map_get(&db->amap, key, idx);
}

void users_free(struct user_db *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->n_domains; i++)
        free(db->domains[i]);
    free(db->domains);
    for (size_t i = 0; i < db->n_users; i++) {
        free(db->users[i].name);
        free(db->users[i].hash);
        free(db->users[i].home);
    }
    free(db->users);
    for (size_t i = 0; i < db->n_aliases; i++) {
        for (size_t j = 0; j < db->aliases[i].n; j++)
            free(db->aliases[i].t[j].addr);
        free(db->aliases[i].t);
        free(db->aliases[i].key);
    }
    free(db->aliases);
    free(db->umap.v);
    free(db->amap.v);
    free(db->template);
    free(db->users_file);
    free(db->aliases_file);
    free(db->dummy);
    free(db);
}

/* The template's syntax: only %u %n %d %h %%. */
static int check_template(const char *t, struct err *e)
{
    if (t == NULL || t[0] == '\0')
        return err_set(e, ERR_INVAL, "maildir template is empty");
    for (const char *p = t; *p != '\0'; p++) {
        if (is_ctl((unsigned char)*p))
            return err_set(e, ERR_INVAL, "maildir template has a control character");
        if (*p != '%')
            continue;
        p++;
        if (*p == '\0' || strchr("undh%", *p) == NULL)
            return err_set(e, ERR_INVAL, "maildir template: only %%u %%n %%d %%h %%%% are known");
    }
    return 0;
}

/* ---- passwords ------------------------------------------------------------- */

/* Strip a known scheme prefix: 1 with *hash set, 0 for an empty or locked
 * password (no login), -1 for an unknown scheme or a hash crypt(3) does
 * not take. */
static int parse_password(const char *pw, const char **hash, const char **why)
{
    static const struct {
        const char *prefix;
        const char *need;     /* the hash must start with this */
    } schemes[] = {
        { "{CRYPT}", "" },
        { "{SHA512-CRYPT}", "$6$" },
        { "{SHA256-CRYPT}", "$5$" },
        { "{BLF-CRYPT}", "$2" },
    };
    int ok;

    *hash = pw;
    if (pw[0] == '{') {
        size_t i;

        for (i = 0; i < ARRAY_LEN(schemes); i++) {
            size_t n = strlen(schemes[i].prefix);

            if (strncasecmp(pw, schemes[i].prefix, n) == 0) {
                *hash = pw + n;
                if (strncmp(*hash, schemes[i].need, strlen(schemes[i].need)) != 0) {
                    *why = "the hash does not match its scheme";
                    return -1;
                }
                break;
            }
        }
        if (i == ARRAY_LEN(schemes)) {
            *why = "unsupported password scheme (use {CRYPT}, {SHA512-CRYPT}, "
                   "{SHA256-CRYPT} or {BLF-CRYPT})";
            return -1;
        }
    }
    if ((*hash)[0] == '\0' || (*hash)[0] == '!' || (*hash)[0] == '*')
        return 0;
    for (const char *p = *hash; *p != '\0'; p++) {
        if (is_ctl((unsigned char)*p) || *p == ' ') {
            *why = "the password hash has a control character or space";
            return -1;
        }
    }
    ok = crypt_checksalt(*hash);
    if (ok != CRYPT_SALT_OK && ok != CRYPT_SALT_METHOD_LEGACY && ok != CRYPT_SALT_TOO_CHEAP) {
        *why = "the password hash is not one crypt(3) can check";
        return -1;
    }
    return 1;
}

/* Equal strings, in time that depends only on the length of b. */
static bool ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char d = (unsigned char)(la != lb);

    for (size_t i = 0; i < lb; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;

        d |= (unsigned char)(ca ^ (unsigned char)b[i]);
    }
    return d == 0;
}

/* 1 match, 0 no match, -1 crypt failed. */
static int check_password(const char *password, const char *hash)
{
    struct crypt_data *cd = xcalloc(1, sizeof *cd);
    const char *r = crypt_rn(password, hash, cd, (int)sizeof *cd);
    int ret = r == NULL || r[0] == '*' ? -1 : ct_equal(r, hash) ? 1 : 0;

    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return ret;
}

/* A fresh setting: yescrypt, else SHA-512-crypt. */
static int gensalt(char *out, int size, struct err *e)
{
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, out, size) != NULL)
        return 0;
    if (crypt_gensalt_rn("$6$", 0, NULL, 0, out, size) != NULL)
        return 0;
    return err_sys(e, "cannot make a password salt");
}

int users_hash_password(const char *password, char **out, struct err *e)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd;
    const char *r;
    size_t n;

    if (password == NULL || password[0] == '\0')
        return err_set(e, ERR_INVAL, "empty password");
    if (strlen(password) > USERS_PASSWORD_MAX)
        return err_set(e, ERR_LIMIT, "password longer than %d bytes", USERS_PASSWORD_MAX);
    if (gensalt(setting, (int)sizeof setting, e) != 0)
        return -1;
    cd = xcalloc(1, sizeof *cd);
    r = crypt_rn(password, setting, cd, (int)sizeof *cd);
    if (r == NULL || r[0] != '$') {
        explicit_bzero(cd, sizeof *cd);
        free(cd);
        return err_set(e, ERR_IO, "crypt(3) could not hash the password");
    }
    n = strcspn(r, ":\r\n");
    if (r[n] != '\0') {
        explicit_bzero(cd, sizeof *cd);
        free(cd);
        return err_set(e, ERR_IO, "crypt(3) made a hash with a ':' or newline");
    }
    *out = xasprintf("{CRYPT}%s", r);
    explicit_bzero(cd, sizeof *cd);
    free(cd);
    return 0;
}

/* ---- loading ---------------------------------------------------------------- */

static int parse_users(struct user_db *db, const struct buf *b, struct err *e)
{
    struct lines it = { buf_cstr(b), buf_cstr(b) + b->len, 0 };
    const char *line;
    size_t len;
    size_t cap = 0;
    const char *f = db->users_file;

    while (next_line(&it, &line, &len, NULL)) {
        const char *field[8] = { NULL };
        size_t flen[8] = { 0 };
        size_t nf = 0;
        const char *p = line, *end;
        struct user *u;
        char *pw;
        const char *hash = NULL, *why = "";
        int r;

        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (memchr(line, '\0', len) != NULL)
            return err_set(e, ERR_PARSE, "%s:%u: NUL byte in the line", f, it.no);
        if (len > USERS_LINE_MAX)
            return err_set(e, ERR_PARSE, "%s:%u: line longer than %d bytes", f, it.no,
                           USERS_LINE_MAX);
        if (skip_line(line, len))
            continue;
        end = line + len;
        while (nf < ARRAY_LEN(field)) {
            const char *c = memchr(p, ':', (size_t)(end - p));

            field[nf] = p;
            flen[nf] = c != NULL ? (size_t)(c - p) : (size_t)(end - p);
            nf++;
            if (c == NULL)
                break;
            p = c + 1;
        }
        if (nf < 2)
            return err_set(e, ERR_PARSE, "%s:%u: no password field (want name:password:...)",
                           f, it.no);
        if (db->n_users == cap) {
            cap = cap ? cap * 2 : 64;
            db->users = xreallocarray(db->users, cap, sizeof *db->users);
        }
        u = &db->users[db->n_users];
        memset(u, 0, sizeof *u);
        u->line = it.no;
        if (normalize_name(field[0], flen[0], db->domains[0], &u->name, e) != 0) {
            err_prefix(e, "%s:%u", f, it.no);
            return -1;
        }
        db->n_users++;
        if (!is_local_domain(db, strchr(u->name, '@') + 1))
            return err_set(e, ERR_PARSE, "%s:%u: user %s is not in a local domain", f, it.no,
                           u->name);
        pw = xmemdup0(field[1], flen[1]);
        r = parse_password(pw, &hash, &why);
        if (r < 0) {
            free(pw);
            return err_set(e, ERR_PARSE, "%s:%u: %s", f, it.no, why);
        }
        if (r > 0)
            u->hash = xstrdup(hash);
        explicit_bzero(pw, flen[1]);
        free(pw);
        if (nf > 5 && flen[5] > 0) {
            u->home = xmemdup0(field[5], flen[5]);
            for (const char *h = u->home; *h != '\0'; h++) {
                if (is_ctl((unsigned char)*h))
                    return err_set(e, ERR_PARSE, "%s:%u: control character in the home field",
                                   f, it.no);
            }
            if (u->home[0] != '/')
                return err_set(e, ERR_PARSE, "%s:%u: home is not an absolute path", f, it.no);
        }
    }
    map_init(&db->umap, db->n_users);
    for (size_t i = 0; i < db->n_users; i++) {
        size_t old;

        if (!map_put(&db->umap, db->users[i].name, i, &old))
            return err_set(e, ERR_PARSE, "%s:%u: user %s is already on line %u", f,
                           db->users[i].line, db->users[i].name, db->users[old].line);
    }
    return 0;
}

/* One address of the aliases file.  as_key: the left side (may be
 * "@domain"); else a target.  Sets *out and *local. */
static int parse_alias_addr(const struct user_db *db, const char *s, size_t n, bool as_key,
                            char **out, bool *local, const char **why)
{
    const char *at = memchr(s, '@', n);
    char *dom, *loc;
    size_t ln;

    if (n > USERS_LOCAL_MAX + 1 + USERS_DOMAIN_MAX) {
        *why = "address too long";
        return -1;
    }
    if (at == NULL) {
        loc = lower_dup(s, n);
        if (!valid_local(loc, n)) {
            free(loc);
            *why = "bad address";
            return -1;
        }
        *out = xasprintf("%s@%s", loc, db->domains[0]);
        *local = true;
        free(loc);
        return 0;
    }
    ln = (size_t)(at - s);
    dom = lower_dup(at + 1, n - ln - 1);
    if (!valid_domain(dom, n - ln - 1) || memchr(at + 1, '@', n - ln - 1) != NULL) {
        free(dom);
        *why = "bad address";
        return -1;
    }
    *local = is_local_domain(db, dom);
    if (ln == 0) {
        if (!as_key || !*local) {
            free(dom);
            *why = as_key ? "a catch-all must be for a local domain"
                          : "a target must be an address, not @domain";
            return -1;
        }
        *out = xasprintf("@%s", dom);
        free(dom);
        return 0;
    }
    if (*local) {
        loc = lower_dup(s, ln);
        if (!valid_local(loc, ln)) {
            free(loc);
            free(dom);
            *why = "bad local address (a-z 0-9 . _ + - only)";
            return -1;
        }
    } else {
        if (as_key || !valid_external_local(s, ln)) {
            free(dom);
            *why = as_key ? "an alias must be for a local domain" : "bad address";
            return -1;
        }
        loc = xmemdup0(s, ln);
    }
    *out = xasprintf("%s@%s", loc, dom);
    free(loc);
    free(dom);
    return 0;
}

static bool is_sep(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\r';
}

static int parse_aliases(struct user_db *db, const struct buf *b, struct err *e)
{
    struct lines it = { buf_cstr(b), buf_cstr(b) + b->len, 0 };
    const char *line;
    size_t len;
    size_t cap = 0;
    const char *f = db->aliases_file;

    while (next_line(&it, &line, &len, NULL)) {
        const char *hash_sign, *colon, *p, *end;
        size_t kb, ke;
        struct alias *a;
        const char *why = "";
        bool local;

        if (memchr(line, '\0', len) != NULL)
            return err_set(e, ERR_PARSE, "%s:%u: NUL byte in the line", f, it.no);
        if (len > USERS_LINE_MAX)
            return err_set(e, ERR_PARSE, "%s:%u: line longer than %d bytes", f, it.no,
                           USERS_LINE_MAX);
        hash_sign = memchr(line, '#', len);
        if (hash_sign != NULL)
            len = (size_t)(hash_sign - line);
        for (size_t i = 0; i < len; i++) {
            if (is_ctl((unsigned char)line[i]) && line[i] != '\t' && line[i] != '\r')
                return err_set(e, ERR_PARSE, "%s:%u: control character in the line", f, it.no);
        }
        if (skip_line(line, len))
            continue;
        colon = memchr(line, ':', len);
        if (colon == NULL)
            return err_set(e, ERR_PARSE, "%s:%u: no ':' (want address: target, ...)", f, it.no);
        kb = 0;
        ke = (size_t)(colon - line);
        while (kb < ke && (line[kb] == ' ' || line[kb] == '\t'))
            kb++;
        while (ke > kb && (line[ke - 1] == ' ' || line[ke - 1] == '\t'))
            ke--;
        if (db->n_aliases == cap) {
            cap = cap ? cap * 2 : 16;
            db->aliases = xreallocarray(db->aliases, cap, sizeof *db->aliases);
        }
        a = &db->aliases[db->n_aliases];
        memset(a, 0, sizeof *a);
        a->line = it.no;
        if (parse_alias_addr(db, line + kb, ke - kb, true, &a->key, &local, &why) != 0)
            return err_set(e, ERR_PARSE, "%s:%u: %s", f, it.no, why);
        db->n_aliases++;
        p = colon + 1;
        end = line + len;
        for (;;) {
            const char *q;
            char *addr;

            while (p < end && is_sep(*p))
                p++;
            if (p == end)
                break;
            q = p;
            while (q < end && !is_sep(*q))
                q++;
            if (parse_alias_addr(db, p, (size_t)(q - p), false, &addr, &local, &why) != 0)
                return err_set(e, ERR_PARSE, "%s:%u: %s", f, it.no, why);
            a->t = xreallocarray(a->t, a->n + 1, sizeof *a->t);
            a->t[a->n].addr = addr;
            a->t[a->n].local = local;
            a->n++;
            p = q;
        }
        if (a->n == 0)
            return err_set(e, ERR_PARSE, "%s:%u: alias %s has no targets", f, it.no, a->key);
    }
    map_init(&db->amap, db->n_aliases);
    for (size_t i = 0; i < db->n_aliases; i++) {
        size_t old;

        if (!map_put(&db->amap, db->aliases[i].key, i, &old))
            return err_set(e, ERR_PARSE, "%s:%u: alias %s is already on line %u", f,
                           db->aliases[i].line, db->aliases[i].key, db->aliases[old].line);
    }
    return 0;
}

/* ---- resolution ------------------------------------------------------------ */

#define ON_STACK 0xffu

struct rctx {
    const struct user_db *db;
    /* per alias: 0 not seen, ON_STACK being expanded, else the height of
     * its expansion (1 + the deepest alias below it) */
    unsigned char *state;
    struct users_target *out;   /* NULL: only check */
    struct err *e;
};

static void add_unique(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*v)[i], s) == 0)
            return;
    }
    *v = xreallocarray(*v, *n + 1, sizeof **v);
    (*v)[(*n)++] = xstrdup(s);
}

static void add_local(struct rctx *c, const char *name)
{
    if (c->out != NULL)
        add_unique(&c->out->local, &c->out->n_local, name);
}

static int resolve_key(struct rctx *c, const char *key, unsigned level, unsigned *height);

/* Expand alias a, entered at nesting level `level` (1 for the first). */
static int expand_alias(struct rctx *c, size_t a, unsigned level, unsigned *height)
{
    const struct alias *al = &c->db->aliases[a];
    unsigned h = 1;

    if (c->state == NULL)
        c->state = xcalloc(c->db->n_aliases, 1);
    if (c->state[a] == ON_STACK)
        return err_set(c->e, ERR_PARSE, "alias loop through %s", al->key);
    if (c->state[a] != 0) {
        /* Expanded already: its targets are in; only its depth here counts. */
        if (level + c->state[a] - 1 > USERS_ALIAS_DEPTH_MAX)
            return err_set(c->e, ERR_LIMIT, "aliases nested deeper than %d at %s",
                           USERS_ALIAS_DEPTH_MAX, al->key);
        *height = c->state[a];
        return 0;
    }
    if (level > USERS_ALIAS_DEPTH_MAX)
        return err_set(c->e, ERR_LIMIT, "aliases nested deeper than %d at %s",
                       USERS_ALIAS_DEPTH_MAX, al->key);
    c->state[a] = ON_STACK;
    for (size_t i = 0; i < al->n; i++) {
        const struct alias_target *t = &al->t[i];
        unsigned th = 0;
        int r;

        if (!t->local) {
            if (c->out != NULL)
                add_unique(&c->out->external, &c->out->n_external, t->addr);
            continue;
        }
        if (strcmp(t->addr, al->key) == 0) {
            /* "a: a, b" keeps a copy for the user a. */
            if (find_user(c->db, t->addr) == NULL)
                return err_set(c->e, ERR_PARSE, "alias %s names itself but is no user",
                               al->key);
            add_local(c, t->addr);
            continue;
        }
        r = resolve_key(c, t->addr, level, &th);
        if (r < 0)
            return -1;
        if (r > 0)
            return err_set(c->e, ERR_PARSE, "alias %s: no such local user or alias: %s",
                           al->key, t->addr);
        if (th + 1 > h)
            h = th + 1;
    }
    c->state[a] = (unsigned char)h;
    *height = h;
    return 0;
}

/* key: canonical local@domain of a local domain, at alias level `level`
 * (0 at the top).  0 done, 1 unknown (nothing added), -1 error. */
static int resolve_key(struct rctx *c, const char *key, unsigned level, unsigned *height)
{
    size_t a;
    const char *at;
    char *catchall;
    bool found;

    *height = 0;
    if (find_alias(c->db, key, &a))
        return expand_alias(c, a, level + 1, height);
    if (find_user(c->db, key) != NULL) {
        add_local(c, key);
        return 0;
    }
    at = strchr(key, '@');
    if (at == NULL || at == key)
        return 1;
    catchall = xstrdup(at);
    found = find_alias(c->db, catchall, &a);
    free(catchall);
    if (found)
        return expand_alias(c, a, level + 1, height);
    return 1;
}

/* Every alias must resolve: no loops, no depth beyond the limit, no target
 * that is neither a user nor an alias. */
static int check_aliases(struct user_db *db, struct err *e)
{
    struct rctx c = { db, NULL, NULL, e };
    int r = 0;

    for (size_t i = 0; i < db->n_aliases && r == 0; i++) {
        unsigned h;

        r = expand_alias(&c, i, 1, &h);
        if (r != 0)
            err_prefix(e, "%s:%u", db->aliases_file, db->aliases[i].line);
    }
    free(c.state);
    return r;
}

void users_target_free(struct users_target *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_local; i++)
        free(t->local[i]);
    free(t->local);
    for (size_t i = 0; i < t->n_external; i++)
        free(t->external[i]);
    free(t->external);
    memset(t, 0, sizeof *t);
}

/* "local@domain" (or a bare local part of the default domain) to the
 * canonical lower-case form.  0 ok, 1 not one of our domains, -1 not a
 * valid local address. */
static int canonical_addr(const struct user_db *db, const char *addr, char **out)
{
    const char *at = strrchr(addr, '@');
    size_t n = strlen(addr);
    char *low;
    size_t ln;

    if (n > USERS_LOCAL_MAX + 1 + USERS_DOMAIN_MAX)
        return at != NULL && !is_local_domain(db, at + 1) ? 1 : -1;
    low = lower_dup(addr, n);
    if (at == NULL) {
        if (!valid_local(low, n)) {
            free(low);
            return -1;
        }
        *out = xasprintf("%s@%s", low, db->domains[0]);
        free(low);
        return 0;
    }
    ln = (size_t)(at - addr);
    if (!is_local_domain(db, low + ln + 1)) {
        free(low);
        return 1;
    }
    if (!valid_local(low, ln)) {
        free(low);
        return -1;
    }
    *out = low;
    return 0;
}

enum users_resolve_result users_resolve(const struct user_db *db, const char *addr,
                                        struct users_target *out, struct err *e)
{
    struct rctx c = { db, NULL, out, e };
    char *key;
    unsigned h;
    int r;

    memset(out, 0, sizeof *out);
    r = canonical_addr(db, addr, &key);
    if (r == 1)
        return USERS_RESOLVE_NOT_LOCAL;
    if (r < 0)
        return USERS_RESOLVE_UNKNOWN;
    r = resolve_key(&c, key, 0, &h);
    free(key);
    free(c.state);
    if (r < 0) {
        users_target_free(out);
        return USERS_RESOLVE_ERROR;
    }
    if (r > 0 || out->n_local + out->n_external == 0) {
        users_target_free(out);
        return USERS_RESOLVE_UNKNOWN;
    }
    return USERS_RESOLVE_OK;
}

bool users_may_send_as(const struct user_db *db, const char *user, const char *addr)
{
    struct users_target t = { NULL, 0, NULL, 0 };
    struct rctx c = { db, NULL, &t, NULL };
    char *key;
    size_t a;
    unsigned h;
    bool ok = false;

    if (user == NULL || addr == NULL || find_user(db, user) == NULL)
        return false;
    if (canonical_addr(db, addr, &key) != 0)
        return false;
    if (strcmp(key, user) == 0) {
        free(key);
        return true;
    }
    /* Only an alias of its own, not a catch-all. */
    if (find_alias(db, key, &a) && expand_alias(&c, a, 1, &h) == 0) {
        for (size_t i = 0; i < t.n_local && !ok; i++)
            ok = strcmp(t.local[i], user) == 0;
    }
    free(c.state);
    users_target_free(&t);
    free(key);
    return ok;
}

int users_load(const struct user_db_opts *opts, struct user_db **out, struct err *e)
{
    struct user_db *db;
    struct buf b;

    *out = NULL;
    if (opts == NULL || opts->users_file == NULL || opts->n_domains == 0 ||
        opts->domains == NULL)
        return err_set(e, ERR_INVAL, "users: no users file or no local domains");
    if (check_template(opts->maildir_template, e) != 0)
        return -1;
    db = XNEW(struct user_db);
    db->domains = XNEWARRAY(char *, opts->n_domains);
    for (size_t i = 0; i < opts->n_domains; i++) {
        size_t n = strlen(opts->domains[i]);

        db->domains[db->n_domains++] = lower_dup(opts->domains[i], n);
        if (!valid_domain(db->domains[i], n)) {
            users_free(db);
            return err_set(e, ERR_INVAL, "users: bad local domain");
        }
    }
    db->template = xstrdup(opts->maildir_template);
    db->users_file = xstrdup(opts->users_file);
    db->aliases_file = opts->aliases_file != NULL ? xstrdup(opts->aliases_file) : NULL;

    if (read_whole(db->users_file, &b, false, NULL, e) != 0) {
        users_free(db);
        return -1;
    }
    if (parse_users(db, &b, e) != 0) {
        buf_free(&b);
        users_free(db);
        return -1;
    }
    buf_free(&b);
    if (db->aliases_file != NULL) {
        if (read_whole(db->aliases_file, &b, false, NULL, e) != 0) {
            users_free(db);
            return -1;
        }
        if (parse_aliases(db, &b, e) != 0) {
            buf_free(&b);
            users_free(db);
            return -1;
        }
        buf_free(&b);
        if (check_aliases(db, e) != 0) {
            users_free(db);
            return -1;
        }
    }
    /* Unknown logins are checked against a hash of the same kind and cost
     * as a real one. */
    for (size_t i = 0; i < db->n_users && db->dummy == NULL; i++) {
        if (db->users[i].hash != NULL)
            db->dummy = xstrdup(db->users[i].hash);
    }
    if (db->dummy == NULL) {
        char setting[CRYPT_GENSALT_OUTPUT_SIZE];

        if (gensalt(setting, (int)sizeof setting, e) != 0) {
            users_free(db);
            return -1;
        }
        db->dummy = xstrdup(setting);
    }
    *out = db;
    return 0;
}

size_t users_count(const struct user_db *db)
{
    return db->n_users;
}

int users_verify(const struct user_db *db, const char *login, const char *password,
                 char **canonical, struct err *e)
{
    const struct user *u = NULL;
    char *key = NULL;
    int r;

    if (login == NULL || password == NULL)
        return err_set(e, ERR_INVAL, "users: no login or password");
    if (canonical_addr(db, login, &key) == 0)
        u = find_user(db, key);
    free(key);
    if (strlen(password) > USERS_PASSWORD_MAX) {
        /* Still do the work: the answer must not come sooner. */
        check_password("", db->dummy);
        return 0;
    }
    if (u == NULL || u->hash == NULL) {
        check_password(password, db->dummy);
        return 0;
    }
    r = check_password(password, u->hash);
    if (r < 0)
        return err_set(e, ERR_IO, "crypt(3) failed on the hash of %s", u->name);
    if (r == 1 && canonical != NULL)
        *canonical = xstrdup(u->name);
    return r;
}

/* ---- Maildir paths --------------------------------------------------------- */

/* A piece from a name: no '/', no control character, no "..", not ".". */
static bool safe_part(const char *s)
{
    if (s[0] == '\0' || strcmp(s, ".") == 0 || strstr(s, "..") != NULL)
        return false;
    for (; *s != '\0'; s++) {
        if (*s == '/' || is_ctl((unsigned char)*s))
            return false;
    }
    return true;
}

/* The whole path: absolute, no "." or ".." component, no control chars. */
static bool safe_path(const char *p)
{
    if (p[0] != '/')
        return false;
    for (const char *c = p; *c != '\0';) {
        const char *s = strchr(c, '/');
        size_t n = s != NULL ? (size_t)(s - c) : strlen(c);

        if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        for (size_t i = 0; i < n; i++) {
            if (is_ctl((unsigned char)c[i]))
                return false;
        }
        c += n;
        if (*c == '/')
            c++;
    }
    return true;
}

int users_maildir(const struct user_db *db, const char *user, char **path, struct err *e)
{
    const struct user *u = find_user(db, user);
    struct buf b = BUF_INIT;
    const char *at;
    char *local, *p;

    if (u == NULL)
        return err_set(e, ERR_NOTFOUND, "no such user");
    at = strchr(u->name, '@');
    local = xstrndup(u->name, (size_t)(at - u->name));
    for (const char *t = db->template; *t != '\0'; t++) {
        const char *part;

        if (*t != '%') {
            buf_add(&b, t, 1);
            continue;
        }
        t++;
        switch (*t) {
        case 'u': part = u->name; break;
        case 'n': part = local; break;
        case 'd': part = at + 1; break;
        case 'h': part = u->home; break;
        default: part = "%"; break;
        }
        if (*t == 'h') {
            if (part == NULL || !safe_path(part)) {
                free(local);
                buf_free(&b);
                return err_set(e, ERR_INVAL, "%s: no usable home for %%h", u->name);
            }
        } else if (*t != '%' && !safe_part(part)) {
            free(local);
            buf_free(&b);
            return err_set(e, ERR_INVAL, "%s: the name cannot be part of a path", u->name);
        }
        buf_adds(&b, part);
    }
    free(local);
    p = buf_steal(&b, NULL);
    if (!safe_path(p)) {
        free(p);
        return err_set(e, ERR_INVAL, "%s: the maildir template gives a path that is not "
                       "absolute or has a . or .. component", u->name);
    }
    if (strlen(p) >= PATH_MAX) {
        free(p);
        return err_set(e, ERR_LIMIT, "%s: the Maildir path is too long", u->name);
    }
    *path = p;
    return 0;
}

/* ---- admin edits ----------------------------------------------------------- */

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

static int fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL ? xstrdup(".") : slash == path ? xstrdup("/")
                                             : xstrndup(path, (size_t)(slash - path));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r;

    free(dir);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* Write data to path: "<path>.tmp", fsync, rename, fsync of the
 * directory.  The new file gets old's mode and owner when old exists. */
static int replace_file(const char *path, const char *data, size_t len, const struct stat *old,
                        struct err *e)
{
    char *tmp = xasprintf("%s.tmp", path);
    mode_t mode = old != NULL ? (old->st_mode & 07777) : 0600;
    size_t half = len / 2;
    int fd = -1;

    if (step(STEP_TMP_OPEN) != 0)
        goto fail;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto fail;
    if (fchmod(fd, mode) != 0)
        goto fail;
    if (old != NULL && (old->st_uid != geteuid() || old->st_gid != getegid()) &&
        fchown(fd, old->st_uid, old->st_gid) != 0)
        goto fail;
    if (step(STEP_WRITE_HALF) != 0 || write_all(fd, data, half) != 0)
        goto fail;
    if (step(STEP_WRITE_REST) != 0 || write_all(fd, data + half, len - half) != 0)
        goto fail;
    if (step(STEP_FSYNC) != 0 || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (step(STEP_RENAME) != 0 || rename(tmp, path) != 0)
        goto fail;
    free(tmp);
    /* The change is made; a failed fsync of the directory cannot undo it. */
    if (step(STEP_DIR_FSYNC) == 0)
        (void)fsync_dir_of(path);
    return 0;

fail:
    err_sys(e, "%s", tmp);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

enum edit_op { EDIT_ADD, EDIT_DEL, EDIT_PASSWD };

/* The name field of a users file line, lower-cased (NULL for blank and
 * comment lines). */
static char *line_name(const char *line, size_t len)
{
    const char *c;
    size_t n;

    if (skip_line(line, len))
        return NULL;
    c = memchr(line, ':', len);
    n = c != NULL ? (size_t)(c - line) : len;
    if (c == NULL && n > 0 && line[n - 1] == '\r')
        n--;
    if (memchr(line, '\0', n) != NULL)
        return NULL;
    return lower_dup(line, n);
}

static int edit_file(const char *path, enum edit_op op, const char *name_in, const char *hash,
                     struct err *e)
{
    char *name, *lockpath;
    int lockfd;
    struct buf old, out = BUF_INIT;
    struct stat st;
    bool exists = true, found = false;
    struct lines it;
    const char *line;
    size_t len, full;
    int r = -1, rr;

    if (path == NULL || name_in == NULL)
        return err_set(e, ERR_INVAL, "users: no file or name");
    if (normalize_name(name_in, strlen(name_in), NULL, &name, e) != 0)
        return -1;
    lockpath = xasprintf("%s.lock", path);
    lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lockfd < 0) {
        err_sys(e, "%s", lockpath);
        free(lockpath);
        free(name);
        return -1;
    }
    while (flock(lockfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            err_sys(e, "lock %s", lockpath);
            goto out_lock;
        }
    }
    rr = read_whole(path, &old, true, &st, e);
    if (rr != 0) {
        if (rr < 0 || op != EDIT_ADD) {
            if (rr > 0)
                err_set(e, ERR_NOTFOUND, "no such user: %s", name);
            goto out_lock;
        }
        err_clear(e);
        exists = false;
        buf_init(&old, 0);
    } else if (geteuid() == 0) {
        struct stat lst;

        /* An edit as root leaves the lock usable by the file's owner. */
        if (fstat(lockfd, &lst) == 0 && (lst.st_uid != st.st_uid || lst.st_gid != st.st_gid) &&
            fchown(lockfd, st.st_uid, st.st_gid) != 0) {
            /* Not needed for this edit; only a later one by that owner. */
        }
    }
    it.p = buf_cstr(&old);
    it.end = it.p + old.len;
    it.no = 0;
    while (next_line(&it, &line, &len, &full)) {
        char *ln = line_name(line, len);
        bool match = ln != NULL && strcmp(ln, name) == 0;

        free(ln);
        if (!match) {
            buf_add(&out, line, full);
            continue;
        }
        found = true;
        if (op == EDIT_ADD) {
            err_set(e, ERR_EXISTS, "%s: user %s exists already (line %u)", path, name, it.no);
            goto out_old;
        }
        if (op == EDIT_PASSWD) {
            size_t body = len > 0 && line[len - 1] == '\r' ? len - 1 : len;
            const char *c1 = memchr(line, ':', body);
            const char *c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(line + body - c1 - 1))
                                        : NULL;

            /* Keep the name as written and every field after the password. */
            buf_add(&out, line, c1 != NULL ? (size_t)(c1 - line) : body);
            buf_adds(&out, ":");
            buf_adds(&out, hash);
            if (c2 != NULL)
                buf_add(&out, c2, full - (size_t)(c2 - line));
            else
                buf_add(&out, line + body, full - body);
        }
        /* EDIT_DEL: the line is left out. */
    }
    if (op == EDIT_ADD) {
        if (out.len > 0 && out.data[out.len - 1] != '\n')
            buf_adds(&out, "\n");
        buf_adds(&out, name);
        buf_adds(&out, ":");
        buf_adds(&out, hash);
        buf_adds(&out, ":::::\n");
    } else if (!found) {
        err_set(e, ERR_NOTFOUND, "no such user: %s", name);
        goto out_old;
    }
    r = replace_file(path, buf_cstr(&out), out.len, exists ? &st : NULL, e);

out_old:
    if (out.data != NULL)
        explicit_bzero(out.data, out.len);
    buf_free(&out);
    buf_free(&old);
out_lock:
    close(lockfd);
    free(lockpath);
    free(name);
    return r;
}

int users_file_add(const char *path, const char *name, const char *password, struct err *e)
{
    char *hash;
    int r;

    if (users_hash_password(password, &hash, e) != 0)
        return -1;
    r = edit_file(path, EDIT_ADD, name, hash, e);
    free(hash);
    return r;
}

int users_file_del(const char *path, const char *name, struct err *e)
{
    return edit_file(path, EDIT_DEL, name, NULL, e);
}

int users_file_passwd(const char *path, const char *name, const char *password,
                      struct err *e)
{
    char *hash;
    int r;

    if (users_hash_password(password, &hash, e) != 0)
        return -1;
    r = edit_file(path, EDIT_PASSWD, name, hash, e);
    free(hash);
    return r;
}

int users_file_list(const char *path, int (*fn)(void *ctx, const char *name), void *ctx,
                    struct err *e)
{
    struct buf b;
    struct lines it;
    const char *line;
    size_t len;
    int r = 0;

    if (read_whole(path, &b, false, NULL, e) != 0)
        return -1;
    it.p = buf_cstr(&b);
    it.end = it.p + b.len;
    it.no = 0;
    while (r == 0 && next_line(&it, &line, &len, NULL)) {
        const char *c;
        char *name;

        if (skip_line(line, len))
            continue;
        c = memchr(line, ':', len);
        if (c == NULL && line[len - 1] == '\r')
            len--;
        if (normalize_name(line, c != NULL ? (size_t)(c - line) : len, NULL, &name, e) != 0) {
            err_prefix(e, "%s:%u", path, it.no);
            r = -1;
            break;
        }
        r = fn(ctx, name);
        free(name);
    }
    buf_free(&b);
    return r;
}
