/* render: a parsed message as sanitized, wrapped display lines for the pager. */
#include "render.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include "charset.h"
#include "html.h"
#include "mailcap.h"
#include "rcfile.h"
#include "rfc2047.h"
#include "sanitize.h"
#include "regex_guard.h"

#define RENDER_TAB 8
#define RENDER_MAX_DEFAULT (256u << 20)
#define RENDER_MAX_CEIL (1u << 30)          /* offsets stay well inside regoff_t */
#define RENDER_MAX_FLOOR 4096u
#define RENDER_RESERVE 1024u                /* kept for the "truncated" line */
#define RENDER_FILTER_TIMEOUT_MS 10000u

static const char *const default_ignore[] = {"*", NULL};
static const char *const default_unignore[] = {
    "from:", "subject:", "to:", "cc:", "date:", "reply-to:", "list-id:", "x-label:", NULL,
};

void render_opts_default(struct render_opts *o)
{
    memset(o, 0, sizeof *o);
    o->cols = 80;
    o->smart_wrap = true;
    o->reflow = true;
}

void render_out_init(struct render_out *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->text, 0);
}

void render_out_free(struct render_out *out)
{
    buf_free(&out->text);
    free(out->lines);
    render_out_init(out);
}

void render_out_reset(struct render_out *out)
{
    buf_reset(&out->text);
    out->n_lines = 0;
    out->truncated = false;
}

/* ---- the line store ------------------------------------------------------ */

struct rd {
    const struct render_opts *o;
    struct render_out *out;
    size_t max;            /* budget for text plus lines, RENDER_RESERVE excluded */
    struct buf san;        /* scratch: sanitized line */
    struct buf exp;        /* scratch: TABs expanded */
    bool in_sig;           /* body text: inside the signature */
};

struct line_attr {
    uint8_t role;
    uint8_t quote;
    uint32_t name_len;
    uint32_t part;
};

static void rd_init(struct rd *r, const struct render_opts *o, struct render_out *out)
{
    size_t max = o->max_bytes ? o->max_bytes : RENDER_MAX_DEFAULT;

    if (max > RENDER_MAX_CEIL)
        max = RENDER_MAX_CEIL;
    if (max < RENDER_MAX_FLOOR)
        max = RENDER_MAX_FLOOR;
    r->o = o;
    r->out = out;
    r->max = max - RENDER_RESERVE;
    /* a line never grows past the budget, even in the scratch buffers */
    buf_init(&r->san, r->max);
    buf_init(&r->exp, r->max);
    r->in_sig = false;
}

static void rd_free(struct rd *r)
{
    buf_free(&r->san);
    buf_free(&r->exp);
}

static bool rd_room(struct rd *r, size_t bytes, size_t lines)
{
    size_t used = r->out->text.len + r->out->n_lines * sizeof(struct render_line);

    if (r->out->truncated)
        return false;
    if (bytes > r->max || lines > r->max / sizeof(struct render_line) ||
        used + bytes + lines * sizeof(struct render_line) > r->max) {
        r->out->truncated = true;
        return false;
    }
    return true;
}

static void push_line(struct render_out *out, size_t off, size_t len, const struct line_attr *a,
                      bool cont)
{
    struct render_line *l;

    if (out->n_lines == out->cap_lines) {
        out->cap_lines = out->cap_lines ? out->cap_lines * 2 : 64;
        out->lines = xreallocarray(out->lines, out->cap_lines, sizeof *out->lines);
    }
    l = &out->lines[out->n_lines++];
    l->off = (uint32_t)off;
    l->len = (uint32_t)len;
    l->role = a->role;
    l->quote = a->quote;
    l->flags = cont ? RENDER_LINE_CONT : 0;
    l->name_len = cont ? 0 : a->name_len;
    l->part = a->part;
}

/* Expand the TABs of sanitized text to RENDER_TAB stops into r->exp.
 * -1 when that is larger than the budget. */
