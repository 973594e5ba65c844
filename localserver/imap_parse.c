/*
 * imap_parse: IMAP client input for correod -- the command reader, the
 * parser into struct imap_command and its canonical writer, and the string
 * forms of responses (see imap_parse.h for the contract).
 *
 * The reader holds the command being assembled (bounded by max_command,
 * each line by max_line, each literal checked against the limits before it
 * is awaited) and, while it discards a refused command, only the last few
 * octets of the current line, to see whether it announces a literal that
 * will come anyway.  Whether "{n}" at the end of a line announces a literal
 * is decided with the quoting state of the line, so a quoted string ending
 * in "{5}" is not one.
 *
 * The parser is a recursive descent over the assembled text with a cursor;
 * everything it builds lives in one arena owned by the command, so a
 * failure half-way frees everything at once.  Nesting (parenthesised search
 * keys, NOT and OR) is bounded by max_depth.
 */
#include "imap_parse.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mutf7.h"
#include "sanitize.h"
#include "xalloc.h"

#define TAIL_MAX 32                  /* octets kept of a line being discarded */
#define QUOTED_OUT_MAX 1024          /* longer strings are written as literals */
#define SECTION_PARTS_MAX 100
#define ID_PAIRS_MAX 30              /* RFC 2971 */
#define ID_FIELD_MAX 30
#define ID_VALUE_MAX 1024
#define MODSEQ_MAX UINT64_C(9223372036854775807)   /* 63 bits, RFC 7162 */

/* ------------------------------------------------------------------ */
/* Character classes (RFC 3501 9, RFC 9051 9) */

static bool is_atom_char(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7F)
        return false;
    return !strchr("(){%*\"\\]", c);
}

static bool is_astring_char(unsigned char c)
{
    return is_atom_char(c) || c == ']';
}

static bool is_list_char(unsigned char c)
{
    return is_astring_char(c) || c == '%' || c == '*';
}

static bool is_tag_char(unsigned char c)
{
    return is_astring_char(c) && c != '+';
}

/* ------------------------------------------------------------------ */
/* The reader */

enum rstate {
    RS_LINE = 0,                     /* storing a line */
    RS_LITERAL,                      /* storing literal octets */
    RS_SKIP_LINE,                    /* discarding a line of a refused command */
    RS_SKIP_LITERAL,                 /* discarding literal octets */
};

struct imap_reader {
    struct imap_limits lim;
    enum rstate st;
    struct buf cmd;                  /* the command being assembled */
    size_t line_start;               /* offset of the current line in cmd */
    uint64_t lit_left;
    bool in_quote, escape;           /* quoting state of the current line */
    bool busy;                       /* inside a command */
    bool raw;                        /* the next line is wanted raw */
    bool raw_line;                   /* the line being read is raw */
    bool reset_pending;              /* the last event's data goes at the next feed */
    char tail[TAIL_MAX];
    size_t tail_len;
    struct buf tag;
    char text[96];
    struct imap_read_error err;
};

struct imap_reader *imap_reader_new(const struct imap_limits *lim)
{
    struct imap_reader *r = XNEW(struct imap_reader);

    if (lim)
        r->lim = *lim;
    if (!r->lim.max_line)
        r->lim.max_line = IMAP_LINE_MAX_DEFAULT;
    if (!r->lim.max_literal)
        r->lim.max_literal = IMAP_LITERAL_MAX_DEFAULT;
    if (!r->lim.max_nonsync || r->lim.max_nonsync > r->lim.max_literal)
        r->lim.max_nonsync = r->lim.max_literal;
    if (!r->lim.max_command)
        r->lim.max_command = IMAP_COMMAND_MAX_DEFAULT;
    buf_init(&r->cmd, 0);
    buf_init(&r->tag, 0);
    return r;
}

void imap_reader_free(struct imap_reader *r)
{
    if (!r)
        return;
    buf_free(&r->cmd);
    buf_free(&r->tag);
    free(r);
}

const char *imap_reader_command(const struct imap_reader *r, size_t *len)
{
    *len = r->cmd.len;
    return buf_cstr(&r->cmd);
}

const char *imap_reader_line(const struct imap_reader *r, size_t *len)
{
    return imap_reader_command(r, len);
}

const struct imap_read_error *imap_reader_error(const struct imap_reader *r)
{
    return &r->err;
}

bool imap_reader_busy(const struct imap_reader *r)
{
    return r->busy;
}

void imap_reader_expect_line(struct imap_reader *r)
{
    r->raw = true;
}

static void tail_push(struct imap_reader *r, const char *p, size_t n)
{
    if (n >= TAIL_MAX) {
        memcpy(r->tail, p + n - TAIL_MAX, TAIL_MAX);
        r->tail_len = TAIL_MAX;
        return;
    }
    if (r->tail_len + n > TAIL_MAX) {
        size_t drop = r->tail_len + n - TAIL_MAX;
        memmove(r->tail, r->tail + drop, r->tail_len - drop);
        r->tail_len -= drop;
    }
    memcpy(r->tail + r->tail_len, p, n);
    r->tail_len += n;
}

/* Update the quoting state over p[0..n). */
static void scan_quotes(struct imap_reader *r, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (r->escape)
            r->escape = false;
        else if (r->in_quote && c == '\\')
            r->escape = true;
        else if (c == '"')
            r->in_quote = !r->in_quote;
    }
}

/* Does the line l[0..n) end with a literal announcement?  0: no; 1: yes,
 * with *size (UINT64_MAX when it does not fit) and *nonsync. */
