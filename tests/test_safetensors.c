/* test_safetensors.c — the safetensors reader and writer: the shared sample
 * files, f16/bf16 conversions, write-then-read round trips, and malformed
 * files built in a temp dir, each of which must fail with a message that
 * names the file. */
#include "loupe/base.h"
#include "loupe/safetensors.h"
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[256];

static char *tpath(const char *name) { return lp_path_join(g_tmp, name); }

static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* [u64 N][header][datalen zero bytes] with N = strlen(header). */
static void put_st(const char *path, const char *header, size_t hlen, size_t datalen) {
    size_t n = 8 + hlen + datalen;
    unsigned char *b = calloc(1, n);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hlen >> (8 * k));
    memcpy(b + 8, header, hlen);
    put_file(path, b, n);
    free(b);
}

static int count_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static int is_zeroed(const lp_safetensors *st) {
    return !st->path && !st->data && !st->t && !st->metadata && st->n == 0 && st->size == 0;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------------------ */
static void test_dtypes(void) {
    static const char *names[] = {"BOOL", "U8",  "I8",  "U16", "I16", "F16",     "BF16",   "U32",
                                  "I32",  "F32", "U64", "I64", "F64", "F8_E4M3", "F8_E5M2"};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
    for (int i = 0; i < LP_DT_COUNT; i++) {
        lp_dtype d;
        CHECK_OK(lp_dtype_parse(names[i], &d));
        CHECK(d == (lp_dtype)i, "%s parsed as %d", names[i], (int)d);
        CHECK(strcmp(lp_dtype_name((lp_dtype)i), names[i]) == 0, "%d", i);
        CHECK(lp_dtype_size((lp_dtype)i) == sizes[i], "%s", names[i]);
    }
    lp_dtype d;
    CHECK(lp_dtype_parse("f32", &d) != 0, "case-sensitive");
    CHECK(lp_dtype_parse("F128", &d) != 0, "unknown");
    CHECK(lp_dtype_size(LP_DT_COUNT) == 0, "invalid");
}

/* ------------------------------------------------------------------------ */
static void test_conversions(void) {
    /* f16 */
    CHECK(lp_f32_to_f16(1.0f) == 0x3c00, "%04x", lp_f32_to_f16(1.0f));
    CHECK(lp_f32_to_f16(-2.5f) == 0xc100, "%04x", lp_f32_to_f16(-2.5f));
    CHECK(lp_f32_to_f16(65504.0f) == 0x7bff, "max");
    CHECK(lp_f32_to_f16(65519.0f) == 0x7bff, "below halfway rounds down");
    CHECK(lp_f32_to_f16(65520.0f) == 0x7c00, "halfway to 65536 rounds to inf");
    CHECK(lp_f32_to_f16(1e10f) == 0x7c00, "overflow");
    CHECK(lp_f32_to_f16(-1e10f) == 0xfc00, "neg overflow");
    CHECK(lp_f32_to_f16(INFINITY) == 0x7c00, "inf");
    CHECK(lp_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(lp_f32_to_f16(0.0f) == 0x0000, "0");
    CHECK(lp_f32_to_f16(ldexpf(1, -14)) == 0x0400, "min normal");
    CHECK(lp_f32_to_f16(ldexpf(1, -24)) == 0x0001, "min subnormal");
    CHECK(lp_f32_to_f16(ldexpf(1023, -24)) == 0x03ff, "max subnormal");
    CHECK(lp_f32_to_f16(ldexpf(1, -25)) == 0x0000, "tie to even (0)");
    CHECK(lp_f32_to_f16(ldexpf(1.0001f, -25)) == 0x0001, "above tie");
    CHECK(lp_f32_to_f16(ldexpf(3, -25)) == 0x0002, "subnormal tie 1.5 -> 2");
    CHECK(lp_f32_to_f16(ldexpf(5, -25)) == 0x0002, "subnormal tie 2.5 -> 2");
    CHECK(lp_f32_to_f16(ldexpf(1, -26)) == 0x0000, "underflow");
    CHECK(lp_f32_to_f16(-ldexpf(1, -24)) == 0x8001, "neg subnormal");
    CHECK(lp_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00, "tie to even down");
    CHECK(lp_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02, "tie to even up");
    CHECK(lp_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)) == 0x3c01, "above tie");
    {
        uint16_t h = lp_f32_to_f16(NAN);
        CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0, "nan -> %04x", h);
    }
    CHECK(lp_f16_to_f32(0x3c00) == 1.0f, "1");
    CHECK(lp_f16_to_f32(0xc100) == -2.5f, "-2.5");
    CHECK(lp_f16_to_f32(0x7bff) == 65504.0f, "max");
    CHECK(lp_f16_to_f32(0x0001) == ldexpf(1, -24), "min subnormal");
    CHECK(lp_f16_to_f32(0x03ff) == ldexpf(1023, -24), "max subnormal");
    CHECK(lp_f16_to_f32(0x0200) == ldexpf(1, -15), "subnormal");
    CHECK(lp_f16_to_f32(0x0400) == ldexpf(1, -14), "min normal");
    CHECK(isinf(lp_f16_to_f32(0x7c00)) && lp_f16_to_f32(0x7c00) > 0, "inf");
    CHECK(isinf(lp_f16_to_f32(0xfc00)) && lp_f16_to_f32(0xfc00) < 0, "-inf");
    CHECK(isnan(lp_f16_to_f32(0x7e00)), "nan");
    CHECK(signbit(lp_f16_to_f32(0x8000)) && lp_f16_to_f32(0x8000) == 0, "-0");
    /* every non-NaN half survives f16 -> f32 -> f16; NaNs stay NaN */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lp_f16_to_f32((uint16_t)h);
        int nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (nan ? !isnan(f) || !isnan(lp_f16_to_f32(lp_f32_to_f16(f))) : lp_f32_to_f16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values do not round-trip", bad);

    /* bf16 */
    CHECK(lp_f32_to_bf16(1.0f) == 0x3f80, "%04x", lp_f32_to_bf16(1.0f));
    CHECK(lp_f32_to_bf16(-2.5f) == 0xc020, "%04x", lp_f32_to_bf16(-2.5f));
    CHECK(lp_f32_to_bf16(65504.0f) == 0x4780, "65504 -> 65536 (%04x)", lp_f32_to_bf16(65504.0f));
    CHECK(lp_bf16_to_f32(0x4780) == 65536.0f, "65536");
    CHECK(lp_f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80, "tie to even down");
    CHECK(lp_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)) == 0x3f82, "tie to even up");
    CHECK(lp_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)) == 0x3f81, "above tie");
    CHECK(lp_f32_to_bf16(bitsf(0x00200000)) == 0x0020, "subnormal exact");
    CHECK(lp_f32_to_bf16(bitsf(0x00008000)) == 0x0000, "subnormal tie even down");
    CHECK(lp_f32_to_bf16(bitsf(0x00018000)) == 0x0002, "subnormal tie even up");
    CHECK(lp_f32_to_bf16(bitsf(0x7f7fffff)) == 0x7f80, "FLT_MAX rounds to inf");
    CHECK(lp_f32_to_bf16(-INFINITY) == 0xff80, "-inf");
    CHECK(lp_f32_to_bf16(-0.0f) == 0x8000, "-0");
    {
        uint16_t h = lp_f32_to_bf16(bitsf(0x7f800001)); /* signalling NaN, low payload */
        CHECK((h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0, "nan stays nan: %04x", h);
        h = lp_f32_to_bf16(bitsf(0xffffffff));
        CHECK(h == 0xffff, "nan does not overflow: %04x", h);
    }
    CHECK(lp_bf16_to_f32(0x3f80) == 1.0f && lp_bf16_to_f32(0xc020) == -2.5f, "decode");
    CHECK(lp_bf16_to_f32(0x0001) == bitsf(0x00010000), "subnormal decode");
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lp_bf16_to_f32((uint16_t)h);
        int nan = ((h & 0x7f80) == 0x7f80) && (h & 0x7f);
        if (nan ? !isnan(lp_bf16_to_f32(lp_f32_to_bf16(f))) : lp_f32_to_bf16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
}

/* ------------------------------------------------------------------------ */
/* What each sample holds: the bytes of -3..2 in its dtype. Signed and float
 * dtypes read back as -3..2; unsigned dtypes hold the same two's-complement
 * bit patterns, so they read as 2^k-3, 2^k-2, 2^k-1, 0, 1, 2. */
static void expect_sample_values(const char *path, const lp_safetensors *st, const lp_st_tensor *t) {
    float v[6];
    CHECK(t->ndim == 1 && t->shape[0] == 6 && t->numel == 6, "%s %s", path, t->name);
    if (t->numel != 6) return;
    CHECK_OK(lp_st_read_f32(st, t, v));
    float want[6] = {-3, -2, -1, 0, 1, 2};
    if (t->dtype == LP_DT_U8 || t->dtype == LP_DT_U16 || t->dtype == LP_DT_U32) {
        double m = t->dtype == LP_DT_U8 ? 256.0 : t->dtype == LP_DT_U16 ? 65536.0 : 4294967296.0;
        for (int i = 0; i < 3; i++) want[i] = (float)(m + want[i]);
    }
    for (int i = 0; i < 6; i++)
        CHECK(v[i] == want[i], "%s %s[%d] = %g, want %g", path, t->name, i, v[i], want[i]);
    /* the raw bytes are exactly -3..2 as little-endian two's complement / IEEE */
    const unsigned char *raw = lp_st_raw(st, t);
    size_t es = lp_dtype_size(t->dtype);
    for (int i = 0; i < 6; i++) {
        unsigned char exp[8] = {0};
        int64_t iv = i - 3;
        if (t->dtype == LP_DT_F64) {
            double d = (double)iv;
            memcpy(exp, &d, 8);
        } else if (t->dtype == LP_DT_F32) {
            float f = (float)iv;
            memcpy(exp, &f, 4);
        } else if (t->dtype == LP_DT_F16) {
            uint16_t h = lp_f32_to_f16((float)iv);
            exp[0] = h & 0xff, exp[1] = h >> 8;
        } else {
            for (size_t k = 0; k < es; k++) exp[k] = (unsigned char)((uint64_t)iv >> (8 * k));
        }
        CHECK(memcmp(raw + i * es, exp, es) == 0, "%s %s raw[%d]", path, t->name, i);
    }
}

static void test_samples(void) {
    const char *dir = t_sharedpath("data/safetensors_samples");
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s", dir);
    if (!d) return;
    int nfiles = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 12 || strcmp(e->d_name + l - 12, ".safetensors") != 0) continue;
        char *path = lp_path_join(dir, e->d_name);
        lp_safetensors st;
        int rc = lp_st_open(&st, path);
        CHECK(rc == 0, "%s: %s", path, lp_errmsg());
        if (rc == 0) {
            nfiles++;
            CHECK(st.n >= 1, "%s has no tensors", path);
            CHECK(st.mapped == 1, "%s not mmapped", path);
            const char *m = lp_st_meta(&st, "test");
            CHECK(m && strcmp(m, "a") == 0, "%s metadata test=%s", path, m ? m : "(null)");
            for (int i = 0; i < st.n; i++) {
                CHECK(lp_st_find(&st, st.t[i].name) == &st.t[i], "%s find %s", path, st.t[i].name);
                if (i) CHECK(strcmp(st.t[i - 1].name, st.t[i].name) < 0, "sorted");
                expect_sample_values(path, &st, &st.t[i]);
            }
            if (strcmp(e->d_name, "overall.safetensors") != 0) {
                /* single-tensor files: X.safetensors holds tensor "X" */
                char nm[64];
                snprintf(nm, sizeof nm, "%.*s", (int)(l - 12), e->d_name);
                CHECK(st.n == 1 && lp_st_find(&st, nm), "%s: expected one tensor '%s'", path, nm);
            }
        }
        lp_st_close(&st);
        CHECK(is_zeroed(&st), "close zeroes");
        free(path);
    }
    closedir(d);
    CHECK(nfiles == 10, "opened %d sample files", nfiles);

    /* overall.safetensors: all nine dtypes, metadata, lookups, expect() */
    lp_safetensors st;
    const char *path = t_sharedpath("data/safetensors_samples/overall.safetensors");
    CHECK_OK(lp_st_open(&st, path));
    CHECK(st.n == 9, "overall has %d tensors", st.n);
    CHECK(st.metadata != NULL && cJSON_GetArraySize(st.metadata) == 1, "metadata object");
    CHECK(lp_st_meta(&st, "test") && strcmp(lp_st_meta(&st, "test"), "a") == 0, "meta");
    CHECK(lp_st_meta(&st, "nope") == NULL, "missing meta key");
    static const struct {
        const char *name;
        lp_dtype dt;
    } want[] = {{"B", LP_DT_U8},  {"H", LP_DT_U16}, {"I", LP_DT_U32},
                {"b", LP_DT_I8},  {"d", LP_DT_F64}, {"e", LP_DT_F16},
                {"f", LP_DT_F32}, {"h", LP_DT_I16}, {"i", LP_DT_I32}};
    for (int i = 0; i < 9; i++) {
        const lp_st_tensor *t = lp_st_find(&st, want[i].name);
        CHECK(t && t->dtype == want[i].dt, "overall %s", want[i].name);
    }
    CHECK(lp_st_find(&st, "x") == NULL && lp_st_find(&st, "") == NULL, "absent");
    const lp_st_tensor *t = NULL;
    int64_t s6[1] = {6}, sany[1] = {-1}, s23[2] = {2, 3};
    CHECK_OK(lp_st_expect(&st, "f", 1, s6, &t));
    CHECK(t == lp_st_find(&st, "f"), "expect out");
    CHECK_OK(lp_st_expect(&st, "f", 1, sany, NULL));
    CHECK(lp_st_expect(&st, "f", 2, s23, &t) != 0 && t == NULL, "shape mismatch");
    CHECK(strstr(lp_errmsg(), path) && strstr(lp_errmsg(), "'f'") && strstr(lp_errmsg(), "[6]") &&
              strstr(lp_errmsg(), "[2, 3]"),
          "message: %s", lp_errmsg());
    CHECK(lp_st_expect(&st, "zz", 1, s6, NULL) != 0, "missing tensor");
    CHECK(strstr(lp_errmsg(), path) && strstr(lp_errmsg(), "'zz'") &&
              strstr(lp_errmsg(), "not found"),
          "message: %s", lp_errmsg());
    lp_st_close(&st);
}

