/* blas_pool.h: OpenBLAS's worker threads, which start when the library is
 * loaded, before main().
 *
 * The pthreads build of OpenBLAS (Debian's default) starts one thread per
 * processor in its constructor, and each spins on sched_yield() for about
 * 2^28 cycles (~0.1 s) waiting for work before it sleeps.  On two cores that
 * is the other core, busy, for the whole of a command like `qmoe compile`
 * that does no BLAS at all: at 235B scale the spin cost 0.1 s of system time
 * and 20-30 ms of wall time of a ~130 ms compile.
 */
#ifndef QM_BLAS_POOL_H
#define QM_BLAS_POOL_H

/* Stop OpenBLAS's threads now.  OpenBLAS starts them again on its next
 * threaded call (as it does in a forked child, which is what this function
 * is for in OpenBLAS itself), so calling it costs a BLAS-heavy command one
 * thread start.  Does nothing with builds that have no such pool. */
void qm_blas_pool_rest(void);

#endif
