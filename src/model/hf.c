/* hf.c — Hugging Face Llama directories: config.json + model.safetensors
 * (or a sharded model.safetensors.index.json), read and written.
 *
 * HF stores q_proj/k_proj rows per head in "rotate-half" order (the first
 * hs/2 rows hold the even RoPE components, the next hs/2 the odd ones);
 * loupe computes RoPE on interleaved pairs like llama2.c, so rows are
 * un-permuted on load and permuted back on save:
 *   loupe row h*hs + 2i + j  <->  HF row h*hs + j*hs/2 + i   (j in {0,1}). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/model.h"
#include "loupe/safetensors.h"

static int json_int(const cJSON *o, const char *key, int def, int required, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lp_fail(LP_ERR_FORMAT, "%s: missing \"%s\"", path, key);
        *out = def;
        return LP_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" is not an integer", path, key);
    *out = (int)v->valuedouble;
    return LP_OK;
}

static double json_num(const cJSON *o, const char *key, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* Row permutation between HF rotate-half and interleaved layouts, for a
 * [heads*hs, in] matrix. to_hf = 1: interleaved -> HF. */
static void permute_rows(float *dst, const float *src, int heads, int hs, int in, int to_hf) {
    int half = hs / 2;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++) {
                size_t il = (size_t)h * hs + 2 * i + j, hf = (size_t)h * hs + j * half + i;
                size_t d = to_hf ? hf : il, s = to_hf ? il : hf;
                memcpy(dst + d * in, src + s * in, (size_t)in * sizeof(float));
            }
}

typedef struct {
    int n;
    lp_safetensors st[64];
} st_set;

static const lp_st_tensor *set_find(st_set *s, const char *name, lp_safetensors **owner) {
    for (int i = 0; i < s->n; i++) {
        const lp_st_tensor *t = lp_st_find(&s->st[i], name);
        if (t) {
            *owner = &s->st[i];
            return t;
        }
    }
    return NULL;
}

/* Read tensor `name` of shape [rows, cols] into dst (float32). */
static int load_2d(st_set *s, const char *dir, const char *name, int64_t rows, int64_t cols, float *dst) {
    lp_safetensors *o;
    const lp_st_tensor *t = set_find(s, name, &o);
    if (!t) return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s' not found", dir, name);
    int64_t shape[2] = {rows, cols};
    int nd = cols > 0 ? 2 : 1;
    if (lp_st_expect(o, name, nd, shape, &t)) return LP_ERR_FORMAT;
    return lp_st_read_f32(o, t, dst);
}