/* ------------------------------------------------------------------------ */
static void test_roundtrip(void) {
    float f32[7] = {-3, -0.0f, 1.5f, 3.4028235e38f, 1e-40f, INFINITY, 0};
    f32[6] = bitsf(0x7fc01234); /* NaN with payload: must survive bit-exact */
    uint16_t f16[6] = {0xc200, 0x8000, 0x0001, 0x7bff, 0x7c00, 0x7e01};
    uint16_t bf16[4] = {0x3f80, 0xc020, 0x0001, 0xff80};
    int32_t i32[2][3] = {{INT32_MIN, -1, 0}, {1, 2, INT32_MAX}};
    double f64[3] = {-1e300, 4.9e-324, 3.141592653589793};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    uint8_t bools[4] = {0, 1, 1, 0};
    float scalar = 42.0f;
    float conv[5] = {1.0f, -2.5f, 65504.0f, 1.0f + ldexpf(1, -8), ldexpf(3, -25)};

    lp_st_writer *w = lp_st_writer_new();
    CHECK(w != NULL, "writer");
    int64_t s7[1] = {7}, s6[1] = {6}, s4[1] = {4}, s23[2] = {2, 3}, s3[1] = {3}, s2[1] = {2},
            s5[1] = {5}, s0[2] = {3, 0}, s221[3] = {2, 2, 1};
    /* added out of order on purpose: the file must be sorted by name */
    CHECK_OK(lp_st_writer_add(w, "z.f32", LP_DT_F32, 1, s7, f32));
    CHECK_OK(lp_st_writer_add(w, "a.f16", LP_DT_F16, 1, s6, f16));
    CHECK_OK(lp_st_writer_add(w, "m.bf16", LP_DT_BF16, 3, s221, bf16));
    CHECK_OK(lp_st_writer_add(w, "B.i32", LP_DT_I32, 2, s23, i32));
    CHECK_OK(lp_st_writer_add(w, "f64", LP_DT_F64, 1, s3, f64));
    CHECK_OK(lp_st_writer_add(w, "i64", LP_DT_I64, 1, s2, i64));
    CHECK_OK(lp_st_writer_add(w, "bool", LP_DT_BOOL, 1, s4, bools));
    CHECK_OK(lp_st_writer_add(w, "scalar", LP_DT_F32, 0, NULL, &scalar));
    CHECK_OK(lp_st_writer_add(w, "empty", LP_DT_F32, 2, s0, NULL));
    CHECK_OK(lp_st_writer_add_f32_as(w, "conv.bf16", LP_DT_BF16, 1, s5, conv));
    CHECK_OK(lp_st_writer_add_f32_as(w, "conv.f16", LP_DT_F16, 1, s5, conv));
    CHECK_OK(lp_st_writer_add_f32_as(w, "conv.f32", LP_DT_F32, 1, s5, conv));
    CHECK_OK(lp_st_writer_add(w, "unicode \xc3\xa9 \"q\"\\", LP_DT_F32, 0, NULL, &scalar));
    CHECK_OK(lp_st_writer_meta(w, "format", "pt"));
    CHECK_OK(lp_st_writer_meta(w, "note", "line1\nline2 \"quoted\" \xe2\x9c\x93 \\ tab\t"));
    CHECK_OK(lp_st_writer_meta(w, "format", "loupe")); /* replaces */

    /* writer argument errors */
    int64_t neg[1] = {-1}, big[2] = {INT64_MAX, INT64_MAX};
    CHECK(lp_st_writer_add(w, "z.f32", LP_DT_F32, 1, s7, f32) != 0, "duplicate");
    CHECK(strstr(lp_errmsg(), "z.f32"), "%s", lp_errmsg());
    CHECK(lp_st_writer_add(w, "__metadata__", LP_DT_F32, 1, s7, f32) != 0, "reserved");
    CHECK(lp_st_writer_add(w, "neg", LP_DT_F32, 1, neg, f32) != 0, "negative dim");
    CHECK(lp_st_writer_add(w, "big", LP_DT_F32, 2, big, f32) != 0, "overflow");
    CHECK(lp_st_writer_add(w, "nd", LP_DT_F32, 9, s7, f32) != 0, "ndim 9");
    CHECK(lp_st_writer_add(w, "nodata", LP_DT_F32, 1, s7, NULL) != 0, "no data");
    CHECK(lp_st_writer_add(w, "baddt", (lp_dtype)99, 1, s7, f32) != 0, "bad dtype");
    CHECK(lp_st_writer_add(w, "bad\xff", LP_DT_F32, 1, s7, f32) != 0, "bad utf-8");
    CHECK(lp_st_writer_add_f32_as(w, "asint", LP_DT_I32, 1, s5, conv) != 0, "f32 as i32");

    char *path = tpath("rt.safetensors");
    CHECK_OK(lp_st_writer_write(w, path));
    CHECK(count_dir(g_tmp) == 1, "only the output in the dir (no temp left): %d", count_dir(g_tmp));

    /* raw layout: header padded to 8 with spaces, __metadata__ first, sorted names */
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(lp_read_file(path, &buf, &len));
    uint64_t hn = 0;
    for (int k = 0; k < 8; k++) hn |= (uint64_t)(unsigned char)buf[k] << (8 * k);
    CHECK(hn % 8 == 0 && hn + 8 <= len, "header length %llu", (unsigned long long)hn);
    CHECK(strncmp(buf + 8, "{\"__metadata__\":{\"format\":\"loupe\",\"note\":", 41) == 0, "%.60s",
          buf + 8);
    {
        size_t e = 8 + hn;
        while (e > 8 && buf[e - 1] == ' ') e--;
        CHECK(buf[e - 1] == '}' && 8 + hn - e < 8, "padding");
    }
    free(buf);

    lp_safetensors st;
    CHECK_OK(lp_st_open(&st, path));
    CHECK(st.n == 13, "n = %d", st.n);
    CHECK(st.size == 8 + hn + 28 + 12 + 8 + 24 + 24 + 16 + 4 + 4 + 0 + 10 + 10 + 20 + 4, "size %zu",
          st.size);
    CHECK(lp_st_meta(&st, "format") && strcmp(lp_st_meta(&st, "format"), "loupe") == 0, "meta");
    CHECK(lp_st_meta(&st, "note") &&
              strcmp(lp_st_meta(&st, "note"), "line1\nline2 \"quoted\" \xe2\x9c\x93 \\ tab\t") == 0,
          "escaped meta");
    /* data offsets follow name order */
    for (int i = 1; i < st.n; i++)
        CHECK(st.t[i].offset == st.t[i - 1].offset + st.t[i - 1].nbytes, "packed in name order at %s",
              st.t[i].name);
    CHECK(st.t[0].offset == 8 + hn, "first tensor right after the header");
    struct {
        const char *name;
        lp_dtype dt;
        const void *data;
        size_t nbytes;
        int ndim;
        const int64_t *shape;
    } ex[] = {
        {"z.f32", LP_DT_F32, f32, sizeof f32, 1, s7},     {"a.f16", LP_DT_F16, f16, sizeof f16, 1, s6},
        {"m.bf16", LP_DT_BF16, bf16, sizeof bf16, 3, s221}, {"B.i32", LP_DT_I32, i32, sizeof i32, 2, s23},
        {"f64", LP_DT_F64, f64, sizeof f64, 1, s3},         {"i64", LP_DT_I64, i64, sizeof i64, 1, s2},
        {"bool", LP_DT_BOOL, bools, sizeof bools, 1, s4},   {"scalar", LP_DT_F32, &scalar, 4, 0, NULL},
        {"conv.f32", LP_DT_F32, conv, sizeof conv, 1, s5},  {"empty", LP_DT_F32, NULL, 0, 2, s0},
        {"unicode \xc3\xa9 \"q\"\\", LP_DT_F32, &scalar, 4, 0, NULL},
    };
    for (size_t k = 0; k < sizeof ex / sizeof ex[0]; k++) {
        const lp_st_tensor *t = NULL;
        CHECK_OK(lp_st_expect(&st, ex[k].name, ex[k].ndim, ex[k].shape, &t));
        if (!t) continue;
        CHECK(t->dtype == ex[k].dt && t->nbytes == ex[k].nbytes, "%s", ex[k].name);
        if (ex[k].nbytes)
            CHECK(memcmp(lp_st_raw(&st, t), ex[k].data, ex[k].nbytes) == 0, "%s bit-exact",
                  ex[k].name);
    }
    const lp_st_tensor *t = lp_st_find(&st, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1, "scalar");
    t = lp_st_find(&st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0, "empty");
    /* conversions at write time: bit-exact to the scalar converters */
    const lp_st_tensor *cb = lp_st_find(&st, "conv.bf16"), *ch = lp_st_find(&st, "conv.f16");
    CHECK(cb && ch, "conv tensors");
    if (cb && ch) {
        const unsigned char *rb = lp_st_raw(&st, cb), *rh = lp_st_raw(&st, ch);
        static const uint16_t wb[5] = {0x3f80, 0xc020, 0x4780, 0x3f80, 0x33c0};
        static const uint16_t wh[5] = {0x3c00, 0xc100, 0x7bff, 0x3c04, 0x0002};
        for (int i = 0; i < 5; i++) {
            uint16_t b = (uint16_t)(rb[2 * i] | rb[2 * i + 1] << 8);
            uint16_t h = (uint16_t)(rh[2 * i] | rh[2 * i + 1] << 8);
            CHECK(b == lp_f32_to_bf16(conv[i]) && b == wb[i], "bf16[%d] %04x", i, b);
            CHECK(h == lp_f32_to_f16(conv[i]) && h == wh[i], "f16[%d] %04x", i, h);
        }
        float v[5];
        CHECK_OK(lp_st_read_f32(&st, ch, v));
        CHECK(v[0] == 1.0f && v[1] == -2.5f && v[2] == 65504.0f, "f16 read");
    }
    /* read_f32 of the other dtypes */
    float v[7];
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "z.f32"), v));
    CHECK(memcmp(v, f32, sizeof f32) == 0, "f32 read bit-exact");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "B.i32"), v));
    CHECK(v[0] == (float)INT32_MIN && v[1] == -1 && v[5] == (float)INT32_MAX, "i32 read");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "i64"), v));
    CHECK(v[0] == (float)INT64_MIN && v[1] == (float)INT64_MAX, "i64 read");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "bool"), v));
    CHECK(v[0] == 0 && v[1] == 1 && v[2] == 1 && v[3] == 0, "bool read");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "f64"), v));
    CHECK(v[0] == -INFINITY && v[1] == 0 && v[2] == 3.14159265f, "f64 read");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "m.bf16"), v));
    CHECK(v[0] == 1 && v[1] == -2.5f && v[2] == bitsf(0x00010000) && v[3] == -INFINITY, "bf16 read");
    CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "empty"), NULL));
    lp_st_close(&st);

    /* deterministic: a second write is byte-identical */
    char *path2 = tpath("rt2.safetensors");
    CHECK_OK(lp_st_writer_write(w, path2));
    char *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK_OK(lp_read_file(path, &b1, &l1));
    CHECK_OK(lp_read_file(path2, &b2, &l2));
    CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0, "deterministic output");
    free(b1);
    free(b2);
    remove(path);
    remove(path2);
    free(path);
    free(path2);
    lp_st_writer_free(w);

    /* an empty writer gives a valid file with no tensors */
    w = lp_st_writer_new();
    path = tpath("empty.safetensors");
    CHECK_OK(lp_st_writer_write(w, path));
    CHECK_OK(lp_st_open(&st, path));
    CHECK(st.n == 0 && st.metadata == NULL && st.size == 16, "empty file: n=%d size=%zu", st.n,
          st.size);
    lp_st_close(&st);
    remove(path);
    free(path);
    lp_st_writer_free(w);
}

