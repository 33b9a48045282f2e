/* config.c: config.json -> architecture adapter + qm_config.
 *
 * Keys common to every supported family are read here; each adapter lists
 * the keys its family names differently (expert count, expert width, ...).
 * Every number is range-checked, so a corrupt config cannot drive the
 * inventory into absurd allocations.
 */
#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "model/json.h"
#include "model/model.h"

/* One adapter per family, in the family's place. */
static const qm_arch *const archs[QM_FAMILY_COUNT] = {
    [QM_FAMILY_MIXTRAL] = &qm_arch_mixtral,   [QM_FAMILY_DEEPSEEK] = &qm_arch_deepseek,
    [QM_FAMILY_QWEN2MOE] = &qm_arch_qwen2moe, [QM_FAMILY_QWEN3MOE] = &qm_arch_qwen3moe,
    [QM_FAMILY_OLMOE] = &qm_arch_olmoe,
};

const qm_arch *qm_arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (strcmp(archs[i]->name, name) == 0)
            return archs[i];
    return NULL;
}

void qm_arch_list(qm_buf *b)
{
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        qm_buf_printf(b, "%s%s", i ? ", " : "", archs[i]->name);
}

#define FIELD(f) offsetof(qm_config, f)

/* Upper bounds: generous for real models, small enough to keep counts in range. */
enum { MAX_SIZE = 1 << 22, MAX_LAYERS = 4096, MAX_EXPERTS = 1 << 16 };

static const qm_arch_key common_keys[] = {
    {"vocab_size", FIELD(vocab), 1, 0},
    {"hidden_size", FIELD(hidden), 1, 0},
    {"num_hidden_layers", FIELD(layers), 1, 0},
    {"num_attention_heads", FIELD(heads), 1, 0},
    {"num_key_value_heads", FIELD(kv_heads), 0, 0}, /* 0: same as heads */
    {"head_dim", FIELD(head_dim), 0, 0},             /* 0: hidden / heads */
    {"num_experts_per_tok", FIELD(top_k), 1, 0},
    {NULL, 0, 0, 0},
};

static long long *field(qm_config *c, size_t off) { return (long long *)((char *)c + off); }

static qm_status read_keys(const char *path, json_t *root, const qm_arch_key *keys, qm_config *c,
                           qm_diag *d)
{
    for (const qm_arch_key *k = keys; k->key; k++) {
        long long hi = k->offset == FIELD(layers) ? MAX_LAYERS
                       : k->offset == FIELD(experts) ? MAX_EXPERTS
                                                     : MAX_SIZE;
        qm_status st = qm_json_int(path, root, k->key, k->required, k->dflt, 0, hi,
                                   field(c, k->offset), d);
        if (st != QM_OK)
            return st;
    }
    return QM_OK;
}

static qm_status read_mlp_only(const char *path, json_t *root, qm_config *c, qm_diag *d)
{
    json_t *a = json_object_get(root, "mlp_only_layers");
    if (!a || json_is_null(a))
        return QM_OK;
    if (!json_is_array(a))
        return qm_diag_fail(d, QM_EFORMAT, "%s: field 'mlp_only_layers' is not an array", path);
    c->mlp_only = calloc(json_array_size(a) + 1, sizeof *c->mlp_only);
    if (!c->mlp_only)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->layers)
            return qm_diag_fail(d, QM_EINVAL,
                                "%s: mlp_only_layers[%zu] is not a layer index in [0, %lld)", path, i,
                                c->layers);
        c->mlp_only[c->n_mlp_only++] = json_integer_value(v);
    }
    return QM_OK;
}

