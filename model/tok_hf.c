/* tok_hf.c: building a tokenizer from Hugging Face's tokenizer.json, from
 * GPT-2's encoder.json + vocab.bpe, and reading BOS/EOS from
 * tokenizer_config.json.
 *
 * Only what changes the ids is read: added_tokens, normalizer,
 * pre_tokenizer, model (BPE) and the post-processor's BOS/EOS; decoder,
 * truncation and padding do not change an encoding and are ignored.  A
 * component of another type is an error naming it. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/json.h"
#include "model/tok_internal.h"

/* ---- added tokens ----------------------------------------------------------------- */

static qm_status load_added(qm_tokenizer *t, json_t *list, const char *path, qm_diag *d)
{
    if (!list || json_is_null(list))
        return QM_OK;
    if (!json_is_array(list))
        return qm_diag_fail(d, QM_EFORMAT, "%s: added_tokens: expected an array", path);
    if (tok_added_new(&t->added) != QM_OK)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *a = json_array_get(list, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX ||
            !json_is_string(c) || json_string_length(c) == 0)
            return qm_diag_fail(d, QM_EFORMAT,
                                "%s: added_tokens[%zu]: expected \"id\" in [0, 2^31) and a non-empty \"content\"", path, i);
        tok_added_token tk = {
            .content = json_string_value(c), .len = json_string_length(c), .id = (int)json_integer_value(id),
            .single_word = json_is_true(json_object_get(a, "single_word")),
            .lstrip = json_is_true(json_object_get(a, "lstrip")),
            .rstrip = json_is_true(json_object_get(a, "rstrip")),
            .normalized = json_is_true(json_object_get(a, "normalized")),
        };
        if (tok_added_add(t->added, &tk) != QM_OK)
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
        if (tk.id + 1 > t->vocab)
            t->vocab = tk.id + 1;
    }
    return tok_added_index(t->added) == QM_OK ? QM_OK : qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
}

/* ---- the post-processor: BOS and EOS only ---------------------------------------------- */

/* The id of special token `name` in TemplateProcessing's special_tokens,
 * or -1 (reported) when it is not one id of the vocabulary. */
static int template_id(const qm_tokenizer *t, json_t *pp, const char *name, const char *path, qm_diag *d)
{
    json_t *ids = json_object_get(json_object_get(json_object_get(pp, "special_tokens"), name), "ids");
    if (json_array_size(ids) != 1 || !json_is_integer(json_array_get(ids, 0)))
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: post_processor.special_tokens['%s']: expected one id in \"ids\"",
                            path, name), -1;
    json_int_t id = json_integer_value(json_array_get(ids, 0));
    if (id < 0 || id >= t->vocab)
        return qm_diag_fail(d, QM_EFORMAT, "%s: post_processor.special_tokens['%s']: id %lld is outside the "
                            "vocabulary [0, %lld)", path, name, (long long)id, t->vocab), -1;
    return (int)id;
}

static qm_status load_template(qm_tokenizer *t, json_t *pp, const char *path, qm_diag *d)
{
    json_t *single = json_object_get(pp, "single");
    int seen_seq = 0;
    if (!json_is_array(single))
        return qm_diag_fail(d, QM_EFORMAT, "%s: post_processor TemplateProcessing needs an array \"single\"", path);
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *e = json_array_get(single, i), *sp = json_object_get(e, "SpecialToken");
        if (json_object_get(e, "Sequence")) {
            seen_seq = 1;
            continue;
        }
        const char *name = json_string_value(json_object_get(sp, "id"));
        int *slot = seen_seq ? &t->eos : &t->bos;
        if (!name || *slot >= 0)
            return qm_diag_fail(d, QM_EUNSUPPORTED,
                                "%s: post_processor.single: only one special token before and one after the text "
                                "are supported", path);
        if ((*slot = template_id(t, pp, name, path, d)) < 0)
            return QM_EFORMAT;
    }
    return QM_OK;
}

