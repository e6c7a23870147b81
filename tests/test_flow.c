/* test_flow.c — feature flow and steering units: blocked max-cosine against a
 * naive loop; constructed SAEs whose true predecessors and classes are
 * known (matching must find them); chains, graphs and their files;
 * co-activation counts; site loading errors; the steering hook's formulas
 * against a direct computation; position specs; word counting; the logit
 * lens against a naive product. */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "loupe/flow.h"
#include "loupe/sae_format.h"
#include "loupe/steer.h"
#include "testutil.h"

static void rand_unit(lp_rng *r, float *x, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) x[j] = lp_rng_normal(r), s += (double)x[j] * x[j];
    for (int j = 0; j < d; j++) x[j] = (float)(x[j] / sqrt(s));
}

static void normalise(float *x, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)x[j] * x[j];
    for (int j = 0; j < d; j++) x[j] = (float)(x[j] / sqrt(s));
}

static lp_sae *new_sae(int d, int F, const char *hook, uint64_t seed) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = LP_SAE_TOPK;
    c.d_in = d, c.d_sae = F, c.k = 4;
    snprintf(c.hook, sizeof c.hook, "%s", hook);
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) return NULL;
    lp_sae_init(s, seed);
    return s;
}

static void test_max_cos(void) {
    lp_rng r;
    lp_rng_seed(&r, 1);
    const int Fa = 600, Fb = 70, d = 13; /* Fa spans three blocks */
    float *A = malloc(sizeof(float) * Fa * d), *B = malloc(sizeof(float) * Fb * d), *bc = malloc(sizeof(float) * Fa);
    int32_t *bi = malloc(sizeof(int32_t) * Fa);
    for (int i = 0; i < Fa * d; i++) A[i] = lp_rng_normal(&r) * 3;
    for (int i = 0; i < Fb * d; i++) B[i] = lp_rng_normal(&r) * 0.2f;
    CHECK_OK(lp_flow_max_cos(A, Fa, B, Fb, d, bc, bi));
    int bad = 0;
    for (int a = 0; a < Fa; a++) {
        double best = -2;
        int arg = -1;
        for (int b = 0; b < Fb; b++) {
            double dot = 0, na = 0, nb = 0;
            for (int j = 0; j < d; j++) dot += (double)A[a * d + j] * B[b * d + j], na += (double)A[a * d + j] * A[a * d + j], nb += (double)B[b * d + j] * B[b * d + j];
            double c = dot / sqrt(na * nb);
            if (c > best) best = c, arg = b;
        }
        if (fabs(best - bc[a]) > 1e-5 || arg != bi[a]) bad++;
    }
    CHECK(bad == 0, "%d of %d rows differ from the naive max-cosine", bad, Fa);
    CHECK(lp_flow_max_cos(A, 0, B, Fb, d, bc, bi) == LP_ERR_ARG, "empty dictionary accepted");
    free(A), free(B), free(bc), free(bi);
}

/* Three layers; at layers 1 and 2 the residual SAE's features are built from
 * known predecessors: f % 4 == 0 translated from R[π f], 1 processed by MLP
 * (R[π f] + M[σ f]), 2 newborn from attention (A[σ f]), 3 random. */
