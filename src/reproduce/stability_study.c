/* stability_study.c — the stability analysis of N seeds of one SAE config,
 * end to end (see stability_study.h): matching and scores, functional
 * asymmetry on a store and with the SAE spliced into the model, trigger
 * tokens and frequencies by stability bin, and subspaces of the unstable
 * latents; plus writing it all as CSV + JSON. Progress goes to stderr. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"
#include "loupe/store.h"
#include "loupe/subspace.h"
#include "reproduce/stability_study.h"

void lp_study_opts_default(lp_study_opts *o) {
    memset(o, 0, sizeof *o);
    o->tau = 0.7f;
    o->s_min = 0.5f;
    o->mode = LP_MATCH_DEC;
    o->one_to_one = 1;
    const float taus[] = {0.5f, 0.6f, 0.7f, 0.8f, 0.9f, 0.95f};
    o->n_taus = 6;
    memcpy(o->taus, taus, sizeof taus);
    o->store_rows = 200000;
    o->topn = 20;
    o->purity_min = 0.5f;
    o->common_mass = 0.5f;
    o->eval_tokens = 20000;
    o->ctx = 128;
    o->energy = 0.5f;
    o->random_trials = 200;
}

void lp_study_free(lp_study *s) {
    if (!s) return;
    lp_stability_free(&s->st);
    void *ptrs[] = {s->score, s->score_hung, s->n_stable, s->ev_full, s->ev_stable, s->ev_unstable, s->l0_full,
                    s->l0_stable, s->l0_unstable, s->ce_clean, s->ce_zero, s->ce_full, s->ce_stable, s->ce_unstable,
                    s->ev_matched, s->l0_matched, s->ce_matched,
                    s->freq, s->purity, s->modal_tok, s->rare_modal, s->top_tok, s->n_unstable, s->overlap,
                    s->angle_median, s->angle_min, s->ctrl_stable, s->ctrl_data};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) free(ptrs[i]);
    memset(s, 0, sizeof *s);
}

static double *nan_array(int64_t n) {
    double *a = lp_malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (a)
        for (int64_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static double median_f(float *v, int64_t n) {
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void say(const lp_study_opts *o, const char *fmt, const char *a, double x) {
    if (!o->verbose) return;
    fprintf(stderr, "stability: ");
    fprintf(stderr, fmt, a, x);
    fprintf(stderr, "\n");
}

/* ---- functional asymmetry on a store ------------------------------------------ */
static int store_part(lp_sae *const *saes, int n, const lp_study_opts *o, lp_study *r, uint8_t *const *masks) {
    lp_store *st = NULL;
    int rc = lp_store_open(&st, o->store, o->store_hook);
    if (rc) return rc;
    int64_t rows = o->store_rows > 0 ? o->store_rows : 200000;
    if (rows > lp_store_count(st)) rows = lp_store_count(st);
    int32_t *tok = lp_malloc((size_t)rows * sizeof(int32_t));
    int32_t *cnt = NULL;
    int64_t vmax = 0;
    uint8_t *common = NULL;
    if (!tok) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    if ((rc = lp_store_tokens(st, 0, rows, tok, NULL, NULL))) goto done;
    for (int64_t i = 0; i < rows; i++)
        if (tok[i] + 1 > vmax) vmax = tok[i] + 1;
    cnt = lp_calloc((size_t)vmax + 1, sizeof(int32_t));
    common = lp_calloc((size_t)vmax + 1, 1);
    if (!cnt || !common) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < rows; i++)
        if (tok[i] >= 0) cnt[tok[i]]++;
    { /* common tokens: the most frequent ones making up common_mass of the rows */
        int32_t *ord = lp_malloc((size_t)(vmax + 1) * sizeof(int32_t));
        if (!ord) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        for (int64_t v = 0; v < vmax; v++) ord[v] = (int32_t)v;
        for (int64_t v = 1; v < vmax; v++) { /* insertion sort by count, descending (vocab is small) */
            int32_t x = ord[v];
            int64_t j = v - 1;
            while (j >= 0 && cnt[ord[j]] < cnt[x]) ord[j + 1] = ord[j], j--;
            ord[j + 1] = x;
        }
        int64_t acc = 0;
        for (int64_t v = 0; v < vmax && acc < o->common_mass * rows; v++) acc += cnt[ord[v]], common[ord[v]] = 1;
        free(ord);
    }
    const int topn = o->topn;
    r->topn = topn;
    r->freq = lp_malloc((size_t)r->total * sizeof(float));
    r->purity = lp_malloc((size_t)r->total * sizeof(float));
    r->modal_tok = lp_malloc((size_t)r->total * sizeof(int32_t));
    r->rare_modal = lp_calloc((size_t)r->total, 1);
    r->top_tok = lp_malloc((size_t)(r->total * (topn > 0 ? topn : 1)) * sizeof(int32_t));
    if (!r->freq || !r->purity || !r->modal_tok || !r->rare_modal || !r->top_tok) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int a = 0; a < n && !rc; a++) {
        const uint8_t *mk[3] = {masks[3 * a], masks[3 * a + 1], masks[3 * a + 2]};
        lp_latent_opts lo = {.start = 0, .rows = rows, .topn = topn, .n_masks = 3, .masks = mk};
        lp_latent_stats ls;
        if ((rc = lp_latent_stats_compute(saes[a], st, &lo, &ls))) break;
        r->ev_full[a] = ls.ev, r->ev_stable[a] = ls.ev_mask[0], r->ev_unstable[a] = ls.ev_mask[1];
        r->l0_full[a] = ls.l0, r->l0_stable[a] = ls.l0_mask[0], r->l0_unstable[a] = ls.l0_mask[1];
        r->ev_matched[a] = ls.ev_mask[2], r->l0_matched[a] = ls.l0_mask[2];
        const int64_t off = r->st.off[a];
        for (int64_t f = 0; f < r->st.F[a]; f++) {
            const int64_t g = off + f;
            r->freq[g] = (float)((double)ls.fires[f] / ls.rows);
            int32_t *tt = r->top_tok + g * topn;
            int m = 0;
            for (int q = 0; q < topn; q++) {
                int64_t row = ls.top_row[f * topn + q];
                tt[q] = row >= 0 ? tok[row] : -1;
                m += row >= 0;
            }
            r->modal_tok[g] = -1;
            r->purity[g] = NAN;
            if (m == 0) continue;
            int best = 0;
            for (int q = 0; q < m; q++) {
                int c = 0;
                for (int p = 0; p < m; p++) c += tt[p] == tt[q];
                if (c > best) best = c, r->modal_tok[g] = tt[q];
            }
            r->purity[g] = (float)best / (float)m;
            int32_t mt = r->modal_tok[g];
            r->rare_modal[g] = r->purity[g] >= o->purity_min && mt >= 0 && mt < vmax && !common[mt];
        }
        say(o, "%sheld-out store: EV of the full SAE %.4f (and of each group)", "", ls.ev);
        lp_latent_stats_free(&ls);
    }
    if (!rc) r->have_store = 1;
