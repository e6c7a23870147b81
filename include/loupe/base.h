/* loupe/base.h — the foundation every stage uses: status codes and error
 * messages, checked allocation, a seeded RNG, file helpers (whole-file read,
 * atomic write), SHA-256, the GEMM shim, a progress bar and time.
 *
 * Convention (SQLite / stb style): a library function returns an int status,
 * 0 (LP_OK) on success; on failure it records a one-line message that names
 * the file or argument at fault, readable with lp_errmsg() on the same thread.
 * Nothing in the library prints to stdout or calls exit().
 */
#ifndef LOUPE_BASE_H
#define LOUPE_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ------------------------------------------------- */
enum {
    LP_OK = 0,
    LP_ERR_IO = 1,     /* missing file, read/write failure              */
    LP_ERR_FORMAT = 2, /* a file's content is malformed or inconsistent */
    LP_ERR_ARG = 3,    /* a bad argument / option / shape               */
    LP_ERR_NOMEM = 4,  /* allocation failed or size overflowed          */
    LP_ERR_NUM = 5,    /* NaN / Inf where finite numbers are required   */
};

/* Record an error message (printf-style) for this thread; returns `code`
 * so that `return lp_fail(LP_ERR_IO, "%s: cannot open", path);` reads well. */
int lp_fail(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The last message recorded on this thread ("" if none). */
const char *lp_errmsg(void);
/* Prefix the current message: "prefix: old message". Returns `code`. */
int lp_fail_prefix(int code, const char *prefix);

/* ---- checked allocation ------------------------------------------------ */
/* All return NULL and record LP_ERR_NOMEM on failure or size overflow. */
void *lp_malloc(size_t n);
void *lp_calloc(size_t count, size_t size);
void *lp_malloc_aligned(size_t n); /* 64-byte aligned, release with lp_free */
void lp_free(void *p);
/* a*b into *out; returns 0, or nonzero if it overflows size_t. */
int lp_mul_overflow(size_t a, size_t b, size_t *out);
char *lp_strdup(const char *s);

/* ---- RNG: xoshiro256** seeded by splitmix64; state is plain data ------- */
typedef struct {
    uint64_t s[4];
} lp_rng;
void lp_rng_seed(lp_rng *r, uint64_t seed);
uint64_t lp_rng_u64(lp_rng *r);
double lp_rng_uniform(lp_rng *r);            /* [0, 1) */
float lp_rng_normal(lp_rng *r);               /* standard normal */
uint64_t lp_rng_below(lp_rng *r, uint64_t n); /* uniform in [0, n) */

/* ---- files ------------------------------------------------------------- */
/* Read a whole file into a fresh buffer (NUL-terminated for convenience). */
int lp_read_file(const char *path, char **buf, size_t *len);
int lp_file_exists(const char *path);
int lp_is_dir(const char *path);
/* mkdir -p */
int lp_mkdirs(const char *path);
/* Join a directory and a name into a fresh string. */
char *lp_path_join(const char *dir, const char *name);

/* Atomic write: data goes to "<path>.tmp.<pid>", then fsync + rename over
 * `path` on commit; abort removes the temporary. No half-written outputs. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp;
} lp_atomic;
int lp_atomic_open(lp_atomic *a, const char *path);
int lp_atomic_write(lp_atomic *a, const void *data, size_t n);
int lp_atomic_commit(lp_atomic *a);
void lp_atomic_abort(lp_atomic *a);
/* Convenience: write a whole buffer atomically. */
int lp_write_file_atomic(const char *path, const void *data, size_t n);

/* ---- SHA-256 ----------------------------------------------------------- */
typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} lp_sha256;
void lp_sha256_init(lp_sha256 *s);
void lp_sha256_update(lp_sha256 *s, const void *data, size_t n);
void lp_sha256_final(lp_sha256 *s, char hex[65]);
int lp_sha256_file(const char *path, char hex[65]);

/* ---- GEMM shim (row-major) ---------------------------------------------
 * C[M,N] = alpha * op(A) op(B) + beta * C, op = transpose when trans != 0.
 * lda/ldb/ldc are row strides of the matrices as stored. The backend is
 * chosen at build time (oneDNN when found, else CBLAS/OpenBLAS). */
void lp_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);
/* Name of the GEMM backend and what it detected, for `--version`/bench. */
const char *lp_gemm_backend(void);
/* Threads used by OpenMP loops and the GEMM backend. */
int lp_threads(void);
void lp_set_threads(int n);

/* ---- time and progress ------------------------------------------------- */
double lp_now(void); /* monotonic seconds */

/* A progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct {
    double total, done, t0, last_draw;
    const char *unit;
    int enabled;
    char extra[128];
} lp_progress;
void lp_progress_init(lp_progress *p, double total, const char *unit);
void lp_progress_update(lp_progress *p, double done, const char *extra);
void lp_progress_finish(lp_progress *p);

/* ---- small math helpers ------------------------------------------------ */
int lp_all_finite(const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
