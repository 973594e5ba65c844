/* message: placeholder until the module lands. */
#ifndef CORREO_MESSAGE_H
#define CORREO_MESSAGE_H
int message_placeholder(void);
#endif
