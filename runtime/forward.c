/* forward.c: the MoE decoder forward pass (see forward.h for the equations). */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/forward.h"
#include "runtime/fwd_kernels.h"
#include "model/gguf.h"
#include "runtime/pack.h"

/* ---- loading ------------------------------------------------------------------ */

/* Float32 copy of tensor i of m; caller frees. */
static float *load_f32(const qm_model *m, size_t i, qm_diag *d)
{
    const qm_tensor *mt = &m->t[i];
    const qm_st_tensor *t = mt->st;
    if (!mt->gguf && qm_st_check_live(m->ckpt->files[mt->file], t, d) != QM_OK)
        return NULL;
    float *f = malloc((size_t)mt->numel * sizeof *f);
    if (!f) {
        qm_diag_fail(d, QM_ENOMEM, "out of memory loading '%s'", t->name);
        return NULL;
    }
    if (mt->gguf) { /* a GGUF model's (qm_model_attach_gguf) */
        if (qm_gguf_load_f32(m, i, f, d) == QM_OK)
            return f;
        free(f);
        return NULL;
    }
    if (mt->bits) { /* GPTQ-packed: dequantized on load */
        uint16_t *sc = malloc((size_t)mt->scales->numel * sizeof *sc);
        if (!sc) {
            free(f);
            qm_diag_fail(d, QM_ENOMEM, "out of memory loading '%s'", t->name);
            return NULL;
        }
        for (uint64_t k = 0; k < mt->scales->numel; k++) {
            float v;
            if (mt->scales->dtype == QM_DT_F32)
                memcpy(&v, (const char *)mt->scales->data + 4 * k, 4);
            sc[k] = mt->scales->dtype == QM_DT_F32 ? qm_f32_to_f16(v)
                                                   : (uint16_t)(((const unsigned char *)mt->scales->data)[2 * k] |
                                                                ((const unsigned char *)mt->scales->data)[2 * k + 1] << 8);
        }
        qm_dequant_packed(t->data, mt->qzeros->data, sc, mt->g_idx->data, (int)mt->shape[0], (int)mt->shape[1],
                          mt->groups, mt->bits, (int)m->cfg.zero_offset, f);
        free(sc);
        size_t bad = qm_first_nonfinite(f, (size_t)mt->numel); /* an infinite or NaN scale */
        if (bad < (size_t)mt->numel) {
            qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' dequantizes to %g at element %zu [%zu, %zu]; its scales "
                         "must be finite", m->ckpt->files[m->t[i].file]->path, t->name, f[bad], bad,
                         bad / (size_t)mt->shape[1], bad % (size_t)mt->shape[1]);
            free(f);
            return NULL;
        }
        return f;
    }
    if (qm_st_to_f32(m->ckpt->files[m->t[i].file]->path, t, f, d) != QM_OK) {
        free(f);
        return NULL;
    }
    return f;
}

/* Where each per-layer part goes in a qm_layer_w: a vector, a linear's
 * weight or a linear's bias.  Routed experts are placed by index instead. */
enum { SLOT_NONE, SLOT_VEC, SLOT_W, SLOT_B };
static const struct {
    int kind;
    size_t off;
} slots[QM_PART_COUNT] = {
    [QM_PART_ATTN_NORM] = {SLOT_VEC, offsetof(qm_layer_w, attn_norm)},
    [QM_PART_FFN_NORM] = {SLOT_VEC, offsetof(qm_layer_w, ffn_norm)},
    [QM_PART_Q_NORM] = {SLOT_VEC, offsetof(qm_layer_w, q_norm)},
    [QM_PART_K_NORM] = {SLOT_VEC, offsetof(qm_layer_w, k_norm)},
    [QM_PART_SHARED_ROUTER] = {SLOT_VEC, offsetof(qm_layer_w, shared_gate)},
    [QM_PART_Q] = {SLOT_W, offsetof(qm_layer_w, q)},
    [QM_PART_K] = {SLOT_W, offsetof(qm_layer_w, k)},
    [QM_PART_V] = {SLOT_W, offsetof(qm_layer_w, v)},
    [QM_PART_O] = {SLOT_W, offsetof(qm_layer_w, o)},
    [QM_PART_Q_BIAS] = {SLOT_B, offsetof(qm_layer_w, q)},
    [QM_PART_K_BIAS] = {SLOT_B, offsetof(qm_layer_w, k)},
    [QM_PART_V_BIAS] = {SLOT_B, offsetof(qm_layer_w, v)},
    [QM_PART_ROUTER] = {SLOT_W, offsetof(qm_layer_w, router)},
    [QM_PART_SHARED_GATE] = {SLOT_W, offsetof(qm_layer_w, sgate)},
    [QM_PART_SHARED_UP] = {SLOT_W, offsetof(qm_layer_w, sup)},
    [QM_PART_SHARED_DOWN] = {SLOT_W, offsetof(qm_layer_w, sdown)},
    [QM_PART_MLP_GATE] = {SLOT_W, offsetof(qm_layer_w, mgate)},
    [QM_PART_MLP_UP] = {SLOT_W, offsetof(qm_layer_w, mup)},
    [QM_PART_MLP_DOWN] = {SLOT_W, offsetof(qm_layer_w, mdown)},
};

