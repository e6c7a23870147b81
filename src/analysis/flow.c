/* flow.c — cross-layer feature flow (arXiv 2502.03032): blocked max-cosine
 * matching of decoder rows, chance-level thresholds, the class of every
 * residual feature, flow graphs (JSON, DOT) and the co-activation
 * validation counts. Formulas in loupe/flow.h. */
#include "loupe/flow.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/model.h"

static const char *const k_class[LP_FLOW_NCLASS] = {"translated", "processed_mlp", "processed_attn", "newborn",
                                                     "unexplained"};
static const char *const k_src[LP_FLOW_NSRC] = {"res", "mlp", "att"};
static const char *const k_group[LP_FLOW_NGROUPS] = {"nowhere", "R", "M", "R+M", "A", "R+A", "M+A", "R+M+A"};

const char *lp_flow_class_name(int c) { return c >= 0 && c < LP_FLOW_NCLASS ? k_class[c] : "?"; }
const char *lp_flow_src_name(int s) { return s >= 0 && s < LP_FLOW_NSRC ? k_src[s] : "?"; }
const char *lp_flow_group_name(int g) { return g >= 0 && g < LP_FLOW_NGROUPS ? k_group[g] : "?"; }

int lp_flow_src_hook_kind(int src) {
    return src == LP_FLOW_MLP ? LP_HOOK_MLP_OUT : src == LP_FLOW_ATT ? LP_HOOK_ATTN_OUT : LP_HOOK_RESID_POST;
}

/* rows of X [n,d] scaled to unit norm into Y (zero rows stay zero) */
static void normalise_rows(const float *X, int64_t n, int d, float *Y) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)X[i * d + j] * X[i * d + j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int j = 0; j < d; j++) Y[i * d + j] = X[i * d + j] * inv;
    }
}

enum { BLOCK = 256 };

