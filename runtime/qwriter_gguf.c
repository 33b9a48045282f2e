/* qwriter_gguf.c: the "gguf" output format (see qwriter.h): one GGUF v3
 * file that llama.cpp loads, with the architecture names, metadata and
 * tensor names its converter (convert_hf_to_gguf.py) writes:
 *
 *   MixtralForCausalLM   -> arch "llama", experts stacked as
 *                           ffn_{gate,up,down}_exps (experts, out, in)
 *   DeepseekForCausalLM  -> arch "deepseek", leading dense layers
 *                           ffn_{gate,up,down}, shared experts ffn_*_shexp
 *   Qwen2MoeForCausalLM  -> arch "qwen2moe", q/k/v biases, the shared expert
 *                           ffn_*_shexp with its gate ffn_gate_inp_shexp
 *   Qwen3MoeForCausalLM  -> arch "qwen3moe", per-head attn_{q,k}_norm
 *   OlmoeForCausalLM     -> arch "olmoe", whole-projection attn_{q,k}_norm
 *
 * q and k rows are permuted as the converter does, since llama.cpp applies
 * RoPE to consecutive pairs where Hugging Face rotates halves.  Quantized
 * linears hold GPTQ's own codes on ggml's block grids (no re-rounding):
 * 8-bit symmetric group 32 -> Q8_0, 4- and 5-bit symmetric group 32 ->
 * Q4_0 and Q5_0, 4- and 5-bit asymmetric group 32 -> Q4_1 and Q5_1
 * (ggml's own grids, searched: see grids[] below); the run quantizes with
 * fp16 scales (qm_qspec.fp16_scale) so that a block's stored d and m are
 * GPTQ's grid exactly.  The group-32 types take rows of any multiple of 32, so 5-bit is
 * the width between 4 and 8 that narrow rows can hold.  2- and 3-bit group
 * 16 (the k-quant sub-block) or 256 (the super-block) -> Q2_K and Q3_K,
 * 4-bit group 256 -> Q4_K: GPTQ runs onto a two-level grid fixed first
 * (gptq.h), whose integers the blocks store (see grids[] below); rows not a
 * multiple of 256 fall back to Q4_0/Q4_1 holding the codes (a warning; an
 * error with --strict).  Kept tensors are written in the stored dtype or in
 * job->float_type; norms and the router are F32 as
 * llama.cpp wants them.  Byte-level models get tokenizer.ggml.model "none"
 * with the vocabulary size (llama.cpp then adds dummy tokens).
 *
 * Streaming and resuming: layer() writes the layer's tensor data, aligned,
 * to OUT/gguf-parts/layer-NNNNN.bin; end() writes the header, the
 * embeddings, every part in order and the final norm and head into the
 * target file atomically.  The tensor list, types and offsets follow from
 * model and plan alone (computed in begin(), where a plan GGUF cannot hold
 * is refused before any GPTQ runs), so end() needs nothing from layer()
 * but the parts' bytes, whose sizes it checks.
 */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"
#include "model/json.h"
#include "runtime/qwriter.h"

/* ---- architectures ---------------------------------------------------------------------------- */

/* The architecture keys beyond the common ones; an error for what llama.cpp cannot run. */
typedef struct gguf_arch {
    const char *name;  /* general.architecture (qm_gguf_arch_find()) */
    qm_status (*meta)(const qm_model *m, qm_gguf_meta *g, qm_diag *d);
} gguf_arch;

static qm_status meta_llama(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    (void)m, (void)g, (void)d;
    return QM_OK;
}

static qm_status meta_deepseek(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    const qm_config *c = &m->cfg;
    if (c->moe_freq != 1)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: moe_layer_freq %lld: llama.cpp's deepseek runs MoE in every "
                            "layer after the leading dense ones", m->config_path, c->moe_freq);
    qm_gguf_meta_str(g, "deepseek.rope.scaling.type", "none");
    qm_gguf_meta_u32(g, "deepseek.leading_dense_block_count", (uint32_t)c->first_dense);
    qm_gguf_meta_u32(g, "deepseek.expert_feed_forward_length", (uint32_t)c->expert_ff);
    qm_gguf_meta_f32(g, "deepseek.expert_weights_scale", 1.0f);
    qm_gguf_meta_u32(g, "deepseek.expert_shared_count", (uint32_t)c->shared);
    return QM_OK;
}

/* llama.cpp's qwen2moe, qwen3moe and olmoe run MoE in every layer, and
 * renormalise the top-k weights (qwen3moe) or never (the other two):
 * src/models/<arch>.cpp build_moe_ffn. */
static qm_status moe_every_layer(const qm_model *m, const char *arch, int renorm, qm_diag *d)
{
    const qm_config *c = &m->cfg;
    if (c->sparse_step != 1 || c->n_mlp_only)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: decoder_sparse_step %lld / mlp_only_layers (%lld): llama.cpp's "
                            "%s runs MoE in every layer", m->config_path, c->sparse_step, c->n_mlp_only, arch);
    if (!c->norm_topk != !renorm)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: norm_topk_prob %s: llama.cpp's %s %s the top-k router weights",
                            m->config_path, c->norm_topk ? "true" : "false", arch,
                            renorm ? "always renormalises" : "never renormalises");
    return QM_OK;
}

