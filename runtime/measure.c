/* measure.c: `qmoe measure` (see measure.h): per layer, every unit's error
 * at every width; progress saved per layer; the measure file at the end.
 * Under mpirun each rank measures the work items measure_dist.c gives it
 * and rank 0 does everything else. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/engine.h"
#include "model/plan.h"
#include "model/tokens.h"
#include "runtime/measure_run.h"
#include "runtime/qwriter.h"
#include "runtime/sidefile.h"

static const char *const units_names[QM_UNITS_COUNT] = {
    [QM_UNITS_LINEAR] = "linear", [QM_UNITS_EXPERT] = "expert", [QM_UNITS_LAYER] = "layer"};

const char *qm_measure_units_name(qm_measure_units u)
{
    return (unsigned)u < QM_UNITS_COUNT ? units_names[u] : NULL;
}

int qm_measure_units_find(const char *s)
{
    for (int i = 0; i < QM_UNITS_COUNT; i++)
        if (strcmp(s, units_names[i]) == 0)
            return i;
    return -1;
}

qm_measure_opts qm_measure_opts_default(void)
{
    qm_qspec q = qm_qspec_default();
    return (qm_measure_opts){.ctx = QM_DEFAULT_CTX, .samples = 128, .widths = {2, 3, 4, 8}, .n_widths = 4,
                             .units = QM_UNITS_LINEAR, .group = -1, .sym = q.sym, .act_order = q.act_order,
                             .damp = q.damp, .min_expert_tokens = 16};
}

/* ---- units ------------------------------------------------------------------------------------ */

/* Each quantizable part's block and its place in the block (0..3). */
static const struct {
    qm_part p;
    int b, slot;
} blocks[] = {
    {QM_PART_Q, BLK_ATTN, 0},           {QM_PART_K, BLK_ATTN, 1},           {QM_PART_V, BLK_ATTN, 2},
    {QM_PART_O, BLK_ATTN, 3},           {QM_PART_MLP_GATE, BLK_MLP, 0},     {QM_PART_MLP_UP, BLK_MLP, 1},
    {QM_PART_MLP_DOWN, BLK_MLP, 2},     {QM_PART_EXPERT_GATE, BLK_EXPERT, 0}, {QM_PART_EXPERT_UP, BLK_EXPERT, 1},
    {QM_PART_EXPERT_DOWN, BLK_EXPERT, 2}, {QM_PART_SHARED_GATE, BLK_SHARED, 0}, {QM_PART_SHARED_UP, BLK_SHARED, 1},
    {QM_PART_SHARED_DOWN, BLK_SHARED, 2},
};

/* Block of a quantizable part and its place in the block (0..3), or -1. */
int ms_part_block(qm_part p, int *slot)
{
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++)
        if (blocks[i].p == p) {
            *slot = blocks[i].slot;
            return blocks[i].b;
        }
    return -1;
}

/* The model tensor of layer L's linear at (block, slot) of expert ex (-1:
 * none), or -1.  Only --target's settings are kept per tensor (spec_of()),
 * so without them nothing is looked up. */
static long tensor_of(const mrun *r, int L, int bk, int slot, int ex)
{
    for (size_t i = 0; r->spec && i < sizeof blocks / sizeof *blocks; i++)
        if (blocks[i].b == bk && blocks[i].slot == slot)
            return qm_model_tensor(r->m, L, blocks[i].p, ex);
    return -1;
}

#define say(r, ...) qm_progressf((r)->o->progress, (r)->o->progress_ctx, __VA_ARGS__)

/* The unit's name for tensor canon at granularity g: the canonical name,
 * the block's prefix (cut before the last '.'), or the layer's (before the
 * first).  Caller frees. */
static char *unit_name(const char *canon, qm_measure_units g)
{
    const char *cut = g == QM_UNITS_LINEAR ? NULL : g == QM_UNITS_EXPERT ? strrchr(canon, '.') : strchr(canon, '.');
    return cut ? qm_strfmt("%.*s", (int)(cut - canon), canon) : qm_strdup(canon);
}

