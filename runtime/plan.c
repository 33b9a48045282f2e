/* plan.c: bit plans: summary, YAML output, and validated YAML input
 * through the strict reader (qm_yin_load).
 *
 * Output goes through libyaml's emitter (qm_plan_emit_libyaml, the
 * reference) unless every string in the plan is of the simple kind whose
 * YAML form qm_yaml_simple_style() knows (checkpoint names, canonical
 * modules, file:line rules, hex digests, ordinary paths): then the same
 * bytes are printed directly, ~10x faster, which a 37k-tensor plan needs.
 * tests/unit/test_plan.c holds the two to identical output. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/plan.h"

void qm_plan_free(qm_plan *p)
{
    if (!p)
        return;
    free(p->t);
    qm_arena_free(&p->strings);
    if (p->owner_free)
        p->owner_free(p->owner);
    free(p);
}

static uint64_t numel(const qm_plan_tensor *t)
{
    uint64_t n = 1;
    for (int k = 0; k < t->ndim; k++)
        n *= t->shape[k];
    return n;
}

int qm_plan_default_group(uint64_t in)
{
    enum { GROUP = 128 };
    return in % GROUP == 0 ? GROUP : 0;
}

uint64_t qm_plan_tensor_bytes(const qm_plan_tensor *t)
{
    if (!t->bits || t->ndim != 2)
        return numel(t) * qm_dtype_size(t->dtype);
    uint64_t out = t->shape[0], in = t->shape[1], b = (uint64_t)t->bits;
    uint64_t groups = t->group ? in / (uint64_t)t->group : 1;
    /* qweight + qzeros (packed) + scales (fp16) + g_idx (int32) */
    return in * out * b / 8 + groups * out * b / 8 + 2 * groups * out + 4 * in;
}

void qm_plan_summarize(qm_plan *p)
{
    qm_plan_summary *s = &p->summary;
    qm_plan_summary budget = *s;
    memset(s, 0, sizeof *s);
    s->has_budget = budget.has_budget;
    s->budget_target_bits = budget.budget_target_bits;
    s->budget_achieved_bits = budget.budget_achieved_bits;
    double bits = 0, stored = 0;
    for (size_t i = 0; i < p->n; i++) {
        const qm_plan_tensor *t = &p->t[i];
        uint64_t n = numel(t);
        s->by_bits[t->bits]++;
        s->bytes_before += n * qm_dtype_size(t->dtype);
        s->bytes_after += qm_plan_tensor_bytes(t);
        if (t->bits) {
            s->quantized_params += n;
            bits += (double)n * t->bits;
            stored += 8.0 * (double)qm_plan_tensor_bytes(t);
        } else {
            s->kept_params += n;
        }
    }
    s->average_bits = s->quantized_params ? bits / (double)s->quantized_params : 0;
    s->effective_bits = s->quantized_params ? stored / (double)s->quantized_params : 0;
}

/* ---- output -------------------------------------------------------------------------------- */

static void kbool(qm_yaml *y, const char *k, int v)
{
    qm_yaml_str(y, k);
    qm_yaml_bool(y, v);
}

