/* forward.c: the MoE decoder forward pass (see forward.h for the equations). */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/forward.h"
#include "runtime/pack.h"

/* ---- loading ------------------------------------------------------------------ */

/* Float32 copy of tensor i of m; caller frees. */
static float *load_f32(const qm_model *m, size_t i, qm_diag *d)
{
    const qm_tensor *mt = &m->t[i];
    const qm_st_tensor *t = mt->st;
    float *f = malloc((size_t)mt->numel * sizeof *f);
    if (!f) {
        qm_diag_fail(d, QM_ENOMEM, "out of memory loading '%s'", t->name);
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
        return f;
    }
    if (qm_to_f32(t->dtype, t->data, f, (size_t)t->numel) != 0) {
        qm_diag_fail(d, QM_EUNSUPPORTED, "%s: tensor '%s' is %s; weights must be F32, F16 or BF16",
                     m->ckpt->files[m->t[i].file]->path, t->name, qm_dtype_name(t->dtype));
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

qm_status qm_layer_load(const qm_model *m, int layer, qm_layer_w *w, qm_diag *d)
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
        if (t->layer != layer)
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

void qm_head_free(qm_head_w *h)
{
    if (h->lm_head != h->embed)
        free(h->lm_head);
    free(h->embed);
    free(h->norm);
    memset(h, 0, sizeof *h);
}

qm_status qm_head_load(const qm_model *m, qm_head_w *h, qm_diag *d)
{
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < m->n; i++) {
        float **dst = m->t[i].part == QM_PART_EMBED      ? &h->embed
                      : m->t[i].part == QM_PART_LM_HEAD  ? &h->lm_head
                      : m->t[i].part == QM_PART_FINAL_NORM ? &h->norm
                                                         : NULL;
        if (dst && !(*dst = load_f32(m, i, d))) {
            qm_head_free(h);
            return QM_EFORMAT;
        }
    }
    if (!h->lm_head)
        h->lm_head = h->embed; /* tie_word_embeddings */
    return QM_OK;
}

/* ---- kernels ---------------------------------------------------------------------- */

void qm_lin_apply(const qm_lin *l, const float *x, int n, float *y)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, l->out, l->in, 1.0f, x, l->in, l->w,
                l->in, 0.0f, y, l->out);
    if (l->b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < l->out; j++)
                y[(size_t)i * l->out + j] += l->b[j];
}

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

static float silu(float v) { return v / (1.0f + expf(-v)); }

/* Rotate each head of x (rows of `heads` heads of hd) by its row's position
 * (row i of sequence-major batch has position i % S), Hugging Face's
 * rotate_half convention: pairs (j, j + hd/2). */
static void rope(float *x, int T, int S, int heads, int hd, double theta)
{
    int half = hd / 2;
    for (int t = 0; t < T; t++) {
        float pos = (float)(t % S);
        for (int j = 0; j < half; j++) {
            float inv = 1.0f / powf((float)theta, (float)(2 * j) / (float)hd);
            float a = pos * inv, c = cosf(a), s = sinf(a);
            for (int h = 0; h < heads; h++) {
                float *v = x + (size_t)t * heads * hd + (size_t)h * hd;
                float x0 = v[j], x1 = v[j + half];
                v[j] = x0 * c - x1 * s;
                v[j + half] = x1 * c + x0 * s;
            }
        }
    }
}

/* Causal attention for B sequences of S rows: q (T, H*hd), k, v (T, KV*hd)
 * -> out (T, H*hd).  Queries go in blocks of QBLOCK rows, each against only
 * the keys it may see, so the masked upper triangle is mostly never
 * computed.  scores (S, S) is scratch. */
enum { QBLOCK = 64 };

