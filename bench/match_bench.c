/* match_bench.c — timing driver for bench/match: reads two decoders A, B
 * [F, d] (raw f32), puts them in two SAEs and times loupe's entry points:
 * one-to-one matching (similarity matrix + Jonker–Volgenant) and streamed
 * max matching (both directions). Writes the assignment for comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/match.h"

static lp_sae *load(const char *p, int64_t F, int d) {
    char *buf = NULL;
    size_t len = 0;
    if (lp_read_file(p, &buf, &len) || len != (size_t)F * d * sizeof(float)) {
        fprintf(stderr, "match_bench: %s: wrong size or unreadable %s\n", p, lp_errmsg());
        exit(1);
    }
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.d_in = d, c.d_sae = (int)F, c.k = 1;
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) exit(1);
    memcpy(s->p[LP_SAE_W_DEC], buf, len);
    free(buf);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: match_bench A.f32 B.f32 F d OUT.col\n");
        return 2;
    }
    int64_t F = atoll(argv[3]);
    int d = atoi(argv[4]);
    lp_sae *a = load(argv[1], F, d), *b = load(argv[2], F, d);
    int64_t *col = malloc((size_t)F * sizeof *col);
    float *sim = malloc((size_t)F * sizeof(float)), *best = malloc((size_t)F * sizeof(float));
    float *bestb = malloc((size_t)F * sizeof(float));
    int32_t *arg = malloc((size_t)F * sizeof(int32_t)), *argb = malloc((size_t)F * sizeof(int32_t));
    double t0 = lp_now();
    if (lp_match_one_to_one(a, b, LP_MATCH_DEC, col, sim)) return 1;
    double t1 = lp_now();
    if (lp_max_match(a, b, LP_MATCH_DEC, best, arg, bestb, argb)) return 1;
    double t2 = lp_now(), tot = 0;
    for (int64_t i = 0; i < F; i++) tot += sim[i];
    FILE *f = fopen(argv[5], "wb");
    fwrite(col, sizeof *col, (size_t)F, f);
    fclose(f);
    printf("%.3f %.3f %.9g\n", 1e3 * (t1 - t0), 1e3 * (t2 - t1), tot);
    return 0;
}
