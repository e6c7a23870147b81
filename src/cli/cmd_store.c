/* cmd_store.c — `loupe store info DIR`: print an activation store's manifest. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/store.h"

int cmd_store(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: loupe store info DIR [--hook NAME]\n\n"
               "Validates the store (manifest, shard sizes) and prints its manifest as JSON.\n"
               "  --hook NAME   validate this hook's shards (default: the first hook)\n");
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "info") != 0 || argc < 3)
        return cli_errorf("store", "usage: loupe store info DIR");
    const char *hook = NULL;
    for (int i = 3; i + 1 < argc; i++)
        if (strcmp(argv[i], "--hook") == 0) hook = argv[i + 1];
    lp_store *s = NULL;
    if (lp_store_open(&s, argv[2], hook ? hook : "")) return cli_error("store");
    fputs(lp_store_manifest_text(s), stdout);
    fputc('\n', stdout);
    lp_store_close_reader(s);
    return 0;
}