int lp_flow_max_cos(const float *A, int Fa, const float *B, int Fb, int d, float *best_cos, int32_t *best_idx) {
    if (Fa <= 0 || Fb <= 0 || d <= 0) return lp_fail(LP_ERR_ARG, "flow: empty dictionary (%d x %d, d=%d)", Fa, Fb, d);
    float *An = lp_malloc((size_t)Fa * d * sizeof(float));
    float *Bn = lp_malloc((size_t)Fb * d * sizeof(float));
    float *C = lp_malloc((size_t)BLOCK * Fb * sizeof(float));
    if (!An || !Bn || !C) {
        free(An), free(Bn), free(C);
        return LP_ERR_NOMEM;
    }
    normalise_rows(A, Fa, d, An);
    normalise_rows(B, Fb, d, Bn);
    for (int a0 = 0; a0 < Fa; a0 += BLOCK) {
        int na = Fa - a0 < BLOCK ? Fa - a0 : BLOCK;
        /* C[na, Fb] = An[a0:a0+na] · Bnᵀ */
        lp_sgemm(0, 1, na, Fb, d, 1.0f, An + (int64_t)a0 * d, d, Bn, d, 0.0f, C, Fb);
        for (int i = 0; i < na; i++) {
            const float *c = C + (int64_t)i * Fb;
            int bi = 0;
            for (int k = 1; k < Fb; k++)
                if (c[k] > c[bi]) bi = k;
            best_cos[a0 + i] = c[bi];
            best_idx[a0 + i] = bi;
        }
    }
    free(An), free(Bn), free(C);
    return LP_OK;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int lp_flow_null_threshold(const float *B, int Fb, int d, int n, double q, uint64_t seed, float *thr) {
    if (n <= 0 || q <= 0 || q >= 1) return lp_fail(LP_ERR_ARG, "flow: null threshold needs n > 0 and 0 < q < 1");
    float *U = lp_malloc((size_t)n * d * sizeof(float));
    float *s = lp_malloc((size_t)n * sizeof(float));
    int32_t *idx = lp_malloc((size_t)n * sizeof(int32_t));
    int rc = (!U || !s || !idx) ? LP_ERR_NOMEM : LP_OK;
    if (!rc) {
        lp_rng r;
        lp_rng_seed(&r, seed ^ 0x6e756c6c666c6f77ull); /* "nullflow": a stream no SAE initialiser uses */
        for (int64_t i = 0; i < (int64_t)n * d; i++) U[i] = lp_rng_normal(&r);
        rc = lp_flow_max_cos(U, n, B, Fb, d, s, idx);
    }
    if (!rc) {
        qsort(s, (size_t)n, sizeof(float), cmp_float);
        double pos = q * (n - 1);
        int lo = (int)floor(pos);
        int hi = lo + 1 < n ? lo + 1 : lo;
        *thr = (float)(s[lo] + (pos - lo) * (s[hi] - s[lo]));
    }
    free(U), free(s), free(idx);
    return rc;
}

void lp_flow_classify(lp_flow_layer *ly) {
    memset(ly->count, 0, sizeof ly->count);
    for (int f = 0; f < ly->F; f++) {
        int hi[LP_FLOW_NSRC];
        float mg[LP_FLOW_NSRC];
        for (int p = 0; p < LP_FLOW_NSRC; p++) {
            hi[p] = ly->has[p] && ly->s[p][f] >= ly->thr[p];
            mg[p] = ly->s[p][f] - ly->thr[p];
        }
        int c, src = LP_FLOW_MLP;
        if (hi[LP_FLOW_MLP] && hi[LP_FLOW_ATT]) src = mg[LP_FLOW_MLP] >= mg[LP_FLOW_ATT] ? LP_FLOW_MLP : LP_FLOW_ATT;
        else if (hi[LP_FLOW_ATT]) src = LP_FLOW_ATT;
        int side = hi[LP_FLOW_MLP] || hi[LP_FLOW_ATT];
        if (hi[LP_FLOW_RES]) c = !side ? LP_FLOW_TRANSLATED : src == LP_FLOW_MLP ? LP_FLOW_PROC_MLP : LP_FLOW_PROC_ATT;
        else c = side ? LP_FLOW_NEWBORN : LP_FLOW_UNEXPLAINED;
        ly->cls[f] = (uint8_t)c;
        ly->src[f] = (uint8_t)(side ? src : LP_FLOW_RES);
        ly->count[c]++;
    }
}

void lp_flow_free(lp_flow *fl) {
    if (!fl) return;
    for (int L = 0; fl->layer && L < fl->n_layers; L++) {
        lp_flow_layer *ly = &fl->layer[L];
        for (int p = 0; p < LP_FLOW_NSRC; p++) free(ly->s[p]), free(ly->top[p]);
        free(ly->cls);
        free(ly->src);
    }
    free(fl->layer);
    memset(fl, 0, sizeof *fl);
}

int lp_flow_compute(lp_flow *fl, int n_layers, lp_sae *const *res, lp_sae *const *mlp, lp_sae *const *att,
                    const lp_flow_opts *o) {
    memset(fl, 0, sizeof *fl);
    if (n_layers <= 0 || n_layers > LP_FLOW_MAX_LAYERS)
        return lp_fail(LP_ERR_ARG, "flow: %d layers (want 1..%d)", n_layers, LP_FLOW_MAX_LAYERS);
    int d = 0;
    for (int L = 0; L < n_layers; L++) {
        if (!res[L]) return lp_fail(LP_ERR_ARG, "flow: no residual SAE for layer %d (blocks.%d.hook_resid_post)", L, L);
        const lp_sae *all[3] = {res[L], mlp ? mlp[L] : NULL, att ? att[L] : NULL};
        for (int p = 0; p < 3; p++) {
            if (!all[p]) continue;
            if (!d) d = all[p]->cfg.d_in;
            if (all[p]->cfg.d_in != d)
                return lp_fail(LP_ERR_ARG, "flow: SAE of %s has d_in=%d, others %d", all[p]->cfg.hook, all[p]->cfg.d_in,
                               d);
        }
    }
    fl->n_layers = n_layers;
    fl->layer = lp_calloc((size_t)n_layers, sizeof *fl->layer);
    if (!fl->layer) return LP_ERR_NOMEM;
    int rc = LP_OK;
    for (int L = 0; L < n_layers && !rc; L++) {
        lp_flow_layer *ly = &fl->layer[L];
        const lp_sae *tgt = res[L];
        const int F = tgt->cfg.d_sae;
        ly->layer = L;
        ly->F = F;
        const lp_sae *srcs[LP_FLOW_NSRC] = {L > 0 ? res[L - 1] : NULL, mlp ? mlp[L] : NULL, att ? att[L] : NULL};
        for (int p = 0; p < LP_FLOW_NSRC; p++) {
            ly->s[p] = lp_calloc((size_t)F, sizeof(float));
            ly->top[p] = lp_malloc((size_t)F * sizeof(int32_t));
            if (!ly->s[p] || !ly->top[p]) return (lp_flow_free(fl), LP_ERR_NOMEM);
            for (int f = 0; f < F; f++) ly->top[p][f] = -1;
        }
        ly->cls = lp_calloc((size_t)F, 1);
        ly->src = lp_calloc((size_t)F, 1);
        if (!ly->cls || !ly->src) return (lp_flow_free(fl), LP_ERR_NOMEM);
        for (int p = 0; p < LP_FLOW_NSRC && !rc; p++) {
            const lp_sae *P = srcs[p];
            ly->thr[p] = 1.0f;
            if (!P) continue;
            ly->has[p] = 1;
            rc = lp_flow_max_cos(tgt->p[LP_SAE_W_DEC], F, P->p[LP_SAE_W_DEC], P->cfg.d_sae, d, ly->s[p], ly->top[p]);
            float t = o && o->thr ? o->thr[L][p] : -1.0f;
            if (!rc && t < 0)
                rc = lp_flow_null_threshold(P->p[LP_SAE_W_DEC], P->cfg.d_sae, d,
                                            o && o->null_samples > 0 ? o->null_samples : 4096,
                                            o && o->q > 0 ? o->q : 0.99, (o ? o->seed : 0) + 1000u * L + p, &t);
            ly->thr[p] = t;
        }
        if (!rc) lp_flow_classify(ly);
    }
    if (rc) lp_flow_free(fl);
    return rc;
}

/* ---- graphs ------------------------------------------------------------------ */
int lp_flow_chain(const lp_flow *fl, int L, int f, int *chain) {
    int n = 0;
    chain[n++] = f;
    while (L > 0 && fl->layer[L].has[LP_FLOW_RES] && fl->layer[L].top[LP_FLOW_RES][f] >= 0) {
        f = fl->layer[L].top[LP_FLOW_RES][f];
        L--;
        chain[n++] = f;
    }
    return n;
}

int lp_flow_graph_build(const lp_flow *fl, int L, int f, lp_flow_graph *g) {
    memset(g, 0, sizeof *g);
    if (L < 0 || L >= fl->n_layers) return lp_fail(LP_ERR_ARG, "flow graph: layer %d out of range 0..%d", L, fl->n_layers - 1);
    if (f < 0 || f >= fl->layer[L].F)
        return lp_fail(LP_ERR_ARG, "flow graph: feature %d out of range 0..%d at layer %d", f, fl->layer[L].F - 1, L);
    int cur = 0;
    g->node[g->n_nodes++] = (lp_flow_node){L, LP_FLOW_RES, f, fl->layer[L].cls[f]};
    for (;;) {
        const lp_flow_layer *ly = &fl->layer[L];
        int next = -1;
        for (int p = 0; p < LP_FLOW_NSRC; p++) {
            if (!ly->has[p] || ly->top[p][f] < 0) continue;
            int pl = p == LP_FLOW_RES ? L - 1 : L, pf = ly->top[p][f];
            int cls = p == LP_FLOW_RES ? fl->layer[pl].cls[pf] : -1;
            int id = g->n_nodes++;
            g->node[id] = (lp_flow_node){pl, p, pf, cls};
            g->edge[g->n_edges++] = (lp_flow_edge){id, cur, ly->s[p][f], ly->s[p][f] >= ly->thr[p]};
            if (p == LP_FLOW_RES) next = id;
        }
        if (next < 0) break;
        cur = next;
        f = g->node[next].feature;
        L = g->node[next].layer;
    }
    return LP_OK;
}

static void node_name(const lp_flow_node *n, char *buf, size_t cap) {
    static const char letter[LP_FLOW_NSRC] = {'R', 'M', 'A'};
    snprintf(buf, cap, "%c%d_%d", letter[n->kind], n->layer, n->feature);
}

static int write_cjson(cJSON *j, const char *path) {
    char *txt = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!txt) return lp_fail(LP_ERR_NOMEM, "%s: out of memory rendering JSON", path);
    int rc = lp_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return rc;
}

