/* pages.c — the dashboard's HTML pages (index, one per SAE, one per
 * feature), the router from site paths to pages, and the URL check that
 * refuses anything that is not a plain site path. Pages are rendered from
 * the loaded run on every request; no file is opened by URL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

static const char *tag_name(const lp_features *f, int t) {
    return t == LP_TAG_DEAD ? "dead" : t == LP_TAG_MIXED ? "mixed" : (t >= 0 && t < f->S ? f->seg_names[t] : "?");
}

static void tag_badge(hbuf *b, const lp_features *f, int t) {
    if (t >= 0) hb_printf(b, "<span class=\"tag s%d\">", t % 3);
    else hb_printf(b, "<span class=\"tag %s\">", t == LP_TAG_MIXED ? "mixed" : "dead");
    hb_esc(b, tag_name(f, t));
    hb_put(b, "</span>");
}

static void head(hbuf *b, const char *prefix, const char *title) {
    hb_put(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><title>");
    hb_esc(b, title);
    hb_printf(b, "</title><link rel=\"stylesheet\" href=\"%sassets/app.css\"><script src=\"%sassets/app.js\" defer>"
                 "</script></head>\n<body><header><b>loupe</b><a href=\"%sindex.html\">index</a></header><main>\n",
              prefix, prefix, prefix);
}

static void foot(hbuf *b) { hb_put(b, "\n</main></body></html>\n"); }

static double mean_auroc(const lp_featrun *r, int tag, int *n) {
    double s = 0;
    int c = 0;
    for (int i = 0; i < r->f.F; i++) {
        if (r->f.tag[i] == LP_TAG_DEAD || (tag != 999 && r->f.tag[i] != tag) || !isfinite(r->ex.auroc[i])) continue;
        s += r->ex.auroc[i];
        c++;
    }
    *n = c;
    return c ? s / c : NAN;
}

static void cell_num(hbuf *b, double v, const char *fmt) {
    hb_put(b, "<td class=\"n\" data-v=\"");
    hb_num(b, v);
    hb_put(b, "\">");
    if (isfinite(v)) hb_printf(b, fmt, v);
    else hb_put(b, "&ndash;");
    hb_put(b, "</td>");
}

/* ---- index ---------------------------------------------------------------- */
void page_index(const lp_web *w, hbuf *b) {
    head(b, "", "loupe dashboard");
    hb_put(b, "<h1>Feature dashboard</h1><p class=\"mute\">run ");
    hb_esc(b, w->dir);
    hb_printf(b, " &middot; %d SAE%s</p>\n", w->n, w->n == 1 ? "" : "s");
    hb_put(b, "<h2>SAEs</h2><table class=\"sortable saes\"><thead><tr><th data-sort=\"str\">SAE</th>"
              "<th data-sort=\"str\">hook</th><th data-sort=\"num\">layer</th><th data-sort=\"str\">arch</th>"
              "<th data-sort=\"num\">latents</th><th data-sort=\"num\">k</th><th data-sort=\"num\">rows</th>"
              "<th data-sort=\"num\">alive</th><th data-sort=\"num\">AUROC</th><th data-sort=\"str\">explainer</th>"
              "</tr></thead><tbody>\n");
    for (int oi = 0; oi < w->n; oi++) {
        const lp_featrun *r = &w->runs[w->order[oi]];
        int alive = 0, na;
        for (int i = 0; i < r->f.F; i++) alive += r->f.tag[i] != LP_TAG_DEAD;
        hb_put(b, "<tr><td><a href=\"sae/");
        hb_esc(b, r->name);
        hb_put(b, "/index.html\">");
        hb_esc(b, r->name);
        hb_put(b, "</a></td><td>");
        hb_esc(b, r->hook);
        hb_put(b, "</td>");
        cell_num(b, r->layer, "%.0f");
        hb_put(b, "<td>");
        hb_esc(b, r->arch);
        hb_put(b, "</td>");
        cell_num(b, r->f.F, "%.0f");
        cell_num(b, r->k, "%.0f");
        cell_num(b, (double)r->f.rows, "%.0f");
        cell_num(b, alive, "%.0f");
        cell_num(b, mean_auroc(r, 999, &na), "%.3f");
        hb_put(b, "<td>");
        hb_esc(b, r->ex.explainer);
        hb_put(b, "</td></tr>\n");
    }
    hb_put(b, "</tbody></table>\n");

    /* segment tags per layer: union of the segment names */
    const char *names[300];
    int nn = 0;
    for (int i = 0; i < w->n; i++)
        for (int s = 0; s < w->runs[i].f.S; s++) {
            int seen = 0;
            for (int j = 0; j < nn; j++) seen |= !strcmp(names[j], w->runs[i].f.seg_names[s]);
            if (!seen && nn < 256) names[nn++] = w->runs[i].f.seg_names[s];
        }
    hb_put(b, "<h2>Segment tags per layer</h2><p class=\"mute\">A feature is tagged with a segment when at least "
              "80% of its top-20 activations fall in it, otherwise mixed (arXiv 2606.10029).</p>"
              "<table class=\"sortable tags\"><thead><tr><th data-sort=\"str\">SAE</th>"
              "<th data-sort=\"num\">layer</th>");
    for (int j = 0; j < nn; j++) {
        hb_put(b, "<th data-sort=\"num\">");
        hb_esc(b, names[j]);
        hb_put(b, "</th>");
    }
    hb_put(b, "<th data-sort=\"num\">mixed</th><th data-sort=\"num\">dead</th>");
    for (int j = 0; j < nn; j++) {
        hb_put(b, "<th data-sort=\"num\">AUROC ");
        hb_esc(b, names[j]);
        hb_put(b, "</th>");
    }
    hb_put(b, "<th data-sort=\"num\">AUROC mixed</th></tr></thead><tbody>\n");
    for (int oi = 0; oi < w->n; oi++) {
        const lp_featrun *r = &w->runs[w->order[oi]];
        hb_put(b, "<tr><td>");
        hb_esc(b, r->name);
        hb_put(b, "</td>");
        cell_num(b, r->layer, "%.0f");
        int cnt[260] = {0}, mixed = 0, dead = 0;
        for (int i = 0; i < r->f.F; i++) {
            int t = r->f.tag[i];
            if (t == LP_TAG_MIXED) mixed++;
            else if (t == LP_TAG_DEAD) dead++;
            else
                for (int j = 0; j < nn; j++)
                    if (!strcmp(names[j], r->f.seg_names[t])) cnt[j]++;
        }
        for (int j = 0; j < nn; j++) cell_num(b, cnt[j], "%.0f");
        cell_num(b, mixed, "%.0f");
        cell_num(b, dead, "%.0f");
        for (int j = 0; j < nn; j++) {
            int t = -100, na;
            for (int s = 0; s < r->f.S; s++)
                if (!strcmp(names[j], r->f.seg_names[s])) t = s;
            cell_num(b, t == -100 ? NAN : mean_auroc(r, t, &na), "%.3f");
        }
        int na;
        cell_num(b, mean_auroc(r, LP_TAG_MIXED, &na), "%.3f");
        hb_put(b, "</tr>\n");
    }
    hb_put(b, "</tbody></table><p class=\"mute\">Paper (CosyVoice3, layer 20, LLM explainer): text-modal 0.921, "
              "audio-modal 0.653, mixed 0.558.</p>\n");
    if (w->n_edges > 0) {
        hb_printf(b, "<h2>Feature flow</h2><p class=\"mute\">%d edges; the 150 strongest drawn (click a node).</p>",
                  w->n_edges);
        svg_flow(b, w, "");
    }
    foot(b);
}

