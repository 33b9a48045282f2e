/* knapsack.h: the multiple-choice knapsack `budget B bits by measured`
 * solves: units x widths, each choice costing width x params bits and
 * adding a measured error; the least total error whose bits fit a budget.
 *
 * Units may be fixed to one width (a rule set them) and may be grouped: the
 * units of one group take one width together (the engines' "one width for
 * a layer's experts" and fused groups, compiler/fit.c).  A group is solved
 * as one item with the summed params and errors.
 *
 * Exact by dynamic programming over the budget: every item's extra cost
 * over its cheapest width is a multiple of g, the greatest common divisor
 * of all of them, so a table over the budget in steps of g loses nothing.
 * When items x steps would exceed max_cells, the step is widened to G > g
 * and two tables are solved: costs rounded up (its solution fits the true
 * budget: the one returned) and rounded down (a relaxation: its optimum is
 * at most the true optimum), so `gap` = error(up) - optimum(down) bounds how
 * far the answer may be from the optimum; it is 0 when exact.  Ties go to
 * the narrower width, then to the earlier unit; the result does not depend
 * on anything but the inputs.
 */
#ifndef QM_KNAPSACK_H
#define QM_KNAPSACK_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

enum { QM_KS_MAX_WIDTHS = 8 };

typedef struct qm_ks_problem {
    size_t n;                /* units */
    const uint64_t *params;  /* (n) */
    int nw;                  /* widths, at most QM_KS_MAX_WIDTHS */
    const int *widths;       /* (nw) bits of each choice */
    const double *err;       /* (n, nw) error of unit i at width k; NAN: not allowed */
    const int *fixed;        /* (n) width index a rule fixed, -1 free; NULL: all free */
    const size_t *group;     /* (n) group of each unit (any ids; equal = one width); NULL: none */
    uint64_t capacity;       /* bits x params the units may use in all (fixed ones included) */
    size_t max_cells;        /* table limit, items x steps; 0: 1 << 26 */
} qm_ks_problem;

typedef struct qm_ks_result {
    int *choice;             /* (n) width index of each unit; caller allocates */
    double error;            /* total error of the choice, fixed units included */
    uint64_t bits;           /* bits x params used */
    double gap;              /* error - optimum is at most this; 0 when exact */
} qm_ks_result;

/* Solve p into r.  QM_EINVAL with a diagnostic when no choice fits the
 * capacity (even every unit at its narrowest allowed width), when a unit
 * has no allowed width, or when one group holds two fixed widths. */
qm_status qm_ks_solve(const qm_ks_problem *p, qm_ks_result *r, qm_diag *d);

#endif
