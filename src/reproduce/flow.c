/* flow.c — (reproduce) `loupe reproduce flow`: cross-layer feature flow
 * (arXiv 2502.03032) on stories260K. Trains SAEs at all 15 sites, matches
 * them by decoder cosine (class table per layer, an example flow graph),
 * checks the matches on held-out text (co-activation by class), and runs
 * the deactivation experiment: remove a residual feature's top-1 cosine
 * predecessor at the previous layer (h ← h − a_p d_p) and see whether the
 * feature's activation at least halves — against a random co-active
 * predecessor and an exhaustive search over co-active predecessors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/flow.h"
#include "loupe/steer.h"
#include "loupe/windows.h"
#include "reproduce/reproduce.h"
#include "sae/arch.h"

/* ---- validation accumulation ------------------------------------------------ */
typedef struct {
    lp_flow *fl;
    lp_flow_val *val;
    int n_layers;
} val_ctx;

static int val_cb(void *user, int rows, const int *tok, const lp_sae_codes *const *codes) {
    (void)tok;
    val_ctx *v = user; /* codes: [L*3 + src] */
    for (int L = 1; L < v->n_layers; L++) {
        int rc = lp_flow_val_add(v->val, v->fl, L, codes[L * 3 + LP_FLOW_RES], codes[(L - 1) * 3 + LP_FLOW_RES],
                                 codes[L * 3 + LP_FLOW_MLP], codes[L * 3 + LP_FLOW_ATT]);
        if (rc) return rc;
    }
    v->val->tokens += rows;
    return LP_OK;
}

/* a token piece for a markdown table cell: control bytes as \xNN, '|' as '/' */
static void cell_piece(const char *p, char *out, size_t cap) {
    size_t k = 0;
    for (; p && *p && k + 5 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) k += (size_t)snprintf(out + k, cap - k, "\\x%02X", c);
        else out[k++] = c == '|' ? '/' : (char)c;
    }
    out[k] = 0;
}

/* ---- deactivation experiment ---------------------------------------------- */
enum { MAXW = 8 }; /* windows run per target */

typedef struct {
    const lp_model *m;
    lp_flow_sites *S;
    int C, bos;
    int *btok;       /* [MAXW*C] tokens of the selected windows */
    int nw;
    float *cap;      /* [MAXW*C*D] captured R_L */
    float *rows;     /* [MAXW*C*D] gathered target rows */
    float *pre;      /* [MAXW*C*F] */
    lp_sae_codes codes;
    lp_runner *r;
} deact;

/* mean a_f at R_L over rows (indices into the selected windows' batch) when
 * feature p of R_{L−1} is removed (p < 0: no intervention) */
static int run_removal(deact *d, int L, int p, int f, const int64_t *rows, int nr, double *mean) {
    const int D = d->m->cfg.dim;
    lp_hooks h;
    lp_hooks_clear(&h);
    lp_steer st;
    lp_pos_spec all = {LP_POS_ALL, 0, 0};
    lp_steer_init(&st, LP_STEER_KEEP_ERROR, &all, d->bos);
    int rc = LP_OK;
    if (p >= 0) {
        lp_steer_term t = {{L - 1, LP_HOOK_RESID_POST}, d->S->sae[LP_FLOW_RES][L - 1], p, LP_STEER_RESCALE, 0.0f, 0.0f};
        rc = lp_steer_add(&st, &t);
        if (!rc) rc = lp_steer_hooks(&st, d->m, d->nw * d->C, &h);
    }
    lp_splice cap;
    if (!rc) rc = lp_splice_init(&cap, LP_SPLICE_CAPTURE, NULL, d->bos, d->nw * d->C, D);
    if (!rc) {
        cap.captured = d->cap;
        lp_hooks_add(&h, (lp_hook_point){L, LP_HOOK_RESID_POST}, lp_splice_hook, &cap);
        rc = lp_forward(d->r, d->btok, d->nw, d->C, 0, &h, LP_LOGITS_NONE, NULL);
        lp_splice_free(&cap);
    }
    lp_steer_free(&st);
    if (rc) return rc;
    for (int i = 0; i < nr; i++) memcpy(d->rows + (int64_t)i * D, d->cap + rows[i] * D, (size_t)D * sizeof(float));
    lp_sae *sae = d->S->sae[LP_FLOW_RES][L];
    if ((rc = lp_sae_encode(sae, d->rows, nr, d->pre, &d->codes, 0))) return rc;
    double s = 0;
    for (int i = 0; i < nr; i++)
        for (int64_t q = d->codes.rowptr[i]; q < d->codes.rowptr[i + 1]; q++)
            if (d->codes.idx[q] == f) s += d->codes.val[q];
    *mean = s / nr;
    return LP_OK;
}

