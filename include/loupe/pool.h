/* loupe/pool.h — a pooled SAE built from the latents that several seeds
 * agree on (method notes §1.7):
 *
 *   1. every decoder row (a, i) of N SAEs gets a support
 *      s(a,i) = #{b ≠ a : max_j cos(W_dec^a[i], W_dec^b[j]) ≥ τ}
 *   2. greedy clustering in order of support (then mean best cosine): an
 *      unused row leads a new cluster and takes, from each other seed b, its
 *      best match in b when that cosine is ≥ τ and the row is still unused
 *      (so a cluster holds at most one latent per seed)
 *   3. the `size` largest clusters become the pooled SAE's latents:
 *      W_dec row = unit(Σ members' decoder rows), W_enc row, b_enc (and
 *      thresholds) = the members' means, b_dec = the seeds' mean, all in raw
 *      input units (norm_scale 1)
 *
 * Fine-tune the result with lp_sae_train and lp_train_opts.warm_start = 1.
 */
#ifndef LOUPE_POOL_H
#define LOUPE_POOL_H

#include <stdint.h>

#include "loupe/sae.h"
#include "loupe/stability.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float tau;    /* decoder cosine to join a cluster (default 0.7) */
    int64_t size; /* latents of the pooled SAE (0: the first SAE's d_sae) */
} lp_pool_opts;

typedef struct {
    int64_t rows;            /* decoder rows pooled (Σ d_sae) */
    int64_t clusters;        /* clusters formed */
    int64_t kept;            /* latents of the pooled SAE */
    int64_t size_hist[65];   /* clusters with k members, k = 1..N */
    int64_t kept_hist[65];   /* the same for the kept clusters */
    double kept_mean_size;
} lp_pool_info;

/* st: lp_stability_match of the same SAEs (any mode; its max matches drive
 * the clustering). All SAEs must share arch and d_in. The pooled SAE copies
 * the first SAE's config (d_sae = kept, seed 0, tokens_trained 0). */
int lp_pool_build(const lp_sae *const *saes, int n, const lp_stability *st, const lp_pool_opts *o, lp_sae **out,
                  lp_pool_info *info);

#ifdef __cplusplus
}
#endif
#endif
