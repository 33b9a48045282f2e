/* gptq.c: GPTQ for one linear, the blocked version and the reference (see gptq.h).
 *
 * Columns of W are rows of Wt = W^T (in, out), so a column's update is one
 * contiguous vector of `out` floats and a block of columns is one
 * contiguous (B, out) matrix for sgemm.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fwd_kernels.h"
#include "model/dtype.h"
#include "runtime/gptq.h"
#include "runtime/gptq_grid.h"

/* LAPACK from OpenBLAS (Fortran ABI: trailing hidden length of the string). */
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info, size_t len);
extern void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda, int *info,
                    size_t len1, size_t len2);

qm_qspec qm_qspec_default(void) { return (qm_qspec){.sym = 1, .damp = 0.01}; }

void qm_qresult_free(qm_qresult *r)
{
    free(r->deq);
    free(r->codes);
    free(r->scale);
    free(r->zero);
    free(r->g_idx);
    free(r->min);
    free(r->lscale);
    free(r->lmin);
    free(r->sd);
    free(r->smin);
    memset(r, 0, sizeof *r);
}

/* Products in tiles of DTILE x DTILE of C, each one single-threaded sgemm
 * over the whole K, the tiles spread over the workers: every element is
 * then summed in an order fixed by the shapes and DTILE alone.  OpenBLAS's
 * threaded ssyrk, potrf and trtri split their sums differently for each
 * thread count, which made quantize's output bytes depend on
 * OPENBLAS_NUM_THREADS. */
enum { DTILE = 128 };

typedef struct gemm_job {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, tn, upper; /* tn: tiles per row of C; upper: only tiles (bi <= bj) */
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
} gemm_job;

static void gemm_tile(void *ctx, int t, int worker)
{
    const gemm_job *g = ctx;
    (void)worker;
    int bi = t / g->tn, bj = t % g->tn;
    if (g->upper) { /* tiles numbered column by column down to the diagonal */
        for (bj = 0; t > bj;)
            t -= ++bj;
        bi = t;
    }
    int i0 = bi * DTILE, j0 = bj * DTILE;
    int mi = g->M - i0 < DTILE ? g->M - i0 : DTILE, nj = g->N - j0 < DTILE ? g->N - j0 : DTILE;
    const float *a = g->ta == CblasNoTrans ? g->A + (size_t)i0 * g->lda : g->A + i0;
    const float *b = g->tb == CblasNoTrans ? g->B + j0 : g->B + (size_t)j0 * g->ldb;
    cblas_sgemm(CblasRowMajor, g->ta, g->tb, mi, nj, g->K, g->alpha, a, g->lda, b, g->ldb, g->beta,
                g->C + (size_t)i0 * g->ldc + j0, g->ldc);
}

static void gemm_run(gemm_job *g)
{
    int tm = (g->M + DTILE - 1) / DTILE;
    g->tn = (g->N + DTILE - 1) / DTILE;
    if (tm > 0 && g->tn > 0)
        fwdk_parallel(fwdk_workers(), g->upper ? g->tn * (g->tn + 1) / 2 : tm * g->tn, gemm_tile, g);
}

void qm_sgemm_fixed(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float beta, float *C, int ldc)
{
    gemm_job g = {ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 0, 0, alpha, beta,
                  A, B, C, lda, ldb, ldc};
    gemm_run(&g);
}

void qm_hessian_add(float *H, const float *X, int n, int in)
{
    gemm_job g = {CblasTrans, CblasNoTrans, in, in, n, 0, 1, 1.0f, 1.0f, X, X, H, in, in, in};
    if (n > 0)
        gemm_run(&g);
}

void qm_hessian_finish(float *H, int in, long long samples)
{
    float f = samples > 0 ? 2.0f / (float)samples : 0.0f;
    for (int i = 0; i < in; i++)
        for (int j = i; j < in; j++)
            H[(size_t)j * in + i] = H[(size_t)i * in + j] *= f;
}

/* ---- transposes ---------------------------------------------------------------------------- */

/* Tiles of TILE x TILE elements keep both sides of a transpose in cache: a plain
 * loop reads (or writes) one element per cache line of the strided side. */
enum { TILE = 16 };

/* Wt (n, out) row i = column perm[i] of W (out, in), for i < n. */
static void gather_t(const float *W, int out, int in, const int *perm, int n, float *Wt)
{
    for (int i0 = 0; i0 < n; i0 += TILE)
        for (int o0 = 0; o0 < out; o0 += TILE) {
            int i1 = i0 + TILE < n ? i0 + TILE : n, o1 = o0 + TILE < out ? o0 + TILE : out;
            for (int i = i0; i < i1; i++) {
                const float *w = W + perm[i];
                float *d = Wt + (size_t)i * out;
                for (int o = o0; o < o1; o++)
                    d[o] = w[(size_t)o * in];
            }
        }
}

/* Column perm[i] of C (out, in) = row i of Ct (in, out): gather_t's
 * inverse, for the codes.  Within a tile the writes run along C's rows:
 * with rows a power of two apart, a tile's worth of writes down a column
 * would fall into one cache set. */
