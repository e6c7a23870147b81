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

/* out[n, d] = rows i0 .. i0+n of X scaled to unit norm (zero rows stay zero) */
static void unit_rows(const float *X, int64_t i0, int64_t n, int d, float *out) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *x = X + (i0 + i) * d;
        float *o = out + i * d;
        double ss = 0;
        for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
        const float s = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int j = 0; j < d; j++) o[j] = x[j] * s;
    }
}

/* Work buffers for tiles of up to rb rows of A against cb rows of B. */
typedef struct {
    float *a, *b, *a2, *b2, *t2;
} tile_bufs;

static void bufs_free(tile_bufs *w) {
    lp_free(w->a), lp_free(w->b), lp_free(w->a2), lp_free(w->b2), lp_free(w->t2);
    memset(w, 0, sizeof *w);
}

static int bufs_new(tile_bufs *w, int64_t rb, int64_t cb, int d, int both) {
    memset(w, 0, sizeof *w);
    w->a = lp_malloc_aligned((size_t)rb * d * sizeof(float));
    w->b = lp_malloc_aligned((size_t)cb * d * sizeof(float));
    if (both) {
        w->a2 = lp_malloc_aligned((size_t)rb * d * sizeof(float));
        w->b2 = lp_malloc_aligned((size_t)cb * d * sizeof(float));
        w->t2 = lp_malloc_aligned((size_t)rb * cb * sizeof(float));
    }
    if (!w->a || !w->b || (both && (!w->a2 || !w->b2 || !w->t2))) {
        bufs_free(w);
        return lp_fail(LP_ERR_NOMEM, "match: out of memory for %lld×%lld tiles", (long long)rb, (long long)cb);
    }
    return LP_OK;
}

/* T[q, k] (row stride ldt) = sign · sim(A[i0+q], B[j0+k]) for an r×c tile;
 * sim = cosine, or the minimum of the two cosines when A2/B2 are given. */
static void sim_tile(const float *A, const float *A2, int64_t i0, int64_t r, const float *B, const float *B2, int64_t j0,
                     int64_t c, int d, float sign, tile_bufs *w, float *T, int64_t ldt) {
    unit_rows(A, i0, r, d, w->a);
    unit_rows(B, j0, c, d, w->b);
    lp_sgemm(0, 1, r, c, d, sign, w->a, d, w->b, d, 0.0f, T, ldt);
    if (!A2) return;
    unit_rows(A2, i0, r, d, w->a2);
    unit_rows(B2, j0, c, d, w->b2);
    lp_sgemm(0, 1, r, c, d, sign, w->a2, d, w->b2, d, 0.0f, w->t2, c);
    /* sign · min(x, y) = min(sign·x, sign·y) for sign = 1, max(...) for sign = −1 */
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < r; q++) {
        float *t = T + q * ldt;
        const float *u = w->t2 + q * c;
        if (sign > 0)
            for (int64_t k = 0; k < c; k++) t[k] = u[k] < t[k] ? u[k] : t[k];
        else
            for (int64_t k = 0; k < c; k++) t[k] = u[k] > t[k] ? u[k] : t[k];
    }
}

static int check_shapes(int64_t na, int64_t nb, int d, const float *A2, const float *B2) {
    if (na < 0 || nb < 0 || d <= 0 || na > INT32_MAX || nb > INT32_MAX)
        return lp_fail(LP_ERR_ARG, "match: bad sizes (%lld and %lld rows of width %d)", (long long)na, (long long)nb,
                       d);
    if ((A2 == NULL) != (B2 == NULL))
        return lp_fail(LP_ERR_ARG, "match: the second similarity needs matrices on both sides");
    return LP_OK;
}

#ifdef _OPENMP
#include <omp.h>
static int thread_id(void) { return omp_get_thread_num(); }
static int max_threads(void) { return omp_get_max_threads(); }
#else
static int thread_id(void) { return 0; }
static int max_threads(void) { return 1; }
#endif