/* ------------------------------------------------------------------------ */
/* Valid files the reader must accept. */
static void test_accepts(void) {
    static const struct {
        const char *header;
        size_t datalen;
        int n;
    } ok[] = {
        {"{}", 0, 0},
        {"{}      ", 0, 0}, /* padded */
        {"{\"__metadata__\":{}}", 0, 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1},
        /* zero-size tensors may sit anywhere, including the end */
        {"{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
         "\"z\":{\"data_offsets\":[4,4],\"shape\":[3,0],\"dtype\":\"I64\"}} \n\t",
         4, 3},
        {"{\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]},"
         "\"g8\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[2,3]},"
         "\"u\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[3,11]}}",
         11, 3},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "ok%zu.safetensors", i);
        char *p = tpath(name);
        put_st(p, ok[i].header, strlen(ok[i].header), ok[i].datalen);
        lp_safetensors st;
        int rc = lp_st_open(&st, p);
        CHECK(rc == 0, "case %zu: %s", i, lp_errmsg());
        CHECK(st.n == ok[i].n, "case %zu: n=%d", i, st.n);
        if (rc == 0 && i == 5) {
            const lp_st_tensor *t = lp_st_find(&st, "f8");
            float v[2];
            CHECK(t && lp_st_read_f32(&st, t, v) != 0, "f8 is raw only");
            CHECK(strstr(lp_errmsg(), p) && strstr(lp_errmsg(), "F8_E4M3"), "%s", lp_errmsg());
            CHECK(t && lp_st_raw(&st, t) == st.data + 8 + strlen(ok[i].header), "raw pointer");
            CHECK_OK(lp_st_read_f32(&st, lp_st_find(&st, "u"), v));
            CHECK(v[0] == 0, "u64");
        }
        lp_st_close(&st);
        remove(p);
        free(p);
    }
}

