/* test_pack.c: the GPTQ checkpoint packing against the public loaders' unpack formulas.
 *
 * Nothing here calls qmoe's unpack code to check qmoe's pack code.  The
 * expected int32 words below were worked out by hand, and loader_code()
 * and loader_zero() restate, as formulas, how the loaders read the tensors
 * back (AutoGPTQ qlinear_cuda_old.py forward, GPTQModel
 * PackableQuantLinear.dequantize_weight, vLLM's torch fallback in gptq.py;
 * see the notes at the top of runtime/pack.c):
 *
 *   2/4/8 bits, f = 32 / bits values per word, mask = 2^bits - 1:
 *     code(i, j) = (qweight[i / f][j] >> (bits * (i % f))) & mask
 *     zero(g, j) = ((qzeros[g][j / f] >> (bits * (j % f))) & mask) + 1   ("gptq", v1)
 *   3 bits, 32 values in 3 words w0, w1, w2 (the 10 | 1 | 10 | 1 | 10 layout):
 *     k = 0..9    (w0 >> 3k) & 7
 *     k = 10      ((w0 >> 30) & 3) | ((w1 << 2) & 4)
 *     k = 11..20  (w1 >> (3(k - 11) + 1)) & 7
 *     k = 21      ((w1 >> 31) & 1) | ((w2 << 1) & 6)
 *     k = 22..31  (w2 >> (3(k - 22) + 2)) & 7
 *   weight(j, i) = scales[g_idx[i]][j] * (code(i, j) - zero(g_idx[i], j))
 *
 * so a pack.c that ever drifts from the loaders fails here, even if its own
 * unpack drifts with it.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "runtime/pack.h"
#include "tests/unit/testutil.h"

/* ---- the loaders' formulas --------------------------------------------------------------- */

/* Value k (0..31) of a 3-word group, as the loaders' 3-bit wf table and fix-ups read it. */
static uint32_t loader_3bit(uint32_t w0, uint32_t w1, uint32_t w2, int k)
{
    if (k < 10)
        return (w0 >> (3 * k)) & 7;
    if (k == 10)
        return ((w0 >> 30) & 3) | ((w1 << 2) & 4);
    if (k < 21)
        return (w1 >> (3 * (k - 11) + 1)) & 7;
    if (k == 21)
        return ((w1 >> 31) & 1) | ((w2 << 1) & 6);
    return (w2 >> (3 * (k - 22) + 2)) & 7;
}

/* Element k of a packed vector whose word m is words[m * stride]. */
static uint32_t loader_unpack(const int32_t *words, size_t stride, int bits, int k)
{
    if (bits == 3) {
        const int32_t *w = words + (size_t)(k / 32) * 3 * stride;
        return loader_3bit((uint32_t)w[0], (uint32_t)w[stride], (uint32_t)w[2 * stride], k % 32);
    }
    int f = 32 / bits;
    return ((uint32_t)words[(size_t)(k / f) * stride] >> (bits * (k % f))) & ((1u << bits) - 1);
}

/* code(i, j) from qweight (in * bits / 32, out) */
static int loader_code(const int32_t *qweight, int out, int bits, int i, int j)
{
    return (int)loader_unpack(qweight + j, (size_t)out, bits, i);
}

/* zero(g, j) from qzeros (groups, out * bits / 32), format "gptq" */
static int loader_zero(const int32_t *qzeros, int out, int bits, int g, int j)
{
    return (int)loader_unpack(qzeros + (size_t)g * out * bits / 32, 1, bits, j) + 1;
}

/* ---- hand-worked words ------------------------------------------------------------------- */

