/* fsutil: small file-system helpers (see fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "xalloc.h"

int fs_mkdirs(const char *path, mode_t mode, struct err *e)
{
    char *p = xstrdup(path);
    size_t len = strlen(p);

    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            err_sys(e, "cannot create %s", p);
            free(p);
            return -1;
        }
        if (i < len)
            p[i] = '/';
    }
    free(p);
    return 0;
}