static int literal_marker(const char *l, size_t n, uint64_t *size, bool *nonsync)
{
    size_t i, end;
    uint64_t v = 0;
    bool overflow = false;

    if (n < 3 || l[n - 1] != '}')
        return 0;
    end = n - 1;
    *nonsync = l[end - 1] == '+';
    if (*nonsync)
        end--;
    i = end;
    while (i > 0 && l[i - 1] >= '0' && l[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || l[i - 1] != '{')
        return 0;
    for (size_t k = i; k < end; k++) {
        unsigned d = (unsigned)(l[k] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    *size = overflow ? UINT64_MAX : v;
    return 1;
}

static void set_error(struct imap_reader *r, enum imap_resp resp, const char *text)
{
    r->err.resp = resp;
    /* a tag is followed by a space: one cut short by the line limit is none */
    r->err.tag = imap_parse_tag(r->cmd.data ? r->cmd.data : "", r->cmd.len, &r->tag) == 0 &&
                         r->cmd.len > r->tag.len
                     ? buf_cstr(&r->tag)
                     : NULL;
    snprintf(r->text, sizeof(r->text), "%s", text);
    r->err.text = r->text;
}

static void start_line(struct imap_reader *r)
{
    r->line_start = r->cmd.len;
    r->in_quote = false;
    r->escape = false;
    r->tail_len = 0;
}

static void append_or_die(struct buf *b, const char *p, size_t n)
{
    if (buf_append(b, p, n) < 0)
        die("imap_reader: unbounded buffer refused an append");
}

/* Begin discarding the rest of the command (the error is already set). */
static void start_skip(struct imap_reader *r)
{
    size_t have = r->cmd.len - r->line_start;

    r->tail_len = 0;
    tail_push(r, r->cmd.data ? r->cmd.data + r->line_start : "", have);
    r->st = RS_SKIP_LINE;
}

/* A whole line is in cmd[line_start..]: decide what comes next.  Returns
 * the event to report. */
static enum imap_event line_done(struct imap_reader *r)
{
    const char *l = r->cmd.data ? r->cmd.data + r->line_start : "";
    size_t n = r->cmd.len - r->line_start;
    uint64_t size;
    bool nonsync;

    if (r->raw_line) {
        r->raw_line = false;
        r->busy = false;
        r->reset_pending = true;
        return IMAP_EV_LINE;
    }
    if (r->cmd.len == 0) {
        r->busy = false;
        return IMAP_EV_NONE;         /* an empty line between commands */
    }
    r->busy = true;
    if (r->in_quote || !literal_marker(l, n, &size, &nonsync)) {
        r->busy = false;
        r->reset_pending = true;
        return IMAP_EV_COMMAND;
    }
    if (size > r->lim.max_literal || size > r->lim.max_command ||
        r->cmd.len + 2 > r->lim.max_command - size) {
        set_error(r, IMAP_RESP_NO, "[TOOBIG] Literal too big");
    } else if (nonsync && size > r->lim.max_nonsync) {
        set_error(r, IMAP_RESP_BAD, "[TOOBIG] Non-synchronizing literal too big");
    } else {
        append_or_die(&r->cmd, "\r\n", 2);
        r->st = RS_LITERAL;
        r->lit_left = size;
        return nonsync ? IMAP_EV_NONE : IMAP_EV_CONTINUE;
    }
    /* refused: a {n+} literal comes anyway, a {n} one does not */
    buf_reset(&r->cmd);
    start_line(r);
    if (nonsync) {
        r->st = RS_SKIP_LITERAL;
        r->lit_left = size;
    } else {
        r->busy = false;
    }
    return IMAP_EV_ERROR;
}

/* The end of a discarded line: the command ends, or a literal follows. */
static void skip_line_done(struct imap_reader *r)
{
    uint64_t size;
    bool nonsync;

    if (!r->raw_line && !r->in_quote && literal_marker(r->tail, r->tail_len, &size, &nonsync) &&
        nonsync) {
        r->st = RS_SKIP_LITERAL;
        r->lit_left = size;
        return;
    }
    r->raw_line = false;
    r->st = RS_LINE;
    r->busy = false;
    buf_reset(&r->cmd);
    start_line(r);
}

size_t imap_reader_feed(struct imap_reader *r, const char *data, size_t len,
                        enum imap_event *ev)
{
    size_t pos = 0;

    *ev = IMAP_EV_NONE;
    if (r->reset_pending) {
        r->reset_pending = false;
        if (!r->busy) {
            buf_reset(&r->cmd);
            start_line(r);
        }
    }
    while (pos < len) {
        const char *p = data + pos;
        size_t avail = len - pos;

        switch (r->st) {
        case RS_LINE: {
            const char *nl = memchr(p, '\n', avail);
            size_t chunk = nl ? (size_t)(nl - p) : avail;
            size_t have = r->cmd.len - r->line_start;
            size_t line_len = have + chunk;
            bool too_long;

            if (!r->busy && have == 0 && r->raw) {
                r->raw = false;
                r->raw_line = true;
            }
            if (!r->busy && have == 0 && chunk)
                r->busy = !r->raw_line;
            /* a CR just before the LF is not part of the line */
            if (nl && line_len && (chunk ? p[chunk - 1] : r->cmd.data[r->cmd.len - 1]) == '\r')
                too_long = line_len - 1 > r->lim.max_line;
            else
                too_long = line_len > r->lim.max_line + (nl ? 0 : 1);
            if (!too_long && r->cmd.len + chunk > r->lim.max_command)
                too_long = true;
            if (too_long) {
                size_t room = have < r->lim.max_line ? r->lim.max_line - have : 0;
                start_skip(r);
                if (!r->raw_line)
                    scan_quotes(r, p, chunk);
                tail_push(r, p, chunk);
                /* the first max_line octets of the line, to find the tag in
                 * (the same however the line was cut into pieces) */
                append_or_die(&r->cmd, p, chunk < room ? chunk : room);
                if (r->cmd.len > r->line_start + r->lim.max_line)
                    buf_truncate(&r->cmd, r->line_start + r->lim.max_line);
                set_error(r, IMAP_RESP_BAD,
                          r->raw_line ? "Line too long" : "Command line too long");
                if (r->raw_line)
                    r->err.tag = NULL;
                r->busy = true;
                pos += chunk;
                buf_reset(&r->cmd);
                r->line_start = 0;
                *ev = IMAP_EV_ERROR;
                return pos;
            }
            if (!r->raw_line)
                scan_quotes(r, p, chunk);
            append_or_die(&r->cmd, p, chunk);
            pos += chunk;
            if (!nl)
                break;
            pos++;                           /* the LF */
            if (r->cmd.len > r->line_start && r->cmd.data[r->cmd.len - 1] == '\r')
                buf_truncate(&r->cmd, r->cmd.len - 1);
            *ev = line_done(r);
            if (*ev != IMAP_EV_NONE)
                return pos;
            if (r->st == RS_LINE && !r->busy) {
                buf_reset(&r->cmd);
                start_line(r);
            }
            break;
        }
        case RS_LITERAL: {
            size_t n = avail < r->lit_left ? avail : (size_t)r->lit_left;
            append_or_die(&r->cmd, p, n);
            pos += n;
            r->lit_left -= n;
            if (r->lit_left == 0) {
                r->st = RS_LINE;
                start_line(r);
            }
            break;
        }
        case RS_SKIP_LINE: {
            const char *nl = memchr(p, '\n', avail);
            size_t chunk = nl ? (size_t)(nl - p) : avail;
            if (!r->raw_line)
                scan_quotes(r, p, chunk);
            tail_push(r, p, chunk);
            pos += chunk;
            if (!nl)
                break;
            pos++;
            if (r->tail_len && r->tail[r->tail_len - 1] == '\r')
                r->tail_len--;
            skip_line_done(r);
            break;
        }
        case RS_SKIP_LITERAL: {
            size_t n = avail < r->lit_left ? avail : (size_t)r->lit_left;
            pos += n;
            r->lit_left -= n;
            if (r->lit_left == 0) {
                r->st = RS_SKIP_LINE;
                r->in_quote = false;
                r->escape = false;
                r->tail_len = 0;
            }
            break;
        }
        }
    }
    /* a literal of zero octets ends as soon as it starts */
    if (r->st == RS_LITERAL && r->lit_left == 0) {
        r->st = RS_LINE;
        start_line(r);
    }
    if (r->st == RS_SKIP_LITERAL && r->lit_left == 0) {
        r->st = RS_SKIP_LINE;
        r->in_quote = false;
        r->escape = false;
        r->tail_len = 0;
    }
    return pos;
}

/* ------------------------------------------------------------------ */
/* Arena */

struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
};

struct imap_arena {
    struct chunk *head;
};

static void *a_alloc(struct imap_arena *a, size_t n)
{
    struct chunk *c = a->head;
    void *p;

    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!n)
        n = sizeof(max_align_t);
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 4000 ? n : 4000;
        c = xmalloc(sizeof(*c) + cap);
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    p = (char *)c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

/* Make room for one more element of an array that holds n of size each. */
static void *a_push(struct imap_arena *a, void *arr, size_t n, size_t size)
{
    /* capacity doubles at powers of two (and at 4 to begin with) */
    if (n >= 4 && (n & (n - 1)) == 0) {
        void *bigger = a_alloc(a, 2 * n * size);
        memcpy(bigger, arr, n * size);
        return bigger;
    }
    if (n == 0)
        return a_alloc(a, 4 * size);
    return arr;
}

#define PUSH(p, arr, n) \
    ((arr) = a_push((p)->a, (arr), (n), sizeof(*(arr))), &(arr)[(n)++])

static void a_free(struct imap_arena *a)
{
    struct chunk *c = a->head;

    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------ */
/* Parser cursor and tokens */

struct p {
    const char *s;
    size_t len, pos;
    struct imap_arena *a;
    struct err *e;
    unsigned depth, max_depth;
    bool utf8;
    bool failed;
};

static int pfail(struct p *p, const char *fmt, ...) CORREO_PRINTF(2, 3);
static int pfail(struct p *p, const char *fmt, ...)
{
    if (!p->failed) {
        char text[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        err_set(p->e, ERR_PARSE, "%s", text);
        p->failed = true;
    }
    return -1;
}

static int peek(const struct p *p)
{
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static bool at_end(const struct p *p)
{
    return p->pos >= p->len;
}

static bool accept_c(struct p *p, char c)
{
    if (peek(p) == (unsigned char)c) {
        p->pos++;
        return true;
    }
    return false;
}

static int expect_c(struct p *p, char c, const char *what)
{
    if (accept_c(p, c))
        return 0;
    if (at_end(p))
        return pfail(p, "Missing %s at end of command", what);
    return pfail(p, "Expected %s at octet %zu", what, p->pos);
}

static int sp(struct p *p)
{
    return expect_c(p, ' ', "space");
}

/* A keyword-like word: letters, digits, ".", "-", "_", "=". */
static size_t word_len(const struct p *p)
{
    size_t n = 0;

    while (p->pos + n < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos + n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '$'))
            break;
        n++;
    }
    return n;
}

/* Is the next word kw (any case)?  If so, consume it. */
static bool accept_kw(struct p *p, const char *kw)
{
    size_t n = word_len(p), k = strlen(kw);

    if (n != k || strncasecmp(p->s + p->pos, kw, k) != 0)
        return false;
    p->pos += n;
    return true;
}

/* Look up the next word in a NULL-terminated table; -1 when absent. */
static int kw_index(struct p *p, const char *const *tab)
{
    size_t n = word_len(p);

    for (int i = 0; tab[i]; i++) {
        if (strlen(tab[i]) == n && strncasecmp(p->s + p->pos, tab[i], n) == 0) {
            p->pos += n;
            return i;
        }
    }
    return -1;
}

static struct imap_str mkstr(struct p *p, const char *s, size_t n)
{
    struct imap_str r;

    r.s = a_alloc(p->a, n + 1);
    memcpy(r.s, s, n);
    r.s[n] = '\0';
    r.len = n;
    r.binary = false;
    return r;
}

static int digits(struct p *p, uint64_t max, uint64_t *v, const char *what)
{
    size_t start = p->pos;
    uint64_t x = 0;

    while (peek(p) >= '0' && peek(p) <= '9') {
        unsigned d = (unsigned)(peek(p) - '0');
        if (x > (max - d) / 10)
            return pfail(p, "%s too large", what);
        x = x * 10 + d;
        p->pos++;
    }
    if (p->pos == start)
        return pfail(p, "Expected %s at octet %zu", what, start);
    *v = x;
    return 0;
}

static int number32(struct p *p, bool nonzero, uint32_t *v, const char *what)
{
    uint64_t x;

    if (digits(p, UINT32_MAX, &x, what) < 0)
        return -1;
    if (nonzero && x == 0)
        return pfail(p, "%s must not be zero", what);
    *v = (uint32_t)x;
    return 0;
}

static int number64(struct p *p, bool nonzero, uint64_t *v, const char *what)
{
    if (digits(p, MODSEQ_MAX, v, what) < 0)
        return -1;
    if (nonzero && *v == 0)
        return pfail(p, "%s must not be zero", what);
    return 0;
}

static int atom(struct p *p, struct imap_str *out, const char *what)
{
    size_t start = p->pos;

    while (!at_end(p) && is_atom_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        return pfail(p, "Expected %s at octet %zu", what, start);
    *out = mkstr(p, p->s + start, p->pos - start);
    return 0;
}

static int quoted(struct p *p, struct imap_str *out)
{
    struct buf b = BUF_INIT;

    p->pos++;                        /* the opening quote */
    for (;;) {
        int c = peek(p);
        if (c < 0) {
            buf_free(&b);
            return pfail(p, "Unterminated quoted string");
        }
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c == '\\') {
            p->pos++;
            c = peek(p);
            if (c != '"' && c != '\\') {
                buf_free(&b);
                return pfail(p, "Bad escape in quoted string");
            }
        }
        if (c == 0 || c == '\r' || c == '\n') {
            buf_free(&b);
            return pfail(p, c == 0 ? "NUL in quoted string" : "CR or LF in quoted string");
        }
        if (c >= 0x80) {
            uint32_t cp;
            int n = sanitize_utf8_next(p->s + p->pos, p->len - p->pos, &cp);
            if (n < 0) {
                buf_free(&b);
                return pfail(p, "Invalid UTF-8 in quoted string");
            }
            if (buf_append(&b, p->s + p->pos, (size_t)n) < 0)
                die("imap_parse: unbounded buffer refused an append");
            p->pos += (size_t)n;
            continue;
        }
        if (buf_putc(&b, (char)c) < 0)
            die("imap_parse: unbounded buffer refused an append");
        p->pos++;
    }
    *out = mkstr(p, b.data ? b.data : "", b.len);
    buf_free(&b);
    return 0;
}

/* literal or literal8 (when allow8) */
static int literal(struct p *p, struct imap_str *out, bool allow8)
{
    bool binary = accept_c(p, '~');
    uint64_t n;

    if (binary && !allow8)
        return pfail(p, "literal8 not allowed here");
    if (expect_c(p, '{', "literal") < 0)
        return -1;
    if (digits(p, UINT64_MAX, &n, "literal size") < 0)
        return -1;
    if (!binary)
        (void)accept_c(p, '+');
    if (expect_c(p, '}', "\"}\"") < 0)
        return -1;
    if (!accept_c(p, '\r') || !accept_c(p, '\n'))
        return pfail(p, "Expected CRLF after literal size");
    if (n > p->len - p->pos)
        return pfail(p, "Literal longer than the command");
    if (!binary && memchr(p->s + p->pos, '\0', (size_t)n))
        return pfail(p, "NUL in literal");
    *out = mkstr(p, p->s + p->pos, (size_t)n);
    out->binary = binary;
    p->pos += (size_t)n;
    return 0;
}

static int string(struct p *p, struct imap_str *out)
{
    if (peek(p) == '"')
        return quoted(p, out);
    if (peek(p) == '{')
        return literal(p, out, false);
    return pfail(p, "Expected string at octet %zu", p->pos);
}

static int astring(struct p *p, struct imap_str *out, const char *what)
{
    size_t start = p->pos;

    if (peek(p) == '"' || peek(p) == '{')
        return string(p, out);
    while (!at_end(p) && is_astring_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        return pfail(p, "Expected %s at octet %zu", what, start);
    *out = mkstr(p, p->s + start, p->pos - start);
    return 0;
}

static bool is_nil_next(const struct p *p)
{
    return p->len - p->pos >= 3 && strncasecmp(p->s + p->pos, "NIL", 3) == 0 &&
           (p->pos + 3 == p->len || !is_astring_char((unsigned char)p->s[p->pos + 3]));
}

static int nstring(struct p *p, struct imap_str *out)
{
    if (is_nil_next(p)) {
        p->pos += 3;
        memset(out, 0, sizeof(*out));
        return 0;
    }
    return string(p, out);
}

static int mailbox(struct p *p, struct imap_str *out)
{
    if (astring(p, out, "mailbox name") < 0)
        return -1;
    if (out->len == 5 && strcasecmp(out->s, "INBOX") == 0)
        memcpy(out->s, "INBOX", 5);
    return 0;
}

static int list_mailbox(struct p *p, struct imap_str *out)
{
    size_t start = p->pos;

    if (peek(p) == '"' || peek(p) == '{')
        return string(p, out);
    while (!at_end(p) && is_list_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start)
        return pfail(p, "Expected mailbox pattern at octet %zu", start);
    *out = mkstr(p, p->s + start, p->pos - start);
    return 0;
}

static int flag(struct p *p, struct imap_str *out)
{
    size_t start = p->pos;

    (void)accept_c(p, '\\');
    while (!at_end(p) && is_atom_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos == start || (p->pos == start + 1 && p->s[start] == '\\'))
        return pfail(p, "Expected flag at octet %zu", start);
    *out = mkstr(p, p->s + start, p->pos - start);
    return 0;
}

/* "(" [flag *(SP flag)] ")" */
static int flag_list(struct p *p, struct imap_str **flags, size_t *n)
{
    if (expect_c(p, '(', "\"(\"") < 0)
        return -1;
    if (accept_c(p, ')'))
        return 0;
    do {
        if (flag(p, PUSH(p, *flags, *n)) < 0)
            return -1;
    } while (accept_c(p, ' '));
    return expect_c(p, ')', "\")\"");
}

static int seq_number(struct p *p, uint64_t *v)
{
    uint32_t n = 0;

    if (accept_c(p, '*')) {
        *v = IMAP_SEQ_STAR;
        return 0;
    }
    if (number32(p, true, &n, "sequence number") < 0)
        return -1;
    *v = n;
    return 0;
}

static int seqset(struct p *p, struct imap_seqset *set)
{
    memset(set, 0, sizeof(*set));
    do {
        struct imap_range *r = PUSH(p, set->r, set->n);
        if (accept_c(p, '$')) {
            r->lo = r->hi = IMAP_SEQ_SAVED;
            continue;
        }
        if (seq_number(p, &r->lo) < 0)
            return -1;
        r->hi = r->lo;
        if (accept_c(p, ':')) {
            if (seq_number(p, &r->hi) < 0)
                return -1;
            if (r->hi < r->lo) {
                uint64_t t = r->lo;
                r->lo = r->hi;
                r->hi = t;
            }
        }
    } while (accept_c(p, ','));
    return 0;
}

static bool seqset_next(const struct p *p)
{
    int c = peek(p);

    return (c >= '0' && c <= '9') || c == '*' || c == '$';
}

static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                          "Aug", "Sep", "Oct", "Nov", "Dec", NULL};

static int days_in(int year, int month)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return 29;
    return d[month - 1];
}

static int fixed_digits(struct p *p, int n, int *v, const char *what)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        int c = peek(p);
        if (c < '0' || c > '9')
            return pfail(p, "Bad %s", what);
        *v = *v * 10 + (c - '0');
        p->pos++;
    }
    return 0;
}

