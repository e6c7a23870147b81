/* cmd_eval.c — `loupe eval`: an SAE evaluated on held-out text with the
 * field's metrics, as a table or (--json) one JSON object. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/sae_format.h"
#include "loupe/steer.h"

static int same_file(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return a && b && realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

int cmd_eval(int argc, char **argv) {
    const char *sae_dir = NULL, *model = NULL, *tokpath = NULL, *data = NULL, *hook_s = NULL;
    int64_t tokens = 0, skip_tokens = 0;
    int ctx = 0, batch = 0, k = 0, json = 0, threads = 0, quiet = 0;
    cli_opt opts[] = {
        {"--sae", 's', &sae_dir, NULL, "SAE directory (SAELens or sparsify layout)"},
        {"--model", 's', &model, NULL, "model (default: the SAE's model, else shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--data", 's', &data, NULL, "text to evaluate on"},
        {"--hook", 's', &hook_s, NULL, "hook to splice at (default: the SAE's hook)"},
        {"--tokens", 'l', &tokens, "100000", "predicted tokens to evaluate"},
        {"--ctx", 'i', &ctx, "0", "window length (0: the SAE's training context, else 128)"},
        {"--batch", 'i', &batch, "16", "windows per forward pass"},
        {"--skip-tokens", 'l', &skip_tokens, "-1", "tokens of --data to skip (-1: skip the part the SAE was trained on when --data is its training file)"},
        {"--k", 'i', &k, "0", "keep only the top k latents per token (0: the SAE's own sparsity)"},
        {"--json", 'b', &json, NULL, "print one JSON object"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress bar"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("eval", "--sae DIR --data FILE [--model M --tokenizer T --tokens N --json]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("eval", "--sae", sae_dir)) || (rc = cli_require("eval", "--data", data))) return rc;
    if (threads > 0) lp_set_threads(threads);
    lp_sae *sae = NULL;
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    rc = 1;
    if (lp_sae_load(&sae, sae_dir, 0)) goto fail;
    if (!model) model = sae->cfg.model[0] && lp_file_exists(sae->cfg.model) ? sae->cfg.model : cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    if (sae->cfg.d_in != m->cfg.dim) {
        lp_fail(LP_ERR_ARG, "%s: SAE d_in=%d does not match the model %s (dim %d)", sae_dir, sae->cfg.d_in, model, m->cfg.dim);
        goto fail;
    }
    if (!hook_s) hook_s = sae->cfg.hook;
    if (!hook_s[0]) {
        lp_fail(LP_ERR_ARG, "%s: the SAE records no hook; pass --hook", sae_dir);
        goto fail;
    }
    lp_hook_point hp;
    if (lp_hook_parse(hook_s, m->cfg.n_layers, &hp)) goto fail;
    if (k > 0 && k > sae->cfg.d_sae) {
        lp_fail(LP_ERR_ARG, "--k %d exceeds the SAE's %d latents", k, sae->cfg.d_sae);
        goto fail;
    }
    lp_lm_eval_opts o = {.tokens = tokens, .ctx = ctx > 0 ? ctx : (sae->cfg.context_size > 0 ? sae->cfg.context_size : 128),
                         .batch = batch, .k_override = k, .progress = !quiet && !json};
    if (skip_tokens >= 0) o.skip_tokens = skip_tokens;
    else if (same_file(data, sae->cfg.dataset)) o.skip_bytes = sae->cfg.dataset_bytes;
    lp_lm_eval_result r;
    if (lp_lm_eval(m, tok, sae, hp, data, &o, &r)) goto fail;
    if (json) {
        printf("{\"sae\": \"%s\", \"arch\": \"%s\", \"hook\": \"%s\", \"data\": \"%s\", \"skip_bytes\": %lld, "
               "\"skip_tokens\": %lld, \"tokens\": %lld, \"rows\": %lld, \"k\": %d,\n"
               " \"explained_variance\": %.6f, \"fvu\": %.6f, \"mse\": %.6g, \"l0\": %.4f, \"dead_fraction\": %.6f, "
               "\"dense_fraction\": %.6f,\n \"ce_clean\": %.6f, \"ce_sae\": %.6f, \"ce_zero\": %.6f, "
               "\"ce_loss_recovered\": %.6f, \"delta_lm_loss\": %.6f, \"kl\": %.6f,\n \"density_histogram\": {\"bins\": "
               "\"log10 firing frequency [-inf,-10), [-10,-9), ..., [-1,0], dead\", \"counts\": [",
               sae_dir, lp_sae_arch_name(sae->cfg.arch), hook_s, data, (long long)o.skip_bytes, (long long)o.skip_tokens,
               (long long)r.tokens, (long long)r.rows, k, r.explained_variance, r.fvu, r.mse, r.l0, r.dead_fraction,
               r.dense_fraction, r.ce_clean, r.ce_sae, r.ce_zero, r.ce_loss_recovered, r.delta_lm_loss, r.kl);
        for (int i = 0; i < 12; i++) printf("%s%lld", i ? ", " : "", (long long)r.density_hist[i]);
        printf("]}}\n");
    } else {
        printf("SAE %s (%s, %d latents) at %s on %s\n", sae_dir, lp_sae_arch_name(sae->cfg.arch), sae->cfg.d_sae, hook_s, data);
        printf("  evaluated %lld predictions (%lld spliced rows), skipping %lld bytes + %lld tokens\n",
               (long long)r.tokens, (long long)r.rows, (long long)o.skip_bytes, (long long)o.skip_tokens);
        printf("  explained variance %8.4f   (FVU %.4f, MSE %.5g)\n", r.explained_variance, r.fvu, r.mse);
        printf("  L0                 %8.2f\n", r.l0);
        printf("  dead latents       %7.2f%%   dense (>10%% of tokens) %.2f%%\n", 100 * r.dead_fraction, 100 * r.dense_fraction);
        printf("  CE clean           %8.4f\n  CE with SAE        %8.4f   (ΔLM loss %+.4f nats, KL %.4f)\n", r.ce_clean, r.ce_sae,
               r.delta_lm_loss, r.kl);
        printf("  CE zero-ablated    %8.4f\n  CE loss recovered  %8.4f\n", r.ce_zero, r.ce_loss_recovered);
    }
    lp_lm_eval_free(&r);
    rc = 0;
fail:
    if (rc) cli_error("eval");
    lp_sae_free(sae);
    lp_model_free(m);
    lp_tokenizer_free(tok);
    return rc;
}
