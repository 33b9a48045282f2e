/* gguf.c: the GGUF v3 container and ggml's block layouts (see gguf.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"

const qm_ggml_type_info qm_ggml_types[QM_GGML_TYPE_COUNT] = {
    [QM_GGML_F32] = {"F32", 1, 4, 1},
    [QM_GGML_F16] = {"F16", 1, 2, 1},
    [QM_GGML_Q4_0] = {"Q4_0", 32, 2 + 16, 1},
    [QM_GGML_Q4_1] = {"Q4_1", 32, 2 + 2 + 16, 1},
    [QM_GGML_Q5_0] = {"Q5_0", 32, 2 + 4 + 16, 0},
    [QM_GGML_Q5_1] = {"Q5_1", 32, 2 + 2 + 4 + 16, 0},
    [QM_GGML_Q8_0] = {"Q8_0", 32, 2 + 32, 1},
    [QM_GGML_Q8_1] = {"Q8_1", 32, 2 + 2 + 32, 0},
    /* k-quants: 256-value super-blocks (ggml-common.h's block_qN_K sizes) */
    [QM_GGML_Q2_K] = {"Q2_K", 256, 16 + 64 + 2 + 2, 0},
    [QM_GGML_Q3_K] = {"Q3_K", 256, 32 + 64 + 12 + 2, 0},
    [QM_GGML_Q4_K] = {"Q4_K", 256, 2 + 2 + 12 + 128, 0},
    [QM_GGML_Q5_K] = {"Q5_K", 256, 2 + 2 + 12 + 32 + 128, 0},
    [QM_GGML_Q6_K] = {"Q6_K", 256, 128 + 64 + 16 + 2, 0},
    [QM_GGML_Q8_K] = {"Q8_K", 256, 4 + 256 + 32, 0},
    [QM_GGML_BF16] = {"BF16", 1, 2, 1},
};

/* The GGUF metadata value types used here (gguf.h of ggml numbers them). */
enum { GGUF_U32 = 4, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8 };

uint64_t qm_ggml_nbytes(int t, uint64_t n)
{
    if (t < 0 || t >= QM_GGML_TYPE_COUNT || !qm_ggml_types[t].name || n % (uint64_t)qm_ggml_types[t].block)
        return 0;
    return n / (uint64_t)qm_ggml_types[t].block * (uint64_t)qm_ggml_types[t].bytes;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

void qm_ggml_put_row(int t, uint8_t *dst, const uint8_t *codes, const uint16_t *d, const uint16_t *min, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, codes += 32) {
        uint8_t *p = dst + b * (size_t)qm_ggml_types[t].bytes;
        put16(p, d[b]);
        if (t == QM_GGML_Q8_0) {
            for (int j = 0; j < 32; j++)
                p[2 + j] = (uint8_t)(int8_t)(codes[j] - 128);
            continue;
        }
        if (t == QM_GGML_Q4_1)
            put16(p + 2, min[b]);
        uint8_t *qs = p + (t == QM_GGML_Q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++)
            qs[j] = (uint8_t)((codes[j] & 15) | (codes[j + 16] & 15) << 4);
    }
}

void qm_ggml_to_f32(int t, const uint8_t *src, float *dst, size_t n)
{
    if (t == QM_GGML_F32 || t == QM_GGML_F16 || t == QM_GGML_BF16) {
        for (size_t i = 0; i < n; i++) {
            if (t == QM_GGML_F32)
                memcpy(&dst[i], src + 4 * i, 4);
            else
                dst[i] = t == QM_GGML_F16 ? qm_f16_to_f32(get16(src + 2 * i)) : qm_bf16_to_f32(get16(src + 2 * i));
        }
        return;
    }
    for (size_t b = 0; b < n / 32; b++, dst += 32) {
        const uint8_t *p = src + b * (size_t)qm_ggml_types[t].bytes;
        float d = qm_f16_to_f32(get16(p));
        if (t == QM_GGML_Q8_0) {
            for (int j = 0; j < 32; j++)
                dst[j] = (float)(int8_t)p[2 + j] * d;
            continue;
        }
        float m = t == QM_GGML_Q4_1 ? qm_f16_to_f32(get16(p + 2)) : 0;
        const uint8_t *qs = p + (t == QM_GGML_Q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) {
            int lo = qs[j] & 15, hi = qs[j] >> 4;
            if (t == QM_GGML_Q4_1) {
                dst[j] = (float)lo * d + m;
                dst[j + 16] = (float)hi * d + m;
            } else {
                dst[j] = (float)(lo - 8) * d;
                dst[j + 16] = (float)(hi - 8) * d;
            }
        }
    }
}

