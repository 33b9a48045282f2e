/* measure.h: `qmoe measure`: the error each quantizable unit adds at each
 * width, for the compiler's `budget B bits by measured` (a knapsack over
 * units and widths, compiler/knapsack.c).
 *
 * Units: `linear` (each attention, expert, shared-expert and dense-MLP
 * linear), `expert` (a layer's attention q/k/v/o together, each routed
 * expert's gate/up/down, the shared expert, the dense MLP) or `layer`
 * (every quantizable linear of a layer; the router is never a unit).
 *
 * The error of unit u at width b.  Everything but u stays unquantized; u
 * is quantized by GPTQ with the settings `quantize` uses (the same
 * Hessians from the same calibration passes, calib.h; group, symmetry,
 * act-order and damping as given), and the error is the squared change of
 * what u's block adds to the residual stream, relative to the stream:
 *
 *     E(u, b) = sum_t || delta_t ||^2 / sum_t || x_t ||^2
 *
 * over the calibration tokens t, where delta_t is the change of the
 * attention output (attention linears) or of the expert's weighted output
 * (FFN linears) at token t, and x_t the hidden state leaving the layer
 * (unquantized).  Every later block and the head read the stream through
 * an RMSNorm, so a change counts by its size against the stream's.  Inside an `expert` unit the linears are
 * quantized in quantize's order (q, k, v, then o from the quantized
 * attention's inputs; gate and up, then down from their quantized
 * activations); a `layer` unit's error is the sum of its blocks' (its
 * attention's and each expert's, each measured alone), because the
 * blocks' changes add up in the stream.  Why this measure, and how it
 * ranks units against a direct KL probe, is in qmoe(1).
 *
 * The model runs layer by layer (one layer's weights, one expert at a
 * time), each layer fed the unquantized model's hidden states.  Progress is
 * saved after every layer in OUT.qmoe-state/; the same command continues
 * after the last finished layer and gives the same bytes.  The output is
 * written atomically.
 *
 * With opts.target "gguf" each width is rated on the grid the GGUF file
 * will hold (ggml's block types), not GPTQ's plain one: what `budget B
 * bits by measured` with `engine llama.cpp fit` then chooses from.
 *
 * Under mpirun (opts.dist, dist.h) a layer's work items (the attention,
 * the dense MLP, the shared expert, each routed expert) are spread over
 * the ranks by qm_dist_assign(); rank 0 carries the hidden states, sends
 * them to the others at each layer, gathers every item's errors and alone
 * writes the state and the measure file: the same bytes as one process
 * (measure_dist.c; qmoe(1), DISTRIBUTED RUNS).
 */
#ifndef QM_MEASURE_H
#define QM_MEASURE_H

#include "base/base.h"
#include "runtime/dist.h"

typedef enum qm_measure_units { QM_UNITS_LINEAR, QM_UNITS_EXPERT, QM_UNITS_LAYER, QM_UNITS_COUNT } qm_measure_units;

/* "linear", "expert", "layer"; NULL out of range. */
const char *qm_measure_units_name(qm_measure_units u);
/* The units named s, or -1. */
int qm_measure_units_find(const char *s);

enum { QM_MEASURE_MAX_WIDTHS = QM_WIDTH_COUNT };

typedef struct qm_measure_opts {
    int ctx;                 /* calibration window (default 512) */
    int samples;             /* windows (default 128; fewer if the text is short) */
    int widths[QM_MEASURE_MAX_WIDTHS]; /* increasing, from qm_widths */
    int n_widths;
    qm_measure_units units;
    int group;               /* -1: the compiler's default per linear (128 where it divides, else per channel) */
    int sym, act_order;
    double damp;
    int min_expert_tokens;   /* below this an expert is rounded to nearest, as quantize's default fallback */
    /* NULL: GPTQ with the settings above.  "gguf": each linear at each
     * width with exactly the GPTQ settings `quantize --format gguf` uses
     * for it (qm_gguf_spec(), the GGUF writer's) under a plan of that width
     * and the settings above as llama.cpp's fit makes them (its group
     * sizes, symmetry and no act-order; the width held, so rows too narrow
     * for 2- and 3-bit k-quants get the writer's fallback). */
    const char *target;
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
    /* The MPI job the run is spread over (dist.h); NULL or one process: a
     * plain run.  Ranks other than 0 write nothing and need no -o or
     * calibration text of their own: rank 0 sends what they work on. */
    qm_dist *dist;
} qm_measure_opts;

typedef struct qm_measure_report {
    int layers, layers_resumed;
    size_t units, gptq_runs, quantize_gptq_runs; /* GPTQ runs made, and the ones one quantize run makes */
    double seconds;
} qm_measure_report;

/* The defaults: 128 windows of 512 tokens, widths 2 3 4 8, linear units,
 * GPTQ as `quantize` runs a plan of the compiler's defaults (symmetric,
 * group 128 where it divides, no act-order, damping 0.01). */
qm_measure_opts qm_measure_opts_default(void);

/* Measure `model_dir` over the calibration text and write the measure file
 * `out` (YAML, format in qmoe(1)). */
qm_status qm_measure(const char *model_dir, const char *calib_path, const char *out, const qm_measure_opts *o,
                     qm_measure_report *rep, qm_diag *d);

#endif
