/* synth.c — the synthetic activation model with known ground truth
 * (isolated directions + low-rank blocks of linearly dependent directions):
 * generation, sampling into an activation store, saving/loading the truth,
 * and scoring an SAE's decoder against it. The model is in loupe/synth.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/match.h"
#include "loupe/safetensors.h"
#include "loupe/store.h"
#include "loupe/subspace.h"
#include "loupe/synth.h"

void lp_synth_config_default(lp_synth_config *c) {
    memset(c, 0, sizeof *c);
    c->d = 64;
    c->n_iso = 48;
    c->p_iso = 0.03f;
    c->n_blocks = 2;
    c->block_m = 24;
    c->block_r = 12;
    c->block_kind = LP_SYNTH_GAUSS;
    c->p_block = 0.1f;
    c->q_in = 0.5f;
    c->coef_lo = 0.5f;
    c->coef_hi = 1.5f;
    c->noise = 0.01f;
    c->seed = 1;
}

static int check_config(const lp_synth_config *c) {
    if (c->d <= 1 || c->d > 65536) return lp_fail(LP_ERR_ARG, "synth: d=%d out of range 2..65536", c->d);
    if (c->n_iso < 0 || c->n_blocks < 0 || c->n_iso + c->n_blocks == 0)
        return lp_fail(LP_ERR_ARG, "synth: needs isolated features or blocks (n_iso %d, blocks %d)", c->n_iso,
                       c->n_blocks);
    if (c->block_kind != LP_SYNTH_RANDOM && c->block_kind != LP_SYNTH_GAUSS)
        return lp_fail(LP_ERR_ARG, "synth: unknown block kind %d", c->block_kind);
    if (c->n_blocks > 0 && c->block_kind == LP_SYNTH_GAUSS && c->block_m != 2 * c->block_r)
        return lp_fail(LP_ERR_ARG, "synth: gauss blocks have m = 2r directions (m %d, r %d)", c->block_m, c->block_r);
    if (c->n_blocks > 0 && (c->block_r < 1 || c->block_m <= c->block_r || c->block_r > c->d))
        return lp_fail(LP_ERR_ARG, "synth: blocks need 1 <= r < m and r <= d (m %d, r %d, d %d)", c->block_m,
                       c->block_r, c->d);
    if (!(c->p_iso >= 0 && c->p_iso <= 1) || !(c->p_block >= 0 && c->p_block <= 1) || !(c->q_in > 0 && c->q_in <= 1))
        return lp_fail(LP_ERR_ARG, "synth: probabilities must lie in [0, 1] (q_in in (0, 1])");
    if (!(c->coef_lo >= 0 && c->coef_hi >= c->coef_lo && c->coef_hi > 0))
        return lp_fail(LP_ERR_ARG, "synth: coefficients need 0 <= lo <= hi, hi > 0");
    if (!(c->noise >= 0) || !isfinite(c->noise)) return lp_fail(LP_ERR_ARG, "synth: noise must be >= 0");
    return LP_OK;
}

void lp_synth_free(lp_synth *s) {
    if (!s) return;
    free(s->iso);
    free(s->blk);
    free(s->basis);
    free(s);
}

static int alloc_synth(lp_synth **out, const lp_synth_config *c) {
    int rc = check_config(c);
    if (rc) return rc;
    lp_synth *s = lp_calloc(1, sizeof *s);
    if (!s) return LP_ERR_NOMEM;
    s->cfg = *c;
    const size_t d = (size_t)c->d;
    s->iso = lp_malloc(((size_t)c->n_iso * d + 1) * sizeof(float));
    s->blk = lp_malloc(((size_t)c->n_blocks * c->block_m * d + 1) * sizeof(float));
    s->basis = lp_malloc(((size_t)c->n_blocks * c->block_r * d + 1) * sizeof(float));
    if (!s->iso || !s->blk || !s->basis) {
        lp_synth_free(s);
        return LP_ERR_NOMEM;
    }
    *out = s;
    return LP_OK;
}

static void unit(float *v, int d) {
    double ss = 0;
    for (int j = 0; j < d; j++) ss += (double)v[j] * v[j];
    float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
    for (int j = 0; j < d; j++) v[j] *= inv;
}

int lp_synth_new(lp_synth **out, const lp_synth_config *c) {
    lp_synth *s = NULL;
    int rc = alloc_synth(&s, c);
    if (rc) return rc;
    const int d = c->d, m = c->block_m, r = c->block_r;
    lp_rng rng;
    lp_rng_seed(&rng, c->seed);
    double *q = lp_malloc((size_t)d * sizeof(double));
    if (!q) {
        lp_synth_free(s);
        return LP_ERR_NOMEM;
    }
    for (int g = 0; g < c->n_blocks; g++) {
        float *Bg = s->basis + (int64_t)g * r * d;
        for (int k = 0; k < r; k++) { /* Gram-Schmidt, twice, in double */
            for (int j = 0; j < d; j++) q[j] = lp_rng_normal(&rng);
            for (int pass = 0; pass < 2; pass++)
                for (int p = 0; p < k; p++) {
                    double dot = 0;
                    for (int j = 0; j < d; j++) dot += q[j] * Bg[(int64_t)p * d + j];
                    for (int j = 0; j < d; j++) q[j] -= dot * Bg[(int64_t)p * d + j];
                }
            double ss = 0;
            for (int j = 0; j < d; j++) ss += q[j] * q[j];
            for (int j = 0; j < d; j++) Bg[(int64_t)k * d + j] = (float)(q[j] / sqrt(ss));
        }
        for (int k = 0; k < m; k++) { /* a random unit direction inside B_g (gauss: ±basis) */
            float *h = s->blk + ((int64_t)g * m + k) * d;
            if (c->block_kind == LP_SYNTH_GAUSS) {
                const float sg = k % 2 ? -1.0f : 1.0f, *e = Bg + (int64_t)(k / 2) * d;
                for (int j = 0; j < d; j++) h[j] = sg * e[j];
                continue;
            }
            memset(h, 0, (size_t)d * sizeof(float));
            for (int p = 0; p < r; p++) {
                float w = lp_rng_normal(&rng);
                for (int j = 0; j < d; j++) h[j] += w * Bg[(int64_t)p * d + j];
            }
            unit(h, d);
        }
    }
    /* isolated directions: random, outside the blocks when they leave room
     * (projected onto the orthogonal complement of every B_g) */
    const int room = c->n_blocks * r < d;
    for (int i = 0; i < c->n_iso; i++) {
        float *v = s->iso + (int64_t)i * d;
        for (int j = 0; j < d; j++) q[j] = lp_rng_normal(&rng);
        for (int p = 0; room && p < c->n_blocks * r; p++) {
            const float *e = s->basis + (int64_t)p * d;
            double dot = 0;
            for (int j = 0; j < d; j++) dot += q[j] * e[j];
            for (int j = 0; j < d; j++) q[j] -= dot * e[j];
        }
        for (int j = 0; j < d; j++) v[j] = (float)q[j];
        unit(v, d);
    }
    free(q);
    *out = s;
    return LP_OK;
}

