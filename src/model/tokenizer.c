/* tokenizer.c — the llama2.c tokenizer: loads tokenizer.bin (validating every
 * length against the file), encodes text with score-ordered BPE merges over a
 * linked list of symbols and a max-heap of candidate pairs (O(n log n)), and
 * decodes ids back to exact bytes. Piece lookup is an open-addressing hash
 * table over the normal pieces (ids >= 259). */
#include "loupe/tokenizer.h"

#include "loupe/base.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    TOK_UNK = 0,
    TOK_BOS = 1,
    TOK_EOS = 2,
    TOK_BYTE0 = 3,   /* "<0x00>" */
    TOK_NORMAL = 259 /* first normal (mergeable) piece */
};

struct lp_tokenizer {
    int vocab_size;
    int max_len;      /* longest normal piece, bounds lookups */
    char **pieces;    /* vocab_size NUL-terminated pieces, in `arena` */
    int *lens;        /* piece lengths in bytes */
    float *scores;
    char *arena;
    int *slots;       /* hash table of normal-piece ids, -1 = empty */
    uint32_t mask;    /* slots has mask + 1 entries (a power of two) */
    char bytestr[256][2]; /* decoded byte tokens as C strings */
};

/* ---- piece lookup ---------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, int n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* id of the normal piece equal to s[0..n), or -1 */
static int lookup(const lp_tokenizer *t, const char *s, int n) {
    if (n > t->max_len) return -1;
    uint32_t i = hash_bytes(s, n) & t->mask;
    for (;;) {
        int id = t->slots[i];
        if (id < 0) return -1;
        if (t->lens[id] == n && memcmp(t->pieces[id], s, (size_t)n) == 0) return id;
        i = (i + 1) & t->mask;
    }
}

/* ---- loading --------------------------------------------------------------- */

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

static float rd_f32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float r;
    memcpy(&r, &v, 4);
    return r;
}

void lp_tokenizer_free(lp_tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->lens);
    free(t->scores);
    free(t->arena);
    free(t->slots);
    free(t);
}

/* Parse the file image; errors name `path`. */
static int parse(lp_tokenizer *t, const char *path, const unsigned char *b, size_t size) {
    int V = t->vocab_size;
    if (size < 4) return lp_fail(LP_ERR_FORMAT, "%s: too short for a tokenizer header (%zu bytes)", path, size);
    int32_t maxlen = rd_i32(b);
    if (maxlen <= 0 || (size_t)maxlen > size)
        return lp_fail(LP_ERR_FORMAT, "%s: bad max_token_length %d in header", path, (int)maxlen);

    size_t pos = 4, arena_used = 0;
    for (int i = 0; i < V; i++) {
        if (size - pos < 8) {
            if (pos == size)
                return lp_fail(LP_ERR_FORMAT,
                               "%s: holds only %d tokens, expected %d (truncated, or wrong vocab size)",
                               path, i, V);
            return lp_fail(LP_ERR_FORMAT, "%s: truncated inside token %d of %d (at byte %zu of %zu)",
                           path, i, V, pos, size);
        }
        float score = rd_f32(b + pos);
        int32_t len = rd_i32(b + pos + 4);
        pos += 8;
        if (!isfinite(score))
            return lp_fail(LP_ERR_NUM, "%s: token %d has a non-finite score", path, i);
        if (len < 0) return lp_fail(LP_ERR_FORMAT, "%s: token %d has negative length %d", path, i, (int)len);
        if ((size_t)len > size - pos)
            return lp_fail(LP_ERR_FORMAT,
                           "%s: token %d length %d runs past the end of the file (truncated or corrupt)",
                           path, i, (int)len);
        if (len > maxlen)
            return lp_fail(LP_ERR_FORMAT, "%s: token %d length %d exceeds max_token_length %d", path, i,
                           (int)len, (int)maxlen);
        char *dst = t->arena + arena_used;
        memcpy(dst, b + pos, (size_t)len);
        dst[len] = 0;
        t->pieces[i] = dst;
        t->lens[i] = len;
        t->scores[i] = score;
        arena_used += (size_t)len + 1;
        pos += (size_t)len;
    }
    if (pos != size)
        return lp_fail(LP_ERR_FORMAT, "%s: %zu bytes left over after %d tokens (wrong vocab size?)", path,
                       size - pos, V);

    for (int c = 0; c < 256; c++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", c);
        int id = TOK_BYTE0 + c;
        if (strcmp(t->pieces[id], want) != 0 || t->lens[id] != 6)
            return lp_fail(LP_ERR_FORMAT, "%s: token %d should be the byte token %s", path, id, want);
        t->bytestr[c][0] = (char)c;
        t->bytestr[c][1] = 0;
    }
    return LP_OK;
}

