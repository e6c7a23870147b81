/* cmd_pool.c — `loupe pool SAE_DIR… --out P`: a pooled SAE from the latents
 * that several seeds agree on (clusters of decoder rows at cos ≥ τ, one
 * latent per cluster, initialised from the members), briefly fine-tuned on a
 * store when --store is given; prints the clustering and the explained
 * variance of the pooled SAE against the originals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/pool.h"
#include "loupe/sae_format.h"
#include "loupe/stability.h"

static int ev_on(lp_sae *s, const lp_store *st, int64_t start, int64_t rows, double *ev) {
    lp_latent_opts lo = {.start = start, .rows = rows};
    lp_latent_stats ls;
    int rc = lp_latent_stats_compute(s, st, &lo, &ls);
    if (!rc) *ev = ls.ev;
    lp_latent_stats_free(&ls);
    return rc;
}

int cmd_pool(int argc, char **argv) {
    const char *out = NULL, *store_s = NULL, *hook = NULL, *fmt_s = NULL;
    float tau = 0, lr = 0;
    int64_t size = 0, tokens = 0, eval_rows = 0, seed = 0;
    int threads = 0, quiet = 0;
    cli_opt opts[] = {
        {"--out", 's', &out, NULL, "output directory of the pooled SAE"},
        {"--tau", 'f', &tau, "0.7", "decoder cosine for two seeds' latents to join one cluster"},
        {"--size", 'l', &size, "0", "latents of the pooled SAE (0: as the first SAE)"},
        {"--store", 's', &store_s, NULL, "fine-tune on this activation store (and measure EV on its last rows)"},
        {"--hook", 's', &hook, NULL, "hook of --store (default: the SAEs' hook)"},
        {"--tokens", 'l', &tokens, "500000", "fine-tuning tokens"},
        {"--lr", 'f', &lr, "0", "fine-tuning learning rate (0: as loupe train's default for this size)"},
        {"--seed", 'l', &seed, "0", "seed of the fine-tuning data order"},
        {"--eval-rows", 'l', &eval_rows, "50000", "EV on the store's last rows"},
        {"--format", 's', &fmt_s, "saelens", "file layout: saelens | sparsify"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress bar"},
        {NULL, 0, NULL, NULL, NULL}};
    char **fl = NULL, **pos = NULL;
    int nf = 0, np = 0;
    if (cli_split_positional(opts, argc, argv, &fl, &nf, &pos, &np)) return cli_errorf("pool", "out of memory");
    int rc = cli_parse("pool", "SAE_DIR SAE_DIR [...] --out P [--tau 0.7] [--store S --tokens N]", opts, nf, fl);
    if (rc) {
        free(fl), free(pos);
        return rc == 1 ? 0 : rc;
    }
    if ((rc = cli_require("pool", "--out", out))) {
        free(fl), free(pos);
        return rc;
    }
    if (np < 2) {
        free(fl), free(pos);
        return cli_errorf("pool", "give at least two SAE directories (got %d)", np);
    }
    if (threads > 0) lp_set_threads(threads);
    lp_sae **saes = calloc((size_t)np, sizeof *saes);
    lp_sae *p = NULL;
    lp_store *st = NULL;
    lp_stability sm;
    memset(&sm, 0, sizeof sm);
    int fmt = 0;
    rc = 1;
    if (lp_sae_format_parse(fmt_s, &fmt)) goto fail;
    if (!(tau > -1 && tau <= 1)) {
        lp_fail(LP_ERR_ARG, "--tau %g must lie in (-1, 1]", tau);
        goto fail;
    }
    for (int i = 0; i < np; i++)
        if (lp_sae_load(&saes[i], pos[i], 0)) goto fail; /* the message names the directory */
    if (lp_stability_check((const lp_sae *const *)saes, (const char *const *)pos, np)) goto fail;
    if (lp_stability_match(&sm, (const lp_sae *const *)saes, np, LP_MATCH_DEC, 0)) goto fail;
    lp_pool_opts po = {.tau = tau, .size = size};
    lp_pool_info info;
    if (lp_pool_build((const lp_sae *const *)saes, np, &sm, &po, &p, &info)) goto fail;
    printf("pool: %lld decoder rows of %d SAEs -> %lld clusters at cos >= %.2f; kept %lld (mean %.2f members)\n",
           (long long)info.rows, np, (long long)info.clusters, tau, (long long)info.kept, info.kept_mean_size);
    printf("  clusters by members:");
    for (int k = 1; k <= np; k++) printf("  %d: %lld (kept %lld)", k, (long long)info.size_hist[k], (long long)info.kept_hist[k]);
    printf("\n");
    if (store_s) {
        if (lp_store_open(&st, store_s, hook ? hook : saes[0]->cfg.hook[0] ? saes[0]->cfg.hook : NULL)) goto fail;
        int64_t cnt = lp_store_count(st), er = eval_rows < cnt ? eval_rows : cnt;
        double ev0 = 0, ev1 = 0, evo = 0;
        if (ev_on(p, st, cnt - er, er, &ev0)) goto fail;
        for (int i = 0; i < np; i++) {
            double e;
            if (ev_on(saes[i], st, cnt - er, er, &e)) goto fail;
            evo += e / np;
        }
        lp_train_opts t;
        lp_train_opts_default(&t);
        t.tokens = tokens;
        t.lr = lr > 0 ? lr : (p->cfg.d_sae > 1024 ? 4e-3f * sqrtf(1024.0f / (float)p->cfg.d_sae) : 4e-3f);
        t.warm_start = 1;
        t.log_every = 0;
        t.progress = !quiet;
        t.label = "pool";
        p->cfg.seed = (uint64_t)seed;
        if (tokens > 0 && lp_sae_train(p, st, &t)) goto fail;
        if (ev_on(p, st, cnt - er, er, &ev1)) goto fail;
        printf("  explained variance on the store's last %lld rows: pooled before fine-tuning %.4f, after %.4f "
               "(%lld tokens); originals' mean %.4f\n",
               (long long)er, ev0, ev1, (long long)tokens, evo);
    }
    if (lp_sae_save(p, out, fmt)) goto fail;
    fprintf(stderr, "pool: saved %s\n", out);
    rc = 0;
fail:
    if (rc) cli_error("pool");
    lp_stability_free(&sm);
    for (int i = 0; i < np; i++) lp_sae_free(saes[i]);
    free(saes);
    lp_sae_free(p);
    lp_store_close_reader(st);
    free(fl), free(pos);
    return rc;
}
