/* child: running configured commands (see child.h). */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sanitize.h"
#include "xalloc.h"

extern char **environ;

#define IO_CHUNK 4096
#define DRAIN_MAX (1024 * 1024) /* output read after a command exited */
#define EX_TEMPFAIL_STATUS 75   /* sysexits.h EX_TEMPFAIL */

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void buf_wipe_free(struct buf *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    buf_free(b);
}

/* A buffer for secrets: one allocation of n bytes up front, so that no
 * copy is left behind by a realloc; the ceiling is n. */
static void secret_buf_init(struct buf *b, size_t n)
{
    buf_init(b, n);
    if (buf_reserve(b, n) == NULL)
        die("secret_buf_init: cannot reserve %zu bytes", n);
}

/* Appends to a display text: at the buffer's ceiling the text is simply
 * cut short, which is fine for a message meant for people. */
static void text_printf(struct buf *b, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void text_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    (void)r;
}

/* Append text[0..len) for display: each line sanitized, lines joined with
 * " | ", empty lines and trailing blanks dropped. */
void display_lines(struct buf *out, const char *text, size_t len)
{
    bool first = true;

    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        size_t l = n;

        while (l > 0 && (text[l - 1] == '\r' || text[l - 1] == ' ' || text[l - 1] == '\t'))
            l--;
        if (l > 0) {
            if (!first && buf_puts(out, " | ") < 0)
                return;
            if (sanitize_term(out, text, l, 0) < 0)
                return;
            first = false;
        }
        if (nl == NULL)
            break;
        text += n + 1;
        len -= n + 1;
    }
}

static void keep_output(struct buf *b, const char *p, size_t n)
{
    size_t room;

    if (b == NULL)
        return;
    room = b->max > b->len ? b->max - b->len : 0;
    if (n > room)
        n = room;
    if (n > 0 && buf_append(b, p, n) < 0)
        return;   /* cannot happen: n fits */
}

/* Read what fd has now; returns false at the end of the stream or on an error. */
static bool read_some(int fd, struct buf *keep, char *chunk, bool *progress)
{
    for (;;) {
        ssize_t r = read(fd, chunk, IO_CHUNK);

        if (r > 0) {
            keep_output(keep, chunk, (size_t)r);
            *progress = true;
            return true;
        }
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    long r = syscall(SYS_pidfd_open, (long)pid, 0L);

    return r < 0 ? -1 : (int)r;
#else
    (void)pid;
    return -1;
#endif
}

static int spawn_child(struct child *c, int in_fd, int out_fd, int err_fd, pid_t *pid,
                       struct err *e)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, deflt;
    size_t argc = 0;
    char **av;
    int rc;

    while (c->argv[argc] != NULL)
        argc++;
    av = XNEWARRAY(char *, argc + 1);
    for (size_t i = 0; i < argc; i++)
        av[i] = xstrdup(c->argv[i]);
    av[argc] = NULL;

    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGPIPE);
    sigaddset(&deflt, SIGINT);
    sigaddset(&deflt, SIGQUIT);
    sigaddset(&deflt, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (strchr(av[0], '/') != NULL)
        rc = posix_spawn(pid, av[0], &fa, &attr, av, environ);
    else
        rc = posix_spawnp(pid, av[0], &fa, &attr, av, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        char *d = sanitize_term_dup(av[0], strlen(av[0]), 0);

        errno = rc;
        err_sys(e, "cannot run %s", d);
        if (e != NULL && (rc == ENOENT || rc == ENOTDIR))
            e->code = ERR_NOTFOUND;
        free(d);
    }
    for (size_t i = 0; i < argc; i++)
        free(av[i]);
    free(av);
    return rc == 0 ? 0 : -1;
}

/* Run c->argv, feed the input, collect output until the command exits (or
 * has been silent for the timeout: then it is killed).  -1 only when it
 * could not be started; otherwise the outcome is in c. */
