#include "log.h"
int log_placeholder(void) { return 0; }
