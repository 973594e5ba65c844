/* codec: placeholder until the module lands. */
#ifndef CORREO_CODEC_H
#define CORREO_CODEC_H
int codec_placeholder(void);
#endif
