/* loupe/interp.h — automatic interpretation of SAE features: per-feature
 * statistics over an activation store, segment (modality) tags, explanations
 * (an offline explainer and an optional LLM one over an OpenAI-compatible
 * HTTP endpoint), detection scoring with AUROC, and the on-disk "feature
 * run" the dashboard (loupe/web.h) reads without running any model.
 *
 * Statistics (lp_features_compute), for an SAE loaded from disk (folded, so
 * latents are computed on raw store rows) over the first R rows of a store:
 *   fires_f = #rows with z_f > 0, density_f = fires_f / R,
 *   Z̄_f = Σ z_f / fires_f (mean activation when active), max_f,
 *   hist_f = counts of active values in H equal bins of (0, max_f],
 *   top-N rows by z_f (ties: earlier row first), quantile samples (Q rows
 *   drawn uniformly, by reservoir sampling, from I equal intervals of
 *   (0, max_f], top-N rows excluded), M negative windows (rows of other
 *   features' examples), and for every example a window of tokens around
 *   it (left + 1 + right, rebuilt from the store's token ids, documents and
 *   positions: rows of one window are consecutive with consecutive
 *   positions) with z_f at every token of the window.
 *   Logit lens: top/bottom tokens of W_U (g ⊙ W_dec[f]), g = the final
 *   RMSNorm weight, W_U the unembedding (needs the model).
 * Segment tag (arXiv 2606.10029): over the feature's top-T examples
 *   (T = 20), share_s = fraction in segment s; tag = s when share_s ≥ 0.8,
 *   else mixed. With two segments A/B this is: share_B ≥ 0.8 → B,
 *   share_B ≤ 0.2 → A, else mixed.
 * Detection scoring: the explainer sees the even-ranked top examples; the
 *   held-out positives are the odd-ranked top examples and the quantile
 *   samples; negatives are the negative windows on which the feature is
 *   zero at every token. A scorer predicts a score per window from the
 *   explanation alone; AUROC = P(score_pos > score_neg) + ½ P(=)
 *   (Mann-Whitney). */
#ifndef LOUPE_INTERP_H
#define LOUPE_INTERP_H

#include <stdint.h>

#include "loupe/base.h"
#include "loupe/model.h"
#include "loupe/sae.h"
#include "loupe/segments.h"
#include "loupe/store.h"
#include "loupe/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LP_TAG_DEAD = -1, LP_TAG_MIXED = -2 };

typedef struct {
    int top_n;       /* top activating examples N (20) */
    int n_quant;     /* quantile samples Q (12), a multiple of n_intervals */
    int n_intervals; /* activation intervals I for the quantile samples (4) */
    int n_neg;       /* negative windows M (20) */
    int left, right; /* context tokens before / after the example (15, 4) */
    int hist_bins;   /* H (32) */
    int lens_k;      /* logit-lens tokens each way (10) */
    int tag_top;     /* T: examples used for the segment tag (20) */
    float tag_hi;    /* share threshold (0.8) */
    int64_t max_rows;/* rows of the store used (0: all) */
    int batch;       /* rows per encode batch (0: auto) */
    uint64_t seed;   /* sampling of quantile samples and negatives */
    int progress;    /* progress bar on stderr */
} lp_feat_opts;

void lp_feat_opts_default(lp_feat_opts *o);

typedef struct {
    int F, d, V;      /* latents, input dim, vocabulary size */
    int N, Q, I, M;   /* top, quantile, intervals, negatives */
    int E;            /* example slots per feature: N + Q + M */
    int W, left;      /* window length, index of the example's token */
    int H, LK, S;     /* hist bins, lens tokens, segments */
    int64_t rows;     /* store rows used */
    char **seg_names; /* [S] */
    int64_t *seg_rows;/* [S] rows per segment */
    int64_t *fires;   /* [F] */
    int64_t *seg_fires; /* [F*S] */
    double *sum_act;  /* [F] */
    float *max_act;   /* [F] */
    int64_t *hist;    /* [F*H] */
    /* slot e of feature f at f*E + e: [0,N) top (descending), [N,N+Q) quantile
     * samples (interval by interval, lowest first; descending within),
     * [N+Q,E) negatives. */
    int64_t *ex_row;  /* [F*E] store row, -1 = empty */
    float *ex_val;    /* [F*E] z_f at that row */
    int32_t *ctx_tok; /* [F*E*W] token ids, -1 = outside the window */
    float *ctx_act;   /* [F*E*W] z_f at each token */
    uint8_t *ctx_seg; /* [F*E*W] segment of each token */
    int32_t *lens_pos_id, *lens_neg_id; /* [F*LK] */
    float *lens_pos, *lens_neg;         /* [F*LK] logits */
    int64_t *tok_count; /* [V] background token counts over the rows */
    float *seg_share;   /* [F*S] share of the top-T examples in each segment */
    int32_t *tag;       /* [F] segment index, LP_TAG_MIXED or LP_TAG_DEAD */
} lp_features;

