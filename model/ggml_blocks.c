/* ggml_blocks.c: ggml's block types (ggml-common.h) as qmoe writes and
 * reads them: the type table, rows written from GPTQ's codes, and every
 * type's dequantization exactly as ggml-quants.c's dequantize_row_* computes
 * it (the same float operations in the same order, so the same bits).
 *
 * Block layouts (all little-endian, f16 = IEEE half):
 *   Q4_0 {f16 d; u8 qs[16]}             x = d (q - 8); value j in the low
 *                                         nibble of qs[j], j + 16 in its high
 *   Q4_1 {f16 d, m; u8 qs[16]}          x = d q + m
 *   Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}   x = d (q - 16), bit 4 of value j in
 *                                         bit j of qh (as one u32)
 *   Q5_1 {f16 d, m; u8 qh[4]; qs[16]}   x = d q + m
 *   Q8_0 {f16 d; i8 qs[32]}             x = d q
 * k-quants, super-blocks of 256:
 *   Q2_K {u8 scales[16]; u8 qs[64]; f16 d, dmin}  16 sub-blocks of 16:
 *        x = (d sc) q - (dmin m), sc the low and m the high nibble of
 *        scales[j], q 2 bits
 *   Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}  16 sub-blocks of
 *        16: x = (d (s - 32)) (q - 4), s 6 bits, q's low 2 bits in qs and
 *        its high bit in hmask
 *   Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}  8 sub-blocks of 32:
 *        x = (d sc) q - (dmin m), sc and m 6 bits (get_scale_min_k4)
 *   Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}  as Q4_K, q 5 bits
 *   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}  16 sub-blocks of
 *        16: x = (d s) (q - 32), q 6 bits
 * In Q2_K, Q3_K and Q6_K the 2-bit fields of value e sit in byte
 * (e / 128) 32 + e % 32 at bit 2 ((e % 128) / 32); Q3_K's high bit of value
 * e is bit e / 32 of hmask[e % 32]; Q4_K's and Q5_K's nibbles of value e are
 * in byte (e / 64) 32 + e % 32, low for (e % 64) < 32.
 */
#include "config.h"

#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static float h(const uint8_t *p) { return qm_f16_to_f32(get16(p)); }

/* ---- one block to floats, as ggml-quants.c ---------------------------------------------------- */

static void deq_f32(const uint8_t *b, float *y) { memcpy(y, b, 4); }
static void deq_f16(const uint8_t *b, float *y) { *y = h(b); }
static void deq_bf16(const uint8_t *b, float *y) { *y = qm_bf16_to_f32(get16(b)); }

static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = h(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 15) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = h(b), m = h(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 15) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}

static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void deq_q5(const uint8_t *b, float *y, int has_min)
{
    float d = h(b), m = has_min ? h(b + 2) : 0;
    const uint8_t *p = b + (has_min ? 4 : 2), *qs = p + 4;
    uint32_t qh = get32(p);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 15) | (int)(((qh >> j) << 4) & 0x10), x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        if (has_min) {
            y[j] = (float)x0 * d + m;
            y[j + 16] = (float)x1 * d + m;
        } else {
            y[j] = (float)(x0 - 16) * d;
            y[j + 16] = (float)(x1 - 16) * d;
        }
    }
}

static void deq_q5_0(const uint8_t *b, float *y) { deq_q5(b, y, 0); }
static void deq_q5_1(const uint8_t *b, float *y) { deq_q5(b, y, 1); }

static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = h(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* The 2 bits of value e of a 256 super-block packed as Q2_K/Q3_K/Q6_K do. */
static int crumb(const uint8_t *qs, int e) { return (qs[e / 128 * 32 + e % 32] >> (2 * (e % 128 / 32))) & 3; }

static void deq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *qs = b + 16;
    float d = h(b + 80), dmin = h(b + 82);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(sc[j] & 15), ml = dmin * (float)(sc[j] >> 4);
        for (int l = 0; l < 16; l++)
            y[16 * j + l] = dl * (float)crumb(qs, 16 * j + l) - ml;
    }
}

