/* gguf_read.c: reading a GGUF file's header (see gguf.h): metadata walked
 * and checked, tensor infos kept, data mapped and never copied.
 *
 * Untrusted bytes: every length is checked against what is left of the
 * file before it is used, counts against the least bytes their records
 * take, tensors against the data section (aligned, inside, no overlap, no
 * name twice), so that a malformed file gets an error naming the file, the
 * byte offset and the bad value, never a crash or a read past the map.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

/* GGUF metadata value types and their sizes (0: string; array handled apart). */
enum { GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_COUNT = 13 };
static const uint8_t value_size[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct cursor {
    const uint8_t *p;
    uint64_t at, size;
    const char *path;
    qm_diag *d;
} cursor;

static qm_status fail(cursor *c, const char *what, unsigned long long v)
{
    return qm_diag_fail(c->d, QM_EFORMAT, "%s: offset %llu: %s (%llu)", c->path, (unsigned long long)c->at, what, v);
}

static int take(cursor *c, uint64_t n, const uint8_t **out)
{
    if (n > c->size - c->at)
        return 0;
    *out = c->p + c->at;
    c->at += n;
    return 1;
}

static uint64_t le(const uint8_t *b, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static qm_status get(cursor *c, int n, uint64_t *v, const char *what)
{
    const uint8_t *b;
    *v = 0;
    if (!take(c, (uint64_t)n, &b))
        return fail(c, what, (unsigned long long)(c->size - c->at));
    *v = le(b, n);
    return QM_OK;
}

/* A string: its bytes at *s (not NUL-terminated) and length *n. */
static qm_status get_str(cursor *c, const uint8_t **s, uint64_t *n, const char *what)
{
    qm_status st = get(c, 8, n, what);
    if (st == QM_OK && !take(c, *n, s)) {
        c->at -= 8;
        return fail(c, "string longer than the rest of the file", *n);
    }
    return st;
}

static void free_file(qm_gguf_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    free(f->t);
    free(f->arch);
    free(f->path);
    if (f->mapped)
        qm_unmap_file((const char *)f->map, f->size);
    free(f);
}

void qm_gguf_close(qm_gguf_file *f) { free_file(f); }

/* One metadata value of type `type` (an array's elements too); *str and
 * *len describe a string value, *num a number. */
static qm_status skip_value(cursor *c, uint64_t type, int in_array, const uint8_t **str, uint64_t *len, uint64_t *num)
{
    if (type >= GGUF_TYPE_COUNT)
        return fail(c, "unknown metadata value type", type);
    if (type == GGUF_TYPE_STRING)
        return get_str(c, str, len, "truncated string");
    if (type == GGUF_TYPE_ARRAY) {
        uint64_t et = 0, n = 0;
        qm_status st;
        if (in_array)
            return fail(c, "array of arrays", type);
        if ((st = get(c, 4, &et, "truncated array type")) != QM_OK || (st = get(c, 8, &n, "truncated array length")))
            return st;
        if (et >= GGUF_TYPE_COUNT || et == GGUF_TYPE_ARRAY)
            return fail(c, "bad array element type", et);
        uint64_t least = et == GGUF_TYPE_STRING ? 8 : value_size[et];
        if (n > (c->size - c->at) / least)
            return fail(c, "array longer than the rest of the file", n);
        if (et != GGUF_TYPE_STRING) {
            c->at += n * least;
            return QM_OK;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((st = skip_value(c, et, 1, str, len, num)) != QM_OK)
                return st;
        return QM_OK;
    }
    return get(c, value_size[type], num, "truncated value");
}

static int key_is(const uint8_t *k, uint64_t n, const char *want)
{
    return n == strlen(want) && memcmp(k, want, n) == 0;
}

/* Metadata: general.architecture and general.alignment are kept. */
static qm_status read_meta(cursor *c, qm_gguf_file *f)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const uint8_t *k, *s = NULL;
        uint64_t kn = 0, type = 0, len = 0, num = 0, at;
        qm_status st = get_str(c, &k, &kn, "truncated key");
        if (st == QM_OK && kn == 0)
            st = fail(c, "empty metadata key", i);
        if (st == QM_OK)
            st = get(c, 4, &type, "truncated value type");
        at = c->at;
        if (st == QM_OK)
            st = skip_value(c, type, 0, &s, &len, &num);
        if (st != QM_OK)
            return st;
        if (key_is(k, kn, "general.alignment")) {
            c->at = at;
            if (type != 4 || num == 0 || (num & (num - 1)) || num > 1u << 30)
                return fail(c, "general.alignment is not a power of two held as u32", num);
            c->at += 4;
            f->alignment = (uint32_t)num;
        }
        if (key_is(k, kn, "general.architecture") && type == GGUF_TYPE_STRING && !f->arch) {
            if (!(f->arch = malloc(len + 1)))
                return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
            memcpy(f->arch, s, len);
            f->arch[len] = '\0';
        }
    }
    return QM_OK;
}

static int by_offset(const void *a, const void *b)
{
    const qm_gguf_tensor *x = *(const qm_gguf_tensor *const *)a, *y = *(const qm_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensor infos, then the data section's checks. */
static qm_status read_tensors(cursor *c, qm_gguf_file *f, size_t n)
{
    qm_strmap names;
    if (!(f->t = calloc(n ? n : 1, sizeof *f->t)) || qm_strmap_init(&names, n) != QM_OK) {
        free(f->t);
        f->t = NULL;
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    }
    qm_status st = QM_OK; /* f->n counts the infos read, which free_file() frees */
    for (size_t i = 0; st == QM_OK && i < n; i++) {
        qm_gguf_tensor *t = &f->t[i];
        const uint8_t *s;
        uint64_t len = 0, v = 0, at = c->at;
        if ((st = get_str(c, &s, &len, "truncated tensor name")) != QM_OK)
            break;
        if (len == 0 || len > 255 || memchr(s, 0, len)) {
            c->at = at;
            st = fail(c, "tensor name empty, over 255 bytes or holding a NUL; length", len);
            break;
        }
        char *name = malloc(len + 1);
        if (!name) {
            st = qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
            break;
        }
        memcpy(name, s, len);
        name[len] = '\0';
        t->name = name;
        f->n++;
        if (qm_strmap_put(&names, name, i, NULL) != QM_OK) {
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: tensor '%s' is listed twice", c->path, name);
            break;
        }
        if ((st = get(c, 4, &v, "truncated dimension count")) != QM_OK)
            break;
        if (v < 1 || v > 4) {
            c->at -= 4;
            st = fail(c, "a tensor has 1 to 4 dimensions, not", v);
            break;
        }
        t->ndim = (int)v;
        uint64_t numel = 1;
        for (int k = 0; st == QM_OK && k < 4; k++) {
            t->ne[k] = 1;
            if (k < t->ndim && (st = get(c, 8, &t->ne[k], "truncated dimension")) == QM_OK &&
                (t->ne[k] == 0 || t->ne[k] > (1ull << 40) || numel > (1ull << 48) / t->ne[k])) {
                c->at -= 8;
                st = fail(c, "dimension zero or too large", t->ne[k]);
            }
            numel *= t->ne[k];
        }
        if (st == QM_OK && (st = get(c, 4, &v, "truncated tensor type")) == QM_OK &&
            (v >= QM_GGML_TYPE_COUNT || !qm_ggml_types[v].name)) {
            c->at -= 4;
            st = fail(c, "unknown ggml type", v);
        }
        if (st != QM_OK)
            break;
        t->type = (int)v;
        if (!(t->nbytes = qm_ggml_nbytes(t->type, t->ne[0])) ) {
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: tensor '%s': rows of %llu values cannot be %s (blocks of %d)",
                              c->path, name, (unsigned long long)t->ne[0], qm_ggml_types[t->type].name,
                              qm_ggml_types[t->type].block);
            break;
        }
        t->nbytes *= numel / t->ne[0];
        if ((st = get(c, 8, &t->offset, "truncated tensor offset")) != QM_OK)
            break;
    }
    qm_strmap_free(&names);
    if (st != QM_OK)
        return st;
    f->data_offset = (c->at + f->alignment - 1) / f->alignment * f->alignment;
    if (f->data_offset > c->size)
        return fail(c, "no data section after the header; file size", c->size);
    uint64_t data = c->size - f->data_offset;
    const qm_gguf_tensor **order = malloc((f->n ? f->n : 1) * sizeof *order);
    if (!order)
        return qm_diag_fail(c->d, QM_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n; i++)
        order[i] = &f->t[i];
    qsort(order, f->n, sizeof *order, by_offset);
    for (size_t i = 0; st == QM_OK && i < f->n; i++) {
        const qm_gguf_tensor *t = order[i];
        if (t->offset % f->alignment)
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u",
                              c->path, t->name, (unsigned long long)t->offset, f->alignment);
        else if (t->offset > data || t->nbytes > data - t->offset)
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: tensor '%s': bytes [%llu, %llu) exceed the data section of %llu "
                              "bytes (truncated?)", c->path, t->name, (unsigned long long)t->offset,
                              (unsigned long long)(t->offset + t->nbytes), (unsigned long long)data);
        else if (i > 0 && order[i - 1]->offset + order[i - 1]->nbytes > t->offset)
            st = qm_diag_fail(c->d, QM_EFORMAT, "%s: tensors '%s' and '%s' overlap", c->path, order[i - 1]->name,
                              t->name);
    }
    free(order);
    return st;
}