void lp_synth_sample(const lp_synth *s, lp_rng *r, int64_t n, float *x, int32_t *tok) {
    const lp_synth_config *c = &s->cfg;
    const int d = c->d, m = c->block_m;
    const float span = c->coef_hi - c->coef_lo;
    for (int64_t t = 0; t < n; t++) {
        float *xr = x + t * d;
        for (int j = 0; j < d; j++) xr[j] = c->noise > 0 ? c->noise * lp_rng_normal(r) : 0.0f;
        float strongest = 0;
        int32_t id = -1;
        for (int i = 0; i < c->n_iso; i++) {
            if (lp_rng_uniform(r) >= c->p_iso) continue;
            float a = c->coef_lo + span * (float)lp_rng_uniform(r);
            const float *f = s->iso + (int64_t)i * d;
            for (int j = 0; j < d; j++) xr[j] += a * f[j];
            if (a > strongest) strongest = a, id = i;
        }
        for (int g = 0; g < c->n_blocks; g++) {
            if (lp_rng_uniform(r) >= c->p_block) continue;
            float tot = 0;
            int fired = 0;
            if (c->block_kind == LP_SYNTH_GAUSS) { /* isotropic Gaussian inside B_g */
                const float sd = 0.5f * (c->coef_lo + c->coef_hi);
                for (int k = 0; k < c->block_r; k++) {
                    float z = sd * lp_rng_normal(r);
                    const float *h = s->blk + ((int64_t)g * m + 2 * k + (z < 0)) * d;
                    for (int j = 0; j < d; j++) xr[j] += fabsf(z) * h[j];
                    tot += fabsf(z);
                }
                fired = 1;
            }
            while (!fired) /* at least one direction of an active block */
                for (int k = 0; k < m; k++) {
                    if (lp_rng_uniform(r) >= c->q_in) continue;
                    float b = c->coef_lo + span * (float)lp_rng_uniform(r);
                    const float *h = s->blk + ((int64_t)g * m + k) * d;
                    for (int j = 0; j < d; j++) xr[j] += b * h[j];
                    tot += b;
                    fired = 1;
                }
            if (tot > strongest) strongest = tot, id = c->n_iso + g;
        }
        if (tok) tok[t] = id;
    }
}

