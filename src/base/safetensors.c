/* safetensors.c — the safetensors format: dtype table, f16/bf16 scalar
 * conversions, a strict validating reader (mmap, fallback read) and a
 * writer that emits a sorted, 8-byte-padded header and packed data through
 * an atomic temp-file write. See include/loupe/safetensors.h. */
#include "loupe/safetensors.h"

#include "loupe/base.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ======================================================================== */
/* dtypes                                                                   */
/* ======================================================================== */

static const struct {
    const char *name;
    size_t size;
} g_dt[LP_DT_COUNT] = {
    [LP_DT_BOOL] = {"BOOL", 1},       [LP_DT_U8] = {"U8", 1},
    [LP_DT_I8] = {"I8", 1},           [LP_DT_U16] = {"U16", 2},
    [LP_DT_I16] = {"I16", 2},         [LP_DT_F16] = {"F16", 2},
    [LP_DT_BF16] = {"BF16", 2},       [LP_DT_U32] = {"U32", 4},
    [LP_DT_I32] = {"I32", 4},         [LP_DT_F32] = {"F32", 4},
    [LP_DT_U64] = {"U64", 8},         [LP_DT_I64] = {"I64", 8},
    [LP_DT_F64] = {"F64", 8},         [LP_DT_F8_E4M3] = {"F8_E4M3", 1},
    [LP_DT_F8_E5M2] = {"F8_E5M2", 1},
};

static int dt_valid(lp_dtype dt) { return (int)dt >= 0 && (int)dt < LP_DT_COUNT; }

size_t lp_dtype_size(lp_dtype dt) { return dt_valid(dt) ? g_dt[dt].size : 0; }

const char *lp_dtype_name(lp_dtype dt) { return dt_valid(dt) ? g_dt[dt].name : "?"; }

int lp_dtype_parse(const char *s, lp_dtype *out) {
    if (!s) return lp_fail(LP_ERR_ARG, "dtype: missing name");
    for (int i = 0; i < LP_DT_COUNT; i++) {
        if (strcmp(s, g_dt[i].name) == 0) {
            if (out) *out = (lp_dtype)i;
            return LP_OK;
        }
    }
    return lp_fail(LP_ERR_ARG, "unknown dtype '%s'", s);
}

/* ======================================================================== */
/* scalar conversions                                                       */
/* ======================================================================== */

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float lp_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t lp_f32_to_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(x >> 16);
}

float lp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return u2f(sign);
        e = 113; /* subnormal: normalise the mantissa */
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        return u2f(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    if (e == 31) return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t lp_f32_to_f16(float f) {
    uint32_t x = f2u(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu)); /* NaN */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (x >= 0x38800000u) {                                  /* >= 2^-14: normal */
        uint32_t r = x - 0x38000000u;                        /* rebias 127 -> 15 */
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (x < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
    /* subnormal result: mantissa = round(value * 2^24) */
    uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 .. 24 */
    uint32_t res = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (res & 1u))) res++;
    return (uint16_t)(sign | res);
}

/* ======================================================================== */
/* small helpers                                                            */
/* ======================================================================== */

static uint16_t ld16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t ld32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t ld64(const unsigned char *p) {
    return (uint64_t)ld32(p) | ((uint64_t)ld32(p + 4) << 32);
}

static int host_is_le(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Returns 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF); otherwise 0 with *bad = offset of the bad byte. */
static int utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            if (bad) *bad = i;
            return 0;
        }
        if (n - i <= need) {
            if (bad) *bad = i;
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            unsigned d = s[i + k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
            if (d < l || d > h) {
                if (bad) *bad = i;
                return 0;
            }
        }
        i += need + 1;
    }
    return 1;
}

/* "[2, 3, 4]" into buf. */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ======================================================================== */
/* reader                                                                   */
/* ======================================================================== */

#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger integers are not exact in JSON/cJSON */