static qm_status check_sizes(const char *path, qm_config *c, qm_diag *d)
{
    if (c->vocab < 1 || c->hidden < 1 || c->layers < 1 || c->heads < 1)
        return qm_diag_fail(d, QM_EINVAL, "%s: vocab_size, hidden_size, num_hidden_layers and "
                                          "num_attention_heads must be positive", path);
    if (c->kv_heads == 0)
        c->kv_heads = c->heads;
    if (c->heads % c->kv_heads != 0)
        return qm_diag_fail(d, QM_EINVAL, "%s: num_attention_heads %lld is not a multiple of "
                                          "num_key_value_heads %lld", path, c->heads, c->kv_heads);
    if (c->head_dim == 0) {
        if (c->hidden % c->heads != 0)
            return qm_diag_fail(d, QM_EINVAL, "%s: hidden_size %lld is not a multiple of "
                                              "num_attention_heads %lld and no head_dim is given",
                                path, c->hidden, c->heads);
        c->head_dim = c->hidden / c->heads;
    }
    if (c->experts < 1 || c->expert_ff < 1)
        return qm_diag_fail(d, QM_EINVAL, "%s: an MoE model needs at least one expert of positive "
                                          "width", path);
    if (c->top_k < 1 || c->top_k > c->experts)
        return qm_diag_fail(d, QM_EINVAL, "%s: num_experts_per_tok %lld is outside [1, %lld]", path,
                            c->top_k, c->experts);
    if (c->moe_freq < 1 || c->sparse_step < 1)
        return qm_diag_fail(d, QM_EINVAL, "%s: moe_layer_freq and decoder_sparse_step must be >= 1",
                            path);
    return QM_OK;
}

void qm_config_free(qm_config *c)
{
    free(c->mlp_only);
    c->mlp_only = NULL;
    c->n_mlp_only = 0;
}

qm_status qm_config_read(const char *path, const qm_arch **arch, qm_config *c, qm_diag *d)
{
    memset(c, 0, sizeof *c);
    c->moe_freq = c->sparse_step = 1;
    *arch = NULL;
    json_t *root;
    qm_status st = qm_json_load(path, &root, d);
    if (st != QM_OK)
        return st;
    json_t *archs_j = json_object_get(root, "architectures");
    const char *name = json_string_value(json_array_get(archs_j, 0));
    if (!name) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: no 'architectures' list naming the model class", path);
        goto done;
    }
    if (!(*arch = qm_arch_find(name))) {
        qm_buf all = {0};
        qm_arch_list(&all);
        st = qm_diag_fail(d, QM_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)",
                          path, name, all.oom ? "..." : all.s);
        free(all.s);
        goto done;
    }
    const char *tok = json_string_value(json_object_get(root, "qmoe_tokenizer"));
    c->byte_tokenizer = tok && strcmp(tok, "byte") == 0;
    const char *fmt = json_string_value(
        json_object_get(json_object_get(root, "quantization_config"), "checkpoint_format"));
    c->zero_offset = fmt && strcmp(fmt, "gptq_v2") == 0 ? 0 : 1;
    if ((st = read_keys(path, root, common_keys, c, d)) != QM_OK ||
        (st = read_keys(path, root, (*arch)->keys, c, d)) != QM_OK ||
        (st = qm_json_bool(path, root, "tie_word_embeddings", 0, &c->tie_embeddings, d)) != QM_OK ||
        (st = qm_json_bool(path, root, "attention_bias", 0, &c->attn_bias, d)) != QM_OK ||
        (st = qm_json_bool(path, root, "norm_topk_prob", 0, &c->norm_topk, d)) != QM_OK ||
        (st = qm_json_real(path, root, "rope_theta", 10000.0, 1.0, 1e12, &c->rope_theta, d)) != QM_OK ||
        (st = qm_json_real(path, root, "rms_norm_eps", 1e-6, 0.0, 1.0, &c->rms_eps, d)) != QM_OK ||
        (st = check_sizes(path, c, d)) != QM_OK || (st = read_mlp_only(path, root, c, d)) != QM_OK)
        goto done;
    if ((*arch)->flags & QM_ARCH_RENORM_ALWAYS)
        c->norm_topk = 1;
    if ((*arch)->derive)
        (*arch)->derive(c);
done:
    json_decref(root);
    if (st != QM_OK)
        qm_config_free(c);
    return st;
}

long long qm_dim_size(const qm_config *c, qm_dim dim)
{
    switch (dim) {
    case QM_DIM_NONE: return 0;
    case QM_DIM_ONE: return 1;
    case QM_DIM_HIDDEN: return c->hidden;
    case QM_DIM_VOCAB: return c->vocab;
    case QM_DIM_QDIM: return c->heads * c->head_dim;
    case QM_DIM_KVDIM: return c->kv_heads * c->head_dim;
    case QM_DIM_HEAD: return c->head_dim;
    case QM_DIM_FF: return c->ff;
    case QM_DIM_EXPERT_FF: return c->expert_ff;
    case QM_DIM_SHARED_FF: return c->shared_ff;
    case QM_DIM_EXPERTS: return c->experts;
    case QM_DIM_COUNT: break;
    }
    return 0;
}