int lp_synth_write_store(const lp_synth *s, const char *dir, int64_t rows, uint64_t data_seed, const char *truth_path) {
    if (rows <= 0) return lp_fail(LP_ERR_ARG, "synth: rows must be positive (got %lld)", (long long)rows);
    const int d = s->cfg.d;
    const char *hooks[1] = {"synthetic"};
    int dims[1] = {d};
    lp_store_spec spec = {.model = "synthetic", .data = truth_path, .ctx = 0, .dtype = LP_STORE_F32,
                          .n_hooks = 1, .hooks = hooks, .dims = dims};
    lp_store_writer *w = NULL;
    int rc = lp_store_create(&w, dir, &spec);
    if (rc) return rc;
    const int64_t B = 16384;
    float *x = lp_malloc((size_t)B * d * sizeof(float));
    int32_t *tok = lp_malloc((size_t)B * sizeof(int32_t)), *pos = lp_malloc((size_t)B * sizeof(int32_t));
    if (!x || !tok || !pos) {
        free(x), free(tok), free(pos);
        lp_store_abort(w);
        return LP_ERR_NOMEM;
    }
    lp_rng r;
    lp_rng_seed(&r, data_seed);
    for (int64_t done = 0; done < rows && !rc; done += B) {
        int64_t n = rows - done < B ? rows - done : B;
        lp_synth_sample(s, &r, n, x, tok);
        for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)((done + i) % 1000000000);
        const float *acts[1] = {x};
        rc = lp_store_append(w, n, acts, tok, NULL, pos);
    }
    free(x), free(tok), free(pos);
    char buf[64];
    if (!rc) {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)data_seed);
        rc = lp_store_set_meta(w, "synth_data_seed", buf);
    }
    if (rc) {
        lp_store_abort(w);
        return rc;
    }
    return lp_store_close(w);
}

/* ---- truth file ------------------------------------------------------------ */
int lp_synth_save(const lp_synth *s, const char *path) {
    const lp_synth_config *c = &s->cfg;
    lp_st_writer *w = lp_st_writer_new();
    if (!w) return LP_ERR_NOMEM;
    int64_t sh_iso[2] = {c->n_iso, c->d}, sh_blk[2] = {(int64_t)c->n_blocks * c->block_m, c->d},
            sh_bas[2] = {(int64_t)c->n_blocks * c->block_r, c->d};
    int rc = lp_st_writer_add(w, "iso", LP_DT_F32, 2, sh_iso, s->iso);
    if (!rc) rc = lp_st_writer_add(w, "blocks", LP_DT_F32, 2, sh_blk, s->blk);
    if (!rc) rc = lp_st_writer_add(w, "basis", LP_DT_F32, 2, sh_bas, s->basis);
    char v[64];
#define META_I(key, val)                                                                                               \
    if (!rc) {                                                                                                         \
        snprintf(v, sizeof v, "%lld", (long long)(val));                                                               \
        rc = lp_st_writer_meta(w, key, v);                                                                             \
    }
#define META_F(key, val)                                                                                               \
    if (!rc) {                                                                                                         \
        snprintf(v, sizeof v, "%.9g", (double)(val));                                                                  \
        rc = lp_st_writer_meta(w, key, v);                                                                             \
    }
    if (!rc) rc = lp_st_writer_meta(w, "format", "loupe-synth-1");
    META_I("d", c->d);
    META_I("n_iso", c->n_iso);
    META_F("p_iso", c->p_iso);
    META_I("n_blocks", c->n_blocks);
    META_I("block_m", c->block_m);
    META_I("block_r", c->block_r);
    META_F("p_block", c->p_block);
    META_F("q_in", c->q_in);
    META_I("block_kind", c->block_kind);
    META_F("coef_lo", c->coef_lo);
    META_F("coef_hi", c->coef_hi);
    META_F("noise", c->noise);
    META_I("seed", c->seed);
#undef META_I
#undef META_F
    if (!rc) rc = lp_st_writer_write(w, path);
    lp_st_writer_free(w);
    return rc;
}

