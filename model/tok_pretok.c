/* tok_pretok.c: tokenizer.json pre-tokenizers, one table row per "type".
 *
 * A pre-tokenizer cuts normalized text into the pieces the model encodes
 * one by one: Split (a string or a PCRE2 regex, with Hugging Face's five
 * behaviors and `invert`), ByteLevel (GPT-2's regex when use_regex, a
 * prefix space when add_prefix_space), Metaspace, Digits and Sequence.
 * ByteLevel's mapping of bytes to printable characters is not done here:
 * the BPE model's vocabulary is mapped back to bytes once at load
 * (tok_bpe.c), so ByteLevel must end the chain. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/tok_internal.h"

enum behavior { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
static const char *const behavior_names[] = {
    [B_REMOVED] = "Removed", [B_ISOLATED] = "Isolated", [B_MERGED_PREV] = "MergedWithPrevious",
    [B_MERGED_NEXT] = "MergedWithNext", [B_CONTIGUOUS] = "Contiguous",
};

/* GPT-2's pattern, as ByteLevel's use_regex has it. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct pretok_kind pretok_kind;

/* A stretch of a piece and whether the pattern matched it. */
typedef struct seg {
    size_t begin, end;
    int match;
} seg;

struct tok_pretok {
    const pretok_kind *kind;
    pcre2_code *re;             /* Split, ByteLevel with use_regex, Digits (owned) */
    pcre2_match_data *md;       /* for re (owned; one thread at a time) */
    enum behavior behavior;
    int invert;
    int add_prefix_space;       /* ByteLevel */
    char rep[8];                /* Metaspace: the replacement character */
    size_t rep_len;
    int prepend;                /* Metaspace: 0 never, 1 first, 2 always */
    int split;                  /* Metaspace */
    seg *segs;                  /* scratch (cap_segs) */
    size_t cap_segs;
    qm_buf tmp;                 /* scratch */
    tok_pretok *child;          /* Sequence (n_child) */
    size_t n_child;
};

struct pretok_kind {
    const char *type;
    qm_status (*load)(tok_pretok *p, json_t *j, const char *where, qm_diag *d);
    /* Append the pieces of s[0, len) to out; first: s starts the input. */
    qm_status (*run)(tok_pretok *p, const char *s, size_t len, int first, tok_pieces *out, qm_diag *d);
};

static int set_regex(tok_pretok *p, const char *pat, size_t len, int literal, const char *where, qm_diag *d)
{
    p->re = tok_regex(pat, len, literal, where, d);
    if (p->re && !(p->md = pcre2_match_data_create_from_pattern(p->re, NULL)))
        qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    return p->md != NULL;
}

static int add_seg(tok_pretok *p, size_t *n, size_t begin, size_t end, int match)
{
    if (*n == p->cap_segs) {
        size_t cap = p->cap_segs ? 2 * p->cap_segs : 64;
        void *s = realloc(p->segs, cap * sizeof *p->segs);
        if (!s)
            return 0;
        p->segs = s;
        p->cap_segs = cap;
    }
    p->segs[(*n)++] = (seg){begin, end, match};
    return 1;
}

/* Cut s[0, len) at the matches of p->re as Hugging Face's Split does and
 * append the pieces to out. */
