/* ranks.c: `qmoe bench` on the ranks other than 0 of an MPI job, and the
 * steps rank 0 names to them (see ranks.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "matrix/ranks.h"
#include "model/gguf.h"
#include "runtime/score.h"

qm_measure_opts mx_measure_opts(const qm_matrix_opts *o)
{
    qm_measure_opts mo = qm_measure_opts_default();
    mo.ctx = o->ctx;
    mo.samples = o->samples;
    mo.damp = o->damp;
    mo.dist = o->dist;
    if (qm_dist_rank(o->dist) == 0) {
        mo.progress = o->progress;
        mo.progress_ctx = o->progress_ctx;
    }
    return mo;
}

qm_quant_opts mx_quant_opts(const qm_matrix_opts *o, const char *gguf)
{
    qm_quant_opts qo = qm_quant_opts_default();
    qo.no_engine_warning = 1; /* the bench's checkpoints are measured, not served */
    qo.ctx = o->ctx;
    qo.samples = o->samples;
    qo.damp = o->damp;
    qo.gguf = gguf;
    qo.dist = o->dist;
    return qo;
}

qm_eval_opts mx_eval_opts(const qm_matrix_opts *o)
{
    qm_eval_opts eo = qm_eval_opts_default();
    eo.ctx = o->ctx;
    eo.dist = o->dist;
    return eo;
}

/* Rank 0's string s (NULL travels as none) to every rank: *s on the
 * others (caller frees). */
static qm_status bcast_str(qm_dist *dist, const char *s, char **out, qm_diag *d)
{
    uint64_t n = s ? strlen(s) + 1 : 0;
    qm_status st = qm_dist_bcast(dist, &n, sizeof n, d);
    *out = NULL;
    if (st != QM_OK || n == 0)
        return st;
    char *b = qm_dist_rank(dist) ? malloc(n) : (char *)s;
    if (!b)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if ((st = qm_dist_bcast(dist, b, n, d)) != QM_OK || qm_dist_rank(dist) == 0) {
        if (b != s)
            free(b);
        return st;
    }
    b[n - 1] = 0;
    *out = b;
    return QM_OK;
}

qm_status mx_lead(const qm_matrix_opts *o, mx_step step, const char *a, const char *b, const char *c, qm_diag *d)
{
    if (qm_dist_size(o->dist) < 2)
        return QM_OK;
    int k = (int)step;
    char *none;
    qm_status st = qm_dist_bcast(o->dist, &k, sizeof k, d);
    const char *p[3] = {a, b, c};
    for (int i = 0; st == QM_OK && i < 3; i++)
        st = bcast_str(o->dist, p[i], &none, d);
    return st;
}

/* What a rank other than 0 holds for the whole bench. */
typedef struct follower {
    const qm_matrix_opts *o;
    qm_model *model;      /* the unquantized model */
    qm_net net;
    qm_tokens eval;       /* the evaluation tokens, as rank 0 truncates them */
    char *p[3];           /* the step's paths (ranks.h), owned */
    qm_diag *d;
} follower;

static qm_status f_scores(follower *f)
{
    qm_tokens t = {0};
    qm_scores sc = {0};
    const qm_matrix_opts *o = f->o;
    qm_status st = qm_tokens_for_model(f->model, o->calib, (size_t)o->samples * (size_t)o->ctx, (size_t)o->ctx, &t,
                                       f->d);
    if (st == QM_OK)
        st = qm_score_model_dist(&f->net, &t, o->ctx, o->dist, &sc, f->d);
    qm_scores_free(&sc);
    qm_tokens_free(&t);
    return st;
}

static qm_status f_measure(follower *f)
{
    qm_measure_opts mo = mx_measure_opts(f->o);
    qm_measure_report rep;
    return qm_measure(f->o->model, f->o->calib, NULL, &mo, &rep, f->d);
}

static qm_status f_quantize(follower *f)
{
    qm_quant_opts qo = mx_quant_opts(f->o, f->p[2]);
    qm_quant_report rep;
    if (!f->p[0])
        return qm_diag_fail(f->d, QM_EFORMAT, "rank %d: rank 0 named no plan to quantize", qm_dist_rank(f->o->dist));
    return qm_quantize(f->p[0], f->o->model, f->o->calib, f->p[1], &qo, &rep, f->d);
}

/* The checkpoint (or the GGUF file on the base's layout) against the base,
 * this rank's share of the positions. */
static qm_status f_eval(follower *f)
{
    const char *dir = f->p[0], *gguf = f->p[1];
    qm_model *qm = NULL;
    qm_net qnet = {0};
    qm_eval_opts eo = mx_eval_opts(f->o);
    qm_eval_result r = {0};
    if (!dir)
        return qm_diag_fail(f->d, QM_EFORMAT, "rank %d: rank 0 named no checkpoint to evaluate",
                            qm_dist_rank(f->o->dist));
    qm_status st = qm_model_open(gguf ? f->o->model : dir, &qm, f->d);
    if (st == QM_OK && gguf)
        st = qm_model_attach_gguf(qm, gguf, f->d);
    if (st == QM_OK)
        st = qm_net_open(qm, &qnet, f->d);
    if (st == QM_OK)
        st = qm_eval_ppl(&qnet, &f->net, &f->eval, &eo, &r, f->d);
    qm_model_close(qm);
    return st;
}

static qm_status (*const steps[MX_STEP_COUNT])(follower *) = {
    [MX_SCORES] = f_scores, [MX_MEASURE] = f_measure, [MX_QUANTIZE] = f_quantize, [MX_EVAL] = f_eval};

qm_status mx_follow(const qm_matrix_opts *o, qm_diag *d)
{
    follower f = {.o = o, .d = d};
    qm_status st = qm_model_open(o->model, &f.model, d);
    if (st == QM_OK)
        st = qm_net_open(f.model, &f.net, d);
    if (st == QM_OK)
        st = qm_tokens_for_model(f.model, o->eval, o->eval_tokens, 0, &f.eval, d);
    for (int k; st == QM_OK;) {
        if ((st = qm_dist_bcast(o->dist, &k, sizeof k, d)) != QM_OK || k == MX_END)
            break;
        for (int i = 0; st == QM_OK && i < 3; i++)
            st = bcast_str(o->dist, NULL, &f.p[i], d);
        if (st == QM_OK && (k <= MX_END || k >= MX_STEP_COUNT))
            st = qm_diag_fail(d, QM_EFORMAT, "rank %d: rank 0 named step %d, which is none", qm_dist_rank(o->dist), k);
        if (st == QM_OK)
            st = steps[k](&f);
        for (int i = 0; i < 3; i++) {
            free(f.p[i]);
            f.p[i] = NULL;
        }
    }
    qm_tokens_free(&f.eval);
    qm_model_close(f.model);
    return st;
}
