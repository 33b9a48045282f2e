/* gptq.h: GPTQ (Frantar et al., 2022) for one linear layer, and the quantizer grid.
 *
 * For a weight W (out, in) and calibration inputs X (n, in), GPTQ quantizes
 * W column by column, each time spreading the column's rounding error over
 * the columns not yet quantized, weighted by the inverse Hessian
 * H = 2 X^T X / n, so that the layer's outputs X W^T move as little as
 * possible.  Steps, as in the paper and its reference code:
 *
 *   1. dead columns (H_ii = 0: the input is always zero) get H_ii = 1 and W_:i = 0
 *   2. act-order (optional): process columns by descending H_ii
 *   3. damping: H += damp * mean(diag H) * I; if H is still not positive
 *      definite, damp is multiplied by 10 and the factorisation retried
 *   4. U = upper Cholesky factor of H^-1 (from a Cholesky factorisation and strtri
 *      of H with its order reversed; see factor() in gptq.c)
 *   5. for each column i: q = quant(w_i); err = (w_i - q) / U_ii;
 *      w_j -= err * U_ij for the later columns j
 *
 * qm_gptq_ref() does exactly that, column by column.  qm_gptq() does the
 * same on H's own Cholesky factor V (H = V V^T, V upper), which needs no
 * inverse: column j is quantized from w_j + sum_{i < j} (w_i - q_i) V_ij /
 * V_jj with the original weights w (the same value as step 5's, see gptq.c),
 * and a block of 128 columns updates all later ones with one sgemm (the
 * "lazy batch" update, where the FLOPs are).  Both give the same result
 * up to rounding; qm_gptq()'s factor costs half the FLOPs.
 *
 * Quantizer: per output row and group of `group` input columns (or the whole
 * row for per-channel), from the min and max of the group's current
 * weights (with 0 always inside the range):
 *   asym  scale = (max - min) / maxq, zero = max(1, round(-min / scale))
 *   sym   scale = 2 max|w| / maxq,    zero = (maxq + 1) / 2
 *   q = clamp(round(w / scale) + zero, 0, maxq), w' = scale (q - zero)
 * where maxq = 2^bits - 1 and round is to nearest even; with fp16_scale the
 * scale is rounded to the nearest fp16 value (at least the smallest one)
 * before the zero point and the codes are taken from it, and an asymmetric
 * scale first to 7 significant bits (6 at 5 bits), so that -scale * zero
 * (zero < 16, or 32) is an fp16 value as well: ggml's Q4_1 and Q5_1 blocks
 * (d q + m, d and m fp16) then hold scale (q - zero) exactly.  (The floor of 1 on
 * the asymmetric zero point exists because GPTQ checkpoints store zero - 1;
 * it only matters for a group whose weights are all >= 0.)  The optional MSE
 * search shrinks the range by p in 1, 0.99, ..., 0.21 and keeps the p with
 * the least sum |w - w'|^2.4 (the reference code's clipping search).
 *
 * Signed-max grid (signed_max, symmetric one-level grids; ggml's
 * quantize_row_q4_0_ref): v = the group's weight of largest magnitude,
 * scale = -v / zero (negative when v > 0), so v lands exactly on code 0 and
 * the other side reaches (maxq - zero) |scale|: a step of max / 8 at 4 bits
 * instead of 2 max / 15, and no weight clipped.  With fit_scale, 19
 * candidates 1 / scale = -(zero + 0.1 t) / v, t = -9..9: for each, the
 * group's codes l in [-zero, maxq - zero] are rounded and the scale refit
 * to them by least squares weighted by the columns' H_ii (the undamped Hessian
 * diagonal: what llama.cpp's importance matrix holds; 1 without a
 * Hessian), sum H_ii x l / sum H_ii l^2; the candidate of least weighted
 * error wins (ggml's make_qx_quants with an importance matrix).  The
 * scale is then rounded to fp16 when fp16_scale asks (at least the
 * smallest fp16 magnitude).  An all-zero group gets the plain grid.
 *
 * Free-minimum grid (free_min, asymmetric one-level grids; ggml's Q4_1 and
 * Q5_1, x = d q + m): w' = scale q - min with q = clamp(round((w + min) /
 * scale), 0, maxq) and no integer zero point: from the group's smallest
 * and largest weights lo <= 0 <= hi, scale = (hi - lo) / maxq, min = -lo.
 * With fit_scale, ggml's make_qkx3_quants weighted by H_ii: 37 candidates
 * 1 / scale = (maxq - 0.9 + 0.05 t) / (hi - lo), t = 0..36, each with its
 * codes rounded and w' = a q + b refitted to them by weighted least
 * squares (b <= 0, else a alone), the one of least weighted error
 * winning.  With fp16_scale both are then rounded to fp16 (a zero scale
 * becomes the smallest one); d = scale and m = -min are then the block's
 * own values, and d q (at most 16 significant bits) is exact, so ggml's
 * d q + m is GPTQ's value bit for bit.  A GPTQ checkpoint cannot hold it.
 *
 * Groups are taken from the weights as updated so far: a group starting at
 * column c is fixed when column c is reached, from all its columns' current
 * values.  (The reference code reads the later columns of a group before
 * the current block's updates reach them; qmoe's groups divide the block,
 * so here every column of the group is up to date.)  With act-order, groups
 * follow the processing order (g_idx maps each input column to its group);
 * static groups instead fix every group from the original weights in
 * column order before anything is quantized.
 *
 * Two-level grids (ggml's k-quants; scale_bits > 0): each group's own
 * grid, then the scales (and minima) of each `super` consecutive groups of
 * a row (a super-group) quantized under one fp16 scale per super-group, and
 * GPTQ runs onto those grids.  Per group:
 *   sym   v = the weight of largest magnitude, scale = -v / zero
 *         (v lands on code 0), or with fit_scale the signed-max search
 *         above; the super-group's d = fp16(-vmax / 2^(b-1)) for the scale
 *         vmax of largest magnitude, l = round(scale / d) in
 *         [-2^(b-1), 2^(b-1) - 1] (never 0 for a nonzero scale), and the
 *         group's grid is s = d l, w' = s (q - zero)  (Q3_K: b = 6, zero 4)
 *   asym  scale = (max - min) / maxq, m = -min over the group (0 always
 *         inside), or with fit_scale the free-minimum search above;
 *         d = fp16(max scale / (2^b - 1)), l = round(scale / d) in
 *         [1, 2^b - 1]; dmin = fp16(max m / (2^b - 1)), k = round(m /
 *         dmin) in [0, 2^b - 1]; the grid is s = d l, m' = dmin k,
 *         q = clamp(round((w + m') / s), 0, maxq), w' = s q - m'
 *         (Q2_K: b = 4; Q4_K: b = 6)
 * With fit_scale, d (and dmin) are searched too, as ggml's make_qx_quants
 * and make_qp_quants do over the groups' scales with their summed
 * importances: candidates 1 / d = (n + 0.1 t) / vmax around the end code n
 * (t = -9..9 sym, -4..4 asym), each refitted to its codes by weighted least
 * squares and rounded to fp16; the d whose codes (as above) leave the least
 * weighted squared error of the groups' scales wins.
 * With static groups (act-order allowed) every grid comes from the
 * original weights in column order before GPTQ starts.  With dynamic
 * groups (no act-order) a super-group's d (and dmin) are fixed when GPTQ
 * reaches its first column, from all its columns' values then (the values
 * the paper's algorithm holds: group_values() in gptq.c), and each group's
 * own scale (and min) when GPTQ reaches the group, from its values then,
 * coded under those d: each grid sees the error feedback of every column
 * before it.
 * Each product is evaluated in float as ggml's dequantization does, so the
 * stored integers give GPTQ's values bit for bit; a group whose scale is 0
 * (all its weights 0) gets code zero (sym) or 0 (asym).  No MSE search.
 */
