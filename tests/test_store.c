/* test_store.c — the activation store: f32 and bf16 round trips across shard
 * boundaries, gathers, tokens, the manifest's fields and key order, refusals
 * (non-empty dir, unknown/ambiguous hook), damaged stores (truncated shard or
 * tokens, bad manifest), bounds checks and concurrent readers.
 * `test_store --bench [DIR]` measures append/gather/read throughput at d=64. */
#include "loupe/store.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#define H0 "blocks.0.hook_resid_post"
#define H2 "blocks.2.hook_resid_post"

static char g_base[64];

static float val(int64_t i, int j) { return (float)sin((double)i * 0.37 + j); }
static int32_t tok_of(int64_t i) { return (int32_t)((i * 7919) % 50257); }
static int32_t doc_of(int64_t i) { return (int32_t)(i / 1000); }
static int32_t pos_of(int64_t i) { return (int32_t)(i % 1000); }

static void join(char *out, size_t cap, const char *a, const char *b) {
    if (snprintf(out, cap, "%s/%s", a, b) >= (int)cap) abort();
}

/* a/b in a ring of static buffers: for passing straight to a call */
static char *path2(const char *a, const char *b) {
    static char buf[16][512];
    static int k = 0;
    k = (k + 1) % 16;
    join(buf[k], sizeof buf[k], a, b);
    return buf[k];
}

/* a/b kept in the caller's array */
#define PATH(var, a, b) \
    char var[512];      \
    join(var, sizeof var, a, b)

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static long fsize(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static int count_entries(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!needle || strstr(e->d_name, needle)))
            n++;
    closedir(d);
    return n;
}

/* Append rows [0, total) for hooks of the given dims, in odd-sized chunks. */
static int fill(lp_store_writer *w, int nh, const int *dims, int64_t total) {
    static const int64_t chunks[] = {1, 7, 333, 4099, 65537, 12345, 2, 77777};
    int64_t maxc = 77777;
    float *a[2];
    for (int h = 0; h < nh; h++) a[h] = malloc(sizeof(float) * (size_t)(maxc * dims[h]));
    int32_t *t = malloc(4 * maxc), *dc = malloc(4 * maxc), *ps = malloc(4 * maxc);
    int rc = 0;
    for (int64_t i = 0, c = 0; i < total && !rc; c++) {
        int64_t n = chunks[c % 8];
        if (n > total - i) n = total - i;
        for (int h = 0; h < nh; h++)
            for (int64_t r = 0; r < n; r++)
                for (int j = 0; j < dims[h]; j++) a[h][r * dims[h] + j] = val(i + r, j);
        for (int64_t r = 0; r < n; r++) {
            t[r] = tok_of(i + r);
            dc[r] = doc_of(i + r);
            ps[r] = pos_of(i + r);
        }
        rc = lp_store_append(w, n, (const float *const *)a, t, dc, ps);
        i += n;
    }
    for (int h = 0; h < nh; h++) free(a[h]);
    free(t);
    free(dc);
    free(ps);
    return rc;
}

static lp_store_spec base_spec(int nh, const char *const *hooks, const int *dims, int dtype,
                               int64_t shard_rows) {
    lp_store_spec sp = {0};
    sp.model = "models/tiny.safetensors";
    sp.model_sha256 = "ab12";
    sp.data = "data/corpus.txt";
    sp.data_sha256 = "cd34";
    sp.tokenizer = "gpt2";
    sp.ctx = 128;
    sp.dtype = dtype;
    sp.shard_rows = shard_rows;
    sp.n_hooks = nh;
    sp.hooks = hooks;
    sp.dims = dims;
    return sp;
}

/* ---- f32 round trip, two hooks, 200 000 rows ---------------------------------- */
typedef struct {
    const lp_store *s;
    uint64_t seed;
    int bad;
} gather_job;

