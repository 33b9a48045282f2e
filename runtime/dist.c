/* dist.c: the MPI job a distributed run is (see dist.h).  The only file
 * that includes <mpi.h>: built without MPI, the same functions describe a
 * job of one process.  Messages of any size go as pieces of at most
 * PIECE bytes, because MPI counts in int.  Every wait is a non-blocking
 * call and wait_for()'s polling, bounded by the job's timeout. */
#include "config.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/dist.h"

#if HAVE_MPI
#include <mpi.h>
#endif

enum { PIECE = 1 << 30 };

struct qm_dist {
    int rank, size;
    int mpi;              /* MPI_Init was called (and MPI_Finalize is owed) */
    uint64_t sent;        /* bytes handed to MPI */
    double timeout;       /* seconds one wait may last */
    int layer;            /* for diagnostics; -1: none */
    int broken;           /* a wait timed out: requests are left pending, only MPI_Abort ends the job */
    uint64_t len_in;      /* a message's length being received (a receive that timed out may still write it) */
#if HAVE_MPI
    MPI_Request *req;     /* (n_req) posted sends; owned */
    void **bufs;          /* (n_bufs) their buffers, freed by qm_dist_flush(); owned */
    size_t n_req, cap_req, n_bufs, cap_bufs;
#endif
};

int qm_dist_rank(const qm_dist *x) { return x ? x->rank : 0; }
int qm_dist_size(const qm_dist *x) { return x ? x->size : 1; }
uint64_t qm_dist_bytes_sent(const qm_dist *x) { return x ? x->sent : 0; }

void qm_dist_set_timeout(qm_dist *x, double seconds)
{
    if (x && seconds > 0)
        x->timeout = seconds;
}

void qm_dist_set_layer(qm_dist *x, int layer)
{
    if (x)
        x->layer = layer;
}

int qm_dist_parse_timeout(const char *s, double *seconds)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || !(v > 0))
        return 0;
    *seconds = v;
    return 1;
}

/* ---- the expert -> rank rule (no MPI in it) --------------------------------------------- */

typedef struct item {
    long double cost;
    int e;
} item;

static int by_cost(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    return (x->e > y->e) - (x->e < y->e);
}

qm_status qm_dist_shape_check(const qm_dist *x, const qm_dist_shape *h, const char *model_dir, size_t tensors,
                              qm_diag *d)
{
    if ((long long)tensors == h->tensors)
        return QM_OK;
    return qm_diag_fail(d, QM_EINVAL, "rank %d: %s has %zu tensors, rank 0's model %lld: every rank needs the same "
                        "model", qm_dist_rank(x), model_dir, tensors, h->tensors);
}

void qm_dist_assign(int ranks, int n, const long long *tokens, const long long *params, long long fixed, int *owner)
{
    item *it = malloc((size_t)(n > 0 ? n : 1) * sizeof *it);
    long double *load = calloc((size_t)(ranks > 0 ? ranks : 1), sizeof *load);
    if (!it || !load || ranks <= 1) { /* one rank, or no memory to balance with: round robin is still a rule */
        for (int e = 0; e < n; e++)
            owner[e] = ranks > 1 ? e % ranks : 0;
        free(it);
        free(load);
        return;
    }
    for (int e = 0; e < n; e++)
        it[e] = (item){(long double)params[e] * (long double)(tokens[e] + fixed), e};
    qsort(it, (size_t)n, sizeof *it, by_cost);
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < ranks; k++)
            if (load[k] < load[best])
                best = k;
        owner[it[i].e] = best;
        load[best] += it[i].cost;
    }
    free(it);
    free(load);
}

#if HAVE_MPI

int qm_dist_mpi(void) { return 1; }

/* A failed MPI call as a diagnostic: the call, the peer, MPI's text. */
static qm_status mpi_fail(qm_dist *x, qm_diag *d, int rc, const char *call, int peer)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", rc);
    if (peer >= 0)
        return qm_diag_fail(d, QM_EIO, "rank %d: %s with rank %d failed: %s (a rank died or the network failed; "
                            "the output resumes from the last finished layer)", x->rank, call, peer, text);
    return qm_diag_fail(d, QM_EIO, "rank %d: %s failed: %s (a rank died or the network failed; the output resumes "
                        "from the last finished layer)", x->rank, call, text);
}

/* " in layer L" for a diagnostic (in buf), or "". */
static const char *where(const qm_dist *x, char buf[32])
{
    if (x->layer < 0)
        return "";
    snprintf(buf, 32, " in layer %d", x->layer);
    return buf;
}

/* Poll reqs until all complete, at most the job's timeout: a timeout
 * leaves them pending and the job broken (dist.h).  call and peer (-1:
 * any rank) name the wait in the diagnostic. */
