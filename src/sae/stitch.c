/* stitch.c — residual SAEs for domain adaptation ("SAE Boost", arXiv
 * 2507.12990): inference reconstructions of a frozen base SAE (the
 * residual's training target is x − x̂_base, see lp_train_opts.base) and
 * the stitching of base + residual into one SAE.
 *
 * Stitching. The base (norm scale s1) computes pre1 = W1 (x s1 − b_dec1) +
 * b1 and keeps pre1 > θ1; the residual (no decoder bias, norm scale s2)
 * computes pre2 = W2 (x s2) + b2 and keeps pre2 > θ2, reconstructing
 * ê = W_dec2ᵀ z2 / s2. In the base's space (ρ = s1/s2) the residual's
 * latents ρ·z2 come from the same encoder input x s1 − b_dec1 with
 *   b2' = ρ b2 + W2 b_dec1,   θ2' = ρ θ2,
 * and decode with W_dec2 unchanged, so one SAE with W_enc = [W1; W2],
 * b_enc = [b1; b2'], W_dec = [W_dec1; W_dec2], b_dec = b_dec1 and per-latent
 * thresholds [θ1; θ2'] gives x̂ = x̂_base + ê exactly (up to float rounding
 * of b2'). Thresholds: relu 0, batchtopk its θ, jumprelu/boost exp(log θ_f);
 * they are stored as log θ chosen so that expf gives θ back exactly
 * (θ = 0 as log θ = −104, whose float exp is 0). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/sae.h"
#include "sae/arch.h"

void lp_sae_infer_free(lp_sae_infer *w) {
    lp_free(w->pre);
    lp_free(w->xn);
    lp_free(w->xc);
    lp_codes_free(&w->codes);
    memset(w, 0, sizeof *w);
}

int lp_sae_infer_run(lp_sae_infer *w, const lp_sae *s, const float *x, int B, float *xhat) {
    const int d = s->cfg.d_in;
    int64_t cols = lp_sae_enc_rows(s);
    if (B > w->cap || cols > w->pre_cols) {
        lp_free(w->pre);
        lp_free(w->xn);
        lp_free(w->xc);
        w->pre = lp_malloc_aligned((size_t)B * (size_t)cols * sizeof(float));
        w->xn = lp_malloc_aligned((size_t)B * d * sizeof(float));
        w->xc = lp_malloc_aligned((size_t)B * d * sizeof(float));
        if (!w->pre || !w->xn || !w->xc) {
            lp_sae_infer_free(w);
            return lp_fail(LP_ERR_NOMEM, "out of memory for SAE inference on %d rows", B);
        }
        w->cap = B;
        w->pre_cols = cols;
    }
    const float sc = s->cfg.norm_scale;
    for (int64_t i = 0; i < (int64_t)B * d; i++) w->xn[i] = x[i] * sc;
    lp_sae_pre(s, w->xn, B, w->xc, w->pre);
    int rc = lp_sae_ops_for(s->cfg.arch)->select(s, w->pre, B, &w->codes, 0, NULL);
    if (rc) return rc;
    lp_sae_decode(s, &w->codes, xhat);
    for (int64_t i = 0; i < (int64_t)B * d; i++) xhat[i] /= sc;
    return LP_OK;
}

int lp_sae_reconstruct(const lp_sae *s, const float *x, int B, float *xhat) {
    lp_sae_infer w = {0};
    int rc = lp_sae_infer_run(&w, s, x, B, xhat);
    lp_sae_infer_free(&w);
    return rc;
}

static int threshold_arch(int arch) {
    return arch == LP_SAE_RELU || arch == LP_SAE_BATCHTOPK || arch == LP_SAE_JUMPRELU || arch == LP_SAE_BOOST;
}

int lp_sae_stitch_check(const lp_sae *base) {
    if (!threshold_arch(base->cfg.arch))
        return lp_fail(LP_ERR_ARG,
                       "a %s base SAE cannot be stitched: its inference is not a per-latent threshold (use a "
                       "batchtopk, jumprelu, relu or boost base)",
                       lp_sae_arch_name(base->cfg.arch));
    return LP_OK;
}

/* inference threshold of latent f in s's own (normalised) space */
static float threshold_of(const lp_sae *s, int64_t f) {
    switch (s->cfg.arch) {
    case LP_SAE_BATCHTOPK: return s->theta;
    case LP_SAE_JUMPRELU:
    case LP_SAE_BOOST: return expf(s->p[LP_SAE_LOG_THRESHOLD][f]);
    default: return 0.0f;
    }
}

