/* rfc2231: placeholder until the module lands. */
#ifndef CORREO_RFC2231_H
#define CORREO_RFC2231_H
int rfc2231_placeholder(void);
#endif
