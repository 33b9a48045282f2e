/* internal.h: the compiler's private state, shared by its files.
 *
 *   resolve.c  a selector -> the set of model tensors it names
 *   select.c   data-driven picks (top/bottom/random/threshold) inside a selector
 *   scores.c   the scores file; outlier scores computed from weights
 *   budget.c   `budget X bits`: the greedy allocation
 *   measured.c the measure file, the scorer `measured` and its knapsack budget (knapsack.c)
 *   compile.c  the rules in order -> settings -> qm_plan
 *   explain.c  `qmoe explain`
 */
#ifndef QM_COMPILER_INTERNAL_H
#define QM_COMPILER_INTERNAL_H

#include "compiler/compiler.h"
#include "lang/ast.h"
#include "model/engine.h"
#include "model/model.h"

/* Scores as the compiler ranks them (higher = more deserving of bits). */
typedef struct qm_cscores {
    const char *path;     /* NULL when no file was given */
    long long layers, experts;
    double *freq;         /* (layers, experts) share of the layer's choices; NAN when absent */
    int has_freq;
    double *imp_ffn;      /* (layers) 1 - mean cosine; NAN for dense layers or absent */
    double *imp_residual; /* (layers) */
    int has_imp;
    int has_outlier;      /* the file's scores are in qm_cstate.outlier_w */
} qm_cscores;

/* The measure file as the compiler ranks and budgets by it (measured.c). */
typedef struct qm_cmeasure qm_cmeasure;

/* One tensor's settings while rules apply: -1 = not set. */
typedef struct qm_setting {
    int bits;         /* 2,3,4,8, QM_KEEP (0), or -1 */
    long long group;  /* -1, 0 (per channel) or columns */
    int sym, act_order;
    int rule;         /* index of the last statement that touched it, -1 none */
    int bits_rule, group_rule; /* the statements that set the width and the group */
} qm_setting;

/* Why a data-driven bracket picked the unit holding one tensor (explain):
 * filled by qm_c_resolve() while qm_cstate.why is set, one entry per
 * data-driven bracket of the selector, in the order they apply. */
enum { QM_WHY_MAX = 3 };
typedef struct qm_why {
    size_t tensor;        /* the tensor asked about */
    size_t n;
    struct {
        const qm_index *ix;
        double v;         /* the unit's score; NAN when the scores lack it or the pick is random */
        size_t rank, of;  /* 1-based place among the scored candidates (of them), in the
                           * bracket's order: highest first, lowest first for bottom */
        long long layer;  /* the layer ranked within, for `per layer`; -1 otherwise */
    } pick[QM_WHY_MAX];
} qm_why;

/* A compilation.  Owned by qm_compile(); freed at once by qm_cstate_free(). */
typedef struct qm_cstate {
    const qm_compile_opts *o;
    qm_policy *policy;
    qm_model *model;
    qm_cscores sc;
    long long *moe_index;  /* (layers) MoE block number of a layer, -1 for dense */
    long long *moe_layer;  /* (n_moe) layer of each MoE block */
    qm_setting *set;       /* (model->n) */
    unsigned char *mask;   /* (model->n) scratch: the tensors a selector names */
    size_t **hits;         /* (policy->n) tensors each statement touched, NULL none */
    size_t *nhits;         /* (policy->n) */
    int record;            /* fill hits (for explain) */
    double *outlier_w;     /* (model->n) outlier scores computed from weights */
    unsigned char *outlier_done; /* (model->n) */
    qm_status outlier_st;  /* sticky: the first failure computing one (its diagnostic is in d) */
    /* Fitting to an engine: --fit, else the policy's `engine NAME fit`. */
    const char *fit;       /* the engine's name; NULL: no fitting */
    int fit_stmt;          /* the policy's `engine NAME fit`, -1 when none or --fit */
    /* (model->n) each; NULL without fitting */
    unsigned char *fitted; /* 1 where fitting changed the setting */
    qm_setting *prefit;    /* the settings before fitting */
    qm_engine_why *fit_why; /* what last changed each width (an engine rule as qm_engine_fit()
                             * says, or QM_FIT_BUDGET: the budget solved again) and scheme */
    size_t *rank;          /* (model->n) tie rank: layer, expert, canonical name */
    int has_budget;        /* the policy has a budget; qm_c_run() met it */
    int budget_stmt;       /* its statement */
    double budget_target, budget_achieved; /* bits, as in the plan's summary */
    qm_why *why;           /* explain's question while it re-resolves a selector; NULL else */
    qm_cmeasure *ms;       /* the measure file (--measure); NULL when none */
    int has_predicted;     /* a budget by measured ran: predicted_error is its total */
    double predicted_error;
    qm_diag *d;
} qm_cstate;

/* 1 when part p is a quantizable weight a broad selector (layers[0], a
 * default) may quantize: attention, routed, shared and dense-MLP linears. */
