/* test_safetensors.c: the safetensors reader, writer and sharded checkpoints.
 *
 * Valid files are written by qm_st_write and read back; malformed files are
 * built byte by byte, each paired with the exact phrase its diagnostic must
 * contain (and the file path, and the tensor where one is at fault).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "tests/unit/testutil.h"

static void test_write_read_roundtrip(void)
{
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t b[4] = {qm_f32_to_bf16(1.0f), qm_f32_to_bf16(-0.5f), qm_f32_to_bf16(3.0f), 0};
    int32_t c[3] = {7, -8, 9};
    uint64_t sa[2] = {2, 3}, sb[1] = {4}, sc[1] = {3};
    qm_st_entry e[] = {
        {"layer.a", QM_DT_F32, 2, sa, a},
        {"layer.b", QM_DT_BF16, 1, sb, b},
        {"c", QM_DT_I32, 1, sc, c},
    };
    const char *meta[] = {"format", "pt", "note", "x", NULL};
    qm_diag *d = qm_diag_new();
    const char *path = tu_path("rt.safetensors");
    CU_ASSERT_EQUAL_FATAL(qm_st_write(path, e, 3, meta, d), QM_OK);
    qm_st_file *f;
    CU_ASSERT_EQUAL_FATAL(qm_st_open(path, &f, d), QM_OK);
    CU_ASSERT_EQUAL(f->n, 3);
    CU_ASSERT_EQUAL(f->header_len % 8, 0);
    /* checkpoint order is data order, which is the order written */
    CU_ASSERT_STRING_EQUAL(f->t[0].name, "layer.a");
    CU_ASSERT_STRING_EQUAL(f->t[2].name, "c");
    const qm_st_tensor *t = qm_st_find(f, "layer.a");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL(t->dtype, QM_DT_F32);
    CU_ASSERT_EQUAL(t->ndim, 2);
    CU_ASSERT_EQUAL(t->shape[1], 3);
    CU_ASSERT_EQUAL(memcmp(t->data, a, sizeof a), 0);
    t = qm_st_find(f, "layer.b");
    float back[4];
    CU_ASSERT_EQUAL(qm_to_f32(t->dtype, t->data, back, 4), 0);
    CU_ASSERT_EQUAL(back[0], 1.0f);
    CU_ASSERT_EQUAL(back[1], -0.5f);
    CU_ASSERT_EQUAL(back[2], 3.0f);
    t = qm_st_find(f, "c");
    CU_ASSERT_EQUAL(memcmp(t->data, c, sizeof c), 0);
    CU_ASSERT_PTR_NULL(qm_st_find(f, "nope"));
    CU_ASSERT_STRING_EQUAL(qm_st_meta(f, "format"), "pt");
    CU_ASSERT_STRING_EQUAL(qm_st_meta(f, "note"), "x");
    CU_ASSERT_PTR_NULL(qm_st_meta(f, "missing"));
    qm_st_close(f);
    qm_diag_free(d);
}

static void test_write_is_atomic(void)
{
    float a[2] = {1, 2};
    uint64_t s[1] = {2};
    qm_st_entry e[] = {{"a", QM_DT_F32, 1, s, a}};
    qm_diag *d = qm_diag_new();
    /* into a directory that does not exist: an error, and nothing written */
    const char *bad = tu_path("no/such/dir/x.safetensors");
    CU_ASSERT_NOT_EQUAL(qm_st_write(bad, e, 1, NULL, d), QM_OK);
    TU_ASSERT_DIAG(d, "no/such/dir/x.safetensors");
    CU_ASSERT_NOT_EQUAL(access(bad, F_OK), 0);
    /* a good write leaves exactly the file, no temporary beside it */
    const char *dir = tu_mkdir("atomic");
    char path[1024];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    CU_ASSERT_EQUAL(qm_st_write(path, e, 1, NULL, d), QM_OK);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", dir);
    CU_ASSERT_EQUAL(system(cmd), 0);
    qm_diag_free(d);
}

