/* cli.h — shared pieces of the command-line front end: the flag parser
 * (every flag has a default and a help line, so --help is complete), error
 * reporting, and the table of commands. Only cli/ prints and exits. */
#ifndef LOUPE_CLI_H
#define LOUPE_CLI_H

#include <stdint.h>

typedef struct {
    const char *name; /* "--model" */
    char type;        /* 's' string, 'i' int, 'l' int64, 'f' float, 'b' flag */
    void *dst;        /* char **, int *, int64_t *, float *, int * */
    const char *def;  /* default as text (NULL: none / required when listed in usage) */
    const char *help;
} cli_opt;

/* Parse argv[1..] against opts (NULL-name terminated). Returns 0 to go on,
 * 1 when --help was printed (exit 0), 2 on a usage error (message printed). */
int cli_parse(const char *cmd, const char *synopsis, cli_opt *opts, int argc, char **argv);
/* Print "loupe CMD: <lp_errmsg()>" on stderr and return 1 (the exit status). */
int cli_error(const char *cmd);
/* Print a formatted error line and return 1. */
int cli_errorf(const char *cmd, const char *fmt, ...);
/* Require a string option: prints an error naming the flag when missing. */
int cli_require(const char *cmd, const char *flag, const char *value);
/* Split argv into flags with their values (flags[0] = argv[0], for
 * cli_parse) and positional operands; both arrays are malloc'd (free them). */
int cli_split_positional(const cli_opt *opts, int argc, char **argv, char ***flags, int *nflags, char ***pos,
                         int *npos);
/* Path of a shared file (e.g. "models/stories260K.bin"): $LOUPE_SHARED/REL,
 * ../shared/REL (from the current directory or the binary's checkout) when
 * present, else where scripts/get-models.sh downloads it (~/.cache/loupe/REL). */
const char *cli_shared_path(const char *rel);

int cmd_generate(int argc, char **argv);
int cmd_harvest(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sae(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);
int cmd_features(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_train_sites(int argc, char **argv); /* train_sites.c: loupe train --sites */
int cmd_flow(int argc, char **argv);
int cmd_steer(int argc, char **argv);
int cmd_lens(int argc, char **argv);
int cmd_stability(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_pool(int argc, char **argv);

#endif
