/* match_bench.c — timing driver for bench/match: reads two decoders A, B
 * [F, d] (raw f32), runs loupe's one-to-one matching (cosine matrix + JV)
 * and max matching, writes the assignment and prints the times. */
#include <stdio.h>
#include <stdlib.h>

#include "loupe/match.h"

static float *load(const char *p, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    if (lp_read_file(p, &buf, &len) || len != n * sizeof(float)) {
        fprintf(stderr, "match_bench: %s: %s\n", p, lp_errmsg());
        exit(1);
    }
    return (float *)buf;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: match_bench A.f32 B.f32 F d OUT.col\n");
        return 2;
    }
    int64_t F = atoll(argv[3]);
    int d = atoi(argv[4]);
    float *A = load(argv[1], (size_t)F * d), *B = load(argv[2], (size_t)F * d);
    float *S = lp_malloc_aligned((size_t)F * F * sizeof(float));
    int64_t *col = malloc((size_t)F * sizeof *col);
    float *best = malloc((size_t)F * sizeof(float));
    int32_t *arg = malloc((size_t)F * sizeof(int32_t));
    double t0 = lp_now();
    if (lp_cosine_matrix(A, NULL, F, B, NULL, F, d, S)) return 1;
    for (int64_t i = 0; i < F * F; i++) S[i] = -S[i];
    double t1 = lp_now(), tot = 0;
    if (lp_assign_min(S, F, F, col, &tot)) return 1;
    double t2 = lp_now();
    if (lp_max_cosine(A, NULL, F, B, NULL, F, d, best, arg, NULL, NULL)) return 1;
    double t3 = lp_now();
    FILE *f = fopen(argv[5], "wb");
    fwrite(col, sizeof *col, (size_t)F, f);
    fclose(f);
    printf("%.3f %.3f %.3f %.9g\n", 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2), -tot);
    return 0;
}
