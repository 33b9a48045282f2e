/* engine.c: matching a plan against an engine's constraints (engine.h).
 *
 * Each constraint kind is a check that marks the tensors violating it; a
 * marked set becomes one diagnostic per policy rule that set those tensors,
 * with their count, layers and an example, so that what to change is where
 * the message points.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/engine.h"

extern const qm_engine qm_engine_vllm, qm_engine_sglang, qm_engine_transformers, qm_engine_gptqmodel,
    qm_engine_autogptq, qm_engine_llamacpp;

const qm_engine *const qm_engines[] = {
    &qm_engine_vllm,      &qm_engine_sglang,   &qm_engine_transformers,
    &qm_engine_gptqmodel, &qm_engine_autogptq, &qm_engine_llamacpp,
};
const size_t qm_n_engines = sizeof qm_engines / sizeof *qm_engines;

const qm_engine *qm_engine_find(const char *name)
{
    for (size_t i = 0; i < qm_n_engines; i++)
        if (strcmp(qm_engines[i]->name, name) == 0)
            return qm_engines[i];
    return NULL;
}

void qm_engine_list(qm_buf *b)
{
    for (size_t i = 0; i < qm_n_engines; i++)
        qm_buf_printf(b, "%s%s", i ? ", " : "", qm_engines[i]->name);
}

/* ---- the checks ---------------------------------------------------------- */

typedef struct ctx {
    const qm_model *m;
    const qm_plan_tensor *const *pt; /* (m->n) */
    qm_scheme base;                  /* the plan's base scheme */
    unsigned char *bad;              /* (m->n) out: tensors violating the rule */
    size_t *ref;                     /* (m->n) out, grouping kinds: the tensor each bad one differs from */
    size_t *leader;                  /* scratch for the grouping checks, (slots) */
    size_t slots;
} ctx;

/* The scratch of one check or fit over m (base left for the caller);
 * QM_ENOMEM when any of it is missing (ctx_close() frees what there is). */
static qm_status ctx_open(ctx *c, const qm_model *m, const qm_plan_tensor *const *pt)
{
    /* grouping slots: (layer, expert + 2, 2), see fused_slot() */
    size_t slots = (size_t)m->cfg.layers * ((size_t)m->cfg.experts + 2) * 2 + 1;
    *c = (ctx){m, pt, {0}, malloc(m->n + 1), malloc((m->n + 1) * sizeof(size_t)), malloc(slots * sizeof(size_t)),
               slots};
    return c->bad && c->ref && c->leader ? QM_OK : QM_ENOMEM;
}

static void ctx_close(ctx *c)
{
    free(c->bad);
    free(c->ref);
    free(c->leader);
}

static int routed(qm_part p)
{
    return p == QM_PART_EXPERT_GATE || p == QM_PART_EXPERT_UP || p == QM_PART_EXPERT_DOWN;
}

static qm_scheme scheme(const ctx *c, size_t i)
{
    return c->pt[i] ? qm_plan_scheme(c->pt[i]) : (qm_scheme){0, 0, 0, 0};
}

static int group_bit(int group)
{
    if (group == 0)
        return 0;
    for (int k = 1; k < 31; k++)
        if (group == 1 << k)
            return k;
    return -1;
}

static int quantized(const ctx *c, size_t i) { return c->pt[i] && c->pt[i]->bits > 0; }

/* 1 when tensor i is a quantized linear that rule r covers. */
static int covers(const ctx *c, const qm_eng_rule *r, size_t i)
{
    if (!quantized(c, i) || (r->only_bits && !(r->only_bits >> c->pt[i]->bits & 1)))
        return 0;
    int moe = routed(c->m->t[i].part);
    return r->scope == QM_ENG_ALL || (r->scope == QM_ENG_ROUTED) == moe;
}

/* 1 when the whole model violates r (nothing is marked), else marks tensors. */
typedef int check_fn(const ctx *c, const qm_eng_rule *r);

