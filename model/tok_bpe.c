/* tok_bpe.c: the BPE model of tokenizer.json (and of GPT-2's pair).
 *
 * A piece starts as one symbol per character (per byte for byte-level
 * vocabularies, which are mapped back from GPT-2's printable characters to
 * raw bytes at load, so no text is ever mapped while encoding); then the
 * adjacent pair of lowest merge rank is merged, leftmost first among
 * equals, until no pair has a merge.  Candidates wait in a binary heap
 * keyed by (rank, position) and are checked when popped, so a piece of n
 * symbols costs O(n log n), not a rescan per merge.  Characters outside
 * the vocabulary become <0xNN> byte tokens (byte_fallback), else the unk
 * token (fused when fuse_unk), else nothing, as Hugging Face does.  Pieces
 * already encoded are kept in a cache: natural text repeats its words. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/tok_internal.h"

enum { CACHE_MAX_PIECE = 256, CACHE_MAX_ENTRIES = 1 << 18 };

/* (left id, right id) -> (rank, merged id), open addressing. */
typedef struct pair_slot {
    uint64_t key;        /* left << 32 | right, + 1 so that 0 marks an empty slot */
    uint32_t rank, id;
} pair_slot;

struct tok_bpe {
    tok_map written;      /* tokens as the file writes them -> id */
    tok_map raw;          /* byte-level: tokens as raw bytes -> id */
    const tok_map *units; /* what pieces are looked up in: &raw or &written */
    pair_slot *pairs;     /* (pair_cap) */
    size_t pair_cap;
    int byte_level, byte_fallback, fuse_unk, ignore_merges;
    int unk;              /* -1: none */
    char *prefix, *suffix;/* NULL or owned */
    int byte_id[256];     /* byte-level: id of each byte alone (-1 none) */
    int fallback_id[256]; /* id of <0xNN> (-1 none) */
    long long vocab_n;
    /* scratch for one piece */
    int *sym_id, *sym_next, *sym_prev;
    uint64_t *heap;
    size_t sym_cap;       /* symbols; the heap holds 3 * sym_cap */
    qm_buf look;
    /* the cache: piece -> offset into cache_ids, which holds a count then the ids */
    tok_map cache;
    int *cache_ids;
    size_t cache_n, cache_cap;
};

static uint64_t pair_hash(uint64_t k)
{
    k ^= k >> 31;
    k *= 0x9e3779b97f4a7c15ull;
    return k ^ (k >> 29);
}

static const pair_slot *pair_get(const tok_bpe *b, uint32_t l, uint32_t r)
{
    uint64_t key = ((uint64_t)l << 32 | r) + 1;
    for (size_t j = pair_hash(key) & (b->pair_cap - 1);; j = (j + 1) & (b->pair_cap - 1)) {
        if (b->pairs[j].key == key)
            return &b->pairs[j];
        if (!b->pairs[j].key)
            return NULL;
    }
}

/* A later duplicate overrides, as in Hugging Face's map of merges. */
static void pair_put(tok_bpe *b, uint32_t l, uint32_t r, uint32_t rank, uint32_t id)
{
    uint64_t key = ((uint64_t)l << 32 | r) + 1;
    size_t j = pair_hash(key) & (b->pair_cap - 1);
    while (b->pairs[j].key && b->pairs[j].key != key)
        j = (j + 1) & (b->pair_cap - 1);
    b->pairs[j] = (pair_slot){key, rank, id};
}

static long long map_id(const tok_map *m, const char *s, size_t len)
{
    uint32_t id;
    return tok_map_get(m, s, len, &id) ? (long long)id : -1;
}

long long tok_bpe_id(const tok_bpe *b, const char *s, size_t len)
{
    return map_id(&b->written, s, len);
}

long long tok_bpe_vocab(const tok_bpe *b)
{
    return b->vocab_n;
}

/* The raw bytes of a byte-level token into out; 0 when some character of
 * it is none of GPT-2's 256 (such a token can never come from bytes). */
static int unmap_byte_level(const char *s, size_t len, qm_buf *out)
{
    out->n = 0;
    for (size_t i = 0, k; i < len; i += k) {
        int byte = tok_char_byte(tok_utf8_decode(s + i, &k));
        if (byte < 0)
            return 0;
        char c = (char)byte;
        qm_buf_add(out, &c, 1);
    }
    return 1;
}

