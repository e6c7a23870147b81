/* loupe/synth.h — a synthetic activation model with known ground truth, to
 * test what SAEs recover and what stability analysis says (method notes §1.6):
 *
 *   x = Σ_i a_i f_i  +  Σ_g Σ_{k<m} b_{g,k} h_{g,k}  +  ε
 *   f_i  (i < n_iso)        isolated unit directions, random in R^d (in the
 *                           orthogonal complement of the blocks when n_blocks·r < d);
 *                           a_i ~ U[lo, hi] with probability p_iso, else 0
 *   h_{g,k} (g < n_blocks)  m unit directions inside an r-dim subspace B_g
 *                           (r < m, so they are linearly dependent); the block
 *                           is active with probability p_block, and then each
 *                           direction fires with probability q_in (at least
 *                           one), b ~ U[lo, hi]
 *   ε ~ N(0, noise² I)
 * With block_kind = LP_SYNTH_GAUSS the block's m = 2r directions are ±the
 * basis of B_g and, when the block is active, b_{g,±k} = max(±z_k, 0) with
 * z ~ N(0, s² I_r), s = (lo + hi) / 2: an isotropic Gaussian inside B_g, whose
 * distribution is the same in every basis (no direction is identifiable;
 * only the subspace is).
 *
 * Activations are written as an ordinary activation store (hook "synthetic";
 * the "token" of a row is the id of its strongest ground-truth component:
 * i for f_i, n_iso + g for block g, -1 for none), so every SAE command runs
 * on it unchanged. The truth itself is saved as safetensors (iso, blocks,
 * basis + the config as metadata) and SAEs are scored against it: each
 * isolated feature's best cosine among the latents, and for each block the
 * principal angles between B_g and the span of the latents assigned to it.
 */
#ifndef LOUPE_SYNTH_H
#define LOUPE_SYNTH_H

#include <stdint.h>

#include "loupe/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_SYNTH_RANDOM, LP_SYNTH_GAUSS };

typedef struct {
    int d;
    int n_iso;
    float p_iso;
    int n_blocks, block_m, block_r;
    float p_block, q_in;
    int block_kind;        /* LP_SYNTH_RANDOM (m random directions) or LP_SYNTH_GAUSS */
    float coef_lo, coef_hi;
    float noise;
    uint64_t seed; /* ground-truth directions */
} lp_synth_config;

void lp_synth_config_default(lp_synth_config *c);

typedef struct {
    lp_synth_config cfg;
    float *iso;   /* [n_iso, d] */
    float *blk;   /* [n_blocks * block_m, d], block g = rows g*m .. g*m+m-1 */
    float *basis; /* [n_blocks * block_r, d], orthonormal rows of B_g */
} lp_synth;

int lp_synth_new(lp_synth **out, const lp_synth_config *c);
void lp_synth_free(lp_synth *s);

/* n rows into x [n, d]; tok[n] (may be NULL) the strongest component's id. */
void lp_synth_sample(const lp_synth *s, lp_rng *r, int64_t n, float *x, int32_t *tok);

/* A store of `rows` rows at DIR (created; must not hold a store) drawn with
 * data_seed; the manifest names model "synthetic" and data = truth_path. */
int lp_synth_write_store(const lp_synth *s, const char *dir, int64_t rows, uint64_t data_seed, const char *truth_path);

/* Ground truth as safetensors (atomic) and back. */
int lp_synth_save(const lp_synth *s, const char *path);
int lp_synth_load(lp_synth **out, const char *path);

/* ---- scoring an SAE against the truth ----------------------------------------
 * iso_best[i]     = max_f cos(W_dec[f], f_i), iso_arg[i] its latent
 * latent_iso[f]   = 1 when latent f is some isolated feature's best match
 *                   with cosine ≥ iso_tau
 * latent_block[f] = the block g whose subspace holds the largest share of
 *                   ‖W_dec[f]‖² when that share ≥ inside_min (and f is not
 *                   an isolated match), else -1
 * block_cos[g*r+k]= cosines of the principal angles between B_g and the span
 *                   (top r singular directions) of its latents' decoder rows;
 *                   0 where fewer than k+1 latents were assigned
 * dir_best[g*m+k] = max_f cos(W_dec[f], h_{g,k}) over all latents */
typedef struct {
    int n_iso, n_blocks, block_m, block_r, F;
    float *iso_best;
    int32_t *iso_arg;
    uint8_t *latent_iso;
    int32_t *latent_block;
    int *block_count;   /* [n_blocks] latents assigned */
    double *block_cos;  /* [n_blocks * r] */
    float *dir_best;    /* [n_blocks * m] */
} lp_synth_score;

int lp_synth_score_sae(const lp_synth *s, const lp_sae *sae, float iso_tau, float inside_min, lp_synth_score *out);
void lp_synth_score_free(lp_synth_score *sc);

#ifdef __cplusplus
}
#endif
#endif