static int check_arch(const ctx *c, const qm_eng_rule *r)
{
    return !(r->param >> c->m->arch->family & 1);
}

/* Whether tensor i (which r covers) breaks r, for the per-tensor kinds. */
static int breaks(const ctx *c, const qm_eng_rule *r, size_t i)
{
    const qm_plan_tensor *t = c->pt[i];
    int b;
    switch (r->kind) {
    case QM_EC_WIDTHS: return !(r->param >> t->bits & 1);
    case QM_EC_SYM: return !t->sym;
    case QM_EC_NO_ACT: return t->act_order;
    case QM_EC_GROUPS: b = group_bit(t->group); return b < 0 || !(r->param >> b & 1);
    case QM_EC_INPUT_MULTIPLE: return c->m->t[i].ndim == 2 && c->m->t[i].shape[1] % r->param != 0;
    case QM_EC_ONE_SCHEME:
        if (r->param == 0)
            return t->bits != c->base.bits || t->group != c->base.group;
        return t->bits == c->base.bits && t->group == c->base.group &&
               (t->sym != c->base.sym || t->act_order != c->base.act_order);
    default: return 0;
    }
}

static int check_each(const ctx *c, const qm_eng_rule *r)
{
    for (size_t i = 0; i < c->m->n; i++)
        c->bad[i] = covers(c, r, i) && breaks(c, r, i);
    return 0;
}

/* Mark each tensor whose scheme differs from the first tensor of its group
 * (slot(c, r, i) < c->slots; SIZE_MAX: in no group).  The first is the
 * reference the message's example is compared with. */
static void mark_groups(const ctx *c, const qm_eng_rule *r, size_t (*slot)(const ctx *, const qm_eng_rule *, size_t))
{
    for (size_t s = 0; s < c->slots; s++)
        c->leader[s] = SIZE_MAX;
    for (size_t i = 0; i < c->m->n; i++) {
        size_t s = slot(c, r, i);
        c->bad[i] = 0;
        if (s == SIZE_MAX)
            continue;
        if (c->leader[s] == SIZE_MAX)
            c->leader[s] = i;
        else if ((c->bad[i] = !qm_scheme_same(scheme(c, c->leader[s]), scheme(c, i))))
            c->ref[i] = c->leader[s];
    }
}

/* Slots: (layer, expert + 2, 2) with expert -1 (attention, dense MLP) at 1
 * and shared experts at 0; the last index is 0 for q/k/v, 1 for gate/up. */
static size_t fused_slot(const ctx *c, const qm_eng_rule *r, size_t i)
{
    (void)r;
    const qm_tensor *t = &c->m->t[i];
    size_t E2 = (size_t)c->m->cfg.experts + 2, kind;
    switch (t->part) {
    case QM_PART_Q: case QM_PART_K: case QM_PART_V: kind = 0; break;
    case QM_PART_EXPERT_GATE: case QM_PART_EXPERT_UP: case QM_PART_SHARED_GATE: case QM_PART_SHARED_UP:
    case QM_PART_MLP_GATE: case QM_PART_MLP_UP: kind = 1; break;
    default: return SIZE_MAX;
    }
    int shared = t->part == QM_PART_SHARED_GATE || t->part == QM_PART_SHARED_UP;
    size_t e = shared ? 0 : (size_t)(t->expert + 2) - (t->expert < 0);
    return t->layer < 0 ? SIZE_MAX : ((size_t)t->layer * E2 + e) * 2 + kind;
}

static int check_fused(const ctx *c, const qm_eng_rule *r)
{
    mark_groups(c, r, fused_slot);
    return 0;
}

