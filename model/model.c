/* model.c: the model inventory: every checkpoint tensor placed in the
 * canonical module tree, shapes checked against the config.
 *
 * The expected tensor set is generated from the config (layers, experts,
 * which layers are MoE) and the adapter's name patterns, then looked up in
 * the checkpoint's name index; both directions are checked, so a missing
 * tensor and a stray one are each reported by name.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/model.h"

#define P(canon, group, where, linear, d0, d1) {canon, group, where, linear, {d0, d1}}
const qm_part_info qm_parts[QM_PART_COUNT] = {
    [QM_PART_EMBED] = P("embed", QM_GROUP_EMBEDDINGS, QM_IN_MODEL, 0, QM_DIM_VOCAB, QM_DIM_HIDDEN),
    [QM_PART_LM_HEAD] = P("lm_head", QM_GROUP_EMBEDDINGS, QM_IN_MODEL, 1, QM_DIM_VOCAB, QM_DIM_HIDDEN),
    [QM_PART_FINAL_NORM] = P("norm", QM_GROUP_NORMS, QM_IN_MODEL, 0, QM_DIM_HIDDEN, QM_DIM_NONE),
    [QM_PART_ATTN_NORM] = P("attn_norm", QM_GROUP_NORMS, QM_IN_LAYER, 0, QM_DIM_HIDDEN, QM_DIM_NONE),
    [QM_PART_FFN_NORM] = P("ffn_norm", QM_GROUP_NORMS, QM_IN_LAYER, 0, QM_DIM_HIDDEN, QM_DIM_NONE),
    [QM_PART_Q] = P("attn.q", QM_GROUP_ATTENTION, QM_IN_LAYER, 1, QM_DIM_QDIM, QM_DIM_HIDDEN),
    [QM_PART_K] = P("attn.k", QM_GROUP_ATTENTION, QM_IN_LAYER, 1, QM_DIM_KVDIM, QM_DIM_HIDDEN),
    [QM_PART_V] = P("attn.v", QM_GROUP_ATTENTION, QM_IN_LAYER, 1, QM_DIM_KVDIM, QM_DIM_HIDDEN),
    [QM_PART_O] = P("attn.o", QM_GROUP_ATTENTION, QM_IN_LAYER, 1, QM_DIM_HIDDEN, QM_DIM_QDIM),
    [QM_PART_Q_BIAS] = P("attn.q.bias", QM_GROUP_ATTENTION, QM_IN_LAYER, 0, QM_DIM_QDIM, QM_DIM_NONE),
    [QM_PART_K_BIAS] = P("attn.k.bias", QM_GROUP_ATTENTION, QM_IN_LAYER, 0, QM_DIM_KVDIM, QM_DIM_NONE),
    [QM_PART_V_BIAS] = P("attn.v.bias", QM_GROUP_ATTENTION, QM_IN_LAYER, 0, QM_DIM_KVDIM, QM_DIM_NONE),
    [QM_PART_Q_NORM] = P("attn.q_norm", QM_GROUP_NORMS, QM_IN_LAYER, 0, QM_DIM_HEAD, QM_DIM_NONE),
    [QM_PART_K_NORM] = P("attn.k_norm", QM_GROUP_NORMS, QM_IN_LAYER, 0, QM_DIM_HEAD, QM_DIM_NONE),
    [QM_PART_ROUTER] = P("router", QM_GROUP_ROUTER, QM_IN_MOE, 1, QM_DIM_EXPERTS, QM_DIM_HIDDEN),
    [QM_PART_EXPERT_GATE] = P("gate", QM_GROUP_ROUTED, QM_IN_EXPERT, 1, QM_DIM_EXPERT_FF, QM_DIM_HIDDEN),
    [QM_PART_EXPERT_UP] = P("up", QM_GROUP_ROUTED, QM_IN_EXPERT, 1, QM_DIM_EXPERT_FF, QM_DIM_HIDDEN),
    [QM_PART_EXPERT_DOWN] = P("down", QM_GROUP_ROUTED, QM_IN_EXPERT, 1, QM_DIM_HIDDEN, QM_DIM_EXPERT_FF),
    [QM_PART_SHARED_GATE] = P("shared.gate", QM_GROUP_SHARED, QM_IN_SHARED, 1, QM_DIM_SHARED_FF, QM_DIM_HIDDEN),
    [QM_PART_SHARED_UP] = P("shared.up", QM_GROUP_SHARED, QM_IN_SHARED, 1, QM_DIM_SHARED_FF, QM_DIM_HIDDEN),
    [QM_PART_SHARED_DOWN] = P("shared.down", QM_GROUP_SHARED, QM_IN_SHARED, 1, QM_DIM_HIDDEN, QM_DIM_SHARED_FF),
    [QM_PART_SHARED_ROUTER] = P("shared_gate", QM_GROUP_SHARED, QM_IN_SHARED, 0, QM_DIM_ONE, QM_DIM_HIDDEN),
    [QM_PART_MLP_GATE] = P("mlp.gate", QM_GROUP_DENSE_MLP, QM_IN_DENSE, 1, QM_DIM_FF, QM_DIM_HIDDEN),
    [QM_PART_MLP_UP] = P("mlp.up", QM_GROUP_DENSE_MLP, QM_IN_DENSE, 1, QM_DIM_FF, QM_DIM_HIDDEN),
    [QM_PART_MLP_DOWN] = P("mlp.down", QM_GROUP_DENSE_MLP, QM_IN_DENSE, 1, QM_DIM_HIDDEN, QM_DIM_FF),
};
#undef P

/* Names every supported family shares (the Llama layout). */
static const qm_arch_name common_names[] = {
    {QM_PART_EMBED, "model.embed_tokens.weight"},
    {QM_PART_LM_HEAD, "lm_head.weight"},
    {QM_PART_FINAL_NORM, "model.norm.weight"},
    {QM_PART_ATTN_NORM, "model.layers.{L}.input_layernorm.weight"},
    {QM_PART_FFN_NORM, "model.layers.{L}.post_attention_layernorm.weight"},
    {QM_PART_Q, "model.layers.{L}.self_attn.q_proj.weight"},
    {QM_PART_K, "model.layers.{L}.self_attn.k_proj.weight"},
    {QM_PART_V, "model.layers.{L}.self_attn.v_proj.weight"},
    {QM_PART_O, "model.layers.{L}.self_attn.o_proj.weight"},
    {QM_PART_Q_BIAS, "model.layers.{L}.self_attn.q_proj.bias"},
    {QM_PART_K_BIAS, "model.layers.{L}.self_attn.k_proj.bias"},
    {QM_PART_V_BIAS, "model.layers.{L}.self_attn.v_proj.bias"},
    {QM_PART_Q_NORM, "model.layers.{L}.self_attn.q_norm.weight"},
    {QM_PART_K_NORM, "model.layers.{L}.self_attn.k_norm.weight"},
    {QM_PART_MLP_GATE, "model.layers.{L}.mlp.gate_proj.weight"},
    {QM_PART_MLP_UP, "model.layers.{L}.mlp.up_proj.weight"},
    {QM_PART_MLP_DOWN, "model.layers.{L}.mlp.down_proj.weight"},
    {QM_PART_COUNT, NULL},
};