static void free_lin(qm_lin *l)
{
    free(l->w);
    free(l->b);
}

void qm_layer_free(qm_layer_w *w)
{
    free(w->attn_norm);
    free(w->ffn_norm);
    free(w->q_norm);
    free(w->k_norm);
    free(w->shared_gate);
    qm_lin *lins[] = {&w->q, &w->k, &w->v, &w->o, &w->router, &w->sgate, &w->sup, &w->sdown,
                      &w->mgate, &w->mup, &w->mdown};
    for (size_t i = 0; i < sizeof lins / sizeof *lins; i++)
        free_lin(lins[i]);
    if (w->gate)
        for (int e = 0; w->gate && e < w->router.out; e++) {
            free_lin(&w->gate[e]);
            free_lin(&w->up[e]);
            free_lin(&w->down[e]);
        }
    free(w->gate);
    free(w->up);
    free(w->down);
    memset(w, 0, sizeof *w);
}

qm_status qm_layer_load(const qm_model *m, int layer, int experts, qm_layer_w *w, qm_diag *d)
{
    memset(w, 0, sizeof *w);
    w->layer = layer;
    w->moe = m->is_moe[layer];
    int E = (int)m->cfg.experts;
    if (w->moe) {
        w->gate = calloc((size_t)E, sizeof *w->gate);
        w->up = calloc((size_t)E, sizeof *w->up);
        w->down = calloc((size_t)E, sizeof *w->down);
        if (!w->gate || !w->up || !w->down) {
            qm_layer_free(w);
            return qm_diag_fail(d, QM_ENOMEM, "out of memory loading layer %d", layer);
        }
        w->router.out = E; /* so qm_layer_free knows the expert count on any path */
    }
    for (size_t i = 0; i < m->n; i++) {
        const qm_tensor *t = &m->t[i];
        if (t->layer != layer || (!experts && t->expert >= 0 && qm_parts[t->part].linear))
            continue;
        float *f = load_f32(m, i, d);
        if (!f) {
            qm_layer_free(w);
            return QM_EFORMAT;
        }
        qm_lin *lin = NULL;
        if (t->part == QM_PART_EXPERT_GATE)
            lin = &w->gate[t->expert];
        else if (t->part == QM_PART_EXPERT_UP)
            lin = &w->up[t->expert];
        else if (t->part == QM_PART_EXPERT_DOWN)
            lin = &w->down[t->expert];
        else if (slots[t->part].kind == SLOT_VEC)
            *(float **)((char *)w + slots[t->part].off) = f;
        else if (slots[t->part].kind == SLOT_B)
            ((qm_lin *)((char *)w + slots[t->part].off))->b = f;
        else
            lin = (qm_lin *)((char *)w + slots[t->part].off);
        if (lin) {
            lin->w = f;
            lin->out = (int)t->shape[0];
            lin->in = (int)t->shape[1];
        }
    }
    return QM_OK;
}

qm_status qm_expert_load(const qm_model *m, int layer, int e, qm_layer_w *w, qm_diag *d)
{
    qm_lin *lins[] = {&w->gate[e], &w->up[e], &w->down[e]};
    const qm_part parts[] = {QM_PART_EXPERT_GATE, QM_PART_EXPERT_UP, QM_PART_EXPERT_DOWN};
    for (size_t i = 0; i < m->n; i++)
        for (int k = 0; k < 3; k++) {
            const qm_tensor *t = &m->t[i];
            if (t->layer != layer || t->expert != e || t->part != parts[k])
                continue;
            if (!(lins[k]->w = load_f32(m, i, d))) {
                qm_expert_free(w, e);
                return QM_EFORMAT;
            }
            lins[k]->out = (int)t->shape[0];
            lins[k]->in = (int)t->shape[1];
        }
    return QM_OK;
}

void qm_expert_free(qm_layer_w *w, int e)
{
    free_lin(&w->gate[e]);
    free_lin(&w->up[e]);
    free_lin(&w->down[e]);
    memset(&w->gate[e], 0, sizeof w->gate[e]);
    memset(&w->up[e], 0, sizeof w->up[e]);
    memset(&w->down[e], 0, sizeof w->down[e]);
}

void qm_head_free(qm_head_w *h)
{
    if (h->lm_head != h->embed)
        free(h->lm_head);
    free(h->embed);
    free(h->norm);
    memset(h, 0, sizeof *h);
}