/* Slots: (layer, 3): the routed part, or 0 for all parts when param is 1. */
static size_t experts_slot(const ctx *c, const qm_eng_rule *r, size_t i)
{
    const qm_tensor *t = &c->m->t[i];
    if (!routed(t->part) || t->layer < 0)
        return SIZE_MAX;
    size_t part = r->param ? 0 : (size_t)(t->part - QM_PART_EXPERT_GATE);
    return (size_t)t->layer * 3 + part;
}

static int check_layer_experts(const ctx *c, const qm_eng_rule *r)
{
    mark_groups(c, r, experts_slot);
    return 0;
}


/* How each kind is checked, and the violation as messages name it: the
 * scope's linears between `pre` and `post`, or `pre` alone when unscoped. */
static const struct {
    check_fn *check;
    int scoped;
    const char *pre, *post;
} kinds[QM_EC_KIND_COUNT] = {
    [QM_EC_ARCH] = {check_arch, 0, "the architecture", ""},
    [QM_EC_WIDTHS] = {check_each, 1, "", " at"},
    [QM_EC_SYM] = {check_each, 1, "asymmetric ", ""},
    [QM_EC_NO_ACT] = {check_each, 1, "", " with act-order"},
    [QM_EC_GROUPS] = {check_each, 1, "", " with group size"},
    [QM_EC_INPUT_MULTIPLE] = {check_each, 1, "", " whose input width is not a multiple of"},
    [QM_EC_ONE_SCHEME] = {check_each, 1, "", " at another"},
    [QM_EC_FUSED] = {check_fused, 0, "parts of a fused projection (q/k/v, gate/up) at different schemes", ""},
    [QM_EC_LAYER_EXPERTS] = {check_layer_experts, 0, "experts of one layer at different schemes", ""},
};

static const char *const scope_names[] = {
    [QM_ENG_ALL] = "linears", [QM_ENG_ROUTED] = "routed experts", [QM_ENG_OTHERS] = "linears other than routed experts",
};

/* ---- reporting ----------------------------------------------------------- */

/* The violating tensors one policy rule set. */
typedef struct rgroup {
    const char *rule; /* "file:line" or "default" */
    size_t count, first;
    int lo, hi;         /* layers */
    unsigned bits, groups; /* widths and group sizes seen (bit 31: another group) */
} rgroup;

static void what_text(const qm_eng_rule *r, const qm_model *m, const ctx *c, const rgroup *g, qm_buf *b)
{
    qm_buf_printf(b, "%s", kinds[r->kind].pre);
    if (kinds[r->kind].scoped) {
        for (int w = 1, n = 0; w <= QM_MAX_WIDTH; w++)
            if (r->only_bits >> w & 1)
                qm_buf_printf(b, "%s%d", n++ ? "/" : "", w);
        qm_buf_printf(b, "%s%s%s", r->only_bits ? "-bit " : "", scope_names[r->scope], kinds[r->kind].post);
    }
    if (r->kind == QM_EC_ARCH) {
        qm_buf_printf(b, " %s", m->arch->name);
    } else if (r->kind == QM_EC_WIDTHS) {
        for (int w = 1, n = 0; w <= QM_MAX_WIDTH; w++)
            if (g->bits >> w & 1)
                qm_buf_printf(b, "%s%d", n++ ? ", " : " ", w);
        qm_buf_printf(b, " bits");
    } else if (r->kind == QM_EC_GROUPS) {
        for (int k = 0, n = 0; k < 32; k++)
            if (g->groups >> k & 1) {
                const char *sep = n++ ? ", " : " ";
                if (k == 31)
                    qm_buf_printf(b, "%sof another size", sep);
                else if (k == 0)
                    qm_buf_printf(b, "%sper channel", sep);
                else
                    qm_buf_printf(b, "%s%d", sep, 1 << k);
            }
    } else if (r->kind == QM_EC_INPUT_MULTIPLE) {
        qm_buf_printf(b, " %u", r->param);
    } else if (r->kind == QM_EC_ONE_SCHEME) {
        if (r->param == 0)
            qm_buf_printf(b, " width or group size than the plan's base (%d-bit, group %d)", c->base.bits,
                          c->base.group);
        else
            qm_buf_printf(b, " sym or act-order than the plan's base (%s%s)", c->base.sym ? "sym" : "asym",
                          c->base.act_order ? ", act-order" : "");
    }
}

