/* measured.c: the scorer `measured`: the measure file (`qmoe measure`
 * writes it, qmoe(1) documents it) as the compiler ranks by it, and
 * `budget B bits by measured`, solved as a knapsack (knapsack.h).
 *
 *   qmoe_measure: 1
 *   model:       {architecture, layers, experts, config_sha256, tensors_sha256}
 *   calibration: {file, tokens, ctx}
 *   settings:    {units: linear|expert|layer, widths: [2, 3, 4, 8] (any of qm_widths), group, sym, act_order, damp, ...,
 *                 target: gguf (optional: the grid each width was rated on)}
 *   units:       {NAME: {params: N, error: [e2, e3, e4, e8]}}
 *
 * A unit's name is the canonical name of its linear (`linear`), the part
 * of it before the last '.' (`expert`: layers[3].attn, layers[3].experts[5],
 * layers[3].shared, layers[0].mlp) or before the first (`layer`:
 * layers[3]); every attention, expert, shared-expert and dense-MLP linear
 * of the model belongs to exactly one unit, and the file must name them
 * all.
 *
 * As a score ("higher deserves more bits"), a unit's gain is the error its
 * first step up saves per bit and parameter,
 *     (E(u, w0) - E(u, w1)) / ((w1 - w0) params(u)),
 * and a set of linears (a block, an expert, a linear) scores the
 * params-weighted mean of its linears' units' gains.
 *
 * The budget: the free units are those whose linears all got their width
 * from a `default` (not from a rule) and are quantized; every other
 * quantized weight keeps its width and counts toward the average as it
 * is.  Among the measured widths, the knapsack chooses one per free unit
 * so that the average (bits x params over quantized params, the study's)
 * is at most B and the summed error least.  The plan records that sum,
 * with the errors of fixed units at measured widths, as predicted_error.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "compiler/knapsack.h"

enum { MAXW = QM_KS_MAX_WIDTHS };

struct qm_cmeasure {
    const char *path;
    char target[8];       /* settings.target: "gguf", or "gptq" when absent (qm_c_measure_target()) */
    int units;            /* 0 linear, 1 expert, 2 layer */
    int nw, widths[MAXW];
    size_t nu;
    char **name;          /* (nu) owned */
    uint64_t *params;     /* (nu) as the model counts them */
    double *err;          /* (nu, nw) */
    long *unit_of;        /* (model->n) unit of each tensor, -1 when none */
    double *gain;         /* (nu) error saved per bit and parameter by the first step up */
    double *layer_score;  /* (layers) */
    double *expert_score; /* (layers, experts) */
    int *choice;          /* (nu) width index the budget chose, -1 fixed / none */
    int *free_unit;       /* (nu) */
    double total_params;  /* quantized params after the budget */
};

#define BAD_AT(n, fmt, ...) \
    qm_diag_fail(c->d, QM_EFORMAT, "%s:%u:%u: " fmt, path, (n)->line, (n)->col, __VA_ARGS__)

static const char *const units_names[] = {"linear", "expert", "layer"};

/* The unit name of tensor canon at granularity g; caller frees. */
static char *unit_name(const char *canon, int g)
{
    const char *cut = g == 0 ? NULL : g == 1 ? strrchr(canon, '.') : strchr(canon, '.');
    return cut ? qm_strfmt("%.*s", (int)(cut - canon), canon) : qm_strdup(canon);
}

/* model: must be this model, by its hashes (the file always records them). */
static qm_status read_model(qm_cstate *c, const char *path, const qm_ynode *v)
{
    const qm_model *m = c->model;
    char cfg[65], ten[65];
    if (!v || v->kind != QM_YMAP)
        return qm_diag_fail(c->d, QM_EFORMAT, "%s: model: expected a mapping (architecture, layers, experts, "
                            "config_sha256, tensors_sha256)", path);
    if (qm_sha256_file(m->config_path, cfg, c->d) != QM_OK)
        return QM_EIO;
    qm_model_tensors_sha256(m, ten);
    static const char *const key[2] = {"config_sha256", "tensors_sha256"};
    const char *want[2] = {cfg, ten};
    for (int i = 0; i < 2; i++) {
        const qm_ynode *x = qm_yin_get(v, key[i]);
        const char *s = qm_yin_str(x);
        if (!s || strcmp(s, want[i]) != 0)
            return x ? BAD_AT(x, "model: %s: the measure was made for another model (%.12s..., %s has %.12s...)",
                              key[i], s ? s : "?", m->dir, want[i])
                     : qm_diag_fail(c->d, QM_EFORMAT, "%s: model: %s is missing", path, key[i]);
    }
    return QM_OK;
}

