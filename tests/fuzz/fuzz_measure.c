/* fuzz_measure.c: fuzz target for the measure file reader (libFuzzer entry point).
 *
 * Any bytes, as the measure file of `qmoe compile --measure`:
 * tests/fuzz/measure.qmoe (a selection by measured and a budget by
 * measured) is compiled for examples/models/tiny-deepseek with them, and
 * the outcome checked by qm_fuzz_compile (fuzz_file.h).  `make check`
 * replays tests/fuzz/corpus/measure through it with tests/fuzz/replay.c;
 * .ci/run fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>

#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qm_fuzz_compile(data, size, "tests/fuzz/measure.qmoe", QM_FUZZ_MEASURE);
    return 0;
}
