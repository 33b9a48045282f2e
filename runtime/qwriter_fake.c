/* qwriter_fake.c: the "fake-quant" output format (see qwriter.h): every
 * quantized linear dequantized back into its original dtype under its own
 * name, so that the result is a plain checkpoint any loader reads, with the
 * quantized model's values (`qmoe quantize --fake-quant`).  Shards, index
 * and config.json (without quantization_config) as qwriter_shards.c writes
 * them, under OUT/fake-quant/. */
#include "config.h"

#include <stdlib.h>

#include "model/dtype.h"
#include "runtime/qwriter_shards.h"

static qm_status begin(qwriter *w) { return shards_begin(w, "fake-quant"); }

/* Float32 values in `dtype` (BF16, F16 or F32); caller frees. */
static void *to_dtype(const float *x, size_t n, qm_dtype t)
{
    void *out = malloc(n * qm_dtype_size(t));
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (t == QM_DT_BF16)
            ((uint16_t *)out)[i] = qm_f32_to_bf16(x[i]);
        else if (t == QM_DT_F16)
            ((uint16_t *)out)[i] = qm_f32_to_f16(x[i]);
        else
            ((float *)out)[i] = x[i];
    }
    return out;
}

static qm_status layer(qwriter *w, int L, const qwriter_linear *q, size_t n)
{
    const qwriter_job *j = w->job;
    qm_st_entry *e = calloc(n ? n : 1, sizeof *e);
    shards_linear *s = calloc(n ? n : 1, sizeof *s);
    size_t made = 0;
    qm_status st = e && s ? QM_OK : qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    for (; st == QM_OK && made < n; made++) {
        const qm_st_tensor *t = j->m->t[q[made].tensor].st;
        void *v = to_dtype(q[made].r.deq, (size_t)q[made].r.out * q[made].r.in, t->dtype);
        if (!v) {
            st = qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
            break;
        }
        e[made] = (qm_st_entry){t->name, t->dtype, 2, t->shape, v};
        s[made] = (shards_linear){&e[made], 1};
    }
    if (st == QM_OK)
        st = shards_write(w, L, q, s, n);
    for (size_t k = 0; k < made; k++)
        free((void *)e[k].data);
    free(s);
    free(e);
    return st;
}

static qm_status end(qwriter *w) { return shards_end(w, NULL, 0, NULL); }

const qwriter_ops qwriter_fake = {"fake-quant", begin, layer, end, shards_abort, NULL};
