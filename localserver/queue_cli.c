/* queue_cli: `correod queue list|show|flush|delete`: looking at the
 * outbound queue, kicking the queue runner (or running a pass here when no
 * server runs), and removing an entry without a report. */
#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "queue.h"
#include "relay.h"
#include "sanitize.h"

#define LOCK_WAIT_MS 10000      /* delete: how long to wait for a running pass */

static void usage(FILE *out)
{
    fputs("usage: correod queue list|show|flush|delete [-c CONFIG] [ID]\n"
          "\n"
          "  list        every entry: id, age, size, sender, the recipients still\n"
          "              pending and the last reply for each\n"
          "  show ID     one entry in full: envelope, every recipient and its state\n"
          "  flush       try every entry now (signals the running server's queue\n"
          "              runner, or delivers here when no server runs)\n"
          "  delete ID   remove an entry; no report goes to the sender\n"
          "\n"
          "  -c CONFIG   the config file (default $CORREOD_CONF or\n"
          "              /etc/correod/correod.conf)\n", out);
}

/* s made printable ASCII (escapes), to print. */
static char *esc(const char *s)
{
    struct buf b = BUF_INIT;

    if (s == NULL)
        s = "";
    if (sanitize_log(&b, s, strlen(s)) < 0)
        die("queue: unbounded buffer refused an append");
    return buf_steal(&b, NULL);
}

static void print_age(time_t secs)
{
    if (secs < 0)
        secs = 0;
    if (secs < 120)
        printf("%llds", (long long)secs);
    else if (secs < 7200)
        printf("%lldm", (long long)secs / 60);
    else if (secs < 2 * 86400)
        printf("%lldh", (long long)secs / 3600);
    else
        printf("%lldd", (long long)secs / 86400);
}

static const char *state_name(enum queue_rcpt_state s)
{
    switch (s) {
    case QRCPT_PENDING: return "pending";
    case QRCPT_DELIVERED: return "delivered";
    case QRCPT_FAILED: return "failed";
    }
    return "?";
}