/* A non-negative integer JSON number. 0 ok; 1 not a number; 2 negative;
 * 3 not an integer; 4 too large. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 1;
    double d = v->valuedouble;
    if (d < 0) return 2;
    if (d != floor(d)) return 3;
    if (!(d <= MAX_JSON_INT)) return 4;
    *out = (uint64_t)d;
    return 0;
}

static const char *json_uint_why(int r) {
    switch (r) {
    case 1: return "is not a number";
    case 2: return "is negative";
    case 3: return "is not an integer";
    default: return "is too large";
    }
}

/* Parse one tensor entry; begin/end are the relative data offsets. */
static int parse_entry(const char *path, const char *name, const cJSON *e, size_t data_size,
                       size_t base, lp_st_tensor *t, uint64_t *begin, uint64_t *end) {
    if (!cJSON_IsObject(e))
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    const cJSON *jd = NULL, *js = NULL, *jo = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = NULL;
        if (strcmp(c->string, "dtype") == 0) slot = &jd;
        else if (strcmp(c->string, "shape") == 0) slot = &js;
        else if (strcmp(c->string, "data_offsets") == 0) slot = &jo;
        else
            return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': unexpected key \"%s\"", path, name,
                           c->string);
        if (*slot)
            return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': duplicate key \"%s\"", path, name,
                           c->string);
        *slot = c;
    }
    if (!jd) return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!js) return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!jo)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path, name);

    /* dtype */
    if (!cJSON_IsString(jd))
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    if (lp_dtype_parse(jd->valuestring, &t->dtype) != LP_OK)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, name,
                       jd->valuestring);

    /* shape */
    if (!cJSON_IsArray(js))
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > LP_ST_MAX_DIMS)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': shape has %d dimensions (at most %d)",
                       path, name, nd, LP_ST_MAX_DIMS);
    t->ndim = nd;
    int64_t numel = 1;
    int i = 0;
    for (const cJSON *c = js->child; c; c = c->next, i++) {
        uint64_t d;
        int r = json_uint(c, &d);
        if (r)
            return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': shape[%d] %s", path, name, i,
                           json_uint_why(r));
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > INT64_MAX / (int64_t)d)
            return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': shape product overflows", path,
                           name);
        numel *= (int64_t)d;
    }
    t->numel = numel;
    if ((uint64_t)numel > SIZE_MAX || lp_mul_overflow((size_t)numel, lp_dtype_size(t->dtype),
                                                      &t->nbytes))
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': byte size overflows", path, name);

    /* data_offsets */
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not an array of 2",
                       path, name);
    int rb = json_uint(jo->child, begin), re = json_uint(jo->child->next, end);
    if (rb || re)
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s': data_offsets[%d] %s", path, name,
                       rb ? 0 : 1, json_uint_why(rb ? rb : re));
    if (*end < *begin)
        return lp_fail(LP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                       path, name, *begin, *end);
    char sb[256];
    if (*end - *begin != (uint64_t)t->nbytes)
        return lp_fail(LP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                       " bytes but %s %s needs %zu",
                       path, name, *begin, *end, *end - *begin, lp_dtype_name(t->dtype),
                       fmt_shape(sb, sizeof sb, t->ndim, t->shape), t->nbytes);
    if (*end > (uint64_t)data_size)
        return lp_fail(LP_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] lie outside the %zu-byte data buffer",
                       path, name, *begin, *end, data_size);
    t->offset = base + (size_t)*begin;
    return LP_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const lp_st_tensor *)a)->name, ((const lp_st_tensor *)b)->name);
}

