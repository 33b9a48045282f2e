/* afile.c: atomic file output (temporary file beside the target, then rename).
 *
 * Every file qmoe writes goes through here, so an error or a kill at any
 * point leaves either the old file or the complete new one, never a torso.
 * A kill does leave the temporary: each writer holds flock() on its own
 * until the rename, so the next writer of the same path can tell a dead
 * writer's temporary (nobody holds it) from a live one and remove it.
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

static pthread_once_t mask_once = PTHREAD_ONCE_INIT;
static mode_t start_mask;

/* umask() can only be read by setting it, which another thread creating a
 * file at that moment would see: done once, for systems without
 * /proc/self/status. */
static void read_start_mask(void)
{
    start_mask = umask(022);
    umask(start_mask);
}

/* The process's umask now.  Linux (4.7 on) tells it without changing it,
 * so that is asked each time (a read beside a file's fsync). */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned m;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &m) == 1) {
            fclose(f);
            return (mode_t)m & 0777;
        }
    if (f)
        fclose(f);
    pthread_once(&mask_once, read_start_mask);
    return start_mask;
}

/* A temporary the template "%s.tmp.XXXXXX" made for a file named base:
 * mkstemp() replaces the X's by letters and digits. */
static int is_temp_of(const char *name, const char *base, size_t blen)
{
    if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0 || strlen(name + blen + 5) != 6)
        return 0;
    for (const char *c = name + blen + 5; *c; c++)
        if (!isalnum((unsigned char)*c))
            return 0;
    return 1;
}

/* Younger temporaries are left alone: a writer holds its lock from a moment
 * after mkstemp() made the file, and that moment must not be mistaken for
 * a dead writer's leftover. */
enum { STALE_SECONDS = 10 };

/* Remove the temporaries of path that no writer holds.  Best effort: what
 * cannot be removed stays as it was. */
static void remove_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *dir = slash ? qm_strfmt("%.*s", (int)(slash - path) + (slash == path), path) : qm_strdup(".");
    DIR *dp = dir ? opendir(dir) : NULL;
    size_t blen = strlen(base);
    time_t now = time(NULL);
    for (struct dirent *e; dp && (e = readdir(dp));) {
        if (!is_temp_of(e->d_name, base, blen))
            continue;
        char *t = qm_strfmt("%s/%s", dir, e->d_name);
        int fd = t ? open(t, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) : -1;
        struct stat a, b;
        if (fd >= 0 && fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && now - a.st_mtime >= STALE_SECONDS &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 && lstat(t, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            unlink(t);
        if (fd >= 0)
            close(fd);
        free(t);
    }
    if (dp)
        closedir(dp);
    free(dir);
}

qm_status qm_afile_open(qm_afile *a, const char *path, qm_diag *d)
{
    memset(a, 0, sizeof *a);
    a->lock = -1;
    a->path = qm_strdup(path);
    a->tmp = qm_strfmt("%s.tmp.XXXXXX", path);
    if (!a->path || !a->tmp) {
        qm_afile_abort(a);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    remove_stale(path);
    mode_t mode = 0666 & ~current_umask();
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        qm_afile_abort(a);
        return qm_diag_fail(d, QM_EIO, "%s: cannot create a temporary file beside it: %s", path,
                            strerror(e));
    }
    /* mkstemp() makes it 0600: a server running as another user could not
     * read the checkpoint */
    if (fchmod(fd, mode) != 0 || flock(fd, LOCK_EX) != 0 || (a->lock = dup(fd)) < 0 ||
        !(a->f = fdopen(fd, "wb"))) {
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

/* The errno of a write that failed earlier: stdio keeps only an error
 * flag, so one more byte is written at the end of the temporary file
 * (discarded anyway), which fails the same way when the disk is full or
 * the file size limit reached.  EIO when it does not fail. */
static int write_errno(qm_afile *a)
{
    int fd = fileno(a->f);
    if (fd < 0 || lseek(fd, 0, SEEK_END) < 0 || write(fd, "", 1) >= 0)
        return EIO;
    return errno;
}

qm_status qm_afile_commit(qm_afile *a, qm_diag *d)
{
    int bad = ferror(a->f);
    int e = bad ? write_errno(a) : 0;
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
    close(a->lock); /* renamed: the temporary is gone, and so is the need to hold it */
    qm_afile_abort(a);
    return QM_OK;
}

void qm_afile_abort(qm_afile *a)
{
    if (a->f)
        fclose(a->f);
    if (a->tmp) {
        unlink(a->tmp);
        if (a->lock >= 0)
            close(a->lock);
    }
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

qm_status qm_afile_read_bytes(const char *path, void *data, size_t n, const char *restart, qm_diag *d)
{
    const char *why;
    FILE *f = qm_fopen_regular(path, &why);
    qm_status st = QM_OK;
    if (!f || fread(data, 1, n, f) != n || fgetc(f) != EOF)
        st = qm_diag_fail(d, QM_EFORMAT, "%s: missing or of the wrong size; remove %s to start over", path, restart);
    if (f)
        fclose(f);
    return st;
}
