/* loupe/web.h — the feature dashboard: pages rendered from a run directory
 * (no model run needed), served read-only by an embedded HTTP server
 * (libmicrohttpd) or written as static files. Plain HTML/CSS/JS, every
 * asset compiled into loupe: nothing is fetched from anywhere else.
 *
 * A run directory RUN holds:
 *   RUN/features/NAME/...          one feature run per SAE (loupe features; see interp.h)
 *   RUN/features/NAME/stability.csv  optional: header row with columns "feature" and
 *                                  "stability" (others ignored), one row per feature
 *   RUN/flow/edges.csv             optional: header row with columns src_sae, src_feature,
 *                                  dst_sae, dst_feature, score (and optionally kind):
 *                                  dst descends from src (e.g. layer L-1 → L); sae names
 *                                  are feature-run NAMEs
 *   RUN/features/NAME/metrics.jsonl  optional: the SAE's training log (training curves)
 *
 * Site paths (the same in the server and the static report; links are
 * relative so both work): index.html, sae/NAME/index.html,
 * sae/NAME/f/ID.html, assets/app.css, assets/app.js. */
#ifndef LOUPE_WEB_H
#define LOUPE_WEB_H

#include <stddef.h>

#include "loupe/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lp_web lp_web;

/* Load every feature run under RUN/features (at least one) plus the
 * optional stability, flow and training-log files. */
int lp_web_open(lp_web **out, const char *run_dir);
void lp_web_free(lp_web *w);
/* Number of feature runs loaded, and the name of run i. */
int lp_web_runs(const lp_web *w);
const char *lp_web_run_name(const lp_web *w, int i);
/* Number of features of run i. */
int lp_web_run_features(const lp_web *w, int i);

/* 1 when a decoded URL path is acceptable: starts with '/', only
 * [A-Za-z0-9._/-], no "..", no "//", no '%' left (double encoding), no
 * backslash, at most 512 bytes. Everything else is refused before routing. */
int lp_web_path_ok(const char *path);

/* Render the page at a site path (no leading '/'; "" means index.html) into a
 * fresh buffer (free with free()). LP_ERR_ARG with a message when there is
 * no such page. */
int lp_web_render(const lp_web *w, const char *site_path, char **body, size_t *len, const char **content_type);

/* Write every page into OUT (created; files written atomically). OUT must
 * be absent, empty, or a previous report (it holds .loupe-report). */
int lp_web_report(const lp_web *w, const char *out_dir, int *n_files);

/* ---- the server -------------------------------------------------------- */
typedef struct {
    const char *host; /* address to bind (default 127.0.0.1) */
    int port;         /* 0: any free port */
    int public_ok;    /* allow a non-loopback address */
    int threads;      /* worker threads (2) */
    int max_conn;     /* concurrent connections (64) */
    int timeout_s;    /* idle connection timeout (10) */
} lp_serve_opts;

typedef struct lp_server lp_server;

/* 1 for 127.0.0.0/8, ::1 and "localhost". */
int lp_host_is_loopback(const char *host);
/* Start serving w (which must outlive the server). *port_out gets the port
 * actually bound. Refuses a non-loopback host unless public_ok. Needs
 * libmicrohttpd at build time (LP_ERR_ARG otherwise). */
int lp_serve_start(lp_server **out, const lp_web *w, const lp_serve_opts *o, int *port_out);
/* Requests answered so far. */
long lp_serve_requests(const lp_server *s);
void lp_serve_stop(lp_server *s);

#ifdef __cplusplus
}
#endif
#endif