static qm_status meta_qwen2moe(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    qm_status st = moe_every_layer(m, "qwen2moe", 0, d);
    qm_gguf_meta_u32(g, "qwen2moe.expert_feed_forward_length", (uint32_t)m->cfg.expert_ff);
    if (m->cfg.shared_ff)
        qm_gguf_meta_u32(g, "qwen2moe.expert_shared_feed_forward_length", (uint32_t)m->cfg.shared_ff);
    return st;
}

static qm_status meta_qwen3moe(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    qm_status st = moe_every_layer(m, "qwen3moe", 1, d);
    qm_gguf_meta_u32(g, "qwen3moe.attention.key_length", (uint32_t)m->cfg.head_dim);
    qm_gguf_meta_u32(g, "qwen3moe.attention.value_length", (uint32_t)m->cfg.head_dim);
    qm_gguf_meta_u32(g, "qwen3moe.expert_feed_forward_length", (uint32_t)m->cfg.expert_ff);
    return st;
}

static qm_status meta_olmoe(const qm_model *m, qm_gguf_meta *g, qm_diag *d)
{
    (void)g;
    if (m->cfg.kv_heads != m->cfg.heads) /* src/models/olmoe.cpp: attn_k_norm {n_embd} */
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: num_key_value_heads %lld: llama.cpp's olmoe normalises k over "
                            "the whole hidden size, so it needs num_attention_heads (%lld) key/value heads",
                            m->config_path, m->cfg.kv_heads, m->cfg.heads);
    return moe_every_layer(m, "olmoe", 0, d);
}

static const gguf_arch archs[] = {
    {"llama", meta_llama},       {"deepseek", meta_deepseek}, {"qwen2moe", meta_qwen2moe},
    {"qwen3moe", meta_qwen3moe}, {"olmoe", meta_olmoe},
};

/* ---- the tensor list ---------------------------------------------------------------------------- */

/* One GGUF tensor: a model tensor, or a layer's routed experts of one part
 * stacked (member k is expert k). */
typedef struct gtensor {
    char *name;        /* owned */
    int layer;         /* -1: model level */
    size_t *member;    /* (n_member) model tensor indices; owned */
    size_t n_member;
    int heads;         /* > 0: rows permuted for RoPE over this many heads */
} gtensor;

typedef struct gstate {
    const qm_gguf_arch *names; /* names and permutation */
    const gguf_arch *arch;
    char *parts;       /* OUT/gguf-parts; owned */
    gtensor *gt;       /* (n) in file order; owned */
    qm_gguf_tensor *info; /* (n) names point into gt */
    size_t n;
    uint64_t data_bytes;
} gstate;

static void state_free(gstate *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->gt[i].name);
        free(s->gt[i].member);
    }
    free(s->gt);
    free(s->info);
    free(s->parts);
    free(s);
}

/* How a plan's (bits, group, sym) lands on a ggml type: the group-32 types
 * take a one-level grid with fp16 scales; the k-quants a two-level
 * grid of `sub`-value sub-blocks with `scale_bits`-bit scales under one
 * fp16 scale per 256 values (gptq.h), in their own form whatever the
 * plan's sym says (Q3_K symmetric, Q2_K and Q4_K scale and minimum).  A
 * plan asks for a k-quant with the sub-block as its group (16 at 2 and 3
 * bits) or with the super-block (group 256 at 2, 3 or 4 bits).
 *
 * `own`: the type's own grid rather than GPTQ's: ggml's signed-max grid
 * (Q4_0, Q5_0: qm_qspec.signed_max) or a free fp16 minimum (Q4_1, Q5_1:
 * free_min; k-quants have theirs always); `searched`: its scales searched
 * by H_ii-weighted least squares (fit_scale, as llama.cpp's quantizer
 * searches them with an importance matrix); `act_order`: static groups in
 * act-order (GGUF's contiguous blocks admit act-order only so), else
 * dynamic groups in column order (a k-quant's super-block and sub-block
 * grids fixed as GPTQ reaches them).  Each setting was kept where llama.cpp's
 * KLD measured it better on all three example models (README). */
typedef struct ggrid {
    int bits, group, sym; /* the plan's; sym -1: either */
    int type;
    int sub, scale_bits, ksym; /* k-quants */
    int own, searched, act_order;
} ggrid;

static const ggrid grids[] = {
    {8, 32, 1, QM_GGML_Q8_0, 0, 0, 0, 0, 0, 0},     {4, 32, 1, QM_GGML_Q4_0, 0, 0, 0, 1, 1, 1},
    {4, 32, 0, QM_GGML_Q4_1, 0, 0, 0, 1, 1, 0},     {5, 32, 1, QM_GGML_Q5_0, 0, 0, 0, 1, 1, 1},
    {5, 32, 0, QM_GGML_Q5_1, 0, 0, 0, 1, 1, 1},     {2, 16, -1, QM_GGML_Q2_K, 16, 4, 0, 1, 1, 0},
    {2, 256, -1, QM_GGML_Q2_K, 16, 4, 0, 1, 1, 0},  {3, 16, -1, QM_GGML_Q3_K, 16, 6, 1, 1, 1, 0},
    {3, 256, -1, QM_GGML_Q3_K, 16, 6, 1, 1, 1, 0},  {4, 256, -1, QM_GGML_Q4_K, 32, 6, 0, 1, 1, 0},
};

