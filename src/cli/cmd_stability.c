/* cmd_stability.c — `loupe stability SAE_DIR…`: which latents of SAEs trained
 * alike but for the seed are reproducible; optionally what the stable and
 * unstable ones do (--store, or --model/--data which harvests a held-out
 * store first), and the subspaces the unstable ones span. Prints a summary;
 * --out DIR writes DIR/features.csv and DIR/stability.json. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/harvest.h"
#include "loupe/sae_format.h"
#include "reproduce/stability_study.h"

static int same_file(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return a && b && realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

static int parse_taus(const char *s, lp_study_opts *o) {
    o->n_taus = 0;
    char *dup = strdup(s), *save = NULL;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        float v = strtof(t, &end);
        if (*end || end == t || o->n_taus >= LP_STUDY_MAX_TAUS || !(v > -1 && v <= 1)) {
            free(dup);
            return lp_fail(LP_ERR_ARG, "--taus: '%s' is not a list of up to %d thresholds in (-1, 1]", s,
                           LP_STUDY_MAX_TAUS);
        }
        o->taus[o->n_taus++] = v;
    }
    free(dup);
    return LP_OK;
}

/* the last n characters of a long name (the distinctive end of a path) */
static const char *tail(const char *s, size_t n) {
    size_t l = strlen(s);
    return l > n ? s + l - n : s;
}

static void print_summary(const lp_study *s, const lp_study_opts *o, const char *const *names,
                          const lp_tokenizer *tok) {
    const int n = s->n;
    printf("stability of %d SAEs (%s matching, tau %.2f, stable if stability >= %.2f)\n", n, lp_match_mode_name(o->mode),
           o->tau, o->s_min);
    printf("  %-40s %8s %8s %8s\n", "SAE", "latents", "stable", "frac");
    for (int a = 0; a < n; a++)
        printf("  %-40.40s %8lld %8lld %8.3f\n", tail(names[a], 40), (long long)s->st.F[a], (long long)s->n_stable[a],
               (double)s->n_stable[a] / (double)s->st.F[a]);
    printf("  fraction stable: %.3f (max matching)", s->sum.frac_stable);
    if (o->one_to_one) printf(", %.3f (one-to-one)", s->sum_hung.frac_stable);
    printf("; mean stability %.3f\n  histogram (stability k/%d): ", s->sum.mean_score, n - 1);
    for (int k = 0; k < n; k++) printf("%s%lld", k ? " " : "", (long long)s->sum.hist[k]);
    printf("\n  tau sweep (fraction stable, max / one-to-one):");
    for (int t = 0; t < o->n_taus; t++) printf("  %.2f: %.3f/%.3f", o->taus[t], s->sweep_max[t], s->sweep_hung[t]);
    printf("\n");
    if (s->have_store) {
        printf("functional asymmetry (store rows; EV with only one group of latents kept)\n");
        printf("  %-24s %8s %8s %8s %8s %8s %8s %8s\n", "SAE", "EV full", "stable", "unstable", "matched", "L0 full",
               "stable", "unstable");
        for (int a = 0; a < n; a++)
            printf("  %-24.24s %8.4f %8.4f %8.4f %8.4f %8.2f %8.2f %8.2f\n", tail(names[a], 24), s->ev_full[a], s->ev_stable[a],
                   s->ev_unstable[a], s->ev_matched[a], s->l0_full[a], s->l0_stable[a], s->l0_unstable[a]);
        printf("  (matched: a random set of unstable latents as large as the stable set)\n");
        printf("  by stability bin: %9s %8s %12s %12s %9s %9s\n", "stability", "latents", "freq mean", "freq median",
               "surface", "rare-surf");
        for (int k = 0; k < n; k++)
            printf("  %18s %9.2f %8lld %12.3g %12.3g %9.3f %9.3f\n", "", (double)k / (n - 1), (long long)s->bin_count[k],
                   s->bin_freq_mean[k], s->bin_freq_median[k], s->bin_surface[k], s->bin_rare_surface[k]);
        printf("  unstable latents of %s, top trigger tokens:\n", names[0]);
        int shown = 0;
        for (int64_t f = 0; f < s->st.F[0] && shown < 8; f++) {
            if (s->score[f] >= o->s_min || !(s->freq[f] > 0)) continue;
            printf("    #%-6lld freq %.2e purity %.2f:", (long long)f, s->freq[f], s->purity[f]);
            for (int q = 0; q < s->topn && q < 8 && s->top_tok[f * s->topn + q] >= 0; q++)
                printf(" %s", lp_study_token_text(tok, s->top_tok[f * s->topn + q]));
            printf("\n");
            shown++;
        }
    }
    if (s->have_ce) {
        printf("CE with the SAE spliced in (nats; clean / zero-ablated / full / stable only / unstable only / matched)\n");
        for (int a = 0; a < n; a++)
            if (isfinite(s->ce_full[a]))
                printf("  %-24.24s %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f\n", tail(names[a], 24), s->ce_clean[a], s->ce_zero[a],
                       s->ce_full[a], s->ce_stable[a], s->ce_unstable[a], s->ce_matched[a]);
    }
    if (s->rank > 0)
        printf("subspaces of the unstable latents (rank %d of d %d): overlap %.3f (median principal angle %.1f deg) vs "
               "random %.3f (p95 %.3f, expected r/d %.3f); controls: unstable vs other seeds' stable %.3f, vs data "
               "PCA %.3f\n",
               s->rank, s->d, s->overlap_mean, s->angle_median_mean, s->rand_mean, s->rand_p95, s->rand_expected,
               s->ctrl_stable_mean, s->ctrl_data_mean);
    else
        printf("subspaces: skipped (an SAE has no unstable latents)\n");
}