/* date-day "-" date-month "-" date-year; fixed: date-day-fixed */
static int date_text(struct p *p, struct imap_date *d, bool fixed)
{
    int m;

    if (fixed && accept_c(p, ' ')) {
        if (fixed_digits(p, 1, &d->day, "day") < 0)
            return -1;
    } else if (fixed) {
        if (fixed_digits(p, 2, &d->day, "day") < 0)
            return -1;
    } else {
        if (fixed_digits(p, 1, &d->day, "day") < 0)
            return -1;
        if (peek(p) >= '0' && peek(p) <= '9')
            d->day = d->day * 10 + (p->s[p->pos++] - '0');
    }
    if (expect_c(p, '-', "\"-\" in date") < 0)
        return -1;
    if (p->len - p->pos < 3)
        return pfail(p, "Bad month");
    for (m = 0; month_names[m]; m++)
        if (strncasecmp(p->s + p->pos, month_names[m], 3) == 0)
            break;
    if (!month_names[m])
        return pfail(p, "Bad month");
    p->pos += 3;
    d->month = m + 1;
    if (expect_c(p, '-', "\"-\" in date") < 0 || fixed_digits(p, 4, &d->year, "year") < 0)
        return -1;
    if (d->day < 1 || d->day > days_in(d->year, d->month))
        return pfail(p, "No such day");
    return 0;
}

static int search_date(struct p *p, struct imap_date *d)
{
    bool q = accept_c(p, '"');

    if (date_text(p, d, false) < 0)
        return -1;
    return q ? expect_c(p, '"', "closing quote of date") : 0;
}

static int date_time(struct p *p, struct imap_datetime *dt)
{
    int zh, sign;

    if (expect_c(p, '"', "date-time") < 0 || date_text(p, &dt->date, true) < 0 || sp(p) < 0 ||
        fixed_digits(p, 2, &dt->hour, "hour") < 0 || expect_c(p, ':', "\":\"") < 0 ||
        fixed_digits(p, 2, &dt->min, "minute") < 0 || expect_c(p, ':', "\":\"") < 0 ||
        fixed_digits(p, 2, &dt->sec, "second") < 0 || sp(p) < 0)
        return -1;
    if (accept_c(p, '+'))
        sign = 1;
    else if (accept_c(p, '-'))
        sign = -1;
    else
        return pfail(p, "Bad zone");
    if (fixed_digits(p, 4, &zh, "zone") < 0 || expect_c(p, '"', "end of date-time") < 0)
        return -1;
    if (dt->hour > 23 || dt->min > 59 || dt->sec > 60 || zh % 100 > 59 || zh / 100 > 23)
        return pfail(p, "Bad time");
    dt->zone = sign * (zh / 100 * 60 + zh % 100);
    return 0;
}

static int enter(struct p *p)
{
    if (++p->depth > p->max_depth)
        return pfail(p, "Nesting too deep");
    return 0;
}

/* ------------------------------------------------------------------ */
/* SEARCH keys */