static void test_dtype_conversions(void)
{
    const float v[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        float h = qm_f16_to_f32(qm_f32_to_f16(v[i]));
        CU_ASSERT(h == v[i] || (h - v[i]) / v[i] < 1e-3f);
        float b = qm_bf16_to_f32(qm_f32_to_bf16(v[i]));
        CU_ASSERT(b == v[i] || (b - v[i]) / v[i] < 1e-2f);
    }
    CU_ASSERT_EQUAL(qm_f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(qm_f32_to_f16(65520.0f), 0x7c00); /* rounds to infinity */
    CU_ASSERT_EQUAL(qm_f32_to_f16(5.9604645e-08f), 0x0001); /* smallest subnormal */
    CU_ASSERT_EQUAL(qm_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(qm_f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
    CU_ASSERT_EQUAL(qm_f32_to_bf16(1.01171875f), 0x3f82); /* tie to even, upward */
    qm_dtype t;
    CU_ASSERT(qm_dtype_parse("BF16", &t) && t == QM_DT_BF16);
    CU_ASSERT(!qm_dtype_parse("bf16", &t));
    CU_ASSERT_EQUAL(qm_dtype_size(QM_DT_F64), 8);
}

/* ---- malformed files ------------------------------------------------------------ */

typedef struct bad_case {
    const char *file;       /* name in the tmpdir */
    const char *header;     /* JSON text, or NULL for raw bytes below */
    uint64_t data_size;
    const char *raw;        /* raw file content when header is NULL */
    size_t raw_len;
    const char *expect;     /* phrase the diagnostic must contain */
} bad_case;

static const bad_case bad_cases[] = {
    {"short.st", NULL, 0, "\x10\x00\x00", 3, "file is 3 bytes, too short for the 8-byte header length"},
    {"empty.st", NULL, 0, "", 0, "file is 0 bytes, too short"},
    {"huge-len.st", NULL, 0, "\x00\x00\x00\x00\x01\x00\x00\x00{}", 10, "exceeds the 100000000-byte limit"},
    {"len-past-end.st", NULL, 0, "\x40\x00\x00\x00\x00\x00\x00\x00{}", 10,
     "header length 64 exceeds the 2 bytes after the length"},
    {"not-brace.st", "[{\"a\":1}]", 0, NULL, 0, "header does not start with '{'"},
    {"bad-json.st", "{\"a\": {\"dtype\": \"F32\", ", 0, NULL, 0, "header is not valid JSON"},
    {"nul-pad.st", NULL, 0, "\x08\x00\x00\x00\x00\x00\x00\x00{}\0\0\0\0\0\0", 16, "header is not valid JSON"},
    {"unknown-dtype.st", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, NULL, 0,
     "tensor 'w': unknown dtype 'F17'"},
    {"neg-shape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, NULL, 0,
     "tensor 'w': shape[0] is not a non-negative integer"},
    {"size-mismatch.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, NULL, 0,
     "tensor 'w': data_offsets [0, 8] hold 8 bytes, but 3 F32 elements need 12"},
    {"past-data.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, NULL, 0,
     "tensor 'w': data_offsets [0, 8] exceed data size 4"},
    {"overlap.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, NULL, 0,
     "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
    {"duplicate.st",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL, 0,
     "header: duplicate tensor name 'w'"},
    {"hole.st",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, NULL, 0,
     "tensor 'b': data_offsets [8, 12] leave a hole of 4 bytes before it"},
    {"trailing.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 10, NULL, 0,
     "6 bytes of data after the last tensor"},
    {"dup.st",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8, NULL, 0,
     "duplicate tensor name 'a'"},
    {"reversed.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, NULL, 0,
     "tensor 'w': data_offsets [4, 0] end before they begin"},
    {"overflow.st",
     "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, NULL, 0,
     "tensor 'w': shape size overflows 64 bits"},
    {"no-dtype.st", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0, "tensor 'w': missing 'dtype'"},
    {"meta-int.st", "{\"__metadata__\":{\"k\":3}}", 0, NULL, 0, "__metadata__ value of 'k' is not a string"},
    {"entry-array.st", "{\"w\":[1,2]}", 0, NULL, 0, "tensor 'w': entry is not an object"},
    {"many-dims.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
     NULL, 0, "tensor 'w': 9 dimensions, at most 8 supported"},
    {"offs-arity.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, NULL, 0,
     "tensor 'w': data_offsets is not two non-negative integers"},
    {"dtype-num.st", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "tensor 'w': dtype is not a string"},
    {"float-shape.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "tensor 'w': shape[0] is not a non-negative integer"},
    /* the JSON itself, as strictly as jansson with JSON_REJECT_DUPLICATES read it */
    {"dup-field.st", "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL,
     0, "header is not valid JSON: duplicate key 'dtype' at byte 27 of the header"},
    {"dup-other.st", "{\"w\":{\"x\":{\"k\":1,\"k\":2},\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     NULL, 0, "header is not valid JSON: duplicate key 'k' at byte 21 of the header"},
    {"bad-utf8.st", "{\"w\xc0\xaf\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "header is not valid JSON: invalid UTF-8 in a string at byte 3 of the header"},
    {"nul-escape.st", "{\"w\\u0000\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "header is not valid JSON: \\u0000 is not allowed in a string at byte 3"},
    {"surrogate.st", "{\"\\ud800x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "header is not valid JSON: \\uD800 is half a surrogate pair at byte 2"},
    {"control.st", "{\"a\tb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "header is not valid JSON: control character 0x09 in a string at byte 3"},
    {"trailing-comma.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},}", 1, NULL, 0,
     "header is not valid JSON: expected a string, found '}'"},
    {"leading-zero.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, NULL, 0,
     "header is not valid JSON: expected ',' or ']', found '1'"},
    {"after-value.st", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}x", 1, NULL, 0,
     "header is not valid JSON: 'x' after the end of the value"},
};

static void test_malformed(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        const bad_case *c = &bad_cases[i];
        const char *path = tu_path(c->file);
        int w = c->header ? tu_write_st(path, c->header, c->data_size) : tu_write(path, c->raw, c->raw_len);
        CU_ASSERT_EQUAL_FATAL(w, 0);
        qm_diag *d = qm_diag_new();
        qm_st_file *f = NULL;
        qm_status st = qm_st_open(path, &f, d);
        if (st == QM_OK)
            fprintf(stderr, "\n%s: opened, expected '%s'\n", c->file, c->expect);
        CU_ASSERT_NOT_EQUAL(st, QM_OK);
        CU_ASSERT_PTR_NULL(f);
        TU_ASSERT_DIAG(d, c->expect);
        TU_ASSERT_DIAG(d, path); /* every message names the file */
        CU_ASSERT_EQUAL(qm_diag_errors(d), 1);
        qm_diag_free(d);
    }
}

static void test_edge_cases_that_are_valid(void)
{
    qm_diag *d = qm_diag_new();
    qm_st_file *f;
    /* header padded with spaces, an empty tensor and a scalar */
    const char *h = "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}      ";
    CU_ASSERT_EQUAL_FATAL(tu_write_st(tu_path("pad.st"), h, 4), 0);
    CU_ASSERT_EQUAL(qm_st_open(tu_path("pad.st"), &f, d), QM_OK);
    if (f) {
        CU_ASSERT_EQUAL(f->n, 2);
        CU_ASSERT_EQUAL(qm_st_find(f, "s")->numel, 1);
        CU_ASSERT_EQUAL(qm_st_find(f, "e")->numel, 0);
        qm_st_close(f);
    }
    /* escapes are decoded: the name is "a\u00e9/b" */
    CU_ASSERT_EQUAL_FATAL(tu_write_st(tu_path("esc.st"), "{\"a\\u00e9\\/b\":{\"dtype\":\"U8\",\"shape\":[1],"
                                                         "\"data_offsets\":[0,1],\"extra\":[{\"k\":null}]}}", 1), 0);
    CU_ASSERT_EQUAL(qm_st_open(tu_path("esc.st"), &f, d), QM_OK);
    if (f) {
        CU_ASSERT_PTR_NOT_NULL(qm_st_find(f, "a\xc3\xa9/b"));
        qm_st_close(f);
    }
    /* nesting: 2048 levels are read, 2049 are an error, and nothing recurses without bound */
    for (int depth = 2047; depth <= 2048; depth++) {
        static char deep[8192];
        int o = snprintf(deep, sizeof deep, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":");
        for (int i = 0; i < depth - 1; i++)
            deep[o++] = '[';
        for (int i = 0; i < depth - 1; i++)
            deep[o++] = ']';
        snprintf(deep + o, sizeof deep - (size_t)o, "}}");
        CU_ASSERT_EQUAL_FATAL(tu_write_st(tu_path("deep.st"), deep, 1), 0);
        qm_status st = qm_st_open(tu_path("deep.st"), &f, d);
        if (depth == 2047) {
            CU_ASSERT_EQUAL(st, QM_OK); /* with the root and the entry: 2048 */
            qm_st_close(f);
        } else {
            CU_ASSERT_NOT_EQUAL(st, QM_OK);
            TU_ASSERT_DIAG(d, "header is not valid JSON: nested deeper than 2048");
        }
    }
    qm_diag_clear(d);
    /* no tensors at all */
    CU_ASSERT_EQUAL_FATAL(tu_write_st(tu_path("none.st"), "{}", 0), 0);
    CU_ASSERT_EQUAL(qm_st_open(tu_path("none.st"), &f, d), QM_OK);
    qm_st_close(f);
    /* a directory is not a file */
    CU_ASSERT_NOT_EQUAL(qm_st_open(tu_tmpdir(), &f, d), QM_OK);
    TU_ASSERT_DIAG(d, "not a regular file");
    qm_diag_free(d);
}

/* Headers in the safetensors library's compact layout take a fast path;
 * each is paired with the same header as the general reader takes it
 * (blanks, another key order, an escape), and both must give the same
 * tensors or the same message, also at the fast path's edges. */
static void test_compact_layout_agrees(void)
{
    static const struct {
        const char *compact, *general;
        uint64_t data;
    } pairs[] = {
        {"{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}",
         "{\"w\": {\"shape\": [2, 3], \"dtype\": \"B\\u004616\", \"data_offsets\": [0, 12]}}", 12},
        {"{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"z\":{\"dtype\":\"U8\",\"shape\":[0],"
         "\"data_offsets\":[4,4]}}",
         "{\"s\":{\"dtype\":\"F32\",\"shape\":[ ],\"data_offsets\":[0,4]},\"z\":{\"data_offsets\":[4,4],"
         "\"dtype\":\"U8\",\"shape\":[0]}}", 4},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000000000000000],\"data_offsets\":[0,4000000000000000000]}}",
         "{\"w\":{\"dtype\":\"F32\", \"shape\":[1000000000000000000],\"data_offsets\":[0,4000000000000000000]}}", 4},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],\"data_offsets\":[0,1]}}",
         "{\"w\":{\"dtype\":\"U8\", \"shape\":[18446744073709551615],\"data_offsets\":[0,1]}}", 1},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,1]}}",
         "{\"w\":{\"dtype\":\"U8\", \"shape\":[18446744073709551616],\"data_offsets\":[0,1]}}", 1},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
         "{\"w\":{\"dtype\":\"U8\", \"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1},
        {"{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}",
         "{\"w\":{\"dtype\":\"Q4\", \"shape\":[1],\"data_offsets\":[0,1]}}", 1},
    };
    const char *path = tu_path("compact.st");
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        qm_diag *d[2] = {qm_diag_new(), qm_diag_new()};
        qm_st_file *f[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++) {
            CU_ASSERT_EQUAL_FATAL(tu_write_st(path, k ? pairs[i].general : pairs[i].compact, pairs[i].data), 0);
            qm_st_open(path, &f[k], d[k]);
        }
        CU_ASSERT_EQUAL(!f[0], !f[1]);
        if (f[0] && f[1]) {
            CU_ASSERT_EQUAL_FATAL(f[0]->n, f[1]->n);
            for (size_t t = 0; t < f[0]->n; t++) {
                const qm_st_tensor *a = &f[0]->t[t], *b = &f[1]->t[t];
                CU_ASSERT_STRING_EQUAL(a->name, b->name);
                CU_ASSERT(a->dtype == b->dtype && a->ndim == b->ndim && a->numel == b->numel &&
                          a->begin == b->begin && a->end == b->end);
                CU_ASSERT_EQUAL(memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape), 0);
            }
        } else if (qm_diag_count(d[0]) && qm_diag_count(d[1])) {
            CU_ASSERT_STRING_EQUAL(qm_diag_text(d[0], 0), qm_diag_text(d[1], 0));
        } else {
            CU_FAIL("a failed open without a message");
        }
        for (int k = 0; k < 2; k++) {
            qm_st_close(f[k]);
            qm_diag_free(d[k]);
        }
    }
}

