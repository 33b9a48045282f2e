/* gptq_grid.c: the grids GPTQ rounds onto (see gptq.h and gptq_grid.h):
 * GPTQ's own from each group's range (with the optional MSE search),
 * ggml's signed-max and free-minimum grids with their H_ii-weighted
 * searches, and the k-quants' two-level grids.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "model/dtype.h"
#include "runtime/gptq_grid.h"

static void grid_from_range(float mn, float mx, int maxq, int sym, int fp16, float *scale, int *zero)
{
    if (sym) {
        float a = fmaxf(fabsf(mn), mx);
        mn = mn < 0 ? -a : mn;
        mx = a;
    }
    if (mn == 0 && mx == 0) {
        mn = -1;
        mx = 1;
    }
    *scale = (mx - mn) / (float)maxq;
    if (fp16 && !sym) { /* 7 significant bits (6 at 5 bits): scale * zero (zero < 16, 32) is fp16 too */
        int e, sig = maxq < 16 ? 7 : 6;
        float m = frexpf(*scale, &e);
        *scale = ldexpf(nearbyintf(ldexpf(m, sig)), e - sig);
    }
    if (fp16) {
        *scale = qm_f16_to_f32(qm_f32_to_f16(*scale));
        if (*scale == 0)
            *scale = 0x1p-24f; /* the smallest fp16 value: a scale of 0 would divide by zero */
    }
    *zero = sym ? (maxq + 1) / 2 : (int)nearbyintf(-mn / *scale);
    if (*zero < 1) /* format "gptq" stores zero - 1, so 0 cannot be written */
        *zero = 1;
}

static float fp16_value(float x) { return qm_f16_to_f32(qm_f32_to_f16(x)); }

/* The signed-max symmetric grid (see gptq.h) of row r of the group of
 * rows `rows[0..n)` of Wt (in, out), or rows [c0, c0 + n) when rows is
 * NULL: the value v of largest magnitude on code 0, scale -v / zero; then,
 * with fit, the scale of least weighted squared error among 19
 * candidate grids, as ggml's make_qx_quants: for each candidate 1 / scale
 * the codes are rounded and the scale refitted to them by weighted least
 * squares (imp: the n columns' importances, NULL: all 1).  The scale is
 * returned unrounded; 0 when the group is all zeros. */
static float signed_max_scale(const float *Wt, int out, int r, const int *rows, int c0, int n, const float *imp,
                              int zero, int maxq, int fit)
{
#define X(k) Wt[(size_t)(rows ? rows[k] : c0 + (k)) * out + r]
    float v = 0;
    for (int k = 0; k < n; k++)
        v = fabsf(X(k)) > fabsf(v) ? X(k) : v;
    float best_scale = -v / (float)zero;
    if (v == 0 || !fit)
        return best_scale;
    double best = -1;
    for (int is = -9; is <= 9; is++) {
        float iscale = -((float)zero + 0.1f * (float)is) / v;
        double slx = 0, sl2 = 0;
        for (int k = 0; k < n; k++) {
            float x = X(k), l = nearbyintf(iscale * x);
            l = l < (float)-zero ? (float)-zero : l > (float)(maxq - zero) ? (float)(maxq - zero) : l;
            double w = imp ? imp[k] : 1.0;
            slx += w * x * l;
            sl2 += w * l * l;
        }
        if (sl2 > 0 && slx != 0 && slx * slx > best * sl2) { /* the error is sum w x^2 - slx^2 / sl2 */
            best = slx * slx / sl2;
            best_scale = (float)(slx / sl2);
        }
    }
    return best_scale;
#undef X
}

/* ggml's make_qkx3_quants, the asymmetric grids' search with the columns'
 * importances imp: row r of the group of rows `rows[0..n)` of Wt (in,
 * out), or rows [c0, c0 + n) when rows is NULL, on codes 0..maxq with
 * w' = scale q - m.  From the plain grid (lo <= 0 <= hi the group's
 * extremes, scale (hi - lo) / maxq, m = -lo), 37 candidates 1 / scale =
 * (maxq - 0.9 + 0.05 t) / (hi - lo), t = 0..36, each with its codes rounded
 * and w' = a q + b refitted to them by weighted least squares (b <= 0, else
 * a alone); the one of least weighted squared error wins.  *m gets the
 * minimum; returns the scale (0 when the group is all zeros). */
