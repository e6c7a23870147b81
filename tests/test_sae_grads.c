/* test_sae_grads.c — SAE gradients of every architecture against central
 * finite differences of a double-precision dense reference loss (codes held
 * fixed, AuxK target detached, as in the method), plus determinism.
 * With --torch-case ARCH DIR STEPS it writes a case for the PyTorch
 * reference (tests/test_sae_torch.sh): cfg.json, init.safetensors,
 * data.safetensors and loupe.safetensors (loupe's weights after STEPS). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/sae.h"
#include "loupe/safetensors.h"
#include "testutil.h"

enum { F = 64, D = 16, BATCH = 32, K = 4, KAUX = 24, S = 3 };

static void make_sae(lp_sae **out, int arch, uint64_t seed) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = arch;
    c.d_in = D;
    c.d_sae = F;
    c.k = K;
    c.k_aux = KAUX;
    c.dead_tokens = 256;
    c.l1_coeff = 0.3f;
    c.l0_coeff = 0.05f;
    c.jump_bandwidth = 0.2f;
    c.jump_init_threshold = 0.3f;
    lp_sae_new(out, &c);
    lp_sae_init(*out, seed);
    lp_rng r;
    lp_rng_seed(&r, seed + 7);
    for (int f = 0; f < F; f++) (*out)->p[LP_SAE_B_ENC][f] = 0.1f * lp_rng_normal(&r);
    for (int j = 0; j < D; j++) (*out)->p[LP_SAE_B_DEC][j] = 0.1f * lp_rng_normal(&r);
    if (arch == LP_SAE_JUMPRELU)
        for (int f = 0; f < F; f++) (*out)->p[LP_SAE_LOG_THRESHOLD][f] = logf(0.2f + 0.3f * (float)lp_rng_uniform(&r));
}

static void make_data(float *x, int n, uint64_t seed) {
    lp_rng r;
    lp_rng_seed(&r, seed);
    for (int i = 0; i < n * D; i++) x[i] = lp_rng_normal(&r);
}

static void make_dead(int64_t *dead) {
    for (int f = 0; f < F; f++) dead[f] = f < 16 ? 1000 : 0;
}

/* Dense double loss with the code support held fixed: main[b][f] = 1 if
 * latent f is kept in row b; aux likewise; e_det the detached AuxK target. */
typedef struct {
    uint8_t main[BATCH][F], aux[BATCH][F];
    double e_det[BATCH][D], den;
    int have_aux;
} support;

static double ref_loss(const lp_sae *s, const double *P, const float *x, const support *sp) {
    const double *We = P, *be = P + F * D, *Wd = be + F, *bd = Wd + F * D, *lt = bd + D;
    int arch = s->cfg.arch;
    double rec = 0, pen = 0, auxn = 0;
    for (int b = 0; b < BATCH; b++) {
        double xc[D], xh[D], eh[D];
        for (int j = 0; j < D; j++) xc[j] = x[b * D + j] - bd[j], xh[j] = bd[j], eh[j] = 0;
        for (int f = 0; f < F; f++) {
            if (!sp->main[b][f] && !sp->aux[b][f]) continue;
            double pre = be[f];
            for (int j = 0; j < D; j++) pre += We[f * D + j] * xc[j];
            double nrm = 0;
            for (int j = 0; j < D; j++) nrm += Wd[f * D + j] * Wd[f * D + j];
            nrm = sqrt(nrm);
            if (sp->main[b][f]) {
                double z = pre;
                if (arch == LP_SAE_JUMPRELU && !(pre > exp(lt[f]))) z = 0; /* window entry */
                for (int j = 0; j < D; j++) xh[j] += z * Wd[f * D + j];
                if (arch == LP_SAE_RELU) pen += s->cfg.l1_coeff * z * nrm / BATCH;
            }
            if (sp->aux[b][f])
                for (int j = 0; j < D; j++) eh[j] += pre * Wd[f * D + j];
        }
        for (int j = 0; j < D; j++) {
            double r = xh[j] - x[b * D + j];
            rec += r * r / BATCH;
            double q = eh[j] - sp->e_det[b][j];
            auxn += q * q;
        }
    }
    double aux = sp->have_aux ? s->cfg.aux_coeff * auxn / sp->den : 0;
    return rec + pen + aux;
}

