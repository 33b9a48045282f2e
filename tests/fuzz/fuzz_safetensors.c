/* fuzz_safetensors.c: fuzz target for the safetensors reader (libFuzzer
 * entry point).
 *
 * Any bytes, as a whole .safetensors file: opening must not crash or leak;
 * a failure leaves no file and says why; a file that opens keeps the
 * promises of safetensors.h: every tensor's byte range is its element count
 * times its element size and lies inside the mapping, the ranges are sorted
 * and tile the data, and each name finds its own tensor.  Each tensor's
 * bytes are then read (the finiteness check), which ASan would catch if a
 * range were wrong.  `make check` replays tests/fuzz/corpus/safetensors
 * through it with tests/fuzz/replay.c; .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* abort() unless f keeps what qm_st_open() promises of an open file. */
static void check_file(qm_st_file *f, int indexed, qm_diag *d)
{
    const char *base = (const char *)f->map + 8 + f->header_len;
    uint64_t at = 0;
    if (8 + f->header_len + f->data_size != f->map_size)
        abort();
    for (size_t i = 0; i < f->n; i++) {
        const qm_st_tensor *t = &f->t[i];
        uint64_t esz = qm_dtype_size(t->dtype);
        if (t->begin != at || t->end < t->begin || t->end > f->data_size || t->numel * esz != t->end - t->begin
            || (const char *)t->data != base + t->begin)
            abort();
        at = t->end;
        if (indexed && qm_st_find(f, t->name) != t)
            abort();
        if (qm_st_check_live(f, t, d) != QM_OK)
            abort();
        (void)qm_st_check_finite(f->path, t, d);
    }
    if (at != f->data_size)
        abort();
    for (size_t i = 0; i < f->n_meta; i++)
        if (!qm_st_meta(f, f->meta[2 * i]))
            abort();
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
    for (int indexed = 0; indexed < 2; indexed++) {
        qm_st_file *f = NULL;
        qm_status st = indexed ? qm_st_open(path, &f, d) : qm_st_open_unindexed(path, &f, d);
        if (st == QM_OK)
            check_file(f, indexed, d);
        else if (f || qm_diag_errors(d) == 0)
            abort(); /* a failure leaves no file and says why */
        qm_st_close(f);
        qm_diag_clear(d);
    }
    close(fd);
    qm_diag_free(d);
    return 0;
}
