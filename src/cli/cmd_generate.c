/* cmd_generate.c — `loupe generate`: text from a prompt with a KV cache;
 * prints the prompt plus the continuation on stdout and nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/model.h"
#include "loupe/tokenizer.h"

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokpath = NULL, *prompt = NULL;
    int steps = 0, threads = 0;
    float temp = 0, top_p = 0;
    int64_t seed = 0;
    cli_opt opts[] = {
        {"--model", 's', &model, NULL, "llama2.c checkpoint or Hugging Face directory (default: shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "llama2.c tokenizer file (default: shared tok512.bin)"},
        {"--prompt", 's', &prompt, "", "prompt text"},
        {"--steps", 'i', &steps, "256", "total positions, prompt and BOS included (llama2.c convention)"},
        {"--temperature", 'f', &temp, "1.0", "sampling temperature; 0 = greedy"},
        {"--top-p", 'f', &top_p, "0.9", "nucleus sampling mass; 1 = off"},
        {"--seed", 'l', &seed, "42", "sampling seed"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("generate", "[--model M] [--tokenizer T] --prompt TEXT [--steps N] [--temperature X]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if (threads > 0) lp_set_threads(threads);
    if (!model) model = cli_shared_path("models/stories260K.bin");
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    lp_runner *r = NULL;
    int *ids = NULL, *out = NULL;
    rc = 1;
    if (lp_model_load(&m, model)) goto fail;
    if (lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
    if (steps <= 0 || steps > m->cfg.seq_len) steps = m->cfg.seq_len;
    size_t cap = strlen(prompt) + 3;
    ids = malloc(cap * sizeof(int));
    out = malloc((size_t)(steps + 1 > (int)cap ? steps + 1 : (int)cap) * sizeof(int));
    if (!ids || !out) {
        lp_fail(LP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int n = 0;
    if (lp_tokenizer_encode(tok, prompt, 1, 0, ids, (int)cap, &n)) goto fail;
    if (n > m->cfg.seq_len) {
        lp_fail(LP_ERR_ARG, "prompt is %d tokens, longer than the model's context %d", n, m->cfg.seq_len);
        goto fail;
    }
    if (lp_runner_new(&r, m, 1, steps > n ? steps : n)) goto fail;
    lp_sampler s = {temp, top_p, (uint64_t)seed};
    int n_out = 0;
    if (lp_generate(r, ids, n, steps, &s, NULL, 0, out, &n_out)) goto fail;
    char *text = NULL;
    if (lp_tokenizer_decode(tok, out, n_out, &text)) goto fail;
    fputs(text, stdout);
    fputc('\n', stdout);
    free(text);
    rc = 0;
fail:
    if (rc) cli_error("generate");
    free(ids);
    free(out);
    lp_runner_free(r);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc;
}
