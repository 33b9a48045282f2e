/* bench.h: what the C benchmarks share: a monotonic clock and this
 * machine's sgemm rate (best of 5 on a 1024^3 product after a warm-up),
 * the practical peak the benchmarks report their ratios against. */
#ifndef QM_BENCH_H
#define QM_BENCH_H

#include <cblas.h>
#include <stdlib.h>
#include <time.h>

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline double sgemm_rate(void)
{
    int n = 1024;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double f = 2.0 * n * n * n / (now() - t0);
        best = f > best ? f : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

#endif