static qm_status build_units(mrun *r)
{
    const qm_model *m = r->m;
    qm_measure_units g = r->o->units;
    size_t cap = m->n + 1;
    if (!(r->u = calloc(cap, sizeof *r->u)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (int L = 0; L < m->cfg.layers; L++)
        for (size_t i = 0; i < m->n; i++) {
            const qm_tensor *t = &m->t[i];
            int slot, b = t->layer == L ? ms_part_block(t->part, &slot) : -1;
            if (b < 0)
                continue;
            char *name = unit_name(t->canon, g);
            if (!name)
                return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
            munit *u = NULL;
            for (size_t j = r->nu; j-- > 0 && r->u[j].layer == L;)
                if (strcmp(r->u[j].name, name) == 0) {
                    u = &r->u[j];
                    break;
                }
            if (u) {
                free(name);
            } else {
                u = &r->u[r->nu++];
                *u = (munit){name, L, 0, b, g == QM_UNITS_LINEAR ? slot : -1, t->expert};
            }
            u->params += t->numel;
        }
    return QM_OK;
}

/* ---- one layer ---------------------------------------------------------------------------------- */

/* The GPTQ settings of a linear (model tensor ti) at width b. */
static qm_status spec_of(const mrun *r, const qm_lin *l, long ti, int b, const char *what, qm_qspec *s)
{
    for (int k = 0; r->spec && k < r->o->n_widths; k++)
        if (r->o->widths[k] == b) {
            if (ti < 0)
                return qm_diag_fail(r->d, QM_EINVAL, "%s is not one of the model's tensors", what);
            *s = r->spec[(size_t)k * r->m->n + (size_t)ti];
            return QM_OK;
        }
    *s = qm_qspec_default();
    s->bits = b;
    s->sym = r->o->sym;
    s->act_order = r->o->act_order;
    s->damp = r->o->damp;
    s->group = r->o->group < 0 ? qm_plan_default_group((uint64_t)l->in) : r->o->group;
    if (s->group > 0 && l->in % s->group)
        return qm_diag_fail(r->d, QM_EINVAL, "--group %d does not divide the %d input columns of %s", s->group,
                            l->in, what);
    return QM_OK;
}

/* ---- --target gguf: each width on the grid the GGUF file holds ---------------------------------- */

/* The rules of an engine's fit that settle a linear's group size, symmetry
 * and act-order but not its width: a width is rated as given, so a row too
 * narrow for 2- and 3-bit k-quants keeps the width and gets the writer's
 * fallback, as a plan giving it that width does. */
static int scheme_rule(const qm_eng_rule *x)
{
    return x->kind == QM_EC_SYM || x->kind == QM_EC_NO_ACT || x->kind == QM_EC_GROUPS;
}

qm_status ms_target_specs(mrun *r)
{
    const qm_measure_opts *o = r->o;
    const qm_model *m = r->m;
    if (!o->target)
        return QM_OK;
    const qm_engine *e = NULL; /* the engine reading the target's files: llama.cpp for GGUF */
    for (size_t k = 0; !e && k < qm_n_engines; k++)
        if (strcmp(qm_engines[k]->format, o->target) == 0)
            e = qm_engines[k];
    if (!e)
        return qm_diag_fail(r->d, QM_EINVAL, "--target '%s': no engine reads that format", o->target);
    qm_eng_rule *rules = malloc((e->n_rules + 1) * sizeof *rules);
    qm_plan_tensor *pt = calloc(m->n + 1, sizeof *pt);      /* one width's plan of every linear */
    qm_engine_why *why = calloc(m->n + 1, sizeof *why);
    r->spec = calloc((size_t)o->n_widths * m->n + 1, sizeof *r->spec); /* freed by the run */
    qm_status st = rules && pt && why && r->spec ? QM_OK : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    size_t nr = 0;
    for (size_t k = 0; st == QM_OK && k < e->n_rules; k++)
        if (scheme_rule(&e->rules[k]))
            rules[nr++] = e->rules[k];
    qm_engine schemes = {e->name, e->version, e->format, rules, nr};
    for (int k = 0; st == QM_OK && k < o->n_widths; k++) {
        int b = o->widths[k];
        for (size_t i = 0; i < m->n; i++) {
            const qm_tensor *t = &m->t[i];
            int slot, lin = t->layer >= 0 && ms_part_block(t->part, &slot) >= 0;
            uint64_t in = t->shape[t->ndim - 1];
            /* names read only: the fit changes widths and schemes alone */
            pt[i] = (qm_plan_tensor){.name = (char *)t->st->name, .module = t->canon, .ndim = t->ndim,
                                     .shape = {t->shape[0], t->shape[1]}, .dtype = t->st->dtype,
                                     .rule = (char *)"measure"};
            if (lin) { /* as compile plans width b with these options */
                pt[i].bits = b;
                pt[i].group = o->group < 0 ? qm_plan_default_group(in) : o->group;
                pt[i].sym = o->sym;
                pt[i].act_order = o->act_order;
            }
            why[i] = (qm_engine_why){0, 0};
        }
        st = qm_engine_fit(&schemes, m, pt, why, r->d);
        for (size_t i = 0; st == QM_OK && i < m->n; i++) {
            const qm_tensor *t = &m->t[i];
            if (!pt[i].bits)
                continue;
            if (pt[i].bits != b) { /* scheme rules only: never */
                st = qm_diag_fail(r->d, QM_EINVAL, "%s: fitting %d bits to %s gave %d", t->canon, b, e->name,
                                  pt[i].bits);
                break;
            }
            qm_qspec *s = &r->spec[(size_t)k * m->n + i];
            *s = (qm_qspec){.bits = b, .group = pt[i].group, .sym = pt[i].sym, .act_order = pt[i].act_order,
                            .damp = o->damp};
            qm_gguf_spec(&pt[i], t->shape[t->ndim - 1], s);
        }
        if (st != QM_OK)
            qm_diag_note(r->d, "while fitting %d bits to %s for --target %s", b, e->name, o->target);
    }
    free(rules);
    free(pt);
    free(why);
    return st;
}

/* GPTQ (H given) or round-to-nearest (H NULL) of l (model tensor ti) at
 * width b into *deq (out, in; caller frees). */
static qm_status quant(mrun *r, const qm_lin *l, long ti, const float *H, long long rows, int b, const char *what,
                       float **deq)
{
    qm_qspec s;
    qm_qresult q = {0};
    qm_status st = spec_of(r, l, ti, b, what, &s);
    if (st != QM_OK)
        return st;
    float *Hc = NULL;
    if (H) {
        if (!(Hc = malloc((size_t)l->in * l->in * sizeof *Hc)))
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        memcpy(Hc, H, (size_t)l->in * l->in * sizeof *Hc);
        st = qm_calib_gptq(l->w, l->out, l->in, Hc, 1, rows, NULL, 0, &s, &q, NULL, r->d);
        free(Hc);
    } else {
        st = qm_rtn(l->w, l->out, l->in, &s, &q, r->d);
    }
    r->rep->gptq_runs++;
    if (st != QM_OK) {
        qm_diag_note(r->d, "while measuring %s at %d bits", what, b);
        return st;
    }
    *deq = q.deq;
    q.deq = NULL;
    qm_qresult_free(&q);
    return QM_OK;
}

static double sumsq_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double t = (double)a[i] - b[i];
        s += t * t;
    }
    return s;
}

