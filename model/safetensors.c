/* safetensors.c: validated reading and atomic writing of safetensors files.
 *
 * The header is read in one pass by the strict pull reader of jscan.c
 * (json.h), which rejects duplicate keys: a parser that silently kept the
 * last of two equal names would let a file alias one tensor as another.
 * Tensor names and metadata are decoded into one block the file owns.
 * Writing builds the header with jansson.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/json.h"
#include "model/safetensors.h"

void qm_st_close(qm_st_file *f)
{
    if (!f)
        return;
    free(f->strings);
    free(f->meta);
    free(f->t);
    qm_strmap_free(&f->by_name);
    qm_unmap_file(f->map, f->map_size);
    free(f->path);
    free(f);
}

static qm_status bad_json(qm_st_file *f, const qm_js *j, qm_diag *d)
{
    return qm_diag_fail(d, QM_EFORMAT, "%s: header is not valid JSON: %s at byte %zu of the header", f->path,
                        j->err, j->err_at);
}

static qm_status parse_metadata(qm_st_file *f, qm_js *j, qm_diag *d)
{
    if (qm_js_peek(j) != '{') {
        if (qm_js_skip(j))
            return bad_json(f, j, d);
        return qm_diag_fail(d, QM_EFORMAT, "%s: __metadata__ is not an object of strings", f->path);
    }
    qm_strmap seen = {0};
    size_t cap = 0;
    qm_status st = QM_OK;
    int more;
    for (more = qm_js_open(j, '{', '}'); more > 0 && st == QM_OK; more = qm_js_next(j, '}')) {
        const char *k = qm_js_key(j);
        if (!k || qm_js_dup(j, &seen, k))
            break;
        if (qm_js_peek(j) != '"') {
            st = qm_js_skip(j) ? bad_json(f, j, d)
                               : qm_diag_fail(d, QM_EFORMAT, "%s: __metadata__ value of '%s' is not a string",
                                              f->path, k);
            break;
        }
        const char *v = qm_js_string(j);
        if (!v)
            break;
        if (f->n_meta == cap) {
            char **m = realloc(f->meta, 2 * (cap = cap ? 2 * cap : 8) * sizeof *m);
            if (!m) {
                st = qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
                break;
            }
            f->meta = m;
        }
        f->meta[2 * f->n_meta] = (char *)k;
        f->meta[2 * f->n_meta + 1] = (char *)v;
        f->n_meta++;
    }
    qm_strmap_free(&seen);
    if (st == QM_OK && j->failed)
        st = bad_json(f, j, d);
    return st;
}

/* A JSON array of non-negative integers, as far as a tensor entry needs it. */
typedef struct uarray {
    int is_array;
    size_t n;
    uint64_t v[QM_MAX_DIMS];
    long first_bad;           /* index of the first element that is not one, -1 none */
} uarray;

static int read_uarray(qm_js *j, uarray *a)
{
    *a = (uarray){.first_bad = -1};
    if (qm_js_peek(j) != '[')
        return qm_js_skip(j);
    a->is_array = 1;
    int more;
    for (more = qm_js_open(j, '[', ']'); more > 0; more = qm_js_next(j, ']')) {
        uint64_t v = 0;
        int ok = qm_js_peek(j) == '-' || (qm_js_peek(j) >= '0' && qm_js_peek(j) <= '9') ? qm_js_number(j, &v)
                                                                                       : (qm_js_skip(j), 0);
        if (j->failed)
            return -1;
        if (!ok && a->first_bad < 0)
            a->first_bad = (long)a->n;
        if (a->n < QM_MAX_DIMS)
            a->v[a->n] = v;
        a->n++;
    }
    return j->failed ? -1 : 0;
}

/* Match the literal s (n bytes) at *p. */
static int lit(const char **p, const char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) < n || memcmp(*p, s, n) != 0)
        return 0;
    *p += n;
    return 1;
}

/* A compact array of at most QM_MAX_DIMS integers below 10^19, JSON's
 * way: no sign, no leading zero. */
