/* net.c: the model run layer by layer over groups of windows (see net.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/net.h"

size_t qm_net_memory_default(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || size <= 0)
        return (size_t)8 << 30; /* the kernel does not say: assume a small workstation */
    return (size_t)pages / 4 * 3 * (size_t)size;
}

qm_status qm_net_open(const qm_model *m, qm_net *net, qm_diag *d)
{
    memset(net, 0, sizeof *net);
    net->m = m;
    size_t L = (size_t)m->cfg.layers, *layer = calloc(L + 1, sizeof *layer), head = 0;
    int embed = 0, norm = 0;
    if (!layer)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < m->n; i++) {
        size_t bytes = (size_t)m->t[i].numel * sizeof(float);
        if (m->t[i].layer >= 0 && (size_t)m->t[i].layer < L)
            layer[m->t[i].layer] += bytes;
        else
            head += bytes;
        embed |= m->t[i].part == QM_PART_EMBED;
        norm |= m->t[i].part == QM_PART_FINAL_NORM;
    }
    net->weight_bytes = head;
    for (size_t l = 0; l < L; l++)
        net->weight_bytes = layer[l] > net->weight_bytes ? layer[l] : net->weight_bytes;
    free(layer);
    if (!embed || !norm)
        return qm_diag_fail(d, QM_EFORMAT, "%s: the checkpoint has no %s", m->dir,
                            !embed ? "token embeddings" : "final norm");
    return QM_OK;
}

/* Every token of every group inside the vocabulary, before any work. */
static qm_status check_tokens(const qm_model *m, const qm_batch *g, size_t n, qm_diag *d)
{
    for (size_t k = 0; k < n; k++)
        for (int i = 0; i < g[k].B * g[k].S; i++)
            if (g[k].tokens[i] < 0 || g[k].tokens[i] >= m->cfg.vocab)
                return qm_diag_fail(d, QM_EINVAL, "token %d at position %d is outside the vocabulary [0, %lld)",
                                    g[k].tokens[i], i, m->cfg.vocab);
    return QM_OK;
}

/* Embed every group's tokens into its states. */
static qm_status embed_all(const qm_net *net, const qm_batch *g, size_t n, qm_states *s, qm_diag *d)
{
    qm_head_w h;
    qm_status st = qm_head_load(net->m, QM_HEAD_EMBED, &h, d);
    for (size_t k = 0; st == QM_OK && k < n; k++) {
        float *x = qm_states_get(s, k, d);
        if (!x)
            st = QM_EIO;
        else {
            qm_forward_embed(net->m, &h, g[k].tokens, g[k].B * g[k].S, x);
            st = qm_states_put(s, k, d);
        }
    }
    qm_head_free(&h);
    return st;
}

/* Layer l over every group; its weights live only for this call. */
static qm_status one_layer(const qm_net *net, int l, const qm_batch *g, size_t n, qm_states *s, qm_fwd_ws *ws,
                           const qm_fwd_hooks *hooks, qm_diag *d)
{
    qm_layer_w w;
    qm_status st = qm_layer_load(net->m, l, 1, &w, d);
    if (st != QM_OK)
        return st;
    for (size_t k = 0; st == QM_OK && k < n; k++) {
        float *x = qm_states_get(s, k, d);
        if (!x)
            st = QM_EIO;
        else if ((st = qm_forward_layer(net->m, &w, x, g[k].B, g[k].S, ws, hooks, d)) == QM_OK)
            st = qm_states_put(s, k, d);
    }
    qm_layer_free(&w);
    return st;
}

qm_status qm_net_run(const qm_net *net, const qm_batch *g, size_t n, size_t held, const qm_fwd_hooks *hooks,
                     qm_states **out, qm_diag *d)
{
    const qm_model *m = net->m;
    if (out)
        *out = NULL;
    qm_status st = check_tokens(m, g, n, d);
    if (st != QM_OK)
        return st;
    size_t *rows = malloc((n ? n : 1) * sizeof *rows), tokens = 0;
    int T = 1, S = 1;
    if (!rows)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) {
        rows[k] = (size_t)g[k].B * (size_t)g[k].S;
        tokens += rows[k];
        T = g[k].B * g[k].S > T ? g[k].B * g[k].S : T;
        S = g[k].S > S ? g[k].S : S;
    }
    /* what stays besides the states: one layer's (or the head's) weights, the scratch, and what the caller holds */
    size_t budget = net->max_memory ? net->max_memory : qm_net_memory_default(), other = net->weight_bytes + held;
    qm_states *s = NULL;
    qm_fwd_ws *ws = NULL;
    st = qm_states_new(rows, n, (size_t)m->cfg.hidden, budget > other ? budget - other : 0, net->spill_dir, &s, d);
    free(rows);
    if (st == QM_OK && !(ws = qm_fwd_ws_new(m, T, S)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory for the forward pass over %d tokens", T);
    if (st == QM_OK)
        st = embed_all(net, g, n, s, d);
    double t0 = qm_clock();
    int layers = (int)m->cfg.layers;
    for (int l = 0; st == QM_OK && l < layers; l++) {
        double tl = qm_clock();
        st = one_layer(net, l, g, n, s, ws, hooks, d);
        double now = qm_clock(), t = now - tl;
        if (st == QM_OK) /* tokens/s through this layer (conversion included); ETA from the mean so far */
            qm_progressf(net->progress, net->progress_ctx, "layer %d/%d: %zu tokens, %.0f tok/s, ETA %.0f s%s",
                         l + 1, layers, tokens, (double)tokens / (t > 0 ? t : 1e-9),
                         (now - t0) / (l + 1) * (layers - l - 1), qm_states_spilled(s) ? " (states spilled to disk)" : "");
    }
    qm_fwd_ws_free(ws);
    if (st == QM_OK && out)
        *out = s;
    else
        qm_states_free(s);
    return st;
}

qm_status qm_net_logits(const qm_net *net, const qm_head_w *h, qm_states *s, const qm_batch *g, size_t i,
                        float *logits, qm_diag *d)
{
    float *x = qm_states_get(s, i, d);
    if (!x)
        return QM_EIO;
    qm_forward_logits(net->m, h, x, g[i].B * g[i].S, logits);
    return QM_OK;
}

qm_status qm_net_forward(const qm_net *net, const int *tokens, int B, int S, float *logits,
                         const qm_fwd_hooks *hooks, qm_diag *d)
{
    qm_batch g = {tokens, B, S};
    qm_states *s = NULL;
    qm_head_w h = {0};
    qm_status st = qm_net_run(net, &g, 1, 0, hooks, logits ? &s : NULL, d);
    if (st == QM_OK && logits && (st = qm_head_load(net->m, QM_HEAD_OUT, &h, d)) == QM_OK)
        st = qm_net_logits(net, &h, s, &g, 0, logits, d);
    qm_head_free(&h);
    qm_states_free(s);
    return st;
}
