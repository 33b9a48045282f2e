/* fwd_kernels.h: private to the forward pass (forward.c): its elementwise
 * kernels and the worker threads it spreads its work over.  Prefixed fwdk_,
 * not qm_, so that the library does not export them. */
#ifndef QM_FWD_KERNELS_H
#define QM_FWD_KERNELS_H

#include <stddef.h>

/* In-place softmax of r (n), n >= 1.  exp is a polynomial accurate to about
 * 2 ulp over the range softmax uses, evaluated vectorised; the sum is reduced
 * in a fixed order, so the result depends only on r. */
void fwdk_softmax(float *r, int n);

/* g (n) = silu(g) * u elementwise: SwiGLU's gating, with the same exp. */
void fwdk_silu_mul(float *g, const float *u, size_t n);

/* The most workers fwdk_parallel() runs. */
enum { QM_FWD_MAX_WORKERS = 64 };

/* How many workers the forward pass uses: OpenBLAS's thread count (which
 * follows OPENBLAS_NUM_THREADS), at most QM_FWD_MAX_WORKERS. */
int fwdk_workers(void);

/* One unit of work: task number `task` on worker `worker` (0 <= worker <
 * workers), which may use that worker's scratch. */
typedef void fwdk_task(void *ctx, int task, int worker);

/* Run fn for tasks 0..tasks-1 on up to `workers` threads (the caller's
 * included), each task exactly once, and return when all are done.  Tasks
 * must write disjoint memory; then the results do not depend on which worker
 * ran which task, so they are the same every run.  OpenBLAS is single-threaded
 * inside (each worker is one thread of sgemm) and restored after.  If a thread
 * cannot be started the others take its share. */
void fwdk_parallel(int workers, int tasks, fwdk_task *fn, void *ctx);

#endif
