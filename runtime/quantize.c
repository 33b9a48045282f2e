/* quantize.c: the quantization pipeline (see quantize.h). */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "runtime/forward.h"
#include "runtime/gptq.h"
#include "runtime/json.h"
#include "runtime/pack.h"
#include "runtime/plan.h"
#include "runtime/quantize.h"
#include "runtime/tokens.h"

/* One quantized linear of the current layer, waiting to be written. */
typedef struct done_t {
    size_t tensor;     /* index into m->t */
    const qm_plan_tensor *pt;
    qm_qresult r;
    long long tokens;
    const char *fallback; /* "none", "rtn" or "pooled" */
    double error, seconds;
} done_t;

typedef struct run {
    const qm_quant_opts *o;
    qm_model *m;
    qm_plan *plan;
    const qm_plan_tensor **by_tensor; /* (m->n) plan entry of each model tensor */
    const char *out;
    int B, S;                 /* calibration windows and their length */
    float *x;                 /* (B*S, d) hidden states entering the current layer */
    qm_layer_w w;             /* current layer, float32, replaced as it is quantized */
    done_t *done;
    size_t n_done, cap_done;
    FILE *log;                /* this layer's log lines */
    qm_quant_report *rep;
    double t0;
    qm_diag *d;
} run;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void say(run *r, const char *fmt, ...) QM_PRINTF(2, 3);
static void say(run *r, const char *fmt, ...)
{
    if (!r->o->progress)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->o->progress(r->o->progress_ctx, line);
}

/* ---- the linear being quantized ------------------------------------------------------------ */

/* The model tensor of `part` (expert e) in the current layer, or -1. */
static long find_tensor(run *r, qm_part part, int e)
{
    for (size_t i = 0; i < r->m->n; i++)
        if (r->m->t[i].layer == r->w.layer && r->m->t[i].part == part && r->m->t[i].expert == e)
            return (long)i;
    return -1;
}

/* Quantize linear `lin` (part, expert e) per the plan with Hessian H
 * (in, in, accumulated X^T X over `tokens` rows; NULL for round-to-nearest)
 * and replace its weights by the dequantized ones. */
static qm_status quant_linear(run *r, qm_lin *lin, qm_part part, int e, const float *H, long long tokens,
                              const char *fallback)
{
    long ti = find_tensor(r, part, e);
    if (ti < 0 || !lin->w)
        return QM_OK;
    const qm_plan_tensor *pt = r->by_tensor[ti];
    if (!pt || !pt->bits)
        return QM_OK;
    if (r->n_done == r->cap_done) {
        size_t cap = r->cap_done ? 2 * r->cap_done : 64;
        done_t *nd = realloc(r->done, cap * sizeof *nd);
        if (!nd)
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        r->done = nd;
        r->cap_done = cap;
    }
    done_t *dn = &r->done[r->n_done];
    memset(dn, 0, sizeof *dn);
    qm_qspec s = {.bits = pt->bits, .group = pt->group, .sym = pt->sym, .act_order = pt->act_order,
                  .damp = r->o->damp};
    int in = lin->in;
    double t0 = now();
    qm_status st;
    float *Hc = NULL;
    if (H) {
        if (!(Hc = malloc((size_t)in * in * sizeof *Hc)))
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        memcpy(Hc, H, (size_t)in * in * sizeof *Hc);
        qm_hessian_finish(Hc, in, tokens > 0 ? tokens : 1);
        float *Hw = malloc((size_t)in * in * sizeof *Hw);
        if (!Hw) {
            free(Hc);
            return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
        }
        memcpy(Hw, Hc, (size_t)in * in * sizeof *Hw);
        st = qm_gptq(lin->w, lin->out, in, Hw, &s, &dn->r, r->d);
        free(Hw);
    } else {
        st = qm_rtn(lin->w, lin->out, in, &s, &dn->r, r->d);
    }
    if (st != QM_OK) {
        free(Hc);
        qm_diag_note(r->d, "while quantizing '%s'", r->m->t[ti].st->name);
        return st;
    }
    dn->tensor = (size_t)ti;
    dn->pt = pt;
    dn->tokens = tokens;
    dn->fallback = fallback;
    dn->error = Hc ? qm_relative_error(lin->w, dn->r.deq, lin->out, in, Hc) : NAN;
    dn->seconds = now() - t0;
    free(Hc);
    memcpy(lin->w, dn->r.deq, (size_t)lin->out * in * sizeof *lin->w);
    r->n_done++;
    r->rep->tensors_quantized++;
    if (strcmp(fallback, "none") != 0)
        r->rep->fallbacks++;
    char err[32];
    if (isnan(dn->error))
        snprintf(err, sizeof err, "null");
    else
        snprintf(err, sizeof err, "%.6g", dn->error);
    fprintf(r->log, "  - {name: %s, module: %s, bits: %d, tokens: %lld, fallback: %s, relative_error: %s, "
                    "damp: %.6g, seconds: %.3f}\n",
            r->m->t[ti].st->name, r->m->t[ti].canon, pt->bits, tokens, fallback, err, dn->r.damp, dn->seconds);
    say(r, "layer %d  %-28s tokens %-7lld error %s%s", r->w.layer, r->m->t[ti].canon, tokens, err,
        strcmp(fallback, "none") ? "  (fallback)" : "");
    return QM_OK;
}