/* Does this model have `part` at all (independent of layer)? */
static int has_part(const qm_arch *a, const qm_config *c, qm_part part)
{
    switch (part) {
    case QM_PART_LM_HEAD: return !c->tie_embeddings;
    case QM_PART_Q_BIAS:
    case QM_PART_K_BIAS:
    case QM_PART_V_BIAS: return (a->flags & QM_ARCH_QKV_BIAS) || c->attn_bias;
    case QM_PART_Q_NORM:
    case QM_PART_K_NORM: return (a->flags & (QM_ARCH_QK_NORM_HEAD | QM_ARCH_QK_NORM_WHOLE)) != 0;
    case QM_PART_SHARED_ROUTER: return c->shared > 0 && (a->flags & QM_ARCH_SHARED_SIGMOID);
    default: return 1;
    }
}

/* Expected shape; q/k norms over the whole projection are wider than per head. */
static void expected_shape(const qm_arch *a, const qm_config *c, qm_part part, uint64_t shape[2],
                           int *ndim)
{
    const qm_part_info *pi = &qm_parts[part];
    qm_dim d0 = pi->shape[0];
    if (a->flags & QM_ARCH_QK_NORM_WHOLE) {
        if (part == QM_PART_Q_NORM)
            d0 = QM_DIM_QDIM;
        else if (part == QM_PART_K_NORM)
            d0 = QM_DIM_KVDIM;
    }
    shape[0] = (uint64_t)qm_dim_size(c, d0);
    shape[1] = (uint64_t)qm_dim_size(c, pi->shape[1]);
    *ndim = pi->shape[1] == QM_DIM_NONE ? 1 : 2;
}