static const ggrid *find_grid(const qm_plan_tensor *pt)
{
    for (size_t k = 0; k < sizeof grids / sizeof grids[0]; k++)
        if (pt->bits == grids[k].bits && pt->group == grids[k].group && (grids[k].sym < 0 || !pt->sym == !grids[k].sym)
            && !pt->act_order)
            return &grids[k];
    return NULL;
}

/* A k-quant tensor whose rows are not a multiple of 256 falls back to the
 * group-32 block of its sym holding GPTQ's codes at the plan's bits: Q4_0
 * (symmetric) or Q4_1. */
static int row_falls_back(uint64_t in, const ggrid *g) { return g->sub && in % 256; }

static int is_fallback(const qm_tensor *t, const ggrid *g) { return row_falls_back(t->shape[t->ndim - 1], g); }

static int fallback_type(const qm_plan_tensor *pt) { return pt->sym ? QM_GGML_Q4_0 : QM_GGML_Q4_1; }

/* The ggml type of model tensor i under the plan, or -1 with a diagnostic. */
static int tensor_type(const qwriter_job *j, size_t i)
{
    const qm_tensor *t = &j->m->t[i];
    const qm_plan_tensor *pt = j->by_tensor[i];
    if (!pt || !pt->bits) {
        if (t->ndim == 1 || t->part == QM_PART_ROUTER || t->part == QM_PART_SHARED_ROUTER)
            return QM_GGML_F32; /* llama.cpp keeps norms, biases and routers F32 */
        qm_dtype dt = t->st->dtype;
        if (j->float_type && !qm_dtype_parse(j->float_type, &dt))
            return qm_diag_fail(j->d, QM_EINVAL, "--keep-type '%s' is not F32, F16 or BF16", j->float_type), -1;
        if (dt == QM_DT_F32)
            return QM_GGML_F32;
        if (dt == QM_DT_F16)
            return QM_GGML_F16;
        if (dt == QM_DT_BF16)
            return QM_GGML_BF16;
        return qm_diag_fail(j->d, QM_EUNSUPPORTED, "'%s' is %s; GGUF keeps F32, F16 or BF16", t->st->name,
                            qm_dtype_name(dt)), -1;
    }
    const ggrid *g = find_grid(pt);
    if (!g)
        return qm_diag_fail(j->d, QM_EUNSUPPORTED, "'%s': %d-bit %s group %d%s has no GGUF block type (GGUF holds "
                            "8-bit symmetric group 32 as Q8_0, 4-bit group 32 as Q4_0 (symmetric) or Q4_1, 5-bit "
                            "group 32 as Q5_0 (symmetric) or Q5_1, 2- and 3-bit group 16 or 256 as Q2_K and Q3_K, "
                            "4-bit group 256 as Q4_K)", pt->name, pt->bits,
                            pt->sym ? "symmetric" : "asymmetric", pt->group, pt->act_order ? " with act-order" : ""),
               -1;
    if (!is_fallback(t, g))
        return g->type;
    if (j->strict)
        return qm_diag_fail(j->d, QM_EUNSUPPORTED, "'%s': rows of %llu values cannot hold %s super-blocks of 256 "
                            "(--strict refuses the %s fallback)", pt->name,
                            (unsigned long long)t->shape[t->ndim - 1], qm_ggml_types[g->type].name,
                            qm_ggml_types[fallback_type(pt)].name), -1;
    return fallback_type(pt);
}

/* (qwriter.h) The settings grids[] gives each type; a k-quant's fallback
 * keeps GPTQ's plain grid. */
void qm_gguf_spec(const qm_plan_tensor *pt, uint64_t in, qm_qspec *s)
{
    const ggrid *g = pt && pt->bits ? find_grid(pt) : NULL;
    s->fp16_scale = 1;
    if (!g)
        return;
    if (row_falls_back(in, g)) {
        s->group = 32;
        return;
    }
    if (g->sub) {
        s->group = g->sub;
        s->sym = g->ksym;
        s->scale_bits = g->scale_bits;
        s->super = 256 / g->sub;
    }
    s->fit_scale = g->searched;
    s->signed_max = g->own && s->sym && !g->sub;
    s->free_min = g->own && !s->sym && !g->sub;
    s->static_groups = s->act_order = g->act_order;
}

/* GPTQ's settings for model tensor i, as its ggml type needs them. */
static void spec(const qwriter_job *j, size_t i, qm_qspec *s)
{
    const qm_tensor *t = &j->m->t[i];
    qm_gguf_spec(j->by_tensor[i], t->shape[t->ndim - 1], s);
}

/* Append the GGUF tensor of model tensor i (or, for a routed expert, of all
 * experts of its layer and part, when i is expert 0's). */
