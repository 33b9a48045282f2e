/* strmap.c: open-addressing hash map from borrowed strings to indices.
 *
 * Used wherever names are looked up by the tens of thousands (tensor names
 * of a checkpoint, canonical module names), so it is a word-at-a-time
 * multiplicative hash with linear probing at load factor <= 1/2.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

/* Eight bytes at a time (names run to 50+ bytes with long shared
 * prefixes, so a byte-wise hash was most of a lookup), each word mixed by a
 * multiply and folded with a rotate; the tail is zero-padded. */
uint64_t qm_strmap_hash(const char *s)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    size_t n = strlen(s);
    uint64_t h = n * k, w;
    for (; n >= 8; n -= 8, s += 8) {
        memcpy(&w, s, 8);
        h = ((h ^ w) * k);
        h ^= h >> 29;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * k;
    return h ^ h >> 32;
}

qm_status qm_strmap_init(qm_strmap *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 1)
        cap *= 2;
    m->e = calloc(cap, sizeof *m->e);
    m->cap = cap;
    m->n = 0;
    if (!m->e) {
        qm_strmap_free(m);
        return QM_ENOMEM;
    }
    return QM_OK;
}

void qm_strmap_free(qm_strmap *m)
{
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* The slot of key (hash h): where it is, or the empty slot it would take.
 * A name lookup misses the cache once for the slot; the key's bytes are
 * read only when the stored half of the hash matches. */
static size_t slot(const qm_strmap *m, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);
    while (m->e[i].key && (m->e[i].hash != (uint32_t)h || strcmp(m->e[i].key, key) != 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static qm_status grow(qm_strmap *m)
{
    qm_strmap bigger;
    if (qm_strmap_init(&bigger, m->cap) != QM_OK)
        return QM_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->e[i].key) {
            size_t j = (size_t)m->e[i].hash & (bigger.cap - 1);
            while (bigger.e[j].key)
                j = (j + 1) & (bigger.cap - 1);
            bigger.e[j] = m->e[i];
            bigger.n++;
        }
    qm_strmap_free(m);
    *m = bigger;
    return QM_OK;
}

qm_status qm_strmap_put(qm_strmap *m, const char *key, size_t val, size_t *old)
{
    return qm_strmap_put_hashed(m, key, qm_strmap_hash(key), val, old);
}

qm_status qm_strmap_put_hashed(qm_strmap *m, const char *key, uint64_t h, size_t val, size_t *old)
{
    if (val > UINT32_MAX)
        return QM_EUNSUPPORTED;
    if ((m->n + 1) * 2 > m->cap && grow(m) != QM_OK)
        return QM_ENOMEM;
    size_t i = slot(m, key, h);
    if (m->e[i].key) {
        if (old)
            *old = m->e[i].val;
        return QM_EINVAL;
    }
    m->e[i] = (qm_strmap_entry){key, (uint32_t)h, (uint32_t)val};
    m->n++;
    return QM_OK;
}

int qm_strmap_get(const qm_strmap *m, const char *key, size_t *val)
{
    return qm_strmap_get_hashed(m, key, qm_strmap_hash(key), val);
}

int qm_strmap_get_hashed(const qm_strmap *m, const char *key, uint64_t h, size_t *val)
{
    if (!m->cap)
        return 0;
    size_t i = slot(m, key, h);
    if (!m->e[i].key)
        return 0;
    if (val)
        *val = m->e[i].val;
    return 1;
}

void qm_strmap_prefetch(const qm_strmap *m, uint64_t h)
{
#if defined(__GNUC__)
    if (m->cap)
        __builtin_prefetch(&m->e[(size_t)h & (m->cap - 1)]);
#else
    (void)m, (void)h;
#endif
}