static void test_constructed(void) {
    const int d = 64, F = 64, NL = 3;
    lp_rng r;
    lp_rng_seed(&r, 2);
    lp_sae *res[3], *mlp[3], *att[3];
    char h[64];
    for (int L = 0; L < NL; L++) {
        snprintf(h, sizeof h, "blocks.%d.hook_resid_post", L);
        res[L] = new_sae(d, F, h, 100 + L);
        snprintf(h, sizeof h, "blocks.%d.hook_mlp_out", L);
        mlp[L] = new_sae(d, F, h, 200 + L);
        snprintf(h, sizeof h, "blocks.%d.hook_attn_out", L);
        att[L] = new_sae(d, F, h, 300 + L);
    }
    int pi[3][64], sg[3][64];
    for (int L = 1; L < NL; L++) {
        float *Wr = res[L]->p[LP_SAE_W_DEC];
        const float *Wp = res[L - 1]->p[LP_SAE_W_DEC], *Wm = mlp[L]->p[LP_SAE_W_DEC], *Wa = att[L]->p[LP_SAE_W_DEC];
        for (int f = 0; f < F; f++) {
            pi[L][f] = (f * 5 + 4) % F;
            sg[L][f] = (f * 11 + 5) % F;
            float *w = Wr + f * d;
            for (int j = 0; j < d; j++) {
                float noise = 0.05f * lp_rng_normal(&r) / 8;
                switch (f % 4) {
                case 0: w[j] = Wp[pi[L][f] * d + j] + noise; break;
                case 1: w[j] = Wp[pi[L][f] * d + j] + Wm[sg[L][f] * d + j] + noise; break;
                case 2: w[j] = Wa[sg[L][f] * d + j] + noise; break;
                default: break; /* keep its random init row */
                }
            }
            normalise(w, d);
        }
    }
    lp_flow fl;
    lp_flow_opts o = {.thr = NULL, .q = 0.999, .null_samples = 4000, .seed = 5};
    CHECK_OK(lp_flow_compute(&fl, NL, res, mlp, att, &o));
    int wrong_top = 0, wrong_cls = 0, unexpl_ok = 0, n_unexpl = 0;
    for (int L = 1; L < NL; L++) {
        const lp_flow_layer *ly = &fl.layer[L];
        CHECK(ly->thr[0] > 0.25 && ly->thr[0] < 0.6, "auto threshold %.3f outside the chance range", ly->thr[0]);
        for (int f = 0; f < F; f++) {
            int k = f % 4;
            if (k == 0 || k == 1) wrong_top += ly->top[LP_FLOW_RES][f] != pi[L][f];
            if (k == 1) wrong_top += ly->top[LP_FLOW_MLP][f] != sg[L][f];
            if (k == 2) wrong_top += ly->top[LP_FLOW_ATT][f] != sg[L][f];
            int want = k == 0 ? LP_FLOW_TRANSLATED : k == 1 ? LP_FLOW_PROC_MLP : k == 2 ? LP_FLOW_NEWBORN : LP_FLOW_UNEXPLAINED;
            if (k < 3) wrong_cls += ly->cls[f] != want;
            else n_unexpl++, unexpl_ok += ly->cls[f] == want;
            if (k == 2 && ly->cls[f] == LP_FLOW_NEWBORN) CHECK(ly->src[f] == LP_FLOW_ATT, "newborn %d: source %d", f, ly->src[f]);
        }
    }
    CHECK(wrong_top == 0, "%d true predecessors not found by top-1 matching", wrong_top);
    CHECK(wrong_cls == 0, "%d constructed features in the wrong class", wrong_cls);
    CHECK(unexpl_ok >= n_unexpl * 8 / 10, "only %d of %d random features unexplained", unexpl_ok, n_unexpl);
    /* layer 0 has no residual predecessor */
    CHECK(!fl.layer[0].has[LP_FLOW_RES] && fl.layer[0].count[LP_FLOW_TRANSLATED] == 0, "layer 0 translated features");
    /* chain and graph of a translated feature at layer 2 */
    int chain[8];
    int n = lp_flow_chain(&fl, 2, 0, chain);
    CHECK(n == 3 && chain[0] == 0 && chain[1] == pi[2][0] && chain[2] == pi[1][pi[2][0]], "chain %d: %d %d %d", n, chain[0],
          chain[1], chain[2]);
    lp_flow_graph g;
    CHECK_OK(lp_flow_graph_build(&fl, 2, 0, &g));
    CHECK(g.n_nodes == 1 + 3 + 3 + 2 && g.n_edges == 8, "graph has %d nodes, %d edges", g.n_nodes, g.n_edges);
    CHECK(lp_flow_graph_build(&fl, 2, F, &g) == LP_ERR_ARG, "out-of-range feature accepted");
    CHECK(lp_flow_graph_build(&fl, 3, 0, &g) == LP_ERR_ARG, "out-of-range layer accepted");
    lp_flow_graph_build(&fl, 2, 0, &g);
    char dir[] = "/tmp/loupe_flow_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char pj[256], pd[256], pf[256];
    snprintf(pj, sizeof pj, "%s/g.json", dir);
    snprintf(pd, sizeof pd, "%s/g.dot", dir);
    snprintf(pf, sizeof pf, "%s/flow.json", dir);
    const char *labels[16] = {"a \"quoted\" label"};
    CHECK_OK(lp_flow_graph_write_json(&g, labels, pj));
    CHECK_OK(lp_flow_graph_write_dot(&g, labels, pd));
    CHECK_OK(lp_flow_write_json(&fl, pf));
    char *txt = NULL;
    CHECK_OK(lp_read_file(pj, &txt, NULL));
    cJSON *j = cJSON_Parse(txt);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "edges")) == 8, "graph JSON edges");
    cJSON_Delete(j);
    free(txt);
    CHECK_OK(lp_read_file(pd, &txt, NULL));
    CHECK(strstr(txt, "digraph") && strstr(txt, "R1_") && strstr(txt, "\\\"quoted\\\""), "DOT content");
    free(txt);
    CHECK_OK(lp_read_file(pf, &txt, NULL));
    j = cJSON_Parse(txt);
    CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers")) == 3, "flow.json layers");
    cJSON_Delete(j);
    free(txt);
    /* validation counts: one token where feature 0 of R2 and its R and M predecessors fire */
    lp_flow_val v;
    CHECK_OK(lp_flow_val_init(&v, NL));
    lp_sae_codes cr = {0}, cp = {0}, cm = {0};
    int64_t rp[2] = {0, 2};
    int32_t ir[2] = {0, 1}, ip[1] = {pi[2][0]}, im[1] = {fl.layer[2].top[LP_FLOW_MLP][0]};
    float vr[2] = {1.0f, 0.5f}, vp[1] = {2.0f}, vm[1] = {0.3f};
    cr.B = 1, cr.rowptr = rp, cr.idx = ir, cr.val = vr;
    int64_t rp1[2] = {0, 1};
    cp.B = 1, cp.rowptr = rp1, cp.idx = ip, cp.val = vp;
    cm.B = 1, cm.rowptr = rp1, cm.idx = im, cm.val = vm;
    CHECK_OK(lp_flow_val_add(&v, &fl, 2, &cr, &cp, &cm, NULL));
    int64_t *c2 = v.counts + (int64_t)2 * LP_FLOW_NCLASS * LP_FLOW_NGROUPS;
    CHECK(c2[fl.layer[2].cls[0] * LP_FLOW_NGROUPS + 3] == 1, "feature 0 should count in group R+M");
    int64_t tot = 0;
    for (int i = 0; i < LP_FLOW_NCLASS * LP_FLOW_NGROUPS; i++) tot += c2[i];
    CHECK(tot == 2, "two events expected, got %lld", (long long)tot);
    lp_flow_val_free(&v);
    lp_flow_free(&fl);
    /* d_in mismatch between sites */
    lp_sae *odd = new_sae(32, F, "blocks.1.hook_mlp_out", 9);
    lp_sae *mlp2[3] = {mlp[0], odd, mlp[2]};
    CHECK(lp_flow_compute(&fl, NL, res, mlp2, att, &o) == LP_ERR_ARG, "d_in mismatch accepted");
    CHECK(strstr(lp_errmsg(), "d_in=32") != NULL, "message: %s", lp_errmsg());
    /* sites on disk: a good set loads; a misplaced SAE is refused */
    for (int L = 0; L < NL; L++) {
        lp_sae *trio[3] = {res[L], mlp[L], att[L]};
        for (int p = 0; p < 3; p++) {
            char sd[512];
            snprintf(sd, sizeof sd, "%s/sites/%s/seed0", dir, trio[p]->cfg.hook);
            CHECK_OK(lp_sae_save(trio[p], sd, LP_SAE_FMT_SAELENS));
        }
    }
    char sites[300];
    snprintf(sites, sizeof sites, "%s/sites", dir);
    lp_flow_sites S;
    CHECK_OK(lp_flow_sites_load(&S, sites, 0, 0));
    CHECK(S.n_layers == 3 && S.sae[LP_FLOW_ATT][2], "loaded %d layers", S.n_layers);
    lp_flow_sites_free(&S);
    CHECK(lp_flow_sites_load(&S, sites, 1, 0) != 0, "seed1 does not exist");
    char sd[512];
    snprintf(sd, sizeof sd, "%s/sites/blocks.1.hook_mlp_out/seed0", dir);
    CHECK_OK(lp_sae_save(odd, sd, LP_SAE_FMT_SAELENS)); /* width 32 among 64 */
    CHECK(lp_flow_sites_load(&S, sites, 0, 0) == LP_ERR_ARG && strstr(lp_errmsg(), "d_in=32"), "mismatch: %s", lp_errmsg());
    CHECK_OK(lp_sae_save(res[1], sd, LP_SAE_FMT_SAELENS)); /* a resid SAE in the mlp directory */
    CHECK(lp_flow_sites_load(&S, sites, 0, 0) == LP_ERR_ARG && strstr(lp_errmsg(), "trained at blocks.1.hook_resid_post"),
          "misplaced SAE: %s", lp_errmsg());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    lp_sae_free(odd);
    for (int L = 0; L < NL; L++) lp_sae_free(res[L]), lp_sae_free(mlp[L]), lp_sae_free(att[L]);
}

