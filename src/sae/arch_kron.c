/* arch_kron.c — KronSAE with mAND (arXiv 2505.22255). F = h·m·n latents
 * from h heads of thin projections: W_enc holds [P; Q] (h·m + h·n rows) and
 * b_enc [b_p; b_q], so the one encoder GEMM (lp_sae_pre) costs B·h(m+n)·d
 * instead of B·F·d. Per row and head g:
 *   p_i = ReLU(P_{g,i}·xc + b_p),  q_j = ReLU(Q_{g,j}·xc + b_q)
 *   z_{g,i,j} = mAND(p_i, q_j) = √(p_i q_j) if both > 0, else 0
 *   (kron_and = LP_KRON_PRODUCT: z = p_i q_j, the plain-product ablation)
 * latent id g·m·n + i·n + j; then TopK over all F latents, and the shared
 * sparse decoder.
 *
 * The TopK never forms the F products: the largest latent of row (g, i) is
 * mAND(p_{g,i}, max_j q_{g,j}) (mAND and the product are monotone in each
 * argument, so the comparisons run on products, without √), and these h·m
 * row maxima are real, distinct latents, so when k < h·m the k-th largest of
 * them, t0, bounds the k-th largest latent from below. Only rows whose
 * maximum reaches t0 are enumerated (a few more than k), and √ is taken only
 * for the candidates: O(h(m+n)) per row plus the candidates. The k best are
 * then picked with the same rule as lp_select_topk_rows (descending value,
 * ties by lower id), so the result equals a dense top-k over the F products
 * exactly; both selections use a k-element min-heap (few, well-predicted
 * branches). AuxK's selection among dead latents enumerates every product
 * (O(F) per row, no d).
 *
 * Backward (enc_backward): for an entry with value z, ∂z/∂p = q / (2 max(z,
 * 1e-6)) and ∂z/∂q = p / (2 max(z, 1e-6)) — the √ gradient, guarded where
 * z → 0 (product: ∂z/∂p = q, ∂z/∂q = p). The sparse dp, dq of a batch go into
 * a dense [B, h(m+n)] buffer; ∂P, ∂Q = dPQᵀ xc is one GEMM. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae/arch.h"

#define MAND_EPS 1e-6f

typedef struct {
    float *pq, *mx, *tmp, *cv;
    int32_t *ci;
} row_ws;

/* Binary min-heaps for the selections: a handful of values against a heap
 * root is cheaper (and far better predicted) than a quickselect here. */
static void sift_f(float *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (r < n && h[r] < h[m]) m = r;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* the k-th largest of a[0..n) (1 ≤ k ≤ n); heap holds k floats */
static float kth_largest_heap(const float *a, int n, int k, float *heap) {
    memcpy(heap, a, (size_t)k * sizeof(float));
    for (int i = k / 2 - 1; i >= 0; i--) sift_f(heap, k, i);
    for (int i = k; i < n; i++)
        if (a[i] > heap[0]) {
            heap[0] = a[i];
            sift_f(heap, k, 0);
        }
    return heap[0];
}

/* (value, id) pairs ordered by value descending, then id ascending: worse(a, b)
 * says a ranks below b; the heap keeps the worst kept entry at its root */
static inline int worse(float va, int32_t ia, float vb, int32_t ib) { return va < vb || (va == vb && ia > ib); }

static void sift_p(float *v, int32_t *id, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(v[l], id[l], v[m], id[m])) m = l;
        if (r < n && worse(v[r], id[r], v[m], id[m])) m = r;
        if (m == i) return;
        float tv = v[i];
        int32_t ti = id[i];
        v[i] = v[m], id[i] = id[m];
        v[m] = tv, id[m] = ti;
        i = m;
    }
}

/* the k best of nc candidates into ov/oi, best first (ties: lower id first) */
static int pick_heap(const float *cv, const int32_t *ci, int nc, int k, float *ov, int32_t *oi) {
    int n = nc < k ? nc : k;
    memcpy(ov, cv, (size_t)n * sizeof(float));
    memcpy(oi, ci, (size_t)n * sizeof(int32_t));
    for (int i = n / 2 - 1; i >= 0; i--) sift_p(ov, oi, n, i);
    for (int j = n; j < nc; j++)
        if (worse(ov[0], oi[0], cv[j], ci[j])) {
            ov[0] = cv[j], oi[0] = ci[j];
            sift_p(ov, oi, n, 0);
        }
    for (int end = n - 1; end > 0; end--) { /* heap sort: the worst goes last */
        float tv = ov[0];
        int32_t ti = oi[0];
        ov[0] = ov[end], oi[0] = oi[end];
        ov[end] = tv, oi[end] = ti;
        sift_p(ov, oi, end, 0);
    }
    return n;
}

static inline float relu(float v) { return v > 0.0f ? v : 0.0f; }

