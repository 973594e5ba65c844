/*
 * correo: command line entry point.
 *
 * `correo [-f MAILBOX]` runs the interactive client (mua/app).  `correo -l
 * [-f PATH]` prints a listing of every folder of a Maildir or Maildir++ tree
 * instead: per folder its counts, per message its flags, date, sender and
 * subject, oldest first; every string from a message passes lib/sanitize.
 *
 * `correo fetch [ACCOUNT...]` downloads pop:// and pops:// accounts
 * (mua/fetch): quiet unless something is new or wrong; exit status 0, 1
 * (some account failed), 2 (usage) or 75 (another fetch holds a lock).
 *
 * Exit status: 0 done; 1 the mailbox could not be opened (listing: or a
 * message could not be read; the others are still listed); 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <locale.h>

#include "app.h"
#include "batch.h"
#include "buf.h"
#include "config.h"
#include "err.h"
#include "fetch.h"
#include "imap.h"
#include "mailbox.h"
#include "maildir.h"
#include "message.h"
#include "sanitize.h"
#include "xalloc.h"

#define HEADER_READ_MAX (1024 * 1024)
#define FROM_COLS 22

struct row {
    time_t date;
    char flags[3];
    char *from;       /* sanitized */
    char *subject;    /* sanitized */
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: correo [-n] [-F FILE] [-R] [-f MAILBOX]\n"
            "       correo [-n] [-F FILE] -s SUBJECT [-c CC] [-b BCC] [-a FILE...] -- ADDRESS... < BODY\n"
            "       correo -l [-f MAILDIR]\n"
            "       correo -D [-n] [-F FILE]\n"
            "       correo [-n] [-F FILE] fetch [ACCOUNT...]\n"
            "       correo --help | --version\n"
            "\n"
            "  -f MAILBOX   the mailbox to open (default: $spoolfile, else $folder)\n"
            "  -F FILE      read FILE instead of ~/.config/correo/correorc\n"
            "  -n           read no configuration file\n"
            "  -R           open the mailbox read-only\n"
            "  -l           print a listing of every folder and exit\n"
            "               (default tree: $MAILDIR, else ~/Maildir; with\n"
            "               -f notmuch://?query=Q the messages of a notmuch query)\n"
            "  -D           print the configuration problems and the options, and exit\n"
            "  -s SUBJECT   send a message without the interface: the body is read\n"
            "               from standard input; -c and -b add Cc and Bcc (repeatable),\n"
            "               -a attaches files (all up to \"--\"); exit 0 when sent\n"
            "  fetch        download the pop:// and pops:// accounts (all, or those\n"
            "               named) into their Maildir folders\n");
}

/* Read the header block of fd: up to the first empty line, at most
 * HEADER_READ_MAX bytes. */
static int read_header(int fd, struct buf *out, struct err *e)
{
    for (;;) {
        char *p = buf_reserve(out, 16384);
        ssize_t n;

        if (!p)
            return 0;   /* ceiling: the parser takes what we have */
        n = read(fd, p, 16384);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, "read");
        }
        if (n == 0)
            return 0;
        buf_commit(out, (size_t)n);
        if (memmem(out->data, out->len, "\n\n", 2) || memmem(out->data, out->len, "\r\n\r\n", 4))
            return 0;
    }
}

static char *clean(const char *s)
{
    return s ? sanitize_term_dup(s, strlen(s), 0) : xstrdup("");
}

static int read_row(const struct maildir_folder *f, const struct maildir_entry *ent,
                    struct row *row, struct err *e)
{
    struct maildir_ref ref = MAILDIR_REF_INIT;
    struct message *m = NULL;
    struct buf hdr;
    int fd = -1, rc = -1;

