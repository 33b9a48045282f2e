/* gguf_cmp.c: tests/gguf.sh's check that qmoe dequantizes every ggml type
 * exactly as ggml does.
 *
 *   gguf_cmp QUANT.gguf F32.gguf
 *
 * F32.gguf is QUANT.gguf turned back into floats by llama.cpp's own
 * dequantization (llama_model_quantize to F32).  Every tensor of QUANT is
 * dequantized by qm_ggml_to_f32() and must equal F32's tensor of the same
 * name bit for bit.  Prints one line per ggml type (tensors, values), and
 * each mismatch; exit 1 on any.
 *
 * Run alone (as make check does) it checks qm_ggml_put_krow() against
 * qm_ggml_to_f32(): random codes and scales written as Q2_K, Q3_K and Q4_K
 * blocks read back as the two-level formula of gptq.h gives them.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/dtype.h"
#include "model/gguf.h"

static unsigned rng = 12345;
static unsigned next(unsigned n)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 8) % n;
}

/* One super-block of each k-quant, twice per type, against the formula. */
static int self_test(void)
{
    static const struct {
        int type, sub, bits, lo, hi; /* scales in [lo, hi] */
    } k[] = {{QM_GGML_Q2_K, 16, 2, 0, 15}, {QM_GGML_Q3_K, 16, 3, -32, 31}, {QM_GGML_Q4_K, 32, 4, 0, 63}};
    int bad = 0;
    for (size_t t = 0; t < sizeof k / sizeof k[0]; t++)
        for (int rep = 0; rep < 2; rep++) {
            uint8_t codes[512], blocks[2 * 256];
            int8_t l[32];
            uint8_t m[32];
            uint16_t d[2], dmin[2];
            float y[512];
            int ns = 512 / k[t].sub, sym = k[t].type == QM_GGML_Q3_K;
            for (int e = 0; e < 512; e++)
                codes[e] = (uint8_t)next(1u << k[t].bits);
            for (int j = 0; j < ns; j++) {
                l[j] = (int8_t)(k[t].lo + (int)next((unsigned)(k[t].hi - k[t].lo + 1)));
                m[j] = (uint8_t)next((unsigned)k[t].hi + 1);
            }
            for (int b = 0; b < 2; b++) {
                d[b] = (uint16_t)(0x2000 + next(0x1000)); /* positive normal halves */
                dmin[b] = (uint16_t)(0x2000 + next(0x1000));
            }
            qm_ggml_kscales ks = {d, sym ? NULL : dmin, l, sym ? NULL : m};
            qm_ggml_put_krow(k[t].type, blocks, codes, &ks, 512);
            qm_ggml_to_f32(k[t].type, blocks, y, 512);
            for (int e = 0; e < 512; e++) {
                int j = e / k[t].sub, b = e / 256;
                float s = qm_f16_to_f32(d[b]) * (float)l[j];
                float want = sym ? s * (float)(codes[e] - 4) : s * (float)codes[e] - qm_f16_to_f32(dmin[b]) * (float)m[j];
                if (memcmp(&want, &y[e], 4)) {
                    printf("%s: value %d reads %.9g, not %.9g\n", qm_ggml_types[k[t].type].name, e, y[e], want);
                    bad++;
                    break;
                }
            }
        }
    printf("gguf_cmp: k-quant rows %s\n", bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 1)
        return self_test();
    if (argc != 3) {
        fprintf(stderr, "usage: gguf_cmp QUANT.gguf F32.gguf\n");
        return 2;
    }
    qm_diag *d = qm_diag_new();
    qm_gguf_file *q = NULL, *f = NULL;
    if (qm_gguf_open(argv[1], &q, d) != QM_OK || qm_gguf_open(argv[2], &f, d) != QM_OK) {
        qm_diag_print(d, stderr, "gguf_cmp");
        return 2;
    }
    size_t tensors[QM_GGML_TYPE_COUNT] = {0}, values[QM_GGML_TYPE_COUNT] = {0}, bad = 0;
    for (size_t i = 0; i < q->n; i++) {
        const qm_gguf_tensor *t = &q->t[i];
        size_t k = 0;
        while (k < f->n && strcmp(f->t[k].name, t->name))
            k++;
        uint64_t n = 1;
        for (int a = 0; a < t->ndim; a++)
            n *= t->ne[a];
        if (k == f->n || f->t[k].type != QM_GGML_F32 || f->t[k].nbytes != 4 * n || !qm_ggml_types[t->type].deq) {
            printf("%s: %s, not comparable\n", t->name, qm_ggml_types[t->type].name);
            bad++;
            continue;
        }
        float *x = malloc((size_t)n * sizeof *x);
        if (!x)
            return 2;
        qm_ggml_to_f32(t->type, qm_gguf_tensor_data(q, i), x, (size_t)n);
        if (memcmp(x, qm_gguf_tensor_data(f, k), (size_t)n * 4)) {
            const float *y = (const float *)qm_gguf_tensor_data(f, k);
            uint64_t j = 0;
            while (memcmp(&x[j], &y[j], 4) == 0)
                j++;
            printf("%s: %s value %llu is %.9g, ggml's %.9g\n", t->name, qm_ggml_types[t->type].name,
                   (unsigned long long)j, x[j], y[j]);
            bad++;
        }
        tensors[t->type]++;
        values[t->type] += n;
        free(x);
    }
    for (int t = 0; t < QM_GGML_TYPE_COUNT; t++)
        if (tensors[t])
            printf("%-5s %3zu tensors %9zu values\n", qm_ggml_types[t].name, tensors[t], values[t]);
    qm_gguf_close(q);
    qm_gguf_close(f);
    qm_diag_free(d);
    return bad ? 1 : 0;
}