qm_status qm_head_load(const qm_model *m, int parts, qm_head_w *h, qm_diag *d)
{
    memset(h, 0, sizeof *h);
    long embed = -1, head = -1, norm = -1;
    for (size_t i = 0; i < m->n; i++) {
        if (m->t[i].part == QM_PART_EMBED)
            embed = (long)i;
        else if (m->t[i].part == QM_PART_LM_HEAD)
            head = (long)i;
        else if (m->t[i].part == QM_PART_FINAL_NORM)
            norm = (long)i;
    }
    if (head < 0)
        head = embed; /* tie_word_embeddings */
    long want[3] = {parts & QM_HEAD_EMBED ? embed : -1, parts & QM_HEAD_OUT ? norm : -1,
                    parts & QM_HEAD_OUT && head != embed ? head : -1};
    float **dst[3] = {&h->embed, &h->norm, &h->lm_head};
    for (int k = 0; k < 3; k++)
        if (want[k] >= 0 && !(*dst[k] = load_f32(m, (size_t)want[k], d))) {
            qm_head_free(h);
            return QM_EFORMAT;
        }
    if ((parts & QM_HEAD_OUT) && head == embed && head >= 0)
        h->lm_head = h->embed ? h->embed : load_f32(m, (size_t)embed, d);
    if ((parts & QM_HEAD_OUT) && head >= 0 && !h->lm_head) {
        qm_head_free(h);
        return QM_EFORMAT;
    }
    return QM_OK;
}

/* ---- kernels ---------------------------------------------------------------------- */

/* y (n, out) = x (n, in) W^T (+ b) + beta y.  beta 1 also spares OpenBLAS
 * its pass zeroing y. */
static void lin(const qm_lin *l, const float *x, int n, float beta, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.0f, x, l->in, l->w,
                l->in, beta, y, l->out);
    if (l->b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < l->out; j++)
                y[(size_t)i * l->out + j] += l->b[j];
}

void qm_lin_apply(const qm_lin *l, const float *x, int n, float *y) { lin(l, x, n, 0.0f, y); }

/* RMSNorm of each of n rows of width dim, with weight w: y = x / rms(x) * w. */
static void rmsnorm(const float *x, const float *w, int n, int dim, double eps, float *y)
{
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim;
        float *yi = y + (size_t)i * dim;
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)xi[j] * xi[j];
        float r = (float)(1.0 / sqrt(ss / dim + eps));
        for (int j = 0; j < dim; j++)
            yi[j] = xi[j] * r * w[j];
    }
}

/* Rotate each head of rows t0..t0+n-1 of x (row t of the sequence-major batch
 * has position t % S) by the angles in cs, Hugging Face's rotate_half
 * convention: pairs (j, j + hd/2).  cs (S, hd/2, 2) holds cos, sin. */
static void rope(float *x, int t0, int n, int S, int heads, int hd, const float *cs)
{
    int half = hd / 2;
    for (int t = t0; t < t0 + n; t++) {
        const float *a = cs + (size_t)(t % S) * half * 2;
        for (int h = 0; h < heads; h++) {
            float *v = x + (size_t)t * heads * hd + (size_t)h * hd;
            for (int j = 0; j < half; j++) {
                float c = a[2 * j], s = a[2 * j + 1], x0 = v[j], x1 = v[j + half];
                v[j] = x0 * c - x1 * s;
                v[j + half] = x1 * c + x0 * s;
            }
        }
    }
}

/* The RoPE angles' cos and sin, cs (S, hd/2, 2), for positions 0..S-1. */
static void rope_table(int S, int hd, double theta, float *cs)
{
    int half = hd / 2;
    for (int p = 0; p < S; p++)
        for (int j = 0; j < half; j++) {
            float inv = 1.0f / powf((float)theta, (float)(2 * j) / (float)hd);
            float a = (float)p * inv;
            cs[((size_t)p * half + j) * 2] = cosf(a);
            cs[((size_t)p * half + j) * 2 + 1] = sinf(a);
        }
}

/* Causal attention of head h of sequence b: q (T, H*hd), k, v (T, KV*hd) ->
 * out (T, H*hd), rows of that sequence and columns of that head.  Queries go
 * in blocks of QBLOCK rows, each against only the keys it may see, so the
 * masked upper triangle is mostly never computed.  scores (QBLOCK, S) is
 * scratch. */
enum { QBLOCK = 64 };

static void attention_head(const float *q, const float *k, const float *v, int b, int h, int S, int H,
                           int KV, int hd, float *out, float *scores)
{
    int qd = H * hd, kvd = KV * hd, group = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    const float *kb = k + (size_t)b * S * kvd + (size_t)(h / group) * hd;
    const float *vb = v + (size_t)b * S * kvd + (size_t)(h / group) * hd;
    for (int r0 = 0; r0 < S; r0 += QBLOCK) {
        int rows = S - r0 < QBLOCK ? S - r0 : QBLOCK, keys = r0 + rows;
        const float *qb = q + ((size_t)b * S + r0) * qd + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, scale, qb, qd, kb, kvd,
                    0.0f, scores, keys);
        for (int i = 0; i < rows; i++) {
            int last = r0 + i; /* the query's own position */
            float *r = scores + (size_t)i * keys;
            fwdk_softmax(r, last + 1);
            memset(r + last + 1, 0, (size_t)(keys - last - 1) * sizeof *r);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f, scores, keys, vb,
                    kvd, 0.0f, out + ((size_t)b * S + r0) * qd + (size_t)h * hd, qd);
    }
}