static qm_status load_vocab(tok_bpe *b, json_t *vocab, const char *where, qm_diag *d)
{
    const char *key;
    json_t *v;
    int oom = 0;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id > INT32_MAX)
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.vocab['%s']: expected an id in [0, 2^31), got %s", where,
                                key, json_is_integer(v) ? "an integer outside it" : "another JSON type");
        size_t len = strlen(key); /* jansson keys stop at a NUL, and no token holds one */
        uint32_t old;
        if (tok_map_put(&b->written, key, len, (uint32_t)id, &old, &oom))
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.vocab: token '%s' appears twice", where, key);
        if (b->byte_level && unmap_byte_level(key, len, &b->look))
            tok_map_put(&b->raw, b->look.s, b->look.n, (uint32_t)id, &old, &oom);
        if (id + 1 > b->vocab_n)
            b->vocab_n = id + 1;
    }
    return oom || b->look.oom ? qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where) : QM_OK;
}

/* Split merge i ("a b" or ["a", "b"]) into its two tokens. */
static int merge_parts(json_t *m, const char **a, size_t *al, const char **c, size_t *cl)
{
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *al = json_string_length(json_array_get(m, 0));
        *c = json_string_value(json_array_get(m, 1));
        *cl = json_string_length(json_array_get(m, 1));
        return 1;
    }
    const char *s = json_string_value(m);
    const char *sp = s ? strchr(s, ' ') : NULL;
    if (!sp || strchr(sp + 1, ' '))
        return 0;
    *a = s;
    *al = (size_t)(sp - s);
    *c = sp + 1;
    *cl = strlen(sp + 1);
    return 1;
}

static qm_status load_merges(tok_bpe *b, json_t *merges, const char *where, qm_diag *d)
{
    size_t n = json_array_size(merges), cap = 16;
    while (cap < 2 * n + 16)
        cap *= 2;
    b->pairs = calloc(cap, sizeof *b->pairs);
    if (!b->pairs)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    b->pair_cap = cap;
    size_t plen = b->prefix ? strlen(b->prefix) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *a, *c;
        size_t al, cl;
        if (!merge_parts(json_array_get(merges, i), &a, &al, &c, &cl))
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.merges[%zu]: expected \"A B\" or [\"A\", \"B\"]", where, i);
        long long ia = map_id(&b->written, a, al), ic = map_id(&b->written, c, cl);
        /* the merged token drops the right part's continuing prefix */
        size_t skip = plen && cl >= plen && memcmp(c, b->prefix, plen) == 0 ? plen : 0;
        b->look.n = 0;
        qm_buf_add(&b->look, a, al);
        qm_buf_add(&b->look, c + skip, cl - skip);
        if (b->look.oom)
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
        long long im = map_id(&b->written, b->look.s, b->look.n);
        if (ia < 0 || ic < 0 || im < 0)
            return qm_diag_fail(d, QM_EFORMAT, "%s: model.merges[%zu] '%.*s %.*s': token '%.*s' is not in the vocabulary",
                                where, i, (int)al, a, (int)cl, c, ia < 0 ? (int)al : ic < 0 ? (int)cl : (int)b->look.n,
                                ia < 0 ? a : ic < 0 ? c : b->look.s);
        pair_put(b, (uint32_t)ia, (uint32_t)ic, (uint32_t)i, (uint32_t)im);
    }
    return QM_OK;
}

