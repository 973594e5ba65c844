/*
 * correod: the single-host mail server.
 *
 * The entry point: picks the subcommand (or `sendmail` when called by that
 * name) and hands over to it; the commands live in their modules
 * (commands.h).
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
#ifdef HAVE_ADMIN
    { "init", cmd_init, "init DIR [--domain D] [--listen ADDR] [--port-offset N]" },
    { "check-config", cmd_check_config, "check-config [-c CONFIG]" },
    { "gencert", cmd_gencert, "gencert [-c CONFIG] [--days N] [NAME...]" },
#endif
#ifdef HAVE_SERVER
    { "run", cmd_run, "run [-c CONFIG] [-f]" },
#endif
#ifdef HAVE_USERS_CLI
    { "user", cmd_user, "user add|del|passwd|list [-c CONFIG] [NAME] [--password-stdin]" },
#endif
#ifdef HAVE_QUEUE_CLI
    { "queue", cmd_queue, "queue list|show|flush|delete [-c CONFIG] [ID]" },
#endif
#ifdef HAVE_DKIM_CLI
    { "dkim-keygen", cmd_dkim_keygen, "dkim-keygen [-c CONFIG] [--selector S] [--domain D] [--key FILE]" },
#endif
#ifdef HAVE_SENDMAIL
    { "sendmail", cmd_sendmail, "sendmail [-c CONFIG] [-t] [-i] [-f FROM] [RCPT...]" },
#endif
    { NULL, NULL, NULL },
};

static void usage(FILE *out)
{
    fputs("usage: correod [--help] [--version] COMMAND [ARGS]\n"
          "\n"
          "correod is the single-host mail server of correo: SMTP over Maildir.\n"
          "\n"
          "commands:\n", out);
    for (size_t i = 0; commands[i].name; i++)
        fprintf(out, "  %s\n", commands[i].help);
    fputs("\n"
          "  --help      show this text and exit\n"
          "  --version   show the version and exit\n", out);
}

int main(int argc, char **argv)
{
    const char *self = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    self = self ? self + 1 : (argc > 0 && argv[0] ? argv[0] : "correod");
    for (size_t i = 0; commands[i].name; i++) {
        /* Installed as a sendmail symlink: behave as `correod sendmail`. */
        if (strcmp(self, "sendmail") == 0 && strcmp(commands[i].name, "sendmail") == 0)
            return commands[i].fn(argc, argv);
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("correod %s\n", CORREO_VERSION);
        return 0;
    }
    for (size_t i = 0; commands[i].name; i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "correod: unknown command '%s' (see correod --help)\n", argv[1]);
    return 2;
}
