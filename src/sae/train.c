/* train.c — the SAE training loop: data order from the store (a seeded
 * permutation per pass), input normalisation to E‖x‖ = √d, b_dec at the
 * geometric median, warm-up/decay schedule, Adam, dead-latent tracking for
 * AuxK, BatchTopK's running threshold, JSONL metrics, and atomic
 * checkpoints that make an interrupted run resume bit-identically. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/sae.h"
#include "sae/arch.h"

void lp_train_opts_default(lp_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->tokens = 2000000;
    o->batch = 1024;
    o->lr = 1e-3f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->warmup_steps = -1; /* 1% of steps */
    o->decay_frac = 0.2f;
    o->bdec_init = LP_BDEC_MEDIAN;
    o->init_sample = 32768;
    o->log_every = 50;
}

void lp_sae_resolve_defaults(lp_sae_config *c, const lp_train_opts *o) {
    if (c->k_aux < 0)
        c->k_aux = c->arch == LP_SAE_TOPK || c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_HIERTOPK ||
                           c->arch == LP_SAE_KRON
                       ? c->d_in / 2
                       : 0;
    if (c->k_aux > c->d_sae) c->k_aux = c->d_sae;
    if (c->dead_tokens <= 0) {
        int64_t t = o->tokens / 20;
        if (t < 100000) t = 100000;
        if (t > 10000000) t = 10000000;
        c->dead_tokens = t;
    }
}

/* ---- checkpoint ------------------------------------------------------------ */
#define CKPT_MAGIC "LOUPECK1"

typedef struct {
    char magic[8];
    int32_t version, arch, d_in, d_sae, k, batch;
    uint64_t seed;
    int64_t step, tokens_seen, epoch, pos, n_params, total_steps;
    float norm_scale, theta;
    int32_t theta_init, pad;
} ckpt_header;

static int ckpt_write(const char *path, const ckpt_header *h, const lp_sae *s, const lp_sae *m,
                      const lp_sae *v, const int64_t *dead) {
    lp_atomic a;
    int rc = lp_atomic_open(&a, path);
    if (rc) return rc;
    lp_sha256 sh;
    lp_sha256_init(&sh);
    size_t pb = s->n_params * sizeof(float), db = (size_t)s->cfg.d_sae * sizeof(int64_t);
    const void *parts[] = {h, s->params, m->params, v->params, dead};
    size_t sizes[] = {sizeof *h, pb, pb, pb, db};
    for (int i = 0; i < 5 && !rc; i++) {
        lp_sha256_update(&sh, parts[i], sizes[i]);
        rc = lp_atomic_write(&a, parts[i], sizes[i]);
    }
    char hex[65];
    lp_sha256_final(&sh, hex);
    if (!rc) rc = lp_atomic_write(&a, hex, 64);
    if (rc) {
        lp_atomic_abort(&a);
        return rc;
    }
    return lp_atomic_commit(&a);
}

static int ckpt_read(const char *path, ckpt_header *h, lp_sae *s, lp_sae *m, lp_sae *v, int64_t *dead,
                     int batch) {
    char *buf = NULL;
    size_t len = 0;
    int rc = lp_read_file(path, &buf, &len);
    if (rc) return rc;
    size_t pb = s->n_params * sizeof(float), db = (size_t)s->cfg.d_sae * sizeof(int64_t);
    size_t want = sizeof *h + 3 * pb + db + 64;
    if (len != want) {
        free(buf);
        return lp_fail(LP_ERR_FORMAT, "%s: checkpoint is %zu bytes, expected %zu (corrupt or another SAE config)",
                       path, len, want);
    }
    lp_sha256 sh;
    lp_sha256_init(&sh);
    lp_sha256_update(&sh, buf, want - 64);
    char hex[65];
    lp_sha256_final(&sh, hex);
    if (memcmp(hex, buf + want - 64, 64) != 0) {
        free(buf);
        return lp_fail(LP_ERR_FORMAT, "%s: checkpoint checksum mismatch (corrupt file)", path);
    }
    memcpy(h, buf, sizeof *h);
    if (memcmp(h->magic, CKPT_MAGIC, 8) != 0 || h->version != 1) {
        free(buf);
        return lp_fail(LP_ERR_FORMAT, "%s: not a loupe checkpoint", path);
    }
    if (h->arch != s->cfg.arch || h->d_in != s->cfg.d_in || h->d_sae != s->cfg.d_sae ||
        h->k != s->cfg.k || h->seed != s->cfg.seed || h->batch != batch ||
        (size_t)h->n_params != s->n_params) {
        free(buf);
        return lp_fail(LP_ERR_ARG,
                       "%s: checkpoint is for a different run (arch %s d_in %d d_sae %d k %d seed %llu "
                       "batch %d)",
                       path, lp_sae_arch_name(h->arch), h->d_in, h->d_sae, h->k,
                       (unsigned long long)h->seed, h->batch);
    }
    const char *p = buf + sizeof *h;
    memcpy(s->params, p, pb);
    memcpy(m->params, p + pb, pb);
    memcpy(v->params, p + 2 * pb, pb);
    memcpy(dead, p + 3 * pb, db);
    free(buf);
    return LP_OK;
}

