/* hfnames.c: the published checkpoint layouts of the five families (see hfnames.h). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/hfnames.h"
#include "tests/unit/testutil.h"

void hf_add(tlist *l, uint64_t d0, uint64_t d1, const char *fmt, ...)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->t = realloc(l->t, l->cap * sizeof *l->t);
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    l->t[l->n++] = (tensor){strdup(buf), {d0, d1}, d1 ? 2 : 1};
}

void hf_tlist_free(tlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->t[i].name);
    free(l->t);
    memset(l, 0, sizeof *l);
}

int hf_write_shard(const char *path, const tlist *l, size_t from, size_t to)
{
    json_t *h = json_object();
    uint64_t off = 0;
    for (size_t i = from; i < to; i++) {
        uint64_t bytes = 2 * l->t[i].shape[0] * (l->t[i].ndim == 2 ? l->t[i].shape[1] : 1);
        json_t *shape = l->t[i].ndim == 2 ? json_pack("[II]", (json_int_t)l->t[i].shape[0], (json_int_t)l->t[i].shape[1])
                                          : json_pack("[I]", (json_int_t)l->t[i].shape[0]);
        json_object_set_new(h, l->t[i].name,
                            json_pack("{s:s, s:o, s:[II]}", "dtype", "BF16", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    int rc = text ? tu_write_st(path, text, off) : -1;
    free(text);
    json_decref(h);
    return rc;
}

int hf_write_model(const char *dir, json_t *config, const tlist *l, int shards)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (json_dump_file(config, p, JSON_INDENT(2)) != 0)
        return -1;
    if (shards <= 1) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        return hf_write_shard(p, l, 0, l->n);
    }
    json_t *map = json_object();
    int rc = map ? 0 : -1;
    for (int s = 0; s < shards && rc == 0; s++) {
        size_t from = l->n * (size_t)s / (size_t)shards, to = l->n * (size_t)(s + 1) / (size_t)shards;
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        rc = hf_write_shard(p, l, from, to);
        for (size_t i = from; i < to && rc == 0; i++)
            rc = json_object_set_new(map, l->t[i].name, json_string(name));
    }
    json_t *index = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (rc == 0 && (!index || json_dump_file(index, p, 0) != 0))
        rc = -1;
    json_decref(index);
    return rc;
}

static uint64_t geti(json_t *c, const char *k, uint64_t dflt)
{
    json_t *v = json_object_get(c, k);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : dflt;
}

hf_dims hf_dims_of(json_t *c)
{
    const char *arch = json_string_value(json_array_get(json_object_get(c, "architectures"), 0));
    hf_dims x = {0};
    x.V = geti(c, "vocab_size", 0);
    x.d = geti(c, "hidden_size", 0);
    x.L = geti(c, "num_hidden_layers", 0);
    x.H = geti(c, "num_attention_heads", 0);
    x.KV = geti(c, "num_key_value_heads", x.H);
    x.hd = geti(c, "head_dim", x.d / x.H);
    x.k = geti(c, "num_experts_per_tok", 0);
    static const char *hf[3] = {"gate_proj", "up_proj", "down_proj"};
    memcpy(x.ename, hf, sizeof hf);
    memcpy(x.sname, hf, sizeof hf);
    x.moe = "mlp";
    x.router = "mlp.gate";
    if (strcmp(arch, "MixtralForCausalLM") == 0) {
        static const char *w[3] = {"w1", "w3", "w2"};
        memcpy(x.ename, w, sizeof w);
        x.moe = "block_sparse_moe";
        x.router = "block_sparse_moe.gate";
        x.E = geti(c, "num_local_experts", 0);
        x.eff = geti(c, "intermediate_size", 0);
    } else if (strcmp(arch, "DeepseekForCausalLM") == 0) {
        x.E = geti(c, "n_routed_experts", 0);
        x.eff = geti(c, "moe_intermediate_size", 0);
        x.ff = geti(c, "intermediate_size", 0);
        x.nshared = geti(c, "n_shared_experts", 0);
        x.sff = x.nshared * x.eff;
        x.first_dense = geti(c, "first_k_dense_replace", 0);
    } else if (strcmp(arch, "Qwen2MoeForCausalLM") == 0) {
        x.E = geti(c, "num_experts", 0);
        x.eff = geti(c, "moe_intermediate_size", 0);
        x.sff = geti(c, "shared_expert_intermediate_size", 0);
        x.nshared = 1;
        x.qkv_bias = 1;
    } else if (strcmp(arch, "Qwen3MoeForCausalLM") == 0) {
        x.E = geti(c, "num_experts", 0);
        x.eff = geti(c, "moe_intermediate_size", 0);
        x.qk_norm = 1;
    } else if (strcmp(arch, "OlmoeForCausalLM") == 0) {
        x.E = geti(c, "num_experts", 0);
        x.eff = geti(c, "intermediate_size", 0);
        x.qk_norm = 2;
    }
    return x;
}

void hf_checkpoint_names(const hf_dims *x, json_t *c, tlist *l)
{
    const char *shared = strcmp(x->ename[0], "w1") == 0 ? NULL
                         : json_object_get(c, "n_shared_experts") ? "shared_experts" : "shared_expert";
    hf_add(l, x->V, x->d, "model.embed_tokens.weight");
    for (uint64_t i = 0; i < x->L; i++) {
        const char *P = "model.layers";
        hf_add(l, x->d, 0, "%s.%llu.input_layernorm.weight", P, (unsigned long long)i);
        hf_add(l, x->H * x->hd, x->d, "%s.%llu.self_attn.q_proj.weight", P, (unsigned long long)i);
        hf_add(l, x->KV * x->hd, x->d, "%s.%llu.self_attn.k_proj.weight", P, (unsigned long long)i);
        hf_add(l, x->KV * x->hd, x->d, "%s.%llu.self_attn.v_proj.weight", P, (unsigned long long)i);
        hf_add(l, x->d, x->H * x->hd, "%s.%llu.self_attn.o_proj.weight", P, (unsigned long long)i);
        if (x->qkv_bias) {
            hf_add(l, x->H * x->hd, 0, "%s.%llu.self_attn.q_proj.bias", P, (unsigned long long)i);
            hf_add(l, x->KV * x->hd, 0, "%s.%llu.self_attn.k_proj.bias", P, (unsigned long long)i);
            hf_add(l, x->KV * x->hd, 0, "%s.%llu.self_attn.v_proj.bias", P, (unsigned long long)i);
        }
        if (x->qk_norm) {
            hf_add(l, x->qk_norm == 1 ? x->hd : x->H * x->hd, 0, "%s.%llu.self_attn.q_norm.weight", P, (unsigned long long)i);
            hf_add(l, x->qk_norm == 1 ? x->hd : x->KV * x->hd, 0, "%s.%llu.self_attn.k_norm.weight", P, (unsigned long long)i);
        }
        hf_add(l, x->d, 0, "%s.%llu.post_attention_layernorm.weight", P, (unsigned long long)i);
        if (i < x->first_dense) {
            hf_add(l, x->ff, x->d, "%s.%llu.mlp.gate_proj.weight", P, (unsigned long long)i);
            hf_add(l, x->ff, x->d, "%s.%llu.mlp.up_proj.weight", P, (unsigned long long)i);
            hf_add(l, x->d, x->ff, "%s.%llu.mlp.down_proj.weight", P, (unsigned long long)i);
            continue;
        }
        hf_add(l, x->E, x->d, "%s.%llu.%s.weight", P, (unsigned long long)i, x->router);
        for (uint64_t e = 0; e < x->E; e++) {
            hf_add(l, x->eff, x->d, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[0]);
            hf_add(l, x->eff, x->d, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[1]);
            hf_add(l, x->d, x->eff, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[2]);
        }
        if (x->nshared && shared) {
            hf_add(l, x->sff, x->d, "%s.%llu.mlp.%s.gate_proj.weight", P, (unsigned long long)i, shared);
            hf_add(l, x->sff, x->d, "%s.%llu.mlp.%s.up_proj.weight", P, (unsigned long long)i, shared);
            hf_add(l, x->d, x->sff, "%s.%llu.mlp.%s.down_proj.weight", P, (unsigned long long)i, shared);
            if (x->qkv_bias) /* Qwen2-MoE: the shared expert's sigmoid gate */
                hf_add(l, 1, x->d, "%s.%llu.mlp.shared_expert_gate.weight", P, (unsigned long long)i);
        }
    }
    hf_add(l, x->d, 0, "model.norm.weight");
    hf_add(l, x->V, x->d, "lm_head.weight");
}