/* ---- passes over the calibration windows ------------------------------------------------------ */

/* What a pass collects through the forward hooks. */
typedef struct collect {
    run *r;
    qm_part part;       /* accumulate H of this part's input (QM_PART_COUNT: none) */
    float *H;           /* (in, in) */
    long long rows;
    float *n2;          /* (T, d) the FFN's normed input, when capturing */
    int *idx;           /* (T, k) routing */
    float *rw;          /* (T, k) routing weights */
    size_t at;          /* rows captured so far */
} collect;

static void on_linear(void *ctx, int layer, qm_part part, int expert, const float *x, int n, int in)
{
    collect *c = ctx;
    if (part == c->part && c->H) {
        qm_hessian_add(c->H, x, n, in);
        c->rows += n;
    }
}

static void on_routing(void *ctx, int layer, const int *idx, const float *w, int T, int k)
{
    collect *c = ctx;
    if (c->idx) {
        memcpy(c->idx + c->at * (size_t)k, idx, (size_t)T * k * sizeof *idx);
        memcpy(c->rw + c->at * (size_t)k, w, (size_t)T * k * sizeof *w);
    }
}

static void on_block(void *ctx, int layer, const float *n2, const float *ffn, const float *h, const float *out,
                     int T, int d)
{
    collect *c = ctx;
    if (c->n2)
        memcpy(c->n2 + c->at * (size_t)d, n2, (size_t)T * d * sizeof *n2);
    c->at += (size_t)T;
}

enum { CHUNK = 8 }; /* windows per forward call */

/* Run the current layer over all windows.  With `x_out` the outputs are
 * written there (else x is left unchanged and outputs are discarded). */
static qm_status pass(run *r, collect *c, float *x_out)
{
    const qm_model *m = r->m;
    size_t D = (size_t)m->cfg.hidden, rows = (size_t)CHUNK * r->S;
    float *buf = malloc(rows * D * sizeof *buf);
    qm_fwd_ws *ws = qm_fwd_ws_new(m, (int)rows, r->S);
    if (!buf || !ws) {
        free(buf);
        qm_fwd_ws_free(ws);
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    }
    qm_fwd_hooks hk = {.ctx = c, .linear_in = on_linear, .routing = on_routing, .block = on_block};
    qm_status st = QM_OK;
    if (c)
        c->at = 0;
    for (int b0 = 0; b0 < r->B && st == QM_OK; b0 += CHUNK) {
        int nb = r->B - b0 < CHUNK ? r->B - b0 : CHUNK;
        size_t off = (size_t)b0 * r->S * D, n = (size_t)nb * r->S * D;
        memcpy(buf, r->x + off, n * sizeof *buf);
        st = qm_forward_layer(m, &r->w, buf, nb, r->S, ws, c ? &hk : NULL, r->d);
        if (x_out)
            memcpy(x_out + off, buf, n * sizeof *buf);
    }
    free(buf);
    qm_fwd_ws_free(ws);
    return st;
}

/* H of one part's inputs over all windows; caller frees *H. */
static qm_status hessian_of(run *r, qm_part part, int in, float **H, long long *rows)
{
    collect c = {.r = r, .part = part};
    if (!(c.H = calloc((size_t)in * in, sizeof *c.H)))
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_status st = pass(r, &c, NULL);
    if (st != QM_OK) {
        free(c.H);
        return st;
    }
    *H = c.H;
    *rows = c.rows;
    return QM_OK;
}

