/* dtype.c: the dtype table and float conversions. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "model/dtype.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [QM_DT_BOOL] = {"BOOL", 1},     [QM_DT_U8] = {"U8", 1},
    [QM_DT_I8] = {"I8", 1},         [QM_DT_F8_E4M3] = {"F8_E4M3", 1},
    [QM_DT_F8_E5M2] = {"F8_E5M2", 1}, [QM_DT_I16] = {"I16", 2},
    [QM_DT_U16] = {"U16", 2},       [QM_DT_F16] = {"F16", 2},
    [QM_DT_BF16] = {"BF16", 2},     [QM_DT_I32] = {"I32", 4},
    [QM_DT_U32] = {"U32", 4},       [QM_DT_F32] = {"F32", 4},
    [QM_DT_I64] = {"I64", 8},       [QM_DT_U64] = {"U64", 8},
    [QM_DT_F64] = {"F64", 8},
};
_Static_assert(sizeof dtypes / sizeof dtypes[0] == QM_DT_COUNT, "dtype table matches the enum");

const char *qm_dtype_name(qm_dtype t) { return t < QM_DT_COUNT ? dtypes[t].name : "?"; }
size_t qm_dtype_size(qm_dtype t) { return t < QM_DT_COUNT ? dtypes[t].size : 0; }

int qm_dtype_parse(const char *name, qm_dtype *t)
{
    /* every tensor of a header passes here: the first byte rules most out */
    for (int i = 0; i < QM_DT_COUNT; i++)
        if (name[0] == dtypes[i].name[0] && strcmp(name, dtypes[i].name) == 0) {
            *t = (qm_dtype)i;
            return 1;
        }
    return 0;
}

const char *qm_dtype_list(void)
{
    return "BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64";
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float qm_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t qm_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float qm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t qm_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00;
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return sign | 0x7c00;
    if (a < 0x38800000u) { /* below the smallest normal: subnormal or zero */
        if (a < 0x33000000u)
            return sign;
        uint32_t man = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(a >> 23); /* value = man * 2^(e - 150); unit 2^-24 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1); /* round to nearest even at bit 13 */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

/* Each loop also ORs together a test of every element's exponent bits (all
 * ones: infinite or NaN), a compare and an or per element that the
 * conversion's loads already pay for, so checking costs no extra pass. */
int qm_to_f32(qm_dtype t, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    unsigned bad = 0;
    switch (t) {
    case QM_DT_F32:
        memcpy(dst, src, n * 4);
        for (size_t i = 0; i < n; i++)
            bad |= (f32_bits(dst[i]) & 0x7f800000u) == 0x7f800000u;
        break;
    case QM_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            bad |= (v & 0x7f80u) == 0x7f80u;
            dst[i] = qm_bf16_to_f32(v);
        }
        break;
    case QM_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            bad |= (v & 0x7c00u) == 0x7c00u;
            dst[i] = qm_f16_to_f32(v);
        }
        break;
    default:
        return -1;
    }
    return bad ? 1 : 0;
}

size_t qm_first_nonfinite(const float *x, size_t n)
{
    size_t i = 0;
    while (i < n && isfinite(x[i]))
        i++;
    return i;
}
