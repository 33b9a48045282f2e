/* resolve.c: a selector -> the set of tensors it names in one model.
 *
 * The canonical module tree (model/model.h) is matched by part: each
 * module of the language stands for a set of qm_part values, a part segment
 * narrows it, a scope keeps some layers, and brackets keep some experts or
 * linears.  Data-driven brackets rank what the rest of the selector allows
 * (select.c), in this order: the scope's brackets (layers or MoE blocks),
 * then `experts[...]` (experts of the layers left), then the part's
 * brackets (linears left).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"

#define P(x) (1ull << QM_PART_##x)

/* The parts each module of the language covers. */
static const unsigned long long module_parts[QM_MOD_COUNT] = {
    [QM_MOD_ATTN] = P(Q) | P(K) | P(V) | P(O) | P(Q_BIAS) | P(K_BIAS) | P(V_BIAS),
    [QM_MOD_ROUTER] = P(ROUTER),
    [QM_MOD_EXPERTS] = P(EXPERT_GATE) | P(EXPERT_UP) | P(EXPERT_DOWN),
    [QM_MOD_SHARED] = P(SHARED_GATE) | P(SHARED_UP) | P(SHARED_DOWN),
    [QM_MOD_SHARED_GATE] = P(SHARED_ROUTER),
    [QM_MOD_MLP] = P(MLP_GATE) | P(MLP_UP) | P(MLP_DOWN),
    [QM_MOD_NORMS] = P(FINAL_NORM) | P(ATTN_NORM) | P(FFN_NORM) | P(Q_NORM) | P(K_NORM),
    [QM_MOD_ATTN_NORM] = P(ATTN_NORM),
    [QM_MOD_FFN_NORM] = P(FFN_NORM),
    [QM_MOD_EMBED] = P(EMBED),
    [QM_MOD_LM_HEAD] = P(LM_HEAD),
    [QM_MOD_Q] = P(Q) | P(Q_BIAS),
    [QM_MOD_K] = P(K) | P(K_BIAS),
    [QM_MOD_V] = P(V) | P(V_BIAS),
    [QM_MOD_O] = P(O),
    [QM_MOD_GATE] = P(EXPERT_GATE) | P(SHARED_GATE) | P(MLP_GATE),
    [QM_MOD_UP] = P(EXPERT_UP) | P(SHARED_UP) | P(MLP_UP),
    [QM_MOD_DOWN] = P(EXPERT_DOWN) | P(SHARED_DOWN) | P(MLP_DOWN),
    [QM_MOD_ANY] = ~0ull,
};
_Static_assert(QM_PART_COUNT <= 64, "part sets are 64-bit masks");

int qm_c_broad(qm_part p)
{
    qm_group g = qm_parts[p].group;
    return qm_parts[p].linear && (g == QM_GROUP_ATTENTION || g == QM_GROUP_ROUTED ||
                                  g == QM_GROUP_SHARED || g == QM_GROUP_DENSE_MLP);
}

/* Mark keep[0..n) from an index list over n things named `what`. */
static qm_status list(qm_cstate *c, const qm_source *src, const qm_index *ix, long long n,
                      const char *what, unsigned char *keep)
{
    qm_status st = QM_OK;
    for (size_t r = 0; r < ix->u.list.n; r++) {
        const qm_range *g = &ix->u.list.v[r];
        long long lo = g->lo_open ? 0 : g->lo, hi = g->hi_open ? n - 1 : g->single ? g->lo : g->hi;
        long long rlo = lo < 0 ? n + lo : lo, rhi = hi < 0 ? n + hi : hi;
        if (rlo < 0 || rhi < 0 || rlo >= n || rhi >= n) {
            long long bad = (rlo < 0 || rlo >= n) ? lo : hi;
            st = qm_source_diag(c->d, QM_SEV_ERROR, src, g->span,
                                "index %lld is beyond the model's %lld %s (0..%lld, or -%lld..-1)", bad, n,
                                what, n - 1, n);
            continue;
        }
        for (long long i = rlo; i <= rhi; i++)
            keep[i] = 1;
    }
    return st;
}

/* The candidates of one data-driven pick: what the caller ranks (MoE
 * blocks, experts, linears) is its business; each candidate comes with its
 * score, its group (for `per layer`), its place among ties, and the
 * caller's name for it. */
typedef struct units {
    size_t n;
    qm_scorer s;         /* QM_SCORER_NONE: a random pick, every score 0 */
    double *v;           /* (cap) */
    long long *grp;      /* (cap) */
    size_t *rank;        /* (cap) */
    size_t *id;          /* (cap) */
    unsigned char *keep; /* (cap) set by pick_units() */
} units;

static void units_free(units *u)
{
    free(u->v), free(u->grp), free(u->rank), free(u->id), free(u->keep);
}

/* Room for cap candidates of the pick ix; QM_EFORMAT (reported) when the
 * scores it ranks by were not given.  Free with units_free() either way. */
