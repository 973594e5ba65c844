/* log: process-wide diagnostic sink with escaping and credential masking. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "sanitize.h"

#define LOG_LINE_MAX 4096

/* For appends that cannot fail: unbounded buffers, or sizes checked above. */
#define MUST(x) do { if ((x) < 0) die("log: buffer refused data"); } while (0)

static struct {
    enum log_target target;
    enum log_level level;
    int fd;                 /* LOG_TO_FILE */
    char ident[64];
} lg = {LOG_TO_STDERR, LOGL_WARN, -1, "correo"};

static const char *const level_names[] = {"error", "warning", "info", "debug"};

int log_open(const char *ident, enum log_target target, const char *path, struct err *e)
{
    int fd = -1;

    if (target == LOG_TO_FILE) {
        if (!path)
            return err_set(e, ERR_INVAL, "log file: no path given");
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
            return err_sys(e, "log file %s", path);
    }
    log_close();
    snprintf(lg.ident, sizeof lg.ident, "%s", ident ? ident : "correo");
    lg.target = target;
    lg.fd = fd;
    if (target == LOG_TO_SYSLOG)
        openlog(lg.ident, LOG_PID, LOG_MAIL);
    return 0;
}

void log_close(void)
{
    if (lg.target == LOG_TO_FILE && lg.fd >= 0)
        close(lg.fd);
    if (lg.target == LOG_TO_SYSLOG)
        closelog();
    lg.fd = -1;
    lg.target = LOG_TO_STDERR;
}

void log_set_level(enum log_level level)
{
    lg.level = level;
}

enum log_level log_get_level(void)
{
    return lg.level;
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < ARRAY_LEN(level_names); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warn") == 0) {
        *out = LOGL_WARN;
        return 0;
    }
    return -1;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;   /* nowhere left to report a failing log */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Emit text (already escaped, one line, no newline). */
static void emit(enum log_level level, const char *text, size_t len)
{
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    struct buf line = BUF_INIT;

    if (lg.target == LOG_TO_SYSLOG) {
        syslog(prio[level], "%.*s", (int)len, text);
        return;
    }
    if (lg.target == LOG_TO_FILE) {
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
        MUST(buf_puts(&line, stamp));
    }
    MUST(buf_printf(&line, "%s: %s: ", lg.ident, level_names[level]));
    MUST(buf_append(&line, text, len));
    MUST(buf_putc(&line, '\n'));
    write_all(lg.target == LOG_TO_FILE ? lg.fd : STDERR_FILENO, line.data, line.len);
    buf_free(&line);
}

/* Escape raw and emit it, cut at LOG_LINE_MAX with a visible marker. */
static void emit_raw(enum log_level level, const char *raw, size_t len)
{
    struct buf esc;

    buf_init(&esc, LOG_LINE_MAX);
    if (sanitize_log(&esc, raw, len) < 0) {
        /* Escaping is per byte: the longest prefix that fits was not kept,
         * so escape a prefix that surely fits and mark the cut. */
        buf_reset(&esc);
        (void)sanitize_log(&esc, raw, (LOG_LINE_MAX - 32) / 4);
        MUST(buf_puts(&esc, "...[truncated]"));
    }
    emit(level, esc.data ? esc.data : "", esc.len);
    buf_free(&esc);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    struct buf raw = BUF_INIT;
    va_list ap;

    if (level > lg.level)
        return;
    va_start(ap, fmt);
    MUST(buf_vprintf(&raw, fmt, ap));
    va_end(ap);
    emit_raw(level, raw.data ? raw.data : "", raw.len);
    buf_free(&raw);
}

/* The next whitespace-delimited word of line[*pos..len): sets *start and
 * returns its length, advancing *pos past it. */
static size_t next_word(const char *line, size_t len, size_t *pos, size_t *start)
{
    size_t i = *pos;

    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    *start = i;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
    *pos = i;
    return i - *start;
}

static bool word_is(const char *line, size_t start, size_t n, const char *w)
{
    return n == strlen(w) && strncasecmp(line + start, w, n) == 0;
}

int log_mask_credentials(struct buf *out, const char *line, size_t len)
{
    size_t pos = 0, s1, s2, n1, n2;
    size_t keep = len;   /* bytes kept verbatim; the rest becomes *** */

    n1 = next_word(line, len, &pos, &s1);
    /* POP3: PASS secret / APOP user digest;  SMTP: AUTH mech [initial] */
    if (word_is(line, s1, n1, "PASS")) {
        keep = pos;
    } else if (word_is(line, s1, n1, "APOP") || word_is(line, s1, n1, "AUTH")) {
        next_word(line, len, &pos, &s2);
        keep = pos;
    } else if (n1 > 0) {
        /* IMAP: tag LOGIN user pass / tag AUTHENTICATE mech [initial] */
        n2 = next_word(line, len, &pos, &s2);
        if (word_is(line, s2, n2, "LOGIN") || word_is(line, s2, n2, "AUTHENTICATE")) {
            size_t s3;
            next_word(line, len, &pos, &s3);   /* user name or mechanism */
            keep = pos;
        }
    }
    if (buf_append(out, line, keep) < 0)
        return -1;
    /* Mask only when something follows. */
    size_t rest = keep;
    while (rest < len && (line[rest] == ' ' || line[rest] == '\t'))
        rest++;
    if (rest < len && buf_puts(out, " ***") < 0)
        return -1;
    return 0;
}

void log_proto(enum log_level level, const char *dir, const char *line, size_t len)
{
    struct buf masked = BUF_INIT;

    if (level > lg.level)
        return;
    MUST(buf_puts(&masked, dir));
    MUST(buf_putc(&masked, ' '));
    (void)log_mask_credentials(&masked, line, len);
    emit_raw(level, masked.data, masked.len);
    buf_free(&masked);
}

void log_secret(enum log_level level, const char *dir)
{
    log_msg(level, "%s ***", dir);
}