qm_status qm_gguf_parse(const char *path, const uint8_t *data, size_t size, qm_gguf_file **out, qm_diag *d)
{
    *out = NULL;
    qm_gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = qm_strdup(path))) {
        free(f);
        return qm_diag_fail(d, QM_ENOMEM, "out of memory");
    }
    f->map = data;
    f->size = size;
    f->alignment = QM_GGUF_ALIGNMENT;
    cursor c = {data, 0, size, path, d};
    uint64_t magic = 0, version = 0, n = 0, n_kv = 0;
    qm_status st = get(&c, 4, &magic, "too short for a GGUF header");
    if (st == QM_OK && magic != 0x46554747u) {
        c.at = 0;
        st = fail(&c, "not a GGUF file: magic is not 'GGUF'; the first 4 bytes as a number", magic);
    }
    if (st == QM_OK && (st = get(&c, 4, &version, "truncated version")) == QM_OK && version != 2 && version != 3) {
        c.at = 4;
        st = fail(&c, "GGUF version is 2 or 3, not", version);
    }
    if (st == QM_OK)
        st = get(&c, 8, &n, "truncated tensor count");
    if (st == QM_OK)
        st = get(&c, 8, &n_kv, "truncated metadata count");
    if (st == QM_OK && n > (size - c.at) / 24) { /* an info takes at least 24 bytes */
        c.at = 8;
        st = fail(&c, "tensor count larger than the file can hold", n);
    }
    if (st == QM_OK && n_kv > (size - c.at) / 13) { /* a key-value pair at least 13 */
        c.at = 16;
        st = fail(&c, "metadata count larger than the file can hold", n_kv);
    }
    if (st == QM_OK) {
        f->version = (uint32_t)version;
        f->n_kv = n_kv;
        st = read_meta(&c, f);
    }
    if (st == QM_OK)
        st = read_tensors(&c, f, (size_t)n);
    if (st != QM_OK) {
        f->map = NULL;
        free_file(f);
        return st;
    }
    *out = f;
    return QM_OK;
}

qm_status qm_gguf_open(const char *path, qm_gguf_file **out, qm_diag *d)
{
    const char *data;
    size_t len;
    *out = NULL;
    qm_status st = qm_map_file(path, &data, &len, d);
    if (st != QM_OK)
        return st;
    if ((st = qm_gguf_parse(path, (const uint8_t *)data, len, out, d)) != QM_OK) {
        qm_unmap_file(data, len);
        return st;
    }
    (*out)->mapped = 1;
    return QM_OK;
}

const uint8_t *qm_gguf_tensor_data(const qm_gguf_file *f, size_t i)
{
    return f->map + f->data_offset + f->t[i].offset;
}
