/* rcfile: tokenizer and loader for the shared rc syntax. */
#include "rcfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

#define RC_FILE_MAX (16 * 1024 * 1024)

void rc_diag_init(struct rc_diag *d)
{
    d->msgs = NULL;
    d->n = 0;
    d->dropped = 0;
}

void rc_diag_free(struct rc_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    rc_diag_init(d);
}

void rc_diag_add(struct rc_diag *d, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    char *text;

    if (!d)
        return;
    if (d->n >= RC_DIAG_MAX) {
        d->dropped++;
        return;
    }
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    d->msgs = xreallocarray(d->msgs, d->n + 1, sizeof *d->msgs);
    d->msgs[d->n++] = xasprintf("%s:%u: %s", file, line, text);
    free(text);
}

void rc_loader_init(struct rc_loader *l, rc_handler handler, void *ctx, struct rc_diag *diag)
{
    memset(l, 0, sizeof *l);
    l->handler = handler;
    l->ctx = ctx;
    l->diag = diag;
}

/* ---- the tokenizer -------------------------------------------------- */

struct lexer {
    struct rc_loader *l;
    const char *name;      /* for diagnostics */
    const char *base_dir;  /* for relative sources; NULL: cwd */
    const char *p;
    size_t len, pos;
    unsigned line;
    /* the command being built */
    char **words;
    size_t n_words;
    struct buf word;
    bool in_word;
    size_t cmd_bytes;
    const char *error;     /* static text; set: the command is discarded */
};

static void cmd_reset(struct lexer *x)
{
    for (size_t i = 0; i < x->n_words; i++)
        free(x->words[i]);
    x->n_words = 0;
    buf_reset(&x->word);
    x->in_word = false;
    x->cmd_bytes = 0;
    x->error = NULL;
}

static void fail(struct lexer *x, const char *msg)
{
    if (!x->error)
        x->error = msg;
}

static void word_put(struct lexer *x, const char *s, size_t n)
{
    x->in_word = true;
    if (x->error)
        return;
    if (buf_append(&x->word, s, n) < 0)
        fail(x, "line too long");
}

static void word_end(struct lexer *x)
{
    if (!x->in_word)
        return;
    x->in_word = false;
    if (x->error) {
        buf_reset(&x->word);
        return;
    }
    if (x->n_words >= RC_WORDS_MAX) {
        fail(x, "too many words in one command");
        buf_reset(&x->word);
        return;
    }
    x->words = xreallocarray(x->words, x->n_words + 2, sizeof *x->words);
    x->words[x->n_words++] = xstrdup(buf_cstr(&x->word));
    x->words[x->n_words] = NULL;
    buf_reset(&x->word);
}

static int peek(const struct lexer *x, size_t ahead)
{
    return x->pos + ahead < x->len ? (unsigned char)x->p[x->pos + ahead] : -1;
}

/* Backslash-newline (or backslash-CR-newline) at pos: its length, else 0. */
static size_t continuation_at(const struct lexer *x)
{
    if (peek(x, 0) != '\\')
        return 0;
    if (peek(x, 1) == '\n')
        return 2;
    if (peek(x, 1) == '\r' && peek(x, 2) == '\n')
        return 3;
    return 0;
}

static bool is_name_char(int c, bool first)
{
    return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (!first && c >= '0' && c <= '9');
}

/* At '$': expand an environment variable, or keep a lone '$'. */
static void expand_var(struct lexer *x)
{
    size_t start, n;
    bool braced = peek(x, 1) == '{';
    char name[256];

    start = x->pos + (braced ? 2 : 1);
    n = 0;
    while (start + n < x->len && is_name_char((unsigned char)x->p[start + n], n == 0))
        n++;
    if (n == 0 || (braced && (start + n >= x->len || x->p[start + n] != '}'))) {
        if (braced) {
            fail(x, "bad ${...} variable reference");
            x->pos++;
            return;
        }
        word_put(x, "$", 1);     /* "$" before a non-name: literal (regex anchors) */
        x->pos++;
        return;
    }
    if (n >= sizeof name) {
        fail(x, "variable name too long");
        x->pos = start + n + (braced ? 1 : 0);
        return;
    }
    memcpy(name, x->p + start, n);
    name[n] = '\0';
    x->pos = start + n + (braced ? 1 : 0);
    const char *val = getenv(name);
    x->in_word = true;
    if (val)
        word_put(x, val, strlen(val));
}

/* At a backslash (not before a newline): decode mutt's escapes, as mutt's
 * own tokenizer does, so "\\Cf" is control-F and "\\e" is ESC in a bind or
 * macro.  Any other escaped character stands for itself. */