/* a float log θ whose expf is exactly th when one exists near logf(th) */
static float log_threshold(float th) {
    if (!(th > 0.0f)) return -104.0f;
    float c = logf(th), best = c, up = c, dn = c;
    if (expf(c) == th) return c;
    float berr = fabsf(expf(c) - th);
    for (int i = 0; i < 16; i++) {
        up = nextafterf(up, INFINITY);
        dn = nextafterf(dn, -INFINITY);
        if (expf(up) == th) return up;
        if (expf(dn) == th) return dn;
        if (fabsf(expf(up) - th) < berr) berr = fabsf(expf(up) - th), best = up;
        if (fabsf(expf(dn) - th) < berr) berr = fabsf(expf(dn) - th), best = dn;
    }
    return best;
}

int lp_sae_stitch(lp_sae **out, const lp_sae *base, const lp_sae *res) {
    *out = NULL;
    int rc = lp_sae_stitch_check(base);
    if (rc) return rc;
    const int d = base->cfg.d_in;
    if (res->cfg.d_in != d)
        return lp_fail(LP_ERR_ARG, "the residual SAE has d_in=%d but the base has d_in=%d", res->cfg.d_in, d);
    if (!threshold_arch(res->cfg.arch) || res->cfg.arch == LP_SAE_BOOST)
        return lp_fail(LP_ERR_ARG, "a %s residual SAE cannot be stitched (batchtopk, jumprelu or relu)",
                       lp_sae_arch_name(res->cfg.arch));
    for (int i = 0; i < d; i++)
        if (res->p[LP_SAE_B_DEC][i] != 0.0f)
            return lp_fail(LP_ERR_ARG, "the residual SAE has a decoder bias; a residual SAE must not (no_decoder_bias)");
    const int64_t F1 = base->cfg.d_sae, F2 = res->cfg.d_sae;
    if (F1 + F2 > (1 << 26)) return lp_fail(LP_ERR_ARG, "stitched SAE of %lld latents is too large", (long long)(F1 + F2));
    lp_sae_config c = base->cfg;
    c.arch = LP_SAE_BOOST;
    c.d_sae = (int)(F1 + F2);
    c.base_latents = (int)F1;
    c.k = res->cfg.k;
    c.no_decoder_bias = 0;
    c.tokens_trained = base->cfg.tokens_trained + res->cfg.tokens_trained;
    lp_sae *s = NULL;
    if ((rc = lp_sae_new(&s, &c))) return rc;
    const float rho = base->cfg.norm_scale / res->cfg.norm_scale;
    float *We = s->p[LP_SAE_W_ENC], *be = s->p[LP_SAE_B_ENC], *Wd = s->p[LP_SAE_W_DEC], *lt = s->p[LP_SAE_LOG_THRESHOLD];
    memcpy(We, base->p[LP_SAE_W_ENC], (size_t)(F1 * d) * sizeof(float));
    memcpy(We + F1 * d, res->p[LP_SAE_W_ENC], (size_t)(F2 * d) * sizeof(float));
    memcpy(Wd, base->p[LP_SAE_W_DEC], (size_t)(F1 * d) * sizeof(float));
    memcpy(Wd + F1 * d, res->p[LP_SAE_W_DEC], (size_t)(F2 * d) * sizeof(float));
    memcpy(be, base->p[LP_SAE_B_ENC], (size_t)F1 * sizeof(float));
    memcpy(s->p[LP_SAE_B_DEC], base->p[LP_SAE_B_DEC], (size_t)d * sizeof(float));
    const float *bd1 = base->p[LP_SAE_B_DEC], *W2 = res->p[LP_SAE_W_ENC], *b2 = res->p[LP_SAE_B_ENC];
    for (int64_t f = 0; f < F2; f++) {
        double acc = (double)b2[f] * rho;
        for (int i = 0; i < d; i++) acc += (double)W2[f * d + i] * bd1[i];
        be[F1 + f] = (float)acc;
    }
    for (int64_t f = 0; f < F1; f++)
        lt[f] = base->cfg.arch == LP_SAE_JUMPRELU || base->cfg.arch == LP_SAE_BOOST ? base->p[LP_SAE_LOG_THRESHOLD][f]
                                                                                  : log_threshold(threshold_of(base, f));
    for (int64_t f = 0; f < F2; f++) lt[F1 + f] = log_threshold(threshold_of(res, f) * rho);
    if (!lp_all_finite(s->params, s->n_params)) {
        lp_sae_free(s);
        return lp_fail(LP_ERR_NUM, "stitching gave non-finite weights");
    }
    *out = s;
    return LP_OK;
}
