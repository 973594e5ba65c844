#include "maildir.h"
int maildir_placeholder(void) { return 0; }
