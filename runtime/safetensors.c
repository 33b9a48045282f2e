/* safetensors.c: validated reading and atomic writing of safetensors files.
 *
 * The header is parsed with jansson, which can reject duplicate keys
 * (JSON_REJECT_DUPLICATES): a parser that silently kept the last of two
 * equal names would let a file alias one tensor as another.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/safetensors.h"

void qm_st_close(qm_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->meta);
    free(f->t);
    qm_strmap_free(&f->by_name);
    if (f->map && f->map != MAP_FAILED)
        munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

/* The duplicate-key error of jansson does not say which key; the key is the
 * last string literal before the error position, so recover it from there. */
static char *duplicate_key(const char *text, size_t pos)
{
    size_t end = pos;
    while (end > 0 && text[end - 1] != '"')
        end--;
    if (end == 0)
        return NULL;
    size_t begin = end - 1;
    while (begin > 0 && !(text[begin - 1] == '"' && (begin < 2 || text[begin - 2] != '\\')))
        begin--;
    if (begin == 0)
        return NULL;
    char *k = malloc(end - begin);
    if (!k)
        return NULL;
    memcpy(k, text + begin, end - 1 - begin);
    k[end - 1 - begin] = '\0';
    return k;
}

static qm_status parse_metadata(qm_st_file *f, json_t *meta, qm_diag *d)
{
    if (!json_is_object(meta))
        return qm_diag_fail(d, QM_EFORMAT, "%s: __metadata__ is not an object of strings", f->path);
    size_t n = json_object_size(meta);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v)
    {
        if (!json_is_string(v))
            return qm_diag_fail(d, QM_EFORMAT, "%s: __metadata__ value of '%s' is not a string",
                                f->path, k);
        f->meta[2 * f->n_meta] = qm_strdup(k);
        f->meta[2 * f->n_meta + 1] = qm_strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    }
    return QM_OK;
}

/* Read a non-negative JSON integer into *v; 0 on success. */
static int get_u64(json_t *j, uint64_t *v)
{
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

static qm_status parse_tensor(qm_st_file *f, const char *name, json_t *info, qm_st_tensor *t,
                              qm_diag *d)
{
    const char *p = f->path;
    if (!json_is_object(info))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': entry is not an object", p, name);
    json_t *dt = json_object_get(info, "dtype");
    json_t *shape = json_object_get(info, "shape");
    json_t *offs = json_object_get(info, "data_offsets");
    if (!dt || !shape || !offs)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': missing '%s'", p, name,
                            !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!json_is_string(dt))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': dtype is not a string", p, name);
    if (!qm_dtype_parse(json_string_value(dt), &t->dtype))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': unknown dtype '%s' (known: %s)", p,
                            name, json_string_value(dt), qm_dtype_list());
    if (!json_is_array(shape))
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': shape is not an array", p, name);
    if (json_array_size(shape) > QM_MAX_DIMS)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': %zu dimensions, at most %d supported",
                            p, name, json_array_size(shape), QM_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    t->numel = 1;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (get_u64(json_array_get(shape, (size_t)i), &t->shape[i]))
            return qm_diag_fail(d, QM_EFORMAT,
                                "%s: tensor '%s': shape[%d] is not a non-negative integer", p, name, i);
        if (t->shape[i] && t->numel > UINT64_MAX / t->shape[i])
            overflow = 1;
        t->numel *= t->shape[i];
    }
    uint64_t esize = qm_dtype_size(t->dtype);
    if (overflow || t->numel > UINT64_MAX / esize)
        return qm_diag_fail(d, QM_EFORMAT, "%s: tensor '%s': shape size overflows 64 bits", p, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        get_u64(json_array_get(offs, 0), &t->begin) || get_u64(json_array_get(offs, 1), &t->end))
        return qm_diag_fail(d, QM_EFORMAT,
                            "%s: tensor '%s': data_offsets is not two non-negative integers", p, name);
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
    t->name = qm_strdup(name);
    if (!t->name)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", p);
    return QM_OK;
}

