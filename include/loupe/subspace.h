/* loupe/subspace.h — subspaces spanned by sets of directions (e.g. the
 * unstable decoder rows of one SAE) and how two of them compare:
 *
 *   basis:    Q [r, d], orthonormal rows = the top-r right singular vectors of
 *             the rows X [m, d] (eigenvectors of XᵀX, LAPACK dsyevd in double)
 *   angles:   cos θ_k = σ_k(Q_a Q_bᵀ), k = 1..min(r_a, r_b), descending
 *             (θ_1 ≤ θ_2 ≤ …; degrees by acos)
 *   overlap:  ‖Q_a Q_bᵀ‖_F² / min(r_a, r_b) ∈ [0, 1]; for independent uniformly
 *             random subspaces its expectation is max(r_a, r_b) / d.
 */
#ifndef LOUPE_SUBSPACE_H
#define LOUPE_SUBSPACE_H

#include <stdint.h>

#include "loupe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Singular values of X [m, d] (descending, min(m, d) of them, into sv) and,
 * when Q is not NULL, the top-r right singular vectors as rows of Q [r, d]
 * (r ≤ d; directions beyond the rank of X are still orthonormal). */
int lp_subspace_basis(const float *X, int64_t m, int d, int r, float *Q, double *sv);

/* The smallest r with Σ_{k<r} σ_k² ≥ energy · Σ σ_k² (at least 1). */
int lp_subspace_rank(const double *sv, int n, double energy);

/* cosines of the principal angles into cosv[min(ra, rb)] (may be NULL) and
 * the projection overlap into *overlap (may be NULL). */
int lp_subspace_compare(const float *Qa, int ra, const float *Qb, int rb, int d, double *cosv, double *overlap);

/* Overlap of pairs of independent uniformly random r-dim subspaces of R^d:
 * mean and 95th percentile over `trials` pairs (seeded). */
int lp_subspace_random_overlap(int d, int r, int trials, uint64_t seed, double *mean, double *p95);

/* Fraction of the squared norm of unit(x) inside the span of Q's rows:
 * ‖Q x‖² / ‖x‖² (0 for x = 0). */
double lp_subspace_inside(const float *Q, int r, int d, const float *x);

#ifdef __cplusplus
}
#endif
#endif
