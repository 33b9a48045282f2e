/* calib.h: a decoder layer's calibration data, as GPTQ needs it: the
 * passes over the calibration windows that gather one linear's Hessian,
 * the FFN's input and routing, each routed expert's rows, the SwiGLU
 * activations a `down` sees, and the FFN's output piece by piece.
 *
 * `qmoe quantize` (quantize.c) and `qmoe measure` (measure.c) both run a
 * layer through these, so what measure calls "the error GPTQ makes at b
 * bits" is computed from the very Hessians quantize builds.  Every pass
 * takes the windows CHUNK at a time, as a forward pass does, so the rows
 * reach the Hessians in the same order and the results are the same bytes
 * on any thread count.
 */
#ifndef QM_CALIB_H
#define QM_CALIB_H

#include "runtime/forward.h"
#include "runtime/gptq.h"
#include "runtime/states.h"

enum { QM_CALIB_CHUNK = 8 }; /* windows per forward call: a group, the unit of every pass and store */

/* One layer over the calibration windows.  The hidden states are arrays
 * (x, and the FFN's n2 and y) or, with xs set, three stores (states.h) of
 * groups of QM_CALIB_CHUNK windows, in memory or spilled to disk: the
 * layer's input xs, the FFN's input n2s and its output ys (x, f->n2 and
 * the y arguments are then unused). */
typedef struct qm_calib {
    const qm_model *m;
    const qm_layer_w *w;  /* the layer as it stands (its linears may be quantized already) */
    float *x;             /* (B*S, d) hidden states entering the layer */
    int B, S;             /* windows and their length */
    qm_states *xs, *n2s, *ys; /* the stores instead of arrays (NULL: arrays); not owned */
} qm_calib;

/* The FFN's input over all windows, captured by qm_calib_capture(). */
typedef struct qm_calib_ffn {
    float *n2;   /* (T, d) the FFN's normed input; NULL with stores (c->n2s) */
    int *idx;    /* (T, k) routing; NULL for a dense layer */
    float *rw;   /* (T, k) routing weights; NULL for a dense layer */
} qm_calib_ffn;

/* H (in, in) = sum of x^T x over the rows entering linear `part` (the
 * first expert-less linear of that part), accumulated over all windows;
 * *rows: how many.  Caller frees *H. */
qm_status qm_calib_hessian(const qm_calib *c, qm_part part, int in, float **H, long long *rows, qm_diag *d);

/* Run the layer's attention over all windows: f receives the FFN's input
 * and routing (f's arrays allocated here, freed by qm_calib_ffn_free();
 * with stores the input goes to c->n2s); h_out (B*S, d), when not NULL,
 * the residual stream after attention.  h_out may be c->x.  With stores
 * h_out must be NULL and the residual replaces the layer's input in c->xs. */
qm_status qm_calib_capture(const qm_calib *c, qm_calib_ffn *f, float *h_out, qm_diag *d);
void qm_calib_ffn_free(qm_calib_ffn *f);

/* The residual stream after attention, h_out (B*S, d), over all windows. */
qm_status qm_calib_attention(const qm_calib *c, float *h_out, qm_diag *d);

/* The rows the router sent to expert e (every row: e < 0), without copying. */
size_t qm_calib_count(const qm_calib *c, const qm_calib_ffn *f, int e);

/* Copy the rows the router sent to expert e (every row: e < 0), in token
 * order, into X (qm_calib_count() rows of d) and their routing weights
 * into wt (may be NULL; e >= 0 only); returns their number, or -1 after a
 * diagnostic when a spilled store cannot be read. */
int qm_calib_routed(const qm_calib *c, const qm_calib_ffn *f, int e, float *X, float *wt, qm_diag *d);

/* A (n, W) = silu(X g^T) * (X u^T): what `down` sees, for rows X (n, D). */
qm_status qm_calib_act(const float *X, int n, const qm_lin *g, const qm_lin *u, float *A, qm_diag *d);

/* y (T, d) += routed expert e's weighted output with linears g, u, dn
 * (e >= 0), or the shared expert's / dense MLP's from w (e < 0), over the
 * same groups of windows a forward pass takes (so the same bytes); with
 * stores into c->ys (y unused). */
qm_status qm_calib_ffn_add(const qm_calib *c, const qm_layer_w *w, const qm_calib_ffn *f, int e, const qm_lin *g,
                           const qm_lin *u, const qm_lin *dn, qm_fwd_ws *ws, float *y, qm_diag *d);

/* Routed expert e's share of the FFN's output computed apart from where
 * it is summed (a distributed run, dist.h): qm_calib_expert_out() writes
 * the expert's output rows over all groups, in token order, to eo
 * (qm_calib_count(e) rows of d); qm_calib_expert_apply() adds them,
 * weighted, to y (with stores c->ys) as qm_calib_ffn_add() would have:
 * the same bytes. */
qm_status qm_calib_expert_out(const qm_calib *c, const qm_calib_ffn *f, int e, const qm_lin *g, const qm_lin *u,
                              const qm_lin *dn, qm_fwd_ws *ws, float *eo, qm_diag *d);
qm_status qm_calib_expert_apply(const qm_calib *c, const qm_calib_ffn *f, int e, const float *eo, float *y,
                                qm_diag *d);

/* x (B*S, d) += y, the FFN's output, over the same groups of windows
 * (qm_forward_residual()): the layer's output; with stores c->xs += c->ys
 * (y unused). */
qm_status qm_calib_residual(const qm_calib *c, const float *y, qm_diag *d);

/* A scratch workspace for qm_calib_ffn_add(); free with qm_fwd_ws_free(). */
qm_fwd_ws *qm_calib_ws(const qm_calib *c);

/* GPTQ of W (out, in) with the accumulated H over `rows` rows.  With
 * `last` GPTQ works in H itself (finished, then overwritten by the inverse
 * factor: no later linear uses it; the caller still frees it), else in a
 * copy.  *error (may be NULL): the relative error of the layer's output,
 * tr(D H D^T) / tr(W H W^T), its numerator GPTQ's own loss (r->loss) and
 * its denominator ||W X^T||^2 from the rows X (nx, in) H was built from
 * when X is given and nx < in (fewer FLOPs), else from H; NAN when memory
 * for the denominator ran out.  On success r holds the result (caller
 * frees with qm_qresult_free()). */
qm_status qm_calib_gptq(const float *W, int out, int in, float *H, int last, long long rows, const float *X, int nx,
                        const qm_qspec *s, qm_qresult *r, double *error, qm_diag *d);

#endif
