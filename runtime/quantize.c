/* quantize.c: the quantization pipeline (see quantize.h): calibration
 * passes, GPTQ of each linear, progress saved for resuming, and the run's
 * records (plan.yaml, quant_log.yaml).  Each finished layer goes to the
 * output writers (qwriter.h): "gptq", "fake-quant" with --fake-quant and
 * "gguf" with --format gguf.  Under mpirun the routed experts go to
 * quantize_dist.c. */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/plan.h"
#include "model/tokens.h"
#include "runtime/forward.h"
#include "runtime/calib.h"
#include "runtime/gptq.h"
#include "model/engine.h"
#include "runtime/net.h"
#include "runtime/quantize.h"
#include "runtime/qwriter.h"
#include "runtime/quantize_run.h"
#include "runtime/states.h"

/* ---- the linear being quantized ------------------------------------------------------------ */

/* %.6g as a YAML float that YAML 1.1 readers (PyYAML) take for one too:
 * an exponent needs a '.' before it there ("1.0e-05", not "1e-05"). */
static void log_real(char *b, size_t size, double v)
{
    int n = snprintf(b, size, "%.6g", v);
    char *e = strchr(b, 'e');
    if (e && !memchr(b, '.', (size_t)(e - b)) && (size_t)n + 2 < size) {
        memmove(e + 2, e, strlen(e) + 1);
        memcpy(e, ".0", 2);
    }
}

/* One quant_log.yaml entry, a flow mapping on one line; the names are
 * quoted where YAML needs it (module names hold '[' and ']', which a plain
 * scalar in a flow mapping cannot). */
static qm_status log_entry(run *r, const char *name, const char *module, int bits, long long tokens,
                           const char *fallback, const char *err, double damp, double seconds)
{
    char d[32];
    log_real(d, sizeof d, damp);
    qm_status st = QM_OK;
    fputs("  - {name: ", r->log);
    st = qm_yaml_put_flow_str(r->log, name, r->d);
    if (st == QM_OK) {
        fputs(", module: ", r->log);
        st = qm_yaml_put_flow_str(r->log, module, r->d);
    }
    if (st == QM_OK) {
        fprintf(r->log, ", bits: %d, tokens: %lld, fallback: ", bits, tokens);
        st = qm_yaml_put_flow_str(r->log, fallback, r->d);
    }
    if (st == QM_OK)
        fprintf(r->log, ", relative_error: %s, damp: %s, seconds: %.3f}\n", err, d, seconds);
    if (st != QM_OK)
        qm_diag_note(r->d, "while logging '%s'", name);
    return st;
}

/* GPTQ's settings for planned tensor i: the plan's, as the writers' grids need them. */
qm_qspec qz_plan_spec(const run *r, size_t i)
{
    if (r->specs) /* a rank without writers: rank 0's */
        return r->specs[i];
    const qm_plan_tensor *pt = r->by_tensor[i];
    qm_qspec s = {.bits = pt->bits, .group = pt->group, .sym = pt->sym, .act_order = pt->act_order,
                  .damp = r->o->damp, .fp16_scale = r->o->gguf != NULL};
    for (int k = 0; k < r->n_writers; k++)
        if (r->writers[k].ops->spec)
            r->writers[k].ops->spec(r->writers[k].job, i, &s);
    return s;
}

/* A finished linear, planned tensor ti, goes to the layer's list and the
 * writers, its report and log line: from this process's GPTQ or from
 * another rank's (then, like its log figures, received).  Takes res. */
qm_status qz_take_linear(run *r, size_t ti, qm_qresult *res, long long tokens, const char *fallback, double error,
                             double seconds)
{
    if (r->n_done == r->cap_done) {
        size_t cap = r->cap_done ? 2 * r->cap_done : 64;
        qwriter_linear *nd = realloc(r->done, cap * sizeof *nd);
        if (!nd) {
            qm_qresult_free(res);
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        }
        r->done = nd;
        r->cap_done = cap;
    }
    const qm_plan_tensor *pt = r->by_tensor[ti];
    qwriter_linear *dn = &r->done[r->n_done];
    *dn = (qwriter_linear){ti, pt, *res};
    memset(res, 0, sizeof *res);
    double damp = dn->r.damp;
    r->n_done++;
    /* writers with a linear step take it now (packed and spooled); when every
     * writer has one, the result goes at once, else it waits for the layer */
    int all = 1;
    qm_status st;
    for (int i = 0; i < r->n_writers; i++) {
        qwriter *wr = &r->writers[i];
        if (!wr->ops->linear)
            all = 0;
        else if ((st = wr->ops->linear(wr, r->w.layer, dn)) != QM_OK)
            return st;
    }
    if (all)
        qm_qresult_free(&dn->r);
    else if (!r->o->gguf) { /* the GGUF writer checks its blocks against the dequantized copy */
        free(dn->r.deq);
        dn->r.deq = NULL;
    }
    r->rep->tensors_quantized++;
    if (strcmp(fallback, "none") != 0)
        r->rep->fallbacks++;
    char err[32];
    if (isnan(error))
        snprintf(err, sizeof err, "null");
    else
        log_real(err, sizeof err, error);
    if ((st = log_entry(r, r->m->t[ti].st->name, r->m->t[ti].canon, pt->bits, tokens, fallback, err, damp,
                        seconds)) != QM_OK)
        return st;
    say(r, "\rlayer %d  %-28s tokens %-7lld error %s%s", r->w.layer, r->m->t[ti].canon, tokens, err,
        strcmp(fallback, "none") ? "  (fallback)" : "");
    return QM_OK;
}