static void attention(const float *q, const float *k, const float *v, int B, int S, int H, int KV,
                      int hd, float *out, float *scores)
{
    int qd = H * hd, kvd = KV * hd, group = H / KV;
    float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int r0 = 0; r0 < S; r0 += QBLOCK) {
                int rows = S - r0 < QBLOCK ? S - r0 : QBLOCK, keys = r0 + rows;
                const float *qb = q + ((size_t)b * S + r0) * qd + (size_t)h * hd;
                const float *kb = k + (size_t)b * S * kvd + (size_t)(h / group) * hd;
                const float *vb = v + (size_t)b * S * kvd + (size_t)(h / group) * hd;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, scale, qb, qd, kb,
                            kvd, 0.0f, scores, keys);
                for (int i = 0; i < rows; i++) {
                    int last = r0 + i; /* the query's own position */
                    float *r = scores + (size_t)i * keys, mx = r[0], sum = 0;
                    for (int j = 1; j <= last; j++)
                        mx = r[j] > mx ? r[j] : mx;
                    for (int j = 0; j <= last; j++)
                        sum += r[j] = expf(r[j] - mx);
                    float inv = 1.0f / sum;
                    for (int j = 0; j <= last; j++)
                        r[j] *= inv;
                    for (int j = last + 1; j < keys; j++)
                        r[j] = 0;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f, scores, keys,
                            vb, kvd, 0.0f, out + ((size_t)b * S + r0) * qd + (size_t)h * hd, qd);
            }
}

static void hook_in(const qm_fwd_hooks *hk, int layer, qm_part p, int e, const float *x, int n, int in)
{
    if (hk && hk->linear_in && n > 0)
        hk->linear_in(hk->ctx, layer, p, e, x, n, in);
}

