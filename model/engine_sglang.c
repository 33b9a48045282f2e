/* engine_sglang.c: what SGLang does with a qmoe GPTQ checkpoint.
 *
 * Read in sgl-project/sglang main (2025-2026): GPTQ MoE layers exist only on
 * the Marlin path (symmetric int4/int8) or with --quantization moe_wna16;
 * plain GPTQConfig gives a FusedMoE no quantized method, and GPTQMarlinConfig
 * builds every MoE layer from the base config, whatever `dynamic` says.
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_WIDTHS, QM_ENG_OTHERS, 0, QM_ENG_W(2) | QM_ENG_W(3) | QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "its GPTQ linears take 2, 3, 4 or 8 bits", "python/sglang/srt/layers/quantization/gptq.py GPTQConfig.__init__"},
    {QM_EC_WIDTHS, QM_ENG_ROUTED, 0, QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "its GPTQ MoE methods (Marlin MoE, moe_wna16) take int4 and int8 only",
     "python/sglang/srt/layers/quantization/gptq.py GPTQMarlinConfig, moe_wna16.py is_moe_wna16_compatible"},
    {QM_EC_SYM, QM_ENG_ROUTED, 0, 0, QM_ENG_REFUSES,
     "Marlin MoE has no asymmetric type, and plain GPTQConfig has no MoE method",
     "python/sglang/srt/layers/quantization/gptq.py GPTQMarlinConfig.__init__, GPTQConfig.get_quant_method"},
    {QM_EC_ONE_SCHEME, QM_ENG_ROUTED, 0, 0, QM_ENG_REFUSES,
     "MoE layers are built from the base config; `dynamic` is read for linears only",
     "python/sglang/srt/layers/quantization/gptq.py GPTQMarlinConfig.get_quant_method"},
    {QM_EC_ONE_SCHEME, QM_ENG_ROUTED, 0, 1, QM_ENG_WRONG,
     "MoE layers are built from the base config; `dynamic` is read for linears only, so other settings load with "
     "the same shapes",
     "python/sglang/srt/layers/quantization/gptq.py GPTQMarlinConfig.get_quant_method"},
    {QM_EC_FUSED, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "qkv_proj and gate_up_proj are one module each, with one scheme for all their parts",
     "python/sglang/srt/layers/quantization/gptq.py get_linear_quant_method"},
    {QM_EC_LAYER_EXPERTS, QM_ENG_ALL, 0, 1, QM_ENG_REFUSES,
     "one FusedMoE holds all experts of a layer at one width",
     "python/sglang/srt/layers/quantization/gptq/schemes/gptq_moe.py GPTQMarlinMoEScheme.create_weights"},
};

const qm_engine qm_engine_sglang = {"sglang", "main 2025-2026", "gptq", rules, sizeof rules / sizeof *rules};