static int open_weights(st_set *s, const char *dir) {
    char *single = lp_path_join(dir, "model.safetensors");
    char *index = lp_path_join(dir, "model.safetensors.index.json");
    int rc = LP_OK;
    s->n = 0;
    if (!single || !index) rc = LP_ERR_NOMEM;
    else if (lp_file_exists(single)) {
        rc = lp_st_open(&s->st[0], single);
        if (!rc) s->n = 1;
    } else if (lp_file_exists(index)) {
        char *txt = NULL;
        rc = lp_read_file(index, &txt, NULL);
        cJSON *j = rc ? NULL : cJSON_Parse(txt);
        free(txt);
        const cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
        if (!rc && !cJSON_IsObject(wm)) rc = lp_fail(LP_ERR_FORMAT, "%s: no weight_map object", index);
        const cJSON *e;
        cJSON_ArrayForEach(e, wm) {
            if (rc) break;
            if (!cJSON_IsString(e) || strchr(e->valuestring, '/')) {
                rc = lp_fail(LP_ERR_FORMAT, "%s: bad shard name for '%s'", index, e->string);
                break;
            }
            int seen = 0;
            for (int i = 0; i < s->n; i++)
                if (strcmp(strrchr(s->st[i].path, '/') + 1, e->valuestring) == 0) seen = 1;
            if (seen) continue;
            if (s->n == 64) {
                rc = lp_fail(LP_ERR_FORMAT, "%s: more than 64 shards", index);
                break;
            }
            char *p = lp_path_join(dir, e->valuestring);
            rc = p ? lp_st_open(&s->st[s->n], p) : LP_ERR_NOMEM;
            free(p);
            if (!rc) s->n++;
        }
        cJSON_Delete(j);
    } else
        rc = lp_fail(LP_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(single);
    free(index);
    if (rc)
        for (int i = 0; i < s->n; i++) lp_st_close(&s->st[i]);
    return rc;
}

int lp_model_load_hf(lp_model **out, const char *dir) {
    char *cfgpath = lp_path_join(dir, "config.json");
    if (!cfgpath) return LP_ERR_NOMEM;
    char *txt = NULL;
    int rc = lp_read_file(cfgpath, &txt, NULL);
    if (rc) {
        free(cfgpath);
        return rc;
    }
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        rc = lp_fail(LP_ERR_FORMAT, "%s: not a JSON object", cfgpath);
        free(cfgpath);
        return rc;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "llama") != 0 &&
        strcmp(mt->valuestring, "mistral") != 0) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: model_type '%s' is not a Llama-family model", cfgpath,
                     mt->valuestring);
        cJSON_Delete(j);
        free(cfgpath);
        return rc;
    }
    lp_config c = {0};
    int heads = 0;
    rc = json_int(j, "hidden_size", 0, 1, cfgpath, &c.dim);
    if (!rc) rc = json_int(j, "intermediate_size", 0, 1, cfgpath, &c.hidden_dim);
    if (!rc) rc = json_int(j, "num_hidden_layers", 0, 1, cfgpath, &c.n_layers);
    if (!rc) rc = json_int(j, "num_attention_heads", 0, 1, cfgpath, &heads);
    c.n_heads = heads;
    if (!rc) rc = json_int(j, "num_key_value_heads", heads, 0, cfgpath, &c.n_kv_heads);
    if (!rc) rc = json_int(j, "vocab_size", 0, 1, cfgpath, &c.vocab_size);
    if (!rc) rc = json_int(j, "max_position_embeddings", 2048, 0, cfgpath, &c.seq_len);
    c.norm_eps = (float)json_num(j, "rms_norm_eps", 1e-6);
    c.rope_theta = (float)json_num(j, "rope_theta", 10000.0);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings");
    cJSON_Delete(j);
    free(cfgpath);
    if (rc) return rc;
    st_set *s = lp_calloc(1, sizeof *s);
    if (!s) return LP_ERR_NOMEM;
    if ((rc = open_weights(s, dir))) {
        free(s);
        return rc;
    }
    lp_safetensors *o;
    c.shared_classifier = set_find(s, "lm_head.weight", &o) == NULL;
    (void)tie;
    lp_model *m = NULL;
    if ((rc = lp_model_new(&m, &c, dir, "hf"))) goto done;
    const lp_config *mc = &m->cfg;
    int D = mc->dim, F = mc->hidden_dim, hs = mc->head_size, qd = mc->n_heads * hs,
        kvd = mc->n_kv_heads * hs;
    float *tmp = lp_malloc((size_t)(qd > kvd ? qd : kvd) * D * sizeof(float));
    if (!tmp) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    char name[256];
    rc = load_2d(s, dir, "model.embed_tokens.weight", mc->vocab_size, D, m->p[LP_P_EMB]);
    for (int l = 0; l < mc->n_layers && !rc; l++) {
#define LAYER(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, l), name)
        rc = load_2d(s, dir, LAYER("input_layernorm.weight"), D, 0, m->p[LP_P_RMS_ATT] + (size_t)l * D);
        if (!rc) rc = load_2d(s, dir, LAYER("self_attn.q_proj.weight"), qd, D, tmp);
        if (!rc) permute_rows(m->p[LP_P_WQ] + (size_t)l * qd * D, tmp, mc->n_heads, hs, D, 0);
        if (!rc) rc = load_2d(s, dir, LAYER("self_attn.k_proj.weight"), kvd, D, tmp);
        if (!rc) permute_rows(m->p[LP_P_WK] + (size_t)l * kvd * D, tmp, mc->n_kv_heads, hs, D, 0);
        if (!rc) rc = load_2d(s, dir, LAYER("self_attn.v_proj.weight"), kvd, D, m->p[LP_P_WV] + (size_t)l * kvd * D);
        if (!rc) rc = load_2d(s, dir, LAYER("self_attn.o_proj.weight"), D, qd, m->p[LP_P_WO] + (size_t)l * D * qd);
        if (!rc) rc = load_2d(s, dir, LAYER("post_attention_layernorm.weight"), D, 0, m->p[LP_P_RMS_FFN] + (size_t)l * D);
        if (!rc) rc = load_2d(s, dir, LAYER("mlp.gate_proj.weight"), F, D, m->p[LP_P_W1] + (size_t)l * F * D);
        if (!rc) rc = load_2d(s, dir, LAYER("mlp.down_proj.weight"), D, F, m->p[LP_P_W2] + (size_t)l * D * F);
        if (!rc) rc = load_2d(s, dir, LAYER("mlp.up_proj.weight"), F, D, m->p[LP_P_W3] + (size_t)l * F * D);
#undef LAYER
    }
    if (!rc) rc = load_2d(s, dir, "model.norm.weight", D, 0, m->p[LP_P_RMS_FINAL]);
    if (!rc && !mc->shared_classifier)
        rc = load_2d(s, dir, "lm_head.weight", mc->vocab_size, D, m->p[LP_P_WCLS]);
    if (!rc && !lp_all_finite(m->params, m->n_params))
        rc = lp_fail(LP_ERR_NUM, "%s: weights contain NaN or Inf", dir);
    lp_free(tmp);
