/* test_sae_variants.c — the SAE variants (hiertopk, kron, boost):
 *   - gradients against central finite differences of double-precision
 *     reference losses with the code support held fixed: HierarchicalTopK's
 *     mean over budgets, KronSAE's mAND and plain product, and the residual
 *     SAE's ‖t − x̂‖² with a frozen zero decoder bias (AuxK included);
 *   - KronSAE's pruned top-k equals a dense top-k over all F products,
 *     bit for bit (k < heads, k ≥ heads, AuxK masks);
 *   - HierarchicalTopK inference at k ≤ K through the splice is the prefix
 *     reconstruction; determinism of 10 training steps;
 *   - stitched boost SAE = base + residual; warm start keeps the function;
 *   - file round trips (encode outputs equal, save→load→save byte-equal),
 *     kron refused in the sparsify layout; bad hyper-parameters give errors.
 * With --torch-case ARCH DIR STEPS it writes a case for the PyTorch reference
 * (tests/test_sae_variants_torch.sh), ARCH one of hiertopk, kron,
 * kron_product, residual. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loupe/sae.h"
#include "loupe/sae_format.h"
#include "loupe/safetensors.h"
#include "loupe/steer.h"
#include "sae/arch.h"
#include "testutil.h"

enum { F = 64, D = 16, BATCH = 32, KH = 6, KAUX = 24, S = 3, H = 8, M = 2, N = 4, NDEAD = 16 };
enum { V_HIER, V_KRON, V_KRONP, V_RESID, V_N };
static const char *k_vname[V_N] = {"hiertopk", "kron", "kron_product", "residual"};

static void make_cfg(lp_sae_config *c, int v) {
    lp_sae_config_default(c);
    c->arch = v == V_HIER ? LP_SAE_HIERTOPK : v == V_RESID ? LP_SAE_BATCHTOPK : LP_SAE_KRON;
    c->d_in = D;
    c->d_sae = F;
    c->k = KH;
    c->k_aux = KAUX;
    c->dead_tokens = 256;
    c->theta_momentum = 0.1f;
    c->kron_heads = H;
    c->kron_m = M;
    c->kron_n = N;
    c->kron_and = v == V_KRONP ? LP_KRON_PRODUCT : LP_KRON_MAND;
    c->no_decoder_bias = v == V_RESID;
}

static lp_sae *make_sae(int v, uint64_t seed) {
    lp_sae_config c;
    make_cfg(&c, v);
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) {
        fprintf(stderr, "make_sae: %s\n", lp_errmsg());
        exit(1);
    }
    lp_sae_init(s, seed);
    lp_rng r;
    lp_rng_seed(&r, seed + 7);
    for (size_t e = 0; e < s->p_size[LP_SAE_B_ENC]; e++)
        s->p[LP_SAE_B_ENC][e] = (v == V_KRON || v == V_KRONP ? 0.3f : 0.0f) + 0.1f * lp_rng_normal(&r);
    if (v != V_RESID)
        for (int j = 0; j < D; j++) s->p[LP_SAE_B_DEC][j] = 0.1f * lp_rng_normal(&r);
    return s;
}

static void make_data(float *x, int n, uint64_t seed) {
    lp_rng r;
    lp_rng_seed(&r, seed);
    for (int i = 0; i < n * D; i++) x[i] = lp_rng_normal(&r);
}

static void make_dead(int64_t *dead) {
    for (int f = 0; f < F; f++) dead[f] = f < NDEAD ? 1000 : 0;
}

/* ---- reference losses (double, support fixed) ------------------------------ */
typedef struct {
    int n[BATCH];         /* main entries per row, in loupe's order */
    int idx[BATCH][F];
    int na[BATCH];        /* AuxK entries per row */
    int aidx[BATCH][F];
    double e_det[BATCH][D], den;
    int have_aux;
} support;

typedef struct {
    const double *We, *be, *Wd, *bd;
} dparams;

static dparams view(const lp_sae *s, const double *P) {
    dparams p;
    p.We = P;
    p.be = p.We + s->p_size[LP_SAE_W_ENC];
    p.Wd = p.be + s->p_size[LP_SAE_B_ENC];
    p.bd = p.Wd + s->p_size[LP_SAE_W_DEC];
    return p;
}

