#include "sanitize.h"
int sanitize_placeholder(void) { return 0; }
