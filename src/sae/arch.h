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
    /* ---- optional hooks of the variants (NULL for the core four) ---- */
    /* A reconstruction loss other than (1/B) Σ_b ‖x̂_b − t_b‖² (hiertopk).
     * Given the codes (rows as select ordered them), the full reconstruction
     * xhat [B,d] and the target t [B,d]: returns the loss; writes dval [nnz]
     * (∂L/∂val), dbias [B,d] (row b's part of ∂L/∂b_dec through the decoder)
     * and ADDS the W_dec gradients of the codes into g. */
    int (*recon)(const lp_sae *s, const lp_sae_codes *c, const float *xhat, const float *t, int B,
                 float *dval, float *dbias, lp_sae *g, double *loss);
    /* AuxK selection among dead latents (mask [F]): per row the k largest
     * latent values (NULL: lp_select_topk_rows on pre + b_enc). */
    int (*select_aux)(const lp_sae *s, const float *pre, int B, int k, const uint8_t *mask,
                      lp_sae_codes *c);
    /* An encoder whose rows are not one per latent (kron): from the entries'
     * dval (main codes c, then AuxK codes a when a is not NULL; dval laid out
     * [c's nnz, a's nnz]) ADD ∂L/∂W_enc, ∂L/∂b_enc into g and write
     * dxc_sum [d] = Σ_b ∂L/∂xc_b (the gradient reaching the encoder input
     * xc = xn − b_dec). pre [B, rows] without b_enc, xc [B,d]; scratch holds
     * B·rows floats. */
    int (*enc_backward)(const lp_sae *s, const float *pre, const float *xc, int B, const lp_sae_codes *c,
                        const lp_sae_codes *a, const float *dval, float *scratch, float *dxc_sum, lp_sae *g);
} lp_sae_ops;

const lp_sae_ops *lp_sae_ops_for(int arch);

/* Rows of W_enc (and columns of pre): d_sae, or heads·(m+n) for kron. */
int64_t lp_sae_enc_rows(const lp_sae *s);
/* pre [B, enc_rows] = (xn − b_dec) · W_encᵀ (b_enc is added by the selections);
 * xc [B,d] gets xn − b_dec. */
void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre);
/* kron's initialisation (sae.c calls it after drawing W_dec): P, Q rows
 * random unit-norm, b_p = b_q = 0, W_dec[g,i,j] = (P_gi + Q_gj)/‖·‖. */
void lp_sae_kron_init(lp_sae *s, lp_rng *rng);

/* Inference scratch that grows to the largest batch seen (stitch.c):
 * xhat [B,d] = the SAE's reconstruction of raw rows x (norm_scale applied
 * and undone). Zero-initialise; release with lp_sae_infer_free. */
typedef struct {
    int cap;
    int64_t pre_cols;
    float *pre, *xn, *xc;
    lp_sae_codes codes;
} lp_sae_infer;
int lp_sae_infer_run(lp_sae_infer *w, const lp_sae *s, const float *x, int B, float *xhat);
void lp_sae_infer_free(lp_sae_infer *w);

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
