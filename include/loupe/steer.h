/* loupe/steer.h — interventions on a running model through its hooks:
 * splicing an SAE's reconstruction in place of an activation, ablations,
 * and the language-model evaluation of an SAE (CE clean / spliced / zeroed,
 * KL) that the field reports. The model knows only hooks; this stage joins
 * models and SAEs. */
#ifndef LOUPE_STEER_H
#define LOUPE_STEER_H

#include <stdint.h>

#include "loupe/model.h"
#include "loupe/sae.h"
#include "loupe/tokenizer.h"

/* What a splice hook does at its site (non-BOS positions only: BOS rows are
 * never in training stores, so they are left as the model made them). */
enum { LP_SPLICE_SAE, LP_SPLICE_ZERO, LP_SPLICE_CAPTURE };

typedef struct {
    int mode;
    lp_sae *sae;          /* LP_SPLICE_SAE */
    int bos;              /* BOS token id */
    int k_override;       /* >0: keep only the top-k latents per row (inference at any k <= K) */
    /* optional: copy of the activation before the splice [B*T*D] (capture) */
    float *captured;
    /* statistics over spliced rows */
    double sq_err, sum_sq;  /* Σ‖x − x̂‖², Σ‖x‖² */
    double *sum;            /* [D] Σ x (for the variance) */
    double l0_sum;
    int64_t rows;
    int64_t *fires;         /* [F] rows where each latent fired */
    /* scratch */
    float *pre, *xn, *xhat;
    int64_t *rows_idx;
    lp_sae_codes codes;
    int cap_rows;
} lp_splice;

int lp_splice_init(lp_splice *s, int mode, lp_sae *sae, int bos, int max_rows, int D);
void lp_splice_free(lp_splice *s);
int lp_splice_hook(float *act, const lp_hook_ctx *ctx, void *user);

typedef struct {
    int64_t tokens;      /* tokens to evaluate (predictions) */
    int ctx, batch;
    int64_t skip_bytes;  /* start this far into the data file */
    int64_t skip_tokens; /* then skip this many tokens */
    int k_override;
    int progress;
} lp_lm_eval_opts;

typedef struct {
    double mse;                 /* mean over rows and dims of (x − x̂)² (original units) */
    double explained_variance;  /* 1 − FVU */
    double fvu;
    double l0;
    double dead_fraction;       /* latents that never fired */
    double dense_fraction;      /* latents firing on > 10% of rows */
    double ce_clean, ce_sae, ce_zero, ce_loss_recovered, delta_lm_loss, kl;
    int64_t rows, tokens;
    int64_t density_hist[12];   /* latents by log10 firing frequency: [-inf,-10), [-10,-9) ... [-1,0], dead */
    int64_t *fires;             /* [F] firing counts (owned; free with lp_lm_eval_free) */
    int d_sae;
} lp_lm_eval_result;

/* Evaluate `sae` spliced in at `hook` over windows of `data`. */
int lp_lm_eval(const lp_model *m, const lp_tokenizer *tok, lp_sae *sae, lp_hook_point hook, const char *data,
               const lp_lm_eval_opts *o, lp_lm_eval_result *res);
void lp_lm_eval_free(lp_lm_eval_result *r);

#endif
