/* test_tokenizer.c — the llama2.c tokenizer: known encodings (expected ids
 * from python3-sentencepiece with tok512.model), encode/decode round trips
 * (ASCII, UTF-8 byte fallback, malformed bytes), BOS/EOS and empty input,
 * leftmost tie-breaking on a synthetic vocab, the heap merge against a naive
 * O(n^2) reference, and malformed files (each must fail naming the file).
 *
 * Hidden tool modes (used by tests/test_tokenizer_sp.sh and for timing):
 *   test_tokenizer --encode FILE   ids (with BOS) of each story, one per line
 *   test_tokenizer --bench FILE    encode every story, print tokens/s
 * A story file holds stories separated by "<|endoftext|>"; each story is
 * stripped of surrounding ' ', \t, \n, \r, \v, \f and empty ones skipped. */
#include "loupe/base.h"
#include "loupe/tokenizer.h"
#include "testutil.h"

#include <stdint.h>
#include <unistd.h>

static const char *tokpath(void) { return t_sharedpath("models/tok512.bin"); }

/* ---- helpers --------------------------------------------------------------- */

static int ids_eq(const int *a, int na, const int *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void print_ids(FILE *f, const int *ids, int n) {
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? " " : "", ids[i]);
}

/* encode with a right-sized buffer; returns a malloc'd array, count in *n */
static int *enc(const lp_tokenizer *t, const char *text, int bos, int eos, int *n) {
    int cap = (int)strlen(text) + 3;
    int *ids = malloc((size_t)cap * sizeof *ids);
    int rc = lp_tokenizer_encode(t, text, bos, eos, ids, cap, n);
    CHECK(rc == 0, "encode(\"%s\") failed: %s", text, lp_errmsg());
    if (rc) *n = 0;
    return ids;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Split `buf` in place into stories (see top of file); returns the count. */
static int split_stories(char *buf, char ***out) {
    static const char sep[] = "<|endoftext|>";
    int n = 0, capn = 16;
    char **v = malloc((size_t)capn * sizeof *v);
    char *p = buf;
    for (;;) {
        char *e = strstr(p, sep);
        if (e) *e = 0;
        char *a = p, *b = p + strlen(p);
        while (a < b && is_ws(*a)) a++;
        while (b > a && is_ws(b[-1])) b--;
        *b = 0;
        if (*a) {
            if (n == capn) v = realloc(v, (size_t)(capn *= 2) * sizeof *v);
            v[n++] = a;
        }
        if (!e) break;
        p = e + sizeof sep - 1;
    }
    *out = v;
    return n;
}

/* ---- a naive llama2.c-style reference encoder (O(n^2), no BOS) ------------- */

static int naive_find(const lp_tokenizer *t, const char *s, size_t n) {
    for (int id = 259; id < lp_tokenizer_vocab_size(t); id++) {
        const char *p = lp_tokenizer_piece(t, id);
        if (strlen(p) == n && memcmp(p, s, n) == 0) return id;
    }
    return -1;
}

static int utf8_len(const unsigned char *p) {
    int n;
    if (p[0] < 0x80) return 1;
    else if ((p[0] & 0xE0) == 0xC0) n = 2;
    else if ((p[0] & 0xF0) == 0xE0) n = 3;
    else if ((p[0] & 0xF8) == 0xF0) n = 4;
    else return 1;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 1;
    return n;
}

/* scores read straight from the file, independently of the library */
static float g_scores[512];
static int read_scores(const char *path) {
    char *b;
    size_t len;
    if (lp_read_file(path, &b, &len)) return -1;
    size_t pos = 4;
    for (int i = 0; i < 512; i++) {
        int32_t l;
        memcpy(&g_scores[i], b + pos, 4);
        memcpy(&l, b + pos + 4, 4);
        pos += 8 + (size_t)l;
    }
    free(b);
    return 0;
}

/* Symbols are spans [st, st+ln) of " " + text; byte tokens never merge.
 * Each step rescans all pairs: best score, ties leftmost. */
static int naive_encode(const lp_tokenizer *t, const char *text, int *ids) {
    size_t tl = strlen(text);
    if (!tl) return 0;
    char *buf = malloc(tl + 2);
    buf[0] = ' ';
    memcpy(buf + 1, text, tl + 1);
    int *st = malloc((tl + 1) * sizeof *st), *ln = malloc((tl + 1) * sizeof *ln);
    int n = 0;
    for (size_t i = 0; i < tl + 1;) {
        int cl = utf8_len((const unsigned char *)buf + i);
        int id = naive_find(t, buf + i, (size_t)cl);
        if (id >= 0) { st[n] = (int)i; ln[n] = cl; ids[n++] = id; }
        else for (int k = 0; k < cl; k++) { st[n] = (int)i + k; ln[n] = 1; ids[n++] = 3 + (unsigned char)buf[i + k]; }
        i += (size_t)cl;
    }
    for (;;) {
        int best = -1, bid = -1;
        float bscore = 0;
        for (int i = 0; i + 1 < n; i++) {
            if (ids[i] < 259 || ids[i + 1] < 259) continue;
            int id = naive_find(t, buf + st[i], (size_t)(ln[i] + ln[i + 1]));
            if (id < 0) continue;
            float sc = g_scores[id];
            if (best < 0 || sc > bscore) { best = i; bid = id; bscore = sc; }
        }
        if (best < 0) break;
        ln[best] += ln[best + 1];
        ids[best] = bid;
        memmove(st + best + 1, st + best + 2, (size_t)(n - best - 2) * sizeof *st);
        memmove(ln + best + 1, ln + best + 2, (size_t)(n - best - 2) * sizeof *ln);
        memmove(ids + best + 1, ids + best + 2, (size_t)(n - best - 2) * sizeof *ids);
        n--;
    }
    free(buf);
    free(st);
    free(ln);
    return n;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_vocab(const lp_tokenizer *t) {
    CHECK(lp_tokenizer_vocab_size(t) == 512, "vocab %d", lp_tokenizer_vocab_size(t));
    CHECK(lp_tokenizer_bos(t) == 1, "bos");
    CHECK(lp_tokenizer_eos(t) == 2, "eos");
    CHECK(strcmp(lp_tokenizer_piece(t, 0), "<unk>") == 0, "unk piece");
    CHECK(strcmp(lp_tokenizer_piece(t, 1), "\n<s>\n") == 0, "bos piece");
    CHECK(strcmp(lp_tokenizer_piece(t, 3), "<0x00>") == 0, "byte piece 0");
    CHECK(strcmp(lp_tokenizer_piece(t, 258), "<0xFF>") == 0, "byte piece 255");
    /* the export replaced sentencepiece's U+2581 with a plain space */
    CHECK(strcmp(lp_tokenizer_piece(t, 259), " t") == 0, "piece 259 = '%s'", lp_tokenizer_piece(t, 259));
    int nmeta = 0;
    for (int i = 0; i < 512; i++)
        if (strstr(lp_tokenizer_piece(t, i), "\xe2\x96\x81")) nmeta++;
    CHECK(nmeta == 0, "%d pieces still hold U+2581", nmeta);
    CHECK(lp_tokenizer_piece(t, -1) == NULL && lp_tokenizer_piece(t, 512) == NULL, "out of range piece");
}

/* ids from python3-sentencepiece 0.1.97, tok512.model, sp.encode(text) */
static void test_known(const lp_tokenizer *t) {
    static const struct {
        const char *text;
        int n;
        int ids[16];
    } cases[] = {
        {"Once upon a time", 4, {403, 407, 261, 378}},
        {"The cat sat on the mat", 9, {291, 280, 294, 262, 294, 353, 265, 284, 294}},
        {"Tom and his dog", 6, {274, 287, 269, 345, 400, 428}},
        {"x", 2, {410, 444}},
        {"caf\xc3\xa9 \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac", 15,
         {280, 412, 431, 485, 410, 229, 155, 134, 410, 233, 154, 168, 233, 159, 175}},
        {"Lily said, \"Hi!\"\nThe end.", 14, {317, 336, 432, 313, 440, 417, 443, 436, 13, 434, 260, 344, 264, 426}},
        {"a\tb", 3, {261, 12, 430}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n;
        int *ids = enc(t, cases[c].text, 0, 0, &n);
        CHECK(ids_eq(ids, n, cases[c].ids, cases[c].n), "encode(\"%s\") differs from sentencepiece", cases[c].text);
        free(ids);
        /* with BOS and EOS around it */
        ids = enc(t, cases[c].text, 1, 1, &n);
        CHECK(n == cases[c].n + 2 && ids[0] == 1 && ids[n - 1] == 2 &&
                  ids_eq(ids + 1, n - 2, cases[c].ids, cases[c].n),
              "encode(\"%s\", bos, eos)", cases[c].text);
        free(ids);
    }
}

static void roundtrip(const lp_tokenizer *t, const char *text) {
    for (int bos = 0; bos <= 1; bos++) {
        int n;
        int *ids = enc(t, text, bos, bos, &n);
        char *s = NULL;
        int rc = lp_tokenizer_decode(t, ids, n, &s);
        CHECK(rc == 0 && s && strcmp(s, text) == 0, "roundtrip(bos=%d) \"%s\" -> \"%s\"", bos, text, s ? s : "(null)");
        /* piecewise decode gives the same bytes */
        size_t k = 0, tl = strlen(text);
        int ok = 1;
        for (int i = 0; i < n; i++) {
            const char *p = lp_tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i]);
            size_t m = p ? strlen(p) : 0;
            if (!p || k + m > tl || memcmp(text + k, p, m) != 0) ok = 0;
            k += m;
        }
        CHECK(ok && k == tl, "piecewise decode of \"%s\"", text);
        free(s);
        free(ids);
    }
}

static void test_roundtrip(const lp_tokenizer *t) {
    const char *texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "Hello, World! 123 ~`@#$%^&*()_+-=[]{}|;':,./<>?",
        " leading space", "  two leading", "trailing  ", "double  space", "\n\nnewlines\n",
        "a\tb\r\nc", " ", "a",
        "caf\xc3\xa9 \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac",            /* byte fallback */
        "emoji \xf0\x9f\x99\x82 and \xe2\x80\x9cquotes\xe2\x80\x9d",   /* 4-byte, curly quotes */
        "bad \xff\xfe utf8 \xc3 end \xe2\x98", "\x01\x02\x7f control", /* malformed / control */
        "<0x41> <s> </s> <unk>",                                     /* special-looking text */
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) roundtrip(t, texts[i]);

    /* all 255 non-NUL bytes, shuffled into one text */
    char all[256];
    for (int c = 1; c < 256; c++) all[c - 1] = (char)((c * 37) % 255 + 1);
    all[255] = 0;
    roundtrip(t, all);

    /* literal "<0x41>" text is spelled with normal pieces, not the byte token */
    int n;
    int *ids = enc(t, "<0x41>", 0, 0, &n);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += ids[i] == 3 + 0x41;
    CHECK(!bad, "literal <0x41> text encoded to the byte token");
    free(ids);
}

