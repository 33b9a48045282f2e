/* measure_dist.c: `qmoe measure` over the ranks of an MPI job (see
 * measure_run.h and dist.h).
 *
 * Every unit is quantized alone, so a layer's work items (the attention,
 * the dense MLP, the shared expert, each routed expert) are independent
 * once the layer's input is known.  Per layer rank 0 sends its hidden
 * states to every rank; each rank captures the attention's output and the
 * routing from them itself (one build on one kind of machine: the same
 * bytes as rank 0's), and rank 0 gives the items to the ranks by
 * qm_dist_assign() (cost: parameters x (rows + d)).  Each rank measures
 * its items; rank 0 takes every other rank's errors, each item from the
 * rank that owns it, into the layer's table before it makes the units'
 * errors from it: the numbers one process computes, combined in the same
 * order, so the measure file has the same bytes for any N.  Rank 0 alone
 * carries the stream to the next layer and writes the state and the file,
 * so a run killed on N ranks resumes on any other N.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/measure_run.h"
#include "runtime/xfer.h"

/* Item's block and routed expert in a layer's error table (lerr). */
static void item_block(int item, int *b, int *x)
{
    static const int blocks[WORK_EXPERT] = {[WORK_ATTN] = BLK_ATTN, [WORK_MLP] = BLK_MLP, [WORK_SHARED] = BLK_SHARED};
    *b = item < WORK_EXPERT ? blocks[item] : BLK_EXPERT;
    *x = item < WORK_EXPERT ? -1 : item - WORK_EXPERT;
}