/* Q3_K's 6-bit scale of sub-block j, biased by 32. */
static int q3_scale(const uint8_t *s, int j)
{
    int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
    return lo | ((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
}

static void deq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
    float d = h(b + 108);
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(q3_scale(s, j) - 32);
        for (int l = 0; l < 16; l++) {
            int e = 16 * j + l;
            y[e] = dl * (float)(crumb(qs, e) - ((hm[e % 32] >> (e / 32)) & 1 ? 0 : 4));
        }
    }
}

/* get_scale_min_k4: Q4_K's and Q5_K's 6-bit scale and min of sub-block j. */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

static void deq_q45_k(const uint8_t *b, float *y, int five)
{
    float d = h(b), dmin = h(b + 2);
    const uint8_t *s = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, s, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            int e = 32 * j + l, q = (qs[e / 64 * 32 + l] >> (4 * (j % 2))) & 15;
            if (five)
                q += (qh[l] >> j) & 1 ? 16 : 0;
            y[e] = dl * (float)q - ml;
        }
    }
}

static void deq_q4_k(const uint8_t *b, float *y) { deq_q45_k(b, y, 0); }
static void deq_q5_k(const uint8_t *b, float *y) { deq_q45_k(b, y, 1); }

static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h(b + 208);
    for (int e = 0; e < 256; e++) {
        int n = e / 128, r = e % 128, l = r % 32, k = r / 32; /* k: which of ggml's q1..q4 */
        int lo = (ql[n * 64 + l + (k % 2) * 32] >> (4 * (k / 2))) & 15;
        int q = (lo | crumb(qh, e) << 4) - 32;
        y[e] = d * (float)sc[n * 8 + l / 16 + 2 * k] * (float)q;
    }
}

const qm_ggml_type_info qm_ggml_types[QM_GGML_TYPE_COUNT] = {
    [QM_GGML_F32] = {"F32", 1, 4, deq_f32},
    [QM_GGML_F16] = {"F16", 1, 2, deq_f16},
    [QM_GGML_Q4_0] = {"Q4_0", 32, 2 + 16, deq_q4_0},
    [QM_GGML_Q4_1] = {"Q4_1", 32, 2 + 2 + 16, deq_q4_1},
    [QM_GGML_Q5_0] = {"Q5_0", 32, 2 + 4 + 16, deq_q5_0},
    [QM_GGML_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16, deq_q5_1},
    [QM_GGML_Q8_0] = {"Q8_0", 32, 2 + 32, deq_q8_0},
    [QM_GGML_Q8_1] = {"Q8_1", 32, 2 + 2 + 32, NULL},
    [QM_GGML_Q2_K] = {"Q2_K", 256, 16 + 64 + 2 + 2, deq_q2_k},
    [QM_GGML_Q3_K] = {"Q3_K", 256, 32 + 64 + 12 + 2, deq_q3_k},
    [QM_GGML_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 128, deq_q4_k},
    [QM_GGML_Q5_K] = {"Q5_K", 256, 2 + 2 + 12 + 32 + 128, deq_q5_k},
    [QM_GGML_Q6_K] = {"Q6_K", 256, 128 + 64 + 16 + 2, deq_q6_k},
    [QM_GGML_Q8_K] = {"Q8_K", 256, 4 + 256 + 32, NULL},
    [QM_GGML_BF16] = {"BF16", 1, 2, deq_bf16},
};

uint64_t qm_ggml_nbytes(int t, uint64_t n)
{
    if (t < 0 || t >= QM_GGML_TYPE_COUNT || !qm_ggml_types[t].name || n % (uint64_t)qm_ggml_types[t].block)
        return 0;
    return n / (uint64_t)qm_ggml_types[t].block * (uint64_t)qm_ggml_types[t].bytes;
}

void qm_ggml_to_f32(int t, const uint8_t *src, float *dst, size_t n)
{
    const qm_ggml_type_info *ti = &qm_ggml_types[t];
    for (size_t b = 0; b < n / (size_t)ti->block; b++)
        ti->deq(src + b * (size_t)ti->bytes, dst + b * (size_t)ti->block);
}

