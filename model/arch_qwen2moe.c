/* arch_qwen2moe.c: Qwen2MoeForCausalLM (Qwen1.5-MoE).
 * q/k/v carry biases; one shared expert of width
 * shared_expert_intermediate_size is scaled by sigmoid(shared_expert_gate x);
 * layers in mlp_only_layers or off decoder_sparse_step are dense. */
#include "config.h"

#include <stddef.h>

#include "model/model.h"

static const qm_arch_key keys[] = {
    {"num_experts", offsetof(qm_config, experts), 1, 0},
    {"moe_intermediate_size", offsetof(qm_config, expert_ff), 1, 0},
    {"intermediate_size", offsetof(qm_config, ff), 0, 0},
    {"shared_expert_intermediate_size", offsetof(qm_config, shared_ff), 0, 0},
    {"decoder_sparse_step", offsetof(qm_config, sparse_step), 0, 1},
    {NULL, 0, 0, 0},
};

static const qm_arch_name names[] = {
    QM_ARCH_HF_MOE_NAMES,
    {QM_PART_SHARED_GATE, "model.layers.{L}.mlp.shared_expert.gate_proj.weight"},
    {QM_PART_SHARED_UP, "model.layers.{L}.mlp.shared_expert.up_proj.weight"},
    {QM_PART_SHARED_DOWN, "model.layers.{L}.mlp.shared_expert.down_proj.weight"},
    {QM_PART_SHARED_ROUTER, "model.layers.{L}.mlp.shared_expert_gate.weight"},
    {QM_PART_COUNT, NULL},
};

static void derive(qm_config *c) { c->shared = c->shared_ff > 0; }

const qm_arch qm_arch_qwen2moe = {
    .name = "Qwen2MoeForCausalLM",
    .family = QM_FAMILY_QWEN2MOE,
    .flags = QM_ARCH_QKV_BIAS | QM_ARCH_SHARED_SIGMOID,
    .keys = keys,
    .names = names,
    .derive = derive,
};
