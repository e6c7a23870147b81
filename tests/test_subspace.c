/* test_subspace.c — subspace bases, principal angles and overlaps against
 * numpy/scipy (svd, scipy.linalg.subspace_angles) run by the test, plus
 * constructions with known answers: a subspace against itself (angles 0,
 * overlap 1), against its orthogonal complement (angles 90°), a rotation by
 * a known angle, and the random baseline's expectation r/d. */
#include <unistd.h>

#include "loupe/subspace.h"
#include "testutil.h"

static void known_answers(void) {
    const int d = 10;
    float Q[3 * 10] = {0}, P[3 * 10] = {0};
    /* Q = span(e0, e1, e2); P = span(e0, cos t e1 + sin t e5, e7) */
    const double t = 0.3;
    Q[0] = 1, Q[10 + 1] = 1, Q[20 + 2] = 1;
    P[0] = 1, P[10 + 1] = (float)cos(t), P[10 + 5] = (float)sin(t), P[20 + 7] = 1;
    double cv[3], ov;
    CHECK_OK(lp_subspace_compare(Q, 3, P, 3, d, cv, &ov));
    CHECK(fabs(cv[0] - 1) < 1e-6 && fabs(cv[1] - cos(t)) < 1e-6 && fabs(cv[2]) < 1e-6, "cosines %g %g %g", cv[0], cv[1],
          cv[2]);
    CHECK(fabs(ov - (1 + cos(t) * cos(t)) / 3) < 1e-6, "overlap %g", ov);
    CHECK_OK(lp_subspace_compare(Q, 3, Q, 3, d, cv, &ov));
    CHECK(fabs(ov - 1) < 1e-6 && fabs(cv[2] - 1) < 1e-6, "self overlap %g", ov);
    /* basis of rows spanning a known 2-d subspace, with more rows than dims */
    float X[5 * 10] = {0};
    for (int i = 0; i < 5; i++) X[i * 10 + 3] = (float)(i + 1), X[i * 10 + 8] = (float)(2 - i);
    float B[2 * 10];
    double sv[5];
    CHECK_OK(lp_subspace_basis(X, 5, d, 2, B, sv));
    double in3 = 0, in8 = 0;
    for (int k = 0; k < 2; k++) in3 += B[k * 10 + 3] * B[k * 10 + 3], in8 += B[k * 10 + 8] * B[k * 10 + 8];
    CHECK(fabs(in3 - 1) < 1e-5 && fabs(in8 - 1) < 1e-5 && sv[2] < 1e-5, "basis misses the span (%g %g, sv3 %g)", in3,
          in8, sv[2]);
    CHECK(lp_subspace_rank(sv, 5, 0.999) == 2, "rank of a 2-d span");
    float e3[10] = {0};
    e3[3] = 2;
    CHECK(fabs(lp_subspace_inside(B, 2, d, e3) - 1) < 1e-5, "e3 lies inside");
    /* random baseline: E overlap = r/d exactly */
    double mean, p95;
    CHECK_OK(lp_subspace_random_overlap(64, 8, 400, 1, &mean, &p95));
    CHECK(fabs(mean - 8.0 / 64) < 0.01 && p95 > mean, "random overlap %g (p95 %g), expected %g", mean, p95, 8.0 / 64);
    CHECK(lp_subspace_basis(X, 5, d, 11, B, NULL) == LP_ERR_ARG, "rank above d must be refused");
}

