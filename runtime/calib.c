/* calib.c: a layer's calibration passes and GPTQ of one linear (see calib.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/calib.h"

enum { CHUNK = 8 }; /* windows per forward call */

/* What a pass collects through the forward hooks. */
typedef struct collect {
    qm_part part;       /* accumulate H of this part's input (QM_PART_COUNT: none) */
    float *H;           /* (in, in) */
    long long rows;
    qm_calib_ffn *f;    /* the FFN's input and routing, when capturing */
    size_t at;          /* rows captured so far */
    size_t cur;         /* where the current call's rows went */
} collect;

static void on_linear(void *ctx, int layer, qm_part part, int expert, const float *x, int n, int in)
{
    collect *c = ctx;
    (void)layer, (void)expert;
    if (part == c->part && c->H) {
        qm_hessian_add(c->H, x, n, in);
        c->rows += n;
    }
}

static void on_routing(void *ctx, int layer, const int *idx, const float *w, int T, int k)
{
    collect *c = ctx;
    (void)layer;
    if (c->f && c->f->idx) {
        memcpy(c->f->idx + c->cur * (size_t)k, idx, (size_t)T * k * sizeof *idx);
        memcpy(c->f->rw + c->cur * (size_t)k, w, (size_t)T * k * sizeof *w);
    }
}

static void on_ffn_in(void *ctx, int layer, const float *n2, const float *h, int T, int d)
{
    collect *c = ctx;
    (void)layer, (void)h;
    if (c->f)
        memcpy(c->f->n2 + c->at * (size_t)d, n2, (size_t)T * d * sizeof *n2);
    c->cur = c->at; /* the router's hooks come next, for the same rows */
    c->at += (size_t)T;
}

/* Run the layer over all windows up to the router (every pass collects
 * only what comes before the FFN).  With `x_out` the residual stream after
 * attention is written there. */
