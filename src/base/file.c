/* file.c — whole-file reads, directory helpers and atomic writes
 * (temp file + fsync + rename), so no command leaves half-written output. */
#include "loupe/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int lp_read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return lp_fail(LP_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return lp_fail(LP_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *b = lp_malloc(n + 1);
    if (!b) {
        fclose(f);
        return lp_fail_prefix(LP_ERR_NOMEM, path);
    }
    if (n && fread(b, 1, n, f) != n) {
        fclose(f);
        free(b);
        return lp_fail(LP_ERR_IO, "%s: read failed", path);
    }
    fclose(f);
    b[n] = 0;
    *buf = b;
    if (len) *len = n;
    return LP_OK;
}

int lp_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int lp_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lp_mkdirs(const char *path) {
    char *p = lp_strdup(path);
    if (!p) return LP_ERR_NOMEM;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == 0) {
            char c = p[i];
            p[i] = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                free(p);
                return lp_fail(LP_ERR_IO, "%s: cannot create directory (%s)", path, strerror(e));
            }
            p[i] = c;
        }
    }
    free(p);
    if (!lp_is_dir(path)) return lp_fail(LP_ERR_IO, "%s: exists and is not a directory", path);
    return LP_OK;
}

char *lp_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = lp_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int lp_atomic_open(lp_atomic *a, const char *path) {
    memset(a, 0, sizeof *a);
    a->path = lp_strdup(path);
    a->tmp = lp_malloc(strlen(path) + 32);
    if (!a->path || !a->tmp) {
        free(a->path);
        free(a->tmp);
        return LP_ERR_NOMEM;
    }
    sprintf(a->tmp, "%s.tmp.%ld", path, (long)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        int e = errno;
        free(a->path);
        free(a->tmp);
        a->path = a->tmp = NULL;
        return lp_fail(LP_ERR_IO, "%s: cannot write (%s)", path, strerror(e));
    }
    return LP_OK;
}

int lp_atomic_write(lp_atomic *a, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, a->f) != n)
        return lp_fail(LP_ERR_IO, "%s: write failed (%s)", a->path, strerror(errno));
    return LP_OK;
}

int lp_atomic_commit(lp_atomic *a) {
    int rc = LP_OK;
    if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0)
        rc = lp_fail(LP_ERR_IO, "%s: write failed (%s)", a->path, strerror(errno));
    if (fclose(a->f) != 0 && rc == LP_OK)
        rc = lp_fail(LP_ERR_IO, "%s: write failed (%s)", a->path, strerror(errno));
    a->f = NULL;
    if (rc == LP_OK && rename(a->tmp, a->path) != 0)
        rc = lp_fail(LP_ERR_IO, "%s: cannot rename into place (%s)", a->path, strerror(errno));
    if (rc != LP_OK) remove(a->tmp);
    free(a->path);
    free(a->tmp);
    a->path = a->tmp = NULL;
    return rc;
}

void lp_atomic_abort(lp_atomic *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) remove(a->tmp);
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

int lp_write_file_atomic(const char *path, const void *data, size_t n) {
    lp_atomic a;
    int rc = lp_atomic_open(&a, path);
    if (rc) return rc;
    if ((rc = lp_atomic_write(&a, data, n))) {
        lp_atomic_abort(&a);
        return rc;
    }
    return lp_atomic_commit(&a);
}
