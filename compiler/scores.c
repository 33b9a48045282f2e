/* scores.c: the scores file (`qmoe score` writes it, qmoe(1) documents it)
 * as the compiler ranks by it, and outlier scores computed from weights.
 *
 *   qmoe_scores: 1
 *   model:      {architecture, layers, experts, config_sha256, tensors_sha256}
 *   calibration: {file, tokens, ctx}
 *   frequency:  {LAYER: [count, ...]}       per MoE layer, one count per expert
 *   importance: {LAYER: {ffn: cos, residual: cos}}  mean cosine similarity
 *   outlier:    {CANONICAL NAME: score}
 *
 * Ranks are "higher deserves more bits": frequency becomes each layer's
 * share of its choices (counts over the layer's sum), importance becomes
 * 1 - cosine.  A file with a model section (what `qmoe score` writes) must
 * match the model and be complete.  In a hand-written one, without it, any
 * section may be missing or name only some layers or linears; a selection
 * that needs a missing one is an error, except outlier, which is then
 * computed from the weights (for each input column, max |w| over mean |w|;
 * the largest column ratio).  Every value is finite and in its range, and
 * every error names file:line:col.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/internal.h"
#include "model/dtype.h"

#define BAD(...) (st = qm_diag_fail(c->d, QM_EFORMAT, __VA_ARGS__))
/* An error at node n of the file: path:line:col: message. */
#define BAD_AT(n, fmt, ...) \
    (st = qm_diag_fail(c->d, QM_EFORMAT, "%s:%u:%u: " fmt, path, (n)->line, (n)->col, __VA_ARGS__))

/* What a file that names its model must hold: every section, and in them
 * every MoE layer and every linear the model has.  Without a model section
 * (a hand-written file) a section may name only some layers and linears. */
typedef struct seen {
    unsigned char *freq, *ffn, *res; /* (layers) */
    unsigned char *outlier;          /* (model->n) */
    const qm_ynode *model;           /* the model section, or NULL */
    double *fsum;                    /* (layers) each frequency row's sum of counts */
    long long tokens;                /* calibration: tokens, -1 when not given */
} seen;

/* model: {architecture, layers, experts, config_sha256, tensors_sha256}
 * must describe this model.  Files written before the hashes were recorded
 * are checked by the first three alone, with a warning. */
static qm_status read_model(qm_cstate *c, const qm_ynode *v)
{
    const char *path = c->sc.path;
    const qm_model *m = c->model;
    qm_status st = QM_OK;
    if (v->kind != QM_YMAP)
        return BAD_AT(v, "model: expected a mapping (architecture, layers, experts, %s)", "config_sha256, tensors_sha256");
    char cfg[65], ten[65];
    if (qm_sha256_file(m->config_path, cfg, c->d) != QM_OK)
        return QM_EIO;
    qm_model_tensors_sha256(m, ten);
    int hashes = 0;
    for (size_t j = 0; j < v->n && st == QM_OK; j++) {
        const char *key = v->pair[j].key->text, *str = qm_yin_str(v->pair[j].val);
        const qm_ynode *x = v->pair[j].val;
        long long n;
        if (strcmp(key, "architecture") == 0) {
            if (!str || strcmp(str, m->arch->name) != 0)
                BAD_AT(x, "model: the scores were made for architecture '%s', not %s's %s", str ? str : "?", m->dir,
                       m->arch->name);
        } else if (strcmp(key, "layers") == 0 || strcmp(key, "experts") == 0) {
            long long want = key[0] == 'l' ? m->cfg.layers : m->cfg.experts;
            if (!qm_yin_int(x, &n) || n != want)
                BAD_AT(x, "model: %s: the scores were made for another model (%s has %lld)", key, m->dir, want);
        } else if (strcmp(key, "config_sha256") == 0 || strcmp(key, "tensors_sha256") == 0) {
            const char *want = key[0] == 'c' ? cfg : ten;
            hashes++;
            if (!str || strcmp(str, want) != 0)
                BAD_AT(x, "model: %s: the scores were made for another model (%.12s..., %s has %.12s...)", key,
                       str ? str : "?", m->dir, want);
        } else {
            BAD_AT(v->pair[j].key, "model: unknown key '%s'", key);
        }
    }
    if (st == QM_OK && hashes < 2)
        qm_diag_warn(c->d, "%s: written before scores recorded config_sha256 and tensors_sha256: matched with %s "
                     "by architecture, layers and experts only (run qmoe score again to record them)", path, m->dir);
    return st;
}

/* The sections of root (a mapping) into s and c->outlier_w; canon maps the
 * model's canonical names to its tensors. */