static void scatter_t_u8(const uint8_t *Ct, int out, int in, const int *perm, uint8_t *C)
{
    for (int o0 = 0; o0 < out; o0 += TILE)
        for (int i0 = 0; i0 < in; i0 += TILE) {
            int i1 = i0 + TILE < in ? i0 + TILE : in, o1 = o0 + TILE < out ? o0 + TILE : out;
            for (int o = o0; o < o1; o++) {
                const uint8_t *s = Ct + o;
                uint8_t *c = C + (size_t)o * in;
                for (int i = i0; i < i1; i++)
                    c[perm[i]] = s[(size_t)i * out];
            }
        }
}

/* deq = scale * (code - zero) by each column's group: the values qm_grid_quant1()
 * returned, bit for bit (its q is the code as a float). */
static void dequantize(qm_qresult *r)
{
    int out = r->out, in = r->in;
    for (int o = 0; o < out; o++) {
        const uint8_t *c = r->codes + (size_t)o * in;
        float *d = r->deq + (size_t)o * in;
        for (int i = 0; i < in; i++) {
            size_t k = (size_t)r->g_idx[i] * out + o;
            d[i] = r->min ? r->scale[k] * (float)c[i] - r->min[k] : r->scale[k] * ((float)c[i] - (float)r->zero[k]);
        }
    }
}

/* ---- shared set-up ----------------------------------------------------------------------- */

/* Output rows per pass of a block's own updates (see qm_gptq()). */
enum { QM_GPTQ_ROWS = 256 };

typedef struct job {
    const qm_qspec *s;
    int out, in, gs, maxq;
    int unit;       /* columns whose grids are fixed together: a group, or a two-level grid's super-group */
    float *Wt;      /* (in, out) in processing order */
    float *F;       /* (in, in) factor() of H in processing order, built in the caller's H
                     * (not owned): V' for qm_gptq(), U for qm_gptq_ref() */
    const float *W; /* (out, in) the weights as given */
    uint8_t *dead;  /* (in) input columns that are always zero */
    double loss;    /* sum of the squared scaled errors (w - q) / U_ii over every column */
    int invert;     /* F is U (else V') */
    int *perm;      /* (in) processing position -> input column */
    uint8_t *Ct;    /* (in, out) codes, processing order */
    float *mn, *mx; /* (out) scratch */
    float *grp;     /* (unit, out) qm_gptq()'s dynamic groups: group_values(); else NULL */
    float *x;       /* (gs + super) qm_grid_super()'s scratch for dynamic two-level grids; else NULL */
    float *imp;     /* (in) H_ii undamped in processing order (1 without a Hessian), the columns'
                     * importance for fit_scale's searches; NULL without them */
} job;

static void job_free(job *j)
{
    free(j->Wt);
    free(j->dead);
    free(j->perm);
    free(j->Ct);
    free(j->mn);
    free(j->mx);
    free(j->grp);
    free(j->x);
    free(j->imp);
}

typedef struct keyed {
    float key;
    int idx;
} keyed;

/* Descending H_ii; ties keep column order, so act-order is deterministic. */
static int by_desc_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key > y->key ? -1 : x->key < y->key ? 1 : (x->idx > y->idx) - (x->idx < y->idx);
}

/* ---- the Cholesky factor ------------------------------------------------------------------ */

/* A (n, n) row-major = L L^T in place, L lower (the upper triangle is never
 * written), right-looking in panels of CHOL_NB columns: the panel's
 * diagonal block by LAPACK's spotrf, the rows below it solved against that
 * block (strsm) and the trailing lower triangle updated by A22 -= A21 A21^T
 * (sgemm, ssyrk on diagonal tiles so that their upper halves stay as they
 * were), the solves and the update in tiles of CHOL_NB spread over the
 * workers.  Every call is single-threaded and the tiles are fixed by n and
 * CHOL_NB alone, so L is the same bytes on any thread count (OpenBLAS's
 * threaded spotrf changes its blocking with the thread count; a
 * single-threaded one leaves the other cores idle for 10 s on a 14336^2
 * Hessian).  Returns LAPACK's info: 0, or the order of the first minor
 * that is not positive definite. */
enum { CHOL_NB = 256 };

typedef struct chol_job {
    float *A;
    int n, k0, kb, r0; /* panel [k0, k0 + kb); rows from r0 = k0 + kb */
} chol_job;

static void chol_solve(void *ctx, int t, int worker)
{
    const chol_job *c = ctx;
    (void)worker;
    int i0 = c->r0 + t * CHOL_NB, m = c->n - i0 < CHOL_NB ? c->n - i0 : CHOL_NB;
    float *d = c->A + (size_t)c->k0 * c->n + c->k0;
    cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, c->kb, 1.0f, d, c->n,
                c->A + (size_t)i0 * c->n + c->k0, c->n);
}

