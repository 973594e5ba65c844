/* mailcap: RFC 1524 viewers, saving and piping parts, running programs. */
#include "mailcap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SAFE_NAME_MAX 64
#define SAFE_EXT_MAX 16
#define PARAM_VALUE_MAX 256
#define PARAM_NAME_MAX 64
#define IO_CHUNK 65536

/* ---- parsing ------------------------------------------------------------- */

void mailcap_init(struct mailcap *mc)
{
    mc->v = NULL;
    mc->n = 0;
}

static void entry_free(struct mailcap_entry *ent)
{
    free(ent->type);
    free(ent->command);
    free(ent->test);
    free(ent->nametemplate);
    free(ent->description);
    free(ent->file);
}

void mailcap_free(struct mailcap *mc)
{
    for (size_t i = 0; i < mc->n; i++)
        entry_free(&mc->v[i]);
    free(mc->v);
    mailcap_init(mc);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 2045 token character. */
static bool is_token_char(char c)
{
    return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?=", c);
}

static char *trim_dup(const char *s, size_t n)
{
    while (n > 0 && is_blank(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_blank(s[n - 1]))
        n--;
    return xmemdup0(s, n);
}

/* Drop the backslash of every "\X". */
static char *unescape(const char *s)
{
    char *r = xstrdup(s), *w = r;

    for (const char *p = s; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        *w++ = *p;
    }
    *w = '\0';
    return r;
}

/* "type/subtype", a wildcard "type/" + "*", or "type" alone (the same
 * wildcard); lower-cased. */
static char *parse_type(const char *s)
{
    const char *slash = strchr(s, '/');
    size_t tlen = slash ? (size_t)(slash - s) : strlen(s);
    char *r;

    if (tlen == 0)
        return NULL;
    for (size_t i = 0; i < tlen; i++)
        if (!is_token_char(s[i]) || s[i] == '*')
            return NULL;
    if (slash) {
        const char *sub = slash + 1;
        if (*sub == '\0')
            return NULL;
        if (strcmp(sub, "*") != 0)
            for (const char *p = sub; *p; p++)
                if (!is_token_char(*p) || *p == '*')
                    return NULL;
        r = xstrdup(s);
    } else {
        r = xasprintf("%s/*", s);
    }
    for (char *p = r; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return r;
}

/* Split a logical line at unescaped ';' (escapes are kept). */
static size_t split_fields(const char *s, size_t n, char ***out)
{
    char **v = NULL;
    size_t nv = 0, start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] == '\\') {
            i++;
            continue;
        }
        if (i >= n || s[i] == ';') {
            v = xreallocarray(v, nv + 1, sizeof *v);
            v[nv++] = trim_dup(s + start, (i < n ? i : n) - start);
            start = i + 1;
        }
    }
    *out = v;
    return nv;
}

static void parse_entry(struct mailcap *mc, const char *name, unsigned line, const char *s,
                        size_t n, struct rc_diag *diag)
{
    struct mailcap_entry ent;
    char **f;
    size_t nf = split_fields(s, n, &f);

    memset(&ent, 0, sizeof ent);
    if (nf < 2 || f[1][0] == '\0') {
        rc_diag_add(diag, name, line, "mailcap entry without a view command");
        goto out;
    }
    ent.type = parse_type(f[0]);
    if (!ent.type) {
        rc_diag_add(diag, name, line, "bad content type in a mailcap entry");
        goto out;
    }
    ent.command = xstrdup(f[1]);
    for (size_t i = 2; i < nf; i++) {
        char *eq = strchr(f[i], '=');
        size_t klen = eq ? (size_t)(eq - f[i]) : strlen(f[i]);
        char *key = trim_dup(f[i], klen);
        char *val = eq ? trim_dup(eq + 1, strlen(eq + 1)) : NULL;

        if (strcasecmp(key, "needsterminal") == 0) {
            ent.needsterminal = true;
        } else if (strcasecmp(key, "copiousoutput") == 0) {
            ent.copiousoutput = true;
        } else if (val && strcasecmp(key, "test") == 0 && !ent.test) {
            ent.test = val;
            val = NULL;
        } else if (val && strcasecmp(key, "nametemplate") == 0 && !ent.nametemplate) {
            ent.nametemplate = unescape(val);
        } else if (val && strcasecmp(key, "description") == 0 && !ent.description) {
            ent.description = unescape(val);
        }
        /* compose=, edit=, print=, x-... and unknown fields: not used */
        free(key);
        free(val);
    }
    if (mc->n >= MAILCAP_ENTRIES_MAX) {
        rc_diag_add(diag, name, line, "more than %u mailcap entries, the rest ignored",
                    MAILCAP_ENTRIES_MAX);
        goto out;
    }
    ent.file = xstrdup(name);
    ent.line = line;
    mc->v = xreallocarray(mc->v, mc->n + 1, sizeof *mc->v);
    mc->v[mc->n++] = ent;
    memset(&ent, 0, sizeof ent);
out:
    entry_free(&ent);
    for (size_t i = 0; i < nf; i++)
        free(f[i]);
    free(f);
}

