/* select.c: data-driven picks inside a selector's brackets.
 *
 * resolve.c turns the candidates of a bracket (MoE blocks, experts or
 * linears) into units with a score each and calls qm_c_pick(), which
 * decides which are kept:
 *
 *   top N / bottom N     the N highest / lowest scores; N may be P% of the
 *                        candidates, rounded to nearest, at least 1
 *   per layer            the same within each layer separately
 *   random N seed S      N units drawn with splitmix64 seeded with S (below)
 *   scorer op value      every unit whose score compares so
 *
 * Ties break by the tie rank the caller gives (lower layer, then lower
 * expert, then canonical name), so a selection never depends on the order
 * of the scores file.  Units with no score (NAN) are never picked by top,
 * bottom or a threshold.
 *
 * The random draw is reproducible by construction: candidates are taken in
 * tie-rank order (layer by layer for `per layer`, layers ascending), and a
 * partial Fisher-Yates shuffle swaps candidate i with i + (x mod (n - i)),
 * x being the next output of one splitmix64 stream seeded with S for the
 * whole selection.  The first N after the shuffle are picked.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "compiler/internal.h"

typedef struct unit {
    size_t i;
    long long group;
    double v;
    size_t rank;
} unit;

static int cmp_unit(const void *a, const void *b)
{
    const unit *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1; /* top negated its scores */
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int cmp_rank(const void *a, const void *b)
{
    const unit *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t amount(const qm_index *ix, size_t n)
{
    size_t k;
    if (ix->u.pick.is_percent) {
        k = (size_t)llround(ix->u.pick.percent * (double)n / 100.0);
        if (k < 1)
            k = 1;
    } else {
        k = (size_t)ix->u.pick.count;
    }
    return k < n ? k : n;
}

static int compare(qm_cmp op, double v, double x)
{
    switch (op) {
    case QM_CMP_LT: return v < x;
    case QM_CMP_LE: return v <= x;
    case QM_CMP_GT: return v > x;
    case QM_CMP_GE: return v >= x;
    }
    return 0;
}

void qm_c_pick(const qm_index *ix, size_t n, const double *v, const long long *group,
               const size_t *rank, unsigned char *keep)
{
    for (size_t i = 0; i < n; i++)
        keep[i] = 0;
    if (ix->kind == QM_INDEX_THRESHOLD) {
        for (size_t i = 0; i < n; i++)
            keep[i] = !isnan(v[i]) && compare(ix->u.threshold.op, v[i], ix->u.threshold.value);
        return;
    }
    int random = ix->u.pick.how == QM_PICK_RANDOM, top = ix->u.pick.how == QM_PICK_TOP;
    unit *u = malloc((n ? n : 1) * sizeof *u);
    if (!u)
        return;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (random || !isnan(v[i]))
            u[m++] = (unit){i, ix->u.pick.per_layer ? group[i] : 0, random ? 0 : top ? -v[i] : v[i], rank[i]};
    qsort(u, m, sizeof *u, random ? cmp_rank : cmp_unit);
    uint64_t state = ix->u.pick.seed;
    for (size_t a = 0; a < m;) {
        size_t b = a;
        while (b < m && u[b].group == u[a].group)
            b++;
        size_t k = amount(ix, b - a);
        if (random)
            for (size_t i = a; i < a + k; i++) {
                size_t j = i + (size_t)(splitmix64(&state) % (uint64_t)(b - i));
                unit t = u[i];
                u[i] = u[j];
                u[j] = t;
            }
        for (size_t i = a; i < a + k; i++)
            keep[u[i].i] = 1;
        a = b;
    }
    free(u);
}
