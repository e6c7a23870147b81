/* test_steer.c — steering on the real model. Without arguments: seeded
 * generation with interventions is deterministic, α = 0 changes nothing,
 * a strong feature push changes the text, removing a feature that never
 * fires changes nothing, and bad evaluation options fail cleanly.
 * With --dump MODEL TOK OUTDIR: writes two random TopK SAEs, a batch of
 * tokens, a JSON spec of intervention cases and loupe's logits for each
 * (read by tests/test_steer_torch.sh and tests/ref/steer_ref.py). */
#include "loupe/sae_format.h"
#include "loupe/steer.h"
#include "testutil.h"

static lp_sae *random_sae(int d, int F, int k, const char *hook, uint64_t seed) {
    lp_sae_config c;
    lp_sae_config_default(&c);
    c.arch = LP_SAE_TOPK;
    c.d_in = d, c.d_sae = F, c.k = k;
    snprintf(c.hook, sizeof c.hook, "%s", hook);
    lp_sae *s = NULL;
    if (lp_sae_new(&s, &c)) return NULL;
    lp_sae_init(s, seed);
    lp_rng r;
    lp_rng_seed(&r, seed + 1);
    for (int f = 0; f < F; f++) s->p[LP_SAE_B_ENC][f] = 0.2f * lp_rng_normal(&r);
    for (int j = 0; j < d; j++) s->p[LP_SAE_B_DEC][j] = 0.1f * lp_rng_normal(&r);
    return s;
}

typedef struct {
    const char *name;
    int variant;
    const char *pos;
    int n_prompt;
    int n;
    struct {
        int sae; /* 0: sae1 at R2, 1: sae2 at R1 */
        int feature, op;
        float coef, zbar;
    } t[2];
} dump_case;