static void test_words_2_4_8(void)
{
    /* 4 bits, in = 8, out = 8: column j holds codes (i + j) % 16 for
     * i = 0..7, first code in the low nibble: column 0 is 0x76543210,
     * column 1 is 0x87654321, column 7 (codes 7..14) is 0xEDCBA987. */
    uint8_t c4[8 * 8];
    for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++)
            c4[j * 8 + i] = (uint8_t)((i + j) % 16);
    int32_t q4[8];
    qm_pack_qweight(c4, 8, 8, 4, q4);
    CU_ASSERT_EQUAL((uint32_t)q4[0], 0x76543210u);
    CU_ASSERT_EQUAL((uint32_t)q4[1], 0x87654321u);
    CU_ASSERT_EQUAL((uint32_t)q4[7], 0xEDCBA987u);

    /* 2 bits, in = 16, one column 0,1,2,3,0,1,2,3,...: each byte is
     * 0 | 1 << 2 | 2 << 4 | 3 << 6 = 0xE4. */
    uint8_t c2[16];
    for (int i = 0; i < 16; i++)
        c2[i] = (uint8_t)(i % 4);
    int32_t q2[1];
    qm_pack_qweight(c2, 1, 16, 2, q2);
    CU_ASSERT_EQUAL((uint32_t)q2[0], 0xE4E4E4E4u);

    /* 8 bits, in = 4, out = 2: bytes low to high; two columns interleave
     * across the row of qweight (qweight[0][0], qweight[0][1]). */
    uint8_t c8[2 * 4] = {0x12, 0x34, 0x56, 0x78, 0xFF, 0x00, 0x80, 0x01};
    int32_t q8[2];
    qm_pack_qweight(c8, 2, 4, 8, q8);
    CU_ASSERT_EQUAL((uint32_t)q8[0], 0x78563412u);
    CU_ASSERT_EQUAL((uint32_t)q8[1], 0x018000FFu);

    /* zeros, format "gptq": stored zero - 1.  Symmetric 4-bit zero 8 -> 7s;
     * asymmetric zeros 1..8 over 8 outputs -> 0..7 = 0x76543210; 2-bit
     * symmetric zero 2 -> 1s = 0x55555555; 8-bit symmetric 128 -> 0x7F7F7F7F. */
    int32_t z4[2 * 8], qz4[2];
    for (int j = 0; j < 8; j++) {
        z4[j] = 8;
        z4[8 + j] = j + 1;
    }
    qm_pack_qzeros(z4, 2, 8, 4, 1, qz4);
    CU_ASSERT_EQUAL((uint32_t)qz4[0], 0x77777777u);
    CU_ASSERT_EQUAL((uint32_t)qz4[1], 0x76543210u);
    int32_t z2[16], qz2[1], z8[4] = {128, 128, 128, 128}, qz8[1];
    for (int j = 0; j < 16; j++)
        z2[j] = 2;
    qm_pack_qzeros(z2, 1, 16, 2, 1, qz2);
    CU_ASSERT_EQUAL((uint32_t)qz2[0], 0x55555555u);
    qm_pack_qzeros(z8, 1, 4, 8, 1, qz8);
    CU_ASSERT_EQUAL((uint32_t)qz8[0], 0x7F7F7F7Fu);
    /* format "gptq_v2" stores the zero itself */
    qm_pack_qzeros(z4, 2, 8, 4, 0, qz4);
    CU_ASSERT_EQUAL((uint32_t)qz4[0], 0x88888888u);
    CU_ASSERT_EQUAL((uint32_t)qz4[1], 0x87654321u);
}

static void test_words_3bit(void)
{
    /* One column of 32 codes, all 0 except
     *   k = 0  : 3 = 0b011 at bits 0..2             -> w0 |= 0x00000003
     *   k = 10 : 5 = 0b101 at stream bits 30..32    -> w0 |= 1 << 30, w1 |= 1 (bit 32)
     *   k = 21 : 6 = 0b110 at stream bits 63..65    -> bit 63 = 0, w2 |= 0b11 (bits 64, 65)
     *   k = 31 : 4 = 0b100 at stream bits 93..95    -> w2 |= 1 << 31 */
    uint8_t c[32] = {0};
    c[0] = 3;
    c[10] = 5;
    c[21] = 6;
    c[31] = 4;
    int32_t q[3];
    qm_pack_qweight(c, 1, 32, 3, q);
    CU_ASSERT_EQUAL((uint32_t)q[0], 0x40000003u);
    CU_ASSERT_EQUAL((uint32_t)q[1], 0x00000001u);
    CU_ASSERT_EQUAL((uint32_t)q[2], 0x80000003u);
    for (int k = 0; k < 32; k++)
        CU_ASSERT_EQUAL(loader_code(q, 1, 3, k, 0), c[k]);

    /* Symmetric 3-bit zero 4 over 32 outputs, stored as 3 = 0b011: every
     * stream bit p with p % 3 == 2 is 0, the rest 1.  Word 0 clears bits
     * 2, 5, ..., 29 (0x24924924), word 1 bits 0, 3, ..., 30 (0x49249249),
     * word 2 bits 1, 4, ..., 31 (0x92492492). */
    int32_t z[32], qz[3];
    for (int j = 0; j < 32; j++)
        z[j] = 4;
    qm_pack_qzeros(z, 1, 32, 3, 1, qz);
    CU_ASSERT_EQUAL((uint32_t)qz[0], ~0x24924924u);
    CU_ASSERT_EQUAL((uint32_t)qz[1], ~0x49249249u);
    CU_ASSERT_EQUAL((uint32_t)qz[2], ~0x92492492u);
    for (int j = 0; j < 32; j++)
        CU_ASSERT_EQUAL(loader_zero(qz, 32, 3, 0, j), 4);
}

