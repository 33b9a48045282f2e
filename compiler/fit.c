/* fit.c: fitting a plan to an engine (`--fit NAME`, or `engine NAME fit`
 * in the policy): the plan nearest to what the policy asks that NAME
 * serves.
 *
 * 1. After the rules and the budget, the settings of every quantized
 *    linear go to the engine's fitter (model/engine.h, qm_engine_fit(),
 *    which says exactly what each kind of change is).
 * 2. The average is solved again on the fitted plan, over what the engine
 *    allows, toward the budget's target, or without a budget the average
 *    the rules gave (a linear's score is then the width the rules gave it).  Units: the sets the engine needs at one width
 *    (qm_engine_width_sets(): for llama.cpp one projection of all a layer's
 *    experts, for vLLM all of a layer's experts, for SGLang all routed
 *    experts); where the engine has none across experts, the budget's own
 *    (whole routed experts, or single expert linears `by outlier`) joined
 *    with its sets (gate with up where they are fused).  A unit moves when all its linears are quantized
 *    routed-expert linears at one width; its widths are those the engine
 *    takes for every one of them; its score is the mean of its linears'
 *    budget scores (those without one left out).  Moves go toward the
 *    target one allowed width at a time: raising takes the units at the
 *    lowest width first, best score first; lowering the highest width
 *    first, worst score first; ties by tie rank.  A move is made only when
 *    it brings the average closer to the target, and sweeps repeat until
 *    none does, so the average ends as close as the engine's units allow.
 * 3. The fitter runs again for what the new widths need (llama.cpp's 2-
 *    and 3-bit blocks take groups of 16).
 * What changed is attributed to "fit NAME" in the plan; c->fit_why says
 * why for explain.  A note gives the count and the average; an average
 * more than 0.01 bits from the budget's target (or the rules' average) is
 * a warning (an error under --strict) stating the range the engine allows.  A
 * policy no plan can fit (an architecture the engine does not run) is an
 * error saying why.  A measure file whose widths were rated on another
 * grid than the engine reads (its settings.target against the engine's
 * format) is a warning naming the measure option to use.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/engine.h"

/* The budget's tolerance: what "kept" means in the notes and the warning. */
#define FIT_BUDGET_SLACK 0.01

/* ---- the units: a union-find over the model's tensors ---------------------- */

static size_t find(size_t *parent, size_t i)
{
    while (parent[i] != i)
        i = parent[i] = parent[parent[i]];
    return i;
}

static void join(void *arg, size_t i, size_t j)
{
    size_t *parent = arg;
    i = find(parent, i);
    j = find(parent, j);
    if (i != j)
        parent[i > j ? i : j] = i < j ? i : j; /* the lower index leads: the same sets on any run */
}

typedef struct funit {
    int bits;         /* shared width; -1 when mixed or not movable */
    unsigned widths;  /* 1 << bits the engine takes for every linear of it */
    double params, score_sum;
    size_t scored, rank;
} funit;

static int routed_linear(const qm_tensor *t)
{
    return t->expert >= 0 && qm_parts[t->part].linear;
}

/* The next width of mask from b, up or down; 0 when none. */
static int next_width(unsigned mask, int b, int up)
{
    int best = 0;
    for (int k = 0; k < QM_WIDTH_COUNT; k++) {
        int w = qm_widths[k];
        if (mask >> w & 1 && (up ? w > b && (!best || w < best) : w < b && w > best))
            best = w;
    }
    return best;
}

static double unit_score(const funit *u)
{
    return u->scored ? u->score_sum / (double)u->scored : NAN;
}

/* Sweep order: raising (up = 1), the lowest width first, then the best
 * score; lowering (up = -1), the highest width first, then the worst;
 * unscored last when raising and first when lowering; then tie rank. */
