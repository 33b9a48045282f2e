/* tokens.c: reading token streams (bytes, .u32 ids, decimal ids, text
 * through the model's tokenizer). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
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

/* Lay the text's ids out as windows of `window` ids each led by bos, the
 * text running on; at most max ids (all when 0). */
static qm_status with_bos(qm_tokens *t, int bos, size_t window, size_t max, qm_diag *d)
{
    size_t per = window - 1, wins = (t->n + per - 1) / per, n = wins * window - (wins * per - t->n);
    if (max && n > max)
        n = max;
    int *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    for (size_t i = 0, k = 0; i < n; i++)
        ids[i] = i % window == 0 ? bos : t->ids[k++];
    free(t->ids);
    t->ids = ids;
    t->n = n;
    return QM_OK;
}

qm_status qm_tokens_from_tokenizer(const char *dir, const char *path, long long vocab, size_t max, size_t window,
                                   qm_tokens *t, qm_diag *d)
{
    qm_tokenizer *tk;
    char *data = NULL;
    size_t len;
    *t = (qm_tokens){0};
    qm_status st = qm_tokenizer_open(dir, &tk, d);
    if (st != QM_OK)
        return st;
    int bos = qm_tokenizer_bos(tk);
    st = qm_read_file(path, &data, &len, d);
    /* BOS goes in here, per window, so the tokenizer adds none */
    if (st == QM_OK)
        st = qm_tokenizer_encode(tk, data, len, 0, t, d);
    if (st == QM_OK && bos >= 0 && window > 1)
        st = with_bos(t, bos, window, max, d);
    else if (st == QM_OK && bos >= 0) {
        qm_tokens b = {0};
        if (!(b.ids = malloc((t->n + 1) * sizeof *b.ids)))
            st = qm_diag_fail(d, QM_ENOMEM, "out of memory");
        else {
            b.ids[0] = bos;
            if (t->n)
                memcpy(b.ids + 1, t->ids, t->n * sizeof *t->ids);
            b.n = t->n + 1;
            qm_tokens_free(t);
            *t = b;
        }
    }
    if (st == QM_OK && max && t->n > max)
        t->n = max;
    for (size_t i = 0; st == QM_OK && i < t->n; i++)
        if (t->ids[i] >= vocab)
            st = qm_diag_fail(d, QM_EINVAL, "%s: the tokenizer in %s gives id %d, outside the model's vocabulary "
                              "[0, %lld)", path, dir, t->ids[i], vocab);
    free(data);
    qm_tokenizer_free(tk);
    if (st != QM_OK)
        qm_tokens_free(t);
    return st;
}

qm_status qm_tokens_for_model(const qm_model *m, const char *path, size_t max, size_t window, qm_tokens *t,
                              qm_diag *d)
{
    if (m->cfg.byte_tokenizer)
        return qm_tokens_from_text(path, max, t, d);
    if (!ends_with(path, ".u32") && qm_tokenizer_in_dir(m->dir))
        return qm_tokens_from_tokenizer(m->dir, path, m->cfg.vocab, max, window, t, d);
    return qm_tokens_from_ids(path, m->cfg.vocab, max, t, d);
}
