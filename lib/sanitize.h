/* sanitize: placeholder until the module lands. */
#ifndef CORREO_SANITIZE_H
#define CORREO_SANITIZE_H
int sanitize_placeholder(void);
#endif