void mailcap_parse(struct mailcap *mc, const char *name, const char *text, size_t len,
                   struct rc_diag *diag)
{
    struct buf logical = BUF_INIT;
    size_t pos = 0;
    unsigned line = 0, start_line = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;
        bool cont;

        line++;
        if (logical.len == 0)
            start_line = line;
        if (n > 0 && text[pos + n - 1] == '\r')
            n--;
        cont = n > 0 && text[pos + n - 1] == '\\';
        if (buf_append(&logical, text + pos, cont ? n - 1 : n) < 0)
            die("mailcap: unbounded buffer refused an append");
        pos = nl ? end + 1 : len;
        if (cont && pos < len)
            continue;
        {
            const char *s = buf_cstr(&logical);
            size_t k = 0;
            while (k < logical.len && is_blank(s[k]))
                k++;
            if (k < logical.len && s[k] != '#')
                parse_entry(mc, name, start_line, s + k, logical.len - k, diag);
        }
        buf_reset(&logical);
    }
    buf_free(&logical);
}

int mailcap_load(struct mailcap *mc, const char *path, struct rc_diag *diag, struct err *e)
{
    struct buf b;
    char chunk[IO_CHUNK];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0) {
        if (errno == ENOENT)
            return err_set(e, ERR_NOTFOUND, "%s: no such file", path);
        return err_sys(e, "%s", path);
    }
    buf_init(&b, MAILCAP_FILE_MAX);
    while ((r = read(fd, chunk, sizeof chunk)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err_sys(e, "%s", path);
            close(fd);
            buf_free(&b);
            return -1;
        }
        if (buf_append(&b, chunk, (size_t)r) < 0) {
            close(fd);
            buf_free(&b);
            return err_set(e, ERR_LIMIT, "%s: larger than %u bytes", path, MAILCAP_FILE_MAX);
        }
    }
    close(fd);
    mailcap_parse(mc, path, buf_cstr(&b), b.len, diag);
    buf_free(&b);
    return 0;
}

void mailcap_load_path(struct mailcap *mc, const char *pathlist, struct rc_diag *diag)
{
    const char *p = pathlist;

    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char *path;
        struct err e;

        if (n >= 2 && p[0] == '~' && p[1] == '/') {
            const char *home = getenv("HOME");
            path = xasprintf("%s%.*s", home ? home : "", (int)(n - 1), p + 1);
        } else {
            path = xstrndup(p, n);
        }
        err_clear(&e);
        if (*path && mailcap_load(mc, path, diag, &e) < 0 && e.code != ERR_NOTFOUND)
            rc_diag_add(diag, path, 0, "%s", e.text);
        free(path);
        p = colon ? colon + 1 : NULL;
    }
}

