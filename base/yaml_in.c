/* yaml_in.c: the strict YAML reader that plans, scores files and bench
 * records are read back through (base.h says what it refuses).
 *
 * libyaml's parser supplies the events; the tree is built here rather than
 * by yaml_parser_load(), so that the limits bite while parsing (a runaway
 * nesting is refused at the level past the limit, not after libyaml's
 * stacks have grown with it), a repeated key is reported where it repeats,
 * and a 37k-tensor plan's ~800k nodes are carved from one arena instead of
 * a malloc for each node, value and tag.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "base/base.h"

typedef struct open_node {
    qm_ynode *node;
    size_t first; /* where its children start in loader.kids */
} open_node;

typedef struct loader {
    FILE *f;
    const char *path, *hint;
    qm_arena *a;
    qm_diag *d;
    size_t bytes;          /* read so far */
    const qm_ynode **kids; /* (nkids, cap) the open collections' children so far, each after its parent's; malloc'd */
    size_t nkids, cap;
    open_node open[QM_YIN_MAX_DEPTH];
    int depth;
    const qm_ynode *root;
} loader;

/* libyaml's read callback: fread, counting, and failing past the limit. */
static int read_some(void *data, unsigned char *buf, size_t size, size_t *got)
{
    loader *l = data;
    *got = fread(buf, 1, size, l->f);
    l->bytes += *got;
    return l->bytes <= QM_YIN_MAX_BYTES && !ferror(l->f);
}

/* "PATH:LINE:COL: MESSAGE HINT" as a format error; line and col 1-based. */
static qm_status fail(loader *l, size_t line, size_t col, const char *fmt, ...) QM_PRINTF(4, 5);
static qm_status fail(loader *l, size_t line, size_t col, const char *fmt, ...)
{
    qm_buf msg = {0};
    va_list ap;
    va_start(ap, fmt);
    qm_buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    qm_status st = msg.oom ? qm_diag_fail(l->d, QM_ENOMEM, "out of memory")
                           : qm_diag_fail(l->d, QM_EFORMAT, "%s:%zu:%zu: %s%s", l->path, line, col, msg.s, l->hint);
    free(msg.s);
    return st;
}

static qm_status too_long(loader *l)
{
    return qm_diag_fail(l->d, QM_EFORMAT, "%s: longer than %d MiB, too long for a file qmoe reads%s", l->path,
                        QM_YIN_MAX_BYTES >> 20, l->hint);
}

static qm_status parse_failed(loader *l, const yaml_parser_t *p)
{
    if (l->bytes > QM_YIN_MAX_BYTES)
        return too_long(l);
    if (ferror(l->f))
        return qm_diag_fail(l->d, QM_EIO, "%s: read error", l->path);
    if (p->error == YAML_MEMORY_ERROR)
        return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
    return fail(l, p->problem_mark.line + 1, p->problem_mark.column + 1, "invalid YAML: %s",
                p->problem ? p->problem : "?");
}

static qm_ynode *new_node(loader *l, qm_ykind kind, const yaml_mark_t *m)
{
    qm_ynode *n = qm_arena_alloc(l->a, sizeof *n);
    if (n) {
        n->kind = kind;
        n->line = (unsigned)m->line + 1;
        n->col = (unsigned)m->column + 1;
    }
    return n;
}

/* n is complete: the document's root, or its parent's next child. */
static qm_status add(loader *l, const qm_ynode *n)
{
    if (l->depth == 0) {
        l->root = n;
        return QM_OK;
    }
    if (l->nkids == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        const qm_ynode **k = realloc(l->kids, cap * sizeof *k);
        if (!k)
            return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
        l->kids = k;
        l->cap = cap;
    }
    l->kids[l->nkids++] = n;
    return QM_OK;
}

static qm_status scalar(loader *l, const yaml_event_t *ev)
{
    qm_ynode *n = new_node(l, QM_YSCALAR, &ev->start_mark);
    char *text = n ? qm_arena_strndup(l->a, (const char *)ev->data.scalar.value, ev->data.scalar.length) : NULL;
    if (!text)
        return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
    n->text = text;
    n->n = ev->data.scalar.length;
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag;
    return add(l, n);
}

static qm_status start(loader *l, const yaml_event_t *ev)
{
    if (l->depth == QM_YIN_MAX_DEPTH)
        return fail(l, ev->start_mark.line + 1, ev->start_mark.column + 1, "nested more than %d deep",
                    QM_YIN_MAX_DEPTH);
    qm_ynode *n = new_node(l, ev->type == YAML_MAPPING_START_EVENT ? QM_YMAP : QM_YSEQ, &ev->start_mark);
    if (!n)
        return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
    l->open[l->depth++] = (open_node){n, l->nkids};
    return QM_OK;
}

static qm_status twice(loader *l, const qm_ynode *again, const qm_ynode *first)
{
    return fail(l, again->line, again->col, "key '%s' appears twice (first on line %u)", again->text, first->line);
}

