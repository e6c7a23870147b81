/* cmd_train.c — `loupe train`: SAEs on an activation store, one per seed
 * (OUT/seedN/), from flags or a JSON config file; checkpoints and --resume. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/sae.h"
#include "loupe/sae_format.h"
#include "loupe/store.h"

/* Turn a JSON config object into "--key value" arguments (keys may use '_'). */
static int config_args(const char *path, char ***out, int *n) {
    char *txt = NULL;
    if (lp_read_file(path, &txt, NULL)) return 1;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lp_fail(LP_ERR_FORMAT, "%s: not a JSON object", path);
    }
    int cnt = cJSON_GetArraySize(j), k = 0;
    char **a = calloc((size_t)cnt * 2 + 1, sizeof *a);
    const cJSON *e;
    cJSON_ArrayForEach(e, j) {
        char flag[128], val[256];
        snprintf(flag, sizeof flag, "--%s", e->string);
        for (char *p = flag; *p; p++)
            if (*p == '_') *p = '-';
        if (cJSON_IsString(e)) snprintf(val, sizeof val, "%s", e->valuestring);
        else if (cJSON_IsBool(e)) snprintf(val, sizeof val, "%d", cJSON_IsTrue(e));
        else if (cJSON_IsNumber(e)) snprintf(val, sizeof val, "%.17g", e->valuedouble);
        else if (cJSON_IsArray(e)) { /* seeds: [0,1,2] */
            val[0] = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, e) snprintf(val + strlen(val), sizeof val - strlen(val), "%s%d", val[0] ? "," : "", (int)x->valuedouble);
        } else {
            cJSON_Delete(j);
            return lp_fail(LP_ERR_FORMAT, "%s: unsupported value for \"%s\"", path, e->string);
        }
        a[k++] = strdup(flag);
        a[k++] = strdup(val);
    }
    cJSON_Delete(j);
    *out = a;
    *n = k;
    return LP_OK;
}

/* boost: replace the trained residual *s by base + residual as one SAE */
static int stitch_into(lp_sae **s, const lp_sae *base) {
    lp_sae *st = NULL;
    int rc = lp_sae_stitch(&st, base, *s);
    if (rc) return rc;
    lp_sae_free(*s);
    *s = st;
    return LP_OK;
}

/* train_impl's argument arrays, freed by cmd_train on every return path */
static char **g_cargs, **g_all;
static int g_nc;

