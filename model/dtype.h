/* dtype.h: the element types of safetensors files, as one table.
 *
 * Names are the strings safetensors headers use.  Conversion to float32
 * covers the types weights are stored in (F32, F16, BF16).
 */
#ifndef QM_DTYPE_H
#define QM_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum qm_dtype {
    QM_DT_BOOL,
    QM_DT_U8,
    QM_DT_I8,
    QM_DT_F8_E4M3,
    QM_DT_F8_E5M2,
    QM_DT_I16,
    QM_DT_U16,
    QM_DT_F16,
    QM_DT_BF16,
    QM_DT_I32,
    QM_DT_U32,
    QM_DT_F32,
    QM_DT_I64,
    QM_DT_U64,
    QM_DT_F64,
    QM_DT_COUNT
} qm_dtype;

const char *qm_dtype_name(qm_dtype t);
size_t qm_dtype_size(qm_dtype t);
/* 1 and *t set when `name` is a known dtype string, 0 otherwise. */
int qm_dtype_parse(const char *name, qm_dtype *t);
/* Comma-separated list of all names, for messages. */
const char *qm_dtype_list(void);

float qm_f16_to_f32(uint16_t h);
float qm_bf16_to_f32(uint16_t b);
uint16_t qm_f32_to_bf16(float f); /* round to nearest even */
uint16_t qm_f32_to_f16(float f);  /* round to nearest even */

/* Convert n elements at src (of type t: F32, F16 or BF16) to float; returns
 * 0 on success, 1 when all were converted but one or more is infinite or
 * NaN (qm_first_nonfinite() finds the first), -1 when t is not a floating
 * type qmoe computes with. */
int qm_to_f32(qm_dtype t, const void *src, float *dst, size_t n);
/* Index of the first infinite or NaN element of x (n), or n when none is. */
size_t qm_first_nonfinite(const float *x, size_t n);

#endif
