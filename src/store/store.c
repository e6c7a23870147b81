/* store.c — the activation store (see loupe/store.h): per hook a directory of
 * raw little-endian f32/bf16 shards, tokens.bin with (token, doc, pos) int32
 * triples, and manifest.json. The writer holds one shard buffer per hook,
 * writes every file through a temporary name and the manifest last. The reader
 * validates the manifest against the files' sizes and mmaps them read-only;
 * nothing on its read path is mutable, so threads may share one lp_store. */
#include "loupe/store.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the activation store reads and writes little-endian files in place"
#endif

#define STORE_FORMAT "loupe-activations"
#define STORE_VERSION 1
#define DEFAULT_SHARD_ROWS 65536
#define MANIFEST_FILE "manifest.json"
#define TOKENS_FILE "tokens.bin"
#define TOKEN_ROW_BYTES 12            /* int32 token, doc, pos */
#define MAX_JSON_INT 9007199254740992LL /* 2^53: integers a JSON double holds exactly */

/* ---- bf16 ------------------------------------------------------------------ */
/* float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* bfloat16 -> float32, exact. */
static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static const char *dtype_name(int dtype) { return dtype == LP_STORE_BF16 ? "bfloat16" : "float32"; }
static size_t dtype_size(int dtype) { return dtype == LP_STORE_BF16 ? 2 : 4; }