/* value of latent f for row b (relu'd pre; kron: the conjunction) */
static double latent(const lp_sae *s, dparams p, const float *xb, int f) {
    double xc[D];
    for (int j = 0; j < D; j++) xc[j] = xb[j] - p.bd[j];
    if (s->cfg.arch != LP_SAE_KRON) {
        double pre = p.be[f];
        for (int j = 0; j < D; j++) pre += p.We[f * D + j] * xc[j];
        return pre;
    }
    int g = f / (M * N), i = (f % (M * N)) / N, jj = f % N;
    int ip = g * M + i, iq = H * M + g * N + jj;
    double a = p.be[ip], q = p.be[iq];
    for (int j = 0; j < D; j++) a += p.We[ip * D + j] * xc[j], q += p.We[iq * D + j] * xc[j];
    a = a > 0 ? a : 0;
    q = q > 0 ? q : 0;
    return s->cfg.kron_and == LP_KRON_PRODUCT ? a * q : sqrt(a * q);
}

static double ref_loss(const lp_sae *s, const double *P, const float *x, const float *t, const support *sp) {
    dparams p = view(s, P);
    const int K = s->cfg.k, hier = s->cfg.arch == LP_SAE_HIERTOPK;
    double rec = 0, auxn = 0;
    for (int b = 0; b < BATCH; b++) {
        const float *xb = x + b * D, *tb = t + b * D;
        double xh[D], eh[D];
        for (int j = 0; j < D; j++) xh[j] = p.bd[j], eh[j] = 0;
        double row = 0;
        for (int q = 0; q < sp->n[b]; q++) {
            int f = sp->idx[b][q];
            double z = latent(s, p, xb, f);
            for (int j = 0; j < D; j++) xh[j] += z * p.Wd[f * D + j];
            if (hier) /* budget j = q+1 */
                for (int j = 0; j < D; j++) row += (xh[j] - tb[j]) * (xh[j] - tb[j]);
        }
        double full = 0;
        for (int j = 0; j < D; j++) full += (xh[j] - tb[j]) * (xh[j] - tb[j]);
        if (hier) rec += (row + (K - sp->n[b]) * full) / K / BATCH;
        else rec += full / BATCH;
        for (int q = 0; q < sp->na[b]; q++) {
            int f = sp->aidx[b][q];
            double z = latent(s, p, xb, f);
            for (int j = 0; j < D; j++) eh[j] += z * p.Wd[f * D + j];
        }
        for (int j = 0; j < D; j++) auxn += (eh[j] - sp->e_det[b][j]) * (eh[j] - sp->e_det[b][j]);
    }
    return rec + (sp->have_aux ? s->cfg.aux_coeff * auxn / sp->den : 0);
}

static void check_grads(int v) {
    lp_sae *s = make_sae(v, 11), *g;
    CHECK_OK(lp_sae_like(&g, s));
    float x[BATCH * D], t[BATCH * D];
    make_data(x, BATCH, 5);
    make_data(t, BATCH, 6);
    const float *tn = v == V_RESID ? t : x;
    int64_t dead[F];
    make_dead(dead);
    lp_sae_work *w;
    CHECK_OK(lp_sae_work_new(&w, s, BATCH));
    lp_sae_stats st;
    CHECK_OK(lp_sae_grads_target(s, g, w, x, tn, BATCH, dead, &st));
    CHECK(st.n_dead == NDEAD && st.aux > 0, "%s: AuxK inactive (dead %lld, aux %g)", k_vname[v], (long long)st.n_dead,
          st.aux);
    static support sp;
    memset(&sp, 0, sizeof sp);
    const lp_sae_codes *c = lp_sae_work_codes(w);
    for (int b = 0; b < BATCH; b++)
        for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) sp.idx[b][sp.n[b]++] = c->idx[j];
    if (v == V_HIER)
        for (int b = 0; b < BATCH; b++) {
            CHECK(sp.n[b] == KH, "hiertopk row %d has %d codes", b, sp.n[b]);
            for (int64_t j = c->rowptr[b] + 1; j < c->rowptr[b + 1]; j++)
                CHECK(c->val[j] <= c->val[j - 1], "hiertopk codes not sorted");
        }
    /* AuxK support: the k_aux largest latents among the dead ones, per row */
    double *P = malloc(s->n_params * sizeof *P);
    for (size_t i = 0; i < s->n_params; i++) P[i] = s->params[i];
    dparams pp = view(s, P);
    const float *xh = lp_sae_work_xhat(w);
    for (int b = 0; b < BATCH; b++) {
        double val[NDEAD];
        for (int f = 0; f < NDEAD; f++) val[f] = latent(s, pp, x + b * D, f);
        uint8_t used[NDEAD] = {0};
        for (int q = 0; q < KAUX && q < NDEAD; q++) {
            int best = -1;
            for (int f = 0; f < NDEAD; f++)
                if (!used[f] && val[f] > 0 && (best < 0 || val[f] > val[best])) best = f;
            if (best >= 0) used[best] = 1, sp.aidx[b][sp.na[b]++] = best, sp.have_aux = 1;
        }
        for (int j = 0; j < D; j++) {
            sp.e_det[b][j] = (double)tn[b * D + j] - xh[b * D + j];
            sp.den += sp.e_det[b][j] * sp.e_det[b][j];
        }
    }
    double l0 = ref_loss(s, P, x, tn, &sp);
    CHECK(t_close(st.loss, l0, 1e-5, 1e-7), "%s: loss %.8g vs reference %.8g", k_vname[v], st.loss, l0);
    const char *names[] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    size_t off = 0;
    for (int k = 0; k < 4; k++) {
        double maxdiff = 0, maxg = 0;
        for (size_t i = off; i < off + s->p_size[k]; i++) {
            double h = 1e-5, keep = P[i];
            P[i] = keep + h;
            double lp = ref_loss(s, P, x, tn, &sp);
            P[i] = keep - h;
            double lm = ref_loss(s, P, x, tn, &sp);
            P[i] = keep;
            double fd = (lp - lm) / (2 * h), an = g->params[i];
            if (v == V_RESID && k == LP_SAE_B_DEC) fd = 0; /* frozen at 0 */
            if (fabs(an - fd) > maxdiff) maxdiff = fabs(an - fd);
            if (fabs(fd) > maxg) maxg = fabs(fd);
        }
        double rel = v == V_RESID && k == LP_SAE_B_DEC ? maxdiff : maxdiff / (maxg > 0 ? maxg : 1);
        CHECK(rel < 1e-3, "%s grad %s: max rel err %.3g", k_vname[v], names[k], rel);
        printf("%-12s %-6s max|g-fd|/max|fd| = %.2e\n", k_vname[v], names[k], rel);
        off += s->p_size[k];
    }
    free(P);
    lp_sae_work_free(w);
    lp_sae_free(s);
    lp_sae_free(g);
}