static qm_status attention(run *r)
{
    qm_layer_w *w = &r->w;
    float *H;
    long long n;
    qm_status st = hessian_of(r, QM_PART_Q, w->q.in, &H, &n);
    if (st != QM_OK)
        return st;
    st = quant_linear(r, &w->q, QM_PART_Q, -1, H, n, "none");
    if (st == QM_OK)
        st = quant_linear(r, &w->k, QM_PART_K, -1, H, n, "none");
    if (st == QM_OK)
        st = quant_linear(r, &w->v, QM_PART_V, -1, H, n, "none");
    free(H);
    if (st != QM_OK || (st = hessian_of(r, QM_PART_O, w->o.in, &H, &n)) != QM_OK)
        return st;
    st = quant_linear(r, &w->o, QM_PART_O, -1, H, n, "none");
    free(H);
    return st;
}

/* ---- the FFN ----------------------------------------------------------------------------------- */

static float silu(float v) { return v / (1.0f + expf(-v)); }

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
        if ((st = quant_linear(r, g, pg, e, NULL, routed, fallback)) == QM_OK &&
            (st = quant_linear(r, u, pg + 1, e, NULL, routed, fallback)) == QM_OK)
            st = quant_linear(r, dn, pg + 2, e, NULL, routed, fallback);
        return st;
    }
    int D = g->in, W = g->out;
    float *H = calloc((size_t)D * D, sizeof *H);
    if (!H)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_hessian_add(H, X, n, D);
    st = quant_linear(r, g, pg, e, H, routed, fallback);
    if (st == QM_OK)
        st = quant_linear(r, u, pg + 1, e, H, routed, fallback);
    free(H);
    float *A = st == QM_OK ? malloc((size_t)n * W * sizeof *A) : NULL;
    float *U = st == QM_OK ? malloc((size_t)n * W * sizeof *U) : NULL;
    float *H2 = st == QM_OK ? calloc((size_t)W * W, sizeof *H2) : NULL;
    if (st == QM_OK && (!A || !U || !H2))
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        qm_lin_apply(g, X, n, A);
        qm_lin_apply(u, X, n, U);
        for (size_t i = 0; i < (size_t)n * W; i++)
            A[i] = silu(A[i]) * U[i];
        qm_hessian_add(H2, A, n, W);
        st = quant_linear(r, dn, pg + 2, e, H2, routed, fallback);
    }
    free(A);
    free(U);
    free(H2);
    return st;
}

static qm_status ffn(run *r)
{
    qm_layer_w *w = &r->w;
    const qm_config *c = &r->m->cfg;
    size_t T = (size_t)r->B * r->S, D = (size_t)c->hidden, k = (size_t)c->top_k;
    qm_status st = QM_OK;
    if (w->moe && w->router.w) { /* the router first: it decides what the experts see */
        float *H;
        long long n;
        long ti = find_tensor(r, QM_PART_ROUTER, -1);
        if (ti >= 0 && r->by_tensor[ti] && r->by_tensor[ti]->bits) {
            if ((st = hessian_of(r, QM_PART_ROUTER, (int)D, &H, &n)) != QM_OK)
                return st;
            st = quant_linear(r, &w->router, QM_PART_ROUTER, -1, H, n, "none");
            free(H);
            if (st != QM_OK)
                return st;
        }
    }
    collect cap = {.r = r, .part = QM_PART_COUNT};
    cap.n2 = malloc(T * D * sizeof *cap.n2);
    cap.idx = w->moe ? malloc(T * k * sizeof *cap.idx) : NULL;
    cap.rw = w->moe ? malloc(T * k * sizeof *cap.rw) : NULL;
    float *X = malloc(T * D * sizeof *X);
    if (!cap.n2 || !X || (w->moe && (!cap.idx || !cap.rw)))
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    if (st == QM_OK)
        st = pass(r, &cap, NULL);
    if (st == QM_OK && !w->moe)
        st = swiglu_quant(r, &w->mgate, &w->mup, &w->mdown, QM_PART_MLP_GATE, -1, cap.n2, (int)T, (long long)T,
                          "none");
    for (int e = 0; st == QM_OK && w->moe && e < c->experts; e++) {
        int n = 0;
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < k; j++)
                if (cap.idx[t * k + j] == e)
                    memcpy(X + (size_t)n++ * D, cap.n2 + t * D, D * sizeof *X);
        const char *fb = "none";
        const float *rows = X;
        int nrows = n;
        if (r->o->all_experts || n < r->o->min_expert_tokens) {
            if (!r->o->all_experts)
                fb = r->o->fallback_pooled ? "pooled" : "rtn";
            rows = cap.n2;
            nrows = (int)T;
        }
        st = swiglu_quant(r, &w->gate[e], &w->up[e], &w->down[e], QM_PART_EXPERT_GATE, e, rows, nrows, n, fb);
    }
    if (st == QM_OK && w->moe && w->sgate.w)
        st = swiglu_quant(r, &w->sgate, &w->sup, &w->sdown, QM_PART_SHARED_GATE, -1, cap.n2, (int)T, (long long)T,
                          "none");
    free(cap.n2);
    free(cap.idx);
    free(cap.rw);
    free(X);
    return st;
}

