/* cmd_demo.c — `loupe demo`: the main job on the shipped default model,
 * end to end: harvest activations from TinyStories → train a TopK SAE →
 * evaluate it on held-out text (reconstruction and LM loss with the SAE
 * spliced in) → print the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/harvest.h"
#include "loupe/sae_format.h"
#include "loupe/steer.h"
#include "loupe/store.h"
#include "reproduce/synth_pipeline.h"

int cmd_demo(int argc, char **argv) {
    const char *out = NULL, *model = NULL, *tokpath = NULL, *data = NULL, *hook = NULL, *arch_s = NULL;
    int quick = 0, threads = 0, d_sae = 0, k = 0, synthetic = 0;
    int64_t tokens = 0, train_tokens = 0;
    cli_opt opts[] = {
        {"--out", 's', &out, "loupe-demo", "working directory (store, SAE, results)"},
        {"--model", 's', &model, NULL, "model (default: shared stories260K.bin, else the download)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--data", 's', &data, NULL, "corpus (default: shared TinyStories train_sample.txt)"},
        {"--hook", 's', &hook, "blocks.2.hook_resid_post", "where to read activations"},
        {"--arch", 's', &arch_s, "topk", "SAE architecture"},
        {"--d-sae", 'i', &d_sae, "1024", "latents"},
        {"--k", 'i', &k, "16", "active latents per token"},
        {"--tokens", 'l', &tokens, "800000", "activations to harvest"},
        {"--train-tokens", 'l', &train_tokens, "2000000", "training tokens"},
        {"--quick", 'b', &quick, NULL, "a 20-second version (100k activations, 300k training tokens)"},
        {"--synthetic", 'b', &synthetic, NULL, "the seed-stability pipeline on loupe's synthetic model (no download)"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("demo", "[--out DIR] [--quick]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (threads > 0) lp_set_threads(threads);
    if (synthetic) { /* known ground truth: isolated directions + low-rank blocks, several seeds */
        lp_synth_pipeline_opts so;
        lp_synth_pipeline_defaults(&so, quick);
        char *work = lp_path_join(out, "synthetic");
        so.work = work;
        so.verbose = 1;
        lp_report *r = lp_report_new("synthetic", "loupe demo --synthetic: feature stability on a model with known ground truth");
        lp_synth_eval ev;
        rc = lp_synth_pipeline(&so, r, &ev);
        if (!rc) rc = lp_report_write(r, work);
        if (rc) {
            lp_report_free(r);
            free(work);
            return cli_error("demo");
        }
        printf("loupe demo --synthetic: %d SAEs on a synthetic model with %d isolated features and %d blocks\n", ev.n,
               ev.n_iso, ev.n_blocks);
        printf("| measure | value |\n|---|---|\n");
        printf("| isolated features recovered (cos >= %.2f) | %.1f%% |\n", so.eval.iso_tau, 100 * ev.iso_recovered);
        printf("| isolated-feature latents stable across seeds | %.1f%% |\n", 100 * ev.iso_frac_stable);
        printf("| block directions recovered individually | %.1f%% |\n", 100 * ev.block_dir_recovered);
        printf("| block latents stable across seeds | %.1f%% |\n", 100 * ev.block_frac_stable);
        printf("| largest principal angle, block subspace vs its latents | %.1f deg |\n", ev.block_angle_max);
        printf("report: %s/report.md\n", work);
        lp_synth_eval_free(&ev);
        lp_report_free(r);
        free(work);
        return 0;
    }
    if (quick) tokens = 100000, train_tokens = 300000;
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    if (!data) data = cli_shared_path("data/tinystories/train_sample.txt");
    if (!lp_file_exists(model) || !lp_file_exists(data))
        return cli_errorf("demo", "%s or %s is missing: run scripts/get-models.sh first", model, data);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_store *st = NULL;
    lp_sae *sae = NULL;
    char *store_dir = lp_path_join(out, "store"), *sae_dir = lp_path_join(out, "sae");
    rc = 1;
    if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    lp_hook_point hp;
    if (lp_hook_parse(hook, m->cfg.n_layers, &hp) || lp_mkdirs(out)) goto fail;
    double t0 = lp_now();
    /* 1. harvest (reuse a complete store from an earlier run) */
    if (lp_store_open(&st, store_dir, hook) != 0 || lp_store_count(st) < tokens) {
        lp_store_close_reader(st);
        st = NULL;
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", store_dir);
        if (lp_is_dir(store_dir) && system(cmd) != 0) {
            lp_fail(LP_ERR_IO, "%s: cannot clear the old store", store_dir);
            goto fail;
        }
        fprintf(stderr, "[1/3] harvesting %lld activations at %s from %s\n", (long long)tokens, hook, data);
        const char *hooks[1] = {hook};
        lp_harvest_opts ho = {.model_path = model, .tokenizer_path = tokpath, .data_path = data, .n_hooks = 1,
                              .hooks = hooks, .tokens = tokens, .ctx = 128, .batch = 32, .progress = 1};
        lp_harvest_result hr;
        if (lp_harvest(m, tok, &ho, store_dir, &hr)) goto fail;
        if (lp_store_open(&st, store_dir, hook)) goto fail;
    } else
        fprintf(stderr, "[1/3] reusing the store in %s\n", store_dir);
    /* 2. train */
    lp_sae_config c;
    lp_sae_config_default(&c);
    if (lp_sae_arch_parse(arch_s, &c.arch)) goto fail;
    c.d_in = lp_store_dim(st);
    c.d_sae = d_sae;
    c.k = k;
    snprintf(c.model, sizeof c.model, "%s", model);
    snprintf(c.hook, sizeof c.hook, "%s", hook);
    snprintf(c.dataset, sizeof c.dataset, "%s", data);
    c.dataset_bytes = lp_store_meta_int(st, "data_bytes_consumed", 0);
    c.context_size = 128;
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.tokens = train_tokens;
    o.lr = 4e-3f;
    o.progress = 1;
    o.label = "demo";
    lp_sae_resolve_defaults(&c, &o);
    fprintf(stderr, "[2/3] training a %s SAE (%d latents, k=%d) on %lld tokens\n", arch_s, d_sae, k, (long long)train_tokens);
    if (lp_sae_new(&sae, &c) || lp_sae_train(sae, st, &o) || lp_sae_save(sae, sae_dir, LP_SAE_FMT_SAELENS)) goto fail;
    /* 3. evaluate on the text after the harvested part */
    fprintf(stderr, "[3/3] evaluating on held-out text\n");
    lp_lm_eval_opts eo = {.tokens = quick ? 20000 : 100000, .ctx = 128, .batch = 16, .skip_bytes = c.dataset_bytes, .progress = 1};
    lp_lm_eval_result r;
    if (lp_lm_eval(m, tok, sae, hp, data, &eo, &r)) goto fail;
    printf("loupe demo: %s SAE, %d latents, k=%d, on %s of %s (%.0f s in all)\n", arch_s, d_sae, k, hook, model,
           lp_now() - t0);
    printf("| metric (held-out, %lld tokens) | value |\n|---|---|\n", (long long)r.tokens);
    printf("| explained variance | %.4f |\n| L0 | %.2f |\n| dead latents | %.2f%% |\n", r.explained_variance, r.l0,
           100 * r.dead_fraction);
    printf("| CE clean | %.4f |\n| CE with SAE | %.4f |\n| CE zero-ablated | %.4f |\n", r.ce_clean, r.ce_sae, r.ce_zero);
    printf("| CE loss recovered | %.4f |\n| ΔLM loss (nats) | %.4f |\n| KL | %.4f |\n", r.ce_loss_recovered,
           r.delta_lm_loss, r.kl);
    printf("SAE saved in %s (SAELens layout); try: loupe sae info %s\n", sae_dir, sae_dir);
    lp_lm_eval_free(&r);
    rc = 0;
fail:
    if (rc) cli_error("demo");
    lp_store_close_reader(st);
    lp_sae_free(sae);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(store_dir);
    free(sae_dir);
    return rc;
}