/* Top-k latents of one row; pre row [h(m+n)] without bias. Returns the count. */
static int kron_row(const lp_sae *s, const float *pr, int k, const uint8_t *mask, row_ws *ws, int32_t *oi,
                    float *ov) {
    const int h = s->cfg.kron_heads, m = s->cfg.kron_m, n = s->cfg.kron_n, prod = s->cfg.kron_and == LP_KRON_PRODUCT;
    const int64_t hm = (int64_t)h * m, E = hm + (int64_t)h * n;
    const float *be = s->p[LP_SAE_B_ENC];
    float *pq = ws->pq; /* p at [g·m + i], q at [h·m + g·n + j], ReLU applied */
    for (int64_t e = 0; e < E; e++) pq[e] = relu(pr[e] + be[e]);
    const float *P = pq, *Q = pq + hm;
    /* row maxima as products p_gi·max_j q_gj (monotone like mAND, no √):
     * each is the product of a real latent */
    float *rm = ws->mx;
    for (int g = 0; g < h; g++) {
        float qm = 0;
        for (int j = 0; j < n; j++) qm = Q[(int64_t)g * n + j] > qm ? Q[(int64_t)g * n + j] : qm;
        for (int i = 0; i < m; i++) rm[(int64_t)g * m + i] = P[(int64_t)g * m + i] * qm;
    }
    /* t0 = the k-th largest row maximum; with √ rounding two products may
     * share a value, so keep everything within 1e-6 relative below t0 and
     * let the exact values decide */
    float thr = 0.0f;
    if (!mask && k < hm) thr = kth_largest_heap(rm, (int)hm, k, ws->tmp) * (1.0f - 1e-6f);
    int nc = 0;
    for (int64_t gi = 0; gi < hm; gi++) {
        if (!(rm[gi] > 0.0f && rm[gi] >= thr)) continue;
        const float p = P[gi], *qg = Q + (gi / m) * n;
        const int64_t f0 = gi * n; /* = g·m·n + i·n */
        for (int j = 0; j < n; j++) {
            const float pq1 = p * qg[j];
            if (!(pq1 > 0.0f && pq1 >= thr) || (mask && !mask[f0 + j])) continue;
            const float z = prod ? pq1 : sqrtf(pq1);
            if (!(z > 0.0f)) continue;
            ws->cv[nc] = z;
            ws->ci[nc] = (int32_t)(f0 + j);
            nc++;
        }
    }
    return pick_heap(ws->cv, ws->ci, nc, k, ov, oi);
}

static int kron_topk(const lp_sae *s, const float *pre, int B, int k, const uint8_t *mask, lp_sae_codes *c) {
    const int F = s->cfg.d_sae;
    const int64_t E = lp_sae_enc_rows(s);
    if (k > F) k = F;
    int rc = lp_codes_reserve(c, B, (int64_t)B * k);
    if (rc) return rc;
    int64_t *cnt = c->rowptr + 1;
    int failed = 0;
#pragma omp parallel
    {
        row_ws ws;
        ws.pq = malloc((size_t)E * sizeof(float));
        ws.mx = malloc((size_t)E * sizeof(float));
        ws.tmp = malloc((size_t)(F > E ? F : E) * sizeof(float));
        ws.cv = malloc((size_t)F * sizeof(float));
        ws.ci = malloc((size_t)F * sizeof(int32_t));
        if (!ws.pq || !ws.mx || !ws.tmp || !ws.cv || !ws.ci) {
#pragma omp atomic write
            failed = 1;
        } else {
#pragma omp for schedule(static)
            for (int b = 0; b < B; b++) {
                int64_t base = (int64_t)b * k;
                cnt[b] = kron_row(s, pre + (int64_t)b * E, k, mask, &ws, c->idx + base, c->val + base);
            }
        }
        free(ws.pq);
        free(ws.mx);
        free(ws.tmp);
        free(ws.cv);
        free(ws.ci);
    }
    if (failed) return lp_fail(LP_ERR_NOMEM, "kron top-k: out of memory");
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

static int kron_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training, float *kept_min) {
    (void)training;
    (void)kept_min;
    return kron_topk(s, pre, B, s->cfg.k, NULL, c);
}

static int kron_select_aux(const lp_sae *s, const float *pre, int B, int k, const uint8_t *mask, lp_sae_codes *c) {
    return kron_topk(s, pre, B, k, mask, c);
}

