/*
 * regex_guard: regcomp() without its memory blow-ups.
 *
 * glibc's regcomp copies the expression under a bounded or stacked
 * repetition, and its memory grows faster than the copy: "a{1,32767}" or
 * "a+++...+" (each + doubles) take gigabytes.  Every regex that comes from
 * a user, a config file or a message goes through regex_compile(), which
 * estimates the size of the expanded expression first and refuses one that
 * is too big, with a message instead of an out-of-memory abort.
 */
#ifndef CORREO_REGEX_GUARD_H
#define CORREO_REGEX_GUARD_H

#include <regex.h>
#include <stddef.h>

#include "err.h"

/* The largest estimated expansion regex_compile accepts. */
#define REGEX_COST_MAX 2048

/* The estimated size of re (len bytes, ERE syntax) once repetitions are
 * expanded; saturates just past REGEX_COST_MAX. */
size_t regex_cost(const char *re, size_t len);

/* regcomp(re, text, flags) after the cost check.  On failure *e says why
 * (ERR_PARSE: "too complex ..." or regerror's text) and re is not
 * allocated. */
int regex_compile(regex_t *re, const char *text, int flags, struct err *e);

#endif
