/* thread: placeholder until the module lands. */
#ifndef CORREO_THREAD_H
#define CORREO_THREAD_H
int thread_placeholder(void);
#endif
