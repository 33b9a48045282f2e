/* budget.c: `budget X bits [by SCORER]`, a greedy allocation after the rules.
 *
 * Units.  `by frequency`, `by importance` and `by importance_residual` move
 * whole routed experts (their gate, up and down together), scored by the
 * expert's share of its layer's choices or by its block's importance;
 * `by outlier` (and no `by`) moves single routed-expert linears, scored by
 * their outlier score.  A unit whose linears do not share one width, or
 * that is kept, is fixed; everything that is not a unit is fixed.
 *
 * Stage 1, the study's move.  LOW is the smallest width of any unit after
 * the rules; HIGH is the largest if it is above LOW, else the next width up
 * (2 and 3 go to 4, 4 to 8).  Below the target, units at LOW are raised to
 * HIGH in order of decreasing score (benefit per bit: every unit of a kind
 * has the same size, so the order is the score's); above it, units at HIGH
 * are lowered to LOW in order of increasing score.  When the target lies
 * between all movable units at LOW and all at HIGH, this is the whole
 * allocation (so the study's budgets are reproduced as they always were).
 *
 * Stage 2, beyond the rules' widths.  When the target lies outside that
 * range, stage 1 has moved every unit it could toward it, and units then
 * keep moving one width step at a time along 2 -> 3 -> 4 -> 8 (raising) or
 * 8 -> 4 -> 3 -> 2 (lowering): raising takes the units at the lowest width
 * below 8 first, in order of decreasing score, and only when all of them
 * have moved the next width; lowering takes the units at the highest width
 * above 2 first, in order of increasing score.  Spreading the change over
 * all units before moving any unit twice keeps each unit's error small.
 *
 * Every move is made only while it brings the average closer to the
 * target, and the first that would not ends the allocation, so the result
 * is as close as whole units allow.  Ties break by tie rank (layer, expert,
 * canonical name); units without a score come last when raising and first
 * when lowering.  The reachable range is every movable unit at 2 bits to
 * every one at 8; a target outside it is an error stating it.  The average
 * is the study's: bits x params over params of quantized linears.
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

/* One width step along 2, 3, 4, 8, up or down. */
static int step(int b, int up)
{
    static const int ladder[] = {2, 3, 4, 8};
    for (int k = 0; k < 4; k++)
        if (ladder[k] == b)
            return up ? ladder[k < 3 ? k + 1 : 3] : ladder[k > 0 ? k - 1 : 0];
    return b;
}

/* An allocation in progress. */
typedef struct alloc {
    qm_cstate *c;
    int s;            /* the budget statement */
    const size_t *idx;
    bunit *u;
    size_t nu;
    double bits, total, target;
    int done;         /* a move stopped bringing the average closer */
    struct {
        size_t n;
        int from, to;
    } mv[4];          /* the steps made (stage 1's even when it moved none) */
    int nmv;
} alloc;

/* Move the units at width `from` to width `to` in score order (the best
 * first when raising, the worst first when lowering) while each move
 * brings the average closer to the target.  Returns QM_OK or QM_ENOMEM. */
static qm_status sweep(alloc *a, int from, int to, int record_zero)
{
    qm_cstate *c = a->c;
    int up = to > from;
    size_t moved = 0;
    qsort(a->u, a->nu, sizeof *a->u, up ? cmp_desc : cmp_asc);
    for (size_t j = 0; j < a->nu && !a->done; j++) {
        bunit *u = &a->u[j];
        if (u->bits != from)
            continue;
        double nb = a->bits + (double)(to - from) * (double)u->params;
        if (fabs(nb / a->total - a->target) >= fabs(a->bits / a->total - a->target)) {
            a->done = 1;
            break;
        }
        a->bits = nb;
        u->bits = to;
        moved++;
        for (size_t q = u->first; q < u->first + u->n; q++) {
            c->set[a->idx[q]].bits = to;
            c->set[a->idx[q]].rule = c->set[a->idx[q]].bits_rule = a->s;
            if (c->record) {
                size_t h = c->nhits[a->s];
                size_t *p = realloc(c->hits[a->s], (h + 1) * sizeof *p);
                if (!p)
                    return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
                c->hits[a->s] = p;
                c->hits[a->s][c->nhits[a->s]++] = a->idx[q];
            }
        }
    }
    if ((moved || record_zero) && a->nmv < 4) {
        a->mv[a->nmv].n = moved;
        a->mv[a->nmv].from = from;
        a->mv[a->nmv++].to = to;
    }
    return QM_OK;
}

/* Stage 2: step units toward the target, all at one width before the next. */
static qm_status stage2(alloc *a, int up)
{
    static const int raise[] = {2, 3, 4}, lower[] = {8, 4, 3};
    const int *order = up ? raise : lower;
    for (int k = 0; k < 3 && !a->done; k++) {
        int any = 0;
        for (size_t j = 0; j < a->nu && !any; j++)
            any = a->u[j].bits == order[k];
        qm_status st = any ? sweep(a, order[k], step(order[k], up), 0) : QM_OK;
        if (st != QM_OK)
            return st;
    }
    return QM_OK;
}

