/* report.c — the dashboard as static files (loupe report --html): every page
 * the server would answer, written atomically under OUT with the same
 * relative links, so OUT/index.html opens in a browser from disk. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "web/web_int.h"

#define MARKER ".loupe-report"

static int write_page(const lp_web *w, const char *out, const char *site, int *n) {
    char *body = NULL;
    size_t len = 0;
    const char *ct;
    int rc = lp_web_render(w, site, &body, &len, &ct);
    if (rc) return rc;
    char *p = lp_path_join(out, site);
    if (!p) {
        free(body);
        return LP_ERR_NOMEM;
    }
    char *sl = strrchr(p, '/');
    if (sl) {
        *sl = 0;
        rc = lp_mkdirs(p);
        *sl = '/';
    }
    if (!rc) rc = lp_write_file_atomic(p, body, len);
    free(p);
    free(body);
    if (!rc) (*n)++;
    return rc;
}

int lp_web_report(const lp_web *w, const char *out, int *n_files) {
    *n_files = 0;
    struct stat st;
    if (stat(out, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return lp_fail(LP_ERR_IO, "%s: exists and is not a directory", out);
        char *mk = lp_path_join(out, MARKER);
        int has = mk && lp_file_exists(mk);
        free(mk);
        if (!has) {
            DIR *d = opendir(out);
            if (!d) return lp_fail(LP_ERR_IO, "%s: cannot read (%s)", out, strerror(errno));
            struct dirent *e;
            int nonempty = 0;
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) nonempty = 1;
            closedir(d);
            if (nonempty) return lp_fail(LP_ERR_IO, "%s: not empty and not a previous loupe report; refusing to write there", out);
        }
    }
    int rc = lp_mkdirs(out);
    if (rc) return rc;
    char *mk = lp_path_join(out, MARKER);
    rc = mk ? lp_write_file_atomic(mk, "loupe report\n", 13) : LP_ERR_NOMEM;
    free(mk);
    if (!rc) rc = write_page(w, out, "index.html", n_files);
    if (!rc) rc = write_page(w, out, "assets/app.css", n_files);
    if (!rc) rc = write_page(w, out, "assets/app.js", n_files);
    for (int r = 0; r < w->n && !rc; r++) {
        char site[160];
        snprintf(site, sizeof site, "sae/%s/index.html", w->runs[r].name);
        rc = write_page(w, out, site, n_files);
        for (int f = 0; f < w->runs[r].f.F && !rc; f++) {
            snprintf(site, sizeof site, "sae/%s/f/%d.html", w->runs[r].name, f);
            rc = write_page(w, out, site, n_files);
        }
    }
    return rc;
}