static void test_bos_and_edges(const lp_tokenizer *t) {
    int ids[8], n = -1;
    CHECK_OK(lp_tokenizer_encode(t, "", 1, 0, ids, 8, &n));
    CHECK(n == 1 && ids[0] == 1, "empty + bos: n=%d", n);
    CHECK_OK(lp_tokenizer_encode(t, "", 0, 0, ids, 8, &n));
    CHECK(n == 0, "empty: n=%d", n);
    CHECK_OK(lp_tokenizer_encode(t, "", 1, 1, ids, 8, &n));
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 2, "empty + bos + eos");
    CHECK_OK(lp_tokenizer_encode(t, "", 0, 0, NULL, 0, &n));
    char *s = NULL;
    CHECK_OK(lp_tokenizer_decode(t, ids, 0, &s));
    CHECK(s && s[0] == 0, "decode of nothing");
    free(s);

    /* a buffer that is too small: error, and *n says what is needed */
    int rc = lp_tokenizer_encode(t, "Once upon a time", 1, 1, ids, 3, &n);
    CHECK(rc == LP_ERR_ARG && n == 6, "small buffer: rc=%d n=%d", rc, n);
    CHECK(strstr(lp_errmsg(), "too small") != NULL, "msg: %s", lp_errmsg());

    /* decode_piece: a leading space is dropped after BOS and at the start */
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 403), "Once") == 0, "after BOS");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, -1, 403), "Once") == 0, "at start");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 378, 403), " Once") == 0, "mid-text");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 444), "x") == 0, "no space to drop");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 5, 1), "") == 0, "BOS decodes to nothing");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 5, 2), "") == 0, "EOS decodes to nothing");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 5, 0), "<unk>") == 0, "unk");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 3 + 'A'), "A") == 0, "<0x41>");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 3 + ' '), " ") == 0, "<0x20> keeps its space");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 3 + 0xE2), "\xe2") == 0, "<0xE2>");
    CHECK(strcmp(lp_tokenizer_decode_piece(t, 1, 3), "") == 0, "<0x00>");
    CHECK(lp_tokenizer_decode_piece(t, 1, 512) == NULL && lp_tokenizer_decode_piece(t, 1, -3) == NULL, "range");

    /* a BOS in mid-sequence strips the next piece's space again */
    int seq[] = {1, 403, 407, 1, 403};
    CHECK_OK(lp_tokenizer_decode(t, seq, 5, &s));
    CHECK(s && strcmp(s, "Once uponOnce") == 0, "decode across BOS: \"%s\"", s ? s : "");
    free(s);
    int badseq[] = {1, 600};
    s = NULL;
    rc = lp_tokenizer_decode(t, badseq, 2, &s);
    CHECK(rc == LP_ERR_ARG && s == NULL && strstr(lp_errmsg(), "600"), "bad id: %s", lp_errmsg());

    /* safe printing */
    CHECK(strcmp(lp_tokenizer_safe_piece("\x07"), "") == 0, "bell skipped");
    CHECK(strcmp(lp_tokenizer_safe_piece("\x7f"), "") == 0, "DEL skipped");
    CHECK(strcmp(lp_tokenizer_safe_piece("\n"), "\n") == 0, "newline kept");
    CHECK(strcmp(lp_tokenizer_safe_piece("\t"), "\t") == 0, "tab kept");
    CHECK(strcmp(lp_tokenizer_safe_piece("\xe2"), "\xe2") == 0, "UTF-8 lead byte kept");
    CHECK(strcmp(lp_tokenizer_safe_piece(" the"), " the") == 0, "piece kept");
    CHECK(strcmp(lp_tokenizer_safe_piece(NULL), "") == 0, "NULL");
}