static void chol_update(void *ctx, int t, int worker)
{
    const chol_job *c = ctx;
    (void)worker;
    int bi = 0;
    while (t > bi) /* tiles numbered row by row up to the diagonal: (bi, bj <= bi) */
        t -= ++bi;
    int i0 = c->r0 + bi * CHOL_NB, j0 = c->r0 + t * CHOL_NB;
    int mi = c->n - i0 < CHOL_NB ? c->n - i0 : CHOL_NB, nj = c->n - j0 < CHOL_NB ? c->n - j0 : CHOL_NB;
    const float *a = c->A + (size_t)i0 * c->n + c->k0, *b = c->A + (size_t)j0 * c->n + c->k0;
    float *C = c->A + (size_t)i0 * c->n + j0;
    if (i0 == j0)
        cblas_ssyrk(CblasRowMajor, CblasLower, CblasNoTrans, mi, c->kb, -1.0f, a, c->n, 1.0f, C, c->n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, nj, c->kb, -1.0f, a, c->n, b, c->n, 1.0f, C, c->n);
}

static int cholesky_lower(float *A, int n)
{
    int blas = openblas_get_num_threads(), workers = fwdk_workers();
    openblas_set_num_threads(1);
    int info = 0;
    for (int k0 = 0; info == 0 && k0 < n; k0 += CHOL_NB) {
        chol_job c = {A, n, k0, n - k0 < CHOL_NB ? n - k0 : CHOL_NB, 0};
        c.r0 = k0 + c.kb;
        spotrf_("U", &c.kb, A + (size_t)k0 * n + k0, &n, &info, 1); /* LAPACK's upper: our lower */
        if (info != 0) {
            info += k0;
            break;
        }
        int tiles = (n - c.r0 + CHOL_NB - 1) / CHOL_NB;
        if (tiles > 0) {
            fwdk_parallel(workers, tiles, chol_solve, &c);
            fwdk_parallel(workers, tiles * (tiles + 1) / 2, chol_update, &c);
        }
    }
    openblas_set_num_threads(blas);
    return info;
}

/* The factor GPTQ runs on, in H's own buffer, growing damp until H is
 * positive definite.  With J the order-reversing permutation, let
 * J (H + damp) J = L L^T (L lower, cholesky_lower()); then V = J L J is
 * upper triangular with H + damp = V V^T.
 *
 * invert = 0 (qm_gptq()): H becomes V with each column above the diagonal
 * divided by its diagonal element, V'_ij = V_ij / V_jj (i < j), and V_jj
 * on the diagonal.  GPTQ needs nothing else (see qm_gptq()).
 *
 * invert = 1 (qm_gptq_ref()): H becomes U = upper Cholesky factor of
 * (H + damp)^-1, the paper's factor, from one strtri more: H^-1 =
 * J L^-T L^-1 J = U^T U with U = J L^-1 J = V^-1, upper triangular with a
 * positive diagonal, so it is the Cholesky factor (which is unique).
 *
 * In row-major memory J M J is M's elements in reverse order, a streaming
 * swap in place, so no strided transpose is needed either.  LAPACK reads
 * our row-major arrays as their transposes: "U" in its terms is the lower
 * triangle in ours, which is where L (and L^-1) land; the upper triangle
 * (H reversed, H being symmetric) is never touched, so a retry with more
 * damping restores the lower one from it and the diagonal from a saved
 * copy: no second in x in buffer at any point. */
static void reverse(float *A, size_t nn)
{
    for (size_t k = 0; k < nn / 2; k++) {
        float t = A[k];
        A[k] = A[nn - 1 - k];
        A[nn - 1 - k] = t;
    }
}

static qm_status factor(float *H, int in, int invert, const qm_qspec *s, qm_qresult *r, qm_diag *d)
{
    size_t nn = (size_t)in * in;
    double mean = 0;
    for (int i = 0; i < in; i++)
        mean += H[(size_t)i * in + i];
    mean /= in;
    float *diag = malloc((size_t)in * sizeof *diag); /* (in) the diagonal of J H J, then V's; owned */
    if (!diag)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory for a %d x %d Hessian", in, in);
    reverse(H, nn); /* H = J H J */
    for (int i = 0; i < in; i++)
        diag[i] = H[(size_t)i * in + i];
    double damp = s->damp;
    for (int attempt = 0; attempt < 8; attempt++, damp = damp > 0 ? damp * 10 : 0.01) {
        for (int i = 0; attempt > 0 && i < in; i++) { /* the last attempt's factor out again */
            for (int k = 0; k < i; k++)
                H[(size_t)i * in + k] = H[(size_t)k * in + i];
            H[(size_t)i * in + i] = diag[i];
        }
        float lambda = (float)(damp * mean);
        for (int i = 0; i < in; i++)
            H[(size_t)i * in + i] += lambda;
        int info = cholesky_lower(H, in);
        if (info == 0 && invert) {
            int threads = openblas_get_num_threads();
            openblas_set_num_threads(1); /* threaded, it changes its blocking with the thread count */
            strtri_("U", "N", &in, H, &in, &info, 1, 1);
            openblas_set_num_threads(threads);
        }
        if (info == 0) {
            reverse(H, nn); /* U = J L^-1 J, or V = J L J */
            for (int i = 0; i < in; i++) {
                memset(H + (size_t)i * in, 0, (size_t)i * sizeof *H);
                diag[i] = H[(size_t)i * in + i];
            }
            for (int i = 0; !invert && i < in; i++) { /* V' */
                float *v = H + (size_t)i * in;
                for (int k = i + 1; k < in; k++)
                    v[k] /= diag[k];
            }
            r->damp = damp;
            r->lambda = lambda;
            r->retries = attempt;
            free(diag);
            return QM_OK;
        }
    }
    free(diag);
    return qm_diag_fail(d, QM_EINVAL, "Hessian (%d x %d) is not positive definite even with damping %g "
                        "of its mean diagonal", in, in, damp / 10);
}

