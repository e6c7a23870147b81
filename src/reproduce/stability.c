/* stability.c — `loupe reproduce stability`: feature stability across seeds
 * (arXiv 2606.12138, "Unstable features, reproducible subspaces"; method
 * notes §1). On stories260K activations: N seeds of TopK and BatchTopK SAEs,
 * stability scores (max / one-to-one, decoder / encoder / both, τ-sweep),
 * functional asymmetry (EV and CE with only stable or only unstable latents),
 * frequency and trigger tokens by stability, subspaces of the unstable
 * latents vs random subspaces, a pooled SAE vs fresh seeds; then the
 * synthetic model where the answer is known. Claims (a)–(e) with verdicts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/harvest.h"
#include "loupe/pool.h"
#include "loupe/sae_format.h"
#include "loupe/stability.h"
#include "loupe/store.h"
#include "reproduce/reproduce.h"
#include "reproduce/stability_study.h"
#include "reproduce/synth_pipeline.h"

#define HOOK "blocks.2.hook_resid_post"
#define MAX_SEEDS 8

typedef struct {
    int seeds, d_sae, k, ce_saes, pool_seeds, ctx;
    int64_t rows, heldout, tokens, ft_tokens, eval_tokens, stat_rows;
} cfg_t;

static void cfg_for(cfg_t *c, int quick) {
    if (quick)
        *c = (cfg_t){.seeds = 3, .d_sae = 128, .k = 8, .ce_saes = 1, .pool_seeds = 2, .ctx = 128, .rows = 60000,
                     .heldout = 10000, .tokens = 150000, .ft_tokens = 50000, .eval_tokens = 2000, .stat_rows = 10000};
    else
        *c = (cfg_t){.seeds = 5, .d_sae = 512, .k = 16, .ce_saes = 2, .pool_seeds = 3, .ctx = 128, .rows = 600000,
                     .heldout = 50000, .tokens = 1500000, .ft_tokens = 300000, .eval_tokens = 10000,
                     .stat_rows = 50000};
}

static void rm_rf(const char *dir) {
    if (!lp_is_dir(dir)) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) { /* best effort: lp_store_create reports what is left */
    }
}

static float auto_lr(int F) { return F > 1024 ? 4e-3f * sqrtf(1024.0f / (float)F) : 4e-3f; }

static int train_sae(const lp_store *st, int arch, const cfg_t *c, uint64_t seed, lp_sae **out) {
    lp_sae_config sc;
    lp_sae_config_default(&sc);
    sc.arch = arch;
    sc.d_in = lp_store_dim(st);
    sc.d_sae = c->d_sae;
    sc.k = c->k;
    sc.seed = seed;
    snprintf(sc.model, sizeof sc.model, "%s", lp_store_model(st));
    snprintf(sc.hook, sizeof sc.hook, "%s", lp_store_hook(st));
    snprintf(sc.dataset, sizeof sc.dataset, "%s", lp_store_data(st));
    sc.dataset_bytes = lp_store_meta_int(st, "data_bytes_consumed", 0);
    sc.context_size = (int)lp_store_meta_int(st, "ctx", 0);
    lp_train_opts t;
    lp_train_opts_default(&t);
    t.tokens = c->tokens;
    t.lr = auto_lr(c->d_sae);
    t.log_every = 0;
    lp_sae_resolve_defaults(&sc, &t);
    lp_sae *s = NULL;
    int rc = lp_sae_new(&s, &sc);
    if (!rc) rc = lp_sae_train(s, st, &t);
    if (rc) {
        lp_sae_free(s);
        return rc;
    }
    *out = s;
    return LP_OK;
}

/* stability of each latent of x against the SAEs hs[0..nh): fraction matched ≥ tau */
static int stability_against(const lp_sae *x, lp_sae *const *hs, int nh, float tau, float s_min, double *mean,
                             double *frac) {
    const int64_t F = x->cfg.d_sae;
    float *best = lp_malloc((size_t)F * sizeof(float));
    int32_t *hits = lp_calloc((size_t)F, sizeof(int32_t));
    if (!best || !hits) {
        free(best), free(hits);
        return LP_ERR_NOMEM;
    }
    int rc = LP_OK;
    for (int h = 0; h < nh && !rc; h++) {
        rc = lp_max_match(x, hs[h], LP_MATCH_DEC, best, NULL, NULL, NULL);
        for (int64_t f = 0; f < F && !rc; f++) hits[f] += best[f] >= tau;
    }
    double s = 0;
    int64_t st = 0;
    for (int64_t f = 0; f < F; f++) {
        double v = (double)hits[f] / nh;
        s += v;
        st += v >= s_min;
    }
    *mean = s / F;
    *frac = (double)st / F;
    free(best), free(hits);
    return rc;
}

