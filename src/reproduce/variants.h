/* variants.h — (internal) helpers shared by the SAE-variant experiments
 * (hierarchical.c, kronsae.c, boost.c): a reusable activation store in
 * OUT/work, one SAE trained with timing, one evaluation with lp_lm_eval on
 * held-out text, and the machine load for timing claims. */
#ifndef LOUPE_REPRODUCE_VARIANTS_H
#define LOUPE_REPRODUCE_VARIANTS_H

#include "loupe/harvest.h"
#include "loupe/sae.h"
#include "loupe/steer.h"
#include "loupe/store.h"
#include "reproduce/reproduce.h"

typedef struct {
    lp_model *m;
    lp_tokenizer *tok;
    const char *model_path, *tok_path;
    lp_hook_point hp;
    char hook[64];
} lp_rv_env;

/* stories260K + tok512 and the hook blocks.2.hook_resid_post. */
int lp_rv_env_open(lp_rv_env *e, const lp_reproduce_opts *o);
void lp_rv_env_close(lp_rv_env *e);

/* A store of `tokens` rows of data (from byte skip_bytes, windows of ctx) at
 * e->hook in dir, reused when dir already holds exactly that; *end_bytes =
 * the absolute offset where the harvested text ends (held-out text follows). */
int lp_rv_store(const lp_rv_env *e, const char *data, int64_t skip_bytes, int64_t tokens, int ctx, const char *dir,
                lp_store **out, int64_t *end_bytes);

/* Train a fresh SAE of config c (d_in, provenance filled from the store) for
 * `tokens` rows (batch 1024, lr 4e-3·min(1, √(1024/F)) unless lr > 0).
 * *tok_s = measured training tokens per second. base/warm: see lp_train_opts. */
typedef struct {
    int64_t tokens;
    float lr;
    const lp_sae *base;
    int warm_start;
    const char *label;
} lp_rv_train_opts;
int lp_rv_train(lp_sae *s, const lp_store *st, const lp_rv_train_opts *t, double *tok_s);
/* A config with the store's d_in, model, hook, data and end offset filled. */
void lp_rv_config(lp_sae_config *c, const lp_store *st, int64_t end_bytes, int ctx, int arch, int d_sae, int k);

/* lp_lm_eval of s on data from skip_bytes: `tokens` predictions, windows of
 * ctx, k_override (0: the SAE's own sparsity). */
int lp_rv_eval(const lp_rv_env *e, lp_sae *s, const char *data, int64_t skip_bytes, int64_t tokens, int ctx,
               int k_override, lp_lm_eval_result *res);

/* Median ms per training step (grads + Adam, no AuxK) of each of ns SAEs
 * over `rounds` interleaved rounds of `steps` steps on the store's first B
 * rows (scaled by each SAE's norm_scale); the SAEs' weights move a little. */
int lp_rv_step_times(lp_sae *const *s, int ns, const lp_store *st, int B, int steps, int rounds, double *ms);

/* 1-minute load average (or −1), for the record beside timings. */
double lp_rv_load(void);

#endif
