/* cmd_reproduce.c — `loupe reproduce NAME --out DIR [--quick]`: one driver
 * per paper experiment (src/reproduce/NAME.c), each writing DIR/report.md
 * and DIR/report.json through loupe/report.h. Register a driver by adding
 * one line to k_repro. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "loupe/base.h"
#include "loupe/report.h"
#include "reproduce/reproduce.h"

static const struct {
    const char *name;
    lp_reproduce_fn fn;
    const char *help;
} k_repro[] = {
    {"hierarchical", lp_reproduce_hierarchical, "HierarchicalTopK vs per-k TopK SAEs: EV/CE vs L0, step time (arXiv 2505.24473)"},
    {"boost", lp_reproduce_boost, "residual SAE on a new domain vs base and fine-tuned base (SAE Boost, arXiv 2507.12990)"},
    {"kronsae", lp_reproduce_kronsae, "KronSAE (mAND, m = 1, 2, 4) vs TopK at equal F and k: EV, CE, dead, FLOPs, speed (arXiv 2505.22255)"},
    {"flow", lp_reproduce_flow, "cross-layer feature flow: classes, graphs, deactivation (arXiv 2502.03032)"},
    {"steering", lp_reproduce_steering, "steering by an SAE feature: behaviour rate and coherence (arXiv 2606.10029, 2502.03032)"},
    {"autointerp", lp_reproduce_autointerp, "segment tags and explainer AUROC per tag, prompt vs generated (arXiv 2606.10029)"},
    {"stability", lp_reproduce_stability, "feature stability across seeds: stable vs unstable latents, subspaces, synthetic truth, pooled SAEs (arXiv 2606.12138)"},
    {NULL, NULL, NULL}};

int cmd_reproduce(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: loupe reproduce NAME --out DIR [--quick] [--threads N]\n\nexperiments:\n");
        for (int i = 0; k_repro[i].name; i++) printf("  %-14s %s\n", k_repro[i].name, k_repro[i].help);
        printf("\nWrites DIR/report.md and DIR/report.json; --quick runs a reduced version (< 3 min).\n");
        return argc < 2 ? 2 : 0;
    }
    const char *name = argv[1];
    for (int i = 0; k_repro[i].name; i++) {
        if (strcmp(k_repro[i].name, name) != 0) continue;
        const char *out = NULL, *shared = NULL;
        int quick = 0, threads = 0;
        cli_opt opts[] = {{"--out", 's', &out, NULL, "output directory for report.md / report.json"},
                          {"--quick", 'b', &quick, NULL, "reduced run (< 3 minutes)"},
                          {"--shared", 's', &shared, NULL, "folder with models/ and data/ (default: ../shared)"},
                          {"--threads", 'i', &threads, "0", "threads (0 = all cores)"},
                          {NULL, 0, NULL, NULL, NULL}};
        char cmd[64];
        snprintf(cmd, sizeof cmd, "reproduce %s", name);
        int rc = cli_parse(cmd, "--out DIR [--quick]", opts, argc - 1, argv + 1);
        if (rc) return rc == 1 ? 0 : rc;
        if ((rc = cli_require(cmd, "--out", out))) return rc;
        if (threads > 0) lp_set_threads(threads);
        lp_reproduce_opts o = {.out = out, .quick = quick, .shared = shared};
        lp_report *r = lp_report_new(name, k_repro[i].help);
        rc = k_repro[i].fn(&o, r);
        if (!rc) rc = lp_report_write(r, out);
        if (rc) {
            lp_report_free(r);
            return cli_error(cmd);
        }
        int agree = 0, n = lp_report_claims(r, &agree);
        fprintf(stderr, "reproduce %s: %d of %d claims agree; report in %s/report.md\n", name, agree, n, out);
        lp_report_free(r);
        return 0;
    }
    return cli_errorf("reproduce", "unknown experiment '%s' (see loupe reproduce --help)", name);
}
