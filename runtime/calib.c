/* calib.c: a layer's calibration passes and GPTQ of one linear (see calib.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/calib.h"

enum { CHUNK = QM_CALIB_CHUNK };

/* Windows in group g. */
static int gwin(const qm_calib *c, int g) { return c->B - g * CHUNK < CHUNK ? c->B - g * CHUNK : CHUNK; }

/* Group g of an array a (B*S, d) or of a store s (s wins): NULL after a
 * diagnostic when a spilled store cannot be read. */
static float *group_of(const qm_calib *c, float *a, qm_states *s, int g, qm_diag *d)
{
    return s ? qm_states_get(s, (size_t)g, d) : a + (size_t)g * CHUNK * c->S * (size_t)c->m->cfg.hidden;
}

static qm_status group_put(qm_states *s, int g, qm_diag *d) { return s ? qm_states_put(s, (size_t)g, d) : QM_OK; }

/* What a pass collects through the forward hooks. */
typedef struct collect {
    qm_part part;       /* accumulate H of this part's input (QM_PART_COUNT: none) */
    float *H;           /* (in, in) */
    long long rows;
    qm_calib_ffn *f;    /* the FFN's input and routing, when capturing */
    const qm_calib *c;
    int group;          /* the group of windows being run */
    size_t at;          /* rows captured so far */
    size_t cur;         /* where the current call's rows went */
    qm_status st;       /* a failure inside a hook */
    qm_diag *d;
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
    if (c->f && c->st == QM_OK) {
        float *dst = c->c->n2s ? qm_states_get(c->c->n2s, (size_t)c->group, c->d) : c->f->n2 + c->at * (size_t)d;
        if (!dst)
            c->st = QM_EIO;
        else {
            memcpy(dst, n2, (size_t)T * d * sizeof *n2);
            c->st = group_put(c->c->n2s, c->group, c->d);
        }
    }
    c->cur = c->at; /* the router's hooks come next, for the same rows */
    c->at += (size_t)T;
}

/* Run the layer over all windows up to the router (every pass collects
 * only what comes before the FFN).  With `x_out` the residual stream after
 * attention is written there; with stores, `write_x` puts it back in c->xs. */
static qm_status pass(const qm_calib *cb, collect *c, float *x_out, int write_x, qm_diag *d)
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
    c->c = cb;
    c->d = d;
    c->at = 0;
    c->st = QM_OK;
    int G = (cb->B + CHUNK - 1) / CHUNK;
    for (int g = 0; g < G && st == QM_OK; g++) {
        size_t off = (size_t)g * CHUNK * cb->S * D, n = (size_t)gwin(cb, g) * cb->S * D;
        float *x = group_of(cb, cb->x, cb->xs, g, d);
        if (!x) {
            st = QM_EIO;
            break;
        }
        memcpy(buf, x, n * sizeof *buf);
        c->group = g;
        st = qm_forward_layer(m, cb->w, buf, gwin(cb, g), cb->S, ws, &hk, d);
        if (st == QM_OK)
            st = c->st;
        if (st == QM_OK && x_out)
            memcpy(x_out + off, buf, n * sizeof *buf);
        if (st == QM_OK && write_x && cb->xs) {
            if (!(x = qm_states_get(cb->xs, (size_t)g, d)))
                st = QM_EIO;
            else {
                memcpy(x, buf, n * sizeof *buf);
                st = qm_states_put(cb->xs, (size_t)g, d);
            }
        }
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
    qm_status st = pass(c, &k, NULL, 0, d);
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
    f->n2 = c->n2s ? NULL : malloc(T * D * sizeof *f->n2);
    f->idx = moe ? malloc(T * k * sizeof *f->idx) : NULL;
    f->rw = moe ? malloc(T * k * sizeof *f->rw) : NULL;
    if ((!c->n2s && !f->n2) || (moe && (!f->idx || !f->rw))) {
        qm_calib_ffn_free(f);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    }
    collect col = {.part = QM_PART_COUNT, .f = f};
    qm_status st = pass(c, &col, h_out, 1, d);
    if (st != QM_OK)
        qm_calib_ffn_free(f);
    return st;
}

size_t qm_calib_count(const qm_calib *c, const qm_calib_ffn *f, int e)
{
    size_t T = (size_t)c->B * c->S, k = (size_t)c->m->cfg.top_k, n = 0;
    if (e < 0)
        return T;
    for (size_t t = 0; t < T * k; t++)
        n += f->idx[t] == e;
    return n;
}

int qm_calib_routed(const qm_calib *c, const qm_calib_ffn *f, int e, float *X, float *wt, qm_diag *d)
{
    size_t D = (size_t)c->m->cfg.hidden, k = e >= 0 ? (size_t)c->m->cfg.top_k : 1;
    int n = 0, G = (c->B + CHUNK - 1) / CHUNK;
    for (int g = 0; g < G; g++) {
        size_t t0 = (size_t)g * CHUNK * c->S, rows = (size_t)gwin(c, g) * c->S;
        const float *n2 = group_of(c, f->n2, c->n2s, g, d);
        if (!n2)
            return -1;
        for (size_t t = 0; t < rows; t++)
            for (size_t j = 0; j < k; j++)
                if (e < 0 || f->idx[(t0 + t) * k + j] == e) {
                    if (wt && e >= 0)
                        wt[n] = f->rw[(t0 + t) * k + j];
                    memcpy(X + (size_t)n++ * D, n2 + t * D, D * sizeof *X);
                }
    }
    return n;
}

