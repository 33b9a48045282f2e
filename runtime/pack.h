/* pack.h: the GPTQ checkpoint layout read by Hugging Face transformers, vLLM
 * and GPTQModel (checkpoint_format "gptq").
 *
 *   qweight  int32 (in * bits / 32, out)  codes packed along the input dimension
 *   qzeros   int32 (groups, out * bits / 32)  zero points packed along the output
 *   scales   float16 (groups, out)
 *   g_idx    int32 (in)  group of each input column
 *
 * Packing is one little-endian bit stream per column of qweight (per row of
 * qzeros): value k occupies bits [k*bits, (k+1)*bits) of the stream, word
 * k*bits/32 first.  For 2, 4 and 8 bits that is 32/bits values per word;
 * 3-bit values straddle words (32 values in 3 words), as AutoGPTQ packs them.
 *
 * Format "gptq" stores each zero point minus one (a historical offset its
 * readers add back); a zero point of 0 therefore cannot be stored, so
 * qmoe's asymmetric grid keeps zero >= 1 when writing this format (see the
 * quantize pipeline).
 */
#ifndef QM_PACK_H
#define QM_PACK_H

#include <stdint.h>

/* codes (out, in) -> qweight (in*bits/32, out).  Requires in*bits % 32 == 0. */
void qm_pack_qweight(const uint8_t *codes, int out, int in, int bits, int32_t *qweight);
void qm_unpack_qweight(const int32_t *qweight, int out, int in, int bits, uint8_t *codes);
/* zero (groups, out) -> qzeros (groups, out*bits/32), storing zero - offset. */
void qm_pack_qzeros(const int32_t *zero, int groups, int out, int bits, int offset, int32_t *qzeros);
void qm_unpack_qzeros(const int32_t *qzeros, int groups, int out, int bits, int offset, int32_t *zero);

/* Dequantize a packed linear: w (out, in) = scale * (code - zero) by each
 * column's group in g_idx (clamped into [0, groups)).  The packed arrays
 * may be unaligned (they usually point into a mapped checkpoint). */
void qm_dequant_packed(const int32_t *qweight, const int32_t *qzeros, const uint16_t *scales_f16,
                       const int32_t *g_idx, int out, int in, int groups, int bits, int offset, float *w);

#endif
