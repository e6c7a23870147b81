/* lm_eval.c — the field's SAE evaluation on text: reconstruction (MSE, FVU,
 * L0, dead/dense latents, density histogram) and the language-model loss
 * with the SAE spliced in at its hook: CE clean, CE with the SAE, CE with
 * the activation zeroed, CE-loss recovered, ΔLM loss and KL(clean ‖ SAE). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"
#include "loupe/windows.h"

/* Σ over predicted positions of CE; KL against reference log-probs if given. */
static void ce_kl(const float *logits, const int *tok, int B, int T, int V, const float *ref_logp, float *logp_out,
                  double *ce, double *kl) {
    double c = 0, k = 0;
#pragma omp parallel for reduction(+ : c, k) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const float *l = logits + ((int64_t)b * T + t) * V;
            float mx = l[0];
            for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
            double se = 0;
            for (int v = 0; v < V; v++) se += exp((double)l[v] - mx);
            double lse = mx + log(se);
            c += lse - l[tok[b * T + t + 1]];
            int64_t row = ((int64_t)b * (T - 1) + t) * V;
            if (logp_out)
                for (int v = 0; v < V; v++) logp_out[row + v] = (float)(l[v] - lse);
            if (ref_logp) {
                const float *rp = ref_logp + row;
                double kk = 0;
                for (int v = 0; v < V; v++) kk += exp(rp[v]) * (rp[v] - (l[v] - lse));
                k += kk;
            }
        }
    *ce += c;
    if (kl) *kl += k;
}

int lp_lm_eval(const lp_model *m, const lp_tokenizer *tok, lp_sae *sae, lp_hook_point hook, const char *data,
               const lp_lm_eval_opts *o, lp_lm_eval_result *res) {
    memset(res, 0, sizeof *res);
    const int B = o->batch, T = o->ctx, V = m->cfg.vocab_size, D = m->cfg.dim, F = sae->cfg.d_sae;
    if (sae->cfg.d_in != D)
        return lp_fail(LP_ERR_ARG, "SAE has d_in=%d but the model's width is %d", sae->cfg.d_in, D);
    if (T > m->cfg.seq_len || T < 2) return lp_fail(LP_ERR_ARG, "--ctx %d out of range 2..%d", T, m->cfg.seq_len);
    lp_runner *r = NULL;
    lp_windows w;
    int wopen = 0, rc;
    int *toks = lp_malloc((size_t)B * T * sizeof(int));
    float *logits = lp_malloc((size_t)B * T * V * sizeof(float));
    float *ref = lp_malloc((size_t)B * (T - 1) * V * sizeof(float));
    lp_splice sp_sae, sp_zero;
    memset(&sp_sae, 0, sizeof sp_sae);
    memset(&sp_zero, 0, sizeof sp_zero);
    if (!toks || !logits || !ref) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    int bos = lp_tokenizer_bos(tok);
    if ((rc = lp_splice_init(&sp_sae, LP_SPLICE_SAE, sae, bos, B * T, D)) ||
        (rc = lp_splice_init(&sp_zero, LP_SPLICE_ZERO, NULL, bos, B * T, D)))
        goto done;
    sp_sae.k_override = o->k_override;
    sp_sae.keep = o->keep;
    if ((rc = lp_runner_new(&r, m, B, T))) goto done;
    if ((rc = lp_windows_open(&w, data, o->skip_bytes, tok, T))) goto done;
    wopen = 1;
    /* skip tokens by discarding windows */
    while (w.tokens < o->skip_tokens) {
        int nb;
        if ((rc = lp_windows_next(&w, 1, toks, NULL, &nb))) goto done;
        if (!nb) break;
    }
    lp_hooks hs, hz;
    lp_hooks_clear(&hs);
    lp_hooks_clear(&hz);
    lp_hooks_add(&hs, hook, lp_splice_hook, &sp_sae);
    lp_hooks_add(&hz, hook, lp_splice_hook, &sp_zero);
    double ce_c = 0, ce_s = 0, ce_z = 0, kl = 0;
    int64_t preds = 0;
    lp_progress pg;
    lp_progress_init(&pg, (double)o->tokens, "tok");
    if (!o->progress) pg.enabled = 0;
    while (preds < o->tokens) {
        int nb = 0;
        if ((rc = lp_windows_next(&w, B, toks, NULL, &nb))) goto done;
        if (!nb) break;
        if ((rc = lp_forward(r, toks, nb, T, 0, NULL, LP_LOGITS_ALL, logits))) goto done;
        ce_kl(logits, toks, nb, T, V, NULL, ref, &ce_c, NULL);
        if ((rc = lp_forward(r, toks, nb, T, 0, &hs, LP_LOGITS_ALL, logits))) goto done;
        ce_kl(logits, toks, nb, T, V, ref, NULL, &ce_s, &kl);
        if ((rc = lp_forward(r, toks, nb, T, 0, &hz, LP_LOGITS_ALL, logits))) goto done;
        ce_kl(logits, toks, nb, T, V, NULL, NULL, &ce_z, NULL);
        preds += (int64_t)nb * (T - 1);
        lp_progress_update(&pg, (double)preds, NULL);
    }
    lp_progress_finish(&pg);
    if (preds == 0 || sp_sae.rows == 0) {
        rc = lp_fail(LP_ERR_ARG, "%s: no text left to evaluate on (after skipping %lld bytes and %lld tokens)", data,
                     (long long)o->skip_bytes, (long long)o->skip_tokens);
        goto done;
    }
    res->tokens = preds;
    res->rows = sp_sae.rows;
    res->ce_clean = ce_c / preds;
    res->ce_sae = ce_s / preds;
    res->ce_zero = ce_z / preds;
    res->kl = kl / preds;
    res->delta_lm_loss = res->ce_sae - res->ce_clean;
    double gap = res->ce_zero - res->ce_clean;
    res->ce_loss_recovered = gap != 0 ? (res->ce_zero - res->ce_sae) / gap : 0;
    double n = (double)sp_sae.rows, mu2 = 0;
    for (int j = 0; j < D; j++) mu2 += (sp_sae.sum[j] / n) * (sp_sae.sum[j] / n);
    double var = sp_sae.sum_sq - n * mu2; /* Σ‖x − μ‖² */
    res->mse = sp_sae.sq_err / (n * D);
    res->fvu = var > 0 ? sp_sae.sq_err / var : 0;
    res->explained_variance = 1 - res->fvu;
    res->l0 = sp_sae.l0_sum / n;
    int64_t dead = 0, dense = 0;
    for (int f = 0; f < F; f++) {
        int64_t c = sp_sae.fires[f];
        if (c == 0) {
            dead++;
            res->density_hist[11]++;
            continue;
        }
        double fr = c / n;
        if (fr > 0.1) dense++;
        int bin = (int)floor(log10(fr)) + 11; /* [-10,-9) -> 1 ... [-1,0] -> 10 */
        if (bin < 0) bin = 0;
        if (bin > 10) bin = 10;
        res->density_hist[bin]++;
    }
    res->dead_fraction = (double)dead / F;
    res->dense_fraction = (double)dense / F;
    res->d_sae = F;
    res->fires = sp_sae.fires;
    sp_sae.fires = NULL;
    rc = LP_OK;
done:
    if (wopen) lp_windows_close(&w);
    lp_runner_free(r);
    lp_splice_free(&sp_sae);
    lp_splice_free(&sp_zero);
    free(toks);
    free(logits);
    free(ref);
    return rc;
}

void lp_lm_eval_free(lp_lm_eval_result *r) {
    free(r->fires);
    r->fires = NULL;
}
