#include "message.h"
int message_placeholder(void) { return 0; }
