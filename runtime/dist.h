/* dist.h: a run spread over the processes of an MPI job, and the rule that
 * gives each process its share of a MoE layer's experts.
 *
 * `mpirun -n N qmoe quantize ...` starts N copies of the command; they
 * find each other through this module, the only one that speaks MPI.
 * Rank 0 reads the calibration text, owns the output directory and writes
 * every file; the other ranks compute what rank 0 hands them (a layer's
 * routed rows) and send back what rank 0 writes (packed tensors, expert
 * outputs).  Rank 0 sums expert outputs in expert order, the order one
 * process sums them in, so the bytes do not depend on N (qmoe(1),
 * DISTRIBUTED RUNS).
 *
 * Built without MPI (configure --without-mpi, or no MPI found), the same
 * interface describes a job of one process, so callers hold no #ifdefs; a
 * NULL qm_dist is that job too.  Built with MPI, qm_dist_open() joins an
 * MPI job only when a launcher started the process (mpirun, mpiexec,
 * srun set their environment); a plain `qmoe` stays one process and never
 * initializes MPI.
 *
 * Errors: every MPI call returns its error (MPI_ERRORS_RETURN) and the
 * failure becomes a diagnostic naming the call, the peer and MPI's own
 * text; a rank that dies is reported by the launcher, which ends the job.
 * The command driver ends a job whose rank failed with qm_dist_abort(),
 * so that no rank waits forever for a peer that returned an error.
 *
 * A rank that hangs (stopped, swapping, a dead node the network has not
 * noticed) returns no error, and MPI's blocking calls would wait for it
 * forever.  So every wait here is a non-blocking call polled against a
 * deadline, the job's timeout (qm_dist_set_timeout(); QMOE_MPI_TIMEOUT;
 * default QM_DIST_TIMEOUT): a wait longer than that fails with a
 * diagnostic naming this rank, the call, the peer and the layer
 * (qm_dist_set_layer()), and the job is ended like any failed one.  The
 * timeout bounds one wait, which includes the peer's work before it
 * answers (rank 0's attention and writing while the others wait for the
 * next layer): it must exceed the longest such stretch.  Polling sleeps
 * after its first milliseconds, so a waiting rank leaves its core to
 * the ranks that compute.
 *
 * Byte counts: bytes_sent counts the payload each rank hands to MPI (a
 * broadcast counts N-1 copies at its root, whatever tree MPI uses), the
 * figure bench/mpi.sh reports.
 */
#ifndef QM_DIST_H
#define QM_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

typedef struct qm_dist qm_dist;

/* The longest one wait for another rank may last, in seconds, unless
 * QMOE_MPI_TIMEOUT or --mpi-timeout says otherwise: long enough for rank
 * 0's share of one layer of a large model on a slow machine. */
#define QM_DIST_TIMEOUT 3600.0

/* Join the MPI job that launched this process, or make a job of one
 * process when none did (or MPI is not built in), its timeout from
 * QMOE_MPI_TIMEOUT (seconds > 0; another value is an error naming it) or
 * QM_DIST_TIMEOUT.  Caller closes with qm_dist_close(). */
qm_status qm_dist_open(int *argc, char ***argv, qm_dist **out, qm_diag *d);
/* Leave the job (MPI_Finalize); NULL is fine. */
void qm_dist_close(qm_dist *x);
/* End every process of the job with exit status `code` (MPI_Abort): for
 * the command driver after a rank failed; a job of one process just
 * returns. */
void qm_dist_abort(qm_dist *x, int code);

/* The timeout of every wait from now on (seconds > 0): --mpi-timeout. */
void qm_dist_set_timeout(qm_dist *x, double seconds);
/* The layer the job works on, for diagnostics (-1: none); NULL is fine. */
void qm_dist_set_layer(qm_dist *x, int layer);
/* Parse a timeout as QMOE_MPI_TIMEOUT and --mpi-timeout give it: a
 * number of seconds > 0; 0 when s is not one. */
int qm_dist_parse_timeout(const char *s, double *seconds);

int qm_dist_rank(const qm_dist *x); /* 0 for NULL */
int qm_dist_size(const qm_dist *x); /* 1 for NULL */
int qm_dist_mpi(void);              /* whether MPI is built in */
/* Bytes this rank has handed to MPI so far. */
uint64_t qm_dist_bytes_sent(const qm_dist *x);

/* Rank 0's `n` bytes at buf to every rank (any size). */
qm_status qm_dist_bcast(qm_dist *x, void *buf, size_t n, qm_diag *d);

/* The run's shape, which rank 0 sends before the first layer (the
 * model's tensor count and the calibration windows x window length). */
typedef struct qm_dist_shape {
    long long tensors, B, S;
} qm_dist_shape;
/* A rank other than 0: fail, naming the rank and model_dir, unless its
 * model has as many tensors as rank 0's (every rank needs the same model). */
qm_status qm_dist_shape_check(const qm_dist *x, const qm_dist_shape *h, const char *model_dir, size_t tensors,
                              qm_diag *d);

/* Send `n` bytes to rank `to` under `tag` without waiting for the receive:
 * the job takes ownership of buf (malloc'd) and frees it in
 * qm_dist_flush(), which waits until every such send is done. */
qm_status qm_dist_post(qm_dist *x, int to, int tag, void *buf, size_t n, qm_diag *d);
qm_status qm_dist_flush(qm_dist *x, qm_diag *d);

/* The next message from rank `from` under `tag`, of any size: *buf
 * (caller frees), *n bytes. */
qm_status qm_dist_recv(qm_dist *x, int from, int tag, void **buf, size_t *n, qm_diag *d);

/* The expert -> rank rule.  Expert e costs
 *     cost[e] = params[e] * (tokens[e] + fixed)
 * (its forward pass and Hessians grow with the rows routed to it, GPTQ
 * with its weights: `fixed` rows' worth of work).  Experts are taken in
 * decreasing cost (ties: lower index first) and each goes to the rank
 * with the least cost so far (ties: lower rank): the longest-processing-
 * time rule, within 4/3 of the best balance.  Every rank computes the
 * same owner[] (n entries) from the same counts. */
void qm_dist_assign(int ranks, int n, const long long *tokens, const long long *params, long long fixed, int *owner);

#endif