typedef struct {
    size_t begin, end;
    int i;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i - y->i;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_metadata(const char *path, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return lp_fail(LP_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", path);
    int k = 0;
    for (const cJSON *c = m->child; c; c = c->next, k++)
        if (!cJSON_IsString(c))
            return lp_fail(LP_ERR_FORMAT, "%s: \"__metadata__\" value for \"%s\" is not a string",
                           path, c->string);
    /* duplicate keys: sort the key pointers and compare neighbours */
    const char **keys = lp_calloc(k ? (size_t)k : 1, sizeof *keys);
    if (!keys) return lp_fail_prefix(LP_ERR_NOMEM, path);
    k = 0;
    for (const cJSON *c = m->child; c; c = c->next) keys[k++] = c->string;
    qsort(keys, (size_t)k, sizeof *keys, cmp_str_ptr);
    int rc = LP_OK;
    for (int i = 1; i < k && rc == LP_OK; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = lp_fail(LP_ERR_FORMAT, "%s: \"__metadata__\" has duplicate key \"%s\"", path,
                         keys[i]);
    free(keys);
    return rc;
}

/* Validate the header and fill st->t / st->metadata. */
static int parse_header(lp_safetensors *st) {
    const char *path = st->path;
    uint64_t hn = ld64(st->data);
    if (hn > LP_ST_MAX_HEADER)
        return lp_fail(LP_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the 100 MB limit",
                       path, hn);
    if (hn > (uint64_t)(st->size - 8))
        return lp_fail(LP_ERR_FORMAT,
                       "%s: header length %" PRIu64 " exceeds the %zu bytes after the length field",
                       path, hn, st->size - 8);
    size_t n = (size_t)hn, base = 8 + n, data_size = st->size - base;
    const char *h = (const char *)st->data + 8;
    if (n == 0 || h[0] != '{')
        return lp_fail(LP_ERR_FORMAT, "%s: header is not a JSON object (must start with '{')",
                       path);
    size_t bad;
    if (memchr(h, 0, n))
        return lp_fail(LP_ERR_FORMAT, "%s: header contains a NUL byte", path);
    if (!utf8_valid((const unsigned char *)h, n, &bad))
        return lp_fail(LP_ERR_FORMAT, "%s: header is not valid UTF-8 (at byte %zu)", path, bad);

    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, n, &endp, 0);
    if (!root) {
        size_t at = endp && endp >= h && endp <= h + n ? (size_t)(endp - h) : 0;
        return lp_fail(LP_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)", path, at);
    }
    int rc = LP_OK;
    for (const char *q = endp; q < h + n; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            rc = lp_fail(LP_ERR_FORMAT, "%s: header has trailing characters after the JSON (at byte %zu)",
                         path, (size_t)(q - h));
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto out;
    }

    int count = 0;
    cJSON *meta = NULL;
    for (cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (meta) {
                rc = lp_fail(LP_ERR_FORMAT, "%s: duplicate \"__metadata__\"", path);
                goto out;
            }
            meta = c;
            if ((rc = check_metadata(path, c))) goto out;
        } else {
            count++;
        }
    }
    st->t = lp_calloc(count ? (size_t)count : 1, sizeof *st->t);
    if (!st->t) {
        rc = lp_fail_prefix(LP_ERR_NOMEM, path);
        goto out;
    }
    span *sp = lp_calloc(count ? (size_t)count : 1, sizeof *sp);
    if (!sp) {
        rc = lp_fail_prefix(LP_ERR_NOMEM, path);
        goto out;
    }
    for (cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        lp_st_tensor *t = &st->t[st->n];
        uint64_t b = 0, e = 0;
        t->name = lp_strdup(c->string);
        if (!t->name) {
            rc = lp_fail_prefix(LP_ERR_NOMEM, path);
            break;
        }
        st->n++;
        if ((rc = parse_entry(path, c->string, c, data_size, base, t, &b, &e))) break;
    }
    if (rc == LP_OK) {
        qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_tensor_name);
        for (int i = 1; i < st->n; i++) {
            if (strcmp(st->t[i - 1].name, st->t[i].name) == 0) {
                rc = lp_fail(LP_ERR_FORMAT, "%s: duplicate tensor name '%s'", path, st->t[i].name);
                break;
            }
        }
    }
    if (rc == LP_OK) {
        /* the tensors must tile the data buffer exactly */
        for (int i = 0; i < st->n; i++) {
            sp[i].begin = st->t[i].offset - base;
            sp[i].end = sp[i].begin + st->t[i].nbytes;
            sp[i].i = i;
        }
        qsort(sp, (size_t)st->n, sizeof *sp, cmp_span);
        size_t pos = 0;
        int prev = -1;
        for (int k = 0; k < st->n && rc == LP_OK; k++) {
            const char *nm = st->t[sp[k].i].name;
            if (sp[k].begin < pos)
                rc = lp_fail(LP_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data buffer",
                             path, st->t[prev].name, nm);
            else if (sp[k].begin > pos)
                rc = lp_fail(LP_ERR_FORMAT,
                             "%s: %zu-byte gap in the data buffer before tensor '%s' (offset %zu)",
                             path, sp[k].begin - pos, nm, sp[k].begin);
            pos = sp[k].end;
            prev = sp[k].i;
        }
        if (rc == LP_OK && pos != data_size)
            rc = lp_fail(LP_ERR_FORMAT,
                         "%s: %zu trailing bytes after the last tensor (file is %zu bytes, "
                         "expected 8 + %zu header + %zu data)",
                         path, data_size - pos, st->size, n, pos);
    }
    free(sp);
    if (rc == LP_OK && meta) st->metadata = cJSON_DetachItemViaPointer(root, meta);
out:
    cJSON_Delete(root);
    return rc;
}

