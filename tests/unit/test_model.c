/* test_model.c: config reading, the five architecture adapters and the inventory.
 *
 * For each real config in tests/data/configs the test writes a header-only
 * (sparse) checkpoint at full scale, named the way the published checkpoints
 * name their tensors, once as one file and once as three shards, and checks
 * the inventory's parameter counts against closed-form counts it computes
 * itself from the config.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tests/unit/hfnames.h"
#include "tests/unit/testutil.h"

/* Closed-form parameter counts per group. */
static void expected_counts(const hf_dims *x, uint64_t p[QM_GROUP_COUNT])
{
    uint64_t moe = x->L - x->first_dense, q = x->H * x->hd, kv = x->KV * x->hd;
    memset(p, 0, QM_GROUP_COUNT * sizeof *p);
    p[QM_GROUP_ATTENTION] = x->L * (2 * x->d * q + 2 * x->d * kv + (x->qkv_bias ? q + 2 * kv : 0));
    p[QM_GROUP_ROUTED] = moe * x->E * 3 * x->d * x->eff;
    p[QM_GROUP_SHARED] = x->nshared ? moe * (3 * x->d * x->sff + (x->qkv_bias ? x->d : 0)) : 0;
    p[QM_GROUP_DENSE_MLP] = x->first_dense * 3 * x->d * x->ff;
    p[QM_GROUP_ROUTER] = moe * x->E * x->d;
    p[QM_GROUP_EMBEDDINGS] = 2 * x->V * x->d;
    p[QM_GROUP_NORMS] = (2 * x->L + 1) * x->d + (x->qk_norm == 1 ? 2 * x->L * x->hd : x->qk_norm == 2 ? x->L * (q + kv) : 0);
}

static json_t *load_config(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/data/configs/%s", name);
    json_error_t err;
    json_t *c = json_load_file(tu_src(rel), 0, &err);
    if (!c)
        fprintf(stderr, "%s: %s\n", tu_src(rel), err.text);
    return c;
}

static void check_real_config(const char *file, const char *arch, int shards)
{
    json_t *c = load_config(file);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    hf_dims x = hf_dims_of(c);
    tlist l = {0};
    hf_checkpoint_names(&x, c, &l);
    char dirname[128];
    snprintf(dirname, sizeof dirname, "%s-%d", file, shards);
    const char *dir = tu_mkdir(dirname);
    CU_ASSERT_EQUAL(hf_write_model(dir, c, &l, shards), 0);

    qm_diag *d = qm_diag_new();
    qm_model *m = NULL;
    qm_status st = qm_model_open(dir, &m, d);
    if (st != QM_OK)
        fprintf(stderr, "\n%s:\n%s", file, tu_diag_all(d));
    CU_ASSERT_EQUAL_FATAL(st, QM_OK);
    CU_ASSERT_EQUAL(qm_diag_warnings(d), 0);
    CU_ASSERT_STRING_EQUAL(m->arch->name, arch);
    CU_ASSERT_EQUAL(m->n, l.n);
    CU_ASSERT_EQUAL(m->ckpt->n_files, shards > 1 ? (size_t)shards : 1);
    CU_ASSERT_EQUAL(m->n_moe, (long long)(x.L - x.first_dense));
    CU_ASSERT_EQUAL(m->cfg.shared, (long long)x.nshared);
    uint64_t got[QM_GROUP_COUNT], want[QM_GROUP_COUNT], bytes, total = 0;
    qm_model_count(m, got, &bytes);
    expected_counts(&x, want);
    for (int g = 0; g < QM_GROUP_COUNT; g++) {
        if (got[g] != want[g])
            fprintf(stderr, "\n%s group %d: got %llu want %llu\n", file, g, (unsigned long long)got[g],
                    (unsigned long long)want[g]);
        CU_ASSERT_EQUAL(got[g], want[g]);
        total += want[g];
    }
    CU_ASSERT_EQUAL(bytes, 2 * total);
    /* checkpoint order is kept: the first tensor written is the first listed */
    CU_ASSERT_STRING_EQUAL(m->t[0].st->name, l.t[0].name);
    CU_ASSERT_STRING_EQUAL(m->t[0].canon, "embed");
    qm_model_close(m);
    qm_diag_free(d);
    hf_tlist_free(&l);
    json_decref(c);
}