/* ---- every width, random codes, through the loaders' formulas ------------------------------- */

static unsigned long long rng = 0x2545F4914F6CDD1Dull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void test_loader_formulas(void)
{
    static const int widths[] = {2, 3, 4, 8};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        int bits = widths[w], maxq = (1 << bits) - 1, out = 64, in = 128, gs = 32, G = in / gs;
        uint8_t *codes = malloc((size_t)out * in);
        int32_t *zero = malloc((size_t)G * out * 4), *g_idx = malloc((size_t)in * 4);
        int32_t *qw = malloc((size_t)in * bits / 32 * out * 4), *qz = malloc((size_t)G * out * bits / 32 * 4);
        uint16_t *sc = malloc((size_t)G * out * 2);
        float *deq = malloc((size_t)out * in * 4);
        for (size_t k = 0; k < (size_t)out * in; k++)
            codes[k] = (uint8_t)(next() % (uint32_t)(maxq + 1));
        for (size_t k = 0; k < (size_t)G * out; k++) {
            zero[k] = 1 + (int32_t)(next() % (uint32_t)maxq); /* 1..maxq: what format "gptq" can hold */
            sc[k] = qm_f32_to_f16(0.001f * (float)(1 + next() % 100));
        }
        for (int i = 0; i < in; i++) /* act-order: groups follow a permutation of the columns */
            g_idx[i] = ((i * 37) % in) / gs;
        qm_pack_qweight(codes, out, in, bits, qw);
        qm_pack_qzeros(zero, G, out, bits, 1, qz);
        qm_dequant_packed(qw, qz, sc, g_idx, out, in, G, bits, 1, deq);
        int bad_code = 0, bad_zero = 0, bad_w = 0;
        for (int j = 0; j < out; j++) {
            for (int i = 0; i < in; i++) {
                bad_code += loader_code(qw, out, bits, i, j) != codes[(size_t)j * in + i];
                int g = g_idx[i];
                float want = qm_f16_to_f32(sc[(size_t)g * out + j]) *
                             (float)(loader_code(qw, out, bits, i, j) - loader_zero(qz, out, bits, g, j));
                bad_w += deq[(size_t)j * in + i] != want;
            }
            for (int g = 0; g < G; g++)
                bad_zero += loader_zero(qz, out, bits, g, j) != zero[(size_t)g * out + j];
        }
        CU_ASSERT_EQUAL(bad_code, 0);
        CU_ASSERT_EQUAL(bad_zero, 0);
        CU_ASSERT_EQUAL(bad_w, 0);
        if (bad_code || bad_zero || bad_w)
            fprintf(stderr, "\n%d bits: %d codes, %d zeros, %d weights differ from the loaders' reading\n", bits,
                    bad_code, bad_zero, bad_w);
        free(codes);
        free(zero);
        free(g_idx);
        free(qw);
        free(qz);
        free(sc);
        free(deq);
    }
}

/* A packed field never spills into its neighbours: GPTQModel converts
 * "gptq" to its internal v2 by adding 0x11111111 (4 bits) to each qzeros
 * word, a carrying add that is only right while every stored zero - 1 is
 * below maxq; qmoe's zeros are in [1, maxq], so stored values are in
 * [0, maxq - 1] and the add never carries. */
