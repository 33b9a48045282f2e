/* paths.c: where a command may write.  Before any work starts each command
 * checks its output against every input it reads (qm_path_check_output), and
 * the commands that fill an output directory lock it for the whole run
 * (qm_dir_lock), so that no command destroys a user's data: not its own
 * inputs, not another run's output.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

/* A file as the kernel knows it: two spellings of one file, through
 * symbolic links or hard links, have one identity. */
typedef struct ident {
    dev_t dev;
    ino_t ino;
} ident;

/* Deep enough for any real tree; a deeper one is checked up to here. */
enum { MAX_UP = 256 };

typedef struct chain {
    ident id[MAX_UP];
    size_t n;
    int exists; /* id[0] is the path itself; otherwise id[0] is its nearest existing ancestor */
    int is_dir; /* the path exists and is a directory */
} chain;

static int same(ident a, ident b) { return a.dev == b.dev && a.ino == b.ino; }

/* The lexical parent of p in place: "a/b" -> "a", "a" -> ".", "/a" -> "/". */
static void lexical_parent(char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        n--;
    while (n > 0 && p[n - 1] != '/')
        n--;
    while (n > 1 && p[n - 1] == '/')
        n--;
    if (n == 0)
        strcpy(p, ".");
    else
        p[n] = '\0';
}

/* path and the directories above it, symbolic links resolved: path itself
 * when it exists, then each directory a file would be created in when
 * writing there, up to the root.  A path that does not exist (yet) starts at
 * its nearest existing lexical ancestor.  QM_ENOMEM only. */
static qm_status ancestry(const char *path, chain *c)
{
    memset(c, 0, sizeof *c);
    char *p = qm_strfmt("%s", *path ? path : ".");
    if (!p)
        return QM_ENOMEM;
    struct stat sb;
    int first = 1;
    while (stat(p, &sb) != 0 || (!first && !S_ISDIR(sb.st_mode))) {
        /* a file's directory is its lexical parent: that is where a
         * temporary beside it is made and the rename happens */
        if (strcmp(p, ".") == 0 || strcmp(p, "/") == 0) {
            free(p);
            return QM_OK; /* nothing above exists: nothing to compare */
        }
        lexical_parent(p);
        first = 0;
    }
    if (first) {
        c->exists = 1;
        c->is_dir = S_ISDIR(sb.st_mode);
        c->id[c->n++] = (ident){sb.st_dev, sb.st_ino};
        if (!c->is_dir) {
            lexical_parent(p);
            if (stat(p, &sb) != 0) {
                free(p);
                return QM_OK;
            }
        }
    }
    /* "DIR/.." is the physical parent: the kernel resolves DIR's links first */
    for (int went_up = 0;; went_up = 1) {
        ident id = {sb.st_dev, sb.st_ino};
        if (c->n == 0 || !same(c->id[c->n - 1], id))
            c->id[c->n++] = id;
        else if (went_up)
            break; /* "/.." is "/" */
        char *up = qm_strfmt("%s/..", p);
        free(p);
        if (!(p = up))
            return QM_ENOMEM;
        if (c->n == MAX_UP || stat(p, &sb) != 0)
            break;
    }
    free(p);
    return QM_OK;
}

static int in_chain(const chain *c, size_t from, ident id)
{
    for (size_t i = from; i < c->n; i++)
        if (same(c->id[i], id))
            return 1;
    return 0;
}

/* The first input out would touch, reported; pass 0 looks for out being an
 * input, pass 1 for out inside an input directory or holding an input. */
static qm_status check_pass(int pass, const char *opt, const char *out, int out_is_dir, const chain *oc,
                            const qm_path_input *in, size_t n, qm_diag *d)
{
    for (size_t i = 0; i < n; i++) {
        struct stat sb;
        if (!in[i].path || stat(in[i].path, &sb) != 0)
            continue; /* the command reports a missing input itself */
        ident id = {sb.st_dev, sb.st_ino};
        const char *dir = S_ISDIR(sb.st_mode) ? " directory" : "";
        if (pass == 0 && oc->exists && same(oc->id[0], id))
            return qm_diag_fail(d, QM_EINVAL, "%s '%s' is the input%s '%s' (%s); choose another output", opt, out, dir,
                                in[i].path, in[i].what);
        if (pass == 1 && *dir && in_chain(oc, (size_t)oc->exists, id))
            return qm_diag_fail(d, QM_EINVAL, "%s '%s' is inside the input directory '%s' (%s); choose another "
                                "output", opt, out, in[i].path, in[i].what);
        if (pass == 1 && out_is_dir && oc->exists && oc->is_dir) {
            /* a directory output gets files of the command's choosing: no
             * input may lie in it, under whatever name */
            chain ic;
            if (ancestry(in[i].path, &ic) != QM_OK)
                return qm_diag_fail(d, QM_ENOMEM, "out of memory");
            if (in_chain(&ic, 1, oc->id[0]))
                return qm_diag_fail(d, QM_EINVAL, "%s '%s' holds the input%s '%s' (%s); choose another output", opt,
                                    out, dir, in[i].path, in[i].what);
        }
    }
    return QM_OK;
}

qm_status qm_path_check_output(const char *opt, const char *out, int out_is_dir, const qm_path_input *in, size_t n,
                               qm_diag *d)
{
    chain oc;
    if (ancestry(out, &oc) != QM_OK)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    qm_status st = check_pass(0, opt, out, out_is_dir, &oc, in, n, d);
    return st == QM_OK ? check_pass(1, opt, out, out_is_dir, &oc, in, n, d) : st;
}

/* ---- the output directory's lock ------------------------------------------------ */

qm_status qm_dir_lock(const char *dir, qm_lock *l, qm_diag *d)
{
    l->fd = -1;
    if (!(l->path = qm_strfmt("%s/.qmoe-lock", dir)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    /* The holder removes the file when it is done, so a file just locked may
     * already be unlinked: lock again until the file locked is the one the
     * name points to. */
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd < 0)
            break;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char pid[32] = {0};
            ssize_t k = e == EWOULDBLOCK ? pread(fd, pid, sizeof pid - 1, 0) : -1;
            close(fd);
            if (k > 0 && pid[k - 1] == '\n')
                pid[k - 1] = '\0';
            qm_status st = e != EWOULDBLOCK
                               ? qm_diag_fail(d, QM_EIO, "%s: cannot lock: %s", l->path, strerror(e))
                           : k > 0 ? qm_diag_fail(d, QM_EINVAL, "%s is in use by process %s (it holds %s); wait for "
                                                  "it to finish or choose another output", dir, pid, l->path)
                                   : qm_diag_fail(d, QM_EINVAL, "%s is in use by another process (it holds %s); "
                                                  "wait for it to finish or choose another output", dir, l->path);
            qm_dir_unlock(l);
            return st;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(l->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            char pid[32];
            int k = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)k, 0) == k) {
                l->fd = fd;
                return QM_OK;
            }
        }
        close(fd);
    }
    qm_status st = qm_diag_fail(d, QM_EIO, "%s: cannot lock: %s", l->path, strerror(errno));
    qm_dir_unlock(l);
    return st;
}

void qm_dir_unlock(qm_lock *l)
{
    if (l->fd >= 0) {
        unlink(l->path); /* before the close, while still held: no one else's lock file is removed */
        close(l->fd);
    }
    free(l->path);
    l->path = NULL;
    l->fd = -1;
}
