/* draft: the message being written; replies, forwards and the editor template. */
#include "draft.h"

#include <ctype.h>
#include <fcntl.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "html.h"
#include "xalloc.h"
#include "regex_guard.h"

#define REFERENCES_KEPT 40
#define SIGNATURE_MAX (64u * 1024)

void draft_init(struct draft *d)
{
    memset(d, 0, sizeof *d);
}

void draft_free(struct draft *d)
{
    for (size_t i = 0; i < d->n_h; i++) {
        free(d->h[i].name);
        free(d->h[i].value);
    }
    free(d->h);
    free(d->in_reply_to);
    for (size_t i = 0; i < d->n_references; i++)
        free(d->references[i]);
    free(d->references);
    free(d->body);
    draft_init(d);
}

const char *draft_get(const struct draft *d, const char *name)
{
    for (size_t i = 0; i < d->n_h; i++)
        if (strcasecmp(d->h[i].name, name) == 0)
            return d->h[i].value;
    return NULL;
}

void draft_set(struct draft *d, const char *name, const char *value)
{
    for (size_t i = 0; i < d->n_h; i++) {
        if (strcasecmp(d->h[i].name, name) != 0)
            continue;
        if (value) {
            free(d->h[i].value);
            d->h[i].value = xstrdup(value);
            return;
        }
        free(d->h[i].name);
        free(d->h[i].value);
        memmove(&d->h[i], &d->h[i + 1], (d->n_h - i - 1) * sizeof *d->h);
        d->n_h--;
        return;
    }
    if (!value)
        return;
    d->h = xreallocarray(d->h, d->n_h + 1, sizeof *d->h);
    d->h[d->n_h].name = xstrdup(name);
    d->h[d->n_h].value = xstrdup(value);
    d->n_h++;
}

/* ---- addresses ------------------------------------------------------------ */

char *draft_format_addr(const char *name, const char *addr)
{
    struct buf b = BUF_INIT;
    bool quote = false;
    int rc = 0;

    if (!name || !*name)
        return xstrdup(addr ? addr : "");
    for (const char *p = name; *p; p++)
        if (strchr("()<>[]:;@\\,.\"", *p))
            quote = true;
    if (quote) {
        rc |= buf_putc(&b, '"');
        for (const char *p = name; *p && rc == 0; p++) {
            if (*p == '"' || *p == '\\')
                rc |= buf_putc(&b, '\\');
            rc |= buf_putc(&b, *p);
        }
        rc |= buf_putc(&b, '"');
    } else {
        rc |= buf_puts(&b, name);
    }
    rc |= buf_printf(&b, " <%s>", addr ? addr : "");
    if (rc < 0)
        die("draft: unbounded buffer refused data");
    return buf_steal(&b, NULL);
}

/* The user's own address from $from. */
static const char *my_address(const struct config *cfg)
{
    const char *f = cfg->opt.from;
    return f && *f ? f : NULL;
}

/* Whether addr is the user's: $from or one of the $alternates patterns. */
static bool is_me(const struct config *cfg, const char *addr)
{
    const char *mine = my_address(cfg);

    if (!addr || !*addr)
        return false;
    if (mine) {
        const char *lt = strchr(mine, '<'), *gt = lt ? strchr(lt, '>') : NULL;
        size_t n = lt && gt ? (size_t)(gt - lt - 1) : strlen(mine);
        const char *start = lt && gt ? lt + 1 : mine;
        if (strlen(addr) == n && strncasecmp(addr, start, n) == 0)
            return true;
    }
    for (size_t i = 0; i < cfg->alternates.n; i++) {
        regex_t re;
        bool hit;
        if (regex_compile(&re, cfg->alternates.v[i], REG_EXTENDED | REG_ICASE | REG_NOSUB,
                          NULL) != 0)
            continue;
        hit = regexec(&re, addr, 0, NULL, 0) == 0;
        regfree(&re);
        if (hit)
            return true;
    }
    return false;
}

struct addr_acc {
    struct buf text;
    char **seen;
    size_t n_seen;
};

static void acc_add(const struct config *cfg, struct addr_acc *acc, const struct msg_addr *a,
                    bool skip_me)
{
    if (!a->addr || !*a->addr)
        return;
    if (skip_me && is_me(cfg, a->addr))
        return;
    for (size_t i = 0; i < acc->n_seen; i++)
        if (strcasecmp(acc->seen[i], a->addr) == 0)
            return;
    acc->seen = xreallocarray(acc->seen, acc->n_seen + 1, sizeof *acc->seen);
    acc->seen[acc->n_seen++] = xstrdup(a->addr);
    char *one = draft_format_addr(a->name, a->addr);
    if ((acc->text.len && buf_puts(&acc->text, ", ") < 0) || buf_puts(&acc->text, one) < 0)
        die("draft: unbounded buffer refused data");
    free(one);
}

