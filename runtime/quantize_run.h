/* quantize_run.h: one run of the quantization pipeline, as the two files
 * that make it share it; private to runtime/quantize*.c.
 *
 * quantize.c runs a layer on one process (calibration passes, GPTQ of each
 * linear, writers, progress); quantize_dist.c spreads the routed experts
 * of a MoE layer over the ranks of an MPI job (dist.h) and is the life of
 * the ranks other than 0.  A rank other than 0 has no output directory and
 * no writers: its finished linears go into a package for rank 0 (r->pack),
 * which hands them to qz_take_linear() as if they were its own.
 */
#ifndef QM_QUANTIZE_RUN_H
#define QM_QUANTIZE_RUN_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/calib.h"
#include "runtime/dist.h"
#include "runtime/quantize.h"
#include "runtime/qwriter.h"
#include "runtime/xfer.h"

enum { MAX_WRITERS = 3 }; /* gptq, fake-quant, gguf */

typedef struct run {
    const qm_quant_opts *o;
    qm_model *m;
    qm_plan *plan;
    const qm_plan_tensor **by_tensor; /* (m->n) plan entry of each model tensor */
    const char *out;
    const char *sdir;         /* OUT/.qmoe-state: the progress state (base.h, resumable runs) */
    int B, S;                 /* calibration windows and their length */
    int G;                    /* groups of CHUNK windows: the unit of every pass and store */
    qm_states *xs;            /* (B*S, d) hidden states entering the current layer, by group */
    qm_states *n2s, *ys;      /* (B*S, d) the FFN's normed input and its output, by group */
    qm_layer_w w;             /* current layer, float32, replaced as it is quantized */
    qwriter_linear *done;     /* (n_done) the current layer's quantized linears */
    size_t n_done, cap_done;
    qwriter_job job;          /* what the writers see */
    qwriter writers[MAX_WRITERS];
    int n_writers;            /* begun, not yet ended */
    FILE *log;                /* this layer's log lines */
    qm_quant_report *rep;
    double t0;
    qm_diag *d;
    /* a distributed run (dist.h) */
    qm_dist *dist;
    int rank, ranks;
    qm_xfer *pack;            /* not NULL: finished linears go here, for rank 0 (quantize_dist.c) */
    qm_qspec *specs;          /* (m->n) ranks > 0: rank 0's GPTQ settings of each tensor; owned */
    float *eo;                /* (n_eo, d) with pack: the expert's output rows (quantize.c's pack_output()) */
    size_t n_eo;
    double t_experts;         /* seconds of the current layer's routed experts over all ranks */
    double t_rest;            /* and of the rest of it, rank 0's alone; both -1 for a dense layer */
} run;

#define say(r, ...) qm_progressf((r)->o->progress, (r)->o->progress_ctx, __VA_ARGS__)

/* One linear of a package for rank 0 (xfer.h): what qz_take_linear() needs. */
typedef struct packed_head {
    uint64_t tensor;
    long long tokens;
    char fallback[8];
    double error, seconds;
    int super;
} packed_head;


enum { PACK_END = -1 }; /* packed_head.tensor after a package's last linear */

/* Windows in group g. */
static inline int gwin(const run *r, int g)
{
    return r->B - g * QM_CALIB_CHUNK < QM_CALIB_CHUNK ? r->B - g * QM_CALIB_CHUNK : QM_CALIB_CHUNK;
}

/* The current layer over the calibration windows, its states in the stores. */
static inline qm_calib calib_of(run *r) { return (qm_calib){r->m, &r->w, NULL, r->B, r->S, r->xs, r->n2s, r->ys}; }

/* quantize.c */

/* GPTQ's settings for planned tensor i: the plan's, as the writers' grids
 * need them (ranks other than 0: rank 0's, r->specs). */
qm_qspec qz_plan_spec(const run *r, size_t i);
/* A finished linear, planned tensor ti, to the layer's list, the writers,
 * the report and the log; takes res. */
qm_status qz_take_linear(run *r, size_t ti, qm_qresult *res, long long tokens, const char *fallback, double error,
                         double seconds);
/* Routed expert e: its rows, weights, GPTQ of its linears and its share
 * of the layer's output (with r->pack: its output rows, r->eo). */
qm_status qz_one_expert(run *r, const qm_calib_ffn *cap, int e, qm_fwd_ws *ws);
/* Plan and model describe the same checkpoint; fills r->by_tensor. */
qm_status qz_match_plan(run *r, const char *config_sha);
/* The hidden-state stores (ranks other than 0: the FFN's input only). */
qm_status qz_make_states(run *r);

/* quantize_dist.c */

/* The routed experts of the current MoE layer over the ranks, summed on
 * rank 0 in expert order (cap: rank 0's routing; the others' is filled). */
qm_status qz_spread_experts(run *r, qm_calib_ffn *cap, qm_fwd_ws *ws);
/* Rank 0, before the first layer: the run's shape and GPTQ settings to the others. */
qm_status qz_lead(run *r);
/* The whole run of a rank other than 0. */
qm_status qz_follow(const char *plan_path, const char *model_dir, const qm_quant_opts *o, qm_quant_report *rep,
                    qm_diag *d);

#endif
