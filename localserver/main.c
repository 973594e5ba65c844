/*
 * correod: the single-host mail server.
 *
 * This is the entry point and command dispatcher.  The server itself (SMTP,
 * IMAP, POP3) is not built yet; today correod answers --help and --version
 * and says so for any other command.
 */
#include <stdio.h>
#include <string.h>

static void correod_usage(FILE *out)
{
    fputs("usage: correod [--help] [--version] COMMAND [ARGS]\n"
          "\n"
          "correod is the single-host mail server of correo (SMTP, IMAP, POP3\n"
          "over Maildir).  The server commands are not available in this\n"
          "version yet.\n"
          "\n"
          "  --help      show this text and exit\n"
          "  --version   show the version and exit\n", out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        correod_usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        correod_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("correod %s\n", CORREO_VERSION);
        return 0;
    }
    fprintf(stderr, "correod: unknown command '%s' (this version only has --help and --version)\n",
            argv[1]);
    return 2;
}
