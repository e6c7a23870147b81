/* format.c — SAEs on disk: the SAELens and sparsify (EleutherAI) layouts,
 * written with norm_scale folded in and read back with every shape, number
 * and option checked.
 *
 * What the two libraries compute (checked against their sources):
 *   SAELens (sae_lens/saes/, *_sae.py): sae_in = x − b_dec·apply_b_dec_to_input;
 *     pre = sae_in @ W_enc + b_enc with W_enc [d_in, d_sae];
 *     standard: ReLU(pre); topk: keep the k largest of pre, then ReLU;
 *     jumprelu: ReLU(pre)·1[pre > ReLU(threshold)]. BatchTopK SAEs are saved
 *     for inference as jumprelu with a constant threshold. With
 *     rescale_acts_by_decoder_norm (topk) pre is multiplied by ‖W_dec[f]‖
 *     before the top-k and the decoder divides by it again.
 *   sparsify (sparsify/sparse_coder.py, fused_encoder.py): encode subtracts
 *     b_dec unless the coder is a transcoder, x' = x − b_dec; then
 *     pre = ReLU(encoder.weight x' + encoder.bias) with encoder.weight
 *     [d_sae, d_in], and the k largest are kept; decode = W_dec^T z + b_dec.
 *     Older releases (Sae.pre_acts in sae.py) do the same: x − b_dec, ReLU,
 *     top-k. (One experimental branch comments the subtraction out; no
 *     released version does.)
 * Both are therefore loupe's forward with W_enc as stored, so the weights are
 * written as they are (SAELens transposed) and no bias transform is needed
 * for sparsify; transcoders and skip connections are refused on load.
 *
 * norm_scale s: loupe encodes xn = x·s. Saving folds s so the file works on
 * raw x: b_enc/s, b_dec/s, θ/s; W_enc, W_dec unchanged (latents become z/s,
 * the reconstruction x̂n/s = x̂). For jumprelu the stored threshold is
 * exp(float(log θ − log s)) so that it is exactly exp of a float log
 * threshold: load inverts it bit-exactly and save→load→save reproduces the
 * weights byte for byte (the difference from exp(log θ)/s is < 1 ulp of log).
 *
 * Foreign files: SAELens apply_b_dec_to_input=false (e.g. Gemma Scope) is
 * folded into b_enc (b_enc + W_enc b_dec); rescale_acts_by_decoder_norm is
 * folded into W_enc/b_enc/W_dec; a non-positive jumprelu threshold (SAELens
 * clamps it to 0) becomes log θ = −104, whose float exp is exactly 0.
 */
#include "loupe/sae_format.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "loupe/safetensors.h"

#define CFG_NAME "cfg.json"
#define SAELENS_WEIGHTS "sae_weights.safetensors"
#define SPARSIFY_WEIGHTS "sae.safetensors"
#define LOUPE_FORMAT_VERSION 1
/* log θ whose float exp is exactly 0 (exp(−104) < FLT_TRUE_MIN / 2) */
#define LOG_THETA_ZERO (-104.0f)

static const char *k_weights[2] = {SAELENS_WEIGHTS, SPARSIFY_WEIGHTS};

const char *lp_sae_format_name(int format) {
    return format == LP_SAE_FMT_SAELENS ? "saelens" : format == LP_SAE_FMT_SPARSIFY ? "sparsify" : "?";
}

int lp_sae_format_parse(const char *s, int *format) {
    if (strcmp(s, "saelens") == 0)
        *format = LP_SAE_FMT_SAELENS;
    else if (strcmp(s, "sparsify") == 0)
        *format = LP_SAE_FMT_SPARSIFY;
    else
        return lp_fail(LP_ERR_ARG, "unknown SAE file format '%s' (saelens, sparsify)", s);
    return LP_OK;
}

/* ---- thresholds ---------------------------------------------------------- */

static float exp_f(float lt) { return (float)exp((double)lt); }

/* A float log threshold whose exp_f is exactly thr when one is near log(thr)
 * (always so for thresholds written by exp_f), else the closest. */
static float log_threshold_of(float thr) {
    if (!(thr > 0)) return LOG_THETA_ZERO;
    float c = (float)log((double)thr);
    if (exp_f(c) == thr) return c;
    float best = c;
    double berr = fabs((double)exp_f(c) - thr);
    float up = c, dn = c;
    for (int i = 0; i < 16; i++) {
        up = nextafterf(up, INFINITY);
        dn = nextafterf(dn, -INFINITY);
        if (exp_f(up) == thr) return up;
        if (exp_f(dn) == thr) return dn;
        double eu = fabs((double)exp_f(up) - thr), ed = fabs((double)exp_f(dn) - thr);
        if (eu < berr) berr = eu, best = up;
        if (ed < berr) berr = ed, best = dn;
    }
    return best;
}

/* ---- small JSON helpers -------------------------------------------------- */