qm_status qm_plan_emit_libyaml(const qm_plan *p, FILE *f, qm_diag *d)
{
    qm_yaml *y = qm_yaml_begin(f);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    const qm_plan_summary *s = &p->summary;
    qm_yaml_map(y);
    qm_yaml_kint(y, "qmoe_plan", QM_PLAN_VERSION);
    qm_yaml_str(y, "policy");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "path", p->policy_path);
    qm_yaml_kstr(y, "sha256", p->policy_sha256);
    qm_yaml_close(y);
    qm_yaml_str(y, "model");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "architecture", p->arch);
    qm_yaml_kstr(y, "config_sha256", p->config_sha256);
    qm_yaml_close(y);
    qm_yaml_str(y, "scores");
    if (p->scores_sha256) {
        qm_yaml_map(y);
        qm_yaml_kstr(y, "path", p->scores_path);
        qm_yaml_kstr(y, "sha256", p->scores_sha256);
        qm_yaml_close(y);
    } else {
        qm_yaml_null(y);
    }
    qm_yaml_str(y, "summary");
    qm_yaml_map(y);
    qm_yaml_str(y, "average_bits");
    qm_yaml_real(y, s->average_bits, 4);
    qm_yaml_str(y, "effective_bits");
    qm_yaml_real(y, s->effective_bits, 4);
    if (s->has_budget) {
        qm_yaml_str(y, "budget_target_bits");
        qm_yaml_real(y, s->budget_target_bits, 4);
        qm_yaml_str(y, "budget_achieved_bits");
        qm_yaml_real(y, s->budget_achieved_bits, 4);
    }
    qm_yaml_kuint(y, "quantized_params", s->quantized_params);
    qm_yaml_kuint(y, "kept_params", s->kept_params);
    qm_yaml_str(y, "tensors_by_bits");
    qm_yaml_flow_map(y);
    for (size_t i = 0; i < QM_WIDTH_COUNT; i++) {
        qm_yaml_int(y, qm_widths[i]);
        qm_yaml_uint(y, s->by_bits[qm_widths[i]]);
    }
    qm_yaml_kuint(y, "keep", s->by_bits[0]);
    qm_yaml_close(y);
    qm_yaml_kuint(y, "bytes_before", s->bytes_before);
    qm_yaml_kuint(y, "bytes_after", s->bytes_after);
    qm_yaml_close(y);
    qm_yaml_str(y, "tensors");
    qm_yaml_seq(y);
    for (size_t i = 0; i < p->n; i++) {
        const qm_plan_tensor *t = &p->t[i];
        qm_yaml_flow_map(y);
        qm_yaml_kstr(y, "name", t->name);
        qm_yaml_kstr(y, "module", t->module);
        qm_yaml_str(y, "shape");
        qm_yaml_flow_seq(y);
        for (int k = 0; k < t->ndim; k++)
            qm_yaml_uint(y, t->shape[k]);
        qm_yaml_close(y);
        qm_yaml_kstr(y, "dtype", qm_dtype_name(t->dtype));
        qm_yaml_str(y, "bits");
        if (t->bits)
            qm_yaml_int(y, t->bits);
        else
            qm_yaml_str(y, "keep");
        qm_yaml_kint(y, "group_size", t->group);
        kbool(y, "sym", t->sym);
        kbool(y, "act_order", t->act_order);
        qm_yaml_kstr(y, "rule", t->rule);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

/* ---- direct output ---------------------------------------------------------------------- */

/* What only libyaml writes right: an empty tensor list (as []), a real
 * that is not finite, shapes and settings outside the plan's ranges.
 * Strings are checked by the style pass. */
static int direct_ok(const qm_plan *p)
{
    const qm_plan_summary *s = &p->summary;
    double r[] = {s->average_bits, s->effective_bits, s->budget_target_bits, s->budget_achieved_bits};
    for (size_t i = 0; i < sizeof r / sizeof *r; i++)
        if (!(fabs(r[i]) <= 1e308))
            return 0;
    if (p->n == 0)
        return 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].ndim < 1 || p->t[i].ndim > 2 || p->t[i].group < 0 || p->t[i].bits < 0)
            return 0;
    return 1;
}

static inline void put(qm_buf *b, const char *s)
{
    qm_buf_add(b, s, strlen(s));
}

/* Decimal v, without printf: a plan has ~100k numbers. */
static void put_u(qm_buf *b, unsigned long long v)
{
    char d[24], *p = d + sizeof d;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    qm_buf_add(b, p, (size_t)(d + sizeof d - p));
}

/* s as a scalar whose style qm_yaml_simple_style() gave (1 plain, 2 quoted). */
static void put_styled(qm_buf *b, const char *s, int style)
{
    if (style == 2)
        qm_buf_add(b, "'", 1);
    put(b, s);
    if (style == 2)
        qm_buf_add(b, "'", 1);
}

/* "  key: value\n" in block context; 0 when value is not simple. */
static int put_kv(qm_buf *b, const char *key, const char *v)
{
    int style = qm_yaml_simple_style(v, 0);
    put(b, "  ");
    put(b, key);
    put(b, ": ");
    put_styled(b, v, style);
    put(b, "\n");
    return style != 0;
}

