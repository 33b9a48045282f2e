/* plan.c: bit plans: sizes and summary, and validated YAML input through
 * the strict reader (qm_yin_load).  Output is plan_write.c. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/plan.h"

void qm_plan_free(qm_plan *p)
{
    if (!p)
        return;
    free(p->t);
    free(p->imports);
    free(p->engines);
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

qm_scheme qm_plan_scheme(const qm_plan_tensor *t)
{
    return (qm_scheme){t->bits, t->group, t->sym, t->act_order};
}

int qm_scheme_same(qm_scheme a, qm_scheme b)
{
    return a.bits == b.bits && (!a.bits || (a.group == b.group && a.sym == b.sym && a.act_order == b.act_order));
}

qm_scheme qm_plan_base_scheme(const qm_plan *p)
{
    enum { MAX_SEEN = 64 }; /* widths x group sizes x sym x act-order in one plan: far fewer */
    qm_scheme seen[MAX_SEEN], base = {4, 128, 1, 0};
    size_t count[MAX_SEEN], n = 0, best = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!p->t[i].bits)
            continue;
        qm_scheme s = qm_plan_scheme(&p->t[i]);
        size_t k = 0;
        while (k < n && !qm_scheme_same(seen[k], s))
            k++;
        if (k == n && n < MAX_SEEN) {
            seen[n] = s;
            count[n++] = 0;
        }
        if (k < n)
            count[k]++;
    }
    for (size_t k = 0; k < n; k++)
        if (count[k] > best) {
            best = count[k];
            base = seen[k];
        }
    return base;
}

void qm_plan_summarize(qm_plan *p)
{
    qm_plan_summary *s = &p->summary;
    qm_plan_summary budget = *s;
    memset(s, 0, sizeof *s);
    s->has_budget = budget.has_budget;
    s->budget_target_bits = budget.budget_target_bits;
    s->budget_achieved_bits = budget.budget_achieved_bits;
    s->has_predicted = budget.has_predicted;
    s->predicted_error = budget.predicted_error;
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
    if (!qm_yin_int(gn, &v) || v < 0 || (v && t->ndim == 2 && t->shape[1] % (uint64_t)v)) {
        /* the value and the shape it was checked against: a group that
         * does not divide is often a shape edited or from another model */
        char msg[192];
        const char *gv = qm_yin_str(gn);
        if (qm_yin_int(gn, &v) && v > 0 && t->ndim == 2)
            snprintf(msg, sizeof msg, "group_size %lld must be 0 (per channel) or divide the input columns %llu of "
                     "shape [%llu, %llu]", v, (unsigned long long)t->shape[1], (unsigned long long)t->shape[0],
                     (unsigned long long)t->shape[1]);
        else
            snprintf(msg, sizeof msg, "group_size %.40s must be 0 (per channel) or divide the input columns",
                     gv ? gv : "(missing)");
        return bad(r, gn ? gn : n, where, msg);
    }
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
            char what[64];
            snprintf(what, sizeof what, "summary: %s", key[i]);
            return bad(r, n, what, detail);
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
    const qm_ynode *pe = qm_yin_get(summary, "predicted_error");
    if (pe && (!qm_yin_real(pe, &s->predicted_error) || !(s->predicted_error >= 0 && s->predicted_error <= 1e300)))
        return bad(r, pe, "summary:", "predicted_error must be a finite number >= 0");
    s->has_predicted = pe != NULL;
    return QM_OK;
}

/* Each checkpoint name and each module once: a tensor listed twice would be
 * quantized twice, or by whichever entry a consumer happens to find first. */
static qm_status unique(reader *r, const qm_ynode *ts, const qm_plan *p)
{
    qm_strmap names, modules;
    qm_status st = qm_strmap_init(&names, p->n);
    if (st == QM_OK && (st = qm_strmap_init(&modules, p->n)) != QM_OK)
        qm_strmap_free(&names);
    if (st != QM_OK)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n && st == QM_OK; i++) {
        size_t first;
        const char *key = "name", *val = p->t[i].name;
        qm_status put = qm_strmap_put(&names, val, i, &first);
        if (put == QM_OK) {
            key = "module";
            val = p->t[i].module;
            put = qm_strmap_put(&modules, val, i, &first);
        }
        if (put == QM_EINVAL) {
            char where[64], detail[1200];
            snprintf(where, sizeof where, "tensors[%zu]", i);
            snprintf(detail, sizeof detail, "repeats the %s '%.1000s' of tensors[%zu]", key, val, first);
            st = bad(r, ts->item[i], where, detail);
        } else if (put != QM_OK) {
            st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        }
    }
    qm_strmap_free(&names);
    qm_strmap_free(&modules);
    return st;
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
    const qm_ynode *en = pol ? qm_yin_get(pol, "engines") : NULL;
    if (st == QM_OK && en) {
        if (en->kind != QM_YSEQ)
            return bad(r, en, "policy:", "'engines' must be a list of engine names");
        if (!(p->engines = calloc(en->n + 1, sizeof *p->engines)))
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        for (size_t i = 0; i < en->n; i++) {
            const char *name = qm_yin_str(en->item[i]);
            if (!name)
                return bad(r, en->item[i], "policy: engines", "is not a name");
            if (!(p->engines[p->nengines++] = qm_arena_strdup(&p->strings, name)))
                return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        }
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
        st = unique(r, ts, p);
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
