/* loupe/sae.h — sparse autoencoders: one struct for every architecture,
 * sparse-aware forward/backward, the trainer, evaluation on stores, and the
 * SAELens / sparsify file layouts.
 *
 * Math (x one activation row, already divided by nothing — see norm_scale):
 *   xn   = x * norm_scale                      (E‖xn‖ = √d on the training data)
 *   pre  = W_enc (xn − b_dec) + b_enc          W_enc [F, d] (row f = encoder of latent f)
 *   z    = σ_arch(pre)                         sparse: a CSR list of (latent, value) per row
 *   x̂n   = W_decᵀ z + b_dec                    W_dec [F, d] (row f = unit-norm direction)
 *   x̂    = x̂n / norm_scale
 * Loss per batch of B rows (all in normalised space):
 *   L = (1/B) Σ_b ‖xn_b − x̂n_b‖²  + arch penalty + aux_coeff · AuxK
 *   relu:      σ = ReLU;               penalty = l1_coeff · (1/B) Σ_b Σ_f z_bf ‖W_dec[f]‖
 *   topk:      σ = keep the k largest of ReLU(pre) per row
 *   batchtopk: train: keep the k·B largest of ReLU(pre) over the batch;
 *              θ ← running mean of the smallest kept value (θ_t = (1−m)θ + m·min, m = theta_momentum);
 *              eval: z = pre · 1[pre > θ]
 *   jumprelu:  θ_f = exp(log_threshold_f); z = pre · H(pre − θ_f);
 *              penalty = l0_coeff · (1/B) Σ_b Σ_f H(pre_bf − θ_f);
 *              straight-through pseudo-derivatives with the rectangle kernel
 *              K(u) = 1[|u| < 1/2] and bandwidth ε:
 *                ∂z/∂θ = −(θ/ε) K((pre−θ)/ε),  ∂H/∂θ = −(1/ε) K((pre−θ)/ε),
 *                ∂z/∂pre = H(pre − θ),         ∂H/∂pre = 0;
 *              the θ gradient reaches log_threshold through θ (chain rule ·θ).
 *   AuxK (OpenAI, Gao et al. 2024): e = xn − x̂n (detached); among latents dead
 *   (no activation in the last dead_tokens tokens) take per row the k_aux largest
 *   ReLU(pre); ê = W_decᵀ z_aux (no bias); AuxK = Σ_b ‖e_b − ê_b‖² / Σ_b ‖e_b‖²
 *   (denominator detached); zero when no latent is dead.
 */
#ifndef LOUPE_SAE_H
#define LOUPE_SAE_H

#include <stdint.h>

#include "loupe/base.h"
#include "loupe/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The four core architectures come first (LP_SAE_ARCHS of them); the
 * variants follow (LP_SAE_NARCH counts all):
 *   hiertopk:  HierarchicalTopK (arXiv 2505.24473): TopK with k = K whose loss
 *              averages the reconstructions of every prefix of the sorted codes,
 *              L_rec = (1/B) Σ_b (1/K) Σ_{j=1..K} ‖xn_b − x̂_{b,j}‖²,
 *              x̂_j = b_dec + Σ_{t≤j} v_t W_dec[idx_t] (v_1 ≥ v_2 ≥ …); a row with
 *              n < K positive codes counts x̂_n for j > n. Inference at any k ≤ K.
 *   kron:      KronSAE with mAND (arXiv 2505.22255): F = heads·m·n latents;
 *              W_enc holds [P; Q] ([heads·m + heads·n, d]) and b_enc [b_p; b_q];
 *              p = ReLU(P (xn − b_dec) + b_p), q = ReLU(Q (xn − b_dec) + b_q);
 *              latent (g,i,j) = g·m·n + i·n + j is z = √(p_{g,i} q_{g,j}) when both
 *              are > 0, else 0 (kron_and = LP_KRON_PRODUCT: z = p·q); TopK over the
 *              F latents; ∂z/∂p = q / (2 max(z, 1e-6)) (the guarded √ gradient).
 *   boost:     a stitched residual SAE ("SAE Boost", arXiv 2507.12990): latents
 *              [0, base_latents) are a frozen base SAE's, the rest a residual
 *              SAE's; inference z = pre·1[pre > θ_f], θ_f = exp(log_threshold_f)
 *              (a JumpReLU forward); built by lp_sae_stitch, never trained. */
enum {
    LP_SAE_RELU,
    LP_SAE_TOPK,
    LP_SAE_BATCHTOPK,
    LP_SAE_JUMPRELU,
    LP_SAE_ARCHS,
    LP_SAE_HIERTOPK = LP_SAE_ARCHS,
    LP_SAE_KRON,
    LP_SAE_BOOST,
    LP_SAE_NARCH
};
enum { LP_KRON_MAND, LP_KRON_PRODUCT };

