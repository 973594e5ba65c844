/*
 * fuzz_imap_search: localserver/imap_search on hostile commands and mail.
 *
 * Input: the first line is a command as a client sends it after the tag
 * ("SEARCH ...", "UID SORT (...) UTF-8 ...", "THREAD REFERENCES UTF-8
 * ..."); the rest is up to 16 messages separated by lines "=====".  Each
 * message gets UID 3 * seq, flags and an internal date from its bytes, and
 * the message's first 40 bytes are also taken as a Subject for
 * imap_base_subject and imap_casefold.
 *
 * Checked: a search result ascends within 1..count; SORT returns a
 * permutation of the search result; THREAD's answer has balanced
 * parentheses and names every matching message exactly once; base
 * subjects and case-folded text of valid UTF-8 are valid UTF-8, and a base
 * subject is never longer than its decoded input allows; the compressed
 * sequence set of the result expands back to it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "charset.h"
#include "fuzz_check.h"
#include "imap_parse.h"
#include "imap_search.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 16

struct fbox {
    const char *p[MAX_MSGS];
    size_t n[MAX_MSGS];
    uint32_t count;
};

static unsigned hash(const char *p, size_t n)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static uint32_t f_count(void *ctx)
{
    return ((struct fbox *)ctx)->count;
}

static uint32_t f_uid(void *ctx, uint32_t seq)
{
    (void)ctx;
    return seq * 3;
}

static unsigned f_flags(void *ctx, uint32_t seq)
{
    const struct fbox *b = ctx;
    return hash(b->p[seq - 1], b->n[seq - 1]) & 63u;
}

static bool f_kw(void *ctx, uint32_t seq, const char *kw)
{
    const struct fbox *b = ctx;
    return ((hash(b->p[seq - 1], b->n[seq - 1]) >> 8) & 1u) && kw[0] == '$';
}

static int64_t f_idate(void *ctx, uint32_t seq, int *zone)
{
    const struct fbox *b = ctx;
    unsigned h = hash(b->p[seq - 1], b->n[seq - 1]);

    *zone = (int)(h % 1500) - 750;
    return 1600000000 + (int64_t)(h % 100000000u);
}

static uint64_t f_size(void *ctx, uint32_t seq)
{
    return ((struct fbox *)ctx)->n[seq - 1];
}

static int f_message(void *ctx, uint32_t seq, struct buf *out, struct err *e)
{
    const struct fbox *b = ctx;

    if (buf_append(out, b->p[seq - 1], b->n[seq - 1]) < 0)
        return err_set(e, ERR_LIMIT, "too big");
    return 0;
}

static void check_text(const char *p, size_t n)
{
    struct buf f = BUF_INIT;
    char *base;
    bool reply;

    if (!charset_valid_utf8(p, n) || memchr(p, '\0', n))
        return;
    if (imap_casefold(p, n, &f) < 0)
        abort();
    fuzz_check_utf8("case-folded text", buf_cstr(&f), f.len);
    buf_free(&f);
    base = imap_base_subject(p, n, &reply);
    fuzz_check_utf8_str("base subject", base);
    free(base);
}

/* The thread text names each of want[0..n) once, with balanced parens. */
static void check_thread(const char *t, const uint32_t *want, size_t n)
{
    int depth = 0;
    size_t seen = 0;
    uint8_t *mark = calloc(n ? n : 1, 1);

    if (!mark)
        abort();
    for (const char *p = t; *p;) {
        if (*p == '(') {
            depth++;
            p++;
        } else if (*p == ')') {
            if (--depth < 0)
                fuzz_fail("thread: unbalanced", t, strlen(t));
            p++;
        } else if (*p == ' ') {
            p++;
        } else if (*p >= '0' && *p <= '9') {
            unsigned long v = strtoul(p, NULL, 10);
            size_t k;
            while (*p >= '0' && *p <= '9')
                p++;
            for (k = 0; k < n && want[k] != v; k++)
                ;
            if (k == n || mark[k])
                fuzz_fail("thread: a number not matched or twice", t, strlen(t));
            mark[k] = 1;
            seen++;
        } else {
            fuzz_fail("thread: unexpected character", t, strlen(t));
        }
    }
    if (depth != 0 || seen != n)
        fuzz_fail("thread: unbalanced or incomplete", t, strlen(t));
    free(mark);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    struct fbox box;
    struct imap_search_store st = {
        &box, f_count, f_uid, f_flags, f_kw, f_idate, f_size, NULL, NULL, f_message,
    };
    struct imap_command *cmd = NULL;
    struct imap_search_result res;
    struct imap_search_opts o = {NULL, NULL, 0, 1700000000};
    static const uint32_t saved[] = {3, 9, 30};
    struct buf text = BUF_INIT;
    struct err e;
    size_t cl = nl ? (size_t)(nl - s) : size, pos;

    memset(&box, 0, sizeof box);
    pos = nl ? cl + 1 : size;
    while (pos < size && box.count < MAX_MSGS) {
        const char *start = s + pos, *sep = NULL;
        for (size_t i = pos; i + 6 <= size; i++) {
            if (memcmp(s + i, "=====\n", 6) == 0 && (i == pos || s[i - 1] == '\n')) {
                sep = s + i;
                break;
            }
        }
        box.p[box.count] = start;
        box.n[box.count] = sep ? (size_t)(sep - start) : size - pos;
        check_text(start, box.n[box.count] > 40 ? 40 : box.n[box.count]);
        box.count++;
        pos = sep ? (size_t)(sep - s) + 6 : size;
    }
    if (buf_puts(&text, "t ") < 0 || buf_append(&text, s, cl) < 0)
        abort();
    if (imap_parse(buf_cstr(&text), text.len, NULL, &cmd, &e) < 0 ||
        (cmd->cmd != IMAP_CMD_SEARCH && cmd->cmd != IMAP_CMD_SORT &&
         cmd->cmd != IMAP_CMD_THREAD)) {
        if (cmd)
            imap_command_free(cmd);
        buf_free(&text);
        return 0;
    }
    o.charset = cmd->search.charset.s;
    o.saved = saved;
    o.n_saved = 3;
    if (imap_search(&st, cmd->search.keys, &o, &res, &e) == 0) {
        uint32_t *copy = res.n ? malloc(res.n * sizeof *copy) : NULL;
        struct buf set = BUF_INIT;
        for (size_t i = 0; i < res.n; i++) {
            if (res.seq[i] < 1 || res.seq[i] > box.count || (i && res.seq[i] <= res.seq[i - 1]))
                fuzz_fail("search result out of order or range", s, cl);
            copy[i] = res.seq[i];
        }
        /* the compressed set expands back to the result */
        if (imap_seqset_compress(copy, res.n, &set) < 0)
            abort();
        {
            size_t k = 0;
            const char *p = buf_cstr(&set);
            while (*p) {
                char *end;
                unsigned long lo = strtoul(p, &end, 10), hi = lo;
                p = end;
                if (*p == ':') {
                    hi = strtoul(p + 1, &end, 10);
                    p = end;
                }
                for (unsigned long v = lo; v <= hi; v++)
                    if (k >= res.n || res.seq[k++] != v)
                        fuzz_fail("sequence set does not expand back", buf_cstr(&set), set.len);
                if (*p == ',')
                    p++;
            }
            if (k != res.n)
                fuzz_fail("sequence set too short", buf_cstr(&set), set.len);
        }
        buf_free(&set);
        if (cmd->cmd == IMAP_CMD_SORT) {
            if (imap_sort(&st, cmd->search.sort, cmd->search.n_sort, &res, &e) < 0)
                abort();
            {
                uint8_t seen[MAX_MSGS + 1] = {0};
                for (size_t i = 0; i < res.n; i++) {
                    bool in = false;
                    for (size_t k = 0; k < res.n; k++)
                        in = in || copy[k] == res.seq[i];
                    if (!in || seen[res.seq[i]]++)
                        fuzz_fail("sort is not a permutation", s, cl);
                }
            }
        } else if (cmd->cmd == IMAP_CMD_THREAD) {
            enum imap_thread_alg alg;
            struct buf t = BUF_INIT;
            if (imap_thread_alg_parse(cmd->search.algorithm.s, &alg) == 0) {
                uint32_t *uids = res.n ? malloc(res.n * sizeof *uids) : NULL;
                for (size_t i = 0; i < res.n; i++)
                    uids[i] = cmd->uid ? res.seq[i] * 3 : res.seq[i];
                if (imap_thread(&st, alg, &res, cmd->uid, &t, &e) < 0)
                    abort();
                check_thread(buf_cstr(&t), uids, res.n);
                free(uids);
            }
            buf_free(&t);
        }
        free(copy);
        imap_search_result_free(&res);
    }
    imap_command_free(cmd);
    buf_free(&text);
    return 0;
}