/* ---- output ---------------------------------------------------------------------------------- */

static char *shard_name(const run *r, int shard)
{
    return qm_strfmt("model-%05d-of-%05d.safetensors", shard + 1, (int)r->m->cfg.layers + 1);
}

/* "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj" (owned) */
static char *module_prefix(const char *name)
{
    char *p = qm_strdup(name);
    size_t n = p ? strlen(p) : 0;
    if (p && n > 7 && strcmp(p + n - 7, ".weight") == 0)
        p[n - 7] = '\0';
    return p;
}

static const done_t *done_for(const run *r, size_t tensor)
{
    for (size_t i = 0; i < r->n_done; i++)
        if (r->done[i].tensor == tensor)
            return &r->done[i];
    return NULL;
}

/* Float32 values in `dtype` (BF16, F16 or F32), for --fake-quant; caller frees. */
static void *to_dtype(const float *x, size_t n, qm_dtype t)
{
    void *out = malloc(n * qm_dtype_size(t));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (t == QM_DT_BF16)
            ((uint16_t *)out)[i] = qm_f32_to_bf16(x[i]);
        else if (t == QM_DT_F16)
            ((uint16_t *)out)[i] = qm_f32_to_f16(x[i]);
        else
            ((float *)out)[i] = x[i];
    }
    return out;
}

/* The shard of layer `layer` (-1: model-level tensors) in `dir`: quantized
 * linears as qweight/qzeros/scales/g_idx (or dequantized, fake_quant), every
 * other tensor copied as stored. */
static qm_status write_shard(run *r, int layer, const char *dir, int fake)
{
    const qm_model *m = r->m;
    size_t cap = 4 * m->n + 1, n = 0;
    qm_st_entry *e = calloc(cap, sizeof *e);
    uint64_t (*shapes)[2] = calloc(cap, sizeof *shapes);
    void **owned = calloc(cap, sizeof *owned);
    char **names = calloc(cap, sizeof *names);
    size_t n_owned = 0, n_names = 0;
    qm_status st = QM_OK;
    if (!e || !shapes || !owned || !names)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; st == QM_OK && i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        if (t->layer != layer)
            continue;
        const done_t *dn = done_for(r, i);
        if (!dn) {
            e[n++] = (qm_st_entry){t->st->name, t->st->dtype, t->st->ndim, t->st->shape, t->st->data};
            continue;
        }
        int out = dn->r.out, in = dn->r.in, b = dn->pt->bits, G = dn->r.groups;
        if (fake) {
            void *v = to_dtype(dn->r.deq, (size_t)out * in, t->st->dtype);
            if (!v) {
                st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
                break;
            }
            owned[n_owned++] = v;
            e[n++] = (qm_st_entry){t->st->name, t->st->dtype, 2, t->st->shape, v};
            continue;
        }
        int32_t *qw = malloc((size_t)in * b / 32 * out * 4), *qz = malloc((size_t)G * out * b / 32 * 4);
        uint16_t *sc = malloc((size_t)G * out * 2);
        char *pre = module_prefix(t->st->name);
        char *nq = pre ? qm_strfmt("%s.qweight", pre) : NULL, *nz = pre ? qm_strfmt("%s.qzeros", pre) : NULL;
        char *ns = pre ? qm_strfmt("%s.scales", pre) : NULL, *ng = pre ? qm_strfmt("%s.g_idx", pre) : NULL;
        free(pre);
        owned[n_owned++] = qw;
        owned[n_owned++] = qz;
        owned[n_owned++] = sc;
        names[n_names++] = nq;
        names[n_names++] = nz;
        names[n_names++] = ns;
        names[n_names++] = ng;
        if (!qw || !qz || !sc || !nq || !nz || !ns || !ng) {
            st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
            break;
        }
        qm_pack_qweight(dn->r.codes, out, in, b, qw);
        qm_pack_qzeros(dn->r.zero, G, out, b, 1, qz);
        for (size_t k = 0; k < (size_t)G * out; k++)
            sc[k] = qm_f32_to_f16(dn->r.scale[k]);
        shapes[n][0] = (uint64_t)in * b / 32, shapes[n][1] = (uint64_t)out;
        e[n] = (qm_st_entry){nq, QM_DT_I32, 2, shapes[n], qw}, n++;
        shapes[n][0] = (uint64_t)G, shapes[n][1] = (uint64_t)out * b / 32;
        e[n] = (qm_st_entry){nz, QM_DT_I32, 2, shapes[n], qz}, n++;
        shapes[n][0] = (uint64_t)G, shapes[n][1] = (uint64_t)out;
        e[n] = (qm_st_entry){ns, QM_DT_F16, 2, shapes[n], sc}, n++;
        shapes[n][0] = (uint64_t)in;
        e[n] = (qm_st_entry){ng, QM_DT_I32, 1, shapes[n], dn->r.g_idx}, n++;
    }
    char *name = st == QM_OK ? shard_name(r, layer < 0 ? (int)m->cfg.layers : layer) : NULL;
    char *path = name ? qm_strfmt("%s/%s", dir, name) : NULL;
    if (st == QM_OK && !path)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK) {
        const char *meta[] = {"format", "pt", NULL};
        st = qm_st_write(path, e, n, meta, r->d);
    }
    free(name);
    free(path);
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    for (size_t i = 0; i < n_names; i++)
        free(names[i]);
    free(owned);
    free(names);
    free(shapes);
    free(e);
    return st;
}