done:
    free(tok);
    free(cnt);
    free(common);
    lp_store_close_reader(st);
    return rc;
}

/* ---- CE with the SAE spliced in, by group ------------------------------------ */
static int ce_part(lp_sae *const *saes, int n, const lp_study_opts *o, lp_study *r, uint8_t *const *masks) {
    int ns = o->ce_saes > 0 && o->ce_saes < n ? o->ce_saes : n;
    for (int a = 0; a < ns; a++) {
        lp_hook_point hp;
        int rc = lp_hook_parse(saes[a]->cfg.hook, o->model->cfg.n_layers, &hp);
        if (rc) return rc;
        for (int g = 0; g < 4; g++) {
            lp_lm_eval_opts eo = {.tokens = o->eval_tokens, .ctx = o->ctx, .batch = 16, .skip_bytes = o->skip_bytes,
                                  .keep = g == 0 ? NULL : masks[3 * a + g - 1]};
            lp_lm_eval_result er;
            if ((rc = lp_lm_eval(o->model, o->tok, saes[a], hp, o->data, &eo, &er))) return rc;
            double *dst = g == 0 ? r->ce_full : g == 1 ? r->ce_stable : g == 2 ? r->ce_unstable : r->ce_matched;
            dst[a] = er.ce_sae;
            r->ce_clean[a] = er.ce_clean;
            r->ce_zero[a] = er.ce_zero;
            lp_lm_eval_free(&er);
        }
        say(o, "%sCE with the SAE spliced in: full %.4f", "", r->ce_full[a]);
    }
    r->have_ce = 1;
    return LP_OK;
}

