/* test_gptq.c: GPTQ against its reference, against round-to-nearest, and its edge cases.
 *
 * Inputs are correlated (X = Z A with a random mixing A), as real activations
 * are; on white inputs GPTQ has nothing to exploit.  Seeds are fixed.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "model/dtype.h"
#include "runtime/gptq.h"
#include "runtime/pack.h"
#include "model/safetensors.h"
#include "tests/unit/testutil.h"

static unsigned long long rng = 88172645463325252ull;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(uniform() + 1e-300)) * cos(6.283185307 * uniform())); }

/* W (out, in) gaussian; X (n, in) correlated; H = X^T X, finished as GPTQ does. */
static void problem(int out, int in, int n, float **W, float **X, float **H)
{
    *W = malloc((size_t)out * in * sizeof **W);
    *X = malloc((size_t)n * in * sizeof **X);
    *H = calloc((size_t)in * in, sizeof **H);
    float *A = malloc((size_t)in * in * sizeof *A), *Z = malloc((size_t)n * in * sizeof *Z);
    for (size_t i = 0; i < (size_t)out * in; i++)
        (*W)[i] = gauss();
    for (size_t i = 0; i < (size_t)in * in; i++)
        A[i] = gauss() / sqrtf((float)in) + (i % (in + 1) == 0 ? 1.0f : 0.0f);
    for (size_t i = 0; i < (size_t)n * in; i++)
        Z[i] = gauss() * (i % 7 == 0 ? 4.0f : 1.0f); /* a few loud channels */
    for (int t = 0; t < n; t++)
        for (int j = 0; j < in; j++) {
            float v = 0;
            for (int k = 0; k < in; k++)
                v += Z[(size_t)t * in + k] * A[(size_t)k * in + j];
            (*X)[(size_t)t * in + j] = v;
        }
    qm_hessian_add(*H, *X, n, in);
    qm_hessian_finish(*H, in, n);
    free(A);
    free(Z);
}

static float *copy(const float *x, size_t n)
{
    float *c = malloc(n * sizeof *c);
    memcpy(c, x, n * sizeof *c);
    return c;
}

/* Issue #13: H is the same bytes on 1, 2 and 3 OpenBLAS threads (OpenBLAS's
 * threaded ssyrk was not), and close to X^T X in double precision; 300
 * columns make full and partial tiles. */
static void test_hessian_thread_count(void)
{
    int n = 257, in = 300, threads = openblas_get_num_threads();
    float *X = malloc((size_t)n * in * sizeof *X), *H[3];
    for (size_t i = 0; i < (size_t)n * in; i++)
        X[i] = gauss();
    for (int t = 0; t < 3; t++) {
        H[t] = calloc((size_t)in * in, sizeof *H[t]);
        openblas_set_num_threads(t + 1);
        qm_hessian_add(H[t], X, n, in);
        qm_hessian_add(H[t], X, n, in); /* accumulates */
        qm_hessian_finish(H[t], in, 2 * n);
    }
    openblas_set_num_threads(threads);
    CU_ASSERT_EQUAL(memcmp(H[0], H[1], (size_t)in * in * sizeof *H[0]), 0);
    CU_ASSERT_EQUAL(memcmp(H[0], H[2], (size_t)in * in * sizeof *H[0]), 0);
    double worst = 0;
    for (int i = 0; i < in; i += 7)
        for (int j = i; j < in; j += 5) {
            double ref = 0;
            for (int k = 0; k < n; k++)
                ref += (double)X[(size_t)k * in + i] * X[(size_t)k * in + j];
            ref *= 2.0 / n; /* finished over 2n rows, each twice */
            double e = fabs(ref - H[0][(size_t)i * in + j]);
            worst = e > worst ? e : worst;
            CU_ASSERT_EQUAL(H[0][(size_t)j * in + i], H[0][(size_t)i * in + j]); /* mirrored */
        }
    CU_ASSERT(worst < 1e-4); /* float sums of 257 products of unit gaussians */
    for (int t = 0; t < 3; t++)
        free(H[t]);
    free(X);
}

/* Issue #15: GPTQ is the same bytes on 1, 2 and 3 OpenBLAS threads, with
 * the Cholesky factor in tiles (640 inputs: two full panels of 256 and a
 * partial one) and the lazy updates; the factor is a true one (the error
 * is the column-by-column reference's within 1%). */
