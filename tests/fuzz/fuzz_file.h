/* fuzz_file.h: hand a fuzz input to a reader that takes a path. */
#ifndef QM_FUZZ_FILE_H
#define QM_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Write data to an anonymous in-memory regular file (memfd, so that
 * qm_open_input accepts it and nothing is left on disk) and put its
 * "/proc/self/fd/N" name in path.  Returns the descriptor, which the caller
 * closes when done, or -1 (the input is then skipped). */
int qm_fuzz_file(const uint8_t *data, size_t size, char path[32]);

#endif
