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
#include "outbox.h"
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

int batch_send(struct config *cfg, const struct batch_opts *bo)
{
    struct compose_msg m;
    struct alias_db aliases;
    struct rc_diag diag;
    struct buf body = BUF_INIT;
    struct err e;
    int status = 1;

    compose_msg_init(&m);
    alias_db_init(&aliases);
    rc_diag_init(&diag);
    outbox_aliases(cfg, &aliases, &diag);
    for (size_t i = 0; i < diag.n; i++)
        say("%s", diag.msgs[i]);

    /* From: $from (with $realname) is required */
    if (outbox_from(cfg, &m, &e) < 0) {
        say("%s", e.text);
        status = 2;
        goto out;
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
    if (compose_check(&m, &e) < 0) {
        say("%s", e.text);
        status = 2;
        goto out;
    }

    if (outbox_send(cfg, &m, &e) < 0) {
        struct err pe;
        char *where = NULL;
        say("not sent: %s", e.text);
        if (outbox_file(cfg, cfg->opt.postponed && *cfg->opt.postponed ? cfg->opt.postponed
                                                                       : "+Drafts",
                        &m, MAILDIR_F_DRAFT, &where, &pe) == 0)
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
        if (outbox_file(cfg, cfg->opt.record, &m, MAILDIR_F_SEEN, NULL, &re) < 0)
            say("sent, but the copy to %s failed: %s", cfg->opt.record, re.text);
    }
out:
    buf_free(&body);
    compose_msg_free(&m);
    alias_db_free(&aliases);
    rc_diag_free(&diag);
    return status;
}
