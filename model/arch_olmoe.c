/* arch_olmoe.c: OlmoeForCausalLM.
 * RMSNorm over the whole q and k projections (weights of size
 * heads * head_dim and kv_heads * head_dim); experts of width
 * intermediate_size; no shared experts. */
#include "config.h"

#include <stddef.h>

#include "model/model.h"

static const qm_arch_key keys[] = {
    {"num_experts", offsetof(qm_config, experts), 1, 0},
    {"intermediate_size", offsetof(qm_config, expert_ff), 1, 0},
    {NULL, 0, 0, 0},
};

static const qm_arch_name names[] = {
    QM_ARCH_HF_MOE_NAMES,
    {QM_PART_COUNT, NULL},
};

const qm_arch qm_arch_olmoe = {
    .name = "OlmoeForCausalLM",
    .family = QM_FAMILY_OLMOE,
    .flags = QM_ARCH_QK_NORM_WHOLE,
    .keys = keys,
    .names = names,
};
