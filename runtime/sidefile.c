/* sidefile.c: the head of the scores and measure files (sidefile.h). */
#include "config.h"

#include "runtime/sidefile.h"

qm_status qm_side_id_get(const qm_model *m, qm_side_id *id, qm_diag *d)
{
    qm_model_tensors_sha256(m, id->tensors);
    return qm_sha256_file(m->config_path, id->config, d);
}

qm_yaml *qm_side_begin(FILE *f, const char *kind, const qm_model *m, const qm_side_id *id, const char *calib_path,
                       unsigned long long tokens, int ctx)
{
    qm_yaml *y = qm_yaml_begin(f);
    if (!y)
        return NULL;
    qm_yaml_map(y);
    qm_yaml_kint(y, kind, 1);
    qm_yaml_str(y, "model");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "architecture", m->arch->name);
    qm_yaml_kint(y, "layers", m->cfg.layers);
    qm_yaml_kint(y, "experts", m->cfg.experts);
    qm_yaml_kstr(y, "config_sha256", id->config);
    qm_yaml_kstr(y, "tensors_sha256", id->tensors);
    qm_yaml_close(y);
    qm_yaml_str(y, "calibration");
    qm_yaml_map(y);
    qm_yaml_kstr(y, "file", calib_path);
    qm_yaml_kuint(y, "tokens", tokens);
    qm_yaml_kint(y, "ctx", ctx);
    qm_yaml_close(y);
    return y;
}