int lp_tokenizer_load(lp_tokenizer **out, const char *path, int vocab_size) {
    if (!out || !path) return lp_fail(LP_ERR_ARG, "lp_tokenizer_load: NULL argument");
    *out = NULL;
    if (vocab_size < TOK_NORMAL)
        return lp_fail(LP_ERR_ARG, "%s: vocab size %d is too small (need >= %d: 3 specials + 256 bytes)",
                       path, vocab_size, TOK_NORMAL);
    char *buf;
    size_t size;
    int rc = lp_read_file(path, &buf, &size);
    if (rc) return rc;

    lp_tokenizer *t = lp_calloc(1, sizeof *t);
    uint32_t nslots = 1;
    while (nslots < 2u * (uint32_t)vocab_size) nslots <<= 1;
    if (t) {
        t->vocab_size = vocab_size;
        t->pieces = lp_calloc((size_t)vocab_size, sizeof *t->pieces);
        t->lens = lp_calloc((size_t)vocab_size, sizeof *t->lens);
        t->scores = lp_calloc((size_t)vocab_size, sizeof *t->scores);
        t->arena = lp_malloc(size + (size_t)vocab_size); /* pieces + NULs fit in the file size */
        t->slots = lp_malloc((size_t)nslots * sizeof *t->slots);
    }
    if (!t || !t->pieces || !t->lens || !t->scores || !t->arena || !t->slots) {
        free(buf);
        lp_tokenizer_free(t);
        return lp_fail_prefix(LP_ERR_NOMEM, path);
    }
    rc = parse(t, path, (const unsigned char *)buf, size);
    free(buf);
    if (rc) {
        lp_tokenizer_free(t);
        return rc;
    }

    /* hash the normal pieces; on a duplicate piece the lower id wins */
    t->mask = nslots - 1;
    for (uint32_t i = 0; i < nslots; i++) t->slots[i] = -1;
    t->max_len = 0;
    for (int id = TOK_NORMAL; id < vocab_size; id++) {
        if (lookup(t, t->pieces[id], t->lens[id]) >= 0) continue;
        if (t->lens[id] > t->max_len) t->max_len = t->lens[id];
        uint32_t i = hash_bytes(t->pieces[id], t->lens[id]) & t->mask;
        while (t->slots[i] >= 0) i = (i + 1) & t->mask;
        t->slots[i] = id;
    }
    *out = t;
    return LP_OK;
}

int lp_tokenizer_vocab_size(const lp_tokenizer *t) { return t->vocab_size; }
int lp_tokenizer_bos(const lp_tokenizer *t) { (void)t; return TOK_BOS; }
int lp_tokenizer_eos(const lp_tokenizer *t) { (void)t; return TOK_EOS; }

/* ---- encoding -------------------------------------------------------------- */

typedef struct {
    int start, len; /* span in the prefixed text; len < 0 once merged away */
    int id;         /* < TOK_NORMAL: a byte/special token, never merged */
    int prev, next; /* neighbours in the list, -1 at the ends */
} sym;