static int hook_layer_of(const char *hook) {
    int layer = -1, used = 0;
    if (sscanf(hook, "blocks.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0) return layer;
    return -1;
}

typedef struct {
    int ok;
} jb; /* builder: ok drops to 0 on the first allocation failure */

/* the shortest decimal that reads back as float f, so cfg.json shows 0.002
 * rather than 0.0020000000949949026 and still round-trips exactly */
static double short_f(float f) {
    char tmp[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(tmp, sizeof tmp, "%.*g", p, (double)f);
        double v = strtod(tmp, NULL);
        if ((float)v == f) return v;
    }
    return (double)f;
}

static void j_flt(jb *b, cJSON *o, const char *k, float v) {
    if (!cJSON_AddNumberToObject(o, k, short_f(v))) b->ok = 0;
}
static void j_num(jb *b, cJSON *o, const char *k, double v) {
    if (!cJSON_AddNumberToObject(o, k, v)) b->ok = 0;
}
static void j_str(jb *b, cJSON *o, const char *k, const char *v) {
    if (!cJSON_AddStringToObject(o, k, v)) b->ok = 0;
}
static void j_bool(jb *b, cJSON *o, const char *k, int v) {
    if (!cJSON_AddBoolToObject(o, k, v)) b->ok = 0;
}
static void j_null(jb *b, cJSON *o, const char *k) {
    if (!cJSON_AddNullToObject(o, k)) b->ok = 0;
}
static cJSON *j_obj(jb *b, cJSON *o, const char *k) {
    cJSON *c = cJSON_AddObjectToObject(o, k);
    if (!c) b->ok = 0;
    return c;
}
static void j_str_or_null(jb *b, cJSON *o, const char *k, const char *v) {
    if (v && *v)
        j_str(b, o, k, v);
    else
        j_null(b, o, k);
}

/* the "loupe" object: everything of lp_sae_config that the layouts lack */
static void add_loupe_object(jb *b, cJSON *root, const lp_sae *s) {
    const lp_sae_config *c = &s->cfg;
    cJSON *o = j_obj(b, root, "loupe");
    if (!o) return;
    j_num(b, o, "version", LOUPE_FORMAT_VERSION);
    j_str(b, o, "arch", lp_sae_arch_name(c->arch));
    j_num(b, o, "k", c->k);
    j_num(b, o, "k_aux", c->k_aux);
    j_flt(b, o, "norm_scale_folded", c->norm_scale);
    if (c->seed <= ((uint64_t)1 << 53)) {
        j_num(b, o, "seed", (double)c->seed);
    } else {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)c->seed);
        j_str(b, o, "seed", tmp);
    }
    j_num(b, o, "tokens_trained", (double)c->tokens_trained);
    j_str(b, o, "model", c->model);
    j_str(b, o, "hook", c->hook);
    j_str(b, o, "dataset", c->dataset);
    j_num(b, o, "dataset_bytes", (double)c->dataset_bytes);
    j_num(b, o, "context_size", (double)c->context_size);
    j_flt(b, o, "l1_coeff", c->l1_coeff);
    j_flt(b, o, "l0_coeff", c->l0_coeff);
    j_flt(b, o, "jump_bandwidth", c->jump_bandwidth);
    j_flt(b, o, "jump_init_threshold", c->jump_init_threshold);
    j_flt(b, o, "theta_momentum", c->theta_momentum);
    j_flt(b, o, "aux_coeff", c->aux_coeff);
    j_num(b, o, "dead_tokens", (double)c->dead_tokens);
    j_bool(b, o, "normalize_decoder", c->normalize_decoder);
    if (c->arch == LP_SAE_BATCHTOPK) j_flt(b, o, "theta", s->theta / c->norm_scale);
    if (c->arch == LP_SAE_KRON) {
        j_num(b, o, "kron_heads", c->kron_heads);
        j_num(b, o, "kron_m", c->kron_m);
        j_num(b, o, "kron_n", c->kron_n);
        j_str(b, o, "kron_and", c->kron_and == LP_KRON_PRODUCT ? "product" : "mand");
    }
    if (c->arch == LP_SAE_BOOST) j_num(b, o, "base_latents", c->base_latents);
    if (c->no_decoder_bias) j_bool(b, o, "no_decoder_bias", 1);
}

static cJSON *saelens_cfg(jb *b, const lp_sae *s) {
    const lp_sae_config *c = &s->cfg;
    cJSON *r = cJSON_CreateObject();
    if (!r) {
        b->ok = 0;
        return NULL;
    }
    /* hiertopk runs as a topk SAE with k = K; boost as a jumprelu; kron has
     * no SAELens class ("kron": loupe's own, with the factorised encoder) */
    const int topk_like = c->arch == LP_SAE_TOPK || c->arch == LP_SAE_HIERTOPK || c->arch == LP_SAE_KRON;
    const char *arch = c->arch == LP_SAE_RELU ? "standard"
                       : c->arch == LP_SAE_KRON ? "kron"
                       : topk_like              ? "topk"
                                                : "jumprelu";
    j_str(b, r, "architecture", arch);
    j_num(b, r, "d_in", c->d_in);
    j_num(b, r, "d_sae", c->d_sae);
    j_str(b, r, "dtype", "float32");
    j_str(b, r, "device", "cpu");
    j_str(b, r, "model_name", c->model);
    j_str(b, r, "hook_name", c->hook);
    int layer = hook_layer_of(c->hook);
    if (layer >= 0)
        j_num(b, r, "hook_layer", layer);
    else
        j_null(b, r, "hook_layer");
    j_null(b, r, "hook_head_index");
    j_str(b, r, "activation_fn_str", topk_like ? "topk" : "relu");
    cJSON *kw = j_obj(b, r, "activation_fn_kwargs");
    if (kw && topk_like) j_num(b, kw, "k", c->k);
    if (topk_like) {
        j_num(b, r, "k", c->k);
        j_bool(b, r, "rescale_acts_by_decoder_norm", 0);
    }
    j_bool(b, r, "apply_b_dec_to_input", 1);
    j_bool(b, r, "finetuning_scaling_factor", 0);
    j_str(b, r, "normalize_activations", "none");
    j_str(b, r, "reshape_activations", "none");
    if (c->context_size > 0) j_num(b, r, "context_size", (double)c->context_size);
    else j_null(b, r, "context_size");
    j_str_or_null(b, r, "dataset_path", c->dataset);
    j_bool(b, r, "dataset_trust_remote_code", 1);
    j_bool(b, r, "prepend_bos", 1);
    j_null(b, r, "sae_lens_training_version");
    j_null(b, r, "neuronpedia_id");
    j_obj(b, r, "model_from_pretrained_kwargs");
    j_num(b, r, "training_tokens", (double)c->tokens_trained);
    add_loupe_object(b, r, s);
    return r;
}

static cJSON *sparsify_cfg(jb *b, const lp_sae *s) {
    const lp_sae_config *c = &s->cfg;
    cJSON *r = cJSON_CreateObject();
    if (!r) {
        b->ok = 0;
        return NULL;
    }
    /* sparsify itself knows only "topk"; other loupe architectures keep their
     * name here so sparsify refuses them ("Unknown activation") instead of
     * silently running them as top-k. */
    j_str(b, r, "activation",
          c->arch == LP_SAE_TOPK || c->arch == LP_SAE_HIERTOPK ? "topk" : lp_sae_arch_name(c->arch));
    int ef = c->d_sae / c->d_in;
    j_num(b, r, "expansion_factor", ef > 0 ? ef : 1); /* informative: num_latents rules */
    j_bool(b, r, "normalize_decoder", c->normalize_decoder);
    j_num(b, r, "num_latents", c->d_sae);
    j_num(b, r, "k", c->k);
    j_bool(b, r, "multi_topk", 0);
    j_bool(b, r, "skip_connection", 0);
    j_bool(b, r, "transcode", 0);
    j_num(b, r, "d_in", c->d_in);
    add_loupe_object(b, r, s);
    return r;
}

/* ---- save ---------------------------------------------------------------- */

static char *tmp_name(const char *path) {
    char *t = lp_malloc(strlen(path) + 40);
    if (t) sprintf(t, "%s.new.%ld", path, (long)getpid());
    return t;
}