static int cmp_units(const funit *x, const funit *y, int up)
{
    if (x->bits != y->bits)
        return up * ((x->bits > y->bits) - (x->bits < y->bits));
    double sx = unit_score(x), sy = unit_score(y);
    int xn = isnan(sx), yn = isnan(sy);
    if (xn != yn)
        return up * (xn - yn);
    if (!xn && sx != sy)
        return up * ((sx < sy) - (sx > sy));
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static int cmp_raise(const void *a, const void *b)
{
    return cmp_units(*(funit *const *)a, *(funit *const *)b, 1);
}

static int cmp_lower(const void *a, const void *b)
{
    return cmp_units(*(funit *const *)a, *(funit *const *)b, -1);
}

typedef struct resolve {
    double bits, total;  /* bits x params and params over quantized linears */
    double lo, hi;       /* the averages with every unit at its lowest / highest width */
    int measured;        /* lo, hi over the measured units (the knapsack's), not the rules' units */
    size_t units, moved;
} resolve;

/* 1 when e holds experts of a layer at one width: its sets, not whole
 * experts, are then the units. */
static int layer_wide(const qm_engine *e)
{
    for (size_t k = 0; k < e->n_rules; k++) {
        const qm_eng_rule *r = &e->rules[k];
        if (r->scope != QM_ENG_OTHERS &&
            (r->kind == QM_EC_LAYER_EXPERTS || (r->kind == QM_EC_ONE_SCHEME && r->param == 0)))
            return 1;
    }
    return 0;
}

/* A linear's score when the average is solved again: the budget's scorer,
 * or without a budget the width the rules gave it (what the policy itself
 * ranked higher keeps more bits). */
static double score_of(qm_cstate *c, size_t i)
{
    return c->has_budget ? qm_c_budget_score(c, qm_c_budget_scorer(c, c->budget_stmt), i) : c->prefit[i].bits;
}

/* Step 2 above on c->set, toward target; sets c->fit_why[i].width =
 * QM_FIT_BUDGET where it moved a width.  QM_ENOMEM is the only failure. */
static qm_status solve_again(qm_cstate *c, const qm_engine *e, double target, resolve *out)
{
    const qm_model *m = c->model;
    size_t n = m->n;
    int whole = c->has_budget && qm_c_budget_whole(qm_c_budget_scorer(c, c->budget_stmt)) && !layer_wide(e);
    size_t *parent = malloc((n + 1) * sizeof *parent), *slot = malloc((n + 1) * sizeof *slot);
    funit *u = calloc(n + 1, sizeof *u);
    funit **order = malloc((n + 1) * sizeof *order);
    qm_status st = parent && slot && u && order ? QM_OK : QM_ENOMEM;
    for (size_t i = 0; st == QM_OK && i < n; i++) {
        parent[i] = i;
        slot[i] = SIZE_MAX;
    }
    /* the budget's units: a whole expert's linears join its first */
    if (st == QM_OK && whole) {
        size_t experts = (size_t)m->cfg.experts;
        for (size_t i = 0; i < n; i++) {
            const qm_tensor *t = &m->t[i];
            if (!routed_linear(t) || t->layer < 0)
                continue;
            size_t s = (size_t)t->layer * experts + (size_t)t->expert; /* < n: each has linears */
            if (s >= n)
                continue;
            if (slot[s] == SIZE_MAX)
                slot[s] = i;
            else
                join(parent, slot[s], i);
        }
    }
    if (st == QM_OK)
        st = qm_engine_width_sets(e, m, join, parent);
    *out = (resolve){0};
    if (st != QM_OK)
        goto done;
    /* one funit per set, at its lowest index (slot[] reused: set -> unit) */
    for (size_t i = 0; i < n; i++)
        slot[i] = SIZE_MAX;
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        const qm_setting *x = &c->set[i];
        if (x->bits > 0) {
            out->bits += (double)x->bits * (double)m->t[i].numel;
            out->total += (double)m->t[i].numel;
        }
        size_t r = find(parent, i);
        if (!qm_parts[m->t[i].part].linear)
            continue;
        if (slot[r] == SIZE_MAX) {
            slot[r] = nu;
            u[nu++] = (funit){.bits = x->bits, .widths = ~0u, .rank = c->rank[i]};
        }
        funit *f = &u[slot[r]];
        if (!routed_linear(&m->t[i]) || x->bits <= 0 || x->bits != f->bits)
            f->bits = -1;
        f->widths &= qm_engine_widths(e, m, i);
        f->params += (double)m->t[i].numel;
        f->rank = c->rank[i] < f->rank ? c->rank[i] : f->rank;
        if (routed_linear(&m->t[i])) {
            double v = score_of(c, i);
            if (!isnan(v)) {
                f->score_sum += v;
                f->scored++;
            }
        }
    }
    if ((st = c->outlier_st) != QM_OK)
        goto done;
    size_t movable = 0;
    out->lo = out->hi = out->bits;
    for (size_t k = 0; k < nu; k++)
        if (u[k].bits > 0 && u[k].widths & ~(1u << u[k].bits)) {
            order[movable++] = &u[k];
            int lo = next_width(u[k].widths, 1, 1), hi = next_width(u[k].widths, 9, 0);
            out->lo += (double)(lo - u[k].bits) * u[k].params;
            out->hi += (double)(hi - u[k].bits) * u[k].params;
        }
    out->units = movable;
    double total = out->total;
    if (c->has_budget && qm_c_budget_scorer(c, c->budget_stmt) == QM_SCORER_MEASURED) {
        /* the knapsack again, each engine set one group, each linear at the widths the engine takes */
        int *was = malloc((n + 1) * sizeof *was);
        unsigned *allow = malloc((n + 1) * sizeof *allow);
        st = was && allow ? QM_OK : QM_ENOMEM;
        for (size_t i = 0; st == QM_OK && i < n; i++) {
            was[i] = c->set[i].bits;
            slot[i] = find(parent, i);
            allow[i] = qm_parts[m->t[i].part].linear ? qm_engine_widths(e, m, i) : ~0u;
        }
        double achieved = 0, reach[2] = {0, 0};
        if (st == QM_OK)
            st = qm_c_measured_budget(c, c->budget_stmt, slot, allow, 1, &achieved, reach);
        for (size_t i = 0; st == QM_OK && i < n; i++)
            if (c->set[i].bits != was[i]) {
                c->fit_why[i].width = QM_FIT_BUDGET;
                out->moved++;
            }
        out->lo = reach[0], out->hi = reach[1];
        out->measured = 1;
        free(was);
        free(allow);
        goto done;
    }
    for (int moved = 1; moved && total > 0;) {
        moved = 0;
        int up = out->bits / total < target;
        qsort(order, movable, sizeof *order, up ? cmp_raise : cmp_lower);
        for (size_t k = 0; k < movable; k++) {
            funit *f = order[k];
            int to = next_width(f->widths, f->bits, up);
            if (!to)
                continue;
            double nb = out->bits + (double)(to - f->bits) * f->params;
            if (fabs(nb / total - target) >= fabs(out->bits / total - target) - 1e-12)
                continue;
            out->bits = nb;
            f->bits = to;
            moved = 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (slot[find(parent, i)] == SIZE_MAX || !qm_parts[m->t[i].part].linear)
            continue;
        const funit *f = &u[slot[find(parent, i)]];
        if (f->bits > 0 && c->set[i].bits != f->bits) {
            c->set[i].bits = f->bits;
            c->fit_why[i].width = QM_FIT_BUDGET;
            out->moved++;
        }
    }
    out->lo /= total;
    out->hi /= total;
done:
    free(parent);
    free(slot);
    free(u);
    free(order);
    return st == QM_ENOMEM ? qm_diag_fail(c->d, QM_ENOMEM, "out of memory") : st;
}

/* Step 1 or 3: the engine's fitter over c->set. */
static qm_status fit_once(qm_cstate *c, const qm_engine *e)
{
    const qm_model *m = c->model;
    if (e->n_rules >= QM_FIT_BUDGET)
        return qm_diag_fail(c->d, QM_EINVAL, "engine %s has more rules than fitting can name", e->name);
    qm_plan_tensor *t = calloc(m->n + 1, sizeof *t);
    qm_engine_why *why = calloc(m->n + 1, sizeof *why);
    if (!t || !why) {
        free(t);
        free(why);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->n; i++) {
        const qm_setting *x = &c->set[i];
        t[i] = (qm_plan_tensor){.bits = x->bits, .group = (int)x->group, .sym = x->sym, .act_order = x->act_order};
    }
    qm_status st = qm_engine_fit(e, m, t, why, c->d);
    for (size_t i = 0; st == QM_OK && i < m->n; i++) {
        qm_setting *x = &c->set[i];
        if (why[i].width)
            c->fit_why[i].width = why[i].width;
        if (why[i].scheme)
            c->fit_why[i].scheme = why[i].scheme;
        x->bits = t[i].bits;
        x->group = t[i].group;
        x->sym = t[i].sym;
        x->act_order = t[i].act_order;
    }
    free(t);
    free(why);
    return st;
}

static double average(const qm_cstate *c)
{
    double bits = 0, params = 0;
    for (size_t i = 0; i < c->model->n; i++)
        if (c->set[i].bits > 0) {
            bits += (double)c->set[i].bits * (double)c->model->t[i].numel;
            params += (double)c->model->t[i].numel;
        }
    return params > 0 ? bits / params : 0;
}

qm_status qm_c_fit(qm_cstate *c)
{
    const qm_model *m = c->model;
    const qm_engine *e = qm_engine_find(c->fit);
    if (!e) {
        qm_buf names = {0};
        qm_engine_list(&names);
        qm_status st = qm_diag_fail(c->d, QM_EINVAL, "--fit '%s': not an engine (%s)", c->fit, names.s ? names.s : "");
        free(names.s);
        return st;
    }
    c->fitted = calloc(m->n + 1, 1);
    c->prefit = malloc((m->n + 1) * sizeof *c->prefit);
    c->fit_why = calloc(m->n + 1, sizeof *c->fit_why);
    if (!c->fitted || !c->prefit || !c->fit_why)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    memcpy(c->prefit, c->set, m->n * sizeof *c->set);
    const char *grid = qm_c_measure_target(c);
    const qm_stmt *at = c->fit_stmt >= 0 ? c->policy->stmt[c->fit_stmt] : NULL;
    if (grid && strcmp(grid, e->format) != 0) { /* errors rated on another grid than the one the engine reads */
        char msg[400];
        snprintf(msg, sizeof msg, "fit %s: the measure file %s rated each width on %s, not on the %s %s reads; "
                 "measure %s", e->name, c->o->measure, strcmp(grid, "gguf") ? "GPTQ's own grid"
                 : "ggml's GGUF blocks", strcmp(e->format, "gguf") ? "GPTQ grid" : "GGUF blocks", e->name,
                 strcmp(e->format, "gguf") ? "without --target" : "with --target gguf");
        if (at)
            qm_source_diag(c->d, QM_SEV_WARNING, at->src, at->span, "%s", msg);
        else
            qm_diag_warn(c->d, "%s", msg);
    }
    /* without a budget, the average the rules give is the one to keep */
    double asked = c->has_budget ? c->budget_target : average(c);
    qm_status st = fit_once(c, e);
    resolve r = {0};
    if (st == QM_OK && (st = solve_again(c, e, asked, &r)) == QM_OK && r.moved)
        st = fit_once(c, e);
    if (st != QM_OK)
        return st;
    /* a tensor moved and moved back is the rules' again */
    size_t changed = 0;
    for (size_t i = 0; i < m->n; i++) {
        const qm_setting *x = &c->set[i], *y = &c->prefit[i];
        c->fitted[i] = x->bits != y->bits || x->group != y->group || x->sym != y->sym || x->act_order != y->act_order;
        changed += c->fitted[i];
    }
    double avg = average(c);
    char what[160];
    snprintf(what, sizeof what, "fit %s: %zu linear%s changed", e->name, changed, changed == 1 ? "" : "s");
    if (!c->has_budget) {
        qm_severity sev = fabs(avg - asked) > FIT_BUDGET_SLACK ? c->o->strict ? QM_SEV_ERROR : QM_SEV_WARNING : QM_SEV_NOTE;
        char msg[480];
        int len = snprintf(msg, sizeof msg, "%s; average %.3f bits against the rules' %.3f", what, avg, asked);
        if (sev != QM_SEV_NOTE)
            snprintf(msg + len, sizeof msg - (size_t)len,
                     ": %s cannot serve these widths (its widths for routed experts reach %.3f to %.3f bits with "
                     "the rules' other widths; ask for widths in that range, or a budget)",
                     e->name, r.lo, r.hi);
        if (at)
            qm_source_diag(c->d, sev, at->src, at->span, "%s", msg);
        else if (sev == QM_SEV_NOTE)
            qm_diag_note(c->d, "%s", msg);
        else if (sev == QM_SEV_WARNING)
            qm_diag_warn(c->d, "%s", msg);
        else
            qm_diag_fail(c->d, QM_EINVAL, "%s", msg);
        return sev == QM_SEV_ERROR ? QM_EINVAL : QM_OK;
    }
    c->budget_achieved = avg;
    const qm_stmt *b = c->policy->stmt[c->budget_stmt];
    qm_source_diag(c->d, QM_SEV_NOTE, b->src, b->span,
                   "%s; budget solved again over %zu unit%s %s can serve at one width: average %.3f bits against "
                   "the target %.3f",
                   what, r.units, r.units == 1 ? "" : "s", e->name, avg, c->budget_target);
    if (fabs(avg - c->budget_target) > FIT_BUDGET_SLACK) {
        qm_source_diag(c->d, c->o->strict ? QM_SEV_ERROR : QM_SEV_WARNING, b->src, b->u.budget.bits_span,
                       "%s cannot serve a plan within %.2f bits of this budget: %s reach %.3f to %.3f bits",
                       e->name, FIT_BUDGET_SLACK,
                       r.measured ? "its widths for the measured units"
                                  : "with the rules' other widths, its widths for routed experts",
                       r.lo, r.hi);
        if (c->o->strict)
            return QM_EINVAL;
    }
    return QM_OK;
}