static int expand_tabs(struct rd *r, const char *s, size_t n)
{
    static const char spaces[RENDER_TAB + 1] = "        ";
    size_t col = 0, i = 0;

    buf_reset(&r->exp);
    while (i < n) {
        const char *tab = memchr(s + i, '\t', n - i);
        size_t seg = tab ? (size_t)(tab - (s + i)) : n - i;

        if (buf_append(&r->exp, s + i, seg) < 0)
            return -1;
        col += sanitize_width(s + i, seg);
        i += seg;
        if (tab) {
            size_t pad = RENDER_TAB - col % RENDER_TAB;
            if (buf_append(&r->exp, spaces, pad) < 0)
                return -1;
            col += pad;
            i++;
        }
    }
    return 0;
}

/* Next piece of the sanitized line s[pos..n) for cols columns: returns its
 * length; *next is where the following piece starts. */
static size_t next_piece(const char *s, size_t n, size_t pos, size_t cols, bool smart,
                         size_t *next)
{
    size_t rem = n - pos, fit;

    fit = cols ? sanitize_fit(s + pos, rem, cols, NULL) : rem;
    if (fit == rem) {
        *next = n;
        return rem;
    }
    if (fit == 0) {
        /* one character wider than the screen: it gets a line of its own */
        fit = sanitize_fit(s + pos, rem, 2, NULL);
        if (fit == 0)
            fit = 1;
        *next = pos + fit;
        return fit;
    }
    if (smart) {
        for (size_t k = pos + fit; k > pos; k--) {
            if (s[k] == ' ') {
                *next = k + 1;
                return k - pos;
            }
        }
    }
    *next = pos + fit;
    return fit;
}

/* Add one logical line: sanitized, TABs expanded, wrapped. */
static int add_line(struct rd *r, const char *s, size_t n, unsigned san_flags,
                    const struct line_attr *a)
{
    struct render_out *out = r->out;
    size_t cols = r->o->cols, base, pos, next, count = 0;
    bool smart = r->o->smart_wrap;

    if (r->out->truncated)
        return -1;
    buf_reset(&r->san);
    if (sanitize_term(&r->san, s, n, san_flags) < 0 ||
        expand_tabs(r, buf_cstr(&r->san), r->san.len) < 0) {
        r->out->truncated = true;
        return -1;
    }
    /* count the pieces first so the budget is checked before anything is
     * stored */
    pos = 0;
    do {
        next_piece(buf_cstr(&r->exp), r->exp.len, pos, cols, smart, &next);
        pos = next;
        count++;
    } while (pos < r->exp.len);
    if (!rd_room(r, r->exp.len, count))
        return -1;
    base = out->text.len;
    if (buf_append(&out->text, buf_cstr(&r->exp), r->exp.len) < 0)
        die("render: unbounded buffer refused an append");
    pos = 0;
    count = 0;
    do {
        size_t len = next_piece(buf_cstr(&r->exp), r->exp.len, pos, cols, smart, &next);
        push_line(out, base + pos, len, a, count++ > 0);
        pos = next;
    } while (pos < r->exp.len);
    return 0;
}

static int add_simple(struct rd *r, uint8_t role, const char *s)
{
    struct line_attr a = {role, 0, 0, 0};
    return add_line(r, s, strlen(s), 0, &a);
}

static int add_info(struct rd *r, const char *fmt, ...) CORREO_PRINTF(2, 3);

static int add_info(struct rd *r, const char *fmt, ...)
{
    va_list ap;
    char *s;
    int rc;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    rc = add_simple(r, RENDER_INFO, s);
    free(s);
    return rc;
}

/* The final note when the budget ran out (uses the reserve). */
static void add_truncated_note(struct rd *r)
{
    static const char note[] = "[-- display truncated: the message is too large --]";
    struct line_attr a = {RENDER_INFO, 0, 0, 0};
    size_t off = r->out->text.len;

    if (buf_append(&r->out->text, note, sizeof note - 1) < 0)
        die("render: unbounded buffer refused an append");
    push_line(r->out, off, sizeof note - 1, &a, false);
}

/* ---- body text ----------------------------------------------------------- */

static unsigned quote_level(const char *s, size_t n, const char *qc)
{
    size_t i = 0;
    unsigned level = 0;

    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    while (i < n && s[i] != '\0' && strchr(qc, s[i])) {
        level++;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t'))
            i++;
    }
    return level > RENDER_QUOTE_MAX ? RENDER_QUOTE_MAX : level;
}

