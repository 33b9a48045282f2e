/* tokens.h: the token streams that evaluation and calibration read.
 *
 * Models whose config declares "qmoe_tokenizer": "byte" (the shipped
 * examples) read plain text, one token per byte.  A model directory that
 * holds its tokenizer (tokenizer.json, tokenizer.model, or encoder.json +
 * vocab.bpe: model/tokenizer.h) reads plain text through it.  Otherwise,
 * and for any file ending in ".u32", a file holds ids made elsewhere: a
 * ".u32" file little-endian uint32 ids, any other file ids as decimal text
 * separated by whitespace.
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
/* The text at `path` through the tokenizer in directory `dir`, each id <
 * vocab; only the first `max` ids when max > 0 (the whole file is
 * tokenized: where a text is cut changes the ids near the cut).  BOS, when
 * the tokenizer's configuration adds it (qmoe(1), tokenize
 * --add-special), starts the stream when window is 0, else starts every
 * window of `window` ids, the text running on across windows: how
 * calibration windows see it.  No EOS. */
qm_status qm_tokens_from_tokenizer(const char *dir, const char *path, long long vocab, size_t max, size_t window,
                                   qm_tokens *t, qm_diag *d);
/* The tokens of `path` as model m reads them: the bytes of a text when its
 * config declares a byte-level tokenizer; ids of a ".u32" file; the text
 * through the model's own tokenizer when its directory holds one (BOS as
 * qm_tokens_from_tokenizer() with `window`); else decimal token ids.  Each
 * id < vocab; only the first `max` when max > 0. */
qm_status qm_tokens_for_model(const qm_model *m, const char *path, size_t max, size_t window, qm_tokens *t,
                              qm_diag *d);

#endif
