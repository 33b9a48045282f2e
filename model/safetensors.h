/* safetensors.h: reading and writing safetensors files, and sharded checkpoints.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON describing each tensor (dtype, shape, data_offsets relative to the end
 * of the header) and an optional "__metadata__" string map, then the data.
 *
 * qm_st_open() maps the file and validates everything a reader must before
 * trusting an offset: the header length is sane and inside the file, the
 * JSON is valid and starts with '{', every dtype is known, every byte range
 * equals its shape times its element size (without overflow), lies inside
 * the data, overlaps no other range, and the ranges cover the data with no
 * hole; names are unique.  After a successful open every qm_st_tensor's data
 * pointer is safe to read for end - begin bytes.  Nothing is read from the
 * data area itself, so a header-only (sparse) checkpoint opens instantly.
 *
 * qm_ckpt_open() opens a model directory: one model.safetensors, or shards
 * listed in model.safetensors.index.json, cross-checked against the index.
 */
#ifndef QM_SAFETENSORS_H
#define QM_SAFETENSORS_H

#include "base/base.h"
#include "model/dtype.h"

enum { QM_MAX_DIMS = 8 };

/* The reference implementation refuses headers over 100 MB; so do we. */
#define QM_ST_MAX_HEADER 100000000ull

typedef struct qm_st_tensor {
    const char *name;             /* in the file's strings */
    qm_dtype dtype;
    int ndim;
    uint64_t shape[QM_MAX_DIMS];
    uint64_t numel;               /* product of shape (1 for a scalar) */
    uint64_t begin, end;          /* byte range relative to the data area */
    const void *data;             /* into the mapping; end - begin bytes */
} qm_st_tensor;

typedef struct qm_st_file {
    char *path;                   /* owned */
    void *map;                    /* whole file, read-only */
    size_t map_size;
    uint64_t header_len;
    uint64_t data_size;
    size_t n;                     /* tensors, sorted by data offset */
    qm_st_tensor *t;              /* (n), owned */
    size_t n_meta;
    char **meta;                  /* (2 * n_meta): key, value, ... in strings; the array owned */
    char *strings;                /* decoded names and metadata; owned */
    qm_strmap by_name;            /* name -> index into t; empty when opened unindexed */
    uint64_t dev, ino;            /* of the file mapped, to tell it from a file renamed over it */
} qm_st_file;

/* Open and validate `path`.  On success *out is the file (caller closes with
 * qm_st_close()); on failure a diagnostic names the file, and the tensor
 * where one is at fault, and *out is NULL. */
qm_status qm_st_open(const char *path, qm_st_file **out, qm_diag *d);
/* The same without the name index or its uniqueness check, for a caller that
 * indexes the names of many files at once (qm_ckpt_open): hashing tens of
 * thousands of names once instead of twice is a visible part of opening a
 * 100B-scale checkpoint. */
qm_status qm_st_open_unindexed(const char *path, qm_st_file **out, qm_diag *d);
void qm_st_close(qm_st_file *f);
/* Before reading tensor t's bytes through the mapping: the file at f's
 * path, when it is still the file mapped, must still hold them.  A file
 * truncated while mapped would otherwise kill the reader with SIGBUS; this
 * turns that into an error naming the file, the tensor and both sizes.
 * (A truncation between this check and the read is not caught.) */
qm_status qm_st_check_live(const qm_st_file *f, const qm_st_tensor *t, qm_diag *d);
/* The tensor `name` (a scan when the file was opened unindexed), or NULL. */
const qm_st_tensor *qm_st_find(const qm_st_file *f, const char *name);
const char *qm_st_meta(const qm_st_file *f, const char *key); /* NULL when absent */
/* Tensor t (of file `path`) as float32 into dst (t->numel floats).  Fails
 * with QM_EUNSUPPORTED when t is not F32, F16 or BF16, and with QM_EFORMAT
 * when an element is infinite or NaN, naming path, tensor and the first such
 * element (flat index, and [row, col] of a 2-D tensor). */
qm_status qm_st_to_f32(const char *path, const qm_st_tensor *t, float *dst, qm_diag *d);
/* The same check without keeping the floats (tensors of other types pass). */
qm_status qm_st_check_finite(const char *path, const qm_st_tensor *t, qm_diag *d);

/* One tensor to write: data holds numel * dtype size bytes. */
typedef struct qm_st_entry {
    const char *name;
    qm_dtype dtype;
    int ndim;
    const uint64_t *shape;
    const void *data;
} qm_st_entry;

/* Write `n` tensors in the given order, and the metadata pairs in `meta`
 * (key, value, ..., NULL), atomically: nothing appears at `path` unless the
 * whole file was written. */
qm_status qm_st_write(const char *path, const qm_st_entry *t, size_t n, const char *const *meta,
                      qm_diag *d);

/* ---- checkpoints (one file or shards) ------------------------------------ */

typedef struct qm_ckpt_tensor {
    const qm_st_tensor *t;        /* owned by files[file] */
    size_t file;
} qm_ckpt_tensor;

enum { QM_CKPT_PARTS = 8 };

typedef struct qm_ckpt {
    char *dir;                    /* owned */
    size_t n_files;
    qm_st_file **files;           /* (n_files), owned; shards in name order */
    size_t n;
    qm_ckpt_tensor *t;            /* (n), checkpoint order: shard by shard, by offset */
    /* name -> index into t, in QM_CKPT_PARTS maps chosen by the top bits of
     * the name's hash, so that they are built in parallel */
    qm_strmap by_name[QM_CKPT_PARTS];
} qm_ckpt;

/* Open the weights of the model directory `dir`.  Caller closes with qm_ckpt_close(). */
qm_status qm_ckpt_open(const char *dir, qm_ckpt **out, qm_diag *d);
void qm_ckpt_close(qm_ckpt *c);
/* Index into c->t of `name`, or -1. */
long qm_ckpt_find(const qm_ckpt *c, const char *name);
/* The same with name's qm_strmap_hash() h known, and a prefetch of where h
 * is looked up: loops of tens of thousands of lookups hash a few names,
 * prefetch them, then find them. */
long qm_ckpt_find_hashed(const qm_ckpt *c, const char *name, uint64_t h);
void qm_ckpt_prefetch(const qm_ckpt *c, uint64_t h);

#endif