typedef struct {
    int n, top1_ok, rand_ok, exh_ok, top1_in_cands;
    double top1_rel, rand_rel, exh_rel;
} deact_stats;

static int cmp_desc_i64(const void *a, const void *b) {
    const int64_t *x = a, *y = b; /* (count, id): count descending, then id ascending */
    if (x[0] != y[0]) return (x[0] < y[0]) - (x[0] > y[0]);
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Clean codes of R_L for all eval rows: CSR per layer, via one batched pass. */
typedef struct {
    int64_t n;           /* rows (windows × ctx, BOS rows have no entries) */
    lp_sae_codes c;
} layer_codes;

int lp_reproduce_flow(const lp_reproduce_opts *o, lp_report *r) {
    const int quick = o->quick;
    lp_repro_sites_cfg sc = {.all_kinds = 1,
                             .harvest_tokens = quick ? 60000 : 400000,
                             .ctx = 128,
                             .d_sae = quick ? 256 : 512,
                             .k = 8,
                             .train_tokens = quick ? 150000 : 2000000};
    const int n_eval_windows = quick ? 64 : 256, C = 64, per_layer = quick ? 12 : 60, max_cands = quick ? 8 : 16;
    const int64_t val_tokens = quick ? 10000 : 60000;
    char *work = lp_path_join(o->out, "work/sites");
    lp_flow_sites S;
    memset(&S, 0, sizeof S);
    lp_flow fl;
    memset(&fl, 0, sizeof fl);
    lp_flow_val val;
    memset(&val, 0, sizeof val);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    deact d;
    memset(&d, 0, sizeof d);
    layer_codes lc[LP_FLOW_MAX_LAYERS];
    memset(lc, 0, sizeof lc);
    int *etok = NULL;
    float *eact = NULL, *epre = NULL;
    int64_t data_bytes = 0;
    double t_start = lp_now();
    lp_set_threads(1); /* a 64-wide model: threading overhead exceeds the work (6x slower on 2 busy cores) */
    int rc = work ? LP_OK : LP_ERR_NOMEM;
    if (!rc) rc = lp_repro_sites(o, &sc, work, &S, &data_bytes);
    if (!rc) rc = lp_model_load(&m, lp_reproduce_shared(o, "models/stories260K.bin"));
    if (!rc) rc = lp_tokenizer_load(&tok, lp_reproduce_shared(o, "models/tok512.bin"), m->cfg.vocab_size);
    if (rc) goto done;
    const int NL = S.n_layers, D = m->cfg.dim, bos = lp_tokenizer_bos(tok);
    const char *data = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    double t_train = lp_now() - t_start;

    /* 1. data-free matching */
    lp_flow_opts fo = {.thr = NULL, .q = 0.99, .null_samples = 4096, .seed = 0};
    if ((rc = lp_flow_compute(&fl, NL, S.sae[LP_FLOW_RES], S.sae[LP_FLOW_MLP], S.sae[LP_FLOW_ATT], &fo))) goto done;
    lp_report_text(r,
                   "Setting: stories260K (dim %d, %d layers), one TopK SAE (F = %d, k = %d, %lld training tokens) at each of the "
                   "%d sites (resid_post, mlp_out, attn_out per layer) of %lld harvested TinyStories tokens; every site has "
                   "its own initialisation seed. Matching is data-free: s(P) = max cosine of a residual feature's decoder row "
                   "with the decoder rows of P = R(L-1), M(L), A(L). Thresholds are the 99th percentile of s(P) for random "
                   "directions (chance level for that dictionary). Site SAEs took %.0fs (trained or reused).",
                   D, NL, sc.d_sae, sc.k, (long long)sc.train_tokens, NL * 3, (long long)sc.harvest_tokens, t_train);
    {
        const char *hdr[] = {"layer", "thr R", "thr M", "thr A", "mean s(R)", "mean s(M)", "mean s(A)", "translated",
                             "processed (MLP)", "processed (attn)", "newborn", "unexplained"};
        lp_report_table(r, "Classes of residual features per layer (share of the layer's features)", 12, hdr);
        for (int L = 0; L < NL; L++) {
            const lp_flow_layer *ly = &fl.layer[L];
            double ms[3] = {0, 0, 0};
            for (int p = 0; p < 3; p++)
                for (int f = 0; f < ly->F; f++) ms[p] += ly->s[p][f] / ly->F;
            char t[3][16], s[3][16];
            for (int p = 0; p < 3; p++) {
                snprintf(t[p], 16, ly->has[p] ? "%.3f" : "-", ly->thr[p]);
                snprintf(s[p], 16, ly->has[p] ? "%.3f" : "-", ms[p]);
            }
            lp_report_rowf(r, "%d|%s|%s|%s|%s|%s|%s|%.1f%%|%.1f%%|%.1f%%|%.1f%%|%.1f%%", L, t[0], t[1], t[2], s[0], s[1], s[2],
                           100.0 * ly->count[0] / ly->F, 100.0 * ly->count[1] / ly->F, 100.0 * ly->count[2] / ly->F,
                           100.0 * ly->count[3] / ly->F, 100.0 * ly->count[4] / ly->F);
            for (int c = 0; c < LP_FLOW_NCLASS; c++) {
                char key[64];
                snprintf(key, sizeof key, "layer%d_%s", L, lp_flow_class_name(c));
                lp_report_number(r, key, (double)ly->count[c] / ly->F);
            }
        }
    }
    {
        char *p = lp_path_join(o->out, "flow.json");
        rc = lp_flow_write_json(&fl, p);
        free(p);
        if (rc) goto done;
    }

    /* 2. validation on held-out text */
    {
        lp_sae *saes[LP_MAX_HOOKS];
        lp_hook_point at[LP_MAX_HOOKS];
        int n = 0;
        for (int L = 0; L < NL; L++)
            for (int p = 0; p < 3; p++) {
                if (!S.sae[p][L]) {
                    rc = lp_fail(LP_ERR_ARG, "flow: missing SAE at layer %d (%s)", L, lp_flow_src_name(p));
                    goto done;
                }
                saes[n] = S.sae[p][L];
                at[n++] = (lp_hook_point){L, lp_flow_src_hook_kind(p)};
            }
        val_ctx v = {&fl, &val, NL};
        if ((rc = lp_flow_val_init(&val, NL)) ||
            (rc = lp_site_codes(m, tok, n, saes, at, data, data_bytes, val_tokens, 128, val_cb, &v)))
            goto done;
        const char *hdr[] = {"class", "events", "R", "M", "A", "R+M", "R+A", "M+A", "R+M+A", "nowhere", "R among them"};
        lp_report_table(r,
                        "Validation on held-out text: for (feature, token) activations at layers 1..4, which of the feature's "
                        "top-1 predecessors (R(L-1), M(L), A(L)) are active on the same token",
                        11, hdr);
        static const int order[8] = {1, 2, 4, 3, 5, 6, 7, 0};
        double r_share[LP_FLOW_NCLASS] = {0};
        for (int c = 0; c < LP_FLOW_NCLASS; c++) {
            int64_t row[8] = {0}, tot = 0;
            for (int L = 1; L < NL; L++)
                for (int g = 0; g < 8; g++) {
                    int64_t x = val.counts[((int64_t)L * LP_FLOW_NCLASS + c) * LP_FLOW_NGROUPS + g];
                    row[g] += x, tot += x;
                }
            char cells[8][16];
            for (int g = 0; g < 8; g++) snprintf(cells[g], 16, "%.1f%%", tot ? 100.0 * row[order[g]] / tot : 0.0);
            r_share[c] = tot ? (double)(row[1] + row[3] + row[5] + row[7]) / tot : 0;
            lp_report_rowf(r, "%s|%lld|%s|%s|%s|%s|%s|%s|%s|%s|%.1f%%", lp_flow_class_name(c), (long long)tot, cells[0], cells[1],
                           cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], 100 * r_share[c]);
            char key[64];
            snprintf(key, sizeof key, "val_r_share_%s", lp_flow_class_name(c));
            lp_report_number(r, key, r_share[c]);
        }
        char a[128], b[128];
        snprintf(b, sizeof b, "R predecessor co-active: translated %.1f%% vs newborn %.1f%% (%lld tokens)",
                 100 * r_share[LP_FLOW_TRANSLATED], 100 * r_share[LP_FLOW_NEWBORN], (long long)val.tokens);
        snprintf(a, sizeof a, "matches validated by co-activation");
        lp_report_claim(r,
                        "Data-free matches agree with activations: features whose residual match is strong (translated) "
                        "co-activate with that predecessor more often than newborn features do",
                        a, b, r_share[LP_FLOW_TRANSLATED] > r_share[LP_FLOW_NEWBORN]);
    }

    /* 3. an example flow graph: the most frequent feature of the last layer among translated/processed */
    {
        /* firing counts at R_{NL-1} from the validation pass are not kept; use
         * the feature with the highest s(R) among processed ones instead */
        const lp_flow_layer *ly = &fl.layer[NL - 1];
        int best = 0;
        for (int f = 1; f < ly->F; f++)
            if (ly->s[LP_FLOW_RES][f] > ly->s[LP_FLOW_RES][best]) best = f;
        lp_flow_graph g;
        if ((rc = lp_flow_graph_build(&fl, NL - 1, best, &g))) goto done;
        char *labels[4 * LP_FLOW_MAX_LAYERS] = {0};
        float *sc = malloc((size_t)m->cfg.vocab_size * sizeof(float));
        for (int k = 0; k < g.n_nodes && sc; k++) {
            const lp_sae *s = S.sae[g.node[k].kind][g.node[k].layer];
            int top[3];
            if (lp_lens(m, s->p[LP_SAE_W_DEC] + (int64_t)g.node[k].feature * D, sc)) continue;
            lp_lens_top(sc, m->cfg.vocab_size, 3, top, NULL);
            char a[40], b[40], c3[40];
            cell_piece(lp_tokenizer_piece(tok, top[0]), a, sizeof a);
            cell_piece(lp_tokenizer_piece(tok, top[1]), b, sizeof b);
            cell_piece(lp_tokenizer_piece(tok, top[2]), c3, sizeof c3);
            labels[k] = malloc(160);
            if (labels[k]) snprintf(labels[k], 160, "'%s' '%s' '%s'", a, b, c3);
        }
        free(sc);
        char name[64], dname[64];
        snprintf(name, sizeof name, "graph_L%d_f%d.json", NL - 1, best);
        char *pj = lp_path_join(o->out, name);
        snprintf(dname, sizeof dname, "graph_L%d_f%d.dot", NL - 1, best);
        char *pd = lp_path_join(o->out, dname);
        rc = lp_flow_graph_write_json(&g, (const char *const *)labels, pj);
        if (!rc) rc = lp_flow_graph_write_dot(&g, (const char *const *)labels, pd);
        const char *hdr[] = {"from", "to", "cos", "strong", "from: logit-lens top tokens"};
        char cap[256];
        snprintf(cap, sizeof cap,
                 "Flow graph of residual feature %d at layer %d (%s; the layer's feature with the strongest residual match), "
                 "also in %s and %s",
                 best, NL - 1, lp_flow_class_name(ly->cls[best]), name, dname);
        lp_report_table(r, cap, 5, hdr);
        for (int k = 0; k < g.n_edges; k++) {
            const lp_flow_node *a = &g.node[g.edge[k].from], *b = &g.node[g.edge[k].to];
            lp_report_rowf(r, "%s%d #%d|res%d #%d|%.3f|%s|%s", lp_flow_src_name(a->kind), a->layer, a->feature, b->layer,
                           b->feature, g.edge[k].cos, g.edge[k].strong ? "yes" : "no",
                           labels[g.edge[k].from] ? labels[g.edge[k].from] : "");
        }
        for (int k = 0; k < g.n_nodes; k++) free(labels[k]);
        free(pj);
        free(pd);
        if (rc) goto done;
    }

    /* 4. deactivation experiment */
    {
        const int W = n_eval_windows, N = W * C;
        etok = malloc((size_t)N * sizeof(int));
        eact = lp_malloc_aligned((size_t)N * D * sizeof(float));
        int maxF = 0;
        for (int L = 0; L < NL; L++) maxF = S.sae[LP_FLOW_RES][L]->cfg.d_sae > maxF ? S.sae[LP_FLOW_RES][L]->cfg.d_sae : maxF;
        epre = lp_malloc_aligned((size_t)N * maxF * sizeof(float));
        d.m = m, d.S = &S, d.C = C, d.bos = bos;
        d.btok = malloc((size_t)MAXW * C * sizeof(int));
        d.cap = lp_malloc_aligned((size_t)MAXW * C * D * sizeof(float));
        d.rows = lp_malloc_aligned((size_t)MAXW * C * D * sizeof(float));
        d.pre = lp_malloc_aligned((size_t)MAXW * C * maxF * sizeof(float));
        if (!etok || !eact || !epre || !d.btok || !d.cap || !d.rows || !d.pre) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        /* eval windows: held-out text after the validation tokens */
        lp_windows w;
        if ((rc = lp_windows_open(&w, data, data_bytes + val_tokens * 5, tok, C))) goto done;
        int nb = 0;
        rc = lp_windows_next(&w, W, etok, NULL, &nb);
        lp_windows_close(&w);
        if (!rc && nb < W) rc = lp_fail(LP_ERR_ARG, "%s: not enough held-out text for %d windows", data, W);
        if (rc) goto done;
        if ((rc = lp_runner_new(&d.r, m, W, C))) goto done;
        /* clean codes of every residual layer over all eval rows (BOS rows zeroed → no codes for them) */
        for (int L = 0; L < NL && !rc; L++) {
            lp_splice cap;
            lp_hooks h;
            lp_hooks_clear(&h);
            if ((rc = lp_splice_init(&cap, LP_SPLICE_CAPTURE, NULL, bos, N, D))) break;
            cap.captured = eact;
            lp_hooks_add(&h, (lp_hook_point){L, LP_HOOK_RESID_POST}, lp_splice_hook, &cap);
            rc = lp_forward(d.r, etok, W, C, 0, &h, LP_LOGITS_NONE, NULL);
            lp_splice_free(&cap);
            for (int64_t i = 0; i < N && !rc; i++)
                if (etok[i] == bos) memset(eact + i * D, 0, (size_t)D * sizeof(float));
            if (!rc) rc = lp_sae_encode(S.sae[LP_FLOW_RES][L], eact, N, epre, &lc[L].c, 0);
            lc[L].n = N;
        }
        lp_runner_free(d.r);
        d.r = NULL;
        if (rc || (rc = lp_runner_new(&d.r, m, MAXW, C))) goto done;
        /* per layer: sample targets among features active on >= 4 eval rows */
        lp_rng rng;
        lp_rng_seed(&rng, 7);
        deact_stats all = {0};
        const char *hdr[] = {"layer", "targets", "top-1 cosine", "random co-active", "exhaustive (co-active)",
                             "mean change top-1", "mean change random", "mean change exhaustive", "top-1 among co-active"};
        lp_report_table(r,
                        "Deactivation: remove a residual feature's predecessor at R(L-1) (h <- h - a_p d_p on every token) "
                        "and count the targets whose mean activation over their active tokens at least halves",
                        9, hdr);
        int64_t *cnt = malloc((size_t)maxF * 4 * sizeof(int64_t)); /* fires [F], co-active counts [Fp], pairs [2 Fp] */
        int64_t *trows = malloc((size_t)N * sizeof(int64_t));
        int *wins = malloc((size_t)W * 2 * sizeof(int));
        int64_t *sel_rows = malloc((size_t)MAXW * C * sizeof(int64_t));
        if (!cnt || !trows || !wins || !sel_rows) rc = LP_ERR_NOMEM;
        for (int L = 1; L < NL && !rc; L++) {
            const lp_flow_layer *ly = &fl.layer[L];
            const int F = ly->F, Fp = S.sae[LP_FLOW_RES][L - 1]->cfg.d_sae;
            const lp_sae_codes *cc = &lc[L].c, *cp = &lc[L - 1].c;
            /* firing counts per feature */
            int64_t *fires = cnt;
            memset(fires, 0, (size_t)F * sizeof(int64_t));
            for (int64_t q = 0; q < cc->rowptr[N]; q++)
                if (cc->val[q] > 0) fires[cc->idx[q]]++;
            int *eligible = malloc((size_t)F * sizeof(int)), ne = 0;
            if (!eligible) {
                rc = LP_ERR_NOMEM;
                break;
            }
            for (int f = 0; f < F; f++)
                if (fires[f] >= 4) eligible[ne++] = f;
            for (int i = ne - 1; i > 0; i--) { /* shuffle */
                int j = (int)lp_rng_below(&rng, (uint64_t)i + 1), t = eligible[i];
                eligible[i] = eligible[j], eligible[j] = t;
            }
            deact_stats ls = {0};
            for (int e = 0; e < ne && e < per_layer && !rc; e++) {
                const int f = eligible[e];
                /* rows where f fires, windows by count */
                int nt = 0;
                for (int64_t i = 0; i < N; i++)
                    for (int64_t q = cc->rowptr[i]; q < cc->rowptr[i + 1]; q++)
                        if (cc->idx[q] == f && cc->val[q] > 0) trows[nt++] = i;
                memset(wins, 0, (size_t)W * 2 * sizeof(int));
                for (int i = 0; i < nt; i++) wins[2 * (trows[i] / C)]++;
                for (int wi = 0; wi < W; wi++) wins[2 * wi + 1] = wi;
                /* pick the MAXW windows with most target rows (selection by repeated max) */
                int chosen[MAXW], nw = 0;
                for (; nw < MAXW; nw++) {
                    int bw = -1;
                    for (int wi = 0; wi < W; wi++)
                        if (wins[2 * wi] > 0 && (bw < 0 || wins[2 * wi] > wins[2 * bw])) bw = wi;
                    if (bw < 0) break;
                    chosen[nw] = bw;
                    wins[2 * bw] = 0;
                }
                d.nw = nw;
                int nr = 0;
                for (int k = 0; k < nw; k++) {
                    memcpy(d.btok + (int64_t)k * C, etok + (int64_t)chosen[k] * C, (size_t)C * sizeof(int));
                    for (int i = 0; i < nt; i++)
                        if (trows[i] / C == chosen[k]) sel_rows[nr++] = (int64_t)k * C + trows[i] % C;
                }
                /* co-active predecessors on those rows, by count */
                int64_t *pc = cnt + maxF; /* [Fp] counts, reused as pairs below */
                memset(pc, 0, (size_t)Fp * sizeof(int64_t));
                for (int k = 0; k < nw; k++)
                    for (int i = 0; i < nr; i++) {
                        if (sel_rows[i] / C != k) continue;
                        int64_t gi = (int64_t)chosen[k] * C + sel_rows[i] % C;
                        for (int64_t q = cp->rowptr[gi]; q < cp->rowptr[gi + 1]; q++)
                            if (cp->val[q] > 0) pc[cp->idx[q]]++;
                    }
                /* the max_cands predecessors most often co-active, as (count, id) pairs */
                int64_t *pairs = pc + Fp;
                int npair = 0;
                for (int p = 0; p < Fp; p++)
                    if (pc[p]) pairs[2 * npair] = pc[p], pairs[2 * npair + 1] = p, npair++;
                qsort(pairs, (size_t)npair, 2 * sizeof(int64_t), cmp_desc_i64);
                if (npair > max_cands) npair = max_cands;
                double base, after;
                if ((rc = run_removal(&d, L, -1, f, sel_rows, nr, &base))) break;
                if (base <= 0) continue;
                const int top1 = ly->top[LP_FLOW_RES][f];
                int in_cands = 0;
                double best = base;
                for (int c = 0; c < npair && !rc; c++) {
                    int p = (int)pairs[2 * c + 1];
                    if (p == top1) in_cands = 1;
                    if ((rc = run_removal(&d, L, p, f, sel_rows, nr, &after))) break;
                    best = after < best ? after : best;
                }
                double a1;
                if (rc || (rc = run_removal(&d, L, top1, f, sel_rows, nr, &a1))) break;
                best = a1 < best ? a1 : best;
                /* random co-active predecessor other than the top-1 (any feature if none) */
                int rp = -1, tries = 0;
                while (tries++ < 16) {
                    rp = npair > 0 ? (int)pairs[2 * lp_rng_below(&rng, (uint64_t)npair) + 1] : (int)lp_rng_below(&rng, (uint64_t)Fp);
                    if (rp != top1) break;
                }
                double ar;
                if ((rc = run_removal(&d, L, rp, f, sel_rows, nr, &ar))) break;
                ls.n++;
                ls.top1_ok += a1 <= 0.5 * base;
                ls.rand_ok += ar <= 0.5 * base;
                ls.exh_ok += best <= 0.5 * base;
                ls.top1_in_cands += in_cands;
                ls.top1_rel += (a1 - base) / base;
                ls.rand_rel += (ar - base) / base;
                ls.exh_rel += (best - base) / base;
            }
            free(eligible);
            if (rc) break;
            if (ls.n)
                lp_report_rowf(r, "%d|%d|%.1f%%|%.1f%%|%.1f%%|%+.1f%%|%+.1f%%|%+.1f%%|%.0f%%", L, ls.n, 100.0 * ls.top1_ok / ls.n,
                               100.0 * ls.rand_ok / ls.n, 100.0 * ls.exh_ok / ls.n, 100 * ls.top1_rel / ls.n,
                               100 * ls.rand_rel / ls.n, 100 * ls.exh_rel / ls.n, 100.0 * ls.top1_in_cands / ls.n);
            all.n += ls.n, all.top1_ok += ls.top1_ok, all.rand_ok += ls.rand_ok, all.exh_ok += ls.exh_ok;
            all.top1_in_cands += ls.top1_in_cands;
            all.top1_rel += ls.top1_rel, all.rand_rel += ls.rand_rel, all.exh_rel += ls.exh_rel;
        }
        free(cnt), free(trows), free(wins), free(sel_rows);
        if (rc) goto done;
        if (!all.n) {
            rc = lp_fail(LP_ERR_ARG, "flow: no feature fired on the held-out windows");
            goto done;
        }
        double s1 = 100.0 * all.top1_ok / all.n, sr = 100.0 * all.rand_ok / all.n, se = 100.0 * all.exh_ok / all.n;
        lp_report_rowf(r, "all|%d|%.1f%%|%.1f%%|%.1f%%|%+.1f%%|%+.1f%%|%+.1f%%|%.0f%%", all.n, s1, sr, se,
                       100 * all.top1_rel / all.n, 100 * all.rand_rel / all.n, 100 * all.exh_rel / all.n,
                       100.0 * all.top1_in_cands / all.n);
        lp_report_number(r, "deact_top1_success", s1 / 100);
        lp_report_number(r, "deact_random_success", sr / 100);
        lp_report_number(r, "deact_exhaustive_success", se / 100);
        lp_report_number(r, "deact_targets", all.n);
        char b[160];
        snprintf(b, sizeof b, "%.1f%% of %d targets", s1, all.n);
        lp_report_claim(r, "Removing a feature's top-1 cosine predecessor at the previous residual layer deactivates it "
                           "(activation at least halved)", "65%", b, fabs(s1 - 65) <= 15);
        snprintf(b, sizeof b, "%.1f%% (best of the top-1 and up to %d co-active predecessors)", se, max_cands);
        lp_report_claim(r, "An exhaustive search over predecessors does a little better", "73%", b, fabs(se - 73) <= 15 && se >= s1);
        snprintf(b, sizeof b, "top-1 %.1f%% vs random co-active predecessor %.1f%%", s1, sr);
        lp_report_claim(r, "The cosine match is a real handle: far better than a random predecessor", "65% vs (random not reported)",
                        b, s1 >= 2 * sr && s1 - sr >= 20);
        snprintf(b, sizeof b, "%.1f / %.1f = %.2f", s1, se, se > 0 ? s1 / se : 0);
        lp_report_claim(r,
                        "The data-free top-1 match gets most of what an exhaustive search gets (ratio of success rates; "
                        "agreement within 0.1)",
                        "65 / 73 = 0.89", b, se > 0 && fabs(s1 / se - 65.0 / 73.0) <= 0.1);
        lp_report_number(r, "deact_top1_over_exhaustive", se > 0 ? s1 / se : 0);
        lp_report_text(r,
                       "Deactivation protocol: %d held-out windows of %d tokens; per layer up to %d target features firing on "
                       ">= 4 tokens, each run on its (up to) %d windows with the most activations. Success = the target's mean "
                       "activation over its clean active tokens at least halves. The paper does not spell out its success "
                       "criterion in the abstract; this is loupe's. 'Exhaustive' searches the top-1 match and the %d "
                       "predecessors most often co-active with the target, not every feature. Why the absolute rates "
                       "are lower than the paper's: stories260K's residual stream has 64 dimensions holding %d features per "
                       "site, so a feature's pre-activation sums many overlapping predecessors and removing one rarely halves "
                       "it (the mean change shows the effect is real, and %.0f times the random baseline's); the paper used "
                       "Gemma 2 2B and LLaMA 3.1 8B with far wider residual streams, and its own success criterion.",
                       W, C, per_layer, MAXW, max_cands, sc.d_sae,
                       all.rand_rel < 0 ? all.top1_rel / all.rand_rel : 0.0);
    }
    lp_report_text(r, "Total time %.0fs (site SAEs %.0fs).", lp_now() - t_start, t_train);
done:
    for (int L = 0; L < LP_FLOW_MAX_LAYERS; L++) lp_codes_free(&lc[L].c);
    lp_runner_free(d.r);
    free(d.btok);
    lp_free(d.cap);
    lp_free(d.rows);
    lp_free(d.pre);
    lp_codes_free(&d.codes);
    free(etok);
    lp_free(eact);
    lp_free(epre);
    lp_flow_val_free(&val);
    lp_flow_free(&fl);
    lp_flow_sites_free(&S);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(work);
    return rc;
}
