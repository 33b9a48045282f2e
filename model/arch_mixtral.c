/* arch_mixtral.c: MixtralForCausalLM.
 * Every layer is MoE; experts are w1 (gate), w3 (up), w2 (down) of width
 * intermediate_size; the router is block_sparse_moe.gate and the top-k
 * weights are always renormalised. */
#include "config.h"

#include <stddef.h>

#include "model/model.h"

static const qm_arch_key keys[] = {
    {"num_local_experts", offsetof(qm_config, experts), 1, 0},
    {"intermediate_size", offsetof(qm_config, expert_ff), 1, 0},
    {NULL, 0, 0, 0},
};

static const qm_arch_name names[] = {
    {QM_PART_ROUTER, "model.layers.{L}.block_sparse_moe.gate.weight"},
    {QM_PART_EXPERT_GATE, "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight"},
    {QM_PART_EXPERT_UP, "model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight"},
    {QM_PART_EXPERT_DOWN, "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight"},
    {QM_PART_COUNT, NULL},
};

const qm_arch qm_arch_mixtral = {
    .name = "MixtralForCausalLM",
    .family = QM_FAMILY_MIXTRAL,
    .flags = QM_ARCH_RENORM_ALWAYS,
    .keys = keys,
    .names = names,
};
