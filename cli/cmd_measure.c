/* cmd_measure.c: `qmoe measure`: each unit's error at each width, for
 * `budget B bits by measured`. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli/cli.h"
#include "runtime/measure.h"

/* "2,3,4,8" into o->widths (checked against qm_widths by the run); nonzero after a usage error. */
static int parse_widths(const char *arg, qm_measure_opts *o)
{
    const char *p = arg;
    o->n_widths = 0;
    while (*p) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || o->n_widths == QM_MEASURE_MAX_WIDTHS || b < 0 || b > 64) {
            qm_cli_usage(&qm_cmd_measure, "--widths must be up to %d of 2,3,4,5,8 separated by commas, not '%s'",
                         QM_MEASURE_MAX_WIDTHS, arg);
            return 1;
        }
        o->widths[o->n_widths++] = (int)b;
        p = *end ? end + 1 : end;
    }
    if (!o->n_widths)
        return qm_cli_usage(&qm_cmd_measure, "--widths is empty"), 1;
    return 0;
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"calib", required_argument, NULL, 'c'},     {"ctx", required_argument, NULL, 'x'},
        {"samples", required_argument, NULL, 'n'},   {"widths", required_argument, NULL, 'w'},
        {"units", required_argument, NULL, 'u'},     {"group", required_argument, NULL, 'g'},
        {"asym", no_argument, NULL, 'a'},            {"act-order", no_argument, NULL, 'A'},
        {"damp", required_argument, NULL, 'd'},      {"min-expert-tokens", required_argument, NULL, 'e'},
        {"output", required_argument, NULL, 'o'},    {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},            {"mpi-timeout", required_argument, NULL, 'T'},
        {"target", required_argument, NULL, 't'},    {NULL, 0, NULL, 0},
    };
    qm_measure_opts o = qm_measure_opts_default();
    const char *calib = NULL, *out = NULL;
    long ctx = o.ctx, samples = o.samples, group = o.group, min_tok = o.min_expert_tokens;
    int c, quiet = 0;
    double mpi_timeout = 0; /* 0: QMOE_MPI_TIMEOUT or the default */
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hqo:", opts, NULL)) != -1) {
        switch (c) {
        case 'c': calib = optarg; break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'a': o.sym = 0; break;
        case 'A': o.act_order = 1; break;
        case 't':
            if (strcmp(optarg, "gguf") != 0)
                return qm_cli_usage(&qm_cmd_measure, "--target must be gguf, not '%s'", optarg);
            o.target = optarg;
            break;
        case 'x':
            if (qm_cli_long(&qm_cmd_measure, "--ctx", optarg, 1, 1 << 20, &ctx))
                return QM_EXIT_USAGE;
            break;
        case 'n':
            if (qm_cli_long(&qm_cmd_measure, "--samples", optarg, 1, 1 << 20, &samples))
                return QM_EXIT_USAGE;
            break;
        case 'g':
            if (qm_cli_long(&qm_cmd_measure, "--group", optarg, 0, 1 << 20, &group))
                return QM_EXIT_USAGE;
            break;
        case 'e':
            if (qm_cli_long(&qm_cmd_measure, "--min-expert-tokens", optarg, 0, 1L << 30, &min_tok))
                return QM_EXIT_USAGE;
            break;
        case 'd': {
            char *end;
            o.damp = strtod(optarg, &end);
            if (end == optarg || *end || !(o.damp > 0 && o.damp < 1))
                return qm_cli_usage(&qm_cmd_measure, "--damp must be a number in (0, 1), not '%s'", optarg);
            break;
        }
        case 'w':
            if (parse_widths(optarg, &o))
                return QM_EXIT_USAGE;
            break;
        case 'u': {
            int u = qm_measure_units_find(optarg);
            if (u < 0)
                return qm_cli_usage(&qm_cmd_measure, "--units must be linear, expert or layer, not '%s'", optarg);
            o.units = (qm_measure_units)u;
            break;
        }
        case 'T':
            if (qm_cli_mpi_timeout(&qm_cmd_measure, optarg, &mpi_timeout))
                return QM_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_measure.synopsis, qm_cmd_measure.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_measure, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_measure, "expected one MODEL");
    if (!calib || !out)
        return qm_cli_usage(&qm_cmd_measure, "--calib FILE and -o MEASURE are required");
    o.ctx = (int)ctx;
    o.samples = (int)samples;
    o.group = (int)group;
    o.min_expert_tokens = (int)min_tok;
    qm_diag *d = qm_diag_new();
    int verbose = !quiet; /* the per-rank line: every rank, unless -q */
    qm_dist *dist = NULL; /* under mpirun: each rank measures a share of each layer (qmoe(1), DISTRIBUTED RUNS) */
    qm_status st = qm_dist_open(&argc, &argv, &dist, d);
    qm_dist_set_timeout(dist, mpi_timeout);
    int rank = qm_dist_rank(dist), ranks = qm_dist_size(dist);
    quiet |= rank != 0; /* rank 0 reports; the others print errors only */
    o.progress = quiet ? NULL : qm_cli_line;
    o.dist = dist;
    qm_measure_report rep = {0};
    if (st == QM_OK)
        st = qm_measure(argv[optind], calib, out, &o, &rep, d);
    struct rusage ru;
    if (st == QM_OK && verbose && ranks > 1 && getrusage(RUSAGE_SELF, &ru) == 0)
        fprintf(stderr, "qmoe: rank %d of %d: %d layers in %.1f s, %.1f s CPU, %llu bytes sent\n", rank, ranks,
                rep.layers - rep.layers_resumed, rep.seconds,
                (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                    ru.ru_stime.tv_usec / 1e6,
                (unsigned long long)qm_dist_bytes_sent(dist));
    qm_cli_progress_end();
    if (st == QM_OK && !quiet)
        fprintf(stderr, "qmoe: measured %zu %s units at %d widths in %.1f s: %zu GPTQ runs, %.1fx the %zu of one "
                "quantize run%s\n", rep.units, qm_measure_units_name(o.units), o.n_widths, rep.seconds, rep.gptq_runs,
                rep.quantize_gptq_runs ? (double)rep.gptq_runs / rep.quantize_gptq_runs : 0.0, rep.quantize_gptq_runs,
                rep.layers_resumed ? " (resumed; this part only)" : "");
    return qm_cli_end_job(dist, st, d);
}

