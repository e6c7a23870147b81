/* steering.c — (reproduce) `loupe reproduce steering`: steering generation
 * through one SAE feature (arXiv 2606.10029 §steering; arXiv 2502.03032
 * multi-layer) on stories260K. The target behaviour is a story mentioning
 * a word: of a fixed list of single-token words, the one with the lowest
 * base rate in unsteered samples. The steered feature is the residual
 * feature of the last layer whose logit lens ranks that token highest
 * (z-scored over the vocabulary). Tables: the α sweep (rate, coherence),
 * single- vs multi-layer along the feature's flow chain, the through-the-
 * SAE variant, and removing the feature (r = 0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/flow.h"
#include "loupe/steer.h"
#include "reproduce/reproduce.h"

/* a token piece for report text: control bytes as \xNN, '|' as '/' */
static void text_piece(const char *p, char *out, size_t cap) {
    size_t k = 0;
    for (; p && *p && k + 5 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) k += (size_t)snprintf(out + k, cap - k, "\\x%02X", c);
        else out[k++] = c == '|' ? '/' : (char)c;
    }
    out[k] = 0;
}

static const char *const k_cands[] = {"mom", "friend", "happy", "play", "big", "Tim", "Lily"};
enum { NCAND = sizeof k_cands / sizeof k_cands[0] };

typedef struct {
    const lp_model *m;
    const lp_tokenizer *tok;
    lp_steer_eval_opts eo;
    lp_steer_eval_result base;
} ctx;

/* run one setting: the chain's first n sites (j = 0 the target) with weights w[] */
static int run_setting(ctx *c, lp_sae **saes, const int *feats, const float *zb, const float *w, int n, int op, float coef,
                       int variant, const lp_pos_spec *pos, lp_steer_eval_result *res) {
    lp_steer st;
    lp_steer_init(&st, variant, pos, lp_tokenizer_bos(c->tok));
    int rc = LP_OK;
    for (int j = 0; j < n && !rc; j++) {
        lp_steer_term t = {{0, LP_HOOK_RESID_POST}, saes[j], feats[j], op,
                           op == LP_STEER_ADD ? coef * w[j] : 1.0f + (coef - 1.0f) * w[j], zb[j]};
        rc = lp_hook_parse(saes[j]->cfg.hook, c->m->cfg.n_layers, &t.at); /* the site it was trained at */
        if (!rc) rc = lp_steer_add(&st, &t);
    }
    if (!rc) rc = lp_steer_eval(c->m, c->tok, &st, &c->eo, res, NULL);
    lp_steer_free(&st);
    return rc;
}

