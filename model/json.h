/* json.h: reading the JSON files of a model directory.
 *
 * Small files (config.json) go through jansson: a thin layer turns its
 * errors into qmoe diagnostics naming the file and reads typed fields with
 * range checks.  The large ones (safetensors headers, the shard index: tens
 * of thousands of entries at 100B scale) are walked once by qm_js, a
 * strict pull reader (jscan.c) that builds no tree.
 */
#ifndef QM_JSON_H
#define QM_JSON_H

#include <jansson.h>

#include "base/base.h"

/* Parse the file at `path` (duplicate keys rejected).  Caller json_decref()s *out. */
qm_status qm_json_load(const char *path, json_t **out, qm_diag *d);

/* Integer field `key` of object `o` into *v, checked to lie in [lo, hi].
 * Absent or null: *v = dflt, or an error when required. */
qm_status qm_json_int(const char *path, json_t *o, const char *key, int required, long long dflt,
                      long long lo, long long hi, long long *v, qm_diag *d);
qm_status qm_json_real(const char *path, json_t *o, const char *key, double dflt, double lo,
                       double hi, double *v, qm_diag *d);
qm_status qm_json_bool(const char *path, json_t *o, const char *key, int dflt, int *v, qm_diag *d);

/* ---- qm_js: a strict JSON pull reader (jscan.c) ---------------------------
 *
 * Usage: qm_js_init() over the text; then for an object
 *     for (more = qm_js_open(j, '{', '}'); more > 0; more = qm_js_next(j, '}')) {
 *         const char *k = qm_js_key(j);  ... read or qm_js_skip() the value
 *     }
 * and the same with '[' ']' and no key for an array; qm_js_finish() at the
 * end.  Every call returns failure (-1 or NULL) once an error is kept in
 * err / err_at; callers check j->failed after a loop.  Strings are decoded
 * into the caller's buffer `buf`, which must hold len + 1 bytes (decoded
 * strings with their NULs never take more room than the text): the
 * returned pointers stay valid as long as buf. */
enum { QM_JS_MAX_DEPTH = 2048 };

typedef struct qm_js {
    const char *begin, *p, *end;  /* the text, borrowed; p: the next byte */
    char *out;                    /* where the next decoded string goes */
    int depth;
    int failed;
    char err[128];                /* the first error */
    size_t err_at;                /* its byte offset in the text */
} qm_js;

void qm_js_init(qm_js *j, const char *text, size_t len, char *buf);
/* The next non-blank byte (not consumed), -1 at the end or after an error. */
int qm_js_peek(qm_js *j);
/* Consume `open`: 1 when a member or element follows, 0 when `close` came
 * at once (consumed), -1 on error. */
int qm_js_open(qm_js *j, char open, char close);
/* After a member or element: 1 after a ',', 0 after `close`, -1 otherwise. */
int qm_js_next(qm_js *j, char close);
/* A string value, decoded and NUL-terminated; NULL on error. */
const char *qm_js_string(qm_js *j);
/* Where the next decoded string goes, and forgetting the strings decoded
 * since such a mark (their pointers become invalid): for values read only
 * to be checked or counted, which then take no room. */
char *qm_js_mark(const qm_js *j);
void qm_js_release(qm_js *j, char *mark);
/* An object key and its ':'; NULL on error. */
const char *qm_js_key(qm_js *j);
/* A number: 1 and *v when it is an integer in [0, 2^64), 0 for any other
 * valid number, -1 (an error) when the next value is not a number. */
int qm_js_number(qm_js *j, uint64_t *v);
/* Add key to the keys of one object seen so far (`seen` zeroed at the
 * start of the object, freed by the caller): -1 and an error for a repeat. */
int qm_js_dup(qm_js *j, qm_strmap *seen, const char *key);
/* Keep an error of the caller's (the first one wins) at the current byte; -1. */
int qm_js_error(qm_js *j, const char *fmt, ...) QM_PRINTF(2, 3);
/* Validate and pass over the next value; 0, or -1 on error. */
int qm_js_skip(qm_js *j);
/* Only whitespace may remain; 0, or -1 on error. */
int qm_js_finish(qm_js *j);
/* 1-based line and column of the kept error. */
void qm_js_linecol(const qm_js *j, size_t *line, size_t *col);

#endif
