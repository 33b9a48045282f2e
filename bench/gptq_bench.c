/* gptq_bench.c: GPTQ time and the FLOP rate of its update phase, against
 * this machine's sgemm rate measured in the same run.
 *
 * usage: gptq_bench [TOKENS]
 *        gptq_bench --rate
 *        gptq_bench --shape OUTxIN [--tokens N] [--dump DIR]
 *
 * Without options: for a 4096 x 4096 linear and a 14336 x 4096 one (a
 * Mixtral expert's gate), 4-bit, groups of 128, symmetric: builds the
 * Hessian from TOKENS (default 2048) correlated random input rows, then
 * times GPTQ.  The update phase is the lazy-batch sgemm after each block of
 * 128 columns; its rate over the 1024^3 sgemm rate is the figure of merit.
 *
 * --rate prints the sgemm rate alone (GFLOP/s).  --shape times one linear
 * and prints one line of key=value pairs for scripts (bench/scale.sh):
 * wall and CPU seconds of the Hessian and of GPTQ, the relative error
 * tr(D H D^T) / tr(W H W^T) and its denominator, GPTQ's FLOPs (a third of in^3 for the
 * factor, out x in^2 for the updates) and the sgemm rate; with --dump DIR
 * it also writes DIR/W.f32 (out x in), DIR/H.f32 (in x in, the finished
 * Hessian) for the reference implementation (tools/gptq_ref.py).
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int dump(const char *dir, const char *name, const float *x, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(x, sizeof *x, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "gptq_bench: cannot write %s\n", path);
    return ok;
}

/* One linear; `line`: the key=value form (with the dump when dir is set). */
static int one(int out, int in, int tokens, double peak, int line, const char *dir)
{
    float *W = malloc((size_t)out * in * 4), *X = malloc((size_t)tokens * in * 4), *H = calloc((size_t)in * in, 4);
    if (!W || !X || !H) {
        fprintf(stderr, "gptq_bench: out of memory for %d x %d\n", out, in);
        return 1;
    }
    for (size_t i = 0; i < (size_t)out * in; i++)
        W[i] = noise();
    for (int t = 0; t < tokens; t++) { /* correlated channels: a shared component plus noise */
        float common = noise();
        for (int j = 0; j < in; j++)
            X[(size_t)t * in + j] = common * (float)(1 + j % 5) + noise();
    }
    double t0 = now(), c0 = cpu();
    qm_hessian_add(H, X, tokens, in);
    qm_hessian_finish(H, in, tokens);
    double th = now() - t0, ch = cpu() - c0;
    free(X);
    if (dir && (!dump(dir, "W.f32", W, (size_t)out * in) || !dump(dir, "H.f32", H, (size_t)in * in)))
        return 1;
    double den = qm_output_energy(W, out, in, H);
    qm_qspec s = {4, 128, 1, 0, 0, 0, 0.01, 0, 0, 0};
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    t0 = now();
    c0 = cpu();
    if (qm_gptq(W, out, in, H, &s, &r, d) != QM_OK) {
        qm_diag_print(d, stderr, "gptq_bench");
        return 1;
    }
    double tg = now() - t0, cg = cpu() - c0;
    if (line)
        printf("out=%d in=%d tokens=%d hessian_s=%.3f hessian_cpu_s=%.3f gptq_s=%.3f gptq_cpu_s=%.3f error=%.6g "
               "den=%.17g flops=%.6g sgemm_gflops=%.2f\n", out, in, tokens, th, ch, tg, cg, r.loss / den, den,
               1.0 / 3.0 * in * (double)in * in + (double)out * in * in, peak / 1e9);
    else
        printf("%5d x %-5d  Hessian %.2f s, GPTQ %.2f s; update phase %.2f s at %.1f GFLOP/s = %.0f%% of sgemm\n",
               out, in, th, tg, r.update_seconds, r.update_flops / r.update_seconds / 1e9,
               100 * r.update_flops / r.update_seconds / peak);
    qm_qresult_free(&r);
    qm_diag_free(d);
    free(W);
    free(H);
    return 0;
}

int main(int argc, char **argv)
{
    int tokens = 2048, out = 0, in = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rate") == 0) {
            printf("%.2f\n", sgemm_rate() / 1e9);
            return 0;
        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc && sscanf(argv[i + 1], "%dx%d", &out, &in) == 2) {
            i++;
        } else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
            tokens = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (argc == 2 && atoi(argv[i]) > 0) {
            tokens = atoi(argv[i]);
        } else {
            fprintf(stderr, "usage: gptq_bench [TOKENS] | --rate | --shape OUTxIN [--tokens N] [--dump DIR]\n");
            return 2;
        }
    }
    if (out <= 0 || in <= 0 || tokens <= 0) {
        if (out || in) {
            fprintf(stderr, "gptq_bench: --shape wants OUTxIN with positive sizes\n");
            return 2;
        }
        double peak = sgemm_rate();
        printf("sgemm rate (1024^3): %.1f GFLOP/s; 4-bit, group 128, sym; %d calibration rows\n", peak / 1e9, tokens);
        return one(4096, 4096, tokens, peak, 0, NULL) || one(14336, 4096, tokens, peak, 0, NULL);
    }
    return one(out, in, tokens, sgemm_rate(), 1, dir);
}
