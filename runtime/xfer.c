/* xfer.c: results packed for another rank (see xfer.h). */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/xfer.h"

enum { NONE = 1 }; /* the tag of an array sent as NULL */

void qm_xfer_put(qm_xfer *x, const void *p, size_t n)
{
    if (x->oom)
        return;
    if (x->n + n > x->cap) {
        size_t cap = (x->n + n) * 2 + 256;
        char *b = realloc(x->b, cap);
        if (!b) {
            x->oom = 1;
            return;
        }
        x->b = b;
        x->cap = cap;
    }
    if (n)
        memcpy(x->b + x->n, p, n);
    x->n += n;
}

void qm_xfer_put_arr(qm_xfer *x, const void *p, size_t n)
{
    uint64_t h[2] = {p ? 0 : NONE, p ? n : 0};
    qm_xfer_put(x, h, sizeof h);
    if (p)
        qm_xfer_put(x, p, n);
}

qm_status qm_xfer_done(qm_xfer *x, void **buf, size_t *n, qm_diag *d)
{
    if (x->oom) {
        free(x->b);
        x->b = NULL;
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    *buf = x->b;
    *n = x->n;
    return QM_OK;
}

int qm_xfer_get(qm_xfer *x, void *p, size_t n)
{
    if (x->bad || n > x->n - x->at) {
        x->bad = 1;
        return 0;
    }
    memcpy(p, x->b + x->at, n);
    x->at += n;
    return 1;
}

int qm_xfer_get_arr(qm_xfer *x, void **p, size_t *n)
{
    uint64_t h[2];
    *p = NULL;
    if (n)
        *n = 0;
    if (!qm_xfer_get(x, h, sizeof h))
        return 0;
    if (h[0] == NONE)
        return 1;
    if (h[0] != 0 || h[1] > x->n - x->at || !(*p = malloc(h[1] ? h[1] : 1))) {
        x->bad = 1;
        return 0;
    }
    qm_xfer_get(x, *p, h[1]);
    if (n)
        *n = h[1];
    return 1;
}

/* The result's arrays, in the order they travel. */
#define ARRAYS(X) X(deq) X(codes) X(scale) X(zero) X(g_idx) X(min) X(lscale) X(lmin) X(sd) X(smin)

void qm_xfer_put_qresult(qm_xfer *x, const qm_qresult *r, int super, int deq)
{
    size_t W = (size_t)r->out * r->in, G = (size_t)r->groups * r->out, SG = super > 0 ? G / (size_t)super : 0;
    qm_qresult s = *r; /* the scalars, pointers and all: the reader replaces the pointers */
    qm_xfer_put(x, &s, sizeof s);
    qm_xfer_put_arr(x, deq ? r->deq : NULL, W * sizeof *r->deq);
    qm_xfer_put_arr(x, r->codes, W);
    qm_xfer_put_arr(x, r->scale, G * sizeof *r->scale);
    qm_xfer_put_arr(x, r->zero, G * sizeof *r->zero);
    qm_xfer_put_arr(x, r->g_idx, (size_t)r->in * sizeof *r->g_idx);
    qm_xfer_put_arr(x, r->min, G * sizeof *r->min);
    qm_xfer_put_arr(x, r->lscale, G);
    qm_xfer_put_arr(x, r->lmin, G);
    qm_xfer_put_arr(x, r->sd, SG * sizeof *r->sd);
    qm_xfer_put_arr(x, r->smin, SG * sizeof *r->smin);
}

int qm_xfer_get_qresult(qm_xfer *x, qm_qresult *r)
{
    memset(r, 0, sizeof *r);
    if (!qm_xfer_get(x, r, sizeof *r))
        return 0;
#define NULLIFY(f) r->f = NULL;
    ARRAYS(NULLIFY)
#define GET(f) qm_xfer_get_arr(x, (void **)&r->f, NULL);
    ARRAYS(GET)
    if (x->bad) {
        qm_qresult_free(r);
        return 0;
    }
    return 1;
}
