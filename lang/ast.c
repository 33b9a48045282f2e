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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lang/internal.h"

enum { MAX_POLICY_BYTES = 16 * 1024 * 1024 }; /* a policy is a page of text; this is ample */

struct qm_policy_arena {
    qm_arena mem;
    qm_policy **child; /* (nchild) adopted policies, freed with the arena */
    size_t nchild, capchild;
};

qm_policy_arena *lang_arena_new(void)
{
    return calloc(1, sizeof(qm_policy_arena));
}

void lang_arena_free(qm_policy_arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nchild; i++)
        qm_policy_free(a->child[i]);
    free(a->child);
    qm_arena_free(&a->mem);
    free(a);
}

void *lang_alloc(qm_policy_arena *a, size_t size)
{
    return qm_arena_alloc(&a->mem, size);
}

int lang_source_rename(qm_policy *p, const char *name)
{
    char *copy = lang_strndup(p->arena, name, strlen(name));
    if (!copy)
        return -1;
    ((qm_source *)p->src)->name = copy; /* the source is this arena's; const only to users */
    return 0;
}

char *lang_strndup(qm_policy_arena *a, const char *s, size_t n)
{
    return qm_arena_strndup(&a->mem, s, n);
}

int lang_arena_adopt(qm_policy_arena *a, qm_policy *child)
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

lang_vec *lang_vec_new(qm_policy_arena *a, size_t size)
{
    lang_vec *v = lang_alloc(a, sizeof *v);
    if (v)
        v->size = size;
    return v;
}

void *lang_vec_push(qm_policy_arena *a, lang_vec *vec, const void *elem)
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

/* ---- entry points ------------------------------------------------------------- */

qm_status qm_policy_parse(const char *path, const char *text, size_t len, qm_policy **out,
                          qm_diag *d)
{
    *out = NULL;
    if (len > MAX_POLICY_BYTES)
        return qm_diag_fail_at(d, QM_EINVAL, &(qm_diag_loc){.file = path},
                               "%zu bytes is too large for a policy (at most %d)", len, MAX_POLICY_BYTES);
    qm_policy_arena *a = lang_arena_new();
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
        return lang_oom(d, path);
    }
    if (len)
        memcpy(copy, text, len);
    copy[len] = '\0';
    const char *slash = strrchr(name, '/');
    *src = (qm_source){.path = name, .name = slash && slash[1] ? slash + 1 : name, .text = copy, .len = len};

    int rc = lang_scan_parse(&ps);
    if (ps.oom) {
        lang_arena_free(a);
        return lang_oom(d, path);
    }
    if (rc != 0 || ps.errors) {
        if (!ps.errors) /* cannot happen: every failed parse reports why */
            qm_diag_fail_at(d, QM_EFORMAT, &(qm_diag_loc){.file = path}, "cannot parse");
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
    struct stat sb;
    const char *why;
    int fd = qm_open_regular(path, &sb, &why);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return qm_diag_fail_at(d, e == ENOENT ? QM_ENOTFOUND : QM_EIO, &(qm_diag_loc){.file = path},
                               "cannot open: %s", fd < 0 ? why : strerror(e));
    }
    qm_buf b = {0};
    char block[8192];
    size_t n;
    while ((n = fread(block, 1, sizeof block, f)) > 0 && b.n <= MAX_POLICY_BYTES)
        qm_buf_add(&b, block, n);
    int bad = ferror(f);
    int err = errno;
    fclose(f);
    qm_status st;
    if (b.oom)
        st = lang_oom(d, path);
    else if (bad)
        st = qm_diag_fail_at(d, QM_EIO, &(qm_diag_loc){.file = path}, "cannot read: %s", strerror(err));
    else if (b.n && memchr(b.s, '\0', b.n))
        /* a binary file, e.g. a checkpoint imported by mistake: what the
         * parser would quote of it is no business of the terminal's */
        st = qm_diag_fail_at(d, QM_EFORMAT, &(qm_diag_loc){.file = path},
                             "not a policy: a binary file (a NUL byte at offset 0x%zx)",
                             (size_t)((char *)memchr(b.s, '\0', b.n) - b.s));
    else
        st = qm_policy_parse(path, b.s ? b.s : "", b.n, out, d);
    free(b.s);
    return st;
}

static int index_uses(const qm_index *ix, qm_scorer s)
{
    return ix && ((ix->kind == QM_INDEX_PICK && ix->u.pick.scorer == s) ||
                  (ix->kind == QM_INDEX_THRESHOLD && ix->u.threshold.scorer == s));
}

int qm_policy_uses_scorer(const qm_policy *p, qm_scorer s)
{
    for (size_t i = 0; p && i < p->n; i++) {
        const qm_stmt *x = p->stmt[i];
        if (x->kind == QM_STMT_BUDGET && x->u.budget.by == s)
            return 1;
        if (x->kind != QM_STMT_RULE)
            continue;
        for (size_t k = 0; k < x->u.rule.nsel; k++) {
            const qm_selector *sel = &x->u.rule.sel[k];
            if (index_uses(sel->scope_index, s))
                return 1;
            for (size_t g = 0; g < sel->nseg; g++)
                if (index_uses(sel->seg[g].index, s))
                    return 1;
        }
    }
    return 0;
}

void qm_policy_free(qm_policy *p)
{
    if (p)
        lang_arena_free(p->arena); /* p itself lives in its arena */
}
