/* pattern: placeholder until the module lands. */
#ifndef CORREO_PATTERN_H
#define CORREO_PATTERN_H
int pattern_placeholder(void);
#endif
