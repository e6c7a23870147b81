/* pool.c — the pooled SAE: decoder rows of several seeds clustered by
 * cross-seed best matches (greedy, most-supported rows first), one latent
 * per kept cluster, initialised from its members. Algorithm in loupe/pool.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/pool.h"

typedef struct {
    int a;
    int64_t i;
    int support;
    float strength;
} row_key;

static int cmp_key(const void *p, const void *q) {
    const row_key *x = p, *y = q;
    if (x->support != y->support) return y->support - x->support;
    if (x->strength != y->strength) return y->strength > x->strength ? 1 : -1;
    if (x->a != y->a) return x->a - y->a;
    return x->i < y->i ? -1 : x->i > y->i;
}

typedef struct {
    int64_t first; /* index of its first member in the member list */
    int size;
    int64_t order; /* creation order */
} cluster;

static int cmp_cluster(const void *p, const void *q) {
    const cluster *x = p, *y = q;
    if (x->size != y->size) return y->size - x->size;
    return x->order < y->order ? -1 : x->order > y->order;
}

int lp_pool_build(const lp_sae *const *saes, int n, const lp_stability *st, const lp_pool_opts *o, lp_sae **out,
                  lp_pool_info *info) {
    memset(info, 0, sizeof *info);
    if (!st || st->n != n) return lp_fail(LP_ERR_ARG, "pool: the matches were computed for another set of SAEs");
    int rc = lp_stability_check(saes, NULL, n);
    if (rc) return rc;
    for (int a = 1; a < n; a++)
        if (saes[a]->cfg.arch != saes[0]->cfg.arch)
            return lp_fail(LP_ERR_ARG, "pool: SAE %d is %s but SAE 0 is %s: pool SAEs of one architecture", a,
                           lp_sae_arch_name(saes[a]->cfg.arch), lp_sae_arch_name(saes[0]->cfg.arch));
    const int d = saes[0]->cfg.d_in;
    const int64_t total = st->off[n];
    row_key *keys = lp_malloc((size_t)total * sizeof *keys);
    uint8_t *used = lp_calloc((size_t)total, 1);
    int64_t *members = lp_malloc((size_t)total * sizeof(int64_t)); /* flat row ids, grouped by cluster */
    cluster *cl = lp_malloc((size_t)total * sizeof *cl);
    lp_sae *p = NULL;
    if (!keys || !used || !members || !cl) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int a = 0; a < n; a++)
        for (int64_t i = 0; i < st->F[a]; i++) {
            row_key *k = &keys[st->off[a] + i];
            k->a = a, k->i = i, k->support = 0;
            double s = 0;
            for (int b = 0; b < n; b++) {
                if (b == a) continue;
                float m = st->best[a * n + b][i];
                k->support += m >= o->tau;
                s += m;
            }
            k->strength = (float)(s / (n - 1));
        }
    qsort(keys, (size_t)total, sizeof *keys, cmp_key);
    int64_t nm = 0, nc = 0;
    for (int64_t q = 0; q < total; q++) {
        const int a = keys[q].a;
        const int64_t i = keys[q].i, id = st->off[a] + i;
        if (used[id]) continue;
        cl[nc].first = nm;
        cl[nc].order = nc;
        cl[nc].size = 1;
        used[id] = 1;
        members[nm++] = id;
        for (int b = 0; b < n; b++) {
            if (b == a) continue;
            const float m = st->best[a * n + b][i];
            const int64_t jid = st->off[b] + st->arg[a * n + b][i];
            if (m >= o->tau && !used[jid]) {
                used[jid] = 1;
                members[nm++] = jid;
                cl[nc].size++;
            }
        }
        info->size_hist[cl[nc].size]++;
        nc++;
    }
    qsort(cl, (size_t)nc, sizeof *cl, cmp_cluster);
    int64_t size = o->size > 0 ? o->size : saes[0]->cfg.d_sae;
    if (size > nc) size = nc;
    lp_sae_config c = saes[0]->cfg;
    c.d_sae = (int)size;
    if (c.k > c.d_sae) c.k = c.d_sae;
    if (c.k_aux > c.d_sae) c.k_aux = c.d_sae;
    c.norm_scale = 1.0f;
    c.seed = 0;
    c.tokens_trained = 0;
    if ((rc = lp_sae_new(&p, &c))) goto done;
    float *We = p->p[LP_SAE_W_ENC], *Wd = p->p[LP_SAE_W_DEC], *be = p->p[LP_SAE_B_ENC], *bd = p->p[LP_SAE_B_DEC];
    float *lt = p->p_size[LP_SAE_LOG_THRESHOLD] ? p->p[LP_SAE_LOG_THRESHOLD] : NULL;
    /* which SAE a flat row id belongs to */
    double kept_members = 0;
    for (int64_t f = 0; f < size; f++) {
        const cluster *k = &cl[f];
        float *wd = Wd + f * d, *we = We + f * d;
        double bsum = 0, tsum = 0;
        for (int q = 0; q < k->size; q++) {
            int64_t id = members[k->first + q];
            int a = 0;
            while (st->off[a + 1] <= id) a++;
            const lp_sae *s = saes[a];
            const int64_t i = id - st->off[a];
            const float ns = s->cfg.norm_scale;
            for (int j = 0; j < d; j++) {
                wd[j] += s->p[LP_SAE_W_DEC][i * d + j];
                we[j] += s->p[LP_SAE_W_ENC][i * d + j] / k->size;
            }
            bsum += s->p[LP_SAE_B_ENC][i] / ns;
            if (lt && s->p_size[LP_SAE_LOG_THRESHOLD]) tsum += s->p[LP_SAE_LOG_THRESHOLD][i] - logf(ns);
        }
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)wd[j] * wd[j];
        float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
        for (int j = 0; j < d; j++) wd[j] *= inv;
        be[f] = (float)(bsum / k->size);
        if (lt) lt[f] = (float)(tsum / k->size);
        info->kept_hist[k->size]++;
        kept_members += k->size;
    }
    double theta = 0;
    for (int a = 0; a < n; a++) {
        const float ns = saes[a]->cfg.norm_scale;
        for (int j = 0; j < d; j++) bd[j] += saes[a]->p[LP_SAE_B_DEC][j] / ns / n;
        theta += saes[a]->theta / ns / n;
    }
    p->theta = (float)theta;
    info->rows = total;
    info->clusters = nc;
    info->kept = size;
    info->kept_mean_size = size ? kept_members / size : 0;
    *out = p;
    p = NULL;
    rc = LP_OK;
done:
    lp_sae_free(p);
    free(keys);
    free(used);
    free(members);
    free(cl);
    return rc;
}
