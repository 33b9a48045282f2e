/* fuzz_file.c: hand a fuzz input to a reader that takes a path (fuzz_file.h).
 *
 * The model readers open files by name and refuse anything but a regular
 * file; a memfd is one, costs no disk and vanishes with its descriptor, so a
 * run of millions of inputs leaves nothing behind even when it crashes.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compiler/compiler.h"
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

void qm_fuzz_compile(const uint8_t *data, size_t size, const char *policy, qm_fuzz_as as)
{
    const char *src = getenv("QM_SRCDIR") ? getenv("QM_SRCDIR") : ".";
    char pol[4096], model[4096], path[32];
    snprintf(pol, sizeof pol, "%s/%s", src, policy);
    snprintf(model, sizeof model, "%s/examples/models/tiny-deepseek", src);
    qm_diag *d = qm_diag_new();
    int fd = d ? qm_fuzz_file(data, size, path) : -1;
    if (fd < 0) {
        qm_diag_free(d);
        return;
    }
    qm_compile_opts o = {.policy = pol, .model = model};
    if (as == QM_FUZZ_SCORES)
        o.scores = path;
    else
        o.measure = path;
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
}
