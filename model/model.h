/* model.h: a model directory as qmoe sees it: config, architecture, and every
 * weight tensor placed in one canonical module tree.
 *
 * Checkpoints of different MoE families name the same things differently
 * (Mixtral's experts.J.w1 is DeepSeek's experts.J.gate_proj).  An
 * architecture adapter (arch_*.c, one small table per family) maps them onto
 * canonical names that the policy language, the plan and the runtime share:
 *
 *   embed  lm_head  norm
 *   layers[L].attn_norm  layers[L].ffn_norm
 *   layers[L].attn.{q,k,v,o}  layers[L].attn.{q,k,v}.bias  layers[L].attn.{q,k}_norm
 *   layers[L].router
 *   layers[L].experts[J].{gate,up,down}
 *   layers[L].shared.{gate,up,down}  layers[L].shared_gate
 *   layers[L].mlp.{gate,up,down}            (dense FFN layers)
 *
 * qm_model_open() reads config.json, picks the adapter, opens the
 * checkpoint, derives the expected tensor set and shapes from the config,
 * and reports missing tensors and shape mismatches as errors and
 * unexpected tensors as warnings.  It reads headers only.
 */
#ifndef QM_MODEL_H
#define QM_MODEL_H

#include "base/base.h"
#include "model/safetensors.h"

/* The role of a weight tensor in the canonical module tree. */
typedef enum qm_part {
    QM_PART_EMBED,
    QM_PART_LM_HEAD,
    QM_PART_FINAL_NORM,
    QM_PART_ATTN_NORM,
    QM_PART_FFN_NORM,
    QM_PART_Q,
    QM_PART_K,
    QM_PART_V,
    QM_PART_O,
    QM_PART_Q_BIAS,
    QM_PART_K_BIAS,
    QM_PART_V_BIAS,
    QM_PART_Q_NORM,
    QM_PART_K_NORM,
    QM_PART_ROUTER,
    QM_PART_EXPERT_GATE,
    QM_PART_EXPERT_UP,
    QM_PART_EXPERT_DOWN,
    QM_PART_SHARED_GATE,
    QM_PART_SHARED_UP,
    QM_PART_SHARED_DOWN,
    QM_PART_SHARED_ROUTER, /* Qwen2-MoE's shared_expert_gate: sigmoid scale of the shared expert */
    QM_PART_MLP_GATE,
    QM_PART_MLP_UP,
    QM_PART_MLP_DOWN,
    QM_PART_COUNT
} qm_part;

/* Parameter groups as `qmoe inspect` counts them. */
typedef enum qm_group {
    QM_GROUP_ATTENTION,
    QM_GROUP_ROUTED,
    QM_GROUP_SHARED,
    QM_GROUP_DENSE_MLP,
    QM_GROUP_ROUTER,
    QM_GROUP_EMBEDDINGS,
    QM_GROUP_NORMS,
    QM_GROUP_COUNT
} qm_group;

/* Where a part occurs. */
typedef enum qm_where {
    QM_IN_MODEL,   /* once */
    QM_IN_LAYER,   /* every layer */
    QM_IN_MOE,     /* MoE layers */
    QM_IN_DENSE,   /* dense-FFN layers */
    QM_IN_EXPERT,  /* every routed expert of MoE layers */
    QM_IN_SHARED,  /* MoE layers of models with shared experts */
} qm_where;

/* The sizes a shape can be made of (resolved from the config). */
typedef enum qm_dim {
    QM_DIM_NONE, /* no such dimension (1-D tensors) */
    QM_DIM_ONE,
    QM_DIM_HIDDEN,
    QM_DIM_VOCAB,
    QM_DIM_QDIM,     /* heads * head_dim */
    QM_DIM_KVDIM,    /* kv_heads * head_dim */
    QM_DIM_HEAD,     /* head_dim */
    QM_DIM_FF,       /* dense FFN width */
    QM_DIM_EXPERT_FF,
    QM_DIM_SHARED_FF,
    QM_DIM_EXPERTS,
    QM_DIM_COUNT
} qm_dim;

