/* arch_relu.c — ReLU SAE with an L1 penalty weighted by decoder row norms
 * (Anthropic's April-2024 recipe): penalty = λ/B Σ_b Σ_f z_bf ‖W_dec[f]‖. */
#include <math.h>

#include "sae/arch.h"

static int relu_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                       float *kept_min) {
    (void)training;
    (void)kept_min;
    return lp_select_threshold(pre, s->p[LP_SAE_B_ENC], B, s->cfg.d_sae, NULL, 0.0f, c);
}

static double relu_penalty(const lp_sae *s, const lp_sae_codes *c, int B, float *dval, lp_sae *g) {
    const int d = s->cfg.d_in;
    const float lam = s->cfg.l1_coeff / (float)B;
    const float *Wd = s->p[LP_SAE_W_DEC];
    float *gWd = g->p[LP_SAE_W_DEC];
    double pen = 0;
    int64_t nnz = c->rowptr[c->B];
    /* ∂/∂val = λ‖w_f‖ ; ∂/∂w_f = λ val w_f/‖w_f‖ (summed per latent below) */
    for (int64_t j = 0; j < nnz; j++) {
        const float *w = Wd + (int64_t)c->idx[j] * d;
        float nrm = 0;
#pragma omp simd reduction(+ : nrm)
        for (int i = 0; i < d; i++) nrm += w[i] * w[i];
        nrm = sqrtf(nrm);
        pen += (double)lam * c->val[j] * nrm;
        dval[j] += lam * nrm;
        float coef = nrm > 0 ? lam * c->val[j] / nrm : 0.0f;
        float *gw = gWd + (int64_t)c->idx[j] * d;
        for (int i = 0; i < d; i++) gw[i] += coef * w[i];
    }
    return pen;
}

const lp_sae_ops lp_sae_ops_relu = {.select = relu_select, .penalty = relu_penalty};
