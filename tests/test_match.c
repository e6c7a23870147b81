/* test_match.c — matching kernels against independent references:
 * the JV assignment against brute force over all permutations (small n,
 * rectangular, heavy ties), against a plain O(n³) Hungarian written here and
 * against scipy's linear_sum_assignment (n up to 1000); the streamed max-cosine
 * against a double-precision brute force and numpy (several tile blocks,
 * "both" mode), and the SAE-level calls. */
#include <float.h>
#include <unistd.h>

#include "loupe/match.h"
#include "testutil.h"

static float *rnd(lp_rng *r, int64_t n, int ints) {
    float *a = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) a[i] = ints ? (float)lp_rng_below(r, (uint64_t)ints) : lp_rng_normal(r);
    return a;
}

/* ---- brute force over permutations (n ≤ m ≤ 8) ---------------------------- */
static void perm_best(const float *C, int n, int m, int row, uint32_t used, double acc, double *best) {
    if (row == n) {
        if (acc < *best) *best = acc;
        return;
    }
    for (int j = 0; j < m; j++)
        if (!(used & (1u << j))) perm_best(C, n, m, row + 1, used | (1u << j), acc + C[row * m + j], best);
}

/* ---- textbook Hungarian with row/column potentials (square, O(n³)) -------- */
static double hungarian_ref(const float *C, int n, int *ans) {
    double *u = calloc(n + 1, sizeof *u), *v = calloc(n + 1, sizeof *v), *mv = malloc((n + 1) * sizeof *mv);
    int *p = calloc(n + 1, sizeof *p), *way = calloc(n + 1, sizeof *way);
    char *used = malloc(n + 1);
    for (int i = 1; i <= n; i++) {
        p[0] = i;
        int j0 = 0;
        for (int j = 0; j <= n; j++) mv[j] = DBL_MAX, used[j] = 0;
        do {
            used[j0] = 1;
            int i0 = p[j0], j1 = 0;
            double delta = DBL_MAX;
            for (int j = 1; j <= n; j++)
                if (!used[j]) {
                    double cur = C[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                    if (cur < mv[j]) mv[j] = cur, way[j] = j0;
                    if (mv[j] < delta) delta = mv[j], j1 = j;
                }
            for (int j = 0; j <= n; j++)
                if (used[j]) u[p[j]] += delta, v[j] -= delta;
                else mv[j] -= delta;
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    double tot = 0;
    for (int j = 1; j <= n; j++) ans[p[j] - 1] = j - 1, tot += C[(p[j] - 1) * n + j - 1];
    free(u), free(v), free(mv), free(p), free(way), free(used);
    return tot;
}

static int is_assignment(const int64_t *col, int64_t n, int64_t m) {
    char *seen = calloc((size_t)m + 1, 1);
    int ok = 1;
    int64_t assigned = 0;
    for (int64_t i = 0; i < n; i++) {
        if (col[i] < 0) continue;
        if (col[i] >= m || seen[col[i]]) ok = 0;
        else seen[col[i]] = 1, assigned++;
    }
    free(seen);
    return ok && assigned == (n < m ? n : m);
}

static void test_brute(void) {
    lp_rng r;
    lp_rng_seed(&r, 1);
    int bad = 0, cases = 0;
    for (int t = 0; t < 400; t++) {
        int n = 1 + (int)lp_rng_below(&r, 7), m = 1 + (int)lp_rng_below(&r, 7);
        int ints = t % 3 == 0 ? 3 : t % 3 == 1 ? 50 : 0; /* heavy ties, some ties, none */
        float *C = rnd(&r, (int64_t)n * m, ints);
        int64_t col[8];
        double tot = 0, best = DBL_MAX;
        CHECK_OK(lp_assign_min(C, n, m, col, &tot));
        if (n <= m) perm_best(C, n, m, 0, 0, 0, &best);
        else { /* transpose: assign columns to rows */
            float *Ct = malloc((size_t)n * m * sizeof(float));
            for (int i = 0; i < n; i++)
                for (int j = 0; j < m; j++) Ct[j * n + i] = C[i * m + j];
            perm_best(Ct, m, n, 0, 0, 0, &best);
            free(Ct);
        }
        double recomputed = 0;
        for (int i = 0; i < n; i++)
            if (col[i] >= 0) recomputed += C[i * m + col[i]];
        cases++;
        if (!is_assignment(col, n, m) || fabs(tot - best) > 1e-4 || fabs(recomputed - tot) > 1e-4) bad++;
        free(C);
    }
    CHECK(bad == 0, "%d of %d small problems not optimal", bad, cases);
}

static void test_vs_hungarian(void) {
    lp_rng r;
    lp_rng_seed(&r, 2);
    int sizes[] = {50, 200, 400};
    for (int s = 0; s < 3; s++) {
        int n = sizes[s];
        for (int ints = 0; ints <= 1; ints++) {
            float *C = rnd(&r, (int64_t)n * n, ints ? 10 : 0);
            int64_t *col = malloc(n * sizeof *col);
            int *ans = malloc(n * sizeof *ans);
            double tot, ref = hungarian_ref(C, n, ans);
            CHECK_OK(lp_assign_min(C, n, n, col, &tot));
            CHECK(is_assignment(col, n, n), "n=%d not a permutation", n);
            CHECK(fabs(tot - ref) <= 1e-6 * (1 + fabs(ref)), "n=%d ints=%d: JV %.9g vs Hungarian %.9g", n, ints, tot,
                  ref);
            int same = 0;
            for (int i = 0; i < n; i++) same += col[i] == ans[i];
            if (!ints) CHECK(same == n, "n=%d: %d of %d rows assigned alike (no ties expected)", n, same, n);
            free(C), free(col), free(ans);
        }
    }
}

/* ---- max cosine ------------------------------------------------------------ */
static double dcos(const float *a, const float *b, int d) {
    double ab = 0, aa = 0, bb = 0;
    for (int j = 0; j < d; j++) ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void test_maxcos(int64_t na, int64_t nb, int d, int both) {
    lp_rng r;
    lp_rng_seed(&r, (uint64_t)(na * 7 + nb + both));
    float *A = rnd(&r, na * d, 0), *B = rnd(&r, nb * d, 0);
    float *A2 = both ? rnd(&r, na * d, 0) : NULL, *B2 = both ? rnd(&r, nb * d, 0) : NULL;
    memset(A, 0, d * sizeof(float)); /* a zero row: cosine 0 everywhere */
    float *ba = malloc(na * sizeof(float)), *bb = malloc(nb * sizeof(float));
    int32_t *aa = malloc(na * sizeof(int32_t)), *ab = malloc(nb * sizeof(int32_t));
    CHECK_OK(lp_max_cosine(A, A2, na, B, B2, nb, d, ba, aa, bb, ab));
    double *rb = malloc(nb * sizeof(double));
    for (int64_t j = 0; j < nb; j++) rb[j] = -2;
    int bad_v = 0, bad_a = 0;
    for (int64_t i = 0; i < na; i++) {
        double best = -2;
        for (int64_t j = 0; j < nb; j++) {
            double c = dcos(A + i * d, B + j * d, d);
            if (both) {
                double c2 = dcos(A2 + i * d, B2 + j * d, d);
                if (c2 < c) c = c2;
            }
            if (c > best) best = c;
            if (c > rb[j]) rb[j] = c;
        }
        if (fabs(best - ba[i]) > 2e-5) bad_v++;
        double at = dcos(A + i * d, B + (int64_t)aa[i] * d, d);
        if (both) {
            double c2 = dcos(A2 + i * d, B2 + (int64_t)aa[i] * d, d);
            if (c2 < at) at = c2;
        }
        if (fabs(at - best) > 2e-5) bad_a++;
    }
    for (int64_t j = 0; j < nb; j++) {
        if (fabs(rb[j] - bb[j]) > 2e-5) bad_v++;
        double at = dcos(A + (int64_t)ab[j] * d, B + j * d, d);
        if (both) {
            double c2 = dcos(A2 + (int64_t)ab[j] * d, B2 + j * d, d);
            if (c2 < at) at = c2;
        }
        if (fabs(at - rb[j]) > 2e-5) bad_a++;
    }
    CHECK(bad_v == 0 && bad_a == 0, "max cosine %lldx%lld d=%d both=%d: %d values, %d argmaxes off", (long long)na,
          (long long)nb, d, both, bad_v, bad_a);
    CHECK(ba[0] == 0.0f, "zero row should have max cosine 0, got %g", ba[0]);
    free(A), free(B), free(A2), free(B2), free(ba), free(bb), free(aa), free(ab), free(rb);
}

/* ---- against numpy and scipy (one python run) ----------------------------- */
static int write_f32(const char *path, const void *p, size_t n) { return lp_write_file_atomic(path, p, n); }

static void *slurp(const char *path, size_t want) {
    char *buf = NULL;
    size_t len = 0;
    if (lp_read_file(path, &buf, &len) || len != want) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void test_python(void) {
    const char *py = getenv("PY") ? getenv("PY") : "/usr/bin/python3";
    char dir[] = "/tmp/loupe_match_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    lp_rng r;
    lp_rng_seed(&r, 9);
    /* assignment: square 1000 (random) and rectangular 300×700 */
    const int64_t shapes[2][2] = {{1000, 1000}, {300, 700}};
    char p1[256], p2[256], cmd[2048];
    for (int s = 0; s < 2; s++) {
        int64_t n = shapes[s][0], m = shapes[s][1];
        float *C = rnd(&r, n * m, 0);
        snprintf(p1, sizeof p1, "%s/C%d.f32", dir, s);
        snprintf(p2, sizeof p2, "%s/C%d", dir, s);
        write_f32(p1, C, (size_t)(n * m) * sizeof(float));
        snprintf(cmd, sizeof cmd, "%s tests/ref/match_ref.py assign %s %lld %lld %s", py, p1, (long long)n,
                 (long long)m, p2);
        CHECK(system(cmd) == 0, "scipy reference failed: %s", cmd);
        int64_t *col = malloc(n * sizeof *col);
        double tot;
        CHECK_OK(lp_assign_min(C, n, m, col, &tot));
        snprintf(p1, sizeof p1, "%s/C%d.col", dir, s);
        int64_t *sc = slurp(p1, (size_t)n * sizeof(int64_t));
        snprintf(p1, sizeof p1, "%s/C%d.total", dir, s);
        char *txt = NULL;
        lp_read_file(p1, &txt, NULL);
        double stot = txt ? atof(txt) : NAN;
        CHECK(sc != NULL, "no scipy assignment");
        if (sc) {
            int same = 0;
            for (int64_t i = 0; i < n; i++) same += sc[i] == col[i];
            CHECK(same == n, "%lldx%lld: %d of %lld rows assigned as scipy does", (long long)n, (long long)m, same,
                  (long long)n);
        }
        CHECK(fabs(tot - stot) <= 1e-5 * (1 + fabs(stot)), "%lldx%lld: total %.9g vs scipy %.9g", (long long)n,
              (long long)m, tot, stot);
        free(C), free(col), free(sc), free(txt);
    }
    /* max cosine vs numpy: 2500 × 9100 rows of d = 24 (several tiles) */
    int64_t na = 2500, nb = 9100;
    int d = 24;
    float *A = rnd(&r, na * d, 0), *B = rnd(&r, nb * d, 0);
    snprintf(p1, sizeof p1, "%s/A.f32", dir);
    snprintf(p2, sizeof p2, "%s/B.f32", dir);
    write_f32(p1, A, (size_t)(na * d) * sizeof(float));
    write_f32(p2, B, (size_t)(nb * d) * sizeof(float));
    snprintf(cmd, sizeof cmd, "%s tests/ref/match_ref.py maxcos %s %lld %s %lld %d %s/M", py, p1, (long long)na, p2,
             (long long)nb, d, dir);
    CHECK(system(cmd) == 0, "numpy reference failed");
    float *ba = malloc(na * sizeof(float)), *bb = malloc(nb * sizeof(float));
    int32_t *aa = malloc(na * sizeof(int32_t)), *ab = malloc(nb * sizeof(int32_t));
    CHECK_OK(lp_max_cosine(A, NULL, na, B, NULL, nb, d, ba, aa, bb, ab));
    const char *ext[4] = {"best_a", "arg_a", "best_b", "arg_b"};
    void *got[4] = {ba, aa, bb, ab};
    int64_t cnt[4] = {na, na, nb, nb};
    for (int k = 0; k < 4; k++) {
        snprintf(p1, sizeof p1, "%s/M.%s", dir, ext[k]);
        void *ref = slurp(p1, (size_t)cnt[k] * 4);
        CHECK(ref != NULL, "missing %s", p1);
        if (!ref) continue;
        int off = 0;
        for (int64_t i = 0; i < cnt[k]; i++) {
            if (k % 2 == 0) off += fabsf(((float *)ref)[i] - ((float *)got[k])[i]) > 1e-5f;
            else if (((int32_t *)ref)[i] != ((int32_t *)got[k])[i]) {
                /* a different argmax is fine only at a tie */
                float *best = k == 1 ? ba : bb;
                int64_t j = ((int32_t *)got[k])[i], q = ((int32_t *)ref)[i];
                double c1 = k == 1 ? dcos(A + i * d, B + j * d, d) : dcos(A + j * d, B + i * d, d);
                double c2 = k == 1 ? dcos(A + i * d, B + q * d, d) : dcos(A + q * d, B + i * d, d);
                off += fabs(c1 - c2) > 1e-6 || fabs(c1 - best[i]) > 1e-5;
            }
        }
        CHECK(off == 0, "max cosine vs numpy: %d of %lld %s differ", off, (long long)cnt[k], ext[k]);
        free(ref);
    }
    free(A), free(B), free(ba), free(bb), free(aa), free(ab);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) { /* best effort */
    }
}

/* ---- SAE-level: a permuted, slightly perturbed copy is matched back ------- */
static void test_sae_permutation(void) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.d_in = 32;
    c.d_sae = 300;
    c.k = 4;
    lp_sae *a = NULL, *b = NULL;
    CHECK_OK(lp_sae_new(&a, &c));
    CHECK_OK(lp_sae_new(&b, &c));
    lp_sae_init(a, 5);
    lp_rng r;
    lp_rng_seed(&r, 6);
    int64_t F = c.d_sae, d = c.d_in;
    int64_t *perm = malloc(F * sizeof *perm);
    for (int64_t i = 0; i < F; i++) perm[i] = i;
    for (int64_t i = F - 1; i > 0; i--) {
        int64_t j = (int64_t)lp_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int p = LP_SAE_W_ENC; p <= LP_SAE_W_DEC; p += 2)
        for (int64_t i = 0; i < F; i++)
            for (int64_t j = 0; j < d; j++)
                b->p[p][perm[i] * d + j] = a->p[p][i * d + j] + 0.05f * lp_rng_normal(&r);
    for (int mode = LP_MATCH_DEC; mode <= LP_MATCH_BOTH; mode++) {
        int64_t *col = malloc(F * sizeof *col);
        float *sim = malloc(F * sizeof(float)), *best = malloc(F * sizeof(float));
        int32_t *arg = malloc(F * sizeof(int32_t));
        CHECK_OK(lp_match_one_to_one(a, b, mode, col, sim));
        CHECK_OK(lp_max_match(a, b, mode, best, arg, NULL, NULL));
        int ok1 = 0, ok2 = 0;
        for (int64_t i = 0; i < F; i++) ok1 += col[i] == perm[i], ok2 += arg[i] == perm[i] && best[i] > 0.9f;
        CHECK(ok1 == F && ok2 == F, "mode %s: one-to-one %d, max %d of %lld recovered", lp_match_mode_name(mode), ok1,
              ok2, (long long)F);
        free(col), free(sim), free(best), free(arg);
    }
    /* different widths are refused with a message */
    lp_sae_config c2 = c;
    c2.d_in = 16;
    lp_sae *e = NULL;
    CHECK_OK(lp_sae_new(&e, &c2));
    float bx[300];
    CHECK(lp_max_match(a, e, LP_MATCH_DEC, bx, NULL, NULL, NULL) == LP_ERR_ARG && strstr(lp_errmsg(), "d_in"),
          "mismatched widths: %s", lp_errmsg());
    float nanC[4] = {0, NAN, 1, 2};
    int64_t col2[2];
    CHECK(lp_assign_min(nanC, 2, 2, col2, NULL) == LP_ERR_NUM, "NaN costs must be refused");
    lp_sae_free(a), lp_sae_free(b), lp_sae_free(e);
    free(perm);
}

int main(void) {
    test_brute();
    test_vs_hungarian();
    test_maxcos(37, 53, 7, 0);
    test_maxcos(300, 420, 16, 1);
    test_maxcos(2100, 8300, 5, 0); /* two row blocks × two column blocks */
    test_sae_permutation();
    test_python();
    return t_done("test_match");
}
