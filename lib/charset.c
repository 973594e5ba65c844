#include "charset.h"
int charset_placeholder(void) { return 0; }
