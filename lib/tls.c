#include "tls.h"
int tls_placeholder(void) { return 0; }
