/* test_knapsack.c: the budget's multiple-choice knapsack against brute
 * force on small instances: exact optimum, fit, groups and fixed widths;
 * with a table too small for exactness, the stated gap bounds the loss. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/knapsack.h"
#include "tests/unit/testutil.h"

enum { MAXN = 7, NW = 4 };

static const int widths[NW] = {2, 3, 4, 8};

/* A small deterministic generator (the tests must not depend on libc's). */
static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The least total error over every assignment that fits, honouring groups
 * and fixed widths; INFINITY when none fits. */
static double brute(const qm_ks_problem *p, int *best_choice)
{
    size_t n = p->n, combos = 1;
    for (size_t i = 0; i < n; i++)
        combos *= NW;
    double best = INFINITY;
    int c[MAXN];
    for (size_t x = 0; x < combos; x++) {
        size_t y = x;
        for (size_t i = 0; i < n; i++, y /= NW)
            c[i] = (int)(y % NW);
        int ok = 1;
        uint64_t bits = 0;
        double e = 0;
        for (size_t i = 0; i < n && ok; i++) {
            /* a unit is fixed when any unit of its group is: then it needs no measured error */
            int gf = 0;
            for (size_t j = 0; j < n && p->fixed; j++)
                if ((j == i || (p->group && p->group[j] == p->group[i])) && p->fixed[j] >= 0) {
                    gf = 1;
                    if (c[i] != p->fixed[j])
                        ok = 0;
                }
            for (size_t j = 0; j < i && ok && p->group; j++)
                if (p->group[j] == p->group[i] && c[j] != c[i])
                    ok = 0;
            double v = p->err[i * NW + c[i]];
            if (isnan(v) && !gf)
                ok = 0;
            bits += (uint64_t)widths[c[i]] * p->params[i];
            e += isnan(v) ? 0 : v;
        }
        if (ok && bits <= p->capacity && e < best) {
            best = e;
            memcpy(best_choice, c, n * sizeof *c);
        }
    }
    return best;
}

/* A random instance of n units: params multiples of 64 (as real shapes
 * are), errors decreasing with width, some groups, some fixed, some widths
 * not measured; capacity between all-narrowest and all-widest. */
static void make(qm_ks_problem *p, size_t n, uint64_t *params, double *err, int *fixed, size_t *group, int with_groups,
                 int with_fixed)
{
    uint64_t lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        params[i] = 64 * (1 + next() % 40);
        double e = (double)(1 + next() % 1000) / 100.0;
        for (int k = 0; k < NW; k++) {
            err[i * NW + k] = e;
            e *= (double)(next() % 90 + 5) / 100.0;
        }
        if (next() % 9 == 0)
            err[i * NW + 1] = NAN; /* a width not measured for this unit */
        fixed[i] = with_fixed && next() % 5 == 0 ? (int)(next() % NW) : -1;
        group[i] = with_groups ? next() % (n / 2 + 1) : i;
        lo += 2 * params[i];
        hi += 8 * params[i];
    }
    *p = (qm_ks_problem){n, params, NW, widths, err, fixed, group, lo + next() % (hi - lo + 1), 0};
}

