/* harvest.c — model → activation store. Windows of ctx tokens are run B at a
 * time; capture hooks copy the activations of the non-BOS positions into a
 * bounded buffer that is appended to the store after each batch, so memory
 * stays bounded whatever the number of tokens. */
#include "loupe/harvest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/store.h"
#include "loupe/windows.h"

typedef struct {
    float *buf;        /* [B*T, D] */
    const uint8_t *keep;
    int64_t *n_out;
} capture;

static int capture_hook(float *act, const lp_hook_ctx *ctx, void *user) {
    capture *c = user;
    int64_t n = 0, N = (int64_t)ctx->B * ctx->T;
    for (int64_t i = 0; i < N; i++)
        if (c->keep[i]) memcpy(c->buf + (n++) * ctx->D, act + i * ctx->D, (size_t)ctx->D * sizeof(float));
    *c->n_out = n;
    return LP_OK;
}

/* Checks shared by both harvests: tokenizer vocabulary, hook names (parsed
 * into pts, widths into dims, no duplicates), and the SHA-256 of the inputs. */
int lp_harvest_prepare(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_opts *o, lp_hook_point *pts,
                       int *dims, char msha[65], char dsha[65], char tsha[65]) {
    const int H = o->n_hooks, D = m->cfg.dim;
    if (lp_tokenizer_vocab_size(tok) != m->cfg.vocab_size)
        return lp_fail(LP_ERR_ARG, "harvest: tokenizer has %d tokens, model %d", lp_tokenizer_vocab_size(tok),
                       m->cfg.vocab_size);
    for (int h = 0; h < H; h++) {
        int rc = lp_hook_parse(o->hooks[h], m->cfg.n_layers, &pts[h]);
        if (rc) return rc;
        dims[h] = D;
        for (int g = 0; g < h; g++)
            if (strcmp(o->hooks[g], o->hooks[h]) == 0)
                return lp_fail(LP_ERR_ARG, "harvest: hook %s given twice", o->hooks[h]);
    }
    int rc = LP_OK;
    if (!lp_is_dir(o->model_path)) rc = lp_sha256_file(o->model_path, msha);
    if (!rc) rc = lp_sha256_file(o->data_path, dsha);
    if (!rc && o->tokenizer_path) rc = lp_sha256_file(o->tokenizer_path, tsha);
    if (rc) return rc;
    return LP_OK;
}