static void test_v1_to_v2_add(void)
{
    int32_t z[8] = {1, 15, 8, 2, 15, 1, 9, 15}, qz[1], back[8];
    qm_pack_qzeros(z, 1, 8, 4, 1, qz);
    uint32_t v2 = (uint32_t)qz[0] + 0x11111111u;
    int32_t w = (int32_t)v2;
    qm_unpack_qzeros(&w, 1, 8, 4, 0, back); /* read as v2: no offset */
    for (int j = 0; j < 8; j++)
        CU_ASSERT_EQUAL(back[j], z[j]);
}

/* ---- one linear as checkpoint tensors ---------------------------------------------------- */

/* qm_pack_linear: the four tensors pack.h lists, in that order, with its
 * dtypes and shapes, and the hand-worked words of test_words_2_4_8. */
static void test_linear_tensors(void)
{
    int out = 8, in = 8, G = 2;
    uint8_t codes[8 * 8];
    int32_t zero[2 * 8], g_idx[8];
    float scale[2 * 8];
    for (int j = 0; j < out; j++) {
        for (int i = 0; i < in; i++)
            codes[j * in + i] = (uint8_t)((i + j) % 16);
        zero[j] = 8;
        zero[out + j] = j + 1;
        scale[j] = scale[out + j] = 0.5f;
    }
    for (int i = 0; i < in; i++)
        g_idx[i] = i / 4;
    qm_qresult r = {.out = out, .in = in, .groups = G, .codes = codes, .scale = scale, .zero = zero, .g_idx = g_idx};
    const char *names[QM_PACK_TENSORS] = {"m.qweight", "m.qzeros", "m.scales", "m.g_idx"};
    qm_diag *d = qm_diag_new();
    qm_packed_linear p;
    CU_ASSERT_EQUAL_FATAL(qm_pack_linear(&r, 4, names, &p, d), QM_OK);
    static const qm_dtype dt[QM_PACK_TENSORS] = {QM_DT_I32, QM_DT_I32, QM_DT_F16, QM_DT_I32};
    static const int ndim[QM_PACK_TENSORS] = {2, 2, 2, 1};
    const uint64_t shape[QM_PACK_TENSORS][2] = {{1, 8}, {2, 1}, {2, 8}, {8, 0}};
    for (int k = 0; k < QM_PACK_TENSORS; k++) {
        CU_ASSERT_PTR_EQUAL(p.e[k].name, names[k]);
        CU_ASSERT_EQUAL(p.e[k].dtype, dt[k]);
        CU_ASSERT_EQUAL(p.e[k].ndim, ndim[k]);
        for (int i = 0; i < ndim[k]; i++)
            CU_ASSERT_EQUAL(p.e[k].shape[i], shape[k][i]);
    }
    const uint32_t *qw = p.e[0].data, *qz = p.e[1].data;
    const uint16_t *sc = p.e[2].data;
    CU_ASSERT_EQUAL(qw[0], 0x76543210u);
    CU_ASSERT_EQUAL(qw[7], 0xEDCBA987u);
    CU_ASSERT_EQUAL(qz[0], 0x77777777u);
    CU_ASSERT_EQUAL(qz[1], 0x76543210u);
    CU_ASSERT_EQUAL(sc[0], 0x3800); /* 0.5 in float16 */
    CU_ASSERT_EQUAL(sc[15], 0x3800);
    CU_ASSERT_PTR_EQUAL(p.e[3].data, g_idx);
    CU_ASSERT_STRING_EQUAL(qm_pack_names[0], "qweight");
    CU_ASSERT_STRING_EQUAL(qm_pack_names[3], "g_idx");
    qm_packed_linear_free(&p);
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("GPTQ packing as the loaders read it", NULL, NULL);
    CU_add_test(s, "hand-worked words: 2, 4, 8 bits and zero points", test_words_2_4_8);
    CU_add_test(s, "hand-worked words: 3 bits across int32 boundaries", test_words_3bit);
    CU_add_test(s, "2/3/4/8 bits, act-order g_idx: codes, zeros, weights", test_loader_formulas);
    CU_add_test(s, "format gptq -> gptq_v2 by word addition never carries", test_v1_to_v2_add);
    CU_add_test(s, "one linear: the four tensors, their dtypes, shapes and words", test_linear_tensors);
    return tu_run();
}
