/* loupe/corpus.h — streaming a text corpus one document at a time.
 * Documents are separated by "<|endoftext|>" when the file uses that marker
 * (decided from its first MiB), otherwise by blank lines. Memory is bounded
 * by the longest document, never by the file. */
#ifndef LOUPE_CORPUS_H
#define LOUPE_CORPUS_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    char *path;
    char *buf;       /* unconsumed bytes */
    size_t len, cap;
    int eof, marker; /* marker: split on <|endoftext|> */
    int64_t offset;  /* file offset of buf[0] */
    int64_t doc_end; /* file offset just past the last returned document */
    int64_t docs;    /* documents returned */
} lp_corpus;

/* Open `path`, starting at byte `skip` (moved forward to the next document
 * boundary when it falls inside one). */
int lp_corpus_open(lp_corpus *c, const char *path, int64_t skip);
/* Next non-empty document (trimmed of surrounding whitespace), as a fresh
 * NUL-terminated string; *doc = NULL at the end. */
int lp_corpus_next(lp_corpus *c, char **doc);
void lp_corpus_close(lp_corpus *c);

#endif
