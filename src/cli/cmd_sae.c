/* cmd_sae.c — `loupe sae info PATH`: load an SAE directory in the SAELens or
 * sparsify layout (PATH may also name its cfg.json or weights file), check
 * it fully, and print a short summary on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/sae_format.h"

static void sae_usage(FILE *f) {
    fprintf(f, "usage: loupe sae info PATH   summarise an SAE (SAELens or sparsify directory)\n"
               "       loupe sae info --help\n");
}

/* PATH naming a file inside an SAE directory means that directory */
static char *sae_dir_of(const char *path) {
    static const char *const names[] = {"cfg.json", "sae_weights.safetensors", "sae.safetensors"};
    char *dir = lp_strdup(path);
    if (!dir || lp_is_dir(dir)) return dir;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(base, names[i]) == 0) {
            if (slash == dir)
                dir[1] = 0; /* "/cfg.json" */
            else if (slash)
                *slash = 0;
            else
                strcpy(dir, ".");
            break;
        }
    return dir;
}

static int sae_info(int argc, char **argv) {
    const char *path = NULL;
    int expect_d = 0;
    /* one positional PATH; the flags go to the shared parser */
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) return cli_errorf("sae", "out of memory");
    int nrest = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            rest[nrest++] = argv[i];
            if (!strchr(argv[i], '=') && strcmp(argv[i], "--help") != 0 && i + 1 < argc)
                rest[nrest++] = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0) {
            rest[nrest++] = argv[i];
        } else if (!path) {
            path = argv[i];
        } else {
            free(rest);
            fprintf(stderr, "loupe sae info: unexpected argument '%s' (one PATH)\n", argv[i]);
            return 2;
        }
    }
    rest[nrest] = NULL;
    cli_opt opts[] = {{"--d-in", 'i', &expect_d, "0", "fail unless the SAE's d_in is this (0 = any)"},
                      {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("sae info", "PATH [--d-in N]", opts, nrest, rest);
    free(rest);
    if (rc) return rc == 1 ? 0 : rc;
    if (!path) {
        fprintf(stderr, "loupe sae info: PATH is required (see loupe sae info --help)\n");
        return 2;
    }
    char *dir = sae_dir_of(path);
    if (!dir) return cli_error("sae info");
    lp_sae *s = NULL;
    int format = 0;
    rc = 1;
    if (lp_sae_detect_format(dir, &format) || lp_sae_load(&s, dir, expect_d)) {
        cli_error("sae info");
        goto done;
    }
    char buf[4096];
    lp_sae_describe(s, buf, sizeof buf);
    printf("path:       %s\nformat:     %s (%s)\n%s", dir,
           format == LP_SAE_FMT_SAELENS ? "SAELens" : "sparsify",
           format == LP_SAE_FMT_SAELENS ? "cfg.json + sae_weights.safetensors" : "cfg.json + sae.safetensors",
           buf);
    rc = 0;
done:
    lp_sae_free(s);
    free(dir);
    return rc;
}

int cmd_sae(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        sae_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "info") == 0) return sae_info(argc - 1, argv + 1);
    fprintf(stderr, "loupe sae: unknown subcommand '%s'\n", argv[1]);
    sae_usage(stderr);
    return 2;
}
