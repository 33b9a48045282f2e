/* afile.c: atomic file output (temporary file beside the target, then rename).
 *
 * Every file qmoe writes goes through here, so an error or a kill at any
 * point leaves either the old file or the complete new one, never a torso.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

qm_status qm_afile_open(qm_afile *a, const char *path, qm_diag *d)
{
    memset(a, 0, sizeof *a);
    a->path = qm_strdup(path);
    a->tmp = qm_strfmt("%s.tmp.XXXXXX", path);
    if (!a->path || !a->tmp) {
        qm_afile_abort(a);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        qm_afile_abort(a);
        return qm_diag_fail(d, QM_EIO, "%s: cannot create a temporary file beside it: %s", path,
                            strerror(e));
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        qm_afile_abort(a);
        return qm_diag_fail(d, QM_EIO, "%s: %s", path, strerror(e));
    }
    a->durable = 1;
    /* plans and checkpoints run to megabytes: a 4 KiB buffer makes
     * thousands of write calls of them (stdio owns and frees the buffer) */
    setvbuf(a->f, NULL, _IOFBF, (size_t)1 << 20);
    return QM_OK;
}

qm_status qm_afile_commit(qm_afile *a, qm_diag *d)
{
    int bad = ferror(a->f);
    int e = bad ? EIO : 0;
    if (fflush(a->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad && a->durable && fsync(fileno(a->f)) != 0 && errno != EINVAL) {
        bad = 1;
        e = errno;
    }
    if (fclose(a->f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    a->f = NULL;
    if (!bad && rename(a->tmp, a->path) != 0) {
        bad = 1;
        e = errno;
    }
    if (bad) {
        qm_status st = qm_diag_fail(d, QM_EIO, "%s: write failed: %s", a->path, strerror(e));
        qm_afile_abort(a);
        return st;
    }
    free(a->tmp);
    a->tmp = NULL;
    qm_afile_abort(a);
    return QM_OK;
}

void qm_afile_abort(qm_afile *a)
{
    if (a->f)
        fclose(a->f);
    if (a->tmp)
        unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

qm_status qm_afile_write(const char *path, qm_afile_put_fn *put, const void *ctx, int durable, qm_diag *d)
{
    qm_afile a;
    qm_status st = qm_afile_open(&a, path, d);
    if (st != QM_OK)
        return st;
    a.durable = durable;
    if ((st = put(ctx, a.f, d)) != QM_OK) {
        qm_afile_abort(&a);
        return st;
    }
    return qm_afile_commit(&a, d);
}

typedef struct bytes {
    const void *data;
    size_t n;
} bytes;

/* A short write leaves the stream's error set, which the commit reports
 * with the path. */
static qm_status put_bytes(const void *ctx, FILE *f, qm_diag *d)
{
    const bytes *b = ctx;
    (void)d;
    if (b->n)
        fwrite(b->data, 1, b->n, f);
    return QM_OK;
}

qm_status qm_afile_write_bytes(const char *path, const void *data, size_t n, int durable, qm_diag *d)
{
    return qm_afile_write(path, put_bytes, &(bytes){data, n}, durable, d);
}
