/* cmd_quantize.c: `qmoe quantize`: execute a bit plan with GPTQ. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/quantize.h"

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plan", required_argument, NULL, 'p'},        {"model", required_argument, NULL, 'm'},
        {"calib", required_argument, NULL, 'c'},       {"ctx", required_argument, NULL, 'x'},
        {"samples", required_argument, NULL, 'n'},     {"damp", required_argument, NULL, 'd'},
        {"min-expert-tokens", required_argument, NULL, 'e'},
        {"expert-fallback", required_argument, NULL, 'F'},
        {"calibrate-all-experts", no_argument, NULL, 'A'},
        {"fake-quant", no_argument, NULL, 'Q'},        {"output", required_argument, NULL, 'o'},
        {"format", required_argument, NULL, 'f'},      {"keep-type", required_argument, NULL, 'K'},
        {"quiet", no_argument, NULL, 'q'},             {"help", no_argument, NULL, 'h'},
        {"engine", required_argument, NULL, 'E'},      {"strict", no_argument, NULL, 'S'},
        {"max-memory", required_argument, NULL, 'M'},  {"mpi-timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
    };
    enum { MAX_ENGINES = 16 }; /* six engines, each named once or a few times */
    const char *engines[MAX_ENGINES];
    const char *plan = NULL, *model = NULL, *calib = NULL, *out = NULL, *format = "gptq";
    qm_quant_opts o = qm_quant_opts_default();
    long ctx = o.ctx, samples = o.samples, min_tok = o.min_expert_tokens;
    int quiet = 0, c;
    double mpi_timeout = 0; /* 0: QMOE_MPI_TIMEOUT or the default */
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hqo:", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'p': plan = optarg; break;
        case 'm': model = optarg; break;
        case 'c': calib = optarg; break;
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'A': o.all_experts = 1; break;
        case 'Q': o.fake_quant = 1; break;
        case 'S': o.strict = 1; break;
        case 'M':
            if (qm_cli_size(&qm_cmd_quantize, "--max-memory", optarg, &o.max_memory))
                return QM_EXIT_USAGE;
            break;
        case 'E':
            if (o.n_engines == MAX_ENGINES)
                return qm_cli_usage(&qm_cmd_quantize, "more than %d --engine options", MAX_ENGINES);
            engines[o.n_engines++] = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "gptq") != 0 && strcmp(optarg, "gguf") != 0)
                return qm_cli_usage(&qm_cmd_quantize, "--format must be 'gptq' or 'gguf', not '%s'", optarg);
            format = optarg;
            break;
        case 'K':
            if (strcmp(optarg, "F32") != 0 && strcmp(optarg, "F16") != 0 && strcmp(optarg, "BF16") != 0)
                return qm_cli_usage(&qm_cmd_quantize, "--keep-type must be F32, F16 or BF16, not '%s'", optarg);
            o.gguf_keep = optarg;
            break;
        case 'x':
            if (qm_cli_long(&qm_cmd_quantize, "--ctx", optarg, 1, 1 << 20, &ctx))
                return QM_EXIT_USAGE;
            break;
        case 'n':
            if (qm_cli_long(&qm_cmd_quantize, "--samples", optarg, 1, 1 << 20, &samples))
                return QM_EXIT_USAGE;
            break;
        case 'e':
            if (qm_cli_long(&qm_cmd_quantize, "--min-expert-tokens", optarg, 0, 1L << 30, &min_tok))
                return QM_EXIT_USAGE;
            break;
        case 'F':
            if (strcmp(optarg, "pooled") == 0)
                o.fallback_pooled = 1;
            else if (strcmp(optarg, "rtn") != 0)
                return qm_cli_usage(&qm_cmd_quantize, "--expert-fallback must be 'rtn' or 'pooled', not '%s'", optarg);
            break;
        case 'd':
            o.damp = strtod(optarg, &end);
            if (end == optarg || *end || !(o.damp >= 0 && o.damp <= 10))
                return qm_cli_usage(&qm_cmd_quantize, "--damp must be a number in [0, 10], not '%s'", optarg);
            break;
        case 'T':
            if (qm_cli_mpi_timeout(&qm_cmd_quantize, optarg, &mpi_timeout))
                return QM_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_quantize.synopsis, qm_cmd_quantize.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_quantize, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc)
        return qm_cli_usage(&qm_cmd_quantize, "unexpected argument '%s'", argv[optind]);
    if (!plan || !model || !calib || !out)
        return qm_cli_usage(&qm_cmd_quantize, "--plan, --model, --calib and -o are required");
    o.engines = engines;
    if (o.gguf_keep && strcmp(format, "gguf") != 0)
        return qm_cli_usage(&qm_cmd_quantize, "--keep-type needs --format gguf");
    char *run_dir = NULL; /* --format gguf: -o names the file; the run's directory is OUT.d */
    if (strcmp(format, "gguf") == 0) {
        if (!(run_dir = qm_strfmt("%s.d", out)))
            return QM_EXIT_FAIL;
        o.gguf = out;
        out = run_dir;
    }
    o.ctx = (int)ctx;
    o.samples = (int)samples;
    o.min_expert_tokens = (int)min_tok;
    qm_diag *d = qm_diag_new();
    qm_dist *dist = NULL; /* the MPI job under mpirun, else one process (qmoe(1), DISTRIBUTED RUNS) */
    qm_status st = qm_dist_open(&argc, &argv, &dist, d);
    qm_dist_set_timeout(dist, mpi_timeout);
    int rank = qm_dist_rank(dist), ranks = qm_dist_size(dist);
    o.dist = dist;
    if (!quiet && rank == 0) /* rank 0 reports; the others print errors only */
        o.progress = qm_cli_line;
    qm_quant_report rep = {0};
    if (st == QM_OK)
        st = qm_quantize(plan, model, calib, out, &o, &rep, d);
    qm_cli_progress_end();
    if (st == QM_OK && !quiet && rank == 0)
        fprintf(stderr, "qmoe: %zu tensors quantized (%zu by fallback) in %.1f s; peak memory %.1f MiB%s\n",
                rep.tensors_quantized, rep.fallbacks, rep.seconds, rep.peak_rss_kib / 1024.0,
                rep.layers_resumed ? " (resumed)" : "");
    if (st == QM_OK && !quiet && ranks > 1)
        fprintf(stderr, "qmoe: rank %d of %d: %d layers in %.1f s, %.1f s CPU, %llu bytes sent, peak memory %.1f MiB\n",
                rank, ranks, rep.layers - rep.layers_resumed * (rank == 0), rep.seconds, rep.cpu_seconds,
                rep.bytes_sent, rep.peak_rss_kib / 1024.0);
    free(run_dir);
    return qm_cli_end_job(dist, st, d);
}

