/* fuzz_file.c: hand a fuzz input to a reader that takes a path (fuzz_file.h).
 *
 * The model readers open files by name and refuse anything but a regular
 * file; a memfd is one, costs no disk and vanishes with its descriptor, so a
 * run of millions of inputs leaves nothing behind even when it crashes.
 */
#include "config.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/fuzz/fuzz_file.h"

int qm_fuzz_file(const uint8_t *data, size_t size, char path[32])
{
    int fd = memfd_create("qm-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(path, 32, "/proc/self/fd/%d", fd);
    return fd;
}
