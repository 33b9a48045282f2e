/* cli.h: the qmoe command's driver, shared by its subcommands.
 *
 * The driver is the only place that prints diagnostics and picks exit
 * codes: 0 success, 1 failure, 2 usage error (documented in qmoe(1)).
 */
#ifndef QM_CLI_H
#define QM_CLI_H

#include <time.h>

#include "base/base.h"
#include "compiler/compiler.h"
#include "runtime/net.h"

typedef struct qm_dist qm_dist; /* runtime/dist.h */

enum { QM_EXIT_OK = 0, QM_EXIT_FAIL = 1, QM_EXIT_USAGE = 2 };

typedef struct qm_cmd {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *synopsis;               /* the usage line after "qmoe " */
    const char *summary;                /* one line for `qmoe --help` */
    const char *help;                   /* options, for `qmoe help CMD` */
} qm_cmd;

extern const qm_cmd qm_cmd_inspect;
extern const qm_cmd qm_cmd_eval;
extern const qm_cmd qm_cmd_score;
extern const qm_cmd qm_cmd_measure;
extern const qm_cmd qm_cmd_gptq_tensor;
extern const qm_cmd qm_cmd_quantize;
extern const qm_cmd qm_cmd_check;
extern const qm_cmd qm_cmd_fmt;
extern const qm_cmd qm_cmd_compile;
extern const qm_cmd qm_cmd_explain;
extern const qm_cmd qm_cmd_bench;
extern const qm_cmd qm_cmd_tokenize;

/* Print "qmoe: MSG" and the subcommand's usage to stderr; returns QM_EXIT_USAGE. */
int qm_cli_usage(const qm_cmd *cmd, const char *fmt, ...) QM_PRINTF(2, 3);
/* Parse the value of option `opt` as an integer in [lo, hi] into *v; on
 * failure print a usage error and return nonzero. */
int qm_cli_long(const qm_cmd *cmd, const char *opt, const char *arg, long lo, long hi, long *v);
/* Print and empty the diagnostics (qm_diag_print(): "FILE:LINE:COL:
 * SEVERITY: MESSAGE" and the source excerpt for those with a location,
 * "qmoe: SEVERITY: MESSAGE" for the others); returns QM_EXIT_FAIL when any
 * was an error. */
int qm_cli_report(qm_diag *d);

/* The arguments `qmoe compile` and `qmoe explain` share (cmd_compile.c). */
typedef struct qm_cli_compile_argv {
    qm_compile_opts o;      /* strings borrowed from argv */
    const char **dirs;      /* the -I values o.dirs points to; owned */
    const char *output;     /* -o PLAN (compile only); NULL for stdout */
    const char *format;     /* --format (compile only): "yaml" or "table" */
    char **args;            /* the positional arguments after POLICY */
    const char **engines;   /* --engine NAME values (compile only), n_engines of them; owned */
    size_t n_engines;
    const char *target;     /* --target (compile only): "gguf" or NULL */
} qm_cli_compile_argv;

/* Parse `cmd`'s options (cmd is qm_cmd_compile or qm_cmd_explain; only
 * compile takes --strict, --format and -o) and expect POLICY plus n_args - 1
 * more positional arguments.  Returns -1 when the command should run (free
 * *a with qm_cli_compile_args_free()), otherwise the exit code, having
 * printed help or a usage error and freed *a. */
int qm_cli_compile_args(const qm_cmd *cmd, int argc, char **argv, int n_args, qm_cli_compile_argv *a);
void qm_cli_compile_args_free(qm_cli_compile_argv *a);

/* "SIZE" of --max-memory: bytes, or a number with a binary suffix K, M, G
 * or T (optionally followed by "iB" or "B"): 512M, 1.5G, 64GiB.  On a bad
 * value prints the usage error and returns 1. */
int qm_cli_size(const qm_cmd *cmd, const char *opt, const char *arg, size_t *v);
/* --mpi-timeout's value (seconds > 0) into *t; on failure print a usage
 * error and return nonzero. */
int qm_cli_mpi_timeout(const qm_cmd *cmd, const char *arg, double *t);
/* End a command that may be one rank of an MPI job (dist NULL: a plain
 * process): print d's diagnostics, naming this rank when the job has several
 * and st failed, free d (NULL: it could not be made, a failure), and close
 * dist; on failure first end the other ranks, which may be waiting for this
 * one.  Returns the command's exit status. */
int qm_cli_end_job(qm_dist *dist, qm_status st, qm_diag *d);
/* The help text of --mpi-timeout, as each distributed command lists it. */
#define QM_CLI_MPI_TIMEOUT_HELP                                                                                      \
    "  --mpi-timeout S   under mpirun: end the job when one wait for another rank\n"                                 \
    "                    lasts S seconds (default 3600, or QMOE_MPI_TIMEOUT)\n"

/* Open a model directory to run it layer by layer (net.h). */
qm_status qm_cli_open_net(const char *dir, qm_model **m, qm_net *net, qm_diag *d);
/* The same for a GGUF file (path ends in .gguf): the model directory `base`
 * with its weights taken from the file (qm_model_attach_gguf). */
qm_status qm_cli_open_gguf_net(const char *path, const char *base, qm_model **m, qm_net *net, qm_diag *d);
/* A path naming a .gguf file rather than a model directory. */
int qm_cli_is_gguf(const char *path);
/* Close what qm_cli_open_net opened (m may be NULL). */
void qm_cli_close_net(qm_model *m, qm_net *net);

/* ---- progress (progress.c) ---- */

/* Every command's progress line on standard error, "qmoe: LINE" (a
 * qm_progress_fn): redrawn in place on a terminal, else one line each,
 * lines beginning with '\r' (passing detail) only on a terminal. */
void qm_cli_line(void *ctx, const char *line);
/* End the line a terminal shows in place, if any (before other output). */
void qm_cli_progress_end(void);
/* Token progress ("N/M tokens  R tok/s  ETA S s") through the same line,
 * only when stderr is a terminal and not quiet: qm_cli_progress_start
 * returns 0 otherwise. */
typedef struct qm_cli_progress {
    struct timespec t0;
} qm_cli_progress;
int qm_cli_progress_start(qm_cli_progress *p, int quiet);
void qm_cli_progress_show(void *p, size_t done, size_t total);

#endif
