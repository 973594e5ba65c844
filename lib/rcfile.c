#include "rcfile.h"
int rcfile_placeholder(void) { return 0; }
