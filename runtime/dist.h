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

/* Join the MPI job that launched this process, or make a job of one
 * process when none did (or MPI is not built in).  Caller closes with
 * qm_dist_close(). */
qm_status qm_dist_open(int *argc, char ***argv, qm_dist **out, qm_diag *d);
/* Leave the job (MPI_Finalize); NULL is fine. */
void qm_dist_close(qm_dist *x);
/* End every process of the job with exit status `code` (MPI_Abort): for
 * the command driver after a rank failed; a job of one process just
 * returns. */
void qm_dist_abort(qm_dist *x, int code);

int qm_dist_rank(const qm_dist *x); /* 0 for NULL */
int qm_dist_size(const qm_dist *x); /* 1 for NULL */
int qm_dist_mpi(void);              /* whether MPI is built in */
/* Bytes this rank has handed to MPI so far. */
uint64_t qm_dist_bytes_sent(const qm_dist *x);

/* Rank 0's `n` bytes at buf to every rank (any size). */
qm_status qm_dist_bcast(qm_dist *x, void *buf, size_t n, qm_diag *d);

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
