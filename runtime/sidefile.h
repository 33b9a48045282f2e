/* sidefile.h: the head of the files qmoe writes for `qmoe compile` to read
 * beside a model (scores from `qmoe score`, errors from `qmoe measure`):
 * which model they were made from and on what calibration text.
 *
 *   KIND: 1
 *   model:       {architecture, layers, experts, config_sha256, tensors_sha256}
 *   calibration: {file, tokens, ctx}
 *
 * The compiler reads a side file only with the model whose config.json and
 * tensor set (qm_model_tensors_sha256) hash as recorded, so a scores file
 * cannot silently steer another model's plan.
 */
#ifndef QM_SIDEFILE_H
#define QM_SIDEFILE_H

#include <stdio.h>

#include "model/model.h"

/* The model's identity as a side file records it. */
typedef struct qm_side_id {
    char config[65], tensors[65]; /* sha256 (hex) of config.json and of the tensor set */
} qm_side_id;

qm_status qm_side_id_get(const qm_model *m, qm_side_id *id, qm_diag *d);

/* Begin side file `kind` (e.g. "qmoe_scores") on f: the top-level map with
 * its version, model and calibration; the caller adds its own keys, closes
 * nothing it did not open and ends with qm_yaml_end().  NULL when out of
 * memory. */
qm_yaml *qm_side_begin(FILE *f, const char *kind, const qm_model *m, const qm_side_id *id, const char *calib_path,
                       unsigned long long tokens, int ctx);

#endif