static void scheme_text(const ctx *c, size_t i, qm_buf *b)
{
    qm_scheme s = scheme(c, i);
    if (!s.bits)
        qm_buf_printf(b, "kept");
    else
        qm_buf_printf(b, "%d-bit, group %d, %s%s", s.bits, s.group, s.sym ? "sym" : "asym",
                      s.act_order ? ", act-order" : "");
}

/* One diagnostic for group g (NULL: the whole model) of rule r. */
static void report(const qm_engine *e, const qm_eng_rule *r, const ctx *c, const rgroup *g, int strict,
                   qm_engine_verdict *v, qm_diag *d)
{
    const qm_model *m = c->m;
    qm_buf what = {0};
    rgroup whole = {0};
    what_text(r, m, c, g ? g : &whole, &what);
    if (!v->why[0])
        snprintf(v->why, sizeof v->why, "%s", what.s ? what.s : "");
    if (d) {
        qm_severity sev = r->sev == QM_ENG_WRONG || strict ? QM_SEV_ERROR : QM_SEV_WARNING;
        char file[1024] = "";
        qm_diag_loc loc = {0};
        const char *colon = g ? strrchr(g->rule, ':') : NULL;
        if (colon && (size_t)(colon - g->rule) < sizeof file) {
            memcpy(file, g->rule, (size_t)(colon - g->rule));
            loc = (qm_diag_loc){file, strtoul(colon + 1, NULL, 10), 0, NULL}; /* a plan keeps no column */
        }
        qm_buf tail = {0};
        if (g) {
            qm_buf_printf(&tail, "; %zu tensor%s", g->count, g->count == 1 ? "" : "s");
            if (g->lo == g->hi)
                qm_buf_printf(&tail, " in layer %d", g->lo);
            else
                qm_buf_printf(&tail, " in layers %d-%d", g->lo, g->hi);
            qm_buf_printf(&tail, ", e.g. %s, set by %s", m->t[g->first].canon, colon ? "this rule" : g->rule);
            if (r->kind == QM_EC_FUSED || r->kind == QM_EC_LAYER_EXPERTS) {
                size_t ref = c->ref[g->first];
                qm_buf_printf(&tail, " (");
                scheme_text(c, g->first, &tail);
                qm_buf_printf(&tail, ") against %s (", m->t[ref].canon);
                scheme_text(c, ref, &tail);
                qm_buf_printf(&tail, ", set by %s)", c->pt[ref] && c->pt[ref]->rule ? c->pt[ref]->rule : "default");
            }
        }
        int wrong = r->sev == QM_ENG_WRONG;
        qm_diag_at(d, sev, &loc, "%s %s%s%s: %s (%s %s: %s)%s", e->name, wrong ? "would serve " : "refuses ",
                   what.s ? what.s : "", wrong ? " wrongly" : "", r->does, e->name, e->version, r->source,
                   tail.s ? tail.s : "");
        free(tail.s);
    }
    free(what.s);
    if (r->sev == QM_ENG_WRONG)
        v->wrong++;
    else
        v->refuses++;
}

/* Group the marked tensors by the rule that set them, in order of first
 * appearance; *n groups in *out (caller frees), or QM_ENOMEM. */