static bool is_sig_separator(const char *s, size_t n, bool lenient)
{
    return (n == 3 && memcmp(s, "-- ", 3) == 0) || (lenient && n == 2 && memcmp(s, "--", 2) == 0);
}

/* One line of body text: its role, then add it.  depth >= 0 is a quote
 * depth already known (format=flowed), < 0: from the text. */
static int body_line_depth(struct rd *r, const char *s, size_t n, long depth)
{
    const char *qc = r->o->quote_chars && *r->o->quote_chars ? r->o->quote_chars : ">";
    struct line_attr a = {RENDER_BODY, 0, 0, 0};
    unsigned level;

    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (!r->in_sig && is_sig_separator(s, n, r->o->lenient_sig))
        r->in_sig = true;
    if (r->in_sig) {
        a.role = RENDER_SIGNATURE;
    } else if ((level = depth >= 0 ? (depth > RENDER_QUOTE_MAX ? RENDER_QUOTE_MAX
                                                                : (unsigned)depth)
                                   : quote_level(s, n, qc)) > 0) {
        a.role = RENDER_QUOTED;
        a.quote = (uint8_t)level;
    }
    return add_line(r, s, n, SAN_KEEP_TAB, &a);
}

static int body_line(struct rd *r, const char *s, size_t n)
{
    return body_line_depth(r, s, n, -1);
}

static int body_text(struct rd *r, const char *text, size_t len)
{
    size_t pos = 0;

    r->in_sig = false;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;

        if (body_line(r, text + pos, end - pos) < 0)
            return -1;
        pos = end + 1;
    }
    return 0;
}

/* format=flowed (RFC 3676): join soft line breaks of the same quote depth,
 * drop space-stuffing, and with DelSp the space before a soft break. */
static int flowed_text(struct rd *r, const char *text, size_t len, bool delsp)
{
    struct buf para = BUF_INIT;
    size_t pos = 0, depth = 0;
    bool open = false;
    int rc = 0;

    r->in_sig = false;
    while (pos < len && rc == 0) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t n = end - pos, d = 0;
        bool soft;

        if (n > 0 && s[n - 1] == '\r')
            n--;
        while (d < n && s[d] == '>')
            d++;
        s += d;
        n -= d;
        if (n > 0 && s[0] == ' ') {
            s++;
            n--;
        }
        soft = n > 0 && s[n - 1] == ' ' && !(n == 3 && memcmp(s, "-- ", 3) == 0);
        if (open && d != depth) {
            rc = body_line_depth(r, buf_cstr(&para), para.len, (long)depth);
            open = false;
        }
        if (!open) {
            buf_reset(&para);
            for (size_t k = 0; k < d; k++)
                if (buf_putc(&para, '>') < 0)
                    die("render: unbounded buffer refused an append");
            if (d > 0 && buf_putc(&para, ' ') < 0)
                die("render: unbounded buffer refused an append");
            depth = d;
            open = true;
        }
        if (buf_append(&para, s, soft && delsp ? n - 1 : n) < 0)
            die("render: unbounded buffer refused an append");
        if (!soft && rc == 0) {
            rc = body_line_depth(r, buf_cstr(&para), para.len, (long)depth);
            open = false;
        }
        pos = end + 1;
    }
    if (open && rc == 0)
        rc = body_line_depth(r, buf_cstr(&para), para.len, (long)depth);
    buf_free(&para);
    return rc;
}

int render_text(const char *text, size_t len, const struct render_opts *opts,
                struct render_out *out, struct err *e)
{
    struct rd r;
    int rc;

    if (out->truncated)
        return err_set(e, ERR_LIMIT, "display already truncated");
    rd_init(&r, opts, out);
    rc = body_text(&r, text ? text : "", text ? len : 0);
    if (rc < 0)
        add_truncated_note(&r);
    rd_free(&r);
    if (rc < 0)
        return err_set(e, ERR_LIMIT, "display truncated at %zu bytes", r.max + RENDER_RESERVE);
    return 0;
}

