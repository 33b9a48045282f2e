/* cmd_explain.c: `qmoe explain POLICY --model DIR SELECTOR`: for each weight
 * the selector names, every rule that touched it in order and its final
 * setting. */
#include "config.h"

#include <stdio.h>

#include "cli/cli.h"
#include "compiler/compiler.h"

static int run(int argc, char **argv)
{
    qm_cli_compile_argv a;
    int rc = qm_cli_compile_args(&qm_cmd_explain, argc, argv, 2, &a);
    if (rc >= 0)
        return rc;
    qm_diag *d = qm_diag_new();
    if (!d) {
        qm_cli_compile_args_free(&a);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_status st = qm_compile_explain(&a.o, a.args[0], stdout, d);
    rc = qm_cli_report(d);
    qm_diag_free(d);
    qm_cli_compile_args_free(&a);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_explain = {
    .name = "explain",
    .run = run,
    .synopsis = "explain POLICY --model DIR [--scores FILE] [--measure FILE] [-I DIR]... SELECTOR",
    .summary = "show every rule that touched the weights a selector names, and their final setting",
    .help = "Compiles POLICY for the model as `qmoe compile` does; then, for each weight\n"
            "SELECTOR (a selector of qmoe-policy(5), e.g. 'layers[1].experts[0]') names,\n"
            "prints its canonical and checkpoint names, each rule that touched it in the\n"
            "order they applied (defaults, rules, budget) and the final setting.\n\n"
            "  --model DIR    the model directory; required\n"
            "  --scores FILE  scores from `qmoe score`\n"
            "  --measure FILE errors from `qmoe measure`\n"
            "  -I DIR         look for imports in DIR first (repeatable)\n",
};
