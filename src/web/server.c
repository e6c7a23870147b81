/* server.c — the dashboard's HTTP server (libmicrohttpd): GET/HEAD only,
 * bound to loopback unless explicitly made public, every URL checked by
 * lp_web_path_ok before routing (no file is ever opened from a URL: pages
 * come from the loaded run), bounded connections, per-connection timeouts,
 * and responses freed as soon as they are sent, so memory stays bounded. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "web/web_int.h"

int lp_host_is_loopback(const char *host) {
    if (!host) return 0;
    if (!strcmp(host, "localhost") || !strcmp(host, "::1")) return 1;
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
    return 0;
}

#ifdef LP_HAVE_MHD
#include <microhttpd.h>
#include <stdatomic.h>

#if MHD_VERSION < 0x00097002
typedef int mhd_result;
#else
typedef enum MHD_Result mhd_result;
#endif

struct lp_server {
    struct MHD_Daemon *d;
    const lp_web *w;
    atomic_long requests;
};

static mhd_result send_text(struct MHD_Connection *c, unsigned code, const char *msg) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(r, "Allow", "GET, HEAD");
    mhd_result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static mhd_result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    (void)upload;
    lp_server *s = cls;
    const int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    if (*state == NULL) { /* first call: headers only; refuse other methods before any body */
        *state = (void *)1;
        if (get) return MHD_YES;
        atomic_fetch_add(&s->requests, 1);
        return send_text(c, 405, "method not allowed\n");
    }
    if (!get) { /* body data of a refused request: discard */
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&s->requests, 1);
    if (*upload_size != 0) return send_text(c, 400, "no request body accepted\n");
    if (!lp_web_path_ok(url)) return send_text(c, 400, "bad path\n");
    const char *site = url + 1;
    char tmp[600];
    size_t ul = strlen(site);
    if (ul > 0 && site[ul - 1] == '/' && ul + 11 < sizeof tmp) { /* directory URL → its index */
        snprintf(tmp, sizeof tmp, "%sindex.html", site);
        site = tmp;
    }
    char *body = NULL;
    size_t len = 0;
    const char *ct = NULL;
    int rc = lp_web_render(s->w, site, &body, &len, &ct);
    if (rc == LP_ERR_NOMEM) return send_text(c, 503, "out of memory\n");
    if (rc) return send_text(c, 404, "not found\n");
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ct);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
                            "data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    mhd_result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int lp_serve_start(lp_server **out, const lp_web *w, const lp_serve_opts *o, int *port_out) {
    *out = NULL;
    const char *host = o->host && *o->host ? o->host : "127.0.0.1";
    if (!lp_host_is_loopback(host) && !o->public_ok)
        return lp_fail(LP_ERR_ARG, "refusing to listen on non-loopback address %s without --public", host);
    if (o->port < 0 || o->port > 65535) return lp_fail(LP_ERR_ARG, "--port %d outside 0..65535", o->port);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    const char *h = !strcmp(host, "localhost") ? "127.0.0.1" : host;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)o->port);
    } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)o->port);
        flags |= MHD_USE_IPv6;
    } else
        return lp_fail(LP_ERR_ARG, "--host %s: not an IPv4/IPv6 address", host);
    lp_server *s = lp_calloc(1, sizeof *s);
    if (!s) return LP_ERR_NOMEM;
    s->w = w;
    atomic_init(&s->requests, 0);
    int threads = o->threads > 0 ? o->threads : 2;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o->max_conn > 0 ? o->max_conn : 64),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(o->timeout_s > 0 ? o->timeout_s : 10),
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    if (!s->d) {
        free(s);
        return lp_fail(LP_ERR_IO, "cannot listen on %s port %d (in use or not permitted)", host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = di ? di->port : o->port;
    *out = s;
    return LP_OK;
}

long lp_serve_requests(const lp_server *s) { return atomic_load(&((lp_server *)s)->requests); }

void lp_serve_stop(lp_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    free(s);
}

#else

struct lp_server {
    int unused;
};

int lp_serve_start(lp_server **out, const lp_web *w, const lp_serve_opts *o, int *port_out) {
    (void)w;
    (void)o;
    (void)port_out;
    *out = NULL;
    return lp_fail(LP_ERR_ARG, "loupe serve needs libmicrohttpd: apt-get install libmicrohttpd-dev and rebuild "
                               "(or use loupe report --html)");
}
long lp_serve_requests(const lp_server *s) {
    (void)s;
    return 0;
}
void lp_serve_stop(lp_server *s) { (void)s; }

#endif