static float fit_asym(const float *Wt, int out, int r, const int *rows, int c0, int n, const float *imp, int maxq,
                      float *m)
{
#define X(k) Wt[(size_t)(rows ? rows[k] : c0 + (k)) * out + r]
    float lo = 0, hi = 0; /* 0 is always inside the range */
    double sw = 0, sx = 0;
    for (int k = 0; k < n; k++) {
        lo = X(k) < lo ? X(k) : lo;
        hi = X(k) > hi ? X(k) : hi;
        sw += imp[k];
        sx += imp[k] * X(k);
    }
    float scale = (hi - lo) / (float)maxq, min = -lo;
    *m = min;
    if (hi == lo)
        return scale;
    double best = 0;
    for (int k = 0; k < n; k++) {
        float q = fminf(fmaxf(nearbyintf((X(k) + min) / scale), 0), (float)maxq);
        best += imp[k] * ((double)scale * q - min - X(k)) * ((double)scale * q - min - X(k));
    }
    for (int t = 0; t <= 36; t++) {
        float is = ((float)maxq - 0.9f + 0.05f * (float)t) / (hi - lo);
        double sl = 0, sl2 = 0, sxl = 0;
        for (int k = 0; k < n; k++) {
            float q = fminf(fmaxf(nearbyintf(is * (X(k) - lo)), 0), (float)maxq);
            sl += imp[k] * q;
            sl2 += imp[k] * q * q;
            sxl += imp[k] * q * X(k);
        }
        double D = sw * sl2 - sl * sl;
        if (D <= 0)
            continue;
        double a = (sw * sxl - sx * sl) / D, b = (sl2 * sx - sl * sxl) / D; /* w' = a q + b */
        if (b > 0) { /* the minimum must stay <= 0: the scale alone */
            b = 0;
            a = sxl / sl2;
        }
        if (!(a > 0))
            continue;
        double err = 0;
        for (int k = 0; k < n; k++) {
            float q = fminf(fmaxf(nearbyintf(is * (X(k) - lo)), 0), (float)maxq);
            err += imp[k] * (a * q + b - X(k)) * (a * q + b - X(k));
        }
        if (err < best) {
            best = err;
            scale = (float)a;
            *m = (float)-b;
        }
    }
    return scale;
#undef X
}

void qm_grid_params(const float *Wt, int out, int r0, int r1, const int *rows, int c0, int n,
                        const float *imp, const qm_qspec *s, float *mn, float *mx, float *scale, int32_t *zero,
                        float *min)
{
    int maxq = (1 << s->bits) - 1;
    if (!s->sym && s->free_min) {
        for (int r = r0; r < r1; r++) {
            float m, sc;
            if (imp) {
                sc = fit_asym(Wt, out, r, rows, c0, n, imp, maxq, &m);
            } else {
                float lo = 0, hi = 0; /* 0 is always inside the range */
                for (int k = 0; k < n; k++) {
                    float w = Wt[(size_t)(rows ? rows[k] : c0 + k) * out + r];
                    lo = w < lo ? w : lo;
                    hi = w > hi ? w : hi;
                }
                sc = (hi - lo) / (float)maxq;
                m = -lo;
            }
            if (s->fp16_scale) {
                sc = fp16_value(sc);
                m = fp16_value(m);
            }
            scale[r] = sc != 0 ? sc : 0x1p-24f; /* all zeros (m 0): any grid holds them */
            min[r] = m;
            zero[r] = 0;
        }
        return;
    }
    if (s->sym && s->signed_max) {
        for (int r = r0; r < r1; r++) {
            float sc = signed_max_scale(Wt, out, r, rows, c0, n, imp, (maxq + 1) / 2, maxq, s->fit_scale);
            if (sc == 0) { /* all zeros: any grid holds them */
                int z;
                grid_from_range(0, 0, maxq, 1, s->fp16_scale, &scale[r], &z);
                zero[r] = z;
                continue;
            }
            if (s->fp16_scale) {
                float h = fp16_value(sc);
                sc = h != 0 ? h : copysignf(0x1p-24f, sc); /* the smallest fp16 value, as grid_from_range() */
            }
            scale[r] = sc;
            zero[r] = (maxq + 1) / 2;
        }
        return;
    }
    for (int r = r0; r < r1; r++)
        mn[r] = mx[r] = 0; /* 0 is always inside the range */
    for (int k = 0; k < n; k++) {
        const float *w = Wt + (size_t)(rows ? rows[k] : c0 + k) * out;
        for (int r = r0; r < r1; r++) {
            mn[r] = w[r] < mn[r] ? w[r] : mn[r];
            mx[r] = w[r] > mx[r] ? w[r] : mx[r];
        }
    }
    for (int r = r0; r < r1; r++) {
        int z;
        grid_from_range(mn[r], mx[r], maxq, s->sym, s->fp16_scale, &scale[r], &z);
        if (s->mse) {
            double best = INFINITY;
            for (int i = 0; i < 80; i++) {
                float p = 1.0f - (float)i / 100.0f, sc;
                int zz, code;
                grid_from_range(p * mn[r], p * mx[r], maxq, s->sym, s->fp16_scale, &sc, &zz);
                double err = 0;
                for (int k = 0; k < n; k++) {
                    float w = Wt[(size_t)(rows ? rows[k] : c0 + k) * out + r];
                    err += pow(fabs((double)(qm_grid_quant1(w, sc, zz, maxq, &code) - w)), 2.4);
                }
                if (err < best) {
                    best = err;
                    scale[r] = sc;
                    z = zz;
                }
            }
        }
        zero[r] = z;
    }
}

