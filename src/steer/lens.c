/* lens.c — the logit lens of a direction: what a vector added to the last
 * residual stream does to the next-token logits, read through the final
 * RMSNorm weight and the unembedding; top promoted / suppressed tokens. */
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"

int lp_lens(const lp_model *m, const float *v, float *scores) {
    const int D = m->cfg.dim, V = m->cfg.vocab_size;
    const float *g = m->p[LP_P_RMS_FINAL];
    const float *U = m->cfg.shared_classifier ? m->p[LP_P_EMB] : m->p[LP_P_WCLS];
    if (!U || !g) return lp_fail(LP_ERR_ARG, "lens: the model has no unembedding");
    float *u = lp_malloc((size_t)D * sizeof(float));
    if (!u) return LP_ERR_NOMEM;
    for (int j = 0; j < D; j++) u[j] = g[j] * v[j];
    if (!lp_all_finite(u, (size_t)D)) {
        free(u);
        return lp_fail(LP_ERR_NUM, "lens: the direction has non-finite values");
    }
    for (int t = 0; t < V; t++) {
        double s = 0;
        const float *row = U + (int64_t)t * D;
        for (int j = 0; j < D; j++) s += (double)row[j] * u[j];
        scores[t] = (float)s;
    }
    free(u);
    return LP_OK;
}

/* insert id into a best-first list of length *len (capacity n) by sign*score */
static void keep_best(const float *sc, float sign, int id, int *list, int *len, int n) {
    int i;
    if (*len < n) i = (*len)++;
    else if (sign * sc[id] > sign * sc[list[n - 1]]) i = n - 1; /* drop the worst */
    else return;
    while (i > 0 && sign * sc[list[i - 1]] < sign * sc[id]) {
        list[i] = list[i - 1];
        i--;
    }
    list[i] = id;
}

void lp_lens_top(const float *scores, int V, int n, int *top, int *bottom) {
    if (n > V) n = V;
    int nt = 0, nb = 0;
    for (int t = 0; t < V; t++) {
        if (top) keep_best(scores, 1.0f, t, top, &nt, n);
        if (bottom) keep_best(scores, -1.0f, t, bottom, &nb, n);
    }
}