static const char *const skey_names[] = {
    "", "ALL", "ANSWERED", "BCC", "BEFORE", "BODY", "CC", "DELETED", "DRAFT", "FLAGGED",
    "FROM", "HEADER", "KEYWORD", "LARGER", "NEW", "NOT", "OLD", "ON", "OR", "RECENT",
    "SEEN", "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE", "SMALLER", "SUBJECT", "TEXT",
    "TO", "UID", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNKEYWORD", "UNSEEN",
    "", "MODSEQ", "OLDER", "YOUNGER", NULL,
};

static int search_key(struct p *p, struct imap_search_key **out);

/* key *(SP key) until ")" (group) or the end */
static int search_keys(struct p *p, struct imap_search_key *and, bool group)
{
    struct imap_search_key **tail = &and->child;

    for (;;) {
        if (search_key(p, tail) < 0)
            return -1;
        tail = &(*tail)->next;
        if (group ? peek(p) == ')' : at_end(p))
            return 0;
        if (group && at_end(p))
            return pfail(p, "Missing \")\" at end of command");
        if (sp(p) < 0)
            return -1;
    }
}

static int search_key(struct p *p, struct imap_search_key **out)
{
    struct imap_search_key *k = a_alloc(p->a, sizeof(*k));
    int i;

    *out = k;
    if (enter(p) < 0)
        return -1;
    if (seqset_next(p)) {
        k->key = IMAP_SK_SEQSET;
        if (seqset(p, &k->set) < 0)
            return -1;
        p->depth--;
        return 0;
    }
    if (accept_c(p, '(')) {
        k->key = IMAP_SK_AND;
        if (search_keys(p, k, true) < 0 || expect_c(p, ')', "\")\"") < 0)
            return -1;
        p->depth--;
        return 0;
    }
    i = kw_index(p, skey_names);
    if (i <= 0 || i == IMAP_SK_SEQSET)
        return pfail(p, "Unknown search key at octet %zu", p->pos);
    k->key = (enum imap_skey)i;
    switch (k->key) {
    case IMAP_SK_BCC: case IMAP_SK_BODY: case IMAP_SK_CC: case IMAP_SK_FROM:
    case IMAP_SK_SUBJECT: case IMAP_SK_TEXT: case IMAP_SK_TO:
        if (sp(p) < 0 || astring(p, &k->str, "search string") < 0)
            return -1;
        break;
    case IMAP_SK_HEADER:
        if (sp(p) < 0 || astring(p, &k->field, "header field name") < 0 || sp(p) < 0 ||
            astring(p, &k->str, "search string") < 0)
            return -1;
        break;
    case IMAP_SK_KEYWORD: case IMAP_SK_UNKEYWORD:
        if (sp(p) < 0 || atom(p, &k->str, "keyword") < 0)
            return -1;
        break;
    case IMAP_SK_BEFORE: case IMAP_SK_ON: case IMAP_SK_SINCE: case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON: case IMAP_SK_SENTSINCE:
        if (sp(p) < 0 || search_date(p, &k->date) < 0)
            return -1;
        break;
    case IMAP_SK_LARGER: case IMAP_SK_SMALLER:
        if (sp(p) < 0 || number64(p, false, &k->num, "size") < 0)
            return -1;
        break;
    case IMAP_SK_OLDER: case IMAP_SK_YOUNGER: {
        uint32_t v = 0;
        if (sp(p) < 0 || number32(p, true, &v, "interval") < 0)
            return -1;
        k->num = v;
        break;
    }
    case IMAP_SK_UID:
        if (sp(p) < 0 || seqset(p, &k->set) < 0)
            return -1;
        break;
    case IMAP_SK_NOT:
        if (sp(p) < 0 || search_key(p, &k->child) < 0)
            return -1;
        break;
    case IMAP_SK_OR:
        if (sp(p) < 0 || search_key(p, &k->child) < 0 || sp(p) < 0 ||
            search_key(p, &k->child->next) < 0)
            return -1;
        break;
    case IMAP_SK_MODSEQ:
        if (sp(p) < 0)
            return -1;
        if (peek(p) == '"') {
            static const char *const types[] = {"priv", "shared", "all", NULL};
            int t;
            if (quoted(p, &k->str) < 0)
                return -1;
            if (k->str.len < 8 || strncasecmp(k->str.s, "/flags/", 7) != 0)
                return pfail(p, "Bad MODSEQ entry name");
            if (sp(p) < 0)
                return -1;
            t = kw_index(p, types);
            if (t < 0)
                return pfail(p, "Bad MODSEQ entry type");
            k->field = mkstr(p, types[t], strlen(types[t]));
            if (sp(p) < 0)
                return -1;
        }
        if (number64(p, false, &k->num, "mod-sequence") < 0)
            return -1;
        break;
    default:
        break;
    }
    p->depth--;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Commands */

static const char *const cmd_names[] = {
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE", "ID",
    "IDLE", "NAMESPACE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
    "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "UNSELECT",
    "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT", "THREAD", NULL,
};

const char *imap_cmd_name(enum imap_cmd cmd)
{
    if ((size_t)cmd >= ARRAY_LEN(cmd_names) - 1)
        return "?";
    return cmd_names[cmd];
}

static const char *const status_names[] = {
    "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
    "HIGHESTMODSEQ", "APPENDLIMIT", NULL,
};

/* "(" status-att *(SP status-att) ")" */
static int status_atts(struct p *p, unsigned *items)
{
    if (expect_c(p, '(', "\"(\"") < 0)
        return -1;
    do {
        int i = kw_index(p, status_names);
        if (i < 0)
            return pfail(p, "Unknown status item at octet %zu", p->pos);
        *items |= 1u << i;
    } while (accept_c(p, ' '));
    return expect_c(p, ')', "\")\"");
}

static int parse_select(struct p *p, struct imap_command *c)
{
    if (sp(p) < 0 || mailbox(p, &c->mailbox) < 0)
        return -1;
    if (!accept_c(p, ' '))
        return 0;
    if (expect_c(p, '(', "\"(\"") < 0)
        return -1;
    do {
        if (accept_kw(p, "CONDSTORE")) {
            c->select.condstore = true;
        } else if (accept_kw(p, "QRESYNC")) {
            if (c->select.qresync)
                return pfail(p, "QRESYNC given twice");
            c->select.qresync = true;
            if (sp(p) < 0 || expect_c(p, '(', "\"(\"") < 0 ||
                number32(p, true, &c->select.uidvalidity, "UIDVALIDITY") < 0 || sp(p) < 0 ||
                number64(p, true, &c->select.modseq, "mod-sequence") < 0)
                return -1;
            if (accept_c(p, ' ')) {
                if (seqset_next(p) && seqset(p, &c->select.known_uids) < 0)
                    return -1;
                if ((c->select.known_uids.n == 0 || accept_c(p, ' ')) && accept_c(p, '(')) {
                    if (seqset(p, &c->select.match_seqs) < 0 || sp(p) < 0 ||
                        seqset(p, &c->select.match_uids) < 0 ||
                        expect_c(p, ')', "\")\"") < 0)
                        return -1;
                } else if (c->select.known_uids.n == 0) {
                    return pfail(p, "Bad QRESYNC parameters");
                }
            }
            if (expect_c(p, ')', "\")\"") < 0)
                return -1;
        } else {
            return pfail(p, "Unknown SELECT parameter at octet %zu", p->pos);
        }
    } while (accept_c(p, ' '));
    return expect_c(p, ')', "\")\"");
}

static int parse_list(struct p *p, struct imap_command *c)
{
    static const char *const sel[] = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE",
                                      NULL};
    static const char *const ret[] = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", NULL};

    if (sp(p) < 0)
        return -1;
    if (c->cmd == IMAP_CMD_LIST && accept_c(p, '(')) {
        c->list.extended = true;
        if (!accept_c(p, ')')) {
            do {
                int i = kw_index(p, sel);
                if (i < 0)
                    return pfail(p, "Unknown LIST selection option at octet %zu", p->pos);
                c->list.sel |= 1u << i;
            } while (accept_c(p, ' '));
            if (expect_c(p, ')', "\")\"") < 0)
                return -1;
        }
        if (c->list.sel == IMAP_LSEL_RECURSIVEMATCH)
            return pfail(p, "RECURSIVEMATCH needs another selection option");
        if (sp(p) < 0)
            return -1;
    }
    if (astring(p, &c->mailbox, "reference") < 0 || sp(p) < 0)
        return -1;
    if (c->cmd == IMAP_CMD_LIST && accept_c(p, '(')) {
        c->list.extended = true;
        do {
            if (list_mailbox(p, PUSH(p, c->list.patterns, c->list.n_patterns)) < 0)
                return -1;
        } while (accept_c(p, ' '));
        if (expect_c(p, ')', "\")\"") < 0)
            return -1;
    } else if (list_mailbox(p, PUSH(p, c->list.patterns, c->list.n_patterns)) < 0) {
        return -1;
    }
    if (c->cmd == IMAP_CMD_LIST && accept_c(p, ' ')) {
        if (!accept_kw(p, "RETURN"))
            return pfail(p, "Expected RETURN at octet %zu", p->pos);
        c->list.has_return = true;
        if (sp(p) < 0 || expect_c(p, '(', "\"(\"") < 0)
            return -1;
        if (!accept_c(p, ')')) {
            do {
                int i = kw_index(p, ret);
                if (i < 0)
                    return pfail(p, "Unknown LIST return option at octet %zu", p->pos);
                if (c->list.ret & (1u << i))
                    return pfail(p, "LIST return option given twice");
                c->list.ret |= 1u << i;
                if (i == 3 && (sp(p) < 0 || status_atts(p, &c->list.status_items) < 0))
                    return -1;
            } while (accept_c(p, ' '));
            if (expect_c(p, ')', "\")\"") < 0)
                return -1;
        }
    }
    return 0;
}

