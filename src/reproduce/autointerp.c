/* autointerp.c — `loupe reproduce autointerp`: the segment-aware
 * auto-interpretation of arXiv 2606.10029 (methods.md §2) on stories260K.
 * The paper's TTS model has a text prompt and generated audio tokens; here
 * the two segments are a TinyStories prompt and the model's own sampled
 * continuation (`harvest --generate`). BatchTopK SAEs on the residual stream
 * of several layers; per feature the segment tag from its top-20
 * activations; the offline explainer and detection AUROC per tag; tag counts
 * per layer. Leaves a dashboard-ready run in OUT/work/run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/harvest.h"
#include "loupe/interp.h"
#include "loupe/sae_format.h"
#include "reproduce/reproduce.h"

typedef struct {
    int layer;
    int count[4];    /* prompt, generated, mixed, dead */
    double auroc[4]; /* prompt, generated, mixed, all */
    double sd[4];    /* standard deviation over features */
    int scored[4];
} layer_result;

static int one_layer(const lp_reproduce_opts *ro, const char *work, const char *store_dir, const char *hook,
                     int layer, const lp_model *m, const lp_tokenizer *tok, char *const *vocab, int d_sae, int k,
                     int64_t train_tokens, layer_result *lr) {
    (void)ro;
    char sae_dir[1300], name[32], run[1300], logp[1400];
    snprintf(name, sizeof name, "L%d", layer);
    snprintf(sae_dir, sizeof sae_dir, "%s/sae/%s", work, name);
    snprintf(run, sizeof run, "%s/run", work);
    snprintf(logp, sizeof logp, "%s/metrics.jsonl", sae_dir);
    lp_store *st = NULL;
    lp_sae *s = NULL, *sl = NULL;
    lp_segments seg;
    memset(&seg, 0, sizeof seg);
    lp_features f;
    memset(&f, 0, sizeof f);
    lp_explanations ex;
    memset(&ex, 0, sizeof ex);
    int rc = lp_store_open(&st, store_dir, hook);
    if (!rc) rc = lp_segments_load(&seg, store_dir, lp_store_count(st));
    if (!rc) rc = lp_mkdirs(sae_dir);
    if (rc) goto done;
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = LP_SAE_BATCHTOPK;
    c.d_in = lp_store_dim(st);
    c.d_sae = d_sae;
    c.k = k;
    c.seed = 0;
    snprintf(c.model, sizeof c.model, "%s", lp_store_model(st));
    snprintf(c.hook, sizeof c.hook, "%s", hook);
    snprintf(c.dataset, sizeof c.dataset, "%s", lp_store_data(st));
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.tokens = train_tokens;
    o.lr = 4e-3f;
    o.log_every = 50;
    o.log_path = logp;
    o.progress = 0;
    lp_sae_resolve_defaults(&c, &o);
    if (c.k_aux > c.d_sae) c.k_aux = c.d_sae;
    fprintf(stderr, "autointerp: training a BatchTopK SAE (F=%d, k=%d) on %s for %lld tokens\n", d_sae, k, hook,
            (long long)train_tokens);
    if ((rc = lp_sae_new(&s, &c)) || (rc = lp_sae_train(s, st, &o)) || (rc = lp_sae_save(s, sae_dir, LP_SAE_FMT_SAELENS)))
        goto done;
    if ((rc = lp_sae_load(&sl, sae_dir, c.d_in))) goto done; /* folded: latents on raw rows */
    lp_feat_opts fo;
    lp_feat_opts_default(&fo);
    if ((rc = lp_features_compute(&f, sl, st, &seg, m, m->cfg.vocab_size, &fo))) goto done;
    if ((rc = lp_explanations_new(&ex, f.F)) || (rc = lp_explain_offline(&f, vocab, &ex))) goto done;
    lp_featrun_info info = {.name = name, .sae_path = sae_dir, .store_path = store_dir, .model_path = m->path,
                            .hook = hook, .arch = "batchtopk", .k = k, .layer = layer};
    (void)tok;
    if ((rc = lp_featrun_save(run, &info, &f, &ex, vocab))) goto done;
    memset(lr, 0, sizeof *lr);
    lr->layer = layer;
    double sum[4] = {0}, sq[4] = {0};
    for (int i = 0; i < f.F; i++) {
        int t = f.tag[i], slot = t == LP_TAG_DEAD ? 3 : t == LP_TAG_MIXED ? 2 : t;
        lr->count[slot]++;
        if (slot == 3 || !isfinite(ex.auroc[i])) continue;
        sum[slot] += ex.auroc[i];
        sq[slot] += (double)ex.auroc[i] * ex.auroc[i];
        lr->scored[slot]++;
        sum[3] += ex.auroc[i];
        sq[3] += (double)ex.auroc[i] * ex.auroc[i];
        lr->scored[3]++;
    }
    for (int j = 0; j < 4; j++) {
        int n = lr->scored[j];
        lr->auroc[j] = n ? sum[j] / n : NAN;
        lr->sd[j] = n > 1 ? sqrt(fmax(0, (sq[j] - sum[j] * sum[j] / n) / (n - 1))) : NAN;
    }
done:
    lp_explanations_free(&ex);
    lp_features_free(&f);
    lp_segments_free(&seg);
    lp_sae_free(s);
    lp_sae_free(sl);
    lp_store_close_reader(st);
    return rc;
}

