/* score.h: the scores the compiler's data-driven selections read.
 *
 *   frequency   per MoE layer, how often each routed expert is among a
 *               token's top-k over calibration text (counts)
 *   importance  per MoE layer, the mean over tokens of the cosine similarity
 *               between the block's input and output, in two variants:
 *               `ffn` (the FFN's own input, after its norm, and its output)
 *               and `residual` (the residual stream before and after the
 *               block); lower similarity = the block changes more = more
 *               important
 *   outlier     per linear, data-free: for each input column j of W (out, in),
 *               max_i |W_ij| / mean_i |W_ij|; the linear's score is the
 *               largest column ratio
 *
 * The scores file is YAML (format in qmoe(1), key `qmoe_scores`).
 */
#ifndef QM_SCORE_H
#define QM_SCORE_H

#include "runtime/dist.h"
#include "runtime/net.h"
#include "model/tokens.h"

typedef struct qm_scores {
    long long layers, experts;
    size_t tokens;          /* calibration tokens run */
    int ctx;
    double *freq;           /* (layers, experts) counts; rows of dense layers stay 0 */
    double *imp_ffn;        /* (layers) mean cosine; NAN for dense layers */
    double *imp_residual;   /* (layers) */
    size_t n_outlier;
    char **outlier_name;    /* (n_outlier) canonical names, owned */
    double *outlier;        /* (n_outlier) */
} qm_scores;

/* Run the calibration tokens through `net` in windows of ctx and fill
 * frequency and importance; then compute every linear's outlier score. */
qm_status qm_score_model(const qm_net *net, const qm_tokens *calib, int ctx, qm_scores *s, qm_diag *d);
/* The same over the ranks of an MPI job (dist.h; NULL: one process): each
 * rank runs a contiguous share of the windows (as many tokens each as
 * whole groups allow); rank 0 gathers the counts and each token's cosines
 * and sums them in token order, so s holds the same bytes as one process
 * makes; only rank 0 computes the outlier scores, and only its s is
 * filled (the other ranks' is empty). */
qm_status qm_score_model_dist(const qm_net *net, const qm_tokens *calib, int ctx, qm_dist *dist, qm_scores *s,
                              qm_diag *d);
void qm_scores_free(qm_scores *s);

/* Write the scores file atomically.  `calib_path` is recorded. */
qm_status qm_scores_write(const qm_scores *s, const qm_model *m, const char *calib_path,
                          const char *path, qm_diag *d);

#endif
