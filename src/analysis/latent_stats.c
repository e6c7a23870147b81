/* latent_stats.c — what an SAE's latents do on an activation store: firing
 * counts, the top activations of every latent (with the store rows they came
 * from, so callers can look up tokens), and the explained variance of the
 * reconstruction when only a subset of latents is kept (ablating the rest
 * after the usual selection). Used by the functional-asymmetry analysis. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/stability.h"
#include "sae/arch.h"

void lp_latent_stats_free(lp_latent_stats *s) {
    if (!s) return;
    free(s->fires);
    free(s->top_val);
    free(s->top_row);
    free(s->ev_mask);
    free(s->l0_mask);
    memset(s, 0, sizeof *s);
}

/* min-heap of n (value, row) pairs: the smallest of the kept top values at [0] */
static void heap_push(float *v, int64_t *r, int n, float x, int64_t row) {
    if (!(x > v[0])) return;
    v[0] = x;
    r[0] = row;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, c = i;
        if (l < n && v[l] < v[c]) c = l;
        if (l + 1 < n && v[l + 1] < v[c]) c = l + 1;
        if (c == i) break;
        float tv = v[i];
        int64_t tr = r[i];
        v[i] = v[c], r[i] = r[c];
        v[c] = tv, r[c] = tr;
        i = c;
    }
}

static void heap_sort_desc(float *v, int64_t *r, int n) {
    for (int i = 1; i < n; i++) { /* insertion sort, n is small */
        float x = v[i];
        int64_t y = r[i];
        int j = i - 1;
        while (j >= 0 && v[j] < x) {
            v[j + 1] = v[j], r[j + 1] = r[j];
            j--;
        }
        v[j + 1] = x, r[j + 1] = y;
    }
}