static void fmt3(char *b, size_t n, double v) {
    if (isfinite(v)) snprintf(b, n, "%.3f", v);
    else snprintf(b, n, "–");
}

int lp_reproduce_autointerp(const lp_reproduce_opts *o, lp_report *r) {
    const int quick = o->quick;
    const int64_t rows = quick ? 60000 : 400000, train_tokens = quick ? 200000 : 1500000;
    const int d_sae = quick ? 256 : 1024, k = quick ? 8 : 16, ctx = 128, prompt = 64;
    const int layers_full[] = {0, 1, 2, 3, 4}, layers_quick[] = {1, 3};
    const int *layers = quick ? layers_quick : layers_full, nl = quick ? 2 : 5;
    const int main_layer = 3;
    char work[1024], store[1100];
    snprintf(work, sizeof work, "%s/work", o->out);
    snprintf(store, sizeof store, "%s/store", work);
    const char *mp = lp_reproduce_shared(o, "models/stories260K.bin");
    const char *tp = lp_reproduce_shared(o, "models/tok512.bin");
    const char *dp = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    char **vocab = NULL;
    int rc = lp_model_load(&m, mp);
    if (!rc) rc = lp_tokenizer_load(&tok, tp, m->cfg.vocab_size);
    if (!rc) rc = lp_vocab_build(tok, m->cfg.vocab_size, &vocab);
    if (!rc) rc = lp_mkdirs(work);
    if (rc) goto done;
    double t0 = lp_now();
    /* a fresh store each time (the generation is seeded: same data) */
    {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "%s/manifest.json", store);
        if (lp_file_exists(cmd)) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", store);
            if (system(cmd) != 0) {
                rc = lp_fail(LP_ERR_IO, "%s: cannot remove the previous store", store);
                goto done;
            }
        }
    }
    char hooks_buf[5][40];
    const char *hooks[5];
    for (int i = 0; i < nl; i++) {
        snprintf(hooks_buf[i], sizeof hooks_buf[i], "blocks.%d.hook_resid_post", layers[i]);
        hooks[i] = hooks_buf[i];
    }
    lp_harvest_gen_opts go = {.base = {.model_path = mp, .tokenizer_path = tp, .data_path = dp, .n_hooks = nl,
                                       .hooks = hooks, .tokens = rows, .ctx = ctx, .batch = 32,
                                       .dtype = LP_STORE_F32, .progress = 0},
                              .prompt_tokens = prompt, .temperature = 1.0f, .top_p = 0.95f, .seed = 0};
    lp_harvest_gen_result gr;
    int threads = lp_threads();
    lp_set_threads(1); /* one token per step: threads only add synchronisation */
    fprintf(stderr, "autointerp: generating %lld rows (prompt %d + continuation to %d tokens)\n", (long long)rows,
            prompt, ctx);
    rc = lp_harvest_generate(m, tok, &go, store, &gr);
    lp_set_threads(threads);
    if (rc) goto done;
    double t1 = lp_now();
    layer_result res[5];
    for (int i = 0; i < nl && !rc; i++)
        rc = one_layer(o, work, store, hooks[i], layers[i], m, tok, vocab, d_sae, k, train_tokens, &res[i]);
    if (rc) goto done;
    double t2 = lp_now();

    lp_report_text(r,
                   "Segment-aware auto-interpretation (arXiv 2606.10029, methods.md §2) on stories260K. The paper "
                   "tags BatchTopK features of a TTS language model as text-modal, audio-modal or mixed from the "
                   "share of their top-20 activations in each modality (>= 0.8 / <= 0.2), explains them from "
                   "evidence windows, and scores the explanations by detection AUROC on held-out positives vs "
                   "negatives from other features. Here the token stream has a prompt segment (the first %d tokens "
                   "of a TinyStories document) and a generated segment (the model's own continuation, sampled at "
                   "T=1, top-p 0.95, up to %d tokens): %lld rows from %lld sequences (%lld prompt, %lld generated). "
                   "BatchTopK SAEs (F=%d, k=%d, %lld training tokens) per layer; the offline explainer (most "
                   "characteristic activating tokens, preceding tokens and context vs the store's token "
                   "frequencies) and its window scorer. Harvest %.0f s, SAEs + features %.0f s.",
                   prompt, ctx, (long long)gr.base.rows, (long long)gr.sequences, (long long)gr.prompt_rows,
                   (long long)gr.generated_rows, d_sae, k, (long long)train_tokens, t1 - t0, t2 - t1);
    const char *h1[] = {"layer", "prompt-modal", "generated-modal", "mixed", "dead", "AUROC prompt", "AUROC generated",
                        "AUROC mixed", "AUROC all"};
    lp_report_table(r, "Segment tags and offline-explainer detection AUROC per layer (mean over scored features)", 9, h1);
    int mi = 0;
    for (int i = 0; i < nl; i++) {
        char a[4][16];
        for (int j = 0; j < 4; j++) fmt3(a[j], sizeof a[j], res[i].auroc[j]);
        lp_report_rowf(r, "%d|%d|%d|%d|%d|%s (%d)|%s (%d)|%s (%d)|%s", res[i].layer, res[i].count[0],
                       res[i].count[1], res[i].count[2], res[i].count[3], a[0], res[i].scored[0], a[1],
                       res[i].scored[1], a[2], res[i].scored[2], a[3]);
        if (layers[i] == main_layer) mi = i;
        char key[64];
        snprintf(key, sizeof key, "L%d_auroc_prompt", layers[i]);
        lp_report_number(r, key, res[i].auroc[0]);
        snprintf(key, sizeof key, "L%d_auroc_generated", layers[i]);
        lp_report_number(r, key, res[i].auroc[1]);
        snprintf(key, sizeof key, "L%d_auroc_mixed", layers[i]);
        lp_report_number(r, key, res[i].auroc[2]);
        snprintf(key, sizeof key, "L%d_n_prompt", layers[i]);
        lp_report_number(r, key, res[i].count[0]);
        snprintf(key, sizeof key, "L%d_n_generated", layers[i]);
        lp_report_number(r, key, res[i].count[1]);
        snprintf(key, sizeof key, "L%d_n_mixed", layers[i]);
        lp_report_number(r, key, res[i].count[2]);
    }
    const layer_result *M = &res[mi];
    const char *h2[] = {"tag", "paper (CosyVoice3 L20, LLM explainer)", "loupe (stories260K L3, offline explainer)",
                        "features"};
    lp_report_table(r, "Detection AUROC by segment tag next to the paper", 4, h2);
    char a0[16], a1[16], a2[16];
    fmt3(a0, sizeof a0, M->auroc[0]);
    fmt3(a1, sizeof a1, M->auroc[1]);
    fmt3(a2, sizeof a2, M->auroc[2]);
    lp_report_rowf(r, "text-modal / prompt|0.921|%s|%d", a0, M->count[0]);
    lp_report_rowf(r, "audio-modal / generated|0.653|%s|%d", a1, M->count[1]);
    lp_report_rowf(r, "mixed|0.558|%s|%d", a2, M->count[2]);
    /* a gap counts when it exceeds twice its standard error */