static void test_gptq_thread_count(void)
{
    int out = 40, in = 640, n = 700, threads = openblas_get_num_threads();
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_qspec s = {4, 64, 1, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    qm_diag *d = qm_diag_new();
    qm_qresult r[3], ref;
    for (int t = 0; t < 3; t++) {
        float *Hc = copy(H, (size_t)in * in);
        openblas_set_num_threads(t + 1);
        qm_status st = qm_gptq(W, out, in, Hc, &s, &r[t], d);
        if (st != QM_OK)
            qm_diag_print(d, stderr, "test");
        CU_ASSERT_EQUAL_FATAL(st, QM_OK);
        free(Hc);
    }
    openblas_set_num_threads(threads);
    for (int t = 1; t < 3; t++) {
        CU_ASSERT_EQUAL(memcmp(r[0].codes, r[t].codes, (size_t)out * in), 0);
        CU_ASSERT_EQUAL(memcmp(r[0].deq, r[t].deq, (size_t)out * in * sizeof *r[0].deq), 0);
        CU_ASSERT_EQUAL(memcmp(r[0].scale, r[t].scale, (size_t)r[0].groups * out * sizeof *r[0].scale), 0);
        CU_ASSERT_EQUAL(r[0].loss, r[t].loss);
    }
    float *Hc = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL_FATAL(qm_gptq_ref(W, out, in, Hc, &s, &ref, d), QM_OK);
    double ea = qm_relative_error(W, r[0].deq, out, in, H), eb = qm_relative_error(W, ref.deq, out, in, H);
    CU_ASSERT(fabs(ea - eb) <= 1e-2 * eb); /* 0.5% apart here: codes flipped early feed through 640 columns */
    for (int t = 0; t < 3; t++)
        qm_qresult_free(&r[t]);
    qm_qresult_free(&ref);
    free(Hc);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

/* Issue #13: a non-finite Hessian or weight is an error, never codes. */
static void test_nonfinite(void)
{
    int out = 32, in = 64;
    float *W, *X, *H;
    problem(out, in, 128, &W, &X, &H);
    qm_qspec s = qm_qspec_default();
    s.bits = 4;
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    float *Hc = copy(H, (size_t)in * in);
    Hc[3 * in + 5] = NAN;
    CU_ASSERT_EQUAL(qm_gptq(W, out, in, Hc, &s, &r, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "the Hessian (64 x 64) is nan at [3, 5]");
    free(Hc);
    qm_diag_free(d);
    d = qm_diag_new();
    W[2 * in + 9] = INFINITY;
    Hc = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL(qm_gptq(W, out, in, Hc, &s, &r, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "the quantized weight is");
    free(Hc);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_blocked_matches_reference(void)
{
    int out = 48, in = 256, n = 512;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    const qm_qspec specs[] = {
        {4, 0, 1, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0},  {4, 64, 0, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0}, {3, 32, 1, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0},
        {2, 128, 0, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0}, {8, 0, 0, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0}, {4, 64, 1, 1, 1, 0, 0.01, 0, 0, 0, 0, 0, 0},
        {4, 256, 0, 0, 0, 1, 0.01, 0, 0, 0, 0, 0, 0}, {3, 0, 0, 0, 0, 1, 0.01, 0, 0, 0, 0, 0, 0},
        {2, 16, 0, 0, 1, 0, 0.01, 1, 4, 16, 0, 0, 0}, {3, 16, 1, 0, 1, 0, 0.01, 1, 6, 16, 0, 0, 0},
        {4, 32, 1, 0, 0, 0, 0.01, 1, 0, 0, 1, 1, 0}, {4, 32, 1, 1, 1, 0, 0.01, 1, 0, 0, 1, 1, 0},
        {8, 32, 1, 0, 0, 0, 0.01, 1, 0, 0, 1, 0, 0},  {2, 16, 0, 1, 1, 0, 0.01, 1, 4, 16, 0, 1, 0},
        {3, 16, 1, 1, 1, 0, 0.01, 1, 6, 16, 0, 1, 0}, {4, 32, 0, 1, 1, 0, 0.01, 1, 6, 8, 0, 1, 0},
        {2, 16, 0, 0, 0, 0, 0.01, 1, 4, 16, 0, 1, 0}, {3, 16, 1, 0, 0, 0, 0.01, 1, 6, 16, 0, 1, 0},
        {4, 32, 0, 0, 0, 0, 0.01, 1, 6, 8, 0, 1, 0},  {4, 32, 0, 0, 0, 0, 0.01, 1, 0, 0, 0, 1, 1},
        {5, 32, 0, 1, 1, 0, 0.01, 1, 0, 0, 0, 1, 1},
    };
    qm_diag *d = qm_diag_new();
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        float *H1 = copy(H, (size_t)in * in), *H2 = copy(H, (size_t)in * in);
        qm_qresult a, b;
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &specs[k], &a, d), QM_OK);
        CU_ASSERT_EQUAL_FATAL(qm_gptq_ref(W, out, in, H2, &specs[k], &b, d), QM_OK);
        /* Same codes but for values sitting on a rounding boundary, where the
         * two summation orders may fall either way (up to 0.5%); the error
         * they make agrees to 0.1%. */
        size_t differ = 0;
        for (size_t i = 0; i < (size_t)out * in; i++)
            differ += a.codes[i] != b.codes[i];
        double ea = qm_relative_error(W, a.deq, out, in, H), eb = qm_relative_error(W, b.deq, out, in, H);
        if (differ > (size_t)out * in / 200 || fabs(ea - eb) > 1e-3 * eb)
            fprintf(stderr, "\nspec %zu: %zu codes differ, errors %g vs %g\n", k, differ, ea, eb);
        CU_ASSERT(differ <= (size_t)out * in / 200);
        CU_ASSERT(fabs(ea - eb) <= 1e-3 * eb);
        CU_ASSERT_EQUAL(memcmp(a.g_idx, b.g_idx, (size_t)in * sizeof *a.g_idx), 0);
        qm_qresult_free(&a);
        qm_qresult_free(&b);
        free(H1);
        free(H2);
    }
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_beats_round_to_nearest(void)
{
    int out = 64, in = 128, n = 512;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_diag *d = qm_diag_new();
    for (int bits = 2; bits <= 4; bits++) {
        qm_qspec s = {bits, 32, 1, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
        float *H1 = copy(H, (size_t)in * in);
        qm_qresult g, r;
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &s, &g, d), QM_OK);
        CU_ASSERT_EQUAL_FATAL(qm_rtn(W, out, in, &s, &r, d), QM_OK);
        double eg = qm_relative_error(W, g.deq, out, in, H), er = qm_relative_error(W, r.deq, out, in, H);
        printf("\n    %d bits: GPTQ %.4f, RTN %.4f ", bits, eg, er);
        CU_ASSERT(eg < 0.8 * er);
        qm_qresult_free(&g);
        qm_qresult_free(&r);
        free(H1);
    }
    /* 8 bits is nearly lossless */
    qm_qspec s8 = {8, 0, 0, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    qm_qresult g;
    float *H8 = copy(H, (size_t)in * in); /* GPTQ overwrites its Hessian */
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H8, &s8, &g, d), QM_OK);
    CU_ASSERT(qm_relative_error(W, g.deq, out, in, H) < 1e-4);
    qm_qresult_free(&g);
    free(H8);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_grid(void)
{
    /* one row, per channel: values on the 2-bit asymmetric grid come back exactly */
    float W[4] = {-1.5f, -0.5f, 0.5f, 1.5f};
    qm_qspec s = {2, 0, 0, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_rtn(W, 1, 4, &s, &r, d), QM_OK);
    CU_ASSERT_DOUBLE_EQUAL(r.scale[0], 1.0, 1e-6);
    CU_ASSERT_EQUAL(r.zero[0], 2); /* round(1.5 / 1) = 2, half to even */
    /* w / scale + zero = 0.5, 1.5, 2.5, 3.5 round to even: 0, 2, 2, 4 -> clamped to 3 */
    CU_ASSERT_EQUAL(r.codes[0], 0);
    CU_ASSERT_EQUAL(r.codes[1], 2);
    CU_ASSERT_EQUAL(r.codes[2], 2);
    CU_ASSERT_EQUAL(r.codes[3], 3);
    qm_qresult_free(&r);
    /* symmetric: zero at the middle of the lopsided grid (maxq + 1) / 2 */
    qm_qspec sy = {2, 0, 1, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    float V[2] = {-3.0f, 1.0f};
    CU_ASSERT_EQUAL_FATAL(qm_rtn(V, 1, 2, &sy, &r, d), QM_OK);
    CU_ASSERT_EQUAL(r.zero[0], 2);
    CU_ASSERT_DOUBLE_EQUAL(r.scale[0], 2.0, 1e-6); /* 2 * 3 / 3 */
    CU_ASSERT_DOUBLE_EQUAL(r.deq[0], -4.0, 1e-6);  /* -3 / 2 = -1.5 rounds to -2 (even): code 0 */
    CU_ASSERT_DOUBLE_EQUAL(r.deq[1], 0.0, 1e-6);   /* 1 / 2 = 0.5 rounds to 0 (even): code 2 */
    qm_qresult_free(&r);
    qm_diag_free(d);
}

static void test_dead_columns(void)
{
    int out = 16, in = 64, n = 256;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    /* inputs 5 and 40 are always zero */
    memset(H, 0, (size_t)in * in * sizeof *H);
    for (int t = 0; t < n; t++)
        X[(size_t)t * in + 5] = X[(size_t)t * in + 40] = 0;
    qm_hessian_add(H, X, n, in);
    qm_hessian_finish(H, in, n);
    qm_qspec s = {4, 16, 0, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H, &s, &r, d), QM_OK);
    CU_ASSERT_EQUAL(r.dead, 2);
    for (int o = 0; o < out; o++) {
        CU_ASSERT_EQUAL(r.deq[(size_t)o * in + 5], 0.0f);
        CU_ASSERT_EQUAL(r.deq[(size_t)o * in + 40], 0.0f);
        for (int i = 0; i < in; i++)
            CU_ASSERT(isfinite(r.deq[(size_t)o * in + i]));
    }
    qm_qresult_free(&r);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

/* GPTQ's own loss, less the damping's share, is tr(D H D^T): the relative
 * error's numerator without its products (quant_log's relative_error), with
 * and without act-order, with dead columns; the denominator from H or from
 * the inputs themselves. */
static void test_own_loss(void)
{
    int out = 48, in = 96, n = 300;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    memset(H, 0, (size_t)in * in * sizeof *H);
    for (int t = 0; t < n; t++)
        X[(size_t)t * in + 7] = 0;
    qm_hessian_add(H, X, n, in);
    qm_hessian_finish(H, in, n);
    double den = qm_output_energy(W, out, in, H), den_x = 2.0 / n * qm_output_energy_x(W, out, in, X, n);
    CU_ASSERT_DOUBLE_EQUAL(den_x / den, 1.0, 1e-5);
    qm_diag *d = qm_diag_new();
    for (int ao = 0; ao <= 1; ao++)
        for (int bits = 2; bits <= 8; bits += 2) {
            qm_qspec s = {bits, 32, 1, ao, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
            float *H1 = copy(H, (size_t)in * in);
            qm_qresult g;
            CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &s, &g, d), QM_OK);
            CU_ASSERT_EQUAL(g.dead, 1);
            double e = qm_relative_error(W, g.deq, out, in, H);
            CU_ASSERT(fabs(g.loss / den - e) <= 1e-4 * e);
            qm_qresult_free(&g);
            free(H1);
        }
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_extra_damping(void)
{
    /* fewer samples than inputs and two identical inputs: H is singular, and
     * with no damping at all GPTQ must add some, say so, and still work */
    int out = 8, in = 32, n = 16;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    memset(H, 0, (size_t)in * in * sizeof *H);
    for (int t = 0; t < n; t++)
        X[(size_t)t * in + 3] = X[(size_t)t * in + 4];
    qm_hessian_add(H, X, n, in);
    qm_hessian_finish(H, in, n);
    qm_qspec s = {4, 0, 1, 0, 0, 0, 0.0, 0, 0, 0, 0, 0, 0};
    qm_qresult r;
    qm_diag *d = qm_diag_new();
    float *H0 = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H, &s, &r, d), QM_OK);
    CU_ASSERT(r.retries >= 1);
    CU_ASSERT(r.damp > 0);
    for (size_t i = 0; i < (size_t)out * in; i++)
        CU_ASSERT(isfinite(r.deq[i]));
    /* the retries restore H in its own buffer: the same bytes as a first try at the final damping */
    qm_qspec s2 = s;
    s2.damp = r.damp;
    qm_qresult r2;
    memcpy(H, H0, (size_t)in * in * sizeof *H);
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H, &s2, &r2, d), QM_OK);
    CU_ASSERT_EQUAL(r2.retries, 0);
    CU_ASSERT(memcmp(r.codes, r2.codes, (size_t)out * in) == 0);
    CU_ASSERT(memcmp(r.deq, r2.deq, (size_t)out * in * sizeof *r.deq) == 0);
    qm_qresult_free(&r2);
    memcpy(H, H0, (size_t)in * in * sizeof *H);
    free(H0);
    qm_qresult_free(&r);
    /* a group that does not divide the columns is refused */
    qm_qspec bad = {4, 24, 1, 0, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    CU_ASSERT_NOT_EQUAL(qm_gptq(W, out, in, H, &bad, &r, d), QM_OK);
    TU_ASSERT_DIAG(d, "group 24 do not fit a linear with 32 input columns");
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_fp16_scales(void)
{
    /* GGUF's grids: with fp16_scale every scale is an fp16 value, and an
     * asymmetric grid's minimum -scale * zero too (Q4_1 stores both as
     * fp16); dequantized values are still scale * (code - zero) */
    int out = 16, in = 64, n = 128;
    for (int sym = 0; sym < 2; sym++) {
        float *W, *X, *H;
        problem(out, in, n, &W, &X, &H);
        qm_qspec s = {.bits = 4, .group = 32, .sym = sym, .damp = 0.01, .fp16_scale = 1};
        qm_qresult r;
        qm_diag *d = qm_diag_new();
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H, &s, &r, d), QM_OK);
        for (int k = 0; k < r.groups * out; k++) {
            CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(r.scale[k])), r.scale[k]);
            float mn = -r.scale[k] * (float)r.zero[k];
            CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(mn)), mn);
        }
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                size_t k = (size_t)(i / 32) * out + o;
                CU_ASSERT_EQUAL(r.deq[(size_t)o * in + i],
                                r.scale[k] * ((float)r.codes[(size_t)o * in + i] - (float)r.zero[k]));
            }
        qm_qresult_free(&r);
        qm_diag_free(d);
        free(W);
        free(X);
        free(H);
    }
}