static void acc_list(const struct config *cfg, struct addr_acc *acc,
                     const struct msg_addr_list *l, bool skip_me)
{
    for (size_t i = 0; i < l->n; i++)
        acc_add(cfg, acc, &l->v[i], skip_me);
}

static char *acc_take(struct addr_acc *acc)
{
    for (size_t i = 0; i < acc->n_seen; i++)
        free(acc->seen[i]);
    free(acc->seen);
    acc->seen = NULL;
    acc->n_seen = 0;
    return buf_steal(&acc->text, NULL);
}

/* ---- the pieces of a new message ---------------------------------------- */

static char *from_header(const struct config *cfg)
{
    const char *from = my_address(cfg);

    if (!from)
        return xstrdup("");
    if (strchr(from, '<') || !cfg->opt.realname || !*cfg->opt.realname)
        return xstrdup(from);
    return draft_format_addr(cfg->opt.realname, from);
}

static char *read_signature(const struct config *cfg)
{
    const char *path = cfg->opt.signature;
    char *full, buf[SIGNATURE_MAX];
    ssize_t n;
    int fd;

    if (!path || !*path)
        return NULL;
    if (path[0] == '~' && path[1] == '/') {
        const char *home = getenv("HOME");
        full = xasprintf("%s%s", home ? home : "", path + 1);
    } else {
        full = xstrdup(path);
    }
    fd = open(full, O_RDONLY | O_CLOEXEC);
    free(full);
    if (fd < 0)
        return NULL;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return xstrdup(buf);
}

/* Returns whether there was a signature to append. */
static bool append_signature(const struct config *cfg, struct buf *body)
{
    char *sig = read_signature(cfg);
    int rc = 0;

    if (!sig)
        return false;
    if (body->len && body->data[body->len - 1] != '\n')
        rc |= buf_putc(body, '\n');
    if (cfg->opt.sig_dashes)
        rc |= buf_puts(body, "\n-- \n");
    else
        rc |= buf_putc(body, '\n');
    rc |= buf_puts(body, sig);
    if (rc < 0)
        die("draft: unbounded buffer refused data");
    free(sig);
    return true;
}

static void set_standard_headers(const struct config *cfg, struct draft *d, const char *to,
                                 const char *cc, const char *subject)
{
    char *from = from_header(cfg);

    draft_set(d, "From", from);
    draft_set(d, "To", to ? to : "");
    draft_set(d, "Cc", cc ? cc : "");
    draft_set(d, "Bcc", "");
    draft_set(d, "Subject", subject ? subject : "");
    draft_set(d, "Reply-To", "");
    free(from);
}

void draft_new(const struct config *cfg, struct draft *d)
{
    struct buf body = BUF_INIT;

    draft_free(d);
    set_standard_headers(cfg, d, NULL, NULL, NULL);
    if (buf_putc(&body, '\n') < 0)
        die("draft: unbounded buffer refused data");
    append_signature(cfg, &body);
    d->body = buf_steal(&body, NULL);
}

/* ---- replies ------------------------------------------------------------------ */

static bool is_reply_subject(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (strncasecmp(s, "re", 2) != 0)
        return false;
    s += 2;
    if (*s == '[') {
        while (*s && *s != ']')
            s++;
        if (*s == ']')
            s++;
    }
    return *s == ':';
}

struct attr_ctx {
    const struct config *cfg;
    const struct message *m;
};

static int attr_cb(void *vctx, char op, const char *arg, size_t arglen, bool *truth,
                   struct buf *out)
{
    const struct attr_ctx *c = vctx;
    const struct msg_envelope *env = &c->m->env;
    const struct msg_addr *from = env->from.n ? &env->from.v[0] : NULL;
    char date[128] = "";
    struct tm tm;
    const char *fmt = NULL;
    char f[128];

