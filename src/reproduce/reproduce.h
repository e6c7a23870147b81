/* reproduce.h — (internal) the signature of a paper-experiment driver and
 * helpers shared by the drivers. Each driver lives in src/reproduce/NAME.c,
 * may use every stage, prints progress on stderr only, and fills the report. */
#ifndef LOUPE_REPRODUCE_H
#define LOUPE_REPRODUCE_H

#include "loupe/report.h"

typedef struct {
    const char *out;    /* output directory (scratch files may go in OUT/work) */
    int quick;          /* reduced run for tests (< 3 minutes) */
    const char *shared; /* folder with models/ and data/, or NULL for the default */
} lp_reproduce_opts;

typedef int (*lp_reproduce_fn)(const lp_reproduce_opts *o, lp_report *r);

/* Path of a shared file (models/..., data/...) under o->shared or the
 * default locations (see cli_shared_path). Returns a static buffer. */
const char *lp_reproduce_shared(const lp_reproduce_opts *o, const char *rel);

#endif