/* Quantize linear `lin` (part, expert e) per the plan with Hessian H
 * (in, in, accumulated X^T X over `tokens` rows; NULL for round-to-nearest)
 * and replace its weights by the dequantized ones.  `last`: no later linear
 * uses H, so GPTQ works in it (the caller still frees it); otherwise in a
 * copy.  X (nx, in), when not NULL, are the rows H was built from: the
 * relative error's denominator ||W X^T||^2 comes from them when nx < in
 * (fewer FLOPs than tr(W H W^T)).  Its numerator is GPTQ's own loss.  The
 * result goes to qz_take_linear(), or with r->pack into the package for rank
 * 0 (the dequantized copy only when a writer there needs it). */
static qm_status quant_linear(run *r, qm_lin *lin, qm_part part, int e, float *H, int last, long long tokens,
                              const char *fallback, const float *X, int nx)
{
    long ti = qm_model_tensor(r->m, r->w.layer, part, e);
    if (ti < 0 || !lin->w)
        return QM_OK;
    const qm_plan_tensor *pt = r->by_tensor[ti];
    if (!pt || !pt->bits)
        return QM_OK;
    qm_qresult res = {0};
    qm_qspec s = qz_plan_spec(r, (size_t)ti);
    int in = lin->in;
    double t0 = qm_clock(), error = NAN;
    qm_status st = H ? qm_calib_gptq(lin->w, lin->out, in, H, last, tokens, X, nx, &s, &res, &error, r->d)
                     : qm_rtn(lin->w, lin->out, in, &s, &res, r->d);
    double seconds = qm_clock() - t0;
    if (st != QM_OK) {
        qm_diag_note(r->d, "while quantizing '%s'", r->m->t[ti].st->name);
        return st;
    }
    if (H && !isfinite(error)) { /* a NaN is an error, never a number in the log */
        qm_qresult_free(&res);
        return qm_diag_fail(r->d, QM_EINVAL, "'%s': the relative error of its quantization is %g (or memory ran out)",
                            r->m->t[ti].st->name, error);
    }
    memcpy(lin->w, res.deq, (size_t)lin->out * in * sizeof *lin->w);
    if (!r->pack)
        return qz_take_linear(r, (size_t)ti, &res, tokens, fallback, error, seconds);
    packed_head h = {(uint64_t)ti, tokens, {0}, error, seconds, s.super};
    snprintf(h.fallback, sizeof h.fallback, "%s", fallback);
    qm_xfer_put(r->pack, &h, sizeof h);
    qm_xfer_put_qresult(r->pack, &res, s.super, r->o->fake_quant || r->o->gguf);
    qm_qresult_free(&res);
    return r->pack->oom ? qm_diag_fail(r->d, QM_ENOMEM, "out of memory packing '%s' for rank 0",
                                       r->m->t[ti].st->name) : QM_OK;
}

/* ---- passes over the calibration windows ------------------------------------------------------ */


/* Rows of the FFN's input into *X (caller frees): those the router sent to
 * expert e, or every row (e < 0), in token order; *n: how many. */
