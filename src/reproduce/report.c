/* report.c — markdown + JSON reports of the reproduce commands. The report
 * is kept as a cJSON document; the markdown is rendered from it on write. */
#include "loupe/report.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/base.h"

struct lp_report {
    cJSON *root, *blocks, *numbers, *claims, *table;
    int ncols;
};

lp_report *lp_report_new(const char *name, const char *title) {
    lp_report *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->root = cJSON_CreateObject();
    cJSON_AddStringToObject(r->root, "name", name);
    cJSON_AddStringToObject(r->root, "title", title);
    r->blocks = cJSON_AddArrayToObject(r->root, "blocks");
    r->numbers = cJSON_AddObjectToObject(r->root, "numbers");
    r->claims = cJSON_AddArrayToObject(r->root, "claims");
    return r;
}

void lp_report_free(lp_report *r) {
    if (!r) return;
    cJSON_Delete(r->root);
    free(r);
}

void lp_report_text(lp_report *r, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "text", buf);
    cJSON_AddItemToArray(r->blocks, b);
    r->table = NULL;
}

void lp_report_table(lp_report *r, const char *caption, int ncols, const char *const *header) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "caption", caption ? caption : "");
    cJSON *h = cJSON_AddArrayToObject(b, "header");
    for (int i = 0; i < ncols; i++) cJSON_AddItemToArray(h, cJSON_CreateString(header[i]));
    cJSON_AddArrayToObject(b, "rows");
    cJSON_AddItemToArray(r->blocks, b);
    r->table = b;
    r->ncols = ncols;
}

void lp_report_row(lp_report *r, const char *const *cells) {
    if (!r->table) return;
    cJSON *row = cJSON_CreateArray();
    for (int i = 0; i < r->ncols; i++) cJSON_AddItemToArray(row, cJSON_CreateString(cells[i] ? cells[i] : ""));
    cJSON_AddItemToArray(cJSON_GetObjectItem(r->table, "rows"), row);
}

void lp_report_rowf(lp_report *r, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *cells[64] = {0};
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, "|", &save); t && n < 64; t = strtok_r(NULL, "|", &save)) cells[n++] = t;
    for (; n < r->ncols && n < 64; n++) cells[n] = "";
    lp_report_row(r, cells);
}

void lp_report_number(lp_report *r, const char *key, double v) {
    cJSON_DeleteItemFromObject(r->numbers, key);
    cJSON_AddNumberToObject(r->numbers, key, v);
}

void lp_report_claim(lp_report *r, const char *claim, const char *paper, const char *loupe, int agrees) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "claim", claim);
    cJSON_AddStringToObject(c, "paper", paper);
    cJSON_AddStringToObject(c, "loupe", loupe);
    cJSON_AddBoolToObject(c, "agrees", agrees);
    cJSON_AddItemToArray(r->claims, c);
}

int lp_report_claims(const lp_report *r, int *agree) {
    int n = 0, a = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, r->claims) {
        n++;
        a += cJSON_IsTrue(cJSON_GetObjectItem(c, "agrees"));
    }
    if (agree) *agree = a;
    return n;
}

/* growable string */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->n;
        va_start(ap, fmt);
        int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if (b->s && (size_t)w < room) {
            b->n += (size_t)w;
            return;
        }
        size_t nc = (b->cap + (size_t)w + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) return;
        b->s = ns;
        b->cap = nc;
    }
}

int lp_report_write(lp_report *r, const char *dir) {
    int rc = lp_mkdirs(dir);
    if (rc) return rc;
    sbuf md = {0};
    sb_add(&md, "# %s\n\n", cJSON_GetObjectItem(r->root, "title")->valuestring);
    const cJSON *b;
    cJSON_ArrayForEach(b, r->blocks) {
        const cJSON *t = cJSON_GetObjectItem(b, "text");
        if (t) {
            sb_add(&md, "%s\n\n", t->valuestring);
            continue;
        }
        const char *cap = cJSON_GetObjectItem(b, "caption")->valuestring;
        if (cap[0]) sb_add(&md, "**%s**\n\n", cap);
        const cJSON *h = cJSON_GetObjectItem(b, "header"), *x;
        sb_add(&md, "|");
        cJSON_ArrayForEach(x, h) sb_add(&md, " %s |", x->valuestring);
        sb_add(&md, "\n|");
        cJSON_ArrayForEach(x, h) sb_add(&md, "---|");
        sb_add(&md, "\n");
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(b, "rows")) {
            sb_add(&md, "|");
            cJSON_ArrayForEach(x, row) sb_add(&md, " %s |", x->valuestring);
            sb_add(&md, "\n");
        }
        sb_add(&md, "\n");
    }
    int agree = 0, n = lp_report_claims(r, &agree);
    if (n) {
        sb_add(&md, "## Claims: %d of %d agree\n\n| claim | paper | loupe | agrees |\n|---|---|---|---|\n", agree, n);
        const cJSON *c;
        cJSON_ArrayForEach(c, r->claims)
        sb_add(&md, "| %s | %s | %s | %s |\n", cJSON_GetObjectItem(c, "claim")->valuestring,
               cJSON_GetObjectItem(c, "paper")->valuestring, cJSON_GetObjectItem(c, "loupe")->valuestring,
               cJSON_IsTrue(cJSON_GetObjectItem(c, "agrees")) ? "yes" : "**no**");
        sb_add(&md, "\n");
    }
    char *json = cJSON_Print(r->root);
    char *pm = lp_path_join(dir, "report.md"), *pj = lp_path_join(dir, "report.json");
    if (!json || !pm || !pj || !md.s) rc = lp_fail(LP_ERR_NOMEM, "report: out of memory");
    if (!rc) rc = lp_write_file_atomic(pj, json, strlen(json));
    if (!rc) rc = lp_write_file_atomic(pm, md.s, md.n);
    free(json);
    free(pm);
    free(pj);
    free(md.s);
    return rc;
}