/* The attention: per linear and as a block, at every width. */
static qm_status attention(mrun *r, qm_layer_w *w, const float *hA, float *h2, lerr *e)
{
    qm_calib c = {r->m, w, r->x, r->B, r->S, NULL, NULL, NULL};
    size_t TD = (size_t)r->B * r->S * (size_t)r->m->cfg.hidden;
    int lin = r->o->units == QM_UNITS_LINEAR;
    qm_lin *ls[4] = {&w->q, &w->k, &w->v, &w->o};
    static const char *const names[4] = {"attn.q", "attn.k", "attn.v", "attn.o"};
    float *Hqkv = NULL, *Ho = NULL;
    long long nq = 0, no = 0;
    qm_status st = qm_calib_hessian(&c, QM_PART_Q, w->q.in, &Hqkv, &nq, r->d);
    if (st == QM_OK)
        st = qm_calib_hessian(&c, QM_PART_O, w->o.in, &Ho, &no, r->d);
    for (int k = 0; st == QM_OK && k < e->nw; k++) {
        int b = r->o->widths[k];
        float *deq[4] = {0};
        for (int j = 0; st == QM_OK && j < (lin ? 4 : 3); j++)
            st = quant(r, ls[j], tensor_of(r, w->layer, BLK_ATTN, j, -1), j < 3 ? Hqkv : Ho, j < 3 ? nq : no, b,
                       names[j], &deq[j]);
        for (int j = 0; st == QM_OK && lin && j < 4; j++) { /* each linear alone */
            float *keep = ls[j]->w;
            ls[j]->w = deq[j];
            st = qm_calib_attention(&c, h2, r->d);
            ls[j]->w = keep;
            if (st == QM_OK)
                *lerr_at(e, BLK_ATTN, -1, j, k) = sumsq_diff(h2, hA, TD);
        }
        if (st == QM_OK && !lin) { /* the block, in quantize's order: o from the quantized q, k, v */
            float *keep[4] = {w->q.w, w->k.w, w->v.w, w->o.w}, *H2 = NULL;
            long long n2 = 0;
            for (int j = 0; j < 3; j++)
                ls[j]->w = deq[j];
            st = qm_calib_hessian(&c, QM_PART_O, w->o.in, &H2, &n2, r->d);
            if (st == QM_OK)
                st = quant(r, &w->o, tensor_of(r, w->layer, BLK_ATTN, 3, -1), H2, n2, b, names[3], &deq[3]);
            free(H2);
            if (st == QM_OK) {
                w->o.w = deq[3];
                if ((st = qm_calib_attention(&c, h2, r->d)) == QM_OK)
                    *lerr_at(e, BLK_ATTN, -1, 4, k) = sumsq_diff(h2, hA, TD);
            }
            for (int j = 0; j < 4; j++)
                ls[j]->w = keep[j];
        }
        for (int j = 0; j < 4; j++)
            free(deq[j]);
    }
    free(Hqkv);
    free(Ho);
    return st;
}