static int layer_is_moe(const qm_config *c, long long l)
{
    if (l < c->first_dense || l % c->moe_freq != 0 || (l + 1) % c->sparse_step != 0)
        return 0;
    for (long long i = 0; i < c->n_mlp_only; i++)
        if (c->mlp_only[i] == l)
            return 0;
    return 1;
}

/* Decimal n >= 0 at o (at most 20 digits); returns the end. */
static char *put_int(char *o, int n)
{
    char d[24];
    int k = 0;
    do
        d[k++] = (char)('0' + n % 10);
    while ((n /= 10) > 0);
    while (k)
        *o++ = d[--k];
    return o;
}

/* Expand "{L}" and "{E}" in a pattern into buf.  Tens of thousands of names
 * are made per open, so no printf. */
static void expand(char *buf, size_t cap, const char *pat, int layer, int expert)
{
    char *o = buf, *end = buf + cap - 24; /* room for a number and the NUL */
    for (const char *p = pat; *p && o < end;) {
        if (p[0] == '{' && (p[1] == 'L' || p[1] == 'E') && p[2] == '}') {
            o = put_int(o, p[1] == 'L' ? layer : expert);
            p += 3;
            continue;
        }
        /* the literal run up to the next '{', at once */
        const char *q = strchr(p + 1, '{');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n > (size_t)(end - o))
            n = (size_t)(end - o);
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o = '\0';
}

/* "layers[L].experts[E].canon", "layers[L].canon" or "canon", in a. */
static char *canonical(qm_arena *a, qm_part part, int layer, int expert)
{
    const qm_part_info *pi = &qm_parts[part];
    char b[128], *o = b;
    if (pi->where != QM_IN_MODEL) {
        memcpy(o, "layers[", 7);
        o = put_int(o + 7, layer);
        *o++ = ']';
        *o++ = '.';
    }
    if (pi->where == QM_IN_EXPERT) {
        memcpy(o, "experts[", 8);
        o = put_int(o + 8, expert);
        *o++ = ']';
        *o++ = '.';
    }
    size_t n = strlen(pi->canon);
    memcpy(o, pi->canon, n);
    return qm_arena_strndup(a, b, (size_t)(o - b) + n);
}

static const char *pattern_for(const qm_arch *a, qm_part part)
{
    for (const qm_arch_name *n = a->names; n->pattern; n++)
        if (n->part == part)
            return n->pattern;
    for (const qm_arch_name *n = common_names; n->pattern; n++)
        if (n->part == part)
            return n->pattern;
    return NULL;
}

enum { REPORT_MAX = 8 }; /* name this many missing/stray tensors, then count */
enum { NAME_BYTES = 512 };  /* bytes for an expected tensor's name */

typedef struct build {
    qm_model *m;
    /* (ckpt->n) 0: not matched by an expected tensor; 1: matched (one of a
     * packed linear's scales, zeros, g_idx); PLACED: m->t[k] is the tensor
     * whose header entry is checkpoint tensor k */
    unsigned char *seen;
    const char *pattern[QM_PART_COUNT]; /* the adapter's name of each part, or NULL */
} build;

enum { PLACED = 2 };

/* The expected tensors are found by workers, a task per part and layer
 * (tens of thousands of lookups at 235B scale, most of them routed
 * experts).  Each task writes disjoint slots of m->t and seen, names into
 * its worker's arena, and messages into a sink of its own, which
 * inventory() merges in task order: part by part, layer by layer, as if
 * they had been found one after another. */
