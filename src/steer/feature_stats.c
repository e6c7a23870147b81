/* feature_stats.c — SAE codes of several sites on text in one model pass
 * (lp_site_codes), and the per-latent statistics built on it: the mean
 * activation where a latent fires (Z̄_f, the unit of steering strength)
 * and its firing frequency. */
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"
#include "loupe/windows.h"
#include "sae/arch.h"

int lp_site_codes(const lp_model *m, const lp_tokenizer *tok, int n, lp_sae *const *saes, const lp_hook_point *at,
                  const char *data, int64_t skip_bytes, int64_t tokens, int ctx, lp_codes_cb cb, void *user) {
    if (n <= 0 || n > LP_MAX_HOOKS) return lp_fail(LP_ERR_ARG, "site codes: need 1..%d SAEs", LP_MAX_HOOKS);
    if (tokens <= 0) return lp_fail(LP_ERR_ARG, "site codes: tokens must be positive");
    if (ctx < 2 || ctx > m->cfg.seq_len) return lp_fail(LP_ERR_ARG, "site codes: ctx %d out of range 2..%d", ctx, m->cfg.seq_len);
    for (int i = 0; i < n; i++)
        if (saes[i]->cfg.d_in != m->cfg.dim)
            return lp_fail(LP_ERR_ARG, "site codes: the SAE for site %d has d_in=%d, model dim %d", i, saes[i]->cfg.d_in,
                           m->cfg.dim);
    const int B = 8, D = m->cfg.dim, bos = lp_tokenizer_bos(tok);
    const int64_t N = (int64_t)B * ctx;
    lp_runner *r = NULL;
    lp_windows w;
    int wopen = 0, rc = LP_OK, maxF = 0;
    int *toks = lp_malloc((size_t)N * sizeof(int)), *rtok = lp_malloc((size_t)N * sizeof(int));
    lp_splice *cap = lp_calloc((size_t)n, sizeof(lp_splice));
    float **buf = lp_calloc((size_t)n, sizeof(float *));
    lp_sae_codes *codes = lp_calloc((size_t)n, sizeof(lp_sae_codes));
    const lp_sae_codes **cptr = lp_calloc((size_t)n, sizeof(lp_sae_codes *));
    float *pre = NULL, *rows = NULL;
    if (!toks || !rtok || !cap || !buf || !codes || !cptr) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    lp_hooks hooks;
    lp_hooks_clear(&hooks);
    for (int i = 0; i < n; i++) {
        maxF = saes[i]->cfg.d_sae > maxF ? saes[i]->cfg.d_sae : maxF;
        cptr[i] = &codes[i];
        if (!(buf[i] = lp_malloc_aligned((size_t)N * D * sizeof(float)))) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        if ((rc = lp_splice_init(&cap[i], LP_SPLICE_CAPTURE, NULL, bos, (int)N, D))) goto done;
        cap[i].captured = buf[i];
        if (lp_hooks_add(&hooks, at[i], lp_splice_hook, &cap[i])) {
            rc = lp_fail(LP_ERR_ARG, "site codes: too many hooks");
            goto done;
        }
    }
    pre = lp_malloc_aligned((size_t)N * maxF * sizeof(float));
    rows = lp_malloc_aligned((size_t)N * D * sizeof(float));
    if (!pre || !rows) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    if ((rc = lp_runner_new(&r, m, B, ctx)) || (rc = lp_windows_open(&w, data, skip_bytes, tok, ctx))) goto done;
    wopen = 1;
    int64_t seen = 0;
    while (seen < tokens) {
        int nb = 0;
        if ((rc = lp_windows_next(&w, B, toks, NULL, &nb)) || nb == 0) break;
        if ((rc = lp_forward(r, toks, nb, ctx, 0, &hooks, LP_LOGITS_NONE, NULL))) break;
        int k = 0;
        for (int64_t q = 0; q < (int64_t)nb * ctx && seen + k < tokens; q++)
            if (toks[q] != bos) rtok[k++] = toks[q];
        for (int i = 0; i < n && !rc; i++) {
            const float sc = saes[i]->cfg.norm_scale > 0 ? saes[i]->cfg.norm_scale : 1.0f;
            int j = 0;
            for (int64_t q = 0; q < (int64_t)nb * ctx && j < k; q++)
                if (toks[q] != bos) {
                    for (int e = 0; e < D; e++) rows[(int64_t)j * D + e] = buf[i][q * D + e] * sc;
                    j++;
                }
            rc = lp_sae_encode(saes[i], rows, k, pre, &codes[i], 0);
        }
        if (rc || (rc = cb(user, k, rtok, cptr))) break;
        seen += k;
    }
    if (!rc && seen == 0) rc = lp_fail(LP_ERR_ARG, "%s: no tokens to encode (after skipping %lld bytes)", data, (long long)skip_bytes);
done:
    if (wopen) lp_windows_close(&w);
    lp_runner_free(r);
    for (int i = 0; i < n; i++) {
        if (buf) lp_free(buf[i]);
        if (cap) lp_splice_free(&cap[i]);
        if (codes) lp_codes_free(&codes[i]);
    }
    free(buf), free(cap), free(codes), free(cptr), free(toks), free(rtok);
    lp_free(pre);
    lp_free(rows);
    return rc;
}

