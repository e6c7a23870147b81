/* match_max.c — best-match cosine between two sets of directions, streamed:
 * a block of rows of A against a block of rows of B is one GEMM into a tile
 * (never the whole na×nb matrix), then running row maxima and column maxima
 * are updated from the tile. Also the dense cosine matrix for the one-to-one
 * matcher, and the SAE-level entry points (decoder / encoder / both). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/match.h"

const char *lp_match_mode_name(int mode) {
    return mode == LP_MATCH_DEC ? "dec" : mode == LP_MATCH_ENC ? "enc" : mode == LP_MATCH_BOTH ? "both" : "?";
}

int lp_match_mode_parse(const char *s, int *mode) {
    static const char *names[] = {"dec", "enc", "both"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *mode = i;
            return LP_OK;
        }
    return lp_fail(LP_ERR_ARG, "unknown match mode '%s' (dec, enc, both)", s);
}

/* 1/‖row‖ for each row (0 for a zero row). */
static float *inv_norms(const float *X, int64_t n, int d) {
    float *r = lp_malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!r) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        const float *x = X + i * d;
        for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
        r[i] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    }
    return r;
}

/* T[r, c] = cos(A[i0 + r], B[j0 + c]) for an rb×cb tile (row stride cb). */
static void cos_tile(const float *A, const float *ia, int64_t i0, int64_t rb, const float *B, const float *ib,
                     int64_t j0, int64_t cb, int d, float *T) {
    lp_sgemm(0, 1, rb, cb, d, 1.0f, A + i0 * d, d, B + j0 * d, d, 0.0f, T, cb);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rb; r++) {
        float *t = T + r * cb;
        const float s = ia[i0 + r];
        const float *nb = ib + j0;
        for (int64_t c = 0; c < cb; c++) t[c] *= s * nb[c];
    }
}

static void min_into(float *T, const float *T2, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        if (T2[i] < T[i]) T[i] = T2[i];
}

static int check_shapes(int64_t na, int64_t nb, int d) {
    if (na < 0 || nb < 0 || d <= 0 || na > INT32_MAX || nb > INT32_MAX)
        return lp_fail(LP_ERR_ARG, "match: bad sizes (%lld and %lld rows of width %d)", (long long)na, (long long)nb,
                       d);
    return LP_OK;
}