/* ---- expansion ----------------------------------------------------------- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_bare_char(char c)
{
    return is_alnum(c) || (c && strchr("._/+,:@-", c));
}

void mailcap_shell_quote(const char *s, struct buf *out)
{
    bool bare = *s != '\0';
    int rc = 0;

    for (const char *p = s; *p && bare; p++)
        bare = is_bare_char(*p);
    if (bare) {
        rc = buf_puts(out, s);
    } else {
        rc |= buf_putc(out, '\'');
        for (const char *p = s; *p && rc == 0; p++)
            rc |= *p == '\'' ? buf_puts(out, "'\\''") : buf_putc(out, *p);
        rc |= buf_putc(out, '\'');
    }
    if (rc)
        die("mailcap: unbounded buffer refused an append");
}

static bool valid_mime_type(const char *t)
{
    const char *slash = t ? strchr(t, '/') : NULL;

    if (!slash || slash == t || slash[1] == '\0')
        return false;
    for (const char *p = t; *p; p++)
        if (p != slash && !is_token_char(*p))
            return false;
    return true;
}

static bool valid_param_value(const char *v)
{
    size_t n = strlen(v);

    if (n > PARAM_VALUE_MAX || v[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(v[i]) && !strchr("._-+:=@,/", v[i]))
            return false;
    return true;
}

int mailcap_expand(const char *cmd, const struct mailcap_part *part, const char *file,
                   struct buf *out, bool *uses_file, struct err *e)
{
    bool used = false;

    for (const char *p = cmd; *p; p++) {
        int rc = 0;

        if (*p == '\\' && p[1]) {
            rc = buf_putc(out, *++p);
        } else if (*p != '%' || p[1] == '\0') {
            rc = buf_putc(out, *p);
        } else if (p[1] == 's') {
            p++;
            if (!file)
                return err_set(e, ERR_INVAL, "%%s is not allowed here");
            mailcap_shell_quote(file, out);
            used = true;
        } else if (p[1] == 't') {
            p++;
            if (!part || !valid_mime_type(part->type))
                return err_set(e, ERR_INVAL, "refusing an invalid MIME type for %%t");
            mailcap_shell_quote(part->type, out);
        } else if (p[1] == '{') {
            const char *close = strchr(p + 2, '}');
            const char *val;
            char name[PARAM_NAME_MAX + 1];
            size_t nlen;

            if (!close)
                return err_set(e, ERR_INVAL, "unterminated %%{ in a mailcap command");
            nlen = (size_t)(close - (p + 2));
            if (nlen == 0 || nlen > PARAM_NAME_MAX)
                return err_set(e, ERR_INVAL, "bad parameter name in %%{...}");
            memcpy(name, p + 2, nlen);
            name[nlen] = '\0';
            for (size_t i = 0; i < nlen; i++)
                if (!is_alnum(name[i]) && name[i] != '-' && name[i] != '_')
                    return err_set(e, ERR_INVAL, "bad parameter name in %%{...}");
            val = part && part->params ? rfc2231_get(part->params, name) : NULL;
            if (!val)
                val = "";
            if (!valid_param_value(val))
                return err_set(e, ERR_INVAL, "refusing the unsafe value of parameter %s", name);
            mailcap_shell_quote(val, out);
            p = close;
        } else if (p[1] == 'n' || p[1] == 'F') {
            return err_set(e, ERR_UNSUPPORTED, "%%%c (multipart) is not supported", p[1]);
        } else {
            rc = buf_putc(out, *p);
        }
        if (rc < 0)
            return err_set(e, ERR_LIMIT, "mailcap command too long");
    }
    if (uses_file)
        *uses_file = used;
    return 0;
}

/* Whether cmd has a %s (as mailcap_expand reads it). */
static bool uses_file(const char *cmd)
{
    for (const char *p = cmd; *p; p++) {
        if (*p == '\\' && p[1])
            p++;
        else if (*p == '%' && p[1] == 's')
            return true;
        else if (*p == '%' && p[1])
            p++;
    }
    return false;
}

