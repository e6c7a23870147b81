/* synth_pipeline.h — (internal) the stability pipeline on the synthetic model,
 * where the answer is known: score SAEs against the ground truth (together
 * with their cross-seed stability), and the whole run — generate the model
 * and its store, train N seeds, score, write a report section — which is
 * also loupe's no-download demo (`loupe demo --synthetic` calls
 * lp_synth_pipeline). */
#ifndef LOUPE_SYNTH_PIPELINE_H
#define LOUPE_SYNTH_PIPELINE_H

#include <stdio.h>

#include "loupe/report.h"
#include "loupe/sae.h"
#include "loupe/synth.h"

typedef struct {
    float iso_tau;    /* isolated feature recovered at cosine ≥ this (0.95) */
    float inside_min; /* latent belongs to a block with this share inside it (0.8) */
    float tau, s_min; /* stability threshold and stable cut (0.7, 0.5) */
} lp_synth_eval_opts;

typedef struct {
    int n;                       /* SAEs */
    int n_iso, n_blocks, block_m, block_r;
    /* means over SAEs */
    double iso_recovered;        /* fraction of isolated features with best cos ≥ iso_tau */
    double iso_best_mean;        /* mean best cosine of the isolated features */
    double block_latents;        /* latents assigned to blocks, per SAE */
    double block_angle_max;      /* largest principal angle over blocks and SAEs (degrees) */
    double block_angle_mean;     /* mean of each (SAE, block)'s largest angle */
    double block_dir_best_mean;  /* mean best cosine of the individual block directions */
    double block_dir_recovered;  /* fraction of block directions with best cos ≥ iso_tau */
    /* stability across the SAEs (n ≥ 2; NAN otherwise) */
    double iso_stability, iso_frac_stable;     /* latents matching an isolated feature */
    double block_stability, block_frac_stable; /* latents assigned to a block */
    double all_frac_stable;
    double *angle_max;           /* [n * n_blocks] largest principal angle (degrees) */
    int *block_count;            /* [n * n_blocks] */
} lp_synth_eval;

int lp_synth_evaluate(const lp_synth *s, lp_sae *const *saes, int n, const lp_synth_eval_opts *o, lp_synth_eval *ev);
void lp_synth_eval_free(lp_synth_eval *ev);
void lp_synth_eval_print(const lp_synth_eval *ev, const char *const *names, FILE *f);
void lp_synth_eval_print_json(const lp_synth_eval *ev, FILE *f);

/* ---- the whole pipeline ------------------------------------------------------- */
typedef struct {
    const char *work;      /* scratch directory (created; the store, truth and SAEs go here) */
    lp_synth_config synth;
    int64_t rows;          /* store rows */
    int seeds;             /* SAEs trained (seeds 0..seeds−1) */
    int arch, d_sae, k;
    int64_t tokens;        /* training tokens per SAE */
    lp_synth_eval_opts eval;
    int verbose;
} lp_synth_pipeline_opts;

/* Defaults; quick = the reduced version for tests and `--quick` (< 1 min). */
void lp_synth_pipeline_defaults(lp_synth_pipeline_opts *o, int quick);

/* Generate, train, score; adds a section with its tables and claim (d) to r
 * (r may be NULL) and returns the numbers in ev (free with lp_synth_eval_free). */
int lp_synth_pipeline(const lp_synth_pipeline_opts *o, lp_report *r, lp_synth_eval *ev);

#endif
