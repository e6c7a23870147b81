/* web_int.h — (internal) pieces shared by the dashboard's files: the loaded
 * run (struct lp_web), an HTML string builder with escaping, SVG charts,
 * the compiled-in assets and the page renderers. */
#ifndef LOUPE_WEB_INT_H
#define LOUPE_WEB_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "loupe/interp.h"
#include "loupe/web.h"

/* ---- the loaded run ---- */
typedef struct {
    int src_run, src_f, dst_run, dst_f;
    float score;
    char kind[16];
} lp_web_edge;

struct lp_web {
    char *dir;
    int n;              /* feature runs */
    lp_featrun *runs;   /* [n] */
    int *order;         /* display order: by layer, then name */
    float **stab;       /* [n] per-feature stability, or NULL */
    char **metrics;     /* [n] metrics.jsonl text, or NULL */
    lp_web_edge *edges; /* flow edges */
    int n_edges;
};

/* index of the run called name, or -1 */
int web_find_run(const lp_web *w, const char *name);

/* ---- HTML builder ---- */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} hbuf;

void hb_putn(hbuf *b, const char *s, size_t n);
void hb_put(hbuf *b, const char *s);
void hb_printf(hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* text with & < > " ' escaped */
void hb_esc(hbuf *b, const char *s);
/* a token for display: escaped, newline as ↵, tab as →, empty as ∅ */
void hb_tok(hbuf *b, const char *s);
/* a number for a data-v attribute (NaN as -1e300 so it sorts last) */
void hb_num(hbuf *b, double v);

/* ---- SVG ---- */
/* bar chart of counts over [x0, x1] */
void svg_bars(hbuf *b, const char *cls, const double *counts, int n, double x0, double x1, const char *xlabel,
              int logx_labels);
/* line chart of y against x */
void svg_line(hbuf *b, const char *cls, const char *title, const double *x, const double *y, int n);
/* layered flow graph of the edges */
void svg_flow(hbuf *b, const lp_web *w, const char *prefix);

/* ---- assets ---- */
int web_asset(const char *name, const char **data, size_t *len, const char **ctype);

/* ---- pages ---- */
void page_index(const lp_web *w, hbuf *b);
void page_sae(const lp_web *w, int run, hbuf *b);
void page_feature(const lp_web *w, int run, int feat, hbuf *b);

#endif
