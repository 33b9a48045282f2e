/* tok_norm.c: tokenizer.json normalizers, one table row per "type".
 *
 * A normalizer rewrites a stretch of text before it is split: Unicode
 * normal forms and lower-casing through utf8proc, Replace with a string or
 * a PCRE2 regex, Prepend, and Sequence of those.  Hugging Face's
 * Lowercase is Rust's full to_lowercase; utf8proc maps one code point to
 * one, which differs only for U+0130 (İ -> "i̇" in Rust). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "model/tok_internal.h"

typedef struct norm_kind {
    const char *type;
    qm_status (*load)(tok_norm *n, json_t *j, const char *where, qm_diag *d);
    qm_status (*run)(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d);
} norm_kind;

struct tok_norm {
    const norm_kind *kind;
    int options;          /* utf8proc options of a normal form */
    char *str;            /* Replace: the string looked for; Prepend: what is put first (owned) */
    size_t str_len;
    char *content;        /* Replace: the replacement (owned) */
    size_t content_len;
    pcre2_code *re;       /* Replace with a Regex (owned) */
    tok_norm *child;      /* Sequence: (n_child) */
    size_t n_child;
};

static const char *get_string(json_t *j, const char *key, size_t *len)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

static char *dup_bytes(const char *s, size_t len)
{
    char *c = malloc(len + 1);
    if (c) {
        memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

/* ---- normal forms and case ------------------------------------------------------ */

static qm_status load_form(tok_norm *n, json_t *j, const char *where, qm_diag *d)
{
    const char *type = n->kind->type;
    n->options = UTF8PROC_STABLE | (strncmp(type, "NFK", 3) == 0 ? UTF8PROC_COMPAT : 0) |
                 (strchr(type, 'C') ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE);
    return QM_OK;
}

/* Normalize s[0, len) as a whole into out. */
static qm_status map_chunk(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    utf8proc_uint8_t *r;
    utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &r, n->options);
    if (rl < 0)
        return qm_diag_fail(d, rl == UTF8PROC_ERROR_NOMEM ? QM_ENOMEM : QM_EINVAL, "%s normalizer: %s",
                            n->kind->type, utf8proc_errmsg(rl));
    qm_buf_add(out, (const char *)r, (size_t)rl);
    free(r);
    return QM_OK;
}

/* ASCII is its own normal form in all four, never decomposes, and is never
 * the second of a composed pair nor a non-starter, so text normalizes
 * stretch by stretch: each run of non-ASCII with the ASCII character before
 * it (a base a combining mark may compose with), ASCII copied between. */
static qm_status run_form(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && (unsigned char)s[j] < 0x80)
            j++;
        size_t b = j > i ? j - 1 : j;
        qm_buf_add(out, s + i, b - i);
        if (j == len) {
            qm_buf_add(out, s + b, len - b);
            break;
        }
        size_t e = j;
        while (e < len && (unsigned char)s[e] >= 0x80)
            e++;
        qm_status st = map_chunk(n, s + b, e - b, out, d);
        if (st != QM_OK)
            return st;
        i = e;
    }
    return QM_OK;
}

static int cased(uint32_t c)
{
    int k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static int case_ignorable(uint32_t c)
{
    int k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || c == '\'' || c == '.' || c == ':' ||
           c == 0xb7 || c == 0x2019;
}

/* Is a cased letter next to s[at] (before it when back), case-ignorable
 * characters skipped? Unicode's Final_Sigma condition, as Rust tests it. */
static int cased_beside(const char *s, size_t len, size_t at, int back)
{
    size_t k;
    while (back ? at > 0 : at < len) {
        if (back) {
            do
                at--;
            while (at > 0 && ((unsigned char)s[at] & 0xc0) == 0x80);
        }
        uint32_t c = tok_utf8_decode(s + at, &k);
        if (!back)
            at += k;
        if (!case_ignorable(c))
            return cased(c);
    }
    return 0;
}

static qm_status run_lowercase(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    char u[4];
    for (size_t i = 0, k; i < len; i += k) {
        uint32_t c = tok_utf8_decode(s + i, &k);
        if (c == 0x130) /* İ: i and a combining dot above */
            qm_buf_add(out, "i\xcc\x87", 3);
        else if (c == 0x3a3 && cased_beside(s, len, i, 1) && !cased_beside(s, len, i + k, 0))
            qm_buf_add(out, "\xcf\x82", 2); /* final sigma */
        else
            qm_buf_add(out, u, tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)c), u));
    }
    return QM_OK;
}

/* ---- Replace and Prepend ------------------------------------------------------------- */

static qm_status load_replace(tok_norm *n, json_t *j, const char *where, qm_diag *d)
{
    json_t *pat = json_object_get(j, "pattern");
    size_t plen = 0, clen = 0;
    const char *content = get_string(j, "content", &clen);
    const char *str = get_string(pat, "String", &plen);
    const char *re = get_string(pat, "Regex", &plen);
    if (!content || (!str && !re))
        return qm_diag_fail(d, QM_EFORMAT, "%s: Replace needs \"pattern\" {\"String\"|\"Regex\": ...} and \"content\"",
                            where);
    if (str && plen == 0)
        return qm_diag_fail(d, QM_EFORMAT, "%s: Replace: the pattern string is empty", where);
    n->content = dup_bytes(content, clen);
    n->content_len = clen;
    if (!n->content)
        return QM_ENOMEM;
    if (re)
        return (n->re = tok_regex(re, plen, 0, where, d)) ? QM_OK : QM_EFORMAT;
    n->str_len = plen;
    return (n->str = dup_bytes(str, plen)) ? QM_OK : QM_ENOMEM;
}