static int load_file(lp_safetensors *st, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lp_fail(LP_ERR_IO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lp_fail(LP_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return lp_fail(LP_ERR_FORMAT,
                       "%s: file is %lld bytes, shorter than the 8-byte header length field", path,
                       (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return lp_fail(LP_ERR_IO, "%s: file too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m != MAP_FAILED) {
        st->data = m;
        st->mapped = 1;
    } else {
        unsigned char *b = lp_malloc(size);
        if (!b) {
            close(fd);
            return lp_fail_prefix(LP_ERR_NOMEM, path);
        }
        size_t got = 0;
        while (got < size) {
            ssize_t r = pread(fd, b + got, size - got, (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                int e = errno;
                free(b);
                close(fd);
                return lp_fail(LP_ERR_IO, "%s: read failed (%s)", path,
                               r < 0 ? strerror(e) : "file shrank");
            }
            got += (size_t)r;
        }
        st->data = b;
        st->mapped = 0;
    }
    st->size = size;
    close(fd);
    return LP_OK;
}

int lp_st_open(lp_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    if (!path) return lp_fail(LP_ERR_ARG, "lp_st_open: no path");
    int rc = load_file(st, path);
    if (rc == LP_OK) {
        st->path = lp_strdup(path);
        if (!st->path) rc = lp_fail_prefix(LP_ERR_NOMEM, path);
    }
    if (rc == LP_OK) rc = parse_header(st);
    if (rc != LP_OK) lp_st_close(st);
    return rc;
}

void lp_st_close(lp_safetensors *st) {
    if (!st) return;
    if (st->data) {
        if (st->mapped) munmap(st->data, st->size);
        else free(st->data);
    }
    for (int i = 0; i < st->n; i++) free(st->t[i].name);
    free(st->t);
    free(st->path);
    cJSON_Delete(st->metadata);
    memset(st, 0, sizeof *st);
}

static int find_cmp(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const lp_st_tensor *)elem)->name);
}

const lp_st_tensor *lp_st_find(const lp_safetensors *st, const char *name) {
    if (!st || !name || !st->t || st->n <= 0) return NULL;
    return bsearch(name, st->t, (size_t)st->n, sizeof *st->t, find_cmp);
}

const char *lp_st_meta(const lp_safetensors *st, const char *key) {
    if (!st || !key || !st->metadata) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const void *lp_st_raw(const lp_safetensors *st, const lp_st_tensor *t) {
    if (!st || !t || !st->data) return NULL;
    return st->data + t->offset;
}

int lp_st_read_f32(const lp_safetensors *st, const lp_st_tensor *t, float *out) {
    if (!st || !t || !st->data) return lp_fail(LP_ERR_ARG, "lp_st_read_f32: no tensor");
    const char *path = st->path ? st->path : "?";
    if (t->offset > st->size || t->nbytes > st->size - t->offset || t->numel < 0 ||
        (size_t)t->numel * lp_dtype_size(t->dtype) != t->nbytes)
        return lp_fail(LP_ERR_ARG, "%s: tensor '%s' does not belong to this file", path,
                       t->name ? t->name : "?");
    if (t->numel > 0 && !out) return lp_fail(LP_ERR_ARG, "%s: tensor '%s': no output buffer", path, t->name);
    const unsigned char *p = st->data + t->offset;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case LP_DT_BOOL:
        for (size_t i = 0; i < n; i++) out[i] = p[i] ? 1.0f : 0.0f;
        break;
    case LP_DT_U8:
        for (size_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    case LP_DT_I8:
        for (size_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case LP_DT_U16:
        for (size_t i = 0; i < n; i++) out[i] = (float)ld16(p + 2 * i);
        break;
    case LP_DT_I16:
        for (size_t i = 0; i < n; i++) out[i] = (float)(int16_t)ld16(p + 2 * i);
        break;
    case LP_DT_F16:
        for (size_t i = 0; i < n; i++) out[i] = lp_f16_to_f32(ld16(p + 2 * i));
        break;
    case LP_DT_BF16:
        for (size_t i = 0; i < n; i++) out[i] = lp_bf16_to_f32(ld16(p + 2 * i));
        break;
    case LP_DT_U32:
        for (size_t i = 0; i < n; i++) out[i] = (float)ld32(p + 4 * i);
        break;
    case LP_DT_I32:
        for (size_t i = 0; i < n; i++) out[i] = (float)(int32_t)ld32(p + 4 * i);
        break;
    case LP_DT_F32:
        if (host_is_le()) {
            if (n) memcpy(out, p, n * 4);
        } else {
            for (size_t i = 0; i < n; i++) out[i] = u2f(ld32(p + 4 * i));
        }
        break;
    case LP_DT_U64:
        for (size_t i = 0; i < n; i++) out[i] = (float)ld64(p + 8 * i);
        break;
    case LP_DT_I64:
        for (size_t i = 0; i < n; i++) out[i] = (float)(int64_t)ld64(p + 8 * i);
        break;
    case LP_DT_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = ld64(p + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
        }
        break;
    default:
        return lp_fail(LP_ERR_ARG, "%s: tensor '%s' has dtype %s, which is readable as raw bytes only",
                       path, t->name, lp_dtype_name(t->dtype));
    }
    return LP_OK;
}

int lp_st_expect(const lp_safetensors *st, const char *name, int ndim, const int64_t *shape,
                 const lp_st_tensor **out) {
    const char *path = st && st->path ? st->path : "?";
    if (out) *out = NULL;
    if (!name || ndim < 0 || ndim > LP_ST_MAX_DIMS || (ndim > 0 && !shape))
        return lp_fail(LP_ERR_ARG, "%s: lp_st_expect: bad arguments for tensor '%s'", path,
                       name ? name : "?");
    const lp_st_tensor *t = lp_st_find(st, name);
    if (!t) return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s' not found", path, name);
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (shape[i] != -1 && shape[i] != t->shape[i]) ok = 0;
    if (!ok) {
        char a[256], b[256];
        return lp_fail(LP_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", path, name,
                       fmt_shape(a, sizeof a, t->ndim, t->shape),
                       fmt_shape(b, sizeof b, ndim, shape));
    }
    if (out) *out = t;
    return LP_OK;
}

/* ======================================================================== */
/* writer                                                                   */
/* ======================================================================== */

typedef struct {
    char *name;
    lp_dtype dt;
    int ndim;
    int64_t shape[LP_ST_MAX_DIMS];
    size_t numel, nbytes;
    const void *data; /* referenced, host byte order */
    int from_f32;     /* data is float, convert to dt while writing */
} wentry;

typedef struct {
    char *key, *value;
} wmeta;

struct lp_st_writer {
    wentry *e;
    int n, cap;
    wmeta *m;
    int nm, capm;
};

lp_st_writer *lp_st_writer_new(void) { return lp_calloc(1, sizeof(lp_st_writer)); }

void lp_st_writer_free(lp_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].value);
    }
    free(w->e);
    free(w->m);
    free(w);
}

static int writer_add(lp_st_writer *w, const char *name, lp_dtype dt, int ndim,
                      const int64_t *shape, const void *data, int from_f32) {
    if (!w) return lp_fail(LP_ERR_ARG, "safetensors writer: no writer");
    if (!name) return lp_fail(LP_ERR_ARG, "safetensors writer: tensor with no name");
    if (!utf8_valid((const unsigned char *)name, strlen(name), NULL))
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor name is not valid UTF-8");
    if (strcmp(name, "__metadata__") == 0)
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor name '__metadata__' is reserved");
    if (!dt_valid(dt))
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': invalid dtype %d", name,
                       (int)dt);
    if (ndim < 0 || ndim > LP_ST_MAX_DIMS || (ndim > 0 && !shape))
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': ndim %d outside 0..%d", name,
                       ndim, LP_ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0)
            return lp_fail(LP_ERR_ARG, "safetensors writer: duplicate tensor name '%s'", name);
    wentry e;
    memset(&e, 0, sizeof e);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': shape[%d] is negative",
                           name, i);
        if ((double)shape[i] > MAX_JSON_INT || lp_mul_overflow(numel, (size_t)shape[i], &numel))
            return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': shape too large", name);
        e.shape[i] = shape[i];
    }
    if (lp_mul_overflow(numel, lp_dtype_size(dt), &e.nbytes) || numel > (size_t)INT64_MAX ||
        (double)e.nbytes > MAX_JSON_INT)
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': byte size overflows", name);
    if (!data && e.nbytes)
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': no data", name);
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 16;
        wentry *ne = realloc(w->e, (size_t)nc * sizeof *ne);
        if (!ne) return lp_fail(LP_ERR_NOMEM, "safetensors writer: out of memory");
        w->e = ne;
        w->cap = nc;
    }
    e.name = lp_strdup(name);
    if (!e.name) return LP_ERR_NOMEM;
    e.dt = dt;
    e.ndim = ndim;
    e.numel = numel;
    e.data = data;
    e.from_f32 = from_f32;
    w->e[w->n++] = e;
    return LP_OK;
}