int lp_flow_graph_write_json(const lp_flow_graph *g, const char *const *labels, const char *path) {
    cJSON *j = cJSON_CreateObject();
    cJSON *nodes = cJSON_AddArrayToObject(j, "nodes"), *edges = cJSON_AddArrayToObject(j, "edges");
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_flow_node *n = &g->node[i];
        char id[64], hook[64];
        node_name(n, id, sizeof id);
        lp_hook_name((lp_hook_point){n->layer, lp_flow_src_hook_kind(n->kind)}, hook, sizeof hook);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "site", hook);
        cJSON_AddNumberToObject(o, "layer", n->layer);
        cJSON_AddNumberToObject(o, "feature", n->feature);
        if (n->cls >= 0) cJSON_AddStringToObject(o, "class", lp_flow_class_name(n->cls));
        if (labels && labels[i]) cJSON_AddStringToObject(o, "label", labels[i]);
        cJSON_AddItemToArray(nodes, o);
    }
    for (int i = 0; i < g->n_edges; i++) {
        const lp_flow_edge *e = &g->edge[i];
        char a[64], b[64];
        node_name(&g->node[e->from], a, sizeof a);
        node_name(&g->node[e->to], b, sizeof b);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "from", a);
        cJSON_AddStringToObject(o, "to", b);
        cJSON_AddNumberToObject(o, "cos", round(e->cos * 1e5) / 1e5);
        cJSON_AddBoolToObject(o, "strong", e->strong);
        cJSON_AddItemToArray(edges, o);
    }
    return write_cjson(j, path);
}