/* y (n, d) = down(silu(gate x) * up x); g, u are (n, width) scratch. */
static void swiglu(const qm_lin *gate, const qm_lin *up, const qm_lin *down, const float *x, int n,
                   float *g, float *u, float *y, const qm_fwd_hooks *hk, int layer, qm_part pg, int e)
{
    hook_in(hk, layer, pg, e, x, n, gate->in);
    hook_in(hk, layer, pg + 1, e, x, n, up->in);
    qm_lin_apply(gate, x, n, g);
    qm_lin_apply(up, x, n, u);
    size_t nw = (size_t)n * gate->out;
    for (size_t i = 0; i < nw; i++)
        g[i] = silu(g[i]) * u[i];
    hook_in(hk, layer, pg + 2, e, g, n, down->in);
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

struct qm_fwd_ws {
    int T, S;
    float *n, *q, *k, *v, *att, *scores, *y, *g, *u, *rows, *eo, *out, *logit, *prob, *rw;
    int *idx, *tok;
};

void qm_fwd_ws_free(qm_fwd_ws *s)
{
    if (!s)
        return;
    float *fs[] = {s->n, s->q, s->k, s->v, s->att, s->scores, s->y, s->g, s->u, s->rows, s->eo, s->out, s->logit, s->prob, s->rw};
    for (size_t i = 0; i < sizeof fs / sizeof *fs; i++)
        free(fs[i]);
    free(s->idx);
    free(s->tok);
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
    size_t D = (size_t)c->hidden, qd = (size_t)(c->heads * c->head_dim),
           kvd = (size_t)(c->kv_heads * c->head_dim), E = (size_t)c->experts, k = (size_t)c->top_k;
    size_t width = (size_t)c->expert_ff;
    if ((size_t)c->ff > width)
        width = (size_t)c->ff;
    if ((size_t)c->shared_ff > width)
        width = (size_t)c->shared_ff;
    s->n = malloc((size_t)T * D * sizeof(float));
    s->q = malloc((size_t)T * qd * sizeof(float));
    s->k = malloc((size_t)T * kvd * sizeof(float));
    s->v = malloc((size_t)T * kvd * sizeof(float));
    s->att = malloc((size_t)T * qd * sizeof(float));
    s->scores = malloc((size_t)S * S * sizeof(float));
    s->y = malloc((size_t)T * D * sizeof(float));
    s->g = malloc((size_t)T * width * sizeof(float));
    s->u = malloc((size_t)T * width * sizeof(float));
    s->rows = malloc((size_t)T * D * sizeof(float));
    s->eo = malloc((size_t)T * D * sizeof(float));
    s->out = malloc((size_t)T * D * sizeof(float));
    s->logit = malloc((size_t)T * E * sizeof(float));
    s->prob = malloc((size_t)T * E * sizeof(float));
    s->rw = malloc((size_t)T * k * sizeof(float));
    s->idx = malloc((size_t)T * k * sizeof(int));
    s->tok = malloc((size_t)T * sizeof(int));
    if (!(s->n && s->q && s->k && s->v && s->att && s->scores && s->y && s->g && s->u && s->rows &&
          s->eo && s->out && s->logit && s->prob && s->rw && s->idx && s->tok)) {
        qm_fwd_ws_free(s);
        return NULL;
    }
    return s;
}

/* The routed experts and shared experts of an MoE block: n2 (T, D) -> y (T, D). */
static void moe_block(const qm_config *c, const qm_layer_w *w, const float *n2, int T, qm_fwd_ws *s,
                      const qm_fwd_hooks *hk)
{
    int D = (int)c->hidden, E = (int)c->experts, k = (int)c->top_k, L = w->layer;
    hook_in(hk, L, QM_PART_ROUTER, -1, n2, T, D);
    qm_lin_apply(&w->router, n2, T, s->logit);
    for (int t = 0; t < T; t++)
        route(s->logit + (size_t)t * E, E, k, c->norm_topk, s->prob + (size_t)t * E,
              s->idx + (size_t)t * k, s->rw + (size_t)t * k);
    if (hk && hk->routing)
        hk->routing(hk->ctx, L, s->idx, s->rw, T, k);
    memset(s->y, 0, (size_t)T * D * sizeof(float));
    for (int e = 0; e < E; e++) {
        int n = 0;
        for (int t = 0; t < T; t++)
            for (int j = 0; j < k; j++)
                if (s->idx[(size_t)t * k + j] == e) {
                    s->tok[n] = t * k + j; /* token and slot */
                    memcpy(s->rows + (size_t)n * D, n2 + (size_t)t * D, (size_t)D * sizeof(float));
                    n++;
                }
        if (n == 0)
            continue;
        swiglu(&w->gate[e], &w->up[e], &w->down[e], s->rows, n, s->g, s->u, s->eo, hk, L,
               QM_PART_EXPERT_GATE, e);
        for (int i = 0; i < n; i++) {
            int t = s->tok[i] / k;
            float wt = s->rw[s->tok[i]];
            float *yt = s->y + (size_t)t * D;
            const float *o = s->eo + (size_t)i * D;
            for (int j = 0; j < D; j++)
                yt[j] += wt * o[j];
        }
    }
    if (!w->sgate.w)
        return;
    swiglu(&w->sgate, &w->sup, &w->sdown, n2, T, s->g, s->u, s->eo, hk, L, QM_PART_SHARED_GATE, -1);
    for (int t = 0; t < T; t++) {
        float scale = 1.0f;
        if (w->shared_gate) {
            float z = 0;
            for (int j = 0; j < D; j++)
                z += w->shared_gate[j] * n2[(size_t)t * D + j];
            scale = 1.0f / (1.0f + expf(-z));
        }
        for (int j = 0; j < D; j++)
            s->y[(size_t)t * D + j] += scale * s->eo[(size_t)t * D + j];
    }
}

qm_status qm_forward_layer(const qm_model *m, const qm_layer_w *w, float *x, int B, int S,
                           qm_fwd_ws *ws, const qm_fwd_hooks *hk, qm_diag *d)
{
    const qm_config *c = &m->cfg;
    int T = B * S, D = (int)c->hidden, H = (int)c->heads, KV = (int)c->kv_heads, hd = (int)c->head_dim;
    int L = w->layer;
    qm_fwd_ws *own = NULL;
    if (!ws || ws->T < T || ws->S < S) {
        if (!(own = ws = qm_fwd_ws_new(m, T, S)))
            return qm_diag_fail(d, QM_ENOMEM, "out of memory in the forward pass of layer %d", L);
    }
    /* attention */
    rmsnorm(x, w->attn_norm, T, D, c->rms_eps, ws->n);
    hook_in(hk, L, QM_PART_Q, -1, ws->n, T, D);
    hook_in(hk, L, QM_PART_K, -1, ws->n, T, D);
    hook_in(hk, L, QM_PART_V, -1, ws->n, T, D);
    qm_lin_apply(&w->q, ws->n, T, ws->q);
    qm_lin_apply(&w->k, ws->n, T, ws->k);
    qm_lin_apply(&w->v, ws->n, T, ws->v);
    if (w->q_norm) {
        int whole = (m->arch->flags & QM_ARCH_QK_NORM_WHOLE) != 0;
        rmsnorm(ws->q, w->q_norm, whole ? T : T * H, whole ? H * hd : hd, c->rms_eps, ws->q);
        rmsnorm(ws->k, w->k_norm, whole ? T : T * KV, whole ? KV * hd : hd, c->rms_eps, ws->k);
    }
    rope(ws->q, T, S, H, hd, c->rope_theta);
    rope(ws->k, T, S, KV, hd, c->rope_theta);
    attention(ws->q, ws->k, ws->v, B, S, H, KV, hd, ws->att, ws->scores);
    hook_in(hk, L, QM_PART_O, -1, ws->att, T, H * hd);
    qm_lin_apply(&w->o, ws->att, T, ws->y);
    for (size_t i = 0; i < (size_t)T * D; i++)
        x[i] += ws->y[i];
    /* feed-forward */
    rmsnorm(x, w->ffn_norm, T, D, c->rms_eps, ws->n);
    if (w->moe)
        moe_block(c, w, ws->n, T, ws, hk);
    else
        swiglu(&w->mgate, &w->mup, &w->mdown, ws->n, T, ws->g, ws->u, ws->y, hk, L, QM_PART_MLP_GATE, -1);
    if (hk && hk->block) {
        for (size_t i = 0; i < (size_t)T * D; i++)
            ws->out[i] = x[i] + ws->y[i];
        hk->block(hk->ctx, L, ws->n, ws->y, x, ws->out, T, D);
    }
    for (size_t i = 0; i < (size_t)T * D; i++)
        x[i] += ws->y[i];
    qm_fwd_ws_free(own);
    return QM_OK;
}

void qm_forward_embed(const qm_model *m, const qm_head_w *h, const int *tokens, int n, float *x)
{
    size_t D = (size_t)m->cfg.hidden;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * D, h->embed + (size_t)tokens[i] * D, D * sizeof(float));
}