static void *gather_thread(void *arg) {
    gather_job *g = arg;
    lp_rng r;
    lp_rng_seed(&r, g->seed);
    int64_t n = 4096, cnt = lp_store_count(g->s);
    int d = lp_store_dim(g->s);
    int64_t *idx = malloc(sizeof *idx * n);
    float *out = malloc(sizeof *out * n * d);
    for (int it = 0; it < 20; it++) {
        for (int64_t i = 0; i < n; i++) idx[i] = (int64_t)lp_rng_below(&r, (uint64_t)cnt);
        if (lp_store_gather(g->s, idx, n, out)) g->bad++;
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < d; j++)
                if (out[i * d + j] != val(idx[i], j)) g->bad++;
    }
    free(idx);
    free(out);
    return NULL;
}

static void test_f32_roundtrip(void) {
    const char *hooks[] = {H0, H2};
    const int dims[] = {8, 16};
    const int64_t N = 200000;
    PATH(dir, g_base, "f32");
    lp_store_spec sp = base_spec(2, hooks, dims, LP_STORE_F32, 65536);
    lp_store_writer *w = NULL;
    CHECK_OK(lp_store_create(&w, dir, &sp));
    if (!w) return;
    CHECK_OK(fill(w, 2, dims, N));
    CHECK_OK(lp_store_set_meta(w, "tokens_consumed", "250000"));
    CHECK_OK(lp_store_set_meta(w, "segment_names", "alpha,beta"));
    CHECK_OK(lp_store_set_meta(w, "note", "12x"));
    CHECK_OK(lp_store_set_meta(w, "note", "0123")); /* replaced in place; not an integer */
    CHECK(lp_store_set_meta(w, "count", "5") == LP_ERR_ARG, "reserved key accepted");
    CHECK_OK(lp_store_close(w));

    /* files: 4 shards per hook, exact sizes, no temporaries */
    PATH(hd0, dir, H0);
    PATH(hd2, dir, H2);
    CHECK(count_entries(hd0, "shard_") == 4, "%d shards", count_entries(hd0, "shard_"));
    CHECK(count_entries(hd2, "shard_") == 4, "hook 2 shards");
    CHECK(count_entries(hd0, ".tmp") == 0 && count_entries(dir, ".tmp") == 0, "temporaries left");
    CHECK(fsize(path2(hd0, "shard_00000.bin")) == 65536L * 8 * 4, "shard 0 size");
    CHECK(fsize(path2(hd2, "shard_00003.bin")) == (200000L - 3 * 65536) * 16 * 4, "last shard size");
    CHECK(fsize(path2(dir, "tokens.bin")) == 200000L * 12, "tokens size");

    /* manifest: fields and key order */
    char *text = NULL;
    CHECK_OK(lp_read_file(path2(dir, "manifest.json"), &text, NULL));
    cJSON *m = text ? cJSON_Parse(text) : NULL;
    CHECK(m != NULL, "manifest parses");
    if (m) {
        static const char *order[] = {"format", "version", "model", "model_sha256", "tokenizer",
                                      "data", "data_sha256", "ctx", "dtype", "count", "hooks",
                                      "tokens", "tokens_consumed", "segment_names", "note",
                                      "created_by", NULL};
        const cJSON *it = m->child;
        int k = 0;
        for (; order[k] && it; k++, it = it->next)
            CHECK(!strcmp(it->string, order[k]), "key %d is %s, want %s", k, it->string, order[k]);
        CHECK(!order[k] && !it, "manifest has the wrong number of keys");
        CHECK(!strcmp(cJSON_GetObjectItem(m, "format")->valuestring, "loupe-activations"), "format");
        CHECK(cJSON_GetObjectItem(m, "version")->valuedouble == 1, "version");
        CHECK(!strcmp(cJSON_GetObjectItem(m, "dtype")->valuestring, "float32"), "dtype");
        CHECK(cJSON_GetObjectItem(m, "count")->valuedouble == 200000, "count");
        CHECK(cJSON_GetObjectItem(m, "ctx")->valuedouble == 128, "ctx");
        CHECK(!strcmp(cJSON_GetObjectItem(m, "model_sha256")->valuestring, "ab12"), "model sha");
        CHECK(cJSON_GetObjectItem(m, "d") == NULL, "top-level d despite differing dims");
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(m, "tokens_consumed")), "tokens_consumed number");
        CHECK(cJSON_IsString(cJSON_GetObjectItem(m, "note")) &&
                  !strcmp(cJSON_GetObjectItem(m, "note")->valuestring, "0123"),
              "note string");
        CHECK(!strcmp(cJSON_GetObjectItem(m, "created_by")->valuestring, "loupe"), "created_by");
        cJSON *h1 = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "hooks"), 1);
        CHECK(h1 && !strcmp(cJSON_GetObjectItem(h1, "name")->valuestring, H2), "hook 1 name");
        CHECK(h1 && cJSON_GetObjectItem(h1, "d")->valuedouble == 16, "hook 1 d");
        CHECK(h1 && !strcmp(cJSON_GetObjectItem(h1, "dir")->valuestring, H2), "hook 1 dir");
        cJSON *sh = h1 ? cJSON_GetObjectItem(h1, "shards") : NULL;
        CHECK(cJSON_GetArraySize(sh) == 4, "4 shards listed");
        cJSON *s3 = cJSON_GetArrayItem(sh, 3);
        CHECK(s3 && !strcmp(cJSON_GetObjectItem(s3, "file")->valuestring, "shard_00003.bin") &&
                  cJSON_GetObjectItem(s3, "rows")->valuedouble == 200000 - 3 * 65536,
              "shard 3 entry");
        cJSON *tk = cJSON_GetObjectItem(m, "tokens");
        CHECK(tk && !strcmp(cJSON_GetObjectItem(tk, "file")->valuestring, "tokens.bin") &&
                  !strcmp(cJSON_GetObjectItem(tk, "dtype")->valuestring, "int32") &&
                  cJSON_GetArraySize(cJSON_GetObjectItem(tk, "fields")) == 3,
              "tokens entry");
    }
    cJSON_Delete(m);

    /* reader, hook 0 */
    lp_store *s = NULL;
    CHECK_OK(lp_store_open(&s, dir, H0));
    if (!s) {
        free(text);
        return;
    }
    CHECK(lp_store_count(s) == N, "count %lld", (long long)lp_store_count(s));
    CHECK(lp_store_dim(s) == 8, "dim");
    CHECK(!strcmp(lp_store_hook(s), H0), "hook name");
    CHECK(!strcmp(lp_store_model(s), "models/tiny.safetensors"), "model");
    CHECK(!strcmp(lp_store_data(s), "data/corpus.txt"), "data");
    CHECK(lp_store_data_tokens(s) == 250000, "tokens_consumed %lld",
          (long long)lp_store_data_tokens(s));
    CHECK(text && !strcmp(lp_store_manifest_text(s), text), "manifest text as stored");
    free(text);

    /* everything, in reads of 10007 rows (crossing shard boundaries) */
    int64_t bad = 0;
    float *buf = malloc(sizeof(float) * 10007 * 16);
    for (int64_t i = 0; i < N; i += 10007) {
        int64_t n = N - i < 10007 ? N - i : 10007;
        CHECK_OK(lp_store_read(s, i, n, buf));
        for (int64_t r = 0; r < n; r++)
            for (int j = 0; j < 8; j++) bad += buf[r * 8 + j] != val(i + r, j);
    }
    CHECK(bad == 0, "%lld f32 values differ", (long long)bad);
    CHECK_OK(lp_store_read(s, 65530, 20, buf));
    bad = 0;
    for (int r = 0; r < 20; r++)
        for (int j = 0; j < 8; j++) bad += buf[r * 8 + j] != val(65530 + r, j);
    CHECK(bad == 0, "boundary read differs");
    CHECK_OK(lp_store_read(s, N, 0, NULL));

    /* gather: random rows plus the edges */
    int64_t ng = 20000;
    int64_t *idx = malloc(sizeof *idx * ng);
    float *g = malloc(sizeof(float) * ng * 8);
    lp_rng rng;
    lp_rng_seed(&rng, 7);
    for (int64_t i = 0; i < ng; i++) idx[i] = (int64_t)lp_rng_below(&rng, (uint64_t)N);
    idx[0] = 0, idx[1] = N - 1, idx[2] = 65535, idx[3] = 65536, idx[4] = 3 * 65536;
    CHECK_OK(lp_store_gather(s, idx, ng, g));
    bad = 0;
    for (int64_t i = 0; i < ng; i++)
        for (int j = 0; j < 8; j++) bad += g[i * 8 + j] != val(idx[i], j);
    CHECK(bad == 0, "gather: %lld values differ", (long long)bad);

    /* tokens */
    int32_t *t = malloc(4 * N), *dc = malloc(4 * N), *ps = malloc(4 * N);
    CHECK_OK(lp_store_tokens(s, 0, N, t, dc, ps));
    bad = 0;
    for (int64_t i = 0; i < N; i++)
        bad += t[i] != tok_of(i) || dc[i] != doc_of(i) || ps[i] != pos_of(i);
    CHECK(bad == 0, "tokens: %lld rows differ", (long long)bad);
    CHECK_OK(lp_store_tokens(s, 123456, 10, NULL, dc, NULL));
    CHECK(dc[0] == doc_of(123456) && dc[9] == doc_of(123465), "doc only");

    /* bounds */
    CHECK(lp_store_read(s, N - 5, 10, buf) == LP_ERR_ARG, "read past end");
    CHECK(strstr(lp_errmsg(), "out of range") != NULL, "msg: %s", lp_errmsg());
    CHECK(lp_store_read(s, -1, 1, buf) == LP_ERR_ARG, "negative start");
    CHECK(lp_store_read(s, 0, -1, buf) == LP_ERR_ARG, "negative n");
    CHECK(lp_store_read(s, INT64_MAX, 2, buf) == LP_ERR_ARG, "overflowing range");
    int64_t badidx[2] = {5, N};
    CHECK(lp_store_gather(s, badidx, 2, g) == LP_ERR_ARG, "gather past end");
    badidx[1] = -3;
    CHECK(lp_store_gather(s, badidx, 2, g) == LP_ERR_ARG, "gather negative");
    CHECK(lp_store_tokens(s, N, 1, t, NULL, NULL) == LP_ERR_ARG, "tokens past end");

    /* concurrent gathers on one reader */
    pthread_t th[4];
    gather_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (gather_job){s, 100 + (uint64_t)i, 0};
        pthread_create(&th[i], NULL, gather_thread, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].bad == 0, "thread %d: %d bad", i, jobs[i].bad);
    }
    lp_store_close_reader(s);

    /* reader, hook 2 */
    s = NULL;
    CHECK_OK(lp_store_open(&s, dir, H2));
    if (s) {
        CHECK(lp_store_dim(s) == 16, "dim 16");
        bad = 0;
        for (int64_t i = 0; i < N; i += 10007) {
            int64_t n = N - i < 10007 ? N - i : 10007;
            CHECK_OK(lp_store_read(s, i, n, buf));
            for (int64_t r = 0; r < n; r++)
                for (int j = 0; j < 16; j++) bad += buf[r * 16 + j] != val(i + r, j);
        }
        CHECK(bad == 0, "hook 2: %lld values differ", (long long)bad);
        lp_store_close_reader(s);
    }

    /* hook selection errors */
    s = NULL;
    CHECK(lp_store_open(&s, dir, NULL) == LP_ERR_ARG && !s, "NULL hook with 2 hooks");
    CHECK(strstr(lp_errmsg(), H0) && strstr(lp_errmsg(), H2), "msg lists hooks: %s", lp_errmsg());
    CHECK(lp_store_open(&s, dir, "blocks.9.hook_resid_post") == LP_ERR_ARG && !s, "unknown hook");
    char want[1024];
    snprintf(want, sizeof want, "%s: no hook 'blocks.9.hook_resid_post' in store (has: %s, %s)", dir,
             H0, H2);
    CHECK(!strcmp(lp_errmsg(), want), "msg: %s", lp_errmsg());

    /* a damaged shard of the other hook makes the store unreadable too */
    PATH(sh2, hd2, "shard_00002.bin");
    CHECK(truncate(sh2, 65536L * 16 * 4 - 1) == 0, "truncate");
    CHECK(lp_store_open(&s, dir, H0) == LP_ERR_FORMAT && !s, "opened with a damaged hook");
    CHECK(strstr(lp_errmsg(), sh2) && strstr(lp_errmsg(), "truncated"), "msg: %s", lp_errmsg());

    free(buf);
    free(idx);
    free(g);
    free(t);
    free(dc);
    free(ps);
}