/* ---- headers ------------------------------------------------------------- */

struct field {
    const char *name, *value;
    size_t name_len, value_len;
};

static bool field_matches(const char *const *list, const struct field *f)
{
    for (; list && *list; list++) {
        const char *p = *list;
        size_t pl = strlen(p);

        if (strcmp(p, "*") == 0)
            return true;
        if (pl == 0 || pl > f->name_len + 1)
            continue;
        /* p is a prefix of "Name:" */
        if (strncasecmp(p, f->name, pl < f->name_len ? pl : f->name_len) == 0 &&
            (pl <= f->name_len || p[f->name_len] == ':'))
            return true;
    }
    return false;
}

/* Collect the fields of the header block raw[0..end). */
static size_t scan_fields(const char *raw, size_t end, struct field **out)
{
    struct field *v = NULL;
    size_t n = 0, cap = 0, pos = 0;

    while (pos < end) {
        const char *nl = memchr(raw + pos, '\n', end - pos);
        size_t le = nl ? (size_t)(nl - raw) + 1 : end, fe = le;
        const char *colon;

        if (raw[pos] == '\n' || (raw[pos] == '\r' && pos + 1 < end && raw[pos + 1] == '\n'))
            break;   /* the blank line */
        while (fe < end && (raw[fe] == ' ' || raw[fe] == '\t')) {   /* folded */
            nl = memchr(raw + fe, '\n', end - fe);
            fe = nl ? (size_t)(nl - raw) + 1 : end;
        }
        colon = memchr(raw + pos, ':', fe - pos);
        if (colon && raw[pos] != ' ' && raw[pos] != '\t') {
            size_t nlen = (size_t)(colon - (raw + pos));
            while (nlen > 0 && (raw[pos + nlen - 1] == ' ' || raw[pos + nlen - 1] == '\t'))
                nlen--;
            if (nlen > 0) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    v = xreallocarray(v, cap, sizeof *v);
                }
                v[n].name = raw + pos;
                v[n].name_len = nlen;
                v[n].value = colon + 1;
                v[n].value_len = fe - (size_t)(colon + 1 - raw);
                n++;
            }
        }
        pos = fe;
    }
    *out = v;
    return n;
}

static int header_field(struct rd *r, const struct field *f)
{
    struct buf unfolded = BUF_INIT, decoded = BUF_INIT, line = BUF_INIT;
    struct line_attr a = {RENDER_HEADER, 0, 0, 0};
    const char *v;
    size_t vn;
    int rc;

    for (size_t i = 0; i < f->value_len; i++)
        if (f->value[i] != '\r' && f->value[i] != '\n' && buf_putc(&unfolded, f->value[i]) < 0)
            die("render: unbounded buffer refused an append");
    v = buf_cstr(&unfolded);
    vn = unfolded.len;
    while (vn > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vn--;
    }
    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
        vn--;
    if (rfc2047_decode(v, vn, &decoded, NULL) < 0 ||
        sanitize_term(&line, f->name, f->name_len, 0) < 0 || buf_putc(&line, ':') < 0)
        die("render: unbounded buffer refused an append");
    a.name_len = (uint32_t)line.len;
    if (buf_putc(&line, ' ') < 0 || sanitize_term(&line, buf_cstr(&decoded), decoded.len, 0) < 0)
        die("render: unbounded buffer refused an append");
    /* already sanitized: sanitizing again changes nothing */
    rc = add_line(r, buf_cstr(&line), line.len, 0, &a);
    buf_free(&unfolded);
    buf_free(&decoded);
    buf_free(&line);
    return rc;
}

static size_t header_end(const struct message *m)
{
    size_t end = m->body_offset <= m->raw_len ? m->body_offset : m->raw_len;
    return end > m->limits.max_header_bytes ? m->limits.max_header_bytes : end;
}