/* Rows X (n, D) through gate/up/down (g, u, dn) into Y (n, D), each row
 * scaled by wt (NULL: 1).  A: scratch (n, W). */
static qm_status swiglu_rows(mrun *r, const float *X, int n, const float *wt, const qm_lin *g, const qm_lin *u,
                             const qm_lin *dn, float *A, float *Y)
{
    int D = g->in, W = g->out;
    if (n == 0) /* an expert no calibration row reached: it changes nothing they see */
        return QM_OK;
    qm_status st = qm_calib_act(X, n, g, u, A, r->d);
    if (st != QM_OK)
        return st;
    qm_sgemm_fixed(0, 1, n, D, W, 1.0f, A, W, dn->w, W, 0.0f, Y, D);
    for (int i = 0; wt && i < n; i++)
        for (int j = 0; j < D; j++)
            Y[(size_t)i * D + j] *= wt[i];
    return QM_OK;
}

/* One SwiGLU block of layer L over its rows X (n, D) with weights wt: per
 * linear (linear units) or as a block (down from the quantized gate and
 * up), at every width, into e's block bk (expert ex).  rtn:
 * round-to-nearest. */
static qm_status swiglu(mrun *r, int L, qm_lin *g, qm_lin *u, qm_lin *dn, const float *X, int n, const float *wt,
                        int rtn, int bk, int ex, const char *what, lerr *e)
{
    int D = g->in, W = g->out, lin = r->o->units == QM_UNITS_LINEAR;
    size_t nD = (size_t)n * D + 1, nW = (size_t)n * W + 1;
    float *A = malloc(nW * sizeof *A), *Yb = malloc(nD * sizeof *Yb), *Y = malloc(nD * sizeof *Y);
    float *H1 = rtn ? NULL : calloc((size_t)D * D, sizeof *H1), *H2 = rtn ? NULL : calloc((size_t)W * W, sizeof *H2);
    qm_status st = QM_OK;
    if (!A || !Yb || !Y || (!rtn && (!H1 || !H2)))
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %d rows of %s", n, what);
    if (st == QM_OK)
        st = swiglu_rows(r, X, n, wt, g, u, dn, A, Yb);
    if (st == QM_OK && !rtn) {
        qm_hessian_add(H1, X, n, D);
        qm_hessian_add(H2, A, n, W); /* A: the unquantized activations */
    }
    qm_lin *ls[3] = {g, u, dn};
    for (int k = 0; st == QM_OK && k < e->nw; k++) {
        int b = r->o->widths[k];
        float *deq[3] = {0};
        for (int j = 0; st == QM_OK && j < (lin ? 3 : 2); j++)
            st = quant(r, ls[j], tensor_of(r, L, bk, j, ex), j < 2 ? H1 : H2, n, b, what, &deq[j]);
        for (int j = 0; st == QM_OK && lin && j < 3; j++) {
            float *keep = ls[j]->w;
            ls[j]->w = deq[j];
            st = swiglu_rows(r, X, n, wt, g, u, dn, A, Y);
            ls[j]->w = keep;
            if (st == QM_OK)
                *lerr_at(e, bk, ex, j, k) = sumsq_diff(Y, Yb, (size_t)n * D);
        }
        if (st == QM_OK && !lin) {
            float *kg = g->w, *ku = u->w, *kd = dn->w;
            g->w = deq[0];
            u->w = deq[1];
            float *H3 = rtn ? NULL : calloc((size_t)W * W, sizeof *H3);
            if (!rtn && !H3)
                st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
            if (st == QM_OK && (n == 0 || (st = qm_calib_act(X, n, g, u, A, r->d)) == QM_OK)) {
                if (!rtn)
                    qm_hessian_add(H3, A, n, W);
                st = quant(r, dn, tensor_of(r, L, bk, 2, ex), H3, n, b, what, &deq[2]);
            }
            free(H3);
            if (st == QM_OK) {
                dn->w = deq[2];
                if ((st = swiglu_rows(r, X, n, wt, g, u, dn, A, Y)) == QM_OK)
                    *lerr_at(e, bk, ex, 4, k) = sumsq_diff(Y, Yb, (size_t)n * D);
            }
            g->w = kg, u->w = ku, dn->w = kd;
        }
        for (int j = 0; j < 3; j++)
            free(deq[j]);
    }
    free(A), free(Yb), free(Y), free(H1), free(H2);
    return st;
}

/* The FFN: each piece's errors (the pieces this rank owns); on rank 0 r->x
 * ends as the unquantized layer's output (hA + the FFN's output, added as a
 * forward pass adds it). */