static bool safe_file_char(char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

char *mailcap_safe_name(const char *filename, const char *nametemplate)
{
    char base[SAFE_NAME_MAX * 4 + 1];
    const char *p = filename ? filename : "";
    const char *slash;
    size_t n = 0, k = 0;
    char *clean;

    if ((slash = strrchr(p, '/')) != NULL)
        p = slash + 1;
    if ((slash = strrchr(p, '\\')) != NULL)
        p = slash + 1;
    clean = xmalloc(strlen(p) + 1);
    for (; *p; p++)
        if (safe_file_char(*p) && (n > 0 || (*p != '.' && *p != '-')))
            clean[n++] = *p;
    clean[n] = '\0';
    if (n > SAFE_NAME_MAX) {
        const char *dot = strrchr(clean, '.');
        size_t ext = dot ? n - (size_t)(dot - clean) : 0;
        if (ext > SAFE_EXT_MAX)
            ext = 0;
        memcpy(base, clean, SAFE_NAME_MAX - ext);
        memcpy(base + SAFE_NAME_MAX - ext, clean + n - ext, ext);
        k = SAFE_NAME_MAX;
    } else {
        memcpy(base, clean, n);
        k = n;
    }
    base[k] = '\0';
    free(clean);
    if (k == 0)
        strcpy(base, "part");

    if (nametemplate) {
        const char *pct = strstr(nametemplate, "%s");
        bool ok = pct && !strstr(pct + 2, "%s");
        size_t plen = pct ? (size_t)(pct - nametemplate) : 0;

        for (const char *q = nametemplate; ok && *q; q++)
            if (q != pct && q != pct + 1 && !safe_file_char(*q))
                ok = false;
        if (ok && plen == 0 && nametemplate[0] != '\0') {
            const char *suffix = pct + 2;
            size_t sl = strlen(suffix), bl = strlen(base);
            if (sl <= bl && strcasecmp(base + bl - sl, suffix) == 0)
                return xstrdup(base);
        }
        if (ok)
            return xasprintf("%.*s%s%s", (int)plen, nametemplate, base, pct + 2);
    }
    return xstrdup(base);
}

/* ---- running programs ---------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* write() that turns a SIGPIPE from this call into a plain EPIPE. */
static ssize_t write_nosigpipe(int fd, const void *p, size_t n)
{
    sigset_t set, old, pending;
    bool was_pending;
    ssize_t r;
    int saved;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    r = write(fd, p, n);
    saved = errno;
    if (r < 0 && saved == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return r;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static int exit_code(int wstatus)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus))
        return 128 + WTERMSIG(wstatus);
    return 255;
}

static void kill_child(pid_t pid, bool group)
{
    if (group)
        kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

/* Wait for pid; with a deadline (>= 0), kill it when the deadline passes.
 * Returns the wait status, or -1 on timeout (the child is then reaped). */
static int reap(pid_t pid, long long deadline, bool group, bool *timed_out)
{
    int ws = 0, nap = 1;

    *timed_out = false;
    for (;;) {
        pid_t r = waitpid(pid, &ws, deadline >= 0 ? WNOHANG : 0);
        if (r == pid)
            return ws;
        if (r < 0 && errno != EINTR)
            return -1;
        if (r == 0) {
            if (now_ms() >= deadline) {
                kill_child(pid, group);
                *timed_out = true;
                while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
                    ;
                return -1;
            }
            /* no descriptor tells us about the exit: poll the status with a
             * short, growing pause */
            poll(NULL, 0, nap);
            if (nap < 50)
                nap *= 2;
        }
    }
}

static int spawn(const char *const argv[], struct mailcap_exec *x, int in_fd, int out_fd,
                 pid_t *pid, struct err *e)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, deflt;
    size_t argc = 0;
    char **av;
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    int rc;

    while (argv[argc])
        argc++;
    av = XNEWARRAY(char *, argc + 1);
    for (size_t i = 0; i < argc; i++)
        av[i] = xstrdup(argv[i]);
    av[argc] = NULL;

    posix_spawn_file_actions_init(&fa);
    if (in_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else if (x->quiet)
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    else if (x->quiet)
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (x->quiet)
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);

    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGPIPE);
    sigaddset(&deflt, SIGINT);
    sigaddset(&deflt, SIGQUIT);
    sigaddset(&deflt, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &deflt);
    if (x->timeout_ms) {
        flags |= POSIX_SPAWN_SETPGROUP;   /* a timeout kills the whole group */
        posix_spawnattr_setpgroup(&attr, 0);
    }
    posix_spawnattr_setflags(&attr, flags);

    rc = posix_spawnp(pid, av[0], &fa, &attr, av, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    for (size_t i = 0; i < argc; i++)
        free(av[i]);
    free(av);
    if (rc != 0) {
        errno = rc;
        if (rc == ENOENT)
            return err_set(e, ERR_NOTFOUND, "%s: command not found", argv[0]);
        return err_sys(e, "cannot run %s", argv[0]);
    }
    return 0;
}

