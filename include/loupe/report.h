/* loupe/report.h — the report every `loupe reproduce NAME` writes:
 * DIR/report.md (tables, the paper's claims, loupe's measurements, verdicts)
 * and DIR/report.json with the same numbers, including for each claim
 * {"claim", "paper", "loupe", "agrees"}. Both files are written atomically. */
#ifndef LOUPE_REPORT_H
#define LOUPE_REPORT_H

#include <stdarg.h>

typedef struct lp_report lp_report;

lp_report *lp_report_new(const char *name, const char *title);
void lp_report_free(lp_report *r);
/* A markdown paragraph (printf-style). */
void lp_report_text(lp_report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Start a table with ncols columns (header names given); then add rows of
 * ncols cells (strings). Tables appear in the markdown and the JSON. */
void lp_report_table(lp_report *r, const char *caption, int ncols, const char *const *header);
void lp_report_row(lp_report *r, const char *const *cells);
/* Convenience: a row from printf-formatted cells separated by '|'. */
void lp_report_rowf(lp_report *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A named number in the JSON "numbers" object (not in the markdown). */
void lp_report_number(lp_report *r, const char *key, double v);
/* A claim of the paper against loupe's measurement. */
void lp_report_claim(lp_report *r, const char *claim, const char *paper, const char *loupe, int agrees);
/* Write DIR/report.md and DIR/report.json (DIR created). */
int lp_report_write(lp_report *r, const char *dir);
/* Number of claims, and how many agree. */
int lp_report_claims(const lp_report *r, int *agree);

#endif
