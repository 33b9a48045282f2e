/* quant_out.c: what `qmoe quantize` writes: per-layer shards of GPTQ-packed
 * and kept tensors, the shard index, config.json's quantization_config with
 * per-module dynamic overrides, quantize_config.json, the plan copy and the
 * log.  See quantize.h for the layout. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/json.h"
#include "runtime/pack.h"
#include "runtime/quant_internal.h"
#include "runtime/tokens.h"

/* ---- output ---------------------------------------------------------------------------------- */

static char *shard_name(const run *r, int shard)
{
    return qm_strfmt("model-%05d-of-%05d.safetensors", shard + 1, (int)r->m->cfg.layers + 1);
}

/* "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj" (owned) */
static char *module_prefix(const char *name)
{
    char *p = qm_strdup(name);
    size_t n = p ? strlen(p) : 0;
    if (p && n > 7 && strcmp(p + n - 7, ".weight") == 0)
        p[n - 7] = '\0';
    return p;
}

static const done_t *done_for(const run *r, size_t tensor)
{
    for (size_t i = 0; i < r->n_done; i++)
        if (r->done[i].tensor == tensor)
            return &r->done[i];
    return NULL;
}

/* Float32 values in `dtype` (BF16, F16 or F32), for --fake-quant; caller frees. */
static void *to_dtype(const float *x, size_t n, qm_dtype t)
{
    void *out = malloc(n * qm_dtype_size(t));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (t == QM_DT_BF16)
            ((uint16_t *)out)[i] = qm_f32_to_bf16(x[i]);
        else if (t == QM_DT_F16)
            ((uint16_t *)out)[i] = qm_f32_to_f16(x[i]);
        else
            ((float *)out)[i] = x[i];
    }
    return out;
}

/* One packed tensor of d0 x d1 (d1 = 0: 1-D); shape is its storage. */
static void packed_entry(qm_st_entry *e, uint64_t shape[2], const char *name, qm_dtype dt, uint64_t d0,
                         uint64_t d1, const void *data)
{
    shape[0] = d0;
    shape[1] = d1;
    *e = (qm_st_entry){name, dt, d1 ? 2 : 1, shape, data};
}

/* The shard of layer `layer` (-1: model-level tensors) in `dir`: quantized
 * linears as qweight/qzeros/scales/g_idx (or dequantized, fake_quant), every
 * other tensor copied as stored. */