static qm_status add_tensor(const qwriter_job *j, gstate *s, size_t i)
{
    const qm_model *m = j->m;
    const qm_tensor *t = &m->t[i];
    if (t->expert > 0)
        return QM_OK;
    gtensor *g = &s->gt[s->n];
    qm_gguf_tensor *info = &s->info[s->n];
    size_t n = t->expert == 0 ? (size_t)m->cfg.experts : 1;
    g->layer = t->layer;
    g->name = qm_gguf_name(t);
    g->member = calloc(n, sizeof *g->member);
    if (!g->name || !g->member) {
        free(g->name);
        free(g->member);
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    }
    s->n++;
    g->n_member = n;
    g->member[0] = i;
    for (size_t k = 0; k < m->n && n > 1; k++)
        if (m->t[k].layer == t->layer && m->t[k].part == t->part && m->t[k].expert > 0)
            g->member[m->t[k].expert] = k;
    g->heads = qm_gguf_heads(m, s->names, t);
    int type = tensor_type(j, i);
    for (size_t k = 1; type >= 0 && k < n; k++) {
        int tk = tensor_type(j, g->member[k]);
        if (tk >= 0 && tk != type)
            return qm_diag_fail(j->d, QM_EUNSUPPORTED, "layer %d: experts 0 and %zu of '%s' would be %s and %s; "
                                "llama.cpp stores a layer's experts as one tensor of one type", t->layer, k,
                                g->name, qm_ggml_types[type].name, qm_ggml_types[tk].name);
        type = tk;
    }
    if (type < 0)
        return QM_EINVAL;
    *info = (qm_gguf_tensor){g->name, t->ndim, {t->shape[t->ndim - 1], t->ndim == 2 ? t->shape[0] : 1, n}, type, 0, 0};
    if (n > 1)
        info->ndim = 3;
    return QM_OK;
}

/* The file's tensors: the embeddings, each layer's in checkpoint order,
 * then the rest of the model level (final norm, head). */
static qm_status build_list(const qwriter_job *j, gstate *s)
{
    const qm_model *m = j->m;
    if (!(s->gt = calloc(m->n + 1, sizeof *s->gt)) || !(s->info = calloc(m->n + 1, sizeof *s->info)))
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    qm_status st = QM_OK;
    for (size_t i = 0; st == QM_OK && i < m->n; i++)
        if (m->t[i].part == QM_PART_EMBED)
            st = add_tensor(j, s, i);
    for (int L = 0; L < m->cfg.layers; L++)
        for (size_t i = 0; st == QM_OK && i < m->n; i++)
            if (m->t[i].layer == L)
                st = add_tensor(j, s, i);
    for (size_t i = 0; st == QM_OK && i < m->n; i++)
        if (m->t[i].layer < 0 && m->t[i].part != QM_PART_EMBED)
            st = add_tensor(j, s, i);
    if (st == QM_OK && !(s->data_bytes = qm_gguf_layout(s->info, s->n, QM_GGUF_ALIGNMENT, j->d)))
        st = QM_EUNSUPPORTED;
    size_t fell = 0, first = 0;
    for (size_t k = 0; st == QM_OK && k < s->n; k++) {
        const qm_plan_tensor *pt = j->by_tensor[s->gt[k].member[0]];
        const ggrid *g = pt && pt->bits ? find_grid(pt) : NULL;
        if (g && is_fallback(&m->t[s->gt[k].member[0]], g) && !fell++)
            first = k;
    }
    if (fell)
        qm_diag_warn(j->d, "GGUF: %zu tensor%s with rows not a multiple of 256 hold%s GPTQ's codes in group-32 blocks "
                     "instead of k-quants (first: '%s', %llu values, %s); --strict refuses them", fell,
                     fell > 1 ? "s" : "", fell > 1 ? "" : "s", s->info[first].name,
                     (unsigned long long)s->info[first].ne[0], qm_ggml_types[s->info[first].type].name);
    return st;
}

static qm_status begin(qwriter *w)
{
    const qwriter_job *j = w->job;
    gstate *s = calloc(1, sizeof *s);
    if (!s)
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    s->names = qm_gguf_arch_find(j->m->arch->name);
    for (size_t k = 0; s->names && k < sizeof archs / sizeof archs[0]; k++)
        if (strcmp(archs[k].name, s->names->name) == 0)
            s->arch = &archs[k];
    qm_status st = s->arch ? QM_OK : qm_diag_fail(j->d, QM_EUNSUPPORTED, "GGUF output of %s is not supported yet "
                                                  "(supported: MixtralForCausalLM, DeepseekForCausalLM, "
                                                  "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM)",
                                                  j->m->arch->name);
    if (st == QM_OK && !j->file)
        st = qm_diag_fail(j->d, QM_EINVAL, "the GGUF format needs an output file");
    if (st == QM_OK) { /* what llama.cpp cannot run is refused before any GPTQ */
        qm_gguf_meta scratch = {0};
        st = s->arch->meta(j->m, &scratch, j->d);
        if (st == QM_OK)
            st = qm_gguf_put_vocab(j->m, &scratch, j->d);
        qm_gguf_meta_free(&scratch);
    }
    if (st == QM_OK)
        st = build_list(j, s);
    if (st == QM_OK && !(s->parts = qm_strfmt("%s/gguf-parts", j->out)))
        st = qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = qm_mkdir(s->parts, j->d);
    if (st != QM_OK) {
        state_free(s);
        return st;
    }
    w->state = s;
    return QM_OK;
}