static bool is_base64(const struct imap_str *s)
{
    size_t pad = 0;

    if (s->len % 4)
        return false;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char ch = (unsigned char)s->s[i];
        if (ch == '=') {
            pad++;
            continue;
        }
        if (pad || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
            return false;
    }
    return pad <= 2;
}

static int parse_append(struct p *p, struct imap_command *c)
{
    if (sp(p) < 0 || mailbox(p, &c->mailbox) < 0)
        return -1;
    do {
        struct imap_append_msg *m = PUSH(p, c->append.msgs, c->append.n);
        if (sp(p) < 0)
            return -1;
        if (peek(p) == '(') {
            m->has_flags = true;
            if (flag_list(p, &m->flags, &m->n_flags) < 0 || sp(p) < 0)
                return -1;
        }
        if (peek(p) == '"') {
            m->has_date = true;
            if (date_time(p, &m->date) < 0 || sp(p) < 0)
                return -1;
        }
        if (accept_kw(p, "UTF8")) {
            if (!p->utf8)
                return pfail(p, "UTF8 APPEND needs ENABLE UTF8=ACCEPT");
            m->utf8 = true;
            if (sp(p) < 0 || expect_c(p, '(', "\"(\"") < 0)
                return -1;
            if (peek(p) != '~')
                return pfail(p, "UTF8 APPEND needs a literal8");
            if (literal(p, &m->data, true) < 0 || expect_c(p, ')', "\")\"") < 0)
                return -1;
        } else {
            if (peek(p) != '{' && peek(p) != '~')
                return pfail(p, "APPEND needs the message as a literal");
            if (literal(p, &m->data, true) < 0)
                return -1;
        }
    } while (!at_end(p));
    return 0;
}

static int parse_search(struct p *p, struct imap_command *c)
{
    static const char *const rets[] = {"MIN", "MAX", "ALL", "COUNT", "SAVE", NULL};
    static const char *const sorts[] = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT",
                                        "TO", "DISPLAYFROM", "DISPLAYTO", NULL};

    if (sp(p) < 0)
        return -1;
    if (c->cmd != IMAP_CMD_THREAD && accept_kw(p, "RETURN")) {
        c->search.has_return = true;
        if (sp(p) < 0 || expect_c(p, '(', "\"(\"") < 0)
            return -1;
        if (!accept_c(p, ')')) {
            do {
                int i = kw_index(p, rets);
                if (i < 0)
                    return pfail(p, "Unknown RETURN option at octet %zu", p->pos);
                c->search.ret |= 1u << i;
            } while (accept_c(p, ' '));
            if (expect_c(p, ')', "\")\"") < 0)
                return -1;
        }
        if (sp(p) < 0)
            return -1;
    }
    if (c->cmd == IMAP_CMD_SORT) {
        if (expect_c(p, '(', "sort criteria") < 0)
            return -1;
        do {
            struct imap_sort_crit *s = PUSH(p, c->search.sort, c->search.n_sort);
            int i;
            if (accept_kw(p, "REVERSE")) {
                s->reverse = true;
                if (sp(p) < 0)
                    return -1;
            }
            i = kw_index(p, sorts);
            if (i < 0)
                return pfail(p, "Unknown sort key at octet %zu", p->pos);
            s->key = (enum imap_sort_key)i;
        } while (accept_c(p, ' '));
        if (expect_c(p, ')', "\")\"") < 0 || sp(p) < 0)
            return -1;
    }
    if (c->cmd == IMAP_CMD_THREAD) {
        if (atom(p, &c->search.algorithm, "thread algorithm") < 0 || sp(p) < 0)
            return -1;
    }
    if (c->cmd != IMAP_CMD_SEARCH) {
        if (astring(p, &c->search.charset, "charset") < 0 || sp(p) < 0)
            return -1;
    } else if (accept_kw(p, "CHARSET")) {
        if (sp(p) < 0 || astring(p, &c->search.charset, "charset") < 0 || sp(p) < 0)
            return -1;
    }
    c->search.keys = a_alloc(p->a, sizeof(*c->search.keys));
    c->search.keys->key = IMAP_SK_AND;
    return search_keys(p, c->search.keys, false);
}

/* section-part "." ... inside "[" "]"; binary: only part numbers */
static int section(struct p *p, struct imap_fetch_att *f, bool binary)
{
    static const char *const specs[] = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
                                        "MIME", NULL};

    if (expect_c(p, '[', "\"[\"") < 0)
        return -1;
    if (peek(p) >= '0' && peek(p) <= '9') {
        for (;;) {
            uint32_t *n;
            if (f->n_parts >= SECTION_PARTS_MAX)
                return pfail(p, "Too many section parts");
            n = PUSH(p, f->parts, f->n_parts);
            if (number32(p, true, n, "section part") < 0)
                return -1;
            if (peek(p) == '.' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0' &&
                p->s[p->pos + 1] <= '9')
                p->pos++;
            else
                break;
        }
        if (accept_c(p, ']'))
            return 0;
        if (binary)
            return pfail(p, "Bad BINARY section");
        if (expect_c(p, '.', "\".\" in section") < 0)
            return -1;
    } else if (accept_c(p, ']')) {
        return 0;
    } else if (binary) {
        return pfail(p, "Bad BINARY section");
    }
    int i = kw_index(p, specs);
    if (i < 0 || (i == 4 && f->n_parts == 0))
        return pfail(p, "Bad section at octet %zu", p->pos);
    f->spec = (enum imap_section_spec)(i + 1);
    if (f->spec == IMAP_SECTION_HEADER_FIELDS || f->spec == IMAP_SECTION_HEADER_FIELDS_NOT) {
        if (sp(p) < 0 || expect_c(p, '(', "\"(\"") < 0)
            return -1;
        do {
            if (astring(p, PUSH(p, f->fields, f->n_fields), "header field name") < 0)
                return -1;
        } while (accept_c(p, ' '));
        if (expect_c(p, ')', "\")\"") < 0)
            return -1;
    }
    return expect_c(p, ']', "\"]\"");
}

static int partial(struct p *p, struct imap_fetch_att *f)
{
    if (!accept_c(p, '<'))
        return 0;
    f->partial = true;
    if (number64(p, false, &f->offset, "partial offset") < 0 ||
        expect_c(p, '.', "\".\" in partial") < 0 ||
        number64(p, true, &f->count, "partial length") < 0)
        return -1;
    return expect_c(p, '>', "\">\"");
}

static const char *const fetch_names[] = {
    "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
    "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "BODY.PEEK", "BINARY", "BINARY.SIZE",
    "MODSEQ", "BINARY.PEEK", NULL,
};

static int fetch_att(struct p *p, struct imap_fetch_att *f)
{
    int i = kw_index(p, fetch_names);

    if (i < 0)
        return pfail(p, "Unknown FETCH item at octet %zu", p->pos);
    if (i == 7 && peek(p) == '[')
        i = IMAP_FETCH_BODY_SECTION;
    else if (i == IMAP_FETCH_BODY_SECTION)
        f->peek = true;
    else if (i == 14) {
        i = IMAP_FETCH_BINARY;
        f->peek = true;
    }
    f->item = (enum imap_fetch_item)i;
    switch (f->item) {
    case IMAP_FETCH_BODY_SECTION:
        return section(p, f, false) < 0 ? -1 : partial(p, f);
    case IMAP_FETCH_BINARY:
        return section(p, f, true) < 0 ? -1 : partial(p, f);
    case IMAP_FETCH_BINARY_SIZE:
        return section(p, f, true);
    default:
        return 0;
    }
}

static void add_att(struct p *p, struct imap_command *c, enum imap_fetch_item item)
{
    PUSH(p, c->fetch.atts, c->fetch.n)->item = item;
}

static int parse_fetch(struct p *p, struct imap_command *c)
{
    if (sp(p) < 0 || seqset(p, &c->set) < 0 || sp(p) < 0)
        return -1;
    static const char *const macros[] = {"ALL", "FAST", "FULL", NULL};
    int m = kw_index(p, macros);
    if (m >= 0) {
        add_att(p, c, IMAP_FETCH_FLAGS);
        add_att(p, c, IMAP_FETCH_INTERNALDATE);
        add_att(p, c, IMAP_FETCH_RFC822_SIZE);
        if (m != 1)
            add_att(p, c, IMAP_FETCH_ENVELOPE);
        if (m == 2)
            add_att(p, c, IMAP_FETCH_BODY);
    } else if (accept_c(p, '(')) {
        do {
            if (fetch_att(p, PUSH(p, c->fetch.atts, c->fetch.n)) < 0)
                return -1;
        } while (accept_c(p, ' '));
        if (expect_c(p, ')', "\")\"") < 0)
            return -1;
    } else if (fetch_att(p, PUSH(p, c->fetch.atts, c->fetch.n)) < 0) {
        return -1;
    }
    if (accept_c(p, ' ')) {
        if (expect_c(p, '(', "\"(\"") < 0)
            return -1;
        do {
            if (accept_kw(p, "CHANGEDSINCE")) {
                c->fetch.has_changedsince = true;
                if (sp(p) < 0 || number64(p, true, &c->fetch.changedsince, "mod-sequence") < 0)
                    return -1;
            } else if (accept_kw(p, "VANISHED")) {
                c->fetch.vanished = true;
            } else {
                return pfail(p, "Unknown FETCH modifier at octet %zu", p->pos);
            }
        } while (accept_c(p, ' '));
        if (expect_c(p, ')', "\")\"") < 0)
            return -1;
        if (c->fetch.vanished && (!c->uid || !c->fetch.has_changedsince))
            return pfail(p, "VANISHED needs UID FETCH and CHANGEDSINCE");
    }
    return 0;
}