/* the steering hook on a hand-made activation against the formulas */
static void test_steer_hook(void) {
    const int d = 16, F = 40, T = 6;
    lp_sae *s = new_sae(d, F, "blocks.0.hook_resid_post", 3);
    lp_rng r;
    lp_rng_seed(&r, 4);
    for (int f = 0; f < F; f++) s->p[LP_SAE_B_ENC][f] = 0.1f * lp_rng_normal(&r);
    for (int j = 0; j < d; j++) s->p[LP_SAE_B_DEC][j] = 0.2f * lp_rng_normal(&r);
    s->cfg.norm_scale = 1.5f; /* an unfolded scale exercises the unit handling */
    float act[6 * 16], orig[6 * 16];
    for (int i = 0; i < T * d; i++) orig[i] = lp_rng_normal(&r);
    int toks[6] = {1, 50, 60, 70, 80, 90};
    /* codes of every row (normalised space) */
    float xn[6 * 16], pre[6 * 40], xhat[6 * 16];
    for (int i = 0; i < T * d; i++) xn[i] = orig[i] * 1.5f;
    lp_sae_codes c = {0};
    CHECK_OK(lp_sae_encode(s, xn, T, pre, &c, 0));
    lp_sae_decode(s, &c, xhat);
    int fa = c.idx[c.rowptr[2]]; /* a latent active on row 2 */
    for (int variant = 0; variant < 2; variant++)
        for (int op = 0; op < 2; op++) {
            lp_pos_spec pos;
            CHECK_OK(lp_pos_parse("gen", &pos));
            lp_steer st;
            lp_steer_init(&st, variant, &pos, 1);
            st.n_prompt = 3; /* rows 3..5 generated */
            lp_steer_term t = {{0, LP_HOOK_RESID_POST}, s, fa, op, op == LP_STEER_ADD ? 2.5f : -0.5f, 0.8f};
            CHECK_OK(lp_steer_add(&st, &t));
            lp_hooks h;
            lp_hooks_clear(&h);
            lp_config mc = {0};
            mc.dim = d, mc.n_layers = 1;
            lp_model fake;
            memset(&fake, 0, sizeof fake);
            fake.cfg = mc;
            CHECK_OK(lp_steer_hooks(&st, &fake, T, &h));
            memcpy(act, orig, sizeof act);
            lp_hook_ctx ctx = {0, LP_HOOK_RESID_POST, 1, T, d, 0, toks};
            CHECK_OK(h.fn[0](act, &ctx, h.user[0]));
            double worst = 0;
            for (int i = 0; i < T; i++) {
                float a_f = 0;
                for (int64_t q = c.rowptr[i]; q < c.rowptr[i + 1]; q++)
                    if (c.idx[q] == fa) a_f = c.val[q];
                float dz = op == LP_STEER_ADD ? 2.5f * 0.8f : (-0.5f - 1.0f) * a_f;
                for (int j = 0; j < d; j++) {
                    float want = orig[i * d + j];
                    if (i >= 3) {
                        float w = s->p[LP_SAE_W_DEC][fa * d + j];
                        want = variant == LP_STEER_KEEP_ERROR ? orig[i * d + j] + dz * w / 1.5f : (xhat[i * d + j] + dz * w) / 1.5f;
                    }
                    double e = fabs(act[i * d + j] - want);
                    worst = e > worst ? e : worst;
                }
            }
            CHECK(worst < 1e-5, "variant %d op %d: max error %.3g", variant, op, worst);
            CHECK(st.rows == 3, "rows changed %lld", (long long)st.rows);
            lp_steer_free(&st);
            /* too many rows for the scratch */
            lp_steer_init(&st, variant, &pos, 1);
            CHECK_OK(lp_steer_add(&st, &t));
            lp_hooks_clear(&h);
            CHECK_OK(lp_steer_hooks(&st, &fake, 2, &h));
            st.n_prompt = 0;
            CHECK(h.fn[0](act, &ctx, h.user[0]) == LP_ERR_ARG, "overflow of the row buffer not caught");
            lp_steer_free(&st);
        }
    /* bad terms */
    lp_steer st;
    lp_steer_init(&st, 0, NULL, 1);
    lp_steer_term bad = {{0, LP_HOOK_RESID_POST}, s, F, LP_STEER_ADD, 1, 1};
    CHECK(lp_steer_add(&st, &bad) == LP_ERR_ARG && strstr(lp_errmsg(), "out of range"), "feature %d accepted", F);
    bad.feature = -1;
    CHECK(lp_steer_add(&st, &bad) == LP_ERR_ARG, "feature -1 accepted");
    lp_sae *s2 = new_sae(d + 1, F, "blocks.0.hook_resid_post", 5);
    lp_steer_term t2 = {{0, LP_HOOK_RESID_POST}, s2, 0, LP_STEER_ADD, 1, 1};
    CHECK_OK(lp_steer_add(&st, &t2));
    lp_config mc = {0};
    mc.dim = d, mc.n_layers = 1;
    lp_model fake;
    memset(&fake, 0, sizeof fake);
    fake.cfg = mc;
    lp_hooks h;
    lp_hooks_clear(&h);
    CHECK(lp_steer_hooks(&st, &fake, 4, &h) == LP_ERR_ARG && strstr(lp_errmsg(), "d_in=17"), "width mismatch: %s", lp_errmsg());
    lp_steer_free(&st);
    /* site checks */
    CHECK(lp_sae_check_site(s2, "S2", &fake, (lp_hook_point){0, LP_HOOK_RESID_POST}) == LP_ERR_ARG, "d mismatch passes");
    CHECK(lp_sae_check_site(s, "S", &fake, (lp_hook_point){0, LP_HOOK_MLP_OUT}) == LP_ERR_ARG &&
              strstr(lp_errmsg(), "trained at blocks.0.hook_resid_post"),
          "site mismatch: %s", lp_errmsg());
    CHECK_OK(lp_sae_check_site(s, "S", &fake, (lp_hook_point){0, LP_HOOK_RESID_POST}));
    free(c.rowptr), free(c.idx), free(c.val), free(c.pre);
    lp_sae_free(s);
    lp_sae_free(s2);
}

