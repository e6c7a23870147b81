/* llm.c — the LLM explainer and scorer over an OpenAI-compatible chat
 * endpoint (loupe/interp.h): one request per feature writes an explanation
 * from its evidence windows (activating tokens marked << >>, each window
 * labelled with its segment); a second request asks for a 0..1 prediction
 * for each held-out window (positives and negatives shuffled); AUROC from
 * those. libcurl does the HTTP (built only when it was found). */
#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/interp.h"

#ifdef LP_HAVE_CURL
#include <cjson/cJSON.h>
#include <curl/curl.h>

typedef struct {
    char *buf;
    size_t len, cap, limit;
} sink;

static size_t sink_write(char *p, size_t sz, size_t n, void *user) {
    sink *s = user;
    size_t m = sz * n;
    if (s->len + m + 1 > s->limit) return 0; /* reply too large: abort */
    if (s->len + m + 1 > s->cap) {
        size_t c = s->cap ? s->cap : 4096;
        while (c < s->len + m + 1) c *= 2;
        char *q = realloc(s->buf, c);
        if (!q) return 0;
        s->buf = q;
        s->cap = c;
    }
    memcpy(s->buf + s->len, p, m);
    s->len += m;
    s->buf[s->len] = 0;
    return m;
}

/* POST one chat request; *content gets the first choice's message text. */
static int chat(CURL *h, const char *endpoint, const lp_llm_opts *o, const char *prompt, char **content) {
    *content = NULL;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "model", o->model ? o->model : "default");
    cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", prompt);
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddNumberToObject(req, "temperature", 0);
    cJSON_AddNumberToObject(req, "max_tokens", 300);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) return lp_fail(LP_ERR_NOMEM, "explainer: out of memory");
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[1200];
    if (o->key && *o->key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->key);
        hd = curl_slist_append(hd, auth);
    }
    sink s = {.limit = 16 << 20};
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, endpoint);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)(o->timeout_s > 0 ? o->timeout_s : 60));
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    free(body);
    int rc = LP_OK;
    if (cc != CURLE_OK) rc = lp_fail(LP_ERR_IO, "%s: request failed (%s)", endpoint, curl_easy_strerror(cc));
    else if (status != 200)
        rc = lp_fail(LP_ERR_IO, "%s: HTTP %ld%s", endpoint, status,
                     status == 401 || status == 403 ? " (check the API key variable)" : "");
    if (!rc) {
        cJSON *j = cJSON_Parse(s.buf ? s.buf : "");
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(msg, "content");
        if (!cJSON_IsString(ct)) rc = lp_fail(LP_ERR_FORMAT, "%s: reply has no choices[0].message.content", endpoint);
        else if (!(*content = lp_strdup(ct->valuestring))) rc = LP_ERR_NOMEM;
        cJSON_Delete(j);
    }
    free(s.buf);
    return rc;
}