int mailcap_exec(const char *const argv[], struct mailcap_exec *x, struct err *e)
{
    int inp[2] = {-1, -1}, outp[2] = {-1, -1};
    long long deadline = x->timeout_ms ? now_ms() + x->timeout_ms : -1;
    size_t written = 0;
    pid_t pid;
    bool timed_out = false, late = false, group = x->timeout_ms != 0;
    int rc = 0, ws;
    char *chunk;

    x->status = -1;
    if (!argv || !argv[0] || !argv[0][0])
        return err_set(e, ERR_INVAL, "empty command");
    if ((x->input && pipe2(inp, O_CLOEXEC) < 0) || (x->output && pipe2(outp, O_CLOEXEC) < 0)) {
        err_sys(e, "pipe");
        close_fd(&inp[0]);
        close_fd(&inp[1]);
        return -1;
    }
    if (spawn(argv, x, inp[0], outp[1], &pid, e) < 0) {
        close_fd(&inp[0]);
        close_fd(&inp[1]);
        close_fd(&outp[0]);
        close_fd(&outp[1]);
        return -1;
    }
    close_fd(&inp[0]);
    close_fd(&outp[1]);
    if (inp[1] >= 0) {
        fcntl(inp[1], F_SETFL, fcntl(inp[1], F_GETFL) | O_NONBLOCK);
        if (x->input_len == 0)
            close_fd(&inp[1]);
    }
    if (outp[0] >= 0)
        fcntl(outp[0], F_SETFL, fcntl(outp[0], F_GETFL) | O_NONBLOCK);

    chunk = xmalloc(IO_CHUNK);
    while (rc == 0 && (inp[1] >= 0 || outp[0] >= 0)) {
        struct pollfd pf[2];
        nfds_t np = 0;
        int wait = -1, pr;

        if (inp[1] >= 0)
            pf[np++] = (struct pollfd){inp[1], POLLOUT, 0};
        if (outp[0] >= 0)
            pf[np++] = (struct pollfd){outp[0], POLLIN, 0};
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0) {
                timed_out = true;
                break;
            }
            wait = left > INT_MAX ? INT_MAX : (int)left;
        }
        pr = poll(pf, np, wait);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            rc = err_sys(e, "poll");
            break;
        }
        for (nfds_t i = 0; i < np && rc == 0; i++) {
            if (pf[i].revents == 0)
                continue;
            if (pf[i].fd == inp[1]) {
                size_t left = x->input_len - written;
                ssize_t w = write_nosigpipe(inp[1], x->input + written,
                                            left < IO_CHUNK ? left : IO_CHUNK);
                if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    close_fd(&inp[1]);   /* EPIPE: it did not want it all */
                } else if (w > 0 && (written += (size_t)w) == x->input_len) {
                    close_fd(&inp[1]);
                }
            } else {
                ssize_t r = read(outp[0], chunk, IO_CHUNK);
                if (r == 0) {
                    close_fd(&outp[0]);
                } else if (r < 0) {
                    if (errno != EAGAIN && errno != EINTR)
                        rc = err_sys(e, "reading from %s", argv[0]);
                } else if (buf_append(x->output, chunk, (size_t)r) < 0) {
                    rc = err_set(e, ERR_LIMIT, "%s: output larger than %zu bytes", argv[0],
                                 x->output->max);
                }
            }
        }
    }
    free(chunk);
    close_fd(&inp[1]);
    close_fd(&outp[0]);
    if (rc < 0 || timed_out)
        kill_child(pid, group);
    ws = reap(pid, timed_out ? now_ms() : deadline, group, &late);
    if (rc < 0)
        return -1;
    if (timed_out || late)
        return err_set(e, ERR_LIMIT, "%s: no answer after %u ms, stopped", argv[0],
                       x->timeout_ms);
    if (ws < 0)
        return err_sys(e, "waiting for %s", argv[0]);
    x->status = exit_code(ws);
    return 0;
}