int lp_max_cosine(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb, int d,
                  float *best_a, int32_t *arg_a, float *best_b, int32_t *arg_b) {
    int rc = check_shapes(na, nb, d);
    if (rc) return rc;
    if ((A2 == NULL) != (B2 == NULL))
        return lp_fail(LP_ERR_ARG, "match: the second similarity needs matrices on both sides");
    if (na == 0 || nb == 0) {
        for (int64_t i = 0; i < na; i++) {
            if (best_a) best_a[i] = -INFINITY;
            if (arg_a) arg_a[i] = -1;
        }
        for (int64_t j = 0; j < nb; j++) {
            if (best_b) best_b[j] = -INFINITY;
            if (arg_b) arg_b[j] = -1;
        }
        return LP_OK;
    }
    /* tiles of at most ~16M floats (64 MiB), two of them for "both" */
    const int64_t cb = nb < 8192 ? nb : 8192;
    int64_t rb = ((int64_t)1 << 24) / cb;
    if (rb > na) rb = na;
    if (rb < 1) rb = 1;
    float *ia = inv_norms(A, na, d), *ib = inv_norms(B, nb, d);
    float *ia2 = A2 ? inv_norms(A2, na, d) : NULL, *ib2 = B2 ? inv_norms(B2, nb, d) : NULL;
    float *T = lp_malloc_aligned((size_t)rb * cb * sizeof(float));
    float *T2 = A2 ? lp_malloc_aligned((size_t)rb * cb * sizeof(float)) : NULL;
    float *bb = lp_malloc((size_t)nb * sizeof(float)), *ba = lp_malloc((size_t)na * sizeof(float));
    int32_t *ab = lp_malloc((size_t)nb * sizeof(int32_t)), *aa = lp_malloc((size_t)na * sizeof(int32_t));
    if (!ia || !ib || !T || !bb || !ab || !ba || !aa || (A2 && (!ia2 || !ib2 || !T2))) {
        rc = lp_fail(LP_ERR_NOMEM, "match: out of memory for %lld×%lld tiles", (long long)rb, (long long)cb);
        goto done;
    }
    for (int64_t j = 0; j < nb; j++) bb[j] = -INFINITY, ab[j] = -1;
    for (int64_t i = 0; i < na; i++) ba[i] = -INFINITY, aa[i] = -1;
    for (int64_t i0 = 0; i0 < na; i0 += rb) {
        const int64_t r = na - i0 < rb ? na - i0 : rb;
        for (int64_t j0 = 0; j0 < nb; j0 += cb) {
            const int64_t c = nb - j0 < cb ? nb - j0 : cb;
            cos_tile(A, ia, i0, r, B, ib, j0, c, d, T);
            if (A2) {
                cos_tile(A2, ia2, i0, r, B2, ib2, j0, c, d, T2);
                min_into(T, T2, r * c);
            }
            /* row maxima: the first (lowest j) maximum wins */
#pragma omp parallel for schedule(static)
            for (int64_t q = 0; q < r; q++) {
                const float *t = T + q * c;
                float mx = ba[i0 + q];
                int32_t am = aa[i0 + q];
                for (int64_t k = 0; k < c; k++)
                    if (t[k] > mx) mx = t[k], am = (int32_t)(j0 + k);
                ba[i0 + q] = mx;
                aa[i0 + q] = am;
            }
            /* column maxima over the tile's rows, in row order (lowest i wins) */
            const int64_t chunk = 256;
#pragma omp parallel for schedule(static)
            for (int64_t c0 = 0; c0 < c; c0 += chunk) {
                const int64_t c1 = c0 + chunk < c ? c0 + chunk : c;
                for (int64_t q = 0; q < r; q++) {
                    const float *t = T + q * c;
                    for (int64_t k = c0; k < c1; k++)
                        if (t[k] > bb[j0 + k]) bb[j0 + k] = t[k], ab[j0 + k] = (int32_t)(i0 + q);
                }
            }
        }
    }
    for (int64_t i = 0; i < na; i++) {
        if (best_a) best_a[i] = ba[i];
        if (arg_a) arg_a[i] = aa[i];
    }
    for (int64_t j = 0; j < nb; j++) {
        if (best_b) best_b[j] = bb[j];
        if (arg_b) arg_b[j] = ab[j];
    }
    rc = LP_OK;
done:
    free(ia);
    free(ib);
    free(ia2);
    free(ib2);
    lp_free(T);
    lp_free(T2);
    free(bb);
    free(ab);
    free(ba);
    free(aa);
    return rc;
}

int lp_cosine_matrix(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb,
                     int d, float *S) {
    int rc = check_shapes(na, nb, d);
    if (rc) return rc;
    if ((A2 == NULL) != (B2 == NULL))
        return lp_fail(LP_ERR_ARG, "match: the second similarity needs matrices on both sides");
    if (na == 0 || nb == 0) return LP_OK;
    float *ia = inv_norms(A, na, d), *ib = inv_norms(B, nb, d);
    float *ia2 = A2 ? inv_norms(A2, na, d) : NULL, *ib2 = B2 ? inv_norms(B2, nb, d) : NULL;
    const int64_t rb = 4096;
    float *T2 = A2 ? lp_malloc_aligned((size_t)(rb < na ? rb : na) * nb * sizeof(float)) : NULL;
    if (!ia || !ib || (A2 && (!ia2 || !ib2 || !T2))) {
        rc = lp_fail(LP_ERR_NOMEM, "match: out of memory for a %lld×%lld similarity matrix", (long long)na,
                     (long long)nb);
        goto done;
    }
    for (int64_t i0 = 0; i0 < na; i0 += rb) {
        const int64_t r = na - i0 < rb ? na - i0 : rb;
        cos_tile(A, ia, i0, r, B, ib, 0, nb, d, S + i0 * nb);
        if (A2) {
            cos_tile(A2, ia2, i0, r, B2, ib2, 0, nb, d, T2);
            min_into(S + i0 * nb, T2, r * nb);
        }
    }
done:
    free(ia);
    free(ib);
    free(ia2);
    free(ib2);
    lp_free(T2);
    return rc;
}