#ifndef QM_GPTQ_H
#define QM_GPTQ_H

#include "base/base.h"

enum { QM_GPTQ_BLOCK = 128 };

typedef struct qm_qspec {
    int bits;          /* 2, 3, 4, 5 or 8 */
    int group;         /* input columns per group; 0 = one group per row (per channel) */
    int sym;
    int act_order;
    int static_groups;
    int mse;           /* search the clipping range */
    double damp;       /* fraction of mean(diag H); the default is 0.01 */
    int fp16_scale;    /* round each scale to fp16 (GGUF's blocks store it so) */
    int scale_bits;    /* > 0: two-level grid, each group's scale (and min) in this many bits (above) */
    int super;         /* groups per super-group of a two-level grid */
    int signed_max;    /* sym one-level grid: the signed-max grid (ggml's Q4_0 and Q8_0; above) */
    int fit_scale;     /* signed_max, free_min, two-level: search the scales by H_ii-weighted least squares */
    int free_min;      /* asym one-level grid: w' = scale q - min, both free (ggml's Q4_1 and Q5_1; above) */
} qm_qspec;

typedef struct qm_qresult {
    int out, in, groups;
    float *deq;        /* (out, in) dequantized weights; owned */
    uint8_t *codes;    /* (out, in) integer codes in [0, maxq]; owned */
    float *scale;      /* (groups, out); owned */
    int32_t *zero;     /* (groups, out) in [0, maxq]; owned */
    int32_t *g_idx;    /* (in) group of each input column; owned */
    /* Two-level grids only (else NULL; min also free_min), all owned: */
    float *min;        /* (groups, out) asym: m' of w' = scale q - m'; also free_min's */
    int8_t *lscale;    /* (groups, out) scale = sd l */
    uint8_t *lmin;     /* (groups, out) asym: m' = smin k */
    float *sd, *smin;  /* (groups / super, out) the super-groups' fp16 scales (smin: asym) */
    double damp;       /* damping fraction finally used */
    double lambda;     /* what it added to H's diagonal (damp x mean diagonal, as a float) */
    double loss;       /* tr(D H D^T), D = W - Q over the live columns and H undamped, from GPTQ's
                        * own accumulated loss: the sum of the squared scaled errors
                        * ((w - q) / U_ii)^2 is tr(D (H + lambda I) D^T), less lambda ||D||^2;
                        * 0 without a Hessian */
    int retries;       /* times damping had to grow */
    int dead;          /* dead input columns */
    double update_seconds, update_flops; /* the lazy-batch sgemms of qm_gptq() */
} qm_qresult;