qm_status qm_calib_attention(const qm_calib *c, float *h_out, qm_diag *d)
{
    collect col = {.part = QM_PART_COUNT};
    return pass(c, &col, h_out, 0, d);
}

static float silu(float v) { return v / (1.0f + expf(-v)); }

qm_status qm_calib_act(const float *X, int n, const qm_lin *g, const qm_lin *u, float *A, qm_diag *d)
{
    /* U only UROWS rows at a time: qm_sgemm_fixed's tiles are UROWS-aligned either way, so the same bytes */
    enum { UROWS = 1024 };
    int D = g->in, W = g->out, ur = n < UROWS ? n : UROWS;
    float *U = malloc(((size_t)ur * W + 1) * sizeof *U); /* (ur, W); owned */
    if (!U)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    /* expert and MLP linears have no bias; qm_sgemm_fixed: the same bytes on any thread count */
    qm_sgemm_fixed(0, 1, n, W, D, 1.0f, X, D, g->w, D, 0.0f, A, W);
    for (int t0 = 0; t0 < n; t0 += UROWS) {
        int m = n - t0 < UROWS ? n - t0 : UROWS;
        float *a = A + (size_t)t0 * W;
        qm_sgemm_fixed(0, 1, m, W, D, 1.0f, X + (size_t)t0 * D, D, u->w, D, 0.0f, U, W);
        for (size_t i = 0; i < (size_t)m * W; i++)
            a[i] = silu(a[i]) * U[i];
    }
    free(U);
    return QM_OK;
}

qm_fwd_ws *qm_calib_ws(const qm_calib *c) { return qm_fwd_ws_new(c->m, CHUNK * c->S, c->S); }

qm_status qm_calib_ffn_add(const qm_calib *c, const qm_layer_w *w, const qm_calib_ffn *f, int e, const qm_lin *g,
                           const qm_lin *u, const qm_lin *dn, qm_fwd_ws *ws, float *y, qm_diag *d)
{
    const qm_model *m = c->m;
    size_t k = (size_t)m->cfg.top_k;
    int G = (c->B + CHUNK - 1) / CHUNK;
    for (int b = 0; b < G; b++) {
        int T = gwin(c, b) * c->S;
        size_t t0 = (size_t)b * CHUNK * c->S;
        float *n2 = group_of(c, f->n2, c->n2s, b, d), *yb = n2 ? group_of(c, y, c->ys, b, d) : NULL;
        if (!yb)
            return QM_EIO;
        if (e >= 0)
            qm_ffn_add_expert(m, g, u, dn, e, n2, f->idx + t0 * k, f->rw + t0 * k, T, ws, yb);
        else
            qm_ffn_add_rest(m, w, n2, T, ws, yb);
        qm_status st = group_put(c->ys, b, d);
        if (st != QM_OK)
            return st;
    }
    return QM_OK;
}

qm_status qm_calib_expert_out(const qm_calib *c, const qm_calib_ffn *f, int e, const qm_lin *g, const qm_lin *u,
                              const qm_lin *dn, qm_fwd_ws *ws, float *eo, qm_diag *d)
{
    size_t k = (size_t)c->m->cfg.top_k, D = (size_t)c->m->cfg.hidden, at = 0;
    int G = (c->B + CHUNK - 1) / CHUNK;
    for (int b = 0; b < G; b++) {
        size_t t0 = (size_t)b * CHUNK * c->S;
        const float *n2 = group_of(c, f->n2, c->n2s, b, d);
        if (!n2)
            return QM_EIO;
        at += (size_t)qm_ffn_expert_out(c->m, g, u, dn, e, n2, f->idx + t0 * k, gwin(c, b) * c->S, ws, eo + at * D);
    }
    return QM_OK;
}

qm_status qm_calib_expert_apply(const qm_calib *c, const qm_calib_ffn *f, int e, const float *eo, float *y,
                                qm_diag *d)
{
    size_t k = (size_t)c->m->cfg.top_k, D = (size_t)c->m->cfg.hidden;
    int G = (c->B + CHUNK - 1) / CHUNK;
    for (int b = 0; b < G; b++) {
        int T = gwin(c, b) * c->S;
        size_t t0 = (size_t)b * CHUNK * c->S, n = 0;
        float *yb = group_of(c, y, c->ys, b, d);
        if (!yb)
            return QM_EIO;
        qm_ffn_expert_apply(c->m, e, f->idx + t0 * k, f->rw + t0 * k, T, eo, yb);
        for (size_t i = 0; i < (size_t)T * k; i++)
            n += f->idx[t0 * k + i] == e;
        eo += n * D;
        qm_status st = group_put(c->ys, b, d);
        if (st != QM_OK)
            return st;
    }
    return QM_OK;
}

qm_status qm_calib_residual(const qm_calib *c, const float *y, qm_diag *d)
{
    qm_status st = QM_OK;
    int G = (c->B + CHUNK - 1) / CHUNK;
    for (int b = 0; st == QM_OK && b < G; b++) {
        float *x = group_of(c, c->x, c->xs, b, d), *yb = x ? group_of(c, (float *)y, c->ys, b, d) : NULL;
        if (!yb)
            st = QM_EIO;
        else if ((st = qm_forward_residual(c->m, c->w->layer, x, yb, gwin(c, b) * c->S, c->S, d)) == QM_OK)
            st = group_put(c->xs, b, d);
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
