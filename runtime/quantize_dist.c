/* quantize_dist.c: `qmoe quantize` over the ranks of an MPI job (see
 * quantize_run.h and dist.h).  Per MoE layer rank 0 broadcasts the routing
 * and the FFN's normed input; each rank quantizes the experts
 * qm_dist_assign() gives it and packs each one's linears and output rows
 * (xfer.h); rank 0 takes the packages in expert order.  Ranks other than
 * 0 live in qz_follow(): no calibration text, no output directory, no
 * weights but their experts'. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/quantize_run.h"

/* Routed expert e's weights in the current layer (its three linears). */
static long long expert_params(const run *r, int e)
{
    long long n = 0;
    for (size_t i = 0; i < r->m->n; i++) {
        const qm_tensor *t = &r->m->t[i];
        if (t->layer == r->w.layer && t->expert == e && qm_parts[t->part].linear && t->st->ndim == 2)
            n += (long long)(t->st->shape[0] * t->st->shape[1]);
    }
    return n;
}

/* Rank 0's FFN input and routing to every rank: the routing (T x k) and
 * the normed input (T x d) group by group into each rank's store; the
 * other ranks' cap arrays are allocated here (qm_calib_ffn_free()). */
static qm_status share_ffn_input(run *r, qm_calib_ffn *cap)
{
    size_t T = (size_t)r->B * r->S, k = (size_t)r->m->cfg.top_k, D = (size_t)r->m->cfg.hidden;
    if (r->rank && (!(cap->idx = malloc(T * k * sizeof *cap->idx)) || !(cap->rw = malloc(T * k * sizeof *cap->rw))))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory for the routing of %zu rows", T);
    qm_status st = qm_dist_bcast(r->dist, cap->idx, T * k * sizeof *cap->idx, r->d);
    if (st == QM_OK)
        st = qm_dist_bcast(r->dist, cap->rw, T * k * sizeof *cap->rw, r->d);
    for (int g = 0; st == QM_OK && g < r->G; g++) {
        float *x = qm_states_get(r->n2s, (size_t)g, r->d);
        if (!x)
            st = QM_EIO;
        else if ((st = qm_dist_bcast(r->dist, x, (size_t)gwin(r, g) * r->S * D * sizeof *x, r->d)) == QM_OK && r->rank)
            st = qm_states_put(r->n2s, (size_t)g, r->d);
    }
    return st;
}

/* Expert e quantized here, packed for rank 0: its linears (packed_head +
 * GPTQ's result each), PACK_END, its output rows.  *buf: the package (caller
 * frees). */
static qm_status expert_package(run *r, const qm_calib_ffn *cap, int e, qm_fwd_ws *ws, void **buf, size_t *n)
{
    qm_xfer x = {0};
    r->pack = &x;
    r->eo = NULL;
    r->n_eo = 0;
    qm_status st = qz_one_expert(r, cap, e, ws);
    r->pack = NULL;
    packed_head h = {.tensor = (uint64_t)PACK_END};
    qm_xfer_put(&x, &h, sizeof h);
    qm_xfer_put_arr(&x, r->eo, r->n_eo * r->m->cfg.hidden * sizeof *r->eo);
    free(r->eo);
    r->eo = NULL;
    if (st == QM_OK && x.oom)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory packing expert %d of layer %d for rank 0", e, r->w.layer);
    if (st != QM_OK) {
        free(x.b);
        return st;
    }
    *buf = x.b;
    *n = x.n;
    return QM_OK;
}

/* Rank 0: expert e's package, from rank `from`, written and summed as if
 * quantized here. */
static qm_status apply_package(run *r, const qm_calib_ffn *cap, int e, int from, void *buf, size_t n)
{
    qm_xfer x = {.b = buf, .n = n};
    qm_calib c = calib_of(r);
    qm_status st = QM_OK;
    packed_head h;
    while (st == QM_OK && qm_xfer_get(&x, &h, sizeof h) && h.tensor != (uint64_t)PACK_END) {
        qm_qresult q;
        if (h.tensor >= r->m->n || !r->by_tensor[h.tensor] || !qm_xfer_get_qresult(&x, &q)) {
            x.bad = 1;
            break;
        }
        h.fallback[sizeof h.fallback - 1] = 0;
        st = qz_take_linear(r, (size_t)h.tensor, &q, h.tokens, h.fallback, h.error, h.seconds);
    }
    float *eo = NULL;
    size_t bytes = 0, D = (size_t)r->m->cfg.hidden;
    if (st == QM_OK && !x.bad && qm_xfer_get_arr(&x, (void **)&eo, &bytes) && eo) {
        if (bytes != qm_calib_count(&c, cap, e) * D * sizeof *eo)
            x.bad = 1;
        else
            st = qm_calib_expert_apply(&c, cap, e, eo, NULL, r->d);
    }
    free(eo);
    if (st == QM_OK && (x.bad || x.at != x.n))
        st = qm_diag_fail(r->d, QM_EFORMAT, "layer %d, expert %d: the results from rank %d are damaged (%zu bytes)",
                          r->w.layer, e, from, n);
    return st;
}

/* The routed experts of an MoE layer over the ranks: each rank quantizes
 * those qm_dist_assign() gives it (rank 0 keeps its packages, the others
 * send theirs as they finish); rank 0 then takes every expert's package
 * in expert order, so the log, the writers and the sum of the outputs see
 * what one process does.  Rank 0's cap and stores are the layer's; the
 * other ranks receive them first. */
