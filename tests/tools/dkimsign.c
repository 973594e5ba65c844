/*
 * dkimsign: DKIM-sign a message for the tests.
 *
 *   dkimsign DOMAIN SELECTOR KEYFILE < message > signed
 *
 * Writes the DKIM-Signature header field that localserver/dkim makes,
 * followed by the message unchanged.  Exit status 0, or 1 with a reason on
 * stderr.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "dkim.h"

#define MESSAGE_MAX (64 * 1024 * 1024)

static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);

        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct buf msg = BUF_INIT, out = BUF_INIT;
    struct dkim_signer *s = NULL;
    struct err e;
    int rc;

    if (argc != 4) {
        fputs("usage: dkimsign DOMAIN SELECTOR KEYFILE < message > signed\n", stderr);
        return 2;
    }
    buf_init(&msg, MESSAGE_MAX);
    rc = buf_read_all(&msg, STDIN_FILENO);
    if (rc != 0) {
        fputs(rc == -2 ? "dkimsign: message too large\n" : "dkimsign: cannot read stdin\n",
              stderr);
        return 1;
    }
    if (dkim_signer_new(argv[1], argv[2], argv[3], &s, &e) != 0 ||
        dkim_sign(s, buf_cstr(&msg), msg.len, time(NULL), &out, &e) != 0) {
        fprintf(stderr, "dkimsign: %s\n", e.text);
        dkim_signer_free(s);
        buf_free(&msg);
        return 1;
    }
    rc = write_all(out.data, out.len) == 0 && write_all(buf_cstr(&msg), msg.len) == 0 ? 0 : 1;
    if (rc != 0)
        fputs("dkimsign: cannot write stdout\n", stderr);
    dkim_signer_free(s);
    buf_free(&msg);
    buf_free(&out);
    return rc;
}
