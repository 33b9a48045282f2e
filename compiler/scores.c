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

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "compiler/internal.h"
#include "runtime/dtype.h"
#include "runtime/score.h"

static int num(yaml_node_t *n, double *v)
{
    if (!n || n->type != YAML_SCALAR_NODE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0) {
        *v = NAN;
        return 1;
    }
    *v = strtod(s, &end);
    return end != s && *end == 0;
}

static int key_is(yaml_document_t *doc, yaml_node_pair_t *p, const char *k)
{
    yaml_node_t *n = yaml_document_get_node(doc, p->key);
    return n && n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, k) == 0;
}

#define BAD(...) (st = qm_diag_fail(c->d, QM_EFORMAT, __VA_ARGS__))

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

    FILE *f = fopen(path, "rb");
    if (!f)
        return qm_diag_fail(c->d, errno == ENOENT ? QM_ENOTFOUND : QM_EIO, "%s: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    qm_status st = QM_OK;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        st = qm_diag_fail(c->d, QM_EFORMAT, "%s:%zu:%zu: %s", path, parser.problem_mark.line + 1,
                          parser.problem_mark.column + 1, parser.problem ? parser.problem : "bad YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        return st;
    }
    qm_strmap canon; /* canonical name -> tensor; the model owns the keys */
    if (qm_strmap_init(&canon, c->model->n) != QM_OK) {
        st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        goto nomap;
    }
    for (size_t i = 0; i < c->model->n; i++)
        qm_strmap_put(&canon, c->model->t[i].canon, i, NULL);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        BAD("%s: not a scores file: expected a mapping with key qmoe_scores", path);
        goto done;
    }
    int version = 0;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        double x;
        if (key_is(&doc, p, "qmoe_scores")) {
            if (!num(v, &x) || x != 1) {
                BAD("%s: qmoe_scores: unsupported version (this qmoe reads 1)", path);
                goto done;
            }
            version = 1;
        } else if (key_is(&doc, p, "frequency") && v->type == YAML_MAPPING_NODE) {
            s->has_freq = 1;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *k = yaml_document_get_node(&doc, q->key), *row = yaml_document_get_node(&doc, q->value);
                double l;
                if (!num(k, &l) || l < 0 || l >= (double)L || l != floor(l) || row->type != YAML_SEQUENCE_NODE) {
                    BAD("%s: frequency: expected LAYER: [counts] with LAYER in 0..%lld", path, L - 1);
                    goto done;
                }
                long long n = row->data.sequence.items.top - row->data.sequence.items.start;
                if (n != E) {
                    BAD("%s: frequency: layer %.0f has %lld counts; the model has %lld experts", path, l, n, E);
                    goto done;
                }
                double sum = 0, *r = &s->freq[(size_t)l * (size_t)E];
                for (long long e = 0; e < n; e++) {
                    if (!num(yaml_document_get_node(&doc, row->data.sequence.items.start[e]), &r[e]) || r[e] < 0) {
                        BAD("%s: frequency: layer %.0f: count %lld is not a number >= 0", path, l, e);
                        goto done;
                    }
                    sum += r[e];
                }
                for (long long e = 0; e < n; e++)
                    r[e] = sum > 0 ? r[e] / sum : 0;
            }
        } else if (key_is(&doc, p, "importance") && v->type == YAML_MAPPING_NODE) {
            s->has_imp = 1;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *k = yaml_document_get_node(&doc, q->key), *m = yaml_document_get_node(&doc, q->value);
                double l;
                if (!num(k, &l) || l < 0 || l >= (double)L || l != floor(l) || m->type != YAML_MAPPING_NODE) {
                    BAD("%s: importance: expected LAYER: {ffn: COS, residual: COS} with LAYER in 0..%lld", path,
                        L - 1);
                    goto done;
                }
                for (yaml_node_pair_t *r = m->data.mapping.pairs.start; r < m->data.mapping.pairs.top; r++) {
                    double cos;
                    if (!num(yaml_document_get_node(&doc, r->value), &cos)) {
                        BAD("%s: importance: layer %.0f: a value is not a number", path, l);
                        goto done;
                    }
                    if (key_is(&doc, r, "ffn"))
                        s->imp_ffn[(size_t)l] = 1 - cos;
                    else if (key_is(&doc, r, "residual"))
                        s->imp_residual[(size_t)l] = 1 - cos;
                }
            }
        } else if (key_is(&doc, p, "outlier") && v->type == YAML_MAPPING_NODE) {
            size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
            s->has_outlier = n > 0;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
                yaml_node_t *k = yaml_document_get_node(&doc, q->key);
                double sc;
                size_t i;
                if (k->type != YAML_SCALAR_NODE || !num(yaml_document_get_node(&doc, q->value), &sc)) {
                    BAD("%s: outlier: expected CANONICAL-NAME: SCORE", path);
                    goto done;
                }
                if (qm_strmap_get(&canon, (const char *)k->data.scalar.value, &i))
                    c->outlier_w[i] = sc; /* names the model lacks are ignored */
            }
        }
    }
    if (!version)
        BAD("%s: not a scores file: no key qmoe_scores", path);
done:
    qm_strmap_free(&canon);
nomap:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
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