/* A super-group's code for sub-block scale (or minimum) v under its fp16
 * scale d: round(v / d) in [lo, hi]; a symmetric nonzero scale never gets
 * code 0 (its sub-block would collapse to 0), an asymmetric scale (lo 1)
 * never below 1. */
static float super_code(float v, float d, int lo, int hi, int sym)
{
    if (d == 0)
        return 0;
    float l = fminf(fmaxf(nearbyintf(v / d), (float)lo), (float)hi);
    if (sym && l == 0 && v != 0)
        l = (v > 0) == (d > 0) ? 1 : -1;
    return l;
}

/* The fp16 scale d of a super-group's S sub-block values v (stride
 * `stride`), codes in [lo, hi] by super_code().  Plain (w NULL): the value
 * of largest magnitude on the end code, d = fp16(-vmax / -lo) (sym) or
 * fp16(max / hi).  With the sub-blocks' importances w (ggml's make_qx_quants
 * and make_qp_quants over the sub-block scales, weighted by the sub-blocks'
 * summed importances): candidates 1 / d = (n + 0.1 t) / vmax around the end
 * code n (t = -9..9 sym, -4..4 asym), each d refitted to its codes by
 * weighted least squares and rounded to fp16; the d whose codes leave the
 * least weighted squared error wins. */
static float fit_super(const float *v, size_t stride, int S, const float *w, int lo, int hi, int sym)
{
    float vmax = 0;
    for (int j = 0; j < S; j++) {
        float x = v[(size_t)j * stride];
        vmax = sym ? (fabsf(x) > fabsf(vmax) ? x : vmax) : (x > vmax ? x : vmax);
    }
    float nmax = (float)(sym ? -lo : hi), best_d = fp16_value(sym ? -vmax / nmax : vmax / nmax);
    if (!w || vmax == 0)
        return best_d;
    double best = INFINITY;
    for (int t = sym ? -9 : -4; t <= (sym ? 9 : 4); t++) {
        float is = (sym ? -(nmax + 0.1f * (float)t) : nmax + 0.1f * (float)t) / vmax;
        double slx = 0, sl2 = 0;
        for (int j = 0; j < S; j++) {
            float x = v[(size_t)j * stride], l = fminf(fmaxf(nearbyintf(is * x), (float)lo), (float)hi);
            slx += (double)w[j] * x * l;
            sl2 += (double)w[j] * l * l;
        }
        float d = sl2 > 0 ? fp16_value((float)(slx / sl2)) : 0;
        if (d == 0 || (d > 0) != (is > 0))
            continue;
        double err = 0;
        for (int j = 0; j < S; j++) {
            float x = v[(size_t)j * stride], e = x - d * super_code(x, d, lo, hi, sym);
            err += (double)w[j] * e * e;
        }
        if (err < best) {
            best = err;
            best_d = d;
        }
    }
    return best_d;
}

