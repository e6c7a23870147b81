/* sample.c — token sampling (greedy, temperature, nucleus/top-p; seeded) and
 * KV-cached generation for one sequence. */
#include "loupe/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

typedef struct {
    float p;
    int i;
} prob_idx;

static int cmp_desc(const void *a, const void *b) {
    float x = ((const prob_idx *)a)->p, y = ((const prob_idx *)b)->p;
    if (x > y) return -1;
    if (x < y) return 1;
    return ((const prob_idx *)a)->i - ((const prob_idx *)b)->i;
}

int lp_sample(const lp_sampler *s, lp_rng *rng, float *logits, int V) {
    if (s->temperature <= 0.0f) return argmax(logits, V);
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        logits[i] /= s->temperature;
        if (logits[i] > mx) mx = logits[i];
    }
    double sum = 0;
    for (int i = 0; i < V; i++) {
        logits[i] = expf(logits[i] - mx);
        sum += logits[i];
    }
    for (int i = 0; i < V; i++) logits[i] = (float)(logits[i] / sum);
    double u = lp_rng_uniform(rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) {
        double cdf = 0;
        for (int i = 0; i < V; i++) {
            cdf += logits[i];
            if (u < cdf) return i;
        }
        return V - 1;
    }
    /* nucleus: smallest set of most probable tokens with mass >= top_p */
    prob_idx *pi = malloc((size_t)V * sizeof *pi);
    if (!pi) return argmax(logits, V);
    for (int i = 0; i < V; i++) pi[i] = (prob_idx){logits[i], i};
    qsort(pi, (size_t)V, sizeof *pi, cmp_desc);
    double mass = 0;
    int last = V - 1;
    for (int i = 0; i < V; i++) {
        mass += pi[i].p;
        if (mass >= s->top_p) {
            last = i;
            break;
        }
    }
    double r = u * mass, cdf = 0;
    int tok = pi[last].i;
    for (int i = 0; i <= last; i++) {
        cdf += pi[i].p;
        if (r < cdf) {
            tok = pi[i].i;
            break;
        }
    }
    free(pi);
    return tok;
}

int lp_generate(lp_runner *r, const int *prompt, int n_prompt, int steps, const lp_sampler *s,
                const lp_hooks *hooks, int stop_eos, int *out, int *n_out) {
    *n_out = 0;
    if (n_prompt <= 0) return lp_fail(LP_ERR_ARG, "generate: empty prompt (add BOS)");
    /* llama2.c: positions 0..steps-1 are forwarded, each yields the next token,
     * so the sequence ends with steps + 1 ids (BOS included). */
    int total = steps + 1;
    if (total < n_prompt) total = n_prompt;
    int V = lp_runner_vocab(r);
    float *logits = lp_malloc((size_t)V * sizeof(float));
    if (!logits) return LP_ERR_NOMEM;
    lp_rng rng;
    lp_rng_seed(&rng, s->seed);
    memcpy(out, prompt, (size_t)n_prompt * sizeof(int));
    int n = n_prompt, rc;
    /* prefill all prompt tokens at once, then one token per step */
    rc = lp_forward(r, prompt, 1, n_prompt, 0, hooks, LP_LOGITS_LAST, logits);
    while (!rc && n < total) {
        int next = lp_sample(s, &rng, logits, V);
        if (next == 1 || (stop_eos && next == 2)) break; /* BOS / EOS end a story */
        out[n++] = next;
        if (n >= total) break;
        rc = lp_forward(r, &out[n - 1], 1, 1, n - 1, hooks, LP_LOGITS_LAST, logits);
    }
    free(logits);
    *n_out = n;
    return rc;
}
