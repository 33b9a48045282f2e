/* json.c: jansson with qmoe diagnostics. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/json.h"

qm_status qm_json_load(const char *path, json_t **out, qm_diag *d)
{
    /* Read whole, then parse from memory: jansson's file reader goes
     * through getc. */
    *out = NULL;
    char *buf;
    size_t len;
    qm_status st = qm_read_file(path, &buf, &len, d);
    if (st != QM_OK)
        return st;
    json_error_t err;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    free(buf);
    if (*out)
        return QM_OK;
    /* jansson quotes the text "near" the error: of a file that is not JSON
     * at all (a link to some other file) that would be its first bytes.
     * Only a duplicate key, in a file that is JSON up to there, is named. */
    char *near = strstr(err.text, " near '");
    if (near && strncmp(err.text, "duplicate object key", 20) != 0)
        *near = '\0';
    return qm_diag_fail(d, QM_EFORMAT, "%s:%d:%d: invalid JSON (at byte 0x%x): %s", path, err.line, err.column,
                        (unsigned)err.position, err.text);
}

qm_status qm_json_int(const char *path, json_t *o, const char *key, int required, long long dflt,
                      long long lo, long long hi, long long *v, qm_diag *d)
{
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) {
        if (required)
            return qm_diag_fail(d, QM_EFORMAT, "%s: missing required field '%s'", path, key);
        *v = dflt;
        return QM_OK;
    }
    double r = json_is_real(j) ? json_real_value(j) : 0;
    /* a double outside long long's range has no conversion (undefined behaviour) */
    if (json_is_real(j) && !(r >= -0x1p63 && r < 0x1p63))
        return qm_diag_fail(d, QM_EINVAL, "%s: field '%s' is %g, outside [%lld, %lld]", path, key, r, lo, hi);
    if (json_is_real(j) && r == (double)(long long)r)
        *v = (long long)r; /* 1e4 written as a float is still an integer */
    else if (json_is_integer(j))
        *v = json_integer_value(j);
    else
        return qm_diag_fail(d, QM_EFORMAT, "%s: field '%s' is not an integer", path, key);
    if (*v < lo || *v > hi)
        return qm_diag_fail(d, QM_EINVAL, "%s: field '%s' is %lld, outside [%lld, %lld]", path, key,
                            *v, lo, hi);
    return QM_OK;
}

qm_status qm_json_real(const char *path, json_t *o, const char *key, double dflt, double lo,
                       double hi, double *v, qm_diag *d)
{
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) {
        *v = dflt;
        return QM_OK;
    }
    if (!json_is_number(j))
        return qm_diag_fail(d, QM_EFORMAT, "%s: field '%s' is not a number", path, key);
    *v = json_number_value(j);
    if (!(*v >= lo && *v <= hi))
        return qm_diag_fail(d, QM_EINVAL, "%s: field '%s' is %g, outside [%g, %g]", path, key, *v, lo,
                            hi);
    return QM_OK;
}

qm_status qm_json_bool(const char *path, json_t *o, const char *key, int dflt, int *v, qm_diag *d)
{
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) {
        *v = dflt;
        return QM_OK;
    }
    if (!json_is_boolean(j))
        return qm_diag_fail(d, QM_EFORMAT, "%s: field '%s' is not true or false", path, key);
    *v = json_is_true(j);
    return QM_OK;
}