/* settings: units, widths and target. */
static qm_status read_settings(qm_cstate *c, const char *path, const qm_ynode *v, qm_cmeasure *ms)
{
    if (!v || v->kind != QM_YMAP)
        return qm_diag_fail(c->d, QM_EFORMAT, "%s: settings: expected a mapping with units and widths", path);
    const qm_ynode *u = qm_yin_get(v, "units"), *w = qm_yin_get(v, "widths");
    const char *us = qm_yin_str(u);
    ms->units = -1;
    for (int i = 0; us && i < 3; i++)
        if (strcmp(us, units_names[i]) == 0)
            ms->units = i;
    if (ms->units < 0)
        return u ? BAD_AT(u, "settings: units is '%.40s', not linear, expert or layer", us ? us : "?")
                 : qm_diag_fail(c->d, QM_EFORMAT, "%s: settings: units is missing", path);
    char ws[64];
    qm_widths_text(ws, sizeof ws, "", ", ", ", ");
    if (!w || w->kind != QM_YSEQ || w->n < 1 || w->n > QM_WIDTH_COUNT)
        return w ? BAD_AT(w, "settings: widths: expected 1 to %d of [%s]", QM_WIDTH_COUNT, ws)
                 : qm_diag_fail(c->d, QM_EFORMAT, "%s: settings: widths is missing", path);
    const qm_ynode *t = qm_yin_get(v, "target");
    const char *ts = t ? qm_yin_str(t) : "gptq";
    if (t && (!ts || strcmp(ts, "gguf") != 0))
        return BAD_AT(t, "settings: target is '%.40s', not gguf (or absent: GPTQ's own grid)", ts ? ts : "?");
    snprintf(ms->target, sizeof ms->target, "%s", ts);
    ms->nw = (int)w->n;
    for (size_t k = 0; k < w->n; k++) {
        long long b;
        if (!qm_yin_int(w->item[k], &b) || !qm_is_width(b) || (k && b <= ms->widths[k - 1]))
            return BAD_AT(w->item[k], "settings: widths: '%.20s' is not one of %s in increasing order",
                          qm_yin_str(w->item[k]) ? qm_yin_str(w->item[k]) : "?", ws);
        ms->widths[k] = (int)b;
    }
    return QM_OK;
}

