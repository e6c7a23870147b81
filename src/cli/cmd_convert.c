/* cmd_convert.c — placeholder while the command is written. */
#include "cli/cli.h"
#include <stdio.h>
int cmd_convert(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "loupe convert: not built yet\n"); return 1; }