static void vs_numpy(void) {
    const char *py = getenv("PY") ? getenv("PY") : "/usr/bin/python3";
    char dir[] = "/tmp/loupe_subspace_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    const int d = 40, ma = 30, mb = 25, r = 6;
    lp_rng g;
    lp_rng_seed(&g, 4);
    float *A = malloc(ma * d * sizeof(float)), *Bm = malloc(mb * d * sizeof(float));
    /* correlated row sets: both near a shared 8-d subspace */
    float *S = malloc(8 * d * sizeof(float));
    for (int i = 0; i < 8 * d; i++) S[i] = lp_rng_normal(&g);
    for (int i = 0; i < ma; i++)
        for (int j = 0; j < d; j++) {
            double v = 0.3 * lp_rng_normal(&g);
            for (int k = 0; k < 8; k++) v += (0.5 + (i + k) % 3) * lp_rng_normal(&g) * S[k * d + j] / 3;
            A[i * d + j] = (float)v;
        }
    for (int i = 0; i < mb; i++)
        for (int j = 0; j < d; j++) {
            double v = 0.3 * lp_rng_normal(&g);
            for (int k = 0; k < 8; k++) v += lp_rng_normal(&g) * S[k * d + j] / 3;
            Bm[i * d + j] = (float)v;
        }
    char pa[256], pb[256], cmd[1024];
    snprintf(pa, sizeof pa, "%s/A.f32", dir);
    snprintf(pb, sizeof pb, "%s/B.f32", dir);
    lp_write_file_atomic(pa, A, ma * d * sizeof(float));
    lp_write_file_atomic(pb, Bm, mb * d * sizeof(float));
    snprintf(cmd, sizeof cmd,
             "%s -c \"\nimport numpy as np, scipy.linalg as sl\nd=%d; r=%d\nA=np.fromfile('%s',dtype=np.float32).reshape(-1,d).astype(np.float64)\n"
             "B=np.fromfile('%s',dtype=np.float32).reshape(-1,d).astype(np.float64)\n"
             "ua=np.linalg.svd(A)[2][:r]; ub=np.linalg.svd(B)[2][:r]\n"
             "sa=np.linalg.svd(A,compute_uv=False)\nang=np.sort(sl.subspace_angles(ua.T,ub.T))\n"
             "ov=(ua@ub.T)**2\nnp.savetxt('%s/ref.txt', np.concatenate([sa[:r], np.cos(ang), [ov.sum()/r], (ua.T@ua).ravel()]))\n\"",
             py, d, r, pa, pb, dir);
    CHECK(system(cmd) == 0, "numpy reference failed");
    snprintf(pa, sizeof pa, "%s/ref.txt", dir);
    FILE *f = fopen(pa, "r");
    CHECK(f != NULL, "no reference output");
    if (!f) return;
    int nref = r + r + 1 + d * d;
    double *ref = malloc(nref * sizeof(double));
    int got = 0;
    while (got < nref && fscanf(f, "%lf", &ref[got]) == 1) got++;
    fclose(f);
    CHECK(got == nref, "reference has %d of %d numbers", got, nref);
    float *Qa = malloc(r * d * sizeof(float)), *Qb = malloc(r * d * sizeof(float));
    double sv[40], cv[6], ov;
    CHECK_OK(lp_subspace_basis(A, ma, d, r, Qa, sv));
    CHECK_OK(lp_subspace_basis(Bm, mb, d, r, Qb, NULL));
    CHECK_OK(lp_subspace_compare(Qa, r, Qb, r, d, cv, &ov));
    int bad = 0;
    for (int k = 0; k < r; k++) bad += fabs(sv[k] - ref[k]) > 1e-4 * ref[0];
    CHECK(bad == 0, "singular values differ from numpy (%d)", bad);
    /* scipy's angles sorted ascending = cosines descending, as loupe returns them */
    bad = 0;
    for (int k = 0; k < r; k++) bad += fabs(cv[k] - ref[r + k]) > 1e-4;
    CHECK(bad == 0, "principal angle cosines differ from scipy (%d): %g vs %g", bad, cv[0], ref[r]);
    CHECK(fabs(ov - ref[2 * r]) < 1e-4, "overlap %g vs numpy %g", ov, ref[2 * r]);
    /* the projector Q_aᵀQ_a equals numpy's (bases may differ by rotation/sign) */
    double maxd = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double p = 0;
            for (int k = 0; k < r; k++) p += (double)Qa[k * d + i] * Qa[k * d + j];
            maxd = fmax(maxd, fabs(p - ref[2 * r + 1 + i * d + j]));
        }
    CHECK(maxd < 1e-4, "projector differs from numpy by %g", maxd);
    free(A), free(Bm), free(S), free(ref), free(Qa), free(Qb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
    known_answers();
    vs_numpy();
    return t_done("test_subspace");
}
