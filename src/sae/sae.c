/* sae.c — the SAE object: configuration defaults, the single parameter
 * allocation with its size table, and initialisation. */
#include "loupe/sae.h"
#include "sae/arch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *k_arch[LP_SAE_NARCH] = {"relu",     "topk", "batchtopk", "jumprelu",
                                            "hiertopk", "kron", "boost"};

const char *lp_sae_arch_name(int arch) { return arch >= 0 && arch < LP_SAE_NARCH ? k_arch[arch] : "?"; }

int lp_sae_arch_parse(const char *s, int *arch) {
    for (int i = 0; i < LP_SAE_NARCH; i++)
        if (strcmp(s, k_arch[i]) == 0) {
            *arch = i;
            return LP_OK;
        }
    return lp_fail(LP_ERR_ARG,
                   "unknown SAE architecture '%s' (relu, topk, batchtopk, jumprelu, hiertopk, kron, boost)", s);
}

void lp_sae_config_default(lp_sae_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = LP_SAE_TOPK;
    c->k = 32;
    c->l1_coeff = 5.0f;
    c->l0_coeff = 1e-3f;
    c->jump_bandwidth = 0.05f;
    c->jump_init_threshold = 0.05f;
    c->theta_momentum = 0.01f;
    c->k_aux = -1; /* resolved to min(2k, d_in/2) by the trainer */
    c->aux_coeff = 1.0f / 32.0f;
    c->dead_tokens = 0; /* resolved by the trainer */
    c->normalize_decoder = 1;
    c->norm_scale = 1.0f;
}

static int check_config(const lp_sae_config *c) {
    if (c->arch < 0 || c->arch >= LP_SAE_NARCH) return lp_fail(LP_ERR_ARG, "unknown SAE architecture %d", c->arch);
    if (c->d_in <= 0 || c->d_sae <= 0 || c->d_in > (1 << 20) || c->d_sae > (1 << 26))
        return lp_fail(LP_ERR_ARG, "SAE sizes d_in=%d d_sae=%d are not valid", c->d_in, c->d_sae);
    if ((c->arch == LP_SAE_TOPK || c->arch == LP_SAE_BATCHTOPK) && (c->k <= 0 || c->k > c->d_sae))
        return lp_fail(LP_ERR_ARG, "k=%d must be in 1..d_sae (%d)", c->k, c->d_sae);
    if ((c->arch == LP_SAE_HIERTOPK || c->arch == LP_SAE_KRON) && (c->k <= 0 || c->k > c->d_sae))
        return lp_fail(LP_ERR_ARG, "%s: K=%d must be in 1..d_sae (%d)", c->arch == LP_SAE_KRON ? "kron" : "hiertopk",
                       c->k, c->d_sae);
    if (c->arch == LP_SAE_KRON) {
        int64_t h = c->kron_heads, m = c->kron_m, n = c->kron_n;
        if (h <= 0 || m <= 0 || n <= 0 || h > (1 << 26) || m > (1 << 26) || n > (1 << 26))
            return lp_fail(LP_ERR_ARG, "kron: heads=%d m=%d n=%d must all be positive", c->kron_heads, c->kron_m,
                           c->kron_n);
        if (h * m * n != c->d_sae)
            return lp_fail(LP_ERR_ARG, "kron: heads*m*n = %d*%d*%d = %lld must equal d_sae (%d)", c->kron_heads,
                           c->kron_m, c->kron_n, (long long)(h * m * n), c->d_sae);
        if (h * (m + n) > (1 << 26))
            return lp_fail(LP_ERR_ARG, "kron: heads*(m+n) = %lld encoder rows is too many", (long long)(h * (m + n)));
        if (c->kron_and != LP_KRON_MAND && c->kron_and != LP_KRON_PRODUCT)
            return lp_fail(LP_ERR_ARG, "kron: unknown conjunction %d (mand, product)", c->kron_and);
    }
    if (c->arch == LP_SAE_BOOST && (c->base_latents <= 0 || c->base_latents >= c->d_sae))
        return lp_fail(LP_ERR_ARG, "boost: base_latents=%d must be in 1..d_sae-1 (%d)", c->base_latents, c->d_sae);
    if (!(c->norm_scale > 0) || !isfinite(c->norm_scale))
        return lp_fail(LP_ERR_ARG, "norm_scale %g must be positive", c->norm_scale);
    return LP_OK;
}

static int alloc_like(lp_sae **out, const lp_sae_config *c) {
    lp_sae *s = lp_calloc(1, sizeof *s);
    if (!s) return LP_ERR_NOMEM;
    s->cfg = *c;
    size_t F = (size_t)c->d_sae, d = (size_t)c->d_in;
    size_t E = c->arch == LP_SAE_KRON ? (size_t)c->kron_heads * (size_t)(c->kron_m + c->kron_n) : F; /* encoder rows */
    s->p_size[LP_SAE_W_ENC] = E * d;
    s->p_size[LP_SAE_B_ENC] = E;
    s->p_size[LP_SAE_W_DEC] = F * d;
    s->p_size[LP_SAE_B_DEC] = d;
    s->p_size[LP_SAE_LOG_THRESHOLD] = c->arch == LP_SAE_JUMPRELU || c->arch == LP_SAE_BOOST ? F : 0;
    size_t n = 0;
    for (int i = 0; i < LP_SAE_NP; i++) n += s->p_size[i];
    s->n_params = n;
    size_t bytes;
    if (lp_mul_overflow(n, sizeof(float), &bytes) || !(s->params = lp_malloc_aligned(bytes))) {
        free(s);
        return lp_fail(LP_ERR_NOMEM, "cannot allocate an SAE of %zu parameters", n);
    }
    memset(s->params, 0, bytes);
    float *p = s->params;
    for (int i = 0; i < LP_SAE_NP; i++) {
        s->p[i] = p;
        p += s->p_size[i];
    }
    *out = s;
    return LP_OK;
}

int lp_sae_new(lp_sae **out, const lp_sae_config *c) {
    int rc = check_config(c);
    return rc ? rc : alloc_like(out, c);
}

int lp_sae_like(lp_sae **out, const lp_sae *s) { return alloc_like(out, &s->cfg); }

void lp_sae_free(lp_sae *s) {
    if (!s) return;
    lp_free(s->params);
    free(s);
}

void lp_sae_init(lp_sae *s, uint64_t seed) {
    const int F = s->cfg.d_sae, d = s->cfg.d_in;
    lp_rng rng;
    lp_rng_seed(&rng, seed);
    float *Wd = s->p[LP_SAE_W_DEC];
    for (int64_t f = 0; f < F; f++) {
        float *w = Wd + f * d;
        double ss = 0;
        for (int j = 0; j < d; j++) {
            w[j] = lp_rng_normal(&rng);
            ss += (double)w[j] * w[j];
        }
        float inv = (float)(1.0 / sqrt(ss > 0 ? ss : 1));
        for (int j = 0; j < d; j++) w[j] *= inv;
    }
    if (s->cfg.arch == LP_SAE_KRON) {
        lp_sae_kron_init(s, &rng);
    } else {
        memcpy(s->p[LP_SAE_W_ENC], Wd, (size_t)F * d * sizeof(float));
        memset(s->p[LP_SAE_B_ENC], 0, (size_t)F * sizeof(float));
    }
    memset(s->p[LP_SAE_B_DEC], 0, (size_t)d * sizeof(float));
    if (s->p_size[LP_SAE_LOG_THRESHOLD])
        for (int f = 0; f < F; f++) s->p[LP_SAE_LOG_THRESHOLD][f] = logf(s->cfg.jump_init_threshold);
    s->theta = 0.0f;
}