int lp_st_writer_add(lp_st_writer *w, const char *name, lp_dtype dt, int ndim,
                     const int64_t *shape, const void *data) {
    return writer_add(w, name, dt, ndim, shape, data, 0);
}

int lp_st_writer_add_f32_as(lp_st_writer *w, const char *name, lp_dtype dt, int ndim,
                            const int64_t *shape, const float *data) {
    if (dt != LP_DT_F32 && dt != LP_DT_F16 && dt != LP_DT_BF16)
        return lp_fail(LP_ERR_ARG, "safetensors writer: tensor '%s': cannot store float32 as %s",
                       name ? name : "?", lp_dtype_name(dt));
    return writer_add(w, name, dt, ndim, shape, data, 1);
}

int lp_st_writer_meta(lp_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return lp_fail(LP_ERR_ARG, "safetensors writer: metadata needs a key and a value");
    if (!utf8_valid((const unsigned char *)key, strlen(key), NULL) ||
        !utf8_valid((const unsigned char *)value, strlen(value), NULL))
        return lp_fail(LP_ERR_ARG, "safetensors writer: metadata '%s' is not valid UTF-8", key);
    char *v = lp_strdup(value);
    if (!v) return LP_ERR_NOMEM;
    for (int i = 0; i < w->nm; i++) {
        if (strcmp(w->m[i].key, key) == 0) {
            free(w->m[i].value);
            w->m[i].value = v;
            return LP_OK;
        }
    }
    if (w->nm == w->capm) {
        int nc = w->capm ? w->capm * 2 : 8;
        wmeta *nm = realloc(w->m, (size_t)nc * sizeof *nm);
        if (!nm) {
            free(v);
            return lp_fail(LP_ERR_NOMEM, "safetensors writer: out of memory");
        }
        w->m = nm;
        w->capm = nc;
    }
    char *k = lp_strdup(key);
    if (!k) {
        free(v);
        return LP_ERR_NOMEM;
    }
    w->m[w->nm].key = k;
    w->m[w->nm].value = v;
    w->nm++;
    return LP_OK;
}