/* Random byte flips in a valid file's header: every variant must open or
 * fail with a diagnostic, never crash or read out of bounds (run under ASan). */
static void test_mutations_never_crash(void)
{
    float a[8] = {0};
    uint64_t s2[2] = {2, 2}, s4[1] = {4};
    qm_st_entry e[] = {{"w.a", QM_DT_F32, 2, s2, a}, {"w.b", QM_DT_BF16, 1, s4, a}};
    const char *meta[] = {"format", "pt", NULL};
    qm_diag *d = qm_diag_new();
    const char *path = tu_path("mut.st");
    CU_ASSERT_EQUAL_FATAL(qm_st_write(path, e, 2, meta, d), QM_OK);
    FILE *f = fopen(path, "rb");
    unsigned char buf[512];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unsigned seed = 12345;
    size_t opened = 0, failed = 0;
    for (int round = 0; round < 3000; round++) {
        unsigned char m[512];
        memcpy(m, buf, n);
        int flips = 1 + round % 3;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            m[pos] = (round & 1) ? (unsigned char)(seed >> 16) : (unsigned char)"{}[]\",:0123456789 e-"[(seed >> 16) % 20];
        }
        const char *mp = tu_path("mut-x.st");
        CU_ASSERT_EQUAL_FATAL(tu_write(mp, m, n), 0);
        qm_st_file *sf;
        if (qm_st_open(mp, &sf, d) == QM_OK) {
            opened++;
            for (size_t i = 0; i < sf->n; i++) /* touch every byte the reader vouched for */
                for (uint64_t b = 0; b < sf->t[i].end - sf->t[i].begin; b++)
                    seed += ((const unsigned char *)sf->t[i].data)[b];
            qm_st_close(sf);
        } else {
            failed++;
            CU_ASSERT(qm_diag_errors(d) > 0);
        }
        qm_diag_clear(d);
    }
    CU_ASSERT(failed > 1000); /* the mutations did reach the validator */
    CU_ASSERT_EQUAL(opened + failed, 3000);
    qm_diag_free(d);
}