int lp_sae_save(const lp_sae *s, const char *dir, int format) {
    if (format != LP_SAE_FMT_SAELENS && format != LP_SAE_FMT_SPARSIFY)
        return lp_fail(LP_ERR_ARG, "%s: unknown SAE file format %d", dir, format);
    const lp_sae_config *c = &s->cfg;
    const int64_t F = c->d_sae, d = c->d_in;
    const float sc = c->norm_scale;
    if (c->arch < 0 || c->arch >= LP_SAE_NARCH)
        return lp_fail(LP_ERR_ARG, "%s: unknown SAE architecture %d", dir, c->arch);
    if (c->arch == LP_SAE_KRON && format != LP_SAE_FMT_SAELENS)
        return lp_fail(LP_ERR_ARG,
                       "%s: a kron SAE has a factorised encoder that the sparsify layout cannot hold; save it "
                       "as saelens (loupe's kron layout)",
                       dir);
    if (F <= 0 || d <= 0)
        return lp_fail(LP_ERR_ARG, "%s: SAE sizes d_in=%d d_sae=%d are not valid", dir, c->d_in, c->d_sae);
    if (!(sc > 0) || !isfinite(sc)) return lp_fail(LP_ERR_ARG, "%s: norm_scale %g must be positive", dir, sc);
    if (!lp_all_finite(s->params, s->n_params) || !isfinite(s->theta))
        return lp_fail(LP_ERR_NUM, "%s: the SAE has non-finite parameters; not saving", dir);

    int rc = LP_OK;
    const int saelens = format == LP_SAE_FMT_SAELENS;
    const int has_thr = c->arch == LP_SAE_JUMPRELU || c->arch == LP_SAE_BATCHTOPK || c->arch == LP_SAE_BOOST;
    const int kron = c->arch == LP_SAE_KRON;
    const int64_t E = (int64_t)s->p_size[LP_SAE_B_ENC]; /* encoder rows (kron: h(m+n)) */
    float *b_enc = lp_malloc((size_t)E * sizeof(float));
    float *wq = kron ? lp_malloc((size_t)E * (size_t)d * sizeof(float)) : NULL;
    float *b_dec = lp_malloc((size_t)d * sizeof(float));
    float *thr = has_thr ? lp_malloc((size_t)F * sizeof(float)) : NULL;
    float *wt = saelens && !kron ? lp_malloc((size_t)F * (size_t)d * sizeof(float)) : NULL;
    lp_st_writer *w = lp_st_writer_new();
    cJSON *cfg = NULL;
    char *json = NULL, *wpath = NULL, *cpath = NULL, *wtmp = NULL, *ctmp = NULL, *other = NULL;
    int wrote_w = 0, wrote_c = 0;
    if (!b_enc || !b_dec || (has_thr && !thr) || (saelens && !kron && !wt) || (kron && !wq) || !w) {
        rc = lp_fail_prefix(LP_ERR_NOMEM, dir);
        goto done;
    }

    /* fold norm_scale */
    for (int64_t f = 0; f < E; f++) b_enc[f] = s->p[LP_SAE_B_ENC][f] / sc;
    for (int64_t i = 0; i < d; i++) b_dec[i] = s->p[LP_SAE_B_DEC][i] / sc;
    if (c->arch == LP_SAE_JUMPRELU || c->arch == LP_SAE_BOOST) {
        double ls = log((double)sc);
        for (int64_t f = 0; f < F; f++) thr[f] = exp_f((float)((double)s->p[LP_SAE_LOG_THRESHOLD][f] - ls));
    } else if (c->arch == LP_SAE_BATCHTOPK) {
        float th = s->theta / sc;
        for (int64_t f = 0; f < F; f++) thr[f] = th;
    }

    const int64_t sh_Fd[2] = {F, d}, sh_dF[2] = {d, F}, sh_F[1] = {F}, sh_d[1] = {d};
    if (kron) {
        /* W_p [d, h·m], b_p [h·m], W_q [d, h·n], b_q [h·n] (SAELens-style
         * transposed); mAND is homogeneous, the product is not: see sae_format.h */
        const int64_t hm = (int64_t)c->kron_heads * c->kron_m, hn = (int64_t)c->kron_heads * c->kron_n;
        const float *we = s->p[LP_SAE_W_ENC];
        const float pw = c->kron_and == LP_KRON_PRODUCT ? sc : 1.0f;
        if (c->kron_and == LP_KRON_PRODUCT)
            for (int64_t e = 0; e < hm; e++) b_enc[e] = s->p[LP_SAE_B_ENC][e];
        for (int64_t e = 0; e < E; e++)
            for (int64_t i = 0; i < d; i++) {
                int64_t col = e < hm ? e : e - hm, ncol = e < hm ? hm : hn, off = e < hm ? 0 : hm * d;
                wq[off + i * ncol + col] = we[e * d + i] * (e < hm ? pw : 1.0f);
            }
        const int64_t sh_p[2] = {d, hm}, sh_q[2] = {d, hn}, sh_hm[1] = {hm}, sh_hn[1] = {hn};
        if ((rc = lp_st_writer_add(w, "W_p", LP_DT_F32, 2, sh_p, wq)) ||
            (rc = lp_st_writer_add(w, "b_p", LP_DT_F32, 1, sh_hm, b_enc)) ||
            (rc = lp_st_writer_add(w, "W_q", LP_DT_F32, 2, sh_q, wq + hm * d)) ||
            (rc = lp_st_writer_add(w, "b_q", LP_DT_F32, 1, sh_hn, b_enc + hm)))
            goto fail_prefix;
    } else if (saelens) {
        const float *we = s->p[LP_SAE_W_ENC];
        for (int64_t f = 0; f < F; f++)
            for (int64_t i = 0; i < d; i++) wt[i * F + f] = we[f * d + i];
        if ((rc = lp_st_writer_add(w, "W_enc", LP_DT_F32, 2, sh_dF, wt)) ||
            (rc = lp_st_writer_add(w, "b_enc", LP_DT_F32, 1, sh_F, b_enc)))
            goto fail_prefix;
    } else {
        if ((rc = lp_st_writer_add(w, "encoder.weight", LP_DT_F32, 2, sh_Fd, s->p[LP_SAE_W_ENC])) ||
            (rc = lp_st_writer_add(w, "encoder.bias", LP_DT_F32, 1, sh_F, b_enc)))
            goto fail_prefix;
    }
    if ((rc = lp_st_writer_add(w, "W_dec", LP_DT_F32, 2, sh_Fd, s->p[LP_SAE_W_DEC])) ||
        (rc = lp_st_writer_add(w, "b_dec", LP_DT_F32, 1, sh_d, b_dec)) ||
        (has_thr && (rc = lp_st_writer_add(w, "threshold", LP_DT_F32, 1, sh_F, thr))) ||
        (rc = lp_st_writer_meta(w, "format", "pt")) ||
        (rc = lp_st_writer_meta(w, "loupe_arch", lp_sae_arch_name(c->arch))))
        goto fail_prefix;

    jb b = {1};
    cfg = saelens ? saelens_cfg(&b, s) : sparsify_cfg(&b, s);
    json = b.ok ? cJSON_Print(cfg) : NULL;
    if (!json) {
        rc = lp_fail(LP_ERR_NOMEM, "%s: out of memory building cfg.json", dir);
        goto done;
    }
    size_t jlen = strlen(json);

    wpath = lp_path_join(dir, k_weights[format]);
    cpath = lp_path_join(dir, CFG_NAME);
    other = lp_path_join(dir, k_weights[!format]);
    wtmp = wpath ? tmp_name(wpath) : NULL;
    ctmp = cpath ? tmp_name(cpath) : NULL;
    if (!wpath || !cpath || !other || !wtmp || !ctmp) {
        rc = lp_fail_prefix(LP_ERR_NOMEM, dir);
        goto done;
    }
    if (lp_file_exists(other)) {
        rc = lp_fail(LP_ERR_ARG, "%s: already holds a %s SAE (%s); save a %s SAE elsewhere", dir,
                     lp_sae_format_name(!format), k_weights[!format], lp_sae_format_name(format));
        goto done;
    }
    /* a non-file where a file goes would fail the rename half-way: refuse first */
    const char *const targets[2] = {wpath, cpath};
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        if (stat(targets[i], &sb) == 0 && !S_ISREG(sb.st_mode)) {
            rc = lp_fail(LP_ERR_IO, "%s: exists and is not a regular file", targets[i]);
            goto done;
        }
    }
    if ((rc = lp_mkdirs(dir))) goto done;
    /* both files complete (fsynced) under temporary names, then two renames */
    if ((rc = lp_st_writer_write(w, wtmp))) goto done;
    wrote_w = 1;
    /* cfg.json ends with a newline, as text files do */
    json[jlen] = '\n';
    rc = lp_write_file_atomic(ctmp, json, jlen + 1);
    json[jlen] = 0;
    if (rc) goto done;
    wrote_c = 1;
    if (rename(wtmp, wpath) != 0) {
        rc = lp_fail(LP_ERR_IO, "%s: cannot rename into place (%s)", wpath, strerror(errno));
        goto done;
    }
    wrote_w = 0;
    if (rename(ctmp, cpath) != 0) {
        rc = lp_fail(LP_ERR_IO, "%s: cannot rename into place (%s)", cpath, strerror(errno));
        goto done;
    }
    wrote_c = 0;
    goto done;

