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

/* The validation both harvests share (see harvest.c); used by generate.c. */
int lp_harvest_prepare(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_opts *o, lp_hook_point *pts,
                       int *dims, char msha[65], char dsha[65], char tsha[65]);
int lp_harvest(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_opts *o, const char *out_dir,
               lp_harvest_result *res);

/* ---- generation harvest (harvest/generate.c) ------------------------------
 * `loupe harvest --generate`: for each document of the data file, its first
 * prompt_tokens tokens (after BOS) are the prompt; the model samples a
 * continuation up to ctx tokens in all; the whole sequence is then run
 * through the model and every non-BOS position stored, with a segment label
 * per row (0 "prompt", 1 "generated") in the store's segments.bin/.json
 * (loupe/segments.h). Documents shorter than the prompt are skipped. doc of a
 * row is the sequence index, pos its position. */
typedef struct {
    lp_harvest_opts base; /* data_path gives the prompts; keep_bos is ignored */
    int prompt_tokens;    /* prompt length after BOS (default 64) */
    float temperature;    /* sampling temperature (default 1) */
    float top_p;          /* nucleus (default 0.95) */
    uint64_t seed;        /* sequence i samples with seed + i */
} lp_harvest_gen_opts;

typedef struct {
    lp_harvest_result base;
    int64_t sequences, prompt_rows, generated_rows;
} lp_harvest_gen_result;

int lp_harvest_generate(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_gen_opts *o,
                        const char *out_dir, lp_harvest_gen_result *res);

#endif