static int compact_uints(const char **p, const char *end, uarray *a)
{
    const char *q = *p;
    *a = (uarray){.is_array = 1, .first_bad = -1};
    if (!lit(&q, end, "[", 1))
        return 0;
    if (q < end && *q == ']') {
        *p = q + 1;
        return 1;
    }
    for (;;) {
        if (a->n == QM_MAX_DIMS || q >= end || *q < '0' || *q > '9')
            return 0;
        uint64_t v = 0;
        int digits = 0;
        if (*q == '0')
            q++, digits = 1;
        else
            while (q < end && *q >= '0' && *q <= '9' && digits < 19)
                v = v * 10 + (uint64_t)(*q++ - '0'), digits++;
        if (q < end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E'))
            return 0;
        a->v[a->n++] = v;
        if (q < end && *q == ']') {
            *p = q + 1;
            return 1;
        }
        if (!lit(&q, end, ",", 1))
            return 0;
    }
}

/* The entry exactly as the safetensors library writes it,
 *     {"dtype":"BF16","shape":[4096,4096],"data_offsets":[0,33554432]}
 * read in one pass over the bytes (most of a 100B-scale header is tens of
 * thousands of these).  Anything else (blanks, another key order, other
 * keys, escapes, long numbers) returns 0 with j untouched, for the general
 * reader, which gives the same result on what this accepts. */
static int compact_entry(qm_js *j, char dt[16], uarray *shape, uarray *offs)
{
    const char *q = j->p, *end = j->end;
    if (!lit(&q, end, "{\"dtype\":\"", 10))
        return 0;
    size_t n = 0;
    while (q < end && n < 15 && ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_'))
        dt[n++] = *q++;
    dt[n] = '\0';
    if (!n || !lit(&q, end, "\",\"shape\":", 10) || !compact_uints(&q, end, shape) ||
        !lit(&q, end, ",\"data_offsets\":", 16) || !compact_uints(&q, end, offs) || !lit(&q, end, "}", 1))
        return 0;
    j->p = q;
    return 1;
}

/* The value of tensor `name`: read it through (fields in any order,
 * unknown ones skipped), then check it in a fixed order so that each
 * mistake has one message. */
static qm_status parse_tensor(qm_st_file *f, qm_js *j, const char *name, qm_st_tensor *t, qm_diag *d)
{
    const char *p = f->path;
    if (qm_js_peek(j) != '{') {
        if (qm_js_skip(j))
            return bad_json(f, j, d);
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': entry is not an object", p, name);
    }
    const char *dt = NULL;
    char *mark = qm_js_mark(j); /* the entry's keys and dtype are not kept */
    int has_dt = 0, has_shape = 0, has_offs = 0;
    uarray shape, offs;
    qm_strmap seen = {0};
    char compact_dt[16];
    int more = 0;
    if (compact_entry(j, compact_dt, &shape, &offs)) {
        dt = compact_dt;
        has_dt = has_shape = has_offs = 1;
    } else {
        more = qm_js_open(j, '{', '}');
    }
    for (; more > 0; more = qm_js_next(j, '}')) {
        const char *k = qm_js_key(j);
        if (!k)
            break;
        /* the three fields by flag; a strmap only for other keys */
        int *known = k[0] == 'd' && strcmp(k, "dtype") == 0          ? &has_dt
                     : k[0] == 's' && strcmp(k, "shape") == 0        ? &has_shape
                     : k[0] == 'd' && strcmp(k, "data_offsets") == 0 ? &has_offs
                                                                     : NULL;
        if (known && *known) {
            qm_js_error(j, "duplicate key '%s'", k);
            break;
        }
        if (!known ? qm_js_dup(j, &seen, k) || qm_js_skip(j)
            : known == &has_dt ? (qm_js_peek(j) == '"' ? !(dt = qm_js_string(j)) : qm_js_skip(j) != 0)
                               : read_uarray(j, known == &has_shape ? &shape : &offs) != 0)
            break;
        if (known)
            *known = 1;
    }
    qm_strmap_free(&seen);
    if (j->failed)
        return bad_json(f, j, d);
    if (!has_dt || !has_shape || !has_offs)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': missing '%s'", p, name,
                            !has_dt ? "dtype" : !has_shape ? "shape" : "data_offsets");
    if (!dt)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': dtype is not a string", p, name);
    if (!qm_dtype_parse(dt, &t->dtype))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': unknown dtype '%s' (known: %s)", p, name, dt,
                            qm_dtype_list());
    if (!shape.is_array)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': shape is not an array", p, name);
    if (shape.n > QM_MAX_DIMS)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': %zu dimensions, at most %d supported", p, name,
                            shape.n, QM_MAX_DIMS);
    if (shape.first_bad >= 0)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': shape[%ld] is not a non-negative integer", p, name,
                            shape.first_bad);
    t->ndim = (int)shape.n;
    t->numel = 1;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        t->shape[i] = shape.v[i];
        if (t->shape[i] && t->numel > UINT64_MAX / t->shape[i])
            overflow = 1;
        t->numel *= t->shape[i];
    }
    uint64_t esize = qm_dtype_size(t->dtype);
    if (overflow || t->numel > UINT64_MAX / esize)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': shape size overflows 64 bits", p, name);
    if (!offs.is_array || offs.n != 2 || offs.first_bad >= 0)
        return qm_diag_fail(d, QM_EFORMAT,
                            "%s: tensor '%s': data_offsets is not two non-negative integers", p, name);
    t->begin = offs.v[0];
    t->end = offs.v[1];
    if (t->end < t->begin)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                            p, name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != t->numel * esize)
        return qm_diag_fail(d, QM_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %llu %s "
                            "elements need %llu",
                            p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                            (unsigned long long)(t->end - t->begin), (unsigned long long)t->numel,
                            qm_dtype_name(t->dtype), (unsigned long long)(t->numel * esize));
    if (t->end > f->data_size)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] exceed data size %llu",
                            p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                            (unsigned long long)f->data_size);
    t->name = name;
    qm_js_release(j, mark);
    return QM_OK;
}