/* A name usable as one path component inside the store directory. */
static int safe_component(const char *s) {
    return s && *s && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

/* ---- writer ---------------------------------------------------------------- */
typedef struct {
    char *name;
    int d;
    char *dir;            /* DIR/<name> */
    size_t row_bytes;     /* d * element size */
    unsigned char *buf;   /* shard_rows rows */
    int64_t *shard_rows;  /* rows of each shard written so far */
    int nshards, cap;
} whook;

struct lp_store_writer {
    char *dir;
    int created_dir; /* DIR did not exist before lp_store_create */
    int failed;      /* an append failed: only close/abort remain */
    int dtype;
    int64_t shard_rows, nbuf, count;
    int n_hooks;
    whook *hooks;
    lp_atomic tokens;
    int tokens_state; /* 0 none, 1 open (temporary), 2 committed */
    char *model, *model_sha256, *data, *data_sha256, *tokenizer;
    int ctx;
    cJSON *meta; /* lp_store_set_meta entries, in insertion order */
};

static const char *const reserved_keys[] = {
    "format", "version", "model", "model_sha256", "tokenizer", "data", "data_sha256", "ctx",
    "dtype",  "count",   "d",     "hooks",        "tokens",    "created_by", NULL};

static char *dup_or_null(const char *s, int *err) {
    if (!s) return NULL;
    char *d = lp_strdup(s);
    if (!d) *err = 1;
    return d;
}

/* Inspect DIR: *exists, and whether it holds a manifest or anything at all. */
static int inspect_dir(const char *dir, int *exists, int *has_manifest, int *nonempty) {
    *exists = *has_manifest = *nonempty = 0;
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) return LP_OK;
        return lp_fail(LP_ERR_IO, "%s: cannot access output directory (%s)", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return lp_fail(LP_ERR_IO, "%s: output path exists and is not a directory", dir);
    *exists = 1;
    DIR *dp = opendir(dir);
    if (!dp) return lp_fail(LP_ERR_IO, "%s: cannot read output directory (%s)", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        *nonempty = 1;
        if (!strcmp(e->d_name, MANIFEST_FILE)) *has_manifest = 1;
    }
    closedir(dp);
    return LP_OK;
}

static char *shard_path(const whook *h, int index) {
    char name[32];
    snprintf(name, sizeof name, "shard_%05d.bin", index);
    return lp_path_join(h->dir, name);
}

/* Remove everything this writer created; DIR itself only if it made it. */
static void writer_cleanup_files(lp_store_writer *w) {
    if (w->tokens_state == 1) lp_atomic_abort(&w->tokens);
    if (w->tokens_state == 2) {
        char *p = lp_path_join(w->dir, TOKENS_FILE);
        if (p) remove(p);
        free(p);
    }
    w->tokens_state = 0;
    for (int i = 0; i < w->n_hooks; i++) {
        whook *h = &w->hooks[i];
        if (!h->dir) continue;
        for (int k = 0; k < h->nshards; k++) {
            char *p = shard_path(h, k);
            if (p) remove(p);
            free(p);
        }
        h->nshards = 0;
        rmdir(h->dir);
    }
    if (w->created_dir) rmdir(w->dir);
}

static void writer_free(lp_store_writer *w) {
    if (!w) return;
    if (w->tokens_state == 1) lp_atomic_abort(&w->tokens);
    for (int i = 0; i < w->n_hooks && w->hooks; i++) {
        free(w->hooks[i].name);
        free(w->hooks[i].dir);
        free(w->hooks[i].buf);
        free(w->hooks[i].shard_rows);
    }
    free(w->hooks);
    free(w->dir);
    free(w->model);
    free(w->model_sha256);
    free(w->data);
    free(w->data_sha256);
    free(w->tokenizer);
    cJSON_Delete(w->meta);
    free(w);
}

static int check_spec(const char *dir, const lp_store_spec *spec) {
    if (spec->dtype != LP_STORE_F32 && spec->dtype != LP_STORE_BF16)
        return lp_fail(LP_ERR_ARG, "%s: unknown store dtype %d", dir, spec->dtype);
    if (spec->n_hooks < 1 || !spec->hooks || !spec->dims)
        return lp_fail(LP_ERR_ARG, "%s: a store needs at least one hook", dir);
    if (spec->shard_rows < 0)
        return lp_fail(LP_ERR_ARG, "%s: shard_rows must be positive (got %" PRId64 ")", dir,
                       spec->shard_rows);
    if (spec->ctx < 0) return lp_fail(LP_ERR_ARG, "%s: negative ctx %d", dir, spec->ctx);
    for (int i = 0; i < spec->n_hooks; i++) {
        const char *n = spec->hooks[i];
        if (!safe_component(n) || !strcmp(n, MANIFEST_FILE) || !strcmp(n, TOKENS_FILE))
            return lp_fail(LP_ERR_ARG, "%s: invalid hook name '%s'", dir, n ? n : "(null)");
        if (spec->dims[i] <= 0)
            return lp_fail(LP_ERR_ARG, "%s: hook '%s' has dimension %d", dir, n, spec->dims[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(spec->hooks[j], n))
                return lp_fail(LP_ERR_ARG, "%s: hook '%s' given twice", dir, n);
    }
    return LP_OK;
}

int lp_store_create(lp_store_writer **out, const char *dir, const lp_store_spec *spec) {
    if (!out) return lp_fail(LP_ERR_ARG, "lp_store_create: no writer pointer");
    *out = NULL;
    if (!dir || !*dir) return lp_fail(LP_ERR_ARG, "lp_store_create: no output directory given");
    if (!spec) return lp_fail(LP_ERR_ARG, "%s: no store spec", dir);
    int rc = check_spec(dir, spec);
    if (rc) return rc;

    int exists, has_manifest, nonempty;
    if ((rc = inspect_dir(dir, &exists, &has_manifest, &nonempty))) return rc;
    if (has_manifest)
        return lp_fail(LP_ERR_IO, "%s: already holds a store (manifest.json); refusing to overwrite",
                       dir);
    if (nonempty)
        return lp_fail(LP_ERR_IO, "%s: output directory is not empty; refusing to write a store there",
                       dir);

    lp_store_writer *w = lp_calloc(1, sizeof *w);
    if (!w) return LP_ERR_NOMEM;
    int err = 0;
    w->dir = dup_or_null(dir, &err);
    w->model = dup_or_null(spec->model, &err);
    w->model_sha256 = dup_or_null(spec->model_sha256, &err);
    w->data = dup_or_null(spec->data, &err);
    w->data_sha256 = dup_or_null(spec->data_sha256, &err);
    w->tokenizer = dup_or_null(spec->tokenizer, &err);
    w->meta = cJSON_CreateObject();
    w->hooks = lp_calloc((size_t)spec->n_hooks, sizeof *w->hooks);
    if (err || !w->meta || !w->hooks) {
        writer_free(w);
        return lp_fail(LP_ERR_NOMEM, "%s: out of memory creating store writer", dir);
    }
    w->n_hooks = spec->n_hooks;
    w->dtype = spec->dtype;
    w->ctx = spec->ctx;
    w->shard_rows = spec->shard_rows ? spec->shard_rows : DEFAULT_SHARD_ROWS;

    if (!exists) {
        if ((rc = lp_mkdirs(dir))) {
            writer_free(w);
            return rc;
        }
        w->created_dir = 1;
    }
    for (int i = 0; i < w->n_hooks && !rc; i++) {
        whook *h = &w->hooks[i];
        h->d = spec->dims[i];
        h->row_bytes = (size_t)h->d * dtype_size(w->dtype);
        size_t bytes;
        if (w->shard_rows > (int64_t)(SIZE_MAX / 2) ||
            lp_mul_overflow((size_t)w->shard_rows, h->row_bytes, &bytes)) {
            rc = lp_fail(LP_ERR_NOMEM, "%s: shard of %" PRId64 " rows x %d overflows", dir,
                         w->shard_rows, h->d);
            break;
        }
        h->name = lp_strdup(spec->hooks[i]);
        h->dir = lp_path_join(dir, spec->hooks[i]);
        h->buf = lp_malloc(bytes);
        if (!h->name || !h->dir || !h->buf) {
            rc = lp_fail(LP_ERR_NOMEM, "%s: out of memory for a %zu-byte shard buffer", dir, bytes);
            break;
        }
        rc = lp_mkdirs(h->dir);
    }
    if (!rc) {
        char *tp = lp_path_join(dir, TOKENS_FILE);
        if (!tp) rc = LP_ERR_NOMEM;
        else if (!(rc = lp_atomic_open(&w->tokens, tp))) w->tokens_state = 1;
        free(tp);
    }
    if (rc) {
        writer_cleanup_files(w);
        writer_free(w);
        return rc;
    }
    *out = w;
    return LP_OK;
}

/* Write the buffered rows of every hook as the next shard. */
static int flush_shards(lp_store_writer *w) {
    if (w->nbuf == 0) return LP_OK;
    for (int i = 0; i < w->n_hooks; i++) {
        whook *h = &w->hooks[i];
        if (h->nshards == h->cap) {
            int cap = h->cap ? h->cap * 2 : 16;
            int64_t *p = realloc(h->shard_rows, (size_t)cap * sizeof *p);
            if (!p) return lp_fail(LP_ERR_NOMEM, "%s: out of memory", w->dir);
            h->shard_rows = p;
            h->cap = cap;
        }
        char *path = shard_path(h, h->nshards);
        if (!path) return LP_ERR_NOMEM;
        lp_atomic a;
        int rc = lp_atomic_open(&a, path);
        if (!rc) {
            if ((rc = lp_atomic_write(&a, h->buf, (size_t)w->nbuf * h->row_bytes)))
                lp_atomic_abort(&a);
            else
                rc = lp_atomic_commit(&a);
        }
        free(path);
        if (rc) return rc;
        h->shard_rows[h->nshards++] = w->nbuf;
    }
    w->nbuf = 0;
    return LP_OK;
}

int lp_store_append(lp_store_writer *w, int64_t n, const float *const *acts, const int32_t *tok,
                    const int32_t *doc, const int32_t *pos) {
    if (!w) return lp_fail(LP_ERR_ARG, "lp_store_append: no writer");
    if (w->failed) return lp_fail(LP_ERR_ARG, "%s: store writer failed earlier; abort it", w->dir);
    if (n < 0) return lp_fail(LP_ERR_ARG, "%s: cannot append %" PRId64 " rows", w->dir, n);
    if (n == 0) return LP_OK;
    if (!acts) return lp_fail(LP_ERR_ARG, "%s: append without activations", w->dir);
    for (int i = 0; i < w->n_hooks; i++)
        if (!acts[i])
            return lp_fail(LP_ERR_ARG, "%s: append without activations for hook '%s'", w->dir,
                           w->hooks[i].name);
    if (n > MAX_JSON_INT - w->count)
        return lp_fail(LP_ERR_ARG, "%s: store would exceed 2^53 rows", w->dir);

    int64_t done = 0;
    while (done < n) {
        int64_t k = n - done;
        if (k > w->shard_rows - w->nbuf) k = w->shard_rows - w->nbuf;
        for (int i = 0; i < w->n_hooks; i++) {
            whook *h = &w->hooks[i];
            const float *src = acts[i] + (size_t)done * (size_t)h->d;
            size_t m = (size_t)k * (size_t)h->d;
            unsigned char *dst = h->buf + (size_t)w->nbuf * h->row_bytes;
            if (w->dtype == LP_STORE_F32) {
                memcpy(dst, src, m * sizeof(float));
            } else {
                uint16_t *d16 = (uint16_t *)(void *)dst;
                size_t j = 0;
                for (; j + 8 <= m; j += 8)
                    for (size_t q = 0; q < 8; q++) d16[j + q] = f32_to_bf16(src[j + q]);
                for (; j < m; j++) d16[j] = f32_to_bf16(src[j]);
            }
        }
        int32_t tmp[3 * 1024];
        for (int64_t r = 0; r < k;) {
            int64_t c = k - r < 1024 ? k - r : 1024;
            for (int64_t j = 0; j < c; j++) {
                int64_t g = done + r + j;
                tmp[3 * j + 0] = tok ? tok[g] : 0;
                tmp[3 * j + 1] = doc ? doc[g] : 0;
                tmp[3 * j + 2] = pos ? pos[g] : 0;
            }
            if (lp_atomic_write(&w->tokens, tmp, (size_t)c * TOKEN_ROW_BYTES)) {
                w->failed = 1;
                return LP_ERR_IO;
            }
            r += c;
        }
        w->nbuf += k;
        w->count += k;
        done += k;
        if (w->nbuf == w->shard_rows) {
            int rc = flush_shards(w);
            if (rc) {
                w->failed = 1;
                return rc;
            }
        }
    }
    return LP_OK;
}

/* "-?(0|[1-9][0-9]*)" within +-2^53 */
static int parse_json_int(const char *s, int64_t *v) {
    const char *p = s;
    if (*p == '-') p++;
    if (!*p || (p[0] == '0' && p[1]) || strlen(p) > 16) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    long long x = strtoll(s, NULL, 10);
    if (x > MAX_JSON_INT || x < -MAX_JSON_INT) return 0;
    *v = x;
    return 1;
}

/* An integer JSON value printed exactly (never in exponent form). */
static cJSON *json_int(int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cJSON_CreateRaw(buf);
}

int lp_store_set_meta(lp_store_writer *w, const char *key, const char *value) {
    if (!w) return lp_fail(LP_ERR_ARG, "lp_store_set_meta: no writer");
    if (!key || !*key || !value)
        return lp_fail(LP_ERR_ARG, "%s: store metadata needs a key and a value", w->dir);
    for (int i = 0; reserved_keys[i]; i++)
        if (!strcmp(key, reserved_keys[i]))
            return lp_fail(LP_ERR_ARG, "%s: manifest key '%s' is reserved", w->dir, key);
    int64_t v;
    cJSON *item = parse_json_int(value, &v) ? json_int(v) : cJSON_CreateString(value);
    if (!item) return lp_fail(LP_ERR_NOMEM, "%s: out of memory", w->dir);
    int ok = cJSON_GetObjectItemCaseSensitive(w->meta, key)
                 ? cJSON_ReplaceItemInObjectCaseSensitive(w->meta, key, item)
                 : cJSON_AddItemToObject(w->meta, key, item);
    if (!ok) {
        cJSON_Delete(item);
        return lp_fail(LP_ERR_NOMEM, "%s: out of memory", w->dir);
    }
    return LP_OK;
}

static cJSON *json_str_or_null(const char *s) { return s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

/* Build manifest.json's text (caller frees). */
static char *manifest_json(const lp_store_writer *w) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int ok = 1, same_d = 1;
    ok &= cJSON_AddItemToObject(root, "format", cJSON_CreateString(STORE_FORMAT));
    ok &= cJSON_AddItemToObject(root, "version", json_int(STORE_VERSION));
    ok &= cJSON_AddItemToObject(root, "model", json_str_or_null(w->model));
    ok &= cJSON_AddItemToObject(root, "model_sha256", json_str_or_null(w->model_sha256));
    ok &= cJSON_AddItemToObject(root, "tokenizer", json_str_or_null(w->tokenizer));
    ok &= cJSON_AddItemToObject(root, "data", json_str_or_null(w->data));
    ok &= cJSON_AddItemToObject(root, "data_sha256", json_str_or_null(w->data_sha256));
    ok &= cJSON_AddItemToObject(root, "ctx", json_int(w->ctx));
    ok &= cJSON_AddItemToObject(root, "dtype", cJSON_CreateString(dtype_name(w->dtype)));
    ok &= cJSON_AddItemToObject(root, "count", json_int(w->count));
    for (int i = 1; i < w->n_hooks; i++)
        if (w->hooks[i].d != w->hooks[0].d) same_d = 0;
    if (same_d) ok &= cJSON_AddItemToObject(root, "d", json_int(w->hooks[0].d));
    cJSON *hooks = cJSON_AddArrayToObject(root, "hooks");
    ok &= hooks != NULL;
    for (int i = 0; ok && i < w->n_hooks; i++) {
        const whook *h = &w->hooks[i];
        cJSON *ho = cJSON_CreateObject();
        ok &= cJSON_AddItemToArray(hooks, ho);
        ok &= cJSON_AddItemToObject(ho, "name", cJSON_CreateString(h->name));
        ok &= cJSON_AddItemToObject(ho, "d", json_int(h->d));
        ok &= cJSON_AddItemToObject(ho, "dir", cJSON_CreateString(h->name));
        cJSON *sh = cJSON_AddArrayToObject(ho, "shards");
        ok &= sh != NULL;
        for (int k = 0; ok && k < h->nshards; k++) {
            char name[32];
            snprintf(name, sizeof name, "shard_%05d.bin", k);
            cJSON *so = cJSON_CreateObject();
            ok &= cJSON_AddItemToArray(sh, so);
            ok &= cJSON_AddItemToObject(so, "file", cJSON_CreateString(name));
            ok &= cJSON_AddItemToObject(so, "rows", json_int(h->shard_rows[k]));
        }
    }
    cJSON *tk = cJSON_AddObjectToObject(root, "tokens");
    ok &= tk != NULL;
    if (ok) {
        static const char *const fields[] = {"token", "doc", "pos"};
        ok &= cJSON_AddItemToObject(tk, "file", cJSON_CreateString(TOKENS_FILE));
        ok &= cJSON_AddItemToObject(tk, "fields", cJSON_CreateStringArray(fields, 3));
        ok &= cJSON_AddItemToObject(tk, "dtype", cJSON_CreateString("int32"));
    }
    for (const cJSON *m = w->meta->child; ok && m; m = m->next)
        ok &= cJSON_AddItemToObject(root, m->string, cJSON_Duplicate(m, 1));
    ok &= cJSON_AddItemToObject(root, "created_by", cJSON_CreateString("loupe"));
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}

int lp_store_close(lp_store_writer *w) {
    if (!w) return lp_fail(LP_ERR_ARG, "lp_store_close: no writer");
    int rc = LP_OK;
    if (w->failed) rc = lp_fail(LP_ERR_IO, "%s: store writer failed earlier; no manifest written",
                                w->dir);
    if (!rc) rc = flush_shards(w);
    if (!rc) {
        w->tokens_state = 0;
        if ((rc = lp_atomic_commit(&w->tokens)) == LP_OK) w->tokens_state = 2;
    }
    if (!rc) {
        char *text = manifest_json(w);
        char *mp = lp_path_join(w->dir, MANIFEST_FILE);
        if (!text || !mp) {
            rc = lp_fail(LP_ERR_NOMEM, "%s: out of memory writing the manifest", w->dir);
        } else {
            size_t len = strlen(text);
            text[len] = '\n'; /* cJSON_Print's buffer has room: overwrite the NUL */
            rc = lp_write_file_atomic(mp, text, len + 1);
        }
        free(text);
        free(mp);
    }
    if (rc) writer_cleanup_files(w);
    writer_free(w);
    return rc;
}

void lp_store_abort(lp_store_writer *w) {
    if (!w) return;
    writer_cleanup_files(w);
    writer_free(w);
}

/* ---- reader ---------------------------------------------------------------- */
typedef struct {
    int64_t start, rows;
    const unsigned char *map; /* NULL when rows == 0 */
    size_t len;
} rshard;

struct lp_store {
    char *dir, *hook, *model, *data, *text;
    int d, dtype;
    size_t row_bytes;
    int64_t count, data_tokens;
    int nshards;
    rshard *shards;
    int64_t uniform; /* rows per shard when every shard but the last has that many; else 0 */
    const unsigned char *tok;
    size_t tok_len;
};

static void store_free(lp_store *s) {
    if (!s) return;
    for (int i = 0; i < s->nshards && s->shards; i++)
        if (s->shards[i].map) munmap((void *)s->shards[i].map, s->shards[i].len);
    if (s->tok) munmap((void *)s->tok, s->tok_len);
    free(s->shards);
    free(s->dir);
    free(s->hook);
    free(s->model);
    free(s->data);
    free(s->text);
    free(s);
}

/* JSON integer in [lo, hi] */
static int json_get_int(const cJSON *item, int64_t lo, int64_t hi, int64_t *v) {
    if (!cJSON_IsNumber(item)) return 0;
    double x = item->valuedouble;
    if (!(x >= (double)lo && x <= (double)hi) || x != floor(x)) return 0;
    *v = (int64_t)x;
    return 1;
}

/* Check that `path` is a regular file of exactly `expect` bytes; with `map`,
 * also mmap it read-only (*map stays NULL for an empty file). */
static int open_exact(const char *path, size_t expect, const char *what,
                      const unsigned char **map) {
    if (map) *map = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lp_fail(LP_ERR_IO, "%s: cannot open %s (%s)", path, what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lp_fail(LP_ERR_IO, "%s: %s is not a regular file", path, what);
    }
    if ((uint64_t)st.st_size != (uint64_t)expect) {
        close(fd);
        return lp_fail(LP_ERR_FORMAT, "%s: %s has %lld bytes, manifest implies %zu (%s)", path, what,
                       (long long)st.st_size, expect,
                       (uint64_t)st.st_size < (uint64_t)expect ? "truncated" : "too long");
    }
    if (map && expect > 0) {
        void *p = mmap(NULL, expect, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return lp_fail(LP_ERR_IO, "%s: cannot map %s (%s)", path, what, strerror(e));
        }
        *map = p;
    }
    close(fd); /* the mapping stays valid; no descriptor held per shard */
    return LP_OK;
}

static const char *opt_string(const cJSON *root, const char *key, int *bad) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return "";
    if (!cJSON_IsString(it)) {
        *bad = 1;
        return "";
    }
    return it->valuestring;
}

/* "a, b, c" of the manifest's hook names into buf */
static void hook_list(const cJSON *hooks, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    const cJSON *h;
    cJSON_ArrayForEach(h, hooks) {
        const char *n = cJSON_GetObjectItemCaseSensitive(h, "name")->valuestring;
        int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", n);
        if (w < 0 || (size_t)w >= cap - k) break;
        k += (size_t)w;
    }
}

/* Validate the parsed manifest and fill s (except the file mappings). */
static int parse_manifest(lp_store *s, const cJSON *root, const char *mp, const char *want,
                          const cJSON **hook_out) {
    if (!cJSON_IsObject(root)) return lp_fail(LP_ERR_FORMAT, "%s: not a JSON object", mp);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, STORE_FORMAT) != 0)
        return lp_fail(LP_ERR_FORMAT, "%s: \"format\" is not \"%s\"", mp, STORE_FORMAT);
    int64_t v;
    it = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!json_get_int(it, INT32_MIN, INT32_MAX, &v))
        return lp_fail(LP_ERR_FORMAT, "%s: missing or non-integer \"version\"", mp);
    if (v != STORE_VERSION)
        return lp_fail(LP_ERR_FORMAT, "%s: unsupported store version %" PRId64 " (expected %d)", mp,
                       v, STORE_VERSION);
    it = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (!cJSON_IsString(it)) return lp_fail(LP_ERR_FORMAT, "%s: missing string \"dtype\"", mp);
    if (!strcmp(it->valuestring, "float32")) s->dtype = LP_STORE_F32;
    else if (!strcmp(it->valuestring, "bfloat16")) s->dtype = LP_STORE_BF16;
    else return lp_fail(LP_ERR_FORMAT, "%s: unknown dtype \"%s\"", mp, it->valuestring);
    if (!json_get_int(cJSON_GetObjectItemCaseSensitive(root, "count"), 0, MAX_JSON_INT, &s->count))
        return lp_fail(LP_ERR_FORMAT, "%s: missing or invalid \"count\"", mp);
    it = cJSON_GetObjectItemCaseSensitive(root, "ctx");
    if (it && !json_get_int(it, 0, INT32_MAX, &v))
        return lp_fail(LP_ERR_FORMAT, "%s: invalid \"ctx\"", mp);
    int bad = 0;
    const char *keys[] = {"model", "model_sha256", "tokenizer", "data", "data_sha256"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        opt_string(root, keys[i], &bad);
        if (bad) return lp_fail(LP_ERR_FORMAT, "%s: \"%s\" is not a string", mp, keys[i]);
    }
    s->model = lp_strdup(opt_string(root, "model", &bad));
    s->data = lp_strdup(opt_string(root, "data", &bad));
    if (!s->model || !s->data) return LP_ERR_NOMEM;

    int64_t top_d = 0;
    it = cJSON_GetObjectItemCaseSensitive(root, "d");
    if (it && !json_get_int(it, 1, INT32_MAX, &top_d))
        return lp_fail(LP_ERR_FORMAT, "%s: invalid \"d\"", mp);

    s->data_tokens = s->count;
    it = cJSON_GetObjectItemCaseSensitive(root, "tokens_consumed");
    if (it) {
        if (cJSON_IsString(it) ? !parse_json_int(it->valuestring, &v) : !json_get_int(it, 0, MAX_JSON_INT, &v))
            return lp_fail(LP_ERR_FORMAT, "%s: invalid \"tokens_consumed\"", mp);
        s->data_tokens = v;
    }

    /* tokens file */
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!cJSON_IsObject(tk)) return lp_fail(LP_ERR_FORMAT, "%s: missing \"tokens\" object", mp);
    it = cJSON_GetObjectItemCaseSensitive(tk, "file");
    if (!cJSON_IsString(it) || !safe_component(it->valuestring))
        return lp_fail(LP_ERR_FORMAT, "%s: missing or invalid \"tokens\".\"file\"", mp);
    it = cJSON_GetObjectItemCaseSensitive(tk, "dtype");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, "int32") != 0)
        return lp_fail(LP_ERR_FORMAT, "%s: \"tokens\".\"dtype\" must be \"int32\"", mp);
    it = cJSON_GetObjectItemCaseSensitive(tk, "fields");
    if (it) {
        static const char *const want_fields[] = {"token", "doc", "pos"};
        int okf = cJSON_IsArray(it) && cJSON_GetArraySize(it) == 3;
        for (int i = 0; okf && i < 3; i++) {
            const cJSON *f = cJSON_GetArrayItem(it, i);
            okf = cJSON_IsString(f) && !strcmp(f->valuestring, want_fields[i]);
        }
        if (!okf)
            return lp_fail(LP_ERR_FORMAT, "%s: \"tokens\".\"fields\" must be [\"token\",\"doc\",\"pos\"]",
                           mp);
    }

    /* hooks: validate all, pick one */
    const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(root, "hooks");
    if (!cJSON_IsArray(hooks) || cJSON_GetArraySize(hooks) < 1)
        return lp_fail(LP_ERR_FORMAT, "%s: missing or empty \"hooks\" array", mp);
    const cJSON *h, *found = NULL;
    int idx = 0;
    cJSON_ArrayForEach(h, hooks) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(h, "name");
        if (!cJSON_IsObject(h) || !cJSON_IsString(name) || !*name->valuestring)
            return lp_fail(LP_ERR_FORMAT, "%s: hook %d has no \"name\"", mp, idx);
        const char *hn = name->valuestring;
        for (const cJSON *p = hooks->child; p != h; p = p->next)
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring, hn))
                return lp_fail(LP_ERR_FORMAT, "%s: hook '%s' listed twice", mp, hn);
        if (!json_get_int(cJSON_GetObjectItemCaseSensitive(h, "d"), 1, INT32_MAX, &v))
            return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': missing or invalid \"d\"", mp, hn);
        if (top_d && v != top_d)
            return lp_fail(LP_ERR_FORMAT, "%s: hook '%s' has d %" PRId64 " but \"d\" is %" PRId64,
                           mp, hn, v, top_d);
        it = cJSON_GetObjectItemCaseSensitive(h, "dir");
        if (it && (!cJSON_IsString(it) || !safe_component(it->valuestring)))
            return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': invalid \"dir\"", mp, hn);
        if (!it && !safe_component(hn))
            return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': name is not a directory name", mp, hn);
        const cJSON *shards = cJSON_GetObjectItemCaseSensitive(h, "shards");
        if (!cJSON_IsArray(shards))
            return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': missing \"shards\" array", mp, hn);
        int64_t total = 0;
        int k = 0;
        const cJSON *sh;
        cJSON_ArrayForEach(sh, shards) {
            it = cJSON_GetObjectItemCaseSensitive(sh, "file");
            if (!cJSON_IsString(it) || !safe_component(it->valuestring))
                return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': shard %d has no valid \"file\"", mp, hn,
                               k);
            int64_t rows;
            if (!json_get_int(cJSON_GetObjectItemCaseSensitive(sh, "rows"), 0, MAX_JSON_INT, &rows))
                return lp_fail(LP_ERR_FORMAT, "%s: hook '%s': shard %d has no valid \"rows\"", mp,
                               hn, k);
            total += rows;
            if (total > s->count) break;
            k++;
        }
        if (total != s->count)
            return lp_fail(LP_ERR_FORMAT,
                           "%s: hook '%s': shard rows add up to %s%" PRId64 ", \"count\" is %" PRId64,
                           mp, hn, total > s->count ? "more than " : "", total, s->count);
        if (want && *want ? !strcmp(want, hn) : idx == 0) found = h;
        idx++;
    }
    if (!want && idx > 1) { /* "" asks for the first hook */
        char list[768];
        hook_list(hooks, list, sizeof list);
        return lp_fail(LP_ERR_ARG, "%s: store has %d hooks (%s); name the one to read", s->dir, idx,
                       list);
    }
    if (!found) {
        char list[768];
        hook_list(hooks, list, sizeof list);
        return lp_fail(LP_ERR_ARG, "%s: no hook '%s' in store (has: %s)", s->dir, want, list);
    }
    *hook_out = found;
    return LP_OK;
}

