/* loupe/flow.h — cross-layer feature flow (arXiv 2502.03032): data-free
 * matching of SAE features between consecutive hook sites by decoder
 * cosine, the class of every residual feature, flow graphs, and the
 * activation-based validation of the matches.
 *
 * Sites of layer L (TransformerLens names):
 *   R_L = blocks.L.hook_resid_post   M_L = blocks.L.hook_mlp_out
 *   A_L = blocks.L.hook_attn_out
 * For residual feature f at layer L, with d_f its unit decoder row,
 *   s(P) = max_k cos(d_f, W_dec^P[k]),  top(P) = argmax_k,
 * for P ∈ {R_{L−1}, M_L, A_L} (no R_{−1}: at layer 0 s(R) = 0, top = −1).
 * Classes with thresholds t_R, t_M, t_A (hi(P) = s(P) >= t_P):
 *   translated      hi(R), not hi(M), not hi(A)
 *   processed_mlp   hi(R) and hi(M), s(M) − t_M >= s(A) − t_A when both hi
 *   processed_attn  hi(R) and hi(A), otherwise
 *   newborn         not hi(R), hi(M) or hi(A)   (source: the larger margin)
 *   unexplained     none high
 * A flow graph of (L, f) chains top(R) back to layer 0: at every layer the
 * node has edges from its three top-1 predecessors; the chain continues
 * through the residual one.
 *
 * Thresholds: a fixed value, or "auto" = the q-quantile (default 0.99) of
 * s(P) for random isotropic unit directions against P's decoder — the
 * match a direction gets by chance from a dictionary of that size and
 * shape (so it depends on the layer and the site).
 *
 * Everything here is pure computation on decoders (and, for validation, on
 * activations the caller supplies): no model, no files except the writers.
 */
#ifndef LOUPE_FLOW_H
#define LOUPE_FLOW_H

#include <stdint.h>

#include "loupe/sae.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_FLOW_RES, LP_FLOW_MLP, LP_FLOW_ATT, LP_FLOW_NSRC };
enum {
    LP_FLOW_TRANSLATED,
    LP_FLOW_PROC_MLP,
    LP_FLOW_PROC_ATT,
    LP_FLOW_NEWBORN,
    LP_FLOW_UNEXPLAINED,
    LP_FLOW_NCLASS
};
/* "translated", "processed_mlp", ... ; "res", "mlp", "att". */
const char *lp_flow_class_name(int cls);
const char *lp_flow_src_name(int src);
/* Hook kind (LP_HOOK_*) of a source / of the residual target. */
int lp_flow_src_hook_kind(int src);

/* For every row of A [Fa,d] the row of B [Fb,d] with the largest cosine:
 * best_cos[Fa], best_idx[Fa] (ties: lower index). Rows are normalised
 * internally (a zero row gets cosine 0 with everything, index 0). Blocked
 * GEMMs; memory O(block·Fb). */
int lp_flow_max_cos(const float *A, int Fa, const float *B, int Fb, int d, float *best_cos, int32_t *best_idx);

/* The chance level of s(P): the q-quantile over n random unit directions
 * (seeded) of their max cosine against the rows of B [Fb,d]. */
int lp_flow_null_threshold(const float *B, int Fb, int d, int n, double q, uint64_t seed, float *thr);

/* One layer's matches: for every residual feature of R_L. */
typedef struct {
    int layer, F;
    float *s[LP_FLOW_NSRC];       /* [F] max cosine (0 when the source is absent) */
    int32_t *top[LP_FLOW_NSRC];   /* [F] top-1 predecessor (−1 when absent) */
    uint8_t *cls;                 /* [F] LP_FLOW_* class */
    uint8_t *src;                 /* [F] for newborn: LP_FLOW_MLP or LP_FLOW_ATT */
    float thr[LP_FLOW_NSRC];      /* thresholds used */
    int has[LP_FLOW_NSRC];        /* 1 when that predecessor SAE was given */
    int64_t count[LP_FLOW_NCLASS];
} lp_flow_layer;

typedef struct {
    int n_layers;
    lp_flow_layer *layer; /* [n_layers] */
} lp_flow;

/* Per-layer thresholds: thr[L][src]; a negative value means "auto" (the
 * null quantile `q`, seeded by `seed`). */
typedef struct {
    float (*thr)[LP_FLOW_NSRC]; /* [n_layers][3] */
    double q;
    int null_samples;
    uint64_t seed;
} lp_flow_opts;

/* Match every layer. res[L] is R_L's SAE (required for every L); mlp[L],
 * att[L] may be NULL (that source is then absent). All SAEs must share
 * d_in (checked). */
