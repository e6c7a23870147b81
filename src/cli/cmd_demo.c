/* cmd_demo.c — placeholder while the command is written. */
#include "cli/cli.h"
#include <stdio.h>
int cmd_demo(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "loupe demo: not built yet\n"); return 1; }
