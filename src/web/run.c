/* run.c — loading a run directory for the dashboard (loupe/web.h): every
 * feature run under RUN/features, and the optional stability.csv,
 * metrics.jsonl and RUN/flow/edges.csv. Optional files that are malformed
 * are errors (naming the file), never silently half-read. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

int web_find_run(const lp_web *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->runs[i].name, name)) return i;
    return -1;
}

int lp_web_runs(const lp_web *w) { return w->n; }
const char *lp_web_run_name(const lp_web *w, int i) { return i >= 0 && i < w->n ? w->runs[i].name : NULL; }
int lp_web_run_features(const lp_web *w, int i) { return i >= 0 && i < w->n ? w->runs[i].f.F : 0; }

void lp_web_free(lp_web *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        lp_featrun_free(&w->runs[i]);
        if (w->stab) free(w->stab[i]);
        if (w->metrics) free(w->metrics[i]);
    }
    free(w->runs);
    free(w->stab);
    free(w->metrics);
    free(w->order);
    free(w->edges);
    free(w->dir);
    free(w);
}

/* Split a CSV line in place on commas (no quoting: the files are numeric
 * plus plain names). Returns the field count. */
static int split_csv(char *line, char **f, int max) {
    int n = 0;
    char *p = line;
    while (n < max) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    for (int i = 0; i < n; i++) { /* trim */
        while (*f[i] == ' ') f[i]++;
        size_t l = strlen(f[i]);
        while (l > 0 && (f[i][l - 1] == ' ' || f[i][l - 1] == '\r')) f[i][--l] = 0;
    }
    return n;
}

static int col_index(char **h, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(h[i], name)) return i;
    return -1;
}

static int parse_num(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return *s && !*end;
}

/* stability.csv: feature,stability[,...] */
static int load_stability(const char *path, int F, float **out) {
    char *txt = NULL;
    int rc = lp_read_file(path, &txt, NULL);
    if (rc) return rc;
    float *s = lp_malloc((size_t)F * sizeof *s);
    if (!s) {
        free(txt);
        return LP_ERR_NOMEM;
    }
    for (int i = 0; i < F; i++) s[i] = NAN;
    char *save = NULL, *line = strtok_r(txt, "\n", &save);
    char *h[32];
    int nh = line ? split_csv(line, h, 32) : 0;
    int cf = col_index(h, nh, "feature"), cs = col_index(h, nh, "stability");
    if (cf < 0 || cs < 0) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: header needs columns 'feature' and 'stability'", path);
        goto out;
    }
    int ln = 1;
    while ((line = strtok_r(NULL, "\n", &save))) {
        ln++;
        char *c[32];
        int n = split_csv(line, c, 32);
        if (n == 1 && !*c[0]) continue;
        double fv, sv;
        if (n <= cf || n <= cs || !parse_num(c[cf], &fv) || !parse_num(c[cs], &sv) || fv < 0 || fv >= F ||
            fv != (int)fv || !isfinite(sv)) {
            rc = lp_fail(LP_ERR_FORMAT, "%s:%d: expected a feature id below %d and a finite stability", path, ln, F);
            goto out;
        }
        s[(int)fv] = (float)sv;
    }
out:
    free(txt);
    if (rc) free(s);
    else *out = s;
    return rc;
}