/* ggml's Q4_1 and Q5_1 grids (free_min): w' = scale q - min with scale and
 * min fp16 values of their own (no integer zero point), searched by
 * H_ii-weighted least squares; ggml's d q + m with m = -min gives the same
 * values bit for bit; with dynamic groups, and with static groups in
 * act-order, it beats the 7-significant-bit grid with an integer zero, the
 * blocked form matches the reference (test_blocked_matches_reference), the
 * bytes are the same on 1-3 threads, and the GPTQ checkpoint refuses it. */
static void test_free_min(void)
{
    int out = 32, in = 256, n = 512;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_diag *d = qm_diag_new();
    for (int v = 0; v < 4; v++) {
        int bits = v < 2 ? 4 : 5, stat = v % 2, maxq = (1 << bits) - 1;
        qm_qspec old = {.bits = bits, .group = 32, .damp = 0.01, .fp16_scale = 1};
        qm_qspec s = old;
        s.free_min = s.fit_scale = 1;
        s.static_groups = s.act_order = stat;
        qm_qresult a, b[3];
        float *Hc = copy(H, (size_t)in * in);
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, Hc, &old, &a, d), QM_OK);
        free(Hc);
        int threads = openblas_get_num_threads();
        for (int t = 0; t < 3; t++) {
            Hc = copy(H, (size_t)in * in);
            openblas_set_num_threads(t + 1);
            CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, Hc, &s, &b[t], d), QM_OK);
            free(Hc);
        }
        openblas_set_num_threads(threads);
        CU_ASSERT_FATAL(b[0].min != NULL && b[0].lscale == NULL);
        for (int t = 1; t < 3; t++) {
            CU_ASSERT_EQUAL(memcmp(b[0].codes, b[t].codes, (size_t)out * in), 0);
            CU_ASSERT_EQUAL(memcmp(b[0].min, b[t].min, (size_t)b[0].groups * out * sizeof *b[0].min), 0);
        }
        for (int k = 0; k < b[0].groups * out; k++) {
            CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(b[0].scale[k])), b[0].scale[k]);
            CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(b[0].min[k])), b[0].min[k]);
            CU_ASSERT(b[0].scale[k] > 0);
        }
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                size_t k = (size_t)(i / 32) * out + o, e = (size_t)o * in + i;
                float q = (float)b[0].codes[e];
                CU_ASSERT(b[0].codes[e] <= maxq);
                CU_ASSERT_EQUAL(b[0].g_idx[i], i / 32);
                CU_ASSERT_EQUAL(b[0].deq[e], b[0].scale[k] * q - b[0].min[k]);
                CU_ASSERT_EQUAL(b[0].deq[e], q * b[0].scale[k] + -b[0].min[k]); /* ggml: x d + m */
            }
        double ea = qm_relative_error(W, a.deq, out, in, H), eb = qm_relative_error(W, b[0].deq, out, in, H);
        printf("\n    %d-bit asym group 32%s: integer zero %.5f, free min searched %.5f ", bits,
               stat ? " static, act-order" : "", ea, eb);
        CU_ASSERT(eb < ea);
        const char *names[QM_PACK_TENSORS] = {"x.qweight", "x.qzeros", "x.scales", "x.g_idx"};
        qm_packed_linear p;
        CU_ASSERT_EQUAL(qm_pack_linear(&b[0], bits, names, &p, d), QM_EUNSUPPORTED);
        qm_qresult_free(&a);
        for (int t = 0; t < 3; t++)
            qm_qresult_free(&b[t]);
    }
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