const char *lp_sae_arch_name(int arch);
int lp_sae_arch_parse(const char *s, int *arch);

typedef struct {
    int arch;
    int d_in, d_sae, k;
    float l1_coeff;        /* relu */
    float l0_coeff;        /* jumprelu */
    float jump_bandwidth;  /* jumprelu ε */
    float jump_init_threshold;
    float theta_momentum;  /* batchtopk running-threshold momentum */
    int k_aux;             /* AuxK latents per row (0: off) */
    float aux_coeff;       /* 1/32 */
    int64_t dead_tokens;   /* window for "dead" */
    int normalize_decoder; /* keep W_dec rows unit-norm (default 1) */
    float norm_scale;      /* input scaling, folded back into weights on save */
    int kron_heads, kron_m, kron_n; /* kron: d_sae = heads·m·n */
    int kron_and;          /* kron: LP_KRON_MAND (√(p q), default) or LP_KRON_PRODUCT (p q) */
    int no_decoder_bias;   /* b_dec stays 0 (boost's residual SAE) */
    int base_latents;      /* boost: latents [0, base_latents) come from the base SAE */
    /* provenance */
    char model[512], hook[128], dataset[512];
    int64_t tokens_trained;
    int64_t dataset_bytes; /* bytes of `dataset` the training store was harvested from */
    int context_size;      /* context length of that harvest */
    uint64_t seed;
} lp_sae_config;

void lp_sae_config_default(lp_sae_config *c);

/* Parameters in one allocation: W_enc [F,d], b_enc [F], W_dec [F,d], b_dec [d],
 * log_threshold [F] (jumprelu only; size 0 otherwise). */
enum { LP_SAE_W_ENC, LP_SAE_B_ENC, LP_SAE_W_DEC, LP_SAE_B_DEC, LP_SAE_LOG_THRESHOLD, LP_SAE_NP };

typedef struct {
    lp_sae_config cfg;
    float *params;
    size_t n_params;
    size_t p_size[LP_SAE_NP];
    float *p[LP_SAE_NP];
    float theta; /* batchtopk inference threshold (a buffer, not trained) */
} lp_sae;

int lp_sae_new(lp_sae **out, const lp_sae_config *c);
void lp_sae_free(lp_sae *s);
/* Same layout of zeros (gradients, optimiser moments). */
int lp_sae_like(lp_sae **out, const lp_sae *s);
/* Initialise: W_dec rows random unit-norm from seed, W_enc = W_dec (i.e. W_decᵀ
 * as an encoder), b_enc = 0, b_dec = 0, log_threshold = log(init threshold). */
void lp_sae_init(lp_sae *s, uint64_t seed);

/* Sparse codes for a batch: CSR rows. */
typedef struct {
    int B, cap;      /* rows, capacity of idx/val */
    int64_t *rowptr; /* [B+1] */
    int32_t *idx;    /* [nnz] latent ids */
    float *val;      /* [nnz] activation values */
    float *pre;      /* [nnz] pre-activations (for backward) */
} lp_sae_codes;

/* Encode rows of x (already normalised) into sparse codes. `training` selects
 * batch-level top-k for batchtopk (and updates theta); pre is a [B,F] scratch. */
int lp_sae_encode(lp_sae *s, const float *xn, int B, float *pre, lp_sae_codes *codes, int training);
/* x̂n [B,d] = W_decᵀ z + b_dec */
void lp_sae_decode(const lp_sae *s, const lp_sae_codes *codes, float *xhat);

/* ---- training step ------------------------------------------------------ */
typedef struct lp_sae_work lp_sae_work; /* scratch for a batch size */

int lp_sae_work_new(lp_sae_work **out, const lp_sae *s, int B);
void lp_sae_work_free(lp_sae_work *w);
/* The codes of the last lp_sae_grads call (for callers that need them). */
const lp_sae_codes *lp_sae_work_codes(const lp_sae_work *w);
/* xhat [B,d] of the last lp_sae_grads call (normalised space). */
const float *lp_sae_work_xhat(const lp_sae_work *w);
/* 1 per latent that fired (value > 0) in the last lp_sae_grads call. */
const uint8_t *lp_sae_work_fired(const lp_sae_work *w);

typedef struct {
    double loss, rec, penalty, aux; /* aux already times aux_coeff */
    double l0;                      /* mean active latents per row */
    int64_t n_dead;                 /* latents counted dead for AuxK */
    float kept_min;                 /* batchtopk: smallest kept value */
} lp_sae_stats;

