/* forward.c — the batched Llama forward pass with hooks and a KV cache.
 *
 * Each step of a layer is a free function, outputs first, inputs next,
 * dimensions last (llm.c style); the ones a backward pass needs keep what it
 * will need (e.g. RMSNorm's reciprocal std). GEMMs go through lp_sgemm;
 * everything else is parallelised over rows / (sequence, head) with OpenMP.
 * Numerics follow llama2.c (float RMSNorm with eps inside the mean, float
 * RoPE angles, interleaved RoPE pairs) so greedy decoding matches it. */
#include "loupe/model.h"
#include "base/mathx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

struct lp_runner {
    const lp_model *m;
    int max_B, max_T, nthreads;
    float *x, *xb, *q, *k, *v, *att_cat, *tmp, *h1, *h3; /* [N, *] scratch */
    float *rstd;                                          /* [N] */
    float *kcache, *vcache;                               /* [L, B, max_T, kv] */
    float *rope_cos, *rope_sin;                           /* [max_T, hs/2] */
    float *att_scratch;                                   /* [threads, 2hs+1, max_T+8] */
};

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int lp_runner_new(lp_runner **out, const lp_model *m, int max_B, int max_T) {
    const lp_config *c = &m->cfg;
    if (max_B <= 0 || max_T <= 0)
        return lp_fail(LP_ERR_ARG, "runner: batch %d x %d must be positive", max_B, max_T);
    if (max_T > c->seq_len)
        return lp_fail(LP_ERR_ARG, "context %d exceeds the model's maximum sequence length %d",
                       max_T, c->seq_len);
    lp_runner *r = lp_calloc(1, sizeof *r);
    if (!r) return LP_ERR_NOMEM;
    r->m = m;
    r->max_B = max_B;
    r->max_T = max_T;
    r->nthreads = lp_threads();
    size_t N = (size_t)max_B * max_T, D = c->dim, F = c->hidden_dim;
    size_t qd = (size_t)c->n_heads * c->head_size, kv = (size_t)c->n_kv_heads * c->head_size;
    size_t half = c->head_size / 2;
    struct {
        float **p;
        size_t n;
    } bufs[] = {{&r->x, N * D},      {&r->xb, N * D},
                {&r->q, N * qd},     {&r->k, N * kv},
                {&r->v, N * kv},     {&r->att_cat, N * qd},
                {&r->tmp, N * D},    {&r->h1, N * F},
                {&r->h3, N * F},     {&r->rstd, N},
                {&r->kcache, (size_t)c->n_layers * N * kv},
                {&r->vcache, (size_t)c->n_layers * N * kv},
                {&r->rope_cos, (size_t)max_T * half},
                {&r->rope_sin, (size_t)max_T * half},
                {&r->att_scratch, (size_t)r->nthreads * (2 * c->head_size + 1) * (max_T + 8)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        size_t bytes;
        if (lp_mul_overflow(bufs[i].n, sizeof(float), &bytes) ||
            !(*bufs[i].p = lp_malloc_aligned(bytes))) {
            lp_runner_free(r);
            return lp_fail(LP_ERR_NOMEM, "runner: cannot allocate scratch for batch %d x %d",
                           max_B, max_T);
        }
    }
    memset(r->att_scratch, 0, (size_t)r->nthreads * (2 * c->head_size + 1) * (max_T + 8) * sizeof(float));
    for (int pos = 0; pos < max_T; pos++)
        for (size_t i = 0; i < half; i++) {
            float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_size);
            float val = (float)pos * freq;
            r->rope_cos[pos * half + i] = cosf(val);
            r->rope_sin[pos * half + i] = sinf(val);
        }
    *out = r;
    return LP_OK;
}

void lp_runner_free(lp_runner *r) {
    if (!r) return;
    float *ps[] = {r->x,  r->xb,     r->q,      r->k,        r->v,         r->att_cat,
                   r->tmp, r->h1,    r->h3,     r->rstd,     r->kcache,    r->vcache,
                   r->rope_cos, r->rope_sin, r->att_scratch};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) lp_free(ps[i]);
    free(r);
}