int qm_c_broad(qm_part p);

/* Set mask[i] = 1 for every tensor `sel` names, 0 for the others.  Errors
 * (an index beyond the model, a scorer the scores lack) are reported at
 * src and counted; returns QM_OK or the failure. */
qm_status qm_c_resolve(qm_cstate *c, const qm_source *src, const qm_selector *sel,
                       unsigned char *mask);

/* Data-driven picks.  Units are numbered 0..n-1 with scores v[i] (NAN:
 * unknown) and `group[i]` (the layer, for `per layer`); key[i] orders ties
 * (rank[i], lower first).  Sets keep[i] to 1 for the units picked
 * (ties and NANs are handled as select.c says). */
void qm_c_pick(const qm_index *ix, size_t n, const double *v, const long long *group,
               const size_t *rank, unsigned char *keep);

/* A unit's score, NAN when the scores lack it. */
double qm_c_freq(const qm_cstate *c, int layer, int expert);
double qm_c_importance(const qm_cstate *c, qm_scorer s, int layer);
double qm_c_outlier(qm_cstate *c, size_t tensor);
/* 1 when the scorer has data for this model (an error is added otherwise). */
int qm_c_have(qm_cstate *c, qm_scorer s, const qm_source *src, qm_span at);

/* The measure file o->measure (NULL: none) into c->ms; freed with
 * qm_c_measure_free(). */
qm_status qm_c_measure_read(qm_cstate *c, const char *path);
void qm_c_measure_free(qm_cstate *c);
/* The format whose grid the measure file rated each width on: "gguf"
 * (measure --target gguf: ggml's blocks) or "gptq" (GPTQ's own grid, a
 * file without settings.target); NULL without a measure file. */
const char *qm_c_measure_target(const qm_cstate *c);
/* The measured score (error saved per bit and parameter by a first step
 * up) of linear `tensor` (>= 0), else of expert `expert` of `layer` (>= 0),
 * else of the layer's linears; NAN without a measure file or unit. */
double qm_c_measured(const qm_cstate *c, int layer, int expert, long tensor);
/* `budget B bits by measured` (statement s): the knapsack over the free
 * measured units, for engine constraints (fit.c) optionally with
 *   group (model->n, may be NULL): tensors with equal ids take one width
 *         (a unit takes its linears' id: the linears of one unit share it);
 *   allow (model->n, may be NULL): bit b set when width b is allowed for
 *         the tensor; a unit takes only widths all its linears allow;
 *   clamp: fitting: a target above what the allowed widths reach gives
 *         every unit its widest; one below gives the choice at the
 *         target's own exchange rate of error for bits (measured.c says
 *         why), instead of an error.
 * Sets c->set, c->predicted_error, *achieved and, when not NULL, reach[]
 * (the averages the free units give all at their narrowest and widest
 * allowed widths). */
qm_status qm_c_measured_budget(qm_cstate *c, int s, const size_t *group, const unsigned *allow, int clamp,
                               double *achieved, double reach[2]);
/* explain: tensor i's unit, its width, and the marginal error per bit
 * that decided it. */
void qm_c_measured_explain(FILE *f, const qm_cstate *c, size_t i);

/* Fitting: change c->set so that engine c->fit serves the plan, solve the
 * budget again over the widths and groups that engine allows, note what
 * changed and the average it leaves (fit.c). */
enum { QM_FIT_BUDGET = 0xff };
qm_status qm_c_fit(qm_cstate *c);

/* Read the scores file (o->scores) into c->sc; outlier scores absent from
 * it are computed from the weights when asked for. */
qm_status qm_c_scores_read(qm_cstate *c, const char *path);
void qm_c_scores_free(qm_cscores *s);

/* Apply the budget statement `st` to c->set. */
qm_status qm_c_budget(qm_cstate *c, int st, double *achieved);
/* The scorer budget statement st ranks by, and the score it gives the
 * unit holding routed-expert linear i (NAN: none); whole experts move as
 * one unit unless the scorer is outlier (qm_c_budget_whole). */
qm_scorer qm_c_budget_scorer(const qm_cstate *c, int st);
double qm_c_budget_score(qm_cstate *c, qm_scorer by, size_t i);
int qm_c_budget_whole(qm_scorer by);

/* Parse, expand, open, read scores (compile.c); then qm_c_run(). */
qm_status qm_c_start(qm_cstate *c, const qm_compile_opts *o, qm_diag *d, int record);
/* "file:line" of statement s, or "default" for s < 0; caller frees. */
char *qm_c_rule_text(const qm_cstate *c, int s);

/* Compile up to the final settings (everything but the plan). */
qm_status qm_c_run(qm_cstate *c);
void qm_cstate_free(qm_cstate *c);

#endif
