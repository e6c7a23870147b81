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
    const uint8_t *keep;  /* optional [F]: reconstruct with only latents f where keep[f] != 0
                           * (the others are ablated after the usual selection); NULL = all */
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
    const uint8_t *keep; /* optional [F] latent mask for the spliced SAE (see lp_splice.keep); NULL = all */
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

/* ---- steering by SAE features (intervene.c) ------------------------------
 * Interventions on one or more sites, each an lp_steer_term on one latent f
 * of the site's SAE (d_f = W_dec[f], a_f its activation on the row, all in
 * the SAE's latent units; loaded SAEs have norm_scale 1 = raw units):
 *   ADD      z'_f = z_f + coef · zbar           (coef = α, zbar = Z̄_f)
 *   RESCALE  z'_f = coef · z_f                  (coef = r: 0 removes, < 0 suppresses)
 * and per steerer one variant:
 *   KEEP_ERROR    h' = h + Σ (z'_f − z_f) d_f          (error-preserving)
 *   THROUGH_SAE   h' = W_decᵀ z' + b_dec               (h replaced by the edited reconstruction)
 * so error-preserving ADD is h + α Z̄_f d_f and error-preserving RESCALE is
 * h + (r − 1) a_f d_f. Terms on several sites (a multi-layer chain) each get
 * a hook; hooks run in forward order. Only selected positions change, and
 * never BOS positions (SAEs never see BOS rows). */
enum { LP_POS_ALL, LP_POS_PROMPT, LP_POS_GEN, LP_POS_RANGE };
typedef struct {
    int kind;
    int lo, hi; /* LP_POS_RANGE: absolute positions lo..hi inclusive */
} lp_pos_spec;
/* "all" | "prompt" | "gen" (positions >= the prompt length) | "A:B" | "A". */
int lp_pos_parse(const char *s, lp_pos_spec *p);
int lp_pos_selects(const lp_pos_spec *p, int pos, int n_prompt);
/* LP_ERR_ARG when the spec selects no non-BOS position among 0..n_total−1
 * of a sequence whose prompt (BOS included) has n_prompt tokens. */
int lp_pos_check(const lp_pos_spec *p, int n_prompt, int n_total);

enum { LP_STEER_ADD, LP_STEER_RESCALE };
enum { LP_STEER_KEEP_ERROR, LP_STEER_THROUGH_SAE };
enum { LP_SCHED_CONST, LP_SCHED_LINEAR, LP_SCHED_EXP };

typedef struct {
    lp_hook_point at;
    lp_sae *sae;  /* not owned; every term of one site must use the same SAE */
    int feature;
    int op;       /* LP_STEER_ADD / LP_STEER_RESCALE */
    float coef;   /* α or r */
    float zbar;   /* Z̄_f (ADD) */
} lp_steer_term;

#define LP_STEER_MAX_TERMS 64
typedef struct lp_steer_site lp_steer_site;
typedef struct {
    int n_terms;
    lp_steer_term term[LP_STEER_MAX_TERMS];
    int variant;       /* LP_STEER_KEEP_ERROR / LP_STEER_THROUGH_SAE */
    lp_pos_spec pos;
    int n_prompt;      /* prompt length of the sequence being run (prompt/gen specs) */
    int bos;
    int64_t rows;      /* rows changed so far (summed over sites) */
    int n_sites;
    lp_steer_site *site;
} lp_steer;

void lp_steer_init(lp_steer *st, int variant, const lp_pos_spec *pos, int bos);
/* Check and append a term (feature in range, SAE width, one SAE per site). */
int lp_steer_add(lp_steer *st, const lp_steer_term *t);
/* Allocate per-site scratch for up to max_rows rows per call and add one hook
 * per site to hooks. Checks every SAE against the model (d_in = dim, layer
 * in range). */
