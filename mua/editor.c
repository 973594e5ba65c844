/* editor: draft files that survive a crash, and the editor that writes them. */
#include "editor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mailcap.h"
#include "xalloc.h"
#include "fsutil.h"

#define DRAFT_FILE_MAX (64u << 20)

int editor_drafts_dir(char **out, struct err *e)
{
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char *dir;

    if (state && *state == '/')
        dir = xasprintf("%s/correo/drafts", state);
    else if (home && *home)
        dir = xasprintf("%s/.local/state/correo/drafts", home);
    else
        return err_set(e, ERR_INVAL, "neither $XDG_STATE_HOME nor $HOME is set");
    if (fs_mkdirs(dir, 0700, e) < 0) {
        free(dir);
        return -1;
    }
    *out = dir;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int fd, rc;

    if (slash)
        *slash = '\0';
    fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int editor_draft_create(const char *text, size_t len, char **path, struct err *e)
{
    char *dir, *tmpl;
    int fd;

    if (editor_drafts_dir(&dir, e) < 0)
        return -1;
    tmpl = xasprintf("%s/draft-XXXXXX.eml", dir);
    free(dir);
    fd = mkstemps(tmpl, 4);
    if (fd < 0) {
        err_sys(e, "cannot create a draft file in %s", tmpl);
        free(tmpl);
        return -1;
    }
    if (write_all(fd, text, len) < 0 || fsync(fd) < 0) {
        err_sys(e, "cannot write %s", tmpl);
        close(fd);
        unlink(tmpl);
        free(tmpl);
        return -1;
    }
    close(fd);
    (void)fsync_dir_of(tmpl);
    *path = tmpl;
    return 0;
}

int editor_draft_write(const char *path, const char *text, size_t len, struct err *e)
{
    char *tmp = xasprintf("%s.new", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        err_sys(e, "cannot write %s", tmp);
        free(tmp);
        return -1;
    }
    if (write_all(fd, text, len) < 0 || fsync(fd) < 0) {
        err_sys(e, "cannot write %s", tmp);
        close(fd);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        err_sys(e, "cannot replace %s", path);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    (void)fsync_dir_of(path);
    return 0;
}

int editor_draft_read(const char *path, struct buf *out, struct err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct buf b;

    if (fd < 0)
        return err_sys(e, "cannot read %s", path);
    buf_init(&b, DRAFT_FILE_MAX);
    int rc = buf_read_all(&b, fd);
    if (rc < 0) {
        int saved = errno;
        close(fd);
        buf_free(&b);
        errno = saved;
        if (rc == -2)
            return err_set(e, ERR_LIMIT, "%s is larger than %u bytes", path, DRAFT_FILE_MAX);
        return err_sys(e, "cannot read %s", path);
    }
    close(fd);
    if (b.len && buf_append(out, b.data, b.len) < 0) {
        buf_free(&b);
        return err_set(e, ERR_LIMIT, "%s does not fit", path);
    }
    buf_free(&b);
    return 0;
}

int editor_run(const struct config *cfg, const char *path, struct err *e)
{
    struct buf cmd = BUF_INIT;
    struct mailcap_exec x;
    const char *ed = config_editor(cfg);
    int rc;

    if (buf_puts(&cmd, ed) < 0 || buf_putc(&cmd, ' ') < 0)
        die("editor: unbounded buffer refused data");
    mailcap_shell_quote(path, &cmd);
    const char *argv[] = {"/bin/sh", "-c", buf_cstr(&cmd), NULL};
    memset(&x, 0, sizeof x);
    rc = mailcap_exec(argv, &x, e);
    if (rc == 0 && x.status != 0)
        rc = err_set(e, ERR_IO, "the editor (%s) exited with status %d", ed, x.status);
    buf_free(&cmd);
    return rc;
}

static int by_mtime(const void *a, const void *b)
{
    struct stat sa, sb;
    const char *const *x = a, *const *y = b;

    if (stat(*x, &sa) < 0 || stat(*y, &sb) < 0)
        return strcmp(*x, *y);
    return (sa.st_mtime > sb.st_mtime) - (sa.st_mtime < sb.st_mtime);
}

size_t editor_orphans(char ***paths)
{
    char *dir;
    struct err e;
    DIR *d;
    struct dirent *de;
    size_t n = 0;

    *paths = NULL;
    if (editor_drafts_dir(&dir, &e) < 0)
        return 0;
    d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "draft-", 6) != 0 || len < 10 ||
            strcmp(de->d_name + len - 4, ".eml") != 0)
            continue;
        *paths = xreallocarray(*paths, n + 1, sizeof **paths);
        (*paths)[n++] = xasprintf("%s/%s", dir, de->d_name);
    }
    closedir(d);
    free(dir);
    if (n > 1)
        qsort(*paths, n, sizeof **paths, by_mtime);
    return n;
}