/* Everything before the tensors; 0 when a string is not simple. */
static int put_head(const qm_plan *p, qm_buf *b)
{
    const qm_plan_summary *s = &p->summary;
    int ok = 1;
    qm_buf_printf(b, "qmoe_plan: %d\npolicy:\n", QM_PLAN_VERSION);
    ok &= put_kv(b, "path", p->policy_path);
    ok &= put_kv(b, "sha256", p->policy_sha256);
    put(b, "model:\n");
    ok &= put_kv(b, "architecture", p->arch);
    ok &= put_kv(b, "config_sha256", p->config_sha256);
    if (p->scores_sha256) {
        put(b, "scores:\n");
        ok &= put_kv(b, "path", p->scores_path);
        ok &= put_kv(b, "sha256", p->scores_sha256);
    } else {
        put(b, "scores: null\n");
    }
    qm_buf_printf(b, "summary:\n  average_bits: %.4f\n  effective_bits: %.4f\n", s->average_bits,
                  s->effective_bits);
    if (s->has_budget)
        qm_buf_printf(b, "  budget_target_bits: %.4f\n  budget_achieved_bits: %.4f\n", s->budget_target_bits,
                      s->budget_achieved_bits);
    qm_buf_printf(b, "  quantized_params: %llu\n  kept_params: %llu\n  tensors_by_bits: {",
                  (unsigned long long)s->quantized_params, (unsigned long long)s->kept_params);
    for (size_t i = 0; i < QM_WIDTH_COUNT; i++)
        qm_buf_printf(b, "%d: %zu, ", qm_widths[i], s->by_bits[qm_widths[i]]);
    qm_buf_printf(b, "keep: %zu}\n  bytes_before: %llu\n  bytes_after: %llu\ntensors:\n", s->by_bits[0],
                  (unsigned long long)s->bytes_before, (unsigned long long)s->bytes_after);
    return ok;
}

/* The tensor list is printed in two parallel passes over ranges of RANGE
 * tensors: first every string's style (so that nothing is written when one
 * is not simple), then the text, a batch of ranges at a time into one
 * buffer per range, written in order.  At 235B scale that is 37k tensors
 * and 8 MB of text, which one buffer would have had to hold. */
enum { RANGE = 2048 };

typedef struct direct_jobs {
    const qm_plan *p;
    unsigned char *style; /* (n) name | module << 2 | rule << 4; 0 anywhere: not simple */
    int *bad;             /* (ranges) a string of that range is not simple */
    size_t first;         /* the batch's first range */
    qm_buf *out;          /* (workers) one per range of the batch */
} direct_jobs;

static void style_range(void *ctx, size_t begin, size_t end, int worker)
{
    direct_jobs *j = ctx;
    const qm_plan *p = j->p;
    const char *rule = NULL; /* a rule's text is shared by the tensors it decided: its style once */
    int rs = 0;
    for (size_t i = begin; i < end; i++) {
        const qm_plan_tensor *t = &p->t[i];
        int ns = qm_yaml_simple_style(t->name, 1), ms = qm_yaml_simple_style(t->module, 1);
        if (t->rule != rule)
            rs = qm_yaml_simple_style(rule = t->rule, 1);
        j->style[i] = (unsigned char)(ns | ms << 2 | rs << 4);
        if (!ns || !ms || !rs)
            j->bad[begin / RANGE] = 1;
    }
}

static void print_range(void *ctx, int task, int worker)
{
    direct_jobs *j = ctx;
    const qm_plan *p = j->p;
    size_t r = j->first + (size_t)task, end = (r + 1) * RANGE < p->n ? (r + 1) * RANGE : p->n;
    qm_buf *b = &j->out[task];
    b->n = 0;
    for (size_t i = r * RANGE; i < end; i++) {
        const qm_plan_tensor *t = &p->t[i];
        int st = j->style[i];
        put(b, "- {name: ");
        put_styled(b, t->name, st & 3);
        put(b, ", module: ");
        put_styled(b, t->module, st >> 2 & 3);
        put(b, ", shape: [");
        put_u(b, t->shape[0]);
        if (t->ndim == 2) {
            put(b, ", ");
            put_u(b, t->shape[1]);
        }
        put(b, "], dtype: ");
        put(b, qm_dtype_name(t->dtype));
        put(b, ", bits: ");
        if (t->bits)
            put_u(b, (unsigned)t->bits);
        else
            put(b, "keep");
        put(b, ", group_size: ");
        put_u(b, (unsigned)t->group);
        put(b, t->sym ? ", sym: true" : ", sym: false");
        put(b, t->act_order ? ", act_order: true, rule: " : ", act_order: false, rule: ");
        put_styled(b, t->rule, st >> 4 & 3);
        put(b, "}\n");
    }
}

