/* cmd_bench.c: `qmoe bench`: the QuantMoE-Bench matrix (matrix/matrix.h). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "matrix/matrix.h"

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policies", required_argument, NULL, 'p'}, {"calib", required_argument, NULL, 'c'},
        {"eval", required_argument, NULL, 'e'},     {"tasks", required_argument, NULL, 't'},
        {"ctx", required_argument, NULL, 'x'},      {"samples", required_argument, NULL, 'n'},
        {"eval-tokens", required_argument, NULL, 'E'}, {"damp", required_argument, NULL, 'd'},
        {"discard-models", no_argument, NULL, 'D'}, {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
        {"format", required_argument, NULL, 'f'},   {"mpi-timeout", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    /* every argument could be a policy or an -I directory */
    const char **pol = calloc((size_t)argc + 1, sizeof *pol), **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    if (!pol || !dirs) {
        free(pol);
        free(dirs);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_matrix_opts o = qm_matrix_opts_default();
    o.policies = pol;
    o.dirs = dirs;
    o.progress = qm_cli_line;
    long v;
    int c, rc = -1;
    double mpi_timeout = 0; /* 0: QMOE_MPI_TIMEOUT or the default */
    optind = 1;
    opterr = 0;
    while (rc < 0 && (c = getopt_long(argc, argv, "hqI:o:", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'p': pol[o.n_policies++] = optarg; break;
        case 'I': dirs[o.n_dirs++] = optarg; break;
        case 'c': o.calib = optarg; break;
        case 'e': o.eval = optarg; break;
        case 't': o.tasks = optarg; break;
        case 'o': o.out = optarg; break;
        case 'q': o.progress = NULL; break;
        case 'D': o.discard_models = 1; break;
        case 'f':
            if (strcmp(optarg, "gptq") != 0 && strcmp(optarg, "gguf") != 0)
                rc = qm_cli_usage(&qm_cmd_bench, "--format must be 'gptq' or 'gguf', not '%s'", optarg);
            o.gguf = strcmp(optarg, "gguf") == 0;
            break;
        case 'x':
            if (qm_cli_long(&qm_cmd_bench, "--ctx", optarg, 2, 1 << 20, &v))
                rc = QM_EXIT_USAGE;
            o.ctx = (int)v;
            break;
        case 'n':
            if (qm_cli_long(&qm_cmd_bench, "--samples", optarg, 1, 1 << 20, &v))
                rc = QM_EXIT_USAGE;
            o.samples = (int)v;
            break;
        case 'E':
            if (qm_cli_long(&qm_cmd_bench, "--eval-tokens", optarg, 2, 1L << 40, &v))
                rc = QM_EXIT_USAGE;
            o.eval_tokens = (size_t)v;
            break;
        case 'd':
            o.damp = strtod(optarg, &end);
            if (end == optarg || *end || !(o.damp >= 0 && o.damp <= 10))
                rc = qm_cli_usage(&qm_cmd_bench, "--damp must be a number in [0, 10], not '%s'", optarg);
            break;
        case 'T':
            if (qm_cli_mpi_timeout(&qm_cmd_bench, optarg, &mpi_timeout))
                rc = QM_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_bench.synopsis, qm_cmd_bench.help);
            rc = QM_EXIT_OK;
            break;
        default:
            rc = optopt ? qm_cli_usage(&qm_cmd_bench, "option -%c needs a value", optopt)
                        : qm_cli_usage(&qm_cmd_bench, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    /* MODEL, then any further policies: `--policies a.qmoe b.qmoe` leaves b.qmoe here */
    if (rc < 0 && optind < argc) {
        o.model = argv[optind];
        for (int i = optind + 1; i < argc; i++)
            pol[o.n_policies++] = argv[i];
    }
    if (rc < 0 && !o.model)
        rc = qm_cli_usage(&qm_cmd_bench, "expected a MODEL directory");
    if (rc < 0 && (!o.n_policies || !o.calib || !o.eval))
        rc = qm_cli_usage(&qm_cmd_bench, "--policies, --calib and --eval are required");
    if (rc >= 0) {
        free(pol);
        free(dirs);
        return rc;
    }
    qm_diag *d = qm_diag_new();
    qm_matrix m;
    qm_dist *dist = NULL; /* under mpirun: every stage over the ranks, rank 0 writes (qmoe(1), DISTRIBUTED RUNS) */
    qm_status st = d ? qm_dist_open(&argc, &argv, &dist, d) : QM_ENOMEM;
    int rank = qm_dist_rank(dist);
    qm_dist_set_timeout(dist, mpi_timeout);
    o.dist = dist;
    if (rank) /* rank 0 reports; the others print errors only */
        o.progress = NULL;
    if (st == QM_OK)
        st = qm_matrix_run(&o, &m, d);
    else
        memset(&m, 0, sizeof m);
    qm_cli_progress_end();
    if (st == QM_OK && o.progress) {
        size_t reused = 0;
        for (size_t i = 0; i < m.n; i++)
            reused += (size_t)m.rows[i].reused;
        fprintf(stderr, "qmoe: %zu policies (%zu reused from an earlier bench); results in %s/results.md\n", m.n,
                reused, o.out);
    }
    if (st == QM_OK && rank == 0) {
        qm_matrix_markdown(&m, stdout);
        if (fflush(stdout) != 0 || ferror(stdout))
            st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
    }
    qm_matrix_free(&m);
    free(pol);
    free(dirs);
    return qm_cli_end_job(dist, st, d);
}

const qm_cmd qm_cmd_bench = {
    .name = "bench",
    .run = run,
    .synopsis = "bench MODEL --policies DIR|FILES... --calib FILE --eval FILE [--tasks FILE]\n"
                "                 [-I DIR]... [--ctx N] [--samples N] [--eval-tokens N] [--damp D]\n"
                "                 [--format gptq|gguf] [--discard-models] [-q] [-o DIR]",
    .summary = "the QuantMoE-Bench matrix: score, compile, quantize and evaluate many policies",
    .help = "Scores MODEL once on --calib, compiles every policy against it, quantizes each plan\n"
            "with GPTQ and evaluates it against MODEL on --eval; writes results.yaml, results.csv,\n"
            "results.md and kld_vs_bits.svg in DIR and prints the table (see qmoe(1)).  Runs\n"
            "already measured under the same plan and settings are reused, so an interrupted\n"
            "bench continues where it stopped.\n\n"
            "  --policies P       a policy file or a directory of *.qmoe (repeatable; more\n"
            "                     files may follow MODEL)\n"
            "  -I DIR             look for imports in DIR first (repeatable)\n"
            "  --calib FILE       calibration text (byte-level models) or token ids\n"
            "  --eval FILE        evaluation text or token ids, held out from calibration\n"
            "  --tasks FILE       multiple-choice tasks (JSONL, see qmoe eval)\n"
            "  --ctx N            window length for scores, GPTQ and evaluation (default 512)\n"
            "  --samples N        calibration windows for scores and GPTQ (default 128)\n"
            "  --eval-tokens N    evaluate only the first N tokens of --eval\n"
            "  --damp D           GPTQ damping (default 0.01)\n"
            "  --format F         gptq (default): evaluate each GPTQ checkpoint; gguf: write\n"
            "                     each plan as runs/NAME/model.gguf (quantize --format gguf)\n"
            "                     and evaluate that file; policies must be plans GGUF holds\n"
            "  --discard-models   remove each quantized checkpoint once it is evaluated\n"
            "  -q, --quiet        no progress on standard error\n"
            "  --mpi-timeout S    under mpirun: end the job when one wait for another rank\n"
            "                     lasts S seconds (default 3600, or QMOE_MPI_TIMEOUT)\n"
            "  -o DIR             the output directory (default bench-out)\n",
};