/* ---- kron's pruned top-k vs a dense top-k over all products ---------------- */
static void check_kron_select(int k, int product, int masked) {
    lp_sae_config c;
    make_cfg(&c, product ? V_KRONP : V_KRON);
    c.k = k;
    lp_sae *s;
    CHECK_OK(lp_sae_new(&s, &c));
    lp_sae_init(s, 3 + k);
    lp_rng r;
    lp_rng_seed(&r, 99 + k);
    for (size_t e = 0; e < s->p_size[LP_SAE_B_ENC]; e++) s->p[LP_SAE_B_ENC][e] = 0.2f * lp_rng_normal(&r);
    enum { R = 200 };
    float *x = malloc(sizeof(float) * R * D);
    make_data(x, R, 17 + k);
    const int64_t E = lp_sae_enc_rows(s);
    float *pre = malloc(sizeof(float) * R * E), *xc = malloc(sizeof(float) * R * D);
    float *dense = malloc(sizeof(float) * R * F), *zero = calloc(F, sizeof(float));
    uint8_t mask[F];
    for (int f = 0; f < F; f++) mask[f] = (f * 7) % 3 == 0;
    lp_sae_pre(s, x, R, xc, pre);
    lp_sae_codes a = {0}, b = {0};
    const lp_sae_ops *ops = lp_sae_ops_for(LP_SAE_KRON);
    if (masked) CHECK_OK(ops->select_aux(s, pre, R, k, mask, &a));
    else CHECK_OK(ops->select(s, pre, R, &a, 1, NULL));
    const float *be = s->p[LP_SAE_B_ENC];
    for (int rr = 0; rr < R; rr++)
        for (int f = 0; f < F; f++) {
            int g = f / (M * N), i = (f % (M * N)) / N, j = f % N;
            int ip = g * M + i, iq = H * M + g * N + j;
            float p = fmaxf(pre[rr * E + ip] + be[ip], 0.0f), q = fmaxf(pre[rr * E + iq] + be[iq], 0.0f);
            float z = p > 0 && q > 0 ? (product ? p * q : sqrtf(p * q)) : 0.0f;
            dense[rr * F + f] = z;
        }
    CHECK_OK(lp_select_topk_rows(dense, zero, R, F, k, masked ? mask : NULL, &b));
    int same = a.rowptr[R] == b.rowptr[R];
    for (int rr = 0; rr <= R && same; rr++) same = a.rowptr[rr] == b.rowptr[rr];
    for (int64_t j = 0; same && j < a.rowptr[R]; j++) same = a.idx[j] == b.idx[j] && a.val[j] == b.val[j];
    CHECK(same, "kron top-k (k=%d%s%s) differs from the dense top-k", k, product ? ", product" : "",
          masked ? ", masked" : "");
    lp_codes_free(&a);
    lp_codes_free(&b);
    free(x);
    free(pre);
    free(xc);
    free(dense);
    free(zero);
    lp_sae_free(s);
}