/* The settings a linear gets unless told otherwise: symmetric, no act-order,
 * damping 0.01 (bits and group are the plan's). */
qm_qspec qm_qspec_default(void);

void qm_qresult_free(qm_qresult *r);

/* C (M, N) = alpha op(A) op(B) + beta C, row-major, op transposing when ta
 * (tb) is nonzero: cblas_sgemm's contract, with the same bytes on any
 * thread count (OpenBLAS's threads, as fwdk_workers() counts them). */
void qm_sgemm_fixed(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc);
/* Accumulate H (in, in) += X^T X for X (n, in): the upper triangle (and
 * whatever else its diagonal tiles touch; qm_hessian_finish() mirrors the
 * upper one down).  The same bytes on any thread count. */
void qm_hessian_add(float *H, const float *X, int n, int in);
/* Finish an accumulated H over `samples` rows: H = 2 H / samples, symmetric. */
void qm_hessian_finish(float *H, int in, long long samples);

/* GPTQ of W (out, in) with Hessian H (in, in), which is overwritten (the
 * inverse factor is built in its buffer: no other in x in array is made).
 * On success r holds the result (caller frees with qm_qresult_free()). */
qm_status qm_gptq(const float *W, int out, int in, float *H, const qm_qspec *s, qm_qresult *r,
                  qm_diag *d);
/* The same, column by column without blocking: the reference for tests. */
qm_status qm_gptq_ref(const float *W, int out, int in, float *H, const qm_qspec *s, qm_qresult *r,
                      qm_diag *d);
/* Round-to-nearest on the same grid (no error feedback). */
qm_status qm_rtn(const float *W, int out, int in, const qm_qspec *s, qm_qresult *r, qm_diag *d);

/* tr(W H W^T) (= ||W X^T||^2 for H = X^T X), ENERGY_ROWS rows of W at a
 * time; ||X W^T||^2 from the inputs X (n, in) themselves (fewer FLOPs when
 * n < in).  The same bytes on any thread count; NAN when memory ran out. */
double qm_output_energy(const float *W, int out, int in, const float *H);
double qm_output_energy_x(const float *W, int out, int in, const float *X, int n);

/* ||(W - Q) X^T||^2 / ||W X^T||^2 via the Hessian: tr(D H D^T) / tr(W H W^T)
 * with D = W - Q and H = X^T X (any positive scale). */
double qm_relative_error(const float *W, const float *Q, int out, int in, const float *H);

#endif
