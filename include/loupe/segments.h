/* loupe/segments.h — per-row segment labels of an activation store: which
 * part of the token stream each stored row came from ("prompt" vs
 * "generated" for `loupe harvest --generate`, or any per-token tags a user
 * supplies). An optional side file pair in the store directory, so stores
 * without it keep working and tags can be added to any existing store:
 *
 *   DIR/segments.json  {"format": "loupe-segments", "version": 1,
 *                       "names": ["prompt", "generated"], "count": N}
 *   DIR/segments.bin   N bytes, byte i = index into names of store row i
 *
 * N must equal the store's row count; every byte must be < len(names)
 * (at most 255 names). A store without the pair reads as one segment
 * called "text". This file belongs to the store stage: no model, no SAE. */
#ifndef LOUPE_SEGMENTS_H
#define LOUPE_SEGMENTS_H

#include <stdint.h>

#include "loupe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LP_SEGMENTS_MAX 255

typedef struct {
    int n_names;  /* >= 1 */
    char **names; /* [n_names] */
    int64_t count;
    uint8_t *seg; /* [count] */
    int present;  /* 0: the store had no segment files (one segment "text") */
} lp_segments;

/* Write DIR/segments.bin and DIR/segments.json atomically (the .bin first,
 * the .json last, so a reader never sees names without labels). */
int lp_segments_write(const char *dir, const uint8_t *seg, int64_t count, int n_names,
                      const char *const *names);
/* Load the pair from DIR, checking count == expect_rows (when >= 0) and
 * every label against the names. When DIR has neither file, *s holds one
 * segment "text" covering every row (expect_rows must then be >= 0). */
int lp_segments_load(lp_segments *s, const char *dir, int64_t expect_rows);
void lp_segments_free(lp_segments *s);
/* Remove both files from DIR (for writers cleaning up after a failure). */
void lp_segments_remove(const char *dir);

#ifdef __cplusplus
}
#endif
#endif