/* units: every unit's params (as the model counts them) and errors. */
static qm_status read_units(qm_cstate *c, const char *path, const qm_ynode *v, qm_cmeasure *ms)
{
    const qm_model *m = c->model;
    if (!v || v->kind != QM_YMAP)
        return qm_diag_fail(c->d, QM_EFORMAT, "%s: units: expected a mapping of unit names", path);
    ms->nu = v->n;
    ms->name = calloc(v->n + 1, sizeof *ms->name);
    ms->params = calloc(v->n + 1, sizeof *ms->params);
    ms->err = calloc(v->n * (size_t)ms->nw + 1, sizeof *ms->err);
    ms->gain = calloc(v->n + 1, sizeof *ms->gain);
    ms->choice = malloc((v->n + 1) * sizeof *ms->choice);
    ms->free_unit = calloc(v->n + 1, sizeof *ms->free_unit);
    if (!ms->name || !ms->params || !ms->err || !ms->gain || !ms->choice || !ms->free_unit)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    qm_strmap names;
    if (qm_strmap_init(&names, v->n) != QM_OK)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    qm_status st = QM_OK;
    for (size_t j = 0; j < v->n && st == QM_OK; j++) {
        const qm_ynode *k = v->pair[j].key, *x = v->pair[j].val, *e = qm_yin_get(x, "error");
        ms->choice[j] = -1;
        if (!(ms->name[j] = qm_strdup(k->text)) || qm_strmap_put(&names, ms->name[j], j, NULL) != QM_OK) {
            st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
            break;
        }
        if (!e || e->kind != QM_YSEQ || e->n != (size_t)ms->nw) {
            st = BAD_AT(x, "units: %s: expected {params: N, error: [...]} with one error per width (%d)", k->text,
                        ms->nw);
            break;
        }
        for (int w = 0; w < ms->nw && st == QM_OK; w++) {
            double y;
            if (!qm_yin_real(e->item[w], &y) || !(y >= 0 && y <= 1e300))
                st = BAD_AT(e->item[w], "units: %s: error '%.30s' is not a finite number >= 0", k->text,
                            qm_yin_str(e->item[w]) ? qm_yin_str(e->item[w]) : "?");
            ms->err[j * ms->nw + w] = y;
        }
    }
    /* each quantizable linear to its unit; params as the model counts them */
    for (size_t i = 0; i < m->n && st == QM_OK; i++) {
        ms->unit_of[i] = -1;
        if (!qm_c_broad(m->t[i].part) || m->t[i].layer < 0)
            continue;
        char *un = unit_name(m->t[i].canon, ms->units);
        size_t j;
        if (!un)
            st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        else if (!qm_strmap_get(&names, un, &j))
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: units: no unit '%s' (of %s); measure the model again", path,
                              un, m->t[i].canon);
        else {
            ms->unit_of[i] = (long)j;
            ms->params[j] += m->t[i].numel;
        }
        free(un);
    }
    for (size_t j = 0; j < ms->nu && st == QM_OK; j++) {
        if (!ms->params[j])
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: units: '%s' is no unit of %s's linears", path, ms->name[j],
                              m->dir);
        const double *e = &ms->err[j * ms->nw];
        ms->gain[j] = ms->nw > 1 ? (e[0] - e[1]) / ((ms->widths[1] - ms->widths[0]) * (double)ms->params[j])
                                 : e[0] / (double)ms->params[j];
    }
    qm_strmap_free(&names);
    return st;
}

/* Scores by layer and by expert: params-weighted means of the linears'. */
static qm_status aggregate(qm_cstate *c, qm_cmeasure *ms)
{
    const qm_model *m = c->model;
    size_t L = (size_t)m->cfg.layers, E = m->cfg.experts > 0 ? (size_t)m->cfg.experts : 1;
    double *lw = calloc(L + 1, sizeof *lw), *ew = calloc(L * E + 1, sizeof *ew);
    ms->layer_score = calloc(L + 1, sizeof *ms->layer_score);
    ms->expert_score = calloc(L * E + 1, sizeof *ms->expert_score);
    if (!lw || !ew || !ms->layer_score || !ms->expert_score) {
        free(lw), free(ew);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->n; i++) {
        long u = ms->unit_of[i];
        if (u < 0)
            continue;
        double p = (double)m->t[i].numel, g = ms->gain[u];
        size_t l = (size_t)m->t[i].layer;
        ms->layer_score[l] += g * p, lw[l] += p;
        if (m->t[i].expert >= 0) {
            size_t k = l * E + (size_t)m->t[i].expert;
            ms->expert_score[k] += g * p, ew[k] += p;
        }
    }
    for (size_t l = 0; l < L; l++)
        ms->layer_score[l] = lw[l] > 0 ? ms->layer_score[l] / lw[l] : NAN;
    for (size_t k = 0; k < L * E; k++)
        ms->expert_score[k] = ew[k] > 0 ? ms->expert_score[k] / ew[k] : NAN;
    free(lw), free(ew);
    return QM_OK;
}

