/* loupe/match.h — matching the latents of two SAEs by the directions they
 * learned: best-match (max) cosine in both directions, streamed in row
 * blocks so that no F_a×F_b matrix is ever held, and one-to-one matching by
 * an exact linear assignment (Jonker–Volgenant shortest augmenting paths).
 *
 *   sim(i, j) = cos(W_dec^a[i], W_dec^b[j])                 LP_MATCH_DEC
 *             = cos(W_enc^a[i], W_enc^b[j])                 LP_MATCH_ENC
 *             = min(cos_dec(i, j), cos_enc(i, j))           LP_MATCH_BOTH
 *   max matching:  best_a[i] = max_j sim(i, j), arg_a[i] = argmax (lowest j on ties)
 *                  best_b[j] = max_i sim(i, j), arg_b[j] likewise
 *   one-to-one:    the assignment i → col[i] (distinct columns) maximising
 *                  Σ_i sim(i, col[i]); with F_a ≠ F_b the smaller side is
 *                  matched completely, the rest of the larger side gets -1.
 *
 * Example (both directions of decoder max matching, then Hungarian):
 *   lp_max_match(a, b, LP_MATCH_DEC, best_a, arg_a, best_b, arg_b);
 *   lp_match_one_to_one(a, b, LP_MATCH_DEC, col, sim_of_match);
 * Rows with zero norm have cosine 0 to everything.
 */
#ifndef LOUPE_MATCH_H
#define LOUPE_MATCH_H

#include <stdint.h>

#include "loupe/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_MATCH_DEC, LP_MATCH_ENC, LP_MATCH_BOTH };

const char *lp_match_mode_name(int mode);
/* "dec" | "enc" | "both" (LP_ERR_ARG otherwise). */
int lp_match_mode_parse(const char *s, int *mode);

/* ---- raw matrices ------------------------------------------------------------
 * A [na, d] and B [nb, d] row-major, rows compared by cosine. A second pair
 * (A2, B2, same shapes; NULL for none) makes the similarity the element-wise
 * minimum of the two cosines (LP_MATCH_BOTH). Any output may be NULL.
 * Memory: one block of rows × nb at a time (about 64 MiB), never na × nb. */
int lp_max_cosine(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb, int d,
                  float *best_a, int32_t *arg_a, float *best_b, int32_t *arg_b);

/* Dense similarity matrix S [na, nb] (cosines; min of the two with A2/B2). */
int lp_cosine_matrix(const float *A, const float *A2, int64_t na, const float *B, const float *B2, int64_t nb,
                     int d, float *S);

/* Linear assignment: minimise Σ_i C[i, col[i]] over C [n, m] (row-major,
 * finite), n ≤ m or n > m. Exact (Jonker & Volgenant 1987: column reduction,
 * reduction transfer, augmenting row reduction, then Dijkstra shortest
 * augmenting paths). col[n] gets the column of each row (-1 when n > m and
 * the row is left out); *total (may be NULL) the optimal cost. O(max(n,m)³)
 * worst case; memory max(n,m)² floats when the matrix is not square. */
int lp_assign_min(const float *C, int64_t n, int64_t m, int64_t *col, double *total);

/* ---- SAEs ------------------------------------------------------------------- */
/* Max matching between the latents of a and b (same d_in required). */
int lp_max_match(const lp_sae *a, const lp_sae *b, int mode, float *best_a, int32_t *arg_a, float *best_b,
                 int32_t *arg_b);

/* One-to-one matching maximising total similarity. col[F_a] → latent of b or
 * -1; sim[F_a] (may be NULL) the similarity of each matched pair (-2 when
 * unmatched). Builds the F_a×F_b similarity matrix: meant for F up to ~16k. */
int lp_match_one_to_one(const lp_sae *a, const lp_sae *b, int mode, int64_t *col, float *sim);

#ifdef __cplusplus
}
#endif
#endif
