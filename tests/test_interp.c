/* test_interp.c — feature statistics, segment tags, the offline explainer,
 * AUROC, the feature-run files and the dashboard pages, against ground
 * truth built by hand: a store of one-hot rows (row = v·e_token) and an
 * identity ReLU SAE, so latent f fires exactly on token f with value v,
 * and every statistic can be recomputed by brute force here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loupe/interp.h"
#include "loupe/segments.h"
#include "loupe/store.h"
#include "loupe/web.h"
#include "testutil.h"

enum { V = 200, T = 50, NWIN = 80, R = NWIN * (T - 1), P = 25 };

static int32_t g_tok[R], g_doc[R], g_pos[R];
static float g_val[R];
static uint8_t g_seg[R];

/* brute-force AUROC from the definition: P(s+ > s-) + ½ P(=) */
static double auroc_pairs(const float *p, int np, const float *n, int nn) {
    double s = 0;
    for (int i = 0; i < np; i++)
        for (int j = 0; j < nn; j++) s += p[i] > n[j] ? 1 : p[i] == n[j] ? 0.5 : 0;
    return s / ((double)np * nn);
}

static void test_auroc(void) {
    float p[2] = {3, 2}, n[2] = {1, 2};
    CHECK(fabs(lp_auroc(p, 2, n, 2) - 0.875) < 1e-12, "got %g", lp_auroc(p, 2, n, 2));
    CHECK(isnan(lp_auroc(p, 0, n, 2)), "empty side must be NaN");
    lp_rng r;
    lp_rng_seed(&r, 7);
    for (int trial = 0; trial < 20; trial++) {
        int np = 1 + (int)lp_rng_below(&r, 40), nn = 1 + (int)lp_rng_below(&r, 40);
        float a[40], b[40];
        for (int i = 0; i < np; i++) a[i] = (float)lp_rng_below(&r, 6); /* many ties */
        for (int i = 0; i < nn; i++) b[i] = (float)lp_rng_below(&r, 6) - 1;
        double x = lp_auroc(a, np, b, nn), y = auroc_pairs(a, np, b, nn);
        CHECK(fabs(x - y) < 1e-9, "trial %d: %g vs brute force %g", trial, x, y);
    }
}

static void make_data(void) {
    lp_rng r;
    lp_rng_seed(&r, 1);
    for (int w = 0; w < NWIN; w++)
        for (int t = 1; t < T; t++) {
            int i = w * (T - 1) + (t - 1);
            int tok = 3 + (int)lp_rng_below(&r, V - 3);
            if (tok == 7 && t <= P) tok = 8; /* token 7 only in "generated" */
            if (tok == 9 && t > P) tok = 10; /* token 9 only in "prompt" */
            g_tok[i] = tok;
            g_doc[i] = w / 2; /* two windows per document */
            g_pos[i] = t;
            g_val[i] = 1.0f + 0.25f * (float)lp_rng_below(&r, 7);
            g_seg[i] = t <= P ? 0 : 1;
        }
}

static int write_store(const char *dir) {
    const char *hooks[1] = {"blocks.0.hook_resid_post"};
    int dims[1] = {V};
    lp_store_spec sp = {.model = "synthetic", .data = "synthetic", .ctx = T, .dtype = LP_STORE_F32,
                        .n_hooks = 1, .hooks = hooks, .dims = dims};
    lp_store_writer *w;
    int rc = lp_store_create(&w, dir, &sp);
    if (rc) return rc;
    float *x = calloc((size_t)R * V, sizeof *x);
    for (int i = 0; i < R; i++) x[(size_t)i * V + g_tok[i]] = g_val[i];
    const float *acts[1] = {x};
    rc = lp_store_append(w, R, acts, g_tok, g_doc, g_pos);
    free(x);
    if (!rc) rc = lp_store_close(w);
    else lp_store_abort(w);
    const char *names[2] = {"prompt", "generated"};
    if (!rc) rc = lp_segments_write(dir, g_seg, R, 2, names);
    return rc;
}

static lp_sae *identity_sae(void) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = LP_SAE_RELU;
    c.d_in = V;
    c.d_sae = V;
    c.norm_scale = 1;
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) return NULL;
    memset(s->params, 0, s->n_params * sizeof(float));
    for (int i = 0; i < V; i++) {
        s->p[LP_SAE_W_ENC][(size_t)i * V + i] = 1;
        s->p[LP_SAE_W_DEC][(size_t)i * V + i] = 1;
    }
    return s;
}

