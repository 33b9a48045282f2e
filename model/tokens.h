/* tokens.h: the token streams that evaluation and calibration read.
 *
 * Models whose config declares "qmoe_tokenizer": "byte" (the shipped
 * examples) read plain text, one token per byte.  Other models read token
 * ids produced by their own tokenizer elsewhere: a file ending in ".u32"
 * holds little-endian uint32 ids; any other --tokens file holds ids as
 * decimal text separated by whitespace.
 */
#ifndef QM_TOKENS_H
#define QM_TOKENS_H

#include "base/base.h"
#include "model/model.h"

typedef struct qm_tokens {
    int *ids;   /* (n), owned; free with qm_tokens_free() */
    size_t n;
} qm_tokens;

/* Bytes of a text file as tokens (byte-level models); only the first max
 * when max > 0, and no more of the file is read. */
qm_status qm_tokens_from_text(const char *path, size_t max, qm_tokens *t, qm_diag *d);
/* Token ids from a .u32 or whitespace-separated decimal file; each must be
 * < vocab; only the first max when max > 0 (ids after them are not read
 * or checked). */
qm_status qm_tokens_from_ids(const char *path, long long vocab, size_t max, qm_tokens *t, qm_diag *d);
void qm_tokens_free(qm_tokens *t);
/* The tokens of `path` as model m reads them: the bytes of a text when its
 * config declares a byte-level tokenizer, else token ids (each < vocab);
 * only the first `max` when max > 0. */
qm_status qm_tokens_for_model(const qm_model *m, const char *path, size_t max, qm_tokens *t, qm_diag *d);

#endif