void qm_grid_group(const float *V, int out, int o0, int o1, const int *rows, int c0, const float *imp,
                       const qm_qspec *s, qm_qresult *r, int g, float *x)
{
    int gs = s->group, maxq = (1 << s->bits) - 1, zero = (maxq + 1) / 2;
    size_t k0 = (size_t)g * out;
    for (int o = o0; o < o1; o++) {
        for (int k = 0; k < gs; k++)
            x[k] = V[(size_t)(rows ? rows[k] : c0 + k) * out + o];
        if (r->min && imp) {
            r->scale[k0 + o] = fit_asym(x, 1, 0, NULL, 0, gs, imp, maxq, &r->min[k0 + o]);
        } else if (imp) {
            r->scale[k0 + o] = signed_max_scale(x, 1, 0, NULL, 0, gs, imp, zero, maxq, 1);
        } else {
            float a = 0, z = 0; /* 0 is always inside the range */
            for (int k = 0; k < gs; k++) {
                a = x[k] < a ? x[k] : a;
                z = x[k] > z ? x[k] : z;
            }
            if (r->min) {
                r->scale[k0 + o] = (z - a) / (float)maxq;
                r->min[k0 + o] = -a;
            } else {
                r->scale[k0 + o] = -(-a >= z ? a : z) / (float)zero; /* the largest magnitude lands on code 0 */
            }
        }
    }
}

void qm_grid_group_codes(const qm_qspec *s, qm_qresult *r, int out, int o0, int o1, int g)
{
    int maxq = (1 << s->bits) - 1, half = 1 << (s->scale_bits - 1), nq = (1 << s->scale_bits) - 1;
    int lo = r->min ? 1 : -half, hi = r->min ? nq : half - 1;
    for (int o = o0; o < o1; o++) {
        size_t k = (size_t)g * out + o, sb = (size_t)(g / s->super) * out + o;
        float d = r->sd[sb], l = super_code(r->scale[k], d, lo, hi, !r->min);
        float m = r->min ? super_code(r->min[k], r->smin[sb], 0, nq, 0) : 0;
        if (r->min) {
            r->lmin[k] = (uint8_t)m;
            r->min[k] = r->smin[sb] * m;
            r->zero[k] = 0;
        } else {
            r->zero[k] = (maxq + 1) / 2;
        }
        r->lscale[k] = (int8_t)l;
        r->scale[k] = d * l;
    }
}

void qm_grid_super(const float *V, int out, int o0, int o1, const int *rows, int c0, const float *imp,
                        const qm_qspec *s, qm_qresult *r, int b, float *x, float *sw)
{
    int gs = s->group, S = s->super, half = 1 << (s->scale_bits - 1), nq = (1 << s->scale_bits) - 1;
    for (int j = 0; j < S; j++) {
        double t = 0;
        for (int k = 0; imp && k < gs; k++)
            t += imp[(size_t)j * gs + k];
        sw[j] = (float)t;
        qm_grid_group(V, out, o0, o1, rows ? rows + (size_t)j * gs : NULL, c0 + j * gs, imp ? imp + (size_t)j * gs : NULL,
                   s, r, b * S + j, x);
    }
    for (int o = o0; o < o1; o++) {
        size_t k0 = (size_t)b * S * out + o, sb = (size_t)b * out + o;
        r->sd[sb] = fit_super(r->scale + k0, (size_t)out, S, imp ? sw : NULL, r->min ? 1 : -half, r->min ? nq : half - 1,
                              !r->min);
        if (r->min)
            r->smin[sb] = fit_super(r->min + k0, (size_t)out, S, imp ? sw : NULL, 0, nq, 0);
    }
    for (int j = 0; j < S; j++)
        qm_grid_group_codes(s, r, out, o0, o1, b * S + j);
}