/* ---- one SAE ---------------------------------------------------------------- */
static void curves(hbuf *b, const char *jsonl) {
    static const char *keys[4] = {"loss", "fvu", "l0", "dead_fraction"};
    int cap = 0, n = 0;
    double *x = NULL, *y[4] = {0};
    const char *p = jsonl;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        if (len < sizeof line) {
            memcpy(line, p, len);
            line[len] = 0;
            const char *st = strstr(line, "\"step\":");
            if (st) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 256;
                    double *nx = realloc(x, (size_t)cap * sizeof *x);
                    if (!nx) break;
                    x = nx;
                    for (int k = 0; k < 4; k++) {
                        double *ny = realloc(y[k], (size_t)cap * sizeof *ny);
                        if (!ny) goto out;
                        y[k] = ny;
                    }
                }
                x[n] = strtod(st + 7, NULL);
                for (int k = 0; k < 4; k++) {
                    char pat[40];
                    snprintf(pat, sizeof pat, "\"%s\":", keys[k]);
                    const char *q = strstr(line, pat);
                    y[k][n] = q ? strtod(q + strlen(pat), NULL) : NAN;
                }
                n++;
            }
        }
        if (!nl) break;
        p = nl + 1;
    }
    if (n > 1) {
        hb_put(b, "<h2>Training curves</h2><div class=\"cols curves\">");
        for (int k = 0; k < 4; k++) {
            hb_put(b, "<div>");
            svg_line(b, "curve", keys[k], x, y[k], n);
            hb_put(b, "</div>");
        }
        hb_put(b, "</div>\n");
    }