static int by_offset(const void *a, const void *b, void *ctx)
{
    const qm_st_tensor *t = ctx, *x = &t[*(const size_t *)a], *y = &t[*(const size_t *)b];
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Put f->t in offset order.  Files written by the safetensors library list
 * their tensors in that order already, so check before sorting. */
static qm_status sort_by_offset(qm_st_file *f, qm_diag *d)
{
    size_t n = f->n, i = 1;
    while (i < n && by_offset(&(size_t){i - 1}, &(size_t){i}, f->t) < 0)
        i++;
    if (i >= n)
        return QM_OK;
    size_t *ord = malloc(n * sizeof *ord);
    qm_st_tensor *t = malloc(n * sizeof *t);
    if (!ord || !t) {
        free(ord), free(t);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    }
    for (i = 0; i < n; i++)
        ord[i] = i;
    qsort_r(ord, n, sizeof *ord, by_offset, f->t);
    for (i = 0; i < n; i++)
        t[i] = f->t[ord[i]];
    free(f->t);
    f->t = t;
    free(ord);
    return QM_OK;
}

/* Ranges sorted by offset must tile [0, data_size) exactly: no overlap, no hole. */
static qm_status check_layout(qm_st_file *f, qm_diag *d)
{
    uint64_t pos = 0;
    const qm_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const qm_st_tensor *t = &f->t[i];
        if (t->begin < pos && strcmp(t->name, prev->name) == 0) /* the same entry twice */
            return qm_diag_fail(d, QM_EFORMAT, "%s: header: duplicate tensor name '%s'", f->path, t->name);
        if (t->begin < pos)
            return qm_diag_fail(d, QM_EFORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                                f->path, t->name, (unsigned long long)t->begin,
                                (unsigned long long)t->end, prev->name,
                                (unsigned long long)prev->begin, (unsigned long long)prev->end);
        if (t->begin > pos)
            return qm_diag_fail(d, QM_EFORMAT,
                                "%s: tensor '%s': data_offsets [%llu, %llu] leave a hole of %llu bytes "
                                "before it",
                                f->path, t->name, (unsigned long long)t->begin,
                                (unsigned long long)t->end, (unsigned long long)(t->begin - pos));
        pos = t->end;
        if (t->end > t->begin)
            prev = t;
    }
    if (pos != f->data_size)
        return qm_diag_fail(d, QM_EFORMAT,
                            "%s: %llu bytes of data after the last tensor (data size %llu, tensors end at %llu)",
                            f->path, (unsigned long long)(f->data_size - pos),
                            (unsigned long long)f->data_size, (unsigned long long)pos);
    return QM_OK;
}

/* The root object: tensor entries and __metadata__. */
static qm_status parse_entries(qm_st_file *f, qm_js *j, qm_diag *d)
{
    size_t cap = 0;
    int meta = 0, more;
    for (more = qm_js_open(j, '{', '}'); more > 0; more = qm_js_next(j, '}')) {
        const char *name = qm_js_key(j);
        if (!name)
            break;
        qm_status st;
        if (name[0] == '_' && strcmp(name, "__metadata__") == 0) {
            if (meta++)
                return qm_diag_fail(d, QM_EFORMAT, "%s: header: duplicate key '__metadata__'", f->path);
            st = parse_metadata(f, j, d);
        } else {
            if (f->n == cap) {
                qm_st_tensor *t = realloc(f->t, (cap = cap ? 2 * cap : 256) * sizeof *t);
                if (!t)
                    return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
                f->t = t;
            }
            memset(&f->t[f->n], 0, sizeof f->t[f->n]);
            if ((st = parse_tensor(f, j, name, &f->t[f->n], d)) == QM_OK)
                f->n++;
        }
        if (st != QM_OK)
            return st;
    }
    if (j->failed || qm_js_finish(j))
        return bad_json(f, j, d);
    return QM_OK;
}

