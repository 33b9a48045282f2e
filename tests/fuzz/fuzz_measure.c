/* fuzz_measure.c: fuzz target for the measure file reader (libFuzzer entry point).
 *
 * Any bytes, as the measure file of `qmoe compile --measure`:
 * tests/fuzz/measure.qmoe (a selection by measured and a budget by
 * measured) is compiled for examples/models/tiny-deepseek with them.  Compiling must not crash or leak; a failure leaves no plan and
 * says why; a plan that compiles gives every tensor a width qmoe has.  Paths
 * are relative to $QM_SRCDIR (default: the working directory).  `make check`
 * replays tests/fuzz/corpus/measure through it with tests/fuzz/replay.c;
 * .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "compiler/compiler.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char policy[4096], model[4096];
    if (!policy[0]) {
        const char *src = getenv("QM_SRCDIR") ? getenv("QM_SRCDIR") : ".";
        snprintf(policy, sizeof policy, "%s/tests/fuzz/measure.qmoe", src);
        snprintf(model, sizeof model, "%s/examples/models/tiny-deepseek", src);
    }
    char path[32];
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data, size, path) : -1;
    if (fd < 0) {
        qm_diag_free(d);
        return 0;
    }
    qm_compile_opts o = {.policy = policy, .model = model, .measure = path};
    qm_plan *p = NULL;
    if (qm_compile(&o, &p, d) == QM_OK) {
        if (!p)
            abort(); /* success gives a plan */
        for (size_t i = 0; i < p->n; i++)
            if (p->t[i].bits != 0 && !qm_is_width(p->t[i].bits))
                abort(); /* every width is one qmoe quantizes to */
    } else if (p || qm_diag_errors(d) == 0) {
        abort(); /* a failure leaves no plan and says why */
    }
    qm_plan_free(p);
    close(fd);
    qm_diag_free(d);
    return 0;
}