typedef struct {
    int n;
    double **sum;
    int64_t **cnt;
    int64_t seen;
} stats_acc;

static int stats_cb(void *user, int rows, const int *tok, const lp_sae_codes *const *codes) {
    (void)tok;
    stats_acc *a = user;
    for (int i = 0; i < a->n; i++)
        for (int64_t q = 0; q < codes[i]->rowptr[rows]; q++)
            if (codes[i]->val[q] > 0) {
                a->sum[i][codes[i]->idx[q]] += codes[i]->val[q];
                a->cnt[i][codes[i]->idx[q]]++;
            }
    a->seen += rows;
    return LP_OK;
}

int lp_feature_stats(const lp_model *m, const lp_tokenizer *tok, int n, lp_sae *const *saes, const lp_hook_point *at,
                     const char *data, int64_t skip_bytes, int64_t tokens, int ctx, float *const *mean_active,
                     float *const *freq) {
    if (n <= 0 || n > LP_MAX_HOOKS) return lp_fail(LP_ERR_ARG, "feature stats: need 1..%d SAEs", LP_MAX_HOOKS);
    stats_acc a = {n, lp_calloc((size_t)n, sizeof(double *)), lp_calloc((size_t)n, sizeof(int64_t *)), 0};
    int rc = (!a.sum || !a.cnt) ? LP_ERR_NOMEM : LP_OK;
    for (int i = 0; i < n && !rc; i++) {
        a.sum[i] = lp_calloc((size_t)saes[i]->cfg.d_sae, sizeof(double));
        a.cnt[i] = lp_calloc((size_t)saes[i]->cfg.d_sae, sizeof(int64_t));
        if (!a.sum[i] || !a.cnt[i]) rc = LP_ERR_NOMEM;
    }
    if (!rc) rc = lp_site_codes(m, tok, n, saes, at, data, skip_bytes, tokens, ctx, stats_cb, &a);
    for (int i = 0; i < n && !rc; i++)
        for (int f = 0; f < saes[i]->cfg.d_sae; f++) {
            if (mean_active && mean_active[i]) mean_active[i][f] = a.cnt[i][f] ? (float)(a.sum[i][f] / a.cnt[i][f]) : 0.0f;
            if (freq && freq[i]) freq[i][f] = (float)((double)a.cnt[i][f] / a.seen);
        }
    for (int i = 0; i < n; i++) {
        if (a.sum) free(a.sum[i]);
        if (a.cnt) free(a.cnt[i]);
    }
    free(a.sum);
    free(a.cnt);
    return rc;
}