/* ---- data --------------------------------------------------------------------- */
static void make_perm(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    lp_rng r;
    lp_rng_seed(&r, seed * 0x9E3779B97F4A7C15ULL + (uint64_t)epoch + 1);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)lp_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int check_rows(const float *x, int64_t n, int d, const lp_store *st, const int64_t *idx) {
    for (int64_t i = 0; i < n; i++)
        if (!lp_all_finite(x + i * d, (size_t)d))
            return lp_fail(LP_ERR_NUM, "store hook %s: row %lld contains NaN or Inf", lp_store_hook(st),
                           (long long)(idx ? idx[i] : i));
    return LP_OK;
}

/* Weiszfeld iterations for the geometric median of n rows. */
static void geometric_median(float *out, const float *x, int64_t n, int d) {
    double *cur = calloc((size_t)d, sizeof *cur), *acc = calloc((size_t)d, sizeof *acc);
    if (!cur || !acc) {
        free(cur);
        free(acc);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) cur[j] += x[i * d + j] / (double)n;
    for (int it = 0; it < 50; it++) {
        double wsum = 0;
        memset(acc, 0, (size_t)d * sizeof *acc);
        for (int64_t i = 0; i < n; i++) {
            double dist = 0;
            for (int j = 0; j < d; j++) {
                double t = x[i * d + j] - cur[j];
                dist += t * t;
            }
            double wt = 1.0 / (sqrt(dist) + 1e-8);
            wsum += wt;
            for (int j = 0; j < d; j++) acc[j] += wt * x[i * d + j];
        }
        double moved = 0;
        for (int j = 0; j < d; j++) {
            double nv = acc[j] / wsum;
            moved += (nv - cur[j]) * (nv - cur[j]);
            cur[j] = nv;
        }
        if (moved < 1e-12) break;
    }
    for (int j = 0; j < d; j++) out[j] = (float)cur[j];
    free(cur);
    free(acc);
}

/* An SAE on inputs scaled by r more: biases and thresholds scale with the
 * input (every activation is positively homogeneous), the weights stay. */
static void rescale_inputs(lp_sae *s, float r) {
    const int64_t E = (int64_t)s->p_size[LP_SAE_B_ENC];
    int64_t E_fixed = E; /* encoder rows whose bias scales with the input */
    if (s->cfg.arch == LP_SAE_KRON && s->cfg.kron_and == LP_KRON_PRODUCT) {
        /* z = p·q: p scales by r, q must not, so Q /= r and b_q stays */
        E_fixed = (int64_t)s->cfg.kron_heads * s->cfg.kron_m;
        for (int64_t i = E_fixed * s->cfg.d_in; i < E * s->cfg.d_in; i++) s->p[LP_SAE_W_ENC][i] /= r;
    }
    for (int64_t i = 0; i < E_fixed; i++) s->p[LP_SAE_B_ENC][i] *= r;
    for (int i = 0; i < s->cfg.d_in; i++) s->p[LP_SAE_B_DEC][i] *= r;
    for (size_t f = 0; f < s->p_size[LP_SAE_LOG_THRESHOLD]; f++) s->p[LP_SAE_LOG_THRESHOLD][f] += logf(r);
    s->theta *= r;
}

/* norm scale and b_dec from the first init_sample rows of a seeded order */
static int init_from_data(lp_sae *s, const lp_store *st, const lp_train_opts *o, const int64_t *perm) {
    const int d = s->cfg.d_in;
    int64_t n = lp_store_count(st);
    if (o->init_sample < n) n = o->init_sample;
    float *x = lp_malloc((size_t)n * d * sizeof(float));
    if (!x) return LP_ERR_NOMEM;
    int rc = lp_store_gather(st, perm, n, x);
    if (!rc) rc = check_rows(x, n, d, st, perm);
    if (rc) {
        free(x);
        return rc;
    }
    double mean_norm = 0;
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)x[i * d + j] * x[i * d + j];
        mean_norm += sqrt(ss) / n;
    }
    float scale = mean_norm > 0 ? (float)(sqrt((double)d) / mean_norm) : 1.0f;
    if (o->warm_start) { /* keep the weights: move them to the new input scale */
        rescale_inputs(s, scale / s->cfg.norm_scale);
        s->cfg.norm_scale = scale;
        free(x);
        return LP_OK;
    }
    s->cfg.norm_scale = scale;
    for (int64_t i = 0; i < n * d; i++) x[i] *= scale;
    float *bd = s->p[LP_SAE_B_DEC];
    if (s->cfg.no_decoder_bias) { /* b_dec stays 0 */
    } else if (o->bdec_init == LP_BDEC_MEDIAN) geometric_median(bd, x, n, d);
    else if (o->bdec_init == LP_BDEC_MEAN) {
        for (int j = 0; j < d; j++) {
            double acc = 0;
            for (int64_t i = 0; i < n; i++) acc += x[i * d + j];
            bd[j] = (float)(acc / n);
        }
    }
    free(x);
    return LP_OK;
}

