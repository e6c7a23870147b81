/* cmd_flow.c — `loupe flow`: data-free feature flow between the site SAEs
 * of `loupe train --sites` (per-layer class table, flow.json, flow graphs
 * as JSON/DOT/SVG) and, with --validate, the co-activation check on text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/flow.h"
#include "loupe/steer.h"
#include "loupe/tokenizer.h"

/* "auto" | X | X0,X1,... (one per layer; the last repeats) into thr[L][src] */
static int parse_thr(const char *flag, const char *s, int n_layers, float (*thr)[LP_FLOW_NSRC], int src) {
    if (strcmp(s, "auto") == 0) {
        for (int L = 0; L < n_layers; L++) thr[L][src] = -1.0f;
        return 0;
    }
    char *copy = strdup(s), *save = NULL;
    int L = 0;
    float last = -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        char *end;
        float v = strtof(t, &end);
        if (*end || end == t || v < -1 || v > 1) {
            int rc = cli_errorf("flow", "%s: '%s' is not a cosine in [-1, 1] (or use auto)", flag, t);
            free(copy);
            return rc;
        }
        if (L < n_layers) thr[L++][src] = v;
        last = v;
    }
    free(copy);
    if (L == 0) return cli_errorf("flow", "%s: empty", flag);
    for (; L < n_layers; L++) thr[L][src] = last;
    return 0;
}

/* label of a node: its logit-lens top tokens */
static char *lens_label(const lp_model *m, const lp_tokenizer *tok, const lp_sae *sae, int f, int n) {
    float *sc = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    int top[16];
    char *out = calloc(256, 1);
    if (!sc || !out || lp_lens(m, sae->p[LP_SAE_W_DEC] + (int64_t)f * sae->cfg.d_in, sc)) {
        free(sc);
        free(out);
        return NULL;
    }
    lp_lens_top(sc, m->cfg.vocab_size, n, top, NULL);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *p = lp_tokenizer_piece(tok, top[i]);
        k += (size_t)snprintf(out + k, k < 256 ? 256 - k : 0, "%s'%s'", i ? " " : "", p ? p : "?");
        if (k >= 255) break;
    }
    free(sc);
    return out;
}

typedef struct {
    lp_flow *fl;
    lp_flow_val *val;
    int n_layers;
    int idx[LP_FLOW_NSRC][LP_FLOW_MAX_LAYERS]; /* site index in the codes array, −1 absent */
} val_ctx;

static int val_cb(void *user, int rows, const int *tok, const lp_sae_codes *const *codes) {
    (void)tok;
    val_ctx *v = user;
    for (int L = 1; L < v->n_layers; L++) {
        const lp_sae_codes *R = codes[v->idx[LP_FLOW_RES][L]], *P = codes[v->idx[LP_FLOW_RES][L - 1]];
        const lp_sae_codes *M = v->idx[LP_FLOW_MLP][L] >= 0 ? codes[v->idx[LP_FLOW_MLP][L]] : NULL;
        const lp_sae_codes *A = v->idx[LP_FLOW_ATT][L] >= 0 ? codes[v->idx[LP_FLOW_ATT][L]] : NULL;
        int rc = lp_flow_val_add(v->val, v->fl, L, R, P, M, A);
        if (rc) return rc;
    }
    v->val->tokens += rows;
    return LP_OK;
}

/* run the validation over text and print the table per class */
static int validate(lp_flow_sites *S, lp_flow *fl, const lp_model *m, const lp_tokenizer *tok, const char *data,
                    int64_t tokens, int ctx, lp_flow_val *val) {
    int rc = LP_OK;
    lp_sae *saes[LP_MAX_HOOKS];
    lp_hook_point at[LP_MAX_HOOKS];
    val_ctx v = {.fl = fl, .val = val, .n_layers = S->n_layers};
    int n = 0;
    for (int L = 0; L < S->n_layers && !rc; L++)
        for (int p = 0; p < LP_FLOW_NSRC && !rc; p++) {
            v.idx[p][L] = -1;
            if (!S->sae[p][L]) continue;
            if (n == LP_MAX_HOOKS) {
                rc = lp_fail(LP_ERR_ARG, "flow: more than %d sites", LP_MAX_HOOKS);
                break;
            }
            at[n] = (lp_hook_point){L, lp_flow_src_hook_kind(p)};
            if (!rc) rc = lp_sae_check_site(S->sae[p][L], S->dir[p][L], m, at[n]);
            saes[n] = S->sae[p][L];
            v.idx[p][L] = n++;
        }
    if (!rc) rc = lp_flow_val_init(val, S->n_layers);
    if (!rc) rc = lp_site_codes(m, tok, n, saes, at, data, 0, tokens, ctx, val_cb, &v);
    return rc;
}