static qm_status group_marked(const ctx *c, rgroup **out, size_t *n)
{
    rgroup *g = NULL;
    size_t ng = 0;
    for (size_t i = 0; i < c->m->n; i++) {
        if (!c->bad[i])
            continue;
        const char *rule = c->pt[i] && c->pt[i]->rule ? c->pt[i]->rule : "default";
        size_t k = 0;
        while (k < ng && strcmp(g[k].rule, rule) != 0)
            k++;
        if (k == ng) {
            rgroup *t = realloc(g, (ng + 1) * sizeof *g);
            if (!t) {
                free(g);
                return QM_ENOMEM;
            }
            g = t;
            g[ng++] = (rgroup){rule, 0, i, c->m->t[i].layer, c->m->t[i].layer, 0, 0};
        }
        int layer = c->m->t[i].layer, b = c->pt[i] ? group_bit(c->pt[i]->group) : 0;
        g[k].count++;
        g[k].lo = layer < g[k].lo ? layer : g[k].lo;
        g[k].hi = layer > g[k].hi ? layer : g[k].hi;
        g[k].bits |= c->pt[i] ? 1u << c->pt[i]->bits : 0;
        g[k].groups |= 1u << (b < 0 ? 31 : b);
    }
    *out = g;
    *n = ng;
    return QM_OK;
}

qm_status qm_engine_check(const qm_engine *e, const qm_model *m, const qm_plan *p,
                          const qm_plan_tensor *const *by_tensor, int strict, qm_engine_verdict *v, qm_diag *d)
{
    memset(v, 0, sizeof *v);
    ctx c;
    qm_status st = ctx_open(&c, m, by_tensor);
    c.base = qm_plan_base_scheme(p);
    for (size_t k = 0; k < e->n_rules && st == QM_OK; k++) {
        const qm_eng_rule *r = &e->rules[k];
        memset(c.bad, 0, m->n);
        if (kinds[r->kind].check(&c, r)) {
            report(e, r, &c, NULL, strict, v, d);
            continue;
        }
        rgroup *g;
        size_t ng;
        if ((st = group_marked(&c, &g, &ng)) != QM_OK)
            break;
        for (size_t j = 0; j < ng; j++)
            report(e, r, &c, &g[j], strict, v, d);
        free(g);
    }
    ctx_close(&c);
    if (st != QM_OK)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    return QM_OK;
}

qm_status qm_engine_gate(const char *const *names, size_t n, int strict, const qm_model *m, const qm_plan *p,
                         const qm_plan_tensor *const *by_tensor, const char *format, qm_diag *d)
{
    qm_engine_verdict v;
    qm_status st = QM_OK;
    size_t errors = qm_diag_errors(d);
    /* the named engines, then the plan's own (`engine NAME` in its policy) */
    for (size_t k = 0; k < n + p->nengines && st == QM_OK; k++) {
        const char *name = k < n ? names[k] : p->engines[k - n];
        const qm_engine *e = qm_engine_find(name);
        int again = 0;
        for (size_t j = 0; j < k; j++)
            again |= strcmp(j < n ? names[j] : p->engines[j - n], name) == 0;
        if (again)
            continue;
        if (!e) {
            qm_buf list = {0};
            qm_engine_list(&list);
            st = qm_diag_fail(d, QM_EINVAL, "unknown engine '%s' (known: %s)", name, list.s ? list.s : "");
            free(list.s);
        } else {
            st = qm_engine_check(e, m, p, by_tensor, strict, &v, d);
        }
    }
    if (st != QM_OK || n || p->nengines)
        return st == QM_OK && qm_diag_errors(d) > errors ? QM_EINVAL : st;
    qm_buf refuse = {0}, wrong = {0};
    for (size_t k = 0; k < qm_n_engines && st == QM_OK; k++) {
        if (strcmp(qm_engines[k]->format, format) != 0)
            continue;
        st = qm_engine_check(qm_engines[k], m, p, by_tensor, 0, &v, NULL);
        if (st == QM_OK && (v.wrong || v.refuses))
            qm_buf_printf(v.wrong ? &wrong : &refuse, "%s%s (%s)", (v.wrong ? wrong.n : refuse.n) ? ", " : "",
                          qm_engines[k]->name, v.why);
    }
    if (st == QM_OK && (refuse.n || wrong.n))
        qm_diag_warn(d, "this checkpoint %s%s%s%s%s; name the engine with --engine for the tensors and rules",
                     wrong.n ? "will be misread by " : "", wrong.n ? wrong.s : "", wrong.n && refuse.n ? "; " : "",
                     refuse.n ? "will be refused by " : "", refuse.n ? refuse.s : "");
    free(refuse.s);
    free(wrong.s);
    if (st != QM_OK)
        return qm_diag_fail(d, st, "out of memory");
    return QM_OK;
}

