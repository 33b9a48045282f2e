/* engine_llamacpp.c: what llama.cpp needs of a plan written as GGUF.
 *
 * Read in ggml-org/llama.cpp (2025-2026): src/llama-quant.cpp and the model
 * graphs in src/models/.  A layer's routed experts are one 3-D tensor per
 * projection with one ggml type; ggml blocks hold 32 values (Q8_0, Q4_0,
 * Q4_1) or 256 (the k-quants that 2- and 3-bit weights need, and Q4_K for
 * 4-bit group 256: runtime/qwriter_gguf.c says how a plan maps to types); blocks carry
 * no column order, so no act-order; Q8_0 has no minimum, so 8-bit is
 * symmetric.  Q5_0/Q5_1 (5-bit, blocks of 32) are where rows too narrow
 * for the k-quants go between 4 and 8 bits, as llama.cpp's own presets
 * send them (Q4_K -> Q5_0, Q5_K -> Q5_1 in tensor_type_fallback).  The router is never quantized (qmoe plans keep it).
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_LAYER_EXPERTS, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "each routed projection of a layer is one tensor (ffn_gate_exps, ffn_up_exps, ffn_down_exps) of one type",
     "src/models/deepseek.cpp build_moe_ffn; src/llama-model.cpp create_tensor"},
    {QM_EC_INPUT_MULTIPLE, QM_ENG_ALL, 0, 32, QM_ENG_REFUSES,
     "ggml's quantized blocks hold 32 values of a row", "ggml/src/ggml-quants.c QK4_0, QK8_0"},
    {QM_EC_INPUT_MULTIPLE, QM_ENG_ALL, QM_ENG_W(2) | QM_ENG_W(3), 256, QM_ENG_REFUSES,
     "Q2_K and Q3_K super-blocks hold 256 values of a row (qmoe writes shorter rows' 2- and 3-bit codes as "
     "Q4_0/Q4_1, 4.5-5 bits per weight, or refuses them with --strict)",
     "src/llama-quant.cpp tensor_type_fallback"},
    {QM_EC_GROUPS, QM_ENG_ALL, QM_ENG_W(8), QM_ENG_G(5), QM_ENG_REFUSES,
     "Q8_0 blocks give each 32 values of a row one scale", "ggml/src/ggml-common.h block_q8_0"},
    {QM_EC_GROUPS, QM_ENG_ALL, QM_ENG_W(5), QM_ENG_G(5), QM_ENG_REFUSES,
     "Q5_0 and Q5_1 blocks give each 32 values of a row one scale (the 5 bits rows of any multiple of 32 hold)",
     "ggml/src/ggml-common.h block_q5_0, block_q5_1"},
    {QM_EC_GROUPS, QM_ENG_ALL, QM_ENG_W(4), QM_ENG_G(5) | QM_ENG_G(8), QM_ENG_REFUSES,
     "Q4_0 and Q4_1 blocks give each 32 values of a row one scale, Q4_K each 256 (in sub-blocks of 32)",
     "ggml/src/ggml-common.h block_q4_0, block_q4_K"},
    {QM_EC_GROUPS, QM_ENG_ALL, QM_ENG_W(2) | QM_ENG_W(3), QM_ENG_G(4) | QM_ENG_G(8), QM_ENG_REFUSES,
     "Q2_K and Q3_K super-blocks of 256 values give each 16 one scale", "ggml/src/ggml-common.h block_q2_K"},
    {QM_EC_NO_ACT, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "ggml blocks have no g_idx: a row's groups are its consecutive columns", "ggml/src/ggml-quants.c block_q4_0"},
    {QM_EC_SYM, QM_ENG_ALL, QM_ENG_W(8), 0, QM_ENG_REFUSES,
     "Q8_0 stores a scale and no minimum", "ggml/src/ggml-quants.c block_q8_0"},
};

const qm_engine qm_engine_llamacpp = {"llama.cpp", "master 2025-2026", "gguf", rules, sizeof rules / sizeof *rules};
