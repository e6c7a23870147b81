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

/* k-th largest (1-based) of a[0..n) by quickselect; reorders a. */
static float kth_largest(float *a, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        /* median of three as pivot, descending order */
        float x = a[lo], y = a[mid], z = a[hi];
        float piv = (x > y) ? ((y > z) ? y : (x > z ? z : x)) : ((x > z) ? x : (y > z ? z : y));
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > piv) i++;
            while (a[j] < piv) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

enum { BLK = 16 };

/* Top-k of relu(p + b) over allowed latents for one row, exact, in
 * descending order (ties: lower latent first). Two vectorised passes: block
 * maxima give a lower bound t0 on the k-th value (k blocks each hold a value
 * >= their maximum); only blocks reaching t0 are scanned for candidates,
 * and the k best candidates are then picked by quickselect. */
static int topk_row(const float *p, const float *b, int F, int k, const uint8_t *mask, float *bm,
                    float *tmp, float *cv, int32_t *ci, int32_t *oi, float *ov) {
    const int nb = (F + BLK - 1) / BLK;
    for (int q = 0; q < nb; q++) {
        int f0 = q * BLK, m = F - f0 < BLK ? F - f0 : BLK;
        float mx = 0.0f;
        if (mask) {
            for (int i = 0; i < m; i++) {
                float v = p[f0 + i] + b[f0 + i];
                if (mask[f0 + i] && v > mx) mx = v;
            }
        } else {
#pragma omp simd reduction(max : mx)
            for (int i = 0; i < m; i++) {
                float v = p[f0 + i] + b[f0 + i];
                mx = v > mx ? v : mx;
            }
        }
        bm[q] = mx;
    }
    float t0 = 0.0f;
    if (nb > k) {
        memcpy(tmp, bm, (size_t)nb * sizeof(float));
        t0 = kth_largest(tmp, nb, k);
    }
    int nc = 0;
    for (int q = 0; q < nb; q++) {
        if (!(bm[q] > 0.0f) || bm[q] < t0) continue;
        int f0 = q * BLK, m = F - f0 < BLK ? F - f0 : BLK;
        for (int i = 0; i < m; i++) {
            float v = p[f0 + i] + b[f0 + i];
            if (v > 0.0f && v >= t0 && (!mask || mask[f0 + i])) {
                cv[nc] = v;
                ci[nc] = f0 + i;
                nc++;
            }
        }
    }
    int n = nc;
    if (nc > k) {
        memcpy(tmp, cv, (size_t)nc * sizeof(float));
        float t1 = kth_largest(tmp, nc, k);
        int above = 0;
        for (int j = 0; j < nc; j++) above += cv[j] > t1;
        int ties = k - above;
        n = 0;
        for (int j = 0; j < nc; j++)
            if (cv[j] > t1 || (cv[j] == t1 && ties-- > 0)) {
                cv[n] = cv[j];
                ci[n] = ci[j];
                n++;
            }
    }
    /* insertion sort: descending value, ascending latent */
    for (int j = 0; j < n; j++) {
        float v = cv[j];
        int32_t id = ci[j];
        int t = j - 1;
        while (t >= 0 && (ov[t] < v || (ov[t] == v && oi[t] > id))) {
            ov[t + 1] = ov[t];
            oi[t + 1] = oi[t];
            t--;
        }
        ov[t + 1] = v;
        oi[t + 1] = id;
    }
    return n;
}

int lp_select_topk_rows(const float *pre, const float *b_enc, int B, int F, int k,
                        const uint8_t *mask, lp_sae_codes *c) {
    if (k > F) k = F;
    int rc = lp_codes_reserve(c, B, (int64_t)B * k);
    if (rc) return rc;
    int64_t *cnt = c->rowptr + 1;
    int failed = 0;
#pragma omp parallel
    {
        int nb = (F + BLK - 1) / BLK;
        float *bm = malloc((size_t)nb * sizeof(float));
        float *tmp = malloc((size_t)F * sizeof(float));
        float *cv = malloc((size_t)F * sizeof(float));
        int32_t *ci = malloc((size_t)F * sizeof(int32_t));
        if (!bm || !tmp || !cv || !ci) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(static)
            for (int b = 0; b < B; b++) {
                int64_t base = (int64_t)b * k;
                cnt[b] = topk_row(pre + (int64_t)b * F, b_enc, F, k, mask, bm, tmp, cv, ci, c->idx + base,
                                  c->val + base);
            }
        }
        free(bm);
        free(tmp);
        free(cv);
        free(ci);
    }
    if (failed) return lp_fail(LP_ERR_NOMEM, "top-k selection: out of memory");
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

int64_t lp_sae_enc_rows(const lp_sae *s) {
    return s->cfg.arch == LP_SAE_KRON ? (int64_t)s->cfg.kron_heads * (s->cfg.kron_m + s->cfg.kron_n)
                                      : (int64_t)s->cfg.d_sae;
}

/* pre[B,E] = (xn − b_dec) · W_encᵀ   (b_enc is added by the selections; E
 * = d_sae, or kron's heads·(m+n) rows of [P; Q]) */
void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre) {
    const int d = s->cfg.d_in;
    const int64_t E = lp_sae_enc_rows(s);
    const float *bd = s->p[LP_SAE_B_DEC];
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int i = 0; i < d; i++) xc[(int64_t)b * d + i] = xn[(int64_t)b * d + i] - bd[i];
    lp_sgemm(0, 1, B, E, d, 1.0f, xc, d, s->p[LP_SAE_W_ENC], d, 0.0f, pre, E);
}

int lp_sae_encode(lp_sae *s, const float *xn, int B, float *pre, lp_sae_codes *codes, int training) {
    float *xc = lp_malloc((size_t)B * s->cfg.d_in * sizeof(float));
    if (!xc) return LP_ERR_NOMEM;
    /* kron's [B, heads·(m+n)] may not fit the caller's [B, F] */
    float *own = NULL;
    if (lp_sae_enc_rows(s) > s->cfg.d_sae) {
        own = lp_malloc((size_t)B * (size_t)lp_sae_enc_rows(s) * sizeof(float));
        if (!own) {
            free(xc);
            return LP_ERR_NOMEM;
        }
        pre = own;
    }
    lp_sae_pre(s, xn, B, xc, pre);
    free(xc);
    float kept_min = 0;
    int rc = lp_sae_ops_for(s->cfg.arch)->select(s, pre, B, codes, training, &kept_min);
    free(own);
    return rc;
}
