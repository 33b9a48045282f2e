/* gguf_model.c: a model's tensors under llama.cpp's GGUF names, and a GGUF
 * file's weights put in place of a model directory's (see gguf.h).
 *
 * The names are those of llama.cpp's converter (convert_hf_to_gguf.py and
 * gguf-py/gguf/constants.py): "token_embd.weight", "blk.L.attn_q.weight",
 * "blk.L.ffn_down_exps.weight" (a layer's routed experts of one projection
 * stacked into one (in, out, experts) tensor), "output.weight".  Where
 * llama.cpp ropes consecutive pairs (arch "llama", "deepseek") the
 * converter permutes the rows of q and k: within each head, rows
 * (2, half) become (half, 2); "qwen2moe", "qwen3moe" and "olmoe" rotate
 * halves as Hugging Face does (LLAMA_ROPE_TYPE_NEOX), unpermuted.
 *
 * Reading (`qmoe eval X.gguf --base DIR`): the model directory gives the
 * config, the architecture, the tokenizer and the tensor inventory; every
 * tensor is then found in the GGUF file by its name, its dims checked, and
 * dequantized from the file (ggml_blocks.c) when its layer is loaded, rows
 * unpermuted.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"

const char *const qm_gguf_part_name[QM_PART_COUNT] = {
    [QM_PART_EMBED] = "token_embd",       [QM_PART_LM_HEAD] = "output",
    [QM_PART_FINAL_NORM] = "output_norm", [QM_PART_ATTN_NORM] = "attn_norm",
    [QM_PART_FFN_NORM] = "ffn_norm",      [QM_PART_Q] = "attn_q",
    [QM_PART_K] = "attn_k",               [QM_PART_V] = "attn_v",
    [QM_PART_O] = "attn_output",          [QM_PART_Q_BIAS] = "attn_q",
    [QM_PART_K_BIAS] = "attn_k",          [QM_PART_V_BIAS] = "attn_v",
    [QM_PART_Q_NORM] = "attn_q_norm",     [QM_PART_K_NORM] = "attn_k_norm",
    [QM_PART_ROUTER] = "ffn_gate_inp",    [QM_PART_EXPERT_GATE] = "ffn_gate_exps",
    [QM_PART_EXPERT_UP] = "ffn_up_exps",  [QM_PART_EXPERT_DOWN] = "ffn_down_exps",
    [QM_PART_SHARED_GATE] = "ffn_gate_shexp", [QM_PART_SHARED_UP] = "ffn_up_shexp",
    [QM_PART_SHARED_DOWN] = "ffn_down_shexp", [QM_PART_SHARED_ROUTER] = "ffn_gate_inp_shexp",
    [QM_PART_MLP_GATE] = "ffn_gate",      [QM_PART_MLP_UP] = "ffn_up",
    [QM_PART_MLP_DOWN] = "ffn_down",
};
_Static_assert(sizeof qm_gguf_part_name / sizeof qm_gguf_part_name[0] == QM_PART_COUNT, "a GGUF name for every part");

static const qm_gguf_arch archs[] = {
    {"MixtralForCausalLM", "llama", 1},      {"DeepseekForCausalLM", "deepseek", 1},
    {"Qwen2MoeForCausalLM", "qwen2moe", 0},  {"Qwen3MoeForCausalLM", "qwen3moe", 0},
    {"OlmoeForCausalLM", "olmoe", 0},
};

const qm_gguf_arch *qm_gguf_arch_find(const char *hf)
{
    for (size_t k = 0; k < sizeof archs / sizeof archs[0]; k++)
        if (strcmp(archs[k].hf, hf) == 0)
            return &archs[k];
    return NULL;
}

static int is_bias(qm_part p) { return p == QM_PART_Q_BIAS || p == QM_PART_K_BIAS || p == QM_PART_V_BIAS; }

char *qm_gguf_name(const qm_tensor *t)
{
    if (t->layer < 0)
        return qm_strfmt("%s.weight", qm_gguf_part_name[t->part]);
    return qm_strfmt("blk.%d.%s.%s", t->layer, qm_gguf_part_name[t->part], is_bias(t->part) ? "bias" : "weight");
}

int qm_gguf_heads(const qm_model *m, const qm_gguf_arch *a, const qm_tensor *t)
{
    if (!a->permute_qk)
        return 0;
    if (t->part == QM_PART_Q || t->part == QM_PART_Q_BIAS)
        return (int)m->cfg.heads;
    if (t->part == QM_PART_K || t->part == QM_PART_K_BIAS)
        return (int)m->cfg.kv_heads;
    return 0;
}

uint64_t qm_gguf_source_row(uint64_t r, uint64_t rows, int heads)
{
    if (heads <= 0)
        return r;
    uint64_t hd = rows / (uint64_t)heads, h = r / hd, k = r % hd;
    return h * hd + (k % 2) * (hd / 2) + k / 2;
}

/* ---- reading ---------------------------------------------------------------------------------- */

