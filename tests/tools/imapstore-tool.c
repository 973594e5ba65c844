/* imapstore-tool: localserver/imap_store from the command line, for the
 * integration test that shares a Maildir with a private Dovecot.
 *
 *   imapstore-tool MAILDIR create NAME | delete NAME | rename OLD NEW
 *   imapstore-tool MAILDIR list REFERENCE PATTERN     "<flags>\t<name>" lines
 *   imapstore-tool MAILDIR subscribe NAME | unsubscribe NAME
 *   imapstore-tool MAILDIR subscriptions              one name a line
 *   imapstore-tool MAILDIR status NAME                "MESSAGES n UIDNEXT n ..."
 *   imapstore-tool MAILDIR append NAME FILE [FLAG...] "<uidvalidity> <uid>"
 *   imapstore-tool MAILDIR copy|move NAME DEST UID... "<uidvalidity> <src>:<dst> ..."
 *   imapstore-tool MAILDIR flags NAME                 "<uid> <flags>" lines (EXAMINE)
 *   imapstore-tool MAILDIR store NAME UID +|-|= [FLAG...]
 *
 * Names are UTF-8.  Exit status 0; 1 on an error (stderr says which); 2 on
 * usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "imap_store.h"
#include "xalloc.h"

static int usage(void)
{
    fprintf(stderr, "usage: imapstore-tool MAILDIR COMMAND ARGS...\n");
    return 2;
}

static int fail(const struct err *e)
{
    fprintf(stderr, "imapstore-tool: %s\n", e->text);
    return 1;
}

static struct imap_str *flag_args(char **argv, int n)
{
    struct imap_str *v = XNEWARRAY(struct imap_str, (size_t)n + 1);
    int i;
    for (i = 0; i < n; i++) {
        v[i].s = argv[i];
        v[i].len = strlen(argv[i]);
        v[i].binary = false;
    }
    return v;
}

static void print_flags(const struct imap_view *v, size_t i)
{
    struct buf b = BUF_INIT;
    if (imap_view_flags_write(v, i, &b) != 0)
        abort();
    printf("%u %s\n", v->msgs[i].uid, buf_cstr(&b));
    buf_free(&b);
}

static int cmd_view(struct imap_store *st, int argc, char **argv)
{
    struct imap_view *v;
    struct err e;
    const char *cmd = argv[0];
    bool ro = strcmp(cmd, "flags") == 0;
    size_t i;
    int rc = 0;

    if (argc < 2)
        return usage();
    if (imap_view_open(st, argv[1], ro, &v, &e) != 0)
        return fail(&e);
    if (strcmp(cmd, "flags") == 0) {
        for (i = 0; i < v->n; i++) {
            v->msgs[i].flags &= ~IMAP_FL_RECENT;
            print_flags(v, i);
        }
    } else if (strcmp(cmd, "store") == 0) {
        struct imap_changes ch;
        struct imap_str *fl;
        enum imap_store_op op;
        ssize_t at;
        size_t idx;
        if (argc < 4)
            return usage();
        at = imap_view_find(v, (uint32_t)strtoul(argv[2], NULL, 10));
        op = argv[3][0] == '+' ? IMAP_STORE_ADD : argv[3][0] == '-' ? IMAP_STORE_REMOVE
                                                                      : IMAP_STORE_SET;
        if (at < 0) {
            fprintf(stderr, "imapstore-tool: no such UID\n");
            rc = 1;
        } else {
            idx = (size_t)at;
            fl = flag_args(argv + 4, argc - 4);
            if (imap_view_store(v, &idx, 1, op, fl, (size_t)(argc - 4), &ch, &e) != 0)
                rc = fail(&e);
            else {
                v->msgs[idx].flags &= ~IMAP_FL_RECENT;
                print_flags(v, idx);
            }
            imap_changes_free(&ch);
            free(fl);
        }
    } else {
        /* copy / move */
        struct imap_changes ch;
        size_t *idx, n = 0;
        uint32_t uv, *su, *du;
        int k;
        if (argc < 4)
            return usage();
        idx = XNEWARRAY(size_t, (size_t)argc);
        for (k = 3; k < argc; k++) {
            ssize_t at = imap_view_find(v, (uint32_t)strtoul(argv[k], NULL, 10));
            if (at >= 0)
                idx[n++] = (size_t)at;
        }
        if (imap_view_copy(v, idx, n, argv[2], strcmp(cmd, "move") == 0, &uv, &su, &du, &ch,
                           &e) != 0) {
            rc = fail(&e);
        } else {
            printf("%u", uv);
            for (i = 0; i < n; i++)
                printf(" %u:%u", su[i], du[i]);
            printf("\n");
            free(su);
            free(du);
        }
        imap_changes_free(&ch);
        free(idx);
    }
    imap_view_close(v);
    return rc;
}