done:
    for (int i = 0; i < s->n; i++) lp_st_close(&s->st[i]);
    free(s);
    if (rc) {
        lp_model_free(m);
        return rc;
    }
    *out = m;
    return LP_OK;
}

int lp_model_save_hf(const lp_model *m, const char *dir) {
    const lp_config *c = &m->cfg;
    int rc = lp_mkdirs(dir);
    if (rc) return rc;
    int D = c->dim, F = c->hidden_dim, hs = c->head_size, qd = c->n_heads * hs, kvd = c->n_kv_heads * hs;
    /* permuted copies of q/k for every layer (the writer references data) */
    float *qk = lp_malloc(((size_t)qd + kvd) * D * c->n_layers * sizeof(float));
    lp_st_writer *w = lp_st_writer_new();
    if (!qk || !w) {
        lp_free(qk);
        lp_st_writer_free(w);
        return LP_ERR_NOMEM;
    }
    char name[256];
    int64_t sh[2];
#define ADD(nm, ptr, r, cc)                                                                 \
    do {                                                                                   \
        sh[0] = (r), sh[1] = (cc);                                                         \
        if (!rc) rc = lp_st_writer_add(w, nm, LP_DT_F32, (cc) > 0 ? 2 : 1, sh, ptr);        \
    } while (0)
    ADD("model.embed_tokens.weight", m->p[LP_P_EMB], c->vocab_size, D);
    for (int l = 0; l < c->n_layers; l++) {
        float *q = qk + (size_t)l * (qd + kvd) * D, *k = q + (size_t)qd * D;
        permute_rows(q, m->p[LP_P_WQ] + (size_t)l * qd * D, c->n_heads, hs, D, 1);
        permute_rows(k, m->p[LP_P_WK] + (size_t)l * kvd * D, c->n_kv_heads, hs, D, 1);
#define NM(fmt) (snprintf(name, sizeof name, "model.layers.%d." fmt, l), name)
        ADD(NM("input_layernorm.weight"), m->p[LP_P_RMS_ATT] + (size_t)l * D, D, 0);
        ADD(NM("self_attn.q_proj.weight"), q, qd, D);
        ADD(NM("self_attn.k_proj.weight"), k, kvd, D);
        ADD(NM("self_attn.v_proj.weight"), m->p[LP_P_WV] + (size_t)l * kvd * D, kvd, D);
        ADD(NM("self_attn.o_proj.weight"), m->p[LP_P_WO] + (size_t)l * D * qd, D, qd);
        ADD(NM("post_attention_layernorm.weight"), m->p[LP_P_RMS_FFN] + (size_t)l * D, D, 0);
        ADD(NM("mlp.gate_proj.weight"), m->p[LP_P_W1] + (size_t)l * F * D, F, D);
        ADD(NM("mlp.down_proj.weight"), m->p[LP_P_W2] + (size_t)l * D * F, D, F);
        ADD(NM("mlp.up_proj.weight"), m->p[LP_P_W3] + (size_t)l * F * D, F, D);
#undef NM
    }
    ADD("model.norm.weight", m->p[LP_P_RMS_FINAL], D, 0);
    if (!c->shared_classifier) ADD("lm_head.weight", m->p[LP_P_WCLS], c->vocab_size, D);
#undef ADD
    if (!rc) rc = lp_st_writer_meta(w, "format", "pt");
    char *wpath = lp_path_join(dir, "model.safetensors");
    if (!rc) rc = wpath ? lp_st_writer_write(w, wpath) : LP_ERR_NOMEM;
    free(wpath);
    lp_st_writer_free(w);
    lp_free(qk);
    if (rc) return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddNumberToObject(j, "hidden_size", D);
    cJSON_AddNumberToObject(j, "intermediate_size", F);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->seq_len);
    cJSON_AddNumberToObject(j, "rms_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(j, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->shared_classifier);
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "bos_token_id", 1);
    cJSON_AddNumberToObject(j, "eos_token_id", 2);
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    char *cpath = lp_path_join(dir, "config.json");
    rc = txt && cpath ? lp_write_file_atomic(cpath, txt, strlen(txt)) : LP_ERR_NOMEM;
    free(txt);
    free(cpath);
    return rc;
}
