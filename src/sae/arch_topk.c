/* arch_topk.c — TopK SAE: keep the k largest ReLU pre-activations per row
 * (Gao et al. 2024). No penalty; sparsity is the constraint itself. */
#include "sae/arch.h"

static int topk_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                       float *kept_min) {
    (void)training;
    (void)kept_min;
    return lp_select_topk_rows(pre, s->p[LP_SAE_B_ENC], B, s->cfg.d_sae, s->cfg.k, NULL, c);
}

const lp_sae_ops lp_sae_ops_topk = {.select = topk_select};
