/* charset: placeholder until the module lands. */
#ifndef CORREO_CHARSET_H
#define CORREO_CHARSET_H
int charset_placeholder(void);
#endif