/* ---- SAEs ------------------------------------------------------------------- */
static int sae_pair(const lp_sae *a, const lp_sae *b, int mode) {
    if (!a || !b) return lp_fail(LP_ERR_ARG, "match: missing SAE");
    if (a->cfg.d_in != b->cfg.d_in)
        return lp_fail(LP_ERR_ARG, "match: SAEs of different widths (d_in %d and %d) cannot be compared",
                       a->cfg.d_in, b->cfg.d_in);
    if (mode < LP_MATCH_DEC || mode > LP_MATCH_BOTH) return lp_fail(LP_ERR_ARG, "match: unknown mode %d", mode);
    return LP_OK;
}

int lp_max_match(const lp_sae *a, const lp_sae *b, int mode, float *best_a, int32_t *arg_a, float *best_b,
                 int32_t *arg_b) {
    int rc = sae_pair(a, b, mode);
    if (rc) return rc;
    const float *A = a->p[mode == LP_MATCH_ENC ? LP_SAE_W_ENC : LP_SAE_W_DEC];
    const float *B = b->p[mode == LP_MATCH_ENC ? LP_SAE_W_ENC : LP_SAE_W_DEC];
    const float *A2 = mode == LP_MATCH_BOTH ? a->p[LP_SAE_W_ENC] : NULL;
    const float *B2 = mode == LP_MATCH_BOTH ? b->p[LP_SAE_W_ENC] : NULL;
    return lp_max_cosine(A, A2, a->cfg.d_sae, B, B2, b->cfg.d_sae, a->cfg.d_in, best_a, arg_a, best_b, arg_b);
}

int lp_match_one_to_one(const lp_sae *a, const lp_sae *b, int mode, int64_t *col, float *sim) {
    int rc = sae_pair(a, b, mode);
    if (rc) return rc;
    const int64_t na = a->cfg.d_sae, nb = b->cfg.d_sae;
    size_t cells;
    if (lp_mul_overflow((size_t)na, (size_t)nb, &cells) || lp_mul_overflow(cells, sizeof(float), &cells))
        return lp_fail(LP_ERR_NOMEM, "match: %lld×%lld similarity matrix is too large", (long long)na, (long long)nb);
    float *S = lp_malloc_aligned(cells);
    if (!S) return lp_fail(LP_ERR_NOMEM, "match: no memory for a %lld×%lld similarity matrix", (long long)na, (long long)nb);
    const float *A = a->p[mode == LP_MATCH_ENC ? LP_SAE_W_ENC : LP_SAE_W_DEC];
    const float *B = b->p[mode == LP_MATCH_ENC ? LP_SAE_W_ENC : LP_SAE_W_DEC];
    const float *A2 = mode == LP_MATCH_BOTH ? a->p[LP_SAE_W_ENC] : NULL;
    const float *B2 = mode == LP_MATCH_BOTH ? b->p[LP_SAE_W_ENC] : NULL;
    rc = lp_cosine_matrix(A, A2, na, B, B2, nb, a->cfg.d_in, S);
    if (!rc) {
        const int64_t n = na * nb;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) S[i] = -S[i]; /* maximise similarity = minimise its negative */
        rc = lp_assign_min(S, na, nb, col, NULL);
    }
    if (!rc && sim)
        for (int64_t i = 0; i < na; i++) sim[i] = col[i] >= 0 ? -S[i * nb + col[i]] : -2.0f;
    lp_free(S);
    return rc;
}