/* ---- bf16 ----------------------------------------------------------------------- */
/* Round-to-nearest-even to 8 significant bits, computed independently in double. */
static float bf16_ref(float v) {
    if (v == 0 || !isfinite(v)) return v;
    int e;
    frexp(v, &e);
    double ulp = ldexp(1.0, e - 8);
    return (float)(rint((double)v / ulp) * ulp);
}

static void test_bf16(void) {
    const char *hooks[] = {"blocks.1.hook_mlp_out"};
    const int dims[] = {8};
    PATH(dir, g_base, "bf16");
    lp_store_spec sp = base_spec(1, hooks, dims, LP_STORE_BF16, 300);
    sp.model_sha256 = NULL; /* written as null */
    lp_store_writer *w = NULL;
    CHECK_OK(lp_store_create(&w, dir, &sp));
    if (!w) return;
    float special[8] = {1.0f,
                        1.0f + 0x1p-8f,             /* tie -> even (down) */
                        1.0f + 0x1p-7f + 0x1p-8f,   /* tie -> even (up)   */
                        1.0f + 0x1p-8f + 0x1p-20f,  /* just above a tie   */
                        3.14159265f,
                        -2.5f,
                        3.4e38f,                    /* rounds up to +inf  */
                        NAN};
    float expect[8] = {1.0f, 1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, 3.140625f, -2.5f, INFINITY, NAN};
    const float *a[1] = {special};
    int32_t z = 0;
    CHECK_OK(lp_store_append(w, 1, a, &z, &z, &z));
    float rows[999 * 8];
    for (int r = 0; r < 999; r++)
        for (int j = 0; j < 8; j++) rows[r * 8 + j] = val(r + 1, j);
    a[0] = rows;
    CHECK_OK(lp_store_append(w, 999, a, NULL, NULL, NULL)); /* NULL tokens -> zeros */
    CHECK_OK(lp_store_close(w));

    PATH(hd, dir, "blocks.1.hook_mlp_out");
    CHECK(count_entries(hd, "shard_") == 4, "bf16 shard count");
    CHECK(fsize(path2(hd, "shard_00003.bin")) == 100 * 8 * 2, "bf16 last shard size");

    lp_store *s = NULL;
    CHECK_OK(lp_store_open(&s, dir, NULL)); /* one hook: NULL is fine */
    if (!s) return;
    CHECK(lp_store_count(s) == 1000 && lp_store_dim(s) == 8, "shape");
    CHECK(lp_store_data_tokens(s) == 1000, "data_tokens defaults to count");
    CHECK(strstr(lp_store_manifest_text(s), "\"bfloat16\"") != NULL, "dtype in manifest");
    CHECK(strstr(lp_store_manifest_text(s), "\"model_sha256\":\tnull") != NULL, "null sha");
    CHECK(strstr(lp_store_manifest_text(s), "\"d\":\t8") != NULL, "top-level d");
    float out[1000 * 8];
    CHECK_OK(lp_store_read(s, 0, 1000, out));
    for (int j = 0; j < 7; j++)
        CHECK(out[j] == expect[j], "special %d: %.9g -> %.9g, want %.9g", j, special[j], out[j],
              expect[j]);
    CHECK(isnan(out[7]), "NaN stays NaN");
    int bad = 0;
    for (int r = 1; r < 1000; r++)
        for (int j = 0; j < 8; j++) {
            float v = val(r, j), got = out[r * 8 + j];
            bad += got != bf16_ref(v) || fabsf(got - v) > fabsf(v) * 0x1p-8f;
        }
    CHECK(bad == 0, "%d bf16 values not round-to-nearest-even", bad);
    int64_t idx[3] = {999, 0, 301};
    float g[24];
    CHECK_OK(lp_store_gather(s, idx, 3, g));
    CHECK(!memcmp(g, out + 999 * 8, 32) && !memcmp(g + 8, out, 28) && !memcmp(g + 16, out + 301 * 8, 32),
          "bf16 gather matches read");
    int32_t t[2] = {-1, -1};
    CHECK_OK(lp_store_tokens(s, 998, 2, t, NULL, NULL));
    CHECK(t[0] == 0 && t[1] == 0, "NULL tokens written as zeros");
    lp_store_close_reader(s);
}

