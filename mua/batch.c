/* batch: build, send and file a message from the command line. */
#include "batch.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alias.h"
#include "buf.h"
#include "charset.h"
#include "compose.h"
#include "maildir.h"
#include "sanitize.h"
#include "send.h"
#include "xalloc.h"

#define BODY_MAX (64u << 20)
#define ATTACH_MAX (64u << 20)

static void say(const char *fmt, ...) CORREO_PRINTF(1, 2);

static void say(const char *fmt, ...)
{
    char raw[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    char *safe = sanitize_term_dup(raw, strlen(raw), SAN_KEEP_NEWLINE);
    fprintf(stderr, "correo: %s\n", safe);
    free(safe);
}

static int read_stdin(struct buf *out, struct err *e)
{
    buf_init(out, BODY_MAX);
    for (;;) {
        char *p = buf_reserve(out, 65536);
        ssize_t n;
        if (!p)
            return err_set(e, ERR_LIMIT, "the message on standard input is larger than %u bytes",
                           BODY_MAX);
        n = read(STDIN_FILENO, p, 65536);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, "reading standard input");
        }
        if (n == 0)
            return 0;
        buf_commit(out, (size_t)n);
    }
}

/* Expand aliases in each argument and add the addresses to list. */
static int add_recipients(const struct alias_db *db, const char *const *args, size_t n,
                          struct msg_addr_list *list, struct err *e)
{
    for (size_t i = 0; i < n; i++) {
        struct msg_addrlist out = {NULL, 0};
        if (alias_expand(db, args[i], &out, e) < 0) {
            err_prefix(e, "%s", args[i]);
            return -1;
        }
        for (size_t k = 0; k < out.n; k++)
            compose_addrs_add(list, out.v[k].name, out.v[k].addr);
        alias_addrlist_free(&out);
    }
    return 0;
}

/* A mailbox option ($record, $postponed) as a Maildir folder, created as a
 * Maildir++ subfolder of $folder when it does not exist yet. */
static int open_folder(const struct config *cfg, const char *option_value,
                       struct maildir_folder **out, struct err *e)
{
    char *path = config_mailbox_path(cfg, option_value);
    char *root = config_mailbox_path(cfg, "=");
    struct stat st;
    int rc;
    size_t rl = strlen(root);

    while (rl > 1 && root[rl - 1] == '/')
        root[--rl] = '\0';

    if (stat(path, &st) < 0 && (option_value[0] == '+' || option_value[0] == '=')) {
        /* "+Sent" in a Maildir++ tree is the folder ".Sent" */
        char *alt = xasprintf("%s/.%s", root, option_value + 1);
        free(path);
        path = alt;
        if (stat(path, &st) < 0) {
            struct maildir *md;
            if (maildir_open(root, &md, e) < 0) {
                free(path);
                free(root);
                return -1;
            }
            rc = maildir_folder_create(md, option_value + 1, e);
            maildir_close(md);
            if (rc < 0) {
                free(path);
                free(root);
                return -1;
            }
        }
    }
    rc = maildir_folder_open_path(path, out, e);
    free(path);
    free(root);
    return rc;
}

/* Store a copy (Bcc kept, LF line ends) in a folder with flags. */
static int file_copy(const struct config *cfg, const char *option_value,
                     const struct compose_msg *m, const struct compose_opts *base,
                     unsigned flags, char **where, struct err *e)
{
    struct compose_opts o = *base;
    struct buf data = BUF_INIT;
    struct maildir_folder *f;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    int rc = -1;

    o.with_bcc = true;
    o.lf = true;
    o.eightbit_ok = true;
    if (compose_render(m, &o, &data, e) < 0)
        goto out;
    if (open_folder(cfg, option_value, &f, e) < 0)
        goto out;
    struct maildir_deliver_opts d = {true, flags, NULL};
    rc = maildir_deliver(f, data.data ? data.data : "", data.len, &d, &ref, e);
    if (rc == 0 && where)
        *where = xasprintf("%s/cur/%s", f->path, ref.name ? ref.name : "");
    maildir_ref_free(&ref);
    maildir_folder_close(f);
out:
    buf_free(&data);
    return rc;
}

static char *host_name(const struct config *cfg)
{
    char h[256];

    if (cfg->opt.hostname && *cfg->opt.hostname)
        return xstrdup(cfg->opt.hostname);
    if (gethostname(h, sizeof h) == 0) {
        h[sizeof h - 1] = '\0';
        return xstrdup(h);
    }
    return xstrdup("localhost");
}

