/* corpus.c — stream documents out of a text file (see loupe/corpus.h). */
#include "loupe/corpus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/base.h"

static const char k_marker[] = "<|endoftext|>";
#define MARK_LEN (sizeof k_marker - 1)
#define CHUNK (1 << 20)

static int fill(lp_corpus *c) {
    if (c->eof) return LP_OK;
    if (c->cap - c->len < CHUNK) {
        size_t ncap = c->cap ? c->cap * 2 : 2 * CHUNK;
        while (ncap - c->len < CHUNK) ncap *= 2;
        char *nb = realloc(c->buf, ncap + 1);
        if (!nb) return lp_fail(LP_ERR_NOMEM, "%s: out of memory reading", c->path);
        c->buf = nb;
        c->cap = ncap;
    }
    size_t n = fread(c->buf + c->len, 1, CHUNK, c->f);
    if (n < CHUNK) {
        if (ferror(c->f)) return lp_fail(LP_ERR_IO, "%s: read failed", c->path);
        c->eof = 1;
    }
    c->len += n;
    c->buf[c->len] = 0;
    return LP_OK;
}

static void consume(lp_corpus *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->offset += (int64_t)n;
    c->buf[c->len] = 0;
}

/* position of the next separator in buf (and its length), or -1 */
static int64_t find_sep(const lp_corpus *c, size_t *seplen) {
    if (c->marker) {
        const char *p = memmem(c->buf, c->len, k_marker, MARK_LEN);
        *seplen = MARK_LEN;
        return p ? p - c->buf : -1;
    }
    for (size_t i = 0; i + 1 < c->len; i++)
        if (c->buf[i] == '\n') {
            size_t j = i + 1;
            while (j < c->len && (c->buf[j] == ' ' || c->buf[j] == '\t' || c->buf[j] == '\r')) j++;
            if (j < c->len && c->buf[j] == '\n') {
                *seplen = j + 1 - i;
                return (int64_t)i;
            }
        }
    return -1;
}

int lp_corpus_open(lp_corpus *c, const char *path, int64_t skip) {
    memset(c, 0, sizeof *c);
    c->f = fopen(path, "rb");
    if (!c->f) return lp_fail(LP_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    c->path = lp_strdup(path);
    int rc = fill(c);
    if (!rc) c->marker = memmem(c->buf, c->len, k_marker, MARK_LEN) != NULL;
    if (!rc && skip > 0) {
        if (fseek(c->f, (long)skip, SEEK_SET) != 0) rc = lp_fail(LP_ERR_IO, "%s: cannot seek", path);
        c->len = 0;
        c->eof = 0;
        c->offset = skip;
        if (!rc) rc = fill(c);
        /* drop the partial document we landed in */
        size_t sl;
        while (!rc) {
            int64_t p = find_sep(c, &sl);
            if (p >= 0) {
                consume(c, (size_t)p + sl);
                break;
            }
            if (c->eof) {
                consume(c, c->len);
                break;
            }
            rc = fill(c);
        }
    }
    if (rc) lp_corpus_close(c);
    c->doc_end = c->offset;
    return rc;
}

static int is_space(char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r'; }

int lp_corpus_next(lp_corpus *c, char **doc) {
    *doc = NULL;
    for (;;) {
        size_t sl = 0;
        int64_t p = find_sep(c, &sl);
        while (p < 0 && !c->eof) {
            int rc = fill(c);
            if (rc) return rc;
            p = find_sep(c, &sl);
        }
        size_t end = p >= 0 ? (size_t)p : c->len;
        if (p < 0 && end == 0) return LP_OK; /* nothing left */
        size_t a = 0, b = end;
        while (a < b && is_space(c->buf[a])) a++;
        while (b > a && is_space(c->buf[b - 1])) b--;
        char *d = NULL;
        if (b > a) {
            d = lp_malloc(b - a + 1);
            if (!d) return LP_ERR_NOMEM;
            memcpy(d, c->buf + a, b - a);
            d[b - a] = 0;
        }
        consume(c, p >= 0 ? end + sl : end);
        c->doc_end = c->offset;
        if (d) {
            c->docs++;
            *doc = d;
            return LP_OK;
        }
        if (p < 0) return LP_OK;
    }
}

void lp_corpus_close(lp_corpus *c) {
    if (c->f) fclose(c->f);
    free(c->buf);
    free(c->path);
    memset(c, 0, sizeof *c);
}