qm_status qz_spread_experts(run *r, qm_calib_ffn *cap, qm_fwd_ws *ws)
{
    int E = (int)r->m->cfg.experts;
    qm_calib c = calib_of(r);
    long long *tokens = malloc((size_t)E * sizeof *tokens), *params = malloc((size_t)E * sizeof *params);
    int *owner = malloc((size_t)E * sizeof *owner);
    void **mine = calloc((size_t)E, sizeof *mine); /* rank 0's packages; owned */
    size_t *len = calloc((size_t)E, sizeof *len);
    qm_status st = tokens && params && owner && mine && len ? share_ffn_input(r, cap)
                                                           : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (int e = 0; st == QM_OK && e < E; e++) {
        tokens[e] = (long long)qm_calib_count(&c, cap, e);
        params[e] = expert_params(r, e);
    }
    if (st == QM_OK)
        qm_dist_assign(r->ranks, E, tokens, params, r->m->cfg.hidden, owner);
    for (int e = 0; st == QM_OK && e < E; e++) {
        if (owner[e] != r->rank)
            continue;
        if ((st = expert_package(r, cap, e, ws, &mine[e], &len[e])) == QM_OK && r->rank) {
            st = qm_dist_post(r->dist, 0, e, mine[e], len[e], r->d); /* takes the buffer */
            mine[e] = NULL;
        }
    }
    if (st == QM_OK && r->rank)
        st = qm_dist_flush(r->dist, r->d);
    for (int e = 0; st == QM_OK && !r->rank && e < E; e++) {
        if (owner[e] && (st = qm_dist_recv(r->dist, owner[e], e, &mine[e], &len[e], r->d)) != QM_OK)
            break;
        st = apply_package(r, cap, e, owner[e], mine[e], len[e]);
        free(mine[e]);
        mine[e] = NULL;
    }
    for (int e = 0; mine && e < E; e++)
        free(mine[e]);
    free(mine);
    free(len);
    free(tokens);
    free(params);
    free(owner);
    return st;
}

/* ---- ranks other than 0 ----------------------------------------------------------------------- */

/* Rank 0, once its checks pass: the run's shape and every tensor's GPTQ
 * settings (its writers fix them) to the other ranks. */
qm_status qz_lead(run *r)
{
    qm_dist_shape h = {(long long)r->m->n, r->B, r->S};
    qm_qspec *specs = calloc(r->m->n ? r->m->n : 1, sizeof *specs);
    qm_status st = specs ? qm_dist_bcast(r->dist, &h, sizeof h, r->d) : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < r->m->n; i++)
        if (r->by_tensor[i] && r->by_tensor[i]->bits)
            specs[i] = qz_plan_spec(r, i);
    if (st == QM_OK)
        st = qm_dist_bcast(r->dist, specs, r->m->n * sizeof *specs, r->d);
    free(specs);
    return st;
}

/* Layer L on a rank other than 0: no weights but the routed experts it is
 * given, one at a time (qz_spread_experts()). */
static qm_status follow_layer(run *r, int L)
{
    qm_layer_w *w = &r->w;
    int E = (int)r->m->cfg.experts;
    memset(w, 0, sizeof *w);
    w->layer = L;
    w->moe = r->m->is_moe[L];
    if (!w->moe)
        return QM_OK;
    w->router.out = E; /* the expert count qm_layer_free() reads */
    w->gate = calloc((size_t)E, sizeof *w->gate);
    w->up = calloc((size_t)E, sizeof *w->up);
    w->down = calloc((size_t)E, sizeof *w->down);
    qm_calib c = calib_of(r);
    qm_calib_ffn cap = {0};
    qm_fwd_ws *ws = qm_calib_ws(&c);
    qm_status st = w->gate && w->up && w->down && ws ? qz_spread_experts(r, &cap, ws)
                                                     : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_fwd_ws_free(ws);
    qm_calib_ffn_free(&cap);
    qm_layer_free(w);
    return st;
}

/* A rank other than 0: the model and the plan (read only after rank 0
 * checked them, so a bad input is reported once), rank 0's settings, then
 * each layer rank 0 names until it names none. */
qm_status qz_follow(const char *plan_path, const char *model_dir, const qm_quant_opts *o, qm_quant_report *rep,
                        qm_diag *d)
{
    run r = {.o = o, .rep = rep, .d = d, .t0 = qm_clock(), .dist = o->dist, .rank = qm_dist_rank(o->dist),
             .ranks = qm_dist_size(o->dist)};
    qm_dist_shape h;
    char config[65];
    qm_status st = qm_dist_bcast(r.dist, &h, sizeof h, d);
    if (st == QM_OK)
        st = qm_model_open(model_dir, &r.m, d);
    if (st == QM_OK)
        st = qm_plan_read(plan_path, &r.plan, d);
    if (st == QM_OK)
        st = qm_sha256_file(r.m->config_path, config, d);
    if (st == QM_OK)
        st = qz_match_plan(&r, config);
    if (st == QM_OK)
        st = qm_dist_shape_check(r.dist, &h, model_dir, r.m->n, d);
    if (st == QM_OK && !(r.specs = malloc((r.m->n ? r.m->n : 1) * sizeof *r.specs)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = qm_dist_bcast(r.dist, r.specs, r.m->n * sizeof *r.specs, d);
    r.B = (int)h.B;
    r.S = (int)h.S;
    if (st == QM_OK)
        st = qz_make_states(&r);
    for (int L; st == QM_OK;) {
        qm_dist_set_layer(r.dist, -1); /* waiting for rank 0 to name the next */
        if ((st = qm_dist_bcast(r.dist, &L, sizeof L, d)) != QM_OK || L < 0)
            break;
        qm_dist_set_layer(r.dist, L);
        if ((st = follow_layer(&r, L)) == QM_OK)
            rep->layers++;
    }
    qm_states_free(r.n2s);
    free(r.specs);
    free(r.by_tensor);
    qm_plan_free(r.plan);
    qm_model_close(r.m);
    return st;
}
