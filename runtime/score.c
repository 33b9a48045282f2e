/* score.c: expert frequency, block importance and linear outlier scores. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/score.h"
#include "runtime/sidefile.h"
#include "runtime/xfer.h"

typedef struct acc {
    qm_scores *s;
    double *cos_ffn, *cos_res; /* (layers) sums */
    size_t *n;                  /* (layers) tokens */
    /* a distributed run: each token's cosines kept instead of summed, for
     * rank 0 to sum in token order; NULL on one process */
    double *v_ffn, *v_res;      /* (layers, tokens) */
    size_t vtok;                /* tokens of this rank */
} acc;

static void on_routing(void *ctx, int layer, const int *idx, const float *w, int T, int k)
{
    acc *a = ctx;
    double *row = a->s->freq + (size_t)layer * a->s->experts;
    for (size_t i = 0; i < (size_t)T * k; i++)
        row[idx[i]] += 1;
}

static double cosine(const float *x, const float *y, int d)
{
    double xy = 0, xx = 0, yy = 0;
    for (int i = 0; i < d; i++) {
        xy += (double)x[i] * y[i];
        xx += (double)x[i] * x[i];
        yy += (double)y[i] * y[i];
    }
    return xx > 0 && yy > 0 ? xy / sqrt(xx * yy) : 0;
}

static void on_block(void *ctx, int layer, const float *n2, const float *ffn, const float *h,
                     const float *out, int T, int d)
{
    acc *a = ctx;
    for (int t = 0; t < T; t++) {
        size_t o = (size_t)t * d;
        if (a->v_ffn) {
            size_t at = (size_t)layer * a->vtok + a->n[layer] + (size_t)t;
            a->v_ffn[at] = cosine(n2 + o, ffn + o, d);
            a->v_res[at] = cosine(h + o, out + o, d);
            continue;
        }
        a->cos_ffn[layer] += cosine(n2 + o, ffn + o, d);
        a->cos_res[layer] += cosine(h + o, out + o, d);
    }
    a->n[layer] += (size_t)T;
}

void qm_scores_free(qm_scores *s)
{
    free(s->freq);
    free(s->imp_ffn);
    free(s->imp_residual);
    for (size_t i = 0; i < s->n_outlier; i++)
        free(s->outlier_name[i]);
    free(s->outlier_name);
    free(s->outlier);
    memset(s, 0, sizeof *s);
}

static qm_status outliers(const qm_model *m, qm_scores *s, qm_diag *d)
{
    s->outlier_name = calloc(m->n, sizeof *s->outlier_name);
    s->outlier = calloc(m->n, sizeof *s->outlier);
    if (!s->outlier_name || !s->outlier)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        const qm_st_tensor *t = m->t[i].st;
        if (!qm_parts[m->t[i].part].linear || m->t[i].ndim != 2)
            continue;
        if (m->t[i].bits)
            return qm_diag_fail(d, QM_EUNSUPPORTED, "'%s' is GPTQ-packed: score the unquantized model", t->name);
        if (qm_st_check_live(m->ckpt->files[m->t[i].file], t, d) != QM_OK)
            return QM_EIO;
        float *w = malloc((size_t)t->numel * sizeof *w);
        if (!w)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        qm_status st = qm_st_to_f32(m->ckpt->files[m->t[i].file]->path, t, w, d);
        if (st != QM_OK) {
            free(w);
            return st;
        }
        s->outlier[s->n_outlier] = qm_outlier_score(w, (int)t->shape[0], (int)t->shape[1]);
        free(w);
        if (!isfinite(s->outlier[s->n_outlier]))
            return qm_diag_fail(d, QM_EINVAL, "'%s': outlier score %g is not finite", t->name, s->outlier[s->n_outlier]);
        if (!(s->outlier_name[s->n_outlier++] = qm_strdup(m->t[i].canon)))
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    return QM_OK;
}

/* A rank's share of the counts and cosines, as it travels: freq (layers x
 * experts), then per layer its token count and each token's two cosines. */
static qm_status share_put(const acc *a, size_t L, size_t E, void **buf, size_t *n, qm_diag *d)
{
    qm_xfer x = {0};
    qm_xfer_put(&x, a->s->freq, L * E * sizeof *a->s->freq);
    for (size_t l = 0; l < L; l++) {
        qm_xfer_put(&x, &a->n[l], sizeof a->n[l]);
        qm_xfer_put(&x, a->v_ffn + l * a->vtok, a->n[l] * sizeof(double));
        qm_xfer_put(&x, a->v_res + l * a->vtok, a->n[l] * sizeof(double));
    }
    return qm_xfer_done(&x, buf, n, d);
}

