/* gptq_bench.c: GPTQ time and the FLOP rate of its update phase, against
 * this machine's sgemm rate measured in the same run.
 *
 * usage: gptq_bench [TOKENS]
 *
 * For a 4096 x 4096 linear and a 14336 x 4096 one (a Mixtral expert's gate),
 * 4-bit, groups of 128, symmetric: builds the Hessian from TOKENS (default
 * 2048) correlated random input rows, then times GPTQ.  The update phase is
 * the lazy-batch sgemm after each block of 128 columns, where GPTQ's FLOPs
 * are; its rate over the 1024^3 sgemm rate is the figure of merit.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "runtime/gptq.h"

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static float noise(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static void one(int out, int in, int tokens, double peak)
{
    float *W = malloc((size_t)out * in * 4), *X = malloc((size_t)tokens * in * 4), *H = calloc((size_t)in * in, 4);
    for (size_t i = 0; i < (size_t)out * in; i++)
        W[i] = noise();
    for (int t = 0; t < tokens; t++) { /* correlated channels: a shared component plus noise */
        float common = noise();
        for (int j = 0; j < in; j++)
            X[(size_t)t * in + j] = common * (float)(1 + j % 5) + noise();
    }
    double t0 = now();
    qm_hessian_add(H, X, tokens, in);
    qm_hessian_finish(H, in, tokens);
    double th = now() - t0;
    qm_qspec s = {4, 128, 1, 0, 0, 0, 0.01, 0, 0, 0};
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    t0 = now();
    if (qm_gptq(W, out, in, H, &s, &r, d) != QM_OK) {
        qm_diag_print(d, stderr, "gptq_bench");
        exit(1);
    }
    double tg = now() - t0;
    printf("%5d x %-5d  Hessian %.2f s, GPTQ %.2f s; update phase %.2f s at %.1f GFLOP/s = %.0f%% of sgemm\n", out,
           in, th, tg, r.update_seconds, r.update_flops / r.update_seconds / 1e9,
           100 * r.update_flops / r.update_seconds / peak);
    qm_qresult_free(&r);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

int main(int argc, char **argv)
{
    int tokens = argc > 1 ? atoi(argv[1]) : 2048;
    double peak = sgemm_rate();
    printf("sgemm rate (1024^3): %.1f GFLOP/s; 4-bit, group 128, sym; %d calibration rows\n", peak / 1e9, tokens);
    one(4096, 4096, tokens, peak);
    one(14336, 4096, tokens, peak);
    return 0;
}
