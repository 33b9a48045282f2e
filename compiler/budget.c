/* budget.c: `budget X bits [by SCORER]`, a greedy allocation after the rules.
 *
 * Units.  `by frequency`, `by importance` and `by importance_residual` move
 * whole routed experts (their gate, up and down together), scored by the
 * expert's share of its layer's choices or by its block's importance;
 * `by outlier` (and no `by`) moves single routed-expert linears, scored by
 * their outlier score.  A unit whose linears do not share one width is fixed.
 *
 * Widths.  LOW is the smallest width of any unit after the rules; HIGH is
 * the largest if it is above LOW, else the next width up (2 and 3 go to 4,
 * 4 to 8).  Only units at LOW or HIGH move; everything else is fixed.  The
 * reachable range is the average with every movable unit at LOW to the
 * average with all at HIGH; a target outside it is an error stating it.
 *
 * Greedy.  Below the target, units at LOW are raised to HIGH in order of
 * decreasing score (benefit per bit: every unit of a kind has the same
 * size, so the order is the score's); above it, units at HIGH are lowered
 * in order of increasing score.  Each move is made only while it brings the
 * average closer to the target, so the result is as close as whole units
 * allow.  Ties break by tie rank (layer, expert, canonical name); units
 * without a score come last when raising and first when lowering.  The
 * average is the study's: bits x params over params of quantized linears.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"

typedef struct bunit {
    size_t first;     /* tensors of the unit: idx[first .. first + n) */
    size_t n;
    uint64_t params;
    int bits;         /* shared width, -1 when mixed */
    double score;
    size_t rank;
} bunit;

static int cmp_desc(const void *a, const void *b)
{
    const bunit *x = a, *y = b;
    int xn = isnan(x->score), yn = isnan(y->score);
    if (xn != yn)
        return xn - yn; /* scored first */
    if (!xn && x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int cmp_asc(const void *a, const void *b)
{
    const bunit *x = a, *y = b;
    int xn = isnan(x->score), yn = isnan(y->score);
    if (xn != yn)
        return yn - xn; /* unscored first */
    if (!xn && x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int next_up(int b)
{
    return b < 4 ? 4 : 8;
}

qm_status qm_c_budget(qm_cstate *c, int s, double *achieved)
{
    const qm_stmt *st = c->policy->stmt[s];
    const qm_model *m = c->model;
    qm_scorer by = st->u.budget.by == QM_SCORER_NONE ? QM_SCORER_OUTLIER : st->u.budget.by;
    int whole = by != QM_SCORER_OUTLIER;
    double target = st->u.budget.bits;
    if (!qm_c_have(c, by, st->src, st->u.budget.by_span))
        return QM_EFORMAT;

    size_t n = m->n, nu = 0;
    size_t *idx = malloc((n + 1) * sizeof *idx);
    bunit *u = malloc((n + 1) * sizeof *u);
    if (!idx || !u) {
        free(idx), free(u);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    /* routed-expert linears in tie-rank order, so an expert's linears are adjacent */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (m->t[i].expert >= 0 && qm_parts[m->t[i].part].linear)
            idx[k++] = i;
    {
        /* order by rank, a permutation of 0..n-1: place each at its rank */
        size_t *pos = malloc((n + 1) * sizeof *pos);
        if (!pos) {
            free(idx), free(u);
            return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            pos[i] = (size_t)-1;
        for (size_t j = 0; j < k; j++)
            pos[c->rank[idx[j]]] = idx[j];
        k = 0;
        for (size_t r = 0; r < n; r++)
            if (pos[r] != (size_t)-1)
                idx[k++] = pos[r];
        free(pos);
    }
    for (size_t j = 0; j < k;) {
        const qm_tensor *t = &m->t[idx[j]];
        size_t e = j + 1;
        if (whole)
            while (e < k && m->t[idx[e]].layer == t->layer && m->t[idx[e]].expert == t->expert)
                e++;
        bunit b = {j, e - j, 0, c->set[idx[j]].bits, NAN, c->rank[idx[j]]};
        for (size_t q = j; q < e; q++) {
            b.params += m->t[idx[q]].numel;
            if (c->set[idx[q]].bits != b.bits)
                b.bits = -1;
        }
        b.score = by == QM_SCORER_FREQUENCY ? qm_c_freq(c, t->layer, t->expert)
                  : by == QM_SCORER_OUTLIER ? qm_c_outlier(c, idx[j])
                                            : qm_c_importance(c, by, t->layer);
        u[nu++] = b;
        j = e;
    }
    qm_status ret = c->outlier_st;
    if (ret != QM_OK)
        goto out;
    int low = 9, high = 0;
    for (size_t j = 0; j < nu; j++)
        if (u[j].bits > 0) {
            low = u[j].bits < low ? u[j].bits : low;
            high = u[j].bits > high ? u[j].bits : high;
        }
    if (low == 9) {
        ret = qm_source_diag(c->d, QM_SEV_ERROR, st->src, st->span,
                             "budget: the model has no quantized routed experts to move");
        goto out;
    }
    if (high <= low)
        high = next_up(low);
    /* bits x params: fixed part and movable units */
    double bits = 0, total = 0, lo_sum = 0, hi_sum = 0;
    for (size_t i = 0; i < n; i++)
        if (c->set[i].bits > 0) {
            bits += (double)c->set[i].bits * (double)m->t[i].numel;
            total += (double)m->t[i].numel;
        }
    double fixed = bits;
    for (size_t j = 0; j < nu; j++)
        if (u[j].bits == low || u[j].bits == high) {
            fixed -= (double)u[j].bits * (double)u[j].params;
            lo_sum += (double)low * (double)u[j].params;
            hi_sum += (double)high * (double)u[j].params;
        }
    double amin = (fixed + lo_sum) / total, amax = (fixed + hi_sum) / total;
    if (target < amin - 5e-4 || target > amax + 5e-4) {
        ret = qm_source_diag(c->d, QM_SEV_ERROR, st->src, st->u.budget.bits_span,
                             "budget %.3g bits is out of reach: moving routed %s between %dbit and %dbit after "
                             "the rules gives %.3f to %.3f bits",
                             target, whole ? "experts" : "expert linears", low, high, amin, amax);
        goto out;
    }
    int up = bits / total < target;
    qsort(u, nu, sizeof *u, up ? cmp_desc : cmp_asc);
    size_t moved = 0;
    for (size_t j = 0; j < nu; j++) {
        if (u[j].bits != (up ? low : high))
            continue;
        double nb = bits + (double)(up ? high - low : low - high) * (double)u[j].params;
        if (fabs(nb / total - target) >= fabs(bits / total - target))
            break;
        bits = nb;
        moved++;
        for (size_t q = u[j].first; q < u[j].first + u[j].n; q++) {
            c->set[idx[q]].bits = up ? high : low;
            c->set[idx[q]].rule = c->set[idx[q]].bits_rule = s;
            if (c->record) {
                size_t h = c->nhits[s];
                size_t *p = realloc(c->hits[s], (h + 1) * sizeof *p);
                if (!p) {
                    ret = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
                    goto out;
                }
                c->hits[s] = p;
                c->hits[s][c->nhits[s]++] = idx[q];
            }
        }
    }
    *achieved = bits / total;
    qm_source_diag(c->d, QM_SEV_NOTE, st->src, st->span,
                   "budget: target %.3f bits, achieved %.3f (moved %zu routed %s from %dbit to %dbit by %s)", target,
                   *achieved, moved, whole ? "experts" : "expert linears", up ? low : high, up ? high : low,
                   qm_scorer_name(by));
out:
    free(idx);
    free(u);
    return ret;
}
