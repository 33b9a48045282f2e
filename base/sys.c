/* sys.c: what every long-running stage shares with the operating system and
 * its driver: a monotonic clock, making a directory, a line of progress. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/base.h"

double qm_clock(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

qm_status qm_mkdir(const char *path, qm_diag *d)
{
    struct stat sb;
    if (mkdir(path, 0755) == 0 || (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return QM_OK;
    return qm_diag_fail(d, QM_EIO, "%s: %s", path, errno == EEXIST ? "exists and is not a directory" : strerror(errno));
}

void qm_progressf(qm_progress_fn *fn, void *ctx, const char *fmt, ...)
{
    if (!fn)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(ctx, line);
}