/* A (n, n) = P A P^T in place: A[a][b] becomes A[perm[a]][perm[b]] (the
 * same values a permuted copy would hold), with one row of scratch. */
static qm_status permute_sym(float *A, int n, const int *perm, qm_diag *d)
{
    float *row = malloc((size_t)n * sizeof *row);
    uint8_t *seen = calloc((size_t)n, 1);
    if (!row || !seen) {
        free(row);
        free(seen);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (int a = 0; a < n; a++) { /* columns, row by row */
        float *x = A + (size_t)a * n;
        for (int b = 0; b < n; b++)
            row[b] = x[perm[b]];
        memcpy(x, row, (size_t)n * sizeof *x);
    }
    for (int a = 0; a < n; a++) { /* rows, cycle by cycle: row a takes row perm[a] */
        if (seen[a])
            continue;
        memcpy(row, A + (size_t)a * n, (size_t)n * sizeof *row);
        int c = a;
        while (!seen[c]) {
            seen[c] = 1;
            int nx = perm[c];
            if (nx == a)
                memcpy(A + (size_t)c * n, row, (size_t)n * sizeof *row);
            else
                memcpy(A + (size_t)c * n, A + (size_t)nx * n, (size_t)n * sizeof *row);
            c = nx;
        }
    }
    free(row);
    free(seen);
    return QM_OK;
}

static qm_status setup(const float *W, int out, int in, float *H, int invert, const qm_qspec *s,
                       qm_qresult *r, job *j, qm_diag *d)
{
    memset(r, 0, sizeof *r);
    memset(j, 0, sizeof *j);
    if (s->bits < 2 || s->bits > 8 || s->group < 0 || (s->group && in % s->group))
        return qm_diag_fail(d, QM_EINVAL, "bits %d / group %d do not fit a linear with %d input columns",
                            s->bits, s->group, in);
    if (s->scale_bits && (s->scale_bits < 2 || s->scale_bits > 8 || s->group <= 0 || s->super <= 0 ||
                          in % (s->group * s->super)))
        return qm_diag_fail(d, QM_EINVAL, "a two-level grid of %d-bit scales over %d groups of %d needs rows of a "
                            "multiple of %d values, not %d", s->scale_bits, s->super, s->group, s->group * s->super,
                            in);
    if (s->scale_bits && s->act_order && !s->static_groups) /* act-order would scatter a group's columns */
        return qm_diag_fail(d, QM_EINVAL, "a two-level grid takes act-order only with static groups");
    j->s = s;
    j->W = W;
    j->invert = invert;
    j->out = out;
    j->in = in;
    j->gs = s->group ? s->group : in;
    j->unit = j->gs * (s->scale_bits ? s->super : 1);
    j->maxq = (1 << s->bits) - 1;
    r->out = out;
    r->in = in;
    r->groups = in / j->gs;
    size_t n = (size_t)out * in;
    j->Wt = malloc(n * sizeof *j->Wt);
    j->Ct = malloc(n);
    j->perm = malloc((size_t)in * sizeof *j->perm);
    j->mn = malloc((size_t)out * sizeof *j->mn);
    j->mx = malloc((size_t)out * sizeof *j->mx);
    r->deq = malloc(n * sizeof *r->deq);
    r->codes = malloc(n);
    r->scale = malloc((size_t)r->groups * out * sizeof *r->scale);
    r->zero = malloc((size_t)r->groups * out * sizeof *r->zero);
    r->g_idx = malloc((size_t)in * sizeof *r->g_idx);
    int two = s->scale_bits > 0, asym2 = two && !s->sym, fmin = !s->sym && (two || s->free_min);
    size_t G = (size_t)r->groups * out, SG = two ? G / (size_t)s->super : 0;
    if (two) {
        r->lscale = malloc(G);
        r->sd = malloc(SG * sizeof *r->sd);
    }
    if (fmin)
        r->min = malloc(G * sizeof *r->min);
    if (asym2) {
        r->lmin = malloc(G);
        r->smin = malloc(SG * sizeof *r->smin);
    }
    j->dead = calloc((size_t)in, 1);
    if (two && !s->static_groups)
        j->x = malloc((size_t)(j->gs + s->super) * sizeof *j->x);
    keyed *diag = malloc((size_t)in * sizeof *diag);
    qm_status st = QM_OK;
    if (!j->Wt || !j->Ct || !j->perm || !j->mn || !j->mx || !r->deq || !r->codes || !r->scale ||
        !r->zero || !r->g_idx || !diag || !j->dead || (two && !s->static_groups && !j->x) ||
        (two && (!r->lscale || !r->sd)) ||
        (fmin && !r->min) || (asym2 && (!r->lmin || !r->smin)))
        st = qm_diag_fail(d, QM_ENOMEM, "out of memory for a %d x %d linear", out, in);
    size_t bad = H && st == QM_OK ? qm_first_nonfinite(H, (size_t)in * in) : 0;
    if (st == QM_OK && H && bad < (size_t)in * in)
        st = qm_diag_fail(d, QM_EINVAL, "the Hessian (%d x %d) is %g at [%zu, %zu]; its inputs overflowed", in, in,
                          H[bad], bad / in, bad % in);
    for (int i = 0; st == QM_OK && i < in; i++) {
        diag[i] = (keyed){H ? H[(size_t)i * in + i] : 1, i};
        if (diag[i].key == 0) { /* dead input: always zero, so its weights cannot matter */
            H[(size_t)i * in + i] = 1;
            j->dead[i] = 1;
            r->dead++;
        }
    }
    if (st == QM_OK && H && s->act_order)
        qsort(diag, (size_t)in, sizeof *diag, by_desc_key);
    for (int i = 0; st == QM_OK && i < in; i++)
        j->perm[i] = diag[i].idx;
    if (st == QM_OK && s->fit_scale && ((s->sym && s->signed_max) || s->scale_bits || (!s->sym && s->free_min))) {
        if (!(j->imp = malloc((size_t)in * sizeof *j->imp)))
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory for a %d x %d linear", out, in);
        for (int i = 0; st == QM_OK && i < in; i++)
            j->imp[i] = diag[i].key;
    }
    if (st == QM_OK) {
        gather_t(W, out, in, j->perm, in, j->Wt);
        for (int i = 0; i < in; i++)
            if (diag[i].key == 0)
                memset(j->Wt + (size_t)i * out, 0, (size_t)out * sizeof *j->Wt);
    }
    if (st == QM_OK && H && s->act_order) /* H in processing order */
        st = permute_sym(H, in, j->perm, d);
    if (st == QM_OK && H && (st = factor(H, in, invert, s, r, d)) == QM_OK)
        j->F = H;
    free(diag);
    if (st != QM_OK) {
        job_free(j);
        qm_qresult_free(r);
    }
    return st;
}

/* ---- the column loop ----------------------------------------------------------------------- */

/* Grids fixed before any column is quantized: per channel (one group over
 * all columns) or static groups (by original column order). */
static qm_status fixed_groups(job *j, qm_qresult *r, qm_diag *d)
{
    int out = j->out, in = j->in, gs = j->gs;
    if (!j->s->group) {
        qm_grid_params(j->Wt, out, 0, out, NULL, 0, in, j->imp, j->s, j->mn, j->mx, r->scale, r->zero, r->min);
        return QM_OK;
    }
    int two = j->s->scale_bits > 0;
    int *inv = malloc((size_t)in * sizeof *inv);                     /* (in) column -> processing position; owned */
    float *imp = j->imp ? malloc((size_t)in * sizeof *imp) : NULL;   /* (in) importances in column order; owned */
    float *x = two ? malloc((size_t)(gs + j->s->super) * sizeof *x) : NULL; /* qm_grid_super()'s scratch; owned */
    if (!inv || (j->imp && !imp) || (two && !x)) {
        free(inv);
        free(imp);
        free(x);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (int i = 0; i < in; i++)
        inv[j->perm[i]] = i;
    for (int c = 0; imp && c < in; c++)
        imp[c] = j->imp[inv[c]];
    int sg = two ? gs * j->s->super : 0; /* columns per super-group */
    for (int b = 0; two && b < in / sg; b++) /* static groups: column order from the original weights */
        qm_grid_super(j->Wt, out, 0, out, inv + (size_t)b * sg, 0, imp ? imp + (size_t)b * sg : NULL, j->s, r, b, x,
                    x + gs);
    for (int g = 0; !two && g < r->groups; g++)
        qm_grid_params(j->Wt, out, 0, out, inv + (size_t)g * gs, 0, gs, imp ? imp + (size_t)g * gs : NULL, j->s,
                    j->mn, j->mx, r->scale + (size_t)g * out, r->zero + (size_t)g * out,
                    r->min ? r->min + (size_t)g * out : NULL);
    free(inv);
    free(imp);
    free(x);
    return QM_OK;
}

static int fixed(const qm_qspec *s) { return !s->group || s->static_groups; }

/* y -= a x over n floats.  A plain loop, not BLAS saxpy: a saxpy per
 * column would dispatch OpenBLAS's threads hundreds of thousands of times
 * per linear, which costs more than the arithmetic.  Written 8 at a time
 * because -O2 (GCC 12's very-cheap cost model) does not vectorise a loop
 * of unknown length, while it does vectorise the straight-line body. */
static void axpy_sub(int n, float a, const float *restrict x, float *restrict y)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        y[i] -= a * x[i];
        y[i + 1] -= a * x[i + 1];
        y[i + 2] -= a * x[i + 2];
        y[i + 3] -= a * x[i + 3];
        y[i + 4] -= a * x[i + 4];
        y[i + 5] -= a * x[i + 5];
        y[i + 6] -= a * x[i + 6];
        y[i + 7] -= a * x[i + 7];
    }
    for (; i < n; i++)
        y[i] -= a * x[i];
}

