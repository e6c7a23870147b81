/* loupe/stability.h — which SAE latents are reproducible across training
 * seeds (method notes §1; Paulo & Belrose 2025, arXiv 2501.16615):
 *
 *   m_i^{a→b}     = max_j sim(a_i, b_j)            (max matching, loupe/match.h)
 *   h_i^{a→b}     = sim(a_i, b_{π(i)})             (one-to-one, π the optimal assignment)
 *   stability_i^a = (1/(N−1)) Σ_{b≠a} 1[m_i^{a→b} ≥ τ]     (or h instead of m)
 *   stable        ⇔ stability ≥ s_min (default 0.5); τ = 0.7 by default.
 *
 * One pass per pair of SAEs gives both directions. Latent statistics on an
 * activation store (firing frequency, top activations with their rows, and
 * the explained variance when only a subset of latents is kept) support the
 * functional-asymmetry analysis. Thresholds are arguments, never constants.
 */
#ifndef LOUPE_STABILITY_H
#define LOUPE_STABILITY_H

#include <stdint.h>

#include "loupe/match.h"
#include "loupe/sae.h"
#include "loupe/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- consistency of a set of SAEs ------------------------------------------- */
/* Refuse SAEs that cannot be compared: different d_in, hook or model (the
 * model compared by file name; an empty field matches anything). names[i]
 * (may be NULL) is used in the message. */
int lp_stability_check(const lp_sae *const *saes, const char *const *names, int n);

/* ---- pairwise matches ---------------------------------------------------------- */
typedef struct {
    int n;            /* SAEs */
    int mode;         /* LP_MATCH_* */
    int one_to_one;   /* hung/hcol filled */
    int64_t *F;       /* [n] latents of each SAE */
    int64_t *off;     /* [n+1] offset of SAE a's latents in flat per-feature arrays */
    /* [a*n + b] (a ≠ b): arrays of F[a] entries; [a*n + a] is NULL */
    float **best;     /* max-matching similarity a → b */
    int32_t **arg;    /* its argmax in b */
    float **hung;     /* one-to-one similarity a → b (-2: unmatched) */
    int64_t **hcol;   /* one-to-one partner in b (-1: none) */
} lp_stability;

/* Match every pair (a < b, both directions from one pass); with one_to_one
 * also the optimal assignment of every pair (F up to ~8k: it holds one F×F
 * matrix at a time). Calls lp_stability_check first. */
int lp_stability_match(lp_stability *st, const lp_sae *const *saes, int n, int mode, int one_to_one);
void lp_stability_free(lp_stability *st);

/* score[off[a] + i] = stability of latent i of SAE a at threshold tau, from
 * max matching (one_to_one = 0) or the assignment (1). */
int lp_stability_scores(const lp_stability *st, float tau, int one_to_one, float *score);

/* Summary at one threshold: fraction of latents with stability ≥ s_min,
 * mean stability, and hist[0..n-1] = latents with stability k/(n−1). */
typedef struct {
    float tau, s_min;
    double frac_stable, mean_score;
    int64_t hist[64];
    int64_t total;
} lp_stability_summary;
int lp_stability_summarise(const lp_stability *st, float tau, float s_min, int one_to_one, lp_stability_summary *out);

/* ---- latent statistics on a store --------------------------------------------- */
typedef struct {
    int64_t start, rows;           /* store rows [start, start+rows) (rows clipped to the store) */
    int batch;                     /* rows per encode (default 1024 when 0) */
    int topn;                      /* top activations kept per latent (0: none) */
    int n_masks;                   /* explained variance with only these latents kept */
    const uint8_t *const *masks;   /* [n_masks][F], 1 = keep */
} lp_latent_opts;

typedef struct {
    int64_t rows;
    int F, topn, n_masks;
    int64_t *fires;     /* [F] rows where the latent is active */
    float *top_val;     /* [F*topn] largest activations, descending (0 = none) */
    int64_t *top_row;   /* [F*topn] their store rows (-1 = none) */
    double ev;          /* explained variance of the full SAE */
    double *ev_mask;    /* [n_masks] explained variance with each mask */
    double *l0_mask;    /* [n_masks] mean active kept latents per row */
    double l0;
} lp_latent_stats;

/* Encode store rows with the SAE (inference mode); reconstruction with a mask
 * drops the codes of latents outside it (x̂ = b_dec + Σ_{f kept} z_f W_dec[f]),
 * the selection itself is unchanged. EV = 1 − Σ‖x − x̂‖² / Σ‖x − mean x‖². */
int lp_latent_stats_compute(lp_sae *sae, const lp_store *st, const lp_latent_opts *o, lp_latent_stats *out);
void lp_latent_stats_free(lp_latent_stats *s);

#ifdef __cplusplus
}
#endif
#endif
