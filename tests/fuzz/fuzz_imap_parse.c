/*
 * fuzz_imap_parse: localserver/imap_parse on hostile client bytes.
 *
 * Byte 0 chooses: bit 0 small limits (lines of 64, literals of 100, {n+}
 * of 16, commands of 400 octets, nesting 6), bit 1 UTF8=ACCEPT, bit 2 the
 * line after an AUTHENTICATE or IDLE command is read raw, bit 3 the rest
 * is also parsed directly as one command text.  The rest is what the
 * client sends; it goes through the reader twice, in one piece and in
 * pseudo-random small pieces, and every command the reader assembles is
 * parsed.
 *
 * Checked: both feedings give the same events, commands, lines and errors;
 * the reader consumes everything unless it reports an event, asks for a
 * continuation only inside a command, and never hands over a command or
 * line over its limits; error answers have a text and a valid tag or none;
 * a command that parses writes a canonical dump that parses again to the
 * same dump, and the mailbox it names decodes (when it does) to valid
 * UTF-8 that encodes and decodes back to itself.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "imap_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
    struct imap_limits lim;
    struct imap_parse_opts opts;
    bool raw_after;
};

static void log_bytes(struct buf *log, const char *s, size_t n)
{
    if (buf_printf(log, "%zu:", n) < 0 || buf_append(log, s, n) < 0)
        abort();
}

static void check_mailbox(const struct fz *f, const struct imap_str *m)
{
    struct buf a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
    struct err e;

    if (!m->s)
        return;
    if (imap_mailbox_decode(m->s, m->len, f->opts.utf8, &a, &e) == 0) {
        fuzz_check_utf8("decoded mailbox name", a.data ? a.data : "", a.len);
        if (imap_write_mailbox(&b, buf_cstr(&a), a.len, f->opts.utf8, &e) < 0)
            fuzz_fail("decoded mailbox name does not encode", a.data, a.len);
        /* the written astring, read back as a command argument */
        struct imap_command *cmd;
        struct buf line = BUF_INIT;
        if (buf_puts(&line, "x DELETE ") < 0 || buf_append(&line, b.data, b.len) < 0)
            abort();
        if (imap_parse(line.data, line.len, &f->opts, &cmd, &e) < 0)
            fuzz_fail("written mailbox name does not parse", line.data, line.len);
        if (imap_mailbox_decode(cmd->mailbox.s, cmd->mailbox.len, f->opts.utf8, &c, &e) < 0 ||
            c.len != a.len || memcmp(c.data ? c.data : "", a.data ? a.data : "", a.len) != 0)
            fuzz_fail("mailbox name does not round-trip", a.data, a.len);
        imap_command_free(cmd);
        buf_free(&line);
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
}

/* Parse one command text; on success check its dump re-parses the same. */
static void parse_one(const struct fz *f, const char *text, size_t len, struct buf *log)
{
    struct imap_command *c, *c2;
    struct buf d = BUF_INIT, d2 = BUF_INIT;
    struct err e;

    if (imap_parse(text, len, &f->opts, &c, &e) < 0) {
        if (c)
            fuzz_fail("failed parse returned a command", text, len);
        if (!e.text[0] || e.code != ERR_PARSE)
            fuzz_fail("parse error without a text", text, len);
        if (log && (buf_puts(log, "P-") < 0))
            abort();
        return;
    }
    if (!c->tag || !c->tag[0])
        fuzz_fail("command without a tag", text, len);
    if (imap_command_write(c, &d) < 0)
        abort();
    if (imap_parse(d.data, d.len, &f->opts, &c2, &e) < 0)
        fuzz_fail("dump does not parse", d.data, d.len);
    if (imap_command_write(c2, &d2) < 0)
        abort();
    if (d.len != d2.len || memcmp(d.data, d2.data, d.len) != 0)
        fuzz_fail("dump does not parse to itself", d.data, d.len);
    if (c->cmd != c2->cmd || c->uid != c2->uid || strcmp(c->tag, c2->tag) != 0)
        fuzz_fail("dump changes the command", d.data, d.len);
    if (c->mailbox.s && c->cmd != IMAP_CMD_LIST && c->cmd != IMAP_CMD_LSUB)
        check_mailbox(f, &c->mailbox);
    if (log && (buf_puts(log, "P+") < 0 || buf_append(log, d.data, d.len) < 0))
        abort();
    imap_command_free(c);
    imap_command_free(c2);
    buf_free(&d);
    buf_free(&d2);
}