qm_status qm_c_measure_read(qm_cstate *c, const char *path)
{
    if (!path)
        return QM_OK;
    qm_cmeasure *ms = calloc(1, sizeof *ms);
    if (!ms || !(ms->unit_of = malloc((c->model->n + 1) * sizeof *ms->unit_of))) {
        free(ms);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    c->ms = ms;
    ms->path = path;
    qm_arena doc = {0};
    const qm_ynode *root;
    qm_status st = qm_yin_load(path, NULL, &doc, &root, c->d);
    long long version;
    if (st == QM_OK && (!root || root->kind != QM_YMAP || !qm_yin_int(qm_yin_get(root, "qmoe_measure"), &version)))
        st = qm_diag_fail(c->d, QM_EFORMAT, "%s: not a measure file: expected a mapping with key qmoe_measure", path);
    else if (st == QM_OK && version != 1)
        st = qm_diag_fail(c->d, QM_EFORMAT, "%s: qmoe_measure: unsupported version (this qmoe reads 1)", path);
    if (st == QM_OK)
        st = read_model(c, path, qm_yin_get(root, "model"));
    if (st == QM_OK)
        st = read_settings(c, path, qm_yin_get(root, "settings"), ms);
    if (st == QM_OK)
        st = read_units(c, path, qm_yin_get(root, "units"), ms);
    if (st == QM_OK)
        st = aggregate(c, ms);
    qm_arena_free(&doc);
    return st;
}

const char *qm_c_measure_target(const qm_cstate *c) { return c->ms ? c->ms->target : NULL; }

void qm_c_measure_free(qm_cstate *c)
{
    qm_cmeasure *ms = c->ms;
    if (!ms)
        return;
    for (size_t j = 0; ms->name && j < ms->nu; j++)
        free(ms->name[j]);
    free(ms->name), free(ms->params), free(ms->err), free(ms->unit_of), free(ms->gain);
    free(ms->layer_score), free(ms->expert_score), free(ms->choice), free(ms->free_unit);
    free(ms);
    c->ms = NULL;
}

double qm_c_measured(const qm_cstate *c, int layer, int expert, long tensor)
{
    const qm_cmeasure *ms = c->ms;
    size_t E = c->model->cfg.experts > 0 ? (size_t)c->model->cfg.experts : 1;
    if (!ms)
        return NAN;
    if (tensor >= 0)
        return ms->unit_of[tensor] >= 0 ? ms->gain[ms->unit_of[tensor]] : NAN;
    if (expert >= 0)
        return ms->expert_score[(size_t)layer * E + (size_t)expert];
    return ms->layer_score[layer];
}

/* ---- the budget ------------------------------------------------------------------------------ */

/* The width index of b among the measured widths, or -1. */
static int width_index(const qm_cmeasure *ms, int b)
{
    for (int k = 0; k < ms->nw; k++)
        if (ms->widths[k] == b)
            return k;
    return -1;
}

/* The bits x params a choice at exchange rate lambda spends: each group
 * (units with equal gr, listed together by ord) takes the width least in
 * error + lambda x bits summed over its units, among the widths all of
 * them allow (NAN errors are not allowed); ties go to the narrower width. */
static double rate_bits(size_t nf, const size_t *ord, const size_t *gr, const uint64_t *pp, int nw,
                        const int *widths, const double *ee, double lambda)
{
    double bits = 0;
    for (size_t a = 0, b; a < nf; a = b) {
        for (b = a + 1; b < nf && gr[ord[b]] == gr[ord[a]]; b++)
            ;
        double best = INFINITY, best_bits = 0, params = 0;
        for (size_t q = a; q < b; q++)
            params += (double)pp[ord[q]];
        for (int k = 0; k < nw; k++) {
            double e = 0;
            for (size_t q = a; q < b; q++)
                e += ee[ord[q] * (size_t)nw + (size_t)k];
            double cost = e + lambda * params * widths[k];
            if (!isnan(cost) && cost < best)
                best = cost, best_bits = params * widths[k];
        }
        bits += best_bits;
    }
    return bits;
}

typedef struct {
    size_t group, index;
} grouped;

static int cmp_grouped(const void *a, const void *b)
{
    const grouped *x = a, *y = b;
    if (x->group != y->group)
        return (x->group > y->group) - (x->group < y->group);
    return (x->index > y->index) - (x->index < y->index);
}

/* (n) 0..n-1 ordered by gr, then index: the groups listed together; the
 * caller frees it.  NULL when out of memory. */
static size_t *sort_by_group(size_t n, const size_t *gr)
{
    size_t *ord = malloc((n + 1) * sizeof *ord);
    grouped *g = malloc((n + 1) * sizeof *g);
    if (ord && g) {
        for (size_t q = 0; q < n; q++)
            g[q] = (grouped){gr[q], q};
        qsort(g, n, sizeof *g, cmp_grouped);
        for (size_t q = 0; q < n; q++)
            ord[q] = g[q].index;
    } else {
        free(ord);
        ord = NULL;
    }
    free(g);
    return ord;
}

/* The exchange rate (error per bit x param) at which the unconstrained
 * choice (every free unit alone, at any measured width) spends at most
 * cap bits on the free units: the least such rate, by bisection on its
 * logarithm.  NAN when out of memory. */
static double exchange_rate(const qm_cmeasure *ms, double cap)
{
    size_t nu = ms->nu, nw = (size_t)ms->nw, nf = 0;
    size_t *ord = malloc((nu + 1) * sizeof *ord); /* free unit q -> q: each its own group */
    uint64_t *pp = malloc((nu + 1) * sizeof *pp);
    double *ee = malloc((nu * nw + 1) * sizeof *ee);
    double rate = NAN;
    if (ord && pp && ee) {
        for (size_t j = 0; j < nu; j++)
            if (ms->free_unit[j]) {
                ord[nf] = nf;
                pp[nf] = ms->params[j];
                memcpy(&ee[nf * nw], &ms->err[j * nw], nw * sizeof *ee);
                nf++;
            }
        double lo = -80, hi = 30; /* log10 of the rate */
        while (hi - lo > 1e-9) {
            double mid = 0.5 * (lo + hi);
            if (rate_bits(nf, ord, ord, pp, ms->nw, ms->widths, ee, pow(10, mid)) <= cap)
                hi = mid;
            else
                lo = mid;
        }
        rate = pow(10, hi);
    }
    free(ord), free(pp), free(ee);
    return rate;
}

qm_status qm_c_measured_budget(qm_cstate *c, int s, const size_t *group, const unsigned *allow, int clamp,
                               double *achieved, double reach[2])
{
    const qm_stmt *stmt = c->policy->stmt[s];
    const qm_model *m = c->model;
    qm_cmeasure *ms = c->ms;
    size_t n = m->n, nu = ms->nu;
    double target = stmt->u.budget.bits;
    /* a unit is free when its linears are quantized at widths from a `default` */
    int *ubits = malloc((nu + 1) * sizeof *ubits);
    unsigned *uallow = malloc((nu + 1) * sizeof *uallow);
    size_t *ugroup = group ? malloc((nu + 1) * sizeof *ugroup) : NULL;
    if (!ubits || !uallow || (group && !ugroup)) {
        free(ubits), free(uallow), free(ugroup);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    for (size_t j = 0; j < nu; j++)
        ubits[j] = -2, ms->free_unit[j] = 1, ms->choice[j] = -1, uallow[j] = ~0u;
    for (size_t i = 0; i < n; i++) {
        long u = ms->unit_of[i];
        if (u < 0)
            continue;
        const qm_setting *x = &c->set[i];
        /* (solved again after fitting, the budget's own widths are free too) */
        int by_default = x->bits_rule < 0 || x->bits_rule == s || c->policy->stmt[x->bits_rule]->kind == QM_STMT_DEFAULT;
        if (!by_default || x->bits <= 0)
            ms->free_unit[u] = 0;
        ubits[u] = ubits[u] == -2 || ubits[u] == x->bits ? x->bits : -1;
        if (group)
            ugroup[u] = group[i];
        if (allow)
            uallow[u] &= allow[i];
    }
    /* the fixed part: every quantized weight outside the free units */
    double fixed_bits = 0, total = 0, fixed_err = 0;
    for (size_t i = 0; i < n; i++) {
        long u = ms->unit_of[i];
        if (u >= 0 && ms->free_unit[u]) {
            total += (double)m->t[i].numel;
            continue;
        }
        if (c->set[i].bits > 0) {
            fixed_bits += (double)c->set[i].bits * (double)m->t[i].numel;
            total += (double)m->t[i].numel;
        }
    }
    size_t nf = 0;
    for (size_t j = 0; j < nu; j++) {
        int k = ms->free_unit[j] ? -1 : ubits[j] > 0 ? width_index(ms, ubits[j]) : -1;
        fixed_err += !ms->free_unit[j] && k >= 0 ? ms->err[j * ms->nw + k] : 0;
        nf += ms->free_unit[j] != 0;
    }
    qm_status ret = QM_OK;
    size_t *of = NULL, *gr = NULL; /* (nf) the free units, and their groups */
    uint64_t *pp = NULL;           /* (nf) */
    double *ee = NULL;             /* (nf, nw) */
    int *ch = NULL;                /* (nf) */
    double cap = floor(target * total - fixed_bits + 1e-6);
    if (!nf) {
        ret = qm_source_diag(c->d, QM_SEV_ERROR, stmt->src, stmt->span,
                             "budget by measured: no unit is free to move (every measured unit's width was set by a "
                             "rule, or it is kept)");
        goto out;
    }
    /* each free unit between the narrowest and widest width it may take */
    uint64_t lo = 0, hi = 0;
    for (size_t j = 0; j < nu; j++)
        if (ms->free_unit[j]) {
            int a = -1, b = -1;
            for (int k = 0; k < ms->nw; k++)
                if (uallow[j] >> ms->widths[k] & 1u) {
                    a = a < 0 ? k : a;
                    b = k;
                }
            lo += (uint64_t)ms->widths[a < 0 ? 0 : a] * ms->params[j];
            hi += (uint64_t)ms->widths[b < 0 ? ms->nw - 1 : b] * ms->params[j];
        }
    /* fitting, a target the engine cannot reach (fit.c warns): above its reach,
     * every unit at its widest; below, the exchange rate of error for bits the
     * target sets without the engine decides (below the knapsack), since the
     * reachable average nearest the target may cost any error: on tiny-deepseek
     * llama.cpp's floor for a 3-bit target is 3.95 bits with the one linear
     * that may take 2 bits, dense layer 0's down, at 2 (predicted error 0.33,
     * 47x the unconstrained plan's) */
    if (reach)
        reach[0] = (fixed_bits + (double)lo) / total, reach[1] = (fixed_bits + (double)hi) / total;
    double below = clamp && cap < (double)lo ? exchange_rate(ms, cap) : 0;
    if (isnan(below)) {
        ret = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        goto out;
    }
    if (clamp)
        cap = fmin(fmax(cap, (double)lo), (double)hi);
    if (cap < (double)lo || target > (fixed_bits + (double)hi) / total + 5e-4 * !clamp) {
        ret = qm_source_diag(c->d, QM_SEV_ERROR, stmt->src, stmt->u.budget.bits_span,
                             "budget %.3g bits is out of reach: the free measured units between %dbit and %dbit give "
                             "%.3f to %.3f bits", target, ms->widths[0], ms->widths[ms->nw - 1],
                             (fixed_bits + (double)lo) / total, (fixed_bits + (double)hi) / total);
        goto out;
    }
    /* the knapsack over the free units */
    of = malloc((nf + 1) * sizeof *of);
    gr = malloc((nf + 1) * sizeof *gr);
    pp = malloc((nf + 1) * sizeof *pp);
    ee = malloc((nf * (size_t)ms->nw + 1) * sizeof *ee);
    ch = malloc((nf + 1) * sizeof *ch);
    if (!of || !gr || !pp || !ee || !ch) {
        ret = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    } else {
        size_t q = 0;
        for (size_t j = 0; j < nu; j++)
            if (ms->free_unit[j]) {
                of[q] = j;
                gr[q] = group ? ugroup[j] : q;
                pp[q] = ms->params[j];
                for (int k = 0; k < ms->nw; k++) /* NAN: a width the engine does not allow */
                    ee[q * ms->nw + k] = uallow[j] >> ms->widths[k] & 1u ? ms->err[j * ms->nw + k] : NAN;
                q++;
            }
        if (below > 0) {
            size_t *ord = sort_by_group(nf, gr);
            if (!ord) {
                ret = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
                goto out;
            }
            cap = fmax(cap, rate_bits(nf, ord, gr, pp, ms->nw, ms->widths, ee, below));
            free(ord);
            qm_source_diag(c->d, QM_SEV_NOTE, stmt->src, stmt->span,
                           "budget: %.3f bits is below what the engine's widths reach (%.3f); the units trade "
                           "error for bits at the target's own rate (%.3g per bit and parameter)",
                           target, (fixed_bits + (double)lo) / total, below);
        }
        qm_ks_problem p = {nf, pp, ms->nw, ms->widths, ee, NULL, gr, (uint64_t)cap, 0};
        qm_ks_result r = {ch, 0, 0, 0};
        if ((ret = qm_ks_solve(&p, &r, c->d)) != QM_OK)
            qm_diag_note(c->d, "while solving the budget of %s", ms->path);
        for (size_t k = 0; ret == QM_OK && k < nf; k++)
            ms->choice[of[k]] = ch[k];
        if (ret == QM_OK) {
            c->has_predicted = 1;
            c->predicted_error = r.error + fixed_err;
            *achieved = (fixed_bits + (double)r.bits) / total;
            ms->total_params = total;
            char gap[64] = "";
            if (r.gap > 0)
                snprintf(gap, sizeof gap, ", within %.3g of the optimum", r.gap);
            qm_source_diag(c->d, QM_SEV_NOTE, stmt->src, stmt->span,
                           "budget: target %.3f bits, achieved %.3f (%zu measured units by knapsack%s; predicted "
                           "error %.6g)", target, *achieved, nf, gap, c->predicted_error);
        }
    }
    /* the chosen widths, the budget their rule */
    for (size_t i = 0; ret == QM_OK && i < n; i++) {
        long u = ms->unit_of[i];
        if (u < 0 || !ms->free_unit[u])
            continue;
        c->set[i].bits = ms->widths[ms->choice[u]];
        c->set[i].rule = c->set[i].bits_rule = s;
        if (c->record) {
            size_t h = c->nhits[s];
            size_t *pz = realloc(c->hits[s], (h + 1) * sizeof *pz);
            if (!pz) {
                ret = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
                break;
            }
            c->hits[s] = pz;
            c->hits[s][c->nhits[s]++] = i;
        }
    }
out:
    free(of), free(gr), free(pp), free(ee), free(ch);
    free(ubits), free(uallow), free(ugroup);
    return ret;
}

void qm_c_measured_explain(FILE *f, const qm_cstate *c, size_t i)
{
    const qm_cmeasure *ms = c->ms;
    long u = ms ? ms->unit_of[i] : -1;
    if (u < 0 || ms->choice[u] < 0) {
        fprintf(f, "    measured: no unit of the measure file\n");
        return;
    }
    int k = ms->choice[u];
    const double *e = &ms->err[(size_t)u * ms->nw];
    /* per bit of the model's average: the error a step saves over the bits it adds to the average */
    double per = ms->total_params / (double)ms->params[u];
    fprintf(f, "    measured: unit %s (%llu params) at %dbit, error %.4g", ms->name[u],
            (unsigned long long)ms->params[u], ms->widths[k], e[k]);
    if (k > 0)
        fprintf(f, "; the step from %dbit saved %.4g per bit of average", ms->widths[k - 1],
                (e[k - 1] - e[k]) * per / (ms->widths[k] - ms->widths[k - 1]));
    if (k + 1 < ms->nw)
        fprintf(f, "; the step to %dbit would save %.4g per bit", ms->widths[k + 1],
                (e[k] - e[k + 1]) * per / (ms->widths[k + 1] - ms->widths[k]));
    fputc('\n', f);
}