/* dp, dq of one row's entries into its dPQ row */
static void row_back(const lp_sae *s, const float *pr, const lp_sae_codes *c, int b, const float *dval,
                     float *drow) {
    const int m = s->cfg.kron_m, n = s->cfg.kron_n, h = s->cfg.kron_heads, prod = s->cfg.kron_and == LP_KRON_PRODUCT;
    const int64_t hm = (int64_t)h * m, mn = (int64_t)m * n;
    const float *be = s->p[LP_SAE_B_ENC];
    for (int64_t e = c->rowptr[b]; e < c->rowptr[b + 1]; e++) {
        const int64_t f = c->idx[e], g = f / mn, r = f % mn, i = r / n, j = r % n;
        const int64_t ip = g * m + i, iq = hm + g * n + j;
        const float p = relu(pr[ip] + be[ip]), q = relu(pr[iq] + be[iq]);
        const float dv = dval[e];
        if (prod) {
            drow[ip] += dv * q;
            drow[iq] += dv * p;
        } else {
            const float z = c->val[e] > MAND_EPS ? c->val[e] : MAND_EPS;
            const float inv = dv / (2.0f * z);
            drow[ip] += inv * q;
            drow[iq] += inv * p;
        }
    }
}

static int kron_enc_backward(const lp_sae *s, const float *pre, const float *xc, int B, const lp_sae_codes *c,
                             const lp_sae_codes *a, const float *dval, float *scratch, float *dxc_sum, lp_sae *g) {
    const int d = s->cfg.d_in;
    const int64_t E = lp_sae_enc_rows(s), nnz = c->rowptr[B];
    float *cs = lp_calloc((size_t)E, sizeof(float));
    if (!cs) return lp_fail(LP_ERR_NOMEM, "kron backward: out of memory");
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *drow = scratch + (int64_t)b * E;
        memset(drow, 0, (size_t)E * sizeof(float));
        row_back(s, pre + (int64_t)b * E, c, b, dval, drow);
        if (a) row_back(s, pre + (int64_t)b * E, a, b, dval + nnz, drow);
    }
    /* ∂[P;Q] += dPQᵀ xc */
    lp_sgemm(1, 0, E, d, B, 1.0f, scratch, E, xc, d, 1.0f, g->p[LP_SAE_W_ENC], d);
    /* ∂[b_p;b_q] += Σ_b dPQ_b; Σ_b ∂L/∂xc_b = (Σ_b dPQ_b) [P;Q] */
    float *gb = g->p[LP_SAE_B_ENC];
    enum { CB = 512 };
#pragma omp parallel for schedule(static)
    for (int64_t e0 = 0; e0 < E; e0 += CB) {
        const int64_t e1 = e0 + CB < E ? e0 + CB : E;
        for (int b = 0; b < B; b++) {
            const float *row = scratch + (int64_t)b * E;
            for (int64_t e = e0; e < e1; e++) cs[e] += row[e];
        }
        for (int64_t e = e0; e < e1; e++) gb[e] += cs[e];
    }
    const float *We = s->p[LP_SAE_W_ENC];
    for (int i = 0; i < d; i++) dxc_sum[i] = 0.0f;
    for (int64_t e = 0; e < E; e++) {
        if (cs[e] == 0.0f) continue;
        const float *w = We + e * d;
        for (int i = 0; i < d; i++) dxc_sum[i] += cs[e] * w[i];
    }
    free(cs);
    return LP_OK;
}

void lp_sae_kron_init(lp_sae *s, lp_rng *rng) {
    const int d = s->cfg.d_in, h = s->cfg.kron_heads, m = s->cfg.kron_m, n = s->cfg.kron_n;
    const int64_t E = lp_sae_enc_rows(s), hm = (int64_t)h * m;
    float *We = s->p[LP_SAE_W_ENC], *Wd = s->p[LP_SAE_W_DEC];
    for (int64_t e = 0; e < E; e++) {
        float *w = We + e * d;
        double ss = 0;
        for (int i = 0; i < d; i++) {
            w[i] = lp_rng_normal(rng);
            ss += (double)w[i] * w[i];
        }
        float inv = (float)(1.0 / sqrt(ss > 0 ? ss : 1));
        for (int i = 0; i < d; i++) w[i] *= inv;
    }
    memset(s->p[LP_SAE_B_ENC], 0, (size_t)E * sizeof(float));
    /* decoder row of (g,i,j) along P_{g,i} + Q_{g,j}: the direction that
     * makes both factors fire, as W_enc = W_decᵀ does for a linear encoder */
    for (int g = 0; g < h; g++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                const float *pw = We + ((int64_t)g * m + i) * d, *qw = We + (hm + (int64_t)g * n + j) * d;
                float *o = Wd + (((int64_t)g * m + i) * n + j) * d;
                double ss = 0;
                for (int t = 0; t < d; t++) {
                    o[t] = pw[t] + qw[t];
                    ss += (double)o[t] * o[t];
                }
                float inv = (float)(1.0 / sqrt(ss > 0 ? ss : 1));
                for (int t = 0; t < d; t++) o[t] *= inv;
            }
}

const lp_sae_ops lp_sae_ops_kron = {
    .select = kron_select, .select_aux = kron_select_aux, .enc_backward = kron_enc_backward};
