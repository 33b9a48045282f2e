/* pack.c: bit-stream packing of GPTQ codes and zero points, and one linear's
 * checkpoint tensors built from them (see pack.h).
 *
 * ---- What the public loaders read (checked against their source) ----------------------------
 *
 * Tensors.  Every loader below allocates, per quantized linear X (in, out):
 * X.qweight int32 (in / 32 * bits, out), X.qzeros int32 (ceil(in / group),
 * out / 32 * bits), X.scales float16 (groups, out), X.g_idx int32 (in), with
 * group = in for group_size -1 (AutoGPTQ auto_gptq/nn_modules/qlinear/
 * qlinear_cuda_old.py QuantLinear.__init__; GPTQModel gptqmodel/nn_modules/
 * qlinear/__init__.py GPTQQuantLinear._register_gptq_buffers; vLLM
 * vllm/model_executor/layers/quantization/gptq.py GPTQLinearMethod.
 * create_weights, qweight packed_dim 0 and qzeros packed_dim 1).
 *
 * Codes, 2/4/8 bits.  Unpacking is wf = range(0, 32, bits) and
 * code(i, j) = (qweight[i / (32/bits)][j] >> (bits * (i % (32/bits)))) & mask
 * (qlinear_cuda_old.py forward, torch fallback; GPTQModel
 * PackableQuantLinear.dequantize_weight; the torch fallback in vLLM's
 * gptq.py apply_weights of the stored older version).  AutoGPTQ's pack()
 * writes qweight[row] |= intweight[j] << (bits * (j - i)), GPTQModel's
 * pack_block views 32 input rows as (bits, 32/bits) and shifts by
 * arange(32/bits) * bits: the same little-endian order, first input in the
 * low bits.  Zero points pack the same way along the output dimension.
 *
 * Codes, 3 bits.  32 values in 3 words as 10 | 1 | 10 | 1 | 10: values 0..9
 * at bits 3k of word 0, value 10's low 2 bits at 30..31 and its bit 2 at
 * bit 0 of word 1, values 11..20 at 3k+1, value 21's bit 0 at bit 31 and
 * bits 1..2 at bits 0..1 of word 2, values 22..31 at 3k+2 (AutoGPTQ pack()
 * and the 3x12 wf table with the two fix-ups in forward; GPTQModel
 * _pack_rows_3 and dequantize_weight, identical).  That is exactly one
 * little-endian bit stream, value k at stream bits [3k, 3k+3), which is
 * what put()/get() below implement for every width.
 *
 * Zero points, format "gptq" (v1).  AutoGPTQ's pack() does zeros -= 1
 * before packing and its forward adds 1 after unpacking; weight =
 * scale * (code - zero) with intweight = round(w / scale + zero).  vLLM
 * reads "checkpoint_format" from the quantization config and only
 * "gptq_v2" selects the v2 kernels (gptq.py GPTQLinearMethod.use_v2_format,
 * passed to ops.gptq_gemm); anything else is v1.  GPTQModel runs v2
 * internally and converts a "gptq" checkpoint on load (for kernels that
 * need v2) by adding 0x11111111
 * (4 bits; 0x55555555, 0x01010101 for 2, 8 bits; a per-field shift for 3)
 * to whole qzeros words (gptqmodel/utils/model.py
 * convert_gptq_v1_to_v2_format_module), a carrying add: correct only while
 * every stored zero - 1 is at most maxq - 1.  A zero point of 0 cannot be
 * stored in v1 at all ((0 - 1) & mask reads back as 2^bits), so qmoe's
 * asymmetric grid keeps zero in [1, maxq] (gptq.c grid_from_range).
 * Format "gptq_v2" stores the zero itself (offset 0 here).
 *
 * Symmetric.  zero = 2^(bits-1) (4 bits: 8, stored 7, the familiar
 * 0x77777777).  vLLM's Marlin path (gptq_marlin.py, taken automatically for
 * (bits, sym) in {(4, true), (8, true)}) ignores qzeros altogether and uses
 * the fixed types uint4b8 / uint8b128, i.e. zero 8 / 128: the same grid.
 *
 * act-order.  g_idx[i] is the group of input column i; dequantization is
 * scales[g_idx] * (code - zeros[g_idx]) (GPTQModel dequantize_weight, vLLM
 * fallback); vLLM's exllama path argsorts g_idx and shuffles qweight after
 * loading when desc_act is true.
 *
 * quantization_config.  vLLM GPTQConfig/GPTQMarlinConfig.from_config read
 * bits, group_size, desc_act, sym (Marlin), lm_head (default false),
 * dynamic, modules_in_block_to_quantize, checkpoint_format; GPTQModel
 * QuantizeConfig.from_quant_config (gptqmodel/quantization/config.py) reads
 * its own fields (checkpoint_format as format, default "gptq"; unknown keys
 * ignored) from quantize_config.json first, config.json's
 * quantization_config otherwise; transformers' GPTQConfig
 * (utils/quantization_config.py) maps checkpoint_format to format.
 *
 * dynamic.  Keys are regular expressions, "-:" prefixed to leave a module
 * unquantized, "+:" (or no prefix) to override fields for it; both
 * GPTQModel dynamic_get and vLLM get_dynamic_override (quantization/utils/
 * gptq_utils.py) try them in order with re.match (anchored at the start
 * only) against the module name, first match wins, and an override falls
 * back to the base value for any field it omits.  GPTQModel matches the
 * checkpoint's module names (model.layers.0.self_attn.q_proj).  vLLM matches
 * its own modules: q/k/v fused as self_attn.qkv_proj, gate/up as
 * gate_up_proj, all experts of a layer as one FusedMoE "<...>.experts"
 * (the model files under models/, packed_modules_mapping, FusedMoE(prefix=f"{prefix}.experts")),
 * so qmoe also writes a rule for each fused name whose parts agree
 * (qwriter_gptq.c).  Parts at different settings (q at 8 bits, k at 4) or
 * experts of one layer at different widths cannot be expressed in vLLM.
 * vLLM's GPTQ MoE paths further need 4 or 8 bits: Marlin MoE (sym only) or
 * MoeWNA16, which the plain "gptq" method uses with sym forced true and no
 * dynamic overrides (gptq.py get_quant_method, moe_wna16.py).
 *
 * transformers/optimum.  optimum's GPTQQuantizer.convert_model
 * (optimum/gptq/quantizer.py) replaces every nn.Linear under the block
 * (model.layers) by a QuantLinear of the base setting, ignores "dynamic",
 * and skips only what modules_in_block_to_quantize (a list of lists of
 * names, matched with endswith) leaves out; qmoe writes that list, so a
 * router kept in float is not turned into an empty QuantLinear, but mixed
 * widths load only in GPTQModel and vLLM.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
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

const char *const qm_pack_names[QM_PACK_TENSORS] = {"qweight", "qzeros", "scales", "g_idx"};

/* Entry k of p: d1 = 0 for a 1-D tensor of d0 elements. */
static void entry(qm_packed_linear *p, int k, const char *name, qm_dtype dt, uint64_t d0, uint64_t d1,
                  const void *data)
{
    p->shape[k][0] = d0;
    p->shape[k][1] = d1;
    p->e[k] = (qm_st_entry){name, dt, d1 ? 2 : 1, p->shape[k], data};
}

