/* testutil.h: helpers for qmoe's CUnit suites.
 *
 * Each test binary works in its own temporary directory (removed at exit),
 * reads shipped test data under $QM_SRCDIR, and exits non-zero when any
 * assertion failed.
 */
#ifndef QM_TESTUTIL_H
#define QM_TESTUTIL_H

#include <CUnit/Basic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* The per-binary scratch directory (created on first use). */
const char *tu_tmpdir(void);
/* "$tmpdir/name" in a static rotating buffer. */
const char *tu_path(const char *name);
/* "$QM_SRCDIR/rel" in a static rotating buffer. */
const char *tu_src(const char *rel);
/* Write bytes to path; 0 on success. */
int tu_write(const char *path, const void *data, size_t n);
/* Write a safetensors file with the given header text and data size: the
 * data area is a hole (sparse), so multi-GB checkpoints cost nothing. */
int tu_write_st(const char *path, const char *header, uint64_t data_size);
/* mkdir -p for one level under the tmpdir; returns the path. */
const char *tu_mkdir(const char *name);
/* Does any diagnostic in d, as printed (qm_diag_format() with "qmoe"),
 * contain `needle`? */
int tu_diag_has(const qm_diag *d, const char *needle);
/* All diagnostics as printed, each indented (static buffer), for failure messages. */
const char *tu_diag_all(const qm_diag *d);

/* Register suites with CU_add_suite/CU_add_test before calling; runs them
 * and returns the process exit status. */
int tu_run(void);

#define TU_ASSERT_DIAG(d, needle)                                                   \
    do {                                                                             \
        int tu_ok_ = tu_diag_has((d), (needle));                                     \
        if (!tu_ok_)                                                                 \
            fprintf(stderr, "\nexpected diagnostic containing '%s', got:\n%s\n",     \
                    (needle), tu_diag_all(d));                                       \
        CU_ASSERT(tu_ok_);                                                           \
    } while (0)

#endif
