/* progress.c — a one-line progress bar on stderr (rate, ETA, extra fields),
 * redrawn at most ~8 times a second and only when stderr is a terminal
 * (LOUPE_PROGRESS=0 turns it off, =1 forces it on). */
#include "loupe/base.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lp_progress_init(lp_progress *p, double total, const char *unit) {
    memset(p, 0, sizeof *p);
    p->total = total;
    p->unit = unit ? unit : "it";
    p->t0 = lp_now();
    const char *e = getenv("LOUPE_PROGRESS");
    p->enabled = e ? atoi(e) != 0 : isatty(2);
}

static void fmt_time(char *b, size_t n, double s) {
    if (s < 0 || s > 1e7) {
        snprintf(b, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(b, n, "%02d:%02d", t / 60, t % 60);
}

static void draw(lp_progress *p, int final) {
    double el = lp_now() - p->t0;
    double rate = el > 0 ? p->done / el : 0;
    double frac = p->total > 0 ? p->done / p->total : 0;
    if (frac > 1) frac = 1;
    char bar[24];
    int w = 20, fill = (int)(frac * w);
    for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    char eta[32], elapsed[32];
    fmt_time(eta, sizeof eta, rate > 0 ? (p->total - p->done) / rate : -1);
    fmt_time(elapsed, sizeof elapsed, el);
    const char *sfx = "";
    double r = rate;
    if (r >= 1e6) r /= 1e6, sfx = "M";
    else if (r >= 1e3) r /= 1e3, sfx = "k";
    fprintf(stderr, "\r[%s] %5.1f%% %.4g%s %s/s %s<%s %s\033[K%s", bar, 100 * frac, r, sfx, p->unit,
            elapsed, final ? "" : eta, p->extra, final ? "\n" : "");
    fflush(stderr);
}

void lp_progress_update(lp_progress *p, double done, const char *extra) {
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    if (!p->enabled) return;
    double now = lp_now();
    if (now - p->last_draw < 0.125) return;
    p->last_draw = now;
    draw(p, 0);
}

void lp_progress_finish(lp_progress *p) {
    if (p->enabled) draw(p, 1);
}