static qm_status read_sections(qm_cstate *c, const qm_ynode *root, const qm_strmap *canon, seen *sn)
{
    qm_cscores *s = &c->sc;
    const qm_model *md = c->model;
    const char *path = s->path;
    long long L = s->layers, E = s->experts;
    qm_status st = QM_OK;
    int version = 0;
    for (size_t j = 0; j < root->n && st == QM_OK; j++) {
        const char *key = root->pair[j].key->text;
        const qm_ynode *v = root->pair[j].val;
        int section = strcmp(key, "frequency") == 0 || strcmp(key, "importance") == 0 || strcmp(key, "outlier") == 0;
        if (section && v->kind != QM_YMAP)
            return BAD_AT(v, "%s: expected a mapping", key);
        if (strcmp(key, "qmoe_scores") == 0) {
            long long x;
            if (!qm_yin_int(v, &x) || x != 1)
                return BAD("%s: qmoe_scores: unsupported version (this qmoe reads 1)", path);
            version = 1;
        } else if (strcmp(key, "model") == 0) {
            sn->model = v;
            st = read_model(c, v);
        } else if (strcmp(key, "calibration") == 0) {
            if (v->kind != QM_YMAP)
                return BAD_AT(v, "%s: expected a mapping", key);
            const qm_ynode *t = qm_yin_get(v, "tokens");
            if (t && (!qm_yin_int(t, &sn->tokens) || sn->tokens < 0))
                return BAD_AT(t, "calibration: tokens is '%.40s', not a count", qm_yin_str(t) ? qm_yin_str(t) : "?");
        } else if (strcmp(key, "frequency") == 0) {
            s->has_freq = 1;
            for (size_t q = 0; q < v->n; q++) {
                const qm_ynode *row = v->pair[q].val;
                long long l;
                if (!qm_yin_int(v->pair[q].key, &l) || l < 0 || l >= L || row->kind != QM_YSEQ)
                    return BAD_AT(v->pair[q].key, "frequency: expected LAYER: [counts] with LAYER in 0..%lld", L - 1);
                if (!md->is_moe[l])
                    return BAD_AT(v->pair[q].key, "frequency: layer %lld is not an MoE layer", l);
                long long n = (long long)row->n;
                if (n != E)
                    return BAD_AT(row, "frequency: layer %lld has %lld counts; the model has %lld experts", l, n, E);
                double sum = 0, *r = &s->freq[(size_t)l * (size_t)E];
                for (long long e = 0; e < n; e++) {
                    if (!qm_yin_real(row->item[e], &r[e]) || !isfinite(r[e]) || r[e] < 0)
                        return BAD_AT(row->item[e], "frequency: layer %lld: the count of expert %lld is '%.40s', not a "
                                      "finite number >= 0", l, e, qm_yin_str(row->item[e]) ? qm_yin_str(row->item[e]) : "?");
                    sum += r[e];
                }
                for (long long e = 0; e < n; e++)
                    r[e] = sum > 0 ? r[e] / sum : 0;
                sn->freq[l] = 1;
                sn->fsum[l] = sum;
            }
        } else if (strcmp(key, "importance") == 0) {
            s->has_imp = 1;
            for (size_t q = 0; q < v->n; q++) {
                const qm_ynode *m = v->pair[q].val;
                long long l;
                if (!qm_yin_int(v->pair[q].key, &l) || l < 0 || l >= L || m->kind != QM_YMAP)
                    return BAD_AT(v->pair[q].key, "importance: expected LAYER: {ffn: COS, residual: COS} with LAYER "
                                  "in 0..%lld", L - 1);
                if (!md->is_moe[l])
                    return BAD_AT(v->pair[q].key, "importance: layer %lld is not an MoE layer", l);
                for (size_t r = 0; r < m->n; r++) {
                    double cos;
                    const char *k = m->pair[r].key->text;
                    int ffn = strcmp(k, "ffn") == 0;
                    if (!ffn && strcmp(k, "residual") != 0)
                        return BAD_AT(m->pair[r].key, "importance: layer %lld: unknown key '%s' (ffn or residual)", l, k);
                    /* a mean cosine similarity */
                    if (!qm_yin_real(m->pair[r].val, &cos) || !(cos >= -1 && cos <= 1))
                        return BAD_AT(m->pair[r].val, "importance: layer %lld: %s is '%s', not a cosine in [-1, 1]",
                                      l, k, qm_yin_str(m->pair[r].val) ? qm_yin_str(m->pair[r].val) : "?");
                    (ffn ? s->imp_ffn : s->imp_residual)[l] = 1 - cos;
                    (ffn ? sn->ffn : sn->res)[l] = 1;
                }
            }
        } else if (strcmp(key, "outlier") == 0) {
            s->has_outlier = v->n > 0;
            for (size_t q = 0; q < v->n; q++) {
                double sc;
                size_t i;
                const char *name = v->pair[q].key->text;
                if (!qm_strmap_get(canon, name, &i) || !qm_parts[md->t[i].part].linear || md->t[i].ndim != 2)
                    return BAD_AT(v->pair[q].key, "outlier: '%s' is not a linear of %s", name, md->dir);
                /* max |w| over mean |w| of a column: 0 (all zero) or 1 .. rows */
                if (!qm_yin_real(v->pair[q].val, &sc) || !(sc >= 0 && sc <= (double)md->t[i].shape[0]))
                    return BAD_AT(v->pair[q].val, "outlier: '%s' is '%s', not a score in [0, %llu]", name,
                                  qm_yin_str(v->pair[q].val) ? qm_yin_str(v->pair[q].val) : "?",
                                  (unsigned long long)md->t[i].shape[0]);
                c->outlier_w[i] = sc;
                sn->outlier[i] = 1;
            }
        } else {
            return BAD_AT(root->pair[j].key, "unknown key '%s' (qmoe_scores, model, calibration, frequency, "
                          "importance, outlier)", key);
        }
    }
    if (st == QM_OK && !version)
        BAD("%s: not a scores file: no key qmoe_scores", path);
    return st;
}