static qm_status pass(const qm_calib *cb, collect *c, float *x_out, qm_diag *d)
{
    const qm_model *m = cb->m;
    size_t D = (size_t)m->cfg.hidden, rows = (size_t)CHUNK * cb->S;
    float *buf = malloc(rows * D * sizeof *buf);
    qm_fwd_ws *ws = qm_fwd_ws_new(m, (int)rows, cb->S);
    if (!buf || !ws) {
        free(buf);
        qm_fwd_ws_free(ws);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_fwd_hooks hk = {.ctx = c, .linear_in = on_linear, .routing = on_routing, .ffn_in = on_ffn_in,
                       .stop_before_ffn = 1};
    qm_status st = QM_OK;
    c->at = 0;
    for (int b0 = 0; b0 < cb->B && st == QM_OK; b0 += CHUNK) {
        int nb = cb->B - b0 < CHUNK ? cb->B - b0 : CHUNK;
        size_t off = (size_t)b0 * cb->S * D, n = (size_t)nb * cb->S * D;
        memcpy(buf, cb->x + off, n * sizeof *buf);
        st = qm_forward_layer(m, cb->w, buf, nb, cb->S, ws, &hk, d);
        if (x_out)
            memcpy(x_out + off, buf, n * sizeof *buf);
    }
    free(buf);
    qm_fwd_ws_free(ws);
    return st;
}

qm_status qm_calib_hessian(const qm_calib *c, qm_part part, int in, float **H, long long *rows, qm_diag *d)
{
    collect k = {.part = part};
    if (!(k.H = calloc((size_t)in * in, sizeof *k.H)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_status st = pass(c, &k, NULL, d);
    if (st != QM_OK) {
        free(k.H);
        return st;
    }
    *H = k.H;
    *rows = k.rows;
    return QM_OK;
}

void qm_calib_ffn_free(qm_calib_ffn *f)
{
    free(f->n2);
    free(f->idx);
    free(f->rw);
    memset(f, 0, sizeof *f);
}

qm_status qm_calib_capture(const qm_calib *c, qm_calib_ffn *f, float *h_out, qm_diag *d)
{
    size_t T = (size_t)c->B * c->S, D = (size_t)c->m->cfg.hidden, k = (size_t)c->m->cfg.top_k;
    int moe = c->w->moe;
    memset(f, 0, sizeof *f);
    f->n2 = malloc(T * D * sizeof *f->n2);
    f->idx = moe ? malloc(T * k * sizeof *f->idx) : NULL;
    f->rw = moe ? malloc(T * k * sizeof *f->rw) : NULL;
    if (!f->n2 || (moe && (!f->idx || !f->rw))) {
        qm_calib_ffn_free(f);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    }
    collect col = {.part = QM_PART_COUNT, .f = f};
    qm_status st = pass(c, &col, h_out, d);
    if (st != QM_OK)
        qm_calib_ffn_free(f);
    return st;
}

int qm_calib_routed(const qm_calib *c, const qm_calib_ffn *f, int e, float *X, float *wt)
{
    size_t T = (size_t)c->B * c->S, D = (size_t)c->m->cfg.hidden, k = (size_t)c->m->cfg.top_k;
    int n = 0;
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < k; j++)
            if (f->idx[t * k + j] == e) {
                if (wt)
                    wt[n] = f->rw[t * k + j];
                memcpy(X + (size_t)n++ * D, f->n2 + t * D, D * sizeof *X);
            }
    return n;
}

qm_status qm_calib_attention(const qm_calib *c, float *h_out, qm_diag *d)
{
    collect col = {.part = QM_PART_COUNT};
    return pass(c, &col, h_out, d);
}

static float silu(float v) { return v / (1.0f + expf(-v)); }

qm_status qm_calib_act(const float *X, int n, const qm_lin *g, const qm_lin *u, float *A, qm_diag *d)
{
    int D = g->in, W = g->out;
    float *U = malloc(((size_t)n * W + 1) * sizeof *U);
    if (!U)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    /* expert and MLP linears have no bias; qm_sgemm_fixed: the same bytes on any thread count */
    qm_sgemm_fixed(0, 1, n, W, D, 1.0f, X, D, g->w, D, 0.0f, A, W);
    qm_sgemm_fixed(0, 1, n, W, D, 1.0f, X, D, u->w, D, 0.0f, U, W);
    for (size_t i = 0; i < (size_t)n * W; i++)
        A[i] = silu(A[i]) * U[i];
    free(U);
    return QM_OK;
}

qm_fwd_ws *qm_calib_ws(const qm_calib *c) { return qm_fwd_ws_new(c->m, CHUNK * c->S, c->S); }

void qm_calib_ffn_add(const qm_calib *c, const qm_layer_w *w, const qm_calib_ffn *f, int e, const qm_lin *g,
                      const qm_lin *u, const qm_lin *dn, qm_fwd_ws *ws, float *y)
{
    const qm_model *m = c->m;
    size_t D = (size_t)m->cfg.hidden, k = (size_t)m->cfg.top_k;
    for (int b0 = 0; b0 < c->B; b0 += CHUNK) {
        int nb = c->B - b0 < CHUNK ? c->B - b0 : CHUNK, T = nb * c->S;
        size_t t0 = (size_t)b0 * c->S;
        if (e >= 0)
            qm_ffn_add_expert(m, g, u, dn, e, f->n2 + t0 * D, f->idx + t0 * k, f->rw + t0 * k, T, ws, y + t0 * D);
        else
            qm_ffn_add_rest(m, w, f->n2 + t0 * D, T, ws, y + t0 * D);
    }
}

qm_status qm_calib_residual(const qm_calib *c, const float *y, qm_diag *d)
{
    size_t D = (size_t)c->m->cfg.hidden;
    qm_status st = QM_OK;
    for (int b0 = 0; st == QM_OK && b0 < c->B; b0 += CHUNK) {
        int nb = c->B - b0 < CHUNK ? c->B - b0 : CHUNK;
        size_t t0 = (size_t)b0 * c->S * D;
        st = qm_forward_residual(c->m, c->w->layer, c->x + t0, y + t0, nb * c->S, c->S, d);
    }
    return st;
}

qm_status qm_calib_gptq(const float *W, int out, int in, float *H, int last, long long rows, const float *X, int nx,
                        const qm_qspec *s, qm_qresult *r, double *error, qm_diag *d)
{
    float *Hc = H; /* GPTQ works in it: H itself when last, else a copy (owned) */
    if (!last) {
        if (!(Hc = malloc((size_t)in * in * sizeof *Hc)))
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        memcpy(Hc, H, (size_t)in * in * sizeof *Hc);
    }
    long long n = rows > 0 ? rows : 1;
    qm_hessian_finish(Hc, in, n);
    double den = !error ? 0
                 : X && nx < in ? (double)(2.0f / (float)n) * qm_output_energy_x(W, out, in, X, nx)
                                : qm_output_energy(W, out, in, Hc);
    qm_status st = qm_gptq(W, out, in, Hc, s, r, d);
    if (st == QM_OK && error) /* NaN when the denominator's memory ran out */
        *error = !isfinite(den) ? NAN : den > 0 ? r->loss / den : 0;
    if (Hc != H)
        free(Hc);
    return st;
}
