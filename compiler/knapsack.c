/* knapsack.c: the multiple-choice knapsack, exact by dynamic programming
 * over the budget (see knapsack.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/knapsack.h"

/* One item: a group of units, or a unit alone. */
typedef struct item {
    uint64_t params;
    double err[QM_KS_MAX_WIDTHS];  /* summed over the measured units; NAN: not allowed (a unit lacks it) */
    double fixed_err;              /* a fixed item: its measured units' error at that width */
    int fixed;                     /* width index, -1 free */
    int lo;                        /* its narrowest allowed width */
    int choice;
} item;

/* Items from the units: group ids mapped to items in order of first
 * appearance; *of (n) each unit's item.  Caller frees *items and *of. */
static qm_status make_items(const qm_ks_problem *p, item **items, size_t *ni, size_t **of, qm_diag *d)
{
    size_t n = p->n, m = 0;
    item *it = calloc(n + 1, sizeof *it);
    size_t *o = malloc((n + 1) * sizeof *o);
    if (!it || !o) {
        free(it), free(o);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        size_t j = m;
        if (p->group)
            for (size_t q = 0; q < i; q++)
                if (p->group[q] == p->group[i]) {
                    j = o[q];
                    break;
                }
        if (j == m) {
            it[m].fixed = -1;
            m++;
        }
        o[i] = j;
        item *x = &it[j];
        x->params += p->params[i];
        for (int k = 0; k < p->nw; k++)
            x->err[k] += p->err[i * p->nw + k]; /* NAN stays NAN */
        int f = p->fixed ? p->fixed[i] : -1;
        if (f >= 0 && x->fixed >= 0 && x->fixed != f) {
            int a = p->widths[x->fixed];
            free(it), free(o);
            return qm_diag_fail(d, QM_EINVAL, "budget: one group of units holds two fixed widths, %d and %d bits", a,
                                p->widths[f]);
        }
        if (f >= 0)
            x->fixed = f;
    }
    for (size_t j = 0; j < m; j++) {
        item *x = &it[j];
        x->lo = -1;
        for (int k = 0; k < p->nw && x->lo < 0; k++)
            if (!isnan(x->err[k]) && (x->fixed < 0 || x->fixed == k))
                x->lo = k;
        if (x->fixed >= 0) { /* a fixed width need not have been measured: what was, counts */
            x->lo = x->fixed;
            for (size_t i = 0; i < n; i++) {
                double v = o[i] == j ? p->err[i * p->nw + x->fixed] : NAN;
                x->fixed_err += isnan(v) ? 0 : v;
            }
            x->err[x->fixed] = x->fixed_err;
        }
        if (x->lo < 0) {
            free(it), free(o);
            return qm_diag_fail(d, QM_EINVAL, "budget: a unit has no measured width to take");
        }
    }
    *items = it;
    *ni = m;
    *of = o;
    return QM_OK;
}

/* The DP over free items f[0..nf) with extra costs rounded to steps of G
 * (up: ceil, else floor) and S steps of capacity; the choices go into the
 * items, the optimum into *best.  QM_ENOMEM only. */
