/* cmd_lens.c — `loupe lens`: the logit lens of a direction (an SAE decoder
 * row, a raw vector file, or the mean difference of a hook's activations
 * between two texts): the tokens it promotes and suppresses most. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/sae_format.h"
#include "loupe/steer.h"
#include "loupe/tokenizer.h"

/* mean activation at hook over the non-BOS tokens of text (ids with BOS) into mean[D] */
static int mean_act(const lp_model *m, const lp_tokenizer *tok, lp_hook_point hp, const char *text, float *mean) {
    size_t cap = strlen(text) + 3;
    int *ids = malloc(cap * sizeof(int)), n = 0, rc;
    if (!ids) return lp_fail(LP_ERR_NOMEM, "out of memory");
    if ((rc = lp_tokenizer_encode(tok, text, 1, 0, ids, (int)cap, &n))) goto out;
    if (n < 2) {
        rc = lp_fail(LP_ERR_ARG, "lens: text '%s' has no tokens", text);
        goto out;
    }
    if (n > m->cfg.seq_len) n = m->cfg.seq_len;
    float *act = malloc((size_t)n * m->cfg.dim * sizeof(float));
    lp_splice cap_s;
    lp_runner *r = NULL;
    lp_hooks h;
    lp_hooks_clear(&h);
    rc = act ? lp_splice_init(&cap_s, LP_SPLICE_CAPTURE, NULL, lp_tokenizer_bos(tok), n, m->cfg.dim) : LP_ERR_NOMEM;
    if (!rc) {
        cap_s.captured = act;
        lp_hooks_add(&h, hp, lp_splice_hook, &cap_s);
        rc = lp_runner_new(&r, m, 1, n);
        if (!rc) rc = lp_forward(r, ids, 1, n, 0, &h, LP_LOGITS_NONE, NULL);
        lp_splice_free(&cap_s);
    }
    if (!rc) {
        const int D = m->cfg.dim;
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int t = 1; t < n; t++) s += act[(int64_t)t * D + j];
            mean[j] = (float)(s / (n - 1));
        }
    }
    lp_runner_free(r);
    free(act);
out:
    free(ids);
    return rc;
}

