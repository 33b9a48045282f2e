/* arch_deepseek.c: DeepseekForCausalLM (DeepSeek-MoE).
 * The first first_k_dense_replace layers (and those off moe_layer_freq)
 * are dense MLPs of width intermediate_size; MoE layers have n_routed_experts
 * of width moe_intermediate_size plus the n_shared_experts fused into one
 * MLP of width n_shared_experts * moe_intermediate_size. */
#include "config.h"

#include <stddef.h>

#include "model/model.h"

static const qm_arch_key keys[] = {
    {"n_routed_experts", offsetof(qm_config, experts), 1, 0},
    {"moe_intermediate_size", offsetof(qm_config, expert_ff), 1, 0},
    {"intermediate_size", offsetof(qm_config, ff), 1, 0},
    {"n_shared_experts", offsetof(qm_config, shared), 0, 0},
    {"first_k_dense_replace", offsetof(qm_config, first_dense), 0, 0},
    {"moe_layer_freq", offsetof(qm_config, moe_freq), 0, 1},
    {NULL, 0, 0, 0},
};

static const qm_arch_name names[] = {
    QM_ARCH_HF_MOE_NAMES,
    {QM_PART_SHARED_GATE, "model.layers.{L}.mlp.shared_experts.gate_proj.weight"},
    {QM_PART_SHARED_UP, "model.layers.{L}.mlp.shared_experts.up_proj.weight"},
    {QM_PART_SHARED_DOWN, "model.layers.{L}.mlp.shared_experts.down_proj.weight"},
    {QM_PART_COUNT, NULL},
};

static void derive(qm_config *c) { c->shared_ff = c->shared * c->expert_ff; }

const qm_arch qm_arch_deepseek = {
    .name = "DeepseekForCausalLM",
    .family = QM_FAMILY_DEEPSEEK,
    .keys = keys,
    .names = names,
    .derive = derive,
};
