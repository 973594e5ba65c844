/* log: placeholder until the module lands. */
#ifndef CORREO_LOG_H
#define CORREO_LOG_H
int log_placeholder(void);
#endif
