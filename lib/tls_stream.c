#include "tls_stream.h"
int tls_stream_placeholder(void) { return 0; }