/* flow/edges.csv: src_sae,src_feature,dst_sae,dst_feature,score[,kind] */
static int load_edges(lp_web *w, const char *path) {
    char *txt = NULL;
    int rc = lp_read_file(path, &txt, NULL);
    if (rc) return rc;
    char *save = NULL, *line = strtok_r(txt, "\n", &save);
    char *h[32];
    int nh = line ? split_csv(line, h, 32) : 0;
    int c_ss = col_index(h, nh, "src_sae"), c_sf = col_index(h, nh, "src_feature"),
        c_ds = col_index(h, nh, "dst_sae"), c_df = col_index(h, nh, "dst_feature"), c_sc = col_index(h, nh, "score"),
        c_k = col_index(h, nh, "kind");
    if (c_ss < 0 || c_sf < 0 || c_ds < 0 || c_df < 0 || c_sc < 0) {
        free(txt);
        return lp_fail(LP_ERR_FORMAT, "%s: header needs src_sae,src_feature,dst_sae,dst_feature,score", path);
    }
    int cap = 0, ln = 1;
    while ((line = strtok_r(NULL, "\n", &save))) {
        ln++;
        char *c[32];
        int n = split_csv(line, c, 32);
        if (n == 1 && !*c[0]) continue;
        double sf, df, sc;
        int need = c_ss > c_sf ? c_ss : c_sf;
        if (c_ds > need) need = c_ds;
        if (c_df > need) need = c_df;
        if (c_sc > need) need = c_sc;
        if (n <= need || !parse_num(c[c_sf], &sf) || !parse_num(c[c_df], &df) || !parse_num(c[c_sc], &sc)) {
            rc = lp_fail(LP_ERR_FORMAT, "%s:%d: malformed edge", path, ln);
            break;
        }
        int sr = web_find_run(w, c[c_ss]), dr = web_find_run(w, c[c_ds]);
        if (sr < 0 || dr < 0) continue; /* an SAE this run does not hold */
        if (sf < 0 || sf >= w->runs[sr].f.F || df < 0 || df >= w->runs[dr].f.F || sf != (int)sf || df != (int)df) {
            rc = lp_fail(LP_ERR_FORMAT, "%s:%d: feature id out of range", path, ln);
            break;
        }
        if (w->n_edges == cap) {
            cap = cap ? cap * 2 : 256;
            lp_web_edge *e = realloc(w->edges, (size_t)cap * sizeof *e);
            if (!e) {
                rc = lp_fail(LP_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            w->edges = e;
        }
        lp_web_edge *e = &w->edges[w->n_edges++];
        *e = (lp_web_edge){sr, (int)sf, dr, (int)df, isfinite(sc) ? (float)sc : 0, ""};
        if (c_k >= 0 && c_k < n) {
            size_t j = 0;
            for (const char *p = c[c_k]; *p && j + 1 < sizeof e->kind; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_')
                    e->kind[j++] = *p;
            e->kind[j] = 0;
        }
    }
    free(txt);
    return rc;
}

static const lp_web *g_sort_web; /* qsort context (single-threaded open only) */

static int order_cmp(const void *a, const void *b) {
    const lp_featrun *x = &g_sort_web->runs[*(const int *)a], *y = &g_sort_web->runs[*(const int *)b];
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int lp_web_open(lp_web **out, const char *run_dir) {
    *out = NULL;
    lp_web *w = lp_calloc(1, sizeof *w);
    if (!w) return LP_ERR_NOMEM;
    w->dir = lp_strdup(run_dir);
    char *fdir = lp_path_join(run_dir, "features");
    int rc = (!w->dir || !fdir) ? LP_ERR_NOMEM : LP_OK;
    char **names = NULL;
    int nn = 0, cap = 0;
    DIR *dp = NULL;
    if (rc) goto done;
    if (!(dp = opendir(fdir))) {
        rc = lp_fail(LP_ERR_IO, "%s: no feature runs here (run loupe features --out %s first)", fdir, run_dir);
        goto done;
    }
    struct dirent *e;
    while ((e = readdir(dp))) {
        if (!lp_featrun_name_ok(e->d_name)) continue;
        char *sub = lp_path_join(fdir, e->d_name), *meta = sub ? lp_path_join(sub, "meta.json") : NULL;
        int ok = meta && lp_file_exists(meta);
        free(sub);
        free(meta);
        if (!ok) continue;
        if (nn == cap) {
            cap = cap ? cap * 2 : 8;
            char **p = realloc(names, (size_t)cap * sizeof *p);
            if (!p) {
                rc = LP_ERR_NOMEM;
                goto done;
            }
            names = p;
        }
        if (!(names[nn] = lp_strdup(e->d_name))) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        nn++;
    }
    if (nn == 0) {
        rc = lp_fail(LP_ERR_IO, "%s: no feature runs here (run loupe features --out %s first)", fdir, run_dir);
        goto done;
    }
    qsort(names, (size_t)nn, sizeof *names, name_cmp);
    w->runs = lp_calloc((size_t)nn, sizeof *w->runs);
    w->stab = lp_calloc((size_t)nn, sizeof *w->stab);
    w->metrics = lp_calloc((size_t)nn, sizeof *w->metrics);
    w->order = lp_malloc((size_t)nn * sizeof *w->order);
    if (!w->runs || !w->stab || !w->metrics || !w->order) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < nn; i++) {
        if ((rc = lp_featrun_load(&w->runs[i], run_dir, names[i]))) goto done;
        w->n = i + 1;
        w->order[i] = i;
        char *sp = lp_path_join(w->runs[i].dir, "stability.csv");
        char *mp = lp_path_join(w->runs[i].dir, "metrics.jsonl");
        if (sp && lp_file_exists(sp)) rc = load_stability(sp, w->runs[i].f.F, &w->stab[i]);
        if (!rc && mp && lp_file_exists(mp)) rc = lp_read_file(mp, &w->metrics[i], NULL);
        free(sp);
        free(mp);
        if (rc) goto done;
    }
    g_sort_web = w;
    qsort(w->order, (size_t)w->n, sizeof *w->order, order_cmp);
    char *ep = lp_path_join(run_dir, "flow/edges.csv");
    if (ep && lp_file_exists(ep)) rc = load_edges(w, ep);
    free(ep);
done:
    if (dp) closedir(dp);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    free(fdir);
    if (rc) lp_web_free(w);
    else *out = w;
    return rc;
}
