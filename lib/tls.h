/* tls: placeholder until the module lands. */
#ifndef CORREO_TLS_H
#define CORREO_TLS_H
int tls_placeholder(void);
#endif
