/* arch_qwen3moe.c: Qwen3MoeForCausalLM.
 * RMSNorm on each head of q and k (weights of size head_dim); head_dim is
 * explicit in the config and need not be hidden / heads; no shared experts. */
#include "config.h"

#include <stddef.h>

#include "model/model.h"

static const qm_arch_key keys[] = {
    {"num_experts", offsetof(qm_config, experts), 1, 0},
    {"moe_intermediate_size", offsetof(qm_config, expert_ff), 1, 0},
    {"intermediate_size", offsetof(qm_config, ff), 0, 0},
    {"decoder_sparse_step", offsetof(qm_config, sparse_step), 0, 1},
    {NULL, 0, 0, 0},
};

static const qm_arch_name names[] = {
    QM_ARCH_HF_MOE_NAMES,
    {QM_PART_COUNT, NULL},
};

const qm_arch qm_arch_qwen3moe = {
    .name = "Qwen3MoeForCausalLM",
    .family = QM_FAMILY_QWEN3MOE,
    .flags = QM_ARCH_QK_NORM_HEAD,
    .keys = keys,
    .names = names,
};
