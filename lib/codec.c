#include "codec.h"
int codec_placeholder(void) { return 0; }
