/* scores.c: the scores file (`qmoe score` writes it, qmoe(1) documents it)
 * as the compiler ranks by it, and outlier scores computed from weights.
 *
 *   qmoe_scores: 1
 *   frequency:  {LAYER: [count, ...]}       per MoE layer, one count per expert
 *   importance: {LAYER: {ffn: cos, residual: cos}}  mean cosine similarity
 *   outlier:    {CANONICAL NAME: score}
 *
 * Ranks are "higher deserves more bits": frequency becomes each layer's
 * share of its choices (counts over the layer's sum), importance becomes
 * 1 - cosine.  Any section may be missing; a selection that needs a missing
 * one is an error, except outlier, which is then computed from the weights
 * (for each input column, max |w| over mean |w|; the largest column ratio).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/dtype.h"

#define BAD(...) (st = qm_diag_fail(c->d, QM_EFORMAT, __VA_ARGS__))

/* The sections of root (a mapping) into s and c->outlier_w; canon maps the
 * model's canonical names to its tensors. */
static qm_status read_sections(qm_cstate *c, const qm_ynode *root, const qm_strmap *canon)
{
    qm_cscores *s = &c->sc;
    const char *path = s->path;
    long long L = s->layers, E = s->experts;
    qm_status st = QM_OK;
    int version = 0;
    for (size_t j = 0; j < root->n; j++) {
        const char *key = root->pair[j].key->text;
        const qm_ynode *v = root->pair[j].val;
        if (strcmp(key, "qmoe_scores") == 0) {
            long long x;
            if (!qm_yin_int(v, &x) || x != 1)
                return BAD("%s: qmoe_scores: unsupported version (this qmoe reads 1)", path);
            version = 1;
        } else if (strcmp(key, "frequency") == 0 && v->kind == QM_YMAP) {
            s->has_freq = 1;
            for (size_t q = 0; q < v->n; q++) {
                const qm_ynode *row = v->pair[q].val;
                long long l;
                if (!qm_yin_int(v->pair[q].key, &l) || l < 0 || l >= L || row->kind != QM_YSEQ)
                    return BAD("%s: frequency: expected LAYER: [counts] with LAYER in 0..%lld", path, L - 1);
                long long n = (long long)row->n;
                if (n != E)
                    return BAD("%s: frequency: layer %lld has %lld counts; the model has %lld experts", path, l, n, E);
                double sum = 0, *r = &s->freq[(size_t)l * (size_t)E];
                for (long long e = 0; e < n; e++) {
                    if (!qm_yin_real(row->item[e], &r[e]) || r[e] < 0)
                        return BAD("%s: frequency: layer %lld: expert %lld: count '%.40s' is not a number >= 0", path,
                                   l, e, qm_yin_str(row->item[e]) ? qm_yin_str(row->item[e]) : "(not a scalar)");
                    sum += r[e];
                }
                for (long long e = 0; e < n; e++)
                    r[e] = sum > 0 ? r[e] / sum : 0;
            }
        } else if (strcmp(key, "importance") == 0 && v->kind == QM_YMAP) {
            s->has_imp = 1;
            for (size_t q = 0; q < v->n; q++) {
                const qm_ynode *m = v->pair[q].val;
                long long l;
                if (!qm_yin_int(v->pair[q].key, &l) || l < 0 || l >= L || m->kind != QM_YMAP)
                    return BAD("%s: importance: expected LAYER: {ffn: COS, residual: COS} with LAYER in 0..%lld",
                               path, L - 1);
                for (size_t r = 0; r < m->n; r++) {
                    double cos;
                    if (!qm_yin_real(m->pair[r].val, &cos))
                        return BAD("%s: importance: layer %lld: a value is not a number", path, l);
                    if (strcmp(m->pair[r].key->text, "ffn") == 0)
                        s->imp_ffn[l] = 1 - cos;
                    else if (strcmp(m->pair[r].key->text, "residual") == 0)
                        s->imp_residual[l] = 1 - cos;
                }
            }
        } else if (strcmp(key, "outlier") == 0 && v->kind == QM_YMAP) {
            s->has_outlier = v->n > 0;
            for (size_t q = 0; q < v->n; q++) {
                double sc;
                size_t i;
                if (!qm_yin_real(v->pair[q].val, &sc))
                    return BAD("%s: outlier: expected CANONICAL-NAME: SCORE", path);
                if (qm_strmap_get(canon, v->pair[q].key->text, &i))
                    c->outlier_w[i] = sc; /* names the model lacks are ignored */
            }
        }
    }
    if (!version)
        BAD("%s: not a scores file: no key qmoe_scores", path);
    return st;
}