int cmd_flow(int argc, char **argv) {
    const char *saes_dir = NULL, *out = NULL, *features = NULL, *thr_r = NULL, *thr_m = NULL, *thr_a = NULL, *model = NULL,
               *tokpath = NULL, *data = NULL;
    int seed = 0, lens = 0, do_val = 0, ctx = 0, threads = 0, null_n = 0;
    int64_t tokens = 0;
    float q = 0;
    cli_opt opts[] = {
        {"--saes", 's', &saes_dir, NULL, "directory of site SAEs from `loupe train --sites` (DIR/<hook>/seedN/)"},
        {"--seed", 'i', &seed, "0", "which seedN/ to use"},
        {"--out", 's', &out, NULL, "write OUT/flow.json and the graphs here"},
        {"--features", 's', &features, NULL, "flow graphs for residual features L:F[,L:F...] (e.g. 4:17)"},
        {"--thr-res", 's', &thr_r, "auto", "threshold on s(R): auto (chance level per layer), X, or X0,X1,... per layer"},
        {"--thr-mlp", 's', &thr_m, "auto", "threshold on s(M), as --thr-res"},
        {"--thr-att", 's', &thr_a, "auto", "threshold on s(A), as --thr-res"},
        {"--q", 'f', &q, "0.99", "auto: quantile of the chance-level max cosine (random directions)"},
        {"--null-samples", 'i', &null_n, "4096", "auto: random directions per site"},
        {"--lens", 'b', &lens, NULL, "label graph nodes with their logit-lens top tokens (needs the model)"},
        {"--validate", 'b', &do_val, NULL, "co-activation of each feature and its matched predecessors on --data"},
        {"--data", 's', &data, NULL, "text for --validate"},
        {"--tokens", 'l', &tokens, "50000", "tokens for --validate"},
        {"--ctx", 'i', &ctx, "128", "window length for --validate"},
        {"--model", 's', &model, NULL, "model (default: the SAEs' recorded model, else shared stories260K.bin)"},
        {"--tokenizer", 's', &tokpath, NULL, "tokenizer (default: shared tok512.bin)"},
        {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("flow", "--saes DIR [--out OUT] [--features L:F,...] [--validate --data FILE]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("flow", "--saes", saes_dir))) return rc;
    if (do_val && (rc = cli_require("flow", "--data (with --validate)", data))) return rc;
    if (threads > 0) lp_set_threads(threads);
    lp_flow_sites S;
    lp_flow fl;
    memset(&fl, 0, sizeof fl);
    lp_flow_val val;
    memset(&val, 0, sizeof val);
    float(*thr)[LP_FLOW_NSRC] = NULL;
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    if (lp_flow_sites_load(&S, saes_dir, seed, 0)) return cli_error("flow");
    rc = 1;
    const int NL = S.n_layers;
    thr = calloc((size_t)NL, sizeof *thr);
    if (!thr) goto fail;
    if (parse_thr("--thr-res", thr_r, NL, thr, LP_FLOW_RES) || parse_thr("--thr-mlp", thr_m, NL, thr, LP_FLOW_MLP) ||
        parse_thr("--thr-att", thr_a, NL, thr, LP_FLOW_ATT))
        goto done;
    /* features to graph, validated before any work */
    int gl[64], gf[64], ng = 0;
    if (features) {
        char *copy = strdup(features), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int L, f;
            char extra;
            if (ng == 64 || sscanf(t, "%d:%d%c", &L, &f, &extra) != 2) {
                rc = cli_errorf("flow", "--features: '%s' is not L:F (at most 64)", t);
                free(copy);
                goto done;
            }
            if (L < 0 || L >= NL || f < 0 || f >= S.sae[LP_FLOW_RES][L]->cfg.d_sae) {
                free(copy);
                rc = cli_errorf("flow", "--features: %d:%d out of range (layers 0..%d, features 0..%d)", L, f, NL - 1,
                                L >= 0 && L < NL ? S.sae[LP_FLOW_RES][L]->cfg.d_sae - 1 : 0);
                goto done;
            }
            gl[ng] = L, gf[ng++] = f;
        }
        free(copy);
    }
    if (!model) {
        const char *rec = S.sae[LP_FLOW_RES][0]->cfg.model;
        model = rec[0] && lp_file_exists(rec) ? rec : cli_shared_path("models/stories260K.bin");
    }
    if (!tokpath) tokpath = cli_shared_path("models/tok512.bin");
    lp_flow_opts fo = {.thr = thr, .q = q, .null_samples = null_n, .seed = 0};
    double t0 = lp_now();
    if (lp_flow_compute(&fl, NL, S.sae[LP_FLOW_RES], S.sae[LP_FLOW_MLP], S.sae[LP_FLOW_ATT], &fo)) goto fail;
    fprintf(stderr, "flow: %d layers of %s matched in %.2fs\n", NL, saes_dir, lp_now() - t0);
    /* the class table */
    printf("layer  thr(R)  thr(M)  thr(A) ");
    for (int c = 0; c < LP_FLOW_NCLASS; c++) printf(" %14s", lp_flow_class_name(c));
    printf("\n");
    for (int L = 0; L < NL; L++) {
        const lp_flow_layer *ly = &fl.layer[L];
        printf("%5d ", L);
        for (int p = 0; p < LP_FLOW_NSRC; p++)
            if (ly->has[p]) printf(" %6.3f ", ly->thr[p]);
            else printf(" %6s ", "-");
        for (int c = 0; c < LP_FLOW_NCLASS; c++) printf(" %14.1f%%", 100.0 * ly->count[c] / ly->F);
        printf("\n");
    }
    if (lens || do_val) {
        if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokpath, m->cfg.vocab_size)) goto fail;
        if (threads <= 0 && !getenv("LOUPE_THREADS") && m->cfg.dim <= 256) lp_set_threads(1); /* tiny model: no OpenMP overhead */
        if (lp_sae_check_site(S.sae[LP_FLOW_RES][0], S.dir[LP_FLOW_RES][0], m, (lp_hook_point){0, LP_HOOK_RESID_POST})) goto fail;
    }
    if (out && lp_mkdirs(out)) goto fail;
    if (out) {
        char *p = lp_path_join(out, "flow.json");
        int e = lp_flow_write_json(&fl, p);
        if (!e) fprintf(stderr, "flow: wrote %s\n", p);
        free(p);
        if (e) goto fail;
    }
    for (int i = 0; i < ng; i++) {
        lp_flow_graph g;
        if (lp_flow_graph_build(&fl, gl[i], gf[i], &g)) goto fail;
        char *labels[4 * LP_FLOW_MAX_LAYERS] = {0};
        if (lens)
            for (int k = 0; k < g.n_nodes; k++) labels[k] = lens_label(m, tok, S.sae[g.node[k].kind][g.node[k].layer], g.node[k].feature, 3);
        printf("\nflow graph of R%d #%d (%s):\n", gl[i], gf[i], lp_flow_class_name(fl.layer[gl[i]].cls[gf[i]]));
        for (int k = 0; k < g.n_edges; k++) {
            const lp_flow_node *a = &g.node[g.edge[k].from], *b = &g.node[g.edge[k].to];
            printf("  %s%d #%-5d -> res%d #%-5d cos %.3f%s%s%s\n", lp_flow_src_name(a->kind), a->layer, a->feature, b->layer,
                   b->feature, g.edge[k].cos, g.edge[k].strong ? " (strong)" : "", labels[g.edge[k].from] ? "  " : "",
                   labels[g.edge[k].from] ? labels[g.edge[k].from] : "");
        }
        if (out) {
            char name[96];
            snprintf(name, sizeof name, "graph_L%d_f%d.json", gl[i], gf[i]);
            char *pj = lp_path_join(out, name);
            snprintf(name, sizeof name, "graph_L%d_f%d.dot", gl[i], gf[i]);
            char *pd = lp_path_join(out, name);
            int e = lp_flow_graph_write_json(&g, (const char *const *)labels, pj) ||
                    lp_flow_graph_write_dot(&g, (const char *const *)labels, pd);
            if (!e && system("command -v dot >/dev/null 2>&1") == 0) { /* SVG when Graphviz is installed */
                char cmd[4096];
                snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' -o '%s.svg.tmp' && mv '%s.svg.tmp' '%.*s.svg'", pd, pd, pd,
                         (int)strlen(pd) - 4, pd);
                if (!strchr(pd, '\'') && system(cmd) != 0) fprintf(stderr, "flow: dot failed on %s (no SVG)\n", pd);
            }
            if (!e) fprintf(stderr, "flow: wrote %s (+ .dot)\n", pj);
            free(pj);
            free(pd);
            if (e) {
                for (int k = 0; k < g.n_nodes; k++) free(labels[k]);
                goto fail;
            }
        }
        for (int k = 0; k < g.n_nodes; k++) free(labels[k]);
    }
    if (do_val) {
        if (validate(&S, &fl, m, tok, data, tokens, ctx, &val)) goto fail;
        printf("\nvalidation on %lld tokens of %s: share of (feature, token) activations whose matched\n"
               "predecessors are active on the same token, by the feature's class (layers 1..%d):\n",
               (long long)val.tokens, data, NL - 1);
        printf("%-16s %10s", "class", "events");
        for (int g = 0; g < LP_FLOW_NGROUPS; g++) printf(" %8s", lp_flow_group_name(g));
        printf("\n");
        for (int c = 0; c < LP_FLOW_NCLASS; c++) {
            int64_t row[LP_FLOW_NGROUPS] = {0}, tot = 0;
            for (int L = 1; L < NL; L++)
                for (int g = 0; g < LP_FLOW_NGROUPS; g++) {
                    int64_t x = val.counts[((int64_t)L * LP_FLOW_NCLASS + c) * LP_FLOW_NGROUPS + g];
                    row[g] += x, tot += x;
                }
            printf("%-16s %10lld", lp_flow_class_name(c), (long long)tot);
            for (int g = 0; g < LP_FLOW_NGROUPS; g++) printf(" %7.1f%%", tot ? 100.0 * row[g] / tot : 0.0);
            printf("\n");
        }
    }
    rc = 0;
    goto done;
fail:
    rc = cli_error("flow");
done:
    lp_flow_val_free(&val);
    lp_flow_free(&fl);
    lp_flow_sites_free(&S);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    free(thr);
    return rc;
}