static void hook_in(const qm_fwd_hooks *hk, int layer, qm_part p, int e, const float *x, int n, int in)
{
    if (hk && hk->linear_in && n > 0)
        hk->linear_in(hk->ctx, layer, p, e, x, n, in);
}

/* The hooks of a SwiGLU over n rows: its input x (n, in) to gate and up, its
 * activation g (n, width) to down. */
static void hook_swiglu(const qm_fwd_hooks *hk, int layer, qm_part pg, int e, const float *x,
                        const float *g, int n, int in, int width)
{
    hook_in(hk, layer, pg, e, x, n, in);
    hook_in(hk, layer, pg + 1, e, x, n, in);
    hook_in(hk, layer, pg + 2, e, g, n, width);
}

/* y (n, d) = down(silu(gate x) * up x); g, u (n, width) are scratch, and g
 * is left holding the activation down saw. */
static void swiglu(const qm_lin *gate, const qm_lin *up, const qm_lin *down, const float *x, int n,
                   float *g, float *u, float *y)
{
    qm_lin_apply(gate, x, n, g);
    qm_lin_apply(up, x, n, u);
    fwdk_silu_mul(g, u, (size_t)n * gate->out);
    qm_lin_apply(down, g, n, y);
}

/* Softmax over E logits, then the k largest (ties: lower index first). */
static void route(const float *logits, int E, int k, int renorm, float *prob, int *idx, float *w)
{
    float mx = logits[0], sum = 0;
    for (int e = 1; e < E; e++)
        mx = logits[e] > mx ? logits[e] : mx;
    for (int e = 0; e < E; e++)
        sum += prob[e] = expf(logits[e] - mx);
    for (int e = 0; e < E; e++)
        prob[e] /= sum;
    float tot = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++)
                taken |= idx[i] == e;
            if (!taken && (best < 0 || prob[e] > prob[best]))
                best = e;
        }
        idx[j] = best;
        tot += w[j] = prob[best];
    }
    if (renorm)
        for (int j = 0; j < k; j++)
            w[j] /= tot;
}

/* ---- scratch ------------------------------------------------------------------------ */

/* Row-wise work goes in chunks of ROWS rows, one task each: large enough that
 * each sgemm runs near its single-thread rate, small enough to spread over
 * the workers. */
enum { ROWS = 256 };

struct qm_fwd_ws {
    int T, S, workers;
    float *n;      /* (T, d) the normed input of attention, then of the FFN */
    float *q, *k, *v, *att; /* (T, H*hd), (T, KV*hd) x2, (T, H*hd) */
    float *scores; /* (workers, QBLOCK, S) */
    float *cs;     /* (S, hd/2, 2) RoPE cos, sin */
    float *y;      /* (T, d) the FFN's output */
    float *g, *u;  /* (T*k or T, width): activations of experts (by slot) or of a dense FFN */
    float *rows;   /* (T*k, d) each expert's gathered input rows, expert after expert */
    float *eo;     /* (T*k, d) each expert's output, same order */
    float *sh;     /* (T, d) the shared expert's output */
    float *out;    /* (T, d) the block hook's residual after the FFN */
    float *logit, *prob; /* (T, E) */
    float *rw;     /* (T, k) routing weights */
    int *idx;      /* (T, k) routed experts */
    int *tok;      /* (T*k) token*k+slot of each gathered row */
    int *at;       /* (T*k) where in rows/eo each token*k+slot went */
    int *off;      /* (E+1) start of each expert's rows */
    int *task;     /* (E + T*k/ROWS + 1, 3) expert tasks: expert, first row, rows */
};

void qm_fwd_ws_free(qm_fwd_ws *s)
{
    if (!s)
        return;
    void *ps[] = {s->n, s->q, s->k, s->v, s->att, s->scores, s->cs, s->y, s->g, s->u, s->rows, s->eo,
                  s->sh, s->out, s->logit, s->prob, s->rw, s->idx, s->tok, s->at, s->off, s->task};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        free(ps[i]);
    free(s);
}

