/* ranks.h: `qmoe bench` over the ranks of an MPI job (runtime/dist.h);
 * private to matrix/.
 *
 * Rank 0 runs the bench (run.c) and owns the output directory.  Before
 * each stage that spreads over the ranks (scoring, measuring, each
 * quantization, each evaluation) it names the stage to the others
 * (mx_lead()), and every rank then calls the same library function with
 * the same settings (mx_*_opts(), one definition for all ranks), which
 * splits the work as the command of that stage does under mpirun.
 * Compiling, the base's task accuracy, --tasks and the reports stay on
 * rank 0, which alone writes.  Ranks other than 0 live in mx_follow().
 */
#ifndef QM_MATRIX_RANKS_H
#define QM_MATRIX_RANKS_H

#include "matrix/matrix.h"
#include "runtime/measure.h"
#include "runtime/quantize.h"

typedef enum mx_step { MX_END, MX_SCORES, MX_MEASURE, MX_QUANTIZE, MX_EVAL, MX_STEP_COUNT } mx_step;

/* The settings every rank runs each stage with. */
qm_measure_opts mx_measure_opts(const qm_matrix_opts *o);
/* gguf: the GGUF file of the run, or NULL. */
qm_quant_opts mx_quant_opts(const qm_matrix_opts *o, const char *gguf);
qm_eval_opts mx_eval_opts(const qm_matrix_opts *o);

/* Rank 0: the next step to every other rank, with its paths (MX_QUANTIZE:
 * the plan, the checkpoint directory, the GGUF file or NULL; MX_EVAL: the
 * checkpoint directory, the GGUF file or NULL).  One process: nothing. */
qm_status mx_lead(const qm_matrix_opts *o, mx_step step, const char *a, const char *b, const char *c, qm_diag *d);

/* A rank other than 0: the model and the evaluation tokens, then each
 * step rank 0 names until MX_END. */
qm_status mx_follow(const qm_matrix_opts *o, qm_diag *d);

#endif
