/* qwriter_shards.h: what the two safetensors formats (qwriter_gptq.c,
 * qwriter_fake.c) share: a checkpoint in the source model's own layout,
 * one shard per layer (model-NNNNN-of-MMMMM.safetensors, MMMMM = layers + 1)
 * and a last one for the model-level tensors, model.safetensors.index.json
 * and the model's config.json.  A format decides only how a quantized
 * linear is stored and what config.json gains.
 *
 * The writer's state (qwriter.state) is the directory it writes into and
 * the layer's spool: the linears a format's linear step stored, appended
 * to an unlinked temporary file in that directory (page cache, not the
 * process's memory) and mapped back when the layer's shard is written.
 * Resuming needs nothing more: each layer's shard is written once, whole,
 * end() lists every shard by name without reading any, and a spool dies
 * with the process (the layer it held is quantized again).
 */
#ifndef QM_QWRITER_SHARDS_H
#define QM_QWRITER_SHARDS_H

#include <jansson.h>

#include "runtime/qwriter.h"
#include "model/safetensors.h"

/* One quantized linear as a format stores it: n entries, in shard order. */
typedef struct shards_linear {
    const qm_st_entry *e;
    size_t n;
} shards_linear;

/* begin(): the state becomes the directory OUT/subdir (OUT for NULL),
 * which is made if missing. */
qm_status shards_begin(qwriter *w, const char *subdir);
/* abort(): frees the state. */
void shards_abort(qwriter *w);

/* The shard of layer `layer` (-1: the model-level tensors): the model's
 * tensors of that layer in checkpoint order, q[k] stored as s[k] (k < n),
 * every other tensor as the checkpoint stores it. */
qm_status shards_write(const qwriter *w, int layer, const qwriter_linear *q, const shards_linear *s, size_t n);

/* Append the n entries of linear q (their data: dtype x shape bytes) to
 * the spool; names and shapes are copied, the data written at once. */
qm_status shards_spool(qwriter *w, const qwriter_linear *q, const qm_st_entry *e, size_t n);
/* The shard of layer `layer` with the linears spooled since the last one
 * (shards_write() with them), and an empty spool. */
qm_status shards_write_spooled(qwriter *w, int layer);

/* A format's part of config.json: add its keys to cfg and write any file
 * that goes beside it into dir. */
typedef qm_status shards_config_fn(const qwriter *w, const char *dir, json_t *cfg);

/* end(): the model-level shard; the index, where a linear the plan
 * quantizes is listed as "<module>.<names[k]>" for each k < n_names (under
 * its own name when n_names is 0); config(), when not NULL; config.json.
 * Frees the state, also on failure. */
qm_status shards_end(qwriter *w, const char *const *names, size_t n_names, shards_config_fn *config);

/* Write j, indented by 2 and followed by a newline, to dir/file atomically. */
qm_status shards_json(const char *dir, const char *file, json_t *j, qm_diag *d);

/* "model.layers.0.self_attn.q_proj.weight" -> "model.layers.0.self_attn.q_proj"
 * (other names unchanged); caller frees; NULL when out of memory. */
char *shards_module(const char *name);

#endif