static void abort_(qwriter *w)
{
    state_free(w->state);
    w->state = NULL;
}

/* ---- tensor data ---------------------------------------------------------------------------------- */

/* Scratch for one row of `in` values. */
typedef struct rowbuf {
    uint8_t *blocks;  /* the row's bytes */
    uint8_t *codes;   /* (in) codes as the block stores them */
    uint16_t *d, *m;  /* (in / 16) fp16 bits: scales and minima (k-quants: per super-block) */
    int8_t *l;        /* (in / 16) k-quant sub-block scales */
    uint8_t *lm;      /* (in / 16) k-quant sub-block minima */
    float *back;      /* (in) the row read back */
} rowbuf;

/* Row `row` of a quantized tensor at ggml type `type` into rb->blocks. */
static qm_status put_qrow(const qwriter_job *j, int type, const qm_qresult *q, uint64_t row, uint64_t in, rowbuf *rb)
{
    const uint8_t *codes = q->codes + row * in;
    if (q->lscale) { /* a two-level grid: Q2_K, Q3_K, Q4_K */
        uint64_t G = (uint64_t)q->groups, S = in / 256;
        for (uint64_t b = 0; b < S; b++) {
            rb->d[b] = qm_f32_to_f16(q->sd[b * (uint64_t)q->out + row]);
            rb->m[b] = q->smin ? qm_f32_to_f16(q->smin[b * (uint64_t)q->out + row]) : 0;
        }
        for (uint64_t g = 0; g < G; g++) {
            rb->l[g] = q->lscale[g * (uint64_t)q->out + row];
            rb->lm[g] = q->lmin ? q->lmin[g * (uint64_t)q->out + row] : 0;
        }
        qm_ggml_kscales k = {rb->d, q->smin ? rb->m : NULL, rb->l, q->lmin ? rb->lm : NULL};
        qm_ggml_put_krow(type, rb->blocks, codes, &k, (size_t)in);
        return QM_OK;
    }
    /* one fp16 scale per block of 32: Q8_0, Q4_0 and Q5_0 store code - zero (+ 128, + 8, + 16), Q4_1 and
     * Q5_1 the code */
    static const int biases[QM_GGML_TYPE_COUNT] = {[QM_GGML_Q8_0] = 128, [QM_GGML_Q4_0] = 8, [QM_GGML_Q5_0] = 16};
    int bias = biases[type], has_min = type == QM_GGML_Q4_1 || type == QM_GGML_Q5_1;
    for (uint64_t b = 0; b < in / 32; b++) {
        size_t k = (size_t)b * q->out + row;
        float sc = q->scale[k], mn = q->min ? -q->min[k] : -sc * (float)q->zero[k]; /* min: free_min's m' */
        rb->d[b] = qm_f32_to_f16(sc);
        rb->m[b] = qm_f32_to_f16(mn);
        if (qm_f16_to_f32(rb->d[b]) != sc || (has_min && qm_f16_to_f32(rb->m[b]) != mn))
            return qm_diag_fail(j->d, QM_EINVAL, "GGUF: a scale (%g, zero %d) is not held by fp16 values; the "
                                "run must quantize with fp16 scales", sc, (int)q->zero[k]);
        for (int c = 0; c < 32; c++)
            rb->codes[32 * b + c] = (uint8_t)(bias ? codes[32 * b + c] - q->zero[k] + bias : codes[32 * b + c]);
    }
    qm_ggml_put_row(type, rb->blocks, rb->codes, rb->d, rb->m, (size_t)in);
    return QM_OK;
}

/* Write row `row` of model tensor i at ggml type `type`: from GPTQ's result
 * q when it is quantized, else from the checkpoint's floats f.  A quantized
 * row is read back through ggml's dequantization (qm_ggml_to_f32) and must
 * give GPTQ's values bit for bit. */
static qm_status put_row(const qwriter_job *j, FILE *out, int type, const qm_qresult *q, const float *f, uint64_t row,
                         uint64_t in, rowbuf *rb)
{
    size_t nb = (size_t)qm_ggml_nbytes(type, in);
    uint8_t *buf = rb->blocks;
    if (q) {
        qm_status st = put_qrow(j, type, q, row, in, rb);
        if (st != QM_OK)
            return st;
        qm_ggml_to_f32(type, buf, rb->back, (size_t)in);
        for (uint64_t c = 0; c < in; c++)
            if (rb->back[c] != q->deq[row * in + c])
                return qm_diag_fail(j->d, QM_EINVAL, "GGUF: row %llu column %llu reads back from its %s block as %.9g, "
                                    "not GPTQ's %.9g", (unsigned long long)row, (unsigned long long)c,
                                    qm_ggml_types[type].name, rb->back[c], q->deq[row * in + c]);
    } else {
        const float *x = f + row * in;
        for (uint64_t c = 0; c < in; c++) {
            if (type == QM_GGML_F32) {
                memcpy(buf + 4 * c, &x[c], 4);
            } else {
                uint16_t h = type == QM_GGML_F16 ? qm_f32_to_f16(x[c]) : qm_f32_to_bf16(x[c]);
                buf[2 * c] = (uint8_t)h;
                buf[2 * c + 1] = (uint8_t)(h >> 8);
            }
        }
    }
    fwrite(buf, 1, nb, out);
    return QM_OK;
}