static int cmp_desc(const void *a, const void *b) {
    const int *x = a, *y = b;
    if (g_val[*x] != g_val[*y]) return g_val[*x] > g_val[*y] ? -1 : 1;
    return *x - *y;
}

static void test_segments(const char *dir) {
    lp_segments s;
    CHECK_OK(lp_segments_load(&s, dir, R));
    CHECK(s.n_names == 2 && s.present && !strcmp(s.names[1], "generated"), "names");
    int same = 1;
    for (int i = 0; i < R && s.seg; i++) same &= s.seg[i] == g_seg[i];
    CHECK(same, "labels round-trip");
    lp_segments_free(&s);
    CHECK(lp_segments_load(&s, dir, R + 1) != 0, "a wrong row count must be refused");
    CHECK(strstr(lp_errmsg(), "segments.json") != NULL, "message names the file: %s", lp_errmsg());
    CHECK_OK(lp_segments_load(&s, "/nonexistent-dir-for-segments", 5));
    CHECK(s.n_names == 1 && !s.present && !strcmp(s.names[0], "text") && s.count == 5, "default segment");
    lp_segments_free(&s);
    uint8_t bad[2] = {0, 2};
    const char *nm[2] = {"a", "b"};
    CHECK(lp_segments_write("/tmp", bad, 2, 2, nm) != 0, "label outside the names must be refused");
}

