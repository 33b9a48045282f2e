/* eval.h: perplexity, KL divergence against the unquantized model, and
 * multiple-choice tasks.
 *
 * Windows: a stream of N tokens is cut into windows of ctx + 1 tokens that
 * share their boundary token: window w feeds tokens [w*ctx, w*ctx + ctx) and
 * scores the prediction of each next token, [w*ctx + 1, w*ctx + ctx].  So
 * every token but the first is scored exactly once, each with between 1 and
 * ctx tokens of context (the context restarts at each window); the last
 * window may be shorter.
 */
#ifndef QM_EVAL_H
#define QM_EVAL_H

#include "runtime/dist.h"
#include "runtime/net.h"
#include "model/tokens.h"

typedef struct qm_eval_opts {
    int ctx;              /* window length (default 512) */
    int batch;            /* windows per forward call (0: choose) */
    /* Called after each batch with tokens scored so far and in all; may be NULL. */
    void (*progress)(void *ctx, size_t done, size_t total);
    void *progress_ctx;
    /* qm_eval_ppl() over the ranks of an MPI job (dist.h; NULL: one
     * process): each rank runs a contiguous share of the windows and
     * rank 0 sums each position's figures in position order, so its
     * result is the same bytes as one process's (the other ranks' is
     * empty). */
    qm_dist *dist;
} qm_eval_opts;

typedef struct qm_eval_result {
    size_t tokens;        /* predictions scored */
    double nll;           /* mean negative log-likelihood, nats */
    double ppl;           /* exp(nll) */
    int has_base;
    double base_ppl;
    double kld_mean, kld_se, kld_median, kld_p99; /* KL(base || model) per token, nats */
    double top1_agree;    /* % of positions where both models' argmax agree */
    double ppl_ratio;     /* ppl / base_ppl */
} qm_eval_result;

/* The defaults every command shares: a window of 512 tokens. */
qm_eval_opts qm_eval_opts_default(void);

/* ---- the metrics (metrics.c) --------------------------------------------------
 * The figures of a qm_eval_result that outputs print, one row each, in the
 * order every output lists them: `qmoe eval --format yaml`, the bench's
 * result.yaml, results.yaml, results.csv and results.md.  A new metric is a
 * field in qm_eval_result, a row here and the code that measures it. */
typedef enum qm_metric_id {
    QM_METRIC_PPL,
    QM_METRIC_BASE_PPL,
    QM_METRIC_PPL_RATIO,
    QM_METRIC_KLD_MEAN,
    QM_METRIC_KLD_SE,
    QM_METRIC_KLD_MEDIAN,
    QM_METRIC_KLD_P99,
    QM_METRIC_TOP1_AGREE,
    QM_METRIC_COUNT
} qm_metric_id;

typedef struct qm_metric {
    const char *key;      /* in YAML and CSV */
    size_t off;           /* of its double in qm_eval_result */
    int digits;           /* decimals in reports (eval YAML, results.yaml, results.csv) */
    int needs_base;       /* measured against a base model */
    int per_policy;       /* a figure of each policy in the bench's results (not base_ppl: one for all) */
    int se;               /* the metric that is this one's standard error, or -1 */
    const char *label;    /* its column in results.md, NULL when not shown there */
    int label_digits;     /* decimals in that column (and of its standard error) */
    const char *ideal;    /* its value for the base model itself in results.md; NULL: base_ppl */
} qm_metric;

extern const qm_metric qm_metrics[QM_METRIC_COUNT];
double qm_metric_value(const qm_eval_result *r, qm_metric_id id);

/* Score `toks` with `net`, and against `base` when it is not NULL. */
qm_status qm_eval_ppl(const qm_net *net, const qm_net *base, const qm_tokens *toks,
                      const qm_eval_opts *o, qm_eval_result *r, qm_diag *d);

/* The base model's log-probabilities at every scored position, made once so
 * that many models can be scored against it without running the base
 * again (qmoe bench).  (tokens - 1) x vocab floats. */
typedef struct qm_eval_ref {
    float *logp;          /* (tokens - 1, vocab), owned */
    int vocab, ctx;
    size_t tokens;        /* the length of the stream it was made on */
} qm_eval_ref;

/* Run `base` over `toks` once: fills ref (caller frees with
 * qm_eval_ref_free()) and r with the base's own perplexity. */
qm_status qm_eval_ref_make(const qm_net *base, const qm_tokens *toks, const qm_eval_opts *o, qm_eval_ref *ref,
                           qm_eval_result *r, qm_diag *d);
void qm_eval_ref_free(qm_eval_ref *ref);
/* As qm_eval_ppl() against the base that made ref, on the same toks and ctx. */
qm_status qm_eval_ppl_ref(const qm_net *net, const qm_eval_ref *ref, const qm_tokens *toks, const qm_eval_opts *o,
                          qm_eval_result *r, qm_diag *d);

typedef struct qm_task_result {
    char *name;           /* owned */
    size_t n;
    double acc, acc_se, acc_norm, acc_norm_se;
} qm_task_result;

/* Multiple-choice tasks from a JSONL file (format in qmoe(1)): each choice is
 * scored by the summed log-likelihood of its tokens after the context;
 * acc takes the best sum, acc_norm the best sum per byte of the choice, as
 * lm-evaluation-harness does.  Results per task name, in first-seen order;
 * caller frees with qm_task_results_free(). */
qm_status qm_eval_tasks(const qm_net *net, const char *path, int ctx, qm_task_result **out,
                        size_t *n_out, qm_diag *d);
void qm_task_results_free(qm_task_result *r, size_t n);

#endif
