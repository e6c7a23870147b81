/* intervene.c — steering a running model through SAE features: position
 * specs, the per-site hook that adds to / rescales latents (error-
 * preserving or through the SAE), multi-layer coefficient schedules, and
 * the checks that an SAE belongs at the site it is applied to. Formulas in
 * loupe/steer.h. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"
#include "sae/arch.h"

void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre);

/* ---- positions ---------------------------------------------------------------- */
int lp_pos_parse(const char *s, lp_pos_spec *p) {
    memset(p, 0, sizeof *p);
    if (!s || !*s) return lp_fail(LP_ERR_ARG, "empty position spec (want all, prompt, gen, A:B or A)");
    if (strcmp(s, "all") == 0) p->kind = LP_POS_ALL;
    else if (strcmp(s, "prompt") == 0) p->kind = LP_POS_PROMPT;
    else if (strcmp(s, "gen") == 0 || strcmp(s, "generated") == 0) p->kind = LP_POS_GEN;
    else {
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;
        if (end == s || lo < 0 || lo > INT_MAX) goto bad;
        if (*end == ':') {
            const char *h = end + 1;
            hi = strtol(h, &end, 10);
            if (end == h || hi < lo || hi > INT_MAX) goto bad;
        }
        if (*end) goto bad;
        p->kind = LP_POS_RANGE;
        p->lo = (int)lo;
        p->hi = (int)hi;
    }
    return LP_OK;
bad:
    return lp_fail(LP_ERR_ARG, "position spec '%s': want all, prompt, gen, A:B (0 <= A <= B) or A", s);
}

int lp_pos_selects(const lp_pos_spec *p, int pos, int n_prompt) {
    switch (p->kind) {
    case LP_POS_ALL: return 1;
    case LP_POS_PROMPT: return pos < n_prompt;
    case LP_POS_GEN: return pos >= n_prompt;
    default: return pos >= p->lo && pos <= p->hi;
    }
}

int lp_pos_check(const lp_pos_spec *p, int n_prompt, int n_total) {
    /* position 0 holds BOS in every sequence loupe runs: never steered */
    for (int pos = 1; pos < n_total; pos++)
        if (lp_pos_selects(p, pos, n_prompt)) return LP_OK;
    const char *what = p->kind == LP_POS_PROMPT ? "prompt" : p->kind == LP_POS_GEN ? "gen" : p->kind == LP_POS_ALL ? "all" : "range";
    if (p->kind == LP_POS_RANGE)
        return lp_fail(LP_ERR_ARG, "positions %d:%d select nothing: the sequence has positions 1..%d after BOS", p->lo,
                       p->hi, n_total - 1);
    return lp_fail(LP_ERR_ARG,
                   "positions '%s' select nothing: the prompt has %d token(s) with BOS and the sequence %d position(s)",
                   what, n_prompt, n_total);
}

/* ---- the steerer ------------------------------------------------------------- */
struct lp_steer_site {
    lp_steer *st;
    lp_hook_point at;
    lp_sae *sae;
    int need_codes;
    int cap_rows;
    int64_t *rows;
    float *xn, *xc, *pre, *xhat;
    lp_sae_codes codes;
};

void lp_steer_init(lp_steer *st, int variant, const lp_pos_spec *pos, int bos) {
    memset(st, 0, sizeof *st);
    st->variant = variant;
    if (pos) st->pos = *pos;
    st->bos = bos;
}

int lp_steer_add(lp_steer *st, const lp_steer_term *t) {
    if (st->n_terms >= LP_STEER_MAX_TERMS) return lp_fail(LP_ERR_ARG, "steer: more than %d terms", LP_STEER_MAX_TERMS);
    if (!t->sae) return lp_fail(LP_ERR_ARG, "steer: term without an SAE");
    char name[64];
    lp_hook_name(t->at, name, sizeof name);
    if (t->feature < 0 || t->feature >= t->sae->cfg.d_sae)
        return lp_fail(LP_ERR_ARG, "steer: feature %d out of range 0..%d for the SAE at %s", t->feature,
                       t->sae->cfg.d_sae - 1, name);
    if (t->op != LP_STEER_ADD && t->op != LP_STEER_RESCALE) return lp_fail(LP_ERR_ARG, "steer: unknown operation %d", t->op);
    if (!isfinite(t->coef) || !isfinite(t->zbar)) return lp_fail(LP_ERR_NUM, "steer: non-finite coefficient at %s", name);
    for (int i = 0; i < st->n_terms; i++) {
        const lp_steer_term *o = &st->term[i];
        if (o->at.layer == t->at.layer && o->at.kind == t->at.kind && o->sae != t->sae)
            return lp_fail(LP_ERR_ARG, "steer: two different SAEs at %s", name);
    }
    st->term[st->n_terms++] = *t;
    return LP_OK;
}

