/* cmd_harvest.c — `loupe harvest`: run a model over a text file and write an
 * activation store for one or more hooks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/harvest.h"
#include "loupe/store.h"

int cmd_harvest(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *data = NULL, *hooks = NULL, *out = NULL, *dtype = NULL;
    int64_t tokens = 0, skip = 0;
    int ctx = 0, batch = 0, threads = 0, keep_bos = 0, quiet = 0;
    int generate = 0, prompt_tokens = 0; /* --generate: harvest/generate.c */
    float temperature = 0, top_p = 0;
    int64_t seed = 0;
    cli_opt opts[] = {
        {"--model", 's', &model, NULL, "llama2.c checkpoint or HF directory (default: shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "llama2.c tokenizer file (default: shared tok512.bin)"},
        {"--data", 's', &data, NULL, "text corpus (documents split on <|endoftext|> or blank lines)"},
        {"--hook", 's', &hooks, "blocks.2.hook_resid_post", "hook name(s), comma separated, or 'all'"},
        {"--tokens", 'l', &tokens, "1000000", "activation rows to store (BOS positions are not counted)"},
        {"--ctx", 'i', &ctx, "128", "tokens per window (each window starts with BOS)"},
        {"--batch", 'i', &batch, "32", "windows per forward pass"},
        {"--dtype", 's', &dtype, "f32", "stored dtype: f32 or bf16"},
        {"--keep-bos", 'b', &keep_bos, NULL, "also store BOS positions"},
        {"--skip-bytes", 'l', &skip, "0", "start this many bytes into --data"},
        {"--out", 's', &out, NULL, "output store directory (must not exist or be empty)"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {"--quiet", 'b', &quiet, NULL, "no progress bar"},
        {"--generate", 'b', &generate, NULL, "prompts from --data + sampled continuations: a two-segment store (prompt/generated)"},
        {"--prompt-tokens", 'i', &prompt_tokens, "64", "--generate: prompt tokens taken from each document"},
        {"--temperature", 'f', &temperature, "1", "--generate: sampling temperature"},
        {"--top-p", 'f', &top_p, "0.95", "--generate: nucleus sampling threshold"},
        {"--seed", 'l', &seed, "0", "--generate: sampling seed (sequence i uses seed + i)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("harvest", "--data FILE --hook NAME[,NAME...] --tokens N --out DIR [--model M --tokenizer T]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("harvest", "--data", data)) || (rc = cli_require("harvest", "--out", out))) return rc;
    if (threads > 0) lp_set_threads(threads);
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    int dt;
    if (strcmp(dtype, "f32") == 0 || strcmp(dtype, "float32") == 0) dt = LP_STORE_F32;
    else if (strcmp(dtype, "bf16") == 0 || strcmp(dtype, "bfloat16") == 0) dt = LP_STORE_BF16;
    else return cli_errorf("harvest", "--dtype must be f32 or bf16, not '%s'", dtype);
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    char *list = NULL;
    const char *names[LP_MAX_HOOKS];
    int n = 0;
    rc = 1;
    if (lp_model_load(&m, model)) goto fail;
    if (lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    if (strcmp(hooks, "all") == 0) {
        size_t cap = (size_t)m->cfg.n_layers * LP_HOOK_KINDS * 40 + 1;
        list = malloc(cap);
        if (!list || lp_hook_all_names(m->cfg.n_layers, list, cap)) goto fail;
    } else
        list = strdup(hooks);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == LP_MAX_HOOKS) {
            lp_fail(LP_ERR_ARG, "too many hooks (max %d)", LP_MAX_HOOKS);
            goto fail;
        }
        names[n++] = t;
    }
    lp_harvest_opts o = {.model_path = model, .tokenizer_path = tokpath, .data_path = data, .n_hooks = n,
                         .hooks = names, .tokens = tokens, .ctx = ctx, .batch = batch, .dtype = dt,
                         .keep_bos = keep_bos, .skip_bytes = skip, .progress = !quiet};
    if (generate) {
        lp_harvest_gen_opts go = {.base = o, .prompt_tokens = prompt_tokens, .temperature = temperature,
                                  .top_p = top_p, .seed = (uint64_t)seed};
        lp_harvest_gen_result gr;
        if (lp_harvest_generate(m, tok, &go, out, &gr)) goto fail;
        fprintf(stderr, "harvested %lld rows (%lld prompt, %lld generated) x %d hook(s) from %lld sequences in %.1fs -> %s\n",
                (long long)gr.base.rows, (long long)gr.prompt_rows, (long long)gr.generated_rows, n,
                (long long)gr.sequences, gr.base.seconds, out);
        rc = 0;
        goto fail;
    }
    lp_harvest_result res;
    if (lp_harvest(m, tok, &o, out, &res)) goto fail;
    fprintf(stderr, "harvested %lld rows x %d hook(s) from %lld windows in %.1fs (%.0f tok/s) -> %s\n",
            (long long)res.rows, n, (long long)res.windows, res.seconds,
            res.seconds > 0 ? res.rows / res.seconds : 0, out);
    if (res.rows < tokens)
        fprintf(stderr, "note: the data ran out after %lld of the %lld requested rows\n", (long long)res.rows,
                (long long)tokens);
    rc = 0;
fail:
    if (rc) cli_error("harvest");
    free(list);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
