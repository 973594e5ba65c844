#include "pattern.h"
int pattern_placeholder(void) { return 0; }
