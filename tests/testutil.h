/* testutil.h — a tiny assertion kit for loupe's C tests. Each test binary
 * runs its cases, prints one line per failed check, and exits non-zero when
 * any check failed (tests/run.sh counts binaries as passed/failed). */
#ifndef LOUPE_TESTUTIL_H
#define LOUPE_TESTUTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_fail = 0, t_checks = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        t_checks++;                                                               \
        if (!(cond)) {                                                            \
            t_fail++;                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

#define CHECK_OK(expr)                                                            \
    do {                                                                          \
        int rc_ = (expr);                                                         \
        CHECK(rc_ == 0, "returned %d: %s", rc_, lp_errmsg());                     \
    } while (0)

/* relative closeness with an absolute floor */
static inline int t_close(double a, double b, double rtol, double atol) {
    return fabs(a - b) <= atol + rtol * fabs(b);
}

/* Path to the shared folder (models, data): $LOUPE_SHARED or ../shared. */
static inline const char *t_shared(void) {
    const char *s = getenv("LOUPE_SHARED");
    return s ? s : "../shared";
}
static inline char *t_sharedpath(const char *rel) {
    static char buf[8][1024];
    static int i = 0;
    i = (i + 1) % 8;
    snprintf(buf[i], sizeof buf[i], "%s/%s", t_shared(), rel);
    return buf[i];
}

static inline int t_done(const char *name) {
    if (t_fail) fprintf(stderr, "%s: %d of %d checks failed\n", name, t_fail, t_checks);
    else printf("%s: %d checks ok\n", name, t_checks);
    return t_fail ? 1 : 0;
}
#endif
