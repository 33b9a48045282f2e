/* plan_write.c: bit plans as YAML (plan.h).
 *
 * Output goes through libyaml's emitter (qm_plan_emit_libyaml, the
 * reference) unless every string in the plan is of the simple kind whose
 * YAML form qm_yaml_simple_style() knows (checkpoint names, canonical
 * modules, file:line rules, hex digests, ordinary paths): then the same
 * bytes are printed directly, ~10x faster, which a 37k-tensor plan needs:
 * styles checked and ranges printed on all cores, each printed batch
 * written on a thread while the next is printed.
 * tests/unit/test_plan.c holds the two to identical output. */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/plan.h"

static void kbool(qm_yaml *y, const char *k, int v)
{
    qm_yaml_str(y, k);
    qm_yaml_bool(y, v);
}

/* The plan through y (YAML or JSON: the same keys either way). */
static qm_status emit(const qm_plan *p, qm_yaml *y, qm_diag *d)
{
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    const qm_plan_summary *s = &p->summary;
    qm_yaml_map(y);
    qm_yaml_kint(y, "qmoe_plan", QM_PLAN_VERSION);
    qm_yaml_str(y, "policy");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "path", p->policy_path);
    qm_yaml_kstr(y, "sha256", p->policy_sha256);
    if (p->nimports) {
        qm_yaml_str(y, "imports");
        qm_yaml_seq(y);
        for (size_t i = 0; i < p->nimports; i++) {
            qm_yaml_flow_map(y);
            qm_yaml_kstr(y, "name", p->imports[i].name);
            qm_yaml_kstr(y, "sha256", p->imports[i].sha256);
            qm_yaml_close(y);
        }
        qm_yaml_close(y);
    }
    if (p->nengines) {
        qm_yaml_str(y, "engines");
        qm_yaml_flow_seq(y);
        for (size_t i = 0; i < p->nengines; i++)
            qm_yaml_str(y, p->engines[i]);
        qm_yaml_close(y);
    }
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
    if (s->has_predicted) {
        qm_yaml_str(y, "predicted_error");
        qm_yaml_sci(y, s->predicted_error, 6);
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

qm_status qm_plan_emit_libyaml(const qm_plan *p, FILE *f, qm_diag *d)
{
    return emit(p, qm_yaml_begin(f), d);
}

qm_status qm_plan_emit_json(const qm_plan *p, FILE *f, qm_diag *d)
{
    return emit(p, qm_json_begin(f), d);
}

static qm_status put_json(const void *p, FILE *f, qm_diag *d)
{
    return qm_plan_emit_json(p, f, d);
}

qm_status qm_plan_write_json(const qm_plan *p, const char *path, qm_diag *d)
{
    return qm_afile_write(path, put_json, p, 0, d);
}

/* ---- direct output ---------------------------------------------------------------------- */

/* What only libyaml writes right: an empty tensor list (as []), a real
 * that is not finite, shapes and settings outside the plan's ranges.
 * Strings are checked by the style pass. */
static int direct_ok(const qm_plan *p)
{
    const qm_plan_summary *s = &p->summary;
    double r[] = {s->average_bits, s->effective_bits, s->budget_target_bits, s->budget_achieved_bits,
                  s->has_predicted ? s->predicted_error : 0};
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
    if (p->nimports)
        put(b, "  imports:\n");
    for (size_t i = 0; i < p->nimports; i++) {
        int sn = qm_yaml_simple_style(p->imports[i].name, 1), sh = qm_yaml_simple_style(p->imports[i].sha256, 1);
        put(b, "  - {name: ");
        put_styled(b, p->imports[i].name, sn);
        put(b, ", sha256: ");
        put_styled(b, p->imports[i].sha256, sh);
        put(b, "}\n");
        ok &= sn != 0 && sh != 0;
    }
    if (p->nengines)
        put(b, "  engines: [");
    for (size_t i = 0; i < p->nengines; i++) {
        int se = qm_yaml_simple_style(p->engines[i], 1);
        put(b, i ? ", " : "");
        put_styled(b, p->engines[i], se);
        ok &= se != 0;
    }
    if (p->nengines)
        put(b, "]\n");
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
    if (s->has_predicted)
        qm_buf_printf(b, "  predicted_error: %.6e\n", s->predicted_error);
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
    /* a failed write (QM_EIO) is left in f's error flag, for its owner to
     * report with the path and errno (qm_yaml_end() does the same) */
    if (st == QM_OK && w.st == QM_ENOMEM)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
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
