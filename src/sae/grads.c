/* grads.c — loss and gradients of one SAE training batch with sparse-aware
 * compute. Only the encoder GEMM is dense (B·F·d); the decoder, its
 * gradient, the encoder gradient through the active pre-activations and the
 * bias gradients are O(B·k·d).
 *
 * Race-free scatter: the code entries (main codes and AuxK codes) are
 * counting-sorted by latent, then latents are split among threads, so each
 * W_enc / W_dec gradient row is written by exactly one thread, in a fixed
 * order (bit-identical results for a given thread count). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "sae/arch.h"

void lp_sae_pre(const lp_sae *s, const float *xn, int B, float *xc, float *pre);

struct lp_sae_work {
    int B, F, d, nthreads;
    float *pre, *xc, *xhat, *dX; /* [B,E] [B,d] [B,d] [2B,d]  (E: encoder rows, = F but for kron) */
    float *enc_scratch;          /* [B,E] for an encoder backward hook (kron), else NULL */
    float *dxc_sum;              /* [d] that hook's Σ_b ∂L/∂xc_b */
    lp_sae_codes codes, aux;
    float *dval, *dpre;          /* [nnz_main + nnz_aux] */
    int32_t *erow;               /* entry -> dX row */
    int64_t *lat_ptr, *ent;      /* latent-sorted entries */
    float *bdec_part;            /* [threads, d] */
    uint8_t *dead, *fired;       /* [F] */
    int64_t ent_cap;
};

int lp_sae_work_new(lp_sae_work **out, const lp_sae *s, int B) {
    lp_sae_work *w = lp_calloc(1, sizeof *w);
    if (!w) return LP_ERR_NOMEM;
    w->B = B;
    w->F = s->cfg.d_sae;
    w->d = s->cfg.d_in;
    w->nthreads = lp_threads();
    size_t BF, Bd = (size_t)B * w->d;
    int64_t E = lp_sae_enc_rows(s);
    int bad = lp_mul_overflow((size_t)B, (size_t)(E > w->F ? E : w->F), &BF) || BF > SIZE_MAX / 4;
    if (!bad) {
        w->pre = lp_malloc_aligned(BF * sizeof(float));
        if (lp_sae_ops_for(s->cfg.arch)->enc_backward && !(w->enc_scratch = lp_malloc_aligned(BF * sizeof(float))))
            bad = 1;
        w->xc = lp_malloc_aligned(Bd * sizeof(float));
        w->xhat = lp_malloc_aligned(Bd * sizeof(float));
        w->dX = lp_malloc_aligned(2 * Bd * sizeof(float));
        w->lat_ptr = lp_malloc(((size_t)w->F + 1) * sizeof(int64_t));
        w->bdec_part = lp_malloc((size_t)w->nthreads * w->d * sizeof(float));
        w->dxc_sum = lp_calloc((size_t)w->d, sizeof(float));
        w->dead = lp_calloc((size_t)w->F, 1);
        w->fired = lp_calloc((size_t)w->F, 1);
    }
    if (bad || !w->pre || !w->xc || !w->xhat || !w->dX || !w->lat_ptr || !w->bdec_part || !w->dxc_sum || !w->dead ||
        !w->fired) {
        lp_sae_work_free(w);
        return lp_fail(LP_ERR_NOMEM, "cannot allocate SAE workspace for batch %d x %d latents", B,
                       s->cfg.d_sae);
    }
    *out = w;
    return LP_OK;
}

void lp_sae_work_free(lp_sae_work *w) {
    if (!w) return;
    lp_free(w->pre);
    lp_free(w->xc);
    lp_free(w->xhat);
    lp_free(w->dX);
    lp_free(w->enc_scratch);
    lp_codes_free(&w->codes);
    lp_codes_free(&w->aux);
    free(w->dval);
    free(w->dpre);
    free(w->erow);
    free(w->lat_ptr);
    free(w->ent);
    free(w->bdec_part);
    free(w->dxc_sum);
    free(w->dead);
    free(w->fired);
    free(w);
}