qm_fwd_ws *qm_fwd_ws_new(const qm_model *m, int T, int S)
{
    const qm_config *c = &m->cfg;
    qm_fwd_ws *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->T = T;
    s->S = S;
    s->workers = fwdk_workers();
    size_t D = (size_t)c->hidden, qd = (size_t)(c->heads * c->head_dim),
           kvd = (size_t)(c->kv_heads * c->head_dim), E = (size_t)c->experts, k = (size_t)c->top_k;
    size_t Tk = (size_t)T * (k ? k : 1), width = (size_t)c->expert_ff * Tk;
    size_t dense = (size_t)(c->ff > c->shared_ff ? c->ff : c->shared_ff) * T;
    if (dense > width)
        width = dense;
    size_t f = sizeof(float);
    s->n = malloc((size_t)T * D * f);
    s->q = malloc((size_t)T * qd * f);
    s->k = malloc((size_t)T * kvd * f);
    s->v = malloc((size_t)T * kvd * f);
    s->att = malloc((size_t)T * qd * f);
    s->scores = malloc((size_t)s->workers * QBLOCK * S * f);
    s->cs = malloc((size_t)S * (size_t)c->head_dim * f);
    s->y = malloc((size_t)T * D * f);
    s->g = malloc(width * f);
    s->u = malloc(width * f);
    s->rows = malloc(Tk * D * f);
    s->eo = malloc(Tk * D * f);
    s->sh = malloc((size_t)T * D * f);
    s->out = malloc((size_t)T * D * f);
    s->logit = malloc((size_t)T * E * f);
    s->prob = malloc((size_t)T * E * f);
    s->rw = malloc(Tk * f);
    s->idx = malloc(Tk * sizeof(int));
    s->tok = malloc(Tk * sizeof(int));
    s->at = malloc(Tk * sizeof(int));
    s->off = malloc((E + 1) * sizeof(int));
    s->task = malloc((E + Tk / ROWS + 1) * 3 * sizeof(int));
    if (!(s->n && s->q && s->k && s->v && s->att && s->scores && s->cs && s->y && s->g && s->u &&
          s->rows && s->eo && s->sh && s->out && s->logit && s->prob && s->rw && s->idx && s->tok &&
          s->at && s->off && s->task)) {
        qm_fwd_ws_free(s);
        return NULL;
    }
    rope_table(S, (int)c->head_dim, c->rope_theta, s->cs);
    return s;
}

/* ---- one layer, as tasks over the workers ------------------------------------------ */

/* What every task of one layer's forward pass reads. */
typedef struct job {
    const qm_model *m;
    const qm_layer_w *w;
    float *x; /* (T, d) the residual stream */
    int B, S, T;
    qm_fwd_ws *s;
} job;

/* Rows [r0, r0+n) of chunk `task`. */
static int chunk(const job *j, int task, int *r0)
{
    *r0 = task * ROWS;
    return j->T - *r0 < ROWS ? j->T - *r0 : ROWS;
}

static int chunks(int T) { return (T + ROWS - 1) / ROWS; }

/* Chunk task: n1 = rmsnorm(x), q, k, v, their norms and RoPE. */
static void task_qkv(void *ctx, int task, int worker)
{
    const job *j = ctx;
    const qm_config *c = &j->m->cfg;
    const qm_layer_w *w = j->w;
    qm_fwd_ws *s = j->s;
    int r0, n = chunk(j, task, &r0), D = (int)c->hidden, H = (int)c->heads, KV = (int)c->kv_heads,
            hd = (int)c->head_dim;
    float *n1 = s->n + (size_t)r0 * D, *q = s->q + (size_t)r0 * H * hd, *k = s->k + (size_t)r0 * KV * hd;
    rmsnorm(j->x + (size_t)r0 * D, w->attn_norm, n, D, c->rms_eps, n1);
    qm_lin_apply(&w->q, n1, n, q);
    qm_lin_apply(&w->k, n1, n, k);
    qm_lin_apply(&w->v, n1, n, s->v + (size_t)r0 * KV * hd);
    if (w->q_norm) {
        int whole = (j->m->arch->flags & QM_ARCH_QK_NORM_WHOLE) != 0;
        rmsnorm(q, w->q_norm, whole ? n : n * H, whole ? H * hd : hd, c->rms_eps, q);
        rmsnorm(k, w->k_norm, whole ? n : n * KV, whole ? KV * hd : hd, c->rms_eps, k);
    }
    rope(s->q, r0, n, j->S, H, hd, s->cs);
    rope(s->k, r0, n, j->S, KV, hd, s->cs);
}

/* Task (sequence, head): that head's attention output. */
static void task_attention(void *ctx, int task, int worker)
{
    const job *j = ctx;
    const qm_config *c = &j->m->cfg;
    int H = (int)c->heads;
    attention_head(j->s->q, j->s->k, j->s->v, task / H, task % H, j->S, H, (int)c->kv_heads,
                   (int)c->head_dim, j->s->att, j->s->scores + (size_t)worker * QBLOCK * j->s->S);
}

/* Chunk task: x += o(att), n2 = rmsnorm(x), and for an MoE layer the
 * router's logits and choices. */
static void task_o(void *ctx, int task, int worker)
{
    const job *j = ctx;
    const qm_config *c = &j->m->cfg;
    const qm_layer_w *w = j->w;
    qm_fwd_ws *s = j->s;
    int r0, n = chunk(j, task, &r0), D = (int)c->hidden, E = (int)c->experts, k = (int)c->top_k;
    float *x = j->x + (size_t)r0 * D, *n2 = s->n + (size_t)r0 * D;
    lin(&w->o, s->att + (size_t)r0 * w->o.in, n, 1.0f, x); /* the residual */
    rmsnorm(x, w->ffn_norm, n, D, c->rms_eps, n2);
    if (!w->moe)
        return;
    qm_lin_apply(&w->router, n2, n, s->logit + (size_t)r0 * E);
    for (int t = r0; t < r0 + n; t++)
        route(s->logit + (size_t)t * E, E, k, c->norm_topk, s->prob + (size_t)t * E,
              s->idx + (size_t)t * k, s->rw + (size_t)t * k);
}