out:
    free(x);
    for (int k = 0; k < 4; k++) free(y[k]);
}

void page_sae(const lp_web *w, int run, hbuf *b) {
    const lp_featrun *r = &w->runs[run];
    const lp_features *f = &r->f;
    const float *stab = w->stab[run];
    char title[160];
    snprintf(title, sizeof title, "%s — loupe", r->name);
    head(b, "../../", title);
    hb_put(b, "<h1>");
    hb_esc(b, r->name);
    hb_put(b, "</h1><p class=\"mute\">");
    hb_esc(b, r->hook);
    hb_put(b, " &middot; ");
    hb_esc(b, r->arch);
    hb_printf(b, " &middot; %d latents &middot; k %d &middot; %lld rows &middot; SAE ", f->F, r->k, (long long)f->rows);
    hb_esc(b, r->sae_path);
    hb_put(b, " &middot; store ");
    hb_esc(b, r->store_path);
    hb_put(b, " &middot; explainer ");
    hb_esc(b, r->ex.explainer);
    hb_put(b, "</p>\n");
    if (w->metrics[run]) curves(b, w->metrics[run]);
    hb_put(b, "<h2>Distributions</h2><div class=\"cols\"><div>");
    double dh[14] = {0};
    int dead = 0;
    for (int i = 0; i < f->F; i++) {
        if (f->fires[i] == 0) {
            dead++;
            continue;
        }
        double l = log10((double)f->fires[i] / (double)f->rows);
        int k = (int)floor((l + 7) * 2);
        if (k < 0) k = 0;
        if (k > 13) k = 13;
        dh[k]++;
    }
    svg_bars(b, "density", dh, 14, -7, 0, "log10 density", 1);
    hb_printf(b, "<p class=\"mute\">%d dead latents not shown</p></div>", dead);
    if (stab) {
        double sh[20] = {0};
        int ns = 0;
        for (int i = 0; i < f->F; i++)
            if (isfinite(stab[i])) {
                int k = (int)(stab[i] * 20);
                if (k < 0) k = 0;
                if (k > 19) k = 19;
                sh[k]++;
                ns++;
            }
        hb_put(b, "<div>");
        svg_bars(b, "stability", sh, 20, 0, 1, "stability across seeds", 0);
        hb_printf(b, "<p class=\"mute\">%d features with a stability score</p></div>", ns);
    }
    hb_put(b, "</div>\n<h2>Features</h2><p><input id=\"search\" type=\"search\" placeholder=\"search by token or "
              "explanation\" autocomplete=\"off\"> <span class=\"mute\"><span id=\"shown\">");
    hb_printf(b, "%d</span> shown</span></p>\n", f->F);
    hb_put(b, "<table class=\"sortable features\"><thead><tr><th data-sort=\"num\">feature</th>"
              "<th data-sort=\"num\">density</th><th data-sort=\"num\" title=\"mean activation when active\">"
              "mean act</th><th data-sort=\"num\">max act</th><th data-sort=\"str\">segment tag</th>"
              "<th data-sort=\"num\">AUROC</th>");
    if (stab) hb_put(b, "<th data-sort=\"num\">stability</th>");
    hb_put(b, "<th data-sort=\"str\">explanation</th></tr></thead><tbody>\n");
    for (int i = 0; i < f->F; i++) {
        hb_put(b, "<tr data-search=\"");
        /* search text: characteristic tokens, the top tokens, the explanation (lower case) */
        hbuf s = {0};
        if (r->ex.tokens[i]) hb_put(&s, r->ex.tokens[i]);
        for (int e = 0; e < f->N && e < 5; e++) {
            int t = f->ctx_tok[((size_t)i * f->E + e) * f->W + f->left];
            if (f->ex_row[(size_t)i * f->E + e] >= 0 && t >= 0) {
                hb_put(&s, r->vocab[t]);
                hb_put(&s, "\n");
            }
        }
        if (r->ex.text[i]) hb_put(&s, r->ex.text[i]);
        for (size_t k = 0; k < s.len; k++)
            if (s.s[k] >= 'A' && s.s[k] <= 'Z') s.s[k] = (char)(s.s[k] - 'A' + 'a');
        if (s.s) hb_esc(b, s.s);
        free(s.s);
        hb_printf(b, "\"><td class=\"n\" data-v=\"%d\"><a href=\"f/%d.html\">%d</a></td>", i, i, i);
        cell_num(b, (double)f->fires[i] / (double)f->rows, "%.2e");
        cell_num(b, f->fires[i] ? f->sum_act[i] / (double)f->fires[i] : NAN, "%.3g");
        cell_num(b, f->fires[i] ? f->max_act[i] : NAN, "%.3g");
        hb_printf(b, "<td data-v=\"%s\">", tag_name(f, f->tag[i]));
        tag_badge(b, f, f->tag[i]);
        hb_put(b, "</td>");
        cell_num(b, r->ex.auroc[i], "%.3f");
        if (stab) cell_num(b, stab[i], "%.2f");
        hb_put(b, "<td>");
        hb_esc(b, r->ex.text[i] ? r->ex.text[i] : "");
        hb_put(b, "</td></tr>\n");
    }
    hb_put(b, "</tbody></table>\n");
    foot(b);
}

