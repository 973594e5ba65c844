/* uidlist-tool: lib/uidlist from the command line, for the integration test
 * against Dovecot.
 *
 *   uidlist-tool dump DIR           read DIR/dovecot-uidlist (no lock, no scan)
 *   uidlist-tool sync DIR [COUNT]   sync with the folder COUNT times (default 1)
 *   uidlist-tool rebuild DIR        start over with a new UIDVALIDITY, sync
 *
 * Output (stdout) after each read or sync:
 *   V <uidvalidity> N <next uid> C <count>
 *   <uid> <base name>            one line per record, ascending
 *   .
 * A sync also prints "added A expunged E renamed R written W" on stderr.
 * Exit status 0; 1 on an error (stderr says which); 2 on usage; 3 when the
 * file is bad (ERR_PARSE and the like: the caller may rebuild). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildir.h"
#include "uidlist.h"

static void dump(const struct uidlist *ul)
{
    printf("V %u N %u C %zu\n", ul->uidvalidity, ul->next_uid, uidlist_count(ul));
    for (size_t i = 0; i < ul->n; i++) {
        const struct uidlist_rec *r = &ul->v[i];

        printf("%u %.*s\n", r->uid, (int)r->base_len, r->listed);
    }
    printf(".\n");
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: uidlist-tool dump|sync|rebuild DIR [COUNT]\n");
    return 2;
}

static int open_error(const struct err *e)
{
    fprintf(stderr, "uidlist-tool: %s\n", e->text);
    return e->code == ERR_IO ? 1 : 3;
}

int main(int argc, char **argv)
{
    struct uidlist *ul = NULL;
    struct maildir_folder *f = NULL;
    struct err e;
    long count = 1;
    int rc = 0;

    if (argc < 3 || argc > 4)
        return usage();
    if (argc == 4) {
        char *end;

        errno = 0;
        count = strtol(argv[3], &end, 10);
        if (errno != 0 || *end != '\0' || count < 1)
            return usage();
    }
    err_clear(&e);
    if (strcmp(argv[1], "rebuild") == 0) {
        uint32_t old = 0;

        if (uidlist_rebuild(argv[2], NULL, &ul, &old, &e) != 0)
            return open_error(&e);
        fprintf(stderr, "uidlist-tool: %s: new UIDVALIDITY %u (was %u)\n", argv[2],
                ul->uidvalidity, old);
    } else if (strcmp(argv[1], "dump") == 0 || strcmp(argv[1], "sync") == 0) {
        if (uidlist_open(argv[2], NULL, &ul, &e) != 0)
            return open_error(&e);
    } else {
        return usage();
    }
    if (strcmp(argv[1], "dump") == 0) {
        dump(ul);
        uidlist_free(ul);
        return 0;
    }
    if (maildir_folder_open_path(argv[2], &f, &e) != 0) {
        fprintf(stderr, "uidlist-tool: %s\n", e.text);
        uidlist_free(ul);
        return 1;
    }
    for (long i = 0; i < count; i++) {
        struct uidlist_sync_result res;

        if (uidlist_sync(ul, f, 0, &res, &e) != 0) {
            fprintf(stderr, "uidlist-tool: sync: %s\n", e.text);
            rc = e.code == ERR_IO ? 1 : 3;
            break;
        }
        fprintf(stderr, "added %zu expunged %zu renamed %zu written %d%s\n", res.added,
                res.expunged, res.renamed, res.written ? 1 : 0,
                res.uidvalidity_changed ? " UIDVALIDITY CHANGED" : "");
        dump(ul);
    }
    maildir_folder_close(f);
    uidlist_free(ul);
    return rc;
}
