/* sys.c: what every long-running stage shares with the operating system and
 * its driver: a monotonic clock, making a directory, a line of progress,
 * reading and mapping files (regular files only, opened so that a FIFO
 * cannot block), worker threads. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

qm_status qm_remove_tree(const char *path, qm_diag *d)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return QM_OK;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return qm_diag_fail(d, QM_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return QM_OK;
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

/* What kind of thing a non-regular file is, for the message refusing it. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "is a directory, not a regular file" : S_ISFIFO(m) ? "is a FIFO, not a regular file"
         : S_ISCHR(m) ? "is a character device, not a regular file"
         : S_ISBLK(m) ? "is a block device, not a regular file"
         : S_ISSOCK(m) ? "is a socket, not a regular file" : "is not a regular file";
}

int qm_open_regular(const char *path, struct stat *sb, const char **why)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever; it is cleared once the file is known to be regular */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), fl, e;
    if (fd < 0 || fstat(fd, sb) != 0) {
        e = errno;
        *why = strerror(e);
    } else if (!S_ISREG(sb->st_mode)) {
        e = S_ISDIR(sb->st_mode) ? EISDIR : EINVAL;
        *why = file_kind(sb->st_mode);
    } else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        e = errno;
        *why = strerror(e);
    } else {
        *why = NULL;
        return fd;
    }
    if (fd >= 0)
        close(fd);
    errno = e;
    return -1;
}

qm_status qm_open_input(const char *path, int *fd, struct stat *sb, qm_diag *d)
{
    const char *why;
    if ((*fd = qm_open_regular(path, sb, &why)) >= 0)
        return QM_OK;
    return qm_diag_fail(d, errno == ENOENT ? QM_ENOTFOUND : errno == EISDIR || errno == EINVAL ? QM_EFORMAT : QM_EIO,
                        "%s: %s", path, why);
}

FILE *qm_fopen_regular(const char *path, const char **why)
{
    struct stat sb;
    int fd = qm_open_regular(path, &sb, why), e;
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (fd >= 0 && !f) {
        e = errno;
        *why = strerror(e);
        close(fd);
        errno = e;
    }
    return f;
}

qm_status qm_fopen_input(const char *path, FILE **f, qm_diag *d)
{
    struct stat sb;
    int fd;
    qm_status st = qm_open_input(path, &fd, &sb, d);
    if (st == QM_OK && !(*f = fdopen(fd, "rb"))) {
        st = qm_diag_fail(d, QM_EIO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    if (st != QM_OK)
        *f = NULL;
    return st;
}

qm_status qm_map_fd(int fd, const char *path, size_t size, const char **data, qm_diag *d)
{
    *data = "";
    if (size == 0)
        return QM_OK;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return qm_diag_fail(d, QM_EIO, "%s: cannot map: %s", path, strerror(errno));
    *data = p;
    return QM_OK;
}

qm_status qm_map_file(const char *path, const char **data, size_t *len, qm_diag *d)
{
    *data = "";
    *len = 0;
    struct stat sb;
    int fd;
    qm_status st = qm_open_input(path, &fd, &sb, d);
    if (st != QM_OK)
        return st;
    st = qm_map_fd(fd, path, (size_t)sb.st_size, data, d);
    if (st == QM_OK)
        *len = (size_t)sb.st_size;
    close(fd);
    return st;
}

void qm_unmap_file(const char *data, size_t len)
{
    if (len)
        munmap((void *)data, len);
}

qm_status qm_read_file(const char *path, char **data, size_t *len, qm_diag *d)
{
    return qm_read_file_head(path, SIZE_MAX - 1, data, len, d);
}

qm_status qm_read_file_head(const char *path, size_t max, char **data, size_t *len, qm_diag *d)
{
    *data = NULL;
    *len = 0;
    struct stat sb;
    int fd;
    qm_status st = qm_open_input(path, &fd, &sb, d);
    if (st != QM_OK)
        return st;
    /* the size is only where to start: the file may change while read, and
     * reading stops at max bytes or at its end, whichever comes first */
    size_t cap = ((uint64_t)sb.st_size < max ? (size_t)sb.st_size : max) + 1, n = 0;
    char *buf = malloc(cap);
    int err = 0;
    while (buf && n < max) {
        if (n == cap - 1) { /* grown past its size: double, up to max */
            size_t to = cap > max / 2 ? max + 1 : 2 * cap;
            char *b = realloc(buf, to);
            if (!b)
                free(buf);
            buf = b;
            cap = to;
            continue;
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            err = got < 0 ? errno : 0;
            break;
        }
        n += (size_t)got;
    }
    close(fd);
    if (!buf)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    if (err) {
        free(buf);
        return qm_diag_fail(d, QM_EIO, "%s: cannot read: %s", path, strerror(err));
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return QM_OK;
}

int qm_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > QM_MAX_WORKERS ? QM_MAX_WORKERS : (int)n;
}

typedef struct pool {
    qm_task_fn *fn;
    void *ctx;
    int tasks;
    atomic_int next; /* the next task not yet taken */
} pool;

typedef struct worker {
    pool *p;
    int id;
} worker;

/* Take tasks until none is left. */
static void *work(void *arg)
{
    worker *w = arg;
    for (int t; (t = atomic_fetch_add(&w->p->next, 1)) < w->p->tasks;)
        w->p->fn(w->p->ctx, t, w->id);
    return NULL;
}

void qm_parallel(int workers, int tasks, qm_task_fn *fn, void *ctx)
{
    pool p = {fn, ctx, tasks, 0};
    worker ws[QM_MAX_WORKERS];
    pthread_t th[QM_MAX_WORKERS];
    int started = 0;
    if (workers > tasks)
        workers = tasks;
    if (workers > QM_MAX_WORKERS)
        workers = QM_MAX_WORKERS;
    for (int i = 1; i < workers; i++) {
        ws[started + 1] = (worker){&p, started + 1};
        if (pthread_create(&th[started], NULL, work, &ws[started + 1]) == 0)
            started++;
    }
    ws[0] = (worker){&p, 0};
    work(&ws[0]);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
}

typedef struct ranges {
    size_t n, per;
    qm_range_fn *fn;
    void *ctx;
} ranges;

static void one_range(void *ctx, int task, int w)
{
    const ranges *r = ctx;
    size_t begin = (size_t)task * r->per;
    r->fn(r->ctx, begin, r->n - begin < r->per ? r->n : begin + r->per, w);
}

void qm_parallel_ranges(int workers, size_t n, size_t per, qm_range_fn *fn, void *ctx)
{
    ranges r = {n, per, fn, ctx};
    qm_parallel(workers, (int)((n + per - 1) / per), one_range, &r);
}