/* Run the reader over in[0..len) in pieces (max_piece 0: one piece);
 * everything observable goes into log. */
static void run(const struct fz *f, const char *in, size_t len, size_t max_piece, uint32_t rng,
                struct buf *log)
{
    struct imap_reader *r = imap_reader_new(&f->lim);
    size_t pos = 0;

    while (pos < len) {
        size_t n = len - pos, used = 0;
        if (max_piece) {
            rng = rng * 1103515245u + 12345u;
            n = 1 + (rng >> 16) % max_piece;
            if (n > len - pos)
                n = len - pos;
        }
        while (used < n) {
            enum imap_event ev;
            size_t k = imap_reader_feed(r, in + pos + used, n - used, &ev);
            const char *t;
            size_t tl;
            if (k > n - used)
                fuzz_fail("feed used more than it was given", "", 0);
            used += k;
            if (ev == IMAP_EV_NONE) {
                if (used != n)
                    fuzz_fail("feed stopped without an event", "", 0);
                break;
            }
            switch (ev) {
            case IMAP_EV_CONTINUE:
                if (!imap_reader_busy(r))
                    fuzz_fail("continuation outside a command", "", 0);
                if (buf_puts(log, "+") < 0)
                    abort();
                break;
            case IMAP_EV_COMMAND:
                t = imap_reader_command(r, &tl);
                if (t[tl] != '\0')
                    fuzz_fail("command not NUL-terminated", t, tl);
                if (tl > f->lim.max_command + f->lim.max_line || tl == 0)
                    fuzz_fail("command size out of bounds", t, tl);
                if (buf_puts(log, "C") < 0)
                    abort();
                log_bytes(log, t, tl);
                parse_one(f, t, tl, log);
                if (f->raw_after &&
                    (memmem(t, tl, " AUTHENTICATE", 13) || memmem(t, tl, " IDLE", 5)))
                    imap_reader_expect_line(r);
                break;
            case IMAP_EV_LINE:
                t = imap_reader_line(r, &tl);
                if (tl > f->lim.max_line || memchr(t, '\n', tl))
                    fuzz_fail("raw line out of bounds", t, tl);
                if (buf_puts(log, "L") < 0)
                    abort();
                log_bytes(log, t, tl);
                break;
            case IMAP_EV_ERROR: {
                const struct imap_read_error *e = imap_reader_error(r);
                if (!e->text || !e->text[0])
                    fuzz_fail("reader error without text", "", 0);
                if (e->tag) {
                    struct buf tag = BUF_INIT;
                    if (imap_parse_tag(e->tag, strlen(e->tag), &tag) < 0 ||
                        strcmp(buf_cstr(&tag), e->tag) != 0)
                        fuzz_fail("reader error with a bad tag", e->tag, strlen(e->tag));
                    buf_free(&tag);
                }
                if (buf_printf(log, "E%d %s %s", (int)e->resp, e->tag ? e->tag : "*", e->text) < 0)
                    abort();
                break;
            }
            default:
                fuzz_fail("unknown event", "", 0);
            }
            if (buf_putc(log, '\n') < 0)
                abort();
        }
        pos += n;
    }
    imap_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f;
    struct buf whole = BUF_INIT, pieces = BUF_INIT;
    const char *in;
    size_t len;
    uint8_t opt;

    if (size < 1)
        return 0;
    opt = data[0];
    in = (const char *)data + 1;
    len = size - 1;
    memset(&f, 0, sizeof(f));
    if (opt & 1) {
        f.lim.max_line = 64;
        f.lim.max_literal = 100;
        f.lim.max_nonsync = 16;
        f.lim.max_command = 400;
        f.opts.max_depth = 6;
    } else {
        f.lim.max_line = 8192;
        f.lim.max_literal = 65536;
        f.lim.max_nonsync = 4096;
        f.lim.max_command = 100000;
    }
    f.opts.utf8 = (opt & 2) != 0;
    f.raw_after = (opt & 4) != 0;

    run(&f, in, len, 0, 0, &whole);
    run(&f, in, len, 23, (uint32_t)size * 2654435761u + 1, &pieces);
    if (whole.len != pieces.len || memcmp(buf_cstr(&whole), buf_cstr(&pieces), whole.len) != 0)
        fuzz_fail("feeding in pieces changes the result", in, len);
    if (opt & 8)
        parse_one(&f, in, len, NULL);
    buf_free(&whole);
    buf_free(&pieces);
    return 0;
}