const lp_sae_codes *lp_sae_work_codes(const lp_sae_work *w) { return &w->codes; }
const float *lp_sae_work_xhat(const lp_sae_work *w) { return w->xhat; }
const uint8_t *lp_sae_work_fired(const lp_sae_work *w) { return w->fired; }

static int reserve_entries(lp_sae_work *w, int64_t n) {
    if (n <= w->ent_cap) return LP_OK;
    int64_t cap = n + n / 4 + 64;
    float *a = realloc(w->dval, (size_t)cap * sizeof(float));
    if (a) w->dval = a;
    float *b = a ? realloc(w->dpre, (size_t)cap * sizeof(float)) : NULL;
    if (b) w->dpre = b;
    int32_t *c = b ? realloc(w->erow, (size_t)cap * sizeof(int32_t)) : NULL;
    if (c) w->erow = c;
    int64_t *e = c ? realloc(w->ent, (size_t)cap * sizeof(int64_t)) : NULL;
    if (e) w->ent = e;
    if (!e) return lp_fail(LP_ERR_NOMEM, "out of memory for %lld SAE entries", (long long)n);
    w->ent_cap = cap;
    return LP_OK;
}

/* dval[e] = <dX[row], W_dec[f]> for the entries of codes c (rows offset by row0) */
static void code_grad(const lp_sae_codes *c, const float *dX, int row0, const float *Wd, int d,
                      float *dval) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < c->B; b++) {
        const float *g = dX + (int64_t)(row0 + b) * d;
        for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
            const float *w = Wd + (int64_t)c->idx[j] * d;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int i = 0; i < d; i++) acc += g[i] * w[i];
            dval[j] = acc;
        }
    }
}

int lp_sae_grads(lp_sae *s, lp_sae *g, lp_sae_work *w, const float *xn, int B,
                 const int64_t *dead_since, lp_sae_stats *st) {
    return lp_sae_grads_target(s, g, w, xn, xn, B, dead_since, st);
}

/* The variants plug in through optional hooks (sae/arch.h): recon replaces
 * the reconstruction loss (hiertopk), select_aux and enc_backward replace
 * the encoder's per-latent rows (kron). With all of them NULL this is the
 * core computation, unchanged. */
