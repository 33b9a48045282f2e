/* forward.h: the MoE forward pass, layer by layer over a batch of sequences.
 *
 * All five architectures share one decoder layer:
 *
 *   h   = x + o( attention( rope( qk_norm( q(n1), k(n1) ) ), v(n1) ) ),  n1 = rmsnorm(x)
 *   out = h + ffn(n2),                                                    n2 = rmsnorm(h)
 *   ffn = dense SwiGLU (dense layers)
 *       | sum over the token's top-k experts of w_e * expert_e(n2)
 *         + shared(n2) [* sigmoid(shared_gate n2) for Qwen2-MoE]
 *
 * Router: softmax in fp32 over all experts, top-k, renormalised when the
 * config says so.  Each expert runs over the rows routed to it (gathered,
 * three sgemms, added back weighted, each token's experts in index order), so
 * the work is that of the active parameters, done as matrix products on
 * OpenBLAS.
 *
 * Threads: a layer is cut into tasks that write disjoint memory (chunks of
 * rows for the linears and norms, one (sequence, head) for attention, chunks
 * of one expert's rows), spread over as many workers as OpenBLAS has threads
 * (OPENBLAS_NUM_THREADS), each calling single-threaded sgemm.  At these sizes
 * (hidden 128) OpenBLAS's own threads cost more than they gain.  The cut does
 * not depend on the worker count, so results are the same, bit for bit, on
 * any number of threads and on every run.
 *
 * Weights are converted to float32 when a layer is loaded (F32, F16, BF16);
 * qm_layer_load() loads one layer, so that callers stream a model through
 * memory one layer at a time (net.h, GPTQ).
 *
 * Hooks let a caller see the rows entering any linear (calibration
 * Hessians), the router's choices (expert frequency) and each MoE block's
 * input and output (block importance) without a second forward pass.
 */
#ifndef QM_FORWARD_H
#define QM_FORWARD_H

#include "model/model.h"

/* A linear layer y = x W^T (+ b). */
typedef struct qm_lin {
    float *w;  /* (out, in) row-major; NULL when absent */
    float *b;  /* (out) or NULL */
    int out, in;
} qm_lin;

/* y (n, out) = x (n, in) W^T (+ b), one sgemm. */
void qm_lin_apply(const qm_lin *l, const float *x, int n, float *y);

typedef struct qm_layer_w {
    int layer, moe;
    float *attn_norm, *ffn_norm;  /* (d) */
    float *q_norm, *k_norm;       /* (head_dim) or (heads*head_dim); NULL when absent */
    qm_lin q, k, v, o;
    qm_lin router;                /* (E, d) */
    qm_lin *gate, *up, *down;     /* (E) experts; owned */
    qm_lin sgate, sup, sdown;     /* shared expert(s), fused */
    float *shared_gate;           /* (d) Qwen2-MoE sigmoid gate; NULL when absent */
    qm_lin mgate, mup, mdown;     /* dense MLP */
} qm_layer_w;

/* Load layer `layer` of `m` as float32, its routed experts too when
 * `experts` is nonzero (else their slots stay empty for qm_expert_load()).
 * Caller frees with qm_layer_free(). */
qm_status qm_layer_load(const qm_model *m, int layer, int experts, qm_layer_w *w, qm_diag *d);
void qm_layer_free(qm_layer_w *w);
/* Load (free) routed expert e's three linears into w's slots. */
qm_status qm_expert_load(const qm_model *m, int layer, int e, qm_layer_w *w, qm_diag *d);
void qm_expert_free(qm_layer_w *w, int e);

/* The model-level weights: embeddings, final norm, lm_head (tied or not). */
typedef struct qm_head_w {
    float *embed;   /* (vocab, d) */
    float *norm;    /* (d) */
    float *lm_head; /* (vocab, d); == embed when tied and both are loaded */
} qm_head_w;

/* Which of them qm_head_load() converts: the embeddings (the start of a
 * run), the final norm and lm_head (its end), or both. */
enum { QM_HEAD_EMBED = 1, QM_HEAD_OUT = 2 };

qm_status qm_head_load(const qm_model *m, int parts, qm_head_w *h, qm_diag *d);
void qm_head_free(qm_head_w *h);

/* Hooks run on the caller's thread, one at a time, in the order Q, K, V, O,
 * router, routing, each expert by index (gate, up, down), the shared expert
 * or dense MLP (gate, up, down), block; the data they see stays valid until
 * the layer returns. */