    maildir_ref_set(&ref, ent->sub, ent->name);
    if (maildir_open_message(f, &ref, &fd, e) < 0)
        goto out;
    buf_init(&hdr, HEADER_READ_MAX);
    if (read_header(fd, &hdr, e) < 0) {
        buf_free(&hdr);
        goto out;
    }
    if (message_parse_headers(hdr.data ? hdr.data : "", hdr.len, NULL, &m, e) < 0) {
        buf_free(&hdr);
        goto out;
    }

    const struct msg_envelope *env = &m->env;
    row->date = env->date_valid ? env->date : 0;
    if (ent->flags & MAILDIR_F_TRASHED)
        row->flags[0] = 'd';
    else if (ent->sub == MAILDIR_SUB_NEW)
        row->flags[0] = 'N';
    else if (!(ent->flags & MAILDIR_F_SEEN))
        row->flags[0] = 'O';
    else if (ent->flags & MAILDIR_F_REPLIED)
        row->flags[0] = 'r';
    else
        row->flags[0] = ' ';
    row->flags[1] = (ent->flags & MAILDIR_F_FLAGGED) ? '!'
                    : (ent->flags & MAILDIR_F_DRAFT) ? 'D' : ' ';
    row->flags[2] = '\0';
    if (env->from.n > 0)
        row->from = clean(env->from.v[0].name && env->from.v[0].name[0]
                              ? env->from.v[0].name : env->from.v[0].addr);
    else
        row->from = clean("(no sender)");
    row->subject = clean(env->subject ? env->subject : "(no subject)");
    message_free(m);
    buf_free(&hdr);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    maildir_ref_free(&ref);
    return rc;
}

static int by_date(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    return (x->date > y->date) - (x->date < y->date);
}

/* Print s in exactly cols columns (cut or padded); cols 0: all of it. */
static void put_cols(const char *s, size_t cols)
{
    size_t len = strlen(s), used;

    if (cols == 0) {
        fputs(s, stdout);
        return;
    }
    size_t n = sanitize_fit(s, len, cols, &used);
    fwrite(s, 1, n, stdout);
    for (; used < cols; used++)
        putchar(' ');
}

/* correo -l -f notmuch://... or imap[s]://...: the same listing for a
 * mailbox opened through mua/mailbox, from the records its backend made.
 * cfg (may be NULL) gives the header cache and the IMAP settings. */
static int list_mailbox(const char *path, const struct config *cfg, size_t term_cols)
{
    struct mailbox_open_opts o = {MAILBOX_READONLY, NULL};
    struct mailbox *mb = NULL;
    struct err e;
    size_t n_new = 0, n_unread = 0, n_flagged = 0, n_rows = 0;
    struct row *rows;

    if (cfg && cfg->opt.header_cache && *cfg->opt.header_cache)
        o.hcache_dir = cfg->opt.header_cache;
    if (mailbox_open_opts(path, &o, &mb, &e) < 0 ||
        mailbox_load(mb, NULL, NULL, &e) < 0) {
        char *p = clean(path);
        fprintf(stderr, "correo: %s: %s\n", p, e.text);
        free(p);
        mailbox_close(mb);
        return 1;
    }
    rows = xcalloc(store_count(&mb->store) ? store_count(&mb->store) : 1, sizeof *rows);
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);
        const char *from = store_str(&mb->store, m->from);
        const char *subject = store_str(&mb->store, m->subject);
        unsigned f = m->flags;
        struct row *r = &rows[n_rows++];

        r->date = (time_t)m->date;
        r->flags[0] = (f & MSG_TRASHED) ? 'd' : (f & MSG_NEW) ? 'N' : !(f & MSG_SEEN) ? 'O'
                    : (f & MSG_REPLIED) ? 'r' : ' ';
        r->flags[1] = (f & MSG_FLAGGED) ? '!' : (f & MSG_DRAFT) ? 'D' : ' ';
        r->flags[2] = '\0';
        r->from = clean(*from ? from : "(no sender)");
        r->subject = clean(*subject ? subject : "(no subject)");
        n_new += (f & MSG_NEW) != 0;
        n_unread += (f & MSG_NEW) || !(f & MSG_SEEN);
        n_flagged += (f & MSG_FLAGGED) != 0;
    }
    qsort(rows, n_rows, sizeof *rows, by_date);

    char *shown = clean(mb->name);
    printf("%s: %zu messages, %zu new, %zu unread, %zu flagged\n", shown, n_rows, n_new,
           n_unread, n_flagged);
    free(shown);
    for (size_t i = 0; i < n_rows; i++) {
        char date[32] = "                ";
        struct tm tm;
        size_t fixed = 2 + 2 + 16 + 2 + FROM_COLS + 2;

        if (rows[i].date && localtime_r(&rows[i].date, &tm))
            strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
        printf("%s  %-16s  ", rows[i].flags, date);
        put_cols(rows[i].from, FROM_COLS);
        fputs("  ", stdout);
        put_cols(rows[i].subject, term_cols > fixed ? term_cols - fixed : 0);
        putchar('\n');
        free(rows[i].from);
        free(rows[i].subject);
    }
    free(rows);
    mailbox_close(mb);
    return 0;
}

