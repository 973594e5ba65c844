/*
 * msgdump: reads message file paths, one per line, from stdin and prints one
 * JSON object per file describing how lib/message parsed it.  Used by corpus
 * tests.  Exit status: 0 all files read, 1 some file unreadable, 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "charset.h"
#include "message.h"

#define MSGDUMP_MAX_FILE ((size_t)1 << 30)

static void json_str(struct buf *o, const char *s, size_t n)
{
    struct buf fixed = BUF_INIT;

    if (charset_fix_utf8(s, n, &fixed, NULL) < 0)
        die("msgdump: buffer refused an append");
    s = buf_cstr(&fixed);
    n = fixed.len;
    if (buf_putc(o, '"') < 0)
        die("msgdump: buffer refused an append");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if (c == '"' || c == '\\')
            rc = buf_printf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            rc = buf_printf(o, "\\u%04x", c);
        else
            rc = buf_putc(o, (char)c);
        if (rc < 0)
            die("msgdump: buffer refused an append");
    }
    if (buf_putc(o, '"') < 0)
        die("msgdump: buffer refused an append");
    buf_free(&fixed);
}

static void json_raw(struct buf *o, const char *s)
{
    if (buf_puts(o, s) < 0)
        die("msgdump: buffer refused an append");
}

static void json_opt(struct buf *o, const char *s)
{
    if (s)
        json_str(o, s, strlen(s));
    else
        json_raw(o, "null");
}

static void json_key(struct buf *o, const char *k, bool first)
{
    if (!first)
        json_raw(o, ", ");
    json_str(o, k, strlen(k));
    json_raw(o, ": ");
}

static void json_addrs(struct buf *o, const char *key, const struct msg_addr_list *l)
{
    json_key(o, key, false);
    json_raw(o, "[");
    for (size_t i = 0; i < l->n; i++) {
        json_raw(o, i ? ", {" : "{");
        json_key(o, "name", true);
        json_opt(o, l->v[i].name);
        json_key(o, "addr", false);
        json_opt(o, l->v[i].addr);
        json_raw(o, "}");
    }
    json_raw(o, "]");
}

static void json_part(struct buf *o, const struct msg_part *p, bool first)
{
    char *t = message_part_mime_type(p);
    char num[32];

    json_raw(o, first ? "{" : ", {");
    json_key(o, "type", true);
    json_opt(o, t);
    json_key(o, "charset", false);
    json_opt(o, p->charset);
    json_key(o, "encoding", false);
    json_opt(o, p->encoding_text);
    json_key(o, "disposition", false);
    json_opt(o, p->disposition_text);
    json_key(o, "filename", false);
    json_opt(o, p->filename);
    json_key(o, "depth", false);
    snprintf(num, sizeof num, "%u", p->depth);
    json_raw(o, num);
    json_key(o, "size", false);
    snprintf(num, sizeof num, "%zu", p->body_size);
    json_raw(o, num);
    json_raw(o, "}");
    free(t);
}

struct extras {
    const char *v[4];
    size_t n;
};

static void json_text(struct buf *o, struct message *m, struct extras *x)
{
    bool html = false, broken = false;
    const struct msg_part *p = message_best_text(m, &html);
    struct buf text = BUF_INIT;
    unsigned flags = 0;
    struct err e;

    json_key(o, "text", false);
    if (!p) {
        json_raw(o, "null, \"text_type\": null");
        return;
    }
    if (message_part_text(m, p, &text, &flags, &broken, &e) < 0)
        x->v[x->n++] = "text part truncated at the decoded size limit";
    if (broken)
        x->v[x->n++] = "text part has a broken transfer encoding";
    if (flags & CHARSET_FALLBACK)
        x->v[x->n++] = "text part charset unknown or wrong, decoded as windows-1252";
    if (flags & CHARSET_REPLACED)
        x->v[x->n++] = "text part has invalid bytes, replaced by U+FFFD";
    json_str(o, buf_cstr(&text), text.len);
    json_key(o, "text_type", false);
    json_opt(o, html ? "text/html" : "text/plain");
    buf_free(&text);
}

static void json_message(struct buf *o, const char *path, struct message *m, struct extras *x)
{
    char num[32];

    json_raw(o, "{");
    json_key(o, "path", true);
    json_opt(o, path);
    json_key(o, "subject", false);
    json_opt(o, m->env.subject);
    json_addrs(o, "from", &m->env.from);
    json_addrs(o, "to", &m->env.to);
    json_addrs(o, "cc", &m->env.cc);
    json_key(o, "message_id", false);
    json_opt(o, m->env.message_id);
    json_key(o, "in_reply_to", false);
    json_opt(o, m->env.in_reply_to);
    json_key(o, "references", false);
    json_raw(o, "[");
    for (size_t i = 0; i < m->env.n_references; i++) {
        json_raw(o, i ? ", " : "");
        json_opt(o, m->env.references[i]);
    }
    json_raw(o, "]");
    json_key(o, "date", false);
    snprintf(num, sizeof num, "%lld", (long long)m->env.date);
    json_raw(o, m->env.date_valid ? num : "null");
    json_key(o, "list_id", false);
    json_opt(o, m->env.list_id);
    json_key(o, "parts", false);
    json_raw(o, "[");
    for (size_t i = 0; i < m->n_parts; i++)
        json_part(o, m->parts[i], i == 0);
    json_raw(o, "]");
    json_text(o, m, x);
}

static void json_warnings(struct buf *o, struct message *m, const struct extras *x)
{
    json_key(o, "warnings", false);
    json_raw(o, "[");
    for (size_t i = 0; i < m->n_warnings; i++) {
        json_raw(o, i ? ", " : "");
        json_opt(o, m->warnings[i]);
    }
    for (size_t i = 0; i < x->n; i++) {
        json_raw(o, m->n_warnings + i ? ", " : "");
        json_opt(o, x->v[i]);
    }
    json_raw(o, "]}\n");
}

static int read_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "rb");
    char tmp[65536];
    size_t n;
    int rc = 0;

    if (!f)
        return -1;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        if (buf_append(b, tmp, n) < 0) {
            rc = -1;
            break;
        }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

static int dump_one(const char *path)
{
    struct buf raw, o = BUF_INIT;
    struct message *m = NULL;
    struct err e;
    int rc = 0;

    buf_init(&raw, MSGDUMP_MAX_FILE);
    if (read_file(path, &raw) < 0) {
        fprintf(stderr, "msgdump: %s: %s\n", path, errno ? strerror(errno) : "too large");
        buf_free(&raw);
        return -1;
    }
    if (message_parse(buf_cstr(&raw), raw.len, NULL, &m, &e) < 0) {
        fprintf(stderr, "msgdump: %s: %s\n", path, e.text);
        rc = -1;
    } else {
        struct extras x = {{NULL}, 0};
        json_message(&o, path, m, &x);
        json_warnings(&o, m, &x);
        fwrite(o.data, 1, o.len, stdout);
    }
    message_free(m);
    buf_free(&o);
    buf_free(&raw);
    return rc;
}

int main(int argc, char **argv)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;

    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: msgdump < list-of-paths\n");
        return 2;
    }
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            continue;
        errno = 0;
        if (dump_one(line) < 0)
            status = 1;
    }
    free(line);
    return status;
}
