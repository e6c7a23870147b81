/* stability.c — stability of SAE latents across seeds: the consistency check
 * of a set of SAEs, pairwise max matching (and optionally one-to-one
 * matching) of every pair, per-latent stability scores at a threshold, and
 * their summary (fraction stable, histogram). Formulas in loupe/stability.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/stability.h"

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int lp_stability_check(const lp_sae *const *saes, const char *const *names, int n) {
    if (n < 2) return lp_fail(LP_ERR_ARG, "stability needs at least 2 SAEs (got %d)", n);
    if (n > 64) return lp_fail(LP_ERR_ARG, "stability: at most 64 SAEs (got %d)", n);
    const lp_sae *a = saes[0];
    const char *na = names && names[0] ? names[0] : "SAE 0";
    for (int i = 1; i < n; i++) {
        const lp_sae *b = saes[i];
        char buf[32];
        snprintf(buf, sizeof buf, "SAE %d", i);
        const char *nb = names && names[i] ? names[i] : buf;
        if (a->cfg.d_in != b->cfg.d_in)
            return lp_fail(LP_ERR_ARG, "%s has d_in=%d but %s has d_in=%d: SAEs of different widths cannot be compared",
                           nb, b->cfg.d_in, na, a->cfg.d_in);
        if (a->cfg.hook[0] && b->cfg.hook[0] && strcmp(a->cfg.hook, b->cfg.hook) != 0)
            return lp_fail(LP_ERR_ARG, "%s was trained at hook %s but %s at %s: mixed hooks in one stability run", nb,
                           b->cfg.hook, na, a->cfg.hook);
        if (a->cfg.model[0] && b->cfg.model[0] && strcmp(base_name(a->cfg.model), base_name(b->cfg.model)) != 0)
            return lp_fail(LP_ERR_ARG, "%s comes from model %s but %s from %s: mixed models in one stability run", nb,
                           b->cfg.model, na, a->cfg.model);
    }
    return LP_OK;
}

void lp_stability_free(lp_stability *st) {
    if (!st) return;
    int nn = st->n * st->n;
    for (int q = 0; q < nn; q++) {
        if (st->best) free(st->best[q]);
        if (st->arg) free(st->arg[q]);
        if (st->hung) free(st->hung[q]);
        if (st->hcol) free(st->hcol[q]);
    }
    free(st->best);
    free(st->arg);
    free(st->hung);
    free(st->hcol);
    free(st->F);
    free(st->off);
    memset(st, 0, sizeof *st);
}

int lp_stability_match(lp_stability *st, const lp_sae *const *saes, int n, int mode, int one_to_one) {
    memset(st, 0, sizeof *st);
    int rc = lp_stability_check(saes, NULL, n);
    if (rc) return rc;
    st->n = n;
    st->mode = mode;
    st->one_to_one = one_to_one;
    st->F = lp_calloc((size_t)n, sizeof(int64_t));
    st->off = lp_calloc((size_t)n + 1, sizeof(int64_t));
    st->best = lp_calloc((size_t)n * n, sizeof(float *));
    st->arg = lp_calloc((size_t)n * n, sizeof(int32_t *));
    if (one_to_one) {
        st->hung = lp_calloc((size_t)n * n, sizeof(float *));
        st->hcol = lp_calloc((size_t)n * n, sizeof(int64_t *));
    }
    if (!st->F || !st->off || !st->best || !st->arg || (one_to_one && (!st->hung || !st->hcol))) goto nomem;
    for (int a = 0; a < n; a++) {
        st->F[a] = saes[a]->cfg.d_sae;
        st->off[a + 1] = st->off[a] + st->F[a];
    }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            if (a == b) continue;
            int q = a * n + b;
            st->best[q] = lp_malloc((size_t)st->F[a] * sizeof(float));
            st->arg[q] = lp_malloc((size_t)st->F[a] * sizeof(int32_t));
            if (!st->best[q] || !st->arg[q]) goto nomem;
            if (one_to_one) {
                st->hung[q] = lp_malloc((size_t)st->F[a] * sizeof(float));
                st->hcol[q] = lp_malloc((size_t)st->F[a] * sizeof(int64_t));
                if (!st->hung[q] || !st->hcol[q]) goto nomem;
            }
        }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            int ab = a * n + b, ba = b * n + a;
            if ((rc = lp_max_match(saes[a], saes[b], mode, st->best[ab], st->arg[ab], st->best[ba], st->arg[ba])))
                goto fail;
            if (!one_to_one) continue;
            if ((rc = lp_match_one_to_one(saes[a], saes[b], mode, st->hcol[ab], st->hung[ab]))) goto fail;
            /* the reverse direction is the same assignment read from b's side */
            for (int64_t j = 0; j < st->F[b]; j++) st->hcol[ba][j] = -1, st->hung[ba][j] = -2.0f;
            for (int64_t i = 0; i < st->F[a]; i++) {
                int64_t j = st->hcol[ab][i];
                if (j >= 0) st->hcol[ba][j] = i, st->hung[ba][j] = st->hung[ab][i];
            }
        }
    return LP_OK;
nomem:
    rc = lp_fail(LP_ERR_NOMEM, "stability: out of memory for %d SAEs", n);
fail:
    lp_stability_free(st);
    return rc;
}

int lp_stability_scores(const lp_stability *st, float tau, int one_to_one, float *score) {
    if (one_to_one && !st->one_to_one)
        return lp_fail(LP_ERR_ARG, "stability: one-to-one scores asked for but not computed");
    const int n = st->n;
    for (int a = 0; a < n; a++)
        for (int64_t i = 0; i < st->F[a]; i++) {
            int hits = 0;
            for (int b = 0; b < n; b++) {
                if (b == a) continue;
                float s = one_to_one ? st->hung[a * n + b][i] : st->best[a * n + b][i];
                hits += s >= tau;
            }
            score[st->off[a] + i] = (float)hits / (float)(n - 1);
        }
    return LP_OK;
}

int lp_stability_summarise(const lp_stability *st, float tau, float s_min, int one_to_one, lp_stability_summary *out) {
    memset(out, 0, sizeof *out);
    out->tau = tau;
    out->s_min = s_min;
    const int64_t total = st->off[st->n];
    float *sc = lp_malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    if (!sc) return LP_ERR_NOMEM;
    int rc = lp_stability_scores(st, tau, one_to_one, sc);
    if (rc) {
        free(sc);
        return rc;
    }
    int64_t stable = 0;
    double sum = 0;
    for (int64_t i = 0; i < total; i++) {
        stable += sc[i] >= s_min;
        sum += sc[i];
        int k = (int)(sc[i] * (st->n - 1) + 0.5f);
        out->hist[k]++;
    }
    out->total = total;
    out->frac_stable = total ? (double)stable / total : 0;
    out->mean_score = total ? sum / total : 0;
    free(sc);
    return LP_OK;
}