qm_status quant_write_shard(run *r, int layer, const char *dir, int fake)
{
    const qm_model *m = r->m;
    size_t cap = 4 * m->n + 1, n = 0;
    qm_st_entry *e = calloc(cap, sizeof *e);
    uint64_t (*shapes)[2] = calloc(cap, sizeof *shapes);
    void **owned = calloc(cap, sizeof *owned);
    char **names = calloc(cap, sizeof *names);
    size_t n_owned = 0, n_names = 0;
    qm_status st = QM_OK;
    if (!e || !shapes || !owned || !names)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        if (t->layer != layer)
            continue;
        const done_t *dn = done_for(r, i);
        if (!dn) {
            e[n++] = (qm_st_entry){t->st->name, t->st->dtype, t->st->ndim, t->st->shape, t->st->data};
            continue;
        }
        int out = dn->r.out, in = dn->r.in, b = dn->pt->bits, G = dn->r.groups;
        if (fake) {
            void *v = to_dtype(dn->r.deq, (size_t)out * in, t->st->dtype);
            if (!v) {
                st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
                break;
            }
            owned[n_owned++] = v;
            e[n++] = (qm_st_entry){t->st->name, t->st->dtype, 2, t->st->shape, v};
            continue;
        }
        int32_t *qw = malloc((size_t)in * b / 32 * out * 4), *qz = malloc((size_t)G * out * b / 32 * 4);
        uint16_t *sc = malloc((size_t)G * out * 2);
        char *pre = module_prefix(t->st->name);
        char *nq = pre ? qm_strfmt("%s.qweight", pre) : NULL, *nz = pre ? qm_strfmt("%s.qzeros", pre) : NULL;
        char *ns = pre ? qm_strfmt("%s.scales", pre) : NULL, *ng = pre ? qm_strfmt("%s.g_idx", pre) : NULL;
        free(pre);
        owned[n_owned++] = qw;
        owned[n_owned++] = qz;
        owned[n_owned++] = sc;
        names[n_names++] = nq;
        names[n_names++] = nz;
        names[n_names++] = ns;
        names[n_names++] = ng;
        if (!qw || !qz || !sc || !nq || !nz || !ns || !ng) {
            st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
            break;
        }
        qm_pack_qweight(dn->r.codes, out, in, b, qw);
        qm_pack_qzeros(dn->r.zero, G, out, b, 1, qz);
        for (size_t k = 0; k < (size_t)G * out; k++)
            sc[k] = qm_f32_to_f16(dn->r.scale[k]);
        packed_entry(&e[n], shapes[n], nq, QM_DT_I32, (uint64_t)in * b / 32, (uint64_t)out, qw);
        n++;
        packed_entry(&e[n], shapes[n], nz, QM_DT_I32, (uint64_t)G, (uint64_t)out * b / 32, qz);
        n++;
        packed_entry(&e[n], shapes[n], ns, QM_DT_F16, (uint64_t)G, (uint64_t)out, sc);
        n++;
        packed_entry(&e[n], shapes[n], ng, QM_DT_I32, (uint64_t)in, 0, dn->r.g_idx);
        n++;
    }
    char *name = st == QM_OK ? shard_name(r, layer < 0 ? (int)m->cfg.layers : layer) : NULL;
    char *path = name ? qm_strfmt("%s/%s", dir, name) : NULL;
    if (st == QM_OK && !path)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        const char *meta[] = {"format", "pt", NULL};
        st = qm_st_write(path, e, n, meta, r->d);
    }
    free(name);
    free(path);
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(owned);
    free(names);
    free(shapes);
    free(e);
    return st;
}

/* ---- finishing ---------------------------------------------------------------------------------- */