int lp_flow_compute(lp_flow *fl, int n_layers, lp_sae *const *res, lp_sae *const *mlp, lp_sae *const *att,
                    const lp_flow_opts *o);
/* Re-assign classes (and counts) of one layer from its scores and thr. */
void lp_flow_classify(lp_flow_layer *ly);
void lp_flow_free(lp_flow *fl);

/* ---- flow graphs ------------------------------------------------------------ */
typedef struct {
    int layer, kind;  /* kind: LP_FLOW_RES (R_L) / LP_FLOW_MLP / LP_FLOW_ATT */
    int feature;
    int cls;          /* class for residual nodes, −1 otherwise */
} lp_flow_node;

typedef struct {
    int from, to;     /* node indices: from is the predecessor */
    float cos;
    int strong;       /* cos >= the threshold of that source */
} lp_flow_edge;

#define LP_FLOW_MAX_LAYERS 64
typedef struct {
    int n_nodes, n_edges;
    lp_flow_node node[4 * LP_FLOW_MAX_LAYERS];
    lp_flow_edge edge[3 * LP_FLOW_MAX_LAYERS];
} lp_flow_graph;

/* Graph of residual feature f at layer L (node 0 is the target). */
int lp_flow_graph_build(const lp_flow *fl, int L, int f, lp_flow_graph *g);
/* The residual chain of (L, f): chain[j] = feature at layer L − j
 * (chain[0] = f), stopping at layer 0 or where top(R) is absent; returns
 * the length (>= 1). */
int lp_flow_chain(const lp_flow *fl, int L, int f, int *chain);

/* Write the graph as JSON and Graphviz DOT. labels (may be NULL) gives a
 * short text per node (e.g. its logit-lens tokens). */
int lp_flow_graph_write_json(const lp_flow_graph *g, const char *const *labels, const char *path);
int lp_flow_graph_write_dot(const lp_flow_graph *g, const char *const *labels, const char *path);

/* flow.json: per layer thresholds, class counts, and for every feature its
 * three scores, top-1 predecessors and class. */
int lp_flow_write_json(const lp_flow *fl, const char *path);

/* ---- site SAEs on disk (flow_sites.c) ---------------------------------------
 * The layout `loupe train --sites` writes: DIR/sites.json maps (hook, seed
 * N) to a directory; without it DIR/<hook>/seedN/ (or DIR/<hook>/ holding
 * cfg.json directly). Layers are found from 0 up while
 * DIR/blocks.L.hook_resid_post exists (n_layers > 0: exactly that many).
 * Every SAE is checked: its recorded hook must be the directory's site, all
 * d_in equal and all recorded models the same. MLP/attention SAEs are
 * optional per layer (NULL when absent). */
typedef struct {
    int n_layers;
    lp_sae *sae[LP_FLOW_NSRC][LP_FLOW_MAX_LAYERS]; /* [src][layer]: res = R_L, mlp = M_L, att = A_L */
    char *dir[LP_FLOW_NSRC][LP_FLOW_MAX_LAYERS];
} lp_flow_sites;

int lp_flow_sites_load(lp_flow_sites *s, const char *dir, int seed, int n_layers);
void lp_flow_sites_free(lp_flow_sites *s);

/* ---- activation-based validation ------------------------------------------ */
/* Co-activation groups of a residual feature active on a token: which of its
 * top-1 predecessors are active on the same token (bit 0 R, bit 1 M, bit 2 A;
 * group 0 = "from nowhere", 1 = R, 2 = M, 3 = R+M, 4 = A, 5 = R+A, 6 = M+A,
 * 7 = R+M+A). */
enum { LP_FLOW_NGROUPS = 8 };
const char *lp_flow_group_name(int g);

typedef struct {
    int n_layers;
    int64_t *counts; /* [n_layers][LP_FLOW_NCLASS][LP_FLOW_NGROUPS] (token-feature events) */
    int64_t tokens; /* tokens seen (kept by the caller) */
} lp_flow_val;

int lp_flow_val_init(lp_flow_val *v, int n_layers);
void lp_flow_val_free(lp_flow_val *v);
/* Add n tokens of layer L. Sparse codes (CSR over the same n rows) of R_L,
 * R_{L−1}, M_L and A_L; absent sources may be NULL. */
int lp_flow_val_add(lp_flow_val *v, const lp_flow *fl, int L, const lp_sae_codes *res, const lp_sae_codes *res_prev,
                    const lp_sae_codes *mlp, const lp_sae_codes *att);

#ifdef __cplusplus
}
#endif
#endif
