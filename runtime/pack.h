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
 *
 * qm_pack_linear() turns one GPTQ result into those four tensors, ready for
 * qm_st_write(); every writer of this format (the quantize pipeline's
 * "gptq" output, `qmoe gptq-tensor -o`) packs through it.
 */
#ifndef QM_PACK_H
#define QM_PACK_H

#include <stdint.h>

#include "runtime/gptq.h"
#include "model/safetensors.h"

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

/* The tensors of one linear, in the order a shard stores them; a checkpoint
 * names them "<module>.<name>" (module: the weight's name less ".weight"). */
enum { QM_PACK_TENSORS = 4 };
extern const char *const qm_pack_names[QM_PACK_TENSORS]; /* qweight, qzeros, scales, g_idx */

/* One linear packed for a checkpoint: e[k] is tensor qm_pack_names[k]. */
typedef struct qm_packed_linear {
    qm_st_entry e[QM_PACK_TENSORS];       /* names and g_idx borrowed (see qm_pack_linear) */
    uint64_t shape[QM_PACK_TENSORS][2];   /* e[k].shape points here */
    int32_t *qweight, *qzeros;            /* owned */
    uint16_t *scales;                     /* float16; owned */
} qm_packed_linear;

/* Pack result r (qm_gptq() or qm_rtn() at `bits`) in format "gptq" (zero
 * points stored minus one), e[k] named names[k].  Requires r->in * bits and
 * r->out * bits to be multiples of 32 (callers check and say which tensor).
 * r and names must outlive p.  On success the caller frees p with
 * qm_packed_linear_free(); on failure (QM_ENOMEM) p holds nothing. */
qm_status qm_pack_linear(const qm_qresult *r, int bits, const char *const names[QM_PACK_TENSORS],
                         qm_packed_linear *p, qm_diag *d);
void qm_packed_linear_free(qm_packed_linear *p);

#endif
