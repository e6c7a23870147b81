/* flow_sites.c — loading the per-site SAEs of a model (the layout `loupe
 * train --sites` writes) for flow analysis and multi-layer steering, with
 * the consistency checks: each SAE's recorded hook is its directory's
 * site, one d_in, one model. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loupe/flow.h"
#include "loupe/model.h"
#include "loupe/sae_format.h"

/* The directory of (hook, seed): from DIR/sites.json when it lists one,
 * else DIR/<hook>/seedN if it holds cfg.json, else DIR/<hook> if it does;
 * NULL if none. */
static char *site_dir(const char *dir, const cJSON *index, const char *hook, int seed) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(index, "sites")) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(e, "hook"), *sd = cJSON_GetObjectItemCaseSensitive(e, "seed"),
                    *d = cJSON_GetObjectItemCaseSensitive(e, "dir");
        if (cJSON_IsString(h) && strcmp(h->valuestring, hook) == 0 && cJSON_IsNumber(sd) && sd->valueint == seed &&
            cJSON_IsString(d) && !strstr(d->valuestring, ".."))
            return lp_path_join(dir, d->valuestring);
    }
    char sub[160];
    snprintf(sub, sizeof sub, "%s/seed%d", hook, seed);
    char *a = lp_path_join(dir, sub);
    char *c = a ? lp_path_join(a, "cfg.json") : NULL;
    if (c && lp_file_exists(c)) {
        free(c);
        return a;
    }
    free(a), free(c);
    a = lp_path_join(dir, hook);
    c = a ? lp_path_join(a, "cfg.json") : NULL;
    if (c && lp_file_exists(c)) {
        free(c);
        return a;
    }
    free(a), free(c);
    return NULL;
}

void lp_flow_sites_free(lp_flow_sites *s) {
    for (int p = 0; p < LP_FLOW_NSRC; p++)
        for (int L = 0; L < LP_FLOW_MAX_LAYERS; L++) {
            lp_sae_free(s->sae[p][L]);
            free(s->dir[p][L]);
        }
    memset(s, 0, sizeof *s);
}

int lp_flow_sites_load(lp_flow_sites *s, const char *dir, int seed, int n_layers) {
    memset(s, 0, sizeof *s);
    if (!lp_is_dir(dir)) return lp_fail(LP_ERR_IO, "%s: not a directory of site SAEs", dir);
    if (n_layers < 0 || n_layers > LP_FLOW_MAX_LAYERS) return lp_fail(LP_ERR_ARG, "%s: %d layers out of range", dir, n_layers);
    int maxL = n_layers > 0 ? n_layers : LP_FLOW_MAX_LAYERS, rc = LP_OK, d = 0;
    const char *model = NULL;
    cJSON *index = NULL;
    char *ipath = lp_path_join(dir, "sites.json"), *itxt = NULL;
    if (ipath && lp_file_exists(ipath)) {
        if (lp_read_file(ipath, &itxt, NULL)) {
            free(ipath);
            return lp_fail_prefix(LP_ERR_IO, "sites index");
        }
        index = cJSON_Parse(itxt);
        free(itxt);
        if (!cJSON_IsObject(index)) {
            cJSON_Delete(index);
            rc = lp_fail(LP_ERR_FORMAT, "%s: not a JSON object", ipath);
            free(ipath);
            return rc;
        }
    }
    free(ipath);
    for (int L = 0; L < maxL && !rc; L++) {
        for (int p = 0; p < LP_FLOW_NSRC && !rc; p++) {
            char hook[64];
            lp_hook_name((lp_hook_point){L, lp_flow_src_hook_kind(p)}, hook, sizeof hook);
            char *sd = site_dir(dir, index, hook, seed);
            if (!sd) {
                if (p == LP_FLOW_RES && n_layers > 0)
                    rc = lp_fail(LP_ERR_IO, "%s: no SAE for %s (looked for %s/seed%d/ and %s/)", dir, hook, hook, seed, hook);
                if (p == LP_FLOW_RES) goto end_layers;
                continue;
            }
            s->dir[p][L] = sd;
            lp_sae *sae = NULL;
            if ((rc = lp_sae_load(&sae, sd, 0))) break;
            s->sae[p][L] = sae;
            if (sae->cfg.hook[0] && strcmp(sae->cfg.hook, hook) != 0) {
                rc = lp_fail(LP_ERR_ARG, "%s: SAE was trained at %s but sits in the directory of %s", sd, sae->cfg.hook, hook);
                break;
            }
            if (!d) d = sae->cfg.d_in;
            if (sae->cfg.d_in != d) {
                rc = lp_fail(LP_ERR_ARG, "%s: SAE d_in=%d differs from the other sites' %d", sd, sae->cfg.d_in, d);
                break;
            }
            if (sae->cfg.model[0]) {
                if (!model) model = sae->cfg.model;
                else if (strcmp(model, sae->cfg.model) != 0) {
                    rc = lp_fail(LP_ERR_ARG, "%s: SAE was trained on model %s, the other sites on %s", sd, sae->cfg.model,
                                 model);
                    break;
                }
            }
        }
        if (!rc) s->n_layers = L + 1;
    }
end_layers:
    if (!rc && s->n_layers == 0)
        rc = lp_fail(LP_ERR_IO, "%s: no site SAEs (expected blocks.0.hook_resid_post/seed%d/ as `loupe train --sites` writes)", dir,
                     seed);
    cJSON_Delete(index);
    if (rc) lp_flow_sites_free(s);
    return rc;
}
