/* svg.c — the dashboard's charts as inline SVG: a bar histogram, a line
 * chart (training curves) and the layered flow graph. No script needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

void svg_bars(hbuf *b, const char *cls, const double *counts, int n, double x0, double x1, const char *xlabel,
              int logx_labels) {
    const double Wd = 420, Ht = 140, L = 36, R = 8, T = 8, Bm = 26;
    double mx = 0;
    for (int i = 0; i < n; i++)
        if (counts[i] > mx) mx = counts[i];
    hb_printf(b, "<svg class=\"%s\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">", cls, Wd,
              Ht, Wd, Ht);
    const double pw = (Wd - L - R) / (n > 0 ? n : 1), ph = Ht - T - Bm;
    for (int i = 0; i < n; i++) {
        double h = mx > 0 ? counts[i] / mx * ph : 0;
        double lo = x0 + (x1 - x0) * i / n, hi = x0 + (x1 - x0) * (i + 1) / n;
        hb_printf(b, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>", L + i * pw,
                  T + ph - h, pw > 1.5 ? pw - 1 : pw, h);
        if (logx_labels) hb_printf(b, "1e%.1f..1e%.1f: %.0f", lo, hi, counts[i]);
        else hb_printf(b, "%.4g..%.4g: %.0f", lo, hi, counts[i]);
        hb_put(b, "</title></rect>");
    }
    hb_printf(b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#999\"/>", L, T + ph, Wd - R, T + ph);
    hb_printf(b, "<text x=\"%.0f\" y=\"%.0f\">%s%.3g</text>", L, Ht - 12, logx_labels ? "1e" : "", x0);
    hb_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s%.3g</text>", Wd - R, Ht - 12,
              logx_labels ? "1e" : "", x1);
    hb_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">", (L + Wd - R) / 2, Ht - 2);
    hb_esc(b, xlabel);
    hb_put(b, "</text>");
    hb_printf(b, "<text x=\"2\" y=\"%.0f\">%.0f</text><text x=\"2\" y=\"%.0f\">0</text></svg>", T + 8, mx, T + ph);
}

void svg_line(hbuf *b, const char *cls, const char *title, const double *x, const double *y, int n) {
    const double Wd = 300, Ht = 150, L = 44, R = 8, T = 18, Bm = 20;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        x0 = fmin(x0, x[i]);
        x1 = fmax(x1, x[i]);
        y0 = fmin(y0, y[i]);
        y1 = fmax(y1, y[i]);
    }
    hb_printf(b, "<svg class=\"%s\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">", cls, Wd,
              Ht, Wd, Ht);
    hb_printf(b, "<text x=\"%.0f\" y=\"12\">", L);
    hb_esc(b, title);
    hb_put(b, "</text>");
    if (x1 > x0) {
        if (!(y1 > y0)) {
            y0 -= 0.5;
            y1 += 0.5;
        }
        hb_put(b, "<polyline class=\"line\" points=\"");
        for (int i = 0; i < n; i++) {
            if (!isfinite(x[i]) || !isfinite(y[i])) continue;
            hb_printf(b, "%.1f,%.1f ", L + (x[i] - x0) / (x1 - x0) * (Wd - L - R),
                      T + (1 - (y[i] - y0) / (y1 - y0)) * (Ht - T - Bm));
        }
        hb_put(b, "\"/>");
        hb_printf(b, "<text x=\"2\" y=\"%.0f\">%.3g</text><text x=\"2\" y=\"%.0f\">%.3g</text>", T + 6, y1, Ht - Bm,
                  y0);
        hb_printf(b, "<text x=\"%.0f\" y=\"%.0f\">%.0f</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.0f "
                     "steps</text>",
                  L, Ht - 4, x0, Wd - R, Ht - 4, x1);
    }
    hb_put(b, "</svg>");
}

typedef struct {
    int run, f;
} node;

static int edge_score_desc(const void *a, const void *b) {
    const lp_web_edge *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score;
}

static int node_cmp(const void *a, const void *b) {
    const node *x = a, *y = b;
    if (x->run != y->run) return x->run - y->run;
    return x->f - y->f;
}

/* Layered drawing: one column per feature run (display order), nodes of the
 * strongest edges (at most 150) spread down each column. */
