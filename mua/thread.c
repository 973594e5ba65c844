#include "thread.h"
int thread_placeholder(void) { return 0; }