fail_prefix:
    lp_fail_prefix(rc, dir);
done:
    if (wrote_w) remove(wtmp);
    if (wrote_c) remove(ctmp);
    free(wpath);
    free(cpath);
    free(other);
    free(wtmp);
    free(ctmp);
    free(json);
    cJSON_Delete(cfg);
    lp_st_writer_free(w);
    free(b_enc);
    free(wq);
    free(b_dec);
    free(thr);
    free(wt);
    return rc;
}

/* ---- load: cfg.json ------------------------------------------------------- */

typedef struct {
    const char *path; /* cfg.json path, for messages */
    int arch, d_in, d_sae, k;
    int apply_b_dec;    /* SAELens apply_b_dec_to_input */
    int rescale_by_dec; /* SAELens rescale_acts_by_decoder_norm */
    int has_loupe;
    int has_theta; /* loupe.theta present (batchtopk) */
} load_cfg;

static int json_int(const char *path, const cJSON *o, const char *key, int64_t lo, int64_t hi, int required,
                    int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" is missing", path, key);
        return LP_OK;
    }
    double x = v->valuedouble;
    if (!cJSON_IsNumber(v) || x != floor(x) || x < (double)lo || x > (double)hi)
        return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" must be an integer in %lld..%lld", path, key, (long long)lo,
                       (long long)hi);
    *out = (int64_t)x;
    return LP_OK;
}

static int json_float(const char *path, const cJSON *o, const char *key, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return LP_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" must be a finite number", path, key);
    *out = (float)v->valuedouble;
    return LP_OK;
}

/* 1/0 for a boolean, `def` when absent or null; -1 (error recorded) otherwise */
static int json_bool(const char *path, const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    lp_fail(LP_ERR_FORMAT, "%s: \"%s\" must be true or false", path, key);
    return -1;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int copy_str(const char *path, const char *key, char *dst, size_t cap, const char *v) {
    if (!v) return LP_OK;
    if (strlen(v) >= cap)
        return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" is longer than %zu bytes", path, key, cap - 1);
    memcpy(dst, v, strlen(v) + 1);
    return LP_OK;
}

