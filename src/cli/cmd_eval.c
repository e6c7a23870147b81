#include "cli/cli.h"
#include <stdio.h>
int cmd_eval(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "loupe eval: not built yet\n"); return 1; }
