/* cli.h: the qmoe command's driver, shared by its subcommands.
 *
 * The driver is the only place that prints diagnostics and picks exit
 * codes: 0 success, 1 failure, 2 usage error (documented in qmoe(1)).
 */
#ifndef QM_CLI_H
#define QM_CLI_H

#include "base/base.h"

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

/* Print "qmoe: MSG" and the subcommand's usage to stderr; returns QM_EXIT_USAGE. */
int qm_cli_usage(const qm_cmd *cmd, const char *fmt, ...) QM_PRINTF(2, 3);
/* Parse the value of option `opt` as an integer in [lo, hi] into *v; on
 * failure print a usage error and return nonzero. */
int qm_cli_long(const qm_cmd *cmd, const char *opt, const char *arg, long lo, long hi, long *v);
/* Print and empty the diagnostics; returns QM_EXIT_FAIL when any was an error. */
int qm_cli_report(qm_diag *d);

#endif
