/* cmd_report.c — `loupe report --html OUT --dir RUN`: the dashboard as
 * static files (the same pages loupe serve answers). */
#include <stdio.h>

#include "cli/cli.h"
#include "loupe/web.h"

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *dir = NULL;
    cli_opt opts[] = {{"--html", 's', &out, NULL, "output directory for the static pages"},
                      {"--dir", 's', &dir, NULL, "run directory (with features/NAME from loupe features)"},
                      {NULL, 0, NULL, NULL, NULL}};
    int rc = cli_parse("report", "--html OUT --dir RUN", opts, argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = cli_require("report", "--html", out)) || (rc = cli_require("report", "--dir", dir))) return rc;
    lp_web *w = NULL;
    if (lp_web_open(&w, dir)) return cli_error("report");
    int n = 0;
    rc = lp_web_report(w, out, &n);
    lp_web_free(w);
    if (rc) return cli_error("report");
    fprintf(stderr, "report: %d files -> %s/index.html\n", n, out);
    return 0;
}