/* ---- creation refusals and abort ------------------------------------------------ */
static void test_create_errors(void) {
    const char *hooks[] = {"h"};
    const int dims[] = {4};
    lp_store_spec sp = base_spec(1, hooks, dims, LP_STORE_F32, 0);
    lp_store_writer *w = NULL;

    /* an existing store */
    PATH(f32, g_base, "f32");
    CHECK(lp_store_create(&w, f32, &sp) != 0 && !w, "overwrote a store");
    CHECK(strstr(lp_errmsg(), f32) && strstr(lp_errmsg(), "manifest.json"), "msg: %s", lp_errmsg());

    /* non-empty dir */
    PATH(ne, g_base, "nonempty");
    mkdir(ne, 0777);
    FILE *f = fopen(path2(ne, "junk"), "w");
    if (f) fclose(f);
    CHECK(lp_store_create(&w, ne, &sp) != 0 && !w, "wrote into a non-empty dir");
    CHECK(strstr(lp_errmsg(), ne) && strstr(lp_errmsg(), "not empty"), "msg: %s", lp_errmsg());

    /* a path below a regular file cannot be created */
    PATH(bad, path2(ne, "junk"), "store");
    CHECK(lp_store_create(&w, bad, &sp) != 0 && !w, "created below a file");
    CHECK(strstr(lp_errmsg(), "junk") != NULL, "msg names the path: %s", lp_errmsg());

    /* an empty existing dir is fine; abort leaves it empty and present */
    PATH(em, g_base, "empty");
    mkdir(em, 0777);
    sp.shard_rows = 2;
    CHECK_OK(lp_store_create(&w, em, &sp));
    sp.shard_rows = 0;
    if (w) {
        float x[4 * 3] = {0};
        const float *a[1] = {x};
        CHECK_OK(lp_store_append(w, 3, a, NULL, NULL, NULL));
        lp_store_abort(w);
        w = NULL;
        CHECK(lp_is_dir(em) && count_entries(em, NULL) == 0, "abort left files behind");
    }
    /* abort of a fresh dir removes it */
    PATH(fresh, g_base, "fresh/sub");
    CHECK_OK(lp_store_create(&w, fresh, &sp));
    lp_store_abort(w);
    w = NULL;
    CHECK(!lp_file_exists(fresh), "abort kept the directory it created");

    /* bad specs */
    const char *dup[] = {"a", "a"}, *slash[] = {"a/b"};
    const int d2[] = {4, 4}, d0[] = {0};
    PATH(x, g_base, "x");
    lp_store_spec b = base_spec(2, dup, d2, LP_STORE_F32, 0);
    CHECK(lp_store_create(&w, x, &b) == LP_ERR_ARG, "duplicate hooks");
    b = base_spec(1, slash, d2, LP_STORE_F32, 0);
    CHECK(lp_store_create(&w, x, &b) == LP_ERR_ARG, "hook with /");
    b = base_spec(1, hooks, d0, LP_STORE_F32, 0);
    CHECK(lp_store_create(&w, x, &b) == LP_ERR_ARG, "d = 0");
    b = base_spec(1, hooks, dims, 7, 0);
    CHECK(lp_store_create(&w, x, &b) == LP_ERR_ARG, "bad dtype");
    CHECK(!lp_file_exists(x), "bad spec created the directory");

    /* bad appends */
    CHECK_OK(lp_store_create(&w, x, &sp));
    if (w) {
        float v[4] = {0};
        const float *a[1] = {v}, *an[1] = {NULL};
        CHECK(lp_store_append(w, -1, a, NULL, NULL, NULL) == LP_ERR_ARG, "negative n");
        CHECK(lp_store_append(w, 1, an, NULL, NULL, NULL) == LP_ERR_ARG, "NULL hook data");
        CHECK_OK(lp_store_append(w, 0, NULL, NULL, NULL, NULL));
        CHECK_OK(lp_store_append(w, 1, a, NULL, NULL, NULL));
        CHECK_OK(lp_store_close(w));
        lp_store *s = NULL;
        CHECK_OK(lp_store_open(&s, x, "h"));
        CHECK(lp_store_count(s) == 1, "1 row");
        lp_store_close_reader(s);
    }
    /* an empty store (0 rows) opens */
    PATH(e0, g_base, "zero");
    CHECK_OK(lp_store_create(&w, e0, &sp));
    CHECK_OK(lp_store_close(w));
    lp_store *s = NULL;
    CHECK_OK(lp_store_open(&s, e0, NULL));
    CHECK(lp_store_count(s) == 0, "empty store");
    float o;
    CHECK(lp_store_read(s, 0, 1, &o) == LP_ERR_ARG, "read of empty store");
    lp_store_close_reader(s);
}

