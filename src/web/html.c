/* html.c — a growing string for HTML pages and the escaping every page uses
 * (all text from files goes through hb_esc/hb_tok, never raw). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/web_int.h"

static int grow(hbuf *b, size_t add) {
    if (b->oom) return 0;
    if (b->len + add + 1 <= b->cap) return 1;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->len + add + 1) c *= 2;
    char *p = realloc(b->s, c);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->s = p;
    b->cap = c;
    return 1;
}

void hb_putn(hbuf *b, const char *s, size_t n) {
    if (!grow(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void hb_put(hbuf *b, const char *s) { hb_putn(b, s, strlen(s)); }

void hb_printf(hbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        hb_putn(b, tmp, (size_t)n);
        return;
    }
    if (!grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void hb_esc(hbuf *b, const char *s) {
    if (!s) return;
    const char *run = s;
    for (const char *p = s;; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        case 0: break;
        default: continue;
        }
        hb_putn(b, run, (size_t)(p - run));
        if (!*p) break;
        hb_put(b, rep);
        run = p + 1;
    }
}

void hb_tok(hbuf *b, const char *s) {
    if (!s || !*s) {
        hb_put(b, "\xe2\x88\x85"); /* ∅ */
        return;
    }
    const char *run = s;
    for (const char *p = s;; p++) {
        if (*p && *p != '\n' && *p != '\t') continue;
        char tmp[512];
        size_t n = (size_t)(p - run);
        while (n > 0) { /* escape in pieces */
            size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
            memcpy(tmp, run, k);
            tmp[k] = 0;
            hb_esc(b, tmp);
            run += k;
            n -= k;
        }
        if (!*p) break;
        hb_put(b, *p == '\n' ? "\xe2\x86\xb5" : "\xe2\x86\x92"); /* ↵ → */
        run = p + 1;
    }
}

void hb_num(hbuf *b, double v) {
    if (!isfinite(v)) hb_put(b, "-1e300");
    else hb_printf(b, "%.6g", v);
}
