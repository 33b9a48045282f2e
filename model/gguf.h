/* gguf.h: the GGUF v3 container (llama.cpp's model file) and ggml's block
 * types, as far as qmoe writes and reads them.
 *
 * A GGUF file is: magic "GGUF", version 3, the tensor count and the
 * metadata count (u64), the metadata (key, type, value), one info record
 * per tensor (name, dims with the innermost first, ggml type, offset into
 * the data section), padding to general.alignment, then the data section,
 * each tensor starting at a multiple of the alignment.  All little-endian.
 *
 * Block types store `block` consecutive values of a row in `bytes` bytes
 * (ggml-common.h; each layout is spelled out in ggml_blocks.c).  The table
 * below ties each ggml type id to its name, sizes and dequantization; ids
 * qmoe does not handle have no name.
 */
#ifndef QM_GGUF_H
#define QM_GGUF_H

#include <stdio.h>

#include "base/base.h"
#include "model/model.h"

enum { QM_GGUF_VERSION = 3, QM_GGUF_ALIGNMENT = 32 };

/* ggml_type ids as ggml.h numbers them (they are stored in the file). */
typedef enum qm_ggml_type {
    QM_GGML_F32 = 0,
    QM_GGML_F16 = 1,
    QM_GGML_Q4_0 = 2,
    QM_GGML_Q4_1 = 3,
    QM_GGML_Q5_0 = 6,
    QM_GGML_Q5_1 = 7,
    QM_GGML_Q8_0 = 8,
    QM_GGML_Q8_1 = 9,
    QM_GGML_Q2_K = 10,
    QM_GGML_Q3_K = 11,
    QM_GGML_Q4_K = 12,
    QM_GGML_Q5_K = 13,
    QM_GGML_Q6_K = 14,
    QM_GGML_Q8_K = 15,
    QM_GGML_BF16 = 30,
    QM_GGML_TYPE_COUNT = 31 /* one past the largest id in the table */
} qm_ggml_type;

typedef struct qm_ggml_type_info {
    const char *name; /* NULL: an id qmoe does not handle */
    int block;        /* values per block */
    int bytes;        /* bytes per block */
    /* One block to `block` floats exactly as ggml dequantizes it; NULL:
     * qm_ggml_to_f32() does not read the type (Q8_1, Q8_K). */
    void (*deq)(const uint8_t *blk, float *y);
} qm_ggml_type_info;

extern const qm_ggml_type_info qm_ggml_types[QM_GGML_TYPE_COUNT];

/* Bytes of n values of type t, or 0 when t is unknown or n is not a
 * multiple of its block. */
uint64_t qm_ggml_nbytes(int t, uint64_t n);

/* One row of n values (a multiple of 32) in a block type, from GPTQ's codes
 * in [0, maxq] and one scale per block of 32 (already fp16 values, stored as
 * their f16 bits): Q8_0 stores code - 128 (8-bit symmetric zero), Q4_0 and
 * Q5_0 the code (symmetric zero 8, 16), Q4_1 and Q5_1 the code with
 * m = min[b].  dst holds qm_ggml_nbytes(t, n) bytes.  For Q8_0, Q4_0 and
 * Q5_0 min is not read. */
void qm_ggml_put_row(int t, uint8_t *dst, const uint8_t *codes, const uint16_t *d, const uint16_t *min, size_t n);
/* The quantized scales of a row's k-quant super-blocks: per super-block the
 * fp16 bits of d (and dmin), per sub-block (16 values for Q2_K and Q3_K,
 * 32 for Q4_K) the scale l (Q3_K: signed, -32 to 31; else 0 to 15 / 63)
 * and the min m (Q2_K, Q4_K).  Borrowed. */
typedef struct qm_ggml_kscales {
    const uint16_t *d, *dmin; /* (n / 256); dmin NULL for Q3_K */
    const int8_t *l;          /* (n / sub) */
    const uint8_t *m;         /* (n / sub); NULL for Q3_K */
} qm_ggml_kscales;

/* One row of n values (a multiple of 256) as Q2_K, Q3_K or Q4_K from codes
 * of a two-level GPTQ grid (gptq.h): Q2_K and Q4_K store the code (x = d l
 * code - dmin m), Q3_K code - 4 (x = d l (code - 4)). */
void qm_ggml_put_krow(int t, uint8_t *dst, const uint8_t *codes, const qm_ggml_kscales *k, size_t n);
/* n values of type t (one whose info has deq set) at src as float into
 * dst, exactly as ggml dequantizes them; n is a multiple of the block. */
void qm_ggml_to_f32(int t, const uint8_t *src, float *dst, size_t n);

/* Metadata in the order added, serialized as it goes (values are copied). */
typedef struct qm_gguf_meta {
    qm_buf b;
    uint64_t n;
} qm_gguf_meta;

void qm_gguf_meta_str(qm_gguf_meta *m, const char *key, const char *v);
void qm_gguf_meta_u32(qm_gguf_meta *m, const char *key, uint32_t v);
void qm_gguf_meta_f32(qm_gguf_meta *m, const char *key, float v);
void qm_gguf_meta_bool(qm_gguf_meta *m, const char *key, int v);
/* Arrays of strings and of int32. */
void qm_gguf_meta_strs(qm_gguf_meta *m, const char *key, const char *const *v, size_t n);
void qm_gguf_meta_i32s(qm_gguf_meta *m, const char *key, const int32_t *v, size_t n);
void qm_gguf_meta_f32s(qm_gguf_meta *m, const char *key, const float *v, size_t n);
void qm_gguf_meta_free(qm_gguf_meta *m);