float lp_steer_schedule(int kind, int j, int n, float gamma) {
    switch (kind) {
    case LP_SCHED_LINEAR: return n > 0 ? 1.0f - (float)j / (float)n : 1.0f;
    case LP_SCHED_EXP: return powf(gamma, (float)j);
    default: return 1.0f;
    }
}

static void site_free(lp_steer_site *s) {
    free(s->rows);
    lp_free(s->xn);
    lp_free(s->xc);
    lp_free(s->pre);
    lp_free(s->xhat);
    lp_codes_free(&s->codes);
}

void lp_steer_free(lp_steer *st) {
    for (int i = 0; i < st->n_sites; i++) site_free(&st->site[i]);
    free(st->site);
    st->site = NULL;
    st->n_sites = 0;
}

static int steer_hook(float *act, const lp_hook_ctx *ctx, void *user);

int lp_steer_hooks(lp_steer *st, const lp_model *m, int max_rows, lp_hooks *hooks) {
    lp_steer_free(st);
    if (st->n_terms == 0) return lp_fail(LP_ERR_ARG, "steer: no intervention terms");
    st->site = lp_calloc((size_t)st->n_terms, sizeof *st->site);
    if (!st->site) return LP_ERR_NOMEM;
    const int D = m->cfg.dim;
    for (int i = 0; i < st->n_terms; i++) {
        const lp_steer_term *t = &st->term[i];
        char name[64];
        lp_hook_name(t->at, name, sizeof name);
        if (t->at.layer < 0 || t->at.layer >= m->cfg.n_layers || t->at.kind < 0 || t->at.kind >= LP_HOOK_KINDS)
            return lp_fail(LP_ERR_ARG, "steer: site %s is not in the model (%d layers)", name, m->cfg.n_layers);
        if (t->sae->cfg.d_in != D)
            return lp_fail(LP_ERR_ARG, "steer: the SAE at %s has d_in=%d but the model's width is %d", name,
                           t->sae->cfg.d_in, D);
        lp_steer_site *s = NULL;
        for (int j = 0; j < st->n_sites; j++)
            if (st->site[j].at.layer == t->at.layer && st->site[j].at.kind == t->at.kind) s = &st->site[j];
        if (!s) {
            s = &st->site[st->n_sites++];
            s->st = st;
            s->at = t->at;
            s->sae = t->sae;
        }
        if (t->op == LP_STEER_RESCALE || st->variant == LP_STEER_THROUGH_SAE) s->need_codes = 1;
    }
    for (int j = 0; j < st->n_sites; j++) {
        lp_steer_site *s = &st->site[j];
        /* pre-activation columns: d_sae, or the stacked encoder rows of a KronSAE */
        const int64_t er = lp_sae_enc_rows(s->sae);
        const size_t F = (size_t)(er > s->sae->cfg.d_sae ? er : s->sae->cfg.d_sae);
        s->cap_rows = max_rows;
        s->rows = lp_malloc((size_t)max_rows * sizeof(int64_t));
        if (!s->rows) return LP_ERR_NOMEM;
        if (s->need_codes) {
            s->xn = lp_malloc_aligned((size_t)max_rows * D * sizeof(float));
            s->xc = lp_malloc_aligned((size_t)max_rows * D * sizeof(float));
            s->xhat = lp_malloc_aligned((size_t)max_rows * D * sizeof(float));
            s->pre = lp_malloc_aligned((size_t)max_rows * F * sizeof(float));
            if (!s->xn || !s->xc || !s->xhat || !s->pre) return LP_ERR_NOMEM;
        }
        if (lp_hooks_add(hooks, s->at, steer_hook, s)) return lp_fail(LP_ERR_ARG, "steer: too many hooks");
    }
    return LP_OK;
}

/* a_f on row r of the codes (0 when f is not active) */
static float code_of(const lp_sae_codes *c, int r, int f) {
    for (int64_t q = c->rowptr[r]; q < c->rowptr[r + 1]; q++)
        if (c->idx[q] == f) return c->val[q];
    return 0.0f;
}

