/* qmoe.c: the qmoe command: git-style subcommands over libqmoe.
 *
 *   qmoe [--help | --version]
 *   qmoe help [CMD]
 *   qmoe CMD [OPTIONS] ARGS...
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/blas_pool.h"

static const qm_cmd *const commands[] = {
    &qm_cmd_inspect,
    &qm_cmd_check,
    &qm_cmd_fmt,
    &qm_cmd_compile,
    &qm_cmd_explain,
    &qm_cmd_eval,
    &qm_cmd_score,
    &qm_cmd_measure,
    &qm_cmd_quantize,
    &qm_cmd_gptq_tensor,
    &qm_cmd_bench,
    &qm_cmd_tokenize,
};

static const qm_cmd *find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

int qm_cli_usage(const qm_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("qmoe: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "usage: qmoe %s\nTry 'qmoe help %s'.\n", cmd->synopsis, cmd->name);
    return QM_EXIT_USAGE;
}

int qm_cli_long(const qm_cmd *cmd, const char *opt, const char *arg, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    *v = strtol(arg, &end, 10);
    if (end == arg || *end || errno || *v < lo || *v > hi) {
        qm_cli_usage(cmd, "%s must be an integer in [%ld, %ld], not '%s'", opt, lo, hi, arg);
        return 1;
    }
    return 0;
}

int qm_cli_report(qm_diag *d)
{
    int failed = qm_diag_errors(d) > 0;
    qm_cli_progress_end();
    qm_diag_print(d, stderr, "qmoe");
    return failed ? QM_EXIT_FAIL : QM_EXIT_OK;
}

static void overview(FILE *f)
{
    fprintf(f, "usage: qmoe [--help] [--version] COMMAND [ARGS]\n\n"
               "Mixed-precision post-training quantization of Mixture-of-Experts models.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(f, "\n'qmoe help COMMAND' shows a command's options; man qmoe has the reference.\n");
}

static int help(int argc, char **argv)
{
    if (argc < 2) {
        overview(stdout);
        return QM_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0) { /* help is not in the table: it runs no command */
        printf("usage: qmoe help [COMMAND]\n\nshow the commands, or one command's options\n");
        return QM_EXIT_OK;
    }
    const qm_cmd *c = find(argv[1]);
    if (!c)
        return qm_cli_usage(NULL, "no command '%s'; 'qmoe --help' lists them", argv[1]);
    printf("usage: qmoe %s\n\n%s\n\n%s", c->synopsis, c->summary, c->help);
    return QM_EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        overview(stderr);
        return QM_EXIT_USAGE;
    }
    const char *a = argv[1];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        overview(stdout);
        return QM_EXIT_OK;
    }
    if (strcmp(a, "--version") == 0) {
        printf("qmoe %s\n", PACKAGE_VERSION);
        return QM_EXIT_OK;
    }
    if (strcmp(a, "help") == 0)
        return help(argc - 1, argv + 1);
    const qm_cmd *c = find(a);
    if (!c)
        return qm_cli_usage(NULL, "'%s' is not a qmoe command; 'qmoe --help' lists them", a);
    /* Most commands run BLAS seldom or never; those that do restart the pool. */
    qm_blas_pool_rest();
    return c->run(argc - 1, argv + 1);
}