/* Check the size of every shard of hook h; when `keep`, map them into s. */
static int hook_files(lp_store *s, const cJSON *h, int keep) {
    const char *name = cJSON_GetObjectItemCaseSensitive(h, "name")->valuestring;
    size_t row_bytes =
        (size_t)cJSON_GetObjectItemCaseSensitive(h, "d")->valuedouble * dtype_size(s->dtype);
    const cJSON *dirit = cJSON_GetObjectItemCaseSensitive(h, "dir");
    char *hdir = lp_path_join(s->dir, dirit ? dirit->valuestring : name);
    if (!hdir) return LP_ERR_NOMEM;
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(h, "shards");
    if (keep) {
        int n = cJSON_GetArraySize(shards);
        s->shards = lp_calloc((size_t)(n ? n : 1), sizeof *s->shards);
        if (!s->shards) {
            free(hdir);
            return LP_ERR_NOMEM;
        }
    }
    int rc = LP_OK;
    int64_t start = 0;
    const cJSON *sh;
    cJSON_ArrayForEach(sh, shards) {
        int64_t rows = (int64_t)cJSON_GetObjectItemCaseSensitive(sh, "rows")->valuedouble;
        char *path = lp_path_join(hdir, cJSON_GetObjectItemCaseSensitive(sh, "file")->valuestring);
        if (!path) {
            rc = LP_ERR_NOMEM;
            break;
        }
        if ((uint64_t)rows > SIZE_MAX / row_bytes) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: shard size overflows", path);
        } else if (keep) {
            rshard *r = &s->shards[s->nshards];
            r->start = start;
            r->rows = rows;
            r->len = (size_t)rows * row_bytes;
            if ((rc = open_exact(path, r->len, "shard", &r->map)) == LP_OK) s->nshards++;
        } else {
            rc = open_exact(path, (size_t)rows * row_bytes, "shard", NULL);
        }
        free(path);
        if (rc) break;
        start += rows;
    }
    free(hdir);
    return rc;
}