static qm_status gather_rows(run *r, const qm_calib_ffn *cap, int e, float **X, int *n)
{
    qm_calib c = calib_of(r);
    size_t cnt = qm_calib_count(&c, cap, e), D = (size_t)r->m->cfg.hidden;
    if (!(*X = malloc((cnt ? cnt : 1) * D * sizeof **X)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %zu x %zu calibration rows", cnt, D);
    if ((*n = qm_calib_routed(&c, cap, e, *X, NULL, r->d)) < 0) {
        free(*X);
        *X = NULL;
        return QM_EIO;
    }
    return QM_OK;
}

/* H of one part's inputs over all windows; caller frees *H. */
static qm_status hessian_of(run *r, qm_part part, int in, float **H, long long *rows)
{
    qm_calib c = calib_of(r);
    return qm_calib_hessian(&c, part, in, H, rows, r->d);
}

static qm_status attention(run *r)
{
    qm_layer_w *w = &r->w;
    float *H;
    long long n;
    qm_status st = hessian_of(r, QM_PART_Q, w->q.in, &H, &n);
    if (st != QM_OK)
        return st;
    st = quant_linear(r, &w->q, QM_PART_Q, -1, H, 0, n, "none", NULL, 0);
    if (st == QM_OK)
        st = quant_linear(r, &w->k, QM_PART_K, -1, H, 0, n, "none", NULL, 0);
    if (st == QM_OK)
        st = quant_linear(r, &w->v, QM_PART_V, -1, H, 1, n, "none", NULL, 0);
    free(H);
    if (st != QM_OK || (st = hessian_of(r, QM_PART_O, w->o.in, &H, &n)) != QM_OK)
        return st;
    st = quant_linear(r, &w->o, QM_PART_O, -1, H, 1, n, "none", NULL, 0);
    free(H);
    return st;
}

/* ---- the FFN ----------------------------------------------------------------------------------- */

/* One SwiGLU over rows X (n, d): gate and up from the Hessian of X, then down
 * from the activations through the quantized gate and up.  "rtn" skips the
 * Hessians.  Each Hessian is freed before the next is built.  `routed` is
 * the number of tokens the router sent (what the log reports). */
static qm_status swiglu_quant(run *r, qm_lin *g, qm_lin *u, qm_lin *dn, qm_part pg, int e, const float *X, int n,
                              long long routed, const char *fallback)
{
    if (!g->w)
        return QM_OK;
    qm_status st;
    if (strcmp(fallback, "rtn") == 0) {
        if ((st = quant_linear(r, g, pg, e, NULL, 0, routed, fallback, NULL, 0)) == QM_OK &&
            (st = quant_linear(r, u, pg + 1, e, NULL, 0, routed, fallback, NULL, 0)) == QM_OK)
            st = quant_linear(r, dn, pg + 2, e, NULL, 0, routed, fallback, NULL, 0);
        return st;
    }
    int D = g->in, W = g->out;
    float *H = calloc((size_t)D * D, sizeof *H);
    if (!H)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_hessian_add(H, X, n, D);
    st = quant_linear(r, g, pg, e, H, 0, routed, fallback, X, n);
    if (st == QM_OK)
        st = quant_linear(r, u, pg + 1, e, H, 1, routed, fallback, X, n);
    free(H);
    float *A = st == QM_OK ? malloc(((size_t)n * W + 1) * sizeof *A) : NULL;
    float *H2 = st == QM_OK ? calloc((size_t)W * W, sizeof *H2) : NULL;
    if (st == QM_OK && (!A || !H2))
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK && (st = qm_calib_act(X, n, g, u, A, r->d)) == QM_OK) {
        qm_hessian_add(H2, A, n, W);
        st = quant_linear(r, dn, pg + 2, e, H2, 1, routed, fallback, A, n);
    }
    free(A);
    free(H2);
    return st;
}

/* Routed expert e's output rows (not yet weighted or summed) for the
 * package to rank 0: r->eo (r->n_eo rows of d), freed by whoever ends the
 * package (quantize_dist.c). */
static qm_status pack_output(run *r, const qm_calib_ffn *cap, int e, qm_fwd_ws *ws)
{
    qm_calib c = calib_of(r);
    qm_layer_w *w = &r->w;
    size_t n = qm_calib_count(&c, cap, e), D = (size_t)r->m->cfg.hidden;
    if (!(r->eo = malloc((n ? n : 1) * D * sizeof *r->eo)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory for expert %d's %zu output rows", e, n);
    r->n_eo = n;
    return qm_calib_expert_out(&c, cap, e, &w->gate[e], &w->up[e], &w->down[e], ws, r->eo, r->d);
}

/* Routed expert e: its rows, its weights (loaded only now), GPTQ of its
 * three linears, its share of the layer's output; then its weights go. */
qm_status qz_one_expert(run *r, const qm_calib_ffn *cap, int e, qm_fwd_ws *ws)
{
    qm_layer_w *w = &r->w;
    qm_calib c = calib_of(r);
    float *X = NULL;
    int n = 0, nrows;
    qm_status st = gather_rows(r, cap, e, &X, &n);
    const char *fb = "none";
    nrows = n;
    if (st == QM_OK && (r->o->all_experts || n < r->o->min_expert_tokens)) {
        if (!r->o->all_experts)
            fb = r->o->fallback_pooled ? "pooled" : "rtn";
        free(X);
        X = NULL;
        if (strcmp(fb, "rtn") != 0) /* every row through the expert */
            st = gather_rows(r, cap, -1, &X, &nrows);
    }
    if (st == QM_OK)
        st = qm_expert_load(r->m, w->layer, e, w, r->d);
    if (st == QM_OK)
        st = swiglu_quant(r, &w->gate[e], &w->up[e], &w->down[e], QM_PART_EXPERT_GATE, e, X, nrows, n, fb);
    free(X);
    if (st == QM_OK && w->gate[e].w)
        st = r->pack ? pack_output(r, cap, e, ws)
                     : qm_calib_ffn_add(&c, w, cap, e, &w->gate[e], &w->up[e], &w->down[e], ws, NULL, r->d);
    qm_expert_free(w, e);
    return st;
}

/* The FFN: the router (when the plan quantizes it), then what it feeds,
 * expert by expert; r->xs ends as the layer's output. */
static qm_status ffn(run *r)
{
    qm_layer_w *w = &r->w;
    const qm_config *cf = &r->m->cfg;
    size_t T = (size_t)r->B * r->S, D = (size_t)cf->hidden;
    qm_status st = QM_OK;
    if (w->moe && w->router.w) { /* the router first: it decides what the experts see */
        float *H;
        long long n;
        long ti = qm_model_tensor(r->m, r->w.layer, QM_PART_ROUTER, -1);
        if (ti >= 0 && r->by_tensor[ti] && r->by_tensor[ti]->bits) {
            if ((st = hessian_of(r, QM_PART_ROUTER, (int)D, &H, &n)) != QM_OK)
                return st;
            st = quant_linear(r, &w->router, QM_PART_ROUTER, -1, H, 1, n, "none", NULL, 0);
            free(H);
            if (st != QM_OK)
                return st;
        }
    }
    qm_calib c = calib_of(r);
    qm_calib_ffn cap = {0};
    qm_fwd_ws *ws = qm_calib_ws(&c);
    if (!ws)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    for (int g = 0; st == QM_OK && g < r->G; g++) { /* the FFN's output starts at zero */
        float *y = qm_states_get(r->ys, (size_t)g, r->d);
        if (!y)
            st = QM_EIO;
        else {
            memset(y, 0, (size_t)gwin(r, g) * r->S * D * sizeof *y);
            st = qm_states_put(r->ys, (size_t)g, r->d);
        }
    }
    if (st == QM_OK) /* r->xs: the residual after the quantized attention */
        st = qm_calib_capture(&c, &cap, NULL, r->d);
    double t0 = qm_clock();
    if (st == QM_OK && w->moe && r->ranks > 1)
        st = qz_spread_experts(r, &cap, ws);
    for (int e = 0; st == QM_OK && w->moe && r->ranks == 1 && e < cf->experts; e++)
        st = qz_one_expert(r, &cap, e, ws);
    r->t_experts = qm_clock() - t0;
    if (st == QM_OK && (!w->moe || w->sgate.w)) { /* the dense MLP or shared expert sees every row */
        float *X = NULL;
        int n = 0;
        if ((st = gather_rows(r, &cap, -1, &X, &n)) == QM_OK)
            st = w->moe ? swiglu_quant(r, &w->sgate, &w->sup, &w->sdown, QM_PART_SHARED_GATE, -1, X, n, (long long)T,
                                       "none")
                        : swiglu_quant(r, &w->mgate, &w->mup, &w->mdown, QM_PART_MLP_GATE, -1, X, n, (long long)T,
                                       "none");
        free(X);
    }
    if (st == QM_OK)
        st = qm_calib_ffn_add(&c, w, &cap, -1, NULL, NULL, NULL, ws, NULL, r->d);
    if (st == QM_OK) /* the quantized layer's outputs feed the next */
        st = qm_calib_residual(&c, NULL, r->d);
    qm_fwd_ws_free(ws);
    qm_calib_ffn_free(&cap);
    return st;
}

/* ---- progress state --------------------------------------------------------------------------- */

typedef struct state {
    char plan[65], config[65], calib[65];
    char settings[256];
    int layers_done;
} state;

/* The state file's fields: what the run is of (base.h, resumable runs). */
enum { N_FIELDS = 4 };
static void fields_of(const state *s, qm_resume_field f[N_FIELDS])
{
    f[0] = (qm_resume_field){"plan_sha256", s->plan};
    f[1] = (qm_resume_field){"config_sha256", s->config};
    f[2] = (qm_resume_field){"calib_sha256", s->calib};
    f[3] = (qm_resume_field){"settings", s->settings};
}

static qm_status write_state(const run *r, const state *s)
{
    qm_resume_field f[N_FIELDS];
    fields_of(s, f);
    return qm_resume_mark(r->sdir, f, N_FIELDS, s->layers_done, r->d);
}

/* A finished run removes its progress state, so a directory without one
 * may hold a finished run: it is made again (to the same bytes) by the same
 * plan only. */
static qm_status check_finished(const run *r, const char *plan_sha)
{
    char *p = qm_strfmt("%s/plan.yaml", r->out), sha[65];
    qm_status st = p ? QM_OK : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK && access(p, F_OK) == 0 && (st = qm_sha256_file(p, sha, r->d)) == QM_OK && strcmp(sha, plan_sha))
        st = qm_diag_fail(r->d, QM_EINVAL, "%s holds a run of another plan; remove it or choose another -o", r->out);
    free(p);
    return st;
}

/* ---- output ---------------------------------------------------------------------------------- */

/* Whether every planned tensor's grid has a GPTQ form (not a two-level one,
 * nor an asymmetric one with a free minimum). */
static int gptq_holds_all(const run *r)
{
    for (size_t i = 0; i < r->m->n; i++) {
        qm_qspec s = r->by_tensor[i] && r->by_tensor[i]->bits ? qz_plan_spec(r, i) : (qm_qspec){0};
        if (s.scale_bits || (s.free_min && !s.sym))
            return 0;
    }
    return 1;
}

/* Begin the run's writers: "gguf" and "fake-quant" when asked for, then
 * "gptq" unless a grid the others fix has no GPTQ form. */
static qm_status begin_writers(run *r)
{
    const char *formats[MAX_WRITERS + 1] = {0};
    int n = 0;
    if (r->o->gguf)
        formats[n++] = "gguf";
    if (r->o->fake_quant)
        formats[n++] = "fake-quant";
    formats[n++] = "gptq";
    r->job = (qwriter_job){r->m, r->plan, r->by_tensor, r->o->damp, r->out, r->o->gguf, r->o->gguf_keep,
                           r->o->strict, r->d};
    qm_status st = QM_OK;
    for (int i = 0; st == QM_OK && i < n; i++) {
        qwriter *w = &r->writers[r->n_writers];
        if (strcmp(formats[i], "gptq") == 0 && !gptq_holds_all(r))
            continue;
        *w = (qwriter){qwriter_find(formats[i]), &r->job, NULL};
        assert(w->ops);
        if ((st = w->ops->begin(w)) == QM_OK)
            r->n_writers++;
    }
    return st;
}

/* End the writers when st is QM_OK, else abort them; the first failure. */
static qm_status end_writers(run *r, qm_status st)
{
    for (int i = 0; i < r->n_writers; i++) {
        if (st == QM_OK)
            st = r->writers[i].ops->end(&r->writers[i]);
        else
            r->writers[i].ops->abort(&r->writers[i]);
    }
    r->n_writers = 0;
    return st;
}

/* quant_log.yaml: the layers' logs in order. */
static qm_status put_log(const void *ctx, FILE *f, qm_diag *d)
{
    const run *r = ctx;
    qm_status st = QM_OK;
    fprintf(f, "# qmoe quantize: one entry per quantized tensor, in the order quantized.\n"
               "# tokens: calibration rows the tensor's inputs came from (experts: rows the router sent);\n"
               "# fallback: none, rtn (round-to-nearest) or pooled (every row through the expert).\n"
               "tensors:\n");
    for (int l = 0; st == QM_OK && l < r->m->cfg.layers; l++) {
        char file[64], *data;
        size_t len;
        snprintf(file, sizeof file, "layer-%05d.log", l);
        char *p = qm_resume_path(r->sdir, file);
        if (!p)
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        else if ((st = qm_read_file(p, &data, &len, d)) == QM_OK) {
            fwrite(data, 1, len, f);
            free(data);
        }
        free(p);
    }
    return st;
}

/* The run's records in the output directory: plan.yaml and quant_log.yaml. */
static qm_status write_records(const run *r, const char *plan_path)
{
    qm_status st;
    /* the plan, byte for byte */
    char *data;
    size_t len;
    if ((st = qm_read_file(plan_path, &data, &len, r->d)) != QM_OK)
        return st;
    char *pp = qm_strfmt("%s/plan.yaml", r->out);
    st = pp ? qm_afile_write_bytes(pp, data, len, 1, r->d) : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    free(data);
    free(pp);
    if (st != QM_OK)
        return st;
    char *lp = qm_strfmt("%s/quant_log.yaml", r->out);
    st = lp ? qm_afile_write(lp, put_log, r, 1, r->d) : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    free(lp);
    return st;
}

/* ---- the run ---------------------------------------------------------------------------------- */

/* Plan and model must describe the same checkpoint, tensor for tensor. */
qm_status qz_match_plan(run *r, const char *config_sha)
{
    qm_model *m = r->m;
    qm_plan *p = r->plan;
    if (strcmp(p->arch, m->arch->name) != 0 || strcmp(p->config_sha256, config_sha) != 0)
        return qm_diag_fail(r->d, QM_EINVAL, "the plan was compiled for another model (%s, config sha256 %.12s...), "
                                             "not %s (%s, %.12s...)", p->arch, p->config_sha256, m->dir, m->arch->name,
                            config_sha);
    qm_strmap names;
    if (qm_strmap_init(&names, p->n) != QM_OK || !(r->by_tensor = calloc(m->n ? m->n : 1, sizeof *r->by_tensor)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_status st = QM_OK;
    for (size_t i = 0; i < p->n && st == QM_OK; i++)
        if (qm_strmap_put(&names, p->t[i].name, i, NULL) != QM_OK)
            st = qm_diag_fail(r->d, QM_EFORMAT, "the plan lists tensor '%s' twice", p->t[i].name);
    for (size_t i = 0; i < m->n && st == QM_OK; i++) {
        size_t k;
        const qm_st_tensor *t = m->t[i].st;
        if (m->t[i].bits)
            st = qm_diag_fail(r->d, QM_EUNSUPPORTED, "%s is already quantized ('%s' is GPTQ-packed); quantize the "
                              "original model", m->dir, t->name);
        else if (!qm_strmap_get(&names, t->name, &k))
            st = qm_diag_fail(r->d, QM_EINVAL, "the plan has no entry for tensor '%s'", t->name);
        else if (p->t[k].ndim != t->ndim || p->t[k].shape[0] != t->shape[0] ||
                 (t->ndim == 2 && p->t[k].shape[1] != t->shape[1]))
            st = qm_diag_fail(r->d, QM_EINVAL, "the plan's shape of '%s' [%llu, %llu] differs from the checkpoint's "
                              "[%llu, %llu]", t->name, (unsigned long long)p->t[k].shape[0],
                              (unsigned long long)(p->t[k].ndim == 2 ? p->t[k].shape[1] : 1),
                              (unsigned long long)t->shape[0], (unsigned long long)(t->ndim == 2 ? t->shape[1] : 1));
        else if (p->t[k].bits && !qm_parts[m->t[i].part].linear)
            st = qm_diag_fail(r->d, QM_EUNSUPPORTED, "'%s' (%s) is not a linear layer; only linears can be quantized",
                              t->name, m->t[i].canon);
        else if (p->t[k].bits && m->t[i].layer < 0)
            st = qm_diag_fail(r->d, QM_EUNSUPPORTED, "quantizing %s is not supported; keep it", m->t[i].canon);
        else if (p->t[k].bits && ((t->shape[1] * (uint64_t)p->t[k].bits) % 32 || (t->shape[0] * (uint64_t)p->t[k].bits) % 32))
            st = qm_diag_fail(r->d, QM_EUNSUPPORTED, "'%s' [%llu, %llu] cannot be packed at %d bits (sizes must fill "
                              "32-bit words)", t->name, (unsigned long long)t->shape[0], (unsigned long long)t->shape[1],
                              p->t[k].bits);
        else
            r->by_tensor[i] = &p->t[k];
    }
    if (st == QM_OK && p->n != m->n)
        st = qm_diag_fail(r->d, QM_EINVAL, "the plan lists %zu tensors, the checkpoint has %zu", p->n, m->n);
    qm_strmap_free(&names);
    return st;
}

static void free_done(run *r)
{
    for (size_t i = 0; i < r->n_done; i++)
        qm_qresult_free(&r->done[i].r);
    r->n_done = 0;
}

/* The hidden states entering layer L are saved as hidden-L.f32: named by
 * layer, so that the state file's layers_done always points at the right
 * one, whatever moment a kill interrupts the writes between them. */
static const char *hidden_name(char *buf, size_t cap, int L)
{
    snprintf(buf, cap, "hidden-%05d.f32", L);
    return buf;
}

/* The states in r->xs, group by group, as one float32 file. */
static qm_status put_hidden(const void *ctx, FILE *f, qm_diag *d)
{
    const run *r = ctx;
    size_t D = (size_t)r->m->cfg.hidden;
    for (int g = 0; g < r->G; g++) {
        const float *x = qm_states_get(r->xs, (size_t)g, d);
        if (!x)
            return QM_EIO;
        fwrite(x, sizeof *x, (size_t)gwin(r, g) * r->S * D, f);
    }
    return QM_OK;
}

/* Save r->xs as .qmoe-state/hidden-L.f32, atomically. */
static qm_status save_hidden(const run *r, int L)
{
    char file[64], *p = qm_resume_path(r->sdir, hidden_name(file, sizeof file, L));
    qm_status st = p ? qm_afile_write(p, put_hidden, r, 1, r->d) : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    free(p);
    return st;
}

/* r->xs from .qmoe-state/hidden-L.f32, which must hold exactly its bytes. */
static qm_status load_hidden(const run *r, int L)
{
    char file[64], *p = qm_resume_path(r->sdir, hidden_name(file, sizeof file, L));
    const char *why;
    FILE *f = p ? qm_fopen_regular(p, &why) : NULL;
    size_t D = (size_t)r->m->cfg.hidden;
    qm_status st = f ? QM_OK : QM_EFORMAT;
    for (int g = 0; st == QM_OK && g < r->G; g++) {
        size_t n = (size_t)gwin(r, g) * r->S * D;
        float *x = qm_states_get(r->xs, (size_t)g, r->d);
        if (!x)
            st = QM_EIO;
        else if (fread(x, sizeof *x, n, f) != n)
            st = QM_EFORMAT;
        else
            st = qm_states_put(r->xs, (size_t)g, r->d);
    }
    if (st == QM_OK && fgetc(f) != EOF)
        st = QM_EFORMAT;
    if (st == QM_EFORMAT)
        qm_diag_fail(r->d, QM_EFORMAT, "%s: missing or of the wrong size; remove %s/.qmoe-state to start over",
                     p ? p : file, r->out);
    if (f)
        fclose(f);
    free(p);
    return st;
}

/* Remove .qmoe-state/hidden-L.f32 (no longer needed once layer L is done). */
static void drop_hidden(const run *r, int L)
{
    char file[64];
    qm_resume_drop(r->sdir, hidden_name(file, sizeof file, L));
}

static qm_status one_layer(run *r, int L)
{
    char *logbuf = NULL;
    size_t loglen = 0;
    double t0 = qm_clock();
    int w_moe = r->m->is_moe[L];
    r->t_experts = 0;
    qm_status st = qm_layer_load(r->m, L, 0, &r->w, r->d);
    if (st != QM_OK)
        return st;
    r->log = open_memstream(&logbuf, &loglen);
    if (!r->log)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = attention(r);
    if (st == QM_OK)
        st = ffn(r);
    if (r->log)
        fclose(r->log);
    r->log = NULL;
    for (int i = 0; st == QM_OK && i < r->n_writers; i++)
        st = r->writers[i].ops->layer(&r->writers[i], L, r->done, r->n_done);
    char file[64];
    snprintf(file, sizeof file, "layer-%05d.log", L);
    if (st == QM_OK)
        st = qm_resume_save(r->sdir, file, logbuf, loglen, r->d);
    if (st == QM_OK)
        st = save_hidden(r, L + 1);
    free(logbuf);
    free_done(r);
    qm_layer_free(&r->w);
    r->t_rest = w_moe ? qm_clock() - t0 - r->t_experts : -1;
    if (!w_moe)
        r->t_experts = -1;
    return st;
}

/* The three stores of hidden states (layer input, FFN input, FFN output;
 * ranks other than 0 the FFN input only), in groups of QM_CALIB_CHUNK windows: in
 * memory while they fit what --max-memory leaves beside the largest
 * layer's float32 weights (as score and eval count it), the rest in
 * unlinked spill files in the output directory (other ranks: $TMPDIR). */
qm_status qz_make_states(run *r)
{
    r->G = (r->B + QM_CALIB_CHUNK - 1) / QM_CALIB_CHUNK;
    size_t *rows = malloc((size_t)r->G * sizeof *rows), D = (size_t)r->m->cfg.hidden;
    if (!rows)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (int g = 0; g < r->G; g++)
        rows[g] = (size_t)gwin(r, g) * r->S;
    qm_net net;
    qm_status st = qm_net_open(r->m, &net, r->d);
    size_t budget = r->o->max_memory ? r->o->max_memory : qm_net_memory_default();
    size_t left = budget > net.weight_bytes ? budget - net.weight_bytes : 0;
    qm_states **store[] = {&r->xs, &r->n2s, &r->ys};
    for (size_t i = r->rank ? 1 : 0; st == QM_OK && i < (r->rank ? 2 : sizeof store / sizeof store[0]); i++)
        if ((st = qm_states_new(rows, (size_t)r->G, D, left, r->out, store[i], r->d)) == QM_OK &&
            !qm_states_spilled(*store[i]))
            left -= qm_states_bytes(*store[i]);
    free(rows);
    return st;
}

/* This process's CPU time and bytes sent, for the report. */
static void account(qm_quant_report *rep, const qm_dist *x)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        rep->peak_rss_kib = ru.ru_maxrss;
        rep->cpu_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                           ru.ru_stime.tv_usec / 1e6;
    }
    rep->bytes_sent = qm_dist_bytes_sent(x);
}

qm_quant_opts qm_quant_opts_default(void)
{
    return (qm_quant_opts){.ctx = QM_DEFAULT_CTX, .samples = 128, .damp = qm_qspec_default().damp,
                           .min_expert_tokens = 16};
}

qm_status qm_quantize(const char *plan_path, const char *model_dir, const char *calib_path, const char *out_dir,
                      const qm_quant_opts *o, qm_quant_report *rep, qm_diag *d)
{
    memset(rep, 0, sizeof *rep);
    if (qm_dist_rank(o->dist)) {
        double t0 = qm_clock();
        qm_status st = qz_follow(plan_path, model_dir, o, rep, d);
        account(rep, o->dist);
        rep->seconds = qm_clock() - t0;
        return st;
    }
    run r = {.o = o, .out = out_dir, .rep = rep, .d = d, .t0 = qm_clock(), .dist = o->dist,
             .ranks = qm_dist_size(o->dist)};
    qm_tokens toks = {0};
    qm_head_w head = {0};
    state cur = {0};
    char *sdir = NULL;
    qm_lock lock = {-1, NULL};
    qm_status st = qm_model_open(model_dir, &r.m, d);
    if (st == QM_OK)
        st = qm_model_check_output(r.m, "-o", out_dir, 1,
                                   (const qm_path_input[]){{plan_path, "the plan"}, {calib_path, "the calibration text"}},
                                   2, d);
    if (st == QM_OK && o->gguf)
        st = qm_model_check_output(r.m, "-o", o->gguf, 0,
                                   (const qm_path_input[]){{plan_path, "the plan"}, {calib_path, "the calibration text"}},
                                   2, d);
    if (st == QM_OK)
        st = qm_plan_read(plan_path, &r.plan, d);
    if (st == QM_OK)
        st = qm_sha256_file(r.m->config_path, cur.config, d);
    if (st == QM_OK)
        st = qz_match_plan(&r, cur.config);
    /* GGUF's writer refuses what llama.cpp cannot hold, naming the tensor:
     * the unasked-for warning is for GPTQ checkpoints */
    if (st == QM_OK && ((!o->gguf && !o->no_engine_warning) || o->n_engines))
        st = qm_engine_gate(o->engines, o->n_engines, o->strict, r.m, r.plan, r.by_tensor, o->gguf ? "gguf" : "gptq",
                            d);
    if (st == QM_OK)
        st = qm_sha256_file(plan_path, cur.plan, d);
    if (st == QM_OK)
        st = qm_sha256_file(calib_path, cur.calib, d);
    if (st == QM_OK)
        st = qm_tokens_for_model(r.m, calib_path, (size_t)o->samples * (size_t)o->ctx, (size_t)o->ctx, &toks, d);
    if (st == QM_OK) {
        r.S = o->ctx;
        r.B = (int)(toks.n / (size_t)o->ctx) < o->samples ? (int)(toks.n / (size_t)o->ctx) : o->samples;
        if (r.B < 1)
            st = qm_diag_fail(d, QM_EINVAL, "%s: %zu tokens, fewer than one window of %d", calib_path, toks.n, o->ctx);
    }
    snprintf(cur.settings, sizeof cur.settings, "ctx=%d samples=%d damp=%g min_expert_tokens=%d fallback=%s "
             "all_experts=%d fake_quant=%d", r.S, r.B, o->damp, o->min_expert_tokens,
             o->fallback_pooled ? "pooled" : "rtn", o->all_experts, o->fake_quant);
    if (o->gguf) /* GPTQ's fp16 scales change the result: a run without GGUF does not resume into one */
        snprintf(cur.settings + strlen(cur.settings), sizeof cur.settings - strlen(cur.settings), " gguf=%s",
                 o->gguf_keep ? o->gguf_keep : "stored");
    if (st == QM_OK && (st = qm_mkdir(out_dir, d)) == QM_OK && (st = qm_dir_lock(out_dir, &lock, d)) == QM_OK &&
        (r.sdir = sdir = qm_strfmt("%s/.qmoe-state", out_dir)))
        st = qm_mkdir(sdir, d);
    if (st == QM_OK)
        st = begin_writers(&r);
    qm_resume_field f[N_FIELDS];
    fields_of(&cur, f);
    int same = st == QM_OK ? qm_resume_match(sdir, f, N_FIELDS, &cur.layers_done) : -1;
    if (st == QM_OK && same < 0)
        st = check_finished(&r, cur.plan);
    else if (st == QM_OK && same < N_FIELDS)
        st = qm_diag_fail(d, QM_EINVAL, "%s holds a run of another %s; remove it or choose another -o", out_dir,
                          (const char *[]){"plan", "model", "calibration text", "set of options"}[same]);
    size_t T = (size_t)r.B * r.S;
    int total = r.m ? (int)r.m->cfg.layers : 0;
    if (st == QM_OK && cur.layers_done < total)
        st = qz_make_states(&r);
    if (st == QM_OK && cur.layers_done > 0 && cur.layers_done < total) {
        st = load_hidden(&r, cur.layers_done);
        rep->layers_resumed = cur.layers_done;
        qm_diag_note(d, "%s: resuming after layer %d of %d", out_dir, cur.layers_done - 1, total);
    } else if (st == QM_OK && cur.layers_done == 0) {
        if ((st = qm_head_load(r.m, QM_HEAD_EMBED, &head, d)) == QM_OK)
            for (int g = 0; st == QM_OK && g < r.G; g++) {
                float *x = qm_states_get(r.xs, (size_t)g, d);
                if (!x)
                    st = QM_EIO;
                else {
                    qm_forward_embed(r.m, &head, toks.ids + (size_t)g * QM_CALIB_CHUNK * r.S, gwin(&r, g) * r.S, x);
                    st = qm_states_put(r.xs, (size_t)g, d);
                }
            }
        qm_head_free(&head);
        if (st == QM_OK)
            st = write_state(&r, &cur);
    }
    double t0 = qm_clock();
    if (st == QM_OK && r.ranks > 1)
        st = qz_lead(&r);
    for (int L = cur.layers_done; st == QM_OK && L < total; L++) {
        double t = qm_clock();
        say(&r, "\rlayer %d/%d: %d x %d calibration tokens", L, total, r.B, r.S);
        qm_dist_set_layer(r.dist, L); /* a wait that times out names it */
        if ((st = qm_dist_bcast(r.dist, &L, sizeof L, d)) == QM_OK && (st = one_layer(&r, L)) == QM_OK) {
            cur.layers_done = L + 1;
            if ((st = write_state(&r, &cur)) == QM_OK)
                drop_hidden(&r, L);
        }
        double now = qm_clock(), left = (now - t0) / (L + 1 - rep->layers_resumed) * (total - L - 1);
        /* a MoE layer's line splits what the ranks share from what rank 0 does alone (bench/mpi.sh) */
        char split[160] = "";
        if (r.t_experts >= 0)
            snprintf(split, sizeof split, "; routed experts %.1f s on %d rank%s, the rest %.1f s; %llu bytes sent so far",
                     r.t_experts, r.ranks, r.ranks > 1 ? "s" : "", r.t_rest,
                     (unsigned long long)qm_dist_bytes_sent(r.dist));
        say(&r, "layer %d/%d done in %.1f s, %.0f tok/s, ETA %.0f s%s%s", L, total, now - t, (double)T / (now - t + 1e-9),
            left, split, qm_states_spilled(r.xs) ? " (states spilled to disk)" : "");
    }
    rep->layers = total;
    qm_dist_set_layer(r.dist, -1);
    if (st == QM_OK && r.ranks > 1) /* no more layers: the other ranks are done */
        st = qm_dist_bcast(r.dist, &(int){-1}, sizeof(int), d);
    st = end_writers(&r, st);
    if (st == QM_OK)
        st = write_records(&r, plan_path);
    if (st == QM_OK && sdir) /* the run is complete: what it kept for resuming is no longer needed */
        st = qm_remove_tree(sdir, d);
    account(rep, r.dist);
    rep->seconds = qm_clock() - r.t0;
    qm_states_free(r.xs);
    qm_states_free(r.n2s);
    qm_states_free(r.ys);
    free(r.done);
    free(r.by_tensor);
    free(sdir);
    qm_dir_unlock(&lock);
    qm_tokens_free(&toks);
    qm_plan_free(r.plan);
    qm_model_close(r.m);
    return st;
}
