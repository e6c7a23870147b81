/* explain.c — the offline explainer and detection scoring (loupe/interp.h):
 * the split of a feature's examples into evidence, held-out positives and
 * negatives; AUROC by Mann-Whitney; characteristic tokens of the evidence
 * against the store's token frequencies; the window scorer that predicts
 * activation from those tokens alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/interp.h"

int lp_explanations_new(lp_explanations *ex, int F) {
    memset(ex, 0, sizeof *ex);
    ex->F = F;
    ex->text = lp_calloc((size_t)F, sizeof *ex->text);
    ex->tokens = lp_calloc((size_t)F, sizeof *ex->tokens);
    ex->auroc = lp_malloc((size_t)F * sizeof *ex->auroc);
    ex->n_pos = lp_calloc((size_t)F, sizeof *ex->n_pos);
    ex->n_neg = lp_calloc((size_t)F, sizeof *ex->n_neg);
    if (!ex->text || !ex->tokens || !ex->auroc || !ex->n_pos || !ex->n_neg) {
        lp_explanations_free(ex);
        return lp_fail(LP_ERR_NOMEM, "out of memory for %d explanations", F);
    }
    for (int i = 0; i < F; i++) ex->auroc[i] = NAN;
    snprintf(ex->explainer, sizeof ex->explainer, "none");
    return LP_OK;
}

void lp_explanations_free(lp_explanations *ex) {
    if (!ex) return;
    for (int i = 0; i < ex->F; i++) {
        if (ex->text) free(ex->text[i]);
        if (ex->tokens) free(ex->tokens[i]);
    }
    free(ex->text);
    free(ex->tokens);
    free(ex->auroc);
    free(ex->n_pos);
    free(ex->n_neg);
    memset(ex, 0, sizeof *ex);
}

typedef struct {
    float s;
    int pos;
} scored;

static int scored_cmp(const void *a, const void *b) {
    const scored *x = a, *y = b;
    return x->s < y->s ? -1 : x->s > y->s;
}

double lp_auroc(const float *pos, int npos, const float *neg, int nneg) {
    if (npos <= 0 || nneg <= 0) return NAN;
    int n = npos + nneg;
    scored *a = malloc((size_t)n * sizeof *a);
    if (!a) return NAN;
    for (int i = 0; i < npos; i++) a[i] = (scored){pos[i], 1};
    for (int i = 0; i < nneg; i++) a[npos + i] = (scored){neg[i], 0};
    qsort(a, (size_t)n, sizeof *a, scored_cmp);
    /* sum of (mid-)ranks of the positives */
    double rank_sum = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && a[j].s == a[i].s) j++;
        double mid = (i + 1 + j) / 2.0; /* ranks i+1..j */
        for (int t = i; t < j; t++)
            if (a[t].pos) rank_sum += mid;
        i = j;
    }
    free(a);
    double U = rank_sum - (double)npos * (npos + 1) / 2.0;
    return U / ((double)npos * nneg);
}

void lp_detection_split(const lp_features *f, int feat, int *train, int *ntrain, int *pos, int *npos, int *neg,
                        int *nneg) {
    int nt = 0, np = 0, nn = 0;
    const int64_t *er = f->ex_row + (size_t)feat * f->E;
    for (int e = 0; e < f->N; e++) {
        if (er[e] < 0) continue;
        if (e % 2 == 0) {
            if (train) train[nt] = e;
            nt++;
        } else {
            if (pos) pos[np] = e;
            np++;
        }
    }
    for (int e = f->N; e < f->N + f->Q; e++)
        if (er[e] >= 0) {
            if (pos) pos[np] = e;
            np++;
        }
    for (int e = f->N + f->Q; e < f->E; e++) {
        if (er[e] < 0) continue;
        const float *a = f->ctx_act + ((size_t)feat * f->E + e) * f->W;
        int any = 0;
        for (int w = 0; w < f->W; w++) any |= a[w] > 0;
        if (any) continue;
        if (neg) neg[nn] = e;
        nn++;
    }
    if (ntrain) *ntrain = nt;
    if (npos) *npos = np;
    if (nneg) *nneg = nn;
}

char *lp_window_text(const lp_features *f, char *const *vocab, int feat, int e, int mark) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    const size_t base = ((size_t)feat * f->E + e) * f->W;
    for (int w = 0; w < f->W; w++) {
        int t = f->ctx_tok[base + w];
        if (t < 0) continue;
        const char *p = vocab[t];
        int on = mark && f->ctx_act[base + w] > 0;
        size_t need = len + strlen(p) + 5;
        if (need >= cap) {
            while (cap <= need) cap *= 2;
            char *q = realloc(s, cap);
            if (!q) {
                free(s);
                return NULL;
            }
            s = q;
        }
        len += (size_t)snprintf(s + len, cap - len, "%s%s%s", on ? "<<" : "", p, on ? ">>" : "");
    }
    return s;
}

