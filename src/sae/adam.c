/* adam.c — Adam over an SAE's single parameter block, fused with the
 * unit-norm decoder constraint and with zeroing the gradient, so one pass
 * over memory does the whole optimiser step. */
#include <math.h>
#include <string.h>

#include "loupe/sae.h"

static inline void adam1(float *p, float *g, float *m, float *v, int64_t n, float b1, float b2,
                         float step, float bc2s, float eps) {
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2s + eps);
        g[i] = 0.0f;
    }
}

void lp_sae_adam_step(lp_sae *s, lp_sae *g, lp_sae *m, lp_sae *v, const lp_adam *o, int64_t t) {
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    const float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    const float step = o->lr / bc1, bc2s = sqrtf(bc2);
    const int d = s->cfg.d_in, F = s->cfg.d_sae, nd = s->cfg.normalize_decoder;
    for (int k = 0; k < LP_SAE_NP; k++) {
        if (!s->p_size[k]) continue;
        float *P = s->p[k], *G = g->p[k], *M = m->p[k], *V = v->p[k];
        if (k == LP_SAE_W_DEC) {
#pragma omp parallel for schedule(static)
            for (int f = 0; f < F; f++) {
                float *pr = P + (int64_t)f * d, *gr = G + (int64_t)f * d;
                if (nd) { /* remove the gradient component parallel to the row */
                    float dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (int i = 0; i < d; i++) dot += gr[i] * pr[i];
                    for (int i = 0; i < d; i++) gr[i] -= dot * pr[i];
                }
                adam1(pr, gr, M + (int64_t)f * d, V + (int64_t)f * d, d, b1, b2, step, bc2s, eps);
                if (nd) {
                    float ss = 0;
#pragma omp simd reduction(+ : ss)
                    for (int i = 0; i < d; i++) ss += pr[i] * pr[i];
                    float inv = ss > 0 ? 1.0f / sqrtf(ss) : 0.0f;
                    for (int i = 0; i < d; i++) pr[i] *= inv;
                }
            }
        } else {
            int64_t n = (int64_t)s->p_size[k], chunk = 16384;
#pragma omp parallel for schedule(static)
            for (int64_t c0 = 0; c0 < n; c0 += chunk)
                adam1(P + c0, G + c0, M + c0, V + c0, n - c0 < chunk ? n - c0 : chunk, b1, b2, step,
                      bc2s, eps);
        }
    }
}
