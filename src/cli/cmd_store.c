/* cmd_store.c — placeholder while the command is written. */
#include "cli/cli.h"
#include <stdio.h>
int cmd_store(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "loupe store: not built yet\n"); return 1; }
