/* segments.c — the optional per-row segment labels of a store
 * (segments.bin + segments.json, see loupe/segments.h): writing, strict
 * loading, and the one-segment default for stores without them. */
#include "loupe/segments.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEG_BIN "segments.bin"
#define SEG_JSON "segments.json"
#define SEG_FORMAT "loupe-segments"

static int valid_name(const char *s) {
    if (!s || !*s || strlen(s) > 64) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

int lp_segments_write(const char *dir, const uint8_t *seg, int64_t count, int n_names,
                      const char *const *names) {
    if (!dir || (!seg && count > 0) || count < 0)
        return lp_fail(LP_ERR_ARG, "segments: bad arguments");
    if (n_names < 1 || n_names > LP_SEGMENTS_MAX || !names)
        return lp_fail(LP_ERR_ARG, "%s: segments need 1..%d names", dir, LP_SEGMENTS_MAX);
    for (int i = 0; i < n_names; i++) {
        if (!valid_name(names[i]))
            return lp_fail(LP_ERR_ARG, "%s: segment name '%s' must be 1-64 of [A-Za-z0-9_-]", dir,
                           names[i] ? names[i] : "(null)");
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return lp_fail(LP_ERR_ARG, "%s: segment name '%s' given twice", dir, names[i]);
    }
    for (int64_t i = 0; i < count; i++)
        if (seg[i] >= n_names)
            return lp_fail(LP_ERR_ARG, "%s: row %" PRId64 " has segment %d of %d", dir, i, seg[i],
                           n_names);
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = j ? cJSON_AddArrayToObject(j, "names") : NULL;
    if (!arr) {
        cJSON_Delete(j);
        return lp_fail(LP_ERR_NOMEM, "%s: out of memory", dir);
    }
    cJSON_AddStringToObject(j, "format", SEG_FORMAT);
    cJSON_AddNumberToObject(j, "version", 1);
    for (int i = 0; i < n_names; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, count);
    cJSON_AddRawToObject(j, "count", num);
    char *txt = cJSON_Print(j);
    cJSON_Delete(j);
    if (!txt) return lp_fail(LP_ERR_NOMEM, "%s: out of memory", dir);
    char *pb = lp_path_join(dir, SEG_BIN), *pj = lp_path_join(dir, SEG_JSON);
    int rc = (!pb || !pj) ? LP_ERR_NOMEM : lp_write_file_atomic(pb, seg, (size_t)count);
    if (!rc) rc = lp_write_file_atomic(pj, txt, strlen(txt));
    if (rc && pb) remove(pb);
    free(txt);
    free(pb);
    free(pj);
    return rc;
}

void lp_segments_free(lp_segments *s) {
    if (!s) return;
    for (int i = 0; i < s->n_names && s->names; i++) free(s->names[i]);
    free(s->names);
    free(s->seg);
    memset(s, 0, sizeof *s);
}

void lp_segments_remove(const char *dir) {
    char *pb = lp_path_join(dir, SEG_BIN), *pj = lp_path_join(dir, SEG_JSON);
    if (pj) remove(pj);
    if (pb) remove(pb);
    free(pb);
    free(pj);
}

int lp_segments_load(lp_segments *s, const char *dir, int64_t expect_rows) {
    memset(s, 0, sizeof *s);
    char *pb = lp_path_join(dir, SEG_BIN), *pj = lp_path_join(dir, SEG_JSON);
    char *txt = NULL, *bin = NULL;
    size_t blen = 0;
    cJSON *j = NULL;
    int rc = LP_OK;
    if (!pb || !pj) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    int hj = lp_file_exists(pj), hb = lp_file_exists(pb);
    if (!hj && !hb) { /* no labels: one segment */
        if (expect_rows < 0) {
            rc = lp_fail(LP_ERR_ARG, "%s: no segment files and no row count", dir);
            goto done;
        }
        s->n_names = 1;
        s->names = lp_calloc(1, sizeof *s->names);
        s->seg = lp_calloc(expect_rows > 0 ? (size_t)expect_rows : 1, 1);
        if (!s->names || !s->seg || !(s->names[0] = lp_strdup("text"))) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        s->count = expect_rows;
        goto done;
    }
    if (!hj || !hb) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: has %s without %s", dir, hj ? SEG_JSON : SEG_BIN,
                     hj ? SEG_BIN : SEG_JSON);
        goto done;
    }
    if ((rc = lp_read_file(pj, &txt, NULL))) goto done;
    j = cJSON_Parse(txt);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(j, "names");
    const cJSON *cnt = cJSON_GetObjectItemCaseSensitive(j, "count");
    if (!cJSON_IsObject(j) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, SEG_FORMAT) != 0 ||
        !cJSON_IsArray(names) || !cJSON_IsNumber(cnt)) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: not a loupe-segments file (format, names, count)", pj);
        goto done;
    }
    int n = cJSON_GetArraySize(names);
    if (n < 1 || n > LP_SEGMENTS_MAX) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: %d segment names (need 1..%d)", pj, n, LP_SEGMENTS_MAX);
        goto done;
    }
    s->names = lp_calloc((size_t)n, sizeof *s->names);
    if (!s->names) {
        rc = LP_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(names, i);
        if (!cJSON_IsString(e) || !valid_name(e->valuestring)) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: segment name %d is not 1-64 of [A-Za-z0-9_-]", pj, i);
            goto done;
        }
        if (!(s->names[i] = lp_strdup(e->valuestring))) {
            rc = LP_ERR_NOMEM;
            goto done;
        }
        s->n_names = i + 1;
    }
    double c = cnt->valuedouble;
    if (c < 0 || c > 9007199254740992.0 || c != (double)(int64_t)c) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: bad count", pj);
        goto done;
    }
    s->count = (int64_t)c;
    if (expect_rows >= 0 && s->count != expect_rows) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: %" PRId64 " labels for a store of %" PRId64 " rows", pj,
                     s->count, expect_rows);
        goto done;
    }
    if ((rc = lp_read_file(pb, &bin, &blen))) goto done;
    if ((int64_t)blen != s->count) {
        rc = lp_fail(LP_ERR_FORMAT, "%s: %zu bytes, segments.json says %" PRId64, pb, blen, s->count);
        goto done;
    }
    for (size_t i = 0; i < blen; i++)
        if ((unsigned char)bin[i] >= n) {
            rc = lp_fail(LP_ERR_FORMAT, "%s: row %zu has segment %d of %d", pb, i, (unsigned char)bin[i], n);
            goto done;
        }
    s->seg = (uint8_t *)bin;
    bin = NULL;
    s->present = 1;
done:
    if (rc) lp_segments_free(s);
    cJSON_Delete(j);
    free(txt);
    free(bin);
    free(pb);
    free(pj);
    return rc;
}