static qm_status split_by(tok_pretok *p, enum behavior bh, int invert, const char *s, size_t len, int first,
                          tok_pieces *out, qm_diag *d)
{
    size_t n = 0, prev = 0, at = 0;
    int ok = 1;
    while (ok && at < len) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, p->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return qm_diag_fail(d, QM_EINVAL, "%s pre-tokenizer: regex match failed: %s", p->kind->type, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
        if (ov[1] == ov[0]) { /* an empty match splits nothing: move on one character */
            at = ov[1] + (ov[1] < len ? tok_utf8_len((unsigned char)s[ov[1]]) : 1);
            continue;
        }
        if (ov[0] > prev)
            ok = add_seg(p, &n, prev, ov[0], invert);
        ok = ok && add_seg(p, &n, ov[0], ov[1], !invert);
        prev = at = ov[1];
    }
    if (ok && prev < len)
        ok = add_seg(p, &n, prev, len, invert);
    if (!ok)
        return qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
    /* merge as the behavior says, in place: k segments kept */
    seg *g = p->segs;
    size_t k = 0;
    int prev_match = 0;
    switch (bh) {
    case B_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!g[i].match)
                g[k++] = g[i];
        break;
    case B_ISOLATED:
        k = n;
        break;
    case B_MERGED_PREV:
        for (size_t i = 0; i < n; prev_match = g[i++].match)
            if (g[i].match && !prev_match && k)
                g[k - 1].end = g[i].end;
            else
                g[k++] = g[i];
        break;
    case B_MERGED_NEXT: /* the same from the end */
        k = n;
        for (size_t i = n; i-- > 0; prev_match = g[i].match) {
            if (g[i].match && !prev_match && k < n)
                g[k].begin = g[i].begin;
            else
                g[--k] = g[i];
        }
        memmove(g, g + k, (n - k) * sizeof *g);
        k = n - k;
        break;
    case B_CONTIGUOUS:
        for (size_t i = 0; i < n; prev_match = g[i++].match)
            if (g[i].match == prev_match && k)
                g[k - 1].end = g[i].end;
            else
                g[k++] = g[i];
        break;
    }
    for (size_t i = 0; i < k; i++)
        if (g[i].end > g[i].begin && !tok_pieces_add(out, s + g[i].begin, g[i].end - g[i].begin,
                                                    first && g[i].begin == 0))
            return qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
    return QM_OK;
}

/* ---- Split --------------------------------------------------------------------------- */

static qm_status load_split(tok_pretok *p, json_t *j, const char *where, qm_diag *d)
{
    json_t *pat = json_object_get(j, "pattern");
    json_t *str = json_object_get(pat, "String"), *re = json_object_get(pat, "Regex");
    json_t *src = json_is_string(str) ? str : re;
    const char *bh = json_string_value(json_object_get(j, "behavior"));
    if (!json_is_string(src) || !bh)
        return qm_diag_fail(d, QM_EFORMAT, "%s: Split needs \"pattern\" {\"String\"|\"Regex\": ...} and \"behavior\"",
                            where);
    size_t b = 0;
    while (b < sizeof behavior_names / sizeof behavior_names[0] && strcmp(behavior_names[b], bh) != 0)
        b++;
    if (b == sizeof behavior_names / sizeof behavior_names[0])
        return qm_diag_fail(d, QM_EFORMAT,
                            "%s: Split behavior '%s' is not one of Removed, Isolated, MergedWithPrevious, "
                            "MergedWithNext, Contiguous", where, bh);
    p->behavior = (enum behavior)b;
    p->invert = json_is_true(json_object_get(j, "invert"));
    return set_regex(p, json_string_value(src), json_string_length(src), src == str, where, d) ? QM_OK : QM_EFORMAT;
}

static qm_status run_split(tok_pretok *p, const char *s, size_t len, int first, tok_pieces *out, qm_diag *d)
{
    return split_by(p, p->behavior, p->invert, s, len, first, out, d);
}

/* ---- ByteLevel -------------------------------------------------------------------------- */

static qm_status load_byte_level(tok_pretok *p, json_t *j, const char *where, qm_diag *d)
{
    json_t *use = json_object_get(j, "use_regex");
    p->add_prefix_space = json_is_true(json_object_get(j, "add_prefix_space"));
    /* use_regex is true when absent, as in Hugging Face's default */
    if (use && !json_is_true(use))
        return QM_OK;
    return set_regex(p, gpt2_pattern, sizeof gpt2_pattern - 1, 0, where, d) ? QM_OK : QM_EFORMAT;
}