int main(int argc, char **argv)
{
    struct imap_store *st;
    struct err e;
    const char *cmd;
    int rc = 0;

    if (argc < 3)
        return usage();
    if (imap_store_open(argv[1], NULL, &st, &e) != 0)
        return fail(&e);
    cmd = argv[2];
    if (strcmp(cmd, "create") == 0 && argc == 4) {
        if (imap_store_create(st, argv[3], &e) != 0)
            rc = fail(&e);
    } else if (strcmp(cmd, "delete") == 0 && argc == 4) {
        if (imap_store_delete(st, argv[3], &e) != 0)
            rc = fail(&e);
    } else if (strcmp(cmd, "rename") == 0 && argc == 5) {
        if (imap_store_rename(st, argv[3], argv[4], &e) != 0)
            rc = fail(&e);
    } else if (strcmp(cmd, "subscribe") == 0 && argc == 4) {
        if (imap_store_subscribe(st, argv[3], &e) != 0)
            rc = fail(&e);
    } else if (strcmp(cmd, "unsubscribe") == 0 && argc == 4) {
        if (imap_store_unsubscribe(st, argv[3], &e) != 0)
            rc = fail(&e);
    } else if (strcmp(cmd, "subscriptions") == 0) {
        char **names;
        size_t n, i;
        if (imap_store_subscriptions(st, &names, &n, &e) != 0) {
            rc = fail(&e);
        } else {
            for (i = 0; i < n; i++) {
                printf("%s\n", names[i]);
                free(names[i]);
            }
            free(names);
        }
    } else if (strcmp(cmd, "list") == 0 && argc == 5) {
        struct imap_list l;
        size_t i;
        if (imap_store_list(st, argv[3], argv[4], 0, &l, &e) != 0) {
            rc = fail(&e);
        } else {
            for (i = 0; i < l.n; i++) {
                struct buf b = BUF_INIT;
                if (imap_list_flags_write(&l.v[i], &b) != 0)
                    abort();
                printf("%s\t%s\n", buf_cstr(&b), l.v[i].name);
                buf_free(&b);
            }
            imap_list_free(&l);
        }
    } else if (strcmp(cmd, "status") == 0 && argc == 4) {
        struct imap_status s;
        if (imap_store_status(st, argv[3], &s, &e) != 0)
            rc = fail(&e);
        else
            printf("MESSAGES %u RECENT %u UIDNEXT %u UIDVALIDITY %u UNSEEN %u SIZE %llu\n",
                   s.messages, s.recent, s.uidnext, s.uidvalidity, s.unseen,
                   (unsigned long long)s.size);
    } else if (strcmp(cmd, "append") == 0 && argc >= 5) {
        struct buf data = BUF_INIT;
        int fd = open(argv[4], O_RDONLY | O_CLOEXEC);
        struct imap_str *fl;
        uint32_t uv, uid;
        if (fd < 0 || buf_read_all(&data, fd) != 0) {
            fprintf(stderr, "imapstore-tool: cannot read %s\n", argv[4]);
            rc = 1;
        } else {
            fl = flag_args(argv + 5, argc - 5);
            if (imap_store_append(st, argv[3], buf_cstr(&data), data.len, fl,
                                  (size_t)(argc - 5), 0, &uv, &uid, &e) != 0)
                rc = fail(&e);
            else
                printf("%u %u\n", uv, uid);
            free(fl);
        }
        if (fd >= 0)
            close(fd);
        buf_free(&data);
    } else if ((strcmp(cmd, "flags") == 0 || strcmp(cmd, "store") == 0 ||
                strcmp(cmd, "copy") == 0 || strcmp(cmd, "move") == 0) && argc >= 4) {
        rc = cmd_view(st, argc - 2, argv + 2);
    } else {
        rc = usage();
    }
    imap_store_close(st);
    fflush(stdout);
    return rc;
}