/* ---- damaged stores ------------------------------------------------------------- */
static void make_small(const char *dir) {
    const char *hooks[] = {"blocks.0.hook_resid_post"};
    const int dims[] = {4};
    lp_store_spec sp = base_spec(1, hooks, dims, LP_STORE_F32, 100);
    lp_store_writer *w = NULL;
    CHECK_OK(lp_store_create(&w, dir, &sp));
    if (!w) return;
    CHECK_OK(fill(w, 1, dims, 250));
    CHECK_OK(lp_store_close(w));
}

static int open_fails(const char *dir, const char *hook, const char *needle, const char *what) {
    lp_store *s = NULL;
    int rc = lp_store_open(&s, dir, hook);
    CHECK(rc != 0 && !s, "%s: opened", what);
    CHECK(strstr(lp_errmsg(), needle) != NULL, "%s: message lacks '%s': %s", what, needle,
          lp_errmsg());
    if (s) lp_store_close_reader(s);
    return rc;
}

/* Rewrite the manifest with one edit applied to its JSON. */
static void edit_manifest(const char *dir, const char *key, cJSON *value) {
    char *text = NULL;
    lp_read_file(path2(dir, "manifest.json"), &text, NULL);
    cJSON *m = cJSON_Parse(text);
    free(text);
    if (value) cJSON_ReplaceItemInObject(m, key, value);
    else cJSON_DeleteItemFromObject(m, key);
    char *out = cJSON_Print(m);
    lp_write_file_atomic(path2(dir, "manifest.json"), out, strlen(out));
    free(out);
    cJSON_Delete(m);
}

