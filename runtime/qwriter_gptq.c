/* qwriter_gptq.c: the "gptq" output format (see qwriter.h), the checkpoint
 * engines load: each quantized linear as qweight/qzeros/scales/g_idx
 * (packed by pack.c), every other tensor as stored, in the shards of
 * qwriter_shards.c; config.json's quantization_config with per-module
 * "dynamic" overrides under the checkpoint's and vLLM's module names, and
 * the same object as quantize_config.json.  Written into the output
 * directory itself. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/pack.h"
#include "runtime/qwriter_shards.h"

static qm_status begin(qwriter *w) { return shards_begin(w, NULL); }

/* Each linear's four tensors, named "<module>.qweight" and so on, packed
 * as soon as the linear is finished and kept in the spool until its
 * layer's shard is written. */
static qm_status linear(qwriter *w, int L, const qwriter_linear *q)
{
    const qwriter_job *j = w->job;
    char *names[QM_PACK_TENSORS] = {0}, *pre = shards_module(j->m->t[q->tensor].st->name);
    int made = 0;
    (void)L;
    for (int i = 0; pre && i < QM_PACK_TENSORS; i++)
        made += (names[i] = qm_strfmt("%s.%s", pre, qm_pack_names[i])) != NULL;
    free(pre);
    qm_packed_linear p;
    qm_status st = made < QM_PACK_TENSORS ? qm_diag_fail(j->d, QM_ENOMEM, "out of memory")
                                          : qm_pack_linear(&q->r, q->pt->bits, (const char *const *)names, &p, j->d);
    if (st == QM_OK) {
        st = shards_spool(w, q, p.e, QM_PACK_TENSORS);
        qm_packed_linear_free(&p);
    }
    for (int i = 0; i < QM_PACK_TENSORS; i++)
        free(names[i]);
    return st;
}

static qm_status layer(qwriter *w, int L, const qwriter_linear *q, size_t n)
{
    (void)q;
    (void)n;
    return shards_write_spooled(w, L);
}

/* ---- quantization_config ---------------------------------------------------------------------- */

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

static json_t *setting_json(const qm_scheme *s, double damp, int with_meta)
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
static void add_rule(json_t *dyn, const char *name, const qm_scheme *s)
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
static json_t *quant_config(const qwriter_job *j)
{
    qm_scheme base = qm_plan_base_scheme(j->plan);
    json_t *q = setting_json(&base, j->damp, 1), *dyn = json_object(), *blocks = json_array();
    json_t *fused = json_object(); /* vLLM name -> [bits, group, sym, act_order], null when parts differ */
    int lm_head = 0;
    for (size_t i = 0; q && dyn && blocks && fused && i < j->m->n; i++) {
        const qm_tensor *t = &j->m->t[i];
        const qm_plan_tensor *pt = j->by_tensor[i];
        if (!qm_parts[t->part].linear || !pt)
            continue;
        qm_scheme s = qm_plan_scheme(pt);
        char *pre = shards_module(t->st->name), *vm = pre ? vllm_module(pre) : NULL;
        if (pre && !qm_scheme_same(s, base))
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
        qm_scheme s = {(int)json_integer_value(json_array_get(v, 0)), (int)json_integer_value(json_array_get(v, 1)),
                     json_is_true(json_array_get(v, 2)), json_is_true(json_array_get(v, 3))};
        if (!qm_scheme_same(s, base))
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

/* config.json's quantization_config, and quantize_config.json beside it. */
static qm_status config(const qwriter *w, const char *dir, json_t *cfg)
{
    json_t *q = quant_config(w->job);
    json_object_set(cfg, "quantization_config", q);
    qm_status st = shards_json(dir, "quantize_config.json", q, w->job->d);
    json_decref(q);
    return st;
}

static qm_status end(qwriter *w) { return shards_end(w, qm_pack_names, QM_PACK_TENSORS, config); }

const qwriter_ops qwriter_gptq = {"gptq", begin, linear, layer, end, shards_abort, NULL};