/* ---- the offline explainer ---------------------------------------------- */
#define MAXC 8
typedef struct {
    int tok;
    int count;
    double w; /* log lift against the background */
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    double kx = x->count * x->w, ky = y->count * y->w; /* KL-style contribution */
    if (kx != ky) return kx > ky ? -1 : 1;
    return x->tok - y->tok;
}

/* Count tokens (each at most once per example when once != 0) into a small
 * table; returns the number of distinct tokens. */
static int tally(cand *c, int nc, int cap, int tok) {
    for (int i = 0; i < nc; i++)
        if (c[i].tok == tok) {
            c[i].count++;
            return nc;
        }
    if (nc < cap) c[nc++] = (cand){tok, 1, 0};
    return nc;
}

typedef struct {
    cand centre[MAXC], prev[MAXC], ctx[MAXC];
    int nc, np, nx;
} rule;

static double bg_logp(const lp_features *f, int t) {
    return log(((double)f->tok_count[t] + 0.5) / ((double)f->rows + 0.5 * f->V));
}

/* Select the characteristic tokens of a feature's evidence examples. */
static void build_rule(const lp_features *f, int feat, const int *train, int nt, rule *r) {
    enum { CAP = 1024 };
    cand *cc = malloc(CAP * sizeof *cc), *pc = malloc(CAP * sizeof *pc), *xc = malloc(CAP * sizeof *xc);
    memset(r, 0, sizeof *r);
    if (!cc || !pc || !xc) goto out;
    int ncc = 0, npc = 0, nxc = 0;
    for (int i = 0; i < nt; i++) {
        const int32_t *tk = f->ctx_tok + ((size_t)feat * f->E + train[i]) * f->W;
        ncc = tally(cc, ncc, CAP, tk[f->left]);
        if (f->left > 0 && tk[f->left - 1] >= 0) npc = tally(pc, npc, CAP, tk[f->left - 1]);
        for (int w = 0; w < f->left - 1; w++) { /* context: once per example */
            int t = tk[w], dup = 0;
            if (t < 0) continue;
            for (int u = 0; u < w; u++) dup |= tk[u] == t;
            if (!dup) nxc = tally(xc, nxc, CAP, t);
        }
    }
    const double lnt = log((double)(nt > 0 ? nt : 1));
    for (int i = 0; i < ncc; i++) cc[i].w = log((double)cc[i].count) - lnt - bg_logp(f, cc[i].tok);
    for (int i = 0; i < npc; i++) pc[i].w = log((double)pc[i].count) - lnt - bg_logp(f, pc[i].tok);
    for (int i = 0; i < nxc; i++) xc[i].w = log((double)xc[i].count) - lnt - bg_logp(f, xc[i].tok);
    qsort(cc, (size_t)ncc, sizeof *cc, cand_cmp);
    qsort(pc, (size_t)npc, sizeof *pc, cand_cmp);
    qsort(xc, (size_t)nxc, sizeof *xc, cand_cmp);
    const int need = nt >= 4 ? 2 : 1;
    for (int i = 0; i < ncc && r->nc < 3; i++)
        if ((cc[i].count >= need || r->nc == 0) && cc[i].w > 0) r->centre[r->nc++] = cc[i];
    for (int i = 0; i < npc && r->np < 2; i++)
        if (pc[i].count >= need && pc[i].w > 1.0) r->prev[r->np++] = pc[i];
    const int needx = nt / 2 > 2 ? nt / 2 : 2;
    for (int i = 0; i < nxc && r->nx < 2; i++)
        if (xc[i].count >= needx && xc[i].w > 1.0) r->ctx[r->nx++] = xc[i];
out:
    free(cc);
    free(pc);
    free(xc);
}

static double rule_weight(const cand *c, int n, int tok) {
    for (int i = 0; i < n; i++)
        if (c[i].tok == tok) return c[i].w;
    return 0;
}

/* The scorer: max over positions of centre weight + ½ weight of the token
 * before; plus ¼ of each context token's weight when present. */
static float rule_score(const lp_features *f, int feat, int e, const rule *r) {
    const int32_t *tk = f->ctx_tok + ((size_t)feat * f->E + e) * f->W;
    double best = 0, ctx = 0;
    for (int w = 0; w < f->W; w++) {
        if (tk[w] < 0) continue;
        double s = rule_weight(r->centre, r->nc, tk[w]);
        if (s > 0 && w > 0 && tk[w - 1] >= 0) s += 0.5 * rule_weight(r->prev, r->np, tk[w - 1]);
        if (s > best) best = s;
    }
    for (int i = 0; i < r->nx; i++)
        for (int w = 0; w < f->W; w++)
            if (tk[w] == r->ctx[i].tok) {
                ctx += 0.25 * r->ctx[i].w;
                break;
            }
    return (float)(best + ctx);
}

