/* cmd_steer.c — `loupe steer`: generation with SAE-feature interventions
 * (add α·Z̄_f·d_f or rescale a_f, at prompt / generated / all positions,
 * error-preserving or through the SAE, on one site or along a flow chain
 * over layers), and with --eval the measured behaviour change: target-word
 * rate and coherence over seeded samples, as a sweep table. Z̄_f is
 * computed on text once and cached as SAE_DIR/feature_stats.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/flow.h"
#include "loupe/sae_format.h"
#include "loupe/steer.h"
#include "loupe/tokenizer.h"

/* Z̄ of every latent of each SAE: from dir/feature_stats.json when it was
 * computed on the same data and token count, else computed (one pass for
 * all) and cached. */
static int zbar_all(const lp_model *m, const lp_tokenizer *tok, int n, lp_sae **saes, const lp_hook_point *at,
                    char **dirs, const char *data, int64_t tokens, int ctx, int cache, float **zbar) {
    int need = 0, rc = LP_OK;
    int todo[LP_MAX_HOOKS];
    for (int i = 0; i < n; i++) {
        const int F = saes[i]->cfg.d_sae;
        todo[i] = 1;
        char *p = cache ? lp_path_join(dirs[i], "feature_stats.json") : NULL, *txt = NULL;
        if (p && lp_file_exists(p) && lp_read_file(p, &txt, NULL) == 0) {
            cJSON *j = cJSON_Parse(txt);
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data"), *t = cJSON_GetObjectItemCaseSensitive(j, "tokens"),
                        *mm = cJSON_GetObjectItemCaseSensitive(j, "mean_active");
            if (cJSON_IsString(d) && strcmp(d->valuestring, data) == 0 && cJSON_IsNumber(t) && (int64_t)t->valuedouble == tokens &&
                cJSON_IsArray(mm) && cJSON_GetArraySize(mm) == F) {
                int f = 0;
                const cJSON *e;
                cJSON_ArrayForEach(e, mm) zbar[i][f++] = (float)e->valuedouble;
                todo[i] = 0;
            }
            cJSON_Delete(j);
        }
        free(txt);
        free(p);
        need += todo[i];
    }
    if (!need) return LP_OK;
    lp_sae *s2[LP_MAX_HOOKS];
    lp_hook_point a2[LP_MAX_HOOKS];
    float *z2[LP_MAX_HOOKS], *fr2[LP_MAX_HOOKS];
    int k = 0, map[LP_MAX_HOOKS];
    for (int i = 0; i < n; i++)
        if (todo[i]) {
            s2[k] = saes[i], a2[k] = at[i], z2[k] = zbar[i];
            fr2[k] = malloc((size_t)saes[i]->cfg.d_sae * sizeof(float));
            map[k++] = i;
        }
    fprintf(stderr, "steer: mean feature activations on %lld tokens of %s (%d SAE(s))\n", (long long)tokens, data, k);
    rc = lp_feature_stats(m, tok, k, s2, a2, data, 0, tokens, ctx, z2, fr2);
    for (int q = 0; q < k && !rc && cache; q++) {
        const int F = s2[q]->cfg.d_sae;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "data", data);
        cJSON_AddNumberToObject(j, "tokens", (double)tokens);
        cJSON_AddNumberToObject(j, "ctx", ctx);
        cJSON_AddStringToObject(j, "mean_active_is", "mean of a_f over the tokens where latent f fires (0 if never)");
        cJSON *mm = cJSON_AddArrayToObject(j, "mean_active"), *ff = cJSON_AddArrayToObject(j, "freq");
        for (int f = 0; f < F; f++) {
            cJSON_AddItemToArray(mm, cJSON_CreateNumber(z2[q][f]));
            cJSON_AddItemToArray(ff, cJSON_CreateNumber(fr2[q][f]));
        }
        char *txt = cJSON_PrintUnformatted(j), *p = lp_path_join(dirs[map[q]], "feature_stats.json");
        if (txt && p && lp_write_file_atomic(p, txt, strlen(txt)))
            fprintf(stderr, "steer: note: could not cache %s (%s)\n", p, lp_errmsg());
        free(txt);
        free(p);
        cJSON_Delete(j);
    }
    for (int q = 0; q < k; q++) free(fr2[q]);
    return rc;
}

