/* test_tokenizer.c: the tokenizer's components one by one (issue #14):
 * UTF-8 cleaning, GPT-2's byte characters, each normalizer and
 * pre-tokenizer, BPE merges (rank order, leftmost among equals, byte
 * fallback, unk, ignore_merges) and SentencePiece BPE on a model written
 * here.  Built with model/tok_*.c, whose names libqmoe does not export. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/tok_internal.h"
#include "tests/unit/testutil.h"

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fprintf(stderr, "bad test JSON: %s: %s\n", text, e.text);
    return j;
}

/* ---- UTF-8 and byte characters ----------------------------------------------------- */

static void clean_is_n(const char *in, size_t len, const char *want, size_t want_len)
{
    qm_buf b = {0};
    qm_buf_add(&b, "", 0);
    tok_utf8_clean(in, len, &b);
    CU_ASSERT_EQUAL(b.n, want_len);
    CU_ASSERT(b.s && memcmp(b.s, want, want_len) == 0);
    free(b.s);
}

static void clean_is(const char *in, size_t len, const char *want)
{
    clean_is_n(in, len, want, strlen(want));
}

#define FFFD "\xef\xbf\xbd"
static void test_utf8_clean(void)
{
    clean_is("ok \xe2\x82\xac", 6, "ok \xe2\x82\xac");
    clean_is("a\x80" "b", 3, "a" FFFD "b");                 /* lone continuation */
    clean_is("\xe2\x82" "x", 3, FFFD "x");                  /* truncated: one per maximal subpart */
    clean_is("\xf0\x9f\x98", 3, FFFD);                      /* truncated at the end */
    clean_is("\xc0\xaf", 2, FFFD FFFD);                     /* overlong: each byte */
    clean_is("\xed\xa0\x80", 3, FFFD FFFD FFFD);            /* surrogate */
    clean_is("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);   /* above U+10FFFF */
    clean_is_n("\x00z", 2, "\x00z", 2);                     /* NUL is valid */
}

static void test_byte_chars(void)
{
    CU_ASSERT_EQUAL(tok_byte_char(' '), 0x120); /* Ġ */
    CU_ASSERT_EQUAL(tok_byte_char('\n'), 0x10a); /* Ċ */
    CU_ASSERT_EQUAL(tok_byte_char('a'), 'a');
    CU_ASSERT_EQUAL(tok_byte_char(0xad), 0x143);
    int all = 1;
    for (unsigned b = 0; b < 256; b++)
        all &= tok_char_byte(tok_byte_char(b)) == (int)b;
    CU_ASSERT(all);
    CU_ASSERT_EQUAL(tok_char_byte(0x20), -1);
    CU_ASSERT_EQUAL(tok_char_byte(0x144), -1);
}

/* ---- normalizers ----------------------------------------------------------------------- */

static void norm_is(const char *spec, const char *in, const char *want)
{
    json_t *j = js(spec);
    tok_norm *n = NULL;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(tok_norm_load(j, "t", &n, d), QM_OK);
    qm_buf out = {0};
    CU_ASSERT_EQUAL(tok_norm_run(n, in, strlen(in), &out, d), QM_OK);
    CU_ASSERT_STRING_EQUAL(out.s, want);
    if (strcmp(out.s, want) != 0)
        fprintf(stderr, "\n%s on '%s': got '%s', want '%s'\n", spec, in, out.s, want);
    free(out.s);
    tok_norm_free(n);
    qm_diag_free(d);
    json_decref(j);
}

static void test_normalizers(void)
{
    norm_is("{\"type\": \"NFC\"}", "cafe\xcc\x81", "caf\xc3\xa9");
    /* stretches of non-ASCII with the ASCII base before them, ASCII between */
    norm_is("{\"type\": \"NFC\"}", "a\xcc\x81 b\xcc\x81 \xcc\x81x\xe1\x84\x80\xe1\x85\xa1.",
            "\xc3\xa1 b\xcc\x81 \xcc\x81x\xea\xb0\x80."); /* á, b́ stays, a lone mark, Hangul L+V = 가 */
    norm_is("{\"type\": \"NFD\"}", "caf\xc3\xa9", "cafe\xcc\x81");
    norm_is("{\"type\": \"NFKC\"}", "\xef\xac\x81 \xe2\x91\xa0", "fi 1"); /* ﬁ ① */
    norm_is("{\"type\": \"NFKD\"}", "\xc2\xbd", "1\xe2\x81\x84" "2");     /* ½ */
    norm_is("{\"type\": \"Lowercase\"}", "\xc3\x80" "BC \xce\xa3", "\xc3\xa0" "bc \xcf\x83");
    /* Rust's to_lowercase, as Hugging Face and JavaScript: İ -> i + U+0307, a final Σ -> ς */
    norm_is("{\"type\": \"Lowercase\"}", "\xc4\xb0" "stanbul", "i\xcc\x87" "stanbul");
    norm_is("{\"type\": \"Lowercase\"}", "\xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3\xce\x9f\xce\xa3.",
            "\xce\xbf\xce\xb4\xce\xbf\xcf\x82 \xcf\x83\xce\xbf\xcf\x82."); /* ΟΔΟΣ ΣΟΣ. */
    norm_is("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}", "a b  c",
            "a\xe2\x96\x81" "b\xe2\x96\x81\xe2\x96\x81" "c");
    norm_is("{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"content\": \" \"}", "a \t\n b", "a b");
    norm_is("{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}", "x", "\xe2\x96\x81x");
    norm_is("{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}", "", "");
    norm_is("{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Lowercase\"}]}",
            "\xef\xbc\xa1" "B", "ab"); /* fullwidth A */
    norm_is("{\"type\": \"Sequence\", \"normalizers\": []}", "Same", "Same");

    qm_diag *d = qm_diag_new();
    json_t *j = js("{\"type\": \"Strip\"}");
    tok_norm *n;
    CU_ASSERT_EQUAL(tok_norm_load(j, "f.json: normalizer", &n, d), QM_EUNSUPPORTED);
    TU_ASSERT_DIAG(d, "f.json: normalizer: normalizer type 'Strip' is not supported");
    json_decref(j);
    qm_diag_free(d);
}

/* ---- pre-tokenizers ---------------------------------------------------------------------- */

/* The pieces of `in` joined by '|'. */
static void pretok_is(const char *spec, const char *in, const char *want)
{
    json_t *j = js(spec);
    tok_pretok *p = NULL;
    int bl;
    qm_diag *d = qm_diag_new();
    qm_status st = tok_pretok_load(j, "t", &p, &bl, d);
    if (st != QM_OK)
        fprintf(stderr, "\n%s:%s\n", spec, tu_diag_all(d));
    CU_ASSERT_EQUAL_FATAL(st, QM_OK);
    tok_pieces a = {0}, b = {0};
    tok_pieces_add(&a, in, strlen(in), 1);
    CU_ASSERT_EQUAL(tok_pretok_run(p, &a, &b, d), QM_OK);
    qm_buf got = {0};
    qm_buf_add(&got, "", 0);
    for (size_t i = 0; i < b.n; i++) {
        if (i)
            qm_buf_add(&got, "|", 1);
        qm_buf_add(&got, b.text.s + b.span[i].begin, b.span[i].end - b.span[i].begin);
    }
    CU_ASSERT_STRING_EQUAL(got.s, want);
    if (strcmp(got.s, want) != 0)
        fprintf(stderr, "\n%s on '%s': got '%s', want '%s'\n", spec, in, got.s, want);
    free(got.s);
    tok_pieces_free(&a);
    tok_pieces_free(&b);
    tok_pretok_free(p);
    qm_diag_free(d);
    json_decref(j);
}

#define SPLIT(b, inv) "{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"" b "\", \"invert\": " inv "}"

static void test_split(void)
{
    pretok_is(SPLIT("Isolated", "false"), "a-b--c-", "a|-|b|-|-|c|-");
    pretok_is(SPLIT("Removed", "false"), "a-b--c-", "a|b|c");
    pretok_is(SPLIT("MergedWithPrevious", "false"), "a-b--c-", "a-|b-|-|c-");
    pretok_is(SPLIT("MergedWithNext", "false"), "-a-b--c", "-a|-b|-|-c");
    pretok_is(SPLIT("Contiguous", "false"), "a-b--c-", "a|-|b|--|c|-");
    pretok_is(SPLIT("Removed", "true"), "a-b--c-", "-|-|-|-"); /* each match alone, as in HF */
    pretok_is("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", "
              "\"invert\": false}", "x1234567y", "x|123|456|7|y");
    /* Qwen3's pattern: (?i:'s), letters with one leading non-letter, single digits, (?!\S) */
    pretok_is("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}"
              "\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|"
              "\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}",
              "IT'S 42  ok!\n", "IT|'S| |4|2| | ok|!\n");
    qm_diag *d = qm_diag_new();
    json_t *j = js("{\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Sideways\"}");
    tok_pretok *p;
    int bl;
    CU_ASSERT_EQUAL(tok_pretok_load(j, "f.json: pre_tokenizer", &p, &bl, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "f.json: pre_tokenizer: Split behavior 'Sideways' is not one of Removed, Isolated, "
                      "MergedWithPrevious, MergedWithNext, Contiguous");
    json_decref(j);
    j = js("{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}");
    CU_ASSERT_EQUAL(tok_pretok_load(j, "f.json: pre_tokenizer", &p, &bl, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "f.json: pre_tokenizer: regex '(': missing closing parenthesis at offset 1");
    json_decref(j);
    qm_diag_free(d);
}

static void test_other_pretokenizers(void)
{
    pretok_is("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}",
              "Hello world's  42!", "Hello| world|'s| | 42|!");
    pretok_is("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", "Hi there", " Hi| there");
    pretok_is("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}", "Hi there", "Hi there");
    pretok_is("{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"always\"}",
              "Hi there", "\xe2\x96\x81Hi|\xe2\x96\x81there");
    pretok_is("{\"type\": \"Metaspace\", \"replacement\": \"_\", \"prepend_scheme\": \"never\", \"split\": false}",
              "Hi there", "Hi_there");
    pretok_is("{\"type\": \"Digits\", \"individual_digits\": true}", "ab123c", "ab|1|2|3|c");
    pretok_is("{\"type\": \"Digits\", \"individual_digits\": false}", "ab123c", "ab|123|c");
    pretok_is("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true}, "
              "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}]}", "x 12", "x| |1|2");

    qm_diag *d = qm_diag_new();
    json_t *j = js("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Digits\"}]}");
    tok_pretok *p;
    int bl;
    CU_ASSERT_EQUAL(tok_pretok_load(j, "f.json: pre_tokenizer", &p, &bl, d), QM_EUNSUPPORTED);
    TU_ASSERT_DIAG(d, "f.json: pre_tokenizer: ByteLevel followed by Digits is not supported");
    json_decref(j);
    qm_diag_free(d);
}

/* ---- BPE ----------------------------------------------------------------------------------- */

static void bpe_is(const char *vocab, const char *merges, const tok_bpe_opts *o, const char *in, const char *want)
{
    json_t *v = js(vocab), *m = js(merges);
    tok_bpe *b = NULL;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(tok_bpe_load(v, m, o, "t", &b, d), QM_OK);
    for (int pass = 0; pass < 2; pass++) { /* the second comes from the cache */
        qm_tokens t = {0};
        CU_ASSERT_EQUAL(tok_bpe_encode(b, in, strlen(in), &t, d), QM_OK);
        qm_buf got = {0};
        qm_buf_add(&got, "", 0);
        for (size_t i = 0; i < t.n; i++)
            qm_buf_printf(&got, i ? " %d" : "%d", t.ids[i]);
        CU_ASSERT_STRING_EQUAL(got.s, want);
        if (strcmp(got.s, want) != 0)
            fprintf(stderr, "\nBPE on '%s' (pass %d): got '%s', want '%s'\n", in, pass, got.s, want);
        free(got.s);
        qm_tokens_free(&t);
    }
    tok_bpe_free(b);
    qm_diag_free(d);
    json_decref(v);
    json_decref(m);
}

static void test_bpe(void)
{
    const char *v = "{\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"<0x7A>\": 6, \"<unk>\": 7, "
                    "\"aa\": 8}";
    tok_bpe_opts plain = {0};
    /* the lower rank wins wherever it is */
    bpe_is(v, "[\"b c\", \"a b\"]", &plain, "abc", "0 4");
    bpe_is(v, "[\"a b\", \"b c\"]", &plain, "abc", "3 2");
    bpe_is(v, "[\"a b\", \"ab c\"]", &plain, "abc", "5");
    /* among equal ranks the leftmost merges first: aaa -> aa a */
    bpe_is(v, "[[\"a\", \"a\"]]", &plain, "aaa", "8 0");
    /* unknown characters: byte fallback, else unk (fused or not), else dropped */
    tok_bpe_opts fb = {.byte_fallback = 1, .unk = "<unk>"};
    bpe_is(v, "[]", &fb, "aza", "0 6 0");
    bpe_is(v, "[]", &fb, "axya", "0 7 7 0");
    tok_bpe_opts fuse = {.unk = "<unk>", .fuse_unk = 1};
    bpe_is(v, "[]", &fuse, "axyaz", "0 7 0 7");
    bpe_is(v, "[]", &plain, "axa", "0 0");
    /* ignore_merges takes a whole piece in the vocabulary as it is */
    tok_bpe_opts ign = {.ignore_merges = 1};
    bpe_is(v, "[\"b c\", \"a b\"]", &ign, "abc", "5");
    /* byte-level: the vocabulary is in GPT-2's characters, input raw bytes */
    tok_bpe_opts bl = {.byte_level = 1};
    bpe_is("{\"\xc4\xa0\": 0, \"a\": 1, \"\xc4\xa0" "a\": 2, \"\xc4\x8a\": 3}", "[\"\xc4\xa0 a\"]", &bl, " a\n", "2 3");

    qm_diag *d = qm_diag_new();
    json_t *jv = js(v), *jm = js("[\"a q\"]");
    tok_bpe *b;
    CU_ASSERT_EQUAL(tok_bpe_load(jv, jm, &plain, "f.json", &b, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "f.json: model.merges[0] 'a q': token 'q' is not in the vocabulary");
    json_decref(jm);
    jm = js("[\"abc\"]");
    CU_ASSERT_EQUAL(tok_bpe_load(jv, jm, &plain, "f.json", &b, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "f.json: model.merges[0]: expected \"A B\" or [\"A\", \"B\"]");
    json_decref(jm);
    json_decref(jv);
    qm_diag_free(d);
}

/* ---- SentencePiece --------------------------------------------------------------------------- */

static void pb_varint(qm_buf *b, uint64_t v)
{
    do {
        char c = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        qm_buf_add(b, &c, 1);
        v >>= 7;
    } while (v);
}

static void pb_bytes(qm_buf *b, int field, const char *s, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    qm_buf_add(b, s, n);
}

static void pb_piece(qm_buf *model, const char *text, float score, int type)
{
    qm_buf p = {0};
    pb_bytes(&p, 1, text, strlen(text));
    pb_varint(&p, 2 << 3 | 5);
    qm_buf_add(&p, (const char *)&score, 4); /* little-endian hosts only, as the test machines */
    pb_varint(&p, 3 << 3 | 0);
    pb_varint(&p, (uint64_t)type);
    pb_bytes(model, 1, p.s, p.n);
    free(p.s);
}

/* <unk> <s> </s>, 256 byte pieces, then ▁ a b ▁a ab ▁ab with scores, and
 * a▁ when meta_inside (a merge then may cross a word's start). */
static const char *write_spm(int remove_extra_ws, int meta_inside)
{
    qm_buf m = {0};
    pb_piece(&m, "<unk>", 0, 2);
    pb_piece(&m, "<s>", 0, 3);
    pb_piece(&m, "</s>", 0, 3);
    for (int i = 0; i < 256; i++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", i);
        pb_piece(&m, hex, 0, 6);
    }
    static const struct { const char *t; float s; } pieces[] = {
        {"\xe2\x96\x81", -1}, {"a", -2}, {"b", -3}, {"\xe2\x96\x81" "a", -6}, {"ab", -5}, {"\xe2\x96\x81" "ab", -7},
    };
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        pb_piece(&m, pieces[i].t, pieces[i].s, 1);
    if (meta_inside)
        pb_piece(&m, "a\xe2\x96\x81", -4, 1);
    qm_buf t = {0};
    pb_varint(&t, 3 << 3), pb_varint(&t, 2);   /* model_type BPE */
    pb_varint(&t, 35 << 3), pb_varint(&t, 1);  /* byte_fallback */
    pb_bytes(&m, 2, t.s, t.n);
    qm_buf n = {0};
    pb_bytes(&n, 1, "identity", 8);
    pb_varint(&n, 4 << 3), pb_varint(&n, (uint64_t)remove_extra_ws);
    pb_bytes(&m, 3, n.s, n.n);
    const char *path = tu_path(meta_inside ? "mi.model" : remove_extra_ws ? "rx.model" : "spm.model");
    CU_ASSERT_EQUAL(tu_write(path, m.s, m.n), 0);
    free(m.s);
    free(t.s);
    free(n.s);
    return path;
}

static void spm_is(const char *path, const char *in, const char *want)
{
    tok_spm *s;
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(tok_spm_load(path, &s, d), QM_OK);
    qm_tokens t = {0};
    CU_ASSERT_EQUAL(tok_spm_encode(s, in, strlen(in), &t, d), QM_OK);
    qm_buf got = {0};
    qm_buf_add(&got, "", 0);
    for (size_t i = 0; i < t.n; i++)
        qm_buf_printf(&got, i ? " %d" : "%d", t.ids[i]);
    CU_ASSERT_STRING_EQUAL(got.s, want);
    if (strcmp(got.s, want) != 0)
        fprintf(stderr, "\nSentencePiece on '%s': got '%s', want '%s'\n", in, got.s, want);
    CU_ASSERT_EQUAL(tok_spm_bos(s), 1);
    free(got.s);
    qm_tokens_free(&t);
    tok_spm_free(s);
    qm_diag_free(d);
}

static void test_spm(void)
{
    const char *p = write_spm(0, 0); /* ids: ▁ 259, a 260, b 261, ▁a 262, ab 263, ▁ab 264 */
    /* "ab" (score -5) merges before "▁a" (-6): ▁ + ab, then ▁ab */
    spm_is(p, "ab", "264");
    spm_is(p, "ba", "259 261 260");
    /* no piece for z or newline: their bytes */
    spm_is(p, "az\n", "262 125 13");
    spm_is(p, "a  b", "262 259 259 261");
    spm_is(p, "", "");
    spm_is(write_spm(1, 0), "  a  b ", "262 259 261");
    /* with a▁ (265, the best score) words do not encode alone: ▁ a▁ b */
    spm_is(write_spm(0, 1), "a b", "259 265 261");
    spm_is(write_spm(0, 0), "a b", "262 259 261");
    qm_diag *d = qm_diag_new();
    tok_spm *s;
    CU_ASSERT_EQUAL(tu_write(tu_path("bad.model"), "\x0a\xff", 2), 0);
    CU_ASSERT_EQUAL(tok_spm_load(tu_path("bad.model"), &s, d), QM_EFORMAT);
    TU_ASSERT_DIAG(d, "bad.model: not a SentencePiece model (malformed protobuf)");
    qm_diag_free(d);
}

/* ---- added tokens ------------------------------------------------------------------------------ */

/* Matches of a in s as "begin-end:id" joined by ' '. */
static void added_is(const tok_added *a, int normalized, const char *s, const char *want)
{
    qm_buf got = {0};
    qm_buf_add(&got, "", 0);
    size_t at = 0, b, e, len = strlen(s);
    int id;
    while (tok_added_find(a, normalized, s, len, at, &b, &e, &id)) {
        qm_buf_printf(&got, "%s%zu-%zu:%d", got.n ? " " : "", b, e, id);
        at = e;
    }
    CU_ASSERT_STRING_EQUAL(got.s, want);
    if (strcmp(got.s, want) != 0)
        fprintf(stderr, "\nadded tokens in '%s': got '%s', want '%s'\n", s, got.s, want);
    free(got.s);
}

static void test_added(void)
{
    tok_added *a;
    CU_ASSERT_EQUAL_FATAL(tok_added_new(&a), QM_OK);
    static const tok_added_token toks[] = {
        {"<a>", 3, 1, 0, 0, 0, 0},      {"<a><b>", 6, 2, 0, 0, 0, 0}, {"<w>", 3, 3, 1, 0, 0, 0},
        {"<l>", 3, 4, 0, 1, 0, 0},      {"<r>", 3, 5, 0, 0, 1, 0},    {"<n>", 3, 6, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++)
        CU_ASSERT_EQUAL(tok_added_add(a, &toks[i]), QM_OK);
    CU_ASSERT_EQUAL_FATAL(tok_added_index(a), QM_OK);
    added_is(a, 0, "x<a><b>y<a>", "1-7:2 8-11:1");        /* leftmost, then longest */
    added_is(a, 0, "x<w> <w> y<w> (<w>)", "5-8:3 15-18:3"); /* single_word: not against a word */
    added_is(a, 0, "x  <l>  <r>  y", "1-6:4 8-13:5");      /* lstrip, rstrip take the spaces */
    added_is(a, 0, "<n>", "");                              /* normalized ones in normalized text only */
    added_is(a, 1, "a<n>b<a>", "1-4:6");
    CU_ASSERT_EQUAL(tok_added_id(a, "<r>", 3), 5);
    CU_ASSERT_EQUAL(tok_added_id(a, "<q>", 3), -1);
    tok_added_free(a);
}

/* ---- BOS for calibration windows -------------------------------------------------------------- */

static void stream_is(const char *dir, const char *text, size_t max, size_t window, const char *want)
{
    qm_diag *d = qm_diag_new();
    qm_tokens t = {0};
    CU_ASSERT_EQUAL(tu_write(tu_path("bos.txt"), text, strlen(text)), 0);
    CU_ASSERT_EQUAL_FATAL(qm_tokens_from_tokenizer(dir, tu_path("bos.txt"), 3, max, window, &t, d), QM_OK);
    qm_buf got = {0};
    qm_buf_add(&got, "", 0);
    for (size_t i = 0; i < t.n; i++)
        qm_buf_printf(&got, i ? " %d" : "%d", t.ids[i]);
    CU_ASSERT_STRING_EQUAL(got.s, want);
    if (strcmp(got.s, want) != 0)
        fprintf(stderr, "\nwindow %zu max %zu: got '%s', want '%s'\n", window, max, got.s, want);
    free(got.s);
    qm_tokens_free(&t);
    qm_diag_free(d);
}

static void test_bos_windows(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tu_mkdir("bos")); /* tu_path() reuses tu_mkdir()'s buffer */
    static const char json[] =
        "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"special\": true}],"
        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
        " {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [0]}}},"
        " \"model\": {\"type\": \"BPE\", \"vocab\": {\"<s>\": 0, \"a\": 1, \"b\": 2}, \"merges\": []}}";
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CU_ASSERT_EQUAL(tu_write(path, json, sizeof json - 1), 0);
    stream_is(dir, "ababa", 0, 0, "0 1 2 1 2 1");   /* evaluation: BOS starts the stream */
    stream_is(dir, "ababa", 0, 3, "0 1 2 0 1 2 0 1"); /* calibration: BOS starts each window */
    stream_is(dir, "ababa", 4, 3, "0 1 2 0");
    stream_is(dir, "", 0, 3, "");
    qm_diag *d = qm_diag_new();
    qm_tokens t = {0};
    CU_ASSERT_EQUAL(tu_write(tu_path("bos.txt"), "ab", 2), 0);
    CU_ASSERT_EQUAL(qm_tokens_from_tokenizer(dir, tu_path("bos.txt"), 2, 0, 0, &t, d), QM_EINVAL);
    TU_ASSERT_DIAG(d, "bos.txt: the tokenizer in");
    TU_ASSERT_DIAG(d, "gives id 2, outside the model's vocabulary [0, 2)");
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("tokenizer", NULL, NULL);
    CU_add_test(s, "UTF-8 cleaning as WHATWG decoders", test_utf8_clean);
    CU_add_test(s, "GPT-2's byte characters", test_byte_chars);
    CU_add_test(s, "normalizers", test_normalizers);
    CU_add_test(s, "Split behaviors and regexes", test_split);
    CU_add_test(s, "ByteLevel, Metaspace, Digits, Sequence", test_other_pretokenizers);
    CU_add_test(s, "BPE merges, byte fallback, unk", test_bpe);
    CU_add_test(s, "SentencePiece BPE", test_spm);
    CU_add_test(s, "added tokens: leftmost-longest, single_word, lstrip, rstrip", test_added);
    CU_add_test(s, "BOS for evaluation and calibration windows", test_bos_windows);
    return tu_run();
}
