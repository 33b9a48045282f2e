/* fwd_kernels.h: private to the forward pass (forward.c): its elementwise
 * kernels and the worker threads it spreads its work over.  Prefixed fwdk_,
 * not qm_, so that the library does not export them. */
#ifndef QM_FWD_KERNELS_H
#define QM_FWD_KERNELS_H

#include <stddef.h>

#include "base/base.h"

/* In-place softmax of r (n), n >= 1.  exp is a polynomial accurate to about
 * 2 ulp over the range softmax uses, evaluated vectorised; the sum is reduced
 * in a fixed order, so the result depends only on r. */
void fwdk_softmax(float *r, int n);

/* g (n) = silu(g) * u elementwise: SwiGLU's gating, with the same exp. */
void fwdk_silu_mul(float *g, const float *u, size_t n);

/* How many workers the forward pass uses: OpenBLAS's thread count (which
 * follows OPENBLAS_NUM_THREADS), at most QM_MAX_WORKERS. */
int fwdk_workers(void);

typedef qm_task_fn fwdk_task;

/* qm_parallel() with OpenBLAS single-threaded inside (each worker is one
 * thread of sgemm) and restored after. */
void fwdk_parallel(int workers, int tasks, fwdk_task *fn, void *ctx);

#endif