static int by_offset(const void *a, const void *b)
{
    const qm_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Ranges sorted by offset must tile [0, data_size) exactly: no overlap, no hole. */
static qm_status check_layout(qm_st_file *f, qm_diag *d)
{
    uint64_t pos = 0;
    const qm_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const qm_st_tensor *t = &f->t[i];
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

static qm_status parse_header(qm_st_file *f, const char *text, size_t len, qm_diag *d)
{
    json_error_t err;
    if (len == 0 || text[0] != '{')
        return qm_diag_fail(d, QM_EFORMAT, "%s: header does not start with '{'", f->path);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_duplicate_key) {
            char *k = duplicate_key(text, (size_t)err.position);
            qm_status st = qm_diag_fail(d, QM_EFORMAT, "%s: header: duplicate tensor name '%s'",
                                        f->path, k ? k : "?");
            free(k);
            return st;
        }
        return qm_diag_fail(d, QM_EFORMAT, "%s: header is not valid JSON: %s at byte %d of the header",
                            f->path, err.text, err.position);
    }
    qm_status st = QM_OK;
    size_t cap = json_object_size(root);
    f->t = calloc(cap ? cap : 1, sizeof *f->t);
    if (!f->t || qm_strmap_init(&f->by_name, cap) != QM_OK) {
        json_decref(root);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    }
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v)
    {
        if (strcmp(name, "__metadata__") == 0)
            st = parse_metadata(f, v, d);
        else if ((st = parse_tensor(f, name, v, &f->t[f->n], d)) == QM_OK)
            f->n++;
        if (st != QM_OK)
            break;
    }
    json_decref(root);
    if (st != QM_OK)
        return st;
    qsort(f->t, f->n, sizeof *f->t, by_offset);
    if ((st = check_layout(f, d)) != QM_OK)
        return st;
    const unsigned char *data = (const unsigned char *)f->map + 8 + f->header_len;
    for (size_t i = 0; i < f->n; i++) {
        f->t[i].data = data + f->t[i].begin;
        if (qm_strmap_put(&f->by_name, f->t[i].name, i, NULL) != QM_OK)
            return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", f->path);
    }
    return QM_OK;
}

qm_status qm_st_open(const char *path, qm_st_file **out, qm_diag *d)
{
    *out = NULL;
    qm_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = qm_strdup(path))) {
        free(f);
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory", path);
    }
    qm_status st;
    int fd = open(path, O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = qm_diag_fail(d, errno == ENOENT ? QM_ENOTFOUND : QM_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = qm_diag_fail(d, QM_EFORMAT, "%s: file is %lld bytes, too short for the 8-byte header length",
                          path, (long long)sb.st_size);
        goto fail;
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        st = qm_diag_fail(d, QM_EIO, "%s: cannot map: %s", path, strerror(errno));
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
    if ((st = parse_header(f, (const char *)b + 8, (size_t)n, d)) != QM_OK)
        goto fail;
    close(fd);
    *out = f;
    return QM_OK;
fail:
    if (fd >= 0)
        close(fd);
    qm_st_close(f);
    return st;
}

const qm_st_tensor *qm_st_find(const qm_st_file *f, const char *name)
{
    size_t i;
    return qm_strmap_get(&f->by_name, name, &i) ? &f->t[i] : NULL;
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

qm_status qm_st_write(const char *path, const qm_st_entry *t, size_t n, const char *const *meta,
                      qm_diag *d)
{
    json_t *h = header_json(t, n, meta);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!text)
        return qm_diag_fail(d, QM_ENOMEM, "%s: out of memory building the header", path);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    qm_afile a;
    qm_status st = qm_afile_open(&a, path, d);
    if (st != QM_OK) {
        free(text);
        return st;
    }
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(lenbuf, 1, 8, a.f);
    fwrite(text, 1, len, a.f);
    for (size_t i = len; i < padded; i++)
        fputc(' ', a.f);
    free(text);
    for (size_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int k = 0; k < t[i].ndim; k++)
            numel *= t[i].shape[k];
        size_t bytes = (size_t)(numel * qm_dtype_size(t[i].dtype));
        if (bytes && fwrite(t[i].data, 1, bytes, a.f) != bytes)
            break;
    }
    return qm_afile_commit(&a, d);
}
