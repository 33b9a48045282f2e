/* tokens.c: reading token streams (bytes, .u32 ids, decimal ids). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokens.h"

void qm_tokens_free(qm_tokens *t)
{
    free(t->ids);
    t->ids = NULL;
    t->n = 0;
}

/* At most max units of `unit` bytes (all when max is 0). */
static size_t head_bytes(size_t max, size_t unit)
{
    return max && max < (SIZE_MAX - 1) / unit ? max * unit : SIZE_MAX - 1;
}

qm_status qm_tokens_from_text(const char *path, size_t max, qm_tokens *t, qm_diag *d)
{
    char *data;
    size_t len;
    qm_status st = qm_read_file_head(path, head_bytes(max, 1), &data, &len, d);
    if (st != QM_OK)
        return st;
    t->ids = malloc((len ? len : 1) * sizeof *t->ids);
    if (!t->ids) {
        free(data);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < len; i++)
        t->ids[i] = (unsigned char)data[i];
    t->n = len;
    free(data);
    return QM_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

qm_status qm_tokens_from_ids(const char *path, long long vocab, size_t max, qm_tokens *t, qm_diag *d)
{
    char *data;
    size_t len;
    /* .u32 ids have a fixed width, so only what max needs is read; decimal
     * ids are read whole (a regular file: bounded by its size) and cut */
    int u32 = ends_with(path, ".u32");
    qm_status st = qm_read_file_head(path, u32 ? head_bytes(max, 4) : SIZE_MAX - 1, &data, &len, d);
    if (st != QM_OK)
        return st;
    t->n = 0;
    t->ids = malloc((len / (u32 ? 4 : 2) + 1) * sizeof *t->ids);
    if (!t->ids) {
        free(data);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    if (u32) {
        if (len % 4)
            st = qm_diag_fail(d, QM_EFORMAT, "%s: %zu bytes is not a whole number of uint32 ids", path, len);
        for (size_t i = 0; st == QM_OK && i < len / 4; i++) {
            const unsigned char *p = (const unsigned char *)data + 4 * i;
            unsigned long v = p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
            if ((long long)v >= vocab)
                st = qm_diag_fail(d, QM_EINVAL, "%s: token %zu is id %lu, outside the vocabulary [0, %lld)",
                                  path, i, v, vocab);
            t->ids[t->n++] = (int)v;
        }
    } else {
        char *p = data;
        while (st == QM_OK && (!max || t->n < max)) {
            while (isspace((unsigned char)*p))
                p++;
            if (!*p)
                break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || (*end && !isspace((unsigned char)*end)) || errno)
                st = qm_diag_fail(d, QM_EFORMAT, "%s: byte %zu: expected a decimal token id", path,
                                  (size_t)(p - data));
            else if (v < 0 || v >= vocab)
                st = qm_diag_fail(d, QM_EINVAL, "%s: token %zu is id %lld, outside the vocabulary [0, %lld)",
                                  path, t->n, v, vocab);
            else
                t->ids[t->n++] = (int)v;
            p = end;
        }
    }
    free(data);
    if (st != QM_OK)
        qm_tokens_free(t);
    return st;
}

qm_status qm_tokens_for_model(const qm_model *m, const char *path, size_t max, qm_tokens *t, qm_diag *d)
{
    return m->cfg.byte_tokenizer ? qm_tokens_from_text(path, max, t, d)
                                  : qm_tokens_from_ids(path, m->cfg.vocab, max, t, d);
}