static qm_status units_init(qm_cstate *c, const qm_source *src, const qm_index *ix, size_t cap, units *u)
{
    int pick = ix->kind == QM_INDEX_PICK;
    qm_span at = pick ? ix->u.pick.scorer_span : ix->u.threshold.scorer_span;
    *u = (units){.s = pick ? ix->u.pick.scorer : ix->u.threshold.scorer};
    u->v = malloc((cap + 1) * sizeof *u->v);
    u->grp = malloc((cap + 1) * sizeof *u->grp);
    u->rank = malloc((cap + 1) * sizeof *u->rank);
    u->id = malloc((cap + 1) * sizeof *u->id);
    u->keep = malloc(cap + 1);
    if (!u->v || !u->grp || !u->rank || !u->id || !u->keep)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    if (u->s != QM_SCORER_NONE && !qm_c_have(c, u->s, src, at))
        return QM_EFORMAT;
    return QM_OK;
}

/* v: the candidate's score, 0 for a random pick (the caller does not ask
 * the scores for it: there may be none). */
static void unit_add(units *u, double v, long long grp, size_t rank, size_t id)
{
    u->v[u->n] = v;
    u->grp[u->n] = grp;
    u->rank[u->n] = rank;
    u->id[u->n++] = id;
}

/* Record in c->why the score and place of unit `target` (an id), if it is a candidate. */
static void why(qm_cstate *c, const qm_index *ix, const units *u, size_t target)
{
    qm_why *w = c->why;
    size_t j = 0;
    while (j < u->n && u->id[j] != target)
        j++;
    if (j == u->n || w->n >= QM_WHY_MAX)
        return;
    int per = ix->kind == QM_INDEX_PICK && ix->u.pick.per_layer;
    int low = ix->kind == QM_INDEX_PICK && ix->u.pick.how == QM_PICK_BOTTOM;
    double v = u->s == QM_SCORER_NONE ? NAN : u->v[j];
    size_t rank = 1, of = 0;
    for (size_t k = 0; k < u->n && !isnan(v); k++) {
        if (isnan(u->v[k]) || (per && u->grp[k] != u->grp[j]))
            continue;
        of++;
        double a = low ? -u->v[k] : u->v[k], b = low ? -v : v;
        rank += a > b || (a == b && u->rank[k] < u->rank[j]);
    }
    w->pick[w->n].ix = ix;
    w->pick[w->n].v = v;
    w->pick[w->n].rank = isnan(v) ? 0 : rank;
    w->pick[w->n].of = of;
    w->pick[w->n++].layer = per ? u->grp[j] : -1;
}

/* Decide the pick; `target` is the id of the unit explain asks about. */
static void pick_units(qm_cstate *c, const qm_index *ix, units *u, size_t target)
{
    qm_c_pick(ix, u->n, u->v, u->grp, u->rank, u->keep);
    if (c->why)
        why(c, ix, u, target);
}

/* scope[pick]: units are layers or MoE blocks; keep[i] for the i-th. */
static qm_status pick_layers(qm_cstate *c, const qm_source *src, const qm_index *ix, long long n, int moe,
                             unsigned char *keep)
{
    units u;
    qm_status st = units_init(c, src, ix, (size_t)n, &u);
    if (st == QM_OK) {
        for (long long i = 0; i < n; i++) {
            long long layer = moe ? c->moe_layer[i] : i;
            unit_add(&u, u.s == QM_SCORER_NONE ? 0 : u.s == QM_SCORER_MEASURED ? qm_c_measured(c, (int)layer, -1, -1)
                                                 : qm_c_importance(c, u.s, (int)layer), 0, (size_t)i,
                     (size_t)i);
        }
        long long tl = c->why ? c->model->t[c->why->tensor].layer : -1;
        pick_units(c, ix, &u, tl < 0 ? (size_t)-1 : moe ? (size_t)c->moe_index[tl] : (size_t)tl);
        for (size_t j = 0; j < u.n; j++)
            keep[u.id[j]] = u.keep[j];
    }
    units_free(&u);
    return st;
}

/* experts[pick]: units are (layer, expert) pairs of what mask holds; mask
 * keeps the tensors of the pairs picked. */
static qm_status pick_experts(qm_cstate *c, const qm_source *src, const qm_index *ix, unsigned char *mask)
{
    const qm_model *m = c->model;
    size_t E = m->cfg.experts > 0 ? (size_t)m->cfg.experts : 1, nu = (size_t)m->cfg.layers * E;
    units u;
    unsigned char *cand = calloc(nu + 1, 1);
    qm_status st = units_init(c, src, ix, nu, &u);
    if (st == QM_OK && !cand)
        st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        for (size_t i = 0; i < m->n; i++)
            if (mask[i] && m->t[i].expert >= 0)
                cand[(size_t)m->t[i].layer * E + (size_t)m->t[i].expert] = 1;
        for (size_t k = 0; k < nu; k++)
            if (cand[k])
                unit_add(&u, u.s == QM_SCORER_NONE ? 0 : u.s == QM_SCORER_MEASURED
                                                     ? qm_c_measured(c, (int)(k / E), (int)(k % E), -1)
                                                     : qm_c_freq(c, (int)(k / E), (int)(k % E)),
                         (long long)(k / E), u.n, k);
        const qm_tensor *tt = c->why ? &m->t[c->why->tensor] : NULL;
        pick_units(c, ix, &u, tt && tt->expert >= 0 ? (size_t)tt->layer * E + (size_t)tt->expert : (size_t)-1);
        memset(cand, 0, nu);
        for (size_t j = 0; j < u.n; j++)
            cand[u.id[j]] = u.keep[j];
        for (size_t i = 0; i < m->n; i++)
            if (mask[i])
                mask[i] = m->t[i].expert >= 0 && cand[(size_t)m->t[i].layer * E + (size_t)m->t[i].expert];
    }
    free(cand);
    units_free(&u);
    return st;
}

