/*
 * imaptool: an imap:// or imaps:// folder through the mailbox interface
 * (mailbox_open -> mua/mbox_imap), for the integration tests.
 *
 *   imaptool URL list               one line per message: UID, flags, size,
 *                                   from address, subject (tab-separated)
 *   imaptool URL flags UID +S -F .. set_flags: add (+) or remove (-) the
 *                                   flags S F R D P T
 *   imaptool URL delete UID...      mark deleted, then sync
 *   imaptool URL copy UID DEST      copy (move: move) to the folder DEST
 *   imaptool URL move UID DEST
 *   imaptool URL append FILE [LETTERS]
 *   imaptool URL read UID           the whole message on stdout
 *   imaptool URL headers UID        its header block on stdout
 *   imaptool URL check              check, then "changed N" and the list
 *   imaptool URL session            commands from stdin, one per line (the
 *                                   ones above without URL, plus "stats"
 *                                   and "count"), on one open mailbox; each
 *                                   answer ends with a line "." ("error"
 *                                   before it on a failure, whose text goes
 *                                   to stderr)
 *
 * Settings from the environment: IMAP_USER, IMAP_PASS, IMAP_PASS_CMD,
 * IMAP_FINGERPRINT, IMAP_CA_FILE, IMAP_ALLOW_PLAIN=1, IMAP_TIMEOUT_MS,
 * IMAP_HCACHE (header cache directory; unset: no cache), IMAP_READONLY=1.
 * After the load, "stats hits=H misses=M stale=S", "progress calls=N
 * last=DONE/TOTAL" and "imap bytes=B commands=C qresync=Q reconnects=R
 * reloads=L" go to stderr; "stats" in a session prints that last line
 * (plus "idling=I pending=P") on stdout.  Exit
 * status 0, 1 on an error (its text on stderr), 2 for bad usage.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "imap.h"

#include <libetpan/libetpan.h>
#include "mailbox.h"
#include "msg.h"

static const struct {
    char c;
    unsigned flag;
} letters[] = {
    {'N', MSG_NEW},    {'S', MSG_SEEN},   {'F', MSG_FLAGGED}, {'R', MSG_REPLIED},
    {'D', MSG_DRAFT},  {'P', MSG_PASSED}, {'T', MSG_TRASHED},
};

static unsigned letter_flag(char c)
{
    for (size_t k = 0; k < sizeof letters / sizeof letters[0]; k++)
        if (letters[k].c == c)
            return letters[k].flag;
    return 0;
}

static void print_msg(const struct mailbox *mb, uint32_t i)
{
    const struct store_msg *m = store_get(&mb->store, i);
    char fl[16];
    size_t n = 0;

    for (size_t k = 0; k < sizeof letters / sizeof letters[0]; k++)
        if (m->flags & letters[k].flag)
            fl[n++] = letters[k].c;
    fl[n] = '\0';
    printf("%s\t%s\t%llu\t%s\t%s\n", store_str(&mb->store, m->name), fl,
           (unsigned long long)m->size, store_str(&mb->store, m->from_addr),
           store_str(&mb->store, m->subject));
}

static void print_all(const struct mailbox *mb)
{
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE))
            print_msg(mb, i);
    }
}

static int usage(void)
{
    fputs("usage: imaptool URL list | flags UID (+|-)LETTER... | delete UID... |\n"
          "       copy UID DEST | move UID DEST | append FILE [LETTERS] | read UID |\n"
          "       headers UID | check\n",
          stderr);
    return 2;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The message number of a UID, or -1. */
static long find_uid(const struct mailbox *mb, const char *uid)
{
    for (uint32_t i = 0; i < store_count(&mb->store); i++) {
        const struct store_msg *m = store_get(&mb->store, i);

        if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE) &&
            strcmp(store_str(&mb->store, m->name), uid) == 0)
            return (long)i;
    }
    fprintf(stderr, "imaptool: no message with UID %s\n", uid);
    return -1;
}

struct progress {
    size_t calls, done, total;
};

