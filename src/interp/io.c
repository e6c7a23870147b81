/* io.c — the feature run on disk (loupe/interp.h): RUN/features/NAME/ with
 * meta.json (written last: a directory without it is incomplete),
 * features.safetensors (every array, the sparse activation cache),
 * features.json (explanations), vocab.json and the SAE's metrics.jsonl.
 * The loader validates every shape and every index against the shapes, so
 * a server can trust what it loaded. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/interp.h"
#include "loupe/safetensors.h"

#define FR_FORMAT "loupe-features"

int lp_featrun_name_ok(const char *name) {
    if (!name || !*name || name[0] == '.' || strlen(name) > 64) return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return 0;
    return 1;
}

static int write_json(const char *dir, const char *file, cJSON *j) {
    char *txt = cJSON_PrintUnformatted(j);
    if (!txt) return lp_fail(LP_ERR_NOMEM, "%s/%s: out of memory", dir, file);
    char *p = lp_path_join(dir, file);
    int rc = p ? lp_write_file_atomic(p, txt, strlen(txt)) : LP_ERR_NOMEM;
    free(p);
    free(txt);
    return rc;
}

/* A float as JSON: null when not finite. */
static cJSON *jnum(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

int lp_featrun_save(const char *run_dir, const lp_featrun_info *info, const lp_features *f,
                    const lp_explanations *ex, char *const *vocab) {
    if (!lp_featrun_name_ok(info->name))
        return lp_fail(LP_ERR_ARG, "features: name '%s' must be 1-64 of [A-Za-z0-9._-], not starting with '.'",
                       info->name ? info->name : "(null)");
    char *fdir = lp_path_join(run_dir, "features"), *dir = fdir ? lp_path_join(fdir, info->name) : NULL;
    free(fdir);
    if (!dir) return LP_ERR_NOMEM;
    int rc = lp_mkdirs(dir);
    cJSON *meta = NULL, *fj = NULL, *vj = NULL;
    lp_st_writer *w = NULL;
    char *stp = NULL;
    if (rc) goto done;
    const int64_t F = f->F, E = f->E, W = f->W, S = f->S, H = f->H, LK = f->LK, V = f->V;
    w = lp_st_writer_new();
    if (!w) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    const int64_t sF[1] = {F}, sFS[2] = {F, S}, sFH[2] = {F, H}, sFE[2] = {F, E}, sFEW[3] = {F, E, W},
                  sFL[2] = {F, LK}, sV[1] = {V}, sS[1] = {S};
    rc = lp_st_writer_add(w, "fires", LP_DT_I64, 1, sF, f->fires);
    if (!rc) rc = lp_st_writer_add(w, "seg_fires", LP_DT_I64, 2, sFS, f->seg_fires);
    if (!rc) rc = lp_st_writer_add(w, "sum_act", LP_DT_F64, 1, sF, f->sum_act);
    if (!rc) rc = lp_st_writer_add(w, "max_act", LP_DT_F32, 1, sF, f->max_act);
    if (!rc) rc = lp_st_writer_add(w, "hist", LP_DT_I64, 2, sFH, f->hist);
    if (!rc) rc = lp_st_writer_add(w, "ex_row", LP_DT_I64, 2, sFE, f->ex_row);
    if (!rc) rc = lp_st_writer_add(w, "ex_val", LP_DT_F32, 2, sFE, f->ex_val);
    if (!rc) rc = lp_st_writer_add(w, "ctx_tok", LP_DT_I32, 3, sFEW, f->ctx_tok);
    if (!rc) rc = lp_st_writer_add(w, "ctx_act", LP_DT_F32, 3, sFEW, f->ctx_act);
    if (!rc) rc = lp_st_writer_add(w, "ctx_seg", LP_DT_U8, 3, sFEW, f->ctx_seg);
    if (!rc) rc = lp_st_writer_add(w, "lens_pos_id", LP_DT_I32, 2, sFL, LK ? f->lens_pos_id : NULL);
    if (!rc) rc = lp_st_writer_add(w, "lens_neg_id", LP_DT_I32, 2, sFL, LK ? f->lens_neg_id : NULL);
    if (!rc) rc = lp_st_writer_add(w, "lens_pos", LP_DT_F32, 2, sFL, LK ? f->lens_pos : NULL);
    if (!rc) rc = lp_st_writer_add(w, "lens_neg", LP_DT_F32, 2, sFL, LK ? f->lens_neg : NULL);
    if (!rc) rc = lp_st_writer_add(w, "tok_count", LP_DT_I64, 1, sV, f->tok_count);
    if (!rc) rc = lp_st_writer_add(w, "seg_rows", LP_DT_I64, 1, sS, f->seg_rows);
    if (!rc) rc = lp_st_writer_add(w, "seg_share", LP_DT_F32, 2, sFS, f->seg_share);
    if (!rc) rc = lp_st_writer_add(w, "tag", LP_DT_I32, 1, sF, f->tag);
    if (!rc) rc = lp_st_writer_add(w, "auroc", LP_DT_F32, 1, sF, ex->auroc);
    if (!rc) rc = lp_st_writer_add(w, "n_pos", LP_DT_I32, 1, sF, ex->n_pos);
    if (!rc) rc = lp_st_writer_add(w, "n_neg", LP_DT_I32, 1, sF, ex->n_neg);
    if (!rc) rc = lp_st_writer_meta(w, "format", FR_FORMAT);
    if (!rc && !(stp = lp_path_join(dir, "features.safetensors"))) rc = LP_ERR_NOMEM;
    if (!rc) rc = lp_st_writer_write(w, stp);
    if (rc) goto done;

    /* explanations */
    fj = cJSON_CreateArray();
    for (int i = 0; fj && i < f->F; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(fj, o);
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddItemToObject(o, "text", ex->text[i] ? cJSON_CreateString(ex->text[i]) : cJSON_CreateNull());
        cJSON *tl = cJSON_AddArrayToObject(o, "tokens");
        if (ex->tokens[i]) {
            const char *p = ex->tokens[i];
            while (*p) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t)(nl - p) : strlen(p);
                char buf[256];
                snprintf(buf, sizeof buf, "%.*s", (int)(n < 255 ? n : 255), p);
                cJSON_AddItemToArray(tl, cJSON_CreateString(buf));
                p += n + (nl ? 1 : 0);
            }
        }
        cJSON_AddItemToObject(o, "auroc", jnum(ex->auroc[i]));
        cJSON_AddNumberToObject(o, "n_pos", ex->n_pos[i]);
        cJSON_AddNumberToObject(o, "n_neg", ex->n_neg[i]);
    }
    vj = cJSON_CreateArray();
    for (int i = 0; vj && i < f->V; i++) cJSON_AddItemToArray(vj, cJSON_CreateString(vocab[i]));
    if (!fj || !vj) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    if ((rc = write_json(dir, "features.json", fj)) || (rc = write_json(dir, "vocab.json", vj))) goto done;

    /* the training log, when the SAE directory has one */
    if (info->sae_path) {
        char *ml = lp_path_join(info->sae_path, "metrics.jsonl"), *txt = NULL;
        size_t len = 0;
        if (ml && lp_file_exists(ml) && !lp_read_file(ml, &txt, &len)) {
            char *dst = lp_path_join(dir, "metrics.jsonl");
            if (dst) rc = lp_write_file_atomic(dst, txt, len);
            free(dst);
        }
        free(ml);
        free(txt);
        if (rc) goto done;
    }

    /* meta.json: shapes, provenance, tag counts and AUROC by tag */
    meta = cJSON_CreateObject();
    if (!meta) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    cJSON_AddStringToObject(meta, "format", FR_FORMAT);
    cJSON_AddNumberToObject(meta, "version", 1);
    cJSON_AddStringToObject(meta, "name", info->name);
    cJSON_AddStringToObject(meta, "sae", info->sae_path ? info->sae_path : "");
    cJSON_AddStringToObject(meta, "store", info->store_path ? info->store_path : "");
    cJSON_AddStringToObject(meta, "model", info->model_path ? info->model_path : "");
    cJSON_AddStringToObject(meta, "tokenizer", info->tokenizer_path ? info->tokenizer_path : "");
    cJSON_AddStringToObject(meta, "hook", info->hook ? info->hook : "");
    cJSON_AddStringToObject(meta, "arch", info->arch ? info->arch : "");
    cJSON_AddNumberToObject(meta, "k", info->k);
    cJSON_AddNumberToObject(meta, "layer", info->layer);
    cJSON_AddStringToObject(meta, "explainer", ex->explainer);
    cJSON_AddNumberToObject(meta, "d_in", f->d);
    cJSON_AddNumberToObject(meta, "d_sae", f->F);
    cJSON_AddNumberToObject(meta, "vocab", f->V);
    cJSON_AddNumberToObject(meta, "rows", (double)f->rows);
    cJSON_AddNumberToObject(meta, "top_n", f->N);
    cJSON_AddNumberToObject(meta, "n_quant", f->Q);
    cJSON_AddNumberToObject(meta, "n_intervals", f->I);
    cJSON_AddNumberToObject(meta, "n_neg", f->M);
    cJSON_AddNumberToObject(meta, "window", f->W);
    cJSON_AddNumberToObject(meta, "left", f->left);
    cJSON_AddNumberToObject(meta, "hist_bins", f->H);
    cJSON_AddNumberToObject(meta, "lens_k", f->LK);
    cJSON *sn = cJSON_AddArrayToObject(meta, "segments");
    for (int s = 0; s < f->S; s++) cJSON_AddItemToArray(sn, cJSON_CreateString(f->seg_names[s]));
    cJSON *tc = cJSON_AddObjectToObject(meta, "tag_counts"), *ta = cJSON_AddObjectToObject(meta, "auroc_by_tag"),
          *tn = cJSON_AddObjectToObject(meta, "scored_by_tag");
    double all_sum = 0;
    int all_n = 0, alive = 0;
    for (int t = -2; t < f->S; t++) {
        const char *nm = t == LP_TAG_DEAD ? "dead" : t == LP_TAG_MIXED ? "mixed" : f->seg_names[t];
        int cnt = 0, ns = 0;
        double sum = 0;
        for (int i = 0; i < f->F; i++) {
            if (f->tag[i] != t) continue;
            cnt++;
            if (isfinite(ex->auroc[i])) {
                sum += ex->auroc[i];
                ns++;
            }
        }
        cJSON_AddNumberToObject(tc, nm, cnt);
        if (t == LP_TAG_DEAD) continue;
        alive += cnt;
        cJSON_AddItemToObject(ta, nm, jnum(ns ? sum / ns : NAN));
        cJSON_AddNumberToObject(tn, nm, ns);
        all_sum += sum;
        all_n += ns;
    }
    cJSON_AddItemToObject(ta, "all", jnum(all_n ? all_sum / all_n : NAN));
    cJSON_AddNumberToObject(tn, "all", all_n);
    cJSON_AddNumberToObject(meta, "alive", alive);
    cJSON_AddStringToObject(meta, "created_by", "loupe features");
    rc = write_json(dir, "meta.json", meta);
