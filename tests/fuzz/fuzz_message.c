/*
 * fuzz_message: lib/message on hostile bytes.
 *
 * message_parse, message_best_text, message_part_decode and
 * message_part_text on every part, message_parse_headers; checks that the
 * tree is consistent (offsets inside the buffer, indexes, parents, depth)
 * and that every string the API promises as UTF-8 is valid UTF-8.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "fuzz_check.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addrs(const struct msg_addr_list *l, const struct msg_limits *lim)
{
    if (l->n > lim->max_addresses)
        fuzz_fail("address list over its limit", "", 0);
    for (size_t i = 0; i < l->n; i++) {
        if (!l->v[i].addr)
            fuzz_fail("address without addr", "", 0);
        fuzz_check_utf8_str("address name", l->v[i].name);
        fuzz_check_utf8_str("address addr-spec", l->v[i].addr);
    }
}

static void check_env(const struct msg_envelope *env, const struct msg_limits *lim)
{
    check_addrs(&env->from, lim);
    check_addrs(&env->to, lim);
    check_addrs(&env->cc, lim);
    check_addrs(&env->bcc, lim);
    check_addrs(&env->reply_to, lim);
    check_addrs(&env->sender, lim);
    fuzz_check_utf8_str("subject", env->subject);
    fuzz_check_utf8_str("date text", env->date_text);
    fuzz_check_utf8_str("message-id", env->message_id);
    fuzz_check_utf8_str("in-reply-to", env->in_reply_to);
    fuzz_check_utf8_str("list-id", env->list_id);
    fuzz_check_utf8_str("list-post", env->list_post);
    if (env->n_references > lim->max_references)
        fuzz_fail("references over their limit", "", 0);
    for (size_t i = 0; i < env->n_references; i++)
        fuzz_check_utf8_str("reference", env->references[i]);
    if (!env->date_valid && env->date != 0)
        fuzz_fail("invalid date with a value", "", 0);
}

static void check_part(const struct message *m, const struct msg_part *p, size_t i)
{
    if (p->index != i || m->parts[p->index] != p)
        fuzz_fail("part index", "", 0);
    if (p->header_offset > p->body_offset || p->body_offset > m->raw_len ||
        p->body_size > m->raw_len - p->body_offset)
        fuzz_fail("part offsets outside the message", "", 0);
    if (p->depth > m->limits.max_depth)
        fuzz_fail("part deeper than the limit", "", 0);
    if (i == 0 ? p->parent != NULL : (p->parent == NULL || p->depth != p->parent->depth + 1))
        fuzz_fail("part parent", "", 0);
    if (!p->type || !p->subtype)
        fuzz_fail("part without a type", "", 0);
    for (size_t c = 0; c < p->n_children; c++)
        if (p->children[c]->parent != p)
            fuzz_fail("child's parent", "", 0);
    if (p->envelope)
        check_env(p->envelope, &m->limits);
    fuzz_check_utf8_str("filename", p->filename);
    fuzz_check_utf8_str("description", p->description);
}

static void run_parts(const struct message *m)
{
    bool is_html = false;
    const struct msg_part *best = message_best_text(m, &is_html);

    if (m->root && m->root != m->parts[0])
        fuzz_fail("root is not parts[0]", "", 0);
    if (m->n_parts > m->limits.max_parts)
        fuzz_fail("more parts than the limit", "", 0);
    if (best && !(strcmp(best->type, "text") == 0 &&
                  strcmp(best->subtype, is_html ? "html" : "plain") == 0))
        fuzz_fail("best text part is not text/plain or text/html", "", 0);

    for (size_t i = 0; i < m->n_parts; i++) {
        const struct msg_part *p = m->parts[i];
        struct buf out = BUF_INIT;
        struct err e;
        unsigned flags = 0;
        bool broken = false;
        char *mt;

        check_part(m, p, i);

        if (message_part_decode(m, p, &out, &broken, &e) == 0 &&
            p->encoding != MSG_ENC_BASE64 && p->encoding != MSG_ENC_QP &&
            out.len != p->body_size)
            fuzz_fail("identity decoding changed the size", "", 0);
        buf_free(&out);

        /* (CR CR LF is a stray CR and a line end: CR LF is allowed.) */
        if (message_part_text(m, p, &out, &flags, &broken, &e) == 0)
            fuzz_check_utf8("part text", buf_cstr(&out), out.len);
        buf_free(&out);

        mt = message_part_mime_type(p);
        free(mt);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = (const char *)data;
    struct message *m = NULL;
    struct msg_limits lim;
    struct err e;

    if (message_parse(raw, size, NULL, &m, &e) < 0)
        abort();    /* only a NULL buffer or zero limits may fail */
    if (m->body_offset > size)
        fuzz_fail("body offset past the end", "", 0);
    check_env(&m->env, &m->limits);
    for (size_t i = 0; i < m->n_warnings; i++)
        fuzz_check_utf8_str("warning", m->warnings[i]);
    run_parts(m);
    message_free(m);

    if (message_parse_headers(raw, size, NULL, &m, &e) < 0)
        abort();
    if (m->body_offset > size || m->root || m->n_parts)
        fuzz_fail("header-only parse", "", 0);
    check_env(&m->env, &m->limits);
    message_free(m);

    /* Tight limits take the truncation paths. */
    message_limits_default(&lim);
    lim.max_depth = 2;
    lim.max_parts = 4;
    lim.max_header_bytes = 256;
    lim.max_addresses = 3;
    lim.max_references = 3;
    lim.max_decoded = 64;
    if (message_parse(raw, size, &lim, &m, &e) < 0)
        abort();
    check_env(&m->env, &m->limits);
    run_parts(m);
    message_free(m);
    return 0;
}
