/* tok_spm.c: SentencePiece tokenizer.model files with a BPE model
 * (Mistral's, Llama's), read by a small protobuf reader of our own.
 *
 * The file is a ModelProto: pieces (text, score, type), a TrainerSpec
 * (model type, byte_fallback, unk/bos/eos ids) and a NormalizerSpec
 * (add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces).  Only
 * the "identity" normalizer is supported: a precompiled character map
 * (nmt_nfkc) is an error naming it.  Encoding follows SentencePiece's
 * bpe_model.cc: the normalized text starts as one symbol per character;
 * the adjacent pair whose concatenation is a piece with the highest score
 * merges first (leftmost among equals), until none is left; a symbol that
 * is not a piece becomes its <0xNN> bytes (byte_fallback) or unk.  Pairs
 * wait in a heap; symbols are spans of the text, so a candidate is looked
 * up without building its string. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/tok_internal.h"

enum piece_type { P_NORMAL = 1, P_UNKNOWN, P_CONTROL, P_USER_DEFINED, P_UNUSED, P_BYTE };
enum { MODEL_BPE = 2, CACHE_MAX_PIECE = 256, CACHE_MAX_ENTRIES = 1 << 18 };
#define META "\xe2\x96\x81" /* ▁, which stands for a space */

struct tok_spm {
    tok_map pieces;        /* every piece -> its index */
    float *score;          /* (n) */
    unsigned char *type;   /* (n) enum piece_type */
    size_t n;
    int unk, bos, eos;
    int byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws;
    int byte_id[256];      /* <0xNN> pieces, -1 none */
    int words;             /* no piece holds "▁" after another character: words encode alone */
    /* the cache of words: text -> offset into cache_ids, which holds a count then the ids */
    tok_map cache;
    int *cache_ids;
    size_t cache_n, cache_cap;
    /* scratch */
    qm_buf norm;
    struct sym { int begin, end, prev, next; } *sym;
    struct cand { float score; int left, right, len; } *heap;
    size_t sym_cap, heap_n, heap_cap;
};

/* ---- protobuf ---------------------------------------------------------------------------- */

typedef struct pb {
    const unsigned char *p, *end;
    int bad;
} pb;

static uint64_t pb_varint(pb *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = 1;
            return 0;
        }
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return v;
    }
    r->bad = 1;
    return 0;
}

/* The next field's number and wire type; 0 at the end or on bad input. */
static int pb_field(pb *r, int *wire)
{
    if (r->bad || r->p >= r->end)
        return 0;
    uint64_t key = pb_varint(r);
    *wire = (int)(key & 7);
    return r->bad || key >> 3 == 0 || key >> 3 > INT32_MAX ? (r->bad = 1, 0) : (int)(key >> 3);
}

/* A length-delimited field's bytes as a sub-reader. */
static pb pb_bytes(pb *r)
{
    uint64_t n = pb_varint(r);
    pb s = {r->p, r->p, 1};
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = 1;
        return s;
    }
    s = (pb){r->p, r->p + n, 0};
    r->p += n;
    return s;
}

static float pb_float(pb *r)
{
    float f = 0;
    if (r->end - r->p < 4)
        r->bad = 1;
    else {
        uint32_t u = r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
        memcpy(&f, &u, 4);
        r->p += 4;
    }
    return f;
}

static void pb_skip(pb *r, int wire)
{
    static const int fixed[] = {[1] = 8, [5] = 4};
    if (wire == 0)
        pb_varint(r);
    else if (wire == 2)
        pb_bytes(r);
    else if ((wire == 1 || wire == 5) && r->end - r->p >= fixed[wire])
        r->p += fixed[wire];
    else
        r->bad = 1;
}

/* ---- loading ------------------------------------------------------------------------------- */