/* ---- sharded checkpoints ----------------------------------------------------------- */

static void write_two_shards(const char *dir, const char *index)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL(tu_write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), 0);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL(tu_write_st(p, "{\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    CU_ASSERT_EQUAL(tu_write(p, index, strlen(index)), 0);
}

static void test_sharded(void)
{
    qm_diag *d = qm_diag_new();
    qm_ckpt *c;
    const char *dir = tu_mkdir("sharded");
    write_two_shards(dir, "{\"metadata\":{},\"weight_map\":{\"c\":\"model-00002-of-00002.safetensors\","
                          "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00001-of-00002.safetensors\"}}");
    CU_ASSERT_EQUAL_FATAL(qm_ckpt_open(dir, &c, d), QM_OK);
    CU_ASSERT_EQUAL(c->n_files, 2);
    CU_ASSERT_EQUAL(c->n, 3);
    CU_ASSERT_STRING_EQUAL(c->t[0].t->name, "a"); /* shard order, then offset */
    CU_ASSERT_STRING_EQUAL(c->t[2].t->name, "c");
    CU_ASSERT_EQUAL(c->t[qm_ckpt_find(c, "c")].file, 1);
    CU_ASSERT_EQUAL(qm_ckpt_find(c, "zz"), -1);
    /* shards are opened without their own index: a scan finds a name */
    CU_ASSERT_PTR_NOT_NULL(qm_st_find(c->files[0], "b"));
    CU_ASSERT_PTR_NULL(qm_st_find(c->files[0], "c"));
    qm_ckpt_close(c);

    /* the checkpoint's one name index catches a name twice in a shard and in two */
    char p[1024];
    dir = tu_mkdir("sharded-dup-in-one");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\"}}");
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL(tu_write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                   "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8), 0);
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "model-00001-of-00002.safetensors: header: duplicate tensor name 'a'");
    qm_diag_clear(d);
    dir = tu_mkdir("sharded-dup-in-two");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                          "\"b\":\"model-00002-of-00002.safetensors\"}}");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    CU_ASSERT_EQUAL(tu_write_st(p, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4), 0);
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "model-00002-of-00002.safetensors: tensor 'b' is also in");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-missing");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                          "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00003-of-00003.safetensors\"}}");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "model-00003-of-00003.safetensors: No such file or directory");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-wrong-shard");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00002-of-00002.safetensors\","
                          "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\"}}");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "tensor 'a' is listed in shard 'model-00002-of-00002.safetensors' but is not in it");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-unlisted");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                          "\"c\":\"model-00002-of-00002.safetensors\"}}");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "tensor 'b' is not listed in");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-escape");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"../model-00001-of-00002.safetensors\"}}");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "weight_map entry 'a' is not a file name in the model directory");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-twice");
    write_two_shards(dir, "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                          "\"b\":\"model-00001-of-00002.safetensors\",\"c\":\"model-00002-of-00002.safetensors\","
                          "\"a\":\"model-00001-of-00002.safetensors\"}}");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "model.safetensors.index.json: weight_map lists tensor 'a' twice");
    qm_diag_clear(d);

    dir = tu_mkdir("sharded-badjson");
    write_two_shards(dir, "{\"weight_map\":{\"a\":");
    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(dir, &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "model.safetensors.index.json:1:20: invalid JSON: expected a value, found the end of the input");
    qm_diag_clear(d);

    CU_ASSERT_NOT_EQUAL(qm_ckpt_open(tu_mkdir("empty-model"), &c, d), QM_OK);
    TU_ASSERT_DIAG(d, "no model.safetensors and no model.safetensors.index.json");
    qm_diag_free(d);
}

