/*
 * imapfolders-tool URL COMMAND [ARGS]: mua/imap_folders on the account of
 * URL, for the integration test against Dovecot.  Settings from the
 * environment: IMAP_USER, IMAP_PASS, IMAP_FINGERPRINT, IMAP_ALLOW_PLAIN=1.
 *
 *   list [subscribed]        wire TAB display TAB delim TAB attrs TAB special
 *                            TAB messages TAB unseen TAB recent ("-" unknown)
 *   create|delete|subscribe|unsubscribe NAME    (NAME in UTF-8)
 *   rename OLD NEW
 *   append NAME FLAGS < message    (FLAGS: letters S D F R, or -)
 *   summaries NAME           "uidvalidity N", then uid TAB flags TAB subject
 *   fetch NAME UIDVALIDITY UID      the message on stdout
 *   remove NAME UIDVALIDITY UID
 *
 * Exit status 0 on success; errors on stderr as "imapfolders-tool: TEXT".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "imap.h"
#include "imap_folders.h"
#include "msg.h"
#include "xalloc.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int fail(const struct err *e)
{
    fprintf(stderr, "imapfolders-tool: %s\n", e->text);
    return 1;
}

static void attrs_text(unsigned a, char *out)
{
    size_t k = 0;

    if (a & IMAP_FA_NOSELECT)
        out[k++] = 'N';
    if (a & IMAP_FA_HASCHILDREN)
        out[k++] = 'C';
    if (a & IMAP_FA_NOCHILDREN)
        out[k++] = 'c';
    if (a & IMAP_FA_SUBSCRIBED)
        out[k++] = 'S';
    if (k == 0)
        out[k++] = '-';
    out[k] = '\0';
}

static const char *special_text(unsigned s)
{
    return s & IMAP_SU_SENT ? "sent" : s & IMAP_SU_DRAFTS ? "drafts" : s & IMAP_SU_TRASH ? "trash"
         : s & IMAP_SU_JUNK ? "junk" : s & IMAP_SU_ARCHIVE ? "archive" : s & IMAP_SU_ALL ? "all"
         : s & IMAP_SU_FLAGGED ? "flagged" : "-";
}

static char *wire_of(const char *utf8)
{
    struct err e;
    char *w = imap_folder_wire(utf8, &e);

    if (w == NULL) {
        fail(&e);
        exit(2);
    }
    return w;
}

static unsigned flags_of(const char *s)
{
    unsigned f = 0;

    for (; *s; s++)
        f |= *s == 'S' ? MSG_SEEN : *s == 'D' ? MSG_DRAFT : *s == 'F' ? MSG_FLAGGED
           : *s == 'R' ? MSG_REPLIED : 0u;
    return f;
}

static int run(struct imap_conn *c, int argc, char **argv)
{
    const char *cmd = argv[0];
    struct err e;

    if (strcmp(cmd, "list") == 0) {
        struct imap_folder_list l;
        unsigned fl = IMAP_LIST_STATUS;

        if (argc > 1 && strcmp(argv[1], "subscribed") == 0)
            fl |= IMAP_LIST_SUBSCRIBED;
        if (imap_folders_list(c, fl, &l, &e) != 0)
            return fail(&e);
        for (size_t i = 0; i < l.n; i++) {
            const struct imap_folder *f = &l.v[i];
            char a[16];

            attrs_text(f->attrs, a);
            if (f->has_status)
                printf("%s\t%s\t%c\t%s\t%s\t%u\t%u\t%u\n", f->wire, f->display,
                       f->delim ? f->delim : '-', a, special_text(f->special), f->messages,
                       f->unseen, f->recent);
            else
                printf("%s\t%s\t%c\t%s\t%s\t-\t-\t-\n", f->wire, f->display,
                       f->delim ? f->delim : '-', a, special_text(f->special));
        }
        fprintf(stderr, "skipped %zu\n", l.n_skipped);
        imap_folder_list_free(&l);
        return 0;
    }
    if (argc < 2)
        return 2;
    char *wire = wire_of(argv[1]);
    int rc = 0;

    if (strcmp(cmd, "create") == 0) {
        rc = imap_folders_create(c, wire, &e);
    } else if (strcmp(cmd, "delete") == 0) {
        rc = imap_folders_delete(c, wire, &e);
    } else if (strcmp(cmd, "subscribe") == 0 || strcmp(cmd, "unsubscribe") == 0) {
        rc = imap_folders_subscribe(c, wire, strcmp(cmd, "subscribe") == 0, &e);
    } else if (strcmp(cmd, "rename") == 0 && argc > 2) {
        char *to = wire_of(argv[2]);

        rc = imap_folders_rename(c, wire, to, &e);
        free(to);
    } else if (strcmp(cmd, "append") == 0 && argc > 2) {
        struct buf in = BUF_INIT;
        uint32_t uid;

        if (buf_read_all(&in, 0) != 0) {
            free(wire);
            return 2;
        }
        rc = imap_folders_append(c, wire, in.data ? in.data : "", in.len, flags_of(argv[2]),
                                 &uid, &e);
        if (rc == 0)
            printf("uid %u\n", uid);
        buf_free(&in);
    } else if (strcmp(cmd, "summaries") == 0) {
        struct imap_summary_list sl;

        rc = imap_folders_summaries(c, wire, &sl, &e);
        if (rc == 0) {
            printf("uidvalidity %u\n", sl.uidvalidity);
            for (size_t i = 0; i < sl.n; i++)
                printf("%u\t%s%s%s\t%s\n", sl.v[i].uid, sl.v[i].flags & MSG_SEEN ? "S" : "",
                       sl.v[i].flags & MSG_DRAFT ? "D" : "",
                       sl.v[i].flags & MSG_TRASHED ? "T" : "", sl.v[i].subject);
            imap_summary_list_free(&sl);
        }
    } else if ((strcmp(cmd, "fetch") == 0 || strcmp(cmd, "remove") == 0) && argc > 3) {
        uint32_t uv = (uint32_t)strtoul(argv[2], NULL, 10);
        uint32_t uid = (uint32_t)strtoul(argv[3], NULL, 10);

        if (strcmp(cmd, "remove") == 0) {
            rc = imap_folders_remove(c, wire, uv, uid, &e);
        } else {
            struct buf out = BUF_INIT;

            rc = imap_folders_fetch(c, wire, uv, uid, &out, &e);
            if (rc == 0 && out.len > 0 && fwrite(out.data, 1, out.len, stdout) != out.len)
                rc = err_set(&e, ERR_IO, "write failed");
            buf_free(&out);
        }
    } else {
        free(wire);
        return 2;
    }
    free(wire);
    return rc == 0 ? 0 : fail(&e);
}

int main(int argc, char **argv)
{
    struct imap_settings s;
    struct imap_url u;
    struct imap_conn *c;
    struct err e;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: imapfolders-tool URL COMMAND [ARGS]\n");
        return 2;
    }
    memset(&s, 0, sizeof s);
    s.user = env("IMAP_USER");
    s.pass = env("IMAP_PASS");
    s.tls_fingerprint = env("IMAP_FINGERPRINT");
    s.allow_plain = env("IMAP_ALLOW_PLAIN") != NULL && strcmp(env("IMAP_ALLOW_PLAIN"), "1") == 0;
    s.timeout_ms = 20000;
    imap_settings_set(&s);
    if (imap_folders_connect(argv[1], &u, &c, &e) != 0) {
        imap_settings_set(NULL);
        return fail(&e);
    }
    rc = run(c, argc - 2, argv + 2);
    imap_close(c);
    imap_url_free(&u);
    imap_settings_set(NULL);
    if (fflush(stdout) != 0)
        rc = 1;
    return rc;
}