static int parse_store(struct p *p, struct imap_command *c)
{
    if (sp(p) < 0 || seqset(p, &c->set) < 0 || sp(p) < 0)
        return -1;
    if (accept_c(p, '(')) {
        if (!accept_kw(p, "UNCHANGEDSINCE"))
            return pfail(p, "Unknown STORE modifier at octet %zu", p->pos);
        c->store.has_unchangedsince = true;
        if (sp(p) < 0 || number64(p, false, &c->store.unchangedsince, "mod-sequence") < 0 ||
            expect_c(p, ')', "\")\"") < 0 || sp(p) < 0)
            return -1;
    }
    if (accept_c(p, '+'))
        c->store.op = IMAP_STORE_ADD;
    else if (accept_c(p, '-'))
        c->store.op = IMAP_STORE_REMOVE;
    if (accept_kw(p, "FLAGS.SILENT"))
        c->store.silent = true;
    else if (!accept_kw(p, "FLAGS"))
        return pfail(p, "Expected FLAGS at octet %zu", p->pos);
    if (sp(p) < 0)
        return -1;
    if (peek(p) == '(')
        return flag_list(p, &c->store.flags, &c->store.n_flags);
    do {
        if (flag(p, PUSH(p, c->store.flags, c->store.n_flags)) < 0)
            return -1;
    } while (accept_c(p, ' '));
    return 0;
}

static int parse_id(struct p *p, struct imap_command *c)
{
    if (sp(p) < 0)
        return -1;
    if (is_nil_next(p)) {
        p->pos += 3;
        c->id.nil = true;
        return 0;
    }
    if (expect_c(p, '(', "\"(\" or NIL") < 0)
        return -1;
    if (accept_c(p, ')'))
        return 0;
    do {
        size_t nf = c->id.n, nv = c->id.n;
        struct imap_str *f, *v;
        if (c->id.n >= ID_PAIRS_MAX)
            return pfail(p, "Too many ID fields");
        f = PUSH(p, c->id.fields, nf);
        v = PUSH(p, c->id.values, nv);
        c->id.n = nf;
        if (string(p, f) < 0 || sp(p) < 0 || nstring(p, v) < 0)
            return -1;
        if (f->len > ID_FIELD_MAX || (v->s && v->len > ID_VALUE_MAX))
            return pfail(p, "ID field or value too long");
    } while (accept_c(p, ' '));
    return expect_c(p, ')', "\")\"");
}

static int parse_args(struct p *p, struct imap_command *c)
{
    switch (c->cmd) {
    case IMAP_CMD_CAPABILITY: case IMAP_CMD_NOOP: case IMAP_CMD_LOGOUT: case IMAP_CMD_STARTTLS:
    case IMAP_CMD_IDLE: case IMAP_CMD_NAMESPACE: case IMAP_CMD_CHECK: case IMAP_CMD_CLOSE:
    case IMAP_CMD_UNSELECT:
        return 0;
    case IMAP_CMD_EXPUNGE:
        if (c->uid)
            return sp(p) < 0 ? -1 : seqset(p, &c->set);
        return 0;
    case IMAP_CMD_AUTHENTICATE:
        if (sp(p) < 0 || atom(p, &c->auth.mechanism, "mechanism") < 0)
            return -1;
        if (accept_c(p, ' ')) {
            c->auth.has_initial = true;
            if (accept_c(p, '=')) {
                c->auth.initial = mkstr(p, "", 0);
            } else {
                size_t start = p->pos;
                while (!at_end(p) && p->s[p->pos] != ' ')
                    p->pos++;
                c->auth.initial = mkstr(p, p->s + start, p->pos - start);
                if (!c->auth.initial.len || !is_base64(&c->auth.initial))
                    return pfail(p, "Bad base64 initial response");
            }
        }
        return 0;
    case IMAP_CMD_LOGIN:
        return (sp(p) < 0 || astring(p, &c->login.user, "user name") < 0 || sp(p) < 0 ||
                astring(p, &c->login.password, "password") < 0) ? -1 : 0;
    case IMAP_CMD_ENABLE:
        do {
            if (sp(p) < 0 || atom(p, PUSH(p, c->enable.caps, c->enable.n), "capability") < 0)
                return -1;
        } while (peek(p) == ' ');
        return 0;
    case IMAP_CMD_ID:
        return parse_id(p, c);
    case IMAP_CMD_SELECT: case IMAP_CMD_EXAMINE:
        return parse_select(p, c);
    case IMAP_CMD_CREATE:
        if (sp(p) < 0 || mailbox(p, &c->mailbox) < 0)
            return -1;
        if (accept_c(p, ' ')) {
            if (expect_c(p, '(', "\"(\"") < 0)
                return -1;
            if (!accept_kw(p, "USE"))
                return pfail(p, "Unknown CREATE parameter at octet %zu", p->pos);
            if (sp(p) < 0 || flag_list(p, &c->create.use, &c->create.n_use) < 0 ||
                expect_c(p, ')', "\")\"") < 0)
                return -1;
        }
        return 0;
    case IMAP_CMD_DELETE: case IMAP_CMD_SUBSCRIBE: case IMAP_CMD_UNSUBSCRIBE:
        return (sp(p) < 0 || mailbox(p, &c->mailbox) < 0) ? -1 : 0;
    case IMAP_CMD_RENAME:
        return (sp(p) < 0 || mailbox(p, &c->mailbox) < 0 || sp(p) < 0 ||
                mailbox(p, &c->mailbox2) < 0) ? -1 : 0;
    case IMAP_CMD_LIST: case IMAP_CMD_LSUB:
        return parse_list(p, c);
    case IMAP_CMD_STATUS:
        return (sp(p) < 0 || mailbox(p, &c->mailbox) < 0 || sp(p) < 0 ||
                status_atts(p, &c->status_items) < 0) ? -1 : 0;
    case IMAP_CMD_APPEND:
        return parse_append(p, c);
    case IMAP_CMD_SEARCH: case IMAP_CMD_SORT: case IMAP_CMD_THREAD:
        return parse_search(p, c);
    case IMAP_CMD_FETCH:
        return parse_fetch(p, c);
    case IMAP_CMD_STORE:
        return parse_store(p, c);
    case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
        return (sp(p) < 0 || seqset(p, &c->set) < 0 || sp(p) < 0 ||
                mailbox(p, &c->mailbox) < 0) ? -1 : 0;
    }
    return pfail(p, "Unknown command");
}

int imap_parse_tag(const char *text, size_t len, struct buf *out)
{
    size_t n = 0;

    buf_reset(out);
    while (n < len && is_tag_char((unsigned char)text[n]))
        n++;
    if (n == 0 || (n < len && text[n] != ' '))
        return -1;
    return buf_append(out, text, n);
}

int imap_parse(const char *text, size_t len, const struct imap_parse_opts *opts,
               struct imap_command **out, struct err *e)
{
    struct imap_command *c = XNEW(struct imap_command);
    struct p p;
    size_t start;
    int i;

    *out = NULL;
    c->arena = XNEW(struct imap_arena);
    memset(&p, 0, sizeof(p));
    p.s = text;
    p.len = len;
    p.a = c->arena;
    p.e = e;
    p.max_depth = opts && opts->max_depth ? opts->max_depth : IMAP_DEPTH_MAX_DEFAULT;
    p.utf8 = opts && opts->utf8;

    start = p.pos;
    while (!at_end(&p) && is_tag_char((unsigned char)text[p.pos]))
        p.pos++;
    if (p.pos == start) {
        pfail(&p, at_end(&p) ? "Empty command" : "Bad tag");
        goto fail;
    }
    c->tag = mkstr(&p, text + start, p.pos - start).s;
    if (sp(&p) < 0)
        goto fail;
    if (accept_kw(&p, "UID")) {
        static const char *const uid_cmds[] = {"COPY", "MOVE", "FETCH", "SEARCH", "STORE",
                                               "EXPUNGE", "SORT", "THREAD", NULL};
        static const enum imap_cmd uid_map[] = {IMAP_CMD_COPY, IMAP_CMD_MOVE, IMAP_CMD_FETCH,
                                                IMAP_CMD_SEARCH, IMAP_CMD_STORE,
                                                IMAP_CMD_EXPUNGE, IMAP_CMD_SORT,
                                                IMAP_CMD_THREAD};
        c->uid = true;
        if (sp(&p) < 0)
            goto fail;
        i = kw_index(&p, uid_cmds);
        if (i < 0) {
            pfail(&p, "Unknown UID command");
            goto fail;
        }
        c->cmd = uid_map[i];
    } else {
        i = kw_index(&p, cmd_names);
        if (i < 0) {
            pfail(&p, "Unknown command");
            goto fail;
        }
        c->cmd = (enum imap_cmd)i;
    }
    if (parse_args(&p, c) < 0)
        goto fail;
    if (!at_end(&p)) {
        pfail(&p, "Unexpected characters at octet %zu", p.pos);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    imap_command_free(c);
    return -1;
}

void imap_command_free(struct imap_command *c)
{
    if (!c)
        return;
    a_free(c->arena);
    free(c->arena);
    free(c);
}

/* ------------------------------------------------------------------ */
/* Response side: strings */

static bool quotable(const char *s, size_t len, bool utf8)
{
    if (len > QUOTED_OUT_MAX)
        return false;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0 || c == '\r' || c == '\n')
            return false;
        if (c >= 0x80) {
            uint32_t cp;
            int n;
            if (!utf8)
                return false;
            n = sanitize_utf8_next(s + i, len - i, &cp);
            if (n < 0)
                return false;
            i += (size_t)n;
            continue;
        }
        i++;
    }
    return true;
}

