/* vocab.c — display strings for token ids (loupe/interp.h): what the
 * dashboard prints for each token, always valid UTF-8, so that JSON and HTML
 * can carry it unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/interp.h"

/* 1 when s is valid UTF-8 without control bytes other than \n and \t. */
static int clean_utf8(const unsigned char *s) {
    while (*s) {
        if (*s < 0x80) {
            if (*s < 0x20 && *s != '\n' && *s != '\t') return 0;
            if (*s == 0x7f) return 0;
            s++;
            continue;
        }
        int n = (*s & 0xe0) == 0xc0 ? 1 : (*s & 0xf0) == 0xe0 ? 2 : (*s & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0 || *s == 0xc0 || *s == 0xc1 || *s > 0xf4) return 0;
        for (int i = 1; i <= n; i++)
            if ((s[i] & 0xc0) != 0x80) return 0;
        s += n + 1;
    }
    return 1;
}

void lp_vocab_free(char **vocab, int V) {
    if (!vocab) return;
    for (int i = 0; i < V; i++) free(vocab[i]);
    free(vocab);
}

int lp_vocab_build(const lp_tokenizer *tok, int V, char ***out) {
    *out = NULL;
    if (V != lp_tokenizer_vocab_size(tok))
        return lp_fail(LP_ERR_ARG, "vocab: tokenizer has %d tokens, expected %d", lp_tokenizer_vocab_size(tok), V);
    char **v = lp_calloc((size_t)V, sizeof *v);
    if (!v) return LP_ERR_NOMEM;
    for (int id = 0; id < V; id++) {
        char buf[64];
        const char *p;
        if (id == lp_tokenizer_bos(tok)) p = "<s>";
        else if (id == lp_tokenizer_eos(tok)) p = "</s>";
        else {
            p = lp_tokenizer_decode_piece(tok, 0, id);
            if (!p) p = "";
            if (!clean_utf8((const unsigned char *)p) || (id >= 3 && id < 259 && !*p)) {
                snprintf(buf, sizeof buf, "%s", lp_tokenizer_piece(tok, id) ? lp_tokenizer_piece(tok, id) : "?");
                if (!clean_utf8((const unsigned char *)buf)) snprintf(buf, sizeof buf, "<%d>", id);
                p = buf;
            }
        }
        if (!(v[id] = lp_strdup(p))) {
            lp_vocab_free(v, V);
            return LP_ERR_NOMEM;
        }
    }
    *out = v;
    return LP_OK;
}