/* ---- fitting a plan to an engine ------------------------------------------- */

/* The widths e takes for routed experts (every width when no rule limits them). */
static unsigned routed_widths(const qm_engine *e)
{
    unsigned w = 0;
    for (int k = 0; k < QM_WIDTH_COUNT; k++)
        w |= 1u << qm_widths[k];
    for (size_t k = 0; k < e->n_rules; k++)
        if (e->rules[k].kind == QM_EC_WIDTHS && e->rules[k].scope != QM_ENG_OTHERS && !e->rules[k].only_bits)
            w &= e->rules[k].param;
    return w;
}

/* The width in mask nearest to b, the one above on a tie; b when none. */
static int nearest_width(double b, unsigned mask)
{
    int best = 0;
    for (int k = 0; k < QM_WIDTH_COUNT; k++) {
        int w = qm_widths[k];
        if (mask >> w & 1 && (!best || fabs(w - b) < fabs(best - b) || (fabs(w - b) == fabs(best - b) && w > best)))
            best = w;
    }
    return best ? best : (int)lround(b);
}

/* The group size in mask (as QM_EC_GROUPS) nearest to g in log2 that
 * divides `in` columns (per channel counts as the widest); g when none. */
static int nearest_group(int g, unsigned mask, uint64_t in)
{
    double at = g ? log2(g) : 30;
    int best = -1;
    double dist = 0;
    for (int k = 0; k < 31; k++) {
        int cand = k ? 1 << k : 0;
        if (!(mask >> k & 1) || (cand && in % (uint64_t)cand))
            continue;
        double d = fabs((k ? k : 30) - at);
        if (best < 0 || d < dist) {
            best = cand;
            dist = d;
        }
    }
    return best < 0 ? g : best;
}

/* Fix the tensors c->bad marks for rule r; t is c->pt's mutable array. */
static void note(qm_engine_why *why, const qm_plan_tensor *was, const qm_plan_tensor *now, unsigned char mark)
{
    if (was->bits != now->bits)
        why->width = mark;
    if (was->group != now->group || was->sym != now->sym || was->act_order != now->act_order)
        why->scheme = mark;
}

static void fix(const ctx *c, const qm_eng_rule *r, qm_plan_tensor *t, qm_engine_why *why, unsigned char mark)
{
    const qm_model *m = c->m;
    for (size_t i = 0; i < m->n; i++) {
        if (!c->bad[i])
            continue;
        qm_plan_tensor *x = &t[i], was = *x;
        switch (r->kind) {
        case QM_EC_WIDTHS: {
            int up = 0, down = 0;
            for (int k = 0; k < QM_WIDTH_COUNT; k++) {
                int w = qm_widths[k];
                if (r->param >> w & 1 && w > x->bits && !up)
                    up = w;
                if (r->param >> w & 1 && w < x->bits)
                    down = w;
            }
            x->bits = up ? up : down ? down : x->bits;
            break;
        }
        case QM_EC_SYM: x->sym = 1; break;
        case QM_EC_NO_ACT: x->act_order = 0; break;
        case QM_EC_GROUPS: x->group = nearest_group(x->group, r->param, m->t[i].shape[1]); break;
        case QM_EC_INPUT_MULTIPLE:
            for (int k = 0; k < QM_WIDTH_COUNT; k++)
                if (qm_widths[k] > x->bits && !(r->only_bits >> qm_widths[k] & 1)) {
                    x->bits = qm_widths[k];
                    break;
                }
            break;
        case QM_EC_ONE_SCHEME:
            if (r->param == 0) {
                x->bits = c->base.bits;
                x->group = c->base.group;
            } else {
                x->sym = c->base.sym;
                x->act_order = c->base.act_order;
            }
            break;
        default: continue; /* the grouping kinds: fix_groups() */
        }
        note(&why[i], &was, x, mark);
    }
}