/* ---- rows from GPTQ's codes ------------------------------------------------------------------- */

void qm_ggml_put_row(int t, uint8_t *dst, const uint8_t *codes, const uint16_t *d, const uint16_t *min, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, codes += 32) {
        uint8_t *p = dst + b * (size_t)qm_ggml_types[t].bytes;
        put16(p, d[b]);
        if (t == QM_GGML_Q8_0) {
            for (int j = 0; j < 32; j++)
                p[2 + j] = (uint8_t)(int8_t)(codes[j] - 128);
            continue;
        }
        int has_min = t == QM_GGML_Q4_1 || t == QM_GGML_Q5_1, five = t == QM_GGML_Q5_0 || t == QM_GGML_Q5_1;
        if (has_min)
            put16(p + 2, min[b]);
        uint8_t *qs = p + (has_min ? 4 : 2);
        if (five) { /* bit 4 of value j in bit j of qh (one little-endian u32), before qs */
            uint32_t qh = 0;
            for (int j = 0; j < 32; j++)
                qh |= (uint32_t)(codes[j] >> 4 & 1) << j;
            for (int k = 0; k < 4; k++)
                qs[k] = (uint8_t)(qh >> (8 * k));
            qs += 4;
        }
        for (int j = 0; j < 16; j++)
            qs[j] = (uint8_t)((codes[j] & 15) | (codes[j + 16] & 15) << 4);
    }
}

/* Value e's 2 bits into a Q2_K/Q3_K qs (zeroed before). */
static void put_crumb(uint8_t *qs, int e, int v) { qs[e / 128 * 32 + e % 32] |= (uint8_t)((v & 3) << (2 * (e % 128 / 32))); }

void qm_ggml_put_krow(int t, uint8_t *dst, const uint8_t *codes, const qm_ggml_kscales *k, size_t n)
{
    int sub = t == QM_GGML_Q4_K ? 32 : 16, ns = 256 / sub;
    for (size_t b = 0; b < n / 256; b++, codes += 256) {
        uint8_t *p = dst + b * (size_t)qm_ggml_types[t].bytes;
        const int8_t *l = k->l + b * (size_t)ns;
        const uint8_t *m = k->m ? k->m + b * (size_t)ns : NULL;
        memset(p, 0, (size_t)qm_ggml_types[t].bytes);
        if (t == QM_GGML_Q2_K) {
            for (int j = 0; j < 16; j++)
                p[j] = (uint8_t)((l[j] & 15) | (m[j] & 15) << 4);
            for (int e = 0; e < 256; e++)
                put_crumb(p + 16, e, codes[e]);
            put16(p + 80, k->d[b]);
            put16(p + 82, k->dmin[b]);
        } else if (t == QM_GGML_Q3_K) {
            for (int e = 0; e < 256; e++) {
                if (codes[e] > 3)
                    p[e % 32] |= (uint8_t)(1 << (e / 32));
                put_crumb(p + 32, e, codes[e]);
            }
            uint8_t *s = p + 96;
            for (int j = 0; j < 16; j++) { /* as quantize_row_q3_K_ref packs l + 32 */
                int v = l[j] + 32;
                s[j % 8] |= (uint8_t)((v & 15) << (j < 8 ? 0 : 4));
                s[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
            }
            put16(p + 108, k->d[b]);
        } else { /* Q4_K */
            put16(p, k->d[b]);
            put16(p + 2, k->dmin[b]);
            uint8_t *s = p + 4, *qs = p + 16;
            for (int j = 0; j < 8; j++) {
                int ls = l[j], lm = m[j];
                if (j < 4) {
                    s[j] = (uint8_t)ls;
                    s[j + 4] = (uint8_t)lm;
                } else {
                    s[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
                    s[j - 4] |= (uint8_t)((ls >> 4) << 6);
                    s[j] |= (uint8_t)((lm >> 4) << 6);
                }
            }
            for (int e = 0; e < 256; e++)
                qs[e / 64 * 32 + e % 32] |= (uint8_t)((codes[e] & 15) << (4 * (e % 64 / 32)));
        }
    }
}
