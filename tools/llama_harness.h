/* llama_harness.h: what tools/llama_ppl.c and tools/llama_imatrix.c share
 * (the test harness around the real llama.cpp; not part of qmoe). */
#ifndef QM_LLAMA_HARNESS_H
#define QM_LLAMA_HARNESS_H

#include "ggml-backend.h"
#include "llama.h"

/* Model at path on the CPU and a context for windows of ctx tokens: F32 KV
 * cache, flash attention off, cb (may be NULL) called on every graph node
 * as llama.cpp's cb_eval; NULL (after a message) on failure. */
struct llama_context *qm_harness_open(const char *path, int ctx, ggml_backend_sched_eval_callback cb, void *user,
                                      struct llama_model **model);

/* The first `want` bytes of path as token ids of a byte-level model, in
 * *tok (malloc'd, caller frees); the count read, or -1 (after a message). */
long qm_harness_bytes(const char *path, long want, llama_token **tok);

/* llama_ppl BACKEND_DIR --imatrix MODEL.gguf TEXT BYTES CTX OUT.gguf */
int qm_imatrix_collect(int argc, char **argv);
/* llama_ppl BACKEND_DIR --imatrix-diff A.gguf B.gguf */
int qm_imatrix_diff(int argc, char **argv);
/* The importance matrix in path (llama.cpp's GGUF imatrix format) as the
 * array llama_model_quantize_params.imatrix takes, each entry's sums over
 * its count as llama.cpp's quantize tool computes them (an expert that
 * no row reached: all ones), terminated by a NULL name; NULL (after a
 * message) on failure.  Free with qm_imatrix_free. */
struct llama_model_imatrix_data *qm_imatrix_load(const char *path);
void qm_imatrix_free(struct llama_model_imatrix_data *m);

#endif