/* The tokenizer.* keys of m's tokenizer as llama.cpp's converter writes them
 * (gguf_vocab.c): a Hugging Face tokenizer.json BPE as "gpt2" (tokens,
 * types, merges, pre-tokenizer, BOS/EOS); byte-level models and models
 * without a tokenizer "none" (llama.cpp then adds dummy tokens); other
 * tokenizers (SentencePiece's tokenizer.model) are an error. */
qm_status qm_gguf_put_vocab(const qm_model *m, qm_gguf_meta *g, qm_diag *d);

/* One tensor's info record. */
typedef struct qm_gguf_tensor {
    const char *name;  /* not owned */
    int ndim;          /* 1 to 4 */
    uint64_t ne[4];    /* innermost first: (in, out, experts) for linears */
    int type;          /* qm_ggml_type */
    uint64_t offset;   /* into the data section; set by qm_gguf_layout() */
    uint64_t nbytes;   /* set by qm_gguf_layout() */
} qm_gguf_tensor;

/* Fill offset and nbytes of t[0, n) laid out in order, each at a multiple
 * of align; returns the data section's size, or 0 with a diagnostic when a
 * tensor's row length is not a multiple of its type's block. */
uint64_t qm_gguf_layout(qm_gguf_tensor *t, size_t n, uint32_t align, qm_diag *d);
/* Write the header (through the padding before the data section) to f;
 * returns the bytes written, 0 when out of memory.  Write errors show in
 * f's error flag. */
uint64_t qm_gguf_put_header(FILE *f, const qm_gguf_meta *m, const qm_gguf_tensor *t, size_t n, uint32_t align);
/* Zero bytes from `at` to the next multiple of align; the new position. */
uint64_t qm_gguf_pad(FILE *f, uint64_t at, uint32_t align);

/* ---- reading (gguf_read.c) ---- */

/* An open GGUF file: its header read and checked, its data mapped. */
typedef struct qm_gguf_file {
    char *path;             /* owned */
    const uint8_t *map;     /* the whole file */
    size_t size;
    int mapped;             /* map is ours to unmap */
    uint32_t version, alignment;
    uint64_t n_kv;
    char *arch;             /* general.architecture, or NULL; owned */
    size_t n;
    qm_gguf_tensor *t;      /* (n) in file order; names owned, offset into the data section */
    uint64_t data_offset;   /* of the data section in the file */
} qm_gguf_file;

/* Open and check the GGUF file at path (magic, version 2 or 3, counts,
 * metadata types and lengths, general.alignment, tensor dims and types,
 * offsets aligned, inside the file and not overlapping, names unique).
 * Caller closes with qm_gguf_close(); on failure *out is NULL and d says
 * which byte offset or tensor is wrong. */
qm_status qm_gguf_open(const char *path, qm_gguf_file **out, qm_diag *d);
/* The same over bytes in memory (which must outlive the result), named
 * path in messages: the fuzz target's entry. */
qm_status qm_gguf_parse(const char *path, const uint8_t *data, size_t size, qm_gguf_file **out, qm_diag *d);
void qm_gguf_close(qm_gguf_file *f);
/* Tensor i's bytes (t[i].nbytes of them). */
const uint8_t *qm_gguf_tensor_data(const qm_gguf_file *f, size_t i);

/* ---- a model's tensors in GGUF (gguf_model.c) ---- */

/* llama.cpp's base name of each part ("attn_q", "ffn_down_exps", ...). */
extern const char *const qm_gguf_part_name[QM_PART_COUNT];

/* An architecture as llama.cpp's converter writes it. */
typedef struct qm_gguf_arch {
    const char *hf;    /* config.json's architectures[0] */
    const char *name;  /* general.architecture */
    int permute_qk;    /* llama.cpp ropes consecutive pairs: q/k rows permuted as the converter does */
} qm_gguf_arch;

/* The row of config.json's architecture `hf`, or NULL. */
const qm_gguf_arch *qm_gguf_arch_find(const char *hf);
/* Tensor t's GGUF name ("blk.3.ffn_down_exps.weight": routed experts share
 * their layer's); caller frees; NULL when out of memory. */
char *qm_gguf_name(const qm_tensor *t);
/* The heads over which t's rows are permuted in GGUF (0: not permuted). */
int qm_gguf_heads(const qm_model *m, const qm_gguf_arch *a, const qm_tensor *t);
/* The model row that GGUF row r of a tensor of `rows` rows permuted over
 * `heads` heads holds: within a head, rows (2, half) are stored (half, 2). */
uint64_t qm_gguf_source_row(uint64_t r, uint64_t rows, int heads);

/* Take m's weights from the GGUF file at path (llama.cpp's names for m's
 * architecture; every tensor of m present with matching dims and a type
 * qm_ggml_to_f32() reads): sets m->gguf (closed by qm_model_close()) and
 * each tensor's gguf.  Extra tensors are a warning. */
qm_status qm_model_attach_gguf(qm_model *m, const char *path, qm_diag *d);
/* Tensor i of m (attached) as floats in the model's layout (out, in) into
 * f (t->numel floats), dequantized as ggml does and rows unpermuted; an
 * error when a value is not finite. */
qm_status qm_gguf_load_f32(const qm_model *m, size_t i, float *f, qm_diag *d);

#endif