static int meta_num(const lp_safetensors *st, const char *path, const char *key, double *out) {
    const char *v = lp_st_meta(st, key);
    char *end;
    if (!v) return lp_fail(LP_ERR_FORMAT, "%s: ground-truth file lacks metadata '%s'", path, key);
    *out = strtod(v, &end);
    if (end == v || *end || !isfinite(*out))
        return lp_fail(LP_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", path, key, v);
    return LP_OK;
}

int lp_synth_load(lp_synth **out, const char *path) {
    lp_safetensors st;
    memset(&st, 0, sizeof st);
    int rc = lp_st_open(&st, path);
    if (rc) return rc;
    const char *fmt = lp_st_meta(&st, "format");
    if (!fmt || strcmp(fmt, "loupe-synth-1") != 0) {
        lp_st_close(&st);
        return lp_fail(LP_ERR_FORMAT, "%s: not a loupe synthetic ground-truth file", path);
    }
    lp_synth_config c;
    lp_synth_config_default(&c);
    double v[12];
    const char *keys[12] = {"d", "n_iso", "p_iso", "n_blocks", "block_m", "block_r",
                            "p_block", "q_in", "coef_lo", "coef_hi", "noise", "seed"};
    for (int i = 0; i < 12 && !rc; i++) rc = meta_num(&st, path, keys[i], &v[i]);
    double kind = 0;
    if (!rc && lp_st_meta(&st, "block_kind")) rc = meta_num(&st, path, "block_kind", &kind);
    c.block_kind = (int)kind;
    if (rc) {
        lp_st_close(&st);
        return rc;
    }
    c.d = (int)v[0], c.n_iso = (int)v[1], c.p_iso = (float)v[2], c.n_blocks = (int)v[3], c.block_m = (int)v[4];
    c.block_r = (int)v[5], c.p_block = (float)v[6], c.q_in = (float)v[7], c.coef_lo = (float)v[8];
    c.coef_hi = (float)v[9], c.noise = (float)v[10], c.seed = (uint64_t)v[11];
    lp_synth *s = NULL;
    if ((rc = alloc_synth(&s, &c))) {
        lp_st_close(&st);
        return lp_fail_prefix(rc, path);
    }
    const char *names[3] = {"iso", "blocks", "basis"};
    float *dst[3] = {s->iso, s->blk, s->basis};
    int64_t rows[3] = {c.n_iso, (int64_t)c.n_blocks * c.block_m, (int64_t)c.n_blocks * c.block_r};
    for (int i = 0; i < 3 && !rc; i++) {
        int64_t shape[2] = {rows[i], c.d};
        rc = lp_st_expect(&st, names[i], 2, shape, NULL);
        const lp_st_tensor *t = lp_st_find(&st, names[i]);
        if (!rc && t) rc = lp_st_read_f32(&st, t, dst[i]);
        if (!rc && !lp_all_finite(dst[i], (size_t)(rows[i] * c.d)))
            rc = lp_fail(LP_ERR_NUM, "%s: tensor %s has NaN or Inf", path, names[i]);
    }
    lp_st_close(&st);
    if (rc) {
        lp_synth_free(s);
        return rc;
    }
    *out = s;
    return LP_OK;
}

/* ---- scoring ------------------------------------------------------------------ */
void lp_synth_score_free(lp_synth_score *sc) {
    if (!sc) return;
    free(sc->iso_best);
    free(sc->iso_arg);
    free(sc->latent_iso);
    free(sc->latent_block);
    free(sc->block_count);
    free(sc->block_cos);
    free(sc->dir_best);
    memset(sc, 0, sizeof *sc);
}

int lp_synth_score_sae(const lp_synth *s, const lp_sae *sae, float iso_tau, float inside_min, lp_synth_score *out) {
    memset(out, 0, sizeof *out);
    const lp_synth_config *c = &s->cfg;
    const int d = c->d, F = sae->cfg.d_sae, nb = c->n_blocks, m = c->block_m, r = c->block_r;
    if (sae->cfg.d_in != d)
        return lp_fail(LP_ERR_ARG, "SAE d_in=%d does not match the synthetic model's d=%d", sae->cfg.d_in, d);
    out->n_iso = c->n_iso, out->n_blocks = nb, out->block_m = m, out->block_r = r, out->F = F;
    out->iso_best = lp_malloc((size_t)(c->n_iso + 1) * sizeof(float));
    out->iso_arg = lp_malloc((size_t)(c->n_iso + 1) * sizeof(int32_t));
    out->latent_iso = lp_calloc((size_t)F, 1);
    out->latent_block = lp_malloc((size_t)F * sizeof(int32_t));
    out->block_count = lp_calloc((size_t)nb + 1, sizeof(int));
    out->block_cos = lp_calloc((size_t)nb * r + 1, sizeof(double));
    out->dir_best = lp_malloc((size_t)nb * m * sizeof(float) + sizeof(float));
    float *rows = lp_malloc((size_t)F * d * sizeof(float)), *Q = lp_malloc((size_t)(r > 0 ? r : 1) * d * sizeof(float));
    int rc = LP_OK;
    if (!out->iso_best || !out->iso_arg || !out->latent_iso || !out->latent_block || !out->block_count ||
        !out->block_cos || !out->dir_best || !rows || !Q) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    const float *Wd = sae->p[LP_SAE_W_DEC];
    if (c->n_iso > 0 &&
        (rc = lp_max_cosine(s->iso, NULL, c->n_iso, Wd, NULL, F, d, out->iso_best, out->iso_arg, NULL, NULL)))
        goto done;
    if (nb > 0 && (rc = lp_max_cosine(s->blk, NULL, (int64_t)nb * m, Wd, NULL, F, d, out->dir_best, NULL, NULL, NULL)))
        goto done;
    for (int i = 0; i < c->n_iso; i++)
        if (out->iso_best[i] >= iso_tau) out->latent_iso[out->iso_arg[i]] = 1;
    for (int f = 0; f < F; f++) {
        out->latent_block[f] = -1;
        if (out->latent_iso[f]) continue;
        double best = 0;
        for (int g = 0; g < nb; g++) {
            double in = lp_subspace_inside(s->basis + (int64_t)g * r * d, r, d, Wd + (int64_t)f * d);
            if (in > best) best = in, out->latent_block[f] = g;
        }
        if (best < inside_min) out->latent_block[f] = -1;
    }
    for (int g = 0; g < nb; g++) {
        int64_t n = 0;
        for (int f = 0; f < F; f++)
            if (out->latent_block[f] == g) memcpy(rows + n * d, Wd + (int64_t)f * d, (size_t)d * sizeof(float)), n++;
        out->block_count[g] = (int)n;
        if (n == 0) continue;
        int rr = n < r ? (int)n : r;
        if ((rc = lp_subspace_basis(rows, n, d, rr, Q, NULL))) goto done;
        if ((rc = lp_subspace_compare(s->basis + (int64_t)g * r * d, r, Q, rr, d, out->block_cos + (int64_t)g * r, NULL)))
            goto done;
    }
done:
    free(rows);
    free(Q);
    if (rc) lp_synth_score_free(out);
    return rc;
}