static int dump(const char *model, const char *tokp, const char *dir) {
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    if (lp_model_load(&m, model) || lp_tokenizer_load(&tok, tokp, m->cfg.vocab_size)) return fprintf(stderr, "%s\n", lp_errmsg()), 1;
    const int B = 2, T = 40, D = m->cfg.dim, V = m->cfg.vocab_size, F = 96;
    const char *texts[2] = {"Once upon a time, there was a little dog named Max. Max liked to run in the park with his friend Tom every day. "
                            "One day Max saw a big cat in a tree and he barked and barked until the cat came down.",
                            "Lily and her mom went to the store to buy a big red ball. They were very happy and they played all day. "
                            "When the sun went down, Lily hugged her mom and said thank you for the best day ever."};
    int toks[2 * 40], buf[400];
    for (int b = 0; b < B; b++) {
        int n = 0;
        lp_tokenizer_encode(tok, texts[b], 1, 0, buf, 400, &n);
        if (n < T) return fprintf(stderr, "text too short\n"), 1;
        memcpy(toks + b * T, buf, T * sizeof(int));
    }
    char p[1024];
    lp_sae *w1 = random_sae(D, F, 6, "blocks.2.hook_resid_post", 11), *w2 = random_sae(D, F, 6, "blocks.1.hook_resid_post", 22);
    snprintf(p, sizeof p, "%s/sae1", dir);
    if (lp_sae_save(w1, p, LP_SAE_FMT_SAELENS)) return fprintf(stderr, "%s\n", lp_errmsg()), 1;
    snprintf(p, sizeof p, "%s/sae2", dir);
    if (lp_sae_save(w2, p, LP_SAE_FMT_SAELENS)) return fprintf(stderr, "%s\n", lp_errmsg()), 1;
    lp_sae_free(w1), lp_sae_free(w2);
    lp_sae *s[2] = {NULL, NULL};
    snprintf(p, sizeof p, "%s/sae1", dir);
    if (lp_sae_load(&s[0], p, D)) return fprintf(stderr, "%s\n", lp_errmsg()), 1;
    snprintf(p, sizeof p, "%s/sae2", dir);
    if (lp_sae_load(&s[1], p, D)) return fprintf(stderr, "%s\n", lp_errmsg()), 1;
    lp_hook_point at[2] = {{2, LP_HOOK_RESID_POST}, {1, LP_HOOK_RESID_POST}};
    lp_runner *r = NULL;
    if (lp_runner_new(&r, m, B, T)) return 1;
    /* the latent of sae1 active on most rows of the clean batch */
    float *cap = malloc(sizeof(float) * B * T * D), *pre = malloc(sizeof(float) * B * T * F);
    lp_splice cs;
    lp_splice_init(&cs, LP_SPLICE_CAPTURE, NULL, 1, B * T, D);
    cs.captured = cap;
    lp_hooks h;
    lp_hooks_clear(&h);
    lp_hooks_add(&h, at[0], lp_splice_hook, &cs);
    lp_forward(r, toks, B, T, 0, &h, LP_LOGITS_NONE, NULL);
    lp_splice_free(&cs);
    lp_sae_codes c = {0};
    lp_sae_encode(s[0], cap, B * T, pre, &c, 0);
    int cnt[96] = {0}, fa = 0;
    for (int64_t q = 0; q < c.rowptr[B * T]; q++) cnt[c.idx[q]]++;
    for (int f = 1; f < F; f++)
        if (cnt[f] > cnt[fa]) fa = f;
    free(c.rowptr), free(c.idx), free(c.val), free(c.pre), free(cap), free(pre);
    dump_case cases[] = {
        {"add_range", LP_STEER_KEEP_ERROR, "3:20", 1, 1, {{0, 5, LP_STEER_ADD, 3.0f, 1.7f}}},
        {"rescale_remove", LP_STEER_KEEP_ERROR, "all", 1, 1, {{0, fa, LP_STEER_RESCALE, 0.0f, 0}}},
        {"rescale_neg_through_sae", LP_STEER_THROUGH_SAE, "all", 1, 1, {{0, fa, LP_STEER_RESCALE, -1.0f, 0}}},
        {"add_gen_through_sae", LP_STEER_THROUGH_SAE, "gen", 12, 1, {{0, 7, LP_STEER_ADD, 2.0f, 1.1f}}},
        {"multi_layer", LP_STEER_KEEP_ERROR, "all", 1, 2, {{1, 3, LP_STEER_ADD, 1.5f, 0.9f}, {0, fa, LP_STEER_RESCALE, 2.0f, 0}}},
    };
    const int nc = sizeof cases / sizeof cases[0];
    snprintf(p, sizeof p, "%s/spec.json", dir);
    FILE *js = fopen(p, "w");
    fprintf(js, "{\"B\": %d, \"T\": %d, \"bos\": 1, \"saes\": {\"0\": {\"dir\": \"sae1\", \"hook\": \"blocks.2.hook_resid_post\"}, "
                "\"1\": {\"dir\": \"sae2\", \"hook\": \"blocks.1.hook_resid_post\"}}, \"cases\": [\n",
            B, T);
    float *logits = malloc(sizeof(float) * B * T * V);
    int rc = 0;
    for (int k = 0; k < nc && !rc; k++) {
        const dump_case *dc = &cases[k];
        lp_pos_spec pos;
        lp_pos_parse(dc->pos, &pos);
        lp_steer st;
        lp_steer_init(&st, dc->variant, &pos, 1);
        st.n_prompt = dc->n_prompt;
        fprintf(js, "%s {\"name\": \"%s\", \"variant\": \"%s\", \"pos\": {\"kind\": %d, \"lo\": %d, \"hi\": %d}, \"n_prompt\": %d, \"terms\": [",
                k ? "," : "", dc->name, dc->variant == LP_STEER_KEEP_ERROR ? "error" : "sae", pos.kind, pos.lo, pos.hi, dc->n_prompt);
        for (int j = 0; j < dc->n; j++) {
            lp_steer_term t = {at[dc->t[j].sae], s[dc->t[j].sae], dc->t[j].feature, dc->t[j].op, dc->t[j].coef, dc->t[j].zbar};
            rc |= lp_steer_add(&st, &t);
            fprintf(js, "%s{\"sae\": \"%d\", \"feature\": %d, \"op\": \"%s\", \"coef\": %.9g, \"zbar\": %.9g}", j ? ", " : "",
                    dc->t[j].sae, dc->t[j].feature, dc->t[j].op == LP_STEER_ADD ? "add" : "rescale", dc->t[j].coef, dc->t[j].zbar);
        }
        fprintf(js, "]}\n");
        lp_hooks_clear(&h);
        rc |= lp_steer_hooks(&st, m, B * T, &h);
        rc |= lp_forward(r, toks, B, T, 0, &h, LP_LOGITS_ALL, logits);
        if (st.rows == 0) rc = fprintf(stderr, "%s: no rows changed\n", dc->name) > 0;
        snprintf(p, sizeof p, "%s/%s.f32", dir, dc->name);
        rc |= lp_write_file_atomic(p, logits, sizeof(float) * B * T * V);
        lp_steer_free(&st);
    }
    fprintf(js, "]}\n");
    fclose(js);
    rc |= lp_forward(r, toks, B, T, 0, NULL, LP_LOGITS_ALL, logits);
    snprintf(p, sizeof p, "%s/clean.f32", dir);
    rc |= lp_write_file_atomic(p, logits, sizeof(float) * B * T * V);
    snprintf(p, sizeof p, "%s/tok.i32", dir);
    rc |= lp_write_file_atomic(p, toks, sizeof toks);
    if (rc) fprintf(stderr, "dump failed: %s\n", lp_errmsg());
    free(logits);
    lp_runner_free(r);
    lp_sae_free(s[0]), lp_sae_free(s[1]);
    lp_tokenizer_free(tok);
    lp_model_free(m);
    return rc != 0;
}

