/*
 * batch: sending without a screen, as `mutt -s SUBJECT ... -- ADDRESS... < body`.
 *
 * Builds the message from the command line and standard input with
 * lib/compose, sends it with mua/send (SMTP per $smtp_url, else
 * $sendmail), stores a copy in $record, and when sending fails stores the
 * message in $postponed instead, so nothing written is lost.  The exit
 * status says whether it was sent.
 */
#ifndef CORREO_BATCH_H
#define CORREO_BATCH_H

#include <stddef.h>

#include "config.h"

struct batch_opts {
    const char *subject;
    const char *const *to;       /* the addresses after "--" (or alias names) */
    size_t n_to;
    const char *const *cc;
    size_t n_cc;
    const char *const *bcc;
    size_t n_bcc;
    const char *const *attach;   /* file paths */
    size_t n_attach;
};

/* Returns the process exit status: 0 sent, 1 not sent (the reason is on
 * standard error, and where the message was kept), 2 bad arguments. */
int batch_send(struct config *cfg, const struct batch_opts *o);

#endif