static void test_features(const char *dir, const char *run) {
    lp_store *st = NULL;
    CHECK_OK(lp_store_open(&st, dir, NULL));
    lp_segments seg;
    CHECK_OK(lp_segments_load(&seg, dir, R));
    lp_sae *sae = identity_sae();
    CHECK(sae != NULL, "sae");
    /* a tiny model for the logit lens: only the embedding and final norm matter */
    lp_config mc = {.dim = V, .hidden_dim = 8, .n_layers = 1, .n_heads = 1, .n_kv_heads = 1, .vocab_size = V,
                    .seq_len = T, .head_size = V, .shared_classifier = 1, .norm_eps = 1e-5f, .rope_theta = 10000};
    lp_model *m = NULL;
    CHECK_OK(lp_model_new(&m, &mc, "synthetic", "llama2c"));
    lp_rng r;
    lp_rng_seed(&r, 3);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = lp_rng_normal(&r);
    lp_feat_opts o;
    lp_feat_opts_default(&o);
    o.batch = 333; /* several batches, not a divisor of R */
    lp_features f;
    CHECK_OK(lp_features_compute(&f, sae, st, &seg, m, V, &o));
    if (t_fail) return;
    CHECK(f.E == 52 && f.W == 20 && f.LK == 10 && f.S == 2, "shapes E=%d W=%d", f.E, f.W);
    int *rows = malloc(R * sizeof *rows);
    int bad_stats = 0, bad_top = 0, bad_quant = 0, bad_ctx = 0, bad_hist = 0, bad_lens = 0, bad_neg = 0;
    for (int feat = 0; feat < V; feat++) {
        int n = 0;
        double sum = 0;
        float mx = 0;
        int64_t segc[2] = {0, 0};
        for (int i = 0; i < R; i++)
            if (g_tok[i] == feat) {
                rows[n++] = i;
                sum += g_val[i];
                if (g_val[i] > mx) mx = g_val[i];
                segc[g_seg[i]]++;
            }
        if (f.fires[feat] != n || fabs(f.sum_act[feat] - sum) > 1e-3 || f.max_act[feat] != mx ||
            f.seg_fires[feat * 2] != segc[0] || f.seg_fires[feat * 2 + 1] != segc[1])
            bad_stats++;
        qsort(rows, (size_t)n, sizeof *rows, cmp_desc);
        for (int e = 0; e < f.N; e++) {
            int64_t want = e < n ? rows[e] : -1;
            if (f.ex_row[(size_t)feat * f.E + e] != want) bad_top++;
        }
        /* histogram: counts add up, and each bin holds what it should */
        int64_t hs = 0;
        for (int h = 0; h < f.H; h++) {
            int64_t c = 0;
            for (int i = 0; i < n; i++) {
                int b = (int)((double)g_val[rows[i]] / mx * f.H);
                c += (b >= f.H ? f.H - 1 : b) == h;
            }
            if (c != f.hist[(size_t)feat * f.H + h]) bad_hist++;
            hs += f.hist[(size_t)feat * f.H + h];
        }
        if (hs != n) bad_hist++;
        /* quantile samples: the feature's token, value in its interval, not a top row */
        const int qper = f.Q / f.I;
        for (int q = 0; q < f.Q; q++) {
            int64_t row = f.ex_row[(size_t)feat * f.E + f.N + q];
            if (row < 0) continue;
            int iv = q / qper;
            double lo = mx * iv / f.I, hi = mx * (iv + 1) / f.I;
            int in_top = 0;
            for (int e = 0; e < f.N && e < n; e++) in_top |= rows[e] == row;
            if (g_tok[row] != feat || !(g_val[row] > lo - 1e-6 && g_val[row] <= hi + 1e-6) || in_top ||
                f.ex_val[(size_t)feat * f.E + f.N + q] != g_val[row])
                bad_quant++;
        }
        /* windows: tokens from the store, activation = value where token == feat */
        for (int e = 0; e < f.E; e++) {
            int64_t row = f.ex_row[(size_t)feat * f.E + e];
            for (int w = 0; w < f.W; w++) {
                size_t cell = ((size_t)feat * f.E + e) * f.W + w;
                int64_t r2 = row + w - f.left;
                int inwin = row >= 0 && r2 >= 0 && r2 < R && g_doc[r2] == g_doc[row] && g_pos[r2] - g_pos[row] == w - f.left;
                int wt = inwin ? g_tok[r2] : -1;
                float wa = inwin && g_tok[r2] == feat ? g_val[r2] : 0;
                if (f.ctx_tok[cell] != wt || fabs(f.ctx_act[cell] - wa) > 1e-6 || (inwin && f.ctx_seg[cell] != g_seg[r2]))
                    bad_ctx++;
            }
            if (e >= f.N + f.Q && row >= 0 && g_tok[row] == feat && f.ex_val[(size_t)feat * f.E + e] != g_val[row])
                bad_neg++;
        }
        /* logit lens: logits_t = Σ_j E[t,j] g_j W_dec[f,j] = E[t,f] g_f */
        const float *E = m->p[LP_P_EMB], *g = m->p[LP_P_RMS_FINAL];
        float best = -INFINITY;
        int bi = -1;
        for (int t = 0; t < V; t++)
            if (E[(size_t)t * V + feat] * g[feat] > best) {
                best = E[(size_t)t * V + feat] * g[feat];
                bi = t;
            }
        if (f.lens_pos_id[feat * f.LK] != bi || fabs(f.lens_pos[feat * f.LK] - best) > 1e-4) bad_lens++;
        for (int k = 1; k < f.LK; k++)
            if (f.lens_pos[feat * f.LK + k] > f.lens_pos[feat * f.LK + k - 1] ||
                f.lens_neg[feat * f.LK + k] < f.lens_neg[feat * f.LK + k - 1])
                bad_lens++;
    }
    CHECK(!bad_stats, "%d features with wrong counts/sums/maxima", bad_stats);
    CHECK(!bad_top, "%d wrong top-N rows", bad_top);
    CHECK(!bad_hist, "%d wrong histogram bins", bad_hist);
    CHECK(!bad_quant, "%d bad quantile samples", bad_quant);
    CHECK(!bad_ctx, "%d wrong window cells", bad_ctx);
    CHECK(!bad_neg, "%d negatives with a wrong own value", bad_neg);
    CHECK(!bad_lens, "%d wrong logit-lens entries", bad_lens);
    CHECK(f.tag[7] == 1, "token 7 occurs only in 'generated': tag %d", f.tag[7]);
    CHECK(f.tag[9] == 0, "token 9 occurs only in 'prompt': tag %d", f.tag[9]);
    CHECK(f.tag[0] == LP_TAG_DEAD && f.tag[1] == LP_TAG_DEAD, "tokens 0, 1 never occur: dead");
    int mixed = 0;
    for (int i = 11; i < V; i++) mixed += f.tag[i] == LP_TAG_MIXED;
    CHECK(mixed > (V - 11) / 2, "most uniform tokens are mixed (%d)", mixed);
    /* the tag rule itself: share >= 0.8 of the top-20 */
    lp_features_tag(&f, 20, 0.8f);
    for (int feat = 11; feat < V; feat++) {
        int g = 0, n = 0;
        for (int e = 0; e < 20; e++) {
            int64_t row = f.ex_row[(size_t)feat * f.E + e];
            if (row < 0) break;
            g += g_seg[row];
            n++;
        }
        double sh = n ? (double)g / n : 0;
        int want = n == 0 ? LP_TAG_DEAD : sh >= 0.8 - 1e-6 ? 1 : sh <= 0.2 + 1e-6 ? 0 : LP_TAG_MIXED;
        if (f.tag[feat] != want) {
            CHECK(0, "feature %d: share %.2f tag %d want %d", feat, sh, f.tag[feat], want);
            break;
        }
    }

    /* offline explainer: names the token, detects it perfectly */
    char *vocab[V];
    for (int i = 0; i < V; i++) {
        vocab[i] = malloc(16);
        snprintf(vocab[i], 16, "w%d", i);
    }
    lp_explanations ex;
    CHECK_OK(lp_explanations_new(&ex, V));
    CHECK_OK(lp_explain_offline(&f, vocab, &ex));
    int named = 0, perfect = 0, scored = 0;
    for (int feat = 3; feat < V; feat++) {
        char want[24];
        snprintf(want, sizeof want, "fires on \"w%d\"", feat);
        named += ex.text[feat] && strstr(ex.text[feat], want) != NULL;
        if (isfinite(ex.auroc[feat])) {
            scored++;
            perfect += ex.auroc[feat] > 0.99f;
        }
    }
    CHECK(named == V - 3, "%d of %d explanations name the feature's token (e.g. %s)", named, V - 3,
          ex.text[20] ? ex.text[20] : "(null)");
    CHECK(scored > (V - 3) * 9 / 10 && perfect == scored, "%d scored, %d with AUROC > 0.99", scored, perfect);
    CHECK(ex.text[7] && strstr(ex.text[7], "generated-modal"), "segment in the explanation: %s", ex.text[7]);
    char *wt = lp_window_text(&f, vocab, 20, 0, 1);
    char mk[16];
    snprintf(mk, sizeof mk, "<<w20>>");
    CHECK(wt && strstr(wt, mk), "marked window: %s", wt ? wt : "(null)");
    free(wt);

    /* save, load back, identical */
    lp_featrun_info info = {.name = "synth", .sae_path = "none", .store_path = dir, .model_path = "synthetic",
                            .hook = "blocks.0.hook_resid_post", .arch = "relu", .k = 0, .layer = 0};
    CHECK_OK(lp_featrun_save(run, &info, &f, &ex, vocab));
    lp_featrun fr;
    CHECK_OK(lp_featrun_load(&fr, run, "synth"));
    if (!t_fail) {
        CHECK(fr.f.F == V && fr.f.E == f.E && fr.f.rows == R, "shapes after load");
        CHECK(!memcmp(fr.f.ex_row, f.ex_row, (size_t)V * f.E * 8) &&
                  !memcmp(fr.f.ctx_act, f.ctx_act, (size_t)V * f.E * f.W * 4) &&
                  !memcmp(fr.f.tag, f.tag, V * 4) && !memcmp(fr.f.lens_pos_id, f.lens_pos_id, (size_t)V * f.LK * 4),
              "arrays round-trip");
        CHECK(fr.ex.text[20] && !strcmp(fr.ex.text[20], ex.text[20]) && !strcmp(fr.vocab[42], "w42"),
              "texts round-trip");
        CHECK(fr.ex.auroc[20] == ex.auroc[20], "auroc round-trip");
        lp_featrun_free(&fr);
    }
    CHECK(lp_featrun_load(&fr, run, "../synth") != 0, "a name with a path is refused");
    lp_featrun_info bad = info;
    bad.name = "../x";
    CHECK(lp_featrun_save(run, &bad, &f, &ex, vocab) != 0, "saving under '../x' is refused");
    for (int i = 0; i < V; i++) free(vocab[i]);
    lp_explanations_free(&ex);
    lp_features_free(&f);
    lp_model_free(m);
    lp_sae_free(sae);
    lp_segments_free(&seg);
    lp_store_close_reader(st);
    free(rows);
}