int lp_reproduce_steering(const lp_reproduce_opts *o, lp_report *r) {
    const int quick = o->quick;
    lp_set_threads(1); /* a 64-wide model: threading overhead exceeds the work */
    lp_repro_sites_cfg sc = {.all_kinds = 0,
                             .harvest_tokens = quick ? 60000 : 400000,
                             .ctx = 128,
                             .d_sae = quick ? 256 : 512,
                             .k = 8,
                             .train_tokens = quick ? 150000 : 2000000};
    const int samples = quick ? 12 : 64, steps = quick ? 64 : 128;
    const float alphas_full[] = {1, 2, 3, 4, 6, 8}, alphas_quick[] = {2, 4, 8};
    const float *alphas = quick ? alphas_quick : alphas_full;
    const int n_alpha = quick ? 3 : 6;
    double t0 = lp_now();
    char *work = lp_path_join(o->out, "work/sites");
    lp_flow_sites S;
    memset(&S, 0, sizeof S);
    lp_flow fl;
    memset(&fl, 0, sizeof fl);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    float *sc_lens = NULL, *zall[LP_FLOW_MAX_LAYERS] = {0}, *freq[LP_FLOW_MAX_LAYERS] = {0};
    char **texts = NULL;
    int64_t data_bytes = 0;
    int rc = work ? LP_OK : LP_ERR_NOMEM;
    if (!rc) rc = lp_repro_sites(o, &sc, work, &S, &data_bytes);
    if (!rc) rc = lp_model_load(&m, lp_reproduce_shared(o, "models/stories260K.bin"));
    if (!rc) rc = lp_tokenizer_load(&tok, lp_reproduce_shared(o, "models/tok512.bin"), m->cfg.vocab_size);
    if (rc) goto done;
    const int NL = S.n_layers, V = m->cfg.vocab_size, D = m->cfg.dim;
    const char *data = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    double t_sites = lp_now() - t0;

    /* feature statistics (Z̄, firing frequency) of every residual SAE on held-out text */
    lp_hook_point at[LP_FLOW_MAX_LAYERS];
    for (int L = 0; L < NL; L++) {
        at[L] = (lp_hook_point){L, LP_HOOK_RESID_POST};
        zall[L] = calloc((size_t)S.sae[LP_FLOW_RES][L]->cfg.d_sae, sizeof(float));
        freq[L] = calloc((size_t)S.sae[LP_FLOW_RES][L]->cfg.d_sae, sizeof(float));
        if (!zall[L] || !freq[L]) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
    }
    if ((rc = lp_feature_stats(m, tok, NL, S.sae[LP_FLOW_RES], at, data, data_bytes, quick ? 20000 : 100000, 128, zall, freq)))
        goto done;

    /* the prompt and unsteered samples: pick the target word */
    int prompt[64], n_prompt = 0;
    if ((rc = lp_tokenizer_encode(tok, "Once upon a time", 1, 0, prompt, 64, &n_prompt))) goto done;
    texts = calloc((size_t)samples, sizeof *texts);
    if (!texts) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    ctx c = {m, tok, {prompt, n_prompt, steps, samples, 1.0f, 0.9f, 1234, 0, NULL}, {0, 0, 0, 0, 0}};
    if ((rc = lp_steer_eval(m, tok, NULL, &c.eo, &c.base, texts))) goto done;
    int best_w = 0;
    double rates[NCAND];
    for (int w = 0; w < NCAND; w++) {
        const char *ws[2] = {k_cands[w], NULL};
        char plural[32];
        snprintf(plural, sizeof plural, "%ss", k_cands[w]);
        ws[1] = plural;
        int hit = 0;
        for (int i = 0; i < samples; i++) hit += lp_count_words(texts[i], ws, 2, NULL) > 0;
        rates[w] = (double)hit / samples;
        if (rates[w] < rates[best_w]) best_w = w;
    }
    const char *target = k_cands[best_w];
    char target_pl[32], piece[40];
    snprintf(target_pl, sizeof target_pl, "%ss", target);
    const char *words[2] = {target, target_pl};
    c.eo.words = words;
    c.eo.n_words = 2;
    if ((rc = lp_steer_eval(m, tok, NULL, &c.eo, &c.base, NULL))) goto done;
    /* the token " target" and the feature whose lens z-score for it is highest (last layer) */
    snprintf(piece, sizeof piece, " %s", target);
    int tid = -1;
    for (int t = 0; t < V; t++)
        if (strcmp(lp_tokenizer_piece(tok, t), piece) == 0) tid = t;
    if (tid < 0) {
        rc = lp_fail(LP_ERR_ARG, "steering: '%s' is not a token of the vocabulary", piece);
        goto done;
    }
    const int LT = NL - 1;
    lp_sae *tsae = S.sae[LP_FLOW_RES][LT];
    sc_lens = malloc((size_t)V * sizeof(float));
    if (!sc_lens) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    int feat = -1;
    double best_z = -1e30;
    for (int f = 0; f < tsae->cfg.d_sae; f++) {
        if (freq[LT][f] < 1e-4f) continue; /* steer features that exist on text */
        if ((rc = lp_lens(m, tsae->p[LP_SAE_W_DEC] + (int64_t)f * D, sc_lens))) goto done;
        double mu = 0, var = 0;
        for (int t = 0; t < V; t++) mu += sc_lens[t] / V;
        for (int t = 0; t < V; t++) var += (sc_lens[t] - mu) * (sc_lens[t] - mu) / V;
        double z = (sc_lens[tid] - mu) / sqrt(var + 1e-12);
        if (z > best_z) best_z = z, feat = f;
    }
    if (feat < 0) {
        rc = lp_fail(LP_ERR_ARG, "steering: no residual feature fires at layer %d", LT);
        goto done;
    }
    int top[8];
    lp_lens(m, tsae->p[LP_SAE_W_DEC] + (int64_t)feat * D, sc_lens);
    lp_lens_top(sc_lens, V, 8, top, NULL);
    char lens_txt[256] = "";
    for (int i = 0; i < 8; i++) {
        char pc[40];
        text_piece(lp_tokenizer_piece(tok, top[i]), pc, sizeof pc);
        snprintf(lens_txt + strlen(lens_txt), sizeof lens_txt - strlen(lens_txt), "%s'%s'", i ? " " : "", pc);
    }

    /* the flow chain of the feature back to layer 0 */
    lp_flow_opts fo = {0};
    if ((rc = lp_flow_compute(&fl, NL, S.sae[LP_FLOW_RES], NULL, NULL, &fo))) goto done;
    int chain[LP_FLOW_MAX_LAYERS];
    const int nch = lp_flow_chain(&fl, LT, feat, chain);
    lp_sae *saes[LP_FLOW_MAX_LAYERS];
    float zb[LP_FLOW_MAX_LAYERS], w1[LP_FLOW_MAX_LAYERS], wexp[LP_FLOW_MAX_LAYERS], wconst[LP_FLOW_MAX_LAYERS];
    char chain_txt[512] = "";
    for (int j = 0; j < nch; j++) {
        saes[j] = S.sae[LP_FLOW_RES][LT - j];
        zb[j] = zall[LT - j][chain[j]];
        w1[j] = j == 0;
        wexp[j] = lp_steer_schedule(LP_SCHED_EXP, j, nch, 0.5f);
        wconst[j] = 1.0f;
        snprintf(chain_txt + strlen(chain_txt), sizeof chain_txt - strlen(chain_txt), "%sR%d #%d", j ? " <- " : "", LT - j, chain[j]);
        if (j > 0)
            snprintf(chain_txt + strlen(chain_txt), sizeof chain_txt - strlen(chain_txt), " (cos %.2f)",
                     fl.layer[LT - j + 1].s[LP_FLOW_RES][chain[j - 1]]);
    }
    lp_report_text(r,
                   "Setting: stories260K; TopK SAEs (F = %d, k = %d, %lld tokens) on the residual stream after each of the %d "
                   "layers. Target behaviour: a story that mentions \"%s\" (or \"%s\", counted as the same word), chosen as the rarest in unsteered "
                   "samples among {mom, friend, happy, play, big, Tim, Lily}. Steered feature: residual feature %d at layer "
                   "%d, the one whose logit lens ranks \" %s\" highest (z = %.1f over the vocabulary); its lens promotes %s. "
                   "Zbar = %.3f (its mean activation where it fires on held-out text). Flow chain: %s. Samples: %d per "
                   "setting, prompt \"Once upon a time\", %d positions, temperature 1, top-p 0.9, seeds 1234 + i (the same "
                   "seeds in every row). Steering adds alpha * Zbar_f * W_dec[f] at the generated positions (error-"
                   "preserving) unless the row says otherwise. Coherence = mean log-likelihood per generated token of the "
                   "steered text under the unsteered model.",
                   sc.d_sae, sc.k, (long long)sc.train_tokens, NL, target, target_pl, feat, LT, target, best_z, lens_txt, zb[0],
                   chain_txt, samples, steps);
    {
        const char *hdr[] = {"word", "base rate"};
        lp_report_table(r, "Base rates of the candidate words (unsteered samples)", 2, hdr);
        for (int w = 0; w < NCAND; w++) lp_report_rowf(r, "%s|%.3f", k_cands[w], rates[w]);
    }
    const char *hdr[] = {"setting", "alpha / r", "sites", "rate", "per 100 words", "coherence (nats/token)"};
    lp_report_table(r, "Steering the target feature: rate of stories mentioning the target word, and coherence", 6, hdr);
    lp_report_rowf(r, "unsteered|-|0|%.3f|%.2f|%.3f", c.base.rate, c.base.per_100, c.base.coherence);
    lp_report_number(r, "base_rate", c.base.rate);
    lp_report_number(r, "base_coherence", c.base.coherence);
    lp_pos_spec gen = {LP_POS_GEN, 0, 0}, all = {LP_POS_ALL, 0, 0};
    double best_single = c.base.rate, best_single_coh = c.base.coherence, best_alpha = 0;
    int multi_wins = 0;
    for (int a = 0; a < n_alpha && !rc; a++) {
        lp_steer_eval_result es, em, ec;
        if ((rc = run_setting(&c, saes, chain, zb, w1, 1, LP_STEER_ADD, alphas[a], LP_STEER_KEEP_ERROR, &gen, &es))) break;
        lp_report_rowf(r, "single layer (R%d)|%g|1|%.3f|%.2f|%.3f", LT, alphas[a], es.rate, es.per_100, es.coherence);
        if ((rc = run_setting(&c, saes, chain, zb, wexp, nch, LP_STEER_ADD, alphas[a], LP_STEER_KEEP_ERROR, &gen, &em))) break;
        lp_report_rowf(r, "flow chain, exp decay 0.5|%g|%d|%.3f|%.2f|%.3f", alphas[a], nch, em.rate, em.per_100, em.coherence);
        if ((rc = run_setting(&c, saes, chain, zb, wconst, nch, LP_STEER_ADD, alphas[a], LP_STEER_KEEP_ERROR, &gen, &ec))) break;
        lp_report_rowf(r, "flow chain, constant|%g|%d|%.3f|%.2f|%.3f", alphas[a], nch, ec.rate, ec.per_100, ec.coherence);
        char key[64];
        snprintf(key, sizeof key, "single_rate_alpha%g", alphas[a]);
        lp_report_number(r, key, es.rate);
        snprintf(key, sizeof key, "single_coherence_alpha%g", alphas[a]);
        lp_report_number(r, key, es.coherence);
        snprintf(key, sizeof key, "multi_exp_rate_alpha%g", alphas[a]);
        lp_report_number(r, key, em.rate);
        if (es.coherence >= c.base.coherence - 1.0 && es.rate > best_single)
            best_single = es.rate, best_single_coh = es.coherence, best_alpha = alphas[a];
        multi_wins += em.rate > es.rate;
    }
    if (rc) goto done;
    {
        lp_steer_eval_result et, ez;
        const float a = alphas[n_alpha - 1] / 2;
        if ((rc = run_setting(&c, saes, chain, zb, w1, 1, LP_STEER_ADD, a, LP_STEER_THROUGH_SAE, &gen, &et))) goto done;
        lp_report_rowf(r, "single layer, through the SAE (h = decode(z'))|%g|1|%.3f|%.2f|%.3f", a, et.rate, et.per_100, et.coherence);
        if ((rc = run_setting(&c, saes, chain, zb, w1, 1, LP_STEER_RESCALE, 0.0f, LP_STEER_KEEP_ERROR, &all, &ez))) goto done;
        lp_report_rowf(r, "remove the feature (r = 0, all positions)|0|1|%.3f|%.2f|%.3f", ez.rate, ez.per_100, ez.coherence);
        lp_report_number(r, "removed_rate", ez.rate);
    }
    char b[200];
    snprintf(b, sizeof b, "\"%s\": %.2f -> %.2f (alpha %g, coherence %.2f -> %.2f nats/token)", target, c.base.rate, best_single,
             best_alpha, c.base.coherence, best_single_coh);
    lp_report_claim(r,
                    "Steering one SAE feature raises the rate of a target behaviour far above its base rate (agreement: "
                    "+0.4 or more at a coherence cost under 1 nat/token)",
                    "laughter 0.02 -> 0.79", b, best_single - c.base.rate >= 0.4);
    snprintf(b, sizeof b, "flow-chain (exp) rate above single-layer at %d of %d strengths", multi_wins, n_alpha);
    lp_report_claim(r, "Steering along the flow graph (several layers) is stronger than at one layer at the same coefficient",
                    "multi-layer steering gives finer thematic control", b, 2 * multi_wins > n_alpha);
    lp_report_text(r,
                   "Reading the table: the rate climbs with alpha but so does the coherence cost; rows at similar coherence "
                   "compare fairly. At one alpha the flow chain adds more in total than one layer (it pushes at every "
                   "layer), so the multi-layer claim is about strength per coefficient, not about free gains. The paper's "
                   "0.02 -> 0.79 is on a 0.5B-parameter TTS model steered at a middle layer; stories260K has 260K "
                   "parameters and a 512-token vocabulary, so a single direction that raises one word without hurting the "
                   "rest of the text is harder to find.");
    lp_report_text(r, "Total time %.0fs (site SAEs %.0fs, trained or reused).", lp_now() - t0, t_sites);
done:
    if (texts)
        for (int i = 0; i < samples; i++) free(texts[i]);
    free(texts);
    for (int L = 0; L < LP_FLOW_MAX_LAYERS; L++) free(zall[L]), free(freq[L]);
    free(sc_lens);
    lp_flow_free(&fl);
    lp_flow_sites_free(&S);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(work);
    return rc;
}