/* DOT string literal: escape quotes, backslashes and newlines */
static void dot_escape(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 3 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') out[k++] = '\\', out[k++] = (char)c;
        else if (c == '\n') out[k++] = '\\', out[k++] = 'n';
        else if (c >= 0x20) out[k++] = (char)c;
    }
    out[k] = 0;
}

int lp_flow_graph_write_dot(const lp_flow_graph *g, const char *const *labels, const char *path) {
    size_t cap = 4096 + (size_t)(g->n_nodes + g->n_edges) * 512, n = 0;
    char *buf = lp_malloc(cap);
    if (!buf) return LP_ERR_NOMEM;
#define OUT(...) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__)
    OUT("digraph flow {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    static const char *fill[LP_FLOW_NSRC] = {"#dbe9f6", "#fde0c5", "#d5f0d5"};
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_flow_node *nd = &g->node[i];
        char id[64], lab[400] = "";
        node_name(nd, id, sizeof id);
        if (labels && labels[i]) dot_escape(labels[i], lab, sizeof lab);
        OUT("  %s [label=\"%s %d #%d%s%s%s%s\", fillcolor=\"%s\"%s];\n", id, lp_flow_src_name(nd->kind), nd->layer,
            nd->feature, nd->cls >= 0 ? "\\n" : "", nd->cls >= 0 ? lp_flow_class_name(nd->cls) : "", lab[0] ? "\\n" : "",
            lab, fill[nd->kind], i == 0 ? ", penwidth=2" : "");
    }
    for (int i = 0; i < g->n_edges; i++) {
        const lp_flow_edge *e = &g->edge[i];
        char a[64], b[64];
        node_name(&g->node[e->from], a, sizeof a);
        node_name(&g->node[e->to], b, sizeof b);
        OUT("  %s -> %s [label=\"%.2f\"%s];\n", a, b, e->cos, e->strong ? ", penwidth=2" : ", style=dashed");
    }
    OUT("}\n");
#undef OUT
    int rc = n < cap ? lp_write_file_atomic(path, buf, n) : lp_fail(LP_ERR_NOMEM, "%s: graph too large", path);
    free(buf);
    return rc;
}