static int cmp_wentry_ptr(const void *a, const void *b) {
    return strcmp((*(const wentry *const *)a)->name, (*(const wentry *const *)b)->name);
}
static int cmp_wmeta_ptr(const void *a, const void *b) {
    return strcmp((*(const wmeta *const *)a)->key, (*(const wmeta *const *)b)->key);
}

/* Append a JSON array of unsigned integers, formatted exactly (no exponent). */
static int add_uint_array(cJSON *obj, const char *key, const uint64_t *v, int n) {
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    if (!arr) return -1;
    for (int i = 0; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, v[i]);
        cJSON *r = cJSON_CreateRaw(buf);
        if (!r) return -1;
        cJSON_AddItemToArray(arr, r);
    }
    return 0;
}

/* Build the padded header. Returns a malloc'd buffer of *len bytes. */
static char *build_header(wentry **order, int n, wmeta **morder, int nm, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int bad = 0;
    if (nm > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) bad = 1;
        for (int i = 0; i < nm && !bad; i++)
            if (!cJSON_AddStringToObject(meta, morder[i]->key, morder[i]->value)) bad = 1;
    }
    uint64_t off = 0;
    for (int i = 0; i < n && !bad; i++) {
        const wentry *e = order[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        if (!o || !cJSON_AddStringToObject(o, "dtype", lp_dtype_name(e->dt))) {
            bad = 1;
            break;
        }
        uint64_t sh[LP_ST_MAX_DIMS], offs[2] = {off, off + e->nbytes};
        for (int k = 0; k < e->ndim; k++) sh[k] = (uint64_t)e->shape[k];
        if (add_uint_array(o, "shape", sh, e->ndim) || add_uint_array(o, "data_offsets", offs, 2))
            bad = 1;
        off += e->nbytes;
    }
    char *s = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) return NULL;
    size_t l = strlen(s), pl = (l + 7) & ~(size_t)7;
    char *h = malloc(pl ? pl : 1);
    if (h) {
        memcpy(h, s, l);
        memset(h + l, ' ', pl - l);
        *len = pl;
    }
    cJSON_free(s);
    return h;
}