/* ---- metadata ---------------------------------------------------------------------------------- */

static void add_u32(qm_buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    qm_buf_add(b, (const char *)p, 4);
}

static void add_u64(qm_buf *b, uint64_t v)
{
    add_u32(b, (uint32_t)v);
    add_u32(b, (uint32_t)(v >> 32));
}

static void add_str(qm_buf *b, const char *s)
{
    add_u64(b, strlen(s));
    qm_buf_add(b, s, strlen(s));
}

static void add_key(qm_gguf_meta *m, const char *key, uint32_t type)
{
    add_str(&m->b, key);
    add_u32(&m->b, type);
    m->n++;
}

void qm_gguf_meta_str(qm_gguf_meta *m, const char *key, const char *v)
{
    add_key(m, key, GGUF_STRING);
    add_str(&m->b, v);
}

void qm_gguf_meta_u32(qm_gguf_meta *m, const char *key, uint32_t v)
{
    add_key(m, key, GGUF_U32);
    add_u32(&m->b, v);
}

void qm_gguf_meta_f32(qm_gguf_meta *m, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    add_key(m, key, GGUF_F32);
    add_u32(&m->b, u);
}

void qm_gguf_meta_bool(qm_gguf_meta *m, const char *key, int v)
{
    add_key(m, key, GGUF_BOOL);
    qm_buf_add(&m->b, v ? "\1" : "\0", 1);
}

void qm_gguf_meta_free(qm_gguf_meta *m)
{
    free(m->b.s);
    memset(m, 0, sizeof *m);
}

/* ---- layout and header ------------------------------------------------------------------------ */

static uint64_t align_up(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

uint64_t qm_gguf_layout(qm_gguf_tensor *t, size_t n, uint32_t align, qm_diag *d)
{
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t rows = 1;
        for (int k = 1; k < t[i].ndim; k++)
            rows *= t[i].ne[k];
        uint64_t row = qm_ggml_nbytes(t[i].type, t[i].ne[0]);
        if (!row) {
            qm_diag_fail(d, QM_EUNSUPPORTED, "GGUF tensor '%s': rows of %llu values cannot be stored as %s "
                         "(blocks of %d)", t[i].name, (unsigned long long)t[i].ne[0],
                         qm_ggml_types[t[i].type].name, qm_ggml_types[t[i].type].block);
            return 0;
        }
        t[i].offset = at;
        t[i].nbytes = row * rows;
        at = align_up(at + t[i].nbytes, align);
    }
    return at ? at : 1; /* 1 only for no tensors: never taken for an error */
}

uint64_t qm_gguf_pad(FILE *f, uint64_t at, uint32_t align)
{
    static const char zeros[256];
    uint64_t to = align_up(at, align);
    for (uint64_t left = to - at; left;) {
        size_t k = left < sizeof zeros ? (size_t)left : sizeof zeros;
        fwrite(zeros, 1, k, f);
        left -= k;
    }
    return to;
}

uint64_t qm_gguf_put_header(FILE *f, const qm_gguf_meta *m, const qm_gguf_tensor *t, size_t n, uint32_t align)
{
    qm_buf h = {0};
    qm_buf_add(&h, "GGUF", 4);
    add_u32(&h, QM_GGUF_VERSION);
    add_u64(&h, n);
    add_u64(&h, m->n);
    qm_buf_add(&h, m->b.s ? m->b.s : "", m->b.n);
    for (size_t i = 0; i < n; i++) {
        add_str(&h, t[i].name);
        add_u32(&h, (uint32_t)t[i].ndim);
        for (int k = 0; k < t[i].ndim; k++)
            add_u64(&h, t[i].ne[k]);
        add_u32(&h, (uint32_t)t[i].type);
        add_u64(&h, t[i].offset);
    }
    if (h.oom || m->b.oom) {
        free(h.s);
        return 0;
    }
    fwrite(h.s, 1, h.n, f);
    uint64_t at = qm_gguf_pad(f, h.n, align);
    free(h.s);
    return at;
}
