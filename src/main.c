/* main.c - placeholder until the daemon skeleton lands. */
#include "gw.h"
int main(void) { return 0; }
