/* features.c — per-feature statistics of an SAE over an activation store
 * (see loupe/interp.h): three passes. (1) all rows: firing counts per
 * segment, sums, maxima, top-N heaps; (2) all rows: histograms and quantile
 * samples (reservoirs per activation interval); (3) only the rows inside the
 * example windows, gathered and encoded again, for the per-token activations
 * that the dashboard highlights. Plus the logit lens and segment tags. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/interp.h"
#include "sae/arch.h"

void lp_feat_opts_default(lp_feat_opts *o) {
    memset(o, 0, sizeof *o);
    o->top_n = 20;
    o->n_quant = 12;
    o->n_intervals = 4;
    o->n_neg = 20;
    o->left = 15;
    o->right = 4;
    o->hist_bins = 32;
    o->lens_k = 10;
    o->tag_top = 20;
    o->tag_hi = 0.8f;
}

void lp_features_free(lp_features *f) {
    if (!f) return;
    for (int i = 0; i < f->S && f->seg_names; i++) free(f->seg_names[i]);
    free(f->seg_names);
    free(f->seg_rows);
    free(f->fires);
    free(f->seg_fires);
    free(f->sum_act);
    free(f->max_act);
    free(f->hist);
    free(f->ex_row);
    free(f->ex_val);
    free(f->ctx_tok);
    free(f->ctx_act);
    free(f->ctx_seg);
    free(f->lens_pos_id);
    free(f->lens_neg_id);
    free(f->lens_pos);
    free(f->lens_neg);
    free(f->tok_count);
    free(f->seg_share);
    free(f->tag);
    memset(f, 0, sizeof *f);
}

void lp_features_tag(lp_features *f, int tag_top, float tag_hi) {
    for (int feat = 0; feat < f->F; feat++) {
        float *sh = f->seg_share + (size_t)feat * f->S;
        for (int s = 0; s < f->S; s++) sh[s] = 0;
        int n = 0, T = tag_top < f->N ? tag_top : f->N;
        for (int e = 0; e < T; e++) {
            const int64_t *er = f->ex_row + (size_t)feat * f->E;
            if (er[e] < 0) break;
            const uint8_t sg = f->ctx_seg[((size_t)feat * f->E + e) * f->W + f->left];
            if (sg < f->S) sh[sg] += 1;
            n++;
        }
        if (n == 0) {
            f->tag[feat] = LP_TAG_DEAD;
            continue;
        }
        int tag = LP_TAG_MIXED;
        for (int s = 0; s < f->S; s++) {
            sh[s] /= (float)n;
            if (sh[s] >= tag_hi - 1e-6f) tag = s;
        }
        f->tag[feat] = f->S == 1 ? 0 : tag;
    }
}

/* Allocate every array of f for the shapes already set. */
static int alloc_features(lp_features *f) {
    const size_t F = (size_t)f->F, E = (size_t)f->E, W = (size_t)f->W;
    f->seg_rows = lp_calloc((size_t)f->S, sizeof *f->seg_rows);
    f->fires = lp_calloc(F, sizeof *f->fires);
    f->seg_fires = lp_calloc(F * f->S, sizeof *f->seg_fires);
    f->sum_act = lp_calloc(F, sizeof *f->sum_act);
    f->max_act = lp_calloc(F, sizeof *f->max_act);
    f->hist = lp_calloc(F * f->H, sizeof *f->hist);
    f->ex_row = lp_malloc(F * E * sizeof *f->ex_row);
    f->ex_val = lp_calloc(F * E, sizeof *f->ex_val);
    f->ctx_tok = lp_malloc(F * E * W * sizeof *f->ctx_tok);
    f->ctx_act = lp_calloc(F * E * W, sizeof *f->ctx_act);
    f->ctx_seg = lp_calloc(F * E * W, 1);
    size_t lk = F * (f->LK > 0 ? f->LK : 1);
    f->lens_pos_id = lp_calloc(lk, sizeof(int32_t));
    f->lens_neg_id = lp_calloc(lk, sizeof(int32_t));
    f->lens_pos = lp_calloc(lk, sizeof(float));
    f->lens_neg = lp_calloc(lk, sizeof(float));
    f->tok_count = lp_calloc((size_t)f->V, sizeof *f->tok_count);
    f->seg_share = lp_calloc(F * f->S, sizeof *f->seg_share);
    f->tag = lp_calloc(F, sizeof *f->tag);
    if (!f->seg_rows || !f->fires || !f->seg_fires || !f->sum_act || !f->max_act || !f->hist || !f->ex_row ||
        !f->ex_val || !f->ctx_tok || !f->ctx_act || !f->ctx_seg || !f->lens_pos_id || !f->lens_neg_id ||
        !f->lens_pos || !f->lens_neg || !f->tok_count || !f->seg_share || !f->tag)
        return lp_fail(LP_ERR_NOMEM, "features: out of memory for %d features x %d examples", f->F, f->E);
    for (size_t i = 0; i < F * E; i++) f->ex_row[i] = -1;
    for (size_t i = 0; i < F * E * W; i++) f->ctx_tok[i] = -1;
    return LP_OK;
}