    if (truth) {
        *truth = false;
        return 0;
    }
    switch (op) {
    case 'n':
        return buf_puts(out, from ? (from->name && *from->name ? from->name : from->addr) : "")
               < 0 ? -1 : 0;
    case 'a':
        return buf_puts(out, from && from->addr ? from->addr : "") < 0 ? -1 : 0;
    case 's':
        return buf_puts(out, env->subject ? env->subject : "") < 0 ? -1 : 0;
    case 'd':
        fmt = c->cfg->opt.date_format;
        if (fmt && *fmt == '!')
            fmt++;
        break;
    case '{':
        if (arglen >= sizeof f)
            arglen = sizeof f - 1;
        memcpy(f, arg, arglen);
        f[arglen] = '\0';
        fmt = f;
        break;
    default:
        return -1;
    }
    if (!env->date_valid) {
        return buf_puts(out, env->date_text ? env->date_text : "") < 0 ? -1 : 0;
    }
    time_t t = env->date;
    if (localtime_r(&t, &tm))
        strftime(date, sizeof date, fmt ? fmt : "%a, %d %b %Y %H:%M:%S", &tm);
    return buf_puts(out, date) < 0 ? -1 : 0;
}

/* The best text part of m as UTF-8 (HTML turned into text). */
static void original_text(const struct message *m, struct buf *out)
{
    bool is_html = false;
    const struct msg_part *p = message_best_text(m, &is_html);
    struct err e;

    if (!p)
        return;
    if (!is_html) {
        (void)message_part_text(m, p, out, NULL, NULL, &e);
        return;
    }
    struct buf html = BUF_INIT;
    if (message_part_text(m, p, &html, NULL, NULL, &e) == 0)
        (void)html_to_text(html.data ? html.data : "", html.len, out);
    buf_free(&html);
}

static void quote_into(const char *indent, const char *text, size_t len, struct buf *out)
{
    size_t i = 0;
    size_t ilen = strlen(indent), trimmed = ilen;
    int rc = 0;

    while (trimmed > 0 && (indent[trimmed - 1] == ' ' || indent[trimmed - 1] == '\t'))
        trimmed--;
    /* drop a trailing newline so the quote does not end with an empty line */
    while (len > 0 && text[len - 1] == '\n')
        len--;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        /* an empty line gets the indent without its trailing blanks */
        rc |= buf_append(out, indent, n ? ilen : trimmed);
        rc |= buf_append(out, text + i, n);
        rc |= buf_putc(out, '\n');
        i += n + 1;
    }
    if (rc < 0)
        die("draft: unbounded buffer refused data");
}

static void take_references(struct draft *d, const struct msg_envelope *env)
{
    size_t total = env->n_references + (env->message_id ? 1 : 0);
    size_t skip = total > REFERENCES_KEPT ? total - REFERENCES_KEPT : 0;

    d->references = xcalloc(total ? total : 1, sizeof *d->references);
    d->n_references = 0;
    for (size_t i = 0; i < env->n_references; i++) {
        if (i < skip)
            continue;
        d->references[d->n_references++] = xstrdup(env->references[i]);
    }
    if (env->message_id) {
        d->references[d->n_references++] = xstrdup(env->message_id);
        d->in_reply_to = xstrdup(env->message_id);
    }
}

/* "mailto:list@example.org?subject=x" -> "list@example.org" */
static char *list_post_address(const char *lp)
{
    if (!lp || strncasecmp(lp, "mailto:", 7) != 0)
        return NULL;
    lp += 7;
    size_t n = strcspn(lp, "?>");
    return n ? xstrndup(lp, n) : NULL;
}

int draft_reply(const struct config *cfg, const struct message *orig, enum draft_reply kind,
                struct draft *d, struct err *e)
{
    const struct msg_envelope *env = &orig->env;
    struct addr_acc to = {BUF_INIT, NULL, 0}, cc = {BUF_INIT, NULL, 0};
    char *to_text, *cc_text = NULL, *subject;
    struct buf body = BUF_INIT;

    if (kind == DRAFT_LIST_REPLY) {
        char *addr = list_post_address(env->list_post);
        if (!addr)
            return err_set(e, ERR_NOTFOUND, "the message has no List-Post address");
        struct msg_addr a = {NULL, addr};
        acc_add(cfg, &to, &a, false);
        free(addr);
    } else {
        const struct msg_addr_list *primary = env->reply_to.n ? &env->reply_to : &env->from;
        bool from_me = env->from.n && is_me(cfg, env->from.v[0].addr);
        if (from_me && !env->reply_to.n)
            primary = &env->to;   /* replying to one's own message goes to its recipients */
        acc_list(cfg, &to, primary, false);
        if (kind == DRAFT_GROUP_REPLY) {
            /* Cc: the original To and Cc, minus me and minus what is in To */
            for (size_t i = 0; i < to.n_seen; i++) {
                cc.seen = xreallocarray(cc.seen, cc.n_seen + 1, sizeof *cc.seen);
                cc.seen[cc.n_seen++] = xstrdup(to.seen[i]);
            }
            if (!from_me)
                acc_list(cfg, &cc, &env->to, true);
            acc_list(cfg, &cc, &env->cc, true);
        }
    }
    to_text = acc_take(&to);
    if (kind == DRAFT_GROUP_REPLY)
        cc_text = acc_take(&cc);
    else
        buf_free(&cc.text);