/* the heap merge must agree with the naive rescan on real and random text */
static void test_against_naive(const lp_tokenizer *t) {
    if (read_scores(tokpath())) {
        CHECK(0, "cannot read scores");
        return;
    }
    char *buf;
    size_t len;
    if (lp_read_file(t_sharedpath("data/tinystories/five_stories.txt"), &buf, &len) != 0) {
        CHECK(0, "%s", lp_errmsg());
        return;
    }
    char **st;
    int ns = split_stories(buf, &st);
    CHECK(ns == 5, "five_stories has %d stories", ns);
    int mism = 0;
    for (int i = 0; i < ns; i++) {
        int n, *ids = enc(t, st[i], 0, 0, &n);
        int *ref = malloc((strlen(st[i]) + 3) * sizeof *ref);
        int nr = naive_encode(t, st[i], ref);
        mism += !ids_eq(ids, n, ref, nr);
        free(ids);
        free(ref);
    }
    CHECK(mism == 0, "%d stories differ from the naive encoder", mism);
    free(st);
    free(buf);

    /* random texts from a small alphabet that merges a lot, plus odd bytes */
    static const char *alpha[] = {"a", "e", "t", "h", " ", "  ", "th", "he", "the", "in", "g", "n", "d",
                                  "\n", "\xc3\xa9", "\xe2\x98\x83", "\xff", "o", "u", "s", "."};
    lp_rng r;
    lp_rng_seed(&r, 42);
    mism = 0;
    char text[400];
    for (int trial = 0; trial < 300; trial++) {
        size_t k = 0;
        int parts = 1 + (int)lp_rng_below(&r, 60);
        for (int p = 0; p < parts; p++) {
            const char *a = alpha[lp_rng_below(&r, sizeof alpha / sizeof alpha[0])];
            size_t m = strlen(a);
            if (k + m + 1 > sizeof text) break;
            memcpy(text + k, a, m);
            k += m;
        }
        text[k] = 0;
        int n, *ids = enc(t, text, 0, 0, &n);
        int *ref = malloc((k + 3) * sizeof *ref);
        int nr = naive_encode(t, text, ref);
        if (!ids_eq(ids, n, ref, nr)) {
            if (!mism) fprintf(stderr, "first mismatch on \"%s\"\n", text);
            mism++;
        }
        free(ids);
        free(ref);
    }
    CHECK(mism == 0, "%d random texts differ from the naive encoder", mism);
}