/* Give every tensor of each group (the slots of r's kind) one scheme: a
 * fused projection its widest part's; a layer's experts the weighted mean
 * width rounded to one e takes, with the first expert's other fields
 * (its group size cut to one that divides every member's input width).
 * QM_ENOMEM when its scratch cannot be had. */
static qm_status fix_groups(const ctx *c, const qm_engine *e, const qm_eng_rule *r, qm_plan_tensor *t,
                            qm_engine_why *why, unsigned char mark)
{
    int fused = r->kind == QM_EC_FUSED;
    size_t (*slot)(const ctx *, const qm_eng_rule *, size_t) = fused ? fused_slot : experts_slot;
    double *sum = calloc(c->slots, sizeof *sum), *params = calloc(c->slots, sizeof *params);
    uint64_t *in = calloc(c->slots, sizeof *in); /* the gcd of the group's input widths */
    if (!sum || !params || !in) {
        free(sum);
        free(params);
        free(in);
        return QM_ENOMEM;
    }
    for (size_t s = 0; s < c->slots; s++)
        c->leader[s] = SIZE_MAX;
    for (size_t i = 0; i < c->m->n; i++) {
        size_t s = slot(c, r, i);
        if (s == SIZE_MAX || !t[i].bits)
            continue;
        if (c->leader[s] == SIZE_MAX || (fused && t[i].bits > t[c->leader[s]].bits))
            c->leader[s] = i;
        sum[s] += (double)t[i].bits * (double)c->m->t[i].numel;
        params[s] += (double)c->m->t[i].numel;
        in[s] = qm_gcd(in[s], c->m->t[i].shape[1]);
    }
    unsigned widths = routed_widths(e);
    for (size_t i = 0; i < c->m->n; i++) {
        size_t s = slot(c, r, i);
        if (s == SIZE_MAX || !t[i].bits || c->leader[s] == SIZE_MAX)
            continue;
        qm_plan_tensor want = t[c->leader[s]];
        if (!fused)
            want.bits = nearest_width(sum[s] / params[s], widths);
        if (want.group > 0) /* one group size that divides every part (gate 128 wide, down 64) */
            want.group = (int)qm_gcd((uint64_t)want.group, in[s]);
        qm_scheme a = qm_plan_scheme(&t[i]), b = qm_plan_scheme(&want);
        if (!qm_scheme_same(a, b)) {
            note(&why[i], &t[i], &want, mark);
            t[i].bits = want.bits;
            t[i].group = want.group;
            t[i].sym = want.sym;
            t[i].act_order = want.act_order;
        }
    }
    free(sum);
    free(params);
    free(in);
    return QM_OK;
}

