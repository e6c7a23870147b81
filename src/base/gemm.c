/* gemm.c — the single GEMM entry point (row-major) and thread settings.
 * Backend: oneDNN's dnnl_sgemm when built with it (it detects the CPU's ISA
 * itself), otherwise OpenBLAS's cblas_sgemm. Debian's OpenBLAS can misdetect
 * recent CPUs as "Prescott" and run ~5x slower; the CLI corrects that at start
 * (see lp_blas_coretype_fix in cli/main.c), the library never re-execs. */
#include "loupe/base.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#ifdef LP_HAVE_DNNL
#include <dnnl.h>
#endif
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void lp_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef LP_HAVE_DNNL
    dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C,
               ldc);
#else
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
                transB ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
#endif
}

/* OpenBLAS exports this; declared here to avoid depending on its config header. */
char *openblas_get_corename(void);

const char *lp_gemm_backend(void) {
    static char buf[128];
#ifdef LP_HAVE_DNNL
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d (OpenBLAS core %s for other BLAS)", v->major,
             v->minor, v->patch, openblas_get_corename());
#else
    snprintf(buf, sizeof buf, "OpenBLAS (core %s)", openblas_get_corename());
#endif
    return buf;
}

static int g_threads = 0;

int lp_threads(void) {
    if (g_threads > 0) return g_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void openblas_set_num_threads(int);

void lp_set_threads(int n) {
    if (n <= 0) return;
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

double lp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