/* qm_gptq()'s dynamic group starting at processing position i, rows
 * [o0, o1): the values its grid is taken from, which are those the paper's
 * algorithm holds when column i is reached (the best values of the later
 * columns given the earlier ones quantized), into j->grp.  With F the
 * columns before i quantized (D_F = W_F - Q_F) and S the rest, those are
 * x_S = W_S + D_F H_FS H_SS^-1; with H = V V^T (V upper), H_FS = V_FS
 * V_SS^T and H_SS = V_SS V_SS^T, so x_S = W_S + D_F V_FS V_SS^-1, and
 * V_SS^-1 being upper triangular, the group G (the first gs columns of S)
 * needs only V_GG: x_G - W_G = D_F V_FG V_GG^-1 = D_F V'_FG V'_GG^-1.
 * Wt holds W_G + D_F V'_FG (qm_gptq()'s updates so far), so each row's
 * t = x_G - W_G solves t V'_GG = Wt_G - W_G (V'_GG unit upper: forward
 * substitution).  `cols` columns from i: a group, or a two-level grid's
 * super-group; `orig` holds their original values (cols, out). */
static const float *group_values(job *j, int i, int cols, int o0, int o1, const float *orig)
{
    int out = j->out, n = o1 - o0;
    for (int k = 0; k < cols; k++) {
        float *t = j->grp + (size_t)k * out + o0;
        const float *w = j->Wt + (size_t)(i + k) * out + o0, *w0 = orig + (size_t)k * out + o0;
        for (int o = 0; o < n; o++)
            t[o] = w[o] - w0[o];
        for (int m = 0; m < k; m++)
            axpy_sub(n, j->F[(size_t)(i + m) * j->in + i + k], j->grp + (size_t)m * out + o0, t);
    }
    for (int k = 0; k < cols; k++) {
        float *t = j->grp + (size_t)k * out + o0;
        const float *w0 = orig + (size_t)k * out + o0;
        for (int o = 0; o < n; o++)
            t[o] += w0[o];
    }
    return j->grp;
}