static float lr_at(const lp_train_opts *o, int64_t step, int64_t total, int64_t warm) {
    float lr = o->lr;
    if (warm > 0 && step < warm) lr *= (float)(step + 1) / (float)warm;
    int64_t dstart = total - (int64_t)(o->decay_frac * (float)total);
    if (o->decay_frac > 0 && step >= dstart && total > dstart)
        lr *= (float)(total - step) / (float)(total - dstart);
    return lr;
}

int lp_sae_train(lp_sae *s, const lp_store *st, const lp_train_opts *o) {
    const int d = s->cfg.d_in, F = s->cfg.d_sae, B = o->batch;
    const int64_t count = lp_store_count(st);
    if (lp_store_dim(st) != d)
        return lp_fail(LP_ERR_ARG, "store hook %s has d=%d but the SAE has d_in=%d", lp_store_hook(st),
                       lp_store_dim(st), d);
    if (B <= 0 || count < B)
        return lp_fail(LP_ERR_ARG, "batch %d needs at least that many rows (store has %lld)", B,
                       (long long)count);
    if (s->cfg.arch == LP_SAE_BOOST)
        return lp_fail(LP_ERR_ARG, "a boost SAE is stitched from a base and a residual SAE, not trained as a whole "
                                   "(train the residual with a base SAE: loupe train --arch boost --base DIR)");
    if (o->base && o->base->cfg.d_in != d)
        return lp_fail(LP_ERR_ARG, "the base SAE has d_in=%d but the SAE being trained has d_in=%d",
                       o->base->cfg.d_in, d);
    const int64_t total = (o->tokens + B - 1) / B;
    const int64_t warm = o->warmup_steps >= 0 ? o->warmup_steps : total / 100;
    lp_sae *g = NULL, *m = NULL, *v = NULL;
    lp_sae_work *w = NULL;
    int64_t *perm = NULL, *dead = NULL, *idx = NULL;
    float *x = NULL, *tgt = NULL;
    lp_sae_infer base_ws = {0};
    FILE *log = NULL;
    int rc;
    if ((rc = lp_sae_like(&g, s)) || (rc = lp_sae_like(&m, s)) || (rc = lp_sae_like(&v, s)) ||
        (rc = lp_sae_work_new(&w, s, B)))
        goto done;
    perm = lp_malloc((size_t)count * sizeof *perm);
    dead = lp_calloc((size_t)F, sizeof *dead);
    x = lp_malloc_aligned((size_t)B * d * sizeof(float));
    if (o->base) tgt = lp_malloc_aligned((size_t)B * d * sizeof(float));
    if (!perm || !dead || !x || (o->base && !tgt)) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    ckpt_header h = {0};
    int resumed = 0;
    if (o->resume && o->checkpoint_path && lp_file_exists(o->checkpoint_path)) {
        if ((rc = ckpt_read(o->checkpoint_path, &h, s, m, v, dead, B))) goto done;
        s->cfg.norm_scale = h.norm_scale;
        s->theta = h.theta;
        resumed = 1;
    } else {
        memcpy(h.magic, CKPT_MAGIC, 8);
        h.version = 1;
        h.arch = s->cfg.arch;
        h.d_in = d;
        h.d_sae = F;
        h.k = s->cfg.k;
        h.batch = B;
        h.seed = s->cfg.seed;
        h.n_params = (int64_t)s->n_params;
        if (!o->warm_start) lp_sae_init(s, s->cfg.seed);
        make_perm(perm, count, s->cfg.seed, -1);
        if ((rc = init_from_data(s, st, o, perm))) goto done;
    }
    h.total_steps = total;
    int64_t perm_epoch = -2;
    if (o->log_path) {
        log = fopen(o->log_path, resumed ? "a" : "w");
        if (!log) {
            rc = lp_fail(LP_ERR_IO, "%s: cannot write metrics log", o->log_path);
            goto done;
        }
    }
    lp_progress pg;
    lp_progress_init(&pg, (double)total * B, "tok");
    if (!o->progress) pg.enabled = 0;
    const lp_adam adam = {o->lr, o->beta1, o->beta2, o->eps};
    double t0 = lp_now();
    int64_t tok0 = h.tokens_seen;
    for (; h.step < total; h.step++) {
        if (h.pos + B > count) {
            h.epoch++;
            h.pos = 0;
        }
        if (perm_epoch != h.epoch) {
            make_perm(perm, count, s->cfg.seed, h.epoch);
            perm_epoch = h.epoch;
        }
        idx = perm + h.pos;
        if ((rc = lp_store_gather(st, idx, B, x))) goto done;
        if ((rc = check_rows(x, B, d, st, idx))) goto done;
        const float sc = s->cfg.norm_scale;
        if (o->base) { /* boost: reconstruct what the frozen base misses */
            if ((rc = lp_sae_infer_run(&base_ws, o->base, x, B, tgt))) goto done;
            for (int64_t i = 0; i < (int64_t)B * d; i++) tgt[i] = (x[i] - tgt[i]) * sc;
        }
        for (int64_t i = 0; i < (int64_t)B * d; i++) x[i] *= sc;
        const float *tn = o->base ? tgt : x;
        lp_sae_stats ss;
        if ((rc = lp_sae_grads_target(s, g, w, x, tn, B, dead, &ss))) goto done;
        if (!isfinite(ss.loss)) {
            rc = lp_fail(LP_ERR_NUM, "training diverged at step %lld (loss is %g): lower --lr",
                         (long long)h.step, ss.loss);
            goto done;
        }
        lp_adam a = adam;
        a.lr = lr_at(o, h.step, total, warm);
        lp_sae_adam_step(s, g, m, v, &a, h.step + 1);
        /* state after the step: dead counters, BatchTopK θ */
        const uint8_t *fired = lp_sae_work_fired(w);
        int64_t n_dead = 0;
        for (int f = 0; f < F; f++) {
            dead[f] = fired[f] ? 0 : dead[f] + B;
            n_dead += dead[f] >= s->cfg.dead_tokens;
        }
        if (s->cfg.arch == LP_SAE_BATCHTOPK && ss.kept_min > 0) {
            if (!h.theta_init) s->theta = ss.kept_min, h.theta_init = 1;
            else s->theta = (1 - s->cfg.theta_momentum) * s->theta + s->cfg.theta_momentum * ss.kept_min;
        }
        h.pos += B;
        h.tokens_seen += B;
        if (log && o->log_every > 0 && (h.step % o->log_every == 0 || h.step + 1 == total)) {
            /* FVU of this batch: rec / total variance */
            double var = 0;
            for (int j = 0; j < d; j++) {
                double mu = 0, sq = 0;
                for (int b = 0; b < B; b++) mu += tn[(int64_t)b * d + j];
                mu /= B;
                for (int b = 0; b < B; b++) {
                    double t = tn[(int64_t)b * d + j] - mu;
                    sq += t * t;
                }
                var += sq / B;
            }
            double el = lp_now() - t0;
            fprintf(log,
                    "{\"step\":%lld,\"tokens\":%lld,\"loss\":%.6g,\"mse\":%.6g,\"penalty\":%.6g,"
                    "\"aux\":%.6g,\"fvu\":%.6g,\"l0\":%.4g,\"dead_fraction\":%.6g,\"lr\":%.6g,"
                    "\"tok_s\":%.1f}\n",
                    (long long)h.step, (long long)h.tokens_seen, ss.loss, ss.rec, ss.penalty, ss.aux,
                    var > 0 ? ss.rec / var : 0, ss.l0, (double)n_dead / F, a.lr,
                    el > 0 ? (h.tokens_seen - tok0) / el : 0);
            fflush(log);
        }
        char extra[128];
        snprintf(extra, sizeof extra, " %s loss %.4f L0 %.1f dead %.1f%%", o->label ? o->label : "",
                 ss.loss, ss.l0, 100.0 * n_dead / F);
        lp_progress_update(&pg, (double)h.tokens_seen, extra);
        if (o->checkpoint_every > 0 && o->checkpoint_path && (h.step + 1) % o->checkpoint_every == 0 &&
            h.step + 1 < total) {
            ckpt_header hc = h;
            hc.step = h.step + 1;
            hc.norm_scale = s->cfg.norm_scale;
            hc.theta = s->theta;
            if ((rc = ckpt_write(o->checkpoint_path, &hc, s, m, v, dead))) goto done;
        }
    }
    lp_progress_finish(&pg);
    s->cfg.tokens_trained = h.tokens_seen;
    if (o->checkpoint_path && lp_file_exists(o->checkpoint_path)) remove(o->checkpoint_path);
    rc = LP_OK;
done:
    if (log) fclose(log);
    lp_sae_free(g);
    lp_sae_free(m);
    lp_sae_free(v);
    lp_sae_work_free(w);
    free(perm);
    free(dead);
    lp_free(x);
    lp_free(tgt);
    lp_sae_infer_free(&base_ws);
    return rc;
}
