/* tok_internal.h: the parts of model/tok_*.c that only they share.
 *
 * A Hugging Face tokenizer runs as a pipeline over one text: added tokens
 * are cut out first (tok_added.c), each stretch between them is
 * normalized (tok_norm.c), split into pieces (tok_pretok.c) and each piece
 * encoded by the model (tok_bpe.c); tokenizer.c drives it and tok_hf.c
 * builds it from JSON.  A SentencePiece model (tok_spm.c) encodes the
 * whole text itself.  Components are tables keyed by the "type" names the
 * JSON uses.  Byte strings are (pointer, length): ids of byte-level
 * tokenizers cover NUL like any other byte.
 */
#ifndef QM_TOK_INTERNAL_H
#define QM_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* ---- tok_util.c: maps, pieces, UTF-8 ----------------------------------------- */

/* Byte string -> id, open addressing; keys are copied into the map. */
typedef struct tok_map {
    uint32_t *slot;     /* (cap) entry index + 1; 0 = empty */
    struct tok_ent {
        uint32_t off, len, id, hash;
    } *ent;             /* (n) */
    char *keys;         /* all keys, back to back */
    size_t cap, n, ent_cap, keys_n, keys_cap;
} tok_map;

/* Insert; 1 when the key was there already (map unchanged, *old its id),
 * else 0, with *oom set when memory ran out (the key then not inserted). */
int tok_map_put(tok_map *m, const char *k, size_t len, uint32_t id, uint32_t *old, int *oom);
/* 1 and *id when present. */
int tok_map_get(const tok_map *m, const char *k, size_t len, uint32_t *id);
void tok_map_free(tok_map *m);

/* Pieces of text: spans into one buffer; `first` marks a piece that starts
 * the whole input (Metaspace's prepend_scheme "first"). */
typedef struct tok_pieces {
    qm_buf text;
    struct tok_span {
        size_t begin, end;
        int first;
    } *span;            /* (n) */
    size_t n, cap;
} tok_pieces;

/* Append text[0, len) as one piece; 0 when out of memory (sticky in p->text.oom). */
int tok_pieces_add(tok_pieces *p, const char *s, size_t len, int first);
void tok_pieces_reset(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);

/* Append to `out` the UTF-8 of s[0, len) with each maximal invalid
 * subsequence (WHATWG) replaced by U+FFFD. */
void tok_utf8_clean(const char *s, size_t len, qm_buf *out);
/* Length of the UTF-8 character at s (valid UTF-8: 1 to 4). */
static inline size_t tok_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}
/* Code point of the valid UTF-8 character at s; *n its length. */
uint32_t tok_utf8_decode(const char *s, size_t *n);
/* UTF-8 of code point c into out (4 bytes room); its length. */
size_t tok_utf8_encode(uint32_t c, char *out);

/* GPT-2's byte <-> printable character table (ByteLevel): the code point
 * of byte b, and the byte of code point c (-1 when c is no byte's). */
uint32_t tok_byte_char(unsigned b);
int tok_char_byte(uint32_t c);

/* Compile a pattern in UTF + UCP mode (JIT when available); NULL with a
 * diagnostic naming `where` and the offset of the error. */
pcre2_code *tok_regex(const char *pat, size_t len, int literal, const char *where, qm_diag *d);

/* ---- tok_norm.c: normalizers --------------------------------------------------- */

typedef struct tok_norm tok_norm;
/* Build from the JSON object j ("type" chosen from the table); `where`
 * names it in messages ("tokenizer.json: normalizer"). */
qm_status tok_norm_load(json_t *j, const char *where, tok_norm **out, qm_diag *d);
/* Normalize s[0, len) into out (emptied first). */
qm_status tok_norm_run(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d);
void tok_norm_free(tok_norm *n);

/* ---- tok_pretok.c: pre-tokenizers -------------------------------------------- */

typedef struct tok_pretok tok_pretok;
/* As tok_norm_load(); *byte_level set when the chain ends in ByteLevel
 * (the model then sees raw bytes: tok_bpe.c maps its vocabulary back). */
qm_status tok_pretok_load(json_t *j, const char *where, tok_pretok **out, int *byte_level, qm_diag *d);
/* The pieces of `in` after the chain, into *out (reset first); *in is
 * used as scratch and left holding whatever it last held. */
qm_status tok_pretok_run(const tok_pretok *p, tok_pieces *in, tok_pieces *out, qm_diag *d);
void tok_pretok_free(tok_pretok *p);

