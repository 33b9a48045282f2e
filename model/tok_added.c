/* tok_added.c: a tokenizer.json's added tokens, found in text before
 * anything else runs.
 *
 * Hugging Face cuts them out with one Aho-Corasick automaton in
 * leftmost-longest mode; the same matches come from trying, at each
 * position, the tokens that start with its two bytes from the longest
 * down, then the one-byte token of its byte.  (Keying on two bytes, not
 * one: DeepSeek-V3's 818 tokens all start with '<', and WikiText-2 holds
 * "<unk>" 15 thousand times.)  Tokens marked `normalized` are looked for
 * in the normalized text, the others in the raw text (tokenizer.c). */
#include "config.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tok_internal.h"

struct tok_added {
    tok_added_token *tok;  /* (n), contents owned */
    size_t n, cap;
    int sorted;            /* tok sorted as by_key_then_longest, and the index built */
    uint32_t *bucket;      /* (65537): tokens of two bytes or more starting with bytes b0 b1:
                            * tok[bucket[k], bucket[k + 1]) for k = b0 << 8 | b1 (owned) */
    int single[256];       /* index in tok of the one-byte token of each byte, -1 none */
    int any[2];            /* some token has normalized == i */
};

qm_status tok_added_new(tok_added **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? QM_OK : QM_ENOMEM;
}

qm_status tok_added_add(tok_added *a, const tok_added_token *t)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 32;
        void *tok = realloc(a->tok, cap * sizeof *a->tok);
        if (!tok)
            return QM_ENOMEM;
        a->tok = tok;
        a->cap = cap;
    }
    char *c = malloc(t->len + 1);
    if (!c)
        return QM_ENOMEM;
    memcpy(c, t->content, t->len);
    c[t->len] = '\0';
    a->tok[a->n] = *t;
    a->tok[a->n++].content = c;
    a->any[!!t->normalized] = 1;
    a->sorted = 0;
    return QM_OK;
}

/* One-byte tokens first, then by their first two bytes, longest first. */
static unsigned key_of(const tok_added_token *t)
{
    return t->len == 1 ? 0 : 1 + ((unsigned)(unsigned char)t->content[0] << 8 | (unsigned char)t->content[1]);
}

static int by_key_then_longest(const void *x, const void *y)
{
    const tok_added_token *a = x, *b = y;
    unsigned ka = key_of(a), kb = key_of(b);
    if (ka != kb)
        return ka < kb ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

qm_status tok_added_index(tok_added *a)
{
    if (!a->bucket && !(a->bucket = malloc(65537 * sizeof *a->bucket)))
        return QM_ENOMEM;
    qsort(a->tok, a->n, sizeof *a->tok, by_key_then_longest);
    for (int b = 0; b < 256; b++)
        a->single[b] = -1;
    size_t i = 0;
    for (; i < a->n && a->tok[i].len == 1; i++)
        if (a->single[(unsigned char)a->tok[i].content[0]] < 0)
            a->single[(unsigned char)a->tok[i].content[0]] = (int)i;
    for (unsigned k = 0; k <= 65536; k++) {
        a->bucket[k] = (uint32_t)i;
        while (k < 65536 && i < a->n && key_of(&a->tok[i]) == k + 1)
            i++;
    }
    a->sorted = 1;
    return QM_OK;
}

static int cat_of(const char *s, size_t len, size_t at, int before)
{
    /* the character just before `at` (before) or at `at` */
    if (before) {
        if (at == 0)
            return -1;
        size_t i = at - 1;
        while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
            i--;
        at = i;
    } else if (at >= len)
        return -1;
    size_t n;
    uint32_t c = tok_utf8_decode(s + at, &n);
    return c == '_' ? UTF8PROC_CATEGORY_LL : utf8proc_category((utf8proc_int32_t)c);
}

static int is_word(int cat)
{
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO ? 1
         : cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO;
}

static int is_space_at(const char *s, size_t at, size_t *n)
{
    uint32_t c = tok_utf8_decode(s + at, n);
    return c == ' ' || (c >= '\t' && c <= '\r') || utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ZS ||
           c == 0x85 || c == 0x2028 || c == 0x2029;
}

int tok_added_find(const tok_added *ca, int normalized, const char *s, size_t len, size_t from, size_t *begin,
                   size_t *end, int *id)
{
    const tok_added *a = ca;
    if (!a || !a->any[!!normalized])
        return 0;
    assert(a->sorted); /* the loader called tok_added_index() */
    for (size_t i = from; i < len; i++) {
        size_t first = 0, last = 0;
        if (i + 1 < len) {
            unsigned k = (unsigned)(unsigned char)s[i] << 8 | (unsigned char)s[i + 1];
            first = a->bucket[k];
            last = a->bucket[k + 1];
        }
        int one = a->single[(unsigned char)s[i]];
        for (size_t k = first; k < last + (one >= 0); k++) {
            const tok_added_token *t = &a->tok[k < last ? k : (size_t)one];
            if (!t->normalized != !normalized || t->len > len - i || memcmp(s + i, t->content, t->len) != 0)
                continue;
            if (t->single_word && (is_word(cat_of(s, len, i, 1)) || is_word(cat_of(s, len, i + t->len, 0))))
                continue;
            size_t bgn = i, e = i + t->len, n;
            if (t->lstrip)
                while (bgn > from) {
                    size_t p = bgn - 1;
                    while (p > from && ((unsigned char)s[p] & 0xc0) == 0x80)
                        p--;
                    if (!is_space_at(s, p, &n))
                        break;
                    bgn = p;
                }
            if (t->rstrip)
                while (e < len && is_space_at(s, e, &n))
                    e += n;
            *begin = bgn;
            *end = e;
            *id = t->id;
            return 1;
        }
    }
    return 0;
}

long long tok_added_id(const tok_added *a, const char *content, size_t len)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (a->tok[i].len == len && memcmp(a->tok[i].content, content, len) == 0)
            return a->tok[i].id;
    return -1;
}

void tok_added_free(tok_added *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free((char *)a->tok[i].content);
    free(a->tok);
    free(a->bucket);
    free(a);
}
