/* testutil: temporary directories and timing for the unit tests. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "testutil.h"
#include "xalloc.h"

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *t;

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    t = xasprintf("%s/correo-%s-XXXXXX", base, tag);
    assert_non_null(mkdtemp(t));
    return t;
}

static int rm_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

void tu_rm_rf(const char *path)
{
    assert_int_equal(nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS), 0);
}

double tu_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tu_wait_child(pid_t pid, double timeout_s)
{
    double end = tu_now() + timeout_s;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);

        assert_true(r >= 0);
        if (r == pid)
            return status;
        if (tu_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("child %ld did not finish in %.0f s", (long)pid, timeout_s);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