int imap_write_string(struct buf *out, const char *s, size_t len, bool utf8)
{
    if (quotable(s, len, utf8)) {
        if (buf_putc(out, '"') < 0)
            return -1;
        for (size_t i = 0; i < len; i++) {
            if ((s[i] == '"' || s[i] == '\\') && buf_putc(out, '\\') < 0)
                return -1;
            if (buf_putc(out, s[i]) < 0)
                return -1;
        }
        return buf_putc(out, '"');
    }
    if (buf_printf(out, "{%zu}\r\n", len) < 0)
        return -1;
    return buf_append(out, s, len);
}

int imap_write_astring(struct buf *out, const char *s, size_t len, bool utf8)
{
    bool atom_ok = len > 0;

    for (size_t i = 0; i < len && atom_ok; i++)
        atom_ok = is_astring_char((unsigned char)s[i]);
    /* "NIL" as an atom would read back as NIL where an nstring is allowed */
    if (atom_ok && !(len == 3 && strncasecmp(s, "NIL", 3) == 0))
        return buf_append(out, s, len);
    return imap_write_string(out, s, len, utf8);
}

int imap_write_nstring(struct buf *out, const char *s, size_t len, bool utf8)
{
    if (!s)
        return buf_puts(out, "NIL");
    return imap_write_string(out, s, len, utf8);
}

int imap_mailbox_decode(const char *name, size_t len, bool utf8, struct buf *out,
                        struct err *e)
{
    size_t start = out->len;

    if (len == 5 && strncasecmp(name, "INBOX", 5) == 0) {
        if (buf_puts(out, "INBOX") < 0)
            return err_set(e, ERR_LIMIT, "mailbox name too long");
        return 0;
    }
    if (utf8) {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            int n = sanitize_utf8_next(name + i, len - i, &cp);
            if (n < 0)
                return err_set(e, ERR_PARSE, "mailbox name is not valid UTF-8");
            i += (size_t)n;
        }
        if (buf_append(out, name, len) < 0)
            return err_set(e, ERR_LIMIT, "mailbox name too long");
    } else if (mutf7_to_utf8(name, len, out, e) < 0) {
        return -1;
    }
    for (size_t i = start; i < out->len;) {
        uint32_t cp;
        int n = sanitize_utf8_next(out->data + i, out->len - i, &cp);
        if (n < 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) {
            buf_truncate(out, start);
            return err_set(e, ERR_PARSE, "mailbox name holds a control character");
        }
        i += (size_t)n;
    }
    return 0;
}

int imap_write_mailbox(struct buf *out, const char *name, size_t len, bool utf8,
                       struct err *e)
{
    struct buf tmp = BUF_INIT;
    int rc;

    if (utf8) {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            int n = sanitize_utf8_next(name + i, len - i, &cp);
            if (n < 0)
                return err_set(e, ERR_PARSE, "mailbox name is not valid UTF-8");
            i += (size_t)n;
        }
        rc = imap_write_astring(out, name, len, true);
    } else {
        if (mutf7_from_utf8(name, len, &tmp, e) < 0)
            return -1;
        rc = imap_write_astring(out, tmp.data ? tmp.data : "", tmp.len, false);
        buf_free(&tmp);
    }
    if (rc < 0)
        return err_set(e, ERR_LIMIT, "response too long");
    return 0;
}

/* ------------------------------------------------------------------ */
/* Canonical writer */

struct w {
    struct buf *b;
    int rc;
};

static void wput(struct w *w, const char *s)
{
    if (buf_puts(w->b, s) < 0)
        w->rc = -1;
}

static void wprintf(struct w *w, const char *fmt, ...) CORREO_PRINTF(2, 3);
static void wprintf(struct w *w, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (buf_vprintf(w->b, fmt, ap) < 0)
        w->rc = -1;
    va_end(ap);
}

static void wastring(struct w *w, const struct imap_str *s)
{
    if (imap_write_astring(w->b, s->s, s->len, true) < 0)
        w->rc = -1;
}

static void wstring(struct w *w, const struct imap_str *s)
{
    if (imap_write_nstring(w->b, s->s, s->len, true) < 0)
        w->rc = -1;
}

static void wliteral(struct w *w, const struct imap_str *s)
{
    wprintf(w, "%s{%zu}\r\n", s->binary ? "~" : "", s->len);
    if (buf_append(w->b, s->s, s->len) < 0)
        w->rc = -1;
}

static void wlist_mailbox(struct w *w, const struct imap_str *s)
{
    bool raw = s->len > 0;

    for (size_t i = 0; i < s->len && raw; i++)
        raw = is_list_char((unsigned char)s->s[i]);
    if (raw)
        wput(w, s->s);
    else
        wstring(w, s);
}

static void wflags(struct w *w, const struct imap_str *f, size_t n)
{
    wput(w, "(");
    for (size_t i = 0; i < n; i++) {
        if (i)
            wput(w, " ");
        wput(w, f[i].s);
    }
    wput(w, ")");
}

static void wnum(struct w *w, uint64_t v)
{
    if (v == IMAP_SEQ_STAR)
        wput(w, "*");
    else
        wprintf(w, "%" PRIu64, v);
}

static void wset(struct w *w, const struct imap_seqset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            wput(w, ",");
        if (s->r[i].lo == IMAP_SEQ_SAVED) {
            wput(w, "$");
            continue;
        }
        wnum(w, s->r[i].lo);
        if (s->r[i].hi != s->r[i].lo) {
            wput(w, ":");
            wnum(w, s->r[i].hi);
        }
    }
}

static void wdate(struct w *w, const struct imap_date *d)
{
    wprintf(w, "%d-%s-%04d", d->day, month_names[d->month - 1], d->year);
}

static void wstatus(struct w *w, unsigned items)
{
    bool first = true;

    wput(w, "(");
    for (unsigned i = 0; status_names[i]; i++) {
        if (items & (1u << i)) {
            if (!first)
                wput(w, " ");
            wput(w, status_names[i]);
            first = false;
        }
    }
    wput(w, ")");
}

static void wkey(struct w *w, const struct imap_search_key *k)
{
    switch (k->key) {
    case IMAP_SK_AND:
        wput(w, "(");
        for (const struct imap_search_key *c = k->child; c; c = c->next) {
            if (c != k->child)
                wput(w, " ");
            wkey(w, c);
        }
        wput(w, ")");
        return;
    case IMAP_SK_SEQSET:
        wset(w, &k->set);
        return;
    default:
        break;
    }
    wput(w, skey_names[k->key]);
    switch (k->key) {
    case IMAP_SK_BCC: case IMAP_SK_BODY: case IMAP_SK_CC: case IMAP_SK_FROM:
    case IMAP_SK_SUBJECT: case IMAP_SK_TEXT: case IMAP_SK_TO:
        wput(w, " ");
        wastring(w, &k->str);
        break;
    case IMAP_SK_HEADER:
        wput(w, " ");
        wastring(w, &k->field);
        wput(w, " ");
        wastring(w, &k->str);
        break;
    case IMAP_SK_KEYWORD: case IMAP_SK_UNKEYWORD:
        wput(w, " ");
        wput(w, k->str.s);
        break;
    case IMAP_SK_BEFORE: case IMAP_SK_ON: case IMAP_SK_SINCE: case IMAP_SK_SENTBEFORE:
    case IMAP_SK_SENTON: case IMAP_SK_SENTSINCE:
        wput(w, " ");
        wdate(w, &k->date);
        break;
    case IMAP_SK_LARGER: case IMAP_SK_SMALLER: case IMAP_SK_OLDER: case IMAP_SK_YOUNGER:
        wprintf(w, " %" PRIu64, k->num);
        break;
    case IMAP_SK_UID:
        wput(w, " ");
        wset(w, &k->set);
        break;
    case IMAP_SK_NOT:
        wput(w, " ");
        wkey(w, k->child);
        break;
    case IMAP_SK_OR:
        wput(w, " ");
        wkey(w, k->child);
        wput(w, " ");
        wkey(w, k->child->next);
        break;
    case IMAP_SK_MODSEQ:
        if (k->str.s) {
            wput(w, " ");
            wstring(w, &k->str);
            wprintf(w, " %s", k->field.s);
        }
        wprintf(w, " %" PRIu64, k->num);
        break;
    default:
        break;
    }
}

