/* assign.c — exact linear assignment (the "Hungarian" problem) by the
 * Jonker–Volgenant algorithm (Computing 38, 1987), written from the paper's
 * description: three cheap initialisation phases that leave few rows
 * unassigned, then one Dijkstra-like shortest augmenting path per remaining
 * row. Only column prices v are kept; the invariant throughout is that every
 * assigned row i sits on a column of minimal reduced cost C[i,j] − v[j].
 * Costs are float, prices and path lengths double. Rectangular problems are
 * padded to a square with zero-cost dummy rows or columns. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/match.h"

typedef struct {
    int64_t n;
    const float *C;
    int64_t *x, *y;    /* row → column, column → row (-1: none) */
    double *v, *d, *vk; /* column prices; path lengths and prices in scan order */
    int64_t *free_rows, *cols, *pred;
    int64_t n_free;
} jv;

#define COST(s, i, j) ((double)(s)->C[(i) * (s)->n + (j)])

/* Column reduction: v[j] = min_i C[i,j]; each column goes to its minimising
 * row when that row has no column yet (ties between columns of one row: the
 * cheaper column). Columns scanned from last to first as in the paper. */
static void column_reduction(jv *s, int64_t *matches) {
    const int64_t n = s->n;
    double *cmin = s->d; /* scratch */
    int64_t *imin = s->pred;
    for (int64_t j = 0; j < n; j++) cmin[j] = COST(s, 0, j), imin[j] = 0;
    for (int64_t i = 1; i < n; i++) {
        const float *row = s->C + i * n;
        for (int64_t j = 0; j < n; j++)
            if (row[j] < cmin[j]) cmin[j] = row[j], imin[j] = i;
    }
    for (int64_t j = n - 1; j >= 0; j--) {
        int64_t i = imin[j];
        s->v[j] = cmin[j];
        if (++matches[i] == 1) {
            s->x[i] = j;
            s->y[j] = i;
        } else if (s->v[j] < s->v[s->x[i]]) {
            s->y[s->x[i]] = -1;
            s->x[i] = j;
            s->y[j] = i;
        } else {
            s->y[j] = -1;
        }
    }
}

/* Reduction transfer: a row that won exactly one column in the column
 * reduction lowers that column's price by its margin over its second-best
 * column; rows that won nothing are the free rows. */
static void reduction_transfer(jv *s, const int64_t *matches) {
    const int64_t n = s->n;
    s->n_free = 0;
    for (int64_t i = 0; i < n; i++) {
        if (matches[i] == 0) {
            s->free_rows[s->n_free++] = i;
        } else if (matches[i] == 1 && n > 1) {
            int64_t j1 = s->x[i];
            double mn = INFINITY;
            for (int64_t j = 0; j < n; j++)
                if (j != j1) {
                    double h = COST(s, i, j) - s->v[j];
                    if (h < mn) mn = h;
                }
            s->v[j1] = COST(s, i, j1) - mn;
        }
    }
}

/* Augmenting row reduction: each free row takes its best column (stealing it
 * when needed) and lowers that column's price down to its second best, so
 * that the evicted row usually finds a different column next. Bounded
 * passes and steps: whatever stays free is left to the augmentation. */
static void augmenting_row_reduction(jv *s) {
    const int64_t n = s->n;
    for (int pass = 0; pass < 2 && s->n_free > 0; pass++) {
        int64_t k = 0, prev = s->n_free, nf = 0, steps = 0, cap = 8 * prev + n; /* each step scans a row */
        while (k < prev) {
            if (++steps > cap) { /* keep the rest for the augmentation phase */
                memmove(s->free_rows + nf, s->free_rows + k, (size_t)(prev - k) * sizeof(int64_t));
                nf += prev - k;
                break;
            }
            int64_t i = s->free_rows[k++];
            double u1 = COST(s, i, 0) - s->v[0], u2 = INFINITY;
            int64_t j1 = 0, j2 = -1;
            const float *row = s->C + i * n;
            for (int64_t j = 1; j < n; j++) {
                double h = (double)row[j] - s->v[j];
                if (h < u2) {
                    if (h >= u1) {
                        u2 = h;
                        j2 = j;
                    } else {
                        u2 = u1;
                        u1 = h;
                        j2 = j1;
                        j1 = j;
                    }
                }
            }
            int64_t i0 = s->y[j1];
            if (u1 < u2) s->v[j1] -= u2 - u1;
            else if (i0 >= 0 && j2 >= 0) {
                j1 = j2;
                i0 = s->y[j2];
            }
            if (i0 >= 0) s->x[i0] = -1;
            s->x[i] = j1;
            s->y[j1] = i;
            if (i0 >= 0) {
                if (u1 < u2) s->free_rows[--k] = i0;
                else s->free_rows[nf++] = i0;
            }
        }
        s->n_free = nf;
    }
}

/* Shortest augmenting path from free row f (Dijkstra over columns with
 * reduced costs). Columns live in cols[] by state: cols[0..low) are done,
 * cols[low..up) are at the current minimum distance, cols[up..n) are still to
 * be reached. Their distances and prices are kept in the same order (dk, vk)
 * so that the scans run over contiguous memory; only the cost row is
 * gathered. */