/* ---- progress state --------------------------------------------------------------------------- */

typedef struct state {
    char plan[65], config[65], calib[65];
    char settings[256];
    int layers_done;
} state;

static char *state_path(const run *r, const char *file) { return qm_strfmt("%s/.qmoe-state/%s", r->out, file); }

static int read_state(const run *r, state *s)
{
    char *p = state_path(r, "state");
    FILE *f = p ? fopen(p, "r") : NULL;
    free(p);
    if (!f)
        return 0;
    int ok = fscanf(f, "plan_sha256 %64s\nconfig_sha256 %64s\ncalib_sha256 %64s\nsettings %255[^\n]\nlayers_done %d",
                    s->plan, s->config, s->calib, s->settings, &s->layers_done) == 5;
    fclose(f);
    return ok;
}

static qm_status write_state(const run *r, const state *s)
{
    char *p = state_path(r, "state");
    if (!p)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_afile a;
    qm_status st = qm_afile_open(&a, p, r->d);
    free(p);
    if (st != QM_OK)
        return st;
    fprintf(a.f, "plan_sha256 %s\nconfig_sha256 %s\ncalib_sha256 %s\nsettings %s\nlayers_done %d\n", s->plan,
            s->config, s->calib, s->settings, s->layers_done);
    return qm_afile_commit(&a, r->d);
}

/* Write `n` bytes to `file` under .qmoe-state atomically. */
static qm_status save_blob(const run *r, const char *file, const void *data, size_t n)
{
    char *p = state_path(r, file);
    if (!p)
        return qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    qm_afile a;
    qm_status st = qm_afile_open(&a, p, r->d);
    free(p);
    if (st != QM_OK)
        return st;
    if (n && fwrite(data, 1, n, a.f) != n) {
        qm_afile_abort(&a);
        return qm_diag_fail(r->d, QM_EIO, "%s: write failed", file);
    }
    return qm_afile_commit(&a, r->d);
}

static qm_status load_blob(const run *r, const char *file, void *data, size_t n)
{
    char *p = state_path(r, file);
    FILE *f = p ? fopen(p, "rb") : NULL;
    qm_status st = QM_OK;
    if (!f || fread(data, 1, n, f) != n || fgetc(f) != EOF)
        st = qm_diag_fail(r->d, QM_EFORMAT, "%s: missing or of the wrong size; remove %s/.qmoe-state to start over",
                          p ? p : file, r->out);
    if (f)
        fclose(f);
    free(p);
    return st;
}

/* ---- finishing ---------------------------------------------------------------------------------- */

/* "model.layers.0.mlp.gate" -> "^model\\.layers\\.0\\.mlp\\.gate$" */
static char *module_regex(const char *prefix)
{
    size_t n = strlen(prefix);
    char *s = malloc(2 * n + 3), *o = s;
    if (!s)
        return NULL;
    *o++ = '^';
    for (const char *p = prefix; *p; p++) {
        if (*p == '.')
            *o++ = '\\';
        *o++ = *p;
    }
    *o++ = '$';
    *o = '\0';
    return s;
}

typedef struct setting {
    int bits, group, sym, act_order;
    size_t count;
} setting;

static json_t *setting_json(const setting *s, double damp, int with_meta)
{
    json_t *j = json_pack("{s:i, s:i, s:b, s:b}", "bits", s->bits, "group_size", s->group ? s->group : -1,
                          "desc_act", s->act_order, "sym", s->sym);
    if (j && with_meta) {
        json_object_set_new(j, "damp_percent", json_real(damp));
        json_object_set_new(j, "true_sequential", json_true());
        json_object_set_new(j, "quant_method", json_string("gptq"));
        json_object_set_new(j, "checkpoint_format", json_string("gptq"));
    }
    return j;
}