static void test_damaged(void) {
    PATH(d1, g_base, "dmg1");
    make_small(d1);
    PATH(sh, path2(d1, "blocks.0.hook_resid_post"), "shard_00001.bin");
    CHECK(truncate(sh, 100 * 16 - 4) == 0, "truncate");
    CHECK(open_fails(d1, NULL, "shard_00001.bin", "truncated shard") == LP_ERR_FORMAT, "code");
    CHECK(strstr(lp_errmsg(), "truncated") != NULL, "msg: %s", lp_errmsg());
    remove(sh);
    open_fails(d1, NULL, "shard_00001.bin", "missing shard");

    PATH(d2, g_base, "dmg2");
    make_small(d2);
    CHECK(truncate(path2(d2, "tokens.bin"), 250 * 12 - 12) == 0, "truncate tokens");
    open_fails(d2, NULL, "tokens.bin", "truncated tokens");

    const char *mf = "manifest.json";
    PATH(d3, g_base, "dmg3");
    make_small(d3);
    edit_manifest(d3, "count", cJSON_CreateNumber(251));
    open_fails(d3, NULL, mf, "count mismatch");
    edit_manifest(d3, "count", cJSON_CreateString("250"));
    open_fails(d3, NULL, mf, "count wrong type");
    edit_manifest(d3, "count", cJSON_CreateNumber(250));
    lp_store *s = NULL;
    CHECK_OK(lp_store_open(&s, d3, NULL)); /* repaired */
    lp_store_close_reader(s);
    edit_manifest(d3, "version", cJSON_CreateNumber(2));
    open_fails(d3, NULL, mf, "version 2");
    edit_manifest(d3, "version", cJSON_CreateNumber(1));
    edit_manifest(d3, "dtype", cJSON_CreateString("float16"));
    open_fails(d3, NULL, mf, "unknown dtype");
    edit_manifest(d3, "dtype", cJSON_CreateString("float32"));
    edit_manifest(d3, "hooks", NULL);
    open_fails(d3, NULL, mf, "missing hooks");

    PATH(d4, g_base, "dmg4");
    make_small(d4);
    lp_write_file_atomic(path2(d4, "manifest.json"), "{ \"format\": ", 12);
    open_fails(d4, NULL, mf, "invalid JSON");
    lp_write_file_atomic(path2(d4, "manifest.json"), "[1,2]", 5);
    open_fails(d4, NULL, mf, "not an object");
    remove(path2(d4, "manifest.json"));
    open_fails(d4, NULL, mf, "no manifest");

    PATH(missing, g_base, "does-not-exist");
    open_fails(missing, NULL, "does-not-exist", "missing dir");
}