static int steer_hook(float *act, const lp_hook_ctx *ctx, void *user) {
    lp_steer_site *s = user;
    lp_steer *st = s->st;
    const int D = ctx->D, T = ctx->T;
    const int64_t N = (int64_t)ctx->B * T;
    int64_t n = 0;
    for (int64_t i = 0; i < N; i++) {
        int pos = ctx->pos0 + (int)(i % T);
        if (ctx->tokens[i] == st->bos || !lp_pos_selects(&st->pos, pos, st->n_prompt)) continue;
        if (n == s->cap_rows) return lp_fail(LP_ERR_ARG, "steer: more than %d rows in one call", s->cap_rows);
        s->rows[n++] = i;
    }
    if (n == 0) return LP_OK;
    lp_sae *sae = s->sae;
    const float sc = sae->cfg.norm_scale > 0 ? sae->cfg.norm_scale : 1.0f;
    const float *Wd = sae->p[LP_SAE_W_DEC];
    if (s->need_codes) {
        for (int64_t r = 0; r < n; r++)
            for (int j = 0; j < D; j++) s->xn[r * D + j] = act[s->rows[r] * D + j] * sc;
        lp_sae_pre(sae, s->xn, (int)n, s->xc, s->pre);
        int rc = lp_sae_ops_for(sae->cfg.arch)->select(sae, s->pre, (int)n, &s->codes, 0, NULL);
        if (rc) return rc;
        if (st->variant == LP_STEER_THROUGH_SAE) lp_sae_decode(sae, &s->codes, s->xhat);
    }
    for (int64_t r = 0; r < n; r++) {
        float *a = act + s->rows[r] * D;
        /* work in the SAE's normalised space: h' = (base + Σ Δz_f d_f) / sc */
        float *base = s->xn ? s->xn + r * D : NULL;
        if (st->variant == LP_STEER_THROUGH_SAE) base = s->xhat + r * D;
        else if (base)
            for (int j = 0; j < D; j++) base[j] = a[j] * sc;
        for (int i = 0; i < st->n_terms; i++) {
            const lp_steer_term *t = &st->term[i];
            if (t->at.layer != s->at.layer || t->at.kind != s->at.kind) continue;
            float dz = t->op == LP_STEER_ADD ? t->coef * t->zbar : (t->coef - 1.0f) * code_of(&s->codes, (int)r, t->feature);
            if (dz == 0.0f) continue;
            const float *w = Wd + (int64_t)t->feature * D;
            if (base)
                for (int j = 0; j < D; j++) base[j] += dz * w[j];
            else
                for (int j = 0; j < D; j++) a[j] += dz * w[j] / sc;
        }
        if (base)
            for (int j = 0; j < D; j++) a[j] = base[j] / sc;
    }
    st->rows += n;
    return LP_OK;
}

/* ---- checks ------------------------------------------------------------------ */
static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int lp_sae_check_site(const lp_sae *sae, const char *sae_dir, const lp_model *m, lp_hook_point at) {
    char want[64];
    lp_hook_name(at, want, sizeof want);
    const char *dir = sae_dir ? sae_dir : "SAE";
    if (sae->cfg.d_in != m->cfg.dim)
        return lp_fail(LP_ERR_ARG, "%s: SAE d_in=%d does not match the model %s (dim %d)", dir, sae->cfg.d_in,
                       m->path ? m->path : "", m->cfg.dim);
    if (sae->cfg.hook[0] && strcmp(sae->cfg.hook, want) != 0)
        return lp_fail(LP_ERR_ARG, "%s: SAE was trained at %s, not at %s", dir, sae->cfg.hook, want);
    if (sae->cfg.model[0] && m->path && lp_file_exists(sae->cfg.model)) {
        char ra[PATH_MAX], rb[PATH_MAX];
        int same = realpath(sae->cfg.model, ra) && realpath(m->path, rb) ? strcmp(ra, rb) == 0
                                                                           : strcmp(base_name(sae->cfg.model), base_name(m->path)) == 0;
        if (!same) {
            char ha[65], hb[65]; /* same bytes under another name is fine */
            if (lp_is_dir(sae->cfg.model) || lp_is_dir(m->path) || lp_sha256_file(sae->cfg.model, ha) ||
                lp_sha256_file(m->path, hb) || strcmp(ha, hb) != 0)
                return lp_fail(LP_ERR_ARG, "%s: SAE was trained on model %s, not %s", dir, sae->cfg.model, m->path);
        }
    }
    return LP_OK;
}
