/* arena.c: memory that is freed all at once.
 *
 * A parse makes hundreds of small nodes whose error paths must not leak;
 * a model or plan of a 100B+ checkpoint holds ~100k short names that live
 * and die together, where a malloc and a free for each was a visible part
 * of compiling.  Both are carved from 64 KiB chunks that never move, so
 * pointers stay valid until qm_arena_free().
 */
#include "config.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

enum { CHUNK_BYTES = 64 * 1024 };

struct qm_arena_chunk {
    struct qm_arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

/* size bytes at `al` alignment, not zeroed. */
static void *carve(qm_arena *a, size_t size, size_t al)
{
    if (size > SIZE_MAX / 2)
        return NULL;
    size_t pad = 0;
    qm_arena_chunk *c = a->head;
    if (c)
        pad = (al - c->used % al) % al;
    if (!c || c->cap - c->used < size + pad) {
        size_t cap = size > CHUNK_BYTES ? size : CHUNK_BYTES;
        if (!(c = malloc(sizeof *c + cap)))
            return NULL;
        c->used = 0;
        c->cap = cap;
        pad = 0;
        /* a big block goes behind the current chunk so its free space stays usable */
        if (a->head && size > CHUNK_BYTES) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used + pad;
    c->used += size + pad;
    return p;
}

void *qm_arena_alloc(qm_arena *a, size_t size)
{
    void *p = carve(a, size ? size : 1, alignof(max_align_t));
    if (p)
        memset(p, 0, size);
    return p;
}

char *qm_arena_strndup(qm_arena *a, const char *s, size_t n)
{
    char *c = carve(a, n + 1, 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

char *qm_arena_strdup(qm_arena *a, const char *s)
{
    return qm_arena_strndup(a, s, strlen(s));
}

void qm_arena_free(qm_arena *a)
{
    for (qm_arena_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
}

void qm_arena_adopt(qm_arena *a, qm_arena *from)
{
    qm_arena_chunk *c = from->head;
    if (!c)
        return;
    while (c->next)
        c = c->next;
    c->next = a->head;
    a->head = from->head;
    from->head = NULL;
}