/* Map the chosen hook's shards and tokens.bin; check the other hooks' sizes. */
static int map_files(lp_store *s, const cJSON *root, const cJSON *h) {
    s->hook = lp_strdup(cJSON_GetObjectItemCaseSensitive(h, "name")->valuestring);
    if (!s->hook) return LP_ERR_NOMEM;
    s->d = (int)cJSON_GetObjectItemCaseSensitive(h, "d")->valuedouble;
    s->row_bytes = (size_t)s->d * dtype_size(s->dtype);
    int rc = hook_files(s, h, 1);
    const cJSON *other;
    cJSON_ArrayForEach(other, cJSON_GetObjectItemCaseSensitive(root, "hooks"))
        if (!rc && other != h) rc = hook_files(s, other, 0);
    if (rc) return rc;

    /* shard lookup by division when all shards but the last are equally full */
    s->uniform = s->nshards ? s->shards[0].rows : 0;
    for (int i = 0; i < s->nshards && s->uniform; i++)
        if (i + 1 < s->nshards ? s->shards[i].rows != s->uniform : s->shards[i].rows > s->uniform)
            s->uniform = 0;

    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    char *tp = lp_path_join(s->dir, cJSON_GetObjectItemCaseSensitive(tk, "file")->valuestring);
    if (!tp) return LP_ERR_NOMEM;
    if ((uint64_t)s->count > SIZE_MAX / TOKEN_ROW_BYTES)
        rc = lp_fail(LP_ERR_FORMAT, "%s: token file size overflows", tp);
    else {
        s->tok_len = (size_t)s->count * TOKEN_ROW_BYTES;
        rc = open_exact(tp, s->tok_len, "token file", &s->tok);
    }
    free(tp);
    return rc;
}