/* the characters of a JSON string (without quotes) */
static void json_str(const char *p) {
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

int cmd_lens(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *sae_dir = NULL, *vec = NULL, *hook_s = NULL, *da = NULL, *db = NULL;
    int feature = 0, top = 0, json = 0;
    cli_opt opts[] = {
        {"--model", 's', &model, NULL, "model (default: the SAE's model, else shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--sae", 's', &sae_dir, NULL, "direction = decoder row --feature of this SAE"},
        {"--feature", 'i', &feature, "-1", "SAE latent whose decoder row to read"},
        {"--vector", 's', &vec, NULL, "direction = a raw little-endian float32 file of dim values"},
        {"--hook", 's', &hook_s, NULL, "with --diff-a/--diff-b: the hook whose mean activations to subtract"},
        {"--diff-a", 's', &da, NULL, "direction = mean activation on text A minus on text B"},
        {"--diff-b", 's', &db, NULL, "the text B of --diff-a"},
        {"--top", 'i', &top, "10", "tokens to list each way"},
        {"--json", 'b', &json, NULL, "print one JSON object"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("lens", "(--sae DIR --feature F | --vector FILE | --hook H --diff-a TEXT --diff-b TEXT) [--top N]", opts,
                       argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    int modes = (sae_dir != NULL) + (vec != NULL) + (da != NULL || db != NULL);
    if (modes != 1) return cli_errorf("lens", "give exactly one direction: --sae DIR --feature F, --vector FILE, or --diff-a/--diff-b with --hook");
    if (top <= 0) return cli_errorf("lens", "--top must be positive");
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_sae *sae = NULL;
    float *v = NULL, *sc = NULL, *vb = NULL;
    char *raw = NULL;
    int *ti = NULL, *bi = NULL;
    char what[512];
    rc = 1;
    if (sae_dir) {
        if (lp_sae_load(&sae, sae_dir, 0)) goto fail;
        if (!model && sae->cfg.model[0] && lp_file_exists(sae->cfg.model)) model = sae->cfg.model;
    }
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    const int D = m->cfg.dim, V = m->cfg.vocab_size;
    v = malloc((size_t)D * sizeof(float));
    vb = malloc((size_t)D * sizeof(float));
    sc = malloc((size_t)V * sizeof(float));
    ti = malloc((size_t)V * sizeof(int));
    bi = malloc((size_t)V * sizeof(int));
    if (!v || !vb || !sc || !ti || !bi) {
        lp_fail(LP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (sae) {
        if (sae->cfg.d_in != D) {
            lp_fail(LP_ERR_ARG, "%s: SAE d_in=%d does not match the model %s (dim %d)", sae_dir, sae->cfg.d_in, model, D);
            goto fail;
        }
        if (feature < 0 || feature >= sae->cfg.d_sae) {
            lp_fail(LP_ERR_ARG, "--feature %d out of range 0..%d for %s", feature, sae->cfg.d_sae - 1, sae_dir);
            goto fail;
        }
        memcpy(v, sae->p[LP_SAE_W_DEC] + (int64_t)feature * D, (size_t)D * sizeof(float));
        snprintf(what, sizeof what, "decoder row %d of %s (%s)", feature, sae_dir, sae->cfg.hook);
    } else if (vec) {
        size_t len = 0;
        if (lp_read_file(vec, &raw, &len)) goto fail;
        if (len != (size_t)D * sizeof(float)) {
            lp_fail(LP_ERR_ARG, "%s: %zu bytes, want %d float32 values (%d bytes) for the model's width", vec, len, D,
                    D * 4);
            goto fail;
        }
        memcpy(v, raw, (size_t)D * sizeof(float));
        snprintf(what, sizeof what, "vector %s", vec);
    } else {
        if (!da || !db || !hook_s) {
            lp_fail(LP_ERR_ARG, "a mean difference needs --diff-a, --diff-b and --hook");
            goto fail;
        }
        lp_hook_point hp;
        if (lp_hook_parse(hook_s, m->cfg.n_layers, &hp) || mean_act(m, tok, hp, da, v) || mean_act(m, tok, hp, db, vb)) goto fail;
        for (int j = 0; j < D; j++) v[j] -= vb[j];
        snprintf(what, sizeof what, "mean difference at %s", hook_s);
    }
    if (lp_lens(m, v, sc)) goto fail;
    if (top > V) top = V;
    lp_lens_top(sc, V, top, ti, bi);
    if (json) {
        printf("{\"direction\": \"%s\", \"promoted\": [", what);
        for (int i = 0; i < top; i++) {
            const char *p = lp_tokenizer_piece(tok, ti[i]);
            printf("%s{\"id\": %d, \"piece\": \"", i ? ", " : "", ti[i]);
            json_str(p);
            printf("\", \"score\": %.6g}", sc[ti[i]]);
        }
        printf("], \"suppressed\": [");
        for (int i = 0; i < top; i++) {
            const char *p = lp_tokenizer_piece(tok, bi[i]);
            printf("%s{\"id\": %d, \"piece\": \"", i ? ", " : "", bi[i]);
            json_str(p);
            printf("\", \"score\": %.6g}", sc[bi[i]]);
        }
        printf("]}\n");
    } else {
        printf("logit lens of %s\n%-24s %-24s\n", what, "promoted", "suppressed");
        for (int i = 0; i < top; i++) {
            char a[64], b[64];
            snprintf(a, sizeof a, "'%s' %+.3f", lp_tokenizer_piece(tok, ti[i]), sc[ti[i]]);
            snprintf(b, sizeof b, "'%s' %+.3f", lp_tokenizer_piece(tok, bi[i]), sc[bi[i]]);
            printf("%-24s %-24s\n", a, b);
        }
    }
    rc = 0;
    goto done;
fail:
    rc = cli_error("lens");
done:
    free(v), free(vb), free(sc), free(ti), free(bi), free(raw);
    lp_sae_free(sae);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