static void test_mixtral(void)
{
    check_real_config("mixtral-8x7b.json", "MixtralForCausalLM", 1);
    check_real_config("mixtral-8x7b.json", "MixtralForCausalLM", 3);
    /* the published total of Mixtral-8x7B */
    json_t *c = load_config("mixtral-8x7b.json");
    hf_dims x = hf_dims_of(c);
    uint64_t p[QM_GROUP_COUNT], t = 0;
    expected_counts(&x, p);
    for (int g = 0; g < QM_GROUP_COUNT; g++)
        t += p[g];
    CU_ASSERT_EQUAL(t, 46702792704ull);
    json_decref(c);
}

static void test_deepseek(void)
{
    check_real_config("deepseek-moe-16b.json", "DeepseekForCausalLM", 1);
    check_real_config("deepseek-moe-16b.json", "DeepseekForCausalLM", 4);
}

static void test_qwen2moe(void)
{
    check_real_config("qwen1.5-moe-a2.7b.json", "Qwen2MoeForCausalLM", 1);
    check_real_config("qwen1.5-moe-a2.7b.json", "Qwen2MoeForCausalLM", 2);
}

static void test_qwen3moe(void)
{
    check_real_config("qwen3-30b-a3b.json", "Qwen3MoeForCausalLM", 1);
    check_real_config("qwen3-30b-a3b.json", "Qwen3MoeForCausalLM", 5);
}

static void test_olmoe(void)
{
    check_real_config("olmoe-1b-7b.json", "OlmoeForCausalLM", 1);
    check_real_config("olmoe-1b-7b.json", "OlmoeForCausalLM", 3);
}

/* Each family has its adapter, and the adapter says which family it is:
 * the arch guards of policies (base's list) and the runtime's adapters
 * cannot drift apart. */
static void test_families(void)
{
    static const char *const cls[QM_FAMILY_COUNT] = {
        [QM_FAMILY_MIXTRAL] = "MixtralForCausalLM",   [QM_FAMILY_DEEPSEEK] = "DeepseekForCausalLM",
        [QM_FAMILY_QWEN2MOE] = "Qwen2MoeForCausalLM", [QM_FAMILY_QWEN3MOE] = "Qwen3MoeForCausalLM",
        [QM_FAMILY_OLMOE] = "OlmoeForCausalLM",
    };
    qm_buf all = {0};
    qm_arch_list(&all);
    for (int f = 0; f < QM_FAMILY_COUNT; f++) {
        const qm_arch *a = qm_arch_find(cls[f]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_EQUAL(a->family, (qm_family)f);
        CU_ASSERT_PTR_NOT_NULL(strstr(all.s, cls[f]));
    }
    CU_ASSERT_PTR_NULL(qm_arch_find("LlamaForCausalLM"));
    CU_ASSERT_STRING_EQUAL(qm_family_name(QM_FAMILY_DEEPSEEK), "deepseek");
    CU_ASSERT_STRING_EQUAL(qm_family_name(QM_FAMILY_COUNT), "?");
    free(all.s);
}

/* ---- canonical names and errors on a tiny Mixtral ------------------------------------------ */

static json_t *tiny_mixtral(void)
{
    return json_pack("{s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "architectures",
                     "MixtralForCausalLM", "vocab_size", 16, "hidden_size", 8, "num_hidden_layers", 2,
                     "num_attention_heads", 2, "num_key_value_heads", 1, "num_local_experts", 4,
                     "num_experts_per_tok", 2, "intermediate_size", 12);
}

static qm_status open_tiny(const char *name, json_t *c, tlist *l, qm_model **m, qm_diag *d)
{
    const char *dir = tu_mkdir(name);
    CU_ASSERT_EQUAL(hf_write_model(dir, c, l, 1), 0);
    return qm_model_open(dir, m, d);
}

static void test_canonical_names(void)
{
    json_t *c = tiny_mixtral();
    hf_dims x = hf_dims_of(c);
    tlist l = {0};
    hf_checkpoint_names(&x, c, &l);
    qm_diag *d = qm_diag_new();
    qm_model *m;
    CU_ASSERT_EQUAL_FATAL(open_tiny("tiny-ok", c, &l, &m, d), QM_OK);
    int found = 0;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->t[i].st->name, "model.layers.1.block_sparse_moe.experts.3.w2.weight") == 0) {
            CU_ASSERT_STRING_EQUAL(m->t[i].canon, "layers[1].experts[3].down");
            CU_ASSERT_EQUAL(m->t[i].part, QM_PART_EXPERT_DOWN);
            CU_ASSERT_EQUAL(m->t[i].layer, 1);
            CU_ASSERT_EQUAL(m->t[i].expert, 3);
            found++;
        } else if (strcmp(m->t[i].st->name, "model.layers.0.block_sparse_moe.experts.0.w3.weight") == 0) {
            CU_ASSERT_STRING_EQUAL(m->t[i].canon, "layers[0].experts[0].up");
            found++;
        } else if (strcmp(m->t[i].st->name, "model.layers.0.self_attn.k_proj.weight") == 0) {
            CU_ASSERT_STRING_EQUAL(m->t[i].canon, "layers[0].attn.k");
            CU_ASSERT_EQUAL(m->t[i].st->shape[0], 4); /* 1 kv head of 8 / 2 */
            found++;
        } else if (strcmp(m->t[i].st->name, "model.layers.1.block_sparse_moe.gate.weight") == 0) {
            CU_ASSERT_STRING_EQUAL(m->t[i].canon, "layers[1].router");
            found++;
        }
    CU_ASSERT_EQUAL(found, 4);
    CU_ASSERT_EQUAL(m->cfg.norm_topk, 1); /* Mixtral always renormalises */
    CU_ASSERT_DOUBLE_EQUAL(m->cfg.rope_theta, 10000.0, 1e-9);
    qm_model_close(m);
    qm_diag_free(d);
    hf_tlist_free(&l);
    json_decref(c);
}

