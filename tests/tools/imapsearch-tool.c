/* imapsearch-tool: localserver/imap_search from the command line, for the
 * integration test against Dovecot.
 *
 *   imapsearch-tool LISTFILE < COMMANDS
 *
 * LISTFILE describes the mailbox in sequence order, one message a line:
 *   UID SP FLAGS SP PATH
 * FLAGS is "-" or comma-separated flags and keywords ("\Seen,$Work").  The
 * internal date is the file's mtime (as Dovecot takes it for a Maildir) in
 * the local zone; RFC822.SIZE is the file's size in CRLF form.
 *
 * COMMANDS holds commands as a client sends them without the tag (SEARCH,
 * UID SEARCH, SORT, THREAD, with ESEARCH RETURN options), each as a decimal
 * length, LF, and that many octets (literals as on the wire: "{n}" CRLF
 * data).  For each command stdout gets one line:
 *   SEARCH n n ...  |  SORT n n ...  |  THREAD (..)(..)  |  ESEARCH ...
 *   NO text  |  BAD text
 * RETURN (SAVE) keeps the result for "$" in the commands that follow.
 * Exit status 0; 1 when the list or a file cannot be read; 2 on usage. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "imap_fetch.h"
#include "imap_parse.h"
#include "imap_search.h"

struct tmsg {
    uint32_t uid;
    unsigned flags;
    char **kw;
    size_t n_kw;
    int64_t idate;
    int zone;
    uint64_t size;
    char *path;
};

struct tbox {
    struct tmsg *m;
    uint32_t n;
};

static uint32_t t_count(void *ctx)
{
    return ((struct tbox *)ctx)->n;
}

static uint32_t t_uid(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].uid;
}

static unsigned t_flags(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].flags;
}

static bool t_kw(void *ctx, uint32_t seq, const char *kw)
{
    const struct tmsg *m = &((struct tbox *)ctx)->m[seq - 1];

    for (size_t i = 0; i < m->n_kw; i++)
        if (strcasecmp(m->kw[i], kw) == 0)
            return true;
    return false;
}

static int64_t t_idate(void *ctx, uint32_t seq, int *zone)
{
    const struct tmsg *m = &((struct tbox *)ctx)->m[seq - 1];

    *zone = m->zone;
    return m->idate;
}

static uint64_t t_size(void *ctx, uint32_t seq)
{
    return ((struct tbox *)ctx)->m[seq - 1].size;
}

static int read_file(const char *path, struct buf *out, struct err *e)
{
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return err_sys(e, "%s", path);
    if (buf_read_all(out, fd) != 0) {
        close(fd);
        return err_sys(e, "%s", path);
    }
    close(fd);
    return 0;
}

static int t_message(void *ctx, uint32_t seq, struct buf *out, struct err *e)
{
    return read_file(((struct tbox *)ctx)->m[seq - 1].path, out, e);
}

static int load_list(const char *file, struct tbox *b)
{
    FILE *f = fopen(file, "r");
    char line[8192];
    size_t cap = 0;

    if (!f) {
        perror(file);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *uid = strtok(line, " \n"), *flags = strtok(NULL, " \n"), *path = strtok(NULL, "\n");
        struct tmsg *m;
        struct stat stb;
        struct tm tm;
        struct buf raw = BUF_INIT;
        struct err e;
        time_t t;

        if (!uid || !flags || !path)
            continue;
        if (b->n == cap) {
            cap = cap ? cap * 2 : 64;
            b->m = xreallocarray(b->m, cap, sizeof *b->m);
        }
        m = &b->m[b->n++];
        memset(m, 0, sizeof *m);
        m->uid = (uint32_t)strtoul(uid, NULL, 10);
        m->path = xstrdup(path);
        if (strcmp(flags, "-") != 0) {
            for (char *fl = strtok(flags, ","); fl; fl = strtok(NULL, ",")) {
                if (strcasecmp(fl, "\\Seen") == 0) m->flags |= IMAP_MSG_SEEN;
                else if (strcasecmp(fl, "\\Answered") == 0) m->flags |= IMAP_MSG_ANSWERED;
                else if (strcasecmp(fl, "\\Flagged") == 0) m->flags |= IMAP_MSG_FLAGGED;
                else if (strcasecmp(fl, "\\Deleted") == 0) m->flags |= IMAP_MSG_DELETED;
                else if (strcasecmp(fl, "\\Draft") == 0) m->flags |= IMAP_MSG_DRAFT;
                else if (strcasecmp(fl, "\\Recent") == 0) m->flags |= IMAP_MSG_RECENT;
                else {
                    m->kw = xreallocarray(m->kw, m->n_kw + 1, sizeof *m->kw);
                    m->kw[m->n_kw++] = xstrdup(fl);
                }
            }
        }
        if (stat(path, &stb) < 0 || read_file(path, &raw, &e) < 0) {
            perror(path);
            fclose(f);
            buf_free(&raw);
            return -1;
        }
        m->idate = (int64_t)stb.st_mtime;
        t = stb.st_mtime;
        localtime_r(&t, &tm);
        m->zone = (int)(tm.tm_gmtoff / 60);
        m->size = imap_crlf_size(buf_cstr(&raw), 0, raw.len);
        buf_free(&raw);
    }
    fclose(f);
    return 0;
}

/* The result saved by RETURN (SAVE) for "$" (RFC 5182), as UIDs. */
static uint32_t *saved;
static size_t n_saved;

