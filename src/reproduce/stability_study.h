/* stability_study.h — (internal) the whole stability analysis of a set of
 * SAEs trained alike but for the seed, shared by `loupe stability` and
 * `loupe reproduce stability`: scores and τ-sweep (max and one-to-one
 * matching), functional asymmetry (explained variance on a store and CE with
 * the SAE spliced in, each with only the stable or only the unstable
 * latents), firing frequency and trigger tokens by stability, and the
 * subspaces of the unstable latents against random subspaces. */
#ifndef LOUPE_STABILITY_STUDY_H
#define LOUPE_STABILITY_STUDY_H

#include <stdint.h>

#include "loupe/model.h"
#include "loupe/sae.h"
#include "loupe/stability.h"
#include "loupe/tokenizer.h"

#define LP_STUDY_MAX_TAUS 16

typedef struct {
    float tau, s_min;            /* match threshold, stable if stability ≥ s_min */
    int mode;                    /* LP_MATCH_* */
    int one_to_one;              /* also the optimal one-to-one matching */
    int n_taus;                  /* τ-sweep */
    float taus[LP_STUDY_MAX_TAUS];
    /* functional asymmetry on a store (NULL: skipped) */
    const char *store, *store_hook;
    int64_t store_rows;          /* rows used (0: 200000) */
    int topn;                    /* top activations per latent (triggers) */
    float purity_min;            /* surface-form: modal token share of the top activations ≥ this */
    float common_mass;           /* tokens that make up this share of the store are "common" */
    /* CE with the SAE spliced in (model NULL: skipped) */
    const lp_model *model;
    const lp_tokenizer *tok;     /* also used to print trigger tokens when set */
    const char *data;
    int64_t eval_tokens, skip_bytes;
    int ctx, ce_saes;            /* CE for the first ce_saes SAEs (0: all) */
    /* subspaces of the unstable decoder rows */
    int rank;                    /* 0: from energy */
    float energy;                /* smallest r holding this share of the rows' energy (min over SAEs) */
    int random_trials;
    int verbose;                 /* progress lines on stderr */
} lp_study_opts;

void lp_study_opts_default(lp_study_opts *o);

typedef struct {
    int n;
    int64_t total;
    lp_stability st;
    float *score, *score_hung;   /* [total] */
    lp_stability_summary sum, sum_hung;
    double sweep_max[LP_STUDY_MAX_TAUS], sweep_hung[LP_STUDY_MAX_TAUS];
    int64_t *n_stable;           /* [n] stable latents of each SAE */
    /* functional asymmetry: [n] each; NAN where not computed */
    int have_store, have_ce;
    double *ev_full, *ev_stable, *ev_unstable, *l0_full, *l0_stable, *l0_unstable;
    double *ce_clean, *ce_zero, *ce_full, *ce_stable, *ce_unstable;
    /* control: a random subset of the unstable latents as large as the stable set */
    double *ev_matched, *l0_matched, *ce_matched;
    /* per latent [total] (store) */
    float *freq, *purity;
    int32_t *modal_tok;
    uint8_t *rare_modal;         /* surface-form with a non-common modal token */
    int topn;
    int32_t *top_tok;            /* [total * topn] (-1: none) */
    /* by stability bin k/(n−1), k = 0..n−1 */
    int64_t bin_count[65];
    double bin_freq_mean[65], bin_freq_median[65], bin_surface[65], bin_rare_surface[65];
    /* aggregates, stable vs unstable */
    double freq_median_stable, freq_median_unstable, surface_stable, surface_unstable, rare_stable, rare_unstable;
    /* subspaces */
    int rank, d;
    int64_t *n_unstable;         /* [n] */
    double *overlap;             /* [n*n] unstable a vs unstable b (NAN on the diagonal) */
    double *angle_median;        /* [n*n] median principal angle, degrees */
    double *angle_min;           /* [n*n] smallest principal angle, degrees */
    double *ctrl_stable;         /* [n*n] unstable a vs top-r of stable b */
    double *ctrl_data;           /* [n] unstable a vs top-r principal components of the store (NAN without) */
    double overlap_mean, ctrl_stable_mean, ctrl_data_mean, angle_median_mean;
    double rand_mean, rand_p95, rand_expected;
} lp_study;

/* Run everything asked for by o on the SAEs (names label them in messages). */
int lp_study_run(lp_sae *const *saes, const char *const *names, int n, const lp_study_opts *o, lp_study *res);
void lp_study_free(lp_study *s);

/* DIR/features.csv (one row per latent) and DIR/stability.json (everything). */
int lp_study_write(const lp_study *s, const lp_study_opts *o, const char *const *names, const lp_tokenizer *tok,
                   const char *dir);

/* Text of a token id for tables ("#id" without a tokenizer), escaped for
 * markdown/CSV (quotes, pipes, newlines made visible). Static buffer. */
const char *lp_study_token_text(const lp_tokenizer *tok, int32_t id);

#endif
