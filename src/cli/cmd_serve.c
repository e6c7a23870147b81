/* cmd_serve.c — `loupe serve`: the feature dashboard over HTTP, read-only,
 * on 127.0.0.1 unless --public; prints the URL it listens on. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "loupe/web.h"

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int cmd_serve(int argc, char **argv) {
    const char *dir = NULL, *host = NULL;
    int port = 0, pub = 0, threads = 0, max_conn = 0;
    float exit_after = 0;
    cli_opt opts[] = {
        {"--dir", 's', &dir, NULL, "run directory (with features/NAME from loupe features)"},
        {"--port", 'i', &port, "8080", "TCP port (0: any free port)"},
        {"--host", 's', &host, "127.0.0.1", "address to listen on (non-loopback needs --public)"},
        {"--public", 'b', &pub, NULL, "allow listening on a non-loopback address"},
        {"--threads", 'i', &threads, "2", "server threads"},
        {"--max-conn", 'i', &max_conn, "64", "concurrent connections"},
        {"--exit-after", 'f', &exit_after, "0", "stop after this many seconds (0: run until interrupted)"},
        {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("serve", "--dir RUN [--port P] [--host 127.0.0.1] [--public]", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("serve", "--dir", dir))) return rc;
    if (!lp_host_is_loopback(host) && !pub)
        return cli_errorf("serve", "refusing to listen on non-loopback address %s without --public", host);
    lp_web *w = NULL;
    if (lp_web_open(&w, dir)) return cli_error("serve");
    lp_serve_opts o = {.host = host, .port = port, .public_ok = pub, .threads = threads, .max_conn = max_conn};
    lp_server *s = NULL;
    int bound = 0;
    if (lp_serve_start(&s, w, &o, &bound)) {
        lp_web_free(w);
        return cli_error("serve");
    }
    int v6 = strchr(host, ':') != NULL;
    printf("loupe serve: http://%s%s%s:%d/\n", v6 ? "[" : "", host, v6 ? "]" : "", bound);
    fflush(stdout);
    fprintf(stderr, "serving %d SAE(s) from %s (read-only); Ctrl-C stops\n", lp_web_runs(w), dir);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    double waited = 0;
    while (!g_stop && (exit_after <= 0 || waited < exit_after)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited += 0.1;
    }
    long n = lp_serve_requests(s);
    lp_serve_stop(s);
    lp_web_free(w);
    fprintf(stderr, "serve: stopped after %ld requests\n", n);
    return 0;
}
