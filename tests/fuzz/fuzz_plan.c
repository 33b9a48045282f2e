/* fuzz_plan.c: fuzz target for the plan reader (libFuzzer entry point).
 *
 * Any bytes, as a plan file: reading must not crash or leak; a failure
 * leaves no plan and says why; a plan that reads must write, and what it
 * writes must read back to the same bytes (the plan file is a contract
 * between `qmoe compile` and `qmoe quantize`, so what one side accepts the
 * other must be able to say).  `make check` replays tests/fuzz/corpus/plan
 * through it with tests/fuzz/replay.c; .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/plan.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* p as YAML in a malloc'd buffer (*len bytes), or NULL. */
static char *emit(const qm_plan *p, size_t *len, qm_diag *d)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    qm_status st = qm_plan_emit(p, f, d);
    if (fclose(f) != 0 || st != QM_OK) {
        free(text);
        return NULL;
    }
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[32], path2[32];
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data, size, path) : -1, fd2 = -1;
    if (fd < 0) {
        qm_diag_free(d);
        return 0;
    }
    qm_plan *p = NULL, *q = NULL;
    char *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    if (qm_plan_read(path, &p, d) != QM_OK) {
        if (p || qm_diag_errors(d) == 0)
            abort(); /* a failure leaves no plan and says why */
    } else if ((a = emit(p, &alen, d)) && (fd2 = qm_fuzz_file((const uint8_t *)a, alen, path2)) >= 0) {
        if (qm_plan_read(path2, &q, d) != QM_OK)
            abort(); /* a plan read must write a plan that reads */
        if (!(b = emit(q, &blen, d)) || blen != alen || memcmp(a, b, alen) != 0)
            abort(); /* and writes the same bytes again */
    }
    free(a);
    free(b);
    qm_plan_free(p);
    qm_plan_free(q);
    if (fd2 >= 0)
        close(fd2);
    close(fd);
    qm_diag_free(d);
    return 0;
}