static void test_generation(void) {
    lp_model *m = NULL;
    lp_tokenizer *tok = NULL;
    CHECK_OK(lp_model_load(&m, t_sharedpath("models/stories260K.bin")));
    if (!m) return;
    CHECK_OK(lp_tokenizer_load(&tok, t_sharedpath("models/tok512.bin"), m->cfg.vocab_size));
    lp_set_threads(1);
    lp_sae *s = random_sae(m->cfg.dim, 64, 4, "blocks.3.hook_resid_post", 5);
    int prompt[32], np = 0;
    lp_tokenizer_encode(tok, "Once upon a time", 1, 0, prompt, 32, &np);
    const char *words[1] = {"the"};
    lp_steer_eval_opts o = {prompt, np, 48, 3, 1.0f, 0.9f, 99, 1, words};
    lp_steer_eval_result base, a0, a1, big, rm;
    char *tb[3], *t0[3], *tbig[3];
    CHECK_OK(lp_steer_eval(m, tok, NULL, &o, &base, tb));
    lp_pos_spec pos = {LP_POS_GEN, 0, 0};
    lp_steer st;
    lp_steer_init(&st, LP_STEER_KEEP_ERROR, &pos, 1);
    lp_steer_term t = {{3, LP_HOOK_RESID_POST}, s, 10, LP_STEER_ADD, 0.0f, 2.0f};
    CHECK_OK(lp_steer_add(&st, &t));
    CHECK_OK(lp_steer_eval(m, tok, &st, &o, &a0, t0));
    for (int i = 0; i < 3; i++) CHECK(strcmp(tb[i], t0[i]) == 0, "alpha 0 changed sample %d", i);
    CHECK(a0.coherence == base.coherence && a0.rate == base.rate, "alpha 0 changed the measures");
    CHECK(base.coherence < 0 && base.coherence > -5 && base.gen_tokens > 10, "coherence %.3f, %.1f tokens", base.coherence,
          base.gen_tokens);
    CHECK_OK(lp_steer_eval(m, tok, NULL, &o, &a1, NULL));
    CHECK(a1.coherence == base.coherence, "seeded generation is not deterministic");
    st.term[0].coef = 40.0f;
    CHECK_OK(lp_steer_eval(m, tok, &st, &o, &big, tbig));
    int differ = 0;
    for (int i = 0; i < 3; i++) differ += strcmp(tb[i], tbig[i]) != 0;
    CHECK(differ == 3 && big.coherence < base.coherence, "a strong push changed %d of 3 samples (coherence %.3f vs %.3f)",
          differ, big.coherence, base.coherence);
    CHECK(st.rows > 0, "no rows steered");
    /* prompt positions with a BOS-only prompt select nothing */
    lp_steer_eval_opts o2 = o;
    o2.n_prompt = 1;
    st.pos.kind = LP_POS_PROMPT;
    CHECK(lp_steer_eval(m, tok, &st, &o2, &rm, NULL) == LP_ERR_ARG && strstr(lp_errmsg(), "select nothing"), "prompt spec: %s",
          lp_errmsg());
    o2 = o;
    o2.steps = 2;
    CHECK(lp_steer_eval(m, tok, NULL, &o2, &rm, NULL) == LP_ERR_ARG, "steps shorter than the prompt accepted");
    o2 = o;
    o2.samples = 0;
    CHECK(lp_steer_eval(m, tok, NULL, &o2, &rm, NULL) == LP_ERR_ARG, "zero samples accepted");
    lp_steer_free(&st);
    for (int i = 0; i < 3; i++) free(tb[i]), free(t0[i]), free(tbig[i]);
    /* Z̄ and frequency: means are of firing values only, frequencies in [0, 1] */
    float z[64], fr[64];
    float *zp[1] = {z}, *fp[1] = {fr};
    lp_hook_point hp = {3, LP_HOOK_RESID_POST};
    CHECK_OK(lp_feature_stats(m, tok, 1, &s, &hp, t_sharedpath("data/tinystories/five_stories.txt"), 0, 2000, 64, zp, fp));
    double fsum = 0;
    int ok = 1;
    for (int f = 0; f < 64; f++) {
        fsum += fr[f];
        ok &= fr[f] >= 0 && fr[f] <= 1 && (fr[f] > 0) == (z[f] > 0);
    }
    CHECK(ok && fsum <= 4.0 + 1e-3 && fsum > 3.0, "frequencies sum to %.4f (at most k = 4 active per token)", fsum);
    lp_sae_free(s);
    lp_tokenizer_free(tok);
    lp_model_free(m);
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--dump") == 0) return dump(argv[2], argv[3], argv[4]);
    test_generation();
    return t_done("test_steer");
}
