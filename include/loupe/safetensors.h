/* loupe/safetensors.h — a strict reader and an atomic writer for the
 * safetensors format (https://github.com/huggingface/safetensors):
 *
 *   [u64 little-endian N][N bytes of UTF-8 JSON header][data buffer]
 *
 * The header maps tensor name -> {"dtype", "shape", "data_offsets":[b, e]}
 * (offsets relative to the data buffer at byte 8+N), plus an optional
 * "__metadata__" object of string -> string.
 *
 * The reader maps the file read-only and validates everything before
 * returning: header size and JSON, every entry's fields and types, dtype
 * names, shapes (no negatives, no overflow), byte counts, and that the
 * tensors tile the data buffer exactly (no overlap, no gap, no trailing
 * bytes). Any failure is one lp_errmsg() line naming the file.
 *
 * The writer collects tensors (by reference, see lp_st_writer_add) and
 * writes them sorted by name, header space-padded to a multiple of 8 bytes,
 * data tightly packed little-endian, via a temp file + fsync + rename. */
#ifndef LOUPE_SAFETENSORS_H
#define LOUPE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes ------------------------------------------------------------ */
typedef enum {
    LP_DT_BOOL,
    LP_DT_U8,
    LP_DT_I8,
    LP_DT_U16,
    LP_DT_I16,
    LP_DT_F16,
    LP_DT_BF16,
    LP_DT_U32,
    LP_DT_I32,
    LP_DT_F32,
    LP_DT_U64,
    LP_DT_I64,
    LP_DT_F64,
    LP_DT_F8_E4M3, /* 1 byte; raw access only */
    LP_DT_F8_E5M2, /* 1 byte; raw access only */
    LP_DT_COUNT
} lp_dtype;

/* Bytes per element (0 for an invalid value). */
size_t lp_dtype_size(lp_dtype dt);
/* The safetensors spelling ("F32", "BF16", ...); "?" for an invalid value. */
const char *lp_dtype_name(lp_dtype dt);
/* Parse an exact, case-sensitive safetensors dtype name; LP_ERR_ARG if unknown. */
int lp_dtype_parse(const char *s, lp_dtype *out);

/* ---- scalar conversions ------------------------------------------------ */
/* float -> bf16/f16 round to nearest, ties to even; overflow gives +-inf,
 * NaN stays a (quiet) NaN of the same sign. f16 subnormals are exact. */
float lp_bf16_to_f32(uint16_t h);
uint16_t lp_f32_to_bf16(float f);
float lp_f16_to_f32(uint16_t h);
uint16_t lp_f32_to_f16(float f);

/* ---- reader ------------------------------------------------------------ */
#define LP_ST_MAX_DIMS 8
#define LP_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* 100 MB, as the reference */

typedef struct {
    char *name;
    lp_dtype dtype;
    int ndim;                       /* 0 for a scalar */
    int64_t shape[LP_ST_MAX_DIMS];  /* unused entries are 0 */
    int64_t numel;                  /* product of shape (1 for a scalar) */
    size_t offset;                  /* absolute byte offset in the file */
    size_t nbytes;                  /* numel * lp_dtype_size(dtype) */
} lp_st_tensor;

typedef struct {
    char *path;
    unsigned char *data; /* the whole file */
    size_t size;         /* file size in bytes */
    int mapped;          /* 1: data is an mmap, 0: a malloc'd copy */
    int n;               /* number of tensors */
    lp_st_tensor *t;     /* sorted by name (strcmp order) */
    cJSON *metadata;     /* the "__metadata__" object, or NULL if absent */
} lp_safetensors;

/* Open and fully validate `path` (mmap read-only; falls back to reading it
 * into memory). On failure *st is left zeroed (safe to lp_st_close). */
int lp_st_open(lp_safetensors *st, const char *path);
/* Release everything; leaves *st zeroed. Safe on a zeroed struct. */
void lp_st_close(lp_safetensors *st);
/* The tensor called `name`, or NULL. Records no error. */
const lp_st_tensor *lp_st_find(const lp_safetensors *st, const char *name);
/* The metadata string for `key`, or NULL. */
const char *lp_st_meta(const lp_safetensors *st, const char *key);
/* Pointer to a tensor's raw little-endian bytes (may be unaligned). */
const void *lp_st_raw(const lp_safetensors *st, const lp_st_tensor *t);
/* Convert a tensor of any numeric dtype (F64/F32/F16/BF16/ints/BOOL) to
 * float32 into out[numel]. Integers convert as (float)value, so ints beyond
 * 2^24 round; BOOL gives 0 or 1. F8 dtypes fail with LP_ERR_ARG. */
int lp_st_read_f32(const lp_safetensors *st, const lp_st_tensor *t, float *out);
/* Check that tensor `name` exists with exactly this shape (an entry of -1
 * in `shape` matches any size). On mismatch the error names the file, the
 * tensor, and the expected vs found shape. `out` may be NULL. */
int lp_st_expect(const lp_safetensors *st, const char *name, int ndim, const int64_t *shape,
                 const lp_st_tensor **out);

/* ---- writer ------------------------------------------------------------ */
typedef struct lp_st_writer lp_st_writer;

/* NULL (with LP_ERR_NOMEM recorded) if out of memory. */
lp_st_writer *lp_st_writer_new(void);
/* Add a tensor whose data is `data` in host byte order. The data is
 * REFERENCED, not copied: it must stay alive and unchanged until the last
 * lp_st_writer_write. `data` may be NULL only when the tensor is empty.
 * Fails (LP_ERR_ARG) on a duplicate or reserved name, invalid UTF-8, a bad
 * dtype, ndim outside 0..8, a negative dimension, or a size overflow. */
int lp_st_writer_add(lp_st_writer *w, const char *name, lp_dtype dt, int ndim,
                     const int64_t *shape, const void *data);
/* Add float32 data to be stored as dt (F32, F16 or BF16), converted with
 * round-to-nearest-even while writing. `data` is referenced, as above. */
int lp_st_writer_add_f32_as(lp_st_writer *w, const char *name, lp_dtype dt, int ndim,
                            const int64_t *shape, const float *data);
/* Set a "__metadata__" entry (both strings copied; a repeated key replaces
 * its value). Keys are written sorted. */
int lp_st_writer_meta(lp_st_writer *w, const char *key, const char *value);
/* Write everything to `path` atomically (temp + fsync + rename). On failure
 * nothing is left at `path` (an existing file there is untouched). The
 * writer stays usable (may be written again). */
int lp_st_writer_write(lp_st_writer *w, const char *path);
void lp_st_writer_free(lp_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
