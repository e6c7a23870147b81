/* cmd_features.c — `loupe features`: per-feature statistics, segment tags,
 * explanations and detection AUROC of an SAE over an activation store,
 * saved as a feature run under RUN/features/NAME for the dashboard. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/interp.h"
#include "loupe/sae_format.h"

/* The store manifest's "tokenizer" field, or NULL (fresh string). */
static char *manifest_tokenizer(const lp_store *st) {
    cJSON *j = cJSON_Parse(lp_store_manifest_text(st));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "tokenizer");
    char *s = cJSON_IsString(t) && *t->valuestring ? strdup(t->valuestring) : NULL;
    cJSON_Delete(j);
    return s;
}

/* Default run name: the SAE directory's base name, made safe. */
static void default_name(const char *sae, char *out, size_t n) {
    size_t l = strlen(sae);
    while (l > 1 && sae[l - 1] == '/') l--;
    size_t b = l;
    while (b > 0 && sae[b - 1] != '/') b--;
    size_t j = 0;
    for (size_t i = b; i < l && j + 1 < n && j < 64; i++) {
        char c = sae[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                 (c == '.' && j > 0);
        out[j++] = ok ? c : '_';
    }
    out[j] = 0;
    if (!j) snprintf(out, n, "sae");
}

int cmd_features(int argc, char **argv) {
    const char *sae_dir = NULL, *store_dir = NULL, *out = NULL, *name = NULL, *hook = NULL, *model_path = NULL,
               *tok_path = NULL, *url = NULL, *emodel = NULL, *keyenv = NULL;
    int top = 0, quant = 0, intervals = 0, negs = 0, left = 0, right = 0, bins = 0, lensk = 0, threads = 0, quiet = 0,
        explain_max = 0, timeout = 0, json = 0;
    int64_t rows = 0, seed = 0;
    float tag_hi = 0;
    cli_opt opts[] = {
        {"--sae", 's', &sae_dir, NULL, "SAE directory (SAELens or sparsify layout)"},
        {"--store", 's', &store_dir, NULL, "activation store with token ids and positions (loupe harvest)"},
        {"--out", 's', &out, NULL, "run directory; results go to OUT/features/NAME"},
        {"--name", 's', &name, NULL, "feature-run name (default: the SAE directory's name)"},
        {"--hook", 's', &hook, NULL, "store hook (default: the SAE's hook, or the store's only hook)"},
        {"--model", 's', &model_path, NULL, "model for the logit lens and vocabulary (default: the SAE's / store's model)"},
        {"--tokenizer", 's', &tok_path, NULL, "tokenizer (default: the store's, else shared tok512.bin)"},
        {"--rows", 'l', &rows, "0", "store rows to use (0: all)"},
        {"--top", 'i', &top, "20", "top activating examples per feature"},
        {"--quantiles", 'i', &quant, "12", "quantile samples per feature (a multiple of --intervals)"},
        {"--intervals", 'i', &intervals, "4", "activation intervals for the quantile samples"},
        {"--negatives", 'i', &negs, "20", "negative windows per feature (detection scoring)"},
        {"--left", 'i', &left, "15", "context tokens before the example"},
        {"--right", 'i', &right, "4", "context tokens after the example"},
        {"--bins", 'i', &bins, "32", "activation histogram bins"},
        {"--lens-k", 'i', &lensk, "10", "logit-lens tokens each way"},
        {"--tag-threshold", 'f', &tag_hi, "0.8", "segment share of the top-20 that makes a feature segment-modal"},
        {"--seed", 'l', &seed, "0", "seed for quantile samples and negatives"},
        {"--explainer-url", 's', &url, NULL, "OpenAI-compatible endpoint for the LLM explainer, e.g. http://127.0.0.1:8080/v1 (default: offline explainer only)"},
        {"--explainer-model", 's', &emodel, "default", "model name sent to the endpoint"},
        {"--explainer-key-env", 's', &keyenv, "OPENAI_API_KEY", "environment variable holding the API key (unset: no key)"},
        {"--explain-max", 'i', &explain_max, "0", "LLM-explain at most this many alive features (0: all)"},
        {"--explainer-timeout", 'i', &timeout, "60", "seconds per explainer request"},
        {"--json", 'b', &json, NULL, "print the run's meta.json (tag counts, AUROC by tag) on stdout"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress bar"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("features", "--sae DIR --store DIR --out RUN [--name NAME]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("features", "--sae", sae_dir)) || (rc = cli_require("features", "--store", store_dir)) ||
        (rc = cli_require("features", "--out", out)))
        return rc;
    if (threads > 0) lp_set_threads(threads);
    char nm[80];
    if (name) snprintf(nm, sizeof nm, "%s", name);
    else default_name(sae_dir, nm, sizeof nm);
    if (!lp_featrun_name_ok(nm))
        return cli_errorf("features", "--name '%s' must be 1-64 of [A-Za-z0-9._-], not starting with '.'", nm);

    lp_sae *sae = NULL;
    lp_store *st = NULL;
    lp_segments seg;
    memset(&seg, 0, sizeof seg);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    char **vocab = NULL;
    char *mtok = NULL;
    lp_features f;
    memset(&f, 0, sizeof f);
    lp_explanations ex;
    memset(&ex, 0, sizeof ex);
    rc = 1;
    if (lp_sae_load(&sae, sae_dir, 0)) goto fail;
    if (hook) {
        if (lp_store_open(&st, store_dir, hook)) goto fail;
    } else if (!sae->cfg.hook[0] || lp_store_open(&st, store_dir, sae->cfg.hook)) {
        if (lp_store_open(&st, store_dir, NULL)) goto fail;
    }
    if (lp_segments_load(&seg, store_dir, lp_store_count(st))) goto fail;
    if (!model_path) model_path = sae->cfg.model[0] ? sae->cfg.model : lp_store_model(st);
    if (!model_path || !*model_path || !lp_file_exists(model_path)) {
        if (model_path && *model_path && !lp_file_exists(model_path) && lp_store_model(st) &&
            lp_file_exists(lp_store_model(st)))
            model_path = lp_store_model(st);
        else if (!model_path || !*model_path || !lp_file_exists(model_path)) {
            lp_fail(LP_ERR_ARG, "model '%s' not found (recorded in the SAE/store); pass --model",
                    model_path ? model_path : "");
            goto fail;
        }
    }
    if (lp_model_load(&m, model_path)) goto fail;
    if (!tok_path) {
        mtok = manifest_tokenizer(st);
        tok_path = mtok && lp_file_exists(mtok) ? mtok : cli_shared_path("models/tok512.bin");
    }
    if (lp_tokenizer_load(&tok, tok_path, m->cfg.vocab_size)) goto fail;
    lp_feat_opts o;
    lp_feat_opts_default(&o);
    o.top_n = top;
    o.n_quant = quant;
    o.n_intervals = intervals;
    o.n_neg = negs;
    o.left = left;
    o.right = right;
    o.hist_bins = bins;
    o.lens_k = lensk;
    o.tag_hi = tag_hi;
    o.max_rows = rows;
    o.seed = (uint64_t)seed;
    o.progress = !quiet;
    double t0 = lp_now();
    if (lp_features_compute(&f, sae, st, &seg, m, m->cfg.vocab_size, &o)) goto fail;
    double t1 = lp_now();
    if (lp_vocab_build(tok, f.V, &vocab)) goto fail;
    if (lp_explanations_new(&ex, f.F) || lp_explain_offline(&f, vocab, &ex)) goto fail;
    if (url) {
        const char *key = keyenv && *keyenv ? getenv(keyenv) : NULL;
        lp_llm_opts lo = {.url = url, .model = emodel, .key = key, .timeout_s = timeout,
                          .max_features = explain_max, .progress = !quiet};
        int nreq = 0;
        if (lp_explain_llm(&f, vocab, &lo, &ex, &nreq)) goto fail;
        fprintf(stderr, "features: LLM explainer %s: %d requests\n", url, nreq);
    }
    lp_hook_point hp;
    int layer = lp_hook_parse(lp_store_hook(st), 0, &hp) == 0 ? hp.layer : -1;
    lp_featrun_info info = {.name = nm, .sae_path = sae_dir, .store_path = store_dir, .model_path = model_path,
                            .tokenizer_path = tok_path, .hook = lp_store_hook(st),
                            .arch = lp_sae_arch_name(sae->cfg.arch), .k = sae->cfg.k, .layer = layer};
    if (lp_featrun_save(out, &info, &f, &ex, vocab)) goto fail;
    /* summary */
    int alive = 0, mixed = 0, cnt[256] = {0};
    double asum[258] = {0};
    int an[258] = {0};
    for (int i = 0; i < f.F; i++) {
        int t = f.tag[i];
        if (t == LP_TAG_DEAD) continue;
        alive++;
        int slot = t == LP_TAG_MIXED ? f.S : t;
        if (t == LP_TAG_MIXED) mixed++;
        else cnt[t]++;
        if (isfinite(ex.auroc[i])) {
            asum[slot] += ex.auroc[i];
            an[slot]++;
            asum[f.S + 1] += ex.auroc[i];
            an[f.S + 1]++;
        }
    }
    fprintf(stderr, "features: %s: %d latents (%d alive) over %lld rows in %.1fs -> %s/features/%s\n", sae_dir, f.F,
            alive, (long long)f.rows, t1 - t0, out, nm);
    for (int s = 0; s <= f.S + 1; s++) {
        const char *tn = s < f.S ? f.seg_names[s] : s == f.S ? "mixed" : "all";
        fprintf(stderr, "  %-12s %5d features  AUROC %s", tn, s < f.S ? cnt[s] : s == f.S ? mixed : alive,
                an[s] ? "" : "-");
        if (an[s]) fprintf(stderr, "%.3f (%d scored)", asum[s] / an[s], an[s]);
        fprintf(stderr, "\n");
    }
    if (json) {
        char *p = lp_path_join(out, "features"), *q = p ? lp_path_join(p, nm) : NULL, *r = q ? lp_path_join(q, "meta.json") : NULL, *txt = NULL;
        if (r && !lp_read_file(r, &txt, NULL)) printf("%s\n", txt);
        free(p);
        free(q);
        free(r);
        free(txt);
    }
    rc = 0;
fail:
    if (rc) cli_error("features");
    lp_explanations_free(&ex);
    lp_vocab_free(vocab, f.V);
    lp_features_free(&f);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    lp_segments_free(&seg);
    lp_store_close_reader(st);
    lp_sae_free(sae);
    free(mtok);
    return rc;
}
