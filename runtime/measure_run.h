/* measure_run.h: one run of `qmoe measure`, as the two files that make it
 * share it; private to runtime/measure*.c.
 *
 * measure.c measures a layer (each unit's error at each width), keeps the
 * progress state and writes the measure file; measure_dist.c spreads a
 * layer's work items over the ranks of an MPI job (dist.h), gathers their
 * errors on rank 0 and is the life of the ranks other than 0.
 */
#ifndef QM_MEASURE_RUN_H
#define QM_MEASURE_RUN_H

#include "model/plan.h"
#include "runtime/calib.h"
#include "runtime/dist.h"
#include "runtime/gptq.h"
#include "runtime/measure.h"

/* The blocks of a layer whose changes add up in the residual stream. */
typedef enum blk { BLK_ATTN, BLK_MLP, BLK_EXPERT, BLK_SHARED, BLK_COUNT } blk;

/* One unit: its name (the canonical name, or the prefix its linears share),
 * its layer, parameters, and what its error is made of. */
typedef struct munit {
    char *name;       /* owned */
    int layer;
    uint64_t params;
    int blk, slot;    /* linear units: the linear; expert units: the block (slot -1) */
    int expert;       /* routed expert, or -1 */
} munit;

/* A layer's work items, the pieces one rank measures whole: the
 * attention, the dense MLP, the shared expert, then each routed expert
 * (WORK_EXPERT + e). */
enum { WORK_ATTN, WORK_MLP, WORK_SHARED, WORK_EXPERT };

typedef struct mrun {
    const qm_measure_opts *o;
    qm_model *m;
    munit *u;         /* (nu) ordered by layer */
    size_t nu;
    double *err;      /* (nu, n_widths) */
    qm_qspec *spec;   /* --target: (n_widths, m->n) GPTQ's settings of each linear at each width; NULL: the
                       * options' (spec_of()); owned */
    int B, S;
    float *x;         /* (B*S, d) hidden states entering the current layer (unquantized model) */
    const char *out;
    char *sdir;       /* OUT.qmoe-state */
    qm_measure_report *rep;
    qm_diag *d;
    /* a distributed run (dist.h) */
    qm_dist *dist;
    int rank, ranks;
    int *owner;       /* (WORK_EXPERT + experts) the rank of each work item of the current layer; owned */
} mrun;

/* A layer's errors by block: [block][expert][slot or 4 for the whole
 * block][width], flattened; experts 0 for the attention, MLP and shared. */
typedef struct lerr {
    int E, nw;
    double *v;
} lerr;

static inline double *lerr_at(const lerr *e, int b, int expert, int slot, int w)
{
    size_t x = expert < 0 ? 0 : (size_t)expert;
    return &e->v[(((size_t)b * (e->E + 1) + x) * 5 + (size_t)slot) * e->nw + (size_t)w];
}

/* Whether this rank measures work item `item` of the current layer. */
static inline int ms_mine(const mrun *r, int item) { return !r->owner || r->owner[item] == r->rank; }

/* measure.c: the block of a quantizable part and its place in the block
 * (0..3), or -1. */
int ms_part_block(qm_part p, int *slot);
/* measure.c: layer L's work items this rank owns into e (its errors);
 * rank 0 also carries r->x on to the layer's output.  e->v: zeroed, the
 * layer's size. */
qm_status ms_layer_work(mrun *r, int L, lerr *e);

/* measure.c: r->spec for r->o->target (nothing without one), on every rank
 * alike. */
qm_status ms_target_specs(mrun *r);

/* measure_dist.c */
/* Rank 0 once its checks pass: the run's shape to the other ranks. */
qm_status ms_lead(mrun *r);
/* Rank 0 before layer L: its number and hidden states to the others
 * (L < 0: no more layers). */
qm_status ms_lead_layer(mrun *r, int L);
/* Layer L's work items over the ranks (rank 0 decides from the routing
 * it captured, f): r->owner.  One process: every item is its own. */
qm_status ms_assign(mrun *r, const qm_layer_w *w, const qm_calib_ffn *f);
/* Every rank's errors of the layer into rank 0's e, each item from the
 * rank that owns it; the GPTQ runs they made into rank 0's report. */
qm_status ms_gather(mrun *r, int L, lerr *e, size_t runs);
/* A rank other than 0: each layer rank 0 names until it names none. */
qm_status ms_follow(const char *model_dir, const qm_measure_opts *o, qm_measure_report *rep, qm_diag *d);

#endif
