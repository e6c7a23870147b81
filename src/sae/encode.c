/* encode.c — the dense part of an SAE forward (one GEMM) and the sparse
 * selections every architecture builds on: per-row top-k without sorting F
 * values (a k-element min-heap), threshold selection, and the sparse decode
 * x̂ = W_decᵀ z + b_dec in O(B·k·d). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae/arch.h"

int lp_codes_reserve(lp_sae_codes *c, int B, int64_t nnz) {
    if (B + 1 > c->B + 1 || !c->rowptr) {
        int64_t *rp = realloc(c->rowptr, (size_t)(B + 1) * sizeof *rp);
        if (!rp) return lp_fail(LP_ERR_NOMEM, "out of memory for SAE codes");
        c->rowptr = rp;
    }
    c->B = B;
    if (nnz > c->cap) {
        int64_t cap = nnz + nnz / 4 + 16;
        int32_t *idx = realloc(c->idx, (size_t)cap * sizeof *idx);
        if (idx) c->idx = idx;
        float *val = idx ? realloc(c->val, (size_t)cap * sizeof *val) : NULL;
        if (val) c->val = val;
        float *pre = val ? realloc(c->pre, (size_t)cap * sizeof *pre) : NULL;
        if (pre) c->pre = pre;
        if (!pre) return lp_fail(LP_ERR_NOMEM, "out of memory for %lld SAE code entries", (long long)nnz);
        c->cap = (int)(cap > INT32_MAX ? INT32_MAX : cap);
    }
    return LP_OK;
}

void lp_codes_free(lp_sae_codes *c) {
    free(c->rowptr);
    free(c->idx);
    free(c->val);
    free(c->pre);
    memset(c, 0, sizeof *c);
}

/* sift-down in a min-heap of (value, index) */
static void heap_down(float *hv, int32_t *hi, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && hv[l] < hv[m]) m = l;
        if (r < n && hv[r] < hv[m]) m = r;
        if (m == i) return;
        float tv = hv[i];
        hv[i] = hv[m];
        hv[m] = tv;
        int32_t ti = hi[i];
        hi[i] = hi[m];
        hi[m] = ti;
        i = m;
    }
}

int lp_select_topk_rows(const float *pre, const float *b_enc, int B, int F, int k,
                        const uint8_t *mask, lp_sae_codes *c) {
    if (k > F) k = F;
    int rc = lp_codes_reserve(c, B, (int64_t)B * k);
    if (rc) return rc;
    int64_t *cnt = c->rowptr + 1;
#pragma omp parallel
    {
        float hv[k > 0 ? k : 1];
        int32_t hi[k > 0 ? k : 1];
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *p = pre + (int64_t)b * F;
            int n = 0;
            for (int f = 0; f < F; f++) {
                if (mask && !mask[f]) continue;
                float v = p[f] + b_enc[f];
                if (!(v > 0.0f)) continue;
                if (n < k) {
                    /* insert, sift up */
                    int i = n++;
                    hv[i] = v;
                    hi[i] = f;
                    while (i > 0 && hv[(i - 1) / 2] > hv[i]) {
                        int par = (i - 1) / 2;
                        float tv = hv[i];
                        hv[i] = hv[par];
                        hv[par] = tv;
                        int32_t ti = hi[i];
                        hi[i] = hi[par];
                        hi[par] = ti;
                        i = par;
                    }
                } else if (v > hv[0]) {
                    hv[0] = v;
                    hi[0] = f;
                    heap_down(hv, hi, k, 0);
                }
            }
            /* heap-sort into descending order at the row's slot */
            int64_t base = (int64_t)b * k;
            for (int m = n; m > 0; m--) {
                c->idx[base + m - 1] = hi[0];
                c->val[base + m - 1] = hv[0];
                hv[0] = hv[m - 1];
                hi[0] = hi[m - 1];
                heap_down(hv, hi, m - 1, 0);
            }
            cnt[b] = n;
        }
    }
    /* compact rows with fewer than k entries */
    c->rowptr[0] = 0;
    int64_t w = 0;
    for (int b = 0; b < B; b++) {
        int64_t n = cnt[b], base = (int64_t)b * k;
        if (w != base) {
            memmove(c->idx + w, c->idx + base, (size_t)n * sizeof(int32_t));
            memmove(c->val + w, c->val + base, (size_t)n * sizeof(float));
        }
        w += n;
        c->rowptr[b + 1] = w;
    }
    for (int64_t j = 0; j < w; j++) c->pre[j] = c->val[j];
    return LP_OK;
}

int lp_select_threshold(const float *pre, const float *b_enc, int B, int F, const float *thr,
                        float thr_scalar, lp_sae_codes *c) {
    int rc = lp_codes_reserve(c, B, 0);
    if (rc) return rc;
    int64_t *rp = c->rowptr;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *p = pre + (int64_t)b * F;
        int64_t n = 0;
        for (int f = 0; f < F; f++) n += p[f] + b_enc[f] > (thr ? thr[f] : thr_scalar);
        rp[b + 1] = n;
    }
    rp[0] = 0;
    for (int b = 0; b < B; b++) rp[b + 1] += rp[b];
    if ((rc = lp_codes_reserve(c, B, rp[B]))) return rc;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *p = pre + (int64_t)b * F;
        int64_t j = rp[b];
        for (int f = 0; f < F; f++) {
            float v = p[f] + b_enc[f];
            if (v > (thr ? thr[f] : thr_scalar)) {
                c->idx[j] = f;
                c->val[j] = v;
                c->pre[j] = v;
                j++;
            }
        }
    }
    return LP_OK;
}

void lp_sae_decode(const lp_sae *s, const lp_sae_codes *c, float *xhat) {
    const int d = s->cfg.d_in;
    const float *Wd = s->p[LP_SAE_W_DEC], *bd = s->p[LP_SAE_B_DEC];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < c->B; b++) {
        float *o = xhat + (int64_t)b * d;
        memcpy(o, bd, (size_t)d * sizeof(float));
        for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
            float v = c->val[j];
            if (v == 0.0f) continue;
            const float *w = Wd + (int64_t)c->idx[j] * d;
            for (int i = 0; i < d; i++) o[i] += v * w[i];
        }
    }
}

/* pre[B,F] = (xn − b_dec) · W_encᵀ   (b_enc is added by the selections) */
void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre) {
    const int d = s->cfg.d_in, F = s->cfg.d_sae;
    const float *bd = s->p[LP_SAE_B_DEC];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < d; i++) xc[(int64_t)b * d + i] = xn[(int64_t)b * d + i] - bd[i];
    lp_sgemm(0, 1, B, F, d, 1.0f, xc, d, s->p[LP_SAE_W_ENC], d, 0.0f, pre, F);
}

int lp_sae_encode(lp_sae *s, const float *xn, int B, float *pre, lp_sae_codes *codes, int training) {
    float *xc = lp_malloc((size_t)B * s->cfg.d_in * sizeof(float));
    if (!xc) return LP_ERR_NOMEM;
    lp_sae_pre(s, xn, B, xc, pre);
    free(xc);
    float kept_min = 0;
    int rc = lp_sae_ops_for(s->cfg.arch)->select(s, pre, B, codes, training, &kept_min);
    return rc;
}