int lp_store_open(lp_store **out, const char *dir, const char *hook) {
    if (!out) return lp_fail(LP_ERR_ARG, "lp_store_open: no store pointer");
    *out = NULL;
    if (!dir || !*dir) return lp_fail(LP_ERR_ARG, "lp_store_open: no store directory given");
    struct stat st;
    if (stat(dir, &st) != 0)
        return lp_fail(LP_ERR_IO, "%s: cannot open store directory (%s)", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return lp_fail(LP_ERR_IO, "%s: not a store directory", dir);

    lp_store *s = lp_calloc(1, sizeof *s);
    if (!s) return LP_ERR_NOMEM;
    char *mp = NULL;
    cJSON *root = NULL;
    int rc = LP_OK;
    s->dir = lp_strdup(dir);
    mp = lp_path_join(dir, MANIFEST_FILE);
    if (!s->dir || !mp) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    if (!lp_file_exists(mp)) {
        rc = lp_fail(LP_ERR_IO, "%s: missing (not a complete activation store)", mp);
        goto done;
    }
    size_t len;
    if ((rc = lp_read_file(mp, &s->text, &len))) goto done;
    if (strlen(s->text) != len) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: contains a NUL byte", mp);
        goto done;
    }
    const char *end = NULL;
    root = cJSON_ParseWithOpts(s->text, &end, 1);
    if (!root) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: invalid JSON near byte %ld", mp,
                     end ? (long)(end - s->text) : 0L);
        goto done;
    }
    const cJSON *h = NULL;
    if ((rc = parse_manifest(s, root, mp, hook, &h))) goto done;
    rc = map_files(s, root, h);
