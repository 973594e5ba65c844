/* maildir: placeholder until the module lands. */
#ifndef CORREO_MAILDIR_H
#define CORREO_MAILDIR_H
int maildir_placeholder(void);
#endif