void qm_forward_logits(const qm_model *m, const qm_head_w *h, float *x, int n, float *logits)
{
    int D = (int)m->cfg.hidden, V = (int)m->cfg.vocab;
    rmsnorm(x, h->norm, n, D, m->cfg.rms_eps, x);
    qm_lin head = {h->lm_head, NULL, V, D};
    qm_lin_apply(&head, x, n, logits);
}

void qm_net_free(qm_net *net)
{
    if (net->layers)
        for (long long l = 0; l < net->m->cfg.layers; l++)
            qm_layer_free(&net->layers[l]);
    free(net->layers);
    qm_head_free(&net->head);
    memset(net, 0, sizeof *net);
}

qm_status qm_net_load(const qm_model *m, qm_net *net, qm_diag *d)
{
    memset(net, 0, sizeof *net);
    net->m = m;
    net->layers = calloc((size_t)m->cfg.layers, sizeof *net->layers);
    if (!net->layers)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_status st = qm_head_load(m, &net->head, d);
    for (int l = 0; st == QM_OK && l < m->cfg.layers; l++)
        st = qm_layer_load(m, l, &net->layers[l], d);
    if (st != QM_OK)
        qm_net_free(net);
    return st;
}

qm_status qm_net_forward(const qm_net *net, const int *tokens, int B, int S, float *logits,
                         const qm_fwd_hooks *hooks, qm_diag *d)
{
    const qm_model *m = net->m;
    int T = B * S;
    for (int i = 0; i < T; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
            return qm_diag_fail(d, QM_EINVAL, "token %d at position %d is outside the vocabulary [0, %lld)",
                                tokens[i], i, m->cfg.vocab);
    float *x = malloc((size_t)T * (size_t)m->cfg.hidden * sizeof *x);
    if (!x)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_fwd_ws *ws = qm_fwd_ws_new(m, T, S);
    if (!ws) {
        free(x);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    qm_forward_embed(m, &net->head, tokens, T, x);
    qm_status st = QM_OK;
    for (int l = 0; st == QM_OK && l < m->cfg.layers; l++)
        st = qm_forward_layer(m, &net->layers[l], x, B, S, ws, hooks, d);
    qm_fwd_ws_free(ws);
    if (st == QM_OK && logits)
        qm_forward_logits(m, &net->head, x, T, logits);
    free(x);
    return st;
}
