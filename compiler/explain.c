/* explain.c: `qmoe explain`: which rules touched a weight, in order, with
 * the score and rank behind each data-driven pick, and its final setting.  It compiles with hit recording on (compile.c keeps, for
 * each statement, the tensors it touched, ascending) and walks the
 * statements in the order they apply: defaults, rules, then the budget. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/engine.h"

static int touched(const qm_cstate *c, size_t s, size_t i)
{
    const size_t *h = c->hits[s];
    size_t lo = 0, hi = c->nhits[s];
    if (c->policy->stmt[s]->kind == QM_STMT_BUDGET) { /* budget hits are not sorted */
        for (size_t k = 0; k < hi; k++)
            if (h[k] == i)
                return 1;
        return 0;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (h[mid] == i)
            return 1;
        if (h[mid] < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* The statement's text on one line. */
static void print_stmt(FILE *f, const qm_stmt *x)
{
    for (size_t b = x->span.begin; b < x->span.end; b++) {
        char ch = x->src->text[b];
        fputc(ch == '\n' || ch == '\t' || ch == '\r' ? ' ' : ch, f);
    }
}

static void print_setting(FILE *f, const qm_setting *x)
{
    if (x->bits == QM_KEEP) {
        fputs("keep", f);
        return;
    }
    fprintf(f, "%dbit", x->bits);
    if (x->group == 0)
        fputs(" group none", f);
    else
        fprintf(f, " group %lld", x->group);
    fprintf(f, " %s %s", x->sym ? "sym" : "asym", x->act_order ? "act_order" : "no_act_order");
}

static void print_rule(FILE *f, const qm_cstate *c, size_t s)
{
    char *where = qm_c_rule_text(c, (int)s);
    fprintf(f, "  %s: ", where ? where : "?");
    print_stmt(f, c->policy->stmt[s]);
    fputc('\n', f);
    free(where);
}

/* The score by which the budget moved tensor i's unit. */
static void print_budget_score(FILE *f, qm_cstate *c, const qm_stmt *x, size_t i)
{
    (void)x;
    qm_scorer by = qm_c_budget_scorer(c, c->budget_stmt);
    if (by == QM_SCORER_MEASURED) {
        qm_c_measured_explain(f, c, i);
        return;
    }
    double v = qm_c_budget_score(c, by, i);
    if (isnan(v))
        fprintf(f, "    %s: no score (moved in tie-rank order)\n", qm_scorer_name(by));
    else
        fprintf(f, "    %s %.6g\n", qm_scorer_name(by), v);
}

/* What fitting did to tensor i (c->fitted, fit.c): the setting before and
 * after, and why: the engine's constraint that last changed it (what the
 * engine does and where that was read), or the budget solved again. */
static void print_fit(FILE *f, qm_cstate *c, size_t i)
{
    const qm_engine *e = qm_engine_find(c->fit);
    if (c->fit_stmt >= 0) {
        char *where = qm_c_rule_text(c, c->fit_stmt);
        fprintf(f, "  %s: ", where ? where : "?");
        print_stmt(f, c->policy->stmt[c->fit_stmt]);
        free(where);
    } else {
        fprintf(f, "  --fit %s", c->fit);
    }
    fputs(": ", f);
    print_setting(f, &c->prefit[i]);
    fputs(" -> ", f);
    print_setting(f, &c->set[i]);
    fputc('\n', f);
    const qm_setting *was = &c->prefit[i], *now = &c->set[i];
    int width = was->bits != now->bits;
    int scheme = was->group != now->group || was->sym != now->sym || was->act_order != now->act_order;
    unsigned because[2] = {width ? c->fit_why[i].width : 0u, scheme ? c->fit_why[i].scheme : 0u};
    for (int k = 0; k < 2; k++) {
        if (because[k] == QM_FIT_BUDGET && !c->has_budget) {
            fprintf(f, "    the rules' average kept over the units %s serves at one width\n", c->fit);
        } else if (because[k] == QM_FIT_BUDGET) {
            qm_scorer by = qm_c_budget_scorer(c, c->budget_stmt);
            double v = qm_c_budget_score(c, by, i);
            fprintf(f, "    the budget solved again over the units %s serves at one width", c->fit);
            if (isnan(v))
                fprintf(f, "; %s: no score (moved in tie-rank order)\n", qm_scorer_name(by));
            else
                fprintf(f, "; %s %.6g\n", qm_scorer_name(by), v);
        } else if (e && because[k] >= 1 && because[k] <= e->n_rules && (k == 0 || because[1] != because[0])) {
            const qm_eng_rule *r = &e->rules[because[k] - 1];
            fprintf(f, "    %s: %s (%s %s: %s)\n", e->name, r->does, e->name, e->version, r->source);
        }
    }
}

/* The score and place behind each data-driven bracket of rule s's
 * selectors that picked tensor i: each such selector is resolved again with
 * c->why asking about i; for the budget, the score it moved i's unit by.
 * scratch: (model->n) bytes. */
static qm_status print_why(FILE *f, qm_cstate *c, size_t s, size_t i, unsigned char *scratch)
{
    const qm_stmt *x = c->policy->stmt[s];
    if (x->kind == QM_STMT_BUDGET)
        print_budget_score(f, c, x, i);
    if (x->kind != QM_STMT_RULE)
        return QM_OK;
    for (size_t k = 0; k < x->u.rule.nsel; k++) {
        const qm_selector *sel = &x->u.rule.sel[k];
        int driven = 0;
        driven |= sel->scope_index && sel->scope_index->kind != QM_INDEX_LIST;
        for (size_t g = 0; g < sel->nseg; g++)
            driven |= sel->seg[g].index && sel->seg[g].index->kind != QM_INDEX_LIST;
        if (!driven)
            continue;
        qm_why w = {.tensor = i};
        c->why = &w;
        qm_status st = qm_c_resolve(c, x->src, sel, scratch);
        c->why = NULL;
        if (st != QM_OK)
            return st;
        if (!scratch[i])
            continue; /* picked, so every bracket had a score for it (NANs are never picked) */
        for (size_t e = 0; e < w.n; e++) {
            const qm_index *ix = w.pick[e].ix;
            int pick = ix->kind == QM_INDEX_PICK;
            qm_scorer by = pick ? ix->u.pick.scorer : ix->u.threshold.scorer;
            fprintf(f, "    %.*s ", (int)(ix->span.end - ix->span.begin), x->src->text + ix->span.begin);
            if (pick && ix->u.pick.how == QM_PICK_RANDOM) {
                fputs("drawn at random\n", f);
                continue;
            }
            fprintf(f, "%s %.6g, rank %zu of %zu", qm_scorer_name(by), w.pick[e].v, w.pick[e].rank, w.pick[e].of);
            if (w.pick[e].layer >= 0)
                fprintf(f, " in layer %lld", w.pick[e].layer);
            fputs(pick && ix->u.pick.how == QM_PICK_BOTTOM ? " (lowest first)\n" : " (highest first)\n", f);
        }
    }
    return QM_OK;
}

qm_status qm_compile_explain(const qm_compile_opts *o, const char *selector, FILE *f, qm_diag *d)
{
    qm_cstate c;
    qm_policy *sp = NULL;
    unsigned char *scratch = NULL; /* selectors resolved again for print_why() */
    qm_status st = qm_c_start(&c, o, d, 1);
    if (st == QM_OK)
        st = qm_c_run(&c);
    if (st != QM_OK)
        goto out;
    char *text = qm_strfmt("%s: keep", selector);
    if (!text) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto out;
    }
    st = qm_policy_parse("<selector>", text, strlen(text), &sp, d);
    free(text);
    if (st != QM_OK)
        goto out;
    if (sp->n != 1 || sp->stmt[0]->kind != QM_STMT_RULE || sp->stmt[0]->u.rule.nsel != 1) {
        st = qm_diag_fail(d, QM_EINVAL, "'%s' is not one selector", selector);
        goto out;
    }
    if ((st = qm_c_resolve(&c, sp->stmt[0]->src, &sp->stmt[0]->u.rule.sel[0], c.mask)) != QM_OK)
        goto out;
    size_t shown = 0;
    scratch = malloc(c.model->n + 1);
    if (!scratch) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c.model->n && st == QM_OK; i++) {
        if (!c.mask[i])
            continue;
        const qm_tensor *t = &c.model->t[i];
        if (shown++)
            fputc('\n', f);
        fprintf(f, "%s  (%s", t->canon, t->st->name);
        if (t->ndim == 2)
            fprintf(f, ", [%llu, %llu]", (unsigned long long)t->shape[0], (unsigned long long)t->shape[1]);
        fputs(")\n", f);
        int any = 0;
        for (int pass = 0; pass < 3; pass++)
            for (size_t s = 0; s < c.policy->n; s++) {
                qm_stmt_kind k = c.policy->stmt[s]->kind;
                if ((pass == 0 && k != QM_STMT_DEFAULT) || (pass == 1 && k != QM_STMT_RULE) ||
                    (pass == 2 && k != QM_STMT_BUDGET) || !touched(&c, s, i))
                    continue;
                print_rule(f, &c, s);
                if ((st = print_why(f, &c, s, i, scratch)) != QM_OK)
                    goto out;
                any = 1;
            }
        if (c.fitted && c.fitted[i]) {
            print_fit(f, &c, i);
            any = 1;
        }
        if (!any)
            fputs(qm_parts[t->part].linear ? "  no rule: kept (not quantized unless a rule names its module)\n"
                                           : "  no rule: kept (norms and biases are always kept)\n",
                  f);
        fputs("  final: ", f);
        print_setting(f, &c.set[i]);
        fputc('\n', f);
    }
    if (!shown)
        st = qm_diag_fail(d, QM_ENOTFOUND, "selector '%s' matches nothing in %s", selector, o->model);
out:
    free(scratch);
    qm_policy_free(sp);
    qm_cstate_free(&c);
    return st;
}