/* Quantize processing position i, output rows [o0, o1), with its group's
 * grid: codes and g_idx; fixes the grid of those rows first when a dynamic
 * group starts here.  With a factor, GPTQ's scaled error (w - q) / U_ii =
 * (w - q) V_ii goes into the loss, and dev[o] becomes what the column's
 * updates of the later ones are made of: that scaled error itself for
 * qm_gptq_ref(), the original weight less q (dev holds the original
 * weights on entry) for qm_gptq().  Every step of GPTQ is independent
 * across output rows, so a column can be done in pieces of rows. */
static void quantize_rows(job *j, qm_qresult *r, int i, int o0, int o1, float *dev)
{
    int out = j->out, c = j->perm[i];
    int g = fixed(j->s) ? (j->s->group ? c / j->gs : 0) : i / j->gs;
    if (!fixed(j->s) && j->s->scale_bits && i % j->gs == 0) { /* a dynamic two-level grid (gptq.h) */
        int v = j->grp != NULL, n = i % j->unit ? j->gs : j->unit; /* v: qm_gptq() */
        const float *V = v ? group_values(j, i, n, o0, o1, dev) : j->Wt, *imp = j->imp ? j->imp + i : NULL;
        if (n == j->unit) { /* a super-group starts: its fp16 scales, from all its values as they are now */
            qm_grid_super(V, out, o0, o1, NULL, v ? 0 : i, imp, j->s, r, i / j->unit, j->x, j->x + j->gs);
        } else { /* a later group: its own grid again from its values now, under those fp16 scales */
            qm_grid_group(V, out, o0, o1, NULL, v ? 0 : i, imp, j->s, r, i / j->gs, j->x);
            qm_grid_group_codes(j->s, r, out, o0, o1, i / j->gs);
        }
    } else if (!fixed(j->s) && !j->s->scale_bits && i % j->gs == 0) {
        int v = j->grp != NULL; /* qm_gptq() */
        qm_grid_params(v ? group_values(j, i, j->gs, o0, o1, dev) : j->Wt, out, o0, o1, NULL, v ? 0 : i, j->gs,
                    j->imp ? j->imp + i : NULL, j->s, j->mn, j->mx, r->scale + (size_t)g * out, r->zero + (size_t)g * out,
                    r->min ? r->min + (size_t)g * out : NULL);
    }
    const float *sc = r->scale + (size_t)g * out;
    const int32_t *z = r->zero + (size_t)g * out;
    const float *w = j->Wt + (size_t)i * out;
    uint8_t *ct = j->Ct + (size_t)i * out;
    float f = j->F ? j->F[(size_t)i * j->in + i] : 1; /* U_ii or V_ii */
    const float *mn = r->min ? r->min + (size_t)g * out : NULL;
    for (int o = o0; o < o1; o++) {
        int code;
        float q = mn ? qm_grid_quant_min(w[o], sc[o], mn[o], j->maxq, &code) : qm_grid_quant1(w[o], sc[o], z[o], j->maxq, &code);
        ct[o] = (uint8_t)code;
        if (!dev)
            continue;
        float e = j->invert ? (w[o] - q) / f : (w[o] - q) * f;
        j->loss += (double)e * e;
        dev[o] = j->invert ? e : dev[o] - q;
    }
    r->g_idx[c] = g;
}

