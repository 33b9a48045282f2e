/* forward_bench.c: forward-pass throughput against this machine's sgemm rate.
 *
 * usage: forward_bench MODEL_DIR [BATCH] [CTX]
 *
 * Measures, in one run: the sgemm FLOP rate of OpenBLAS on a 1024^3
 * product (the machine's practical peak, on all its threads), then the
 * forward pass over BATCH x CTX tokens (default 8 x 512, the eval default),
 * best of 5, then the sgemm rate again; it prints tokens per second and the
 * fraction of the better of the two sgemm rates the forward pass reaches, so
 * a peak measured while the machine was busy cannot inflate the ratio.
 * Forward FLOPs are counted from the useful work only: 2 per multiply-add of
 * every linear over the rows it saw (experts: their routed rows only), plus
 * attention's two products over the causal half (keys 0..i for query i;
 * the masked part of the diagonal blocks the kernel also computes is not
 * counted), plus lm_head.  The weights are converted to float32 once,
 * before timing: this measures the forward pass, not the conversion that a
 * layer-by-layer run (net.h) adds per layer.
 */
#include "config.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "runtime/forward.h"

typedef struct count {
    const qm_model *m;
    double flops;
} count;

/* Output width of the linear a hook reports. */
static long long out_of(const qm_model *m, qm_part p)
{
    const qm_config *c = &m->cfg;
    switch (p) {
    case QM_PART_Q: return c->heads * c->head_dim;
    case QM_PART_K:
    case QM_PART_V: return c->kv_heads * c->head_dim;
    case QM_PART_ROUTER: return c->experts;
    case QM_PART_EXPERT_GATE:
    case QM_PART_EXPERT_UP: return c->expert_ff;
    case QM_PART_SHARED_GATE:
    case QM_PART_SHARED_UP: return c->shared_ff;
    case QM_PART_MLP_GATE:
    case QM_PART_MLP_UP: return c->ff;
    default: return c->hidden; /* o and the downs */
    }
}

static void on_linear(void *ctx, int layer, qm_part part, int expert, const float *x, int n, int in)
{
    count *c = ctx;
    c->flops += 2.0 * n * in * (double)out_of(c->m, part);
}

/* The whole model, converted once. */
typedef struct resident {
    const qm_model *m;
    qm_head_w head;
    qm_layer_w *layers;
} resident;

static int load(const qm_model *m, resident *r, qm_diag *d)
{
    r->m = m;
    if (!(r->layers = calloc((size_t)m->cfg.layers, sizeof *r->layers)) ||
        qm_head_load(m, QM_HEAD_EMBED | QM_HEAD_OUT, &r->head, d) != QM_OK)
        return -1;
    for (int l = 0; l < m->cfg.layers; l++)
        if (qm_layer_load(m, l, 1, &r->layers[l], d) != QM_OK)
            return -1;
    return 0;
}

static void forward(const resident *r, const int *tok, int B, int S, float *x, qm_fwd_ws *ws, float *lg,
                    const qm_fwd_hooks *hk, qm_diag *d)
{
    qm_forward_embed(r->m, &r->head, tok, B * S, x);
    for (int l = 0; l < r->m->cfg.layers; l++)
        qm_forward_layer(r->m, &r->layers[l], x, B, S, ws, hk, d);
    qm_forward_logits(r->m, &r->head, x, B * S, lg);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [BATCH] [CTX]\n", argv[0]);
        return 2;
    }
    int B = argc > 2 ? atoi(argv[2]) : 8, S = argc > 3 ? atoi(argv[3]) : 512;
    qm_diag *d = qm_diag_new();
    qm_model *m;
    resident net = {0};
    if (qm_model_open(argv[1], &m, d) != QM_OK || load(m, &net, d) != 0) {
        qm_diag_print(d, stderr, "forward_bench");
        return 1;
    }
    const qm_config *c = &m->cfg;
    int *tok = malloc((size_t)B * S * sizeof *tok);
    for (int i = 0; i < B * S; i++)
        tok[i] = (int)((i * 7919u + 13) % (unsigned)c->vocab);
    float *lg = malloc((size_t)B * S * c->vocab * sizeof *lg), *x = malloc((size_t)B * S * c->hidden * sizeof *x);
    qm_fwd_ws *ws = qm_fwd_ws_new(m, B * S, S);
    if (!lg || !x || !ws) {
        fprintf(stderr, "forward_bench: out of memory\n");
        return 1;
    }
    double peak = sgemm_rate();

    count cnt = {m, 0};
    qm_fwd_hooks hk = {.ctx = &cnt, .linear_in = on_linear};
    forward(&net, tok, B, S, x, ws, lg, &hk, d); /* count FLOPs, warm caches */
    double attn = (double)c->layers * B * 2.0 * 2.0 * c->heads * c->head_dim * (S * (S + 1) / 2.0);
    double head = 2.0 * B * S * c->hidden * c->vocab;
    double flops = cnt.flops + attn + head;

    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        forward(&net, tok, B, S, x, ws, lg, NULL, d);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    double again = sgemm_rate();
    peak = again > peak ? again : peak;
    printf("model %s (%s), batch %d x ctx %d = %d tokens\n", argv[1], m->arch->name, B, S, B * S);
    printf("sgemm rate (1024^3):   %.2f GFLOP/s (best before and after)\n", peak / 1e9);
    printf("forward:               %.0f tokens/s, %.3f s per batch\n", B * S / best, best);
    printf("forward FLOPs:         %.3f GFLOP (%.1f%% linears, %.1f%% attention, %.1f%% lm_head)\n",
           flops / 1e9, 100 * cnt.flops / flops, 100 * attn / flops, 100 * head / flops);
    printf("forward rate:          %.2f GFLOP/s = %.1f%% of the sgemm rate\n", flops / best / 1e9,
           100 * flops / best / peak);
    free(tok);
    free(lg);
    free(x);
    qm_fwd_ws_free(ws);
    for (int l = 0; l < c->layers; l++)
        qm_layer_free(&net.layers[l]);
    free(net.layers);
    qm_head_free(&net.head);
    qm_model_close(m);
    qm_diag_free(d);
    return 0;
}
