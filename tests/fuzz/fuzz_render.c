/*
 * fuzz_render: mua/render and mua/html on hostile bytes.
 *
 * message_parse, then render_message at 1, 20 and 80 columns (with and
 * without smart wrap, reflow, all headers), render_search with fixed
 * patterns, render_text on the raw bytes, and html_to_text on the raw
 * bytes.  Checks that every line is a slice of the arena, terminal-safe
 * and no wider than the screen unless it is a single wide character, that
 * search hits lie inside their lines, and that html_to_text gives UTF-8
 * with no control characters other than LF and TAB.
 */
#include <locale.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "html.h"
#include "message.h"
#include "render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!setlocale(LC_CTYPE, "C.UTF-8"))
        (void)setlocale(LC_CTYPE, "C.utf8");
    return 0;
}

/* Width of the first character (with the combining marks after it) when
 * the line is exactly one such character, else 0. */
static bool single_char(const char *s, size_t len)
{
    size_t i = 0, bases = 0;

    while (i < len) {
        uint32_t cp;
        int n = sanitize_utf8_next(s + i, len - i, &cp);
        if (n < 0)
            return false;
        if (sanitize_cp_width(cp) > 0)
            bases++;
        i += (size_t)n;
    }
    return bases <= 1;
}

static void check_out(const struct render_out *out, size_t cols)
{
    for (size_t i = 0; i < out->n_lines; i++) {
        const struct render_line *l = &out->lines[i];
        const char *s = render_line_text(out, i);
        size_t w;

        if ((size_t)l->off > out->text.len || (size_t)l->len > out->text.len - l->off)
            fuzz_fail("line outside the arena", "", 0);
        if (l->role > RENDER_INFO || l->quote > RENDER_QUOTE_MAX ||
            (l->role == RENDER_QUOTED) != (l->quote != 0))
            fuzz_fail("line role or quote level", s, l->len);
        if (i == 0 && (l->flags & RENDER_LINE_CONT))
            fuzz_fail("first line is a continuation", s, l->len);
        w = fuzz_check_term("rendered line", s, l->len);
        if (cols && w > cols && !single_char(s, l->len))
            fuzz_fail("line wider than the screen", s, l->len);
    }
}

static void search(const struct render_out *out, const char *pat, unsigned flags)
{
    struct render_hits hits = {0};
    struct err e;

    if (render_search(out, pat, flags, &hits, &e) < 0)
        abort();    /* the patterns are valid */
    for (size_t i = 0; i < hits.n; i++) {
        const struct render_hit *h = &hits.v[i];
        if (h->line >= out->n_lines || h->off > out->lines[h->line].len ||
            h->len > out->lines[h->line].len - h->off)
            fuzz_fail("search hit outside its line", "", 0);
        if (i > 0 && (h->line < hits.v[i - 1].line ||
                      (h->line == hits.v[i - 1].line && h->off < hits.v[i - 1].off)))
            fuzz_fail("search hits out of order", "", 0);
    }
    if (out->n_lines) {
        (void)render_hit_next(&hits, 0, true);
        (void)render_hit_next(&hits, out->n_lines - 1, false);
    }
    render_hits_free(&hits);
}

static void check_html(const char *raw, size_t size)
{
    struct buf b = BUF_INIT;
    const char *s;

    if (html_to_text(raw, size, &b) < 0)
        abort();    /* no ceiling */
    s = buf_cstr(&b);
    fuzz_check_utf8("html_to_text", s, b.len);
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            fuzz_fail("control character from html_to_text", s, b.len);
    }
    buf_free(&b);

    /* With a ceiling the prefix is still valid UTF-8. */
    buf_init(&b, size / 2 + 1);
    if (html_to_text(raw, size, &b) == 0 && b.len > size / 2 + 1)
        fuzz_fail("html_to_text past its ceiling", "", 0);
    fuzz_check_utf8("html_to_text prefix", buf_cstr(&b), b.len);
    buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t cols[] = {1, 20, 80};
    static const char *const order[] = {"subject:", "from:", NULL};
    const char *raw = (const char *)data;
    struct message *m = NULL;
    struct render_opts o;
    struct render_out out;
    struct err e;

    if (message_parse(raw, size, NULL, &m, &e) < 0)
        abort();
    render_out_init(&out);
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        render_opts_default(&o);
        o.cols = cols[i];
        if (i == 1) {
            o.smart_wrap = false;
            o.reflow = false;
            o.lenient_sig = true;
            o.quote_chars = ">|:";
            o.header_order = order;
        }
        if (i == 2)
            o.all_headers = true;
        if (render_message(m, &o, &out, &e) < 0)
            abort();
        check_out(&out, o.cols);
        if (i == 2) {
            search(&out, "re", RENDER_SEARCH_SMART);
            search(&out, "a", RENDER_SEARCH_ICASE);
            /* ASan's regexec interceptor runs strlen over the rest of the
             * arena on every call: quadratic, but only under ASan. */
            if (out.text.len <= 65536)
                search(&out, "[a-z]+@[a-z.]+|^>+ |\xc3\xa9",
                       RENDER_SEARCH_REGEX | RENDER_SEARCH_SMART);
        }
    }

    /* A small max_bytes takes the truncation path. */
    render_opts_default(&o);
    o.max_bytes = 4096;
    if (render_message(m, &o, &out, &e) < 0)
        abort();
    check_out(&out, o.cols);
    message_free(m);

    render_out_reset(&out);
    render_opts_default(&o);
    o.cols = 20;
    (void)render_text(raw, size, &o, &out, &e);
    check_out(&out, o.cols);
    render_out_free(&out);

    check_html(raw, size);
    return 0;
}