static int parse_loupe_object(const char *path, const cJSON *o, lp_sae_config *c, load_cfg *lc,
                              float *theta) {
    int rc;
    int64_t v = 0;
    const char *arch = json_str(o, "arch");
    if (!arch) return lp_fail(LP_ERR_FORMAT, "%s: \"loupe\".\"arch\" is missing", path);
    if (lp_sae_arch_parse(arch, &lc->arch)) return lp_fail_prefix(LP_ERR_FORMAT, path);
    if ((rc = json_int(path, o, "version", 1, LOUPE_FORMAT_VERSION, 0, &v))) return rc;
    v = lc->k; /* absent: keep what the layout said */
    if ((rc = json_int(path, o, "k", 0, INT32_MAX, 0, &v))) return rc;
    lc->k = (int)v;
    v = c->k_aux;
    if ((rc = json_int(path, o, "k_aux", -1, INT32_MAX, 0, &v))) return rc;
    c->k_aux = (int)v;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    if (cJSON_IsString(seed)) {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(seed->valuestring, &end, 10);
        if (!*seed->valuestring || *end || errno)
            return lp_fail(LP_ERR_FORMAT, "%s: \"seed\" is not a number", path);
        c->seed = u;
    } else {
        v = 0;
        if ((rc = json_int(path, o, "seed", 0, (int64_t)1 << 53, 0, &v))) return rc;
        c->seed = (uint64_t)v;
    }
    v = 0;
    if ((rc = json_int(path, o, "tokens_trained", 0, (int64_t)1 << 53, 0, &v))) return rc;
    c->tokens_trained = v;
    v = 0;
    if ((rc = json_int(path, o, "dataset_bytes", 0, (int64_t)1 << 53, 0, &v))) return rc;
    c->dataset_bytes = v;
    v = 0;
    if ((rc = json_int(path, o, "context_size", 0, (int64_t)1 << 30, 0, &v))) return rc;
    c->context_size = (int)v;
    v = c->dead_tokens;
    if ((rc = json_int(path, o, "dead_tokens", 0, (int64_t)1 << 53, 0, &v))) return rc;
    c->dead_tokens = v;
    if ((rc = copy_str(path, "model", c->model, sizeof c->model, json_str(o, "model"))) ||
        (rc = copy_str(path, "hook", c->hook, sizeof c->hook, json_str(o, "hook"))) ||
        (rc = copy_str(path, "dataset", c->dataset, sizeof c->dataset, json_str(o, "dataset"))) ||
        (rc = json_float(path, o, "l1_coeff", &c->l1_coeff)) ||
        (rc = json_float(path, o, "l0_coeff", &c->l0_coeff)) ||
        (rc = json_float(path, o, "jump_bandwidth", &c->jump_bandwidth)) ||
        (rc = json_float(path, o, "jump_init_threshold", &c->jump_init_threshold)) ||
        (rc = json_float(path, o, "theta_momentum", &c->theta_momentum)) ||
        (rc = json_float(path, o, "aux_coeff", &c->aux_coeff)))
        return rc;
    int nd = json_bool(path, o, "normalize_decoder", c->normalize_decoder);
    if (nd < 0) return LP_ERR_FORMAT;
    c->normalize_decoder = nd;
    int ndb = json_bool(path, o, "no_decoder_bias", 0);
    if (ndb < 0) return LP_ERR_FORMAT;
    c->no_decoder_bias = ndb;
    if (lc->arch == LP_SAE_KRON) { /* the factorisation F = heads·m·n */
        const char *names[3] = {"kron_heads", "kron_m", "kron_n"};
        int *dst[3] = {&c->kron_heads, &c->kron_m, &c->kron_n};
        for (int i = 0; i < 3; i++) {
            v = 0;
            if ((rc = json_int(path, o, names[i], 1, 1 << 26, 1, &v))) return rc;
            *dst[i] = (int)v;
        }
        const char *a = json_str(o, "kron_and");
        if (a && strcmp(a, "mand") != 0 && strcmp(a, "product") != 0)
            return lp_fail(LP_ERR_FORMAT, "%s: \"kron_and\" must be \"mand\" or \"product\"", path);
        c->kron_and = a && strcmp(a, "product") == 0 ? LP_KRON_PRODUCT : LP_KRON_MAND;
    }
    if (lc->arch == LP_SAE_BOOST) {
        v = 0;
        if ((rc = json_int(path, o, "base_latents", 1, 1 << 26, 1, &v))) return rc;
        c->base_latents = (int)v;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "theta")) {
        if ((rc = json_float(path, o, "theta", theta))) return rc;
        lc->has_theta = 1;
    }
    lc->has_loupe = 1;
    return LP_OK;
}

/* string from the top level, else from a SAELens 6 "metadata" object */
static const char *sl_str(const cJSON *root, const char *key) {
    const char *v = json_str(root, key);
    return v ? v : json_str(cJSON_GetObjectItemCaseSensitive(root, "metadata"), key);
}

static int parse_saelens_cfg(const char *path, const cJSON *r, lp_sae_config *c, load_cfg *lc) {
    int rc;
    int64_t v = 0;
    if ((rc = json_int(path, r, "d_in", 1, 1 << 20, 1, &v))) return rc;
    lc->d_in = (int)v;
    if ((rc = json_int(path, r, "d_sae", 1, 1 << 26, 1, &v))) return rc;
    lc->d_sae = (int)v;
    const char *arch = json_str(r, "architecture");
    if (!arch) arch = "standard";
    const char *act = json_str(r, "activation_fn_str");
    if (!act) act = json_str(r, "activation_fn");
    if (!act) act = "relu";
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(r, "activation_fn_kwargs");
    int64_t k = -1;
    if (cJSON_IsObject(kw) && (rc = json_int(path, kw, "k", 0, INT32_MAX, 0, &k))) return rc;
    if ((rc = json_int(path, r, "k", 0, INT32_MAX, 0, &k))) return rc;
    if (strcmp(arch, "standard") == 0 && strcmp(act, "relu") == 0)
        lc->arch = LP_SAE_RELU;
    else if (strcmp(arch, "topk") == 0 || (strcmp(arch, "standard") == 0 && strcmp(act, "topk") == 0))
        lc->arch = LP_SAE_TOPK;
    else if (strcmp(arch, "jumprelu") == 0)
        lc->arch = LP_SAE_JUMPRELU;
    else if (strcmp(arch, "kron") == 0) /* loupe's KronSAE layout (the loupe object has the rest) */
        lc->arch = LP_SAE_KRON;
    else if (strcmp(arch, "standard") == 0)
        return lp_fail(LP_ERR_FORMAT, "%s: activation function '%s' is not supported (relu, topk)", path,
                       act);
    else
        return lp_fail(LP_ERR_FORMAT,
                       "%s: SAELens architecture '%s' is not supported (standard, topk, jumprelu)", path,
                       arch);
    if (lc->arch == LP_SAE_TOPK || lc->arch == LP_SAE_KRON) {
        if (k < 0) return lp_fail(LP_ERR_FORMAT, "%s: topk SAE without \"k\"", path);
        lc->k = (int)k;
    }
    lc->apply_b_dec = json_bool(path, r, "apply_b_dec_to_input", 1);
    lc->rescale_by_dec = json_bool(path, r, "rescale_acts_by_decoder_norm", 0);
    int fsf = json_bool(path, r, "finetuning_scaling_factor", 0);
    if (lc->apply_b_dec < 0 || lc->rescale_by_dec < 0 || fsf < 0) return LP_ERR_FORMAT;
    if (fsf) return lp_fail(LP_ERR_FORMAT, "%s: finetuning_scaling_factor is not supported", path);
    const cJSON *na = cJSON_GetObjectItemCaseSensitive(r, "normalize_activations");
    if (cJSON_IsString(na) && strcmp(na->valuestring, "none") != 0 &&
        strcmp(na->valuestring, "expected_average_only_in") != 0)
        /* expected_average_only_in is an identity at inference in SAELens too */
        return lp_fail(LP_ERR_FORMAT, "%s: normalize_activations '%s' is not supported (none)", path,
                       na->valuestring);
    const char *hb = sl_str(r, "hook_name");
    if (!hb) hb = sl_str(r, "hook_point");
    if ((rc = copy_str(path, "model_name", c->model, sizeof c->model, sl_str(r, "model_name"))) ||
        (rc = copy_str(path, "hook_name", c->hook, sizeof c->hook, hb)) ||
        (rc = copy_str(path, "dataset_path", c->dataset, sizeof c->dataset, sl_str(r, "dataset_path"))))
        return rc;
    v = 0;
    if (json_int(path, r, "training_tokens", 0, (int64_t)1 << 53, 0, &v) == LP_OK) c->tokens_trained = v;
    int nd = json_bool(path, r, "normalize_sae_decoder", 0);
    c->normalize_decoder = nd > 0;
    return LP_OK;
}