/* ------------------------------------------------------------------------ */
#define E1(dt, shape, offs) "{\"a\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" offs "}}"
#define F32A(offs) "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" offs "}"
#define F32B(offs) "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" offs "}"

static void test_malformed(void) {
    static const struct {
        const char *header; /* NULL: raw bytes below */
        size_t datalen;
        const char *want; /* substring of the message */
    } bad[] = {
        {"", 0, "must start with '{'"},
        {"[1,2]", 0, "not a JSON object"},
        {" {}", 0, "must start with '{'"},
        {"{\"a\":", 0, "not valid JSON"},
        {"{\"a\" 1}", 0, "not valid JSON"},
        {"{} x", 0, "trailing characters"},
        {"{}{}", 0, "trailing characters"},
        {"{\"\xff\":1}", 0, "UTF-8"},
        {"{\"\xed\xa0\x80\":1}", 0, "UTF-8"}, /* encoded surrogate */
        {"{\"\xc0\xaf\":1}", 0, "UTF-8"},     /* overlong */
        {"{\"a\":5}", 0, "entry is not a JSON object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         "unexpected key \"x\""},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "duplicate key \"dtype\""},
        {E1("32", "[1]", "[0,4]"), 4, "\"dtype\" is not a string"},
        {E1("\"F128\"", "[1]", "[0,4]"), 4, "unknown dtype \"F128\""},
        {E1("\"f32\"", "[1]", "[0,4]"), 4, "unknown dtype \"f32\""},
        {E1("\"F32\"", "{}", "[0,4]"), 4, "\"shape\" is not an array"},
        {E1("\"F32\"", "[\"1\"]", "[0,4]"), 4, "shape[0] is not a number"},
        {E1("\"F32\"", "[2,-1]", "[0,4]"), 4, "shape[1] is negative"},
        {E1("\"F32\"", "[1.5]", "[0,4]"), 4, "shape[0] is not an integer"},
        {E1("\"F32\"", "[1e300]", "[0,4]"), 4, "shape[0] is too large"},
        {E1("\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, "9 dimensions"},
        {E1("\"F32\"", "[4294967296,4294967296,4294967296]", "[0,4]"), 4, "shape product overflows"},
        {E1("\"F64\"", "[2147483648,2147483648]", "[0,8]"), 8, "byte size overflows"},
        {E1("\"F32\"", "[1]", "[0]"), 4, "\"data_offsets\" is not an array of 2"},
        {E1("\"F32\"", "[1]", "[0,4,8]"), 4, "\"data_offsets\" is not an array of 2"},
        {E1("\"F32\"", "[1]", "\"0,4\""), 4, "\"data_offsets\" is not an array of 2"},
        {E1("\"F32\"", "[1]", "[-4,0]"), 4, "data_offsets[0] is negative"},
        {E1("\"F32\"", "[1]", "[0,\"4\"]"), 4, "data_offsets[1] is not a number"},
        {E1("\"F32\"", "[1]", "[8,4]"), 8, "end before begin"},
        {E1("\"F32\"", "[2]", "[0,4]"), 4, "span 4 bytes but F32 [2] needs 8"},
        {E1("\"F16\"", "[3]", "[0,8]"), 8, "span 8 bytes but F16 [3] needs 6"},
        {E1("\"F32\"", "[1]", "[0,4]"), 0, "outside the 0-byte data buffer"},
        {E1("\"F32\"", "[1]", "[4,8]"), 6, "outside the 6-byte data buffer"},
        {"{" F32A("[0,4]") "," F32B("[2,6]") "}", 6, "tensors 'a' and 'b' overlap"},
        {"{" F32A("[0,4]") "," F32B("[0,4]") "}", 4, "overlap"},
        {"{" F32A("[0,4]") ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]}}", 4,
         "overlap"},
        {"{" F32A("[0,4]") "," F32B("[8,12]") "}", 12, "4-byte gap in the data buffer before tensor 'b'"},
        {"{" F32A("[4,8]") "}", 8, "4-byte gap in the data buffer before tensor 'a'"},
        {"{" F32A("[0,4]") "}", 9, "5 trailing bytes after the last tensor"},
        {"{}", 3, "3 trailing bytes"},
        {"{" F32A("[0,4]") "," F32A("[4,8]") "}", 8, "duplicate tensor name 'a'"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate \"__metadata__\""},
        {"{\"__metadata__\":\"x\"}", 0, "\"__metadata__\" is not a JSON object"},
        {"{\"__metadata__\":[]}", 0, "\"__metadata__\" is not a JSON object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "value for \"k\" is not a string"},
        {"{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "value for \"k\" is not a string"},
        {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "duplicate key \"k\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%02zu.safetensors", i);
        char *p = tpath(name);
        put_st(p, bad[i].header, strlen(bad[i].header), bad[i].datalen);
        lp_safetensors st;
        int rc = lp_st_open(&st, p);
        CHECK(rc == LP_ERR_FORMAT, "case %zu (%s) returned %d", i, bad[i].header, rc);
        CHECK(strstr(lp_errmsg(), p) != NULL, "case %zu: message lacks path: %s", i, lp_errmsg());
        CHECK(strstr(lp_errmsg(), bad[i].want) != NULL, "case %zu: '%s' not in: %s", i,
              bad[i].want, lp_errmsg());
        CHECK(strchr(lp_errmsg(), '\n') == NULL, "case %zu: one line", i);
        CHECK(is_zeroed(&st), "case %zu: struct left zeroed", i);
        lp_st_close(&st); /* safe on a failed open */
        remove(p);
        free(p);
    }

    /* raw-byte cases */
    struct {
        unsigned char b[24];
        size_t n;
        const char *want;
    } raw[] = {
        {{0}, 0, "shorter than the 8-byte"},
        {{5, 0, 0, 0, 0}, 5, "shorter than the 8-byte"},
        {{0, 0, 0, 0, 0, 1, 0, 0}, 8, "exceeds the 100 MB limit"},            /* 2^40 */
        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8, "100 MB limit"}, /* 2^64-1 */
        {{0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}'}, 10, "100 MB limit"},  /* 100e6 + 1 */
        {{20, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, 10, "header length 20 exceeds the 2 bytes"},
        {{3, 0, 0, 0, 0, 0, 0, 0, '{', 0, '}'}, 11, "NUL byte"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "raw%zu.safetensors", i);
        char *p = tpath(name);
        put_file(p, raw[i].b, raw[i].n);
        lp_safetensors st;
        int rc = lp_st_open(&st, p);
        CHECK(rc == LP_ERR_FORMAT, "raw case %zu returned %d", i, rc);
        CHECK(strstr(lp_errmsg(), p) && strstr(lp_errmsg(), raw[i].want), "raw case %zu: %s", i,
              lp_errmsg());
        CHECK(is_zeroed(&st), "raw case %zu zeroed", i);
        remove(p);
        free(p);
    }

    /* not a file / missing */
    lp_safetensors st;
    CHECK(lp_st_open(&st, g_tmp) == LP_ERR_IO && strstr(lp_errmsg(), g_tmp), "dir: %s",
          lp_errmsg());
    char *p = tpath("missing.safetensors");
    CHECK(lp_st_open(&st, p) == LP_ERR_IO && strstr(lp_errmsg(), p), "missing: %s", lp_errmsg());
    free(p);
    CHECK(count_dir(g_tmp) == 0, "malformed cases cleaned up");
}