/* ---- throughput (only with --bench) -------------------------------------------- */
static void bench(const char *base) {
    const int d = 64;
    const int64_t N = 2000000, chunk = 4096;
    const char *hooks[] = {"blocks.0.hook_resid_post"};
    const int dims[] = {d};
    PATH(dir, base, "loupe_store_bench");
    lp_store_spec sp = base_spec(1, hooks, dims, LP_STORE_F32, 0);
    float *a = malloc(sizeof(float) * chunk * d);
    int32_t *t = calloc(chunk, 4);
    for (int64_t i = 0; i < chunk * d; i++) a[i] = (float)i;
    for (int dt = 0; dt < 2; dt++) {
        sp.dtype = dt;
        rm_rf(dir);
        lp_store_writer *w = NULL;
        CHECK_OK(lp_store_create(&w, dir, &sp));
        const float *ap[1] = {a};
        double t0 = lp_now();
        for (int64_t i = 0; i < N; i += chunk) CHECK_OK(lp_store_append(w, chunk, ap, t, t, t));
        CHECK_OK(lp_store_close(w));
        double ta = lp_now() - t0;
        lp_store *s = NULL;
        CHECK_OK(lp_store_open(&s, dir, NULL));
        int64_t ng = 1 << 20, B = 4096;
        int64_t *idx = malloc(sizeof *idx * B);
        float *out = malloc(sizeof(float) * B * d);
        lp_rng r;
        lp_rng_seed(&r, 1);
        double tg[2] = {0, 0}; /* first pass maps pages in; second runs on mapped pages */
        for (int pass = 0; pass < 2; pass++)
            for (int64_t k = 0; k < ng; k += B) {
                for (int64_t i = 0; i < B; i++) idx[i] = (int64_t)lp_rng_below(&r, (uint64_t)N);
                double t1 = lp_now();
                CHECK_OK(lp_store_gather(s, idx, B, out));
                tg[pass] += lp_now() - t1;
            }
        double t2 = lp_now();
        for (int64_t i = 0; i + B <= N; i += B) CHECK_OK(lp_store_read(s, i, B, out));
        double tr = lp_now() - t2;
        printf("bench %s d=%d, %lld rows: append %.2fM rows/s (%.0f MB/s, incl. close), "
               "gather %.2fM rows/s first pass, %.2fM rows/s second, read %.2fM rows/s\n",
               dt ? "bf16" : "f32", d, (long long)N, N / ta / 1e6,
               N * d * (dt ? 2.0 : 4.0) / ta / 1e6, ng / tg[0] / 1e6, ng / tg[1] / 1e6,
               N / tr / 1e6);
        lp_store_close_reader(s);
        free(idx);
        free(out);
    }
    rm_rf(dir);
    free(a);
    free(t);
}

int main(int argc, char **argv) {
    snprintf(g_base, sizeof g_base, "/tmp/loupe_store_XXXXXX");
    if (!mkdtemp(g_base)) {
        perror("mkdtemp");
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "--bench")) {
        bench(argc > 2 ? argv[2] : g_base); /* e.g. /dev/shm to leave the disk out */
    } else {
        test_f32_roundtrip();
        test_bf16();
        test_create_errors();
        test_damaged();
    }
    rm_rf(g_base);
    return t_done("test_store");
}