int lp_latent_stats_compute(lp_sae *sae, const lp_store *st, const lp_latent_opts *o, lp_latent_stats *out) {
    memset(out, 0, sizeof *out);
    const int d = sae->cfg.d_in, F = sae->cfg.d_sae, nm = o->n_masks, topn = o->topn;
    const int B = o->batch > 0 ? o->batch : 1024;
    if (lp_store_dim(st) != d)
        return lp_fail(LP_ERR_ARG, "store %s has width %d but the SAE has d_in=%d", lp_store_dir(st), lp_store_dim(st),
                       d);
    int64_t start = o->start < 0 ? 0 : o->start, count = lp_store_count(st);
    int64_t rows = o->rows <= 0 || start + o->rows > count ? count - start : o->rows;
    if (rows <= 0)
        return lp_fail(LP_ERR_ARG, "store %s: no rows from %lld (it has %lld)", lp_store_dir(st), (long long)start,
                       (long long)count);
    out->F = F;
    out->topn = topn;
    out->n_masks = nm;
    out->fires = lp_calloc((size_t)F, sizeof(int64_t));
    out->ev_mask = lp_calloc((size_t)(nm > 0 ? nm : 1), sizeof(double));
    out->l0_mask = lp_calloc((size_t)(nm > 0 ? nm : 1), sizeof(double));
    if (topn > 0) {
        out->top_val = lp_calloc((size_t)F * topn, sizeof(float));
        out->top_row = lp_malloc((size_t)F * topn * sizeof(int64_t));
    }
    float *x = lp_malloc_aligned((size_t)B * d * sizeof(float));
    float *xn = lp_malloc_aligned((size_t)B * d * sizeof(float));
    float *pre = lp_malloc_aligned((size_t)B * F * sizeof(float));
    double *err = lp_calloc((size_t)B * (nm + 1), sizeof(double)); /* per row: full, then masks */
    double *l0r = lp_calloc((size_t)B * (nm + 1), sizeof(double));
    double *sum = lp_calloc((size_t)d, sizeof(double));
    double *esum = lp_calloc((size_t)nm + 1, sizeof(double)), *lsum = lp_calloc((size_t)nm + 1, sizeof(double));
    lp_sae_codes codes;
    memset(&codes, 0, sizeof codes);
    int rc = LP_OK;
    if (!out->fires || !out->ev_mask || !out->l0_mask || (topn > 0 && (!out->top_val || !out->top_row)) || !x || !xn ||
        !pre || !err || !l0r || !sum || !esum || !lsum) {
        rc = lp_fail(LP_ERR_NOMEM, "latent statistics: out of memory (F=%d)", F);
        goto done;
    }
    for (int64_t q = 0; q < (int64_t)F * topn; q++) out->top_row[q] = -1;
    const float sc = sae->cfg.norm_scale, *Wd = sae->p[LP_SAE_W_DEC], *bd = sae->p[LP_SAE_B_DEC];
    double sumsq = 0;
    for (int64_t r0 = start; r0 < start + rows; r0 += B) {
        int nb = (int)(start + rows - r0 < B ? start + rows - r0 : B);
        if ((rc = lp_store_read(st, r0, nb, x))) goto done;
        if (!lp_all_finite(x, (size_t)nb * d)) {
            rc = lp_fail(LP_ERR_NUM, "store %s: rows %lld.. contain NaN or Inf", lp_store_dir(st), (long long)r0);
            goto done;
        }
        for (int64_t i = 0; i < (int64_t)nb * d; i++) xn[i] = x[i] * sc;
        if ((rc = lp_sae_encode(sae, xn, nb, pre, &codes, 0))) goto done;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            float xh[4096];
            float *buf = d <= 4096 ? xh : malloc((size_t)d * sizeof(float));
            const float *xr = x + (int64_t)b * d;
            for (int m = -1; m < nm; m++) {
                const uint8_t *keep = m >= 0 ? o->masks[m] : NULL;
                memcpy(buf, bd, (size_t)d * sizeof(float));
                double l0 = 0;
                for (int64_t q = codes.rowptr[b]; q < codes.rowptr[b + 1]; q++) {
                    float v = codes.val[q];
                    int32_t f = codes.idx[q];
                    if (!(v > 0) || (keep && !keep[f])) continue;
                    l0 += 1;
                    const float *w = Wd + (int64_t)f * d;
                    for (int j = 0; j < d; j++) buf[j] += v * w[j];
                }
                double e = 0;
                for (int j = 0; j < d; j++) {
                    double t = (double)xr[j] - (double)buf[j] / sc;
                    e += t * t;
                }
                err[(int64_t)b * (nm + 1) + m + 1] = e;
                l0r[(int64_t)b * (nm + 1) + m + 1] = l0;
            }
            if (buf != xh) free(buf);
        }
        for (int b = 0; b < nb; b++) {
            const float *xr = x + (int64_t)b * d;
            for (int j = 0; j < d; j++) sum[j] += xr[j], sumsq += (double)xr[j] * xr[j];
            for (int m = 0; m <= nm; m++) esum[m] += err[(int64_t)b * (nm + 1) + m], lsum[m] += l0r[(int64_t)b * (nm + 1) + m];
            for (int64_t q = codes.rowptr[b]; q < codes.rowptr[b + 1]; q++) {
                float v = codes.val[q];
                if (!(v > 0)) continue;
                int32_t f = codes.idx[q];
                out->fires[f]++;
                if (topn > 0) heap_push(out->top_val + (int64_t)f * topn, out->top_row + (int64_t)f * topn, topn, v, r0 + b);
            }
        }
    }
    double mu2 = 0;
    for (int j = 0; j < d; j++) mu2 += (sum[j] / rows) * (sum[j] / rows);
    double var = sumsq - rows * mu2;
    out->rows = rows;
    out->ev = var > 0 ? 1 - esum[0] / var : 0;
    out->l0 = lsum[0] / rows;
    for (int m = 0; m < nm; m++) {
        out->ev_mask[m] = var > 0 ? 1 - esum[m + 1] / var : 0;
        out->l0_mask[m] = lsum[m + 1] / rows;
    }
    for (int f = 0; f < F && topn > 0; f++) heap_sort_desc(out->top_val + (int64_t)f * topn, out->top_row + (int64_t)f * topn, topn);
done:
    lp_free(x);
    lp_free(xn);
    lp_free(pre);
    free(err);
    free(l0r);
    free(sum);
    free(esum);
    free(lsum);
    lp_codes_free(&codes);
    if (rc) lp_latent_stats_free(out);
    return rc;
}