/* quantization_config: the most common setting, and per-module "dynamic"
 * overrides ("+:" for other widths, "-:" for linears left unquantized). */
static json_t *quant_config(const run *r)
{
    setting seen[64];
    size_t n = 0;
    for (size_t i = 0; i < r->plan->n; i++) {
        const qm_plan_tensor *t = &r->plan->t[i];
        if (!t->bits)
            continue;
        size_t k = 0;
        while (k < n && !(seen[k].bits == t->bits && seen[k].group == t->group && seen[k].sym == t->sym &&
                          seen[k].act_order == t->act_order))
            k++;
        if (k == n && n < 64)
            seen[n++] = (setting){t->bits, t->group, t->sym, t->act_order, 0};
        if (k < n)
            seen[k].count++;
    }
    setting base = {4, 128, 1, 0, 0};
    for (size_t k = 0; k < n; k++)
        if (seen[k].count > base.count)
            base = seen[k];
    json_t *q = setting_json(&base, r->o->damp, 1), *dyn = json_object();
    for (size_t i = 0; q && dyn && i < r->m->n; i++) {
        const qm_tensor *t = &r->m->t[i];
        const qm_plan_tensor *pt = r->by_tensor[i];
        if (!qm_parts[t->part].linear || !pt)
            continue;
        int differs = pt->bits && !(pt->bits == base.bits && pt->group == base.group && pt->sym == base.sym &&
                                    pt->act_order == base.act_order);
        if (pt->bits && !differs)
            continue;
        char *pre = module_prefix(t->st->name), *re = pre ? module_regex(pre) : NULL;
        char *key = re ? qm_strfmt("%s:%s", pt->bits ? "+" : "-", re) : NULL;
        if (key) {
            setting s = {pt->bits, pt->group, pt->sym, pt->act_order, 0};
            json_object_set_new(dyn, key, pt->bits ? setting_json(&s, 0, 0) : json_object());
        }
        free(pre);
        free(re);
        free(key);
    }
    if (q && dyn)
        json_object_set_new(q, "dynamic", dyn);
    else
        json_decref(dyn);
    return q;
}

static qm_status write_json(const run *r, const char *file, json_t *j)
{
    char *p = qm_strfmt("%s/%s", r->out, file);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    qm_status st = QM_OK;
    if (!p || !text) {
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    } else {
        qm_afile a;
        if ((st = qm_afile_open(&a, p, r->d)) == QM_OK) {
            fputs(text, a.f);
            fputc('\n', a.f);
            st = qm_afile_commit(&a, r->d);
        }
    }
    free(p);
    free(text);
    return st;
}

/* Index, config.json, quantize_config.json, the plan, quant_log.yaml. */
static qm_status finish(run *r, const char *plan_path, const char *dir, int fake)
{
    const qm_model *m = r->m;
    json_t *map = json_object();
    for (size_t i = 0; map && i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        int shard = t->layer < 0 ? (int)m->cfg.layers : t->layer;
        char *name = shard_name(r, shard), *pre = module_prefix(t->st->name);
        int quantized = !fake && r->by_tensor[i] && r->by_tensor[i]->bits;
        static const char *const suffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
        for (int s = 0; name && pre && s < (quantized ? 4 : 1); s++) {
            char *k = quantized ? qm_strfmt("%s%s", pre, suffixes[s]) : qm_strdup(t->st->name);
            if (k)
                json_object_set_new(map, k, json_string(name));
            free(k);
        }
        free(name);
        free(pre);
    }
    json_t *index = json_pack("{s:{}, s:o}", "metadata", "weight_map", map);
    run sub = *r;
    sub.out = dir;
    qm_status st = index ? write_json(&sub, "model.safetensors.index.json", index)
                         : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    json_decref(index);
    json_t *cfg = NULL;
    if (st == QM_OK)
        st = qm_json_load(m->config_path, &cfg, r->d);
    if (st == QM_OK && !fake) {
        json_t *q = quant_config(r);
        json_object_set(cfg, "quantization_config", q);
        st = write_json(&sub, "quantize_config.json", q);
        json_decref(q);
    }
    if (st == QM_OK)
        st = write_json(&sub, "config.json", cfg);
    json_decref(cfg);
    if (st != QM_OK || fake)
        return st;
    /* the plan, byte for byte */
    char *data;
    size_t len;
    if ((st = qm_read_file(plan_path, &data, &len, r->d)) != QM_OK)
        return st;
    char *pp = qm_strfmt("%s/plan.yaml", r->out);
    qm_afile a;
    if (pp && (st = qm_afile_open(&a, pp, r->d)) == QM_OK) {
        fwrite(data, 1, len, a.f);
        st = qm_afile_commit(&a, r->d);
    }
    free(data);
    free(pp);
    if (st != QM_OK)
        return st;
    /* quant_log.yaml: the layers' logs in order */
    char *lp = qm_strfmt("%s/quant_log.yaml", r->out);
    if (!lp || (st = qm_afile_open(&a, lp, r->d)) != QM_OK) {
        free(lp);
        return st != QM_OK ? st : qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    }
    free(lp);
    fprintf(a.f, "# qmoe quantize: one entry per quantized tensor, in the order quantized.\n"
                 "# tokens: calibration rows the tensor's inputs came from (experts: rows the router sent);\n"
                 "# fallback: none, rtn (round-to-nearest) or pooled (every row through the expert).\n"
                 "tensors:\n");
    for (int l = 0; st == QM_OK && l < m->cfg.layers; l++) {
        char file[64];
        snprintf(file, sizeof file, "layer-%05d.log", l);
        char *p = state_path(r, file);
        if (p && (st = qm_read_file(p, &data, &len, r->d)) == QM_OK) {
            fwrite(data, 1, len, a.f);
            free(data);
        }
        free(p);
    }
    if (st != QM_OK) {
        qm_afile_abort(&a);
        return st;
    }
    return qm_afile_commit(&a, r->d);
}

