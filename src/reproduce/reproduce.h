/* reproduce.h — (internal) the signature of a paper-experiment driver and
 * helpers shared by the drivers. Each driver lives in src/reproduce/NAME.c,
 * may use every stage, prints progress on stderr only, and fills the report. */
#ifndef LOUPE_REPRODUCE_H
#define LOUPE_REPRODUCE_H

#include "loupe/report.h"

typedef struct {
    const char *out;    /* output directory (scratch files may go in OUT/work) */
    int quick;          /* reduced run for tests (< 3 minutes) */
    const char *shared; /* folder with models/ and data/, or NULL for the default */
} lp_reproduce_opts;

typedef int (*lp_reproduce_fn)(const lp_reproduce_opts *o, lp_report *r);

/* Path of a shared file (models/..., data/...) under o->shared or the
 * default locations (see cli_shared_path). Returns a static buffer. */
const char *lp_reproduce_shared(const lp_reproduce_opts *o, const char *rel);

/* ---- flow and steering drivers (flow.c, steering.c, sites.c) ---- */
#include "loupe/flow.h"
int lp_reproduce_flow(const lp_reproduce_opts *o, lp_report *r);
int lp_reproduce_steering(const lp_reproduce_opts *o, lp_report *r);
/* SAEs at every site of stories260K (all_kinds: resid_post, mlp_out and
 * attn_out of every layer; else resid_post only) trained on the TinyStories
 * sample into dir (the `loupe train --sites` layout), or reused from dir
 * when trained with the same settings; *data_bytes = bytes of the sample
 * the harvest used (held-out text starts there). */
typedef struct {
    int all_kinds;
    int64_t harvest_tokens;
    int ctx;
    int d_sae, k;
    int64_t train_tokens;
} lp_repro_sites_cfg;
int lp_repro_sites(const lp_reproduce_opts *o, const lp_repro_sites_cfg *c, const char *dir, lp_flow_sites *out,
                   int64_t *data_bytes);

/* ---- segment-aware auto-interpretation (autointerp.c, arXiv 2606.10029 §2) ---- */
int lp_reproduce_autointerp(const lp_reproduce_opts *o, lp_report *r);

/* ---- SAE variants (hierarchical.c, kronsae.c, boost.c; helpers in variants.h) ---- */
int lp_reproduce_hierarchical(const lp_reproduce_opts *o, lp_report *r);
int lp_reproduce_kronsae(const lp_reproduce_opts *o, lp_report *r);
int lp_reproduce_boost(const lp_reproduce_opts *o, lp_report *r);
int lp_reproduce_stability(const lp_reproduce_opts *o, lp_report *r); /* stability.c */

#endif