int cmd_stability(int argc, char **argv) {
    const char *out = NULL, *match_s = NULL, *taus_s = NULL, *store = NULL, *hook = NULL, *model = NULL, *tokpath = NULL,
               *data = NULL;
    float tau = 0, s_min = 0, purity = 0, common = 0, energy = 0;
    int one = 0, no_one = 0, topn = 0, ctx = 0, rank = 0, threads = 0, quiet = 0, ce_saes = 0;
    int64_t rows = 0, tokens = 0, skip_bytes = 0;
    cli_opt opts[] = {
        {"--out", 's', &out, NULL, "write OUT/features.csv and OUT/stability.json"},
        {"--tau", 'f', &tau, "0.7", "match threshold on the similarity"},
        {"--stable", 'f', &s_min, "0.5", "a latent is stable when matched in at least this fraction of other seeds"},
        {"--match", 's', &match_s, "dec", "similarity: dec | enc | both (min of decoder and encoder cosine)"},
        {"--one-to-one", 'b', &one, NULL, "also score by one-to-one (Hungarian) matching (default when F <= 8192)"},
        {"--no-one-to-one", 'b', &no_one, NULL, "skip the one-to-one matching"},
        {"--taus", 's', &taus_s, "0.5,0.6,0.7,0.8,0.9,0.95", "thresholds of the tau sweep"},
        {"--store", 's', &store, NULL, "activation store for frequencies, EV by group and trigger tokens"},
        {"--hook", 's', &hook, NULL, "hook of --store when it has several (default: the SAEs' hook)"},
        {"--rows", 'l', &rows, "200000", "store rows to use (and to harvest with --model/--data)"},
        {"--topn", 'i', &topn, "20", "top activations per latent for trigger tokens"},
        {"--purity", 'f', &purity, "0.5", "surface-form latent: its modal trigger token holds this share of its top activations"},
        {"--common-mass", 'f', &common, "0.5", "the most frequent tokens making up this share of the store are common"},
        {"--model", 's', &model, NULL, "model: CE with the SAE spliced in (stable-only / unstable-only)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--data", 's', &data, NULL, "text for CE (and for a harvested store when --store is not given)"},
        {"--tokens", 'l', &tokens, "20000", "predicted tokens per CE evaluation"},
        {"--ce-saes", 'i', &ce_saes, "0", "CE for the first N SAEs only (0: all)"},
        {"--ctx", 'i', &ctx, "0", "window length (0: the SAEs' training context, else 128)"},
        {"--skip-bytes", 'l', &skip_bytes, "-1", "bytes of --data to skip (-1: the SAEs' training part when --data is their training file)"},
        {"--rank", 'i', &rank, "0", "dimension of the unstable subspaces (0: from --energy)"},
        {"--energy", 'f', &energy, "0.5", "rank = smallest r holding this share of the unstable rows' energy (min over SAEs)"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress lines"},
        {NULL, 0, NULL, NULL, NULL}};
    const char *syn = "SAE_DIR SAE_DIR [...] [--out DIR] [--tau 0.7] [--store S | --model M --data FILE]";
    char **fl = NULL, **pos = NULL;
    int nf = 0, np = 0;
    if (cli_split_positional(opts, argc, argv, &fl, &nf, &pos, &np)) return cli_errorf("stability", "out of memory");
    int rc = cli_parse("stability", syn, opts, nf, fl);
    if (rc) {
        free(fl), free(pos);
        return rc == 1 ? 0 : rc;
    }
    if (np < 2) {
        free(fl), free(pos);
        return cli_errorf("stability", "give at least two SAE directories (got %d; see loupe stability --help)", np);
    }
    if (threads > 0) lp_set_threads(threads);
    lp_study_opts o;
    lp_study_opts_default(&o);
    o.tau = tau, o.s_min = s_min, o.topn = topn, o.purity_min = purity, o.common_mass = common, o.energy = energy;
    o.rank = rank, o.eval_tokens = tokens, o.store_rows = rows, o.verbose = !quiet, o.ce_saes = ce_saes;
    lp_sae **saes = calloc((size_t)np, sizeof *saes);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    char *tmp_store = NULL;
    lp_study res;
    memset(&res, 0, sizeof res);
    rc = 1;
    if (lp_match_mode_parse(match_s, &o.mode) || parse_taus(taus_s, &o)) goto fail;
    if (!(purity >= 0 && purity <= 1) || !(common > 0 && common <= 1) || !(energy > 0 && energy <= 1) || topn < 0) {
        lp_fail(LP_ERR_ARG, "--purity, --common-mass and --energy must lie in (0, 1], --topn >= 0");
        goto fail;
    }
    for (int i = 0; i < np; i++)
        if (lp_sae_load(&saes[i], pos[i], 0)) goto fail; /* the message names the directory */
    if (lp_stability_check((const lp_sae *const *)saes, (const char *const *)pos, np)) goto fail;
    int64_t maxF = 0;
    for (int i = 0; i < np; i++) maxF = saes[i]->cfg.d_sae > maxF ? saes[i]->cfg.d_sae : maxF;
    o.one_to_one = no_one ? 0 : one ? 1 : maxF <= 8192;
    if ((model || data) && !(model && data)) {
        lp_fail(LP_ERR_ARG, "--model and --data go together");
        goto fail;
    }
    if (model) {
        if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
        if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
        if (m->cfg.dim != saes[0]->cfg.d_in) {
            lp_fail(LP_ERR_ARG, "%s: model width %d does not match the SAEs' d_in %d", model, m->cfg.dim,
                    saes[0]->cfg.d_in);
            goto fail;
        }
        if (!saes[0]->cfg.hook[0]) {
            lp_fail(LP_ERR_ARG, "%s: the SAE records no hook to splice at", pos[0]);
            goto fail;
        }
        o.model = m, o.tok = tok, o.data = data;
        o.ctx = ctx > 0 ? ctx : saes[0]->cfg.context_size > 0 ? saes[0]->cfg.context_size : 128;
        o.skip_bytes = skip_bytes >= 0 ? skip_bytes : same_file(data, saes[0]->cfg.dataset) ? saes[0]->cfg.dataset_bytes : 0;
        if (!store) { /* harvest held-out rows at the SAEs' hook */
            tmp_store = out ? lp_path_join(out, "store") : strdup("/tmp/loupe_stability_store_XXXXXX");
            if (!out && !mkdtemp(tmp_store)) {
                lp_fail(LP_ERR_IO, "%s: cannot create a temporary directory", tmp_store);
                goto fail;
            }
            if (!out) remove(tmp_store); /* the store wants an absent or empty directory */
            const char *hooks[1] = {saes[0]->cfg.hook};
            lp_harvest_opts ho = {.model_path = model, .tokenizer_path = tokpath, .data_path = data, .n_hooks = 1,
                                  .hooks = hooks, .tokens = rows, .ctx = o.ctx, .batch = 16,
                                  .skip_bytes = o.skip_bytes, .progress = !quiet};
            lp_harvest_result hr;
            if (!quiet) fprintf(stderr, "stability: harvesting %lld rows of %s at %s into %s\n", (long long)rows, data,
                                saes[0]->cfg.hook, tmp_store);
            if (lp_harvest(m, tok, &ho, tmp_store, &hr)) goto fail;
            store = tmp_store;
        }
    }
    o.store = store;
    o.store_hook = hook ? hook : store ? saes[0]->cfg.hook : NULL;
    if (store && o.store_hook && !o.store_hook[0]) o.store_hook = NULL;
    if (lp_study_run(saes, (const char *const *)pos, np, &o, &res)) goto fail;
    print_summary(&res, &o, (const char *const *)pos, tok);
    if (out && lp_study_write(&res, &o, (const char *const *)pos, tok, out)) goto fail;
    if (out && !quiet) fprintf(stderr, "stability: wrote %s/features.csv and %s/stability.json\n", out, out);
    rc = 0;
fail:
    if (rc) cli_error("stability");
    if (tmp_store && !out) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_store);
        if (system(cmd)) { /* best effort */
        }
    }
    lp_study_free(&res);
    for (int i = 0; i < np; i++) lp_sae_free(saes[i]);
    free(saes);
    free(tmp_store);
    lp_model_free(m);
    lp_tokenizer_free(tok);
    free(fl);
    free(pos);
    return rc;
}