static double ev_on(lp_sae *s, const lp_store *st, int64_t rows) {
    lp_latent_opts lo = {.start = 0, .rows = rows};
    lp_latent_stats ls;
    if (lp_latent_stats_compute(s, st, &lo, &ls)) return NAN;
    double ev = ls.ev;
    lp_latent_stats_free(&ls);
    return ev;
}

static double mean_of(const double *v, int n) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    return k ? s / k : NAN;
}

static double recovered(double zero, double clean, double sae) {
    return zero - clean != 0 ? (zero - sae) / (zero - clean) : NAN;
}

typedef struct { /* what each architecture contributes to the claims */
    double frac_stable, ev_full, ev_s, ev_u, ev_m, rec_full, rec_s, rec_u, rec_m, share_s;
    double fmed_s, fmed_u, surf_s, surf_u, rare_s, rare_u;
    double overlap, rand_mean, rand_p95, ctrl_stable, ctrl_data;
    int rank;
    double pool_stab, fresh_stab, pool_frac, fresh_frac, pool_ev, fresh_ev;
} arch_res;

int lp_reproduce_stability(const lp_reproduce_opts *o, lp_report *r) {
    cfg_t c;
    cfg_for(&c, o->quick);
    const char *model_p = lp_reproduce_shared(o, "models/stories260K.bin");
    const char *tok_p = lp_reproduce_shared(o, "models/tok512.bin");
    const char *data_p = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    char *work = lp_path_join(o->out, "work");
    char *store_d = lp_path_join(work, "store"), *held_d = lp_path_join(work, "heldout");
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_store *st = NULL, *hst = NULL;
    lp_sae *saes[2][MAX_SEEDS] = {{0}};
    char *names[2][MAX_SEEDS] = {{0}};
    lp_sae *pooled = NULL;
    lp_study studies[2];
    memset(studies, 0, sizeof studies);
    lp_stability sm;
    memset(&sm, 0, sizeof sm);
    lp_synth_eval sev;
    memset(&sev, 0, sizeof sev);
    arch_res ar[2];
    memset(ar, 0, sizeof ar);
    const int archs[2] = {LP_SAE_TOPK, LP_SAE_BATCHTOPK};
    const float tau = 0.7f, s_min = 0.5f;
    double t_start = lp_now(), t_phase;
    int rc;
    if ((rc = lp_mkdirs(work))) goto done;
    if ((rc = lp_model_load(&m, model_p)) || (rc = lp_tokenizer_load(&tok, tok_p, m->cfg.vocab_size))) goto done;
    /* ---- activations: a training store and a held-out store after it ---- */
    t_phase = lp_now();
    rm_rf(store_d);
    rm_rf(held_d);
    const char *hooks[1] = {HOOK};
    lp_harvest_opts ho = {.model_path = model_p, .tokenizer_path = tok_p, .data_path = data_p, .n_hooks = 1,
                          .hooks = hooks, .tokens = c.rows, .ctx = c.ctx, .batch = 16};
    lp_harvest_result hr, hr2;
    fprintf(stderr, "reproduce stability: harvesting %lld + %lld rows of %s at %s\n", (long long)c.rows,
            (long long)c.heldout, data_p, HOOK);
    if ((rc = lp_harvest(m, tok, &ho, store_d, &hr))) goto done;
    ho.tokens = c.heldout;
    ho.skip_bytes = hr.data_bytes;
    if ((rc = lp_harvest(m, tok, &ho, held_d, &hr2))) goto done;
    if ((rc = lp_store_open(&st, store_d, NULL)) || (rc = lp_store_open(&hst, held_d, NULL))) goto done;
    double t_harvest = lp_now() - t_phase;

    lp_report_text(r,
                   "Paper: arXiv 2606.12138, *Unstable features, reproducible subspaces* (the text was not available; "
                   "loupe implements the standard construction of method notes §1: Paulo & Belrose 2025, arXiv "
                   "2501.16615). Model stories260K (d = %d), hook `%s`, %lld training rows of TinyStories, %lld "
                   "held-out rows after them (EV, frequencies, triggers), CE on held-out text. %d seeds each of TopK and "
                   "BatchTopK, F = %d, k = %d, %lld tokens each. Stability of latent i of seed a: the fraction of other "
                   "seeds with a decoder row at cosine ≥ τ = %.2f; stable if ≥ %.2f. Every threshold is a flag of "
                   "`loupe stability`; the τ-sweep is below.%s",
                   m->cfg.dim, HOOK, (long long)hr.rows, (long long)hr2.rows, c.seeds, c.d_sae, c.k,
                   (long long)c.tokens, tau, s_min,
                   o->quick ? " **Quick run** (--quick): fewer seeds, smaller SAEs, fewer tokens; numbers are noisy." : "");
    const char *h_stab[] = {"SAE", "seeds", "F", "EV (held-out)", "stable: dec max", "dec one-to-one", "enc max",
                            "dec+enc max", "mean stability"};
    double tau_sweep[2][LP_STUDY_MAX_TAUS][2];
    int64_t hist[2][65];
    lp_study_opts so;
    lp_study_opts_default(&so);
    double t_train = 0, t_study = 0, t_pool = 0;
    double frs[2][2] = {{NAN, NAN}, {NAN, NAN}};
    for (int A = 0; A < 2; A++) {
        const int arch = archs[A];
        const char *an = lp_sae_arch_name(arch);
        t_phase = lp_now();
        for (int s = 0; s < c.seeds; s++) {
            fprintf(stderr, "reproduce stability: training %s seed %d (F %d, k %d, %lld tokens)\n", an, s, c.d_sae, c.k,
                    (long long)c.tokens);
            if ((rc = train_sae(st, arch, &c, (uint64_t)s, &saes[A][s]))) goto done;
            char sub[128];
            snprintf(sub, sizeof sub, "%s/seed%d", an, s);
            names[A][s] = lp_path_join(work, sub);
            if ((rc = lp_sae_save(saes[A][s], names[A][s], LP_SAE_FMT_SAELENS))) goto done;
        }
        t_train += lp_now() - t_phase;
        t_phase = lp_now();
        /* the study: dec max + one-to-one, store analysis on held-out rows, CE */
        lp_study_opts_default(&so);
        so.tau = tau, so.s_min = s_min, so.mode = LP_MATCH_DEC, so.one_to_one = 1;
        so.store = held_d, so.store_rows = c.stat_rows;
        so.model = m, so.tok = tok, so.data = data_p, so.eval_tokens = c.eval_tokens, so.ctx = c.ctx;
        so.skip_bytes = hr2.data_bytes, so.ce_saes = c.ce_saes;
        so.verbose = 1;
        fprintf(stderr, "reproduce stability: %s: matching, functional asymmetry, subspaces\n", an);
        if ((rc = lp_study_run(saes[A], (const char *const *)names[A], c.seeds, &so, &studies[A]))) goto done;
        char *sdir = lp_path_join(o->out, an);
        rc = lp_study_write(&studies[A], &so, (const char *const *)names[A], tok, sdir);
        free(sdir);
        if (rc) goto done;
        double *fr = frs[A];
        for (int md = LP_MATCH_ENC; md <= LP_MATCH_BOTH; md++) {
            lp_stability_summary ss;
            if ((rc = lp_stability_match(&sm, (const lp_sae *const *)saes[A], c.seeds, md, 0)) ||
                (rc = lp_stability_summarise(&sm, tau, s_min, 0, &ss)))
                goto done;
            fr[md - LP_MATCH_ENC] = ss.frac_stable;
            lp_stability_free(&sm);
        }
        arch_res *R = &ar[A];
        R->frac_stable = studies[A].sum.frac_stable;
        R->ev_full = mean_of(studies[A].ev_full, c.seeds);
        R->ev_s = mean_of(studies[A].ev_stable, c.seeds);
        R->ev_u = mean_of(studies[A].ev_unstable, c.seeds);
        R->ev_m = mean_of(studies[A].ev_matched, c.seeds);
        double rf[MAX_SEEDS], rs[MAX_SEEDS], ru[MAX_SEEDS], rm[MAX_SEEDS];
        for (int s = 0; s < c.seeds; s++) {
            rf[s] = recovered(studies[A].ce_zero[s], studies[A].ce_clean[s], studies[A].ce_full[s]);
            rs[s] = recovered(studies[A].ce_zero[s], studies[A].ce_clean[s], studies[A].ce_stable[s]);
            ru[s] = recovered(studies[A].ce_zero[s], studies[A].ce_clean[s], studies[A].ce_unstable[s]);
            rm[s] = recovered(studies[A].ce_zero[s], studies[A].ce_clean[s], studies[A].ce_matched[s]);
        }
        R->rec_full = mean_of(rf, c.seeds), R->rec_s = mean_of(rs, c.seeds), R->rec_u = mean_of(ru, c.seeds);
        R->rec_m = mean_of(rm, c.seeds);
        double share = 0;
        for (int s = 0; s < c.seeds; s++) share += (double)studies[A].n_stable[s] / studies[A].st.F[s] / c.seeds;
        R->share_s = share;
        R->fmed_s = studies[A].freq_median_stable, R->fmed_u = studies[A].freq_median_unstable;
        R->surf_s = studies[A].surface_stable, R->surf_u = studies[A].surface_unstable;
        R->rare_s = studies[A].rare_stable, R->rare_u = studies[A].rare_unstable;
        R->overlap = studies[A].overlap_mean, R->rand_mean = studies[A].rand_mean, R->rand_p95 = studies[A].rand_p95;
        R->ctrl_stable = studies[A].ctrl_stable_mean, R->ctrl_data = studies[A].ctrl_data_mean, R->rank = studies[A].rank;
        for (int t = 0; t < so.n_taus; t++) tau_sweep[A][t][0] = studies[A].sweep_max[t], tau_sweep[A][t][1] = studies[A].sweep_hung[t];
        for (int k = 0; k < c.seeds; k++) hist[A][k] = studies[A].sum.hist[k];
        t_study += lp_now() - t_phase;
    }
    lp_report_table(r, "Stability across seeds (fraction of latents stable at τ = 0.7)", 9, h_stab);
    for (int A = 0; A < 2; A++)
        lp_report_rowf(r, "%s|%d|%d|%.4f|%.3f|%.3f|%.3f|%.3f|%.3f", lp_sae_arch_name(archs[A]), c.seeds, c.d_sae,
                       ar[A].ev_full, studies[A].sum.frac_stable, studies[A].sum_hung.frac_stable, frs[A][0], frs[A][1],
                       studies[A].sum.mean_score);
    for (int A = 0; A < 2; A++) {
        const char *an = lp_sae_arch_name(archs[A]);
        const lp_study *sd = &studies[A];
        arch_res *R = &ar[A];
        lp_report_number(r, A == 0 ? "topk_frac_stable" : "batchtopk_frac_stable", sd->sum.frac_stable);
        lp_report_number(r, A == 0 ? "topk_frac_stable_one_to_one" : "batchtopk_frac_stable_one_to_one",
                         sd->sum_hung.frac_stable);
        /* per-arch detail tables */
        char cap[512];
        snprintf(cap, sizeof cap, "%s: functional asymmetry (mean over seeds; EV on held-out rows, CE on held-out text "
                 "for the first %d seed(s))", an, c.ce_saes);
        const char *h_fa[] = {"latents kept", "share of latents", "L0", "EV", "CE loss recovered", "ΔCE vs clean (nats)"};
        lp_report_table(r, cap, 6, h_fa);
        double l0f = mean_of(sd->l0_full, c.seeds), l0s = mean_of(sd->l0_stable, c.seeds),
               l0u = mean_of(sd->l0_unstable, c.seeds), l0m = mean_of(sd->l0_matched, c.seeds);
        double cc = mean_of(sd->ce_clean, c.seeds), cfull = mean_of(sd->ce_full, c.seeds),
               cs = mean_of(sd->ce_stable, c.seeds), cu = mean_of(sd->ce_unstable, c.seeds),
               cm = mean_of(sd->ce_matched, c.seeds);
        lp_report_rowf(r, "all|1.000|%.2f|%.4f|%.4f|%+.4f", l0f, R->ev_full, R->rec_full, cfull - cc);
        lp_report_rowf(r, "stable only|%.3f|%.2f|%.4f|%.4f|%+.4f", R->share_s, l0s, R->ev_s, R->rec_s, cs - cc);
        lp_report_rowf(r, "unstable only|%.3f|%.2f|%.4f|%.4f|%+.4f", 1 - R->share_s, l0u, R->ev_u, R->rec_u, cu - cc);
        lp_report_rowf(r, "control: random unstable subset as large as the stable set|%.3f|%.2f|%.4f|%.4f|%+.4f",
                       R->share_s, l0m, R->ev_m, R->rec_m, cm - cc);
        snprintf(cap, sizeof cap, "%s: latents by stability (all seeds; frequency on held-out rows; surface-form = the "
                 "modal token holds ≥ %.0f%% of the top-%d activations; rare = that token is outside the most frequent "
                 "tokens making up %.0f%% of the text)", an, 100 * so.purity_min, so.topn, 100 * so.common_mass);
        const char *h_bin[] = {"stability", "latents", "freq mean", "freq median", "surface-form", "rare surface-form"};
        lp_report_table(r, cap, 6, h_bin);
        for (int k = 0; k < c.seeds; k++)
            lp_report_rowf(r, "%.2f|%lld|%.3g|%.3g|%.3f|%.3f", (double)k / (c.seeds - 1), (long long)sd->bin_count[k],
                           sd->bin_freq_mean[k], sd->bin_freq_median[k], sd->bin_surface[k],
                           sd->bin_rare_surface[k]);
        snprintf(cap, sizeof cap, "%s seed 0: the most frequent unstable latents and their top trigger tokens "
                 "(`_` is a space)", an);
        const char *h_trig[] = {"latent", "stability", "freq", "purity", "top tokens"};
        lp_report_table(r, cap, 5, h_trig);
        { /* the 8 most frequent unstable latents of seed 0 */
            int shown[8], ns = 0;
            for (int q = 0; q < 8; q++) {
                int64_t bi = -1;
                for (int64_t f = 0; f < sd->st.F[0]; f++) {
                    if (sd->score[f] >= s_min || !(sd->freq[f] > 0)) continue;
                    int dup = 0;
                    for (int p = 0; p < ns; p++) dup |= shown[p] == f;
                    if (!dup && (bi < 0 || sd->freq[f] > sd->freq[bi])) bi = f;
                }
                if (bi < 0) break;
                shown[ns++] = (int)bi;
                char toks[512] = "";
                size_t tl = 0;
                for (int t = 0; t < sd->topn && t < 10 && sd->top_tok[bi * sd->topn + t] >= 0; t++)
                    tl += (size_t)snprintf(toks + tl, sizeof toks - tl, "%s`%s`", t ? " " : "",
                                           lp_study_token_text(tok, sd->top_tok[bi * sd->topn + t]));
                lp_report_rowf(r, "%lld|%.2f|%.3g|%.2f|%s", (long long)bi, sd->score[bi], sd->freq[bi],
                               sd->purity[bi], toks);
            }
        }
    }
    for (int A = 0; A < 2; A++) {
        const char *an = lp_sae_arch_name(archs[A]);
        arch_res *R = &ar[A];
        char cap[512];
        /* ---- pooled SAE from the first pool_seeds seeds vs the held-out seeds ---- */
        t_phase = lp_now();
        const int P = c.pool_seeds, H = c.seeds - c.pool_seeds;
        lp_pool_info info;
        if ((rc = lp_stability_match(&sm, (const lp_sae *const *)saes[A], P, LP_MATCH_DEC, 0))) goto done;
        lp_pool_opts po = {.tau = tau, .size = c.d_sae};
        if ((rc = lp_pool_build((const lp_sae *const *)saes[A], P, &sm, &po, &pooled, &info))) goto done;
        lp_stability_free(&sm);
        lp_train_opts t;
        lp_train_opts_default(&t);
        t.tokens = c.ft_tokens;
        t.lr = auto_lr(pooled->cfg.d_sae);
        t.warm_start = 1;
        t.log_every = 0;
        pooled->cfg.seed = 1000;
        fprintf(stderr, "reproduce stability: %s: pooled SAE from seeds 0..%d (%lld clusters), fine-tuning %lld tokens\n",
                an, P - 1, (long long)info.clusters, (long long)c.ft_tokens);
        double ev_pool0 = ev_on(pooled, hst, c.stat_rows);
        if ((rc = lp_sae_train(pooled, st, &t))) goto done;
        char *pdir = lp_path_join(work, A == 0 ? "topk/pooled" : "batchtopk/pooled");
        rc = lp_sae_save(pooled, pdir, LP_SAE_FMT_SAELENS);
        free(pdir);
        if (rc) goto done;
        R->pool_ev = ev_on(pooled, hst, c.stat_rows);
        if ((rc = stability_against(pooled, saes[A] + P, H, tau, s_min, &R->pool_stab, &R->pool_frac))) goto done;
        double fs = 0, ff = 0, fe = 0;
        for (int s = 0; s < P; s++) {
            double a1, a2;
            if ((rc = stability_against(saes[A][s], saes[A] + P, H, tau, s_min, &a1, &a2))) goto done;
            fs += a1 / P, ff += a2 / P, fe += ev_on(saes[A][s], hst, c.stat_rows) / P;
        }
        R->fresh_stab = fs, R->fresh_frac = ff, R->fresh_ev = fe;
        snprintf(cap, sizeof cap, "%s: pooled SAE (clusters of seeds 0..%d at cos ≥ %.2f, %lld kept of %lld, mean %.2f "
                 "members; fine-tuned %lld tokens) against the held-out seeds %d..%d", an, P - 1, tau,
                 (long long)info.kept, (long long)info.clusters, info.kept_mean_size, (long long)c.ft_tokens, P,
                 c.seeds - 1);
        const char *h_pool[] = {"SAE", "stability vs held-out seeds", "fraction stable", "EV (held-out)"};
        lp_report_table(r, cap, 4, h_pool);
        lp_report_rowf(r, "fresh seeds 0..%d (mean)|%.3f|%.3f|%.4f", P - 1, fs, ff, fe);
        lp_report_rowf(r, "pooled, before fine-tuning|—|—|%.4f", ev_pool0);
        lp_report_rowf(r, "pooled, fine-tuned|%.3f|%.3f|%.4f", R->pool_stab, R->pool_frac, R->pool_ev);
        lp_sae_free(pooled);
        pooled = NULL;
        t_pool += lp_now() - t_phase;
    }
    /* ---- τ sweep, histograms, subspaces --------------------------------------- */
    const char *h_sw[] = {"τ", "TopK max", "TopK one-to-one", "BatchTopK max", "BatchTopK one-to-one"};
    lp_report_table(r, "τ-sweep: fraction of latents stable (stability ≥ 0.5)", 5, h_sw);
    for (int t = 0; t < so.n_taus; t++)
        lp_report_rowf(r, "%.2f|%.3f|%.3f|%.3f|%.3f", so.taus[t], tau_sweep[0][t][0], tau_sweep[0][t][1],
                       tau_sweep[1][t][0], tau_sweep[1][t][1]);
    const char *h_hist[] = {"stability", "TopK latents", "BatchTopK latents"};
    lp_report_table(r, "Histogram of stability (all seeds, decoder max matching, τ = 0.7)", 3, h_hist);
    for (int k = 0; k < c.seeds; k++)
        lp_report_rowf(r, "%d/%d|%lld|%lld", k, c.seeds - 1, (long long)hist[0][k], (long long)hist[1][k]);
    const char *h_sub[] = {"SAE", "rank r (of d)", "overlap unstable↔unstable", "random r-dim (mean / p95)",
                           "control: unstable↔other seeds' stable", "control: unstable↔data PCA"};
    lp_report_table(r, "Subspaces spanned by the unstable decoder rows: overlap ‖QaᵀQb‖²_F / r between seeds "
                       "(r = smallest rank holding 50% of the rows' energy, min over seeds)", 6, h_sub);
    for (int A = 0; A < 2; A++)
        lp_report_rowf(r, "%s|%d (of %d)|%.3f|%.3f / %.3f|%.3f|%.3f", lp_sae_arch_name(archs[A]), ar[A].rank, m->cfg.dim,
                       ar[A].overlap, ar[A].rand_mean, ar[A].rand_p95, ar[A].ctrl_stable, ar[A].ctrl_data);
    lp_report_text(r, "Reading the controls: random subspaces are the baseline the claim names; the data's own top-r "
                      "principal subspace is a stricter one (directions every seed must use). Unstable subspaces "
                      "overlap each other %s than they overlap the data PCA subspace (TopK %.3f vs %.3f, BatchTopK %.3f "
                      "vs %.3f), and %s than they overlap the other seeds' stable subspaces.",
                   ar[0].overlap > ar[0].ctrl_data && ar[1].overlap > ar[1].ctrl_data ? "more" : "not more",
                   ar[0].overlap, ar[0].ctrl_data, ar[1].overlap, ar[1].ctrl_data,
                   ar[0].overlap > ar[0].ctrl_stable && ar[1].overlap > ar[1].ctrl_stable ? "more" : "not more");
    /* ---- synthetic model ------------------------------------------------------ */
    t_phase = lp_now();
    lp_synth_pipeline_opts sp;
    lp_synth_pipeline_defaults(&sp, o->quick);
    char *swork = lp_path_join(work, "synthetic");
    sp.work = swork;
    sp.verbose = 1;
    fprintf(stderr, "reproduce stability: synthetic model\n");
    rc = lp_synth_pipeline(&sp, r, &sev);
    free(swork);
    if (rc) goto done;
    double t_synth = lp_now() - t_phase;
    /* ---- claims ---------------------------------------------------------------- */
    lp_report_text(r, "Verdict rules (each must hold for TopK and BatchTopK): (a) stable-only EV and CE loss recovered "
                      "exceed the unstable-only ones; (b) unstable latents have a lower median firing frequency and a "
                      "surface-form (or rare-token surface-form) share at least 0.02 higher; (c) the unstable-subspace "
                      "overlap exceeds the 95th percentile of random r-dim subspaces and 1.5× their mean; (d) ≥ 90%% of "
                      "isolated features recovered at cos ≥ 0.95 with ≥ 90%% of their latents stable, < 50%% of block "
                      "latents stable, < 50%% of block directions recovered individually, every block's largest "
                      "principal angle < 10°; (e) the pooled SAE's fraction of latents stable against held-out seeds "
                      "exceeds the fresh seeds' and its EV is at least theirs − 0.01.");
    char msg[1024];
    {
        int ok = 1;
        for (int A = 0; A < 2; A++) ok &= ar[A].ev_s > ar[A].ev_u && ar[A].rec_s > ar[A].rec_u;
        snprintf(msg, sizeof msg,
                 "TopK: stable only (%.0f%% of latents) EV %.3f, CE recovered %.3f; unstable only EV %.3f, CE recovered "
                 "%.3f. BatchTopK: stable (%.0f%%) EV %.3f, CE rec. %.3f; unstable EV %.3f, CE rec. %.3f. Per latent, "
                 "against an equally large random set of unstable latents: EV %.3f vs %.3f (TopK), %.3f vs %.3f "
                 "(BatchTopK)",
                 100 * ar[0].share_s, ar[0].ev_s, ar[0].rec_s, ar[0].ev_u, ar[0].rec_u, 100 * ar[1].share_s, ar[1].ev_s,
                 ar[1].rec_s, ar[1].ev_u, ar[1].rec_u, ar[0].ev_s, ar[0].ev_m, ar[1].ev_s, ar[1].ev_m);
        lp_report_claim(r, "(a) stable features carry most of the reconstruction and prediction signal",
                        "ablating unstable latents costs little; stable-only reconstruction keeps most EV and CE", msg, ok);
    }
    {
        int ok = 1;
        for (int A = 0; A < 2; A++)
            ok &= ar[A].fmed_u < ar[A].fmed_s && (ar[A].surf_u > ar[A].surf_s + 0.02 || ar[A].rare_u > ar[A].rare_s + 0.02);
        snprintf(msg, sizeof msg,
                 "median firing frequency stable / unstable: TopK %.2g / %.2g, BatchTopK %.2g / %.2g; surface-form "
                 "share stable / unstable: TopK %.2f / %.2f, BatchTopK %.2f / %.2f (rare-token surface-form: TopK %.2f "
                 "/ %.2f, BatchTopK %.2f / %.2f)",
                 ar[0].fmed_s, ar[0].fmed_u, ar[1].fmed_s, ar[1].fmed_u, ar[0].surf_s, ar[0].surf_u, ar[1].surf_s,
                 ar[1].surf_u, ar[0].rare_s, ar[0].rare_u, ar[1].rare_s, ar[1].rare_u);
        lp_report_claim(r, "(b) unstable features are low-frequency, surface-form (token-level) features",
                        "unstable latents fire rarely and on specific surface forms", msg, ok);
    }
    {
        int ok = 1;
        for (int A = 0; A < 2; A++) ok &= ar[A].rank > 0 && ar[A].overlap > ar[A].rand_p95 && ar[A].overlap > 1.5 * ar[A].rand_mean;
        snprintf(msg, sizeof msg,
                 "overlap of unstable subspaces between seeds: TopK %.3f (r = %d) vs random %.3f (p95 %.3f); BatchTopK "
                 "%.3f (r = %d) vs random %.3f (p95 %.3f). Controls (unstable vs data PCA): %.3f / %.3f",
                 ar[0].overlap, ar[0].rank, ar[0].rand_mean, ar[0].rand_p95, ar[1].overlap, ar[1].rank, ar[1].rand_mean,
                 ar[1].rand_p95, ar[0].ctrl_data, ar[1].ctrl_data);
        lp_report_claim(r, "(c) unstable features of different seeds span overlapping subspaces",
                        "far above the random-subspace baseline", msg, ok);
    }
    {
        int ok = 1;
        for (int A = 0; A < 2; A++) ok &= ar[A].pool_frac > ar[A].fresh_frac && ar[A].pool_ev >= ar[A].fresh_ev - 0.01;
        snprintf(msg, sizeof msg,
                 "fraction stable against held-out seeds, pooled vs fresh: TopK %.3f vs %.3f (EV %.4f vs %.4f), "
                 "BatchTopK %.3f vs %.3f (EV %.4f vs %.4f)",
                 ar[0].pool_frac, ar[0].fresh_frac, ar[0].pool_ev, ar[0].fresh_ev, ar[1].pool_frac, ar[1].fresh_frac,
                 ar[1].pool_ev, ar[1].fresh_ev);
        lp_report_claim(r, "(e) pooled SAEs are more stable at equal explained variance",
                        "pooling cross-seed features raises stability without losing EV", msg, ok);
    }
    lp_report_text(r, "Times: harvest %.0f s, training %.0f s, analysis %.0f s, pooled SAEs %.0f s, synthetic %.0f s; "
                      "total %.0f s on %d threads.",
                   t_harvest, t_train, t_study, t_pool, t_synth, lp_now() - t_start, lp_threads());
    lp_report_number(r, "seconds", lp_now() - t_start);
    for (int A = 0; A < 2; A++) {
        const char *p = A == 0 ? "topk" : "batchtopk";
        char k[64];
#define NUM(name, v)                                                                                                   \
    snprintf(k, sizeof k, "%s_%s", p, name);                                                                           \
    lp_report_number(r, k, v)
        NUM("ev_stable_only", ar[A].ev_s);
        NUM("ev_unstable_only", ar[A].ev_u);
        NUM("ce_recovered_stable_only", ar[A].rec_s);
        NUM("ce_recovered_unstable_only", ar[A].rec_u);
        NUM("subspace_overlap", ar[A].overlap);
        NUM("subspace_random_mean", ar[A].rand_mean);
        NUM("pooled_frac_stable", ar[A].pool_frac);
        NUM("fresh_frac_stable", ar[A].fresh_frac);
        NUM("pooled_ev", ar[A].pool_ev);
        NUM("fresh_ev", ar[A].fresh_ev);
#undef NUM
    }
    rc = LP_OK;
done:
    lp_synth_eval_free(&sev);
    lp_study_free(&studies[0]);
    lp_study_free(&studies[1]);
    lp_stability_free(&sm);
    lp_sae_free(pooled);
    for (int A = 0; A < 2; A++)
        for (int s = 0; s < MAX_SEEDS; s++) lp_sae_free(saes[A][s]), free(names[A][s]);
    lp_store_close_reader(st);
    lp_store_close_reader(hst);
    lp_model_free(m);
    lp_tokenizer_free(tok);
    free(work), free(store_d), free(held_d);
    return rc;
}
