/* test_forward.c — the forward engine: hook names, replace-hooks, KV-cache
 * consistency (incremental decoding = full forward), batch independence,
 * llama2.c vs converted HF directory, bad model files. With --dump it
 * writes logits and every hook of a batch of real TinyStories windows for
 * the PyTorch comparison in tests/test_forward_torch.sh. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loupe/model.h"
#include "loupe/safetensors.h"
#include "loupe/windows.h"
#include "testutil.h"

typedef struct {
    float *dst;
} grab;

static int grab_hook(float *act, const lp_hook_ctx *c, void *u) {
    grab *g = u;
    memcpy(g->dst, act, (size_t)c->B * c->T * c->D * sizeof(float));
    return 0;
}

static int zero_hook(float *act, const lp_hook_ctx *c, void *u) {
    (void)u;
    memset(act, 0, (size_t)c->B * c->T * c->D * sizeof(float));
    return 0;
}

static int add_hook(float *act, const lp_hook_ctx *c, void *u) {
    const float *v = u;
    for (int64_t i = 0; i < (int64_t)c->B * c->T; i++)
        for (int j = 0; j < c->D; j++) act[i * c->D + j] += v[j];
    return 0;
}

static int fail_hook(float *act, const lp_hook_ctx *c, void *u) {
    (void)act, (void)c, (void)u;
    return lp_fail(LP_ERR_ARG, "hook says no");
}

static double max_rel(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md) md = d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / (mb > 0 ? mb : 1);
}

/* Windows of real text: B x T tokens from five_stories.txt. */
static int real_tokens(int *tok, int B, int T, const char *tokpath) {
    lp_tokenizer *tk;
    if (lp_tokenizer_load(&tk, tokpath, 512)) return 1;
    lp_windows w;
    int nb = 0;
    if (lp_windows_open(&w, t_sharedpath("data/tinystories/train_sample.txt"), 0, tk, T) ||
        lp_windows_next(&w, B, tok, NULL, &nb) || nb != B)
        return 1;
    lp_windows_close(&w);
    lp_tokenizer_free(tk);
    return 0;
}