/* Every truncation of a valid file must fail cleanly; byte flips in the
 * header must never crash (they may or may not be rejected). */
static void test_mutations(void) {
    char *src = NULL;
    size_t len = 0;
    const char *sample = t_sharedpath("data/safetensors_samples/overall.safetensors");
    CHECK_OK(lp_read_file(sample, &src, &len));
    if (!src) return;
    char *p = tpath("mut.safetensors");
    int fails = 0, accepted_flips = 0;
    for (size_t n = 0; n < len; n++) {
        put_file(p, src, n);
        lp_safetensors st;
        int rc = lp_st_open(&st, p);
        if (rc == 0 || !strstr(lp_errmsg(), p)) fails++;
        lp_st_close(&st);
    }
    CHECK(fails == 0, "%d truncations were accepted or unnamed", fails);
    /* one extra byte at the end */
    char *ext = malloc(len + 1);
    memcpy(ext, src, len);
    ext[len] = 0;
    put_file(p, ext, len + 1);
    lp_safetensors st;
    CHECK(lp_st_open(&st, p) != 0 && strstr(lp_errmsg(), "trailing"), "extended: %s", lp_errmsg());
    /* flip bytes of the length field and the header */
    uint64_t hn = 0;
    for (int k = 0; k < 8; k++) hn |= (uint64_t)(unsigned char)src[k] << (8 * k);
    static const unsigned char repl[] = {0x00, 0xff, '"', '{', '}', '[', ']', ',', ':', '-', '9', 'e', '.'};
    for (size_t at = 0; at < 8 + hn; at++) {
        for (size_t r = 0; r < sizeof repl; r++) {
            memcpy(ext, src, len);
            if ((unsigned char)ext[at] == repl[r]) continue;
            ext[at] = (char)repl[r];
            put_file(p, ext, len);
            if (lp_st_open(&st, p) == 0) {
                accepted_flips++;
                float v[64];
                for (int i = 0; i < st.n; i++)
                    if (st.t[i].numel <= 64) lp_st_read_f32(&st, &st.t[i], v);
                lp_st_close(&st);
            } else {
                CHECK(strstr(lp_errmsg(), p) != NULL, "flip at %zu: %s", at, lp_errmsg());
            }
        }
    }
    (void)accepted_flips; /* e.g. changes inside names or metadata values */
    remove(p);
    free(p);
    free(ext);
    free(src);
}