static int raw_headers(struct rd *r, const struct message *m)
{
    const char *raw = m->raw;
    size_t end = header_end(m), pos = 0;

    while (pos < end) {
        const char *nl = memchr(raw + pos, '\n', end - pos);
        size_t le = nl ? (size_t)(nl - raw) : end, n = le - pos;
        struct line_attr a = {RENDER_HEADER, 0, 0, 0};
        const char *colon;

        if (n > 0 && raw[le - 1] == '\r')
            n--;
        if (n == 0)
            break;
        colon = memchr(raw + pos, ':', n);
        if (colon && raw[pos] != ' ' && raw[pos] != '\t' &&
            !memchr(raw + pos, '\t', (size_t)(colon - (raw + pos)))) {
            struct buf name = BUF_INIT;
            if (sanitize_term(&name, raw + pos, (size_t)(colon - (raw + pos)) + 1, 0) < 0)
                die("render: unbounded buffer refused an append");
            a.name_len = (uint32_t)name.len;
            buf_free(&name);
        }
        if (add_line(r, raw + pos, n, SAN_KEEP_TAB, &a) < 0)
            return -1;
        pos = le + 1;
    }
    return 0;
}

static int weeded_headers(struct rd *r, const struct message *m)
{
    const char *const *ignore = r->o->ignore ? r->o->ignore : default_ignore;
    const char *const *unignore = r->o->unignore ? r->o->unignore : default_unignore;
    struct field *f;
    size_t n = scan_fields(m->raw, header_end(m), &f);
    bool *done = xcalloc(n ? n : 1, sizeof *done);
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        done[i] = !field_matches(unignore, &f[i]) && field_matches(ignore, &f[i]);
    for (const char *const *o = r->o->header_order; o && *o && rc == 0; o++) {
        const char *one[2] = {*o, NULL};
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (!done[i] && field_matches(one, &f[i])) {
                done[i] = true;
                rc = header_field(r, &f[i]);
            }
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!done[i])
            rc = header_field(r, &f[i]);
    free(done);
    free(f);
    return rc;
}

/* ---- parts --------------------------------------------------------------- */

static bool part_is(const struct msg_part *p, const char *type, const char *subtype)
{
    return p->type && strcasecmp(p->type, type) == 0 &&
           (!subtype || (p->subtype && strcasecmp(p->subtype, subtype) == 0));
}

static void pretty_size(size_t n, char *dst, size_t dstsz)
{
    if (n < 1024)
        snprintf(dst, dstsz, "%zuB", n);
    else if (n < 10 * 1024)
        snprintf(dst, dstsz, "%.1fK", (double)n / 1024.0);
    else if (n < 1024 * 1024)
        snprintf(dst, dstsz, "%zuK", (n + 512) / 1024);
    else if (n < 10 * 1024 * 1024)
        snprintf(dst, dstsz, "%.1fM", (double)n / (1024.0 * 1024.0));
    else
        snprintf(dst, dstsz, "%zuM", (n + 512 * 1024) / (1024 * 1024));
}

char *render_part_label(const struct msg_part *p)
{
    const char *name = p->filename ? p->filename : p->description;
    size_t size = p->encoding == MSG_ENC_BASE64 ? p->body_size / 4 * 3 : p->body_size;
    char *type = message_part_mime_type(p), sz[32];
    struct buf b = BUF_INIT;

    if (!name && p->envelope && p->envelope->subject)
        name = p->envelope->subject;
    pretty_size(size, sz, sizeof sz);
    if (name && *name) {
        if (sanitize_term(&b, name, strlen(name), 0) < 0 || buf_putc(&b, ' ') < 0)
            die("render: unbounded buffer refused an append");
    }
    if (buf_putc(&b, '(') < 0 || sanitize_term(&b, type, strlen(type), 0) < 0 ||
        buf_printf(&b, ", %s)", sz) < 0)
        die("render: unbounded buffer refused an append");
    free(type);
    return buf_steal(&b, NULL);
}

static int attachment_line(struct rd *r, const struct msg_part *p, size_t number)
{
    struct line_attr a = {RENDER_ATTACHMENT, 0, 0, (uint32_t)p->index};
    bool alternative = p->parent && part_is(p->parent, "multipart", "alternative");
    char *label = render_part_label(p);
    char *line = xasprintf("[-- %s #%zu%s%s --]", alternative ? "Alternative" : "Attachment",
                           number, label[0] == '(' ? " " : ": ", label);
    int rc = add_line(r, line, strlen(line), 0, &a);

    free(label);
    free(line);
    return rc;
}