/* ---- the run ---------------------------------------------------------------------------------- */

/* Plan and model must describe the same checkpoint, tensor for tensor. */
static qm_status match_plan(run *r, const char *config_sha)
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
            st = qm_diag_fail(r->d, QM_EINVAL, "the plan's shape of '%s' differs from the checkpoint's", t->name);
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

static qm_status make_dir(const char *path, qm_diag *d)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return qm_diag_fail(d, QM_EIO, "%s: %s", path, strerror(errno));
    return QM_OK;
}

static void free_done(run *r)
{
    for (size_t i = 0; i < r->n_done; i++)
        qm_qresult_free(&r->done[i].r);
    r->n_done = 0;
}

static qm_status one_layer(run *r, int L, char *fake_dir)
{
    char *logbuf = NULL;
    size_t loglen = 0;
    qm_status st = qm_layer_load(r->m, L, &r->w, r->d);
    if (st != QM_OK)
        return st;
    r->log = open_memstream(&logbuf, &loglen);
    if (!r->log)
        st = qm_diag_fail(r->d, QM_ENOMEM, "out of memory");
    if (st == QM_OK)
        st = attention(r);
    if (st == QM_OK)
        st = ffn(r);
    if (st == QM_OK)
        st = pass(r, NULL, r->x); /* the quantized layer's outputs feed the next */
    if (r->log)
        fclose(r->log);
    r->log = NULL;
    if (st == QM_OK)
        st = write_shard(r, L, r->out, 0);
    if (st == QM_OK && fake_dir)
        st = write_shard(r, L, fake_dir, 1);
    char file[64];
    snprintf(file, sizeof file, "layer-%05d.log", L);
    if (st == QM_OK)
        st = save_blob(r, file, logbuf, loglen);
    if (st == QM_OK)
        st = save_blob(r, "hidden.f32", r->x, (size_t)r->B * r->S * (size_t)r->m->cfg.hidden * sizeof *r->x);
    free(logbuf);
    free_done(r);
    qm_layer_free(&r->w);
    return st;
}