const qm_cmd qm_cmd_quantize = {
    .name = "quantize",
    .run = run,
    .synopsis = "quantize --plan PLAN --model DIR --calib FILE [--ctx N] [--samples N] [--damp D]\n"
                "                 [--min-expert-tokens N] [--expert-fallback rtn|pooled] [--calibrate-all-experts]\n"
                "                 [--fake-quant] [--format gptq|gguf [--keep-type F32|F16|BF16]] [--engine NAME]...\n"
                "                 [--strict] [--max-memory SIZE] [-q] -o OUT",
    .summary = "execute a bit plan: layer-by-layer GPTQ, written as a GPTQ checkpoint",
    .help = "Quantizes each layer in order with the earlier layers already quantized (see qmoe(1)).\n"
            "Rerunning the same command continues after the last finished layer.\n\n"
            "  --plan PLAN               the bit plan (qmoe compile)\n"
            "  --model DIR               the unquantized model the plan was compiled for\n"
            "  --calib FILE              calibration text (the model's tokenizer, or bytes) or ids\n"
            "  --ctx N                   window length (default 512)\n"
            "  --samples N               windows (default 128)\n"
            "  --damp D                  GPTQ damping, fraction of the mean Hessian diagonal (default 0.01)\n"
            "  --min-expert-tokens N     experts routed fewer rows use the fallback (default 16)\n"
            "  --expert-fallback F       rtn (round-to-nearest, default) or pooled (every row)\n"
            "  --calibrate-all-experts   every row through every expert for the Hessians\n"
            "  --fake-quant              also write OUT_DIR/fake-quant, dequantized in the original dtype\n"
            "  --engine NAME             check the plan against a serving engine first (repeatable;\n"
            "                            see qmoe compile --engine); without it, a warning names the\n"
            "                            engines that would refuse or misread the checkpoint\n"
            "  --strict                  what an --engine refuses is an error too\n"
            "  --max-memory SIZE         memory for weights and hidden states (default: 75% of physical);\n"
            "                            hidden states beyond it go to a temporary file in OUT (same results)\n"
            "  -q, --quiet               no progress on standard error\n"
            "  --mpi-timeout S           under mpirun: end the job when one wait for another rank lasts\n"
            "                            S seconds (default 3600, or QMOE_MPI_TIMEOUT)\n"
            "  --format F                gptq (default): -o OUT is the checkpoint directory; gguf: -o OUT is\n"
            "                            a GGUF file for llama.cpp, and OUT.d holds the run (GPTQ checkpoint,\n"
            "                            records, progress)\n"
            "  --keep-type T             GGUF: kept linears as F32, F16 or BF16 (default: as stored)\n"
            "  -o OUT                    the output directory (or GGUF file)\n",
};