/* Rank 0: add one rank's share (rank order is token order) to the sums. */
static int share_add(acc *a, size_t L, size_t E, void *buf, size_t n)
{
    qm_xfer x = {.b = buf, .n = n};
    for (size_t i = 0; i < L * E; i++) {
        double f;
        if (qm_xfer_get(&x, &f, sizeof f))
            a->s->freq[i] += f;
    }
    for (size_t l = 0; l < L && !x.bad; l++) {
        size_t k = 0;
        qm_xfer_get(&x, &k, sizeof k);
        if (x.bad || k > (x.n - x.at) / (2 * sizeof(double)))
            return 0;
        const char *v = x.b + x.at;
        for (size_t t = 0; t < k; t++) {
            double c;
            memcpy(&c, v + t * sizeof c, sizeof c);
            a->cos_ffn[l] += c;
        }
        for (size_t t = 0; t < k; t++) {
            double c;
            memcpy(&c, v + (k + t) * sizeof c, sizeof c);
            a->cos_res[l] += c;
        }
        x.at += 2 * k * sizeof(double);
        a->n[l] += k;
    }
    return !x.bad && x.at == x.n;
}

/* The whole windows of ctx in groups of up to 8, then the remainder as
 * one shorter window, into g; returns their number. */
static size_t make_groups(const qm_tokens *calib, int ctx, qm_batch *g)
{
    size_t n = 0;
    for (size_t start = 0; start < calib->n; n++) {
        size_t left = calib->n - start;
        int S = left < (size_t)ctx ? (int)left : ctx;
        int B = S == ctx ? (int)(left / (size_t)ctx) : 1;
        B = B > 8 ? 8 : B;
        g[n] = (qm_batch){calib->ids + start, B, S};
        start += (size_t)B * S;
    }
    return n;
}

qm_status qm_score_model(const qm_net *net, const qm_tokens *calib, int ctx, qm_scores *s, qm_diag *d)
{
    return qm_score_model_dist(net, calib, ctx, NULL, s, d);
}

qm_status qm_score_model_dist(const qm_net *net, const qm_tokens *calib, int ctx, qm_dist *dist, qm_scores *s,
                              qm_diag *d)
{
    const qm_model *m = net->m;
    memset(s, 0, sizeof *s);
    s->layers = m->cfg.layers;
    s->experts = m->cfg.experts;
    s->ctx = ctx;
    size_t L = (size_t)s->layers;
    s->freq = calloc(L * (size_t)s->experts, sizeof *s->freq);
    s->imp_ffn = calloc(L, sizeof *s->imp_ffn);
    s->imp_residual = calloc(L, sizeof *s->imp_residual);
    acc a = {s, calloc(L, sizeof(double)), calloc(L, sizeof(double)), calloc(L, sizeof(size_t)), NULL, NULL, 0};
    qm_status st = QM_OK;
    if (!s->freq || !s->imp_ffn || !s->imp_residual || !a.cos_ffn || !a.cos_res || !a.n)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK && calib->n < 2)
        st = qm_diag_fail(d, QM_EINVAL, "%zu calibration tokens: need at least 2", calib->n);
    qm_fwd_hooks hk = {.ctx = &a, .routing = on_routing, .block = on_block};
    /* all the groups through the model layer by layer; with ranks, rank r
     * runs the groups that start in its share [r, r+1) x tokens / ranks */
    qm_batch *g = st == QM_OK ? malloc((calib->n / (size_t)ctx + 1) * sizeof *g) : NULL;
    size_t n = 0, lo = 0, hi = 0, E = (size_t)s->experts;
    int rank = qm_dist_rank(dist), ranks = qm_dist_size(dist);
    if (st == QM_OK && !g)
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        n = make_groups(calib, ctx, g);
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)(g[i].tokens - calib->ids), BS = (size_t)g[i].B * g[i].S;
        s->tokens += BS;
        if (at * (size_t)ranks < (size_t)rank * calib->n)
            lo = i + 1;
        if (at * (size_t)ranks < (size_t)(rank + 1) * calib->n) {
            hi = i + 1;
            if (i >= lo)
                a.vtok += BS;
        }
    }
    if (st == QM_OK && ranks > 1 && (!(a.v_ffn = malloc((L * a.vtok + 1) * sizeof *a.v_ffn)) ||
                                     !(a.v_res = malloc((L * a.vtok + 1) * sizeof *a.v_res))))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu tokens' cosines", a.vtok);
    if (st == QM_OK && (ranks == 1 || hi > lo))
        st = qm_net_run(net, g + (ranks > 1 ? lo : 0), ranks > 1 ? hi - lo : n, 0, &hk, NULL, d);
    free(g);
    if (ranks > 1 && st == QM_OK) { /* rank 0 sums every rank's share in rank (= token) order */
        void *buf = NULL;
        size_t len = 0;
        if (rank) {
            if ((st = share_put(&a, L, E, &buf, &len, d)) == QM_OK)
                st = qm_dist_post(dist, 0, 0, buf, len, d);
            if (st == QM_OK)
                st = qm_dist_flush(dist, d);
        } else if ((st = share_put(&a, L, E, &buf, &len, d)) == QM_OK) {
            memset(a.n, 0, L * sizeof *a.n);
            memset(s->freq, 0, L * E * sizeof *s->freq);
            if (!share_add(&a, L, E, buf, len))
                st = qm_diag_fail(d, QM_EFORMAT, "rank 0's own share of the scores is damaged");
            for (int k = 1; st == QM_OK && k < ranks; k++) {
                free(buf);
                buf = NULL;
                if ((st = qm_dist_recv(dist, k, 0, &buf, &len, d)) == QM_OK && !share_add(&a, L, E, buf, len))
                    st = qm_diag_fail(d, QM_EFORMAT, "the scores from rank %d are damaged (%zu bytes)", k, len);
            }
            free(buf);
        }
        free(a.v_ffn);
        free(a.v_res);
        if (rank) { /* rank 0 finishes alone */
            free(a.cos_ffn);
            free(a.cos_res);
            free(a.n);
            qm_scores_free(s);
            return st;
        }
    }
    for (size_t l = 0; st == QM_OK && l < L; l++) {
        int moe = m->is_moe[l] && a.n[l];
        s->imp_ffn[l] = moe ? a.cos_ffn[l] / a.n[l] : NAN;
        s->imp_residual[l] = moe ? a.cos_res[l] / a.n[l] : NAN;
        if (moe && !(isfinite(s->imp_ffn[l]) && isfinite(s->imp_residual[l])))
            st = qm_diag_fail(d, QM_EINVAL, "layer %zu: importance (ffn %g, residual %g) is not finite", l,
                              s->imp_ffn[l], s->imp_residual[l]);
    }
    if (st == QM_OK)
        st = outliers(m, s, d);
    free(a.cos_ffn);
    free(a.cos_res);
    free(a.n);
    if (st != QM_OK)
        qm_scores_free(s);
    return st;
}

