/* err.c — per-thread error messages and checked allocation helpers. */
#include "loupe/base.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];

int lp_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *lp_errmsg(void) { return g_msg; }

int lp_fail_prefix(int code, const char *prefix) {
    char tmp[sizeof g_msg];
    memcpy(tmp, g_msg, sizeof tmp);
    size_t n = strlen(prefix);
    if (n > sizeof g_msg - 3) n = sizeof g_msg - 3;
    memcpy(g_msg, prefix, n);
    memcpy(g_msg + n, ": ", 2);
    size_t rest = sizeof g_msg - n - 3;
    strncpy(g_msg + n + 2, tmp, rest);
    g_msg[sizeof g_msg - 1] = 0;
    return code;
}

int lp_mul_overflow(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}

void *lp_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) lp_fail(LP_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *lp_calloc(size_t count, size_t size) {
    size_t n;
    if (lp_mul_overflow(count, size, &n)) {
        lp_fail(LP_ERR_NOMEM, "allocation size overflows (%zu x %zu)", count, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, 1);
    if (!p) lp_fail(LP_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *lp_malloc_aligned(size_t n) {
    void *p = NULL;
    size_t r = (n + 63) & ~(size_t)63;
    if (r < n || posix_memalign(&p, 64, r ? r : 64) != 0) {
        lp_fail(LP_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

void lp_free(void *p) { free(p); }

char *lp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lp_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int lp_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) return 0;
    return 1;
}