/* ggml's Q4_0 grid (signed_max): the value of largest magnitude lands on
 * code 0 exactly, whichever its sign; the weighted scale search (fit_scale)
 * never makes a group's round-to-nearest error worse (each candidate's
 * scale is the least-squares one for its codes, and the first candidate's
 * codes are the plain grid's); under GPTQ on correlated inputs it beats
 * the plain symmetric grid (2 max / maxq) and is the same bytes on any
 * thread count. */
static void test_signed_max(void)
{
    qm_diag *d = qm_diag_new();
    qm_qresult r;
    float V[4] = {-2.0f, 0.5f, 1.0f, 0.25f}, P[4] = {2.0f, -0.5f, -1.0f, 0.25f};
    qm_qspec sm = {.bits = 4, .group = 4, .sym = 1, .damp = 0.01, .signed_max = 1};
    CU_ASSERT_EQUAL_FATAL(qm_rtn(V, 1, 4, &sm, &r, d), QM_OK);
    CU_ASSERT_EQUAL(r.scale[0], 0.25f); /* -(-2) / 8 */
    CU_ASSERT_EQUAL(r.zero[0], 8);
    CU_ASSERT_EQUAL(r.codes[0], 0);
    CU_ASSERT_EQUAL(r.codes[2], 12);
    CU_ASSERT_EQUAL(r.deq[0], -2.0f);
    qm_qresult_free(&r);
    CU_ASSERT_EQUAL_FATAL(qm_rtn(P, 1, 4, &sm, &r, d), QM_OK);
    CU_ASSERT_EQUAL(r.scale[0], -0.25f); /* a negative scale puts +2 on code 0, as ggml's d = max / -8 */
    CU_ASSERT_EQUAL(r.codes[0], 0);
    CU_ASSERT_EQUAL(r.deq[0], 2.0f);
    CU_ASSERT_EQUAL(r.deq[1], -0.5f);
    qm_qresult_free(&r);

    int out = 32, in = 256, n = 512;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_qspec fit = sm;
    fit.group = 32;
    fit.fit_scale = 1;
    qm_qresult a, b;
    sm.group = 32;
    CU_ASSERT_EQUAL_FATAL(qm_rtn(W, out, in, &sm, &a, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_rtn(W, out, in, &fit, &b, d), QM_OK);
    int worse = 0, better = 0;
    for (int o = 0; o < out; o++)
        for (int g = 0; g < in / 32; g++) {
            double ea = 0, eb = 0;
            for (int i = 32 * g; i < 32 * g + 32; i++) {
                float w = W[(size_t)o * in + i];
                ea += (w - a.deq[(size_t)o * in + i]) * (double)(w - a.deq[(size_t)o * in + i]);
                eb += (w - b.deq[(size_t)o * in + i]) * (double)(w - b.deq[(size_t)o * in + i]);
            }
            worse += eb > ea * (1 + 1e-6);
            better += eb < ea;
        }
    CU_ASSERT_EQUAL(worse, 0);
    CU_ASSERT(better > out * in / 32 / 2); /* most groups gain */
    qm_qresult_free(&a);
    qm_qresult_free(&b);

    qm_qspec plain = {.bits = 4, .group = 32, .sym = 1, .damp = 0.01, .fp16_scale = 1};
    fit.fp16_scale = 1;
    int threads = openblas_get_num_threads();
    qm_qresult t[3];
    for (int k = 0; k < 3; k++) {
        float *Hc = copy(H, (size_t)in * in);
        openblas_set_num_threads(k + 1);
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, Hc, &fit, &t[k], d), QM_OK);
        free(Hc);
    }
    openblas_set_num_threads(threads);
    for (int k = 1; k < 3; k++) {
        CU_ASSERT_EQUAL(memcmp(t[0].codes, t[k].codes, (size_t)out * in), 0);
        CU_ASSERT_EQUAL(memcmp(t[0].scale, t[k].scale, (size_t)t[0].groups * out * sizeof *t[0].scale), 0);
    }
    float *Hc = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, Hc, &plain, &a, d), QM_OK);
    double ep = qm_relative_error(W, a.deq, out, in, H), ef = qm_relative_error(W, t[0].deq, out, in, H);
    printf("\n    4-bit group 32 GPTQ: plain sym %.5f, signed max + fit %.5f ", ep, ef);
    CU_ASSERT(ef < 0.95 * ep);
    for (int k = 0; k < t[0].groups * out; k++) /* GGUF stores the scale as fp16 */
        CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(t[0].scale[k])), t[0].scale[k]);
    for (int k = 0; k < 3; k++)
        qm_qresult_free(&t[k]);
    qm_qresult_free(&a);
    free(Hc);
    free(W);
    free(X);
    free(H);
    qm_diag_free(d);
}