qm_status ms_assign(mrun *r, const qm_layer_w *w, const qm_calib_ffn *f)
{
    if (r->ranks < 2)
        return QM_OK;
    const qm_model *m = r->m;
    int E = (int)m->cfg.experts, n = WORK_EXPERT + E;
    if (!r->owner && !(r->owner = malloc((size_t)n * sizeof *r->owner)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (r->rank == 0) {
        long long *tokens = calloc((size_t)n, sizeof *tokens), *params = calloc((size_t)n, sizeof *params);
        if (!tokens || !params) {
            free(tokens), free(params);
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        }
        qm_calib c = {m, (qm_layer_w *)w, r->x, r->B, r->S, NULL, NULL, NULL};
        tokens[WORK_ATTN] = tokens[WORK_MLP] = tokens[WORK_SHARED] = (long long)r->B * r->S;
        for (int e = 0; w->moe && e < E; e++)
            tokens[WORK_EXPERT + e] = (long long)qm_calib_count(&c, f, e);
        for (size_t i = 0; i < m->n; i++) {
            const qm_tensor *t = &m->t[i];
            int slot, b = t->layer == w->layer ? ms_part_block(t->part, &slot) : -1;
            static const int items[BLK_COUNT] = {[BLK_ATTN] = WORK_ATTN, [BLK_MLP] = WORK_MLP,
                                                 [BLK_SHARED] = WORK_SHARED, [BLK_EXPERT] = WORK_EXPERT};
            if (b >= 0 && (b != BLK_EXPERT || (t->expert >= 0 && t->expert < E)))
                params[items[b] + (b == BLK_EXPERT ? t->expert : 0)] += (long long)t->numel;
        }
        qm_dist_assign(r->ranks, n, tokens, params, m->cfg.hidden, r->owner);
        free(tokens), free(params);
    }
    return qm_dist_bcast(r->dist, r->owner, (size_t)n * sizeof *r->owner, r->d);
}

/* A rank's errors of a layer as they travel: the GPTQ runs it made, then
 * the whole table (zeros where it owns nothing). */
qm_status ms_gather(mrun *r, int L, lerr *e, size_t runs)
{
    if (r->ranks < 2)
        return QM_OK;
    size_t per = (size_t)5 * e->nw, nv = (size_t)BLK_COUNT * (e->E + 1) * per;
    void *buf = NULL;
    size_t len = 0;
    qm_status st = QM_OK;
    if (r->rank) {
        uint64_t k = runs;
        qm_xfer x = {0};
        qm_xfer_put(&x, &k, sizeof k);
        qm_xfer_put(&x, e->v, nv * sizeof *e->v);
        if ((st = qm_xfer_done(&x, &buf, &len, r->d)) == QM_OK && (st = qm_dist_post(r->dist, 0, 0, buf, len, r->d)) == QM_OK)
            st = qm_dist_flush(r->dist, r->d);
        return st;
    }
    for (int k = 1; st == QM_OK && k < r->ranks; k++) {
        if ((st = qm_dist_recv(r->dist, k, 0, &buf, &len, r->d)) != QM_OK)
            break;
        uint64_t runs_k = 0;
        qm_xfer x = {.b = buf, .n = len};
        if (!qm_xfer_get(&x, &runs_k, sizeof runs_k) || len != sizeof runs_k + nv * sizeof *e->v)
            st = qm_diag_fail(r->d, QM_EFORMAT, "layer %d: the errors from rank %d are damaged (%zu bytes, not %zu)", L,
                              k, len, sizeof runs_k + nv * sizeof *e->v);
        for (int item = 0; st == QM_OK && item < WORK_EXPERT + e->E; item++) {
            int b, ex;
            if (r->owner[item] != k)
                continue;
            item_block(item, &b, &ex);
            double *to = lerr_at(e, b, ex, 0, 0);
            memcpy(to, x.b + x.at + (size_t)(to - e->v) * sizeof *to, per * sizeof *to);
        }
        r->rep->gptq_runs += (size_t)runs_k;
        free(buf);
        buf = NULL;
    }
    return st;
}

qm_status ms_lead(mrun *r)
{
    qm_dist_shape h = {(long long)r->m->n, r->B, r->S};
    return qm_dist_bcast(r->dist, &h, sizeof h, r->d);
}

qm_status ms_lead_layer(mrun *r, int L)
{
    qm_dist_set_layer(r->dist, L); /* a wait that times out names it */
    qm_status st = qm_dist_bcast(r->dist, &L, sizeof L, r->d);
    if (st == QM_OK && L >= 0)
        st = qm_dist_bcast(r->dist, r->x, (size_t)r->B * r->S * (size_t)r->m->cfg.hidden * sizeof *r->x, r->d);
    return st;
}

qm_status ms_follow(const char *model_dir, const qm_measure_opts *o, qm_measure_report *rep, qm_diag *d)
{
    mrun r = {.o = o, .rep = rep, .d = d, .dist = o->dist, .rank = qm_dist_rank(o->dist),
              .ranks = qm_dist_size(o->dist)};
    double t0 = qm_clock();
    qm_dist_shape h;
    lerr e = {0, o->n_widths, NULL};
    size_t nv = 0, T = 0, D = 0;
    qm_status st = qm_dist_bcast(r.dist, &h, sizeof h, d);
    if (st == QM_OK)
        st = qm_model_open(model_dir, &r.m, d);
    if (st == QM_OK)
        st = qm_dist_shape_check(r.dist, &h, model_dir, r.m->n, d);
    if (st == QM_OK) /* the same command line as rank 0's: the same settings */
        st = ms_target_specs(&r);
    if (st == QM_OK) {
        r.B = (int)h.B;
        r.S = (int)h.S;
        T = (size_t)r.B * r.S;
        D = (size_t)r.m->cfg.hidden;
        e.E = (int)r.m->cfg.experts;
        nv = (size_t)BLK_COUNT * (e.E + 1) * 5 * e.nw;
        if (!(r.x = malloc(T * D * sizeof *r.x)) || !(e.v = malloc(nv * sizeof *e.v)))
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    }
    for (int L; st == QM_OK;) {
        qm_dist_set_layer(r.dist, -1); /* waiting for rank 0 to name the next */
        if ((st = qm_dist_bcast(r.dist, &L, sizeof L, d)) != QM_OK || L < 0)
            break;
        qm_dist_set_layer(r.dist, L);
        if (L >= r.m->cfg.layers) {
            st = qm_diag_fail(d, QM_EFORMAT, "rank %d: rank 0 named layer %d of a model of %d", r.rank, L,
                              (int)r.m->cfg.layers);
            break;
        }
        if ((st = qm_dist_bcast(r.dist, r.x, T * D * sizeof *r.x, d)) != QM_OK)
            break;
        memset(e.v, 0, nv * sizeof *e.v);
        size_t runs = rep->gptq_runs;
        if ((st = ms_layer_work(&r, L, &e)) == QM_OK && (st = ms_gather(&r, L, &e, rep->gptq_runs - runs)) == QM_OK)
            rep->layers++;
    }
    rep->seconds = qm_clock() - t0;
    free(e.v);
    free(r.x);
    free(r.owner);
    free(r.spec);
    qm_model_close(r.m);
    return st;
}
