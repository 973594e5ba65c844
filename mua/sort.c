#include "sort.h"
int sort_placeholder(void) { return 0; }