static void wfetch_att(struct w *w, const struct imap_fetch_att *f)
{
    static const char *const specs[] = {"", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
                                        "TEXT", "MIME"};

    switch (f->item) {
    case IMAP_FETCH_BODY_SECTION:
        wput(w, f->peek ? "BODY.PEEK[" : "BODY[");
        break;
    case IMAP_FETCH_BINARY:
        wput(w, f->peek ? "BINARY.PEEK[" : "BINARY[");
        break;
    case IMAP_FETCH_BINARY_SIZE:
        wput(w, "BINARY.SIZE[");
        break;
    default:
        wput(w, fetch_names[f->item]);
        return;
    }
    for (size_t i = 0; i < f->n_parts; i++)
        wprintf(w, "%s%" PRIu32, i ? "." : "", f->parts[i]);
    if (f->spec != IMAP_SECTION_NONE) {
        wprintf(w, "%s%s", f->n_parts ? "." : "", specs[f->spec]);
        if (f->spec == IMAP_SECTION_HEADER_FIELDS || f->spec == IMAP_SECTION_HEADER_FIELDS_NOT) {
            wput(w, " (");
            for (size_t i = 0; i < f->n_fields; i++) {
                if (i)
                    wput(w, " ");
                wastring(w, &f->fields[i]);
            }
            wput(w, ")");
        }
    }
    wput(w, "]");
    if (f->partial)
        wprintf(w, "<%" PRIu64 ".%" PRIu64 ">", f->offset, f->count);
}

static void wsearch(struct w *w, const struct imap_command *c)
{
    static const char *const rets[] = {"MIN", "MAX", "ALL", "COUNT", "SAVE"};
    static const char *const sorts[] = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT",
                                        "TO", "DISPLAYFROM", "DISPLAYTO"};
    bool first = true;

    if (c->search.has_return) {
        wput(w, " RETURN (");
        for (unsigned i = 0; i < ARRAY_LEN(rets); i++) {
            if (c->search.ret & (1u << i)) {
                wprintf(w, "%s%s", first ? "" : " ", rets[i]);
                first = false;
            }
        }
        wput(w, ")");
    }
    if (c->cmd == IMAP_CMD_SORT) {
        wput(w, " (");
        for (size_t i = 0; i < c->search.n_sort; i++)
            wprintf(w, "%s%s%s", i ? " " : "", c->search.sort[i].reverse ? "REVERSE " : "",
                    sorts[c->search.sort[i].key]);
        wput(w, ")");
    }
    if (c->cmd == IMAP_CMD_THREAD)
        wprintf(w, " %s", c->search.algorithm.s);
    if (c->search.charset.s) {
        wput(w, c->cmd == IMAP_CMD_SEARCH ? " CHARSET " : " ");
        wastring(w, &c->search.charset);
    }
    for (const struct imap_search_key *k = c->search.keys->child; k; k = k->next) {
        wput(w, " ");
        wkey(w, k);
    }
}

static void wargs(struct w *w, const struct imap_command *c)
{
    static const char *const lsel[] = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"};
    static const char *const lret[] = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"};

    switch (c->cmd) {
    case IMAP_CMD_EXPUNGE:
        if (c->uid) {
            wput(w, " ");
            wset(w, &c->set);
        }
        break;
    case IMAP_CMD_AUTHENTICATE:
        wprintf(w, " %s", c->auth.mechanism.s);
        if (c->auth.has_initial)
            wprintf(w, " %s", c->auth.initial.len ? c->auth.initial.s : "=");
        break;
    case IMAP_CMD_LOGIN:
        wput(w, " ");
        wastring(w, &c->login.user);
        wput(w, " ");
        wastring(w, &c->login.password);
        break;
    case IMAP_CMD_ENABLE:
        for (size_t i = 0; i < c->enable.n; i++)
            wprintf(w, " %s", c->enable.caps[i].s);
        break;
    case IMAP_CMD_ID:
        if (c->id.nil) {
            wput(w, " NIL");
            break;
        }
        wput(w, " (");
        for (size_t i = 0; i < c->id.n; i++) {
            if (i)
                wput(w, " ");
            wstring(w, &c->id.fields[i]);
            wput(w, " ");
            wstring(w, &c->id.values[i]);
        }
        wput(w, ")");
        break;
    case IMAP_CMD_SELECT: case IMAP_CMD_EXAMINE:
        wput(w, " ");
        wastring(w, &c->mailbox);
        if (c->select.condstore || c->select.qresync) {
            wput(w, " (");
            if (c->select.condstore)
                wput(w, c->select.qresync ? "CONDSTORE " : "CONDSTORE");
            if (c->select.qresync) {
                wprintf(w, "QRESYNC (%" PRIu32 " %" PRIu64, c->select.uidvalidity,
                        c->select.modseq);
                if (c->select.known_uids.n) {
                    wput(w, " ");
                    wset(w, &c->select.known_uids);
                }
                if (c->select.match_seqs.n) {
                    wput(w, " (");
                    wset(w, &c->select.match_seqs);
                    wput(w, " ");
                    wset(w, &c->select.match_uids);
                    wput(w, ")");
                }
                wput(w, ")");
            }
            wput(w, ")");
        }
        break;
    case IMAP_CMD_CREATE:
        wput(w, " ");
        wastring(w, &c->mailbox);
        if (c->create.use) {
            wput(w, " (USE ");
            wflags(w, c->create.use, c->create.n_use);
            wput(w, ")");
        }
        break;
    case IMAP_CMD_DELETE: case IMAP_CMD_SUBSCRIBE: case IMAP_CMD_UNSUBSCRIBE:
        wput(w, " ");
        wastring(w, &c->mailbox);
        break;
    case IMAP_CMD_RENAME:
        wput(w, " ");
        wastring(w, &c->mailbox);
        wput(w, " ");
        wastring(w, &c->mailbox2);
        break;
    case IMAP_CMD_LIST: case IMAP_CMD_LSUB:
        if (c->list.sel || (c->list.extended && c->list.n_patterns == 1)) {
            bool first = true;
            wput(w, " (");
            for (unsigned i = 0; i < ARRAY_LEN(lsel); i++) {
                if (c->list.sel & (1u << i)) {
                    wprintf(w, "%s%s", first ? "" : " ", lsel[i]);
                    first = false;
                }
            }
            wput(w, ")");
        }
        wput(w, " ");
        wastring(w, &c->mailbox);
        wput(w, " ");
        if (c->list.n_patterns > 1)
            wput(w, "(");
        for (size_t i = 0; i < c->list.n_patterns; i++) {
            if (i)
                wput(w, " ");
            wlist_mailbox(w, &c->list.patterns[i]);
        }
        if (c->list.n_patterns > 1)
            wput(w, ")");
        if (c->list.has_return) {
            bool first = true;
            wput(w, " RETURN (");
            for (unsigned i = 0; i < ARRAY_LEN(lret); i++) {
                if (c->list.ret & (1u << i)) {
                    wprintf(w, "%s%s", first ? "" : " ", lret[i]);
                    first = false;
                    if (i == 3) {
                        wput(w, " ");
                        wstatus(w, c->list.status_items);
                    }
                }
            }
            wput(w, ")");
        }
        break;
    case IMAP_CMD_STATUS:
        wput(w, " ");
        wastring(w, &c->mailbox);
        wput(w, " ");
        wstatus(w, c->status_items);
        break;
    case IMAP_CMD_APPEND:
        wput(w, " ");
        wastring(w, &c->mailbox);
        for (size_t i = 0; i < c->append.n; i++) {
            const struct imap_append_msg *m = &c->append.msgs[i];
            if (m->has_flags) {
                wput(w, " ");
                wflags(w, m->flags, m->n_flags);
            }
            if (m->has_date) {
                const struct imap_datetime *d = &m->date;
                int z = d->zone < 0 ? -d->zone : d->zone;
                wprintf(w, " \"%02d-%s-%04d %02d:%02d:%02d %c%02d%02d\"", d->date.day,
                        month_names[d->date.month - 1], d->date.year, d->hour, d->min, d->sec,
                        d->zone < 0 ? '-' : '+', z / 60, z % 60);
            }
            wput(w, m->utf8 ? " UTF8 (" : " ");
            wliteral(w, &m->data);
            if (m->utf8)
                wput(w, ")");
        }
        break;
    case IMAP_CMD_SEARCH: case IMAP_CMD_SORT: case IMAP_CMD_THREAD:
        wsearch(w, c);
        break;
    case IMAP_CMD_FETCH:
        wput(w, " ");
        wset(w, &c->set);
        wput(w, " (");
        for (size_t i = 0; i < c->fetch.n; i++) {
            if (i)
                wput(w, " ");
            wfetch_att(w, &c->fetch.atts[i]);
        }
        wput(w, ")");
        if (c->fetch.has_changedsince || c->fetch.vanished) {
            wput(w, " (");
            if (c->fetch.has_changedsince)
                wprintf(w, "CHANGEDSINCE %" PRIu64, c->fetch.changedsince);
            if (c->fetch.vanished)
                wput(w, c->fetch.has_changedsince ? " VANISHED" : "VANISHED");
            wput(w, ")");
        }
        break;
    case IMAP_CMD_STORE:
        wput(w, " ");
        wset(w, &c->set);
        if (c->store.has_unchangedsince)
            wprintf(w, " (UNCHANGEDSINCE %" PRIu64 ")", c->store.unchangedsince);
        wprintf(w, " %sFLAGS%s ",
                c->store.op == IMAP_STORE_ADD ? "+" : c->store.op == IMAP_STORE_REMOVE ? "-" : "",
                c->store.silent ? ".SILENT" : "");
        wflags(w, c->store.flags, c->store.n_flags);
        break;
    case IMAP_CMD_COPY: case IMAP_CMD_MOVE:
        wput(w, " ");
        wset(w, &c->set);
        wput(w, " ");
        wastring(w, &c->mailbox);
        break;
    default:
        break;
    }
}

int imap_command_write(const struct imap_command *c, struct buf *out)
{
    struct w w = {out, 0};

    wprintf(&w, "%s %s%s", c->tag, c->uid ? "UID " : "", imap_cmd_name(c->cmd));
    wargs(&w, c);
    return w.rc;
}
