/* compile.c: the rules of a policy, in order, over a model -> a bit plan.
 *
 * Semantics (qmoe-policy(5), SEMANTICS):
 *   - imports are expanded in place (lang/ does it);
 *   - `default` rules apply first, in their order, to every linear of
 *     attention, routed experts, shared experts and dense MLPs; then every
 *     other rule in source order; a rule sets only the fields it names;
 *   - router and lm_head are kept unless a rule names their module;
 *     embeddings, the shared gate, norms and biases are always kept, and a
 *     rule naming only them with anything but `keep` is an error;
 *   - a rule matching nothing warns (an error under --strict), and so does
 *     each selector of a rule of several that matches nothing, at its place;
 *   - a width or group a weight cannot take is an error naming rule and weight;
 *   - the budget, if any, runs last (budget.c);
 *   - fields no rule sets: group 128 (per channel when 128 does not divide the
 *     input columns), sym, no_act_order.
 * Each stage returns an error count through d; the plan is made only at zero.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/engine.h"

enum { MAX_APPLY_ERRORS = 3 };

void qm_cstate_free(qm_cstate *c)
{
    if (c->hits && c->policy)
        for (size_t i = 0; i < c->policy->n; i++)
            free(c->hits[i]);
    free(c->hits);
    free(c->nhits);
    qm_c_scores_free(&c->sc);
    qm_c_measure_free(c);
    free(c->moe_index);
    free(c->moe_layer);
    free(c->set);
    free(c->mask);
    free(c->rank);
    free(c->outlier_w);
    free(c->outlier_done);
    free(c->fitted);
    free(c->prefit);
    free(c->fit_why);
    qm_model_close(c->model);
    qm_policy_free(c->policy);
    memset(c, 0, sizeof *c);
}

/* The tie rank orders tensors by (layer, expert, canonical name).  Within
 * one layer and expert the names share their prefix ("layers[L]." and
 * "experts[E]."), so comparing the parts' own names decides: one integer
 * key per tensor, put in order by a radix sort (37k keys at 235B scale,
 * where a comparison sort of them was a visible part of compiling). */
static int cmp_part(const void *a, const void *b)
{
    return strcmp(qm_parts[*(const int *)a].canon, qm_parts[*(const int *)b].canon);
}

/* Sort k (n keys, low 24 bits the tensor index) by least significant digit
 * first, 11 bits a pass, through tmp (n); stable, so equal digits keep the
 * order of the passes before. */
static void radix_sort(uint64_t *k, uint64_t *tmp, size_t n)
{
    enum { BITS = 11, BUCKETS = 1 << BITS };
    uint64_t all = 0;
    for (size_t i = 0; i < n; i++)
        all |= k[i];
    for (int shift = 24; shift < 64 && (all >> shift); shift += BITS) {
        size_t count[BUCKETS + 1] = {0};
        for (size_t i = 0; i < n; i++)
            count[(k[i] >> shift & (BUCKETS - 1)) + 1]++;
        for (int b = 0; b < BUCKETS; b++)
            count[b + 1] += count[b];
        for (size_t i = 0; i < n; i++)
            tmp[count[k[i] >> shift & (BUCKETS - 1)]++] = k[i];
        memcpy(k, tmp, n * sizeof *k);
    }
}

