/* rcfile: placeholder until the module lands. */
#ifndef CORREO_RCFILE_H
#define CORREO_RCFILE_H
int rcfile_placeholder(void);
#endif
