/* weights.c — the parameter table of a Llama model and the llama2.c
 * checkpoint format (read and write). Hugging Face directories are in hf.c. */
#include "loupe/model.h"

#include <errno.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

static const char *k_names[LP_P_COUNT] = {
    "token_embedding", "rms_att_weight", "wq", "wk", "wv", "wo",
    "rms_ffn_weight", "w1", "w2", "w3", "rms_final_weight", "wcls"};

const char *lp_param_name(int which) { return which >= 0 && which < LP_P_COUNT ? k_names[which] : "?"; }

void lp_param_sizes(const lp_config *c, size_t s[LP_P_COUNT]) {
    size_t L = (size_t)c->n_layers, D = (size_t)c->dim, F = (size_t)c->hidden_dim,
           V = (size_t)c->vocab_size, hs = (size_t)c->head_size;
    size_t q = (size_t)c->n_heads * hs, kv = (size_t)c->n_kv_heads * hs;
    s[LP_P_EMB] = V * D;
    s[LP_P_RMS_ATT] = L * D;
    s[LP_P_WQ] = L * q * D;
    s[LP_P_WK] = L * kv * D;
    s[LP_P_WV] = L * kv * D;
    s[LP_P_WO] = L * D * q;
    s[LP_P_RMS_FFN] = L * D;
    s[LP_P_W1] = L * F * D;
    s[LP_P_W2] = L * D * F;
    s[LP_P_W3] = L * F * D;
    s[LP_P_RMS_FINAL] = D;
    s[LP_P_WCLS] = c->shared_classifier ? 0 : V * D;
}

/* Reject configurations that are absurd before any size is computed from them. */
static int check_config(const lp_config *c, const char *path) {
    if (c->dim <= 0 || c->dim > 65536 || c->hidden_dim <= 0 || c->hidden_dim > 1 << 20 ||
        c->n_layers <= 0 || c->n_layers > 1024 || c->n_heads <= 0 || c->n_heads > 1024 ||
        c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads || c->vocab_size <= 0 ||
        c->vocab_size > 1 << 24 || c->seq_len <= 0 || c->seq_len > 1 << 22)
        return lp_fail(LP_ERR_FORMAT,
                       "%s: implausible model header (dim=%d hidden=%d layers=%d heads=%d "
                       "kv_heads=%d vocab=%d seq_len=%d)",
                       path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab_size, c->seq_len);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2 ||
        c->dim / c->n_heads > 256)
        return lp_fail(LP_ERR_FORMAT,
                       "%s: inconsistent heads (dim %d, heads %d, kv heads %d): need dim %% heads "
                       "== 0, heads %% kv_heads == 0 and an even head size of at most 256",
                       path, c->dim, c->n_heads, c->n_kv_heads);
    return LP_OK;
}

/* Allocate the single parameter block for a config; sets table pointers. */
static int model_alloc(lp_model **out, const lp_config *c, const char *path, const char *format) {
    lp_model *m = lp_calloc(1, sizeof *m);
    if (!m) return LP_ERR_NOMEM;
    m->cfg = *c;
    lp_param_sizes(c, m->p_size);
    size_t n = 0;
    for (int i = 0; i < LP_P_COUNT; i++) n += m->p_size[i];
    m->n_params = n;
    size_t bytes;
    if (lp_mul_overflow(n, sizeof(float), &bytes) || !(m->params = lp_malloc_aligned(bytes))) {
        free(m);
        return lp_fail(LP_ERR_NOMEM, "%s: cannot allocate %zu parameters", path, n);
    }
    float *p = m->params;
    for (int i = 0; i < LP_P_COUNT; i++) {
        m->p[i] = p;
        p += m->p_size[i];
    }
    m->path = lp_strdup(path);
    m->format = lp_strdup(format);
    *out = m;
    return LP_OK;
}

int lp_model_new(lp_model **out, const lp_config *c, const char *path, const char *format) {
    lp_config cc = *c;
    int rc = check_config(&cc, path);
    if (rc) return rc;
    cc.head_size = cc.dim / cc.n_heads;
    if (cc.norm_eps <= 0) cc.norm_eps = 1e-5f;
    if (cc.rope_theta <= 0) cc.rope_theta = 10000.0f;
    return model_alloc(out, &cc, path, format);
}

void lp_model_free(lp_model *m) {
    if (!m) return;
    lp_free(m->params);
    free(m->path);
    free(m->format);
    free(m);
}

int lp_model_load(lp_model **out, const char *path) {
    if (lp_is_dir(path)) return lp_model_load_hf(out, path);
    return lp_model_load_llama2c(out, path);
}