/* ---- subspaces --------------------------------------------------------------- */
static int collect_rows(const lp_sae *s, const float *score, float s_min, int unstable, float *out, int64_t *m) {
    const int d = s->cfg.d_in;
    int64_t k = 0;
    for (int64_t f = 0; f < s->cfg.d_sae; f++)
        if ((score[f] < s_min) == unstable) memcpy(out + k * d, s->p[LP_SAE_W_DEC] + f * d, (size_t)d * sizeof(float)), k++;
    *m = k;
    return LP_OK;
}

static int data_basis(const lp_study_opts *o, int d, int r, float *Q) {
    lp_store *st = NULL;
    int rc = lp_store_open(&st, o->store, o->store_hook);
    if (rc) return rc;
    int64_t rows = lp_store_count(st) < 50000 ? lp_store_count(st) : 50000;
    float *x = lp_malloc((size_t)rows * d * sizeof(float));
    double *mu = lp_calloc((size_t)d, sizeof(double));
    if (!x || !mu) rc = LP_ERR_NOMEM;
    if (!rc) rc = lp_store_read(st, 0, rows, x);
    if (!rc) {
        for (int64_t i = 0; i < rows; i++)
            for (int j = 0; j < d; j++) mu[j] += x[i * d + j] / rows;
        for (int64_t i = 0; i < rows; i++)
            for (int j = 0; j < d; j++) x[i * d + j] -= (float)mu[j];
        rc = lp_subspace_basis(x, rows, d, r, Q, NULL);
    }
    free(x);
    free(mu);
    lp_store_close_reader(st);
    return rc;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int subspace_part(lp_sae *const *saes, int n, const lp_study_opts *o, lp_study *r) {
    const int d = saes[0]->cfg.d_in;
    int64_t maxF = 0;
    for (int a = 0; a < n; a++) maxF = r->st.F[a] > maxF ? r->st.F[a] : maxF;
    float *rows = lp_malloc((size_t)maxF * d * sizeof(float));
    float *Qu = lp_malloc((size_t)n * d * d * sizeof(float)), *Qs = lp_malloc((size_t)n * d * d * sizeof(float));
    float *Qd = lp_malloc((size_t)d * d * sizeof(float));
    double *sv = lp_malloc((size_t)d * sizeof(double)), *cosv = lp_malloc((size_t)d * sizeof(double));
    int64_t *ns = lp_calloc((size_t)n, sizeof(int64_t));
    int rc = LP_OK;
    if (!rows || !Qu || !Qs || !Qd || !sv || !cosv || !ns) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    int rank = d;
    for (int a = 0; a < n && !rc; a++) {
        int64_t m = 0;
        collect_rows(saes[a], r->score + r->st.off[a], o->s_min, 1, rows, &m);
        r->n_unstable[a] = m;
        if (m == 0) {
            rank = 0;
            continue;
        }
        if ((rc = lp_subspace_basis(rows, m, d, d, Qu + (int64_t)a * d * d, sv))) break;
        int ra = lp_subspace_rank(sv, m < d ? (int)m : d, o->energy);
        if (ra < rank) rank = ra;
        if (m < rank) rank = (int)m;
        collect_rows(saes[a], r->score + r->st.off[a], o->s_min, 0, rows, &m);
        ns[a] = m;
        if (m > 0 && (rc = lp_subspace_basis(rows, m, d, d, Qs + (int64_t)a * d * d, NULL))) break;
    }
    if (rc) goto done;
    if (o->rank > 0 && rank > 0) rank = o->rank < d ? o->rank : d - 1;
    if (rank >= d) rank = d - 1;
    r->rank = rank;
    r->d = d;
    if (rank <= 0) goto done; /* some SAE has no unstable latents */
    if ((rc = lp_subspace_random_overlap(d, rank, o->random_trials, 12345, &r->rand_mean, &r->rand_p95))) goto done;
    r->rand_expected = (double)rank / d;
    int have_data = o->store != NULL;
    if (have_data && (rc = data_basis(o, d, rank, Qd))) goto done;
    double so = 0, sc = 0, sd = 0, sa = 0;
    int np = 0, nc = 0, nd = 0;
    for (int a = 0; a < n; a++) {
        const float *Qa = Qu + (int64_t)a * d * d;
        if (have_data) {
            double ov;
            if ((rc = lp_subspace_compare(Qa, rank, Qd, rank, d, NULL, &ov))) goto done;
            r->ctrl_data[a] = ov, sd += ov, nd++;
        }
        for (int b = 0; b < n; b++) {
            if (a == b) continue;
            const int q = a * n + b;
            double ov;
            if ((rc = lp_subspace_compare(Qa, rank, Qu + (int64_t)b * d * d, rank, d, cosv, &ov))) goto done;
            r->overlap[q] = ov;
            double *deg = lp_malloc((size_t)rank * sizeof(double));
            if (!deg) {
                rc = LP_ERR_NOMEM;
                goto done;
            }
            for (int k = 0; k < rank; k++) deg[k] = acos(cosv[k] > 1 ? 1 : cosv[k]) * 180.0 / M_PI;
            qsort(deg, (size_t)rank, sizeof *deg, cmp_double);
            r->angle_min[q] = deg[0];
            r->angle_median[q] = rank % 2 ? deg[rank / 2] : 0.5 * (deg[rank / 2 - 1] + deg[rank / 2]);
            free(deg);
            so += ov, sa += r->angle_median[q], np++;
            if (ns[b] >= rank) {
                if ((rc = lp_subspace_compare(Qa, rank, Qs + (int64_t)b * d * d, rank, d, NULL, &ov))) goto done;
                r->ctrl_stable[q] = ov, sc += ov, nc++;
            }
        }
    }
    r->overlap_mean = np ? so / np : NAN;
    r->angle_median_mean = np ? sa / np : NAN;
    r->ctrl_stable_mean = nc ? sc / nc : NAN;
    r->ctrl_data_mean = nd ? sd / nd : NAN;
done:
    free(rows), free(Qu), free(Qs), free(Qd), free(sv), free(cosv), free(ns);
    return rc;
}

/* ---- the whole study ------------------------------------------------------------- */
int lp_study_run(lp_sae *const *saes, const char *const *names, int n, const lp_study_opts *o, lp_study *r) {
    memset(r, 0, sizeof *r);
    int rc = lp_stability_check((const lp_sae *const *)saes, names, n);
    if (rc) return rc;
    if (!(o->tau > -1 && o->tau <= 1)) return lp_fail(LP_ERR_ARG, "--tau %g must lie in (-1, 1]", o->tau);
    if (!(o->s_min >= 0 && o->s_min <= 1)) return lp_fail(LP_ERR_ARG, "--stable %g must lie in [0, 1]", o->s_min);
    if (o->n_taus < 0 || o->n_taus > LP_STUDY_MAX_TAUS) return lp_fail(LP_ERR_ARG, "too many thresholds in the sweep");
    r->n = n;
    if ((rc = lp_stability_match(&r->st, (const lp_sae *const *)saes, n, o->mode, o->one_to_one))) return rc;
    say(o, "%smatched every pair (%g pairs)", "", n * (n - 1) / 2.0);
    r->total = r->st.off[n];
    r->score = lp_malloc((size_t)r->total * sizeof(float));
    r->score_hung = o->one_to_one ? lp_malloc((size_t)r->total * sizeof(float)) : NULL;
    r->n_stable = lp_calloc((size_t)n, sizeof(int64_t));
    r->n_unstable = lp_calloc((size_t)n, sizeof(int64_t));
    double **arr[] = {&r->ev_full, &r->ev_stable, &r->ev_unstable, &r->l0_full, &r->l0_stable, &r->l0_unstable,
                      &r->ce_clean, &r->ce_zero, &r->ce_full, &r->ce_stable, &r->ce_unstable, &r->ctrl_data,
                      &r->ev_matched, &r->l0_matched, &r->ce_matched};
    for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++)
        if (!(*arr[i] = nan_array(n))) rc = LP_ERR_NOMEM;
    double **arr2[] = {&r->overlap, &r->angle_median, &r->angle_min, &r->ctrl_stable};
    for (size_t i = 0; i < sizeof arr2 / sizeof arr2[0]; i++)
        if (!(*arr2[i] = nan_array((int64_t)n * n))) rc = LP_ERR_NOMEM;
    uint8_t **masks = lp_calloc((size_t)3 * n, sizeof(uint8_t *)); /* per SAE: stable, unstable, matched */
    if (rc || !r->score || (o->one_to_one && !r->score_hung) || !r->n_stable || !r->n_unstable || !masks) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    if ((rc = lp_stability_scores(&r->st, o->tau, 0, r->score))) goto done;
    if (o->one_to_one && (rc = lp_stability_scores(&r->st, o->tau, 1, r->score_hung))) goto done;
    if ((rc = lp_stability_summarise(&r->st, o->tau, o->s_min, 0, &r->sum))) goto done;
    if (o->one_to_one && (rc = lp_stability_summarise(&r->st, o->tau, o->s_min, 1, &r->sum_hung))) goto done;
    for (int t = 0; t < o->n_taus; t++) {
        lp_stability_summary s;
        if ((rc = lp_stability_summarise(&r->st, o->taus[t], o->s_min, 0, &s))) goto done;
        r->sweep_max[t] = s.frac_stable;
        r->sweep_hung[t] = NAN;
        if (o->one_to_one) {
            if ((rc = lp_stability_summarise(&r->st, o->taus[t], o->s_min, 1, &s))) goto done;
            r->sweep_hung[t] = s.frac_stable;
        }
    }
    for (int a = 0; a < n; a++) {
        const int64_t F = r->st.F[a];
        masks[3 * a] = lp_malloc((size_t)F);
        masks[3 * a + 1] = lp_malloc((size_t)F);
        masks[3 * a + 2] = lp_calloc((size_t)F, 1);
        if (!masks[3 * a] || !masks[3 * a + 1] || !masks[3 * a + 2]) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        for (int64_t f = 0; f < F; f++) {
            int s = r->score[r->st.off[a] + f] >= o->s_min;
            masks[3 * a][f] = (uint8_t)s;
            masks[3 * a + 1][f] = (uint8_t)!s;
            r->n_stable[a] += s;
        }
        /* control: as many unstable latents as there are stable ones, drawn at random */
        int64_t want = r->n_stable[a], left = F - r->n_stable[a];
        lp_rng rng;
        lp_rng_seed(&rng, 1000 + (uint64_t)a);
        for (int64_t f = 0; f < F && want > 0; f++) {
            if (masks[3 * a][f]) continue;
            if (lp_rng_below(&rng, (uint64_t)left) < (uint64_t)want) masks[3 * a + 2][f] = 1, want--;
            left--;
        }
    }
    if (o->store && (rc = store_part(saes, n, o, r, masks))) goto done;
    if (o->model && o->data && (rc = ce_part(saes, n, o, r, masks))) goto done;
    /* bins */
    if (r->have_store) {
        float *buf = lp_malloc((size_t)r->total * sizeof(float));
        float *bs = lp_malloc((size_t)r->total * sizeof(float)), *bu = lp_malloc((size_t)r->total * sizeof(float));
        if (!buf || !bs || !bu) {
            free(buf), free(bs), free(bu);
            rc = LP_ERR_NOMEM;
            goto done;
        }
        int64_t nsb = 0, nub = 0, surf_s = 0, surf_u = 0, rare_s = 0, rare_u = 0, live_s = 0, live_u = 0;
        for (int k = 0; k < n; k++) {
            int64_t m = 0, surf = 0, rare = 0, live = 0;
            double fs = 0;
            for (int64_t g = 0; g < r->total; g++) {
                int kk = (int)(r->score[g] * (n - 1) + 0.5f);
                if (kk != k) continue;
                buf[m++] = r->freq[g];
                fs += r->freq[g];
                if (r->freq[g] > 0) {
                    live++;
                    surf += r->purity[g] >= o->purity_min;
                    rare += r->rare_modal[g];
                }
            }
            r->bin_count[k] = m;
            r->bin_freq_mean[k] = m ? fs / m : NAN;
            r->bin_freq_median[k] = median_f(buf, m);
            r->bin_surface[k] = live ? (double)surf / live : NAN;
            r->bin_rare_surface[k] = live ? (double)rare / live : NAN;
        }
        for (int64_t g = 0; g < r->total; g++) {
            int s = r->score[g] >= o->s_min;
            if (s) bs[nsb++] = r->freq[g];
            else bu[nub++] = r->freq[g];
            if (r->freq[g] > 0) {
                int surf = r->purity[g] >= o->purity_min;
                if (s) live_s++, surf_s += surf, rare_s += r->rare_modal[g];
                else live_u++, surf_u += surf, rare_u += r->rare_modal[g];
            }
        }
        r->freq_median_stable = median_f(bs, nsb);
        r->freq_median_unstable = median_f(bu, nub);
        r->surface_stable = live_s ? (double)surf_s / live_s : NAN;
        r->surface_unstable = live_u ? (double)surf_u / live_u : NAN;
        r->rare_stable = live_s ? (double)rare_s / live_s : NAN;
        r->rare_unstable = live_u ? (double)rare_u / live_u : NAN;
        free(buf), free(bs), free(bu);
    }
    rc = subspace_part(saes, n, o, r);
done:
    if (masks)
        for (int i = 0; i < 3 * n; i++) free(masks[i]);
    free(masks);
    if (rc) lp_study_free(r);
    return rc;
}