/* The quantized linears of the layer being written. */
typedef struct layer_ctx {
    const qwriter *w;
    int layer;
    const qwriter_linear *q;
    size_t n;
} layer_ctx;

/* Tensor g's data (g.info's bytes, then padding) to out. */
static qm_status put_tensor(const qwriter_job *j, FILE *out, const gtensor *g, const qm_gguf_tensor *info,
                            const layer_ctx *lc)
{
    uint64_t in = info->ne[0], rows = info->ne[1];
    size_t nsub = (size_t)in / 16 + 1;
    rowbuf rb = {malloc((size_t)qm_ggml_nbytes(info->type, in) + 1), malloc((size_t)in + 1),
                 malloc(nsub * sizeof *rb.d), malloc(nsub * sizeof *rb.m), malloc(nsub), malloc(nsub),
                 malloc((size_t)in * sizeof *rb.back + 1)};
    float *f = NULL;
    qm_status st = rb.blocks && rb.codes && rb.d && rb.m && rb.l && rb.lm && rb.back
                       ? QM_OK : qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    for (size_t e = 0; st == QM_OK && e < g->n_member; e++) {
        const qm_tensor *t = &j->m->t[g->member[e]];
        const qm_qresult *q = NULL;
        for (size_t k = 0; lc && k < lc->n; k++)
            if (lc->q[k].tensor == g->member[e])
                q = &lc->q[k].r;
        if (j->by_tensor[g->member[e]] && j->by_tensor[g->member[e]]->bits && !q)
            st = qm_diag_fail(j->d, QM_EINVAL, "GGUF: '%s' was not quantized in this run", t->st->name);
        if (st == QM_OK && q) {
            uint64_t gs = in / (uint64_t)q->groups;
            for (uint64_t c = 0; c < in && st == QM_OK; c++)
                if (q->g_idx[c] != (int32_t)(c / gs))
                    st = qm_diag_fail(j->d, QM_EINVAL, "GGUF: '%s' has groups out of column order", t->st->name);
        }
        free(f);
        f = NULL;
        if (st == QM_OK && !q) {
            if (!(f = malloc((size_t)t->numel * sizeof *f)))
                st = qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
            else if ((st = qm_st_check_live(j->m->ckpt->files[t->file], t->st, j->d)) == QM_OK)
                st = qm_st_to_f32(j->m->ckpt->files[t->file]->path, t->st, f, j->d);
        }
        for (uint64_t r = 0; st == QM_OK && r < rows; r++)
            st = put_row(j, out, info->type, q, f, qm_gguf_source_row(r, rows, g->heads), in, &rb);
        if (st != QM_OK && q)
            qm_diag_note(j->d, "while writing '%s'", t->st->name);
    }
    qm_gguf_pad(out, info->nbytes, QM_GGUF_ALIGNMENT);
    free(f);
    free(rb.blocks);
    free(rb.codes);
    free(rb.d);
    free(rb.m);
    free(rb.l);
    free(rb.lm);
    free(rb.back);
    return st;
}

static char *part_path(const gstate *s, int L) { return qm_strfmt("%s/layer-%05d.bin", s->parts, L); }

static qm_status put_layer(const void *ctx, FILE *f, qm_diag *d)
{
    const layer_ctx *lc = ctx;
    const gstate *s = lc->w->state;
    qm_status st = QM_OK;
    (void)d;
    for (size_t i = 0; st == QM_OK && i < s->n; i++)
        if (s->gt[i].layer == lc->layer)
            st = put_tensor(lc->w->job, f, &s->gt[i], &s->info[i], lc);
    return st;
}

static qm_status layer(qwriter *w, int L, const qwriter_linear *q, size_t n)
{
    layer_ctx lc = {w, L, q, n};
    char *p = part_path(w->state, L);
    qm_status st = p ? qm_afile_write(p, put_layer, &lc, 1, w->job->d)
                     : qm_diag_fail(w->job->d, QM_ENOMEM, "out of memory");
    free(p);
    return st;
}

/* ---- the file ------------------------------------------------------------------------------------- */

/* general.file_type (llama_ftype) of the type holding the most bytes among linears. */
static uint32_t file_type(const gstate *s)
{
    static const uint32_t ftype[QM_GGML_TYPE_COUNT] = {
        [QM_GGML_F32] = 0, [QM_GGML_F16] = 1, [QM_GGML_Q4_0] = 2, [QM_GGML_Q4_1] = 3, [QM_GGML_Q8_0] = 7,
        [QM_GGML_Q5_0] = 8, [QM_GGML_Q5_1] = 9, [QM_GGML_Q2_K] = 10, [QM_GGML_Q3_K] = 11, /* Q3_K_S */
        [QM_GGML_Q4_K] = 14, [QM_GGML_BF16] = 32,                                        /* Q4_K_S */
    };
    uint64_t bytes[QM_GGML_TYPE_COUNT] = {0};
    for (size_t i = 0; i < s->n; i++)
        if (s->info[i].ndim >= 2 && s->gt[i].layer >= 0)
            bytes[s->info[i].type] += s->info[i].nbytes;
    int best = QM_GGML_F32;
    for (int t = 0; t < QM_GGML_TYPE_COUNT; t++)
        if (bytes[t] > bytes[best])
            best = t;
    return ftype[best];
}

