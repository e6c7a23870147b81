/* subspace.c — orthonormal bases of spans of directions (symmetric
 * eigendecomposition of the Gram matrix by LAPACK's dsyevd, which OpenBLAS
 * ships), principal angles and projection overlap between two subspaces,
 * and the random-subspace baseline. Formulas in loupe/subspace.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/subspace.h"

/* LAPACK (Fortran ABI; the trailing lengths are the hidden string lengths) */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len, size_t uplo_len);

/* Eigen-decomposition of the symmetric n×n matrix A (row-major, overwritten
 * by the eigenvectors as ROWS, ascending eigenvalues in w). */
static int sym_eig(double *A, int n, double *w) {
    int lwork = -1, liwork = -1, info = 0, iw = 0;
    double wq = 0;
    dsyevd_("V", "U", &n, A, &n, w, &wq, &lwork, &iw, &liwork, &info, 1, 1);
    if (info) return lp_fail(LP_ERR_NUM, "subspace: LAPACK dsyevd workspace query failed (info %d)", info);
    lwork = (int)wq + 1;
    liwork = iw + 1;
    double *work = lp_malloc((size_t)lwork * sizeof(double));
    int *iwork = lp_malloc((size_t)liwork * sizeof(int));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return LP_ERR_NOMEM;
    }
    /* A is symmetric, so row-major and column-major are the same matrix; the
     * eigenvectors come back as columns in column-major = rows in row-major */
    dsyevd_("V", "U", &n, A, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info) return lp_fail(LP_ERR_NUM, "subspace: LAPACK dsyevd did not converge (info %d)", info);
    return LP_OK;
}

int lp_subspace_basis(const float *X, int64_t m, int d, int r, float *Q, double *sv) {
    if (d <= 0 || m < 0 || r < 0 || r > d)
        return lp_fail(LP_ERR_ARG, "subspace: bad shape (%lld rows of width %d, rank %d)", (long long)m, d, r);
    double *G = lp_calloc((size_t)d * d, sizeof(double)), *w = lp_malloc((size_t)d * sizeof(double));
    if (!G || !w) {
        free(G);
        free(w);
        return LP_ERR_NOMEM;
    }
    /* G = XᵀX in double (rows are few hundred to few thousand: direct sum) */
#pragma omp parallel for schedule(dynamic, 4)
    for (int a = 0; a < d; a++)
        for (int64_t i = 0; i < m; i++) {
            const float *x = X + i * d;
            double xa = x[a];
            if (xa == 0) continue;
            for (int b = a; b < d; b++) G[(int64_t)a * d + b] += xa * x[b];
        }
    for (int a = 0; a < d; a++)
        for (int b = 0; b < a; b++) G[(int64_t)a * d + b] = G[(int64_t)b * d + a];
    int rc = sym_eig(G, d, w);
    if (!rc) {
        int ns = m < d ? (int)m : d;
        for (int k = 0; k < ns && sv; k++) {
            double e = w[d - 1 - k];
            sv[k] = e > 0 ? sqrt(e) : 0;
        }
        for (int k = 0; k < r && Q; k++)
            for (int j = 0; j < d; j++) Q[(int64_t)k * d + j] = (float)G[(int64_t)(d - 1 - k) * d + j];
    }
    free(G);
    free(w);
    return rc;
}

int lp_subspace_rank(const double *sv, int n, double energy) {
    double tot = 0, acc = 0;
    for (int k = 0; k < n; k++) tot += sv[k] * sv[k];
    if (tot <= 0) return 1;
    for (int k = 0; k < n; k++) {
        acc += sv[k] * sv[k];
        if (acc >= energy * tot * (1 - 1e-12)) return k + 1;
    }
    return n > 0 ? n : 1;
}

int lp_subspace_compare(const float *Qa, int ra, const float *Qb, int rb, int d, double *cosv, double *overlap) {
    if (ra <= 0 || rb <= 0 || d <= 0) return lp_fail(LP_ERR_ARG, "subspace: empty subspace (ranks %d, %d)", ra, rb);
    const int r = ra < rb ? ra : rb;
    double *M = lp_malloc((size_t)ra * rb * sizeof(double)), *S = lp_calloc((size_t)r * r, sizeof(double));
    double *w = lp_malloc((size_t)r * sizeof(double));
    if (!M || !S || !w) {
        free(M), free(S), free(w);
        return LP_ERR_NOMEM;
    }
    double fro = 0;
    for (int a = 0; a < ra; a++)
        for (int b = 0; b < rb; b++) {
            double s = 0;
            for (int j = 0; j < d; j++) s += (double)Qa[(int64_t)a * d + j] * Qb[(int64_t)b * d + j];
            M[(int64_t)a * rb + b] = s;
            fro += s * s;
        }
    if (overlap) *overlap = fro / r;
    int rc = LP_OK;
    if (cosv) {
        /* σ² = eigenvalues of the smaller of M Mᵀ (ra ≤ rb) or MᵀM */
        for (int p = 0; p < r; p++)
            for (int q = p; q < r; q++) {
                double s = 0;
                if (ra <= rb)
                    for (int b = 0; b < rb; b++) s += M[(int64_t)p * rb + b] * M[(int64_t)q * rb + b];
                else
                    for (int a = 0; a < ra; a++) s += M[(int64_t)a * rb + p] * M[(int64_t)a * rb + q];
                S[(int64_t)p * r + q] = S[(int64_t)q * r + p] = s;
            }
        rc = sym_eig(S, r, w);
        for (int k = 0; k < r && !rc; k++) {
            double e = w[r - 1 - k];
            double c = e > 0 ? sqrt(e) : 0;
            cosv[k] = c > 1 ? 1 : c;
        }
    }
    free(M), free(S), free(w);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int lp_subspace_random_overlap(int d, int r, int trials, uint64_t seed, double *mean, double *p95) {
    if (r <= 0 || r > d || trials <= 0) return lp_fail(LP_ERR_ARG, "subspace: bad random baseline (d %d, r %d)", d, r);
    lp_rng rng;
    lp_rng_seed(&rng, seed);
    float *X = lp_malloc((size_t)2 * r * d * sizeof(float)), *Q = lp_malloc((size_t)2 * r * d * sizeof(float));
    double *ov = lp_malloc((size_t)trials * sizeof(double));
    int rc = LP_OK;
    if (!X || !Q || !ov) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    double acc = 0;
    for (int t = 0; t < trials && !rc; t++) {
        for (int64_t i = 0; i < (int64_t)2 * r * d; i++) X[i] = lp_rng_normal(&rng);
        if ((rc = lp_subspace_basis(X, r, d, r, Q, NULL)) ||
            (rc = lp_subspace_basis(X + (int64_t)r * d, r, d, r, Q + (int64_t)r * d, NULL)) ||
            (rc = lp_subspace_compare(Q, r, Q + (int64_t)r * d, r, d, NULL, &ov[t])))
            break;
        acc += ov[t];
    }
    if (!rc) {
        qsort(ov, (size_t)trials, sizeof *ov, cmp_double);
        if (mean) *mean = acc / trials;
        if (p95) *p95 = ov[(int)(0.95 * (trials - 1) + 0.5)];
    }
done:
    free(X), free(Q), free(ov);
    return rc;
}

double lp_subspace_inside(const float *Q, int r, int d, const float *x) {
    double xx = 0, in = 0;
    for (int j = 0; j < d; j++) xx += (double)x[j] * x[j];
    if (xx <= 0) return 0;
    for (int k = 0; k < r; k++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)Q[(int64_t)k * d + j] * x[j];
        in += s * s;
    }
    return in / xx;
}