/* ---- one feature -------------------------------------------------------------- */
static void context_line(hbuf *b, const lp_featrun *r, int feat, int e, float scale) {
    const lp_features *f = &r->f;
    const size_t base = ((size_t)feat * f->E + e) * f->W;
    int sg = f->ctx_seg[base + f->left];
    hb_printf(b, "<div class=\"ctx\"><span class=\"v\">%.3g</span><span class=\"seg\">", f->ex_val[(size_t)feat * f->E + e]);
    hb_esc(b, sg < f->S ? f->seg_names[sg] : "");
    hb_put(b, "</span>");
    for (int w = 0; w < f->W; w++) {
        int t = f->ctx_tok[base + w];
        if (t < 0) continue;
        float a = f->ctx_act[base + w];
        hb_printf(b, "<span class=\"tok%s%s\"", w == f->left ? " centre" : "", a > 0 ? " on" : "");
        if (a > 0) {
            double al = scale > 0 ? a / scale : 1;
            if (al > 1) al = 1;
            hb_printf(b, " style=\"background:rgba(217,72,15,%.2f)\" title=\"%.4g\"", 0.12 + 0.78 * al, a);
        }
        if (f->ctx_seg[base + w] != sg) hb_put(b, " data-seg-change=\"1\"");
        hb_put(b, ">");
        hb_tok(b, r->vocab[t]);
        hb_put(b, "</span>");
    }
    hb_put(b, "</div>\n");
}

static void flow_links(hbuf *b, const lp_web *w, int run, int feat, int pred) {
    int shown = 0;
    for (int i = 0; i < w->n_edges; i++) {
        const lp_web_edge *e = &w->edges[i];
        int r = pred ? e->src_run : e->dst_run, f = pred ? e->src_f : e->dst_f;
        if ((pred ? e->dst_run : e->src_run) != run || (pred ? e->dst_f : e->src_f) != feat) continue;
        if (!shown++) hb_put(b, "<ul>");
        hb_put(b, "<li><a href=\"../../");
        hb_esc(b, w->runs[r].name);
        hb_printf(b, "/f/%d.html\">", f);
        hb_esc(b, w->runs[r].name);
        hb_printf(b, " #%d</a> <span class=\"mute\">%.3f ", f, e->score);
        hb_esc(b, e->kind);
        hb_put(b, "</span> ");
        if (w->runs[r].ex.text[f]) hb_esc(b, w->runs[r].ex.text[f]);
        hb_put(b, "</li>");
    }
    if (shown) hb_put(b, "</ul>");
    else hb_put(b, "<p class=\"mute\">none</p>");
}