/* by_name over f->t; a repeated name is an error. */
static qm_status index_names(qm_st_file *f, qm_diag *d)
{
    if (qm_strmap_init(&f->by_name, f->n) != QM_OK)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    for (size_t i = 0; i < f->n; i++) {
        qm_status st = qm_strmap_put(&f->by_name, f->t[i].name, i, NULL);
        if (st == QM_EINVAL)
            return qm_diag_fail(d, QM_EFORMAT, "%s: header: duplicate tensor name '%s'", f->path, f->t[i].name);
        if (st != QM_OK)
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    }
    return QM_OK;
}

static qm_status parse_header(qm_st_file *f, const char *text, size_t len, int index, qm_diag *d)
{
    if (len == 0 || text[0] != '{')
        return qm_diag_fail(d, QM_EFORMAT, "%s: header does not start with '{'", f->path);
    if (!(f->strings = malloc(len + 1)))
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    qm_js j;
    qm_js_init(&j, text, len, f->strings);
    qm_status st = parse_entries(f, &j, d);
    if (st != QM_OK)
        return st;
    if ((st = sort_by_offset(f, d)) != QM_OK || (st = check_layout(f, d)) != QM_OK ||
        (index && (st = index_names(f, d)) != QM_OK))
        return st;
    const unsigned char *data = (const unsigned char *)f->map + 8 + f->header_len;
    for (size_t i = 0; i < f->n; i++)
        f->t[i].data = data + f->t[i].begin;
    return QM_OK;
}

static qm_status open_file(const char *path, int index, qm_st_file **out, qm_diag *d)
{
    *out = NULL;
    qm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = qm_strdup(path))) {
        free(f);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    const char *map;
    struct stat sb;
    int fd;
    qm_status st = qm_open_input(path, &fd, &sb, d);
    if (st != QM_OK)
        goto fail;
    size_t size = (size_t)sb.st_size;
    st = qm_map_fd(fd, path, size, &map, d);
    close(fd);
    if (st != QM_OK)
        goto fail;
    f->map = (void *)map;
    f->map_size = size;
    f->dev = (uint64_t)sb.st_dev;
    f->ino = (uint64_t)sb.st_ino;
    if (size < 8) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", path,
                          size);
        goto fail;
    }
    const unsigned char *b = f->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | b[i];
    if (n > QM_ST_MAX_HEADER) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: header length %llu exceeds the %llu-byte limit", path,
                          (unsigned long long)n, QM_ST_MAX_HEADER);
        goto fail;
    }
    if (n > f->map_size - 8) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: header length %llu exceeds the %llu bytes after the length",
                          path, (unsigned long long)n, (unsigned long long)(f->map_size - 8));
        goto fail;
    }
    f->header_len = n;
    f->data_size = f->map_size - 8 - n;
    if ((st = parse_header(f, (const char *)b + 8, (size_t)n, index, d)) != QM_OK)
        goto fail;
    *out = f;
    return QM_OK;
fail:
    qm_st_close(f);
    return st;
}

qm_status qm_st_open(const char *path, qm_st_file **out, qm_diag *d)
{
    return open_file(path, 1, out, d);
}

qm_status qm_st_open_unindexed(const char *path, qm_st_file **out, qm_diag *d)
{
    return open_file(path, 0, out, d);
}

qm_status qm_st_check_live(const qm_st_file *f, const qm_st_tensor *t, qm_diag *d)
{
    struct stat sb;
    uint64_t need = 8 + f->header_len + t->end;
    if (stat(f->path, &sb) == 0 && (uint64_t)sb.st_dev == f->dev && (uint64_t)sb.st_ino == f->ino &&
        (uint64_t)sb.st_size < need)
        return qm_diag_fail(d, QM_EIO, "%s: tensor '%s' needs the file's first %llu bytes, but it is now %llu "
                            "bytes: the file was truncated while qmoe had it open", f->path, t->name,
                            (unsigned long long)need, (unsigned long long)sb.st_size);
    return QM_OK;
}