qm_scorer qm_c_budget_scorer(const qm_cstate *c, int s)
{
    const qm_stmt *st = c->policy->stmt[s];
    return st->u.budget.by == QM_SCORER_NONE ? QM_SCORER_OUTLIER : st->u.budget.by;
}

int qm_c_budget_whole(qm_scorer by)
{
    return by != QM_SCORER_OUTLIER && by != QM_SCORER_MEASURED;
}

double qm_c_budget_score(qm_cstate *c, qm_scorer by, size_t i)
{
    const qm_tensor *t = &c->model->t[i];
    return by == QM_SCORER_FREQUENCY  ? qm_c_freq(c, t->layer, t->expert)
           : by == QM_SCORER_OUTLIER  ? qm_c_outlier(c, i)
           : by == QM_SCORER_MEASURED ? qm_c_measured(c, t->layer, -1, (long)i)
                                      : qm_c_importance(c, by, t->layer);
}

qm_status qm_c_budget(qm_cstate *c, int s, double *achieved)
{
    const qm_stmt *st = c->policy->stmt[s];
    const qm_model *m = c->model;
    qm_scorer by = qm_c_budget_scorer(c, s);
    int whole = qm_c_budget_whole(by);
    double target = st->u.budget.bits;
    if (!qm_c_have(c, by, st->src, st->u.budget.by_span))
        return QM_EFORMAT;
    if (by == QM_SCORER_MEASURED) /* the knapsack over measured units (measured.c) */
        return qm_c_measured_budget(c, s, NULL, NULL, 0, achieved, NULL);

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
        b.score = qm_c_budget_score(c, by, idx[j]);
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
    /* bits x params: fixed part and movable units, for stage 1 (lo, hi) and in all (all2, all8) */
    double bits = 0, total = 0, lo_sum = 0, hi_sum = 0, unit_bits = 0, unit_params = 0;
    for (size_t i = 0; i < n; i++)
        if (c->set[i].bits > 0) {
            bits += (double)c->set[i].bits * (double)m->t[i].numel;
            total += (double)m->t[i].numel;
        }
    double fixed = bits;
    for (size_t j = 0; j < nu; j++) {
        if (u[j].bits == low || u[j].bits == high) {
            fixed -= (double)u[j].bits * (double)u[j].params;
            lo_sum += (double)low * (double)u[j].params;
            hi_sum += (double)high * (double)u[j].params;
        }
        if (u[j].bits > 0) {
            unit_bits += (double)u[j].bits * (double)u[j].params;
            unit_params += (double)u[j].params;
        }
    }
    double amin = (fixed + lo_sum) / total, amax = (fixed + hi_sum) / total;
    double rmin = (bits - unit_bits + 2 * unit_params) / total, rmax = (bits - unit_bits + 8 * unit_params) / total;
    if (target < rmin - 5e-4 || target > rmax + 5e-4) {
        ret = qm_source_diag(c->d, QM_SEV_ERROR, st->src, st->u.budget.bits_span,
                             "budget %.3g bits is out of reach: moving routed %s between 2bit and 8bit gives "
                             "%.3f to %.3f bits",
                             target, whole ? "experts" : "expert linears", rmin, rmax);
        goto out;
    }
    alloc a = {.c = c, .s = s, .idx = idx, .u = u, .nu = nu, .bits = bits, .total = total, .target = target};
    int up = bits / total < target;
    if ((ret = sweep(&a, up ? low : high, up ? high : low, 1)) != QM_OK)
        goto out;
    if (target < amin - 5e-4 || target > amax + 5e-4) {
        a.done = 0; /* stage 1 ran out of units, not of benefit */
        if ((ret = stage2(&a, up)) != QM_OK)
            goto out;
    }
    *achieved = a.bits / total;
    /* "N routed experts from Abit to Bbit, M from ..."; stage 1's step only
     * when nothing moved at all */
    char moves[256];
    int len = 0, shown = 0;
    for (int e = 0; e < a.nmv; e++) {
        if (!a.mv[e].n && (e > 0 || a.nmv > 1))
            continue;
        len += snprintf(moves + len, sizeof moves - (size_t)len, "%s%zu%s%s from %dbit to %dbit", shown ? ", " : "",
                        a.mv[e].n, shown ? "" : " routed ", shown ? "" : whole ? "experts" : "expert linears",
                        a.mv[e].from, a.mv[e].to);
        shown++;
    }
    qm_source_diag(c->d, QM_SEV_NOTE, st->src, st->span, "budget: target %.3f bits, achieved %.3f (moved %s by %s)",
                   target, *achieved, moves, qm_scorer_name(by));
out:
    free(idx);
    free(u);
    return ret;
}