static qm_status add_piece(tok_spm *s, pb *m, size_t cap, const char *path, qm_diag *d)
{
    const unsigned char *text = NULL;
    size_t len = 0;
    float score = 0;
    int type = P_NORMAL, wire, f;
    while ((f = pb_field(m, &wire)))
        if (f == 1 && wire == 2) {
            pb t = pb_bytes(m);
            text = t.p;
            len = (size_t)(t.end - t.p);
        } else if (f == 2 && wire == 5)
            score = pb_float(m);
        else if (f == 3 && wire == 0)
            type = (int)pb_varint(m);
        else
            pb_skip(m, wire);
    if (m->bad || !text || type < P_NORMAL || type > P_BYTE)
        return qm_diag_fail(d, QM_EFORMAT, "%s: piece %zu is malformed", path, s->n);
    if (s->n == cap)
        return qm_diag_fail(d, QM_EFORMAT, "%s: more pieces than the file can hold", path);
    uint32_t old;
    int oom = 0;
    if (tok_map_put(&s->pieces, (const char *)text, len, (uint32_t)s->n, &old, &oom))
        return qm_diag_fail(d, QM_EFORMAT, "%s: piece %zu '%.*s' repeats piece %u", path, s->n, (int)len, text, old);
    if (oom)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    s->score[s->n] = score;
    s->type[s->n++] = (unsigned char)type;
    return QM_OK;
}

static qm_status read_trainer(tok_spm *s, pb m, const char *path, qm_diag *d)
{
    int wire, f, model_type = 1; /* UNIGRAM unless said */
    while ((f = pb_field(&m, &wire))) {
        if (wire != 0) {
            pb_skip(&m, wire);
            continue;
        }
        int v = (int)(int32_t)(uint32_t)pb_varint(&m); /* int32 fields: negatives are 10-byte varints */
        if (f == 3)
            model_type = v;
        else if (f == 24 && v)
            return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: trainer_spec.treat_whitespace_as_suffix is not supported", path);
        else if (f == 35)
            s->byte_fallback = v != 0;
        else if (f == 40)
            s->unk = v;
        else if (f == 41)
            s->bos = v;
        else if (f == 42)
            s->eos = v;
    }
    if (m.bad)
        return qm_diag_fail(d, QM_EFORMAT, "%s: trainer_spec is malformed", path);
    if (model_type != MODEL_BPE)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: SentencePiece model type %d (%s) is not supported (supported: BPE)",
                            path, model_type, model_type == 1 ? "UNIGRAM" : model_type == 3 ? "WORD" : "CHAR");
    return QM_OK;
}

static qm_status read_normalizer(tok_spm *s, pb m, const char *path, qm_diag *d)
{
    int wire, f;
    const unsigned char *name = NULL;
    size_t name_len = 0, charsmap = 0;
    while ((f = pb_field(&m, &wire)))
        if ((f == 1 || f == 2) && wire == 2) {
            pb b = pb_bytes(&m);
            if (f == 1) {
                name = b.p;
                name_len = (size_t)(b.end - b.p);
            } else
                charsmap = (size_t)(b.end - b.p);
        } else if (f >= 3 && f <= 5 && wire == 0) {
            int v = pb_varint(&m) != 0;
            *(f == 3 ? &s->add_dummy_prefix : f == 4 ? &s->remove_extra_ws : &s->escape_ws) = v;
        } else
            pb_skip(&m, wire);
    if (m.bad)
        return qm_diag_fail(d, QM_EFORMAT, "%s: normalizer_spec is malformed", path);
    if (charsmap && !(name && name_len == 8 && memcmp(name, "identity", 8) == 0))
        return qm_diag_fail(d, QM_EUNSUPPORTED,
                            "%s: SentencePiece normalizer '%.*s' (a precompiled character map) is not supported "
                            "(supported: identity)", path, (int)name_len, name ? (const char *)name : "");
    return QM_OK;
}