static int run_client(const char *folder, const char *rcfile, bool no_rc, bool readonly,
                      bool dump)
{
    struct config *cfg = config_new();
    struct err e;
    int status;

    if (config_load(cfg, rcfile, no_rc ? CONFIG_NO_RC : 0, &e) < 0) {
        fprintf(stderr, "correo: %s\n", e.text);
        config_free(cfg);
        return 1;
    }
    if (dump) {
        for (size_t i = 0; i < cfg->diag.n; i++) {
            char *safe = sanitize_term_dup(cfg->diag.msgs[i], strlen(cfg->diag.msgs[i]), 0);
            fprintf(stderr, "%s\n", safe);
            free(safe);
        }
        char *all = config_dump(cfg, false);
        fputs(all, stdout);
        free(all);
        status = cfg->diag.n ? 1 : 0;
    } else {
        struct app_opts o = {folder, readonly};
        status = app_run(cfg, &o);
    }
    config_free(cfg);
    return status;
}

static int list_folder(const struct maildir *md, const char *name, size_t term_cols)
{
    struct maildir_folder *f;
    struct maildir_scan *scan;
    struct err e;
    size_t n_new = 0, n_unread = 0, n_flagged = 0, n_rows = 0;
    struct row *rows;
    int status = 0;

    if (maildir_folder_open(md, name, &f, &e) < 0 || maildir_scan(f, 0, &scan, &e) < 0) {
        char *n = clean(name);
        fprintf(stderr, "correo: %s: %s\n", n, e.text);
        free(n);
        return 1;
    }
    rows = xcalloc(scan->n ? scan->n : 1, sizeof *rows);
    for (size_t i = 0; i < scan->n; i++) {
        const struct maildir_entry *ent = &scan->v[i];
        if (read_row(f, ent, &rows[n_rows], &e) < 0) {
            char *fname = clean(ent->name);
            fprintf(stderr, "correo: %s: %s\n", fname, e.text);
            free(fname);
            status = 1;
            continue;
        }
        n_new += ent->sub == MAILDIR_SUB_NEW;
        n_unread += ent->sub == MAILDIR_SUB_NEW || !(ent->flags & MAILDIR_F_SEEN);
        n_flagged += (ent->flags & MAILDIR_F_FLAGGED) != 0;
        n_rows++;
    }
    qsort(rows, n_rows, sizeof *rows, by_date);

    char *shown = clean(name);
    printf("%s: %zu messages, %zu new, %zu unread, %zu flagged\n", shown, n_rows, n_new,
           n_unread, n_flagged);
    free(shown);
    for (size_t i = 0; i < n_rows; i++) {
        char date[32] = "                ";
        struct tm tm;
        /* flags(2) + 2 spaces + date(16) + 2 + from + 2 */
        size_t fixed = 2 + 2 + 16 + 2 + FROM_COLS + 2;

        if (rows[i].date && localtime_r(&rows[i].date, &tm))
            strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
        printf("%s  %-16s  ", rows[i].flags, date);
        put_cols(rows[i].from, FROM_COLS);
        fputs("  ", stdout);
        put_cols(rows[i].subject, term_cols > fixed ? term_cols - fixed : 0);
        putchar('\n');
        free(rows[i].from);
        free(rows[i].subject);
    }
    free(rows);
    free(scan);
    maildir_folder_close(f);
    return status;
}

