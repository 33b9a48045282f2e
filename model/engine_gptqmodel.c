/* engine_gptqmodel.c: what GPTQModel does with a qmoe GPTQ checkpoint.
 *
 * Read in ModelCloud/GPTQModel 7.3.4: `dynamic` is resolved per module
 * (bits, group_size, sym, desc_act, "-:" to skip), experts are separate
 * modules, and the torch kernel takes every width; the limits are which
 * architectures its MODEL_MAP has and the kernels' group sizes.
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_WIDTHS, QM_ENG_ALL, 0, QM_ENG_W(2) | QM_ENG_W(3) | QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "its kernels take 2, 3, 4 or 8 bits", "gptqmodel/nn_modules/qlinear/torch.py SUPPORTS_BITS"},
    {QM_EC_ARCH, QM_ENG_ALL, 0,
     QM_ENG_F(QM_FAMILY_MIXTRAL) | QM_ENG_F(QM_FAMILY_QWEN2MOE) | QM_ENG_F(QM_FAMILY_QWEN3MOE), QM_ENG_REFUSES,
     "its MODEL_MAP has mixtral, qwen2_moe, qwen3_moe and deepseek_v2/v3, not olmoe or deepseek (v1)",
     "gptqmodel/models/auto.py MODEL_MAP"},
    {QM_EC_GROUPS, QM_ENG_ALL, 0, QM_ENG_PER_CHANNEL | 0x7f0u /* 16 .. 1024 */, QM_ENG_REFUSES,
     "its kernels take per-channel or groups of 16 to 1024 columns",
     "gptqmodel/nn_modules/qlinear/torch.py SUPPORTS_GROUP_SIZE"},
};

const qm_engine qm_engine_gptqmodel = {"gptqmodel", "7.3.4", "gptq", rules, sizeof rules / sizeof *rules};
