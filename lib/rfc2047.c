#include "rfc2047.h"
int rfc2047_placeholder(void) { return 0; }
