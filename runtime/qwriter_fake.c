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

/* Each linear in its dtype as soon as it is finished, into the spool. */
static qm_status linear(qwriter *w, int L, const qwriter_linear *q)
{
    const qwriter_job *j = w->job;
    const qm_st_tensor *t = j->m->t[q->tensor].st;
    (void)L;
    void *v = to_dtype(q->r.deq, (size_t)q->r.out * q->r.in, t->dtype);
    if (!v)
        return qm_diag_fail(j->d, QM_ENOMEM, "out of memory");
    qm_st_entry e = {t->name, t->dtype, 2, t->shape, v};
    qm_status st = shards_spool(w, q, &e, 1);
    free(v);
    return st;
}

static qm_status layer(qwriter *w, int L, const qwriter_linear *q, size_t n)
{
    (void)q;
    (void)n;
    return shards_write_spooled(w, L);
}

static qm_status end(qwriter *w) { return shards_end(w, NULL, 0, NULL); }

const qwriter_ops qwriter_fake = {"fake-quant", begin, linear, layer, end, shards_abort, NULL};