int batch_send(struct config *cfg, const struct batch_opts *bo)
{
    struct compose_msg m;
    struct compose_opts co;
    struct alias_db aliases;
    struct rc_diag diag;
    struct buf body = BUF_INIT;
    struct err e;
    char *host = host_name(cfg), *env_from = NULL, **rcpts = NULL;
    size_t n_rcpts = 0;
    int status = 1;

    compose_msg_init(&m);
    alias_db_init(&aliases);
    rc_diag_init(&diag);
    alias_add_config(&aliases, cfg, &diag);
    if (cfg->opt.alias_file && *cfg->opt.alias_file) {
        char *path = config_mailbox_path(cfg, cfg->opt.alias_file);
        if (alias_load(&aliases, path, &diag, &e) < 0 && e.code != ERR_NOTFOUND)
            say("%s", e.text);
        free(path);
    }
    for (size_t i = 0; i < diag.n; i++)
        say("%s", diag.msgs[i]);

    memset(&co, 0, sizeof co);
    co.hostname = host;

    /* From: $from (with $realname) is required */
    const char *from = cfg->opt.from;
    if (!from || !*from) {
        say("set $from in the configuration (e.g. set from=you@example.org)");
        status = 2;
        goto out;
    }
    if (compose_parse_addresses(from, &m.from, &e) < 0) {
        say("$from: %s", e.text);
        status = 2;
        goto out;
    }
    if (m.from.n == 1 && (!m.from.v[0].name || !*m.from.v[0].name) && cfg->opt.realname &&
        *cfg->opt.realname) {
        free(m.from.v[0].name);
        m.from.v[0].name = xstrdup(cfg->opt.realname);
    }
    if (add_recipients(&aliases, bo->to, bo->n_to, &m.to, &e) < 0 ||
        add_recipients(&aliases, bo->cc, bo->n_cc, &m.cc, &e) < 0 ||
        add_recipients(&aliases, bo->bcc, bo->n_bcc, &m.bcc, &e) < 0) {
        say("%s", e.text);
        status = 2;
        goto out;
    }
    if (m.to.n + m.cc.n + m.bcc.n == 0) {
        say("no recipients: give addresses after the options (correo -s SUBJECT -- ADDRESS...)");
        status = 2;
        goto out;
    }
    compose_set_subject(&m, bo->subject ? bo->subject : "");
    if (read_stdin(&body, &e) < 0) {
        say("%s", e.text);
        goto out;
    }
    {
        /* the body must be UTF-8: anything else is repaired visibly */
        struct buf utf8 = BUF_INIT;
        unsigned flags = 0;
        if (charset_to_utf8("utf-8", body.data ? body.data : "", body.len, &utf8, &flags) < 0) {
            say("the message body could not be converted to UTF-8");
            buf_free(&utf8);
            goto out;
        }
        if (flags & CHARSET_REPLACED)
            say("the message body was not valid UTF-8; invalid bytes were replaced");
        compose_set_body(&m, buf_cstr(&utf8));
        buf_free(&utf8);
    }
    for (size_t i = 0; i < bo->n_attach; i++) {
        if (compose_attach_file(&m, bo->attach[i], ATTACH_MAX, &e) < 0) {
            say("%s", e.text);
            status = 2;
            goto out;
        }
    }
    if (cfg->opt.user_agent)
        compose_add_header(&m, "User-Agent", "correo/" CORREO_VERSION);
    if (compose_prepare(&m, &co, &e) < 0 || compose_check(&m, &e) < 0) {
        say("%s", e.text);
        status = 2;
        goto out;
    }

    struct buf wire = BUF_INIT;
    struct send_opts so;
    memset(&so, 0, sizeof so);
    so.url = cfg->opt.smtp_url && *cfg->opt.smtp_url ? cfg->opt.smtp_url : NULL;
    so.pass = cfg->opt.smtp_pass && *cfg->opt.smtp_pass ? cfg->opt.smtp_pass : NULL;
    so.pass_cmd = cfg->opt.smtp_pass_cmd && *cfg->opt.smtp_pass_cmd ? cfg->opt.smtp_pass_cmd
                                                                     : NULL;
    so.oauth_cmd = cfg->opt.smtp_oauth_refresh_command && *cfg->opt.smtp_oauth_refresh_command
                       ? cfg->opt.smtp_oauth_refresh_command : NULL;
    so.tls_fingerprint = cfg->opt.tls_fingerprint && *cfg->opt.tls_fingerprint
                             ? cfg->opt.tls_fingerprint : NULL;
    so.helo_name = host;
    if (!so.url)
        so.sendmail = cfg->opt.sendmail;

    int sent = -1;
    co.eightbit_ok = false;   /* quoted-printable: correct whatever the server offers */
    if (compose_render(&m, &co, &wire, &e) == 0 &&
        compose_envelope(&m, &env_from, &rcpts, &n_rcpts, &e) == 0)
        sent = send_message(&so, env_from, (const char *const *)rcpts, n_rcpts,
                            wire.data ? wire.data : "", wire.len, &e);
    buf_free(&wire);

    if (sent < 0) {
        struct err pe;
        char *where = NULL;
        say("not sent: %s", e.text);
        if (file_copy(cfg, cfg->opt.postponed && *cfg->opt.postponed ? cfg->opt.postponed
                                                                     : "+Drafts",
                      &m, &co, MAILDIR_F_DRAFT, &where, &pe) == 0)
            say("the message was kept in %s", where);
        else
            say("the message could not be kept either (%s); it is still on your side of the "
                "pipe", pe.text);
        free(where);
        status = 1;
        goto out;
    }
    status = 0;
    if (cfg->opt.record && *cfg->opt.record) {
        struct err re;
        if (file_copy(cfg, cfg->opt.record, &m, &co, MAILDIR_F_SEEN, NULL, &re) < 0)
            say("sent, but the copy to %s failed: %s", cfg->opt.record, re.text);
    }
out:
    if (rcpts)
        compose_free_strings(rcpts, n_rcpts);   /* the array too */
    free(env_from);
    buf_free(&body);
    compose_msg_free(&m);
    alias_db_free(&aliases);
    rc_diag_free(&diag);
    free(host);
    return status;
}