qm_status tok_bpe_load(json_t *vocab, json_t *merges, const tok_bpe_opts *o, const char *where, tok_bpe **out,
                       qm_diag *d)
{
    if (!json_is_object(vocab) || !json_is_array(merges))
        return qm_diag_fail(d, QM_EFORMAT, "%s: model needs an object \"vocab\" and an array \"merges\"", where);
    tok_bpe *b = calloc(1, sizeof *b);
    if (!b)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    b->byte_level = o->byte_level;
    b->byte_fallback = o->byte_fallback;
    b->fuse_unk = o->fuse_unk;
    b->ignore_merges = o->ignore_merges;
    b->unk = -1;
    b->units = o->byte_level ? &b->raw : &b->written;
    qm_status st = QM_OK;
    if ((o->prefix && *o->prefix && !(b->prefix = qm_strdup(o->prefix))) ||
        (o->suffix && *o->suffix && !(b->suffix = qm_strdup(o->suffix))))
        st = qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    if (st == QM_OK)
        st = load_vocab(b, vocab, where, d);
    if (st == QM_OK)
        st = load_merges(b, merges, where, d);
    if (st == QM_OK && o->unk && (b->unk = (int)map_id(&b->written, o->unk, strlen(o->unk))) < 0)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: model.unk_token '%s' is not in the vocabulary", where, o->unk);
    for (unsigned i = 0; st == QM_OK && i < 256; i++) {
        char hex[8], c = (char)i;
        snprintf(hex, sizeof hex, "<0x%02X>", i);
        b->fallback_id[i] = o->byte_fallback ? (int)map_id(&b->written, hex, 6) : -1;
        b->byte_id[i] = (int)map_id(&b->raw, &c, 1);
    }
    if (st != QM_OK) {
        tok_bpe_free(b);
        return st;
    }
    *out = b;
    return QM_OK;
}

/* ---- encoding one piece ------------------------------------------------------------ */

static int grow_scratch(tok_bpe *b, size_t n)
{
    if (n <= b->sym_cap)
        return 1;
    size_t cap = 2 * n;
    int *id = realloc(b->sym_id, cap * sizeof *id);
    if (id)
        b->sym_id = id;
    int *nx = realloc(b->sym_next, cap * sizeof *nx);
    if (nx)
        b->sym_next = nx;
    int *pv = realloc(b->sym_prev, cap * sizeof *pv);
    if (pv)
        b->sym_prev = pv;
    /* each merge pushes at most two candidates: 3n bound the heap */
    uint64_t *h = realloc(b->heap, 3 * cap * sizeof *h);
    if (h)
        b->heap = h;
    if (!id || !nx || !pv || !h)
        return 0;
    b->sym_cap = cap;
    return 1;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

/* The id of unit s[0, len) at position `at` of a piece whose units end at
 * `last`, with the continuing prefix and word suffix, or -1. */
static long long unit_id(tok_bpe *b, const char *s, size_t len, int first, int last)
{
    if (!b->prefix && !b->suffix) {
        if (b->byte_level && len == 1)
            return b->byte_id[(unsigned char)s[0]];
        return map_id(b->units, s, len);
    }
    b->look.n = 0;
    if (b->prefix && !first)
        qm_buf_add(&b->look, b->prefix, strlen(b->prefix));
    qm_buf_add(&b->look, s, len);
    if (b->suffix && last)
        qm_buf_add(&b->look, b->suffix, strlen(b->suffix));
    return b->look.oom ? -1 : map_id(b->units, b->look.s, b->look.n);
}

/* Symbols of s[0, len) into b->sym_id; their count, or -1 out of memory. */
static long initial_symbols(tok_bpe *b, const char *s, size_t len)
{
    long n = 0;
    int unk_open = 0; /* the last symbol is an unk that fuse_unk may extend */
    for (size_t i = 0, k; i < len; i += k) {
        k = b->byte_level ? 1 : tok_utf8_len((unsigned char)s[i]);
        if (k > len - i)
            k = len - i;
        long long id = unit_id(b, s + i, k, i == 0, i + k == len);
        if (id >= 0) {
            b->sym_id[n++] = (int)id;
            unk_open = 0;
            continue;
        }
        int all = b->byte_fallback;
        for (size_t j = 0; all && j < k; j++)
            all = b->fallback_id[(unsigned char)s[i + j]] >= 0;
        if (all) {
            for (size_t j = 0; j < k; j++)
                b->sym_id[n++] = b->fallback_id[(unsigned char)s[i + j]];
            unk_open = 0;
        } else if (b->unk >= 0 && !(unk_open && b->fuse_unk)) {
            b->sym_id[n++] = b->unk;
            unk_open = 1;
        }
    }
    return n;
}

static qm_status encode_uncached(tok_bpe *b, const char *s, size_t len, qm_tokens *out, qm_diag *d)
{
    if (!grow_scratch(b, len + 1))
        return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
    long n = initial_symbols(b, s, len);
    int *id = b->sym_id, *next = b->sym_next, *prev = b->sym_prev;
    size_t hn = 0;
    for (long i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int)i + 1 : -1;
        prev[i] = (int)i - 1;
        const pair_slot *p = i + 1 < n ? pair_get(b, (uint32_t)id[i], (uint32_t)id[i + 1]) : NULL;
        if (p)
            heap_push(b->heap, &hn, (uint64_t)p->rank << 32 | (uint64_t)i);
    }
    while (hn) {
        uint64_t top = heap_pop(b->heap, &hn);
        int at = (int)(uint32_t)top, r = next[at];
        uint32_t rank = (uint32_t)(top >> 32);
        if (id[at] < 0 || r < 0)
            continue;
        const pair_slot *p = pair_get(b, (uint32_t)id[at], (uint32_t)id[r]);
        if (!p || p->rank != rank) /* stale: one side has merged since */
            continue;
        id[at] = (int)p->id;
        id[r] = -1;
        next[at] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = at;
        if (prev[at] >= 0 && (p = pair_get(b, (uint32_t)id[prev[at]], (uint32_t)id[at])))
            heap_push(b->heap, &hn, (uint64_t)p->rank << 32 | (uint64_t)prev[at]);
        if (next[at] >= 0 && (p = pair_get(b, (uint32_t)id[at], (uint32_t)id[next[at]])))
            heap_push(b->heap, &hn, (uint64_t)p->rank << 32 | (uint64_t)at);
    }
    for (int i = n ? 0 : -1; i >= 0; i = next[i])
        if (!tok_push(out, id[i]))
            return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
    return QM_OK;
}

