/* replay.c: run every committed fuzz input through a fuzz target, so that
 * `make check` catches a regression on any input that once crashed.  One
 * driver serves every target: it is linked with one fuzz_NAME.c, and
 * QM_FUZZ_DIRS (a compile-time list of strings, relative to $QM_SRCDIR)
 * names that target's committed inputs.
 *
 *   replay [DIR]...   (default: QM_FUZZ_DIRS; without it, the policy corpus
 *                      and the golden cases)
 *
 * The target aborts on a failed property; exits non-zero when a directory
 * cannot be read or holds no input.
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096, n = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *t = realloc(buf, cap *= 2);
            if (!t)
                free(buf);
            buf = t;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

/* Replay each regular file in dir; the count, or -1. */
static int replay_dir(const char *dir)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), count = 0;
    if (n < 0) {
        perror(dir);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[2048];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (replay_file(path) != 0) {
                perror(path);
                count = -1;
            } else if (count >= 0) {
                count++;
            }
        }
        free(list[i]);
    }
    free(list);
    return count;
}

int main(int argc, char **argv)
{
#ifndef QM_FUZZ_DIRS
#define QM_FUZZ_DIRS "tests/fuzz/corpus/policy", "tests/lang/ok", "tests/lang/err", "tests/lang/err/lib"
#endif
    static const char *const dflt[] = {QM_FUZZ_DIRS};
    const char *src = getenv("QM_SRCDIR");
    int total = 0, failed = 0;
    int ndirs = argc > 1 ? argc - 1 : (int)(sizeof dflt / sizeof *dflt);
    for (int i = 0; i < ndirs; i++) {
        char dir[1024];
        if (argc > 1)
            snprintf(dir, sizeof dir, "%s", argv[i + 1]);
        else
            snprintf(dir, sizeof dir, "%s/%s", src ? src : ".", dflt[i]);
        int n = replay_dir(dir);
        if (n <= 0) {
            fprintf(stderr, "%s: %s\n", dir, n == 0 ? "no inputs" : "cannot replay");
            failed = 1;
        } else {
            total += n;
        }
    }
    printf("replay: %d inputs\n", total);
    return failed;
}