static qm_status load_post(qm_tokenizer *t, json_t *pp, const char *path, qm_diag *d)
{
    if (!pp || json_is_null(pp))
        return QM_OK;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (type && strcmp(type, "ByteLevel") == 0) /* offsets only */
        return QM_OK;
    if (type && strcmp(type, "TemplateProcessing") == 0)
        return load_template(t, pp, path, d);
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pp, "processors");
        for (size_t i = 0; i < json_array_size(list); i++) {
            qm_status st = load_post(t, json_array_get(list, i), path, d);
            if (st != QM_OK)
                return st;
        }
        return QM_OK;
    }
    return qm_diag_fail(d, QM_EUNSUPPORTED,
                        "%s: post_processor type '%s' is not supported (supported: ByteLevel, TemplateProcessing, "
                        "Sequence)", path, type ? type : "(none)");
}

/* ---- the model ---------------------------------------------------------------------- */

static const char *opt_string(json_t *m, const char *key)
{
    return json_string_value(json_object_get(m, key)); /* NULL for null or absent */
}

static qm_status load_model(qm_tokenizer *t, json_t *m, int byte_level, const char *path, qm_diag *d)
{
    const char *type = opt_string(m, "type");
    if (!json_is_object(m))
        return qm_diag_fail(d, QM_EFORMAT, "%s: expected an object \"model\"", path);
    /* files from before "type" existed hold a BPE when they have merges */
    if (!type && json_object_get(m, "merges"))
        type = "BPE";
    if (!type || strcmp(type, "BPE") != 0)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: model type '%s' is not supported (supported: BPE)", path,
                            type ? type : "(none)");
    json_t *dropout = json_object_get(m, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: model.dropout %g is not supported (encoding would be random)",
                            path, json_number_value(dropout));
    tok_bpe_opts o = {
        .byte_level = byte_level,
        .byte_fallback = json_is_true(json_object_get(m, "byte_fallback")),
        .fuse_unk = json_is_true(json_object_get(m, "fuse_unk")),
        .ignore_merges = json_is_true(json_object_get(m, "ignore_merges")),
        .unk = opt_string(m, "unk_token"),
        .prefix = opt_string(m, "continuing_subword_prefix"),
        .suffix = opt_string(m, "end_of_word_suffix"),
    };
    qm_status st = tok_bpe_load(json_object_get(m, "vocab"), json_object_get(m, "merges"), &o, path, &t->bpe, d);
    if (st == QM_OK && tok_bpe_vocab(t->bpe) > t->vocab)
        t->vocab = tok_bpe_vocab(t->bpe);
    return st;
}

qm_status tok_hf_load(qm_tokenizer *t, const char *path, qm_diag *d)
{
    json_t *root;
    qm_status st = qm_json_load(path, &root, d);
    if (st != QM_OK)
        return st;
    int byte_level = 0;
    char where[64];
    json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(root))
        st = qm_diag_fail(d, QM_EFORMAT, "%s: expected a JSON object", path);
    if (st == QM_OK && norm && !json_is_null(norm)) {
        snprintf(where, sizeof where, "%s: normalizer", path);
        st = tok_norm_load(norm, where, &t->norm, d);
    }
    if (st == QM_OK && pre && !json_is_null(pre)) {
        snprintf(where, sizeof where, "%s: pre_tokenizer", path);
        st = tok_pretok_load(pre, where, &t->pretok, &byte_level, d);
    }
    if (st == QM_OK)
        st = load_model(t, json_object_get(root, "model"), byte_level, path, d);
    if (st == QM_OK)
        st = load_added(t, json_object_get(root, "added_tokens"), path, d);
    if (st == QM_OK)
        st = load_post(t, json_object_get(root, "post_processor"), path, d);
    json_decref(root);
    return st;
}

/* ---- GPT-2's pair ------------------------------------------------------------------------ */