/* Writing one printed batch: on a thread of its own while the next batch
 * is printed (putting 8 MB into the page cache is as much work as
 * printing it, and would otherwise leave the other cores idle). */
typedef struct batch_write {
    FILE *f;
    const qm_buf *b;
    size_t n;
    qm_status st; /* QM_ENOMEM: a buffer ran out; QM_EIO: a write failed */
} batch_write;

static void *write_batch(void *arg)
{
    batch_write *w = arg;
    for (size_t k = 0; k < w->n && w->st == QM_OK; k++)
        if (w->b[k].oom)
            w->st = QM_ENOMEM;
        else if (fwrite(w->b[k].s, 1, w->b[k].n, w->f) != w->b[k].n)
            w->st = QM_EIO;
    return NULL;
}

qm_status qm_plan_emit_direct(const qm_plan *p, FILE *f, qm_diag *d)
{
    if (!direct_ok(p))
        return QM_EINVAL;
    int workers = qm_cpus();
    size_t ranges = (p->n + RANGE - 1) / RANGE;
    qm_buf out[2][QM_MAX_WORKERS] = {{{0}}}; /* a batch printed into one while the other is written */
    direct_jobs j = {p, malloc(p->n), calloc(ranges, sizeof *j.bad), 0, out[0]};
    qm_status st = QM_OK;
    if (!j.style || !j.bad) {
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        goto done;
    }
    qm_parallel_ranges(workers, p->n, RANGE, style_range, &j);
    for (size_t r = 0; r < ranges; r++)
        if (j.bad[r])
            st = QM_EINVAL;
    if (st == QM_OK && !put_head(p, &out[0][0]))
        st = QM_EINVAL;
    batch_write w = {f, out[0], 1, QM_OK};
    if (st == QM_OK)
        write_batch(&w);
    pthread_t writer;
    int writing = 0;
    for (size_t b = 0; st == QM_OK && w.st == QM_OK && (j.first = b * (size_t)workers) < ranges; b++) {
        size_t batch = ranges - j.first < (size_t)workers ? ranges - j.first : (size_t)workers;
        j.out = out[b & 1];
        qm_parallel(workers, (int)batch, print_range, &j);
        if (writing)
            pthread_join(writer, NULL);
        writing = 0;
        if (w.st != QM_OK)
            break;
        w = (batch_write){f, out[b & 1], batch, QM_OK};
        if (pthread_create(&writer, NULL, write_batch, &w) == 0)
            writing = 1;
        else
            write_batch(&w);
    }
    if (writing)
        pthread_join(writer, NULL);
    if (st == QM_OK && w.st == QM_ENOMEM)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    else if (st == QM_OK && w.st != QM_OK)
        st = qm_diag_fail(d, QM_EIO, "YAML output failed");
done:
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < QM_MAX_WORKERS; i++)
            free(out[k][i].s);
    free(j.style);
    free(j.bad);
    return st;
}

qm_status qm_plan_emit(const qm_plan *p, FILE *f, qm_diag *d)
{
    qm_status st = qm_plan_emit_direct(p, f, d);
    return st == QM_EINVAL ? qm_plan_emit_libyaml(p, f, d) : st;
}

static qm_status put_plan(const void *p, FILE *f, qm_diag *d)
{
    return qm_plan_emit(p, f, d);
}

qm_status qm_plan_write(const qm_plan *p, const char *path, qm_diag *d)
{
    /* not durable: made again in 0.1 s; qm_plan_read() rejects an empty or cut plan */
    return qm_afile_write(path, put_plan, p, 0, d);
}

/* ---- input --------------------------------------------------------------------------------- */

typedef struct reader {
    const char *path;
    qm_arena *strings;      /* the plan's */
    qm_diag *d;
} reader;

static qm_status bad(reader *r, const qm_ynode *n, const char *what, const char *detail)
{
    return qm_diag_fail(r->d, QM_EFORMAT, "%s:%u:%u: %s %s", r->path, n ? n->line : 0, n ? n->col : 0, what,
                        detail);
}