int child_run(struct child *c, struct err *e)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1};
    int pidfd, ws = 0;
    size_t written = 0, drained = 0;
    long long deadline;
    bool exited = false;
    char *chunk;
    pid_t pid;

    c->timed_out = false;
    c->status = -1;
    c->signal = 0;
    if ((c->input != NULL && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) < 0) ||
        pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0) {
        err_sys(e, "cannot create pipes");
        goto fail;
    }
    if (spawn_child(c, in[1], out[1], er[1], &pid, e) < 0)
        goto fail;
    close_fd(&in[1]);
    close_fd(&out[1]);
    close_fd(&er[1]);
    for (int i = 0; i < 3; i++) {
        int fd = i == 0 ? in[0] : i == 1 ? out[0] : er[0];

        if (fd >= 0)
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    if (c->input != NULL && c->input_len == 0)
        close_fd(&in[0]);
    pidfd = open_pidfd(pid);
    chunk = xmalloc(IO_CHUNK);
    deadline = now_ms() + c->timeout_ms;

    /* With a pidfd, stop when the command exits (a background child of it
     * may keep the pipes open); without, when its pipes close. */
    while (pidfd >= 0 ? !exited : (in[0] >= 0 || out[0] >= 0 || er[0] >= 0)) {
        struct pollfd pf[4];
        int idx_in = -1, idx_out = -1, idx_err = -1, idx_pid = -1;
        nfds_t np = 0;
        long long left = deadline - now_ms();
        bool progress = false;
        int n;

        if (left <= 0) {
            c->timed_out = true;
            break;
        }
        if (in[0] >= 0) {
            idx_in = (int)np;
            pf[np++] = (struct pollfd){in[0], POLLOUT, 0};
        }
        if (out[0] >= 0) {
            idx_out = (int)np;
            pf[np++] = (struct pollfd){out[0], POLLIN, 0};
        }
        if (er[0] >= 0) {
            idx_err = (int)np;
            pf[np++] = (struct pollfd){er[0], POLLIN, 0};
        }
        if (pidfd >= 0) {
            idx_pid = (int)np;
            pf[np++] = (struct pollfd){pidfd, POLLIN, 0};
        }
        n = poll(pf, np, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            c->timed_out = true;   /* cannot wait: give up on the command */
            break;
        }
        if (idx_in >= 0 && pf[idx_in].revents != 0) {
            ssize_t w = send(in[0], c->input + written, c->input_len - written,
                             MSG_NOSIGNAL | MSG_DONTWAIT);

            if (w > 0) {
                written += (size_t)w;
                progress = true;
                if (written == c->input_len)
                    close_fd(&in[0]);
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                close_fd(&in[0]);   /* the command stopped reading */
            }
        }
        if (idx_out >= 0 && pf[idx_out].revents != 0 &&
            !read_some(out[0], c->out, chunk, &progress))
            close_fd(&out[0]);
        if (idx_err >= 0 && pf[idx_err].revents != 0 &&
            !read_some(er[0], c->errout, chunk, &progress))
            close_fd(&er[0]);
        if (idx_pid >= 0 && (pf[idx_pid].revents & POLLIN))
            exited = true;
        if (progress)
            deadline = now_ms() + c->timeout_ms;
    }

    if (exited) {
        /* Everything the command wrote is in the pipes already. */
        bool dummy = false;

        while (out[0] >= 0 && drained < DRAIN_MAX) {
            if (!read_some(out[0], c->out, chunk, &dummy) || !dummy)
                close_fd(&out[0]);
            drained += IO_CHUNK;
            dummy = false;
        }
        while (er[0] >= 0 && drained < 2 * DRAIN_MAX) {
            if (!read_some(er[0], c->errout, chunk, &dummy) || !dummy)
                close_fd(&er[0]);
            drained += IO_CHUNK;
            dummy = false;
        }
    }
    free(chunk);
    close_fd(&in[0]);
    close_fd(&out[0]);
    close_fd(&er[0]);

    if (!c->timed_out && !exited) {
        /* No pidfd: the pipes closed; wait for the exit within the deadline. */
        for (;;) {
            pid_t r = waitpid(pid, &ws, WNOHANG);

            if (r == pid)
                break;
            if (r < 0 && errno != EINTR) {
                ws = 0;
                break;
            }
            if (now_ms() >= deadline) {
                c->timed_out = true;
                break;
            }
            (void)poll(NULL, 0, 10);
        }
        if (!c->timed_out) {
            close_fd(&pidfd);
            goto done;
        }
    }
    if (c->timed_out)
        kill(pid, SIGKILL);
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    close_fd(&pidfd);
done:
    if (!c->timed_out) {
        if (WIFEXITED(ws)) {
            c->status = WEXITSTATUS(ws);
        } else if (WIFSIGNALED(ws)) {
            c->signal = WTERMSIG(ws);
        }
    }
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&er[i]);
    }
    return -1;
}