/* ---- output ------------------------------------------------------------------------ */
const char *lp_study_token_text(const lp_tokenizer *tok, int32_t id) {
    static char buf[4][128];
    static int k = 0;
    k = (k + 1) % 4;
    if (id < 0) return "";
    const char *p = tok ? lp_tokenizer_decode_piece(tok, 0, id) : NULL;
    if (!p) {
        snprintf(buf[k], sizeof buf[k], "#%d", id);
        return buf[k];
    }
    char *o = buf[k];
    size_t n = 0;
    for (const unsigned char *s = (const unsigned char *)p; *s && n + 5 < sizeof buf[k]; s++) {
        if (*s == '\n') o[n++] = '\\', o[n++] = 'n';
        else if (*s == '|' || *s == '"' || *s == ',' || *s == '`') o[n++] = '\\', o[n++] = (char)*s;
        else if (*s == ' ') o[n++] = '_';
        else if (*s < 0x20) n += (size_t)snprintf(o + n, 5, "\\x%02x", *s);
        else o[n++] = (char)*s;
    }
    o[n] = 0;
    return o;
}

static cJSON *num_array(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, isfinite(v[i]) ? cJSON_CreateNumber(v[i]) : cJSON_CreateNull());
    return a;
}

static void add_num(cJSON *o, const char *k, double v) {
    cJSON_AddItemToObject(o, k, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

int lp_study_write(const lp_study *s, const lp_study_opts *o, const char *const *names, const lp_tokenizer *tok,
                   const char *dir) {
    int rc = lp_mkdirs(dir);
    if (rc) return rc;
    const int n = s->n;
    /* features.csv */
    size_t cap = 1 << 20, len = 0;
    char *csv = malloc(cap);
    if (!csv) return LP_ERR_NOMEM;
#define APPEND(...)                                                                                                    \
    do {                                                                                                               \
        int w_;                                                                                                        \
        while ((w_ = snprintf(csv + len, cap - len, __VA_ARGS__)) >= 0 && (size_t)w_ >= cap - len) {                   \
            char *nc_ = realloc(csv, cap * 2);                                                                         \
            if (!nc_) {                                                                                                \
                free(csv);                                                                                             \
                return LP_ERR_NOMEM;                                                                                   \
            }                                                                                                          \
            csv = nc_, cap *= 2;                                                                                       \
        }                                                                                                              \
        len += (size_t)w_;                                                                                             \
    } while (0)
    APPEND("sae,feature,stability,stability_one_to_one,stable");
    for (int b = 0; b < n; b++) APPEND(",best_cos_sae%d,best_match_sae%d", b, b);
    if (s->st.one_to_one)
        for (int b = 0; b < n; b++) APPEND(",o2o_cos_sae%d,o2o_match_sae%d", b, b);
    if (s->have_store) APPEND(",freq,purity,modal_token,rare_surface_form,top_tokens");
    APPEND("\n");
    for (int a = 0; a < n; a++)
        for (int64_t f = 0; f < s->st.F[a]; f++) {
            int64_t g = s->st.off[a] + f;
            APPEND("%d,%lld,%.4f,%.4f,%d", a, (long long)f, s->score[g], s->score_hung ? s->score_hung[g] : NAN,
                   s->score[g] >= o->s_min);
            for (int b = 0; b < n; b++) {
                if (b == a) APPEND(",,");
                else APPEND(",%.5f,%d", s->st.best[a * n + b][f], s->st.arg[a * n + b][f]);
            }
            for (int b = 0; b < n && s->st.one_to_one; b++) {
                if (b == a) APPEND(",,");
                else APPEND(",%.5f,%lld", s->st.hung[a * n + b][f], (long long)s->st.hcol[a * n + b][f]);
            }
            if (s->have_store) {
                APPEND(",%.6g,%.3f,\"%s\",%d,\"", s->freq[g], s->purity[g], lp_study_token_text(tok, s->modal_tok[g]),
                       s->rare_modal[g]);
                for (int q = 0; q < s->topn && s->top_tok[g * s->topn + q] >= 0; q++)
                    APPEND("%s%s", q ? " " : "", lp_study_token_text(tok, s->top_tok[g * s->topn + q]));
                APPEND("\"");
            }
            APPEND("\n");
        }
#undef APPEND
    char *p = lp_path_join(dir, "features.csv");
    rc = lp_write_file_atomic(p, csv, len);
    free(p);
    free(csv);
    if (rc) return rc;
    /* stability.json */
    cJSON *j = cJSON_CreateObject(), *cfg = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "config", cfg);
    add_num(cfg, "tau", o->tau);
    add_num(cfg, "stable_min", o->s_min);
    cJSON_AddStringToObject(cfg, "match", lp_match_mode_name(o->mode));
    cJSON_AddBoolToObject(cfg, "one_to_one", o->one_to_one);
    cJSON *sae = cJSON_AddArrayToObject(j, "saes");
    for (int a = 0; a < n; a++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", names && names[a] ? names[a] : "");
        add_num(e, "d_sae", (double)s->st.F[a]);
        add_num(e, "stable", (double)s->n_stable[a]);
        add_num(e, "ev_full", s->ev_full[a]);
        add_num(e, "ev_stable_only", s->ev_stable[a]);
        add_num(e, "ev_unstable_only", s->ev_unstable[a]);
        add_num(e, "l0_full", s->l0_full[a]);
        add_num(e, "l0_stable_only", s->l0_stable[a]);
        add_num(e, "l0_unstable_only", s->l0_unstable[a]);
        add_num(e, "ev_matched_unstable_subset", s->ev_matched[a]);
        add_num(e, "l0_matched_unstable_subset", s->l0_matched[a]);
        add_num(e, "ce_clean", s->ce_clean[a]);
        add_num(e, "ce_zero", s->ce_zero[a]);
        add_num(e, "ce_full", s->ce_full[a]);
        add_num(e, "ce_stable_only", s->ce_stable[a]);
        add_num(e, "ce_unstable_only", s->ce_unstable[a]);
        add_num(e, "ce_matched_unstable_subset", s->ce_matched[a]);
        cJSON_AddItemToArray(sae, e);
    }
    cJSON *sm = cJSON_AddObjectToObject(j, "summary");
    add_num(sm, "frac_stable", s->sum.frac_stable);
    add_num(sm, "mean_stability", s->sum.mean_score);
    add_num(sm, "frac_stable_one_to_one", o->one_to_one ? s->sum_hung.frac_stable : NAN);
    double h[65];
    for (int k = 0; k < n; k++) h[k] = (double)s->sum.hist[k];
    cJSON_AddItemToObject(sm, "histogram", num_array(h, n));
    cJSON *sw = cJSON_AddArrayToObject(j, "tau_sweep");
    for (int t = 0; t < o->n_taus; t++) {
        cJSON *e = cJSON_CreateObject();
        add_num(e, "tau", o->taus[t]);
        add_num(e, "frac_stable", s->sweep_max[t]);
        add_num(e, "frac_stable_one_to_one", s->sweep_hung[t]);
        cJSON_AddItemToArray(sw, e);
    }
    if (s->have_store) {
        cJSON *bins = cJSON_AddArrayToObject(j, "bins");
        for (int k = 0; k < n; k++) {
            cJSON *e = cJSON_CreateObject();
            add_num(e, "stability", n > 1 ? (double)k / (n - 1) : 0);
            add_num(e, "latents", (double)s->bin_count[k]);
            add_num(e, "freq_mean", s->bin_freq_mean[k]);
            add_num(e, "freq_median", s->bin_freq_median[k]);
            add_num(e, "surface_form_share", s->bin_surface[k]);
            add_num(e, "rare_surface_form_share", s->bin_rare_surface[k]);
            cJSON_AddItemToArray(bins, e);
        }
    }
    cJSON *ss = cJSON_AddObjectToObject(j, "subspaces");
    add_num(ss, "rank", s->rank);
    add_num(ss, "d", s->d);
    add_num(ss, "overlap_mean", s->overlap_mean);
    add_num(ss, "angle_median_mean_deg", s->angle_median_mean);
    add_num(ss, "random_mean", s->rand_mean);
    add_num(ss, "random_p95", s->rand_p95);
    add_num(ss, "random_expected", s->rand_expected);
    add_num(ss, "control_stable_mean", s->ctrl_stable_mean);
    add_num(ss, "control_data_pca_mean", s->ctrl_data_mean);
    cJSON_AddItemToObject(ss, "overlap", num_array(s->overlap, n * n));
    cJSON *pf = cJSON_AddObjectToObject(j, "features");
    double *tmp = lp_malloc((size_t)(s->total > 0 ? s->total : 1) * sizeof(double));
    if (tmp) {
        for (int64_t g = 0; g < s->total; g++) tmp[g] = s->score[g];
        cJSON_AddItemToObject(pf, "stability", num_array(tmp, (int)s->total));
        if (s->have_store) {
            for (int64_t g = 0; g < s->total; g++) tmp[g] = s->freq[g];
            cJSON_AddItemToObject(pf, "freq", num_array(tmp, (int)s->total));
        }
        free(tmp);
    }
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return LP_ERR_NOMEM;
    p = lp_path_join(dir, "stability.json");
    rc = lp_write_file_atomic(p, txt, strlen(txt));
    free(p);
    free(txt);
    return rc;
}
