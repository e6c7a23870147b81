/* args.c — a small flag parser shared by every command: --flag VALUE or
 * --flag=VALUE, typed destinations, defaults applied first, --help listing
 * every flag with its default. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "loupe/base.h"
#include "reproduce/reproduce.h"

static int set_value(const char *cmd, const cli_opt *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case 's': *(const char **)o->dst = v; return 0;
    case 'b': *(int *)o->dst = v ? (strcmp(v, "0") != 0 && strcmp(v, "false") != 0) : 1; return 0;
    case 'i': {
        long x = strtol(v, &end, 10);
        if (*v == 0 || *end || errno || x < INT_MIN || x > INT_MAX) break;
        *(int *)o->dst = (int)x;
        return 0;
    }
    case 'l': {
        double x = strtod(v, &end); /* accepts 2e6 */
        if (*v == 0 || *end || errno || x < -9e18 || x > 9e18 || x != (double)(int64_t)x) break;
        *(int64_t *)o->dst = (int64_t)x;
        return 0;
    }
    case 'f': {
        float x = strtof(v, &end);
        if (*v == 0 || *end || errno) break;
        *(float *)o->dst = x;
        return 0;
    }
    }
    fprintf(stderr, "loupe %s: invalid value '%s' for %s\n", cmd, v, o->name);
    return 2;
}

static void usage(const char *cmd, const char *synopsis, const cli_opt *opts) {
    printf("usage: loupe %s %s\n\noptions:\n", cmd, synopsis);
    for (const cli_opt *o = opts; o->name; o++) {
        const char *t = o->type == 's' ? " S" : o->type == 'b' ? "" : o->type == 'f' ? " X" : " N";
        char left[64];
        snprintf(left, sizeof left, "%s%s", o->name, t);
        printf("  %-22s %s", left, o->help);
        if (o->def) printf(" (default: %s)", o->def);
        printf("\n");
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

int cli_parse(const char *cmd, const char *synopsis, cli_opt *opts, int argc, char **argv) {
    for (cli_opt *o = opts; o->name; o++) {
        if (o->type == 'b') *(int *)o->dst = 0;
        if (o->def && set_value(cmd, o, o->def)) return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(cmd, synopsis, opts);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        cli_opt *hit = NULL;
        for (cli_opt *o = opts; o->name; o++)
            if (strlen(o->name) == len && strncmp(o->name, a, len) == 0) hit = o;
        if (!hit) {
            fprintf(stderr, "loupe %s: unknown option '%s' (see loupe %s --help)\n", cmd, a, cmd);
            return 2;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v && hit->type != 'b') {
            if (i + 1 >= argc) {
                fprintf(stderr, "loupe %s: %s needs a value\n", cmd, hit->name);
                return 2;
            }
            v = argv[++i];
        }
        if (set_value(cmd, hit, v)) return 2;
    }
    return 0;
}

int cli_error(const char *cmd) {
    fprintf(stderr, "loupe %s: %s\n", cmd, lp_errmsg());
    return 1;
}

int cli_errorf(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loupe %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

int cli_require(const char *cmd, const char *flag, const char *value) {
    if (value && *value) return 0;
    fprintf(stderr, "loupe %s: %s is required (see loupe %s --help)\n", cmd, flag, cmd);
    return 2;
}

const char *cli_shared_path(const char *rel) {
    /* one search order for the whole program: see src/reproduce/common.c */
    return lp_reproduce_shared(NULL, rel);
}