static qm_status ffn(mrun *r, qm_layer_w *w, float *hA, const qm_calib_ffn *fi, lerr *e)
{
    const qm_model *m = r->m;
    size_t T = (size_t)r->B * r->S, D = (size_t)m->cfg.hidden;
    qm_calib c = {m, w, hA, r->B, r->S, NULL, NULL, NULL};
    const qm_calib_ffn f = *fi;
    float *X = malloc((T * (size_t)(m->cfg.top_k > 0 ? m->cfg.top_k : 1)) * D * sizeof *X);
    float *wt = malloc((T * (size_t)(m->cfg.top_k > 0 ? m->cfg.top_k : 1) + 1) * sizeof *wt);
    float *y = calloc(T * D, sizeof *y);
    qm_fwd_ws *ws = qm_calib_ws(&c);
    qm_status st = QM_OK;
    if (!X || !wt || !y || !ws)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    char what[64];
    if (st == QM_OK && !w->moe && w->mgate.w && ms_mine(r, WORK_MLP)) {
        snprintf(what, sizeof what, "layer %d's mlp", w->layer);
        st = swiglu(r, w->layer, &w->mgate, &w->mup, &w->mdown, f.n2, (int)T, NULL, 0, BLK_MLP, -1, what, e);
    }
    for (int x = 0; st == QM_OK && w->moe && x < m->cfg.experts; x++) {
        int own = ms_mine(r, WORK_EXPERT + x);
        if (!own && r->rank) /* rank 0 alone carries the stream */
            continue;
        int n = qm_calib_routed(&c, &f, x, X, wt, r->d);
        snprintf(what, sizeof what, "layer %d's expert %d", w->layer, x);
        if ((st = qm_expert_load(m, w->layer, x, w, r->d)) != QM_OK)
            break;
        if (w->gate[x].w) {
            if (own)
                st = swiglu(r, w->layer, &w->gate[x], &w->up[x], &w->down[x], X, n, wt,
                            n < r->o->min_expert_tokens, BLK_EXPERT, x, what, e);
            if (st == QM_OK && !r->rank)
                st = qm_calib_ffn_add(&c, w, &f, x, &w->gate[x], &w->up[x], &w->down[x], ws, y, r->d);
        }
        qm_expert_free(w, x);
    }
    if (st == QM_OK && w->moe && w->sgate.w && ms_mine(r, WORK_SHARED)) {
        float *sw = NULL;
        if (w->shared_gate) { /* Qwen2-MoE: sigmoid(shared_gate . n2) scales the shared expert */
            sw = wt;
            for (size_t t = 0; t < T; t++) {
                double s = 0;
                for (size_t j = 0; j < D; j++)
                    s += (double)w->shared_gate[j] * f.n2[t * D + j];
                sw[t] = (float)(1.0 / (1.0 + exp(-s)));
            }
        }
        snprintf(what, sizeof what, "layer %d's shared expert", w->layer);
        st = swiglu(r, w->layer, &w->sgate, &w->sup, &w->sdown, f.n2, (int)T, sw, 0, BLK_SHARED, -1, what, e);
    }
    if (st == QM_OK && !r->rank)
        st = qm_calib_ffn_add(&c, w, &f, -1, NULL, NULL, NULL, ws, y, r->d);
    if (st == QM_OK && !r->rank) {
        memcpy(r->x, hA, T * D * sizeof *r->x);
        c.x = r->x;
        st = qm_calib_residual(&c, y, r->d);
    }
    qm_fwd_ws_free(ws);
    free(X), free(wt), free(y);
    return st;
}

qm_status ms_layer_work(mrun *r, int L, lerr *e)
{
    const qm_model *m = r->m;
    size_t T = (size_t)r->B * r->S, D = (size_t)m->cfg.hidden;
    float *hA = malloc(T * D * sizeof *hA), *h2 = malloc(T * D * sizeof *h2);
    qm_layer_w w;
    qm_status st = qm_layer_load(m, L, 0, &w, r->d);
    if (st == QM_OK && (!hA || !h2))
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    qm_calib_ffn f = {0};
    if (st == QM_OK) /* the unquantized attention's output and what the FFN sees */
        st = qm_calib_capture(&(qm_calib){m, &w, r->x, r->B, r->S, NULL, NULL, NULL}, &f, hA, r->d);
    if (st == QM_OK)
        st = ms_assign(r, &w, &f);
    if (st == QM_OK && w.q.w && ms_mine(r, WORK_ATTN))
        st = attention(r, &w, hA, h2, e);
    if (st == QM_OK)
        st = ffn(r, &w, hA, &f, e);
    qm_calib_ffn_free(&f);
    qm_layer_free(&w);
    free(hA), free(h2);
    return st;
}

