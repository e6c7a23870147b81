/* cmd_synth.c — `loupe synth`: the synthetic activation model with known
 * ground truth. `loupe synth --out DIR` writes DIR/truth.safetensors and an
 * activation store DIR/store (train SAEs on it with loupe train);
 * `loupe synth --truth FILE SAE_DIR…` scores SAEs against the truth:
 * isolated features recovered, block subspaces recovered (principal angles),
 * and with two or more SAEs the stability of isolated vs block latents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/sae_format.h"
#include "reproduce/synth_pipeline.h"

int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *truth = NULL, *kind_s = NULL;
    lp_synth_config c;
    lp_synth_config_default(&c);
    int64_t rows = 0, seed = 0, data_seed = 0;
    float iso_tau = 0, inside = 0, tau = 0, s_min = 0;
    int json = 0;
    cli_opt opts[] = {
        {"--out", 's', &out, NULL, "generate: write DIR/truth.safetensors and the store DIR/store"},
        {"--rows", 'l', &rows, "1000000", "generate: rows (tokens) in the store"},
        {"--d", 'i', &c.d, "64", "activation width"},
        {"--n-iso", 'i', &c.n_iso, "48", "isolated 1-sparse directions"},
        {"--p-iso", 'f', &c.p_iso, "0.03", "firing probability of each isolated direction"},
        {"--blocks", 'i', &c.n_blocks, "2", "low-rank blocks"},
        {"--block-m", 'i', &c.block_m, "24", "directions per block (gauss: 2 * block-r)"},
        {"--block-r", 'i', &c.block_r, "12", "dimension of each block's subspace (< block-m)"},
        {"--p-block", 'f', &c.p_block, "0.1", "probability that a block is active"},
        {"--q-in", 'f', &c.q_in, "0.5", "probability that each direction of an active block fires"},
        {"--block-kind", 's', &kind_s, "gauss", "random (m random directions, each fires with --q-in) | gauss (m = 2r: ±basis, isotropic Gaussian in the block)"},
        {"--coef-lo", 'f', &c.coef_lo, "0.5", "coefficients uniform in [lo, hi]"},
        {"--coef-hi", 'f', &c.coef_hi, "1.5", "upper end of the coefficients"},
        {"--noise", 'f', &c.noise, "0.01", "std of isotropic Gaussian noise"},
        {"--seed", 'l', &seed, "1", "seed of the ground-truth directions"},
        {"--data-seed", 'l', &data_seed, "0", "seed of the sampled rows"},
        {"--truth", 's', &truth, NULL, "score: the ground truth file (DIR/truth.safetensors)"},
        {"--iso-tau", 'f', &iso_tau, "0.95", "score: an isolated feature is recovered at cosine >= this"},
        {"--inside", 'f', &inside, "0.8", "score: a latent belongs to a block when this share of it lies in the block"},
        {"--tau", 'f', &tau, "0.7", "score: stability match threshold"},
        {"--stable", 'f', &s_min, "0.5", "score: stable when matched in at least this fraction of other seeds"},
        {"--json", 'b', &json, NULL, "score: print one JSON object"},
        {NULL, 0, NULL, NULL, NULL}};
    const char *syn = "--out DIR [--rows N ...]   |   --truth DIR/truth.safetensors SAE_DIR [SAE_DIR ...]";
    char **fl = NULL, **pos = NULL;
    int nf = 0, np = 0;
    if (cli_split_positional(opts, argc, argv, &fl, &nf, &pos, &np)) return cli_errorf("synth", "out of memory");
    int rc = cli_parse("synth", syn, opts, nf, fl);
    if (rc) {
        free(fl), free(pos);
        return rc == 1 ? 0 : rc;
    }
    c.seed = (uint64_t)seed;
    if (strcmp(kind_s, "random") == 0) c.block_kind = LP_SYNTH_RANDOM;
    else if (strcmp(kind_s, "gauss") == 0) c.block_kind = LP_SYNTH_GAUSS;
    else {
        free(fl), free(pos);
        return cli_errorf("synth", "--block-kind must be random or gauss");
    }
    lp_synth *s = NULL;
    lp_sae **saes = NULL;
    rc = 1;
    if (!truth) {
        if (np) {
            lp_fail(LP_ERR_ARG, "SAE directories are scored with --truth FILE (unexpected '%s')", pos[0]);
            goto fail;
        }
        if (!out) {
            lp_fail(LP_ERR_ARG, "--out DIR (generate) or --truth FILE SAE_DIR... (score) is required");
            goto fail;
        }
        if (lp_synth_new(&s, &c) || lp_mkdirs(out)) goto fail;
        char *tp = lp_path_join(out, "truth.safetensors"), *sp = lp_path_join(out, "store");
        int e = lp_synth_save(s, tp) || lp_synth_write_store(s, sp, rows, (uint64_t)data_seed, tp);
        if (!e)
            fprintf(stderr, "synth: %lld rows (d %d, %d isolated, %d blocks of %d directions in %d dims) -> %s, truth %s\n",
                    (long long)rows, c.d, c.n_iso, c.n_blocks, c.block_m, c.block_r, sp, tp);
        free(tp), free(sp);
        if (e) goto fail;
        rc = 0;
        goto fail;
    }
    if (np < 1) {
        lp_fail(LP_ERR_ARG, "--truth needs at least one SAE directory to score");
        goto fail;
    }
    if (lp_synth_load(&s, truth)) goto fail;
    saes = calloc((size_t)np, sizeof *saes);
    for (int i = 0; i < np; i++)
        if (lp_sae_load(&saes[i], pos[i], s->cfg.d)) goto fail; /* the message names the directory */
    lp_synth_eval ev;
    lp_synth_eval_opts eo = {.iso_tau = iso_tau, .inside_min = inside, .tau = tau, .s_min = s_min};
    if (lp_synth_evaluate(s, saes, np, &eo, &ev)) goto fail;
    if (json) lp_synth_eval_print_json(&ev, stdout);
    else lp_synth_eval_print(&ev, (const char *const *)pos, stdout);
    lp_synth_eval_free(&ev);
    rc = 0;
fail:
    if (rc) cli_error("synth");
    lp_synth_free(s);
    for (int i = 0; saes && i < np; i++) lp_sae_free(saes[i]);
    free(saes);
    free(fl), free(pos);
    return rc;
}