/* Append printf-style text to a growing string. */
static void sappend(char **s, size_t *len, size_t *cap, const char *fmt, const char *a) {
    size_t need = *len + strlen(fmt) + (a ? strlen(a) : 0) + 1;
    if (need > *cap) {
        size_t c = *cap ? *cap : 128;
        while (c < need) c *= 2;
        char *p = realloc(*s, c);
        if (!p) return;
        *s = p;
        *cap = c;
    }
    *len += (size_t)snprintf(*s + *len, *cap - *len, fmt, a ? a : "");
}

/* A token as a quoted display string (no quotes or newlines inside). */
static void quote_tok(char *out, size_t n, const char *v) {
    size_t j = 0;
    if (n < 4) return;
    out[j++] = '"';
    for (const char *p = v; *p && j + 3 < n; p++) out[j++] = *p == '"' ? '\'' : (*p == '\n' ? ' ' : *p);
    out[j++] = '"';
    out[j] = 0;
}

int lp_explain_offline(const lp_features *f, char *const *vocab, lp_explanations *ex) {
    if (ex->F != f->F) return lp_fail(LP_ERR_ARG, "explain: %d explanations for %d features", ex->F, f->F);
    int *train = malloc((size_t)f->E * sizeof *train), *pos = malloc((size_t)f->E * sizeof *pos),
        *neg = malloc((size_t)f->E * sizeof *neg);
    float *sp = malloc((size_t)f->E * sizeof *sp), *sn = malloc((size_t)f->E * sizeof *sn);
    if (!train || !pos || !neg || !sp || !sn) {
        free(train);
        free(pos);
        free(neg);
        free(sp);
        free(sn);
        return lp_fail(LP_ERR_NOMEM, "explain: out of memory");
    }
    snprintf(ex->explainer, sizeof ex->explainer, "offline");
    for (int feat = 0; feat < f->F; feat++) {
        free(ex->text[feat]);
        free(ex->tokens[feat]);
        ex->text[feat] = ex->tokens[feat] = NULL;
        ex->auroc[feat] = NAN;
        ex->n_pos[feat] = ex->n_neg[feat] = 0;
        if (f->fires[feat] == 0) continue;
        int nt, np, nn;
        lp_detection_split(f, feat, train, &nt, pos, &np, neg, &nn);
        rule r;
        build_rule(f, feat, train, nt, &r);
        /* explanation text */
        char *s = NULL, *tk = NULL;
        size_t len = 0, cap = 0, tlen = 0, tcap = 0;
        char q[192], num[64];
        if (r.nc == 0) sappend(&s, &len, &cap, "%s", "no characteristic token");
        for (int i = 0; i < r.nc; i++) {
            quote_tok(q, sizeof q, vocab[r.centre[i].tok]);
            sappend(&s, &len, &cap, i == 0 ? "fires on %s" : ", %s", q);
            snprintf(num, sizeof num, " (%d/%d)", r.centre[i].count, nt);
            sappend(&s, &len, &cap, "%s", num);
            sappend(&tk, &tlen, &tcap, "%s\n", vocab[r.centre[i].tok]);
        }
        for (int i = 0; i < r.np; i++) {
            quote_tok(q, sizeof q, vocab[r.prev[i].tok]);
            sappend(&s, &len, &cap, i == 0 ? "; after %s" : " or %s", q);
            sappend(&tk, &tlen, &tcap, "%s\n", vocab[r.prev[i].tok]);
        }
        for (int i = 0; i < r.nx; i++) {
            quote_tok(q, sizeof q, vocab[r.ctx[i].tok]);
            sappend(&s, &len, &cap, i == 0 ? "; context %s" : ", %s", q);
            sappend(&tk, &tlen, &tcap, "%s\n", vocab[r.ctx[i].tok]);
        }
        if (f->S > 1) {
            int t = f->tag[feat];
            if (t >= 0) {
                snprintf(num, sizeof num, " (%.0f%% of top examples)", 100.0 * f->seg_share[(size_t)feat * f->S + t]);
                sappend(&s, &len, &cap, "; %s-modal", f->seg_names[t]);
                sappend(&s, &len, &cap, "%s", num);
            } else if (t == LP_TAG_MIXED) {
                sappend(&s, &len, &cap, "%s", "; mixed segments");
            }
        }
        if (!s) s = lp_strdup("");
        if (!tk) tk = lp_strdup("");
        ex->text[feat] = s;
        ex->tokens[feat] = tk;
        if (!s || !tk) continue;
        for (int i = 0; i < np; i++) sp[i] = rule_score(f, feat, pos[i], &r);
        for (int i = 0; i < nn; i++) sn[i] = rule_score(f, feat, neg[i], &r);
        ex->auroc[feat] = (float)lp_auroc(sp, np, sn, nn);
        ex->n_pos[feat] = np;
        ex->n_neg[feat] = nn;
    }
    free(train);
    free(pos);
    free(neg);
    free(sp);
    free(sn);
    return LP_OK;
}