static void on_progress(void *ctx, size_t done, size_t total)
{
    struct progress *pr = ctx;

    pr->calls++;
    pr->done = done;
    pr->total = total;
}

static int fail(const struct err *e)
{
    fprintf(stderr, "imaptool: %s\n", e->text);
    return 1;
}

static void print_imap_stats(FILE *f, const struct mailbox *mb, bool more)
{
    struct imap_stats st;

    mbox_imap_stats(mb, &st);
    fprintf(f, "imap bytes=%llu commands=%llu qresync=%d reconnects=%u reloads=%u",
            (unsigned long long)st.bytes_in, (unsigned long long)st.commands,
            st.qresync ? 1 : 0, st.reconnects, st.reloads);
    if (more)
        fprintf(f, " idling=%d pending=%zu", st.idling ? 1 : 0, st.pending_flags);
    fputc('\n', f);
}

/* One command (argv[0]) on the open mailbox. */
static int run_cmd(struct mailbox *mb, int argc, char **argv)
{
    const char *cmd = argv[0];
    struct err e;
    long i;
    int rc = 0;

    if (strcmp(cmd, "list") == 0) {
        print_all(mb);
    } else if (strcmp(cmd, "flags") == 0 && argc >= 2) {
        unsigned fl;

        if ((i = find_uid(mb, argv[1])) < 0) {
            rc = 1;
        } else {
            fl = store_get(&mb->store, (uint32_t)i)->flags;
            for (int k = 2; k < argc; k++) {
                unsigned f = letter_flag(argv[k][1]);

                if ((argv[k][0] != '+' && argv[k][0] != '-') || f == 0) {
                    rc = usage();
                    break;
                }
                fl = argv[k][0] == '+' ? fl | f : fl & ~f;
            }
            if (rc == 0 && mb->ops->set_flags(mb, (uint32_t)i, fl, &e) != 0)
                rc = fail(&e);
            if (rc == 0)
                print_msg(mb, (uint32_t)i);
        }
    } else if (strcmp(cmd, "delete") == 0 && argc >= 2) {
        struct mailbox_sync_errs errs = {0, NULL};

        for (int k = 1; k < argc && rc == 0; k++) {
            if ((i = find_uid(mb, argv[k])) < 0)
                rc = 1;
            else
                store_get_mut(&mb->store, (uint32_t)i)->flags |= MSG_DELETED;
        }
        if (rc == 0 && mb->ops->sync(mb, &errs, &e) != 0)
            rc = fail(&e);
        mailbox_sync_errs_free(&errs);
        if (rc == 0)
            print_all(mb);
    } else if ((strcmp(cmd, "copy") == 0 || strcmp(cmd, "move") == 0) && argc == 3) {
        if ((i = find_uid(mb, argv[1])) < 0)
            rc = 1;
        else if (mb->ops->copy(mb, (uint32_t)i, argv[2], cmd[0] == 'm', &e) != 0)
            rc = fail(&e);
        else
            print_all(mb);
    } else if (strcmp(cmd, "append") == 0 && argc >= 2) {
        struct buf data = BUF_INIT;
        unsigned fl = 0;
        int fd = open(argv[1], O_RDONLY | O_CLOEXEC);

        if (argc >= 3)
            for (const char *p = argv[2]; *p != '\0'; p++)
                fl |= letter_flag(*p);
        if (fd < 0 || buf_read_all(&data, fd) != 0) {
            perror(argv[1]);
            rc = 1;
        } else if (mb->ops->append(mb, data.data, data.len, fl, &e) != 0) {
            rc = fail(&e);
        } else {
            print_all(mb);
        }
        if (fd >= 0)
            close(fd);
        buf_free(&data);
    } else if ((strcmp(cmd, "read") == 0 || strcmp(cmd, "headers") == 0) && argc == 2) {
        struct buf out = BUF_INIT;

        if ((i = find_uid(mb, argv[1])) < 0)
            rc = 1;
        else if ((cmd[0] == 'r' ? mb->ops->read_message : mb->ops->read_headers)(
                     mb, (uint32_t)i, &out, &e) != 0)
            rc = fail(&e);
        else if (out.len > 0 && fwrite(out.data, 1, out.len, stdout) != out.len)
            rc = 1;
        buf_free(&out);
    } else if (strcmp(cmd, "check") == 0) {
        bool changed = false;

        if (mb->ops->check(mb, &changed, &e) != 0) {
            rc = fail(&e);
        } else {
            printf("changed %d\n", changed ? 1 : 0);
            print_all(mb);
        }
    } else {
        rc = usage();
    }
    return rc;
}

