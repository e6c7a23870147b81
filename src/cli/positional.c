/* positional.c — commands that take operands besides flags (e.g.
 * `loupe stability DIR DIR … --tau 0.7`): split argv into the flags (with
 * their values, for cli_parse) and the positional operands. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cli_split_positional(const cli_opt *opts, int argc, char **argv, char ***flags, int *nflags, char ***pos,
                         int *npos) {
    char **f = calloc((size_t)argc + 1, sizeof *f), **p = calloc((size_t)argc + 1, sizeof *p);
    if (!f || !p) {
        free(f);
        free(p);
        return 1;
    }
    int nf = 0, np = 0;
    f[nf++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 && strcmp(a, "-h") != 0) {
            p[np++] = argv[i];
            continue;
        }
        f[nf++] = argv[i];
        if (strchr(a, '=')) continue;
        const cli_opt *hit = NULL;
        for (const cli_opt *o = opts; o->name; o++)
            if (strcmp(o->name, a) == 0) hit = o;
        if (hit && hit->type != 'b' && i + 1 < argc) f[nf++] = argv[++i];
    }
    *flags = f, *nflags = nf, *pos = p, *npos = np;
    return 0;
}
