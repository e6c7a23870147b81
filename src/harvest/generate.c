/* generate.c — the generation harvest (loupe/harvest.h): prompts from a
 * corpus, sampled continuations, then one batched forward over the finished
 * sequences (padded to ctx at the end; the model is causal, so padding never
 * changes the stored positions) with capture hooks. A batch of prompts (all
 * of the same length) is continued together, one forward per step, each
 * sequence with its own RNG stream (seed + sequence index). Each stored row gets a
 * segment label, "prompt" or "generated", written next to the store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/corpus.h"
#include "loupe/harvest.h"
#include "loupe/segments.h"
#include "loupe/store.h"

typedef struct {
    float *buf; /* [B*T, D] kept rows */
    const uint8_t *keep;
} gcapture;

static int gcapture_hook(float *act, const lp_hook_ctx *ctx, void *user) {
    gcapture *c = user;
    int64_t n = 0, N = (int64_t)ctx->B * ctx->T;
    for (int64_t i = 0; i < N; i++)
        if (c->keep[i]) memcpy(c->buf + (n++) * ctx->D, act + i * ctx->D, (size_t)ctx->D * sizeof(float));
    return LP_OK;
}

/* Grow a byte buffer to hold at least n bytes. */
static int grow_u8(uint8_t **b, int64_t *cap, int64_t n) {
    if (n <= *cap) return LP_OK;
    int64_t c = *cap ? *cap : 65536;
    while (c < n) c *= 2;
    uint8_t *p = realloc(*b, (size_t)c);
    if (!p) return lp_fail(LP_ERR_NOMEM, "out of memory for %lld segment labels", (long long)n);
    *b = p;
    *cap = c;
    return LP_OK;
}

