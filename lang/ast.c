/* ast.c: the parse's arena and the entry points that read, parse and free
 * a policy.
 *
 * Everything one parse makes (source copy, strings, nodes, comments) is
 * carved from one arena of large chunks and freed at once, so the parser's
 * error paths cannot leak.  An expanded policy also owns the policies its
 * imports came from.
 */
#include "config.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "lang/internal.h"

enum {
    CHUNK_BYTES = 64 * 1024,
    MAX_POLICY_BYTES = 16 * 1024 * 1024, /* a policy is a page of text; this is ample */
};

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} chunk;

struct qm_arena {
    chunk *head;
    qm_policy **child; /* (nchild) adopted policies, freed with the arena */
    size_t nchild, capchild;
};

qm_arena *lang_arena_new(void)
{
    return calloc(1, sizeof(qm_arena));
}

void lang_arena_free(qm_arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nchild; i++)
        qm_policy_free(a->child[i]);
    free(a->child);
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

void *lang_alloc(qm_arena *a, size_t size)
{
    const size_t al = alignof(max_align_t);
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + al - 1) / al * al;
    if (!size)
        size = al;
    chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > CHUNK_BYTES ? size : CHUNK_BYTES;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* a big block goes behind the current chunk so its free space stays usable */
        if (a->head && size > CHUNK_BYTES) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *lang_strndup(qm_arena *a, const char *s, size_t n)
{
    char *c = lang_alloc(a, n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = '\0';
    }
    return c;
}

int lang_arena_adopt(qm_arena *a, qm_policy *child)
{
    if (a->nchild == a->capchild) {
        size_t cap = a->capchild ? a->capchild * 2 : 4;
        qm_policy **v = realloc(a->child, cap * sizeof *v);
        if (!v)
            return -1;
        a->child = v;
        a->capchild = cap;
    }
    a->child[a->nchild++] = child;
    return 0;
}

lang_vec *lang_vec_new(qm_arena *a, size_t size)
{
    lang_vec *v = lang_alloc(a, sizeof *v);
    if (v)
        v->size = size;
    return v;
}

void *lang_vec_push(qm_arena *a, lang_vec *vec, const void *elem)
{
    if (vec->n == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 4;
        void *v = lang_alloc(a, cap * vec->size);
        if (!v)
            return NULL;
        if (vec->n)
            memcpy(v, vec->v, vec->n * vec->size);
        vec->v = v;
        vec->cap = cap;
    }
    void *slot = (unsigned char *)vec->v + vec->n++ * vec->size;
    memcpy(slot, elem, vec->size);
    return slot;
}

/* ---- strings ---------------------------------------------------------------- */

void lang_buf_add(lang_buf *b, const char *s, size_t n)
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

void lang_buf_vprintf(lang_buf *b, const char *fmt, va_list ap)
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
        lang_buf_add(b, small, (size_t)len);
        return;
    }
    char *big = malloc((size_t)len + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    vsnprintf(big, (size_t)len + 1, fmt, ap);
    lang_buf_add(b, big, (size_t)len);
    free(big);
}

void lang_buf_printf(lang_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lang_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

/* ---- entry points ------------------------------------------------------------- */

qm_status qm_policy_parse(const char *path, const char *text, size_t len, qm_policy **out,
                          qm_diag *d)
{
    *out = NULL;
    if (len > MAX_POLICY_BYTES)
        return qm_diag_fail(d, QM_EINVAL, "%s: error: %zu bytes is too large for a policy (at most %d)",
                            path, len, MAX_POLICY_BYTES);
    qm_arena *a = lang_arena_new();
    qm_policy *p = a ? lang_alloc(a, sizeof *p) : NULL;
    qm_source *src = p ? lang_alloc(a, sizeof *src) : NULL;
    char *copy = src ? lang_alloc(a, len + 1) : NULL;
    const char *name = copy ? lang_strndup(a, path, strlen(path)) : NULL;
    lang_state ps = {.arena = a, .src = src, .d = d};
    if (name) {
        ps.stmts = lang_vec_new(a, sizeof(qm_stmt *));
        ps.comments = lang_vec_new(a, sizeof(qm_comment));
    }
    if (!ps.stmts || !ps.comments) {
        lang_arena_free(a);
        return qm_diag_fail(d, QM_ENOMEM, "%s: error: out of memory", path);
    }
    if (len)
        memcpy(copy, text, len);
    copy[len] = '\0';
    *src = (qm_source){.path = name, .text = copy, .len = len};

    int rc = lang_scan_parse(&ps);
    if (ps.oom) {
        lang_arena_free(a);
        return qm_diag_fail(d, QM_ENOMEM, "%s: error: out of memory", path);
    }
    if (rc != 0 || ps.errors) {
        if (!ps.errors) /* cannot happen: every failed parse reports why */
            qm_diag_fail(d, QM_EFORMAT, "%s: error: cannot parse", path);
        lang_arena_free(a);
        return QM_EFORMAT;
    }
    p->src = src;
    p->stmt = ps.stmts->v;
    p->n = ps.stmts->n;
    p->comment = ps.comments->v;
    p->ncomment = ps.comments->n;
    p->arena = a;
    *out = p;
    return QM_OK;
}

qm_status qm_policy_parse_file(const char *path, qm_policy **out, qm_diag *d)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qm_diag_fail(d, errno == ENOENT ? QM_ENOTFOUND : QM_EIO, "%s: error: cannot open: %s",
                            path, strerror(errno));
    lang_buf b = {0};
    char block[8192];
    size_t n;
    while ((n = fread(block, 1, sizeof block, f)) > 0 && b.n <= MAX_POLICY_BYTES)
        lang_buf_add(&b, block, n);
    int bad = ferror(f);
    int err = errno;
    fclose(f);
    qm_status st;
    if (b.oom)
        st = qm_diag_fail(d, QM_ENOMEM, "%s: error: out of memory", path);
    else if (bad)
        st = qm_diag_fail(d, QM_EIO, "%s: error: cannot read: %s", path, strerror(err));
    else
        st = qm_policy_parse(path, b.s ? b.s : "", b.n, out, d);
    free(b.s);
    return st;
}

void qm_policy_free(qm_policy *p)
{
    if (p)
        lang_arena_free(p->arena); /* p itself lives in its arena */
}