static void check_arch(int arch) {
    lp_sae *s, *g;
    make_sae(&s, arch, 11);
    lp_sae_like(&g, s);
    float x[BATCH * D];
    make_data(x, BATCH, 5);
    int64_t dead[F];
    make_dead(dead);
    lp_sae_work *w;
    CHECK_OK(lp_sae_work_new(&w, s, BATCH));
    lp_sae_stats st;
    CHECK_OK(lp_sae_grads(s, g, w, x, BATCH, dead, &st));
    CHECK(st.n_dead == 16, "n_dead %lld", (long long)st.n_dead);
    CHECK(st.aux > 0, "%s: AuxK inactive", lp_sae_arch_name(arch));
    /* support from loupe's codes; aux support recomputed the same way */
    static support sp;
    memset(&sp, 0, sizeof sp);
    const lp_sae_codes *c = lp_sae_work_codes(w);
    for (int b = 0; b < BATCH; b++)
        for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) sp.main[b][c->idx[j]] = 1;
    /* aux support: top KAUX of relu(pre) among dead latents, per row */
    const float *xh = lp_sae_work_xhat(w);
    sp.den = 0;
    for (int b = 0; b < BATCH; b++) {
        double pre[F];
        for (int f = 0; f < F; f++) {
            pre[f] = s->p[LP_SAE_B_ENC][f];
            for (int j = 0; j < D; j++)
                pre[f] += s->p[LP_SAE_W_ENC][f * D + j] * (x[b * D + j] - s->p[LP_SAE_B_DEC][j]);
        }
        for (int t = 0; t < KAUX && t < 16; t++) {
            int best = -1;
            for (int f = 0; f < 16; f++)
                if (!sp.aux[b][f] && pre[f] > 0 && (best < 0 || pre[f] > pre[best])) best = f;
            if (best >= 0) sp.aux[b][best] = 1, sp.have_aux = 1;
        }
        for (int j = 0; j < D; j++) {
            sp.e_det[b][j] = (double)x[b * D + j] - xh[b * D + j];
            sp.den += sp.e_det[b][j] * sp.e_det[b][j];
        }
    }
    /* central differences over W_enc, b_enc, W_dec, b_dec */
    size_t n = s->n_params - s->p_size[LP_SAE_LOG_THRESHOLD];
    double *P = malloc(s->n_params * sizeof *P);
    for (size_t i = 0; i < s->n_params; i++) P[i] = s->params[i];
    const char *names[] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    size_t off = 0;
    for (int k = 0; k < 4; k++) {
        double maxdiff = 0, maxg = 0;
        for (size_t i = off; i < off + s->p_size[k]; i++) {
            double h = 1e-5, keep = P[i];
            P[i] = keep + h;
            double lp = ref_loss(s, P, x, &sp);
            P[i] = keep - h;
            double lm = ref_loss(s, P, x, &sp);
            P[i] = keep;
            double fd = (lp - lm) / (2 * h);
            double an = g->params[i];
            if (fabs(an - fd) > maxdiff) maxdiff = fabs(an - fd);
            if (fabs(fd) > maxg) maxg = fabs(fd);
        }
        double rel = maxdiff / (maxg > 0 ? maxg : 1);
        CHECK(rel < 1e-3, "%s grad %s: max rel err %.3g", lp_sae_arch_name(arch), names[k], rel);
        printf("%-10s %-6s max|g-fd|/max|fd| = %.2e\n", lp_sae_arch_name(arch), names[k], rel);
        off += s->p_size[k];
    }
    (void)n;
    if (arch == LP_SAE_JUMPRELU) {
        /* the threshold gradient is a straight-through pseudo-derivative, not
         * a true derivative: check it against its closed form in double */
        double ref[F];
        memset(ref, 0, sizeof ref);
        float eps = s->cfg.jump_bandwidth;
        for (int b = 0; b < BATCH; b++)
            for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
                int f = c->idx[j];
                double th = exp(s->p[LP_SAE_LOG_THRESHOLD][f]), pre = c->pre[j];
                if (fabs(pre - th) < 0.5 * eps) {
                    double dz = 0; /* <dx̂, W_dec f> with dx̂ = 2/B (x̂ − x) */
                    for (int i = 0; i < D; i++)
                        dz += 2.0 / BATCH * (xh[b * D + i] - x[b * D + i]) * s->p[LP_SAE_W_DEC][f * D + i];
                    ref[f] += (-(th / eps) * dz - s->cfg.l0_coeff / BATCH / eps) * th;
                }
            }
        double md = 0, mg = 0;
        for (int f = 0; f < F; f++) {
            double a = g->p[LP_SAE_LOG_THRESHOLD][f];
            if (fabs(a - ref[f]) > md) md = fabs(a - ref[f]);
            if (fabs(ref[f]) > mg) mg = fabs(ref[f]);
        }
        CHECK(mg > 0 && md / mg < 1e-4, "jumprelu log_threshold grad rel err %.3g (max %.3g)", md / mg, mg);
    }
    free(P);
    lp_sae_work_free(w);
    lp_sae_free(s);
    lp_sae_free(g);
}