/* growing string */
typedef struct {
    char *s;
    size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = b->s ? vsnprintf(b->s + b->len, room, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && (size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t c = b->cap ? b->cap * 2 : 1024;
        if (n >= 0)
            while (c < b->len + (size_t)n + 1) c *= 2;
        char *p = realloc(b->s, c);
        if (!p) return;
        b->s = p;
        b->cap = c;
    }
}

/* First non-empty line, without an "Explanation:" prefix, at most 300 bytes. */
static char *clean_expl(const char *c) {
    while (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t') c++;
    if (!strncasecmp(c, "explanation:", 12)) c += 12;
    while (*c == ' ') c++;
    size_t n = strcspn(c, "\r\n");
    if (n > 300) n = 300;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, c, n);
    s[n] = 0;
    return s;
}

/* Parse up to want numbers from a reply like "0, 1, 0.5" or "1. 0\n2. 1"
 * (list numbering "K." / "K:" / "K)" is skipped). Returns how many. */
static int parse_scores(const char *c, float *out, int want) {
    int n = 0;
    const char *p = c;
    while (*p && n < want + 1) {
        if (!(isdigit((unsigned char)*p) || *p == '.')) {
            p++;
            continue;
        }
        char *end;
        double v = strtod(p, &end);
        if (end == p) {
            p++;
            continue;
        }
        const char *q = end;
        while (*q == ' ') q++;
        if ((*q == '.' || *q == ':' || *q == ')') && v == (int)v && v >= 1 && !(q[1] >= '0' && q[1] <= '9')) {
            p = q + 1; /* a list number */
            continue;
        }
        if (n < want) out[n] = (float)v;
        n++;
        p = end;
    }
    return n;
}

int lp_explain_llm(const lp_features *f, char *const *vocab, const lp_llm_opts *o, lp_explanations *ex,
                   int *n_requests) {
    *n_requests = 0;
    if (!o->url || (strncmp(o->url, "http://", 7) != 0 && strncmp(o->url, "https://", 8) != 0))
        return lp_fail(LP_ERR_ARG, "--explainer-url must start with http:// or https:// (got '%s')",
                       o->url ? o->url : "");
    char endpoint[2048];
    size_t ul = strlen(o->url);
    if (ul > 1500) return lp_fail(LP_ERR_ARG, "--explainer-url too long");
    while (ul > 0 && o->url[ul - 1] == '/') ul--;
    if (ul >= 17 && !strncmp(o->url + ul - 17, "/chat/completions", 17))
        snprintf(endpoint, sizeof endpoint, "%.*s", (int)ul, o->url);
    else
        snprintf(endpoint, sizeof endpoint, "%.*s/chat/completions", (int)ul, o->url);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return lp_fail(LP_ERR_IO, "explainer: libcurl init failed");
    CURL *h = curl_easy_init();
    int *train = malloc((size_t)f->E * sizeof *train), *pos = malloc((size_t)f->E * sizeof *pos),
        *neg = malloc((size_t)f->E * sizeof *neg), *order = malloc((size_t)f->E * 2 * sizeof *order);
    float *sc = malloc((size_t)f->E * 2 * sizeof *sc), *sp = malloc((size_t)f->E * sizeof *sp),
          *sn = malloc((size_t)f->E * sizeof *sn);
    int rc = LP_OK, done = 0;
    if (!h || !train || !pos || !neg || !order || !sc || !sp || !sn) {
        rc = lp_fail(LP_ERR_NOMEM, "explainer: out of memory");
        goto out;
    }
    snprintf(ex->explainer, sizeof ex->explainer, "llm:%s", o->model ? o->model : "default");
    lp_rng rng;
    lp_rng_seed(&rng, 12345);
    lp_progress pg;
    int todo = 0;
    for (int i = 0; i < f->F; i++) todo += f->fires[i] > 0;
    if (o->max_features > 0 && todo > o->max_features) todo = o->max_features;
    lp_progress_init(&pg, todo, "features");
    if (!o->progress) pg.enabled = 0;
    for (int feat = 0; feat < f->F && !rc && done < todo; feat++) {
        if (f->fires[feat] == 0) continue;
        int nt, np, nn;
        lp_detection_split(f, feat, train, &nt, pos, &np, neg, &nn);
        /* 1. explain */
        sbuf b = {0};
        sb_add(&b, "We are studying a feature of a sparse autoencoder on a language model. Below are text "
                   "excerpts where the feature is active; active tokens are marked <<like this>>. Each excerpt "
                   "is labelled with the segment of the token stream it comes from.\n\n");
        for (int i = 0; i < nt; i++) {
            char *w = lp_window_text(f, vocab, feat, train[i], 1);
            int sg = f->ctx_seg[((size_t)feat * f->E + train[i]) * f->W + f->left];
            sb_add(&b, "Excerpt %d [%s]: %s\n", i + 1, sg < f->S ? f->seg_names[sg] : "?", w ? w : "");
            free(w);
        }
        sb_add(&b, "\nIn one short line, what does this feature detect? Reply with the explanation only.");
        char *content = NULL;
        rc = b.s ? chat(h, endpoint, o, b.s, &content) : LP_ERR_NOMEM;
        free(b.s);
        (*n_requests)++;
        if (rc) break;
        char *expl = clean_expl(content);
        free(content);
        if (!expl) {
            rc = LP_ERR_NOMEM;
            break;
        }
        free(ex->text[feat]);
        ex->text[feat] = expl;
        /* 2. score held-out windows, shuffled */
        int nw = 0;
        for (int i = 0; i < np; i++) order[nw++] = pos[i];
        for (int i = 0; i < nn; i++) order[nw++] = -1 - neg[i];
        for (int i = nw - 1; i > 0; i--) {
            int j = (int)lp_rng_below(&rng, (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        ex->auroc[feat] = NAN;
        ex->n_pos[feat] = np;
        ex->n_neg[feat] = nn;
        done++;
        lp_progress_update(&pg, done, NULL);
        if (np == 0 || nn == 0) continue;
        sbuf q = {0};
        sb_add(&q, "A feature of a language model is explained as: \"%s\"\n\nFor each excerpt below, predict how "
                   "likely it is that the feature is active on some token of the excerpt, from 0 (surely not) to "
                   "1 (surely). Reply with exactly %d numbers separated by commas, one per excerpt in order, and "
                   "nothing else.\n\n",
               expl, nw);
        for (int i = 0; i < nw; i++) {
            int e = order[i] >= 0 ? order[i] : -1 - order[i];
            char *w = lp_window_text(f, vocab, feat, e, 0);
            sb_add(&q, "%d. %s\n", i + 1, w ? w : "");
            free(w);
        }
        rc = q.s ? chat(h, endpoint, o, q.s, &content) : LP_ERR_NOMEM;
        free(q.s);
        (*n_requests)++;
        if (rc) break;
        int got = parse_scores(content, sc, nw);
        free(content);
        if (got != nw) continue; /* unparseable: unscored */
        int a = 0, c = 0;
        for (int i = 0; i < nw; i++) {
            if (order[i] >= 0) sp[a++] = sc[i];
            else sn[c++] = sc[i];
        }
        ex->auroc[feat] = (float)lp_auroc(sp, a, sn, c);
    }
    lp_progress_finish(&pg);
out:
    if (h) curl_easy_cleanup(h);
    free(train);
    free(pos);
    free(neg);
    free(order);
    free(sc);
    free(sp);
    free(sn);
    return rc;
}

#else

int lp_explain_llm(const lp_features *f, char *const *vocab, const lp_llm_opts *o, lp_explanations *ex,
                   int *n_requests) {
    (void)f;
    (void)vocab;
    (void)o;
    (void)ex;
    *n_requests = 0;
    return lp_fail(LP_ERR_ARG, "the LLM explainer needs libcurl: apt-get install libcurl4-openssl-dev and rebuild");
}

#endif