/* Expert task: gather the expert's rows of n2, run it on them into eo. */
static void task_expert(void *ctx, int task, int worker)
{
    const job *j = ctx;
    const qm_layer_w *w = j->w;
    qm_fwd_ws *s = j->s;
    int D = (int)j->m->cfg.hidden, k = (int)j->m->cfg.top_k, F = (int)j->m->cfg.expert_ff;
    int e = s->task[3 * task], r0 = s->task[3 * task + 1], n = s->task[3 * task + 2];
    float *rows = s->rows + (size_t)r0 * D;
    for (int i = 0; i < n; i++)
        memcpy(rows + (size_t)i * D, s->n + (size_t)(s->tok[r0 + i] / k) * D, (size_t)D * sizeof(float));
    swiglu(&w->gate[e], &w->up[e], &w->down[e], rows, n, s->g + (size_t)r0 * F, s->u + (size_t)r0 * F,
           s->eo + (size_t)r0 * D);
}

/* Rows [r0, r0+n) of the FFN's part after the routed experts: a dense
 * layer's SwiGLU into y, or the shared expert (if any) added to y. */
static void ffn_rest(const qm_config *c, const qm_layer_w *w, qm_fwd_ws *s, const float *n2_all, float *y_all,
                     int r0, int n)
{
    int D = (int)c->hidden;
    float *y = y_all + (size_t)r0 * D;
    const float *n2 = n2_all + (size_t)r0 * D;
    if (!w->moe) {
        int F = w->mgate.out;
        swiglu(&w->mgate, &w->mup, &w->mdown, n2, n, s->g + (size_t)r0 * F, s->u + (size_t)r0 * F, y);
        return;
    }
    if (!w->sgate.w)
        return;
    int F = w->sgate.out;
    float *sh = s->sh + (size_t)r0 * D;
    swiglu(&w->sgate, &w->sup, &w->sdown, n2, n, s->g + (size_t)r0 * F, s->u + (size_t)r0 * F, sh);
    for (int t = 0; t < n; t++) {
        float scale = 1.0f;
        if (w->shared_gate) {
            float z = 0;
            for (int i = 0; i < D; i++)
                z += w->shared_gate[i] * n2[(size_t)t * D + i];
            scale = 1.0f / (1.0f + expf(-z));
        }
        for (int i = 0; i < D; i++)
            y[(size_t)t * D + i] += scale * sh[(size_t)t * D + i];
    }
}

/* y[t] += wt * o: one routed expert's output added to its token's sum. */
static void add_weighted(float *yt, float wt, const float *o, int D)
{
    for (int i = 0; i < D; i++)
        yt[i] += wt * o[i];
}

/* Chunk task: y = the FFN's output, a dense SwiGLU or the sum of each
 * token's experts (in expert order, weighted) plus the shared expert. */
static void task_ffn(void *ctx, int task, int worker)
{
    const job *j = ctx;
    const qm_config *c = &j->m->cfg;
    const qm_layer_w *w = j->w;
    qm_fwd_ws *s = j->s;
    int r0, n = chunk(j, task, &r0), D = (int)c->hidden, k = (int)c->top_k;
    if (w->moe) {
        memset(s->y + (size_t)r0 * D, 0, (size_t)n * D * sizeof *s->y);
        for (int t = r0; t < r0 + n; t++) {
            for (int done = 0, prev = -1; done < k; done++) { /* slots by increasing expert */
                int jb = -1;
                for (int jj = 0; jj < k; jj++) {
                    int e = s->idx[(size_t)t * k + jj];
                    if (e > prev && (jb < 0 || e < s->idx[(size_t)t * k + jb]))
                        jb = jj;
                }
                prev = s->idx[(size_t)t * k + jb];
                add_weighted(s->y + (size_t)t * D, s->rw[(size_t)t * k + jb],
                             s->eo + (size_t)s->at[(size_t)t * k + jb] * D, D);
            }
        }
    }
    ffn_rest(c, w, s, s->n, s->y, r0, n);
}

/* Sort the routed (token, slot)s by expert into s->tok, s->at, s->off and
 * cut each expert's rows into tasks of at most ROWS rows; returns the task
 * count.  Within an expert rows keep token order. */
