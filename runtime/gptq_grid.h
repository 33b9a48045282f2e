/* gptq_grid.h: the grids GPTQ rounds onto (gptq.h tells them), for gptq.c's
 * column loop: each group's scale, zero and minimum, the two-level grids'
 * super-groups, and the rounding itself (inline: it runs once per weight).
 * Internal to the runtime.
 */
#ifndef QM_GPTQ_GRID_H
#define QM_GPTQ_GRID_H

#include <math.h>

#include "runtime/gptq.h"

/* w' = scale (q - zero), q = clamp(round(w / scale) + zero, 0, maxq) into *code. */
static inline float qm_grid_quant1(float w, float scale, int zero, int maxq, int *code)
{
    float q = scale == 0 ? (float)zero : nearbyintf(w / scale) + (float)zero; /* 0: two-level grids only */
    q = q < 0 ? 0 : q > (float)maxq ? (float)maxq : q;
    *code = (int)q;
    return scale * (q - (float)zero);
}

/* The free-minimum and asymmetric two-level grids' w' = scale q - min (see gptq.h). */
static inline float qm_grid_quant_min(float w, float scale, float min, int maxq, int *code)
{
    float q = scale == 0 ? 0 : nearbyintf((w + min) / scale);
    q = q < 0 ? 0 : q > (float)maxq ? (float)maxq : q;
    *code = (int)q;
    return scale * q - min;
}

/* Grid of each output row r in [r0, r1) over rows `rows[0..n)` of Wt
 * (in, out), or over rows [c0, c0 + n) when rows is NULL: scale[r], zero[r]
 * (and min[r] for the free-minimum grid).  imp: the n columns' importances
 * (H_ii) for the signed-max and free-minimum searches, or NULL; mn and mx
 * are scratch of (out) floats. */
void qm_grid_params(const float *Wt, int out, int r0, int r1, const int *rows, int c0, int n, const float *imp,
                    const qm_qspec *s, float *mn, float *mx, float *scale, int32_t *zero, float *min);

/* Group g's own scale (and min) of output rows [o0, o1) into r->scale
 * (r->min), unquantized, from its group values: rows rows[k] of V (n, out),
 * or rows c0 + k when rows is NULL, k < group, with importances imp[k]
 * (H_ii; NULL: the plain grid).  `x` is scratch of (group) floats. */
void qm_grid_group(const float *V, int out, int o0, int o1, const int *rows, int c0, const float *imp,
                   const qm_qspec *s, qm_qresult *r, int g, float *x);

/* Group g's scale (and min) of output rows [o0, o1), as qm_grid_group()
 * left them, onto its super-group's fp16 scales r->sd (r->smin): r->lscale,
 * scale, zero (and lmin, min). */
void qm_grid_group_codes(const qm_qspec *s, qm_qresult *r, int out, int o0, int o1, int g);

/* The two-level grid (see gptq.h) of super-group b (groups b S .. b S +
 * S - 1, S = s->super) of output rows [o0, o1), from its S x group values
 * (rows rows[k] of V, or c0 + k; importances imp[k], or NULL: as
 * qm_grid_group()): each group's own scale (and min), then the
 * super-group's fp16 scale(s) from them, then each group's codes under
 * those.  `x` is scratch of (group) floats, `sw` of (super). */
void qm_grid_super(const float *V, int out, int o0, int o1, const int *rows, int c0, const float *imp,
                   const qm_qspec *s, qm_qresult *r, int b, float *x, float *sw);

#endif