/* rank[i]: position of tensor i by (layer, expert, canonical name). */
static qm_status make_rank(qm_cstate *c)
{
    const qm_model *m = c->model;
    size_t n = m->n;
    uint64_t *k = malloc((n + 1) * sizeof *k), *tmp = malloc((n + 1) * sizeof *tmp);
    if (!k || !tmp || n >= (1u << 24)) {
        free(k), free(tmp);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    int part[QM_PART_COUNT], order[QM_PART_COUNT];
    for (int p = 0; p < QM_PART_COUNT; p++)
        part[p] = p;
    qsort(part, QM_PART_COUNT, sizeof *part, cmp_part);
    for (int r = 0; r < QM_PART_COUNT; r++)
        order[part[r]] = r;
    /* key: layer + 1 (bits 47..), expert + 1 (bits 29..46), part order (24..28), index (0..23);
     * config.c caps layers at 4096 and experts at 2^16, so each fits */
    for (size_t i = 0; i < n; i++) {
        const qm_tensor *t = &m->t[i];
        k[i] = (uint64_t)(t->layer + 1) << 47 | (uint64_t)(t->expert + 1) << 29 | (uint64_t)order[t->part] << 24 | i;
    }
    radix_sort(k, tmp, n);
    for (size_t r = 0; r < n; r++)
        c->rank[k[r] & 0xffffff] = r;
    free(k);
    free(tmp);
    return QM_OK;
}

static qm_status hit(qm_cstate *c, size_t s, size_t i)
{
    if (!c->record)
        return QM_OK;
    size_t n = c->nhits[s];
    if ((n & (n - 1)) == 0) { /* grow at powers of two */
        size_t *p = realloc(c->hits[s], (n ? 2 * n : 1) * sizeof *p);
        if (!p)
            return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        c->hits[s] = p;
    }
    c->hits[s][c->nhits[s]++] = i;
    return QM_OK;
}

/* Apply rule s's actions to tensor i.  Returns 0, or 1 for an error (added
 * to d only while *errs < MAX_APPLY_ERRORS). */
static int apply(qm_cstate *c, size_t s, size_t i, size_t *errs)
{
    const qm_stmt *st = c->policy->stmt[s];
    const qm_actions *a = &st->u.rule.act;
    const qm_tensor *t = &c->model->t[i];
    qm_setting *x = &c->set[i];
    if (!qm_parts[t->part].linear)
        return 0; /* norms and biases are always kept */
    x->rule = (int)s;
    if (a->set & (QM_SETS(QM_FIELD_WIDTH) | QM_SETS(QM_FIELD_DELTA)))
        x->bits_rule = (int)s;
    if (a->set & QM_SETS(QM_FIELD_GROUP))
        x->group_rule = (int)s;
    if (a->set & QM_SETS(QM_FIELD_WIDTH))
        x->bits = a->bits;
    if (a->set & QM_SETS(QM_FIELD_DELTA)) {
        int b = x->bits + a->delta;
        if (x->bits <= 0 || !qm_is_width(b)) {
            if ((*errs)++ < MAX_APPLY_ERRORS) {
                if (x->bits < 0)
                    qm_source_diag(c->d, QM_SEV_ERROR, st->src, a->where[QM_FIELD_DELTA],
                                   "'%s' has no width yet to change by %+dbit", t->canon, a->delta);
                else if (x->bits == QM_KEEP)
                    qm_source_diag(c->d, QM_SEV_ERROR, st->src, a->where[QM_FIELD_DELTA],
                                   "'%s' is kept; %+dbit needs a width", t->canon, a->delta);
                else {
                    char w[64];
                    qm_source_diag(c->d, QM_SEV_ERROR, st->src, a->where[QM_FIELD_DELTA],
                                   "%+dbit makes '%s' %d bits; the widths are %s", a->delta, t->canon, b,
                                   qm_widths_text(w, sizeof w, "bit", " ", " "));
                }
            }
            return 1;
        }
        x->bits = b;
    }
    if (a->set & QM_SETS(QM_FIELD_GROUP))
        x->group = a->group;
    if (a->set & QM_SETS(QM_FIELD_SYM))
        x->sym = a->sym;
    if (a->set & QM_SETS(QM_FIELD_ACT_ORDER))
        x->act_order = a->act_order;
    return 0;
}

static qm_status arch_guard(qm_cstate *c)
{
    qm_family fam = c->model->arch->family;
    qm_status st = QM_OK;
    for (size_t s = 0; s < c->policy->n; s++) {
        const qm_stmt *x = c->policy->stmt[s];
        if (x->kind != QM_STMT_ARCH)
            continue;
        int ok = 0;
        for (size_t k = 0; k < x->u.arch.n; k++)
            ok |= x->u.arch.v[k].id == (int)fam;
        if (!ok)
            st = qm_source_diag(c->d, QM_SEV_ERROR, x->src, x->span,
                                "this policy is for other architectures; the model '%s' is %s (%s)", c->model->dir,
                                qm_family_name(fam), c->model->arch->name);
    }
    return st;
}

/* `engine NAME [fit]`: each NAME one of model/engine.h's; the engine to fit
 * to is --fit's, else the policy's (a note says when --fit overrides it). */
static qm_status engine_stmts(qm_cstate *c)
{
    qm_status st = QM_OK;
    c->fit = c->o->fit;
    c->fit_stmt = -1;
    for (size_t s = 0; s < c->policy->n; s++) {
        const qm_stmt *x = c->policy->stmt[s];
        if (x->kind != QM_STMT_ENGINE)
            continue;
        if (!qm_engine_find(x->u.engine.name)) {
            qm_buf names = {0};
            qm_engine_list(&names);
            st = qm_source_diag(c->d, QM_SEV_ERROR, x->src, x->u.engine.name_span,
                                "unknown engine '%s'; the engines are %s", x->u.engine.name, names.s ? names.s : "");
            free(names.s);
            continue;
        }
        if (!x->u.engine.fit)
            continue;
        if (c->o->fit && strcmp(c->o->fit, x->u.engine.name) != 0)
            qm_source_diag(c->d, QM_SEV_NOTE, x->src, x->span, "--fit %s fits the plan to %s instead", c->o->fit,
                           c->o->fit);
        if (!c->o->fit) {
            c->fit = x->u.engine.name;
            c->fit_stmt = (int)s;
        }
    }
    return st;
}

/* p->engines: the engines the policy names, each once, in source order. */
static int plan_engines(const qm_cstate *c, qm_plan *p)
{
    const qm_policy *pol = c->policy;
    p->engines = calloc(pol->n + 1, sizeof *p->engines);
    if (!p->engines)
        return -1;
    for (size_t s = 0; s < pol->n; s++) {
        const qm_stmt *x = pol->stmt[s];
        if (x->kind != QM_STMT_ENGINE)
            continue;
        size_t j = 0;
        while (j < p->nengines && strcmp(p->engines[j], x->u.engine.name) != 0)
            j++;
        if (j == p->nengines && !(p->engines[p->nengines++] = qm_arena_strdup(&p->strings, x->u.engine.name)))
            return -1;
    }
    return 0;
}

/* 1 when a rule's actions are exactly `keep`. */
static int only_keep(const qm_actions *a)
{
    return a->set == QM_SETS(QM_FIELD_WIDTH) && a->bits == QM_KEEP;
}

/* What one selector of rule x names (count tensors, linears of them), each
 * selector on its own so that none is silent: one that matches nothing
 * (and is not written `path?`) warns at its own place (an error under --strict; a rule of one selector
 * says so as the rule, below), and one that names only weights qmoe never
 * quantizes (embeddings, the shared gate, norms, biases) is an error unless
 * the rule only keeps them: setting them would do nothing.  Returns 1 when
 * an error was added. */
static int check_selector(qm_cstate *c, const qm_stmt *x, const qm_selector *sel, size_t count, size_t linears)
{
    if (!count) {
        if (x->u.rule.nsel == 1 || sel->optional)
            return 0;
        qm_source_diag(c->d, c->o->strict ? QM_SEV_ERROR : QM_SEV_WARNING, x->src, sel->span,
                       "selector '%.*s' matches nothing in this model (%s)", (int)(sel->span.end - sel->span.begin),
                       x->src->text + sel->span.begin, c->model->arch->name);
        return c->o->strict;
    }
    if (linears || only_keep(&x->u.rule.act))
        return 0;
    qm_source_diag(c->d, QM_SEV_ERROR, x->src, sel->span,
                   "'%.*s' names only weights qmoe does not quantize (token embeddings, the shared expert's gate, "
                   "norms and biases are always kept); this rule may only `keep` them",
                   (int)(sel->span.end - sel->span.begin), x->src->text + sel->span.begin);
    return 1;
}

/* Every rule in order; then the budget. */
qm_status qm_c_run(qm_cstate *c)
{
    qm_model *m = c->model;
    qm_policy *p = c->policy;
    size_t n = m->n;
    qm_status st = arch_guard(c);
    if (st == QM_OK)
        st = engine_stmts(c);
    if (st != QM_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        c->set[i] = (qm_setting){-1, -1, -1, -1, -1, -1, -1};
    size_t errors0 = qm_diag_errors(c->d);
    int budget = -1;
    /* defaults first */
    for (size_t s = 0; s < p->n; s++) {
        if (p->stmt[s]->kind != QM_STMT_DEFAULT)
            continue;
        size_t errs = 0;
        for (size_t i = 0; i < n; i++)
            if (qm_c_broad(m->t[i].part)) {
                apply(c, s, i, &errs);
                if ((st = hit(c, s, i)) != QM_OK)
                    return st;
            }
    }
    for (size_t s = 0; s < p->n; s++) {
        const qm_stmt *x = p->stmt[s];
        if (x->kind == QM_STMT_BUDGET)
            budget = (int)s;
        if (x->kind != QM_STMT_RULE)
            continue;
        memset(c->mask, 0, n);
        unsigned char *one = malloc(n + 1);
        if (!one)
            return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        int bad = 0;
        for (size_t k = 0; k < x->u.rule.nsel; k++) {
            const qm_selector *sel = &x->u.rule.sel[k];
            if (qm_c_resolve(c, x->src, sel, one) != QM_OK) {
                bad = 1;
                continue;
            }
            size_t count = 0, linears = 0;
            for (size_t i = 0; i < n; i++) {
                c->mask[i] |= one[i];
                count += one[i];
                linears += one[i] && qm_parts[m->t[i].part].linear;
            }
            bad |= check_selector(c, x, sel, count, linears);
        }
        free(one);
        if (bad)
            continue;
        size_t matched = 0, errs = 0;
        for (size_t i = 0; i < n; i++)
            if (c->mask[i]) {
                matched++;
                apply(c, s, i, &errs);
                if ((st = hit(c, s, i)) != QM_OK)
                    return st;
            }
        if (errs > MAX_APPLY_ERRORS)
            qm_source_diag(c->d, QM_SEV_NOTE, x->src, x->span, "and %zu more weights like these", errs - MAX_APPLY_ERRORS);
        if (!matched && x->u.rule.nsel == 1 && !x->u.rule.sel[0].optional)
            qm_source_diag(c->d, c->o->strict ? QM_SEV_ERROR : QM_SEV_WARNING, x->src, x->span,
                           "rule matches nothing in this model (%s)", m->arch->name);
    }
    if (qm_diag_errors(c->d) > errors0)
        return QM_EFORMAT;

    /* what no rule decided */
    size_t nowidth = 0;
    for (size_t i = 0; i < n; i++) {
        qm_setting *x = &c->set[i];
        const qm_tensor *t = &m->t[i];
        if (!qm_parts[t->part].linear || (x->bits < 0 && !qm_c_broad(t->part))) {
            x->bits = QM_KEEP;
        } else if (x->bits < 0 && nowidth++ < MAX_APPLY_ERRORS) {
            qm_diag_fail(c->d, QM_EFORMAT, "%s: '%s' has no width: no rule gives it one (add a `default`)",
                         p->src->path, t->canon);
        }
    }
    if (nowidth > MAX_APPLY_ERRORS)
        qm_diag_fail(c->d, QM_EFORMAT, "%s: and %zu more weights with no width", p->src->path,
                     nowidth - MAX_APPLY_ERRORS);
    if (nowidth)
        return QM_EFORMAT;
    if (budget >= 0) {
        c->budget_stmt = budget;
        if ((st = qm_c_budget(c, budget, &c->budget_achieved)) != QM_OK)
            return st;
        c->has_budget = 1;
        c->budget_target = p->stmt[budget]->u.budget.bits;
    }

    for (size_t i = 0; i < n; i++) {
        qm_setting *x = &c->set[i];
        if (x->bits == QM_KEEP)
            continue;
        if (x->group < 0)
            x->group = qm_plan_default_group(m->t[i].shape[1]);
        if (x->sym < 0)
            x->sym = 1;
        if (x->act_order < 0)
            x->act_order = 0;
    }
    if (c->fit && (st = qm_c_fit(c)) != QM_OK)
        return st;

    /* settings each weight must be able to take */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        qm_setting *x = &c->set[i];
        const qm_tensor *t = &m->t[i];
        if (x->bits == QM_KEEP)
            continue;
        uint64_t out = t->shape[0], in = t->shape[1];
        const qm_stmt *r = x->group_rule >= 0 ? p->stmt[x->group_rule] : NULL;
        if (x->group > 0 && in % (uint64_t)x->group != 0) {
            if (bad++ < MAX_APPLY_ERRORS && r)
                qm_source_diag(c->d, QM_SEV_ERROR, r->src, r->span,
                               "group %lld does not divide the %llu input columns of '%s' (shape [%llu, %llu])",
                               x->group, (unsigned long long)in, t->canon, (unsigned long long)out,
                               (unsigned long long)in);
            else if (bad <= MAX_APPLY_ERRORS)
                qm_diag_fail(c->d, QM_EFORMAT,
                             "%s: group %lld does not divide the %llu input columns of '%s' (shape [%llu, %llu])",
                             p->src->path, x->group, (unsigned long long)in, t->canon, (unsigned long long)out,
                             (unsigned long long)in);
        } else if ((in * (uint64_t)x->bits) % 32 || (out * (uint64_t)x->bits) % 32) {
            r = x->bits_rule >= 0 ? p->stmt[x->bits_rule] : NULL;
            if (bad++ < MAX_APPLY_ERRORS && r)
                qm_source_diag(c->d, QM_SEV_ERROR, r->src, r->span,
                               "'%s' (shape [%llu, %llu]) cannot be packed at %d bits: in x bits and out x bits "
                               "must be multiples of 32",
                               t->canon, (unsigned long long)out, (unsigned long long)in, x->bits);
        }
    }
    if (bad > MAX_APPLY_ERRORS)
        qm_diag_fail(c->d, QM_EFORMAT, "%s: and %zu more weights that cannot take their settings", p->src->path,
                     bad - MAX_APPLY_ERRORS);
    return bad ? QM_EFORMAT : QM_OK;
}

/* Parse, expand, open the model, read scores, set up the state. */
static qm_status start(qm_cstate *c, const qm_compile_opts *o, qm_diag *d, int record)
{
    memset(c, 0, sizeof *c);
    c->o = o;
    c->d = d;
    c->record = record;
    qm_status st = qm_policy_parse_file(o->policy, &c->policy, d);
    if (st != QM_OK)
        return st;
    qm_search s = {.dirs = o->dirs, .n_dirs = o->n_dirs};
    if ((st = qm_policy_expand(c->policy, &s, d)) != QM_OK)
        return st;
    for (size_t k = 0; o->output && k < c->policy->nimports; k++)
        if ((st = qm_path_check_output("-o", o->output, 0,
                                       &(qm_path_input){c->policy->imports[k]->path, "a file the policy imports"}, 1,
                                       d)) != QM_OK)
            return st;
    if ((st = qm_model_open(o->model, &c->model, d)) != QM_OK)
        return st;
    qm_model *m = c->model;
    size_t n = m->n, L = (size_t)m->cfg.layers;
    c->moe_index = malloc((L + 1) * sizeof *c->moe_index);
    c->moe_layer = malloc((L + 1) * sizeof *c->moe_layer);
    c->set = malloc((n + 1) * sizeof *c->set);
    c->mask = malloc(n + 1);
    c->rank = malloc((n + 1) * sizeof *c->rank);
    c->outlier_w = malloc((n + 1) * sizeof *c->outlier_w);
    c->outlier_done = calloc(n + 1, 1);
    c->hits = calloc(c->policy->n + 1, sizeof *c->hits);
    c->nhits = calloc(c->policy->n + 1, sizeof *c->nhits);
    if (!c->moe_index || !c->moe_layer || !c->set || !c->mask || !c->rank || !c->outlier_w || !c->outlier_done ||
        !c->hits || !c->nhits)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        c->outlier_w[i] = NAN;
    long long k = 0;
    for (size_t l = 0; l < L; l++) {
        c->moe_index[l] = m->is_moe[l] ? k : -1;
        if (m->is_moe[l])
            c->moe_layer[k++] = (long long)l;
    }
    if ((st = make_rank(c)) != QM_OK)
        return st;
    if ((st = qm_c_scores_read(c, o->scores)) != QM_OK)
        return st;
    return qm_c_measure_read(c, o->measure);
}

/* "file:line" of statement s, or "default" for s < 0; caller frees.  The
 * file is its path as given (for people: explain) or, by_name, its name
 * (qm_source: for plans, whose bytes must not depend on how a path was
 * spelled). */
static char *rule_text(const qm_cstate *c, int s, int by_name)
{
    if (s < 0)
        return qm_strdup("default");
    const qm_stmt *x = c->policy->stmt[s];
    size_t line, col;
    qm_source_linecol(x->src, x->span.begin, &line, &col);
    return qm_strfmt("%s:%zu", by_name ? x->src->name : x->src->path, line);
}

/* The file name of a path ("s.yaml" for "../run/s.yaml"). */
static const char *file_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* The plan's tensors, PLAN_RANGE a task on all cores.  Names and modules
 * are the model's (the plan takes the model over): copying 74k of them
 * was a visible part of a 235B-scale compile. */
enum { PLAN_RANGE = 4096 };
typedef struct plan_jobs {
    const qm_cstate *c;
    qm_plan *p;
    char **rules; /* (statements + 1) "file:line", [0] "default" */
    char *fit;    /* "fit NAME" for what --fit changed, or NULL */
} plan_jobs;

static void plan_range(void *ctx, size_t i, size_t end, int worker)
{
    plan_jobs *j = ctx;
    const qm_model *m = j->c->model;
    for (; i < end; i++) {
        const qm_tensor *t = &m->t[i];
        const qm_setting *x = &j->c->set[i];
        qm_plan_tensor *pt = &j->p->t[i];
        pt->name = (char *)t->st->name;
        pt->module = t->canon;
        pt->rule = j->rules[(x->bits == QM_KEEP && !qm_c_broad(t->part) && x->rule < 0 ? -1 : x->rule) + 1];
        if (j->c->fitted && j->c->fitted[i])
            pt->rule = j->fit;
        pt->ndim = t->ndim;
        pt->shape[0] = t->shape[0];
        pt->shape[1] = t->shape[1];
        pt->dtype = t->st->dtype;
        pt->bits = x->bits;
        pt->group = x->bits ? (int)x->group : 0;
        pt->sym = x->bits ? x->sym : 0;
        pt->act_order = x->bits ? x->act_order : 0;
    }
}

static void close_model(void *m);

const qm_model *qm_compiled_model(const qm_plan *p)
{
    return p && p->owner_free == close_model ? p->owner : NULL;
}

static void close_model(void *m)
{
    qm_model_close(m);
}

/* p->imports: each imported file once by name, with the sha256 of the
 * bytes compiled (the policy's own hash is its file's, as before). */
static int plan_imports(const qm_cstate *c, qm_plan *p)
{
    const qm_policy *pol = c->policy;
    p->imports = calloc(pol->nimports + 1, sizeof *p->imports);
    if (!p->imports)
        return -1;
    for (size_t k = 0; k < pol->nimports; k++) {
        const qm_source *src = pol->imports[k];
        size_t j = 0;
        while (j < p->nimports && strcmp(p->imports[j].name, src->name) != 0)
            j++;
        if (j < p->nimports)
            continue;
        qm_sha256 h;
        char hex[65];
        qm_sha256_init(&h);
        qm_sha256_update(&h, src->text, src->len);
        qm_sha256_hex(&h, hex);
        qm_plan_import *x = &p->imports[p->nimports++];
        if (!(x->name = qm_arena_strdup(&p->strings, src->name)) || !(x->sha256 = qm_arena_strdup(&p->strings, hex)))
            return -1;
    }
    return 0;
}

static qm_status make_plan(qm_cstate *c, qm_plan **out)
{
    qm_model *m = c->model;
    qm_plan *p = calloc(1, sizeof *p);
    char pol[65], cfg[65], sc[65];
    qm_status st;
    if (!p)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    if ((st = qm_sha256_file(c->o->policy, pol, c->d)) != QM_OK ||
        (st = qm_sha256_file(m->config_path, cfg, c->d)) != QM_OK ||
        (c->o->scores && (st = qm_sha256_file(c->o->scores, sc, c->d)) != QM_OK)) {
        qm_plan_free(p);
        return st;
    }
    qm_arena *a = &p->strings;
    p->policy_path = qm_arena_strdup(a, c->policy->src->name);
    p->policy_sha256 = qm_arena_strdup(a, pol);
    p->arch = qm_arena_strdup(a, m->arch->name);
    p->config_sha256 = qm_arena_strdup(a, cfg);
    if (c->o->scores) {
        p->scores_path = qm_arena_strdup(a, file_name(c->o->scores));
        p->scores_sha256 = qm_arena_strdup(a, sc);
    }
    p->t = calloc(m->n + 1, sizeof *p->t);
    /* "file:line" of each statement once, shared by the tensors it decided
     * (rules[s + 1]; rules[0] is "default") */
    size_t ns = c->policy->n;
    char **rules = calloc(ns + 1, sizeof *rules);
    int oom = !p->policy_path || !p->policy_sha256 || !p->arch || !p->config_sha256 || !p->t || !rules ||
              plan_imports(c, p) != 0 || plan_engines(c, p) != 0 ||
              (c->o->scores && (!p->scores_path || !p->scores_sha256));
    for (size_t s = 0; !oom && s <= ns; s++) {
        char *r = rule_text(c, (int)s - 1, 1);
        oom = !r || !(rules[s] = qm_arena_strdup(a, r));
        free(r);
    }
    char *fit = c->fit ? qm_strfmt("fit %s", c->fit) : NULL;
    char *fit_rule = fit ? qm_arena_strdup(a, fit) : NULL;
    free(fit);
    oom |= c->fit && !fit_rule;
    if (!oom) {
        plan_jobs j = {c, p, rules, fit_rule};
        qm_parallel_ranges(qm_cpus(), m->n, PLAN_RANGE, plan_range, &j);
        p->n = m->n;
        p->owner = c->model;
        p->owner_free = close_model;
        c->model = NULL;
    }
    free(rules);
    if (oom) {
        qm_plan_free(p);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    p->summary.has_budget = c->has_budget;
    p->summary.budget_target_bits = c->budget_target;
    p->summary.budget_achieved_bits = c->budget_achieved;
    p->summary.has_predicted = c->has_predicted;
    p->summary.predicted_error = c->predicted_error;
    qm_plan_summarize(p);
    *out = p;
    return QM_OK;
}

qm_status qm_compile(const qm_compile_opts *o, qm_plan **out, qm_diag *d)
{
    qm_cstate c;
    *out = NULL;
    qm_status st = start(&c, o, d, 0);
    if (st == QM_OK)
        st = qm_c_run(&c);
    if (st == QM_OK)
        st = make_plan(&c, out);
    qm_cstate_free(&c);
    return st;
}

/* ---- explain --------------------------------------------------------------------- */

qm_status qm_c_start(qm_cstate *c, const qm_compile_opts *o, qm_diag *d, int record)
{
    return start(c, o, d, record);
}

char *qm_c_rule_text(const qm_cstate *c, int s)
{
    return rule_text(c, s, 0);
}