static int parse_sparsify_cfg(const char *path, const cJSON *r, lp_sae_config *c, load_cfg *lc) {
    int rc;
    int64_t d = 0, nl = 0, ef = 32, k = 32; /* sparsify's defaults */
    if ((rc = json_int(path, r, "d_in", 1, 1 << 20, 1, &d)) ||
        (rc = json_int(path, r, "num_latents", 0, 1 << 26, 0, &nl)) ||
        (rc = json_int(path, r, "expansion_factor", 0, 1 << 26, 0, &ef)) ||
        (rc = json_int(path, r, "k", 0, INT32_MAX, 0, &k)))
        return rc;
    int64_t F = nl > 0 ? nl : d * ef;
    if (F <= 0 || F > (1 << 26))
        return lp_fail(LP_ERR_FORMAT, "%s: num_latents/expansion_factor give %lld latents", path,
                       (long long)F);
    lc->d_in = (int)d;
    lc->d_sae = (int)F;
    lc->k = (int)k;
    lc->arch = LP_SAE_TOPK;
    static const char *const k_refuse[] = {"skip_connection", "transcode", "embed_skip", "gram_lookup"};
    for (size_t i = 0; i < sizeof k_refuse / sizeof *k_refuse; i++) {
        int b = json_bool(path, r, k_refuse[i], 0);
        if (b < 0) return LP_ERR_FORMAT;
        if (b) return lp_fail(LP_ERR_FORMAT, "%s: %s=true is not supported", path, k_refuse[i]);
    }
    int nd = json_bool(path, r, "normalize_decoder", 1);
    if (nd < 0) return LP_ERR_FORMAT;
    c->normalize_decoder = nd;
    return LP_OK;
}

/* ---- load: tensors ---------------------------------------------------------- */

static int read_tensor(const lp_safetensors *st, const char *name, int ndim, const int64_t *shape,
                       float *out) {
    const lp_st_tensor *t;
    int rc = lp_st_expect(st, name, ndim, shape, &t);
    if (rc) return rc;
    if ((rc = lp_st_read_f32(st, t, out))) return rc;
    if (!lp_all_finite(out, (size_t)t->numel))
        return lp_fail(LP_ERR_NUM, "%s: tensor %s has NaN or infinite values", st->path, name);
    return LP_OK;
}

static int check_names(const lp_safetensors *st, const char *const *allowed, int n) {
    for (int i = 0; i < st->n; i++) {
        int ok = 0;
        for (int j = 0; j < n && !ok; j++) ok = strcmp(st->t[i].name, allowed[j]) == 0;
        if (!ok)
            return lp_fail(LP_ERR_FORMAT, "%s: unexpected tensor '%s' (not supported)", st->path,
                           st->t[i].name);
    }
    return LP_OK;
}

int lp_sae_detect_format(const char *dir, int *format) {
    char *a = lp_path_join(dir, SAELENS_WEIGHTS), *b = lp_path_join(dir, SPARSIFY_WEIGHTS);
    int rc = LP_OK;
    if (!a || !b)
        rc = lp_fail_prefix(LP_ERR_NOMEM, dir);
    else if (!lp_is_dir(dir))
        rc = lp_fail(LP_ERR_IO, "%s: %s", dir, lp_file_exists(dir) ? "not a directory" : "no such directory");
    else {
        int ha = lp_file_exists(a), hb = lp_file_exists(b);
        if (ha && hb)
            rc = lp_fail(LP_ERR_FORMAT, "%s: holds both %s and %s; which SAE is meant is ambiguous", dir,
                         SAELENS_WEIGHTS, SPARSIFY_WEIGHTS);
        else if (ha)
            *format = LP_SAE_FMT_SAELENS;
        else if (hb)
            *format = LP_SAE_FMT_SPARSIFY;
        else
            rc = lp_fail(LP_ERR_IO, "%s: no %s (SAELens) or %s (sparsify)", dir, SAELENS_WEIGHTS,
                         SPARSIFY_WEIGHTS);
    }
    free(a);
    free(b);
    return rc;
}