int lp_sae_grads_target(lp_sae *s, lp_sae *g, lp_sae_work *w, const float *xn, const float *tn, int B,
                        const int64_t *dead_since, lp_sae_stats *st) {
    if (B > w->B) return lp_fail(LP_ERR_ARG, "batch %d exceeds the SAE workspace (%d)", B, w->B);
    const int F = s->cfg.d_sae, d = s->cfg.d_in;
    const lp_sae_ops *ops = lp_sae_ops_for(s->cfg.arch);
    const int own_rec = ops->recon != NULL, own_enc = ops->enc_backward != NULL;
    const float *Wd = s->p[LP_SAE_W_DEC], *We = s->p[LP_SAE_W_ENC];
    memset(st, 0, sizeof *st);

    /* ---- forward: dense pre-activations, sparse codes, sparse decode ---- */
    lp_sae_pre(s, xn, B, w->xc, w->pre);
    int rc = ops->select(s, w->pre, B, &w->codes, 1, &st->kept_min);
    if (rc) return rc;
    lp_sae_codes *c = &w->codes;
    lp_sae_decode(s, c, w->xhat);
    const int64_t nnz = c->rowptr[B];

    const int64_t nnz_main = nnz;
    if ((rc = reserve_entries(w, nnz_main))) return rc;
    if (own_rec) {
        /* the variant's loss: dval of the codes, dX = the b_dec part, W_dec rows into g */
        if ((rc = ops->recon(s, c, w->xhat, tn, B, w->dval, w->dX, g, &st->rec))) return rc;
    } else {
        /* reconstruction residual and dL/dx̂ = 2/B (x̂ − x) */
        double rec = 0;
        const float two_b = 2.0f / (float)B;
#pragma omp parallel for reduction(+ : rec) schedule(static)
        for (int64_t i = 0; i < (int64_t)B * d; i++) {
            float r = w->xhat[i] - tn[i];
            rec += (double)r * r;
            w->dX[i] = two_b * r;
        }
        st->rec = rec / B;
    }

    /* ---- AuxK on dead latents ---- */
    int64_t n_dead = 0;
    lp_sae_codes *a = &w->aux;
    a->B = B;
    int have_aux = 0;
    if (dead_since && s->cfg.k_aux > 0) {
        for (int f = 0; f < F; f++) n_dead += (w->dead[f] = dead_since[f] >= s->cfg.dead_tokens);
        if (n_dead > 0) {
            int ka = s->cfg.k_aux < n_dead ? s->cfg.k_aux : (int)n_dead;
            if ((rc = ops->select_aux ? ops->select_aux(s, w->pre, B, ka, w->dead, a)
                                      : lp_select_topk_rows(w->pre, s->p[LP_SAE_B_ENC], B, F, ka, w->dead, a)))
                return rc;
            have_aux = a->rowptr[B] > 0;
        }
    }
    st->n_dead = n_dead;
    if (n_dead > 0 && s->cfg.k_aux > 0 && !have_aux) {
        /* dead latents but none with a positive pre-activation: ê = 0, so
         * AuxK = Σ‖e‖²/Σ‖e‖² = 1 (no gradient), as the formula says */
        double den = 0;
        for (int64_t i = 0; i < (int64_t)B * d; i++) {
            double e = (double)tn[i] - w->xhat[i];
            den += e * e;
        }
        st->aux = den > 0 ? s->cfg.aux_coeff : 0;
    }
    const int64_t nnz_aux = have_aux ? a->rowptr[B] : 0;
    if ((rc = reserve_entries(w, nnz + nnz_aux))) return rc;
    float *dX_aux = w->dX + (int64_t)B * d;
    if (have_aux) {
        /* e = x − x̂ (detached); ê = Σ z_aux W_dec; AuxK = Σ‖e − ê‖² / Σ‖e‖² */
        double num = 0, den = 0;
#pragma omp parallel for reduction(+ : num, den) schedule(static)
        for (int b = 0; b < B; b++) {
            float *eh = dX_aux + (int64_t)b * d;
            for (int i = 0; i < d; i++) eh[i] = 0;
            for (int64_t j = a->rowptr[b]; j < a->rowptr[b + 1]; j++) {
                const float *wr = Wd + (int64_t)a->idx[j] * d;
                for (int i = 0; i < d; i++) eh[i] += a->val[j] * wr[i];
            }
            for (int i = 0; i < d; i++) {
                float e = tn[(int64_t)b * d + i] - w->xhat[(int64_t)b * d + i];
                float r = eh[i] - e;
                num += (double)r * r;
                den += (double)e * e;
                eh[i] = r; /* keep ê − e, scaled below */
            }
        }
        float coef = den > 0 ? (float)(2.0 * s->cfg.aux_coeff / den) : 0.0f;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < (int64_t)B * d; i++) dX_aux[i] *= coef;
        st->aux = den > 0 ? s->cfg.aux_coeff * num / den : 0;
    }

    /* ---- backward through the codes ---- */
    float *dval = w->dval, *dpre = w->dpre;
    if (!own_rec) code_grad(c, w->dX, 0, Wd, d, dval);
    if (ops->penalty) st->penalty = ops->penalty(s, c, B, dval, g);
    if (ops->dpre) ops->dpre(s, c, B, dval, dpre, g);
    else
        for (int64_t j = 0; j < nnz; j++) dpre[j] = c->val[j] > 0 ? dval[j] : 0.0f;
    if (have_aux) {
        code_grad(a, w->dX, B, Wd, d, dval + nnz);
        for (int64_t j = 0; j < nnz_aux; j++) dpre[nnz + j] = dval[nnz + j];
    }
    if (own_enc &&
        (rc = ops->enc_backward(s, w->pre, w->xc, B, c, have_aux ? a : NULL, dval, w->enc_scratch, w->dxc_sum, g)))
        return rc;
    /* entry rows, active count, fired latents */
    memset(w->fired, 0, (size_t)F);
    int64_t active = 0;
    for (int b = 0; b < B; b++)
        for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
            w->erow[j] = b;
            if (c->val[j] > 0) {
                active++;
                w->fired[c->idx[j]] = 1;
            }
        }
    for (int b = 0; b < B && have_aux; b++)
        for (int64_t j = a->rowptr[b]; j < a->rowptr[b + 1]; j++) w->erow[nnz + j] = B + b;
    st->l0 = (double)active / B;

    /* counting sort of all entries by latent */
    int64_t *lp = w->lat_ptr;
    memset(lp, 0, ((size_t)F + 1) * sizeof *lp);
    for (int64_t j = 0; j < nnz; j++) lp[c->idx[j] + 1]++;
    for (int64_t j = 0; j < nnz_aux; j++) lp[a->idx[j] + 1]++;
    for (int f = 0; f < F; f++) lp[f + 1] += lp[f];
    int64_t *cursor = malloc(((size_t)F) * sizeof *cursor);
    if (!cursor) return lp_fail(LP_ERR_NOMEM, "out of memory");
    memcpy(cursor, lp, (size_t)F * sizeof *cursor);
    for (int64_t j = 0; j < nnz; j++) w->ent[cursor[c->idx[j]]++] = j;
    for (int64_t j = 0; j < nnz_aux; j++) w->ent[cursor[a->idx[j]]++] = nnz + j;
    free(cursor);

    /* per-latent rows of dW_dec, dW_enc, db_enc */
    float *gWd = g->p[LP_SAE_W_DEC], *gWe = g->p[LP_SAE_W_ENC], *gbe = g->p[LP_SAE_B_ENC];
