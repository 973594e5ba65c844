/*
 * fsutil: small file-system helpers the modules share.
 */
#ifndef CORREO_FSUTIL_H
#define CORREO_FSUTIL_H

#include <sys/types.h>

#include "err.h"

/* mkdir -p: create path and each missing parent with mode; components
 * that already exist are fine.  On failure *e names the component. */
int fs_mkdirs(const char *path, mode_t mode, struct err *e);

#endif