    const char *osub = env->subject ? env->subject : "";
    subject = is_reply_subject(osub) ? xstrdup(osub) : xasprintf("Re: %s", osub);

    draft_free(d);
    set_standard_headers(cfg, d, to_text, cc_text, subject);
    free(to_text);
    free(cc_text);
    free(subject);
    take_references(d, env);

    /* $reverse_name: answer from the address of mine the mail was sent to */
    if (cfg->opt.reverse_name) {
        const struct msg_addr_list *mine[] = {&env->to, &env->cc};
        const struct msg_addr *hit = NULL;
        for (size_t l = 0; l < 2 && !hit; l++)
            for (size_t i = 0; i < mine[l]->n && !hit; i++)
                if (is_me(cfg, mine[l]->v[i].addr))
                    hit = &mine[l]->v[i];
        if (hit) {
            const char *name = cfg->opt.realname && *cfg->opt.realname ? cfg->opt.realname
                                                                       : hit->name;
            char *f = draft_format_addr(name, hit->addr);
            draft_set(d, "From", f);
            free(f);
        }
    }

    /* attribution, quoted text, signature ($sig_on_top: the room to write
     * and the signature come first) */
    if (cfg->opt.sig_on_top && append_signature(cfg, &body) && buf_putc(&body, '\n') < 0)
        die("draft: unbounded buffer refused data");
    struct attr_ctx ac = {cfg, orig};
    if (cfg->opt.attribution && *cfg->opt.attribution) {
        if (format_expand(cfg->opt.attribution, attr_cb, &ac, 0, &body) < 0 ||
            buf_putc(&body, '\n') < 0)
            die("draft: unbounded buffer refused data");
    }
    struct buf text = BUF_INIT;
    original_text(orig, &text);
    quote_into(cfg->opt.indent_string ? cfg->opt.indent_string : "> ",
               text.data ? text.data : "", text.len, &body);
    buf_free(&text);
    /* the signature brings its own blank line; without one, leave one to
     * write in */
    if (!cfg->opt.sig_on_top && !append_signature(cfg, &body) && buf_putc(&body, '\n') < 0)
        die("draft: unbounded buffer refused data");
    d->body = buf_steal(&body, NULL);
    return 0;
}

void draft_drop_quote(const struct config *cfg, struct draft *d)
{
    struct buf body = BUF_INIT;

    if (buf_putc(&body, '\n') < 0)
        die("draft: unbounded buffer refused data");
    append_signature(cfg, &body);
    free(d->body);
    d->body = buf_steal(&body, NULL);
}

int draft_forward(const struct config *cfg, const struct message *orig, struct draft *d,
                  struct err *e)
{
    const struct msg_envelope *env = &orig->env;
    struct attr_ctx ac = {cfg, orig};
    struct buf subject = BUF_INIT, body = BUF_INIT, text = BUF_INIT;
    int rc = 0;
    (void)e;

    if (format_expand(cfg->opt.forward_format ? cfg->opt.forward_format : "[%a: %s]", attr_cb,
                      &ac, 0, &subject) < 0)
        die("draft: unbounded buffer refused data");
    draft_free(d);
    set_standard_headers(cfg, d, NULL, NULL, buf_cstr(&subject));
    buf_free(&subject);

    rc |= buf_puts(&body, "\n----- Forwarded message -----\n");
    if (env->date_text)
        rc |= buf_printf(&body, "Date: %s\n", env->date_text);
    if (env->from.n) {
        char *f = draft_format_addr(env->from.v[0].name, env->from.v[0].addr);
        rc |= buf_printf(&body, "From: %s\n", f);
        free(f);
    }
    if (env->to.n) {
        struct addr_acc to = {BUF_INIT, NULL, 0};
        acc_list(cfg, &to, &env->to, false);
        char *t = acc_take(&to);
        rc |= buf_printf(&body, "To: %s\n", t);
        free(t);
    }
    rc |= buf_printf(&body, "Subject: %s\n\n", env->subject ? env->subject : "");
    if (rc < 0)
        die("draft: unbounded buffer refused data");
    original_text(orig, &text);
    if (text.len && buf_append(&body, text.data, text.len) < 0)
        die("draft: unbounded buffer refused data");
    buf_free(&text);
    if ((body.len && body.data[body.len - 1] != '\n' && buf_putc(&body, '\n') < 0) ||
        buf_puts(&body, "----- End forwarded message -----\n") < 0)
        die("draft: unbounded buffer refused data");
    append_signature(cfg, &body);
    d->body = buf_steal(&body, NULL);
    return 0;
}

