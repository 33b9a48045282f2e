/* cmd_compile.c: `qmoe compile POLICY --model DIR`: the bit plan a policy
 * gives a model, as YAML (qmoe(1), PLAN FILES) or a readable table; and the
 * argument parsing it shares with `qmoe explain`. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "runtime/qwriter.h"
#include "compiler/compiler.h"
#include "model/engine.h"

static void table(const qm_plan *p, FILE *f)
{
    const qm_plan_summary *s = &p->summary;
    fprintf(f, "policy          %s\n", p->policy_path);
    fprintf(f, "model           %s\n", p->arch);
    fprintf(f, "scores          %s\n", p->scores_path ? p->scores_path : "(none)");
    fprintf(f, "\n%-8s %10s %18s %8s\n", "width", "tensors", "params", "share");
    uint64_t params[QM_MAX_WIDTH + 1] = {0};
    for (size_t i = 0; i < p->n; i++)
        params[p->t[i].bits] += p->t[i].ndim == 2 ? p->t[i].shape[0] * p->t[i].shape[1] : p->t[i].shape[0];
    uint64_t all = s->quantized_params + s->kept_params;
    for (int w = 0; w <= QM_WIDTH_COUNT; w++) { /* the widths, then the kept */
        int b = w < QM_WIDTH_COUNT ? qm_widths[w] : 0;
        if (!s->by_bits[b])
            continue;
        char name[8];
        snprintf(name, sizeof name, b ? "%dbit" : "keep", b);
        fprintf(f, "%-8s %10zu %18llu %7.2f%%\n", name, s->by_bits[b], (unsigned long long)params[b],
                all ? 100.0 * (double)params[b] / (double)all : 0.0);
    }
    fprintf(f, "\naverage bits    %.4f  (over %llu quantized parameters)\n", s->average_bits,
            (unsigned long long)s->quantized_params);
    fprintf(f, "effective bits  %.4f  (with scales, zeros and g_idx)\n", s->effective_bits);
    if (s->has_budget)
        fprintf(f, "budget          %.4f bits targeted, %.4f achieved\n", s->budget_target_bits,
                s->budget_achieved_bits);
    fprintf(f, "kept params     %llu\n", (unsigned long long)s->kept_params);
    fprintf(f, "bytes           %llu -> %llu  (%.2fx smaller)\n", (unsigned long long)s->bytes_before,
            (unsigned long long)s->bytes_after,
            s->bytes_after ? (double)s->bytes_before / (double)s->bytes_after : 0.0);
}