/* ---- hiertopk at k ≤ K through the splice: the prefix reconstruction ------ */
static void check_hier_prefix(void) {
    lp_sae *s = make_sae(V_HIER, 21);
    s->cfg.norm_scale = 1.7f;
    enum { R = 12 };
    float act[R * D], orig[R * D];
    make_data(act, R, 31);
    memcpy(orig, act, sizeof act);
    int tokens[R];
    for (int i = 0; i < R; i++) tokens[i] = 5 + i; /* no BOS */
    lp_hook_ctx ctx = {.layer = 0, .kind = 0, .B = 1, .T = R, .D = D, .pos0 = 0, .tokens = tokens};
    /* codes at K, sorted */
    float xn[R * D], xc[R * D], pre[R * F];
    for (int i = 0; i < R * D; i++) xn[i] = orig[i] * s->cfg.norm_scale;
    lp_sae_pre(s, xn, R, xc, pre);
    lp_sae_codes c = {0};
    CHECK_OK(lp_sae_ops_for(LP_SAE_HIERTOPK)->select(s, pre, R, &c, 0, NULL));
    for (int k = 1; k <= KH; k++) {
        lp_splice sp;
        CHECK_OK(lp_splice_init(&sp, LP_SPLICE_SAE, s, 1, R, D));
        sp.k_override = k;
        memcpy(act, orig, sizeof act);
        CHECK_OK(lp_splice_hook(act, &ctx, &sp));
        double worst = 0;
        for (int b = 0; b < R; b++) {
            double want[D];
            for (int j = 0; j < D; j++) want[j] = s->p[LP_SAE_B_DEC][j];
            for (int64_t q = c.rowptr[b]; q < c.rowptr[b] + k && q < c.rowptr[b + 1]; q++)
                for (int j = 0; j < D; j++) want[j] += (double)c.val[q] * s->p[LP_SAE_W_DEC][c.idx[q] * D + j];
            for (int j = 0; j < D; j++) {
                double d = fabs(act[b * D + j] - want[j] / s->cfg.norm_scale);
                worst = d > worst ? d : worst;
            }
        }
        CHECK(worst < 1e-5, "hiertopk k=%d: splice differs from the prefix reconstruction by %g", k, worst);
        lp_splice_free(&sp);
    }
    lp_codes_free(&c);
    lp_sae_free(s);
}

/* ---- training steps (determinism, torch cases) ----------------------------- */
static void run_steps(lp_sae *s, int steps, const float *data, const float *tgt, int64_t *dead) {
    lp_sae *g, *m, *v;
    lp_sae_like(&g, s);
    lp_sae_like(&m, s);
    lp_sae_like(&v, s);
    lp_sae_work *w;
    lp_sae_work_new(&w, s, BATCH);
    lp_adam a = {1e-2f, 0.9f, 0.999f, 1e-8f};
    int have_theta = 0;
    for (int t = 0; t < steps; t++) {
        lp_sae_stats st;
        const float *xb = data + (t % S) * BATCH * D;
        lp_sae_grads_target(s, g, w, xb, tgt ? tgt + (t % S) * BATCH * D : xb, BATCH, dead, &st);
        lp_sae_adam_step(s, g, m, v, &a, t + 1);
        const uint8_t *fired = lp_sae_work_fired(w);
        for (int f = 0; f < F; f++) dead[f] = fired[f] ? 0 : dead[f] + BATCH;
        if (s->cfg.arch == LP_SAE_BATCHTOPK && st.kept_min > 0) {
            if (!have_theta) s->theta = st.kept_min, have_theta = 1;
            else s->theta = (1 - s->cfg.theta_momentum) * s->theta + s->cfg.theta_momentum * st.kept_min;
        }
    }
    lp_sae_free(g);
    lp_sae_free(m);
    lp_sae_free(v);
    lp_sae_work_free(w);
}

static void check_determinism(int v) {
    lp_sae *a = make_sae(v, 3), *b = make_sae(v, 3);
    float *data = malloc(sizeof(float) * S * BATCH * D), *tgt = malloc(sizeof(float) * S * BATCH * D);
    make_data(data, S * BATCH, 9);
    make_data(tgt, S * BATCH, 10);
    int64_t d1[F], d2[F];
    make_dead(d1);
    make_dead(d2);
    run_steps(a, 10, data, v == V_RESID ? tgt : NULL, d1);
    run_steps(b, 10, data, v == V_RESID ? tgt : NULL, d2);
    CHECK(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0, "%s: not deterministic", k_vname[v]);
    if (v == V_RESID)
        for (int j = 0; j < D; j++) CHECK(a->p[LP_SAE_B_DEC][j] == 0.0f, "residual: b_dec moved");
    free(data);
    free(tgt);
    lp_sae_free(a);
    lp_sae_free(b);
}

