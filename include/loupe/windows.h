/* loupe/windows.h — fixed-length token windows from a text corpus, the unit
 * every batched model run (harvest, evaluation) consumes. Documents are
 * tokenized with BOS and concatenated; each window of ctx tokens starts with
 * BOS (a document's own BOS, or one prepended when a window begins mid-
 * document). A trailing partial window is dropped. */
#ifndef LOUPE_WINDOWS_H
#define LOUPE_WINDOWS_H

#include <stdint.h>

#include "loupe/corpus.h"
#include "loupe/tokenizer.h"

typedef struct {
    lp_corpus corpus;
    const lp_tokenizer *tok;
    int ctx;
    int *pend;          /* pending stream tokens */
    int32_t *pend_doc;  /* their document index */
    int64_t n_pend, cap, head;
    int64_t doc;        /* documents tokenized so far */
    int64_t tokens;     /* stream tokens consumed into windows */
    int64_t windows;
    int done;
} lp_windows;

int lp_windows_open(lp_windows *w, const char *path, int64_t skip_bytes, const lp_tokenizer *tok, int ctx);
/* Up to B windows into tokens[B*ctx] and doc[B*ctx] (doc may be NULL); *nb
 * gets how many (0 at the end of the corpus). */
int lp_windows_next(lp_windows *w, int B, int *tokens, int32_t *doc, int *nb);
/* Byte offset in the file just past the last document used so far. */
int64_t lp_windows_bytes(const lp_windows *w);
void lp_windows_close(lp_windows *w);

#endif
