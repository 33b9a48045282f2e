/* blas_pool.c: stopping OpenBLAS's spinning threads (blas_pool.h). */
#include "config.h"

#include "runtime/blas_pool.h"

#ifdef HAVE_BLAS_THREAD_SHUTDOWN_
/* Exported by OpenBLAS's pthreads server (driver/others/blas_server.c) and
 * registered there with pthread_atfork(); not in its public header. */
int blas_thread_shutdown_(void);
#endif

void qm_blas_pool_rest(void)
{
#ifdef HAVE_BLAS_THREAD_SHUTDOWN_
    blas_thread_shutdown_();
#endif
}
