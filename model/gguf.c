/* gguf.c: the GGUF v3 container (see gguf.h); the block types are in ggml_blocks.c. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"

/* The GGUF metadata value types used here (gguf.h of ggml numbers them). */
enum { GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9 };

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

void qm_gguf_meta_strs(qm_gguf_meta *m, const char *key, const char *const *v, size_t n)
{
    add_key(m, key, GGUF_ARRAY);
    add_u32(&m->b, GGUF_STRING);
    add_u64(&m->b, n);
    for (size_t i = 0; i < n; i++)
        add_str(&m->b, v[i]);
}

void qm_gguf_meta_i32s(qm_gguf_meta *m, const char *key, const int32_t *v, size_t n)
{
    add_key(m, key, GGUF_ARRAY);
    add_u32(&m->b, GGUF_I32);
    add_u64(&m->b, n);
    for (size_t i = 0; i < n; i++)
        add_u32(&m->b, (uint32_t)v[i]);
}

void qm_gguf_meta_f32s(qm_gguf_meta *m, const char *key, const float *v, size_t n)
{
    add_key(m, key, GGUF_ARRAY);
    add_u32(&m->b, GGUF_F32);
    add_u64(&m->b, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        add_u32(&m->b, u);
    }
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
