/*
 * fuzz_rcfile: lib/rcfile and mua/config on hostile text.
 *
 * The first byte picks loader options (no_source, no_env); the rest is
 * loaded with rcfile_load_string and a handler that accepts everything.
 * Every word the handler sees is checked (NUL-terminated, argc matches
 * argv) and quoted back with rc_quote, which must read back as exactly
 * that word.  The same text then goes through config_exec on a fresh
 * configuration, and config_dump of the result must load again.
 *
 * `source` reads files: run the fuzzer in an empty directory with HOME
 * pointing to one (see README).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_check.h"
#include "rcfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rt_ctx {
    const char *want;
    size_t calls;
    bool ok;
};

static int roundtrip_handler(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    struct rt_ctx *rt = ctx;

    (void)e;
    rt->calls++;
    rt->ok = cmd->argc == 2 && strcmp(cmd->argv[0], "x") == 0 &&
             strcmp(cmd->argv[1], rt->want) == 0;
    return 0;
}

/* rc_quote(word) must read back as word. */
static void check_quote(const char *word)
{
    char *q = rc_quote(word);
    char *line;
    struct rc_loader l;
    struct rc_diag d;
    struct rt_ctx rt = {word, 0, false};

    if (strlen(q) + 2 > RC_LINE_MAX) {    /* would not fit on a line */
        free(q);
        return;
    }
    line = xasprintf("x %s\n", q);
    rc_diag_init(&d);
    rc_loader_init(&l, roundtrip_handler, &rt, &d);
    l.no_source = true;
    l.no_env = true;
    rcfile_load_string(&l, "quote", line, strlen(line));
    if (rt.calls != 1 || !rt.ok || d.n != 0)
        fuzz_fail("rc_quote does not read back", line, strlen(line));
    rc_diag_free(&d);
    free(line);
    free(q);
}

static int accept_all(void *ctx, const struct rc_cmd *cmd, struct err *e)
{
    size_t *words = ctx;

    (void)e;
    if (cmd->argc < 1 || !cmd->argv || cmd->argv[cmd->argc] != NULL || cmd->line < 1)
        fuzz_fail("bad rc_cmd", "", 0);
    for (size_t i = 0; i < cmd->argc; i++) {
        size_t n = strlen(cmd->argv[i]);
        if (n > RC_LINE_MAX)
            fuzz_fail("word longer than a line", cmd->argv[i], n);
        if (*words < 64)
            check_quote(cmd->argv[i]);
        (*words)++;
    }
    return 0;
}

static void check_diag(const struct rc_diag *d)
{
    if (d->n > RC_DIAG_MAX)
        fuzz_fail("too many diagnostics", "", 0);
    for (size_t i = 0; i < d->n; i++)
        if (!d->msgs[i])
            fuzz_fail("NULL diagnostic", "", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rc_loader l;
    struct rc_diag d;
    struct config *cfg, *again;
    size_t words = 0;
    char *text, *dump;

    if (size < 1)
        return 0;
    rc_diag_init(&d);
    rc_loader_init(&l, accept_all, &words, &d);
    l.no_source = data[0] & 1;
    l.no_env = (data[0] & 2) != 0;
    rcfile_load_string(&l, "fuzz", (const char *)data + 1, size - 1);
    check_diag(&d);
    rc_diag_free(&d);

    text = fuzz_cstr(data + 1, size - 1);
    cfg = config_new();
    rc_diag_init(&d);
    config_exec(cfg, "fuzz", text, &d);
    check_diag(&d);
    rc_diag_free(&d);

    /* What config_dump writes loads back to the same dump. */
    dump = config_dump(cfg, false);
    again = config_new();
    rc_diag_init(&d);
    config_exec(again, "dump", dump, &d);
    if (d.n != 0)
        fuzz_fail("config_dump does not load back", d.msgs[0], strlen(d.msgs[0]));
    rc_diag_free(&d);
    {
        char *dump2 = config_dump(again, false);
        if (strcmp(dump, dump2) != 0)
            fuzz_fail("config_dump changes when loaded back", dump2, strlen(dump2));
        free(dump2);
    }
    config_free(again);
    free(dump);
    config_free(cfg);
    free(text);
    return 0;
}
