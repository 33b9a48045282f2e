/* fuzz_file.h: hand a fuzz input to a reader that takes a path, and the
 * compile harness shared by the targets of the compiler's side files. */
#ifndef QM_FUZZ_FILE_H
#define QM_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Write data to an anonymous in-memory regular file (memfd, so that
 * qm_open_input accepts it and nothing is left on disk) and put its
 * "/proc/self/fd/N" name in path.  Returns the descriptor, which the caller
 * closes when done, or -1 (the input is then skipped). */
int qm_fuzz_file(const uint8_t *data, size_t size, char path[32]);

/* The file of `qmoe compile` a fuzz input stands for. */
typedef enum { QM_FUZZ_SCORES, QM_FUZZ_MEASURE } qm_fuzz_as;

/* Compile `policy` (a path under $QM_SRCDIR, default the working
 * directory) for examples/models/tiny-deepseek with data as its scores or
 * measure file, and abort() unless the outcome is sound: success gives a
 * plan whose every width is one qmoe quantizes to; a failure leaves no plan
 * and says why. */
void qm_fuzz_compile(const uint8_t *data, size_t size, const char *policy, qm_fuzz_as as);

#endif