qm_status qm_engine_fit(const qm_engine *e, const qm_model *m, qm_plan_tensor *t, qm_engine_why *why, qm_diag *d)
{
    const qm_plan_tensor **by = malloc((m->n + 1) * sizeof *by);
    for (size_t i = 0; by && i < m->n; i++)
        by[i] = &t[i];
    ctx c;
    qm_plan whole = {.n = m->n, .t = t};
    qm_status st = ctx_open(&c, m, by);
    if (st != QM_OK || !by)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    /* A fix may break a rule met before it (raising a width changes a
     * fused group): a few rounds settle what can be settled. */
    for (int round = 0; round < 4 && st == QM_OK; round++) {
        for (size_t k = 0; k < e->n_rules && st == QM_OK; k++) {
            const qm_eng_rule *r = &e->rules[k];
            c.base = qm_plan_base_scheme(&whole);
            memset(c.bad, 0, m->n);
            if (kinds[r->kind].check(&c, r)) {
                qm_buf what = {0};
                what_text(r, m, &c, &(rgroup){0}, &what);
                st = qm_diag_fail(d, QM_EINVAL, "no plan fits %s: it refuses %s (%s)", e->name, what.s ? what.s : "",
                                  r->does);
                free(what.s);
            } else if (r->kind == QM_EC_FUSED || r->kind == QM_EC_LAYER_EXPERTS) {
                if (fix_groups(&c, e, r, t, why, (unsigned char)(k + 1)) != QM_OK)
                    st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
            } else {
                fix(&c, r, t, why, (unsigned char)(k + 1));
            }
        }
    }
    qm_engine_verdict v;
    if (st == QM_OK && (st = qm_engine_check(e, m, &whole, by, 1, &v, NULL)) == QM_OK && (v.refuses || v.wrong))
        st = qm_diag_fail(d, QM_EINVAL, "no plan fits %s: %s remain after fitting", e->name, v.why);
    free(by);
    ctx_close(&c);
    return st;
}

/* ---- widths for a budget solved after fitting ------------------------------ */

/* 1 when r's scope holds linear i of m, whatever its scheme. */
static int in_scope(const qm_model *m, const qm_eng_rule *r, size_t i)
{
    if (!qm_parts[m->t[i].part].linear)
        return 0;
    return r->scope == QM_ENG_ALL || (r->scope == QM_ENG_ROUTED) == routed(m->t[i].part);
}

unsigned qm_engine_widths(const qm_engine *e, const qm_model *m, size_t i)
{
    unsigned mask = 0;
    for (int k = 0; k < QM_WIDTH_COUNT; k++) {
        int w = qm_widths[k], ok = 1;
        for (size_t j = 0; j < e->n_rules && ok; j++) {
            const qm_eng_rule *r = &e->rules[j];
            if (!in_scope(m, r, i) || (r->only_bits && !(r->only_bits >> w & 1)))
                continue;
            if (r->kind == QM_EC_WIDTHS)
                ok = r->param >> w & 1;
            else if (r->kind == QM_EC_INPUT_MULTIPLE)
                ok = m->t[i].ndim != 2 || m->t[i].shape[1] % r->param == 0;
        }
        if (ok)
            mask |= 1u << w;
    }
    return mask;
}

qm_status qm_engine_width_sets(const qm_engine *e, const qm_model *m, void (*join)(void *arg, size_t i, size_t j),
                               void *arg)
{
    ctx c;
    qm_status st = ctx_open(&c, m, NULL);
    for (size_t k = 0; k < e->n_rules && st == QM_OK; k++) {
        const qm_eng_rule *r = &e->rules[k];
        size_t (*slot)(const ctx *, const qm_eng_rule *, size_t) =
            r->kind == QM_EC_FUSED ? fused_slot : r->kind == QM_EC_LAYER_EXPERTS ? experts_slot : NULL;
        size_t first = SIZE_MAX; /* one scheme for all: every linear of the scope joins the first */
        if (!slot && !(r->kind == QM_EC_ONE_SCHEME && r->param == 0))
            continue;
        for (size_t s = 0; s < c.slots; s++)
            c.leader[s] = SIZE_MAX;
        for (size_t i = 0; i < m->n; i++) {
            if (!in_scope(m, r, i))
                continue;
            size_t *lead = &first;
            if (slot) {
                size_t s = slot(&c, r, i);
                if (s == SIZE_MAX)
                    continue;
                lead = &c.leader[s];
            }
            if (*lead == SIZE_MAX)
                *lead = i;
            else
                join(arg, *lead, i);
        }
    }
    ctx_close(&c);
    return st;
}
