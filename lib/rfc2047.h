/* rfc2047: placeholder until the module lands. */
#ifndef CORREO_RFC2047_H
#define CORREO_RFC2047_H
int rfc2047_placeholder(void);
#endif