static int parse_floats(const char *s, float *out, int cap, int *n) {
    char *copy = strdup(s), *save = NULL;
    *n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *e;
        float v = strtof(t, &e);
        if (*e || e == t || !isfinite(v) || *n == cap) {
            free(copy);
            return 1;
        }
        out[(*n)++] = v;
    }
    free(copy);
    return *n == 0;
}

int cmd_steer(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *sae_dir = NULL, *saes_dir = NULL, *hook_s = NULL, *mode_s = NULL,
               *pos_s = NULL, *variant_s = NULL, *chain_s = NULL, *prompt = NULL, *targets = NULL, *alphas_s = NULL,
               *stats_data = NULL;
    int feature = 0, layer = 0, steps = 0, samples = 0, eval = 0, compare = 0, json = 0, seed_dir = 0, threads = 0,
        no_cache = 0, ctx = 0;
    float alpha = 0, r = 0, gamma = 0, temp = 0, top_p = 0, zbar_set = 0;
    int64_t seed = 0, stats_tokens = 0;
    cli_opt opts[] = {
        {"--sae", 's', &sae_dir, NULL, "SAE directory (single-site steering)"},
        {"--hook", 's', &hook_s, NULL, "site for --sae (default: the SAE's hook)"},
        {"--saes", 's', &saes_dir, NULL, "site SAEs from `loupe train --sites` (residual feature at --layer)"},
        {"--layer", 'i', &layer, "-1", "with --saes: the residual layer L of the feature (site blocks.L.hook_resid_post)"},
        {"--seed-dir", 'i', &seed_dir, "0", "with --saes: which seedN to use"},
        {"--chain", 's', &chain_s, "none", "with --saes: none | const | linear | exp — also steer the feature's flow chain R_{L-1}..R_0"},
        {"--gamma", 'f', &gamma, "0.5", "exp chain: coefficient ratio per layer back"},
        {"--feature", 'i', &feature, "-1", "latent to steer"},
        {"--mode", 's', &mode_s, "add", "add (z_f += alpha*Zbar_f) | rescale (z_f *= r)"},
        {"--alpha", 'f', &alpha, "4", "add: strength in units of the feature's mean activation Zbar_f"},
        {"--r", 'f', &r, "0", "rescale: factor (0 removes the feature, < 0 suppresses, > 1 boosts)"},
        {"--positions", 's', &pos_s, "gen", "all | prompt | gen (generated tokens only) | A:B (absolute positions)"},
        {"--variant", 's', &variant_s, "error", "error (h + W_dec^T(z' - z), keeps the SAE error) | sae (h = decode(z'))"},
        {"--zbar", 'f', &zbar_set, "0", "use this Zbar_f instead of measuring it (single site)"},
        {"--stats-data", 's', &stats_data, NULL, "text to measure Zbar_f on (default: the SAE's training data)"},
        {"--stats-tokens", 'l', &stats_tokens, "50000", "tokens for Zbar_f"},
        {"--no-cache", 'b', &no_cache, NULL, "do not read/write SAE_DIR/feature_stats.json"},
        {"--model", 's', &model, NULL, "model (default: the SAE's model, else shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--prompt", 's', &prompt, "", "prompt text (BOS is prepended)"},
        {"--steps", 'i', &steps, "128", "positions per sample, prompt included"},
        {"--temperature", 'f', &temp, "1.0", "sampling temperature (0 = greedy)"},
        {"--top-p", 'f', &top_p, "0.9", "nucleus sampling mass"},
        {"--seed", 'l', &seed, "42", "sampling seed (sample i of --eval uses seed + i)"},
        {"--compare", 'b', &compare, NULL, "also print the unsteered sample with the same seed"},
        {"--eval", 'b', &eval, NULL, "measure: target-word rate and coherence over --samples, for each of --alphas"},
        {"--targets", 's', &targets, NULL, "--eval: comma-separated target words (case-insensitive; dog* = prefix)"},
        {"--samples", 'i', &samples, "32", "--eval: samples per setting"},
        {"--alphas", 's', &alphas_s, NULL, "--eval: comma-separated strengths to sweep (alpha for add, r for rescale)"},
        {"--ctx", 'i', &ctx, "128", "window length for Zbar_f"},
        {"--json", 'b', &json, NULL, "--eval: print the table as JSON"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("steer",
                       "(--sae DIR | --saes DIR --layer L [--chain exp]) --feature F [--mode add --alpha A | --mode rescale --r R] "
                       "[--positions gen] [--eval --targets W,...]",
                       opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (threads > 0) lp_set_threads(threads);
    if ((sae_dir != NULL) == (saes_dir != NULL)) return cli_errorf("steer", "give exactly one of --sae DIR or --saes DIR");
    if (feature < 0) return cli_errorf("steer", "--feature is required (a latent index >= 0)");
    if (eval && !targets) return cli_errorf("steer", "--eval needs --targets WORD[,WORD...]");
    int op, variant, sched = -1;
    if (strcmp(mode_s, "add") == 0) op = LP_STEER_ADD;
    else if (strcmp(mode_s, "rescale") == 0) op = LP_STEER_RESCALE;
    else return cli_errorf("steer", "--mode must be add or rescale, not '%s'", mode_s);
    if (strcmp(variant_s, "error") == 0) variant = LP_STEER_KEEP_ERROR;
    else if (strcmp(variant_s, "sae") == 0) variant = LP_STEER_THROUGH_SAE;
    else return cli_errorf("steer", "--variant must be error or sae, not '%s'", variant_s);
    if (strcmp(chain_s, "none") == 0) sched = -1;
    else if (strcmp(chain_s, "const") == 0) sched = LP_SCHED_CONST;
    else if (strcmp(chain_s, "linear") == 0) sched = LP_SCHED_LINEAR;
    else if (strcmp(chain_s, "exp") == 0) sched = LP_SCHED_EXP;
    else return cli_errorf("steer", "--chain must be none, const, linear or exp, not '%s'", chain_s);
    if (sched >= 0 && !saes_dir) return cli_errorf("steer", "--chain needs --saes (the flow chain is found between site SAEs)");
    lp_pos_spec pos;
    if (lp_pos_parse(pos_s, &pos)) return cli_error("steer");
    float sweep[64];
    int n_sweep = 0;
    if (alphas_s && parse_floats(alphas_s, sweep, 64, &n_sweep)) return cli_errorf("steer", "--alphas: want comma-separated numbers");
    if (!alphas_s) sweep[n_sweep++] = op == LP_STEER_ADD ? alpha : r;
    char *words[64];
    int n_words = 0;
    char *tcopy = targets ? strdup(targets) : NULL;
    if (tcopy)
        for (char *save = NULL, *t = strtok_r(tcopy, ",", &save); t && n_words < 64; t = strtok_r(NULL, ",", &save)) words[n_words++] = t;

    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_sae *single = NULL;
    lp_flow_sites S;
    memset(&S, 0, sizeof S);
    lp_flow fl;
    memset(&fl, 0, sizeof fl);
    int *ids = NULL, *out = NULL;
    float *zb[LP_MAX_HOOKS] = {0};
    char **texts = NULL;
    lp_steer st;
    memset(&st, 0, sizeof st);
    /* the sites: (sae, dir, hook point, feature, chain weight) */
    int n = 0, feats[LP_FLOW_MAX_LAYERS];
    lp_sae *saes[LP_FLOW_MAX_LAYERS];
    char *dirs[LP_FLOW_MAX_LAYERS];
    lp_hook_point at[LP_FLOW_MAX_LAYERS];
    float w[LP_FLOW_MAX_LAYERS];
    rc = 1;
    if (sae_dir) {
        if (lp_sae_load(&single, sae_dir, 0)) goto fail;
        if (!model && single->cfg.model[0] && lp_file_exists(single->cfg.model)) model = single->cfg.model;
    } else {
        if (lp_flow_sites_load(&S, saes_dir, seed_dir, 0)) goto fail;
        if (layer < 0 || layer >= S.n_layers) {
            lp_fail(LP_ERR_ARG, "--layer %d out of range 0..%d for %s", layer, S.n_layers - 1, saes_dir);
            goto fail;
        }
        const char *rec = S.sae[LP_FLOW_RES][0]->cfg.model;
        if (!model && rec[0] && lp_file_exists(rec)) model = rec;
    }
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    /* a tiny model generates one token at a time: OpenMP overhead exceeds the work */
    if (threads <= 0 && !getenv("LOUPE_THREADS") && m->cfg.dim <= 256) lp_set_threads(1);
    if (single) {
        if (!hook_s) hook_s = single->cfg.hook;
        if (!hook_s[0]) {
            lp_fail(LP_ERR_ARG, "%s: the SAE records no hook; pass --hook", sae_dir);
            goto fail;
        }
        if (lp_hook_parse(hook_s, m->cfg.n_layers, &at[0])) goto fail;
        if (lp_sae_check_site(single, sae_dir, m, at[0])) goto fail;
        if (feature >= single->cfg.d_sae) {
            lp_fail(LP_ERR_ARG, "--feature %d out of range 0..%d for %s", feature, single->cfg.d_sae - 1, sae_dir);
            goto fail;
        }
        saes[0] = single, dirs[0] = (char *)sae_dir, feats[0] = feature, w[0] = 1.0f;
        n = 1;
    } else {
        lp_sae *tgt = S.sae[LP_FLOW_RES][layer];
        if (feature >= tgt->cfg.d_sae) {
            lp_fail(LP_ERR_ARG, "--feature %d out of range 0..%d for %s", feature, tgt->cfg.d_sae - 1, S.dir[LP_FLOW_RES][layer]);
            goto fail;
        }
        if (sched >= 0) {
            lp_flow_opts fo = {0};
            if (lp_flow_compute(&fl, layer + 1, S.sae[LP_FLOW_RES], NULL, NULL, &fo)) goto fail;
            n = lp_flow_chain(&fl, layer, feature, feats);
        } else {
            feats[0] = feature;
            n = 1;
        }
        for (int j = 0; j < n; j++) {
            int L = layer - j;
            saes[j] = S.sae[LP_FLOW_RES][L];
            dirs[j] = S.dir[LP_FLOW_RES][L];
            at[j] = (lp_hook_point){L, LP_HOOK_RESID_POST};
            w[j] = sched >= 0 ? lp_steer_schedule(sched, j, n, gamma) : 1.0f;
            if (lp_sae_check_site(saes[j], dirs[j], m, at[j])) goto fail;
            if (j > 0)
                fprintf(stderr, "steer: chain R%d #%d (cos %.3f with R%d #%d), weight %.3f\n", L, feats[j],
                        fl.layer[L + 1].s[LP_FLOW_RES][feats[j - 1]], L + 1, feats[j - 1], w[j]);
        }
    }
    /* Z̄_f of every steered latent */
    for (int j = 0; j < n; j++)
        if (!(zb[j] = calloc((size_t)saes[j]->cfg.d_sae, sizeof(float)))) goto fail;
    if (op == LP_STEER_ADD) {
        if (zbar_set > 0 && n == 1) {
            zb[0][feats[0]] = zbar_set;
        } else {
            if (!stats_data) stats_data = saes[0]->cfg.dataset[0] && lp_file_exists(saes[0]->cfg.dataset) ? saes[0]->cfg.dataset : NULL;
            if (!stats_data) {
                lp_fail(LP_ERR_ARG, "the SAE's training data is not at hand: pass --stats-data FILE (or --zbar X)");
                goto fail;
            }
            if (zbar_all(m, tok, n, saes, at, dirs, stats_data, stats_tokens, ctx, !no_cache, zb)) goto fail;
        }
        for (int j = 0; j < n; j++)
            if (zb[j][feats[j]] <= 0) fprintf(stderr, "steer: note: feature %d never fired at %s on the stats data (Zbar = 0)\n",
                                              feats[j], saes[j]->cfg.hook);
    }
    /* the prompt */
    size_t cap = strlen(prompt) + 3;
    ids = malloc(cap * sizeof(int));
    if (!ids) goto fail;
    int n_prompt = 0;
    if (lp_tokenizer_encode(tok, prompt, 1, 0, ids, (int)cap, &n_prompt)) goto fail;
    if (steps <= 0 || steps > m->cfg.seq_len) steps = m->cfg.seq_len;
    if (n_prompt >= steps) {
        lp_fail(LP_ERR_ARG, "the prompt has %d tokens: --steps %d leaves nothing to generate", n_prompt, steps);
        goto fail;
    }
    if (lp_pos_check(&pos, n_prompt, steps + 1)) goto fail;
    const int bos = lp_tokenizer_bos(tok);
    /* one steerer per strength */
    if (!eval) {
        float c = sweep[0];
        lp_steer_init(&st, variant, &pos, bos);
        for (int j = 0; j < n; j++) {
            lp_steer_term t = {at[j], saes[j], feats[j], op, op == LP_STEER_ADD ? c * w[j] : 1.0f + (c - 1.0f) * w[j], zb[j][feats[j]]};
            if (lp_steer_add(&st, &t)) goto fail;
        }
        lp_steer_eval_opts eo = {ids, n_prompt, steps, 1, temp, top_p, (uint64_t)seed, 0, NULL};
        lp_steer_eval_result er;
        char *txt[1] = {0};
        if (compare) {
            if (lp_steer_eval(m, tok, NULL, &eo, &er, txt)) goto fail;
            printf("unsteered: %s%s\n", prompt, txt[0]);
            free(txt[0]);
        }
        if (lp_steer_eval(m, tok, &st, &eo, &er, txt)) goto fail;
        printf("%s%s%s\n", compare ? "steered:   " : "", prompt, txt[0]);
        free(txt[0]);
        fprintf(stderr, "steer: %s %s=%g on %d site(s), %lld rows changed, coherence %.3f nats/token\n", mode_s,
                op == LP_STEER_ADD ? "alpha" : "r", c, n, (long long)st.rows, er.coherence);
        rc = 0;
        goto done;
    }
    texts = calloc((size_t)samples, sizeof *texts);
    lp_steer_eval_opts eo = {ids, n_prompt, steps, samples, temp, top_p, (uint64_t)seed, n_words, (const char *const *)words};
    lp_steer_eval_result base;
    if (!texts || lp_steer_eval(m, tok, NULL, &eo, &base, NULL)) goto fail;
    const char *cname = op == LP_STEER_ADD ? "alpha" : "r";
    if (json) printf("{\"targets\": \"%s\", \"samples\": %d, \"mode\": \"%s\", \"variant\": \"%s\", \"positions\": \"%s\", \"sites\": %d,\n \"rows\": [\n  {\"%s\": null, \"rate\": %.4f, \"per_100_words\": %.4f, \"coherence\": %.4f, \"gen_tokens\": %.1f}",
                     targets, samples, mode_s, variant_s, pos_s, n, cname, base.rate, base.per_100, base.coherence, base.gen_tokens);
    else {
        printf("steering %s feature %d (%d site(s)), %s, positions %s, %d samples, targets %s\n", mode_s, feature, n, variant_s,
               pos_s, samples, targets);
        printf("%10s %8s %12s %11s %10s\n", cname, "rate", "per100words", "coherence", "gen_tok");
        printf("%10s %8.3f %12.3f %11.3f %10.1f\n", "none", base.rate, base.per_100, base.coherence, base.gen_tokens);
    }
    for (int a = 0; a < n_sweep; a++) {
        lp_steer_free(&st);
        lp_steer_init(&st, variant, &pos, bos);
        for (int j = 0; j < n; j++) {
            float c = sweep[a];
            lp_steer_term t = {at[j], saes[j], feats[j], op, op == LP_STEER_ADD ? c * w[j] : 1.0f + (c - 1.0f) * w[j], zb[j][feats[j]]};
            if (lp_steer_add(&st, &t)) goto fail;
        }
        lp_steer_eval_result er;
        if (lp_steer_eval(m, tok, &st, &eo, &er, texts)) goto fail;
        if (json)
            printf(",\n  {\"%s\": %g, \"rate\": %.4f, \"per_100_words\": %.4f, \"coherence\": %.4f, \"gen_tokens\": %.1f}", cname,
                   sweep[a], er.rate, er.per_100, er.coherence, er.gen_tokens);
        else
            printf("%10g %8.3f %12.3f %11.3f %10.1f\n", sweep[a], er.rate, er.per_100, er.coherence, er.gen_tokens);
        if (!json) fprintf(stderr, "steer: %s=%g sample 0: %.200s\n", cname, sweep[a], texts[0]);
        for (int i = 0; i < samples; i++) free(texts[i]), texts[i] = NULL;
    }
    if (json) printf("\n ]}\n");
    rc = 0;
    goto done;
fail:
    rc = cli_error("steer");
done:
    lp_steer_free(&st);
    if (texts)
        for (int i = 0; i < samples; i++) free(texts[i]);
    free(texts);
    for (int j = 0; j < LP_FLOW_MAX_LAYERS && j < n; j++) free(zb[j]);
    free(ids);
    free(out);
    free(tcopy);
    lp_flow_free(&fl);
    lp_flow_sites_free(&S);
    lp_sae_free(single);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