typedef struct qm_part_info {
    const char *canon;  /* canonical name after "layers[L]." or "experts[J]." */
    qm_group group;
    qm_where where;
    int linear;         /* a quantizable linear weight */
    qm_dim shape[2];
} qm_part_info;

extern const qm_part_info qm_parts[QM_PART_COUNT];

/* Config values every adapter provides, by canonical meaning. */
typedef struct qm_config {
    long long vocab, hidden, layers, heads, kv_heads, head_dim;
    long long ff;            /* dense FFN width (0 when no dense layers exist) */
    long long experts, top_k, expert_ff;
    long long shared;        /* shared experts the config declares (0 when none) */
    long long shared_ff;     /* width of the fused shared-expert MLP */
    long long first_dense;   /* DeepSeek first_k_dense_replace */
    long long moe_freq;      /* DeepSeek moe_layer_freq */
    long long sparse_step;   /* Qwen decoder_sparse_step */
    long long n_mlp_only;
    long long *mlp_only;     /* (n_mlp_only) Qwen mlp_only_layers; owned */
    int norm_topk;           /* renormalise the top-k router weights */
    int tie_embeddings;
    int attn_bias;           /* q/k/v projections have biases */
    int byte_tokenizer;      /* "qmoe_tokenizer": "byte" (the shipped examples) */
    int zero_offset;         /* GPTQ-packed zero points store zero - offset: 1 for
                              * checkpoint_format "gptq", 0 for "gptq_v2" */
    double rope_theta, rms_eps;
} qm_config;

/* A config key an adapter reads into a qm_config field. */
typedef struct qm_arch_key {
    const char *key;
    size_t offset;           /* offsetof(qm_config, field) of a long long */
    int required;
    long long dflt;
} qm_arch_key;

/* A checkpoint name pattern: "{L}" is the layer, "{E}" the expert. */
typedef struct qm_arch_name {
    qm_part part;
    const char *pattern;
} qm_arch_name;

/* Router and routed experts as most Hugging Face MoE families name them. */
#define QM_ARCH_HF_MOE_NAMES                                                        \
    {QM_PART_ROUTER, "model.layers.{L}.mlp.gate.weight"},                           \
        {QM_PART_EXPERT_GATE, "model.layers.{L}.mlp.experts.{E}.gate_proj.weight"}, \
        {QM_PART_EXPERT_UP, "model.layers.{L}.mlp.experts.{E}.up_proj.weight"},     \
        {QM_PART_EXPERT_DOWN, "model.layers.{L}.mlp.experts.{E}.down_proj.weight"}

enum {
    QM_ARCH_QKV_BIAS = 1 << 0,       /* q/k/v always have biases (Qwen2-MoE) */
    QM_ARCH_QK_NORM_HEAD = 1 << 1,   /* RMSNorm over each head (Qwen3-MoE) */
    QM_ARCH_QK_NORM_WHOLE = 1 << 2,  /* RMSNorm over the whole projection (OLMoE) */
    QM_ARCH_SHARED_SIGMOID = 1 << 3, /* shared expert scaled by sigmoid(shared_gate x) */
    QM_ARCH_RENORM_ALWAYS = 1 << 4,  /* top-k weights always renormalised (Mixtral) */
};

typedef struct qm_arch {
    const char *name;              /* architectures[0] in config.json */
    qm_family family;              /* what policies' arch guards call it (base.h) */
    unsigned flags;
    const qm_arch_key *keys;       /* config keys beyond the common ones; {NULL} ends */
    const qm_arch_name *names;     /* FFN tensor names; attention, norms, embeddings are common */
    /* Fill fields that follow from others (e.g. DeepSeek's fused shared width). */
    void (*derive)(qm_config *c);
} qm_arch;

extern const qm_arch qm_arch_mixtral, qm_arch_deepseek, qm_arch_qwen2moe, qm_arch_qwen3moe,
    qm_arch_olmoe;