void svg_flow(hbuf *b, const lp_web *w, const char *prefix) {
    int ne = w->n_edges < 150 ? w->n_edges : 150;
    if (ne == 0) return;
    lp_web_edge *e = malloc((size_t)w->n_edges * sizeof *e);
    node *nd = malloc((size_t)ne * 2 * sizeof *nd);
    int *col = malloc((size_t)w->n * sizeof *col);
    if (!e || !nd || !col) goto out;
    memcpy(e, w->edges, (size_t)w->n_edges * sizeof *e);
    qsort(e, (size_t)w->n_edges, sizeof *e, edge_score_desc);
    int nn = 0;
    for (int i = 0; i < ne; i++) {
        nd[nn++] = (node){e[i].src_run, e[i].src_f};
        nd[nn++] = (node){e[i].dst_run, e[i].dst_f};
    }
    qsort(nd, (size_t)nn, sizeof *nd, node_cmp);
    int u = 0;
    for (int i = 0; i < nn; i++)
        if (u == 0 || node_cmp(&nd[i], &nd[u - 1]) != 0) nd[u++] = nd[i];
    nn = u;
    for (int i = 0; i < w->n; i++) col[w->order[i]] = i;
    int maxc = 1;
    for (int r = 0; r < w->n; r++) {
        int c = 0;
        for (int i = 0; i < nn; i++) c += nd[i].run == r;
        if (c > maxc) maxc = c;
    }
    const double Wd = 160.0 * (w->n > 1 ? w->n : 2), Ht = 30 + 14.0 * maxc;
    hb_printf(b, "<svg class=\"flow\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">", Wd, Ht,
              Wd, Ht);
#define NX(run) (40 + 160.0 * col[run])
    double *ny = malloc((size_t)nn * sizeof *ny);
    if (!ny) {
        hb_put(b, "</svg>");
        goto out;
    }
    for (int r = 0; r < w->n; r++) {
        int c = 0, tot = 0;
        for (int i = 0; i < nn; i++) tot += nd[i].run == r;
        for (int i = 0; i < nn; i++)
            if (nd[i].run == r) ny[i] = 24 + (Ht - 34) * (tot > 1 ? (double)c++ / (tot - 1) : 0.5);
        hb_printf(b, "<text x=\"%.0f\" y=\"12\">", NX(r) - 20);
        hb_esc(b, w->runs[r].name);
        hb_put(b, "</text>");
    }
    for (int i = 0; i < ne; i++) {
        node s = {e[i].src_run, e[i].src_f}, d = {e[i].dst_run, e[i].dst_f};
        node *ps = bsearch(&s, nd, (size_t)nn, sizeof *nd, node_cmp), *pd = bsearch(&d, nd, (size_t)nn, sizeof *nd, node_cmp);
        if (!ps || !pd) continue;
        hb_printf(b, "<line class=\"edge\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"><title>%.3f %s</title></line>",
                  NX(s.run), ny[ps - nd], NX(d.run), ny[pd - nd], e[i].score, e[i].kind);
    }
    for (int i = 0; i < nn; i++) {
        hb_printf(b, "<a href=\"%ssae/", prefix);
        hb_esc(b, w->runs[nd[i].run].name);
        hb_printf(b, "/f/%d.html\"><circle class=\"node\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\"><title>", nd[i].f,
                  NX(nd[i].run), ny[i]);
        hb_esc(b, w->runs[nd[i].run].name);
        hb_printf(b, " #%d</title></circle></a>", nd[i].f);
    }
#undef NX
    free(ny);
    hb_put(b, "</svg>");
out:
    free(e);
    free(nd);
    free(col);
}
