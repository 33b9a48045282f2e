/* qwriter.h: the output formats of `qmoe quantize`, as one interface.
 *
 * The pipeline (quantize.c) quantizes a model layer by layer and hands each
 * finished layer to every writer of the run; a writer turns it into one
 * format in its own place under the output directory.  Writers read what
 * the pipeline gives them and never call back into it.  A writer's life:
 *
 *   begin   once, before any layer: make the format's directory, set state
 *   linear  (optional) each quantized linear as soon as it is finished:
 *           the writer packs or converts it into storage of its own (a
 *           spool file, not memory), so that the pipeline frees GPTQ's
 *           result at once instead of holding a layer's worth of them
 *   layer   for each layer not finished by an earlier run, in order, with
 *           the layer's quantized linears (the layer's other tensors are
 *           kept as the checkpoint stores them); a writer with a linear
 *           step writes what that step took and reads only q[k].tensor
 *   end     once after the last layer: model-level tensors (embeddings,
 *           final norm, head), index, configs; frees the state
 *   abort   instead of end when the run fails: frees the state and leaves
 *           what is already on disk for the run that resumes
 *
 * Atomic: every file appears whole under its final name or not at all
 * (qm_afile, qm_st_write).  Resumable: a run killed after layer L and run
 * again calls begin, layer for L+1 on, then end; what layer() wrote for the
 * earlier layers must stay valid and be what end() builds on (one file per
 * layer written once, or per-layer pieces that end() joins).  layer() may
 * also be called again for a layer whose output is already there (a kill
 * between the writer's commit and the pipeline's progress record); it
 * replaces it.  A run over a finished directory calls only begin and end,
 * which must write the same bytes again.
 *
 * The formats, by name (qwriter.c's table): "gptq", the GPTQ checkpoint in
 * the output directory itself (qwriter_gptq.c); "fake-quant", dequantized
 * weights in the original dtype under fake-quant/ (qwriter_fake.c); "gguf",
 * one GGUF file for llama.cpp at job->file (qwriter_gguf.c).  A new
 * format is one file defining a qwriter_ops and one row in that table.
 *
 * A format that fixes GPTQ's grid (GGUF's blocks) says so through spec();
 * a run whose grids the GPTQ checkpoint cannot hold (two-level k-quant
 * grids, qm_pack_linear) writes no GPTQ checkpoint.
 */
#ifndef QM_QWRITER_H
#define QM_QWRITER_H

#include "runtime/gptq.h"
#include "model/model.h"
#include "model/plan.h"

/* What a run gives all its writers; the pipeline owns it and everything it
 * points at, for the writers' whole life. */
typedef struct qwriter_job {
    const qm_model *m;
    const qm_plan *plan;
    const qm_plan_tensor *const *by_tensor; /* (m->n) each model tensor's plan entry */
    double damp;                            /* the GPTQ damping asked for */
    const char *out;                        /* the output directory (exists) */
    const char *file;                       /* single-file formats ("gguf"): the file to write */
    const char *float_type;                 /* "gguf": kept linears as F32, F16 or BF16; NULL: as stored */
    int strict;                             /* "gguf": a k-quant's fallback is an error */
    qm_diag *d;
} qwriter_job;

/* One quantized linear of a layer. */
typedef struct qwriter_linear {
    size_t tensor;             /* index into m->t */
    const qm_plan_tensor *pt;  /* its plan entry: bits, group, sym, act_order */
    qm_qresult r;              /* GPTQ's result; owned by the pipeline */
} qwriter_linear;

typedef struct qwriter qwriter;

/* One format.  Every function returns QM_OK or adds a diagnostic to
 * w->job->d; see the top of this file for when each is called. */
typedef struct qwriter_ops {
    const char *name;
    /* Prepare w->state (NULL until then); on failure nothing to free. */
    qm_status (*begin)(qwriter *w);
    /* Take linear q of layer `layer` (its result may be freed after the
     * call); NULL: layer() needs every linear's result whole. */
    qm_status (*linear)(qwriter *w, int layer, const qwriter_linear *q);
    /* Write layer `layer` with its n quantized linears q (ordered as the
     * pipeline quantized them; the other tensors of the layer are kept). */
    qm_status (*layer)(qwriter *w, int layer, const qwriter_linear *q, size_t n);
    /* Finish the output and free w->state, also on failure. */
    qm_status (*end)(qwriter *w);
    /* Free w->state; nothing on disk is touched. */
    void (*abort)(qwriter *w);
    /* Optional: adjust GPTQ's settings for model tensor i (planned with
     * bits) to the grid the format stores, before GPTQ runs; called with
     * the plan's settings. */
    void (*spec)(const qwriter_job *j, size_t i, qm_qspec *s);
} qwriter_ops;

struct qwriter {
    const qwriter_ops *ops;
    const qwriter_job *job;
    void *state; /* the format's own, from begin until end or abort */
};

/* The format called `name`, or NULL. */
const qwriter_ops *qwriter_find(const char *name);

extern const qwriter_ops qwriter_gptq, qwriter_fake, qwriter_gguf;

/* GPTQ's settings for a linear planned pt (bits 0 or NULL: kept) whose
 * rows hold `in` values, as the ggml type the GGUF writer gives it needs
 * them: s holds the plan's settings (bits, group, sym, act_order, damp) on
 * entry and the grid's on return.  The one source of the GGUF writer's
 * settings, for quantize --format gguf and measure --target gguf alike. */
void qm_gguf_spec(const qm_plan_tensor *pt, uint64_t in, qm_qspec *s);

/* The GGUF file a plan makes (quantize --format gguf), printed to f as a
 * table: rows of tensors alike (base name, ggml type, dims, fallback) with
 * their layers, count and exact bytes, the fallbacks noted, and the total.
 * What the writer refuses is an error here too.  by_tensor: each model
 * tensor's plan entry; float_type, strict: as --keep-type and --strict. */
qm_status qm_gguf_preview(const qm_model *m, const qm_plan *plan, const qm_plan_tensor *const *by_tensor,
                          const char *float_type, int strict, FILE *f, qm_diag *d);

#endif