qm_status qm_model_attach_gguf(qm_model *m, const char *path, qm_diag *d)
{
    const qm_gguf_arch *a = qm_gguf_arch_find(m->arch->name);
    if (!a)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: GGUF models of %s are not supported yet", path, m->arch->name);
    qm_gguf_file *f = NULL;
    qm_status st = qm_gguf_open(path, &f, d);
    if (st != QM_OK)
        return st;
    if (!f->arch || strcmp(f->arch, a->name))
        st = qm_diag_fail(d, QM_EFORMAT, "%s: general.architecture is '%s'; the model %s (%s) is '%s' in GGUF", path,
                          f->arch ? f->arch : "(none)", m->dir, m->arch->name, a->name);
    qm_strmap names = {0};
    if (st == QM_OK && qm_strmap_init(&names, f->n) != QM_OK)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < f->n; i++)
        if (qm_strmap_put(&names, f->t[i].name, i, NULL) != QM_OK) /* names are unique (qm_gguf_open) */
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    size_t used = 0;
    for (size_t i = 0; st == QM_OK && i < m->n; i++) {
        qm_tensor *t = &m->t[i];
        char *name = qm_gguf_name(t);
        if (!name) {
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
            break;
        }
        size_t k;
        if (!qm_strmap_get(&names, name, &k)) {
            st = qm_diag_fail(d, QM_EFORMAT, "%s: no tensor '%s' (the model's '%s')", path, name, t->st->name);
            free(name);
            break;
        }
        const qm_gguf_tensor *g = &f->t[k];
        int nd = t->expert >= 0 ? 3 : t->ndim;
        uint64_t want[3] = {t->ndim == 2 ? t->shape[1] : t->shape[0], t->ndim == 2 ? t->shape[0] : 1,
                            (uint64_t)m->cfg.experts};
        int ok = g->ndim == nd && qm_ggml_types[g->type].deq;
        for (int a2 = 0; ok && a2 < nd; a2++)
            ok = g->ne[a2] == want[a2];
        if (!ok)
            st = qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' is %s with %d dims [%llu, %llu, %llu]; the model's '%s' "
                              "needs %d dims [%llu, %llu%s] (innermost first) of a type qmoe reads", path, name,
                              qm_ggml_types[g->type].name, g->ndim, (unsigned long long)g->ne[0],
                              (unsigned long long)(g->ndim > 1 ? g->ne[1] : 0),
                              (unsigned long long)(g->ndim > 2 ? g->ne[2] : 0), t->st->name, nd,
                              (unsigned long long)want[0], (unsigned long long)want[1], nd == 3 ? ", experts" : "");
        free(name);
        if (st == QM_OK) {
            used += t->expert <= 0;
            t->gguf = k + 1;
            t->gguf_heads = qm_gguf_heads(m, a, t);
        }
    }
    qm_strmap_free(&names);
    if (st == QM_OK && used < f->n)
        qm_diag_warn(d, "%s: %zu of its %zu tensors are not the model's and are not read", path, f->n - used, f->n);
    if (st != QM_OK) {
        for (size_t i = 0; i < m->n; i++)
            m->t[i].gguf = 0;
        qm_gguf_close(f);
        return st;
    }
    m->gguf = f;
    return QM_OK;
}

qm_status qm_gguf_load_f32(const qm_model *m, size_t i, float *f, qm_diag *d)
{
    const qm_tensor *t = &m->t[i];
    const qm_gguf_tensor *g = &m->gguf->t[t->gguf - 1];
    uint64_t in = g->ne[0], rows = g->ndim > 1 ? g->ne[1] : 1, row_bytes = qm_ggml_nbytes(g->type, in);
    const uint8_t *p = qm_gguf_tensor_data(m->gguf, t->gguf - 1) + (t->expert > 0 ? (uint64_t)t->expert : 0) * rows * row_bytes;
    for (uint64_t r = 0; r < rows; r++)
        qm_ggml_to_f32(g->type, p + r * row_bytes, f + qm_gguf_source_row(r, rows, t->gguf_heads) * in, (size_t)in);
    size_t bad = qm_first_nonfinite(f, (size_t)(in * rows));
    if (bad < (size_t)(in * rows))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' dequantizes to %g at [%zu, %zu]", m->gguf->path, g->name,
                            f[bad], bad / (size_t)in, bad % (size_t)in);
    return QM_OK;
}
