/* metrics.c: the table of evaluation figures (eval.h), so that `qmoe eval`,
 * the bench's records and its reports name, order and round them alike. */
#include "config.h"

#include <stddef.h>

#include "runtime/eval.h"

#define M(id, k, field, dig, base, pol, se_, lab, ldig, ide) \
    [id] = {k, offsetof(qm_eval_result, field), dig, base, pol, se_, lab, ldig, ide}
const qm_metric qm_metrics[QM_METRIC_COUNT] = {
    M(QM_METRIC_PPL, "ppl", ppl, 4, 0, 1, -1, "PPL", 4, NULL),
    M(QM_METRIC_BASE_PPL, "base_ppl", base_ppl, 4, 1, 0, -1, NULL, 0, NULL),
    M(QM_METRIC_PPL_RATIO, "ppl_ratio", ppl_ratio, 4, 1, 1, -1, "PPL ratio", 4, "1.0000"),
    M(QM_METRIC_KLD_MEAN, "kld_mean", kld_mean, 6, 1, 1, QM_METRIC_KLD_SE, "KLD mean ± se", 5, "0"),
    M(QM_METRIC_KLD_SE, "kld_se", kld_se, 6, 1, 1, -1, NULL, 0, NULL),
    M(QM_METRIC_KLD_MEDIAN, "kld_median", kld_median, 6, 1, 1, -1, NULL, 0, NULL),
    M(QM_METRIC_KLD_P99, "kld_p99", kld_p99, 6, 1, 1, -1, NULL, 0, NULL),
    M(QM_METRIC_TOP1_AGREE, "top1_agree", top1_agree, 2, 1, 1, -1, "top-1 %", 2, "100.00"),
};
#undef M

double qm_metric_value(const qm_eval_result *r, qm_metric_id id)
{
    return *(const double *)((const char *)r + qm_metrics[id].off);
}