/* Results back in input-column order; fails (and frees r) when a
 * dequantized weight is not finite. */
static qm_status finish(job *j, qm_qresult *r, qm_diag *d)
{
    scatter_t_u8(j->Ct, j->out, j->in, j->perm, r->codes);
    dequantize(r);
    if (j->F) { /* GPTQ's loss is against H + lambda I: take lambda ||D||^2 off (live columns) */
        double dd = 0;
        for (int o = 0; o < r->out; o++) {
            const float *w = j->W + (size_t)o * r->in, *q = r->deq + (size_t)o * r->in;
            for (int i = 0; i < r->in; i++)
                if (!j->dead[i])
                    dd += ((double)w[i] - q[i]) * ((double)w[i] - q[i]);
        }
        r->loss = j->loss - r->lambda * dd;
    }
    job_free(j);
    size_t n = (size_t)r->out * r->in, bad = qm_first_nonfinite(r->deq, n);
    if (bad == n)
        return QM_OK;
    qm_status st = qm_diag_fail(d, QM_EINVAL, "the quantized weight is %g at [%zu, %zu] (scale %g)", r->deq[bad],
                                bad / r->in, bad % r->in, r->scale[(size_t)r->g_idx[bad % r->in] * r->out + bad / r->in]);
    qm_qresult_free(r);
    return st;
}