static void augment(jv *s, int64_t f) {
    const int64_t n = s->n;
    double *dk = s->d, *vk = s->vk, *v = s->v;
    int64_t *cols = s->cols, *pred = s->pred, *y = s->y, *x = s->x;
    const float *rf = s->C + f * n;
    for (int64_t j = 0; j < n; j++) {
        cols[j] = j;
        vk[j] = v[j];
        dk[j] = (double)rf[j] - v[j];
        pred[j] = f;
    }
#define SWAP(a, b)                                                                                                     \
    do {                                                                                                               \
        int64_t tc_ = cols[a];                                                                                         \
        cols[a] = cols[b], cols[b] = tc_;                                                                              \
        double td_ = dk[a];                                                                                            \
        dk[a] = dk[b], dk[b] = td_;                                                                                    \
        double tv_ = vk[a];                                                                                            \
        vk[a] = vk[b], vk[b] = tv_;                                                                                    \
    } while (0)
    int64_t low = 0, up = 0, last = -1, end = -1;
    double mn = 0;
    while (end < 0) {
        if (up == low) { /* collect the columns at the next minimum distance */
            last = low - 1;
            mn = dk[up++];
            for (int64_t k = up; k < n; k++) {
                const double h = dk[k];
                if (h <= mn) {
                    if (h < mn) {
                        up = low;
                        mn = h;
                    }
                    SWAP(k, up);
                    up++;
                }
            }
            for (int64_t k = low; k < up; k++)
                if (y[cols[k]] < 0) {
                    end = cols[k];
                    break;
                }
            if (end >= 0) break;
        }
        /* scan from one column at the minimum through the row assigned to it */
        const int64_t j1 = cols[low], i = y[j1];
        const double h = (double)s->C[i * n + j1] - vk[low] - mn;
        low++;
        const float *ri = s->C + i * n;
        for (int64_t k = up; k < n; k++) {
            const double v2 = (double)ri[cols[k]] - vk[k] - h;
            if (v2 < dk[k]) {
                const int64_t j = cols[k];
                pred[j] = i;
                dk[k] = v2;
                if (v2 == mn) {
                    if (y[j] < 0) {
                        end = j;
                        break;
                    }
                    SWAP(k, up);
                    up++;
                }
            }
        }
    }
#undef SWAP
    /* prices of the finished columns */
    for (int64_t k = 0; k <= last; k++) v[cols[k]] += dk[k] - mn;
    /* flip the path */
    for (;;) {
        int64_t i = pred[end];
        y[end] = i;
        int64_t nxt = x[i];
        x[i] = end;
        if (i == f) break;
        end = nxt;
    }
}

static int jv_square(const float *C, int64_t n, int64_t *x_out) {
    jv s = {.n = n, .C = C};
    s.x = lp_malloc((size_t)n * sizeof(int64_t));
    s.y = lp_malloc((size_t)n * sizeof(int64_t));
    s.free_rows = lp_malloc((size_t)n * sizeof(int64_t));
    s.cols = lp_malloc((size_t)n * sizeof(int64_t));
    s.pred = lp_malloc((size_t)n * sizeof(int64_t));
    s.v = lp_malloc((size_t)n * sizeof(double));
    s.d = lp_malloc((size_t)n * sizeof(double));
    s.vk = lp_malloc((size_t)n * sizeof(double));
    int64_t *matches = lp_calloc((size_t)n, sizeof(int64_t));
    int rc = LP_OK;
    if (!s.x || !s.y || !s.free_rows || !s.cols || !s.pred || !s.v || !s.d || !s.vk || !matches) {
        rc = lp_fail(LP_ERR_NOMEM, "assignment: out of memory for n=%lld", (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) s.x[i] = -1;
    column_reduction(&s, matches);
    reduction_transfer(&s, matches);
    augmenting_row_reduction(&s);
    for (int64_t q = 0; q < s.n_free; q++) augment(&s, s.free_rows[q]);
    memcpy(x_out, s.x, (size_t)n * sizeof(int64_t));
done:
    free(s.x);
    free(s.y);
    free(s.free_rows);
    free(s.cols);
    free(s.pred);
    free(s.v);
    free(s.d);
    free(s.vk);
    free(matches);
    return rc;
}

int lp_assign_min(const float *C, int64_t n, int64_t m, int64_t *col, double *total) {
    if (n < 0 || m < 0) return lp_fail(LP_ERR_ARG, "assignment: bad shape %lld×%lld", (long long)n, (long long)m);
    if (total) *total = 0;
    if (n == 0) return LP_OK;
    if (m == 0) {
        for (int64_t i = 0; i < n; i++) col[i] = -1;
        return LP_OK;
    }
    size_t cells;
    if (lp_mul_overflow((size_t)n, (size_t)m, &cells)) return lp_fail(LP_ERR_NOMEM, "assignment: matrix too large");
    if (!lp_all_finite(C, cells)) return lp_fail(LP_ERR_NUM, "assignment: the cost matrix has NaN or Inf entries");
    const int64_t N = n > m ? n : m;
    const float *sq = C;
    float *pad = NULL;
    if (n != m) { /* zero-cost dummy rows (n < m) or columns (n > m) */
        size_t bytes;
        if (lp_mul_overflow((size_t)N * (size_t)N, sizeof(float), &bytes) || !(pad = lp_malloc(bytes)))
            return lp_fail(LP_ERR_NOMEM, "assignment: no memory to pad %lld×%lld to square", (long long)n,
                           (long long)m);
        memset(pad, 0, bytes);
        for (int64_t i = 0; i < n; i++) memcpy(pad + i * N, C + i * m, (size_t)m * sizeof(float));
        sq = pad;
    }
    int64_t *x = lp_malloc((size_t)N * sizeof(int64_t));
    if (!x) {
        free(pad);
        return LP_ERR_NOMEM;
    }
    int rc = jv_square(sq, N, x);
    if (!rc) {
        double t = 0;
        for (int64_t i = 0; i < n; i++) {
            col[i] = x[i] < m ? x[i] : -1;
            if (col[i] >= 0) t += C[i * m + col[i]];
        }
        if (total) *total = t;
    }
    free(x);
    free(pad);
    return rc;
}