/* ---- tok_bpe.c: the BPE model ------------------------------------------------- */

typedef struct tok_bpe tok_bpe;
typedef struct tok_bpe_opts {
    int byte_level;        /* vocabulary in GPT-2's byte characters, input raw bytes */
    int byte_fallback, fuse_unk, ignore_merges;
    const char *unk;       /* or NULL */
    const char *prefix;    /* continuing_subword_prefix or NULL */
    const char *suffix;    /* end_of_word_suffix or NULL */
} tok_bpe_opts;
/* vocab: object token -> id; merges: "a b" strings or [a, b] pairs, in
 * rank order.  `where` names the file. */
qm_status tok_bpe_load(json_t *vocab, json_t *merges, const tok_bpe_opts *o, const char *where, tok_bpe **out,
                       qm_diag *d);
/* Append the ids of one piece to *out. */
qm_status tok_bpe_encode(tok_bpe *b, const char *s, size_t len, qm_tokens *out, qm_diag *d);
/* The id of token text s (as written in the file), or -1. */
long long tok_bpe_id(const tok_bpe *b, const char *s, size_t len);
long long tok_bpe_vocab(const tok_bpe *b);
void tok_bpe_free(tok_bpe *b);

/* Append one id to *out; 0 when out of memory. */
int tok_push(qm_tokens *out, int id);

/* ---- tok_spm.c: SentencePiece -------------------------------------------------- */

typedef struct tok_spm tok_spm;
qm_status tok_spm_load(const char *path, tok_spm **out, qm_diag *d);
qm_status tok_spm_encode(tok_spm *s, const char *text, size_t len, qm_tokens *out, qm_diag *d);
/* The model's own BOS id (-1 when none), a piece's id (-1 when none) and
 * the vocabulary size. */
int tok_spm_bos(const tok_spm *s);
long long tok_spm_id(const tok_spm *s, const char *piece, size_t len);
long long tok_spm_vocab(const tok_spm *s);
/* Piece id's text (not NUL-terminated), score and type (SentencePiece's:
 * 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); 0
 * when there is no such piece. */
int tok_spm_piece(const tok_spm *s, size_t id, const char **text, size_t *len, float *score, int *type);
void tok_spm_free(tok_spm *s);

/* ---- tok_added.c: added tokens ------------------------------------------------- */

typedef struct tok_added tok_added;
typedef struct tok_added_token {
    const char *content;
    size_t len;
    int id;
    int single_word, lstrip, rstrip, normalized;
} tok_added_token;
qm_status tok_added_new(tok_added **out);
qm_status tok_added_add(tok_added *a, const tok_added_token *t);
/* Build the index tok_added_find() uses, once all are added. */
qm_status tok_added_index(tok_added *a);
/* The first match at or after s[from] among the tokens whose `normalized`
 * equals `normalized`, leftmost-longest as Hugging Face's matcher: 1 with
 * [*begin, *end) (lstrip/rstrip whitespace included) and *id, or 0. */
int tok_added_find(const tok_added *a, int normalized, const char *s, size_t len, size_t from, size_t *begin,
                   size_t *end, int *id);
/* The id of added token `content`, or -1. */
long long tok_added_id(const tok_added *a, const char *content, size_t len);
void tok_added_free(tok_added *a);

/* ---- the tokenizer -------------------------------------------------------------- */

struct qm_tokenizer {
    char *path;           /* the file read (owned) */
    tok_norm *norm;       /* NULL: none */
    tok_pretok *pretok;   /* NULL: none */
    tok_bpe *bpe;         /* one of bpe, spm */
    tok_spm *spm;
    tok_added *added;     /* NULL: none */
    int bos, eos;         /* ids that --add-special puts first / last; -1: none */
    long long vocab;
    qm_buf clean, norm_buf;   /* scratch for qm_tokenizer_encode() */
    tok_pieces pieces[2];
};

/* tok_hf.c: fill t from a tokenizer.json, or from GPT-2's encoder.json and
 * vocab.bpe. */
qm_status tok_hf_load(qm_tokenizer *t, const char *json_path, qm_diag *d);
qm_status tok_gpt2_load(qm_tokenizer *t, const char *encoder, const char *merges, qm_diag *d);
/* Set t->bos/eos from tokenizer_config.json in `dir` when it says. */
qm_status tok_config_load(qm_tokenizer *t, const char *dir, qm_diag *d);

#endif
