/* fuzz_scores.c: fuzz target for the scores reader (libFuzzer entry point).
 *
 * Any bytes, as the scores file of `qmoe compile --scores`:
 * tests/fuzz/scores.qmoe (one selection by each scorer) is compiled for
 * examples/models/tiny-deepseek with them, and the outcome checked by
 * qm_fuzz_compile (fuzz_file.h).  `make check` replays
 * tests/fuzz/corpus/scores through it with tests/fuzz/replay.c; .ci/run
 * fuzzes it (see README.md).
 */
#include "config.h"

#include <stdint.h>

#include "tests/fuzz/fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qm_fuzz_compile(data, size, "tests/fuzz/scores.qmoe", QM_FUZZ_SCORES);
    return 0;
}
