/* tok_util.c: what the tokenizer's stages share: a byte-string map, piece
 * lists, UTF-8 cleaning and coding, GPT-2's byte characters, and PCRE2
 * compilation. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/tok_internal.h"

/* ---- byte-string map ------------------------------------------------------------ */

static uint32_t hash_bytes(const char *s, size_t len)
{
    /* 64-bit multiply-mix over 8-byte words: pieces are short and looked up
     * once per merge candidate, so the hash is on the hot path */
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)h;
}

static int map_grow(tok_map *m)
{
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (!slot)
        return 0;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->ent[i].hash & (cap - 1);
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = (uint32_t)i + 1;
    }
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
    return 1;
}

int tok_map_get(const tok_map *m, const char *k, size_t len, uint32_t *id)
{
    if (!k) /* an empty key may come with no pointer (an empty JSON string): */
        k = ""; /* memcpy and memcmp must not see NULL even for 0 bytes */
    if (!m->cap)
        return 0;
    uint32_t h = hash_bytes(k, len);
    for (size_t j = h & (m->cap - 1); m->slot[j]; j = (j + 1) & (m->cap - 1)) {
        const struct tok_ent *e = &m->ent[m->slot[j] - 1];
        if (e->hash == h && e->len == len && memcmp(m->keys + e->off, k, len) == 0) {
            *id = e->id;
            return 1;
        }
    }
    return 0;
}

int tok_map_put(tok_map *m, const char *k, size_t len, uint32_t id, uint32_t *old, int *oom)
{
    if (!k)
        k = "";
    if (tok_map_get(m, k, len, old))
        return 1;
    if ((m->n + 1) * 2 > m->cap && !map_grow(m))
        goto oom;
    if (m->n == m->ent_cap) {
        size_t cap = m->ent_cap ? 2 * m->ent_cap : 1024;
        void *e = realloc(m->ent, cap * sizeof *m->ent);
        if (!e)
            goto oom;
        m->ent = e;
        m->ent_cap = cap;
    }
    if (m->keys_n + len + 1 > m->keys_cap || len > UINT32_MAX - m->keys_n) {
        size_t cap = 2 * (m->keys_cap + len + 1);
        char *keys = cap <= UINT32_MAX ? realloc(m->keys, cap) : NULL;
        if (!keys)
            goto oom;
        m->keys = keys;
        m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_n, k, len);
    uint32_t h = hash_bytes(k, len);
    m->ent[m->n] = (struct tok_ent){.off = (uint32_t)m->keys_n, .len = (uint32_t)len, .id = id, .hash = h};
    m->keys_n += len;
    size_t j = h & (m->cap - 1);
    while (m->slot[j])
        j = (j + 1) & (m->cap - 1);
    m->slot[j] = (uint32_t)++m->n;
    return 0;
oom:
    *oom = 1;
    return 0;
}

void tok_map_free(tok_map *m)
{
    free(m->slot);
    free(m->ent);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

/* ---- pieces ------------------------------------------------------------------------ */

int tok_pieces_add(tok_pieces *p, const char *s, size_t len, int first)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        void *span = realloc(p->span, cap * sizeof *p->span);
        if (!span) {
            p->text.oom = 1;
            return 0;
        }
        p->span = span;
        p->cap = cap;
    }
    size_t begin = p->text.n;
    qm_buf_add(&p->text, s, len);
    if (p->text.oom)
        return 0;
    p->span[p->n++] = (struct tok_span){begin, begin + len, first};
    return 1;
}

void tok_pieces_reset(tok_pieces *p)
{
    p->n = 0;
    p->text.n = 0;
    if (p->text.s)
        p->text.s[0] = '\0';
}

void tok_pieces_free(tok_pieces *p)
{
    free(p->text.s);
    free(p->span);
    memset(p, 0, sizeof *p);
}

int tok_push(qm_tokens *out, int id)
{
    /* qm_tokens keeps no capacity: it is the power of two at or above n
     * (at least 16), so growing is due when n reaches one */
    size_t n = out->n;
    if (!out->ids || (n >= 16 && (n & (n - 1)) == 0)) {
        int *ids = realloc(out->ids, (n < 16 ? 16 : 2 * n) * sizeof *ids);
        if (!ids)
            return 0;
        out->ids = ids;
    }
    out->ids[out->n++] = id;
    return 1;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

void tok_utf8_clean(const char *str, size_t len, qm_buf *out)
{
    static const char fffd[] = "\xef\xbf\xbd";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0; /* s[run, i): valid bytes not yet copied */
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* WHATWG: the bounds of the second byte depend on the first */
        size_t need;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            need = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            need = 0;
        size_t k = 1;
        while (need && k <= need && i + k < len) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf))
                break;
            k++;
        }
        if (need && k == need + 1) {
            i += k;
            continue;
        }
        /* s[i, i + k) is a maximal invalid subsequence: one U+FFFD */
        qm_buf_add(out, str + run, i - run);
        qm_buf_add(out, fffd, 3);
        i += k;
        run = i;
    }
    qm_buf_add(out, str + run, len - run);
}

uint32_t tok_utf8_decode(const char *str, size_t *n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t l = tok_utf8_len(s[0]);
    uint32_t c = l == 1 ? s[0] : l == 2 ? s[0] & 0x1f : l == 3 ? s[0] & 0x0f : s[0] & 0x07;
    for (size_t i = 1; i < l; i++)
        c = c << 6 | (s[i] & 0x3f);
    *n = l;
    return c;
}

size_t tok_utf8_encode(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | c >> 6);
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | (c >> 6 & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | (c >> 12 & 0x3f));
    o[2] = (char)(0x80 | (c >> 6 & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* ---- GPT-2's byte characters ----------------------------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the 68 others (controls,
 * space, DEL, NBSP, soft hyphen) take U+0100 onwards in byte order. */
static int printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
}

uint32_t tok_byte_char(unsigned b)
{
    if (printable(b))
        return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        k += !printable(x);
    return 256 + k;
}

int tok_char_byte(uint32_t c)
{
    if (c < 256)
        return printable(c) ? (int)c : -1;
    unsigned k = c - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!printable(b) && k-- == 0)
            return (int)b;
    return -1;
}

/* ---- regexes ----------------------------------------------------------------------------- */

pcre2_code *tok_regex(const char *pat, size_t len, int literal, const char *where, qm_diag *d)
{
    int err;
    PCRE2_SIZE at;
    /* a literal has no classes, and PCRE2 refuses UCP beside LITERAL */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_NO_UTF_CHECK |
                                   (literal ? PCRE2_LITERAL : PCRE2_UCP), &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        qm_diag_fail(d, QM_EFORMAT, "%s: regex '%.*s': %s at offset %zu", where, (int)len, pat, (char *)msg,
                     (size_t)at);
        return NULL;
    }
    /* JIT is an optimisation: without it (no JIT on this platform) the
     * interpreter gives the same matches */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}
