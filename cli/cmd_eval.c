/* cmd_eval.c: `qmoe eval`: perplexity, KL divergence against a base model, tasks. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/tokenizer.h"
#include "runtime/eval.h"

static void print_text(const qm_eval_result *r, const qm_task_result *t, size_t nt)
{
    if (r->tokens) {
        printf("tokens      %zu\n", r->tokens);
        printf("ppl         %.4f\n", r->ppl);
        if (r->has_base) {
            printf("base ppl    %.4f\n", r->base_ppl);
            printf("ppl ratio   %.4f\n", r->ppl_ratio);
            printf("KLD         %.6f ± %.6f (median %.6f, p99 %.6f)\n", r->kld_mean, r->kld_se,
                   r->kld_median, r->kld_p99);
            printf("top-1 agree %.2f%%\n", r->top1_agree);
        }
    }
    for (size_t i = 0; i < nt; i++)
        printf("task %-20s n %-6zu acc %.4f ± %.4f  acc_norm %.4f ± %.4f\n", t[i].name, t[i].n,
               t[i].acc, t[i].acc_se, t[i].acc_norm, t[i].acc_norm_se);
}

static qm_status print_yaml(const qm_eval_result *r, const qm_task_result *t, size_t nt, int json, qm_diag *d)
{
    qm_yaml *y = json ? qm_json_begin(stdout) : qm_yaml_begin(stdout);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_map(y);
    if (r->tokens) {
        qm_yaml_kuint(y, "tokens", r->tokens);
        for (int i = 0; i < QM_METRIC_COUNT; i++)
            if (r->has_base || !qm_metrics[i].needs_base) {
                qm_yaml_str(y, qm_metrics[i].key);
                qm_yaml_real(y, qm_metric_value(r, (qm_metric_id)i), qm_metrics[i].digits);
            }
    }
    if (nt) {
        qm_yaml_str(y, "tasks");
        qm_yaml_map(y);
        for (size_t i = 0; i < nt; i++) {
            qm_yaml_str(y, t[i].name);
            qm_yaml_map(y);
            const double v[] = {t[i].acc, t[i].acc_se, t[i].acc_norm, t[i].acc_norm_se};
            const char *k[] = {"acc", "acc_se", "acc_norm", "acc_norm_se"};
            for (int j = 0; j < 4; j++) {
                qm_yaml_str(y, k[j]);
                qm_yaml_real(y, v[j], 4);
            }
            qm_yaml_kuint(y, "n", t[i].n);
            qm_yaml_close(y);
        }
        qm_yaml_close(y);
    }
    return qm_yaml_end(y, d);
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"base", required_argument, NULL, 'b'},   {"text", required_argument, NULL, 't'},
        {"tokens", required_argument, NULL, 'k'}, {"ctx", required_argument, NULL, 'c'},
        {"max-tokens", required_argument, NULL, 'm'}, {"tasks", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'}, {"batch", required_argument, NULL, 'B'},
        {"quiet", no_argument, NULL, 'q'},        {"help", no_argument, NULL, 'h'},
        {"max-memory", required_argument, NULL, 'M'},
        {"mpi-timeout", required_argument, NULL, 'T'}, {NULL, 0, NULL, 0},
    };
    const char *base = NULL, *text = NULL, *ids = NULL, *tasks = NULL;
    long ctx = qm_eval_opts_default().ctx, max_tokens = 0, batch = 0;
    size_t max_memory = 0;
    int yaml = 0, json = 0, quiet = 0, o;
    double mpi_timeout = 0; /* 0: QMOE_MPI_TIMEOUT or the default */
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "qhf:", opts, NULL)) != -1) {
        switch (o) {
        case 'b': base = optarg; break;
        case 't': text = optarg; break;
        case 'k': ids = optarg; break;
        case 'a': tasks = optarg; break;
        case 'q': quiet = 1; break;
        case 'M':
            if (qm_cli_size(&qm_cmd_eval, "--max-memory", optarg, &max_memory))
                return QM_EXIT_USAGE;
            break;
        case 'c':
            if (qm_cli_long(&qm_cmd_eval, "--ctx", optarg, 1, 1 << 20, &ctx))
                return QM_EXIT_USAGE;
            break;
        case 'm':
            if (qm_cli_long(&qm_cmd_eval, "--max-tokens", optarg, 2, 1L << 40, &max_tokens))
                return QM_EXIT_USAGE;
            break;
        case 'B':
            if (qm_cli_long(&qm_cmd_eval, "--batch", optarg, 1, 1024, &batch))
                return QM_EXIT_USAGE;
            break;
        case 'f':
            yaml = strcmp(optarg, "yaml") == 0;
            json = strcmp(optarg, "json") == 0;
            if (!yaml && !json && strcmp(optarg, "text") != 0)
                return qm_cli_usage(&qm_cmd_eval, "--format must be 'text', 'yaml' or 'json', not '%s'", optarg);
            break;
        case 'T':
            if (qm_cli_mpi_timeout(&qm_cmd_eval, optarg, &mpi_timeout))
                return QM_EXIT_USAGE;
            break;
        case 'h':
            printf("usage: qmoe %s\n\n%s", qm_cmd_eval.synopsis, qm_cmd_eval.help);
            return QM_EXIT_OK;
        default:
            return qm_cli_usage(&qm_cmd_eval, "unknown option or missing value '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qm_cli_usage(&qm_cmd_eval, "expected one MODEL");
    if (text && ids)
        return qm_cli_usage(&qm_cmd_eval, "give --text or --tokens, not both");
    if (!text && !ids && !tasks)
        return qm_cli_usage(&qm_cmd_eval, "nothing to evaluate: give --text, --tokens or --tasks");
    int gguf = qm_cli_is_gguf(argv[optind]);
    if (gguf && !base)
        return qm_cli_usage(&qm_cmd_eval, "a GGUF model needs --base MODEL_DIR (its config, tokenizer and layout)");

    qm_diag *d = qm_diag_new();
    qm_model *m = NULL, *bm = NULL;
    qm_net net = {0}, bnet = {0};
    qm_tokens toks = {0};
    qm_eval_result r = {0};
    qm_task_result *tr = NULL;
    size_t ntr = 0;
    qm_dist *dist = NULL; /* under mpirun: each rank scores a share of the windows (qmoe(1), DISTRIBUTED RUNS) */
    qm_status st = qm_dist_open(&argc, &argv, &dist, d);
    qm_dist_set_timeout(dist, mpi_timeout);
    int rank = qm_dist_rank(dist);
    quiet |= rank != 0; /* rank 0 reports */
    if (st == QM_OK)
        st = gguf ? qm_cli_open_gguf_net(argv[optind], base, &m, &net, d) : qm_cli_open_net(argv[optind], &m, &net, d);
    if (st == QM_OK && base)
        st = qm_cli_open_net(base, &bm, &bnet, d);
    /* both runs share the budget (the base's states are counted in its
     * run); states beyond it go to $TMPDIR */
    net.max_memory = bnet.max_memory = max_memory;
    net.progress = bnet.progress = quiet ? NULL : qm_cli_line;
    int own_tokenizer = st == QM_OK && !m->cfg.byte_tokenizer && qm_tokenizer_in_dir(m->dir);
    if (st == QM_OK && text && !m->cfg.byte_tokenizer && !own_tokenizer)
        st = qm_diag_fail(d, QM_EINVAL, "%s has no tokenizer (tokenizer.json, tokenizer.model) and does not declare "
                          "a byte-level one; give token ids with --tokens", argv[optind]);
    if (st == QM_OK && (text || ids)) {
        if (text && own_tokenizer) /* BOS, when the tokenizer adds it, starts the stream */
            st = qm_tokens_from_tokenizer(m->dir, text, m->cfg.vocab, (size_t)max_tokens, 0, &toks, d);
        else
            st = text ? qm_tokens_from_text(text, (size_t)max_tokens, &toks, d)
                      : qm_tokens_from_ids(ids, m->cfg.vocab, (size_t)max_tokens, &toks, d);
        qm_cli_progress p;
        qm_eval_opts eo = qm_eval_opts_default();
        eo.ctx = (int)ctx;
        eo.batch = (int)batch;
        eo.dist = dist;
        if (qm_cli_progress_start(&p, quiet)) {
            eo.progress = qm_cli_progress_show;
            eo.progress_ctx = &p;
        }
        if (st == QM_OK)
            st = qm_eval_ppl(&net, base ? &bnet : NULL, &toks, &eo, &r, d);
    }
    if (st == QM_OK && tasks && rank == 0) /* the tasks run on rank 0 alone */
        st = qm_eval_tasks(&net, tasks, (int)ctx, &tr, &ntr, d);
    qm_cli_progress_end();
    if (st == QM_OK && rank == 0) {
        if (yaml || json)
            st = print_yaml(&r, tr, ntr, json, d);
        else
            print_text(&r, tr, ntr);
        if (fflush(stdout) != 0 || ferror(stdout))
            st = qm_diag_fail(d, QM_EIO, "writing standard output failed");
    }
    qm_task_results_free(tr, ntr);
    qm_tokens_free(&toks);
    qm_cli_close_net(m, &net);
    qm_cli_close_net(bm, &bnet);
    return qm_cli_end_job(dist, st, d);
}

const qm_cmd qm_cmd_eval = {
    .name = "eval",
    .run = run,
    .synopsis = "eval MODEL|FILE.gguf [--base BASE] (--text FILE | --tokens FILE) [--ctx N] [--max-tokens N]\n"
                "                 [--tasks FILE.jsonl] [--max-memory SIZE] [--format text|yaml|json] [-q]",
    .summary = "perplexity, KL divergence against the unquantized model, task accuracy",
    .help = "Scores the next-token predictions of MODEL over windows of --ctx tokens (see qmoe(1)).\n"
            "A GGUF file is read with the layout, config and tokenizer of --base, which it needs.\n\n"
            "  --base DIR        the unquantized model: adds KL divergence, top-1 agreement, PPL ratio\n"
            "  --text FILE       text: through the model's tokenizer, or one token per byte\n"
            "  --tokens FILE     token ids: FILE.u32 little-endian uint32, else decimal text\n"
            "  --ctx N           window length (default 512)\n"
            "  --max-tokens N    use only the first N tokens\n"
            "  --tasks FILE      multiple-choice tasks (JSONL: context, choices, gold, optional task)\n"
            "  --batch N         windows per forward call (default: chosen from the vocabulary size)\n"
            "  --max-memory SIZE memory for weights and hidden states (default: 75% of physical);\n"
            "                    hidden states beyond it go to a temporary file in $TMPDIR\n"
            "  --format FORMAT   text (default), yaml or json (the same keys)\n"
            "  -q, --quiet       no progress on standard error\n"
            QM_CLI_MPI_TIMEOUT_HELP,
};