int lp_max_cosine(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb, int d,
                  float *best_a, int32_t *arg_a, float *best_b, int32_t *arg_b) {
    int rc = check_shapes(na, nb, d, A2, B2);
    if (rc) return rc;
    /* tiles of at most 4M floats (16 MiB): rows of A × a block of rows of B */
    const int64_t cb = nb < 4096 ? (nb > 0 ? nb : 1) : 4096;
    int64_t rb = ((int64_t)1 << 22) / cb;
    if (rb > na) rb = na > 0 ? na : 1;
    const int nt = max_threads();
    tile_bufs w;
    if ((rc = bufs_new(&w, rb, cb, d, A2 != NULL))) return rc;
    float *T = lp_malloc_aligned((size_t)rb * cb * sizeof(float));
    float *bb = lp_malloc((size_t)(nb + 1) * sizeof(float)), *ba = lp_malloc((size_t)(na + 1) * sizeof(float));
    int32_t *ab = lp_malloc((size_t)(nb + 1) * sizeof(int32_t)), *aa = lp_malloc((size_t)(na + 1) * sizeof(int32_t));
    float *rm = lp_malloc((size_t)nt * rb * sizeof(float)); /* per-thread row maxima of a tile */
    int32_t *ra = lp_malloc((size_t)nt * rb * sizeof(int32_t));
    if (!T || !bb || !ab || !ba || !aa || !rm || !ra) {
        rc = lp_fail(LP_ERR_NOMEM, "match: out of memory for %lld×%lld tiles", (long long)rb, (long long)cb);
        goto done;
    }
    for (int64_t j = 0; j < nb; j++) bb[j] = -INFINITY, ab[j] = -1;
    for (int64_t i = 0; i < na; i++) ba[i] = -INFINITY, aa[i] = -1;
    for (int64_t i0 = 0; i0 < na; i0 += rb) {
        const int64_t r = na - i0 < rb ? na - i0 : rb;
        for (int64_t j0 = 0; j0 < nb; j0 += cb) {
            const int64_t c = nb - j0 < cb ? nb - j0 : cb;
            sim_tile(A, A2, i0, r, B, B2, j0, c, d, 1.0f, &w, T, c);
            /* one pass over the tile: each thread owns chunks of columns (their
             * maxima over rows, lowest row first) and keeps its own row maxima */
            for (int64_t q = 0; q < (int64_t)nt * rb; q++) rm[q] = -INFINITY, ra[q] = -1;
            const int64_t chunk = 256;
#pragma omp parallel
            {
                float *mrow = rm + (int64_t)thread_id() * rb;
                int32_t *arow = ra + (int64_t)thread_id() * rb;
#pragma omp for schedule(static)
                for (int64_t c0 = 0; c0 < c; c0 += chunk) {
                    const int64_t c1 = c0 + chunk < c ? c0 + chunk : c;
                    float *cm = bb + j0;
                    int32_t *ca = ab + j0;
                    for (int64_t q = 0; q < r; q++) {
                        const float *t = T + q * c;
                        const int32_t iq = (int32_t)(i0 + q);
                        float mx = -INFINITY;
                        /* branch-free so that both loops vectorise */
#pragma omp simd reduction(max : mx)
                        for (int64_t k = c0; k < c1; k++) mx = t[k] > mx ? t[k] : mx;
#pragma omp simd
                        for (int64_t k = c0; k < c1; k++) {
                            const int gt = t[k] > cm[k];
                            cm[k] = gt ? t[k] : cm[k];
                            ca[k] = gt ? iq : ca[k];
                        }
                        if (mx > mrow[q]) { /* rare after the first chunks: find its first column */
                            int64_t k = c0;
                            while (t[k] != mx) k++;
                            mrow[q] = mx;
                            arow[q] = (int32_t)(j0 + k);
                        }
                    }
                }
            }
            /* merge the threads' row maxima: larger value, then lower column */
            for (int th = 0; th < nt; th++)
                for (int64_t q = 0; q < r; q++) {
                    const float v = rm[(int64_t)th * rb + q];
                    const int32_t j = ra[(int64_t)th * rb + q];
                    if (j < 0) continue;
                    if (v > ba[i0 + q] || (v == ba[i0 + q] && (aa[i0 + q] < 0 || j < aa[i0 + q])))
                        ba[i0 + q] = v, aa[i0 + q] = j;
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
    bufs_free(&w);
    lp_free(T);
    free(bb), free(ab), free(ba), free(aa), free(rm), free(ra);
    return rc;
}

/* S [na, nb] = sign · similarity, in column blocks (S is the caller's). */
static int sim_matrix(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb, int d,
                      float sign, float *S) {
    int rc = check_shapes(na, nb, d, A2, B2);
    if (rc || na == 0 || nb == 0) return rc;
    const int64_t rb = na < 2048 ? na : 2048, cb = nb < 4096 ? nb : 4096;
    tile_bufs w;
    if ((rc = bufs_new(&w, rb, cb, d, A2 != NULL))) return rc;
    for (int64_t i0 = 0; i0 < na; i0 += rb) {
        const int64_t r = na - i0 < rb ? na - i0 : rb;
        for (int64_t j0 = 0; j0 < nb; j0 += cb) {
            const int64_t c = nb - j0 < cb ? nb - j0 : cb;
            sim_tile(A, A2, i0, r, B, B2, j0, c, d, sign, &w, S + i0 * nb + j0, nb);
        }
    }
    bufs_free(&w);
    return LP_OK;
}

int lp_cosine_matrix(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb,
                     int d, float *S) {
    return sim_matrix(A, A2, na, B, B2, nb, d, 1.0f, S);
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
    /* maximise similarity = minimise its negative */
    rc = sim_matrix(A, A2, na, B, B2, nb, a->cfg.d_in, -1.0f, S);
    if (!rc) rc = lp_assign_min(S, na, nb, col, NULL);
    if (!rc && sim)
        for (int64_t i = 0; i < na; i++) sim[i] = col[i] >= 0 ? -S[i * nb + col[i]] : -2.0f;
    lp_free(S);
    return rc;
}