static void lex_escape(struct lexer *x)
{
    int d = peek(x, 1);
    char ch;

    x->pos += 2;
    switch (d) {
    case 'n': ch = '\n'; break;
    case 't': ch = '\t'; break;
    case 'r': ch = '\r'; break;
    case 'f': ch = '\f'; break;
    case 'e': case 'E': ch = '\033'; break;
    case 'c': case 'C': {
        int k = peek(x, 0);
        if (k >= 0 && k != '\n' && ((k >= '@' && k <= '_') || (k >= 'a' && k <= 'z') || k == '?')) {
            x->pos++;
            ch = k == '?' ? (char)0x7f : (char)(k & 0x1f);
            if (ch == 0) {
                fail(x, "NUL byte in line");
                return;
            }
        } else {
            ch = (char)d;
        }
        break;
    }
    default:
        if (d >= '0' && d <= '7' && peek(x, 0) >= '0' && peek(x, 0) <= '7' &&
            peek(x, 1) >= '0' && peek(x, 1) <= '7') {
            int v = (d - '0') * 64 + (peek(x, 0) - '0') * 8 + (peek(x, 1) - '0');
            x->pos += 2;
            if (v == 0 || v > 0xff) {
                fail(x, v ? "octal escape out of range" : "NUL byte in line");
                return;
            }
            ch = (char)v;
        } else {
            ch = (char)d;
        }
        break;
    }
    word_put(x, &ch, 1);
}

static void skip_to_eol(struct lexer *x)
{
    while (x->pos < x->len && x->p[x->pos] != '\n')
        x->pos++;
}

static void lex_single(struct lexer *x)
{
    x->pos++;   /* the quote */
    x->in_word = true;
    for (;;) {
        int c = peek(x, 0);
        if (c < 0 || c == '\n') {
            fail(x, "unterminated single quote");
            return;
        }
        x->pos++;
        if (c == '\'')
            return;
        char ch = (char)c;
        word_put(x, &ch, 1);
    }
}

static void lex_double(struct lexer *x)
{
    x->pos++;
    x->in_word = true;
    for (;;) {
        int c = peek(x, 0);
        size_t cont;
        char ch;

        if (c < 0 || c == '\n') {
            fail(x, "unterminated double quote");
            return;
        }
        if ((cont = continuation_at(x)) > 0) {
            x->pos += cont;
            x->line++;
            continue;
        }
        if (c == '"') {
            x->pos++;
            return;
        }
        if (c == '`') {
            fail(x, "backticks (command substitution) are not supported");
            x->pos++;
            continue;
        }
        if (c == '$' && !x->l->no_env) {
            expand_var(x);
            continue;
        }
        if (c == '\\') {
            int d = peek(x, 1);
            if (d < 0 || d == '\n') {
                fail(x, "unterminated double quote");
                x->pos++;
                return;
            }
            lex_escape(x);
            continue;
        }
        ch = (char)c;
        x->pos++;
        word_put(x, &ch, 1);
    }
}

static void dispatch(struct lexer *x, unsigned line);

/* Read one command (up to ';', newline or end); dispatch it. */
static void lex_command(struct lexer *x)
{
    unsigned line = x->line;
    size_t start = x->pos;

    cmd_reset(x);
    while (x->pos < x->len) {
        int c = peek(x, 0);
        size_t cont;

        if (x->pos - start > RC_LINE_MAX)
            fail(x, "line too long");
        if (x->error) {
            skip_to_eol(x);
            break;
        }
        if (c == '\n')
            break;
        if ((cont = continuation_at(x)) > 0) {
            x->pos += cont;
            x->line++;
            continue;
        }
        switch (c) {
        case ' ': case '\t': case '\r': case '\f': case '\v':
            word_end(x);
            x->pos++;
            continue;
        case ';':
            word_end(x);
            x->pos++;
            dispatch(x, line);
            return;
        case '#':
            if (!x->in_word) {
                skip_to_eol(x);
                continue;
            }
            break;
        case '\'':
            lex_single(x);
            continue;
        case '"':
            lex_double(x);
            continue;
        case '`':
            fail(x, "backticks (command substitution) are not supported");
            continue;
        case '\0':
            fail(x, "NUL byte in line");
            continue;
        case '$':
            if (!x->l->no_env) {
                expand_var(x);
                continue;
            }
            break;
        case '\\':
            if (peek(x, 1) >= 0 && peek(x, 1) != '\n') {
                lex_escape(x);
                continue;
            }
            x->pos++;        /* lone trailing backslash: nothing */
            continue;
        default:
            break;
        }
        char ch = (char)c;
        word_put(x, &ch, 1);
        x->pos++;
    }
    word_end(x);
    dispatch(x, line);
    if (x->pos < x->len && x->p[x->pos] == '\n') {
        x->pos++;
        x->line++;
    }
}

static void lex_text(struct rc_loader *l, const char *name, const char *base_dir,
                     const char *text, size_t len)
{
    struct lexer x;

    memset(&x, 0, sizeof x);
    x.l = l;
    x.name = name;
    x.base_dir = base_dir;
    x.p = text;
    x.len = len;
    x.line = 1;
    buf_init(&x.word, RC_LINE_MAX);
    while (x.pos < x.len)
        lex_command(&x);
    cmd_reset(&x);
    free(x.words);
    buf_free(&x.word);
}

/* ---- loading and source --------------------------------------------- */