/* Words of the filter command (rc syntax, one command only). */
struct split_ctx {
    char **argv;
    size_t argc;
    unsigned commands;
};

static int split_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct split_ctx *c = ctx;

    if (c->commands++ > 0)
        return err_set(e, ERR_INVAL, "more than one command");
    c->argv = XNEWARRAY(char *, cmd->argc + 1);
    for (size_t i = 0; i < cmd->argc; i++)
        c->argv[i] = xstrdup(cmd->argv[i]);
    c->argv[cmd->argc] = NULL;
    c->argc = cmd->argc;
    return 0;
}

static void split_free(struct split_ctx *c)
{
    for (size_t i = 0; i < c->argc; i++)
        free(c->argv[i]);
    free(c->argv);
}

/* Run the HTML filter; 0 with its stdout in out, or -1 with *e. */
static int run_filter(const struct render_opts *o, const struct message *m, const char *html,
                      size_t len, struct split_ctx *words, struct buf *out, struct err *e)
{
    struct rc_loader l;
    struct rc_diag diag;
    struct mailcap_exec x;
    int rc = 0;

    rc_diag_init(&diag);
    rc_loader_init(&l, split_handler, words, &diag);
    l.no_source = true;
    l.no_env = true;
    rcfile_load_string(&l, "html_filter", o->html_filter, strlen(o->html_filter));
    if (diag.n > 0 || words->argc == 0) {
        rc = err_set(e, ERR_INVAL, "%s", diag.n > 0 ? diag.msgs[0] : "html_filter: no command");
        rc_diag_free(&diag);
        return rc;
    }
    rc_diag_free(&diag);
    memset(&x, 0, sizeof x);
    x.input = html;
    x.input_len = len;
    x.output = out;
    x.quiet = true;
    x.timeout_ms = o->filter_timeout_ms ? o->filter_timeout_ms : RENDER_FILTER_TIMEOUT_MS;
    buf_init(out, m->limits.max_decoded);
    if (mailcap_exec((const char *const *)words->argv, &x, e) < 0)
        return -1;
    if (x.status != 0)
        return err_set(e, ERR_IO, "%s exited with status %d", words->argv[0], x.status);
    return 0;
}

static int html_part(struct rd *r, const struct message *m, const char *html, size_t len)
{
    struct split_ctx words = {NULL, 0, 0};
    struct buf text = BUF_INIT;
    struct err e;
    int rc;

    err_clear(&e);
    if (r->o->html_filter && *r->o->html_filter) {
        if (run_filter(r->o, m, html, len, &words, &text, &e) == 0) {
            rc = add_info(r, "[-- text/html filtered through %s --]", words.argv[0]);
            if (rc == 0)
                rc = body_text(r, buf_cstr(&text), text.len);
            buf_free(&text);
            split_free(&words);
            return rc;
        }
        buf_free(&text);
        split_free(&words);
        if (add_info(r, "[-- %s; text/html shown by the built-in converter --]", e.text) < 0)
            return -1;
    } else if (add_info(r, "[-- text/html converted to plain text --]") < 0) {
        return -1;
    }
    buf_init(&text, m->limits.max_decoded);
    if (html_to_text(html, len, &text) < 0 &&
        add_info(r, "[-- converted text cut at %zu bytes --]", m->limits.max_decoded) < 0) {
        buf_free(&text);
        return -1;
    }
    rc = body_text(r, buf_cstr(&text), text.len);
    buf_free(&text);
    return rc;
}