static void cache_clear(tok_bpe *b)
{
    tok_map_free(&b->cache);
    b->cache_n = 0;
}

/* Remember ids[0, n) as the encoding of s; a failure only skips it. */
static void cache_put(tok_bpe *b, const char *s, size_t len, const int *ids, size_t n)
{
    if (b->cache.n >= CACHE_MAX_ENTRIES)
        cache_clear(b);
    if (b->cache_n + n + 1 > b->cache_cap) {
        size_t cap = 2 * (b->cache_cap + n + 1);
        int *c = realloc(b->cache_ids, cap * sizeof *c);
        if (!c)
            return;
        b->cache_ids = c;
        b->cache_cap = cap;
    }
    uint32_t old;
    int oom = 0;
    if (b->cache_n > UINT32_MAX || tok_map_put(&b->cache, s, len, (uint32_t)b->cache_n, &old, &oom) || oom)
        return;
    b->cache_ids[b->cache_n] = (int)n;
    if (n)
        memcpy(b->cache_ids + b->cache_n + 1, ids, n * sizeof *ids);
    b->cache_n += n + 1;
}

qm_status tok_bpe_encode(tok_bpe *b, const char *s, size_t len, qm_tokens *out, qm_diag *d)
{
    uint32_t at;
    if (len <= CACHE_MAX_PIECE && tok_map_get(&b->cache, s, len, &at)) {
        const int *c = b->cache_ids + at;
        for (int i = 0; i < c[0]; i++)
            if (!tok_push(out, c[1 + i]))
                return qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
        return QM_OK;
    }
    if (len > INT32_MAX / 4) /* symbol positions are 32-bit */
        return qm_diag_fail(d, QM_EUNSUPPORTED, "tokenizer: a piece of %zu bytes (one word or run after "
                            "pre-tokenization) is more than BPE here takes (%d)", len, INT32_MAX / 4);
    long long whole = b->ignore_merges ? map_id(b->units, s, len) : -1;
    if (whole >= 0)
        return tok_push(out, (int)whole) ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "tokenizer: out of memory");
    size_t before = out->n;
    qm_status st = encode_uncached(b, s, len, out, d);
    if (st == QM_OK && len <= CACHE_MAX_PIECE)
        cache_put(b, s, len, out->n > before ? out->ids + before : NULL, out->n - before); /* none: all dropped */
    return st;
}

void tok_bpe_free(tok_bpe *b)
{
    if (!b)
        return;
    tok_map_free(&b->written);
    tok_map_free(&b->raw);
    tok_map_free(&b->cache);
    free(b->pairs);
    free(b->prefix);
    free(b->suffix);
    free(b->sym_id);
    free(b->sym_next);
    free(b->sym_prev);
    free(b->heap);
    free(b->look.s);
    free(b->cache_ids);
    free(b);
}