enum { MISSING, MISMATCHED, OTHER };
typedef struct part_job {
    build *b;
    qm_arena *names;          /* (workers) */
    qm_part part;
    int layer;                /* -1 for the model-level parts */
    qm_diag *d;               /* made at the first message */
    unsigned char kind[2 * REPORT_MAX + 1]; /* of d's messages: MISSING, MISMATCHED, OTHER */
    size_t n_kind;
    size_t missing, mismatched, packed;
    qm_status st;
} part_job;

/* Report through job j: at most REPORT_MAX of each kind (the merge keeps
 * the first REPORT_MAX of all parts). */
static void job_fail(part_job *j, int kind, const char *fmt, ...) QM_PRINTF(3, 4);
static void job_fail(part_job *j, int kind, const char *fmt, ...)
{
    size_t *count = kind == MISSING ? &j->missing : kind == MISMATCHED ? &j->mismatched : NULL;
    if ((count && (*count)++ >= REPORT_MAX) || j->n_kind >= sizeof j->kind)
        return;
    if (!j->d && !(j->d = qm_diag_new()))
        return;
    va_list ap;
    va_start(ap, fmt);
    qm_diag_add(j->d, QM_SEV_ERROR, fmt, ap);
    va_end(ap);
    j->kind[j->n_kind++] = (unsigned char)kind;
}

static void shape_str(char *b, size_t cap, const uint64_t *s, int ndim)
{
    size_t o = (size_t)snprintf(b, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(b + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)s[i]);
    if (o < cap)
        snprintf(b + o, cap - o, "]");
}

/* Keep t, found at checkpoint index t.file: m->t has a slot per checkpoint
 * tensor, so each lands where checkpoint order puts it (inventory()
 * closes the gaps). */
static qm_status push(part_job *j, int worker, qm_tensor t)
{
    if (!(t.canon = canonical(&j->names[worker], t.part, t.layer, t.expert))) {
        job_fail(j, OTHER, "out of memory");
        return QM_ENOMEM;
    }
    j->b->m->t[t.file] = t;
    j->b->seen[t.file] = PLACED;
    return QM_OK;
}

/* A linear stored GPTQ-packed under `prefix`: qweight (in*bits/32, out),
 * qzeros (groups, out*bits/32), scales (groups, out), g_idx (in).  Returns 1
 * and fills t when all four are there with consistent shapes. */
static int packed(build *b, const char *prefix, const uint64_t shape[2], qm_tensor *t)
{
    static const char *const suffix[4] = {".qweight", ".qzeros", ".scales", ".g_idx"};
    long k[4];
    char name[600];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, suffix[i]);
        if ((k[i] = qm_ckpt_find(b->m->ckpt, name)) < 0)
            return 0;
    }
    const qm_st_tensor *qw = b->m->ckpt->t[k[0]].t, *qz = b->m->ckpt->t[k[1]].t, *sc = b->m->ckpt->t[k[2]].t,
                       *gi = b->m->ckpt->t[k[3]].t;
    uint64_t out = shape[0], in = shape[1];
    if (qw->ndim != 2 || qw->dtype != QM_DT_I32 || qw->shape[1] != out || in == 0 || (qw->shape[0] * 32) % in)
        return 0;
    int bits = (int)(qw->shape[0] * 32 / in);
    uint64_t groups = sc->ndim == 2 ? sc->shape[0] : 0;
    if (!qm_is_width(bits) || groups == 0 || in % groups || sc->shape[1] != out ||
        (sc->dtype != QM_DT_F16 && sc->dtype != QM_DT_F32) || qz->ndim != 2 || qz->dtype != QM_DT_I32 ||
        qz->shape[0] != groups || qz->shape[1] * 32 != out * (uint64_t)bits || gi->ndim != 1 ||
        gi->dtype != QM_DT_I32 || gi->shape[0] != in)
        return 0;
    for (int i = 1; i < 4; i++)
        b->seen[k[i]] = 1;
    t->st = qw;
    t->file = (size_t)k[0];
    t->bits = bits;
    t->groups = (int)groups;
    t->qzeros = qz;
    t->scales = sc;
    t->g_idx = gi;
    return 1;
}

