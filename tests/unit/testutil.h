/*
 * testutil: what several unit tests need around the code they test:
 * private temporary directories, a monotonic clock for printed timings, and
 * waiting for a forked child with a deadline.
 */
#ifndef CORREO_TESTUTIL_H
#define CORREO_TESTUTIL_H

#include <sys/types.h>

/* mkdtemp under $TMPDIR (else /tmp) named correo-TAG-XXXXXX; aborts the
 * test on failure.  free() the result. */
char *tu_tmpdir(const char *tag);

/* Remove path and everything below it; aborts the test on failure. */
void tu_rm_rf(const char *path);

/* Seconds on the monotonic clock. */
double tu_now(void);

/* Wait for child pid, at most timeout_s seconds (then it is killed and the
 * test fails); returns its wait status. */
int tu_wait_child(pid_t pid, double timeout_s);

#endif