/* Write one tensor's bytes, converting / byte-swapping in chunks as needed. */
static int write_tensor(lp_atomic *a, const wentry *e) {
    size_t es = lp_dtype_size(e->dt);
    int le = host_is_le();
    if (e->nbytes == 0) return LP_OK;
    if (le && (!e->from_f32 || e->dt == LP_DT_F32)) return lp_atomic_write(a, e->data, e->nbytes);
    enum { CH = 4096 };
    unsigned char buf[CH * 8];
    const unsigned char *src = e->data;
    for (size_t i0 = 0; i0 < e->numel; i0 += CH) {
        size_t m = e->numel - i0 < CH ? e->numel - i0 : CH;
        for (size_t i = 0; i < m; i++) {
            unsigned char *d = buf + i * es;
            if (e->from_f32 && e->dt != LP_DT_F32) {
                float f;
                memcpy(&f, src + (i0 + i) * 4, 4);
                uint16_t h = e->dt == LP_DT_BF16 ? lp_f32_to_bf16(f) : lp_f32_to_f16(f);
                d[0] = (unsigned char)(h & 0xff);
                d[1] = (unsigned char)(h >> 8);
            } else { /* big-endian host: reverse each element's bytes */
                const unsigned char *s = src + (i0 + i) * es;
                for (size_t k = 0; k < es; k++) d[k] = s[es - 1 - k];
            }
        }
        int rc = lp_atomic_write(a, buf, m * es);
        if (rc) return rc;
    }
    return LP_OK;
}

int lp_st_writer_write(lp_st_writer *w, const char *path) {
    if (!w || !path) return lp_fail(LP_ERR_ARG, "safetensors writer: no writer or path");
    wentry **order = lp_calloc(w->n ? (size_t)w->n : 1, sizeof *order);
    wmeta **morder = lp_calloc(w->nm ? (size_t)w->nm : 1, sizeof *morder);
    if (!order || !morder) {
        free(order);
        free(morder);
        return lp_fail_prefix(LP_ERR_NOMEM, path);
    }
    uint64_t total = 0;
    for (int i = 0; i < w->n; i++) {
        order[i] = &w->e[i];
        total += w->e[i].nbytes;
        if ((double)total > MAX_JSON_INT) {
            free(order);
            free(morder);
            return lp_fail(LP_ERR_ARG, "%s: total tensor data too large", path);
        }
    }
    for (int i = 0; i < w->nm; i++) morder[i] = &w->m[i];
    qsort(order, (size_t)w->n, sizeof *order, cmp_wentry_ptr);
    qsort(morder, (size_t)w->nm, sizeof *morder, cmp_wmeta_ptr);

    size_t hl = 0;
    char *h = build_header(order, w->n, morder, w->nm, &hl);
    free(morder);
    if (!h) {
        free(order);
        return lp_fail(LP_ERR_NOMEM, "%s: out of memory building the safetensors header", path);
    }
    if ((uint64_t)hl > LP_ST_MAX_HEADER) {
        free(h);
        free(order);
        return lp_fail(LP_ERR_ARG, "%s: safetensors header would exceed 100 MB", path);
    }
    unsigned char lenb[8];
    for (int k = 0; k < 8; k++) lenb[k] = (unsigned char)((uint64_t)hl >> (8 * k));

    lp_atomic a;
    int rc = lp_atomic_open(&a, path);
    if (rc == LP_OK) rc = lp_atomic_write(&a, lenb, 8);
    if (rc == LP_OK) rc = lp_atomic_write(&a, h, hl);
    for (int i = 0; i < w->n && rc == LP_OK; i++) rc = write_tensor(&a, order[i]);
    if (rc == LP_OK) rc = lp_atomic_commit(&a);
    else if (a.f) lp_atomic_abort(&a);
    free(h);
    free(order);
    return rc;
}