done:
    cJSON_Delete(root);
    free(mp);
    if (rc) {
        store_free(s);
        return rc;
    }
    *out = s;
    return LP_OK;
}

void lp_store_close_reader(lp_store *s) { store_free(s); }

int64_t lp_store_count(const lp_store *s) { return s ? s->count : 0; }
int lp_store_dim(const lp_store *s) { return s ? s->d : 0; }
const char *lp_store_hook(const lp_store *s) { return s ? s->hook : ""; }
const char *lp_store_model(const lp_store *s) { return s ? s->model : ""; }
const char *lp_store_data(const lp_store *s) { return s ? s->data : ""; }
int64_t lp_store_data_tokens(const lp_store *s) { return s ? s->data_tokens : 0; }
const char *lp_store_manifest_text(const lp_store *s) { return s ? s->text : ""; }

static int check_range(const lp_store *s, int64_t start, int64_t n, const void *out) {
    if (!s) return lp_fail(LP_ERR_ARG, "lp_store: no store");
    if (n < 0 || start < 0 || start > s->count || n > s->count - start)
        return lp_fail(LP_ERR_ARG, "%s: %" PRId64 " rows from row %" PRId64
                                   " out of range (hook '%s' has %" PRId64 " rows)",
                       s->dir, n, start, s->hook, s->count);
    if (n > 0 && !out) return lp_fail(LP_ERR_ARG, "%s: no output buffer", s->dir);
    return LP_OK;
}