void page_feature(const lp_web *w, int run, int feat, hbuf *b) {
    const lp_featrun *r = &w->runs[run];
    const lp_features *f = &r->f;
    char title[160];
    snprintf(title, sizeof title, "%s #%d — loupe", r->name, feat);
    head(b, "../../../", title);
    hb_put(b, "<nav class=\"feat\"><a href=\"../index.html\">&larr; ");
    hb_esc(b, r->name);
    hb_put(b, "</a>");
    if (feat > 0) hb_printf(b, "<a href=\"%d.html\" rel=\"prev\">&lsaquo; #%d</a>", feat - 1, feat - 1);
    if (feat + 1 < f->F) hb_printf(b, "<a href=\"%d.html\" rel=\"next\">#%d &rsaquo;</a>", feat + 1, feat + 1);
    hb_put(b, "</nav><h1>");
    hb_esc(b, r->name);
    hb_printf(b, " &middot; feature %d</h1>\n<div class=\"stats\">", feat);
    const int64_t fires = f->fires[feat];
    hb_printf(b, "<div class=\"stat\">density<b>%.3e</b><span class=\"mute\">%lld of %lld rows</span></div>",
              (double)fires / (double)f->rows, (long long)fires, (long long)f->rows);
    hb_printf(b, "<div class=\"stat\">mean activation Z&#772;<b>%.4g</b></div>",
              fires ? f->sum_act[feat] / (double)fires : 0.0);
    hb_printf(b, "<div class=\"stat\">max activation<b>%.4g</b></div>", f->max_act[feat]);
    hb_put(b, "<div class=\"stat\">segment tag<b>");
    tag_badge(b, f, f->tag[feat]);
    hb_put(b, "</b><span class=\"mute\">");
    for (int s = 0; s < f->S; s++) {
        hb_esc(b, f->seg_names[s]);
        hb_printf(b, " %.0f%% of top &middot; density %.2e%s", 100.0 * f->seg_share[(size_t)feat * f->S + s],
                  f->seg_rows[s] ? (double)f->seg_fires[(size_t)feat * f->S + s] / (double)f->seg_rows[s] : 0.0,
                  s + 1 < f->S ? "<br>" : "");
    }
    hb_put(b, "</span></div>");
    hb_put(b, "<div class=\"stat\">detection AUROC<b class=\"auroc\">");
    if (isfinite(r->ex.auroc[feat])) hb_printf(b, "%.3f", r->ex.auroc[feat]);
    else hb_put(b, "&ndash;");
    hb_printf(b, "</b><span class=\"mute\">%d held-out positives, %d negatives</span></div>", r->ex.n_pos[feat],
              r->ex.n_neg[feat]);
    if (w->stab[run]) {
        hb_put(b, "<div class=\"stat\">stability<b>");
        if (isfinite(w->stab[run][feat])) hb_printf(b, "%.2f", w->stab[run][feat]);
        else hb_put(b, "&ndash;");
        hb_put(b, "</b></div>");
    }
    hb_put(b, "</div>\n<div class=\"expl\"><b>Explanation</b> <span class=\"mute\">(");
    hb_esc(b, r->ex.explainer);
    hb_put(b, ")</span><br>");
    hb_esc(b, r->ex.text[feat] ? r->ex.text[feat] : "dead feature: never active on the store");
    hb_put(b, "</div>\n<div class=\"cols\"><div><h2>Activation histogram</h2>");
    double *hc = malloc((size_t)f->H * sizeof *hc);
    if (hc) {
        for (int i = 0; i < f->H; i++) hc[i] = (double)f->hist[(size_t)feat * f->H + i];
        svg_bars(b, "hist", hc, f->H, 0, f->max_act[feat], "activation", 0);
        free(hc);
    }
    hb_put(b, "</div><div><h2>Logit lens</h2>");
    if (f->LK > 0) {
        hb_put(b, "<table class=\"lens\"><thead><tr><th colspan=\"2\">promotes</th><th colspan=\"2\">suppresses</th>"
                  "</tr></thead><tbody>");
        for (int i = 0; i < f->LK; i++) {
            size_t k = (size_t)feat * f->LK + i;
            hb_put(b, "<tr><td class=\"tokcell pos\">");
            hb_tok(b, r->vocab[f->lens_pos_id[k]]);
            hb_printf(b, "</td><td class=\"n\">%+.3f</td><td class=\"tokcell neg\">", f->lens_pos[k]);
            hb_tok(b, r->vocab[f->lens_neg_id[k]]);
            hb_printf(b, "</td><td class=\"n\">%+.3f</td></tr>", f->lens_neg[k]);
        }
        hb_put(b, "</tbody></table>");
    } else
        hb_put(b, "<p class=\"mute\">no model was given</p>");
    hb_put(b, "</div>");
    if (w->n_edges > 0) {
        hb_put(b, "<div class=\"flow\"><h2>Flow</h2><b>predecessors</b>");
        flow_links(b, w, run, feat, 1);
        hb_put(b, "<b>successors</b>");
        flow_links(b, w, run, feat, 0);
        hb_put(b, "</div>");
    }
    hb_put(b, "</div>\n<h2>Top activations</h2><div class=\"top\">\n");
    const float mx = f->max_act[feat];
    int any = 0;
    for (int e = 0; e < f->N; e++)
        if (f->ex_row[(size_t)feat * f->E + e] >= 0) {
            context_line(b, r, feat, e, mx);
            any = 1;
        }
    if (!any) hb_put(b, "<p class=\"mute\">none</p>");
    hb_put(b, "</div>\n");
    if (f->Q > 0 && any) {
        hb_put(b, "<h2>Quantile samples</h2><div class=\"quantiles\">\n");
        const int qper = f->Q / f->I;
        for (int iv = f->I - 1; iv >= 0; iv--) {
            int shown = 0;
            for (int q = 0; q < qper; q++) {
                int e = f->N + iv * qper + q;
                if (f->ex_row[(size_t)feat * f->E + e] < 0) continue;
                if (!shown++)
                    hb_printf(b, "<h3 class=\"mute\">activation in (%.3g, %.3g]</h3>", mx * iv / f->I,
                              mx * (iv + 1) / f->I);
                context_line(b, r, feat, e, mx);
            }
        }
        hb_put(b, "</div>\n");
    }
    foot(b);
}

