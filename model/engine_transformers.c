/* engine_transformers.c: what transformers (through optimum's GPTQ
 * integration) does with a qmoe GPTQ checkpoint.
 *
 * Read in huggingface/optimum 83c88b8 (2026-05) optimum/gptq/quantizer.py and
 * transformers' quantizer_gptq.py: the config's `dynamic` is never read, and
 * every linear of the blocks is built with the one global setting.  Routers
 * are skipped through modules_in_block_to_quantize, which qmoe writes.
 */
#include "config.h"

#include "model/engine.h"

static const qm_eng_rule rules[] = {
    {QM_EC_WIDTHS, QM_ENG_ALL, 0, QM_ENG_W(2) | QM_ENG_W(3) | QM_ENG_W(4) | QM_ENG_W(8), QM_ENG_REFUSES,
     "it loads 2, 3, 4 or 8 bits", "optimum/gptq/quantizer.py GPTQQuantizer.__init__"},
    {QM_EC_ONE_SCHEME, QM_ENG_ALL, 0, 0, QM_ENG_REFUSES,
     "every linear is built at the checkpoint's one bits and group_size (`dynamic` is not read): other shapes do "
     "not load",
     "optimum/gptq/quantizer.py GPTQQuantizer.from_dict, _replace_by_quant_layers"},
    {QM_EC_ONE_SCHEME, QM_ENG_ALL, 0, 1, QM_ENG_WRONG,
     "every linear is read with the checkpoint's one sym and desc_act (`dynamic` is not read), and other settings "
     "load with the same shapes",
     "optimum/gptq/quantizer.py GPTQQuantizer.from_dict, _replace_by_quant_layers"},
};

const qm_engine qm_engine_transformers = {"transformers", "optimum 83c88b8 (2026-05)", "gptq", rules,
                                          sizeof rules / sizeof *rules};
