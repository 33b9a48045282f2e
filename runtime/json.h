/* json.h: reading the JSON files of a model directory (config.json, the shard index).
 *
 * A thin layer over jansson that turns its errors into qmoe diagnostics
 * naming the file, and reads typed fields with range checks.
 */
#ifndef QM_JSON_H
#define QM_JSON_H

#include <jansson.h>

#include "base/base.h"

/* Parse the file at `path` (duplicate keys rejected).  Caller json_decref()s *out. */
qm_status qm_json_load(const char *path, json_t **out, qm_diag *d);

/* Integer field `key` of object `o` into *v, checked to lie in [lo, hi].
 * Absent or null: *v = dflt, or an error when required. */
qm_status qm_json_int(const char *path, json_t *o, const char *key, int required, long long dflt,
                      long long lo, long long hi, long long *v, qm_diag *d);
qm_status qm_json_real(const char *path, json_t *o, const char *key, double dflt, double lo,
                       double hi, double *v, qm_diag *d);
qm_status qm_json_bool(const char *path, json_t *o, const char *key, int dflt, int *v, qm_diag *d);

#endif