static void check_many(int with_groups, int with_fixed, size_t max_cells)
{
    int tried = 0, solved = 0;
    for (int t = 0; t < 300; t++) {
        size_t n = 1 + next() % MAXN;
        uint64_t params[MAXN];
        double err[MAXN * NW];
        int fixed[MAXN], choice[MAXN], bc[MAXN];
        size_t group[MAXN];
        qm_ks_problem p;
        make(&p, n, params, err, fixed, group, with_groups, with_fixed);
        p.max_cells = max_cells;
        double want = brute(&p, bc);
        qm_diag *d = qm_diag_new();
        qm_ks_result r = {choice, 0, 0, 0};
        qm_status st = qm_ks_solve(&p, &r, d);
        tried++;
        if (isinf(want)) { /* nothing fits (fixed widths or conflicts): the solver must say so */
            CU_ASSERT_NOT_EQUAL(st, QM_OK);
            qm_diag_free(d);
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(st, QM_OK);
        solved++;
        /* the choice fits, honours fixed widths and groups, and its error is what it reports */
        uint64_t bits = 0;
        double e = 0;
        for (size_t i = 0; i < n; i++) {
            bits += (uint64_t)widths[choice[i]] * params[i];
            e += isnan(err[i * NW + choice[i]]) ? 0 : err[i * NW + choice[i]];
            int gf = 0; /* fixed itself or through its group: no measured error needed */
            for (size_t j = 0; j < n; j++)
                gf |= (j == i || group[j] == group[i]) && fixed[j] >= 0;
            if (fixed[i] >= 0) {
                CU_ASSERT_EQUAL(choice[i], fixed[i]);
            } else if (!gf) {
                CU_ASSERT(!isnan(err[i * NW + choice[i]]));
            }
            for (size_t j = 0; j < i; j++)
                if (group[j] == group[i]) {
                    CU_ASSERT_EQUAL(choice[j], choice[i]);
                }
        }
        CU_ASSERT(bits <= p.capacity);
        CU_ASSERT_EQUAL(bits, r.bits);
        CU_ASSERT(fabs(e - r.error) <= 1e-9 * (1 + e));
        if (max_cells == 0) { /* exact */
            CU_ASSERT_EQUAL(r.gap, 0);
            if (fabs(r.error - want) > 1e-9 * (1 + want))
                fprintf(stderr, "\ninstance %d: solver %.12g, brute force %.12g\n", t, r.error, want);
            CU_ASSERT(fabs(r.error - want) <= 1e-9 * (1 + want));
        } else { /* the stated gap bounds the loss */
            CU_ASSERT(r.error >= want - 1e-9 * (1 + want));
            CU_ASSERT(r.error - want <= r.gap + 1e-9 * (1 + want));
        }
        qm_diag_free(d);
    }
    CU_ASSERT(solved > tried / 2); /* most instances were feasible: the test tested something */
}

static void test_exact(void) { check_many(0, 0, 0); }
static void test_groups_fixed(void) { check_many(1, 1, 0); }
static void test_gap(void) { check_many(1, 0, 16); }

/* By hand: three units; the budget buys one unit's step from 2 to 4 bits,
 * and the one that gains most per bit takes it. */
static void test_hand(void)
{
    uint64_t params[3] = {100, 100, 200};
    double err[3 * NW] = {10, 9.5, 9, 8, /**/ 10, 2, 1, 0.5, /**/ 10, 8, 7, 6};
    int choice[3];
    qm_ks_problem p = {3, params, NW, widths, err, NULL, NULL, 2 * 400 + 200, 0};
    qm_ks_result r = {choice, 0, 0, 0};
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_ks_solve(&p, &r, d), QM_OK);
    CU_ASSERT_EQUAL(choice[0], 0);
    CU_ASSERT_EQUAL(choice[1], 2); /* 10 -> 1 for 200 bits */
    CU_ASSERT_EQUAL(choice[2], 0);
    CU_ASSERT_DOUBLE_EQUAL(r.error, 21, 1e-12);
    /* grouped with the third, the second cannot move alone: 100+200 params
     * would need +300 for 3 bits, so the first unit takes the room */
    size_t group[3] = {0, 1, 1};
    p.group = group;
    CU_ASSERT_EQUAL_FATAL(qm_ks_solve(&p, &r, d), QM_OK);
    CU_ASSERT_EQUAL(choice[0], 2);
    CU_ASSERT_EQUAL(choice[1], 0);
    CU_ASSERT_EQUAL(choice[2], 0);
    CU_ASSERT_DOUBLE_EQUAL(r.error, 9 + 10 + 10, 1e-12);
    /* with 300 more, the group moves to 3 bits (-10 error) rather than unit 0 to 8 */
    p.capacity += 300;
    CU_ASSERT_EQUAL_FATAL(qm_ks_solve(&p, &r, d), QM_OK);
    CU_ASSERT_EQUAL(choice[1], 1);
    CU_ASSERT_EQUAL(choice[2], 1);
    CU_ASSERT_EQUAL(choice[0], 2);
    CU_ASSERT_DOUBLE_EQUAL(r.error, 9 + 2 + 8, 1e-12);
    p.capacity -= 300;
    /* below the narrowest: refused, saying how much is needed */
    p.group = NULL;
    p.capacity = 799;
    CU_ASSERT_NOT_EQUAL(qm_ks_solve(&p, &r, d), QM_OK);
    TU_ASSERT_DIAG(d, "budget: the units need 800 bits x params at their narrowest widths, more than the 799");
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("knapsack", NULL, NULL);
    CU_add_test(s, "by hand: the best step per bit, groups, refusal", test_hand);
    CU_add_test(s, "exact against brute force (300 instances)", test_exact);
    CU_add_test(s, "groups and fixed widths against brute force", test_groups_fixed);
    CU_add_test(s, "a coarse table: the gap bounds the loss", test_gap);
    return tu_run();
}