/* "model.layers.0.mlp.gate" -> "^model\\.layers\\.0\\.mlp\\.gate$" */
static char *module_regex(const char *prefix)
{
    size_t n = strlen(prefix);
    char *s = malloc(2 * n + 3), *o = s;
    if (!s)
        return NULL;
    *o++ = '^';
    for (const char *p = prefix; *p; p++) {
        if (*p == '.')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '$';
    *o = '\0';
    return s;
}

/* The module vLLM builds for the linear `prefix` when it is not one of its
 * own (owned string), or NULL: vLLM fuses q/k/v into qkv_proj, gate and up
 * into gate_up_proj, and all experts of a layer into one FusedMoE module
 * named "<...>.experts", and matches "dynamic" keys against those names
 * (see the loader notes in pack.c). */
static char *vllm_module(const char *prefix)
{
    const char *e = strstr(prefix, ".experts.");
    if (e)
        return qm_strfmt("%.*s", (int)(e - prefix) + 8, prefix);
    static const char *const fused[][2] = {
        {"q_proj", "qkv_proj"}, {"k_proj", "qkv_proj"}, {"v_proj", "qkv_proj"},
        {"gate_proj", "gate_up_proj"}, {"up_proj", "gate_up_proj"},
    };
    const char *last = strrchr(prefix, '.');
    last = last ? last + 1 : prefix;
    for (size_t i = 0; i < sizeof fused / sizeof fused[0]; i++)
        if (strcmp(last, fused[i][0]) == 0)
            return qm_strfmt("%.*s%s", (int)(last - prefix), prefix, fused[i][1]);
    return NULL;
}

typedef struct setting {
    int bits, group, sym, act_order; /* bits 0: left unquantized */
    size_t count;
} setting;

static int same_setting(const setting *a, const setting *b)
{
    return a->bits == b->bits && (!a->bits || (a->group == b->group && a->sym == b->sym &&
                                                a->act_order == b->act_order));
}

static json_t *setting_json(const setting *s, double damp, int with_meta)
{
    json_t *j = json_pack("{s:i, s:i, s:b, s:b}", "bits", s->bits, "group_size", s->group ? s->group : -1,
                          "desc_act", s->act_order, "sym", s->sym);
    if (j && with_meta) {
        json_object_set_new(j, "damp_percent", json_real(damp));
        json_object_set_new(j, "true_sequential", json_true());
        json_object_set_new(j, "quant_method", json_string("gptq"));
        json_object_set_new(j, "checkpoint_format", json_string("gptq"));
        json_object_set_new(j, "pack_dtype", json_string("int32"));
    }
    return j;
}

/* Add the rule for module `name` with setting s to dyn: "-:" when it is
 * left unquantized, "+:" with its settings otherwise. */
static void add_rule(json_t *dyn, const char *name, const setting *s)
{
    char *re = module_regex(name), *key = re ? qm_strfmt("%s:%s", s->bits ? "+" : "-", re) : NULL;
    if (key)
        json_object_set_new(dyn, key, s->bits ? setting_json(s, 0, 0) : json_object());
    free(re);
    free(key);
}

/* quantization_config: the most common setting, per-module "dynamic"
 * overrides ("+:" for other settings, "-:" for linears left unquantized)
 * under the checkpoint's names and, where all parts agree, under vLLM's
 * fused names; "lm_head" when the head is quantized;
 * "modules_in_block_to_quantize" (one list per layer), the only way
 * transformers/optimum skip a linear such as the router. */
static json_t *quant_config(const run *r)
{
    setting seen[64];
    size_t n = 0;
    for (size_t i = 0; i < r->plan->n; i++) {
        const qm_plan_tensor *t = &r->plan->t[i];
        if (!t->bits)
            continue;
        setting s = {t->bits, t->group, t->sym, t->act_order, 0};
        size_t k = 0;
        while (k < n && !same_setting(&seen[k], &s))
            k++;
        if (k == n && n < 64)
            seen[n++] = s;
        if (k < n)
            seen[k].count++;
    }
    setting base = {4, 128, 1, 0, 0};
    for (size_t k = 0; k < n; k++)
        if (seen[k].count > base.count)
            base = seen[k];
    json_t *q = setting_json(&base, r->o->damp, 1), *dyn = json_object(), *blocks = json_array();
    json_t *fused = json_object(); /* vLLM name -> [bits, group, sym, act_order], null when parts differ */
    int lm_head = 0;
    for (size_t i = 0; q && dyn && blocks && fused && i < r->m->n; i++) {
        const qm_tensor *t = &r->m->t[i];
        const qm_plan_tensor *pt = r->by_tensor[i];
        if (!qm_parts[t->part].linear || !pt)
            continue;
        setting s = {pt->bits, pt->group, pt->sym, pt->act_order, 0};
        char *pre = module_prefix(t->st->name), *vm = pre ? vllm_module(pre) : NULL;
        if (pre && !same_setting(&s, &base))
            add_rule(dyn, pre, &s);
        if (vm) {
            json_t *v = json_pack("[i, i, b, b]", s.bits, s.bits ? s.group : 0, s.bits && s.sym,
                                  s.bits && s.act_order);
            json_t *had = json_object_get(fused, vm);
            if (!had)
                json_object_set(fused, vm, v);
            else if (!json_is_null(had) && !json_equal(had, v))
                json_object_set_new(fused, vm, json_null());
            json_decref(v);
        }
        if (pre && s.bits && t->layer >= 0) {
            while (json_array_size(blocks) <= (size_t)t->layer)
                json_array_append_new(blocks, json_array());
            json_array_append_new(json_array_get(blocks, (size_t)t->layer), json_string(pre));
        }
        lm_head |= t->part == QM_PART_LM_HEAD && s.bits;
        free(pre);
        free(vm);
    }
    const char *vm;
    json_t *v;
    json_object_foreach(fused, vm, v) {
        if (json_is_null(v))
            continue; /* parts at different settings: vLLM cannot load this module */
        setting s = {(int)json_integer_value(json_array_get(v, 0)), (int)json_integer_value(json_array_get(v, 1)),
                     json_is_true(json_array_get(v, 2)), json_is_true(json_array_get(v, 3)), 0};
        if (!same_setting(&s, &base))
            add_rule(dyn, vm, &s);
    }
    json_decref(fused);
    if (q && dyn && blocks) {
        json_object_set_new(q, "lm_head", json_boolean(lm_head));
        json_object_set_new(q, "dynamic", dyn);
        json_object_set_new(q, "modules_in_block_to_quantize", blocks);
        json_object_set_new(q, "meta", json_pack("{s:[s]}", "quantizer", "qmoe:" PACKAGE_VERSION));
    } else {
        json_decref(dyn);
        json_decref(blocks);
    }
    return q;
}

static qm_status write_json(const run *r, const char *file, json_t *j)
{
    char *p = qm_strfmt("%s/%s", r->out, file);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    qm_status st = QM_OK;
    if (!p || !text) {
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    } else {
        qm_afile a;
        if ((st = qm_afile_open(&a, p, r->d)) == QM_OK) {
            fputs(text, a.f);
            fputc('\n', a.f);
            st = qm_afile_commit(&a, r->d);
        }
    }
    free(p);
    free(text);
    return st;
}

/* Index, config.json, quantize_config.json, the plan, quant_log.yaml. */
qm_status quant_finish(run *r, const char *plan_path, const char *dir, int fake)
{
    const qm_model *m = r->m;
    json_t *map = json_object();
    for (size_t i = 0; map && i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        int shard = t->layer < 0 ? (int)m->cfg.layers : t->layer;
        char *name = shard_name(r, shard), *pre = module_prefix(t->st->name);
        int quantized = !fake && r->by_tensor[i] && r->by_tensor[i]->bits;
        static const char *const suffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
        for (int s = 0; name && pre && s < (quantized ? 4 : 1); s++) {
            char *k = quantized ? qm_strfmt("%s%s", pre, suffixes[s]) : qm_strdup(t->st->name);
            if (k)
                json_object_set_new(map, k, json_string(name));
            free(k);
        }
        free(name);
        free(pre);
    }
    json_t *index = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
    run sub = *r;
    sub.out = dir;
    qm_status st = index ? write_json(&sub, "model.safetensors.index.json", index)
                         : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    json_decref(index);
    json_t *cfg = NULL;
    if (st == QM_OK)
        st = qm_json_load(m->config_path, &cfg, r->d);
    if (st == QM_OK && !fake) {
        json_t *q = quant_config(r);
        json_object_set(cfg, "quantization_config", q);
        st = write_json(&sub, "quantize_config.json", q);
        json_decref(q);
    }
    if (st == QM_OK)
        st = write_json(&sub, "config.json", cfg);
    json_decref(cfg);
    if (st != QM_OK || fake)
        return st;
    /* the plan, byte for byte */
    char *data;
    size_t len;
    if ((st = qm_read_file(plan_path, &data, &len, r->d)) != QM_OK)
        return st;
    char *pp = qm_strfmt("%s/plan.yaml", r->out);
    qm_afile a;
    if (pp && (st = qm_afile_open(&a, pp, r->d)) == QM_OK) {
        fwrite(data, 1, len, a.f);
        st = qm_afile_commit(&a, r->d);
    }
    free(data);
    free(pp);
    if (st != QM_OK)
        return st;
    /* quant_log.yaml: the layers' logs in order */
    char *lp = qm_strfmt("%s/quant_log.yaml", r->out);
    if (!lp || (st = qm_afile_open(&a, lp, r->d)) != QM_OK) {
        free(lp);
        return st != QM_OK ? st : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    }
    free(lp);
    fprintf(a.f, "# qmoe quantize: one entry per quantized tensor, in the order quantized.\n"
                 "# tokens: calibration rows the tensor's inputs came from (experts: rows the router sent);\n"
                 "# fallback: none, rtn (round-to-nearest) or pooled (every row through the expert).\n"
                 "tensors:\n");
    for (int l = 0; st == QM_OK && l < m->cfg.layers; l++) {
        char file[64];
        snprintf(file, sizeof file, "layer-%05d.log", l);
        char *p = quant_state_path(r, file);
        if (p && (st = qm_read_file(p, &data, &len, r->d)) == QM_OK) {
            fwrite(data, 1, len, a.f);
            free(data);
        }
        free(p);
    }
    if (st != QM_OK) {
        qm_afile_abort(&a);
        return st;
    }
    return qm_afile_commit(&a, r->d);
}