/* Encoder state for one pass. */
typedef struct {
    lp_sae *sae;
    int B;
    float *x, *pre;
    lp_sae_codes codes;
} encoder;

static int encode_rows(encoder *en, const lp_store *st, int64_t start, const int64_t *idx, int n) {
    int rc = idx ? lp_store_gather(st, idx, n, en->x) : lp_store_read(st, start, n, en->x);
    if (rc) return rc;
    return lp_sae_encode(en->sae, en->x, n, en->pre, &en->codes, 0);
}

/* min-heap on (value, then later row is smaller) of size N per feature */
static int heap_less(float va, int64_t ra, float vb, int64_t rb) { return va < vb || (va == vb && ra > rb); }

static void heap_push(float *hv, int64_t *hr, int *hn, int N, float v, int64_t r) {
    if (*hn < N) {
        int i = (*hn)++;
        hv[i] = v;
        hr[i] = r;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!heap_less(hv[i], hr[i], hv[p], hr[p])) break;
            float tv = hv[i]; hv[i] = hv[p]; hv[p] = tv;
            int64_t tr = hr[i]; hr[i] = hr[p]; hr[p] = tr;
            i = p;
        }
        return;
    }
    if (!heap_less(hv[0], hr[0], v, r)) return; /* not better than the minimum */
    hv[0] = v;
    hr[0] = r;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, rr = l + 1, m = i;
        if (l < N && heap_less(hv[l], hr[l], hv[m], hr[m])) m = l;
        if (rr < N && heap_less(hv[rr], hr[rr], hv[m], hr[m])) m = rr;
        if (m == i) break;
        float tv = hv[i]; hv[i] = hv[m]; hv[m] = tv;
        int64_t tr = hr[i]; hr[i] = hr[m]; hr[m] = tr;
        i = m;
    }
}

typedef struct {
    float v;
    int64_t r;
} vr;

