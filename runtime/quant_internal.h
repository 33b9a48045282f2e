/* quant_internal.h: what the quantize pipeline (quantize.c) and its output
 * writer (quant_out.c) share.  Not part of libqmoe's interface: these names
 * carry no qm_ prefix and so are not exported. */
#ifndef QM_QUANT_INTERNAL_H
#define QM_QUANT_INTERNAL_H

#include "runtime/forward.h"
#include "runtime/gptq.h"
#include "runtime/plan.h"
#include "runtime/quantize.h"

/* One quantized linear of the current layer, waiting to be written. */
typedef struct done_t {
    size_t tensor;     /* index into m->t */
    const qm_plan_tensor *pt;
    qm_qresult r;
    long long tokens;
    const char *fallback; /* "none", "rtn" or "pooled" */
    double error, seconds;
} done_t;

typedef struct run {
    const qm_quant_opts *o;
    qm_model *m;
    qm_plan *plan;
    const qm_plan_tensor **by_tensor; /* (m->n) plan entry of each model tensor */
    const char *out;
    int B, S;                 /* calibration windows and their length */
    float *x;                 /* (B*S, d) hidden states entering the current layer */
    qm_layer_w w;             /* current layer, float32, replaced as it is quantized */
    done_t *done;
    size_t n_done, cap_done;
    FILE *log;                /* this layer's log lines */
    qm_quant_report *rep;
    double t0;
    qm_diag *d;
} run;

/* The shard of layer `layer` (-1: model-level tensors) in `dir`. */
qm_status quant_write_shard(run *r, int layer, const char *dir, int fake);
/* Index, config.json, quantize_config.json, the plan, quant_log.yaml. */
qm_status quant_finish(run *r, const char *plan_path, const char *dir, int fake);
/* "OUT/.qmoe-state/FILE"; caller frees. */
char *quant_state_path(const run *r, const char *file);

#endif
