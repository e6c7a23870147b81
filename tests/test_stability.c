/* test_stability.c — stability scores, the consistency check, latent
 * statistics with masks, the pooled SAE, the splice's latent mask and the
 * synthetic model's file round trip, each against a plain reference written
 * here (dense loops) or a construction whose answer is known. */
#include <unistd.h>

#include "loupe/pool.h"
#include "loupe/stability.h"
#include "loupe/steer.h"
#include "loupe/synth.h"
#include "testutil.h"

static lp_sae *new_sae(int arch, int d, int F, int k, uint64_t seed) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = arch, c.d_in = d, c.d_sae = F, c.k = k;
    snprintf(c.model, sizeof c.model, "models/m.bin");
    snprintf(c.hook, sizeof c.hook, "blocks.1.hook_resid_post");
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) return NULL;
    lp_sae_init(s, seed);
    return s;
}

static void unit_row(float *w, int d) {
    double ss = 0;
    for (int j = 0; j < d; j++) ss += (double)w[j] * w[j];
    for (int j = 0; j < d; j++) w[j] /= (float)sqrt(ss);
}

/* N SAEs sharing `shared` latents (noisy, permuted copies) and otherwise random */
static void make_family(lp_sae **s, int n, int d, int F, int shared, float noise, int64_t **perm_out) {
    lp_rng r;
    lp_rng_seed(&r, 77);
    for (int a = 0; a < n; a++) s[a] = new_sae(LP_SAE_TOPK, d, F, 4, 100 + a);
    for (int a = 1; a < n; a++) {
        int64_t *perm = perm_out[a];
        for (int64_t i = 0; i < F; i++) perm[i] = i;
        for (int64_t i = F - 1; i > 0; i--) {
            int64_t j = (int64_t)lp_rng_below(&r, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (int i = 0; i < shared; i++) { /* latent i of SAE 0 is latent perm[i] of SAE a */
            float *w = s[a]->p[LP_SAE_W_DEC] + perm[i] * d, *e = s[a]->p[LP_SAE_W_ENC] + perm[i] * d;
            for (int j = 0; j < d; j++) w[j] = s[0]->p[LP_SAE_W_DEC][(int64_t)i * d + j] + noise * lp_rng_normal(&r);
            unit_row(w, d);
            memcpy(e, w, (size_t)d * sizeof(float));
        }
    }
}

static void test_scores_and_pool(void) {
    const int n = 4, d = 48, F = 120, shared = 70;
    lp_sae *s[4];
    int64_t *perm[4];
    for (int a = 0; a < n; a++) perm[a] = malloc(F * sizeof(int64_t));
    make_family(s, n, d, F, shared, 0.05f, perm);
    lp_stability st;
    CHECK_OK(lp_stability_match(&st, (const lp_sae *const *)s, n, LP_MATCH_DEC, 1));
    float *sc = malloc(st.off[n] * sizeof(float)), *sh = malloc(st.off[n] * sizeof(float));
    CHECK_OK(lp_stability_scores(&st, 0.7f, 0, sc));
    CHECK_OK(lp_stability_scores(&st, 0.7f, 1, sh));
    /* SAE 0: shared latents stable everywhere, random latents (d = 48) never match at 0.7 */
    int bad = 0;
    for (int i = 0; i < F; i++) {
        float want = i < shared ? 1.0f : 0.0f;
        bad += sc[i] != want || sh[i] != want;
    }
    CHECK(bad == 0, "SAE 0: %d latents with the wrong stability", bad);
    /* the one-to-one partner of a shared latent is its permuted copy */
    int wrong = 0;
    for (int a = 1; a < n; a++)
        for (int i = 0; i < shared; i++) wrong += st.hcol[0 * n + a][i] != perm[a][i] || st.arg[0 * n + a][i] != perm[a][i];
    CHECK(wrong == 0, "%d shared latents matched to the wrong partner", wrong);
    lp_stability_summary sum;
    CHECK_OK(lp_stability_summarise(&st, 0.7f, 0.5f, 0, &sum));
    CHECK(t_close(sum.frac_stable, (double)shared / F, 0, 1e-9), "fraction stable %g, want %g", sum.frac_stable,
          (double)shared / F);
    CHECK(sum.hist[n - 1] == (int64_t)n * shared && sum.hist[0] == (int64_t)n * (F - shared),
          "histogram ends %lld %lld", (long long)sum.hist[0], (long long)sum.hist[n - 1]);
    /* pool: the shared latents form the full clusters and come first */
    lp_pool_opts po = {.tau = 0.7f, .size = shared};
    lp_pool_info info;
    lp_sae *p = NULL;
    CHECK_OK(lp_pool_build((const lp_sae *const *)s, n, &st, &po, &p, &info));
    CHECK(info.kept == shared && info.size_hist[n] == shared && info.kept_hist[n] == shared,
          "pool kept %lld, %lld full clusters", (long long)info.kept, (long long)info.size_hist[n]);
    if (p) {
        float *best = malloc(shared * sizeof(float));
        CHECK_OK(lp_max_match(p, s[0], LP_MATCH_DEC, best, NULL, NULL, NULL));
        int far = 0;
        for (int i = 0; i < shared; i++) far += best[i] < 0.98f;
        CHECK(far == 0, "%d pooled latents are not a shared direction", far);
        free(best);
        lp_sae_free(p);
    }
    lp_stability_free(&st);
    free(sc), free(sh);
    /* the consistency check names the culprit */
    const char *names[2] = {"A", "B"};
    lp_sae *pair[2] = {s[0], new_sae(LP_SAE_TOPK, 32, F, 4, 1)};
    CHECK(lp_stability_check((const lp_sae *const *)pair, names, 2) == LP_ERR_ARG && strstr(lp_errmsg(), "d_in"),
          "width mismatch: %s", lp_errmsg());
    lp_sae_free(pair[1]);
    pair[1] = new_sae(LP_SAE_TOPK, d, F, 4, 1);
    snprintf(pair[1]->cfg.hook, sizeof pair[1]->cfg.hook, "blocks.3.hook_resid_post");
    CHECK(lp_stability_check((const lp_sae *const *)pair, names, 2) == LP_ERR_ARG && strstr(lp_errmsg(), "hook"),
          "hook mismatch: %s", lp_errmsg());
    snprintf(pair[1]->cfg.hook, sizeof pair[1]->cfg.hook, "%s", s[0]->cfg.hook);
    snprintf(pair[1]->cfg.model, sizeof pair[1]->cfg.model, "/x/other.bin");
    CHECK(lp_stability_check((const lp_sae *const *)pair, names, 2) == LP_ERR_ARG && strstr(lp_errmsg(), "model"),
          "model mismatch: %s", lp_errmsg());
    snprintf(pair[1]->cfg.model, sizeof pair[1]->cfg.model, "/elsewhere/m.bin"); /* same file name: accepted */
    CHECK_OK(lp_stability_check((const lp_sae *const *)pair, names, 2));
    lp_sae_free(pair[1]);
    for (int a = 0; a < n; a++) lp_sae_free(s[a]), free(perm[a]);
}

/* ---- latent statistics vs dense reference ------------------------------------- */
static void ref_topk(const lp_sae *s, const float *x, int d, int F, int k, float *z) {
    const float sc = s->cfg.norm_scale;
    for (int f = 0; f < F; f++) {
        double p = s->p[LP_SAE_B_ENC][f];
        for (int j = 0; j < d; j++) p += (double)s->p[LP_SAE_W_ENC][(int64_t)f * d + j] * (x[j] * sc - s->p[LP_SAE_B_DEC][j]);
        z[f] = p > 0 ? (float)p : 0;
    }
    for (int f = 0; f < F; f++) { /* keep the k largest */
        int above = 0;
        for (int g = 0; g < F; g++) above += z[g] > z[f] || (z[g] == z[f] && g < f);
        if (above >= k) z[f] = -z[f] - 1; /* mark */
    }
    for (int f = 0; f < F; f++)
        if (z[f] < 0) z[f] = 0;
}

static void test_latent_stats(void) {
    const int d = 16, F = 40, k = 3, rows = 3000;
    char dir[] = "/tmp/loupe_stab_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *sdir = lp_path_join(dir, "store");
    const char *hooks[1] = {"h"};
    int dims[1] = {d};
    lp_store_spec spec = {.model = "m", .dtype = LP_STORE_F32, .n_hooks = 1, .hooks = hooks, .dims = dims};
    lp_store_writer *w = NULL;
    CHECK_OK(lp_store_create(&w, sdir, &spec));
    float *x = malloc((size_t)rows * d * sizeof(float));
    int32_t *tok = malloc(rows * sizeof(int32_t));
    lp_rng r;
    lp_rng_seed(&r, 3);
    for (int i = 0; i < rows * d; i++) x[i] = lp_rng_normal(&r) + (i % d == 0 ? 2.0f : 0.0f);
    for (int i = 0; i < rows; i++) tok[i] = i % 7;
    const float *acts[1] = {x};
    CHECK_OK(lp_store_append(w, rows, acts, tok, NULL, NULL));
    CHECK_OK(lp_store_close(w));
    lp_store *st = NULL;
    CHECK_OK(lp_store_open(&st, sdir, NULL));
    lp_sae *s = new_sae(LP_SAE_TOPK, d, F, k, 9);
    s->cfg.norm_scale = 0.7f;
    for (int f = 0; f < F; f++) s->p[LP_SAE_B_ENC][f] = 0.1f * lp_rng_normal(&r);
    for (int j = 0; j < d; j++) s->p[LP_SAE_B_DEC][j] = 0.2f * lp_rng_normal(&r);
    uint8_t *m1 = malloc(F), *m2 = malloc(F);
    for (int f = 0; f < F; f++) m1[f] = f % 3 == 0, m2[f] = !m1[f];
    const uint8_t *masks[2] = {m1, m2};
    lp_latent_opts lo = {.start = 100, .rows = 2500, .batch = 700, .topn = 5, .n_masks = 2, .masks = masks};
    lp_latent_stats ls;
    CHECK_OK(lp_latent_stats_compute(s, st, &lo, &ls));
    /* reference */
    float *z = malloc(F * sizeof(float));
    double err[3] = {0, 0, 0}, sum[16] = {0}, ss = 0, l0[3] = {0, 0, 0};
    int64_t *fires = calloc(F, sizeof(int64_t));
    float *best = calloc(F, sizeof(float));
    int64_t *brow = malloc(F * sizeof(int64_t));
    for (int f = 0; f < F; f++) brow[f] = -1;
    for (int i = 100; i < 2600; i++) {
        const float *xr = x + (int64_t)i * d;
        ref_topk(s, xr, d, F, k, z);
        for (int mk = 0; mk < 3; mk++) {
            double e = 0;
            for (int j = 0; j < d; j++) {
                double h = s->p[LP_SAE_B_DEC][j];
                for (int f = 0; f < F; f++)
                    if (z[f] > 0 && (mk == 0 || masks[mk - 1][f])) h += (double)z[f] * s->p[LP_SAE_W_DEC][(int64_t)f * d + j];
                double t = xr[j] - h / s->cfg.norm_scale;
                e += t * t;
            }
            err[mk] += e;
            for (int f = 0; f < F; f++) l0[mk] += z[f] > 0 && (mk == 0 || masks[mk - 1][f]);
        }
        for (int j = 0; j < d; j++) sum[j] += xr[j], ss += (double)xr[j] * xr[j];
        for (int f = 0; f < F; f++)
            if (z[f] > 0) {
                fires[f]++;
                if (z[f] > best[f]) best[f] = z[f], brow[f] = i;
            }
    }
    double mu2 = 0;
    for (int j = 0; j < d; j++) mu2 += (sum[j] / 2500) * (sum[j] / 2500);
    double var = ss - 2500 * mu2;
    double ev_ref[3] = {1 - err[0] / var, 1 - err[1] / var, 1 - err[2] / var};
    CHECK(ls.rows == 2500, "rows %lld", (long long)ls.rows);
    CHECK(t_close(ls.ev, ev_ref[0], 1e-4, 1e-5) && t_close(ls.ev_mask[0], ev_ref[1], 1e-4, 1e-5) &&
              t_close(ls.ev_mask[1], ev_ref[2], 1e-4, 1e-5),
          "EV %g %g %g vs reference %g %g %g", ls.ev, ls.ev_mask[0], ls.ev_mask[1], ev_ref[0], ev_ref[1], ev_ref[2]);
    CHECK(t_close(ls.l0, l0[0] / 2500, 1e-9, 1e-9) && t_close(ls.l0_mask[0], l0[1] / 2500, 1e-9, 1e-9),
          "L0 %g %g vs %g %g", ls.l0, ls.l0_mask[0], l0[0] / 2500, l0[1] / 2500);
    int badf = 0, badtop = 0;
    for (int f = 0; f < F; f++) {
        badf += ls.fires[f] != fires[f];
        if (fires[f] && (ls.top_row[f * 5] != brow[f] || fabsf(ls.top_val[f * 5] - best[f]) > 1e-4f * best[f])) badtop++;
        for (int q = 1; q < 5; q++) badtop += ls.top_val[f * 5 + q] > ls.top_val[f * 5 + q - 1];
    }
    CHECK(badf == 0 && badtop == 0, "%d firing counts and %d top activations differ", badf, badtop);
    lp_latent_stats_free(&ls);

    /* the splice's latent mask: act replaced by b_dec + Σ_{kept} z W_dec (in raw units) */
    const int B = 2, T = 5, N = B * T;
    float *act = malloc((size_t)N * d * sizeof(float)), *act2 = malloc((size_t)N * d * sizeof(float));
    int toks[10] = {1, 5, 6, 7, 8, 1, 9, 9, 9, 9};
    memcpy(act, x, (size_t)N * d * sizeof(float));
    memcpy(act2, x, (size_t)N * d * sizeof(float));
    lp_hook_ctx ctx = {.layer = 1, .B = B, .T = T, .D = d, .tokens = toks};
    lp_splice sp;
    CHECK_OK(lp_splice_init(&sp, LP_SPLICE_SAE, s, 1, N, d));
    sp.keep = m1;
    CHECK_OK(lp_splice_hook(act, &ctx, &sp));
    int badm = 0;
    for (int i = 0; i < N; i++) {
        const float *xr = act2 + (int64_t)i * d;
        if (toks[i] == 1) { /* BOS rows untouched */
            for (int j = 0; j < d; j++) badm += act[i * d + j] != xr[j];
            continue;
        }
        ref_topk(s, xr, d, F, k, z);
        for (int j = 0; j < d; j++) {
            double h = s->p[LP_SAE_B_DEC][j];
            for (int f = 0; f < F; f++)
                if (z[f] > 0 && m1[f]) h += (double)z[f] * s->p[LP_SAE_W_DEC][(int64_t)f * d + j];
            badm += fabs(act[i * d + j] - h / s->cfg.norm_scale) > 1e-4;
        }
    }
    CHECK(badm == 0, "masked splice: %d values differ from the reference", badm);
    lp_splice_free(&sp);
    free(act), free(act2);

    lp_store_close_reader(st);
    lp_sae_free(s);
    free(x), free(tok), free(m1), free(m2), free(z), free(fires), free(best), free(brow), free(sdir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* ---- synthetic model: file round trip, statistics, self-scoring ---------------- */
static void test_synth(void) {
    lp_synth_config c;
    lp_synth_config_default(&c);
    c.d = 32, c.n_iso = 20, c.n_blocks = 2, c.block_r = 4, c.block_m = 8;
    lp_synth *s = NULL, *t = NULL;
    CHECK_OK(lp_synth_new(&s, &c));
    char path[] = "/tmp/loupe_truth_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_OK(lp_synth_save(s, path));
    CHECK_OK(lp_synth_load(&t, path));
    if (t) {
        int same = t->cfg.n_iso == 20 && t->cfg.block_r == 4 && t->cfg.block_kind == LP_SYNTH_GAUSS &&
                   memcmp(t->iso, s->iso, 20 * 32 * 4) == 0 && memcmp(t->basis, s->basis, 8 * 32 * 4) == 0;
        CHECK(same, "truth file round trip differs");
    }
    /* basis orthonormal; block directions inside their block */
    double worst = 0;
    for (int g = 0; g < 2; g++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                double dot = 0;
                for (int j = 0; j < 32; j++) dot += (double)s->basis[(g * 4 + a) * 32 + j] * s->basis[(g * 4 + b) * 32 + j];
                worst = fmax(worst, fabs(dot - (a == b)));
            }
    CHECK(worst < 1e-5, "basis not orthonormal (%g)", worst);
    /* sample statistics: isolated firing rate, block activity */
    lp_rng r;
    lp_rng_seed(&r, 5);
    const int n = 20000;
    float *x = malloc((size_t)n * 32 * sizeof(float));
    int32_t *tok = malloc(n * sizeof(int32_t));
    lp_synth_sample(s, &r, n, x, tok);
    int64_t none = 0;
    for (int i = 0; i < n; i++) none += tok[i] < 0;
    double p_none = pow(1 - c.p_iso, c.n_iso) * pow(1 - c.p_block, c.n_blocks);
    CHECK(fabs((double)none / n - p_none) < 0.02, "rows with no component %.3f, expected %.3f", (double)none / n, p_none);
    /* an SAE whose decoder is the truth scores perfectly */
    lp_sae *e = new_sae(LP_SAE_TOPK, 32, 20 + 16, 4, 1);
    memcpy(e->p[LP_SAE_W_DEC], s->iso, 20 * 32 * sizeof(float));
    memcpy(e->p[LP_SAE_W_DEC] + 20 * 32, s->blk, 16 * 32 * sizeof(float));
    lp_synth_score sc;
    CHECK_OK(lp_synth_score_sae(s, e, 0.95f, 0.8f, &sc));
    int ok = 1;
    for (int i = 0; i < 20; i++) ok &= sc.iso_best[i] > 0.999f && sc.latent_iso[sc.iso_arg[i]];
    for (int g = 0; g < 2; g++) ok &= sc.block_count[g] == 8 && sc.block_cos[g * 4 + 3] > 0.9999;
    CHECK(ok, "the truth itself should score perfectly");
    lp_synth_score_free(&sc);
    lp_sae_free(e);
    CHECK(lp_synth_load(&t, "/nonexistent/truth.safetensors") != 0 && strstr(lp_errmsg(), "nonexistent"),
          "missing truth file: %s", lp_errmsg());
    remove(path);
    free(x), free(tok);
    lp_synth_free(s);
    lp_synth_free(t);
}

int main(void) {
    test_scores_and_pool();
    test_latent_stats();
    test_synth();
    return t_done("test_stability");
}
