/* loupe/harvest.h — run a model over a text corpus and fill an activation
 * store with the activations at one or more hook points, with the token
 * ids, documents and positions of every stored row. */
#ifndef LOUPE_HARVEST_H
#define LOUPE_HARVEST_H

#include <stdint.h>

#include "loupe/model.h"
#include "loupe/tokenizer.h"

typedef struct {
    const char *model_path, *tokenizer_path, *data_path; /* recorded in the manifest */
    int n_hooks;
    const char *const *hooks;
    int64_t tokens;     /* rows to store */
    int ctx;            /* window length */
    int batch;          /* windows per forward pass */
    int dtype;          /* LP_STORE_F32 / LP_STORE_BF16 */
    int keep_bos;       /* store BOS positions too (default: skipped) */
    int64_t skip_bytes; /* start this far into the data file */
    int progress;
} lp_harvest_opts;

typedef struct {
    int64_t rows, windows, data_bytes;
    double seconds;
} lp_harvest_result;

int lp_harvest(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_opts *o, const char *out_dir,
               lp_harvest_result *res);

#endif
