/* plan.h: the bit plan, the contract between the compiler and the runtime.
 *
 * A plan lists every weight tensor of a model in checkpoint order with the
 * precision the runtime must give it, and names its inputs by hash so that
 * a plan cannot silently be applied to another model.  The compiler builds
 * plans from policies; the runtime only ever reads this file.
 *
 * YAML layout (qmoe(1) documents every key):
 *
 *   qmoe_plan: 1
 *   policy:  {path: ..., sha256: ..., imports: [{name: ..., sha256: ...}] (only with imports),
 *             engines: [NAME, ...] (only when the policy names engines)}
 *   model:   {architecture: ..., config_sha256: ...}
 *   scores:  {path: ..., sha256: ...} | null
 *   summary: {average_bits, effective_bits,
 *             budget_target_bits, budget_achieved_bits (only with a budget),
 *             predicted_error (only with a budget by measured),
 *             quantized_params, kept_params,
 *             tensors_by_bits: {2: n, 3: n, 4: n, 8: n, keep: n},
 *             bytes_before, bytes_after}
 *   tensors:
 *     - {name, module, shape, dtype, bits: 2|3|4|8|keep, group_size, sym, act_order, rule}
 */
#ifndef QM_PLAN_H
#define QM_PLAN_H

#include "base/base.h"
#include "model/dtype.h"

enum { QM_PLAN_VERSION = 1 };

typedef struct qm_plan_tensor {
    char *name;        /* checkpoint name */
    char *module;      /* canonical name */
    int ndim;
    uint64_t shape[2];
    qm_dtype dtype;    /* as stored in the checkpoint */
    int bits;          /* 2, 3, 4, 8; 0 = keep */
    int group;         /* group size; 0 = per channel */
    int sym, act_order;
    char *rule;        /* "file:line" of the deciding rule, or "default" */
} qm_plan_tensor;

typedef struct qm_plan_summary {
    double average_bits;     /* weight bits over quantized parameters */
    double effective_bits;   /* with scales, zeros and g_idx as stored */
    uint64_t quantized_params, kept_params;
    size_t by_bits[QM_MAX_WIDTH + 1]; /* tensors per width; [0] = kept */
    uint64_t bytes_before, bytes_after;
    /* The policy's `budget X bits`: the target and the average the
     * allocation reached (average_bits, which the reader checks). */
    int has_budget;
    double budget_target_bits, budget_achieved_bits;
    /* `budget X bits by measured`: the summed measured error of the
     * chosen widths (qmoe measure's units). */
    int has_predicted;
    double predicted_error;
} qm_plan_summary;

/* A file the policy imported: its import name and the sha256 of its bytes. */
typedef struct qm_plan_import {
    char *name, *sha256;
} qm_plan_import;

/* A plan's strings live in its arena `strings` or in its owner. */
typedef struct qm_plan {
    char *policy_path, *policy_sha256;
    qm_plan_import *imports;           /* (nimports) each file once, first import first; owned.
                                        * Written by compile; qm_plan_read() leaves it empty */
    size_t nimports;
    /* The engines the policy names (`engine NAME`, model/engine.h), which
     * every command writing its checkpoint checks: (nengines), in the
     * strings arena; written and read only when there are some. */
    char **engines;
    size_t nengines;
    char *arch, *config_sha256;
    char *scores_path, *scores_sha256; /* NULL when no scores were used */
    qm_plan_summary summary;
    size_t n;
    qm_plan_tensor *t;                 /* (n), checkpoint order; owned */
    qm_arena strings;                  /* the strings above and in t, unless borrowed: */
    /* What t's names and modules borrow from, released with the plan: a
     * compiled plan keeps its model open rather than copy 74k names. */
    void *owner;
    void (*owner_free)(void *owner);
} qm_plan;

void qm_plan_free(qm_plan *p);
/* Fill p->summary's counts and averages from p->t; the budget fields are kept. */
void qm_plan_summarize(qm_plan *p);
/* The group size of a weight with `in` input columns when no rule sets one:
 * 128 where it divides them, else one group per row (0). */
int qm_plan_default_group(uint64_t in);
/* How one tensor is quantized, as an engine reading the checkpoint must
 * take it: bits 0 (kept) makes the other fields irrelevant. */
typedef struct qm_scheme {
    int bits, group, sym, act_order;
} qm_scheme;
qm_scheme qm_plan_scheme(const qm_plan_tensor *t);
int qm_scheme_same(qm_scheme a, qm_scheme b);
/* The scheme most quantized tensors of p share (the first seen among as
 * many), which a GPTQ checkpoint states as its base; {4, 128, sym} when
 * nothing is quantized. */
qm_scheme qm_plan_base_scheme(const qm_plan *p);
/* Stored bytes of one tensor under the plan (packed GPTQ tensors when quantized). */
uint64_t qm_plan_tensor_bytes(const qm_plan_tensor *t);
/* Write the plan as YAML to `f` (byte-identical for identical plans). */
qm_status qm_plan_emit(const qm_plan *p, FILE *f, qm_diag *d);
/* The two ways qm_plan_emit() has, for tests: through libyaml's emitter
 * (always possible), and printed directly, which returns QM_EINVAL without
 * writing when a string of the plan is not simple enough. */
qm_status qm_plan_emit_libyaml(const qm_plan *p, FILE *f, qm_diag *d);
qm_status qm_plan_emit_direct(const qm_plan *p, FILE *f, qm_diag *d);
/* Write atomically to `path`. */
qm_status qm_plan_write(const qm_plan *p, const char *path, qm_diag *d);
/* The plan as JSON with the same keys (`compile --format json`), to f or
 * atomically to path.  qm_plan_read() reads YAML plans only. */
qm_status qm_plan_emit_json(const qm_plan *p, FILE *f, qm_diag *d);
qm_status qm_plan_write_json(const qm_plan *p, const char *path, qm_diag *d);
/* Read and validate a plan file.  Caller frees with qm_plan_free(). */
qm_status qm_plan_read(const char *path, qm_plan **out, qm_diag *d);

#endif
