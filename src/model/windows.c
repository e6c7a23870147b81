/* windows.c — fixed-length, BOS-led token windows from a corpus (see
 * loupe/windows.h). */
#include "loupe/windows.h"

#include <stdlib.h>
#include <string.h>

#include "loupe/base.h"

int lp_windows_open(lp_windows *w, const char *path, int64_t skip_bytes, const lp_tokenizer *tok, int ctx) {
    memset(w, 0, sizeof *w);
    if (ctx < 2) return lp_fail(LP_ERR_ARG, "context length %d is too short", ctx);
    w->tok = tok;
    w->ctx = ctx;
    return lp_corpus_open(&w->corpus, path, skip_bytes);
}

static int refill(lp_windows *w) {
    while (!w->done && w->n_pend - w->head < w->ctx) {
        char *doc = NULL;
        int rc = lp_corpus_next(&w->corpus, &doc);
        if (rc) return rc;
        if (!doc) {
            w->done = 1;
            break;
        }
        int64_t need = (int64_t)strlen(doc) + 3;
        /* compact, then grow */
        if (w->head > 0) {
            memmove(w->pend, w->pend + w->head, (size_t)(w->n_pend - w->head) * sizeof(int));
            memmove(w->pend_doc, w->pend_doc + w->head, (size_t)(w->n_pend - w->head) * sizeof(int32_t));
            w->n_pend -= w->head;
            w->head = 0;
        }
        if (w->n_pend + need > w->cap) {
            int64_t cap = (w->n_pend + need) * 2;
            int *p = realloc(w->pend, (size_t)cap * sizeof(int));
            if (p) w->pend = p;
            int32_t *q = p ? realloc(w->pend_doc, (size_t)cap * sizeof(int32_t)) : NULL;
            if (!q) {
                free(doc);
                return lp_fail(LP_ERR_NOMEM, "out of memory tokenizing %s", w->corpus.path);
            }
            w->pend_doc = q;
            w->cap = cap;
        }
        int n = 0;
        rc = lp_tokenizer_encode(w->tok, doc, 1, 0, w->pend + w->n_pend, (int)need, &n);
        free(doc);
        if (rc) return rc;
        for (int i = 0; i < n; i++) w->pend_doc[w->n_pend + i] = (int32_t)w->doc;
        w->n_pend += n;
        w->doc++;
    }
    return LP_OK;
}

int lp_windows_next(lp_windows *w, int B, int *tokens, int32_t *doc, int *nb) {
    *nb = 0;
    const int bos = lp_tokenizer_bos(w->tok), T = w->ctx;
    for (int b = 0; b < B; b++) {
        int rc = refill(w);
        if (rc) return rc;
        int64_t avail = w->n_pend - w->head;
        int lead = w->head < w->n_pend && w->pend[w->head] == bos ? 0 : 1;
        if (avail < T - lead) break; /* partial window: stop */
        int *t = tokens + (int64_t)b * T;
        int32_t *dd = doc ? doc + (int64_t)b * T : NULL;
        if (lead) {
            t[0] = bos;
            if (dd) dd[0] = w->pend_doc[w->head];
        }
        memcpy(t + lead, w->pend + w->head, (size_t)(T - lead) * sizeof(int));
        if (dd) memcpy(dd + lead, w->pend_doc + w->head, (size_t)(T - lead) * sizeof(int32_t));
        w->head += T - lead;
        w->tokens += T - lead;
        w->windows++;
        (*nb)++;
    }
    return LP_OK;
}

int64_t lp_windows_bytes(const lp_windows *w) { return w->corpus.doc_end; }

void lp_windows_close(lp_windows *w) {
    lp_corpus_close(&w->corpus);
    free(w->pend);
    free(w->pend_doc);
    memset(w, 0, sizeof *w);
}