#define GAP(a, b) (M->auroc[a] - M->auroc[b])
#define SE(a, b) sqrt(M->sd[a] * M->sd[a] / M->scored[a] + M->sd[b] * M->sd[b] / M->scored[b])
#define SIG(a, b) (isfinite(GAP(a, b)) && isfinite(SE(a, b)) && GAP(a, b) > 2 * SE(a, b))
    char cl[240];
    snprintf(cl, sizeof cl, "prompt %s vs mixed %s (gap %+.3f ± %.3f)", a0, a2, GAP(0, 2), SE(0, 2));
    lp_report_claim(r, "Features of the conditioning segment (text / prompt) are explained better than mixed features",
                    "0.921 vs 0.558", cl, SIG(0, 2));
    snprintf(cl, sizeof cl, "generated %s vs mixed %s (gap %+.3f ± %.3f)", a1, a2, GAP(1, 2), SE(1, 2));
    lp_report_claim(r, "Features of the generated segment (audio / continuation) are explained better than mixed ones",
                    "0.653 vs 0.558", cl, SIG(1, 2));
    snprintf(cl, sizeof cl, "prompt %s vs generated %s (gap %+.3f ± %.3f)", a0, a1, GAP(0, 1), SE(0, 1));
    lp_report_claim(r, "Conditioning-segment features are explained better than generated-segment features",
                    "0.921 vs 0.653", cl, SIG(0, 1));
#undef GAP
#undef SE
#undef SIG
    lp_report_text(r, "A claim counts as reproduced when loupe's gap is positive and larger than twice its standard "
                      "error (± above: standard error of the difference of the two means over features).");
    lp_report_text(r,
                   "Reading the comparison: the paper's gap between text-modal (0.921) and audio-modal (0.653) "
                   "features comes from a change of modality (discrete speech tokens that a text explainer cannot "
                   "read) and an LLM explainer/scorer. Here both segments are English text from the same tokenizer, "
                   "so the explainer reads both equally well; what separates the segments is only who wrote the "
                   "text and where it sits in the window (prompt tokens come first). Expect small gaps between the "
                   "tags here, and read the absolute AUROCs as those of a token-matching explainer, not of an LLM. "
                   "The dashboard of this run: loupe serve --dir %s/run",
                   work);
done:
    lp_vocab_free(vocab, m ? m->cfg.vocab_size : 0);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
