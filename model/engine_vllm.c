/* engine_vllm.c: what vLLM does with a qmoe GPTQ checkpoint.
 *
 * Read in vllm-project/vllm main (2025-2026; the files named below), where a
 * GPTQ checkpoint goes to gptq_marlin when every setting is symmetric 4- or
 * 8-bit, else to the exllama `gptq` path; either sends a FusedMoE layer that
 * Marlin cannot take to MoeWNA16.  Quant methods are per vLLM module: one
 * qkv_proj, one gate_up_proj, one FusedMoE holding all experts of a layer.
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_WIDTHS, QM_ENG_OTHERS, 0, QM_ENG_W(2) | QM_ENG_W(3) | QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "its GPTQ linears take 2, 3, 4 or 8 bits", "vllm/model_executor/layers/quantization/gptq.py GPTQConfig.__init__"},
    {QM_EC_WIDTHS, QM_ENG_ROUTED, 0, QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "every GPTQ MoE path (Marlin MoE, MoeWNA16) takes int4 and int8 only",
     "vllm/model_executor/layers/quantization/gptq_marlin.py GPTQMarlinMoEMethod.__init__, moe_wna16.py "
     "MoeWNA16Method.__init__"},
    {QM_EC_SYM, QM_ENG_ROUTED, 0, 0, QM_ENG_WRONG,
     "an asymmetric checkpoint leaves Marlin, and the gptq path builds MoeWNA16 with sym forced true, so qzeros are "
     "never loaded",
     "vllm/model_executor/layers/quantization/gptq.py GPTQConfig.get_quant_method, moe_wna16.py "
     "moe_wna16_weight_loader"},
    {QM_EC_NO_ACT, QM_ENG_ROUTED, 0, 0, QM_ENG_WRONG,
     "MoeWNA16, where mixed or asymmetric MoE layers go, drops g_idx",
     "vllm/model_executor/layers/quantization/moe_wna16.py moe_wna16_weight_loader, process_weights_after_loading"},
    {QM_EC_FUSED, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "qkv_proj and gate_up_proj are one module each, with one scheme for all their parts",
     "vllm/model_executor/layers/quantization/utils/gptq_utils.py is_layer_gptq_quantized, get_dynamic_override"},
    {QM_EC_LAYER_EXPERTS, QM_ENG_ALL, 0, 1, QM_ENG_REFUSES,
     "one FusedMoE holds all experts' w13 and w2 at one width and group size",
     "vllm/model_executor/layers/quantization/gptq_marlin.py GPTQMarlinMoEMethod.create_weights"},
};

const qm_engine qm_engine_vllm = {"vllm", "main 2025-2026", "gptq", rules, sizeof rules / sizeof *rules};
