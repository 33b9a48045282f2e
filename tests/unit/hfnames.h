/* hfnames.h: header-only checkpoints named as the published ones, for tests.
 *
 * The Hugging Face tensor names and shapes of each supported family are
 * written out here independently of runtime/ (from the families' public
 * modeling code), so that a mistake in an adapter is not mirrored by the
 * tests that check it.  Used by tests/unit/test_model.c and
 * tests/compiler/mkmodel.c.
 */
#ifndef QM_TEST_HFNAMES_H
#define QM_TEST_HFNAMES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tensor {
    char *name;
    uint64_t shape[2];
    int ndim;
} tensor;

typedef struct tlist {
    tensor *t;
    size_t n, cap;
} tlist;

typedef struct hf_dims {
    uint64_t V, d, L, H, KV, hd, E, k, eff, ff, sff, nshared, first_dense;
    int qkv_bias, qk_norm; /* qk_norm: 0 none, 1 per head, 2 whole projection */
    const char *moe, *router, *ename[3], *sname[3];
} hf_dims;

/* Append a tensor of shape (d0, d1), or (d0) when d1 is 0, named by fmt. */
void hf_add(tlist *l, uint64_t d0, uint64_t d1, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void hf_tlist_free(tlist *l);
/* Write tensors [from, to) as one BF16 safetensors file whose data area is a
 * hole (sparse).  0 on success. */
int hf_write_shard(const char *path, const tlist *l, size_t from, size_t to);
/* Write DIR/config.json (`config`) and the tensors of `l` as header-only
 * BF16 safetensors: one model.safetensors when shards <= 1, otherwise that
 * many shards of about equal tensor counts with model.safetensors.index.json.
 * 0 on success. */
int hf_write_model(const char *dir, json_t *config, const tlist *l, int shards);
/* The sizes and names a config.json implies, by family. */
hf_dims hf_dims_of(json_t *config);
/* Every tensor of the published checkpoint, in the published order. */
void hf_checkpoint_names(const hf_dims *x, json_t *config, tlist *l);

#endif