/* part[pick]: units are the linears mask holds; mask keeps those picked. */
static qm_status pick_linears(qm_cstate *c, const qm_source *src, const qm_index *ix, unsigned char *mask)
{
    const qm_model *m = c->model;
    units u;
    qm_status st = units_init(c, src, ix, m->n, &u);
    if (st == QM_OK) {
        for (size_t i = 0; i < m->n; i++)
            if (mask[i] && qm_parts[m->t[i].part].linear)
                unit_add(&u, u.s == QM_SCORER_NONE ? 0 : u.s == QM_SCORER_MEASURED ? qm_c_measured(c, 0, -1, (long)i)
                                                                   : qm_c_outlier(c, i), m->t[i].layer, c->rank[i], i);
        st = c->outlier_st;
    }
    if (st == QM_OK) {
        pick_units(c, ix, &u, c->why ? c->why->tensor : (size_t)-1);
        memset(mask, 0, m->n);
        for (size_t j = 0; j < u.n; j++)
            mask[u.id[j]] = u.keep[j];
    }
    units_free(&u);
    return st;
}

qm_status qm_c_resolve(qm_cstate *c, const qm_source *src, const qm_selector *sel,
                       unsigned char *mask)
{
    const qm_model *m = c->model;
    long long L = m->cfg.layers, E = m->cfg.experts > 0 ? m->cfg.experts : 1;
    unsigned char *layer_ok = calloc((size_t)L + 1, 1);
    unsigned char *expert_ok = calloc((size_t)E + 1, 1);
    qm_status st = QM_OK;
    if (!layer_ok || !expert_ok) {
        st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        goto out;
    }

    /* 1. layers */
    if (sel->scope == QM_SCOPE_NONE) {
        memset(layer_ok, 1, (size_t)L);
    } else {
        int moe = sel->scope == QM_SCOPE_MOE_LAYERS;
        long long n = moe ? m->n_moe : L;
        unsigned char *k = calloc((size_t)n + 1, 1);
        if (!k) {
            st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
            goto out;
        }
        const qm_index *ix = sel->scope_index;
        if (ix->kind == QM_INDEX_LIST)
            st = list(c, src, ix, n, moe ? "MoE layers" : "layers", k);
        else
            st = pick_layers(c, src, ix, n, moe, k);
        for (long long i = 0; i < n; i++)
            if (k[i])
                layer_ok[moe ? c->moe_layer[i] : i] = 1;
        free(k);
    }
    if (st != QM_OK)
        goto out;

    /* 2. structure: module, part, expert list */
    unsigned long long parts = 0;
    const qm_index *eix = NULL, *pix = NULL;
    if (sel->nseg == 0) {
        for (int p = 0; p < QM_PART_COUNT; p++)
            if (qm_c_broad((qm_part)p))
                parts |= 1ull << p;
    } else {
        parts = module_parts[sel->seg[0].mod];
        eix = sel->seg[0].index;
        if (sel->nseg > 1) {
            parts &= module_parts[sel->seg[1].mod];
            if (sel->seg[1].mod == QM_MOD_ANY)
                for (int p = 0; p < QM_PART_COUNT; p++)
                    if (!qm_parts[p].linear)
                        parts &= ~(1ull << p);
            pix = sel->seg[1].index;
        }
    }
    if (eix && eix->kind == QM_INDEX_LIST)
        st = list(c, src, eix, m->cfg.experts, "experts", expert_ok);
    if (st != QM_OK)
        goto out;
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        int ok = (parts >> t->part) & 1;
        if (ok && t->layer >= 0)
            ok = layer_ok[t->layer];
        else if (ok)
            ok = sel->scope == QM_SCOPE_NONE;
        if (ok && eix && eix->kind == QM_INDEX_LIST)
            ok = t->expert >= 0 && expert_ok[t->expert];
        mask[i] = (unsigned char)ok;
    }

    /* 3. experts[pick], then 4. part[pick] */
    if (eix && eix->kind != QM_INDEX_LIST)
        st = pick_experts(c, src, eix, mask);
    if (st == QM_OK && pix)
        st = pick_linears(c, src, pix, mask);
out:
    free(layer_ok);
    free(expert_ok);
    return st;
}