int qm_cli_compile_args(const qm_cmd *cmd, int argc, char **argv, int n_args, qm_cli_compile_argv *a)
{
    /* --strict, --format, -o, --engine, --fit and --target are compile's alone: explain's table starts after them. */
    static const struct option opts[] = {
        {"strict", no_argument, NULL, 'S'},      {"format", required_argument, NULL, 'f'},
        {"output", required_argument, NULL, 'o'}, {"engine", required_argument, NULL, 'E'},
        {"fit", required_argument, NULL, 'F'},     {"target", required_argument, NULL, 'T'},
        {"model", required_argument, NULL, 'm'},  {"scores", required_argument, NULL, 's'},
        {"measure", required_argument, NULL, 'M'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int full = cmd == &qm_cmd_compile;
    memset(a, 0, sizeof *a);
    a->format = "yaml";
    /* Every -I or --engine value is an argument, so argc bounds their number. */
    if (!(a->dirs = calloc((size_t)argc, sizeof *a->dirs)) || !(a->engines = calloc((size_t)argc, sizeof *a->engines))) {
        qm_cli_compile_args_free(a);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    a->o.dirs = a->dirs;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, full ? "hI:o:" : "hI:", full ? opts : opts + 6, NULL)) != -1) {
        switch (c) {
        case 'I': a->dirs[a->o.n_dirs++] = optarg; break;
        case 'm': a->o.model = optarg; break;
        case 's': a->o.scores = optarg; break;
        case 'M': a->o.measure = optarg; break;
        case 'S': a->o.strict = 1; break;
        case 'f': a->format = optarg; break;
        case 'o': a->output = a->o.output = optarg; break;
        case 'E': a->engines[a->n_engines++] = optarg; break;
        case 'F': a->o.fit = a->engines[a->n_engines++] = optarg; break; /* and checked as --engine */
        case 'T': a->target = optarg; break;
        case 'h':
            qm_cli_compile_args_free(a);
            printf("usage: qmoe %s\n\n%s", cmd->synopsis, cmd->help);
            return QM_EXIT_OK;
        default:
            qm_cli_compile_args_free(a);
            if (optopt)
                return qm_cli_usage(cmd, "option -%c needs a value", optopt);
            return qm_cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!a->o.model || argc - optind != n_args) {
        qm_cli_compile_args_free(a);
        if (!a->o.model)
            return qm_cli_usage(cmd, "--model DIR is required");
        return qm_cli_usage(cmd, n_args == 1 ? "expected one POLICY" : "expected POLICY and SELECTOR");
    }
    if (strcmp(a->format, "yaml") != 0 && strcmp(a->format, "json") != 0 && strcmp(a->format, "table") != 0) {
        qm_cli_compile_args_free(a);
        return qm_cli_usage(cmd, "--format '%s': expected yaml, json or table", a->format);
    }
    if (a->target && (strcmp(a->target, "gguf") != 0 || strcmp(a->format, "table") != 0)) {
        qm_cli_compile_args_free(a);
        return qm_cli_usage(cmd, strcmp(a->target, "gguf") ? "--target '%s': expected gguf"
                                                           : "--target %s needs --format table", a->target);
    }
    for (size_t k = 0; k < a->n_engines; k++)
        if (!qm_engine_find(a->engines[k])) {
            qm_buf names = {0};
            qm_engine_list(&names);
            int rc = qm_cli_usage(cmd, "--engine '%s': expected one of %s", a->engines[k], names.s ? names.s : "");
            free(names.s);
            qm_cli_compile_args_free(a);
            return rc;
        }
    a->o.policy = argv[optind];
    a->args = argv + optind + 1;
    return -1;
}

void qm_cli_compile_args_free(qm_cli_compile_argv *a)
{
    free(a->dirs);
    free(a->engines);
    a->dirs = NULL;
    a->engines = NULL;
    a->o.dirs = NULL;
}

/* -o PLAN against the inputs: the policy, the model the plan was compiled
 * against (its directory, config and shards; compiling writes nothing, so
 * checking after it still comes before any write, and the model is not
 * opened twice), the scores.  The compiler checks the imports (o.output). */
static qm_status check_output(const qm_cli_compile_argv *a, const qm_plan *p, qm_diag *d)
{
    return qm_model_check_output(qm_compiled_model(p), "-o", a->output, 0,
                                 (const qm_path_input[]){{a->o.policy, "the policy"}, {a->o.scores, "the scores"},
                                                         {a->o.measure, "the measure file"}},
                                 3, d);
}

/* Each --engine and each engine the policy names against the plan
 * (diagnostics in d), or with none named and a table to print, every
 * engine quietly; verdicts in v (qm_n_engines),
 * each engine at its place in qm_engines, NULL where not checked. */
static qm_status check_engines(const qm_cli_compile_argv *a, const qm_plan *p, qm_engine_verdict **v, qm_diag *d)
{
    int table = strcmp(a->format, "table") == 0;
    const qm_model *m = qm_compiled_model(p);
    const qm_plan_tensor **by = calloc(p->n + 1, sizeof *by);
    qm_status st = by ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < p->n; i++)
        by[i] = &p->t[i]; /* a compiled plan lists the model's tensors in its order */
    for (size_t k = 0; st == QM_OK && k < qm_n_engines; k++) {
        int named = 0;
        for (size_t j = 0; j < a->n_engines; j++)
            named |= strcmp(a->engines[j], qm_engines[k]->name) == 0;
        for (size_t j = 0; j < p->nengines; j++) /* the policy's `engine NAME` */
            named |= strcmp(p->engines[j], qm_engines[k]->name) == 0;
        if ((named || (table && !a->n_engines && !p->nengines)) && !(v[k] = calloc(1, sizeof *v[k])))
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        if (v[k])
            st = qm_engine_check(qm_engines[k], m, p, by, a->o.strict, v[k], named ? d : NULL);
    }
    free(by);
    if (st == QM_OK && qm_diag_errors(d))
        st = QM_EINVAL; /* an engine would refuse (--strict) or misread it: no plan */
    return st;
}

static void engine_table(qm_engine_verdict *const *v, FILE *f)
{
    fprintf(f, "\n%-13s %-9s %s\n", "engine", "servable", "first reason");
    for (size_t k = 0; k < qm_n_engines; k++)
        if (v[k])
            fprintf(f, "%-13s %-9s %s%s%s\n", qm_engines[k]->name,
                    v[k]->wrong ? "wrongly" : v[k]->refuses ? "no" : "yes", v[k]->why,
                    strcmp(qm_engines[k]->format, "gptq") ? v[k]->why[0] ? "; as " : "as " : "",
                    strcmp(qm_engines[k]->format, "gptq") ? qm_engines[k]->format : "");
}