static int run_shell(const char *cmd, struct mailcap_exec *x, struct err *e)
{
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    return mailcap_exec(argv, x, e);
}

/* ---- lookup -------------------------------------------------------------- */

static bool type_matches(const char *pattern, const char *type)
{
    size_t plen = strlen(pattern);

    if (plen >= 2 && strcmp(pattern + plen - 2, "/*") == 0)
        return strncasecmp(pattern, type, plen - 1) == 0 && type[plen - 1] != '\0';
    return strcasecmp(pattern, type) == 0;
}

static bool test_passes(const struct mailcap_entry *ent, const char *mime_type)
{
    struct mailcap_part part = {NULL, 0, mime_type, NULL, NULL};
    struct mailcap_exec x;
    struct buf cmd = BUF_INIT;
    bool ok = false;

    /* Only %t may appear: a test never sees message data. */
    if (strstr(ent->test, "%{") == NULL &&
        mailcap_expand(ent->test, &part, NULL, &cmd, NULL, NULL) == 0) {
        memset(&x, 0, sizeof x);
        x.quiet = true;
        x.timeout_ms = MAILCAP_TEST_TIMEOUT_MS;
        ok = run_shell(buf_cstr(&cmd), &x, NULL) == 0 && x.status == 0;
    }
    buf_free(&cmd);
    return ok;
}

const struct mailcap_entry *mailcap_lookup(const struct mailcap *mc, const char *mime_type,
                                           unsigned flags)
{
    if (!mime_type)
        return NULL;
    for (size_t i = 0; i < mc->n; i++) {
        const struct mailcap_entry *ent = &mc->v[i];

        if (!type_matches(ent->type, mime_type))
            continue;
        if ((flags & MAILCAP_COPIOUS) && !ent->copiousoutput)
            continue;
        if (ent->test) {
            if (flags & MAILCAP_SKIP_TESTS)
                continue;
            if (!(flags & MAILCAP_ASSUME_TESTS) && !test_passes(ent, mime_type))
                continue;
        }
        return ent;
    }
    return NULL;
}

/* ---- view ---------------------------------------------------------------- */

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

static const char *tmp_root(void)
{
    const char *t = getenv("TMPDIR");
    return t && t[0] == '/' ? t : "/tmp";
}

/* Make the private directory and the file for %s.  On success *dir and
 * *path are set (free both). */
static int make_temp_file(const struct mailcap_entry *ent, const struct mailcap_part *part,
                          char **dir, char **path, struct err *e)
{
    char *name;
    int fd;

    *dir = xasprintf("%s/correo-XXXXXX", tmp_root());
    *path = NULL;
    if (!mkdtemp(*dir)) {
        err_sys(e, "cannot create a temporary directory in %s", tmp_root());
        free(*dir);
        *dir = NULL;
        return -1;
    }
    name = mailcap_safe_name(part->filename, ent->nametemplate);
    *path = xasprintf("%s/%s", *dir, name);
    free(name);
    fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, part->data ? part->data : "", part->len) < 0) {
        err_sys(e, "cannot write a temporary file");
        if (fd >= 0)
            close(fd);
        unlink(*path);
        rmdir(*dir);
        free(*path);
        free(*dir);
        *path = *dir = NULL;
        return -1;
    }
    if (close(fd) < 0) {
        err_sys(e, "cannot write a temporary file");
        unlink(*path);
        rmdir(*dir);
        free(*path);
        free(*dir);
        *path = *dir = NULL;
        return -1;
    }
    return 0;
}

