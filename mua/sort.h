/* sort: placeholder until the module lands. */
#ifndef CORREO_SORT_H
#define CORREO_SORT_H
int sort_placeholder(void);
#endif
