/* fwd_kernels.c: the forward pass's exp-heavy elementwise kernels and its
 * worker threads (contracts in fwd_kernels.h).
 *
 * Built with -fopenmp-simd -fno-trapping-math (QM_SIMD_CFLAGS, when the
 * compiler has them) so that the `omp simd` loops below vectorise at -O2:
 * those flags change no result, they let the compiler if-convert the
 * clamps.  The softmax and SwiGLU once spent most of their time in scalar
 * expf calls. */
#include "config.h"

#include <cblas.h>
#include <stdint.h>
#include <string.h>

#include "runtime/fwd_kernels.h"

/* On x86-64 the exp loops are also built for AVX2 with FMA, chosen at load
 * time when the CPU has them: there they run about 3x faster than SSE2.
 * Not under ThreadSanitizer, whose instrumented resolver would run before
 * its runtime is up and crash the program at load. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SIMD_CLONES
#endif

/* exp(x) for finite x (NaN for NaN): x = n ln2 + r, |r| <= ln2/2; exp(r) by Cephes' expf
 * polynomial, 2^n put into the exponent bits.  Clamped to [-87, 88], where
 * 2^n stays a normal float; relative error about 2 ulp against expf. */
static inline float fexp(float x)
{
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;       /* ln2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* a NaN x (from an overflow upstream) must not reach the conversion,
     * which would be undefined; p is NaN then, so the result stays NaN and
     * the layer's check reports it */
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

SIMD_CLONES void fwdk_softmax(float *r, int n)
{
    float mx = r[0], sum = 0;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++)
        mx = r[j] > mx ? r[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        r[j] = fexp(r[j] - mx);
        sum += r[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++)
        r[j] *= inv;
}

SIMD_CLONES void fwdk_silu_mul(float *g, const float *u, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + fexp(-g[i])) * u[i];
}

int fwdk_workers(void)
{
    int n = openblas_get_num_threads();
    return n < 1 ? 1 : n > QM_MAX_WORKERS ? QM_MAX_WORKERS : n;
}

void fwdk_parallel(int workers, int tasks, fwdk_task *fn, void *ctx)
{
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    qm_parallel(workers, tasks, fn, ctx);
    openblas_set_num_threads(blas);
}
