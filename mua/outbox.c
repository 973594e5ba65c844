/* outbox: drafts to messages, sending, and filing copies. */
#include "outbox.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "imap.h"
#include "imap_folders.h"
#include "maildir.h"
#include "msg.h"
#include "send.h"
#include "xalloc.h"

void outbox_aliases(const struct config *cfg, struct alias_db *db, struct rc_diag *diag)
{
    struct err e;

    alias_add_config(db, cfg, diag);
    if (cfg->opt.alias_file && *cfg->opt.alias_file) {
        char *path = config_mailbox_path(cfg, cfg->opt.alias_file);
        if (alias_load(db, path, diag, &e) < 0 && e.code != ERR_NOTFOUND)
            rc_diag_add(diag, path, 0, "%s", e.text);
        free(path);
    }
}

int outbox_from(const struct config *cfg, struct compose_msg *m, struct err *e)
{
    const char *from = cfg->opt.from;

    compose_addrs_free(&m->from);
    if (!from || !*from)
        return err_set(e, ERR_INVAL, "set $from in the configuration (e.g. set from=you@example.org)");
    if (compose_parse_addresses(from, &m->from, e) < 0) {
        err_prefix(e, "$from");
        return -1;
    }
    if (m->from.n == 1 && (!m->from.v[0].name || !*m->from.v[0].name) && cfg->opt.realname &&
        *cfg->opt.realname) {
        free(m->from.v[0].name);
        m->from.v[0].name = xstrdup(cfg->opt.realname);
    }
    return 0;
}

/* Expand aliases in text and append the addresses to list. */
static int add_expanded(const struct alias_db *db, const char *text, struct msg_addr_list *list,
                        struct err *e)
{
    struct msg_addrlist out = {NULL, 0};

    if (!text || !*text)
        return 0;
    if (alias_expand(db, text, &out, e) < 0)
        return -1;
    for (size_t k = 0; k < out.n; k++)
        compose_addrs_add(list, out.v[k].name, out.v[k].addr);
    alias_addrlist_free(&out);
    return 0;
}

static bool is_standard(const char *name)
{
    static const char *const std[] = {"From", "To", "Cc", "Bcc", "Subject", "Reply-To"};
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++)
        if (strcasecmp(name, std[i]) == 0)
            return true;
    return false;
}

int outbox_from_draft(const struct config *cfg, const struct alias_db *db,
                      const struct draft *d, struct compose_msg *m, struct err *e)
{
    static const struct {
        const char *name;
        size_t off;
    } lists[] = {
        {"To", offsetof(struct compose_msg, to)},
        {"Cc", offsetof(struct compose_msg, cc)},
        {"Bcc", offsetof(struct compose_msg, bcc)},
        {"Reply-To", offsetof(struct compose_msg, reply_to)},
    };
    const char *from = draft_get(d, "From");

    compose_msg_free(m);
    compose_msg_init(m);
    if (from && *from) {
        if (compose_parse_addresses(from, &m->from, e) < 0) {
            err_prefix(e, "From");
            return -1;
        }
    } else if (outbox_from(cfg, m, e) < 0) {
        return -1;
    }
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        struct msg_addr_list *l = (struct msg_addr_list *)(void *)((char *)m + lists[i].off);
        if (add_expanded(db, draft_get(d, lists[i].name), l, e) < 0) {
            err_prefix(e, "%s", lists[i].name);
            return -1;
        }
    }
    compose_set_subject(m, draft_get(d, "Subject") ? draft_get(d, "Subject") : "");
    for (size_t i = 0; i < d->n_h; i++)
        if (!is_standard(d->h[i].name) && *d->h[i].value)
            compose_add_header(m, d->h[i].name, d->h[i].value);
    compose_set_body(m, d->body ? d->body : "");
    if (d->in_reply_to)
        m->in_reply_to = xstrdup(d->in_reply_to);
    for (size_t i = 0; i < d->n_references; i++)
        compose_add_reference(m, d->references[i]);
    if (cfg->opt.user_agent)
        compose_add_header(m, "User-Agent", "correo/" CORREO_VERSION);
    return 0;
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


/* A mailbox option ($record, $postponed) as a Maildir folder, created as a
 * Maildir++ subfolder of $folder when it does not exist yet. */
