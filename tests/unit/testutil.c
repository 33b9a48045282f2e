/* testutil.c: scratch directories, file writers and the CUnit runner. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/testutil.h"

static char tmpdir[512];

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

const char *tu_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/qmoe-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(cleanup);
    }
    return tmpdir;
}

static char *rotate(void)
{
    static char bufs[8][1024];
    static int i;
    return bufs[i++ % 8];
}

const char *tu_path(const char *name)
{
    char *b = rotate();
    snprintf(b, 1024, "%s/%s", tu_tmpdir(), name);
    return b;
}

const char *tu_src(const char *rel)
{
    const char *s = getenv("QM_SRCDIR");
    char *b = rotate();
    snprintf(b, 1024, "%s/%s", s ? s : ".", rel);
    return b;
}

const char *tu_mkdir(const char *name)
{
    const char *p = tu_path(name);
    mkdir(p, 0755);
    return p;
}

int tu_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = n && fwrite(data, 1, n, f) != n;
    return fclose(f) != 0 || bad ? -1 : 0;
}

int tu_write_st(const char *path, const char *header, uint64_t data_size)
{
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(n >> (8 * i));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    int bad = write(fd, len, 8) != 8 || write(fd, header, n) != (ssize_t)n ||
              ftruncate(fd, (off_t)(8 + n + data_size)) != 0;
    return close(fd) != 0 || bad ? -1 : 0;
}

int tu_diag_has(const qm_diag *d, const char *needle)
{
    int found = 0;
    for (size_t i = 0; i < qm_diag_count(d) && !found; i++) {
        qm_buf b = {0};
        qm_diag_format(d, i, "qmoe", &b);
        found = b.s && strstr(b.s, needle);
        free(b.s);
    }
    return found;
}

const char *tu_diag_all(const qm_diag *d)
{
    static char buf[8192];
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < qm_diag_count(d) && o < sizeof buf; i++) {
        qm_buf b = {0};
        qm_diag_format(d, i, "qmoe", &b);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "  %s", b.s ? b.s : "(out of memory)\n");
        free(b.s);
    }
    return buf;
}

int tu_run(void)
{
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    int rc = CU_get_error() != CUE_SUCCESS || failed ? 1 : 0;
    CU_cleanup_registry();
    return rc;
}
