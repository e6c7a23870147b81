/* loupe/model.h — Llama-family models: configuration, weights, loaders
 * (llama2.c checkpoints and Hugging Face directories), the batched forward
 * pass with hooks, and KV-cached generation.
 *
 * Weights live in ONE float allocation described by a parameter table
 * (llm.c style), so gradients and optimiser state for later training can
 * reuse the same layout. Linear weights are stored [out, in] row-major and
 * q/k rows use llama2.c's interleaved-pair RoPE layout (the HF loader undoes
 * Hugging Face's rotate-half permutation; the HF writer re-applies it).
 *
 * Hooks use TransformerLens names: blocks.L.hook_resid_pre, hook_attn_out,
 * hook_resid_mid, hook_mlp_out, hook_resid_post. A hook sees the activation
 * [B, T, dim] and may modify it in place: that is how interventions and SAE
 * splicing replace an activation (the model itself knows nothing of SAEs).
 */
#ifndef LOUPE_MODEL_H
#define LOUPE_MODEL_H

#include <stdint.h>

#include "loupe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int head_size;
    int shared_classifier; /* 1: logits use the token embedding */
    float norm_eps;        /* RMSNorm epsilon (1e-5 for llama2.c) */
    float rope_theta;      /* 10000 for llama2.c */
} lp_config;

/* The parameter tensors, in file order. */
enum {
    LP_P_EMB,      /* [V, D]       */
    LP_P_RMS_ATT,  /* [L, D]       */
    LP_P_WQ,       /* [L, H*hs, D] */
    LP_P_WK,       /* [L, Hkv*hs, D] */
    LP_P_WV,       /* [L, Hkv*hs, D] */
    LP_P_WO,       /* [L, D, H*hs] */
    LP_P_RMS_FFN,  /* [L, D]       */
    LP_P_W1,       /* [L, F, D]  gate */
    LP_P_W2,       /* [L, D, F]  down */
    LP_P_W3,       /* [L, F, D]  up   */
    LP_P_RMS_FINAL,/* [D]          */
    LP_P_WCLS,     /* [V, D] (size 0 when shared) */
    LP_P_COUNT
};

typedef struct {
    lp_config cfg;
    float *params;               /* one allocation, n_params floats */
    size_t n_params;
    size_t p_size[LP_P_COUNT];   /* floats in each tensor */
    float *p[LP_P_COUNT];        /* pointers into params */
    char *path;                  /* where it was loaded from */
    char *format;                /* "llama2c" or "hf" */
} lp_model;

/* Load a llama2.c checkpoint file or a Hugging Face directory (config.json +
 * model.safetensors) — decided by whether `path` is a directory. */
int lp_model_load(lp_model **out, const char *path);
int lp_model_load_llama2c(lp_model **out, const char *path);
int lp_model_load_hf(lp_model **out, const char *dir);
void lp_model_free(lp_model *m);
/* A model with allocated, uninitialised parameters (for loaders and tests). */
int lp_model_new(lp_model **out, const lp_config *c, const char *path, const char *format);
/* Write the model as a Hugging Face Llama directory (config.json, model.safetensors). */
int lp_model_save_hf(const lp_model *m, const char *dir);
/* Write as a llama2.c checkpoint (version-0 format). */
int lp_model_save_llama2c(const lp_model *m, const char *path);
/* Table helpers: sizes from a config (used by loaders and, later, gradients). */
void lp_param_sizes(const lp_config *c, size_t sizes[LP_P_COUNT]);
const char *lp_param_name(int which);

/* ---- hooks ------------------------------------------------------------- */
enum {
    LP_HOOK_RESID_PRE,
    LP_HOOK_ATTN_OUT,
    LP_HOOK_RESID_MID,
    LP_HOOK_MLP_OUT,
    LP_HOOK_RESID_POST,
    LP_HOOK_KINDS
};

typedef struct {
    int layer, kind;
} lp_hook_point;

/* Parse "blocks.L.hook_X"; n_layers bounds L (pass 0 to skip the check). */
int lp_hook_parse(const char *name, int n_layers, lp_hook_point *hp);
/* "blocks.L.hook_X" into buf (64 bytes suffice). */
void lp_hook_name(lp_hook_point hp, char *buf, size_t n);
/* Hook names of every kind at every layer, comma separated, into buf. */
int lp_hook_all_names(int n_layers, char *buf, size_t n);

typedef struct {
    int layer, kind;
    int B, T, D;         /* act is [B, T, D] */
    int pos0;            /* absolute position of t = 0 (KV-cached decoding) */
    const int *tokens;   /* [B, T] input token ids of this call */
} lp_hook_ctx;

/* A hook may read or modify act in place; a non-zero return aborts the
 * forward pass with that status (set a message with lp_fail). */
typedef int (*lp_hook_fn)(float *act, const lp_hook_ctx *ctx, void *user);

#define LP_MAX_HOOKS 64
typedef struct {
    int n;
    lp_hook_point at[LP_MAX_HOOKS];
    lp_hook_fn fn[LP_MAX_HOOKS];
    void *user[LP_MAX_HOOKS];
} lp_hooks;

void lp_hooks_clear(lp_hooks *h);
int lp_hooks_add(lp_hooks *h, lp_hook_point at, lp_hook_fn fn, void *user);

/* ---- forward ------------------------------------------------------------
 * A runner owns the scratch buffers for up to max_B sequences of max_T
 * tokens and a KV cache of the same size. lp_forward runs T new tokens per
 * sequence at positions pos0..pos0+T-1 (pos0 = 0: a fresh batch; pos0 > 0:
 * continue from the cache, as generation does). Each of the five layer
 * steps is a separate function in forward.c, written outputs-first so that
 * a backward pass can mirror them. */
typedef struct lp_runner lp_runner;

int lp_runner_new(lp_runner **out, const lp_model *m, int max_B, int max_T);
void lp_runner_free(lp_runner *r);
int lp_runner_vocab(const lp_runner *r);
int lp_runner_max_T(const lp_runner *r);

enum { LP_LOGITS_NONE = 0, LP_LOGITS_ALL = 1, LP_LOGITS_LAST = 2 };

/* tokens [B, T]. logits: LP_LOGITS_ALL → out [B, T, V]; LP_LOGITS_LAST →
 * out [B, V] for the last position; NONE → out unused (may be NULL), and the
 * run stops after the last layer any hook needs. */
int lp_forward(lp_runner *r, const int *tokens, int B, int T, int pos0, const lp_hooks *hooks,
               int logits_mode, float *out);

/* ---- sampling and generation -------------------------------------------- */
typedef struct {
    float temperature; /* 0 = greedy */
    float top_p;       /* 1 = off */
    uint64_t seed;
} lp_sampler;

/* Sample one token from logits[V] (modified: softmax in place). */
int lp_sample(const lp_sampler *s, lp_rng *rng, float *logits, int V);

/* Generate for one sequence: prompt ids (BOS included by the caller), then
 * continue until `steps` positions have been run (llama2.c convention: steps
 * counts from the first position, prompt included), i.e. at most steps + 1
 * ids with BOS. The runner needs max_T >= steps. Writes all ids to out
 * (capacity steps + 1),
 * *n_out the count. Stops early on BOS (as llama2.c) — or on EOS if stop_eos.
 * hooks (may be NULL) apply to every forward call. */
int lp_generate(lp_runner *r, const int *prompt, int n_prompt, int steps, const lp_sampler *s,
                const lp_hooks *hooks, int stop_eos, int *out, int *n_out);

#ifdef __cplusplus
}
#endif
#endif
