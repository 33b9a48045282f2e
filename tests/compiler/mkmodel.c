/* mkmodel.c: header-only (sparse) checkpoints for the compiler's tests and bench.
 *
 *   mkmodel CONFIG.json DIR    write DIR/config.json and DIR/model.safetensors
 *                              named as the published checkpoint of CONFIG's
 *                              family, with a data area that is a hole
 *   mkmodel                    self-test: write every config in
 *                              $QM_SRCDIR/tests/data/configs and open it
 *
 * The naming is written out independently of runtime/ (as in
 * tests/unit/test_model.c, whose helpers this copies), so a mistake in an
 * adapter is not mirrored here.
 */
#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/model.h"
#include "tests/unit/testutil.h"

typedef struct tensor {
    char *name;
    uint64_t shape[2];
    int ndim;
} tensor;

typedef struct tlist {
    tensor *t;
    size_t n, cap;
} tlist;

static void add(tlist *l, uint64_t d0, uint64_t d1, const char *fmt, ...)
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

static int write_model(const char *dir, json_t *config, const tlist *l)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (json_dump_file(config, p, JSON_INDENT(2)) != 0)
        return -1;
    json_t *h = json_object();
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t bytes = 2 * l->t[i].shape[0] * (l->t[i].ndim == 2 ? l->t[i].shape[1] : 1);
        json_t *shape = l->t[i].ndim == 2 ? json_pack("[II]", (json_int_t)l->t[i].shape[0], (json_int_t)l->t[i].shape[1])
                                          : json_pack("[I]", (json_int_t)l->t[i].shape[0]);
        json_object_set_new(h, l->t[i].name,
                            json_pack("{s:s, s:o, s:[II]}", "dtype", "BF16", "shape", shape, "data_offsets",
                                      (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    int rc = tu_write_st(p, text, off);
    free(text);
    json_decref(h);
    return rc;
}

typedef struct dims {
    uint64_t V, d, L, H, KV, hd, E, k, eff, ff, sff, nshared, first_dense;
    int qkv_bias, qk_norm; /* qk_norm: 0 none, 1 per head, 2 whole projection */
    const char *moe, *router, *ename[3], *sname[3];
} dims;

static uint64_t geti(json_t *c, const char *k, uint64_t dflt)
{
    json_t *v = json_object_get(c, k);
    return json_is_integer(v) ? (uint64_t)json_integer_value(v) : dflt;
}

static dims dims_of(json_t *c)
{
    const char *arch = json_string_value(json_array_get(json_object_get(c, "architectures"), 0));
    dims x = {0};
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

static void checkpoint_names(const dims *x, json_t *c, tlist *l)
{
    const char *shared = strcmp(x->ename[0], "w1") == 0 ? NULL
                         : json_object_get(c, "n_shared_experts") ? "shared_experts" : "shared_expert";
    add(l, x->V, x->d, "model.embed_tokens.weight");
    for (uint64_t i = 0; i < x->L; i++) {
        const char *P = "model.layers";
        add(l, x->d, 0, "%s.%llu.input_layernorm.weight", P, (unsigned long long)i);
        add(l, x->H * x->hd, x->d, "%s.%llu.self_attn.q_proj.weight", P, (unsigned long long)i);
        add(l, x->KV * x->hd, x->d, "%s.%llu.self_attn.k_proj.weight", P, (unsigned long long)i);
        add(l, x->KV * x->hd, x->d, "%s.%llu.self_attn.v_proj.weight", P, (unsigned long long)i);
        add(l, x->d, x->H * x->hd, "%s.%llu.self_attn.o_proj.weight", P, (unsigned long long)i);
        if (x->qkv_bias) {
            add(l, x->H * x->hd, 0, "%s.%llu.self_attn.q_proj.bias", P, (unsigned long long)i);
            add(l, x->KV * x->hd, 0, "%s.%llu.self_attn.k_proj.bias", P, (unsigned long long)i);
            add(l, x->KV * x->hd, 0, "%s.%llu.self_attn.v_proj.bias", P, (unsigned long long)i);
        }
        if (x->qk_norm) {
            add(l, x->qk_norm == 1 ? x->hd : x->H * x->hd, 0, "%s.%llu.self_attn.q_norm.weight", P, (unsigned long long)i);
            add(l, x->qk_norm == 1 ? x->hd : x->KV * x->hd, 0, "%s.%llu.self_attn.k_norm.weight", P, (unsigned long long)i);
        }
        add(l, x->d, 0, "%s.%llu.post_attention_layernorm.weight", P, (unsigned long long)i);
        if (i < x->first_dense) {
            add(l, x->ff, x->d, "%s.%llu.mlp.gate_proj.weight", P, (unsigned long long)i);
            add(l, x->ff, x->d, "%s.%llu.mlp.up_proj.weight", P, (unsigned long long)i);
            add(l, x->d, x->ff, "%s.%llu.mlp.down_proj.weight", P, (unsigned long long)i);
            continue;
        }
        add(l, x->E, x->d, "%s.%llu.%s.weight", P, (unsigned long long)i, x->router);
        for (uint64_t e = 0; e < x->E; e++) {
            add(l, x->eff, x->d, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[0]);
            add(l, x->eff, x->d, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[1]);
            add(l, x->d, x->eff, "%s.%llu.%s.experts.%llu.%s.weight", P, (unsigned long long)i, x->moe, (unsigned long long)e, x->ename[2]);
        }
        if (x->nshared && shared) {
            add(l, x->sff, x->d, "%s.%llu.mlp.%s.gate_proj.weight", P, (unsigned long long)i, shared);
            add(l, x->sff, x->d, "%s.%llu.mlp.%s.up_proj.weight", P, (unsigned long long)i, shared);
            add(l, x->d, x->sff, "%s.%llu.mlp.%s.down_proj.weight", P, (unsigned long long)i, shared);
            if (x->qkv_bias) /* Qwen2-MoE: the shared expert's sigmoid gate */
                add(l, 1, x->d, "%s.%llu.mlp.shared_expert_gate.weight", P, (unsigned long long)i);
        }
    }
    add(l, x->d, 0, "model.norm.weight");
    add(l, x->V, x->d, "lm_head.weight");
}

static int make(const char *config, const char *dir)
{
    json_error_t err;
    json_t *c = json_load_file(config, 0, &err);
    if (!c) {
        fprintf(stderr, "mkmodel: %s: %s\n", config, err.text);
        return 1;
    }
    mkdir(dir, 0777);
    dims x = dims_of(c);
    tlist l = {0};
    checkpoint_names(&x, c, &l);
    int rc = write_model(dir, c, &l);
    for (size_t i = 0; i < l.n; i++)
        free(l.t[i].name);
    free(l.t);
    json_decref(c);
    if (rc)
        fprintf(stderr, "mkmodel: %s: cannot write\n", dir);
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc == 3)
        return make(argv[1], argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: mkmodel [CONFIG.json DIR]\n");
        return 2;
    }
    static const char *const configs[] = {"mixtral-8x7b", "deepseek-moe-16b", "qwen1.5-moe-a2.7b",
                                          "qwen3-30b-a3b", "olmoe-1b-7b"};
    int bad = 0;
    for (size_t i = 0; i < sizeof configs / sizeof *configs; i++) {
        char rel[256], dir[1024];
        snprintf(rel, sizeof rel, "tests/data/configs/%s.json", configs[i]);
        snprintf(dir, sizeof dir, "%s", tu_mkdir(configs[i]));
        qm_diag *d = qm_diag_new();
        qm_model *m = NULL;
        if (make(tu_src(rel), dir) || qm_model_open(dir, &m, d) != QM_OK || m->n_unexpected) {
            qm_diag_print(d, stderr, "mkmodel");
            fprintf(stderr, "mkmodel: FAIL %s\n", configs[i]);
            bad = 1;
        }
        qm_model_close(m);
        qm_diag_free(d);
    }
    printf("mkmodel: %zu configs %s\n", sizeof configs / sizeof *configs, bad ? "FAILED" : "written and opened");
    return bad;
}