static int train_impl(int argc, char **argv) {
    const char *store = NULL, *hook = NULL, *arch_s = NULL, *seeds_s = NULL, *out = NULL, *fmt_s = NULL,
               *bdec_s = NULL, *config = NULL;
    int d_sae = 0, k = 0, batch = 0, k_aux = 0, threads = 0, quiet = 0, resume = 0;
    int64_t tokens = 0, warmup = 0, ckpt_every = 0, log_every = 0, dead_tokens = 0, init_sample = 0;
    float lr = 0, decay = 0, l1 = 0, l0 = 0, bw = 0, jinit = 0, aux_coeff = 0, theta_m = 0;
    const char *base_dir = NULL, *kron_and_s = NULL; /* boost, kron */
    int heads = 0, km = 0, kn = 0;
    const char *sites = NULL; /* --sites: harvest + one SAE per site (train_sites.c) */
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--sites", 7) == 0 && (argv[i][7] == 0 || argv[i][7] == '=')) return cmd_train_sites(argc, argv);
    cli_opt opts[] = {
        {"--sites", 's', &sites, NULL, "all | HOOK,...: harvest every site of a model once, one SAE per site (loupe train --sites all --help)"},
        {"--config", 's', &config, NULL, "JSON file with any of these options (keys without --; flags override)"},
        {"--store", 's', &store, NULL, "activation store directory (from loupe harvest)"},
        {"--hook", 's', &hook, NULL, "hook to train on when the store has several"},
        {"--arch", 's', &arch_s, "topk", "relu | topk | batchtopk | jumprelu | hiertopk | kron | boost"},
        {"--d-sae", 'i', &d_sae, "4096", "number of latents F"},
        {"--k", 'i', &k, "32", "active latents per token (topk, batchtopk, kron, boost); hiertopk: the largest budget K"},
        {"--heads", 'i', &heads, "0", "kron: heads h (0: d_sae / (m*n)); d_sae = h*m*n"},
        {"--m", 'i', &km, "2", "kron: p-factors per head"},
        {"--n", 'i', &kn, "4", "kron: q-factors per head"},
        {"--kron-and", 's', &kron_and_s, "mand", "kron: mand (sqrt(p q)) | product (p q)"},
        {"--base", 's', &base_dir, NULL, "boost: the frozen base SAE; trains a residual batchtopk SAE (no decoder bias) on x - x_hat_base and saves base+residual as one SAE"},
        {"--tokens", 'l', &tokens, "2000000", "training tokens (several passes over the store if needed)"},
        {"--batch", 'i', &batch, "1024", "tokens per step"},
        {"--lr", 'f', &lr, "0", "Adam learning rate (0: auto, 4e-3 * sqrt(1024 / d_sae), at most 4e-3)"},
        {"--warmup", 'l', &warmup, "-1", "linear warm-up steps (-1: 1% of steps)"},
        {"--decay", 'f', &decay, "0.2", "linear decay to 0 over this final fraction of steps"},
        {"--l1", 'f', &l1, "5", "relu: L1 coefficient (weighted by decoder norms)"},
        {"--l0", 'f', &l0, "0.001", "jumprelu: L0 coefficient"},
        {"--bandwidth", 'f', &bw, "0.05", "jumprelu: straight-through kernel width"},
        {"--jump-init", 'f', &jinit, "0.05", "jumprelu: initial threshold"},
        {"--theta-momentum", 'f', &theta_m, "0.01", "batchtopk: running-threshold momentum"},
        {"--k-aux", 'i', &k_aux, "-1", "AuxK latents (-1: d_in/2 for topk/batchtopk, 0 otherwise)"},
        {"--aux-coeff", 'f', &aux_coeff, "0.03125", "AuxK coefficient"},
        {"--dead-tokens", 'l', &dead_tokens, "0", "tokens without firing before a latent counts dead (0: tokens/20 within 100k..10M)"},
        {"--bdec-init", 's', &bdec_s, "median", "b_dec init: median (geometric) | mean | zero"},
        {"--init-sample", 'l', &init_sample, "32768", "rows used for the input scale and b_dec"},
        {"--seeds", 's', &seeds_s, "0", "comma-separated seeds: one SAE per seed in OUT/seedN/"},
        {"--out", 's', &out, NULL, "output directory"},
        {"--format", 's', &fmt_s, "saelens", "file layout: saelens | sparsify"},
        {"--log-every", 'l', &log_every, "50", "steps between lines of OUT/seedN/metrics.jsonl"},
        {"--checkpoint-every", 'l', &ckpt_every, "0", "steps between checkpoints (0: off)"},
        {"--resume", 'b', &resume, NULL, "continue the run found in OUT"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress bar"},
        {NULL, 0, NULL, NULL, NULL}};
    const char *syn = "--store DIR --arch topk|batchtopk|relu|jumprelu|hiertopk|kron|boost --d-sae F --k K --tokens N --seeds 0[,1,...] --out OUT";
    /* a --config file is applied first, then the command line */
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) config = argv[i + 1];
    char **cargs = NULL;
    int nc = 0;
    if (config && config_args(config, &cargs, &nc)) return cli_error("train");
    char **all = calloc((size_t)(argc + nc + 1), sizeof *all);
    all[0] = argv[0];
    for (int i = 0; i < nc; i++) all[1 + i] = cargs[i];
    for (int i = 1; i < argc; i++) all[nc + i] = argv[i];
    g_cargs = cargs, g_nc = nc, g_all = all;
    int rc = cli_parse("train", syn, opts, argc + nc, all);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("train", "--store", store)) || (rc = cli_require("train", "--out", out))) return rc;
    if (threads > 0) lp_set_threads(threads);
    lp_sae_config c;
    lp_sae_config_default(&c);
    int fmt = 0;
    if (lp_sae_arch_parse(arch_s, &c.arch) || lp_sae_format_parse(fmt_s, &fmt)) return cli_error("train");
    lp_train_opts o;
    lp_train_opts_default(&o);
    if (strcmp(bdec_s, "median") == 0) o.bdec_init = LP_BDEC_MEDIAN;
    else if (strcmp(bdec_s, "mean") == 0) o.bdec_init = LP_BDEC_MEAN;
    else if (strcmp(bdec_s, "zero") == 0) o.bdec_init = LP_BDEC_ZERO;
    else return cli_errorf("train", "--bdec-init must be median, mean or zero");
    lp_store *st = NULL;
    if (lp_store_open(&st, store, hook)) return cli_error("train");
    c.d_in = lp_store_dim(st);
    c.d_sae = d_sae;
    c.k = k;
    c.l1_coeff = l1;
    c.l0_coeff = l0;
    c.jump_bandwidth = bw;
    c.jump_init_threshold = jinit;
    c.theta_momentum = theta_m;
    c.k_aux = k_aux;
    c.aux_coeff = aux_coeff;
    c.dead_tokens = dead_tokens;
    c.kron_m = km;
    c.kron_n = kn;
    c.kron_heads = heads > 0 ? heads : (km > 0 && kn > 0 ? d_sae / (km * kn) : 0);
    if (strcmp(kron_and_s, "mand") == 0 || strcmp(kron_and_s, "product") == 0)
        c.kron_and = strcmp(kron_and_s, "product") == 0 ? LP_KRON_PRODUCT : LP_KRON_MAND;
    else {
        lp_store_close_reader(st);
        return cli_errorf("train", "--kron-and must be mand or product, not '%s'", kron_and_s);
    }
    lp_sae *base = NULL; /* boost: the residual is trained as batchtopk without decoder bias */
    if ((c.arch == LP_SAE_BOOST) != (base_dir != NULL)) {
        lp_store_close_reader(st);
        return cli_errorf("train", base_dir ? "--base is only for --arch boost" : "--arch boost needs --base DIR");
    }
    if (base_dir) {
        if (lp_sae_load(&base, base_dir, c.d_in) || lp_sae_stitch_check(base)) {
            lp_fail_prefix(LP_ERR_ARG, "--base");
            lp_sae_free(base);
            lp_store_close_reader(st);
            return cli_error("train");
        }
        c.arch = LP_SAE_BATCHTOPK;
        c.no_decoder_bias = 1;
        o.base = base;
    }
    snprintf(c.model, sizeof c.model, "%s", lp_store_model(st));
    snprintf(c.hook, sizeof c.hook, "%s", lp_store_hook(st));
    snprintf(c.dataset, sizeof c.dataset, "%s", lp_store_data(st));
    c.dataset_bytes = lp_store_meta_int(st, "data_bytes_consumed", 0); /* absolute end offset */
    c.context_size = (int)lp_store_meta_int(st, "ctx", 0);
    o.tokens = tokens;
    o.batch = batch;
    o.lr = lr > 0 ? lr : (d_sae > 1024 ? 4e-3f * sqrtf(1024.0f / (float)d_sae) : 4e-3f);
    o.warmup_steps = warmup;
    o.decay_frac = decay;
    o.init_sample = init_sample;
    o.log_every = log_every;
    o.checkpoint_every = ckpt_every;
    o.resume = resume;
    o.progress = !quiet;
    lp_sae_resolve_defaults(&c, &o);
    if (c.k_aux > c.d_sae) c.k_aux = c.d_sae;
    { /* validate before any work */
        lp_sae *probe = NULL;
        if (lp_sae_new(&probe, &c)) {
            lp_sae_free(base);
            lp_store_close_reader(st);
            return cli_error("train");
        }
        lp_sae_free(probe);
    }
    if (c.arch == LP_SAE_KRON && fmt == LP_SAE_FMT_SPARSIFY) {
        lp_store_close_reader(st);
        return cli_errorf("train", "a kron SAE cannot be saved in the sparsify layout (no factorised encoder there); "
                                   "use --format saelens");
    }
    if (lp_mkdirs(out)) {
        lp_sae_free(base);
        lp_store_close_reader(st);
        return cli_error("train");
    }
    if (base)
        fprintf(stderr, "train: boost: a residual SAE on x - x_hat(%s), stitched after the base's %d latents\n",
                base_dir, base->cfg.d_sae);
    fprintf(stderr,
            "train: arch=%s d_in=%d d_sae=%d k=%d k_aux=%d dead_tokens=%lld tokens=%lld batch=%d lr=%g "
            "warmup=%lld decay=%g l1=%g l0=%g bandwidth=%g bdec_init=%s seeds=%s store=%s hook=%s rows=%lld "
            "format=%s threads=%d\n",
            lp_sae_arch_name(c.arch), c.d_in, c.d_sae, c.k, c.k_aux, (long long)c.dead_tokens, (long long)tokens,
            batch, o.lr, (long long)warmup, decay, l1, l0, bw, bdec_s, seeds_s, store, lp_store_hook(st),
            (long long)lp_store_count(st), fmt_s, lp_threads());
    char *seeds = strdup(seeds_s);
    rc = 0;
    for (char *save = NULL, *t = strtok_r(seeds, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        char *end;
        unsigned long long seed = strtoull(t, &end, 10);
        if (*end || end == t) {
            rc = cli_errorf("train", "--seeds: '%s' is not a non-negative integer", t);
            break;
        }
        char sub[64];
        snprintf(sub, sizeof sub, "seed%llu", seed);
        char *dir = lp_path_join(out, sub);
        char *ck = lp_path_join(dir, "checkpoint.bin");
        char *log = lp_path_join(dir, "metrics.jsonl");
        char *cfgp = lp_path_join(dir, "cfg.json");
        if (resume && lp_file_exists(cfgp) && !lp_file_exists(ck)) {
            fprintf(stderr, "train: %s is complete, skipping\n", dir);
        } else if (lp_mkdirs(dir)) {
            rc = cli_error("train");
        } else {
            lp_sae *s = NULL;
            c.seed = seed;
            o.checkpoint_path = ck;
            o.log_path = log;
            o.label = sub;
            if (lp_sae_new(&s, &c) || lp_sae_train(s, st, &o) || (base && stitch_into(&s, base)) ||
                lp_sae_save(s, dir, fmt)) {
                rc = cli_error("train");
            } else {
                char desc[1024];
                lp_sae_describe(s, desc, sizeof desc);
                fprintf(stderr, "train: saved %s: %s\n", dir, desc);
            }
            lp_sae_free(s);
        }
        free(dir);
        free(ck);
        free(log);
        free(cfgp);
    }
    free(seeds);
    lp_sae_free(base);
    lp_store_close_reader(st);
    return rc;
}

int cmd_train(int argc, char **argv) {
    g_cargs = g_all = NULL;
    g_nc = 0;
    int rc = train_impl(argc, argv);
    for (int i = 0; i < g_nc; i++) free(g_cargs[i]);
    free(g_cargs);
    free(g_all);
    /* --sites re-enters cmd_train once per site: leave nothing to free twice */
    g_cargs = g_all = NULL;
    g_nc = 0;
    return rc;
}
