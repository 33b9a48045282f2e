/* fuzz_config.c: fuzz target for the config.json reader (libFuzzer entry
 * point).
 *
 * Any bytes, as config.json: reading must not crash or leak; a failure says
 * why; a config that reads names an architecture, has positive sizes, and
 * every dimension derived from them is defined (UBSan catches an
 * overflowing product) and not negative.  `make check` replays tests/fuzz/corpus/config through it
 * with tests/fuzz/replay.c; .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "model/model.h"
#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[32];
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data, size, path) : -1;
    if (fd < 0) {
        qm_diag_free(d);
        return 0;
    }
    const qm_arch *arch = NULL;
    qm_config c;
    if (qm_config_read(path, &arch, &c, d) == QM_OK) {
        if (!arch || c.layers <= 0 || c.hidden <= 0)
            abort(); /* a config that reads is one a model can be built on */
        for (int dim = 0; dim < QM_DIM_COUNT; dim++)
            if (qm_dim_size(&c, (qm_dim)dim) < 0)
                abort();
    } else if (qm_diag_errors(d) == 0) {
        abort(); /* a failure says why */
    }
    qm_config_free(&c);
    close(fd);
    qm_diag_free(d);
    return 0;
}