typedef struct {
    float score;
    int start;      /* left symbol's start: the tie-break (leftmost first) */
    int left, right;
    int len;        /* combined length when pushed, to detect stale pairs */
    int id;         /* the merged piece */
} cand;

/* true if a should pop before b: higher score, then further left */
static int cand_before(const cand *a, const cand *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->start < b->start;
}

typedef struct {
    cand *a;
    int n, cap;
} heap;

static int heap_push(heap *hp, cand c) {
    if (hp->n == hp->cap) { /* pushes <= pairs + 2 * merges < 3 * symbols */
        int ncap = hp->cap ? 2 * hp->cap : 64;
        cand *na = realloc(hp->a, (size_t)ncap * sizeof *na);
        if (!na) return lp_fail(LP_ERR_NOMEM, "lp_tokenizer_encode: out of memory");
        hp->a = na;
        hp->cap = ncap;
    }
    cand *h = hp->a;
    int i = hp->n++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_before(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
    return LP_OK;
}

static cand heap_pop(heap *hp) {
    cand *h = hp->a;
    cand top = h[0], last = h[--hp->n];
    int n = hp->n, i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_before(&h[l], best)) { m = l; best = &h[l]; }
        if (r < n && cand_before(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (n > 0) h[i] = last;
    return top;
}

/* push the pair (l, r) if both are normal pieces and their join is a piece */
static int try_pair(const lp_tokenizer *t, const char *text, const sym *s, int l, int r, heap *hp) {
    if (l < 0 || r < 0 || s[l].id < TOK_NORMAL || s[r].id < TOK_NORMAL) return LP_OK;
    int len = s[l].len + s[r].len;
    int id = lookup(t, text + s[l].start, len);
    if (id < 0) return LP_OK;
    cand c = {t->scores[id], s[l].start, l, r, len, id};
    return heap_push(hp, c);
}

/* length of the UTF-8 codepoint at p (1 for a malformed or stray byte) */
static int utf8_len(const unsigned char *p) {
    int n;
    if (p[0] < 0x80) return 1;
    else if ((p[0] & 0xE0) == 0xC0) n = 2;
    else if ((p[0] & 0xF0) == 0xE0) n = 3;
    else if ((p[0] & 0xF8) == 0xF0) n = 4;
    else return 1;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 1; /* also stops at the NUL */
    return n;
}

int lp_tokenizer_encode(const lp_tokenizer *t, const char *text, int bos, int eos, int *ids, int cap,
                        int *n) {
    if (!t || !text || !n || (cap > 0 && !ids) || cap < 0)
        return lp_fail(LP_ERR_ARG, "lp_tokenizer_encode: bad argument");
    *n = 0;
    size_t tl = strlen(text);
    if (tl > (size_t)INT_MAX / 8) /* keeps symbol and heap counts in int */
        return lp_fail(LP_ERR_ARG, "lp_tokenizer_encode: text too long (%zu bytes)", tl);

    int count = 0;
    int rc = LP_OK;
    char *buf = NULL;
    sym *s = NULL;
    heap hp = {NULL, 0, 0};
    int ns = 0;
    if (tl > 0) {
        /* dummy prefix: sentencepiece's add_dummy_prefix, as llama2.c does it */
        int blen = (int)tl + 1;
        buf = lp_malloc((size_t)blen + 1);
        s = lp_malloc((size_t)blen * sizeof *s);
        hp.a = lp_malloc((size_t)blen * sizeof *hp.a); /* grows if needed */
        hp.cap = blen;
        if (!buf || !s || !hp.a) {
            rc = lp_fail_prefix(LP_ERR_NOMEM, "lp_tokenizer_encode");
            goto done;
        }
        buf[0] = ' ';
        memcpy(buf + 1, text, tl + 1);

        /* one symbol per codepoint, or per byte when it is not a piece */
        for (int i = 0; i < blen;) {
            int cl = utf8_len((const unsigned char *)buf + i);
            int id = lookup(t, buf + i, cl);
            if (id >= 0) {
                s[ns] = (sym){i, cl, id, ns - 1, ns + 1};
                ns++;
            } else {
                for (int k = 0; k < cl; k++, ns++)
                    s[ns] = (sym){i + k, 1, TOK_BYTE0 + (unsigned char)buf[i + k], ns - 1, ns + 1};
            }
            i += cl;
        }
        s[ns - 1].next = -1;

        /* merge the best-scoring adjacent pair until none is a piece */
        for (int i = 0; i + 1 < ns && !rc; i++) rc = try_pair(t, buf, s, i, i + 1, &hp);
        while (hp.n > 0 && !rc) {
            cand c = heap_pop(&hp);
            int l = c.left, r = c.right;
            if (s[l].len < 0 || s[l].next != r || s[l].len + s[r].len != c.len) continue; /* stale */
            s[l].len = c.len;
            s[l].id = c.id;
            s[l].next = s[r].next;
            if (s[r].next >= 0) s[s[r].next].prev = l;
            s[r].len = -1;
            rc = try_pair(t, buf, s, s[l].prev, l, &hp);
            if (!rc) rc = try_pair(t, buf, s, l, s[l].next, &hp);
        }
        if (rc) goto done;
    }

    /* emit */
    if (bos) {
        if (count < cap) ids[count] = TOK_BOS;
        count++;
    }
    for (int i = ns > 0 ? 0 : -1; i >= 0; i = s[i].next) {
        if (count < cap) ids[count] = s[i].id;
        count++;
    }
    if (eos) {
        if (count < cap) ids[count] = TOK_EOS;
        count++;
    }
    *n = count;
    if (count > cap)
        rc = lp_fail(LP_ERR_ARG, "lp_tokenizer_encode: output buffer too small (%d ids needed, capacity %d)",
                     count, cap);
done:
    free(buf);
    free(s);
    free(hp.a);
    return rc;
}

/* ---- decoding -------------------------------------------------------------- */

const char *lp_tokenizer_piece(const lp_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->vocab_size) return NULL;
    return t->pieces[id];
}

const char *lp_tokenizer_decode_piece(const lp_tokenizer *t, int prev, int id) {
    if (!t || id < 0 || id >= t->vocab_size) return NULL;
    if (id == TOK_BOS || id == TOK_EOS) return "";
    if (id >= TOK_BYTE0 && id < TOK_NORMAL) return t->bytestr[id - TOK_BYTE0];
    const char *p = t->pieces[id];
    if ((prev < 0 || prev == TOK_BOS) && p[0] == ' ') p++;
    return p;
}

int lp_tokenizer_decode(const lp_tokenizer *t, const int *ids, int n, char **out) {
    if (!t || !out || n < 0 || (n > 0 && !ids)) return lp_fail(LP_ERR_ARG, "lp_tokenizer_decode: bad argument");
    *out = NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *p = lp_tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i]);
        if (!p)
            return lp_fail(LP_ERR_ARG, "lp_tokenizer_decode: id %d at position %d is outside the vocab (%d)",
                           ids[i], i, t->vocab_size);
        total += strlen(p);
    }
    char *s = lp_malloc(total + 1);
    if (!s) return lp_fail_prefix(LP_ERR_NOMEM, "lp_tokenizer_decode");
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *p = lp_tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i]);
        size_t m = strlen(p);
        memcpy(s + k, p, m);
        k += m;
    }
    s[k] = 0;
    *out = s;
    return LP_OK;
}

const char *lp_tokenizer_safe_piece(const char *piece) {
    if (!piece) return "";
    unsigned char c = (unsigned char)piece[0];
    if (c && !piece[1]) {
        int ws = c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
        if ((c < 0x20 && !ws) || c == 0x7F) return "";
    }
    return piece;
}