/* The expected tensor (part, layer, expert), named `name` (a buffer of
 * NAME_BYTES bytes, changed on the way) and found at checkpoint index k (-1
 * when it is not there). */
static qm_status expect(part_job *j, int worker, qm_part part, int layer, int expert, char *name, long k)
{
    build *b = j->b;
    qm_model *m = b->m;
    qm_tensor t = {.part = part, .layer = layer, .expert = expert};
    expected_shape(m->arch, &m->cfg, part, t.shape, &t.ndim);
    t.numel = t.shape[0] * (t.ndim == 2 ? t.shape[1] : 1);
    if (k < 0) {
        size_t n = strlen(name);
        if (qm_parts[part].linear && t.ndim == 2 && n > 7 && strcmp(name + n - 7, ".weight") == 0) {
            name[n - 7] = '\0';
            if (packed(b, name, t.shape, &t)) {
                j->packed++;
                return push(j, worker, t);
            }
            name[n - 7] = '.';
        }
        job_fail(j, MISSING, "%s: missing tensor '%s'", m->dir, name);
        return QM_OK;
    }
    const qm_st_tensor *st = m->ckpt->t[k].t;
    if (st->ndim != t.ndim || st->shape[0] != t.shape[0] || (t.ndim == 2 && st->shape[1] != t.shape[1])) {
        char got[128], want[64];
        shape_str(got, sizeof got, st->shape, st->ndim);
        shape_str(want, sizeof want, t.shape, t.ndim);
        b->seen[k] = 1;
        job_fail(j, MISMATCHED, "%s: tensor '%s' has shape %s, but %s implies %s",
                 m->ckpt->files[m->ckpt->t[k].file]->path, name, got, m->config_path, want);
        return QM_OK;
    }
    t.st = st;
    t.file = (size_t)k;
    return push(j, worker, t);
}

/* Does layer l have part p? */
static int in_layer(const qm_model *m, qm_where w, int l)
{
    int moe = m->is_moe[l];
    return !((w == QM_IN_MOE && !moe) || (w == QM_IN_DENSE && moe) ||
             (w == QM_IN_SHARED && (!moe || m->cfg.shared == 0)) || (w == QM_IN_EXPERT && !moe));
}

/* The expected tensors of one part in one layer (a qm_task_fn), AHEAD at
 * a time: named and hashed, their slots prefetched, then found. */
static void expect_task(void *ctx, int task, int worker)
{
    enum { AHEAD = 8 };
    part_job *j = &((part_job *)ctx)[task];
    const qm_ckpt *c = j->b->m->ckpt;
    int experts = qm_parts[j->part].where == QM_IN_EXPERT, n = experts ? (int)j->b->m->cfg.experts : 1;
    char name[AHEAD][NAME_BYTES];
    uint64_t h[AHEAD];
    qm_status st = QM_OK;
    for (int e0 = 0; e0 < n && st == QM_OK; e0 += AHEAD) {
        int m = n - e0 < AHEAD ? n - e0 : AHEAD;
        for (int i = 0; i < m; i++) {
            expand(name[i], NAME_BYTES, j->b->pattern[j->part], j->layer, experts ? e0 + i : -1);
            qm_ckpt_prefetch(c, h[i] = qm_strmap_hash(name[i]));
        }
        for (int i = 0; i < m && st == QM_OK; i++)
            st = expect(j, worker, j->part, j->layer, experts ? e0 + i : -1, name[i],
                        qm_ckpt_find_hashed(c, name[i], h[i]));
    }
    j->st = st;
}

/* How many more tensors than the headers list a config may expect and
 * still have them looked up one by one (about a millisecond's work). */
enum { NAMED_MISSING_MAX = 100000 };

/* Every expected tensor, part by part, layer by layer: the tasks' results
 * and messages in that order, the first REPORT_MAX of each kind. */