static void test_two_level(void)
{
    /* ggml's k-quants (Q2_K 2-bit asym over 16, Q3_K 3-bit sym over 16,
     * Q4_K 4-bit asym over 32; super-blocks of 256), plain, with the
     * H_ii-weighted scale search static in act-order, and with the search
     * on dynamic groups (GGUF's settings): every
     * group's scale is its super-group's fp16 d times an integer in range,
     * every min dmin times one, the values are the two-level formula bit
     * for bit, groups stay in column order, GPTQ beats round-to-nearest on
     * the same fixed grid, the search and act-order beat the plain grid,
     * the result is the same bytes on 1-3 threads, and the GPTQ checkpoint
     * refuses it */
    static const struct {
        int bits, group, sym, scale_bits, lo, hi;
    } k[] = {{2, 16, 0, 4, 1, 15}, {3, 16, 1, 6, -32, 31}, {4, 32, 0, 6, 1, 63}};
    int out = 16, in = 512, n = 1024;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_diag *d = qm_diag_new();
    for (size_t t = 0; t < 3 * sizeof k / sizeof k[0]; t++) {
        int fit = t % 3 > 0, dyn = t % 3 == 2;
        qm_qspec s = {.bits = k[t / 3].bits, .group = k[t / 3].group, .sym = k[t / 3].sym, .static_groups = !dyn,
                      .damp = 0.01, .fp16_scale = 1, .scale_bits = k[t / 3].scale_bits, .super = 256 / k[t / 3].group,
                      .act_order = fit && !dyn, .fit_scale = fit};
        float *H1 = copy(H, (size_t)in * in);
        qm_qresult g, r;
        CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &s, &g, d), QM_OK);
        CU_ASSERT_EQUAL_FATAL(qm_rtn(W, out, in, &s, &r, d), QM_OK);
        CU_ASSERT_FATAL(g.lscale && g.sd && !g.min == !!k[t / 3].sym);
        for (int gi = 0; gi < g.groups; gi++)
            for (int o = 0; o < out; o++) {
                size_t q = (size_t)gi * out + o, b = (size_t)(gi / s.super) * out + o;
                CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(g.sd[b])), g.sd[b]);
                CU_ASSERT(g.lscale[q] >= k[t / 3].lo && g.lscale[q] <= k[t / 3].hi && g.lscale[q] != 0);
                CU_ASSERT_EQUAL(g.scale[q], g.sd[b] * (float)g.lscale[q]);
                if (g.min) {
                    CU_ASSERT_EQUAL(qm_f16_to_f32(qm_f32_to_f16(g.smin[b])), g.smin[b]);
                    CU_ASSERT(g.lmin[q] <= k[t / 3].hi);
                    CU_ASSERT_EQUAL(g.min[q], g.smin[b] * (float)g.lmin[q]);
                }
                /* the same fixed grid for RTN where its importances are GPTQ's (without the search) */
                if (!fit)
                    CU_ASSERT_EQUAL(g.scale[q], r.scale[q]);
            }
        for (int i = 0; i < in; i++) /* act-order or not, groups are runs of columns */
            CU_ASSERT_EQUAL(g.g_idx[i], i / k[t / 3].group);
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                size_t q = (size_t)(i / k[t / 3].group) * out + o, e = (size_t)o * in + i;
                float want = g.min ? g.scale[q] * (float)g.codes[e] - g.min[q]
                                   : g.scale[q] * ((float)g.codes[e] - (float)((1 << k[t / 3].bits) / 2));
                CU_ASSERT_EQUAL(g.deq[e], want);
                CU_ASSERT(g.codes[e] < (1 << k[t / 3].bits));
            }
        double eg = qm_relative_error(W, g.deq, out, in, H), er = qm_relative_error(W, r.deq, out, in, H);
        printf("\n    %d-bit two-level%s: GPTQ %.4f, RTN %.4f ", k[t / 3].bits,
               dyn ? ", searched, dynamic" : fit ? ", searched, act-order" : "", eg, er);
        CU_ASSERT(eg < 0.8 * er);
        static double plain;
        if (!fit)
            plain = eg;
        else
            CU_ASSERT(eg < plain);
        /* quant_log's relative_error from GPTQ's own loss holds on these grids too */
        CU_ASSERT(fabs(g.loss / qm_output_energy(W, out, in, H) - eg) <= 1e-4 * eg);
        const char *names[QM_PACK_TENSORS] = {"x.qweight", "x.qzeros", "x.scales", "x.g_idx"};
        qm_packed_linear p;
        CU_ASSERT_EQUAL(qm_pack_linear(&g, k[t / 3].bits, names, &p, d), QM_EUNSUPPORTED);
        int threads = openblas_get_num_threads();
        for (int nt = 2; fit && nt <= 3; nt++) { /* the same bytes on 2 and 3 threads */
            qm_qresult g2;
            float *H2 = copy(H, (size_t)in * in);
            openblas_set_num_threads(nt);
            CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H2, &s, &g2, d), QM_OK);
            openblas_set_num_threads(threads);
            CU_ASSERT_EQUAL(memcmp(g.codes, g2.codes, (size_t)out * in), 0);
            CU_ASSERT_EQUAL(memcmp(g.deq, g2.deq, (size_t)out * in * sizeof *g.deq), 0);
            CU_ASSERT_EQUAL(memcmp(g.lscale, g2.lscale, (size_t)g.groups * out), 0);
            CU_ASSERT_EQUAL(memcmp(g.sd, g2.sd, (size_t)g.groups / s.super * out * sizeof *g.sd), 0);
            qm_qresult_free(&g2);
            free(H2);
        }
        qm_qresult_free(&g);
        qm_qresult_free(&r);
        free(H1);
    }
    /* rows that are not whole super-groups are refused */
    qm_qspec s = {.bits = 2, .group = 16, .static_groups = 1, .damp = 0.01, .scale_bits = 4, .super = 16};
    qm_qresult g;
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_rtn(W, out, 128, &s, &g, d), QM_EINVAL);
    CU_ASSERT(qm_diag_count(d) == 1 && strstr(qm_diag_text(d, 0), "multiple of 256 values, not 128"));
    /* act-order with dynamic groups would scatter a group's columns */
    s.act_order = 1;
    s.static_groups = 0;
    qm_diag_clear(d);
    CU_ASSERT_EQUAL(qm_rtn(W, out, in, &s, &g, d), QM_OK); /* round-to-nearest has no order */
    qm_qresult_free(&g);
    float *H1 = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL(qm_gptq(W, out, in, H1, &s, &g, d), QM_EINVAL);
    CU_ASSERT(qm_diag_count(d) == 1 && strstr(qm_diag_text(d, 0), "act-order only with static groups"));
    free(H1);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