#pragma omp parallel for schedule(dynamic, 64)
    for (int f = 0; f < F; f++) {
        if (lp[f] == lp[f + 1]) continue;
        float *gd = gWd + (int64_t)f * d, *ge = gWe + (int64_t)f * d;
        float gb = 0;
        for (int64_t q = lp[f]; q < lp[f + 1]; q++) {
            int64_t e = w->ent[q];
            int r = w->erow[e];
            float v = e < nnz ? c->val[e] : a->val[e - nnz];
            float dp = dpre[e];
            const float *gx = w->dX + (int64_t)r * d, *xc = w->xc + (int64_t)(r % B) * d;
            if (v != 0.0f && !(own_rec && e < nnz)) /* recon added the main codes' rows */
                for (int i = 0; i < d; i++) gd[i] += v * gx[i];
            if (own_enc) continue; /* enc_backward does the encoder */
            if (dp != 0.0f)
                for (int i = 0; i < d; i++) ge[i] += dp * xc[i];
            gb += dp;
        }
        if (!own_enc) gbe[f] += gb;
    }

    /* db_dec = Σ_b dx̂_b − Σ_e dpre_e W_enc[f_e]  (decoder bias + encoder input) */
    int nt = w->nthreads;
    memset(w->bdec_part, 0, (size_t)nt * d * sizeof(float));
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *acc = w->bdec_part + (int64_t)t * d;
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *gx = w->dX + (int64_t)b * d;
            for (int i = 0; i < d; i++) acc[i] += gx[i];
            if (own_enc) continue;
            for (int64_t j = c->rowptr[b]; j < c->rowptr[b + 1]; j++) {
                if (dpre[j] == 0.0f) continue;
                const float *we = We + (int64_t)c->idx[j] * d;
                for (int i = 0; i < d; i++) acc[i] -= dpre[j] * we[i];
            }
            if (have_aux)
                for (int64_t j = a->rowptr[b]; j < a->rowptr[b + 1]; j++) {
                    float dp = dpre[nnz + j];
                    if (dp == 0.0f) continue;
                    const float *we = We + (int64_t)a->idx[j] * d;
                    for (int i = 0; i < d; i++) acc[i] -= dp * we[i];
                }
        }
    }
    float *gbd = g->p[LP_SAE_B_DEC];
    if (!s->cfg.no_decoder_bias) { /* else b_dec stays 0: no gradient */
        for (int t = 0; t < nt; t++)
            for (int i = 0; i < d; i++) gbd[i] += w->bdec_part[(int64_t)t * d + i];
        if (own_enc) /* the encoder's share: xc = xn − b_dec */
            for (int i = 0; i < d; i++) gbd[i] -= w->dxc_sum[i];
    }

    st->loss = st->rec + st->penalty + st->aux;
    return LP_OK;
}