const qm_cmd qm_cmd_measure = {
    .name = "measure",
    .run = run,
    .synopsis = "measure MODEL --calib FILE -o MEASURE [--widths 2,3,4,8] [--units linear|expert|layer]\n"
                "       [--ctx N] [--samples N] [--group N] [--asym] [--act-order] [--damp X]\n"
                "       [--min-expert-tokens N] [--target gguf] [-q]",
    .summary = "measure each unit's error at each width, for `budget B bits by measured`",
    .help = "Quantizes every unit of MODEL alone at each width with GPTQ (the settings quantize\n"
            "uses) and writes the error it adds to the residual stream (format in qmoe(1)),\n"
            "which `qmoe compile --measure` reads.  Resumable: run it again after an\n"
            "interruption; progress is kept in MEASURE.qmoe-state/.\n\n"
            "  --calib FILE      calibration text (as quantize reads it)\n"
            "  --widths LIST     widths to measure, increasing, of 2,3,4,5,8 (default 2,3,4,8)\n"
            "  --units KIND      linear (each linear: default), expert (attention, each\n"
            "                    expert, shared expert, dense MLP) or layer\n"
            "  --ctx N           window length (default 512)\n"
            "  --samples N       calibration windows (default 128)\n"
            "  --group N         GPTQ group size, 0 per channel (default: 128 where it divides\n"
            "                    the input columns, else per channel, as compile's default)\n"
            "  --asym            asymmetric grid (default symmetric)\n"
            "  --act-order       GPTQ's act-order (default off)\n"
            "  --damp X          GPTQ damping (default 0.01)\n"
            "  --min-expert-tokens N\n"
            "                    experts with fewer routed rows are rounded to nearest (default 16)\n"
            "  --target gguf     rate each width on the grid `quantize --format gguf` writes\n"
            "                    (ggml's block types, as llama.cpp's fit sets the group and\n"
            "                    symmetry from the options above); default: GPTQ as given\n"
            "  -q, --quiet       no progress on standard error\n"
            QM_CLI_MPI_TIMEOUT_HELP
            "  -o, --output FILE the measure file (YAML), written atomically\n",
};
