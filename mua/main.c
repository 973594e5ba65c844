/* correo: placeholder entry point until the listing lands. */
#include <stdio.h>
int main(void)
{
    printf("correo %s\n", CORREO_VERSION);
    return 0;
}