static int vr_desc(const void *a, const void *b) {
    const vr *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->r < y->r ? -1 : x->r > y->r;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A request for z_f at one row, to fill ctx_act[slot]. */
typedef struct {
    int64_t row;
    int32_t f;
    int64_t cell; /* index into ctx_act */
} req;

static int req_cmp(const void *a, const void *b) {
    const req *x = a, *y = b;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    return x->cell < y->cell ? -1 : x->cell > y->cell;
}

/* The logit lens: top/bottom LK tokens of W_U (g ⊙ W_dec[f]). */
static int logit_lens(lp_features *f, const lp_sae *sae, const lp_model *m) {
    const int F = f->F, d = f->d, V = f->V, LK = f->LK;
    if (m->cfg.dim != d) return lp_fail(LP_ERR_ARG, "features: model dim %d but SAE d_in %d", m->cfg.dim, d);
    const float *U = m->cfg.shared_classifier ? m->p[LP_P_EMB] : m->p[LP_P_WCLS];
    const float *g = m->p[LP_P_RMS_FINAL], *Wd = sae->p[LP_SAE_W_DEC];
    const int CH = 256;
    float *u = lp_malloc((size_t)CH * d * sizeof(float));
    float *lg = lp_malloc((size_t)CH * V * sizeof(float));
    if (!u || !lg) {
        free(u);
        free(lg);
        return LP_ERR_NOMEM;
    }
    for (int f0 = 0; f0 < F; f0 += CH) {
        int n = F - f0 < CH ? F - f0 : CH;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < d; j++) u[(size_t)i * d + j] = g[j] * Wd[(size_t)(f0 + i) * d + j];
        lp_sgemm(0, 1, n, V, d, 1.0f, u, d, U, d, 0.0f, lg, V);
        for (int i = 0; i < n; i++) {
            const float *l = lg + (size_t)i * V;
            int32_t *pi = f->lens_pos_id + (size_t)(f0 + i) * LK, *ni = f->lens_neg_id + (size_t)(f0 + i) * LK;
            float *pv = f->lens_pos + (size_t)(f0 + i) * LK, *nv = f->lens_neg + (size_t)(f0 + i) * LK;
            int np = 0, nn = 0;
            for (int t = 0; t < V; t++) { /* insertion into two sorted lists of LK */
                float v = l[t];
                if (np < LK || v > pv[np - 1]) {
                    int j = np < LK ? np++ : LK - 1;
                    while (j > 0 && pv[j - 1] < v) {
                        pv[j] = pv[j - 1];
                        pi[j] = pi[j - 1];
                        j--;
                    }
                    pv[j] = v;
                    pi[j] = t;
                }
                if (nn < LK || v < nv[nn - 1]) {
                    int j = nn < LK ? nn++ : LK - 1;
                    while (j > 0 && nv[j - 1] > v) {
                        nv[j] = nv[j - 1];
                        ni[j] = ni[j - 1];
                        j--;
                    }
                    nv[j] = v;
                    ni[j] = t;
                }
            }
        }
    }
    free(u);
    free(lg);
    return LP_OK;
}