done:
    cJSON_Delete(meta);
    cJSON_Delete(fj);
    cJSON_Delete(vj);
    lp_st_writer_free(w);
    free(stp);
    free(dir);
    return rc;
}

/* ---- loading ---------------------------------------------------------- */
void lp_featrun_free(lp_featrun *r) {
    if (!r) return;
    free(r->name);
    free(r->dir);
    free(r->meta_text);
    free(r->hook);
    free(r->arch);
    free(r->sae_path);
    free(r->store_path);
    lp_vocab_free(r->vocab, r->f.V);
    lp_features_free(&r->f);
    lp_explanations_free(&r->ex);
    memset(r, 0, sizeof *r);
}

static int jint(const cJSON *o, const char *k, int lo, int hi, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi || v->valuedouble != (int)v->valuedouble)
        return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" missing or outside %d..%d", path, k, lo, hi);
    *out = (int)v->valuedouble;
    return LP_OK;
}

static char *jstrdup(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return lp_strdup(cJSON_IsString(v) ? v->valuestring : "");
}

/* Copy tensor `name` of dtype dt and this shape into a fresh buffer. */
static int take(const lp_safetensors *st, const char *name, lp_dtype dt, int nd, int64_t a, int64_t b, int64_t c,
                void **out) {
    const int64_t shape[3] = {a, b, c};
    const lp_st_tensor *t;
    int rc = lp_st_expect(st, name, nd, shape, &t);
    if (rc) return rc;
    if (t->dtype != dt)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor %s is %s, expected %s", st->path, name, lp_dtype_name(t->dtype),
                       lp_dtype_name(dt));
    void *p = lp_malloc(t->nbytes ? t->nbytes : 1);
    if (!p) return LP_ERR_NOMEM;
    if (t->nbytes) memcpy(p, lp_st_raw(st, t), t->nbytes);
    *out = p;
    return LP_OK;
}