/* Index of the shard holding `row` (0 <= row < count). */
static int find_shard(const lp_store *s, int64_t row) {
    if (s->uniform) return (int)(row / s->uniform);
    int lo = 0, hi = s->nshards; /* last shard with start <= row */
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (s->shards[mid].start <= row) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Convert n contiguous rows starting at src into float32. */
static void copy_rows(const lp_store *s, const unsigned char *src, size_t n, float *out) {
    size_t m = n * (size_t)s->d;
    if (s->dtype == LP_STORE_F32) {
        memcpy(out, src, m * sizeof(float));
    } else {
        const uint16_t *h = (const uint16_t *)(const void *)src; /* rows are 2-byte aligned */
        size_t i = 0;
        for (; i + 8 <= m; i += 8) /* fixed-size blocks: the compiler vectorizes these */
            for (size_t k = 0; k < 8; k++) out[i + k] = bf16_to_f32(h[i + k]);
        for (; i < m; i++) out[i] = bf16_to_f32(h[i]);
    }
}

int lp_store_read(const lp_store *s, int64_t start, int64_t n, float *out) {
    int rc = check_range(s, start, n, out);
    if (rc) return rc;
    while (n > 0) {
        const rshard *r = &s->shards[find_shard(s, start)];
        int64_t off = start - r->start, k = r->rows - off;
        if (k > n) k = n;
        copy_rows(s, r->map + (size_t)off * s->row_bytes, (size_t)k, out);
        out += (size_t)k * (size_t)s->d;
        start += k;
        n -= k;
    }
    return LP_OK;
}

int lp_store_gather(const lp_store *s, const int64_t *idx, int64_t n, float *out) {
    int rc = check_range(s, 0, 0, out);
    if (rc) return rc;
    if (n < 0 || (n > 0 && !idx))
        return lp_fail(LP_ERR_ARG, "%s: bad gather of %" PRId64 " rows", s->dir, n);
    if (n > 0 && !out) return lp_fail(LP_ERR_ARG, "%s: no output buffer", s->dir);
    const size_t d = (size_t)s->d;
    /* Random rows are memory-latency bound: prefetch the head of a row a few
     * iterations before copying it. */
    const int64_t ahead = 8;
    const size_t pf_bytes = s->row_bytes < 512 ? s->row_bytes : 512;
    for (int64_t i = 0; i < n; i++) {
#if defined(__GNUC__)
        if (i + ahead < n) {
            int64_t pr = idx[i + ahead];
            if (pr >= 0 && pr < s->count) {
                const rshard *q = &s->shards[find_shard(s, pr)];
                const unsigned char *p = q->map + (size_t)(pr - q->start) * s->row_bytes;
                for (size_t b = 0; b < pf_bytes; b += 64) __builtin_prefetch(p + b, 0, 0);
            }
        }
#endif
        int64_t row = idx[i];
        if (row < 0 || row >= s->count)
            return lp_fail(LP_ERR_ARG, "%s: gather index %" PRId64 " (at %" PRId64
                                       ") out of range (hook '%s' has %" PRId64 " rows)",
                           s->dir, row, i, s->hook, s->count);
        const rshard *r = &s->shards[find_shard(s, row)];
        const unsigned char *src = r->map + (size_t)(row - r->start) * s->row_bytes;
        if (s->dtype == LP_STORE_F32) memcpy(out + (size_t)i * d, src, s->row_bytes);
        else copy_rows(s, src, 1, out + (size_t)i * d);
    }
    return LP_OK;
}

int lp_store_tokens(const lp_store *s, int64_t start, int64_t n, int32_t *tok, int32_t *doc,
                    int32_t *pos) {
    int rc = check_range(s, start, n, "");
    if (rc) return rc;
    const unsigned char *p = s->tok + (size_t)start * TOKEN_ROW_BYTES;
    for (int64_t i = 0; i < n; i++, p += TOKEN_ROW_BYTES) {
        if (tok) memcpy(&tok[i], p, 4);
        if (doc) memcpy(&doc[i], p + 4, 4);
        if (pos) memcpy(&pos[i], p + 8, 4);
    }
    return LP_OK;
}

const char *lp_store_dir(const lp_store *s) { return s ? s->dir : ""; }

int64_t lp_store_meta_int(const lp_store *s, const char *key, int64_t def) {
    cJSON *j = s ? cJSON_Parse(s->text) : NULL;
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, key) : NULL;
    int64_t out = def;
    if (cJSON_IsNumber(v)) out = (int64_t)v->valuedouble;
    cJSON_Delete(j);
    return out;
}

int lp_store_hook_names(const lp_store *s, char *buf, size_t n) {
    cJSON *j = s ? cJSON_Parse(s->text) : NULL;
    const cJSON *hooks = j ? cJSON_GetObjectItemCaseSensitive(j, "hooks") : NULL;
    if (!cJSON_IsArray(hooks)) {
        cJSON_Delete(j);
        return lp_fail(LP_ERR_FORMAT, "store: manifest has no hooks");
    }
    hook_list(hooks, buf, n);
    cJSON_Delete(j);
    return LP_OK;
}
