/* buf.c: a growable string, for text built piece by piece (messages,
 * formatted policies, plans written directly). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

void qm_buf_add_grow(qm_buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->cap - b->n <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n <= n)
            cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

void qm_buf_vprintf(qm_buf *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list aq;
    va_copy(aq, ap);
    int len = vsnprintf(small, sizeof small, fmt, aq);
    va_end(aq);
    if (len < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)len < sizeof small) {
        qm_buf_add(b, small, (size_t)len);
        return;
    }
    char *big = malloc((size_t)len + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    vsnprintf(big, (size_t)len + 1, fmt, ap);
    qm_buf_add(b, big, (size_t)len);
    free(big);
}

void qm_buf_printf(qm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qm_buf_vprintf(b, fmt, ap);
    va_end(ap);
}