static int text_part(struct rd *r, const struct message *m, const struct msg_part *p, bool html)
{
    struct buf text = BUF_INIT;
    struct err e;
    unsigned flags = 0;
    bool broken = false;
    int rc = 0;

    err_clear(&e);
    if (message_part_text(m, p, &text, &flags, &broken, &e) < 0)
        rc = add_info(r, "[-- %s; shown up to there --]", e.text);
    if (rc == 0 && (flags & CHARSET_FALLBACK)) {
        if (p->charset)
            rc = add_info(r, "[-- unknown charset %s, shown as Windows-1252 --]", p->charset);
        else
            rc = add_info(r, "[-- 8-bit text without a charset, shown as Windows-1252 --]");
    }
    if (rc == 0 && (flags & CHARSET_REPLACED))
        rc = add_info(r, "[-- invalid characters replaced by U+FFFD --]");
    if (rc == 0 && broken)
        rc = add_info(r, "[-- damaged %s encoding, shown as far as it decodes --]",
                      p->encoding == MSG_ENC_BASE64 ? "base64" : "quoted-printable");
    if (rc == 0) {
        const char *fmt = rfc2231_get(&p->params, "format");
        const char *delsp = rfc2231_get(&p->params, "delsp");

        if (html)
            rc = html_part(r, m, buf_cstr(&text), text.len);
        else if (r->o->reflow && fmt && strcasecmp(fmt, "flowed") == 0)
            rc = flowed_text(r, buf_cstr(&text), text.len, delsp && strcasecmp(delsp, "yes") == 0);
        else
            rc = body_text(r, buf_cstr(&text), text.len);
    }
    buf_free(&text);
    return rc;
}

/* Inside a message/... part that is not the root: not a leaf of its own. */
static bool inside_message(const struct message *m, const struct msg_part *p)
{
    for (const struct msg_part *a = p->parent; a; a = a->parent)
        if (a != m->root && part_is(a, "message", NULL))
            return true;
    return false;
}

