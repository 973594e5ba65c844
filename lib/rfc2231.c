#include "rfc2231.h"
int rfc2231_placeholder(void) { return 0; }