/* The adapter for `name` (config.json's architectures[0]), or NULL. */
const qm_arch *qm_arch_find(const char *name);
/* Append "MixtralForCausalLM, DeepseekForCausalLM, ..." to b, for messages. */
void qm_arch_list(qm_buf *b);

typedef struct qm_tensor {
    qm_part part;
    int layer;               /* -1 for model-level parts */
    int expert;              /* -1 unless a routed expert */
    char *canon;             /* canonical name, e.g. "layers[3].experts[5].down"; in the model's names */
    const qm_st_tensor *st;  /* header entry in the checkpoint (qweight when packed) */
    size_t file;             /* index of its checkpoint file */
    int ndim;
    uint64_t shape[2];       /* logical shape: (out, in) for linears */
    uint64_t numel;          /* logical parameter count */
    /* A linear stored GPTQ-packed (X.qweight, X.qzeros, X.scales, X.g_idx in
     * place of X.weight): bits > 0 and the other three tensors. */
    int bits, groups;
    const qm_st_tensor *qzeros, *scales, *g_idx;
    /* Read from a GGUF file instead (qm_model_attach_gguf): 1 + its index in
     * m->gguf, 0 for the checkpoint's; its rows' RoPE permutation there. */
    size_t gguf;
    int gguf_heads;
} qm_tensor;

typedef struct qm_model {
    char *dir;               /* owned */
    char *config_path;       /* owned */
    const qm_arch *arch;
    qm_config cfg;
    qm_ckpt *ckpt;           /* owned */
    unsigned char *is_moe;   /* (cfg.layers) 1 for MoE layers; owned */
    long long n_moe;         /* number of MoE layers */
    size_t n;
    qm_tensor *t;            /* (n) in checkpoint order; owned */
    qm_arena names;          /* the canonical names of t */
    size_t n_unexpected;     /* checkpoint tensors that map to nothing */
    size_t n_packed;         /* linears stored GPTQ-packed */
    struct qm_gguf_file *gguf; /* weights from a GGUF file (gguf.h), owned; NULL: the checkpoint's */
} qm_model;

/* Open the model directory `dir` (config.json + safetensors).  Caller
 * closes with qm_model_close().  Warnings (unexpected tensors) go to d and
 * do not fail the open. */
qm_status qm_model_open(const char *dir, qm_model **out, qm_diag *d);
void qm_model_close(qm_model *m);

/* qm_path_check_output() of out against the files m was read from (its
 * directory, config.json, each shard, wherever links lead) and the
 * caller's other inputs more[0, n_more). */
qm_status qm_model_check_output(const qm_model *m, const char *opt, const char *out, int out_is_dir,
                                const qm_path_input *more, size_t n_more, qm_diag *d);

/* The index in m->t of layer `layer`'s tensor `part` (of routed expert
 * `expert`; -1: not an expert's), or -1 when the model has none. */
long qm_model_tensor(const qm_model *m, int layer, qm_part part, int expert);
/* Parameters per group and bytes at the stored dtypes, over m->t. */
void qm_model_count(const qm_model *m, uint64_t params[QM_GROUP_COUNT], uint64_t *bytes);
/* sha256 (hex) of the model's tensor set: each tensor's checkpoint name,
 * dtype and logical shape, in checkpoint order.  What a scores file records
 * so that it is read only with the model it was made from. */
void qm_model_tensors_sha256(const qm_model *m, char out[65]);

/* Read config.json at `path` for architecture detection and sizes only. */
qm_status qm_config_read(const char *path, const qm_arch **arch, qm_config *c, qm_diag *d);
void qm_config_free(qm_config *c);

/* Resolve a qm_dim against a config. */
long long qm_dim_size(const qm_config *c, qm_dim dim);

/* The outlier score of a weight W (out, in), data-free (outlier.c): for
 * each input column j, max_i |W_ij| / mean_i |W_ij|; the largest. */
double qm_outlier_score(const float *w, int out, int in);

#endif
