/* states.c: hidden states in memory or in a spill file (see states.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/states.h"

struct qm_states {
    size_t n, width;
    size_t *off;    /* (n + 1) first row of each group, then the total */
    float *mem;     /* (total, width) in memory, or NULL when spilled */
    int fd;         /* the spill file, -1 in memory */
    char *path;     /* its name, for messages; owned */
    float *buf;     /* (largest group, width) when spilled */
    size_t in_buf;  /* the group buf holds, n when none */
};

void qm_states_free(qm_states *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s->off);
    free(s->mem);
    free(s->path);
    free(s->buf);
    free(s);
}

/* An unlinked temporary file in dir; -1 after a diagnostic. */
static int spill_file(qm_states *s, const char *dir, qm_diag *d)
{
    if (!dir || !*dir)
        dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (!(s->path = qm_strfmt("%s/.qmoe-states-XXXXXX", dir))) {
        qm_diag_fail(d, QM_ENOMEM, "out of memory");
        return -1;
    }
    int fd = mkstemp(s->path);
    if (fd < 0) {
        qm_diag_fail(d, QM_EIO, "%s: cannot make a file for the hidden states: %s", dir, strerror(errno));
        return -1;
    }
    unlink(s->path); /* gone with the process, whatever ends it */
    return fd;
}

qm_status qm_states_new(const size_t *rows, size_t n, size_t width, size_t budget, const char *dir,
                        qm_states **out, qm_diag *d)
{
    *out = NULL;
    qm_states *s = calloc(1, sizeof *s);
    if (!s || !(s->off = malloc((n + 1) * sizeof *s->off))) {
        free(s);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    s->n = n;
    s->width = width;
    s->fd = -1;
    s->in_buf = n;
    size_t most = 0;
    s->off[0] = 0;
    for (size_t i = 0; i < n; i++) {
        s->off[i + 1] = s->off[i] + rows[i];
        most = rows[i] > most ? rows[i] : most;
    }
    size_t total = s->off[n];
    if (width && total > SIZE_MAX / sizeof(float) / width) {
        qm_states_free(s);
        return qm_diag_fail(d, QM_ENOMEM, "%zu x %zu hidden states do not fit in memory", total, width);
    }
    size_t bytes = total * width * sizeof(float);
    if (bytes <= budget) {
        if (!(s->mem = malloc(bytes ? bytes : 1))) {
            qm_states_free(s);
            return qm_diag_fail(d, QM_ENOMEM, "out of memory for %zu bytes of hidden states", bytes);
        }
    } else {
        if ((s->fd = spill_file(s, dir, d)) < 0) {
            qm_states_free(s);
            return QM_EIO;
        }
        if (!(s->buf = malloc(most * width * sizeof(float) + 1))) {
            qm_states_free(s);
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        }
    }
    *out = s;
    return QM_OK;
}

/* Transfer n bytes at file offset at, all of them, or fail. */
static qm_status io(qm_states *s, int write, char *p, size_t n, off_t at, qm_diag *d)
{
    while (n) {
        ssize_t k = write ? pwrite(s->fd, p, n, at) : pread(s->fd, p, n, at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return qm_diag_fail(d, QM_EIO, "%s: %s the spilled hidden states failed: %s", s->path,
                                write ? "writing" : "reading", k < 0 ? strerror(errno) : "unexpected end of file");
        p += k;
        n -= (size_t)k;
        at += k;
    }
    return QM_OK;
}

float *qm_states_get(qm_states *s, size_t i, qm_diag *d)
{
    if (s->mem)
        return s->mem + s->off[i] * s->width;
    if (s->in_buf != i) {
        size_t row = s->width * sizeof(float);
        s->in_buf = s->n;
        /* a group never written yet (the first layer's embedding) reads as
         * a short file: only what is there is read */
        off_t end = lseek(s->fd, 0, SEEK_END), at = (off_t)(s->off[i] * row);
        size_t want = (s->off[i + 1] - s->off[i]) * row;
        size_t have = end <= at ? 0 : (size_t)(end - at) < want ? (size_t)(end - at) : want;
        if (io(s, 0, (char *)s->buf, have, at, d) != QM_OK)
            return NULL;
        memset((char *)s->buf + have, 0, want - have);
        s->in_buf = i;
    }
    return s->buf;
}

qm_status qm_states_put(qm_states *s, size_t i, qm_diag *d)
{
    if (s->mem)
        return QM_OK;
    size_t row = s->width * sizeof(float);
    return io(s, 1, (char *)s->buf, (s->off[i + 1] - s->off[i]) * row, (off_t)(s->off[i] * row), d);
}

size_t qm_states_bytes(const qm_states *s) { return s->off[s->n] * s->width * sizeof(float); }

int qm_states_spilled(const qm_states *s) { return s->fd >= 0; }
