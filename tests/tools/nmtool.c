/*
 * nmtool: a notmuch:// folder through the mailbox interface, for the
 * integration tests.
 *
 *   nmtool URL list                  one line per message: number, flags,
 *                                    tags, file name (tab-separated)
 *   nmtool URL tag N "+a -b"         mailbox_modify_tags on message N
 *   nmtool URL flags N +S -F ...     set_flags: add (+) or remove (-) the
 *                                    flags S F R D P, or N (new)
 *
 * After a change the message's line is printed as `list` prints it.  Exit
 * status 0, 1 on an error (the error's text on stderr), 2 for bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailbox.h"
#include "msg.h"

static const struct {
    char c;
    unsigned flag;
} letters[] = {
    {'N', MSG_NEW},     {'S', MSG_SEEN},   {'F', MSG_FLAGGED}, {'R', MSG_REPLIED},
    {'D', MSG_DRAFT},   {'P', MSG_PASSED}, {'T', MSG_TRASHED},
};

static void print_msg(const struct mailbox *mb, uint32_t i)
{
    const struct store_msg *m = store_get(&mb->store, i);
    char fl[16];
    size_t n = 0;

    for (size_t k = 0; k < sizeof letters / sizeof letters[0]; k++)
        if (m->flags & letters[k].flag)
            fl[n++] = letters[k].c;
    fl[n] = '\0';
    printf("%u\t%s\t%s\t%s\n", i, fl, store_str(&mb->store, m->tags),
           store_str(&mb->store, m->name));
}

static int usage(void)
{
    fputs("usage: nmtool URL list | tag N CHANGES | flags N (+|-)LETTER...\n", stderr);
    return 2;
}

int main(int argc, char **argv)
{
    struct mailbox *mb = NULL;
    struct err e;
    unsigned long n = 0;
    int rc = 0;

    if (argc < 3)
        return usage();
    if (mailbox_open(argv[1], 0, &mb, &e) != 0 || mailbox_load(mb, NULL, NULL, &e) != 0) {
        fprintf(stderr, "nmtool: %s\n", e.text);
        mailbox_close(mb);
        return 1;
    }
    if (strcmp(argv[2], "list") == 0) {
        for (uint32_t i = 0; i < store_count(&mb->store); i++)
            print_msg(mb, i);
        mailbox_close(mb);
        return 0;
    }
    if (argc < 5) {
        mailbox_close(mb);
        return usage();
    }
    n = strtoul(argv[3], NULL, 10);
    if (n >= store_count(&mb->store)) {
        fprintf(stderr, "nmtool: no message %lu\n", n);
        mailbox_close(mb);
        return 1;
    }
    if (strcmp(argv[2], "tag") == 0) {
        rc = mailbox_modify_tags(mb, (uint32_t)n, argv[4], &e);
    } else if (strcmp(argv[2], "flags") == 0) {
        unsigned fl = store_get(&mb->store, (uint32_t)n)->flags;

        for (int a = 4; a < argc; a++) {
            for (size_t k = 0; k < sizeof letters / sizeof letters[0]; k++) {
                if (argv[a][0] == '\0' || argv[a][1] != letters[k].c)
                    continue;
                if (argv[a][0] == '+')
                    fl |= letters[k].flag;
                else
                    fl &= ~letters[k].flag;
            }
        }
        rc = mb->ops->set_flags(mb, (uint32_t)n, fl, &e);
    } else {
        mailbox_close(mb);
        return usage();
    }
    if (rc != 0)
        fprintf(stderr, "nmtool: %s\n", e.text);
    else
        print_msg(mb, (uint32_t)n);
    mailbox_close(mb);
    return rc != 0 ? 1 : 0;
}