int lp_harvest_generate(const lp_model *m, const lp_tokenizer *tok, const lp_harvest_gen_opts *go,
                        const char *out_dir, lp_harvest_gen_result *res) {
    memset(res, 0, sizeof *res);
    const lp_harvest_opts *o = &go->base;
    const int B = o->batch, T = o->ctx, D = m->cfg.dim, H = o->n_hooks, P = go->prompt_tokens;
    if (H <= 0 || H > LP_MAX_HOOKS) return lp_fail(LP_ERR_ARG, "harvest: need 1..%d hooks", LP_MAX_HOOKS);
    if (o->tokens <= 0) return lp_fail(LP_ERR_ARG, "harvest: --tokens must be positive");
    if (B <= 0) return lp_fail(LP_ERR_ARG, "harvest: --batch must be positive");
    if (T < 2 || T > m->cfg.seq_len)
        return lp_fail(LP_ERR_ARG, "harvest: --ctx %d must be in 2..%d", T, m->cfg.seq_len);
    if (P < 1 || P >= T - 1)
        return lp_fail(LP_ERR_ARG, "harvest: --prompt-tokens %d must be in 1..%d (ctx - 2)", P, T - 2);
    if (!(go->temperature >= 0) || !(go->top_p > 0 && go->top_p <= 1))
        return lp_fail(LP_ERR_ARG, "harvest: --temperature must be >= 0 and --top-p in (0, 1]");
    lp_hook_point pts[LP_MAX_HOOKS];
    int dims[LP_MAX_HOOKS];
    char msha[65] = "", dsha[65] = "", tsha[65] = "";
    int rc = lp_harvest_prepare(m, tok, o, pts, dims, msha, dsha, tsha);
    if (rc) return rc;

    const int64_t N = (int64_t)B * T;
    lp_runner *rg = NULL, *rb = NULL;
    lp_store_writer *sw = NULL;
    lp_corpus corp;
    int corp_open = 0, seg_written = 0;
    int *tokens = NULL, *ids = NULL, *gen = NULL, *glen = NULL, *step = NULL;
    uint8_t *alive = NULL;
    float *logits = NULL;
    lp_rng *rngs = NULL;
    const int V = m->cfg.vocab_size;
    int32_t *stok = NULL, *sdoc = NULL, *spos = NULL;
    uint8_t *keep = NULL, *segs = NULL, *bseg = NULL;
    int64_t segcap = 0;
    size_t idcap = 0;
    char *doc = NULL;
    float *bufs[LP_MAX_HOOKS] = {0};
    gcapture caps[LP_MAX_HOOKS];
    if ((rc = lp_runner_new(&rg, m, B, T)) || (rc = lp_runner_new(&rb, m, B, T))) goto done;
    tokens = lp_malloc((size_t)N * sizeof *tokens);
    gen = lp_malloc((size_t)N * sizeof *gen);
    glen = lp_malloc((size_t)B * sizeof *glen);
    step = lp_malloc((size_t)B * sizeof *step);
    alive = lp_malloc((size_t)B);
    rngs = lp_malloc((size_t)B * sizeof *rngs);
    logits = lp_malloc((size_t)B * V * sizeof *logits);
    stok = lp_malloc((size_t)N * sizeof *stok);
    sdoc = lp_malloc((size_t)N * sizeof *sdoc);
    spos = lp_malloc((size_t)N * sizeof *spos);
    keep = lp_malloc((size_t)N);
    bseg = lp_malloc((size_t)N);
    if (!tokens || !gen || !glen || !step || !alive || !rngs || !logits || !stok || !sdoc || !spos || !keep || !bseg) {
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
        caps[h] = (gcapture){bufs[h], keep};
        lp_hooks_add(&hooks, pts[h], gcapture_hook, &caps[h]);
    }
    if ((rc = lp_corpus_open(&corp, o->data_path, o->skip_bytes))) goto done;
    corp_open = 1;
    lp_store_spec spec = {.model = o->model_path, .model_sha256 = msha[0] ? msha : NULL,
                          .data = o->data_path, .data_sha256 = dsha, .tokenizer = o->tokenizer_path,
                          .ctx = T, .dtype = o->dtype, .shard_rows = 65536, .n_hooks = H,
                          .hooks = o->hooks, .dims = dims};
    if ((rc = lp_store_create(&sw, out_dir, &spec))) goto done;
    lp_progress pg;
    lp_progress_init(&pg, (double)o->tokens, "tok");
    if (!o->progress) pg.enabled = 0;
    double t0 = lp_now();
    const int bos = lp_tokenizer_bos(tok), eos = lp_tokenizer_eos(tok);
    lp_sampler smp = {.temperature = go->temperature, .top_p = go->top_p, .seed = go->seed};
    int corpus_done = 0;
    while (res->base.rows < o->tokens && !corpus_done) {
        /* a batch of prompts (all 1 + P tokens long) ... */
        int nb = 0;
        int64_t n = 0, est = 0;
        while (nb < B && res->base.rows + est < o->tokens) {
            if ((rc = lp_corpus_next(&corp, &doc))) goto done;
            if (!doc) {
                corpus_done = 1;
                break;
            }
            size_t need = strlen(doc) + 3;
            if (need > idcap) {
                free(ids);
                idcap = need;
                if (!(ids = lp_malloc(idcap * sizeof *ids))) {
                    rc = LP_ERR_NOMEM;
                    goto done;
                }
            }
            int nid = 0;
            rc = lp_tokenizer_encode(tok, doc, 1, 0, ids, (int)(idcap > 0x7fffffff ? 0x7fffffff : idcap), &nid);
            free(doc);
            doc = NULL;
            if (rc) goto done;
            if (nid < 1 + P) continue; /* too short for a prompt */
            memcpy(tokens + (int64_t)nb * T, ids, (size_t)(1 + P) * sizeof *ids);
            nb++;
            est += T - 1;
        }
        if (nb == 0) break;
        /* ... continued together: one forward per step for the whole batch */
        for (int b = 0; b < nb; b++) {
            lp_rng_seed(&rngs[b], go->seed + (uint64_t)(res->sequences + b));
            glen[b] = 1 + P;
            alive[b] = 1;
        }
        for (int b = 0; b < nb; b++) /* prompts into one [nb, 1+P] block */
            memmove(gen + (int64_t)b * (1 + P), tokens + (int64_t)b * T, (size_t)(1 + P) * sizeof *gen);
        if ((rc = lp_forward(rg, gen, nb, 1 + P, 0, NULL, LP_LOGITS_LAST, logits))) goto done;
        for (int t = 1 + P; t < T; t++) {
            int any = 0;
            for (int b = 0; b < nb; b++) {
                int next = 0;
                if (alive[b]) {
                    next = lp_sample(&smp, &rngs[b], logits + (int64_t)b * V, V);
                    if (next == bos || next == eos) alive[b] = 0;
                    else {
                        tokens[(int64_t)b * T + t] = next;
                        glen[b] = t + 1;
                        any = 1;
                    }
                }
                step[b] = alive[b] ? next : 0;
            }
            if (!any || t + 1 >= T) break;
            if ((rc = lp_forward(rg, step, nb, 1, t, NULL, LP_LOGITS_LAST, logits))) goto done;
        }
        for (int b = 0; b < nb; b++) {
            int *row = tokens + (int64_t)b * T;
            for (int t = glen[b]; t < T; t++) row[t] = 0; /* padding after the end */
            for (int t = 0; t < T; t++) {
                int64_t i = (int64_t)b * T + t;
                keep[i] = t < glen[b] && row[t] != bos;
                if (keep[i]) {
                    stok[n] = row[t];
                    sdoc[n] = (int32_t)(res->sequences + b);
                    spos[n] = t;
                    bseg[n] = t <= P ? 0 : 1;
                    n++;
                }
            }
        }
        res->sequences += nb;
        if ((rc = lp_forward(rb, tokens, nb, T, 0, &hooks, LP_LOGITS_NONE, NULL))) goto done;
        int64_t take = n < o->tokens - res->base.rows ? n : o->tokens - res->base.rows;
        const float *acts[LP_MAX_HOOKS];
        for (int h = 0; h < H; h++) acts[h] = bufs[h];
        if ((rc = lp_store_append(sw, take, acts, stok, sdoc, spos))) goto done;
        if ((rc = grow_u8(&segs, &segcap, res->base.rows + take))) goto done;
        memcpy(segs + res->base.rows, bseg, (size_t)take);
        for (int64_t i = 0; i < take; i++) {
            if (bseg[i]) res->generated_rows++;
            else res->prompt_rows++;
        }
        res->base.rows += take;
        res->base.windows += nb;
        lp_progress_update(&pg, (double)res->base.rows, NULL);
    }
    lp_progress_finish(&pg);
    res->base.data_bytes = corp.doc_end;
    res->base.seconds = lp_now() - t0;
    if (res->base.rows == 0) {
        rc = lp_fail(LP_ERR_ARG, "%s: no document has more than %d tokens to use as a prompt", o->data_path, P);
        goto done;
    }
    char num[64];
    const char *names[2] = {"prompt", "generated"};
    if ((rc = lp_segments_write(out_dir, segs, res->base.rows, 2, names))) goto done;
    seg_written = 1;
    snprintf(num, sizeof num, "%lld", (long long)res->base.data_bytes);
    if (!rc) rc = lp_store_set_meta(sw, "data_bytes_consumed", num);
    if (!rc) rc = lp_store_set_meta(sw, "segments", "prompt,generated");
    if (!rc) rc = lp_store_set_meta(sw, "harvest", "generate");
    snprintf(num, sizeof num, "%d", P);
    if (!rc) rc = lp_store_set_meta(sw, "prompt_tokens", num);
    snprintf(num, sizeof num, "%g", go->temperature);
    if (!rc) rc = lp_store_set_meta(sw, "temperature", num);
    snprintf(num, sizeof num, "%g", go->top_p);
    if (!rc) rc = lp_store_set_meta(sw, "top_p", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)go->seed);
    if (!rc) rc = lp_store_set_meta(sw, "seed", num);
    snprintf(num, sizeof num, "%lld", (long long)res->sequences);
    if (!rc) rc = lp_store_set_meta(sw, "sequences", num);
    if (!rc && tsha[0]) rc = lp_store_set_meta(sw, "tokenizer_sha256", tsha);
    if (!rc) rc = lp_store_set_meta(sw, "bos_rows", "skipped");
    if (!rc) {
        rc = lp_store_close(sw);
        sw = NULL;
    }
done:
    if (rc && seg_written) lp_segments_remove(out_dir);
    if (sw) lp_store_abort(sw);
    if (corp_open) lp_corpus_close(&corp);
    lp_runner_free(rg);
    lp_runner_free(rb);
    free(doc);
    free(ids);
    free(tokens);
    free(gen);
    free(glen);
    free(step);
    free(alive);
    free(rngs);
    free(logits);
    free(stok);
    free(sdoc);
    free(spos);
    free(keep);
    free(bseg);
    free(segs);
    for (int h = 0; h < H; h++) lp_free(bufs[h]);
    return rc;
}
