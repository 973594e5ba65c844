/*
 * fuzz_pattern: mua/pattern on hostile pattern text.
 *
 * The first byte picks the compile flags (PATTERN_SIMPLE) and which of two
 * fixed messages to evaluate against; the rest is the pattern.  A pattern
 * that compiles is evaluated through accessor callbacks; the result must
 * agree with pattern_match, a failing body accessor must give -1 or an
 * answer that did not need the body, and pattern_needs must admit every
 * expensive accessor that was called.  A failed compile must say where.
 */
#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "pattern.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

struct fmsg {
    const char *subject, *msgid, *list_id, *x_label, *headers, *body;
    const char *from[2][2], *to[2][2], *cc[2][2], *sender[2][2];
    const char *refs[3];
    int64_t date, received;
    uint64_t size;
    unsigned flags;
};

static const struct fmsg msgs[2] = {
    {
        "Re: [dev] patch 2/3: fix the \xc3\xa9t\xc3\xa9 parser",
        "20250115.abc@example.org", "dev.lists.example.org", "todo",
        "From: Ana <ana@example.org>\nTo: dev@lists.example.org\n"
        "Subject: Re: [dev] patch\n\tcontinued\nX-Label: todo\n",
        "Hello,\n> quoted line\nbody text with caf\xc3\xa9\n-- \nsig\n",
        {{"Ana P\xc3\xa9rez", "ana@example.org"}, {NULL, NULL}},
        {{NULL, "dev@lists.example.org"}, {"Bob", "bob@example.com"}},
        {{"Carol", "carol@example.net"}, {NULL, NULL}},
        {{NULL, NULL}, {NULL, NULL}},
        {"parent@example.org", "root@example.org", NULL},
        1736899200, 1736902800, 4321, PATTERN_F_NEW | PATTERN_F_FLAGGED,
    },
    {
        "", "", NULL, NULL, "", "",
        {{NULL, ""}, {NULL, NULL}},
        {{NULL, NULL}, {NULL, NULL}},
        {{NULL, NULL}, {NULL, NULL}},
        {{"", "x@y"}, {NULL, NULL}},
        {NULL, NULL, NULL},
        -1, 0, UINT64_MAX, PATTERN_F_READ | PATTERN_F_DELETED | PATTERN_F_TRASHED,
    },
};

struct fctx {
    const struct fmsg *m;
    bool fail_body;
    bool used_headers, used_body;
};

static const struct fmsg *get(void *ctx, uint32_t msg)
{
    if (msg != 7)
        fuzz_fail("accessor got another message number", "", 0);
    return ((struct fctx *)ctx)->m;
}

static const char *f_subject(void *ctx, uint32_t msg) { return get(ctx, msg)->subject; }
static const char *f_msgid(void *ctx, uint32_t msg) { return get(ctx, msg)->msgid; }
static const char *f_list_id(void *ctx, uint32_t msg) { return get(ctx, msg)->list_id; }
static const char *f_x_label(void *ctx, uint32_t msg) { return get(ctx, msg)->x_label; }
static int64_t f_date(void *ctx, uint32_t msg) { return get(ctx, msg)->date; }
static int64_t f_received(void *ctx, uint32_t msg) { return get(ctx, msg)->received; }
static uint64_t f_size(void *ctx, uint32_t msg) { return get(ctx, msg)->size; }
static unsigned f_flags(void *ctx, uint32_t msg) { return get(ctx, msg)->flags; }

static void f_addresses(void *ctx, uint32_t msg, enum pattern_addr which,
                        pattern_addr_cb cb, void *cbctx)
{
    const struct fmsg *m = get(ctx, msg);
    const char *const (*list)[2];

    switch (which) {
    case PATTERN_ADDR_FROM: list = m->from; break;
    case PATTERN_ADDR_TO: list = m->to; break;
    case PATTERN_ADDR_CC: list = m->cc; break;
    case PATTERN_ADDR_SENDER: list = m->sender; break;
    default: fuzz_fail("unknown address list", "", 0); return;
    }
    for (size_t i = 0; i < 2 && list[i][1]; i++)
        if (cb(cbctx, list[i][0], list[i][1]))
            return;
}

