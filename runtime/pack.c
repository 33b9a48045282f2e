/* pack.c: bit-stream packing of GPTQ codes and zero points (see pack.h). */
#include "config.h"

#include <string.h>

#include "runtime/dtype.h"
#include "runtime/pack.h"

/* Put value v (bits wide) at bit position pos of the stream whose word k is w[k * stride]. */
static void put(uint32_t *w, size_t stride, uint64_t pos, int bits, uint32_t v)
{
    size_t k = (size_t)(pos / 32);
    int off = (int)(pos % 32);
    w[k * stride] |= v << off;
    if (off + bits > 32)
        w[(k + 1) * stride] |= v >> (32 - off);
}

/* Word i of a stream that may sit unaligned in a mapped file. */
static uint32_t word(const uint32_t *w, size_t i)
{
    uint32_t v;
    memcpy(&v, (const unsigned char *)w + 4 * i, 4);
    return v;
}

static uint32_t get(const uint32_t *w, size_t stride, uint64_t pos, int bits)
{
    size_t k = (size_t)(pos / 32);
    int off = (int)(pos % 32);
    uint64_t two = word(w, k * stride) >> off;
    if (off + bits > 32)
        two |= (uint64_t)word(w, (k + 1) * stride) << (32 - off);
    return (uint32_t)(two & ((1u << bits) - 1));
}

void qm_pack_qweight(const uint8_t *codes, int out, int in, int bits, int32_t *qweight)
{
    uint32_t *q = (uint32_t *)qweight;
    size_t rows = (size_t)in * bits / 32;
    for (size_t i = 0; i < rows * (size_t)out; i++)
        q[i] = 0;
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            put(q + o, (size_t)out, (uint64_t)i * bits, bits, codes[(size_t)o * in + i]);
}

void qm_unpack_qweight(const int32_t *qweight, int out, int in, int bits, uint8_t *codes)
{
    const uint32_t *q = (const uint32_t *)qweight;
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            codes[(size_t)o * in + i] = (uint8_t)get(q + o, (size_t)out, (uint64_t)i * bits, bits);
}

void qm_pack_qzeros(const int32_t *zero, int groups, int out, int bits, int offset, int32_t *qzeros)
{
    uint32_t mask = (1u << bits) - 1, *q = (uint32_t *)qzeros;
    size_t words = (size_t)out * bits / 32;
    for (size_t i = 0; i < (size_t)groups * words; i++)
        q[i] = 0;
    for (int g = 0; g < groups; g++)
        for (int o = 0; o < out; o++)
            put(q + (size_t)g * words, 1, (uint64_t)o * bits, bits,
                (uint32_t)(zero[(size_t)g * out + o] - offset) & mask);
}

void qm_unpack_qzeros(const int32_t *qzeros, int groups, int out, int bits, int offset, int32_t *zero)
{
    const uint32_t *q = (const uint32_t *)qzeros;
    size_t words = (size_t)out * bits / 32;
    for (int g = 0; g < groups; g++)
        for (int o = 0; o < out; o++)
            zero[(size_t)g * out + o] = (int32_t)get(q + (size_t)g * words, 1, (uint64_t)o * bits, bits) + offset;
}

void qm_dequant_packed(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales_f16,
                       const int32_t *g_idx, int out, int in, int groups, int bits, int offset, float *w)
{
    const uint32_t *q = (const uint32_t *)qweight, *z = (const uint32_t *)qzeros;
    size_t zwords = (size_t)out * bits / 32;
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            int32_t g;
            memcpy(&g, (const unsigned char *)g_idx + 4 * (size_t)i, 4);
            g = g < 0 ? 0 : g >= groups ? groups - 1 : g;
            int code = (int)get(q + o, (size_t)out, (uint64_t)i * bits, bits);
            int zero = (int)get(z + (size_t)g * zwords, 1, (uint64_t)o * bits, bits) + offset;
            w[(size_t)o * in + i] = qm_f16_to_f32(scales_f16[(size_t)g * out + o]) * (float)(code - zero);
        }
}
