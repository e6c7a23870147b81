/* arch.h — (internal) the per-architecture pieces of an SAE and the shared
 * workspace of the sparse forward/backward. An architecture supplies how
 * pre-activations become sparse codes (select), its sparsity penalty, and
 * how a code gradient becomes a pre-activation gradient; the trainer loop
 * and the sparse kernels are shared by all of them. */
#ifndef LOUPE_SAE_ARCH_H
#define LOUPE_SAE_ARCH_H

#include "loupe/sae.h"

typedef struct {
    /* pre is [B,F] WITHOUT b_enc (added while reading). Fills codes with
     * (latent, value, pre+b_enc) per row. training: batch-level selection
     * where it differs from inference (batchtopk). For batchtopk training,
     * *kept_min gets the smallest kept value (for the θ update). */
    int (*select)(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                  float *kept_min);
    /* Penalty value (already mean over rows); adds ∂penalty/∂val into dval
     * and parameter gradients into g. NULL: no penalty. */
    double (*penalty)(const lp_sae *s, const lp_sae_codes *c, int B, float *dval, lp_sae *g);
    /* dpre[j] from dval[j] (and θ-gradients into g). NULL: dpre = dval where val > 0. */
    void (*dpre)(const lp_sae *s, const lp_sae_codes *c, int B, const float *dval, float *dpre,
                 lp_sae *g);
} lp_sae_ops;

const lp_sae_ops *lp_sae_ops_for(int arch);

/* codes buffer management */
int lp_codes_reserve(lp_sae_codes *c, int B, int64_t nnz);
void lp_codes_free(lp_sae_codes *c);

/* shared selection helpers (encode.c) */
/* per-row top-k of relu(pre + b_enc) over latents allowed by mask (NULL: all);
 * entries sorted by descending value within each row. */
int lp_select_topk_rows(const float *pre, const float *b_enc, int B, int F, int k,
                        const uint8_t *mask, lp_sae_codes *c);
/* per-row entries with pre + b_enc > thr[f] (thr_scalar used when thr NULL). */
int lp_select_threshold(const float *pre, const float *b_enc, int B, int F, const float *thr,
                        float thr_scalar, lp_sae_codes *c);

#endif
