/* users_cli: `correod user add|del|passwd|list`: edits of the users file
 * named by the config, reading the password (stdin or a terminal with echo
 * off), and the Maildir with its special-use folders for a new user. */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "conf.h"
#include "maildir.h"
#include "users.h"

/* Longest password line read (the library takes up to 1024 bytes). */
#define PW_LINE_MAX 1100

static const char *const special_folders[] = {
    "Sent", "Drafts", "Trash", "Junk", "Archive",
};

static void usage(FILE *out)
{
    fputs("usage: correod user add|del|passwd|list [-c CONFIG] [NAME] [--password-stdin]\n"
          "\n"
          "  add NAME      add a user (NAME or NAME@DOMAIN of a local domain) and make\n"
          "                its Maildir with Sent, Drafts, Trash, Junk and Archive\n"
          "  del NAME      remove a user; the Maildir is left in place\n"
          "  passwd NAME   set a new password\n"
          "  list          print the users, one a line\n"
          "\n"
          "  -c CONFIG           the config file (default $CORREOD_CONF or\n"
          "                      /etc/correod/correod.conf)\n"
          "  --password-stdin    read the password as one line from standard input\n"
          "                      (else it is asked for twice on the terminal)\n", out);
}

static void print_diag(const struct rc_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "correod: %s\n", d->msgs[i]);
    if (d->dropped > 0)
        fprintf(stderr, "correod: ... and %zu more problems\n", d->dropped);
}