static qm_status wait_for(qm_dist *x, int n, MPI_Request *reqs, const char *call, int peer, qm_diag *d)
{
    double t0 = MPI_Wtime();
    for (;;) {
        int done = 0, rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(x, d, rc, call, peer);
        if (done)
            return QM_OK;
        double t = MPI_Wtime() - t0;
        if (t > x->timeout)
            break;
        if (t < 0.01) { /* a message under way: keep MPI progressing it */
            sched_yield();
        } else {        /* a peer still computing: leave the core to it */
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    char at[32];
    x->broken = 1;
    if (peer >= 0)
        return qm_diag_fail(d, QM_EIO, "rank %d: %s with rank %d timed out after %g s%s: rank %d hangs, is stopped "
                            "or is slower than the timeout allows (--mpi-timeout, QMOE_MPI_TIMEOUT); the output "
                            "resumes from the last finished layer", x->rank, call, peer, x->timeout, where(x, at), peer);
    return qm_diag_fail(d, QM_EIO, "rank %d: %s timed out after %g s%s: a rank hangs, is stopped or is slower than the "
                        "timeout allows (--mpi-timeout, QMOE_MPI_TIMEOUT); the output resumes from the last finished "
                        "layer", x->rank, call, x->timeout, where(x, at));
}

/* Launched by an MPI starter: Open MPI's mpirun, MPICH's Hydra (PMI),
 * PMIx-based starters and Slurm's srun with PMI/PMIx. */
static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

qm_status qm_dist_open(int *argc, char ***argv, qm_dist **out, qm_diag *d)
{
    qm_dist *x = calloc(1, sizeof *x);
    *out = NULL;
    if (!x)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    x->size = 1;
    x->layer = -1;
    x->timeout = QM_DIST_TIMEOUT;
    const char *env = getenv("QMOE_MPI_TIMEOUT");
    if (launched() && env && !qm_dist_parse_timeout(env, &x->timeout)) {
        free(x);
        return qm_diag_fail(d, QM_EINVAL, "QMOE_MPI_TIMEOUT='%s': give a number of seconds > 0", env);
    }
    if (launched()) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) {
            free(x);
            return qm_diag_fail(d, QM_EIO, "MPI_Init failed (error %d): the MPI job could not start", rc);
        }
        x->mpi = 1;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &x->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &x->size);
    }
    *out = x;
    return QM_OK;
}

qm_status qm_dist_flush(qm_dist *x, qm_diag *d)
{
    qm_status st = QM_OK;
    if (x && x->broken)
        return qm_diag_fail(d, QM_EIO, "rank %d: an earlier wait timed out; the job must end", x->rank);
    if (x && x->n_req)
        st = wait_for(x, (int)x->n_req, x->req, "MPI_Isend (sends to rank 0)", 0, d);
    if (x && !x->broken) { /* after a timeout the sends may still read them: the job ends */
        for (size_t i = 0; i < x->n_bufs; i++)
            free(x->bufs[i]);
        x->n_req = x->n_bufs = 0;
    }
    return st;
}

void qm_dist_close(qm_dist *x)
{
    if (!x)
        return;
    if (x->mpi && x->broken && x->size > 1) /* pending requests: MPI_Finalize could wait for them forever */
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (x->mpi) {
        qm_dist_flush(x, NULL);
        MPI_Finalize();
    }
    free(x->req);
    free(x->bufs);
    free(x);
}

void qm_dist_abort(qm_dist *x, int code)
{
    if (x && x->mpi && x->size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
}

qm_status qm_dist_bcast(qm_dist *x, void *buf, size_t n, qm_diag *d)
{
    if (qm_dist_size(x) < 2)
        return QM_OK;
    for (size_t at = 0; at < n; at += PIECE) {
        int len = (int)(n - at < PIECE ? n - at : PIECE);
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + at, len, MPI_BYTE, 0, MPI_COMM_WORLD, &req);
        const char *call = x->rank ? "MPI_Ibcast from rank 0" : "MPI_Ibcast to the other ranks";
        qm_status st = rc != MPI_SUCCESS ? mpi_fail(x, d, rc, call, -1) : wait_for(x, 1, &req, call, x->rank ? 0 : -1, d);
        if (st != QM_OK)
            return st;
    }
    if (x->rank == 0)
        x->sent += (uint64_t)n * (uint64_t)(x->size - 1);
    return QM_OK;
}