const qm_st_tensor *qm_st_find(const qm_st_file *f, const char *name)
{
    size_t i;
    if (f->by_name.cap)
        return qm_strmap_get(&f->by_name, name, &i) ? &f->t[i] : NULL;
    for (i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *qm_st_meta(const qm_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ---- writing ------------------------------------------------------------- */

static json_t *header_json(const qm_st_entry *t, size_t n, const char *const *meta)
{
    json_t *root = json_object();
    int bad = !root;
    if (!bad && meta && meta[0]) {
        json_t *m = json_object();
        bad = json_object_set_new(root, "__metadata__", m) != 0;
        for (size_t i = 0; !bad && meta[i] && meta[i + 1]; i += 2)
            bad = json_object_set_new(m, meta[i], json_string(meta[i + 1])) != 0;
    }
    uint64_t off = 0;
    for (size_t i = 0; !bad && i < n; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        uint64_t numel = 1;
        bad = !e || !shape || !offs;
        for (int k = 0; !bad && k < t[i].ndim; k++) {
            numel *= t[i].shape[k];
            bad = json_array_append_new(shape, json_integer((json_int_t)t[i].shape[k])) != 0;
        }
        uint64_t bytes = numel * qm_dtype_size(t[i].dtype);
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)off)) ||
              json_array_append_new(offs, json_integer((json_int_t)(off + bytes))) ||
              json_object_set_new(e, "dtype", json_string(qm_dtype_name(t[i].dtype))) ||
              json_object_set(e, "shape", shape) || json_object_set(e, "data_offsets", offs) ||
              json_object_set(root, t[i].name, e);
        json_decref(e);
        json_decref(shape);
        json_decref(offs);
        off += bytes;
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

typedef struct st_out {
    const char *header; /* JSON */
    const qm_st_entry *t;
    size_t n;
} st_out;

/* A write that fails is left to the commit, which sees it in f's error flag. */
static qm_status put_st(const void *ctx, FILE *f, qm_diag *d)
{
    const st_out *o = ctx;
    size_t len = strlen(o->header), padded = (len + 7) / 8 * 8;
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(lenbuf, 1, 8, f);
    fwrite(o->header, 1, len, f);
    for (size_t i = len; i < padded; i++)
        fputc(' ', f);
    for (size_t i = 0; i < o->n; i++) {
        const qm_st_entry *t = &o->t[i];
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++)
            numel *= t->shape[k];
        size_t bytes = (size_t)(numel * qm_dtype_size(t->dtype));
        if (bytes && fwrite(t->data, 1, bytes, f) != bytes)
            break;
    }
    return QM_OK;
}

qm_status qm_st_write(const char *path, const qm_st_entry *t, size_t n, const char *const *meta,
                      qm_diag *d)
{
    json_t *h = header_json(t, n, meta);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory building the header", path);
    qm_status st = qm_afile_write(path, put_st, &(st_out){text, t, n}, 1, d);
    free(text);
    return st;
}

/* The error for element i (value v) of t, the first that is not finite. */
static qm_status nonfinite(const char *path, const qm_st_tensor *t, size_t i, float v, qm_diag *d)
{
    char at[64] = "";
    if (t->ndim == 2)
        snprintf(at, sizeof at, " [%llu, %llu]", (unsigned long long)(i / t->shape[1]),
                 (unsigned long long)(i % t->shape[1]));
    return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s' holds %s at element %zu%s; weights must be finite", path,
                        t->name, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", i, at);
}

qm_status qm_st_to_f32(const char *path, const qm_st_tensor *t, float *dst, qm_diag *d)
{
    int rc = qm_to_f32(t->dtype, t->data, dst, (size_t)t->numel);
    if (rc < 0)
        return qm_diag_fail(d, QM_EUNSUPPORTED, "%s: tensor '%s' is %s; weights must be F32, F16 or BF16", path,
                            t->name, qm_dtype_name(t->dtype));
    size_t i = rc ? qm_first_nonfinite(dst, (size_t)t->numel) : 0;
    return rc ? nonfinite(path, t, i, dst[i], d) : QM_OK;
}

qm_status qm_st_check_finite(const char *path, const qm_st_tensor *t, qm_diag *d)
{
    enum { STEP = 1 << 14 };
    float buf[STEP];
    size_t size = qm_dtype_size(t->dtype);
    for (size_t at = 0; at < t->numel; at += STEP) {
        size_t n = t->numel - at < STEP ? (size_t)t->numel - at : STEP;
        int rc = qm_to_f32(t->dtype, (const char *)t->data + at * size, buf, n);
        if (rc < 0)
            return QM_OK; /* not a float type: nothing to check */
        if (rc > 0) {
            size_t i = qm_first_nonfinite(buf, n);
            return nonfinite(path, t, at + i, buf[i], d);
        }
    }
    return QM_OK;
}