static void test_pack_known_layout(void)
{
    /* 4 bits: values 0..7 of one column land in one word as 0x76543210 */
    uint8_t codes[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int32_t qw[1], qz[1], zeros[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    qm_pack_qweight(codes, 1, 8, 4, qw);
    CU_ASSERT_EQUAL((uint32_t)qw[0], 0x76543210u);
    /* symmetric 4-bit zero 8 is stored as 7: the familiar 0x77777777 */
    qm_pack_qzeros(zeros, 1, 8, 4, 1, qz);
    CU_ASSERT_EQUAL((uint32_t)qz[0], 0x77777777u);
    /* 3 bits: 32 values in 3 words; value 10 straddles words 0 and 1 */
    uint8_t c3[32] = {0};
    int32_t q3[3];
    c3[10] = 7;
    qm_pack_qweight(c3, 1, 32, 3, q3);
    CU_ASSERT_EQUAL((uint32_t)q3[0], 0xC0000000u);
    CU_ASSERT_EQUAL((uint32_t)q3[1], 0x1u);
    CU_ASSERT_EQUAL((uint32_t)q3[2], 0x0u);
}

/* GPTQ, pack, unpack, dequantize from the packed form: the same weights,
 * up to the float16 rounding of the scales. */
static void test_pack_roundtrip(void)
{
    int out = 64, in = 128, n = 256;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_diag *d = qm_diag_new();
    for (int bits = 2; bits <= 8; bits++) {
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
            continue;
        for (int v = 0; v < 4; v++) {
            qm_qspec s = {bits, v & 1 ? 32 : 0, v & 2 ? 1 : 0, v & 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
            float *H1 = copy(H, (size_t)in * in);
            qm_qresult r;
            CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &s, &r, d), QM_OK);
            int32_t *qw = malloc((size_t)in * bits / 32 * out * 4), *qz = malloc((size_t)r.groups * out * bits / 32 * 4);
            uint16_t *sc = malloc((size_t)r.groups * out * 2);
            uint8_t *codes = malloc((size_t)out * in);
            int32_t *zeros = malloc((size_t)r.groups * out * 4);
            float *w = malloc((size_t)out * in * 4);
            /* zero points lie on the grid */
            for (int k = 0; k < r.groups * out; k++)
                CU_ASSERT(r.zero[k] >= 0 && r.zero[k] <= (1 << bits) - 1);
            qm_pack_qweight(r.codes, out, in, bits, qw);
            qm_pack_qzeros(r.zero, r.groups, out, bits, 0, qz);
            for (int k = 0; k < r.groups * out; k++)
                sc[k] = qm_f32_to_f16(r.scale[k]);
            qm_unpack_qweight(qw, out, in, bits, codes);
            qm_unpack_qzeros(qz, r.groups, out, bits, 0, zeros);
            CU_ASSERT_EQUAL(memcmp(codes, r.codes, (size_t)out * in), 0);
            CU_ASSERT_EQUAL(memcmp(zeros, r.zero, (size_t)r.groups * out * 4), 0);
            qm_dequant_packed(qw, qz, sc, r.g_idx, out, in, r.groups, bits, 0, w);
            double worst = 0;
            for (size_t k = 0; k < (size_t)out * in; k++)
                worst = fmax(worst, fabs((double)w[k] - r.deq[k]) / (fabs(r.deq[k]) + 1e-3));
            CU_ASSERT(worst < 1e-3); /* float16 scales: 2^-11 relative */
            free(qw);
            free(qz);
            free(sc);
            free(codes);
            free(zeros);
            free(w);
            free(H1);
            qm_qresult_free(&r);
        }
    }
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

/* `qmoe gptq-tensor` as a user runs it, on files this test writes. */
static void test_gptq_tensor_command(void)
{
    const char *qmoe = getenv("QMOE");
    if (!qmoe) {
        fprintf(stderr, "QMOE is not set\n");
        CU_FAIL_FATAL("QMOE is not set");
    }
    int out = 64, in = 128, n = 512;
    float *W, *X, *H;
    problem(out, in, n, &W, &X, &H);
    qm_diag *d = qm_diag_new();
    uint64_t sw[2] = {(uint64_t)out, (uint64_t)in}, sx[2] = {(uint64_t)n, (uint64_t)in};
    qm_st_entry ew = {"weight", QM_DT_F32, 2, sw, W}, ex = {"inputs", QM_DT_F32, 2, sx, X};
    CU_ASSERT_EQUAL_FATAL(qm_st_write(tu_path("W.safetensors"), &ew, 1, NULL, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(qm_st_write(tu_path("X.safetensors"), &ex, 1, NULL, d), QM_OK);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' gptq-tensor --weight '%s' --inputs '%s' --bits 3 --group 32 --act-order "
             "--format yaml -o '%s'", qmoe, tu_path("W.safetensors"), tu_path("X.safetensors"),
             tu_path("Q.safetensors"));
    FILE *p = popen(cmd, "r");
    char line[256];
    double e = -1, er = -1;
    int has_seconds = 0;
    while (p && fgets(line, sizeof line, p)) {
        sscanf(line, "relative_error: %lf", &e);
        sscanf(line, "rtn_relative_error: %lf", &er);
        has_seconds |= strncmp(line, "seconds: ", 9) == 0;
    }
    CU_ASSERT_EQUAL(p ? pclose(p) : -1, 0);
    CU_ASSERT(e > 0 && er > 0 && e < er);
    CU_ASSERT(has_seconds);
    /* the direct computation agrees with what the command printed */
    qm_qspec s = {3, 32, 1, 1, 0, 0, 0.01, 0, 0, 0, 0, 0, 0};
    qm_qresult r;
    float *H1 = copy(H, (size_t)in * in);
    CU_ASSERT_EQUAL_FATAL(qm_gptq(W, out, in, H1, &s, &r, d), QM_OK);
    CU_ASSERT_DOUBLE_EQUAL(qm_relative_error(W, r.deq, out, in, H), e, 1e-6);
    qm_st_file *f;
    CU_ASSERT_EQUAL_FATAL(qm_st_open(tu_path("Q.safetensors"), &f, d), QM_OK);
    const qm_st_tensor *qw = qm_st_find(f, "qweight"), *sc = qm_st_find(f, "scales"),
                       *gi = qm_st_find(f, "g_idx"), *dq = qm_st_find(f, "weight"), *qz = qm_st_find(f, "qzeros");
    CU_ASSERT_FATAL(qw && sc && gi && dq && qz);
    CU_ASSERT_EQUAL(qw->shape[0], (uint64_t)in * 3 / 32);
    CU_ASSERT_EQUAL(qw->shape[1], (uint64_t)out);
    CU_ASSERT_EQUAL(qz->shape[0], 4);
    CU_ASSERT_EQUAL(qz->shape[1], (uint64_t)out * 3 / 32);
    CU_ASSERT_EQUAL(sc->dtype, QM_DT_F16);
    CU_ASSERT_EQUAL(memcmp(dq->data, r.deq, (size_t)out * in * 4), 0);
    CU_ASSERT_STRING_EQUAL(qm_st_meta(f, "checkpoint_format"), "gptq");
    qm_st_close(f);
    /* a bad width is a usage error */
    snprintf(cmd, sizeof cmd, "'%s' gptq-tensor --weight x --inputs y --bits 6 2>/dev/null", qmoe);
    CU_ASSERT_EQUAL(WEXITSTATUS(system(cmd)), 2);
    qm_qresult_free(&r);
    free(H1);
    qm_diag_free(d);
    free(W);
    free(X);
    free(H);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("gptq", NULL, NULL);
    CU_add_test(s, "the quantizer grid", test_grid);
    CU_add_test(s, "Hessians are the same bytes on any thread count", test_hessian_thread_count);
    CU_add_test(s, "GPTQ is the same bytes on any thread count", test_gptq_thread_count);
    CU_add_test(s, "a non-finite Hessian or weight is an error", test_nonfinite);
    CU_add_test(s, "blocked GPTQ matches the column-by-column reference", test_blocked_matches_reference);
    CU_add_test(s, "GPTQ beats round-to-nearest; 8 bits nearly lossless", test_beats_round_to_nearest);
    CU_add_test(s, "dead columns", test_dead_columns);
    CU_add_test(s, "a singular Hessian gets more damping", test_extra_damping);
    CU_add_test(s, "GPTQ's own loss gives the relative error", test_own_loss);
    CU_add_test(s, "fp16 scales (GGUF's Q8_0, Q4_0, Q4_1)", test_fp16_scales);
    CU_add_test(s, "two-level grids (GGUF's Q2_K, Q3_K, Q4_K)", test_two_level);
    CU_add_test(s, "the free-minimum grid and its search (GGUF's Q4_1, Q5_1)", test_free_min);
    CU_add_test(s, "the signed-max grid and its scale search (GGUF's Q4_0)", test_signed_max);
    s = CU_add_suite("packing", NULL, NULL);
    CU_add_test(s, "known layouts (4-bit, zeros, 3-bit straddle)", test_pack_known_layout);
    CU_add_test(s, "GPTQ -> pack -> unpack -> dequantize, 2/3/4/8 bits", test_pack_roundtrip);
    s = CU_add_suite("qmoe gptq-tensor", NULL, NULL);
    CU_add_test(s, "one linear from files", test_gptq_tensor_command);
    return tu_run();
}
