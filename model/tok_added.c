/* tok_added.c: a tokenizer.json's added tokens, found in text before
 * anything else runs.
 *
 * Hugging Face cuts them out with one Aho-Corasick automaton in
 * leftmost-longest mode; the same matches come from trying, at each
 * position whose byte can start a token, the tokens starting with that
 * byte from the longest down.  Tokens marked `normalized` are looked for
 * in the normalized text, the others in the raw text (tokenizer.c). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tok_internal.h"

struct tok_added {
    tok_added_token *tok;  /* (n), contents owned */
    size_t n, cap;
    int sorted;            /* tok sorted by first byte, then longest first */
    size_t bucket[257];    /* tokens starting with byte b: tok[bucket[b], bucket[b + 1]) */
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

static int by_first_then_longest(const void *x, const void *y)
{
    const tok_added_token *a = x, *b = y;
    unsigned ca = (unsigned char)a->content[0], cb = (unsigned char)b->content[0];
    if (ca != cb)
        return ca < cb ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void index_tokens(tok_added *a)
{
    qsort(a->tok, a->n, sizeof *a->tok, by_first_then_longest);
    size_t i = 0;
    for (unsigned b = 0; b <= 256; b++) {
        a->bucket[b] = i;
        while (b < 256 && i < a->n && (unsigned char)a->tok[i].content[0] == b)
            i++;
    }
    a->sorted = 1;
}

int tok_added_any(const tok_added *a, int normalized)
{
    return a && a->any[!!normalized];
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
    tok_added *a = (tok_added *)ca; /* the index is built on first use */
    if (!a || !a->any[!!normalized])
        return 0;
    if (!a->sorted)
        index_tokens(a);
    for (size_t i = from; i < len; i++) {
        unsigned b = (unsigned char)s[i];
        for (size_t k = a->bucket[b]; k < a->bucket[b + 1]; k++) {
            const tok_added_token *t = &a->tok[k];
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
    free(a);
}