static void test_positions_words(void) {
    lp_pos_spec p;
    CHECK_OK(lp_pos_parse("all", &p));
    CHECK(p.kind == LP_POS_ALL, "all");
    CHECK_OK(lp_pos_parse("4:9", &p));
    CHECK(p.kind == LP_POS_RANGE && p.lo == 4 && p.hi == 9, "range");
    CHECK(lp_pos_selects(&p, 4, 0) && lp_pos_selects(&p, 9, 0) && !lp_pos_selects(&p, 10, 0), "range bounds");
    CHECK_OK(lp_pos_parse("7", &p));
    CHECK(p.lo == 7 && p.hi == 7, "single position");
    CHECK(lp_pos_parse("9:4", &p) == LP_ERR_ARG, "reversed range accepted");
    CHECK(lp_pos_parse("x", &p) == LP_ERR_ARG, "junk accepted");
    CHECK(lp_pos_parse("", &p) == LP_ERR_ARG, "empty accepted");
    CHECK_OK(lp_pos_parse("prompt", &p));
    CHECK(lp_pos_check(&p, 1, 64) == LP_ERR_ARG && strstr(lp_errmsg(), "select nothing"), "BOS-only prompt: %s", lp_errmsg());
    CHECK_OK(lp_pos_check(&p, 5, 64));
    CHECK_OK(lp_pos_parse("gen", &p));
    CHECK(lp_pos_check(&p, 64, 64) == LP_ERR_ARG, "gen with nothing generated");
    CHECK_OK(lp_pos_parse("100:200", &p));
    CHECK(lp_pos_check(&p, 3, 64) == LP_ERR_ARG, "range past the end");
    CHECK_OK(lp_pos_parse("0", &p));
    CHECK(lp_pos_check(&p, 3, 64) == LP_ERR_ARG, "BOS-only range");
    const char *w[] = {"dog", "cat*"};
    int nw = 0;
    CHECK(lp_count_words("The Dog's dog, a doggy; cats and a catalogue. dogdog", w, 2, &nw) == 4, "word hits");
    CHECK(nw == 10, "word count %d", nw);
    CHECK(lp_count_words("", w, 2, &nw) == 0 && nw == 0, "empty text");
}

