/* train_sites.c — `loupe train --sites all|HOOK,...`: one harvest pass of a
 * model over text capturing every requested site into one store, then one
 * SAE per site with the ordinary `loupe train` flags. Layout:
 *   OUT/store/                      the shared activation store (--store elsewhere)
 *   OUT/<hook>/seedS/               one SAE per site and seed (cfg.json + weights)
 *   OUT/sites.json                  model, data, store, and per site and --seeds value N
 *                                   the SAE directory (what `loupe flow` reads)
 * Site h (0-based, in the order of the list) trains --seeds value N with the
 * seed S = 1000·(h+1) + N, so no two sites start from the same random
 * decoder (identical initial rows would look like matched features).
 * "all" = blocks.L.hook_resid_post, hook_mlp_out and hook_attn_out of every
 * layer (the sites `loupe flow` matches). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/harvest.h"
#include "loupe/model.h"
#include "loupe/store.h"

enum { F_SITES, F_MODEL, F_TOK, F_DATA, F_HTOK, F_CTX, F_DTYPE, F_STORE, F_OUT, F_SEEDS, F_QUIET };
static const struct {
    const char *name, *def, *help;
} k_site_flags[] = { /* in the order of the enum */
    {"--sites", NULL, "all (resid_post, mlp_out, attn_out of every layer) or comma-separated hook names"},
    {"--model", NULL, "model to harvest (default: shared stories260K.bin)"},
    {"--tokenizer", NULL, "tokenizer (default: shared tok512.bin)"},
    {"--data", NULL, "text corpus to harvest from (required unless --store holds every site)"},
    {"--harvest-tokens", "500000", "activation rows to harvest per site"},
    {"--ctx", "128", "tokens per harvest window"},
    {"--dtype", "f32", "stored dtype: f32 or bf16"},
    {"--store", NULL, "store directory (default OUT/store); reused when it already holds every site"},
    {"--out", NULL, "output directory: OUT/<hook>/seedS/ per site, indexed by OUT/sites.json"},
    {"--seeds", "0", "comma-separated seeds N (< 1000); site h trains seed 1000*(h+1)+N"},
    {"--quiet", NULL, "no progress bars (also passed to each training)"},
    {NULL, NULL, NULL}};

static void sites_usage(void) {
    printf("usage: loupe train --sites all --data FILE --out OUT [--model M] [train flags...]\n\n"
           "One harvest pass over --data captures every site into one store, then one SAE per site is\n"
           "trained with the other `loupe train` flags (--arch, --d-sae, --k, --tokens, --seeds, ...).\n"
           "Writes OUT/<hook>/seedS/ per site (S = 1000*(site index+1) + N: no two sites share an initial\n"
           "decoder) and OUT/sites.json, which maps (hook, N) to its directory for loupe flow / steer.\n\noptions:\n");
    for (int i = 0; k_site_flags[i].name; i++) {
        printf("  %-22s %s", k_site_flags[i].name, k_site_flags[i].help);
        if (k_site_flags[i].def) printf(" (default: %s)", k_site_flags[i].def);
        printf("\n");
    }
    printf("  %-22s %s\n", "(train flags)", "see loupe train --help");
}

/* every requested hook present in the store? */
static int store_has(const char *dir, const char *const *hooks, int n) {
    char *man = lp_path_join(dir, "manifest.json");
    int ok = man && lp_file_exists(man);
    free(man);
    for (int i = 0; ok && i < n; i++) {
        lp_store *s = NULL;
        ok = lp_store_open(&s, dir, hooks[i]) == 0;
        lp_store_close_reader(s);
    }
    return ok;
}

