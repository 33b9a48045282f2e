/* matrix.h: the QuantMoE-Bench matrix: many policies against one model.
 *
 * `qmoe bench` drives all three stages for a set of policies: it scores the
 * model once on calibration text (runtime/score.h), compiles every policy
 * against the model and those scores (compiler/), quantizes each plan with
 * GPTQ (runtime/quantize.h), and evaluates each result against the
 * unquantized model (runtime/eval.h).  It sits above the pipeline; nothing
 * below it knows it exists.
 *
 * The output directory (qmoe(1), BENCH OUTPUT):
 *
 *   scores.yaml          the scores every policy was compiled against
 *   base.yaml            the unquantized model's task accuracy (cached)
 *   runs/NAME/plan.yaml  the compiled plan of policy NAME
 *   runs/NAME/model/     its GPTQ checkpoint (resumable; --discard-models)
 *   runs/NAME/model.gguf with --format gguf: the GGUF file quantize writes
 *                        (runs/NAME/model/ then holds the run's state and
 *                        any safetensors shards), which is what is evaluated
 *   runs/NAME/result.yaml  its measurements and the key they were made under
 *   results.yaml results.csv results.md kld_vs_bits.svg
 *
 * Every file is written to a temporary and renamed.  A run is reused when
 * its result.yaml carries the same key: the SHA-256 of the plan's bytes,
 * the calibration, evaluation and task files' hashes and every setting that
 * changes a figure.  A bench that is interrupted continues where it stopped:
 * finished runs are reused, and an unfinished quantization resumes after its
 * last finished layer.  The summaries are rewritten after every run.
 *
 * Under mpirun every rank runs qm_matrix_run(): rank 0 runs the bench and
 * the others take part in each stage's distributed work (matrix/ranks.h);
 * the files are those of one process, less the timings.
 */
#ifndef QM_MATRIX_H
#define QM_MATRIX_H

#include "base/base.h"
#include "runtime/dist.h"
#include "runtime/eval.h"

typedef struct qm_matrix_opts {
    const char *model;              /* unquantized model directory */
    const char *const *policies;    /* (n_policies) policy files or directories of *.qmoe */
    size_t n_policies;
    const char *const *dirs;        /* (n_dirs) -I directories for imports */
    size_t n_dirs;
    const char *calib;              /* calibration text or token ids */
    const char *eval;               /* evaluation text or token ids */
    const char *tasks;              /* multiple-choice JSONL; NULL for none */
    const char *out;                /* output directory */
    int ctx;                        /* window length for all three (default 512) */
    int samples;                    /* calibration windows (scores and GPTQ) */
    size_t eval_tokens;             /* evaluate the first N tokens; 0 = all */
    double damp;                    /* GPTQ damping */
    int discard_models;             /* remove each checkpoint once evaluated */
    int gguf;                       /* quantize each plan to GGUF and evaluate the file */
    void (*progress)(void *ctx, const char *line); /* one line per step; may be NULL */
    void *progress_ctx;
    qm_dist *dist;                  /* the MPI job (dist.h); NULL or one process: a plain bench.
                                       Scoring, measuring, quantizing and evaluating spread over
                                       its ranks; rank 0 alone writes (ranks.h) */
} qm_matrix_opts;

/* One policy's figures. */
typedef struct qm_matrix_row {
    char *name;                     /* the policy file's name less ".qmoe"; owned */
    char *path;                     /* the policy file; owned */
    char key[65];
    double average_bits, effective_bits;
    uint64_t size_bytes;            /* stored bytes of the quantized checkpoint's tensors
                                       (--format gguf: the GGUF file's bytes) */
    qm_eval_result ev;              /* ppl, KLD against the base, top-1 agreement */
    qm_task_result *tasks;          /* (n_tasks), owned */
    size_t n_tasks;
    double quantize_seconds, eval_seconds;
    int reused;                     /* taken from an earlier bench */
    int pareto;                     /* on the KLD-against-bits Pareto front */
} qm_matrix_row;

/* The whole matrix: the base model's figures and a row per policy. */
typedef struct qm_matrix {
    char *arch;                     /* owned */
    char config_sha256[65];
    double base_ppl;
    uint64_t base_bytes;            /* stored bytes of the unquantized weights */
    qm_task_result *base_tasks;     /* (n_base_tasks), owned */
    size_t n_base_tasks;
    const qm_matrix_opts *o;        /* borrowed */
    char calib_sha256[65], eval_sha256[65], tasks_sha256[65];
    qm_matrix_row *rows;            /* (n), owned */
    size_t n;
} qm_matrix;

/* The defaults: quantize's window, samples and damping, output in bench-out. */
qm_matrix_opts qm_matrix_opts_default(void);

/* Run the bench o describes into o->out.  On return m holds the rows
 * finished so far (all of them on success); the caller frees it with
 * qm_matrix_free() whatever the result. */
qm_status qm_matrix_run(const qm_matrix_opts *o, qm_matrix *m, qm_diag *d);
void qm_matrix_free(qm_matrix *m);

/* ---- reports (report.c, svg.c) ---------------------------------------------- */

/* Mark each row's `pareto`: no other row has both fewer or equal average
 * bits and lower or equal mean KLD, one of them strictly. */
void qm_matrix_pareto(qm_matrix_row *rows, size_t n);
/* Sort rows by average bits, then name. */
void qm_matrix_sort(qm_matrix_row *rows, size_t n);

/* Write results.yaml, results.csv, results.md and kld_vs_bits.svg into
 * m->o->out, each atomically. */
qm_status qm_matrix_report(const qm_matrix *m, qm_diag *d);

/* The table as Markdown (results.md) to f. */
void qm_matrix_markdown(const qm_matrix *m, FILE *f);
/* KLD (log scale) against average bits, Pareto front marked, as SVG to f. */
void qm_matrix_svg(const qm_matrix_row *rows, size_t n, const char *title, FILE *f);

/* One run's result.yaml: write it, or read it back (QM_ENOTFOUND when the
 * file does not exist; QM_EFORMAT naming the file when it is damaged).
 * A row read back owns its strings; free with qm_matrix_row_free(). */
qm_status qm_matrix_row_write(const qm_matrix_row *r, const char *path, qm_diag *d);
qm_status qm_matrix_row_read(const char *path, qm_matrix_row *r, qm_diag *d);
void qm_matrix_row_free(qm_matrix_row *r);

#endif