int lp_harvest(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_opts *o, const char *out_dir,
               lp_harvest_result *res) {
    memset(res, 0, sizeof *res);
    const int B = o->batch, T = o->ctx, D = m->cfg.dim, H = o->n_hooks;
    if (H <= 0 || H > LP_MAX_HOOKS) return lp_fail(LP_ERR_ARG, "harvest: need 1..%d hooks", LP_MAX_HOOKS);
    if (o->tokens <= 0) return lp_fail(LP_ERR_ARG, "harvest: --tokens must be positive");
    if (T > m->cfg.seq_len)
        return lp_fail(LP_ERR_ARG, "harvest: --ctx %d exceeds the model's context %d", T, m->cfg.seq_len);
    lp_hook_point pts[LP_MAX_HOOKS];
    int dims[LP_MAX_HOOKS];
    char msha[65] = "", dsha[65] = "", tsha[65] = "";
    int rc = lp_harvest_prepare(m, tok, o, pts, dims, msha, dsha, tsha);
    if (rc) return rc;

    lp_runner *r = NULL;
    lp_store_writer *sw = NULL;
    lp_windows win;
    int win_open = 0;
    int *tokens = NULL;
    int32_t *doc = NULL, *stok = NULL, *sdoc = NULL, *spos = NULL;
    uint8_t *keep = NULL;
    float *bufs[LP_MAX_HOOKS] = {0};
    int64_t nout[LP_MAX_HOOKS] = {0};
    capture caps[LP_MAX_HOOKS];
    const int64_t N = (int64_t)B * T;
    if ((rc = lp_runner_new(&r, m, B, T))) goto done;
    tokens = lp_malloc((size_t)N * sizeof *tokens);
    doc = lp_malloc((size_t)N * sizeof *doc);
    stok = lp_malloc((size_t)N * sizeof *stok);
    sdoc = lp_malloc((size_t)N * sizeof *sdoc);
    spos = lp_malloc((size_t)N * sizeof *spos);
    keep = lp_malloc((size_t)N);
    if (!tokens || !doc || !stok || !sdoc || !spos || !keep) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    lp_hooks hooks;
    lp_hooks_clear(&hooks);
    for (int h = 0; h < H; h++) {
        if (!(bufs[h] = lp_malloc_aligned((size_t)N * D * sizeof(float)))) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        caps[h] = (capture){bufs[h], keep, &nout[h]};
        lp_hooks_add(&hooks, pts[h], capture_hook, &caps[h]);
    }
    if ((rc = lp_windows_open(&win, o->data_path, o->skip_bytes, tok, T))) goto done;
    win_open = 1;
    lp_store_spec spec = {.model = o->model_path, .model_sha256 = msha[0] ? msha : NULL,
                          .data = o->data_path, .data_sha256 = dsha, .tokenizer = o->tokenizer_path,
                          .ctx = T, .dtype = o->dtype, .shard_rows = 65536, .n_hooks = H,
                          .hooks = o->hooks, .dims = dims};
    if ((rc = lp_store_create(&sw, out_dir, &spec))) goto done;
    lp_progress pg;
    lp_progress_init(&pg, (double)o->tokens, "tok");
    if (!o->progress) pg.enabled = 0;
    double t0 = lp_now();
    const int bos = lp_tokenizer_bos(tok);
    while (res->rows < o->tokens) {
        int nb = 0;
        if ((rc = lp_windows_next(&win, B, tokens, doc, &nb))) goto done;
        if (nb == 0) break;
        int64_t n = 0;
        for (int64_t i = 0; i < (int64_t)nb * T; i++) {
            keep[i] = o->keep_bos || tokens[i] != bos;
            if (keep[i]) {
                stok[n] = tokens[i];
                sdoc[n] = doc[i];
                spos[n] = (int32_t)(i % T);
                n++;
            }
        }
        if ((rc = lp_forward(r, tokens, nb, T, 0, &hooks, LP_LOGITS_NONE, NULL))) goto done;
        int64_t take = n < o->tokens - res->rows ? n : o->tokens - res->rows;
        const float *acts[LP_MAX_HOOKS];
        for (int h = 0; h < H; h++) acts[h] = bufs[h];
        if ((rc = lp_store_append(sw, take, acts, stok, sdoc, spos))) goto done;
        res->rows += take;
        res->windows += nb;
        lp_progress_update(&pg, (double)res->rows, NULL);
    }
    lp_progress_finish(&pg);
    res->data_bytes = lp_windows_bytes(&win);
    res->seconds = lp_now() - t0;
    char num[64];
    snprintf(num, sizeof num, "%lld", (long long)win.tokens);
    if (!rc) rc = lp_store_set_meta(sw, "tokens_consumed", num);
    snprintf(num, sizeof num, "%lld", (long long)res->data_bytes);
    if (!rc) rc = lp_store_set_meta(sw, "data_bytes_consumed", num);
    if (!rc && tsha[0]) rc = lp_store_set_meta(sw, "tokenizer_sha256", tsha);
    if (!rc) rc = lp_store_set_meta(sw, "skip_bytes", (snprintf(num, sizeof num, "%lld", (long long)o->skip_bytes), num));
    if (!rc) rc = lp_store_set_meta(sw, "bos_rows", o->keep_bos ? "kept" : "skipped");
    if (!rc && res->rows == 0) rc = lp_fail(LP_ERR_ARG, "%s: no complete %d-token window in the data", o->data_path, T);
    if (!rc) {
        rc = lp_store_close(sw);
        sw = NULL;
    }
done:
    if (sw) lp_store_abort(sw);
    if (win_open) lp_windows_close(&win);
    lp_runner_free(r);
    free(tokens);
    free(doc);
    free(stok);
    free(sdoc);
    free(spos);
    free(keep);
    for (int h = 0; h < H; h++) lp_free(bufs[h]);
    return rc;
}