qm_status tok_gpt2_load(qm_tokenizer *t, const char *encoder, const char *merges_path, qm_diag *d)
{
    json_t *vocab, *merges = json_array();
    char *text = NULL;
    size_t len;
    qm_status st = qm_json_load(encoder, &vocab, d);
    if (st != QM_OK) {
        json_decref(merges);
        return st;
    }
    if (!merges)
        st = qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", merges_path);
    if (st == QM_OK)
        st = qm_read_file(merges_path, &text, &len, d);
    /* one merge per line after the "#version" line */
    for (char *line = text, *nl; st == QM_OK && line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (n && line[n - 1] == '\r')
            n--;
        if (n == 0 || (line == text && strncmp(line, "#version", 8) == 0))
            continue;
        if (json_array_append_new(merges, json_stringn(line, n)) != 0)
            st = qm_diag_fail(d, QM_EFORMAT, "%s: line '%.*s' is not valid UTF-8", merges_path, (int)n, line);
    }
    free(text);
    tok_bpe_opts o = {.byte_level = 1};
    /* GPT-2's pre-tokenizer: ByteLevel with its regex, no prefix space */
    json_t *pre = json_pack("{s:s, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1);
    int byte_level;
    if (st == QM_OK)
        st = pre ? tok_pretok_load(pre, merges_path, &t->pretok, &byte_level, d)
                 : qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", merges_path);
    if (st == QM_OK)
        st = tok_bpe_load(vocab, merges, &o, merges_path, &t->bpe, d);
    json_decref(pre);
    json_decref(merges);
    json_decref(vocab);
    if (st != QM_OK)
        return st;
    t->vocab = tok_bpe_vocab(t->bpe);
    /* <|endoftext|> is matched in text as the tokenizer.json of GPT-2 has it */
    long long eot = tok_bpe_id(t->bpe, "<|endoftext|>", 13);
    if (eot >= 0) {
        tok_added_token tk = {.content = "<|endoftext|>", .len = 13, .id = (int)eot, .normalized = 1};
        if (tok_added_new(&t->added) != QM_OK || tok_added_add(t->added, &tk) != QM_OK ||
            tok_added_index(t->added) != QM_OK)
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", encoder);
    }
    return QM_OK;
}

/* ---- tokenizer_config.json -------------------------------------------------------------- */

static long long token_id(const qm_tokenizer *t, const char *s)
{
    long long id = tok_added_id(t->added, s, strlen(s));
    if (id < 0 && t->bpe)
        id = tok_bpe_id(t->bpe, s, strlen(s));
    if (id < 0 && t->spm)
        id = tok_spm_id(t->spm, s, strlen(s));
    return id;
}

/* add_KEY_token: true sets *slot to KEY_token's id, false clears it, absent
 * leaves it. */
static qm_status config_special(qm_tokenizer *t, json_t *cfg, const char *key, int *slot, const char *path,
                                qm_diag *d)
{
    char add[32], tok[32];
    snprintf(add, sizeof add, "add_%s_token", key);
    snprintf(tok, sizeof tok, "%s_token", key);
    json_t *flag = json_object_get(cfg, add);
    if (!flag)
        return QM_OK;
    if (!json_is_boolean(flag))
        return qm_diag_fail(d, QM_EFORMAT, "%s: %s: expected true or false", path, add);
    if (!json_is_true(flag)) {
        *slot = -1;
        return QM_OK;
    }
    json_t *v = json_object_get(cfg, tok);
    const char *s = json_is_object(v) ? json_string_value(json_object_get(v, "content")) : json_string_value(v);
    if (!s)
        return qm_diag_fail(d, QM_EFORMAT, "%s: %s is true but %s is not a token", path, add, tok);
    long long id = token_id(t, s);
    if (id < 0)
        return qm_diag_fail(d, QM_EFORMAT, "%s: %s '%s' is not in the vocabulary", path, tok, s);
    *slot = (int)id;
    return QM_OK;
}

qm_status tok_config_load(qm_tokenizer *t, const char *dir, qm_diag *d)
{
    qm_buf path = {0};
    qm_buf_printf(&path, "%s/tokenizer_config.json", dir);
    if (path.oom)
        return qm_diag_fail(d, QM_ENOMEM, "tokenizer_config.json: out of memory");
    FILE *f = fopen(path.s, "rb");
    if (!f) {
        free(path.s);
        return QM_OK;
    }
    fclose(f);
    json_t *cfg;
    qm_status st = qm_json_load(path.s, &cfg, d);
    if (st == QM_OK) {
        st = config_special(t, cfg, "bos", &t->bos, path.s, d);
        if (st == QM_OK)
            st = config_special(t, cfg, "eos", &t->eos, path.s, d);
        json_decref(cfg);
    }
    free(path.s);
    return st;
}