int lp_sae_load(lp_sae **out, const char *dir, int expect_d_in) {
    *out = NULL;
    int format = 0, rc = lp_sae_detect_format(dir, &format);
    if (rc) return rc;
    const int saelens = format == LP_SAE_FMT_SAELENS;
    char *cpath = lp_path_join(dir, CFG_NAME), *wpath = lp_path_join(dir, k_weights[format]);
    char *text = NULL;
    cJSON *root = NULL;
    lp_safetensors st;
    memset(&st, 0, sizeof st);
    lp_sae *s = NULL;
    float *tmp = NULL;
    if (!cpath || !wpath) {
        rc = lp_fail_prefix(LP_ERR_NOMEM, dir);
        goto done;
    }
    if (!lp_file_exists(cpath)) {
        rc = lp_fail(LP_ERR_IO, "%s: missing (an SAE directory needs cfg.json next to %s)", cpath,
                     k_weights[format]);
        goto done;
    }
    if ((rc = lp_read_file(cpath, &text, NULL))) goto done;
    root = cJSON_Parse(text);
    if (!cJSON_IsObject(root)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: not a JSON object", cpath);
        goto done;
    }

    lp_sae_config c;
    lp_sae_config_default(&c);
    c.normalize_decoder = 1;
    load_cfg lc = {.path = cpath, .k = c.k, .apply_b_dec = 1};
    if ((rc = saelens ? parse_saelens_cfg(cpath, root, &c, &lc) : parse_sparsify_cfg(cpath, root, &c, &lc)))
        goto done;
    const int file_arch = lc.arch;
    float theta = 0;
    const cJSON *lo = cJSON_GetObjectItemCaseSensitive(root, "loupe");
    if (lo && !cJSON_IsObject(lo)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: \"loupe\" must be an object", cpath);
        goto done;
    }
    if (lo && (rc = parse_loupe_object(cpath, lo, &c, &lc, &theta))) goto done;
    if (lc.has_loupe) {
        /* the layout's own description must agree with loupe's */
        /* what the layout itself calls each loupe arch (format.c saelens_cfg / sparsify_cfg) */
        int as_topk = lc.arch == LP_SAE_TOPK || lc.arch == LP_SAE_HIERTOPK;
        int want = !saelens                                                ? LP_SAE_TOPK
                   : lc.arch == LP_SAE_BATCHTOPK || lc.arch == LP_SAE_BOOST ? LP_SAE_JUMPRELU
                   : as_topk                                               ? LP_SAE_TOPK
                                                                           : lc.arch;
        const char *act = json_str(root, "activation");
        int ok = saelens ? file_arch == want
                         : (act ? strcmp(act, as_topk ? "topk" : lp_sae_arch_name(lc.arch)) == 0 : as_topk);
        if (!ok) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: loupe arch '%s' disagrees with the file's architecture", cpath,
                         lp_sae_arch_name(lc.arch));
            goto done;
        }
        if (saelens && (as_topk || lc.arch == LP_SAE_KRON)) {
            int64_t k = -1;
            json_int(cpath, root, "k", 0, INT32_MAX, 0, &k);
            if (k >= 0 && k != lc.k) {
                rc = lp_fail(LP_ERR_FORMAT, "%s: \"k\" (%lld) disagrees with loupe k (%d)", cpath,
                             (long long)k, lc.k);
                goto done;
            }
        }
    } else if (!saelens) {
        const char *act = json_str(root, "activation");
        if (act && strcmp(act, "topk") != 0) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: sparsify activation '%s' is not supported (topk)", cpath, act);
            goto done;
        }
    }
    if ((lc.arch == LP_SAE_TOPK || lc.arch == LP_SAE_BATCHTOPK || lc.arch == LP_SAE_HIERTOPK ||
         lc.arch == LP_SAE_KRON) &&
        (lc.k < 1 || lc.k > lc.d_sae)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: k=%d must be in 1..d_sae (%d)", cpath, lc.k, lc.d_sae);
        goto done;
    }
    if (expect_d_in > 0 && lc.d_in != expect_d_in) {
        rc = lp_fail(LP_ERR_ARG, "%s: the SAE has d_in=%d, expected d=%d", dir, lc.d_in, expect_d_in);
        goto done;
    }
    c.arch = lc.arch;
    c.d_in = lc.d_in;
    c.d_sae = lc.d_sae;
    c.k = lc.k;
    c.norm_scale = 1.0f;
    if ((rc = lp_sae_new(&s, &c))) {
        lp_fail_prefix(rc, cpath);
        goto done;
    }

    /* tensors */
    if ((rc = lp_st_open(&st, wpath))) goto done;
    const int64_t F = lc.d_sae, d = lc.d_in;
    const int64_t sh_Fd[2] = {F, d}, sh_dF[2] = {d, F}, sh_F[1] = {F}, sh_d[1] = {d};
    const int thr_arch = lc.arch == LP_SAE_JUMPRELU || lc.arch == LP_SAE_BATCHTOPK || lc.arch == LP_SAE_BOOST;
    if (lc.arch == LP_SAE_KRON) {
        static const char *const names[] = {"W_p", "b_p", "W_q", "b_q", "W_dec", "b_dec"};
        if ((rc = check_names(&st, names, 6))) goto done;
        const int64_t hm = (int64_t)c.kron_heads * c.kron_m, hn = (int64_t)c.kron_heads * c.kron_n;
        const int64_t sh_p[2] = {d, hm}, sh_q[2] = {d, hn}, sh_hm[1] = {hm}, sh_hn[1] = {hn};
        if (!(tmp = lp_malloc((size_t)(hm > hn ? hm : hn) * (size_t)d * sizeof(float)))) {
            rc = lp_fail_prefix(LP_ERR_NOMEM, wpath);
            goto done;
        }
        float *we = s->p[LP_SAE_W_ENC], *be = s->p[LP_SAE_B_ENC];
        if ((rc = read_tensor(&st, "W_p", 2, sh_p, tmp))) goto done;
        for (int64_t i = 0; i < d; i++)
            for (int64_t e = 0; e < hm; e++) we[e * d + i] = tmp[i * hm + e];
        if ((rc = read_tensor(&st, "W_q", 2, sh_q, tmp))) goto done;
        for (int64_t i = 0; i < d; i++)
            for (int64_t e = 0; e < hn; e++) we[(hm + e) * d + i] = tmp[i * hn + e];
        if ((rc = read_tensor(&st, "b_p", 1, sh_hm, be)) || (rc = read_tensor(&st, "b_q", 1, sh_hn, be + hm)))
            goto done;
    } else if (saelens) {
        static const char *const names[] = {"W_enc",          "b_enc",     "W_dec",        "b_dec",
                                            "scaling_factor", "threshold", "log_threshold"};
        if ((rc = check_names(&st, names, thr_arch ? 7 : 5))) goto done;
        if (!(tmp = lp_malloc((size_t)F * (size_t)d * sizeof(float)))) {
            rc = lp_fail_prefix(LP_ERR_NOMEM, wpath);
            goto done;
        }
        if ((rc = read_tensor(&st, "W_enc", 2, sh_dF, tmp))) goto done;
        float *we = s->p[LP_SAE_W_ENC];
        for (int64_t i = 0; i < d; i++)
            for (int64_t f = 0; f < F; f++) we[f * d + i] = tmp[i * F + f];
        if ((rc = read_tensor(&st, "b_enc", 1, sh_F, s->p[LP_SAE_B_ENC]))) goto done;
        const lp_st_tensor *sf = lp_st_find(&st, "scaling_factor");
        if (sf) {
            if ((rc = read_tensor(&st, "scaling_factor", 1, sh_F, tmp))) goto done;
            for (int64_t f = 0; f < F; f++)
                if (tmp[f] != 1.0f) {
                    rc = lp_fail(LP_ERR_FORMAT, "%s: a scaling_factor other than 1 is not supported", wpath);
                    goto done;
                }
        }
    } else {
        static const char *const names[] = {"encoder.weight", "encoder.bias", "W_dec", "b_dec", "threshold"};
        if ((rc = check_names(&st, names, thr_arch && lc.has_loupe ? 5 : 4))) goto done;
        if ((rc = read_tensor(&st, "encoder.weight", 2, sh_Fd, s->p[LP_SAE_W_ENC])) ||
            (rc = read_tensor(&st, "encoder.bias", 1, sh_F, s->p[LP_SAE_B_ENC])))
            goto done;
    }
    if ((rc = read_tensor(&st, "W_dec", 2, sh_Fd, s->p[LP_SAE_W_DEC])) ||
        (rc = read_tensor(&st, "b_dec", 1, sh_d, s->p[LP_SAE_B_DEC])))
        goto done;
    if (thr_arch) {
        float *thr = lp_malloc((size_t)F * sizeof(float));
        if (!thr) {
            rc = lp_fail_prefix(LP_ERR_NOMEM, wpath);
            goto done;
        }
        int from_log = saelens && !lp_st_find(&st, "threshold") && lp_st_find(&st, "log_threshold");
        rc = read_tensor(&st, from_log ? "log_threshold" : "threshold", 1, sh_F, thr);
        if (!rc && (lc.arch == LP_SAE_JUMPRELU || lc.arch == LP_SAE_BOOST)) {
            float *lt = s->p[LP_SAE_LOG_THRESHOLD];
            for (int64_t f = 0; f < F; f++) lt[f] = from_log ? thr[f] : log_threshold_of(thr[f]);
        } else if (!rc) {
            for (int64_t f = 1; f < F && !rc; f++)
                if (thr[f] != thr[0])
                    rc = lp_fail(
                        LP_ERR_FORMAT,
                        "%s: a batchtopk SAE needs one threshold for all latents (latent %lld differs)",
                        wpath, (long long)f);
            s->theta = thr[0];
            if (!rc && lc.has_theta && theta != thr[0])
                rc = lp_fail(LP_ERR_FORMAT, "%s: loupe theta %g disagrees with the threshold tensor %g",
                             cpath, theta, thr[0]);
        }
        free(thr);
        if (rc) goto done;
    }

    /* foreign SAELens options folded into loupe's forward */
    if (saelens && !lc.apply_b_dec) {
        const float *we = s->p[LP_SAE_W_ENC], *bd = s->p[LP_SAE_B_DEC];
        float *be = s->p[LP_SAE_B_ENC];
        for (int64_t f = 0; f < F; f++) {
            double acc = be[f];
            for (int64_t i = 0; i < d; i++) acc += (double)we[f * d + i] * bd[i];
            be[f] = (float)acc;
        }
    }
    if (saelens && lc.rescale_by_dec && lc.arch == LP_SAE_TOPK) {
        float *we = s->p[LP_SAE_W_ENC], *wd = s->p[LP_SAE_W_DEC], *be = s->p[LP_SAE_B_ENC];
        for (int64_t f = 0; f < F; f++) {
            double ss = 0;
            for (int64_t i = 0; i < d; i++) ss += (double)wd[f * d + i] * wd[f * d + i];
            double n = sqrt(ss);
            if (!(n > 0)) continue;
            for (int64_t i = 0; i < d; i++) {
                we[f * d + i] = (float)(we[f * d + i] * n);
                wd[f * d + i] = (float)(wd[f * d + i] / n);
            }
            be[f] = (float)(be[f] * n);
        }
    }
    if (!lp_all_finite(s->params, s->n_params)) {
        rc = lp_fail(LP_ERR_NUM, "%s: folding the file's options gave non-finite weights", wpath);
        goto done;
    }
    *out = s;
    s = NULL;