static int plan_experts(const qm_config *c, int T, qm_fwd_ws *s)
{
    int E = (int)c->experts, k = (int)c->top_k, tasks = 0;
    memset(s->off, 0, (size_t)(E + 1) * sizeof *s->off);
    for (int i = 0; i < T * k; i++)
        s->off[s->idx[i] + 1]++;
    for (int e = 0; e < E; e++)
        s->off[e + 1] += s->off[e];
    for (int e = 0; e < E; e++)
        for (int r = s->off[e]; r < s->off[e + 1]; r += ROWS) {
            s->task[3 * tasks] = e;
            s->task[3 * tasks + 1] = r;
            s->task[3 * tasks + 2] = s->off[e + 1] - r < ROWS ? s->off[e + 1] - r : ROWS;
            tasks++;
        }
    for (int i = 0; i < T * k; i++) { /* off[e] becomes the end of e's rows */
        int at = s->off[s->idx[i]]++;
        s->tok[at] = i;
        s->at[i] = at;
    }
    for (int e = E; e > 0; e--) /* and back to its start */
        s->off[e] = s->off[e - 1];
    s->off[0] = 0;
    return tasks;
}

qm_status qm_forward_layer(const qm_model *m, const qm_layer_w *w, float *x, int B, int S,
                           qm_fwd_ws *ws, const qm_fwd_hooks *hk, qm_diag *d)
{
    const qm_config *c = &m->cfg;
    int T = B * S, D = (int)c->hidden, H = (int)c->heads, hd = (int)c->head_dim, L = w->layer;
    qm_fwd_ws *own = NULL;
    if (!ws || ws->T < T || ws->S < S) {
        if (!(own = ws = qm_fwd_ws_new(m, T, S)))
            return qm_diag_fail(d, QM_ENOMEM, "out of memory in the forward pass of layer %d", L);
    }
    job j = {m, w, x, B, S, T, ws};
    int P = ws->workers;
    /* attention; the hooks see each linear's whole input once it is computed */
    fwdk_parallel(P, chunks(T), task_qkv, &j);
    hook_in(hk, L, QM_PART_Q, -1, ws->n, T, D);
    hook_in(hk, L, QM_PART_K, -1, ws->n, T, D);
    hook_in(hk, L, QM_PART_V, -1, ws->n, T, D);
    fwdk_parallel(P, B * H, task_attention, &j);
    hook_in(hk, L, QM_PART_O, -1, ws->att, T, H * hd);
    /* feed-forward */
    fwdk_parallel(P, chunks(T), task_o, &j);
    if (hk && hk->ffn_in)
        hk->ffn_in(hk->ctx, L, ws->n, x, T, D);
    if (w->moe) {
        int k = (int)c->top_k;
        hook_in(hk, L, QM_PART_ROUTER, -1, ws->n, T, D);
        if (hk && hk->routing)
            hk->routing(hk->ctx, L, ws->idx, ws->rw, T, k);
    }
    if (hk && hk->stop_before_ffn) {
        qm_fwd_ws_free(own);
        return QM_OK;
    }
    if (w->moe) {
        fwdk_parallel(P, plan_experts(c, T, ws), task_expert, &j);
        for (int e = 0; e < c->experts; e++) {
            int r0 = ws->off[e];
            hook_swiglu(hk, L, QM_PART_EXPERT_GATE, e, ws->rows + (size_t)r0 * D,
                        ws->g + (size_t)r0 * c->expert_ff, ws->off[e + 1] - r0, D, (int)c->expert_ff);
        }
    }
    fwdk_parallel(P, chunks(T), task_ffn, &j);
    if (!w->moe)
        hook_swiglu(hk, L, QM_PART_MLP_GATE, -1, ws->n, ws->g, T, D, w->mgate.out);
    else if (w->sgate.w)
        hook_swiglu(hk, L, QM_PART_SHARED_GATE, -1, ws->n, ws->g, T, D, w->sgate.out);
    if (hk && hk->block) {
        for (size_t i = 0; i < (size_t)T * D; i++)
            ws->out[i] = x[i] + ws->y[i];
        hk->block(hk->ctx, L, ws->n, ws->y, x, ws->out, T, D);
    }
    qm_status st = qm_forward_residual(m, L, x, ws->y, T, S, d);
    qm_fwd_ws_free(own);
    return st;
}

qm_status qm_forward_residual(const qm_model *m, int L, float *x, const float *y, int T, int S, qm_diag *d)
{
    size_t D = (size_t)m->cfg.hidden;
    for (size_t i = 0; i < (size_t)T * D; i++)
        x[i] += y[i];
    /* an overflow or NaN here would reach every later layer and every
     * metric as a number: stop at the layer where it first appears */
    size_t bad = qm_first_nonfinite(x, (size_t)T * D);
    if (bad < (size_t)T * D)
        return qm_diag_fail(d, QM_EINVAL, "layer %d: the hidden state is %g at token %zu (window %zu, position "
                            "%zu), column %zu; the model's weights or inputs overflow", L, x[bad], bad / D,
                            bad / D / S, bad / D % S, bad % D);
    return QM_OK;
}

/* ---- the FFN piece by piece ----------------------------------------------------------- */