typedef struct qm_fwd_hooks {
    void *ctx;
    /* Rows x (n, in) entering linear `part` (expert >= 0 for routed experts)
     * of `layer`.  For experts only the routed rows are passed. */
    void (*linear_in)(void *ctx, int layer, qm_part part, int expert, const float *x, int n, int in);
    /* Router choices: idx (T, k) expert indices, w (T, k) weights used. */
    void (*routing)(void *ctx, int layer, const int *idx, const float *w, int T, int k);
    /* An FFN block's input n2 (T, d), its output ffn (T, d), the residual stream
     * before (h) and after (out = h + ffn). */
    void (*block)(void *ctx, int layer, const float *n2, const float *ffn, const float *h,
                  const float *out, int T, int d);
    /* The FFN's input before it runs: its normed input n2 (T, d) and the
     * residual stream h (T, d) after attention; before the router's hooks. */
    void (*ffn_in)(void *ctx, int layer, const float *n2, const float *h, int T, int d);
    /* Nonzero: the layer ends after the router's hooks, without the FFN,
     * and x holds h (for passes that need nothing later). */
    int stop_before_ffn;
} qm_fwd_hooks;

/* Scratch memory for layers over up to T rows in sequences of up to S;
 * reusing one across layers and calls avoids faulting in fresh pages for
 * every layer.  NULL when out of memory; free with qm_fwd_ws_free(). */
typedef struct qm_fwd_ws qm_fwd_ws;
qm_fwd_ws *qm_fwd_ws_new(const qm_model *m, int T, int S);
void qm_fwd_ws_free(qm_fwd_ws *ws);

/* Run one decoder layer in place on x (B*S, d): B sequences of S tokens,
 * positions 0..S-1 each.  ws may be NULL (scratch is then allocated for
 * the call); hooks may be NULL. */
qm_status qm_forward_layer(const qm_model *m, const qm_layer_w *w, float *x, int B, int S,
                           qm_fwd_ws *ws, const qm_fwd_hooks *hooks, qm_diag *d);

/* x (T, d) += y, the FFN's output, and the check qm_forward_layer() ends
 * with: fails naming the first hidden state that is not finite.  S is the
 * window length (for the message). */
qm_status qm_forward_residual(const qm_model *m, int layer, float *x, const float *y, int T, int S, qm_diag *d);

/* The FFN piece by piece, for a caller that holds one expert at a time
 * (quantize.c): the same operations in the same order as qm_forward_layer()
 * on the same group of rows, so the same bytes.  n2 (T, d) is the FFN's
 * normed input, idx and rw (T, k) the routing, y (T, d) the output being
 * summed, zeroed first; ws must hold T rows.  qm_ffn_add_expert() adds
 * routed expert e's weighted output (call it for the experts in increasing
 * order), then qm_ffn_add_rest() adds the shared expert, or for a dense
 * layer sets y to the MLP's output. */
void qm_ffn_add_expert(const qm_model *m, const qm_lin *gate, const qm_lin *up, const qm_lin *down, int e,
                       const float *n2, const int *idx, const float *rw, int T, qm_fwd_ws *ws, float *y);
void qm_ffn_add_rest(const qm_model *m, const qm_layer_w *w, const float *n2, int T, qm_fwd_ws *ws, float *y);
/* qm_ffn_add_expert() in two halves, for a run that computes an expert
 * on one process and sums y on another (dist.h): qm_ffn_expert_out()
 * writes routed expert e's output rows, in token order, to eo (n, d) and
 * returns n (the rows routed to e); qm_ffn_expert_apply() adds them to y,
 * weighted, as qm_ffn_add_expert() does: the same bytes. */
int qm_ffn_expert_out(const qm_model *m, const qm_lin *gate, const qm_lin *up, const qm_lin *down, int e,
                      const float *n2, const int *idx, int T, qm_fwd_ws *ws, float *eo);
void qm_ffn_expert_apply(const qm_model *m, int e, const int *idx, const float *rw, int T, const float *eo, float *y);

/* Embed tokens (B*S) into x (B*S, d).  Tokens must be < vocab. */
void qm_forward_embed(const qm_model *m, const qm_head_w *h, const int *tokens, int n, float *x);
/* Final norm and lm_head: x (n, d) -> logits (n, vocab).  x is overwritten. */
void qm_forward_logits(const qm_model *m, const qm_head_w *h, float *x, int n, float *logits);

/* The window of tokens every command runs the net over unless told
 * otherwise (scoring, calibration, evaluation): 512, the study's. */
enum { QM_DEFAULT_CTX = 512 };

#endif