int mailcap_run(const struct mailcap_entry *ent, const struct mailcap_part *part,
                unsigned timeout_ms, struct buf *output, struct err *e)
{
    struct buf cmd = BUF_INIT;
    struct mailcap_exec x;
    char *dir = NULL, *path = NULL;
    bool file = uses_file(ent->command);
    int rc;

    if (file && make_temp_file(ent, part, &dir, &path, e) < 0)
        return -1;
    rc = mailcap_expand(ent->command, part, path, &cmd, NULL, e);
    if (rc == 0) {
        memset(&x, 0, sizeof x);
        if (!file) {
            x.input = part->data ? part->data : "";
            x.input_len = part->len;
        }
        if (ent->copiousoutput && output) {
            x.output = output;
            x.quiet = true;
            x.timeout_ms = timeout_ms ? timeout_ms : MAILCAP_VIEW_TIMEOUT_MS;
        }
        rc = run_shell(buf_cstr(&cmd), &x, e);
        if (rc == 0 && x.status != 0)
            rc = err_set(e, ERR_IO, "the viewer for %s exited with status %d", ent->type,
                         x.status);
    }
    if (path) {
        unlink(path);
        rmdir(dir);
    }
    free(path);
    free(dir);
    buf_free(&cmd);
    return rc;
}

/* ---- save and pipe ------------------------------------------------------- */

int mailcap_save_part(const char *path, const char *data, size_t len, bool overwrite,
                      struct err *e)
{
    const char *slash = strrchr(path, '/');
    char *tmp;
    int fd, rc = 0;

    if (!*path)
        return err_set(e, ERR_INVAL, "empty file name");
    if (!overwrite && access(path, F_OK) == 0)
        return err_set(e, ERR_EXISTS, "%s already exists", path);
    tmp = slash ? xasprintf("%.*s/.correo-save-XXXXXX", (int)(slash - path), path)
                : xstrdup(".correo-save-XXXXXX");
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        err_sys(e, "%s", path);
        free(tmp);
        return -1;
    }
    if (write_all(fd, data ? data : "", len) < 0 || fsync(fd) < 0)
        rc = err_sys(e, "%s", path);
    if (close(fd) < 0 && rc == 0)
        rc = err_sys(e, "%s", path);
    if (rc == 0) {
        if (overwrite) {
            if (rename(tmp, path) < 0)
                rc = err_sys(e, "%s", path);
        } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
            if (errno == EEXIST) {
                rc = err_set(e, ERR_EXISTS, "%s already exists", path);
            } else if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
                rc = err_sys(e, "%s", path);
            } else if (link(tmp, path) < 0) {
                /* a file system without RENAME_NOREPLACE: link() does not
                 * replace either */
                rc = errno == EEXIST ? err_set(e, ERR_EXISTS, "%s already exists", path)
                                     : err_sys(e, "%s", path);
            }
        }
    }
    unlink(tmp);   /* after a rename there is nothing left to remove */
    free(tmp);
    return rc;
}

int mailcap_pipe_to_command(const char *cmd, const char *data, size_t len, struct buf *output,
                            struct err *e)
{
    struct mailcap_exec x;

    if (!cmd || !*cmd)
        return err_set(e, ERR_INVAL, "empty command");
    memset(&x, 0, sizeof x);
    x.input = data ? data : "";
    x.input_len = len;
    x.output = output;
    if (run_shell(cmd, &x, e) < 0)
        return -1;
    if (x.status != 0)
        return err_set(e, ERR_IO, "the command exited with status %d", x.status);
    return 0;
}