/* Layer L's units' errors into r->err (every rank's work items, gathered);
 * r->x becomes the layer's output. */
static qm_status one_layer(mrun *r, int L)
{
    const qm_model *m = r->m;
    size_t T = (size_t)r->B * r->S, D = (size_t)m->cfg.hidden;
    int nw = r->o->n_widths;
    lerr e = {(int)m->cfg.experts, nw, calloc((size_t)BLK_COUNT * (m->cfg.experts + 1) * 5 * nw, sizeof(double))};
    size_t runs = r->rep->gptq_runs;
    qm_status st = e.v ? ms_layer_work(r, L, &e) : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = ms_gather(r, L, &e, r->rep->gptq_runs - runs);
    double xx = 0; /* the stream leaving the layer: what every later block reads */
    for (size_t i = 0; st == QM_OK && i < T * D; i++)
        xx += (double)r->x[i] * r->x[i];
    /* the units of this layer, from the blocks' errors */
    for (size_t j = 0; st == QM_OK && j < r->nu; j++) {
        const munit *u = &r->u[j];
        if (u->layer != L)
            continue;
        for (int k = 0; k < nw; k++) {
            double v = 0;
            if (r->o->units == QM_UNITS_LAYER) {
                for (int b = 0; b < BLK_COUNT; b++)
                    for (int x = b == BLK_EXPERT ? 0 : -1; x < (b == BLK_EXPERT ? (int)m->cfg.experts : 0); x++)
                        v += *lerr_at(&e, b, x, 4, k);
            } else {
                v = *lerr_at(&e, u->blk, u->expert, u->slot < 0 ? 4 : u->slot, k);
            }
            r->err[j * nw + k] = xx > 0 ? v / xx : 0;
        }
    }
    free(e.v);
    return st;
}

/* ---- progress state ------------------------------------------------------------------------------ */

/* The state file's one field: what the measure is of, options included
 * (base.h, resumable runs). */
typedef struct mstate {
    char key[512];
    int layers_done;
} mstate;

static qm_status write_state(const mrun *r, const mstate *s)
{
    return qm_resume_mark(r->sdir, &(qm_resume_field){"key", s->key}, 1, s->layers_done, r->d);
}

/* ---- the measure file --------------------------------------------------------------------------- */

typedef struct mout {
    const mrun *r;
    const char *calib_path;
    qm_side_id id;
} mout;