static void one(const struct imap_search_store *st, const struct tbox *b, const char *text,
                size_t len)
{
    struct imap_command *cmd = NULL;
    struct imap_search_result res;
    struct imap_search_opts o = {NULL, NULL, 0, 0};
    struct buf out = BUF_INIT;
    struct err e;
    uint32_t *v;

    o.now = (int64_t)time(NULL);
    o.saved = saved;
    o.n_saved = n_saved;
    if (imap_parse(text, len, NULL, &cmd, &e) < 0) {
        printf("BAD %s\n", e.text);
        return;
    }
    o.charset = cmd->search.charset.s;
    if (imap_search(st, cmd->search.keys, &o, &res, &e) < 0) {
        printf("NO %s\n", e.text);
        imap_command_free(cmd);
        return;
    }
    if (cmd->cmd == IMAP_CMD_SORT &&
        imap_sort(st, cmd->search.sort, cmd->search.n_sort, &res, &e) < 0) {
        printf("NO %s\n", e.text);
        goto done;
    }
    v = res.n ? XNEWARRAY(uint32_t, res.n) : NULL;
    for (size_t i = 0; i < res.n; i++)
        v[i] = cmd->uid ? b->m[res.seq[i] - 1].uid : res.seq[i];
    if (cmd->cmd == IMAP_CMD_THREAD) {
        enum imap_thread_alg alg;
        if (imap_thread_alg_parse(cmd->search.algorithm.s, &alg) < 0) {
            printf("BAD Unknown algorithm\n");
        } else if (buf_puts(&out, "THREAD ") < 0 ||
                   imap_thread(st, alg, &res, cmd->uid, &out, &e) < 0) {
            printf("NO %s\n", e.text);
        } else {
            printf("%s\n", buf_cstr(&out));
        }
    } else if (cmd->search.has_return && cmd->cmd == IMAP_CMD_SEARCH) {
        if (cmd->search.ret & IMAP_RET_SAVE) {
            uint32_t *u = res.n ? XNEWARRAY(uint32_t, res.n) : NULL;
            for (size_t i = 0; i < res.n; i++)
                u[i] = b->m[res.seq[i] - 1].uid;
            free(saved);
            imap_search_saved(cmd->search.ret, u, res.n, &saved, &n_saved);
            free(u);
        }
        if (imap_esearch_write(&out, NULL, cmd->uid, cmd->search.ret, v, res.n) == 0) {
            if (out.len >= 4 && strcmp(out.data + out.len - 2, "\r\n") == 0)
                out.data[out.len - 2] = '\0';
            printf("%s\n", out.len > 2 ? buf_cstr(&out) + 2 : "");
        }
    } else {
        if (imap_search_write(&out, cmd->cmd == IMAP_CMD_SORT ? "SORT" : "SEARCH", v,
                              res.n) == 0) {
            out.data[out.len - 2] = '\0';
            printf("%s\n", buf_cstr(&out) + 2);
        }
    }
    free(v);
done:
    buf_free(&out);
    imap_search_result_free(&res);
    imap_command_free(cmd);
}

int main(int argc, char **argv)
{
    struct tbox b = {NULL, 0};
    struct imap_search_store st = {
        &b, t_count, t_uid, t_flags, t_kw, t_idate, t_size, NULL, NULL, t_message,
    };
    char lenline[64];
    int rc = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: imapsearch-tool LISTFILE < COMMANDS\n");
        return 2;
    }
    if (load_list(argv[1], &b) < 0)
        return 1;
    while (fgets(lenline, sizeof lenline, stdin)) {
        size_t n = strtoul(lenline, NULL, 10);
        char *text = xmalloc(n + 3);
        memcpy(text, "t ", 2);
        if (fread(text + 2, 1, n, stdin) != n) {
            free(text);
            rc = 1;
            break;
        }
        text[n + 2] = '\0';
        one(&st, &b, text, n + 2);
        free(text);
        fflush(stdout);
    }
    for (uint32_t i = 0; i < b.n; i++) {
        for (size_t k = 0; k < b.m[i].n_kw; k++)
            free(b.m[i].kw[k]);
        free(b.m[i].kw);
        free(b.m[i].path);
    }
    free(b.m);
    free(saved);
    return rc;
}
