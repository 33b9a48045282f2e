/* fit.c: `qmoe compile --fit NAME`: the plan nearest to what the policy
 * asks that engine NAME serves.
 *
 * After the rules and the budget, the settings of every quantized linear
 * go to the engine's fitter (model/engine.h, qm_engine_fit(), which says
 * exactly what each kind of change is); what it changes is attributed to
 * "fit NAME" in the plan, and a note says how many linears changed and the
 * average it leaves beside the budget's target.  A policy no plan can fit
 * (an architecture the engine does not run) is an error saying why.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/engine.h"

qm_status qm_c_fit(qm_cstate *c)
{
    const qm_model *m = c->model;
    const qm_engine *e = qm_engine_find(c->o->fit);
    if (!e) {
        qm_buf names = {0};
        qm_engine_list(&names);
        qm_status st = qm_diag_fail(c->d, QM_EINVAL, "--fit '%s': not an engine (%s)", c->o->fit,
                                    names.s ? names.s : "");
        free(names.s);
        return st;
    }
    qm_plan_tensor *t = calloc(m->n + 1, sizeof *t);
    c->fitted = calloc(m->n + 1, 1);
    if (!t || !c->fitted) {
        free(t);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < m->n; i++) {
        const qm_setting *x = &c->set[i];
        t[i] = (qm_plan_tensor){.bits = x->bits, .group = (int)x->group, .sym = x->sym, .act_order = x->act_order};
    }
    qm_status st = qm_engine_fit(e, m, t, c->fitted, c->d);
    size_t changed = 0;
    double bits = 0, params = 0;
    for (size_t i = 0; st == QM_OK && i < m->n; i++) {
        qm_setting *x = &c->set[i];
        if (c->fitted[i]) {
            changed++;
            x->bits = t[i].bits;
            x->group = t[i].group;
            x->sym = t[i].sym;
            x->act_order = t[i].act_order;
        }
        if (x->bits > 0) {
            bits += (double)x->bits * (double)m->t[i].numel;
            params += (double)m->t[i].numel;
        }
    }
    free(t);
    if (st == QM_OK) {
        double avg = params > 0 ? bits / params : 0;
        if (c->has_budget)
            qm_diag_note(c->d, "fit %s: %zu linear%s changed; average %.3f bits against the budget's %.3f", e->name,
                         changed, changed == 1 ? "" : "s", avg, c->budget_target);
        else
            qm_diag_note(c->d, "fit %s: %zu linear%s changed; average %.3f bits", e->name, changed,
                         changed == 1 ? "" : "s", avg);
        if (c->has_budget)
            c->budget_achieved = avg;
    }
    return st;
}
