/* imapfetch-tool: localserver/imap_fetch from the command line, for the
 * integration test against Dovecot.
 *
 *   imapfetch-tool 'ITEMS' FILE...
 *
 * ITEMS is a FETCH attribute list as a client sends it, without the
 * parentheses ("ENVELOPE BODYSTRUCTURE BODY.PEEK[1.MIME] BINARY[1]<0.10>").
 * For the Nth FILE, stdout gets the response line a server would send:
 *   * N FETCH (ITEM VALUE ITEM VALUE ...) CRLF
 * with literals as on the wire; or, when an item cannot be answered,
 *   * N NO [UNKNOWN-CTE] text CRLF     (BINARY of an unknown encoding)
 *   * N NO text CRLF                   (any other error)
 * Items that are the session's (FLAGS, UID, INTERNALDATE, MODSEQ) are left
 * out.  Exit status 0; 1 when a file cannot be read or parsed; 2 on usage
 * or when ITEMS does not parse. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imap_fetch.h"
#include "imap_parse.h"

static int fetch_one(const struct imap_command *cmd, const char *path, unsigned n)
{
    struct buf raw = BUF_INIT, out = BUF_INIT;
    struct imap_fetch_msg *fm = NULL;
    struct err e;
    int fd = open(path, O_RDONLY), rc = 0;
    bool first = true;

    if (fd < 0 || buf_read_all(&raw, fd) != 0) {
        perror(path);
        if (fd >= 0)
            close(fd);
        buf_free(&raw);
        return 1;
    }
    close(fd);
    if (imap_fetch_open(raw.data, raw.len, &fm, &e) < 0) {
        fprintf(stderr, "%s: %s\n", path, e.text);
        buf_free(&raw);
        return 1;
    }
    if (buf_printf(&out, "* %u FETCH (", n) < 0)
        rc = 1;
    for (size_t i = 0; rc == 0 && i < cmd->fetch.n; i++) {
        const struct imap_fetch_att *att = &cmd->fetch.atts[i];
        size_t mark = out.len;

        switch (att->item) {
        case IMAP_FETCH_FLAGS: case IMAP_FETCH_UID: case IMAP_FETCH_INTERNALDATE:
        case IMAP_FETCH_MODSEQ:
            continue;
        default:
            break;
        }
        if (!first && buf_putc(&out, ' ') < 0) {
            rc = 1;
            break;
        }
        if (imap_fetch_write(fm, att, &out, &e) < 0) {
            buf_truncate(&out, mark);
            buf_reset(&out);
            if (buf_printf(&out, "* %u NO %s%s\r\n", n,
                           e.code == ERR_UNSUPPORTED ? "[UNKNOWN-CTE] " : "", e.text) < 0)
                rc = 1;
            fwrite(out.data, 1, out.len, stdout);
            buf_free(&out);
            imap_fetch_close(fm);
            buf_free(&raw);
            return rc;
        }
        first = false;
    }
    if (rc == 0 && buf_puts(&out, ")\r\n") < 0)
        rc = 1;
    if (rc == 0)
        fwrite(out.data, 1, out.len, stdout);
    buf_free(&out);
    imap_fetch_close(fm);
    buf_free(&raw);
    return rc;
}

int main(int argc, char **argv)
{
    struct imap_command *cmd = NULL;
    struct err e;
    char *text;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: imapfetch-tool 'ITEMS' FILE...\n");
        return 2;
    }
    text = xasprintf("t FETCH 1 (%s)", argv[1]);
    if (imap_parse(text, strlen(text), NULL, &cmd, &e) < 0 || cmd->cmd != IMAP_CMD_FETCH) {
        fprintf(stderr, "imapfetch-tool: items: %s\n", cmd ? "not a FETCH" : e.text);
        imap_command_free(cmd);
        free(text);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (fetch_one(cmd, argv[i], (unsigned)(i - 1)) != 0)
            rc = 1;
    fflush(stdout);
    imap_command_free(cmd);
    free(text);
    return rc;
}