static void test_lens(void) {
    lp_config c = {0};
    c.dim = 8, c.hidden_dim = 8, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.vocab_size = 300, c.seq_len = 16;
    c.head_size = 4, c.shared_classifier = 1, c.norm_eps = 1e-5f, c.rope_theta = 10000;
    lp_model *m = NULL;
    CHECK_OK(lp_model_new(&m, &c, "mem", "llama2c"));
    if (!m) return;
    lp_rng r;
    lp_rng_seed(&r, 8);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = lp_rng_normal(&r);
    float v[8], sc[300];
    rand_unit(&r, v, 8);
    CHECK_OK(lp_lens(m, v, sc));
    double worst = 0;
    for (int t = 0; t < 300; t++) {
        double s = 0;
        for (int j = 0; j < 8; j++) s += (double)m->p[LP_P_EMB][t * 8 + j] * m->p[LP_P_RMS_FINAL][j] * v[j];
        worst = fabs(s - sc[t]) > worst ? fabs(s - sc[t]) : worst;
    }
    CHECK(worst < 1e-5, "lens differs from the naive product by %.3g", worst);
    int top[5], bot[5];
    lp_lens_top(sc, 300, 5, top, bot);
    int ok = 1;
    for (int i = 0; i + 1 < 5; i++) ok &= sc[top[i]] >= sc[top[i + 1]] && sc[bot[i]] <= sc[bot[i + 1]];
    for (int t = 0; t < 300; t++) ok &= sc[t] <= sc[top[0]] && sc[t] >= sc[bot[0]];
    int beyond = 0;
    for (int t = 0; t < 300; t++) beyond += sc[t] > sc[top[4]];
    CHECK(ok && beyond == 4, "top/bottom lists are not the extremes in order");
    v[3] = NAN;
    CHECK(lp_lens(m, v, sc) == LP_ERR_NUM, "NaN direction accepted");
    lp_model_free(m);
}

int main(void) {
    test_max_cos();
    test_constructed();
    test_steer_hook();
    test_positions_words();
    test_lens();
    return t_done("test_flow");
}
