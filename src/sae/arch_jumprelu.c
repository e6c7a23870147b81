/* arch_jumprelu.c — JumpReLU SAE (Rajamanoharan et al. 2024): per-latent
 * thresholds θ_f = exp(log_threshold_f), z = pre·H(pre − θ), an L0 penalty,
 * and straight-through pseudo-derivatives with a rectangle kernel of width
 * ε for θ. Codes include the "window" entries θ−ε/2 < pre ≤ θ with value 0:
 * they decode to nothing but carry the θ gradient. */
#include <math.h>
#include <stdlib.h>

#include "sae/arch.h"

static int jump_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                       float *kept_min) {
    (void)kept_min;
    const int F = s->cfg.d_sae;
    const float *lt = s->p[LP_SAE_LOG_THRESHOLD];
    float *thr = malloc((size_t)F * sizeof *thr);
    if (!thr) return lp_fail(LP_ERR_NOMEM, "jumprelu: out of memory");
    float half = training ? 0.5f * s->cfg.jump_bandwidth : 0.0f;
    for (int f = 0; f < F; f++) thr[f] = expf(lt[f]) - half;
    int rc = lp_select_threshold(pre, s->p[LP_SAE_B_ENC], B, F, thr, 0.0f, c);
    if (!rc) {
        int64_t nnz = c->rowptr[B];
        for (int64_t j = 0; j < nnz; j++)
            if (!(c->pre[j] > expf(lt[c->idx[j]]))) c->val[j] = 0.0f; /* window only */
    }
    free(thr);
    return rc;
}

/* K((pre−θ)/ε) = 1[|pre−θ| < ε/2] */
static inline int in_window(float pre, float th, float eps) { return fabsf(pre - th) < 0.5f * eps; }

static double jump_penalty(const lp_sae *s, const lp_sae_codes *c, int B, float *dval, lp_sae *g) {
    (void)dval;
    const float lam = s->cfg.l0_coeff / (float)B, eps = s->cfg.jump_bandwidth;
    const float *lt = s->p[LP_SAE_LOG_THRESHOLD];
    float *glt = g->p[LP_SAE_LOG_THRESHOLD];
    double pen = 0;
    int64_t nnz = c->rowptr[c->B];
    for (int64_t j = 0; j < nnz; j++) {
        int f = c->idx[j];
        float th = expf(lt[f]);
        if (c->pre[j] > th) pen += lam;
        /* ∂H/∂θ = −(1/ε)K ; chain to log θ: ·θ */
        if (in_window(c->pre[j], th, eps)) glt[f] += -(lam / eps) * th;
    }
    return pen;
}

static void jump_dpre(const lp_sae *s, const lp_sae_codes *c, int B, const float *dval, float *dpre,
                      lp_sae *g) {
    (void)B;
    const float eps = s->cfg.jump_bandwidth;
    const float *lt = s->p[LP_SAE_LOG_THRESHOLD];
    float *glt = g->p[LP_SAE_LOG_THRESHOLD];
    int64_t nnz = c->rowptr[c->B];
    for (int64_t j = 0; j < nnz; j++) {
        int f = c->idx[j];
        float th = expf(lt[f]);
        dpre[j] = c->pre[j] > th ? dval[j] : 0.0f;
        /* ∂z/∂θ = −(θ/ε)K ; chain to log θ: ·θ */
        if (in_window(c->pre[j], th, eps)) glt[f] += -(th / eps) * dval[j] * th;
    }
}

const lp_sae_ops lp_sae_ops_jumprelu = {.select = jump_select, .penalty = jump_penalty, .dpre = jump_dpre};