static qm_status expect_all(build *b, qm_diag *d)
{
    qm_model *m = b->m;
    const qm_config *c = &m->cfg;
    size_t n = 0, cap = (size_t)QM_PART_COUNT * ((size_t)c->layers + 1);
    part_job *job = calloc(cap, sizeof *job);
    int workers = qm_cpus();
    qm_arena names[QM_MAX_WORKERS] = {{0}};
    if (!job)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (int p = 0; p < QM_PART_COUNT; p++) {
        qm_where w = qm_parts[p].where;
        if (!has_part(m->arch, c, (qm_part)p) || !b->pattern[p])
            continue;
        for (int l = w == QM_IN_MODEL ? -1 : 0; w == QM_IN_MODEL ? l < 0 : l < c->layers; l++)
            if (l < 0 || in_layer(m, w, l))
                job[n++] = (part_job){.b = b, .names = names, .part = (qm_part)p, .layer = l};
    }
    /* Each field is range-checked alone, but their product is not: a
     * config of 4096 layers of 65536 experts would name 805M tensors
     * before finding the first missing.  Every expected tensor must be in
     * the headers (a packed one as four), so far more than they list is an
     * error at once, before any name is made; a few more are still looked
     * up, so that the missing ones are named. */
    uint64_t expected = 0;
    for (size_t t = 0; t < n; t++)
        expected += qm_parts[job[t].part].where == QM_IN_EXPERT ? (uint64_t)c->experts : 1;
    if (expected > 2 * (uint64_t)m->ckpt->n + NAMED_MISSING_MAX) {
        free(job);
        return qm_diag_fail(d, QM_EFORMAT, "%s: %lld layers (%lld of them MoE) of %lld routed experts each make "
                            "%llu expected tensors, but the checkpoint's headers list only %zu; the layer or "
                            "expert count is not this checkpoint's", m->config_path, c->layers, m->n_moe,
                            c->experts, (unsigned long long)expected, m->ckpt->n);
    }
    qm_parallel(workers, (int)n, expect_task, job);
    qm_status st = QM_OK;
    size_t missing = 0, mismatched = 0, reported[2] = {0, 0};
    for (size_t t = 0; t < n; t++) {
        const part_job *j = &job[t];
        for (size_t i = 0; i < j->n_kind; i++)
            if (j->kind[i] == OTHER || reported[j->kind[i]]++ < REPORT_MAX)
                qm_diag_fail(d, QM_EFORMAT, "%s", qm_diag_text(j->d, i));
        if (j->st != QM_OK && st == QM_OK)
            st = j->st;
        missing += j->missing;
        mismatched += j->mismatched;
        m->n_packed += j->packed;
        qm_diag_free(j->d);
    }
    for (int w = 0; w < QM_MAX_WORKERS; w++)
        qm_arena_adopt(&m->names, &names[w]);
    free(job);
    if (st == QM_OK && missing > REPORT_MAX)
        qm_diag_note(d, "%zu tensors missing in all", missing);
    if (st == QM_OK && mismatched > REPORT_MAX)
        qm_diag_note(d, "%zu tensors with the wrong shape in all", mismatched);
    if (st == QM_OK && (missing || mismatched))
        st = QM_EFORMAT;
    return st;
}

