/* engine_autogptq.c: what AutoGPTQ does with a qmoe GPTQ checkpoint.
 *
 * Read in AutoGPTQ/AutoGPTQ 9f7d370 (2025-04, archived): Mixtral is its only
 * MoE architecture, and make_quant builds every listed module with one
 * QuantLinear for the global bits and group size (no `dynamic`).
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_WIDTHS, QM_ENG_ALL, 0, QM_ENG_W(2) | QM_ENG_W(3) | QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "it quantizes and loads 2, 3, 4 or 8 bits", "auto_gptq/modeling/_base.py BaseQuantizeConfig.__post_init__"},
    {QM_EC_ARCH, QM_ENG_ALL, 0, QM_ENG_F(QM_FAMILY_MIXTRAL), QM_ENG_REFUSES,
     "mixtral is its only MoE model type", "auto_gptq/modeling/_const.py SUPPORTED_MODELS"},
    {QM_EC_ONE_SCHEME, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "every module is built at the global bits and group_size (no `dynamic`): other shapes do not load",
     "auto_gptq/modeling/_utils.py make_quant"},
    {QM_EC_ONE_SCHEME, QM_ENG_ALL, 0, 1, QM_ENG_WRONG,
     "every module is read with the global sym and desc_act (no `dynamic`), and other settings load with the same "
     "shapes",
     "auto_gptq/modeling/_utils.py make_quant"},
};

const qm_engine qm_engine_autogptq = {"autogptq", "9f7d370 (2025-04)", "gptq", rules, sizeof rules / sizeof *rules};
