/* compiler.h: the policy compiler: policy AST + model metadata + scores -> bit plan.
 *
 * The second stage of the pipeline (lang -> compiler -> runtime).  It reads
 * a policy (lang/), matches its selectors against a model's inventory
 * (model/model.h), resolves data-driven selections from a scores file,
 * applies the rules in source order as qmoe-policy(5) says, meets a
 * `budget`, and fills a qm_plan (model/plan.h) that the runtime reads.
 *
 *   qm_compile()          the plan, or errors in d
 *   qm_compile_explain()  every rule that touched the weights a selector names
 */
#ifndef QM_COMPILER_H
#define QM_COMPILER_H

#include <stdio.h>

#include "base/base.h"
#include "model/model.h"
#include "model/plan.h"

/* What to compile.  Strings are borrowed for the call. */
typedef struct qm_compile_opts {
    const char *policy;             /* path of the policy file */
    const char *model;              /* model directory (config.json + safetensors) */
    const char *scores;             /* scores YAML (qmoe(1)); NULL when none */
    const char *measure;            /* measure YAML from `qmoe measure` (qmoe(1)); NULL when none */
    const char *const *dirs;        /* (n_dirs) -I directories for imports */
    size_t n_dirs;
    int strict;                     /* a rule matching nothing is an error */
    /* Where the plan will be written, checked against every file the
     * policy imports as soon as they are known (qm_path_check_output());
     * NULL: not checked.  The caller checks the policy, model and scores. */
    const char *output;
    /* A serving engine (model/engine.h) to fit the plan to after the rules
     * and the budget (qm_engine_fit()); NULL: none. */
    const char *fit;
} qm_compile_opts;

/* Compile o->policy for o->model.  On success *out is the plan (caller
 * frees with qm_plan_free()) and the result is QM_OK; warnings may be in d.
 * On failure *out is NULL, the errors are in d and the result is the first
 * failure's status (QM_EFORMAT for mistakes in the policy).  Diagnostics
 * about a place in the policy carry it as their location
 * (qm_diag_location()). */
qm_status qm_compile(const qm_compile_opts *o, qm_plan **out, qm_diag *d);

/* The model a plan from qm_compile() was compiled against, which the plan
 * keeps open (its names are borrowed from it); NULL for any other plan. */
const qm_model *qm_compiled_model(const qm_plan *p);

/* Compile as qm_compile() does, then write to f, for each weight the
 * selector text `selector` names (a selector of qmoe-policy(5), e.g.
 * "layers[1].experts[0].down"), every rule that touched it in order with the
 * fields it set, and the final setting.  A selector matching nothing is an
 * error. */
qm_status qm_compile_explain(const qm_compile_opts *o, const char *selector, FILE *f, qm_diag *d);

#endif
