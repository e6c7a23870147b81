/* forward.c — loupe side of bench/forward: batched forward tokens/s of a
 * model on a fixed-seed random batch (all logits), best of several passes. */
#include <stdio.h>
#include <stdlib.h>

#include "loupe/model.h"

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: forward MODEL B T ITERS [THREADS]\n");
        return 2;
    }
    int B = atoi(argv[2]), T = atoi(argv[3]), iters = atoi(argv[4]);
    if (argc > 5) lp_set_threads(atoi(argv[5]));
    lp_model *m;
    lp_runner *r;
    if (lp_model_load(&m, argv[1]) || lp_runner_new(&r, m, B, T)) {
        fprintf(stderr, "%s\n", lp_errmsg());
        return 1;
    }
    int *tok = malloc(sizeof(int) * B * T);
    lp_rng g;
    lp_rng_seed(&g, 1234);
    for (int i = 0; i < B * T; i++) tok[i] = (int)lp_rng_below(&g, (uint64_t)m->cfg.vocab_size);
    float *logits = malloc(sizeof(float) * (size_t)B * T * m->cfg.vocab_size);
    lp_forward(r, tok, B, T, 0, NULL, LP_LOGITS_ALL, logits); /* warm-up */
    double best = 1e30, total = 0;
    for (int i = 0; i < iters; i++) {
        double t0 = lp_now();
        lp_forward(r, tok, B, T, 0, NULL, LP_LOGITS_ALL, logits);
        double dt = lp_now() - t0;
        total += dt;
        if (dt < best) best = dt;
    }
    printf("loupe_tok_s=%.1f best_iter_tok_s=%.1f threads=%d gemm=%s\n", (double)B * T * iters / total,
           (double)B * T / best, lp_threads(), lp_gemm_backend());
    free(tok);
    free(logits);
    lp_runner_free(r);
    lp_model_free(m);
    return 0;
}
