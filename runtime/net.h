/* net.h: a model run over many token windows one decoder layer at a time.
 *
 * Every command that runs a whole model (score, eval, bench) goes through
 * here.  The tokens come as groups, each B windows of S tokens that one
 * qm_forward_layer() call takes.  All groups are embedded; then for each
 * layer in order the layer's weights are converted from the mapped
 * checkpoint, every group goes through the layer, and the weights are freed
 * before the next layer's are made.  The final norm and lm_head run last,
 * group by group (qm_net_logits()), so no positions x vocab matrix larger
 * than one group's is ever made.  A run therefore holds one layer's float32
 * weights, the hidden states of all groups (states.h: in memory while they
 * fit the budget, else in a spill file) and the forward pass's scratch for
 * the largest group, whatever the depth of the model.
 *
 * Each group goes through each layer by the same call on the same rows as
 * when a model is held whole and run group by group, so the results are the
 * same bytes; hooks see a layer's groups in order, all groups of one layer
 * before the next layer.
 */
#ifndef QM_NET_H
#define QM_NET_H

#include "runtime/forward.h"
#include "runtime/states.h"

typedef struct qm_net {
    const qm_model *m;
    size_t max_memory;        /* bytes the run may hold: layer, head and states (0: qm_net_memory_default()) */
    const char *spill_dir;    /* where hidden states over the budget go (NULL: $TMPDIR or /tmp) */
    qm_progress_fn *progress; /* one line per layer; may be NULL */
    void *progress_ctx;
    size_t weight_bytes;      /* float32 bytes of the largest layer, or of the head when larger */
} qm_net;

/* B windows of S tokens each, contiguous at tokens: one forward call. */
typedef struct qm_batch {
    const int *tokens;
    int B, S;
} qm_batch;

/* The default budget: three quarters of the physical memory the kernel
 * reports. */
size_t qm_net_memory_default(void);

/* Prepare to run `m` (which must outlive net); converts no weight.  Fails
 * when the model lacks its embeddings or final norm. */
qm_status qm_net_open(const qm_model *m, qm_net *net, qm_diag *d);

/* Run the n groups through every layer, hooks (may be NULL) seeing each
 * layer.  Every token is checked against the vocabulary before any work.
 * `held`: bytes the caller already holds (another run's states), taken off
 * the budget.  On success *out (may be NULL when only the hooks matter)
 * holds each group's final hidden states; caller frees with
 * qm_states_free(). */
qm_status qm_net_run(const qm_net *net, const qm_batch *g, size_t n, size_t held, const qm_fwd_hooks *hooks,
                     qm_states **out, qm_diag *d);

/* Logits (B*S, vocab) of group i from its final hidden states in s, with
 * the head weights h (qm_head_load(.., QM_HEAD_OUT, ..)); the states of the
 * group are used up. */
qm_status qm_net_logits(const qm_net *net, const qm_head_w *h, qm_states *s, const qm_batch *g, size_t i,
                        float *logits, qm_diag *d);

/* One group, start to end: tokens (B*S) -> logits (B*S, vocab); logits may
 * be NULL when only the hooks matter. */
qm_status qm_net_forward(const qm_net *net, const int *tokens, int B, int S, float *logits,
                         const qm_fwd_hooks *hooks, qm_diag *d);

#endif