/* ---- layer steps ---------------------------------------------------------- */

/* out[N,D] = inp / rms(inp) * w; rstd[N] kept for backward. */
static void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *w, int64_t N,
                            int D, float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * D;
        float ss = 0.0f;
        for (int j = 0; j < D; j++) ss += x[j] * x[j];
        ss = 1.0f / sqrtf(ss / D + eps);
        if (rstd) rstd[i] = ss;
        float *o = out + i * D;
        for (int j = 0; j < D; j++) o[j] = w[j] * (ss * x[j]);
    }
}

/* out[N,O] = inp[N,I] · W[O,I]ᵀ */
static void matmul_forward(float *out, const float *inp, const float *W, int64_t N, int I, int O) {
    lp_sgemm(0, 1, N, O, I, 1.0f, inp, I, W, I, 0.0f, out, O);
}

/* Rotate consecutive pairs of every head of x[B,T,H*hs] by position pos0+t. */
static void rope_forward(float *x, const float *cosT, const float *sinT, int B, int T, int pos0,
                         int H, int hs) {
    int half = hs / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = x + ((int64_t)b * T + t) * H * hs;
            const float *c = cosT + (int64_t)(pos0 + t) * half, *s = sinT + (int64_t)(pos0 + t) * half;
            for (int h = 0; h < H; h++)
                for (int i = 0; i < half; i++) {
                    float *p = row + h * hs + 2 * i;
                    float a = p[0], bb = p[1];
                    p[0] = a * c[i] - bb * s[i];
                    p[1] = a * s[i] + bb * c[i];
                }
        }
}

/* Causal grouped-query attention for T new positions per sequence:
 * out[B,T,H*hs]; q[B,T,H*hs]; kc/vc[B,max_T,Hkv*hs] hold positions 0..pos0+T-1.
 * Work is split over (sequence, kv head); each task transposes its keys to
 * [hs][n] once so that the scores of a query are computed as hs vectorised
 * AXPYs over positions, the softmax uses the vectorisable lp_expf, and the
 * values are transposed too so each output dimension is one dot product.
 * scratch: per thread (2 hs + 1) * (max_T + 8) floats, zeroed once. */
static void attention_forward(float *out, float *scratch, const float *q, const float *kc,
                              const float *vc, int B, int T, int pos0, int max_T, int H, int Hkv,
                              int hs, int nthreads) {
    const int group = H / Hkv, kvd = Hkv * hs, n_all = pos0 + T;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < Hkv; g++) {
            const int64_t ld = max_T + 8; /* row stride of the padded scratch */
            float *kt = scratch + (int64_t)thread_id() * (2 * hs + 1) * ld;
            float *vt = kt + (int64_t)hs * ld;
            float *att = vt + (int64_t)hs * ld;
            const float *kb = kc + (int64_t)b * max_T * kvd + g * hs;
            const float *vb = vc + (int64_t)b * max_T * kvd + g * hs;
            for (int s = 0; s < n_all; s++)
                for (int i = 0; i < hs; i++) {
                    kt[(int64_t)i * ld + s] = kb[(int64_t)s * kvd + i] * scale;
                    vt[(int64_t)i * ld + s] = vb[(int64_t)s * kvd + i];
                }
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    const float *qt = q + ((int64_t)b * T + t) * H * hs + h * hs;
                    const int n = pos0 + t + 1;
                    /* scores in blocks of 8 positions kept in registers; the
                     * block may run past n into stale (finite) scratch */
                    for (int s0 = 0; s0 < n; s0 += 8) {
                        float acc[8] = {0};
                        for (int i = 0; i < hs; i++) {
                            const float qi = qt[i], *kr = kt + (int64_t)i * ld + s0;
                            for (int j = 0; j < 8; j++) acc[j] += qi * kr[j];
                        }
                        for (int j = 0; j < 8; j++) att[s0 + j] = acc[j];
                    }
                    /* run every loop over n8 = n rounded up to 8 (no scalar
                     * epilogues): the padding scores get weight exactly 0 */
                    const int n8 = (n + 7) & ~7;
                    for (int s = n; s < n8; s++) att[s] = -INFINITY;
                    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
                    for (int s = 0; s < n8; s++) mx = att[s] > mx ? att[s] : mx;
#pragma omp simd
                    for (int s = 0; s < n8; s++) att[s] = lp_expf(att[s] - mx);
                    for (int s = n; s < n8; s++) att[s] = 0.0f;
                    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                    for (int s = 0; s < n8; s++) sum += att[s];
                    const float inv = 1.0f / sum;
                    float *o = out + ((int64_t)b * T + t) * H * hs + h * hs;
                    for (int i = 0; i < hs; i++) {
                        const float *vr = vt + (int64_t)i * ld;
                        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                        for (int s = 0; s < n8; s++) acc += att[s] * vr[s];
                        o[i] = acc * inv;
                    }
                }
        }
}