static qm_status run_replace(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    if (n->str) {
        for (size_t i = 0; i < len;) {
            const char *hit = n->str_len <= len - i ? memmem(s + i, len - i, n->str, n->str_len) : NULL;
            size_t at = hit ? (size_t)(hit - s) : len;
            qm_buf_add(out, s + i, at - i);
            if (!hit)
                break;
            qm_buf_add(out, n->content, n->content_len);
            i = at + n->str_len;
        }
        return QM_OK;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(n->re, NULL);
    if (!md)
        return QM_ENOMEM;
    size_t i = 0, copied = 0;
    while (i <= len && pcre2_match(n->re, (PCRE2_SPTR)s, len, i, PCRE2_NO_UTF_CHECK, md, NULL) >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        qm_buf_add(out, s + copied, ov[0] - copied);
        qm_buf_add(out, n->content, n->content_len);
        copied = ov[1];
        /* an empty match moves on by one character */
        i = ov[1] > ov[0] ? ov[1] : ov[1] + (ov[1] < len ? tok_utf8_len((unsigned char)s[ov[1]]) : 1);
        if (ov[1] == ov[0] && ov[1] < len) {
            qm_buf_add(out, s + copied, i - copied);
            copied = i;
        }
    }
    pcre2_match_data_free(md);
    if (copied < len)
        qm_buf_add(out, s + copied, len - copied);
    return QM_OK;
}

static qm_status load_prepend(tok_norm *n, json_t *j, const char *where, qm_diag *d)
{
    size_t len;
    const char *p = get_string(j, "prepend", &len);
    if (!p)
        return qm_diag_fail(d, QM_EFORMAT, "%s: Prepend needs a string \"prepend\"", where);
    n->str_len = len;
    return (n->str = dup_bytes(p, len)) ? QM_OK : QM_ENOMEM;
}

static qm_status run_prepend(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    if (len) /* Hugging Face prepends to non-empty text only */
        qm_buf_add(out, n->str, n->str_len);
    qm_buf_add(out, s, len);
    return QM_OK;
}

/* ---- Sequence ------------------------------------------------------------------------- */

static qm_status load_sequence(tok_norm *n, json_t *j, const char *where, qm_diag *d)
{
    json_t *list = json_object_get(j, "normalizers");
    if (!json_is_array(list))
        return qm_diag_fail(d, QM_EFORMAT, "%s: Sequence needs an array \"normalizers\"", where);
    n->n_child = json_array_size(list);
    n->child = calloc(n->n_child ? n->n_child : 1, sizeof *n->child);
    if (!n->child)
        return QM_ENOMEM;
    for (size_t i = 0; i < n->n_child; i++) {
        tok_norm *c;
        qm_status st = tok_norm_load(json_array_get(list, i), where, &c, d);
        if (st != QM_OK) {
            n->n_child = i;
            return st;
        }
        n->child[i] = *c;
        free(c);
    }
    return QM_OK;
}

static qm_status run_sequence(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    qm_buf a = {0};
    qm_buf_add(&a, s, len);
    qm_status st = QM_OK;
    for (size_t i = 0; st == QM_OK && i < n->n_child; i++) {
        qm_buf b = {0};
        qm_buf_add(&b, "", 0);
        st = n->child[i].kind->run(&n->child[i], a.s, a.n, &b, d);
        free(a.s);
        a = b;
        if (a.oom && st == QM_OK)
            st = QM_ENOMEM;
    }
    if (st == QM_OK)
        qm_buf_add(out, a.s, a.n);
    free(a.s);
    return st;
}

static const norm_kind kinds[] = {
    {"NFC", load_form, run_form},
    {"NFD", load_form, run_form},
    {"NFKC", load_form, run_form},
    {"NFKD", load_form, run_form},
    {"Lowercase", NULL, run_lowercase},
    {"Replace", load_replace, run_replace},
    {"Prepend", load_prepend, run_prepend},
    {"Sequence", load_sequence, run_sequence},
};

qm_status tok_norm_load(json_t *j, const char *where, tok_norm **out, qm_diag *d)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return qm_diag_fail(d, QM_EFORMAT, "%s: expected an object with a string \"type\"", where);
    const norm_kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].type, type) == 0)
            k = &kinds[i];
    if (!k)
        return qm_diag_fail(d, QM_EUNSUPPORTED,
                            "%s: normalizer type '%s' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, "
                            "Replace, Prepend, Sequence)", where, type);
    tok_norm *n = calloc(1, sizeof *n);
    if (!n)
        return QM_ENOMEM;
    n->kind = k;
    qm_status st = k->load ? k->load(n, j, where, d) : QM_OK;
    if (st != QM_OK) {
        tok_norm_free(n);
        return st == QM_ENOMEM ? qm_diag_fail(d, st, "%s: out of memory", where) : st;
    }
    *out = n;
    return QM_OK;
}

qm_status tok_norm_run(const tok_norm *n, const char *s, size_t len, qm_buf *out, qm_diag *d)
{
    out->n = 0;
    qm_buf_add(out, "", 0);
    qm_status st = n->kind->run(n, s, len, out, d);
    if (st == QM_OK && out->oom)
        st = qm_diag_fail(d, QM_ENOMEM, "normalizer: out of memory");
    return st;
}

static void norm_clear(tok_norm *n)
{
    free(n->str);
    free(n->content);
    pcre2_code_free(n->re);
    for (size_t i = 0; i < n->n_child; i++)
        norm_clear(&n->child[i]);
    free(n->child);
}

void tok_norm_free(tok_norm *n)
{
    if (n) {
        norm_clear(n);
        free(n);
    }
}