/* A file truncated after it was opened (mapped): reading a tensor past
 * the new end would raise SIGBUS; qm_st_check_live() says so instead,
 * naming the file, the tensor and both sizes.  A file renamed over the
 * path is another file, and the mapping still holds the one opened. */
static void test_truncated_while_open(void)
{
    float a[64] = {0};
    uint64_t s1[1] = {64};
    qm_st_entry e[] = {{"w.a", QM_DT_F32, 1, s1, a}, {"w.b", QM_DT_F32, 1, s1, a}};
    const char *path = tu_path("live.safetensors");
    qm_diag *d = qm_diag_new();
    CU_ASSERT_EQUAL_FATAL(qm_st_write(path, e, 2, NULL, d), QM_OK);
    qm_st_file *f;
    CU_ASSERT_EQUAL_FATAL(qm_st_open(path, &f, d), QM_OK);
    const qm_st_tensor *ta = qm_st_find(f, "w.a"), *tb = qm_st_find(f, "w.b");
    CU_ASSERT_EQUAL(qm_st_check_live(f, tb, d), QM_OK);
    CU_ASSERT_EQUAL_FATAL(truncate(path, (off_t)(8 + f->header_len + 256 + 16)), 0);
    CU_ASSERT_EQUAL(qm_st_check_live(f, ta, d), QM_OK); /* still whole */
    CU_ASSERT_EQUAL(qm_st_check_live(f, tb, d), QM_EIO);
    TU_ASSERT_DIAG(d, "live.safetensors: tensor 'w.b' needs the file's first");
    TU_ASSERT_DIAG(d, "the file was truncated while qmoe had it open");
    qm_diag_free(d);
    d = qm_diag_new();
    CU_ASSERT_EQUAL(qm_st_write(path, e, 1, NULL, d), QM_OK); /* renamed over: the mapping is the old file */
    CU_ASSERT_EQUAL(qm_st_check_live(f, ta, d), QM_OK);
    qm_st_close(f);
    qm_diag_free(d);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("safetensors", NULL, NULL);
    CU_add_test(s, "write then read back", test_write_read_roundtrip);
    CU_add_test(s, "writes are atomic", test_write_is_atomic);
    CU_add_test(s, "dtype conversions", test_dtype_conversions);
    CU_add_test(s, "malformed files give specific errors", test_malformed);
    CU_add_test(s, "valid edge cases", test_edge_cases_that_are_valid);
    CU_add_test(s, "the compact layout reads as the general reader does", test_compact_layout_agrees);
    CU_add_test(s, "mutated headers never crash", test_mutations_never_crash);
    CU_add_test(s, "sharded checkpoints", test_sharded);
    CU_add_test(s, "a file truncated while open is an error, not SIGBUS", test_truncated_while_open);
    return tu_run();
}
