/* loupe/store.h — the activation store: what a harvest writes and what SAE
 * training reads. A store is a directory:
 *
 *   DIR/manifest.json          format, version, model, data, sha256s, ctx, dtype,
 *                              count (rows per hook), d (when all hooks share it),
 *                              hooks [{name, d, dir, shards:[{file,rows}]}],
 *                              tokens file, lp_store_set_meta keys, created_by
 *   DIR/<hook>/shard_NNNNN.bin raw little-endian rows of d values (f32 or bf16)
 *   DIR/tokens.bin             per row: int32 token id, int32 document, int32 position
 *
 * Every hook has the same rows in the same order (row i of every hook and of
 * tokens.bin is the same token). The store knows nothing about models: the
 * harvester (harvest/) fills it; the SAE trainer (sae/) reads it.
 */
#ifndef LOUPE_STORE_H
#define LOUPE_STORE_H

#include <stdint.h>

#include "loupe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_STORE_F32 = 0, LP_STORE_BF16 = 1 };

/* ---- writing --------------------------------------------------------------- */
typedef struct lp_store_writer lp_store_writer;

typedef struct {
    const char *model;      /* model path as given */
    const char *model_sha256;
    const char *data;       /* corpus path */
    const char *data_sha256;
    const char *tokenizer;
    int ctx;                /* context length used */
    int dtype;              /* LP_STORE_F32 or LP_STORE_BF16 */
    int64_t shard_rows;     /* rows per shard file (default 65536) */
    int n_hooks;
    const char *const *hooks; /* hook names */
    const int *dims;          /* d of each hook */
} lp_store_spec;

/* Creates DIR (must be empty or absent); writes shards as rows arrive and the
 * manifest on close. Memory stays bounded by one shard buffer per hook. */
int lp_store_create(lp_store_writer **w, const char *dir, const lp_store_spec *spec);
/* Append n rows: acts[h] points to n*d_h floats for hook h; tok/doc/pos n each
 * (a NULL tok, doc or pos is stored as zeros). bf16 stores round to nearest even. */
int lp_store_append(lp_store_writer *w, int64_t n, const float *const *acts, const int32_t *tok,
                    const int32_t *doc, const int32_t *pos);
/* Extra manifest fields (string values), e.g. "segment_names". A value that is
 * a plain integer is stored as a JSON number; setting a key again replaces it;
 * the manifest's own keys (format, count, hooks, ...) are refused. */
int lp_store_set_meta(lp_store_writer *w, const char *key, const char *value);
/* Flush, write manifest.json atomically, free. On error the directory is
 * left without a manifest (so it can never be read as a complete store). */
int lp_store_close(lp_store_writer *w);
/* Free without a manifest, removing the files written (and DIR if created). */
void lp_store_abort(lp_store_writer *w);

/* ---- reading --------------------------------------------------------------- */
typedef struct lp_store lp_store;

/* Open a store for one hook (hook may be NULL when the store has exactly one;
 * "" opens the first hook).
 * Validates the manifest against the shard files' sizes. Reading functions
 * may be called from several threads at once on one lp_store. */
int lp_store_open(lp_store **s, const char *dir, const char *hook);
void lp_store_close_reader(lp_store *s);
int64_t lp_store_count(const lp_store *s);
int lp_store_dim(const lp_store *s);
const char *lp_store_hook(const lp_store *s);
const char *lp_store_model(const lp_store *s);     /* manifest "model" */
const char *lp_store_data(const lp_store *s);      /* manifest "data" */
int64_t lp_store_data_tokens(const lp_store *s);   /* manifest "tokens_consumed" or count */
/* The store directory as opened. */
const char *lp_store_dir(const lp_store *s);
/* An integer manifest field (e.g. "data_bytes_consumed"), or def. */
int64_t lp_store_meta_int(const lp_store *s, const char *key, int64_t def);
/* Comma-separated names of every hook in the store. */
int lp_store_hook_names(const lp_store *s, char *buf, size_t n);
/* Manifest JSON text as stored (for `loupe store info`). */
const char *lp_store_manifest_text(const lp_store *s);

/* Copy rows [start, start+n) as float32 into out[n*d]. */
int lp_store_read(const lp_store *s, int64_t start, int64_t n, float *out);
/* Gather arbitrary rows (idx[n]) into out[n*d]. */
int lp_store_gather(const lp_store *s, const int64_t *idx, int64_t n, float *out);
/* Token id / document / position of rows [start, start+n) (any may be NULL). */
int lp_store_tokens(const lp_store *s, int64_t start, int64_t n, int32_t *tok, int32_t *doc,
                    int32_t *pos);

#ifdef __cplusplus
}
#endif
#endif