static qm_status run_byte_level(tok_pretok *p, const char *s, size_t len, int first, tok_pieces *out, qm_diag *d)
{
    if (p->add_prefix_space && (len == 0 || s[0] != ' ')) {
        p->tmp.n = 0;
        qm_buf_add(&p->tmp, " ", 1);
        qm_buf_add(&p->tmp, s, len);
        if (p->tmp.oom)
            return qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
        s = p->tmp.s;
        len = p->tmp.n;
    }
    if (!p->re)
        return len == 0 || tok_pieces_add(out, s, len, first) ? QM_OK
                                                              : qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
    return split_by(p, B_ISOLATED, 0, s, len, first, out, d);
}

/* ---- Metaspace ---------------------------------------------------------------------------- */

static qm_status load_metaspace(tok_pretok *p, json_t *j, const char *where, qm_diag *d)
{
    json_t *rep = json_object_get(j, "replacement");
    const char *r = rep ? json_string_value(rep) : "\xe2\x96\x81";
    if (!r || !*r || strlen(r) > 4 || tok_utf8_len((unsigned char)r[0]) != strlen(r))
        return qm_diag_fail(d, QM_EFORMAT, "%s: Metaspace \"replacement\" must be one character", where);
    p->rep_len = strlen(r);
    memcpy(p->rep, r, p->rep_len);
    const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
    json_t *aps = json_object_get(j, "add_prefix_space");
    if (scheme) {
        static const char *const schemes[] = {"never", "first", "always"};
        p->prepend = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(scheme, schemes[i]) == 0)
                p->prepend = i;
        if (p->prepend < 0)
            return qm_diag_fail(d, QM_EFORMAT, "%s: Metaspace prepend_scheme '%s' is not one of always, first, never",
                                where, scheme);
    } else
        p->prepend = aps && !json_is_true(aps) ? 0 : 2;
    json_t *split = json_object_get(j, "split");
    p->split = !split || json_is_true(split);
    return set_regex(p, p->rep, p->rep_len, 1, where, d) ? QM_OK : QM_EFORMAT;
}

static qm_status run_metaspace(tok_pretok *p, const char *s, size_t len, int first, tok_pieces *out, qm_diag *d)
{
    p->tmp.n = 0;
    qm_buf_add(&p->tmp, "", 0);
    if ((p->prepend == 2 || (p->prepend == 1 && first)) && len && s[0] != ' ' &&
        !(len >= p->rep_len && memcmp(s, p->rep, p->rep_len) == 0))
        qm_buf_add(&p->tmp, p->rep, p->rep_len);
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ')
            qm_buf_add(&p->tmp, p->rep, p->rep_len);
        else
            qm_buf_add(&p->tmp, s + i, 1);
    if (p->tmp.oom)
        return qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
    if (!p->split)
        return tok_pieces_add(out, p->tmp.s, p->tmp.n, first) ? QM_OK
                                                             : qm_diag_fail(d, QM_ENOMEM, "pre-tokenizer: out of memory");
    return split_by(p, B_MERGED_NEXT, 0, p->tmp.s, p->tmp.n, first, out, d);
}

/* ---- Digits ----------------------------------------------------------------------------- */

static qm_status load_digits(tok_pretok *p, json_t *j, const char *where, qm_diag *d)
{
    /* Rust's char::is_numeric is \p{N}; single digits, or runs of them */
    const char *pat = json_is_true(json_object_get(j, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
    return set_regex(p, pat, strlen(pat), 0, where, d) ? QM_OK : QM_EFORMAT;
}

static qm_status run_digits(tok_pretok *p, const char *s, size_t len, int first, tok_pieces *out, qm_diag *d)
{
    return split_by(p, B_ISOLATED, 0, s, len, first, out, d);
}

/* ---- Sequence ------------------------------------------------------------------------------ */

static qm_status load_sequence(tok_pretok *p, json_t *j, const char *where, qm_diag *d);

static const pretok_kind kinds[] = {
    {"Split", load_split, run_split},
    {"ByteLevel", load_byte_level, run_byte_level},
    {"Metaspace", load_metaspace, run_metaspace},
    {"Digits", load_digits, run_digits},
    {"Sequence", load_sequence, NULL},
};
static const pretok_kind *const byte_level_kind = &kinds[1];
static const pretok_kind *const sequence_kind = &kinds[4];

static qm_status load_one(json_t *j, const char *where, tok_pretok *p, qm_diag *d)
{
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return qm_diag_fail(d, QM_EFORMAT, "%s: expected an object with a string \"type\"", where);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].type, type) == 0)
            p->kind = &kinds[i];
    if (!p->kind)
        return qm_diag_fail(d, QM_EUNSUPPORTED,
                            "%s: pre-tokenizer type '%s' is not supported (supported: Split, ByteLevel, Metaspace, "
                            "Digits, Sequence)", where, type);
    return p->kind->load(p, j, where, d);
}

