/* tokenizer.c: opening a model's tokenizer and running its pipeline
 * (tokenizer.h tells the story; tok_internal.h names the stages). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/tok_internal.h"

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The files a directory may hold, in the order they are preferred. */
static const char *const dir_files[] = {"tokenizer.json", "tokenizer.model", "encoder.json"};

static char *join(const char *dir, const char *name)
{
    qm_buf b = {0};
    qm_buf_printf(&b, "%s/%s", dir, name);
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

int qm_tokenizer_in_dir(const char *dir)
{
    int found = 0;
    for (size_t i = 0; !found && i < sizeof dir_files / sizeof dir_files[0]; i++) {
        char *p = join(dir, dir_files[i]);
        found = p && is_file(p);
        free(p);
    }
    return found;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The directory part of path ("." when none); caller frees. */
static char *dir_name(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return qm_strdup(".");
    size_t n = s == path ? 1 : (size_t)(s - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

/* Read the tokenizer file t->path (in directory dir). */
static qm_status load_file(qm_tokenizer *t, const char *dir, qm_diag *d)
{
    const char *name = base_name(t->path);
    if (strcmp(name, "encoder.json") == 0 || strcmp(name, "vocab.bpe") == 0) {
        char *enc = join(dir, "encoder.json"), *bpe = join(dir, "vocab.bpe");
        qm_status st = enc && bpe ? tok_gpt2_load(t, enc, bpe, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
        free(enc);
        free(bpe);
        return st;
    }
    if (ends_with(name, ".json"))
        return tok_hf_load(t, t->path, d);
    if (ends_with(name, ".model")) {
        qm_status st = tok_spm_load(t->path, &t->spm, d);
        if (st == QM_OK) {
            t->bos = tok_spm_bos(t->spm); /* SentencePiece models put BOS first, no EOS */
            t->vocab = tok_spm_vocab(t->spm);
        }
        return st;
    }
    return qm_diag_fail(d, QM_EUNSUPPORTED,
                        "%s: not a tokenizer file (expected tokenizer.json, tokenizer.model, encoder.json or "
                        "vocab.bpe)", t->path);
}

qm_status qm_tokenizer_open(const char *path, qm_tokenizer **out, qm_diag *d)
{
    qm_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    t->bos = t->eos = -1;
    char *dir = NULL;
    qm_status st = QM_OK;
    if (is_dir(path)) {
        dir = qm_strdup(path);
        for (size_t i = 0; dir && !t->path && i < sizeof dir_files / sizeof dir_files[0]; i++) {
            char *p = join(path, dir_files[i]);
            if (p && is_file(p))
                t->path = p;
            else
                free(p);
        }
        if (dir && !t->path)
            st = qm_diag_fail(d, QM_ENOTFOUND,
                              "%s: no tokenizer in this directory (looked for tokenizer.json, tokenizer.model, "
                              "encoder.json + vocab.bpe)", path);
    } else if (!is_file(path))
        st = qm_diag_fail(d, QM_ENOTFOUND, "%s: no such tokenizer file or directory", path);
    else {
        t->path = qm_strdup(path);
        dir = dir_name(path);
    }
    if (st == QM_OK && (!dir || !t->path))
        st = qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    if (st == QM_OK)
        st = load_file(t, dir, d);
    if (st == QM_OK)
        st = tok_config_load(t, dir, d);
    free(dir);
    if (st != QM_OK) {
        qm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QM_OK;
}

void qm_tokenizer_free(qm_tokenizer *t)
{
    if (!t)
        return;
    tok_norm_free(t->norm);
    tok_pretok_free(t->pretok);
    tok_bpe_free(t->bpe);
    tok_spm_free(t->spm);
    tok_added_free(t->added);
    tok_pieces_free(&t->pieces[0]);
    tok_pieces_free(&t->pieces[1]);
    free(t->clean.s);
    free(t->norm_buf.s);
    free(t->path);
    free(t);
}

int qm_tokenizer_bos(const qm_tokenizer *t)
{
    return t->bos;
}

long long qm_tokenizer_vocab(const qm_tokenizer *t)
{
    return t->vocab;
}

int qm_tokenizer_spm_piece(const qm_tokenizer *t, long long id, const char **text, size_t *len, float *score,
                           int *type)
{
    return t->spm && id >= 0 && tok_spm_piece(t->spm, (size_t)id, text, len, score, type);
}

static qm_status oom(qm_diag *d)
{
    return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
}

/* Pre-tokenize and encode s[0, len), normalized text between added tokens. */
static qm_status encode_pieces(qm_tokenizer *t, const char *s, size_t len, int first, qm_tokens *out, qm_diag *d)
{
    if (len == 0)
        return QM_OK;
    tok_pieces *in = &t->pieces[0], *pc = &t->pieces[1];
    tok_pieces_reset(in);
    if (!tok_pieces_add(in, s, len, first))
        return oom(d);
    if (t->pretok) {
        qm_status st = tok_pretok_run(t->pretok, in, pc, d);
        if (st != QM_OK)
            return st;
    } else
        pc = in;
    for (size_t i = 0; i < pc->n; i++) {
        qm_status st = tok_bpe_encode(t->bpe, pc->text.s + pc->span[i].begin, pc->span[i].end - pc->span[i].begin, out,
                                      d);
        if (st != QM_OK)
            return st;
    }
    return QM_OK;
}

/* Normalize s[0, len) (raw text between added tokens), cut out the added
 * tokens matched after normalization, encode the rest. */
static qm_status encode_segment(qm_tokenizer *t, const char *s, size_t len, int first, qm_tokens *out, qm_diag *d)
{
    if (len == 0)
        return QM_OK;
    if (t->norm) {
        qm_status st = tok_norm_run(t->norm, s, len, &t->norm_buf, d);
        if (st != QM_OK)
            return st;
        s = t->norm_buf.s;
        len = t->norm_buf.n;
    }
    size_t at = 0, b, e;
    int id;
    while (tok_added_find(t->added, 1, s, len, at, &b, &e, &id)) {
        qm_status st = encode_pieces(t, s + at, b - at, first && at == 0, out, d);
        if (st != QM_OK)
            return st;
        if (!tok_push(out, id))
            return oom(d);
        at = e;
    }
    return encode_pieces(t, s + at, len - at, first && at == 0, out, d);
}

qm_status qm_tokenizer_encode(qm_tokenizer *t, const char *text, size_t len, int add_special, qm_tokens *out,
                              qm_diag *d)
{
    if (add_special && t->bos >= 0 && !tok_push(out, t->bos))
        return oom(d);
    t->clean.n = 0;
    qm_buf_add(&t->clean, "", 0);
    tok_utf8_clean(text, len, &t->clean);
    if (t->clean.oom)
        return oom(d);
    const char *s = t->clean.s;
    len = t->clean.n;
    qm_status st;
    if (t->spm)
        st = tok_spm_encode(t->spm, s, len, out, d);
    else {
        size_t at = 0, b, e;
        int id;
        st = QM_OK;
        while (st == QM_OK && tok_added_find(t->added, 0, s, len, at, &b, &e, &id)) {
            st = encode_segment(t, s + at, b - at, at == 0, out, d);
            if (st == QM_OK && !tok_push(out, id))
                st = oom(d);
            at = e;
        }
        if (st == QM_OK)
            st = encode_segment(t, s + at, len - at, at == 0, out, d);
    }
    if (st == QM_OK && add_special && t->eos >= 0 && !tok_push(out, t->eos))
        st = oom(d);
    return st;
}
