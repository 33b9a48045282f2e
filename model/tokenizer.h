/* tokenizer.h: a model's own tokenizer, read from its files and run in C
 * (issue #14), so that text reaches a real model as the ids its
 * reference implementation gives.
 *
 * Three formats: Hugging Face tokenizer.json with a BPE model (added
 * tokens, normalizers, pre-tokenizers, BPE, BOS/EOS from the
 * post-processor or tokenizer_config.json), SentencePiece tokenizer.model
 * with a BPE model (Mistral's, Llama's), and GPT-2's encoder.json +
 * vocab.bpe.  Text is decoded as WHATWG UTF-8 first: each maximal invalid
 * subsequence becomes one U+FFFD, as Node's TextDecoder and Python's
 * errors="replace" do (Hugging Face's library itself takes only valid
 * strings).  A component this reader does not know is an error naming its
 * type: never an encoding that silently differs.
 *
 * A qm_tokenizer keeps a cache of the pieces it has encoded, so one
 * tokenizer is used by one thread at a time.
 */
#ifndef QM_TOKENIZER_H
#define QM_TOKENIZER_H

#include "base/base.h"
#include "model/tokens.h"

typedef struct qm_tokenizer qm_tokenizer;

/* Open the tokenizer at `path`: a directory (its tokenizer.json, else its
 * tokenizer.model, else its encoder.json + vocab.bpe) or one of those
 * files; a tokenizer_config.json beside it is read for add_bos_token,
 * add_eos_token, bos_token and eos_token.  *out is freed by the caller
 * with qm_tokenizer_free(). */
qm_status qm_tokenizer_open(const char *path, qm_tokenizer **out, qm_diag *d);
void qm_tokenizer_free(qm_tokenizer *t);
/* 1 when directory `dir` holds a tokenizer qm_tokenizer_open() reads. */
int qm_tokenizer_in_dir(const char *dir);
/* Append the ids of text[0, len) to *out (grown as needed; out->n counts
 * them), with BOS/EOS as the tokenizer's configuration asks when
 * add_special is nonzero.  `what` names the text in messages. */
qm_status qm_tokenizer_encode(qm_tokenizer *t, const char *text, size_t len, int add_special, qm_tokens *out,
                              qm_diag *d);
/* The id of BOS that add_special puts first, or -1 when there is none. */
int qm_tokenizer_bos(const qm_tokenizer *t);
/* One more than the largest id the tokenizer can produce. */
long long qm_tokenizer_vocab(const qm_tokenizer *t);
/* A SentencePiece tokenizer's piece id: its text (len bytes, not
 * NUL-terminated, valid while t is), score and type (1 normal, 2 unknown,
 * 3 control, 4 user-defined, 5 unused, 6 byte: the values GGUF's
 * tokenizer.ggml.token_type shares); 0 when t is not SentencePiece or has
 * no such piece. */
int qm_tokenizer_spm_piece(const qm_tokenizer *t, long long id, const char **text, size_t *len, float *score,
                           int *type);

#endif
