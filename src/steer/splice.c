/* splice.c — a hook that replaces an activation by an SAE's reconstruction
 * (or zeros it, or only captures it), keeping reconstruction statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"
#include "sae/arch.h"

void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre);

int lp_splice_init(lp_splice *s, int mode, lp_sae *sae, int bos, int max_rows, int D) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->sae = sae;
    s->bos = bos;
    s->cap_rows = max_rows;
    s->sum = lp_calloc((size_t)D, sizeof(double));
    s->rows_idx = lp_malloc((size_t)max_rows * sizeof(int64_t));
    if (!s->sum || !s->rows_idx) return LP_ERR_NOMEM;
    if (mode == LP_SPLICE_SAE) {
        if (sae->cfg.d_in != D)
            return lp_fail(LP_ERR_ARG, "SAE d_in=%d does not match the hook's width %d", sae->cfg.d_in, D);
        size_t F = (size_t)sae->cfg.d_sae;
        size_t E = (size_t)lp_sae_enc_rows(sae); /* pre columns: kron's h(m+n) may exceed F */
        s->pre = lp_malloc_aligned((size_t)max_rows * (E > F ? E : F) * sizeof(float));
        s->xn = lp_malloc_aligned((size_t)max_rows * D * sizeof(float));
        s->xhat = lp_malloc_aligned((size_t)max_rows * D * sizeof(float));
        s->fires = lp_calloc(F, sizeof(int64_t));
        if (!s->pre || !s->xn || !s->xhat || !s->fires) return LP_ERR_NOMEM;
    }
    return LP_OK;
}

void lp_splice_free(lp_splice *s) {
    free(s->sum);
    free(s->rows_idx);
    lp_free(s->pre);
    lp_free(s->xn);
    lp_free(s->xhat);
    free(s->fires);
    lp_codes_free(&s->codes);
    memset(s, 0, sizeof *s);
}

/* keep the top k entries of each row (codes are per row; topk rows are
 * sorted, other archs are not: select by value) */
static void limit_k(lp_sae_codes *c, int k) {
    int64_t w = 0;
    for (int b = 0; b < c->B; b++) {
        int64_t a = c->rowptr[b], e = c->rowptr[b + 1];
        c->rowptr[b] = w;
        while (e - a > k) { /* drop the smallest until k remain */
            int64_t mi = a;
            for (int64_t j = a; j < e; j++)
                if (c->val[j] < c->val[mi]) mi = j;
            c->idx[mi] = c->idx[e - 1], c->val[mi] = c->val[e - 1], c->pre[mi] = c->pre[e - 1];
            e--;
        }
        for (int64_t j = a; j < e; j++, w++) c->idx[w] = c->idx[j], c->val[w] = c->val[j], c->pre[w] = c->pre[j];
    }
    c->rowptr[c->B] = w;
}

/* remove the codes of latents outside keep (ablation after selection) */
static void drop_latents(lp_sae_codes *c, const uint8_t *keep) {
    int64_t w = 0;
    for (int b = 0; b < c->B; b++) {
        int64_t a = c->rowptr[b], e = c->rowptr[b + 1];
        c->rowptr[b] = w;
        for (int64_t j = a; j < e; j++)
            if (keep[c->idx[j]]) c->idx[w] = c->idx[j], c->val[w] = c->val[j], c->pre[w] = c->pre[j], w++;
    }
    c->rowptr[c->B] = w;
}

int lp_splice_hook(float *act, const lp_hook_ctx *ctx, void *user) {
    lp_splice *s = user;
    const int D = ctx->D;
    const int64_t N = (int64_t)ctx->B * ctx->T;
    if (s->captured) memcpy(s->captured, act, (size_t)N * D * sizeof(float));
    if (s->mode == LP_SPLICE_CAPTURE) return LP_OK;
    if (N > s->cap_rows) return lp_fail(LP_ERR_ARG, "splice: %lld rows exceed its buffers", (long long)N);
    /* rows to splice: every non-BOS position */
    int64_t n = 0;
    int64_t *rows = s->rows_idx;
    for (int64_t i = 0; i < N; i++)
        if (ctx->tokens[i] != s->bos) rows[n++] = i;
    if (s->mode == LP_SPLICE_ZERO) {
        for (int64_t r = 0; r < n; r++) memset(act + rows[r] * D, 0, (size_t)D * sizeof(float));
        return LP_OK;
    }
    lp_sae *sae = s->sae;
    const float sc = sae->cfg.norm_scale;
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < D; j++) s->xn[r * D + j] = act[rows[r] * D + j] * sc;
    float *xc = s->xhat; /* scratch for (x − b_dec) */
    lp_sae_pre(sae, s->xn, (int)n, xc, s->pre);
    int rc = lp_sae_ops_for(sae->cfg.arch)->select(sae, s->pre, (int)n, &s->codes, 0, NULL);
    if (rc) return rc;
    if (s->k_override > 0) limit_k(&s->codes, s->k_override);
    if (s->keep) drop_latents(&s->codes, s->keep);
    lp_sae_decode(sae, &s->codes, s->xhat);
    for (int64_t r = 0; r < n; r++) {
        float *a = act + rows[r] * D;
        const float *xh = s->xhat + r * D;
        for (int j = 0; j < D; j++) {
            double x = a[j], y = xh[j] / sc;
            s->sq_err += (x - y) * (x - y);
            s->sum_sq += x * x;
            s->sum[j] += x;
            a[j] = (float)y;
        }
        for (int64_t q = s->codes.rowptr[r]; q < s->codes.rowptr[r + 1]; q++)
            if (s->codes.val[q] > 0) {
                s->fires[s->codes.idx[q]]++;
                s->l0_sum += 1;
            }
    }
    s->rows += n;
    return LP_OK;
}