static qm_status dp(const qm_ks_problem *p, item **f, size_t nf, uint64_t G, int up, size_t S, double *best,
                    qm_diag *d)
{
    double *cur = malloc(S * sizeof *cur), *nxt = malloc(S * sizeof *nxt);
    unsigned char *ch = malloc(nf * S + 1);
    if (!cur || !nxt || !ch) {
        free(cur), free(nxt), free(ch);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for the budget's table (%zu x %zu)", nf, S);
    }
    for (size_t s = 0; s < S; s++)
        cur[s] = 0;
    for (size_t i = 0; i < nf; i++) {
        const item *x = f[i];
        uint64_t base = (uint64_t)p->widths[x->lo] * x->params;
        for (size_t s = 0; s < S; s++) {
            double b = INFINITY;
            int bk = -1;
            for (int k = x->lo; k < p->nw; k++) {
                if (isnan(x->err[k]))
                    continue;
                uint64_t extra = (uint64_t)p->widths[k] * x->params - base;
                uint64_t c = up ? (extra + G - 1) / G : extra / G;
                if (c > s || isinf(cur[s - c]))
                    continue;
                double v = cur[s - c] + x->err[k];
                if (v < b) {
                    b = v;
                    bk = k;
                }
            }
            nxt[s] = b;
            ch[i * S + s] = (unsigned char)(bk < 0 ? 255 : bk);
        }
        double *t = cur;
        cur = nxt;
        nxt = t;
    }
    *best = cur[S - 1];
    size_t s = S - 1;
    for (size_t i = nf; i-- > 0;) {
        item *x = f[i];
        int k = ch[i * S + s];
        x->choice = k == 255 ? x->lo : k;
        uint64_t extra = (uint64_t)p->widths[x->choice] * x->params - (uint64_t)p->widths[x->lo] * x->params;
        uint64_t c = up ? (extra + G - 1) / G : extra / G;
        s -= c <= s ? c : s;
    }
    free(cur), free(nxt), free(ch);
    return QM_OK;
}

qm_status qm_ks_solve(const qm_ks_problem *p, qm_ks_result *r, qm_diag *d)
{
    item *it = NULL;
    size_t ni = 0, *of = NULL;
    if (p->nw < 1 || p->nw > QM_KS_MAX_WIDTHS)
        return qm_diag_fail(d, QM_EINVAL, "budget: %d widths (1 to %d allowed)", p->nw, QM_KS_MAX_WIDTHS);
    qm_status st = make_items(p, &it, &ni, &of, d);
    if (st != QM_OK)
        return st;
    item **f = malloc((ni + 1) * sizeof *f);
    if (!f) {
        free(it), free(of);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    /* the fixed items and every free item at its narrowest width: what must fit */
    uint64_t need = 0, g = 0;
    size_t nf = 0;
    for (size_t j = 0; j < ni; j++) {
        item *x = &it[j];
        x->choice = x->fixed >= 0 ? x->fixed : x->lo;
        need += (uint64_t)p->widths[x->choice] * x->params;
        if (x->fixed >= 0)
            continue;
        f[nf++] = x;
        for (int k = x->lo + 1; k < p->nw; k++)
            if (!isnan(x->err[k]))
                g = qm_gcd(g, (uint64_t)(p->widths[k] - p->widths[x->lo]) * x->params);
    }
    r->gap = 0;
    if (need > p->capacity) {
        st = qm_diag_fail(d, QM_EINVAL, "budget: the units need %.0f bits x params at their narrowest widths, more "
                          "than the %.0f the budget leaves", (double)need, (double)p->capacity);
    } else if (nf && g) {
        uint64_t room = p->capacity - need, G = g;
        size_t max = p->max_cells ? p->max_cells : (size_t)1 << 26;
        if ((double)(room / G + 1) * (double)nf > (double)max) /* too fine: wider steps, and a stated gap */
            G = (uint64_t)ceil((double)room * (double)nf / (double)max) + 1;
        size_t S = (size_t)(room / G) + 1;
        double best_up = 0, best_down = 0;
        if (G != g) { /* the relaxation first: its optimum bounds the true one from below */
            st = dp(p, f, nf, G, 0, S, &best_down, d);
        }
        if (st == QM_OK)
            st = dp(p, f, nf, G, 1, S, &best_up, d);
        if (st == QM_OK && G != g)
            r->gap = best_up - best_down > 0 ? best_up - best_down : 0;
    }
    if (st == QM_OK) {
        r->error = 0;
        r->bits = 0;
        for (size_t j = 0; j < ni; j++) {
            r->error += it[j].err[it[j].choice];
            r->bits += (uint64_t)p->widths[it[j].choice] * it[j].params;
        }
        for (size_t i = 0; i < p->n; i++)
            r->choice[i] = it[of[i]].choice;
    }
    free(f), free(it), free(of);
    return st;
}