/* A file that names its model has every section whole (a file cut short
 * loses some: the first missing piece is the error), and each MoE layer's
 * counts are its calibration tokens' top-k choices, no more, no fewer. */
static qm_status complete(qm_cstate *c, const seen *sn)
{
    const qm_model *m = c->model;
    const char *path = c->sc.path;
    qm_status st = QM_OK;
    if (!sn->model || m->n_moe == 0)
        return QM_OK;
    for (long long l = 0; l < m->cfg.layers && st == QM_OK; l++)
        if (m->is_moe[l] && !(sn->freq[l] && sn->ffn[l] && sn->res[l]))
            BAD("%s: MoE layer %lld has no %s scores; the file is incomplete (cut short?)", path, l,
                !sn->freq[l] ? "frequency" : !sn->ffn[l] ? "importance ffn" : "importance residual");
    double choices = (double)sn->tokens * (double)m->cfg.top_k;
    for (long long l = 0; l < m->cfg.layers && st == QM_OK && sn->tokens >= 0; l++)
        if (m->is_moe[l] && sn->fsum[l] != choices)
            BAD("%s: frequency: the counts of layer %lld add up to %.0f, but %lld calibration tokens routed to "
                "top-%lld make %.0f", path, l, sn->fsum[l], sn->tokens, m->cfg.top_k, choices);
    for (size_t i = 0; i < m->n && st == QM_OK; i++)
        if (qm_parts[m->t[i].part].linear && m->t[i].ndim == 2 && !m->t[i].bits && !sn->outlier[i])
            BAD("%s: no outlier score for '%s'; the file is incomplete (cut short?)", path, m->t[i].canon);
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
    size_t L1 = (size_t)L + 1;
    seen sn = {calloc(L1, 1), calloc(L1, 1), calloc(L1, 1), calloc(c->model->n + 1, 1), NULL,
               calloc(L1, sizeof *sn.fsum), -1};
    if (st == QM_OK && (!sn.freq || !sn.ffn || !sn.res || !sn.outlier || !sn.fsum))
        st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = read_sections(c, root, &canon, &sn);
    if (st == QM_OK)
        st = complete(c, &sn);
    free(sn.freq);
    free(sn.ffn);
    free(sn.res);
    free(sn.outlier);
    free(sn.fsum);
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
 * weight the selection ranks: on a full checkpoint that is its size in I/O.
 * A weight that is infinite or NaN has no score to rank by: the failure is
 * diagnosed once, kept in c->outlier_st for the caller, and NAN returned. */
double qm_c_outlier(qm_cstate *c, size_t i)
{
    const qm_tensor *t = &c->model->t[i];
    if (c->sc.has_outlier || c->outlier_done[i]) /* a file's outlier section is complete */
        return c->outlier_w[i];
    c->outlier_done[i] = 1;
    if (t->bits || t->ndim != 2 || !t->st->data || c->outlier_st != QM_OK)
        return NAN;
    float *w = malloc((size_t)t->numel * sizeof *w);
    if (!w) {
        c->outlier_st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
        return NAN;
    }
    const qm_st_file *f = c->model->ckpt->files[t->file];
    qm_status st = qm_st_check_live(f, t->st, c->d);
    if (st == QM_OK)
        st = qm_st_to_f32(f->path, t->st, w, c->d);
    if (st == QM_OK)
        c->outlier_w[i] = qm_outlier_score(w, (int)t->shape[0], (int)t->shape[1]);
    else if (st != QM_EUNSUPPORTED) /* weights of other types have no outlier score */
        c->outlier_st = st;
    free(w);
    return c->outlier_w[i];
}

int qm_c_have(qm_cstate *c, qm_scorer s, const qm_source *src, qm_span at)
{
    if (s == QM_SCORER_MEASURED) {
        if (!c->ms)
            qm_source_diag(c->d, QM_SEV_ERROR, src, at, "selecting by measured needs a measure file (--measure FILE; "
                           "`qmoe measure` writes one)");
        return c->ms != NULL;
    }
    int have = s == QM_SCORER_OUTLIER ? 1 : s == QM_SCORER_FREQUENCY ? c->sc.has_freq : c->sc.has_imp;
    if (!have)
        qm_source_diag(c->d, QM_SEV_ERROR, src, at, "selecting by %s needs a scores file with '%s' (--scores FILE; `qmoe score` writes one)",
                       qm_scorer_name(s), s == QM_SCORER_FREQUENCY ? "frequency" : "importance");
    return have;
}