/* ---- synthetic files --------------------------------------------------------- */

static char g_dir[64];

typedef struct {
    unsigned char *b;
    size_t n, cap;
} bytes;

static void put(bytes *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2;
        w->b = realloc(w->b, w->cap);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void put_i32(bytes *w, int32_t v) { put(w, &v, 4); }
static void put_tok(bytes *w, float score, const char *piece) {
    int32_t l = (int32_t)strlen(piece);
    put(w, &score, 4);
    put_i32(w, l);
    put(w, piece, (size_t)l);
}

/* a valid file: specials, bytes, then `extra` normal pieces */
static bytes make_vocab(const char **extra, const float *scores, int nextra) {
    bytes w = {0};
    put_i32(&w, 7);
    put_tok(&w, 0, "<unk>");
    put_tok(&w, 0, "\n<s>\n");
    put_tok(&w, 0, "\n</s>\n");
    for (int c = 0; c < 256; c++) {
        char p[8];
        snprintf(p, sizeof p, "<0x%02X>", c);
        put_tok(&w, 0, p);
    }
    for (int i = 0; i < nextra; i++) put_tok(&w, scores[i], extra[i]);
    return w;
}

static char *write_tmp(const char *name, const void *data, size_t n) {
    static char path[8][128];
    static int i = 0;
    i = (i + 1) % 8;
    snprintf(path[i], sizeof path[i], "%s/%s", g_dir, name);
    FILE *f = fopen(path[i], "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    return path[i];
}

static void expect_fail(const char *path, int vocab, const char *what, const char *needle) {
    lp_tokenizer *t = (lp_tokenizer *)1;
    int rc = lp_tokenizer_load(&t, path, vocab);
    CHECK(rc != 0, "%s: loaded", what);
    CHECK(t == NULL, "%s: *out not NULL", what);
    CHECK(strstr(lp_errmsg(), path) != NULL, "%s: message lacks the path: %s", what, lp_errmsg());
    CHECK(strstr(lp_errmsg(), needle) != NULL, "%s: message lacks \"%s\": %s", what, needle, lp_errmsg());
    if (rc == 0) lp_tokenizer_free(t);
}

static void test_synthetic(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/loupe_tok_XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    /* equal scores: "ab" and "ba" both apply to "aba"; leftmost wins.
     * " " is not a piece here, so the dummy prefix is the byte token 0x20. */
    const char *p[] = {"a", "b", "ab", "ba", "abba"};
    float sc[] = {-10, -10, -1, -1, -5};
    bytes w = make_vocab(p, sc, 5);
    char *path = write_tmp("tie.bin", w.b, w.n);
    lp_tokenizer *t = NULL;
    CHECK_OK(lp_tokenizer_load(&t, path, 264));
    if (t) {
        int ids[16], n;
        CHECK_OK(lp_tokenizer_encode(t, "aba", 0, 0, ids, 16, &n));
        int want[] = {3 + ' ', 261, 259}; /* <0x20>, "ab", "a" */
        CHECK(ids_eq(ids, n, want, 3), "tie: got n=%d %d %d %d", n, ids[0], ids[1], ids[2]);
        /* "abba": ab|ba, then the two join into "abba" */
        CHECK_OK(lp_tokenizer_encode(t, "abba", 0, 0, ids, 16, &n));
        CHECK(n == 2 && ids[0] == 3 + ' ' && ids[1] == 263, "abba: n=%d", n);
        /* "abab": ab|ab */
        CHECK_OK(lp_tokenizer_encode(t, "abab", 0, 0, ids, 16, &n));
        int want2[] = {3 + ' ', 261, 261};
        CHECK(ids_eq(ids, n, want2, 3), "abab: n=%d", n);
        char *s = NULL;
        CHECK_OK(lp_tokenizer_decode(t, ids, n, &s));
        CHECK(s && strcmp(s, " abab") == 0, "byte-token prefix is kept: \"%s\"", s ? s : "");
        free(s);
        lp_tokenizer_free(t);
    }
    /* a higher score beats position: "ba" outranks "ab" */
    float sc2[] = {-10, -10, -2, -1, -5}; /* "ab" -2 < "ba" -1 */
    bytes w2 = make_vocab(p, sc2, 5);
    path = write_tmp("score.bin", w2.b, w2.n);
    t = NULL;
    CHECK_OK(lp_tokenizer_load(&t, path, 264));
    if (t) {
        int ids[16], n;
        CHECK_OK(lp_tokenizer_encode(t, "aba", 0, 0, ids, 16, &n));
        int want[] = {3 + ' ', 259, 262}; /* <0x20>, "a", "ba" */
        CHECK(ids_eq(ids, n, want, 3), "score order: n=%d", n);
        lp_tokenizer_free(t);
    }
    free(w2.b);

    /* ---- malformed files ---- */
    char *good;
    size_t glen;
    if (lp_read_file(tokpath(), &good, &glen) != 0) {
        CHECK(0, "%s", lp_errmsg());
        free(w.b);
        return;
    }
    expect_fail(write_tmp("empty.bin", "", 0), 512, "empty file", "too short");
    expect_fail(write_tmp("short.bin", good, 3), 512, "3-byte file", "too short");
    expect_fail(write_tmp("trunc.bin", good, glen - 3), 512, "truncated in a piece", "past the end");
    expect_fail(write_tmp("trunc2.bin", good, 4 + 8 * 2 + 5 + 5 + 4), 512, "truncated in a header", "truncated");
    /* the file ends exactly after the last piece of token 300 */
    {
        size_t pos = 4;
        for (int i = 0; i < 300; i++) {
            int32_t l;
            memcpy(&l, good + pos + 4, 4);
            pos += 8 + (size_t)l;
        }
        expect_fail(write_tmp("trunc3.bin", good, pos), 512, "truncated at a token boundary", "only 300 tokens");
    }
    expect_fail(tokpath(), 1000, "vocab 1000", "only 512 tokens");
    expect_fail(tokpath(), 300, "vocab 300", "left over");
    expect_fail(tokpath(), 100, "vocab 100", "too small");
    char missing[128];
    snprintf(missing, sizeof missing, "%s/no_such.bin", g_dir);
    expect_fail(missing, 512, "missing file", "cannot open");
    expect_fail(g_dir, 512, "a directory", "regular file");

    /* absurd and negative lengths in token 10's length field */
    size_t len10 = 4 + 8 * 10 + 5 + 5 + 6 + 6 * 7 + 4; /* offset of token 10's len */
    char *bad = malloc(glen);
    memcpy(bad, good, glen);
    int32_t huge = 0x7fffffff, neg = -5, big = 100;
    CHECK(memcmp(bad + len10, &(int32_t){6}, 4) == 0, "test offset arithmetic");
    memcpy(bad + len10, &huge, 4);
    expect_fail(write_tmp("huge.bin", bad, glen), 512, "absurd length", "token 10 length 2147483647");
    memcpy(bad + len10, &neg, 4);
    expect_fail(write_tmp("neg.bin", bad, glen), 512, "negative length", "negative length");
    memcpy(bad + len10, &big, 4);
    expect_fail(write_tmp("big.bin", bad, glen), 512, "length over max_token_length", "exceeds max_token_length");
    memcpy(bad, good, glen);
    int32_t badmax = -1;
    memcpy(bad, &badmax, 4);
    expect_fail(write_tmp("max.bin", bad, glen), 512, "bad header", "max_token_length");
    memcpy(bad, good, glen);
    float nan = NAN;
    memcpy(bad + len10 - 4, &nan, 4);
    expect_fail(write_tmp("nan.bin", bad, glen), 512, "NaN score", "non-finite");
    memcpy(bad, good, glen);
    bad[len10 + 4 + 3] = 'Z'; /* "<0x07>" -> "<0xZ7>" */
    expect_fail(write_tmp("byte.bin", bad, glen), 512, "misplaced byte token", "byte token <0x07>");
    free(bad);
    free(good);
    free(w.b);

    const char *names[] = {"tie.bin", "score.bin", "empty.bin", "short.bin", "trunc.bin", "trunc2.bin",
                           "trunc3.bin", "huge.bin", "neg.bin", "big.bin", "max.bin", "nan.bin", "byte.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char q[160];
        snprintf(q, sizeof q, "%s/%s", g_dir, names[i]);
        remove(q);
    }
    rmdir(g_dir);
}

/* ---- tool modes -------------------------------------------------------------- */

static int tool(const char *mode, const char *file) {
    lp_tokenizer *t;
    if (lp_tokenizer_load(&t, tokpath(), 512)) {
        fprintf(stderr, "%s\n", lp_errmsg());
        return 2;
    }
    char *buf;
    size_t len;
    if (lp_read_file(file, &buf, &len)) {
        fprintf(stderr, "%s\n", lp_errmsg());
        return 2;
    }
    char **st;
    int ns = split_stories(buf, &st);
    int *ids = malloc((len + 3) * sizeof *ids);
    int rc = 0;
    if (strcmp(mode, "--encode") == 0) {
        for (int i = 0; i < ns && !rc; i++) {
            int n;
            if (lp_tokenizer_encode(t, st[i], 1, 0, ids, (int)len + 3, &n)) rc = 2;
            print_ids(stdout, ids, n);
            printf("\n");
        }
    } else {
        long total = 0;
        int reps = 0;
        double t0 = lp_now(), el;
        do {
            for (int i = 0; i < ns && !rc; i++) {
                int n;
                if (lp_tokenizer_encode(t, st[i], 1, 0, ids, (int)len + 3, &n)) rc = 2;
                total += n;
            }
            reps++;
        } while ((el = lp_now() - t0) < 1.0);
        printf("%d stories, %zu bytes, %d passes: %.0f tokens/s, %.1f MB/s\n", ns, len, reps, total / el,
               (double)len * reps / el / 1e6);
    }
    if (rc) fprintf(stderr, "%s\n", lp_errmsg());
    free(ids);
    free(st);
    free(buf);
    lp_tokenizer_free(t);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && (strcmp(argv[1], "--encode") == 0 || strcmp(argv[1], "--bench") == 0))
        return tool(argv[1], argv[2]);
    lp_tokenizer *t = NULL;
    int rc = lp_tokenizer_load(&t, tokpath(), 512);
    CHECK(rc == 0, "load %s: %s", tokpath(), lp_errmsg());
    if (t) {
        test_vocab(t);
        test_known(t);
        test_roundtrip(t);
        test_bos_and_edges(t);
        test_against_naive(t);
        lp_tokenizer_free(t);
    }
    test_synthetic();
    return t_done("test_tokenizer");
}