int outbox_open_folder(const struct config *cfg, const char *option_value,
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

bool outbox_is_imap(const struct config *cfg, const char *mailbox)
{
    char *path = config_mailbox_path(cfg, mailbox);
    bool yes = imap_url_is(path);

    free(path);
    return yes;
}

/* The message flags (MSG_*) for Maildir flags. */
static unsigned msg_flags_of(unsigned maildir_flags)
{
    unsigned f = 0;

    if (maildir_flags & MAILDIR_F_SEEN)
        f |= MSG_SEEN;
    if (maildir_flags & MAILDIR_F_DRAFT)
        f |= MSG_DRAFT;
    if (maildir_flags & MAILDIR_F_FLAGGED)
        f |= MSG_FLAGGED;
    if (maildir_flags & MAILDIR_F_REPLIED)
        f |= MSG_REPLIED;
    return f;
}

int outbox_file_imap(const struct config *cfg, const char *url, const void *data, size_t len,
                     unsigned maildir_flags, char **where, struct err *e)
{
    struct imap_url u;
    struct imap_conn *c;
    uint32_t uid = 0;
    int rc;

    imap_settings_from_config(cfg);
    if (imap_folders_connect(url, &u, &c, e) < 0)
        return -1;
    rc = imap_folders_append(c, u.folder, data, len, msg_flags_of(maildir_flags), &uid, e);
    if (rc == 0 && where) {
        char *folder_url = imap_folder_url(&u, u.folder);

        *where = uid ? xasprintf("%s;UID=%u", folder_url, uid) : xstrdup(folder_url);
        free(folder_url);
    }
    imap_close(c);
    imap_url_free(&u);
    return rc;
}

int outbox_file(const struct config *cfg, const char *mailbox, const struct compose_msg *m,
                unsigned maildir_flags, char **where, struct err *e)
{
    struct compose_opts o;
    struct buf data = BUF_INIT;
    struct maildir_folder *f;
    struct maildir_ref ref = MAILDIR_REF_INIT;
    char *host = host_name(cfg);
    char *path = config_mailbox_path(cfg, mailbox);
    bool imap = imap_url_is(path);
    int rc = -1;

    memset(&o, 0, sizeof o);
    o.hostname = host;
    o.with_bcc = true;
    o.lf = !imap;            /* IMAP wants CRLF, a Maildir file LF */
    o.eightbit_ok = true;
    if (compose_render(m, &o, &data, e) < 0)
        goto out;
    if (imap) {
        rc = outbox_file_imap(cfg, path, data.data ? data.data : "", data.len, maildir_flags,
                              where, e);
        goto out;
    }
    if (outbox_open_folder(cfg, mailbox, &f, e) < 0)
        goto out;
    struct maildir_deliver_opts d = {true, maildir_flags, NULL};
    rc = maildir_deliver(f, data.data ? data.data : "", data.len, &d, &ref, e);
    if (rc == 0 && where)
        *where = xasprintf("%s/cur/%s", f->path, ref.name ? ref.name : "");
    maildir_ref_free(&ref);
    maildir_folder_close(f);
out:
    buf_free(&data);
    free(path);
    free(host);
    return rc;
}

static void send_opts_from_config(const struct config *cfg, const char *host, struct send_opts *so)
{
    memset(so, 0, sizeof *so);
    so->url = cfg->opt.smtp_url && *cfg->opt.smtp_url ? cfg->opt.smtp_url : NULL;
    so->pass = cfg->opt.smtp_pass && *cfg->opt.smtp_pass ? cfg->opt.smtp_pass : NULL;
    so->pass_cmd = cfg->opt.smtp_pass_cmd && *cfg->opt.smtp_pass_cmd ? cfg->opt.smtp_pass_cmd
                                                                       : NULL;
    so->oauth_cmd = cfg->opt.smtp_oauth_refresh_command && *cfg->opt.smtp_oauth_refresh_command
                        ? cfg->opt.smtp_oauth_refresh_command : NULL;
    so->tls_fingerprint = cfg->opt.tls_fingerprint && *cfg->opt.tls_fingerprint
                              ? cfg->opt.tls_fingerprint : NULL;
    so->helo_name = host;
    if (!so->url)
        so->sendmail = cfg->opt.sendmail;
}

int outbox_send_raw(const struct config *cfg, const char *env_from, const char *const *rcpts,
                    size_t n, const char *data, size_t len, struct err *e)
{
    struct send_opts so;
    char *host = host_name(cfg);
    int rc;

    send_opts_from_config(cfg, host, &so);
    rc = send_message(&so, env_from, rcpts, n, data, len, e);
    free(host);
    return rc;
}

int outbox_send(const struct config *cfg, struct compose_msg *m, struct err *e)
{
    struct compose_opts co;
    struct send_opts so;
    struct buf wire = BUF_INIT;
    char *host = host_name(cfg), *env_from = NULL, **rcpts = NULL;
    size_t n_rcpts = 0;
    int rc = -1;

    memset(&co, 0, sizeof co);
    co.hostname = host;
    /* 8-bit text goes as it is when $allow_8bit and the server announces
     * 8BITMIME; send_message refuses 8-bit data before MAIL otherwise, and
     * the message is then encoded (quoted-printable) and sent again. */
    co.eightbit_ok = cfg->opt.allow_8bit;
    send_opts_from_config(cfg, host, &so);

    if (compose_prepare(m, &co, e) == 0 && compose_render(m, &co, &wire, e) == 0 &&
        compose_envelope(m, &env_from, &rcpts, &n_rcpts, e) == 0) {
        rc = send_message(&so, env_from, (const char *const *)rcpts, n_rcpts,
                          wire.data ? wire.data : "", wire.len, e);
        if (rc < 0 && e && e->code == ERR_UNSUPPORTED && co.eightbit_ok) {
            struct buf qp = BUF_INIT;
            struct err e2;

            co.eightbit_ok = false;
            if (compose_render(m, &co, &qp, &e2) == 0 &&
                (qp.len != wire.len || memcmp(qp.data, wire.data, qp.len) != 0))
                rc = send_message(&so, env_from, (const char *const *)rcpts, n_rcpts,
                                  qp.data ? qp.data : "", qp.len, e);
            buf_free(&qp);
        }
    }
    if (rcpts)
        compose_free_strings(rcpts, n_rcpts);   /* the array too */
    free(env_from);
    buf_free(&wire);
    free(host);
    return rc;
}