static qm_status inventory(qm_model *m, qm_diag *d)
{
    build b = {.m = m};
    size_t nc = m->ckpt->n;
    b.seen = calloc(nc + 1, 1);
    m->t = malloc((nc + 1) * sizeof *m->t);
    if (!b.seen || !m->t) {
        free(b.seen);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (int p = 0; p < QM_PART_COUNT; p++)
        b.pattern[p] = pattern_for(m->arch, (qm_part)p);
    qm_status st = expect_all(&b, d);
    for (size_t i = 0; st == QM_OK && i < nc; i++)
        if (!b.seen[i] && m->n_unexpected++ < REPORT_MAX)
            qm_diag_warn(d, "%s: unexpected tensor '%s' (not part of a %s)",
                         m->ckpt->files[m->ckpt->t[i].file]->path, m->ckpt->t[i].t->name,
                         m->arch->name);
    if (st == QM_OK && m->n_unexpected > REPORT_MAX)
        qm_diag_note(d, "%zu unexpected tensors in all", m->n_unexpected);
    /* close the gaps, in checkpoint order; then `file` is the file index */
    size_t n = 0;
    for (size_t k = 0; st == QM_OK && k < nc; k++)
        if (b.seen[k] == PLACED) {
            m->t[n] = m->t[k];
            m->t[n++].file = m->ckpt->t[k].file;
        }
    m->n = n;
    free(b.seen);
    return st;
}

void qm_model_close(qm_model *m)
{
    if (!m)
        return;
    qm_arena_free(&m->names);
    free(m->t);
    free(m->is_moe);
    qm_ckpt_close(m->ckpt);
    qm_gguf_close(m->gguf);
    qm_config_free(&m->cfg);
    free(m->config_path);
    free(m->dir);
    free(m);
}

qm_status qm_model_check_output(const qm_model *m, const char *opt, const char *out, int out_is_dir,
                                const qm_path_input *more, size_t n_more, qm_diag *d)
{
    /* the shard index too, which may be a link to a file elsewhere (an
     * input that does not exist is skipped by the check) */
    size_t k = 3 + m->ckpt->n_files;
    qm_path_input *in = calloc(k + n_more, sizeof *in);
    char *index = qm_strfmt("%s/model.safetensors.index.json", m->dir);
    if (!in || !index) {
        free(in);
        free(index);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    in[0] = (qm_path_input){m->dir, "the model directory"};
    in[1] = (qm_path_input){m->config_path, "the model's config"};
    in[2] = (qm_path_input){index, "the model's shard index"};
    for (size_t i = 0; i < m->ckpt->n_files; i++)
        in[3 + i] = (qm_path_input){m->ckpt->files[i]->path, "a checkpoint shard of the model"};
    if (n_more)
        memcpy(in + k, more, n_more * sizeof *more);
    qm_status st = qm_path_check_output(opt, out, out_is_dir, in, k + n_more, d);
    free(in);
    free(index);
    return st;
}

qm_status qm_model_open(const char *dir, qm_model **out, qm_diag *d)
{
    *out = NULL;
    qm_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = qm_strdup(dir)) || !(m->config_path = qm_strfmt("%s/config.json", dir))) {
        qm_model_close(m);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_status st = qm_config_read(m->config_path, &m->arch, &m->cfg, d);
    if (st == QM_OK)
        st = qm_ckpt_open(dir, &m->ckpt, d);
    if (st == QM_OK && !(m->is_moe = calloc((size_t)m->cfg.layers, 1)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        for (long long l = 0; l < m->cfg.layers; l++)
            m->n_moe += m->is_moe[l] = (unsigned char)layer_is_moe(&m->cfg, l);
        st = inventory(m, d);
    }
    if (st != QM_OK) {
        qm_model_close(m);
        return st;
    }
    *out = m;
    return QM_OK;
}

long qm_model_tensor(const qm_model *m, int layer, qm_part part, int expert)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->t[i].layer == layer && m->t[i].part == part && m->t[i].expert == expert)
            return (long)i;
    return -1;
}

static uint64_t bytes_of(const qm_st_tensor *t) { return t ? t->end - t->begin : 0; }

void qm_model_count(const qm_model *m, uint64_t params[QM_GROUP_COUNT], uint64_t *bytes)
{
    memset(params, 0, QM_GROUP_COUNT * sizeof *params);
    *bytes = 0;
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        params[qm_parts[t->part].group] += t->numel;
        *bytes += bytes_of(t->st) + bytes_of(t->qzeros) + bytes_of(t->scales) + bytes_of(t->g_idx);
    }
}

void qm_model_tensors_sha256(const qm_model *m, char out[65])
{
    qm_sha256 h;
    qm_sha256_init(&h);
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        char line[96];
        int n = snprintf(line, sizeof line, "\t%s %d %llu %llu\n", qm_dtype_name(t->st->dtype), t->bits,
                         (unsigned long long)t->shape[0], (unsigned long long)(t->ndim == 2 ? t->shape[1] : 0));
        qm_sha256_update(&h, t->st->name, strlen(t->st->name));
        qm_sha256_update(&h, line, (size_t)n);
    }
    qm_sha256_hex(&h, out);
}
