/* cmd_harvest.c — placeholder while the command is written. */
#include "cli/cli.h"
#include <stdio.h>
int cmd_harvest(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "loupe harvest: not built yet\n"); return 1; }