/* ---- routing ---------------------------------------------------------------------- */
int lp_web_path_ok(const char *p) {
    if (!p || p[0] != '/' || strlen(p) > 512) return 0;
    if (strstr(p, "..") || strstr(p, "//")) return 0;
    for (const char *q = p; *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '.' ||
              *q == '_' || *q == '-' || *q == '/'))
            return 0;
    return 1;
}

/* "123.html" → 123 (no sign, no leading zeros) or -1 */
static int parse_feature_file(const char *s) {
    const char *dot = strchr(s, '.');
    if (!dot || strcmp(dot, ".html") != 0 || dot == s || dot - s > 9) return -1;
    if (s[0] == '0' && dot - s > 1) return -1;
    int v = 0;
    for (const char *p = s; p < dot; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

int lp_web_render(const lp_web *w, const char *path, char **body, size_t *len, const char **ctype) {
    *body = NULL;
    *len = 0;
    hbuf b = {0};
    *ctype = "text/html; charset=utf-8";
    if (!*path || !strcmp(path, "index.html")) {
        page_index(w, &b);
    } else if (!strncmp(path, "assets/", 7)) {
        const char *data;
        size_t n;
        if (!web_asset(path + 7, &data, &n, ctype)) return lp_fail(LP_ERR_ARG, "/%s: no such page", path);
        hb_putn(&b, data, n);
    } else if (!strncmp(path, "sae/", 4)) {
        char name[80];
        const char *p = path + 4, *sl = strchr(p, '/');
        if (!sl || (size_t)(sl - p) >= sizeof name) return lp_fail(LP_ERR_ARG, "/%s: no such page", path);
        memcpy(name, p, (size_t)(sl - p));
        name[sl - p] = 0;
        int run = web_find_run(w, name);
        if (run < 0) return lp_fail(LP_ERR_ARG, "/%s: no such SAE", path);
        const char *rest = sl + 1;
        if (!*rest || !strcmp(rest, "index.html")) page_sae(w, run, &b);
        else if (!strncmp(rest, "f/", 2)) {
            int id = parse_feature_file(rest + 2);
            if (id < 0 || id >= w->runs[run].f.F) return lp_fail(LP_ERR_ARG, "/%s: no such feature", path);
            page_feature(w, run, id, &b);
        } else
            return lp_fail(LP_ERR_ARG, "/%s: no such page", path);
    } else {
        return lp_fail(LP_ERR_ARG, "/%s: no such page", path);
    }
    if (b.oom) {
        free(b.s);
        return lp_fail(LP_ERR_NOMEM, "/%s: out of memory rendering the page", path);
    }
    *body = b.s;
    *len = b.len;
    return LP_OK;
}