static int add_params(lp_st_writer *w, const lp_sae *s) {
    int64_t E = lp_sae_enc_rows(s);
    int64_t sEd[2] = {E, D}, sE[1] = {E}, sFD[2] = {F, D}, sD[1] = {D}, s1[1] = {1};
    return lp_st_writer_add(w, "W_enc", LP_DT_F32, 2, sEd, s->p[LP_SAE_W_ENC]) ||
           lp_st_writer_add(w, "b_enc", LP_DT_F32, 1, sE, s->p[LP_SAE_B_ENC]) ||
           lp_st_writer_add(w, "W_dec", LP_DT_F32, 2, sFD, s->p[LP_SAE_W_DEC]) ||
           lp_st_writer_add(w, "b_dec", LP_DT_F32, 1, sD, s->p[LP_SAE_B_DEC]) ||
           lp_st_writer_add(w, "theta", LP_DT_F32, 1, s1, &s->theta);
}

static int write_case(const char *name, const char *dir, int steps) {
    int v = -1;
    for (int i = 0; i < V_N; i++)
        if (strcmp(name, k_vname[i]) == 0) v = i;
    if (v < 0) return fprintf(stderr, "unknown variant %s\n", name), 2;
    lp_sae *s = make_sae(v, 11);
    float *data = malloc(sizeof(float) * S * BATCH * D), *tgt = malloc(sizeof(float) * S * BATCH * D);
    make_data(data, S * BATCH, 5);
    make_data(tgt, S * BATCH, 6);
    int64_t dead[F];
    make_dead(dead);
    char path[1024];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f,
            "{\"variant\":\"%s\",\"d_in\":%d,\"d_sae\":%d,\"k\":%d,\"heads\":%d,\"m\":%d,\"n\":%d,"
            "\"theta_momentum\":%.9g,\"k_aux\":%d,\"aux_coeff\":%.9g,\"dead_tokens\":%lld,"
            "\"lr\":0.01,\"beta1\":0.9,\"beta2\":0.999,\"eps\":1e-8}\n",
            name, D, F, KH, H, M, N, s->cfg.theta_momentum, KAUX, s->cfg.aux_coeff, (long long)s->cfg.dead_tokens);
    fclose(f);
    double deadd[F];
    for (int i = 0; i < F; i++) deadd[i] = (double)dead[i];
    int64_t sF[1] = {F}, sx[3] = {S, BATCH, D};
    lp_st_writer *w = lp_st_writer_new();
    add_params(w, s);
    lp_st_writer_add(w, "dead_since", LP_DT_F64, 1, sF, deadd);
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    w = lp_st_writer_new();
    lp_st_writer_add(w, "x", LP_DT_F32, 3, sx, data);
    if (v == V_RESID) lp_st_writer_add(w, "t", LP_DT_F32, 3, sx, tgt);
    snprintf(path, sizeof path, "%s/data.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    /* the loss at step 0, then loupe's run */
    {
        lp_sae *s0 = make_sae(v, 11), *g0;
        lp_sae_like(&g0, s0);
        lp_sae_work *wk;
        lp_sae_work_new(&wk, s0, BATCH);
        lp_sae_stats st;
        lp_sae_grads_target(s0, g0, wk, data, v == V_RESID ? tgt : data, BATCH, dead, &st);
        snprintf(path, sizeof path, "%s/loupe_loss0.txt", dir);
        f = fopen(path, "w");
        fprintf(f, "%.9g %.9g %.9g\n", st.loss, st.rec, st.aux);
        fclose(f);
        lp_sae_work_free(wk);
        lp_sae_free(s0);
        lp_sae_free(g0);
    }
    run_steps(s, steps, data, v == V_RESID ? tgt : NULL, dead);
    w = lp_st_writer_new();
    add_params(w, s);
    snprintf(path, sizeof path, "%s/loupe.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    lp_sae_free(s);
    free(data);
    free(tgt);
    return 0;
}

/* ---- boost: stitching, warm start, the trainer's target -------------------- */
static void check_stitch(void) {
    /* base: batchtopk with a θ; residual: no decoder bias, other norm scale */
    lp_sae_config c;
    make_cfg(&c, V_RESID);
    c.no_decoder_bias = 0;
    lp_sae *base, *res = make_sae(V_RESID, 41), *st = NULL;
    CHECK_OK(lp_sae_new(&base, &c));
    lp_sae_init(base, 40);
    lp_rng r;
    lp_rng_seed(&r, 42);
    for (int f = 0; f < F; f++) base->p[LP_SAE_B_ENC][f] = 0.1f * lp_rng_normal(&r);
    for (int j = 0; j < D; j++) base->p[LP_SAE_B_DEC][j] = 0.2f * lp_rng_normal(&r);
    base->theta = 0.35f;
    base->cfg.norm_scale = 1.3f;
    res->theta = 0.5f;
    res->cfg.norm_scale = 0.8f;
    CHECK_OK(lp_sae_stitch(&st, base, res));
    enum { R = 64 };
    float x[R * D], xb[R * D], xr[R * D], xs[R * D];
    make_data(x, R, 43);
    CHECK_OK(lp_sae_reconstruct(base, x, R, xb));
    CHECK_OK(lp_sae_reconstruct(res, x, R, xr)); /* ê (no decoder bias) */
    CHECK_OK(lp_sae_reconstruct(st, x, R, xs));
    double worst = 0, mag = 0;
    for (int i = 0; i < R * D; i++) {
        worst = fmax(worst, fabs(xs[i] - (xb[i] + xr[i])));
        mag = fmax(mag, fabs(xr[i]));
    }
    CHECK(mag > 0.1 && worst < 1e-5, "stitched x̂ differs from base + residual by %g (residual %g)", worst, mag);
    CHECK(st->cfg.arch == LP_SAE_BOOST && st->cfg.base_latents == F && st->cfg.d_sae == 2 * F, "stitched config");
    /* file round trip of the stitched SAE, both layouts */
    for (int fmt = 0; fmt < 2; fmt++) {
        char dir[256];
        snprintf(dir, sizeof dir, "/tmp/loupe_tv_boost_%d_%d", (int)getpid(), fmt);
        CHECK_OK(lp_sae_save(st, dir, fmt));
        lp_sae *l = NULL;
        CHECK_OK(lp_sae_load(&l, dir, D));
        if (l) {
            CHECK(l->cfg.arch == LP_SAE_BOOST && l->cfg.base_latents == F, "boost reload: arch/base_latents");
            float xl[R * D];
            CHECK_OK(lp_sae_reconstruct(l, x, R, xl));
            double wl = 0;
            for (int i = 0; i < R * D; i++) wl = fmax(wl, fabs(xl[i] - xs[i]));
            CHECK(wl < 1e-5, "boost %s reload differs by %g", lp_sae_format_name(fmt), wl);
            lp_sae_free(l);
        }
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) {
        }
    }
    /* refusals */
    lp_sae *bad = NULL;
    base->cfg.arch = LP_SAE_TOPK;
    CHECK(lp_sae_stitch(&bad, base, res) == LP_ERR_ARG, "a topk base must be refused");
    printf("topk base: %s\n", lp_errmsg());
    base->cfg.arch = LP_SAE_BATCHTOPK;
    res->p[LP_SAE_B_DEC][0] = 0.5f;
    CHECK(lp_sae_stitch(&bad, base, res) == LP_ERR_ARG, "a residual with a decoder bias must be refused");
    res->p[LP_SAE_B_DEC][0] = 0.0f;
    lp_sae_config c2 = res->cfg;
    c2.d_in = D + 1;
    lp_sae *other;
    CHECK_OK(lp_sae_new(&other, &c2));
    CHECK(lp_sae_stitch(&bad, base, other) == LP_ERR_ARG, "a residual of another d must be refused");
    printf("other d: %s\n", lp_errmsg());
    lp_sae_free(other);
    lp_sae_free(base);
    lp_sae_free(res);
    lp_sae_free(st);
}

