/* steer_eval.c — the measured effect of a steering intervention: seeded
 * samples generated with the interventions, the rate of a target behaviour
 * (target words in the generated text) and coherence (mean log-likelihood
 * per generated token of the steered text under the unsteered model). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/steer.h"

/* does word w[0..n) match target t (case-insensitive; "x*" = prefix x)? */
static int word_matches(const char *w, size_t n, const char *t) {
    size_t tl = strlen(t);
    int prefix = tl > 0 && t[tl - 1] == '*';
    if (prefix) tl--;
    if (prefix ? n < tl : n != tl) return 0;
    for (size_t i = 0; i < tl; i++)
        if (tolower((unsigned char)w[i]) != tolower((unsigned char)t[i])) return 0;
    return 1;
}

int lp_count_words(const char *text, const char *const *words, int n_targets, int *n_words) {
    int hits = 0, nw = 0;
    const char *p = text;
    while (*p) {
        while (*p && !isalnum((unsigned char)*p) && *p != '\'') p++;
        const char *s = p;
        while (*p && (isalnum((unsigned char)*p) || *p == '\'')) p++;
        if (p == s) continue;
        size_t n = (size_t)(p - s);
        if (n >= 2 && s[n - 2] == '\'' && (s[n - 1] == 's' || s[n - 1] == 'S')) n -= 2; /* dog's -> dog */
        nw++;
        for (int k = 0; k < n_targets; k++)
            if (word_matches(s, n, words[k])) {
                hits++;
                break;
            }
    }
    if (n_words) *n_words = nw;
    return hits;
}

/* mean log p of ids[from..n) under the unsteered model, given ids[0..from) */
static int loglik(lp_runner *r, const int *ids, int n, int from, int V, float *logits, double *sum, int *cnt) {
    *sum = 0;
    *cnt = 0;
    if (n <= from || n < 2) return LP_OK;
    int rc = lp_forward(r, ids, 1, n - 1, 0, NULL, LP_LOGITS_ALL, logits);
    if (rc) return rc;
    for (int t = from - 1; t < n - 1; t++) {
        const float *l = logits + (int64_t)t * V;
        float mx = l[0];
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        double se = 0;
        for (int v = 0; v < V; v++) se += exp((double)l[v] - mx);
        *sum += l[ids[t + 1]] - mx - log(se);
        (*cnt)++;
    }
    return LP_OK;
}

int lp_steer_eval(const lp_model *m, const lp_tokenizer *tok, lp_steer *st, const lp_steer_eval_opts *o,
                  lp_steer_eval_result *res, char **texts) {
    memset(res, 0, sizeof *res);
    if (o->samples <= 0) return lp_fail(LP_ERR_ARG, "steer eval: samples must be positive");
    if (o->n_prompt <= 0) return lp_fail(LP_ERR_ARG, "steer eval: empty prompt (BOS is required)");
    if (o->steps <= o->n_prompt || o->steps > m->cfg.seq_len)
        return lp_fail(LP_ERR_ARG, "steer eval: steps %d must exceed the prompt's %d tokens and be <= %d", o->steps,
                       o->n_prompt, m->cfg.seq_len);
    if (texts) memset(texts, 0, (size_t)o->samples * sizeof *texts);
    const int V = m->cfg.vocab_size, cap = o->steps + 1;
    lp_runner *r = NULL, *clean = NULL;
    int *ids = lp_malloc((size_t)cap * sizeof(int));
    float *logits = lp_malloc((size_t)cap * V * sizeof(float));
    lp_hooks hooks;
    lp_hooks_clear(&hooks);
    int rc = (!ids || !logits) ? LP_ERR_NOMEM : LP_OK;
    if (!rc && st) {
        st->n_prompt = o->n_prompt;
        rc = lp_pos_check(&st->pos, o->n_prompt, o->steps + 1);
        if (!rc) rc = lp_steer_hooks(st, m, o->n_prompt > 1 ? o->n_prompt : 1, &hooks);
    }
    if (!rc) rc = lp_runner_new(&r, m, 1, o->steps);
    if (!rc) rc = lp_runner_new(&clean, m, 1, o->steps);
    double ll = 0, hits_words = 0, words = 0, gen = 0;
    int64_t ll_n = 0, with_hit = 0;
    for (int i = 0; i < o->samples && !rc; i++) {
        lp_sampler s = {o->temperature, o->top_p, o->seed + (uint64_t)i};
        int n = 0;
        if ((rc = lp_generate(r, o->prompt, o->n_prompt, o->steps, &s, st ? &hooks : NULL, 0, ids, &n))) break;
        double sum;
        int cnt;
        if ((rc = loglik(clean, ids, n, o->n_prompt, V, logits, &sum, &cnt))) break;
        ll += sum;
        ll_n += cnt;
        gen += n - o->n_prompt;
        char *text = NULL;
        /* decode with the prompt's last token as context so the first piece
         * keeps its leading space, then drop that prefix */
        int from = o->n_prompt - 1;
        if ((rc = lp_tokenizer_decode(tok, ids + from, n - from, &text))) break;
        char *prompt_txt = NULL;
        if ((rc = lp_tokenizer_decode(tok, ids + from, 1, &prompt_txt))) {
            free(text);
            break;
        }
        size_t skip = strlen(prompt_txt);
        free(prompt_txt);
        memmove(text, text + skip, strlen(text + skip) + 1);
        int nw = 0, h = lp_count_words(text, o->words, o->n_words, &nw);
        hits_words += h;
        words += nw;
        with_hit += h > 0;
        if (texts) texts[i] = text;
        else free(text);
    }
    if (!rc) {
        res->samples = o->samples;
        res->rate = (double)with_hit / o->samples;
        res->per_100 = words > 0 ? 100.0 * hits_words / words : 0;
        res->coherence = ll_n ? ll / ll_n : 0;
        res->gen_tokens = gen / o->samples;
    } else if (texts) {
        for (int i = 0; i < o->samples; i++) free(texts[i]), texts[i] = NULL;
    }
    lp_runner_free(r);
    lp_runner_free(clean);
    free(ids);
    free(logits);
    return rc;
}