static int parts(struct rd *r, const struct message *m)
{
    bool html = false;
    const struct msg_part *best = message_best_text(m, &html);
    size_t number = 0;

    for (size_t i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = m->parts[i];
        int rc;

        if (part_is(p, "multipart", NULL) || inside_message(m, p))
            continue;
        if (p == m->root && part_is(p, "message", NULL) && p->n_children > 0)
            continue;
        number++;
        rc = p == best ? text_part(r, m, p, html) : attachment_line(r, p, number);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int render_message(const struct message *m, const struct render_opts *opts,
                   struct render_out *out, struct err *e)
{
    struct rd r;
    int rc;

    if (!m || !opts)
        return err_set(e, ERR_INVAL, "render: no message");
    render_out_reset(out);
    rd_init(&r, opts, out);
    rc = opts->all_headers ? raw_headers(&r, m) : weeded_headers(&r, m);
    if (rc == 0)
        rc = add_simple(&r, RENDER_BODY, "");
    if (rc == 0 && m->root)
        rc = parts(&r, m);
    if (rc < 0)
        add_truncated_note(&r);
    rd_free(&r);
    return 0;
}

/* ---- search -------------------------------------------------------------- */

static bool has_upper(const char *p, bool regex)
{
    size_t n = strlen(p);

    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k;

        if (regex && p[i] == '\\') {
            i += i + 1 < n ? 2 : 1;
            continue;
        }
        k = sanitize_utf8_next(p + i, n - i, &cp);
        if (k < 0) {
            i += (size_t)-k;
            continue;
        }
        if ((cp >= 'A' && cp <= 'Z') || (cp >= 0x80 && iswupper((wint_t)cp)))
            return true;
        i += (size_t)k;
    }
    return false;
}

struct searcher {
    const struct render_out *out;
    struct render_hits *hits;
    size_t first, last;   /* the logical line's pieces [first, last] */
    size_t cursor;        /* piece the last match started in */
    size_t cap;           /* allocated hits */
};

/* Record the match [ms, me) (arena offsets) once per piece it covers. */
static bool record(struct searcher *s, size_t ms, size_t me)
{
    const struct render_line *lines = s->out->lines;

    while (s->cursor < s->last && lines[s->cursor].off + lines[s->cursor].len <= ms)
        s->cursor++;
    for (size_t k = s->cursor; k <= s->last; k++) {
        size_t ls = lines[k].off, le = ls + lines[k].len;
        size_t a = ms > ls ? ms : ls, b = me < le ? me : le;

        if (ls >= me)
            break;
        if (a >= b)
            continue;
        if (s->hits->n >= RENDER_HITS_MAX) {
            s->hits->truncated = true;
            return false;
        }
        if (s->hits->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 16;
            s->hits->v = xreallocarray(s->hits->v, s->cap, sizeof *s->hits->v);
        }
        s->hits->v[s->hits->n++] = (struct render_hit){k, (uint32_t)(a - ls), (uint32_t)(b - a)};
    }
    return true;
}

static bool fold_eq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static bool search_substring(struct searcher *s, const char *text, size_t a, size_t b,
                             const char *pat, size_t plen, bool icase)
{
    size_t pos = a;

    while (pos + plen <= b) {
        size_t at;
        if (icase) {
            while (pos + plen <= b && !fold_eq(text + pos, pat, plen))
                pos++;
            if (pos + plen > b)
                break;
            at = pos;
        } else {
            const char *hit = memmem(text + pos, b - pos, pat, plen);
            if (!hit)
                break;
            at = (size_t)(hit - text);
        }
        if (!record(s, at, at + plen))
            return false;
        pos = at + plen;
    }
    return true;
}

static bool search_regex(struct searcher *s, const char *text, size_t a, size_t b,
                         const regex_t *re)
{
    size_t pos = a;
    int eflags = 0;

    while (pos <= b) {
        regmatch_t mt[1];
        size_t ms, me;

        mt[0].rm_so = (regoff_t)(pos - a);
        mt[0].rm_eo = (regoff_t)(b - a);
        if (regexec(re, text + a, 1, mt, eflags | REG_STARTEND) != 0)
            break;
        ms = a + (size_t)mt[0].rm_so;
        me = a + (size_t)mt[0].rm_eo;
        if (me > ms && !record(s, ms, me))
            return false;
        if (me > ms) {
            pos = me;
        } else {
            uint32_t cp;
            int k = ms < b ? sanitize_utf8_next(text + ms, b - ms, &cp) : 1;
            pos = ms + (size_t)(k > 0 ? k : -k);
        }
        eflags = REG_NOTBOL;
    }
    return true;
}

int render_search(const struct render_out *out, const char *pattern, unsigned flags,
                  struct render_hits *hits, struct err *e)
{
    bool regex = flags & RENDER_SEARCH_REGEX;
    bool icase = (flags & RENDER_SEARCH_ICASE) ||
                 ((flags & RENDER_SEARCH_SMART) && pattern && !has_upper(pattern, regex));
    const char *text = out->text.data ? out->text.data : "";
    struct searcher s = {out, hits, 0, 0, 0, 0};
    regex_t re;

    memset(hits, 0, sizeof *hits);
    if (!pattern || !*pattern)
        return err_set(e, ERR_INVAL, "empty search pattern");
    if (regex) {
        struct err why;

        if (regex_compile(&re, pattern, REG_EXTENDED | (icase ? REG_ICASE : 0), &why) != 0)
            return err_set(e, ERR_INVAL, "bad regular expression: %s", why.text);
    }
    for (size_t i = 0; i < out->n_lines;) {
        size_t j = i + 1;
        bool more;

        while (j < out->n_lines && (out->lines[j].flags & RENDER_LINE_CONT))
            j++;
        s.first = s.cursor = i;
        s.last = j - 1;
        if (regex)
            more = search_regex(&s, text, out->lines[i].off,
                                out->lines[j - 1].off + out->lines[j - 1].len, &re);
        else
            more = search_substring(&s, text, out->lines[i].off,
                                    out->lines[j - 1].off + out->lines[j - 1].len, pattern,
                                    strlen(pattern), icase);
        if (!more)
            break;
        i = j;
    }
    if (regex)
        regfree(&re);
    return 0;
}

void render_hits_free(struct render_hits *hits)
{
    free(hits->v);
    memset(hits, 0, sizeof *hits);
}

long render_hit_next(const struct render_hits *hits, size_t line, bool forward)
{
    size_t lo = 0, hi = hits->n;

    if (hits->n == 0)
        return -1;
    if (forward) {
        /* first hit with hit.line > line */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (hits->v[mid].line <= line)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo < hits->n ? (long)lo : 0;
    }
    /* last hit with hit.line < line */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hits->v[mid].line < line)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 ? (long)(lo - 1) : (long)hits->n - 1;
}
