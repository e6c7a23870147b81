/* common.c — helpers shared by the reproduce drivers. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "loupe/base.h"
#include "reproduce/reproduce.h"

const char *lp_reproduce_shared(const lp_reproduce_opts *o, const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) % 4;
    const char *roots[3] = {o ? o->shared : NULL, getenv("LOUPE_SHARED"), "../shared"};
    for (int i = 0; i < 3; i++) {
        if (!roots[i]) continue;
        snprintf(buf[k], sizeof buf[k], "%s/%s", roots[i], rel);
        if (lp_file_exists(buf[k])) return buf[k];
    }
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 2; up++) {
            char *s = strrchr(exe, '/');
            if (s) *s = 0;
        }
        snprintf(buf[k], sizeof buf[k], "%s/../shared/%s", exe, rel);
        if (lp_file_exists(buf[k])) return buf[k];
    }
    const char *home = getenv("HOME");
    snprintf(buf[k], sizeof buf[k], "%s/.cache/loupe/%s", home ? home : ".", rel);
    return buf[k];
}
