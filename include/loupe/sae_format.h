/* loupe/sae_format.h — SAEs on disk in the two layouts the ecosystem reads:
 *
 *   SAELens  (DIR/cfg.json + DIR/sae_weights.safetensors)
 *     W_enc [d_in, d_sae]  b_enc [d_sae]  W_dec [d_sae, d_in]  b_dec [d_in]
 *     threshold [d_sae]    (jumprelu; batchtopk as a constant threshold)
 *   sparsify (EleutherAI; DIR/cfg.json + DIR/sae.safetensors)
 *     encoder.weight [d_sae, d_in]  encoder.bias [d_sae]  W_dec [d_sae, d_in]  b_dec [d_in]
 *
 * Both compute pre = W_enc (x − b_dec) + b_enc on the raw activation x, as
 * loupe does on xn = x · norm_scale, so saving folds norm_scale s into the
 * biases (ReLU, TopK and JumpReLU are positively homogeneous):
 *   W_enc, W_dec unchanged; b_enc /= s; b_dec /= s; θ /= s (jumprelu, batchtopk).
 * The folded SAE's latents on x are the original latents on x·s divided by s,
 * and its reconstruction is x̂ = x̂n / s directly. cfg.json also carries a
 * "loupe" object (arch, k, training provenance) so loupe reloads exactly what
 * it saved; files written by SAELens or sparsify themselves load without it.
 *
 * The variants (see loupe/sae.h):
 *   hiertopk  saved as a TopK SAE with k = K (SAELens "topk", sparsify
 *             "topk"): either library runs it at K; loupe.arch "hiertopk"
 *             tells loupe that any k ≤ K is meaningful (loupe eval --k).
 *   boost     saved as a JumpReLU SAE (SAELens "jumprelu" + threshold; the
 *             sparsify layout with activation "boost" + threshold), which is
 *             exactly its forward; loupe.base_latents says where the
 *             residual's latents start. SAELens can load and run it as is.
 *   kron      SAELens layout only, architecture "kron" (loupe's own; SAELens
 *             has no such class) with the factorised encoder:
 *               W_p [d_in, h·m]  b_p [h·m]  W_q [d_in, h·n]  b_q [h·n]
 *               W_dec [h·m·n, d_in]  b_dec [d_in]
 *             and loupe.kron_heads / kron_m / kron_n / kron_and. A dense
 *             W_enc cannot express z = √(p q) (nor p·q), so there is no
 *             export to a plain SAELens/sparsify SAE: the decoder (W_dec,
 *             b_dec, under SAELens's names and shapes) is directly usable by
 *             anything that only decodes or reads feature directions; encoding
 *             needs the factorised encoder above (15 lines of numpy: see
 *             tests/ref/sae_variants_ref.py). Folding s: mAND is positively
 *             homogeneous, so b_p /= s, b_q /= s; the plain product is not:
 *             W_p *= s (b_p kept), b_q /= s.
 *             The sparsify layout refuses kron SAEs.
 */
#ifndef LOUPE_SAE_FORMAT_H
#define LOUPE_SAE_FORMAT_H

#include <stddef.h>

#include "loupe/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_SAE_FMT_SAELENS, LP_SAE_FMT_SPARSIFY };

/* "saelens" / "sparsify" ("?" otherwise). */
const char *lp_sae_format_name(int format);
/* Parse "saelens" or "sparsify" (LP_ERR_ARG otherwise). */
int lp_sae_format_parse(const char *s, int *format);

/* Save to DIR (created) in the given layout, folding norm_scale into the
 * weights as above. Both files are written completely to temporaries first
 * and then renamed into place; on error nothing half-written remains. A DIR
 * that already holds the other layout's weights file is refused. */
int lp_sae_save(const lp_sae *s, const char *dir, int format);

/* Load either layout (detected by which weights file exists), validating
 * cfg.json, tensor shapes against cfg d_in/d_sae, finiteness, k <= d_sae and
 * the architecture. The result has norm_scale = 1. expect_d_in > 0: error if
 * the SAE's d_in differs. Release with lp_sae_free. */
int lp_sae_load(lp_sae **out, const char *dir, int expect_d_in);

/* Which layout DIR holds (by its weights file). */
int lp_sae_detect_format(const char *dir, int *format);

/* A short multi-line human summary (arch, d_in, d_sae, k or threshold,
 * model, hook, dataset, tokens, decoder-norm range, norm_scale). The file
 * layout is not part of an lp_sae: see lp_sae_detect_format. Truncates to n. */
int lp_sae_describe(const lp_sae *s, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
