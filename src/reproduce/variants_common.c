/* variants_common.c — helpers of the SAE-variant experiments (variants.h):
 * the model and hook, a reusable store, timed training, held-out eval. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reproduce/variants.h"

int lp_rv_env_open(lp_rv_env *e, const lp_reproduce_opts *o) {
    memset(e, 0, sizeof *e);
    e->model_path = lp_reproduce_shared(o, "models/stories260K.bin");
    e->tok_path = lp_reproduce_shared(o, "models/tok512.bin");
    snprintf(e->hook, sizeof e->hook, "blocks.2.hook_resid_post");
    int rc = lp_model_load(&e->m, e->model_path);
    if (!rc) rc = lp_tokenizer_load(&e->tok, e->tok_path, e->m->cfg.vocab_size);
    if (!rc) rc = lp_hook_parse(e->hook, e->m->cfg.n_layers, &e->hp);
    if (rc) lp_rv_env_close(e);
    return rc;
}

void lp_rv_env_close(lp_rv_env *e) {
    lp_model_free(e->m);
    lp_tokenizer_free(e->tok);
    e->m = NULL;
    e->tok = NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

int lp_rv_store(const lp_rv_env *e, const char *data, int64_t skip_bytes, int64_t tokens, int ctx, const char *dir,
                lp_store **out, int64_t *end_bytes) {
    *out = NULL;
    lp_store *st = NULL;
    char mf[4096];
    snprintf(mf, sizeof mf, "%s/manifest.json", dir);
    if (lp_file_exists(mf) && lp_store_open(&st, dir, e->hook) == LP_OK) {
        if (lp_store_count(st) == tokens && strcmp(lp_store_data(st), data) == 0 &&
            lp_store_meta_int(st, "skip_bytes", -1) == skip_bytes && lp_store_meta_int(st, "ctx", -1) == ctx) {
            *end_bytes = lp_store_meta_int(st, "data_bytes_consumed", 0);
            fprintf(stderr, "reproduce: reusing the store %s (%lld rows)\n", dir, (long long)tokens);
            *out = st;
            return LP_OK;
        }
        lp_store_close_reader(st);
        st = NULL;
    }
    if (lp_file_exists(dir)) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    const char *hooks[1] = {e->hook};
    lp_harvest_opts ho = {.model_path = e->model_path, .tokenizer_path = e->tok_path, .data_path = data,
                          .n_hooks = 1, .hooks = hooks, .tokens = tokens, .ctx = ctx, .batch = 32,
                          .dtype = LP_STORE_F32, .skip_bytes = skip_bytes};
    lp_harvest_result hr;
    double t0 = lp_now();
    int rc = lp_harvest(e->m, e->tok, &ho, dir, &hr);
    if (rc) return rc;
    if (hr.rows < tokens)
        return lp_fail(LP_ERR_ARG, "%s: only %lld tokens from byte %lld (wanted %lld)", data, (long long)hr.rows,
                       (long long)skip_bytes, (long long)tokens);
    fprintf(stderr, "reproduce: harvested %lld rows of %s in %.1fs\n", (long long)hr.rows, data, lp_now() - t0);
    if ((rc = lp_store_open(&st, dir, e->hook))) return rc;
    *end_bytes = lp_store_meta_int(st, "data_bytes_consumed", hr.data_bytes);
    *out = st;
    return LP_OK;
}

void lp_rv_config(lp_sae_config *c, const lp_store *st, int64_t end_bytes, int ctx, int arch, int d_sae, int k) {
    lp_sae_config_default(c);
    c->arch = arch;
    c->d_in = lp_store_dim(st);
    c->d_sae = d_sae;
    c->k = k;
    snprintf(c->model, sizeof c->model, "%s", lp_store_model(st));
    snprintf(c->hook, sizeof c->hook, "%s", lp_store_hook(st));
    snprintf(c->dataset, sizeof c->dataset, "%s", lp_store_data(st));
    c->dataset_bytes = end_bytes;
    c->context_size = ctx;
}

int lp_rv_train(lp_sae *s, const lp_store *st, const lp_rv_train_opts *t, double *tok_s) {
    lp_train_opts o;
    lp_train_opts_default(&o);
    const int F = s->cfg.d_sae;
    o.tokens = t->tokens;
    o.lr = t->lr > 0 ? t->lr : (F > 1024 ? 4e-3f * sqrtf(1024.0f / (float)F) : 4e-3f);
    o.log_every = 0;
    o.base = t->base;
    o.warm_start = t->warm_start;
    o.label = t->label;
    lp_sae_resolve_defaults(&s->cfg, &o);
    double t0 = lp_now();
    int rc = lp_sae_train(s, st, &o);
    double el = lp_now() - t0;
    if (tok_s) *tok_s = el > 0 ? (double)t->tokens / el : 0;
    if (!rc)
        fprintf(stderr, "reproduce: trained %s %s (%d latents, k %d) on %lld tokens in %.1fs\n",
                t->label ? t->label : "", lp_sae_arch_name(s->cfg.arch), F, s->cfg.k, (long long)t->tokens, el);
    return rc;
}

int lp_rv_eval(const lp_rv_env *e, lp_sae *s, const char *data, int64_t skip_bytes, int64_t tokens, int ctx,
               int k_override, lp_lm_eval_result *res) {
    lp_lm_eval_opts eo = {.tokens = tokens, .ctx = ctx, .batch = 16, .skip_bytes = skip_bytes, .k_override = k_override};
    return lp_lm_eval(e->m, e->tok, s, e->hp, data, &eo, res);
}

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int lp_rv_step_times(lp_sae *const *s, int ns, const lp_store *st, int B, int steps, int rounds, double *ms) {
    const int d = lp_store_dim(st);
    float *raw = lp_malloc((size_t)B * d * sizeof(float)), *x = lp_malloc((size_t)B * d * sizeof(float));
    double *t = lp_calloc((size_t)ns * rounds, sizeof(double));
    int rc = !raw || !x || !t ? LP_ERR_NOMEM : lp_store_read(st, 0, B, raw);
    for (int r = 0; r < rounds && !rc; r++)
        for (int a = 0; a < ns && !rc; a++) {
            lp_sae *g = NULL, *m = NULL, *v = NULL;
            lp_sae_work *w = NULL;
            int64_t *dead = lp_calloc((size_t)s[a]->cfg.d_sae, sizeof(int64_t)); /* none dead: no AuxK */
            for (int i = 0; i < B * d; i++) x[i] = raw[i] * s[a]->cfg.norm_scale;
            if (!dead) rc = LP_ERR_NOMEM;
            if (rc || (rc = lp_sae_like(&g, s[a])) || (rc = lp_sae_like(&m, s[a])) || (rc = lp_sae_like(&v, s[a])) ||
                (rc = lp_sae_work_new(&w, s[a], B)))
                goto next;
            lp_adam ad = {1e-5f, 0.9f, 0.999f, 1e-8f};
            lp_sae_stats ss;
            if ((rc = lp_sae_grads(s[a], g, w, x, B, dead, &ss))) goto next; /* warm-up */
            lp_sae_adam_step(s[a], g, m, v, &ad, 1);
            double t0 = lp_now();
            for (int q = 0; q < steps && !rc; q++) {
                rc = lp_sae_grads(s[a], g, w, x, B, dead, &ss);
                lp_sae_adam_step(s[a], g, m, v, &ad, q + 2);
            }
            t[a * rounds + r] = 1000.0 * (lp_now() - t0) / steps;
        next:
            free(dead);
            lp_sae_free(g);
            lp_sae_free(m);
            lp_sae_free(v);
            lp_sae_work_free(w);
        }
    for (int a = 0; a < ns && !rc; a++) ms[a] = median(t + a * rounds, rounds);
    free(raw);
    free(x);
    free(t);
    return rc;
}

double lp_rv_load(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}