static qm_status load_sequence(tok_pretok *p, json_t *j, const char *where, qm_diag *d)
{
    json_t *list = json_object_get(j, "pretokenizers");
    if (!json_is_array(list))
        return qm_diag_fail(d, QM_EFORMAT, "%s: Sequence needs an array \"pretokenizers\"", where);
    p->child = calloc(json_array_size(list) + 1, sizeof *p->child);
    if (!p->child)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    for (size_t i = 0; i < json_array_size(list); i++) {
        p->n_child = i + 1;
        qm_status st = load_one(json_array_get(list, i), where, &p->child[i], d);
        if (st != QM_OK)
            return st;
        if (p->child[i].kind == sequence_kind)
            return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: a Sequence inside a Sequence is not supported", where);
    }
    return QM_OK;
}

static void clear(tok_pretok *p)
{
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->re);
    free(p->segs);
    free(p->tmp.s);
    for (size_t i = 0; i < p->n_child; i++)
        clear(&p->child[i]);
    free(p->child);
}

void tok_pretok_free(tok_pretok *p)
{
    if (p) {
        clear(p);
        free(p);
    }
}

qm_status tok_pretok_load(json_t *j, const char *where, tok_pretok **out, int *byte_level, qm_diag *d)
{
    tok_pretok *p = calloc(1, sizeof *p);
    if (!p)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", where);
    qm_status st = load_one(j, where, p, d);
    tok_pretok *steps = p->kind == sequence_kind ? p->child : p;
    size_t n = p->kind == sequence_kind ? p->n_child : 1;
    for (size_t i = 0; st == QM_OK && i < n; i++)
        if (steps[i].kind == byte_level_kind && i + 1 < n)
            st = qm_diag_fail(d, QM_EUNSUPPORTED, "%s: ByteLevel followed by %s is not supported (ByteLevel must come "
                              "last)", where, steps[i + 1].kind->type);
    if (st != QM_OK) {
        tok_pretok_free(p);
        return st;
    }
    *byte_level = n > 0 && steps[n - 1].kind == byte_level_kind;
    *out = p;
    return QM_OK;
}

qm_status tok_pretok_run(const tok_pretok *cp, tok_pieces *in, tok_pieces *out, qm_diag *d)
{
    tok_pretok *p = (tok_pretok *)cp; /* scratch only */
    tok_pretok *steps = p->kind == sequence_kind ? p->child : p;
    size_t n = p->kind == sequence_kind ? p->n_child : 1;
    if (n == 0) {
        tok_pieces t = *in;
        *in = *out;
        *out = t;
        return QM_OK;
    }
    for (size_t k = 0; k < n; k++) {
        tok_pieces_reset(out);
        for (size_t i = 0; i < in->n; i++) {
            const struct tok_span *sp = &in->span[i];
            qm_status st = steps[k].kind->run(&steps[k], in->text.s + sp->begin, sp->end - sp->begin, sp->first,
                                              out, d);
            if (st != QM_OK)
                return st;
        }
        if (k + 1 < n) {
            tok_pieces t = *in;
            *in = *out;
            *out = t;
        }
    }
    return QM_OK;
}