done:
    lp_sae_free(s);
    lp_st_close(&st);
    cJSON_Delete(root);
    free(text);
    free(tmp);
    free(cpath);
    free(wpath);
    return rc;
}

/* ---- describe --------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t n, len;
} sb;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(sb *b, const char *fmt, ...) {
    if (b->n == 0) return;
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->n ? b->n - b->len : 0;
    int w = room ? vsnprintf(b->buf + b->len, room, fmt, ap) : 0;
    va_end(ap);
    if (w > 0) b->len += (size_t)w < room ? (size_t)w : room - 1;
}

static void fmt_count(char *out, size_t n, int64_t v) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i && digits[i] != '-' && (len - i) % 3 == 0 && digits[i - 1] != '-') out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
}

int lp_sae_describe(const lp_sae *s, char *buf, size_t n) {
    if (!buf || n == 0) return lp_fail(LP_ERR_ARG, "lp_sae_describe: no buffer");
    buf[0] = 0;
    sb b = {buf, n, 0};
    const lp_sae_config *c = &s->cfg;
    const int F = c->d_sae, d = c->d_in;
    sb_printf(&b, "arch:       %s", lp_sae_arch_name(c->arch));
    if (c->arch == LP_SAE_TOPK || c->arch == LP_SAE_BATCHTOPK) sb_printf(&b, " (k=%d)", c->k);
    if (c->arch == LP_SAE_HIERTOPK) sb_printf(&b, " (K=%d; any k <= K at inference)", c->k);
    if (c->arch == LP_SAE_KRON)
        sb_printf(&b, " (k=%d; heads=%d m=%d n=%d, %s; encoder rows %lld)", c->k, c->kron_heads, c->kron_m, c->kron_n,
                  c->kron_and == LP_KRON_PRODUCT ? "plain product" : "mAND",
                  (long long)c->kron_heads * (c->kron_m + c->kron_n));
    if (c->arch == LP_SAE_BOOST)
        sb_printf(&b, " (base latents 0..%d, residual latents %d..%d)", c->base_latents - 1, c->base_latents, F - 1);
    sb_printf(&b, "\nd_in:       %d\nd_sae:      %d (%.4gx)\n", d, F, (double)F / d);
    sb_printf(&b, "model:      %s\nhook:       %s\ndataset:    %s\n", c->model[0] ? c->model : "(unknown)",
              c->hook[0] ? c->hook : "(unknown)", c->dataset[0] ? c->dataset : "(unknown)");
    char tok[48];
    fmt_count(tok, sizeof tok, c->tokens_trained);
    sb_printf(&b, "tokens:     %s\n", tok);
    double lo = INFINITY, hi = 0, sum = 0;
    const float *wd = s->p[LP_SAE_W_DEC];
    for (int64_t f = 0; f < F; f++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)wd[f * d + i] * wd[f * d + i];
        double nrm = sqrt(ss);
        lo = nrm < lo ? nrm : lo;
        hi = nrm > hi ? nrm : hi;
        sum += nrm;
    }
    sb_printf(&b, "dec norms:  min %.6g  mean %.6g  max %.6g\n", lo, sum / F, hi);
    if (c->arch == LP_SAE_JUMPRELU || c->arch == LP_SAE_BOOST) {
        double tlo = INFINITY, thi = 0;
        for (int64_t f = 0; f < F; f++) {
            double t = exp((double)s->p[LP_SAE_LOG_THRESHOLD][f]);
            tlo = t < tlo ? t : tlo;
            thi = t > thi ? t : thi;
        }
        sb_printf(&b, "threshold:  min %.6g  max %.6g\n", tlo / c->norm_scale, thi / c->norm_scale);
    } else if (c->arch == LP_SAE_BATCHTOPK) {
        sb_printf(&b, "threshold:  %.6g (inference)\n", (double)s->theta / c->norm_scale);
    }
    if (c->norm_scale != 1.0f) sb_printf(&b, "norm_scale: %.6g (folded in when saved)\n", c->norm_scale);
    return LP_OK;
}