/* Room for `reqs` more posted requests and `bufs` more buffers. */
static qm_status grow(qm_dist *x, size_t reqs, size_t bufs, qm_diag *d)
{
    if (x->n_req + reqs > x->cap_req) {
        size_t cap = (x->n_req + reqs) * 2;
        MPI_Request *r = realloc(x->req, cap * sizeof *r);
        if (!r)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        x->req = r;
        x->cap_req = cap;
    }
    if (x->n_bufs + bufs > x->cap_bufs) {
        size_t cap = (x->n_bufs + bufs) * 2;
        void **b = realloc(x->bufs, cap * sizeof *b);
        if (!b)
            return qm_diag_fail(d, QM_ENOMEM, "out of memory");
        x->bufs = b;
        x->cap_bufs = cap;
    }
    return QM_OK;
}

/* A message is its 8-byte length, then the bytes in pieces, all under one
 * tag: MPI keeps the order of messages between two ranks under one tag. */
qm_status qm_dist_post(qm_dist *x, int to, int tag, void *buf, size_t n, qm_diag *d)
{
    size_t pieces = (n + PIECE - 1) / PIECE;
    uint64_t *len = malloc(sizeof *len);
    qm_status st = len ? grow(x, pieces + 1, 2, d) : qm_diag_fail(d, QM_ENOMEM, "out of memory");
    if (st != QM_OK) {
        free(len);
        free(buf);
        return st;
    }
    *len = n;
    x->bufs[x->n_bufs++] = len;
    x->bufs[x->n_bufs++] = buf;
    int rc = MPI_Isend(len, 8, MPI_BYTE, to, tag, MPI_COMM_WORLD, &x->req[x->n_req++]);
    for (size_t at = 0; rc == MPI_SUCCESS && at < n; at += PIECE) {
        int k = (int)(n - at < PIECE ? n - at : PIECE);
        rc = MPI_Isend((char *)buf + at, k, MPI_BYTE, to, tag, MPI_COMM_WORLD, &x->req[x->n_req++]);
    }
    if (rc != MPI_SUCCESS)
        return mpi_fail(x, d, rc, "MPI_Isend", to);
    x->sent += n + 8;
    return QM_OK;
}

qm_status qm_dist_recv(qm_dist *x, int from, int tag, void **buf, size_t *n, qm_diag *d)
{
    uint64_t len;
    *buf = NULL;
    *n = 0;
    MPI_Request req;
    int rc = MPI_Irecv(&x->len_in, 8, MPI_BYTE, from, tag, MPI_COMM_WORLD, &req);
    qm_status st = rc != MPI_SUCCESS ? mpi_fail(x, d, rc, "MPI_Irecv", from) : wait_for(x, 1, &req, "MPI_Irecv", from, d);
    if (st != QM_OK)
        return st;
    len = x->len_in;
    char *b = malloc(len ? len : 1);
    if (!b)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for a message of %llu bytes from rank %d",
                            (unsigned long long)len, from);
    for (size_t at = 0; at < len; at += PIECE) {
        int k = (int)(len - at < PIECE ? len - at : PIECE);
        if ((rc = MPI_Irecv(b + at, k, MPI_BYTE, from, tag, MPI_COMM_WORLD, &req)) != MPI_SUCCESS) {
            free(b);
            return mpi_fail(x, d, rc, "MPI_Irecv", from);
        }
        if ((st = wait_for(x, 1, &req, "MPI_Irecv", from, d)) != QM_OK) {
            return st; /* b stays MPI's, which may still write into it: the job ends */
        }
    }
    *buf = b;
    *n = len;
    return QM_OK;
}

#else /* a job of one process */

int qm_dist_mpi(void) { return 0; }

qm_status qm_dist_open(int *argc, char ***argv, qm_dist **out, qm_diag *d)
{
    (void)argc, (void)argv;
    if (!(*out = calloc(1, sizeof **out)))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    (*out)->size = 1;
    (*out)->layer = -1;
    (*out)->timeout = QM_DIST_TIMEOUT;
    return QM_OK;
}

void qm_dist_close(qm_dist *x) { free(x); }
void qm_dist_abort(qm_dist *x, int code) { (void)x, (void)code; }
qm_status qm_dist_bcast(qm_dist *x, void *buf, size_t n, qm_diag *d) { return QM_OK; }

qm_status qm_dist_post(qm_dist *x, int to, int tag, void *buf, size_t n, qm_diag *d)
{
    free(buf);
    return qm_diag_fail(d, QM_EUNSUPPORTED, "no rank %d: this qmoe is built without MPI", to);
}

qm_status qm_dist_flush(qm_dist *x, qm_diag *d) { return QM_OK; }

qm_status qm_dist_recv(qm_dist *x, int from, int tag, void **buf, size_t *n, qm_diag *d)
{
    *buf = NULL;
    *n = 0;
    return qm_diag_fail(d, QM_EUNSUPPORTED, "no rank %d: this qmoe is built without MPI", from);
}

#endif