static void test_inventory_errors(void)
{
    qm_diag *d = qm_diag_new();
    qm_model *m;
    json_t *c = tiny_mixtral();
    hf_dims x = hf_dims_of(c);
    tlist l = {0};

    /* a missing tensor is named */
    hf_checkpoint_names(&x, c, &l);
    free(l.t[5].name);
    l.t[5] = l.t[--l.n];
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-missing", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "missing tensor 'model.layers.0.self_attn.o_proj.weight'");
    qm_diag_clear(d);
    hf_tlist_free(&l);

    /* many missing: the first eight in part order (o before the experts' w2,
     * layer by layer, expert by expert), found on several threads, then the count */
    hf_checkpoint_names(&x, c, &l);
    for (size_t i = 0; i < l.n;)
        if (strstr(l.t[i].name, ".w2.weight") || strstr(l.t[i].name, ".o_proj.weight")) {
            free(l.t[i].name);
            l.t[i] = l.t[--l.n];
        } else {
            i++;
        }
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-many-missing", c, &l, &m, d), QM_OK);
    CU_ASSERT_EQUAL(qm_diag_errors(d), 8);
    static const char *const first[8] = {
        "layers.0.self_attn.o_proj",           "layers.1.self_attn.o_proj",
        "layers.0.block_sparse_moe.experts.0.w2", "layers.0.block_sparse_moe.experts.1.w2",
        "layers.0.block_sparse_moe.experts.2.w2", "layers.0.block_sparse_moe.experts.3.w2",
        "layers.1.block_sparse_moe.experts.0.w2", "layers.1.block_sparse_moe.experts.1.w2",
    };
    for (size_t i = 0; i < 8 && i < qm_diag_count(d); i++)
        CU_ASSERT_PTR_NOT_NULL(strstr(qm_diag_text(d, i), first[i]));
    TU_ASSERT_DIAG(d, "10 tensors missing in all");
    qm_diag_clear(d);
    hf_tlist_free(&l);

    /* a wrong shape is named with both shapes */
    hf_checkpoint_names(&x, c, &l);
    l.t[2].shape[0] = 5;
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-shape", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "tensor 'model.layers.0.self_attn.q_proj.weight' has shape [5, 8], but");
    TU_ASSERT_DIAG(d, "config.json implies [8, 8]");
    qm_diag_clear(d);
    hf_tlist_free(&l);

    /* an unexpected tensor is a warning, and the model still opens */
    hf_checkpoint_names(&x, c, &l);
    hf_add(&l, 4, 0, "model.layers.0.self_attn.rotary_emb.inv_freq");
    CU_ASSERT_EQUAL(open_tiny("tiny-extra", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "unexpected tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'");
    CU_ASSERT_EQUAL(qm_diag_errors(d), 0);
    CU_ASSERT_EQUAL(m->n_unexpected, 1);
    qm_model_close(m);
    qm_diag_clear(d);
    hf_tlist_free(&l);

    /* an unknown architecture lists the supported ones */
    hf_checkpoint_names(&x, c, &l);
    json_object_set_new(c, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    CU_ASSERT_EQUAL(open_tiny("tiny-llama", c, &l, &m, d), QM_EUNSUPPORTED);
    TU_ASSERT_DIAG(d, "architecture 'LlamaForCausalLM' is not supported (supported: MixtralForCausalLM, "
                      "DeepseekForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM)");
    qm_diag_clear(d);
    json_object_set_new(c, "architectures", json_pack("[s]", "MixtralForCausalLM"));

    /* config fields: required, typed, ranged */
    json_object_del(c, "num_local_experts");
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-noexp", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "missing required field 'num_local_experts'");
    qm_diag_clear(d);
    json_object_set_new(c, "num_local_experts", json_string("eight"));
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-strexp", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "field 'num_local_experts' is not an integer");
    qm_diag_clear(d);
    json_object_set_new(c, "num_local_experts", json_integer(4));
    json_object_set_new(c, "num_hidden_layers", json_integer(100000000));
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-layers", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "field 'num_hidden_layers' is 100000000, outside [0, 4096]");
    qm_diag_clear(d);
    json_object_set_new(c, "num_hidden_layers", json_integer(2));
    json_object_set_new(c, "num_experts_per_tok", json_integer(9));
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-topk", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "num_experts_per_tok 9 is outside [1, 4]");
    qm_diag_clear(d);
    json_object_set_new(c, "num_experts_per_tok", json_integer(2));
    json_object_set_new(c, "num_key_value_heads", json_integer(3));
    CU_ASSERT_NOT_EQUAL(open_tiny("tiny-kv", c, &l, &m, d), QM_OK);
    TU_ASSERT_DIAG(d, "num_attention_heads 2 is not a multiple of num_key_value_heads 3");
    qm_diag_clear(d);

    /* no config at all */
    CU_ASSERT_EQUAL(qm_model_open(tu_mkdir("no-config"), &m, d), QM_ENOTFOUND);
    TU_ASSERT_DIAG(d, "no-config/config.json");
    qm_diag_free(d);
    hf_tlist_free(&l);
    json_decref(c);
}

static void test_layer_kinds(void)
{
    /* Qwen: mlp_only_layers and decoder_sparse_step make dense layers */
    json_t *c = load_config("qwen3-30b-a3b.json");
    json_object_set_new(c, "mlp_only_layers", json_pack("[i]", 0));
    json_object_set_new(c, "decoder_sparse_step", json_integer(2));
    json_object_set_new(c, "num_hidden_layers", json_integer(6));
    char p[1024];
    const char *dir = tu_mkdir("qwen3-kinds");
    snprintf(p, sizeof p, "%s/config.json", dir);
    CU_ASSERT_EQUAL(json_dump_file(c, p, 0), 0);
    const qm_arch *a;
    qm_config cfg;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_config_read(p, &a, &cfg, d), QM_OK);
    CU_ASSERT_EQUAL(cfg.n_mlp_only, 1);
    CU_ASSERT_EQUAL(cfg.sparse_step, 2);
    CU_ASSERT_EQUAL(cfg.norm_topk, 1);
    CU_ASSERT_EQUAL(cfg.head_dim, 128); /* explicit, not hidden / heads = 64 */
    qm_config_free(&cfg);
    qm_diag_free(d);
    json_decref(c);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("adapters at real scale", NULL, NULL);
    CU_add_test(s, "Mixtral-8x7B", test_mixtral);
    CU_add_test(s, "DeepSeek-MoE-16B", test_deepseek);
    CU_add_test(s, "Qwen1.5-MoE-A2.7B", test_qwen2moe);
    CU_add_test(s, "Qwen3-30B-A3B", test_qwen3moe);
    CU_add_test(s, "OLMoE-1B-7B", test_olmoe);
    s = CU_add_suite("inventory", NULL, NULL);
    CU_add_test(s, "an adapter per family", test_families);
    CU_add_test(s, "canonical names", test_canonical_names);
    CU_add_test(s, "errors name the tensor or field", test_inventory_errors);
    CU_add_test(s, "dense and MoE layers", test_layer_kinds);
    return tu_run();
}
