/* cmd_convert.c — `loupe convert`: write a model in another format
 * (llama2.c checkpoint <-> Hugging Face Llama directory). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/model.h"

int cmd_convert(int argc, char **argv) {
    const char *model = NULL, *to = NULL, *out = NULL;
    cli_opt opts[] = {
        {"--model", 's', &model, NULL, "llama2.c checkpoint or HF directory to read"},
        {"--to", 's', &to, "hf", "output format: hf (directory) or llama2c (file)"},
        {"--out", 's', &out, NULL, "output directory (hf) or file (llama2c)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("convert", "--model M --to hf|llama2c --out PATH", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("convert", "--model", model)) || (rc = cli_require("convert", "--out", out))) return rc;
    if (strcmp(to, "hf") != 0 && strcmp(to, "llama2c") != 0)
        return cli_errorf("convert", "--to must be hf or llama2c, not '%s'", to);
    lp_model *m = NULL;
    if (lp_model_load(&m, model)) return cli_error("convert");
    rc = strcmp(to, "hf") == 0 ? lp_model_save_hf(m, out) : lp_model_save_llama2c(m, out);
    lp_model_free(m);
    if (rc) return cli_error("convert");
    fprintf(stderr, "wrote %s (%s)\n", out, to);
    return 0;
}