static void f_references(void *ctx, uint32_t msg, pattern_str_cb cb, void *cbctx)
{
    const struct fmsg *m = get(ctx, msg);

    for (size_t i = 0; m->refs[i]; i++)
        if (cb(cbctx, m->refs[i]))
            return;
}

static int f_headers(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    ((struct fctx *)ctx)->used_headers = true;
    if (buf_puts(out, get(ctx, msg)->headers) < 0)
        return err_set(e, ERR_LIMIT, "headers");
    return 0;
}

static int f_body(void *ctx, uint32_t msg, struct buf *out, struct err *e)
{
    struct fctx *c = ctx;

    c->used_body = true;
    if (c->fail_body)
        return err_set(e, ERR_IO, "body unavailable");
    if (buf_puts(out, get(ctx, msg)->body) < 0)
        return err_set(e, ERR_LIMIT, "body");
    return 0;
}

static bool f_is_me(void *ctx, const char *addr)
{
    (void)ctx;
    return strcmp(addr, "bob@example.com") == 0;
}

static bool f_collapsed(void *ctx, uint32_t msg)
{
    return get(ctx, msg)->size > 1000;
}

static const struct pattern_msg_ops ops = {
    .subject = f_subject,
    .addresses = f_addresses,
    .date = f_date,
    .received = f_received,
    .size = f_size,
    .flags = f_flags,
    .message_id = f_msgid,
    .references = f_references,
    .list_id = f_list_id,
    .x_label = f_x_label,
    .headers = f_headers,
    .body = f_body,
    .is_me = f_is_me,
    .collapsed = f_collapsed,
};

/* Accessors that are all absent. */
static const struct pattern_msg_ops no_ops = {0};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("TZ", "UTC", 1);
    if (!setlocale(LC_CTYPE, "C.UTF-8"))
        (void)setlocale(LC_CTYPE, "C.utf8");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pattern_opts o;
    struct pattern *p = NULL;
    struct pattern_msg pm = {&ops, 7};
    struct fctx c;
    struct err e;
    char *text;
    int r;

    if (size < 1 || size > 4096)
        return 0;
    text = fuzz_cstr(data + 1, size - 1);
    o.flags = (data[0] & 1) ? PATTERN_SIMPLE : 0;
    o.now = 1737000000;
    if (pattern_compile_opts(text, &o, &p, &e) < 0) {
        if (p || (e.code != ERR_PARSE && e.code != ERR_LIMIT) || !e.text[0])
            fuzz_fail("compile failure without a reason", text, strlen(text));
        free(text);
        return 0;
    }
    if (!p)
        fuzz_fail("compile succeeded without a pattern", text, strlen(text));

    memset(&c, 0, sizeof c);
    c.m = &msgs[(data[0] >> 1) & 1];
    r = pattern_eval(p, &pm, &c, &e);
    if (r != 0 && r != 1)
        fuzz_fail("accessors cannot fail here", text, strlen(text));
    if ((c.used_headers && !(pattern_needs(p) & PATTERN_NEEDS_HEADERS)) ||
        (c.used_body && !(pattern_needs(p) & PATTERN_NEEDS_BODY)))
        fuzz_fail("pattern_needs hides an accessor", text, strlen(text));
    if (pattern_match(p, &pm, &c) != (r == 1))
        fuzz_fail("pattern_match disagrees with pattern_eval", text, strlen(text));

    memset(&c, 0, sizeof c);
    c.m = &msgs[(data[0] >> 1) & 1];
    c.fail_body = true;
    r = pattern_eval(p, &pm, &c, &e);
    if (r < -1 || r > 1 || (r == -1 && !c.used_body))
        fuzz_fail("eval failed without a failing accessor", text, strlen(text));

    pm.ops = &no_ops;
    r = pattern_eval(p, &pm, &c, &e);
    if (r != 0 && r != 1)
        fuzz_fail("absent accessors cannot fail", text, strlen(text));

    pattern_free(p);
    free(text);
    return 0;
}