static int cmd_list(const struct conf *c)
{
    char **ids;
    size_t n;
    struct err e;
    time_t now = time(NULL);
    int rc = 0;

    if (queue_list(c->queue_dir, &ids, &n, &e) < 0) {
        fprintf(stderr, "correod: queue: %s\n", e.text);
        return 1;
    }
    if (n == 0)
        printf("the queue is empty\n");
    for (size_t i = 0; i < n; i++) {
        struct queue_entry *q;
        size_t pending = 0;
        char *from;

        if (queue_load(c->queue_dir, ids[i], &q, &e) < 0) {
            if (e.code != ERR_NOTFOUND) {
                char *t = esc(e.text);

                fprintf(stderr, "correod: queue: %s\n", t);
                free(t);
                rc = 1;
            }
            continue;
        }
        for (size_t k = 0; k < q->n_rcpts; k++)
            pending += q->rcpts[k].state == QRCPT_PENDING;
        from = esc(q->mail_from);
        printf("%s  ", q->id);
        print_age(now - q->created);
        printf("  %zu bytes  <%s>  %zu of %zu pending", q->data_size, from, pending,
               q->n_rcpts);
        if (q->attempts > 0) {
            printf(", %u attempt%s, next in ", q->attempts, q->attempts == 1 ? "" : "s");
            print_age(q->next_attempt - now);
        }
        printf("\n");
        free(from);
        for (size_t k = 0; k < q->n_rcpts; k++) {
            char *a, *r;

            if (q->rcpts[k].state != QRCPT_PENDING)
                continue;
            a = esc(q->rcpts[k].addr);
            r = esc(q->rcpts[k].last_reply ? q->rcpts[k].last_reply : "(not tried yet)");
            printf("    <%s>%s: %s\n", a, q->rcpts[k].local_maildir ? " (local)" : "", r);
            free(a);
            free(r);
        }
        queue_entry_free(q);
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

static int cmd_show(const struct conf *c, const char *id)
{
    static const char *const rets[] = { "default", "FULL", "HDRS" };
    static const char *const bodies[] = { "7BIT", "8BITMIME", "BINARYMIME" };
    struct queue_entry *q;
    struct err e;
    time_t now = time(NULL);
    char *t;

    if (queue_load(c->queue_dir, id, &q, &e) < 0) {
        t = esc(e.text);
        fprintf(stderr, "correod: queue: %s\n", t);
        free(t);
        return 1;
    }
    printf("id:        %s\n", q->id);
    t = esc(q->mail_from);
    printf("sender:    <%s>\n", t);
    free(t);
    printf("size:      %zu bytes\n", q->data_size);
    printf("age:       ");
    print_age(now - q->created);
    printf("\nattempts:  %u\n", q->attempts);
    printf("next:      ");
    if (q->next_attempt <= now)
        printf("due now");
    else
        print_age(q->next_attempt - now);
    printf("\nbody:      %s%s\n", bodies[q->body >= 0 && q->body <= 2 ? q->body : 0],
           q->smtputf8 ? " SMTPUTF8" : "");
    printf("ret:       %s\n", rets[q->ret >= 0 && q->ret <= 2 ? q->ret : 0]);
    if (q->envid) {
        t = esc(q->envid);
        printf("envid:     %s\n", t);
        free(t);
    }
    if (q->auth_user) {
        t = esc(q->auth_user);
        printf("auth:      %s\n", t);
        free(t);
    }
    printf("delay report sent: %s\n", q->delay_notified ? "yes" : "no");
    for (size_t k = 0; k < q->n_rcpts; k++) {
        const struct queue_rcpt *r = &q->rcpts[k];
        char *a = esc(r->addr);

        printf("recipient: <%s> %s", a, state_name(r->state));
        free(a);
        if (r->local_maildir) {
            t = esc(r->local_maildir);
            printf(" (local: %s)", t);
            free(t);
        }
        printf("\n");
        if (r->last_reply) {
            t = esc(r->last_reply);
            printf("    last: %s\n", t);
            free(t);
        }
    }
    queue_entry_free(q);
    return 0;
}

/* The running server's pid, when the pid file names a live correod (the
 * same program as this one). */
static pid_t server_pid(const struct conf *c)
{
    char self[PATH_MAX], other[PATH_MAX], line[32], *end, *proc;
    FILE *f;
    long v;
    ssize_t n1, n2;

    if (c->pid_file == NULL || (f = fopen(c->pid_file, "re")) == NULL)
        return -1;
    if (fgets(line, sizeof(line), f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    errno = 0;
    v = strtol(line, &end, 10);
    if (errno || end == line || v <= 1 || v > INT_MAX || (*end != '\n' && *end != '\0'))
        return -1;
    if (kill((pid_t)v, 0) < 0)
        return -1;
    proc = xasprintf("/proc/%ld/exe", v);
    n1 = readlink("/proc/self/exe", self, sizeof(self) - 1);
    n2 = readlink(proc, other, sizeof(other) - 1);
    free(proc);
    if (n1 <= 0 || n2 <= 0 || n1 != n2 || memcmp(self, other, (size_t)n1) != 0)
        return -1;
    return (pid_t)v;
}

static int cmd_flush(const struct conf *c)
{
    struct err e;
    pid_t pid = server_pid(c);

    if (pid > 0) {
        if (kill(pid, SIGUSR1) == 0) {
            printf("asked the queue runner of the server (pid %ld) to try every entry now\n",
                   (long)pid);
            return 0;
        }
        fprintf(stderr, "correod: queue: cannot signal pid %ld: %s\n", (long)pid,
                strerror(errno));
        return 1;
    }
    if (relay_pass(c, true, &e) < 0) {
        char *t = esc(e.text);

        if (e.code == ERR_EXISTS)
            fprintf(stderr, "correod: queue: a queue runner is busy with the queue; try again "
                            "later\n");
        else
            fprintf(stderr, "correod: queue: %s\n", t);
        free(t);
        return 1;
    }
    return 0;
}

static int cmd_delete(const struct conf *c, const char *id)
{
    struct err e;
    int fd = -1, rc;

    for (int waited = 0;; waited += 100) {
        if (queue_lock(c->queue_dir, &fd, &e) == 0)
            break;
        if (e.code != ERR_EXISTS || waited >= LOCK_WAIT_MS) {
            fprintf(stderr, "correod: queue: %s\n", e.text);
            return 1;
        }
        {
            struct timespec ts = { 0, 100 * 1000000L };

            nanosleep(&ts, NULL);
        }
    }
    rc = queue_remove(c->queue_dir, id, &e);
    close(fd);
    if (rc < 0) {
        char *t = esc(e.text);

        fprintf(stderr, "correod: queue: %s\n", t);
        free(t);
        return 1;
    }
    printf("removed %s\n", id);
    return 0;
}

int cmd_queue(int argc, char **argv)
{
    const char *conf_path = NULL, *sub = NULL, *id = NULL;
    struct rc_diag diag;
    struct conf *c = NULL;
    struct err e;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            conf_path = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "correod: queue: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (sub == NULL) {
            sub = argv[i];
        } else if (id == NULL) {
            id = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (sub == NULL) {
        usage(stderr);
        return 2;
    }
    if ((strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0) != (id != NULL) ||
        (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "flush") != 0 &&
         strcmp(sub, "delete") != 0)) {
        usage(stderr);
        return 2;
    }
    if (conf_path == NULL)
        conf_path = conf_default_path();
    rc_diag_init(&diag);
    if (conf_load(conf_path, &c, &diag, &e) < 0) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "correod: %s\n", diag.msgs[i]);
        fprintf(stderr, "correod: %s\n", e.text);
        rc_diag_free(&diag);
        return 1;
    }
    rc_diag_free(&diag);
    (void)log_open("correod", LOG_TO_STDERR, NULL, NULL);
    log_set_level(c->log_level);

    if (strcmp(sub, "list") == 0)
        rc = cmd_list(c);
    else if (strcmp(sub, "show") == 0)
        rc = cmd_show(c, id);
    else if (strcmp(sub, "flush") == 0)
        rc = cmd_flush(c);
    else
        rc = cmd_delete(c, id);
    conf_free(c);
    return rc;
}