/* --target gguf: the GGUF file's tensors under the plan (qwriter.h). */
static qm_status gguf_table(const qm_cli_compile_argv *a, const qm_plan *p, qm_diag *d)
{
    const qm_plan_tensor **by = calloc(p->n + 1, sizeof *by);
    if (!by)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++)
        by[i] = &p->t[i]; /* a compiled plan lists the model's tensors in its order */
    qm_status st = qm_gguf_preview(qm_compiled_model(p), p, by, NULL, a->o.strict, stdout, d);
    free(by);
    return st;
}

static int run(int argc, char **argv)
{
    qm_cli_compile_argv a;
    int rc = qm_cli_compile_args(&qm_cmd_compile, argc, argv, 1, &a);
    if (rc >= 0)
        return rc;
    qm_diag *d = qm_diag_new();
    if (!d) {
        qm_cli_compile_args_free(&a);
        fputs("qmoe: out of memory\n", stderr);
        return QM_EXIT_FAIL;
    }
    qm_plan *p = NULL;
    qm_engine_verdict **v = calloc(qm_n_engines, sizeof *v); /* (qm_n_engines), freed below */
    qm_status st = v ? qm_compile(&a.o, &p, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK && a.output)
        st = check_output(&a, p, d);
    if (st == QM_OK)
        st = check_engines(&a, p, v, d);
    if (st == QM_OK) {
        if (strcmp(a.format, "table") == 0) {
            table(p, stdout);
            engine_table(v, stdout);
            if (a.target) /* the file `quantize --format gguf` writes, tensor by tensor */
                st = gguf_table(&a, p, d);
        } else if (strcmp(a.format, "json") == 0) {
            st = a.output ? qm_plan_write_json(p, a.output, d) : qm_plan_emit_json(p, stdout, d);
        } else if (a.output) {
            st = qm_plan_write(p, a.output, d);
        } else {
            st = qm_plan_emit(p, stdout, d);
        }
        /* a failed write leaves only stdout's error flag (and errno) */
        if (st == QM_OK && (!a.output || strcmp(a.format, "table") == 0) && (fflush(stdout) != 0 || ferror(stdout)))
            st = qm_diag_fail(d, QM_EIO, "standard output: write failed: %s", strerror(errno));
    }
    rc = qm_cli_report(d);
    for (size_t k = 0; v && k < qm_n_engines; k++)
        free(v[k]);
    free(v);
    qm_plan_free(p);
    qm_diag_free(d);
    qm_cli_compile_args_free(&a);
    return st != QM_OK ? QM_EXIT_FAIL : rc;
}

const qm_cmd qm_cmd_compile = {
    .name = "compile",
    .run = run,
    .synopsis = "compile POLICY --model DIR [--scores FILE] [--measure FILE] [-I DIR]... [--strict]\n"
                "                [--engine NAME]... [--fit NAME] [-o PLAN] [--format yaml|json|table [--target gguf]]",
    .summary = "compile a policy for a model into a bit plan",
    .help = "Matches POLICY (qmoe-policy(5)) against the model's tensors and scores and\n"
            "writes the bit plan: YAML, byte-identical for identical inputs.\n\n"
            "  --model DIR       the model directory (config.json + safetensors); required\n"
            "  --scores FILE     scores from `qmoe score` for data-driven selections\n"
            "  --measure FILE    errors from `qmoe measure` for the scorer `measured` and\n"
            "                    `budget B bits by measured`\n"
            "  -I DIR            look for imports in DIR first (repeatable)\n"
            "  --strict          a rule that matches nothing is an error, and so is a plan\n"
            "                    an --engine refuses\n"
            "  --engine NAME     check the plan against a serving engine (repeatable):\n"
            "                    vllm, sglang, transformers, gptqmodel, autogptq or\n"
            "                    llama.cpp; what it would serve wrongly is an error,\n"
            "                    what it refuses a warning\n"
            "  --fit NAME        change the plan, after the rules and the budget, to the\n"
            "                    nearest one engine NAME serves (qmoe(1), ENGINES)\n"
            "  -o, --output PLAN write the plan to PLAN atomically (default: stdout)\n"
            "  --format FMT      yaml (default), json (the same keys) or table: widths,\n"
            "                    counts, average and effective bits, bytes before and\n"
            "                    after, and whether each engine (the --engine ones,\n"
            "                    else all) serves it\n"
            "  --target gguf     with --format table: the GGUF file quantize --format gguf\n"
            "                    writes, its tensors' ggml types, exact bytes and fallbacks\n",
};