int lp_featrun_load(lp_featrun *r, const char *run_dir, const char *name) {
    memset(r, 0, sizeof *r);
    if (!lp_featrun_name_ok(name)) return lp_fail(LP_ERR_ARG, "%s: bad feature-run name '%s'", run_dir, name);
    char *fdir = lp_path_join(run_dir, "features");
    r->dir = fdir ? lp_path_join(fdir, name) : NULL;
    free(fdir);
    r->name = lp_strdup(name);
    char *mp = r->dir ? lp_path_join(r->dir, "meta.json") : NULL;
    char *sp = r->dir ? lp_path_join(r->dir, "features.safetensors") : NULL;
    char *jp = r->dir ? lp_path_join(r->dir, "features.json") : NULL;
    char *vp = r->dir ? lp_path_join(r->dir, "vocab.json") : NULL;
    char *txt = NULL;
    cJSON *meta = NULL, *fj = NULL, *vj = NULL;
    lp_safetensors st;
    memset(&st, 0, sizeof st);
    int rc = (!r->name || !mp || !sp || !jp || !vp) ? LP_ERR_NOMEM : LP_OK;
    if (rc) goto done;
    if ((rc = lp_read_file(mp, &r->meta_text, NULL))) goto done;
    meta = cJSON_Parse(r->meta_text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(meta, "format");
    if (!cJSON_IsObject(meta) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, FR_FORMAT) != 0) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: not a loupe-features meta.json", mp);
        goto done;
    }
    lp_features *f = &r->f;
    int big = 1 << 30;
    if ((rc = jint(meta, "d_sae", 1, 1 << 24, &f->F, mp)) || (rc = jint(meta, "d_in", 1, 1 << 20, &f->d, mp)) ||
        (rc = jint(meta, "vocab", 1, 1 << 24, &f->V, mp)) || (rc = jint(meta, "top_n", 1, 1000, &f->N, mp)) ||
        (rc = jint(meta, "n_quant", 0, 1000, &f->Q, mp)) || (rc = jint(meta, "n_intervals", 1, 1000, &f->I, mp)) ||
        (rc = jint(meta, "n_neg", 0, 1000, &f->M, mp)) || (rc = jint(meta, "window", 1, 1001, &f->W, mp)) ||
        (rc = jint(meta, "left", 0, 1000, &f->left, mp)) || (rc = jint(meta, "hist_bins", 1, 100000, &f->H, mp)) ||
        (rc = jint(meta, "lens_k", 0, 1000, &f->LK, mp)) || (rc = jint(meta, "k", 0, big, &r->k, mp)) ||
        (rc = jint(meta, "layer", -1, 100000, &r->layer, mp)))
        goto done;
    if (f->left >= f->W) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: left %d outside a window of %d", mp, f->left, f->W);
        goto done;
    }
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(meta, "rows");
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(meta, "segments");
    if (!cJSON_IsNumber(rows) || rows->valuedouble < 1 || !cJSON_IsArray(segs) || cJSON_GetArraySize(segs) < 1 ||
        cJSON_GetArraySize(segs) > 255) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: rows or segments missing", mp);
        goto done;
    }
    f->rows = (int64_t)rows->valuedouble;
    f->S = cJSON_GetArraySize(segs);
    f->E = f->N + f->Q + f->M;
    r->hook = jstrdup(meta, "hook");
    r->arch = jstrdup(meta, "arch");
    r->sae_path = jstrdup(meta, "sae");
    r->store_path = jstrdup(meta, "store");
    f->seg_names = lp_calloc((size_t)f->S, sizeof *f->seg_names);
    if (!f->seg_names || !r->hook || !r->arch || !r->sae_path || !r->store_path) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int s = 0; s < f->S; s++) {
        const cJSON *e = cJSON_GetArrayItem(segs, s);
        if (!cJSON_IsString(e) || !(f->seg_names[s] = lp_strdup(e->valuestring))) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: segment name %d is not a string", mp, s);
            goto done;
        }
    }
    if ((int64_t)f->F * f->E * f->W > ((int64_t)1 << 31)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: shapes too large", mp);
        goto done;
    }
    if ((rc = lp_st_open(&st, sp))) goto done;
    const int64_t F = f->F, E = f->E, W = f->W, S = f->S, H = f->H, LK = f->LK, V = f->V;
    if ((rc = take(&st, "fires", LP_DT_I64, 1, F, 0, 0, (void **)&f->fires)) ||
        (rc = take(&st, "seg_fires", LP_DT_I64, 2, F, S, 0, (void **)&f->seg_fires)) ||
        (rc = take(&st, "sum_act", LP_DT_F64, 1, F, 0, 0, (void **)&f->sum_act)) ||
        (rc = take(&st, "max_act", LP_DT_F32, 1, F, 0, 0, (void **)&f->max_act)) ||
        (rc = take(&st, "hist", LP_DT_I64, 2, F, H, 0, (void **)&f->hist)) ||
        (rc = take(&st, "ex_row", LP_DT_I64, 2, F, E, 0, (void **)&f->ex_row)) ||
        (rc = take(&st, "ex_val", LP_DT_F32, 2, F, E, 0, (void **)&f->ex_val)) ||
        (rc = take(&st, "ctx_tok", LP_DT_I32, 3, F, E, W, (void **)&f->ctx_tok)) ||
        (rc = take(&st, "ctx_act", LP_DT_F32, 3, F, E, W, (void **)&f->ctx_act)) ||
        (rc = take(&st, "ctx_seg", LP_DT_U8, 3, F, E, W, (void **)&f->ctx_seg)) ||
        (rc = take(&st, "lens_pos_id", LP_DT_I32, 2, F, LK, 0, (void **)&f->lens_pos_id)) ||
        (rc = take(&st, "lens_neg_id", LP_DT_I32, 2, F, LK, 0, (void **)&f->lens_neg_id)) ||
        (rc = take(&st, "lens_pos", LP_DT_F32, 2, F, LK, 0, (void **)&f->lens_pos)) ||
        (rc = take(&st, "lens_neg", LP_DT_F32, 2, F, LK, 0, (void **)&f->lens_neg)) ||
        (rc = take(&st, "tok_count", LP_DT_I64, 1, V, 0, 0, (void **)&f->tok_count)) ||
        (rc = take(&st, "seg_rows", LP_DT_I64, 1, S, 0, 0, (void **)&f->seg_rows)) ||
        (rc = take(&st, "seg_share", LP_DT_F32, 2, F, S, 0, (void **)&f->seg_share)) ||
        (rc = take(&st, "tag", LP_DT_I32, 1, F, 0, 0, (void **)&f->tag)))
        goto done;
    /* indices must be inside the shapes: the dashboard indexes with them */
    for (int64_t i = 0; i < F * E * W; i++)
        if (f->ctx_tok[i] < -1 || f->ctx_tok[i] >= V || f->ctx_seg[i] >= S || !isfinite(f->ctx_act[i])) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: window entry %lld out of range", sp, (long long)i);
            goto done;
        }
    for (int64_t i = 0; i < F * LK; i++)
        if (f->lens_pos_id[i] < 0 || f->lens_pos_id[i] >= V || f->lens_neg_id[i] < 0 || f->lens_neg_id[i] >= V) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: logit-lens token out of range", sp);
            goto done;
        }
    for (int64_t i = 0; i < F; i++)
        if (f->tag[i] < LP_TAG_MIXED || f->tag[i] >= S || f->fires[i] < 0 || !isfinite(f->max_act[i]) ||
            f->max_act[i] < 0) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: feature %lld has a bad tag, count or maximum", sp, (long long)i);
            goto done;
        }
    for (int64_t i = 0; i < F * E; i++)
        if (f->ex_row[i] < -1 || f->ex_row[i] >= f->rows) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: example row out of range", sp);
            goto done;
        }
    if ((rc = lp_explanations_new(&r->ex, f->F))) goto done;
    float *au = NULL;
    int32_t *npos = NULL, *nneg = NULL;
    if ((rc = take(&st, "auroc", LP_DT_F32, 1, F, 0, 0, (void **)&au)) ||
        (rc = take(&st, "n_pos", LP_DT_I32, 1, F, 0, 0, (void **)&npos)) ||
        (rc = take(&st, "n_neg", LP_DT_I32, 1, F, 0, 0, (void **)&nneg))) {
        free(au);
        free(npos);
        goto done;
    }
    free(r->ex.auroc);
    free(r->ex.n_pos);
    free(r->ex.n_neg);
    r->ex.auroc = au;
    r->ex.n_pos = npos;
    r->ex.n_neg = nneg;
    {
        char *e = jstrdup(meta, "explainer");
        snprintf(r->ex.explainer, sizeof r->ex.explainer, "%s", e ? e : "");
        free(e);
    }
    /* explanations */
    if ((rc = lp_read_file(jp, &txt, NULL))) goto done;
    fj = cJSON_Parse(txt);
    free(txt);
    txt = NULL;
    if (!cJSON_IsArray(fj) || cJSON_GetArraySize(fj) != f->F) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: expected an array of %d explanations", jp, f->F);
        goto done;
    }
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, fj) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "text");
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(it, "tokens");
        if (cJSON_IsString(t) && !(r->ex.text[i] = lp_strdup(t->valuestring))) rc = LP_ERR_NOMEM;
        if (cJSON_IsArray(tl)) {
            size_t n = 1;
            const cJSON *x;
            cJSON_ArrayForEach(x, tl) if (cJSON_IsString(x)) n += strlen(x->valuestring) + 1;
            char *s = lp_malloc(n);
            if (!s) rc = LP_ERR_NOMEM;
            else {
                s[0] = 0;
                cJSON_ArrayForEach(x, tl) if (cJSON_IsString(x)) {
                    strcat(s, x->valuestring);
                    strcat(s, "\n");
                }
                r->ex.tokens[i] = s;
            }
        }
        i++;
    }
    if (rc) goto done;
    /* vocabulary */
    if ((rc = lp_read_file(vp, &txt, NULL))) goto done;
    vj = cJSON_Parse(txt);
    if (!cJSON_IsArray(vj) || cJSON_GetArraySize(vj) != f->V) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: expected an array of %d token strings", vp, f->V);
        goto done;
    }
    r->vocab = lp_calloc((size_t)f->V, sizeof *r->vocab);
    if (!r->vocab) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    i = 0;
    cJSON_ArrayForEach(it, vj) {
        if (!cJSON_IsString(it) || !(r->vocab[i] = lp_strdup(it->valuestring))) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: token %d is not a string", vp, i);
            goto done;
        }
        i++;
    }
done:
    lp_st_close(&st);
    cJSON_Delete(meta);
    cJSON_Delete(fj);
    cJSON_Delete(vj);
    free(txt);
    free(mp);
    free(sp);
    free(jp);
    free(vp);
    if (rc) lp_featrun_free(r);
    return rc;
}