int lp_model_load_llama2c(lp_model **out, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return lp_fail(LP_ERR_IO, "%s: cannot open model (%s)", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return lp_fail(LP_ERR_IO, "%s: not a seekable file", path);
    }
    long fsize = ftell(f);
    rewind(f);
    int32_t h[7];
    if (fsize < (long)sizeof h || fread(h, sizeof(int32_t), 7, f) != 7) {
        fclose(f);
        return lp_fail(LP_ERR_FORMAT, "%s: file is %ld bytes, too short for a llama2.c header",
                       path, fsize < 0 ? 0 : fsize);
    }
    lp_config c = {.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3],
                   .n_kv_heads = h[4], .vocab_size = h[5] < 0 ? -h[5] : h[5], .seq_len = h[6]};
    c.shared_classifier = h[5] > 0;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    int rc = check_config(&c, path);
    if (rc) {
        fclose(f);
        return rc;
    }
    c.head_size = c.dim / c.n_heads;
    lp_model *m;
    if ((rc = model_alloc(&m, &c, path, "llama2c"))) {
        fclose(f);
        return rc;
    }
    /* The legacy RoPE tables (seq_len * head_size/2 floats, twice) sit
     * between rms_final and wcls. */
    size_t freq = (size_t)c.seq_len * (size_t)c.head_size;
    size_t expect = 28 + 4 * (m->n_params + freq);
    if ((size_t)fsize != expect) {
        lp_model_free(m);
        fclose(f);
        return lp_fail(LP_ERR_FORMAT,
                       "%s: file is %ld bytes but its header (dim=%d layers=%d vocab=%d%s) "
                       "implies %zu: truncated or not a llama2.c checkpoint",
                       path, fsize, c.dim, c.n_layers, c.vocab_size,
                       c.shared_classifier ? "" : ", separate classifier", expect);
    }
    size_t before_wcls = m->n_params - m->p_size[LP_P_WCLS];
    int ok = fread(m->params, sizeof(float), before_wcls, f) == before_wcls;
    if (ok && fseek(f, (long)(freq * sizeof(float)), SEEK_CUR) != 0) ok = 0;
    if (ok && m->p_size[LP_P_WCLS])
        ok = fread(m->p[LP_P_WCLS], sizeof(float), m->p_size[LP_P_WCLS], f) ==
             m->p_size[LP_P_WCLS];
    fclose(f);
    if (!ok) {
        lp_model_free(m);
        return lp_fail(LP_ERR_IO, "%s: read failed", path);
    }
    if (!lp_all_finite(m->params, m->n_params)) {
        lp_model_free(m);
        return lp_fail(LP_ERR_NUM, "%s: weights contain NaN or Inf", path);
    }
    *out = m;
    return LP_OK;
}

int lp_model_save_llama2c(const lp_model *m, const char *path) {
    const lp_config *c = &m->cfg;
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->shared_classifier ? c->vocab_size : -c->vocab_size, c->seq_len};
    lp_atomic a;
    int rc = lp_atomic_open(&a, path);
    if (rc) return rc;
    size_t before_wcls = m->n_params - m->p_size[LP_P_WCLS];
    rc = lp_atomic_write(&a, h, sizeof h);
    if (!rc) rc = lp_atomic_write(&a, m->params, before_wcls * sizeof(float));
    /* legacy RoPE tables: cos then sin of pos * theta^(-2i/hs) */
    int half = c->head_size / 2;
    for (int part = 0; part < 2 && !rc; part++)
        for (int pos = 0; pos < c->seq_len && !rc; pos++)
            for (int i = 0; i < half && !rc; i++) {
                double fr = pow((double)c->rope_theta, -2.0 * i / c->head_size) * pos;
                float v = (float)(part == 0 ? cos(fr) : sin(fr));
                rc = lp_atomic_write(&a, &v, sizeof v);
            }
    if (!rc && m->p_size[LP_P_WCLS])
        rc = lp_atomic_write(&a, m->p[LP_P_WCLS], m->p_size[LP_P_WCLS] * sizeof(float));
    if (rc) {
        lp_atomic_abort(&a);
        return rc;
    }
    return lp_atomic_commit(&a);
}

/* ---- hook names ---------------------------------------------------------- */
static const char *k_hook_kind[LP_HOOK_KINDS] = {"hook_resid_pre", "hook_attn_out",
                                                 "hook_resid_mid", "hook_mlp_out",
                                                 "hook_resid_post"};

int lp_hook_parse(const char *name, int n_layers, lp_hook_point *hp) {
    int layer, used = 0;
    if (sscanf(name, "blocks.%d.%n", &layer, &used) != 1 || used == 0)
        return lp_fail(LP_ERR_ARG,
                       "unknown hook name '%s' (expected blocks.L.hook_{resid_pre,attn_out,"
                       "resid_mid,mlp_out,resid_post})",
                       name);
    for (int k = 0; k < LP_HOOK_KINDS; k++)
        if (strcmp(name + used, k_hook_kind[k]) == 0) {
            if (layer < 0 || (n_layers > 0 && layer >= n_layers))
                return lp_fail(LP_ERR_ARG, "hook '%s': layer %d out of range (model has %d layers)",
                               name, layer, n_layers);
            hp->layer = layer;
            hp->kind = k;
            return LP_OK;
        }
    return lp_fail(LP_ERR_ARG,
                   "unknown hook name '%s' (expected blocks.L.hook_{resid_pre,attn_out,"
                   "resid_mid,mlp_out,resid_post})",
                   name);
}

void lp_hook_name(lp_hook_point hp, char *buf, size_t n) {
    snprintf(buf, n, "blocks.%d.%s", hp.layer,
             hp.kind >= 0 && hp.kind < LP_HOOK_KINDS ? k_hook_kind[hp.kind] : "?");
}

int lp_hook_all_names(int n_layers, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = 0;
    for (int l = 0; l < n_layers; l++)
        for (int k = 0; k < LP_HOOK_KINDS; k++) {
            int w = snprintf(buf + used, n - used, "%sblocks.%d.%s", used ? "," : "", l,
                             k_hook_kind[k]);
            if (w < 0 || (size_t)w >= n - used) return lp_fail(LP_ERR_ARG, "hook list too long");
            used += (size_t)w;
        }
    return LP_OK;
}

void lp_hooks_clear(lp_hooks *h) { h->n = 0; }

int lp_hooks_add(lp_hooks *h, lp_hook_point at, lp_hook_fn fn, void *user) {
    if (h->n >= LP_MAX_HOOKS) return lp_fail(LP_ERR_ARG, "too many hooks (max %d)", LP_MAX_HOOKS);
    h->at[h->n] = at;
    h->fn[h->n] = fn;
    h->user[h->n] = user;
    h->n++;
    return LP_OK;
}