/* h1[N,F] = silu(h1) * h3 (in place; a backward pass would keep h1, h3). */
static void swiglu_forward(float *h1, const float *h3, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float a = h1[i];
        h1[i] = a / (1.0f + lp_expf(-a)) * h3[i];
    }
}

/* x[n] += y[n] */
static void residual_forward(float *x, const float *y, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* ---- hooks ------------------------------------------------------------------ */

static int run_hooks(const lp_hooks *hooks, int layer, int kind, float *act, int B, int T, int D,
                     int pos0, const int *tokens) {
    if (!hooks) return LP_OK;
    for (int i = 0; i < hooks->n; i++)
        if (hooks->at[i].layer == layer && hooks->at[i].kind == kind) {
            lp_hook_ctx ctx = {layer, kind, B, T, D, pos0, tokens};
            int rc = hooks->fn[i](act, &ctx, hooks->user[i]);
            if (rc) return rc;
        }
    return LP_OK;
}

/* The last layer whose computation some hook needs (-1: none). */
static int last_needed_layer(const lp_hooks *hooks) {
    int last = -1;
    for (int i = 0; hooks && i < hooks->n; i++) {
        int l = hooks->at[i].kind == LP_HOOK_RESID_PRE ? hooks->at[i].layer - 1 : hooks->at[i].layer;
        if (l > last) last = l;
    }
    return last;
}

/* ---- the whole pass ------------------------------------------------------------ */

int lp_forward(lp_runner *r, const int *tokens, int B, int T, int pos0, const lp_hooks *hooks,
               int logits_mode, float *out) {
    const lp_model *m = r->m;
    const lp_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || B > r->max_B || pos0 < 0 || pos0 + T > r->max_T)
        return lp_fail(LP_ERR_ARG, "forward: batch %d x %d at position %d exceeds the runner (%d x %d)",
                       B, T, pos0, r->max_B, r->max_T);
    const int D = c->dim, F = c->hidden_dim, H = c->n_heads, Hkv = c->n_kv_heads, hs = c->head_size;
    const int qd = H * hs, kvd = Hkv * hs;
    const int64_t N = (int64_t)B * T;
    for (int64_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return lp_fail(LP_ERR_ARG, "forward: token id %d out of range [0, %d)", tokens[i],
                           c->vocab_size);
    const float *emb = m->p[LP_P_EMB];
    for (int64_t i = 0; i < N; i++) memcpy(r->x + i * D, emb + (int64_t)tokens[i] * D, D * sizeof(float));

    int last = logits_mode == LP_LOGITS_NONE ? last_needed_layer(hooks) : c->n_layers - 1;
    int rc;
    for (int l = 0; l < c->n_layers; l++) {
        if ((rc = run_hooks(hooks, l, LP_HOOK_RESID_PRE, r->x, B, T, D, pos0, tokens))) return rc;
        if (l > last) return LP_OK;
        const float *wq = m->p[LP_P_WQ] + (size_t)l * qd * D, *wk = m->p[LP_P_WK] + (size_t)l * kvd * D,
                    *wv = m->p[LP_P_WV] + (size_t)l * kvd * D, *wo = m->p[LP_P_WO] + (size_t)l * D * qd;
        /* attention block */
        rmsnorm_forward(r->xb, r->rstd, r->x, m->p[LP_P_RMS_ATT] + (size_t)l * D, N, D, c->norm_eps);
        matmul_forward(r->q, r->xb, wq, N, D, qd);
        matmul_forward(r->k, r->xb, wk, N, D, kvd);
        matmul_forward(r->v, r->xb, wv, N, D, kvd);
        rope_forward(r->q, r->rope_cos, r->rope_sin, B, T, pos0, H, hs);
        rope_forward(r->k, r->rope_cos, r->rope_sin, B, T, pos0, Hkv, hs);
        float *kc = r->kcache + (size_t)l * r->max_B * r->max_T * kvd;
        float *vc = r->vcache + (size_t)l * r->max_B * r->max_T * kvd;
        for (int b = 0; b < B; b++) {
            memcpy(kc + ((int64_t)b * r->max_T + pos0) * kvd, r->k + (int64_t)b * T * kvd,
                   (size_t)T * kvd * sizeof(float));
            memcpy(vc + ((int64_t)b * r->max_T + pos0) * kvd, r->v + (int64_t)b * T * kvd,
                   (size_t)T * kvd * sizeof(float));
        }
        attention_forward(r->att_cat, r->att_scratch, r->q, kc, vc, B, T, pos0, r->max_T, H, Hkv, hs,
                          r->nthreads);
        matmul_forward(r->tmp, r->att_cat, wo, N, qd, D);
        if ((rc = run_hooks(hooks, l, LP_HOOK_ATTN_OUT, r->tmp, B, T, D, pos0, tokens))) return rc;
        residual_forward(r->x, r->tmp, N * D);
        if ((rc = run_hooks(hooks, l, LP_HOOK_RESID_MID, r->x, B, T, D, pos0, tokens))) return rc;
        /* MLP block */
        rmsnorm_forward(r->xb, r->rstd, r->x, m->p[LP_P_RMS_FFN] + (size_t)l * D, N, D, c->norm_eps);
        matmul_forward(r->h1, r->xb, m->p[LP_P_W1] + (size_t)l * F * D, N, D, F);
        matmul_forward(r->h3, r->xb, m->p[LP_P_W3] + (size_t)l * F * D, N, D, F);
        swiglu_forward(r->h1, r->h3, N * F);
        matmul_forward(r->tmp, r->h1, m->p[LP_P_W2] + (size_t)l * D * F, N, F, D);
        if ((rc = run_hooks(hooks, l, LP_HOOK_MLP_OUT, r->tmp, B, T, D, pos0, tokens))) return rc;
        residual_forward(r->x, r->tmp, N * D);
        if ((rc = run_hooks(hooks, l, LP_HOOK_RESID_POST, r->x, B, T, D, pos0, tokens))) return rc;
    }
    if (logits_mode == LP_LOGITS_NONE) return LP_OK;
    const float *wcls = c->shared_classifier ? m->p[LP_P_EMB] : m->p[LP_P_WCLS];
    if (logits_mode == LP_LOGITS_LAST) {
        for (int b = 0; b < B; b++)
            memcpy(r->tmp + (int64_t)b * D, r->x + ((int64_t)b * T + T - 1) * D, D * sizeof(float));
        rmsnorm_forward(r->xb, NULL, r->tmp, m->p[LP_P_RMS_FINAL], B, D, c->norm_eps);
        matmul_forward(out, r->xb, wcls, B, D, c->vocab_size);
    } else {
        rmsnorm_forward(r->xb, NULL, r->x, m->p[LP_P_RMS_FINAL], N, D, c->norm_eps);
        matmul_forward(out, r->xb, wcls, N, D, c->vocab_size);
    }
    return LP_OK;
}

int lp_runner_vocab(const lp_runner *r) { return r->m->cfg.vocab_size; }
int lp_runner_max_T(const lp_runner *r) { return r->max_T; }