/* Describe a command that did not succeed: "<what> <how>: <output>". */
int child_err(struct err *e, const char *what, const struct child *c, unsigned timeout_ms)
{
    struct buf msg = BUF_INIT;
    const struct buf *text = c->errout;

    if (text == NULL || text->len == 0)
        text = c->out;
    if (c->timed_out)
        text_printf(&msg, "%s did not finish within %u ms and was stopped", what, timeout_ms);
    else if (c->signal != 0)
        text_printf(&msg, "%s was killed by signal %d", what, c->signal);
    else
        text_printf(&msg, "%s failed (exit status %d)", what, c->status);
    if (text != NULL && text->len > 0) {
        text_printf(&msg, ": ");
        display_lines(&msg, text->data, text->len);
    }
    err_set(e, ERR_IO, "%s", buf_cstr(&msg));
    err_scope(e, ERR_SCOPE_ACCOUNT, c->timed_out || c->status == EX_TEMPFAIL_STATUS);
    buf_free(&msg);
    return -1;
}

/* The first line a shell command prints: a password or a token. */
int child_secret(const char *what, const char *cmd, int timeout_ms, char **secret,
                 struct err *e)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    struct buf out, errout;
    struct child c;
    const char *nl;
    size_t n;
    int rc = -1;

    *secret = NULL;
    secret_buf_init(&out, CHILD_SECRET_MAX);
    buf_init(&errout, CHILD_OUTPUT_MAX);
    memset(&c, 0, sizeof(c));
    c.argv = argv;
    c.out = &out;
    c.errout = &errout;
    c.timeout_ms = timeout_ms;
    if (child_run(&c, e) < 0) {
        err_prefix(e, "%s", what);
        goto done;
    }
    if (c.timed_out || c.signal != 0 || c.status != 0) {
        c.out = NULL;   /* never show the secret's output */
        child_err(e, what, &c, (unsigned)timeout_ms);
        goto done;
    }
    nl = memchr(out.data, '\n', out.len);
    n = nl ? (size_t)(nl - out.data) : out.len;
    if (nl == NULL && out.len >= CHILD_SECRET_MAX) {
        err_set(e, ERR_LIMIT, "%s printed more than %d bytes without a newline", what,
                CHILD_SECRET_MAX);
        goto done;
    }
    if (n > 0 && out.data[n - 1] == '\r')
        n--;
    if (n == 0) {
        err_set(e, ERR_INVAL, "%s printed nothing on its first line", what);
        goto done;
    }
    if (memchr(out.data, '\0', n) != NULL) {
        err_set(e, ERR_INVAL, "%s printed a NUL byte", what);
        goto done;
    }
    *secret = xmemdup0(out.data, n);
    rc = 0;
done:
    buf_wipe_free(&out);
    buf_free(&errout);
    return rc;
}
