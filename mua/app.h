/*
 * app: the interactive client.
 *
 * Owns the running session: the configuration, the open mailbox and its
 * view, and the screens (index, pager, attachment list, folder browser,
 * help) with their key loops.  Keys become functions through the keymap;
 * every function is a case in one of the screens' dispatchers.
 */
#ifndef CORREO_APP_H
#define CORREO_APP_H

#include "config.h"

struct app_opts {
    const char *folder;        /* -f: the mailbox to open; NULL: $spoolfile */
    bool readonly;             /* -R */
};

/* Run the client until the user quits.  Returns the process exit status. */
int app_run(struct config *cfg, const struct app_opts *opts);

#endif
