/* tls_stream: placeholder until the module lands. */
#ifndef CORREO_TLS_STREAM_H
#define CORREO_TLS_STREAM_H
int tls_stream_placeholder(void);
#endif