qm_status qm_c_scores_read(qm_cstate *c, const char *path)
{
    qm_cscores *s = &c->sc;
    long long L = c->model->cfg.layers, E = c->model->cfg.experts;
    s->path = path;
    s->layers = L;
    s->experts = E;
    s->freq = malloc(((size_t)(L * E) + 1) * sizeof *s->freq);
    s->imp_ffn = malloc(((size_t)L + 1) * sizeof *s->imp_ffn);
    s->imp_residual = malloc(((size_t)L + 1) * sizeof *s->imp_residual);
    if (!s->freq || !s->imp_ffn || !s->imp_residual)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    for (long long i = 0; i < L * E; i++)
        s->freq[i] = NAN;
    for (long long i = 0; i < L; i++)
        s->imp_ffn[i] = s->imp_residual[i] = NAN;
    if (!path)
        return QM_OK;

    qm_arena doc = {0}; /* the YAML tree, freed once read */
    const qm_ynode *root;
    qm_strmap canon = {0}; /* canonical name -> tensor; the model owns the keys */
    qm_status st = qm_yin_load(path, NULL, &doc, &root, c->d);
    if (st == QM_OK && (!root || root->kind != QM_YMAP))
        BAD("%s: not a scores file: expected a mapping with key qmoe_scores", path);
    if (st == QM_OK && qm_strmap_init(&canon, c->model->n) != QM_OK)
        st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < c->model->n; i++)
        qm_strmap_put(&canon, c->model->t[i].canon, i, NULL);
    if (st == QM_OK)
        st = read_sections(c, root, &canon);
    qm_strmap_free(&canon);
    qm_arena_free(&doc);
    return st;
}

void qm_c_scores_free(qm_cscores *s)
{
    free(s->freq);
    free(s->imp_ffn);
    free(s->imp_residual);
    memset(s, 0, sizeof *s);
}

double qm_c_freq(const qm_cstate *c, int layer, int expert)
{
    return c->sc.freq[(size_t)layer * (size_t)c->sc.experts + (size_t)expert];
}

double qm_c_importance(const qm_cstate *c, qm_scorer s, int layer)
{
    return s == QM_SCORER_IMPORTANCE_RESIDUAL ? c->sc.imp_residual[layer] : c->sc.imp_ffn[layer];
}

/* From the file when it has an outlier section (a linear it lacks has no
 * score), else from the weights, once per tensor.  Computing reads every
 * weight the selection ranks: on a full checkpoint that is its size in I/O. */
double qm_c_outlier(qm_cstate *c, size_t i)
{
    const qm_tensor *t = &c->model->t[i];
    if (c->sc.has_outlier || c->outlier_done[i]) /* a file's outlier section is complete */
        return c->outlier_w[i];
    c->outlier_done[i] = 1;
    if (t->bits || t->ndim != 2 || !t->st->data)
        return NAN;
    float *w = malloc((size_t)t->numel * sizeof *w);
    if (!w)
        return NAN;
    if (qm_to_f32(t->st->dtype, t->st->data, w, (size_t)t->numel) == 0)
        c->outlier_w[i] = qm_outlier_score(w, (int)t->shape[0], (int)t->shape[1]);
    free(w);
    return c->outlier_w[i];
}

int qm_c_have(qm_cstate *c, qm_scorer s, const qm_source *src, qm_span at)
{
    int have = s == QM_SCORER_OUTLIER ? 1 : s == QM_SCORER_FREQUENCY ? c->sc.has_freq : c->sc.has_imp;
    if (!have)
        qm_source_diag(c->d, QM_SEV_ERROR, src, at, "selecting by %s needs a scores file with '%s' (--scores FILE; `qmoe score` writes one)",
                       qm_scorer_name(s), s == QM_SCORER_FREQUENCY ? "frequency" : "importance");
    return have;
}