/* The metadata convert_hf_to_gguf.py writes for these models, in its order. */
static qm_status build_meta(const qwriter *w, qm_gguf_meta *g)
{
    const qwriter_job *j = w->job;
    const gstate *s = w->state;
    const qm_config *c = &j->m->cfg;
    const char *a = s->arch->name;
    json_t *cfg = NULL;
    qm_status st = qm_json_load(j->m->config_path, &cfg, j->d);
    if (st != QM_OK)
        return st;
    json_int_t ctx = json_integer_value(json_object_get(cfg, "max_position_embeddings"));
    json_decref(cfg);
    const char *base = strrchr(j->m->dir, '/');
    char key[96];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    qm_gguf_meta_str(g, "general.architecture", a);
    qm_gguf_meta_str(g, "general.type", "model");
    qm_gguf_meta_str(g, "general.name", base && base[1] ? base + 1 : j->m->dir);
    qm_gguf_meta_u32(g, KEY("block_count"), (uint32_t)c->layers);
    qm_gguf_meta_u32(g, KEY("context_length"), (uint32_t)(ctx > 0 ? ctx : 4096));
    qm_gguf_meta_u32(g, KEY("embedding_length"), (uint32_t)c->hidden);
    qm_gguf_meta_u32(g, KEY("feed_forward_length"), (uint32_t)(c->ff ? c->ff : c->expert_ff));
    qm_gguf_meta_u32(g, KEY("attention.head_count"), (uint32_t)c->heads);
    qm_gguf_meta_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->kv_heads);
    qm_gguf_meta_f32(g, KEY("rope.freq_base"), (float)c->rope_theta);
    qm_gguf_meta_f32(g, KEY("attention.layer_norm_rms_epsilon"), (float)c->rms_eps);
    qm_gguf_meta_u32(g, KEY("expert_count"), (uint32_t)c->experts);
    qm_gguf_meta_u32(g, KEY("expert_used_count"), (uint32_t)c->top_k);
    qm_gguf_meta_u32(g, "general.file_type", file_type(s));
    qm_gguf_meta_u32(g, KEY("vocab_size"), (uint32_t)c->vocab);
    qm_gguf_meta_u32(g, KEY("rope.dimension_count"), (uint32_t)c->head_dim);
#undef KEY
    if ((st = s->arch->meta(j->m, g, j->d)) != QM_OK)
        return st;
    qm_gguf_meta_u32(g, "general.quantization_version", 2);
    qm_gguf_meta_u32(g, "general.alignment", QM_GGUF_ALIGNMENT);
    if ((st = qm_gguf_put_vocab(j->m, g, j->d)) != QM_OK)
        return st;
    return g->b.oom ? qm_diag_fail(j->d, QM_ENOMEM, "out of memory") : QM_OK;
}

typedef struct file_ctx {
    const qwriter *w;
    const qm_gguf_meta *meta;
} file_ctx;

/* Copy part file p (n bytes expected) to out. */
static qm_status copy_part(const char *p, uint64_t n, FILE *out, qm_diag *d)
{
    FILE *f;
    qm_status st = qm_fopen_input(p, &f, d);
    if (st != QM_OK)
        return st;
    char buf[1 << 16];
    uint64_t got = 0;
    for (size_t k; (k = fread(buf, 1, sizeof buf, f)) > 0; got += k)
        fwrite(buf, 1, k, out);
    if (ferror(f) || got != n)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: %llu bytes, not the %llu the plan gives the layer; remove the output "
                          "directory and run again", p, (unsigned long long)got, (unsigned long long)n);
    fclose(f);
    return st;
}