/* ------------------------------------------------------------------------ */
static void test_unwritable(void) {
    float x[3] = {1, 2, 3};
    int64_t s3[1] = {3};
    lp_st_writer *w = lp_st_writer_new();
    CHECK_OK(lp_st_writer_add(w, "x", LP_DT_F32, 1, s3, x));

    /* a read-only directory (skipped when permissions are not enforced, e.g. root) */
    char *ro = tpath("ro");
    CHECK(mkdir(ro, 0755) == 0, "mkdir");
    chmod(ro, 0555);
    char *probe = lp_path_join(ro, "probe");
    FILE *f = fopen(probe, "wb");
    if (f) {
        fclose(f);
        remove(probe);
        printf("note: permissions not enforced (running as root?); read-only dir case skipped\n");
    } else {
        char *p = lp_path_join(ro, "out.safetensors");
        CHECK(lp_st_writer_write(w, p) != 0, "write into read-only dir");
        CHECK(strstr(lp_errmsg(), p) != NULL, "message: %s", lp_errmsg());
        CHECK(count_dir(ro) == 0, "nothing left in the read-only dir");
        free(p);
    }
    free(probe);
    chmod(ro, 0755);
    rmdir(ro);
    free(ro);

    /* parent is a regular file: fails for root too */
    char *file = tpath("plain");
    put_file(file, "x", 1);
    char *p = lp_path_join(file, "out.safetensors");
    CHECK(lp_st_writer_write(w, p) != 0, "write under a file");
    CHECK(strstr(lp_errmsg(), p) != NULL, "message: %s", lp_errmsg());
    CHECK(!lp_file_exists(p), "no output");
    free(p);
    remove(file);
    free(file);

    /* missing parent directory */
    p = tpath("nodir/out.safetensors");
    CHECK(lp_st_writer_write(w, p) != 0, "write into missing dir");
    CHECK(strstr(lp_errmsg(), p) != NULL, "message: %s", lp_errmsg());
    free(p);
    CHECK(count_dir(g_tmp) == 0, "nothing left behind: %d entries", count_dir(g_tmp));
    lp_st_writer_free(w);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "%s/loupe_st_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_dtypes();
    test_conversions();
    test_samples();
    test_roundtrip();
    test_accepts();
    test_malformed();
    test_mutations();
    test_unwritable();
    rmdir(g_tmp);
    return t_done("test_safetensors");
}