/* Copy of the scalar at map[key]; NULL (and a diagnostic) when missing. */
static char *need_str(reader *r, const qm_ynode *map, const char *key, const char *where, qm_status *st)
{
    const char *v = qm_yin_str(qm_yin_get(map, key));
    if (!v) {
        char what[128];
        snprintf(what, sizeof what, "%s needs", where);
        char k[96];
        snprintf(k, sizeof k, "'%s'", key);
        *st = bad(r, map, what, k);
        return NULL;
    }
    char *c = qm_arena_strdup(r->strings, v);
    if (!c)
        *st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    return c;
}

static qm_status read_tensor(reader *r, const qm_ynode *n, size_t i, qm_plan_tensor *t)
{
    char where[64];
    snprintf(where, sizeof where, "tensors[%zu]", i);
    if (n->kind != QM_YMAP)
        return bad(r, n, where, "is not a mapping");
    qm_status st = QM_OK;
    t->name = need_str(r, n, "name", where, &st);
    if (st == QM_OK)
        t->module = need_str(r, n, "module", where, &st);
    if (st == QM_OK)
        t->rule = need_str(r, n, "rule", where, &st);
    if (st != QM_OK)
        return st;
    const qm_ynode *shape = qm_yin_get(n, "shape");
    if (!shape || shape->kind != QM_YSEQ || shape->n < 1 || shape->n > 2)
        return bad(r, shape ? shape : n, where, "shape must be a list of 1 or 2 sizes");
    t->ndim = (int)shape->n;
    for (int k = 0; k < t->ndim; k++) {
        long long v;
        if (!qm_yin_int(shape->item[k], &v) || v < 0)
            return bad(r, shape, where, "shape must be a list of 1 or 2 sizes");
        t->shape[k] = (uint64_t)v;
    }
    const char *dt = qm_yin_str(qm_yin_get(n, "dtype"));
    if (!dt || !qm_dtype_parse(dt, &t->dtype))
        return bad(r, n, where, "dtype must name a safetensors dtype");
    const qm_ynode *bn = qm_yin_get(n, "bits"), *gn = qm_yin_get(n, "group_size");
    const char *b = qm_yin_str(bn);
    long long v;
    if (b && strcmp(b, "keep") == 0)
        t->bits = 0;
    else if (qm_yin_int(bn, &v) && qm_is_width(v))
        t->bits = (int)v;
    else {
        char w[64], msg[96];
        snprintf(msg, sizeof msg, "bits must be %s or keep", qm_widths_text(w, sizeof w, "", ", ", ", "));
        return bad(r, bn ? bn : n, where, msg);
    }
    if (!qm_yin_int(gn, &v) || v < 0 || (v && t->ndim == 2 && t->shape[1] % (uint64_t)v))
        return bad(r, gn ? gn : n, where, "group_size must be 0 (per channel) or divide the input columns");
    t->group = (int)v;
    if (!qm_yin_bool(qm_yin_get(n, "sym"), &t->sym) || !qm_yin_bool(qm_yin_get(n, "act_order"), &t->act_order))
        return bad(r, n, where, "sym and act_order must be true or false");
    if (t->bits && t->ndim != 2)
        return bad(r, n, where, "only 2-D tensors can be quantized");
    return QM_OK;
}

/* summary.budget_target_bits and budget_achieved_bits: both or neither;
 * the target a width the language accepts, the achieved value the average
 * the tensors give (s has been summarized from them), to the 4 digits
 * written. */
/* The summary's parameter counts, where it gives them, must be the
 * tensors': a plan cut short (a crash before its rename reached the disk,
 * a hand edit) lists fewer tensors than its summary counted. */
static qm_status read_counts(reader *r, const qm_ynode *summary, const qm_plan_summary *s)
{
    static const char *const key[2] = {"quantized_params", "kept_params"};
    const uint64_t have[2] = {s->quantized_params, s->kept_params};
    for (int i = 0; i < 2; i++) {
        const qm_ynode *n = qm_yin_get(summary, key[i]);
        long long v;
        if (!n)
            continue;
        if (!qm_yin_int(n, &v) || v < 0 || (uint64_t)v != have[i]) {
            char detail[160];
            snprintf(detail, sizeof detail, "is %s, but the tensors listed add up to %llu (a plan cut short?)",
                     n->kind == QM_YSCALAR && n->plain ? n->text : "not a number", (unsigned long long)have[i]);
            return bad(r, n, "summary:", detail);
        }
    }
    return QM_OK;
}