static qm_status put_file(const void *ctx, FILE *out, qm_diag *d)
{
    const file_ctx *fc = ctx;
    const gstate *s = fc->w->state;
    if (!qm_gguf_put_header(out, fc->meta, s->info, s->n, QM_GGUF_ALIGNMENT))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_status st = QM_OK;
    for (size_t i = 0; st == QM_OK && i < s->n;) {
        int L = s->gt[i].layer;
        if (L < 0) {
            st = put_tensor(fc->w->job, out, &s->gt[i], &s->info[i], NULL);
            i++;
            continue;
        }
        uint64_t from = s->info[i].offset;
        while (i < s->n && s->gt[i].layer == L)
            i++;
        uint64_t to = i < s->n ? s->info[i].offset : s->data_bytes;
        char *p = part_path(s, L);
        st = p ? copy_part(p, to - from, out, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
        free(p);
    }
    return st;
}

static qm_status end(qwriter *w)
{
    qm_gguf_meta meta = {0};
    qm_status st = build_meta(w, &meta);
    file_ctx fc = {w, &meta};
    if (st == QM_OK)
        st = qm_afile_write(w->job->file, put_file, &fc, 1, w->job->d);
    qm_gguf_meta_free(&meta);
    abort_(w);
    return st;
}

/* ---- the preview -------------------------------------------------------------------------- */

/* Layers as "0-3,5" into b (n bits of seen). */
static void layer_ranges(const unsigned char *seen, int n, char *b, size_t size)
{
    size_t at = 0;
    b[0] = '\0';
    for (int L = 0; L < n && at < size; L++) {
        if (!seen[L] || (L > 0 && seen[L - 1]))
            continue;
        int e = L;
        while (e + 1 < n && seen[e + 1])
            e++;
        at += (size_t)snprintf(b + at, size - at, e > L ? "%s%d-%d" : "%s%d", at ? "," : "", L, e);
    }
    if (!b[0])
        snprintf(b, size, "-");
}

qm_status qm_gguf_preview(const qm_model *m, const qm_plan *plan, const qm_plan_tensor *const *by_tensor,
                          const char *float_type, int strict, FILE *f, qm_diag *d)
{
    qwriter_job j = {m, plan, by_tensor, 0, NULL, "preview.gguf", float_type, strict, d};
    gstate *s = calloc(1, sizeof *s);
    if (!s)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    s->names = qm_gguf_arch_find(m->arch->name);
    qm_status st = s->names ? build_list(&j, s)
                            : qm_diag_fail(d, QM_EUNSUPPORTED, "GGUF output of %s is not supported yet", m->arch->name);
    int L = (int)m->cfg.layers;
    unsigned char *seen = st == QM_OK ? calloc((size_t)(L + 1) * (s->n + 1), 1) : NULL;
    size_t *first = st == QM_OK ? calloc(s->n + 1, sizeof *first) : NULL; /* group of each tensor: its first member */
    if (st == QM_OK && (!seen || !first))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        fprintf(f, "\n%-26s %-5s %-20s %-9s %7s %14s  %s\n", "gguf tensor", "type", "dims", "layers", "tensors",
                "bytes", "note");
        uint64_t total = 0;
        for (size_t i = 0; i < s->n; i++) { /* rows: base name, type, dims and fallback alike */
            const char *bi = s->gt[i].layer < 0 ? s->info[i].name : strchr(strchr(s->info[i].name, '.') + 1, '.') + 1;
            const qm_plan_tensor *pt = by_tensor[s->gt[i].member[0]];
            const ggrid *g = pt && pt->bits ? find_grid(pt) : NULL;
            int fb = g && is_fallback(&m->t[s->gt[i].member[0]], g);
            first[i] = i;
            for (size_t k = 0; k < i; k++) {
                const char *bk = s->gt[k].layer < 0 ? s->info[k].name
                                                    : strchr(strchr(s->info[k].name, '.') + 1, '.') + 1;
                if (first[k] == k && s->gt[k].layer >= 0 && s->gt[i].layer >= 0 && !strcmp(bi, bk) &&
                    s->info[k].type == s->info[i].type && s->info[k].ndim == s->info[i].ndim &&
                    !memcmp(s->info[k].ne, s->info[i].ne, sizeof s->info[i].ne) && (seen[k * (size_t)(L + 1) + L] == fb)) {
                    first[i] = k;
                    break;
                }
            }
            seen[first[i] * (size_t)(L + 1) + (s->gt[i].layer >= 0 ? (size_t)s->gt[i].layer : 0)] = 1;
            seen[first[i] * (size_t)(L + 1) + L] = (unsigned char)fb; /* the last slot: the fallback flag */
            total += s->info[i].nbytes;
        }
        for (size_t i = 0; i < s->n; i++) {
            if (first[i] != i)
                continue;
            size_t count = 0;
            uint64_t bytes = 0;
            for (size_t k = i; k < s->n; k++)
                if (first[k] == i) {
                    count++;
                    bytes += s->info[k].nbytes;
                }
            char dims[64], layers[256], note[160] = "";
            const qm_gguf_tensor *t = &s->info[i];
            snprintf(dims, sizeof dims, t->ndim == 1 ? "[%llu]" : t->ndim == 2 ? "[%llu, %llu]" : "[%llu, %llu, %llu]",
                     (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)t->ne[2]);
            if (s->gt[i].layer >= 0)
                layer_ranges(seen + i * (size_t)(L + 1), L, layers, sizeof layers);
            else
                snprintf(layers, sizeof layers, "-");
            const qm_plan_tensor *pt = by_tensor[s->gt[i].member[0]];
            if (seen[i * (size_t)(L + 1) + L])
                snprintf(note, sizeof note, "fallback: %d-bit codes; rows of %llu cannot hold %s", pt->bits,
                         (unsigned long long)t->ne[0], qm_ggml_types[find_grid(pt)->type].name);
            fprintf(f, "%-26s %-5s %-20s %-9s %7zu %14llu  %s\n",
                    s->gt[i].layer >= 0 ? strchr(strchr(t->name, '.') + 1, '.') + 1 : t->name,
                    qm_ggml_types[t->type].name, dims, layers, count, (unsigned long long)bytes, note);
        }
        fprintf(f, "%-26s %-5s %-20s %-9s %7zu %14llu  %s\n", "total", "", "", "", s->n, (unsigned long long)total,
                "of tensor data (each tensor aligned to 32 in the file)");
    }
    free(seen);
    free(first);
    state_free(s);
    return st;
}

const qwriter_ops qwriter_gguf = {"gguf", begin, NULL, layer, end, abort_, spec};
