/*
 * log: the program's diagnostic log.
 *
 * One process-wide sink: stderr (default), syslog, or an append-only file.
 * Every line is passed through sanitize_log(), so bytes from peers (client
 * commands, server replies, message headers) can never forge a second line
 * or send escape sequences to whoever tails the log.  Protocol lines are
 * logged through log_proto(), which masks credentials: the argument of POP3
 * PASS and APOP, IMAP LOGIN's password and AUTHENTICATE's initial response,
 * SMTP AUTH's initial response.  SASL continuation lines are logged by the
 * caller with log_secret().
 */
#ifndef CORREO_LOG_H
#define CORREO_LOG_H

#include <stddef.h>

#include "buf.h"
#include "err.h"
#include "xalloc.h"

enum log_level {
    LOGL_ERROR = 0,
    LOGL_WARN,
    LOGL_INFO,
    LOGL_DEBUG,
};

enum log_target {
    LOG_TO_STDERR = 0,
    LOG_TO_SYSLOG,
    LOG_TO_FILE,
};

/* Choose the sink.  ident names the program (syslog ident, line prefix);
 * path is used for LOG_TO_FILE only.  On failure the previous sink stays. */
int log_open(const char *ident, enum log_target target, const char *path, struct err *e);
void log_close(void);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parse "error", "warn"/"warning", "info", "debug". */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) CORREO_PRINTF(2, 3);

#define log_error(...) log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOGL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOGL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOGL_DEBUG, __VA_ARGS__)

/* Log one protocol line (without its CRLF) with credentials masked.
 * dir is a short tag such as "C:" or "S:". */
void log_proto(enum log_level level, const char *dir, const char *line, size_t len);

/* Log that a secret line of len bytes went by, without its content. */
void log_secret(enum log_level level, const char *dir);

/* Append line with credentials replaced by "***" to out (0, or -1 at the
 * ceiling).  Exposed for tests and for callers that keep transcripts. */
int log_mask_credentials(struct buf *out, const char *line, size_t len);

#endif