int lp_flow_write_json(const lp_flow *fl, const char *path) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", "decoder max-cosine between consecutive sites (arXiv 2502.03032)");
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int L = 0; L < fl->n_layers; L++) {
        const lp_flow_layer *ly = &fl->layer[L];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", L);
        cJSON_AddNumberToObject(o, "d_sae", ly->F);
        cJSON *th = cJSON_AddObjectToObject(o, "thresholds"), *cnt = cJSON_AddObjectToObject(o, "classes");
        for (int p = 0; p < LP_FLOW_NSRC; p++)
            if (ly->has[p]) cJSON_AddNumberToObject(th, k_src[p], round(ly->thr[p] * 1e5) / 1e5);
            else cJSON_AddNullToObject(th, k_src[p]);
        for (int c = 0; c < LP_FLOW_NCLASS; c++) cJSON_AddNumberToObject(cnt, k_class[c], (double)ly->count[c]);
        cJSON *feats = cJSON_AddArrayToObject(o, "features");
        for (int f = 0; f < ly->F; f++) {
            /* [class, s_res, top_res, s_mlp, top_mlp, s_att, top_att] compactly */
            cJSON *a = cJSON_CreateArray();
            cJSON_AddItemToArray(a, cJSON_CreateString(k_class[ly->cls[f]]));
            for (int p = 0; p < LP_FLOW_NSRC; p++) {
                cJSON_AddItemToArray(a, cJSON_CreateNumber(round(ly->s[p][f] * 1e4) / 1e4));
                cJSON_AddItemToArray(a, cJSON_CreateNumber(ly->top[p][f]));
            }
            cJSON_AddItemToArray(feats, a);
        }
        cJSON_AddItemToArray(layers, o);
    }
    cJSON_AddStringToObject(j, "feature_fields", "[class, s_res, top_res, s_mlp, top_mlp, s_att, top_att]");
    return write_cjson(j, path);
}

/* ---- validation -------------------------------------------------------------- */
int lp_flow_val_init(lp_flow_val *v, int n_layers) {
    memset(v, 0, sizeof *v);
    v->n_layers = n_layers;
    v->counts = lp_calloc((size_t)n_layers * LP_FLOW_NCLASS * LP_FLOW_NGROUPS, sizeof(int64_t));
    return v->counts ? LP_OK : LP_ERR_NOMEM;
}

void lp_flow_val_free(lp_flow_val *v) {
    free(v->counts);
    memset(v, 0, sizeof *v);
}

/* is latent f active (value > 0) in row b of codes? */
static int active(const lp_sae_codes *c, int b, int f) {
    if (!c || f < 0) return 0;
    for (int64_t q = c->rowptr[b]; q < c->rowptr[b + 1]; q++)
        if (c->idx[q] == f && c->val[q] > 0) return 1;
    return 0;
}

int lp_flow_val_add(lp_flow_val *v, const lp_flow *fl, int L, const lp_sae_codes *res, const lp_sae_codes *res_prev,
                    const lp_sae_codes *mlp, const lp_sae_codes *att) {
    if (L < 0 || L >= fl->n_layers || L >= v->n_layers) return lp_fail(LP_ERR_ARG, "flow validation: layer %d out of range", L);
    const lp_flow_layer *ly = &fl->layer[L];
    const lp_sae_codes *src[LP_FLOW_NSRC] = {res_prev, mlp, att};
    for (int p = 0; p < LP_FLOW_NSRC; p++)
        if (src[p] && src[p]->B != res->B) return lp_fail(LP_ERR_ARG, "flow validation: code batches differ in rows");
    int64_t *cnt = v->counts + (int64_t)L * LP_FLOW_NCLASS * LP_FLOW_NGROUPS;
    for (int b = 0; b < res->B; b++)
        for (int64_t q = res->rowptr[b]; q < res->rowptr[b + 1]; q++) {
            int f = res->idx[q];
            if (res->val[q] <= 0 || f < 0 || f >= ly->F) continue;
            int g = 0;
            for (int p = 0; p < LP_FLOW_NSRC; p++)
                if (ly->has[p] && active(src[p], b, ly->top[p][f])) g |= 1 << p;
            cnt[ly->cls[f] * LP_FLOW_NGROUPS + g]++;
        }
    return LP_OK;
}