int lp_features_compute(lp_features *f, lp_sae *sae, const lp_store *st, const lp_segments *seg,
                        const lp_model *m, int vocab_size, const lp_feat_opts *o) {
    memset(f, 0, sizeof *f);
    const int F = sae->cfg.d_sae, d = sae->cfg.d_in;
    if (lp_store_dim(st) != d)
        return lp_fail(LP_ERR_ARG, "%s: store rows have d=%d but the SAE expects d_in=%d", lp_store_dir(st),
                       lp_store_dim(st), d);
    if (o->top_n < 1 || o->n_intervals < 1 || o->n_quant < 0 || o->n_quant % o->n_intervals || o->n_neg < 0 ||
        o->left < 0 || o->right < 0 || o->left + o->right > 1000 || o->hist_bins < 1 || o->lens_k < 0 ||
        o->top_n > 1000 || o->n_quant > 1000 || o->n_neg > 1000)
        return lp_fail(LP_ERR_ARG, "features: bad options (top %d, quantile %d in %d intervals, negatives %d, "
                                   "window %d+%d, bins %d)",
                       o->top_n, o->n_quant, o->n_intervals, o->n_neg, o->left, o->right, o->hist_bins);
    int64_t R = lp_store_count(st);
    if (o->max_rows > 0 && o->max_rows < R) R = o->max_rows;
    if (R < 1) return lp_fail(LP_ERR_ARG, "%s: empty store", lp_store_dir(st));
    if (seg->count < R) return lp_fail(LP_ERR_ARG, "%s: %lld segment labels for %lld rows", lp_store_dir(st),
                                       (long long)seg->count, (long long)R);
    if (vocab_size < 1) return lp_fail(LP_ERR_ARG, "features: vocabulary size %d", vocab_size);
    f->F = F;
    f->d = d;
    f->V = vocab_size;
    f->N = o->top_n;
    f->Q = o->n_quant;
    f->I = o->n_intervals;
    f->M = o->n_neg;
    f->E = f->N + f->Q + f->M;
    f->left = o->left;
    f->W = o->left + 1 + o->right;
    f->H = o->hist_bins;
    f->LK = m ? o->lens_k : 0;
    f->S = seg->n_names;
    f->rows = R;
    int rc;
    if ((int64_t)F * f->E * f->W > ((int64_t)1 << 31))
        return lp_fail(LP_ERR_ARG, "features: %d features x %d examples x %d tokens is too large", F, f->E, f->W);
    f->seg_names = lp_calloc((size_t)f->S, sizeof *f->seg_names);
    if (!f->seg_names) return LP_ERR_NOMEM;
    for (int s = 0; s < f->S; s++)
        if (!(f->seg_names[s] = lp_strdup(seg->names[s]))) {
            lp_features_free(f);
            return LP_ERR_NOMEM;
        }
    if ((rc = alloc_features(f))) {
        lp_features_free(f);
        return rc;
    }

    /* tokens, documents, positions of every row used */
    int32_t *tok = lp_malloc((size_t)R * sizeof *tok), *doc = lp_malloc((size_t)R * sizeof *doc),
            *pos = lp_malloc((size_t)R * sizeof *pos);
    int B = o->batch > 0 ? o->batch : (int)(((int64_t)1 << 22) / F);
    if (B < 64) B = 64;
    if (B > 4096) B = 4096;
    encoder en = {.sae = sae, .B = B};
    en.x = lp_malloc((size_t)B * d * sizeof(float));
    en.pre = lp_malloc((size_t)B * F * sizeof(float));
    float *hv = lp_malloc((size_t)F * f->N * sizeof *hv);
    int64_t *hr = lp_malloc((size_t)F * f->N * sizeof *hr);
    int *hn = lp_calloc((size_t)F, sizeof *hn);
    int64_t *topsorted = lp_malloc((size_t)F * f->N * sizeof *topsorted);
    const int qper = f->Q / f->I;
    int64_t *qseen = lp_calloc((size_t)F * f->I, sizeof *qseen);
    req *rq = NULL;
    int64_t *urows = NULL;
    int32_t *alive = NULL;
    lp_progress pg;
    if (!tok || !doc || !pos || !en.x || !en.pre || !hv || !hr || !hn || !topsorted || !qseen) {
        rc = lp_fail(LP_ERR_NOMEM, "features: out of memory (batch %d x %d latents)", B, F);
        goto done;
    }
    if ((rc = lp_store_tokens(st, 0, R, tok, doc, pos))) goto done;
    for (int64_t r = 0; r < R; r++) {
        if (tok[r] < 0 || tok[r] >= f->V) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: row %lld has token id %d outside the vocabulary of %d",
                         lp_store_dir(st), (long long)r, tok[r], f->V);
            goto done;
        }
        f->tok_count[tok[r]]++;
        f->seg_rows[seg->seg[r]]++;
    }
    lp_progress_init(&pg, (double)R * 2, "rows");
    if (!o->progress) pg.enabled = 0;

    /* ---- pass 1: counts, sums, maxima, top-N ---- */
    for (int64_t r0 = 0; r0 < R; r0 += B) {
        int n = (int)(R - r0 < B ? R - r0 : B);
        if ((rc = encode_rows(&en, st, r0, NULL, n))) goto done;
        const lp_sae_codes *c = &en.codes;
        for (int b = 0; b < n; b++) {
            const int64_t row = r0 + b;
            const int sg = seg->seg[row];
            for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
                const float v = c->val[j];
                if (!(v > 0)) continue;
                const int fi = c->idx[j];
                f->fires[fi]++;
                f->seg_fires[(size_t)fi * f->S + sg]++;
                f->sum_act[fi] += v;
                if (v > f->max_act[fi]) f->max_act[fi] = v;
                heap_push(hv + (size_t)fi * f->N, hr + (size_t)fi * f->N, &hn[fi], f->N, v, row);
            }
        }
        lp_progress_update(&pg, (double)(r0 + n), "pass 1/2");
    }
    for (int fi = 0; fi < F; fi++) {
        vr tmp[1000];
        int n = hn[fi];
        for (int i = 0; i < n; i++) tmp[i] = (vr){hv[(size_t)fi * f->N + i], hr[(size_t)fi * f->N + i]};
        qsort(tmp, (size_t)n, sizeof *tmp, vr_desc);
        for (int i = 0; i < n; i++) {
            f->ex_row[(size_t)fi * f->E + i] = tmp[i].r;
            f->ex_val[(size_t)fi * f->E + i] = tmp[i].v;
            topsorted[(size_t)fi * f->N + i] = tmp[i].r;
        }
        qsort(topsorted + (size_t)fi * f->N, (size_t)n, sizeof(int64_t), cmp_i64);
    }

    /* ---- pass 2: histograms and quantile samples ---- */
    lp_rng rng;
    lp_rng_seed(&rng, o->seed ^ 0x5eed5eedULL);
    for (int64_t r0 = 0; r0 < R; r0 += B) {
        int n = (int)(R - r0 < B ? R - r0 : B);
        if ((rc = encode_rows(&en, st, r0, NULL, n))) goto done;
        const lp_sae_codes *c = &en.codes;
        for (int b = 0; b < n; b++) {
            const int64_t row = r0 + b;
            for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
                const float v = c->val[j];
                if (!(v > 0)) continue;
                const int fi = c->idx[j];
                const float mx = f->max_act[fi];
                int hb = (int)((double)v / mx * f->H);
                if (hb >= f->H) hb = f->H - 1;
                f->hist[(size_t)fi * f->H + hb]++;
                if (qper == 0) continue;
                if (bsearch(&row, topsorted + (size_t)fi * f->N, (size_t)hn[fi], sizeof(int64_t), cmp_i64)) continue;
                int iv = (int)((double)v / mx * f->I);
                if (iv >= f->I) iv = f->I - 1;
                int64_t seen = ++qseen[(size_t)fi * f->I + iv];
                int64_t slot = -1;
                if (seen <= qper) slot = seen - 1;
                else {
                    uint64_t k = lp_rng_below(&rng, (uint64_t)seen);
                    if (k < (uint64_t)qper) slot = (int64_t)k;
                }
                if (slot >= 0) {
                    size_t e = (size_t)fi * f->E + f->N + (size_t)iv * qper + (size_t)slot;
                    f->ex_row[e] = row;
                    f->ex_val[e] = v;
                }
            }
        }
        lp_progress_update(&pg, (double)(R + r0 + n), "pass 2/2");
    }
    lp_progress_finish(&pg);
    /* quantile samples: descending within each interval, filled first */
    for (int fi = 0; fi < F; fi++)
        for (int iv = 0; iv < f->I; iv++) {
            vr tmp[1000];
            int n = 0;
            size_t e0 = (size_t)fi * f->E + f->N + (size_t)iv * qper;
            for (int q = 0; q < qper; q++)
                if (f->ex_row[e0 + q] >= 0) tmp[n++] = (vr){f->ex_val[e0 + q], f->ex_row[e0 + q]};
            qsort(tmp, (size_t)n, sizeof *tmp, vr_desc);
            for (int q = 0; q < qper; q++) {
                f->ex_row[e0 + q] = q < n ? tmp[q].r : -1;
                f->ex_val[e0 + q] = q < n ? tmp[q].v : 0;
            }
        }

    /* ---- negatives: rows of other (alive) features' examples ---- */
    int n_alive = 0;
    alive = lp_malloc((size_t)F * sizeof *alive);
    if (!alive) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int fi = 0; fi < F; fi++)
        if (f->fires[fi] > 0) alive[n_alive++] = fi;
    if (n_alive >= 2 && f->M > 0) {
        for (int fi = 0; fi < F; fi++) {
            if (f->fires[fi] == 0) continue;
            for (int q = 0; q < f->M; q++) {
                int g;
                do g = alive[lp_rng_below(&rng, (uint64_t)n_alive)];
                while (g == fi);
                int nfill = 0;
                int64_t cand[2000];
                for (int e = 0; e < f->N + f->Q; e++)
                    if (f->ex_row[(size_t)g * f->E + e] >= 0) cand[nfill++] = f->ex_row[(size_t)g * f->E + e];
                if (nfill == 0) continue;
                f->ex_row[(size_t)fi * f->E + f->N + f->Q + q] = cand[lp_rng_below(&rng, (uint64_t)nfill)];
            }
        }
    }

    /* ---- windows: tokens and segments now; activations by pass 3 ---- */
    int64_t nreq = 0;
    for (int fi = 0; fi < F; fi++)
        for (int e = 0; e < f->E; e++) {
            int64_t row = f->ex_row[(size_t)fi * f->E + e];
            if (row < 0) continue;
            for (int w = 0; w < f->W; w++) {
                int64_t off = w - f->left, r2 = row + off;
                if (r2 < 0 || r2 >= R || doc[r2] != doc[row] || (int64_t)pos[r2] - pos[row] != off) continue;
                size_t cell = ((size_t)fi * f->E + e) * f->W + w;
                f->ctx_tok[cell] = tok[r2];
                f->ctx_seg[cell] = seg->seg[r2];
                nreq++;
            }
        }
    /* pass 3, in chunks of features so that the request list stays bounded */
    const int64_t MAXREQ = (int64_t)1 << 22;
    rq = lp_malloc((size_t)(nreq < MAXREQ ? nreq : MAXREQ) * sizeof *rq + sizeof *rq);
    urows = lp_malloc((size_t)B * sizeof *urows);
    if (!rq || !urows) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int f0 = 0; f0 < F;) {
        int64_t nr = 0;
        int f1 = f0;
        while (f1 < F) {
            int64_t need = 0;
            for (int e = 0; e < f->E; e++)
                for (int w = 0; w < f->W; w++) need += f->ctx_tok[((size_t)f1 * f->E + e) * f->W + w] >= 0;
            if (nr + need > MAXREQ && f1 > f0) break;
            for (int e = 0; e < f->E; e++) {
                int64_t row = f->ex_row[(size_t)f1 * f->E + e];
                for (int w = 0; w < f->W; w++) {
                    size_t cell = ((size_t)f1 * f->E + e) * f->W + w;
                    if (f->ctx_tok[cell] >= 0) rq[nr++] = (req){row + w - f->left, f1, (int64_t)cell};
                }
            }
            f1++;
        }
        qsort(rq, (size_t)nr, sizeof *rq, req_cmp);
        for (int64_t i = 0; i < nr;) { /* batches of up to B distinct rows */
            int nu = 0;
            int64_t j = i;
            while (j < nr && (nu < B || rq[j].row == urows[nu - 1])) {
                if (nu == 0 || rq[j].row != urows[nu - 1]) urows[nu++] = rq[j].row;
                j++;
            }
            if ((rc = encode_rows(&en, st, 0, urows, nu))) goto done;
            const lp_sae_codes *c = &en.codes;
            int b = 0;
            for (int64_t t = i; t < j; t++) {
                while (urows[b] != rq[t].row) b++;
                float v = 0;
                for (int64_t q = c->rowptr[b]; q < c->rowptr[b + 1]; q++)
                    if (c->idx[q] == rq[t].f) {
                        v = c->val[q] > 0 ? c->val[q] : 0;
                        break;
                    }
                f->ctx_act[rq[t].cell] = v;
            }
            i = j;
        }
        f0 = f1;
    }
    /* negatives carry the feature's own activation at their row */
    for (int fi = 0; fi < F; fi++)
        for (int e = f->N + f->Q; e < f->E; e++)
            if (f->ex_row[(size_t)fi * f->E + e] >= 0)
                f->ex_val[(size_t)fi * f->E + e] = f->ctx_act[((size_t)fi * f->E + e) * f->W + f->left];

    if (m && f->LK > 0 && (rc = logit_lens(f, sae, m))) goto done;
    lp_features_tag(f, o->tag_top, o->tag_hi);
done:
    lp_codes_free(&en.codes);
    free(en.x);
    free(en.pre);
    free(tok);
    free(doc);
    free(pos);
    free(hv);
    free(hr);
    free(hn);
    free(topsorted);
    free(qseen);
    free(rq);
    free(urows);
    free(alive);
    if (rc) lp_features_free(f);
    return rc;
}