/* Commands from stdin until its end. */
static int session(struct mailbox *mb)
{
    char line[4096];

    while (fgets(line, sizeof line, stdin) != NULL) {
        char *args[32];
        int n = 0;

        for (char *tok = strtok(line, " \t\r\n"); tok != NULL && n < 32;
             tok = strtok(NULL, " \t\r\n"))
            args[n++] = tok;
        if (n == 0)
            continue;
        if (strcmp(args[0], "stats") == 0) {
            print_imap_stats(stdout, mb, true);
        } else if (strcmp(args[0], "count") == 0) {
            uint32_t live = 0;

            for (uint32_t k = 0; k < store_count(&mb->store); k++) {
                const struct store_msg *m = store_get(&mb->store, k);

                if ((m->bits & STORE_B_FILLED) && !(m->bits & STORE_B_GONE))
                    live++;
            }
            printf("count %u\n", live);
        } else if (run_cmd(mb, n, args) != 0) {
            printf("error\n");
        }
        printf(".\n");
        if (fflush(stdout) != 0)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct mailbox_open_opts o = {MAILBOX_NO_HCACHE, NULL};
    struct imap_settings s;
    struct mailbox *mb = NULL;
    struct progress pr = {0, 0, 0};
    struct err e;
    const char *cmd;
    int rc = 0;

    if (argc < 3)
        return usage();
    cmd = argv[2];
    memset(&s, 0, sizeof s);
    s.user = env("IMAP_USER");
    s.pass = env("IMAP_PASS");
    s.pass_cmd = env("IMAP_PASS_CMD");
    s.tls_fingerprint = env("IMAP_FINGERPRINT");
    s.tls_ca_file = env("IMAP_CA_FILE");
    s.allow_plain = env("IMAP_ALLOW_PLAIN") != NULL && strcmp(env("IMAP_ALLOW_PLAIN"), "1") == 0;
    if (env("IMAP_TIMEOUT_MS") != NULL)
        s.timeout_ms = atoi(env("IMAP_TIMEOUT_MS"));
    imap_settings_set(&s);
    if (env("IMAP_HCACHE") != NULL) {
        o.flags = 0;
        o.hcache_dir = env("IMAP_HCACHE");
    }
    if (env("IMAP_READONLY") != NULL)
        o.flags |= MAILBOX_READONLY;
    if (mailbox_open_opts(argv[1], &o, &mb, &e) != 0 || mailbox_load(mb, on_progress, &pr, &e) != 0) {
        rc = fail(&e);
        mailbox_close(mb);
        imap_settings_set(NULL);
        return rc;
    }
    fprintf(stderr, "stats hits=%zu misses=%zu stale=%zu\n", mb->stats.cache_hits,
            mb->stats.cache_misses, mb->stats.cache_stale);
    fprintf(stderr, "progress calls=%zu last=%zu/%zu\n", pr.calls, pr.done, pr.total);
    print_imap_stats(stderr, mb, false);
    if (mb->has_warning)
        fprintf(stderr, "imaptool: warning: %s\n", mb->warning.text);
    if (strcmp(cmd, "session") == 0)
        rc = session(mb);
    else
        rc = run_cmd(mb, argc - 2, argv + 2);
    mailbox_close(mb);
    imap_settings_set(NULL);
    if (fflush(stdout) != 0)
        rc = 1;
    return rc;
}