static qm_status put_measure(const void *ctx, FILE *f, qm_diag *d)
{
    const mout *o = ctx;
    const mrun *r = o->r;
    const qm_measure_opts *op = r->o;
    const qm_model *m = r->m;
    fprintf(f, "# qmoe measure: written by `qmoe measure`, read by `qmoe compile --measure`.\n"
               "# error: the squared change GPTQ at that width makes to the unit's block output,\n"
               "# over the squared residual stream leaving its layer (qmoe(1), MEASURE).\n");
    qm_yaml *y = qm_side_begin(f, "qmoe_measure", m, &o->id, o->calib_path, (unsigned long long)r->B * r->S, r->S);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_str(y, "settings");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "units", qm_measure_units_name(op->units));
    qm_yaml_str(y, "widths");
    qm_yaml_flow_seq(y);
    for (int k = 0; k < op->n_widths; k++)
        qm_yaml_int(y, op->widths[k]);
    qm_yaml_close(y);
    if (op->group < 0)
        qm_yaml_kstr(y, "group", "default");
    else
        qm_yaml_kint(y, "group", op->group);
    qm_yaml_str(y, "sym");
    qm_yaml_bool(y, op->sym);
    qm_yaml_str(y, "act_order");
    qm_yaml_bool(y, op->act_order);
    qm_yaml_str(y, "damp");
    qm_yaml_real(y, op->damp, 4);
    qm_yaml_kint(y, "min_expert_tokens", op->min_expert_tokens);
    if (op->target) /* the grid each width was rated on: the file's format's (qmoe(1), MEASURE) */
        qm_yaml_kstr(y, "target", op->target);
    qm_yaml_close(y);
    qm_yaml_str(y, "units");
    qm_yaml_map(y);
    for (size_t j = 0; j < r->nu; j++) {
        qm_yaml_str(y, r->u[j].name);
        qm_yaml_flow_map(y);
        qm_yaml_kuint(y, "params", r->u[j].params);
        qm_yaml_str(y, "error");
        qm_yaml_flow_seq(y);
        for (int k = 0; k < op->n_widths; k++)
            qm_yaml_sci(y, r->err[j * op->n_widths + k], 6);
        qm_yaml_close(y);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

/* ---- the run -------------------------------------------------------------------------------------- */

static qm_status check_opts(const qm_measure_opts *o, qm_diag *d)
{
    char w[64];
    if (o->n_widths < 1 || o->n_widths > QM_MEASURE_MAX_WIDTHS)
        return qm_diag_fail(d, QM_EINVAL, "--widths: %d widths; give 1 to %d of %s", o->n_widths,
                            QM_MEASURE_MAX_WIDTHS, qm_widths_text(w, sizeof w, "", ", ", ", "));
    for (int k = 0; k < o->n_widths; k++) {
        int b = o->widths[k];
        if (!qm_is_width(b))
            return qm_diag_fail(d, QM_EINVAL, "--widths: %d is not a width; the widths are %s", b,
                                qm_widths_text(w, sizeof w, "", ", ", " and "));
        if (k && b <= o->widths[k - 1])
            return qm_diag_fail(d, QM_EINVAL, "--widths: %d after %d; give each width once, in increasing order", b,
                                o->widths[k - 1]);
    }
    if ((unsigned)o->units >= QM_UNITS_COUNT)
        return qm_diag_fail(d, QM_EINVAL, "--units: unknown; the units are linear, expert and layer");
    if (o->target && strcmp(o->target, "gguf") != 0)
        return qm_diag_fail(d, QM_EINVAL, "--target '%s': expected gguf", o->target);
    return QM_OK;
}

qm_status qm_measure(const char *model_dir, const char *calib_path, const char *out, const qm_measure_opts *o,
                     qm_measure_report *rep, qm_diag *d)
{
    memset(rep, 0, sizeof *rep);
    if (qm_dist_rank(o->dist)) /* the other ranks measure what rank 0 gives them */
        return ms_follow(model_dir, o, rep, d);
    double t0 = qm_clock();
    mrun r = {.o = o, .out = out, .rep = rep, .d = d, .dist = o->dist, .ranks = qm_dist_size(o->dist)};
    qm_tokens toks = {0};
    qm_lock lock = {-1, NULL};
    mstate cur = {0};
    mout mo = {.r = &r, .calib_path = calib_path};
    char calib_sha[65] = "";
    qm_status st = check_opts(o, d);
    if (st == QM_OK)
        st = qm_model_open(model_dir, &r.m, d);
    if (st == QM_OK)
        st = qm_model_check_output(r.m, "-o", out, 0, &(qm_path_input){calib_path, "the calibration text"}, 1, d);
    if (st == QM_OK)
        st = qm_side_id_get(r.m, &mo.id, d);
    if (st == QM_OK)
        st = qm_sha256_file(calib_path, calib_sha, d);
    for (size_t i = 0; st == QM_OK && i < r.m->n; i++)
        if (r.m->t[i].bits)
            st = qm_diag_fail(d, QM_EUNSUPPORTED, "%s is already quantized ('%s' is GPTQ-packed); measure the "
                              "original model", r.m->dir, r.m->t[i].st->name);
    if (st == QM_OK)
        st = qm_tokens_for_model(r.m, calib_path, (size_t)o->samples * (size_t)o->ctx, (size_t)o->ctx, &toks, d);
    if (st == QM_OK) {
        r.S = o->ctx;
        r.B = (int)(toks.n / (size_t)o->ctx) < o->samples ? (int)(toks.n / (size_t)o->ctx) : o->samples;
        if (r.B < 1)
            st = qm_diag_fail(d, QM_EINVAL, "%s: %zu tokens, fewer than one window of %d", calib_path, toks.n, o->ctx);
    }
    if (st == QM_OK)
        st = build_units(&r);
    if (st == QM_OK && !r.nu)
        st = qm_diag_fail(d, QM_EINVAL, "%s has no quantizable linears to measure", r.m->dir);
    if (st == QM_OK)
        st = ms_target_specs(&r);
    int nw = o->n_widths;
    if (st == QM_OK && !(r.err = calloc(r.nu * (size_t)nw, sizeof *r.err)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    char ws[32] = "";
    for (int k = 0; k < nw; k++)
        snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%s%d", k ? "," : "", o->widths[k]);
    snprintf(cur.key, sizeof cur.key, "config=%.16s calib=%.16s ctx=%d samples=%d widths=%s units=%s group=%d sym=%d "
             "act_order=%d damp=%g min_expert_tokens=%d%s%s", mo.id.config, calib_sha, r.S, r.B, ws,
             qm_measure_units_name(o->units), o->group, o->sym, o->act_order, o->damp, o->min_expert_tokens,
             o->target ? " target=" : "", o->target ? o->target : ""); /* a plain run's key as before */
    if (st == QM_OK && !(r.sdir = qm_strfmt("%s.qmoe-state", out)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK && (st = qm_mkdir(r.sdir, d)) == QM_OK)
        st = qm_dir_lock(r.sdir, &lock, d);
    if (st == QM_OK && qm_resume_match(r.sdir, &(qm_resume_field){"key", cur.key}, 1, &cur.layers_done) == 0)
        st = qm_diag_fail(d, QM_EINVAL, "%s holds a measure of another model, calibration text or set of options; "
                          "remove it or choose another -o", r.sdir);
    size_t T = (size_t)r.B * r.S, D = r.m ? (size_t)r.m->cfg.hidden : 0;
    int total = r.m ? (int)r.m->cfg.layers : 0;
    if (st == QM_OK && !(r.x = malloc(T * D * sizeof *r.x)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    /* the finished layers' errors, and the hidden states entering the next */
    char file[64];
    for (int L = 0; st == QM_OK && L < cur.layers_done && L < total; L++) {
        size_t first = r.nu, n = 0;
        for (size_t j = 0; j < r.nu; j++)
            if (r.u[j].layer == L)
                first = first < j ? first : j, n++;
        snprintf(file, sizeof file, "errors-%05d.f64", L);
        if (n)
            st = qm_resume_load(r.sdir, file, r.err + first * nw, n * nw * sizeof *r.err, d);
    }
    if (st == QM_OK && cur.layers_done > 0 && cur.layers_done < total) {
        snprintf(file, sizeof file, "hidden-%05d.f32", cur.layers_done);
        st = qm_resume_load(r.sdir, file, r.x, T * D * sizeof *r.x, d);
        rep->layers_resumed = cur.layers_done;
        qm_diag_note(d, "%s: resuming after layer %d of %d", out, cur.layers_done - 1, total);
    } else if (st == QM_OK && cur.layers_done == 0) {
        qm_head_w head = {0};
        if ((st = qm_head_load(r.m, QM_HEAD_EMBED, &head, d)) == QM_OK)
            qm_forward_embed(r.m, &head, toks.ids, (int)T, r.x);
        qm_head_free(&head);
        if (st == QM_OK)
            st = write_state(&r, &cur);
    }
    if (st == QM_OK && r.ranks > 1)
        st = ms_lead(&r);
    for (int L = cur.layers_done; st == QM_OK && L < total; L++) {
        double t = qm_clock();
        say(&r, "\rlayer %d/%d: %d x %d calibration tokens, widths %s", L, total, r.B, r.S, ws);
        size_t first = r.nu, n = 0;
        for (size_t j = 0; j < r.nu; j++)
            if (r.u[j].layer == L)
                first = first < j ? first : j, n++;
        if ((r.ranks > 1 && (st = ms_lead_layer(&r, L)) != QM_OK) || (st = one_layer(&r, L)) != QM_OK)
            break;
        snprintf(file, sizeof file, "errors-%05d.f64", L);
        if (n)
            st = qm_resume_save(r.sdir, file, r.err + first * nw, n * nw * sizeof *r.err, d);
        snprintf(file, sizeof file, "hidden-%05d.f32", L + 1);
        if (st == QM_OK && L + 1 < total)
            st = qm_resume_save(r.sdir, file, r.x, T * D * sizeof *r.x, d);
        if (st == QM_OK) {
            cur.layers_done = L + 1;
            st = write_state(&r, &cur);
        }
        if (st == QM_OK) { /* the states entering L are no longer needed */
            snprintf(file, sizeof file, "hidden-%05d.f32", L);
            qm_resume_drop(r.sdir, file);
        }
        double took = qm_clock() - t;
        say(&r, "layer %d/%d done in %.1f s, %.0f tok/s, ETA %.0f s", L, total, took,
            (double)r.B * r.S / (took > 0 ? took : 1e-9), took * (total - L - 1));
    }
    if (st == QM_OK && r.ranks > 1) /* no more layers: the other ranks are done */
        st = ms_lead_layer(&r, -1);
    if (st == QM_OK)
        st = qm_afile_write(out, put_measure, &mo, 1, d);
    if (st == QM_OK) /* complete: what was kept for resuming goes */
        st = qm_remove_tree(r.sdir, d);
    rep->layers = total;
    rep->units = r.nu;
    /* one quantize run makes one GPTQ run per quantized linear (these units' linears) */
    for (size_t i = 0; r.m && i < r.m->n; i++) {
        int slot;
        rep->quantize_gptq_runs += ms_part_block(r.m->t[i].part, &slot) >= 0 && r.m->t[i].layer >= 0;
    }
    rep->seconds = qm_clock() - t0;
    qm_dir_unlock(&lock);
    for (size_t j = 0; j < r.nu; j++)
        free(r.u[j].name);
    free(r.u);
    free(r.owner);
    free(r.err);
    free(r.spec);
    free(r.x);
    free(r.sdir);
    qm_tokens_free(&toks);
    qm_model_close(r.m);
    return st;
}