static int dump(const char *model, const char *out, int B, int T) {
    lp_model *m;
    if (lp_model_load(&m, model)) {
        fprintf(stderr, "%s\n", lp_errmsg());
        return 1;
    }
    int *tok = malloc(sizeof(int) * B * T);
    if (real_tokens(tok, B, T, t_sharedpath("models/tok512.bin"))) return 1;
    lp_runner *r;
    lp_runner_new(&r, m, B, T);
    int L = m->cfg.n_layers, D = m->cfg.dim, V = m->cfg.vocab_size;
    float *acts = malloc(sizeof(float) * (size_t)L * LP_HOOK_KINDS * B * T * D);
    grab g[LP_MAX_HOOKS];
    lp_hooks h;
    lp_hooks_clear(&h);
    for (int l = 0; l < L; l++)
        for (int k = 0; k < LP_HOOK_KINDS; k++) {
            int i = l * LP_HOOK_KINDS + k;
            g[i].dst = acts + (size_t)i * B * T * D;
            lp_hooks_add(&h, (lp_hook_point){l, k}, grab_hook, &g[i]);
        }
    float *logits = malloc(sizeof(float) * (size_t)B * T * V);
    if (lp_forward(r, tok, B, T, 0, &h, LP_LOGITS_ALL, logits)) return 1;
    lp_st_writer *w = lp_st_writer_new();
    int64_t sl[3] = {B, T, V}, sa[3] = {B, T, D}, st[2] = {B, T};
    lp_st_writer_add(w, "logits", LP_DT_F32, 3, sl, logits);
    lp_st_writer_add(w, "tokens", LP_DT_I32, 2, st, tok);
    char names[LP_MAX_HOOKS][64];
    for (int i = 0; i < L * LP_HOOK_KINDS; i++) {
        lp_hook_name((lp_hook_point){i / LP_HOOK_KINDS, i % LP_HOOK_KINDS}, names[i], 64);
        lp_st_writer_add(w, names[i], LP_DT_F32, 3, sa, g[i].dst);
    }
    int rc = lp_st_writer_write(w, out);
    lp_st_writer_free(w);
    free(logits);
    free(acts);
    free(tok);
    lp_runner_free(r);
    lp_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "--dump") == 0) return dump(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    const char *mp = t_sharedpath("models/stories260K.bin");
    lp_model *m = NULL;
    CHECK_OK(lp_model_load(&m, mp));
    if (!m) return t_done("test_forward");
    CHECK(m->cfg.dim == 64 && m->cfg.n_layers == 5 && m->cfg.n_kv_heads == 4 && m->cfg.shared_classifier,
          "header");
    const int B = 3, T = 48, V = m->cfg.vocab_size, D = m->cfg.dim;
    int tok[3 * 48];
    CHECK(real_tokens(tok, B, T, t_sharedpath("models/tok512.bin")) == 0, "tokens");
    lp_runner *r;
    CHECK_OK(lp_runner_new(&r, m, B, T));
    float *full = malloc(sizeof(float) * B * T * V), *one = malloc(sizeof(float) * T * V);
    CHECK_OK(lp_forward(r, tok, B, T, 0, NULL, LP_LOGITS_ALL, full));
    /* batch independence: row 1 alone gives the same logits */
    CHECK_OK(lp_forward(r, tok + T, 1, T, 0, NULL, LP_LOGITS_ALL, one));
    CHECK(max_rel(one, full + (size_t)T * V, (size_t)T * V) < 1e-6, "batch independence %.3g",
          max_rel(one, full + (size_t)T * V, (size_t)T * V));
    /* KV cache: prefix of 20 then one token at a time = full forward */
    float last[512];
    double worst = 0;
    CHECK_OK(lp_forward(r, tok, 1, 20, 0, NULL, LP_LOGITS_LAST, last));
    worst = max_rel(last, full + (size_t)19 * V, V);
    for (int t = 20; t < T; t++) {
        CHECK_OK(lp_forward(r, tok + t, 1, 1, t, NULL, LP_LOGITS_LAST, last));
        double e = max_rel(last, full + (size_t)t * V, V);
        if (e > worst) worst = e;
    }
    CHECK(worst < 1e-5, "incremental decoding differs from full forward: %.3g", worst);
    /* hooks: zeroing the residual after the last layer gives logits of a zero vector (all 0) */
    lp_hooks h;
    lp_hooks_clear(&h);
    lp_hook_point hp;
    CHECK_OK(lp_hook_parse("blocks.4.hook_resid_post", 5, &hp));
    lp_hooks_add(&h, hp, zero_hook, NULL);
    CHECK_OK(lp_forward(r, tok, 1, T, 0, &h, LP_LOGITS_ALL, one));
    double mx = 0;
    for (int i = 0; i < T * V; i++) mx = fmax(mx, fabs(one[i]));
    CHECK(mx == 0, "zeroed final residual still gives logits %.3g", mx);
    /* adding a vector at attn_out of layer 1 changes later activations; a
     * zero vector changes nothing */
    float vec[64] = {0};
    lp_hooks_clear(&h);
    CHECK_OK(lp_hook_parse("blocks.1.hook_attn_out", 5, &hp));
    lp_hooks_add(&h, hp, add_hook, vec);
    CHECK_OK(lp_forward(r, tok, 1, T, 0, &h, LP_LOGITS_ALL, one));
    CHECK(max_rel(one, full, (size_t)T * V) == 0, "zero intervention changed logits");
    for (int j = 0; j < D; j++) vec[j] = 0.5f;
    CHECK_OK(lp_forward(r, tok, 1, T, 0, &h, LP_LOGITS_ALL, one));
    CHECK(max_rel(one, full, (size_t)T * V) > 1e-3, "intervention had no effect");
    /* a failing hook aborts the pass with its message */
    lp_hooks_clear(&h);
    lp_hooks_add(&h, hp, fail_hook, NULL);
    CHECK(lp_forward(r, tok, 1, T, 0, &h, LP_LOGITS_ALL, one) != 0 && strstr(lp_errmsg(), "hook says no"),
          "hook failure not propagated");
    /* hook names */
    CHECK(lp_hook_parse("blocks.5.hook_resid_post", 5, &hp) != 0 && strstr(lp_errmsg(), "out of range"), "layer range");
    CHECK(lp_hook_parse("blocks.0.hook_nope", 5, &hp) != 0 && strstr(lp_errmsg(), "hook_nope"), "unknown kind");
    CHECK(lp_hook_parse("resid", 5, &hp) != 0, "garbage name");
    char nm[64];
    lp_hook_name((lp_hook_point){3, LP_HOOK_MLP_OUT}, nm, sizeof nm);
    CHECK(strcmp(nm, "blocks.3.hook_mlp_out") == 0, "%s", nm);
    /* token out of range, batch too large */
    int badtok[2] = {1, 9999};
    CHECK(lp_forward(r, badtok, 1, 2, 0, NULL, LP_LOGITS_ALL, one) != 0 && strstr(lp_errmsg(), "9999"), "token range");
    CHECK(lp_forward(r, tok, 4, T, 0, NULL, LP_LOGITS_ALL, one) != 0, "batch bound");
    /* llama2.c -> HF directory -> load: same logits; and back to llama2.c */
    char dir[] = "/tmp/loupe_fwd_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char hf[256], l2[256];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    snprintf(l2, sizeof l2, "%s/back.bin", dir);
    CHECK_OK(lp_model_save_hf(m, hf));
    lp_model *m2 = NULL, *m3 = NULL;
    CHECK_OK(lp_model_load(&m2, hf));
    if (m2) {
        CHECK(m2->n_params == m->n_params && memcmp(m2->params, m->params, m->n_params * 4) == 0,
              "HF round trip changed weights");
        lp_runner *r2;
        CHECK_OK(lp_runner_new(&r2, m2, 1, T));
        CHECK_OK(lp_forward(r2, tok, 1, T, 0, NULL, LP_LOGITS_ALL, one));
        CHECK(max_rel(one, full, (size_t)T * V) == 0, "HF logits differ");
        lp_runner_free(r2);
        CHECK_OK(lp_model_save_llama2c(m2, l2));
        CHECK_OK(lp_model_load(&m3, l2));
        CHECK(m3 && memcmp(m3->params, m->params, m->n_params * 4) == 0, "llama2.c round trip");
        /* same size as the original checkpoint (the legacy RoPE tables it
         * carries are recomputed, so only the weights are bit-identical) */
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        lp_read_file(mp, &a, &la);
        lp_read_file(l2, &b, &lb);
        CHECK(la == lb && a && b && memcmp(a, b, 28) == 0, "llama2.c rewrite: %zu vs %zu bytes", la, lb);
        free(a);
        free(b);
    }
    lp_model_free(m2);
    lp_model_free(m3);
    /* bad model files */
    char p[256];
    snprintf(p, sizeof p, "%s/trunc.bin", dir);
    {
        char *a = NULL;
        size_t la = 0;
        lp_read_file(mp, &a, &la);
        FILE *f = fopen(p, "wb");
        fwrite(a, 1, 50000, f);
        fclose(f);
        free(a);
    }
    lp_model *bad = NULL;
    CHECK(lp_model_load(&bad, p) == LP_ERR_FORMAT && strstr(lp_errmsg(), p) && strstr(lp_errmsg(), "truncated"),
          "truncated: %s", lp_errmsg());
    snprintf(p, sizeof p, "%s/absurd.bin", dir);
    {
        int32_t hdr[7] = {64, 0x7fffffff, 5, 8, 4, 512, 512};
        FILE *f = fopen(p, "wb");
        fwrite(hdr, 4, 7, f);
        fclose(f);
    }
    CHECK(lp_model_load(&bad, p) == LP_ERR_FORMAT && strstr(lp_errmsg(), "implausible"), "absurd: %s", lp_errmsg());
    snprintf(p, sizeof p, "%s/missing.bin", dir);
    CHECK(lp_model_load(&bad, p) == LP_ERR_IO && strstr(lp_errmsg(), "missing.bin"), "missing: %s", lp_errmsg());
    CHECK(lp_model_load(&bad, t_sharedpath("models/fake_gpt2_hf")) != 0 && strstr(lp_errmsg(), "gpt2"),
          "gpt2 dir: %s", lp_errmsg());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    free(full);
    free(one);
    lp_runner_free(r);
    lp_model_free(m);
    return t_done("test_forward");
}