/* 1 when a piece that merges may build holds "▁" right after another
 * character: then a merge may cross a word's start, and the text is
 * encoded whole (SentencePiece's own way); else each word alone gives the
 * same ids, and repeated words come from a cache. */
static int meta_inside(const tok_spm *s)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct tok_ent *e = &s->pieces.ent[i];
        const char *p = s->pieces.keys + e->off;
        if (s->type[e->id] != P_NORMAL && s->type[e->id] != P_USER_DEFINED)
            continue;
        for (size_t k = 1; k + 3 <= e->len; k++)
            if (memcmp(p + k, META, 3) == 0 && !(k >= 3 && memcmp(p + k - 3, META, 3) == 0))
                return 1;
    }
    return 0;
}

qm_status tok_spm_load(const char *path, tok_spm **out, qm_diag *d)
{
    char *data;
    size_t len;
    qm_status st = qm_read_file(path, &data, &len, d);
    if (st != QM_OK)
        return st;
    tok_spm *s = calloc(1, sizeof *s);
    size_t cap = len / 2 + 1; /* a piece takes at least two bytes */
    if (s) {
        s->score = malloc(cap * sizeof *s->score);
        s->type = malloc(cap);
    }
    if (!s || !s->score || !s->type) {
        free(data);
        tok_spm_free(s);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    /* proto defaults */
    s->unk = 0, s->bos = 1, s->eos = 2;
    s->add_dummy_prefix = s->remove_extra_ws = s->escape_ws = 1;
    pb r = {(const unsigned char *)data, (const unsigned char *)data + len, 0};
    int wire, f, seen_trainer = 0;
    while (st == QM_OK && (f = pb_field(&r, &wire))) {
        if (wire != 2 || f > 3) {
            pb_skip(&r, wire);
            continue;
        }
        pb m = pb_bytes(&r);
        if (r.bad)
            break;
        if (f == 1)
            st = add_piece(s, &m, cap, path, d);
        else if (f == 2) {
            seen_trainer = 1;
            st = read_trainer(s, m, path, d);
        } else
            st = read_normalizer(s, m, path, d);
    }
    free(data);
    if (st == QM_OK && r.bad)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: not a SentencePiece model (malformed protobuf)", path);
    if (st == QM_OK && (!seen_trainer || s->n == 0))
        st = qm_diag_fail(d, QM_EFORMAT, "%s: not a SentencePiece model (no %s)", path,
                          s->n ? "trainer_spec" : "pieces");
    if (st == QM_OK && (s->unk < 0 || (size_t)s->unk >= s->n))
        st = qm_diag_fail(d, QM_EFORMAT, "%s: unk_id %d is not a piece (the model has %zu)", path, s->unk, s->n);
    for (unsigned i = 0; st == QM_OK && i < 256; i++) {
        char hex[8];
        uint32_t id;
        snprintf(hex, sizeof hex, "<0x%02X>", i);
        s->byte_id[i] = tok_map_get(&s->pieces, hex, 6, &id) && s->type[id] == P_BYTE ? (int)id : -1;
        if (s->byte_fallback && s->byte_id[i] < 0)
            st = qm_diag_fail(d, QM_EFORMAT, "%s: byte_fallback is set but piece %s is missing", path, hex);
    }
    if (st != QM_OK) {
        tok_spm_free(s);
        return st;
    }
    s->words = !meta_inside(s);
    if (s->bos >= (int)s->n)
        s->bos = -1;
    if (s->eos >= (int)s->n)
        s->eos = -1;
    *out = s;
    return QM_OK;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

/* Normal pieces and user-defined ones are what merges may build. */
static int mergeable(const tok_spm *s, const char *p, size_t len, float *score)
{
    uint32_t id;
    if (!tok_map_get(&s->pieces, p, len, &id) || (s->type[id] != P_NORMAL && s->type[id] != P_USER_DEFINED))
        return 0;
    *score = s->score[id];
    return 1;
}

static int cand_before(const struct cand *a, const struct cand *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(tok_spm *s, struct cand c)
{
    size_t i = s->heap_n++;
    while (i && cand_before(&c, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = c;
}

static struct cand heap_pop(tok_spm *s)
{
    struct cand top = s->heap[0], v = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!cand_before(&s->heap[c], &v))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    s->heap[i] = v;
    return top;
}

static void try_pair(tok_spm *s, const char *t, int left, int right)
{
    float score;
    if (left < 0 || right < 0)
        return;
    int len = s->sym[right].end - s->sym[left].begin;
    if (mergeable(s, t + s->sym[left].begin, (size_t)len, &score))
        heap_push(s, (struct cand){score, left, right, len});
}

/* SentencePiece's identity normalizer: spaces collapsed and trimmed when
 * remove_extra_whitespaces, "▁" prepended (add_dummy_prefix) and
 * standing for each space (escape_whitespaces). */
static void normalize(tok_spm *s, const char *t, size_t len)
{
    static const char meta[] = META;
    s->norm.n = 0;
    qm_buf_add(&s->norm, "", 0);
    size_t b = 0, e = len;
    if (s->remove_extra_ws) {
        while (b < e && t[b] == ' ')
            b++;
        while (e > b && t[e - 1] == ' ')
            e--;
    }
    if (b == e)
        return;
    if (s->add_dummy_prefix)
        qm_buf_add(&s->norm, s->escape_ws ? meta : " ", s->escape_ws ? 3 : 1);
    for (size_t i = b; i < e; i++) {
        if (t[i] != ' ')
            qm_buf_add(&s->norm, t + i, 1);
        else if (!(s->remove_extra_ws && t[i - 1] == ' '))
            qm_buf_add(&s->norm, s->escape_ws ? meta : " ", s->escape_ws ? 3 : 1);
    }
}

/* Merge the symbols of t[0, n) and append their ids. */
static qm_status encode_span(tok_spm *s, const char *t, size_t n, qm_tokens *out, qm_diag *d)
{
    if (n + 1 > s->sym_cap) {
        /* each merge adds at most two candidates: 3n bound the heap */
        void *sym = realloc(s->sym, (n + 1) * sizeof *s->sym);
        if (sym)
            s->sym = sym;
        void *heap = realloc(s->heap, 3 * (n + 1) * sizeof *s->heap);
        if (heap)
            s->heap = heap;
        if (!sym || !heap)
            return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
        s->sym_cap = n + 1;
    }
    int k = 0;
    for (size_t i = 0, c; i < n; i += c, k++) {
        c = tok_utf8_len((unsigned char)t[i]);
        s->sym[k] = (struct sym){(int)i, (int)(i + c), k - 1, -1};
        if (k)
            s->sym[k - 1].next = k;
    }
    s->heap_n = 0;
    for (int i = 0; i + 1 < k; i++)
        try_pair(s, t, i, i + 1);
    while (s->heap_n) {
        struct cand c = heap_pop(s);
        struct sym *l = &s->sym[c.left], *r = &s->sym[c.right];
        /* stale: a side has merged since (its span changed) */
        if (l->begin < 0 || r->begin < 0 || l->next != c.right || r->end - l->begin != c.len)
            continue;
        l->end = r->end;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = c.left;
        r->begin = -1;
        try_pair(s, t, l->prev, c.left);
        try_pair(s, t, c.left, l->next);
    }
    for (int i = k ? 0 : -1; i >= 0; i = s->sym[i].next) {
        uint32_t id;
        const char *p = t + s->sym[i].begin;
        size_t pl = (size_t)(s->sym[i].end - s->sym[i].begin);
        int ok = 1;
        if (tok_map_get(&s->pieces, p, pl, &id) && s->type[id] != P_UNUSED)
            ok = tok_push(out, (int)id);
        else if (s->byte_fallback)
            for (size_t j = 0; ok && j < pl; j++)
                ok = tok_push(out, s->byte_id[(unsigned char)p[j]]);
        else
            ok = tok_push(out, s->unk);
        if (!ok)
            return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
    }
    return QM_OK;
}

/* Append the ids of t[0, n) from the cache, or encode and remember them. */
static qm_status encode_cached(tok_spm *s, const char *t, size_t n, qm_tokens *out, qm_diag *d)
{
    uint32_t at;
    if (n <= CACHE_MAX_PIECE && tok_map_get(&s->cache, t, n, &at)) {
        for (int i = 0; i < s->cache_ids[at]; i++)
            if (!tok_push(out, s->cache_ids[at + 1 + (uint32_t)i]))
                return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
        return QM_OK;
    }
    size_t before = out->n;
    qm_status st = encode_span(s, t, n, out, d);
    if (st != QM_OK || n > CACHE_MAX_PIECE)
        return st;
    size_t k = out->n - before;
    if (s->cache.n >= CACHE_MAX_ENTRIES) {
        tok_map_free(&s->cache);
        s->cache_n = 0;
    }
    if (s->cache_n + k + 1 > s->cache_cap) {
        size_t cap = 2 * (s->cache_cap + k + 1);
        int *c = realloc(s->cache_ids, cap * sizeof *c);
        if (!c)
            return QM_OK; /* not cached: only slower */
        s->cache_ids = c;
        s->cache_cap = cap;
    }
    uint32_t old;
    int oom = 0;
    if (s->cache_n <= UINT32_MAX && !tok_map_put(&s->cache, t, n, (uint32_t)s->cache_n, &old, &oom) && !oom) {
        s->cache_ids[s->cache_n] = (int)k;
        if (k)
            memcpy(s->cache_ids + s->cache_n + 1, out->ids + before, k * sizeof *out->ids);
        s->cache_n += k + 1;
    }
    return QM_OK;
}

qm_status tok_spm_encode(tok_spm *s, const char *text, size_t len, qm_tokens *out, qm_diag *d)
{
    normalize(s, text, len);
    const char *t = s->norm.s;
    size_t n = s->norm.n;
    if (s->norm.oom || n > INT32_MAX / 4)
        return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
    if (!s->words)
        return encode_span(s, t, n, out, d);
    /* words: cut before each "▁" that follows another character */
    size_t b = 0;
    for (size_t i = 1; i + 3 <= n; i++)
        if (memcmp(t + i, META, 3) == 0 && !(i >= 3 && memcmp(t + i - 3, META, 3) == 0)) {
            qm_status st = encode_cached(s, t + b, i - b, out, d);
            if (st != QM_OK)
                return st;
            b = i;
        }
    return encode_cached(s, t + b, n - b, out, d);
}

int tok_spm_bos(const tok_spm *s)
{
    return s->bos;
}

long long tok_spm_id(const tok_spm *s, const char *piece, size_t len)
{
    uint32_t id;
    return tok_map_get(&s->pieces, piece, len, &id) ? (long long)id : -1;
}

int tok_spm_piece(const tok_spm *s, size_t id, const char **text, size_t *len, float *score, int *type)
{
    /* pieces enter the map in id order and never repeat (add_piece) */
    if (id >= s->n || s->pieces.ent[id].id != id)
        return 0;
    *text = s->pieces.keys + s->pieces.ent[id].off;
    *len = s->pieces.ent[id].len;
    *score = s->score[id];
    *type = s->type[id];
    return 1;
}

long long tok_spm_vocab(const tok_spm *s)
{
    return (long long)s->n;
}

void tok_spm_free(tok_spm *s)
{
    if (!s)
        return;
    tok_map_free(&s->pieces);
    free(s->score);
    free(s->type);
    free(s->norm.s);
    tok_map_free(&s->cache);
    free(s->cache_ids);
    free(s->sym);
    free(s->heap);
    free(s);
}