/* Same seed and thread count → bit-identical weights after 10 steps. */
static void run_steps(lp_sae *s, int steps, const float *data, int64_t *dead) {
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
        lp_sae_grads(s, g, w, data + (t % S) * BATCH * D, BATCH, dead, &st);
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

static int write_case(const char *arch_name, const char *dir, int steps) {
    int arch;
    if (lp_sae_arch_parse(arch_name, &arch)) return 1;
    lp_sae *s;
    make_sae(&s, arch, 11);
    float *data = malloc(sizeof(float) * S * BATCH * D);
    make_data(data, S * BATCH, 5);
    int64_t dead[F];
    make_dead(dead);
    char path[1024];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f,
            "{\"arch\":\"%s\",\"d_in\":%d,\"d_sae\":%d,\"k\":%d,\"l1_coeff\":%.9g,\"l0_coeff\":%.9g,"
            "\"jump_bandwidth\":%.9g,\"theta_momentum\":%.9g,\"k_aux\":%d,\"aux_coeff\":%.9g,"
            "\"dead_tokens\":%lld,\"normalize_decoder\":1,\"lr\":0.01,\"beta1\":0.9,\"beta2\":0.999,"
            "\"eps\":1e-8}\n",
            arch_name, D, F, K, s->cfg.l1_coeff, s->cfg.l0_coeff, s->cfg.jump_bandwidth,
            s->cfg.theta_momentum, KAUX, s->cfg.aux_coeff, (long long)s->cfg.dead_tokens);
    fclose(f);
    double deadd[F];
    for (int i = 0; i < F; i++) deadd[i] = (double)dead[i];
    float zero = 0;
    lp_st_writer *w = lp_st_writer_new();
    int64_t sFD[2] = {F, D}, sF[1] = {F}, sD[1] = {D}, s1[1] = {1}, sx[3] = {S, BATCH, D};
    lp_st_writer_add(w, "W_enc", LP_DT_F32, 2, sFD, s->p[LP_SAE_W_ENC]);
    lp_st_writer_add(w, "b_enc", LP_DT_F32, 1, sF, s->p[LP_SAE_B_ENC]);
    lp_st_writer_add(w, "W_dec", LP_DT_F32, 2, sFD, s->p[LP_SAE_W_DEC]);
    lp_st_writer_add(w, "b_dec", LP_DT_F32, 1, sD, s->p[LP_SAE_B_DEC]);
    if (arch == LP_SAE_JUMPRELU) lp_st_writer_add(w, "log_threshold", LP_DT_F32, 1, sF, s->p[LP_SAE_LOG_THRESHOLD]);
    lp_st_writer_add(w, "dead_since", LP_DT_F64, 1, sF, deadd);
    lp_st_writer_add(w, "theta", LP_DT_F32, 1, s1, &zero);
    lp_st_writer_add(w, "theta_initialized", LP_DT_F32, 1, s1, &zero);
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    w = lp_st_writer_new();
    lp_st_writer_add(w, "x", LP_DT_F32, 3, sx, data);
    snprintf(path, sizeof path, "%s/data.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    /* loupe's run; also the one-step loss */
    run_steps(s, steps, data, dead);
    w = lp_st_writer_new();
    lp_st_writer_add(w, "W_enc", LP_DT_F32, 2, sFD, s->p[LP_SAE_W_ENC]);
    lp_st_writer_add(w, "b_enc", LP_DT_F32, 1, sF, s->p[LP_SAE_B_ENC]);
    lp_st_writer_add(w, "W_dec", LP_DT_F32, 2, sFD, s->p[LP_SAE_W_DEC]);
    lp_st_writer_add(w, "b_dec", LP_DT_F32, 1, sD, s->p[LP_SAE_B_DEC]);
    if (arch == LP_SAE_JUMPRELU) lp_st_writer_add(w, "log_threshold", LP_DT_F32, 1, sF, s->p[LP_SAE_LOG_THRESHOLD]);
    lp_st_writer_add(w, "theta", LP_DT_F32, 1, s1, &s->theta);
    snprintf(path, sizeof path, "%s/loupe.safetensors", dir);
    if (lp_st_writer_write(w, path)) return 1;
    lp_st_writer_free(w);
    /* loss at step 0 */
    lp_sae *s0, *g0;
    make_sae(&s0, arch, 11);
    lp_sae_like(&g0, s0);
    lp_sae_work *wk;
    lp_sae_work_new(&wk, s0, BATCH);
    make_dead(dead);
    lp_sae_stats st;
    lp_sae_grads(s0, g0, wk, data, BATCH, dead, &st);
    snprintf(path, sizeof path, "%s/loupe_loss0.txt", dir);
    f = fopen(path, "w");
    fprintf(f, "%.9g %.9g %.9g %.9g\n", st.loss, st.rec, st.penalty, st.aux);
    fclose(f);
    lp_sae_work_free(wk);
    lp_sae_free(s0);
    lp_sae_free(g0);
    lp_sae_free(s);
    free(data);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--torch-case") == 0) return write_case(argv[2], argv[3], atoi(argv[4]));
    for (int a = 0; a < LP_SAE_ARCHS; a++) check_arch(a);
    /* determinism */
    for (int a = 0; a < LP_SAE_ARCHS; a++) {
        lp_sae *s1, *s2;
        make_sae(&s1, a, 3);
        make_sae(&s2, a, 3);
        float *data = malloc(sizeof(float) * S * BATCH * D);
        make_data(data, S * BATCH, 9);
        int64_t d1[F], d2[F];
        make_dead(d1);
        make_dead(d2);
        run_steps(s1, 10, data, d1);
        run_steps(s2, 10, data, d2);
        CHECK(memcmp(s1->params, s2->params, s1->n_params * sizeof(float)) == 0, "%s: not deterministic",
              lp_sae_arch_name(a));
        free(data);
        lp_sae_free(s1);
        lp_sae_free(s2);
    }
    return t_done("test_sae_grads");
}