/* Compute everything above. sae: loaded from disk (norm_scale 1). seg:
 * labels for the store's rows (lp_segments_load). m: the model for the logit
 * lens (NULL: no lens, LK = 0). vocab_size: V (the model's when m is given;
 * otherwise > every token id in the store). */
int lp_features_compute(lp_features *out, lp_sae *sae, const lp_store *st, const lp_segments *seg,
                        const lp_model *m, int vocab_size, const lp_feat_opts *o);
void lp_features_free(lp_features *f);
/* Fill seg_share and tag from the top examples (called by compute; exposed
 * for tests and re-tagging with another threshold). */
void lp_features_tag(lp_features *f, int tag_top, float tag_hi);

/* Display strings of every token id (decoded piece; control and partial
 * UTF-8 byte tokens shown as "<0xXX>", newline as "\n"). */
int lp_vocab_build(const lp_tokenizer *tok, int V, char ***out);
void lp_vocab_free(char **vocab, int V);

/* ---- explanations and detection scoring -------------------------------- */
typedef struct {
    int F;
    char **text;     /* [F] explanation (NULL for dead features) */
    char **tokens;   /* [F] characteristic tokens, '\n'-separated (search) */
    float *auroc;    /* [F] NaN when not scored */
    int32_t *n_pos, *n_neg;
    char explainer[128]; /* "offline" or "llm:MODEL" */
} lp_explanations;

int lp_explanations_new(lp_explanations *ex, int F);
void lp_explanations_free(lp_explanations *ex);

/* Mann-Whitney AUROC of positive vs negative scores, ties counted ½.
 * NaN when either side is empty. O((n+m) log(n+m)). */
double lp_auroc(const float *pos, int npos, const float *neg, int nneg);

/* Which slots of feature f are explanation evidence, held-out positives,
 * and negatives (the feature zero on the whole window). Each array [E]
 * (may be NULL); returns counts through the pointers. */
void lp_detection_split(const lp_features *f, int feat, int *train, int *ntrain, int *pos, int *npos,
                        int *neg, int *nneg);

/* The offline explainer: characteristic tokens of the evidence examples
 * (the activating token, the token before it, and the context) against the
 * store's token frequencies, plus the segment tag; its scorer predicts a
 * window's score from those tokens only. Fills every alive feature. */
int lp_explain_offline(const lp_features *f, char *const *vocab, lp_explanations *ex);

/* An LLM explainer and scorer over an OpenAI-compatible chat endpoint
 * (POST URL/chat/completions, Authorization: Bearer KEY when key is set). */
typedef struct {
    const char *url;   /* base URL, e.g. http://127.0.0.1:8080/v1 (http or https) */
    const char *model; /* "model" field of the request */
    const char *key;   /* API key or NULL */
    int timeout_s;     /* per request (60) */
    int max_features;  /* explain at most this many alive features, by id (0: all) */
    int progress;
} lp_llm_opts;

/* Replaces the explanation and AUROC of the features it explains; the
 * others keep what ex held. Fails on a transport or HTTP error; a reply
 * that cannot be parsed leaves that feature unscored (NaN). Needs libcurl
 * at build time (LP_ERR_ARG otherwise). *n_requests counts HTTP calls. */
int lp_explain_llm(const lp_features *f, char *const *vocab, const lp_llm_opts *o, lp_explanations *ex,
                   int *n_requests);
/* The text of window slot e of feature f: tokens concatenated, tokens with
 * z_f > 0 wrapped in << >> when mark != 0. Fresh string. */
char *lp_window_text(const lp_features *f, char *const *vocab, int feat, int e, int mark);

/* ---- the feature run on disk ------------------------------------------- *
 * RUN/features/NAME/meta.json            what was analysed, shapes, tag counts, AUROC by tag
 * RUN/features/NAME/features.safetensors every array of lp_features (the sparse activation cache)
 * RUN/features/NAME/features.json        [{id, text, tokens[], auroc, n_pos, n_neg}] per feature
 * RUN/features/NAME/vocab.json           token display strings
 * RUN/features/NAME/metrics.jsonl        the SAE's training log, copied when found */
typedef struct {
    const char *name;      /* [A-Za-z0-9._-], 1..64, not starting with '.' */
    const char *sae_path, *store_path, *model_path, *tokenizer_path, *hook, *arch;
    int k;
    int layer;             /* parsed from the hook (-1 when unknown) */
} lp_featrun_info;

int lp_featrun_name_ok(const char *name);
int lp_featrun_save(const char *run_dir, const lp_featrun_info *info, const lp_features *f,
                    const lp_explanations *ex, char *const *vocab);

typedef struct {
    char *name, *dir;  /* dir = RUN/features/NAME */
    char *meta_text;   /* meta.json as stored */
    char *hook, *arch, *sae_path, *store_path;
    int layer, k;
    lp_features f;
    lp_explanations ex;
    char **vocab;
} lp_featrun;

int lp_featrun_load(lp_featrun *r, const char *run_dir, const char *name);
void lp_featrun_free(lp_featrun *r);

#ifdef __cplusplus
}
#endif
#endif