int cmd_train_sites(int argc, char **argv) {
    const char *val[16] = {0};
    int quiet = 0;
    char **pass = calloc((size_t)argc + 8, sizeof *pass);
    int np = 0;
    if (!pass) return cli_errorf("train", "out of memory");
    pass[np++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            sites_usage();
            free(pass);
            return 0;
        }
        int hit = -1;
        const char *eq = strchr(argv[i], '=');
        size_t len = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        for (int k = 0; k_site_flags[k].name; k++)
            if (strlen(k_site_flags[k].name) == len && strncmp(argv[i], k_site_flags[k].name, len) == 0) hit = k;
        if (hit < 0) {
            pass[np++] = argv[i];
            continue;
        }
        if (hit == F_QUIET) {
            quiet = 1;
            pass[np++] = argv[i];
            continue;
        }
        if (eq) val[hit] = eq + 1;
        else if (i + 1 < argc) val[hit] = argv[++i];
        else {
            free(pass);
            return cli_errorf("train", "%s needs a value", k_site_flags[hit].name);
        }
    }
    for (int k = 0; k_site_flags[k].name; k++)
        if (!val[k]) val[k] = k_site_flags[k].def;
    const char *sites = val[F_SITES], *model = val[F_MODEL], *tokpath = val[F_TOK], *data = val[F_DATA], *out = val[F_OUT];
    const char *store = val[F_STORE], *seeds_s = val[F_SEEDS];
    int seeds[64], nseeds = 0;
    {
        char *copy = strdup(seeds_s), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            char *e;
            long v = strtol(t, &e, 10);
            if (*e || e == t || v < 0 || v >= 1000 || nseeds == 64) {
                int rc = cli_errorf("train", "--seeds: '%s' is not an integer in 0..999 (at most 64 seeds)", t);
                free(copy);
                free(pass);
                return rc;
            }
            seeds[nseeds++] = (int)v;
        }
        free(copy);
        if (!nseeds) {
            free(pass);
            return cli_errorf("train", "--seeds: empty");
        }
    }
    char *endp;
    double htok = strtod(val[F_HTOK], &endp);
    int bad_tok = *endp || htok < 1;
    long ctx = strtol(val[F_CTX], &endp, 10);
    int rc = 1;
    char *list = NULL, *store_own = NULL;
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    cJSON *j = NULL;
    if (bad_tok || *endp || ctx < 2) {
        rc = cli_errorf("train", "--harvest-tokens and --ctx must be positive integers");
        goto done;
    }
    if ((rc = cli_require("train", "--sites", sites)) || (rc = cli_require("train", "--out", out))) goto done;
    rc = 1;
    int dt;
    if (strcmp(val[F_DTYPE], "f32") == 0) dt = LP_STORE_F32;
    else if (strcmp(val[F_DTYPE], "bf16") == 0) dt = LP_STORE_BF16;
    else {
        rc = cli_errorf("train", "--dtype must be f32 or bf16, not '%s'", val[F_DTYPE]);
        goto done;
    }
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    if (lp_model_load(&m, model)) goto fail;
    /* the hook list */
    const char *names[LP_MAX_HOOKS];
    int n = 0;
    if (strcmp(sites, "all") == 0) {
        if (m->cfg.n_layers * 3 > LP_MAX_HOOKS) {
            lp_fail(LP_ERR_ARG, "--sites all: %d layers give more than %d sites", m->cfg.n_layers, LP_MAX_HOOKS);
            goto fail;
        }
        size_t cap = (size_t)m->cfg.n_layers * 3 * 40 + 1, k = 0;
        list = malloc(cap);
        if (!list) goto fail;
        list[0] = 0;
        static const char *kinds[3] = {"hook_resid_post", "hook_mlp_out", "hook_attn_out"};
        for (int L = 0; L < m->cfg.n_layers; L++)
            for (int q = 0; q < 3; q++) k += (size_t)snprintf(list + k, cap - k, "%sblocks.%d.%s", k ? "," : "", L, kinds[q]);
    } else
        list = strdup(sites);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        lp_hook_point hp;
        if (lp_hook_parse(t, m->cfg.n_layers, &hp)) goto fail;
        if (n == LP_MAX_HOOKS) {
            lp_fail(LP_ERR_ARG, "--sites: more than %d hooks", LP_MAX_HOOKS);
            goto fail;
        }
        names[n++] = t;
    }
    if (n == 0) {
        lp_fail(LP_ERR_ARG, "--sites: no hook names in '%s'", sites);
        goto fail;
    }
    if (lp_mkdirs(out)) goto fail;
    if (!store) store = store_own = lp_path_join(out, "store");
    if (store_has(store, names, n)) {
        fprintf(stderr, "train: reusing the store %s (it holds all %d sites)\n", store, n);
    } else {
        if (!data) {
            lp_fail(LP_ERR_ARG, "--data is required to harvest the %d sites (or pass --store with all of them)", n);
            goto fail;
        }
        if (lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
        lp_harvest_opts ho = {.model_path = model, .tokenizer_path = tokpath, .data_path = data, .n_hooks = n,
                              .hooks = names, .tokens = (int64_t)htok, .ctx = (int)ctx, .batch = 32, .dtype = dt,
                              .progress = !quiet};
        lp_harvest_result hr;
        fprintf(stderr, "train: harvesting %d sites x %lld rows from %s into %s\n", n, (long long)htok, data, store);
        if (lp_harvest(m, tok, &ho, store, &hr)) goto fail;
        fprintf(stderr, "train: harvested %lld rows in %.1fs\n", (long long)hr.rows, hr.seconds);
    }
    /* one `loupe train` per site */
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", model);
    if (data) cJSON_AddStringToObject(j, "data", data);
    cJSON_AddStringToObject(j, "store", store);
    cJSON_AddStringToObject(j, "layout", "OUT/<hook>/seedS/ with S = 1000*(site index + 1) + N");
    cJSON *arr = cJSON_AddArrayToObject(j, "sites");
    rc = 0;
    for (int h = 0; h < n && !rc; h++) {
        char *dir = lp_path_join(out, names[h]);
        char **args = calloc((size_t)np + 8, sizeof *args);
        if (!dir || !args) {
            free(dir), free(args);
            rc = cli_errorf("train", "out of memory");
            break;
        }
        int na = 0;
        char slist[64 * 8] = "";
        for (int i = 0; i < nseeds; i++)
            snprintf(slist + strlen(slist), sizeof slist - strlen(slist), "%s%d", i ? "," : "", 1000 * (h + 1) + seeds[i]);
        for (int i = 0; i < np; i++) args[na++] = pass[i];
        args[na++] = "--store", args[na++] = (char *)store;
        args[na++] = "--hook", args[na++] = (char *)names[h];
        args[na++] = "--seeds", args[na++] = slist;
        args[na++] = "--out", args[na++] = dir;
        fprintf(stderr, "train: site %d/%d %s (seeds %s)\n", h + 1, n, names[h], slist);
        rc = cmd_train(na, args);
        for (int i = 0; i < nseeds; i++) {
            char sub[200];
            snprintf(sub, sizeof sub, "%s/seed%d", names[h], 1000 * (h + 1) + seeds[i]);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "hook", names[h]);
            cJSON_AddNumberToObject(o, "seed", seeds[i]);
            cJSON_AddNumberToObject(o, "init_seed", 1000 * (h + 1) + seeds[i]);
            cJSON_AddStringToObject(o, "dir", sub);
            cJSON_AddItemToArray(arr, o);
        }
        free(args);
        free(dir);
    }
    if (!rc) {
        char *txt = cJSON_Print(j);
        char *path = lp_path_join(out, "sites.json");
        rc = (!txt || !path || lp_write_file_atomic(path, txt, strlen(txt))) ? cli_error("train") : 0;
        if (!rc) fprintf(stderr, "train: %d site SAEs in %s (index: %s)\n", n, out, path);
        free(txt);
        free(path);
    }
    goto done;
fail:
    rc = cli_error("train");
done:
    cJSON_Delete(j);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(list);
    free(store_own);
    free(pass);
    return rc;
}