qm_status qm_quantize(const char *plan_path, const char *model_dir, const char *calib_path, const char *out_dir,
                      const qm_quant_opts *o, qm_quant_report *rep, qm_diag *d)
{
    memset(rep, 0, sizeof *rep);
    run r = {.o = o, .out = out_dir, .rep = rep, .d = d, .t0 = now()};
    qm_tokens toks = {0};
    qm_head_w head = {0};
    state cur = {0}, old = {0};
    char *fake_dir = NULL, *sdir = NULL;
    qm_status st = qm_model_open(model_dir, &r.m, d);
    if (st == QM_OK)
        st = qm_plan_read(plan_path, &r.plan, d);
    if (st == QM_OK)
        st = qm_sha256_file(r.m->config_path, cur.config, d);
    if (st == QM_OK)
        st = match_plan(&r, cur.config);
    if (st == QM_OK)
        st = qm_sha256_file(plan_path, cur.plan, d);
    if (st == QM_OK)
        st = qm_sha256_file(calib_path, cur.calib, d);
    if (st == QM_OK)
        st = r.m->cfg.byte_tokenizer ? qm_tokens_from_text(calib_path, &toks, d)
                                     : qm_tokens_from_ids(calib_path, r.m->cfg.vocab, &toks, d);
    if (st == QM_OK) {
        r.S = o->ctx;
        r.B = (int)(toks.n / (size_t)o->ctx) < o->samples ? (int)(toks.n / (size_t)o->ctx) : o->samples;
        if (r.B < 1)
            st = qm_diag_fail(d, QM_EINVAL, "%s: %zu tokens, fewer than one window of %d", calib_path, toks.n, o->ctx);
    }
    snprintf(cur.settings, sizeof cur.settings, "ctx=%d samples=%d damp=%g min_expert_tokens=%d fallback=%s "
             "all_experts=%d fake_quant=%d", r.S, r.B, o->damp, o->min_expert_tokens,
             o->fallback_pooled ? "pooled" : "rtn", o->all_experts, o->fake_quant);
    if (st == QM_OK && (st = make_dir(out_dir, d)) == QM_OK && (sdir = qm_strfmt("%s/.qmoe-state", out_dir)))
        st = make_dir(sdir, d);
    if (st == QM_OK && o->fake_quant && (fake_dir = qm_strfmt("%s/fake-quant", out_dir)))
        st = make_dir(fake_dir, d);
    if (st == QM_OK && read_state(&r, &old)) {
        if (strcmp(old.plan, cur.plan) || strcmp(old.config, cur.config) || strcmp(old.calib, cur.calib) ||
            strcmp(old.settings, cur.settings))
            st = qm_diag_fail(d, QM_EINVAL, "%s holds a run of another %s; remove it or choose another -o", out_dir,
                              strcmp(old.plan, cur.plan) ? "plan" : strcmp(old.config, cur.config) ? "model"
                              : strcmp(old.calib, cur.calib) ? "calibration text" : "set of options");
        else
            cur.layers_done = old.layers_done;
    }
    size_t T = (size_t)r.B * r.S, D = r.m ? (size_t)r.m->cfg.hidden : 0;
    if (st == QM_OK && !(r.x = malloc(T * D * sizeof *r.x)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu calibration rows", T);
    int total = r.m ? (int)r.m->cfg.layers : 0;
    if (st == QM_OK && cur.layers_done > 0 && cur.layers_done < total) {
        st = load_blob(&r, "hidden.f32", r.x, T * D * sizeof *r.x);
        rep->layers_resumed = cur.layers_done;
        qm_diag_note(d, "%s: resuming after layer %d of %d", out_dir, cur.layers_done - 1, total);
    } else if (st == QM_OK && cur.layers_done == 0) {
        if ((st = qm_head_load(r.m, &head, d)) == QM_OK)
            qm_forward_embed(r.m, &head, toks.ids, (int)T, r.x);
        qm_head_free(&head);
        if (st == QM_OK)
            st = write_state(&r, &cur);
    }
    for (int L = cur.layers_done; st == QM_OK && L < total; L++) {
        double t = now();
        say(&r, "layer %d/%d: %d x %d calibration tokens", L, total, r.B, r.S);
        if ((st = one_layer(&r, L, fake_dir)) == QM_OK) {
            cur.layers_done = L + 1;
            st = write_state(&r, &cur);
        }
        double left = (now() - t) * (total - L - 1);
        say(&r, "layer %d/%d done in %.1f s, ETA %.0f s", L, total, now() - t, left);
    }
    rep->layers = total;
    if (st == QM_OK)
        st = write_shard(&r, -1, out_dir, 0);
    if (st == QM_OK && fake_dir)
        st = write_shard(&r, -1, fake_dir, 1);
    if (st == QM_OK)
        st = finish(&r, plan_path, out_dir, 0);
    if (st == QM_OK && fake_dir)
        st = finish(&r, plan_path, fake_dir, 1);
    if (st == QM_OK) {
        char *h = state_path(&r, "hidden.f32");
        if (h)
            remove(h); /* the run is complete: the hidden states are no longer needed */
        free(h);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        rep->peak_rss_kib = ru.ru_maxrss;
    rep->seconds = now() - r.t0;
    free(r.x);
    free(r.done);
    free(r.by_tensor);
    free(fake_dir);
    free(sdir);
    qm_tokens_free(&toks);
    qm_plan_free(r.plan);
    qm_model_close(r.m);
    return st;
}
