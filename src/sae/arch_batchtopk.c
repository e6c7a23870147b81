/* arch_batchtopk.c — BatchTopK SAE (Bussmann et al. 2024): in training keep
 * the k·B largest ReLU pre-activations of the whole batch (L0 varies per
 * row, averages k); at inference a single global threshold θ (the running
 * mean of the smallest kept value) makes encoding independent of the batch.
 *
 * The k·B-th largest value is found with a radix select on the float bits
 * (positive IEEE floats order like their uint32 patterns): one parallel
 * histogram pass over the top 16 bits, then an exact selection among the
 * few values in the boundary bucket — no sort of B·F values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sae/arch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int cmp_u32_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static inline uint32_t fbits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}

/* The value t such that exactly `want` entries of relu(pre+b) are >= t (ties
 * aside); returns 0 when fewer than `want` entries are positive. */
static int kth_largest(const float *pre, const float *b_enc, int64_t B, int F, int64_t want,
                       float *out) {
    enum { NB = 1 << 16 };
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    uint32_t *hist = calloc((size_t)nt * NB, sizeof *hist);
    if (!hist) return lp_fail(LP_ERR_NOMEM, "batchtopk: out of memory");
#pragma omp parallel
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        uint32_t *h = hist + (size_t)t * NB;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            const float *p = pre + b * F;
            for (int f = 0; f < F; f++) {
                float v = p[f] + b_enc[f];
                if (v > 0.0f) h[fbits(v) >> 16]++;
            }
        }
    }
    for (int t = 1; t < nt; t++)
        for (int i = 0; i < NB; i++) hist[i] += hist[(size_t)t * NB + i];
    int64_t above = 0;
    int bucket = -1;
    for (int i = NB - 1; i >= 0; i--) {
        if (above + hist[i] >= want) {
            bucket = i;
            break;
        }
        above += hist[i];
    }
    if (bucket < 0) { /* fewer positives than wanted: keep them all */
        free(hist);
        *out = 0.0f;
        return LP_OK;
    }
    int64_t inb = hist[bucket];
    free(hist);
    uint32_t *cand = malloc((size_t)inb * sizeof *cand);
    if (!cand) return lp_fail(LP_ERR_NOMEM, "batchtopk: out of memory");
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *p = pre + b * F;
        for (int f = 0; f < F; f++) {
            float v = p[f] + b_enc[f];
            if (v > 0.0f && (int)(fbits(v) >> 16) == bucket) cand[n++] = fbits(v);
        }
    }
    qsort(cand, (size_t)n, sizeof *cand, cmp_u32_desc);
    uint32_t u = cand[want - above - 1];
    free(cand);
    memcpy(out, &u, 4);
    return LP_OK;
}

static int batchtopk_select(const lp_sae *s, const float *pre, int B, lp_sae_codes *c, int training,
                            float *kept_min) {
    const float *be = s->p[LP_SAE_B_ENC];
    const int F = s->cfg.d_sae;
    if (!training) return lp_select_threshold(pre, be, B, F, NULL, s->theta, c);
    float t;
    int rc = kth_largest(pre, be, B, F, (int64_t)s->cfg.k * B, &t);
    if (rc) return rc;
    /* keep v >= t (and v > 0): select with a threshold just below t */
    float below = t > 0.0f ? nextafterf(t, 0.0f) : 0.0f;
    rc = lp_select_threshold(pre, be, B, F, NULL, below, c);
    if (rc) return rc;
    float mn = 0.0f;
    int64_t nnz = c->rowptr[B];
    for (int64_t j = 0; j < nnz; j++)
        if (j == 0 || c->val[j] < mn) mn = c->val[j];
    *kept_min = mn;
    return LP_OK;
}

const lp_sae_ops lp_sae_ops_batchtopk = {.select = batchtopk_select};
