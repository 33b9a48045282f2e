/* states.h: the hidden states of many token groups between two layers.
 *
 * A model run layer by layer (net.h) carries every group's residual stream
 * (tokens x hidden, float32) from one layer to the next.  For a long text
 * that is the largest thing it holds, so the store keeps the states in
 * memory while they fit a budget, and otherwise in a temporary file in a
 * directory the caller names (the command's output directory), streamed
 * one group at a time: get() reads a group into a buffer, put() writes it
 * back.  The file holds the same float32 bytes, so the results do not
 * depend on where the states were kept; it is unlinked as soon as it is
 * made, so nothing is left behind by a crash.
 */
#ifndef QM_STATES_H
#define QM_STATES_H

#include <stddef.h>

#include "base/base.h"

typedef struct qm_states qm_states;

/* A store for n groups of rows[i] rows of width `width` floats.  In memory
 * when the total is at most `budget` bytes, else spilled to a file in `dir`
 * (NULL or "": $TMPDIR, else /tmp).  Caller frees with qm_states_free(). */
qm_status qm_states_new(const size_t *rows, size_t n, size_t width, size_t budget, const char *dir,
                        qm_states **s, qm_diag *d);
void qm_states_free(qm_states *s);

/* Group i's rows (rows[i], width), valid until the next get() of another
 * group; NULL after a diagnostic when the spill file cannot be read.
 * Changes reach the store by qm_states_put(). */
float *qm_states_get(qm_states *s, size_t i, qm_diag *d);
qm_status qm_states_put(qm_states *s, size_t i, qm_diag *d);

/* Bytes of the states, and whether they went to a file. */
size_t qm_states_bytes(const qm_states *s);
int qm_states_spilled(const qm_states *s);

#endif
