/* quantize.h: executing a bit plan: layer-by-layer GPTQ over calibration text,
 * written as a GPTQ checkpoint that engines load.
 *
 * For each layer in order, with the earlier layers already quantized:
 *   1. q, k, v   from the Hessian of the layer's normed input
 *   2. o         from the attention output, q/k/v already quantized
 *   3. the FFN   router (when the plan quantizes it) from the FFN's normed
 *                input; then expert by expert: gate and up from the rows the
 *                router sends to that expert, down from those rows'
 *                activations through the quantized gate and up; each
 *                expert's Hessians are built, used and freed before the next;
 *                the shared expert and dense MLPs see every row
 *   4. the layer's outputs, all of it quantized, become the next layer's inputs
 * An expert routed fewer than min_expert_tokens rows is quantized by the
 * fallback (round-to-nearest on the same grid, or the layer's pooled
 * Hessian: every row through that expert) and reported, never zeroed.
 *
 * The output directory holds one safetensors shard per layer (plus one for
 * embeddings, final norm and head) with an index, config.json with a
 * "quantization_config" (format "gptq", per-module "dynamic" overrides for
 * the widths that differ from the most common one), quantize_config.json,
 * the plan, and quant_log.yaml.  Progress is saved after every layer in
 * .qmoe-state/; the same command run again continues after the last
 * finished layer, and refuses a directory made from another plan, model,
 * calibration text or settings.
 */
#ifndef QM_QUANTIZE_H
#define QM_QUANTIZE_H

#include "base/base.h"
#include "runtime/dist.h"

typedef struct qm_quant_opts {
    int ctx;                 /* calibration window (default 512) */
    int samples;             /* windows (default 128; fewer if the text is short) */
    double damp;             /* GPTQ damping (default 0.01) */
    int min_expert_tokens;   /* below this an expert uses the fallback (default 16) */
    int fallback_pooled;     /* fallback: 0 round-to-nearest, 1 pooled Hessian */
    int all_experts;         /* every row through every expert for the Hessians */
    int fake_quant;          /* also write dequantized weights in the original dtype */
    /* Bytes for one layer's float32 weights and the hidden states (0: 75%
     * of physical memory); states beyond it go to spill files (net.h). */
    size_t max_memory;
    /* Serving engines to check the plan against before any work
     * (model/engine.h); none: one warning naming those that would refuse
     * or misread the checkpoint.  strict: what they refuse is an error. */
    const char *const *engines;
    size_t n_engines;
    int strict;
    int no_engine_warning;   /* none: no warning either (checkpoints nobody serves) */
    /* Also write this GGUF file (qwriter_gguf.c); GPTQ then rounds every
     * scale to fp16, as ggml's blocks store it.  NULL: none. */
    const char *gguf;
    const char *gguf_keep;   /* kept linears in the GGUF as "F32", "F16", "BF16"; NULL: as stored */
    /* The MPI job the run is spread over (dist.h); NULL or one process:
     * this process does everything.  Rank 0 reads the calibration text and
     * writes the output; the other ranks quantize their share of each
     * layer's routed experts (qm_dist_assign()) and send rank 0 the
     * results, which it writes and sums in expert order: the same bytes
     * for any number of ranks. */
    qm_dist *dist;
    /* One-line progress reports; may be NULL. */
    void (*progress)(void *ctx, const char *line);
    void *progress_ctx;
} qm_quant_opts;

typedef struct qm_quant_report {
    int layers, layers_resumed;
    size_t tensors_quantized, fallbacks;
    double seconds;
    long peak_rss_kib;
    double cpu_seconds;      /* this process's user + system time */
    unsigned long long bytes_sent; /* this rank's bytes to other ranks (dist.h) */
} qm_quant_report;

/* The defaults: 128 windows of 512 tokens, GPTQ's damping, experts with
 * fewer than 16 rows on the round-to-nearest fallback. */
qm_quant_opts qm_quant_opts_default(void);

qm_status qm_quantize(const char *plan_path, const char *model_dir, const char *calib_path,
                      const char *out_dir, const qm_quant_opts *o, qm_quant_report *rep, qm_diag *d);

#endif