/* Loss and gradients for one batch xn [B,d] (normalised). Gradients are
 * ADDED into g (same layout as s; zero it first or let the optimiser zero
 * it). dead_since [F] (tokens since each latent last fired) selects AuxK's
 * dead latents; NULL disables AuxK. O(B·F·d) for the encoder GEMM, O(B·k·d)
 * for everything else. */
int lp_sae_grads(lp_sae *s, lp_sae *g, lp_sae_work *w, const float *xn, int B,
                 const int64_t *dead_since, lp_sae_stats *st);
/* The same with a reconstruction target tn [B,d] other than the input
 * (boost's residual SAE reads xn and reconstructs tn = xn − x̂n_base);
 * lp_sae_grads(…, xn, …) is lp_sae_grads_target(…, xn, xn, …). */
int lp_sae_grads_target(lp_sae *s, lp_sae *g, lp_sae_work *w, const float *xn, const float *tn,
                        int B, const int64_t *dead_since, lp_sae_stats *st);

/* Adam (torch.optim.Adam semantics, bias-corrected) over all parameters,
 * fused with the decoder constraint: the gradient component parallel to each
 * W_dec row is removed before the step and rows are renormalised after it.
 * Zeroes g as it goes. t is the 1-based step number. */
typedef struct {
    float lr, beta1, beta2, eps;
} lp_adam;
void lp_sae_adam_step(lp_sae *s, lp_sae *g, lp_sae *m, lp_sae *v, const lp_adam *o, int64_t t);

/* ---- training loop ------------------------------------------------------ */
enum { LP_BDEC_MEDIAN, LP_BDEC_MEAN, LP_BDEC_ZERO };

typedef struct {
    int64_t tokens;           /* training tokens (rows); several passes if > store */
    int batch;                /* rows per step */
    float lr, beta1, beta2, eps;
    int64_t warmup_steps;     /* linear warm-up from 0 */
    float decay_frac;         /* linear decay to 0 over this final fraction */
    int bdec_init;            /* LP_BDEC_* */
    int64_t init_sample;      /* rows used for the norm scale and b_dec */
    int64_t log_every;        /* steps between JSONL lines (0: off) */
    const char *log_path;     /* JSONL metrics file (appended) */
    int64_t checkpoint_every; /* steps between checkpoints (0: off) */
    const char *checkpoint_path;
    int resume;               /* continue from checkpoint_path when it exists */
    int progress;             /* draw a progress bar (stderr TTY) */
    const char *label;        /* progress-bar prefix, e.g. "seed 0" */
    const lp_sae *base;       /* boost: a frozen base SAE; the target of each row x becomes
                               * x − x̂_base(x) (NULL: the row itself) */
    int warm_start;           /* s already holds weights (fine-tuning): no initialisation;
                               * the input scale is re-fitted to this data and the biases
                               * (and thresholds) rescaled to match */
} lp_train_opts;

void lp_train_opts_default(lp_train_opts *o);
/* Resolve config defaults that depend on the data (k_aux, dead_tokens). */
void lp_sae_resolve_defaults(lp_sae_config *c, const lp_train_opts *o);

/* Train s on the store's rows (seeded by s->cfg.seed: initialisation and data
 * order). s must be fresh from lp_sae_new (it is initialised here unless a
 * checkpoint is resumed). On return s->cfg.norm_scale holds the input scale
 * (folded into the weights when saved) and tokens_trained is set.
 * Deterministic: same seed, data and thread count → bit-identical weights. */
int lp_sae_train(lp_sae *s, const lp_store *store, const lp_train_opts *o);

/* ---- residual SAEs ("SAE Boost") ------------------------------------------ */
/* Reconstruction x̂ [B,d] of raw rows x [B,d] by s at inference (both in the
 * caller's units: norm_scale applied and undone here). Allocates scratch per
 * call; for repeated use on one batch size the trainer keeps its own. */
int lp_sae_reconstruct(const lp_sae *s, const float *x, int B, float *xhat);
/* Whether base can be stitched: its inference must be a per-latent threshold
 * (relu, batchtopk, jumprelu, boost); LP_ERR_ARG with a message otherwise. */
int lp_sae_stitch_check(const lp_sae *base);
/* One SAE of arch boost with base->d_sae + res->d_sae latents: the base's
 * latents unchanged, then the residual's, so that x̂ = x̂_base + ê. res must
 * have no decoder bias (no_decoder_bias) and a threshold inference (batchtopk,
 * relu, jumprelu). The result has the base's norm_scale and provenance and
 * records base_latents. */
int lp_sae_stitch(lp_sae **out, const lp_sae *base, const lp_sae *res);

#ifdef __cplusplus
}
#endif
#endif