static void test_web(const char *run) {
    CHECK(lp_web_path_ok("/index.html") && lp_web_path_ok("/sae/synth/f/3.html") && lp_web_path_ok("/"),
          "plain paths accepted");
    const char *badp[] = {"/../etc/passwd", "/%2e%2e/etc/passwd", "/%252e%252e/x", "/sae/../../x", "//etc/passwd",
                          "/a\\b", "index.html", "/sae/synth/f/..", "/.%2e/", "/x?y", NULL};
    for (int i = 0; badp[i]; i++) CHECK(!lp_web_path_ok(badp[i]), "path %s must be refused", badp[i]);
    /* stability and flow files are read when present */
    char p[512];
    snprintf(p, sizeof p, "%s/features/synth/stability.csv", run);
    FILE *fp = fopen(p, "w");
    fprintf(fp, "feature,stability,max_cos\n");
    for (int i = 0; i < V; i++) fprintf(fp, "%d,%.2f,0.9\n", i, (i % 10) / 10.0);
    fclose(fp);
    snprintf(p, sizeof p, "%s/flow", run);
    lp_mkdirs(p);
    snprintf(p, sizeof p, "%s/flow/edges.csv", run);
    fp = fopen(p, "w");
    fprintf(fp, "src_sae,src_feature,dst_sae,dst_feature,score,kind\nsynth,5,synth,20,0.93,resid\n");
    fclose(fp);
    lp_web *w = NULL;
    CHECK_OK(lp_web_open(&w, run));
    if (!w) return;
    CHECK(lp_web_runs(w) == 1 && !strcmp(lp_web_run_name(w, 0), "synth"), "one run");
    char *body;
    size_t len;
    const char *ct;
    CHECK_OK(lp_web_render(w, "", &body, &len, &ct));
    CHECK(body && strstr(body, "href=\"sae/synth/index.html\"") && strstr(body, "Segment tags per layer") &&
              strstr(body, "<svg class=\"flow\"") && strstr(body, "href=\"sae/synth/f/20.html\""),
          "index with the flow graph");
    free(body);
    CHECK_OK(lp_web_render(w, "sae/synth/index.html", &body, &len, &ct));
    CHECK(body && strstr(body, "class=\"sortable features\"") && strstr(body, "href=\"f/20.html\"") &&
              strstr(body, "stability") && strstr(body, "data-search=\""),
          "sae page");
    free(body);
    CHECK_OK(lp_web_render(w, "sae/synth/f/20.html", &body, &len, &ct));
    CHECK(body && strstr(body, "tok centre on") && strstr(body, "<svg class=\"hist\"") &&
              strstr(body, "href=\"../../synth/f/5.html\"") && strstr(body, "0.93"),
          "feature page: highlighted tokens, histogram, flow predecessor");
    free(body);
    CHECK(lp_web_render(w, "sae/synth/f/200.html", &body, &len, &ct) != 0, "feature out of range");
    CHECK(lp_web_render(w, "sae/synth/f/020.html", &body, &len, &ct) != 0, "leading zero");
    CHECK(lp_web_render(w, "sae/nope/index.html", &body, &len, &ct) != 0, "unknown SAE");
    CHECK(lp_web_render(w, "etc/passwd", &body, &len, &ct) != 0, "no file access");
    CHECK_OK(lp_web_render(w, "assets/app.js", &body, &len, &ct));
    CHECK(body && strstr(ct, "javascript") && strstr(body, "sortTable"), "script asset");
    free(body);
    CHECK(lp_host_is_loopback("127.0.0.1") && lp_host_is_loopback("127.1.2.3") && lp_host_is_loopback("::1") &&
              lp_host_is_loopback("localhost") && !lp_host_is_loopback("0.0.0.0") &&
              !lp_host_is_loopback("192.168.1.2") && !lp_host_is_loopback("::"),
          "loopback detection");
    lp_serve_opts so = {.host = "0.0.0.0", .port = 0};
    lp_server *srv = NULL;
    int port = 0;
    CHECK(lp_serve_start(&srv, w, &so, &port) != 0 && strstr(lp_errmsg(), "--public"), "non-loopback refused: %s",
          lp_errmsg());
    lp_web_free(w);
}

int main(void) {
    char tmpl[] = "/tmp/loupe_interp_XXXXXX";
    char *root = mkdtemp(tmpl);
    char dir[256], run[256], cmd[600];
    snprintf(dir, sizeof dir, "%s/store", root);
    snprintf(run, sizeof run, "%s/run", root);
    test_auroc();
    make_data();
    CHECK_OK(write_store(dir));
    test_segments(dir);
    test_features(dir, run);
    test_web(run);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", root);
    return t_done("test_interp");
}