static qm_status read_budget(reader *r, const qm_ynode *summary, qm_plan_summary *s)
{
    const qm_ynode *tn = qm_yin_get(summary, "budget_target_bits"), *an = qm_yin_get(summary, "budget_achieved_bits");
    if (!tn && !an)
        return QM_OK;
    if (!tn || !an)
        return bad(r, tn ? tn : an, "summary:", "budget_target_bits and budget_achieved_bits go together");
    if (!qm_yin_real(tn, &s->budget_target_bits) || !(s->budget_target_bits >= 2 && s->budget_target_bits <= 8))
        return bad(r, tn, "summary:", "budget_target_bits must be a number from 2 to 8");
    if (!qm_yin_real(an, &s->budget_achieved_bits) || isnan(s->budget_achieved_bits))
        return bad(r, an, "summary:", "budget_achieved_bits must be a number");
    if (fabs(s->budget_achieved_bits - s->average_bits) > 5e-5) {
        char detail[160];
        snprintf(detail, sizeof detail, "%.4f is not the tensors' average_bits %.4f",
                 s->budget_achieved_bits, s->average_bits);
        return bad(r, an, "summary: budget_achieved_bits", detail);
    }
    s->has_budget = 1;
    return QM_OK;
}

static qm_status read_plan(reader *r, const qm_ynode *root, qm_plan *p)
{
    long long v;
    qm_status st = QM_OK;
    if (!root)
        return qm_diag_fail(r->d, QM_EFORMAT, "%s: empty, not a qmoe plan", r->path);
    if (root->kind != QM_YMAP)
        return bad(r, root, "plan:", "the document is not a mapping");
    if (!qm_yin_int(qm_yin_get(root, "qmoe_plan"), &v))
        return bad(r, root, "plan:", "no 'qmoe_plan' version: not a qmoe plan");
    if (v != QM_PLAN_VERSION)
        return bad(r, qm_yin_get(root, "qmoe_plan"), "plan:", "has a format version this qmoe does not read");
    const qm_ynode *pol = qm_yin_get(root, "policy"), *model = qm_yin_get(root, "model"),
                   *sc = qm_yin_get(root, "scores");
    p->policy_path = need_str(r, pol, "path", "policy", &st);
    if (st == QM_OK)
        p->policy_sha256 = need_str(r, pol, "sha256", "policy", &st);
    if (st == QM_OK)
        p->arch = need_str(r, model, "architecture", "model", &st);
    if (st == QM_OK)
        p->config_sha256 = need_str(r, model, "config_sha256", "model", &st);
    if (st == QM_OK && sc && sc->kind == QM_YMAP) {
        p->scores_path = need_str(r, sc, "path", "scores", &st);
        if (st == QM_OK)
            p->scores_sha256 = need_str(r, sc, "sha256", "scores", &st);
    }
    if (st != QM_OK)
        return st;
    const qm_ynode *ts = qm_yin_get(root, "tensors");
    if (!ts || ts->kind != QM_YSEQ)
        return bad(r, ts ? ts : root, "plan:", "'tensors' must be a list");
    p->t = calloc(ts->n ? ts->n : 1, sizeof *p->t);
    if (!p->t)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < ts->n && st == QM_OK; i++) {
        st = read_tensor(r, ts->item[i], i, &p->t[i]);
        p->n++;
    }
    if (st == QM_OK)
        qm_plan_summarize(p);
    if (st == QM_OK)
        st = read_counts(r, qm_yin_get(root, "summary"), &p->summary);
    if (st == QM_OK)
        st = read_budget(r, qm_yin_get(root, "summary"), &p->summary);
    return st;
}

qm_status qm_plan_read(const char *path, qm_plan **out, qm_diag *d)
{
    *out = NULL;
    qm_plan *p = calloc(1, sizeof *p);
    if (!p)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    reader r = {.path = path, .strings = &p->strings, .d = d};
    qm_arena doc = {0}; /* the YAML tree, freed once the plan is built from it */
    const qm_ynode *root;
    qm_status st = qm_yin_load(path, NULL, &doc, &root, d);
    if (st == QM_OK)
        st = read_plan(&r, root, p);
    qm_arena_free(&doc);
    if (st != QM_OK) {
        qm_plan_free(p);
        return st;
    }
    *out = p;
    return QM_OK;
}