int lp_steer_hooks(lp_steer *st, const lp_model *m, int max_rows, lp_hooks *hooks);
void lp_steer_free(lp_steer *st);
/* Coefficient weight of the j-th site of an n-site chain (j = 0 the target):
 * const 1, linear 1 − j/n, exp gamma^j. */
float lp_steer_schedule(int kind, int j, int n, float gamma);
/* Check an SAE against the site it is applied at: d_in = model dim, the
 * hook the SAE records (when it records one) = `at`, and the model it
 * records (when it does, and that file exists) = the model's file. */
int lp_sae_check_site(const lp_sae *sae, const char *sae_dir, const lp_model *m, lp_hook_point at);

/* ---- SAE codes on text and feature statistics (feature_stats.c) ----------
 * lp_site_codes runs the model over `tokens` non-BOS tokens of data
 * (windows of ctx, from byte skip_bytes) and encodes the activation at each
 * of n sites with its SAE; cb gets each batch: `rows` rows (BOS skipped, in
 * token order), their token ids, and codes[i] for site i (same rows). A
 * non-zero return from cb stops the run with that status. */
typedef int (*lp_codes_cb)(void *user, int rows, const int *tok, const lp_sae_codes *const *codes);
int lp_site_codes(const lp_model *m, const lp_tokenizer *tok, int n, lp_sae *const *saes, const lp_hook_point *at,
                  const char *data, int64_t skip_bytes, int64_t tokens, int ctx, lp_codes_cb cb, void *user);
/* Feature statistics:
 * Over `tokens` non-BOS tokens of data (windows of ctx), for each of n SAEs
 * at its hook: mean_active[i][f] = mean of a_f over the tokens where f
 * fires (Z̄_f; 0 if never), freq[i][f] = share of tokens where it fires
 * (either output may be NULL). One forward pass serves every SAE. */
int lp_feature_stats(const lp_model *m, const lp_tokenizer *tok, int n, lp_sae *const *saes, const lp_hook_point *at,
                     const char *data, int64_t skip_bytes, int64_t tokens, int ctx, float *const *mean_active,
                     float *const *freq);

/* ---- logit lens (lens.c) ---------------------------------------------------
 * scores[V] = W_U (g ⊙ v): a direction v [dim] read through the final
 * RMSNorm weight g and the unembedding (the token embedding when shared).
 * The RMS factor is a positive scalar and does not change the order. */
int lp_lens(const lp_model *m, const float *v, float *scores);
/* The n highest (top) and lowest (bottom) scoring ids, best first. */
void lp_lens_top(const float *scores, int V, int n, int *top, int *bottom);

/* ---- measured effect of steering (steer_eval.c) -------------------------- */
typedef struct {
    const int *prompt;            /* BOS included */
    int n_prompt;
    int steps;                    /* positions per sample, prompt included (lp_generate) */
    int samples;                  /* sample i uses seed + i */
    float temperature, top_p;
    uint64_t seed;
    int n_words;
    const char *const *words;     /* target words (case-insensitive whole words; "dog*" = prefix) */
} lp_steer_eval_opts;

typedef struct {
    double rate;        /* share of samples whose generated text has a target word */
    double per_100;     /* target words per 100 generated words */
    double coherence;   /* mean log-likelihood per generated token under the unsteered model */
    double gen_tokens;  /* mean generated tokens per sample */
    int samples;
} lp_steer_eval_result;

/* Generate o->samples samples with st's interventions (st NULL: none) and
 * measure them. texts (may be NULL) receives o->samples malloc'd strings
 * (the generated continuation only). */
int lp_steer_eval(const lp_model *m, const lp_tokenizer *tok, lp_steer *st, const lp_steer_eval_opts *o,
                  lp_steer_eval_result *res, char **texts);
/* Count the target words in text (rules as above); *n_words gets the
 * number of words in text (may be NULL). */
int lp_count_words(const char *text, const char *const *words, int n_targets, int *n_words);

#endif