qm_status qm_gptq_ref(const float *W, int out, int in, float *H, const qm_qspec *s, qm_qresult *r,
                      qm_diag *d)
{
    job j;
    qm_status st = setup(W, out, in, H, 1, s, r, &j, d);
    float *err = st == QM_OK ? malloc((size_t)out * sizeof *err) : NULL;
    if (st == QM_OK && (!err || (fixed(s) && fixed_groups(&j, r, d) != QM_OK))) {
        free(err);
        job_free(&j);
        qm_qresult_free(r);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    if (st != QM_OK)
        return st;
    for (int i = 0; i < in; i++) {
        quantize_rows(&j, r, i, 0, out, err);
        for (int k = i + 1; k < in; k++) /* every later column, at once */
            axpy_sub(out, j.F[(size_t)i * in + k], err, j.Wt + (size_t)k * out);
    }
    free(err);
    return finish(&j, r, d);
}

/* GPTQ on the Cholesky factor of H itself, no inverse.  With U the
 * paper's factor (U^T U = H^-1; gptq.h's steps) and e_i = (w_i - q_i) / U_ii
 * over the value column i holds when it is reached, the recurrence gives
 * D = W - Q = E U for the original W (w_j - q_j = sum_{i <= j} e_i U_ij),
 * so E = D V with V = U^-1 (upper, H = V V^T), and the value column j is
 * quantized from, w_j - sum_{i < j} e_i U_ij = q_j + e_j U_jj, is
 * w_j + sum_{i < j} d_i V_ij / V_jj (e_j = sum_{i <= j} d_i V_ij, U_jj =
 * 1 / V_jj): the original weight plus the earlier columns' deviations
 * d = w - q through V'_ij = V_ij / V_jj.  Blocks then update the later
 * columns by Wt += V'^T D instead of Wt -= U^T E, the same FLOPs, while the
 * factor is one Cholesky (in^3 / 3) instead of a Cholesky and a triangular
 * inverse (2 in^3 / 3): a third of GPTQ's work on a 4096 x 14336 `down`.
 * Each column reaches the same value as in qm_gptq_ref() up to rounding;
 * the values of columns not reached yet differ, and only dynamic groups
 * read those (group_values()). */
qm_status qm_gptq(const float *W, int out, int in, float *H, const qm_qspec *s, qm_qresult *r,
                  qm_diag *d)
{
    job j;
    qm_status st = setup(W, out, in, H, 0, s, r, &j, d);
    if (st != QM_OK)
        return st;
    /* Blocks hold whole groups (super-groups of a two-level grid), so a group's grid sees all its updates. */
    int B = !s->group || QM_GPTQ_BLOCK % j.unit == 0 ? QM_GPTQ_BLOCK : j.unit;
    float *D = malloc((size_t)B * out * sizeof *D); /* (B, out) the block's W - Q; owned */
    if (!fixed(s))
        j.grp = malloc((size_t)j.unit * out * sizeof *j.grp);
    if (!D || (!fixed(s) && !j.grp) || (fixed(s) && fixed_groups(&j, r, d) != QM_OK)) {
        free(D);
        job_free(&j);
        qm_qresult_free(r);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    for (int i1 = 0; i1 < in; i1 += B) {
        int i2 = i1 + B < in ? i1 + B : in;
        gather_t(W, out, in, j.perm + i1, i2 - i1, D); /* the block's original weights */
        for (int i = i1; i < i2; i++)
            if (j.dead[j.perm[i]])
                memset(D + (size_t)(i - i1) * out, 0, (size_t)out * sizeof *D);
        /* The block's own updates, QM_GPTQ_ROWS output rows at a time: the
         * block's columns and deviations for those rows stay in cache, where
         * a whole-column pass streams the block (B x out floats) from memory
         * once per column.  The same operations in the same order. */
        for (int o0 = 0; o0 < out; o0 += QM_GPTQ_ROWS) {
            int o1 = o0 + QM_GPTQ_ROWS < out ? o0 + QM_GPTQ_ROWS : out;
            for (int i = i1; i < i2; i++) {
                float *dv = D + (size_t)(i - i1) * out;
                quantize_rows(&j, r, i, o0, o1, dv);
                for (int k = i + 1; k < i2; k++) /* the rest of the block now (subtracting -V'_ik d) */
                    axpy_sub(o1 - o0, -j.F[(size_t)i * in + k], dv + o0, j.Wt + (size_t)k * out + o0);
            }
        }
        /* later blocks all at once: Wt[i2:] += V'[i1:i2, i2:]^T D */
        if (i2 < in) {
            double t0 = qm_clock();
            qm_sgemm_fixed(1, 0, in - i2, out, i2 - i1, 1.0f, j.F + (size_t)i1 * in + i2, in, D, out, 1.0f,
                           j.Wt + (size_t)i2 * out, out);
            r->update_seconds += qm_clock() - t0;
            r->update_flops += 2.0 * (in - i2) * out * (double)(i2 - i1);
        }
    }
    free(D);
    return finish(&j, r, d);
}

qm_status qm_rtn(const float *W, int out, int in, const qm_qspec *s, qm_qresult *r, qm_diag *d)
{
    job j;
    qm_qspec plain = *s;
    plain.act_order = 0; /* no Hessian, no order */
    qm_status st = setup(W, out, in, NULL, 0, &plain, r, &j, d);
    if (st != QM_OK)
        return st;
    j.s = s;
    if (fixed(s) && fixed_groups(&j, r, d) != QM_OK) {
        job_free(&j);
        qm_qresult_free(r);
        return QM_ENOMEM;
    }
    for (int i = 0; i < in; i++)
        quantize_rows(&j, r, i, 0, out, NULL);
    return finish(&j, r, d);
}

/* Rows of W (or X) per product in the energies below: scratch of
 * ROWS x in floats, and the sums in a fixed order. */
enum { ENERGY_ROWS = 128 };

double qm_output_energy(const float *W, int out, int in, const float *H)
{
    float *M = malloc((size_t)ENERGY_ROWS * in * sizeof *M);
    if (!M)
        return NAN;
    double e = 0;
    for (int o0 = 0; o0 < out; o0 += ENERGY_ROWS) {
        int m = out - o0 < ENERGY_ROWS ? out - o0 : ENERGY_ROWS;
        const float *w = W + (size_t)o0 * in;
        qm_sgemm_fixed(0, 0, m, in, in, 1.0f, w, in, H, in, 0.0f, M, in);
        for (size_t i = 0; i < (size_t)m * in; i++)
            e += (double)M[i] * w[i];
    }
    free(M);
    return e;
}

double qm_output_energy_x(const float *W, int out, int in, const float *X, int n)
{
    float *Y = malloc((size_t)ENERGY_ROWS * out * sizeof *Y);
    if (!Y)
        return NAN;
    double e = 0;
    for (int t0 = 0; t0 < n; t0 += ENERGY_ROWS) {
        int m = n - t0 < ENERGY_ROWS ? n - t0 : ENERGY_ROWS;
        qm_sgemm_fixed(0, 1, m, out, in, 1.0f, X + (size_t)t0 * in, in, W, in, 0.0f, Y, out);
        for (size_t i = 0; i < (size_t)m * out; i++)
            e += (double)Y[i] * Y[i];
    }
    free(Y);
    return e;
}

double qm_relative_error(const float *W, const float *Q, int out, int in, const float *H)
{
    size_t n = (size_t)out * in;
    if (n == 0)
        return 0;
    float *D = malloc(n * sizeof *D), *M = malloc(n * sizeof *M);
    if (!D || !M) {
        free(D);
        free(M);
        return NAN;
    }
    for (size_t i = 0; i < n; i++)
        D[i] = W[i] - Q[i];
    double num = 0, den = 0;
    qm_sgemm_fixed(0, 0, out, in, in, 1.0f, D, in, H, in, 0.0f, M, in);
    for (size_t i = 0; i < n; i++)
        num += (double)M[i] * D[i];
    qm_sgemm_fixed(0, 0, out, in, in, 1.0f, W, in, H, in, 0.0f, M, in);
    for (size_t i = 0; i < n; i++)
        den += (double)M[i] * W[i];
    free(D);
    free(M);
    return den > 0 ? num / den : 0;
}