static int read_file(const char *path, char **out, size_t *out_len, struct err *e)
{
    struct buf b;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return err_sys(e, "%s", path);
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return err_sys(e, "%s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_INVAL, "%s: not a regular file", path);
    }
    buf_init(&b, RC_FILE_MAX);
    int rc = buf_read_all(&b, fd);
    if (rc < 0) {
        int saved = errno;
        close(fd);
        buf_free(&b);
        errno = saved;
        if (rc == -2)
            return err_set(e, ERR_LIMIT, "%s: larger than %d bytes", path, RC_FILE_MAX);
        return err_sys(e, "%s", path);
    }
    close(fd);
    *out = buf_steal(&b, out_len);
    return 0;
}

static int load_path(struct rc_loader *l, const char *path, struct err *e)
{
    char *real, *text = NULL, *dir, *slash;
    size_t len = 0;

    if (read_file(path, &text, &len, e) < 0)
        return -1;
    real = realpath(path, NULL);
    if (!real)
        real = xstrdup(path);
    for (unsigned i = 0; i < l->depth; i++) {
        if (strcmp(l->stack[i], real) == 0) {
            free(real);
            free(text);
            return err_set(e, ERR_INVAL, "%s: sourced recursively", path);
        }
    }
    l->stack = xreallocarray(l->stack, l->depth + 1, sizeof *l->stack);
    l->stack[l->depth++] = real;

    dir = xstrdup(path);
    slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        strcpy(dir, ".");
    lex_text(l, path, dir, text, len);
    free(dir);
    free(text);

    free(l->stack[--l->depth]);
    if (l->depth == 0) {
        free(l->stack);
        l->stack = NULL;
    }
    return 0;
}

int rcfile_load(struct rc_loader *l, const char *path, struct err *e)
{
    return load_path(l, path, e);
}

void rcfile_load_string(struct rc_loader *l, const char *name, const char *text, size_t len)
{
    lex_text(l, name, NULL, text, len);
}

static char *resolve_source(const struct lexer *x, const char *arg)
{
    const char *home;

    if (arg[0] == '~' && (arg[1] == '/' || arg[1] == '\0')) {
        home = getenv("HOME");
        return xasprintf("%s%s", home ? home : "", arg + 1);
    }
    if (arg[0] == '/' || !x->base_dir)
        return xstrdup(arg);
    return xasprintf("%s/%s", x->base_dir, arg);
}

static void do_source(struct lexer *x, unsigned line)
{
    struct rc_loader *l = x->l;
    struct err e;
    char *path;

    if (l->no_source) {
        rc_diag_add(l->diag, x->name, line, "source: not allowed here");
        return;
    }
    if (x->n_words != 2) {
        rc_diag_add(l->diag, x->name, line, "source: expects exactly one file name");
        return;
    }
    if (l->depth >= RC_DEPTH_MAX) {
        rc_diag_add(l->diag, x->name, line, "source: nested more than %d deep", RC_DEPTH_MAX);
        return;
    }
    path = resolve_source(x, x->words[1]);
    err_clear(&e);
    if (load_path(l, path, &e) < 0)
        rc_diag_add(l->diag, x->name, line, "source: %s", e.text);
    free(path);
}

static void dispatch(struct lexer *x, unsigned line)
{
    struct rc_cmd cmd;
    struct err e;

    if (x->error) {
        rc_diag_add(x->l->diag, x->name, line, "%s", x->error);
        cmd_reset(x);
        return;
    }
    if (x->n_words == 0)
        return;
    if (strcmp(x->words[0], "source") == 0) {
        /* the nested file gets a lexer of its own */
        do_source(x, line);
        cmd_reset(x);
        return;
    }
    cmd.file = x->name;
    cmd.line = line;
    cmd.argv = x->words;
    cmd.argc = x->n_words;
    err_clear(&e);
    if (x->l->handler(x->l->ctx, &cmd, &e) < 0)
        rc_diag_add(x->l->diag, x->name, line, "%s", e.text[0] ? e.text : "command failed");
    cmd_reset(x);
}

char *rc_quote(const char *word)
{
    static const char safe[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./@:+,=%^~-";
    struct buf b = BUF_INIT;
    bool plain = word[0] != '\0' && word[0] != '~';

    for (const char *p = word; *p && plain; p++)
        plain = strchr(safe, *p) != NULL;
    if (plain)
        return xstrdup(word);
    if (!strchr(word, '\'') && !strpbrk(word, "\n\r")) {
        if (buf_printf(&b, "'%s'", word) < 0)
            die("rc_quote: unbounded buffer refused data");
        return buf_steal(&b, NULL);
    }
    int rc = buf_putc(&b, '"');
    for (const char *p = word; *p && rc == 0; p++) {
        switch (*p) {
        case '"': case '\\': case '$': case '`':
            rc = buf_putc(&b, '\\');
            if (rc == 0)
                rc = buf_putc(&b, *p);
            break;
        case '\n': rc = buf_puts(&b, "\\n"); break;
        case '\r': rc = buf_puts(&b, "\\r"); break;
        case '\t': rc = buf_puts(&b, "\\t"); break;
        case '\033': rc = buf_puts(&b, "\\e"); break;
        default: rc = buf_putc(&b, *p); break;
        }
    }
    if (rc < 0 || buf_putc(&b, '"') < 0)
        die("rc_quote: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}