typedef struct scores_out {
    const qm_scores *s;
    const qm_model *m;
    const char *calib_path;
    qm_side_id id; /* the model's identity (compiler/scores.c checks it) */
} scores_out;

static qm_status put_scores(const void *ctx, FILE *f, qm_diag *d)
{
    const scores_out *o = ctx;
    const qm_scores *s = o->s;
    const qm_model *m = o->m;
    fprintf(f, "# qmoe scores: written by `qmoe score`, read by `qmoe compile --scores`.\n");
    qm_yaml *y = qm_side_begin(f, "qmoe_scores", m, &o->id, o->calib_path, s->tokens, s->ctx);
    if (!y)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_yaml_str(y, "frequency");
    qm_yaml_map(y);
    for (long long l = 0; l < s->layers; l++) {
        if (!m->is_moe[l])
            continue;
        qm_yaml_int(y, l);
        qm_yaml_flow_seq(y);
        for (long long e = 0; e < s->experts; e++)
            qm_yaml_real(y, s->freq[l * s->experts + e], 0);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    qm_yaml_str(y, "importance");
    qm_yaml_map(y);
    for (long long l = 0; l < s->layers; l++) {
        if (!m->is_moe[l])
            continue;
        qm_yaml_int(y, l);
        qm_yaml_flow_map(y);
        qm_yaml_str(y, "ffn");
        qm_yaml_real(y, s->imp_ffn[l], 6);
        qm_yaml_str(y, "residual");
        qm_yaml_real(y, s->imp_residual[l], 6);
        qm_yaml_close(y);
    }
    qm_yaml_close(y);
    qm_yaml_str(y, "outlier");
    qm_yaml_map(y);
    for (size_t i = 0; i < s->n_outlier; i++) {
        qm_yaml_str(y, s->outlier_name[i]);
        qm_yaml_real(y, s->outlier[i], 4);
    }
    qm_yaml_close(y);
    return qm_yaml_end(y, d);
}

qm_status qm_scores_write(const qm_scores *s, const qm_model *m, const char *calib_path,
                          const char *path, qm_diag *d)
{
    scores_out o = {s, m, calib_path, {"", ""}};
    qm_status st = qm_side_id_get(m, &o.id, d);
    return st == QM_OK ? qm_afile_write(path, put_scores, &o, 1, d) : st;
}