/* What the tasks of qm_ffn_add_expert() and qm_ffn_add_rest() read. */
typedef struct piece_job {
    const qm_config *c;
    const qm_layer_w *w;           /* qm_ffn_add_rest() */
    const qm_lin *g, *u, *dn;      /* qm_ffn_add_expert() */
    const float *n2;
    float *y;
    int n;                         /* rows */
    qm_fwd_ws *s;
} piece_job;

/* Task: ROWS gathered rows of one expert, as task_expert() runs them. */
static void task_piece(void *ctx, int task, int worker)
{
    const piece_job *j = ctx;
    int D = (int)j->c->hidden, F = j->g->out, r0 = task * ROWS, n = j->n - r0 < ROWS ? j->n - r0 : ROWS;
    swiglu(j->g, j->u, j->dn, j->s->rows + (size_t)r0 * D, n, j->s->g + (size_t)r0 * F, j->s->u + (size_t)r0 * F,
           j->s->eo + (size_t)r0 * D);
}

/* Routed expert e's output rows into ws->eo, in token order; returns their number. */
static int expert_rows(const qm_model *m, const qm_lin *gate, const qm_lin *up, const qm_lin *down, int e,
                       const float *n2, const int *idx, int T, qm_fwd_ws *ws)
{
    int D = (int)m->cfg.hidden, k = (int)m->cfg.top_k, n = 0;
    for (int i = 0; i < T * k; i++) /* the expert's rows in token order, as plan_experts() lays them out */
        if (idx[i] == e) {
            memcpy(ws->rows + (size_t)n * D, n2 + (size_t)(i / k) * D, (size_t)D * sizeof *ws->rows);
            ws->tok[n++] = i;
        }
    piece_job j = {&m->cfg, NULL, gate, up, down, n2, NULL, n, ws};
    fwdk_parallel(ws->workers, chunks(n), task_piece, &j);
    return n;
}

void qm_ffn_expert_apply(const qm_model *m, int e, const int *idx, const float *rw, int T, const float *eo, float *y)
{
    int D = (int)m->cfg.hidden, k = (int)m->cfg.top_k, r = 0;
    for (int i = 0; i < T * k; i++)
        if (idx[i] == e)
            add_weighted(y + (size_t)(i / k) * D, rw[i], eo + (size_t)r++ * D, D);
}

void qm_ffn_add_expert(const qm_model *m, const qm_lin *gate, const qm_lin *up, const qm_lin *down, int e,
                       const float *n2, const int *idx, const float *rw, int T, qm_fwd_ws *ws, float *y)
{
    expert_rows(m, gate, up, down, e, n2, idx, T, ws);
    qm_ffn_expert_apply(m, e, idx, rw, T, ws->eo, y);
}

int qm_ffn_expert_out(const qm_model *m, const qm_lin *gate, const qm_lin *up, const qm_lin *down, int e,
                      const float *n2, const int *idx, int T, qm_fwd_ws *ws, float *eo)
{
    int n = expert_rows(m, gate, up, down, e, n2, idx, T, ws);
    memcpy(eo, ws->eo, (size_t)n * m->cfg.hidden * sizeof *eo);
    return n;
}

/* Chunk task of qm_ffn_add_rest(). */
static void task_rest(void *ctx, int task, int worker)
{
    const piece_job *j = ctx;
    int r0 = task * ROWS, n = j->n - r0 < ROWS ? j->n - r0 : ROWS;
    ffn_rest(j->c, j->w, j->s, j->n2, j->y, r0, n);
}

void qm_ffn_add_rest(const qm_model *m, const qm_layer_w *w, const float *n2, int T, qm_fwd_ws *ws, float *y)
{
    piece_job j = {&m->cfg, w, NULL, NULL, NULL, n2, y, T, ws};
    fwdk_parallel(ws->workers, chunks(T), task_rest, &j);
}

void qm_forward_embed(const qm_model *m, const qm_head_w *h, const int *tokens, int n, float *x)
{
    size_t D = (size_t)m->cfg.hidden;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * D, h->embed + (size_t)tokens[i] * D, D * sizeof(float));
}

typedef struct head_job {
    const qm_model *m;
    const qm_head_w *h;
    float *x, *logits;
    int n;
} head_job;

/* Chunk task of qm_forward_logits. */
static void task_logits(void *ctx, int task, int worker)
{
    const head_job *j = ctx;
    int D = (int)j->m->cfg.hidden, V = (int)j->m->cfg.vocab, r0 = task * ROWS;
    int n = j->n - r0 < ROWS ? j->n - r0 : ROWS;
    float *x = j->x + (size_t)r0 * D;
    rmsnorm(x, j->h->norm, n, D, j->m->cfg.rms_eps, x);
    qm_lin head = {j->h->lm_head, NULL, V, D};
    qm_lin_apply(&head, x, n, j->logits + (size_t)r0 * V);
}

void qm_forward_logits(const qm_model *m, const qm_head_w *h, float *x, int n, float *logits)
{
    head_job j = {m, h, x, logits, n};
    fwdk_parallel(fwdk_workers(), chunks(n), task_logits, &j);
}
