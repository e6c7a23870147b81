/* sites.c — (reproduce) SAEs at many sites of stories260K for the flow and
 * steering drivers: one harvest of the TinyStories sample capturing every
 * site, one TopK SAE per site with its own initialisation seed, saved in
 * the `loupe train --sites` layout (DIR/<hook>/seedS/ + DIR/sites.json) and
 * reused when DIR already holds SAEs trained with the same settings. The
 * store is scratch and is deleted after training. */
#define _XOPEN_SOURCE 700
#include <cjson/cJSON.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/harvest.h"
#include "loupe/sae_format.h"
#include "reproduce/reproduce.h"

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void settings(const lp_repro_sites_cfg *c, char *buf, size_t n) {
    snprintf(buf, n, "sites=%s harvest=%lld ctx=%d topk d_sae=%d k=%d tokens=%lld", c->all_kinds ? "all" : "resid",
             (long long)c->harvest_tokens, c->ctx, c->d_sae, c->k, (long long)c->train_tokens);
}

/* sites.json's "settings" and "data_bytes" when the directory is complete */
static int existing(const char *dir, const char *want, int64_t *data_bytes) {
    char *p = lp_path_join(dir, "sites.json"), *txt = NULL;
    int ok = 0;
    if (p && lp_file_exists(p) && lp_read_file(p, &txt, NULL) == 0) {
        cJSON *j = cJSON_Parse(txt);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "settings"), *b = cJSON_GetObjectItemCaseSensitive(j, "data_bytes");
        if (cJSON_IsString(s) && strcmp(s->valuestring, want) == 0 && cJSON_IsNumber(b)) {
            *data_bytes = (int64_t)b->valuedouble;
            ok = 1;
        }
        cJSON_Delete(j);
    }
    free(txt);
    free(p);
    return ok;
}

int lp_repro_sites(const lp_reproduce_opts *o, const lp_repro_sites_cfg *c, const char *dir, lp_flow_sites *out,
                   int64_t *data_bytes) {
    char want[256];
    settings(c, want, sizeof want);
    const char *model_path = lp_reproduce_shared(o, "models/stories260K.bin");
    const char *tok_path = lp_reproduce_shared(o, "models/tok512.bin");
    const char *data = lp_reproduce_shared(o, "data/tinystories/train_sample.txt");
    if (existing(dir, want, data_bytes)) {
        fprintf(stderr, "reproduce: reusing the site SAEs in %s (%s)\n", dir, want);
        return lp_flow_sites_load(out, dir, 0, 0);
    }
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    int rc = lp_model_load(&m, model_path);
    if (!rc) rc = lp_tokenizer_load(&tok, tok_path, m->cfg.vocab_size);
    if (rc) goto done;
    const int NL = m->cfg.n_layers, nk = c->all_kinds ? 3 : 1;
    static const int kinds[3] = {LP_HOOK_RESID_POST, LP_HOOK_MLP_OUT, LP_HOOK_ATTN_OUT};
    char names[LP_MAX_HOOKS][64];
    const char *hooks[LP_MAX_HOOKS];
    int n = 0;
    for (int L = 0; L < NL; L++)
        for (int q = 0; q < nk; q++) {
            lp_hook_name((lp_hook_point){L, kinds[q]}, names[n], 64);
            hooks[n] = names[n];
            n++;
        }
    char *store = lp_path_join(dir, "store");
    if (!store || (rc = lp_mkdirs(dir))) goto done_store;
    if (lp_file_exists(store)) nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS); /* scratch of an interrupted run */
    lp_harvest_opts ho = {.model_path = model_path, .tokenizer_path = tok_path, .data_path = data, .n_hooks = n,
                          .hooks = hooks, .tokens = c->harvest_tokens, .ctx = c->ctx, .batch = 32, .dtype = LP_STORE_F32};
    lp_harvest_result hr;
    double t0 = lp_now();
    fprintf(stderr, "reproduce: harvesting %d sites x %lld rows\n", n, (long long)c->harvest_tokens);
    if ((rc = lp_harvest(m, tok, &ho, store, &hr))) goto done_store;
    *data_bytes = hr.data_bytes;
    fprintf(stderr, "reproduce: harvested in %.1fs\n", lp_now() - t0);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model_path);
    cJSON_AddStringToObject(j, "data", data);
    cJSON_AddStringToObject(j, "settings", want);
    cJSON_AddNumberToObject(j, "data_bytes", (double)hr.data_bytes);
    cJSON *arr = cJSON_AddArrayToObject(j, "sites");
    for (int h = 0; h < n && !rc; h++) {
        lp_store *st = NULL;
        lp_sae *s = NULL;
        if ((rc = lp_store_open(&st, store, hooks[h]))) break;
        lp_sae_config sc;
        lp_sae_config_default(&sc);
        sc.arch = LP_SAE_TOPK;
        sc.d_in = lp_store_dim(st);
        sc.d_sae = c->d_sae;
        sc.k = c->k;
        sc.seed = 1000u * (unsigned)(h + 1);
        snprintf(sc.model, sizeof sc.model, "%s", lp_store_model(st));
        snprintf(sc.hook, sizeof sc.hook, "%s", hooks[h]);
        snprintf(sc.dataset, sizeof sc.dataset, "%s", data);
        sc.dataset_bytes = hr.data_bytes;
        sc.context_size = c->ctx;
        lp_train_opts to;
        lp_train_opts_default(&to);
        to.tokens = c->train_tokens;
        to.lr = 4e-3f;
        to.log_every = 0;
        lp_sae_resolve_defaults(&sc, &to);
        char sub[160];
        snprintf(sub, sizeof sub, "%s/seed%llu", hooks[h], (unsigned long long)sc.seed);
        char *sd = lp_path_join(dir, sub);
        double t1 = lp_now();
        rc = sd ? LP_OK : LP_ERR_NOMEM;
        if (!rc) rc = lp_sae_new(&s, &sc);
        if (!rc) rc = lp_sae_train(s, st, &to);
        if (!rc) rc = lp_sae_save(s, sd, LP_SAE_FMT_SAELENS);
        if (!rc) fprintf(stderr, "reproduce: SAE %d/%d at %s trained in %.1fs\n", h + 1, n, hooks[h], lp_now() - t1);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "hook", hooks[h]);
        cJSON_AddNumberToObject(e, "seed", 0);
        cJSON_AddNumberToObject(e, "init_seed", (double)sc.seed);
        cJSON_AddStringToObject(e, "dir", sub);
        cJSON_AddItemToArray(arr, e);
        free(sd);
        lp_sae_free(s);
        lp_store_close_reader(st);
    }
    nftw(store, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (!rc) {
        char *txt = cJSON_Print(j), *p = lp_path_join(dir, "sites.json");
        rc = txt && p ? lp_write_file_atomic(p, txt, strlen(txt)) : LP_ERR_NOMEM;
        free(txt);
        free(p);
    }
    cJSON_Delete(j);
    if (!rc) rc = lp_flow_sites_load(out, dir, 0, 0);
done_store:
    free(store);
done:
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