/* ---- the editor template ------------------------------------------------------- */

int draft_write_template(const struct draft *d, struct buf *out)
{
    for (size_t i = 0; i < d->n_h; i++)
        if (buf_printf(out, "%s: %s\n", d->h[i].name, d->h[i].value) < 0)
            return -1;
    if (buf_putc(out, '\n') < 0)
        return -1;
    if (d->body && buf_puts(out, d->body) < 0)
        return -1;
    return 0;
}

static bool valid_field_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 32 || c >= 127 || c == ':')
            return false;
    }
    return true;
}

int draft_read_template(struct draft *d, const char *text, size_t len, struct err *e)
{
    struct draft nd;
    size_t i = 0;
    unsigned line = 0;
    struct buf value = BUF_INIT;
    char *name = NULL;

    if (len > DRAFT_TEMPLATE_MAX)
        return err_set(e, ERR_LIMIT, "the message is larger than %u bytes", DRAFT_TEMPLATE_MAX);
    if (memchr(text, '\0', len))
        return err_set(e, ERR_PARSE, "the message contains a NUL byte");
    draft_init(&nd);
    for (;;) {
        const char *nl = i < len ? memchr(text + i, '\n', len - i) : NULL;
        size_t rn = nl ? (size_t)(nl - (text + i)) : len - i;
        size_t next = nl ? i + rn + 1 : len;
        size_t n = rn;
        const char *l = text + i;
        line++;
        if (n && l[n - 1] == '\r')
            n--;
        bool end = i >= len || n == 0;
        bool cont = !end && (l[0] == ' ' || l[0] == '\t');

        if (name && !cont) {
            /* finish the previous header */
            char *v = buf_steal(&value, NULL);
            char *s = v;
            while (*s == ' ' || *s == '\t')
                s++;
            size_t vl = strlen(s);
            while (vl && (s[vl - 1] == ' ' || s[vl - 1] == '\t'))
                s[--vl] = '\0';
            if (nd.n_h >= DRAFT_HEADERS_MAX) {
                free(v);
                free(name);
                draft_free(&nd);
                return err_set(e, ERR_LIMIT, "more than %d headers", DRAFT_HEADERS_MAX);
            }
            nd.h = xreallocarray(nd.h, nd.n_h + 1, sizeof *nd.h);
            nd.h[nd.n_h].name = name;
            nd.h[nd.n_h].value = xstrdup(s);
            nd.n_h++;
            free(v);
            name = NULL;
        }
        if (end) {
            i = next;
            break;
        }
        if (cont) {
            if (!name) {
                draft_free(&nd);
                buf_free(&value);
                return err_set(e, ERR_PARSE, "line %u: a continuation line with no header above",
                               line);
            }
            size_t skip = 0;
            while (skip < n && (l[skip] == ' ' || l[skip] == '\t'))
                skip++;
            if (buf_putc(&value, ' ') < 0 || buf_append(&value, l + skip, n - skip) < 0)
                die("draft: unbounded buffer refused data");
        } else {
            const char *colon = memchr(l, ':', n);
            if (!colon || !valid_field_name(l, (size_t)(colon - l))) {
                draft_free(&nd);
                buf_free(&value);
                return err_set(e, ERR_PARSE, "line %u: not a header (\"Name: value\"); "
                               "leave a blank line before the text", line);
            }
            name = xstrndup(l, (size_t)(colon - l));
            if (buf_append(&value, colon + 1, n - (size_t)(colon + 1 - l)) < 0)
                die("draft: unbounded buffer refused data");
        }
        i = next;
    }
    buf_free(&value);
    nd.body = xstrndup(text + i, len > i ? len - i : 0);
    /* keep the threading headers */
    nd.in_reply_to = d->in_reply_to;
    nd.references = d->references;
    nd.n_references = d->n_references;
    d->in_reply_to = NULL;
    d->references = NULL;
    d->n_references = 0;
    draft_free(d);
    *d = nd;
    return 0;
}