/* a store of R rows in /tmp (d = D) */
static lp_store *make_store(const char *dir, int R, uint64_t seed) {
    const char *hooks[1] = {"blocks.0.hook_resid_post"};
    int dims[1] = {D};
    lp_store_spec spec = {.model = "none", .data = "none", .ctx = 8, .n_hooks = 1, .hooks = hooks, .dims = dims};
    lp_store_writer *w;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    if (lp_store_create(&w, dir, &spec)) return NULL;
    float *x = malloc(sizeof(float) * R * D);
    make_data(x, R, seed);
    for (int i = 0; i < R * D; i++) x[i] = 3.0f * x[i] + 0.5f;
    const float *acts[1] = {x};
    int rc = lp_store_append(w, R, acts, NULL, NULL, NULL) || lp_store_close(w);
    free(x);
    lp_store *s = NULL;
    if (rc || lp_store_open(&s, dir, NULL)) return NULL;
    return s;
}

static void check_trainer(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/loupe_tv_store_%d", (int)getpid());
    lp_store *st = make_store(dir, 512, 51);
    CHECK(st != NULL, "store: %s", lp_errmsg());
    if (!st) return;
    lp_train_opts o;
    lp_train_opts_default(&o);
    o.tokens = 512 * 40;
    o.batch = 128;
    o.lr = 1e-2f;
    o.init_sample = 512;
    o.log_every = 0;
    /* base batchtopk, then a residual with the trainer's target */
    lp_sae_config c;
    make_cfg(&c, V_RESID);
    c.no_decoder_bias = 0;
    lp_sae_resolve_defaults(&c, &o);
    lp_sae *base, *res;
    CHECK_OK(lp_sae_new(&base, &c));
    CHECK_OK(lp_sae_train(base, st, &o));
    c.no_decoder_bias = 1;
    c.d_sae = 32;
    c.k = 3;
    c.k_aux = 8;
    CHECK_OK(lp_sae_new(&res, &c));
    o.base = base;
    CHECK_OK(lp_sae_train(res, st, &o));
    for (int j = 0; j < D; j++) CHECK(res->p[LP_SAE_B_DEC][j] == 0.0f, "residual b_dec moved");
    /* the residual lowers the error of the base on the training rows */
    enum { R = 256 };
    float x[R * D], xb[R * D], xr[R * D];
    lp_store_read(st, 0, R, x);
    lp_sae_reconstruct(base, x, R, xb);
    lp_sae_reconstruct(res, x, R, xr);
    double e0 = 0, e1 = 0;
    for (int i = 0; i < R * D; i++) {
        e0 += (x[i] - xb[i]) * (x[i] - xb[i]);
        e1 += (x[i] - xb[i] - xr[i]) * (x[i] - xb[i] - xr[i]);
    }
    CHECK(e1 < 0.95 * e0, "residual does not help: %g -> %g", e0, e1);
    printf("residual training: base error %.4g -> base+residual %.4g\n", e0, e1);
    /* a base of another d is refused */
    lp_sae_config c3 = c;
    c3.d_in = D + 2;
    lp_sae *other, *r2;
    CHECK_OK(lp_sae_new(&other, &c3));
    CHECK_OK(lp_sae_new(&r2, &c));
    o.base = other;
    CHECK(lp_sae_train(r2, st, &o) == LP_ERR_ARG, "base of another d must be refused");
    printf("base of other d: %s\n", lp_errmsg());
    lp_sae_free(other);
    /* boost cannot be trained directly */
    lp_sae *stitched = NULL;
    CHECK_OK(lp_sae_stitch(&stitched, base, res));
    o.base = NULL;
    CHECK(lp_sae_train(stitched, st, &o) == LP_ERR_ARG, "training a boost SAE must be refused");
    /* warm start with no steps keeps the function (only the scale moves) */
    for (int arch = 0; arch < 2; arch++) {
        lp_sae *ws = make_sae(arch ? V_KRONP : V_HIER, 61);
        ws->cfg.norm_scale = 0.37f;
        float before[R * D], after[R * D];
        lp_sae_reconstruct(ws, x, R, before);
        float old = ws->cfg.norm_scale;
        lp_train_opts ow = o;
        ow.tokens = 0;
        ow.warm_start = 1;
        ow.init_sample = 512;
        CHECK_OK(lp_sae_train(ws, st, &ow));
        lp_sae_reconstruct(ws, x, R, after);
        double worst = 0, mag = 0;
        for (int i = 0; i < R * D; i++) worst = fmax(worst, fabs(after[i] - before[i])), mag = fmax(mag, fabs(before[i]));
        CHECK(ws->cfg.norm_scale != old && worst < 1e-4 * (1 + mag), "warm start (%s) changed the function by %g",
              arch ? "kron product" : "hiertopk", worst);
        lp_sae_free(ws);
    }
    lp_sae_free(stitched);
    lp_sae_free(r2);
    lp_sae_free(base);
    lp_sae_free(res);
    lp_store_close_reader(st);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
}