qm_status qm_pack_linear(const qm_qresult *r, int bits, const char *const names[QM_PACK_TENSORS],
                         qm_packed_linear *p, qm_diag *d)
{
    int out = r->out, in = r->in, G = r->groups;
    memset(p, 0, sizeof *p);
    if (r->lscale) /* its group scales are not fp16 values, and an asymmetric one has no integer zero */
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: a two-level (k-quant) grid has no GPTQ form", names[0]);
    if (r->min) /* a free minimum is not scale x an integer zero */
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: a grid with a free minimum (GGUF's Q4_1, Q5_1) has no GPTQ form",
                            names[0]);
    p->qweight = malloc((size_t)in * bits / 32 * out * 4);
    p->qzeros = malloc((size_t)G * out * bits / 32 * 4);
    p->scales = malloc((size_t)G * out * 2);
    if (!p->qweight || !p->qzeros || !p->scales) {
        qm_packed_linear_free(p);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_pack_qweight(r->codes, out, in, bits, p->qweight);
    qm_pack_qzeros(r->zero, G, out, bits, 1, p->qzeros);
    for (size_t k = 0; k < (size_t)G * out; k++)
        p->scales[k] = qm_f32_to_f16(r->scale[k]);
    entry(p, 0, names[0], QM_DT_I32, (uint64_t)in * bits / 32, (uint64_t)out, p->qweight);
    entry(p, 1, names[1], QM_DT_I32, (uint64_t)G, (uint64_t)out * bits / 32, p->qzeros);
    entry(p, 2, names[2], QM_DT_F16, (uint64_t)G, (uint64_t)out, p->scales);
    entry(p, 3, names[3], QM_DT_I32, (uint64_t)in, 0, r->g_idx);
    return QM_OK;
}

void qm_packed_linear_free(qm_packed_linear *p)
{
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    memset(p, 0, sizeof *p);
}