static void fetch_say(void *ctx, bool error, const char *text)
{
    bool *progress_line = ctx;

    if (*progress_line) {
        fputs("\r\033[K", stderr);
        *progress_line = false;
    }
    if (error)
        fprintf(stderr, "correo: %s\n", text);
    else
        printf("%s\n", text);
    fflush(stdout);
}

static void fetch_progress(void *ctx, const char *text)
{
    bool *progress_line = ctx;

    fprintf(stderr, "\r\033[K%s", text);
    fflush(stderr);
    *progress_line = text[0] != '\0';
}

/* correo fetch [ACCOUNT...] */
static int run_fetch(const char *rcfile, bool no_rc, char **names, size_t n)
{
    struct config *cfg = config_new();
    bool progress_line = false;
    struct fetch_ui ui = {fetch_say, NULL, &progress_line};
    struct err e;
    int st;

    if (isatty(STDERR_FILENO))
        ui.progress = fetch_progress;
    if (config_load(cfg, rcfile, no_rc ? CONFIG_NO_RC : 0, &e) < 0) {
        fprintf(stderr, "correo: %s\n", e.text);
        config_free(cfg);
        return FETCH_FAILED;
    }
    for (size_t i = 0; i < cfg->diag.n; i++) {
        char *s = sanitize_term_dup(cfg->diag.msgs[i], strlen(cfg->diag.msgs[i]), 0);

        fprintf(stderr, "correo: %s\n", s);
        free(s);
    }
    st = fetch_run(cfg, (const char *const *)names, n, &ui, NULL);
    config_free(cfg);
    if (fflush(stdout) != 0 && st == FETCH_OK)
        st = FETCH_FAILED;
    return st;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"list", no_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *rcfile = NULL, *subject = NULL;
    bool list = false, no_rc = false, readonly = false, dump = false, batch = false;
    const char **cc = xcalloc((size_t)argc + 1, sizeof *cc);
    const char **bcc = xcalloc((size_t)argc + 1, sizeof *bcc);
    const char **attach = xcalloc((size_t)argc + 1, sizeof *attach);
    size_t n_cc = 0, n_bcc = 0, n_attach = 0;
    char *owned = NULL;
    struct maildir *md;
    struct maildir_folder_list *folders;
    struct err e;
    struct winsize ws;
    size_t term_cols = 0;
    int c, status = 0;

    setlocale(LC_ALL, "");
    /* mutt's "-a FILE... --": every word after -a up to the next option or
     * "--" is a file; take them out before getopt sees them. */
    {
        int k = 1, out = 1;
        while (k < argc) {
            if (strcmp(argv[k], "--") == 0) {
                while (k < argc)
                    argv[out++] = argv[k++];
                break;
            }
            if (strcmp(argv[k], "-a") == 0) {
                batch = true;
                k++;
                while (k < argc && argv[k][0] != '-')
                    attach[n_attach++] = argv[k++];
                continue;
            }
            argv[out++] = argv[k++];
        }
        argc = out;
    }
    while ((c = getopt_long(argc, argv, "f:F:lnRDhVs:c:b:", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            subject = optarg;
            batch = true;
            break;
        case 'c':
            cc[n_cc++] = optarg;
            batch = true;
            break;
        case 'b':
            bcc[n_bcc++] = optarg;
            batch = true;
            break;
        case 'f':
            path = optarg;
            break;
        case 'F':
            rcfile = optarg;
            break;
        case 'l':
            list = true;
            break;
        case 'n':
            no_rc = true;
            break;
        case 'R':
            readonly = true;
            break;
        case 'D':
            dump = true;
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto early;
        case 'V':
            printf("correo %s\n", CORREO_VERSION);
            status = 0;
            goto early;
        default:
            usage(stderr);
            status = 2;
            goto early;
        }
    }
    if (!batch && !list && !dump && optind < argc && strcmp(argv[optind], "fetch") == 0) {
        free(cc);
        free(bcc);
        free(attach);
        if (path != NULL || readonly) {
            usage(stderr);
            return FETCH_USAGE;
        }
        return run_fetch(rcfile, no_rc, argv + optind + 1, (size_t)(argc - optind - 1));
    }
    if (batch || (optind < argc && !list)) {
        struct config *cfg = config_new();
        struct batch_opts bo = {subject, (const char *const *)argv + optind,
                                (size_t)(argc - optind), cc, n_cc, bcc, n_bcc, attach, n_attach};
        int st;
        if (config_load(cfg, rcfile, no_rc ? CONFIG_NO_RC : 0, &e) < 0) {
            fprintf(stderr, "correo: %s\n", e.text);
            st = 1;
        } else {
            st = batch_send(cfg, &bo);
        }
        config_free(cfg);
        free(cc);
        free(bcc);
        free(attach);
        return st;
    }
    free(cc);
    free(bcc);
    free(attach);
    cc = bcc = attach = NULL;
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!list) {
        if (!dump && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
            fprintf(stderr, "correo: the interactive client needs a terminal (use -l for a listing)\n");
            return 2;
        }
        return run_client(path, rcfile, no_rc, readonly, dump);
    }
    if (!path)
        path = getenv("MAILDIR");
    if (!path || !*path) {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            fprintf(stderr, "correo: no -f given and neither $MAILDIR nor $HOME is set\n");
            return 2;
        }
        path = owned = xasprintf("%s/Maildir", home);
    }
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        term_cols = ws.ws_col;

    if (imap_url_is(path)) {
        /* the account's settings (user, password, pin) come from correorc */
        struct config *cfg = config_new();
        if (config_load(cfg, rcfile, no_rc ? CONFIG_NO_RC : 0, &e) < 0) {
            fprintf(stderr, "correo: %s\n", e.text);
            config_free(cfg);
            free(owned);
            return 1;
        }
        imap_settings_from_config(cfg);
        status = list_mailbox(path, cfg, term_cols);
        imap_settings_set(NULL);
        config_free(cfg);
        free(owned);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "correo: writing the listing: %s\n", strerror(errno));
            return 1;
        }
        return status;
    }
    if (strncmp(path, MAILBOX_NOTMUCH_PREFIX, strlen(MAILBOX_NOTMUCH_PREFIX)) == 0) {
        status = list_mailbox(path, NULL, term_cols);
        free(owned);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, "correo: writing the listing: %s\n", strerror(errno));
            return 1;
        }
        return status;
    }
    md = NULL;
    if (maildir_open(path, &md, &e) < 0 || maildir_list_folders(md, &folders, &e) < 0) {
        char *p = clean(path);
        fprintf(stderr, "correo: %s: %s\n", p, e.text);
        free(p);
        if (md)
            maildir_close(md);
        free(owned);
        return 1;
    }
    for (size_t i = 0; i < folders->n; i++) {
        if (i > 0)
            putchar('\n');
        if (list_folder(md, folders->v[i].name, term_cols) != 0)
            status = 1;
    }
    free(folders);
    maildir_close(md);
    free(owned);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "correo: writing the listing: %s\n", strerror(errno));
        return 1;
    }
    return status;

early:
    free(cc);
    free(bcc);
    free(attach);
    return status;
}
