/* cmd_explain.c: `qmoe explain POLICY --model DIR SELECTOR`: for each weight
 * the selector names, every rule that touched it in order and its final
 * setting. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "compiler/compiler.h"

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"scores", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    qm_compile_opts o = {0};
    int c;
    if (!dirs) {
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hI:", opts, NULL)) != -1) {
        switch (c) {
        case 'I': dirs[o.n_dirs++] = optarg; break;
        case 'm': o.model = optarg; break;
        case 's': o.scores = optarg; break;
        case 'h':
            free(dirs);
            printf("usage: qmoe %s\n\n%s", qm_cmd_explain.synopsis, qm_cmd_explain.help);
            return QM_EXIT_OK;
        default:
            free(dirs);
            if (optopt)
                return qm_cli_usage(&qm_cmd_explain, "option -%c needs a value", optopt);
            return qm_cli_usage(&qm_cmd_explain, "unknown option '%s'", argv[optind - 1]);
        }
    }
    o.dirs = dirs;
    if (argc - optind != 2 || !o.model) {
        free(dirs);
        return qm_cli_usage(&qm_cmd_explain, !o.model ? "--model DIR is required" : "expected POLICY and SELECTOR");
    }
    o.policy = argv[optind];
    qm_diag *d = qm_diag_new();
    if (!d) {
        free(dirs);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_status st = qm_compile_explain(&o, argv[optind + 1], stdout, d);
    int rc = qm_cli_report_compile(d);
    qm_diag_free(d);
    free(dirs);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_explain = {
    .name = "explain",
    .run = run,
    .synopsis = "explain POLICY --model DIR [--scores FILE] [-I DIR]... SELECTOR",
    .summary = "show every rule that touched the weights a selector names, and their final setting",
    .help = "Compiles POLICY for the model as `qmoe compile` does; then, for each weight\n"
            "SELECTOR (a selector of qmoe-policy(5), e.g. 'layers[1].experts[0]') names,\n"
            "prints its canonical and checkpoint names, each rule that touched it in the\n"
            "order they applied (defaults, rules, budget) and the final setting.\n\n"
            "  --model DIR    the model directory; required\n"
            "  --scores FILE  scores from `qmoe score`\n"
            "  -I DIR         look for imports in DIR first (repeatable)\n",
};
