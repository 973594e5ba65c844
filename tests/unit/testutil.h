/*
 * testutil: what several unit tests need around the code they test:
 * private temporary directories and a monotonic clock for printed timings.
 */
#ifndef CORREO_TESTUTIL_H
#define CORREO_TESTUTIL_H

/* mkdtemp under $TMPDIR (else /tmp) named correo-TAG-XXXXXX; aborts the
 * test on failure.  free() the result. */
char *tu_tmpdir(const char *tag);

/* Remove path and everything below it; aborts the test on failure. */
void tu_rm_rf(const char *path);

/* Seconds on the monotonic clock. */
double tu_now(void);

#endif