static char *lower_dup(const char *s)
{
    char *r = xstrdup(s);

    for (char *p = r; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    return r;
}

/* NAME -> user@domain with a local domain; NULL (after a message) if the
 * domain is not ours. */
static char *canonical_name(const struct conf *c, const char *name)
{
    char *low = lower_dup(name);
    char *at = strchr(low, '@');
    char *r;

    if (low[strspn(low, "abcdefghijklmnopqrstuvwxyz0123456789._+-@")] != '\0') {
        fputs("correod: user: bad user name (want local@domain, local part of "
              "a-z 0-9 . _ + -)\n", stderr);
        free(low);
        return NULL;
    }
    if (at == NULL) {
        r = xasprintf("%s@%s", low, c->domains[0]);
        free(low);
        return r;
    }
    if (!conf_is_local_domain(c, at + 1)) {
        fprintf(stderr, "correod: user: the domain of that name is not a local domain "
                "(local domains:");
        for (size_t i = 0; i < c->n_domains; i++)
            fprintf(stderr, " %s", c->domains[i]);
        fputs(")\n", stderr);
        free(low);
        return NULL;
    }
    return low;
}

/* ---- listing and lookup ------------------------------------------------ */

struct find {
    const struct conf *c;
    const char *name;      /* canonical */
    bool found;
};

static char *full_name(const struct conf *c, const char *name)
{
    return strchr(name, '@') != NULL ? xstrdup(name) : xasprintf("%s@%s", name, c->domains[0]);
}

static int find_fn(void *ctx, const char *name)
{
    struct find *f = ctx;
    char *full = full_name(f->c, name);

    if (strcmp(full, f->name) == 0)
        f->found = true;
    free(full);
    return 0;
}

static int print_fn(void *ctx, const char *name)
{
    const struct find *f = ctx;
    char *full = full_name(f->c, name);

    printf("%s\n", full);
    free(full);
    return 0;
}

/* 1 the user is in the file, 0 not (or no file), -1 error (printed). */
static int user_exists(const struct conf *c, const char *name)
{
    struct find f = { c, name, false };
    struct err e;

    if (users_file_list(c->users_file, find_fn, &f, &e) != 0) {
        if (e.code == ERR_NOTFOUND)
            return 0;
        fprintf(stderr, "correod: user: %s\n", e.text);
        return -1;
    }
    return f.found ? 1 : 0;
}

/* ---- passwords ----------------------------------------------------------- */

/* One line from f without its line end; -1 (after a message) on EOF, an
 * error, or a line too long. */
static int read_line(FILE *f, char *line, size_t size)
{
    size_t n;

    if (fgets(line, (int)size, f) == NULL) {
        fputs("correod: user: no password given\n", stderr);
        return -1;
    }
    n = strlen(line);
    if (n > 0 && line[n - 1] == '\n') {
        line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
    } else if (n == size - 1) {
        explicit_bzero(line, size);
        fputs("correod: user: the password is too long\n", stderr);
        return -1;
    }
    return 0;
}

static int ask_tty(FILE *tty, const char *prompt, char *line, size_t size)
{
    struct termios old, quiet;
    int fd = fileno(tty);
    int r;

    if (tcgetattr(fd, &old) != 0) {
        perror("correod: user: terminal");
        return -1;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    fputs(prompt, tty);
    fflush(tty);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        perror("correod: user: terminal");
        return -1;
    }
    r = read_line(tty, line, size);
    tcsetattr(fd, TCSAFLUSH, &old);
    return r;
}

/* The new password into line (size PW_LINE_MAX).  0 or -1 (printed). */
static int get_password(bool from_stdin, char *line)
{
    char again[PW_LINE_MAX];
    FILE *tty;
    int r = -1;

    if (from_stdin) {
        if (read_line(stdin, line, PW_LINE_MAX) != 0)
            return -1;
        if (line[0] == '\0') {
            fputs("correod: user: empty password refused\n", stderr);
            return -1;
        }
        return 0;
    }
    tty = fopen("/dev/tty", "r+");
    if (tty == NULL || !isatty(fileno(tty))) {
        fputs("correod: user: no terminal to ask for the password on; "
              "use --password-stdin\n", stderr);
        if (tty != NULL)
            fclose(tty);
        return -1;
    }
    if (ask_tty(tty, "New password: ", line, PW_LINE_MAX) != 0)
        goto out;
    if (line[0] == '\0') {
        fputs("correod: user: empty password refused\n", stderr);
        goto out;
    }
    if (ask_tty(tty, "Again: ", again, sizeof again) != 0)
        goto out;
    if (strcmp(line, again) != 0) {
        fputs("correod: user: the passwords differ\n", stderr);
        goto out;
    }
    r = 0;
out:
    explicit_bzero(again, sizeof again);
    if (r != 0)
        explicit_bzero(line, PW_LINE_MAX);
    fclose(tty);
    return r;
}

/* ---- the Maildir --------------------------------------------------------- */

/* Owner for what add creates: run_user when we are root, else nobody to
 * change to (uid -1). */
struct owner {
    uid_t uid;
    gid_t gid;
    bool set;
};

static int owner_for(const struct conf *c, struct owner *o)
{
    struct passwd *pw;

    o->set = false;
    if (geteuid() != 0 || c->run_user == NULL)
        return 0;
    errno = 0;
    pw = getpwnam(c->run_user);
    if (pw == NULL) {
        fprintf(stderr, "correod: user: run_user %s: %s\n", c->run_user,
                errno ? strerror(errno) : "no such user");
        return -1;
    }
    o->uid = pw->pw_uid;
    o->gid = pw->pw_gid;
    o->set = true;
    return 0;
}

static int make_dir(const char *path, const struct owner *o)
{
    struct stat st;

    if (mkdir(path, 0700) == 0) {
        if (o->set && lchown(path, o->uid, o->gid) != 0) {
            fprintf(stderr, "correod: user: chown %s: %s\n", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    fprintf(stderr, "correod: user: mkdir %s: %s\n", path, strerror(errno));
    return -1;
}

/* mkdir -p, each new directory 0700 (and owned by o). */
static int make_dirs(const char *path, const struct owner *o)
{
    char *p = xstrdup(path);
    int r = 0;

    for (char *s = strchr(p + 1, '/'); s != NULL && r == 0; s = strchr(s + 1, '/')) {
        *s = '\0';
        r = make_dir(p, o);
        *s = '/';
    }
    if (r == 0)
        r = make_dir(p, o);
    free(p);
    return r;
}

static const struct owner *chown_owner;

static int chown_fn(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)type;
    (void)ftw;
    if ((st->st_uid != chown_owner->uid || st->st_gid != chown_owner->gid) &&
        lchown(path, chown_owner->uid, chown_owner->gid) != 0) {
        fprintf(stderr, "correod: user: chown %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int make_maildir(const char *root, const struct owner *o)
{
    static const char *const subs[] = { "cur", "new", "tmp" };
    struct maildir *md;
    struct err e;
    int r = 0;

    if (make_dirs(root, o) != 0)
        return -1;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char *d = xasprintf("%s/%s", root, subs[i]);

        r = make_dir(d, o);
        free(d);
        if (r != 0)
            return -1;
    }
    if (maildir_open(root, &md, &e) != 0) {
        fprintf(stderr, "correod: user: %s\n", e.text);
        return -1;
    }
    for (size_t i = 0; i < sizeof special_folders / sizeof special_folders[0]; i++) {
        if (maildir_folder_create(md, special_folders[i], &e) != 0 && e.code != ERR_EXISTS) {
            fprintf(stderr, "correod: user: folder %s: %s\n", special_folders[i], e.text);
            r = -1;
            break;
        }
    }
    maildir_close(md);
    if (r == 0 && o->set) {
        chown_owner = o;
        r = nftw(root, chown_fn, 16, FTW_PHYS) == 0 ? 0 : -1;
    }
    return r;
}

static int load_db(const struct conf *c, struct user_db **db, struct err *e)
{
    struct user_db_opts o = {
        .users_file = c->users_file,
        .aliases_file = c->aliases_file,
        .domains = (const char *const *)c->domains,
        .n_domains = c->n_domains,
        .maildir_template = c->maildir_template,
    };

    return users_load(&o, db, e);
}

/* ---- the subcommands ----------------------------------------------------- */

static int do_add(const struct conf *c, const char *name, bool pw_stdin)
{
    char pw[PW_LINE_MAX];
    struct user_db *db;
    struct owner o;
    struct err e;
    char *path = NULL;
    int r;

    r = user_exists(c, name);
    if (r != 0) {
        if (r > 0)
            fprintf(stderr, "correod: user: %s exists already\n", name);
        return 1;
    }
    if (owner_for(c, &o) != 0)
        return 1;
    if (get_password(pw_stdin, pw) != 0)
        return 1;
    r = users_file_add(c->users_file, name, pw, &e);
    explicit_bzero(pw, sizeof pw);
    if (r != 0) {
        fprintf(stderr, "correod: user: %s\n", e.text);
        return 1;
    }
    if (load_db(c, &db, &e) != 0) {
        fprintf(stderr, "correod: user: added %s, but the users database does not load, "
                "so its Maildir was not made: %s\n", name, e.text);
        return 1;
    }
    r = users_maildir(db, name, &path, &e);
    users_free(db);
    if (r != 0) {
        fprintf(stderr, "correod: user: added %s, but it has no Maildir path: %s\n", name,
                e.text);
        return 1;
    }
    if (make_maildir(path, &o) != 0) {
        fprintf(stderr, "correod: user: added %s, but its Maildir %s is not complete\n", name,
                path);
        free(path);
        return 1;
    }
    printf("added %s (Maildir %s)\n", name, path);
    free(path);
    return 0;
}

static int do_passwd(const struct conf *c, const char *name, bool pw_stdin)
{
    char pw[PW_LINE_MAX];
    struct err e;
    int r = user_exists(c, name);

    if (r <= 0) {
        if (r == 0)
            fprintf(stderr, "correod: user: no such user: %s\n", name);
        return 1;
    }
    if (get_password(pw_stdin, pw) != 0)
        return 1;
    r = users_file_passwd(c->users_file, name, pw, &e);
    explicit_bzero(pw, sizeof pw);
    if (r != 0) {
        fprintf(stderr, "correod: user: %s\n", e.text);
        return 1;
    }
    printf("changed the password of %s\n", name);
    return 0;
}

static int do_del(const struct conf *c, const char *name)
{
    struct user_db *db;
    struct err e;
    char *path = NULL;

    if (load_db(c, &db, &e) == 0) {
        if (users_maildir(db, name, &path, &e) != 0)
            path = NULL;
        users_free(db);
    }
    if (users_file_del(c->users_file, name, &e) != 0) {
        fprintf(stderr, "correod: user: %s\n", e.text);
        free(path);
        return 1;
    }
    if (path != NULL)
        printf("deleted %s; its Maildir %s was left in place\n", name, path);
    else
        printf("deleted %s; its Maildir was left in place\n", name);
    free(path);
    /* An alias may still name the user: the server would refuse the files. */
    if (load_db(c, &db, &e) != 0) {
        fprintf(stderr, "correod: user: warning: the users and aliases no longer load: %s\n",
                e.text);
        return 1;
    }
    users_free(db);
    return 0;
}

static int do_list(const struct conf *c)
{
    struct find f = { c, NULL, false };
    struct err e;

    if (users_file_list(c->users_file, print_fn, &f, &e) != 0) {
        fprintf(stderr, "correod: user: %s\n", e.text);
        return 1;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int cmd_user(int argc, char **argv)
{
    const char *conf_path = NULL, *sub = NULL, *name_arg = NULL;
    bool pw_stdin = false, opts_done = false;
    struct conf *c = NULL;
    struct rc_diag diag;
    struct err e;
    char *name = NULL;
    int ret;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (!opts_done && a[0] == '-' && a[1] != '\0') {
            if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
                if (++i >= argc) {
                    fprintf(stderr, "correod: user: %s needs a file name\n", a);
                    return 2;
                }
                conf_path = argv[i];
            } else if (strncmp(a, "-c", 2) == 0) {
                conf_path = a + 2;
            } else if (strcmp(a, "--password-stdin") == 0) {
                pw_stdin = true;
            } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                usage(stdout);
                return 0;
            } else if (strcmp(a, "--") == 0) {
                opts_done = true;
            } else {
                fprintf(stderr, "correod: user: unknown option\n");
                usage(stderr);
                return 2;
            }
        } else if (sub == NULL) {
            sub = a;
        } else if (name_arg == NULL) {
            name_arg = a;
        } else {
            fputs("correod: user: too many arguments\n", stderr);
            usage(stderr);
            return 2;
        }
    }
    if (sub == NULL) {
        usage(stderr);
        return 2;
    }
    if (strcmp(sub, "list") == 0) {
        if (name_arg != NULL || pw_stdin) {
            usage(stderr);
            return 2;
        }
    } else if (strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0 ||
               strcmp(sub, "passwd") == 0) {
        if (name_arg == NULL) {
            fprintf(stderr, "correod: user %s: which user?\n", sub);
            usage(stderr);
            return 2;
        }
        if (pw_stdin && strcmp(sub, "del") == 0) {
            usage(stderr);
            return 2;
        }
    } else {
        fputs("correod: user: unknown subcommand (add, del, passwd or list)\n", stderr);
        usage(stderr);
        return 2;
    }

    if (conf_path == NULL)
        conf_path = conf_default_path();
    rc_diag_init(&diag);
    if (conf_load(conf_path, &c, &diag, &e) != 0) {
        print_diag(&diag);
        fprintf(stderr, "correod: %s\n", e.text);
        rc_diag_free(&diag);
        return 1;
    }
    rc_diag_free(&diag);
    if (c->n_domains == 0 || c->users_file == NULL) {
        fputs("correod: user: the config names no domains or no users file\n", stderr);
        conf_free(c);
        return 1;
    }
    if (name_arg != NULL) {
        name = canonical_name(c, name_arg);
        if (name == NULL) {
            conf_free(c);
            return 1;
        }
    }
    if (strcmp(sub, "add") == 0)
        ret = do_add(c, name, pw_stdin);
    else if (strcmp(sub, "passwd") == 0)
        ret = do_passwd(c, name, pw_stdin);
    else if (strcmp(sub, "del") == 0)
        ret = do_del(c, name);
    else
        ret = do_list(c);
    free(name);
    conf_free(c);
    return ret;
}