/* ---- files ---------------------------------------------------------------- */
static int file_bytes(const char *path, char **buf, size_t *n) { return lp_read_file(path, buf, n); }

static void check_roundtrip(int v, int fmt) {
    lp_sae *s = make_sae(v, 71);
    s->cfg.norm_scale = 1.9f;
    snprintf(s->cfg.hook, sizeof s->cfg.hook, "blocks.1.hook_resid_post");
    char dir[200], dir2[256];
    snprintf(dir, sizeof dir, "/tmp/loupe_tv_rt_%d_%d_%d", (int)getpid(), v, fmt);
    snprintf(dir2, sizeof dir2, "%s_b", dir);
    int rc = lp_sae_save(s, dir, fmt);
    if ((v == V_KRON || v == V_KRONP) && fmt == LP_SAE_FMT_SPARSIFY) {
        CHECK(rc == LP_ERR_ARG, "kron in the sparsify layout must be refused");
        printf("kron sparsify: %s\n", lp_errmsg());
        lp_sae_free(s);
        return;
    }
    CHECK_OK(rc);
    lp_sae *l = NULL;
    CHECK_OK(lp_sae_load(&l, dir, D));
    if (!l) {
        lp_sae_free(s);
        return;
    }
    int kr = s->cfg.arch == LP_SAE_KRON;
    CHECK(l->cfg.arch == s->cfg.arch && l->cfg.k == s->cfg.k &&
              (!kr || (l->cfg.kron_heads == s->cfg.kron_heads && l->cfg.kron_m == s->cfg.kron_m &&
                       l->cfg.kron_n == s->cfg.kron_n && l->cfg.kron_and == s->cfg.kron_and)) &&
              l->cfg.no_decoder_bias == s->cfg.no_decoder_bias,
          "%s %s: config after reload", k_vname[v], lp_sae_format_name(fmt));
    enum { R = 64 };
    float x[R * D], a[R * D], b[R * D];
    make_data(x, R, 73);
    for (int i = 0; i < R * D; i++) x[i] *= 2.0f;
    CHECK_OK(lp_sae_reconstruct(s, x, R, a));
    CHECK_OK(lp_sae_reconstruct(l, x, R, b));
    double worst = 0;
    for (int i = 0; i < R * D; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    CHECK(worst < 1e-5, "%s %s: reload reconstructs differently (%g)", k_vname[v], lp_sae_format_name(fmt), worst);
    CHECK_OK(lp_sae_save(l, dir2, fmt));
    const char *wname = fmt == LP_SAE_FMT_SAELENS ? "sae_weights.safetensors" : "sae.safetensors";
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/%s", dir, wname);
    snprintf(p2, sizeof p2, "%s/%s", dir2, wname);
    char *b1 = NULL, *b2 = NULL;
    size_t n1 = 0, n2 = 0;
    file_bytes(p1, &b1, &n1);
    file_bytes(p2, &b2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "%s %s: save -> load -> save is not byte-identical",
          k_vname[v], lp_sae_format_name(fmt));
    free(b1);
    free(b2);
    char desc[1024];
    lp_sae_describe(l, desc, sizeof desc);
    printf("%s", desc);
    lp_sae_free(l);
    lp_sae_free(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, dir2);
    if (system(cmd)) {
    }
}

static void check_bad_config(void) {
    lp_sae_config c;
    lp_sae *s = NULL;
    make_cfg(&c, V_KRON);
    c.kron_heads = 7; /* 7·2·4 = 56 ≠ 64 */
    CHECK(lp_sae_new(&s, &c) == LP_ERR_ARG && strstr(lp_errmsg(), "heads*m*n"), "kron h·m·n ≠ F: %s", lp_errmsg());
    printf("kron h*m*n != F: %s\n", lp_errmsg());
    make_cfg(&c, V_KRON);
    c.k = F + 1;
    CHECK(lp_sae_new(&s, &c) == LP_ERR_ARG, "kron K > F accepted");
    make_cfg(&c, V_HIER);
    c.k = F + 1;
    CHECK(lp_sae_new(&s, &c) == LP_ERR_ARG && strstr(lp_errmsg(), "K="), "hiertopk K > F: %s", lp_errmsg());
    printf("hiertopk K > F: %s\n", lp_errmsg());
    make_cfg(&c, V_KRON);
    c.kron_m = 0;
    CHECK(lp_sae_new(&s, &c) == LP_ERR_ARG, "kron m = 0 accepted");
    make_cfg(&c, V_HIER);
    c.arch = LP_SAE_BOOST;
    CHECK(lp_sae_new(&s, &c) == LP_ERR_ARG, "boost without base_latents accepted");
    int arch = -1;
    CHECK(lp_sae_arch_parse("hiertopk", &arch) == 0 && arch == LP_SAE_HIERTOPK, "parse hiertopk");
    CHECK(lp_sae_arch_parse("kron", &arch) == 0 && arch == LP_SAE_KRON, "parse kron");
    CHECK(lp_sae_arch_parse("boost", &arch) == 0 && arch == LP_SAE_BOOST, "parse boost");
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--torch-case") == 0) return write_case(argv[2], argv[3], atoi(argv[4]));
    for (int v = 0; v < V_N; v++) check_grads(v);
    for (int prod = 0; prod < 2; prod++) {
        check_kron_select(KH, prod, 0);     /* k < heads·m: pruned */
        check_kron_select(12, prod, 0);
        check_kron_select(1, prod, 0);
        check_kron_select(20, prod, 0);     /* k > heads: every product */
        check_kron_select(F, prod, 0);
        check_kron_select(KAUX, prod, 1);   /* AuxK's masked selection */
    }
    check_hier_prefix();
    for (int v = 0; v < V_N; v++) check_determinism(v);
    check_stitch();
    check_trainer();
    for (int v = 0; v < V_N; v++)
        for (int fmt = 0; fmt < 2; fmt++) check_roundtrip(v, fmt);
    check_bad_config();
    return t_done("test_sae_variants");
}
