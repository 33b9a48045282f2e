/* fuzz_gguf.c: fuzz target for the GGUF reader (libFuzzer entry point).
 *
 * Any bytes, as a whole .gguf file: opening must not crash or leak; a
 * failure leaves no file and says why; a file that opens keeps the promises
 * of gguf.h: each tensor's bytes lie inside the data section at an aligned
 * offset, none overlap, each type is in the table, and the bytes of every
 * type qmoe dequantizes are read through qm_ggml_to_f32() (which ASan would
 * catch if a range were wrong).  `make check` replays
 * tests/fuzz/corpus/gguf through it with tests/fuzz/replay.c; .ci/run
 * fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "model/gguf.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() unless f keeps what qm_gguf_open() promises of an open file. */
static void check_file(const qm_gguf_file *f)
{
    if (f->data_offset > f->size || f->data_offset % f->alignment || !f->alignment ||
        (f->alignment & (f->alignment - 1)))
        abort();
    for (size_t i = 0; i < f->n; i++) {
        const qm_gguf_tensor *t = &f->t[i];
        if (t->type < 0 || t->type >= QM_GGML_TYPE_COUNT || !qm_ggml_types[t->type].name || t->offset % f->alignment ||
            t->offset + t->nbytes > f->size - f->data_offset || t->ndim < 1 || t->ndim > 4)
            abort();
        if (!qm_ggml_types[t->type].deq)
            continue;
        uint64_t rows = t->nbytes / qm_ggml_nbytes(t->type, t->ne[0]);
        float *row = malloc((size_t)t->ne[0] * sizeof *row);
        const uint8_t *p = qm_gguf_tensor_data(f, i);
        for (uint64_t r = 0; row && r < rows && r < 4; r++, p += qm_ggml_nbytes(t->type, t->ne[0]))
            qm_ggml_to_f32(t->type, p, row, (size_t)t->ne[0]);
        free(row);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[32];
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data, size, path) : -1;
    if (fd < 0) {
        qm_diag_free(d);
        return 0;
    }
    qm_gguf_file *f = NULL;
    qm_status st = qm_gguf_open(path, &f, d);
    if (st == QM_OK)
        check_file(f);
    else if (f || qm_diag_errors(d) == 0)
        abort(); /* a failure leaves no file and says why */
    qm_gguf_close(f);
    close(fd);
    qm_diag_free(d);
    return 0;
}
