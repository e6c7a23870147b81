/* arch_boost.c — the stitched residual SAE ("SAE Boost", arXiv 2507.12990)
 * at inference: base latents then residual latents, each with its own
 * threshold, z = pre·1[pre > θ_f], θ_f = exp(log_threshold_f) — the forward
 * of a JumpReLU SAE, which is also how it is saved. It is built by
 * lp_sae_stitch (stitch.c) and never trained as a whole (the trainer refuses
 * it), so it has no penalty and no pseudo-derivatives. */
#include <math.h>
#include <stdlib.h>

#include "sae/arch.h"

static int boost_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                        float *kept_min) {
    (void)training;
    (void)kept_min;
    const int F = s->cfg.d_sae;
    const float *lt = s->p[LP_SAE_LOG_THRESHOLD];
    float *thr = malloc((size_t)F * sizeof *thr);
    if (!thr) return lp_fail(LP_ERR_NOMEM, "boost: out of memory");
    for (int f = 0; f < F; f++) thr[f] = expf(lt[f]);
    int rc = lp_select_threshold(pre, s->p[LP_SAE_B_ENC], B, F, thr, 0.0f, c);
    free(thr);
    return rc;
}

const lp_sae_ops lp_sae_ops_boost = {.select = boost_select};
