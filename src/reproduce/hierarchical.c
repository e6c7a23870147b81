/* hierarchical.c — (reproduce) `loupe reproduce hierarchical`:
 * HierarchicalTopK (arXiv 2505.24473) against TopK SAEs trained separately
 * per k. On stories260K's blocks.2 residual stream (TinyStories), one
 * HierarchicalTopK SAE (K = 64) and TopK SAEs at k ∈ {4, 8, 16, 32, 64}
 * with the same F and token budget; the table gives EV and CE-loss recovered
 * against L0 on held-out text for both, plus the TopK SAE trained at K run
 * at smaller k. The step-time ratio HierarchicalTopK / TopK is measured by
 * interleaved training steps on the same batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reproduce/variants.h"

enum { MAXB = 8 };

typedef struct {
    int64_t harvest, train, eval;
    int F, K, nb, budgets[MAXB], bench_steps, bench_rounds;
} hier_plan;

int lp_reproduce_hierarchical(const lp_reproduce_opts *o, lp_report *r) {
    hier_plan p = o->quick ? (hier_plan){.harvest = 60000, .train = 240000, .eval = 3000, .F = 512, .K = 32,
                                         .nb = 4, .budgets = {4, 8, 16, 32}, .bench_steps = 3, .bench_rounds = 3}
                           : (hier_plan){.harvest = 400000, .train = 1500000, .eval = 16000, .F = 1024, .K = 64,
                                         .nb = 5, .budgets = {4, 8, 16, 32, 64}, .bench_steps = 10, .bench_rounds = 5};
    const int ctx = 128;
    const char *data = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    lp_rv_env env;
    int rc = lp_rv_env_open(&env, o);
    if (rc) return rc;
    lp_store *st = NULL;
    lp_sae *hier = NULL, *topk[MAXB] = {0};
    double tps_hier = 0, tps_topk[MAXB] = {0};
    lp_lm_eval_result eh[MAXB], et[MAXB], eK[MAXB];
    memset(eh, 0, sizeof eh);
    memset(et, 0, sizeof et);
    memset(eK, 0, sizeof eK);
    char *wdir = lp_path_join(o->out, "work/store_tinystories");
    int64_t end = 0;
    const double load0 = lp_rv_load(), t_start = lp_now();
    if (!wdir) rc = LP_ERR_NOMEM;
    if (!rc) rc = lp_rv_store(&env, data, 0, p.harvest, ctx, wdir, &st, &end);
    if (rc) goto done;

    /* ---- training: one HierarchicalTopK at K, one TopK per budget ---- */
    lp_sae_config c;
    lp_rv_config(&c, st, end, ctx, LP_SAE_HIERTOPK, p.F, p.K);
    c.seed = 1;
    lp_rv_train_opts to = {.tokens = p.train, .label = "hiertopk"};
    if ((rc = lp_sae_new(&hier, &c)) || (rc = lp_rv_train(hier, st, &to, &tps_hier))) goto done;
    for (int b = 0; b < p.nb; b++) {
        lp_rv_config(&c, st, end, ctx, LP_SAE_TOPK, p.F, p.budgets[b]);
        c.seed = 1;
        char label[32];
        snprintf(label, sizeof label, "topk k=%d", p.budgets[b]);
        to.label = label;
        if ((rc = lp_sae_new(&topk[b], &c)) || (rc = lp_rv_train(topk[b], st, &to, &tps_topk[b]))) goto done;
    }
    lp_sae *topK = topk[p.nb - 1]; /* the TopK SAE trained at k = K */

    /* ---- evaluation on held-out TinyStories ---- */
    for (int b = 0; b < p.nb; b++) {
        int k = p.budgets[b];
        if ((rc = lp_rv_eval(&env, hier, data, end, p.eval, ctx, k == p.K ? 0 : k, &eh[b])) ||
            (rc = lp_rv_eval(&env, topk[b], data, end, p.eval, ctx, 0, &et[b])) ||
            (k < p.K && (rc = lp_rv_eval(&env, topK, data, end, p.eval, ctx, k, &eK[b]))))
            goto done;
        if (k == p.K) eK[b] = et[b], et[b].fires = NULL; /* same SAE: share, free once */
        fprintf(stderr, "reproduce: k=%d  EV hier %.4f topk %.4f topK@k %.4f\n", k, eh[b].explained_variance,
                et[b].explained_variance, eK[b].explained_variance);
    }

    /* ---- step time, interleaved on one batch ---- */
    double ms[2] = {0, 0}, msb[2] = {0, 0};
    lp_sae *pair[2] = {topK, hier};
    if ((rc = lp_rv_step_times(pair, 2, st, 1024, p.bench_steps, p.bench_rounds, ms))) goto done;
    /* the same at 8x the latents (fresh weights): the extra O(B·K·d) work
     * against an encoder of O(B·F·d), closer to the paper's F/K */
    const int Fb = 8 * p.F;
    {
        lp_sae *big[2] = {NULL, NULL};
        for (int a = 0; a < 2 && !rc; a++) {
            lp_rv_config(&c, st, end, ctx, a ? LP_SAE_HIERTOPK : LP_SAE_TOPK, Fb, p.K);
            if (!(rc = lp_sae_new(&big[a], &c))) lp_sae_init(big[a], 5);
            if (!rc) big[a]->cfg.norm_scale = hier->cfg.norm_scale;
        }
        if (!rc) rc = lp_rv_step_times(big, 2, st, 1024, p.bench_steps, p.bench_rounds, msb);
        lp_sae_free(big[0]);
        lp_sae_free(big[1]);
        if (rc) goto done;
    }
    const double ratio = ms[1] / ms[0], ratio_b = msb[1] / msb[0], load1 = lp_rv_load();

    /* ---- report ---- */
    lp_report_text(r,
                   "**Setup.** stories260K (d = 64), hook `%s`, activations of the first %lld tokens of "
                   "TinyStories (`%s`, windows of %d); evaluation on the next %lld tokens (held out, byte %lld "
                   "on). One HierarchicalTopK SAE (K = %d) and one TopK SAE per k, all with F = %d latents, "
                   "%lld training tokens, batch 1024, Adam, AuxK, seed 1. HierarchicalTopK is evaluated at "
                   "budget k by keeping its k largest latents per token (`loupe eval --k`).",
                   env.hook, (long long)p.harvest, data, ctx, (long long)p.eval, (long long)end, p.K, p.F,
                   (long long)p.train);
    static const char *const h1[] = {"k",
                                     "HierTopK L0",
                                     "HierTopK EV",
                                     "TopK(k) L0",
                                     "TopK(k) EV",
                                     "TopK(K) at k: EV",
                                     "HierTopK CE rec.",
                                     "TopK(k) CE rec.",
                                     "TopK(K) at k: CE rec."};
    lp_report_table(r, "Explained variance and CE-loss recovered against L0 (held-out TinyStories)", 9, h1);
    int front_ev = 1, front_ce = 1, beats_K = 1;
    double worst_ev = 1e9, worst_ce = 1e9;
    const double tol = 0.01;
    for (int b = 0; b < p.nb; b++) {
        lp_report_rowf(r, "%d|%.2f|%.4f|%.2f|%.4f|%.4f|%.4f|%.4f|%.4f", p.budgets[b], eh[b].l0,
                       eh[b].explained_variance, et[b].l0, et[b].explained_variance, eK[b].explained_variance,
                       eh[b].ce_loss_recovered, et[b].ce_loss_recovered, eK[b].ce_loss_recovered);
        double dev = eh[b].explained_variance - et[b].explained_variance;
        double dce = eh[b].ce_loss_recovered - et[b].ce_loss_recovered;
        worst_ev = dev < worst_ev ? dev : worst_ev;
        worst_ce = dce < worst_ce ? dce : worst_ce;
        if (dev < -tol) front_ev = 0;
        if (dce < -tol) front_ce = 0;
        if (p.budgets[b] < p.K && !(eh[b].explained_variance > eK[b].explained_variance)) beats_K = 0;
        char key[64];
        snprintf(key, sizeof key, "ev_hier_k%d", p.budgets[b]);
        lp_report_number(r, key, eh[b].explained_variance);
        snprintf(key, sizeof key, "ev_topk_k%d", p.budgets[b]);
        lp_report_number(r, key, et[b].explained_variance);
        snprintf(key, sizeof key, "ev_topK_at_k%d", p.budgets[b]);
        lp_report_number(r, key, eK[b].explained_variance);
        snprintf(key, sizeof key, "ce_hier_k%d", p.budgets[b]);
        lp_report_number(r, key, eh[b].ce_loss_recovered);
        snprintf(key, sizeof key, "ce_topk_k%d", p.budgets[b]);
        lp_report_number(r, key, et[b].ce_loss_recovered);
    }
    static const char *const h2[] = {"F", "TopK ms/step", "HierTopK ms/step", "ratio", "TopK train tok/s",
                                     "HierTopK train tok/s"};
    lp_report_table(r, "Step time at K = k (median of interleaved steps on one batch of 1024)", 6, h2);
    lp_report_rowf(r, "%d (trained)|%.2f|%.2f|%.2fx|%.0f|%.0f", p.F, ms[0], ms[1], ratio, tps_topk[p.nb - 1], tps_hier);
    lp_report_rowf(r, "%d (fresh)|%.2f|%.2f|%.2fx|-|-", Fb, msb[0], msb[1], ratio_b);
    lp_report_text(r,
                   "Timing on %d thread(s), 1-minute load average %.2f at the start and %.2f at the end "
                   "(the machine is shared: tokens/s of whole runs move with the load; the ratio comes from "
                   "interleaved steps).",
                   lp_threads(), load0, load1);
    lp_report_number(r, "ms_step_topk", ms[0]);
    lp_report_number(r, "ms_step_hiertopk", ms[1]);
    lp_report_number(r, "step_time_ratio", ratio);
    lp_report_number(r, "step_time_ratio_8F", ratio_b);
    lp_report_number(r, "worst_ev_gap", worst_ev);
    lp_report_number(r, "worst_ce_gap", worst_ce);
    lp_report_number(r, "seconds", lp_now() - t_start);

    char loupe_s[512];
    snprintf(loupe_s, sizeof loupe_s,
             "HierTopK EV minus TopK(k) EV is at least %+.4f over k = %d..%d (tolerance %.2f)", worst_ev,
             p.budgets[0], p.K, tol);
    lp_report_claim(r, "One HierarchicalTopK SAE is on or above the per-k TopK Pareto front (EV vs L0)",
                    "Pareto-optimal EV at every L0 against TopK SAEs trained per k", loupe_s, front_ev);
    snprintf(loupe_s, sizeof loupe_s,
             "HierTopK CE recovered minus TopK(k) CE recovered is at least %+.4f over k = %d..%d (tolerance %.2f)",
             worst_ce, p.budgets[0], p.K, tol);
    lp_report_claim(r, "The same holds for CE-loss recovered", "on or above the front", loupe_s, front_ce);
    snprintf(loupe_s, sizeof loupe_s, "TopK(K=%d) run at k=%d: EV %.4f vs HierTopK %.4f", p.K, p.budgets[0],
             eK[0].explained_variance, eh[0].explained_variance);
    lp_report_claim(r, "A TopK SAE trained at K degrades when run at smaller k; HierarchicalTopK does not",
                    "TopK at k < k_train falls far below HierarchicalTopK", loupe_s, beats_K);
    snprintf(loupe_s, sizeof loupe_s, "%.2fx at F=%d, %.2fx at F=%d (CPU, d=64, K=%d, %d threads)", ratio_b, Fb,
             ratio, p.F, p.K, lp_threads());
    lp_report_claim(r, "A HierarchicalTopK step costs about 1.2-1.3x a TopK step (judged at the larger F, 1.0-1.4x)",
                    "1.2-1.3x (GPU, F=65536, d=2304)", loupe_s, ratio_b >= 1.0 && ratio_b <= 1.4);
    if (!front_ev || !front_ce)
        lp_report_text(r, "Where HierarchicalTopK falls below the per-k front it is by the margin shown; at "
                          "this scale (d = 64, %lld training tokens) one SAE shares its capacity across all "
                          "budgets, so the largest budgets pay for the small ones.",
                       (long long)p.train);
done:
    for (int b = 0; b < p.nb; b++) {
        lp_lm_eval_free(&eh[b]);
        lp_lm_eval_free(&et[b]);
        lp_lm_eval_free(&eK[b]);
        lp_sae_free(topk[b]);
    }
    lp_sae_free(hier);
    lp_store_close_reader(st);
    free(wdir);
    lp_rv_env_close(&env);
    return rc;
}
