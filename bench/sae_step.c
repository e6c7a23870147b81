/* sae_step.c — loupe side of bench/sae_step: one TopK SAE training step
 * (forward, AuxK-free backward, Adam with the decoder constraint) at
 * d = 512, F = 16384, k = 32, batch 4096, against the encoder GEMM alone. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "loupe/sae.h"

int main(int argc, char **argv) {
    int d = 512, F = 16384, k = 32, B = 4096, iters = argc > 1 ? atoi(argv[1]) : 5;
    if (argc > 2) lp_set_threads(atoi(argv[2]));
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = LP_SAE_TOPK;
    c.d_in = d;
    c.d_sae = F;
    c.k = k;
    c.k_aux = 0;
    lp_sae *s, *g, *m, *v;
    lp_sae_work *w;
    if (lp_sae_new(&s, &c) || lp_sae_like(&g, s) || lp_sae_like(&m, s) || lp_sae_like(&v, s) ||
        lp_sae_work_new(&w, s, B)) {
        fprintf(stderr, "%s\n", lp_errmsg());
        return 1;
    }
    lp_sae_init(s, 1);
    float *x = lp_malloc_aligned(sizeof(float) * B * d), *pre = lp_malloc_aligned(sizeof(float) * B * F);
    lp_rng r;
    lp_rng_seed(&r, 2);
    for (int i = 0; i < B * d; i++) x[i] = lp_rng_normal(&r);
    lp_adam a = {1e-3f, 0.9f, 0.999f, 1e-8f};
    lp_sae_stats st;
    double best_step = 1e30, best_gemm = 1e30;
    for (int it = 0; it < iters + 1; it++) {
        double t0 = lp_now();
        lp_sae_grads(s, g, w, x, B, NULL, &st);
        lp_sae_adam_step(s, g, m, v, &a, it + 1);
        double t1 = lp_now();
        lp_sgemm(0, 1, B, F, d, 1.0f, x, d, s->p[LP_SAE_W_ENC], d, 0.0f, pre, F);
        double t2 = lp_now();
        if (it > 0) { /* first round is warm-up */
            if (t1 - t0 < best_step) best_step = t1 - t0;
            if (t2 - t1 < best_gemm) best_gemm = t2 - t1;
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("loupe_ms=%.2f gemm_ms=%.2f peak_mib=%.0f l0=%.1f threads=%d gemm=%s\n", 1e3 * best_step, 1e3 * best_gemm,
           ru.ru_maxrss / 1024.0, st.l0, lp_threads(), lp_gemm_backend());
    return 0;
}
