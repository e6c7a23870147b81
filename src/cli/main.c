/* main.c — `loupe <command>`: dispatch to one file per command, and fix
 * Debian OpenBLAS's CPU misdetection before anything runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "loupe/base.h"

#define LOUPE_VERSION "0.1.0"

char *openblas_get_corename(void);

/* Debian's OpenBLAS 0.3.21 reports recent AMD/Intel CPUs as "Prescott" and
 * then runs its SSE3 kernels (~5x slower SGEMM). OpenBLAS reads
 * OPENBLAS_CORETYPE only when the library loads, so when it reports a
 * generic core on a CPU with AVX2/AVX-512 we set the right core type and
 * re-exec ourselves once. A user's own OPENBLAS_CORETYPE always wins;
 * LOUPE_NO_REEXEC=1 turns this off. */
static void blas_coretype_fix(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("LOUPE_NO_REEXEC")) return;
    const char *core = openblas_get_corename();
    if (!core || (strcmp(core, "Prescott") != 0 && strcmp(core, "Core2") != 0 &&
                  strcmp(core, "Nehalem") != 0 && strcmp(core, "Atom") != 0))
        return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f")) want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("LOUPE_NO_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the slow kernels */
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_cmds[] = {
    {"generate", cmd_generate, "generate text from a prompt (greedy, temperature, top-p)"},
    {"harvest", cmd_harvest, "run a model over text and store hook activations"},
    {"store", cmd_store, "inspect an activation store (store info DIR)"},
    {"train", cmd_train, "train SAEs on an activation store (one per seed)"},
    {"eval", cmd_eval, "evaluate an SAE: reconstruction, sparsity, LM loss with the SAE spliced in"},
    {"sae", cmd_sae, "inspect an SAE directory (sae info DIR)"},
    {"features", cmd_features, "feature statistics, segment tags, explanations and AUROC of an SAE on a store"},
    {"serve", cmd_serve, "the feature dashboard over HTTP (127.0.0.1, read-only)"},
    {"report", cmd_report, "the feature dashboard as static HTML files (report --html OUT --dir RUN)"},
    {"reproduce", cmd_reproduce, "reproduce a paper's experiment and write a report"},
    {"convert", cmd_convert, "convert a model between the llama2.c and Hugging Face formats"},
    {"flow", cmd_flow, "feature flow across layers: match site SAEs by decoder cosine, classes, graphs"},
    {"steer", cmd_steer, "generate with SAE-feature interventions; --eval measures the behaviour change"},
    {"lens", cmd_lens, "logit lens of a direction (decoder row, vector, mean difference): top tokens"},
    {"stability", cmd_stability, "which SAE latents are reproducible across seeds; what the unstable ones do"},
    {"synth", cmd_synth, "synthetic activations with known ground truth; score SAEs against it"},
    {"pool", cmd_pool, "a pooled SAE from the latents several seeds agree on"},
    {"demo", cmd_demo, "the main job on the shipped default model"},
};

static void usage(void) {
    printf("loupe %s — look inside transformer LMs with sparse autoencoders\n\n"
           "usage: loupe <command> [options]   (loupe <command> --help for its flags)\n\n"
           "commands:\n",
           LOUPE_VERSION);
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        printf("  %-10s %s\n", k_cmds[i].name, k_cmds[i].help);
    printf("  %-10s %s\n", "version", "print version and the GEMM backend");
}

int main(int argc, char **argv) {
    blas_coretype_fix(argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage();
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("loupe %s\nGEMM: %s\nthreads: %d\n", LOUPE_VERSION, lp_gemm_backend(), lp_threads());
        return 0;
    }
    const char *th = getenv("LOUPE_THREADS");
    if (th) lp_set_threads(atoi(th));
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (strcmp(argv[1], k_cmds[i].name) == 0) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "loupe: unknown command '%s' (see loupe --help)\n", argv[1]);
    return 2;
}
