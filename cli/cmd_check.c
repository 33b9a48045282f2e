/* cmd_check.c: `qmoe check POLICY`: parse a policy, expand its imports and
 * report every mistake, without a model. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "lang/ast.h"

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char **dirs = calloc((size_t)argc, sizeof *dirs); /* at most one -I per argument */
    size_t ndirs = 0;
    int o;
    if (!dirs) {
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "hI:", opts, NULL)) != -1) {
        switch (o) {
        case 'I': dirs[ndirs++] = optarg; break;
        case 'h':
            free(dirs);
            printf("usage: qmoe %s\n\n%s", qm_cmd_check.synopsis, qm_cmd_check.help);
            return QM_EXIT_OK;
        default:
            free(dirs);
            if (optopt == 'I')
                return qm_cli_usage(&qm_cmd_check, "-I needs a directory");
            return qm_cli_usage(&qm_cmd_check, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) {
        free(dirs);
        return qm_cli_usage(&qm_cmd_check, "expected one POLICY");
    }
    qm_diag *d = qm_diag_new();
    if (!d) {
        free(dirs);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_policy *p;
    qm_status st = qm_policy_parse_file(argv[optind], &p, d);
    if (st == QM_OK) {
        qm_search s = {.dirs = dirs, .n_dirs = ndirs};
        st = qm_policy_expand(p, &s, d);
        qm_policy_free(p);
    }
    int rc = qm_cli_report(d);
    qm_diag_free(d);
    free(dirs);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_check = {
    .name = "check",
    .run = run,
    .synopsis = "check [-I DIR]... POLICY",
    .summary = "check a policy: syntax, names, actions and imports, without a model",
    .help = "Parses POLICY, expands its imports and reports every mistake as\n"
            "FILE:LINE:COL: error: MESSAGE with the source line; prints nothing when\n"
            "the policy is good.  The grammar is in qmoe-policy(5).\n\n"
            "  -I DIR  look for imports in DIR first (repeatable; then $QMOE_PATH,\n"
            "          then the installed standard library)\n",
};