/* Every key of map a scalar, and none twice. */
static qm_status check_keys(loader *l, const qm_ynode *map)
{
    enum { SCAN = 16 }; /* up to this many pairs compare each with each; more go through a hash map */
    for (size_t i = 0; i < map->n; i++)
        if (map->pair[i].key->kind != QM_YSCALAR)
            return fail(l, map->pair[i].key->line, map->pair[i].key->col, "a mapping key must be a scalar");
    if (map->n <= SCAN) {
        for (size_t i = 1; i < map->n; i++)
            for (size_t j = 0; j < i; j++)
                if (strcmp(map->pair[i].key->text, map->pair[j].key->text) == 0)
                    return twice(l, map->pair[i].key, map->pair[j].key);
        return QM_OK;
    }
    qm_strmap seen; /* key -> its pair; the keys are the nodes' */
    qm_status st = qm_strmap_init(&seen, map->n);
    for (size_t i = 0; i < map->n && st == QM_OK; i++) {
        size_t first;
        st = qm_strmap_put(&seen, map->pair[i].key->text, i, &first);
        if (st == QM_EINVAL)
            st = twice(l, map->pair[i].key, map->pair[first].key);
    }
    qm_strmap_free(&seen);
    return st == QM_OK || st == QM_EFORMAT ? st : qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
}

/* The innermost open collection is complete: its children move from kids into the arena. */
static qm_status end(loader *l)
{
    open_node o = l->open[--l->depth];
    qm_ynode *n = o.node;
    size_t count = l->nkids - o.first;
    /* kids is still NULL when no collection so far had a child ("[[]]") */
    const qm_ynode **kids = count ? l->kids + o.first : NULL;
    qm_status st = QM_OK;
    l->nkids = o.first;
    if (n->kind == QM_YSEQ) {
        const qm_ynode **item = count ? qm_arena_alloc(l->a, count * sizeof *item) : NULL;
        if (count && !item)
            return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
        if (count)
            memcpy(item, kids, count * sizeof *item);
        n->n = count;
        n->item = item;
    } else {
        qm_ypair *pair = count ? qm_arena_alloc(l->a, count / 2 * sizeof *pair) : NULL;
        if (count && !pair)
            return qm_diag_fail(l->d, QM_ENOMEM, "out of memory");
        for (size_t i = 0; i < count / 2; i++)
            pair[i] = (qm_ypair){kids[2 * i], kids[2 * i + 1]};
        n->n = count / 2;
        n->pair = pair;
        st = check_keys(l, n);
    }
    return st == QM_OK ? add(l, n) : st;
}

qm_status qm_yin_load_file(FILE *f, const char *path, const char *hint, qm_arena *a, const qm_ynode **root,
                           qm_diag *d)
{
    loader l = {.f = f, .path = path, .hint = hint ? hint : "", .a = a, .d = d};
    yaml_parser_t parser;
    struct stat sb;
    *root = NULL;
    /* a file's size says at once; a pipe's is counted as it is read */
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > QM_YIN_MAX_BYTES)
        return too_long(&l);
    if (!yaml_parser_initialize(&parser))
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    yaml_parser_set_input(&parser, read_some, &l);
    qm_status st = QM_OK;
    int docs = 0;
    for (int done = 0; st == QM_OK && !done;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = parse_failed(&l, &parser);
            break;
        }
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (docs++)
                st = fail(&l, ev.start_mark.line + 1, ev.start_mark.column + 1,
                          "a second YAML document; the file must hold one");
            break;
        case YAML_ALIAS_EVENT:
            st = fail(&l, ev.start_mark.line + 1, ev.start_mark.column + 1,
                      "an alias (*%s): anchors and aliases are not used in qmoe files", ev.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            st = scalar(&l, &ev);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            st = start(&l, &ev);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            st = end(&l);
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default: /* stream start, document end */
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    free(l.kids);
    if (st == QM_OK)
        *root = l.root;
    return st;
}

qm_status qm_yin_load(const char *path, const char *hint, qm_arena *a, const qm_ynode **root, qm_diag *d)
{
    *root = NULL;
    FILE *f;
    qm_status st = qm_fopen_input(path, &f, d);
    if (st != QM_OK)
        return st;
    st = qm_yin_load_file(f, path, hint, a, root, d);
    fclose(f);
    return st;
}

const qm_ynode *qm_yin_get(const qm_ynode *map, const char *key)
{
    if (!map || map->kind != QM_YMAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->pair[i].key->text, key) == 0)
            return map->pair[i].val;
    return NULL;
}

const char *qm_yin_str(const qm_ynode *n)
{
    return n && n->kind == QM_YSCALAR ? n->text : NULL;
}

static int is_plain(const qm_ynode *n)
{
    return n && n->kind == QM_YSCALAR && n->plain && n->n > 0;
}

int qm_yin_int(const qm_ynode *n, long long *v)
{
    if (!is_plain(n))
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(n->text, &end, 10);
    if (*end || errno)
        return 0;
    *v = x;
    return 1;
}

int qm_yin_real(const qm_ynode *n, double *v)
{
    if (!is_plain(n))
        return 0;
    const char *s = n->text, *u = s + (*s == '-' || *s == '+');
    if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0) {
        *v = NAN;
        return 1;
    }
    if (strcmp(u, ".inf") == 0 || strcmp(u, ".Inf") == 0 || strcmp(u, ".INF") == 0) {
        *v = *s == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end || (errno == ERANGE && isinf(x)))
        return 0;
    *v = x;
    return 1;
}

int qm_yin_bool(const qm_ynode *n, int *v)
{
    if (!is_plain(n) || (strcmp(n->text, "true") != 0 && strcmp(n->text, "false") != 0))
        return 0;
    *v = n->text[0] == 't';
    return 1;
}
