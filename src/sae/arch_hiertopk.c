/* arch_hiertopk.c — HierarchicalTopK SAE (arXiv 2505.24473): a TopK SAE
 * with k = K trained so that every prefix of its sorted codes is a good
 * reconstruction. With the codes of a row sorted v_1 ≥ … ≥ v_n (n ≤ K
 * positive), r_j = x̂_j − t the residual of budget j (x̂_j = b_dec +
 * Σ_{t≤j} v_t W_dec[idx_t], and x̂_j = x̂_n for j > n):
 *
 *   L_rec = (1/B) Σ_b (1/K) Σ_{j=1..K} ‖r_j‖²
 *   ∂L/∂v_t      = (2/(BK)) ⟨W_dec[idx_t], S_t⟩,   S_t = Σ_{j≥t} r_j
 *   ∂L/∂W_dec[f] = (2/(BK)) Σ_{entries t of f} v_t S_t
 *   ∂L/∂b_dec    = (2/(BK)) Σ_b S_1
 *
 * (the paper's reference loss, a mean over batch, budgets and dims, is this
 * divided by d; loupe keeps its sum-over-dims convention for every arch).
 * Backward by suffix sums from the full reconstruction down: r_{t−1} = r_t −
 * v_t W_dec[idx_t], S_t = S_{t+1} + r_t — O(B·K·d) time. The recurrences are
 * independent per dimension, so each thread runs them for its own block of
 * columns over the whole batch and adds v_t S_t into W_dec's gradient rows
 * directly (no two threads write one value); only the partial dot products
 * ⟨W_dec[idx_t], S_t⟩ are combined afterwards, in a fixed order. Extra
 * memory O(threads·(B·K + d)); no B×K×d tensor. Inference at k ≤ K keeps the
 * k largest codes (the prefix), which is what the splice's k_override does. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "sae/arch.h"

static int hier_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                       float *kept_min) {
    (void)training;
    (void)kept_min;
    return lp_select_topk_rows(pre, s->p[LP_SAE_B_ENC], B, s->cfg.d_sae, s->cfg.k, NULL, c);
}

static int hier_recon(const lp_sae *s, const lp_sae_codes *c, const float *xhat, const float *t, int B,
                      float *dval, float *dbias, lp_sae *g, double *loss) {
    const int d = s->cfg.d_in, K = s->cfg.k;
    const int64_t nnz = c->rowptr[B];
    const float *Wd = s->p[LP_SAE_W_DEC];
    float *gWd = g->p[LP_SAE_W_DEC];
    const float scale = 2.0f / ((float)B * (float)K);
    int nt = lp_threads();
    if (nt > d) nt = d;
    if (nt < 1) nt = 1;
    /* per thread: partial dot products [nnz], partial row losses [B], r and S [2d] */
    float *pdot = lp_malloc((size_t)nt * (size_t)(nnz > 0 ? nnz : 1) * sizeof(float));
    double *lrow = lp_malloc((size_t)nt * (size_t)B * sizeof(double));
    float *rs = lp_malloc((size_t)nt * 2 * (size_t)d * sizeof(float));
    if (!pdot || !lrow || !rs) {
        free(pdot);
        free(lrow);
        free(rs);
        return lp_fail(LP_ERR_NOMEM, "hiertopk: out of memory for a batch of %d", B);
    }
    /* each thread owns a block of the d columns: the suffix sums run per
     * column, so W_dec's gradient rows are written without races and the
     * only thing to combine afterwards is the partial dot products */
    int used = 1; /* threads the runtime actually gave (≤ nt) */
#pragma omp parallel num_threads(nt)
    {
        int id = 0, nth = 1;
#ifdef _OPENMP
        id = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        if (id == 0) used = nth;
        const int blk = (d + nth - 1) / nth, i0 = id * blk, i1 = i0 + blk < d ? i0 + blk : d;
        float *r = rs + (int64_t)id * 2 * d, *S = r + d, *pd = pdot + (int64_t)id * nnz;
        double *lr = lrow + (int64_t)id * B;
        for (int b = 0; b < B; b++) {
            const int64_t lo = c->rowptr[b], hi = c->rowptr[b + 1];
            const int n = (int)(hi - lo);
            const float *xh = xhat + (int64_t)b * d, *tb = t + (int64_t)b * d;
            double l = 0;
            for (int i = i0; i < i1; i++) {
                r[i] = xh[i] - tb[i]; /* r_n: the full reconstruction */
                l += (double)r[i] * r[i];
            }
            l *= (double)(K - n); /* budgets j > n reconstruct as x̂_n */
            const float tail = (float)(K - n);
            for (int i = i0; i < i1; i++) S[i] = tail * r[i];
            for (int64_t e = hi - 1; e >= lo; e--) {
                float *gd = gWd + (int64_t)c->idx[e] * d;
                const float *w = Wd + (int64_t)c->idx[e] * d;
                const float v = c->val[e], sv = scale * v;
                float dot = 0;
                double l2 = 0;
                for (int i = i0; i < i1; i++) {
                    S[i] += r[i]; /* S_t = S_{t+1} + r_t */
                    l2 += (double)r[i] * r[i];
                    dot += w[i] * S[i];
                    gd[i] += sv * S[i];
                    r[i] -= v * w[i]; /* r_{t−1} */
                }
                l += l2;
                pd[e] = dot;
            }
            float *db = dbias + (int64_t)b * d;
            for (int i = i0; i < i1; i++) db[i] = scale * S[i];
            lr[b] = l;
        }
    }
    double sum = 0;
    for (int64_t e = 0; e < nnz; e++) {
        float acc = 0;
        for (int q = 0; q < used; q++) acc += pdot[(int64_t)q * nnz + e];
        dval[e] = scale * acc;
    }
    for (int q = 0; q < used; q++)
        for (int b = 0; b < B; b++) sum += lrow[(int64_t)q * B + b];
    *loss = sum / ((double)B * K);
    free(pdot);
    free(lrow);
    free(rs);
    return LP_OK;
}

const lp_sae_ops lp_sae_ops_hiertopk = {.select = hier_select, .recon = hier_recon};
