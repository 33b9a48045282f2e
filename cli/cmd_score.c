/* cmd_score.c: `qmoe score`: expert frequency, block importance, outlier scores. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/score.h"

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"calib", required_argument, NULL, 'c'},      {"ctx", required_argument, NULL, 'x'},
        {"max-tokens", required_argument, NULL, 'm'}, {"output", required_argument, NULL, 'o'},
        {"max-memory", required_argument, NULL, 'M'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},             {"mpi-timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
    };
    const char *calib = NULL, *out = NULL;
    long ctx = QM_DEFAULT_CTX, max_tokens = 0;
    size_t max_memory = 0;
    int o, quiet = 0;
    double mpi_timeout = 0; /* 0: QMOE_MPI_TIMEOUT or the default */
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "hqo:", opts, NULL)) != -1) {
        switch (o) {
        case 'c': calib = optarg; break;
        case 'q': quiet = 1; break;
        case 'M':
            if (qm_cli_size(&qm_cmd_score, "--max-memory", optarg, &max_memory))
                return QM_EXIT_USAGE;
            break;
        case 'o': out = optarg; break;
        case 'x':
            if (qm_cli_long(&qm_cmd_score, "--ctx", optarg, 1, 1 << 20, &ctx))
                return QM_EXIT_USAGE;
            break;
        case 'm':
            if (qm_cli_long(&qm_cmd_score, "--max-tokens", optarg, 2, 1L << 40, &max_tokens))
                return QM_EXIT_USAGE;
            break;
        case 'T':
            if (qm_cli_mpi_timeout(&qm_cmd_score, optarg, &mpi_timeout))
                return QM_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_score.synopsis, qm_cmd_score.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_score, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_score, "expected one MODEL");
    if (!calib || !out)
        return qm_cli_usage(&qm_cmd_score, "--calib FILE and -o SCORES are required");

    /* hidden states over the budget are spilled beside the output */
    char *dir = qm_strdup(out), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        slash[slash == dir] = '\0';
    qm_diag *d = qm_diag_new();
    qm_model *m = NULL;
    qm_net net = {0};
    qm_tokens toks = {0};
    qm_scores sc = {0};
    qm_dist *dist = NULL; /* under mpirun: each rank scores a share of the windows (qmoe(1), DISTRIBUTED RUNS) */
    qm_status st = qm_dist_open(&argc, &argv, &dist, d);
    qm_dist_set_timeout(dist, mpi_timeout);
    int rank = qm_dist_rank(dist);
    if (st == QM_OK)
        st = qm_model_open(argv[optind], &m, d);
    if (st == QM_OK && rank == 0)
        st = qm_model_check_output(m, "-o", out, 0, &(qm_path_input){calib, "the calibration text"}, 1, d);
    if (st == QM_OK)
        st = qm_tokens_for_model(m, calib, (size_t)max_tokens, (size_t)ctx, &toks, d);
    if (st == QM_OK && (st = qm_net_open(m, &net, d)) == QM_OK) {
        net.max_memory = max_memory;
        net.spill_dir = slash ? dir : ".";
        net.progress = quiet || rank ? NULL : qm_cli_line;
    }
    if (st == QM_OK)
        st = qm_score_model_dist(&net, &toks, (int)ctx, dist, &sc, d);
    if (st == QM_OK && rank == 0)
        st = qm_scores_write(&sc, m, calib, out, d);
    qm_scores_free(&sc);
    qm_tokens_free(&toks);
    qm_cli_close_net(m, &net);
    free(dir);
    return qm_cli_end_job(dist, st, d);
}

const qm_cmd qm_cmd_score = {
    .name = "score",
    .run = run,
    .synopsis = "score MODEL --calib FILE [--ctx N] [--max-tokens N] [--max-memory SIZE] [-q] -o SCORES",
    .summary = "measure expert frequency, MoE block importance and linear outlier scores",
    .help = "Runs the calibration tokens through MODEL and writes the scores file that\n"
            "`qmoe compile --scores` reads (format in qmoe(1)).\n\n"
            "  --calib FILE      text (through the model's tokenizer, or bytes for byte-level\n"
            "                    models), or token ids (.u32, or decimal without a tokenizer)\n"
            "  --ctx N           window length (default 512)\n"
            "  --max-tokens N    use only the first N tokens\n"
            "  --max-memory SIZE memory for weights and hidden states (default: 75% of physical);\n"
            "                    hidden states beyond it go to a temporary file beside SCORES\n"
            "  -q, --quiet       no progress on standard error\n"
            QM_CLI_MPI_TIMEOUT_HELP
            "  -o, --output FILE the scores file (YAML), written atomically\n",
};
