/* xfer.h: results packed into one byte buffer to cross from one rank of a
 * distributed run to another (dist.h): a routed expert's quantized
 * linears (GPTQ's results with what quant_log.yaml says of them) and its
 * weighted output rows.  The ranks run one build of qmoe on one kind of
 * machine, so numbers travel as their bytes; every read is checked
 * against the buffer's end, so a short or damaged message is an error,
 * never a read past it.
 */
#ifndef QM_XFER_H
#define QM_XFER_H

#include <stddef.h>

#include "base/base.h"
#include "runtime/gptq.h"

/* A buffer being written (put) or read (get).  Writing: b grows (owned,
 * caller frees b); a failed allocation sets oom and later puts do
 * nothing.  Reading: b is borrowed, `at` advances, a read past n sets bad. */
typedef struct qm_xfer {
    char *b;
    size_t n, cap, at;
    int oom, bad;
} qm_xfer;

void qm_xfer_put(qm_xfer *x, const void *p, size_t n);
/* An array: its byte length, then its bytes; p NULL is sent as "none". */
void qm_xfer_put_arr(qm_xfer *x, const void *p, size_t n);
/* GPTQ's result: its scalars and arrays (deq only with `deq`; `super`:
 * the two-level grid's groups per super-group, for the lengths). */
void qm_xfer_put_qresult(qm_xfer *x, const qm_qresult *r, int super, int deq);

/* End writing: the buffer into *buf (caller frees) and *n; when a put ran
 * out of memory, QM_ENOMEM with a diagnostic and nothing handed over (x's
 * buffer freed). */
qm_status qm_xfer_done(qm_xfer *x, void **buf, size_t *n, qm_diag *d);

/* Read n bytes into p; 0 past the end (x->bad set). */
int qm_xfer_get(qm_xfer *x, void *p, size_t n);
/* An array into *p (caller frees; NULL when sent as none), *n bytes (may be NULL). */
int qm_xfer_get_arr(qm_xfer *x, void **p, size_t *n);
/* A result as put; on failure r holds nothing (0). */
int qm_xfer_get_qresult(qm_xfer *x, qm_qresult *r);

#endif
